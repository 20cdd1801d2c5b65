//! A dashboard server over the real engine on the simulated market, for the browser test and for trying the
//! dashboard without the full runtime: `cargo run -p aegis-control --example web_demo`.
//!
//! Environment: `DATA_DIR` (required; users.json and the TLS certificate go there), `WEB_DEMO_PORT` (default 0 =
//! any free port), `SIM_RATE` (messages/s, default 2000), `SIM_SPEED`
//! (market seconds per wall second, default 300), `JWT_SECRET` (default: random per start). Prints
//! `LISTENING https://127.0.0.1:<port>` once it serves.

use aegis_control::auth::MemoryUserStore;
use aegis_control::web::model::{LiveModel, ModeAllocation, ModelInfo};
use aegis_control::web::{self, WebConfig, WebState};
use aegis_engine::{EngineParams, FeedSource};
use aegis_shared::{Notional, Secret, StrategyMode, TradingMode};
use anyhow::Context;
use rand::RngCore;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

fn main() -> anyhow::Result<()> {
    let data_dir =
        PathBuf::from(std::env::var("DATA_DIR").context("set DATA_DIR to a writable directory")?);
    std::fs::create_dir_all(&data_dir)?;
    let port: u16 = std::env::var("WEB_DEMO_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let rate: f64 = std::env::var("SIM_RATE")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(2000.0);
    // Market seconds per wall second: the scalp strategy works on 1-minute bars, so a fast clock gets trades soon.
    let speed: f64 = std::env::var("SIM_SPEED")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(300.0);
    let secret = std::env::var("JWT_SECRET").unwrap_or_else(|_| {
        let mut b = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut b);
        hex::encode(b)
    });

    let params = EngineParams {
        pin: false,
        ..EngineParams::default()
    };
    let symbols = params.symbols.iter().map(|s| s.symbol).collect();
    let info = ModelInfo {
        trading_mode: TradingMode::Paper,
        feed_source: "sim".into(),
        started_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis() as u64,
        max_position_usd: params.limits.max_position_usd,
        max_daily_loss_usd: params.limits.max_daily_loss_usd,
        allocation: StrategyMode::ALL
            .iter()
            .map(|m| ModeAllocation {
                mode: *m,
                enabled: *m == StrategyMode::Scalp,
                capital_percent: Notional::from_int(25),
                capital_usd: Notional::from_int(2_500),
                max_positions: 3,
                max_usd_per_position: params.limits.max_position_usd,
            })
            .collect(),
        version: env!("CARGO_PKG_VERSION").into(),
    };
    let handle = aegis_engine::spawn(
        params,
        FeedSource::Sim {
            seed: 7,
            rate,
            speed,
            symbols,
            limit: None,
        },
    )?;
    let model = Arc::new(LiveModel::with_sender(info, handle.commands.clone()));

    // The pump: critical events first, statistics when there is nothing critical.
    let m = model.clone();
    let (events, stats) = (handle.events.clone(), handle.stats.clone());
    std::thread::Builder::new()
        .name("demo-pump".into())
        .spawn(move || loop {
            crossbeam_channel::select! {
                recv(events) -> e => match e { Ok(e) => m.apply(&e), Err(_) => return },
                recv(stats) -> e => if let Ok(e) = e { m.apply(&e) },
            }
        })?;

    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let bind: SocketAddr = format!("127.0.0.1:{port}").parse()?;
        let mut cfg = WebConfig::new(bind, Secret::new(secret));
        cfg.live_interval = std::time::Duration::from_millis(250);
        let users = Arc::new(MemoryUserStore::open(&data_dir)?);
        let state = WebState::new(cfg, users, model)?;
        let app = web::app(state, axum::Router::new());
        let tls = aegis_control::tls::load_or_generate(None, &data_dir)?.server_config()?;
        let listener = std::net::TcpListener::bind(bind)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        println!("LISTENING https://{addr}");
        let config = axum_server::tls_rustls::RustlsConfig::from_config(tls);
        axum_server::from_tcp_rustls(listener, config)
            .serve(app.into_make_service_with_connect_info::<SocketAddr>())
            .await?;
        anyhow::Ok(())
    })
}

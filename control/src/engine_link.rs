//! Starting the real engine (`aegis_engine::spawn`) from the configuration and the replayed state, and the
//! interface every engine starter shares ([`StartContext`] in, [`EngineStart`] or [`RunError`] out): the paper
//! engine here, Binance in [`crate::exchange`]; which one runs is chosen by `crate::runtime::start_engine`.

use crate::api;
use crate::journal::{now_ms, JournalError, Ledger};
use crate::pump::EngineLink;
use crate::state::Live;
use crate::tls::TlsError;
use aegis_engine::risk::breaker::{BreakerBankSnapshot, BreakerConfig};
use aegis_engine::risk::limits::{LimitsConfig, SymbolFilters};
use aegis_engine::strategy::position::PositionParams;
use aegis_engine::strategy::scalp::ScalpParams;
use aegis_engine::strategy::swing::SwingParams;
use aegis_engine::strategy::ultra_fast::UltraFastParams;
use aegis_engine::venue::FeeRates;
use aegis_engine::{EngineParams, FeedSource, SymbolSpec};
use aegis_shared::config::{keys, Config, ConfigError, FeedKind};
use aegis_shared::quote::{self, RunUnits};
use aegis_shared::{Market, Notional, Price, Qty, StrategyMode, Symbol, TradingMode};
use std::io::BufRead;
use std::sync::Arc;
use std::time::Duration;

/// Why `aegis run` failed. Defined with the start interface because every engine starter returns it.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Bad configuration (exit code 2).
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// The journal could not be opened or written.
    #[error("{0}")]
    Journal(#[from] JournalError),
    /// TLS material problem.
    #[error("{0}")]
    Tls(#[from] TlsError),
    /// The API could not start.
    #[error("{0}")]
    Api(#[from] api::ApiError),
    /// The engine could not start.
    #[error("engine: {0}")]
    Engine(String),
    /// The async runtime or a thread could not start.
    #[error("cannot start {what}: {source}")]
    Start {
        /// What.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// The dashboard could not start (its user store or password hasher).
    #[error("dashboard: {0}")]
    Dashboard(String),
    /// The fleet lease refused the start (another bot holds this key, or it could not be verified).
    #[error("{0}")]
    Fleet(#[from] crate::fleet::FleetError),
    /// The engine did not stop within the shutdown budget (the journal was still flushed).
    #[error("the engine did not stop within {0:?}; the journal was flushed and fsync'd anyway")]
    ShutdownTimeout(Duration),
}

impl RunError {
    /// Process exit code: 2 for configuration errors, 3 when another bot holds this API key's fleet lease, 1
    /// otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            RunError::Config(_) => 2,
            RunError::Fleet(e) => e.exit_code(),
            _ => 1,
        }
    }
}

/// The engine thread, whatever its handle type.
pub trait EngineThread: Send {
    /// True once the thread has ended.
    fn is_finished(&self) -> bool;
    /// Waits for the thread.
    fn join(self: Box<Self>);
}

impl<T: Send + 'static> EngineThread for std::thread::JoinHandle<T> {
    fn is_finished(&self) -> bool {
        std::thread::JoinHandle::is_finished(self)
    }
    fn join(self: Box<Self>) {
        let _ = std::thread::JoinHandle::join(*self);
    }
}

/// [`EngineStart::pinned`] from the engine's report; `failed_hint` follows the message of a failed pin.
pub(crate) fn pin_result(p: aegis_engine::PinOutcome, failed_hint: &str) -> Result<usize, String> {
    use aegis_engine::PinOutcome;
    match p {
        PinOutcome::Pinned { core } => Ok(core),
        PinOutcome::Failed { core } => Err(format!("pinning to core {core} failed{failed_hint}")),
        PinOutcome::Unsupported => Err("the OS reports no CPU cores to pin to".to_string()),
        PinOutcome::Disabled => Err("pinning disabled".to_string()),
    }
}

/// A started engine.
pub struct EngineStart {
    /// Its queues.
    pub link: EngineLink,
    /// `Ok(core)` when pinned, `Err(why)` when pinning failed (a warning, not a failure).
    pub pinned: Result<usize, String>,
    /// Its thread.
    pub thread: Box<dyn EngineThread>,
}

impl std::fmt::Debug for EngineStart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineStart")
            .field("pinned", &self.pinned)
            .finish_non_exhaustive()
    }
}

/// What the engine starter gets: the config, the replayed state and the new session id.
#[derive(Debug)]
pub struct StartContext<'a> {
    /// Configuration.
    pub config: &'a Config,
    /// State replayed from the journal (positions, breakers).
    pub ledger: &'a Ledger,
    /// Client-order-id session for this run.
    pub session_id: u64,
    /// The journal-fed live state (what the bot believes now), for reconciliation after reconnects.
    pub live: Option<Arc<Live>>,
}

/// Filters for a symbol: Binance's for the built-in ones, the finest possible otherwise (paper only; a live
/// venue takes them from `exchangeInfo`).
fn spec_for(symbol: Symbol, market: Market) -> SymbolSpec {
    let known = match market {
        Market::Futures => [SymbolSpec::btcusdt(), SymbolSpec::ethusdt()],
        Market::Spot => [SymbolSpec::btcusdt_spot(), SymbolSpec::ethusdt_spot()],
    };
    known
        .into_iter()
        .find(|s| s.symbol == symbol)
        .unwrap_or_else(|| {
            tracing::warn!(%symbol, "no exchange filters known for {symbol}: paper-trading it with tick and step 0.00000001");
            SymbolSpec {
                symbol,
                filters: SymbolFilters {
                    tick_size: Price::from_units(1),
                    step_size: Qty::from_units(1),
                    min_qty: Qty::from_units(1),
                    min_notional: Notional::from_units(1),
                },
            }
        })
}

/// Symbols seen in the first lines of a replay file (`data.s`), so `aegis run --replay FILE` trades what the
/// file holds without extra configuration.
fn replay_symbols(path: &std::path::Path) -> Vec<Symbol> {
    let mut out = Vec::new();
    let Ok(f) = std::fs::File::open(path) else {
        return out;
    };
    for line in std::io::BufReader::new(f)
        .lines()
        .take(1000)
        .map_while(Result::ok)
    {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        let s = v
            .get("data")
            .unwrap_or(&v)
            .get("s")
            .and_then(|s| s.as_str())
            .and_then(|s| Symbol::new(s).ok());
        if let Some(s) = s {
            if !out.contains(&s) {
                out.push(s);
            }
        }
    }
    out
}

/// Builds the engine parameters and feed for a run.
pub fn params(ctx: &StartContext<'_>) -> Result<(EngineParams, FeedSource), RunError> {
    let cfg: &Config = ctx.config;
    let mut symbols = cfg.symbols.clone();
    let feed = match &cfg.feed {
        FeedKind::Sim => FeedSource::Sim {
            seed: cfg.sim.seed,
            rate: cfg.sim.rate as f64,
            speed: cfg.sim.speed,
            symbols: cfg.symbols.clone(),
            limit: None,
        },
        // Binance's streams are opened by `exchange::paper_market`; this placeholder is never read.
        FeedKind::Binance => FeedSource::default_sim(),
        FeedKind::Replay { file, speed } => {
            let in_file = replay_symbols(file);
            // Configured symbols get no data in a replay; where the file is quoted in another asset they would
            // only mix units (the run's limits are in the file's quote asset), so they are left out.
            if !in_file.iter().all(Symbol::is_usd_quoted) {
                symbols.retain(|s| in_file.contains(s));
            }
            for s in in_file {
                if !symbols.contains(&s) {
                    symbols.push(s);
                }
            }
            FeedSource::Replay {
                path: file.clone(),
                speed: Some(*speed),
            }
        }
    };
    // New entries only in what the operator asked for (SYMBOLS, or what the replay file holds).
    let allowlist = symbols.clone();
    // A position the journal holds must stay manageable (its exits), so its symbol is always traded.
    for p in ctx.ledger.open_positions() {
        if !symbols.contains(&p.symbol) {
            tracing::warn!(symbol = %p.symbol, "the journal holds an open position in {} which is not in SYMBOLS: managing it anyway", p.symbol);
            symbols.push(p.symbol);
        }
    }
    // The unit of the run's amounts: USD, or a quote asset at the operator's fixed price (paper only: with real
    // money a fixed price would drift from the market), else refused with what to do.
    let units = quote::run_units(&symbols, &cfg.quote_usd)
        .map_err(|e| ConfigError::new(keys::SYMBOLS, None, e.to_string()))?;
    if let RunUnits::Converted(q) = units {
        if cfg.trading_mode != TradingMode::Paper {
            return Err(ConfigError::new(
                keys::QUOTE_USD,
                None,
                format!("{q} is a fixed price for paper runs; testnet and live trade USD-quoted symbols only (USDT, USDC)"),
            )
            .into());
        }
        tracing::warn!(
            "amounts are in {}: the USD settings are converted at {q}",
            q.asset
        );
    }
    let restored_positions = ctx
        .ledger
        .positions
        .values()
        .filter(|p| symbols.contains(&p.symbol))
        .copied()
        .collect();
    let limits = LimitsConfig {
        max_position_usd: cfg.limits.max_position_usd,
        max_daily_loss_usd: cfg.limits.max_daily_loss_usd,
        max_leverage: cfg.limits.max_leverage,
        max_open_orders: cfg.limits.max_open_orders,
        max_orders_per_10s: cfg.limits.max_orders_per_10s,
    };
    let allocation = crate::config::allocation(cfg)?;
    let on = |m: StrategyMode| cfg.modes_enabled.contains(&m);
    let max_lev = cfg.limits.max_leverage;
    let scalp_default = ScalpParams::default();
    // A trip journaled before the restart is still a trip (the contract: a restart does not reset it).
    let restored_breakers = BreakerBankSnapshot::from_events(ctx.ledger.breakers.values());
    for b in ctx.ledger.tripped_breakers(now_ms()) {
        tracing::warn!(scope = ?b.scope, change = ?b.change, "circuit breaker restored from the journal: still tripped");
    }
    let params = EngineParams {
        market: cfg.market,
        symbols: symbols
            .into_iter()
            .map(|s| spec_for(s, cfg.market))
            .collect(),
        fees: FeeRates {
            maker: cfg.fees.maker,
            taker: cfg.fees.taker,
        },
        scalp_enabled: on(StrategyMode::Scalp),
        scalp: ScalpParams {
            // An entry never asks for more than one position may hold (the engine caps the other modes).
            notional: scalp_default
                .notional
                .min(cfg.limits.max_position_usd)
                .min(allocation.mode(StrategyMode::Scalp).max_usd_per_position),
            ..scalp_default
        },
        ultra_fast: on(StrategyMode::UltraFastScalp).then(|| {
            let d = UltraFastParams::default();
            UltraFastParams {
                leverage: d.leverage.min(max_lev),
                ..d
            }
        }),
        swing: on(StrategyMode::Swing).then(|| {
            let d = SwingParams::default();
            SwingParams {
                leverage: d.leverage.min(max_lev),
                ..d
            }
        }),
        position: on(StrategyMode::Position).then(|| {
            let d = PositionParams::default();
            PositionParams {
                leverage: d.leverage.min(max_lev),
                ..d
            }
        }),
        allocation,
        capital: cfg.capital_usd,
        limits,
        restored_breakers,
        allowlist,
        breakers: BreakerConfig {
            enabled: cfg.breaker.enabled,
            max_loss_per_hour: cfg.breaker.max_loss_per_hour,
            max_consecutive_losses: cfg.breaker.max_consecutive_losses,
            cooldown_ms: cfg.breaker.cooldown_minutes as u64 * 60_000,
        },
        engine_core: cfg.engine_core,
        session: ctx.session_id,
        paper_trade_id_base: ctx.ledger.paper_trade_id_base(ctx.session_id),
        restored_positions,
        restored_day_pnl: ctx.ledger.day_net(now_ms()),
        data_dir: Some(cfg.data_dir.clone()),
        ..EngineParams::default()
    };
    let params = match units {
        RunUnits::Usd => params,
        RunUnits::Converted(q) => params
            .usd_in_quote_units(q.usd)
            .ok_or_else(|| ConfigError::new(keys::QUOTE_USD, None, "use a positive USD price"))?,
    };
    Ok((params, feed))
}

/// Spawns the engine on the paper venue (no exchange link) reading `feed`.
pub fn spawn_paper(params: EngineParams, feed: FeedSource) -> Result<EngineStart, RunError> {
    let h = aegis_engine::spawn(params, feed).map_err(|e| RunError::Engine(e.to_string()))?;
    let pinned = pin_result(
        h.pinned,
        "; check ENGINE_CORE and the CPU affinity the process may use",
    );
    Ok(EngineStart {
        link: EngineLink {
            events: h.events,
            stats: h.stats,
            commands: h.commands,
        },
        pinned,
        thread: Box::new(h.join),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::Ledger;
    use aegis_engine::risk::limits::{LimitDenial, Limits, OrderCheck};

    /// The engine's limit state as [`params`] sets it up from these settings: its config, the run's filters and
    /// the allowlist, loaded the way the engine loads them.
    fn engine_limits(pairs: &[(&str, &str)]) -> (LimitsConfig, Limits) {
        let p = params_of(pairs).unwrap();
        let mut l = Limits::new(p.limits);
        for s in &p.symbols {
            l.set_filters(s.symbol, s.filters).unwrap();
        }
        l.set_allowlist(&p.allowlist).unwrap();
        (p.limits, l)
    }

    /// A 20 USD ETHUSDT entry: on the grid, at the minimum notional, inside the default position size.
    fn entry() -> OrderCheck {
        let price = Price::parse("2000.00").unwrap();
        let qty = Qty::parse("0.010").unwrap();
        OrderCheck {
            symbol: Symbol::new("ETHUSDT").unwrap(),
            exit: false,
            price,
            tick_checked: true,
            qty,
            position_notional_after: price.notional(qty),
            leverage: 1,
        }
    }

    #[test]
    fn open_order_and_rate_settings_reach_the_engine_limits() {
        let t = 1_700_000_000_000;
        let (d, mut l) = engine_limits(&[]);
        assert_eq!((d.max_open_orders, d.max_orders_per_10s), (10, 50));
        // With the default cap, two working orders leave room for a third.
        l.record_sent(t);
        l.record_sent(t);
        assert_eq!(l.check(t, &entry()), Ok(()));

        let (c, mut l) = engine_limits(&[("MAX_OPEN_ORDERS", "2"), ("MAX_ORDERS_PER_10S", "300")]);
        assert_eq!((c.max_open_orders, c.max_orders_per_10s), (2, 300));
        assert_eq!(l.check(t, &entry()), Ok(()));
        l.record_sent(t);
        assert_eq!(l.check(t, &entry()), Ok(()));
        l.record_sent(t);
        assert_eq!(l.check(t, &entry()), Err(LimitDenial::TooManyOpenOrders));
        // The cap is for entries: an exit still leaves.
        let exit = OrderCheck {
            exit: true,
            ..entry()
        };
        assert_eq!(l.check(t, &exit), Ok(()));

        // A lowered rate: three orders in 10 s, then the fourth waits although none is still open.
        let (_, mut l) = engine_limits(&[("MAX_ORDERS_PER_10S", "3")]);
        for _ in 0..3 {
            assert_eq!(l.check(t, &entry()), Ok(()));
            l.record_sent(t);
            l.record_done();
        }
        assert_eq!(l.check(t, &entry()), Err(LimitDenial::RateLimited));
        assert_eq!(
            l.check(t + aegis_engine::risk::limits::RATE_WINDOW_MS, &entry()),
            Ok(())
        );
    }

    /// The engine parameters [`params`] builds from these settings (nothing journaled).
    fn params_of(pairs: &[(&str, &str)]) -> Result<EngineParams, RunError> {
        let cfg = Config::from_lookup(|k| {
            pairs
                .iter()
                .find(|(key, _)| *key == k)
                .map(|(_, v)| v.to_string())
        })
        .unwrap();
        let ledger = Ledger::default();
        let ctx = StartContext {
            config: &cfg,
            ledger: &ledger,
            session_id: 1,
            live: None,
        };
        params(&ctx).map(|(p, _)| p)
    }

    #[test]
    fn an_eth_quoted_replay_needs_eths_usd_price_and_then_holds_the_usd_limits_in_eth() {
        let dir = std::env::temp_dir().join(format!("aegis-quote-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("xrpeth.jsonl");
        std::fs::write(
            &file,
            "{\"stream\":\"xrpeth@aggTrade\",\"data\":{\"e\":\"aggTrade\",\"E\":1,\"s\":\"XRPETH\",\"a\":1,\"p\":\"0.0015\",\"q\":\"10\",\"f\":1,\"l\":1,\"T\":1,\"m\":true}}\n",
        )
        .unwrap();
        let f = file.to_str().unwrap();
        let replay = [("FEED", "replay"), ("REPLAY_FILE", f)];
        let e = params_of(&replay).expect_err("no ETH price").to_string();
        assert!(
            e.contains("XRPETH is quoted in ETH") && e.contains("--quote-usd ETH="),
            "{e}"
        );
        let mut with = replay.to_vec();
        with.extend([
            ("QUOTE_USD", "ETH=200"),
            ("FUTURES_AUTOPILOT_MAX_POSITION_SIZE", "50"),
        ]);
        let p = params_of(&with).unwrap();
        // $50 at $200 per ETH; the configured dollar symbols (no data in the replay) are left out.
        assert_eq!(p.limits.max_position_usd, Notional::parse("0.25").unwrap());
        assert_eq!(
            p.symbols
                .iter()
                .map(|s| s.symbol.as_str())
                .collect::<Vec<_>>(),
            ["XRPETH"]
        );
        // A paper run of a dollar pair is untouched by a price it does not use.
        let usd = params_of(&[
            ("QUOTE_USD", "ETH=200"),
            ("FUTURES_AUTOPILOT_MAX_POSITION_SIZE", "50"),
        ])
        .unwrap();
        assert_eq!(usd.limits.max_position_usd, Notional::from_int(50));
        // SYMBOLS quoted in ETH on the simulated market: the same rule.
        let e = params_of(&[("SYMBOLS", "ETHBTC")])
            .expect_err("BTC price missing")
            .to_string();
        assert!(e.contains("--quote-usd BTC="), "{e}");
        let e = params_of(&[("SYMBOLS", "BTCUSDT,XRPETH"), ("QUOTE_USD", "ETH=200")])
            .expect_err("mixed")
            .to_string();
        assert!(e.contains("run them separately"), "{e}");
        // With real money a fixed price would drift from the market: testnet and live refuse it.
        let e = params_of(&[
            ("TRADING_MODE", "testnet"),
            ("SYMBOLS", "XRPETH"),
            ("QUOTE_USD", "ETH=200"),
        ])
        .expect_err("fixed price in testnet")
        .to_string();
        assert!(e.contains("USD-quoted symbols only"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

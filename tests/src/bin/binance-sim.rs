//! `binance-sim`: the Binance USD-M futures simulator as a standalone server.

use aegis_shared::num::Notional;
use aegis_testkit::sim::keys::KeysFile;
use aegis_testkit::sim::ratelimit::Limits;
use aegis_testkit::sim::{start, SimConfig, SimTls, SourceKind};
use anyhow::Context;
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

const LONG_HELP: &str = r#"
STARTING
  binance-sim --keys keys.json --listen 127.0.0.1:9010
  Then point a Binance client at it: REST base http://127.0.0.1:9010 (instead of https://fapi.binance.com),
  streams ws://127.0.0.1:9010 (instead of wss://fstream.binance.com), WebSocket API
  ws://127.0.0.1:9010/ws-fapi/v1. Plain TCP by default.

TLS (HTTPS and WSS on the same single port)
  binance-sim --tls --tls-cert-out sim-ca.pem     a self-signed certificate for localhost and 127.0.0.1, new
                                                  each start; the client trusts sim-ca.pem (e.g. Python
                                                  REQUESTS_CA_BUNDLE=sim-ca.pem / SSL_CERT_FILE=sim-ca.pem)
  binance-sim --tls-cert cert.pem --tls-key key.pem   your certificate chain and key (PEM)
  URLs become https://127.0.0.1:9010, wss://127.0.0.1:9010 and wss://127.0.0.1:9010/ws-fapi/v1. The
  certificate file is written before the "listening" line is printed.
  The bot: TRADING_MODE=testnet with the testnet URLs overridden to these (see the project README).
  `binance-sim gen-key --account alice [--ed25519]` prints a keys-file entry and the matching secret.

KEYS FILE (JSON)
  {"keys": [
     {"api_key": "<exactly 64 ASCII letters/digits>",
      "account": "alice",                        (optional; default: the api_key)
      "secret": "<HMAC-SHA256 secret>",           (either this ...)
      "ed25519_public_key": "-----BEGIN PUBLIC KEY-----\n...\n-----END PUBLIC KEY-----\n",  (... or this)
      "permissions": {"reading": true, "futures": true, "spot": false, "withdrawals": false},
      "ip_restrict": false, "allowed_ips": ["127.0.0.1"]}],
   "accounts": [{"name": "alice", "usdt": "10000"}]}   (optional; other accounts get --initial-usdt)
  Several keys may share an account. Signatures are checked over the raw query+body bytes; session.logon on
  the WebSocket API needs an Ed25519 key.

SERVED (Binance paths)
  REST: /fapi/v1/ping, time, exchangeInfo, depth, ticker/bookTicker, ticker/24hr, klines (1m..1d, built
  from the simulator's own trades), leverageBracket; /fapi/v1/order (POST/GET/DELETE),
  openOrders, allOpenOrders (DELETE); /fapi/v2/account, /fapi/v2/balance, /fapi/v2/positionRisk,
  /fapi/v3/positionRisk; /fapi/v1/leverage; /fapi/v1/listenKey (POST/PUT/DELETE);
  /sapi/v1/account/apiRestrictions; /fapi/v1/premiumIndex; /fapi/v1/income (FUNDING_FEE); /api/v3/ping and /api/v3/time (python-binance's constructor pings).
  Algo Order API (conditional orders; /fapi/v1/order answers -4120 for them): /fapi/v1/algoOrder
  (POST/GET/DELETE), openAlgoOrders, algoOpenOrders (DELETE), allAlgoOrders; STOP_MARKET and
  TAKE_PROFIT_MARKET on MARK_PRICE or CONTRACT_PRICE, ALGO_UPDATE on the user data stream.
  Streams: /ws/<stream>, /ws (SUBSCRIBE later), /stream?streams=a/b, /public/ws/<bookTicker|depth stream>,
  /market/ws/<aggTrade|markPrice stream> (and /public|/market/stream?streams=); streams: <sym>@bookTicker,
  <sym>@aggTrade, <sym>@depth[@100ms|@250ms|@500ms], <sym>@markPrice[@1s].
  User data: /ws/<listenKey>, /private/ws?listenKey=<key>. WebSocket API: /ws-fapi/v1 (session.logon,
  session.status, session.logout, order.place, order.cancel, order.status).

ADMIN API (test kit only; JSON bodies; all under /admin)
  GET  /admin/health | /admin/state | /admin/ws/connections
  GET  /admin/accounts/{account}              wallet, non-zero positions, open orders (the exchange's truth)
  GET  /admin/accounts/{account}/openOrders | /admin/accounts/{account}/positions
  GET  /admin/accounts/{account}/algoOrders   every algo (conditional) order, any status
  POST /admin/accounts/{account}/wallet       {"usdt":"5000"}
  POST /admin/accounts/{account}/orders/fill   {"clientOrderId":..,"qty":"0.001"}  fill an open order (part or all)
  POST /admin/accounts/{account}/orders/expire {"clientOrderId":..}               end an open order EXPIRED
  POST /admin/accounts/{account}/liquidate    {"symbol":"BTCUSDT","price":"59000","adl":false}  forced close
                                              (autoclose-<ms> or adl_autoclose ORDER_TRADE_UPDATE)
  GET  /admin/accounts/{account}/totals       fees per asset and in USDT, realized PnL, funding, liquidations
  POST /admin/funding                         {"intervalMs":1000,"rate":"0.0001"}  settle funding every interval
                                              (0: stop); ACCOUNT_UPDATE FUNDING_FEE + income records
  POST /admin/funding/settle                  settle once, now
  POST /admin/fees/bnb                        {"price":"612.35"}  commissions in BNB at this BNBUSDT price (null: USDT)
  POST /admin/market/quote                    {"symbol","bid","ask","bidQty","askQty"}  pins the symbol
  POST /admin/market/release                  {"symbol"} (or {} for all): the price source drives it again
  GET  /admin/market/{symbol}
  POST /admin/clock                           {"skewMs": -3000}       server time = wall + skew
  POST /admin/faults/delay                    {"ms":2000,"count":1,"pathPrefix":"/fapi/v1/order"}
  POST /admin/faults/order503                 {"count":1,"placed":true}  -1007/HTTP 503; placed or not
  POST /admin/faults/depthGap                 {"symbol":"BTCUSDT"}    next depth update skipped (pu breaks)
  POST /admin/faults/maxLeverage              {"max":1}               leverage above it answers -4028 (null: off)
  POST /admin/faults/holdOrders               {"count":1}             next orders stay NEW (even MARKET) until filled
  POST /admin/faults/clear
  POST /admin/keys                            a keys-file key entry (add a key while running)
  POST /admin/keys/{api_key}/revoke           WS-API sessions on it get {"id":null,"status":401,...}
  GET  /admin/keys/usage                      per key {requests, refused, lastUsedMs} (REST + WebSocket API)
  GET  /admin/requests                        REST requests per path so far (futures and spot)
  POST /admin/keys/{api_key}/permissions      {"futures":false,"withdrawals":true,"ipRestrict":true,"allowedIps":[..]}
  POST /admin/ws/drop       {"target":"all|market|user|api"}   TCP cut, no close frame
  POST /admin/ws/stall      {"target":..., "ms": 5000}         no data, no pongs (ms omitted: until unstall)
  POST /admin/ws/unstall    {"target":...}
  POST /admin/ws/malformed  {"target":..., "payload": "..."}   a broken text frame
  POST /admin/ws/disconnect {"target":...}                     the 24-hour disconnect, now
  POST /admin/ws/lifetime   {"ms": 60000}                      connection lifetime (default 24 h)
  POST /admin/listenKeys/expire  {"listenKey":..} | {"account":..} | {}   listenKeyExpired + close
  POST /admin/listenKeys/forget                                          drop keys silently (keep-alive: -1125)
  POST /admin/limits        {"weightPerMinute":2400,"ordersPer10s":300,"ordersPerMinute":1200,"banAfter429s":3,"banSecs":120}
  POST /admin/limits/reset
SPOT (REST /api/v3, WebSocket API /ws-api/v3 with userDataStream.subscribe(.signature), streams /spot/ws, /spot/stream)
  GET  /admin/spot/accounts/{account}          balances, open orders, trades, commissions per asset
  POST /admin/spot/accounts/{account}/balances {"BTC":"1.5","USDT":"1000"}  free balances (balanceUpdate)
  POST /admin/spot/accounts/{account}/commission {"maker":"0.001","taker":"0.001"}
  POST /admin/spot/accounts/{account}/orders/fill {"clientOrderId":..,"qty":"0.001"}  fill at its price, as maker
  POST /admin/spot/market/price                {"symbol":"BTCUSDT","price":"59000","bid":..,"ask":..,"bidQty":..,"askQty":..}  stops trigger
  POST /admin/spot/fees/bnb                    {"enabled":true}  commissions in BNB when the account holds enough
  POST /admin/spot/market/fill_parts          {"parts":3}  marketable spot orders fill in that many trades (partial fills)
  POST /admin/spot/userDataStream/terminate    {"account":..}  eventStreamTerminated to its subscriptions
  POST /admin/spot/limits                      {"weightPerMinute":6000,"ordersPer10s":100,...}  spot's own counters
  POST /admin/spot/market/percent_price       {"symbol":..,"down":"0.99","up":"1.01"}  the pair's PERCENT_PRICE_BY_SIDE band
  Rust: aegis_testkit::sim::client::{AdminClient, BlockingAdminClient, AdminCall}.
"#;

#[derive(Parser, Debug)]
#[command(name = "binance-sim", version, about = "Binance USD-M futures and spot simulator (REST, streams, WebSocket API) with fault injection",
          after_long_help = LONG_HELP)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9010", env = "BINANCE_SIM_LISTEN")]
    listen: SocketAddr,
    /// Keys file (JSON, see below). Without it no signed endpoint accepts anything.
    #[arg(long, env = "BINANCE_SIM_KEYS")]
    keys: Option<PathBuf>,
    /// Starting USDT balance of accounts not listed in the keys file.
    #[arg(long, default_value = "10000")]
    initial_usdt: String,
    /// Market tick in milliseconds.
    #[arg(long, default_value_t = 100)]
    tick_ms: u64,
    /// Seed of the simulated market.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Price source: `engine` (the engine's simulated market), `walk` (simple random walk) or `frozen`
    /// (prices move only through POST /admin/market/quote).
    #[arg(long, default_value = "engine", value_parser = ["engine", "walk", "frozen"])]
    market: String,
    /// REQUEST_WEIGHT per minute.
    #[arg(long, default_value_t = 2400)]
    weight_per_minute: u32,
    /// ORDERS per 10 seconds.
    #[arg(long, default_value_t = 300)]
    orders_per_10s: u32,
    /// ORDERS per minute.
    #[arg(long, default_value_t = 1200)]
    orders_per_minute: u32,
    /// listenKey validity in seconds.
    #[arg(long, default_value_t = 3600)]
    listen_key_ttl_secs: u64,
    /// WebSocket connection lifetime in seconds.
    #[arg(long, default_value_t = 86_400)]
    ws_lifetime_secs: u64,
    /// Serve HTTPS/WSS with a self-signed certificate for localhost and 127.0.0.1 (see --tls-cert-out).
    #[arg(long, conflicts_with = "tls_cert")]
    tls: bool,
    /// Serve HTTPS/WSS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// With --tls: write the generated certificate (PEM) here for clients to trust.
    #[arg(long, requires = "tls")]
    tls_cert_out: Option<PathBuf>,
}

/// The TLS setting the flags ask for (clap already rejects contradictory combinations).
fn tls_of(cli: &Cli) -> anyhow::Result<Option<SimTls>> {
    let read = |p: &PathBuf| {
        std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
    };
    Ok(match (&cli.tls_cert, &cli.tls_key) {
        (Some(c), Some(k)) => Some(SimTls::Pem {
            cert: read(c)?,
            key: read(k)?,
        }),
        _ if cli.tls => Some(SimTls::SelfSigned),
        _ => None,
    })
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Print a new keys-file entry and its secret (HMAC) or private key (Ed25519, PKCS#8 PEM).
    GenKey {
        /// Account name.
        #[arg(long, default_value = "default")]
        account: String,
        /// Make an Ed25519 key instead of an HMAC one.
        #[arg(long)]
        ed25519: bool,
    },
}

fn random_alnum(n: usize) -> String {
    use rand::Rng;
    rand::thread_rng()
        .sample_iter(&rand::distributions::Alphanumeric)
        .take(n)
        .map(char::from)
        .collect()
}

fn gen_key(account: &str, ed: bool) -> anyhow::Result<()> {
    use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey};
    let api_key = random_alnum(64);
    if ed {
        let sk = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
        let public = sk
            .verifying_key()
            .to_public_key_pem(Default::default())
            .context("encoding the public key")?;
        let private = sk
            .to_pkcs8_pem(Default::default())
            .context("encoding the private key")?;
        let entry = serde_json::json!({"api_key": api_key, "account": account, "ed25519_public_key": public,
            "permissions": {"reading": true, "futures": true, "spot": false, "withdrawals": false}});
        println!(
            "keys-file entry:\n{}",
            serde_json::to_string_pretty(&entry)?
        );
        println!(
            "private key (give it to the client, keep it out of the keys file):\n{}",
            private.as_str()
        );
    } else {
        let secret = random_alnum(64);
        let entry = serde_json::json!({"api_key": api_key, "account": account, "secret": secret,
            "permissions": {"reading": true, "futures": true, "spot": false, "withdrawals": false}});
        println!("{}", serde_json::to_string_pretty(&entry)?);
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Cmd::GenKey { account, ed25519 }) = &cli.cmd {
        return gen_key(account, *ed25519);
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let keys = match &cli.keys {
        Some(p) => KeysFile::load(p)
            .with_context(|| "loading the keys file (see --help for its format)")?,
        None => KeysFile::default(),
    };
    let cfg = SimConfig {
        listen: cli.listen,
        keys,
        default_wallet: Notional::parse(&cli.initial_usdt).map_err(|_| {
            anyhow::anyhow!("--initial-usdt must be a decimal amount such as 10000")
        })?,
        limits: Limits {
            weight_per_minute: cli.weight_per_minute,
            orders_per_10s: cli.orders_per_10s,
            orders_per_minute: cli.orders_per_minute,
            ..Limits::default()
        },
        tick_ms: cli.tick_ms,
        seed: cli.seed,
        source: match cli.market.as_str() {
            "walk" => SourceKind::RandomWalk,
            "frozen" => SourceKind::Frozen,
            _ => SourceKind::EngineSim,
        },
        listen_key_ttl_ms: cli.listen_key_ttl_secs * 1000,
        ws_lifetime_ms: cli.ws_lifetime_secs * 1000,
        tls: tls_of(&cli)?,
        ..SimConfig::default()
    };
    let handle = start(cfg).await?;
    if let (Some(out), Some(pem)) = (&cli.tls_cert_out, handle.ca_pem()) {
        std::fs::write(out, pem).with_context(|| format!("writing {}", out.display()))?;
    }
    // The first line tells scripts where to connect (useful with --listen 127.0.0.1:0).
    println!("binance-sim listening on {}", handle.addr);
    tracing::info!(addr = %handle.addr, url = %handle.base_url(), "binance-sim ready");
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    handle.shutdown().await;
    Ok(())
}

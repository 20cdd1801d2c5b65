//! The slow-path REST client for USD-M futures (and `/sapi` key restrictions): signed requests, the clock
//! offset, rate-limit headers and Binance's error classes.
//!
//! - Signing reuses `aegis_engine::sign` (HMAC pre-keyed, or Ed25519); all params go in the query string,
//!   `signature` last (Binance accepts that for every method).
//! - Clock: `GET /fapi/v1/time` sets the offset at start and every [`CLOCK_REFRESH`]; a -1021 answer triggers
//!   one resync and one retry of that request, never a loop.
//! - Rate limits: `X-MBX-USED-WEIGHT-1M` above [`SLOW_DOWN_AT`] of the limit delays the next request; 429/418
//!   record `Retry-After` and refuse to send anything until then ([`RestError::RateLimited`]); the caller halts
//!   new entries meanwhile.
//! - 5xx and timeouts are [`RestError::Unknown`]: for an order, query it by client id before anything else.
//! - -2014/-2015 (and HTTP 401) are [`RestError::KeyRejected`].
//! - Host budget (issue 15.5): every `/fapi` request first charges its weight ([`request_weight`]) to the host's
//!   shared budget ([`crate::fleet::budget`]) and waits while the bots on this host have used it up; a 429/418
//!   blocks every bot on the host, and `X-MBX-USED-WEIGHT-1M` tells the budget about weight used by others.

use super::env::{Credentials, Endpoints};
use aegis_engine::sign::rest::encode_signed_query;
use aegis_shared::event::OrderStatus;
use aegis_shared::num::Notional;
use aegis_shared::Market;
use serde_json::Value;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// REQUEST_WEIGHT per minute of USD-M futures.
pub const WEIGHT_LIMIT: u64 = 2400;
/// Share of the weight limit above which requests are spaced out.
pub const SLOW_DOWN_AT: f64 = 0.8;
/// How often the clock offset is refreshed.
pub const CLOCK_REFRESH: Duration = Duration::from_secs(600);
/// `recvWindow` sent with signed requests.
pub const RECV_WINDOW_MS: u32 = 5000;

/// Why a request failed. Messages never contain key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestError {
    /// The exchange refused the request (the request had no effect).
    #[error("Binance refused {path}: {code} {msg} (HTTP {status})")]
    Api {
        /// Path.
        path: String,
        /// HTTP status.
        status: u16,
        /// Binance code.
        code: i32,
        /// Binance message.
        msg: String,
    },
    /// The key was refused (-2014 format invalid, -2015 invalid key/IP/permissions, HTTP 401).
    #[error("Binance refused the API key on {path}: {code} {msg}")]
    KeyRejected {
        /// Path.
        path: String,
        /// Binance code.
        code: i32,
        /// Binance message.
        msg: String,
    },
    /// 429/418: nothing may be sent until `retry_after` has passed.
    #[error("rate limited by Binance (HTTP {status}); retry after {retry_after:?}")]
    RateLimited {
        /// 429 or 418 (IP banned).
        status: u16,
        /// How long to wait.
        retry_after: Duration,
    },
    /// 5xx or timeout: the outcome is unknown (an order may or may not exist).
    #[error("outcome unknown for {path}: {why}")]
    Unknown {
        /// Path.
        path: String,
        /// What happened.
        why: String,
    },
    /// The request could not be sent (connection refused, DNS).
    #[error("cannot reach {path}: {why}")]
    Transport {
        /// Path.
        path: String,
        /// What happened.
        why: String,
    },
    /// No key configured (read-only mode).
    #[error("no API key configured (read-only mode)")]
    NoKey,
    /// The answer was not what Binance sends.
    #[error("unexpected answer from {path}: {why}")]
    Decode {
        /// Path.
        path: String,
        /// What was wrong.
        why: String,
    },
}

impl RestError {
    /// The Binance error code, if the exchange answered with one.
    pub fn code(&self) -> Option<i32> {
        match self {
            Self::Api { code, .. } | Self::KeyRejected { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// Which base URL a path lives on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Base {
    /// USD-M futures (`/fapi`).
    Fapi,
    /// Wallet/key endpoints (`/sapi`).
    Sapi,
    /// Spot (`/api/v3`, `MARKETS=spot`): its own host at Binance, with its own REQUEST_WEIGHT
    /// ([`SPOT_WEIGHT_LIMIT`]) and its own bans, counted apart from the futures ones.
    Spot,
}

/// Spot's REQUEST_WEIGHT per minute (`/api/v3/exchangeInfo` of api.binance.com).
pub const SPOT_WEIGHT_LIMIT: u64 = 6000;

/// How a request authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// Public.
    None,
    /// `X-MBX-APIKEY` only (listenKey).
    KeyOnly,
    /// Key + timestamp + signature.
    Signed,
}

/// Wall clock in ms.
pub use aegis_engine::clock::wall_ms;

/// REQUEST_WEIGHT of a `/fapi` request as Binance charges it to the IP (USD-M futures docs): what the host
/// budget is charged before the request goes out.
pub fn request_weight(method: &reqwest::Method, path: &str, params: &[(&str, String)]) -> u64 {
    let p = |k: &str| {
        params
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.as_str())
    };
    match path {
        "/fapi/v1/depth" => match p("limit")
            .and_then(|l| l.parse::<u32>().ok())
            .unwrap_or(500)
        {
            0..=50 => 2,
            51..=100 => 5,
            101..=500 => 10,
            _ => 20,
        },
        "/fapi/v1/openOrders" | "/fapi/v1/openAlgoOrders" if p("symbol").is_none() => 40,
        "/fapi/v1/allAlgoOrders" => 5,
        "/fapi/v1/ticker/bookTicker" if p("symbol").is_none() => 5,
        "/fapi/v1/ticker/bookTicker" => 2,
        "/fapi/v2/account"
        | "/fapi/v3/account"
        | "/fapi/v2/balance"
        | "/fapi/v3/balance"
        | "/fapi/v2/positionRisk"
        | "/fapi/v3/positionRisk" => 5,
        "/fapi/v1/userTrades" | "/fapi/v1/allOrders" => 5,
        "/fapi/v1/income" => 30,
        "/fapi/v1/positionSide/dual" | "/fapi/v1/multiAssetsMargin"
            if *method == reqwest::Method::GET =>
        {
            30
        }
        // Placing an order costs order-rate, not IP weight.
        "/fapi/v1/order" | "/fapi/v1/algoOrder" if *method == reqwest::Method::POST => 0,
        _ => 1,
    }
}

/// Shared rate-limit and clock state.
#[derive(Debug, Default)]
pub struct Shared {
    /// Server time minus local time, ms.
    pub offset_ms: AtomicI64,
    /// Last `X-MBX-USED-WEIGHT-1M`.
    pub used_weight: AtomicU64,
    /// Nothing may be sent before this wall time (ms).
    pub blocked_until_ms: AtomicU64,
    /// Clock resyncs done.
    pub resyncs: AtomicU64,
    /// Last `X-MBX-USED-WEIGHT-1M` of the spot host.
    pub spot_used_weight: AtomicU64,
    /// Nothing may be sent to the spot host before this wall time (ms): spot bans are the spot host's own.
    pub spot_blocked_until_ms: AtomicU64,
    /// The host budget file failed once (logged once, then the bot paces itself by its own headers only).
    budget_failed: std::sync::atomic::AtomicBool,
}

/// The REST client. Cheap to clone.
#[derive(Clone)]
pub struct RestClient {
    http: reqwest::Client,
    /// Endpoints.
    pub endpoints: Arc<Endpoints>,
    /// Shared by every clone, so a key switch ([`RestClient::set_credentials`]) reaches all of them at once.
    creds: Arc<std::sync::RwLock<Option<Arc<Credentials>>>>,
    /// Clock and limits.
    pub shared: Arc<Shared>,
    /// The host's request-weight budget shared with the other bots here (`None`: this client paces alone).
    budget: Option<Arc<crate::fleet::budget::HostBudget>>,
    /// The market the order paths speak ([`RestClient::on_market`]): the clock, account, open orders,
    /// exchangeInfo, depth and the order endpoints (place, query, cancel) go to `/fapi` or to spot's `/api/v3`,
    /// so the REST worker serves the engine's orders on either market unchanged.
    market: Market,
}

impl std::fmt::Debug for RestClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestClient")
            .field("endpoints", &self.endpoints)
            .field("has_key", &self.credentials().is_some())
            .finish()
    }
}

fn hdr_u64(h: &reqwest::header::HeaderMap, name: &str) -> Option<u64> {
    h.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// What a key may do, from `GET /sapi/v1/account/apiRestrictions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyPermissions {
    /// `enableWithdrawals`.
    pub withdrawals: bool,
    /// `ipRestrict`.
    pub ip_restrict: bool,
    /// `enableSpotAndMarginTrading`.
    pub spot: bool,
}

impl RestClient {
    /// A client for `endpoints`, signing with `creds` (or read-only without).
    pub fn new(endpoints: Endpoints, creds: Option<Credentials>) -> Result<Self, RestError> {
        Self::with_extra_ca(endpoints, creds, None)
    }

    /// Like [`RestClient::new`], also trusting the PEM certificates in `extra_ca` (a simulator or test
    /// endpoint; `BINANCE_EXTRA_CA_FILE`) in addition to the public roots.
    pub fn with_extra_ca(
        endpoints: Endpoints,
        creds: Option<Credentials>,
        extra_ca: Option<&[u8]>,
    ) -> Result<Self, RestError> {
        let mut builder = reqwest::Client::builder();
        if let Some(pem) = extra_ca {
            let certs =
                reqwest::Certificate::from_pem_bundle(pem).map_err(|e| RestError::Transport {
                    path: String::new(),
                    why: format!("extra CA: {e}"),
                })?;
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        let http = builder
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("aegis/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| RestError::Transport {
                path: String::new(),
                why: e.to_string(),
            })?;
        let budget = crate::fleet::budget::for_endpoint(&endpoints.fapi);
        Ok(Self {
            http,
            budget,
            endpoints: Arc::new(endpoints),
            creds: Arc::new(std::sync::RwLock::new(creds.map(Arc::new))),
            shared: Arc::new(Shared::default()),
            market: Market::Futures,
        })
    }

    /// The same client speaking `market`'s order paths (see the field's docs).
    pub fn on_market(mut self, market: Market) -> Self {
        self.market = market;
        self
    }

    /// The market this client's order paths speak.
    pub fn market(&self) -> Market {
        self.market
    }

    /// The base and path of an endpoint on this client's market: `fapi` on futures, `spot` on spot.
    pub fn at(&self, fapi: &'static str, spot: &'static str) -> (Base, &'static str) {
        match self.market {
            Market::Futures => (Base::Fapi, fapi),
            Market::Spot => (Base::Spot, spot),
        }
    }

    /// Uses `budget` (or none) instead of the one installed for `aegis run`.
    pub fn with_host_budget(
        mut self,
        budget: Option<Arc<crate::fleet::budget::HostBudget>>,
    ) -> Self {
        self.budget = budget;
        self
    }

    /// The host budget this client charges, if any (the order path on the engine thread may charge it too).
    pub fn host_budget(&self) -> Option<Arc<crate::fleet::budget::HostBudget>> {
        self.budget.clone()
    }

    fn budget_failed(&self, e: &crate::fleet::budget::BudgetError) {
        if !self.shared.budget_failed.swap(true, Ordering::Relaxed) {
            tracing::error!("{e}; pacing by this bot's own headers only from now on");
        }
    }

    /// Waits for the host budget to allow `weight` (a broken budget file never stops trading).
    async fn charge_host(&self, weight: u64) {
        if let Some(b) = &self.budget {
            if let Err(e) = b.acquire(weight).await {
                self.budget_failed(&e);
            }
        }
    }

    /// Tells the host budget what the exchange said: the weight it counts, or a ban until `blocked_until_ms`.
    fn report_host(&self, used: Option<u64>, blocked_until_ms: Option<u64>) {
        if let Some(b) = &self.budget {
            let r = match (used, blocked_until_ms) {
                (_, Some(until)) => b.block_until(until),
                (Some(u), None) => b.observe_used(u),
                (None, None) => Ok(()),
            };
            if let Err(e) = r {
                self.budget_failed(&e);
            }
        }
    }

    /// The credentials, if any (a snapshot: a key switch does not change what a caller already holds).
    pub fn credentials(&self) -> Option<Arc<Credentials>> {
        self.creds.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Switches every clone of this client to `creds` (the order gateway does it between two orders, together
    /// with its order encoder; see [`super::keyswitch`]). Requests already being built keep the key they read.
    pub fn set_credentials(&self, creds: Credentials) {
        *self.creds.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(creds));
    }

    /// Exchange time now (local clock + offset), ms.
    ///
    /// (The engine thread reads the same through [`ClientClock`].)
    pub fn now_ms(&self) -> u64 {
        (wall_ms() as i64 + self.shared.offset_ms.load(Ordering::Relaxed)).max(0) as u64
    }

    /// `GET /fapi/v1/time` (spot: `/api/v3/time`): sets the offset (taking half the round trip as the one-way
    /// delay).
    pub async fn sync_time(&self) -> Result<i64, RestError> {
        let t0 = wall_ms();
        let (base, path) = self.at("/fapi/v1/time", "/api/v3/time");
        let v = self
            .request_once(reqwest::Method::GET, base, path, &[], Auth::None)
            .await?;
        let t1 = wall_ms();
        let server = v
            .get("serverTime")
            .and_then(Value::as_u64)
            .ok_or_else(|| decode_error(path, "no serverTime"))?;
        let offset = server as i64 - ((t0 + t1) / 2) as i64;
        self.shared.offset_ms.store(offset, Ordering::Relaxed);
        Ok(offset)
    }

    /// The used-weight cell, the ban cell and the weight limit of `base`'s host (`/sapi` is paced with the
    /// futures cells, as before).
    fn limits_of(&self, base: Base) -> (&AtomicU64, &AtomicU64, u64) {
        let s = &self.shared;
        match base {
            Base::Spot => (
                &s.spot_used_weight,
                &s.spot_blocked_until_ms,
                SPOT_WEIGHT_LIMIT,
            ),
            Base::Fapi | Base::Sapi => (&s.used_weight, &s.blocked_until_ms, WEIGHT_LIMIT),
        }
    }

    /// Sends one request (see the module docs for the error classes). `params` values must be query-safe.
    pub async fn request(
        &self,
        method: reqwest::Method,
        base: Base,
        path: &str,
        params: &[(&str, String)],
        auth: Auth,
    ) -> Result<Value, RestError> {
        match self
            .request_once(method.clone(), base, path, params, auth)
            .await
        {
            Err(RestError::Api { code: -1021, .. }) if auth == Auth::Signed => {
                // The clock drifted: one resync and one retry. A second -1021 is returned as is.
                self.shared.resyncs.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(path, "Binance says our timestamp is outside recvWindow (-1021): resyncing the clock once");
                self.sync_time().await?;
                self.request_once(method, base, path, params, auth).await
            }
            r => r,
        }
    }

    /// Refuses to send while the exchange's last 429/418 ban runs (sending anyway would lengthen it).
    fn not_blocked(&self, base: Base) -> Result<(), RestError> {
        let blocked = self.limits_of(base).1.load(Ordering::Relaxed);
        let now = wall_ms();
        if blocked > now {
            return Err(RestError::RateLimited {
                status: 429,
                retry_after: Duration::from_millis(blocked - now),
            });
        }
        Ok(())
    }

    async fn request_once(
        &self,
        method: reqwest::Method,
        base: Base,
        path: &str,
        params: &[(&str, String)],
        auth: Auth,
    ) -> Result<Value, RestError> {
        self.not_blocked(base)?;
        if base == Base::Fapi {
            // /sapi has its own limits at Binance.
            self.charge_host(request_weight(&method, path, params))
                .await;
        }
        let (used_cell, blocked_cell, limit) = self.limits_of(base);
        let used = used_cell.load(Ordering::Relaxed);
        if used as f64 > limit as f64 * SLOW_DOWN_AT {
            // Close to the limit: space requests out instead of running into 429.
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let base_url = match base {
            Base::Fapi => self.endpoints.fapi.as_str(),
            Base::Spot => self.endpoints.spot.as_str(),
            Base::Sapi => self
                .endpoints
                .sapi
                .as_deref()
                .ok_or_else(|| RestError::Transport {
                    path: path.into(),
                    why: "this environment has no /sapi endpoint".into(),
                })?,
        };
        // One read of the key per request: the signature and the header always belong to the same key, even
        // while a key switch happens.
        let creds = self.credentials();
        let query = match auth {
            Auth::Signed => {
                let creds = creds.as_ref().ok_or(RestError::NoKey)?;
                let ts = self.now_ms().to_string();
                let rw = RECV_WINDOW_MS.to_string();
                let mut ps: Vec<(&str, &[u8])> =
                    params.iter().map(|(k, v)| (*k, v.as_bytes())).collect();
                ps.push(("recvWindow", rw.as_bytes()));
                ps.push(("timestamp", ts.as_bytes()));
                let mut buf = vec![0u8; 8192];
                let n = encode_signed_query(&ps, &creds.signer, &mut buf)
                    .map_err(|e| decode_error(path, e.to_string()))?;
                String::from_utf8_lossy(&buf[..n]).into_owned()
            }
            _ => params
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("&"),
        };
        let url = if query.is_empty() {
            format!("{base_url}{path}")
        } else {
            format!("{base_url}{path}?{query}")
        };
        let mut rb = self.http.request(method, &url);
        if auth != Auth::None {
            let creds = creds.as_ref().ok_or(RestError::NoKey)?;
            rb = rb.header("X-MBX-APIKEY", creds.api_key.expose());
        }
        let resp = match rb.send().await {
            Ok(r) => r,
            Err(e) if e.is_timeout() => {
                return Err(RestError::Unknown {
                    path: path.into(),
                    why: "timed out".into(),
                })
            }
            Err(e) if e.is_connect() => {
                return Err(RestError::Transport {
                    path: path.into(),
                    why: "connection failed".into(),
                })
            }
            Err(_) => {
                // Sent or not, we cannot tell.
                return Err(RestError::Unknown {
                    path: path.into(),
                    why: "connection lost".into(),
                });
            }
        };
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let used_1m = hdr_u64(&headers, "x-mbx-used-weight-1m");
        if let Some(w) = used_1m {
            used_cell.store(w, Ordering::Relaxed);
        }
        if status == 429 || status == 418 {
            let secs =
                hdr_u64(&headers, "retry-after").unwrap_or(if status == 418 { 120 } else { 5 });
            let retry_after = Duration::from_secs(secs.max(1));
            let until = wall_ms() + retry_after.as_millis() as u64;
            blocked_cell.fetch_max(until, Ordering::Relaxed);
            if base == Base::Fapi {
                self.report_host(None, Some(until));
            }
            return Err(RestError::RateLimited {
                status,
                retry_after,
            });
        }
        if base == Base::Fapi {
            self.report_host(used_1m, None);
        }
        let body = resp.bytes().await.map_err(|_| RestError::Unknown {
            path: path.into(),
            why: "body lost".into(),
        })?;
        if status >= 500 {
            return Err(RestError::Unknown {
                path: path.into(),
                why: format!("HTTP {status}"),
            });
        }
        let v: Value = serde_json::from_slice(&body)
            .map_err(|_| decode_error(path, format!("HTTP {status}, body is not JSON")))?;
        if status >= 400 {
            return Err(api_error(path, status, &v));
        }
        Ok(v)
    }

    /// Signed GET.
    pub async fn get_signed(
        &self,
        base: Base,
        path: &str,
        params: &[(&str, String)],
    ) -> Result<Value, RestError> {
        self.request(reqwest::Method::GET, base, path, params, Auth::Signed)
            .await
    }

    /// `GET /fapi/v2/account` (spot: `GET /api/v3/account`, the balances).
    pub async fn account(&self) -> Result<Value, RestError> {
        let (base, path) = self.at("/fapi/v2/account", "/api/v3/account");
        self.get_signed(base, path, &[]).await
    }

    /// `GET /sapi/v1/account/apiRestrictions`: the permissions the start-up and periodic checks judge.
    pub async fn api_restrictions(&self) -> Result<KeyPermissions, RestError> {
        let p = "/sapi/v1/account/apiRestrictions";
        let v = self.get_signed(Base::Sapi, p, &[]).await?;
        let b = |k: &str| {
            v.get(k)
                .and_then(Value::as_bool)
                .ok_or_else(|| decode_error(p, format!("no boolean {k}")))
        };
        Ok(KeyPermissions {
            withdrawals: b("enableWithdrawals")?,
            ip_restrict: b("ipRestrict")?,
            spot: b("enableSpotAndMarginTrading")?,
        })
    }

    /// `GET /fapi/v1/openOrders` (spot: `/api/v3/openOrders`).
    pub async fn open_orders(&self) -> Result<Vec<Value>, RestError> {
        let (base, path) = self.at("/fapi/v1/openOrders", "/api/v3/openOrders");
        let v = self.get_signed(base, path, &[]).await?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }

    /// `GET /fapi/v2/positionRisk`.
    pub async fn position_risk(&self) -> Result<Vec<Value>, RestError> {
        let v = self
            .get_signed(Base::Fapi, "/fapi/v2/positionRisk", &[])
            .await?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }

    /// The account's modes: (`GET /fapi/v1/positionSide/dual` → hedge mode, `GET /fapi/v1/multiAssetsMargin` →
    /// multi-assets margin).
    pub async fn account_modes(&self) -> Result<(bool, bool), RestError> {
        let flag = |v: &Value, p: &str, k: &str| {
            v.get(k)
                .and_then(Value::as_bool)
                .ok_or_else(|| decode_error(p, format!("no boolean {k}")))
        };
        let (pd, pm) = ("/fapi/v1/positionSide/dual", "/fapi/v1/multiAssetsMargin");
        let dual = self.get_signed(Base::Fapi, pd, &[]).await?;
        let multi = self.get_signed(Base::Fapi, pm, &[]).await?;
        Ok((
            flag(&dual, pd, "dualSidePosition")?,
            flag(&multi, pm, "multiAssetsMargin")?,
        ))
    }

    /// Unauthenticated `GET` of market data.
    async fn get_public(&self, path: &str, params: &[(&str, String)]) -> Result<Value, RestError> {
        let base = match self.market {
            Market::Futures => Base::Fapi,
            Market::Spot => Base::Spot,
        };
        self.request(reqwest::Method::GET, base, path, params, Auth::None)
            .await
    }

    /// `GET /fapi/v1/depth?symbol=&limit=` (the local order book's snapshot).
    pub async fn depth(&self, symbol: &str, limit: u32) -> Result<Value, RestError> {
        let params = [("symbol", symbol.to_string()), ("limit", limit.to_string())];
        self.get_public(self.at("/fapi/v1/depth", "/api/v3/depth").1, &params)
            .await
    }

    /// `GET /fapi/v1/exchangeInfo` (spot: `/api/v3/exchangeInfo`).
    pub async fn exchange_info(&self) -> Result<Value, RestError> {
        let path = self.at("/fapi/v1/exchangeInfo", "/api/v3/exchangeInfo").1;
        self.get_public(path, &[]).await
    }

    /// `GET /api/v3/exchangeInfo?symbols=[…]` (spot): only the traded pairs, since the full answer is megabytes.
    pub async fn spot_exchange_info(
        &self,
        symbols: &[aegis_shared::Symbol],
    ) -> Result<Value, RestError> {
        // `["BTCUSDT","ETHUSDT"]`, percent-encoded: the params must be query-safe.
        let list = symbols
            .iter()
            .map(|s| format!("%22{s}%22"))
            .collect::<Vec<_>>()
            .join("%2C");
        let params = [("symbols", format!("%5B{list}%5D"))];
        self.request(
            reqwest::Method::GET,
            Base::Spot,
            "/api/v3/exchangeInfo",
            &params,
            Auth::None,
        )
        .await
    }

    /// `GET /fapi/v1/order?origClientOrderId=` (spot: `/api/v3/order`).
    pub async fn query_order(&self, symbol: &str, client_id: &str) -> Result<Value, RestError> {
        let params = order_ref(symbol, client_id);
        let (base, path) = self.at("/fapi/v1/order", "/api/v3/order");
        self.get_signed(base, path, &params).await
    }

    /// `DELETE /fapi/v1/order?origClientOrderId=` (spot: `/api/v3/order`).
    pub async fn cancel_order(&self, symbol: &str, client_id: &str) -> Result<Value, RestError> {
        let params = order_ref(symbol, client_id);
        let (base, path) = self.at("/fapi/v1/order", "/api/v3/order");
        self.request(reqwest::Method::DELETE, base, path, &params, Auth::Signed)
            .await
    }

    /// `POST /api/v3/order` (spot), signed here: the spot stop manager's resting `STOP_LOSS_LIMIT` orders.
    /// `params` are query-safe.
    pub async fn spot_order(&self, params: &[(&str, String)]) -> Result<Value, RestError> {
        self.request(
            reqwest::Method::POST,
            Base::Spot,
            "/api/v3/order",
            params,
            Auth::Signed,
        )
        .await
    }

    /// `GET /api/v3/ticker/price?symbol=` (spot): the last price of a pair (BNB fee conversion, non-dollar quotes).
    pub async fn spot_price(&self, symbol: &str) -> Result<Value, RestError> {
        self.spot_public_of(symbol, "/api/v3/ticker/price").await
    }

    /// `GET /api/v3/avgPrice?symbol=` (spot, weight 2): the pair's average price over Binance's window, which
    /// PERCENT_PRICE(_BY_SIDE) bands a limit price around.
    pub async fn spot_avg_price(&self, symbol: &str) -> Result<Value, RestError> {
        self.spot_public_of(symbol, "/api/v3/avgPrice").await
    }

    /// An unsigned spot `GET path?symbol=`.
    async fn spot_public_of(&self, symbol: &str, path: &str) -> Result<Value, RestError> {
        let params = [("symbol", symbol.to_string())];
        self.request(reqwest::Method::GET, Base::Spot, path, &params, Auth::None)
            .await
    }

    /// `POST /fapi/v1/leverage?symbol=&leverage=` (the symbol's initial leverage on this account).
    pub async fn set_leverage(&self, symbol: &str, leverage: u32) -> Result<Value, RestError> {
        let params = [
            ("symbol", symbol.to_string()),
            ("leverage", leverage.to_string()),
        ];
        self.fapi_signed(reqwest::Method::POST, "/fapi/v1/leverage", &params)
            .await
    }

    /// A signed request to `/fapi` (the GETs go through [`RestClient::get_signed`]).
    async fn fapi_signed(
        &self,
        method: reqwest::Method,
        path: &str,
        params: &[(&str, String)],
    ) -> Result<Value, RestError> {
        self.request(method, Base::Fapi, path, params, Auth::Signed)
            .await
    }

    /// `POST /fapi/v1/order` (spot: `/api/v3/order`) with a query already encoded and signed by
    /// `OrderEncoder::rest_order`.
    pub async fn place_order_raw(&self, signed_query: &str) -> Result<Value, RestError> {
        let (base, path) = self.at("/fapi/v1/order", "/api/v3/order");
        self.post_raw(base, path, signed_query).await
    }

    /// `POST /api/v3/order/cancelReplace` (spot) with a query encoded and signed by
    /// `OrderEncoder::rest_cancel_replace`: cancels a resting stop and places the exit in one request.
    pub async fn cancel_replace_raw(&self, signed_query: &str) -> Result<Value, RestError> {
        self.post_raw(Base::Spot, "/api/v3/order/cancelReplace", signed_query)
            .await
    }

    /// A `POST` of a query the engine's encoder signed.
    async fn post_raw(
        &self,
        base: Base,
        path: &'static str,
        signed_query: &str,
    ) -> Result<Value, RestError> {
        // The gateway signs the query with its encoder and swaps encoder and client key together on its own
        // thread, so this key is the one that signed.
        let creds = self.credentials().ok_or(RestError::NoKey)?;
        let host = match base {
            Base::Spot => self.endpoints.spot.as_str(),
            _ => self.endpoints.fapi.as_str(),
        };
        let url = format!("{host}{path}?{signed_query}");
        self.not_blocked(base)?;
        // Weight 0 at Binance, but not while the host is blocked by a 429/418.
        if base == Base::Fapi {
            self.charge_host(0).await;
        }
        let resp = self
            .http
            .post(&url)
            .header("X-MBX-APIKEY", creds.api_key.expose())
            .send()
            .await
            .map_err(|e| RestError::Unknown {
                path: path.into(),
                why: if e.is_timeout() {
                    "timed out"
                } else {
                    "connection lost"
                }
                .into(),
            })?;
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        if status == 429 || status == 418 {
            let secs = hdr_u64(&headers, "retry-after").unwrap_or(5).max(1);
            self.limits_of(base)
                .1
                .fetch_max(wall_ms() + secs * 1000, Ordering::Relaxed);
            if base == Base::Fapi {
                self.report_host(None, Some(wall_ms() + secs * 1000));
            }
            return Err(RestError::RateLimited {
                status,
                retry_after: Duration::from_secs(secs),
            });
        }
        let body = resp.bytes().await.unwrap_or_default();
        if status >= 500 {
            return Err(RestError::Unknown {
                path: path.into(),
                why: format!("HTTP {status}"),
            });
        }
        let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        // A cancel-replace that partly failed (409, -2021) or wholly failed (400, -2022) says per leg what
        // happened in `data`: the caller reads the legs, since a failed cancel with a placed exit is still a
        // placed order.
        if status >= 400 && !(path.ends_with("cancelReplace") && v.get("data").is_some()) {
            return Err(api_error(path, status, &v));
        }
        Ok(v)
    }

    /// `POST /fapi/v1/algoOrder`: a conditional order (Binance answers -4120 for those on `/fapi/v1/order` since
    /// 2025-12-09). `params` are query-safe (`algoType`, `symbol`, `side`, `type`, `quantity`, `triggerPrice`,
    /// `workingType`, `reduceOnly`, `clientAlgoId`, ...).
    pub async fn place_algo(&self, params: &[(&str, String)]) -> Result<Value, RestError> {
        self.fapi_signed(reqwest::Method::POST, ALGO_ORDER, params)
            .await
    }

    /// `DELETE /fapi/v1/algoOrder?clientAlgoId=`.
    pub async fn cancel_algo(&self, client_algo_id: &str) -> Result<Value, RestError> {
        let params = [("clientAlgoId", client_algo_id.to_string())];
        self.fapi_signed(reqwest::Method::DELETE, ALGO_ORDER, &params)
            .await
    }

    /// `GET /fapi/v1/openAlgoOrders` (every symbol: weight 40).
    pub async fn open_algo_orders(&self) -> Result<Vec<Value>, RestError> {
        let v = self
            .get_signed(Base::Fapi, "/fapi/v1/openAlgoOrders", &[])
            .await?;
        Ok(v.as_array().cloned().unwrap_or_default())
    }

    /// `DELETE /fapi/v1/algoOpenOrders?symbol=`: every waiting algo order of the symbol.
    pub async fn cancel_all_algo(&self, symbol: &str) -> Result<Value, RestError> {
        let params = [("symbol", symbol.to_string())];
        self.fapi_signed(reqwest::Method::DELETE, "/fapi/v1/algoOpenOrders", &params)
            .await
    }

    /// `POST|PUT /fapi/v1/listenKey`: the user stream's key, sent with the API key but unsigned.
    async fn listen_key(&self, method: reqwest::Method) -> Result<Value, RestError> {
        self.request(method, Base::Fapi, LISTEN_KEY, &[], Auth::KeyOnly)
            .await
    }

    /// `POST /fapi/v1/listenKey`.
    pub async fn listen_key_create(&self) -> Result<String, RestError> {
        let v = self.listen_key(reqwest::Method::POST).await?;
        v.get("listenKey")
            .and_then(Value::as_str)
            .map(String::from)
            .ok_or_else(|| decode_error(LISTEN_KEY, "no listenKey"))
    }

    /// `PUT /fapi/v1/listenKey` (keep-alive).
    pub async fn listen_key_keepalive(&self) -> Result<(), RestError> {
        self.listen_key(reqwest::Method::PUT).await.map(|_| ())
    }
}

const LISTEN_KEY: &str = "/fapi/v1/listenKey";
const ALGO_ORDER: &str = "/fapi/v1/algoOrder";

/// One order by our `origClientOrderId`: the id we know even when the exchange's answer to the order was lost.
fn order_ref(symbol: &str, client_id: &str) -> [(&'static str, String); 2] {
    [
        ("symbol", symbol.to_string()),
        ("origClientOrderId", client_id.to_string()),
    ]
}

/// An answer that is not what Binance sends.
fn decode_error(path: &str, why: impl Into<String>) -> RestError {
    RestError::Decode {
        path: path.into(),
        why: why.into(),
    }
}

/// A decimal string field as exact money (`"0.00000"` → 0).
pub fn dec(v: &Value, k: &str) -> Notional {
    v.get(k)
        .and_then(Value::as_str)
        .and_then(|s| Notional::parse(s).ok())
        .unwrap_or(Notional::ZERO)
}

/// Classifies a Binance error body (`{"code":…,"msg":…}`, HTTP 4xx). One place decides which answers mean "the
/// key was refused" (-2014, -2015, HTTP 401): every caller halts and goes read-only on exactly the same codes.
fn api_error(path: &str, status: u16, v: &Value) -> RestError {
    let code = v.get("code").and_then(Value::as_i64).unwrap_or(0) as i32;
    let msg = v
        .get("msg")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if code == -2014 || code == -2015 || status == 401 {
        RestError::KeyRejected {
            path: path.into(),
            code,
            msg,
        }
    } else {
        RestError::Api {
            path: path.into(),
            status,
            code,
            msg,
        }
    }
}

/// An order status as Binance spells it, in the user stream and in REST answers alike.
pub fn status(x: &str) -> Option<OrderStatus> {
    Some(match x {
        "NEW" => OrderStatus::New,
        "PARTIALLY_FILLED" => OrderStatus::PartiallyFilled,
        "FILLED" => OrderStatus::Filled,
        "CANCELED" => OrderStatus::Canceled,
        "EXPIRED" | "EXPIRED_IN_MATCH" => OrderStatus::Expired,
        "REJECTED" => OrderStatus::Rejected,
        _ => return None,
    })
}

#[cfg(test)]
mod api_error_tests {
    use super::*;

    #[test]
    fn refused_keys_are_told_apart_from_other_api_errors() {
        let body = |code: i64| serde_json::json!({"code": code, "msg": "m"});
        for (status, code) in [(401, -2015), (400, -2014), (401, 0), (400, -2015)] {
            assert!(
                matches!(api_error("/p", status, &body(code)), RestError::KeyRejected { code: c, .. } if c as i64 == code),
                "{status} {code}"
            );
        }
        match api_error("/fapi/v1/order", 400, &body(-1121)) {
            RestError::Api {
                status, code, msg, ..
            } => assert_eq!((status, code, msg.as_str()), (400, -1121, "m")),
            e => panic!("{e:?}"),
        }
        // A non-JSON 4xx body (decoded as null) is still an API error, never a key refusal.
        assert!(matches!(
            api_error("/p", 403, &Value::Null),
            RestError::Api { code: 0, .. }
        ));
    }
}

/// The REST client's clock and ban window for the engine thread's order entry (atomics only: reading them
/// never blocks or allocates).
#[derive(Debug, Clone)]
pub struct ClientClock(pub RestClient);

impl aegis_engine::venue::binance::entry::VenueClock for ClientClock {
    fn server_now_ms(&self) -> u64 {
        self.0.now_ms()
    }
    fn blocked_until_ms(&self) -> u64 {
        let base = self.0.at("/fapi/v1/order", "/api/v3/order").0;
        self.0.limits_of(base).1.load(Ordering::Relaxed)
    }
}

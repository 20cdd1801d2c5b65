//! What the dashboard needs from the rest of the control plane: read models, a command sender, the audit trail
//! and the access log. The runtime implements [`DashboardBackend`] (or uses [`super::model::LiveModel`], which
//! builds the read model from `EngineEvent`s and forwards commands to the engine).

use aegis_shared::event::{
    BreakerScope, EngineStats, FeedState, HaltReason, OrderEvent, TimestampMs, TripReason,
};
use aegis_shared::{Command, Market, StrategyMode, TradingMode};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

pub use crate::auth::store::BoxFut;

/// Money as an exact decimal string (`"-12.345"`), the way the dashboard shows it.
pub type Money = String;

/// Engine, feed and health at a glance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusView {
    /// `running`, `halted`, `stopped` or `starting`.
    pub engine: String,
    /// Why it is halted, when it is.
    pub halt_reason: Option<HaltReason>,
    /// True once the kill switch fired (until a restart).
    pub killed: bool,
    /// paper / testnet / live.
    pub trading_mode: TradingMode,
    /// Feed description (e.g. `sim`, `binance-futures`).
    pub feed_source: String,
    /// Feed state.
    pub feed: FeedState,
    /// Age of the newest market message, ms.
    pub feed_age_ms: u64,
    /// Age of the last engine heartbeat, ms (`None` before the first).
    pub heartbeat_age_ms: Option<u64>,
    /// `ok`, `degraded` or `down`.
    pub health: String,
    /// Database state (`not configured`, `ok`, `degraded`).
    pub database: String,
    /// When the bot started, ms since the epoch.
    pub started_ms: TimestampMs,
    /// Bot version.
    pub version: String,
}

/// One open position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PositionView {
    /// Symbol.
    pub symbol: String,
    /// Market (`futures` / `spot`): the same symbol on the other market is another position.
    pub market: Market,
    /// Mode that owns it.
    pub mode: StrategyMode,
    /// Signed size (long > 0).
    pub qty: Money,
    /// Average entry price.
    pub entry_price: Money,
    /// Last known price (last fill or mark) used for unrealized PnL.
    pub mark_price: Money,
    /// Unrealized PnL at `mark_price`.
    pub unrealized_pnl: Money,
    /// Realized PnL before fees.
    pub realized_pnl: Money,
    /// Fees paid.
    pub fees: Money,
    /// Notional at entry, USD.
    pub notional_usd: Money,
}

/// One resting order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderView {
    /// Our client order id.
    pub client_id: String,
    /// Symbol.
    pub symbol: String,
    /// Market (`futures` / `spot`).
    pub market: Market,
    /// Mode.
    pub mode: StrategyMode,
    /// BUY / SELL.
    pub side: String,
    /// LIMIT / MARKET.
    pub order_type: String,
    /// Limit price.
    pub price: Money,
    /// Quantity.
    pub qty: Money,
    /// Filled so far.
    pub filled: Money,
    /// Binance status name.
    pub status: String,
    /// Reduce-only.
    pub reduce_only: bool,
    /// Last update, ms.
    pub ts_ms: TimestampMs,
}

impl From<&OrderEvent> for OrderView {
    fn from(o: &OrderEvent) -> Self {
        Self {
            client_id: o.client_id.to_string(),
            symbol: o.symbol.to_string(),
            market: o.market,
            mode: o.mode,
            side: o.side.as_str().into(),
            order_type: serde_plain(&o.order_type),
            price: o.price.to_string(),
            qty: o.qty.to_string(),
            filled: o.filled.to_string(),
            status: serde_plain(&o.status),
            reduce_only: o.reduce_only,
            ts_ms: o.ts_ms,
        }
    }
}

/// The serde name of a unit enum variant (`"FILLED"` → `FILLED`).
pub(crate) fn serde_plain<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// One fill, for the trades table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TradeView {
    /// Time, ms.
    pub ts_ms: TimestampMs,
    /// Symbol.
    pub symbol: String,
    /// Market (`futures` / `spot`): spot and futures trade ids are separate id spaces.
    pub market: Market,
    /// Mode.
    pub mode: StrategyMode,
    /// BUY / SELL.
    pub side: String,
    /// Price.
    pub price: Money,
    /// Quantity.
    pub qty: Money,
    /// Fee.
    pub fee: Money,
    /// Fee asset.
    pub fee_asset: String,
    /// Realized PnL before fees.
    pub realized_pnl: Money,
    /// Why the order was sent.
    pub intent: String,
    /// Client order id.
    pub client_id: String,
    /// Exchange trade id.
    pub trade_id: u64,
}

/// Paging request for trades.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TradesQuery {
    /// 0-based page, newest first.
    pub page: u32,
    /// Rows per page (1..=200).
    pub limit: u32,
}

/// A page of trades.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TradesPage {
    /// Page number.
    pub page: u32,
    /// Rows per page.
    pub limit: u32,
    /// Total number of trades.
    pub total: u64,
    /// Rows, newest first.
    pub trades: Vec<TradeView>,
}

/// One point of the equity curve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EquityPoint {
    /// Time, ms.
    pub ts_ms: TimestampMs,
    /// Cumulative realized PnL net of fees.
    pub equity: Money,
}

/// PnL summary (realized, net of fees).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PnlView {
    /// Rolling last 60 minutes.
    pub hour: Money,
    /// Current UTC day.
    pub day: Money,
    /// Since the start of records.
    pub total: Money,
    /// Unrealized PnL of open positions.
    pub unrealized: Money,
    /// Fees since the start of records, in the quote asset (BNB fees converted at fill time).
    pub fees_total: Money,
    /// Funding received (> 0) or paid (< 0) since the start of records, quote asset. `total` includes it.
    #[serde(default)]
    pub funding_total: Money,
    /// Fees per asset as charged (e.g. `{"USDT": "1.2", "BNB": "0.003"}`).
    #[serde(default)]
    pub fees_by_asset: std::collections::BTreeMap<String, Money>,
    /// Fees that could not be priced in the quote asset (left out of PnL; alert `fee_unconverted`).
    #[serde(default)]
    pub unconverted_fees: u64,
    /// Equity curve (at most a few hundred points).
    pub equity_curve: Vec<EquityPoint>,
}

/// One breaker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BreakerView {
    /// Global or a mode.
    pub scope: BreakerScope,
    /// Tripped now?
    pub tripped: bool,
    /// Why it tripped.
    pub reason: Option<TripReason>,
    /// When trading resumes by itself, ms.
    pub until_ms: Option<TimestampMs>,
    /// Cooldown left, ms (0 when not tripped).
    pub cooldown_left_ms: u64,
}

/// Allocation use of one mode.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AllocationView {
    /// Mode.
    pub mode: StrategyMode,
    /// Enabled in the allocation file.
    pub enabled: bool,
    /// Percent of capital.
    pub capital_percent: Money,
    /// Capital allocated, USD.
    pub capital_usd: Money,
    /// Capital in use (entry notional of open positions), USD.
    pub used_usd: Money,
    /// Max open positions.
    pub max_positions: u32,
    /// Open positions now.
    pub open_positions: u32,
    /// Max USD per position.
    pub max_usd_per_position: Money,
}

/// Limits and their use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LimitsView {
    /// `FUTURES_AUTOPILOT_MAX_POSITION_SIZE`.
    pub max_position_usd: Money,
    /// `FUTURES_AUTOPILOT_MAX_DAILY_LOSS`.
    pub max_daily_loss_usd: Money,
    /// Today's realized loss so far (positive number = loss).
    pub daily_loss_used_usd: Money,
    /// Per-mode allocation.
    pub allocation: Vec<AllocationView>,
}

/// One histogram bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatencyBucket {
    /// Upper bound, ns.
    pub le_ns: u64,
    /// Samples in the bucket.
    pub count: u64,
}

/// Engine tick-to-decision latency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatencyView {
    /// Latest interval's p50, p99, p99.9 and max, ns.
    pub p50_ns: u64,
    /// p99.
    pub p99_ns: u64,
    /// p99.9.
    pub p999_ns: u64,
    /// Max.
    pub max_ns: u64,
    /// Histogram of per-interval p99 values (power-of-two buckets), since start.
    pub p99_histogram: Vec<LatencyBucket>,
    /// Histogram of per-interval p50 values (power-of-two buckets), since start.
    pub p50_histogram: Vec<LatencyBucket>,
}

/// Everything the overview shows; pushed to browsers by the live stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DashboardSnapshot {
    /// Increments on every change; the live stream sends a snapshot when it moves.
    pub seq: u64,
    /// Server time, ms (the browser's cooldown timers count from it).
    pub now_ms: TimestampMs,
    /// Status.
    pub status: StatusView,
    /// Open positions.
    pub positions: Vec<PositionView>,
    /// Open orders.
    pub open_orders: Vec<OrderView>,
    /// PnL.
    pub pnl: PnlView,
    /// Global breaker first, then one per mode.
    pub breakers: Vec<BreakerView>,
    /// Limits and allocation use.
    pub limits: LimitsView,
    /// Latency.
    pub latency: LatencyView,
    /// Latest engine counters.
    pub stats: Option<EngineStats>,
    /// Number of trades recorded.
    pub trade_count: u64,
    /// Critical-queue depth seen by the control plane (0 when unknown).
    pub queue_depth_critical: u64,
    /// Statistics-queue depth (0 when unknown).
    pub queue_depth_stats: u64,
    /// Liquidation and ADL fills, newest first (at most 100).
    #[serde(default)]
    pub liquidations: Vec<LiquidationView>,
}

/// One liquidation or ADL fill as the dashboard shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiquidationView {
    /// Time, ms.
    pub ts_ms: TimestampMs,
    /// Symbol.
    pub symbol: String,
    /// Mode whose position was closed.
    pub mode: StrategyMode,
    /// `liquidation` or `adl`.
    pub kind: String,
    /// BUY / SELL.
    pub side: String,
    /// Price.
    pub price: Money,
    /// Quantity.
    pub qty: Money,
    /// Realized PnL before fees.
    pub realized_pnl: Money,
    /// Fee (quote asset).
    pub fee: Money,
    /// Exchange client id (`autoclose-…`).
    pub client_id: String,
}

/// One audit-trail row as the dashboard shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Sequence number.
    pub id: u64,
    /// Time, ms.
    pub ts_ms: TimestampMs,
    /// Who (user name, `system`, or `anonymous`).
    pub actor: String,
    /// From where.
    pub ip: Option<String>,
    /// What (e.g. `control.halt`, `auth.login_failed`).
    pub action: String,
    /// Details (never secrets).
    pub detail: serde_json::Value,
    /// Chain hash, hex (empty when the store has no chain).
    pub hash: String,
}

/// An audit event to append.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// Time, ms.
    pub ts_ms: TimestampMs,
    /// Who.
    pub actor: String,
    /// From where.
    pub ip: Option<IpAddr>,
    /// What.
    pub action: String,
    /// Details (never secrets).
    pub detail: serde_json::Value,
}

/// One API request, for the access log (security guide §8.1: who, when, from where).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessLogEntry {
    /// Time, ms.
    pub ts_ms: TimestampMs,
    /// Client IP.
    pub ip: IpAddr,
    /// Authenticated user, if any.
    pub user: Option<String>,
    /// HTTP method.
    pub method: String,
    /// Path (never the query string: it could hold a token).
    pub path: String,
    /// Response status.
    pub status: u16,
    /// Handling time, µs.
    pub duration_us: u64,
}

/// Backend failures, answered as 503 without details.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// The engine's command queue is full or closed.
    #[error("engine not reachable: {0}")]
    Engine(String),
    /// The audit trail could not be written.
    #[error("audit trail unavailable: {0}")]
    Audit(String),
    /// Storage failed.
    #[error("storage unavailable: {0}")]
    Storage(String),
}

/// The seam between the dashboard and the runtime.
pub trait DashboardBackend: Send + Sync + 'static {
    /// Current read model (cheap; called by every API read and by the live stream each interval).
    fn snapshot(&self) -> DashboardSnapshot;
    /// A page of trades, newest first.
    fn trades(&self, q: TradesQuery) -> BoxFut<'_, Result<TradesPage, BackendError>>;
    /// Sends a command to the engine. Must not block.
    fn send_command(&self, cmd: Command) -> Result<(), BackendError>;
    /// Sends a command on behalf of `actor` at `ip` (the journal records it as `api:<actor>@<ip>`). Must not
    /// block. Default: [`Self::send_command`].
    fn send_command_from(&self, cmd: Command, actor: &str, ip: IpAddr) -> Result<(), BackendError> {
        let _ = (actor, ip);
        self.send_command(cmd)
    }
    /// Appends to the audit trail.
    fn audit(&self, ev: AuditEvent) -> BoxFut<'_, Result<(), BackendError>>;
    /// Newest audit rows first (`before_id` pages backwards).
    fn audit_log(
        &self,
        limit: u32,
        before_id: Option<u64>,
    ) -> BoxFut<'_, Result<Vec<AuditRecord>, BackendError>>;
    /// Records one API request. Must not block (queue it).
    fn record_access(&self, entry: AccessLogEntry);
    /// More fields for `GET /api/status` (the runtime's mode, positions, PnL and counts); `status` and `now_ms`
    /// are added on top. Default: none.
    fn status_extra(&self) -> Option<serde_json::Value> {
        None
    }
}

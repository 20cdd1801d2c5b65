//! [`LiveModel`]: an in-memory [`DashboardBackend`] built from the engine's events. The runtime feeds it every
//! `EngineEvent` after journaling (`apply`), gives it a command sender, and mounts it. Without Postgres it also
//! keeps the audit trail (hash-chained, in memory, mirrored to the log) and the access log (to the log).

use super::backend::*;
use crate::journal::now_ms;
use aegis_shared::event::{
    BreakerChange, BreakerScope, EngineEvent, EngineState, EngineStats, FeedState, HaltReason,
    OrderEvent, PositionUpdate, TimestampMs, TripReason,
};
use aegis_shared::{ClientOrderId, Command, Notional, Price, StrategyMode, Symbol, TradingMode};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Per-mode allocation as configured (`MODE_ALLOCATION_FILE`).
#[derive(Debug, Clone, PartialEq)]
pub struct ModeAllocation {
    /// Mode.
    pub mode: StrategyMode,
    /// Enabled.
    pub enabled: bool,
    /// Percent of capital (e.g. 25 for 25 %).
    pub capital_percent: Notional,
    /// Capital allocated, USD.
    pub capital_usd: Notional,
    /// Max open positions.
    pub max_positions: u32,
    /// Max USD per position.
    pub max_usd_per_position: Notional,
}

/// Static facts the model shows next to the live state.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelInfo {
    /// paper / testnet / live.
    pub trading_mode: TradingMode,
    /// Feed description.
    pub feed_source: String,
    /// Start time, ms.
    pub started_ms: TimestampMs,
    /// `FUTURES_AUTOPILOT_MAX_POSITION_SIZE`.
    pub max_position_usd: Notional,
    /// `FUTURES_AUTOPILOT_MAX_DAILY_LOSS`.
    pub max_daily_loss_usd: Notional,
    /// Allocation per mode.
    pub allocation: Vec<ModeAllocation>,
    /// Bot version.
    pub version: String,
}

type CommandFn = Box<dyn Fn(Command) -> Result<(), BackendError> + Send + Sync>;

const MAX_TRADES: usize = 10_000;
const MAX_LIQUIDATIONS: usize = 100;
const MAX_CURVE: usize = 600;
const MAX_AUDIT: usize = 10_000;
const BUCKETS: usize = 48;
/// Heartbeat older than this makes health `degraded`; 10× makes it `down`.
const HEARTBEAT_DEGRADED_MS: u64 = 3_000;

#[derive(Debug, Clone, Copy)]
struct BreakerSlot {
    tripped: bool,
    reason: Option<TripReason>,
    until_ms: Option<TimestampMs>,
}

struct State {
    info: ModelInfo,
    engine: Option<EngineState>,
    killed: bool,
    last_heartbeat_ms: Option<TimestampMs>,
    stats: Option<EngineStats>,
    positions: BTreeMap<(Symbol, StrategyMode), PositionUpdate>,
    marks: HashMap<Symbol, Price>,
    orders: BTreeMap<ClientOrderId, OrderEvent>,
    trades: VecDeque<TradeView>,
    trade_count: u64,
    realized_total: Notional,
    fees_total: Notional,
    funding_total: Notional,
    fees_by_asset: BTreeMap<Symbol, Notional>,
    unconverted_fees: u64,
    liquidations: VecDeque<LiquidationView>,
    hour: VecDeque<(TimestampMs, Notional)>,
    day_start_ms: TimestampMs,
    day_net: Notional,
    curve: Vec<(TimestampMs, Notional)>,
    curve_stride: u64,
    breakers: BTreeMap<u8, (BreakerScope, BreakerSlot)>,
    p50_hist: [u64; BUCKETS],
    p99_hist: [u64; BUCKETS],
    audit: VecDeque<AuditRecord>,
    audit_next: u64,
    audit_last_hash: [u8; 32],
    database: String,
    queue_critical: u64,
    queue_stats: u64,
}

impl State {
    /// Books a net PnL amount (fill net of fee, or funding) into the hour and day windows.
    fn book_net(&mut self, ts_ms: TimestampMs, net: Notional) {
        self.hour.push_back((ts_ms, net));
        while self
            .hour
            .front()
            .is_some_and(|(t, _)| *t + 3_600_000 < ts_ms)
        {
            self.hour.pop_front();
        }
        let day = ts_ms - ts_ms % 86_400_000;
        if day != self.day_start_ms {
            self.day_start_ms = day;
            self.day_net = Notional::ZERO;
        }
        self.day_net += net;
    }
}

/// The in-memory read model and default backend.
pub struct LiveModel {
    state: Mutex<State>,
    seq: AtomicU64,
    send: CommandFn,
}

impl std::fmt::Debug for LiveModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LiveModel")
    }
}

fn scope_key(s: BreakerScope) -> u8 {
    match s {
        BreakerScope::Global => 0,
        BreakerScope::Mode(m) => 1 + m.index() as u8,
    }
}

fn bucket_of(ns: u64) -> usize {
    // Bucket i holds values in (2^(i-1), 2^i]; bucket 0 holds 0 and 1.
    ((64 - ns.saturating_sub(1).leading_zeros()) as usize).min(BUCKETS - 1)
}

fn hist_view(h: &[u64; BUCKETS]) -> Vec<LatencyBucket> {
    let first = h.iter().position(|c| *c > 0);
    let last = h.iter().rposition(|c| *c > 0);
    match (first, last) {
        (Some(a), Some(b)) => (a..=b)
            .map(|i| LatencyBucket {
                le_ns: 1u64 << i,
                count: h[i],
            })
            .collect(),
        _ => Vec::new(),
    }
}

impl LiveModel {
    /// A model that sends commands through `send` (e.g. the engine's command queue).
    pub fn new(
        info: ModelInfo,
        send: impl Fn(Command) -> Result<(), BackendError> + Send + Sync + 'static,
    ) -> Self {
        let mut breakers = BTreeMap::new();
        let idle = BreakerSlot {
            tripped: false,
            reason: None,
            until_ms: None,
        };
        breakers.insert(0, (BreakerScope::Global, idle));
        for m in StrategyMode::ALL {
            breakers.insert(
                scope_key(BreakerScope::Mode(m)),
                (BreakerScope::Mode(m), idle),
            );
        }
        Self {
            state: Mutex::new(State {
                info,
                engine: None,
                killed: false,
                last_heartbeat_ms: None,
                stats: None,
                positions: BTreeMap::new(),
                marks: HashMap::new(),
                orders: BTreeMap::new(),
                trades: VecDeque::new(),
                trade_count: 0,
                realized_total: Notional::ZERO,
                fees_total: Notional::ZERO,
                funding_total: Notional::ZERO,
                fees_by_asset: BTreeMap::new(),
                unconverted_fees: 0,
                liquidations: VecDeque::new(),
                hour: VecDeque::new(),
                day_start_ms: 0,
                day_net: Notional::ZERO,
                curve: Vec::new(),
                curve_stride: 1,
                breakers,
                p50_hist: [0; BUCKETS],
                p99_hist: [0; BUCKETS],
                audit: VecDeque::new(),
                audit_next: 1,
                audit_last_hash: [0; 32],
                database: "not configured".into(),
                queue_critical: 0,
                queue_stats: 0,
            }),
            seq: AtomicU64::new(1),
            send: Box::new(send),
        }
    }

    /// A model whose commands go to a crossbeam queue (the engine's `EngineHandle::commands`).
    pub fn with_sender(info: ModelInfo, tx: crossbeam_channel::Sender<Command>) -> Self {
        Self::new(info, move |c| {
            tx.try_send(c).map_err(|e| {
                BackendError::Engine(match e {
                    crossbeam_channel::TrySendError::Full(_) => "command queue full".into(),
                    crossbeam_channel::TrySendError::Disconnected(_) => "engine stopped".into(),
                })
            })
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn bump(&self) {
        self.seq.fetch_add(1, Ordering::Relaxed);
    }

    /// Sets the database state shown in status (`not configured`, `ok`, `degraded`).
    pub fn set_database_state(&self, s: &str) {
        self.lock().database = s.to_string();
        self.bump();
    }

    /// Sets the current queue depths (critical, stats) for `/metrics`.
    pub fn set_queue_depths(&self, critical: u64, stats: u64) {
        let mut s = self.lock();
        s.queue_critical = critical;
        s.queue_stats = stats;
    }

    /// Updates the mark price used for unrealized PnL (fills update it too).
    pub fn set_mark(&self, symbol: Symbol, price: Price) {
        self.lock().marks.insert(symbol, price);
        self.bump();
    }

    /// Applies one engine event (call after it is journaled).
    pub fn apply(&self, ev: &EngineEvent) {
        let mut s = self.lock();
        match *ev {
            EngineEvent::Order(o) => {
                if o.status.is_final() {
                    s.orders.remove(&o.client_id);
                } else {
                    s.orders.insert(o.client_id, o);
                }
            }
            EngineEvent::Fill(f) => {
                // PnL counts the fee in the quote asset (a BNB fee converted at fill time), never the raw BNB amount.
                let qfee = f.quote_fee();
                let net = f.realized_pnl - qfee;
                s.realized_total += f.realized_pnl;
                s.fees_total += qfee;
                *s.fees_by_asset.entry(f.fee_asset).or_default() += f.fee;
                if f.fee_conv == aegis_shared::event::FeeConversion::Unconvertible {
                    s.unconverted_fees += 1;
                }
                s.trade_count += 1;
                s.marks.insert(f.symbol, f.price);
                s.book_net(f.ts_ms, net);
                let equity = s.realized_total - s.fees_total + s.funding_total;
                if s.trade_count.is_multiple_of(s.curve_stride) {
                    s.curve.push((f.ts_ms, equity));
                    if s.curve.len() > MAX_CURVE {
                        // Keep the curve bounded: drop every other point and sample half as often from now on.
                        let kept: Vec<_> = s.curve.iter().copied().step_by(2).collect();
                        s.curve = kept;
                        s.curve_stride *= 2;
                    }
                }
                s.trades.push_front(TradeView {
                    ts_ms: f.ts_ms,
                    symbol: f.symbol.to_string(),
                    market: f.market,
                    mode: f.mode,
                    side: f.side.as_str().into(),
                    price: f.price.to_string(),
                    qty: f.qty.to_string(),
                    fee: f.fee.to_string(),
                    fee_asset: f.fee_asset.to_string(),
                    realized_pnl: f.realized_pnl.to_string(),
                    intent: serde_plain(&f.intent),
                    client_id: f.client_id.to_string(),
                    trade_id: f.trade_id,
                });
                s.trades.truncate(MAX_TRADES);
            }
            EngineEvent::Position(p) => {
                if p.qty.is_zero() {
                    s.positions.remove(&(p.symbol, p.mode));
                } else {
                    s.positions.insert((p.symbol, p.mode), p);
                }
            }
            EngineEvent::Funding(f) => {
                s.funding_total += f.quote;
                s.book_net(f.ts_ms, f.quote);
            }
            EngineEvent::Liquidation(l) => {
                s.liquidations.push_front(LiquidationView {
                    ts_ms: l.ts_ms,
                    symbol: l.symbol.to_string(),
                    mode: l.mode,
                    kind: serde_plain(&l.kind),
                    side: l.side.as_str().into(),
                    price: l.price.to_string(),
                    qty: l.qty.to_string(),
                    realized_pnl: l.realized_pnl.to_string(),
                    fee: l.fee.to_string(),
                    client_id: l.client_id.to_string(),
                });
                s.liquidations.truncate(MAX_LIQUIDATIONS);
            }
            EngineEvent::Breaker(b) => {
                let slot = match b.change {
                    BreakerChange::Tripped { reason, until_ms } => BreakerSlot {
                        tripped: true,
                        reason: Some(reason),
                        until_ms: Some(until_ms),
                    },
                    BreakerChange::Resumed | BreakerChange::Reset => BreakerSlot {
                        tripped: false,
                        reason: None,
                        until_ms: None,
                    },
                };
                s.breakers.insert(scope_key(b.scope), (b.scope, slot));
            }
            EngineEvent::State { state, .. } => {
                if let EngineState::Halted {
                    reason: HaltReason::KillSwitch,
                } = state
                {
                    s.killed = true;
                }
                s.engine = Some(state);
            }
            EngineEvent::Alert { .. } => {}
            EngineEvent::Heartbeat { ts_ms, .. } => {
                s.last_heartbeat_ms = Some(ts_ms);
                drop(s);
                return; // liveness only: no snapshot change worth pushing
            }
            EngineEvent::Stats(st) => {
                s.p50_hist[bucket_of(st.latency_ns[0])] += 1;
                s.p99_hist[bucket_of(st.latency_ns[1])] += 1;
                s.last_heartbeat_ms = Some(s.last_heartbeat_ms.unwrap_or(0).max(st.ts_ms));
                s.stats = Some(st);
            }
        }
        drop(s);
        self.bump();
    }
}

impl crate::state::EventSink for LiveModel {
    fn apply(&self, e: &EngineEvent) {
        LiveModel::apply(self, e);
    }
}

impl DashboardBackend for LiveModel {
    fn snapshot(&self) -> DashboardSnapshot {
        let now = now_ms();
        let s = self.lock();
        let hb_age = s.last_heartbeat_ms.map(|t| now.saturating_sub(t));
        let (engine, halt_reason) = match s.engine {
            None => ("starting", None),
            Some(EngineState::Running) => ("running", None),
            Some(EngineState::Halted { reason }) => ("halted", Some(reason)),
            Some(EngineState::Stopped) => ("stopped", None),
        };
        let feed = s.stats.map(|x| x.feed).unwrap_or(FeedState::Connecting);
        let health = match (s.engine, hb_age, feed) {
            (Some(EngineState::Stopped), _, _) => "down",
            (_, Some(a), _) if a > HEARTBEAT_DEGRADED_MS * 10 => "down",
            (_, Some(a), _) if a > HEARTBEAT_DEGRADED_MS => "degraded",
            (_, _, FeedState::Stale) => "degraded",
            (_, None, _) => "degraded",
            _ if s.database == "degraded" => "degraded",
            _ => "ok",
        };
        let mut unrealized = Notional::ZERO;
        let mut used = [Notional::ZERO; 4];
        let mut open = [0u32; 4];
        let positions = s
            .positions
            .values()
            .map(|p| {
                let mark = s.marks.get(&p.symbol).copied().unwrap_or(p.entry_price);
                let u = p.qty.pnl(p.entry_price, mark);
                unrealized += u;
                let notional = p.entry_price.notional(p.qty.abs());
                used[p.mode.index()] += notional;
                open[p.mode.index()] += 1;
                PositionView {
                    symbol: p.symbol.to_string(),
                    market: p.market,
                    mode: p.mode,
                    qty: p.qty.to_string(),
                    entry_price: p.entry_price.to_string(),
                    mark_price: mark.to_string(),
                    unrealized_pnl: u.to_string(),
                    realized_pnl: p.realized_pnl.to_string(),
                    fees: p.fees.to_string(),
                    notional_usd: notional.to_string(),
                }
            })
            .collect();
        let hour: Notional = s
            .hour
            .iter()
            .filter(|(t, _)| *t + 3_600_000 >= now)
            .fold(Notional::ZERO, |a, (_, n)| a + *n);
        let today = now - now % 86_400_000;
        let day = if s.day_start_ms == today {
            s.day_net
        } else {
            Notional::ZERO
        };
        let breakers = s
            .breakers
            .values()
            .map(|(scope, b)| {
                let left = b
                    .until_ms
                    .filter(|_| b.tripped)
                    .map(|u| u.saturating_sub(now))
                    .unwrap_or(0);
                BreakerView {
                    scope: *scope,
                    tripped: b.tripped,
                    reason: b.reason,
                    until_ms: b.until_ms,
                    cooldown_left_ms: left,
                }
            })
            .collect();
        let allocation = s
            .info
            .allocation
            .iter()
            .map(|a| AllocationView {
                mode: a.mode,
                enabled: a.enabled,
                capital_percent: a.capital_percent.to_string(),
                capital_usd: a.capital_usd.to_string(),
                used_usd: used[a.mode.index()].to_string(),
                max_positions: a.max_positions,
                open_positions: open[a.mode.index()],
                max_usd_per_position: a.max_usd_per_position.to_string(),
            })
            .collect();
        let lat = s.stats.map(|x| x.latency_ns).unwrap_or([0; 4]);
        DashboardSnapshot {
            seq: self.seq.load(Ordering::Relaxed),
            now_ms: now,
            status: StatusView {
                engine: engine.into(),
                halt_reason,
                killed: s.killed,
                trading_mode: s.info.trading_mode,
                feed_source: s.info.feed_source.clone(),
                feed,
                feed_age_ms: s.stats.map(|x| x.feed_age_ms).unwrap_or(0),
                heartbeat_age_ms: hb_age,
                health: health.into(),
                database: s.database.clone(),
                started_ms: s.info.started_ms,
                version: s.info.version.clone(),
            },
            positions,
            open_orders: s.orders.values().map(OrderView::from).collect(),
            pnl: PnlView {
                hour: hour.to_string(),
                day: day.to_string(),
                total: (s.realized_total - s.fees_total + s.funding_total).to_string(),
                unrealized: unrealized.to_string(),
                fees_total: s.fees_total.to_string(),
                funding_total: s.funding_total.to_string(),
                fees_by_asset: s
                    .fees_by_asset
                    .iter()
                    .map(|(a, v)| (a.to_string(), v.to_string()))
                    .collect(),
                unconverted_fees: s.unconverted_fees,
                equity_curve: s
                    .curve
                    .iter()
                    .map(|(t, e)| EquityPoint {
                        ts_ms: *t,
                        equity: e.to_string(),
                    })
                    .collect(),
            },
            breakers,
            limits: LimitsView {
                max_position_usd: s.info.max_position_usd.to_string(),
                max_daily_loss_usd: s.info.max_daily_loss_usd.to_string(),
                daily_loss_used_usd: (-day).max(Notional::ZERO).to_string(),
                allocation,
            },
            latency: LatencyView {
                p50_ns: lat[0],
                p99_ns: lat[1],
                p999_ns: lat[2],
                max_ns: lat[3],
                p99_histogram: hist_view(&s.p99_hist),
                p50_histogram: hist_view(&s.p50_hist),
            },
            stats: s.stats,
            trade_count: s.trade_count,
            queue_depth_critical: s.queue_critical,
            queue_depth_stats: s.queue_stats,
            liquidations: s.liquidations.iter().cloned().collect(),
        }
    }

    fn trades(&self, q: TradesQuery) -> BoxFut<'_, Result<TradesPage, BackendError>> {
        let s = self.lock();
        let start = (q.page as usize).saturating_mul(q.limit as usize);
        let trades = s
            .trades
            .iter()
            .skip(start)
            .take(q.limit as usize)
            .cloned()
            .collect();
        let page = TradesPage {
            page: q.page,
            limit: q.limit,
            total: s.trades.len() as u64,
            trades,
        };
        Box::pin(async move { Ok(page) })
    }

    fn send_command(&self, cmd: Command) -> Result<(), BackendError> {
        (self.send)(cmd)
    }

    fn audit(&self, ev: AuditEvent) -> BoxFut<'_, Result<(), BackendError>> {
        let mut s = self.lock();
        let id = s.audit_next;
        s.audit_next += 1;
        let ip = ev.ip.map(|i| i.to_string());
        // Same idea as the Postgres trail: each row's hash covers the previous hash, so an edit breaks the chain.
        let mut h = Sha256::new();
        h.update(s.audit_last_hash);
        h.update(id.to_be_bytes());
        h.update(ev.ts_ms.to_be_bytes());
        h.update(ev.actor.as_bytes());
        h.update([0]);
        h.update(ip.as_deref().unwrap_or("").as_bytes());
        h.update([0]);
        h.update(ev.action.as_bytes());
        h.update([0]);
        h.update(ev.detail.to_string().as_bytes());
        let hash: [u8; 32] = h.finalize().into();
        s.audit_last_hash = hash;
        tracing::info!(target: "aegis::audit", id, actor = %ev.actor, ip = ?ip, action = %ev.action, detail = %ev.detail, "audit");
        s.audit.push_front(AuditRecord {
            id,
            ts_ms: ev.ts_ms,
            actor: ev.actor,
            ip,
            action: ev.action,
            detail: ev.detail,
            hash: hex::encode(hash),
        });
        s.audit.truncate(MAX_AUDIT);
        drop(s);
        self.bump();
        Box::pin(async { Ok(()) })
    }

    fn audit_log(
        &self,
        limit: u32,
        before_id: Option<u64>,
    ) -> BoxFut<'_, Result<Vec<AuditRecord>, BackendError>> {
        let rows = self
            .lock()
            .audit
            .iter()
            .filter(|r| before_id.is_none_or(|b| r.id < b))
            .take(limit as usize)
            .cloned()
            .collect();
        Box::pin(async move { Ok(rows) })
    }

    fn record_access(&self, e: AccessLogEntry) {
        tracing::info!(target: "aegis::access", ip = %e.ip, user = e.user.as_deref().unwrap_or("-"),
            method = %e.method, path = %e.path, status = e.status, us = e.duration_us, "api request");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aegis_shared::event::{BreakerEvent, Fill, Liquidity, OrderIntent};
    use aegis_shared::{Qty, Side};

    pub(crate) fn info() -> ModelInfo {
        ModelInfo {
            trading_mode: TradingMode::Paper,
            feed_source: "sim".into(),
            started_ms: 0,
            max_position_usd: Notional::from_int(100),
            max_daily_loss_usd: Notional::from_int(50),
            allocation: vec![ModeAllocation {
                mode: StrategyMode::Scalp,
                enabled: true,
                capital_percent: Notional::from_int(40),
                capital_usd: Notional::from_int(400),
                max_positions: 3,
                max_usd_per_position: Notional::from_int(100),
            }],
            version: "test".into(),
        }
    }

    #[test]
    fn fills_positions_breakers_update_the_snapshot() {
        let m = LiveModel::new(info(), |_| Ok(()));
        let now = now_ms();
        let sym = Symbol::new("BTCUSDT").unwrap();
        let seq0 = m.snapshot().seq;
        m.apply(&EngineEvent::Fill(Fill {
            ts_ms: now,
            symbol: sym,
            market: aegis_shared::Market::Futures,
            client_id: ClientOrderId::new("ag1-1").unwrap(),
            exchange_order_id: 1,
            trade_id: 1,
            split_part: 0,
            mode: StrategyMode::Scalp,
            intent: OrderIntent::Entry,
            side: Side::Buy,
            price: Price::from_int(100),
            qty: Qty::from_int(1),
            fee: Notional::parse("0.04").unwrap(),
            fee_asset: Symbol::new("USDT").unwrap(),
            liquidity: Liquidity::Taker,
            realized_pnl: Notional::from_int(2),
            fee_conv: Default::default(),
        }));
        m.apply(&EngineEvent::Position(PositionUpdate {
            ts_ms: now,
            symbol: sym,
            market: aegis_shared::Market::Futures,
            mode: StrategyMode::Scalp,
            qty: Qty::from_int(1),
            entry_price: Price::from_int(90),
            realized_pnl: Notional::from_int(2),
            fees: Notional::parse("0.04").unwrap(),
            funding: Default::default(),
        }));
        m.apply(&EngineEvent::Breaker(BreakerEvent {
            ts_ms: now,
            scope: BreakerScope::Mode(StrategyMode::Scalp),
            change: BreakerChange::Tripped {
                reason: TripReason::HourlyLoss,
                until_ms: now + 60_000,
            },
        }));
        let s = m.snapshot();
        assert!(s.seq > seq0);
        assert_eq!(s.pnl.total, "1.96");
        assert_eq!(s.pnl.hour, "1.96");
        assert_eq!(s.pnl.day, "1.96");
        assert_eq!(s.positions.len(), 1);
        assert_eq!(s.positions[0].unrealized_pnl, "10");
        assert_eq!(s.limits.allocation[0].used_usd, "90");
        assert_eq!(s.limits.allocation[0].open_positions, 1);
        let b = s
            .breakers
            .iter()
            .find(|b| b.scope == BreakerScope::Mode(StrategyMode::Scalp))
            .unwrap();
        assert!(b.tripped && b.cooldown_left_ms > 50_000 && b.cooldown_left_ms <= 60_000);
        assert_eq!(s.trade_count, 1);
    }

    #[test]
    fn bnb_fees_funding_and_liquidations_show_in_quote_and_per_asset() {
        use aegis_shared::event::{FeeConversion, ForcedCloseKind, FundingEvent, LiquidationEvent};
        let m = LiveModel::new(info(), |_| Ok(()));
        let now = now_ms();
        let sym = Symbol::new("BTCUSDT").unwrap();
        let bnb = Notional::parse("0.0001").unwrap();
        let fill = |fee_conv| Fill {
            ts_ms: now,
            symbol: sym,
            market: aegis_shared::Market::Futures,
            client_id: ClientOrderId::new("autoclose-1").unwrap(),
            exchange_order_id: 1,
            trade_id: 1,
            mode: StrategyMode::Scalp,
            intent: OrderIntent::Manual,
            side: Side::Sell,
            price: Price::from_int(100),
            qty: Qty::from_int(1),
            fee: bnb,
            fee_asset: Symbol::new("BNB").unwrap(),
            liquidity: Liquidity::Taker,
            realized_pnl: Notional::from_int(-2),
            fee_conv,
            split_part: 0,
        };
        m.apply(&EngineEvent::Fill(fill(FeeConversion::convert(
            bnb,
            Price::from_int(600),
        ))));
        m.apply(&EngineEvent::Fill(Fill {
            trade_id: 2,
            realized_pnl: Notional::ZERO,
            ..fill(FeeConversion::Unconvertible)
        }));
        m.apply(&EngineEvent::Funding(FundingEvent {
            ts_ms: now,
            symbol: sym,
            mode: StrategyMode::Scalp,
            tran_id: 7,
            asset: Symbol::new("USDT").unwrap(),
            amount: Notional::parse("-0.5").unwrap(),
            total: Notional::parse("-0.5").unwrap(),
            quote: Notional::parse("-0.5").unwrap(),
        }));
        m.apply(&EngineEvent::Liquidation(LiquidationEvent {
            ts_ms: now,
            symbol: sym,
            mode: StrategyMode::Scalp,
            kind: ForcedCloseKind::Liquidation,
            client_id: ClientOrderId::new("autoclose-1").unwrap(),
            trade_id: 1,
            side: Side::Sell,
            price: Price::from_int(100),
            qty: Qty::from_int(1),
            realized_pnl: Notional::from_int(-2),
            fee: Notional::parse("0.06").unwrap(),
            position_after: Qty::ZERO,
        }));
        let s = m.snapshot();
        // 0.0001 BNB at 600 is 0.06 USDT; the unpriced one counts zero and is flagged.
        assert_eq!(s.pnl.fees_total, "0.06");
        assert_eq!(s.pnl.fees_by_asset["BNB"], "0.0002");
        assert_eq!(s.pnl.unconverted_fees, 1);
        assert_eq!(s.pnl.funding_total, "-0.5");
        assert_eq!(s.pnl.total, "-2.56");
        assert_eq!(s.pnl.day, "-2.56");
        assert_eq!(s.liquidations.len(), 1);
        assert_eq!(s.liquidations[0].kind, "liquidation");
        assert_eq!(s.liquidations[0].realized_pnl, "-2");
    }

    #[test]
    fn latency_buckets_are_powers_of_two() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(1), 0);
        assert_eq!(bucket_of(2), 1);
        assert_eq!(bucket_of(3), 2);
        assert_eq!(bucket_of(1024), 10);
        assert_eq!(bucket_of(1025), 11);
    }
}

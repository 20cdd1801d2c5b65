//! The live Binance venue, USD-M futures or spot ([`LiveVenue::new`]'s market): the engine side of order entry
//! on testnet or production.
//!
//! **Order entry runs on the engine thread** ([`entry`]): an approved order is encoded and written to the
//! WebSocket-API connection (`order.place` / `order.cancel` / `order.status`, `session.logon` for Ed25519 keys,
//! on spot `order.cancelReplace`) by the engine thread itself, on the same non-blocking mio client as market
//! data (`crate::net::mio_ws`); the answers and the unknown-outcome timers are handled in its busy loop
//! ([`LiveVenue::poll`]). The REST fallback, REST status queries and the clock resync run on the control
//! plane's REST worker (`aegis_control::exchange::rest_worker`), reached through a bounded queue; its answers
//! come back as [`Inbound::Rest`]. Everything else the exchange says arrives as [`Inbound`] messages on a
//! bounded queue the engine drains in the same loop: `ORDER_TRADE_UPDATE`s (spot: `executionReport`s) from the
//! user data stream (fills, partial fills, cancels, expiries, liquidations), the spot stop manager's resting
//! stops, reconciliation adoptions and halts (key rejected, rate limited, reconciliation pending).
//!
//! Without an [`entry::EntryConfig`] on the link (the hidden `AEGIS_ORDER_PATH=gateway`, kept for the A/B
//! measurement) orders go as [`Outbound`] messages to the control plane's old gateway thread instead
//! (`aegis_control::exchange::gateway`); the message types are the same.
//!
//! Rules enforced here:
//! - An order is `PendingNew` until the exchange answers; fills update positions only when the exchange reports
//!   them (never optimistically), in journal order `Fill` → `Position` → `Order`.
//! - Updates for orders the engine did not place (liquidations `autoclose-…`, ADL `adl_autoclose`, manual orders)
//!   still move positions: the reducing part goes to the modes holding the symbol's position (in
//!   [`StrategyMode::ALL`] order), any remainder to [`ADOPT_DEFAULT_MODE`].
//! - Read-only (no usable key, or the exchange rejected it with -2014/-2015): every order is refused locally
//!   and silently (no request, no journal spam, no retry loop); exits included, since the exchange would refuse
//!   them too.
//!
//! - Exactly once per exchange trade: the same trade may come from the user data stream and from the recovery
//!   of `GET /fapi/v1/userTrades` after a gap (restart, stream reconnect), in either order. A fill is booked only
//!   for a (symbol, trade id) not among the last [`TRADE_RING`] booked ones; as a second line, a fill that would
//!   take an order's booked quantity above the cumulative quantity the exchange reported with it is dropped.
//! - A trade of one of our orders that arrives after the order closed (missed in a stream gap, the order's final
//!   update came first, recovery books the trade later) still goes to the order's own mode and intent: an order
//!   that closes with less booked than the exchange's cumulative quantity is kept, with what it is owed, among
//!   the last [`MAX_OWED`] such orders, and a late trade of it within that quantity is booked as its fill, not
//!   by the foreign-fill rule (which would pick the mode by position, not by who placed the order).
//!
//! On **spot** (issue 14) the same rules hold, with spot's differences:
//! - Orders are encoded as spot's (the venue sets its market on the order entry's encoder): no `reduceOnly`
//!   (a spot exit's reduce-only marks it for the gate only), post-only as `LIMIT_MAKER`.
//! - A fee taken in the symbol's base asset (Binance's default for a buy: the commission comes out of the
//!   asset received) is never received: the held quantity moves by `last_qty − fee` on a buy, and a sell whose
//!   fee were in the base asset leaves `fee` less too. The fee is valued at the fill price
//!   (`FeeConversion::Converted`), as the paper venue does; fees in BNB or the quote asset arrive priced by the
//!   control plane. Spot is long only: no fee, and no foreign sell, makes a position negative (clamped).
//! - The control plane's stop manager rests a `STOP_LOSS_LIMIT` sell per symbol on the exchange and reports it
//!   ([`Inbound::SpotStop`]). The stop locks the balance it would sell, so a spot sell exit of a symbol with a
//!   resting stop goes as `order.cancelReplace` cancelling that stop ([`entry::OrderEntry::place_replacing`];
//!   over REST `POST /api/v3/order/cancelReplace`), and once that request left the venue forgets the stop: it
//!   is gone either way (cancelled, or it triggered first, in which case the exit finds the balance sold and is
//!   refused, -2010).
//!
//! Nothing here allocates after construction: the working-order table is preallocated ([`MAX_LIVE_ORDERS`]),
//! the ring of recent trade ids is a fixed array, the owed list has a fixed capacity.

pub mod answer;
pub mod entry;

use super::{ExecReport, OrderRequest};
use crate::position::{Position, Positions};
use crate::queues::EventOut;
use aegis_shared::event::{
    AlertKind, FeeConversion, Fill, ForcedCloseKind, FundingEvent, HaltReason, LiquidationEvent,
    Liquidity, OrderEvent, OrderIntent, OrderStatus, OrderType, PositionUpdate, TimeInForce,
};
use aegis_shared::{
    ClientOrderId, EngineEvent, Market, Notional, Price, Qty, Side, StrategyMode, Symbol,
};
use crossbeam_channel::{Receiver, Sender, TrySendError};
use std::sync::Arc;

/// Most orders the live venue tracks at once (working or awaiting an answer).
pub const MAX_LIVE_ORDERS: usize = 256;
/// Capacity of each of the two queues between the engine and the gateway.
pub const LINK_CAPACITY: usize = 4096;
/// Mode that positions and orders are adopted into when the journal does not say (documented policy).
pub const ADOPT_DEFAULT_MODE: StrategyMode = StrategyMode::Scalp;
/// Reject code used when the venue refuses an order itself because it has no usable key (Binance's -2015).
pub const REJECT_KEY: i32 = -2015;
/// Reject code used when the venue's tables or queues are full (Binance's generic -2010).
pub const REJECT_FULL: i32 = -2010;
/// Most halt/alert signals buffered between two engine polls.
const MAX_SIGNALS: usize = 32;
/// Recent (symbol, trade id) pairs remembered to book each exchange trade once. A recovery after a gap replays
/// at most the trades since the gap, and the control plane filters those against the journal first, so the
/// ring only has to cover the trades still in flight between the two (far fewer than this).
pub const TRADE_RING: usize = 1024;
/// Closed orders remembered with a quantity still owed (closed with fewer trades booked than the exchange's
/// cumulative quantity): a gap loses few trades, and the oldest is forgotten first when the list is full.
pub const MAX_OWED: usize = 64;

/// Engine → gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outbound {
    /// Place an approved order.
    Place {
        /// The order.
        req: OrderRequest,
        /// Its client order id.
        client_id: ClientOrderId,
    },
    /// Cancel an order by client id.
    Cancel {
        /// Symbol.
        symbol: Symbol,
        /// Client order id.
        client_id: ClientOrderId,
    },
}

/// One `ORDER_TRADE_UPDATE` (spot: `executionReport`; or an order status learned by query), in engine types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderUpdate {
    /// Event time (ms).
    pub ts_ms: u64,
    /// Symbol.
    pub symbol: Symbol,
    /// `c`: client order id (ours `ag…`, or e.g. `autoclose-…`).
    pub client_id: ClientOrderId,
    /// `i`: exchange order id.
    pub exchange_id: u64,
    /// `S`.
    pub side: Side,
    /// `o` (other types are reported as MARKET).
    pub order_type: OrderType,
    /// `X`: status after this update.
    pub status: OrderStatus,
    /// `p`: limit price (zero for market).
    pub price: Price,
    /// `q`: original quantity.
    pub orig_qty: Qty,
    /// `l`: quantity filled by this update (zero when no fill).
    pub last_qty: Qty,
    /// `L`: price of this fill.
    pub last_price: Price,
    /// `z`: cumulative filled quantity.
    pub cum_qty: Qty,
    /// `n`: commission (positive = paid).
    pub fee: Notional,
    /// `N`: commission asset (USDT when omitted). On spot, the symbol's base asset means the commission came
    /// out of the quantity received (see the module docs).
    pub fee_asset: Symbol,
    /// How `fee` is valued in the quote asset (the control plane prices a BNB fee before the engine sees it).
    pub fee_conv: FeeConversion,
    /// `t`: trade id.
    pub trade_id: u64,
    /// `m`: maker.
    pub maker: bool,
    /// `R`: reduce-only.
    pub reduce_only: bool,
}

/// Exchange (via the control plane) → engine.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Inbound {
    /// The exchange accepted an order (`NEW`), with its id.
    Ack {
        /// Client id.
        client_id: ClientOrderId,
        /// Exchange order id.
        exchange_id: u64,
        /// When.
        ts_ms: u64,
    },
    /// The exchange refused an order (or, after an unknown status, a query found no such order).
    Rejected {
        /// Client id.
        client_id: ClientOrderId,
        /// Binance error code.
        code: i32,
        /// When.
        ts_ms: u64,
    },
    /// An order update (user data stream, or a status query after an unknown outcome).
    Update(OrderUpdate),
    /// Reconciliation: the exchange's position for (symbol, mode) is this; the engine adopts it.
    SetPosition(PositionUpdate),
    /// Reconciliation: an open order of ours found on the exchange, adopted into the working table.
    AdoptOrder {
        /// The order as the engine would have sent it (symbol index is resolved by the engine).
        symbol: Symbol,
        /// Mode it is attributed to.
        mode: StrategyMode,
        /// Side.
        side: Side,
        /// Type.
        order_type: OrderType,
        /// Limit price.
        price: Price,
        /// Original quantity.
        qty: Qty,
        /// Already filled.
        filled: Qty,
        /// Reduce-only.
        reduce_only: bool,
        /// Client id.
        client_id: ClientOrderId,
        /// Exchange id.
        exchange_id: u64,
    },
    /// A funding settlement of a symbol (one `FUNDING_FEE` income record, deduplicated by the control plane).
    Funding {
        /// Settlement time (ms).
        ts_ms: u64,
        /// Symbol.
        symbol: Symbol,
        /// The income's `tranId`.
        tran_id: u64,
        /// Asset paid in.
        asset: Symbol,
        /// Signed amount in `asset` (received > 0).
        amount: Notional,
        /// Its value in the quote asset.
        conv: FeeConversion,
    },
    /// Halt new entries for this reason.
    Halt(HaltReason),
    /// Lift a halt of this reason.
    Clear(HaltReason),
    /// Raise an alert.
    Alert(AlertKind),
    /// The key is unusable (missing, or rejected with -2014/-2015): refuse every order from now on.
    ReadOnly,
    /// Spot (`MARKETS=spot`): the control plane's stop manager has a `STOP_LOSS_LIMIT` sell of `symbol`
    /// resting on the exchange with this client id (`None`: no longer). The stop locks the balance it would
    /// sell, so an exit of that symbol must cancel it in the same request (`order.cancelReplace`).
    SpotStop {
        /// Symbol.
        symbol: Symbol,
        /// The resting stop's client id.
        client_id: Option<ClientOrderId>,
    },
    /// The control plane's REST worker answers a job of the engine thread's order entry ([`entry::RestJob`]).
    Rest {
        /// The job, echoed.
        job: entry::RestJob,
        /// How it ended.
        outcome: entry::RestOutcome,
    },
}

/// What [`LiveVenue::poll`] asks the engine to do beyond events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VenueSignal {
    /// Halt entries.
    Halt(HaltReason),
    /// Lift a halt.
    Clear(HaltReason),
    /// Emit an alert.
    Alert(AlertKind),
}

/// The engine's ends of the two queues to the gateway. Built by [`link`].
#[derive(Debug, Clone)]
pub struct LiveLink {
    /// Orders out.
    pub outbound: Sender<Outbound>,
    /// Exchange news in.
    pub inbound: Receiver<Inbound>,
    /// Order entry on the engine thread ([`LiveLink::attach_entry`]); taken once by the venue. None: orders go
    /// to the control plane's gateway thread on `outbound` (the old path, kept for the A/B bench).
    entry: Arc<std::sync::Mutex<Option<entry::EntryConfig>>>,
    id: Arc<()>,
}

impl LiveLink {
    /// Orders go out from the engine thread itself over this WebSocket-API connection (see [`entry`]); the
    /// REST work goes to the worker behind `cfg.rest`.
    pub fn attach_entry(&self, cfg: entry::EntryConfig) {
        *self.entry.lock().unwrap_or_else(|e| e.into_inner()) = Some(cfg);
    }

    fn take_entry(&self) -> Option<entry::EntryConfig> {
        self.entry.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

impl PartialEq for LiveLink {
    fn eq(&self, o: &Self) -> bool {
        Arc::ptr_eq(&self.id, &o.id)
    }
}

/// The control plane's ends of the two queues.
#[derive(Debug, Clone)]
pub struct GatewayEnds {
    /// Orders from the engine.
    pub outbound: Receiver<Outbound>,
    /// News for the engine (several producers: gateway, user data stream, reconciliation).
    pub inbound: Sender<Inbound>,
}

/// Creates the queues: the engine's ends (for `EngineParams::live`) and the control plane's.
pub fn link() -> (LiveLink, GatewayEnds) {
    let (otx, orx) = crossbeam_channel::bounded(LINK_CAPACITY);
    let (itx, irx) = crossbeam_channel::bounded(LINK_CAPACITY);
    (
        LiveLink {
            outbound: otx,
            inbound: irx,
            entry: Arc::new(std::sync::Mutex::new(None)),
            id: Arc::new(()),
        },
        GatewayEnds {
            outbound: orx,
            inbound: itx,
        },
    )
}

#[derive(Debug, Clone, Copy)]
struct Working {
    req: OrderRequest,
    client_id: ClientOrderId,
    exchange_id: Option<u64>,
    filled: Qty,
    status: OrderStatus,
}

/// The live venue. See the module docs.
#[derive(Debug)]
pub struct LiveVenue {
    link: LiveLink,
    symbols: Vec<Symbol>,
    orders: Vec<Working>,
    read_only: bool,
    signals: [Option<VenueSignal>; MAX_SIGNALS],
    nsignals: usize,
    refused: u64,
    entry: Option<Box<entry::OrderEntry>>,
    /// Recently booked trades as (symbol index, trade id); 0 = free slot (Binance trade ids start at 1).
    trades: Box<[(u32, u64); TRADE_RING]>,
    /// Next slot of `trades` to overwrite.
    trades_at: usize,
    /// Closed orders owed trades, oldest first: (order with `filled` = booked, quantity still owed).
    owed: Vec<(Working, Qty)>,
    /// The market traded: on every event, and it decides the order encoding and the fee rules (module docs).
    market: Market,
    /// Spot: the client id of the stop resting on the exchange per symbol index (fixed at construction).
    stops: Box<[Option<ClientOrderId>]>,
}

impl LiveVenue {
    /// A venue trading `market` for the engine's symbols (index order). Order entry runs on the engine thread
    /// when the link carries an [`entry::EntryConfig`] (its encoder is set to `market` here, whatever it was
    /// built with), else orders go to the gateway thread on the link's queue.
    pub fn new(link: LiveLink, symbols: Vec<Symbol>, market: Market) -> Self {
        let entry = link.take_entry().map(|c| {
            let mut e = Box::new(entry::OrderEntry::new(c));
            e.set_market(market);
            e
        });
        Self {
            market,
            stops: vec![None; symbols.len()].into_boxed_slice(),
            entry,
            link,
            symbols,
            orders: Vec::with_capacity(MAX_LIVE_ORDERS),
            read_only: false,
            signals: [None; MAX_SIGNALS],
            nsignals: 0,
            refused: 0,
            trades: Box::new([(0, 0); TRADE_RING]),
            trades_at: 0,
            owed: Vec::with_capacity(MAX_OWED),
        }
    }

    /// Remembers trade `id` of symbol `sym`; false when it was booked already (a trade id 0 is unknown, e.g.
    /// a status learned by query, and never a duplicate).
    fn first_booking(&mut self, sym: usize, id: u64) -> bool {
        if id == 0 {
            return true;
        }
        let key = (sym as u32, id);
        if self.trades.contains(&key) {
            return false;
        }
        self.trades[self.trades_at] = key;
        self.trades_at = (self.trades_at + 1) % TRADE_RING;
        true
    }

    /// Remembers closed order `w` as owed `left` more of trades (see the module docs); the oldest is
    /// forgotten when the list is full, so its late trade falls back to the foreign-fill rule.
    fn owe(&mut self, w: Working, left: Qty) {
        if self.owed.len() == MAX_OWED {
            self.owed.remove(0);
        }
        self.owed.push((w, left));
    }

    /// Orders working or awaiting an answer.
    pub fn open_orders(&self) -> usize {
        self.orders.len()
    }

    /// True once the key is unusable: every order is refused locally.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Orders refused locally while read-only.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// The market this venue trades.
    pub fn market(&self) -> Market {
        self.market
    }

    /// Spot: the client id of the stop resting on the exchange for symbol index `sym`, as last reported by
    /// [`Inbound::SpotStop`] (cleared once an exit cancelled it).
    pub fn resting_stop(&self, sym: usize) -> Option<ClientOrderId> {
        self.stops.get(sym).copied().flatten()
    }

    /// The engine thread's order entry, when it runs here (see [`entry`]).
    pub fn entry(&self) -> Option<&entry::OrderEntry> {
        self.entry.as_deref()
    }

    fn order_event(&self, w: &Working, ts: u64, status: OrderStatus, code: i32) -> EngineEvent {
        EngineEvent::Order(OrderEvent {
            ts_ms: ts,
            symbol: w.req.symbol,
            market: self.market,
            client_id: w.client_id,
            exchange_id: w.exchange_id,
            mode: w.req.mode,
            intent: w.req.intent,
            side: w.req.side,
            order_type: w.req.order_type,
            tif: w.req.tif,
            price: w.req.price,
            qty: w.req.qty,
            filled: w.filled,
            reduce_only: w.req.reduce_only,
            status,
            reject_code: code,
        })
    }

    fn final_report(req: &OrderRequest, ts: u64) -> ExecReport {
        ExecReport {
            sym: req.sym,
            mode: req.mode,
            ts_ms: ts,
            qty: Qty::ZERO,
            net: Notional::ZERO,
            closed_trade: None,
            order_final: true,
        }
    }

    /// Sends an approved order to the gateway and reports it `PendingNew`. Refused locally (`Rejected`, or
    /// silently while read-only) when the tables or the queue are full.
    pub fn submit(
        &mut self,
        req: &OrderRequest,
        cid: ClientOrderId,
        ts: u64,
        out: &mut impl EventOut,
        on_exec: &mut impl FnMut(&ExecReport),
    ) -> OrderStatus {
        if self.read_only {
            self.refused += 1;
            on_exec(&Self::final_report(req, ts));
            return OrderStatus::Rejected;
        }
        let w = Working {
            req: *req,
            client_id: cid,
            exchange_id: None,
            filled: Qty::ZERO,
            status: OrderStatus::PendingNew,
        };
        if self.orders.len() == MAX_LIVE_ORDERS {
            out.emit(self.order_event(&w, ts, OrderStatus::Rejected, REJECT_FULL));
            on_exec(&Self::final_report(req, ts));
            return OrderStatus::Rejected;
        }
        // Journal order: the PendingNew event is handed over before the request can reach the exchange.
        out.emit(self.order_event(&w, ts, OrderStatus::PendingNew, 0));
        // Spot: a sell exit of a symbol whose stop rests on the exchange cancels it in the same request (the stop
        // locks the balance this sells). Once the request left, the stop is forgotten: cancelled by it, or
        // triggered before it, it rests no more either way, and the stop manager reports the next one.
        let replacing = match self.market {
            Market::Spot if req.reduce_only && req.side == Side::Sell => {
                self.stops.get(req.sym).copied().flatten()
            }
            _ => None,
        };
        if let Some(e) = self.entry.as_deref_mut() {
            // Written to the socket now; refusals and answers come back through `poll`.
            self.orders.push(w);
            match replacing {
                // Forgotten only when the request left: refused here, the stop still rests.
                Some(stop) => {
                    if e.place_replacing(*req, cid, stop) {
                        if let Some(slot) = self.stops.get_mut(req.sym) {
                            *slot = None;
                        }
                    }
                }
                None => e.place(*req, cid),
            }
            return OrderStatus::PendingNew;
        }
        // The old gateway thread (the A/B bench path) has no cancel-replace: a spot exit goes as a plain order
        // there, and the stop stays remembered.
        match self.link.outbound.try_send(Outbound::Place {
            req: *req,
            client_id: cid,
        }) {
            Ok(()) => {
                self.orders.push(w);
                OrderStatus::PendingNew
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                out.emit(self.order_event(&w, ts, OrderStatus::Rejected, REJECT_FULL));
                on_exec(&Self::final_report(req, ts));
                OrderStatus::Rejected
            }
        }
    }

    /// Asks the exchange to cancel every working order (kill switch, shutdown). The cancellations are applied
    /// when the exchange confirms them. Returns how many were requested.
    pub fn cancel_all(&mut self) -> usize {
        let mut n = 0;
        if let Some(e) = self.entry.as_deref_mut() {
            for w in &self.orders {
                if e.cancel(w.req.symbol, w.client_id) {
                    n += 1;
                }
            }
            return n;
        }
        for w in &self.orders {
            if self
                .link
                .outbound
                .try_send(Outbound::Cancel {
                    symbol: w.req.symbol,
                    client_id: w.client_id,
                })
                .is_ok()
            {
                n += 1;
            }
        }
        n
    }

    fn signal(&mut self, s: VenueSignal) {
        if self.nsignals < MAX_SIGNALS {
            self.signals[self.nsignals] = Some(s);
            self.nsignals += 1;
        }
    }

    /// Takes the next halt/alert signal produced by [`LiveVenue::poll`].
    pub fn next_signal(&mut self) -> Option<VenueSignal> {
        if self.nsignals == 0 {
            return None;
        }
        let s = self.signals[0];
        self.signals.copy_within(1..self.nsignals, 0);
        self.nsignals -= 1;
        self.signals[self.nsignals] = None;
        s
    }

    fn sym_index(&self, s: Symbol) -> Option<usize> {
        self.symbols.iter().position(|x| *x == s)
    }

    /// Drains up to `max` inbound messages: applies fills to `positions`, emits events to `out`, reports
    /// executions and final states to `on_exec`, and queues halts/alerts for [`LiveVenue::next_signal`].
    /// Returns how many messages were handled.
    pub fn poll(
        &mut self,
        max: usize,
        positions: &mut Positions,
        out: &mut impl EventOut,
        on_exec: &mut impl FnMut(&ExecReport),
    ) -> usize {
        let mut n = 0;
        if let Some(e) = self.entry.as_deref_mut() {
            if e.poll(std::time::Instant::now()) {
                n += 1;
            }
        }
        while let Some(m) = self
            .entry
            .as_deref_mut()
            .and_then(entry::OrderEntry::next_inbound)
        {
            n += 1;
            self.apply(m, positions, out, on_exec);
        }
        while n < max {
            let Ok(m) = self.link.inbound.try_recv() else {
                break;
            };
            n += 1;
            self.apply(m, positions, out, on_exec);
        }
        n
    }

    fn find(&self, cid: &ClientOrderId) -> Option<usize> {
        self.orders.iter().position(|w| w.client_id == *cid)
    }

    /// Applies one inbound message (see [`LiveVenue::poll`]).
    pub fn apply(
        &mut self,
        m: Inbound,
        positions: &mut Positions,
        out: &mut impl EventOut,
        on_exec: &mut impl FnMut(&ExecReport),
    ) {
        match m {
            Inbound::Ack {
                client_id,
                exchange_id,
                ts_ms,
            } => {
                if let Some(i) = self.find(&client_id) {
                    let w = &mut self.orders[i];
                    w.exchange_id = Some(exchange_id);
                    if w.status == OrderStatus::PendingNew {
                        w.status = OrderStatus::New;
                        let w = *w;
                        out.emit(self.order_event(&w, ts_ms, OrderStatus::New, 0));
                    }
                }
            }
            Inbound::Rejected {
                client_id,
                code,
                ts_ms,
            } => {
                if let Some(i) = self.find(&client_id) {
                    let w = self.orders.swap_remove(i);
                    out.emit(self.order_event(&w, ts_ms, OrderStatus::Rejected, code));
                    on_exec(&Self::final_report(&w.req, ts_ms));
                }
            }
            Inbound::Update(u) => self.on_update(u, positions, out, on_exec),
            Inbound::SetPosition(u) => {
                if let Some(sym) = self.sym_index(u.symbol) {
                    let p = positions.get_mut(sym, u.mode);
                    // Keep the journal's realized PnL and fees; take the exchange's size and entry.
                    let restored = PositionUpdate {
                        realized_pnl: p.realized(),
                        fees: p.fees(),
                        funding: p.funding(),
                        ..u
                    };
                    *p = Position::restore(&restored);
                    out.emit(EngineEvent::Position(p.update(
                        u.ts_ms,
                        u.symbol,
                        u.mode,
                        self.market,
                    )));
                }
            }
            Inbound::AdoptOrder {
                symbol,
                mode,
                side,
                order_type,
                price,
                qty,
                filled,
                reduce_only,
                client_id,
                exchange_id,
            } => {
                let Some(sym) = self.sym_index(symbol) else {
                    return;
                };
                if self.find(&client_id).is_some() || self.orders.len() == MAX_LIVE_ORDERS {
                    return;
                }
                let w = Working {
                    req: OrderRequest {
                        symbol,
                        sym,
                        mode,
                        intent: if reduce_only {
                            OrderIntent::SignalExit
                        } else {
                            OrderIntent::Entry
                        },
                        side,
                        order_type,
                        tif: (order_type == OrderType::Limit).then_some(TimeInForce::Gtc),
                        price,
                        ref_price: price,
                        qty,
                        reduce_only,
                    },
                    client_id,
                    exchange_id: Some(exchange_id),
                    filled,
                    status: OrderStatus::New,
                };
                self.orders.push(w);
                out.emit(self.order_event(&w, 0, OrderStatus::New, 0));
            }
            Inbound::Funding {
                ts_ms,
                symbol,
                tran_id,
                asset,
                amount,
                conv,
            } => self.on_funding(
                ts_ms, symbol, tran_id, asset, amount, conv, positions, out, on_exec,
            ),
            Inbound::Halt(r) => self.signal(VenueSignal::Halt(r)),
            Inbound::Clear(r) => self.signal(VenueSignal::Clear(r)),
            Inbound::Alert(k) => self.signal(VenueSignal::Alert(k)),
            Inbound::ReadOnly => self.read_only = true,
            Inbound::SpotStop { symbol, client_id } => {
                if let Some(sym) = self.sym_index(symbol) {
                    self.stops[sym] = client_id;
                }
            }
            Inbound::Rest { job, outcome } => {
                if let Some(e) = self.entry.as_deref_mut() {
                    e.on_rest(job, outcome);
                }
            }
        }
    }

    fn on_update(
        &mut self,
        u: OrderUpdate,
        positions: &mut Positions,
        out: &mut impl EventOut,
        on_exec: &mut impl FnMut(&ExecReport),
    ) {
        let Some(sym) = self.sym_index(u.symbol) else {
            return;
        };
        // Spot: a fee in the base asset is valued at the fill price here (the control plane prices BNB and
        // quote fees; a base fee needs no other market). Its quantity leaves the held balance when booked.
        let mut u = u;
        if self.base_fee(&u).is_some() {
            u.fee_conv = FeeConversion::convert(u.fee, u.last_price);
        }
        let u = u;
        let liq = if u.maker {
            Liquidity::Maker
        } else {
            Liquidity::Taker
        };
        match self.find(&u.client_id) {
            Some(i) => {
                let mut w = self.orders[i];
                w.exchange_id = Some(u.exchange_id);
                if u.last_qty.units() > 0 {
                    // Booked once per trade id; and never more than the exchange says the order has filled
                    // (a repeat whose id left the ring, or an update without a trade id seen twice). `filled`
                    // adds what was booked, so a recovered trade older than one the stream already delivered
                    // still fits under the (recovery's) cumulative quantity.
                    if w.filled + u.last_qty > u.cum_qty || !self.first_booking(sym, u.trade_id) {
                        return;
                    }
                    w.filled += u.last_qty;
                    self.book_own(&w, sym, &u, liq, positions, out, on_exec);
                }
                let changed = w.status != u.status;
                w.status = u.status;
                if changed || u.last_qty.units() > 0 {
                    out.emit(self.order_event(&w, u.ts_ms, u.status, 0));
                }
                if u.status.is_final() {
                    self.orders.swap_remove(i);
                    if u.cum_qty > w.filled {
                        self.owe(w, u.cum_qty - w.filled);
                    }
                    on_exec(&Self::final_report(&w.req, u.ts_ms));
                } else {
                    self.orders[i] = w;
                }
            }
            None => {
                if u.last_qty.units() <= 0 || !self.first_booking(sym, u.trade_id) {
                    return;
                }
                // A late trade of an order that closed before it was booked is still that order's fill.
                if let Some(k) = self
                    .owed
                    .iter()
                    .position(|(w, left)| w.client_id == u.client_id && u.last_qty <= *left)
                {
                    let (mut w, left) = self.owed[k];
                    w.filled += u.last_qty;
                    self.book_own(&w, sym, &u, liq, positions, out, on_exec);
                    if left == u.last_qty {
                        self.owed.remove(k);
                    } else {
                        self.owed[k] = (w, left - u.last_qty);
                    }
                    return;
                }
                // Not ours (liquidation, ADL, a manual order) or already forgotten: the position still moved.
                let forced = ForcedCloseKind::of_client_id(u.client_id.as_str());
                if forced.is_some() {
                    self.signal(VenueSignal::Alert(AlertKind::Liquidation));
                }
                if u.fee_conv == FeeConversion::Unconvertible {
                    self.signal(VenueSignal::Alert(AlertKind::FeeUnconverted));
                }
                let mut left = u.last_qty;
                let sign = u.side.sign();
                // Each mode's share is its own part of the one exchange trade: `split_part` keeps the keys apart.
                let mut part: u16 = 0;
                for mode in StrategyMode::ALL {
                    if left.is_zero() {
                        break;
                    }
                    let q = positions.get(sym, mode).qty().units();
                    if q == 0 || q.signum() == sign {
                        continue;
                    }
                    let take = Qty::from_units(q.abs().min(left.units()));
                    let done = u.last_qty - left;
                    left -= take;
                    self.foreign_fill(
                        sym, mode, take, done, part, &u, liq, forced, positions, out, on_exec,
                    );
                    part += 1;
                }
                // Spot holds no shorts: what a foreign sell takes beyond what the modes hold came from a balance
                // the bot does not trade (held before it, or dust), and is not booked as a short.
                let spot_sell = self.market == Market::Spot && u.side == Side::Sell;
                if !left.is_zero() && !spot_sell {
                    self.foreign_fill(
                        sym,
                        ADOPT_DEFAULT_MODE,
                        left,
                        u.last_qty - left,
                        part,
                        &u,
                        liq,
                        forced,
                        positions,
                        out,
                        on_exec,
                    );
                }
            }
        }
    }

    /// Spot: the fee of `u` as a quantity of the base asset when it was taken in it (Binance's default for a
    /// buy: the commission comes out of the asset received), else `None` (futures, BNB or quote fees).
    fn base_fee(&self, u: &OrderUpdate) -> Option<Qty> {
        if self.market != Market::Spot {
            return None;
        }
        let base = u.symbol.base_asset()?;
        // Fee and quantity are both in units of 10⁻⁸ of their asset.
        (u.fee_asset == base).then(|| Qty::from_units(u.fee.units()))
    }

    /// Books trade `u` as a fill of our order `w` (its mode and intent), after the duplicate checks.
    #[allow(clippy::too_many_arguments)] // Private helper of two call sites.
    fn book_own(
        &mut self,
        w: &Working,
        sym: usize,
        u: &OrderUpdate,
        liq: Liquidity,
        positions: &mut Positions,
        out: &mut impl EventOut,
        on_exec: &mut impl FnMut(&ExecReport),
    ) {
        let qfee = u.fee_conv.quote_fee(u.fee);
        if u.fee_conv == FeeConversion::Unconvertible {
            self.signal(VenueSignal::Alert(AlertKind::FeeUnconverted));
        }
        let base_fee = self.base_fee(u);
        let pos = positions.get_mut(sym, w.req.mode);
        let r = pos.apply(u.side, u.last_price, u.last_qty, qfee, u.ts_ms);
        if let Some(q) = base_fee {
            // The account never received it: a buy holds `last_qty − fee`, a sell leaves `fee` less. Clamped to
            // the long held (spot is long only: fee math never makes a position negative).
            pos.deduct_held(q);
        }
        out.emit(EngineEvent::Fill(Fill {
            ts_ms: u.ts_ms,
            symbol: u.symbol,
            market: self.market,
            client_id: u.client_id,
            exchange_order_id: u.exchange_id,
            trade_id: u.trade_id,
            split_part: 0,
            mode: w.req.mode,
            intent: w.req.intent,
            side: u.side,
            price: u.last_price,
            qty: u.last_qty,
            fee: u.fee,
            fee_asset: u.fee_asset,
            liquidity: liq,
            realized_pnl: r.realized,
            fee_conv: u.fee_conv,
        }));
        out.emit(EngineEvent::Position(pos.update(
            u.ts_ms,
            u.symbol,
            w.req.mode,
            self.market,
        )));
        on_exec(&ExecReport {
            sym,
            mode: w.req.mode,
            ts_ms: u.ts_ms,
            qty: u.last_qty,
            net: r.realized - qfee,
            closed_trade: r.closed_trade,
            order_final: false,
        });
    }

    #[allow(clippy::too_many_arguments)] // Private helper of one call site.
    fn on_funding(
        &mut self,
        ts_ms: u64,
        symbol: Symbol,
        tran_id: u64,
        asset: Symbol,
        amount: Notional,
        conv: FeeConversion,
        positions: &mut Positions,
        out: &mut impl EventOut,
        on_exec: &mut impl FnMut(&ExecReport),
    ) {
        let Some(sym) = self.sym_index(symbol) else {
            return;
        };
        if conv == FeeConversion::Unconvertible {
            self.signal(VenueSignal::Alert(AlertKind::FeeUnconverted));
        }
        let qty = StrategyMode::ALL.map(|m| positions.get(sym, m).qty());
        let parts = crate::funding::split(amount, qty, ADOPT_DEFAULT_MODE.index());
        // Split the quote value the same way, so the quote parts add up to the converted total exactly too.
        let qparts = crate::funding::split(conv.quote_fee(amount), qty, ADOPT_DEFAULT_MODE.index());
        for (i, mode) in StrategyMode::ALL.into_iter().enumerate() {
            if parts[i].is_zero() && qparts[i].is_zero() {
                continue;
            }
            let pos = positions.get_mut(sym, mode);
            pos.apply_funding(qparts[i]);
            out.emit(EngineEvent::Funding(FundingEvent {
                ts_ms,
                symbol,
                mode,
                tran_id,
                asset,
                amount: parts[i],
                total: amount,
                quote: qparts[i],
            }));
            out.emit(EngineEvent::Position(pos.update(
                ts_ms,
                symbol,
                mode,
                self.market,
            )));
            on_exec(&ExecReport {
                sym,
                mode,
                ts_ms,
                qty: Qty::ZERO,
                net: qparts[i],
                closed_trade: None,
                order_final: false,
            });
        }
    }

    /// Books `qty` of the trade `u` (after `done` of `u.last_qty` was booked) to `mode` as part `part`.
    #[allow(clippy::too_many_arguments)] // Private helper of one call site.
    fn foreign_fill(
        &self,
        sym: usize,
        mode: StrategyMode,
        qty: Qty,
        done: Qty,
        part: u16,
        u: &OrderUpdate,
        liq: Liquidity,
        forced: Option<ForcedCloseKind>,
        positions: &mut Positions,
        out: &mut impl EventOut,
        on_exec: &mut impl FnMut(&ExecReport),
    ) {
        // The fee (and its quote value) is split pro rata by cumulative share, so the parts add up exactly.
        let share = |total: Notional| {
            let l = u.last_qty.units().max(1) as i128;
            let at = |q: i64| total.units() as i128 * q as i128 / l;
            Notional::from_units((at(done.units() + qty.units()) - at(done.units())) as i64)
        };
        let fee = share(u.fee);
        let fee_conv = match u.fee_conv {
            FeeConversion::Converted { price, quote } => FeeConversion::Converted {
                price,
                quote: share(quote),
            },
            c => c,
        };
        let qfee = fee_conv.quote_fee(fee);
        let base_fee = self.base_fee(u).map(|_| Qty::from_units(fee.units()));
        let pos = positions.get_mut(sym, mode);
        let r = pos.apply(u.side, u.last_price, qty, qfee, u.ts_ms);
        if let Some(q) = base_fee {
            // This mode's share of a base-asset fee leaves its balance (clamped to its long, as above).
            pos.deduct_held(q);
        }
        out.emit(EngineEvent::Fill(Fill {
            ts_ms: u.ts_ms,
            symbol: u.symbol,
            market: self.market,
            client_id: u.client_id,
            exchange_order_id: u.exchange_id,
            trade_id: u.trade_id,
            split_part: part,
            mode,
            intent: OrderIntent::Manual,
            side: u.side,
            price: u.last_price,
            qty,
            fee,
            fee_asset: u.fee_asset,
            liquidity: liq,
            realized_pnl: r.realized,
            fee_conv,
        }));
        out.emit(EngineEvent::Position(pos.update(
            u.ts_ms,
            u.symbol,
            mode,
            self.market,
        )));
        if let Some(kind) = forced {
            out.emit(EngineEvent::Liquidation(LiquidationEvent {
                ts_ms: u.ts_ms,
                symbol: u.symbol,
                mode,
                kind,
                client_id: u.client_id,
                trade_id: u.trade_id,
                side: u.side,
                price: u.last_price,
                qty,
                realized_pnl: r.realized,
                fee: qfee,
                position_after: pos.qty(),
            }));
        }
        on_exec(&ExecReport {
            sym,
            mode,
            ts_ms: u.ts_ms,
            qty,
            net: r.realized - qfee,
            closed_trade: r.closed_trade,
            order_final: false,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sym() -> Symbol {
        Symbol::new("BTCUSDT").unwrap()
    }

    fn req(side: Side, qty: &str) -> OrderRequest {
        OrderRequest {
            symbol: sym(),
            sym: 0,
            mode: StrategyMode::Scalp,
            intent: OrderIntent::Entry,
            side,
            order_type: OrderType::Market,
            tif: None,
            price: Price::ZERO,
            ref_price: Price::from_int(60_000),
            qty: Qty::parse(qty).unwrap(),
            reduce_only: false,
        }
    }

    fn update(cid: &str, status: OrderStatus, last: &str, cum: &str, side: Side) -> OrderUpdate {
        OrderUpdate {
            ts_ms: 5,
            symbol: sym(),
            client_id: ClientOrderId::new(cid).unwrap(),
            exchange_id: 77,
            side,
            order_type: OrderType::Market,
            status,
            price: Price::ZERO,
            orig_qty: Qty::parse("0.01").unwrap(),
            last_qty: Qty::parse(last).unwrap(),
            last_price: Price::from_int(60_000),
            cum_qty: Qty::parse(cum).unwrap(),
            fee: Notional::parse("0.24").unwrap(),
            fee_asset: Symbol::new("USDT").unwrap(),
            fee_conv: FeeConversion::Quote,
            trade_id: 9,
            maker: false,
            reduce_only: false,
        }
    }

    #[test]
    fn order_is_pending_until_the_exchange_fills_it_and_duplicates_count_once() {
        let (l, g) = link();
        let mut v = LiveVenue::new(l, vec![sym()], Market::Futures);
        let mut pos = Positions::new(1);
        let mut ev: Vec<EngineEvent> = Vec::new();
        let mut rep = Vec::new();
        let cid = ClientOrderId::new("ag1-1").unwrap();
        let st = v.submit(&req(Side::Buy, "0.01"), cid, 1, &mut ev, &mut |r| {
            rep.push(*r)
        });
        assert_eq!(st, OrderStatus::PendingNew);
        assert!(matches!(g.outbound.try_recv(), Ok(Outbound::Place { .. })));
        assert!(
            pos.get(0, StrategyMode::Scalp).is_flat(),
            "no optimistic fill"
        );
        let u = update(
            "ag1-1",
            OrderStatus::PartiallyFilled,
            "0.004",
            "0.004",
            Side::Buy,
        );
        g.inbound.send(Inbound::Update(u)).unwrap();
        g.inbound.send(Inbound::Update(u)).unwrap();
        let u2 = OrderUpdate {
            trade_id: 10,
            ..update("ag1-1", OrderStatus::Filled, "0.006", "0.01", Side::Buy)
        };
        g.inbound.send(Inbound::Update(u2)).unwrap();
        v.poll(16, &mut pos, &mut ev, &mut |r| rep.push(*r));
        assert_eq!(
            pos.get(0, StrategyMode::Scalp).qty(),
            Qty::parse("0.01").unwrap()
        );
        let fills = ev
            .iter()
            .filter(|e| matches!(e, EngineEvent::Fill(_)))
            .count();
        assert_eq!(fills, 2);
        assert_eq!(v.open_orders(), 0);
        assert!(rep.iter().any(|r| r.order_final));
    }

    #[test]
    fn liquidation_reduces_the_holding_mode_and_read_only_refuses_silently() {
        let (l, g) = link();
        let mut v = LiveVenue::new(l, vec![sym()], Market::Futures);
        let mut pos = Positions::new(1);
        pos.get_mut(0, StrategyMode::Swing).apply(
            Side::Buy,
            Price::from_int(60_000),
            Qty::parse("0.01").unwrap(),
            Notional::ZERO,
            1,
        );
        let mut ev: Vec<EngineEvent> = Vec::new();
        let u = update(
            "autoclose-123",
            OrderStatus::Filled,
            "0.01",
            "0.01",
            Side::Sell,
        );
        v.apply(Inbound::Update(u), &mut pos, &mut ev, &mut |_| {});
        assert!(pos.get(0, StrategyMode::Swing).is_flat());
        assert!(pos.get(0, ADOPT_DEFAULT_MODE).is_flat());
        v.apply(Inbound::ReadOnly, &mut pos, &mut ev, &mut |_| {});
        ev.clear();
        let mut finals = 0;
        let st = v.submit(
            &req(Side::Buy, "0.01"),
            ClientOrderId::new("ag1-2").unwrap(),
            1,
            &mut ev,
            &mut |r| finals += r.order_final as u32,
        );
        assert_eq!(st, OrderStatus::Rejected);
        assert!(ev.is_empty(), "read-only refusals are silent");
        assert_eq!(finals, 1);
        assert!(g.outbound.try_recv().is_err(), "nothing sent");
    }

    /// A trade missed in a gap whose order the stream then reports FILLED (the order closes with less booked than
    /// its cumulative quantity) is booked by recovery as that order's fill, in its own mode and intent, once;
    /// a trade beyond what the order is owed still goes by the foreign-fill rule.
    #[test]
    fn a_late_trade_of_a_closed_order_goes_to_its_own_mode() {
        let (l, g) = link();
        let mut v = LiveVenue::new(l, vec![sym()], Market::Futures);
        let mut pos = Positions::new(1);
        let mut ev: Vec<EngineEvent> = Vec::new();
        let cid = ClientOrderId::new("ag3-1").unwrap();
        let swing = OrderRequest {
            mode: StrategyMode::Swing,
            ..req(Side::Buy, "0.01")
        };
        v.submit(&swing, cid, 1, &mut ev, &mut |_| {});
        let trade = |id: u64, last: &str, cum: &str, st: OrderStatus| OrderUpdate {
            trade_id: id,
            ..update("ag3-1", st, last, cum, Side::Buy)
        };
        // Trade 31 (0.004) is lost in the gap; the stream's next word is trade 32 closing the order.
        g.inbound
            .send(Inbound::Update(trade(
                32,
                "0.006",
                "0.01",
                OrderStatus::Filled,
            )))
            .unwrap();
        v.poll(16, &mut pos, &mut ev, &mut |_| {});
        assert_eq!(v.open_orders(), 0);
        assert_eq!(
            pos.get(0, StrategyMode::Swing).qty(),
            Qty::parse("0.006").unwrap()
        );
        // Recovery books trade 31, twice (a second recovery): once, to Swing, as an entry of ag3-1.
        ev.clear();
        let mut finals = 0;
        for _ in 0..2 {
            v.apply(
                Inbound::Update(trade(31, "0.004", "0.004", OrderStatus::PartiallyFilled)),
                &mut pos,
                &mut ev,
                &mut |r| finals += usize::from(r.order_final),
            );
        }
        let fills: Vec<&Fill> = ev
            .iter()
            .filter_map(|e| match e {
                EngineEvent::Fill(f) => Some(f),
                _ => None,
            })
            .collect();
        assert_eq!(fills.len(), 1);
        assert_eq!(fills[0].mode, StrategyMode::Swing);
        assert_eq!(fills[0].intent, OrderIntent::Entry);
        assert_eq!(fills[0].client_id, cid);
        assert_eq!(finals, 0, "the order closed once, before");
        assert_eq!(
            pos.get(0, StrategyMode::Swing).qty(),
            Qty::parse("0.01").unwrap()
        );
        assert!(pos.get(0, StrategyMode::Scalp).qty().is_zero());
        // Nothing more is owed: another trade under that id goes by the foreign-fill rule (Scalp, Manual).
        ev.clear();
        v.apply(
            Inbound::Update(trade(33, "0.001", "0.011", OrderStatus::Filled)),
            &mut pos,
            &mut ev,
            &mut |_| {},
        );
        let f = ev
            .iter()
            .find_map(|e| match e {
                EngineEvent::Fill(f) => Some(*f),
                _ => None,
            })
            .expect("booked");
        assert_eq!(
            (f.mode, f.intent),
            (StrategyMode::Scalp, OrderIntent::Manual)
        );
        assert_eq!(
            pos.get(0, StrategyMode::Swing).qty(),
            Qty::parse("0.01").unwrap()
        );
    }

    /// Recovery after a gap replays trades by id, possibly older than one the stream already delivered, and the
    /// stream may deliver a recovered one again: each trade id is booked once, whatever the order of arrival, for
    /// our orders and foreign ones alike; without a ring hit the cumulative quantity still stops an overfill.
    #[test]
    fn a_trade_is_booked_once_by_id_in_any_order_of_stream_and_recovery() {
        let (l, g) = link();
        let mut v = LiveVenue::new(l, vec![sym()], Market::Futures);
        let mut pos = Positions::new(1);
        let mut ev: Vec<EngineEvent> = Vec::new();
        let cid = ClientOrderId::new("ag1-1").unwrap();
        v.submit(&req(Side::Buy, "0.01"), cid, 1, &mut ev, &mut |_| {});
        let trade = |id: u64, last: &str, cum: &str, st: OrderStatus| OrderUpdate {
            trade_id: id,
            ..update("ag1-1", st, last, cum, Side::Buy)
        };
        let part = OrderStatus::PartiallyFilled;
        // The stream delivers trade 12 (cum 0.004 of which 0.003 is trade 11, missed in the gap).
        g.inbound
            .send(Inbound::Update(trade(12, "0.001", "0.004", part)))
            .unwrap();
        // Recovery: trades 11 and 12 under the order's cumulative quantity known to the recovery.
        g.inbound
            .send(Inbound::Update(trade(11, "0.003", "0.004", part)))
            .unwrap();
        g.inbound
            .send(Inbound::Update(trade(12, "0.001", "0.004", part)))
            .unwrap();
        // The stream goes on with 13, then (a replay) 11 again.
        g.inbound
            .send(Inbound::Update(trade(
                13,
                "0.006",
                "0.01",
                OrderStatus::Filled,
            )))
            .unwrap();
        v.poll(16, &mut pos, &mut ev, &mut |_| {});
        let ids: Vec<u64> = ev
            .iter()
            .filter_map(|e| match e {
                EngineEvent::Fill(f) => Some(f.trade_id),
                _ => None,
            })
            .collect();
        assert_eq!(ids, [12, 11, 13]);
        assert_eq!(
            pos.get(0, StrategyMode::Scalp).qty(),
            Qty::parse("0.01").unwrap()
        );
        assert_eq!(v.open_orders(), 0);
        // A foreign trade replayed by recovery is booked once too.
        ev.clear();
        let foreign = OrderUpdate {
            trade_id: 20,
            ..update(
                "manual-1",
                OrderStatus::Filled,
                "0.002",
                "0.002",
                Side::Sell,
            )
        };
        for _ in 0..2 {
            v.apply(Inbound::Update(foreign), &mut pos, &mut ev, &mut |_| {});
        }
        let n = ev
            .iter()
            .filter(|e| matches!(e, EngineEvent::Fill(_)))
            .count();
        assert_eq!(n, 1);
        assert_eq!(
            pos.get(0, StrategyMode::Scalp).qty(),
            Qty::parse("0.008").unwrap()
        );
        // Second line: without a trade id a repeat is caught by the cumulative quantity.
        let cid2 = ClientOrderId::new("ag1-2").unwrap();
        v.submit(&req(Side::Buy, "0.01"), cid2, 1, &mut ev, &mut |_| {});
        ev.clear();
        let no_id = OrderUpdate {
            trade_id: 0,
            ..update("ag1-2", part, "0.004", "0.004", Side::Buy)
        };
        for _ in 0..2 {
            v.apply(Inbound::Update(no_id), &mut pos, &mut ev, &mut |_| {});
        }
        let n = ev
            .iter()
            .filter(|e| matches!(e, EngineEvent::Fill(_)))
            .count();
        assert_eq!(n, 1);
    }

    /// A live venue on [`sym`] whose modes hold these longs, bought at 60,000 (the gateway ends keep its queues open).
    fn venue_with_longs(longs: &[(StrategyMode, &str)]) -> (LiveVenue, Positions, GatewayEnds) {
        let (l, g) = link();
        let v = LiveVenue::new(l, vec![sym()], Market::Futures);
        let mut pos = Positions::new(1);
        for (mode, q) in longs {
            pos.get_mut(0, *mode).apply(
                Side::Buy,
                Price::from_int(60_000),
                Qty::parse(q).unwrap(),
                Notional::ZERO,
                1,
            );
        }
        (v, pos, g)
    }

    #[test]
    fn funding_splits_exactly_bnb_fees_are_converted_and_liquidations_are_events() {
        let (mut v, mut pos, _g) = venue_with_longs(&[
            (StrategyMode::Swing, "0.002"),
            (StrategyMode::Position, "0.001"),
        ]);
        let mut ev: Vec<EngineEvent> = Vec::new();
        let mut nets = Vec::new();
        let usdt = Symbol::new("USDT").unwrap();
        let amount = Notional::parse("-0.01000001").unwrap();
        v.apply(
            Inbound::Funding {
                ts_ms: 8,
                symbol: sym(),
                tran_id: 42,
                asset: usdt,
                amount,
                conv: FeeConversion::Quote,
            },
            &mut pos,
            &mut ev,
            &mut |r| nets.push(r.net),
        );
        let parts: Vec<FundingEvent> = ev
            .iter()
            .filter_map(|e| match e {
                EngineEvent::Funding(f) => Some(*f),
                _ => None,
            })
            .collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(
            parts.iter().fold(Notional::ZERO, |a, f| a + f.quote),
            amount
        );
        assert_eq!(
            nets.iter().fold(Notional::ZERO, |a, n| a + *n),
            amount,
            "daily loss sees it"
        );
        let total_funding = pos.get(0, StrategyMode::Swing).funding()
            + pos.get(0, StrategyMode::Position).funding();
        assert_eq!(total_funding, amount);

        // A liquidation of the whole 0.003 with its fee in BNB at 600 USDT.
        ev.clear();
        nets.clear();
        let mut u = update(
            "autoclose-1700000000000",
            OrderStatus::Filled,
            "0.003",
            "0.003",
            Side::Sell,
        );
        u.last_price = Price::from_int(59_000);
        u.fee = Notional::parse("0.0001").unwrap();
        u.fee_asset = Symbol::new("BNB").unwrap();
        u.fee_conv = FeeConversion::convert(u.fee, Price::from_int(600));
        v.apply(Inbound::Update(u), &mut pos, &mut ev, &mut |r| {
            nets.push(r.net)
        });
        assert!(pos.get(0, StrategyMode::Swing).is_flat());
        assert!(pos.get(0, StrategyMode::Position).is_flat());
        let liq: Vec<LiquidationEvent> = ev
            .iter()
            .filter_map(|e| match e {
                EngineEvent::Liquidation(x) => Some(*x),
                _ => None,
            })
            .collect();
        assert_eq!(liq.len(), 2);
        assert!(liq
            .iter()
            .all(|x| x.kind == ForcedCloseKind::Liquidation && x.position_after.is_zero()));
        let fee_q = liq.iter().fold(Notional::ZERO, |a, x| a + x.fee);
        assert_eq!(
            fee_q,
            Notional::parse("0.06").unwrap(),
            "0.0001 BNB at 600, not 0.0001 USDT"
        );
        let realized = liq.iter().fold(Notional::ZERO, |a, x| a + x.realized_pnl);
        assert_eq!(realized, Notional::from_int(-3));
        let fees =
            pos.get(0, StrategyMode::Swing).fees() + pos.get(0, StrategyMode::Position).fees();
        assert_eq!(fees, Notional::parse("0.06").unwrap());
        assert_eq!(
            v.next_signal(),
            Some(VenueSignal::Alert(AlertKind::Liquidation))
        );

        // An unpriced BNB fee counts zero in PnL and is flagged, never added as USDT.
        ev.clear();
        let mut u = update(
            "autoclose-1700000000001",
            OrderStatus::Filled,
            "0.001",
            "0.001",
            Side::Buy,
        );
        u.fee_asset = Symbol::new("BNB").unwrap();
        u.fee_conv = FeeConversion::Unconvertible;
        u.trade_id = 10;
        v.apply(Inbound::Update(u), &mut pos, &mut ev, &mut |_| {});
        assert_eq!(pos.get(0, ADOPT_DEFAULT_MODE).fees(), Notional::ZERO);
        let mut sig = Vec::new();
        while let Some(s) = v.next_signal() {
            sig.push(s);
        }
        assert!(sig.contains(&VenueSignal::Alert(AlertKind::FeeUnconverted)));
    }

    proptest::proptest! {
        #[test]
        fn a_foreign_fill_splits_fee_and_quote_fee_exactly_over_the_modes(
            sizes in proptest::array::uniform4(0i64..5_000_000),
            extra in 0i64..3_000_000,
            fee in 0i64..10_000_000,
            price in 1i64..200_000_000_000,
        ) {
            let (l, _g) = link();
            let mut v = LiveVenue::new(l, vec![sym()], Market::Futures);
            let mut pos = Positions::new(1);
            for (i, m) in StrategyMode::ALL.into_iter().enumerate() {
                if sizes[i] > 0 {
                    pos.get_mut(0, m).apply(Side::Buy, Price::from_int(60_000), Qty::from_units(sizes[i]), Notional::ZERO, 1);
                }
            }
            let total: i64 = sizes.iter().sum::<i64>() + extra;
            proptest::prop_assume!(total > 0);
            let mut u = update("autoclose-1", OrderStatus::Filled, "0", "0", Side::Sell);
            u.last_qty = Qty::from_units(total);
            u.cum_qty = u.last_qty;
            u.fee = Notional::from_units(fee);
            u.fee_asset = Symbol::new("BNB").unwrap();
            u.fee_conv = FeeConversion::convert(u.fee, Price::from_units(price));
            let mut ev: Vec<EngineEvent> = Vec::new();
            let mut net = Notional::ZERO;
            v.apply(Inbound::Update(u), &mut pos, &mut ev, &mut |r| net += r.net);
            let fills: Vec<Fill> = ev.iter().filter_map(|e| match e { EngineEvent::Fill(f) => Some(*f), _ => None }).collect();
            let fee_sum = fills.iter().fold(Notional::ZERO, |a, f| a + f.fee);
            let quote_sum = fills.iter().fold(Notional::ZERO, |a, f| a + f.quote_fee());
            let qty_sum = fills.iter().fold(Qty::ZERO, |a, f| a + f.qty);
            proptest::prop_assert_eq!(fee_sum, u.fee);
            proptest::prop_assert_eq!(quote_sum, u.fee_conv.quote_fee(u.fee));
            proptest::prop_assert_eq!(qty_sum, u.last_qty);
            let realized = fills.iter().fold(Notional::ZERO, |a, f| a + f.realized_pnl);
            proptest::prop_assert_eq!(net, realized - quote_sum, "the loss limits see realized − converted fee");
            let fees_books = StrategyMode::ALL.iter().fold(Notional::ZERO, |a, m| a + pos.get(0, *m).fees());
            proptest::prop_assert_eq!(fees_books, quote_sum);
        }
    }

    /// Spot: a buy's fee in BTC leaves the position at bought − fee, valued at the fill price; a sell whose fee
    /// were in BTC cannot push the position below zero; a foreign sell beyond the held balance opens no short;
    /// events carry the spot market.
    #[test]
    fn spot_base_fees_shrink_the_holding_and_never_make_it_negative() {
        let (l, _g) = link();
        let mut v = LiveVenue::new(l, vec![sym()], Market::Spot);
        assert_eq!(v.market(), Market::Spot);
        let mut pos = Positions::new(1);
        let mut ev: Vec<EngineEvent> = Vec::new();
        let cid = ClientOrderId::new("ag5-1").unwrap();
        v.submit(&req(Side::Buy, "0.01"), cid, 1, &mut ev, &mut |_| {});
        let btc = Symbol::new("BTC").unwrap();
        let mut nets = Vec::new();
        for (id, last, cum, fee, st) in [
            (
                1,
                "0.004",
                "0.004",
                "0.000004",
                OrderStatus::PartiallyFilled,
            ),
            (2, "0.006", "0.01", "0.000006", OrderStatus::Filled),
        ] {
            let u = OrderUpdate {
                trade_id: id,
                fee: Notional::parse(fee).unwrap(),
                fee_asset: btc,
                // Whatever the control plane said, a base fee is valued at the fill price here.
                fee_conv: FeeConversion::Quote,
                ..update("ag5-1", st, last, cum, Side::Buy)
            };
            v.apply(Inbound::Update(u), &mut pos, &mut ev, &mut |r| {
                if !r.order_final {
                    nets.push(r.net)
                }
            });
        }
        let p = pos.get(0, StrategyMode::Scalp);
        assert_eq!(
            p.qty(),
            Qty::parse("0.00999").unwrap(),
            "0.01 bought − 0.00001 fee"
        );
        assert_eq!(
            p.fees(),
            Notional::parse("0.6").unwrap(),
            "0.00001 BTC at 60,000"
        );
        let fills: Vec<Fill> = ev
            .iter()
            .filter_map(|e| match e {
                EngineEvent::Fill(f) => Some(*f),
                _ => None,
            })
            .collect();
        assert_eq!(fills.len(), 2);
        assert!(fills
            .iter()
            .all(|f| f.market == Market::Spot && f.fee_asset == btc));
        assert_eq!(
            fills[0].fee_conv,
            FeeConversion::convert(
                Notional::parse("0.000004").unwrap(),
                Price::from_int(60_000)
            )
        );
        assert!(ev.iter().all(|e| match e {
            EngineEvent::Order(o) => o.market == Market::Spot,
            EngineEvent::Position(p) => p.market == Market::Spot,
            _ => true,
        }));
        assert_eq!(
            nets,
            [
                Notional::parse("-0.24").unwrap(),
                Notional::parse("-0.36").unwrap()
            ]
        );
        // Sell all that is held, with (unusually) a fee in BTC: flat, never short.
        let cid = ClientOrderId::new("ag5-2").unwrap();
        let mut exit = req(Side::Sell, "0.00999");
        exit.reduce_only = true;
        v.submit(&exit, cid, 1, &mut ev, &mut |_| {});
        let u = OrderUpdate {
            trade_id: 3,
            fee: Notional::parse("0.00000999").unwrap(),
            fee_asset: btc,
            orig_qty: Qty::parse("0.00999").unwrap(),
            ..update(
                "ag5-2",
                OrderStatus::Filled,
                "0.00999",
                "0.00999",
                Side::Sell,
            )
        };
        v.apply(Inbound::Update(u), &mut pos, &mut ev, &mut |_| {});
        assert!(pos.get(0, StrategyMode::Scalp).qty().is_zero());
        // A foreign sell of coins the modes do not hold books no short on spot.
        let u = OrderUpdate {
            trade_id: 4,
            ..update("manual-9", OrderStatus::Filled, "0.5", "0.5", Side::Sell)
        };
        v.apply(Inbound::Update(u), &mut pos, &mut ev, &mut |_| {});
        for m in StrategyMode::ALL {
            assert!(pos.get(0, m).qty().units() >= 0, "{m:?}");
        }
    }

    /// Spot: the venue remembers each symbol's resting stop from [`Inbound::SpotStop`] (and forgets it on
    /// `None`); on futures a sell exit never asks for a cancel-replace; a stop of an unknown symbol is ignored.
    #[test]
    fn spot_stops_are_remembered_per_symbol() {
        let (l, g) = link();
        let mut v = LiveVenue::new(l, vec![sym()], Market::Spot);
        let mut pos = Positions::new(1);
        let mut ev: Vec<EngineEvent> = Vec::new();
        let stop = ClientOrderId::new("agstop-1").unwrap();
        assert_eq!(v.resting_stop(0), None);
        v.apply(
            Inbound::SpotStop {
                symbol: sym(),
                client_id: Some(stop),
            },
            &mut pos,
            &mut ev,
            &mut |_| {},
        );
        v.apply(
            Inbound::SpotStop {
                symbol: Symbol::new("ETHUSDT").unwrap(),
                client_id: None,
            },
            &mut pos,
            &mut ev,
            &mut |_| {},
        );
        assert_eq!(v.resting_stop(0), Some(stop));
        assert_eq!(v.resting_stop(7), None);
        // Without order entry on this thread (the gateway path) the exit goes as a plain order and the stop
        // stays remembered: only the engine-thread entry can cancel-replace.
        let mut exit = req(Side::Sell, "0.01");
        exit.reduce_only = true;
        v.submit(
            &exit,
            ClientOrderId::new("ag6-1").unwrap(),
            1,
            &mut ev,
            &mut |_| {},
        );
        assert!(matches!(g.outbound.try_recv(), Ok(Outbound::Place { .. })));
        assert_eq!(v.resting_stop(0), Some(stop));
        v.apply(
            Inbound::SpotStop {
                symbol: sym(),
                client_id: None,
            },
            &mut pos,
            &mut ev,
            &mut |_| {},
        );
        assert_eq!(v.resting_stop(0), None);
    }

    /// Issue 13.1: one liquidation trade booked to several modes gives each part its own key
    /// `(symbol, trade_id, split_part)`, and the parts' fees add up to the exchange's fee to the last unit.
    #[test]
    fn a_split_liquidation_gives_each_part_its_own_key_and_the_whole_fee() {
        let (mut v, mut pos, _g) = venue_with_longs(&[
            (StrategyMode::Scalp, "0.003"),
            (StrategyMode::Swing, "0.003"),
        ]);
        let mut ev: Vec<EngineEvent> = Vec::new();
        // 0.007 sold: 0.003 + 0.003 close the two modes, 0.001 opens a short in the adopt mode.
        let mut u = update(
            "autoclose-1",
            OrderStatus::Filled,
            "0.007",
            "0.007",
            Side::Sell,
        );
        u.fee = Notional::from_units(1_000_001);
        v.apply(Inbound::Update(u), &mut pos, &mut ev, &mut |_| {});
        let fills: Vec<Fill> = ev
            .iter()
            .filter_map(|e| match e {
                EngineEvent::Fill(f) => Some(*f),
                _ => None,
            })
            .collect();
        assert_eq!(fills.len(), 3);
        let keys: Vec<(u64, u16)> = fills.iter().map(|f| (f.trade_id, f.split_part)).collect();
        assert_eq!(keys, vec![(9, 0), (9, 1), (9, 2)]);
        let fee: i64 = fills.iter().map(|f| f.fee.units()).sum();
        assert_eq!(fee, 1_000_001, "parts add up to the exchange's fee");
        let qty: i64 = fills.iter().map(|f| f.qty.units()).sum();
        assert_eq!(qty, Qty::parse("0.007").unwrap().units());
    }
}

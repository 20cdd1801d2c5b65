//! The paper venue: simulated execution against the engine's view of the top of book.
//!
//! - MARKET orders fill completely at the touch (buy at the best ask, sell at the best bid) as taker
//!   (default fee 0.04 %). No book → rejected.
//! - LIMIT orders that cross the touch on arrival fill at the touch as taker (GTC/IOC/FOK), or expire (GTX,
//!   post-only). Otherwise GTC/GTX rest and fill completely, as maker (default 0.02 %) at their limit price, on the
//!   first book update that crosses them; IOC/FOK expire.
//! - Depth is not simulated: a fill takes the whole quantity at one price.
//!
//! Every fill gets a trade id unique per symbol (a per-symbol counter) and an exchange order id, updates the
//! (symbol, mode) position, and is emitted in journal order: `Order(NEW)` → `Fill` → `Position` →
//! `Order(FILLED)`. Open orders live in a vector allocated once with [`MAX_PAPER_ORDERS`] capacity.
//!
//! On spot ([`PaperVenue::on_market`]) the fee is charged as Binance charges it without BNB: a buy's fee in the
//! asset bought (the base asset: 0.001 BTC of a 1 BTC buy at 0.1 %), which the account never receives, so the
//! held quantity shrinks by it ([`crate::position::Position::deduct_held`]); a sell's fee in the quote asset. The
//! base fee is valued at the fill price for PnL (`FeeConversion::Converted`).

use super::{ExecReport, FeeRates, OrderRequest};
use crate::book::TopOfBook;
use crate::position::Positions;
use crate::queues::EventOut;
use aegis_shared::event::{
    FeeConversion, Fill, Liquidity, OrderEvent, OrderStatus, OrderType, TimeInForce,
};
use aegis_shared::{ClientOrderId, EngineEvent, Market, Notional, Price, Qty, Side, Symbol};

/// Most resting paper orders.
pub const MAX_PAPER_ORDERS: usize = 256;
/// Reject code for "no market to fill against" (Binance's generic "new order rejected").
pub const REJECT_NO_MARKET: i32 = -2010;

/// An order the venue has numbered: while it is placed, and while it rests.
#[derive(Debug, Clone, Copy)]
struct PaperOrder {
    req: OrderRequest,
    client_id: ClientOrderId,
    exchange_id: u64,
    market: Market,
}

impl PaperOrder {
    fn event(&self, ts: u64, filled: Qty, status: OrderStatus, code: i32) -> EngineEvent {
        let req = &self.req;
        EngineEvent::Order(OrderEvent {
            ts_ms: ts,
            symbol: req.symbol,
            market: self.market,
            client_id: self.client_id,
            exchange_id: Some(self.exchange_id),
            mode: req.mode,
            intent: req.intent,
            side: req.side,
            order_type: req.order_type,
            tif: req.tif,
            price: req.price,
            qty: req.qty,
            filled,
            reduce_only: req.reduce_only,
            status,
            reject_code: code,
        })
    }

    /// An order that ends without a fill: its final event, and the final report the engine's books wait for.
    fn end_unfilled(
        &self,
        ts: u64,
        status: OrderStatus,
        code: i32,
        out: &mut impl EventOut,
        on_exec: &mut impl FnMut(&ExecReport),
    ) {
        out.emit(self.event(ts, Qty::ZERO, status, code));
        on_exec(&ExecReport {
            sym: self.req.sym,
            mode: self.req.mode,
            ts_ms: ts,
            qty: Qty::ZERO,
            net: aegis_shared::Notional::ZERO,
            closed_trade: None,
            order_final: true,
        });
    }
}

/// The paper venue. See the module docs.
#[derive(Debug, Clone)]
pub struct PaperVenue {
    market: Market,
    fees: FeeRates,
    fee_asset: Symbol,
    trade_ids: Vec<u64>,
    next_order_id: u64,
    open: Vec<PaperOrder>,
}

impl PaperVenue {
    /// A venue for `nsym` symbols whose trade ids start at 1 (tests and backtests; a process that journals uses
    /// [`PaperVenue::with_trade_id_base`]).
    pub fn new(nsym: usize, fees: FeeRates) -> Self {
        Self::with_trade_id_base(nsym, fees, 0)
    }

    /// A venue whose trade ids start above `base`. The control plane passes a base above every journaled trade id
    /// and above this session's id scaled (see `paper_trade_id_base` in the engine params), so a restart never
    /// hands out a `(symbol, trade_id)` an earlier run already stored.
    pub fn with_trade_id_base(nsym: usize, fees: FeeRates, base: u64) -> Self {
        Self {
            market: Market::Futures,
            fees,
            // Invariant: a valid literal.
            fee_asset: Symbol::from_bytes(b"USDT")
                .unwrap_or_else(|_| unreachable!("USDT is a valid symbol")),
            trade_ids: vec![base; nsym],
            next_order_id: 0,
            open: Vec::with_capacity(MAX_PAPER_ORDERS),
        }
    }

    /// The same venue trading `market`: on spot a buy's fee is taken in the base asset (see the module docs).
    pub fn on_market(mut self, market: Market) -> Self {
        self.market = market;
        self
    }

    /// Resting orders.
    pub fn open_orders(&self) -> usize {
        self.open.len()
    }

    #[allow(clippy::too_many_arguments)]
    fn execute(
        &mut self,
        o: &PaperOrder,
        price: Price,
        liq: Liquidity,
        ts: u64,
        positions: &mut Positions,
        out: &mut impl EventOut,
        on_exec: &mut impl FnMut(&ExecReport),
    ) {
        let req = &o.req;
        let rate = match liq {
            Liquidity::Maker => self.fees.maker,
            Liquidity::Taker => self.fees.taker,
        };
        // Spot buy: the fee is a part of the quantity bought (rounded to 10⁻⁸ of the asset, as Binance reports
        // it), valued at the fill price; everything else pays in the quote asset.
        let base_fee = match (self.market, req.side, req.symbol.base_asset()) {
            (Market::Spot, Side::Buy, Some(base)) => {
                let fee_qty = Notional::from_units(req.qty.units()).mul_rate(rate);
                Some((base, Qty::from_units(fee_qty.units())))
            }
            _ => None,
        };
        let (fee, fee_asset, fee_conv) = match base_fee {
            Some((base, fee_qty)) => {
                let quote = price.notional(fee_qty);
                (
                    Notional::from_units(fee_qty.units()),
                    base,
                    FeeConversion::Converted { price, quote },
                )
            }
            None => (
                price.notional(req.qty).mul_rate(rate),
                self.fee_asset,
                FeeConversion::Quote,
            ),
        };
        let qfee = fee_conv.quote_fee(fee);
        let tid = &mut self.trade_ids[req.sym];
        *tid += 1;
        let trade_id = *tid;
        let pos = positions.get_mut(req.sym, req.mode);
        let r = pos.apply(req.side, price, req.qty, qfee, ts);
        if let Some((_, fee_qty)) = base_fee {
            pos.deduct_held(fee_qty);
        }
        out.emit(EngineEvent::Fill(Fill {
            ts_ms: ts,
            symbol: req.symbol,
            market: o.market,
            client_id: o.client_id,
            exchange_order_id: o.exchange_id,
            trade_id,
            split_part: 0,
            mode: req.mode,
            intent: req.intent,
            side: req.side,
            price,
            qty: req.qty,
            fee,
            fee_asset,
            liquidity: liq,
            realized_pnl: r.realized,
            fee_conv,
        }));
        out.emit(EngineEvent::Position(pos.update(
            ts,
            req.symbol,
            req.mode,
            self.market,
        )));
        out.emit(o.event(ts, req.qty, OrderStatus::Filled, 0));
        on_exec(&ExecReport {
            sym: req.sym,
            mode: req.mode,
            ts_ms: ts,
            qty: req.qty,
            net: r.realized - qfee,
            closed_trade: r.closed_trade,
            order_final: true,
        });
    }

    /// Places an approved order. Emits its events to `out` and reports executions/final states to `on_exec`.
    /// Returns the order's status after placement.
    #[allow(clippy::too_many_arguments)]
    pub fn submit(
        &mut self,
        req: &OrderRequest,
        cid: ClientOrderId,
        top: &TopOfBook,
        ts: u64,
        positions: &mut Positions,
        out: &mut impl EventOut,
        on_exec: &mut impl FnMut(&ExecReport),
    ) -> OrderStatus {
        self.next_order_id += 1;
        let o = PaperOrder {
            req: *req,
            client_id: cid,
            exchange_id: self.next_order_id,
            market: self.market,
        };
        let mut end = |status: OrderStatus, code: i32| {
            o.end_unfilled(ts, status, code, out, on_exec);
            status
        };
        if !top.is_valid() {
            return end(OrderStatus::Rejected, REJECT_NO_MARKET);
        }
        let touch = match req.side {
            Side::Buy => top.ask,
            Side::Sell => top.bid,
        };
        let crosses = match (req.order_type, req.side) {
            (OrderType::Market, _) => true,
            (OrderType::Limit, Side::Buy) => req.price >= top.ask,
            (OrderType::Limit, Side::Sell) => req.price <= top.bid,
        };
        if crosses && req.tif == Some(TimeInForce::Gtx) {
            return end(OrderStatus::Expired, 0);
        }
        if crosses {
            out.emit(o.event(ts, Qty::ZERO, OrderStatus::New, 0));
            self.execute(&o, touch, Liquidity::Taker, ts, positions, out, on_exec);
            return OrderStatus::Filled;
        }
        if matches!(req.tif, Some(TimeInForce::Ioc | TimeInForce::Fok)) {
            return end(OrderStatus::Expired, 0);
        }
        if self.open.len() == MAX_PAPER_ORDERS {
            return end(OrderStatus::Rejected, REJECT_NO_MARKET);
        }
        self.open.push(o);
        out.emit(o.event(ts, Qty::ZERO, OrderStatus::New, 0));
        OrderStatus::New
    }

    /// A book update for symbol index `sym`: fills resting orders it crosses (maker, at their limit price).
    pub fn on_book(
        &mut self,
        sym: usize,
        top: &TopOfBook,
        ts: u64,
        positions: &mut Positions,
        out: &mut impl EventOut,
        on_exec: &mut impl FnMut(&ExecReport),
    ) {
        let mut i = 0;
        while i < self.open.len() {
            let o = self.open[i];
            let hit = o.req.sym == sym
                && match o.req.side {
                    Side::Buy => top.ask <= o.req.price,
                    Side::Sell => top.bid >= o.req.price,
                };
            if hit {
                self.open.swap_remove(i);
                self.execute(
                    &o,
                    o.req.price,
                    Liquidity::Maker,
                    ts,
                    positions,
                    out,
                    on_exec,
                );
            } else {
                i += 1;
            }
        }
    }

    /// Cancels every resting order (kill switch). Returns how many were cancelled.
    pub fn cancel_all(
        &mut self,
        ts: u64,
        out: &mut impl EventOut,
        on_exec: &mut impl FnMut(&ExecReport),
    ) -> usize {
        let n = self.open.len();
        for o in self.open.drain(..) {
            o.end_unfilled(ts, OrderStatus::Canceled, 0, out, on_exec);
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aegis_shared::event::OrderIntent;
    use aegis_shared::{Notional, StrategyMode};

    fn top(bid: &str, ask: &str) -> TopOfBook {
        TopOfBook {
            bid: Price::parse(bid).unwrap(),
            bid_qty: Qty::ONE,
            ask: Price::parse(ask).unwrap(),
            ask_qty: Qty::ONE,
            update_id: 1,
            event_time: 1,
        }
    }

    fn req(side: Side, ty: OrderType, price: &str, qty: &str) -> OrderRequest {
        OrderRequest {
            symbol: Symbol::new("BTCUSDT").unwrap(),
            sym: 0,
            mode: StrategyMode::Scalp,
            intent: OrderIntent::Entry,
            side,
            order_type: ty,
            tif: (ty == OrderType::Limit).then_some(TimeInForce::Gtc),
            price: Price::parse(price).unwrap(),
            ref_price: Price::parse(price).unwrap(),
            qty: Qty::parse(qty).unwrap(),
            reduce_only: false,
        }
    }

    fn cid(n: u32) -> ClientOrderId {
        ClientOrderId::new(&format!("ag-test-{n}")).unwrap()
    }

    /// A venue with its positions and event log, so each order a test places is one call.
    struct Desk {
        v: PaperVenue,
        pos: Positions,
        ev: Vec<EngineEvent>,
    }

    impl Desk {
        fn new(nsym: usize) -> Self {
            Self {
                v: PaperVenue::new(nsym, FeeRates::default()),
                pos: Positions::new(nsym),
                ev: Vec::new(),
            }
        }

        fn submit(
            &mut self,
            r: &OrderRequest,
            n: u32,
            book: &TopOfBook,
            ts: u64,
            on_exec: &mut impl FnMut(&ExecReport),
        ) -> OrderStatus {
            self.v
                .submit(r, cid(n), book, ts, &mut self.pos, &mut self.ev, on_exec)
        }

        fn fills(&self) -> Vec<Fill> {
            self.ev
                .iter()
                .filter_map(|e| match e {
                    EngineEvent::Fill(f) => Some(*f),
                    _ => None,
                })
                .collect()
        }
    }

    /// Issue 13.1: a venue seeded with a base hands out trade ids strictly above it (the control plane passes a
    /// base above every journaled id, so a restart never reuses a stored key).
    #[test]
    fn trade_ids_start_above_the_base() {
        let mut d = Desk::new(1);
        d.v = PaperVenue::with_trade_id_base(1, FeeRates::default(), 5_000);
        let buy = req(Side::Buy, OrderType::Market, "0", "0.01");
        d.submit(&buy, 1, &top("50000", "50000.1"), 10, &mut |_| {});
        d.submit(&buy, 2, &top("50000", "50000.1"), 20, &mut |_| {});
        let ids: Vec<u64> = d.fills().iter().map(|f| f.trade_id).collect();
        assert_eq!(ids, vec![5_001, 5_002]);
    }

    #[test]
    fn market_round_trip_with_fees_and_unique_trade_ids() {
        let mut d = Desk::new(2);
        let mut reports = Vec::new();
        let buy = req(Side::Buy, OrderType::Market, "0", "0.01");
        let st = d.submit(&buy, 1, &top("50000", "50000.1"), 10, &mut |r| {
            reports.push(*r)
        });
        assert_eq!(st, OrderStatus::Filled);
        let sell = req(Side::Sell, OrderType::Market, "0", "0.01");
        let st = d.submit(&sell, 2, &top("50100", "50100.1"), 20, &mut |r| {
            reports.push(*r)
        });
        assert_eq!(st, OrderStatus::Filled);
        let fills = d.fills();
        assert_eq!(fills.len(), 2);
        assert_eq!(fills[0].price, Price::parse("50000.1").unwrap());
        assert_eq!(fills[0].fee, Notional::parse("0.2000004").unwrap());
        assert_eq!(fills[1].price, Price::from_int(50100));
        assert_eq!(fills[1].realized_pnl, Notional::parse("0.999").unwrap());
        assert_ne!(fills[0].trade_id, fills[1].trade_id);
        assert_eq!(fills[0].liquidity, Liquidity::Taker);
        let p = d.pos.get(0, StrategyMode::Scalp);
        assert!(p.is_flat());
        assert_eq!(p.realized(), Notional::parse("0.999").unwrap());
        assert_eq!(p.fees(), fills[0].fee + fills[1].fee);
        assert_eq!(reports[1].closed_trade, Some(p.realized() - p.fees()));
        // Journal order: NEW, Fill, Position, FILLED.
        let ev = &d.ev;
        assert!(matches!(ev[0], EngineEvent::Order(o) if o.status == OrderStatus::New));
        assert!(matches!(ev[1], EngineEvent::Fill(_)));
        assert!(matches!(ev[2], EngineEvent::Position(_)));
        assert!(matches!(ev[3], EngineEvent::Order(o) if o.status == OrderStatus::Filled));
    }

    #[test]
    fn limits_rest_then_fill_as_maker_or_get_cancelled() {
        let mut d = Desk::new(1);
        let mut done = 0;
        let bid = req(Side::Buy, OrderType::Limit, "49990", "0.01");
        let st = d.submit(&bid, 1, &top("50000", "50000.1"), 1, &mut |_| done += 1);
        assert_eq!(st, OrderStatus::New);
        assert_eq!(d.v.open_orders(), 1);
        d.v.on_book(
            0,
            &top("49995", "49999"),
            2,
            &mut d.pos,
            &mut d.ev,
            &mut |_| done += 1,
        );
        assert_eq!(d.v.open_orders(), 1, "not crossed yet");
        d.v.on_book(
            0,
            &top("49980", "49990"),
            3,
            &mut d.pos,
            &mut d.ev,
            &mut |_| done += 1,
        );
        assert_eq!(d.v.open_orders(), 0);
        let f = *d.fills().first().unwrap();
        assert_eq!(
            (f.price, f.liquidity),
            (Price::from_int(49990), Liquidity::Maker)
        );
        assert_eq!(f.fee, Notional::parse("0.099980").unwrap());
        assert_eq!(done, 1);
        // Crossing limit on arrival takes at the touch; GTX expires; resting order cancelled by kill.
        let crossed = top("49980", "49990");
        let ask = req(Side::Sell, OrderType::Limit, "49900", "0.01");
        assert_eq!(
            d.submit(&ask, 2, &crossed, 4, &mut |_| ()),
            OrderStatus::Filled
        );
        let mut gtx = ask;
        gtx.tif = Some(TimeInForce::Gtx);
        assert_eq!(
            d.submit(&gtx, 3, &crossed, 5, &mut |_| ()),
            OrderStatus::Expired
        );
        let far = req(Side::Sell, OrderType::Limit, "60000", "0.01");
        d.submit(&far, 4, &crossed, 6, &mut |_| ());
        let mut cancelled = 0;
        assert_eq!(d.v.cancel_all(7, &mut d.ev, &mut |_| cancelled += 1), 1);
        assert_eq!(cancelled, 1);
        assert!(
            matches!(d.ev.last(), Some(EngineEvent::Order(o)) if o.status == OrderStatus::Canceled)
        );
        let market = req(Side::Buy, OrderType::Market, "0", "0.01");
        assert_eq!(
            d.submit(&market, 5, &TopOfBook::default(), 8, &mut |_| ()),
            OrderStatus::Rejected
        );
    }
}

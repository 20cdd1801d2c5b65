//! Spot orders: their kinds, statuses and every JSON shape Binance gives them (new-order ACK/RESULT/FULL, query,
//! cancel, `executionReport`).

use super::symbols::s8;
use aegis_shared::num::{Notional, Price, Qty};
use serde_json::{json, Value};

/// BUY or SELL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Buys base with quote.
    Buy,
    /// Sells base for quote.
    Sell,
}

impl Side {
    /// `BUY`/`SELL`.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Buy => "BUY",
            Side::Sell => "SELL",
        }
    }
}

/// Spot order types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// LIMIT.
    Limit,
    /// MARKET.
    Market,
    /// LIMIT_MAKER (post-only).
    LimitMaker,
    /// STOP_LOSS: a market order once the stop triggers.
    StopLoss,
    /// STOP_LOSS_LIMIT.
    StopLossLimit,
    /// TAKE_PROFIT: a market order once the stop triggers.
    TakeProfit,
    /// TAKE_PROFIT_LIMIT.
    TakeProfitLimit,
}

impl Kind {
    /// Parses Binance's name.
    pub fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "LIMIT" => Kind::Limit,
            "MARKET" => Kind::Market,
            "LIMIT_MAKER" => Kind::LimitMaker,
            "STOP_LOSS" => Kind::StopLoss,
            "STOP_LOSS_LIMIT" => Kind::StopLossLimit,
            "TAKE_PROFIT" => Kind::TakeProfit,
            "TAKE_PROFIT_LIMIT" => Kind::TakeProfitLimit,
            _ => return None,
        })
    }
    /// Binance's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Limit => "LIMIT",
            Kind::Market => "MARKET",
            Kind::LimitMaker => "LIMIT_MAKER",
            Kind::StopLoss => "STOP_LOSS",
            Kind::StopLossLimit => "STOP_LOSS_LIMIT",
            Kind::TakeProfit => "TAKE_PROFIT",
            Kind::TakeProfitLimit => "TAKE_PROFIT_LIMIT",
        }
    }
    /// Has a stop price and waits for it.
    pub fn is_stop(self) -> bool {
        matches!(
            self,
            Kind::StopLoss | Kind::StopLossLimit | Kind::TakeProfit | Kind::TakeProfitLimit
        )
    }
    /// Has a limit price.
    pub fn has_price(self) -> bool {
        matches!(
            self,
            Kind::Limit | Kind::LimitMaker | Kind::StopLossLimit | Kind::TakeProfitLimit
        )
    }
    /// Executes as a market order (at once, or once triggered).
    pub fn is_market(self) -> bool {
        matches!(self, Kind::Market | Kind::StopLoss | Kind::TakeProfit)
    }
}

/// Order status: the same five as on futures (an OCO's other leg and an IOC's rest are `EXPIRED`).
pub use super::super::orders::Status;

/// One fill of an order, as in a FULL response's `fills`.
#[derive(Debug, Clone)]
pub struct Fill {
    /// Price.
    pub price: Price,
    /// Quantity.
    pub qty: Qty,
    /// Commission amount.
    pub commission: Qty,
    /// Commission asset.
    pub commission_asset: String,
    /// Trade id.
    pub trade_id: u64,
}

/// One spot order.
#[derive(Debug, Clone)]
pub struct SpotOrder {
    /// Symbol.
    pub symbol: String,
    /// Exchange id.
    pub order_id: u64,
    /// Client order id.
    pub client_order_id: String,
    /// Side.
    pub side: Side,
    /// Type.
    pub kind: Kind,
    /// GTC / IOC / FOK (`GTC` for types without one in requests).
    pub tif: &'static str,
    /// Limit price (0 for market types).
    pub price: Price,
    /// Stop price (0 without).
    pub stop_price: Price,
    /// Ordered quantity.
    pub orig_qty: Qty,
    /// Filled quantity.
    pub executed: Qty,
    /// Filled quote amount.
    pub cum_quote: Notional,
    /// `quoteOrderQty` of a market order (0 without).
    pub orig_quote_qty: Notional,
    /// Status.
    pub status: Status,
    /// Creation time.
    pub time: u64,
    /// Last change.
    pub update_time: u64,
    /// On the book (false: a stop waiting for its trigger).
    pub working: bool,
    /// When it started working (-1 while a stop waits).
    pub working_time: i64,
    /// OCO list id (-1 outside a list).
    pub list_id: i64,
    /// Still locked for this order, in the quote (buy) or base (sell) asset.
    pub lock: Qty,
    /// The fills so far.
    pub fills: Vec<Fill>,
}

/// How much of a new-order answer to give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RespType {
    /// Ids only.
    Ack,
    /// The order.
    Result,
    /// The order and its fills.
    Full,
}

impl SpotOrder {
    /// Quantity still to fill.
    pub fn remaining(&self) -> Qty {
        self.orig_qty - self.executed
    }

    fn common(&self) -> serde_json::Map<String, Value> {
        let v = json!({
            "symbol": self.symbol, "orderId": self.order_id, "orderListId": self.list_id,
            "clientOrderId": self.client_order_id, "price": s8(self.price.units()),
            "origQty": s8(self.orig_qty.units()), "executedQty": s8(self.executed.units()),
            "cummulativeQuoteQty": s8(self.cum_quote.units()), "status": self.status.as_str(),
            "timeInForce": self.tif, "type": self.kind.as_str(), "side": self.side.as_str(),
        });
        match v {
            Value::Object(m) => m,
            _ => unreachable!("json! of an object literal"),
        }
    }

    /// The answer to a new order.
    pub fn new_order_json(&self, resp: RespType, transact_time: u64) -> Value {
        if resp == RespType::Ack {
            return json!({"symbol": self.symbol, "orderId": self.order_id, "orderListId": self.list_id,
                          "clientOrderId": self.client_order_id, "transactTime": transact_time});
        }
        let mut m = self.common();
        m.insert("transactTime".into(), json!(transact_time));
        m.insert(
            "origQuoteOrderQty".into(),
            json!(s8(self.orig_quote_qty.units())),
        );
        m.insert("workingTime".into(), json!(self.working_time));
        m.insert("selfTradePreventionMode".into(), json!("EXPIRE_MAKER"));
        if self.kind.is_stop() {
            m.insert("stopPrice".into(), json!(s8(self.stop_price.units())));
        }
        if resp == RespType::Full {
            m.insert(
                "fills".into(),
                Value::Array(
                    self.fills
                        .iter()
                        .map(|f| {
                            json!({"price": s8(f.price.units()), "qty": s8(f.qty.units()),
                                   "commission": s8(f.commission.units()),
                                   "commissionAsset": f.commission_asset, "tradeId": f.trade_id})
                        })
                        .collect(),
                ),
            );
        }
        Value::Object(m)
    }

    /// `GET /api/v3/order`, `openOrders`, `allOrders`.
    pub fn query_json(&self) -> Value {
        let mut m = self.common();
        m.insert("stopPrice".into(), json!(s8(self.stop_price.units())));
        m.insert("icebergQty".into(), json!(s8(0)));
        m.insert("time".into(), json!(self.time));
        m.insert("updateTime".into(), json!(self.update_time));
        m.insert("isWorking".into(), json!(self.working));
        m.insert("workingTime".into(), json!(self.working_time));
        m.insert(
            "origQuoteOrderQty".into(),
            json!(s8(self.orig_quote_qty.units())),
        );
        m.insert("selfTradePreventionMode".into(), json!("EXPIRE_MAKER"));
        Value::Object(m)
    }

    /// The answer to a cancel (`clientOrderId` is the cancel's own id, `origClientOrderId` the order's).
    pub fn cancel_json(&self, cancel_id: &str, now: u64) -> Value {
        let mut m = self.common();
        m.insert("origClientOrderId".into(), json!(self.client_order_id));
        m.insert("clientOrderId".into(), json!(cancel_id));
        m.insert("transactTime".into(), json!(now));
        m.insert("selfTradePreventionMode".into(), json!("EXPIRE_MAKER"));
        if self.kind.is_stop() {
            m.insert("stopPrice".into(), json!(s8(self.stop_price.units())));
        }
        Value::Object(m)
    }

    /// An `executionReport` user data event. `exec` is NEW/CANCELED/TRADE/EXPIRED; `fill` the trade of a TRADE;
    /// `cancel_id` the cancel request's client id (then `c` is it and `C` the order's, as Binance does).
    pub fn execution_report(
        &self,
        exec: &str,
        fill: Option<(&Fill, bool)>,
        cancel_id: Option<&str>,
        now: u64,
    ) -> Value {
        let (c, orig) = match cancel_id {
            Some(id) => (id.to_string(), self.client_order_id.clone()),
            None => (self.client_order_id.clone(), String::new()),
        };
        let (l, lp, n, na, t, m, y) = match fill {
            Some((f, maker)) => (
                f.qty.units(),
                f.price.units(),
                f.commission.units(),
                Value::from(f.commission_asset.clone()),
                f.trade_id as i64,
                maker,
                f.price.notional(f.qty).units(),
            ),
            None => (0, 0, 0, Value::Null, -1, false, 0),
        };
        json!({"e": "executionReport", "E": now, "s": self.symbol, "c": c, "S": self.side.as_str(),
               "o": self.kind.as_str(), "f": self.tif, "q": s8(self.orig_qty.units()), "p": s8(self.price.units()),
               "P": s8(self.stop_price.units()), "F": s8(0), "g": self.list_id, "C": orig, "x": exec,
               "X": self.status.as_str(), "r": "NONE", "i": self.order_id, "l": s8(l), "z": s8(self.executed.units()),
               "L": s8(lp), "n": s8(n), "N": na, "T": now, "t": t, "I": self.order_id, "w": self.working,
               "m": m, "M": fill.is_some(), "O": self.time, "Z": s8(self.cum_quote.units()), "Y": s8(y),
               "Q": s8(self.orig_quote_qty.units()), "W": self.working_time, "V": "EXPIRE_MAKER"})
    }
}

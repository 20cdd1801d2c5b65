//! Orders as the simulator keeps them, and their two wire shapes: the REST/WS-API order object and the
//! `ORDER_TRADE_UPDATE` user data event.

use super::symbols::{fixed, SymbolSpec};
use aegis_shared::num::{Notional, Price, Qty, SCALE};
use serde_json::{json, Value};

/// BUY or SELL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Buy.
    Buy,
    /// Sell.
    Sell,
}

impl Side {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Buy => "BUY",
            Side::Sell => "SELL",
        }
    }
    /// +1 for buy, −1 for sell.
    pub fn sign(self) -> i64 {
        match self {
            Side::Buy => 1,
            Side::Sell => -1,
        }
    }
}

/// LIMIT or MARKET.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderType {
    /// Limit.
    Limit,
    /// Market.
    Market,
}

impl OrderType {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderType::Limit => "LIMIT",
            OrderType::Market => "MARKET",
        }
    }
}

/// Time in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tif {
    /// Good till cancel.
    Gtc,
    /// Immediate or cancel.
    Ioc,
    /// Fill or kill.
    Fok,
    /// Post only.
    Gtx,
}

impl Tif {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Tif::Gtc => "GTC",
            Tif::Ioc => "IOC",
            Tif::Fok => "FOK",
            Tif::Gtx => "GTX",
        }
    }
    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "GTC" => Tif::Gtc,
            "IOC" => Tif::Ioc,
            "FOK" => Tif::Fok,
            "GTX" => Tif::Gtx,
            _ => return None,
        })
    }
}

/// Order status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Working, nothing filled.
    New,
    /// Working, partly filled.
    PartiallyFilled,
    /// Done.
    Filled,
    /// Cancelled by the user.
    Canceled,
    /// Expired (IOC/market remainder, reduce-only with no position left).
    Expired,
}

impl Status {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::New => "NEW",
            Status::PartiallyFilled => "PARTIALLY_FILLED",
            Status::Filled => "FILLED",
            Status::Canceled => "CANCELED",
            Status::Expired => "EXPIRED",
        }
    }
    /// Still working.
    pub fn is_open(self) -> bool {
        matches!(self, Status::New | Status::PartiallyFilled)
    }
}

/// An order.
#[derive(Debug, Clone)]
pub struct Order {
    /// Exchange id.
    pub order_id: u64,
    /// Client id.
    pub client_id: String,
    /// Symbol.
    pub symbol: String,
    /// Side.
    pub side: Side,
    /// Type.
    pub otype: OrderType,
    /// Time in force (GTC for market orders, as Binance reports).
    pub tif: Tif,
    /// Limit price (0 for market).
    pub price: Price,
    /// Ordered quantity.
    pub orig_qty: Qty,
    /// Filled quantity.
    pub executed: Qty,
    /// Filled quote amount.
    pub cum_quote: Notional,
    /// Status.
    pub status: Status,
    /// Reduce-only.
    pub reduce_only: bool,
    /// Creation time (ms).
    pub time: u64,
    /// Last change (ms).
    pub update_time: u64,
    /// Price decimals of the symbol (display).
    pub price_decimals: u32,
    /// Quantity decimals of the symbol (display).
    pub qty_decimals: u32,
}

impl Order {
    /// Still working.
    pub fn is_open(&self) -> bool {
        matches!(self.status, Status::New | Status::PartiallyFilled)
    }
    /// Unfilled quantity.
    pub fn remaining(&self) -> Qty {
        self.orig_qty - self.executed
    }
    /// Average fill price (0 when nothing filled).
    pub fn avg_price(&self) -> Price {
        if self.executed.is_zero() {
            return Price::ZERO;
        }
        let v = self.cum_quote.units() as i128 * SCALE as i128 / self.executed.units() as i128;
        Price::from_units(v as i64)
    }
    /// Display helpers.
    pub fn px(&self, p: Price) -> String {
        fixed(p.units(), self.price_decimals)
    }
    /// Display helpers.
    pub fn qt(&self, q: Qty) -> String {
        fixed(q.units(), self.qty_decimals)
    }

    /// The REST / WS-API order object (`POST/GET/DELETE /fapi/v1/order`, `openOrders`).
    pub fn to_json(&self, with_time: bool) -> Value {
        let mut v = json!({
            "orderId": self.order_id,
            "symbol": self.symbol,
            "status": self.status.as_str(),
            "clientOrderId": self.client_id,
            "price": self.px(self.price),
            "avgPrice": fixed(self.avg_price().units(), 8),
            "origQty": self.qt(self.orig_qty),
            "executedQty": self.qt(self.executed),
            "cumQty": self.qt(self.executed),
            "cumQuote": fixed(self.cum_quote.units(), 8),
            "timeInForce": self.tif.as_str(),
            "type": self.otype.as_str(),
            "reduceOnly": self.reduce_only,
            "closePosition": false,
            "side": self.side.as_str(),
            "positionSide": "BOTH",
            "stopPrice": "0",
            "workingType": "CONTRACT_PRICE",
            "priceProtect": false,
            "origType": self.otype.as_str(),
            "priceMatch": "NONE",
            "selfTradePreventionMode": "EXPIRE_MAKER",
            "goodTillDate": 0,
            "updateTime": self.update_time,
        });
        if with_time {
            v["time"] = json!(self.time);
        }
        v
    }

    /// A snapshot as an ACK response sees it: accepted, nothing filled yet.
    pub fn as_ack(&self) -> Order {
        let mut o = self.clone();
        o.status = Status::New;
        o.executed = Qty::ZERO;
        o.cum_quote = Notional::ZERO;
        o.update_time = o.time;
        o
    }

    /// An `ORDER_TRADE_UPDATE` event. `fill` = (trade id, last qty, last price, fee, maker, realized PnL).
    pub fn trade_update(&self, exec_type: &str, now: u64, fill: Option<&FillInfo>) -> Value {
        let mut o = json!({
            "s": self.symbol,
            "c": self.client_id,
            "S": self.side.as_str(),
            "o": self.otype.as_str(),
            "f": self.tif.as_str(),
            "q": self.qt(self.orig_qty),
            "p": self.px(self.price),
            "ap": fixed(self.avg_price().units(), 8),
            "sp": "0",
            "x": exec_type,
            "X": self.status.as_str(),
            "i": self.order_id,
            "l": "0",
            "z": self.qt(self.executed),
            "L": "0",
            "T": now,
            "t": 0,
            "b": "0",
            "a": "0",
            "m": false,
            "R": self.reduce_only,
            "wt": "CONTRACT_PRICE",
            "ot": self.otype.as_str(),
            "ps": "BOTH",
            "cp": false,
            "rp": "0",
            "pP": false,
            "si": 0,
            "ss": 0,
            "V": "EXPIRE_MAKER",
            "pm": "NONE",
            "gtd": 0
        });
        if let Some(f) = fill {
            o["l"] = json!(self.qt(f.qty));
            o["L"] = json!(self.px(f.price));
            o["t"] = json!(f.trade_id);
            o["m"] = json!(f.maker);
            o["n"] = json!(fixed(f.fee.units(), 8));
            o["N"] = json!(f.fee_asset);
            o["rp"] = json!(fixed(f.realized.units(), 8));
        }
        json!({"e": "ORDER_TRADE_UPDATE", "E": now, "T": now, "o": o})
    }
}

/// One execution of an order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FillInfo {
    /// Trade id (per symbol).
    pub trade_id: u64,
    /// Quantity.
    pub qty: Qty,
    /// Price.
    pub price: Price,
    /// Commission in `fee_asset` (positive = paid).
    pub fee: Notional,
    /// Commission asset (`USDT`, or `BNB` in the BNB fee mode).
    pub fee_asset: &'static str,
    /// Maker fill.
    pub maker: bool,
    /// Realized PnL (before fees).
    pub realized: Notional,
}

/// Display decimals for a symbol's orders.
pub fn decimals(spec: &SymbolSpec) -> (u32, u32) {
    (spec.price_precision, spec.qty_precision)
}

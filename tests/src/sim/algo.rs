//! Conditional orders through the Algo Order API (Binance moved them off `POST /fapi/v1/order` on 2025-12-09;
//! that endpoint answers -4120 for them, see [`super::matching::parse_new_order`]).
//!
//! - `POST /fapi/v1/algoOrder` (`algoType=CONDITIONAL`, `type`, `side`, `quantity` or `closePosition=true`,
//!   `triggerPrice`, `workingType` `MARK_PRICE`|`CONTRACT_PRICE` (default), `reduceOnly`, `clientAlgoId`,
//!   `priceProtect`), `GET`/`DELETE /fapi/v1/algoOrder` (`algoId` or `clientAlgoId`), `GET /fapi/v1/openAlgoOrders`,
//!   `DELETE /fapi/v1/algoOpenOrders` (`symbol`), `GET /fapi/v1/allAlgoOrders` (`symbol`).
//! - Modelled types: `STOP_MARKET` and `TAKE_PROFIT_MARKET`. `STOP`, `TAKE_PROFIT` and `TRAILING_STOP_MARKET` are
//!   refused with a -1000 that says the simulator does not model them (not a Binance answer: a test that needs
//!   them must extend this module rather than pass by accident).
//! - Trigger (Binance's rule): a BUY stop when the working price rises to the trigger, a SELL stop when it falls
//!   to it; take-profits the other way round. The working price is the book's mark (`MARK_PRICE`) or the last
//!   trade price (`CONTRACT_PRICE`). A trigger already met at placement is -2021.
//! - On trigger the algo order goes `TRIGGERING` → `TRIGGERED` → `FINISHED` (each an `ALGO_UPDATE`) and places a
//!   MARKET order whose client order id is the `clientAlgoId`; it fills against the book like any other order
//!   (ORDER_TRADE_UPDATE, ACCOUNT_UPDATE, userTrades, income). Reduce-only (and `closePosition`, which closes the
//!   whole net position) is judged against the net position at that moment: refused orders end the algo order
//!   `REJECTED` with `rm` = the reason, like Binance's "Reduce Only reject".
//! - Limit: [`MAX_ALGO_ORDERS`] open algo orders per symbol (Binance's MAX_NUM_ALGO_ORDERS), else -4045.

use super::account::Account;
use super::auth::Params;
use super::error::ApiError;
use super::matching::{symbol_param, Exchange, NewOrder, PositionSide};
use super::orders::{OrderType, Side, Tif};
use super::symbols::fixed;
use aegis_shared::num::{Price, Qty};
use serde_json::{json, Value};

/// Open algo orders allowed per symbol (exchangeInfo `MAX_NUM_ALGO_ORDERS`).
pub const MAX_ALGO_ORDERS: usize = 10;

/// The modelled conditional types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlgoType {
    /// `STOP_MARKET`.
    StopMarket,
    /// `TAKE_PROFIT_MARKET`.
    TakeProfitMarket,
}

impl AlgoType {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            AlgoType::StopMarket => "STOP_MARKET",
            AlgoType::TakeProfitMarket => "TAKE_PROFIT_MARKET",
        }
    }
}

/// Which price triggers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Working {
    /// `MARK_PRICE`: the book's mark.
    Mark,
    /// `CONTRACT_PRICE`: the last trade price.
    Contract,
}

impl Working {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Working::Mark => "MARK_PRICE",
            Working::Contract => "CONTRACT_PRICE",
        }
    }
}

/// `algoStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlgoStatus {
    /// Waiting for its trigger.
    New,
    /// Triggered; the order is being placed.
    Triggering,
    /// The order was placed in the matching engine.
    Triggered,
    /// Done (see `executedQty`).
    Finished,
    /// Cancelled by the user.
    Canceled,
    /// The triggered order was refused (`rm` says why).
    Rejected,
}

impl AlgoStatus {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            AlgoStatus::New => "NEW",
            AlgoStatus::Triggering => "TRIGGERING",
            AlgoStatus::Triggered => "TRIGGERED",
            AlgoStatus::Finished => "FINISHED",
            AlgoStatus::Canceled => "CANCELED",
            AlgoStatus::Rejected => "REJECTED",
        }
    }
    /// Still waiting for its trigger.
    pub fn is_open(self) -> bool {
        self == AlgoStatus::New
    }
}

/// One conditional order.
#[derive(Debug, Clone)]
pub struct AlgoOrder {
    /// `algoId`.
    pub algo_id: u64,
    /// `clientAlgoId`.
    pub client_algo_id: String,
    /// Symbol.
    pub symbol: String,
    /// Side.
    pub side: Side,
    /// Type.
    pub atype: AlgoType,
    /// Quantity (`None` with `closePosition`).
    pub qty: Option<Qty>,
    /// `closePosition=true`: close the whole position on trigger.
    pub close_position: bool,
    /// `triggerPrice`.
    pub trigger: Price,
    /// `workingType`.
    pub working: Working,
    /// `reduceOnly`.
    pub reduce_only: bool,
    /// `priceProtect` (accepted and echoed; the simulator's mark and last never diverge enough to matter).
    pub price_protect: bool,
    /// `algoStatus`.
    pub status: AlgoStatus,
    /// Created (ms).
    pub create_time: u64,
    /// Last change (ms).
    pub update_time: u64,
    /// Trigger time (ms, 0 before).
    pub trigger_time: u64,
    /// The order placed on trigger.
    pub actual_order_id: Option<u64>,
    /// Filled quantity of that order.
    pub executed: Qty,
    /// Its average price.
    pub avg_price: Price,
    /// Why the triggered order was refused.
    pub reject_reason: String,
    /// Display decimals (price, qty).
    pub decimals: (u32, u32),
}

impl AlgoOrder {
    fn px(&self, p: Price) -> String {
        fixed(p.units(), self.decimals.0)
    }
    fn qt(&self, q: Qty) -> String {
        fixed(q.units(), self.decimals.1)
    }

    /// The REST object (`POST`/`GET /fapi/v1/algoOrder`, `openAlgoOrders`, `allAlgoOrders`).
    pub fn to_json(&self) -> Value {
        json!({
            "algoId": self.algo_id,
            "clientAlgoId": self.client_algo_id,
            "algoType": "CONDITIONAL",
            "orderType": self.atype.as_str(),
            "symbol": self.symbol,
            "side": self.side.as_str(),
            "positionSide": "BOTH",
            "timeInForce": "GTC",
            "quantity": self.qty.map(|q| self.qt(q)).unwrap_or_else(|| "0".into()),
            "algoStatus": self.status.as_str(),
            "actualOrderId": self.actual_order_id.map(|i| i.to_string()).unwrap_or_default(),
            "actualPrice": self.px(self.avg_price),
            "triggerPrice": self.px(self.trigger),
            "price": "0",
            "icebergQuantity": null,
            "tpTriggerPrice": "0",
            "tpPrice": "0",
            "slTriggerPrice": "0",
            "slPrice": "0",
            "tpOrderType": "",
            "selfTradePreventionMode": "EXPIRE_MAKER",
            "workingType": self.working.as_str(),
            "priceMatch": "NONE",
            "closePosition": self.close_position,
            "priceProtect": self.price_protect,
            "reduceOnly": self.reduce_only,
            "createTime": self.create_time,
            "updateTime": self.update_time,
            "triggerTime": self.trigger_time,
            "goodTillDate": 0,
        })
    }

    /// The `ALGO_UPDATE` user data event.
    pub fn update_event(&self, now: u64) -> Value {
        json!({"e": "ALGO_UPDATE", "T": now, "E": now, "o": {
            "caid": self.client_algo_id,
            "aid": self.algo_id,
            "at": "CONDITIONAL",
            "o": self.atype.as_str(),
            "s": self.symbol,
            "S": self.side.as_str(),
            "ps": "BOTH",
            "f": "GTC",
            "q": self.qty.map(|q| self.qt(q)).unwrap_or_else(|| "0".into()),
            "X": self.status.as_str(),
            "ai": self.actual_order_id.map(|i| i.to_string()).unwrap_or_default(),
            "ap": self.px(self.avg_price),
            "aq": self.qt(self.executed),
            "act": if self.actual_order_id.is_some() { "MARKET" } else { "0" },
            "tp": self.px(self.trigger),
            "p": "0",
            "V": "EXPIRE_MAKER",
            "wt": self.working.as_str(),
            "pm": "NONE",
            "cp": self.close_position,
            "pP": self.price_protect,
            "R": self.reduce_only,
            "tt": self.trigger_time,
            "gtd": 0,
            "rm": self.reject_reason,
        }})
    }

    /// Whether `price` meets the trigger.
    pub fn triggers_at(&self, price: Price) -> bool {
        match (self.atype, self.side) {
            (AlgoType::StopMarket, Side::Buy) | (AlgoType::TakeProfitMarket, Side::Sell) => {
                price >= self.trigger
            }
            (AlgoType::StopMarket, Side::Sell) | (AlgoType::TakeProfitMarket, Side::Buy) => {
                price <= self.trigger
            }
        }
    }
}

fn bool_param(p: &Params, name: &str) -> Result<Option<bool>, ApiError> {
    match p.opt(name) {
        None => Ok(None),
        Some("true") | Some("TRUE") | Some("True") => Ok(Some(true)),
        Some("false") | Some("FALSE") | Some("False") => Ok(Some(false)),
        Some(_) => Err(ApiError::mandatory(name)),
    }
}

fn not_required(name: &str) -> ApiError {
    ApiError::new(
        400,
        -1106,
        format!("Parameter '{name}' sent when not required."),
    )
}

fn client_algo_id_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 36
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b':' | b'/' | b'_' | b'-'))
}

/// How an algo order is named in a request: `algoId` or `clientAlgoId` (-1102 when neither).
#[derive(Debug, Clone)]
pub enum AlgoRef {
    /// By `algoId`.
    Id(u64),
    /// By `clientAlgoId`.
    Client(String),
}

/// Reads `algoId` / `clientAlgoId`.
pub fn algo_ref(p: &Params) -> Result<AlgoRef, ApiError> {
    if let Some(id) = p.opt_u64("algoId")? {
        return Ok(AlgoRef::Id(id));
    }
    match p.opt("clientAlgoId") {
        Some(c) => Ok(AlgoRef::Client(c.to_string())),
        None => Err(ApiError::mandatory("algoId")),
    }
}

fn find<'a>(acc: &'a Account, r: &AlgoRef) -> Option<&'a AlgoOrder> {
    match r {
        AlgoRef::Id(id) => acc.algo_orders.get(id),
        // The most recent one with that client id.
        AlgoRef::Client(c) => acc
            .algo_orders
            .values()
            .rev()
            .find(|o| &o.client_algo_id == c),
    }
}

impl Exchange {
    /// `POST /fapi/v1/algoOrder`.
    pub fn place_algo(&mut self, account: &str, p: &Params, now: u64) -> Result<Value, ApiError> {
        match p.opt("algoType") {
            Some("CONDITIONAL") => {}
            _ => return Err(ApiError::mandatory("algoType")),
        }
        let spec = symbol_param(p, &self.specs)?.clone();
        let side = match p.required("side")? {
            "BUY" => Side::Buy,
            "SELL" => Side::Sell,
            _ => return Err(ApiError::invalid_side()),
        };
        let atype = match p.required("type")? {
            "STOP_MARKET" => AlgoType::StopMarket,
            "TAKE_PROFIT_MARKET" => AlgoType::TakeProfitMarket,
            t @ ("STOP" | "TAKE_PROFIT" | "TRAILING_STOP_MARKET") => {
                return Err(ApiError::new(
                    400,
                    -1000,
                    format!("binance-sim does not model {t} algo orders (only STOP_MARKET and TAKE_PROFIT_MARKET)"),
                ))
            }
            _ => return Err(ApiError::invalid_order_type()),
        };
        match p.opt("positionSide") {
            None | Some("BOTH") => {}
            Some(_) => {
                return Err(ApiError::new(
                    400,
                    -4061,
                    "Order's position side does not match user's setting.",
                ))
            }
        }
        let close_position = bool_param(p, "closePosition")?.unwrap_or(false);
        let reduce_only = bool_param(p, "reduceOnly")?.unwrap_or(false);
        let price_protect = bool_param(p, "priceProtect")?.unwrap_or(false);
        let qty = if close_position {
            if p.opt("quantity").is_some() {
                return Err(not_required("quantity"));
            }
            if reduce_only {
                return Err(not_required("reduceOnly"));
            }
            None
        } else {
            Some(spec.check_qty(p.required("quantity")?, true)?)
        };
        let trigger = spec.check_price(p.required("triggerPrice")?)?;
        if p.opt("price").is_some() {
            return Err(not_required("price"));
        }
        let working = match p.opt("workingType") {
            None | Some("CONTRACT_PRICE") => Working::Contract,
            Some("MARK_PRICE") => Working::Mark,
            Some(_) => return Err(ApiError::mandatory("workingType")),
        };
        let client_algo_id = match p.opt("clientAlgoId") {
            None => None,
            Some(c) if client_algo_id_ok(c) => Some(c.to_string()),
            Some(_) => {
                return Err(ApiError::illegal_chars(
                    "clientAlgoId",
                    "^[\\.A-Z\\:/a-z0-9_-]{1,36}$",
                ))
            }
        };
        let book = &self.books[&spec.symbol];
        let price_now = match working {
            Working::Mark => book.mark(),
            Working::Contract => book.last_price,
        };
        self.next_algo_id += 1;
        let algo_id = self.next_algo_id;
        let mut o = AlgoOrder {
            algo_id,
            client_algo_id: client_algo_id.clone().unwrap_or_default(),
            symbol: spec.symbol.clone(),
            side,
            atype,
            qty,
            close_position,
            trigger,
            working,
            reduce_only,
            price_protect,
            status: AlgoStatus::New,
            create_time: now,
            update_time: now,
            trigger_time: 0,
            actual_order_id: None,
            executed: Qty::ZERO,
            avg_price: Price::ZERO,
            reject_reason: String::new(),
            decimals: (spec.price_precision, spec.qty_precision),
        };
        if o.triggers_at(price_now) {
            return Err(ApiError::new(
                400,
                -2021,
                "Order would immediately trigger.",
            ));
        }
        let acc = self.account(account);
        if acc.dual_side_position {
            return Err(ApiError::new(
                400,
                -4061,
                "Order's position side does not match user's setting.",
            ));
        }
        if let Some(c) = &client_algo_id {
            if acc
                .algo_orders
                .values()
                .any(|x| x.status.is_open() && &x.client_algo_id == c)
            {
                return Err(ApiError::duplicate_client_id());
            }
        }
        if acc
            .algo_orders
            .values()
            .filter(|x| x.status.is_open() && x.symbol == spec.symbol)
            .count()
            >= MAX_ALGO_ORDERS
        {
            return Err(ApiError::new(400, -4045, "Reach max stop order limit."));
        }
        if o.client_algo_id.is_empty() {
            o.client_algo_id = format!("simalgo{now}x{algo_id}");
        }
        acc.emit(o.update_event(now));
        acc.algo_orders.insert(algo_id, o.clone());
        Ok(o.to_json())
    }

    /// `GET /fapi/v1/algoOrder`: -2013 when unknown.
    pub fn query_algo(&mut self, account: &str, r: &AlgoRef) -> Result<Value, ApiError> {
        find(self.account(account), r)
            .map(AlgoOrder::to_json)
            .ok_or_else(ApiError::no_such_order)
    }

    /// `DELETE /fapi/v1/algoOrder`: -2011 when unknown or no longer waiting.
    pub fn cancel_algo(&mut self, account: &str, r: &AlgoRef, now: u64) -> Result<Value, ApiError> {
        let acc = self.account(account);
        let id = find(acc, r)
            .filter(|o| o.status.is_open())
            .map(|o| o.algo_id)
            .ok_or_else(ApiError::unknown_order_cancel)?;
        let Some(o) = acc.algo_orders.get_mut(&id) else {
            return Err(ApiError::unknown_order_cancel());
        };
        o.status = AlgoStatus::Canceled;
        o.update_time = now;
        let o = o.clone();
        acc.emit(o.update_event(now));
        Ok(
            json!({"algoId": o.algo_id, "clientAlgoId": o.client_algo_id, "code": "200", "msg": "success"}),
        )
    }

    /// `DELETE /fapi/v1/algoOpenOrders`: cancels every waiting algo order of a symbol; returns how many.
    pub fn cancel_all_algo(&mut self, account: &str, symbol: &str, now: u64) -> usize {
        let acc = self.account(account);
        let ids: Vec<u64> = acc
            .algo_orders
            .values()
            .filter(|o| o.status.is_open() && o.symbol == symbol)
            .map(|o| o.algo_id)
            .collect();
        for id in &ids {
            let _ = self.cancel_algo(account, &AlgoRef::Id(*id), now);
        }
        ids.len()
    }

    /// `GET /fapi/v1/openAlgoOrders` (all symbols when `symbol` is `None`).
    pub fn open_algo(&mut self, account: &str, symbol: Option<&str>) -> Vec<Value> {
        self.account(account)
            .algo_orders
            .values()
            .filter(|o| o.status.is_open() && symbol.is_none_or(|s| s == o.symbol))
            .map(AlgoOrder::to_json)
            .collect()
    }

    /// `GET /fapi/v1/allAlgoOrders`: a symbol's algo orders of any status, oldest first, from `algoId` or in
    /// `[startTime, endTime]`, at most `limit` (default 500, max 1000).
    pub fn all_algo(&mut self, account: &str, p: &Params) -> Result<Value, ApiError> {
        let sym = symbol_param(p, &self.specs)?.symbol.clone();
        let from = p.opt_u64("algoId")?.unwrap_or(0);
        let start = p.opt_u64("startTime")?.unwrap_or(0);
        let end = p.opt_u64("endTime")?.unwrap_or(u64::MAX);
        let limit = match p.opt_u64("limit")? {
            None => 500,
            Some(n @ 1..=1000) => n as usize,
            Some(_) => return Err(ApiError::mandatory("limit")),
        };
        Ok(Value::Array(
            self.account(account)
                .algo_orders
                .values()
                .filter(|o| {
                    o.symbol == sym && o.algo_id >= from && (start..=end).contains(&o.create_time)
                })
                .take(limit)
                .map(AlgoOrder::to_json)
                .collect(),
        ))
    }

    /// Triggers the waiting algo orders of `symbol` whose working price has reached their trigger.
    pub fn trigger_algo(&mut self, symbol: &str, now: u64) {
        let Some(book) = self.books.get(symbol) else {
            return;
        };
        let (mark, last) = (book.mark(), book.last_price);
        let mut due: Vec<(String, u64)> = Vec::new();
        let mut names: Vec<&String> = self.accounts.keys().collect();
        names.sort();
        for name in names {
            for o in self.accounts[name].algo_orders.values() {
                let price = match o.working {
                    Working::Mark => mark,
                    Working::Contract => last,
                };
                if o.status.is_open() && o.symbol == symbol && o.triggers_at(price) {
                    due.push((name.clone(), o.algo_id));
                }
            }
        }
        for (name, id) in due {
            self.fire(&name, id, now);
        }
    }

    fn fire(&mut self, account: &str, id: u64, now: u64) {
        let acc = self.account(account);
        let Some(o) = acc.algo_orders.get_mut(&id) else {
            return;
        };
        o.status = AlgoStatus::Triggering;
        o.trigger_time = now;
        o.update_time = now;
        let o = o.clone();
        acc.emit(o.update_event(now));
        let pos = acc
            .positions
            .get(&o.symbol)
            .map(|p| p.amt)
            .unwrap_or_default();
        let qty = match o.qty {
            Some(q) => Some(q),
            // closePosition: the whole net position, on the closing side only.
            None if !pos.is_zero() && pos.signum() != o.side.sign() => Some(pos.abs()),
            None => None,
        };
        let placed = match qty {
            None => Err(ApiError::reduce_only_rejected()),
            Some(qty) => self.place(
                account,
                NewOrder {
                    symbol: o.symbol.clone(),
                    side: o.side,
                    otype: OrderType::Market,
                    tif: Tif::Gtc,
                    price: None,
                    qty,
                    reduce_only: o.reduce_only || o.close_position,
                    client_id: Some(o.client_algo_id.clone()),
                    result: true,
                    position_side: PositionSide::Both,
                },
                now,
            ),
        };
        let acc = self.account(account);
        let Some(mut o) = acc.algo_orders.get(&id).cloned() else {
            return;
        };
        match placed {
            Ok(pl) => {
                o.actual_order_id = Some(pl.order.order_id);
                o.status = AlgoStatus::Triggered;
                acc.emit(o.update_event(now));
                o.executed = pl.order.executed;
                o.avg_price = pl.order.avg_price();
                o.status = AlgoStatus::Finished;
            }
            Err(e) => {
                o.status = AlgoStatus::Rejected;
                o.reject_reason = if e.code == -2022 {
                    "Reduce Only reject".into()
                } else {
                    e.msg.clone()
                };
            }
        }
        o.update_time = now;
        acc.emit(o.update_event(now));
        acc.algo_orders.insert(id, o);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::market::Quote;
    use crate::sim::matching::parse_new_order;
    use crate::sim::orders::Status;
    use crate::sim::symbols::SymbolSpec;
    use aegis_shared::num::Notional;

    const A: &str = "alice";

    fn ex() -> Exchange {
        let mut e = Exchange::new(SymbolSpec::defaults(), Notional::from_int(10_000));
        quote(&mut e, "59999.9", "60000");
        e
    }
    fn quote(e: &mut Exchange, bid: &str, ask: &str) {
        e.on_quote(
            &Quote {
                symbol: "BTCUSDT".into(),
                bid: Price::parse(bid).unwrap(),
                bid_qty: Qty::parse("0.5").unwrap(),
                ask: Price::parse(ask).unwrap(),
                ask_qty: Qty::parse("0.5").unwrap(),
            },
            1,
            true,
        );
    }
    fn buy(e: &mut Exchange, q: &str) {
        let p = Params::from_raw(
            &format!("symbol=BTCUSDT&side=BUY&type=MARKET&quantity={q}"),
            b"",
        );
        let req = parse_new_order(&p, &e.specs).unwrap();
        e.place(A, req, 5).unwrap();
    }
    fn algo(e: &mut Exchange, q: &str) -> Result<Value, ApiError> {
        e.place_algo(
            A,
            &Params::from_raw(&format!("symbol=BTCUSDT&algoType=CONDITIONAL&{q}"), b""),
            10,
        )
    }
    fn pos(e: &Exchange) -> Qty {
        e.accounts[A]
            .positions
            .get("BTCUSDT")
            .map(|p| p.amt)
            .unwrap_or_default()
    }

    #[test]
    fn stop_market_on_mark_closes_the_long_with_a_reduce_only_market_order() {
        let mut e = ex();
        buy(&mut e, "0.01");
        let v = algo(
            &mut e,
            "side=SELL&type=STOP_MARKET&quantity=0.01&triggerPrice=58000&workingType=MARK_PRICE&reduceOnly=true&clientAlgoId=stop1",
        )
        .unwrap();
        assert_eq!(v["algoStatus"], "NEW");
        assert_eq!(v["triggerPrice"], "58000.00");
        assert_eq!(e.open_algo(A, None).len(), 1);
        // Above the trigger: nothing happens.
        quote(&mut e, "58000.1", "58000.3");
        assert_eq!(pos(&e), Qty::parse("0.01").unwrap());
        // Mark falls to the trigger: a market sell with the clientAlgoId as client order id closes the long.
        quote(&mut e, "57999.9", "58000.1");
        assert!(pos(&e).is_zero());
        let got = e.query_algo(A, &AlgoRef::Client("stop1".into())).unwrap();
        assert_eq!(got["algoStatus"], "FINISHED");
        let oid: u64 = got["actualOrderId"].as_str().unwrap().parse().unwrap();
        let o = &e.accounts[A].orders[&oid];
        assert_eq!(o.client_id, "stop1");
        assert_eq!(o.status, Status::Filled);
        assert!(o.reduce_only);
        assert!(e.open_algo(A, None).is_empty());
        // The fill was booked like any other: a trade record for the order.
        assert!(e.accounts[A].books.trades.iter().any(|t| t.order_id == oid));
    }

    #[test]
    fn placement_rules() {
        let mut e = ex();
        let code = |r: Result<Value, ApiError>| r.unwrap_err().code;
        // A SELL stop above the mark would trigger at once.
        assert_eq!(
            code(algo(
                &mut e,
                "side=SELL&type=STOP_MARKET&quantity=0.01&triggerPrice=61000&workingType=MARK_PRICE"
            )),
            -2021
        );
        assert_eq!(
            code(algo(
                &mut e,
                "side=SELL&type=STOP_MARKET&closePosition=true&quantity=0.01&triggerPrice=50000"
            )),
            -1106
        );
        assert_eq!(
            code(algo(&mut e, "side=SELL&type=STOP_MARKET&quantity=0.01")),
            -1102
        );
        assert_eq!(
            code(algo(
                &mut e,
                "side=SELL&type=LIMIT&quantity=0.01&triggerPrice=50000"
            )),
            -1116
        );
        assert_eq!(
            code(algo(
                &mut e,
                "side=SELL&type=STOP_MARKET&quantity=0.01&triggerPrice=50000.05"
            )),
            -4014
        );
        assert_eq!(
            code(e.place_algo(
                A,
                &Params::from_raw(
                    "symbol=BTCUSDT&side=SELL&type=STOP_MARKET&quantity=0.01&triggerPrice=50000",
                    b""
                ),
                10
            )),
            -1102
        );
        algo(
            &mut e,
            "side=SELL&type=STOP_MARKET&quantity=0.01&triggerPrice=50000&clientAlgoId=x",
        )
        .unwrap();
        assert_eq!(
            code(algo(
                &mut e,
                "side=SELL&type=STOP_MARKET&quantity=0.01&triggerPrice=50000&clientAlgoId=x"
            )),
            -4116
        );
        for i in 1..MAX_ALGO_ORDERS {
            algo(
                &mut e,
                &format!(
                    "side=SELL&type=STOP_MARKET&quantity=0.01&triggerPrice={}",
                    50000 - i
                ),
            )
            .unwrap();
        }
        assert_eq!(
            code(algo(
                &mut e,
                "side=SELL&type=STOP_MARKET&quantity=0.01&triggerPrice=40000"
            )),
            -4045
        );
        assert_eq!(e.cancel_all_algo(A, "BTCUSDT", 20), MAX_ALGO_ORDERS);
        assert_eq!(
            e.cancel_algo(A, &AlgoRef::Client("x".into()), 21)
                .unwrap_err()
                .code,
            -2011
        );
        assert_eq!(e.query_algo(A, &AlgoRef::Id(1)).unwrap_err().code, -2013);
    }

    #[test]
    fn reduce_only_trigger_without_a_position_is_rejected_and_opens_nothing() {
        let mut e = ex();
        algo(
            &mut e,
            "side=SELL&type=STOP_MARKET&quantity=0.01&triggerPrice=58000&workingType=MARK_PRICE&reduceOnly=true&clientAlgoId=s",
        )
        .unwrap();
        quote(&mut e, "57000", "57000.2");
        assert!(pos(&e).is_zero());
        let got = e.query_algo(A, &AlgoRef::Client("s".into())).unwrap();
        assert_eq!(got["algoStatus"], "REJECTED");
    }

    #[test]
    fn close_position_closes_whatever_the_net_position_is_and_contract_price_uses_the_last_trade() {
        let mut e = ex();
        buy(&mut e, "0.03");
        algo(
            &mut e,
            "side=SELL&type=STOP_MARKET&closePosition=true&triggerPrice=59000&clientAlgoId=c",
        )
        .unwrap();
        // The mark falls through, but the working type is CONTRACT_PRICE: the last trade is still 60000.
        quote(&mut e, "58000", "58000.2");
        assert_eq!(pos(&e), Qty::parse("0.03").unwrap());
        e.books.get_mut("BTCUSDT").unwrap().last_price = Price::parse("58999").unwrap();
        e.trigger_algo("BTCUSDT", 30);
        assert!(pos(&e).is_zero());
        let got = e.query_algo(A, &AlgoRef::Client("c".into())).unwrap();
        assert_eq!(got["algoStatus"], "FINISHED");
    }

    #[test]
    fn a_buy_stop_triggers_when_the_price_rises() {
        let mut e = ex();
        let p = Params::from_raw("symbol=BTCUSDT&side=SELL&type=MARKET&quantity=0.01", b"");
        let req = parse_new_order(&p, &e.specs).unwrap();
        e.place(A, req, 5).unwrap();
        algo(
            &mut e,
            "side=BUY&type=STOP_MARKET&quantity=0.01&triggerPrice=61000&workingType=MARK_PRICE&reduceOnly=true",
        )
        .unwrap();
        quote(&mut e, "60999.8", "61000");
        assert_eq!(pos(&e), Qty::parse("-0.01").unwrap());
        quote(&mut e, "61000", "61000.2");
        assert!(pos(&e).is_zero());
    }
}

//! The spot exchange: books (a top of book and a last price per symbol, moved by the admin API), accounts and
//! the rules of a cash market.
//!
//! - Placing: filters first (`-1013`), then the balance: a buy locks `price × qty` of the quote asset (a market
//!   buy needs `ask × qty` free), a sell locks `qty` of the base asset; short of it → `-2010 Account has
//!   insufficient balance for requested action.` (selling what is not held is exactly that: no shorting).
//! - Matching: marketable orders take the top of book in full (the book is deep enough); resting limit orders
//!   fill at their price, as maker, when the last price reaches them; stops trigger on the last price and then
//!   behave as their market or limit order.
//! - Commissions: the taker/maker rate of the notional, in the asset received (a buy pays in base, so the held
//!   quantity is the bought one less the fee; a sell pays in quote), or in BNB at the `BNB<quote>` last price
//!   when the BNB fee mode is on and the account holds enough free BNB (no BNB discount is modelled).
//! - OCO (`orderList/oco`): two legs sharing one lock; when one leg triggers or fills, the other expires; a
//!   cancel of either leg cancels the list.
//! - Cancel-replace (`order/cancelReplace`): the new order's filters first, then the cancel, then the new order
//!   against the balance the cancel freed; Binance's 200 / 409 `-2021` / 400 `-2022` answers.

use super::super::auth::Params;
use super::super::error::ApiError;
use super::account::{OrderList, SpotAccount, SpotTrade};
use super::orders::{Fill, Kind, RespType, Side, SpotOrder, Status};
use super::symbols::{filter, s8, SpotSpec};
use aegis_shared::num::{Notional, Price, Qty, Rate, SCALE};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use tokio::sync::broadcast;

/// A symbol's market: top of book and last trade price.
#[derive(Debug, Clone)]
pub struct SpotBook {
    /// The symbol.
    pub spec: SpotSpec,
    /// Last trade price (stops trigger on it, resting orders fill when it reaches them).
    pub last: Price,
    /// Best bid (market and marketable sells fill here).
    pub bid: Price,
    /// Best ask (market and marketable buys fill here).
    pub ask: Price,
    /// Size at the best bid and ask on the streams (default 10 each; the admin API sets them so a test can show an
    /// imbalanced book).
    pub sizes: (Qty, Qty),
    /// Book update id (bookTicker `u`, depth `lastUpdateId`).
    pub update_id: u64,
    /// Recent public trades, newest last (aggTrades, trades, klines).
    pub trades: VecDeque<PublicTrade>,
}

/// A public trade (every fill of the simulator is one; admin price moves add one too).
#[derive(Debug, Clone, Copy)]
pub struct PublicTrade {
    /// Trade id (also the aggregate trade id).
    pub id: u64,
    /// Price.
    pub price: Price,
    /// Quantity.
    pub qty: Qty,
    /// Time.
    pub time: u64,
    /// The buyer was the maker.
    pub buyer_maker: bool,
}

/// A market stream message: stream name (`btcusdt@trade`) and payload.
#[derive(Debug, Clone)]
pub struct SpotStreamMsg {
    /// Stream name, lowercase symbol.
    pub stream: String,
    /// Payload JSON.
    pub data: Arc<str>,
}

/// A new order as requested.
#[derive(Debug, Clone)]
pub struct NewOrder {
    /// Symbol.
    pub symbol: String,
    /// Side.
    pub side: Side,
    /// Type.
    pub kind: Kind,
    /// timeInForce.
    pub tif: &'static str,
    /// Limit price.
    pub price: Price,
    /// Stop price.
    pub stop: Price,
    /// Quantity (0 with quoteOrderQty).
    pub qty: Qty,
    /// quoteOrderQty of a market order.
    pub quote_qty: Notional,
    /// newClientOrderId.
    pub client_id: Option<String>,
    /// newOrderRespType.
    pub resp: RespType,
}

/// Which order a query or cancel means.
#[derive(Debug, Clone)]
pub enum OrderRef {
    /// By exchange id.
    Id(u64),
    /// By client order id.
    Client(String),
    /// By exchange id, whose client order id must also be this one (cancel-replace with both
    /// `cancelOrderId` and `cancelOrigClientOrderId`).
    Both(u64, String),
}

impl OrderRef {
    /// Whether `o` is the order meant.
    pub fn matches(&self, o: &SpotOrder) -> bool {
        match self {
            OrderRef::Id(id) => o.order_id == *id,
            OrderRef::Client(c) => &o.client_order_id == c,
            OrderRef::Both(id, c) => o.order_id == *id && &o.client_order_id == c,
        }
    }
}

/// `cancelReplaceMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplaceMode {
    /// `STOP_ON_FAILURE`: a failed cancel leaves the new order unattempted.
    StopOnFailure,
    /// `ALLOW_FAILURE`: the new order is attempted whatever the cancel did.
    AllowFailure,
}

fn mandatory_either(a: &str, b: &str) -> ApiError {
    ApiError::new(
        400,
        -1102,
        format!("Param '{a}' or '{b}' must be sent, but both were empty/null!"),
    )
}

/// `orderId` or `origClientOrderId`.
pub fn order_ref(p: &Params) -> Result<OrderRef, ApiError> {
    if let Some(id) = p.opt_u64("orderId")? {
        return Ok(OrderRef::Id(id));
    }
    match p.opt("origClientOrderId") {
        Some(c) => Ok(OrderRef::Client(c.to_string())),
        None => Err(mandatory_either("origClientOrderId", "orderId")),
    }
}

const NUM_RANGE: &str = "^([0-9]{1,20})(\\.[0-9]{1,20})?$";

fn num<T: std::str::FromStr>(p: &Params, name: &str) -> Result<Option<T>, ApiError> {
    match p.opt(name) {
        None => Ok(None),
        Some(v) => {
            if !v.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
                return Err(ApiError::illegal_chars(name, NUM_RANGE));
            }
            // More than 8 decimals does not parse into 10⁻⁸ units.
            v.parse().map(Some).map_err(|_| ApiError::precision())
        }
    }
}

fn need<T>(v: Option<T>, name: &str) -> Result<T, ApiError> {
    v.ok_or_else(|| ApiError::mandatory(name))
}

/// A client order id as Binance allows them.
pub fn check_client_id(id: &str, name: &str) -> Result<(), ApiError> {
    let ok = (1..=36).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b':' | b'/' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::illegal_chars(name, "^[a-zA-Z0-9-_.:/]{1,36}$"))
    }
}

/// Parses the parameters of `POST /api/v3/order` (and `order.place`): `-1102` for what the type needs.
pub fn parse_new_order(p: &Params) -> Result<NewOrder, ApiError> {
    let symbol = p.required("symbol")?.to_string();
    let side = match p.required("side")? {
        "BUY" => Side::Buy,
        "SELL" => Side::Sell,
        _ => return Err(ApiError::invalid_side()),
    };
    let kind = Kind::parse(p.required("type")?).ok_or_else(ApiError::invalid_order_type)?;
    let tif = match p.opt("timeInForce") {
        None => None,
        Some("GTC") => Some("GTC"),
        Some("IOC") => Some("IOC"),
        Some("FOK") => Some("FOK"),
        Some(_) => return Err(ApiError::invalid_tif()),
    };
    let price: Option<Price> = num(p, "price")?;
    let stop: Option<Price> = num(p, "stopPrice")?;
    let qty: Option<Qty> = num(p, "quantity")?;
    let quote_qty: Option<Notional> = num(p, "quoteOrderQty")?;
    let client_id = p.opt("newClientOrderId").map(str::to_string);
    if let Some(c) = &client_id {
        check_client_id(c, "newClientOrderId")?;
    }
    let resp = match p.opt("newOrderRespType") {
        Some("ACK") => RespType::Ack,
        Some("RESULT") => RespType::Result,
        Some("FULL") => RespType::Full,
        Some(_) => return Err(ApiError::mandatory("newOrderRespType")),
        None if matches!(kind, Kind::Limit | Kind::Market) => RespType::Full,
        None => RespType::Ack,
    };
    let (qty, quote_qty) = if kind == Kind::Market {
        match (qty, quote_qty) {
            (Some(q), _) => (q, Notional::ZERO),
            (None, Some(qq)) => (Qty::ZERO, qq),
            (None, None) => return Err(mandatory_either("quantity", "quoteOrderQty")),
        }
    } else {
        (need(qty, "quantity")?, Notional::ZERO)
    };
    let tif = match kind {
        Kind::Limit | Kind::StopLossLimit | Kind::TakeProfitLimit => need(tif, "timeInForce")?,
        _ => "GTC",
    };
    let price = if kind.has_price() {
        need(price, "price")?
    } else {
        Price::ZERO
    };
    let stop = if kind.is_stop() {
        need(stop, "stopPrice")?
    } else {
        Price::ZERO
    };
    Ok(NewOrder {
        symbol,
        side,
        kind,
        tif,
        price,
        stop,
        qty,
        quote_qty,
        client_id,
        resp,
    })
}

/// `-2010` with a message.
pub fn rejected(msg: &str) -> ApiError {
    ApiError::new(400, -2010, msg)
}

/// `-2010 Account has insufficient balance for requested action.`
pub fn insufficient() -> ApiError {
    rejected("Account has insufficient balance for requested action.")
}

fn to_qty(n: Notional) -> Qty {
    // A quote amount as a quantity of the quote asset: both are 10⁻⁸ units.
    Qty::from_units(n.units())
}

fn rate_of(q: Qty, r: Rate) -> Qty {
    Qty::from_units(Notional::from_units(q.units()).mul_rate(r).units())
}

/// `a / p` at 10⁻⁸, rounded half away from zero (a quote-asset commission in BNB).
fn div_price(a: Notional, p: Price) -> Qty {
    let (a, p) = (a.units() as i128, p.units() as i128);
    if p <= 0 {
        return Qty::ZERO;
    }
    Qty::from_units(((a * SCALE as i128 + p / 2) / p) as i64)
}

/// Whether a stop of `kind`/`side` triggers at `last`.
fn triggers(kind: Kind, side: Side, stop: Price, last: Price) -> bool {
    match (kind, side) {
        (Kind::StopLoss | Kind::StopLossLimit, Side::Sell)
        | (Kind::TakeProfit | Kind::TakeProfitLimit, Side::Buy) => last <= stop,
        (Kind::StopLoss | Kind::StopLossLimit, Side::Buy)
        | (Kind::TakeProfit | Kind::TakeProfitLimit, Side::Sell) => last >= stop,
        _ => false,
    }
}

/// The whole spot exchange.
pub struct SpotExchange {
    /// Symbols.
    pub specs: Vec<SpotSpec>,
    /// Books by symbol.
    pub books: BTreeMap<String, SpotBook>,
    /// Accounts by name (the key file's account names, shared with futures).
    pub accounts: HashMap<String, SpotAccount>,
    /// What a new account holds.
    pub start_balances: Vec<(String, Qty)>,
    /// Commissions in BNB when the account holds enough.
    pub bnb_fees: bool,
    /// Trades a marketable order is filled in (1 = one trade; the admin API sets more so a test sees partial
    /// fills: each part its own trade id, execution report and commission, as Binance fills across levels).
    pub fill_parts: u32,
    /// Market stream messages.
    pub market_tx: broadcast::Sender<SpotStreamMsg>,
    next_order: u64,
    next_trade: u64,
    next_list: i64,
}

/// A placed order: its state right after placement (fills included).
pub struct Placed {
    /// The order.
    pub order: SpotOrder,
    /// The requested answer shape.
    pub resp: RespType,
}

impl SpotExchange {
    /// An exchange over `specs`; new accounts hold 10,000 USDT.
    pub fn new(specs: Vec<SpotSpec>) -> Self {
        let books = specs
            .iter()
            .map(|s| {
                (
                    s.symbol.clone(),
                    SpotBook {
                        spec: s.clone(),
                        last: s.start_price,
                        bid: s.start_price,
                        ask: s.start_price,
                        sizes: (Qty::from_int(10), Qty::from_int(10)),
                        update_id: 1,
                        trades: VecDeque::new(),
                    },
                )
            })
            .collect();
        let (market_tx, _) = broadcast::channel(4096);
        Self {
            specs,
            books,
            accounts: HashMap::new(),
            start_balances: vec![("USDT".into(), Qty::from_int(10_000))],
            bnb_fees: false,
            fill_parts: 1,
            market_tx,
            next_order: 7_000_000,
            next_trade: 900_000,
            next_list: 1000,
        }
    }

    /// A symbol's spec or `-1121 Invalid symbol.`
    pub fn spec(&self, symbol: &str) -> Result<&SpotSpec, ApiError> {
        self.specs
            .iter()
            .find(|s| s.symbol == symbol)
            .ok_or_else(ApiError::invalid_symbol)
    }

    /// The `symbol` parameter's spec.
    pub fn symbol_param(&self, p: &Params) -> Result<SpotSpec, ApiError> {
        self.spec(p.required("symbol")?).cloned()
    }

    /// An account (created with the start balances on first use).
    pub fn account(&mut self, name: &str) -> &mut SpotAccount {
        let start = &self.start_balances;
        self.accounts
            .entry(name.to_string())
            .or_insert_with(|| SpotAccount::new(start))
    }

    fn take(&mut self, name: &str) -> SpotAccount {
        self.accounts
            .remove(name)
            .unwrap_or_else(|| SpotAccount::new(&self.start_balances))
    }

    fn put(&mut self, name: &str, acc: SpotAccount) {
        self.accounts.insert(name.to_string(), acc);
    }

    fn publish(&self, stream: String, data: Value) {
        let _ = self.market_tx.send(SpotStreamMsg {
            stream,
            data: Arc::from(data.to_string()),
        });
    }

    fn publish_book(&self, symbol: &str, now: u64) {
        let Some(b) = self.books.get(symbol) else {
            return;
        };
        let lower = symbol.to_ascii_lowercase();
        // Spot bookTicker has no event type or times.
        self.publish(
            format!("{lower}@bookTicker"),
            json!({"u": b.update_id, "s": symbol, "b": s8(b.bid.units()), "B": s8(b.sizes.0.units()),
                   "a": s8(b.ask.units()), "A": s8(b.sizes.1.units())}),
        );
        self.publish(
            format!("{lower}@depth"),
            json!({"e": "depthUpdate", "E": now, "s": symbol, "U": b.update_id, "u": b.update_id,
                   "b": [[s8(b.bid.units()), s8(b.sizes.0.units())]],
                   "a": [[s8(b.ask.units()), s8(b.sizes.1.units())]]}),
        );
    }

    fn public_trade(&mut self, symbol: &str, price: Price, qty: Qty, buyer_maker: bool, now: u64) {
        self.next_trade += 1;
        let t = PublicTrade {
            id: self.next_trade,
            price,
            qty,
            time: now,
            buyer_maker,
        };
        if let Some(b) = self.books.get_mut(symbol) {
            b.last = price;
            b.trades.push_back(t);
            if b.trades.len() > 1000 {
                b.trades.pop_front();
            }
        }
        let lower = symbol.to_ascii_lowercase();
        let (p, q) = (s8(price.units()), s8(qty.units()));
        self.publish(
            format!("{lower}@trade"),
            json!({"e": "trade", "E": now, "s": symbol, "t": t.id, "p": p, "q": q, "T": now,
                   "m": buyer_maker, "M": true}),
        );
        self.publish(
            format!("{lower}@aggTrade"),
            json!({"e": "aggTrade", "E": now, "s": symbol, "a": t.id, "p": p, "q": q, "f": t.id, "l": t.id,
                   "T": now, "m": buyer_maker, "M": true}),
        );
    }

    /// Places an order for `account`.
    pub fn place(&mut self, account: &str, req: NewOrder, now: u64) -> Result<Placed, ApiError> {
        let mut acc = self.take(account);
        let r = self.place_in(&mut acc, req, -1, now);
        acc.flush_position(now);
        self.put(account, acc);
        r
    }

    /// Checks a new order against the filters and the account's open orders.
    fn check(&self, acc: &SpotAccount, req: &NewOrder) -> Result<SpotSpec, ApiError> {
        let spec = self.spec(&req.symbol)?.clone();
        let book = &self.books[&spec.symbol];
        if let Some(c) = &req.client_id {
            if acc
                .orders
                .iter()
                .any(|o| o.status.is_open() && &o.client_order_id == c)
            {
                return Err(rejected("Duplicate order sent."));
            }
        }
        self.check_filters(req)?;
        let open = acc
            .orders
            .iter()
            .filter(|o| o.symbol == spec.symbol && o.status.is_open())
            .count();
        if open >= spec.max_num_orders {
            return Err(filter("MAX_NUM_ORDERS"));
        }
        if req.kind.is_stop() {
            let algo = acc
                .orders
                .iter()
                .filter(|o| o.symbol == spec.symbol && o.status.is_open() && o.kind.is_stop())
                .count();
            if algo >= spec.max_num_algo_orders {
                return Err(filter("MAX_NUM_ALGO_ORDERS"));
            }
            if triggers(req.kind, req.side, req.stop, book.last) {
                return Err(rejected("Order would trigger immediately."));
            }
        }
        if req.kind == Kind::LimitMaker {
            let takes = match req.side {
                Side::Buy => req.price >= book.ask,
                Side::Sell => req.price <= book.bid,
            };
            if takes {
                return Err(rejected("Order would immediately match and take."));
            }
        }
        Ok(spec)
    }

    /// The symbol's filters alone (`-1013`), which need nothing of the account: what cancel-replace evaluates
    /// before it cancels anything.
    fn check_filters(&self, req: &NewOrder) -> Result<SpotSpec, ApiError> {
        let spec = self.spec(&req.symbol)?.clone();
        let book = &self.books[&spec.symbol];
        if req.kind.has_price() {
            spec.check_price(req.price)?;
            spec.check_percent(req.price, book.last)?;
        }
        if req.kind.is_stop() {
            spec.check_price(req.stop)?;
        }
        let market = req.kind.is_market();
        if req.quote_qty.is_zero() {
            spec.check_qty(req.qty, market)?;
        } else if req.quote_qty.units() <= 0 {
            return Err(filter("NOTIONAL"));
        }
        let reference = if req.kind.has_price() {
            req.price
        } else if req.kind.is_stop() {
            req.stop
        } else {
            book.last
        };
        let notional = if req.quote_qty.is_zero() {
            reference.notional(req.qty)
        } else {
            req.quote_qty
        };
        spec.check_notional(notional, market)?;
        Ok(spec)
    }

    /// How much of which asset an order locks (`None`: a market order, which is paid at once).
    fn lock_for(&self, spec: &SpotSpec, req: &NewOrder) -> (String, Qty) {
        match req.side {
            Side::Sell => (spec.base.clone(), req.qty),
            Side::Buy => {
                let p = if req.kind.has_price() {
                    req.price
                } else {
                    req.stop
                };
                (spec.quote.clone(), to_qty(p.notional(req.qty)))
            }
        }
    }

    fn place_in(
        &mut self,
        acc: &mut SpotAccount,
        mut req: NewOrder,
        list_id: i64,
        now: u64,
    ) -> Result<Placed, ApiError> {
        let spec = self.check(acc, &req)?;
        let book = &self.books[&spec.symbol];
        if req.kind == Kind::Market && !req.quote_qty.is_zero() {
            let at = match req.side {
                Side::Buy => book.ask,
                Side::Sell => book.bid,
            };
            req.qty = req
                .quote_qty
                .qty_at(at, spec.step)
                .ok_or_else(|| filter("MARKET_LOT_SIZE"))?;
            spec.check_qty(req.qty, true)?;
        }
        let (lock_asset, lock) = if req.kind == Kind::Market {
            let need = match req.side {
                Side::Buy => (spec.quote.clone(), to_qty(book.ask.notional(req.qty))),
                Side::Sell => (spec.base.clone(), req.qty),
            };
            if acc.balance(&need.0).free < need.1 {
                return Err(insufficient());
            }
            (need.0, Qty::ZERO)
        } else {
            self.lock_for(&spec, &req)
        };
        if acc.balance(&lock_asset).free < lock {
            return Err(insufficient());
        }
        self.next_order += 1;
        let id = self.next_order;
        let working = !req.kind.is_stop();
        let order = SpotOrder {
            symbol: spec.symbol.clone(),
            order_id: id,
            client_order_id: req
                .client_id
                .clone()
                .unwrap_or_else(|| format!("sim_spot_{id}")),
            side: req.side,
            kind: req.kind,
            tif: req.tif,
            price: req.price,
            stop_price: req.stop,
            orig_qty: req.qty,
            executed: Qty::ZERO,
            cum_quote: Notional::ZERO,
            orig_quote_qty: req.quote_qty,
            status: Status::New,
            time: now,
            update_time: now,
            working,
            working_time: if working { now as i64 } else { -1 },
            list_id,
            lock,
            fills: Vec::new(),
        };
        if !lock.is_zero() {
            acc.adjust(&lock_asset, lock.neg(), lock, now);
        }
        acc.emit(order.execution_report("NEW", None, None, now));
        acc.orders.push(order);
        let idx = acc.orders.len() - 1;
        if working {
            self.take_liquidity(acc, idx, now);
        }
        Ok(Placed {
            order: acc.orders[idx].clone(),
            resp: req.resp,
        })
    }

    /// A working order takes the top of book when it can; IOC/FOK leftovers expire.
    fn take_liquidity(&mut self, acc: &mut SpotAccount, idx: usize, now: u64) {
        let o = &acc.orders[idx];
        let book = &self.books[&o.symbol];
        let at = match o.side {
            Side::Buy => book.ask,
            Side::Sell => book.bid,
        };
        let marketable = o.kind.is_market()
            || match o.side {
                Side::Buy => o.price >= at,
                Side::Sell => o.price <= at,
            };
        if marketable {
            let q = o.remaining();
            let step = self.books[&o.symbol].spec.step.units().max(1);
            // Equal parts on the step, the last taking the remainder; never a zero-quantity trade.
            let parts = i64::from(self.fill_parts.max(1))
                .min(q.units() / step)
                .max(1);
            let part = q.units() / parts / step * step;
            for i in 0..parts {
                let left = acc.orders[idx].remaining();
                let this = if i + 1 == parts {
                    left
                } else {
                    Qty::from_units(part)
                };
                if this.is_zero() {
                    break;
                }
                self.fill(acc, idx, this, at, false, now);
            }
        } else if o.tif != "GTC" {
            self.end(acc, idx, Status::Expired, "EXPIRED", None, now);
        }
    }

    /// Releases what an order still locks.
    fn release(&self, acc: &mut SpotAccount, idx: usize, now: u64) {
        let o = &mut acc.orders[idx];
        let lock = std::mem::replace(&mut o.lock, Qty::ZERO);
        if lock.is_zero() {
            return;
        }
        let spec = &self.books[&o.symbol].spec;
        let asset = match o.side {
            Side::Buy => spec.quote.clone(),
            Side::Sell => spec.base.clone(),
        };
        acc.adjust(&asset, lock, lock.neg(), now);
    }

    /// Ends an open order (cancel or expiry) and sends its executionReport.
    fn end(
        &mut self,
        acc: &mut SpotAccount,
        idx: usize,
        status: Status,
        exec: &str,
        cancel_id: Option<&str>,
        now: u64,
    ) {
        self.release(acc, idx, now);
        let o = &mut acc.orders[idx];
        o.status = status;
        o.update_time = now;
        acc.emit(acc.orders[idx].execution_report(exec, None, cancel_id, now));
    }

    /// The other legs of an order's OCO list expire; their shared lock moves to this leg.
    fn expire_siblings(&mut self, acc: &mut SpotAccount, idx: usize, now: u64) {
        let list_id = acc.orders[idx].list_id;
        if list_id < 0 {
            return;
        }
        let others: Vec<usize> = (0..acc.orders.len())
            .filter(|&i| {
                i != idx && acc.orders[i].list_id == list_id && acc.orders[i].status.is_open()
            })
            .collect();
        for i in others {
            let moved = std::mem::replace(&mut acc.orders[i].lock, Qty::ZERO);
            acc.orders[idx].lock += moved;
            self.end(acc, i, Status::Expired, "EXPIRED", None, now);
        }
        self.list_done(acc, list_id, now);
    }

    fn list_done(&self, acc: &mut SpotAccount, list_id: i64, now: u64) {
        let Some(l) = acc.lists.iter_mut().find(|l| l.id == list_id) else {
            return;
        };
        if l.done {
            return;
        }
        l.done = true;
        let l = l.clone();
        acc.emit(list_status(&l, acc, now));
    }

    /// Fills `qty` of an order at `price` and settles the balances and the commission.
    pub fn fill(
        &mut self,
        acc: &mut SpotAccount,
        idx: usize,
        qty: Qty,
        price: Price,
        maker: bool,
        now: u64,
    ) {
        if qty.units() <= 0 {
            return;
        }
        self.expire_siblings(acc, idx, now);
        let spec = self.books[&acc.orders[idx].symbol].spec.clone();
        let o = &acc.orders[idx];
        let last_fill = qty >= o.remaining();
        let quote = price.notional(qty);
        let rate = if maker { acc.maker } else { acc.taker };
        let side = o.side;
        // What the fill takes out of the order's lock (all of it on the last fill).
        let release = if last_fill {
            o.lock
        } else {
            match side {
                Side::Buy => to_qty(o.price.max(price).notional(qty)).min(o.lock),
                Side::Sell => qty.min(o.lock),
            }
        };
        let (pay_asset, pay, get_asset, get) = match side {
            Side::Buy => (spec.quote.clone(), to_qty(quote), spec.base.clone(), qty),
            Side::Sell => (spec.base.clone(), qty, spec.quote.clone(), to_qty(quote)),
        };
        // Paid from the released lock first, the rest from free (a market order has no lock).
        acc.adjust(&pay_asset, release - pay, release.neg(), now);
        // Commission: in BNB when on and affordable, else in the asset received.
        let mut fee_asset = get_asset.clone();
        let mut fee = rate_of(get, rate);
        if self.bnb_fees {
            let bnb_price = if spec.quote == "BNB" {
                Some(Price::ONE)
            } else {
                self.books
                    .get(&format!("BNB{}", spec.quote))
                    .map(|b| b.last)
            };
            if let Some(bp) = bnb_price {
                let in_bnb = div_price(quote.mul_rate(rate), bp);
                let bnb_free = acc.balance("BNB").free
                    + if get_asset == "BNB" { get } else { Qty::ZERO }
                    - if pay_asset == "BNB" { pay } else { Qty::ZERO };
                if !in_bnb.is_zero() && bnb_free >= in_bnb {
                    fee_asset = "BNB".into();
                    fee = in_bnb;
                }
            }
        }
        acc.adjust(&get_asset, get, Qty::ZERO, now);
        if !fee.is_zero() {
            acc.adjust(&fee_asset, fee.neg(), Qty::ZERO, now);
            *acc.fees.entry(fee_asset.clone()).or_default() += fee;
        }
        self.public_trade(&spec.symbol, price, qty, maker == (side == Side::Buy), now);
        let trade_id = self.next_trade;
        let o = &mut acc.orders[idx];
        o.lock -= release;
        o.executed += qty;
        o.cum_quote += quote;
        o.update_time = now;
        o.status = if last_fill {
            Status::Filled
        } else {
            Status::PartiallyFilled
        };
        let f = Fill {
            price,
            qty,
            commission: fee,
            commission_asset: fee_asset.clone(),
            trade_id,
        };
        o.fills.push(f.clone());
        acc.trades.push(SpotTrade {
            symbol: spec.symbol.clone(),
            id: trade_id,
            order_id: o.order_id,
            list_id: o.list_id,
            price,
            qty,
            commission: fee,
            commission_asset: fee_asset,
            time: now,
            is_buyer: side == Side::Buy,
            is_maker: maker,
        });
        acc.emit(acc.orders[idx].execution_report("TRADE", Some((&f, maker)), None, now));
    }

    /// Finds an order.
    pub fn find<'a>(acc: &'a SpotAccount, symbol: &str, r: &OrderRef) -> Option<&'a SpotOrder> {
        acc.orders
            .iter()
            .rev()
            .find(|o| o.symbol == symbol && r.matches(o))
    }

    /// Cancels an open order (an OCO leg cancels its whole list): `-2011 Unknown order sent.` otherwise.
    pub fn cancel(
        &mut self,
        account: &str,
        symbol: &str,
        r: &OrderRef,
        cancel_id: Option<&str>,
        now: u64,
    ) -> Result<Value, ApiError> {
        let mut acc = self.take(account);
        let v = self.cancel_in(&mut acc, symbol, r, cancel_id, now);
        acc.flush_position(now);
        self.put(account, acc);
        v
    }

    /// Cancels an open order of `acc` (and its OCO list): the cancel's answer, or `-2011`.
    fn cancel_in(
        &mut self,
        acc: &mut SpotAccount,
        symbol: &str,
        r: &OrderRef,
        cancel_id: Option<&str>,
        now: u64,
    ) -> Result<Value, ApiError> {
        let idx = acc
            .orders
            .iter()
            .rposition(|o| o.symbol == symbol && o.status.is_open() && r.matches(o));
        let Some(idx) = idx else {
            return Err(ApiError::unknown_order_cancel());
        };
        let cid = cancel_id
            .map(str::to_string)
            .unwrap_or_else(|| format!("sim_cancel_{}", acc.orders[idx].order_id));
        let list_id = acc.orders[idx].list_id;
        self.end(acc, idx, Status::Canceled, "CANCELED", Some(&cid), now);
        if list_id >= 0 {
            self.cancel_list_in(acc, list_id, now);
        }
        Ok(acc.orders[idx].cancel_json(&cid, now))
    }

    /// Cancels an order and places a new one on the same symbol (`POST /api/v3/order/cancelReplace`,
    /// `order.cancelReplace`), as Binance answers it:
    /// - both done: `{cancelResult: SUCCESS, newOrderResult: SUCCESS, cancelResponse, newOrderResponse}`;
    /// - one half failed (the cancel only under `ALLOW_FAILURE`): HTTP 409 `-2021 Order cancel-replace partially
    ///   failed.` with the same four fields in `data`, the failed half as `{code, msg}`;
    /// - the cancel failed under `STOP_ON_FAILURE` (`newOrderResult: NOT_ATTEMPTED`, `newOrderResponse: null`)
    ///   or both failed: HTTP 400 `-2022 Order cancel-replace failed.`.
    ///
    /// The new order's parameters and the symbol's filters are checked before anything is cancelled (a plain
    /// error then); its balance after the cancel, so the cancelled order's lock pays for it (a resting stop's
    /// base asset for the sell that replaces it). Both halves send their executionReports.
    pub fn cancel_replace(
        &mut self,
        account: &str,
        p: &Params,
        now: u64,
    ) -> Result<Value, ApiError> {
        let symbol = self.symbol_param(p)?.symbol;
        let mode = match p.required("cancelReplaceMode")? {
            "STOP_ON_FAILURE" => ReplaceMode::StopOnFailure,
            "ALLOW_FAILURE" => ReplaceMode::AllowFailure,
            _ => return Err(ApiError::mandatory("cancelReplaceMode")),
        };
        let target = match (
            p.opt_u64("cancelOrderId")?,
            p.opt("cancelOrigClientOrderId"),
        ) {
            (Some(id), Some(c)) => OrderRef::Both(id, c.to_string()),
            (Some(id), None) => OrderRef::Id(id),
            (None, Some(c)) => OrderRef::Client(c.to_string()),
            (None, None) => {
                return Err(mandatory_either("cancelOrderId", "cancelOrigClientOrderId"))
            }
        };
        let cancel_id = p.opt("cancelNewClientOrderId");
        if let Some(c) = cancel_id {
            check_client_id(c, "cancelNewClientOrderId")?;
        }
        let req = parse_new_order(p)?;
        self.check_filters(&req)?;
        let mut acc = self.take(account);
        let cancelled = self.cancel_in(&mut acc, &symbol, &target, cancel_id, now);
        let placed = if cancelled.is_err() && mode == ReplaceMode::StopOnFailure {
            None
        } else {
            Some(self.place_in(&mut acc, req, -1, now))
        };
        acc.flush_position(now);
        self.put(account, acc);
        let half = |r: &Result<Value, ApiError>| match r {
            Ok(v) => ("SUCCESS", v.clone()),
            Err(e) => ("FAILURE", json!({"code": e.code, "msg": e.msg})),
        };
        let (cancel_result, cancel_response) = half(&cancelled);
        let placed = placed.map(|r| r.map(|pl| pl.order.new_order_json(pl.resp, now)));
        let (new_result, new_response) = match &placed {
            None => ("NOT_ATTEMPTED", Value::Null),
            Some(r) => half(r),
        };
        let body = json!({"cancelResult": cancel_result, "newOrderResult": new_result,
                          "cancelResponse": cancel_response, "newOrderResponse": new_response});
        let (http, code, msg) = match (cancelled.is_ok(), matches!(placed, Some(Ok(_)))) {
            (true, true) => return Ok(body),
            (true, false) | (false, true) => (409, -2021, "Order cancel-replace partially failed."),
            (false, false) => (400, -2022, "Order cancel-replace failed."),
        };
        let mut e = ApiError::new(http, code, msg);
        e.data = Some(body);
        Err(e)
    }

    fn cancel_list_in(&mut self, acc: &mut SpotAccount, list_id: i64, now: u64) {
        let legs: Vec<usize> = (0..acc.orders.len())
            .filter(|&i| acc.orders[i].list_id == list_id && acc.orders[i].status.is_open())
            .collect();
        for i in legs {
            self.end(acc, i, Status::Canceled, "CANCELED", None, now);
        }
        self.list_done(acc, list_id, now);
    }

    /// Cancels every open order of a symbol (`DELETE /api/v3/openOrders`): `-2011` when there is none.
    pub fn cancel_all(&mut self, account: &str, symbol: &str, now: u64) -> Result<Value, ApiError> {
        let mut acc = self.take(account);
        let open: Vec<usize> = (0..acc.orders.len())
            .filter(|&i| acc.orders[i].symbol == symbol && acc.orders[i].status.is_open())
            .collect();
        if open.is_empty() {
            self.put(account, acc);
            return Err(ApiError::unknown_order_cancel());
        }
        let mut out = Vec::new();
        let mut lists = Vec::new();
        for i in open {
            let cid = format!("sim_cancel_{}", acc.orders[i].order_id);
            self.end(&mut acc, i, Status::Canceled, "CANCELED", Some(&cid), now);
            let l = acc.orders[i].list_id;
            if l >= 0 {
                if !lists.contains(&l) {
                    lists.push(l);
                }
            } else {
                out.push(acc.orders[i].cancel_json(&cid, now));
            }
        }
        for l in lists {
            self.list_done(&mut acc, l, now);
            if let Some(list) = acc.lists.iter().find(|x| x.id == l).cloned() {
                out.push(list_json(&list, &acc, now, true));
            }
        }
        acc.flush_position(now);
        self.put(account, acc);
        Ok(Value::Array(out))
    }

    /// Places an OCO list (`POST /api/v3/orderList/oco`): an above and a below leg on one quantity, sharing one
    /// lock. Legs are checked like single orders; the above leg must be priced above the below leg.
    pub fn place_oco(&mut self, account: &str, p: &Params, now: u64) -> Result<Value, ApiError> {
        let symbol = p.required("symbol")?.to_string();
        let side = match p.required("side")? {
            "BUY" => Side::Buy,
            "SELL" => Side::Sell,
            _ => return Err(ApiError::invalid_side()),
        };
        let qty: Qty = need(num(p, "quantity")?, "quantity")?;
        let list_client = p
            .opt("listClientOrderId")
            .map(str::to_string)
            .unwrap_or_else(|| format!("sim_list_{}", self.next_list + 1));
        check_client_id(&list_client, "listClientOrderId")?;
        let resp = match p.opt("newOrderRespType") {
            Some("RESULT") => RespType::Result,
            Some("FULL") => RespType::Full,
            _ => RespType::Ack,
        };
        let leg = |prefix: &str| -> Result<NewOrder, ApiError> {
            let ty = p.required(&format!("{prefix}Type"))?;
            // A leg is never a plain LIMIT or MARKET order.
            Kind::parse(ty)
                .filter(|k| *k != Kind::Limit && *k != Kind::Market)
                .ok_or_else(ApiError::invalid_order_type)?;
            let mut pairs: Vec<(String, String)> = vec![
                ("symbol".into(), symbol.clone()),
                ("side".into(), side.as_str().into()),
                ("type".into(), ty.into()),
                ("quantity".into(), p.required("quantity")?.into()),
            ];
            const LEG: [(&str, &str); 4] = [
                ("Price", "price"),
                ("StopPrice", "stopPrice"),
                ("TimeInForce", "timeInForce"),
                ("ClientOrderId", "newClientOrderId"),
            ];
            for (from, to) in LEG {
                if let Some(v) = p.opt(&format!("{prefix}{from}")) {
                    pairs.push((to.into(), v.into()));
                }
            }
            let mut r = parse_new_order(&Params::from_pairs(pairs)).map_err(|mut e| {
                // Name the leg's own parameter (`belowStopPrice`), not the single order's.
                for (from, to) in LEG {
                    e.msg = e
                        .msg
                        .replace(&format!("'{to}'"), &format!("'{prefix}{from}'"));
                }
                e
            })?;
            r.resp = resp;
            Ok(r)
        };
        let above = leg("above")?;
        let below = leg("below")?;
        let level = |r: &NewOrder| {
            if r.kind.is_stop() {
                r.stop
            } else {
                r.price
            }
        };
        if level(&above) <= level(&below) {
            return Err(rejected(
                "The relationship of the prices for the orders is not correct.",
            ));
        }
        let mut acc = self.take(account);
        let spec = match self.check(&acc, &above).and(self.check(&acc, &below)) {
            Ok(s) => s,
            Err(e) => {
                self.put(account, acc);
                return Err(e);
            }
        };
        // One lock for both legs: the base quantity of a sell, the dearer leg's cost of a buy.
        let (asset, a) = self.lock_for(&spec, &above);
        let (_, b) = self.lock_for(&spec, &below);
        let lock = a.max(b);
        if acc.balance(&asset).free < lock {
            self.put(account, acc);
            return Err(insufficient());
        }
        self.next_list += 1;
        let list_id = self.next_list;
        acc.adjust(&asset, lock.neg(), lock, now);
        let mut ids = Vec::new();
        for (i, mut req) in [below, above].into_iter().enumerate() {
            self.next_order += 1;
            let id = self.next_order;
            let working = !req.kind.is_stop();
            let o = SpotOrder {
                symbol: spec.symbol.clone(),
                order_id: id,
                client_order_id: req
                    .client_id
                    .take()
                    .unwrap_or_else(|| format!("sim_spot_{id}")),
                side,
                kind: req.kind,
                tif: req.tif,
                price: req.price,
                stop_price: req.stop,
                orig_qty: qty,
                executed: Qty::ZERO,
                cum_quote: Notional::ZERO,
                orig_quote_qty: Notional::ZERO,
                status: Status::New,
                time: now,
                update_time: now,
                working,
                working_time: if working { now as i64 } else { -1 },
                list_id,
                lock: if i == 0 { lock } else { Qty::ZERO },
                fills: Vec::new(),
            };
            acc.emit(o.execution_report("NEW", None, None, now));
            ids.push(o.order_id);
            acc.orders.push(o);
        }
        let list = OrderList {
            id: list_id,
            client_id: list_client,
            symbol: spec.symbol.clone(),
            orders: ids,
            done: false,
            time: now,
        };
        acc.emit(list_status(&list, &acc, now));
        acc.lists.push(list.clone());
        acc.flush_position(now);
        let v = list_json(&list, &acc, now, resp != RespType::Ack);
        self.put(account, acc);
        Ok(v)
    }

    /// Cancels an OCO list by `orderListId` or `listClientOrderId` (`DELETE /api/v3/orderList`).
    pub fn cancel_list(&mut self, account: &str, p: &Params, now: u64) -> Result<Value, ApiError> {
        let symbol = self.symbol_param(p)?.symbol;
        let by_id = p.opt_u64("orderListId")?;
        let by_client = p.opt("listClientOrderId");
        if by_id.is_none() && by_client.is_none() {
            return Err(mandatory_either("orderListId", "listClientOrderId"));
        }
        let mut acc = self.take(account);
        let found = acc
            .lists
            .iter()
            .find(|l| {
                l.symbol == symbol
                    && !l.done
                    && (by_id.is_some_and(|i| l.id == i as i64)
                        || by_client.is_some_and(|c| l.client_id == c))
            })
            .map(|l| l.id);
        let Some(list_id) = found else {
            self.put(account, acc);
            return Err(ApiError::new(400, -2011, "Unknown order list sent."));
        };
        self.cancel_list_in(&mut acc, list_id, now);
        acc.flush_position(now);
        let list = acc.lists.iter().find(|l| l.id == list_id).cloned();
        let v = list
            .map(|l| list_json(&l, &acc, now, true))
            .unwrap_or(Value::Null);
        self.put(account, acc);
        Ok(v)
    }

    /// Moves a symbol's market: the last price (and a trade there), and the top of book (`bid`/`ask`
    /// default to the last price). Stops trigger and resting orders fill as the new price says.
    pub fn set_price(
        &mut self,
        symbol: &str,
        last: Price,
        bid: Option<Price>,
        ask: Option<Price>,
        sizes: Option<(Qty, Qty)>,
        now: u64,
    ) -> Result<(), ApiError> {
        self.spec(symbol)?;
        if let Some(b) = self.books.get_mut(symbol) {
            b.bid = bid.unwrap_or(last);
            b.ask = ask.unwrap_or(last);
            if let Some(z) = sizes {
                b.sizes = z;
            }
            b.update_id += 1;
        }
        self.public_trade(symbol, last, Qty::from_int(1), false, now);
        self.publish_book(symbol, now);
        let names: Vec<String> = self.accounts.keys().cloned().collect();
        for name in names {
            let mut acc = self.take(&name);
            self.on_price(&mut acc, symbol, last, now);
            acc.flush_position(now);
            self.put(&name, acc);
        }
        Ok(())
    }

    fn on_price(&mut self, acc: &mut SpotAccount, symbol: &str, last: Price, now: u64) {
        for idx in 0..acc.orders.len() {
            let o = &acc.orders[idx];
            if o.symbol != symbol || !o.status.is_open() {
                continue;
            }
            if !o.working {
                if triggers(o.kind, o.side, o.stop_price, last) {
                    let o = &mut acc.orders[idx];
                    o.working = true;
                    o.working_time = now as i64;
                    o.update_time = now;
                    // The other OCO leg ends as soon as this one triggers.
                    self.expire_siblings(acc, idx, now);
                    self.take_liquidity(acc, idx, now);
                }
                continue;
            }
            let reached = match o.side {
                Side::Buy => last <= o.price,
                Side::Sell => last >= o.price,
            };
            if reached && o.kind.has_price() {
                let (q, p) = (o.remaining(), o.price);
                self.fill(acc, idx, q, p, true, now);
            }
        }
    }

    /// Fills part or all of an open order at its price as maker (admin: partial fills on demand).
    pub fn admin_fill(
        &mut self,
        account: &str,
        client_id: &str,
        qty: Option<Qty>,
        now: u64,
    ) -> Result<Value, ApiError> {
        let mut acc = self.take(account);
        let idx = acc
            .orders
            .iter()
            .rposition(|o| o.client_order_id == client_id && o.status.is_open() && o.working);
        let r = match idx {
            None => Err(ApiError::no_such_order()),
            Some(i) => {
                let rem = acc.orders[i].remaining();
                let q = qty.unwrap_or(rem).min(rem);
                let price = if acc.orders[i].kind.has_price() {
                    acc.orders[i].price
                } else {
                    self.books[&acc.orders[i].symbol].last
                };
                self.fill(&mut acc, i, q, price, true, now);
                Ok(acc.orders[i].query_json())
            }
        };
        acc.flush_position(now);
        self.put(account, acc);
        r
    }

    /// Sets an asset's free balance (admin), sending `balanceUpdate` and `outboundAccountPosition`.
    pub fn set_balance(&mut self, account: &str, asset: &str, free: Qty, now: u64) {
        let acc = self.account(account);
        let delta = free - acc.balance(asset).free;
        acc.adjust(asset, delta, Qty::ZERO, now);
        acc.emit(
            json!({"e": "balanceUpdate", "E": now, "a": asset, "d": s8(delta.units()), "T": now}),
        );
        acc.flush_position(now);
    }
}

/// A `listStatus` user data event.
pub fn list_status(l: &OrderList, acc: &SpotAccount, now: u64) -> Value {
    let (st, ost) = if l.done {
        ("ALL_DONE", "ALL_DONE")
    } else {
        ("EXEC_STARTED", "EXECUTING")
    };
    json!({"e": "listStatus", "E": now, "s": l.symbol, "g": l.id, "c": "OCO", "l": st, "L": ost, "r": "NONE",
           "C": l.client_id, "T": now,
           "O": legs(l, acc).iter().map(|o| json!({"s": o.symbol, "i": o.order_id, "c": o.client_order_id}))
               .collect::<Vec<_>>()})
}

fn legs<'a>(l: &OrderList, acc: &'a SpotAccount) -> Vec<&'a SpotOrder> {
    l.orders
        .iter()
        .filter_map(|id| acc.orders.iter().find(|o| o.order_id == *id))
        .collect()
}

/// An order list as `orderList/oco`, `DELETE orderList` and `GET orderList` answer (`reports`: with the
/// legs' order reports).
pub fn list_json(l: &OrderList, acc: &SpotAccount, now: u64, reports: bool) -> Value {
    let (st, ost) = if l.done {
        ("ALL_DONE", "ALL_DONE")
    } else {
        ("EXEC_STARTED", "EXECUTING")
    };
    let legs = legs(l, acc);
    let mut v = json!({"orderListId": l.id, "contingencyType": "OCO", "listStatusType": st,
        "listOrderStatus": ost, "listClientOrderId": l.client_id, "transactionTime": now, "symbol": l.symbol,
        "orders": legs.iter().map(|o| json!({"symbol": o.symbol, "orderId": o.order_id,
                                             "clientOrderId": o.client_order_id})).collect::<Vec<_>>()});
    if reports {
        v["orderReports"] = Value::Array(
            legs.iter()
                .map(|o| o.new_order_json(RespType::Result, now))
                .collect(),
        );
    }
    v
}

//! The exchange core: accounts, books and the matching of orders against the simulated market.
//!
//! Orders never match each other (each account trades against the market's synthetic depth), which is what a
//! single bot sees on a deep market. A taker walks the depth; a resting LIMIT order fills as a maker, at its own
//! price, when a new top of book moves through it (as much as the depth through its price holds, so a large
//! order fills partially).

use super::account::{fee, Account};
use super::auth::Params;
use super::error::ApiError;
use super::market::{Book, Quote};
use super::orders::{FillInfo, Order, OrderType, Side, Status, Tif};
use super::symbols::SymbolSpec;
use aegis_shared::num::{Notional, Price, Qty, Rate};
use std::collections::HashMap;

/// A validated new-order request (REST or WS API).
#[derive(Debug, Clone)]
pub struct NewOrder {
    /// Symbol.
    pub symbol: String,
    /// Side.
    pub side: Side,
    /// Type.
    pub otype: OrderType,
    /// Time in force.
    pub tif: Tif,
    /// Limit price.
    pub price: Option<Price>,
    /// Quantity.
    pub qty: Qty,
    /// Reduce-only.
    pub reduce_only: bool,
    /// Client id (generated when absent).
    pub client_id: Option<String>,
    /// `newOrderRespType=RESULT`.
    pub result: bool,
    /// `positionSide` as sent (`BOTH` when absent), judged against the account's position mode.
    pub position_side: PositionSide,
}

/// `positionSide` of an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PositionSide {
    /// `BOTH` (one-way mode; the default when absent).
    Both,
    /// `LONG` or `SHORT` (hedge mode).
    Hedged,
}

/// -4061: the order's `positionSide` does not fit the account's position mode.
fn position_side_mismatch() -> ApiError {
    ApiError::new(
        400,
        -4061,
        "Order's position side does not match user's setting.",
    )
}

fn client_id_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 36
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b':' | b'/' | b'_' | b'-'))
}

/// Looks a symbol parameter up: missing → -1102, unknown → -1121.
pub fn symbol_param<'a>(p: &Params, specs: &'a [SymbolSpec]) -> Result<&'a SymbolSpec, ApiError> {
    let s = p.required("symbol")?;
    specs
        .iter()
        .find(|x| x.symbol == s)
        .ok_or_else(ApiError::invalid_symbol)
}

/// Parses and validates new-order parameters against the symbol's filters (Binance's order of checks).
pub fn parse_new_order(p: &Params, specs: &[SymbolSpec]) -> Result<NewOrder, ApiError> {
    let spec = symbol_param(p, specs)?;
    let side = match p.required("side")? {
        "BUY" => Side::Buy,
        "SELL" => Side::Sell,
        _ => return Err(ApiError::invalid_side()),
    };
    let otype = match p.required("type")? {
        "LIMIT" => OrderType::Limit,
        "MARKET" => OrderType::Market,
        "STOP" | "STOP_MARKET" | "TAKE_PROFIT" | "TAKE_PROFIT_MARKET" | "TRAILING_STOP_MARKET" => {
            return Err(ApiError::algo_only())
        }
        _ => return Err(ApiError::invalid_order_type()),
    };
    let position_side = match p.opt("positionSide") {
        None | Some("BOTH") => PositionSide::Both,
        Some("LONG") | Some("SHORT") => PositionSide::Hedged,
        Some(_) => return Err(ApiError::mandatory("positionSide")),
    };
    let reduce_only = match p.opt("reduceOnly") {
        None | Some("false") | Some("FALSE") | Some("False") => false,
        Some("true") | Some("TRUE") | Some("True") => true,
        Some(_) => return Err(ApiError::mandatory("reduceOnly")),
    };
    let client_id = match p.opt("newClientOrderId") {
        None => None,
        Some(c) if client_id_ok(c) => Some(c.to_string()),
        Some(_) => {
            return Err(ApiError::illegal_chars(
                "newClientOrderId",
                "^[\\.A-Z\\:/a-z0-9_-]{1,36}$",
            ))
        }
    };
    let result = match p.opt("newOrderRespType") {
        None | Some("ACK") => false,
        Some("RESULT") => true,
        Some(_) => return Err(ApiError::mandatory("newOrderRespType")),
    };
    let (tif, price) = match otype {
        OrderType::Limit => {
            let tif = Tif::parse(p.required("timeInForce")?).ok_or_else(ApiError::invalid_tif)?;
            let qty_raw = p.required("quantity")?;
            let price = spec.check_price(p.required("price")?)?;
            let qty = spec.check_qty(qty_raw, false)?;
            return Ok(NewOrder {
                symbol: spec.symbol.clone(),
                side,
                otype,
                tif,
                price: Some(price),
                qty,
                reduce_only,
                client_id,
                result,
                position_side,
            });
        }
        OrderType::Market => {
            if p.opt("price").is_some() {
                return Err(ApiError::new(
                    400,
                    -1106,
                    "Parameter 'price' sent when not required.",
                ));
            }
            (Tif::Gtc, None)
        }
    };
    let qty = spec.check_qty(p.required("quantity")?, true)?;
    Ok(NewOrder {
        symbol: spec.symbol.clone(),
        side,
        otype,
        tif,
        price,
        qty,
        reduce_only,
        client_id,
        result,
        position_side,
    })
}

/// How an order is looked up: `orderId` or `origClientOrderId`.
#[derive(Debug, Clone)]
pub enum OrderRef {
    /// By exchange id.
    Id(u64),
    /// By client id.
    Client(String),
}

/// Reads `orderId` / `origClientOrderId` (-1102 when neither).
pub fn order_ref(p: &Params) -> Result<OrderRef, ApiError> {
    if let Some(id) = p.opt_u64("orderId")? {
        return Ok(OrderRef::Id(id));
    }
    match p.opt("origClientOrderId") {
        Some(c) => Ok(OrderRef::Client(c.to_string())),
        None => Err(ApiError::mandatory("orderId")),
    }
}

/// The result of placing an order.
#[derive(Debug, Clone)]
pub struct Placed {
    /// The order after matching.
    pub order: Order,
    /// What the ACK response shows.
    pub ack: Order,
}

/// The exchange state behind one lock.
pub struct Exchange {
    /// Symbols.
    pub specs: Vec<SymbolSpec>,
    /// Books by symbol.
    pub books: HashMap<String, Book>,
    /// Accounts by name.
    pub accounts: HashMap<String, Account>,
    /// Starting wallet of accounts created on first use.
    pub default_wallet: Notional,
    /// Maker fee rate.
    pub maker_fee: Rate,
    /// Taker fee rate.
    pub taker_fee: Rate,
    next_order_id: u64,
    trade_ids: HashMap<String, u64>,
    next_client_seq: u64,
    /// BNB fee mode: when set, commissions are charged in BNB at this BNBUSDT price (also served by
    /// `premiumIndex`); `None`: in USDT.
    pub bnb_price: Option<Price>,
    /// How many of the next new orders are accepted but left working (fault: a slow matching engine, as when
    /// Binance answers a market order `NEW` and reports its fills later on the user data stream).
    pub hold_next: u32,
    /// Last `algoId` handed out ([`super::algo`]).
    pub(super) next_algo_id: u64,
}

impl Exchange {
    /// A fresh exchange over `specs`.
    pub fn new(specs: Vec<SymbolSpec>, default_wallet: Notional) -> Self {
        let books = specs
            .iter()
            .map(|s| (s.symbol.clone(), Book::new(s.clone())))
            .collect();
        Self {
            specs,
            books,
            accounts: HashMap::new(),
            default_wallet,
            maker_fee: Rate::from_units(20_000),
            taker_fee: Rate::from_units(40_000),
            next_order_id: 8_389_765_000,
            trade_ids: HashMap::new(),
            next_client_seq: 0,
            bnb_price: None,
            hold_next: 0,
            next_algo_id: 1_000_000_000,
        }
    }

    /// The account, created with the default wallet on first use.
    pub fn account(&mut self, name: &str) -> &mut Account {
        let w = self.default_wallet;
        self.accounts
            .entry(name.to_string())
            .or_insert_with(|| Account::new(name, w))
    }

    /// Symbol names in exchangeInfo order.
    pub fn symbols(&self) -> Vec<String> {
        self.specs.iter().map(|s| s.symbol.clone()).collect()
    }

    /// Looks up an order.
    pub fn find(&self, account: &str, symbol: &str, r: &OrderRef) -> Option<&Order> {
        let acc = self.accounts.get(account)?;
        match r {
            OrderRef::Id(id) => acc.orders.get(id).filter(|o| o.symbol == symbol),
            // The most recent order with that client id.
            OrderRef::Client(c) => acc
                .orders
                .values()
                .rev()
                .find(|o| o.symbol == symbol && &o.client_id == c),
        }
    }

    /// Places an order for `account`.
    pub fn place(&mut self, account: &str, req: NewOrder, now: u64) -> Result<Placed, ApiError> {
        let spec = self
            .specs
            .iter()
            .find(|s| s.symbol == req.symbol)
            .cloned()
            .ok_or_else(ApiError::invalid_symbol)?;
        let book = self
            .books
            .get(&req.symbol)
            .ok_or_else(ApiError::invalid_symbol)?;
        let buy = req.side == Side::Buy;
        let mark = book.mark();
        let ref_price = match req.price {
            Some(p) => p,
            None => {
                if buy {
                    book.ask
                } else {
                    book.bid
                }
            }
        };
        if let (OrderType::Limit, Some(p)) = (req.otype, req.price) {
            spec.check_percent_price(p, mark, buy)?;
        }
        let books_snapshot_available;
        {
            let acc = self.account(account);
            // One-way accounts take BOTH only; hedge-mode accounts need LONG/SHORT (Binance: -4061 either way).
            // The simulator nets positions, so it refuses hedge-mode orders rather than pretend to keep two sides.
            match (acc.dual_side_position, req.position_side) {
                (false, PositionSide::Both) => {}
                (false, PositionSide::Hedged) | (true, PositionSide::Both) => {
                    return Err(position_side_mismatch())
                }
                (true, PositionSide::Hedged) => {
                    return Err(ApiError::new(
                        400,
                        -1000,
                        "binance-sim does not model hedge-mode positions; switch the account to one-way mode",
                    ))
                }
            }
            let pos = acc.positions.get(&req.symbol).copied().unwrap_or_default();
            if req.reduce_only && (pos.amt.is_zero() || pos.amt.signum() == req.side.sign()) {
                return Err(ApiError::reduce_only_rejected());
            }
            let notional = ref_price.notional(req.qty);
            if !req.reduce_only && notional < spec.min_notional {
                return Err(ApiError::min_notional(&spec.min_notional.to_string()));
            }
            if let Some(c) = &req.client_id {
                if acc.open_orders().any(|o| &o.client_id == c) {
                    return Err(ApiError::duplicate_client_id());
                }
            }
            if acc.open_orders().filter(|o| o.symbol == req.symbol).count() >= spec.max_orders {
                return Err(ApiError::too_many_open_orders());
            }
            // Margin is needed for the part that increases the position.
            let increasing = if pos.amt.is_zero() || pos.amt.signum() == req.side.sign() {
                req.qty
            } else {
                (req.qty - pos.amt.abs()).max(Qty::ZERO)
            };
            books_snapshot_available = if req.reduce_only || increasing.is_zero() {
                None
            } else {
                Some((
                    super::account::margin_of(
                        ref_price.notional(increasing),
                        acc.leverage_of(&req.symbol),
                    ),
                    increasing,
                ))
            };
        }
        if let Some((need, _)) = books_snapshot_available {
            let avail = self.accounts[account].summary(&self.books).available();
            if need > avail {
                return Err(ApiError::margin_insufficient());
            }
        }
        let book = &self.books[&req.symbol];
        let crosses = match req.price {
            None => true,
            Some(p) => {
                if buy {
                    p >= book.ask
                } else {
                    p <= book.bid
                }
            }
        };
        if req.tif == Tif::Gtx && crosses {
            return Err(ApiError::gtx_rejected());
        }
        let pos_amt = self.accounts[account]
            .positions
            .get(&req.symbol)
            .map(|p| p.amt)
            .unwrap_or_default();
        let executable = if req.reduce_only {
            req.qty.min(pos_amt.abs())
        } else {
            req.qty
        };
        if req.tif == Tif::Fok && (executable < req.qty || book.available(buy, req.price) < req.qty)
        {
            return Err(ApiError::fok_rejected());
        }

        self.next_order_id += 1;
        let client_id = match req.client_id {
            Some(c) => c,
            None => {
                self.next_client_seq += 1;
                format!("sim{}x{}", now, self.next_client_seq)
            }
        };
        let mut order = Order {
            order_id: self.next_order_id,
            client_id,
            symbol: req.symbol.clone(),
            side: req.side,
            otype: req.otype,
            tif: req.tif,
            price: req.price.unwrap_or(Price::ZERO),
            orig_qty: req.qty,
            executed: Qty::ZERO,
            cum_quote: Notional::ZERO,
            status: Status::New,
            reduce_only: req.reduce_only,
            time: now,
            update_time: now,
            price_decimals: spec.price_precision,
            qty_decimals: spec.qty_precision,
        };
        let ack = order.clone();
        self.account(account)
            .emit(order.trade_update("NEW", now, None));
        if self.hold_next > 0 {
            self.hold_next -= 1;
            self.account(account)
                .orders
                .insert(order.order_id, order.clone());
            return Ok(Placed { order, ack });
        }

        if crosses {
            let fills = self
                .books
                .get_mut(&req.symbol)
                .map(|b| b.take(buy, req.price, executable))
                .unwrap_or_default();
            for (p, q) in fills {
                self.fill(account, &mut order, p, q, false, now);
            }
        }
        if !order.remaining().is_zero()
            && (req.otype == OrderType::Market || req.tif == Tif::Ioc || req.tif == Tif::Fok)
        {
            order.status = Status::Expired;
            order.update_time = now;
            self.account(account)
                .emit(order.trade_update("EXPIRED", now, None));
        }
        self.account(account)
            .orders
            .insert(order.order_id, order.clone());
        Ok(Placed { order, ack })
    }

    /// Applies one execution to an order and the account, and publishes ORDER_TRADE_UPDATE + ACCOUNT_UPDATE.
    /// Executes `qty` of an order at `price` (liquidations; see [`super::funding::liquidate`]).
    pub fn fill_at(&mut self, account: &str, order: &mut Order, price: Price, qty: Qty, now: u64) {
        self.fill(account, order, price, qty, false, now);
    }

    fn fill(
        &mut self,
        account: &str,
        order: &mut Order,
        price: Price,
        qty: Qty,
        maker: bool,
        now: u64,
    ) {
        let tid = self
            .trade_ids
            .entry(order.symbol.clone())
            .or_insert(700_000_000);
        *tid += 1;
        let trade_id = *tid;
        let rate = if maker {
            self.maker_fee
        } else {
            self.taker_fee
        };
        let notional = price.notional(qty);
        let commission = fee(notional, rate);
        let bnb_price = self.bnb_price;
        let book = self.books[&order.symbol].clone();
        let acc = self.account(account);
        // In the BNB mode the commission is charged in BNB (its USDT amount at the BNB price, to 1e-8) and the
        // USDT wallet is not charged; the quote value the exchange books is that BNB amount at the same price.
        let (fee_amt, fee_asset, fee_quote) = match bnb_price {
            Some(bp) => {
                let bnb = super::funding::div_round(commission, bp);
                (bnb, "BNB", super::funding::value(bnb, bp))
            }
            None => (commission, "USDT", commission),
        };
        acc.totals.add_fill(fee_asset, fee_amt, fee_quote);
        let signed = Qty::from_units(qty.units() * order.side.sign());
        let realized = acc
            .positions
            .entry(order.symbol.clone())
            .or_default()
            .apply(signed, price, now);
        acc.totals.realized += realized;
        acc.wallet += realized
            - if fee_asset == "USDT" {
                commission
            } else {
                Notional::ZERO
            };
        acc.update_time = now;
        acc.record_trade(super::trades::TradeRecord {
            symbol: order.symbol.clone(),
            id: trade_id,
            order_id: order.order_id,
            side: order.side,
            price,
            qty,
            // What the stream said: in the BNB mode the commission is BNB (userTrades and income as on Binance).
            commission: fee_amt,
            commission_asset: fee_asset.into(),
            realized,
            maker,
            time: now,
            decimals: (order.price_decimals, order.qty_decimals),
        });
        order.executed += qty;
        order.cum_quote += notional;
        order.update_time = now;
        order.status = if order.remaining().is_zero() {
            Status::Filled
        } else {
            Status::PartiallyFilled
        };
        let info = FillInfo {
            trade_id,
            qty,
            price,
            fee: fee_amt,
            fee_asset,
            maker,
            realized,
        };
        acc.emit(order.trade_update("TRADE", now, Some(&info)));
        acc.emit(acc.account_update("ORDER", &order.symbol, &book, now));
    }

    /// Cancels an open order: -2011 when unknown or already final.
    pub fn cancel(
        &mut self,
        account: &str,
        symbol: &str,
        r: &OrderRef,
        now: u64,
    ) -> Result<Order, ApiError> {
        let id = self
            .find(account, symbol, r)
            .filter(|o| o.is_open())
            .map(|o| o.order_id)
            .ok_or_else(ApiError::unknown_order_cancel)?;
        let acc = self.account(account);
        let Some(o) = acc.orders.get_mut(&id) else {
            return Err(ApiError::unknown_order_cancel());
        };
        o.status = Status::Canceled;
        o.update_time = now;
        let o = o.clone();
        acc.emit(o.trade_update("CANCELED", now, None));
        Ok(o)
    }

    /// The open order of `account` with `client_id` (any symbol), for the admin API's held-order faults.
    fn open_by_client_id(&self, account: &str, client_id: &str) -> Option<Order> {
        self.accounts
            .get(account)?
            .open_orders()
            .find(|o| o.client_id == client_id)
            .cloned()
    }

    /// Fills `qty` (None: all that remains) of a working order at the top of the book as a taker, e.g. a held
    /// order ([`Exchange::hold_next`]) filling in parts. Errors when the order is not open or `qty` exceeds
    /// what remains.
    pub fn fill_open(
        &mut self,
        account: &str,
        client_id: &str,
        qty: Option<Qty>,
        now: u64,
    ) -> Result<Order, String> {
        let mut order = self
            .open_by_client_id(account, client_id)
            .ok_or_else(|| format!("no open order {client_id} on {account}"))?;
        let qty = qty.unwrap_or(order.remaining());
        if qty.is_zero() || qty > order.remaining() {
            return Err(format!("qty must be in (0, {}]", order.remaining()));
        }
        let book = &self.books[&order.symbol];
        let price = if order.side == Side::Buy {
            book.ask
        } else {
            book.bid
        };
        self.fill(account, &mut order, price, qty, false, now);
        self.account(account)
            .orders
            .insert(order.order_id, order.clone());
        Ok(order)
    }

    /// Ends a working order as `EXPIRED` (what Binance does to the unfilled rest of a market or IOC order).
    pub fn expire_open(
        &mut self,
        account: &str,
        client_id: &str,
        now: u64,
    ) -> Result<Order, String> {
        let mut order = self
            .open_by_client_id(account, client_id)
            .ok_or_else(|| format!("no open order {client_id} on {account}"))?;
        order.status = Status::Expired;
        order.update_time = now;
        let acc = self.account(account);
        acc.emit(order.trade_update("EXPIRED", now, None));
        acc.orders.insert(order.order_id, order.clone());
        Ok(order)
    }

    /// Cancels every open order of a symbol.
    pub fn cancel_all(&mut self, account: &str, symbol: &str, now: u64) -> usize {
        let ids: Vec<u64> = self
            .accounts
            .get(account)
            .map(|a| {
                a.open_orders()
                    .filter(|o| o.symbol == symbol)
                    .map(|o| o.order_id)
                    .collect()
            })
            .unwrap_or_default();
        for id in &ids {
            let _ = self.cancel(account, symbol, &OrderRef::Id(*id), now);
        }
        ids.len()
    }

    /// A new top of book: the book moves and resting orders it moved through fill as makers.
    pub fn on_quote(&mut self, q: &Quote, now: u64, from_admin: bool) -> bool {
        let Some(book) = self.books.get_mut(&q.symbol) else {
            return false;
        };
        if book.pinned && !from_admin {
            return false;
        }
        book.set_quote(q);
        self.match_resting(&q.symbol, now);
        // After the resting orders: a stop's market order then takes the book as it stands.
        self.trigger_algo(&q.symbol, now);
        true
    }

    /// Matches resting orders of `symbol` against the current book.
    pub fn match_resting(&mut self, symbol: &str, now: u64) {
        let mut names: Vec<String> = self.accounts.keys().cloned().collect();
        names.sort();
        for name in names {
            let ids: Vec<u64> = self.accounts[&name]
                .open_orders()
                .filter(|o| o.symbol == symbol && o.otype == OrderType::Limit)
                .map(|o| o.order_id)
                .collect();
            for id in ids {
                let Some(mut order) = self.accounts[&name].orders.get(&id).cloned() else {
                    continue;
                };
                let buy = order.side == Side::Buy;
                let book = &self.books[symbol];
                let through = if buy {
                    book.ask <= order.price
                } else {
                    book.bid >= order.price
                };
                if !through {
                    continue;
                }
                let mut want = order.remaining();
                if order.reduce_only {
                    let amt = self.accounts[&name]
                        .positions
                        .get(symbol)
                        .map(|p| p.amt)
                        .unwrap_or_default();
                    if amt.is_zero() || amt.signum() == order.side.sign() {
                        order.status = Status::Expired;
                        order.update_time = now;
                        let acc = self.account(&name);
                        acc.emit(order.trade_update("EXPIRED", now, None));
                        acc.orders.insert(id, order);
                        continue;
                    }
                    want = want.min(amt.abs());
                }
                let got = self
                    .books
                    .get_mut(symbol)
                    .map(|b| b.take_for_maker(buy, order.price, want))
                    .unwrap_or_default();
                if got.is_zero() {
                    continue;
                }
                let price = order.price;
                self.fill(&name, &mut order, price, got, true, now);
                self.account(&name).orders.insert(id, order);
            }
        }
    }

    /// Sets a symbol's leverage (1–125, else -4028).
    pub fn set_leverage(&mut self, account: &str, symbol: &str, lev: u32) -> Result<(), ApiError> {
        if !(1..=125).contains(&lev) {
            return Err(ApiError::bad_leverage());
        }
        self.account(account)
            .leverage
            .insert(symbol.to_string(), lev);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "alice";

    fn ex() -> Exchange {
        let mut e = Exchange::new(SymbolSpec::defaults(), Notional::from_int(10_000));
        quote(&mut e, "59999.9", "0.5", "60000", "0.5");
        e
    }
    fn quote(e: &mut Exchange, bid: &str, bq: &str, ask: &str, aq: &str) {
        e.on_quote(
            &Quote {
                symbol: "BTCUSDT".into(),
                bid: Price::parse(bid).unwrap(),
                bid_qty: Qty::parse(bq).unwrap(),
                ask: Price::parse(ask).unwrap(),
                ask_qty: Qty::parse(aq).unwrap(),
            },
            1,
            true,
        );
    }
    fn order(e: &mut Exchange, q: &str) -> Result<Placed, ApiError> {
        let p = Params::from_raw(&format!("symbol=BTCUSDT&{q}"), b"");
        let req = parse_new_order(&p, &e.specs)?;
        e.place(A, req, 10)
    }

    #[test]
    fn market_order_takes_depth_with_taker_fee() {
        let mut e = ex();
        let r = order(&mut e, "side=BUY&type=MARKET&quantity=0.6").unwrap();
        assert_eq!(r.order.status, Status::Filled);
        // 0.5 @ 60000 + 0.1 @ 60000.1 = 30000 + 6000.01
        assert_eq!(r.order.cum_quote, Notional::parse("36000.01").unwrap());
        let acc = &e.accounts[A];
        let fee = Notional::parse("36000.01")
            .unwrap()
            .mul_rate(Rate::parse("0.0004").unwrap());
        assert_eq!(acc.wallet, Notional::from_int(10_000) - fee);
        assert_eq!(acc.positions["BTCUSDT"].amt, Qty::parse("0.6").unwrap());
        assert_eq!(r.ack.status, Status::New);
    }

    #[test]
    fn limit_rests_then_fills_as_maker_when_market_moves_through_it() {
        let mut e = ex();
        let r = order(
            &mut e,
            "side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.01&price=59990",
        )
        .unwrap();
        assert_eq!(r.order.status, Status::New);
        assert_eq!(e.accounts[A].open_orders().count(), 1);
        // Ask falls to 59989.9 with 0.004 at the top: partial fill 0.004 + depth levels up to 59990 (0.1 at 59990).
        quote(&mut e, "59989.8", "0.5", "59989.9", "0.004");
        let o = e.accounts[A].orders[&r.order.order_id].clone();
        assert_eq!(o.status, Status::Filled);
        let fee = Price::parse("59990")
            .unwrap()
            .notional(Qty::parse("0.01").unwrap())
            .mul_rate(Rate::parse("0.0002").unwrap());
        assert_eq!(e.accounts[A].wallet, Notional::from_int(10_000) - fee);
    }

    #[test]
    fn resting_order_fills_partially_when_depth_is_thin() {
        let mut e = ex();
        let r = order(
            &mut e,
            "side=SELL&type=LIMIT&timeInForce=GTC&quantity=0.5&price=60010",
        )
        .unwrap();
        // Bid rises exactly to the order price with 0.2 there: only the top level is at/above 60010.
        quote(&mut e, "60010", "0.2", "60010.1", "1");
        let o = e.accounts[A].orders[&r.order.order_id].clone();
        assert_eq!(o.status, Status::PartiallyFilled);
        assert_eq!(o.executed, Qty::parse("0.2").unwrap());
        assert_eq!(
            e.accounts[A].positions["BTCUSDT"].amt,
            Qty::parse("-0.2").unwrap()
        );
    }

    #[test]
    fn ioc_fok_gtx_semantics() {
        let mut e = ex();
        // IOC at the ask takes the 0.5 at the top only, the rest expires.
        let r = order(
            &mut e,
            "side=BUY&type=LIMIT&timeInForce=IOC&quantity=0.8&price=60000",
        )
        .unwrap();
        assert_eq!(r.order.status, Status::Expired);
        assert_eq!(r.order.executed, Qty::parse("0.5").unwrap());
        // FOK that cannot be filled whole is rejected with -5021 and leaves no order.
        let n = e.accounts[A].orders.len();
        let err = order(
            &mut e,
            "side=BUY&type=LIMIT&timeInForce=FOK&quantity=0.1&price=60000",
        )
        .unwrap_err();
        assert_eq!(err.code, -5021);
        assert_eq!(e.accounts[A].orders.len(), n);
        let ok = order(
            &mut e,
            "side=BUY&type=LIMIT&timeInForce=FOK&quantity=0.1&price=60000.1",
        )
        .unwrap();
        assert_eq!(ok.order.status, Status::Filled);
        // GTX that would take: -5022; one that rests: accepted.
        assert_eq!(
            order(
                &mut e,
                "side=SELL&type=LIMIT&timeInForce=GTX&quantity=0.01&price=59999.9"
            )
            .unwrap_err()
            .code,
            -5022
        );
        assert_eq!(
            order(
                &mut e,
                "side=SELL&type=LIMIT&timeInForce=GTX&quantity=0.01&price=60100"
            )
            .unwrap()
            .order
            .status,
            Status::New
        );
    }

    #[test]
    fn reduce_only_rules() {
        let mut e = ex();
        assert_eq!(
            order(
                &mut e,
                "side=SELL&type=MARKET&quantity=0.01&reduceOnly=true"
            )
            .unwrap_err()
            .code,
            -2022
        );
        order(&mut e, "side=BUY&type=MARKET&quantity=0.01").unwrap();
        assert_eq!(
            order(&mut e, "side=BUY&type=MARKET&quantity=0.01&reduceOnly=true")
                .unwrap_err()
                .code,
            -2022
        );
        // Reduce-only larger than the position only closes it (remainder expires); min notional is waived.
        let r = order(
            &mut e,
            "side=SELL&type=MARKET&quantity=0.02&reduceOnly=true",
        )
        .unwrap();
        assert_eq!(r.order.executed, Qty::parse("0.01").unwrap());
        assert_eq!(r.order.status, Status::Expired);
        assert!(e.accounts[A].positions["BTCUSDT"].amt.is_zero());
    }

    #[test]
    fn margin_min_notional_duplicates_and_unknown_orders() {
        let mut e = ex();
        // 10000 USDT at 20x buys at most ~200000 notional: 4 BTC is 240000.
        assert_eq!(
            order(
                &mut e,
                "side=BUY&type=LIMIT&timeInForce=GTC&quantity=4&price=59000"
            )
            .unwrap_err()
            .code,
            -2019
        );
        assert_eq!(
            order(
                &mut e,
                "side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=59000"
            )
            .unwrap_err()
            .code,
            -4164
        );
        order(
            &mut e,
            "side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.01&price=59000&newClientOrderId=abc",
        )
        .unwrap();
        assert_eq!(
            order(&mut e, "side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.01&price=59000&newClientOrderId=abc").unwrap_err().code,
            -4116
        );
        let c = e
            .cancel(A, "BTCUSDT", &OrderRef::Client("abc".into()), 20)
            .unwrap();
        assert_eq!(c.status, Status::Canceled);
        assert_eq!(
            e.cancel(A, "BTCUSDT", &OrderRef::Client("abc".into()), 21)
                .unwrap_err()
                .code,
            -2011
        );
        // After the cancel the id is free again.
        order(
            &mut e,
            "side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.01&price=59000&newClientOrderId=abc",
        )
        .unwrap();
        assert!(e.find(A, "BTCUSDT", &OrderRef::Id(1)).is_none());
    }

    #[test]
    fn parse_errors() {
        let e = ex();
        let parse = |q: &str| {
            parse_new_order(&Params::from_raw(q, b""), &e.specs)
                .unwrap_err()
                .code
        };
        assert_eq!(parse("side=BUY"), -1102);
        assert_eq!(parse("symbol=XXXUSDT&side=BUY"), -1121);
        assert_eq!(parse("symbol=BTCUSDT&side=UP&type=LIMIT"), -1117);
        assert_eq!(parse("symbol=BTCUSDT&side=BUY&type=STOP_MARKET"), -4120);
        assert_eq!(
            parse("symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=1&price=1"),
            -1102
        );
        assert_eq!(
            parse("symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.0001"),
            -1111
        );
        assert_eq!(
            parse("symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.01&newClientOrderId=a%20b"),
            -1100
        );
    }
}

//! Accounts: USDT wallet, one-way positions per symbol, leverage, and the margin/PnL arithmetic shared by
//! `/fapi/v2/account`, `positionRisk` and the ACCOUNT_UPDATE events (one source, so they always agree).

use super::market::Book;
use super::orders::Order;
use super::symbols::fixed;
use aegis_shared::num::{Notional, Price, Qty, Rate};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use tokio::sync::broadcast;

/// Maintenance margin rate used for every symbol (Binance's first bracket for BTCUSDT).
pub const MAINT_RATE: Rate = Rate::from_units(400_000); // 0.004

/// A one-way (BOTH) position.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Position {
    /// Signed size: long > 0.
    pub amt: Qty,
    /// Average entry price (0 when flat).
    pub entry: Price,
    /// Realized PnL accumulated on this symbol (before fees).
    pub realized: Notional,
    /// Last change (ms).
    pub update_time: u64,
}

impl Position {
    /// Applies a fill of signed quantity `signed` at `price`; returns the realized PnL of the closed part.
    pub fn apply(&mut self, signed: Qty, price: Price, now: u64) -> Notional {
        self.update_time = now;
        let amt = self.amt.units();
        let s = signed.units();
        if amt == 0 || amt.signum() == s.signum() {
            let total = amt.abs() + s.abs();
            // Weighted average entry, exact in 128 bits, rounded to the nearest 1e-8.
            let num = self.entry.units() as i128 * amt.abs() as i128
                + price.units() as i128 * s.abs() as i128;
            let entry = (num + total as i128 / 2) / total as i128;
            self.entry = Price::from_units(entry as i64);
            self.amt = Qty::from_units(amt + s);
            return Notional::ZERO;
        }
        let close = s.abs().min(amt.abs());
        let closed = Qty::from_units(close * amt.signum());
        let pnl = closed.pnl(self.entry, price);
        self.realized += pnl;
        let new_amt = amt + s;
        self.amt = Qty::from_units(new_amt);
        if new_amt == 0 {
            self.entry = Price::ZERO;
        } else if new_amt.signum() != amt.signum() {
            self.entry = price;
        }
        pnl
    }

    /// Unrealized PnL at `mark`.
    pub fn unrealized(&self, mark: Price) -> Notional {
        self.amt.pnl(self.entry, mark)
    }
}

/// A trading account.
#[derive(Debug)]
pub struct Account {
    /// Name.
    pub name: String,
    /// USDT wallet balance (deposits + realized PnL − fees).
    pub wallet: Notional,
    /// Positions by symbol.
    pub positions: BTreeMap<String, Position>,
    /// Leverage by symbol (default 20).
    pub leverage: HashMap<String, u32>,
    /// All orders by id (open and final).
    pub orders: BTreeMap<u64, Order>,
    /// User data events (JSON text) for this account's streams.
    pub events: broadcast::Sender<Arc<str>>,
    /// Last change (ms).
    pub update_time: u64,
    /// Hedge mode (`GET/POST /fapi/v1/positionSide/dual`); false: one-way.
    pub dual_side_position: bool,
    /// Multi-assets margin mode (`GET/POST /fapi/v1/multiAssetsMargin`).
    pub multi_assets_margin: bool,
    /// The exchange's truth for reconciliation tests: commissions per asset, their quote value at fill time,
    /// funding and realized PnL (see [`super::funding`]).
    pub totals: super::funding::Totals,
    /// Executions and income as booked (`userTrades`, `income`; see [`super::trades`]).
    pub books: super::trades::Books,
    /// Algo (conditional) orders by `algoId`, any status ([`super::algo`]).
    pub algo_orders: BTreeMap<u64, super::algo::AlgoOrder>,
}

/// Default leverage of a symbol that was never set.
pub const DEFAULT_LEVERAGE: u32 = 20;

/// Margin figures of an account at current marks.
#[derive(Debug, Clone, Copy, Default)]
pub struct MarginSummary {
    /// Wallet balance.
    pub wallet: Notional,
    /// Sum of unrealized PnL.
    pub unrealized: Notional,
    /// Initial margin of positions.
    pub position_im: Notional,
    /// Initial margin of open orders.
    pub order_im: Notional,
    /// Maintenance margin.
    pub maint: Notional,
}

impl MarginSummary {
    /// wallet + unrealized.
    pub fn margin_balance(&self) -> Notional {
        self.wallet + self.unrealized
    }
    /// What new orders may use.
    pub fn available(&self) -> Notional {
        self.margin_balance() - self.position_im - self.order_im
    }
}

/// `notional / leverage`, rounded up to 1e-8.
pub fn margin_of(n: Notional, leverage: u32) -> Notional {
    let l = leverage.max(1) as i64;
    Notional::from_units((n.units().abs() + l - 1) / l)
}

/// Binance's maxNotionalValue for a leverage (a simplified bracket table).
pub fn max_notional(leverage: u32) -> &'static str {
    match leverage {
        101.. => "300000",
        51..=100 => "800000",
        21..=50 => "10000000",
        11..=20 => "20000000",
        _ => "50000000",
    }
}

fn s8(n: Notional) -> String {
    fixed(n.units(), 8)
}

impl Account {
    /// A new account with a wallet balance.
    pub fn new(name: &str, wallet: Notional) -> Self {
        let (events, _) = broadcast::channel(4096);
        Self {
            name: name.to_string(),
            wallet,
            positions: BTreeMap::new(),
            leverage: HashMap::new(),
            orders: BTreeMap::new(),
            events,
            update_time: 0,
            dual_side_position: false,
            multi_assets_margin: false,
            totals: Default::default(),
            books: Default::default(),
            algo_orders: BTreeMap::new(),
        }
    }

    /// Leverage of a symbol.
    pub fn leverage_of(&self, symbol: &str) -> u32 {
        self.leverage
            .get(symbol)
            .copied()
            .unwrap_or(DEFAULT_LEVERAGE)
    }

    /// Open orders, oldest first.
    pub fn open_orders(&self) -> impl Iterator<Item = &Order> {
        self.orders.values().filter(|o| o.is_open())
    }

    /// Initial margin held by open orders of a symbol.
    pub fn order_margin(&self, symbol: &str) -> Notional {
        let lev = self.leverage_of(symbol);
        self.open_orders()
            .filter(|o| o.symbol == symbol && !o.reduce_only)
            .fold(Notional::ZERO, |a, o| {
                a + margin_of(o.price.notional(o.remaining()), lev)
            })
    }

    /// The margin summary at the books' marks.
    pub fn summary(&self, books: &HashMap<String, Book>) -> MarginSummary {
        let mut m = MarginSummary {
            wallet: self.wallet,
            ..Default::default()
        };
        for (sym, p) in &self.positions {
            let Some(book) = books.get(sym) else { continue };
            let mark = book.mark();
            let notional = mark.notional(p.amt.abs());
            m.unrealized += p.unrealized(mark);
            m.position_im += margin_of(notional, self.leverage_of(sym));
            m.maint += notional.mul_rate(MAINT_RATE);
        }
        for sym in books.keys() {
            m.order_im += self.order_margin(sym);
        }
        m
    }

    /// `GET /fapi/v2/account`.
    pub fn account_json(&self, books: &HashMap<String, Book>, symbols: &[String]) -> Value {
        let m = self.summary(books);
        let positions: Vec<Value> = symbols
            .iter()
            .map(|sym| {
                let p = self.positions.get(sym).copied().unwrap_or_default();
                let lev = self.leverage_of(sym);
                let mark = books.get(sym).map(|b| b.mark()).unwrap_or_default();
                let notional = mark.notional(p.amt.abs());
                json!({
                    "symbol": sym,
                    "initialMargin": s8(margin_of(notional, lev) + self.order_margin(sym)),
                    "maintMargin": s8(notional.mul_rate(MAINT_RATE)),
                    "unrealizedProfit": s8(p.unrealized(mark)),
                    "positionInitialMargin": s8(margin_of(notional, lev)),
                    "openOrderInitialMargin": s8(self.order_margin(sym)),
                    "leverage": lev.to_string(),
                    "isolated": false,
                    "entryPrice": p.entry.to_string(),
                    "breakEvenPrice": p.entry.to_string(),
                    "maxNotional": max_notional(lev),
                    "bidNotional": "0",
                    "askNotional": "0",
                    "positionSide": "BOTH",
                    "positionAmt": p.amt.to_string(),
                    "updateTime": p.update_time,
                })
            })
            .collect();
        let avail = m.available();
        json!({
            "feeTier": 0,
            "feeBurn": false,
            "canTrade": true,
            "canDeposit": true,
            "canWithdraw": true,
            "updateTime": 0,
            "multiAssetsMargin": false,
            "tradeGroupId": -1,
            "totalInitialMargin": s8(m.position_im + m.order_im),
            "totalMaintMargin": s8(m.maint),
            "totalWalletBalance": s8(m.wallet),
            "totalUnrealizedProfit": s8(m.unrealized),
            "totalMarginBalance": s8(m.margin_balance()),
            "totalPositionInitialMargin": s8(m.position_im),
            "totalOpenOrderInitialMargin": s8(m.order_im),
            "totalCrossWalletBalance": s8(m.wallet),
            "totalCrossUnPnl": s8(m.unrealized),
            "availableBalance": s8(avail),
            "maxWithdrawAmount": s8(avail.max(Notional::ZERO).min(m.wallet)),
            "assets": [{
                "asset": "USDT",
                "walletBalance": s8(m.wallet),
                "unrealizedProfit": s8(m.unrealized),
                "marginBalance": s8(m.margin_balance()),
                "maintMargin": s8(m.maint),
                "initialMargin": s8(m.position_im + m.order_im),
                "positionInitialMargin": s8(m.position_im),
                "openOrderInitialMargin": s8(m.order_im),
                "crossWalletBalance": s8(m.wallet),
                "crossUnPnl": s8(m.unrealized),
                "availableBalance": s8(avail),
                "maxWithdrawAmount": s8(avail.max(Notional::ZERO).min(m.wallet)),
                "marginAvailable": true,
                "updateTime": self.update_time,
            }],
            "positions": positions,
        })
    }

    /// One `GET /fapi/v2/positionRisk` entry.
    pub fn position_risk_v2(&self, sym: &str, book: &Book) -> Value {
        let p = self.positions.get(sym).copied().unwrap_or_default();
        let lev = self.leverage_of(sym);
        let mark = book.mark();
        json!({
            "entryPrice": p.entry.to_string(),
            "breakEvenPrice": p.entry.to_string(),
            "marginType": "cross",
            "isAutoAddMargin": "false",
            "isolatedMargin": "0.00000000",
            "leverage": lev.to_string(),
            "liquidationPrice": "0",
            "markPrice": mark.to_string(),
            "maxNotionalValue": max_notional(lev),
            "positionAmt": p.amt.to_string(),
            "notional": s8(mark.notional(p.amt)),
            "isolatedWallet": "0",
            "symbol": sym,
            "unRealizedProfit": s8(p.unrealized(mark)),
            "positionSide": "BOTH",
            "updateTime": p.update_time,
        })
    }

    /// One `GET /fapi/v3/positionRisk` entry.
    pub fn position_risk_v3(&self, sym: &str, book: &Book) -> Value {
        let p = self.positions.get(sym).copied().unwrap_or_default();
        let lev = self.leverage_of(sym);
        let mark = book.mark();
        let notional = mark.notional(p.amt.abs());
        json!({
            "symbol": sym,
            "positionSide": "BOTH",
            "positionAmt": p.amt.to_string(),
            "entryPrice": p.entry.to_string(),
            "breakEvenPrice": p.entry.to_string(),
            "markPrice": mark.to_string(),
            "unRealizedProfit": s8(p.unrealized(mark)),
            "liquidationPrice": "0",
            "isolatedMargin": "0",
            "notional": s8(mark.notional(p.amt)),
            "marginAsset": "USDT",
            "isolatedWallet": "0",
            "initialMargin": s8(margin_of(notional, lev) + self.order_margin(sym)),
            "maintMargin": s8(notional.mul_rate(MAINT_RATE)),
            "positionInitialMargin": s8(margin_of(notional, lev)),
            "openOrderInitialMargin": s8(self.order_margin(sym)),
            "adl": 0,
            "bidNotional": "0",
            "askNotional": "0",
            "updateTime": p.update_time,
        })
    }

    /// Publishes a user data event to this account's streams.
    pub fn emit(&self, v: Value) {
        // No receiver is fine: nobody is listening.
        let _ = self.events.send(Arc::from(v.to_string()));
    }

    /// ACCOUNT_UPDATE for a change of `symbol` (only changed assets/positions are included, like Binance).
    pub fn account_update(&self, reason: &str, symbol: &str, book: &Book, now: u64) -> Value {
        let p = self.positions.get(symbol).copied().unwrap_or_default();
        json!({
            "e": "ACCOUNT_UPDATE", "E": now, "T": now,
            "a": {
                "m": reason,
                "B": [{"a": "USDT", "wb": s8(self.wallet), "cw": s8(self.wallet), "bc": "0"}],
                "P": [{
                    "s": symbol, "pa": p.amt.to_string(), "ep": p.entry.to_string(),
                    "bep": p.entry.to_string(), "cr": s8(p.realized),
                    "up": s8(p.unrealized(book.mark())), "mt": "cross", "iw": "0", "ps": "BOTH"
                }]
            }
        })
    }
}

/// Rounds `n × rate` (fees) — re-exported for the matching code.
pub fn fee(n: Notional, rate: Rate) -> Notional {
    n.mul_rate(rate)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Qty {
        Qty::parse(s).unwrap()
    }
    fn px(s: &str) -> Price {
        Price::parse(s).unwrap()
    }

    #[test]
    fn position_average_close_and_flip() {
        let mut p = Position::default();
        assert_eq!(p.apply(q("1"), px("100"), 1), Notional::ZERO);
        assert_eq!(p.apply(q("1"), px("110"), 2), Notional::ZERO);
        assert_eq!((p.amt, p.entry), (q("2"), px("105")));
        // Close half at 115: +10 on 1.
        assert_eq!(p.apply(q("-1"), px("115"), 3), Notional::from_int(10));
        assert_eq!((p.amt, p.entry), (q("1"), px("105")));
        // Sell 3 at 100: close 1 (−5), then short 2 at 100.
        assert_eq!(p.apply(q("-3"), px("100"), 4), Notional::from_int(-5));
        assert_eq!((p.amt, p.entry), (q("-2"), px("100")));
        assert_eq!(p.unrealized(px("90")), Notional::from_int(20));
        assert_eq!(p.apply(q("2"), px("90"), 5), Notional::from_int(20));
        assert_eq!((p.amt, p.entry), (Qty::ZERO, Price::ZERO));
        assert_eq!(p.realized, Notional::from_int(25));
    }

    #[test]
    fn margin_rounds_up() {
        assert_eq!(
            margin_of(Notional::from_units(101), 20),
            Notional::from_units(6)
        );
        assert_eq!(
            margin_of(Notional::from_int(1000), 20),
            Notional::from_int(50)
        );
    }
}

//! The account's own books of executions and income, and the two endpoints that read them:
//! `GET /fapi/v1/userTrades` (weight 5) and `GET /fapi/v1/income` (weight 30), both signed (USER_DATA).
//!
//! Every execution the matching engine applies is recorded here ([`Account::record_trade`]) with the same trade
//! id, price, quantity, commission and realized PnL as the `ORDER_TRADE_UPDATE` it published, so a client that
//! lost its stream can recover the fills by trade id, and a PnL reconciliation compares against what the
//! exchange booked, not against what the client believes. Each execution also books income records like Binance:
//! `COMMISSION` (negative = paid) always and `REALIZED_PNL` when it is not zero; `FUNDING_FEE` records are added
//! by the funding settlement through [`Account::record_income`].
//!
//! Query rules as Binance documents them:
//! - userTrades: `symbol` mandatory; `orderId`, `startTime`, `endTime`, `fromId`, `limit` (default 500, max 1000).
//!   `fromId` cannot be combined with `startTime`/`endTime`; with neither a time nor `fromId`, the last 7 days;
//!   a window may span at most 7 days. Ascending by id; with `fromId`, ids ≥ it.
//! - income: `symbol`, `incomeType`, `startTime`, `endTime`, `page` (from 1), `limit` (default 100, max 1000);
//!   without times, the last 7 days. Ascending by time.

use super::account::Account;
use super::auth::Params;
use super::error::ApiError;
use super::orders::Side;
use super::symbols::fixed;
use aegis_shared::num::{Notional, Price, Qty};
use serde_json::{json, Value};

/// Seven days in ms: the longest window either endpoint answers.
pub const WEEK_MS: u64 = 7 * 86_400_000;

/// One execution as the exchange booked it.
#[derive(Debug, Clone, PartialEq)]
pub struct TradeRecord {
    /// Symbol.
    pub symbol: String,
    /// Trade id (per symbol; the same id the `ORDER_TRADE_UPDATE` carried as `t`).
    pub id: u64,
    /// Order id.
    pub order_id: u64,
    /// Side of our order.
    pub side: Side,
    /// Price.
    pub price: Price,
    /// Quantity.
    pub qty: Qty,
    /// Commission (positive = paid), in `commission_asset`.
    pub commission: Notional,
    /// Commission asset.
    pub commission_asset: String,
    /// Realized PnL of this execution (before fees).
    pub realized: Notional,
    /// Maker execution.
    pub maker: bool,
    /// Time (ms).
    pub time: u64,
    /// Display decimals of price and quantity.
    pub decimals: (u32, u32),
}

impl TradeRecord {
    /// The `userTrades` element.
    pub fn to_json(&self) -> Value {
        let (pd, qd) = self.decimals;
        json!({
            "buyer": self.side == Side::Buy,
            "commission": fixed(self.commission.units(), 8),
            "commissionAsset": self.commission_asset,
            "id": self.id,
            "maker": self.maker,
            "orderId": self.order_id,
            "price": fixed(self.price.units(), pd),
            "qty": fixed(self.qty.units(), qd),
            "quoteQty": fixed(self.price.notional(self.qty).units(), 8),
            "realizedPnl": fixed(self.realized.units(), 8),
            "side": self.side.as_str(),
            "positionSide": "BOTH",
            "symbol": self.symbol,
            "time": self.time,
        })
    }
}

/// One income (cash flow) record.
#[derive(Debug, Clone, PartialEq)]
pub struct IncomeRecord {
    /// Symbol ("" for account-wide flows).
    pub symbol: String,
    /// `REALIZED_PNL`, `COMMISSION`, `FUNDING_FEE`, …
    pub income_type: &'static str,
    /// Amount (positive = received).
    pub income: Notional,
    /// Asset.
    pub asset: String,
    /// Transaction id (unique per account).
    pub tran_id: u64,
    /// The trade it belongs to, if any.
    pub trade_id: Option<u64>,
    /// Time (ms).
    pub time: u64,
}

impl IncomeRecord {
    /// The `income` element.
    pub fn to_json(&self) -> Value {
        json!({
            "symbol": self.symbol,
            "incomeType": self.income_type,
            "income": fixed(self.income.units(), 8),
            "asset": self.asset,
            "info": self.income_type,
            "time": self.time,
            "tranId": self.tran_id,
            "tradeId": self.trade_id.map(|t| t.to_string()).unwrap_or_default(),
        })
    }
}

/// The account's books (kept in [`Account::books`]).
#[derive(Debug, Clone, Default)]
pub struct Books {
    /// Executions, in booking order.
    pub trades: Vec<TradeRecord>,
    /// Income records, in booking order.
    pub income: Vec<IncomeRecord>,
    next_tran_id: u64,
}

impl Account {
    /// Books one execution and its COMMISSION / REALIZED_PNL income.
    pub fn record_trade(&mut self, t: TradeRecord) {
        if !t.realized.is_zero() {
            self.record_income(IncomeRecord {
                symbol: t.symbol.clone(),
                income_type: "REALIZED_PNL",
                income: t.realized,
                asset: "USDT".into(),
                tran_id: 0,
                trade_id: Some(t.id),
                time: t.time,
            });
        }
        self.record_income(IncomeRecord {
            symbol: t.symbol.clone(),
            income_type: "COMMISSION",
            income: Notional::ZERO - t.commission,
            asset: t.commission_asset.clone(),
            tran_id: 0,
            trade_id: Some(t.id),
            time: t.time,
        });
        self.books.trades.push(t);
    }

    /// Books one income record; its `tran_id` is assigned here.
    pub fn record_income(&mut self, mut r: IncomeRecord) {
        self.books.next_tran_id += 1;
        r.tran_id = 9_000_000_000 + self.books.next_tran_id;
        self.books.income.push(r);
    }
}

/// A `limit` parameter: default `def`, 1..=`max`, else -1102.
fn limit(p: &Params, def: u64, max: u64) -> Result<usize, ApiError> {
    match p.opt_u64("limit")? {
        None => Ok(def as usize),
        Some(n) if (1..=max).contains(&n) => Ok(n as usize),
        Some(_) => Err(ApiError::mandatory("limit")),
    }
}

/// The time window: (start, end) inclusive. Without either, the last 7 days; with one, 7 days from/to it.
fn window(p: &Params, now: u64) -> Result<Option<(u64, u64)>, ApiError> {
    let (s, e) = (p.opt_u64("startTime")?, p.opt_u64("endTime")?);
    Ok(match (s, e) {
        (None, None) => None,
        (Some(s), None) => Some((s, s.saturating_add(WEEK_MS).min(now.max(s)))),
        (None, Some(e)) => Some((e.saturating_sub(WEEK_MS), e)),
        (Some(s), Some(e)) => {
            if e < s || e - s > WEEK_MS {
                return Err(ApiError::new(400, -1127, "Lookup interval is too big."));
            }
            Some((s, e))
        }
    })
}

/// `GET /fapi/v1/userTrades` over `acc`'s books (`symbol` already validated by the caller).
pub fn user_trades(acc: &Account, symbol: &str, p: &Params, now: u64) -> Result<Value, ApiError> {
    let lim = limit(p, 500, 1000)?;
    let from_id = p.opt_u64("fromId")?;
    let order_id = p.opt_u64("orderId")?;
    let win = window(p, now)?;
    if from_id.is_some() && win.is_some() {
        return Err(ApiError::new(
            400,
            -1128,
            "Combination of optional parameters invalid.",
        ));
    }
    let win = match (from_id, win) {
        (Some(_), _) => None,
        (None, Some(w)) => Some(w),
        (None, None) => Some((now.saturating_sub(WEEK_MS), now)),
    };
    let mut out: Vec<&TradeRecord> = acc
        .books
        .trades
        .iter()
        .filter(|t| t.symbol == symbol)
        .filter(|t| order_id.is_none_or(|o| t.order_id == o))
        .filter(|t| from_id.is_none_or(|f| t.id >= f))
        .filter(|t| win.is_none_or(|(s, e)| t.time >= s && t.time <= e))
        .collect();
    out.sort_by_key(|t| t.id);
    // Binance returns the newest `limit` of a time window, the first `limit` from a fromId.
    let skip = if from_id.is_none() {
        out.len().saturating_sub(lim)
    } else {
        0
    };
    Ok(Value::Array(
        out.into_iter()
            .skip(skip)
            .take(lim)
            .map(TradeRecord::to_json)
            .collect(),
    ))
}

/// `GET /fapi/v1/income` over `acc`'s books.
pub fn income(acc: &Account, p: &Params, now: u64) -> Result<Value, ApiError> {
    let lim = limit(p, 100, 1000)?;
    let page = match p.opt_u64("page")? {
        None => 1,
        Some(0) => return Err(ApiError::mandatory("page")),
        Some(n) => n as usize,
    };
    let symbol = p.opt("symbol");
    let kind = p.opt("incomeType");
    let (s, e) = window(p, now)?.unwrap_or((now.saturating_sub(WEEK_MS), now));
    let rows: Vec<Value> = acc
        .books
        .income
        .iter()
        .filter(|r| symbol.is_none_or(|s| r.symbol == s))
        .filter(|r| kind.is_none_or(|k| r.income_type == k))
        .filter(|r| r.time >= s && r.time <= e)
        .skip((page - 1) * lim)
        .take(lim)
        .map(IncomeRecord::to_json)
        .collect();
    Ok(Value::Array(rows))
}

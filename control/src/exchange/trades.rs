//! The exchange's own books of executions and cash flows, typed: `GET /fapi/v1/userTrades` (weight 5, per
//! symbol) and `GET /fapi/v1/income` (weight 30). Both are signed (USER_DATA).
//!
//! Both endpoints answer at most 7 days per request, so a longer range is read in 7-day windows. Within a window
//! `userTrades` returns the *newest* `limit` trades, so a full page is continued by `fromId` (ids ascending);
//! `income` is continued by `page`. Amounts are kept as exact decimals; a row that does not parse exactly is an
//! error, never a guess.

use super::rest::{Base, RestClient, RestError};
use aegis_shared::{Notional, Price, Qty, Side, Symbol};
use serde_json::Value;

/// The longest window either endpoint answers (7 days, ms).
pub const WINDOW_MS: u64 = 7 * 86_400_000;
/// Most rows one request returns (Binance's maximum for both endpoints).
pub const PAGE_LIMIT: usize = 1000;

/// One execution as the exchange booked it (a `userTrades` element).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserTrade {
    /// Symbol.
    pub symbol: Symbol,
    /// Trade id (unique per symbol; the `t` of the `ORDER_TRADE_UPDATE`).
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
    pub commission_asset: Symbol,
    /// PnL this execution realized (before fees).
    pub realized_pnl: Notional,
    /// Maker execution.
    pub maker: bool,
    /// Time (ms).
    pub time: u64,
}

/// One cash flow (an `income` element).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomeRow {
    /// Symbol (`None` for account-wide flows such as transfers).
    pub symbol: Option<Symbol>,
    /// `REALIZED_PNL`, `COMMISSION`, `FUNDING_FEE`, `INSURANCE_CLEAR`, `TRANSFER`, ...
    pub income_type: String,
    /// Amount (received > 0).
    pub income: Notional,
    /// Asset.
    pub asset: Symbol,
    /// Transaction id.
    pub tran_id: u64,
    /// The trade it belongs to, if any.
    pub trade_id: Option<u64>,
    /// Time (ms).
    pub time: u64,
}

/// A page the exchange sent that does not read as documented.
#[derive(Debug, thiserror::Error)]
pub enum TradesError {
    /// The request failed.
    #[error(transparent)]
    Rest(#[from] RestError),
    /// A row is missing a field or holds an inexact number.
    #[error("{path}: unreadable row ({what}): {row}")]
    Unreadable {
        /// Endpoint.
        path: &'static str,
        /// Which field.
        what: &'static str,
        /// The row as sent (public trade data, no secret).
        row: String,
    },
}

fn u64_field(v: &Value, k: &str) -> Option<u64> {
    match v.get(k)? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn str_field<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get(k)?.as_str()
}

/// Parses one `userTrades` element; the error names the first unreadable field.
pub fn parse_user_trade(v: &Value) -> Result<UserTrade, &'static str> {
    let sym = |k| str_field(v, k).and_then(|s| Symbol::new(s).ok());
    Ok(UserTrade {
        symbol: sym("symbol").ok_or("symbol")?,
        id: u64_field(v, "id").ok_or("id")?,
        order_id: u64_field(v, "orderId").ok_or("orderId")?,
        side: match str_field(v, "side") {
            Some("BUY") => Side::Buy,
            Some("SELL") => Side::Sell,
            _ => return Err("side"),
        },
        price: str_field(v, "price")
            .and_then(|s| Price::parse(s).ok())
            .ok_or("price")?,
        qty: str_field(v, "qty")
            .and_then(|s| Qty::parse(s).ok())
            .ok_or("qty")?,
        commission: str_field(v, "commission")
            .and_then(|s| Notional::parse(s).ok())
            .ok_or("commission")?,
        commission_asset: sym("commissionAsset").ok_or("commissionAsset")?,
        realized_pnl: str_field(v, "realizedPnl")
            .and_then(|s| Notional::parse(s).ok())
            .ok_or("realizedPnl")?,
        maker: v.get("maker").and_then(Value::as_bool).unwrap_or(false),
        time: u64_field(v, "time").ok_or("time")?,
    })
}

/// Parses one `income` element; the error names the first unreadable field.
pub fn parse_income_row(v: &Value) -> Result<IncomeRow, &'static str> {
    Ok(IncomeRow {
        symbol: str_field(v, "symbol")
            .filter(|s| !s.is_empty())
            .map(|s| Symbol::new(s).map_err(|_| "symbol"))
            .transpose()?,
        income_type: str_field(v, "incomeType").ok_or("incomeType")?.to_string(),
        income: str_field(v, "income")
            .and_then(|s| Notional::parse(s).ok())
            .ok_or("income")?,
        asset: str_field(v, "asset")
            .and_then(|s| Symbol::new(s).ok())
            .ok_or("asset")?,
        tran_id: u64_field(v, "tranId").ok_or("tranId")?,
        trade_id: u64_field(v, "tradeId"),
        time: u64_field(v, "time").ok_or("time")?,
    })
}

fn rows<T>(
    v: Value,
    path: &'static str,
    parse: impl Fn(&Value) -> Result<T, &'static str>,
) -> Result<Vec<T>, TradesError> {
    let list = match v {
        Value::Array(a) => a,
        other => {
            return Err(TradesError::Unreadable {
                path,
                what: "not a list",
                row: other.to_string(),
            })
        }
    };
    list.iter()
        .map(|r| {
            parse(r).map_err(|what| TradesError::Unreadable {
                path,
                what,
                row: r.to_string(),
            })
        })
        .collect()
}

/// Every execution of `symbol` with `from_ms <= time <= to_ms`, ascending by id.
pub async fn user_trades(
    client: &RestClient,
    symbol: Symbol,
    from_ms: u64,
    to_ms: u64,
) -> Result<Vec<UserTrade>, TradesError> {
    const PATH: &str = "/fapi/v1/userTrades";
    let mut out: Vec<UserTrade> = Vec::new();
    let mut start = from_ms;
    while start <= to_ms {
        let end = to_ms.min(start.saturating_add(WINDOW_MS - 1));
        let params = [
            ("symbol", symbol.as_str().to_string()),
            ("startTime", start.to_string()),
            ("endTime", end.to_string()),
            ("limit", PAGE_LIMIT.to_string()),
        ];
        let mut page = rows(
            client.get_signed(Base::Fapi, PATH, &params).await?,
            PATH,
            parse_user_trade,
        )?;
        // A full window page is the newest PAGE_LIMIT only: read the window again by id, from its first trade.
        if page.len() >= PAGE_LIMIT {
            let mut from_id = lowest_id_from(client, symbol, start).await?;
            page.clear();
            loop {
                let batch = rows(
                    client
                        .get_signed(
                            Base::Fapi,
                            PATH,
                            &[
                                ("symbol", symbol.as_str().to_string()),
                                ("fromId", from_id.to_string()),
                                ("limit", PAGE_LIMIT.to_string()),
                            ],
                        )
                        .await?,
                    PATH,
                    parse_user_trade,
                )?;
                let full = batch.len() >= PAGE_LIMIT;
                let last = batch.iter().map(|t| t.id).max();
                let past_end = batch.iter().any(|t| t.time > end);
                page.extend(
                    batch
                        .into_iter()
                        .filter(|t| t.time >= start && t.time <= end),
                );
                match last {
                    Some(l) if full && !past_end => from_id = l + 1,
                    _ => break,
                }
            }
        }
        out.extend(page);
        if end == u64::MAX {
            break;
        }
        start = end + 1;
    }
    out.sort_by_key(|t| t.id);
    out.dedup_by_key(|t| t.id);
    Ok(out)
}

/// The first trade id at or after `start_ms`: ids ascend with time, so page by id from 0 until a trade at or
/// after `start_ms` shows (only used when one window holds more than [`PAGE_LIMIT`] trades).
async fn lowest_id_from(
    client: &RestClient,
    symbol: Symbol,
    start_ms: u64,
) -> Result<u64, TradesError> {
    const PATH: &str = "/fapi/v1/userTrades";
    let mut from_id = 0u64;
    loop {
        let batch = rows(
            client
                .get_signed(
                    Base::Fapi,
                    PATH,
                    &[
                        ("symbol", symbol.as_str().to_string()),
                        ("fromId", from_id.to_string()),
                        ("limit", PAGE_LIMIT.to_string()),
                    ],
                )
                .await?,
            PATH,
            parse_user_trade,
        )?;
        if let Some(t) = batch.iter().find(|t| t.time >= start_ms) {
            return Ok(t.id);
        }
        match batch.iter().map(|t| t.id).max() {
            Some(l) if batch.len() >= PAGE_LIMIT => from_id = l + 1,
            _ => return Ok(from_id),
        }
    }
}

/// Every cash flow with `from_ms <= time <= to_ms` (all symbols, all types), oldest first.
pub async fn income(
    client: &RestClient,
    from_ms: u64,
    to_ms: u64,
) -> Result<Vec<IncomeRow>, TradesError> {
    const PATH: &str = "/fapi/v1/income";
    let mut out = Vec::new();
    let mut start = from_ms;
    while start <= to_ms {
        let end = to_ms.min(start.saturating_add(WINDOW_MS - 1));
        let mut page_no = 1u32;
        loop {
            let params = [
                ("startTime", start.to_string()),
                ("endTime", end.to_string()),
                ("limit", PAGE_LIMIT.to_string()),
                ("page", page_no.to_string()),
            ];
            let page = rows(
                client.get_signed(Base::Fapi, PATH, &params).await?,
                PATH,
                parse_income_row,
            )?;
            let full = page.len() >= PAGE_LIMIT;
            out.extend(page);
            if !full {
                break;
            }
            page_no += 1;
        }
        if end == u64::MAX {
            break;
        }
        start = end + 1;
    }
    // Pages of a window that grew while being read may overlap: a transaction counts once.
    out.sort_by_key(|r: &IncomeRow| (r.time, r.tran_id));
    out.dedup_by(|a, b| a.tran_id == b.tran_id && a.income_type == b.income_type);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_parse_exactly_or_not_at_all() {
        let v: Value = serde_json::from_str(
            r#"{"buyer":false,"commission":"-0.07819010","commissionAsset":"USDT","id":698759,"maker":false,
                "orderId":25851813,"price":"7819.01","qty":"0.002","quoteQty":"15.63802","realizedPnl":"-0.91539999",
                "side":"SELL","positionSide":"SHORT","symbol":"BTCUSDT","time":1569514978020}"#,
        )
        .unwrap();
        let t = parse_user_trade(&v).unwrap();
        assert_eq!(t.id, 698759);
        assert_eq!(t.side, Side::Sell);
        assert_eq!(t.realized_pnl, Notional::parse("-0.91539999").unwrap());
        assert_eq!(t.commission_asset.as_str(), "USDT");
        let mut bad = v.clone();
        bad["price"] = "7.8e3".into();
        assert_eq!(parse_user_trade(&bad), Err("price"));
        let i: Value = serde_json::from_str(
            r#"{"symbol":"","incomeType":"TRANSFER","income":"-0.37500000","asset":"USDT","info":"TRANSFER",
                "time":1570608000000,"tranId":9689322392,"tradeId":""}"#,
        )
        .unwrap();
        let r = parse_income_row(&i).unwrap();
        assert_eq!(r.symbol, None);
        assert_eq!(r.trade_id, None);
        assert_eq!(r.income, Notional::parse("-0.375").unwrap());
    }
}

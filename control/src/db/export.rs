//! Tax records: one CSV row per fill.
//!
//! Columns: `time_utc,symbol,side,price,qty,notional,fee,fee_asset,realized_pnl,client_order_id,exchange_order_id,
//! trade_id,split_part,mode,intent,liquidity,market`. `split_part` tells apart the rows of one exchange trade booked
//! to several modes (a liquidation, a manual order; 0 otherwise); `market` is `futures` or `spot` (separate
//! Binance venues with their own trade ids): `(symbol, trade_id, split_part, market)` is the fill's key. `market`
//! is the last column so that tools reading the columns before it by position keep working. Decimals are the
//! database's exact NUMERIC values as text (trailing zeros trimmed), never floats; `realized_pnl` is before fees,
//! in the quote asset; times are RFC 3339 UTC with ms. Rows are ordered by time, then by journal order.

use super::DbError;
use futures_util::{pin_mut, TryStreamExt};
use time::OffsetDateTime;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio_postgres::GenericClient;

/// The CSV header line (without the line feed).
pub const HEADER: &str =
    "time_utc,symbol,side,price,qty,notional,fee,fee_asset,realized_pnl,client_order_id,\
exchange_order_id,trade_id,split_part,mode,intent,liquidity,market";

/// Columns per row (the fields of [`HEADER`]).
const COLUMNS: usize = 17;

const SQL: &str = "SELECT to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), symbol, side, \
     trim_scale(price)::text, trim_scale(qty)::text, trim_scale(price * qty)::text, trim_scale(fee)::text, \
     fee_asset, trim_scale(realized_pnl)::text, client_id, exchange_order_id::text, trade_id::text, split_part::text, mode, intent, \
     liquidity, market \
     FROM fills WHERE ts >= $1 AND ts < $2 ORDER BY ts, journal_offset";

/// Quotes a field when CSV needs it (RFC 4180). Our values (symbols, ids, decimals) never need it; free text
/// might one day.
fn field(out: &mut String, v: &str) {
    if v.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&v.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(v);
    }
}

/// Writes every fill with `from <= time < to` as CSV (header first) to `out`, streaming. Returns the number of
/// fills written.
pub async fn export_trades_csv<C, W>(
    client: &C,
    from: OffsetDateTime,
    to: OffsetDateTime,
    out: &mut W,
) -> Result<u64, DbError>
where
    C: GenericClient,
    W: AsyncWrite + Unpin,
{
    if to < from {
        return Err(DbError::Refused(format!(
            "export range is empty: --to ({to}) is before --from ({from})"
        )));
    }
    let stream = client.query_raw(SQL, [&from, &to]).await?;
    pin_mut!(stream);
    let mut line = String::with_capacity(256);
    line.push_str(HEADER);
    line.push('\n');
    out.write_all(line.as_bytes()).await?;
    let mut n = 0u64;
    while let Some(row) = stream.try_next().await? {
        line.clear();
        for i in 0..COLUMNS {
            if i > 0 {
                line.push(',');
            }
            field(&mut line, row.get::<_, &str>(i));
        }
        line.push('\n');
        out.write_all(line.as_bytes()).await?;
        n += 1;
    }
    out.flush().await?;
    Ok(n)
}

//! Funding for paper trading on the real market (`TRADING_MODE=paper FEED=binance`): a paper position held
//! across a settlement pays or receives what Binance would settle, so a paper run's PnL is the one the same
//! positions would have had live (a swing or position mode holds for days: three settlements a day).
//!
//! Off the engine thread, on the control runtime: `GET /fapi/v1/premiumIndex?symbol=` (public, weight 1) every
//! [`POLL`] per symbol, and once more just after each `nextFundingTime`. The rate settled at `T` is the
//! `lastFundingRate` read before `T` (the period's rate); the mark is the first one read after `T` (within a
//! few hundred milliseconds of Binance's own). The engine books it with [`Command::PaperFunding`]: each mode's
//! position pays `qty × mark × rate`; the settlement time is its identity, so nothing is booked twice. A
//! settlement while the bot was stopped is not booked: paper positions exist only while the bot runs.

use super::rest::{Base, RestClient};
use aegis_shared::num::{Price, Rate};
use aegis_shared::{Command, Symbol};
use crossbeam_channel::Sender;
use serde_json::Value;
use std::time::Duration;

/// How often each symbol's rate and next settlement time are read.
pub const POLL: Duration = Duration::from_secs(10);
/// How long after a settlement time the next read is made (the new period's answer carries the later time).
const AFTER_SETTLEMENT: Duration = Duration::from_millis(200);

/// One symbol's `premiumIndex` in engine types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Premium {
    /// `markPrice`.
    pub mark: Price,
    /// `lastFundingRate`: the current period's rate.
    pub rate: Rate,
    /// `nextFundingTime`, ms.
    pub next_ms: u64,
}

/// Reads a `premiumIndex` answer; `None` when a field is missing or not an exact decimal.
pub fn parse(v: &Value) -> Option<Premium> {
    let s = |k: &str| v.get(k).and_then(Value::as_str);
    Some(Premium {
        mark: Price::parse(s("markPrice")?).ok()?,
        rate: Rate::parse(s("lastFundingRate")?).ok()?,
        next_ms: v.get("nextFundingTime").and_then(Value::as_u64)?,
    })
}

/// What one symbol's new answer settles, given the period seen before (pure; see the module docs): the
/// settlement at the earlier period's time, at its rate and the new mark, once the exchange's answer shows a
/// later period (its clock decides, not ours).
pub fn settles(before: Option<Premium>, now: Premium) -> Option<(u64, Rate, Price)> {
    let b = before?;
    (now.next_ms > b.next_ms).then_some((b.next_ms, b.rate, now.mark))
}

/// Starts the poller for `symbols`; it ends when the engine is gone (its command queue closed).
pub fn spawn(
    rt: &tokio::runtime::Handle,
    client: RestClient,
    symbols: Vec<Symbol>,
    commands: Sender<Command>,
) {
    rt.spawn(async move {
        let mut seen: Vec<Option<Premium>> = vec![None; symbols.len()];
        loop {
            for (i, sym) in symbols.iter().enumerate() {
                let answer = client
                    .request(
                        reqwest::Method::GET,
                        Base::Fapi,
                        "/fapi/v1/premiumIndex",
                        &[("symbol", sym.to_string())],
                        super::rest::Auth::None,
                    )
                    .await;
                let Some(p) = answer.ok().as_ref().and_then(parse) else {
                    // A failed read only delays the settlement to the next read that works.
                    continue;
                };
                if let Some((ts_ms, rate, mark)) = settles(seen[i], p) {
                    let c = Command::PaperFunding {
                        symbol: *sym,
                        rate,
                        mark,
                        ts_ms,
                    };
                    if commands.send(c).is_err() {
                        return;
                    }
                    tracing::info!(symbol = %sym, %rate, %mark, "paper funding settled at {ts_ms} (rate {rate}, mark {mark})");
                }
                seen[i] = Some(p);
            }
            let now = super::rest::wall_ms();
            let next = seen
                .iter()
                .flatten()
                .map(|p| p.next_ms.saturating_sub(now) + AFTER_SETTLEMENT.as_millis() as u64)
                .min()
                .map_or(POLL, |ms| POLL.min(Duration::from_millis(ms)));
            tokio::time::sleep(next).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(mark: &str, rate: &str, next_ms: u64) -> Premium {
        Premium {
            mark: Price::parse(mark).unwrap(),
            rate: Rate::parse(rate).unwrap(),
            next_ms,
        }
    }

    #[test]
    fn the_period_settles_at_its_own_rate_once_the_next_period_shows() {
        let v = serde_json::json!({"symbol":"BTCUSDT","markPrice":"60000.10000000","lastFundingRate":"0.00010000",
            "nextFundingTime": 1_000u64, "time": 1});
        assert_eq!(parse(&v), Some(p("60000.1", "0.0001", 1000)));
        assert_eq!(parse(&serde_json::json!({"markPrice": "1"})), None);
        let a = p("100", "0.0001", 1000);
        // First read, or the same period again: nothing to settle.
        assert_eq!(settles(None, a), None);
        assert_eq!(settles(Some(a), a), None);
        // The next period appears after the settlement time: the old rate at the new mark.
        let b = p("101", "-0.0002", 2000);
        assert_eq!(
            settles(Some(a), b),
            Some((
                1000,
                Rate::parse("0.0001").unwrap(),
                Price::parse("101").unwrap()
            ))
        );
    }
}

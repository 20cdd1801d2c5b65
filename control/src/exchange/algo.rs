//! Our protective stop as an algo order on Binance: the `clientAlgoId` prefix and the shape of a stop, which
//! both the stop manager ([`super::stops`]) and the reconciliation ([`super::reconcile::algo_plan`]) judge.
//! Kept apart from both so the reconciliation does not depend on the stop manager that uses it. Also what the
//! user data stream hears of our stops ([`AlgoInbox`]), handed from its thread to the manager.

use aegis_shared::num::{Price, Qty};
use aegis_shared::Symbol;
use serde_json::Value;
use std::sync::Mutex;

/// Prefix of our `clientAlgoId`s (not `ag…`: the triggered order carries this id, and must not pass for an
/// engine order).
pub const PREFIX: &str = "aegsl-";

/// One stop as it should rest (or rests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// Closing side: SELL for a long.
    pub sell: bool,
    /// Net quantity.
    pub qty: Qty,
    /// Trigger (mark price).
    pub trigger: Price,
}

/// A stop of ours on the exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resting {
    /// `clientAlgoId`.
    pub client_algo_id: String,
    /// What it is.
    pub target: Target,
}

/// Most `ALGO_UPDATE`s held for the manager (it drains them every [`TICK`]; without a manager, in paper
/// mode, nothing reads them and the oldest go first).
const INBOX_CAP: usize = 1024;

/// What the user data stream heard of one of our stops: an `ALGO_UPDATE` with a final status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlgoNews {
    /// `caid`.
    pub client_algo_id: String,
    /// `s`.
    pub symbol: Symbol,
    /// `X`: `CANCELED`, `EXPIRED`, `REJECTED` or `FINISHED`.
    pub status: String,
    /// `rm`: why (Binance's reject reason; may be empty).
    pub reason: String,
}

/// `ALGO_UPDATE`s from the user data stream thread to the manager task.
#[derive(Debug, Default)]
pub struct AlgoInbox {
    news: Mutex<Vec<AlgoNews>>,
}

impl AlgoInbox {
    /// Keeps the event if it is final news of one of our stops ([`AlgoNews`]); anything else is ignored.
    pub fn hear(&self, event: &Value) {
        let Some(n) = parse_algo_update(event) else {
            return;
        };
        let mut q = self.news.lock().unwrap_or_else(|p| p.into_inner());
        if q.len() == INBOX_CAP {
            q.remove(0);
        }
        q.push(n);
    }

    /// Everything heard since the last call, oldest first.
    pub fn take(&self) -> Vec<AlgoNews> {
        std::mem::take(&mut *self.news.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Parses an `ALGO_UPDATE`: `Some` only for one of our stops ([`PREFIX`]) with a final status.
pub fn parse_algo_update(v: &Value) -> Option<AlgoNews> {
    let o = v.get("o")?;
    let id = o.get("caid")?.as_str()?;
    let status = o.get("X")?.as_str()?;
    if !id.starts_with(PREFIX)
        || !matches!(status, "CANCELED" | "EXPIRED" | "REJECTED" | "FINISHED")
    {
        return None;
    }
    Some(AlgoNews {
        client_algo_id: id.to_string(),
        symbol: Symbol::new(o.get("s")?.as_str()?).ok()?,
        status: status.to_string(),
        reason: o
            .get("rm")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn algo_updates_of_our_stops_with_a_final_status_are_news_nothing_else() {
        let ev = |caid: &str, st: &str| {
            json!({"e": "ALGO_UPDATE", "T": 1, "E": 1, "o": {"caid": caid, "aid": 7, "at": "CONDITIONAL",
                   "o": "STOP_MARKET", "s": "BTCUSDT", "S": "SELL", "X": st, "rm": "Reduce Only reject"}})
        };
        let inbox = AlgoInbox::default();
        for st in ["NEW", "TRIGGERING", "TRIGGERED"] {
            inbox.hear(&ev("aegsl-BTCUSDT-5", st));
        }
        inbox.hear(&ev("someone-else", "CANCELED"));
        inbox.hear(&json!({"e": "ALGO_UPDATE", "o": {"caid": "aegsl-BTCUSDT-5"}}));
        assert!(inbox.take().is_empty());
        for st in ["CANCELED", "EXPIRED", "REJECTED", "FINISHED"] {
            inbox.hear(&ev("aegsl-BTCUSDT-5", st));
        }
        let news = inbox.take();
        assert_eq!(news.len(), 4);
        assert_eq!(news[2].status, "REJECTED");
        assert_eq!(news[2].reason, "Reduce Only reject");
        assert_eq!(news[2].symbol.as_str(), "BTCUSDT");
        assert!(inbox.take().is_empty(), "taken once");
        for i in 0..INBOX_CAP + 5 {
            inbox.hear(&ev(&format!("aegsl-BTCUSDT-{i}"), "CANCELED"));
        }
        let news = inbox.take();
        assert_eq!(news.len(), INBOX_CAP);
        assert_eq!(
            news[0].client_algo_id, "aegsl-BTCUSDT-5",
            "the oldest went first"
        );
    }
}

//! User data streams: listenKeys (create / keep alive / close, 60-minute validity, -1125 once gone) and the
//! streams on `/ws/<listenKey>` and `/private/ws?listenKey=…` that carry ORDER_TRADE_UPDATE, ACCOUNT_UPDATE and
//! listenKeyExpired.

use super::conns::{serve, Ctrl, Role};
use super::error::ApiError;
use super::streams::{js, obj};
use super::{lock, Sim};
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use rand::distributions::Alphanumeric;
use rand::Rng;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

#[derive(Debug, Clone)]
struct Entry {
    account: String,
    expires_at: u64,
}

/// Live listenKeys.
#[derive(Debug, Default)]
pub struct ListenKeys {
    keys: HashMap<String, Entry>,
}

impl ListenKeys {
    /// `POST`: the account's live key extended, or a new one.
    pub fn create(&mut self, account: &str, now: u64, ttl: u64) -> String {
        if let Some((k, e)) = self
            .keys
            .iter_mut()
            .find(|(_, e)| e.account == account && e.expires_at > now)
        {
            e.expires_at = now + ttl;
            return k.clone();
        }
        let key: String = rand::thread_rng()
            .sample_iter(&Alphanumeric)
            .take(64)
            .map(char::from)
            .collect();
        self.keys.insert(
            key.clone(),
            Entry {
                account: account.to_string(),
                expires_at: now + ttl,
            },
        );
        key
    }

    /// `PUT`: extends the account's key (the given one, if named); -1125 when there is none.
    pub fn keepalive(
        &mut self,
        account: &str,
        key: Option<&str>,
        now: u64,
        ttl: u64,
    ) -> Result<String, ApiError> {
        let (k, e) = self
            .keys
            .iter_mut()
            .find(|(k, e)| {
                e.account == account && e.expires_at > now && key.is_none_or(|x| x == k.as_str())
            })
            .ok_or_else(ApiError::listen_key_missing)?;
        e.expires_at = now + ttl;
        Ok(k.clone())
    }

    /// `DELETE`: removes the account's key(s); returns them.
    pub fn close(&mut self, account: &str) -> Vec<String> {
        let gone: Vec<String> = self
            .keys
            .iter()
            .filter(|(_, e)| e.account == account)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &gone {
            self.keys.remove(k);
        }
        gone
    }

    /// The account of a live key.
    pub fn account_of(&self, key: &str, now: u64) -> Option<String> {
        self.keys
            .get(key)
            .filter(|e| e.expires_at > now)
            .map(|e| e.account.clone())
    }

    /// Removes and returns keys that expired by `now`.
    pub fn take_expired(&mut self, now: u64) -> Vec<String> {
        let gone: Vec<String> = self
            .keys
            .iter()
            .filter(|(_, e)| e.expires_at <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &gone {
            self.keys.remove(k);
        }
        gone
    }

    /// Forces keys to expire now: one key, an account's keys, or all (admin).
    pub fn expire(&mut self, key: Option<&str>, account: Option<&str>) -> Vec<String> {
        let gone: Vec<String> = self
            .keys
            .iter()
            .filter(|(k, e)| {
                key.is_none_or(|x| x == k.as_str()) && account.is_none_or(|a| a == e.account)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in &gone {
            self.keys.remove(k);
        }
        gone
    }
}

/// Tells the streams of expired keys (`listenKeyExpired`, then a close frame).
pub fn notify_expired(sim: &Sim, keys: &[String], now: u64) {
    for k in keys {
        // Binance sends E as a string in this event.
        let ev = obj(&[
            ("e", js("listenKeyExpired")),
            ("E", js(now.to_string())),
            ("listenKey", js(k)),
        ]);
        sim.conns.send_listen_key(k, Ctrl::Send(ev));
        sim.conns
            .send_listen_key(k, Ctrl::Close(1000, "listenKey expired".into()));
    }
}

/// Expires what is due (called by the ticker).
pub fn expire_due(sim: &Sim) {
    let now = sim.now();
    let gone = lock(&sim.listen_keys).take_expired(now);
    notify_expired(sim, &gone, now);
}

/// Upgrades to a user data stream, or answers -1125 for an unknown/expired key.
pub fn upgrade_user(
    sim: Arc<Sim>,
    ws: WebSocketUpgrade,
    path: String,
    listen_key: String,
) -> Response {
    let now = sim.now();
    let Some(account) = lock(&sim.listen_keys).account_of(&listen_key, now) else {
        let e = ApiError::listen_key_missing();
        return (axum::http::StatusCode::BAD_REQUEST, axum::Json(e.body())).into_response();
    };
    let events = lock(&sim.ex).account(&account).events.subscribe();
    ws.on_upgrade(move |socket| serve(sim, socket, path, Role::User { listen_key, events }))
}

/// Query of `/private/ws?listenKey=`.
#[derive(Debug, serde::Deserialize)]
pub struct PrivateQuery {
    #[serde(rename = "listenKey")]
    listen_key: Option<String>,
}

/// `/private/ws?listenKey=…`.
pub async fn private_ws(
    State(sim): State<Arc<Sim>>,
    Query(q): Query<PrivateQuery>,
    ws: WebSocketUpgrade,
) -> Response {
    let key = q.listen_key.unwrap_or_default();
    upgrade_user(sim, ws, "/private/ws".into(), key)
}

/// The configured listenKey validity.
pub fn ttl(sim: &Sim) -> u64 {
    sim.settings.listen_key_ttl_ms.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_extend_expire() {
        let mut l = ListenKeys::default();
        let k = l.create("a", 0, 100);
        assert_eq!(k.len(), 64);
        assert_eq!(l.create("a", 50, 100), k, "live key is returned again");
        assert_eq!(l.account_of(&k, 149).as_deref(), Some("a"));
        assert_eq!(l.keepalive("a", Some(&k), 140, 100).unwrap(), k);
        assert!(l.take_expired(239).is_empty());
        assert_eq!(l.take_expired(240), vec![k.clone()]);
        assert_eq!(l.keepalive("a", None, 241, 100).unwrap_err().code, -1125);
        let k2 = l.create("a", 300, 100);
        assert_ne!(k2, k);
        assert_eq!(l.expire(None, Some("a")), vec![k2]);
    }
}

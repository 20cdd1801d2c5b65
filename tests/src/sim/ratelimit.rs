//! Binance's rate limits: REQUEST_WEIGHT per minute per IP, ORDERS per 10 s and per minute per account, fixed
//! windows on the server clock. Exceeding one answers 429 with `Retry-After`; continuing to send after 429s
//! gets the IP banned (418) for a while.

use super::error::ApiError;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::IpAddr;

/// Configurable limits (tests use small ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Limits {
    /// REQUEST_WEIGHT per minute (Binance: 2400).
    pub weight_per_minute: u32,
    /// ORDERS per 10 s (Binance: 300).
    pub orders_per_10s: u32,
    /// ORDERS per minute (Binance: 1200).
    pub orders_per_minute: u32,
    /// How many 429s an IP may collect before it is banned.
    pub ban_after_429s: u32,
    /// Ban length in seconds (Binance: 2 min to 3 days).
    pub ban_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            weight_per_minute: 2400,
            orders_per_10s: 300,
            orders_per_minute: 1200,
            ban_after_429s: 3,
            ban_secs: 120,
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Window {
    start: u64,
    count: u32,
}

impl Window {
    /// Moves to the window holding `now`; true when it changed.
    fn roll(&mut self, now: u64, len: u64) -> bool {
        let start = now - now % len;
        if start != self.start {
            self.start = start;
            self.count = 0;
            return true;
        }
        false
    }
    fn retry_after(&self, now: u64, len: u64) -> u64 {
        (self.start + len).saturating_sub(now).div_ceil(1000).max(1)
    }
}

#[derive(Debug, Default)]
struct IpState {
    weight: Window,
    strikes: u32,
    banned_until: u64,
}

#[derive(Debug, Default)]
struct AccountState {
    ten_s: Window,
    minute: Window,
}

/// Counters after a request, for the response headers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// X-MBX-USED-WEIGHT-1M.
    pub weight_1m: u32,
    /// X-MBX-ORDER-COUNT-10S (order requests only).
    pub orders_10s: Option<u32>,
    /// X-MBX-ORDER-COUNT-1M (order requests only).
    pub orders_1m: Option<u32>,
}

/// All counters.
#[derive(Debug, Default)]
pub struct RateLimiter {
    /// Current limits.
    pub limits: Limits,
    ips: HashMap<IpAddr, IpState>,
    accounts: HashMap<String, AccountState>,
    refused: HashMap<String, u32>,
    /// 429 and 418 answers (REST and WebSocket API alike) since the last reset.
    answered_429: u32,
    answered_418: u32,
}

const MINUTE: u64 = 60_000;
const TEN_S: u64 = 10_000;

impl RateLimiter {
    /// A limiter with `limits`.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            ..Default::default()
        }
    }

    /// Forgets all counters and bans.
    pub fn reset(&mut self) {
        self.ips.clear();
        self.accounts.clear();
        self.refused.clear();
        self.answered_429 = 0;
        self.answered_418 = 0;
    }

    /// (429s, 418s) answered since the last reset, whichever path refused: a test of several clients on one
    /// IP proves none of them was refused or banned.
    pub fn refusals_by_status(&self) -> (u32, u32) {
        (self.answered_429, self.answered_418)
    }

    fn count<T>(&mut self, r: &Result<T, (ApiError, Usage)>) {
        match r {
            Err((e, _)) if e.http == 418 => self.answered_418 += 1,
            Err((e, _)) if e.http == 429 => self.answered_429 += 1,
            _ => {}
        }
    }

    /// Counts a 429/418 answered to `api_key`, so a test can prove a client slowed down before the limit.
    pub fn note_refused(&mut self, api_key: &str) {
        *self.refused.entry(api_key.to_string()).or_default() += 1;
    }

    /// 429/418 answers per API key since the last reset.
    pub fn refused(&self) -> &HashMap<String, u32> {
        &self.refused
    }

    /// Checks the ban and charges `weight` to the IP. On failure the usage is still reported.
    pub fn charge_ip(
        &mut self,
        ip: IpAddr,
        weight: u32,
        now: u64,
    ) -> Result<Usage, (ApiError, Usage)> {
        let r = self.charge_ip_uncounted(ip, weight, now);
        self.count(&r);
        r
    }

    fn charge_ip_uncounted(
        &mut self,
        ip: IpAddr,
        weight: u32,
        now: u64,
    ) -> Result<Usage, (ApiError, Usage)> {
        let limits = self.limits;
        let st = self.ips.entry(ip).or_default();
        if st.weight.roll(now, MINUTE) {
            // A new minute forgives earlier 429s.
            st.strikes = 0;
        }
        if st.banned_until > now {
            let retry = (st.banned_until - now).div_ceil(1000);
            return Err((
                ApiError::banned(st.banned_until, retry),
                Usage {
                    weight_1m: st.weight.count,
                    ..Default::default()
                },
            ));
        }
        if st.weight.count + weight > limits.weight_per_minute {
            let usage = Usage {
                weight_1m: st.weight.count,
                ..Default::default()
            };
            let retry = st.weight.retry_after(now, MINUTE);
            let e = Self::strike(st, limits, now, || {
                ApiError::too_many_requests(limits.weight_per_minute, retry)
            });
            return Err((e, usage));
        }
        st.weight.count += weight;
        Ok(Usage {
            weight_1m: st.weight.count,
            ..Default::default()
        })
    }

    fn strike(
        st: &mut IpState,
        limits: Limits,
        now: u64,
        e: impl FnOnce() -> ApiError,
    ) -> ApiError {
        st.strikes += 1;
        if st.strikes > limits.ban_after_429s {
            st.banned_until = now + limits.ban_secs * 1000;
            st.strikes = 0;
            return ApiError::banned(st.banned_until, limits.ban_secs);
        }
        e()
    }

    /// Charges one order to the account (and counts a 429 against the IP when refused).
    pub fn charge_order(
        &mut self,
        ip: IpAddr,
        account: &str,
        now: u64,
        usage: Usage,
    ) -> Result<Usage, (ApiError, Usage)> {
        let r = self.charge_order_uncounted(ip, account, now, usage);
        self.count(&r);
        r
    }

    fn charge_order_uncounted(
        &mut self,
        ip: IpAddr,
        account: &str,
        now: u64,
        mut usage: Usage,
    ) -> Result<Usage, (ApiError, Usage)> {
        let limits = self.limits;
        let st = self.accounts.entry(account.to_string()).or_default();
        st.ten_s.roll(now, TEN_S);
        st.minute.roll(now, MINUTE);
        usage.orders_10s = Some(st.ten_s.count);
        usage.orders_1m = Some(st.minute.count);
        let refused = if st.ten_s.count >= limits.orders_per_10s {
            Some(ApiError::too_many_orders(
                limits.orders_per_10s,
                "10 SECOND",
                st.ten_s.retry_after(now, TEN_S),
            ))
        } else if st.minute.count >= limits.orders_per_minute {
            Some(ApiError::too_many_orders(
                limits.orders_per_minute,
                "1 MINUTE",
                st.minute.retry_after(now, MINUTE),
            ))
        } else {
            None
        };
        if let Some(e) = refused {
            let ipst = self.ips.entry(ip).or_default();
            let e = Self::strike(ipst, limits, now, || e);
            return Err((e, usage));
        }
        st.ten_s.count += 1;
        st.minute.count += 1;
        usage.orders_10s = Some(st.ten_s.count);
        usage.orders_1m = Some(st.minute.count);
        Ok(usage)
    }

    /// The `rateLimits` array of a WebSocket API response.
    pub fn ws_rate_limits(&self, usage: &Usage) -> Value {
        let mut v = vec![
            json!({"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE",
            "intervalNum": 1, "limit": self.limits.weight_per_minute, "count": usage.weight_1m}),
        ];
        if let (Some(a), Some(b)) = (usage.orders_10s, usage.orders_1m) {
            v.push(
                json!({"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10,
                "limit": self.limits.orders_per_10s, "count": a}),
            );
            v.push(
                json!({"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1,
                "limit": self.limits.orders_per_minute, "count": b}),
            );
        }
        Value::Array(v)
    }

    /// The exchangeInfo `rateLimits`.
    pub fn exchange_info_limits(&self) -> Value {
        json!([
            {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": self.limits.weight_per_minute},
            {"rateLimitType": "ORDERS", "interval": "MINUTE", "intervalNum": 1, "limit": self.limits.orders_per_minute},
            {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": self.limits.orders_per_10s}
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip() -> IpAddr {
        "127.0.0.1".parse().unwrap()
    }

    #[test]
    fn weight_window_429_then_ban() {
        let mut r = RateLimiter::new(Limits {
            weight_per_minute: 10,
            ban_after_429s: 2,
            ban_secs: 30,
            ..Default::default()
        });
        let t0 = 60_000 * 100 + 15_000;
        for i in 1..=2 {
            assert_eq!(r.charge_ip(ip(), 5, t0).unwrap().weight_1m, 5 * i);
        }
        let (e, u) = r.charge_ip(ip(), 1, t0 + 1).unwrap_err();
        assert_eq!((e.http, e.code, e.retry_after), (429, -1003, Some(45)));
        assert_eq!(u.weight_1m, 10);
        assert_eq!(r.charge_ip(ip(), 1, t0 + 2).unwrap_err().0.http, 429);
        let (e, _) = r.charge_ip(ip(), 1, t0 + 3).unwrap_err();
        assert_eq!((e.http, e.retry_after), (418, Some(30)));
        // Banned until the ban ends, even once the minute's weight would allow it again.
        let (e, _) = r.charge_ip(ip(), 1, t0 + 20_000).unwrap_err();
        assert_eq!((e.http, e.retry_after), (418, Some(11)));
        assert_eq!(r.charge_ip(ip(), 1, t0 + 30_002).unwrap_err().0.http, 418);
        // After the ban the minute's weight is still used up (429), the next minute is free.
        assert_eq!(r.charge_ip(ip(), 1, t0 + 30_004).unwrap_err().0.http, 429);
        assert_eq!(r.charge_ip(ip(), 1, t0 + 45_001).unwrap().weight_1m, 1);
        // Every refusal is counted by its status, for the fleet test's "0 × 429, 0 × 418".
        assert_eq!(r.refusals_by_status(), (3, 3));
        r.reset();
        assert_eq!(r.refusals_by_status(), (0, 0));
    }

    #[test]
    fn order_windows() {
        let mut r = RateLimiter::new(Limits {
            orders_per_10s: 2,
            orders_per_minute: 3,
            ban_after_429s: 100,
            ..Default::default()
        });
        let t0 = 60_000 * 7;
        let u = |r: &mut RateLimiter, t| r.charge_order(ip(), "a", t, Usage::default());
        assert_eq!(u(&mut r, t0).unwrap().orders_10s, Some(1));
        assert_eq!(u(&mut r, t0).unwrap().orders_1m, Some(2));
        let (e, _) = u(&mut r, t0 + 1).unwrap_err();
        assert_eq!((e.http, e.code), (429, -1015));
        assert_eq!(e.retry_after, Some(10));
        assert_eq!(u(&mut r, t0 + 10_000).unwrap().orders_1m, Some(3));
        assert!(u(&mut r, t0 + 20_000)
            .unwrap_err()
            .0
            .msg
            .contains("1 MINUTE"));
        // Another account has its own counters.
        assert!(r
            .charge_order(ip(), "b", t0 + 20_000, Usage::default())
            .is_ok());
    }
}

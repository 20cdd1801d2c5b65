//! Abuse limits (security guide §7.3): login lockout with exponential backoff per IP and per account, a per-IP
//! request rate limit (governor's GCRA), and the `DASHBOARD_ALLOWED_IPS` allowlist.

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use ipnet::IpNet;
use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Login lockout settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginLimits {
    /// Failed logins for one account before it is locked (`LOGIN_MAX_FAILURES`, default 5).
    pub max_per_account: u32,
    /// Failed logins from one IP before it is locked (`LOGIN_MAX_FAILURES_PER_IP`, default 20).
    pub max_per_ip: u32,
    /// First lockout (`LOGIN_LOCKOUT`, default 30 s); each further failure doubles it.
    pub base_lockout: Duration,
    /// Longest lockout (1 h).
    pub max_lockout: Duration,
    /// Failures older than this are forgotten (15 min).
    pub window: Duration,
}

impl Default for LoginLimits {
    fn default() -> Self {
        Self {
            max_per_account: 5,
            max_per_ip: 20,
            base_lockout: Duration::from_secs(30),
            max_lockout: Duration::from_secs(3600),
            window: Duration::from_secs(900),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Ip(IpAddr),
    Account(String),
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    last: Instant,
    locked_until: Option<Instant>,
}

/// Counts failed logins; refuses further attempts during a lockout. Unknown and known accounts are counted the
/// same way, so the lockout itself does not reveal whether a user exists.
#[derive(Debug)]
pub struct LoginGuard {
    limits: LoginLimits,
    entries: Mutex<HashMap<Key, Entry>>,
}

/// Most tracked keys before old ones are swept.
const MAX_TRACKED: usize = 100_000;

impl LoginGuard {
    /// New guard.
    pub fn new(limits: LoginLimits) -> Self {
        Self {
            limits,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Entry>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `Err(retry_after)` while the IP or the account is locked.
    pub fn check(&self, ip: IpAddr, account: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let map = self.lock();
        let mut wait = Duration::ZERO;
        for k in [Key::Ip(ip), Key::Account(account.to_string())] {
            if let Some(Entry {
                locked_until: Some(t),
                ..
            }) = map.get(&k)
            {
                if *t > now {
                    wait = wait.max(*t - now);
                }
            }
        }
        if wait.is_zero() {
            Ok(())
        } else {
            Err(wait)
        }
    }

    /// Records a failed attempt; returns the lockout it started, if any.
    pub fn failure(&self, ip: IpAddr, account: &str) -> Option<Duration> {
        let now = Instant::now();
        let l = self.limits;
        let mut map = self.lock();
        if map.len() > MAX_TRACKED {
            map.retain(|_, e| now.duration_since(e.last) < l.window || e.locked_until > Some(now));
        }
        let mut started = None;
        for (k, max) in [
            (Key::Ip(ip), l.max_per_ip),
            (Key::Account(account.to_string()), l.max_per_account),
        ] {
            let e = map.entry(k).or_insert(Entry {
                failures: 0,
                last: now,
                locked_until: None,
            });
            if now.duration_since(e.last) > l.window && e.locked_until.is_none_or(|t| t <= now) {
                e.failures = 0;
            }
            e.failures = e.failures.saturating_add(1);
            e.last = now;
            if e.failures >= max {
                let doublings = (e.failures - max).min(20);
                let lock = l
                    .base_lockout
                    .saturating_mul(1u32 << doublings)
                    .min(l.max_lockout);
                e.locked_until = Some(now + lock);
                started = Some(started.map_or(lock, |s: Duration| s.max(lock)));
            }
        }
        started
    }

    /// A successful login clears the account's failures (not the IP's: one valid account must not let an
    /// attacker reset the counter for guessing others).
    pub fn success(&self, account: &str) {
        self.lock().remove(&Key::Account(account.to_string()));
    }
}

/// Per-IP request rate limit.
pub struct RateLimit {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    clock: DefaultClock,
}

impl std::fmt::Debug for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RateLimit")
    }
}

impl RateLimit {
    /// `per_second` sustained requests per IP with bursts up to `burst`.
    pub fn new(per_second: NonZeroU32, burst: NonZeroU32) -> Self {
        let quota = Quota::per_second(per_second).allow_burst(burst);
        Self {
            limiter: DefaultKeyedRateLimiter::keyed(quota),
            clock: DefaultClock::default(),
        }
    }

    /// `Err(retry_after)` when `ip` is over its quota.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        if self.limiter.len() > MAX_TRACKED {
            self.limiter.retain_recent();
        }
        self.limiter
            .check_key(&ip)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }
}

/// `DASHBOARD_ALLOWED_IPS`: empty means everyone the firewall lets through.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpAllowlist(Vec<IpNet>);

/// A bad CIDR in a list setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {value:?} is not an IP address or CIDR (examples: 203.0.113.45, 10.0.0.0/8, ::1)")]
pub struct CidrError {
    /// Setting name.
    pub key: &'static str,
    /// The bad entry.
    pub value: String,
}

/// Parses a comma- or space-separated list of IPs / CIDRs.
pub fn parse_cidrs(key: &'static str, s: &str) -> Result<Vec<IpNet>, CidrError> {
    s.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse::<IpNet>()
                .or_else(|_| p.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| CidrError {
                    key,
                    value: p.to_string(),
                })
        })
        .collect()
}

impl IpAllowlist {
    /// Builds from parsed networks.
    pub fn new(nets: Vec<IpNet>) -> Self {
        Self(nets)
    }
    /// Parses `DASHBOARD_ALLOWED_IPS`.
    pub fn parse(s: &str) -> Result<Self, CidrError> {
        parse_cidrs("DASHBOARD_ALLOWED_IPS", s).map(Self)
    }
    /// True when no list is configured.
    pub fn is_open(&self) -> bool {
        self.0.is_empty()
    }
    /// Is `ip` allowed? IPv4-mapped IPv6 addresses are matched as IPv4.
    pub fn allows(&self, ip: IpAddr) -> bool {
        if self.0.is_empty() {
            return true;
        }
        let ip = canonical(ip);
        self.0.iter().any(|n| n.contains(&ip))
    }
}

/// `::ffff:1.2.3.4` → `1.2.3.4`, so one IPv4 rule covers dual-stack sockets.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_lockout_doubles() {
        let g = LoginGuard::new(LoginLimits {
            max_per_account: 3,
            max_per_ip: 100,
            base_lockout: Duration::from_secs(10),
            ..LoginLimits::default()
        });
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(g.failure(ip, "bob"), None);
        assert_eq!(g.failure(ip, "bob"), None);
        assert!(g.check(ip, "bob").is_ok());
        assert_eq!(g.failure(ip, "bob"), Some(Duration::from_secs(10)));
        assert!(g.check(ip, "bob").is_err());
        assert_eq!(g.failure(ip, "bob"), Some(Duration::from_secs(20)));
        // Another account from the same IP is not locked (IP threshold is higher).
        assert!(g.check(ip, "carol").is_ok());
        // And another IP cannot use the locked account either.
        assert!(g.check("10.0.0.2".parse().unwrap(), "bob").is_err());
    }

    #[test]
    fn allowlist_matches_cidrs_and_mapped_v4() {
        let a = IpAllowlist::parse("10.0.0.0/8, 203.0.113.45 ::1").unwrap();
        assert!(a.allows("10.1.2.3".parse().unwrap()));
        assert!(a.allows("203.0.113.45".parse().unwrap()));
        assert!(a.allows("::ffff:10.9.9.9".parse().unwrap()));
        assert!(a.allows("::1".parse().unwrap()));
        assert!(!a.allows("203.0.113.46".parse().unwrap()));
        assert!(IpAllowlist::parse("10.0.0.0/33").is_err());
        assert!(IpAllowlist::parse("")
            .unwrap()
            .allows("8.8.8.8".parse().unwrap()));
    }

    #[test]
    fn rate_limit_refuses_after_burst() {
        let r = RateLimit::new(NonZeroU32::new(1).unwrap(), NonZeroU32::new(3).unwrap());
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..3 {
            assert!(r.check(ip).is_ok());
        }
        assert!(r.check(ip).is_err());
        assert!(r.check("10.0.0.2".parse().unwrap()).is_ok());
    }
}

//! One request-weight budget per host and exchange endpoint, shared by every bot on the host (issue 15.5).
//!
//! Binance counts REQUEST_WEIGHT per IP (2400 per minute on USD-M futures), so bots on one host share one limit:
//! each alone stays under it, together they get 429 and then a 418 ban for all of them. Every bot charges the
//! weight of each request to a small file (`FLEET_BUDGET_DIR`, default `/dev/shm`, one file per REST host) under
//! an exclusive `flock`, and waits when the host's total would pass `FLEET_HOST_WEIGHT_PER_MINUTE`.
//!
//! The window slides over the last [`WINDOW_SECS`] one-second buckets: any 60 s window of Binance's clock,
//! wherever its minute starts, lies within 61 consecutive buckets, so it never holds more than the budget. A
//! 429/418 seen by one bot blocks all of them until its `Retry-After` (sending on would lengthen the ban), and
//! `X-MBX-USED-WEIGHT-1M` above what the bots charged (weight used by something else on this IP) is charged too.
//!
//! File layout (little endian, 1000 bytes): magic `AEGW`, version 1, `blocked_until_ms` u64, then
//! [`WINDOW_SECS`] buckets of (second since the epoch u64, weight u64).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// Buckets (seconds) the window spans: one more than Binance's minute, see the module docs.
pub const WINDOW_SECS: u64 = 61;
/// Binance's REQUEST_WEIGHT per minute per IP on USD-M futures.
pub const BINANCE_WEIGHT_PER_MINUTE: u64 = 2400;
/// Default `FLEET_HOST_WEIGHT_PER_MINUTE`: 75 % of Binance's limit, the rest left for the WebSocket API's
/// logons, manual tools and `aegis preflight` on the same IP.
pub const DEFAULT_WEIGHT_PER_MINUTE: u64 = 1800;
/// Default `FLEET_BUDGET_DIR` (a RAM file system: the file lives as long as the host's uptime, which is all a
/// one-minute window needs).
pub const DEFAULT_DIR: &str = "/dev/shm";

const MAGIC: &[u8; 4] = b"AEGW";
const VERSION: u32 = 1;
const HEADER: usize = 16;
const LEN: usize = HEADER + WINDOW_SECS as usize * 16;

/// Why the budget file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum BudgetError {
    /// Opening, locking, reading or writing the file failed.
    #[error("host weight budget {path}: cannot {op}: {source} (set FLEET_BUDGET_DIR to a directory every bot on this host may write)")]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct State {
    blocked_until_ms: u64,
    buckets: [(u64, u64); WINDOW_SECS as usize],
}

impl State {
    fn empty() -> Self {
        Self {
            blocked_until_ms: 0,
            buckets: [(0, 0); WINDOW_SECS as usize],
        }
    }

    fn decode(b: &[u8]) -> Self {
        // A missing, short or foreign file is an empty window (a fresh host, or a version from before).
        if b.len() < LEN || &b[..4] != MAGIC || u32_at(b, 4) != VERSION {
            return Self::empty();
        }
        let mut s = Self::empty();
        s.blocked_until_ms = u64_at(b, 8);
        for (i, slot) in s.buckets.iter_mut().enumerate() {
            let o = HEADER + i * 16;
            *slot = (u64_at(b, o), u64_at(b, o + 8));
        }
        s
    }

    fn encode(&self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[..4].copy_from_slice(MAGIC);
        b[4..8].copy_from_slice(&VERSION.to_le_bytes());
        b[8..16].copy_from_slice(&self.blocked_until_ms.to_le_bytes());
        for (i, (sec, w)) in self.buckets.iter().enumerate() {
            let o = HEADER + i * 16;
            b[o..o + 8].copy_from_slice(&sec.to_le_bytes());
            b[o + 8..o + 16].copy_from_slice(&w.to_le_bytes());
        }
        b
    }

    /// Weight charged within the window ending at second `now_s`.
    fn used(&self, now_s: u64) -> u64 {
        self.buckets
            .iter()
            .filter(|(s, _)| *s + WINDOW_SECS > now_s && *s <= now_s)
            .map(|(_, w)| *w)
            .sum()
    }

    fn charge(&mut self, now_s: u64, weight: u64) {
        let slot = &mut self.buckets[(now_s % WINDOW_SECS) as usize];
        if slot.0 != now_s {
            *slot = (now_s, 0);
        }
        slot.1 += weight;
    }

    /// Milliseconds until `weight` more fits (0: now), at wall time `now_ms`.
    fn wait_for(&self, now_ms: u64, weight: u64, limit: u64) -> u64 {
        if self.blocked_until_ms > now_ms {
            return self.blocked_until_ms - now_ms;
        }
        let now_s = now_ms / 1000;
        let mut used = self.used(now_s);
        // A request heavier than the whole budget still goes, alone in an empty window.
        let weight = weight.min(limit);
        if used + weight <= limit {
            return 0;
        }
        // Oldest buckets leave the window first: find the second at which enough has left.
        let mut live: Vec<(u64, u64)> = self
            .buckets
            .iter()
            .copied()
            .filter(|(s, w)| *w > 0 && *s + WINDOW_SECS > now_s && *s <= now_s)
            .collect();
        live.sort_unstable();
        for (s, w) in live {
            used -= w;
            if used + weight <= limit {
                let free_at_ms = (s + WINDOW_SECS) * 1000;
                return free_at_ms.saturating_sub(now_ms).max(1);
            }
        }
        1
    }
}

/// `flock(2)` on the open file (std's `File::lock` needs Rust 1.89; the workspace supports 1.88).
fn flock(f: &File, op: libc::c_int) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    loop {
        // SAFETY: flock on a file descriptor this `File` owns and keeps open for the call.
        let r = unsafe { libc::flock(f.as_raw_fd(), op) };
        if r == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

fn u64_at(b: &[u8], o: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[o..o + 8]);
    u64::from_le_bytes(a)
}

fn u32_at(b: &[u8], o: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[o..o + 4]);
    u32::from_le_bytes(a)
}

/// The shared budget of this host for one REST endpoint. Cheap to share (`Arc`); every call takes the file lock
/// for a few microseconds and never blocks on anything else.
#[derive(Debug)]
pub struct HostBudget {
    path: PathBuf,
    limit: u64,
    file: Mutex<File>,
}

impl HostBudget {
    /// Opens (creating) the budget file for the REST endpoint `fapi_url` in `dir`, allowing `limit` weight per
    /// window for the whole host.
    pub fn open(dir: &Path, fapi_url: &str, limit: u64) -> Result<Self, BudgetError> {
        let path = dir.join(format!("aegis-weight-{}.bin", file_tag(fapi_url)));
        let io = |op| {
            let path = path.clone();
            move |source| BudgetError::Io { path, op, source }
        };
        std::fs::create_dir_all(dir).map_err(io("create its directory"))?;
        let file = {
            use std::os::unix::fs::OpenOptionsExt;
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                // Bots of one operator may run as different users of one group.
                .mode(0o660)
                .open(&path)
                .map_err(io("open"))?
        };
        Ok(Self {
            path,
            limit: limit.max(1),
            file: Mutex::new(file),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Weight allowed per window for the whole host.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    fn with_state<T>(&self, f: impl FnOnce(&mut State) -> (T, bool)) -> Result<T, BudgetError> {
        let io = |op| {
            let path = self.path.clone();
            move |source| BudgetError::Io { path, op, source }
        };
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        flock(&file, libc::LOCK_EX).map_err(io("lock"))?;
        let result = (|| {
            let mut buf = Vec::with_capacity(LEN);
            file.seek(SeekFrom::Start(0)).map_err(io("read"))?;
            (&*file).read_to_end(&mut buf).map_err(io("read"))?;
            let mut st = State::decode(&buf);
            let (out, dirty) = f(&mut st);
            if dirty {
                file.seek(SeekFrom::Start(0)).map_err(io("write"))?;
                file.write_all(&st.encode()).map_err(io("write"))?;
            }
            Ok(out)
        })();
        // Closing would unlock too; unlocking now lets the other bots in at once.
        let _ = flock(&file, libc::LOCK_UN);
        result
    }

    /// Charges `weight` if it fits now and returns `Ok(None)`; otherwise charges nothing and returns how long to
    /// wait before trying again. Never sleeps: the engine thread's order path (helper h5) may call it.
    pub fn try_acquire(&self, weight: u64) -> Result<Option<Duration>, BudgetError> {
        self.try_acquire_at(weight, wall_ms())
    }

    fn try_acquire_at(&self, weight: u64, now_ms: u64) -> Result<Option<Duration>, BudgetError> {
        if weight == 0 {
            // Still refused during a host-wide 429/418 block.
            return self.with_state(|st| {
                let w = st.blocked_until_ms.saturating_sub(now_ms);
                ((w > 0).then(|| Duration::from_millis(w)), false)
            });
        }
        let limit = self.limit;
        self.with_state(|st| match st.wait_for(now_ms, weight, limit) {
            0 => {
                st.charge(now_ms / 1000, weight.min(limit));
                (None, true)
            }
            ms => (Some(Duration::from_millis(ms)), false),
        })
    }

    /// Waits (asynchronously) until `weight` fits, then charges it. The waits are bounded by the window: at most
    /// [`WINDOW_SECS`] s, or the `Retry-After` of a 429/418 another bot saw.
    pub async fn acquire(&self, weight: u64) -> Result<(), BudgetError> {
        let mut logged = false;
        while let Some(wait) = self.try_acquire(weight)? {
            if !logged && wait >= Duration::from_millis(500) {
                logged = true;
                tracing::info!(
                    weight,
                    limit = self.limit,
                    wait_ms = wait.as_millis() as u64,
                    file = %self.path.display(),
                    "host request-weight budget used up by the bots on this host: waiting"
                );
            }
            tokio::time::sleep(wait).await;
        }
        Ok(())
    }

    /// [`HostBudget::acquire`] for a thread that may sleep.
    pub fn acquire_blocking(&self, weight: u64) -> Result<(), BudgetError> {
        while let Some(wait) = self.try_acquire(weight)? {
            std::thread::sleep(wait);
        }
        Ok(())
    }

    /// The exchange answered 429/418: nothing may be sent from this host until `until_ms` (wall time).
    pub fn block_until(&self, until_ms: u64) -> Result<(), BudgetError> {
        self.with_state(|st| {
            let changed = until_ms > st.blocked_until_ms;
            st.blocked_until_ms = st.blocked_until_ms.max(until_ms);
            ((), changed)
        })
    }

    /// The exchange reports `used` weight in its current minute (`X-MBX-USED-WEIGHT-1M`). When that is more
    /// than the bots charged in the window, something else on this IP uses weight: charge the difference now.
    pub fn observe_used(&self, used: u64) -> Result<(), BudgetError> {
        let now_ms = wall_ms();
        self.with_state(|st| {
            let charged = st.used(now_ms / 1000);
            if used > charged {
                st.charge(now_ms / 1000, used - charged);
                ((), true)
            } else {
                ((), false)
            }
        })
    }

    /// Weight charged in the current window (for tests and the status command).
    pub fn used_now(&self) -> Result<u64, BudgetError> {
        let now_s = wall_ms() / 1000;
        self.with_state(|st| (st.used(now_s), false))
    }
}

/// The file-name part for an endpoint: its host and port, other characters replaced (testnet and production
/// count separately at Binance, so they get separate files).
fn file_tag(fapi_url: &str) -> String {
    let rest = fapi_url.split("://").nth(1).unwrap_or(fapi_url);
    let hostport = rest.split('/').next().unwrap_or(rest);
    hostport
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn wall_ms() -> u64 {
    aegis_engine::clock::wall_ms()
}

/// The budget settings of `aegis run`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetSettings {
    /// `FLEET_BUDGET_DIR`.
    pub dir: PathBuf,
    /// `FLEET_HOST_WEIGHT_PER_MINUTE`.
    pub weight_per_minute: u64,
}

impl Default for BudgetSettings {
    fn default() -> Self {
        Self {
            dir: PathBuf::from(DEFAULT_DIR),
            weight_per_minute: DEFAULT_WEIGHT_PER_MINUTE,
        }
    }
}

static SETTINGS: OnceLock<BudgetSettings> = OnceLock::new();

/// Sets the budget for this process (`aegis run` does it once, before the exchange client exists).
pub fn install(s: BudgetSettings) {
    let _ = SETTINGS.set(s);
}

/// The host budget for `fapi_url` under the installed settings; `None` when none are installed (CLI commands,
/// unit tests) or the file cannot be opened (logged: the bot then paces itself only by its own headers).
pub fn for_endpoint(fapi_url: &str) -> Option<Arc<HostBudget>> {
    let s = SETTINGS.get()?;
    match HostBudget::open(&s.dir, fapi_url, s.weight_per_minute) {
        Ok(b) => {
            tracing::info!(
                "weight:      host budget {} per minute shared through {}",
                b.limit(),
                b.path().display()
            );
            Some(Arc::new(b))
        }
        Err(e) => {
            tracing::error!("{e}; this bot is NOT sharing the host's request-weight budget");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("aegis-budget-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn two_handles_share_one_window_and_wait_for_the_oldest_bucket() {
        let d = tmp("share");
        let a = HostBudget::open(&d, "https://fapi.binance.com", 100).unwrap();
        let b = HostBudget::open(&d, "https://fapi.binance.com/", 100).unwrap();
        assert_eq!(a.path(), b.path());
        let t0 = 1_000_000_000u64;
        assert_eq!(a.try_acquire_at(60, t0).unwrap(), None);
        assert_eq!(b.try_acquire_at(30, t0 + 2_500).unwrap(), None);
        // 90 used on the host: 20 more must wait until the first 60 leave the window (61 s after second t0).
        let w = b
            .try_acquire_at(20, t0 + 3_000)
            .unwrap()
            .expect("must wait");
        assert_eq!(w, Duration::from_millis(61_000 - 3_000));
        assert_eq!(a.try_acquire_at(10, t0 + 3_000).unwrap(), None);
        // Just before the 61st second the first bucket still counts; at it, it is gone.
        assert!(a.try_acquire_at(60, t0 + 60_999).unwrap().is_some());
        assert_eq!(a.try_acquire_at(60, t0 + 61_000).unwrap(), None);
        // Another endpoint (testnet) has its own file.
        let t = HostBudget::open(&d, "https://testnet.binancefuture.com", 100).unwrap();
        assert_ne!(t.path(), a.path());
        assert_eq!(t.try_acquire_at(100, t0 + 61_000).unwrap(), None);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn any_sixty_second_window_stays_under_the_limit() {
        let d = tmp("window");
        let b = HostBudget::open(&d, "http://127.0.0.1:1234", 50).unwrap();
        let t0 = 5_000_000_000u64 + 700;
        let mut sent = Vec::new();
        let mut t = t0;
        // Greedy clients sending weight 7 every 100 ms for 5 minutes.
        while t < t0 + 300_000 {
            if b.try_acquire_at(7, t).unwrap().is_none() {
                sent.push(t);
            }
            t += 100;
        }
        assert!(sent.len() > 20, "some requests went: {}", sent.len());
        // Binance's fixed minute may start anywhere: check every alignment at 100 ms steps.
        let mut start = t0 - 60_000;
        while start < t0 + 300_000 {
            let n = sent
                .iter()
                .filter(|s| **s >= start && **s < start + 60_000)
                .count() as u64;
            assert!(n * 7 <= 50, "{} weight in the minute from {start}", n * 7);
            start += 100;
        }
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_ban_seen_by_one_bot_blocks_the_host_and_foreign_weight_is_charged() {
        let d = tmp("ban");
        let a = HostBudget::open(&d, "http://127.0.0.1:9", 1000).unwrap();
        let b = HostBudget::open(&d, "http://127.0.0.1:9", 1000).unwrap();
        let now = wall_ms();
        a.block_until(now + 30_000).unwrap();
        let w = b.try_acquire(1).unwrap().expect("blocked");
        assert!(w > Duration::from_secs(25), "{w:?}");
        assert!(
            b.try_acquire(0).unwrap().is_some(),
            "weight 0 is blocked too"
        );
        let c = HostBudget::open(&tmp("foreign"), "http://127.0.0.1:9", 1000).unwrap();
        c.observe_used(400).unwrap();
        assert!(c.used_now().unwrap() >= 400);
        // What the bots charged already is not charged twice.
        c.observe_used(300).unwrap();
        assert!(c.used_now().unwrap() < 700);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_foreign_or_short_file_reads_as_an_empty_window() {
        assert_eq!(State::decode(b"junk"), State::empty());
        let mut s = State::empty();
        s.charge(10, 5);
        s.blocked_until_ms = 77;
        assert_eq!(State::decode(&s.encode()), s);
    }
}

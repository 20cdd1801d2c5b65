//! Full-depth (L2) order book per symbol, maintained from a REST snapshot plus diff depth updates, with Binance's
//! sequence rules (binance-protocol.md §5, "Local order book"):
//! - before a snapshot is loaded, updates are refused ([`L2Error::NoSnapshot`]; the caller buffers them);
//! - updates entirely older than the snapshot are dropped ([`L2Outcome::Stale`]);
//! - the first kept update must straddle the snapshot id (`U <= lastUpdateId <= u`; spot: `lastUpdateId + 1`);
//! - each later futures update's `pu` must equal the previous `u` (spot: `U == previous u + 1`), otherwise
//!   [`L2Error::Gap`] and the book needs a new snapshot.
//!
//! Storage: two sorted vectors allocated once with a fixed capacity (bids best-first descending, asks ascending).
//! Updates insert/remove in place, so steady state never allocates. When a side is full, the worst level is
//! trimmed (or a new level worse than all kept ones is ignored): the book keeps the best `capacity` levels.

use crate::feed::parse::DepthUpdate;
use aegis_shared::{Price, Qty};

/// Default levels kept per side (the snapshot endpoint returns at most 1000).
pub const DEFAULT_L2_CAPACITY: usize = 1000;

/// Result of applying an update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L2Outcome {
    /// Applied.
    Applied,
    /// Older than the snapshot; ignored.
    Stale,
}

/// Why an update could not be applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum L2Error {
    /// No snapshot loaded (or the book was reset after a gap): fetch one.
    #[error("order book has no snapshot; fetch /fapi/v1/depth")]
    NoSnapshot,
    /// The update chain broke; the book was cleared and needs a new snapshot.
    #[error("depth update gap: expected {expected}, got {got}; resync from a new snapshot")]
    Gap {
        /// The id the chain needed.
        expected: u64,
        /// What arrived.
        got: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sync {
    NeedSnapshot,
    AwaitFirst { snapshot_id: u64 },
    Live { last_u: u64 },
}

/// An L2 book. See the module docs.
#[derive(Debug, Clone)]
pub struct L2Book {
    bids: Vec<(Price, Qty)>,
    asks: Vec<(Price, Qty)>,
    cap: usize,
    sync: Sync,
}

impl L2Book {
    /// An empty book keeping up to `capacity` levels per side (allocated now, never grown).
    pub fn new(capacity: usize) -> Self {
        let cap = capacity.max(1);
        Self {
            bids: Vec::with_capacity(cap),
            asks: Vec::with_capacity(cap),
            cap,
            sync: Sync::NeedSnapshot,
        }
    }

    /// Forgets everything; the next step is [`L2Book::load_snapshot`].
    pub fn reset(&mut self) {
        self.bids.clear();
        self.asks.clear();
        self.sync = Sync::NeedSnapshot;
    }

    /// Loads a snapshot (`lastUpdateId` and its levels).
    pub fn load_snapshot(
        &mut self,
        last_update_id: u64,
        bids: impl IntoIterator<Item = (Price, Qty)>,
        asks: impl IntoIterator<Item = (Price, Qty)>,
    ) {
        self.bids.clear();
        self.asks.clear();
        for (p, q) in bids {
            set_level(&mut self.bids, self.cap, p, q, true);
        }
        for (p, q) in asks {
            set_level(&mut self.asks, self.cap, p, q, false);
        }
        self.sync = Sync::AwaitFirst {
            snapshot_id: last_update_id,
        };
    }

    /// True once the update chain is established after a snapshot.
    pub fn is_live(&self) -> bool {
        matches!(self.sync, Sync::Live { .. })
    }

    /// Applies a diff depth update under the sequence rules.
    pub fn apply(&mut self, d: &DepthUpdate<'_>) -> Result<L2Outcome, L2Error> {
        let futures = d.prev_final_update_id.is_some();
        match self.sync {
            Sync::NeedSnapshot => return Err(L2Error::NoSnapshot),
            Sync::AwaitFirst { snapshot_id } => {
                let target = if futures {
                    snapshot_id
                } else {
                    snapshot_id + 1
                };
                if d.final_update_id < target {
                    return Ok(L2Outcome::Stale);
                }
                if d.first_update_id > target {
                    self.reset();
                    return Err(L2Error::Gap {
                        expected: target,
                        got: d.first_update_id,
                    });
                }
            }
            Sync::Live { last_u } => {
                let (expected, got) = match d.prev_final_update_id {
                    Some(pu) => (last_u, pu),
                    None => (last_u + 1, d.first_update_id),
                };
                if expected != got {
                    self.reset();
                    return Err(L2Error::Gap { expected, got });
                }
            }
        }
        for (p, q) in d.bids.iter() {
            set_level(&mut self.bids, self.cap, p, q, true);
        }
        for (p, q) in d.asks.iter() {
            set_level(&mut self.asks, self.cap, p, q, false);
        }
        self.sync = Sync::Live {
            last_u: d.final_update_id,
        };
        Ok(L2Outcome::Applied)
    }

    /// Bids, best (highest) first.
    pub fn bids(&self) -> &[(Price, Qty)] {
        &self.bids
    }
    /// Asks, best (lowest) first.
    pub fn asks(&self) -> &[(Price, Qty)] {
        &self.asks
    }
    /// Best bid.
    pub fn best_bid(&self) -> Option<(Price, Qty)> {
        self.bids.first().copied()
    }
    /// Best ask.
    pub fn best_ask(&self) -> Option<(Price, Qty)> {
        self.asks.first().copied()
    }
}

/// Sets one level (qty 0 removes it) keeping the side sorted best-first and within `cap` without reallocating.
#[inline]
fn set_level(side: &mut Vec<(Price, Qty)>, cap: usize, p: Price, q: Qty, bids: bool) {
    // Best-first order: bids descending, asks ascending.
    let pos = side.binary_search_by(|&(lp, _)| if bids { p.cmp(&lp) } else { lp.cmp(&p) });
    match pos {
        Ok(i) => {
            if q.units() <= 0 {
                side.remove(i);
            } else {
                side[i].1 = q;
            }
        }
        Err(i) => {
            if q.units() <= 0 || i >= cap {
                return;
            }
            if side.len() == cap {
                side.pop();
            }
            side.insert(i, (p, q));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::parse::{parse, MarketMsg};

    fn depth(s: &str) -> MarketMsg<'_> {
        parse(s.as_bytes()).unwrap()
    }
    fn px(v: &str) -> Price {
        Price::parse(v).unwrap()
    }

    #[test]
    fn snapshot_then_chain_then_gap() {
        let mut b = L2Book::new(3);
        let u1 = r#"{"e":"depthUpdate","E":1,"T":1,"s":"BTCUSDT","U":90,"u":99,"pu":89,"b":[["9","1"]],"a":[]}"#;
        let MarketMsg::Depth(d) = depth(u1) else {
            panic!()
        };
        assert_eq!(b.apply(&d), Err(L2Error::NoSnapshot));
        b.load_snapshot(
            100,
            [(px("10"), Qty::ONE), (px("9"), Qty::ONE)],
            [(px("11"), Qty::ONE), (px("12"), Qty::ONE)],
        );
        assert_eq!(b.apply(&d), Ok(L2Outcome::Stale));
        let u2 = r#"{"e":"depthUpdate","E":2,"T":2,"s":"BTCUSDT","U":95,"u":105,"pu":94,"b":[["10","0"],["9.5","2"],["8","1"],["7","1"]],"a":[["10.5","3"]]}"#;
        let MarketMsg::Depth(d) = depth(u2) else {
            panic!()
        };
        assert_eq!(b.apply(&d), Ok(L2Outcome::Applied));
        assert!(b.is_live());
        // 10 removed; 9.5, 9, 8 kept; 7 trimmed by capacity 3.
        assert_eq!(
            b.bids().iter().map(|l| l.0).collect::<Vec<_>>(),
            vec![px("9.5"), px("9"), px("8")]
        );
        assert_eq!(b.best_ask(), Some((px("10.5"), Qty::from_int(3))));
        let u3 = r#"{"e":"depthUpdate","E":3,"T":3,"s":"BTCUSDT","U":106,"u":110,"pu":105,"b":[],"a":[["10.5","0"]]}"#;
        let MarketMsg::Depth(d) = depth(u3) else {
            panic!()
        };
        assert_eq!(b.apply(&d), Ok(L2Outcome::Applied));
        assert_eq!(b.best_ask().unwrap().0, px("11"));
        let gap = r#"{"e":"depthUpdate","E":4,"T":4,"s":"BTCUSDT","U":115,"u":120,"pu":114,"b":[],"a":[]}"#;
        let MarketMsg::Depth(d) = depth(gap) else {
            panic!()
        };
        assert_eq!(
            b.apply(&d),
            Err(L2Error::Gap {
                expected: 110,
                got: 114
            })
        );
        assert!(!b.is_live());
        assert_eq!(b.apply(&d), Err(L2Error::NoSnapshot));
    }

    #[test]
    fn spot_chain_uses_first_update_id() {
        let mut b = L2Book::new(10);
        b.load_snapshot(100, [], []);
        let MarketMsg::Depth(d) = depth(
            r#"{"e":"depthUpdate","E":1,"s":"BNBBTC","U":101,"u":103,"b":[["1","1"]],"a":[]}"#,
        ) else {
            panic!()
        };
        assert_eq!(b.apply(&d), Ok(L2Outcome::Applied));
        let MarketMsg::Depth(d) =
            depth(r#"{"e":"depthUpdate","E":1,"s":"BNBBTC","U":105,"u":106,"b":[],"a":[]}"#)
        else {
            panic!()
        };
        assert_eq!(
            b.apply(&d),
            Err(L2Error::Gap {
                expected: 104,
                got: 105
            })
        );
    }

    #[test]
    fn never_reallocates() {
        let mut b = L2Book::new(5);
        let cap = (b.bids.capacity(), b.asks.capacity());
        for i in 0..1000i64 {
            set_level(
                &mut b.bids,
                b.cap,
                Price::from_int(i % 37),
                Qty::from_int(i % 3),
                true,
            );
            set_level(
                &mut b.asks,
                b.cap,
                Price::from_int(i % 41),
                Qty::from_int(i % 4),
                false,
            );
            assert!(b.bids.len() <= 5 && b.asks.len() <= 5);
            assert!(b.bids.windows(2).all(|w| w[0].0 > w[1].0));
            assert!(b.asks.windows(2).all(|w| w[0].0 < w[1].0));
        }
        assert_eq!((b.bids.capacity(), b.asks.capacity()), cap);
    }
}

//! The stale-data guard is per symbol: a symbol whose own stream stops takes no new entries while the other
//! symbols keep the feed as a whole live; its exits still pass, and its entries come back with its data.

use aegis_engine::risk::Denial;
use aegis_engine::strategy::Signal;
use aegis_engine::{Engine, EngineParams};
use aegis_shared::event::{FeedState, OrderIntent};
use aegis_shared::num::Qty;
use aegis_shared::{Side, StrategyMode};
use std::time::{Duration, Instant};

const BTC: usize = 0;
const ETH: usize = 1;
const STALE_MS: u64 = 200;

struct Feed {
    u: u64,
    t: u64,
}

impl Feed {
    /// One bookTicker for `sym` (BTCUSDT around 30,000, ETHUSDT around 2,000); engine time moves 1 ms each.
    fn book(&mut self, e: &mut Engine, sym: usize) {
        self.u += 1;
        self.t += 1;
        let (u, t) = (self.u, self.t);
        let (name, bid, ask) = match sym {
            BTC => ("BTCUSDT", "30000.0", "30000.1"),
            _ => ("ETHUSDT", "2000.00", "2000.01"),
        };
        let stream = name.to_ascii_lowercase();
        let line = format!(
            r#"{{"stream":"{stream}@bookTicker","data":{{"e":"bookTicker","u":{u},"s":"{name}","b":"{bid}","B":"50","a":"{ask}","A":"50","T":{t},"E":{t}}}}}"#
        );
        e.on_message(line.as_bytes());
    }
}

fn order(side: Side, qty: &str, reduce_only: bool) -> Signal {
    Signal {
        side,
        intent: if reduce_only {
            OrderIntent::Manual
        } else {
            OrderIntent::Entry
        },
        qty: Qty::parse(qty).unwrap(),
        reduce_only,
    }
}

fn entry(e: &mut Engine, sym: usize) -> Result<(), Denial> {
    let qty = if sym == BTC { "0.004" } else { "0.060" };
    e.place(sym, StrategyMode::Scalp, order(Side::Buy, qty, false))
}

fn halted(e: &Engine) -> u64 {
    e.counters().denials[Denial::Halted.code() as usize]
}

fn qty(e: &Engine, sym: usize) -> Qty {
    e.positions().get(sym, StrategyMode::Scalp).qty()
}

#[test]
fn a_silent_symbol_takes_no_entries_while_others_flow() {
    let p = EngineParams {
        // No strategy: only the orders this test places reach the gate.
        scalp_enabled: false,
        session: 7,
        pin: false,
        heartbeat_ms: 1,
        feed_stale_ms: STALE_MS,
        ..EngineParams::default()
    };
    let (mut e, _ctl) = Engine::with_channels(p).unwrap();
    let mut f = Feed {
        u: 0,
        t: 1_704_067_200_000,
    };

    // Only ETHUSDT has ever quoted: BTCUSDT is not tradable yet.
    f.book(&mut e, ETH);
    assert_eq!(entry(&mut e, BTC), Err(Denial::Halted), "never had data");
    assert_eq!(halted(&e), 1);
    assert!(qty(&e, BTC).is_zero());

    // Both quote: both trade.
    f.book(&mut e, BTC);
    assert_eq!(entry(&mut e, BTC), Ok(()));
    assert_eq!(entry(&mut e, ETH), Ok(()));
    assert_eq!(qty(&e, BTC), Qty::parse("0.004").unwrap());
    assert_eq!(qty(&e, ETH), Qty::parse("0.060").unwrap());
    assert_eq!(halted(&e), 1);

    // BTCUSDT goes silent past the threshold while ETHUSDT keeps flowing.
    let until = Instant::now() + Duration::from_millis(STALE_MS * 2);
    while Instant::now() < until {
        f.book(&mut e, ETH);
        e.housekeeping();
        std::thread::sleep(Duration::from_millis(5));
    }
    f.book(&mut e, ETH);
    e.housekeeping();
    // The feed as a whole is live: no global halt, only BTCUSDT's entries are refused.
    assert_eq!(e.feed_state(), FeedState::Live);
    assert_eq!(e.gate().halt_reason(), None);
    assert_eq!(entry(&mut e, BTC), Err(Denial::Halted), "BTCUSDT is stale");
    assert_eq!(halted(&e), 2, "the stale denial is counted");
    assert_eq!(qty(&e, BTC), Qty::parse("0.004").unwrap());
    assert_eq!(entry(&mut e, ETH), Ok(()), "ETHUSDT still flows");
    assert_eq!(qty(&e, ETH), Qty::parse("0.120").unwrap());
    // A stale symbol can always be left.
    assert_eq!(
        e.place(BTC, StrategyMode::Scalp, order(Side::Sell, "0.004", true)),
        Ok(())
    );
    assert!(qty(&e, BTC).is_zero(), "the exit filled");
    assert_eq!(halted(&e), 2);

    // BTCUSDT's data resumes: its entries are allowed again.
    f.book(&mut e, BTC);
    assert_eq!(entry(&mut e, BTC), Ok(()));
    assert_eq!(qty(&e, BTC), Qty::parse("0.004").unwrap());
    assert_eq!(halted(&e), 2);
}

//! Zero allocation after warm-up: a counting global allocator (per thread) around >= 1,000,000 simulated
//! messages through parse → book → strategy → gate → paper venue → event queues, plus housekeeping.

use aegis_engine::feed::sim::{SimConfig, SimMarket};
use aegis_engine::{Engine, EngineParams};

mod alloc_support;
use alloc_support::{allocs, Counting};

#[global_allocator]
static A: Counting = Counting;

#[test]
fn hot_path_does_not_allocate_after_warm_up() {
    let params = EngineParams {
        session: 1,
        ..EngineParams::default()
    };
    let (mut engine, ctl) = Engine::with_channels(params).unwrap();
    let mut cfg = SimConfig::new(3);
    cfg.speed = 50.0; // 50 ms of market time per message: ~16 market hours over the run.
    let mut sim = SimMarket::new(cfg).unwrap();
    let mut drained = 0u64;
    let mut step = |engine: &mut Engine, sim: &mut SimMarket, n: u64| {
        for i in 0..n {
            engine.on_message(sim.next_message());
            if i % 64 == 0 {
                engine.housekeeping();
                drained += ctl.events.try_iter().count() as u64;
                drained += ctl.stats.try_iter().count() as u64;
            }
        }
    };
    // Warm-up: first orders, fills, positions, bars and indicator windows.
    step(&mut engine, &mut sim, 200_000);
    let orders_before = engine.counters().orders;
    assert!(orders_before > 0, "warm-up traded");
    assert!(allocs() > 0, "the counting allocator sees this thread");
    let before = allocs();
    step(&mut engine, &mut sim, 1_000_000);
    let after = allocs();
    let c = *engine.counters();
    assert!(
        c.orders > orders_before,
        "orders were placed during the measured run: {c:?}"
    );
    assert!(c.fills > 0);
    assert_eq!(c.parse_errors, 0);
    assert!(drained > 0);
    assert_eq!(
        after - before,
        0,
        "allocations on the hot path after warm-up"
    );
}

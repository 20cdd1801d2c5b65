//! The kill switch is idempotent in effect and every trigger is an event (issue 5.6): two triggers halt once
//! (one state change) and leave two kill-switch events in the engine's critical stream, which is journaled.

use aegis_engine::{Engine, EngineParams};
use aegis_shared::event::{AlertKind, EngineState, HaltReason};
use aegis_shared::{Command, EngineEvent};

fn book(e: &mut Engine, u: u64) {
    let t = 1_704_067_200_000 + u;
    let line = format!(
        r#"{{"stream":"btcusdt@bookTicker","data":{{"e":"bookTicker","u":{u},"s":"BTCUSDT","b":"30000.0","B":"5","a":"30000.1","A":"5","T":{t},"E":{t}}}}}"#
    );
    e.on_message(line.as_bytes());
}

#[test]
fn two_triggers_halt_once_and_leave_two_events() {
    let p = EngineParams {
        scalp_enabled: false,
        session: 3,
        pin: false,
        ..EngineParams::default()
    };
    let (mut e, ctl) = Engine::with_channels(p).unwrap();
    book(&mut e, 1);
    while ctl.events.try_recv().is_ok() {}

    e.on_command(Command::Kill { flatten: false });
    book(&mut e, 2);
    e.on_command(Command::Kill { flatten: false });

    let events: Vec<EngineEvent> = std::iter::from_fn(|| ctl.events.try_recv().ok()).collect();
    let kills = events
        .iter()
        .filter(|ev| {
            matches!(
                ev,
                EngineEvent::Alert {
                    kind: AlertKind::KillSwitch,
                    ..
                }
            )
        })
        .count();
    let halts = events
        .iter()
        .filter(|ev| {
            matches!(
                ev,
                EngineEvent::State {
                    state: EngineState::Halted {
                        reason: HaltReason::KillSwitch
                    },
                    ..
                }
            )
        })
        .count();
    assert_eq!(kills, 2, "every trigger is an event: {events:?}");
    assert_eq!(halts, 1, "the halt itself happens once: {events:?}");
}

//! Switching the running bot to a new API key without a restart (guide §1.4; issue 8 point 2).
//!
//! The steps, in this order:
//! 1. Order entry takes the switch between two orders: on the engine thread (`aegis_engine::venue::binance::
//!    entry::EntrySwitch`; orders the engine produces meanwhile wait in a bounded queue there), or on the old
//!    gateway thread (`AEGIS_ORDER_PATH=gateway`; they wait in the engine's queue). Never dropped, never sent
//!    half-switched.
//! 2. In-flight requests of the old key are settled first: their answers are awaited (bounded by
//!    [`DRAIN_BUDGET`]); a late one becomes an unknown outcome, queried by client id (after the swap, with the
//!    new key of the same account) and never resent.
//! 3. The order encoder and the REST client's key are swapped together on that thread (every clone of the REST
//!    client — user stream, reconciliation, key re-check — sees the new key from then on).
//! 4. A new WebSocket API session is opened (Ed25519 keys log on with `session.logon`).
//! 5. The user-data-stream thread creates the listenKey under the new key (same stream kept when Binance hands
//!    back the account's live listenKey; a new stream is compared with the exchange).
//! 6. The caller gets the outcome.
//!
//! The live start-up registers the running switch ([`register`]); the local admin API finds it with
//! [`active`]. One live exchange session per process.

use super::env::Credentials;
use super::gateway::{GatewaySwitched, SwitchRequest};
use super::rest::RestClient;
use super::resync::Slot;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long in-flight orders of the old key may take to be answered before they are queried.
pub const DRAIN_BUDGET: Duration = Duration::from_millis(3000);
/// How long the whole switch may take before the caller is told it failed.
pub const SWITCH_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a switch failed. Never contains key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SwitchError {
    /// No live exchange session whose key can be swapped runs (paper mode, a start without a key, or spot,
    /// whose user stream and order entry take a new key at restart).
    #[error("no live exchange session with a swappable key runs in this bot (paper mode, a read-only start, or MARKETS=spot, which takes a new key at restart): nothing to switch; restart it with the new key")]
    NotLive,
    /// Another switch is in progress.
    #[error("another key switch is in progress; try again when it has finished")]
    Busy,
    /// The gateway refused or failed.
    #[error("the order gateway could not switch: {0}")]
    Gateway(String),
    /// No answer in time.
    #[error("the key switch did not finish within {0:?}; check the log before trading on")]
    Timeout(Duration),
}

/// What a switch did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Switched {
    /// The gateway's part.
    pub gateway: GatewaySwitched,
    /// The user data stream's part.
    pub user_stream: Result<String, String>,
    /// How long the switch took (orders waited at most this long).
    pub took: Duration,
}

/// Who sends the orders, and so takes the switch.
#[derive(Debug, Clone)]
pub enum Target {
    /// The engine thread's order entry (the default).
    Engine(crossbeam_channel::Sender<aegis_engine::venue::binance::entry::EntrySwitch>),
    /// The old gateway thread.
    Gateway(crossbeam_channel::Sender<SwitchRequest>),
}

/// The running bot's key switch.
#[derive(Debug, Clone)]
pub struct KeySwitch {
    gateway: Target,
    slot: Arc<Slot>,
    client: RestClient,
    lock: Arc<Mutex<()>>,
}

impl KeySwitch {
    /// For the live start-up.
    pub fn new(gateway: Target, slot: Arc<Slot>, client: RestClient) -> Self {
        Self {
            gateway,
            slot,
            client,
            lock: Arc::new(Mutex::new(())),
        }
    }

    /// The key in use now.
    pub fn current(&self) -> Option<Arc<Credentials>> {
        self.client.credentials()
    }

    /// The REST endpoints of the running session (to verify a new key against the same exchange).
    pub fn endpoints(&self) -> super::env::Endpoints {
        (*self.client.endpoints).clone()
    }

    /// Switches to `creds` (see the module docs). Blocking: call it from a blocking context.
    pub fn switch(&self, creds: Credentials) -> Result<Switched, SwitchError> {
        let _one = self.lock.try_lock().map_err(|_| SwitchError::Busy)?;
        let t0 = Instant::now();
        let gateway = match &self.gateway {
            Target::Gateway(g) => Self::via_gateway(g, creds)?,
            Target::Engine(e) => self.via_engine(e, creds)?,
        };
        let before = self
            .slot
            .rekeyed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .0;
        self.slot
            .rekey
            .store(true, std::sync::atomic::Ordering::Release);
        loop {
            {
                let g = self.slot.rekeyed.lock().unwrap_or_else(|e| e.into_inner());
                if g.0 > before {
                    return Ok(Switched {
                        gateway,
                        user_stream: g.1.clone(),
                        took: t0.elapsed(),
                    });
                }
            }
            if t0.elapsed() > SWITCH_TIMEOUT {
                return Err(SwitchError::Timeout(SWITCH_TIMEOUT));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl KeySwitch {
    fn via_gateway(
        g: &crossbeam_channel::Sender<SwitchRequest>,
        creds: Credentials,
    ) -> Result<GatewaySwitched, SwitchError> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        g.send_timeout(
            SwitchRequest {
                creds,
                drain_budget: DRAIN_BUDGET,
                reply: tx,
            },
            SWITCH_TIMEOUT,
        )
        .map_err(|_| SwitchError::Gateway("the order gateway thread is not running".into()))?;
        match rx.recv_timeout(SWITCH_TIMEOUT) {
            Ok(r) => r.map_err(SwitchError::Gateway),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                Err(SwitchError::Timeout(SWITCH_TIMEOUT))
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => Err(SwitchError::Gateway(
                "the order gateway thread stopped (the bot is shutting down)".into(),
            )),
        }
    }

    /// The engine thread swaps its encoder and, at the same moment (`on_swap`, run there), the REST client's
    /// key, so no request after the swap carries the old key.
    fn via_engine(
        &self,
        e: &crossbeam_channel::Sender<aegis_engine::venue::binance::entry::EntrySwitch>,
        creds: Credentials,
    ) -> Result<GatewaySwitched, SwitchError> {
        use super::connect::WS_API_RECV_WINDOW_MS;
        use aegis_engine::venue::binance::entry::EntrySwitch;
        let (tx, rx) = crossbeam_channel::bounded(1);
        let encoder = aegis_engine::sign::OrderEncoder::new(
            creds.signer.clone(),
            creds.api_key.clone(),
            WS_API_RECV_WINDOW_MS,
        );
        let client = self.client.clone();
        e.send_timeout(
            EntrySwitch {
                encoder,
                drain_budget: DRAIN_BUDGET,
                on_swap: Box::new(move || client.set_credentials(creds)),
                reply: tx,
            },
            SWITCH_TIMEOUT,
        )
        .map_err(|_| SwitchError::Gateway("order entry is not running".into()))?;
        match rx.recv_timeout(SWITCH_TIMEOUT) {
            Ok(Ok(s)) => {
                tracing::info!(
                    in_flight = s.in_flight,
                    queried = s.queried,
                    "order entry: switched to the new API key ({})",
                    s.ws_api
                );
                Ok(GatewaySwitched {
                    in_flight: s.in_flight,
                    queried: s.queried,
                    ws_api: s.ws_api,
                    switched_at_ms: s.switched_at_ms,
                })
            }
            Ok(Err(why)) => Err(SwitchError::Gateway(why.into())),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                Err(SwitchError::Timeout(SWITCH_TIMEOUT))
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => Err(SwitchError::Gateway(
                "the engine thread stopped (the bot is shutting down)".into(),
            )),
        }
    }
}

static ACTIVE: Mutex<Option<KeySwitch>> = Mutex::new(None);

/// Makes `s` the running bot's key switch (the live start-up calls it; `None` when the session ends).
pub fn register(s: Option<KeySwitch>) {
    *ACTIVE.lock().unwrap_or_else(|e| e.into_inner()) = s;
}

/// The running bot's key switch, if a live session with a key runs.
pub fn active() -> Option<KeySwitch> {
    ACTIVE.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

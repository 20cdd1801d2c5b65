//! The REST side of order entry, off the engine thread. Order entry itself (WebSocket API `order.place` /
//! `order.cancel` / `order.status`, `session.logon`, the unknown-outcome timers) runs on the engine thread
//! (`aegis_engine::venue::binance::entry`); what must not block it comes here as a [`RestJob`] on a bounded
//! queue: the REST fallback placement while the WebSocket API is down, `GET /fapi/v1/order` status queries of
//! unknown orders, REST cancels, the clock resync after -1021, requests for a reconciliation round, and the
//! lines the engine thread wants in the log ([`EntryNote`]).
//!
//! A thread (`aegis-rest`) takes the jobs and runs each request as a task on the control runtime, so a slow
//! request never holds up the next one; each answer goes back to the engine as [`Inbound::Rest`] with the job
//! echoed and the outcome classified ([`RestOutcome`]). The thread ends when the engine's end of the queue is
//! gone.

use super::rest::{RestClient, RestError};
use super::resync::Slot;
use aegis_engine::sign::{OrderEncoder, OrderRequest as WireOrder, RespType, WirePrecision};
use aegis_engine::venue::binance::entry::{EntryNote, RestJob, RestOutcome, UNKNOWN_DEADLINE};
use aegis_engine::venue::binance::Inbound;
use aegis_shared::Symbol;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Capacity of the engine → worker queue (the engine refuses a fallback order locally when it is full).
pub const JOB_CAPACITY: usize = 4096;

/// Classifies a REST answer for the engine (the details go to the log here).
pub fn outcome(r: &Result<Value, RestError>) -> RestOutcome {
    match r {
        Ok(v) => RestOutcome::Ok {
            order_id: v.get("orderId").and_then(Value::as_u64).unwrap_or(0),
        },
        Err(RestError::Api { code, .. }) => RestOutcome::Refused { code: *code },
        Err(RestError::KeyRejected { code, .. }) => RestOutcome::KeyRejected { code: *code },
        Err(RestError::RateLimited { retry_after, .. }) => RestOutcome::RateLimited {
            retry_after_ms: retry_after.as_millis() as u64,
        },
        Err(RestError::Transport { .. } | RestError::NoKey) => RestOutcome::NotSent,
        Err(RestError::Unknown { .. } | RestError::Decode { .. }) => RestOutcome::Unknown,
    }
}

/// Starts the worker. `precision` holds every traded symbol's tick/step (for the fallback's encoding).
pub fn start(
    client: RestClient,
    rt: tokio::runtime::Handle,
    jobs: crossbeam_channel::Receiver<RestJob>,
    inbound: crossbeam_channel::Sender<Inbound>,
    precision: HashMap<Symbol, WirePrecision>,
    slot: Arc<Slot>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let precision = Arc::new(precision);
    std::thread::Builder::new()
        .name("aegis-rest".into())
        .spawn(move || {
            while let Ok(job) = jobs.recv() {
                match job {
                    RestJob::Note(n) => note(n, &client),
                    RestJob::Reconcile => slot.wanted.store(true, Ordering::Release),
                    job => {
                        let (client, inbound, precision) =
                            (client.clone(), inbound.clone(), precision.clone());
                        rt.spawn(async move {
                            let outcome = run(&client, &precision, job).await;
                            let _ = inbound.send(Inbound::Rest { job, outcome });
                        });
                    }
                }
            }
        })
}

async fn run(
    client: &RestClient,
    precision: &HashMap<Symbol, WirePrecision>,
    job: RestJob,
) -> RestOutcome {
    match job {
        RestJob::Place { req, client_id, .. } => {
            let Some(p) = precision.get(&req.symbol) else {
                return RestOutcome::Refused { code: -1121 };
            };
            let Some(creds) = client.credentials() else {
                return RestOutcome::NotSent;
            };
            let wire = WireOrder {
                symbol: req.symbol,
                side: req.side,
                order_type: req.order_type,
                tif: req.tif,
                qty: req.qty,
                price: req.price,
                reduce_only: req.reduce_only,
                client_id,
                resp_type: RespType::Ack,
            };
            // The client's current key signs: a key switch swaps both together (see `keyswitch`).
            let mut enc = OrderEncoder::new(creds.signer.clone(), creds.api_key.clone(), 5000);
            let q = match enc.rest_order(&wire, p, client.now_ms()) {
                Ok(b) => String::from_utf8_lossy(b).into_owned(),
                Err(_) => return RestOutcome::Refused { code: -1111 },
            };
            let r = client.place_order_raw(&q).await;
            if let Err(e) = &r {
                tracing::warn!(client_id = %client_id, error = %e, "REST order placement failed");
            }
            outcome(&r)
        }
        RestJob::Query { symbol, client_id } => outcome(
            &client
                .query_order(symbol.as_str(), client_id.as_str())
                .await,
        ),
        RestJob::Cancel { symbol, client_id } => outcome(
            &client
                .cancel_order(symbol.as_str(), client_id.as_str())
                .await,
        ),
        RestJob::Resync { .. } => {
            if let Err(e) = client.sync_time().await {
                tracing::warn!(error = %e, "clock resync after -1021 failed; the order goes again once anyway");
            }
            RestOutcome::Ok { order_id: 0 }
        }
        RestJob::Reconcile | RestJob::Note(_) => RestOutcome::Ok { order_id: 0 },
    }
}

/// The engine thread's order entry does not log; its rare events are logged here, worded as the order gateway
/// worded them (operators and tests look for these lines).
fn note(n: EntryNote, client: &RestClient) {
    match n {
        EntryNote::Connected => tracing::info!(
            "order entry: WebSocket API connected on the engine thread ({})",
            aegis_engine::net::ws::redact(&client.endpoints.wsapi)
        ),
        EntryNote::Unavailable => {
            tracing::warn!("order entry: WebSocket API unavailable; using REST until it is back")
        }
        EntryNote::LoggedOn => {
            tracing::info!("order entry: WebSocket API session logged on (Ed25519)")
        }
        EntryNote::LogonRefused => {
            tracing::warn!("session.logon refused; signing each request instead")
        }
        EntryNote::Unknown(cid) => tracing::warn!(client_id = %cid, "order outcome unknown: querying it by client id before anything else"),
        EntryNote::Found(cid) => {
            tracing::info!(client_id = %cid, "unknown order found on the exchange: adopted")
        }
        EntryNote::Absent(cid) => tracing::info!(client_id = %cid, "unknown order not on the exchange (WebSocket API and REST agree): rejected"),
        EntryNote::Expired(cid) => tracing::error!(client_id = %cid, "order outcome still unknown after {UNKNOWN_DEADLINE:?} of queries: marked rejected, never resent; reconciliation compares with the exchange and adopts it if it exists"),
        EntryNote::Resync => tracing::warn!(
            "order refused for the clock (-1021): resyncing once and resending that order once"
        ),
        EntryNote::KeyRejected(code) => tracing::error!("Binance rejected the API key ({code}): new orders halted, staying up read-only; fix the key on Binance and restart (no automatic retry)"),
        EntryNote::RateLimited(ms) => tracing::warn!(
            "rate limited by Binance: new entries halted for {:?}",
            std::time::Duration::from_millis(ms)
        ),
        EntryNote::NearLimit {
            kind,
            count,
            limit,
            window_ms,
            wait_ms,
        } => tracing::warn!(
            "near Binance's {} limit ({count}/{limit} per {} s): new entries halted for {:?} until the window ends",
            kind.name(),
            window_ms / 1000,
            std::time::Duration::from_millis(wait_ms)
        ),
        EntryNote::RateWaitOver => {
            tracing::info!("rate limit wait over: new entries may resume")
        }
        EntryNote::Switched { in_flight, queried } => tracing::info!(
            in_flight,
            queried,
            "order entry: switched to the new API key (engine thread)"
        ),
    }
}

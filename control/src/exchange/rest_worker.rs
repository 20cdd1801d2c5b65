//! The REST side of order entry, off the engine thread. Order entry itself (WebSocket API `order.place` /
//! `order.cancel` / `order.status`, `session.logon`, the unknown-outcome timers) runs on the engine thread
//! (`aegis_engine::venue::binance::entry`); what must not block it comes here as a [`RestJob`] on a bounded
//! queue: the REST fallback placement while the WebSocket API is down, `GET /fapi/v1/order` status queries of
//! unknown orders, REST cancels, the clock resync after -1021, requests for a reconciliation round, and the
//! lines the engine thread wants in the log ([`EntryNote`]). On spot (the client `.on_market(Market::Spot)`)
//! the fallback placement is `POST /api/v3/order`, and an exit that cancels the symbol's resting stop
//! (`cancel_stop`) is `POST /api/v3/order/cancelReplace`, judged by its new-order leg ([`cancel_replace_outcome`]).
//!
//! A thread (`aegis-rest`) takes the jobs and runs each request as a task on the control runtime, so a slow
//! request never holds up the next one; each answer goes back to the engine as [`Inbound::Rest`] with the job
//! echoed and the outcome classified ([`RestOutcome`]). The thread ends when the engine's end of the queue is
//! gone.

use super::rest::{RestClient, RestError};
use super::resync::Slot;
use aegis_engine::sign::{
    CancelReplace, OrderEncoder, OrderRequest as WireOrder, RespType, WirePrecision,
};
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

/// Classifies a `POST /api/v3/order/cancelReplace` answer by its new-order leg, which decides the exit's fate
/// (the cancel may fail because the stop already triggered; the exit still stands or falls on its own): the
/// legs are in the body on 200 and in `data` on 409 (-2021) and 400 (-2022), which the client returns as `Ok`.
/// `SUCCESS` → placed, with `newOrderResponse.orderId`; `FAILURE` / `NOT_ATTEMPTED` → refused with
/// `newOrderResponse.code` (else the answer's own code). Other errors are classified as any REST answer.
pub fn cancel_replace_outcome(r: &Result<Value, RestError>) -> RestOutcome {
    let Ok(v) = r else {
        return outcome(r);
    };
    let legs = v.get("data").unwrap_or(v);
    let resp = legs.get("newOrderResponse");
    let code = |k: &Value| {
        k.get("code")
            .and_then(Value::as_i64)
            .and_then(|c| i32::try_from(c).ok())
    };
    match legs.get("newOrderResult").and_then(Value::as_str) {
        Some("SUCCESS") => RestOutcome::Ok {
            order_id: resp
                .and_then(|o| o.get("orderId"))
                .and_then(Value::as_u64)
                .unwrap_or(0),
        },
        Some(_) => RestOutcome::Refused {
            code: resp.and_then(code).or_else(|| code(v)).unwrap_or(-2022),
        },
        // No legs: not a cancel-replace answer we can read; whether the exit exists is not known.
        None => RestOutcome::Unknown,
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
        RestJob::Place {
            req,
            client_id,
            cancel_stop,
            ..
        } => {
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
            let mut enc = OrderEncoder::new(creds.signer.clone(), creds.api_key.clone(), 5000)
                .on_market(client.market());
            if let Some(stop) = cancel_stop {
                // Spot: the exit cancels the resting stop that locks the balance it sells, in one request.
                let c = CancelReplace {
                    cancel_client_id: stop,
                    cancel_new_client_id: None,
                };
                let q = match enc.rest_cancel_replace(&wire, p, &c, client.now_ms()) {
                    Ok(b) => String::from_utf8_lossy(b).into_owned(),
                    Err(_) => return RestOutcome::Refused { code: -1111 },
                };
                let r = client.cancel_replace_raw(&q).await;
                let o = cancel_replace_outcome(&r);
                if !matches!(o, RestOutcome::Ok { .. }) {
                    tracing::warn!(client_id = %client_id, stop = %stop, outcome = ?o, "REST cancel-replace of a spot exit did not place it");
                }
                return o;
            }
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

/// Waits up to a second for the REST worker to end: it ends by itself once the engine (its queue's sender) is
/// gone, so a stop never waits for long.
pub fn wait_ended(worker: std::thread::JoinHandle<()>) {
    let t = std::time::Instant::now();
    while !worker.is_finished() && t.elapsed() < std::time::Duration::from_secs(1) {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// The wire precision (tick and step) of every symbol, for order encoding; `Err` names a symbol whose filters
/// cannot be written exactly.
pub fn precision_of(
    specs: &[aegis_engine::SymbolSpec],
) -> Result<HashMap<Symbol, WirePrecision>, String> {
    specs
        .iter()
        .map(|s| {
            WirePrecision::new(s.filters.tick_size, s.filters.step_size)
                .map(|p| (s.symbol, p))
                .map_err(|e| format!("{}: {e}", s.symbol))
        })
        .collect()
}

/// Order entry on the engine thread (the WebSocket API of `client`'s market, read into a 64 KiB buffer: answers
/// are small) with this REST worker behind it; `switch` lets a key switch reach the engine's encoder. Returns
/// the worker's thread.
#[allow(clippy::too_many_arguments)] // The start-up wiring of both markets, one call each.
pub fn attach_entry(
    link: &aegis_engine::venue::binance::LiveLink,
    client: &RestClient,
    rt: &tokio::runtime::Handle,
    inbound: crossbeam_channel::Sender<Inbound>,
    precision: HashMap<Symbol, WirePrecision>,
    slot: Arc<Slot>,
    tls: Option<Arc<rustls::ClientConfig>>,
    switch: Option<crossbeam_channel::Receiver<aegis_engine::venue::binance::entry::EntrySwitch>>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let creds = client
        .credentials()
        .ok_or_else(|| std::io::Error::other("order entry needs a key"))?;
    let (job_tx, job_rx) = crossbeam_channel::bounded(JOB_CAPACITY);
    let url = match client.market() {
        aegis_shared::Market::Futures => client.endpoints.wsapi.clone(),
        aegis_shared::Market::Spot => client.endpoints.spot_wsapi.clone(),
    };
    let mut ws = aegis_engine::net::mio_ws::WsClientConfig::new(url);
    ws.tls = tls;
    ws.read_capacity = 64 * 1024;
    link.attach_entry(aegis_engine::venue::binance::entry::EntryConfig {
        ws,
        encoder: aegis_engine::sign::OrderEncoder::new(
            creds.signer.clone(),
            creds.api_key.clone(),
            super::connect::WS_API_RECV_WINDOW_MS,
        )
        .on_market(client.market()),
        precision: precision.iter().map(|(s, p)| (*s, *p)).collect(),
        clock: Arc::new(super::rest::ClientClock(client.clone())),
        rest: job_tx,
        stats: Arc::new(aegis_engine::venue::binance::entry::EntryStats::default()),
        switch,
    });
    start(client.clone(), rt.clone(), job_rx, inbound, precision, slot)
}

/// The engine thread's order entry does not log; its rare events are logged here, worded as the order gateway
/// worded them (operators and tests look for these lines).
fn note(n: EntryNote, client: &RestClient) {
    match n {
        EntryNote::Connected => tracing::info!(
            "order entry: WebSocket API connected on the engine thread ({})",
            aegis_engine::net::ws::redact(match client.market() {
                aegis_shared::Market::Futures => &client.endpoints.wsapi,
                aegis_shared::Market::Spot => &client.endpoints.spot_wsapi,
            })
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The three shapes of Binance's `POST /api/v3/order/cancelReplace` answer (the client returns the 409 and
    /// 400 ones as `Ok` because they carry `data`): the new-order leg decides.
    #[test]
    fn a_cancel_replace_is_judged_by_its_new_order_leg() {
        let ok = json!({"cancelResult": "SUCCESS", "newOrderResult": "SUCCESS",
            "cancelResponse": {"symbol": "BTCUSDT", "orderId": 125690984230_u64, "status": "CANCELED"},
            "newOrderResponse": {"symbol": "BTCUSDT", "orderId": 12569099453_u64, "status": "NEW"}});
        assert_eq!(
            cancel_replace_outcome(&Ok(ok)),
            RestOutcome::Ok {
                order_id: 12569099453
            }
        );
        let stop_gone = json!({"code": -2021, "msg": "Order cancel-replace partially failed.",
            "data": {"cancelResult": "FAILURE", "newOrderResult": "SUCCESS",
                "cancelResponse": {"code": -2011, "msg": "Unknown order sent."},
                "newOrderResponse": {"symbol": "BTCUSDT", "orderId": 12569099453_u64, "status": "NEW"}}});
        assert_eq!(
            cancel_replace_outcome(&Ok(stop_gone)),
            RestOutcome::Ok {
                order_id: 12569099453
            }
        );
        let refused = json!({"code": -2021, "msg": "Order cancel-replace partially failed.",
            "data": {"cancelResult": "SUCCESS", "newOrderResult": "FAILURE",
                "cancelResponse": {"symbol": "BTCUSDT", "orderId": 125690984230_u64, "status": "CANCELED"},
                "newOrderResponse": {"code": -2010, "msg": "Account has insufficient balance for requested action."}}});
        assert_eq!(
            cancel_replace_outcome(&Ok(refused)),
            RestOutcome::Refused { code: -2010 }
        );
        let both = json!({"code": -2022, "msg": "Order cancel-replace failed.",
            "data": {"cancelResult": "FAILURE", "newOrderResult": "FAILURE",
                "cancelResponse": {"code": -2011, "msg": "Unknown order sent."},
                "newOrderResponse": {"code": -2010, "msg": "Order would immediately match and take."}}});
        assert_eq!(
            cancel_replace_outcome(&Ok(both)),
            RestOutcome::Refused { code: -2010 }
        );
        let not = json!({"code": -2022, "msg": "Order cancel-replace failed.",
            "data": {"cancelResult": "FAILURE", "newOrderResult": "NOT_ATTEMPTED",
                "cancelResponse": {"code": -2011, "msg": "Unknown order sent."}, "newOrderResponse": null}});
        assert_eq!(
            cancel_replace_outcome(&Ok(not)),
            RestOutcome::Refused { code: -2022 }
        );
        assert_eq!(cancel_replace_outcome(&Ok(json!({}))), RestOutcome::Unknown);
        assert_eq!(
            cancel_replace_outcome(&Err(RestError::NoKey)),
            RestOutcome::NotSent
        );
    }
}

//! Live updates over Server-Sent Events: `GET /api/events` sends a `snapshot` event whenever the read model
//! changes (checked every `live_interval`) and at least every 15 s. The stream ends when the session expires
//! or is revoked, or the account is deleted or changed (checked every 5 s), so a logged-out tab stops receiving data.

use super::session::Session;
use super::WebState;
use crate::auth::Claims;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use std::convert::Infallible;
use std::time::{Duration, Instant};

struct Live {
    state: WebState,
    claims: Option<Claims>,
    last_seq: u64,
    last_sent: Option<Instant>,
    last_check: Instant,
}

const RESEND: Duration = Duration::from_secs(15);
const RECHECK: Duration = Duration::from_secs(5);

pub(super) async fn events(
    State(state): State<WebState>,
    session: Session,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let interval = state.config().live_interval;
    let live = Live {
        state,
        claims: session.claims,
        last_seq: 0,
        last_sent: None,
        last_check: Instant::now(),
    };
    let stream = futures_util::stream::unfold(live, move |mut l| async move {
        loop {
            if l.last_sent.is_some() {
                tokio::time::sleep(interval).await;
            }
            if let Some(c) = &l.claims {
                if c.exp <= crate::auth::token::now_secs() {
                    return None;
                }
                if l.last_check.elapsed() >= RECHECK {
                    l.last_check = Instant::now();
                    if l.state.users().is_revoked(&c.jti).await.unwrap_or(true) {
                        return None;
                    }
                    // Deleted, re-created, disabled or changed since the stream opened: end it.
                    let current = l.state.users().find(&c.sub).await.ok().flatten();
                    if !current.is_some_and(|u| super::session::bound_to(c, &u)) {
                        return None;
                    }
                }
            }
            let snap = l.state.backend().snapshot();
            let due = l.last_sent.is_none_or(|t| t.elapsed() >= RESEND);
            if snap.seq != l.last_seq || due {
                l.last_seq = snap.seq;
                l.last_sent = Some(Instant::now());
                let ev = match Event::default().event("snapshot").json_data(&snap) {
                    Ok(e) => e,
                    Err(_) => Event::default().event("error").data("snapshot unavailable"),
                };
                return Some((Ok(ev), l));
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

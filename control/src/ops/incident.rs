//! `aegis incident-report --since 1h` (guide §7.1 "analyse logs for unusual activity"): one file with the
//! window's orders, fills, errors (rejections, halts, breaker trips, engine alerts), operator commands, key
//! events and — when Postgres is configured — the API access log and the audited key events.
//!
//! Engine events carry market time: in a simulation or a replay it differs from the wall clock, so an engine event
//! also counts as inside the window when the journal's last wall-clock record before it (a session start or a
//! command) is inside.
//!
//! Sources: the journal (`DATA_DIR/journal`, always), `DATA_DIR/key-events.jsonl`, and Postgres
//! (`api_access_log`, `key_events`) when `DATABASE_URL` is set and reachable. The journal is read, never
//! written, so the report can be made while the bot runs. Nothing in it is secret: no keys, no tokens.

use super::keys::{self as keymod, KeyEvent};
use crate::journal::{self, JournalReader, JournalRecord};
use aegis_shared::event::{EngineEvent, EngineState};
use serde::Serialize;
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::path::Path;

/// Everything of one window.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Incident {
    /// Window start (ms since epoch).
    pub since_ms: u64,
    /// Window end.
    pub until_ms: u64,
    /// Runs that started in the window (`ts_ms`, session id, trading mode).
    pub sessions: Vec<Value>,
    /// Order events.
    pub orders: Vec<Value>,
    /// Fills.
    pub fills: Vec<Value>,
    /// Rejections, halts, breaker trips, engine alerts.
    pub errors: Vec<Value>,
    /// Operator and system commands (who, what).
    pub commands: Vec<Value>,
    /// Key events (local log, plus Postgres when configured).
    pub key_events: Vec<Value>,
    /// API access log rows (Postgres only).
    pub api_access: Vec<Value>,
    /// What could not be included and why.
    pub notes: Vec<String>,
}

fn ev_ts(e: &EngineEvent) -> u64 {
    match e {
        EngineEvent::Order(o) => o.ts_ms,
        EngineEvent::Fill(f) => f.ts_ms,
        EngineEvent::Position(p) => p.ts_ms,
        EngineEvent::Funding(f) => f.ts_ms,
        EngineEvent::Liquidation(l) => l.ts_ms,
        EngineEvent::Breaker(b) => b.ts_ms,
        EngineEvent::State { ts_ms, .. }
        | EngineEvent::Alert { ts_ms, .. }
        | EngineEvent::Heartbeat { ts_ms, .. } => *ts_ms,
        EngineEvent::Stats(s) => s.ts_ms,
    }
}

impl Incident {
    /// Sorts journal records of `[since, until]` into the sections.
    pub fn from_records<'a>(
        records: impl IntoIterator<Item = &'a JournalRecord>,
        since_ms: u64,
        until_ms: u64,
    ) -> Self {
        let mut inc = Incident {
            since_ms,
            until_ms,
            ..Default::default()
        };
        let inside = |t: u64| t >= since_ms && t <= until_ms;
        // Engine events carry market time, which runs ahead of the wall clock in a fast simulation and lags far
        // behind in a replay. So an engine event is in the window when its own time is, or when the last
        // wall-clock record before it (a session start or a command) is.
        let mut wall = 0u64;
        for r in records {
            match r {
                JournalRecord::Session(s) => wall = s.ts_ms,
                JournalRecord::Command(c) => wall = c.ts_ms,
                JournalRecord::Engine(_) => {}
            }
            let engine_inside = |t: u64| inside(t) || inside(wall);
            match r {
                JournalRecord::Session(s) if inside(s.ts_ms) => inc
                    .sessions
                    .push(json!({"ts_ms": s.ts_ms, "session": s.id, "trading_mode": s.trading_mode, "version": s.version})),
                JournalRecord::Command(c) if inside(c.ts_ms) => inc
                    .commands
                    .push(json!({"ts_ms": c.ts_ms, "command": c.command, "source": c.source})),
                JournalRecord::Engine(e) if engine_inside(ev_ts(e)) => {
                    let v = serde_json::to_value(e).unwrap_or(Value::Null);
                    match e {
                        EngineEvent::Order(o) => {
                            if o.reject_code != 0 {
                                inc.errors.push(v.clone());
                            }
                            inc.orders.push(v);
                        }
                        EngineEvent::Fill(_) => inc.fills.push(v),
                        EngineEvent::Breaker(_)
                        | EngineEvent::Alert { .. }
                        | EngineEvent::State {
                            state: EngineState::Halted { .. },
                            ..
                        } => inc.errors.push(v),
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        inc
    }

    /// Adds key events from the local log.
    pub fn add_key_events(&mut self, evs: &[KeyEvent]) {
        for e in evs
            .iter()
            .filter(|e| e.ts_ms >= self.since_ms && e.ts_ms <= self.until_ms)
        {
            let mut v = serde_json::to_value(e).unwrap_or(Value::Null);
            v["source"] = json!("key-events.jsonl");
            self.key_events.push(v);
        }
    }

    /// JSON document.
    pub fn json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    /// Markdown document.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "# Aegis incident report\n");
        let _ = writeln!(
            s,
            "Window: {} .. {} (UTC)  \nGenerated by `aegis incident-report` at {}.\n",
            utc(self.since_ms),
            utc(self.until_ms),
            utc(journal::now_ms())
        );
        let _ = writeln!(
            s,
            "| section | entries |\n|---|---|\n| bot starts | {} |\n| orders | {} |\n| fills | {} |\n| errors (rejections, halts, breaker trips, alerts) | {} |\n| commands | {} |\n| key events | {} |\n| API access | {} |\n",
            self.sessions.len(),
            self.orders.len(),
            self.fills.len(),
            self.errors.len(),
            self.commands.len(),
            self.key_events.len(),
            self.api_access.len()
        );
        if !self.notes.is_empty() {
            let _ = writeln!(s, "Notes:");
            for n in &self.notes {
                let _ = writeln!(s, "- {n}");
            }
            s.push('\n');
        }
        section(&mut s, "Bot starts", &self.sessions);
        section(
            &mut s,
            "Errors (rejections, halts, breaker trips, alerts)",
            &self.errors,
        );
        section(&mut s, "Commands", &self.commands);
        section(&mut s, "Key events", &self.key_events);
        section(&mut s, "Fills", &self.fills);
        section(&mut s, "Orders", &self.orders);
        section(&mut s, "API access", &self.api_access);
        s
    }
}

fn utc(ms: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

fn section(s: &mut String, title: &str, rows: &[Value]) {
    let _ = writeln!(s, "## {title} ({})\n", rows.len());
    if rows.is_empty() {
        let _ = writeln!(s, "none\n");
        return;
    }
    // One JSON object per line: exact values, greppable, and the same shape as the journal.
    let _ = writeln!(s, "```");
    for r in rows {
        let ts = r
            .get("ts_ms")
            .or_else(|| r.pointer("/ts_ms"))
            .and_then(|t| t.as_u64())
            .or_else(|| first_ts(r));
        let _ = writeln!(s, "{} {}", ts.map(utc).unwrap_or_else(|| "-".into()), r);
    }
    let _ = writeln!(s, "```\n");
}

fn first_ts(v: &Value) -> Option<u64> {
    v.as_object()?
        .values()
        .find_map(|x| x.get("ts_ms").and_then(|t| t.as_u64()))
}

/// Reads the journal of `data_dir` for the window.
pub fn from_journal(data_dir: &Path, since_ms: u64, until_ms: u64) -> Result<Incident, String> {
    let dir = journal::dir_in(data_dir);
    let mut reader = JournalReader::open(&dir).map_err(|e| e.to_string())?;
    let mut recs = Vec::new();
    let mut bad = 0usize;
    for e in reader.records_from(0).map_err(|e| e.to_string())? {
        match e {
            Ok(e) => recs.push(e.record),
            // A torn tail while the bot writes: report what is readable.
            Err(_) => {
                bad += 1;
                break;
            }
        }
    }
    let mut inc = Incident::from_records(recs.iter(), since_ms, until_ms);
    if bad > 0 {
        inc.notes.push(
            "the journal's tail could not be read (being written?); report stops there".into(),
        );
    }
    inc.add_key_events(&keymod::read_events(data_dir, since_ms));
    Ok(inc)
}

/// The rows of `sql` in the incident window, as JSON: `$1` and `$2` are its bounds in seconds since the epoch.
async fn in_window(
    c: &tokio_postgres::Client,
    sql: &str,
    (since, until): (f64, f64),
    row: fn(&tokio_postgres::Row) -> Value,
) -> Result<Vec<Value>, String> {
    let rows = c
        .query(sql, &[&since, &until])
        .await
        .map_err(|e| e.to_string())?;
    Ok(rows.iter().map(row).collect())
}

/// Adds the API access log and audited key events of the window from Postgres.
pub async fn add_from_db(inc: &mut Incident, url: &str) {
    let fut = async {
        let c = crate::db::connect(url).await.map_err(|e| e.to_string())?;
        let window = (inc.since_ms as f64 / 1000.0, inc.until_ms as f64 / 1000.0);
        let access = in_window(
            &c,
            "SELECT (extract(epoch FROM ts) * 1000)::bigint, actor, source_ip, method, path, status::int \
             FROM api_access_log WHERE ts >= to_timestamp($1) AND ts <= to_timestamp($2) ORDER BY ts",
            window,
            |r| {
                json!({"ts_ms": r.get::<_, i64>(0), "actor": r.get::<_, Option<String>>(1),
                       "source_ip": r.get::<_, String>(2), "method": r.get::<_, String>(3),
                       "path": r.get::<_, String>(4), "status": r.get::<_, i32>(5)})
            },
        )
        .await?;
        let keys = in_window(
            &c,
            "SELECT (extract(epoch FROM ts) * 1000)::bigint, actor, source_ip, event, environment, key_hint, detail::text \
             FROM key_events WHERE ts >= to_timestamp($1) AND ts <= to_timestamp($2) ORDER BY ts",
            window,
            |r| {
                json!({"ts_ms": r.get::<_, i64>(0), "actor": r.get::<_, String>(1),
                       "source_ip": r.get::<_, String>(2), "event": r.get::<_, String>(3),
                       "environment": r.get::<_, String>(4), "fingerprint": r.get::<_, Option<String>>(5),
                       "detail": serde_json::from_str::<Value>(&r.get::<_, String>(6)).unwrap_or(Value::Null),
                       "source": "postgres"})
            },
        )
        .await?;
        Ok::<_, String>((access, keys))
    };
    match tokio::time::timeout(std::time::Duration::from_secs(5), fut).await {
        Ok(Ok((access, keys))) => {
            inc.api_access = access;
            inc.key_events.extend(keys);
        }
        Ok(Err(e)) => inc.notes.push(format!(
            "Postgres not read (API access log, audited key events): {e}"
        )),
        Err(_) => inc
            .notes
            .push("Postgres not read: no answer within 5 s".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::test_support::fill;
    use crate::journal::{CommandRecord, SessionRecord};
    use aegis_shared::event::{AlertKind, HaltReason};
    use aegis_shared::mode::Side;
    use aegis_shared::{Command, TradingMode};

    #[test]
    fn window_sorts_records_into_sections() {
        let t = 1_700_000_000_000u64;
        let recs = [
            JournalRecord::Session(SessionRecord {
                id: 1,
                ts_ms: t - 10_000_000,
                trading_mode: TradingMode::Paper,
                version: "x".into(),
            }),
            fill_rec(t - 5_000_000),
            JournalRecord::Command(CommandRecord {
                ts_ms: t + 1,
                command: Command::Kill { flatten: true },
                source: "cli:local-token".into(),
            }),
            JournalRecord::Engine(EngineEvent::Alert {
                ts_ms: t + 2,
                kind: AlertKind::KillSwitch,
            }),
            JournalRecord::Engine(EngineEvent::State {
                ts_ms: t + 3,
                state: EngineState::Halted {
                    reason: HaltReason::KillSwitch,
                },
            }),
            fill_rec(t + 4),
        ];
        let inc = Incident::from_records(recs.iter(), t, t + 10);
        assert_eq!(inc.sessions.len(), 0, "session outside the window");
        assert_eq!(inc.fills.len(), 1);
        assert_eq!(inc.errors.len(), 2);
        assert_eq!(inc.commands[0]["source"], "cli:local-token");
        let md = inc.markdown();
        assert!(md.contains("## Fills (1)"), "{md}");
        assert!(md.contains("kill_switch"), "{md}");
        assert_eq!(inc.json()["commands"][0]["command"]["flatten"], true);
    }

    fn fill_rec(ts: u64) -> JournalRecord {
        let mut e = fill(1, Side::Buy, "100", "0");
        if let EngineEvent::Fill(f) = &mut e {
            f.ts_ms = ts;
        }
        JournalRecord::Engine(e)
    }
}

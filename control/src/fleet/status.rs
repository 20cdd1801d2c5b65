//! `aegis fleet status`: the bots sharing this database, side by side, from the lease table.

use super::lease::LeaseRow;

/// The table `aegis fleet status` prints: one line per key, running instances first.
pub fn table(rows: &[LeaseRow]) -> String {
    let head = [
        "INSTANCE",
        "HOST",
        "PID",
        "KEY",
        "ENVIRONMENT",
        "HEARTBEAT",
        "EXPIRES IN",
        "STATE",
        "ENTRIES",
        "SINCE",
    ];
    let lines: Vec<[String; 10]> = rows
        .iter()
        .map(|r| {
            [
                r.instance.clone(),
                r.host.clone(),
                r.pid.to_string(),
                r.key_fingerprint.clone(),
                r.environment.clone(),
                format!("{:.1} s ago", r.heartbeat_age_ms as f64 / 1000.0),
                if r.is_held() {
                    format!("{:.1} s", r.expires_in_ms as f64 / 1000.0)
                } else {
                    "-".to_string()
                },
                r.status().to_string(),
                if r.status() != "running" {
                    "-"
                } else if r.entries_halted {
                    "HALTED"
                } else {
                    "trading"
                }
                .to_string(),
                r.acquired_at.clone(),
            ]
        })
        .collect();
    let mut width = head.map(str::len);
    for l in &lines {
        for (w, c) in width.iter_mut().zip(l.iter()) {
            *w = (*w).max(c.chars().count());
        }
    }
    let fmt = |cells: &[String]| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(width.iter()).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  "));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = fmt(&head.map(String::from));
    for l in &lines {
        out.push_str(&fmt(l));
    }
    if rows.is_empty() {
        out.push_str("(no bot has taken a fleet lease in this database yet)\n");
    }
    let running = rows.iter().filter(|r| r.status() == "running").count();
    out.push_str(&format!(
        "{running} running, {} expired, {} released\n",
        rows.iter().filter(|r| r.status() == "expired").count(),
        rows.iter().filter(|r| r.status() == "released").count()
    ));
    out
}

//! A small hand-written SVG chart of a backtest: mark-to-market equity (top panel) and drawdown (bottom panel)
//! per mode plus the total, with axes, labels and a legend. Numbers are written with fixed decimals, so the same
//! report always gives the same bytes. `aegis backtest --plot` writes it; the engine, which only produces the
//! report, does not need it (moved here from `aegis_engine::backtest`).

use aegis_engine::backtest::{utc, BacktestReport, ModeReport};
use std::fmt::Write;

const W: f64 = 1000.0;
const H: f64 = 700.0;
const LEFT: f64 = 90.0;
const RIGHT: f64 = 180.0;
const EQ_TOP: f64 = 60.0;
const EQ_BOTTOM: f64 = 360.0;
const DD_TOP: f64 = 420.0;
const DD_BOTTOM: f64 = 640.0;

fn color(name: &str) -> &'static str {
    match name {
        "ultra_fast_scalp" => "#d62728",
        "scalp" => "#1f77b4",
        "swing" => "#2ca02c",
        "position" => "#9467bd",
        _ => "#222222",
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Tick label for a value, with as many decimals as the axis range needs.
fn label(v: f64, range: f64) -> String {
    let decimals = if range >= 100.0 {
        0
    } else if range >= 1.0 {
        2
    } else {
        ((-range.log10()).ceil() as usize + 2).min(8)
    };
    let s = format!("{v:.decimals$}");
    // "-0.00" reads oddly on an axis.
    if s.trim_start_matches('-')
        .chars()
        .all(|c| c == '0' || c == '.')
    {
        s.trim_start_matches('-').to_owned()
    } else {
        s
    }
}

struct Axis {
    t0: f64,
    t1: f64,
    lo: f64,
    hi: f64,
    top: f64,
    bottom: f64,
}

impl Axis {
    fn x(&self, t: f64) -> f64 {
        LEFT + (t - self.t0) / (self.t1 - self.t0) * (W - LEFT - RIGHT)
    }
    fn y(&self, v: f64) -> f64 {
        self.bottom - (v - self.lo) / (self.hi - self.lo) * (self.bottom - self.top)
    }
}

fn series(r: &BacktestReport) -> Vec<&ModeReport> {
    r.modes.iter().chain(std::iter::once(&r.total)).collect()
}

fn panel(out: &mut String, ax: &Axis, title: &str, unit: &str) {
    let _ = writeln!(
        out,
        r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="#fafafa" stroke="#999999"/>"##,
        LEFT,
        ax.top,
        W - LEFT - RIGHT,
        ax.bottom - ax.top
    );
    let _ = writeln!(
        out,
        r##"<text x="{:.1}" y="{:.1}" font-size="14" font-weight="bold">{}</text>"##,
        LEFT,
        ax.top - 8.0,
        esc(title)
    );
    let range = ax.hi - ax.lo;
    for i in 0..=4 {
        let v = ax.lo + range * f64::from(i) / 4.0;
        let y = ax.y(v);
        let _ = writeln!(
            out,
            r##"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#dddddd"/>"##,
            LEFT,
            W - RIGHT
        );
        let _ = writeln!(
            out,
            r##"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end">{}</text>"##,
            LEFT - 6.0,
            y + 4.0,
            esc(&label(v, range))
        );
    }
    let _ = writeln!(
        out,
        r##"<text x="18" y="{:.1}" font-size="12" text-anchor="middle" transform="rotate(-90 18 {:.1})">{}</text>"##,
        (ax.top + ax.bottom) / 2.0,
        (ax.top + ax.bottom) / 2.0,
        esc(unit)
    );
    for i in 0..=4 {
        let t = ax.t0 + (ax.t1 - ax.t0) * f64::from(i) / 4.0;
        let x = ax.x(t);
        let _ = writeln!(
            out,
            r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="#999999"/>"##,
            ax.bottom,
            ax.bottom + 5.0
        );
        let stamp = utc(t.max(0.0) as u64);
        let _ = writeln!(
            out,
            r##"<text x="{x:.1}" y="{:.1}" font-size="11" text-anchor="middle">{}</text>"##,
            ax.bottom + 18.0,
            esc(&stamp[..16].replace('T', " "))
        );
    }
}

fn path(out: &mut String, ax: &Axis, m: &ModeReport, kind: &str, value: impl Fn(usize) -> f64) {
    let mut d = String::new();
    for (i, p) in m.curve.iter().enumerate() {
        let _ = write!(
            d,
            "{}{:.1} {:.1}",
            if i == 0 { "M" } else { " L" },
            ax.x(p.t_ms as f64),
            ax.y(value(i))
        );
    }
    if d.is_empty() {
        // No point: keep one (empty-length) path per mode so the chart's structure does not depend on activity.
        let _ = write!(d, "M{:.1} {:.1}", LEFT, ax.y(0.0));
    }
    let style = if m.mode == "total" {
        r#"stroke-width="2.5" stroke-dasharray="6 4""#
    } else {
        r#"stroke-width="1.5""#
    };
    let _ = writeln!(
        out,
        r#"<path class="{kind}" data-mode="{}" d="{d}" fill="none" stroke="{}" {style}/>"#,
        esc(&m.mode),
        color(&m.mode)
    );
}

/// Renders the chart (see the module docs).
pub fn render(r: &BacktestReport) -> String {
    let all = series(r);
    let (mut t0, mut t1) = (r.run.first_event_ms as f64, r.run.last_event_ms as f64);
    if t1 <= t0 {
        t1 = t0 + 1.0;
    }
    if t0 < 0.0 {
        t0 = 0.0;
    }
    let (mut elo, mut ehi, mut dhi) = (0.0f64, 0.0f64, 0.0f64);
    for m in &all {
        for p in &m.curve {
            let e = p.equity.to_f64_lossy();
            elo = elo.min(e);
            ehi = ehi.max(e);
            dhi = dhi.max(p.drawdown.to_f64_lossy());
        }
    }
    let pad = |lo: f64, hi: f64| {
        let span = (hi - lo).max(1e-8);
        (lo - span * 0.05, hi + span * 0.05)
    };
    let (elo, ehi) = pad(elo, ehi);
    let (dlo, _) = pad(-dhi, 0.0);
    let eq = Axis {
        t0,
        t1,
        lo: elo,
        hi: ehi,
        top: EQ_TOP,
        bottom: EQ_BOTTOM,
    };
    let dd = Axis {
        t0,
        t1,
        lo: dlo,
        hi: 0.0,
        top: DD_TOP,
        bottom: DD_BOTTOM,
    };
    let unit = r.run.quote_assets.join("+");
    let mut out = String::with_capacity(64 * 1024);
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W:.0}" height="{H:.0}" viewBox="0 0 {W:.0} {H:.0}" font-family="sans-serif">"#
    );
    let _ = writeln!(
        out,
        r##"<rect width="100%" height="100%" fill="#ffffff"/>"##
    );
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="28" font-size="16" font-weight="bold">{}</text>"#,
        LEFT,
        esc(&format!(
            "Aegis backtest: {} messages, {} .. {}",
            r.run.messages,
            r.run.first_event_utc[..16].replace('T', " "),
            r.run.last_event_utc[..16].replace('T', " ")
        ))
    );
    panel(
        &mut out,
        &eq,
        "Equity (realized net PnL + open positions at mid)",
        &unit,
    );
    panel(&mut out, &dd, "Drawdown from running peak", &unit);
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" font-size="12" text-anchor="middle">time (UTC)</text>"#,
        (LEFT + W - RIGHT) / 2.0,
        H - 20.0
    );
    // The total first, dashed, so a mode that makes up the whole total still shows on top of it.
    for m in all.iter().rev() {
        path(&mut out, &eq, m, "equity", |i| {
            m.curve[i].equity.to_f64_lossy()
        });
        path(&mut out, &dd, m, "drawdown", |i| {
            -m.curve[i].drawdown.to_f64_lossy()
        });
    }
    let lx = W - RIGHT + 15.0;
    let _ = writeln!(
        out,
        r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="#ffffff" stroke="#999999"/>"##,
        lx - 5.0,
        EQ_TOP,
        RIGHT - 20.0,
        20.0 * all.len() as f64 + 10.0
    );
    for (i, m) in all.iter().enumerate() {
        let y = EQ_TOP + 18.0 + 20.0 * i as f64;
        let _ = writeln!(
            out,
            r#"<line x1="{lx:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{}" stroke-width="3"{}/>"#,
            y - 4.0,
            lx + 20.0,
            y - 4.0,
            color(&m.mode),
            if m.mode == "total" {
                r#" stroke-dasharray="6 4""#
            } else {
                ""
            }
        );
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{y:.1}" font-size="12">{}</text>"#,
            lx + 26.0,
            esc(&m.mode)
        );
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_fit_the_range() {
        assert_eq!(label(1234.567, 500.0), "1235");
        assert_eq!(label(-0.0001, 0.5), "0.000");
        assert_eq!(label(0.0123, 0.05), "0.0123");
        assert_eq!(esc("a<b&\"c\">"), "a&lt;b&amp;&quot;c&quot;&gt;");
    }
}

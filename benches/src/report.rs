//! Reads criterion's results and describes the machine, for `REPORT.md`.

use std::path::{Path, PathBuf};

/// One criterion result.
#[derive(Debug, Clone)]
pub struct BenchResult {
    /// `group/function` as criterion names it.
    pub id: String,
    /// Median time per iteration, nanoseconds.
    pub median_ns: f64,
    /// Throughput elements per iteration, when the bench declared one.
    pub elements: Option<u64>,
}

/// The workspace's target directory (`CARGO_TARGET_DIR` or `<workspace>/target`).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n == "new") {
                out.push(p);
            } else {
                walk(&p, out);
            }
        }
    }
}

/// Every result under `target/criterion` (the latest run of each bench), sorted by id.
pub fn criterion_results(target: &Path) -> Vec<BenchResult> {
    let mut dirs = Vec::new();
    walk(&target.join("criterion"), &mut dirs);
    let mut out = Vec::new();
    for d in dirs {
        let (Ok(b), Ok(e)) = (
            std::fs::read_to_string(d.join("benchmark.json")),
            std::fs::read_to_string(d.join("estimates.json")),
        ) else {
            continue;
        };
        let (Ok(b), Ok(e)) = (
            serde_json::from_str::<serde_json::Value>(&b),
            serde_json::from_str::<serde_json::Value>(&e),
        ) else {
            continue;
        };
        let (Some(id), Some(median)) = (
            b["full_id"].as_str(),
            e["median"]["point_estimate"].as_f64(),
        ) else {
            continue;
        };
        out.push(BenchResult {
            id: id.to_string(),
            median_ns: median,
            elements: b["throughput"]["Elements"].as_u64(),
        });
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

/// `nproc`, the CPU model and the kernel, as one line.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    // Counted from /proc/cpuinfo, not the thread's affinity (the harness pins itself to one core).
    let nproc = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown", |(_, v)| v.trim())
        .to_string();
    let flags = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("flags"))
        .unwrap_or("");
    let sha_ni = flags.split_whitespace().any(|f| f == "sha_ni");
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "nproc {nproc}, CPU \"{model}\" (sha_ni: {}), Linux {}",
        if sha_ni { "yes" } else { "no" },
        kernel.trim()
    )
}

/// Formats nanoseconds for humans.
pub fn fmt_ns(ns: f64) -> String {
    if ns >= 1_000_000.0 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1_000.0 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.1} ns")
    }
}

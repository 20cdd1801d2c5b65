//! The control plane's imports run one way (issue 12, item 6).
//!
//! Reads every `.rs` file under `control/src`, collects the references between the crate's top-level modules
//! (`use crate::x::…`, grouped `use crate::{x, y}`, inline paths like `crate::x::f(…)`, and `super::…` that
//! climbs to the crate root), and checks that
//! - the graph has no cycle (a cycle is printed module by module, with the file and line of every edge), and
//! - every edge points to the same or a lower layer of [`LAYERS`], the order `control/src/lib.rs` documents.
//!
//! The same is checked for the submodules of `control/src/exchange` ([`EXCHANGE_LAYERS`]), where `super::x`
//! and `crate::exchange::x` name a sibling and bare `x::…` paths in `exchange/mod.rs` name its children.
//!
//! Test code (`#[cfg(test)]` items and the files they declare) is left out: a test may reach any module for its
//! fixtures without making the production code circular.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The top-level modules of `control/src`, lowest layer first. A module may use modules of its own layer or of
/// lower ones, never of a higher one. Keep in sync with the module doc of `control/src/lib.rs`.
const LAYERS: &[&[&str]] = &[
    // Settings and plumbing: arguments, `.env` + environment, tracing.
    &["cli", "logging", "config"],
    // The journal and the ledger rebuilt from it (`journal::Ledger`).
    &["journal"],
    // Services that know nothing of the running bot: TLS, alert delivery, Postgres, users, preflight checks.
    &["tls", "alerts", "db", "auth", "preflight"],
    // The fleet lease and request-weight budget (Postgres, alerts).
    &["fleet"],
    // What the control plane knows about the running bot.
    &["state"],
    // The HTTPS API and the dashboard's web server (read `state`, never drive the bot).
    &["api"],
    &["web"],
    // Alert triggers and the pump draining the engine's queues.
    &["watch"],
    &["pump"],
    // Starting the engine thread (paper), then Binance (testnet/live and paper on Binance data).
    &["engine_link"],
    &["exchange"],
    // Postgres inside `aegis run`, then the dashboard's backend glueing web, state and Postgres.
    &["db_link"],
    &["dashboard"],
    // The operating commands, `aegis run`, `aegis backtest`.
    &["ops"],
    &["runtime"],
    &["backtest_cmd"],
];

/// The submodules of `control/src/exchange` (`mod` is `exchange/mod.rs`, which wires them), lowest first.
const EXCHANGE_LAYERS: &[&[&str]] = &[
    // Endpoints and keys; our stop's algo-order shape; what a run stops after its engine.
    &["env", "algo", "threads"],
    // The REST client; what every start connects with.
    &["rest"],
    &[
        "connect",
        "startup",
        "funding",
        "paper_funding",
        "spot_info",
    ],
    // The reconciliation policy, then what applies it: the protective stops, the trade history.
    &["reconcile"],
    &["stops", "trades"],
    &["resync"],
    &["user_stream", "rest_worker", "gateway"],
    &["keyswitch"],
    &["paper_market"],
    // Binance spot on testnet/live: its reconciliation, user stream, stops and start-up (uses all of the above).
    &["spot"],
    &["mod"],
];

/// One reference: `from` uses `to` at `at` (file:line).
type Edges = BTreeMap<String, BTreeMap<String, Vec<String>>>;

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The source with comments, string and char literals blanked out (newlines kept, so line numbers hold).
fn strip(src: &str) -> String {
    let b: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    let blank = |c: char, out: &mut String| out.push(if c == '\n' { '\n' } else { ' ' });
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(b[i], &mut out);
                    i += 1;
                }
            }
        } else if c == 'r'
            && (next == Some('"') || next == Some('#'))
            && (i == 0 || !(b[i - 1].is_alphanumeric() || b[i - 1] == '_'))
        {
            // Raw string r"…" / r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= b.len() {
                    break;
                }
                if b[j] == '"' && (0..hashes).all(|k| b.get(j + 1 + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                blank(b[j], &mut out);
                j += 1;
            }
            out.push_str("\"\"");
            i = j;
        } else if c == '"' {
            i += 1;
            while i < b.len() && b[i] != '"' {
                if b[i] == '\\' {
                    i += 1;
                }
                if i < b.len() {
                    blank(b[i], &mut out);
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{1F}'), or a lifetime ('a), which stays.
            if next == Some('\\') {
                let mut j = i + 2;
                while j < b.len() && b[j] != '\'' {
                    j += 1;
                }
                i = j + 1;
                out.push_str("' '");
            } else if b.get(i + 2) == Some(&'\'') {
                i += 3;
                out.push_str("' '");
            } else {
                out.push(c);
                i += 1;
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// Blanks every `#[cfg(test)]` item; returns the names of `#[cfg(test)] mod x;` declared in other files.
fn strip_tests(src: &str) -> (String, Vec<String>) {
    const ATTR: &str = "#[cfg(test)]";
    let mut out = String::with_capacity(src.len());
    let mut test_files = Vec::new();
    let mut rest = src;
    while let Some(at) = rest.find(ATTR) {
        out.push_str(&rest[..at]);
        let item = &rest[at..];
        let mut p = ATTR.len();
        let bytes = item.as_bytes();
        let mut depth = 0usize;
        let mut end = item.len();
        // `mod name;`: a whole file of test code.
        let head: String = item[p..]
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ");
        let mut words = head.split(' ');
        if let (Some(w0), Some(w1)) = (words.next(), words.next()) {
            let (kw, name) = if w0 == "mod" {
                (w0, w1)
            } else {
                (w1, words.next().unwrap_or(""))
            };
            if kw == "mod" && name.ends_with(';') {
                test_files.push(name.trim_end_matches(';').to_string());
            }
        }
        while p < bytes.len() {
            match bytes[p] {
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = p + 1;
                        break;
                    }
                }
                b';' if depth == 0 => {
                    end = p + 1;
                    break;
                }
                _ => {}
            }
            p += 1;
        }
        out.extend(
            item[..end]
                .chars()
                .map(|c| if c == '\n' { '\n' } else { ' ' }),
        );
        rest = &item[end..];
    }
    out.push_str(rest);
    (out, test_files)
}

/// The module path of a file under `src`: `a.rs` and `a/mod.rs` are `[a]`, `a/b.rs` is `[a, b]`.
fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|s| s.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap();
    if last != "mod.rs" && last != "lib.rs" && last != "main.rs" {
        parts.push(last.trim_end_matches(".rs").to_string());
    }
    parts
}

fn ident_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

fn starts_path(line: &str, at: usize) -> bool {
    at == 0 || {
        let prev = line[..at].chars().next_back().unwrap();
        !(prev.is_alphanumeric() || prev == '_' || prev == ':' || prev == '$')
    }
}

/// Every absolute module path a line names, as the segments after `crate` (with `super::` resolved against
/// `here`, the module the file is), plus the first segment of bare paths (`x::…`).
fn paths_in(line: &str, here: &[String]) -> (Vec<Vec<String>>, Vec<String>) {
    let mut abs = Vec::new();
    let mut bare = Vec::new();
    let mut i = 0;
    while i < line.len() {
        let s = &line[i..];
        let c = s.chars().next().unwrap();
        if !(c.is_alphabetic() || c == '_') || !starts_path(line, i) {
            i += c.len_utf8();
            continue;
        }
        let word = ident_at(s);
        let after = &s[word.len()..];
        if !after.starts_with("::") {
            i += word.len();
            continue;
        }
        // A path: collect its segments (stopping at `{`, which the grouped-use handling covers).
        let mut segs = vec![word.to_string()];
        let mut t = &after[2..];
        loop {
            let w = ident_at(t);
            if w.is_empty() {
                break;
            }
            segs.push(w.to_string());
            t = &t[w.len()..];
            if let Some(r) = t.strip_prefix("::") {
                t = r;
            } else {
                break;
            }
        }
        let group = t.starts_with('{');
        let resolved = match segs[0].as_str() {
            "crate" => Some(segs[1..].to_vec()),
            "super" => {
                let ups = segs.iter().take_while(|s| *s == "super").count();
                (ups <= here.len()).then(|| {
                    let mut p = here[..here.len() - ups].to_vec();
                    p.extend(segs[ups..].iter().cloned());
                    p
                })
            }
            "self" => {
                let mut p = here.to_vec();
                p.extend(segs[1..].iter().cloned());
                Some(p)
            }
            _ => {
                bare.push(segs[0].clone());
                None
            }
        };
        let consumed = if group {
            // Past the group's closing brace: its members are not paths of their own.
            let mut depth = 0;
            let mut end = t.len();
            for (k, ch) in t.char_indices() {
                match ch {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            end = k + 1;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            s.len() - t.len() + end
        } else {
            s.len() - t.len()
        };
        if let Some(base) = resolved {
            if group {
                // `use crate::{a, b::{c, d}}`: each top-level name of the group.
                let inner = &t[1..];
                let mut depth = 0;
                let mut cur = String::new();
                let mut names = Vec::new();
                for ch in inner.chars() {
                    match ch {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        ',' if depth == 0 => {
                            names.push(std::mem::take(&mut cur));
                            continue;
                        }
                        _ => {}
                    }
                    if depth == 0 {
                        cur.push(ch);
                    }
                }
                names.push(cur);
                for n in names {
                    let n = ident_at(n.trim());
                    if !n.is_empty() && n != "self" {
                        let mut p = base.clone();
                        p.push(n.to_string());
                        abs.push(p);
                    } else if n == "self" {
                        abs.push(base.clone());
                    }
                }
            } else {
                abs.push(base);
            }
        }
        i += consumed;
    }
    (abs, bare)
}

/// Whether `line` starts a `use` item (`use`, `pub use`, `pub(crate) use`, …).
fn is_use(line: &str) -> bool {
    let mut t = line.trim_start();
    if let Some(r) = t.strip_prefix("pub") {
        t = r.trim_start();
        if t.starts_with('(') {
            t = t.find(')').map_or("", |i| t[i + 1..].trim_start());
        }
    }
    t.starts_with("use ")
}

/// Joins lines of a `use … { … };` statement that spans several lines, so groups are seen whole; returns
/// (line number, text) pairs.
fn logical_lines(src: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut pending: Option<(usize, String, i32)> = None;
    for (n, line) in src.lines().enumerate() {
        if let Some((start, mut text, mut depth)) = pending.take() {
            text.push(' ');
            text.push_str(line);
            depth += line.matches('{').count() as i32 - line.matches('}').count() as i32;
            if depth <= 0 {
                out.push((start, text));
            } else {
                pending = Some((start, text, depth));
            }
            continue;
        }
        let depth = line.matches('{').count() as i32 - line.matches('}').count() as i32;
        if is_use(line) && depth > 0 {
            pending = Some((n + 1, line.to_string(), depth));
            continue;
        }
        out.push((n + 1, line.to_string()));
    }
    if let Some((start, text, _)) = pending {
        out.push((start, text));
    }
    out
}

struct Graphs {
    top: Edges,
    exchange: Edges,
    tops: BTreeSet<String>,
    exchange_subs: BTreeSet<String>,
}

fn graphs() -> Graphs {
    let src = src_dir();
    let mut files = Vec::new();
    rs_files(&src, &mut files);
    let mut tops = BTreeSet::new();
    for f in &files {
        let p = module_path(f.strip_prefix(&src).unwrap());
        if let Some(t) = p.first() {
            tops.insert(t.clone());
        }
    }
    let exchange_subs: BTreeSet<String> = files
        .iter()
        .filter_map(|f| {
            let p = module_path(f.strip_prefix(&src).unwrap());
            (p.len() == 2 && p[0] == "exchange").then(|| p[1].clone())
        })
        .collect();
    let mut test_files: BTreeSet<PathBuf> = BTreeSet::new();
    let mut g = Graphs {
        top: Edges::new(),
        exchange: Edges::new(),
        tops,
        exchange_subs,
    };
    // Parents before children (a.rs / a/mod.rs sort before a/b.rs), so test files are known when reached.
    files.sort_by_key(|f| f.components().count());
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap();
        if test_files.contains(rel) {
            continue;
        }
        let here = module_path(rel);
        let Some(me) = here.first().cloned() else {
            continue; // lib.rs, main.rs: the crate root may use everything.
        };
        let (text, tests) = strip_tests(&strip(&std::fs::read_to_string(f).unwrap()));
        for t in tests {
            let dir = match rel.file_name().unwrap().to_str().unwrap() {
                "mod.rs" => rel.parent().unwrap().to_path_buf(),
                name => rel.parent().unwrap().join(name.trim_end_matches(".rs")),
            };
            test_files.insert(dir.join(format!("{t}.rs")));
            test_files.insert(dir.join(&t).join("mod.rs"));
        }
        let ex_me =
            (me == "exchange").then(|| here.get(1).cloned().unwrap_or_else(|| "mod".into()));
        for (n, line) in logical_lines(&text) {
            let at = format!("{}:{n}", rel.display());
            let (abs, bare) = paths_in(&line, &here);
            for p in &abs {
                let Some(t) = p.first() else { continue };
                if g.tops.contains(t) && *t != me {
                    push(&mut g.top, &me, t, &at);
                }
                if let (Some(from), true) = (&ex_me, t == "exchange") {
                    let to = match p.get(1) {
                        Some(s) if g.exchange_subs.contains(s) => s.clone(),
                        _ => "mod".to_string(),
                    };
                    if to != *from {
                        push(&mut g.exchange, from, &to, &at);
                    }
                }
            }
            if ex_me.as_deref() == Some("mod") {
                for b in bare {
                    if g.exchange_subs.contains(&b) {
                        push(&mut g.exchange, "mod", &b, &at);
                    }
                }
            }
        }
    }
    g
}

fn push(e: &mut Edges, from: &str, to: &str, at: &str) {
    e.entry(from.to_string())
        .or_default()
        .entry(to.to_string())
        .or_default()
        .push(at.to_string());
}

/// A cycle of `edges`, if there is one, as the list of its nodes (first repeated at the end).
fn find_cycle(nodes: &BTreeSet<String>, edges: &Edges) -> Option<Vec<String>> {
    // 0 unvisited, 1 on the stack, 2 done.
    fn visit(
        n: &str,
        edges: &Edges,
        mark: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        mark.insert(n.to_string(), 1);
        stack.push(n.to_string());
        for m in edges.get(n).into_iter().flat_map(|m| m.keys()) {
            match mark.get(m).copied().unwrap_or(0) {
                0 => {
                    if let Some(c) = visit(m, edges, mark, stack) {
                        return Some(c);
                    }
                }
                1 => {
                    let from = stack.iter().position(|s| s == m).unwrap();
                    let mut c = stack[from..].to_vec();
                    c.push(m.clone());
                    return Some(c);
                }
                _ => {}
            }
        }
        stack.pop();
        mark.insert(n.to_string(), 2);
        None
    }
    let mut mark = BTreeMap::new();
    for n in nodes {
        if mark.get(n).copied().unwrap_or(0) == 0 {
            if let Some(c) = visit(n, edges, &mut mark, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

fn describe(cycle: &[String], edges: &Edges) -> String {
    let mut s = cycle.join(" -> ");
    for w in cycle.windows(2) {
        let at = &edges[&w[0]][&w[1]];
        s.push_str(&format!("\n  {} -> {}: {}", w[0], w[1], at.join(", ")));
    }
    s
}

fn check(name: &str, nodes: &BTreeSet<String>, edges: &Edges, layers: &[&[&str]]) {
    if let Some(c) = find_cycle(nodes, edges) {
        panic!(
            "{name}: the modules import each other in a circle:\n{}",
            describe(&c, edges)
        );
    }
    let mut layer = BTreeMap::new();
    for (i, l) in layers.iter().enumerate() {
        for m in *l {
            assert!(
                layer.insert(m.to_string(), i).is_none(),
                "{name}: {m} is listed twice"
            );
        }
    }
    let unlisted: Vec<_> = nodes.iter().filter(|n| !layer.contains_key(*n)).collect();
    assert!(
        unlisted.is_empty(),
        "{name}: give these modules a layer: {unlisted:?}"
    );
    let gone: Vec<_> = layer.keys().filter(|m| !nodes.contains(*m)).collect();
    assert!(
        gone.is_empty(),
        "{name}: these listed modules do not exist: {gone:?}"
    );
    let mut upward = Vec::new();
    for (from, tos) in edges {
        for (to, at) in tos {
            if layer[to] > layer[from] {
                upward.push(format!(
                    "{from} -> {to} (a higher layer): {}",
                    at.join(", ")
                ));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "{name}: imports that run upwards:\n{}",
        upward.join("\n")
    );
}

#[test]
fn top_level_modules_import_downwards_only() {
    let g = graphs();
    assert!(
        g.tops.len() >= 20,
        "the walk found the modules: {:?}",
        g.tops
    );
    check("control/src", &g.tops, &g.top, LAYERS);
}

#[test]
fn exchange_submodules_import_downwards_only() {
    let g = graphs();
    let mut nodes = g.exchange_subs.clone();
    nodes.insert("mod".to_string());
    assert!(
        nodes.len() >= 10,
        "the walk found the submodules: {nodes:?}"
    );
    check("control/src/exchange", &nodes, &g.exchange, EXCHANGE_LAYERS);
}

#[test]
fn the_scanner_sees_every_form_of_reference() {
    let here = vec!["exchange".to_string(), "stops".to_string()];
    let (abs, bare) = paths_in(
        "use crate::{journal::now_ms, state::{self, Live}}; let x = crate::fleet::f(super::rest::g()); gateway::h();",
        &here,
    );
    let firsts: Vec<_> = abs.iter().map(|p| p.join("::")).collect();
    assert!(firsts.contains(&"journal".to_string()), "{firsts:?}");
    assert!(firsts.contains(&"state".to_string()), "{firsts:?}");
    assert!(firsts.contains(&"fleet::f".to_string()), "{firsts:?}");
    assert!(
        firsts.contains(&"exchange::rest::g".to_string()),
        "{firsts:?}"
    );
    assert_eq!(bare, vec!["gateway".to_string()]);
    let stripped =
        strip("let s = \"crate::api\"; // crate::web\n/* crate::ops */ let c = '\"'; crate::db::x");
    assert!(!stripped.contains("api") && !stripped.contains("web") && !stripped.contains("ops"));
    assert!(stripped.contains("crate::db::x"), "{stripped}");
    assert!(is_use("pub(crate) use crate::{") && is_use("    use x;") && !is_use("let used = 1;"));
    let joined =
        logical_lines("pub(super) use crate::{\n    journal,\n    state::Live,\n};\nfn f() {}\n");
    assert_eq!(joined[0].0, 1);
    assert!(
        joined[0].1.contains("journal") && joined[0].1.contains("state::Live"),
        "{joined:?}"
    );
    let (t, files) = strip_tests(
        "fn a() {}\n#[cfg(test)]\nmod tests {\n use crate::ops; }\n#[cfg(test)]\nmod more;\n",
    );
    assert!(!t.contains("ops") && t.contains("fn a"), "{t}");
    assert_eq!(files, vec!["more".to_string()]);
    // A cycle is found and printed with where each edge comes from.
    let mut e = Edges::new();
    push(&mut e, "a", "b", "a.rs:1");
    push(&mut e, "b", "a", "b.rs:2");
    let nodes: BTreeSet<String> = ["a".to_string(), "b".to_string()].into();
    let c = find_cycle(&nodes, &e).unwrap();
    assert_eq!(c, vec!["a", "b", "a"]);
    assert!(describe(&c, &e).contains("b -> a: b.rs:2"));
}

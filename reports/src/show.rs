//! `report show`: a load report per method and overall, as text, Markdown or a JSON summary.
//!
//! The report file holds whole histograms for merging; people want the numbers. `show` prints requests,
//! throughput, error rate (overall and per error class) and p50/p90/p99/p99.9/max of both latencies: corrected
//! (from the intended send time) and service time (from the actual send).

use std::fmt::Write;

use serde_json::{Value, json};

use crate::load::{Hist, LoadReport, MethodReport, micros};
use crate::render::{thousands, thousands_f1};

fn rate_text(part: u64, whole: u64) -> String {
    if whole == 0 {
        return "—".into();
    }
    format!("{:.2}%", part as f64 * 100.0 / whole as f64)
}

fn rows(r: &LoadReport) -> Vec<(&str, &MethodReport)> {
    let mut v = vec![("all", &r.totals)];
    v.extend(r.methods.iter().map(|(m, x)| (m.as_str(), x)));
    v
}

fn lat(h: &Hist) -> [String; 5] {
    if h.count == 0 {
        return std::array::from_fn(|_| "—".to_string());
    }
    [h.p50_us, h.p90_us, h.p99_us, h.p999_us, h.max_us].map(micros)
}

fn workload_text(r: &LoadReport) -> String {
    let w = &r.workload;
    let model = match (w.model.as_str(), w.concurrency, w.rate) {
        ("open", c, Some(rate)) => {
            let users = c.map(|c| format!(", at most {c} in flight")).unwrap_or_default();
            format!("open model, {rate} sessions/s{users}")
        }
        (_, Some(c), _) => format!("closed model, {c} users"),
        (m, _, _) => format!("{m} model"),
    };
    format!("{model}, pace {}, {} recorded session(s)", w.pace, w.sessions)
}

/// Aligned text.
pub fn to_text(r: &LoadReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "load report ({}): {}", r.schema, r.target);
    let _ = writeln!(s, "  {}", workload_text(r));
    let _ = writeln!(
        s,
        "  started {}, {:.1} s measured, mcptape {}, {} ({} cores)",
        r.started, r.duration_s, r.tool_version, r.machine.hostname, r.machine.cores
    );
    let _ = writeln!(s, "  {}", r.summary_line());
    let rows = rows(r);
    let w = rows.iter().map(|(m, _)| m.chars().count()).max().unwrap_or(3).max(6);
    let _ = writeln!(
        s,
        "\n  {:<w$}  {:>9}  {:>10}  {:>7}  {:>10}",
        "method", "requests", "req/s", "errors", "error rate"
    );
    for (m, x) in &rows {
        let _ = writeln!(
            s,
            "  {:<w$}  {:>9}  {:>10}  {:>7}  {:>10}",
            m,
            thousands(x.requests, false),
            thousands_f1(x.throughput_rps),
            thousands(x.errors, false),
            rate_text(x.errors, x.requests)
        );
    }
    for (title, pick) in [
        ("corrected latency (from the intended send time)", 0),
        ("service time (from the actual send)", 1),
    ] {
        let _ = writeln!(s, "\n  {title}");
        let _ = writeln!(
            s,
            "  {:<w$}  {:>9}  {:>9}  {:>9}  {:>9}  {:>9}",
            "method", "p50", "p90", "p99", "p99.9", "max"
        );
        for (m, x) in &rows {
            let [a, b, c, d, e] = lat(if pick == 0 { &x.corrected } else { &x.service });
            let _ = writeln!(s, "  {m:<w$}  {a:>9}  {b:>9}  {c:>9}  {d:>9}  {e:>9}");
        }
    }
    let _ = writeln!(s, "\n  errors by class");
    if r.errors.is_empty() {
        let _ = writeln!(s, "  none");
    } else {
        let cw = r.errors.keys().map(|k| k.len()).max().unwrap_or(5).max(5);
        for (class, n) in &r.errors {
            let _ = writeln!(
                s,
                "  {class:<cw$}  {:>9}  {:>8} of requests",
                thousands(*n, false),
                rate_text(*n, r.totals.requests)
            );
        }
    }
    for wng in &r.warnings {
        let _ = writeln!(s, "warning: {wng}");
    }
    s
}

/// Markdown tables.
pub fn to_markdown(r: &LoadReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "### mcptape load report: `{}`\n", r.target);
    let _ = writeln!(
        s,
        "{}; {:.1} s measured from {}, mcptape {}.\n",
        workload_text(r),
        r.duration_s,
        r.started,
        r.tool_version
    );
    let _ = writeln!(s, "**{}**\n", r.summary_line());
    let _ = writeln!(
        s,
        "| method | requests | req/s | error rate | p50 | p90 | p99 | p99.9 | max | service p50 | service p99 |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (m, x) in rows(r) {
        let [a, b, c, d, e] = lat(&x.corrected);
        let [sa, _, sc, _, _] = lat(&x.service);
        let name = if m == "all" {
            "**all**".to_string()
        } else {
            format!("`{m}`")
        };
        let _ = writeln!(
            s,
            "| {name} | {} | {} | {} | {a} | {b} | {c} | {d} | {e} | {sa} | {sc} |",
            thousands(x.requests, false),
            thousands_f1(x.throughput_rps),
            rate_text(x.errors, x.requests)
        );
    }
    let _ = writeln!(
        s,
        "\nLatency is corrected for coordinated omission (from the intended send time); service time is from the actual send."
    );
    if !r.errors.is_empty() {
        let _ = writeln!(s, "\n| error class | count | of requests |");
        let _ = writeln!(s, "|---|---:|---:|");
        for (class, n) in &r.errors {
            let _ = writeln!(
                s,
                "| `{class}` | {} | {} |",
                thousands(*n, false),
                rate_text(*n, r.totals.requests)
            );
        }
    }
    if !r.warnings.is_empty() {
        let _ = writeln!(s);
        for wng in &r.warnings {
            let _ = writeln!(s, "> ⚠️ {wng}");
        }
    }
    s
}

/// A JSON summary (no histograms): what `jq` users want from `show`.
pub fn to_json(r: &LoadReport) -> String {
    let hist = |h: &Hist| {
        json!({"count": h.count, "p50_us": h.p50_us, "p90_us": h.p90_us, "p99_us": h.p99_us,
               "p999_us": h.p999_us, "max_us": h.max_us, "mean_us": h.mean_us})
    };
    let method = |x: &MethodReport| {
        let error_rate = if x.requests == 0 {
            Value::Null
        } else {
            json!(x.errors as f64 / x.requests as f64)
        };
        json!({"requests": x.requests, "throughput_rps": x.throughput_rps, "errors": x.errors,
               "error_rate": error_rate, "corrected": hist(&x.corrected), "service": hist(&x.service)})
    };
    let errors: serde_json::Map<String, Value> = r
        .errors
        .iter()
        .map(|(k, n)| {
            let rate = if r.totals.requests == 0 {
                Value::Null
            } else {
                json!(*n as f64 / r.totals.requests as f64)
            };
            (k.clone(), json!({"count": n, "rate": rate}))
        })
        .collect();
    let v = json!({
        "schema": r.schema,
        "target": r.target,
        "started": r.started,
        "duration_s": r.duration_s,
        "workload": {"model": r.workload.model, "concurrency": r.workload.concurrency, "rate": r.workload.rate,
                     "fingerprint": r.workload.fingerprint},
        "totals": method(&r.totals),
        "methods": r.methods.iter().map(|(m, x)| (m.clone(), method(x))).collect::<serde_json::Map<_, _>>(),
        "errors": errors,
        "warnings": r.warnings,
    });
    let mut s = serde_json::to_string_pretty(&v).expect("JSON serializes");
    s.push('\n');
    s
}

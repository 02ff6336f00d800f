//! Renderings of comparisons (text, Markdown, JUnit XML, JSON) and the number formats they share.
//!
//! Every rendering is a pure function of its input (no clock, no host name), so golden files pin them.

use crate::compare::{Check, Comparison, Unit, fmt_p};
use crate::load::micros;

mod compare_md;
mod compare_text;
pub(crate) mod junit;

pub use compare_md::to_markdown;
pub use compare_text::to_text;
pub use junit::to_junit;

/// The comparison as pretty JSON (schema `mcptape.compare/1`).
pub fn to_json(c: &Comparison) -> String {
    let mut s = serde_json::to_string_pretty(c).expect("a comparison serializes");
    s.push('\n');
    s
}

/// A value in its unit: `512 µs`, `1.23 ms`, `0.50%`, `1,234.5/s`, `3`.
pub fn value(unit: Unit, v: f64) -> String {
    match unit {
        Unit::Micros => micros(v.round().max(0.0) as u64),
        Unit::Fraction => format!("{:.2}%", v * 100.0),
        Unit::PerSecond => format!("{}/s", thousands_f1(v)),
        Unit::Count => {
            if v.fract() == 0.0 {
                thousands(v.abs() as u64, v < 0.0)
            } else {
                format!("{v:.1}")
            }
        }
    }
}

/// The change from baseline to candidate: `+5.11 ms (+998%)`, `+0.10pp`, `-120.0/s (-5.1%)`, `+3`.
pub fn change(c: &Check) -> String {
    let (Some(b), Some(x)) = (c.baseline, c.candidate) else {
        return "—".into();
    };
    let d = x - b;
    let sign = if d < 0.0 { "-" } else { "+" };
    let unit = c.metric.unit();
    let abs = match unit {
        Unit::Fraction => format!("{sign}{:.2}pp", d.abs() * 100.0),
        _ => format!("{sign}{}", value(unit, d.abs())),
    };
    let rel = if unit == Unit::Fraction || b == 0.0 {
        String::new()
    } else {
        format!(" ({sign}{}%)", pct(d.abs() / b.abs() * 100.0))
    };
    format!("{abs}{rel}")
}

/// A percentage with up to 3 significant digits: `998`, `12.3`, `0.51`.
fn pct(x: f64) -> String {
    if x >= 99.5 {
        format!("{x:.0}")
    } else if x >= 9.95 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

/// `U=25, p=0.004` or `—`.
pub fn test_cell(c: &Check) -> String {
    match &c.test {
        Some(t) => format!("U={}, p={}", num1(t.u), fmt_p(t.p)),
        None => "—".into(),
    }
}

fn num1(x: f64) -> String {
    if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

/// `1234567` -> `1,234,567`.
pub fn thousands(n: u64, negative: bool) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    if negative {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `1234.56` -> `1,234.6`.
pub fn thousands_f1(x: f64) -> String {
    if !x.is_finite() {
        return format!("{x}");
    }
    let tenths = (x.abs() * 10.0).round() as u64;
    format!("{}.{}", thousands(tenths / 10, x < 0.0 && tenths > 0), tenths % 10)
}

/// The verdict sentence shared by text and Markdown: `2 of 4 budgets regressed: p50, p99`.
pub fn verdict_sentence(c: &Comparison) -> String {
    let names: Vec<String> = c.regressions().map(check_name).collect();
    let within: Vec<String> = c
        .checks
        .iter()
        .filter(|x| x.status == crate::compare::Status::WithinNoise)
        .map(check_name)
        .collect();
    let mut s = if names.is_empty() {
        format!("no regression in {} budget(s)", c.checks.len())
    } else {
        format!(
            "{} of {} budget(s) regressed: {}",
            names.len(),
            c.checks.len(),
            names.join(", ")
        )
    };
    if !within.is_empty() {
        s.push_str(&format!("; over budget but within noise: {}", within.join(", ")));
    }
    s
}

/// `p99` for the totals, `tools/call p99` for a method.
pub fn check_name(c: &Check) -> String {
    if c.scope == "all" {
        c.metric.name()
    } else {
        format!("{} {}", c.scope, c.metric)
    }
}

/// The test sentence: which test, how, p-values below alpha.
pub fn test_sentence(c: &Comparison) -> Option<String> {
    let t = c.checks.iter().find_map(|x| x.test.as_ref())?;
    Some(format!(
        "{} test, one-sided, {}; significant when p < {}",
        t.test,
        t.method,
        fmt_p(c.alpha)
    ))
}

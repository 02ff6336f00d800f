//! Compare as aligned text for a terminal or a CI log.

use std::fmt::Write;

use super::{change, check_name, test_cell, test_sentence, value, verdict_sentence};
use crate::compare::{Comparison, Status};

/// Plain text.
pub fn to_text(c: &Comparison) -> String {
    let mut s = String::new();
    let verdict = if c.passed() { "PASS" } else { "REGRESSION" };
    let _ = writeln!(s, "mcptape compare ({}): {verdict}: {}", c.kind, verdict_sentence(c));
    let _ = writeln!(s, "  baseline:  {}", c.baseline.join(", "));
    let _ = writeln!(s, "  candidate: {}", c.candidate.join(", "));
    let _ = writeln!(s, "  {}", c.guard.note);
    if let Some(t) = test_sentence(c) {
        let _ = writeln!(s, "  {t}");
    }
    let header = ["check", "baseline", "candidate", "change", "budget", "test", "verdict"];
    let rows: Vec<[String; 7]> = c
        .checks
        .iter()
        .map(|x| {
            let unit = x.metric.unit();
            let show = |v: Option<f64>| v.map(|v| value(unit, v)).unwrap_or_else(|| "—".into());
            [
                check_name(x),
                show(x.baseline),
                show(x.candidate),
                change(x),
                x.budget.limit_text(),
                test_cell(x),
                x.status.label().to_string(),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut l = String::from(" ");
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            let pad = w - cell.chars().count();
            // Text columns left, numbers right.
            if i == 0 || i >= 5 {
                let _ = write!(l, " {cell}{}", " ".repeat(pad));
            } else {
                let _ = write!(l, " {}{cell}", " ".repeat(pad));
            }
            l.push(' ');
        }
        l.trim_end().to_string()
    };
    let _ = writeln!(s);
    let _ = writeln!(s, "{}", line(&header.map(String::from)));
    for r in &rows {
        let _ = writeln!(s, "{}", line(r));
    }
    if c.checks.iter().any(|x| x.status == Status::WithinNoise) {
        let _ = writeln!(
            s,
            "\n  within noise: over budget, but the runs do not show it apart from noise (p ≥ alpha)"
        );
    }
    for w in &c.warnings {
        let _ = writeln!(s, "warning: {w}");
    }
    s
}

//! Compare as GitHub-flavoured Markdown: a PR comment or `$GITHUB_STEP_SUMMARY`.

use std::fmt::Write;

use super::{change, check_name, test_cell, test_sentence, value, verdict_sentence};
use crate::compare::{Comparison, Status};

/// Markdown.
pub fn to_markdown(c: &Comparison) -> String {
    let mut s = String::new();
    let verdict = if c.passed() { "✅ pass" } else { "❌ regression" };
    let _ = writeln!(s, "### mcptape compare ({}): {verdict}\n", c.kind);
    let _ = writeln!(s, "{}.\n", capitalize(&verdict_sentence(c)));
    let files = |v: &[String]| v.iter().map(|f| format!("`{f}`")).collect::<Vec<_>>().join(", ");
    let _ = writeln!(
        s,
        "Baseline: {} run(s) ({}); candidate: {} run(s) ({}).\n",
        c.baseline.len(),
        files(&c.baseline),
        c.candidate.len(),
        files(&c.candidate)
    );
    if c.guard.guarded {
        let _ = writeln!(s, "{}.", capitalize(&c.guard.note));
        if let Some(t) = test_sentence(c) {
            let _ = writeln!(s, "{}.", capitalize(&t));
        }
        let _ = writeln!(s);
    } else {
        let _ = writeln!(s, "> ⚠️ {}.\n", capitalize(&c.guard.note));
    }
    let _ = writeln!(s, "| check | baseline | candidate | change | budget | test | verdict |");
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---|---|");
    for x in &c.checks {
        let unit = x.metric.unit();
        let show = |v: Option<f64>| v.map(|v| value(unit, v)).unwrap_or_else(|| "—".into());
        let icon = match x.status {
            Status::Pass => "✅ pass",
            Status::Regression => "❌ **regression**",
            Status::WithinNoise => "〰️ within noise",
            Status::NoData => "⚪ no data",
        };
        let _ = writeln!(
            s,
            "| `{}` | {} | {} | {} | {} | {} | {icon} |",
            check_name(x),
            show(x.baseline),
            show(x.candidate),
            change(x),
            x.budget.limit_text(),
            test_cell(x)
        );
    }
    if !c.warnings.is_empty() {
        let _ = writeln!(s, "\n<details><summary>Warnings ({})</summary>\n", c.warnings.len());
        for w in &c.warnings {
            let _ = writeln!(s, "- {w}");
        }
        let _ = writeln!(s, "\n</details>");
    }
    s
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

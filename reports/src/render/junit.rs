//! Compare as JUnit XML: one test case per budget, a failure per regression, for CI dashboards.

use std::fmt::Write;

use super::{change, check_name, value};
use crate::compare::{Comparison, Status, fmt_p};

/// JUnit XML (the common Jenkins/GitLab/GitHub subset).
pub fn to_junit(c: &Comparison) -> String {
    let failures = c.regressions().count();
    let skipped = c.checks.iter().filter(|x| x.status == Status::NoData).count();
    let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        s,
        "<testsuites name=\"mcptape report compare\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\">",
        c.checks.len()
    );
    let _ = writeln!(
        s,
        "  <testsuite name=\"mcptape.compare.{}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\">",
        c.kind,
        c.checks.len()
    );
    let _ = writeln!(s, "    <properties>");
    for (k, v) in [
        ("baseline", c.baseline.join(", ")),
        ("candidate", c.candidate.join(", ")),
        ("alpha", fmt_p(c.alpha)),
        ("noise_guard", c.guard.note.clone()),
    ] {
        let _ = writeln!(s, "      <property name=\"{k}\" value=\"{}\"/>", esc(&v));
    }
    let _ = writeln!(s, "    </properties>");
    for x in &c.checks {
        let unit = x.metric.unit();
        let show = |v: Option<f64>| v.map(|v| value(unit, v)).unwrap_or_else(|| "no data".into());
        let name = format!("{} within {}", check_name(x), x.budget.limit_text());
        let detail = format!(
            "{}: {} -> {} ({}), budget {}{}",
            check_name(x),
            show(x.baseline),
            show(x.candidate),
            change(x),
            x.budget.limit_text(),
            match &x.test {
                Some(t) => format!(", {} U={} p={}", t.test, t.u, fmt_p(t.p)),
                None => String::new(),
            }
        );
        let _ = write!(
            s,
            "    <testcase classname=\"mcptape.compare.{}\" name=\"{}\"",
            esc(&x.scope),
            esc(&name)
        );
        match x.status {
            Status::Pass | Status::WithinNoise => {
                let _ = writeln!(s, ">");
                let _ = writeln!(
                    s,
                    "      <system-out>{} ({})</system-out>",
                    esc(&detail),
                    x.status.label()
                );
                let _ = writeln!(s, "    </testcase>");
            }
            Status::Regression => {
                let _ = writeln!(s, ">");
                let _ = writeln!(
                    s,
                    "      <failure type=\"regression\" message=\"{}\">{}</failure>",
                    esc(&format!("{} regressed", check_name(x))),
                    esc(&detail)
                );
                let _ = writeln!(s, "    </testcase>");
            }
            Status::NoData => {
                let _ = writeln!(s, ">");
                let _ = writeln!(s, "      <skipped message=\"no data\">{}</skipped>", esc(&detail));
                let _ = writeln!(s, "    </testcase>");
            }
        }
    }
    let _ = writeln!(s, "  </testsuite>");
    let _ = writeln!(s, "</testsuites>");
    s
}

/// XML text and attribute escaping.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            c => o.push(c),
        }
    }
    o
}

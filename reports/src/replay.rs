//! The replay report: per method matched / differed / missing / extra / errors, per session its outcome, and
//! each difference as a JSON pointer with the recorded and live values.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Schema id of replay reports written by this version.
pub const SCHEMA: &str = "mcptape.replay/1";

/// One difference between a recorded and a live value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Difference {
    /// Where (JSON pointer into the message).
    pub pointer: String,
    /// The recorded value (absent: the live answer has a value the recording did not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recorded: Option<Value>,
    /// The live value (absent: missing from the live answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live: Option<Value>,
}

/// Counts for one method (or the total).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Live answer equal to the recorded one (after ignores).
    pub matched: u64,
    /// Live answer different from the recorded one.
    pub differed: u64,
    /// Recorded answer with no live answer (timeout, crash).
    pub missing: u64,
    /// Live message with no recorded counterpart.
    pub extra: u64,
    /// Live JSON-RPC errors.
    pub errors: u64,
}

impl Counts {
    /// Adds another count.
    pub fn add(&mut self, o: &Counts) {
        self.matched += o.matched;
        self.differed += o.differed;
        self.missing += o.missing;
        self.extra += o.extra;
        self.errors += o.errors;
    }
    /// True when everything compared matched.
    pub fn clean(&self) -> bool {
        self.differed == 0 && self.missing == 0 && self.extra == 0
    }
}

/// What differed in one answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnswerDiff {
    /// The request's method.
    pub method: String,
    /// The request's id (JSON text).
    pub rpc_id: String,
    /// `differed`, `missing` or `extra`.
    pub outcome: String,
    /// The differences (empty for missing/extra).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub differences: Vec<Difference>,
}

/// The outcome of one session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionReport {
    /// Session id in the capture.
    pub session: String,
    /// `matched`, `differed` or `failed`.
    pub status: String,
    /// Why it failed (transport error, timeout, crash).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Wall time of the replay, ms.
    pub duration_ms: f64,
    /// Counts per method.
    pub methods: BTreeMap<String, Counts>,
    /// Server notifications per method: (recorded, live). Informational: notifications vary.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub notifications: BTreeMap<String, (u64, u64)>,
    /// Each answer that did not match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub diffs: Vec<AnswerDiff>,
}

/// A whole replay run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplayReport {
    /// [`SCHEMA`].
    pub schema: String,
    /// Version of the mcptape that ran it.
    pub tool_version: String,
    /// When it started (RFC 3339).
    pub started: String,
    /// The capture paths.
    pub capture: Vec<String>,
    /// The target (URL or command line).
    pub target: String,
    /// Options that change the verdict (pace, ignores).
    pub options: BTreeMap<String, Value>,
    /// Wall time, ms.
    pub duration_ms: f64,
    /// Totals over all sessions.
    pub totals: Counts,
    /// Totals per method.
    pub methods: BTreeMap<String, Counts>,
    /// Per session.
    pub sessions: Vec<SessionReport>,
}

impl ReplayReport {
    /// Sessions that failed.
    pub fn failed(&self) -> usize {
        self.sessions.iter().filter(|s| s.status == "failed").count()
    }

    /// True when every session matched.
    pub fn passed(&self) -> bool {
        self.failed() == 0 && self.totals.clean()
    }

    /// Fills totals and per-method counts from the sessions.
    pub fn tally(&mut self) {
        self.totals = Counts::default();
        self.methods.clear();
        for s in &self.sessions {
            for (m, c) in &s.methods {
                self.methods.entry(m.clone()).or_default().add(c);
                self.totals.add(c);
            }
        }
    }

    /// Plain text for a terminal.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let verdict = if self.passed() { "PASS" } else { "FAIL" };
        let _ = writeln!(
            s,
            "replay {verdict}: {} session(s) against {}",
            self.sessions.len(),
            self.target
        );
        let t = &self.totals;
        let _ = writeln!(
            s,
            "  matched {}, differed {}, missing {}, extra {}, errors {}; {} session(s) failed; {:.1} s",
            t.matched,
            t.differed,
            t.missing,
            t.extra,
            t.errors,
            self.failed(),
            self.duration_ms / 1000.0
        );
        let width = self.methods.keys().map(|m| m.len()).max().unwrap_or(6).max(6);
        let _ = writeln!(
            s,
            "\n  {:<width$}  {:>7}  {:>8}  {:>7}  {:>5}  {:>6}",
            "method", "matched", "differed", "missing", "extra", "errors"
        );
        for (m, c) in &self.methods {
            let _ = writeln!(
                s,
                "  {:<width$}  {:>7}  {:>8}  {:>7}  {:>5}  {:>6}",
                m, c.matched, c.differed, c.missing, c.extra, c.errors
            );
        }
        for sess in &self.sessions {
            if sess.status == "matched" {
                continue;
            }
            let _ = writeln!(s, "\nsession {}: {}", sess.session, sess.status);
            if let Some(r) = &sess.reason {
                let _ = writeln!(s, "  reason: {r}");
            }
            for d in &sess.diffs {
                let _ = writeln!(s, "  {} id={}: {}", d.method, d.rpc_id, d.outcome);
                for x in &d.differences {
                    let _ = writeln!(s, "    {}: {} -> {}", x.pointer, show(&x.recorded), show(&x.live));
                }
            }
        }
        s
    }

    /// Markdown for a PR comment.
    pub fn to_markdown(&self) -> String {
        let mut s = String::new();
        let verdict = if self.passed() { "✅ pass" } else { "❌ fail" };
        let t = &self.totals;
        let _ = writeln!(s, "### mcptape replay: {verdict}\n");
        let _ = writeln!(
            s,
            "{} session(s) against `{}`: **{}** matched, **{}** differed, **{}** missing, **{}** extra, {} errors; {} session(s) failed.\n",
            self.sessions.len(),
            self.target,
            t.matched,
            t.differed,
            t.missing,
            t.extra,
            t.errors,
            self.failed()
        );
        let _ = writeln!(s, "| method | matched | differed | missing | extra | errors |");
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|");
        for (m, c) in &self.methods {
            let _ = writeln!(
                s,
                "| `{m}` | {} | {} | {} | {} | {} |",
                c.matched, c.differed, c.missing, c.extra, c.errors
            );
        }
        let bad: Vec<&SessionReport> = self.sessions.iter().filter(|x| x.status != "matched").collect();
        if !bad.is_empty() {
            let _ = writeln!(s, "\n<details><summary>Differences</summary>\n");
            for sess in bad {
                let reason = sess.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default();
                let _ = writeln!(s, "- session `{}`: {}{reason}", sess.session, sess.status);
                for d in &sess.diffs {
                    let _ = writeln!(s, "  - `{}` id={}: {}", d.method, d.rpc_id, d.outcome);
                    for x in &d.differences {
                        let _ = writeln!(
                            s,
                            "    - `{}`: `{}` → `{}`",
                            x.pointer,
                            show(&x.recorded),
                            show(&x.live)
                        );
                    }
                }
            }
            let _ = writeln!(s, "\n</details>");
        }
        s
    }
}

/// Merges replay reports of one capture and options (e.g. the shards of a replay split over machines): sessions
/// are concatenated, counts re-tallied, `duration_ms` is the longest. Each report comes with its name for errors.
pub fn merge(reports: &[(&str, &ReplayReport)]) -> Result<ReplayReport, String> {
    let (first_name, first) = *reports.first().ok_or("no reports to merge")?;
    for (name, r) in &reports[1..] {
        if r.schema != first.schema {
            return Err(format!(
                "{name}: schema {:?} differs from {first_name}'s {:?}; cannot merge reports of different schemas",
                r.schema, first.schema
            ));
        }
        if r.capture != first.capture || r.options != first.options {
            return Err(format!(
                "{name}: replayed a different workload than {first_name} (capture {:?} vs {:?}, or other options); \
                 cannot merge",
                r.capture, first.capture
            ));
        }
    }
    let mut out = first.clone();
    out.sessions = reports.iter().flat_map(|(_, r)| r.sessions.iter().cloned()).collect();
    out.duration_ms = reports.iter().map(|(_, r)| r.duration_ms).fold(0.0, f64::max);
    out.started = reports.iter().map(|(_, r)| r.started.clone()).min().unwrap_or_default();
    out.tally();
    Ok(out)
}

fn show(v: &Option<Value>) -> String {
    match v {
        None => "(absent)".into(),
        Some(v) => {
            let t = v.to_string();
            if t.chars().count() > 80 {
                format!("{}…", t.chars().take(79).collect::<String>())
            } else {
                t
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> ReplayReport {
        let mut methods = BTreeMap::new();
        methods.insert(
            "tools/call".to_string(),
            Counts {
                matched: 2,
                differed: 1,
                ..Default::default()
            },
        );
        methods.insert(
            "tools/list".to_string(),
            Counts {
                matched: 1,
                ..Default::default()
            },
        );
        let mut r = ReplayReport {
            schema: SCHEMA.into(),
            tool_version: "0.1.0".into(),
            started: "2026-11-22T08:00:00Z".into(),
            capture: vec!["cap".into()],
            target: "http://127.0.0.1:1/mcp".into(),
            options: BTreeMap::new(),
            duration_ms: 1500.0,
            totals: Counts::default(),
            methods: BTreeMap::new(),
            sessions: vec![SessionReport {
                session: "s1".into(),
                status: "differed".into(),
                reason: None,
                duration_ms: 1500.0,
                methods,
                notifications: BTreeMap::new(),
                diffs: vec![AnswerDiff {
                    method: "tools/call".into(),
                    rpc_id: "3".into(),
                    outcome: "differed".into(),
                    differences: vec![Difference {
                        pointer: "/result/content/0/text".into(),
                        recorded: Some(Value::from("Echo: hi")),
                        live: Some(Value::from("Echo: HI")),
                    }],
                }],
            }],
        };
        r.tally();
        r
    }

    #[test]
    fn renders_name_the_verdict_counts_and_each_difference() {
        let r = report();
        assert!(!r.passed());
        assert_eq!(r.totals.matched, 3);
        let text = r.to_text();
        assert!(
            text.starts_with("replay FAIL: 1 session(s) against http://127.0.0.1:1/mcp"),
            "{text}"
        );
        assert!(
            text.contains("/result/content/0/text: \"Echo: hi\" -> \"Echo: HI\""),
            "{text}"
        );
        let md = r.to_markdown();
        assert!(md.contains("| `tools/call` | 2 | 1 | 0 | 0 | 0 |"), "{md}");
        assert!(
            md.contains("`/result/content/0/text`: `\"Echo: hi\"` → `\"Echo: HI\"`"),
            "{md}"
        );
        let json = serde_json::to_string(&r).unwrap();
        let back: ReplayReport = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
    }
}

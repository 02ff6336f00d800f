use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use super::SummaryFormat;
use crate::human;
use crate::scan::Scan;
use crate::summary::{Summary, summarize};

pub(super) fn run(paths: &[PathBuf], format: SummaryFormat, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let summary = summarize(&Scan::new(paths)?)?;
    match format {
        SummaryFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(&summary)?)?,
        SummaryFormat::Text => render(&summary, out)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn us(v: Option<u64>) -> String {
    v.map_or_else(|| "-".into(), |us| human::duration_ns(us.saturating_mul(1000)))
}

fn counts(map: &std::collections::BTreeMap<String, u64>) -> String {
    map.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Renders a summary as aligned text.
pub(crate) fn render(s: &Summary, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(out, "files      {}", s.files.len())?;
    writeln!(out, "sessions   {}", s.sessions)?;
    writeln!(out, "frames     {} ({} payload)", s.frames, human::bytes(s.bytes))?;
    if let (Some(first), Some(last)) = (&s.first, &s.last) {
        writeln!(out, "span       {first} .. {last} ({:.3} s)", s.span_seconds)?;
    }
    if !s.protocol_versions.is_empty() {
        let versions: Vec<String> = s
            .protocol_versions
            .iter()
            .map(|(v, n)| format!("{v} ({n} session{})", if *n == 1 { "" } else { "s" }))
            .collect();
        writeln!(out, "protocol   {}", versions.join(", "))?;
    }
    writeln!(out, "direction  {}", counts(&s.directions))?;
    writeln!(out, "kinds      {}", counts(&s.kinds))?;
    if s.dropped_frames > 0 {
        writeln!(out, "dropped    {} frames the tap could not record", s.dropped_frames)?;
    }
    if s.methods.is_empty() {
        return Ok(());
    }
    let width = s.methods.keys().map(|m| m.chars().count()).max().unwrap_or(6).max(6);
    writeln!(out)?;
    writeln!(
        out,
        "{:<width$}  {:>8}  {:>8}  {:>8}  {:>6}  {:>9}  {:>9}  {:>10}",
        "method", "requests", "notifs", "results", "errors", "p50", "p99", "bytes"
    )?;
    for (name, m) in &s.methods {
        writeln!(
            out,
            "{:<width$}  {:>8}  {:>8}  {:>8}  {:>6}  {:>9}  {:>9}  {:>10}",
            name,
            m.requests,
            m.notifications,
            m.responses,
            m.errors,
            us(m.latency_p50_us),
            us(m.latency_p99_us),
            human::bytes(m.bytes)
        )?;
    }
    Ok(())
}

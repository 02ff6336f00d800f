//! `mcptape dataset filter`: a smaller capture cut out of a bigger one, by session, method, direction and time.
//!
//! The result is a capture like any other (same schema, the first input's metadata plus a note of the filter),
//! so every command reads it. `seq` is renumbered per session in the kept order, so that `dataset verify` sees no
//! gaps where frames were left out on purpose.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::frame::{Direction, Frame};
use crate::human;
use crate::meta::CaptureMeta;
use crate::scan::{Filter, Scan};
use crate::schema::{self, Columns, col};
use crate::segment::write_segment;

/// What `filter` was asked for.
#[derive(Debug, Clone, Default)]
pub(super) struct FilterRequest {
    pub sessions: Vec<String>,
    pub methods: Vec<String>,
    pub direction: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
}

/// A time bound as given: absolute, or an offset from the capture's first frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeBound {
    /// ns since the epoch.
    At(i64),
    /// ns after the capture's first frame.
    After(i64),
}

/// Parses `2026-11-22T07:55:17Z` (RFC 3339) or `+2s` / `+1m30s` / `+250ms` (an offset from the capture start).
pub fn parse_time_bound(s: &str) -> Result<TimeBound, String> {
    if let Some(rest) = s.strip_prefix('+') {
        let d =
            humantime::parse_duration(rest).map_err(|e| format!("{s:?} is not an offset like +2s or +1m30s: {e}"))?;
        let ns = i64::try_from(d.as_nanos()).map_err(|_| format!("{s:?}: offset too large"))?;
        return Ok(TimeBound::After(ns));
    }
    human::parse_timestamp(s)
        .map(TimeBound::At)
        .ok_or_else(|| format!("{s:?} is neither an RFC 3339 time (2026-11-22T07:55:17Z) nor an offset (+2s)"))
}

/// The earliest `ts` over the scan's frames (the capture start offsets count from).
fn first_ts(scan: &Scan) -> crate::Result<Option<i64>> {
    let mut first: Option<i64> = None;
    scan.clone().with_columns(&[col::TS]).for_each_batch(|path, _, batch| {
        let ts = Columns::new(&batch)
            .ts(col::TS)
            .map_err(|e| crate::Error::damaged(path, e))?;
        for t in ts.into_iter().flatten() {
            first = Some(first.map_or(t, |f| f.min(t)));
        }
        Ok(())
    })?;
    Ok(first)
}

pub(super) fn run(
    paths: &[PathBuf],
    req: &FilterRequest,
    output: &Path,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let direction = match req.direction.as_deref() {
        None => None,
        Some(d) => Some(Direction::parse(d).ok_or_else(|| anyhow::anyhow!("--direction {d:?}: expected c2s or s2c"))?),
    };
    let since = req
        .since
        .as_deref()
        .map(parse_time_bound)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--since {e}"))?;
    let until = req
        .until
        .as_deref()
        .map(parse_time_bound)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--until {e}"))?;
    let scan = Scan::new(paths)?;
    let metas = scan.metas()?;
    if scan.files().iter().any(|f| same_file(f, output)) {
        anyhow::bail!(
            "{}: the output is one of the inputs; write to a new file",
            output.display()
        );
    }
    let start = if matches!(since, Some(TimeBound::After(_))) || matches!(until, Some(TimeBound::After(_))) {
        first_ts(&scan)?
    } else {
        None
    };
    let resolve = |b: TimeBound| match b {
        TimeBound::At(t) => t,
        TimeBound::After(d) => start.unwrap_or(0).saturating_add(d),
    };
    let filter = Filter {
        sessions: req.sessions.clone(),
        methods: req.methods.clone(),
        direction,
        kinds: Vec::new(),
        since_ns: since.map(resolve),
        until_ns: until.map(resolve),
    };

    let mut next_seq: HashMap<String, u64> = HashMap::new();
    let mut frames: Vec<Frame> = Vec::new();
    scan.with_filter(filter).for_each_frame(|_, _, mut f| {
        let n = next_seq.entry(f.session_id.clone()).or_default();
        f.seq = *n;
        *n += 1;
        frames.push(f);
        Ok(())
    })?;

    let mut meta: CaptureMeta = metas.first().map(|(_, m, _)| m.clone()).unwrap_or_default();
    meta.dropped_frames = metas.iter().map(|(_, m, _)| m.dropped_frames).sum();
    let what = describe(req);
    let note = format!(
        "filtered from {} file(s) with `dataset filter{what}`; seq renumbered per session",
        metas.len()
    );
    meta.note = if meta.note.is_empty() {
        note
    } else {
        format!("{}; {note}", meta.note)
    };
    let batches: Vec<_> = frames.chunks(8192).map(schema::to_batch).collect();
    let rows = write_segment(output, &meta, &batches)?;
    writeln!(
        out,
        "kept {rows} frame(s) in {} session(s) -> {}",
        next_seq.len(),
        output.display()
    )?;
    Ok(ExitCode::SUCCESS)
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

fn describe(req: &FilterRequest) -> String {
    let mut s = String::new();
    for v in &req.sessions {
        s.push_str(&format!(" --session {v}"));
    }
    for v in &req.methods {
        s.push_str(&format!(" --method {v}"));
    }
    if let Some(v) = &req.direction {
        s.push_str(&format!(" --direction {v}"));
    }
    if let Some(v) = &req.since {
        s.push_str(&format!(" --since {v}"));
    }
    if let Some(v) = &req.until {
        s.push_str(&format!(" --until {v}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_bounds_parse_as_offsets_or_rfc3339() {
        assert_eq!(parse_time_bound("+2s"), Ok(TimeBound::After(2_000_000_000)));
        assert_eq!(parse_time_bound("+250ms"), Ok(TimeBound::After(250_000_000)));
        assert_eq!(parse_time_bound("+1m30s"), Ok(TimeBound::After(90_000_000_000)));
        assert_eq!(
            parse_time_bound("2026-11-22T07:55:17Z"),
            Ok(TimeBound::At(human::parse_timestamp("2026-11-22T07:55:17Z").unwrap()))
        );
        assert!(parse_time_bound("yesterday").unwrap_err().contains("RFC 3339"));
        assert!(parse_time_bound("+2 parsecs").unwrap_err().contains("offset"));
    }
}

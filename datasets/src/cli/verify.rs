use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::scan::{self, Scan};
use crate::schema::{Columns, col};
use crate::segment::Segment;

pub(super) fn run(paths: &[PathBuf], out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let files = scan::discover(paths)?;
    let mut problems: Vec<String> = Vec::new();
    let mut warnings: Vec<String> = Vec::new();
    let mut seqs: HashMap<String, Vec<u64>> = HashMap::new();
    let (mut frames, mut dropped) = (0u64, 0u64);

    for journal in scan::discover_journals(paths)? {
        problems.push(format!(
            "{}: unrecovered journal; run `mcptape dataset recover`",
            journal.display()
        ));
    }
    for file in &files {
        let seg = match Segment::open(file) {
            Ok(s) => s,
            Err(e) => {
                problems.push(e.to_string());
                continue;
            }
        };
        dropped += seg.meta.dropped_frames;
        let result = Scan::new(std::slice::from_ref(file))?
            .with_columns(&[col::SESSION_ID, col::SEQ])
            .for_each_batch(|path, _, batch| {
                let c = Columns::new(&batch);
                let damaged = |e| crate::Error::damaged(path, e);
                let session = c.text(col::SESSION_ID).map_err(damaged)?;
                let seq = c.u64(col::SEQ).map_err(damaged)?;
                for i in 0..batch.num_rows() {
                    frames += 1;
                    match (session[i], seq[i]) {
                        (Some(s), Some(q)) => seqs.entry(s.to_string()).or_default().push(q),
                        _ => return Err(crate::Error::damaged(path, format!("row {i}: null session_id or seq"))),
                    }
                }
                Ok(())
            });
        if let Err(e) = result {
            problems.push(e.to_string());
        }
    }

    let mut sessions: Vec<_> = seqs.into_iter().collect();
    sessions.sort_by(|a, b| a.0.cmp(&b.0));
    for (sid, mut v) in sessions.iter().cloned() {
        v.sort_unstable();
        let mut missing = 0u64;
        let mut dups = 0u64;
        for w in v.windows(2) {
            match w[1].cmp(&w[0]) {
                std::cmp::Ordering::Equal => dups += 1,
                std::cmp::Ordering::Greater => missing += w[1] - w[0] - 1,
                std::cmp::Ordering::Less => {}
            }
        }
        if missing > 0 {
            problems.push(format!(
                "session {sid}: {missing} seq number(s) missing between {} and {}",
                v[0],
                v[v.len() - 1]
            ));
        }
        if dups > 0 {
            problems.push(format!("session {sid}: {dups} duplicate seq number(s)"));
        }
        if v.first().is_some_and(|&s| s > 0) {
            warnings.push(format!(
                "session {sid}: starts at seq {} (earlier segments not given?)",
                v[0]
            ));
        }
    }
    if dropped > 0 {
        warnings.push(format!(
            "{dropped} frame(s) were dropped by the tap while recording (see the gap frames)"
        ));
    }
    for w in &warnings {
        writeln!(out, "warning: {w}")?;
    }
    for p in &problems {
        writeln!(out, "damaged: {p}")?;
    }
    let summary = format!(
        "{} file(s), {} frame(s), {} session(s)",
        files.len(),
        frames,
        sessions.len()
    );
    if problems.is_empty() {
        writeln!(out, "ok: {summary}, schema version {}", crate::schema::SCHEMA_VERSION)?;
        Ok(ExitCode::SUCCESS)
    } else {
        writeln!(out, "damaged: {summary}, {} problem(s)", problems.len())?;
        Ok(ExitCode::from(1))
    }
}

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use crate::journal;
use crate::recover::{Recovered, recover_journal};
use crate::scan;

pub(super) fn run(path: &Path, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let journals = scan::discover_journals(&[path.to_path_buf()])?;
    if journals.is_empty() {
        writeln!(
            out,
            "nothing to recover: no journals (*{}) under {}",
            journal::SUFFIX,
            path.display()
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut failed = 0;
    let (mut frames_total, mut lost_total) = (0u64, 0u64);
    for j in &journals {
        match recover_one(j, out) {
            Ok((frames, lost)) => {
                frames_total += frames;
                lost_total += lost;
            }
            Err(e) => {
                failed += 1;
                writeln!(out, "failed: {e:#}")?;
            }
        }
    }
    writeln!(
        out,
        "recovered {frames_total} frame(s) from {} journal(s); {} damaged byte(s) lost; {failed} journal(s) not recovered",
        journals.len() - failed,
        lost_total
    )?;
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn recover_one(j: &Path, out: &mut dyn Write) -> anyhow::Result<(u64, u64)> {
    match recover_journal(j)? {
        Recovered::AlreadyDone { segment, rows } => {
            writeln!(
                out,
                "{}: already converted to {} ({rows} frames); journal removed",
                j.display(),
                segment.display(),
            )?;
            Ok((0, 0))
        }
        Recovered::Written {
            segment,
            frames,
            batches,
            damage,
        } => {
            writeln!(
                out,
                "{} -> {}: {frames} frame(s) in {batches} batch(es)",
                j.display(),
                segment.display(),
            )?;
            let mut lost = 0;
            if let Some((d, kept)) = damage {
                lost = d.lost_bytes as u64;
                writeln!(
                    out,
                    "  damaged tail at byte {} ({} byte(s) lost): {}; journal kept as {}",
                    d.offset,
                    d.lost_bytes,
                    d.reason,
                    kept.display()
                )?;
            }
            Ok((frames, lost))
        }
    }
}

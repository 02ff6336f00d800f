use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::journal::{self, read_journal_file};
use crate::scan;
use crate::segment::{self, Segment, write_segment};

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

fn with_suffix(journal: &Path, suffix: &str) -> PathBuf {
    let s = journal.to_string_lossy();
    PathBuf::from(format!("{}{suffix}", s.strip_suffix(journal::SUFFIX).unwrap_or(&s)))
}

fn recover_one(j: &Path, out: &mut dyn Write) -> anyhow::Result<(u64, u64)> {
    let dest = with_suffix(j, segment::SUFFIX);
    let contents = read_journal_file(j)?;
    let frames: u64 = contents.batches.iter().map(|b| b.num_rows() as u64).sum();
    if dest.exists() {
        // A recorder killed between publishing the segment and removing its journal.
        let seg = Segment::open(&dest)?;
        if seg.rows >= frames {
            std::fs::remove_file(j)?;
            writeln!(
                out,
                "{}: already converted to {} ({} frames); journal removed",
                j.display(),
                dest.display(),
                seg.rows
            )?;
            return Ok((0, 0));
        }
        anyhow::bail!(
            "{}: {} exists with fewer frames than the journal; move it away and run again",
            j.display(),
            dest.display()
        );
    }
    let Some(mut meta) = contents.meta.clone() else {
        let reason = contents
            .damage
            .as_ref()
            .map_or("no schema".to_string(), |d| d.reason.clone());
        anyhow::bail!(
            "{}: not recoverable, the journal's schema message is unreadable ({reason}); file left in place",
            j.display()
        );
    };
    let lost = contents.damage.as_ref().map_or(0, |d| d.lost_bytes as u64);
    let note = format!(
        "recovered from journal by mcptape {}; {lost} damaged byte(s) lost",
        env!("CARGO_PKG_VERSION")
    );
    meta.note = if meta.note.is_empty() {
        note
    } else {
        format!("{}; {note}", meta.note)
    };
    write_segment(&dest, &meta, &contents.batches)?;
    writeln!(
        out,
        "{} -> {}: {frames} frame(s) in {} batch(es)",
        j.display(),
        dest.display(),
        contents.batches.len()
    )?;
    match &contents.damage {
        Some(d) => {
            // Keep what could not be decoded, out of the way of the next scan.
            let kept = with_suffix(j, ".journal.damaged");
            std::fs::rename(j, &kept)?;
            writeln!(
                out,
                "  damaged tail at byte {} ({} byte(s) lost): {}; journal kept as {}",
                d.offset,
                d.lost_bytes,
                d.reason,
                kept.display()
            )?;
        }
        None => std::fs::remove_file(j)?,
    }
    Ok((frames, lost))
}

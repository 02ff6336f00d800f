//! Turning what a killed recorder left (journals) into Parquet segments.
//!
//! Shared by `mcptape dataset recover` and by a recorder that finds leftover journals at start. A journal
//! `NAME.journal` becomes `NAME.parquet` next to it; a hidden journal `.NAME.journal` (the rotating recorder's
//! in-progress file inside a hive partition) becomes `NAME.parquet`, so the result lands in the same partition.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::journal::{self, Damage, read_journal_file};
use crate::segment::{self, Segment, write_segment};

/// What recovering one journal did.
#[derive(Debug)]
pub enum Recovered {
    /// The journal had already been turned into `segment` (a kill between publishing and removing it).
    AlreadyDone {
        /// The existing segment.
        segment: PathBuf,
        /// Its rows.
        rows: u64,
    },
    /// A segment was written.
    Written {
        /// The new segment.
        segment: PathBuf,
        /// Frames recovered.
        frames: u64,
        /// Batches recovered.
        batches: usize,
        /// The damaged tail, and where the journal was kept, if any.
        damage: Option<(Damage, PathBuf)>,
    },
}

/// Where the segment of `journal` goes: the same folder, the name without a leading dot.
pub fn segment_path(journal_path: &Path) -> PathBuf {
    with_suffix(journal_path, segment::SUFFIX, true)
}

fn with_suffix(journal_path: &Path, suffix: &str, unhide: bool) -> PathBuf {
    let name = journal_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name.strip_suffix(journal::SUFFIX).unwrap_or(&name);
    let stem = if unhide {
        stem.strip_prefix('.').unwrap_or(stem)
    } else {
        stem
    };
    journal_path.with_file_name(format!("{stem}{suffix}"))
}

/// Recovers one journal: writes its complete batches as a segment, removes it (or keeps a damaged one renamed
/// `*.journal.damaged`, out of the way of the next scan).
pub fn recover_journal(j: &Path) -> Result<Recovered> {
    let dest = segment_path(j);
    let contents = read_journal_file(j)?;
    let frames: u64 = contents.batches.iter().map(|b| b.num_rows() as u64).sum();
    if dest.exists() {
        let seg = Segment::open(&dest)?;
        if seg.rows >= frames {
            std::fs::remove_file(j).map_err(|e| Error::io(j, e))?;
            return Ok(Recovered::AlreadyDone {
                segment: dest,
                rows: seg.rows,
            });
        }
        return Err(Error::damaged(
            j,
            format!(
                "{} exists with fewer frames than the journal; move it away and run again",
                dest.display()
            ),
        ));
    }
    let Some(mut meta) = contents.meta.clone() else {
        let reason = contents
            .damage
            .as_ref()
            .map_or("no schema".to_string(), |d| d.reason.clone());
        return Err(Error::damaged(
            j,
            format!("not recoverable, the journal's schema message is unreadable ({reason}); file left in place"),
        ));
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
    let damage = match contents.damage {
        Some(d) => {
            let kept = with_suffix(j, ".journal.damaged", false);
            std::fs::rename(j, &kept).map_err(|e| Error::io(j, e))?;
            Some((d, kept))
        }
        None => {
            std::fs::remove_file(j).map_err(|e| Error::io(j, e))?;
            None
        }
    };
    Ok(Recovered::Written {
        segment: dest,
        frames,
        batches: contents.batches.len(),
        damage,
    })
}

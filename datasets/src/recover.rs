//! Turning what a killed recorder left (journals) into Parquet segments.
//!
//! Shared by `mcptape dataset recover` and by a recorder that finds leftover journals at start. A journal
//! `NAME.journal` becomes `NAME.parquet` next to it; a hidden journal `.NAME.journal` (the rotating recorder's
//! in-progress file inside a hive partition) becomes `NAME.parquet`, so the result lands in the same partition.

use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;

use crate::error::{Error, Result};
use crate::journal::{self, Damage, JournalReader, Tally};
use crate::segment::{self, Segment, write_segment_from};

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
///
/// The journal is read twice, one batch at a time, so memory stays at a batch however large it is: the first
/// pass counts its frames and finds any damage (the already-done check and the segment's note need both before
/// the segment is written), the second writes them.
pub fn recover_journal(j: &Path) -> Result<Recovered> {
    let dest = segment_path(j);
    let (meta, counted) = JournalReader::open(j)?.tally();
    let (frames, batches) = (counted.frames, counted.batches);
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
    let Some(mut meta) = meta else {
        let reason = counted
            .damage
            .as_ref()
            .map_or("no schema".to_string(), |d| d.reason.clone());
        return Err(Error::damaged(
            j,
            format!("not recoverable, the journal's schema message is unreadable ({reason}); file left in place"),
        ));
    };
    let lost = counted.damage.as_ref().map_or(0, |d| d.lost_bytes as u64);
    let note = format!(
        "recovered from journal by mcptape {}; {lost} damaged byte(s) lost",
        env!("CARGO_PKG_VERSION")
    );
    meta.note = if meta.note.is_empty() {
        note
    } else {
        format!("{}; {note}", meta.note)
    };
    write_segment_from(&dest, &meta, same_batches(JournalReader::open(j)?, j, &counted))?;
    let damage = match counted.damage {
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
        batches,
        damage,
    })
}

/// The second pass: the batches again, then an error (so the segment is not published) when they or where the
/// damage starts and what it loses differ from the first pass: the journal changed between the passes.
fn same_batches<'a, R: std::io::Read + 'a>(
    reader: JournalReader<R>,
    j: &'a Path,
    counted: &'a Tally,
) -> impl Iterator<Item = Result<RecordBatch>> + 'a {
    let shape = |t: &Tally| (t.batches, t.frames, t.damage.as_ref().map(|d| (d.offset, d.lost_bytes)));
    reader.checked(move |again| {
        (shape(again) != shape(counted)).then(|| {
            Error::damaged(
                j,
                format!(
                    "the journal changed while it was recovered ({} then {} frame(s)); run again once nothing \
                     writes it",
                    counted.frames, again.frames
                ),
            )
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::JournalWriter;
    use crate::{CaptureMeta, Direction, Frame, Kind, Transport, schema};

    /// A journal of three batches, and the offset where its second batch ends.
    fn journal() -> (Vec<u8>, usize) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.journal");
        let mut j = JournalWriter::create(&path, &CaptureMeta::new("stdio", "test")).unwrap();
        let mut second_end = 0;
        for b in 0..3u64 {
            let frames: Vec<Frame> = (0..=b)
                .map(|i| Frame::new("s", i, Direction::C2s, Transport::Stdio, Kind::Request, "{}"))
                .collect();
            j.append(&schema::to_batch(&frames)).unwrap();
            j.flush().unwrap();
            if b == 1 {
                second_end = std::fs::metadata(&path).unwrap().len() as usize;
            }
        }
        j.finish().unwrap();
        (std::fs::read(&path).unwrap(), second_end)
    }

    fn count(bytes: &[u8]) -> Tally {
        JournalReader::from_bytes(bytes.to_vec()).tally().1
    }

    fn second_pass(bytes: &[u8], counted: Tally) -> Vec<Result<RecordBatch>> {
        same_batches(
            JournalReader::from_bytes(bytes.to_vec()),
            Path::new("t.journal"),
            &counted,
        )
        .collect()
    }

    #[test]
    fn an_unchanged_journal_reads_the_same_twice() {
        let (bytes, second_end) = journal();
        for b in [&bytes[..], &bytes[..second_end + 7]] {
            let got = second_pass(b, count(b));
            assert_eq!(got.len(), 2 + usize::from(b.len() == bytes.len()));
            assert!(got.iter().all(Result::is_ok));
        }
    }

    #[test]
    fn a_journal_that_changed_between_the_passes_ends_in_an_error() {
        let (bytes, second_end) = journal();
        // Grew by a batch; grew inside its damaged tail; lost a batch.
        for (first, second) in [
            (second_end, bytes.len()),
            (second_end + 7, second_end + 9),
            (bytes.len(), second_end),
        ] {
            let got = second_pass(&bytes[..second], count(&bytes[..first]));
            let err = got.last().unwrap().as_ref().unwrap_err().to_string();
            assert!(err.contains("t.journal") && err.contains("changed"), "{err}");
            assert!(got[..got.len() - 1].iter().all(Result::is_ok));
        }
    }
}

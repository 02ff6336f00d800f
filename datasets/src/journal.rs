//! The crash journal: an Arrow IPC stream appended while a tap runs.
//!
//! A Parquet file is unreadable until its footer is written; an IPC stream is readable up to its last complete
//! message. So the tap appends batches here (flushed to the OS at least every flush interval) and only turns the
//! journal into a Parquet segment at rotation and exit. After a SIGKILL, [`read_journal`] gets back every complete
//! batch and names the damaged tail.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use arrow_buffer::Buffer;
use arrow_ipc::reader::StreamDecoder;
use arrow_ipc::writer::StreamWriter;
use arrow_schema::Schema;

use crate::error::{Error, Result};
use crate::fsx;
use crate::meta::CaptureMeta;
use crate::schema;

/// File name suffix of journals.
pub const SUFFIX: &str = ".journal";

/// Appends frame batches to a journal file.
pub struct JournalWriter {
    path: PathBuf,
    writer: StreamWriter<BufWriter<File>>,
    bytes: u64,
}

impl std::fmt::Debug for JournalWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JournalWriter").field("path", &self.path).finish()
    }
}

impl JournalWriter {
    /// Creates a new journal (0600) carrying `meta` in its schema metadata.
    pub fn create(path: &Path, meta: &CaptureMeta) -> Result<Self> {
        let file = fsx::create_private_file(path).map_err(|e| Error::io(path, e))?;
        let schema = Schema::clone(&schema::schema()).with_metadata(meta.to_map());
        let writer = StreamWriter::try_new(BufWriter::with_capacity(1 << 16, file), &schema)
            .map_err(|e| Error::damaged(path, e))?;
        let mut journal = JournalWriter {
            path: path.to_path_buf(),
            writer,
            bytes: 0,
        };
        journal.flush()?;
        Ok(journal)
    }

    /// Appends one batch (buffered; call [`JournalWriter::flush`] to hand it to the OS).
    pub fn append(&mut self, batch: &RecordBatch) -> Result<()> {
        self.bytes += batch.get_array_memory_size() as u64;
        self.writer
            .write(batch)
            .map_err(|e| Error::io(&self.path, std::io::Error::other(e)))
    }

    /// Hands everything appended so far to the OS: it survives a kill of this process from here on.
    pub fn flush(&mut self) -> Result<()> {
        self.writer
            .flush()
            .map_err(|e| Error::io(&self.path, std::io::Error::other(e)))?;
        self.writer.get_mut().flush().map_err(|e| Error::io(&self.path, e))
    }

    /// Approximate bytes appended (for rotation by size).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The journal's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the end-of-stream marker and closes the file.
    pub fn finish(mut self) -> Result<PathBuf> {
        self.writer
            .finish()
            .map_err(|e| Error::io(&self.path, std::io::Error::other(e)))?;
        let mut inner = self
            .writer
            .into_inner()
            .map_err(|e| Error::io(&self.path, std::io::Error::other(e)))?;
        inner.flush().map_err(|e| Error::io(&self.path, e))?;
        Ok(self.path)
    }
}

/// Where and why a journal stops being readable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// Byte offset of the first byte that could not be used.
    pub offset: usize,
    /// Bytes lost after `offset`.
    pub lost_bytes: usize,
    /// What the decoder said.
    pub reason: String,
}

/// What could be read from a journal.
#[derive(Debug)]
pub struct JournalContents {
    /// The metadata from the journal's schema, when the schema message was intact.
    pub meta: Option<CaptureMeta>,
    /// Every complete batch, in order.
    pub batches: Vec<RecordBatch>,
    /// The damaged tail, if any.
    pub damage: Option<Damage>,
}

/// Decodes a journal's bytes: every complete batch and, for a truncated or damaged file, where it stops.
/// Never panics: a panic inside the decoder on hostile bytes is caught and reported as damage.
pub fn read_journal(bytes: &[u8]) -> JournalContents {
    read_journal_owned(bytes.to_vec())
}

/// [`read_journal`] without copying the bytes.
pub fn read_journal_owned(bytes: Vec<u8>) -> JournalContents {
    let total = bytes.len();
    let mut decoder = StreamDecoder::new();
    let mut buffer = Buffer::from_vec(bytes);
    let mut batches = Vec::new();
    let mut meta = None;
    // Offset just past the last complete message.
    let mut good = 0usize;
    let mut damage = None;
    loop {
        let before = buffer.len();
        let step = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| decoder.decode(&mut buffer)));
        match step {
            Ok(Ok(Some(batch))) => {
                if meta.is_none() {
                    meta = decoder.schema().and_then(|s| {
                        CaptureMeta::from_pairs(s.metadata().iter().map(|(k, v)| (k.as_str(), v.as_str())))
                    });
                }
                if let Err(e) = decoder.schema().map_or(Ok(()), |s| schema::check_compatible(&s)) {
                    damage = Some(Damage {
                        offset: 0,
                        lost_bytes: total,
                        reason: format!("not a capture journal: {e}"),
                    });
                    batches.clear();
                    break;
                }
                batches.push(batch);
                good = total - buffer.len();
            }
            Ok(Ok(None)) => {
                // All input consumed. A complete schema message with no batch yet still counts as good.
                if meta.is_none() {
                    if let Some(s) = decoder.schema() {
                        meta = CaptureMeta::from_pairs(s.metadata().iter().map(|(k, v)| (k.as_str(), v.as_str())));
                    }
                }
                if let Err(e) = decoder.finish() {
                    damage = Some(Damage {
                        offset: good,
                        lost_bytes: total - good,
                        reason: e.to_string(),
                    });
                } else {
                    good = total;
                }
                break;
            }
            Ok(Err(e)) => {
                damage = Some(Damage {
                    offset: good,
                    lost_bytes: total - good,
                    reason: e.to_string(),
                });
                break;
            }
            Err(_) => {
                damage = Some(Damage {
                    offset: good,
                    lost_bytes: total - good,
                    reason: "decoder panicked".into(),
                });
                break;
            }
        }
        if buffer.len() == before && buffer.is_empty() {
            break;
        }
    }
    if damage.is_none() && decoder.schema().is_none() {
        damage = Some(Damage {
            offset: 0,
            lost_bytes: total,
            reason: "the journal ends before its first batch".into(),
        });
    } else if damage.is_none() && good < total {
        damage = Some(Damage {
            offset: good,
            lost_bytes: total - good,
            reason: "unexpected end".into(),
        });
    }
    JournalContents { meta, batches, damage }
}

/// Reads a journal file.
pub fn read_journal_file(path: &Path) -> Result<JournalContents> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    Ok(read_journal_owned(bytes))
}

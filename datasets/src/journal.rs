//! The crash journal: an Arrow IPC stream appended while a tap runs.
//!
//! A Parquet file is unreadable until its footer is written; an IPC stream is readable up to its last complete
//! message. So the tap appends batches here (flushed to the OS at least every flush interval) and only turns the
//! journal into a Parquet segment at rotation and exit. After a SIGKILL, [`read_journal`] gets back every complete
//! batch and names the damaged tail.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
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

/// What one read of a journal handed out and where it stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Batches handed out.
    pub batches: usize,
    /// Frames in them.
    pub frames: u64,
    /// The damaged tail, if any.
    pub damage: Option<Damage>,
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
    let mut reader = JournalReader::from_bytes(bytes);
    let batches = reader.by_ref().collect();
    let (meta, damage) = reader.finish();
    JournalContents { meta, batches, damage }
}

/// Size of the reads [`JournalReader::open`] makes.
const READ_CHUNK: usize = 1 << 20;

/// A journal's batches one at a time, read as they are needed: finalizing a journal of gigabytes holds about one
/// batch in memory, not the file. After the last batch, [`JournalReader::finish`] gives the metadata and says where
/// and why the journal stopped being readable, as [`read_journal`] does. Never panics: a panic inside the decoder
/// on hostile bytes is caught and reported as damage.
pub struct JournalReader<R> {
    source: R,
    decoder: StreamDecoder,
    /// Bytes read and not yet decoded.
    buffer: Buffer,
    /// Bytes read from `source` so far.
    read: usize,
    /// Offset just past the last complete message.
    good: usize,
    meta: Option<CaptureMeta>,
    damage: Option<Damage>,
    done: bool,
}

impl<R> std::fmt::Debug for JournalReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JournalReader")
            .field("read", &self.read)
            .field("good", &self.good)
            .field("damage", &self.damage)
            .finish()
    }
}

impl JournalReader<File> {
    /// Reads the journal at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        Ok(JournalReader::new(file))
    }
}

impl JournalReader<std::io::Empty> {
    /// Decodes bytes already in memory, without copying them.
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        let mut reader = JournalReader::new(std::io::empty());
        reader.read = bytes.len();
        reader.buffer = Buffer::from_vec(bytes);
        reader
    }
}

impl<R: Read> JournalReader<R> {
    /// Reads a journal from `source`.
    pub fn new(source: R) -> Self {
        JournalReader {
            source,
            decoder: StreamDecoder::new(),
            buffer: Buffer::from_vec(Vec::<u8>::new()),
            read: 0,
            good: 0,
            meta: None,
            damage: None,
            done: false,
        }
    }

    /// The metadata from the journal's schema (when it was intact) and the damaged tail, if any. Reads what is left
    /// of the source to count the bytes lost. Call once, after the last batch.
    pub fn finish(&mut self) -> (Option<CaptureMeta>, Option<Damage>) {
        while self.next().is_some() {}
        let rest = std::io::copy(&mut self.source, &mut std::io::sink()).unwrap_or(0);
        let total = self.read + usize::try_from(rest).unwrap_or(usize::MAX);
        let mut damage = self.damage.take().map(|d| Damage {
            lost_bytes: total - d.offset,
            ..d
        });
        if damage.is_none() && self.decoder.schema().is_none() {
            damage = Some(Damage {
                offset: 0,
                lost_bytes: total,
                reason: "the journal ends before its first batch".into(),
            });
        } else if damage.is_none() && self.good < total {
            damage = Some(Damage {
                offset: self.good,
                lost_bytes: total - self.good,
                reason: "unexpected end".into(),
            });
        }
        (self.meta.take(), damage)
    }

    /// Reads to the end, holding one batch at a time: the metadata and what the read found.
    pub fn tally(mut self) -> (Option<CaptureMeta>, Tally) {
        let mut tally = Tally::default();
        for b in self.by_ref() {
            tally.batches += 1;
            tally.frames += b.num_rows() as u64;
        }
        let (meta, damage) = self.finish();
        tally.damage = damage;
        (meta, tally)
    }

    /// The batches, then (known only after the last) the error `check` makes of the read's [`Tally`], if any: a
    /// segment being written from them is abandoned before it is published.
    pub fn checked<'a>(
        mut self,
        check: impl FnOnce(&Tally) -> Option<Error> + 'a,
    ) -> impl Iterator<Item = Result<RecordBatch>> + 'a
    where
        R: 'a,
    {
        let mut tally = Tally::default();
        let mut check = Some(check);
        std::iter::from_fn(move || {
            check.as_ref()?;
            if let Some(b) = self.next() {
                tally.batches += 1;
                tally.frames += b.num_rows() as u64;
                return Some(Ok(b));
            }
            let check = check.take()?;
            tally.damage = self.finish().1;
            check(&tally).map(Err)
        })
    }

    /// Stops at `offset` for `reason` (the bytes lost are counted by [`JournalReader::finish`]).
    fn damaged(&mut self, offset: usize, reason: String) {
        self.damage = Some(Damage {
            offset,
            lost_bytes: 0,
            reason,
        });
        self.done = true;
    }

    fn schema_meta(&self) -> Option<CaptureMeta> {
        self.decoder
            .schema()
            .and_then(|s| CaptureMeta::from_pairs(s.metadata().iter().map(|(k, v)| (k.as_str(), v.as_str()))))
    }

    /// Refills the buffer from the source: `Ok(false)` at its end.
    fn refill(&mut self) -> std::io::Result<bool> {
        let mut chunk = vec![0u8; READ_CHUNK];
        loop {
            match self.source.read(&mut chunk) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    chunk.truncate(n);
                    self.read += n;
                    self.buffer = Buffer::from_vec(chunk);
                    return Ok(true);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Input ended: a complete schema message with no batch yet still counts as good.
    fn end(&mut self) {
        self.done = true;
        if self.meta.is_none() {
            self.meta = self.schema_meta();
        }
        match self.decoder.finish() {
            Err(e) => self.damaged(self.good, e.to_string()),
            Ok(()) => self.good = self.read,
        }
    }
}

impl<R: Read> Iterator for JournalReader<R> {
    type Item = RecordBatch;

    fn next(&mut self) -> Option<RecordBatch> {
        while !self.done {
            if self.buffer.is_empty() {
                match self.refill() {
                    Ok(true) => {}
                    Ok(false) => {
                        self.end();
                        break;
                    }
                    Err(e) => {
                        // Never a quiet end: the caller would take a short read for the whole journal.
                        self.damaged(self.good, format!("read error: {e}"));
                        break;
                    }
                }
            }
            let before = self.buffer.len();
            let (decoder, buffer) = (&mut self.decoder, &mut self.buffer);
            let step = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| decoder.decode(buffer)));
            match step {
                Ok(Ok(Some(batch))) => {
                    if self.meta.is_none() {
                        self.meta = self.schema_meta();
                    }
                    if let Err(e) = self.decoder.schema().map_or(Ok(()), |s| schema::check_compatible(&s)) {
                        // Found at the first batch, before any was handed out.
                        self.damaged(0, format!("not a capture journal: {e}"));
                        break;
                    }
                    self.good = self.read - self.buffer.len();
                    return Some(batch);
                }
                Ok(Ok(None)) if self.buffer.is_empty() || self.buffer.len() < before => {}
                Ok(Ok(None)) => self.damaged(self.good, "the decoder made no progress".into()),
                Ok(Err(e)) => self.damaged(self.good, e.to_string()),
                Err(_) => self.damaged(self.good, "decoder panicked".into()),
            }
        }
        None
    }
}

/// Reads a journal file.
pub fn read_journal_file(path: &Path) -> Result<JournalContents> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    Ok(read_journal_owned(bytes))
}

//! [`CaptureWriter`]: frames in, a journal while running, Parquet segments at rotation and close.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;

use crate::error::{Error, Result};
use crate::frame::Frame;
use crate::fsx;
use crate::journal::{self, JournalWriter};
use crate::layout;
use crate::meta::CaptureMeta;
use crate::schema;
use crate::segment;

/// Default interval after which buffered frames reach the journal.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// Frames per journal batch when a flush holds more. A batch is built as soon as its last frame comes, and a flush
/// only encodes and writes the batches, yielding the CPU between them: a thread is not preempted by a waking one
/// before its time slice ends, so a proxy thread woken on the writer's CPU (the other one busy) waited as long as
/// a flush ran in one go, 1-5 ms when a busy HTTP tap's 100 ms of frames became one batch at the flush.
pub const FLUSH_PIECE: usize = 128;

/// After a write error (disk full, file too large), how long frames are dropped before a new journal is tried.
pub const RETRY_AFTER_ERROR: Duration = Duration::from_secs(1);

/// Where a [`CaptureWriter`] puts its files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Layout {
    /// `DIR/NAME-STAMP-PID-NNNN.parquet`, the journal opened at once beside it (one-off captures).
    #[default]
    Flat,
    /// `DIR/date=YYYY-MM-DD/hour=HH/NAME-START-NNNNNN.parquet` (see [`crate::layout`]); the journal is hidden in
    /// its partition and opened at the segment's first frame, so an idle period writes no empty segments.
    Hive,
}

/// How a [`CaptureWriter`] names and batches its files.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// Folder for journals and segments (created 0700).
    pub dir: PathBuf,
    /// Label at the start of file names.
    pub name: String,
    /// Metadata written into every segment.
    pub meta: CaptureMeta,
    /// Frames per journal batch before a flush is forced.
    pub batch_rows: usize,
    /// Buffered payload bytes before a flush is forced.
    pub batch_bytes: usize,
    /// Folder layout and naming.
    pub layout: Layout,
}

impl WriterOptions {
    /// Options with the default batch sizes.
    pub fn new(dir: impl Into<PathBuf>, name: impl Into<String>, meta: CaptureMeta) -> Self {
        WriterOptions {
            dir: dir.into(),
            name: name.into(),
            meta,
            batch_rows: 4096,
            batch_bytes: 8 << 20,
            layout: Layout::Flat,
        }
    }
}

/// Writes frames durably: appends to a journal, flushes on size or on [`CaptureWriter::flush`], and turns the
/// journal into a Parquet segment on [`CaptureWriter::rotate`] and [`CaptureWriter::finish`].
#[derive(Debug)]
pub struct CaptureWriter {
    opts: WriterOptions,
    stem: String,
    segment_no: u32,
    journal: Option<JournalWriter>,
    /// Frames not yet in the journal: batches of [`FLUSH_PIECE`] rows, each built when its last frame came, then
    /// the frames after them.
    ready: Vec<RecordBatch>,
    piece: Vec<Frame>,
    /// Rows and payload bytes in `ready` and `piece`.
    pending_rows: usize,
    pending_bytes: usize,
    last_flush: Instant,
    segments: Vec<PathBuf>,
    frames: u64,
    /// Frames accepted but never written (a failed journal write, or dropped while the journal was broken).
    lost: u64,
    /// When the current journal failed a write: it is no longer appended to, and frames are dropped until
    /// [`RETRY_AFTER_ERROR`] has passed and a new journal is opened.
    broken_since: Option<Instant>,
    /// Journals abandoned after a write error, with the segment each becomes at [`CaptureWriter::finish`].
    damaged: Vec<(PathBuf, PathBuf)>,
    /// The first write error, noted in the metadata of later segments.
    first_error: Option<String>,
    /// Where the open journal's segment goes.
    dest: Option<PathBuf>,
    /// Frames in the open journal (pending included).
    journal_frames: u64,
    /// Drops and sampled-out sessions since the last segment: written into the next one.
    seg_dropped: u64,
    seg_sampled_out: u64,
    /// Frames lost to write errors since the last segment: written into the next one.
    seg_lost: u64,
}

impl CaptureWriter {
    /// Creates the folder and (flat layout) the first journal.
    pub fn create(opts: WriterOptions) -> Result<Self> {
        fsx::create_private_dir(&opts.dir).map_err(|e| Error::io(&opts.dir, e))?;
        let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
            .to_string()
            .replace(['-', ':'], "");
        let stem = format!("{}-{}-{}", opts.name, stamp, std::process::id());
        let flat = opts.layout == Layout::Flat;
        let mut w = CaptureWriter {
            opts,
            stem,
            segment_no: 0,
            journal: None,
            ready: Vec::new(),
            piece: Vec::with_capacity(FLUSH_PIECE),
            pending_rows: 0,
            pending_bytes: 0,
            last_flush: Instant::now(),
            segments: Vec::new(),
            frames: 0,
            lost: 0,
            broken_since: None,
            damaged: Vec::new(),
            first_error: None,
            dest: None,
            journal_frames: 0,
            seg_dropped: 0,
            seg_sampled_out: 0,
            seg_lost: 0,
        };
        if flat {
            w.open_journal()?;
        }
        Ok(w)
    }

    /// The journal and segment paths of the next segment.
    fn next_paths(&mut self) -> Result<(PathBuf, PathBuf)> {
        match self.opts.layout {
            Layout::Flat => {
                let base = self.opts.dir.join(format!("{}-{:04}", self.stem, self.segment_no));
                let mut j = base.clone().into_os_string();
                j.push(journal::SUFFIX);
                let mut d = base.into_os_string();
                d.push(segment::SUFFIX);
                Ok((PathBuf::from(j), PathBuf::from(d)))
            }
            Layout::Hive => {
                let now = std::time::SystemTime::now();
                let part = self.opts.dir.join(layout::partition(now));
                fsx::create_private_dir(&part).map_err(|e| Error::io(&part, e))?;
                let stamp = layout::stamp(now);
                loop {
                    // A restart within the same second starts numbering at 0 again: skip names in use.
                    let stem = format!("{}-{stamp}-{:06}", self.opts.name, self.segment_no);
                    let j = part.join(format!(".{stem}{}", journal::SUFFIX));
                    let d = part.join(format!("{stem}{}", segment::SUFFIX));
                    if !j.exists() && !d.exists() {
                        return Ok((j, d));
                    }
                    self.segment_no += 1;
                }
            }
        }
    }

    fn open_journal(&mut self) -> Result<()> {
        let (j, d) = self.next_paths()?;
        self.journal = Some(JournalWriter::create(&j, &self.opts.meta)?);
        self.dest = Some(d);
        self.journal_frames = 0;
        Ok(())
    }

    /// Buffers a frame; flushes when the batch is full.
    pub fn append(&mut self, frame: Frame) -> Result<()> {
        self.pending_rows += 1;
        self.pending_bytes += frame.payload.len();
        self.piece.push(frame);
        if self.piece.len() >= FLUSH_PIECE {
            self.cut();
        }
        self.frames += 1;
        self.journal_frames += 1;
        if self.pending_rows >= self.opts.batch_rows || self.pending_bytes >= self.opts.batch_bytes {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes buffered frames to the journal and hands them to the OS.
    ///
    /// On a write error (ENOSPC, EFBIG, EIO) the frames of the batch are counted in [`CaptureWriter::lost`], the
    /// journal is left as it is (its complete batches stay recoverable) and frames are dropped, and counted, until
    /// [`RETRY_AFTER_ERROR`] has passed; then a new journal is tried. Only the first error is returned.
    pub fn flush(&mut self) -> Result<()> {
        self.last_flush = Instant::now();
        if self.pending_rows == 0 {
            return Ok(());
        }
        if let Some(since) = self.broken_since {
            if since.elapsed() < RETRY_AFTER_ERROR {
                self.drop_pending();
                return Ok(());
            }
            self.abandon_journal();
        }
        let r = self.write_pending();
        if let Err(e) = &r {
            self.drop_pending();
            self.broken_since = Some(Instant::now());
            if self.first_error.is_some() {
                return Ok(());
            }
            self.first_error = Some(e.to_string());
        }
        r
    }

    fn write_pending(&mut self) -> Result<()> {
        if self.journal.is_none() {
            self.open_journal()?;
        }
        if !self.piece.is_empty() {
            self.cut();
        }
        let journal = self.journal.as_mut().expect("journal opened above");
        let batches = std::mem::take(&mut self.ready);
        for (i, batch) in batches.iter().enumerate() {
            if let Err(e) = journal.append(batch).and_then(|()| journal.flush()) {
                // What reached the journal stays there; the rest is what the error cost.
                self.pending_rows = batches[i..].iter().map(RecordBatch::num_rows).sum();
                return Err(e);
            }
            if i + 1 < batches.len() {
                std::thread::yield_now();
            }
        }
        self.pending_rows = 0;
        self.pending_bytes = 0;
        Ok(())
    }

    /// Makes the frames of the piece a batch, ready to be written, yielding the CPU every
    /// [`schema::ROWS_BETWEEN`] rows and after it: building a batch is the writer's largest piece of work (see
    /// [`FLUSH_PIECE`]).
    fn cut(&mut self) {
        self.ready
            .push(schema::to_batch_with(&self.piece, std::thread::yield_now));
        self.piece.clear();
        std::thread::yield_now();
    }

    fn drop_pending(&mut self) {
        self.lost += self.pending_rows as u64;
        self.seg_lost += self.pending_rows as u64;
        self.ready.clear();
        self.piece.clear();
        self.pending_rows = 0;
        self.pending_bytes = 0;
    }

    /// Sets a failed journal aside (finished into a segment by [`CaptureWriter::finish`]); the next flush opens a
    /// new one.
    fn abandon_journal(&mut self) {
        self.broken_since = None;
        if let Some(j) = self.journal.take() {
            let journal = j.path().to_path_buf();
            // Dropping the writer may flush a few more bytes; the reader stops at the last complete batch anyway.
            drop(j);
            let dest = self
                .dest
                .take()
                .unwrap_or_else(|| crate::recover::segment_path(&journal));
            self.damaged.push((journal, dest));
            self.segment_no += 1;
        }
    }

    /// Frames accepted but not written because of write errors.
    pub fn lost(&self) -> u64 {
        self.lost
    }

    /// The first write error, if any.
    pub fn write_error(&self) -> Option<&str> {
        self.first_error.as_deref()
    }

    /// The metadata of the next segment: the drops, write losses and sampled-out sessions since the last one (so
    /// the counts of a folder's segments add up to the run's) and, after a write error, a note.
    fn segment_meta(&self) -> CaptureMeta {
        let mut meta = self.opts.meta.clone();
        meta.dropped_frames = self.seg_dropped + self.seg_lost;
        meta.sampled_out_sessions = self.seg_sampled_out;
        if let Some(e) = &self.first_error {
            let note = format!("capture write failed, {} frame(s) not written: {e}", self.lost);
            meta.note = if meta.note.is_empty() {
                note
            } else {
                format!("{}; {note}", meta.note)
            };
        }
        meta
    }

    /// A segment carried the counts: start the next ones from zero.
    fn segment_written(&mut self) {
        self.seg_dropped = 0;
        self.seg_lost = 0;
        self.seg_sampled_out = 0;
        self.journal_frames = 0;
    }

    /// True when buffered frames have waited `interval` or longer.
    pub fn flush_due(&self, interval: Duration) -> bool {
        self.pending_rows > 0 && self.last_flush.elapsed() >= interval
    }

    /// Frames accepted so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Approximate bytes in the current journal (for rotation by size).
    pub fn journal_bytes(&self) -> u64 {
        self.journal.as_ref().map_or(0, |j| j.bytes()) + self.pending_bytes as u64
    }

    /// Frames in the open segment so far (0 when none is open).
    pub fn segment_frames(&self) -> u64 {
        self.journal_frames
    }

    /// Counts dropped frames into the next segment's metadata (`mcptape.dropped_frames`).
    pub fn add_dropped(&mut self, n: u64) {
        self.seg_dropped += n;
    }

    /// Counts sessions left out by sampling into the next segment's metadata (`mcptape.sampled_out_sessions`).
    pub fn add_sampled_out(&mut self, n: u64) {
        self.seg_sampled_out += n;
    }

    /// The capture folder.
    pub fn dir(&self) -> &Path {
        &self.opts.dir
    }

    /// Closes the current journal into a Parquet segment; the next frame opens a new journal. `None` when no
    /// segment was open (nothing recorded since the last one).
    pub fn rotate(&mut self) -> Result<Option<PathBuf>> {
        let flushed = self.flush();
        if self.broken_since.is_some() {
            // The journal failed a write: keep what it holds, as a damaged journal, and start afresh.
            self.abandon_journal();
            self.finish_damaged()?;
            return flushed.map(|()| self.segments.last().cloned());
        }
        flushed?;
        let Some(journal) = self.journal.take() else {
            return Ok(None);
        };
        let journal_path = journal.path().to_path_buf();
        let dest = self
            .dest
            .take()
            .unwrap_or_else(|| crate::recover::segment_path(&journal_path));
        self.segment_no += 1;
        let meta = self.segment_meta();
        match journal.finish().and_then(|p| finalize_journal(&p, &dest, &meta)) {
            Ok(_) => {
                self.segment_written();
                if self.opts.layout == Layout::Hive {
                    // A rotating writer runs for weeks: keep only the last path, so memory stays flat.
                    self.segments.clear();
                }
                self.segments.push(dest.clone());
                Ok(Some(dest))
            }
            Err(e) => {
                // The end marker or the segment could not be written: the journal stays for `dataset recover`.
                self.first_error.get_or_insert_with(|| e.to_string());
                Err(e)
            }
        }
    }

    /// Turns the journals set aside after write errors into segments (their complete batches). A journal whose
    /// segment cannot be written either stays where it is, for `mcptape dataset recover`.
    fn finish_damaged(&mut self) -> Result<()> {
        let meta = self.segment_meta();
        let mut first = Ok(());
        for (journal_path, dest) in std::mem::take(&mut self.damaged) {
            // Its complete batches, read as they are written out; the damaged tail is what the write error cut.
            let r = journal::JournalReader::open(&journal_path).and_then(|mut reader| {
                let mut batches = reader.by_ref().peekable();
                if batches.peek().is_none() {
                    return Ok(0);
                }
                segment::write_segment_from(&dest, &meta, batches.map(Ok))
            });
            match r {
                Ok(rows) => {
                    let _ = std::fs::remove_file(&journal_path);
                    if rows > 0 {
                        self.segment_written();
                        self.segments.push(dest);
                    }
                }
                Err(e) => {
                    if first.is_ok() {
                        first = Err(e);
                    }
                }
            }
        }
        first
    }

    /// Flushes, writes the last segment, and returns every segment written (hive layout: the last one).
    pub fn finish(mut self) -> Result<Vec<PathBuf>> {
        if self.journal.is_none()
            && self.broken_since.is_none()
            && (self.seg_dropped > 0 || self.seg_sampled_out > 0 || self.seg_lost > 0)
        {
            // Counts with no frame after them still need a file to say so.
            self.open_journal()?;
        }
        let r = self.rotate();
        let damaged = self.finish_damaged();
        r?;
        damaged?;
        self.segments.sort();
        Ok(std::mem::take(&mut self.segments))
    }
}

/// Turns a complete journal into a segment at `dest` and removes the journal. Returns the rows written. The journal
/// is read batch by batch, so a large one is never in memory whole; if it turns out damaged, the segment is
/// abandoned and the journal kept.
pub fn finalize_journal(journal_path: &Path, dest: &Path, meta: &CaptureMeta) -> Result<u64> {
    // The damage is known only after the last batch: it comes as an error there, before the segment is published.
    let batches = journal::JournalReader::open(journal_path)?.checked(|t| {
        t.damage
            .as_ref()
            .map(|d| Error::damaged(journal_path, format!("at byte {}: {}", d.offset, d.reason)))
    });
    let rows = segment::write_segment_from(dest, meta, batches)?;
    std::fs::remove_file(journal_path).map_err(|e| Error::io(journal_path, e))?;
    Ok(rows)
}

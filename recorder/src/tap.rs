//! The one `Tap` core every transport adapter feeds.
//!
//! Adapters forward bytes themselves and only hand copies here, already framed into messages (framing is cheap
//! and runs inline). Everything else (classification, correlation, redaction, Arrow building, disk) happens on
//! one writer thread behind a bounded queue, so forwarding never waits for the recorder: when the queue is full
//! the frame is dropped and counted, and the writer records a `gap` lifecycle frame with the count before the
//! next frame it gets. With `lossless` the adapter blocks instead (backpressure on the traffic).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use bytes::Bytes;
use mcptape_datasets::annotate::Annotator;
use mcptape_datasets::redact::RedactionRules;
use mcptape_datasets::{CaptureWriter, Direction, Frame, HttpMeta, Kind, Transport, WriterOptions};

use crate::log::Log;
use crate::metrics::Metrics;
use crate::rotation::Rotation;
use crate::sample::Sampler;
use crate::sink::SinkHandle;

mod session_tap;
pub mod streams;
pub use session_tap::SessionTap;
use streams::{Chunk, Streams};

/// Method names of the tap's own lifecycle frames.
pub mod lifecycle {
    /// The child process or connection started.
    pub const START: &str = "mcptape/start";
    /// A line the child wrote to stderr (payload: the line, without its newline).
    pub const STDERR: &str = "mcptape/stderr";
    /// One side closed its stream.
    pub const EOF: &str = "mcptape/eof";
    /// The child exited.
    pub const EXIT: &str = "mcptape/exit";
    /// A signal was forwarded to the child.
    pub const SIGNAL: &str = "mcptape/signal";
    /// Frames were dropped here (payload: `{"dropped":N}`).
    pub const GAP: &str = "mcptape/gap";
    /// A message longer than the frame limit was recorded in parts.
    pub const OVERSIZE: &str = "mcptape/oversize";
}

/// How the tap queues and writes.
#[derive(Debug, Clone)]
pub struct TapConfig {
    /// Where and how segments are written.
    pub writer: WriterOptions,
    /// Redaction applied before anything reaches disk.
    pub rules: RedactionRules,
    /// Frames the queue holds before dropping (or blocking, with `lossless`).
    pub queue_frames: usize,
    /// Payload bytes the queue holds before dropping (or blocking).
    pub queue_bytes: usize,
    /// Block the traffic instead of dropping when the queue is full.
    pub lossless: bool,
    /// Longest time a frame waits in memory before reaching the journal while traffic flows.
    pub flush_interval: Duration,
    /// How long the writer waits for more frames before flushing an idle stream.
    pub idle_flush: Duration,
    /// While frames flow, the writer polls its queue every `idle_flush` instead of being woken for each frame
    /// (adapters wake it only when it falls behind). The HTTP tap turns this on: a wake-up per frame was most of
    /// the latency it added to a small request.
    pub poll_writer: bool,
    /// Segment rotation and local retention (rotation on means the hive layout).
    pub rotation: Rotation,
    /// Which sessions are recorded.
    pub sample: Sampler,
    /// Told about every finished segment; asked before retention deletes one (an uploader).
    pub sink: Option<SinkHandle>,
    /// Counters for `/metrics`.
    pub metrics: Arc<Metrics>,
}

impl TapConfig {
    /// Defaults: 64k frames / 256 MiB queue, drop when full, flush every 100 ms and after 5 ms idle.
    pub fn new(writer: WriterOptions, rules: RedactionRules) -> Self {
        TapConfig {
            writer,
            rules,
            queue_frames: 65_536,
            queue_bytes: 256 << 20,
            lossless: false,
            flush_interval: mcptape_datasets::writer::FLUSH_INTERVAL,
            idle_flush: Duration::from_millis(5),
            poll_writer: false,
            rotation: Rotation::default(),
            sample: Sampler::default(),
            sink: None,
            metrics: Arc::default(),
        }
    }
}

/// One observed message or lifecycle event, as an adapter hands it over.
#[derive(Debug, Clone)]
pub struct Observed {
    /// Session the frame belongs to.
    pub session: Arc<str>,
    /// Stream within the session.
    pub stream_id: u32,
    /// Which way it travelled.
    pub direction: Direction,
    /// What carried it.
    pub transport: Transport,
    /// `Some(method)` for a lifecycle event; `None` for a message to classify.
    pub lifecycle: Option<&'static str>,
    /// The bytes (a refcounted copy of what was forwarded).
    pub payload: Bytes,
    /// Wall clock, ns since the epoch.
    pub ts_ns: i64,
    /// Monotonic ns since the session started.
    pub t_ns: u64,
    /// HTTP facts, for HTTP-borne frames.
    pub http: Option<HttpMeta>,
    /// Raw Mcp-Session-Id (hashed by the writer unless the rules say otherwise).
    pub mcp_session: Option<String>,
    /// Protocol version the transport declared (an HTTP header).
    pub protocol_version: Option<String>,
}

enum Msg {
    // Boxed: the bounded channel preallocates every slot at the size of the largest variant.
    Frame { obs: Box<Observed>, dropped_before: u64 },
    Chunk { chunk: Box<Chunk>, dropped_before: u64 },
    EndSession(Arc<str>),
    Rotate,
    Close,
}

struct Shared {
    dropped: AtomicU64,
    dropped_total: AtomicU64,
    queued_bytes: AtomicUsize,
    /// Frames queued and not yet taken by the writer.
    queued_frames: AtomicUsize,
    /// The writer thread when it polls ([`TapConfig::poll_writer`]), unparked when it falls behind.
    writer: std::sync::OnceLock<std::thread::Thread>,
    queue_bytes: usize,
    lossless: bool,
    closed: AtomicBool,
    /// Sessions sampled out since the writer last looked (it writes them into the next segment's metadata).
    sampled_out: AtomicU64,
    sample: Sampler,
    metrics: Arc<Metrics>,
}

/// The handle adapters use to hand frames to the tap. Cheap to clone; never blocks unless `lossless`.
#[derive(Clone)]
pub struct Tap {
    tx: SyncSender<Msg>,
    shared: Arc<Shared>,
    epoch: Instant,
}

impl std::fmt::Debug for Tap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tap")
            .field("dropped", &self.shared.dropped_total.load(Ordering::Relaxed))
            .finish()
    }
}

/// What the writer did, returned when the tap is closed.
#[derive(Debug, Clone, Default)]
pub struct TapSummary {
    /// Segments written (with rotation on, only the count is kept, so a service's memory stays flat).
    pub segments: Vec<PathBuf>,
    /// Number of segments written.
    pub segment_count: u64,
    /// The capture folder.
    pub dir: PathBuf,
    /// Rotation was on (hive layout).
    pub rotating: bool,
    /// Frames written.
    pub frames: u64,
    /// Frames dropped (queue full or write errors).
    pub dropped: u64,
    /// The first write error, if writing failed at some point.
    pub write_error: Option<String>,
}

/// The writer thread of a running tap.
#[derive(Debug)]
pub struct TapWriter {
    thread: std::thread::JoinHandle<TapSummary>,
}

impl TapWriter {
    /// Waits for the writer to drain the queue and finish its segments. Call after every [`Tap`] clone is dropped.
    pub fn finish(self) -> TapSummary {
        self.thread.join().unwrap_or_else(|_| TapSummary {
            write_error: Some("the capture writer thread panicked".into()),
            ..Default::default()
        })
    }
}

impl Tap {
    /// Creates the capture folder and its first journal and starts the writer thread. With rotation on, the
    /// capture uses the hive layout and journals a previous run left in the folder are recovered first.
    pub fn start(mut config: TapConfig, log: Log) -> mcptape_datasets::Result<(Tap, TapWriter)> {
        let mut leftovers = Vec::new();
        if config.rotation.enabled() {
            config.writer.layout = mcptape_datasets::Layout::Hive;
            if config.writer.dir.is_dir() {
                leftovers = crate::rotation::recover_leftovers(&config.writer.dir, &log);
            }
        }
        config.metrics.set_sink(config.sink.as_ref().map(|s| s.0.clone()));
        let writer = CaptureWriter::create(config.writer.clone())?;
        let (tx, rx) = sync_channel(config.queue_frames);
        let shared = Arc::new(Shared {
            dropped: AtomicU64::new(0),
            dropped_total: AtomicU64::new(0),
            queued_bytes: AtomicUsize::new(0),
            queued_frames: AtomicUsize::new(0),
            writer: std::sync::OnceLock::new(),
            queue_bytes: config.queue_bytes,
            lossless: config.lossless,
            closed: AtomicBool::new(false),
            sampled_out: AtomicU64::new(0),
            sample: config.sample,
            metrics: config.metrics.clone(),
        });
        let mut worker = Worker {
            rx,
            writer: Some(writer),
            annotator: Annotator::new(),
            streams: Streams::default(),
            rules: config.rules,
            seqs: HashMap::new(),
            shared: shared.clone(),
            flush_interval: config.flush_interval,
            idle_flush: config.idle_flush,
            poll: config.poll_writer,
            log,
            summary: TapSummary::default(),
            next_rotation: config.rotation.next_due(std::time::SystemTime::now(), Instant::now()),
            rotation: config.rotation,
            sink: config.sink,
            metrics: config.metrics,
            last_segment: None,
        };
        worker.summary.dir = config.writer.dir.clone();
        worker.summary.rotating = worker.rotation.enabled();
        for seg in &leftovers {
            worker.segment_done(seg);
        }
        let thread = std::thread::Builder::new()
            .name("mcptape-writer".into())
            .spawn(move || worker.run())
            .map_err(|e| mcptape_datasets::Error::io(&config.writer.dir, e))?;
        if config.poll_writer {
            let _ = shared.writer.set(thread.thread().clone());
        }
        Ok((
            Tap {
                tx,
                shared,
                epoch: Instant::now(),
            },
            TapWriter { thread },
        ))
    }

    /// Monotonic ns since the tap started (adapters use it for `t_ns` baselines).
    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Hands a frame to the writer: drops and counts it when the queue is full, unless `lossless`.
    pub fn observe(&self, obs: Observed) {
        let len = obs.payload.len();
        let msg = |dropped_before| Msg::Frame {
            obs: Box::new(obs),
            dropped_before,
        };
        if let Err(earlier) = self.enqueue(len, msg) {
            self.count_drop(earlier, 1);
        }
    }

    /// Hands a chunk of an NDJSON stream to the writer, which frames it. Returns false when it was dropped (the
    /// caller counts the messages lost with [`Tap::count_lost`]).
    pub fn observe_chunk(&self, chunk: Chunk) -> bool {
        let len = chunk.obs.payload.len();
        let msg = |dropped_before| Msg::Chunk {
            chunk: Box::new(chunk),
            dropped_before,
        };
        match self.enqueue(len, msg) {
            Ok(()) => true,
            Err(earlier) => {
                self.count_drop(earlier, 0);
                false
            }
        }
    }

    /// Hands the end of an NDJSON stream to the writer; waits for room rather than drop it (it carries no bytes,
    /// and the stream it ends has no more traffic to slow).
    pub fn observe_stream_end(&self, chunk: Chunk) {
        let dropped_before = self.shared.dropped.swap(0, Ordering::Relaxed);
        let msg = Msg::Chunk {
            chunk: Box::new(chunk),
            dropped_before,
        };
        self.queued();
        if self.tx.send(msg).is_err() {
            self.unqueue(0);
            self.count_drop(dropped_before, 0);
        }
    }

    /// Counts `n` messages lost with a dropped chunk.
    pub fn count_lost(&self, n: u64) {
        self.count_drop(0, n);
    }

    /// Queues a message of `len` payload bytes built by `msg` from the drops it reports; `Err` with those drops
    /// when it could not be queued.
    fn enqueue(&self, len: usize, msg: impl FnOnce(u64) -> Msg) -> Result<(), u64> {
        let over_bytes = self.shared.queued_bytes.load(Ordering::Relaxed) + len > self.shared.queue_bytes;
        let dropped_before = self.shared.dropped.swap(0, Ordering::Relaxed);
        if self.shared.lossless {
            // Backpressure: wait for room by bytes (the channel itself blocks on its frame bound).
            while self.shared.queued_bytes.load(Ordering::Relaxed) > 0
                && self.shared.queued_bytes.load(Ordering::Relaxed) + len > self.shared.queue_bytes
                && !self.shared.closed.load(Ordering::Relaxed)
            {
                self.wake_writer();
                std::thread::sleep(Duration::from_micros(200));
            }
            self.shared.queued_bytes.fetch_add(len, Ordering::Relaxed);
            self.queued();
            if self.tx.send(msg(dropped_before)).is_err() {
                self.unqueue(len);
                return Err(dropped_before);
            }
            return Ok(());
        }
        if over_bytes {
            return Err(dropped_before);
        }
        self.shared.queued_bytes.fetch_add(len, Ordering::Relaxed);
        self.queued();
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.tx.try_send(msg(dropped_before)) {
            self.unqueue(len);
            return Err(dropped_before);
        }
        Ok(())
    }

    /// Counts a message into the queue and wakes the writer if it is behind: a polling writer left asleep while
    /// a burst piles up would let frames wait in memory much longer than the flush interval on a busy machine.
    fn queued(&self) {
        if self.shared.queued_frames.fetch_add(1, Ordering::Relaxed) + 1 >= WAKE_FRAMES {
            self.wake_writer();
        }
    }

    /// Takes back what [`Tap::queued`] and the byte count added for a message that did not go in.
    fn unqueue(&self, len: usize) {
        self.shared.queued_frames.fetch_sub(1, Ordering::Relaxed);
        self.shared.queued_bytes.fetch_sub(len, Ordering::Relaxed);
    }

    fn wake_writer(&self) {
        if let Some(t) = self.shared.writer.get() {
            t.unpark();
        }
    }

    /// Counts `n` dropped frames and puts back the `earlier` drops a failed send would have reported.
    fn count_drop(&self, earlier: u64, n: u64) {
        self.shared.dropped.fetch_add(earlier + n, Ordering::Relaxed);
        self.shared.dropped_total.fetch_add(n, Ordering::Relaxed);
        self.shared.metrics.dropped(n);
    }

    /// Decides once, when a session begins, whether it is recorded (`--sample`), and counts it as open. `key` is
    /// what taps agree on (see [`crate::sample`]). Pair with [`Tap::end_session`].
    pub fn begin_session(&self, key: &[u8]) -> bool {
        let keep = self.shared.sample.keeps(key);
        if !keep {
            self.shared.sampled_out.fetch_add(1, Ordering::Relaxed);
        }
        self.shared.metrics.session_opened(keep);
        keep
    }

    /// The tap's counters.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.shared.metrics
    }

    /// Frames dropped so far.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped_total.load(Ordering::Relaxed)
    }

    /// Tells the writer a session ended (frees its correlation state).
    pub fn end_session(&self, session: Arc<str>) {
        self.shared.metrics.session_closed();
        let _ = self.tx.try_send(Msg::EndSession(session));
    }

    /// Asks the writer to close the current segment and start a new one.
    pub fn rotate(&self) {
        let _ = self.tx.try_send(Msg::Rotate);
    }

    /// Ends the capture: the writer records what is queued, then finishes its segments; frames observed after
    /// this are dropped. (Adapters may still hold clones, e.g. a thread blocked reading a client that never closes.)
    pub fn shutdown(&self) {
        self.shared.closed.store(true, Ordering::Relaxed);
        let _ = self.tx.send(Msg::Close);
        self.wake_writer();
    }
}

/// Ticks without a frame after which the writer stops polling and blocks until the next frame.
const POLL_TICKS: u32 = 20;

/// Queued frames from which every new frame wakes the writer (as a blocking receive did for every frame): a
/// writer that only polls falls behind a burst on a busy machine, and frames would wait in memory for longer than
/// the flush interval. Below it frames wait at most one tick, and a request's two frames cost the proxy no wake-up.
const WAKE_FRAMES: usize = 128;

struct Worker {
    rx: Receiver<Msg>,
    writer: Option<CaptureWriter>,
    annotator: Annotator,
    streams: Streams,
    rules: RedactionRules,
    seqs: HashMap<Arc<str>, u64>,
    shared: Arc<Shared>,
    flush_interval: Duration,
    idle_flush: Duration,
    poll: bool,
    log: Log,
    summary: TapSummary,
    rotation: Rotation,
    next_rotation: Option<Instant>,
    sink: Option<SinkHandle>,
    metrics: Arc<Metrics>,
    last_segment: Option<PathBuf>,
}

impl Worker {
    fn run(mut self) -> TapSummary {
        let mut pending = false;
        // With `poll_writer`, while frames keep coming the writer drains its queue and sleeps a tick instead of
        // blocking in `recv`, where every `observe` would wake it (a futex call and a context switch on the
        // forwarding thread).
        let tick = self.idle_flush.max(Duration::from_millis(1));
        let mut last_frame: Option<Instant> = None;
        loop {
            let now = Instant::now();
            if let Some(last) = last_frame.filter(|t| self.poll && now.duration_since(*t) < tick * POLL_TICKS) {
                match self.rx.try_recv() {
                    Ok(msg) => {
                        if matches!(msg, Msg::Frame { .. } | Msg::Chunk { .. }) {
                            last_frame = Some(now);
                        }
                        if !self.handle(msg, &mut pending) {
                            break;
                        }
                    }
                    Err(TryRecvError::Disconnected) => break,
                    Err(TryRecvError::Empty) => {
                        if self.next_rotation.is_some_and(|r| now >= r) {
                            self.rotate();
                            self.next_rotation = self.rotation.next_due(std::time::SystemTime::now(), now);
                            pending = false;
                        } else if pending && now.duration_since(last) >= self.idle_flush {
                            self.flush();
                            pending = false;
                        }
                        std::thread::park_timeout(tick);
                    }
                }
                continue;
            }
            let idle_at = pending.then(|| now + self.idle_flush);
            let wake = match (idle_at, self.next_rotation) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let msg = match wake {
                Some(at) => match self.rx.recv_timeout(at.saturating_duration_since(now)) {
                    Ok(m) => m,
                    Err(RecvTimeoutError::Timeout) => {
                        if self.next_rotation.is_some_and(|r| Instant::now() >= r) {
                            self.rotate();
                            self.next_rotation = self.rotation.next_due(std::time::SystemTime::now(), Instant::now());
                        } else {
                            self.flush();
                        }
                        pending = false;
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                },
                None => match self.rx.recv() {
                    Ok(m) => m,
                    Err(_) => break,
                },
            };
            if matches!(msg, Msg::Frame { .. } | Msg::Chunk { .. }) {
                last_frame = Some(Instant::now());
            }
            if !self.handle(msg, &mut pending) {
                break;
            }
        }
        let mut streams = std::mem::take(&mut self.streams);
        streams.finish_all(None, &mut |o| self.frame(o));
        // Drops after the last frame still count.
        let tail = self.shared.dropped.swap(0, Ordering::Relaxed);
        self.count_dropped(tail);
        self.take_sampled_out();
        if let Some(mut w) = self.writer.take() {
            // Frames lost to write errors are the writer's count (its segments' metadata carries them too).
            if let Err(e) = w.flush() {
                self.note_error(e.to_string());
            }
            self.summary.dropped += w.lost();
            match w.finish() {
                Ok(segments) => {
                    // Only the last one is new: earlier ones were announced at their rotation.
                    if let Some(s) = segments.last() {
                        if !self.summary.segments.contains(s) && self.last_segment.as_ref() != Some(s) {
                            self.segment_done(s);
                        }
                    }
                }
                // Frames still in the last journal stay there for `dataset recover`: not counted as dropped.
                Err(e) => self.note_error(e.to_string()),
            }
        }
        self.metrics.set_pending_since(0);
        self.summary
    }

    /// Handles one message off the queue; false when the writer must stop.
    fn handle(&mut self, msg: Msg, pending: &mut bool) -> bool {
        match msg {
            Msg::Frame { obs, dropped_before } => {
                self.received(obs.payload.len(), obs.ts_ns);
                if dropped_before > 0 {
                    self.gap(&obs, dropped_before);
                }
                self.frame(*obs);
                *pending = self.after_frames();
            }
            Msg::Chunk { chunk, dropped_before } => {
                self.received(chunk.obs.payload.len(), chunk.obs.ts_ns);
                if dropped_before > 0 {
                    self.gap(&chunk.obs, dropped_before);
                }
                let mut streams = std::mem::take(&mut self.streams);
                // A chunk may hold many messages: rotation by size is checked after each.
                streams.push(*chunk, &mut |o| {
                    self.frame(o);
                    if self.journal_full() {
                        self.rotate();
                    }
                });
                self.streams = streams;
                *pending = self.after_frames();
            }
            Msg::EndSession(s) => {
                let mut streams = std::mem::take(&mut self.streams);
                streams.finish_all(Some(&s), &mut |o| self.frame(o));
                self.streams = streams;
                self.annotator.end_session(&s);
                self.seqs.remove(&s);
            }
            Msg::Close => return false,
            Msg::Rotate => {
                self.rotate();
                *pending = false;
            }
        }
        true
    }

    /// Bookkeeping for a message taken off the queue.
    fn received(&mut self, len: usize, ts_ns: i64) {
        self.shared.queued_bytes.fetch_sub(len, Ordering::Relaxed);
        self.shared.queued_frames.fetch_sub(1, Ordering::Relaxed);
        if self.metrics.nothing_pending() {
            self.metrics.set_pending_since(ts_ns.max(1));
        }
    }

    /// Flushes and rotates when due after frames were appended; returns whether frames wait for a flush.
    fn after_frames(&mut self) -> bool {
        if self.writer.as_ref().is_some_and(|w| w.flush_due(self.flush_interval)) {
            self.flush();
        }
        let by_size = self.journal_full();
        // Under steady traffic the receive never times out: check the clock here too.
        let by_time = self.next_rotation.is_some_and(|r| Instant::now() >= r);
        if by_size || by_time {
            self.rotate();
            if by_time {
                self.next_rotation = self.rotation.next_due(std::time::SystemTime::now(), Instant::now());
            }
            return false;
        }
        true
    }

    /// The open journal reached the rotation size.
    fn journal_full(&self) -> bool {
        let size = self.rotation.size;
        size.is_some_and(|max| self.writer.as_ref().is_some_and(|w| w.journal_bytes() >= max))
    }

    fn count_dropped(&mut self, n: u64) {
        if n == 0 {
            return;
        }
        self.summary.dropped += n;
        if let Some(w) = &mut self.writer {
            w.add_dropped(n);
        }
    }

    fn take_sampled_out(&mut self) {
        let n = self.shared.sampled_out.swap(0, Ordering::Relaxed);
        if let Some(w) = &mut self.writer {
            w.add_sampled_out(n);
        }
    }

    /// Closes the open segment (if any) and applies retention.
    fn rotate(&mut self) {
        self.take_sampled_out();
        let Some(w) = &mut self.writer else { return };
        match w.rotate() {
            Ok(Some(p)) => self.segment_done(&p),
            Ok(None) => {}
            Err(e) => self.write_failed(e),
        }
        self.metrics.set_pending_since(0);
        self.retain();
    }

    /// A segment is finished: count it and hand it to the sink.
    fn segment_done(&mut self, path: &std::path::Path) {
        self.metrics.segment_written();
        self.summary.segment_count += 1;
        if self.rotation.enabled() {
            self.last_segment = Some(path.to_path_buf());
        } else {
            self.summary.segments.push(path.to_path_buf());
        }
        if let Some(sink) = &self.sink {
            let key = mcptape_datasets::layout::key(self.dir(), path);
            sink.0.on_segment_finished(path, &key);
        }
    }

    fn dir(&self) -> &std::path::Path {
        &self.summary.dir
    }

    fn retain(&mut self) {
        if self.rotation.retention.keeps_everything() {
            return;
        }
        let sink = self.sink.clone();
        let may_delete = |p: &std::path::Path| sink.as_ref().is_none_or(|s| s.0.may_delete(p));
        match mcptape_datasets::layout::enforce(
            self.dir(),
            &self.rotation.retention,
            &may_delete,
            std::time::SystemTime::now(),
        ) {
            Ok(swept) => {
                self.metrics.retention_deleted(swept.deleted.len() as u64);
                self.summary.segments.retain(|s| !swept.deleted.contains(s));
            }
            Err(e) => self.log.line(&format!("retention: {e}")),
        }
    }

    fn next_seq(&mut self, session: &Arc<str>) -> u64 {
        let seq = self.seqs.entry(session.clone()).or_insert(0);
        let s = *seq;
        *seq += 1;
        s
    }

    fn gap(&mut self, next: &Observed, dropped: u64) {
        self.count_dropped(dropped);
        let gap = Observed {
            lifecycle: Some(lifecycle::GAP),
            payload: Bytes::from(format!("{{\"dropped\":{dropped}}}")),
            http: None,
            mcp_session: None,
            protocol_version: None,
            ..next.clone()
        };
        self.frame(gap);
    }

    fn frame(&mut self, obs: Observed) {
        let seq = self.next_seq(&obs.session);
        let kind = if obs.lifecycle.is_some() {
            Kind::Lifecycle
        } else {
            Kind::Invalid
        };
        let mut f = Frame::new(
            obs.session.to_string(),
            seq,
            obs.direction,
            obs.transport,
            kind,
            obs.payload,
        );
        f.stream_id = obs.stream_id;
        f.ts_ns = obs.ts_ns;
        f.t_ns = obs.t_ns;
        f.http = obs.http;
        f.protocol_version = obs.protocol_version;
        f.mcp_session = obs
            .mcp_session
            .map(|s| self.rules.header_value("mcp-session-id", &s).into_owned());
        // One scan of the payload classifies and redacts it.
        self.annotator.annotate_and_redact(&mut f, &self.rules);
        if let Some(m) = obs.lifecycle {
            f.method = Some(m.to_string());
        }
        if let Some(h) = &mut f.http {
            for (name, value) in &mut h.headers {
                // A redacted value comes back borrowed (`[REDACTED]` is static), a hashed one owned: compare.
                let stored = self.rules.header_value(name, value);
                if stored != value.as_str() {
                    *value = stored.into_owned();
                }
            }
        }
        let Some(w) = &mut self.writer else {
            self.count_dropped(1);
            self.metrics.dropped(1);
            return;
        };
        let (dir, len, latency) = (f.direction, f.payload.len(), f.latency_ns);
        let method = f.method.clone();
        match w.append(f) {
            Ok(()) => {
                self.summary.frames += 1;
                self.metrics.frame(dir, method.as_deref(), len, latency);
            }
            Err(e) => self.write_failed(e),
        }
    }

    fn flush(&mut self) {
        if let Some(w) = &mut self.writer {
            if let Err(e) = w.flush() {
                self.write_failed(e);
            }
        }
        self.metrics.set_pending_since(0);
    }

    fn write_failed(&mut self, e: mcptape_datasets::Error) {
        // Traffic keeps flowing; the writer counts what it could not write (added to the summary at the end).
        self.note_error(e.to_string());
    }

    fn note_error(&mut self, e: String) {
        self.metrics.write_failed(&e);
        if self.summary.write_error.is_none() {
            self.log.line(&format!(
                "capture write failed, frames are being dropped (traffic is not affected; retrying every {} s): {e}",
                mcptape_datasets::writer::RETRY_AFTER_ERROR.as_secs()
            ));
            self.summary.write_error = Some(e);
        }
    }
}

//! The one `Tap` core every transport adapter feeds.
//!
//! Adapters forward bytes themselves and only hand copies here: HTTP adapters one message at a time, byte-stream
//! adapters (stdio, unix sockets) each read as it came, for the writer to split ([`streams`]). Everything else
//! (framing streams, classification, correlation, redaction, Arrow building, disk) happens on one writer thread
//! (`tap/worker.rs`) behind a bounded queue, so forwarding never waits for the recorder: when the queue is full the
//! entry is dropped and its messages counted, and the writer records a `gap` lifecycle frame with the count before
//! the next frame it gets. With `lossless` the adapter blocks instead (backpressure on the traffic).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use bytes::Bytes;
use mcptape_datasets::redact::RedactionRules;
use mcptape_datasets::{CaptureWriter, Direction, HttpMeta, Transport, WriterOptions};

use crate::log::Log;
use crate::metrics::Metrics;
use crate::rotation::Rotation;
use crate::sample::Sampler;
use crate::sink::SinkHandle;
use redacted::Redacted;

mod read_buffers;
mod redacted;
mod seqs;
mod session_tap;
pub mod streams;
mod worker;
pub use read_buffers::READ_BUFFER;
use read_buffers::ReadBuffers;
pub use session_tap::SessionTap;
use streams::Chunk;
use worker::Worker;

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
    pub http: Option<HttpObserved>,
    /// Raw Mcp-Session-Id (hashed by the writer unless the rules say otherwise).
    pub mcp_session: Option<String>,
    /// Protocol version the transport declared (an HTTP header).
    pub protocol_version: Option<String>,
}

/// What an HTTP adapter knows of a request: shared by the frames of its exchange, turned into their `http` column
/// by the writer (headers copied to text and redacted there, not on the proxy's path).
#[derive(Debug, Clone, Default)]
pub struct HttpRequestMeta {
    /// `GET`, `POST`, ...
    pub method: String,
    /// Path and query, secret-looking query values already redacted.
    pub path: String,
    /// `Content-Type`.
    pub content_type: Option<String>,
    /// The end-to-end headers, as received.
    pub headers: http::HeaderMap,
    /// `Mcp-Session-Id`.
    pub mcp_session: Option<String>,
    /// `MCP-Protocol-Version`.
    pub protocol_version: Option<String>,
}

/// What an HTTP adapter knows of a response.
#[derive(Debug, Clone, Default)]
pub struct HttpResponseMeta {
    /// The status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: Option<String>,
    /// The end-to-end headers, as received.
    pub headers: http::HeaderMap,
}

/// The HTTP facts of one frame: a client frame carries its request's, a server frame its response's.
#[derive(Debug, Clone)]
pub struct HttpObserved {
    /// The exchange's request.
    pub request: Arc<HttpRequestMeta>,
    /// The exchange's response, once known.
    pub response: Option<Arc<HttpResponseMeta>>,
    /// The SSE event's id.
    pub sse_event_id: Option<String>,
}

impl HttpObserved {
    /// The frame's `http` column for a frame that travelled `direction`, header values redacted under `rules`.
    pub(crate) fn meta(self, direction: Direction, rules: &RedactionRules, redacted: &mut Redacted) -> HttpMeta {
        let HttpObserved {
            request,
            response,
            sse_event_id,
        } = self;
        let mut recorded = |headers: &http::HeaderMap| {
            headers
                .iter()
                .map(|(n, v)| {
                    let value = match v.to_str() {
                        Ok(text) => redacted.header(rules, n, text),
                        Err(_) => redacted.header(rules, n, &String::from_utf8_lossy(v.as_bytes())),
                    };
                    (n.as_str().to_string(), value)
                })
                .collect()
        };
        let (status, content_type, headers) = match direction {
            Direction::C2s => (None, request.content_type.clone(), recorded(&request.headers)),
            Direction::S2c => match response {
                Some(r) => {
                    let headers = recorded(&r.headers);
                    let status = r.status;
                    let content_type = match Arc::try_unwrap(r) {
                        Ok(r) => r.content_type,
                        Err(r) => r.content_type.clone(),
                    };
                    (Some(status), content_type, headers)
                }
                None => (None, None, Vec::new()),
            },
        };
        // An exchange's last frame owns what its frames shared: its strings are moved, not copied.
        let (method, path) = match Arc::try_unwrap(request) {
            Ok(r) => (r.method, r.path),
            Err(r) => (r.method.clone(), r.path.clone()),
        };
        HttpMeta {
            method: Some(method),
            path: Some(path),
            status,
            content_type,
            sse_event_id,
            headers,
        }
    }
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
    /// Prepared by the writer for the byte-stream relays.
    read_buffers: ReadBuffers,
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
            read_buffers: ReadBuffers::default(),
        });
        let dir = config.writer.dir.clone();
        let poll = config.poll_writer;
        let mut worker = Worker::new(rx, writer, config, shared.clone(), log);
        for seg in &leftovers {
            worker.segment_done(seg);
        }
        let thread = std::thread::Builder::new()
            .name("mcptape-writer".into())
            .spawn(move || worker.run())
            .map_err(|e| mcptape_datasets::Error::io(&dir, e))?;
        if poll {
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

    /// A buffer of [`READ_BUFFER`] bytes for a byte-stream relay to read into, prepared by the writer when it can
    /// be (see `tap/read_buffers.rs`). A relay hands a large read to [`SessionTap::observe_chunk`] whole and takes
    /// another.
    pub fn read_buffer(&self) -> Vec<u8> {
        self.shared.read_buffers.take()
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

/// Queued frames from which every new frame wakes the writer (as a blocking receive did for every frame): a
/// writer that only polls falls behind a burst on a busy machine, and frames would wait in memory for longer than
/// the flush interval. Below it frames wait at most one tick, and a request's two frames cost the proxy no wake-up.
const WAKE_FRAMES: usize = 128;

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> http::HeaderMap {
        pairs
            .iter()
            .map(|(n, v)| (http::HeaderName::from_static(n), http::HeaderValue::from_static(v)))
            .collect()
    }

    #[test]
    fn an_exchanges_frames_record_the_same_http_facts_whether_they_share_them_or_own_them() {
        let rules = RedactionRules::default();
        let mut redacted = Redacted::new();
        let request = Arc::new(HttpRequestMeta {
            method: "POST".into(),
            path: "/mcp".into(),
            content_type: Some("application/json".into()),
            headers: headers(&[("content-type", "application/json"), ("authorization", "Bearer abc")]),
            ..HttpRequestMeta::default()
        });
        let response = Arc::new(HttpResponseMeta {
            status: 200,
            content_type: Some("text/event-stream".into()),
            headers: headers(&[("content-type", "text/event-stream")]),
        });
        let observed = || HttpObserved {
            request: request.clone(),
            response: Some(response.clone()),
            sse_event_id: Some("7".into()),
        };
        // While the exchange's other frames hold its facts, they are copied; the last frame takes them.
        let (c2s_shared, s2c_shared) = (observed(), observed());
        let c2s = c2s_shared.meta(Direction::C2s, &rules, &mut redacted);
        let s2c = s2c_shared.meta(Direction::S2c, &rules, &mut redacted);
        let last = observed();
        drop((request, response));
        let s2c_owned = last.meta(Direction::S2c, &rules, &mut redacted);
        assert_eq!(s2c_owned, s2c);
        assert_eq!(c2s.method.as_deref(), Some("POST"));
        assert_eq!(c2s.path.as_deref(), Some("/mcp"));
        assert_eq!(
            (c2s.status, c2s.content_type.as_deref()),
            (None, Some("application/json"))
        );
        assert_eq!(
            c2s.headers[1],
            (
                "authorization".to_string(),
                rules.header_value("authorization", "Bearer abc").into_owned()
            )
        );
        assert_ne!(c2s.headers[1].1, "Bearer abc");
        assert_eq!(
            (s2c.status, s2c.content_type.as_deref()),
            (Some(200), Some("text/event-stream"))
        );
        assert_eq!(
            (s2c.method.as_deref(), s2c.sse_event_id.as_deref()),
            (Some("POST"), Some("7"))
        );
        assert_eq!(
            s2c.headers,
            vec![("content-type".to_string(), "text/event-stream".to_string())]
        );
    }
}

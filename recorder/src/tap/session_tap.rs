//! [`SessionTap`]: the handle of adapters that carry one session per child process or connection (stdio, unix
//! sockets), with the session's clock and its sampling decision.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use mcptape_datasets::{Direction, Transport};

use super::streams::{Chunk, ChunkLoss};
use super::{Observed, Tap};

/// A tap and a shared session clock, for adapters that have one session (stdio).
#[derive(Debug, Clone)]
pub struct SessionTap {
    /// The tap.
    pub tap: Tap,
    /// The session id.
    pub session: Arc<str>,
    /// The transport.
    pub transport: Transport,
    start: Instant,
    lock: Arc<Mutex<()>>,
    keep: bool,
}

impl SessionTap {
    /// A session on `tap`, clocked from now. Sampling (`--sample`) decides here, by the session id (a stdio
    /// child's life or a socket connection has no id another tap could see, so the tap's own id is the key).
    /// Call [`SessionTap::end`] when the session is over.
    pub fn new(tap: Tap, session: impl Into<Arc<str>>, transport: Transport) -> Self {
        let session = session.into();
        let keep = tap.begin_session(session.as_bytes());
        SessionTap {
            tap,
            session,
            transport,
            start: Instant::now(),
            lock: Arc::default(),
            keep,
        }
    }

    /// Is this session recorded?
    pub fn kept(&self) -> bool {
        self.keep
    }

    /// The session is over: frees its state in the writer.
    pub fn end(&self) {
        self.tap.end_session(self.session.clone());
    }

    /// Observes a message or lifecycle event of this session, stamped now (nothing when sampled out).
    pub fn observe(&self, direction: Direction, lifecycle: Option<&'static str>, payload: Bytes) {
        if !self.keep {
            return;
        }
        // The lock makes stamping and queueing one step, so seq order matches t_ns order across pump threads.
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.tap.observe(self.stamp(direction, lifecycle, payload));
    }

    /// Observes a chunk of this session's NDJSON stream in `direction`, as read; the writer frames it. `loss` is
    /// the stream's record of dropped chunks (one per direction, kept by the relay thread).
    pub fn observe_chunk(&self, direction: Direction, chunk_bytes: Bytes, max_frame: usize, loss: &mut ChunkLoss) {
        if !self.keep {
            return;
        }
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let chunk = Chunk {
            obs: self.stamp(direction, None, chunk_bytes.clone()),
            max_frame,
            resync: loss.resync(),
            end: false,
        };
        if self.tap.observe_chunk(chunk) {
            loss.queued(&chunk_bytes);
        } else {
            self.tap.count_lost(loss.dropped(&chunk_bytes));
        }
    }

    /// The NDJSON stream in `direction` ended: its unterminated last line, if any, is recorded.
    pub fn end_stream(&self, direction: Direction, max_frame: usize, loss: &ChunkLoss) {
        if !self.keep {
            return;
        }
        let _g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.tap.observe_stream_end(Chunk {
            obs: self.stamp(direction, None, Bytes::new()),
            max_frame,
            resync: loss.resync(),
            end: true,
        });
    }

    fn stamp(&self, direction: Direction, lifecycle: Option<&'static str>, payload: Bytes) -> Observed {
        let t_ns = u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX);
        Observed {
            session: self.session.clone(),
            stream_id: 0,
            direction,
            transport: self.transport,
            lifecycle,
            payload,
            ts_ns: mcptape_datasets::human::now_ns(),
            t_ns,
            http: None,
            mcp_session: None,
            protocol_version: None,
        }
    }
}

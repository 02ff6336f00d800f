//! The writer thread behind the tap's queue: frames NDJSON streams, classifies, correlates and redacts each
//! message, appends it to the capture, flushes the journal on time, rotates segments and applies retention.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use mcptape_datasets::annotate::Annotator;
use mcptape_datasets::redact::RedactionRules;
use mcptape_datasets::{CaptureWriter, Frame, Kind};

use super::redacted::Redacted;
use super::seqs::Seqs;
use super::streams::Streams;
use super::{Msg, Observed, Shared, TapConfig, TapSummary, lifecycle};
use crate::http::headers::MCP_SESSION_ID;
use crate::log::Log;
use crate::metrics::Metrics;
use crate::rotation::Rotation;
use crate::sink::SinkHandle;

/// Ticks without a frame after which the writer stops polling and blocks until the next frame.
const POLL_TICKS: u32 = 20;

/// Queue entries the writer handles between two yields of its CPU. A running thread is not preempted by one that
/// wakes on its CPU until its time slice ends (milliseconds), so a backlog handled in one go kept a proxy thread
/// woken there waiting. A small HTTP frame takes the writer about 12,000 instructions (callgrind), so 2 of them
/// about 15 microseconds; a `sched_yield` costs well under one.
const YIELD_EVERY: u32 = 2;

/// Counts one more entry handled, yielding the CPU every [`YIELD_EVERY`] (a `sched_yield`: returns at once when
/// nothing else waits for this CPU).
fn pause_now_and_then(handled: u32) -> u32 {
    if handled + 1 >= YIELD_EVERY {
        std::thread::yield_now();
        0
    } else {
        handled + 1
    }
}

pub(super) struct Worker {
    rx: Receiver<Msg>,
    writer: Option<CaptureWriter>,
    annotator: Annotator,
    streams: Streams,
    rules: RedactionRules,
    /// Header rules and hashes already worked out.
    redacted: Redacted,
    seqs: Seqs,
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
    /// A writer for `config` reading `rx`; nothing runs until [`Worker::run`].
    pub(super) fn new(
        rx: Receiver<Msg>,
        writer: CaptureWriter,
        config: TapConfig,
        shared: Arc<Shared>,
        log: Log,
    ) -> Worker {
        let summary = TapSummary {
            dir: config.writer.dir.clone(),
            rotating: config.rotation.enabled(),
            ..TapSummary::default()
        };
        Worker {
            rx,
            writer: Some(writer),
            annotator: Annotator::new(),
            streams: Streams::default(),
            rules: config.rules,
            redacted: Redacted::new(),
            seqs: Seqs::default(),
            shared,
            flush_interval: config.flush_interval,
            idle_flush: config.idle_flush,
            poll: config.poll_writer,
            log,
            summary,
            next_rotation: config.rotation.next_due(std::time::SystemTime::now(), Instant::now()),
            rotation: config.rotation,
            sink: config.sink,
            metrics: config.metrics,
            last_segment: None,
        }
    }

    pub(super) fn run(mut self) -> TapSummary {
        let mut pending = false;
        // With `poll_writer`, while frames keep coming the writer drains its queue and sleeps a tick instead of
        // blocking in `recv`, where every `observe` would wake it (a futex call and a context switch on the
        // forwarding thread).
        let tick = self.idle_flush.max(Duration::from_millis(1));
        let mut last_frame: Option<Instant> = None;
        let mut handled = 0u32;
        loop {
            let now = Instant::now();
            if let Some(last) = last_frame.filter(|t| self.poll && now.duration_since(*t) < tick * POLL_TICKS) {
                match self.rx.try_recv() {
                    Ok(msg) => {
                        if matches!(msg, Msg::Frame { .. } | Msg::Chunk { .. }) {
                            last_frame = Some(now);
                            handled = pause_now_and_then(handled);
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
                            self.paused();
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
                            self.paused();
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
                handled = pause_now_and_then(handled);
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
                    // Between messages, so a relay in a burst finds buffers ready.
                    self.shared.read_buffers.refill();
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
                self.seqs.end(&s);
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
    pub(super) fn segment_done(&mut self, path: &std::path::Path) {
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
        self.seqs.next(session)
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
            String::from(&*obs.session),
            seq,
            obs.direction,
            obs.transport,
            kind,
            obs.payload,
        );
        f.stream_id = obs.stream_id;
        f.ts_ns = obs.ts_ns;
        f.t_ns = obs.t_ns;
        f.http = obs.http.map(|h| h.meta(obs.direction, &self.rules, &mut self.redacted));
        f.protocol_version = obs.protocol_version;
        f.mcp_session = obs
            .mcp_session
            .map(|s| self.redacted.header(&self.rules, &MCP_SESSION_ID, &s));
        // One scan of the payload classifies and redacts it.
        self.annotator.annotate_and_redact(&mut f, &self.rules);
        if let Some(m) = obs.lifecycle {
            f.method = Some(m.to_string());
        }
        let Some(w) = &mut self.writer else {
            self.count_dropped(1);
            self.metrics.dropped(1);
            return;
        };
        // Counted as handed to the writer (a batch that later fails to write is counted as lost by the writer).
        self.metrics
            .frame(f.direction, f.method.as_deref(), f.payload.len(), f.latency_ns);
        match w.append(f) {
            Ok(()) => self.summary.frames += 1,
            Err(e) => self.write_failed(e),
        }
    }

    /// Traffic paused: flush, and free the relays' spare buffers.
    fn paused(&mut self) {
        self.flush();
        self.shared.read_buffers.trim();
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

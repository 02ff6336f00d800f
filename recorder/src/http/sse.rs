//! Server-sent event streams: every chunk is passed on as it arrives, and a copy is decoded (datasets'
//! incremental [`SseDecoder`]) into one frame per event. Nothing waits for an event to be complete, except the
//! first event of a possible legacy HTTP+SSE stream, whose `endpoint` may need rewriting ([`super::legacy`]).

use bytes::{Bytes, BytesMut};
use mcptape_datasets::Transport;
use mcptape_datasets::wire::sse::{SseDecoder, SseEvent};

use super::exchange::Exchange;
use super::legacy::{self, HOLD_MAX};
use super::lifecycle;
use super::upstream::Upstream;

/// Why a stream ended, for its `mcptape/eof` frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// The upstream finished the body.
    Done,
    /// The upstream connection failed mid-stream.
    Error,
    /// The client went away (the response was dropped unfinished).
    Cancel,
}

impl End {
    pub fn as_str(self) -> &'static str {
        match self {
            End::Done => "end",
            End::Error => "error",
            End::Cancel => "cancel",
        }
    }
}

/// Watching for the `endpoint` event that opens a legacy stream.
#[derive(Debug)]
struct Legacy {
    held: BytesMut,
    requested: String,
}

/// The tap side of one event stream.
#[derive(Debug)]
pub(crate) struct SseTap {
    decoder: SseDecoder,
    events: u64,
    max_event: usize,
    legacy: Option<Legacy>,
    /// The answer to a POST: its events say all; the end is recorded only when it is not a normal one.
    answer: bool,
}

impl SseTap {
    /// `legacy`: the upstream path-and-query requested, when this may be a legacy HTTP+SSE stream. `answer`: the
    /// stream answers a POST (rather than being a GET stream).
    pub fn new(max_event: usize, legacy: Option<String>, answer: bool) -> SseTap {
        SseTap {
            decoder: SseDecoder::new(max_event),
            events: 0,
            max_event,
            answer,
            legacy: legacy.map(|requested| Legacy {
                held: BytesMut::new(),
                requested,
            }),
        }
    }

    /// Whether bytes may still be rewritten (the response must then not claim a Content-Length).
    pub fn may_rewrite(&self) -> bool {
        self.legacy.is_some()
    }

    /// Decodes a chunk and records its events; returns what to forward now (`None`: held for the moment).
    pub fn push(&mut self, chunk: Bytes, ex: &Exchange, upstream: &Upstream) -> Option<Bytes> {
        let mut events = Vec::new();
        self.decoder.push(&chunk, |e| events.push(e));
        let Some(lg) = &mut self.legacy else {
            self.record(events, ex);
            return Some(chunk);
        };
        lg.held.extend_from_slice(&chunk);
        let out = if let Some(first) = events.first() {
            let mut out = lg.held.split().freeze();
            if first.event.as_deref() == Some("endpoint") {
                if let Some(path) = legacy::endpoint_path(upstream, &lg.requested, &first.data) {
                    if path != first.data {
                        if let Some(b) = legacy::replace_data(&out, &first.data, &path) {
                            out = b;
                        }
                    }
                    ex.sessions.register_endpoint(&path, ex.session());
                }
            }
            self.legacy = None;
            Some(out)
        } else if lg.held.len() >= HOLD_MAX {
            let out = lg.held.split().freeze();
            self.legacy = None;
            Some(out)
        } else {
            // Complete blocks (comments, keep-alives) go on now; the unfinished event waits.
            legacy::last_boundary(&lg.held).map(|b| lg.held.split_to(b).freeze())
        };
        self.record(events, ex);
        out
    }

    /// Ends the stream: returns bytes still held, and records the stream's end.
    pub fn finish(&mut self, end: End, ex: &Exchange) -> Option<Bytes> {
        self.decoder.finish(|_| {});
        let held = self.legacy.take().map(|l| l.held.freeze()).filter(|b| !b.is_empty());
        if self.answer && end == End::Done && self.events > 0 {
            return held;
        }
        let note = serde_json::json!({
            "events": self.events,
            "end": end.as_str(),
            "discarded_bytes": self.decoder.discarded_tail(),
        });
        ex.s2c(
            Transport::Sse,
            Some(crate::tap::lifecycle::EOF),
            Bytes::from(note.to_string()),
            None,
        );
        held
    }

    fn record(&mut self, events: Vec<SseEvent>, ex: &Exchange) {
        for e in events {
            self.events += 1;
            if e.event.as_deref() == Some("endpoint") {
                ex.s2c(Transport::Sse, Some(lifecycle::ENDPOINT), Bytes::from(e.data), e.id);
                continue;
            }
            if e.data.is_empty() {
                // A priming event (an id for Last-Event-ID, no message) or an empty one: kept for its id.
                let note = serde_json::json!({ "event": e.event.as_deref().unwrap_or("message") });
                ex.s2c(
                    Transport::Sse,
                    Some(lifecycle::SSE_EMPTY),
                    Bytes::from(note.to_string()),
                    e.id,
                );
                continue;
            }
            let truncated = e.truncated;
            ex.s2c(Transport::Sse, None, Bytes::from(e.data), e.id);
            if truncated {
                let note = format!("{{\"sse_event_cut_at\":{}}}", self.max_event);
                ex.s2c(
                    Transport::Sse,
                    Some(crate::tap::lifecycle::OVERSIZE),
                    Bytes::from(note),
                    None,
                );
            }
        }
    }
}

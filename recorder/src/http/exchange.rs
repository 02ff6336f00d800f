//! One exchange (a POST, GET or DELETE and its answer, or one WebSocket connection) as the tap sees it: what is
//! known of its request and response, and the calls that turn its messages into frames of its session's stream.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use mcptape_datasets::{Direction, Transport};

use super::session::{Open, Session, Sessions};
use crate::tap::{HttpObserved, HttpRequestMeta, HttpResponseMeta, Observed};

/// Payloads up to this size are copied when handed to the tap (see `Exchange::observed`).
const COPY_UP_TO: usize = 4096;

/// One POST/GET/DELETE exchange (or one WebSocket connection): a stream of a session.
#[derive(Debug)]
pub(crate) struct Exchange {
    pub sessions: Arc<Sessions>,
    pub open: Open,
    pub stream_id: u32,
    pub request: Arc<HttpRequestMeta>,
    pub response: std::sync::OnceLock<Arc<HttpResponseMeta>>,
    /// Mcp-Session-Id from the response when the request had none (an initialize answer).
    pub assigned_mcp_session: Option<String>,
}

impl Exchange {
    pub fn new(sessions: Arc<Sessions>, open: Open, request: impl Into<Arc<HttpRequestMeta>>) -> Exchange {
        let stream_id = open.session.next_stream();
        Exchange {
            sessions,
            open,
            stream_id,
            request: request.into(),
            response: std::sync::OnceLock::new(),
            assigned_mcp_session: None,
        }
    }

    pub fn session(&self) -> &Arc<Session> {
        &self.open.session
    }

    /// Records what is known of the response (the first call wins).
    pub fn set_response(&self, response: HttpResponseMeta) {
        let _ = self.response.set(Arc::new(response));
    }

    fn observed(
        &self,
        direction: Direction,
        transport: Transport,
        lifecycle: Option<&'static str>,
        payload: Bytes,
        http: Option<HttpObserved>,
    ) -> Observed {
        // A small payload is copied for the tap: it is usually a slice of a connection's read buffer, and the writer
        // keeps frames until its next flush (up to the flush interval). Holding the buffer that long made each
        // connection allocate a fresh one for every exchange, and the allocator return them to the OS in bursts.
        let payload = if payload.len() <= COPY_UP_TO {
            Bytes::copy_from_slice(&payload)
        } else {
            payload
        };
        Observed {
            session: self.open.session.id.clone(),
            stream_id: self.stream_id,
            direction,
            transport,
            lifecycle,
            payload,
            ts_ns: 0,
            t_ns: 0,
            http,
            mcp_session: self
                .request
                .mcp_session
                .clone()
                .or_else(|| self.assigned_mcp_session.clone()),
            protocol_version: self.request.protocol_version.clone(),
        }
    }

    /// A client → server frame (the request body, or a lifecycle note for a request without one).
    pub fn c2s(
        &self,
        transport: Transport,
        lifecycle: Option<&'static str>,
        payload: Bytes,
        at: Option<(Instant, i64)>,
    ) {
        let http = HttpObserved {
            request: self.request.clone(),
            response: None,
            sse_event_id: None,
        };
        let obs = self.observed(Direction::C2s, transport, lifecycle, payload, Some(http));
        self.sessions.observe(&self.open.session, obs, at);
    }

    /// A server → client frame (a JSON body, one SSE event, a lifecycle note).
    pub fn s2c(
        &self,
        transport: Transport,
        lifecycle: Option<&'static str>,
        payload: Bytes,
        sse_event_id: Option<String>,
    ) {
        let http = HttpObserved {
            request: self.request.clone(),
            response: self.response.get().cloned(),
            sse_event_id,
        };
        let obs = self.observed(Direction::S2c, transport, lifecycle, payload, Some(http));
        self.sessions.observe(&self.open.session, obs, None);
    }

    /// A frame without HTTP metadata (WebSocket messages).
    pub fn message(&self, direction: Direction, transport: Transport, lifecycle: Option<&'static str>, payload: Bytes) {
        let obs = self.observed(direction, transport, lifecycle, payload, None);
        self.sessions.observe(&self.open.session, obs, None);
    }
}

//! The one core type: a [`Frame`] is one observed message or lifecycle event.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Which way a message travelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Client to server.
    C2s,
    /// Server to client.
    S2c,
}

impl Direction {
    /// The column value (`c2s`, `s2c`).
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::C2s => "c2s",
            Direction::S2c => "s2c",
        }
    }
    /// Parses a column value.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "c2s" => Some(Direction::C2s),
            "s2c" => Some(Direction::S2c),
            _ => None,
        }
    }
    /// The other direction: responses travel opposite to their requests.
    pub fn reverse(self) -> Self {
        match self {
            Direction::C2s => Direction::S2c,
            Direction::S2c => Direction::C2s,
        }
    }
    /// The arrow used in transcripts.
    pub fn arrow(self) -> &'static str {
        match self {
            Direction::C2s => "->",
            Direction::S2c => "<-",
        }
    }
}

/// What carried a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// Newline-delimited JSON over a child's stdin/stdout.
    Stdio,
    /// A Streamable HTTP JSON body.
    Http,
    /// A server-sent event (Streamable HTTP stream or the legacy HTTP+SSE transport).
    Sse,
    /// A WebSocket text message.
    Ws,
}

impl Transport {
    /// The column value.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Stdio => "stdio",
            Transport::Http => "http",
            Transport::Sse => "sse",
            Transport::Ws => "ws",
        }
    }
    /// Parses a column value.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "stdio" => Some(Transport::Stdio),
            "http" => Some(Transport::Http),
            "sse" => Some(Transport::Sse),
            "ws" => Some(Transport::Ws),
            _ => None,
        }
    }
}

/// What a frame is, as JSON-RPC sees it (or `lifecycle` for the tap's own events).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A method call with an id.
    Request,
    /// A method call without an id.
    Notification,
    /// A result for an id.
    Response,
    /// An error for an id.
    Error,
    /// A JSON array of messages (2025-03-26 batches).
    Batch,
    /// Bytes that are not a JSON-RPC message (forwarded all the same).
    Invalid,
    /// An event of the tap itself: process start and exit, stderr lines, gaps, stream ends.
    Lifecycle,
}

impl Kind {
    /// Every kind, in column order.
    pub const ALL: [Kind; 7] = [
        Kind::Request,
        Kind::Notification,
        Kind::Response,
        Kind::Error,
        Kind::Batch,
        Kind::Invalid,
        Kind::Lifecycle,
    ];
    /// The column value.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Request => "request",
            Kind::Notification => "notification",
            Kind::Response => "response",
            Kind::Error => "error",
            Kind::Batch => "batch",
            Kind::Invalid => "invalid",
            Kind::Lifecycle => "lifecycle",
        }
    }
    /// Parses a column value.
    pub fn parse(s: &str) -> Option<Self> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }
    /// Responses and errors answer a request.
    pub fn is_answer(self) -> bool {
        matches!(self, Kind::Response | Kind::Error)
    }
}

/// HTTP facts about a frame carried over HTTP, SSE or a WebSocket upgrade.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpMeta {
    /// Request method (`POST`, `GET`, `DELETE`).
    pub method: Option<String>,
    /// Request path and query.
    pub path: Option<String>,
    /// Response status, on frames the server sent.
    pub status: Option<u16>,
    /// `Content-Type` of the body the frame came from.
    pub content_type: Option<String>,
    /// The SSE `id:` field of the event the frame came from.
    pub sse_event_id: Option<String>,
    /// Headers in wire order, names lower-cased, values redacted where a rule matched.
    pub headers: Vec<(String, String)>,
}

/// One row of a capture: one observed message or lifecycle event.
///
/// `payload` is the source of truth; every other field is an index derived from it or from the transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Tap-assigned id of one MCP session.
    pub session_id: String,
    /// stdio 0; HTTP: one per POST/GET exchange; WS: the connection.
    pub stream_id: u32,
    /// Total order in which the tap saw frames in this session.
    pub seq: u64,
    /// Wall clock at capture, ns since the Unix epoch (UTC).
    pub ts_ns: i64,
    /// Monotonic ns since session start.
    pub t_ns: u64,
    /// Which way the message travelled.
    pub direction: Direction,
    /// What carried it.
    pub transport: Transport,
    /// What it is.
    pub kind: Kind,
    /// Method; answers carry the method of the request they answer.
    pub method: Option<String>,
    /// JSON text of the id, exactly as on the wire (`7` and `"7"` differ).
    pub rpc_id: Option<String>,
    /// Answers: ns since the request they answer.
    pub latency_ns: Option<u64>,
    /// JSON-RPC error code.
    pub error_code: Option<i32>,
    /// Exact bytes as on the wire (after redaction where a rule matched).
    pub payload: Bytes,
    /// HTTP facts, for HTTP-borne frames.
    pub http: Option<HttpMeta>,
    /// Mcp-Session-Id (hashed unless asked otherwise).
    pub mcp_session: Option<String>,
    /// Negotiated protocol version, once known.
    pub protocol_version: Option<String>,
}

impl Frame {
    /// A frame with the given identity and payload and every optional column empty.
    pub fn new(
        session_id: impl Into<String>,
        seq: u64,
        direction: Direction,
        transport: Transport,
        kind: Kind,
        payload: impl Into<Bytes>,
    ) -> Self {
        Frame {
            session_id: session_id.into(),
            stream_id: 0,
            seq,
            ts_ns: 0,
            t_ns: 0,
            direction,
            transport,
            kind,
            method: None,
            rpc_id: None,
            latency_ns: None,
            error_code: None,
            payload: payload.into(),
            http: None,
            mcp_session: None,
            protocol_version: None,
        }
    }
}

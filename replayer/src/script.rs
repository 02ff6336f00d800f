//! What a recorded session asks of a replay: the client's messages in order, what each waited for, and the
//! recorded answers to compare with.
//!
//! Causality: a message the client sent after receiving an answer waits for the live counterpart of that answer.
//! Only answers to the client's own requests are waited for (server notifications vary in number and timing and
//! would make a replay hang on a server that is merely quieter); answers to the server's requests are not sent on
//! a schedule at all: they go out when the live server asks.

use std::collections::BTreeMap;

use bytes::Bytes;
use mcptape_datasets::{Direction, Frame, Kind, Transport};

/// One message the client sends.
#[derive(Debug, Clone)]
pub struct Step {
    /// Recorded bytes.
    pub payload: Bytes,
    /// Request, notification or batch.
    pub kind: Kind,
    /// Method.
    pub method: Option<String>,
    /// JSON text of the id (requests).
    pub rpc_id: Option<String>,
    /// Recorded ns since session start (pacing).
    pub t_ns: u64,
    /// Ids of the client's requests whose answers the client had received before sending this.
    pub wait_for: Vec<String>,
}

/// A recorded answer of the server to a client request.
#[derive(Debug, Clone)]
pub struct RecordedAnswer {
    /// Method of the request.
    pub method: String,
    /// The answer's bytes.
    pub payload: Bytes,
    /// Response or error.
    pub kind: Kind,
    /// Recorded latency.
    pub latency_ns: Option<u64>,
}

/// A request the server sent to the client, and the client's recorded answer.
#[derive(Debug, Clone)]
pub struct ServerRequest {
    /// Method (`sampling/createMessage`, `roots/list`, `elicitation/create`, `ping`).
    pub method: String,
    /// The server's request as recorded.
    pub request: Bytes,
    /// The client's answer as recorded (None if the client never answered).
    pub answer: Option<Bytes>,
}

/// A recorded session, ready to replay.
#[derive(Debug, Clone)]
pub struct Script {
    /// Session id in the capture.
    pub session: String,
    /// How it was carried.
    pub transport: Transport,
    /// Negotiated protocol version.
    pub protocol_version: Option<String>,
    /// The session's `Mcp-Session-Id` as the capture holds it (hashed unless recorded otherwise).
    pub mcp_session: Option<String>,
    /// The client's messages, in order.
    pub steps: Vec<Step>,
    /// Recorded answers to client requests, by id text.
    pub answers: BTreeMap<String, RecordedAnswer>,
    /// The server's requests, per method, in recorded order.
    pub server_requests: BTreeMap<String, Vec<ServerRequest>>,
    /// Server notifications, per method: how many.
    pub notifications: BTreeMap<String, u64>,
    /// Frames skipped because they are not JSON-RPC (invalid) — counted, not replayed.
    pub skipped_invalid: u64,
}

impl Script {
    /// Whether the client never had two things in flight: each message after a request waits for that request's
    /// answer, and the server made no requests of the client. Such a session can be driven one exchange at a
    /// time, in the caller's task ([`crate::link::Link::open_sequential`]).
    pub fn is_sequential(&self) -> bool {
        if !self.server_requests.is_empty() {
            return false;
        }
        let mut open: Option<&str> = None;
        for step in &self.steps {
            if let Some(id) = open {
                if !step.wait_for.iter().any(|w| w == id) {
                    return false;
                }
            }
            open = match (step.kind, &step.rpc_id) {
                (Kind::Request, Some(id)) => Some(id),
                (Kind::Notification, _) => None,
                _ => return false,
            };
        }
        true
    }
}

/// Builds one script per session, in order of first appearance. Frames may come in any order; seq orders them.
pub fn scripts(frames: Vec<Frame>) -> Vec<Script> {
    let mut order: Vec<String> = Vec::new();
    let mut by: BTreeMap<String, Vec<Frame>> = BTreeMap::new();
    for f in frames {
        if !by.contains_key(&f.session_id) {
            order.push(f.session_id.clone());
        }
        by.entry(f.session_id.clone()).or_default().push(f);
    }
    order
        .into_iter()
        .map(|sid| {
            let mut frames = by.remove(&sid).unwrap_or_default();
            frames.sort_by_key(|f| f.seq);
            build(sid, &frames)
        })
        .collect()
}

fn build(session: String, frames: &[Frame]) -> Script {
    let mut s = Script {
        session,
        transport: frames.first().map_or(Transport::Stdio, |f| f.transport),
        protocol_version: frames.iter().rev().find_map(|f| f.protocol_version.clone()),
        mcp_session: frames.iter().find_map(|f| f.mcp_session.clone()),
        steps: Vec::new(),
        answers: BTreeMap::new(),
        server_requests: BTreeMap::new(),
        notifications: BTreeMap::new(),
        skipped_invalid: 0,
    };
    // Server requests awaiting the client's answer: (id text) -> (method, index in server_requests[method]).
    let mut open_server: BTreeMap<String, (String, usize)> = BTreeMap::new();
    let mut answered_since_last: Vec<String> = Vec::new();
    let t0 = frames.iter().find(|f| f.kind != Kind::Lifecycle).map_or(0, |f| f.t_ns);
    for f in frames {
        match (f.direction, f.kind) {
            (_, Kind::Lifecycle) => {}
            (_, Kind::Invalid) => s.skipped_invalid += 1,
            (Direction::C2s, Kind::Request | Kind::Notification | Kind::Batch) => {
                s.steps.push(Step {
                    payload: f.payload.clone(),
                    kind: f.kind,
                    method: f.method.clone(),
                    rpc_id: f.rpc_id.clone(),
                    t_ns: f.t_ns.saturating_sub(t0),
                    wait_for: std::mem::take(&mut answered_since_last),
                });
            }
            (Direction::C2s, Kind::Response | Kind::Error) => {
                if let Some((method, i)) = f.rpc_id.as_ref().and_then(|id| open_server.remove(id)) {
                    if let Some(r) = s.server_requests.get_mut(&method).and_then(|v| v.get_mut(i)) {
                        r.answer = Some(f.payload.clone());
                    }
                }
            }
            (Direction::S2c, Kind::Request) => {
                let method = f.method.clone().unwrap_or_default();
                let list = s.server_requests.entry(method.clone()).or_default();
                if let Some(id) = &f.rpc_id {
                    open_server.insert(id.clone(), (method, list.len()));
                }
                list.push(ServerRequest {
                    method: f.method.clone().unwrap_or_default(),
                    request: f.payload.clone(),
                    answer: None,
                });
            }
            (Direction::S2c, Kind::Notification) => {
                *s.notifications.entry(f.method.clone().unwrap_or_default()).or_default() += 1;
            }
            (Direction::S2c, Kind::Response | Kind::Error) => {
                if let Some(id) = &f.rpc_id {
                    s.answers.insert(
                        id.clone(),
                        RecordedAnswer {
                            method: f.method.clone().unwrap_or_default(),
                            payload: f.payload.clone(),
                            kind: f.kind,
                            latency_ns: f.latency_ns,
                        },
                    );
                    answered_since_last.push(id.clone());
                }
            }
            (Direction::S2c, Kind::Batch) => {}
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(seq: u64, dir: Direction, kind: Kind, method: Option<&str>, id: Option<&str>, payload: &str) -> Frame {
        let mut fr = Frame::new("s", seq, dir, Transport::Stdio, kind, payload.to_string());
        fr.method = method.map(str::to_string);
        fr.rpc_id = id.map(str::to_string);
        fr.t_ns = seq * 1000;
        fr
    }

    #[test]
    fn steps_wait_for_the_answers_received_before_them_and_server_requests_keep_their_answers() {
        use Direction::*;
        use Kind::*;
        let frames = vec![
            f(0, C2s, Request, Some("initialize"), Some("0"), "{}"),
            f(1, S2c, Response, Some("initialize"), Some("0"), "{}"),
            f(2, C2s, Notification, Some("notifications/initialized"), None, "{}"),
            f(3, C2s, Request, Some("tools/call"), Some("1"), "{}"),
            f(4, S2c, Notification, Some("notifications/progress"), None, "{}"),
            f(5, S2c, Request, Some("sampling/createMessage"), Some("0"), "{\"s\":1}"),
            f(6, C2s, Response, Some("sampling/createMessage"), Some("0"), "{\"a\":1}"),
            f(7, S2c, Response, Some("tools/call"), Some("1"), "{}"),
            f(8, C2s, Request, Some("ping"), Some("2"), "{}"),
            f(9, C2s, Invalid, None, None, "garbage"),
        ];
        let s = scripts(frames).remove(0);
        let waits: Vec<Vec<String>> = s.steps.iter().map(|st| st.wait_for.clone()).collect();
        assert_eq!(
            waits,
            vec![vec![], vec!["0".to_string()], vec![], vec!["1".to_string()]]
        );
        assert_eq!(s.answers.len(), 2);
        let sampling = &s.server_requests["sampling/createMessage"][0];
        assert_eq!(sampling.answer.as_deref(), Some(&b"{\"a\":1}"[..]));
        assert_eq!(s.notifications["notifications/progress"], 1);
        assert_eq!(s.skipped_invalid, 1);
        assert_eq!(s.steps[3].t_ns, 8000);
    }

    #[test]
    fn a_session_is_sequential_when_each_message_after_a_request_waits_for_its_answer() {
        use Direction::*;
        use Kind::*;
        let seq = vec![
            f(0, C2s, Request, Some("initialize"), Some("0"), "{}"),
            f(1, S2c, Response, Some("initialize"), Some("0"), "{}"),
            f(2, C2s, Notification, Some("notifications/initialized"), None, "{}"),
            f(3, C2s, Request, Some("tools/list"), Some("1"), "{}"),
            f(4, S2c, Notification, Some("notifications/message"), None, "{}"),
            f(5, S2c, Response, Some("tools/list"), Some("1"), "{}"),
            f(6, C2s, Request, Some("ping"), Some("2"), "{}"),
        ];
        assert!(scripts(seq.clone()).remove(0).is_sequential());
        // A notification while a request is open (a cancel, say): two things in flight.
        let mut overlapping = seq.clone();
        overlapping[4] = f(4, C2s, Notification, Some("notifications/cancelled"), None, "{}");
        assert!(!scripts(overlapping).remove(0).is_sequential());
        // Two requests before either answer.
        let mut pipelined = seq.clone();
        pipelined[5] = f(5, C2s, Request, Some("ping"), Some("2"), "{}");
        pipelined[6] = f(6, S2c, Response, Some("tools/list"), Some("1"), "{}");
        assert!(!scripts(pipelined).remove(0).is_sequential());
        // The server asks the client something: answers must flow while a request is open.
        let mut asks = seq;
        asks.insert(5, f(4, S2c, Request, Some("roots/list"), Some("9"), "{}"));
        assert!(!scripts(asks).remove(0).is_sequential());
    }
}

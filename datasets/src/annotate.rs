//! Filling the derived columns of a frame from its payload: kind, method, id, error code, and by correlation
//! the method and latency of answers and the session's negotiated protocol version.
//!
//! The tap and every importer use this one [`Annotator`], so a capture means the same whatever made it.
//! Responses are paired with requests by (session, direction, id) where the id is the exact JSON text, so
//! `7` and `"7"` are different requests. Pending requests are bounded: a peer that never answers cannot grow
//! memory without limit (the oldest pending request is forgotten first).

use std::collections::{HashMap, VecDeque};

use crate::frame::{Direction, Frame, Kind};
use crate::wire::envelope::{Envelope, classify};

/// Requests awaiting an answer, across all sessions, before the oldest is forgotten.
pub const MAX_PENDING: usize = 100_000;

type Key = (String, Direction, String);

#[derive(Debug)]
struct Pending {
    method: String,
    t_ns: u64,
}

/// Derives index columns from payloads, in the order the tap saw the frames.
#[derive(Debug, Default)]
pub struct Annotator {
    pending: HashMap<Key, Pending>,
    order: VecDeque<Key>,
    versions: HashMap<String, String>,
}

impl Annotator {
    /// A new annotator with no history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Classifies the payload (unless the frame is a lifecycle event) and fills kind, method, rpc_id, error_code,
    /// latency_ns and protocol_version. A protocol version the transport already set (an HTTP header) is kept.
    pub fn annotate(&mut self, frame: &mut Frame) {
        if frame.kind == Kind::Lifecycle {
            self.stamp_version(frame);
            return;
        }
        let env = classify(&frame.payload);
        frame.kind = env.kind;
        frame.method = env.method.clone();
        frame.rpc_id = env.rpc_id.clone();
        frame.error_code = env.error_code;
        match env.kind {
            Kind::Request => {
                self.request(frame.session_id.clone(), frame.direction, &env, frame.t_ns);
                if let Some(v) = &env.protocol_version {
                    if env.method.as_deref() != Some("initialize") {
                        // 2026-07-28: every request declares its version; the first one names the session's.
                        self.versions
                            .entry(frame.session_id.clone())
                            .or_insert_with(|| v.clone());
                    }
                    frame.protocol_version.get_or_insert_with(|| v.clone());
                }
            }
            Kind::Response | Kind::Error => {
                if let Some(p) = self.answer(&frame.session_id, frame.direction, env.rpc_id.as_deref()) {
                    frame.latency_ns = Some(frame.t_ns.saturating_sub(p.t_ns));
                    if p.method == "initialize" {
                        if let Some(v) = &env.protocol_version {
                            self.versions.insert(frame.session_id.clone(), v.clone());
                        }
                    }
                    frame.method = Some(p.method);
                }
            }
            Kind::Batch => {
                for item in &env.items {
                    match item.kind {
                        Kind::Request => self.request(frame.session_id.clone(), frame.direction, item, frame.t_ns),
                        Kind::Response | Kind::Error => {
                            self.answer(&frame.session_id, frame.direction, item.rpc_id.as_deref());
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
        self.stamp_version(frame);
    }

    fn stamp_version(&self, frame: &mut Frame) {
        if frame.protocol_version.is_none() {
            frame.protocol_version = self.versions.get(&frame.session_id).cloned();
        }
    }

    fn request(&mut self, session: String, direction: Direction, env: &Envelope, t_ns: u64) {
        let (Some(id), Some(method)) = (&env.rpc_id, &env.method) else {
            return;
        };
        let key = (session, direction, id.clone());
        if self
            .pending
            .insert(
                key.clone(),
                Pending {
                    method: method.clone(),
                    t_ns,
                },
            )
            .is_none()
        {
            self.order.push_back(key);
        }
        while self.pending.len() > MAX_PENDING {
            match self.order.pop_front() {
                Some(old) => {
                    self.pending.remove(&old);
                }
                None => break,
            }
        }
    }

    fn answer(&mut self, session: &str, direction: Direction, id: Option<&str>) -> Option<Pending> {
        let key = (session.to_string(), direction.reverse(), id?.to_string());
        let p = self.pending.remove(&key)?;
        // Keep `order` small: drop answered keys from its front as they come.
        while self.order.front().is_some_and(|k| !self.pending.contains_key(k)) {
            self.order.pop_front();
        }
        Some(p)
    }

    /// Forgets a finished session.
    pub fn end_session(&mut self, session: &str) {
        self.versions.remove(session);
        self.pending.retain(|k, _| k.0 != session);
        self.order.retain(|k| k.0 != session);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Transport;

    fn frame(seq: u64, t_ns: u64, dir: Direction, payload: &str) -> Frame {
        let mut f = Frame::new("s", seq, dir, Transport::Stdio, Kind::Invalid, payload.to_string());
        f.t_ns = t_ns;
        f
    }

    #[test]
    fn answers_get_method_latency_and_version_and_ids_keep_their_json_type() {
        let mut a = Annotator::new();
        let mut frames = vec![
            frame(
                0,
                0,
                Direction::C2s,
                r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25"}}"#,
            ),
            frame(
                1,
                1_000,
                Direction::S2c,
                r#"{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-06-18","capabilities":{}}}"#,
            ),
            frame(
                2,
                2_000,
                Direction::C2s,
                r#"{"jsonrpc":"2.0","id":"7","method":"tools/list"}"#,
            ),
            frame(3, 2_500, Direction::S2c, r#"{"jsonrpc":"2.0","id":7,"result":{}}"#),
            frame(
                4,
                3_000,
                Direction::S2c,
                r#"{"jsonrpc":"2.0","id":"7","error":{"code":-32601,"message":"no"}}"#,
            ),
            frame(
                5,
                4_000,
                Direction::S2c,
                r#"{"jsonrpc":"2.0","id":0,"method":"roots/list"}"#,
            ),
            frame(
                6,
                4_700,
                Direction::C2s,
                r#"{"jsonrpc":"2.0","id":0,"result":{"roots":[]}}"#,
            ),
            frame(7, 5_000, Direction::C2s, "not json"),
        ];
        for f in &mut frames {
            a.annotate(f);
        }
        assert_eq!(
            frames[0].protocol_version.as_deref(),
            Some("2025-11-25"),
            "the proposal, on the request"
        );
        assert_eq!(frames[1].method.as_deref(), Some("initialize"));
        assert_eq!(frames[1].latency_ns, Some(1_000));
        assert_eq!(
            frames[1].protocol_version.as_deref(),
            Some("2025-06-18"),
            "the negotiated version"
        );
        assert_eq!(frames[2].protocol_version.as_deref(), Some("2025-06-18"));
        // `7` does not answer `"7"`.
        assert_eq!(frames[3].method, None);
        assert_eq!(frames[3].latency_ns, None);
        assert_eq!(frames[4].kind, Kind::Error);
        assert_eq!(frames[4].method.as_deref(), Some("tools/list"));
        assert_eq!(frames[4].error_code, Some(-32601));
        assert_eq!(frames[4].latency_ns, Some(1_000));
        // Server-to-client requests are answered by the client.
        assert_eq!(frames[6].method.as_deref(), Some("roots/list"));
        assert_eq!(frames[6].latency_ns, Some(700));
        assert_eq!(frames[7].kind, Kind::Invalid);
    }

    #[test]
    fn modern_requests_declare_their_version_in_meta() {
        let mut a = Annotator::new();
        let mut f = frame(
            0,
            0,
            Direction::C2s,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#,
        );
        a.annotate(&mut f);
        let mut r = frame(
            1,
            10,
            Direction::S2c,
            r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}"#,
        );
        a.annotate(&mut r);
        assert_eq!(f.protocol_version.as_deref(), Some("2026-07-28"));
        assert_eq!(r.protocol_version.as_deref(), Some("2026-07-28"));
        assert_eq!(r.method.as_deref(), Some("tools/list"));
    }

    #[test]
    fn pending_requests_are_bounded() {
        let mut a = Annotator::new();
        for i in 0..(MAX_PENDING + 10) {
            let mut f = frame(i as u64, 0, Direction::C2s, &format!(r#"{{"id":{i},"method":"ping"}}"#));
            a.annotate(&mut f);
        }
        assert_eq!(a.pending.len(), MAX_PENDING);
        let mut oldest = frame(0, 5, Direction::S2c, r#"{"id":0,"result":{}}"#);
        a.annotate(&mut oldest);
        assert_eq!(oldest.method, None, "the oldest pending request was forgotten");
    }
}

//! Filling the derived columns of a frame from its payload: kind, method, id, error code, and by correlation
//! the method and latency of answers and the session's negotiated protocol version.
//!
//! The tap and every importer use this one [`Annotator`], so a capture means the same whatever made it.
//! Responses are paired with requests by (session, direction, id) where the id is the exact JSON text, so
//! `7` and `"7"` are different requests. Pending requests are bounded: a peer that never answers cannot grow
//! memory without limit (the oldest pending request is forgotten first).

use std::collections::VecDeque;

use foldhash::{HashMap, HashMapExt};
use std::sync::Arc;

use crate::frame::{Direction, Frame, Kind};
use crate::redact::{RedactionRules, classify_and_redact};
use crate::wire::envelope::{Envelope, classify};

/// Requests awaiting an answer, across all sessions, before the oldest is forgotten.
pub const MAX_PENDING: usize = 100_000;

#[derive(Debug)]
struct Pending {
    method: String,
    t_ns: u64,
}

/// What is known of one session: its requests awaiting an answer, by the direction they travelled (ids as
/// their JSON text), and its protocol version.
///
/// Keyed by session, then by id, so that every lookup is by borrowed text: an answer costs no allocation, a
/// request one for its id (shared with `order`) and one for its method (which its answer's frame takes over).
#[derive(Debug)]
struct Session {
    /// The session id, shared with the session's entries in `order`.
    name: Arc<str>,
    pending: [HashMap<Arc<str>, Pending>; 2],
    version: Option<String>,
}

/// Derives index columns from payloads, in the order the tap saw the frames.
#[derive(Debug)]
pub struct Annotator {
    sessions: HashMap<Arc<str>, Session>,
    /// (session, direction, id) of pending requests, oldest first, to forget the oldest; answered ones are
    /// dropped from the front as they come, so some further in may be answered already.
    order: VecDeque<(Arc<str>, Direction, Arc<str>)>,
    /// Requests pending across all sessions.
    pending: usize,
    /// [`MAX_PENDING`] (smaller in tests).
    max_pending: usize,
}

impl Default for Annotator {
    fn default() -> Self {
        Annotator {
            sessions: HashMap::new(),
            order: VecDeque::new(),
            pending: 0,
            max_pending: MAX_PENDING,
        }
    }
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
        self.apply(frame, env);
    }

    /// [`Annotator::annotate`], then redacts the payload under `rules`, scanning a message once for both (the
    /// writer's path: same columns and bytes as the two steps, half the work). Returns true when the payload was
    /// redacted. Lifecycle frames are redacted too (a stderr line may hold a token).
    pub fn annotate_and_redact(&mut self, frame: &mut Frame, rules: &RedactionRules) -> bool {
        let redacted = if frame.kind == Kind::Lifecycle {
            self.stamp_version(frame);
            rules.payload(&frame.payload)
        } else {
            let (env, redacted) = classify_and_redact(&frame.payload, rules);
            self.apply(frame, env);
            redacted
        };
        match redacted {
            Some(p) => {
                frame.payload = p;
                true
            }
            None => false,
        }
    }

    /// Fills the derived columns from the payload's envelope and updates the correlation state.
    fn apply(&mut self, frame: &mut Frame, env: Envelope) {
        frame.kind = env.kind;
        frame.error_code = env.error_code;
        match env.kind {
            Kind::Request => {
                if let (Some(id), Some(method)) = (&env.rpc_id, &env.method) {
                    self.request(&frame.session_id, frame.direction, id, method, frame.t_ns);
                }
                if let Some(v) = &env.protocol_version {
                    if env.method.as_deref() != Some("initialize") {
                        // 2026-07-28: every request declares its version; the first one names the session's.
                        self.session(&frame.session_id).version.get_or_insert_with(|| v.clone());
                    }
                }
                if frame.protocol_version.is_none() {
                    frame.protocol_version = env.protocol_version;
                }
                frame.method = env.method;
            }
            Kind::Response | Kind::Error => {
                frame.method = env.method;
                if let Some(p) = self.answer(&frame.session_id, frame.direction, env.rpc_id.as_deref()) {
                    frame.latency_ns = Some(frame.t_ns.saturating_sub(p.t_ns));
                    if p.method == "initialize" {
                        if let Some(v) = env.protocol_version {
                            self.session(&frame.session_id).version = Some(v);
                        }
                    }
                    frame.method = Some(p.method);
                }
            }
            Kind::Batch => {
                frame.method = env.method;
                for item in &env.items {
                    match item.kind {
                        Kind::Request => {
                            if let (Some(id), Some(method)) = (&item.rpc_id, &item.method) {
                                self.request(&frame.session_id, frame.direction, id, method, frame.t_ns);
                            }
                        }
                        Kind::Response | Kind::Error => {
                            self.answer(&frame.session_id, frame.direction, item.rpc_id.as_deref());
                        }
                        _ => {}
                    }
                }
            }
            _ => frame.method = env.method,
        }
        frame.rpc_id = env.rpc_id;
        self.stamp_version(frame);
    }

    fn stamp_version(&self, frame: &mut Frame) {
        if frame.protocol_version.is_none() {
            frame.protocol_version = self
                .sessions
                .get(frame.session_id.as_str())
                .and_then(|s| s.version.clone());
        }
    }

    /// The state of `session`, created empty if it has none yet.
    fn session(&mut self, session: &str) -> &mut Session {
        if !self.sessions.contains_key(session) {
            let name: Arc<str> = Arc::from(session);
            let state = Session {
                name: name.clone(),
                pending: Default::default(),
                version: None,
            };
            self.sessions.insert(name, state);
        }
        self.sessions.get_mut(session).expect("inserted above")
    }

    fn request(&mut self, session: &str, direction: Direction, id: &str, method: &str, t_ns: u64) {
        let id: Arc<str> = Arc::from(id);
        let pending = Pending {
            method: method.to_string(),
            t_ns,
        };
        let state = self.session(session);
        if state.pending[direction as usize].insert(id.clone(), pending).is_none() {
            let name = state.name.clone();
            self.pending += 1;
            self.order.push_back((name, direction, id));
        }
        while self.pending > self.max_pending {
            match self.order.pop_front() {
                Some((session, direction, id)) => {
                    self.forget(&session, direction, &id);
                }
                None => break,
            }
        }
    }

    fn answer(&mut self, session: &str, direction: Direction, id: Option<&str>) -> Option<Pending> {
        let p = self.forget(session, direction.reverse(), id?)?;
        // Keep `order` small: drop answered keys from its front as they come.
        while let Some((session, direction, id)) = self.order.front() {
            let answered = self
                .sessions
                .get(session)
                .is_none_or(|s| !s.pending[*direction as usize].contains_key(id));
            if !answered {
                break;
            }
            self.order.pop_front();
        }
        Some(p)
    }

    /// Removes a pending request. A session left with no pending request and no version is dropped, so that many
    /// short sessions that are never ended do not grow memory.
    fn forget(&mut self, session: &str, direction: Direction, id: &str) -> Option<Pending> {
        let state = self.sessions.get_mut(session)?;
        let p = state.pending[direction as usize].remove(id)?;
        self.pending -= 1;
        if state.version.is_none() && state.pending.iter().all(HashMap::is_empty) {
            self.sessions.remove(session);
        }
        Some(p)
    }

    /// Forgets a finished session.
    pub fn end_session(&mut self, session: &str) {
        if let Some(s) = self.sessions.remove(session) {
            self.pending -= s.pending.iter().map(HashMap::len).sum::<usize>();
        }
        self.order.retain(|(s, _, _)| &**s != session);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Transport;
    use proptest::prelude::*;

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

    /// The annotator as first written (one map keyed by (session, direction, id), one of versions), with its
    /// bound as a parameter: the property below checks the per-session maps against it.
    #[derive(Default)]
    struct Reference {
        pending: HashMap<(String, Direction, String), (String, u64)>,
        order: VecDeque<(String, Direction, String)>,
        versions: HashMap<String, String>,
        max: usize,
    }

    impl Reference {
        fn annotate(&mut self, frame: &mut Frame) {
            if frame.kind != Kind::Lifecycle {
                let env = classify(&frame.payload);
                frame.kind = env.kind;
                frame.method = env.method.clone();
                frame.rpc_id = env.rpc_id.clone();
                frame.error_code = env.error_code;
                let s = frame.session_id.clone();
                match env.kind {
                    Kind::Request => {
                        self.request(&s, frame.direction, &env, frame.t_ns);
                        if let Some(v) = &env.protocol_version {
                            if env.method.as_deref() != Some("initialize") {
                                self.versions.entry(s.clone()).or_insert_with(|| v.clone());
                            }
                            frame.protocol_version.get_or_insert_with(|| v.clone());
                        }
                    }
                    Kind::Response | Kind::Error => {
                        if let Some(p) = self.answer(&s, frame.direction, env.rpc_id.as_deref()) {
                            frame.latency_ns = Some(frame.t_ns.saturating_sub(p.1));
                            if p.0 == "initialize" {
                                if let Some(v) = &env.protocol_version {
                                    self.versions.insert(s.clone(), v.clone());
                                }
                            }
                            frame.method = Some(p.0);
                        }
                    }
                    Kind::Batch => {
                        for item in &env.items {
                            match item.kind {
                                Kind::Request => self.request(&s, frame.direction, item, frame.t_ns),
                                Kind::Response | Kind::Error => {
                                    self.answer(&s, frame.direction, item.rpc_id.as_deref());
                                }
                                _ => {}
                            }
                        }
                    }
                    _ => {}
                }
            }
            if frame.protocol_version.is_none() {
                frame.protocol_version = self.versions.get(&frame.session_id).cloned();
            }
        }

        fn request(&mut self, s: &str, d: Direction, env: &Envelope, t_ns: u64) {
            let (Some(id), Some(method)) = (&env.rpc_id, &env.method) else {
                return;
            };
            let key = (s.to_string(), d, id.clone());
            if self.pending.insert(key.clone(), (method.clone(), t_ns)).is_none() {
                self.order.push_back(key);
            }
            while self.pending.len() > self.max {
                match self.order.pop_front() {
                    Some(old) => {
                        self.pending.remove(&old);
                    }
                    None => break,
                }
            }
        }

        fn answer(&mut self, s: &str, d: Direction, id: Option<&str>) -> Option<(String, u64)> {
            let p = self.pending.remove(&(s.to_string(), d.reverse(), id?.to_string()))?;
            while self.order.front().is_some_and(|k| !self.pending.contains_key(k)) {
                self.order.pop_front();
            }
            Some(p)
        }

        fn end_session(&mut self, s: &str) {
            self.versions.remove(s);
            self.pending.retain(|k, _| k.0 != s);
            self.order.retain(|k| k.0 != s);
        }
    }

    /// One step of a generated exchange: a message of a session in a direction, or the end of a session.
    fn step() -> impl Strategy<Value = (u8, bool, u8, u8, u8)> {
        (0u8..3, any::<bool>(), 0u8..10, 0u8..4, 0u8..6)
    }

    fn message(what: u8, id: u8, method: u8) -> String {
        let id = if id % 3 == 0 {
            format!("\"{id}\"")
        } else {
            id.to_string()
        };
        let m = ["initialize", "tools/list", "tools/call", "ping"][usize::from(method)];
        match what {
            0 | 1 => {
                format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"{m}","params":{{"protocolVersion":"v{method}"}}}}"#)
            }
            2 => {
                let meta = format!(r#"{{"io.modelcontextprotocol/protocolVersion":"m{method}"}}"#);
                format!(r#"{{"id":{id},"method":"{m}","params":{{"_meta":{meta}}}}}"#)
            }
            3 => format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{"protocolVersion":"r{method}"}}}}"#),
            4 => format!(r#"{{"id":{id},"error":{{"code":-{method}}}}}"#),
            _ => format!(r#"[{{"id":{id},"method":"{m}"}},{{"id":{id},"result":{{}}}},{{"method":"n"}}]"#),
        }
    }

    proptest! {
        #[test]
        fn per_session_state_annotates_as_the_single_map_did(
            steps in prop::collection::vec(step(), 0..120),
            max in prop::sample::select(vec![1usize, 3, 8, MAX_PENDING]),
            redact in any::<bool>(),
        ) {
            let mut a = Annotator { max_pending: max, ..Annotator::new() };
            let mut r = Reference { max, ..Reference::default() };
            let rules = RedactionRules::default();
            for (i, (session, c2s, id, method, what)) in steps.into_iter().enumerate() {
                let session = format!("s{session}");
                if what == 5 && id == 9 {
                    a.end_session(&session);
                    r.end_session(&session);
                    continue;
                }
                let dir = if c2s { Direction::C2s } else { Direction::S2c };
                let payload = message(what, id, method);
                let mut f = Frame::new(session, i as u64, dir, Transport::Stdio, Kind::Invalid, payload);
                f.t_ns = i as u64 * 10;
                let mut want = f.clone();
                if redact {
                    a.annotate_and_redact(&mut f, &rules);
                } else {
                    a.annotate(&mut f);
                }
                r.annotate(&mut want);
                prop_assert_eq!(&f, &want);
                prop_assert_eq!(a.pending, r.pending.len());
            }
        }
    }

    #[test]
    fn pending_requests_are_bounded() {
        let mut a = Annotator::new();
        for i in 0..(MAX_PENDING + 10) {
            let mut f = frame(i as u64, 0, Direction::C2s, &format!(r#"{{"id":{i},"method":"ping"}}"#));
            a.annotate(&mut f);
        }
        assert_eq!(a.pending, MAX_PENDING);
        assert_eq!(a.sessions["s"].pending[0].len(), MAX_PENDING);
        let mut oldest = frame(0, 5, Direction::S2c, r#"{"id":0,"result":{}}"#);
        a.annotate(&mut oldest);
        assert_eq!(oldest.method, None, "the oldest pending request was forgotten");
    }
}

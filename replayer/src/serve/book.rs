//! The answer book of `mcptape serve`: every recorded request with what the server sent for it.
//!
//! A request is looked up by method and normalized params (parsed, `_meta` removed, keys sorted), and repeats of
//! the same request get the recorded answers in recorded order, the last one again once they run out. A request
//! the recording never saw gets, unless `--strict`, the nearest answer: the first recorded answer to the same
//! method. Handshake and housekeeping methods (`initialize`, `server/discover`, `ping`) match by method alone, so
//! any client can connect.

use std::collections::HashMap;

use bytes::Bytes;
use mcptape_datasets::{Direction, Kind};
use serde_json::Value;

/// Methods matched by name alone.
const BY_METHOD: &[&str] = &["initialize", "server/discover", "ping"];

/// A message the server sends before an answer, or after a client notification.
#[derive(Debug, Clone, PartialEq)]
pub enum Out {
    /// A notification (progress, log, list changed).
    Notification(Bytes),
    /// A request to the client (sampling, elicitation, roots); the server waits for the client's answer to the id.
    Request {
        /// The recorded bytes.
        payload: Bytes,
        /// Its id (JSON text).
        id: String,
    },
}

/// What the server sent for one request: its own messages first (progress, logs, sampling …), then the answer.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// What the server sent while the request was open, in order.
    pub before: Vec<Out>,
    /// The answer (response or error), with the recorded id.
    pub answer: Bytes,
}

/// A recorded request still waiting for its answer while the book is built.
struct Open {
    method: String,
    /// Normalized params.
    key: String,
    /// What the server sent meanwhile.
    before: Vec<Out>,
    /// Opening order (a server message belongs to the newest open request).
    order: u64,
}

#[derive(Debug, Default)]
struct Entry {
    answers: Vec<Recorded>,
}

/// How far one client session has got through the book: which repeat of each request and of each client
/// notification comes next. Each session starts at the beginning, so a client sees the recording's order whatever
/// other sessions did before it.
#[derive(Debug, Default)]
pub struct Cursors {
    answers: HashMap<(String, String), usize>,
    notes: HashMap<String, usize>,
}

/// How a request was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    /// Same method and params.
    Exact,
    /// Same method, other params: the nearest recorded answer.
    Nearest,
}

/// Every recorded answer, ready to be served.
#[derive(Debug, Default)]
pub struct Book {
    exact: HashMap<(String, String), Entry>,
    by_method: HashMap<String, Vec<Recorded>>,
    /// What the server sent after a client notification, per notification method, in recorded order.
    after_notification: HashMap<String, std::collections::VecDeque<Vec<Out>>>,
    /// Recorded answers in the book.
    pub len: usize,
}

/// Canonical text of params: parsed, `_meta` removed at the top, object keys sorted.
pub fn normalize_params(params: Option<&Value>) -> String {
    fn canon(v: &Value, top: bool, out: &mut String) {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().filter(|k| !(top && *k == "_meta")).collect();
                keys.sort();
                out.push('{');
                for (i, k) in keys.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String((*k).clone()).to_string());
                    out.push(':');
                    canon(&m[*k], false, out);
                }
                out.push('}');
            }
            Value::Array(a) => {
                out.push('[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    canon(x, false, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut out = String::new();
    if let Some(p) = params {
        canon(p, true, &mut out);
    }
    out
}

impl Book {
    /// Builds the book from recorded sessions (the frames of each, in order). A server message belongs to the
    /// newest open request of its session, or else to the client notification just before it.
    pub fn from_frames(frames: &[mcptape_datasets::Frame]) -> Book {
        let mut book = Book::default();
        // Open requests by (session, id).
        let mut open: HashMap<(String, String), Open> = HashMap::new();
        // Per session: the client notification the server may be reacting to.
        let mut last_note: HashMap<String, (String, Vec<Out>)> = HashMap::new();
        let mut opened = 0u64;
        let flush_note = |book: &mut Book, note: Option<(String, Vec<Out>)>| {
            if let Some((method, outs)) = note {
                book.after_notification.entry(method).or_default().push_back(outs);
            }
        };
        for f in frames {
            let sid = f.session_id.clone();
            match (f.direction, f.kind) {
                (Direction::C2s, Kind::Request) => {
                    flush_note(&mut book, last_note.remove(&sid));
                    let Some(id) = &f.rpc_id else { continue };
                    let params = serde_json::from_slice::<Value>(&f.payload)
                        .ok()
                        .and_then(|v| v.get("params").cloned());
                    let key = normalize_params(params.as_ref());
                    opened += 1;
                    let method = f.method.clone().unwrap_or_default();
                    open.insert(
                        (sid, id.clone()),
                        Open {
                            method,
                            key,
                            before: Vec::new(),
                            order: opened,
                        },
                    );
                }
                (Direction::C2s, Kind::Notification) => {
                    flush_note(&mut book, last_note.remove(&sid));
                    last_note.insert(sid, (f.method.clone().unwrap_or_default(), Vec::new()));
                }
                (Direction::S2c, Kind::Notification | Kind::Request) => {
                    let out = match (f.kind, &f.rpc_id) {
                        (Kind::Request, Some(id)) => Out::Request {
                            payload: f.payload.clone(),
                            id: id.clone(),
                        },
                        (Kind::Request, None) => continue,
                        _ => Out::Notification(f.payload.clone()),
                    };
                    let newest = open
                        .iter_mut()
                        .filter(|((s, _), _)| *s == sid)
                        .max_by_key(|(_, v)| v.order);
                    if let Some((_, o)) = newest {
                        o.before.push(out);
                    } else if let Some((_, outs)) = last_note.get_mut(&sid) {
                        outs.push(out);
                    }
                }
                (Direction::S2c, Kind::Response | Kind::Error) => {
                    let Some(id) = &f.rpc_id else { continue };
                    let Some(Open {
                        method, key, before, ..
                    }) = open.remove(&(sid, id.clone()))
                    else {
                        continue;
                    };
                    let rec = Recorded {
                        before,
                        answer: f.payload.clone(),
                    };
                    book.by_method.entry(method.clone()).or_default().push(rec.clone());
                    book.exact.entry((method, key)).or_default().answers.push(rec);
                    book.len += 1;
                }
                _ => {}
            }
        }
        for (_, note) in last_note.drain() {
            flush_note(&mut book, Some(note));
        }
        book
    }

    /// What the server sent after this client notification (in recorded order for the session of `seen`; nothing
    /// once they run out).
    pub fn after_notification(&self, method: &str, seen: &mut Cursors) -> Vec<Out> {
        let n = seen.notes.entry(method.to_string()).or_default();
        let outs = self.after_notification.get(method).and_then(|q| q.get(*n)).cloned();
        *n += 1;
        outs.unwrap_or_default()
    }

    /// The answer for a request, or `None` (unknown method, or `strict` and unknown params). Repeats within the
    /// session of `seen` get the recorded answers in order, then the last one again.
    pub fn answer(
        &self,
        method: &str,
        params: Option<&Value>,
        strict: bool,
        seen: &mut Cursors,
    ) -> Option<(Recorded, Match)> {
        if BY_METHOD.contains(&method) {
            return self
                .by_method
                .get(method)
                .and_then(|v| v.first())
                .cloned()
                .map(|r| (r, Match::Exact));
        }
        let key = (method.to_string(), normalize_params(params));
        if let Some(e) = self.exact.get(&key) {
            let next = seen.answers.entry(key).or_default();
            let i = (*next).min(e.answers.len().saturating_sub(1));
            *next += 1;
            return e.answers.get(i).cloned().map(|r| (r, Match::Exact));
        }
        if strict {
            return None;
        }
        self.by_method
            .get(method)
            .and_then(|v| v.first())
            .cloned()
            .map(|r| (r, Match::Nearest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcptape_datasets::{Frame, Transport};
    use serde_json::json;

    fn f(seq: u64, dir: Direction, kind: Kind, method: &str, id: Option<&str>, payload: Value) -> Frame {
        let mut fr = Frame::new("s", seq, dir, Transport::Stdio, kind, payload.to_string());
        fr.method = Some(method.into());
        fr.rpc_id = id.map(str::to_string);
        fr
    }

    #[test]
    fn repeats_come_in_recorded_order_and_unknown_params_get_the_nearest_unless_strict() {
        use Direction::*;
        let call = |id: u64, x: u64| json!({"jsonrpc":"2.0","id":id,"method":"tools/call","params":{"name":"n","arguments":{"x":x},"_meta":{"progressToken":id}}});
        let frames = vec![
            f(0, C2s, Kind::Request, "tools/call", Some("1"), call(1, 1)),
            f(
                1,
                S2c,
                Kind::Notification,
                "notifications/progress",
                None,
                json!({"method":"notifications/progress"}),
            ),
            f(
                2,
                S2c,
                Kind::Response,
                "tools/call",
                Some("1"),
                json!({"id":1,"result":{"n":"first"}}),
            ),
            f(3, C2s, Kind::Request, "tools/call", Some("2"), call(2, 1)),
            f(
                4,
                S2c,
                Kind::Response,
                "tools/call",
                Some("2"),
                json!({"id":2,"result":{"n":"second"}}),
            ),
        ];
        let book = Book::from_frames(&frames);
        assert_eq!(book.len, 2);
        let params = json!({"arguments":{"x":1},"name":"n","_meta":{"progressToken":"other"}});
        let seen = &mut Cursors::default();
        let (a, m) = book.answer("tools/call", Some(&params), true, seen).unwrap();
        assert_eq!(m, Match::Exact);
        assert_eq!(a.before.len(), 1);
        assert!(String::from_utf8_lossy(&a.answer).contains("first"));
        let (b, _) = book.answer("tools/call", Some(&params), true, seen).unwrap();
        assert!(String::from_utf8_lossy(&b.answer).contains("second"));
        let (c, _) = book.answer("tools/call", Some(&params), true, seen).unwrap();
        assert!(
            String::from_utf8_lossy(&c.answer).contains("second"),
            "the last one again"
        );
        let other = json!({"name":"n","arguments":{"x":2}});
        assert!(book.answer("tools/call", Some(&other), true, seen).is_none());
        let (n, m) = book.answer("tools/call", Some(&other), false, seen).unwrap();
        assert_eq!(m, Match::Nearest);
        assert!(String::from_utf8_lossy(&n.answer).contains("first"));
        assert!(book.answer("resources/read", None, false, seen).is_none());
        // Another session starts from the first answer again.
        let (d, _) = book
            .answer("tools/call", Some(&params), true, &mut Cursors::default())
            .unwrap();
        assert!(String::from_utf8_lossy(&d.answer).contains("first"));
    }
}

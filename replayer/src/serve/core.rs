//! What `mcptape serve` says to one incoming message, and when: the recorded answer (id changed to the live one),
//! the notifications recorded with it, and the faults asked for (latency, jitter, errors, periodic stalls).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mcptape_datasets::Kind;
use mcptape_datasets::wire::envelope::classify;
use serde_json::Value;

use crate::engine::with_id;
use crate::serve::book::{Book, Cursors, Match, Out};

/// Sessions whose place in the book is kept; beyond this the oldest-looking one is forgotten (a client that never
/// ends its sessions cannot grow memory without bound).
const MAX_SCOPES: usize = 65_536;

/// Longest wait for the client's answer to a recorded server request.
pub const CLIENT_ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// Injected faults.
#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    /// Added to every answer.
    pub latency: Duration,
    /// Up to this much more, uniformly at random.
    pub jitter: Duration,
    /// Probability of answering with an error instead.
    pub error_rate: f64,
    /// `Some((every, for))`: all answers due in [k·every, k·every + for) wait until the window ends.
    pub stall: Option<(Duration, Duration)>,
}

/// Parses `--stall EVERY:FOR` (`10s:1s`).
pub fn parse_stall(s: &str) -> Result<(Duration, Duration), String> {
    let (a, b) = s
        .split_once(':')
        .ok_or_else(|| format!("--stall {s:?}: expected EVERY:FOR, e.g. 10s:1s"))?;
    let every = humantime::parse_duration(a).map_err(|e| format!("--stall {s:?}: {e}"))?;
    let dur = humantime::parse_duration(b).map_err(|e| format!("--stall {s:?}: {e}"))?;
    if every.is_zero() || dur >= every {
        return Err(format!("--stall {s:?}: the stall must be shorter than its period"));
    }
    Ok((every, dur))
}

/// What to send for one incoming message.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The server's own messages first (notifications, and requests whose answers are awaited).
    pub before: Vec<Out>,
    /// The answer (requests only).
    pub answer: Option<Bytes>,
    /// How long after `before` the answer goes out.
    pub delay: Duration,
}

/// Counters of what was served.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    /// Answered with the recorded answer to the same request.
    pub exact: u64,
    /// Answered with the nearest recorded answer.
    pub nearest: u64,
    /// Unknown requests answered with an error.
    pub unknown: u64,
    /// Injected errors.
    pub injected: u64,
}

/// The serving state shared by every connection.
#[derive(Debug)]
pub struct Server {
    book: Book,
    /// Per scope (connection or HTTP session): how far it has got through the book.
    cursors: Mutex<HashMap<String, Cursors>>,
    faults: Faults,
    strict: bool,
    rng: Mutex<u64>,
    started: Instant,
    stats: Mutex<Stats>,
    waiters: Mutex<HashMap<(String, String), tokio::sync::oneshot::Sender<()>>>,
}

impl Server {
    /// A server over `book`.
    pub fn new(book: Book, faults: Faults, strict: bool, seed: u64) -> Server {
        Server {
            book,
            cursors: Mutex::new(HashMap::new()),
            faults,
            strict,
            rng: Mutex::new(seed.max(1)),
            started: Instant::now(),
            stats: Mutex::new(Stats::default()),
            waiters: Mutex::new(HashMap::new()),
        }
    }

    /// What was served so far.
    pub fn stats(&self) -> Stats {
        *self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn random(&self) -> f64 {
        // xorshift64*: deterministic for a seed, so fault runs repeat.
        let mut s = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        *s ^= *s >> 12;
        *s ^= *s << 25;
        *s ^= *s >> 27;
        (s.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn with_cursors<T>(&self, scope: &str, f: impl FnOnce(&mut Cursors) -> T) -> T {
        let mut all = self.cursors.lock().unwrap_or_else(|e| e.into_inner());
        if !all.contains_key(scope) && all.len() >= MAX_SCOPES {
            if let Some(k) = all.keys().next().cloned() {
                all.remove(&k);
            }
        }
        f(all.entry(scope.to_string()).or_default())
    }

    /// Forgets a scope's place in the book (its session ended).
    pub fn end_scope(&self, scope: &str) {
        self.cursors.lock().unwrap_or_else(|e| e.into_inner()).remove(scope);
    }

    /// The reply to a message from the client in `scope` (a connection or HTTP session), or `None` when there is
    /// nothing to send. A client answer to a server request wakes whoever waits for it.
    pub fn handle(&self, scope: &str, msg: &[u8]) -> Option<Reply> {
        let env = classify(msg);
        match env.kind {
            Kind::Request => {}
            Kind::Notification => {
                let method = env.method.as_deref()?;
                let before = self.with_cursors(scope, |c| self.book.after_notification(method, c));
                return (!before.is_empty()).then_some(Reply {
                    before,
                    answer: None,
                    delay: Duration::ZERO,
                });
            }
            Kind::Response | Kind::Error => {
                let key = (scope.to_string(), env.rpc_id?);
                if let Some(tx) = self.waiters.lock().unwrap_or_else(|e| e.into_inner()).remove(&key) {
                    let _ = tx.send(());
                }
                return None;
            }
            _ => return None,
        }
        let id = env.rpc_id.clone().unwrap_or_else(|| "null".into());
        let method = env.method.clone().unwrap_or_default();
        let params = serde_json::from_slice::<Value>(msg)
            .ok()
            .and_then(|v| v.get("params").cloned());
        let found = self.with_cursors(scope, |c| self.book.answer(&method, params.as_ref(), self.strict, c));
        let delay = self.delay();
        let mut stats = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        if self.faults.error_rate > 0.0 && self.random() < self.faults.error_rate {
            stats.injected += 1;
            let answer = Some(error(&id, -32603, "mcptape serve: injected error"));
            return Some(Reply {
                before: vec![],
                answer,
                delay,
            });
        }
        match found {
            Some((rec, m)) => {
                match m {
                    Match::Exact => stats.exact += 1,
                    Match::Nearest => stats.nearest += 1,
                }
                let answer = with_id(&rec.answer, &id)
                    .unwrap_or_else(|| error(&id, -32603, "mcptape serve: bad recorded answer"));
                Some(Reply {
                    before: rec.before,
                    answer: Some(answer),
                    delay,
                })
            }
            None => {
                stats.unknown += 1;
                let why = if self.strict {
                    "no recorded answer to this request (--strict)"
                } else {
                    "no recorded answer to this method"
                };
                let answer = Some(error(&id, -32601, &format!("mcptape serve: {why}: {method}")));
                Some(Reply {
                    before: vec![],
                    answer,
                    delay,
                })
            }
        }
    }

    /// Sends a reply through `send`: the server's messages in order (waiting, boundedly, for the client's answer
    /// to each server request), then the answer after its delay.
    pub async fn deliver(&self, scope: &str, reply: Reply, send: impl Fn(Bytes)) {
        for out in reply.before {
            match out {
                Out::Notification(b) => send(b),
                Out::Request { payload, id } => {
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    self.waiters
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert((scope.to_string(), id.clone()), tx);
                    send(payload);
                    if tokio::time::timeout(CLIENT_ANSWER_TIMEOUT, rx).await.is_err() {
                        self.waiters
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .remove(&(scope.to_string(), id));
                    }
                }
            }
        }
        if let Some(answer) = reply.answer {
            if !reply.delay.is_zero() {
                tokio::time::sleep(reply.delay).await;
            }
            send(answer);
        }
    }

    fn delay(&self) -> Duration {
        let f = &self.faults;
        let mut d = f.latency;
        if !f.jitter.is_zero() {
            d += f.jitter.mul_f64(self.random());
        }
        if let Some((every, dur)) = f.stall {
            let due = self.started.elapsed() + d;
            let into = Duration::from_nanos((due.as_nanos() % every.as_nanos()) as u64);
            if into < dur {
                d += dur - into;
            }
        }
        d
    }
}

fn error(id: &str, code: i32, message: &str) -> Bytes {
    let message = Value::String(message.to_string());
    Bytes::from(format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":{id},\"error\":{{\"code\":{code},\"message\":{message}}}}}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stall_windows_delay_answers_to_their_end() {
        let s = Server::new(
            Book::default(),
            Faults {
                stall: Some((Duration::from_secs(10), Duration::from_secs(1))),
                ..Default::default()
            },
            false,
            1,
        );
        // Right after start we are inside the first window [0, 1 s).
        let d = s.delay();
        assert!(d > Duration::from_millis(900) && d <= Duration::from_secs(1), "{d:?}");
        assert!(parse_stall("10s:1s").is_ok());
        assert!(parse_stall("1s:2s").is_err());
        assert!(parse_stall("10s").is_err());
    }

    #[test]
    fn unknown_requests_get_an_error_with_their_id_and_notifications_get_nothing() {
        let s = Server::new(Book::default(), Faults::default(), true, 1);
        let r = s
            .handle("c", br#"{"jsonrpc":"2.0","id":"a-1","method":"tools/list"}"#)
            .unwrap();
        let v: Value = serde_json::from_slice(&r.answer.unwrap()).unwrap();
        assert_eq!(v["id"], "a-1");
        assert_eq!(v["error"]["code"], -32601);
        assert!(
            s.handle("c", br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
                .is_none()
        );
        assert!(s.handle("c", b"garbage").is_none());
    }

    #[test]
    fn error_rate_is_deterministic_for_a_seed_and_near_its_rate() {
        let s = Server::new(
            Book::default(),
            Faults {
                error_rate: 0.05,
                ..Default::default()
            },
            false,
            7,
        );
        let n = 20_000;
        let hits = (0..n).filter(|_| s.random() < 0.05).count();
        assert!((800..1200).contains(&hits), "{hits}");
        let a: Vec<f64> = {
            let s = Server::new(Book::default(), Faults::default(), false, 3);
            (0..5).map(|_| s.random()).collect()
        };
        let b: Vec<f64> = {
            let s = Server::new(Book::default(), Faults::default(), false, 3);
            (0..5).map(|_| s.random()).collect()
        };
        assert_eq!(a, b);
    }
}

//! Which tap session an HTTP exchange belongs to, and when a session ends; frames are stamped and queued here.
//!
//! Grouping (documented in the README):
//! - a request carrying `Mcp-Session-Id` joins the session of that id (`http-…`); an `initialize` sent without
//!   one waits for the response, whose `Mcp-Session-Id` starts the session;
//! - a `GET` without `Mcp-Session-Id` answered with an event stream is a legacy HTTP+SSE connection (`sse-…`);
//!   posts to the endpoint it announced join it;
//! - anything else without `Mcp-Session-Id` (the stateless 2026-07-28 era, stateless servers) is grouped per
//!   client (`stateless-…`): same peer IP, same `Authorization` and same `User-Agent`, until that client has been
//!   silent for `--stateless-gap`;
//! - a WebSocket connection is one session (`ws-…`).
//!
//! A session ends (its correlation state is freed in the tap) on a successful `DELETE`, a 404 to its id, the end of
//! a legacy stream or WebSocket, or idleness, and only once no exchange of it is still open, so no frame is ever
//! recorded after its session ended.

use foldhash::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::tap::{Observed, Tap};

/// Mcp-Session-Id sessions nobody has used for this long are forgotten (memory stays bounded).
const MCP_SESSION_IDLE: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Key {
    Mcp(String),
    Client(u64),
    Legacy(Option<String>),
    Ws,
}

#[derive(Debug)]
struct State {
    open: usize,
    last: Instant,
    closing: bool,
    ended: bool,
    key: Key,
}

/// One tap session.
#[derive(Debug)]
pub(crate) struct Session {
    /// The tap-assigned session id.
    pub id: Arc<str>,
    /// Recorded (`--sample` decided when the session began).
    pub keep: bool,
    start: Instant,
    streams: AtomicU32,
    stamp: Mutex<()>,
    state: Mutex<State>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Session {
    /// The next stream id (one per exchange, from 1).
    pub fn next_stream(&self) -> u32 {
        self.streams.fetch_add(1, Ordering::Relaxed) + 1
    }
}

#[derive(Debug, Default)]
struct Maps {
    by_mcp: HashMap<String, Arc<Session>>,
    by_client: HashMap<u64, Arc<Session>>,
    by_endpoint: HashMap<String, Arc<Session>>,
}

/// All live sessions of one tap.
#[derive(Debug)]
pub(crate) struct Sessions {
    tap: Tap,
    lossless: bool,
    prefix: String,
    next: AtomicU64,
    stateless_gap: Duration,
    hasher: RandomState,
    maps: Mutex<Maps>,
}

/// An open session: the session stays alive (is not ended) while one of these exists.
#[derive(Debug)]
pub(crate) struct Open {
    sessions: Arc<Sessions>,
    /// The session.
    pub session: Arc<Session>,
}

impl Drop for Open {
    fn drop(&mut self) {
        self.sessions.release(&self.session);
    }
}

impl Sessions {
    pub fn new(tap: Tap, lossless: bool, stateless_gap: Duration) -> Arc<Sessions> {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        Arc::new(Sessions {
            tap,
            lossless,
            prefix: format!("{ms}-{}", std::process::id()),
            next: AtomicU64::new(1),
            stateless_gap,
            hasher: RandomState::new(),
            maps: Mutex::default(),
        })
    }

    /// A new session. `sample_key` is what sampling decides by: `None` for the tap's own id.
    fn create(&self, kind: &str, key: Key, start: Instant, sample_key: Option<&[u8]>) -> Arc<Session> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let id: Arc<str> = Arc::from(format!("{kind}-{}-{n}", self.prefix));
        let keep = self.tap.begin_session(sample_key.unwrap_or(id.as_bytes()));
        Arc::new(Session {
            id,
            keep,
            start,
            streams: AtomicU32::new(0),
            stamp: Mutex::new(()),
            state: Mutex::new(State {
                open: 0,
                last: start,
                closing: false,
                ended: false,
                key,
            }),
        })
    }

    fn open(self: &Arc<Self>, session: Arc<Session>) -> Open {
        let mut st = lock(&session.state);
        st.open += 1;
        st.last = Instant::now();
        drop(st);
        Open {
            sessions: self.clone(),
            session,
        }
    }

    /// The session of an `Mcp-Session-Id` (a new one if unknown, or if the old one is ending).
    pub fn mcp(self: &Arc<Self>, id: &str, start: Instant) -> Open {
        let mut maps = lock(&self.maps);
        let live = maps.by_mcp.get(id).filter(|s| !lock(&s.state).closing).cloned();
        let s = live.unwrap_or_else(|| {
            // Sampled by the server's Mcp-Session-Id: every tap in front of that server agrees.
            let s = self.create("http", Key::Mcp(id.to_string()), start, Some(id.as_bytes()));
            maps.by_mcp.insert(id.to_string(), s.clone());
            s
        });
        self.open(s)
    }

    /// The stateless group of a client (see the module docs for what identifies one).
    pub fn client(
        self: &Arc<Self>,
        ip: std::net::IpAddr,
        auth: Option<&str>,
        agent: Option<&str>,
        start: Instant,
    ) -> Open {
        let key = self.hasher.hash_one((ip, auth, agent));
        let mut maps = lock(&self.maps);
        let live = maps.by_client.get(&key).filter(|s| !lock(&s.state).closing).cloned();
        let s = live.unwrap_or_else(|| {
            // Sampled by the client's identity, stable across taps (unlike `key`, whose hasher is per process).
            let identity = format!("{ip}\n{}\n{}", auth.unwrap_or(""), agent.unwrap_or(""));
            let s = self.create("stateless", Key::Client(key), start, Some(identity.as_bytes()));
            maps.by_client.insert(key, s.clone());
            s
        });
        self.open(s)
    }

    /// A new legacy HTTP+SSE session (its endpoint is registered when the server announces it).
    pub fn legacy(self: &Arc<Self>, start: Instant) -> Open {
        let s = self.create("sse", Key::Legacy(None), start, None);
        self.open(s)
    }

    /// A new WebSocket session.
    pub fn ws(self: &Arc<Self>, start: Instant) -> Open {
        let s = self.create("ws", Key::Ws, start, None);
        self.open(s)
    }

    /// Posts to `path_and_query` belong to `session` (a legacy endpoint).
    pub fn register_endpoint(&self, path_and_query: &str, session: &Arc<Session>) {
        let mut maps = lock(&self.maps);
        let mut st = lock(&session.state);
        if st.ended || st.closing {
            return;
        }
        st.key = Key::Legacy(Some(path_and_query.to_string()));
        maps.by_endpoint.insert(path_and_query.to_string(), session.clone());
    }

    /// The legacy session whose endpoint is `path_and_query`.
    pub fn endpoint(self: &Arc<Self>, path_and_query: &str) -> Option<Open> {
        let maps = lock(&self.maps);
        let s = maps
            .by_endpoint
            .get(path_and_query)
            .filter(|s| !lock(&s.state).closing)
            .cloned()?;
        // Opened under the maps lock, so the session cannot end in between.
        let open = self.open(s);
        drop(maps);
        Some(open)
    }

    /// Ends `session` once its open exchanges are done.
    pub fn close(&self, session: &Arc<Session>) {
        let mut maps = lock(&self.maps);
        let mut st = lock(&session.state);
        st.closing = true;
        if st.open == 0 {
            self.end(&mut maps, session, &mut st);
        }
    }

    fn release(&self, session: &Arc<Session>) {
        let mut maps = lock(&self.maps);
        let mut st = lock(&session.state);
        st.open = st.open.saturating_sub(1);
        st.last = Instant::now();
        if st.open == 0 && st.closing {
            self.end(&mut maps, session, &mut st);
        }
    }

    fn end(&self, maps: &mut Maps, session: &Arc<Session>, st: &mut State) {
        if st.ended {
            return;
        }
        st.ended = true;
        st.closing = true;
        let same = |s: &Arc<Session>| Arc::ptr_eq(s, session);
        match &st.key {
            Key::Mcp(id) => {
                if maps.by_mcp.get(id).is_some_and(same) {
                    maps.by_mcp.remove(id);
                }
            }
            Key::Client(k) => {
                if maps.by_client.get(k).is_some_and(same) {
                    maps.by_client.remove(k);
                }
            }
            Key::Legacy(Some(p)) => {
                if maps.by_endpoint.get(p).is_some_and(same) {
                    maps.by_endpoint.remove(p);
                }
            }
            Key::Legacy(None) | Key::Ws => {}
        }
        self.tap.end_session(session.id.clone());
    }

    /// Ends stateless groups silent for longer than the gap and idle Mcp-Session-Id sessions.
    pub fn sweep(&self) {
        let now = Instant::now();
        let mut maps = lock(&self.maps);
        let mut idle = Vec::new();
        let stale = |s: &Arc<Session>, after: Duration| {
            let st = lock(&s.state);
            st.open == 0 && now.saturating_duration_since(st.last) >= after
        };
        idle.extend(
            maps.by_client
                .values()
                .filter(|s| stale(s, self.stateless_gap))
                .cloned(),
        );
        idle.extend(maps.by_mcp.values().filter(|s| stale(s, MCP_SESSION_IDLE)).cloned());
        for s in idle {
            let mut st = lock(&s.state);
            self.end(&mut maps, &s, &mut st);
        }
    }

    /// Live sessions in the maps (for tests and logs).
    #[cfg(test)]
    pub fn live(&self) -> usize {
        let m = lock(&self.maps);
        m.by_mcp.len() + m.by_client.len() + m.by_endpoint.len()
    }

    /// Stamps and queues a frame of `session`. `at` is when it was seen, if earlier than now (a request held until
    /// its session was known).
    pub fn observe(&self, session: &Session, mut obs: Observed, at: Option<(Instant, i64)>) {
        if !session.keep {
            return;
        }
        let _g = lock(&session.stamp);
        let (when, ts) = at.unwrap_or_else(|| (Instant::now(), mcptape_datasets::human::now_ns()));
        obs.session = session.id.clone();
        obs.ts_ns = ts;
        obs.t_ns = u64::try_from(when.saturating_duration_since(session.start).as_nanos()).unwrap_or(u64::MAX);
        if self.lossless
            && tokio::runtime::Handle::try_current()
                .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
        {
            // Backpressure blocks this worker: tell the runtime so other tasks move elsewhere.
            tokio::task::block_in_place(|| self.tap.observe(obs));
        } else {
            self.tap.observe(obs);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::Log;
    use crate::tap::TapConfig;
    use mcptape_datasets::redact::RedactionRules;
    use mcptape_datasets::{CaptureMeta, WriterOptions};

    #[test]
    fn sessions_end_only_when_their_last_exchange_is_done() {
        let dir = tempfile::tempdir().unwrap();
        let config = TapConfig::new(
            WriterOptions::new(dir.path(), "t", CaptureMeta::new("http", "x")),
            RedactionRules::default(),
        );
        let (tap, writer) = Tap::start(config, Log::stderr()).unwrap();
        let s = Sessions::new(tap.clone(), false, Duration::ZERO);
        let now = Instant::now();
        let a = s.mcp("abc", now);
        let b = s.mcp("abc", now);
        assert!(Arc::ptr_eq(&a.session, &b.session));
        s.close(&a.session);
        // Closing: a new request with the same id starts a new session.
        let c = s.mcp("abc", now);
        assert!(!Arc::ptr_eq(&a.session, &c.session));
        drop((a, b));
        let ip = std::net::IpAddr::from([127, 0, 0, 1]);
        let g1 = s.client(ip, Some("Bearer x"), Some("ua"), now);
        let g2 = s.client(ip, Some("Bearer y"), Some("ua"), now);
        assert!(!Arc::ptr_eq(&g1.session, &g2.session));
        let g3 = s.client(ip, Some("Bearer x"), Some("ua"), now);
        assert!(Arc::ptr_eq(&g1.session, &g3.session));
        drop((g1, g3));
        s.sweep();
        // g1's group ended (gap 0, nothing open); g2 is still open; c is live.
        assert_eq!(s.live(), 2);
        let l = s.legacy(now);
        s.register_endpoint("/message?sessionId=1", &l.session);
        assert!(s.endpoint("/message?sessionId=1").is_some());
        s.close(&l.session);
        assert!(s.endpoint("/message?sessionId=1").is_none());
        drop((c, g2, l));
        tap.shutdown();
        drop((tap, s));
        writer.finish();
    }

    /// Records 1,000 sessions through two taps sampling 10%, rotating by size on one of them.
    fn sampled_capture(dir: &std::path::Path, rotate: bool) -> (Vec<mcptape_datasets::Frame>, u64) {
        use bytes::Bytes;
        use mcptape_datasets::{Direction, Transport};
        let mut config = TapConfig::new(
            WriterOptions::new(dir, "t", CaptureMeta::new("http", "x")),
            RedactionRules::default(),
        );
        config.lossless = true;
        config.sample = crate::sample::Sampler::new(0.1).unwrap();
        if rotate {
            config.rotation.size = Some(4096);
        }
        let (tap, writer) = Tap::start(config, Log::stderr()).unwrap();
        let s = Sessions::new(tap.clone(), true, Duration::ZERO);
        for i in 0..1000 {
            let open = s.mcp(&format!("server-assigned-{i}"), Instant::now());
            for (n, dir) in [Direction::C2s, Direction::S2c, Direction::C2s, Direction::S2c]
                .into_iter()
                .enumerate()
            {
                let body = match dir {
                    Direction::C2s => {
                        format!(r#"{{"jsonrpc":"2.0","id":{n},"method":"tools/call","params":{{"s":{i}}}}}"#)
                    }
                    Direction::S2c => format!(r#"{{"jsonrpc":"2.0","id":{},"result":{{"s":{i}}}}}"#, n - 1),
                };
                let obs = Observed {
                    session: open.session.id.clone(),
                    stream_id: 1,
                    direction: dir,
                    transport: Transport::Http,
                    lifecycle: None,
                    payload: Bytes::from(body),
                    ts_ns: 0,
                    t_ns: 0,
                    http: None,
                    mcp_session: Some(format!("server-assigned-{i}")),
                    protocol_version: None,
                };
                s.observe(&open.session, obs, None);
            }
            s.close(&open.session);
        }
        tap.shutdown();
        drop((tap, s));
        let summary = writer.finish();
        assert_eq!(summary.dropped, 0);
        let scan = mcptape_datasets::Scan::new(&[dir.to_path_buf()]).unwrap();
        let sampled_out: u64 = scan
            .metas()
            .unwrap()
            .iter()
            .map(|(_, m, _)| m.sampled_out_sessions)
            .sum();
        (scan.frames().unwrap(), sampled_out)
    }

    #[test]
    fn sampling_ten_percent_of_1000_sessions_keeps_whole_sessions_and_two_taps_agree() {
        use std::collections::{BTreeMap, BTreeSet};
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (fa, out_a) = sampled_capture(a.path(), false);
        let (fb, out_b) = sampled_capture(b.path(), true);
        let kept = |frames: &[mcptape_datasets::Frame]| {
            // Kept sessions by the (hashed) Mcp-Session-Id, with their seqs in order.
            let mut m: BTreeMap<String, Vec<u64>> = BTreeMap::new();
            for f in frames {
                m.entry(f.mcp_session.clone().unwrap()).or_default().push(f.seq);
            }
            for seqs in m.values_mut() {
                seqs.sort_unstable();
                assert_eq!(seqs, &vec![0, 1, 2, 3], "a kept session is recorded whole");
            }
            m.into_keys().collect::<BTreeSet<_>>()
        };
        let (ka, kb) = (kept(&fa), kept(&fb));
        assert_eq!(ka, kb, "both taps keep the same sessions");
        // The keys are fixed, so this count is too; it must be near 10%.
        assert!((60..=140).contains(&ka.len()), "kept {}", ka.len());
        assert_eq!(
            out_a,
            1000 - ka.len() as u64,
            "sampled-out sessions are counted in the metadata"
        );
        assert_eq!(out_b, out_a, "per-segment counts add up to the same total");
        let segments = mcptape_datasets::scan::discover(&[b.path().to_path_buf()]).unwrap();
        assert!(segments.len() > 1, "the second tap rotated");
        assert!(segments.iter().all(|p| p.to_string_lossy().contains("/date=")));
    }
}

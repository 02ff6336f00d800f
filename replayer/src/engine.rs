//! The session engine: replays one [`Script`] over a [`Link`] and compares what comes back.
//!
//! The client's messages go out in recorded order, each after the live answers it waited for in the recording and
//! no earlier than its (scaled) recorded time. Whatever the server sends meanwhile is handled at once: answers are
//! stored and compared, the server's own requests get the client's recorded answers under the live ids, and
//! notifications are counted. No wait is unbounded: a missing answer is reported and the session goes on.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use mcptape_datasets::Kind;
use mcptape_datasets::wire::envelope::{Envelope, classify};
use mcptape_reports::replay::{AnswerDiff, Counts, SessionReport};
use serde_json::Value;

use crate::compare::{Ignore, Rewrites, diff};
use crate::link::{Incoming, Link};
use crate::script::Script;

/// How fast to send.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// At the recorded offsets.
    Recorded,
    /// As fast as causality allows.
    Max,
    /// The recorded offsets divided by this factor.
    Scaled(f64),
}

impl std::str::FromStr for Pace {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "recorded" => Ok(Pace::Recorded),
            "max" => Ok(Pace::Max),
            x => x
                .strip_suffix('x')
                .and_then(|n| n.parse::<f64>().ok())
                .filter(|n| *n > 0.0 && n.is_finite())
                .map(Pace::Scaled)
                .ok_or_else(|| format!("--pace {x:?}: expected recorded, max or a factor like 2x")),
        }
    }
}

/// Timing hooks, for load runs: called as answers arrive (or fail to).
pub trait Observer: Send + Sync {
    /// A live answer to a request sent at `sent`.
    fn answered(&self, method: &str, sent: Instant, answered: Instant, kind: Kind, error_code: Option<i32>);
    /// A request whose answer never came (timeout or the link ended).
    fn unanswered(&self, method: &str, sent: Instant, why: Unanswered);
}

/// Why a request went unanswered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unanswered {
    /// No answer within the timeout.
    Timeout,
    /// The link ended first.
    Closed,
}

/// Engine settings.
#[derive(Clone)]
pub struct Options {
    /// Pacing.
    pub pace: Pace,
    /// Longest wait for any one answer.
    pub timeout: Duration,
    /// What to leave out of comparisons.
    pub ignore: Ignore,
    /// Differences kept per answer.
    pub diff_limit: usize,
    /// Compare answers with the recording (a load run without `--check` only counts them).
    pub compare: bool,
    /// How long to keep listening after the last answer, for trailing server messages.
    pub linger: Duration,
    /// Timing hooks.
    pub observer: Option<std::sync::Arc<dyn Observer>>,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("pace", &self.pace)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

struct Run<'a> {
    script: &'a Script,
    opts: &'a Options,
    live: HashMap<String, (Bytes, Kind)>,
    server_seen: HashMap<String, usize>,
    notifications: BTreeMap<String, u64>,
    extra_server_requests: BTreeMap<String, u64>,
    rewrites: Rewrites,
    closed: Option<String>,
    /// When each request went out, for the observer.
    sent_at: HashMap<String, (Instant, String)>,
    /// The live transport session id, masked in comparisons.
    live_session: Option<String>,
}

/// Replays one session over a fresh link, closes it, and reports. Never hangs longer than the script's waits times
/// the timeout.
pub async fn replay_session(script: &Script, mut link: Link, opts: &Options) -> SessionReport {
    let report = run_session(script, &mut link, opts).await;
    link.close(Duration::from_secs(3)).await;
    report
}

/// Replays one session over `link` and leaves it open, so a caller can run the next session on the same
/// connection or child process (a load test's stdio users).
pub async fn run_session(script: &Script, link: &mut Link, opts: &Options) -> SessionReport {
    let started = Instant::now();
    let (run, sent) = drive(script, link, opts).await;
    run.report(&sent, started.elapsed())
}

/// What a load test keeps of a session: the counts behind [`SessionReport`]'s status, without its per-method
/// maps and diffs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Why the session failed (the status [`SessionReport`] would give is `failed`).
    pub failed: Option<String>,
    /// Live answers that differed from the recorded ones (0 unless [`Options::compare`]).
    pub differed: u64,
}

/// Like [`run_session`], returning only a [`Summary`] (the same judgement, none of the report's allocations).
pub async fn run_session_summary(script: &Script, link: &mut Link, opts: &Options) -> Summary {
    let (run, sent) = drive(script, link, opts).await;
    run.summary(&sent)
}

/// Sends the script's messages and collects the answers; returns the run and the (id, method) of requests sent.
async fn drive<'a>(script: &'a Script, link: &mut Link, opts: &'a Options) -> (Run<'a>, Vec<(String, String)>) {
    let started = Instant::now();
    let mut run = Run {
        script,
        opts,
        live: HashMap::new(),
        server_seen: HashMap::new(),
        notifications: BTreeMap::new(),
        extra_server_requests: BTreeMap::new(),
        rewrites: Rewrites::default(),
        closed: None,
        sent_at: HashMap::new(),
        live_session: None,
    };
    let mut sent: Vec<(String, String)> = Vec::new(); // (id, method) of requests sent
    for step in &script.steps {
        if run.closed.is_some() {
            break;
        }
        // Causality: the answers the client had when it sent this.
        let deadline = Instant::now() + opts.timeout;
        for id in &step.wait_for {
            run.wait_for(link, id, deadline).await;
        }
        // Pacing.
        let at = match opts.pace {
            Pace::Max => None,
            Pace::Recorded => Some(started + Duration::from_nanos(step.t_ns)),
            Pace::Scaled(k) => Some(started + Duration::from_secs_f64(step.t_ns as f64 / 1e9 / k)),
        };
        if let Some(at) = at {
            run.pump_until(link, at).await;
        }
        if run.closed.is_some() {
            break;
        }
        let payload = run.rewrite(&step.payload);
        if let (Kind::Request, Some(id)) = (step.kind, &step.rpc_id) {
            sent.push((id.clone(), step.method.clone().unwrap_or_default()));
            if opts.observer.is_some() {
                run.sent_at
                    .insert(id.clone(), (Instant::now(), step.method.clone().unwrap_or_default()));
            }
        }
        link.send(payload);
    }
    // The answers still due.
    let deadline = Instant::now() + opts.timeout;
    for (id, _) in &sent {
        if run.closed.is_some() {
            break;
        }
        if script.answers.contains_key(id) {
            run.wait_for(link, id, deadline).await;
        }
    }
    // Server requests the recording had but the live server has not sent yet (some come on a timer).
    let deadline = Instant::now() + opts.timeout;
    while run.closed.is_none() && run.server_requests_outstanding() && Instant::now() < deadline {
        run.pump_until(link, (Instant::now() + Duration::from_millis(20)).min(deadline))
            .await;
    }
    // A short grace for trailing server messages.
    if !opts.linger.is_zero() {
        run.pump_until(link, Instant::now() + opts.linger).await;
    }
    run.live_session = link.session_id();
    (run, sent)
}

/// How one live answer compares with the recording.
enum Judged {
    Matched,
    /// With the differences found (none when one side is not JSON).
    Differed(Vec<mcptape_reports::replay::Difference>),
    Missing,
    Extra,
    /// Neither recorded nor live (a request whose answer the recording does not have, unanswered).
    Nothing,
}

/// Whether a recorded answer carries a value a live server mints (a cheap byte search before any parse).
fn mints(payload: &[u8]) -> bool {
    static FINDERS: std::sync::OnceLock<Vec<memchr::memmem::Finder<'static>>> = std::sync::OnceLock::new();
    FINDERS
        .get_or_init(|| {
            crate::compare::MINTED
                .iter()
                .map(|k| memchr::memmem::Finder::new(format!("\"{k}\"").as_bytes()).into_owned())
                .collect()
        })
        .iter()
        .any(|f| f.find(payload).is_some())
}

/// `msg` with its top-level `id` value replaced by `id` (JSON text), every other byte kept.
pub fn with_id(msg: &[u8], id: &str) -> Option<Bytes> {
    let mut span = None;
    mcptape_datasets::wire::json::scan_members(msg, 1, |path, s, _| {
        if path == [b"id".as_slice()] {
            span = Some(s);
        }
    })
    .ok()?;
    let s = span?;
    let mut out = Vec::with_capacity(msg.len() + id.len());
    out.extend_from_slice(&msg[..s.start]);
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(&msg[s.end..]);
    Some(Bytes::from(out))
}

impl Run<'_> {
    /// Pumps until the live answer to `id` is in; false on timeout or close.
    async fn wait_for(&mut self, link: &mut Link, id: &str, deadline: Instant) -> bool {
        while !self.live.contains_key(id) {
            if self.closed.is_some() {
                return false;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match link.recv_for(left).await {
                Ok(Some(inc)) => self.handle(link, inc),
                Ok(None) => {
                    self.closed.get_or_insert_with(|| "the link ended".into());
                }
                Err(_) => return false,
            }
        }
        true
    }

    async fn pump_until(&mut self, link: &mut Link, at: Instant) {
        while self.closed.is_none() {
            let left = at.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            match link.recv_for(left).await {
                Ok(Some(inc)) => self.handle(link, inc),
                Ok(None) => {
                    self.closed.get_or_insert_with(|| "the link ended".into());
                }
                Err(_) => return,
            }
        }
    }

    fn server_requests_outstanding(&self) -> bool {
        self.script
            .server_requests
            .iter()
            .any(|(m, v)| self.server_seen.get(m).copied().unwrap_or(0) < v.len())
    }

    fn rewrite(&self, payload: &Bytes) -> Bytes {
        if self.rewrites.is_empty() {
            return payload.clone();
        }
        match serde_json::from_slice::<Value>(payload) {
            Ok(mut v) => {
                if self.rewrites.apply(&mut v) {
                    Bytes::from(v.to_string())
                } else {
                    payload.clone()
                }
            }
            Err(_) => payload.clone(),
        }
    }

    fn handle(&mut self, link: &Link, inc: Incoming) {
        match inc {
            Incoming::Closed(why) => {
                self.closed.get_or_insert(why);
            }
            Incoming::Message(bytes) => {
                let env = classify(&bytes);
                if env.kind == Kind::Batch {
                    if let Ok(Value::Array(items)) = serde_json::from_slice::<Value>(&bytes) {
                        for item in items {
                            let b = Bytes::from(item.to_string());
                            let e = classify(&b);
                            self.message(link, b, e);
                        }
                    }
                } else {
                    self.message(link, bytes, env);
                }
            }
        }
    }

    fn message(&mut self, link: &Link, bytes: Bytes, env: Envelope) {
        match env.kind {
            Kind::Response | Kind::Error => {
                let Some(id) = env.rpc_id else { return };
                if let (Some(obs), Some((sent, method))) = (&self.opts.observer, self.sent_at.remove(&id)) {
                    obs.answered(&method, sent, Instant::now(), env.kind, env.error_code);
                }
                if let Some(rec) = self.script.answers.get(&id) {
                    // Only answers that carry a minted value teach anything: skip the parse for the rest.
                    if mints(&rec.payload) {
                        if let (Ok(r), Ok(l)) = (serde_json::from_slice(&rec.payload), serde_json::from_slice(&bytes)) {
                            self.rewrites.learn(&r, &l);
                        }
                    }
                }
                self.live.insert(id, (bytes, env.kind));
            }
            Kind::Request => {
                let method = env.method.unwrap_or_default();
                let n = self.server_seen.entry(method.clone()).or_default();
                let recorded = self.script.server_requests.get(&method).and_then(|v| v.get(*n));
                *n += 1;
                let live_id = env.rpc_id.unwrap_or_else(|| "null".into());
                let answer = match recorded.and_then(|r| r.answer.as_ref()) {
                    // The recorded bytes, with only the id changed: servers may echo what they get.
                    Some(a) => match with_id(a, &live_id) {
                        Some(b) => b,
                        None => return,
                    },
                    None if method == "ping" => {
                        Bytes::from(format!("{{\"jsonrpc\":\"2.0\",\"id\":{live_id},\"result\":{{}}}}"))
                    }
                    None => {
                        *self.extra_server_requests.entry(method.clone()).or_default() += 1;
                        let err = serde_json::json!({"code": -32601, "message": format!("mcptape replay: no recorded answer to {method}")});
                        Bytes::from(format!("{{\"jsonrpc\":\"2.0\",\"id\":{live_id},\"error\":{err}}}"))
                    }
                };
                link.send(answer);
            }
            Kind::Notification => {
                *self.notifications.entry(env.method.unwrap_or_default()).or_default() += 1;
            }
            _ => {}
        }
    }

    /// Tells the observer about the requests still unanswered at the end.
    fn unanswered(&mut self) {
        if let Some(obs) = &self.opts.observer {
            let why = if self.closed.is_some() {
                Unanswered::Closed
            } else {
                Unanswered::Timeout
            };
            for (_, (at, method)) in self.sent_at.drain() {
                obs.unanswered(&method, at, why);
            }
        }
    }

    /// How the live answer to request `id` compares with the recording (the live answer is taken out of
    /// `self.live`), and whether it was a JSON-RPC error.
    fn judge(&mut self, id: &str) -> (Judged, bool) {
        let live = self.live.remove(id);
        let error = live.as_ref().is_some_and(|(_, k)| *k == Kind::Error);
        let judged = match (self.script.answers.get(id), live) {
            (Some(_), Some(_)) if !self.opts.compare => Judged::Matched,
            (Some(rec), Some((bytes, _))) => {
                let (Ok(mut r), Ok(mut l)) = (
                    serde_json::from_slice::<Value>(&rec.payload),
                    serde_json::from_slice::<Value>(&bytes),
                ) else {
                    return (Judged::Differed(Vec::new()), error);
                };
                let recorded_hash = self.script.mcp_session.as_deref().filter(|h| h.starts_with("sha256:"));
                crate::compare::mask_session(&mut r, None, recorded_hash);
                // A mock made from this capture (`mcptape serve`) echoes the recorded id: mask it on both sides.
                crate::compare::mask_session(&mut l, self.live_session.as_deref(), recorded_hash);
                let d = diff(&r, &l, &self.opts.ignore, self.opts.diff_limit);
                if d.is_empty() {
                    Judged::Matched
                } else {
                    Judged::Differed(d)
                }
            }
            (Some(_), None) => Judged::Missing,
            (None, Some(_)) => Judged::Extra,
            (None, None) => Judged::Nothing,
        };
        (judged, error)
    }

    /// The counts of [`Run::report`] summed over methods, and the same verdict, without building the report.
    fn summary(mut self, sent: &[(String, String)]) -> Summary {
        self.unanswered();
        let mut c = Counts::default();
        for (id, _) in sent {
            match self.judge(id).0 {
                Judged::Matched => c.matched += 1,
                Judged::Differed(_) => c.differed += 1,
                Judged::Missing => c.missing += 1,
                Judged::Extra => c.extra += 1,
                Judged::Nothing => {}
            }
        }
        c.extra += self.live.len() as u64;
        for (method, recorded) in &self.script.server_requests {
            let seen = self.server_seen.get(method).copied().unwrap_or(0);
            c.missing += recorded.len().saturating_sub(seen) as u64;
        }
        c.extra += self.extra_server_requests.values().sum::<u64>();
        let failed = self.closed.is_some() && !c.clean();
        Summary {
            failed: if failed { self.closed.take() } else { None },
            differed: c.differed,
        }
    }

    fn report(mut self, sent: &[(String, String)], took: Duration) -> SessionReport {
        self.unanswered();
        let mut methods: BTreeMap<String, Counts> = BTreeMap::new();
        let mut diffs = Vec::new();
        for (id, method) in sent {
            let (judged, error) = self.judge(id);
            let c = methods.entry(method.clone()).or_default();
            if error {
                c.errors += 1;
            }
            let outcome = match judged {
                Judged::Matched => {
                    c.matched += 1;
                    continue;
                }
                Judged::Nothing => continue,
                Judged::Differed(d) => {
                    c.differed += 1;
                    if d.is_empty() {
                        // Not JSON on one side: counted, nothing to show.
                        continue;
                    }
                    diffs.push(AnswerDiff {
                        method: method.clone(),
                        rpc_id: id.clone(),
                        outcome: "differed".into(),
                        differences: d,
                    });
                    continue;
                }
                Judged::Missing => {
                    c.missing += 1;
                    "missing"
                }
                Judged::Extra => {
                    c.extra += 1;
                    "extra"
                }
            };
            diffs.push(AnswerDiff {
                method: method.clone(),
                rpc_id: id.clone(),
                outcome: outcome.into(),
                differences: vec![],
            });
        }
        // Live answers to ids the client never sent.
        for (id, _) in self.live.drain() {
            methods.entry("(unknown)".into()).or_default().extra += 1;
            diffs.push(AnswerDiff {
                method: "(unknown)".into(),
                rpc_id: id,
                outcome: "extra".into(),
                differences: vec![],
            });
        }
        // The server's requests: recorded ones that never came are missing, unrecorded ones extra.
        for (method, recorded) in &self.script.server_requests {
            let seen = self.server_seen.get(method).copied().unwrap_or(0);
            let c = methods.entry(method.clone()).or_default();
            let both = seen.min(recorded.len()) as u64;
            c.matched += both;
            if recorded.len() > seen {
                c.missing += (recorded.len() - seen) as u64;
                diffs.push(AnswerDiff {
                    method: method.clone(),
                    rpc_id: "-".into(),
                    outcome: format!(
                        "missing: the server sent {seen} of {} recorded {method} requests",
                        recorded.len()
                    ),
                    differences: vec![],
                });
            }
        }
        for (method, n) in &self.extra_server_requests {
            methods.entry(method.clone()).or_default().extra += n;
            diffs.push(AnswerDiff {
                method: method.clone(),
                rpc_id: "-".into(),
                outcome: format!("extra: {n} unrecorded server request(s)"),
                differences: vec![],
            });
        }
        let mut notifications = BTreeMap::new();
        for m in self.script.notifications.keys().chain(self.notifications.keys()) {
            let rec = self.script.notifications.get(m).copied().unwrap_or(0);
            let live = self.notifications.get(m).copied().unwrap_or(0);
            notifications.insert(m.clone(), (rec, live));
        }
        let clean = methods.values().all(Counts::clean);
        let status = if self.closed.is_some() && !clean {
            "failed"
        } else if clean {
            "matched"
        } else {
            "differed"
        };
        SessionReport {
            session: self.script.session.clone(),
            status: status.into(),
            reason: if status == "failed" { self.closed.take() } else { None },
            duration_ms: took.as_secs_f64() * 1e3,
            methods,
            notifications,
            diffs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_id_changes_only_the_id() {
        let msg = br#"{ "jsonrpc":"2.0", "result":{"id":"inner","b":1,"a":2}, "id" : 7 }"#;
        let out = with_id(msg, "\"srv-3\"").unwrap();
        assert_eq!(
            &out[..],
            br#"{ "jsonrpc":"2.0", "result":{"id":"inner","b":1,"a":2}, "id" : "srv-3" }"#
        );
        assert!(with_id(b"not json", "1").is_none());
        assert!(with_id(br#"{"result":{}}"#, "1").is_none());
    }

    /// The load test's summary must judge a session exactly as the replay report does.
    #[test]
    fn the_summary_agrees_with_the_report_on_failure_and_differences() {
        use crate::script::RecordedAnswer;
        let answer = |p: &str| RecordedAnswer {
            method: "tools/call".into(),
            payload: Bytes::from(p.to_string()),
            kind: Kind::Response,
            latency_ns: None,
        };
        let mut answers = BTreeMap::new();
        answers.insert("1".to_string(), answer(r#"{"jsonrpc":"2.0","id":1,"result":{"a":1}}"#));
        answers.insert("2".to_string(), answer(r#"{"jsonrpc":"2.0","id":2,"result":{"a":1}}"#));
        answers.insert("3".to_string(), answer(r#"{"jsonrpc":"2.0","id":3,"result":{"a":1}}"#));
        let script = Script {
            session: "s".into(),
            transport: mcptape_datasets::Transport::Stdio,
            protocol_version: None,
            mcp_session: None,
            steps: vec![],
            answers,
            server_requests: BTreeMap::new(),
            notifications: BTreeMap::new(),
            skipped_invalid: 0,
        };
        let sent: Vec<(String, String)> = ["1", "2", "3"]
            .iter()
            .map(|id| (id.to_string(), "tools/call".to_string()))
            .collect();
        // (live answers by id, closed, compare)
        type Case = (Vec<(&'static str, &'static str)>, Option<&'static str>, bool);
        let same = r#"{"jsonrpc":"2.0","id":1,"result":{"a":1}}"#;
        let other = r#"{"jsonrpc":"2.0","id":2,"result":{"a":2}}"#;
        let cases: Vec<Case> = vec![
            (vec![("1", same), ("2", same), ("3", same)], None, true),
            (vec![("1", same), ("2", other), ("3", same)], None, true),
            (vec![("1", same), ("2", other), ("3", same)], None, false),
            (vec![("1", same), ("2", other)], Some("the link ended"), true),
            (
                vec![("1", same), ("2", same), ("3", same)],
                Some("the link ended"),
                true,
            ),
            (
                vec![("1", same), ("2", same), ("3", same), ("9", same)],
                Some("gone"),
                false,
            ),
            (vec![("1", same)], Some("gone"), false),
        ];
        for (live, closed, compare) in cases {
            let opts = Options {
                pace: Pace::Max,
                timeout: Duration::from_secs(1),
                ignore: Ignore::default(),
                diff_limit: 10,
                compare,
                linger: Duration::ZERO,
                observer: None,
            };
            let run = || Run {
                script: &script,
                opts: &opts,
                live: live
                    .iter()
                    .map(|(id, p)| (id.to_string(), (Bytes::from(p.to_string()), Kind::Response)))
                    .collect(),
                server_seen: HashMap::new(),
                notifications: BTreeMap::new(),
                extra_server_requests: BTreeMap::new(),
                rewrites: Rewrites::default(),
                closed: closed.map(str::to_string),
                sent_at: HashMap::new(),
                live_session: None,
            };
            let report = run().report(&sent, Duration::ZERO);
            let summary = run().summary(&sent);
            let case = format!("{live:?} closed={closed:?} compare={compare}");
            assert_eq!(summary.failed.is_some(), report.status == "failed", "{case}");
            assert_eq!(summary.failed, report.reason, "{case}");
            let differed: u64 = report.methods.values().map(|c| c.differed).sum();
            assert_eq!(summary.differed, differed, "{case}");
        }
    }

    #[test]
    fn pace_parses() {
        assert_eq!("max".parse::<Pace>().unwrap(), Pace::Max);
        assert_eq!("recorded".parse::<Pace>().unwrap(), Pace::Recorded);
        assert_eq!("2.5x".parse::<Pace>().unwrap(), Pace::Scaled(2.5));
        assert!("0x".parse::<Pace>().is_err());
        assert!("fast".parse::<Pace>().is_err());
    }
}

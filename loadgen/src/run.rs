//! The scheduler: virtual users running recorded sessions, closed or open model, and what each measures.
//!
//! Closed model: N users, each running sessions back to back. Open model: sessions *arrive* on a schedule
//! (constant or Poisson, at rate R) and wait for a free user; a slow target makes arrivals queue, never slows
//! them, and every request's latency is also measured from when its session was due (coordinated omission
//! corrected): intended = sent − how late its session started.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mcptape_datasets::Kind;
use mcptape_replayer::engine::{Observer, Options, Unanswered, run_session_summary};
use mcptape_replayer::link::{HttpConnection, Link, Target};
use mcptape_replayer::script::Script;

use crate::stats::{Outcome, Phase, Recorder};

/// How sessions are started.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Model {
    /// N users back to back.
    Closed {
        /// Users.
        users: u32,
    },
    /// Sessions arrive at `rate` per second and wait for one of `users`.
    Open {
        /// Sessions per second.
        rate: f64,
        /// Poisson arrivals instead of evenly spaced ones.
        poisson: bool,
        /// Users (the most sessions in flight).
        users: u32,
    },
}

/// Everything a run needs.
#[derive(Clone)]
pub struct Plan {
    /// The recorded sessions.
    pub scripts: Arc<Vec<Script>>,
    /// Which script the k-th session runs.
    pub pick: Arc<dyn Fn(u64) -> usize + Send + Sync>,
    /// Target per user (templates already expanded).
    pub targets: Arc<dyn Fn(u32) -> Target + Send + Sync>,
    /// The model.
    pub model: Model,
    /// Ramp-up (not measured).
    pub ramp: Duration,
    /// Warm-up after the ramp (not measured).
    pub warmup: Duration,
    /// The measured window.
    pub duration: Duration,
    /// Stop after this many sessions in all (across shards) instead of at the end of the window.
    pub sessions: Option<u64>,
    /// This shard and the shard count.
    pub shard: (u32, u32),
    /// Engine options (pace, timeout, compare).
    pub engine: Options,
    /// Seed of the Poisson arrivals.
    pub seed: u64,
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plan")
            .field("scripts", &self.scripts.len())
            .field("model", &self.model)
            .field("duration", &self.duration)
            .field("sessions", &self.sessions)
            .field("shard", &self.shard)
            .finish_non_exhaustive()
    }
}

/// What the scheduler saw of itself.
#[derive(Debug, Default, Clone)]
pub struct SelfCheck {
    /// Open model: arrivals that waited longer than 100 ms for a free user.
    pub late_arrivals: u64,
    /// The worst such wait.
    pub worst_wait: Duration,
    /// Sessions run.
    pub sessions: u64,
}

/// A user's observer: its sessions run one at a time, each with its own lateness.
struct SessionObserver {
    rec: Arc<Recorder>,
    /// How late the current session started, ns.
    lateness_ns: AtomicU64,
}

impl SessionObserver {
    fn lateness(&self) -> Duration {
        Duration::from_nanos(self.lateness_ns.load(Ordering::Relaxed))
    }
}

impl Observer for SessionObserver {
    fn answered(&self, method: &str, sent: Instant, answered: Instant, kind: Kind, error_code: Option<i32>) {
        let outcome = match (kind, error_code) {
            (Kind::Error, Some(c)) => Outcome::JsonRpcError(c),
            (Kind::Error, None) => Outcome::JsonRpcError(0),
            _ => Outcome::Ok,
        };
        let intended = sent.checked_sub(self.lateness()).unwrap_or(sent);
        self.rec.request(method, intended, sent, answered, outcome);
        if matches!(method, "initialize" | "server/discover") {
            self.rec.phase(Phase::Handshake, sent, answered);
        }
    }

    fn unanswered(&self, method: &str, sent: Instant, why: Unanswered) {
        let intended = sent.checked_sub(self.lateness()).unwrap_or(sent);
        let outcome = match why {
            Unanswered::Timeout => Outcome::Timeout,
            Unanswered::Closed => Outcome::Transport,
        };
        self.rec.request(method, intended, sent, Instant::now(), outcome);
    }
}

/// The error class of a session that failed: `http_503` when the link reported an HTTP status, else `transport`.
pub fn failure_class(reason: &str) -> String {
    reason
        .split("HTTP ")
        .nth(1)
        .and_then(|rest| rest.get(..3))
        .filter(|code| code.bytes().all(|b| b.is_ascii_digit()))
        .map_or_else(|| "transport".to_string(), |code| format!("http_{code}"))
}

/// What a user keeps from one session to the next.
struct Kept {
    /// stdio: the open link (the child process).
    link: Option<Link>,
    /// HTTP, sequential sessions: the user's own HTTP/1.1 connection.
    http: Option<HttpConnection>,
    /// The engine options with this user's observer (made once, not per session).
    opts: Options,
    observer: Arc<SessionObserver>,
}

impl Kept {
    fn new(plan: &Plan, rec: &Arc<Recorder>) -> Kept {
        let observer = Arc::new(SessionObserver {
            rec: rec.clone(),
            lateness_ns: AtomicU64::new(0),
        });
        let mut opts = plan.engine.clone();
        opts.observer = Some(observer.clone());
        Kept {
            link: None,
            http: None,
            opts,
            observer,
        }
    }

    async fn close(self) {
        if let Some(l) = self.link {
            l.close(Duration::from_secs(3)).await;
        }
    }
}

/// A link for `script`: sequential sessions are driven inline on the user's own connection (no relay task, no
/// pool), the rest through the usual link.
async fn open(target: &Target, script: &Script, kept: &mut Kept) -> Result<Link, String> {
    let version = script.protocol_version.as_deref();
    if script.is_sequential() {
        Link::open_sequential(target, version, kept.http.take()).await
    } else {
        Link::open(target, version).await
    }
}

/// Runs one session for user `user`, due at `intended`. `kept` is what the user keeps: stdio users their child
/// process; HTTP users open a new MCP session each time, sequential ones on their own kept connection.
async fn session(plan: &Plan, rec: &Arc<Recorder>, target: &Target, k: u64, intended: Instant, kept: &mut Kept) {
    let script = &plan.scripts[(plan.pick)(k) % plan.scripts.len()];
    let start = Instant::now();
    let lateness = start.saturating_duration_since(intended);
    let reuse = matches!(target, Target::Stdio(_));
    let mut link = match kept.link.take() {
        Some(l) => l,
        None => match open(target, script, kept).await {
            Ok(l) => {
                rec.phase(Phase::Connect, start, Instant::now());
                l
            }
            Err(e) => {
                rec.error_at(&failure_class(&e), Instant::now());
                return;
            }
        },
    };
    kept.observer.lateness_ns.store(
        u64::try_from(lateness.as_nanos()).unwrap_or(u64::MAX),
        Ordering::Relaxed,
    );
    let summary = run_session_summary(script, &mut link, &kept.opts).await;
    rec.phase(Phase::Session, intended, Instant::now());
    let failed = summary.failed.is_some();
    if let Some(reason) = &summary.failed {
        rec.error_at(&failure_class(reason), Instant::now());
    }
    for _ in 0..summary.differed {
        rec.error_at("mismatch", Instant::now());
    }
    if reuse && !failed {
        kept.link = Some(link);
    } else {
        kept.http = link.close_keeping(Duration::from_secs(3)).await;
    }
}

/// Runs the plan; returns when the window (or the session count) is done and in-flight sessions have ended.
pub async fn run(plan: Plan, rec: Arc<Recorder>, start: Instant) -> SelfCheck {
    let end = start + plan.ramp + plan.warmup + plan.duration;
    let (shard, shards) = plan.shard;
    let counter = Arc::new(AtomicU64::new(0));
    let mut check = SelfCheck::default();
    match plan.model {
        Model::Closed { users } => {
            let mut tasks = Vec::new();
            // This shard's users: every shards-th, from its index.
            let mine: Vec<u32> = (0..users).filter(|u| u % shards == shard).collect();
            let n = mine.len().max(1) as u32;
            for (i, user) in mine.into_iter().enumerate() {
                let (plan, rec, counter) = (plan.clone(), rec.clone(), counter.clone());
                let delay = plan.ramp.mul_f64(i as f64 / n as f64);
                tasks.push(tokio::spawn(async move {
                    tokio::time::sleep_until((start + delay).into()).await;
                    let target = (plan.targets)(user);
                    let mut kept = Kept::new(&plan, &rec);
                    loop {
                        let now = Instant::now();
                        if now >= end {
                            break;
                        }
                        // Session numbers are global: this shard runs k ≡ shard (mod shards).
                        let k = counter.fetch_add(1, Ordering::Relaxed) * shards as u64 + shard as u64;
                        if plan.sessions.is_some_and(|max| k >= max) {
                            break;
                        }
                        session(&plan, &rec, &target, k, now, &mut kept).await;
                    }
                    kept.close().await;
                }));
            }
            for t in tasks {
                let _ = t.await;
            }
            check.sessions = counter.load(Ordering::Relaxed);
        }
        Model::Open { rate, poisson, users } => {
            let (tx, rx) = async_channel(users as usize * 4);
            let rx = Arc::new(tokio::sync::Mutex::new(rx));
            let mut tasks = Vec::new();
            for user in (0..users).filter(|u| u % shards == shard) {
                let (plan, rec, rx) = (plan.clone(), rec.clone(), rx.clone());
                tasks.push(tokio::spawn(async move {
                    let mut waits = (0u64, Duration::ZERO);
                    let target = (plan.targets)(user);
                    let mut kept = Kept::new(&plan, &rec);
                    loop {
                        let next = rx.lock().await.recv().await;
                        let Some((k, due)) = next else { break };
                        let wait = Instant::now().saturating_duration_since(due);
                        if wait > Duration::from_millis(100) {
                            waits.0 += 1;
                            waits.1 = waits.1.max(wait);
                        }
                        session(&plan, &rec, &target, k, due, &mut kept).await;
                    }
                    kept.close().await;
                    waits
                }));
            }
            // Arrivals: evenly spaced or Poisson, the rate ramping up linearly over the ramp; this shard takes
            // every shards-th arrival.
            let mut rng = plan.seed.max(1);
            let mut t = 0.0f64;
            let mut k = 0u64;
            let ramp = plan.ramp.as_secs_f64();
            loop {
                let gap = if poisson {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    let u = ((rng >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
                    -u.ln() / rate
                } else {
                    1.0 / rate
                };
                // During the ramp the rate grows from 0: stretch the gap by rate / current rate.
                let gap = if t < ramp {
                    gap / ((t + gap) / ramp).clamp(0.05, 1.0)
                } else {
                    gap
                };
                t += gap;
                let due = start + Duration::from_secs_f64(t);
                if due >= end || plan.sessions.is_some_and(|max| k >= max) {
                    break;
                }
                if k % shards as u64 == shard as u64 {
                    tokio::time::sleep_until(due.into()).await;
                    if tx.send((k, due)).await.is_err() {
                        break;
                    }
                }
                k += 1;
            }
            drop(tx);
            for t in tasks {
                if let Ok((late, worst)) = t.await {
                    check.late_arrivals += late;
                    check.worst_wait = check.worst_wait.max(worst);
                }
            }
            check.sessions = k.div_ceil(shards as u64);
        }
    }
    check
}

/// An arrival: the session number and when it was due.
type Arrival = (u64, Instant);

/// A bounded multi-consumer queue of arrivals (tokio's mpsc behind a shared receiver).
fn async_channel(cap: usize) -> (tokio::sync::mpsc::Sender<Arrival>, tokio::sync::mpsc::Receiver<Arrival>) {
    // Unbounded in effect: arrivals must never wait for users (that is the point of the open model); the bound
    // only keeps a hopelessly slow target from growing memory without limit.
    tokio::sync::mpsc::channel(cap.max(1) * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_classed_by_http_status_or_transport() {
        assert_eq!(
            failure_class("POST http://x/mcp: HTTP 503 Service Unavailable"),
            "http_503"
        );
        assert_eq!(failure_class("connection refused"), "transport");
        assert_eq!(failure_class("HTTP xyz"), "transport");
    }
}

//! The recorder the virtual users feed: per method, the latency from the intended send time (corrected) and
//! from the actual send time (service), error classes, session phases, and a per-second series.
//!
//! Why it is built this way:
//! - Memory does not grow with the run: every latency goes into a fixed-size HdrHistogram; the only thing that
//!   grows is the series, one [`SecondPoint`] per second (its 2-digit histogram is a few hundred bytes). Only the
//!   last few seconds are kept as live histograms; older ones are encoded and dropped.
//! - The hot path ([`Recorder::request`]) takes one lock that is almost never contended: the calling thread's
//!   shard. It finds the method's number in the shard's own table (no allocation once the method is known) and
//!   appends a 32-byte sample to a bounded buffer. A full buffer, a new second, a [`Recorder::snapshot`] or
//!   [`Recorder::finish`] moves the buffered samples into the shared histograms under one lock per batch.
//! - `Instant`s are `std::time::Instant`; tokio's convert with `into_std()`, which keeps paused-time tests
//!   deterministic as long as every time given here comes from tokio's clock.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mcptape_reports::load::{
    HIGHEST_US, Hist, LOWEST_US, MethodReport, SecondPoint, new_histogram, new_series_histogram,
};

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// A result that matched what was expected.
    Ok,
    /// A JSON-RPC error answer with this code (class `jsonrpc_<code>`).
    JsonRpcError(i32),
    /// An HTTP answer with this (failure) status (class `http_<status>`).
    HttpStatus(u16),
    /// No answer in time (class `timeout`).
    Timeout,
    /// The connection failed (class `transport`).
    Transport,
    /// An answer that does not fit the recording, e.g. the wrong shape (class `mismatch`).
    Mismatch,
}

impl Outcome {
    /// Everything but [`Outcome::Ok`].
    pub fn is_error(self) -> bool {
        self != Outcome::Ok
    }

    /// Whether the server answered, so the latency means something: everything but timeouts and transport
    /// failures. Only answered requests go into the latency histograms; all count in `requests` and `errors`.
    pub fn answered(self) -> bool {
        !matches!(self, Outcome::Timeout | Outcome::Transport)
    }

    /// The error class as in the report's `errors`: `jsonrpc_-32603`, `http_503`, `timeout`, `transport`,
    /// `mismatch`; `None` for [`Outcome::Ok`].
    pub fn class(self) -> Option<String> {
        match self {
            Outcome::Ok => None,
            Outcome::JsonRpcError(code) => Some(format!("jsonrpc_{code}")),
            Outcome::HttpStatus(status) => Some(format!("http_{status}")),
            Outcome::Timeout => Some("timeout".into()),
            Outcome::Transport => Some("transport".into()),
            Outcome::Mismatch => Some("mismatch".into()),
        }
    }
}

/// A timed part of a virtual user's session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Opening the transport (TCP/TLS connect, process spawn).
    Connect,
    /// `initialize` .. `notifications/initialized` (or `server/discover`).
    Handshake,
    /// The whole session, connect to close.
    Session,
}

impl Phase {
    /// All phases, in report order.
    pub const ALL: [Phase; 3] = [Phase::Connect, Phase::Handshake, Phase::Session];

    /// The key in the report's `phases`: `connect`, `handshake`, `session`.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Connect => "connect",
            Phase::Handshake => "handshake",
            Phase::Session => "session",
        }
    }
}

/// The state of a run so far, for the live progress line.
#[derive(Debug, Clone, PartialEq)]
pub struct Live {
    /// Time since the window start.
    pub elapsed: Duration,
    /// False while still in warmup (nothing is recorded yet).
    pub measuring: bool,
    /// Requests recorded so far.
    pub requests: u64,
    /// Errors so far, every class (request and session errors).
    pub errors: u64,
    /// Requests per second over the measured part so far.
    pub rate: f64,
    /// Median corrected latency so far, µs (0 before the first answer).
    pub p50_us: u64,
    /// 99th percentile corrected latency so far, µs.
    pub p99_us: u64,
}

/// Everything [`Recorder::finish`] returns, as `(methods, totals, phases, errors, series)`: the parts of a
/// [`mcptape_reports::LoadReport`] the recorder knows.
pub type Finished = (
    BTreeMap<String, MethodReport>,
    MethodReport,
    BTreeMap<String, Hist>,
    BTreeMap<String, u64>,
    Vec<SecondPoint>,
);

/// Samples a shard buffers before moving them into the shared histograms.
const BUFFER: usize = 512;
/// Seconds of the series kept as live histograms; older seconds are encoded into [`SecondPoint`]s.
const OPEN_SECONDS: usize = 3;

/// Collects the measurements of one run. `Send + Sync`: share it with an `Arc`.
pub struct Recorder {
    window_start: Instant,
    warmup_end: Instant,
    shards: Box<[Mutex<Buffer>]>,
    shared: Mutex<Shared>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("warmup", &self.warmup_end.saturating_duration_since(self.window_start))
            .field("shards", &self.shards.len())
            .finish_non_exhaustive()
    }
}

/// One measured request, as buffered by a shard.
#[derive(Debug, Clone, Copy)]
struct Sample {
    method: u32,
    second: u32,
    corrected_us: u64,
    service_us: u64,
    outcome: Outcome,
}

/// A shard: the method numbers it has seen and the samples not yet moved into [`Shared`].
#[derive(Debug, Default)]
struct Buffer {
    methods: HashMap<Box<str>, u32>,
    samples: Vec<Sample>,
    second: u32,
}

/// The histograms and counts every shard's samples end in.
struct Shared {
    names: Vec<Box<str>>,
    numbers: HashMap<Box<str>, u32>,
    methods: Vec<Acc>,
    totals: Acc,
    phases: [Histogram<u64>; 3],
    outcome_errors: BTreeMap<Outcome, u64>,
    other_errors: BTreeMap<String, u64>,
    series: Series,
}

/// Counts and latencies of one method (or all).
struct Acc {
    requests: u64,
    errors: u64,
    corrected: Histogram<u64>,
    service: Histogram<u64>,
}

impl Acc {
    fn new() -> Acc {
        Acc {
            requests: 0,
            errors: 0,
            corrected: new_histogram(),
            service: new_histogram(),
        }
    }

    fn add(&mut self, s: &Sample) {
        self.requests += 1;
        if s.outcome.is_error() {
            self.errors += 1;
        }
        if s.outcome.answered() {
            self.corrected.saturating_record(s.corrected_us);
            self.service.saturating_record(s.service_us);
        }
    }

    fn report(&self, duration_s: f64) -> MethodReport {
        MethodReport::from_parts(self.requests, self.errors, duration_s, &self.corrected, &self.service)
    }
}

/// The per-second series: the last [`OPEN_SECONDS`] seconds as live histograms, the others encoded.
#[derive(Default)]
struct Series {
    open: BTreeMap<u32, Open>,
    closed: BTreeMap<u32, SecondPoint>,
    /// Emptied histograms of closed seconds, reused for new ones.
    spare: Vec<Histogram<u64>>,
}

struct Open {
    requests: u64,
    errors: u64,
    corrected: Histogram<u64>,
}

impl Series {
    /// Counts `requests` and `errors` in `second`, and a corrected latency if there is one.
    fn add(&mut self, second: u32, requests: u64, errors: u64, corrected_us: Option<u64>) {
        let open = match self.open.entry(second) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                let mut corrected = self.spare.pop().unwrap_or_else(new_series_histogram);
                let (mut req, mut err) = (0, 0);
                // A late sample for a second already closed: reopen it.
                if let Some(p) = self.closed.remove(&second) {
                    corrected
                        .add(p.histogram().expect("the recorder decodes what it encoded"))
                        .expect("same bounds");
                    (req, err) = (p.requests, p.errors);
                }
                e.insert(Open {
                    requests: req,
                    errors: err,
                    corrected,
                })
            }
        };
        open.requests += requests;
        open.errors += errors;
        if let Some(us) = corrected_us {
            open.corrected.saturating_record(us);
        }
    }

    /// Closes the oldest open seconds until at most `keep` remain.
    fn trim(&mut self, keep: usize) {
        while self.open.len() > keep {
            let Some((t, mut o)) = self.open.pop_first() else { break };
            self.closed.insert(
                t,
                SecondPoint::from_histogram(u64::from(t), o.requests, o.errors, &o.corrected),
            );
            if self.spare.len() < OPEN_SECONDS {
                o.corrected.reset();
                self.spare.push(o.corrected);
            }
        }
    }
}

impl Shared {
    fn new() -> Shared {
        Shared {
            names: Vec::new(),
            numbers: HashMap::new(),
            methods: Vec::new(),
            totals: Acc::new(),
            phases: [new_histogram(), new_histogram(), new_histogram()],
            outcome_errors: BTreeMap::new(),
            other_errors: BTreeMap::new(),
            series: Series::default(),
        }
    }

    fn number(&mut self, method: &str) -> u32 {
        if let Some(&n) = self.numbers.get(method) {
            return n;
        }
        let n = u32::try_from(self.names.len()).expect("fewer than 4 billion methods");
        self.names.push(method.into());
        self.numbers.insert(method.into(), n);
        self.methods.push(Acc::new());
        n
    }

    fn apply(&mut self, samples: &[Sample]) {
        for s in samples {
            self.methods[s.method as usize].add(s);
            self.totals.add(s);
            if s.outcome.is_error() {
                *self.outcome_errors.entry(s.outcome).or_default() += 1;
            }
            let latency = s.outcome.answered().then_some(s.corrected_us);
            self.series.add(s.second, 1, u64::from(s.outcome.is_error()), latency);
        }
        self.series.trim(OPEN_SECONDS);
    }

    fn other_error(&mut self, class: &str) {
        match self.other_errors.get_mut(class) {
            Some(n) => *n += 1,
            None => {
                self.other_errors.insert(class.to_string(), 1);
            }
        }
    }

    fn error_count(&self) -> u64 {
        self.outcome_errors.values().sum::<u64>() + self.other_errors.values().sum::<u64>()
    }
}

static NEXT_THREAD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's number, for picking a shard.
    static THREAD: usize = NEXT_THREAD.fetch_add(1, Ordering::Relaxed);
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A virtual user that panicked while recording leaves consistent counts behind: keep measuring.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A latency in µs, within the histograms' range.
fn micros(d: Duration) -> u64 {
    d.as_micros().clamp(u128::from(LOWEST_US), u128::from(HIGHEST_US)) as u64
}

fn whole_seconds(d: Duration) -> u32 {
    u32::try_from(d.as_secs()).unwrap_or(u32::MAX)
}

impl Recorder {
    /// A recorder for a run whose series counts seconds from `window_start` and which ignores everything
    /// intended (requests) or started (phases) before `warmup_end`. Pass `warmup_end == window_start` for no
    /// warmup, or `window_start == warmup_end` to start the series at the end of the warmup.
    pub fn new(window_start: Instant, warmup_end: Instant) -> Recorder {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        Recorder::with_shards(window_start, warmup_end, threads.next_power_of_two().clamp(4, 64))
    }

    fn with_shards(window_start: Instant, warmup_end: Instant, shards: usize) -> Recorder {
        let shards = (0..shards.max(1))
            .map(|_| {
                Mutex::new(Buffer {
                    samples: Vec::with_capacity(BUFFER),
                    ..Buffer::default()
                })
            })
            .collect();
        Recorder {
            window_start,
            warmup_end: warmup_end.max(window_start),
            shards,
            shared: Mutex::new(Shared::new()),
        }
    }

    /// Records one request of `method`: meant to go at `intended` (the schedule's time; equal to `sent` in the
    /// closed model), sent at `sent`, answered (or given up) at `answered`. Corrected latency is
    /// `answered - intended`, service latency `answered - sent`, both in µs clamped to 1 µs .. 1 h. Requests
    /// intended before the warmup end are ignored. The series counts it in the second `answered` falls in.
    pub fn request(&self, method: &str, intended: Instant, sent: Instant, answered: Instant, outcome: Outcome) {
        if intended < self.warmup_end {
            return;
        }
        let sample = Sample {
            method: 0,
            second: whole_seconds(answered.saturating_duration_since(self.window_start)),
            corrected_us: micros(answered.saturating_duration_since(intended)),
            service_us: micros(answered.saturating_duration_since(sent)),
            outcome,
        };
        let shard = &self.shards[THREAD.with(|t| *t) % self.shards.len()];
        let mut buffer = lock(shard);
        let buffer = &mut *buffer;
        let method = match buffer.methods.get(method) {
            Some(&n) => n,
            None => {
                let n = lock(&self.shared).number(method);
                buffer.methods.insert(method.into(), n);
                n
            }
        };
        if buffer.samples.len() >= BUFFER || (!buffer.samples.is_empty() && buffer.second != sample.second) {
            self.flush(buffer);
        }
        buffer.second = sample.second;
        buffer.samples.push(Sample { method, ..sample });
    }

    /// Records how long a session phase took. Phases started before the warmup end are ignored.
    pub fn phase(&self, phase: Phase, start: Instant, end: Instant) {
        if start < self.warmup_end {
            return;
        }
        let index = Phase::ALL
            .iter()
            .position(|p| *p == phase)
            .expect("every phase is in ALL");
        lock(&self.shared).phases[index].saturating_record(micros(end.saturating_duration_since(start)));
    }

    /// Counts a session-level error (transport failure, timeout) that is not tied to a request, by class. Counted
    /// whenever it happens (no warmup filter) and not in the series: prefer [`Recorder::error_at`].
    pub fn error(&self, class: &str) {
        lock(&self.shared).other_error(class);
    }

    /// Counts a session-level error that happened at `at`: ignored in warmup, counted in the series' second.
    pub fn error_at(&self, class: &str, at: Instant) {
        if at < self.warmup_end {
            return;
        }
        let second = whole_seconds(at.saturating_duration_since(self.window_start));
        let mut shared = lock(&self.shared);
        shared.other_error(class);
        shared.series.add(second, 0, 1, None);
        shared.series.trim(OPEN_SECONDS);
    }

    /// The run so far, as of now.
    pub fn snapshot(&self) -> Live {
        self.snapshot_at(Instant::now())
    }

    /// The run so far, as of `now` (for a clock other than the system's, e.g. tokio's paused time).
    pub fn snapshot_at(&self, now: Instant) -> Live {
        self.flush_all();
        let shared = lock(&self.shared);
        let measured = now.saturating_duration_since(self.warmup_end).as_secs_f64();
        let requests = shared.totals.requests;
        Live {
            elapsed: now.saturating_duration_since(self.window_start),
            measuring: now >= self.warmup_end,
            requests,
            errors: shared.error_count(),
            rate: if measured > 0.0 {
                requests as f64 / measured
            } else {
                0.0
            },
            p50_us: shared.totals.corrected.value_at_quantile(0.5),
            p99_us: shared.totals.corrected.value_at_quantile(0.99),
        }
    }

    /// Ends the run at `end` (the end of the measured window) and returns `(methods, totals, phases, errors,
    /// series)`. `throughput_rps` is requests over `end - warmup_end`. `phases` has all three keys (empty
    /// histograms for phases never recorded). `series` has a point for every second from the warmup end's to
    /// `end`'s (the first and last may be partial), zeros where nothing happened, plus any later second with data.
    pub fn finish(self, end: Instant) -> Finished {
        self.flush_all();
        let Recorder {
            window_start,
            warmup_end,
            shared,
            ..
        } = self;
        let mut shared = shared.into_inner().unwrap_or_else(PoisonError::into_inner);
        shared.series.trim(0);

        let duration_s = end.saturating_duration_since(warmup_end).as_secs_f64();
        let methods = shared
            .names
            .iter()
            .zip(&shared.methods)
            .map(|(n, a)| (n.to_string(), a.report(duration_s)))
            .collect();
        let totals = shared.totals.report(duration_s);
        let phases = Phase::ALL
            .iter()
            .zip(&shared.phases)
            .map(|(p, h)| (p.name().to_string(), Hist::from_histogram(h)))
            .collect();
        let mut errors = std::mem::take(&mut shared.other_errors);
        for (outcome, n) in &shared.outcome_errors {
            if let Some(class) = outcome.class() {
                *errors.entry(class).or_default() += n;
            }
        }

        let to_end = end.saturating_duration_since(window_start);
        let mut first = u64::from(whole_seconds(warmup_end.saturating_duration_since(window_start)));
        let mut last_excl = to_end.as_secs() + u64::from(to_end.subsec_nanos() > 0);
        if let (Some((&lo, _)), Some((&hi, _))) = (
            shared.series.closed.first_key_value(),
            shared.series.closed.last_key_value(),
        ) {
            first = first.min(u64::from(lo));
            last_excl = last_excl.max(u64::from(hi) + 1);
        }
        let mut closed = std::mem::take(&mut shared.series.closed);
        let series = (first..last_excl)
            .map(|t| {
                u32::try_from(t)
                    .ok()
                    .and_then(|t| closed.remove(&t))
                    .unwrap_or(SecondPoint {
                        t,
                        requests: 0,
                        errors: 0,
                        p50_us: 0,
                        p99_us: 0,
                        hdr: String::new(),
                    })
            })
            .collect();
        (methods, totals, phases, errors, series)
    }

    /// Moves a shard's buffered samples into the shared histograms (the caller holds the shard's lock).
    fn flush(&self, buffer: &mut Buffer) {
        if buffer.samples.is_empty() {
            return;
        }
        lock(&self.shared).apply(&buffer.samples);
        buffer.samples.clear();
    }

    fn flush_all(&self) {
        for shard in &self.shards {
            self.flush(&mut lock(shard));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + MS * ms as u32
    }

    fn equivalent(h: &Hist, q: f64, us: u64) -> bool {
        let h = h.histogram().unwrap();
        h.equivalent(h.value_at_quantile(q), us)
    }

    #[test]
    fn corrected_and_service_latency_from_known_instants() {
        let t0 = Instant::now();
        let r = Recorder::new(t0, t0);
        // Meant at 10 ms, sent late at 15 ms, answered at 25 ms: corrected 15 ms, service 10 ms.
        r.request("tools/call", at(t0, 10), at(t0, 15), at(t0, 25), Outcome::Ok);
        // Closed model: intended == sent.
        r.request("tools/list", at(t0, 30), at(t0, 30), at(t0, 32), Outcome::Ok);
        let (methods, totals, _, errors, _) = r.finish(at(t0, 1000));
        let call = &methods["tools/call"];
        assert_eq!(
            (call.requests, call.errors, call.corrected.count, call.service.count),
            (1, 0, 1, 1)
        );
        assert!(equivalent(&call.corrected, 0.5, 15_000), "{:?}", call.corrected);
        assert!(equivalent(&call.service, 0.5, 10_000), "{:?}", call.service);
        let list = &methods["tools/list"];
        assert!(equivalent(&list.corrected, 0.5, 2_000) && equivalent(&list.service, 0.5, 2_000));
        assert_eq!((totals.requests, totals.corrected.count), (2, 2));
        assert!(equivalent(&totals.corrected, 1.0, 15_000) && equivalent(&totals.service, 1.0, 10_000));
        assert!((totals.throughput_rps - 2.0).abs() < 1e-9);
        assert!(errors.is_empty());
    }

    #[test]
    fn latencies_are_clamped_to_the_histogram_range() {
        let t0 = Instant::now();
        let r = Recorder::new(t0, t0);
        r.request("fast", t0, t0, t0, Outcome::Ok);
        r.request("slow", t0, t0, t0 + Duration::from_secs(7200), Outcome::Ok);
        // Answered "before" it was sent (clock misuse) saturates to the minimum rather than panicking.
        r.request("odd", at(t0, 5), at(t0, 5), at(t0, 1), Outcome::Ok);
        let (m, ..) = r.finish(at(t0, 1000));
        assert_eq!((m["fast"].corrected.min_us, m["fast"].corrected.max_us), (1, 1));
        assert!(
            m["slow"].corrected.max_us >= HIGHEST_US && m["slow"].corrected.max_us < HIGHEST_US + HIGHEST_US / 1000
        );
        assert_eq!(m["odd"].service.max_us, 1);
    }

    #[test]
    fn warmup_is_not_recorded() {
        let t0 = Instant::now();
        let warm = at(t0, 2000);
        let r = Recorder::new(t0, warm);
        r.request("tools/call", at(t0, 1900), at(t0, 1900), at(t0, 2500), Outcome::Ok); // intended in warmup
        r.request(
            "tools/call",
            at(t0, 1999),
            at(t0, 2001),
            at(t0, 2002),
            Outcome::JsonRpcError(-32603),
        );
        r.request("tools/call", warm, warm, at(t0, 2010), Outcome::Ok); // at the warmup end: measured
        r.phase(Phase::Connect, at(t0, 1500), at(t0, 2100));
        r.phase(Phase::Connect, at(t0, 2100), at(t0, 2105));
        r.error_at("transport", at(t0, 1000));
        r.error_at("transport", at(t0, 3000));
        r.error("timeout"); // no time: always counted
        let live = r.snapshot_at(at(t0, 2500));
        assert!(live.measuring);
        assert_eq!((live.requests, live.errors), (1, 2));
        assert!(!r.snapshot_at(at(t0, 1000)).measuring);
        let (methods, totals, phases, errors, series) = r.finish(at(t0, 4000));
        assert_eq!((methods["tools/call"].requests, methods["tools/call"].errors), (1, 0));
        assert_eq!(totals.requests, 1);
        assert!((totals.throughput_rps - 0.5).abs() < 1e-9, "{}", totals.throughput_rps); // 1 request in 2 s
        assert_eq!(phases["connect"].count, 1);
        assert_eq!((phases["handshake"].count, phases["session"].count), (0, 0));
        assert_eq!(errors, BTreeMap::from([("transport".into(), 1), ("timeout".into(), 1)]));
        // The series starts at the warmup end's second.
        let ts: Vec<(u64, u64, u64)> = series.iter().map(|p| (p.t, p.requests, p.errors)).collect();
        assert_eq!(ts, vec![(2, 1, 0), (3, 0, 1)]);
    }

    #[test]
    fn error_classes() {
        let t0 = Instant::now();
        let r = Recorder::new(t0, t0);
        let outcomes = [
            Outcome::Ok,
            Outcome::JsonRpcError(-32603),
            Outcome::JsonRpcError(-32603),
            Outcome::JsonRpcError(-32602),
            Outcome::HttpStatus(503),
            Outcome::Timeout,
            Outcome::Transport,
            Outcome::Mismatch,
        ];
        for (i, o) in outcomes.iter().enumerate() {
            r.request(
                "tools/call",
                at(t0, i as u64),
                at(t0, i as u64),
                at(t0, i as u64 + 3),
                *o,
            );
        }
        r.error("transport");
        let (methods, totals, _, errors, series) = r.finish(at(t0, 1000));
        let expected: BTreeMap<String, u64> = [
            ("jsonrpc_-32603", 2),
            ("jsonrpc_-32602", 1),
            ("http_503", 1),
            ("timeout", 1),
            ("transport", 2),
            ("mismatch", 1),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        assert_eq!(errors, expected);
        let call = &methods["tools/call"];
        assert_eq!((call.requests, call.errors), (8, 7));
        // Timeout and transport failures have no meaningful latency: counted, not in the histograms.
        assert_eq!((call.corrected.count, call.service.count), (6, 6));
        assert_eq!((totals.requests, totals.errors), (8, 7));
        assert_eq!((series[0].requests, series[0].errors), (8, 7));
        assert_eq!(Outcome::Ok.class(), None);
        assert_eq!(Outcome::HttpStatus(429).class().as_deref(), Some("http_429"));
    }

    #[test]
    fn series_buckets_by_the_second_of_the_answer() {
        let t0 = Instant::now();
        let r = Recorder::new(t0, t0);
        for (intended, answered) in [(400, 500), (900, 1200), (1800, 1900), (2950, 3100), (3999, 4000)] {
            r.request(
                "tools/call",
                at(t0, intended),
                at(t0, intended),
                at(t0, answered),
                Outcome::Ok,
            );
        }
        r.request("tools/call", at(t0, 1000), at(t0, 1000), at(t0, 1001), Outcome::Timeout);
        let (.., series) = r.finish(at(t0, 4500));
        let got: Vec<(u64, u64, u64)> = series.iter().map(|p| (p.t, p.requests, p.errors)).collect();
        // Second 2 is empty but present; second 4 is partial.
        assert_eq!(got, vec![(0, 1, 0), (1, 3, 1), (2, 0, 0), (3, 1, 0), (4, 1, 0)]);
        let one = &series[1];
        let h = one.histogram().unwrap();
        assert_eq!(h.len(), 2); // the timeout has no latency
        assert!(
            h.equivalent(one.p50_us, 100_000) && h.equivalent(one.p99_us, 300_000),
            "{one:?}"
        );
        assert_eq!(series[2].hdr, "");
        assert_eq!(
            series[0].histogram().unwrap().sigfig(),
            mcptape_reports::load::SERIES_SIGFIG
        );
    }

    #[test]
    fn series_ends_at_the_end_of_the_window_even_when_quiet() {
        let t0 = Instant::now();
        let r = Recorder::new(t0, at(t0, 1000));
        r.request("ping", at(t0, 1500), at(t0, 1500), at(t0, 1501), Outcome::Ok);
        let (.., series) = r.finish(at(t0, 5000));
        let ts: Vec<u64> = series.iter().map(|p| p.t).collect();
        assert_eq!(ts, vec![1, 2, 3, 4]);
        assert_eq!(Recorder::new(t0, t0).finish(t0).4, vec![]);
    }

    #[test]
    fn late_samples_reopen_closed_seconds_and_memory_stays_bounded() {
        let t0 = Instant::now();
        let r = Recorder::with_shards(t0, t0, 1);
        r.request("tools/call", at(t0, 100), at(t0, 100), at(t0, 200), Outcome::Ok);
        for s in 1..600u64 {
            r.request(
                "tools/call",
                at(t0, s * 1000),
                at(t0, s * 1000),
                at(t0, s * 1000 + 5),
                Outcome::Ok,
            );
            assert!(lock(&r.shared).series.open.len() <= OPEN_SECONDS);
        }
        // Long after second 0 was closed, one more answer for it.
        r.request("tools/call", at(t0, 100), at(t0, 100), at(t0, 300), Outcome::Mismatch);
        r.snapshot_at(at(t0, 600_000));
        {
            let shared = lock(&r.shared);
            assert!(shared.series.open.len() <= OPEN_SECONDS);
            assert!(shared.series.spare.len() <= OPEN_SECONDS);
            assert_eq!(shared.series.closed.len() + shared.series.open.len(), 600);
        }
        let (_, totals, _, _, series) = r.finish(at(t0, 600_000));
        assert_eq!(series.len(), 600);
        assert_eq!((series[0].requests, series[0].errors), (2, 1));
        assert_eq!(series[0].histogram().unwrap().len(), 2);
        assert_eq!(series.iter().map(|p| p.requests).sum::<u64>(), totals.requests);
    }

    #[test]
    fn snapshot_reports_progress_so_far() {
        let t0 = Instant::now();
        let r = Recorder::new(t0, t0);
        for i in 0..100u64 {
            r.request("tools/call", at(t0, i), at(t0, i), at(t0, i + 1 + i % 10), Outcome::Ok);
        }
        r.error("transport");
        let live = r.snapshot_at(at(t0, 2000));
        assert_eq!(live.elapsed, Duration::from_secs(2));
        assert_eq!((live.requests, live.errors), (100, 1));
        assert!((live.rate - 50.0).abs() < 1e-9);
        let h = new_histogram();
        assert!(
            h.equivalent(live.p50_us, 5_000) || h.equivalent(live.p50_us, 6_000),
            "{live:?}"
        );
        assert!(h.equivalent(live.p99_us, 10_000), "{live:?}");
    }

    #[test]
    fn eight_threads_record_exact_counts() {
        const THREADS: u64 = 8;
        const EACH: u64 = 10_000;
        let t0 = Instant::now();
        let r = Arc::new(Recorder::new(t0, t0));
        let methods = ["tools/call", "tools/list", "resources/read"];
        let handles: Vec<_> = (0..THREADS)
            .map(|thread| {
                let r = Arc::clone(&r);
                std::thread::spawn(move || {
                    for i in 0..EACH {
                        let intended = t0 + Duration::from_micros(i * 500 + thread);
                        let sent = intended + Duration::from_micros(i % 7);
                        let answered = sent + Duration::from_micros(100 + i % 1000);
                        let outcome = if i % 100 == 0 {
                            Outcome::JsonRpcError(-32603)
                        } else {
                            Outcome::Ok
                        };
                        r.request(methods[(i % 3) as usize], intended, sent, answered, outcome);
                        if i % 1000 == 0 {
                            r.phase(Phase::Session, intended, answered);
                            let _ = r.snapshot_at(answered);
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let r = Arc::into_inner(r).unwrap();
        let (methods_out, totals, phases, errors, series) = r.finish(t0 + Duration::from_secs(5));
        assert_eq!(totals.requests, THREADS * EACH);
        assert_eq!(totals.errors, THREADS * EACH / 100);
        assert_eq!(totals.corrected.count, THREADS * EACH);
        assert_eq!(totals.service.count, THREADS * EACH);
        for (i, m) in methods.iter().enumerate() {
            let per_thread = (0..EACH).filter(|x| x % 3 == i as u64).count() as u64;
            let errs_per_thread = (0..EACH).filter(|x| x % 3 == i as u64 && x % 100 == 0).count() as u64;
            assert_eq!(methods_out[*m].requests, THREADS * per_thread, "{m}");
            assert_eq!(methods_out[*m].errors, THREADS * errs_per_thread, "{m}");
            assert_eq!(methods_out[*m].corrected.count, THREADS * per_thread, "{m}");
        }
        assert_eq!(errors["jsonrpc_-32603"], THREADS * EACH / 100);
        assert_eq!(phases["session"].count, THREADS * EACH / 1000);
        assert_eq!(series.iter().map(|p| p.requests).sum::<u64>(), THREADS * EACH);
        assert_eq!(series.iter().map(|p| p.errors).sum::<u64>(), THREADS * EACH / 100);
        let in_hists: u64 = series.iter().map(|p| p.histogram().unwrap().len()).sum();
        assert_eq!(in_hists, THREADS * EACH);
        // Answers span 0 .. ~5.0 s.
        assert_eq!(series.iter().map(|p| p.t).collect::<Vec<_>>(), vec![0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn recorder_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Recorder>();
    }
}

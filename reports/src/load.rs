//! The load report: what `mcptape load` writes and `mcptape report` reads, shows and merges.
//!
//! Why every latency travels as a whole HdrHistogram (V2 + deflate, base64) next to its percentiles: shards of a
//! run are separate processes, often on separate machines, and percentiles do not add. Merging decodes the
//! histograms, adds them and recomputes every percentile, so `merge(shards)` is exactly the report one machine
//! would have written for the union of the samples. The percentiles in the JSON are a convenience for readers
//! (`jq`, dashboards); `merge` never trusts them.
//!
//! Histograms are in microseconds, 1 µs .. 1 h, 3 significant digits ([`new_histogram`]). The per-second
//! histograms of the series use 2 significant digits ([`new_series_histogram`]): a long run has one per second,
//! in memory and in the report, and 1 % is plenty for a plot.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Schema id of load reports written by this version.
pub const SCHEMA: &str = "mcptape.load/1";

/// Lowest trackable latency, µs.
pub const LOWEST_US: u64 = 1;
/// Highest trackable latency, µs (one hour). Longer values are clamped to it.
pub const HIGHEST_US: u64 = 3_600_000_000;
/// Significant digits of every latency histogram but the series'.
pub const SIGFIG: u8 = 3;
/// Significant digits of the per-second histograms in [`SecondPoint::hdr`].
pub const SERIES_SIGFIG: u8 = 2;

/// An empty latency histogram: µs, [`LOWEST_US`] ..= [`HIGHEST_US`], [`SIGFIG`] significant digits, no auto-resize.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(LOWEST_US, HIGHEST_US, SIGFIG).expect("constant histogram bounds are valid")
}

/// An empty per-second histogram: like [`new_histogram`] with [`SERIES_SIGFIG`] significant digits.
pub fn new_series_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(LOWEST_US, HIGHEST_US, SERIES_SIGFIG).expect("constant histogram bounds are valid")
}

/// Why a histogram could not be encoded, decoded or combined.
#[derive(Debug, thiserror::Error)]
pub enum HistError {
    /// `hdr` is not valid base64.
    #[error("histogram is not valid base64: {0}")]
    Base64(#[from] base64::DecodeError),
    /// `hdr` decodes to bytes that are not a V2 (deflate) HdrHistogram.
    #[error("histogram does not decode: {0}")]
    Decode(#[from] hdrhistogram::serialization::DeserializeError),
    /// The histogram could not be serialized.
    #[error("histogram does not encode: {0}")]
    Encode(#[from] hdrhistogram::serialization::V2DeflateSerializeError),
    /// The histogram holds values outside 1 µs .. 1 h (it was not made by mcptape).
    #[error("histogram values exceed mcptape's range (1 µs .. 1 h): {0}")]
    Range(#[from] hdrhistogram::AdditionError),
}

/// Why reports could not be merged. Each message is one line naming the values that disagree.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// Nothing to merge.
    #[error("no reports to merge")]
    Empty,
    /// Two reports use different schema versions.
    #[error("cannot merge reports of different schemas: report 1 is {first:?}, report {index} is {other:?}")]
    Schema {
        /// `schema` of the first report.
        first: String,
        /// `schema` of the disagreeing report.
        other: String,
        /// 1-based position of the disagreeing report.
        index: usize,
    },
    /// Two reports ran different workloads (capture content or model parameters).
    #[error(
        "cannot merge reports of different workloads: report 1 has fingerprint {first}, report {index} has {other} \
         (capture content or load model differ)"
    )]
    Fingerprint {
        /// Fingerprint of the first report.
        first: String,
        /// Fingerprint of the disagreeing report.
        other: String,
        /// 1-based position of the disagreeing report.
        index: usize,
    },
    /// Shards of different splits (`0/2` and `1/3`).
    #[error(
        "cannot merge shards of different splits: report {first_index} is shard {first}, report {index} is shard {other}"
    )]
    ShardCount {
        /// Label of the first sharded report.
        first: String,
        /// 1-based position of the first sharded report.
        first_index: usize,
        /// Label of the disagreeing report.
        other: String,
        /// 1-based position of the disagreeing report.
        index: usize,
    },
    /// The same shard twice (the same file given twice, or two runs of one shard).
    #[error("shard {shard} appears twice: reports {first_index} and {index}")]
    DuplicateShard {
        /// Shard label.
        shard: String,
        /// 1-based position of its first occurrence.
        first_index: usize,
        /// 1-based position of its second occurrence.
        index: usize,
    },
    /// A shard index not below its count.
    #[error("report {index} claims shard {shard}, but shard indexes run from 0 to count - 1")]
    BadShard {
        /// Shard label.
        shard: String,
        /// 1-based position of the report.
        index: usize,
    },
    /// A histogram in a report is damaged.
    #[error("report {index}, {place}: {source}")]
    Histogram {
        /// 1-based position of the report.
        index: usize,
        /// Which histogram (`totals.corrected`, `methods["tools/call"].service`, `series[t=12]`, …).
        place: String,
        /// What is wrong with it.
        source: HistError,
    },
}

/// A whole load run (or the merge of its shards).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadReport {
    /// [`SCHEMA`].
    pub schema: String,
    /// Version of the mcptape that ran it.
    pub tool_version: String,
    /// When the run started (RFC 3339, UTC).
    pub started: String,
    /// Length of the measured window (after warmup), seconds.
    pub duration_s: f64,
    /// The target (URL or command line).
    pub target: String,
    /// What was run.
    pub workload: Workload,
    /// Where it ran. In a merged report: distinct values joined by `, `, cores summed.
    pub machine: Machine,
    /// Which part of a sharded run this is; `None` for an unsharded or merged report.
    #[serde(default)]
    pub shard: Option<Shard>,
    /// Over all methods.
    pub totals: MethodReport,
    /// Per JSON-RPC method.
    pub methods: BTreeMap<String, MethodReport>,
    /// Per session phase: `connect`, `handshake`, `session`.
    pub phases: BTreeMap<String, Hist>,
    /// Error counts by class: `transport`, `timeout`, `http_503`, `jsonrpc_-32603`, `mismatch`, … Request errors
    /// and session-level errors (not tied to a request) alike.
    pub errors: BTreeMap<String, u64>,
    /// One point per second of the run, by the second in which answers arrived.
    pub series: Vec<SecondPoint>,
    /// Self-check findings that make the numbers less trustworthy (schedule lag, CPU saturation).
    pub warnings: Vec<String>,
}

/// What was run: the parameters that must agree for shards to merge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Workload {
    /// The capture paths (informational: not part of the fingerprint, paths differ between machines).
    pub capture: Vec<String>,
    /// Distinct recorded sessions in the capture.
    pub sessions: u64,
    /// `closed` (fixed concurrency) or `open` (fixed arrival rate).
    pub model: String,
    /// Closed model: virtual users.
    pub concurrency: Option<u64>,
    /// Open model: session arrivals per second.
    pub rate: Option<f64>,
    /// Open model: arrival process (`poisson`, `uniform`, …).
    pub arrival: Option<String>,
    /// Pacing within a session (`recorded`, `asap`, `x2`, …).
    pub pace: String,
    /// How sessions are picked (`round-robin`, `weighted`, …).
    pub mix: String,
    /// Ramp-up, seconds.
    pub ramp_s: f64,
    /// Warmup excluded from measurement, seconds.
    pub warmup_s: f64,
    /// [`fingerprint`] of the capture content and the parameters above.
    pub fingerprint: String,
}

/// Where a report was made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    /// Host name.
    pub hostname: String,
    /// Logical CPUs available to the process.
    pub cores: u64,
    /// CPU model.
    pub cpu: String,
    /// Operating system, kernel and architecture.
    pub os: String,
}

/// One part of a sharded run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Shard {
    /// 0-based (as the Kubernetes Indexed Job completion index), below `count`.
    pub index: u32,
    /// How many shards the run was split into.
    pub count: u32,
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// Requests, errors and latencies of one method (or of all).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodReport {
    /// Requests sent in the measured window (answered or not).
    pub requests: u64,
    /// Requests that failed (JSON-RPC error, HTTP status, timeout, transport, mismatch).
    pub errors: u64,
    /// `requests / duration_s`.
    pub throughput_rps: f64,
    /// Latency from the intended send time (corrects coordinated omission). Answered requests only: timeouts and
    /// transport failures are counted in `errors`, not here.
    pub corrected: Hist,
    /// Latency from the actual send time (what the server took, as seen from the client).
    pub service: Hist,
}

impl MethodReport {
    /// From counts and histograms; `throughput_rps` is `requests / duration_s` (0 when `duration_s` is not > 0).
    pub fn from_parts(
        requests: u64,
        errors: u64,
        duration_s: f64,
        corrected: &Histogram<u64>,
        service: &Histogram<u64>,
    ) -> MethodReport {
        MethodReport {
            requests,
            errors,
            throughput_rps: rate(requests, duration_s),
            corrected: Hist::from_histogram(corrected),
            service: Hist::from_histogram(service),
        }
    }

    /// An empty report: no requests, empty histograms.
    pub fn empty() -> MethodReport {
        MethodReport::from_parts(0, 0, 0.0, &new_histogram(), &new_histogram())
    }
}

/// A latency distribution: summary percentiles for readers, and the whole histogram for merging.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hist {
    /// Samples.
    pub count: u64,
    /// Smallest, µs (0 when empty).
    pub min_us: u64,
    /// Median, µs.
    pub p50_us: u64,
    /// 90th percentile, µs.
    pub p90_us: u64,
    /// 99th percentile, µs.
    pub p99_us: u64,
    /// 99.9th percentile, µs.
    pub p999_us: u64,
    /// Largest, µs.
    pub max_us: u64,
    /// Mean, µs.
    pub mean_us: f64,
    /// The histogram: HdrHistogram V2 + deflate, base64 (standard alphabet, padded). Empty string: no samples.
    pub hdr: String,
}

impl Hist {
    /// Summarises and encodes `h`. The percentiles are the histogram's own (highest equivalent value), so a
    /// decoded-and-re-summarised `Hist` equals the original.
    pub fn from_histogram(h: &Histogram<u64>) -> Hist {
        if h.is_empty() {
            return Hist::default();
        }
        Hist {
            count: h.len(),
            min_us: h.min(),
            p50_us: h.value_at_quantile(0.5),
            p90_us: h.value_at_quantile(0.9),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
            mean_us: h.mean(),
            hdr: encode(h).expect("serializing a histogram into memory cannot fail"),
        }
    }

    /// Decodes `hdr` (an empty string is an empty histogram). The result has mcptape's bounds, whatever the
    /// encoded ones, so it can be added to [`new_histogram`]s.
    pub fn histogram(&self) -> Result<Histogram<u64>, HistError> {
        decode(&self.hdr, new_histogram())
    }
}

impl Default for Hist {
    /// No samples.
    fn default() -> Hist {
        Hist {
            count: 0,
            min_us: 0,
            p50_us: 0,
            p90_us: 0,
            p99_us: 0,
            p999_us: 0,
            max_us: 0,
            mean_us: 0.0,
            hdr: String::new(),
        }
    }
}

/// One second of the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecondPoint {
    /// Seconds since the window start (the first and last second may be partial).
    pub t: u64,
    /// Requests answered (or failed) in this second.
    pub requests: u64,
    /// Errors in this second (request errors and session-level errors).
    pub errors: u64,
    /// Median corrected latency of the answers in this second, µs.
    pub p50_us: u64,
    /// 99th percentile corrected latency of the answers in this second, µs.
    pub p99_us: u64,
    /// Corrected latencies of this second as a histogram (same encoding as [`Hist::hdr`], [`SERIES_SIGFIG`]
    /// significant digits), so merged series percentiles are exact too. Empty string: no latencies in this second.
    #[serde(default)]
    pub hdr: String,
}

impl SecondPoint {
    /// A point from its counts and the histogram of its corrected latencies, which is stored (and summarised) at
    /// series precision ([`new_series_histogram`]) whatever its own.
    pub fn from_histogram(t: u64, requests: u64, errors: u64, h: &Histogram<u64>) -> SecondPoint {
        let series_like = h.sigfig() == SERIES_SIGFIG && h.low() == LOWEST_US && h.high() == HIGHEST_US;
        let hist = if series_like {
            Hist::from_histogram(h)
        } else {
            let mut s = new_series_histogram();
            for v in h.iter_recorded() {
                s.saturating_record_n(v.value_iterated_to(), v.count_at_value());
            }
            Hist::from_histogram(&s)
        };
        SecondPoint {
            t,
            requests,
            errors,
            p50_us: hist.p50_us,
            p99_us: hist.p99_us,
            hdr: hist.hdr,
        }
    }

    /// Decodes `hdr` into a [`new_series_histogram`].
    pub fn histogram(&self) -> Result<Histogram<u64>, HistError> {
        decode(&self.hdr, new_series_histogram())
    }
}

/// Encodes a histogram as V2 + deflate, base64; an empty histogram as the empty string.
fn encode(h: &Histogram<u64>) -> Result<String, HistError> {
    if h.is_empty() {
        return Ok(String::new());
    }
    let mut bytes = Vec::new();
    V2DeflateSerializer::new().serialize(h, &mut bytes)?;
    Ok(BASE64.encode(bytes))
}

/// Decodes [`encode`]'s output and adds it to `out` (an empty histogram with mcptape's bounds).
fn decode(hdr: &str, mut out: Histogram<u64>) -> Result<Histogram<u64>, HistError> {
    if hdr.is_empty() {
        return Ok(out);
    }
    let bytes = BASE64.decode(hdr.trim())?;
    let h: Histogram<u64> = Deserializer::new().deserialize(&mut bytes.as_slice())?;
    out.add(&h)?;
    Ok(out)
}

fn rate(requests: u64, duration_s: f64) -> f64 {
    if duration_s > 0.0 {
        requests as f64 / duration_s
    } else {
        0.0
    }
}

/// The workload fingerprint: `sha256:` and the hex SHA-256 of the capture content hash and every model parameter
/// of `workload` (not `capture`, whose paths differ between machines, nor `fingerprint` itself). Shards of one run
/// compute the same value; `merge` refuses reports whose fingerprints differ.
///
/// `capture_content_hash` is any stable digest of the capture's bytes (e.g. SHA-256 over the segment files in
/// path order); it only has to be computed the same way on every shard.
pub fn fingerprint(capture_content_hash: &str, workload: &Workload) -> String {
    let w = workload;
    let canonical = serde_json::json!([
        "mcptape.load.fingerprint/1",
        capture_content_hash,
        w.sessions,
        w.model,
        w.concurrency,
        w.rate,
        w.arrival,
        w.pace,
        w.mix,
        w.ramp_s,
        w.warmup_s,
    ]);
    let digest = Sha256::digest(canonical.to_string().as_bytes());
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for b in digest.iter() {
        let _ = write!(out, "{b:02x}");
    }
    out
}

impl Machine {
    /// This machine: host name, available CPUs, CPU model (Linux: `/proc/cpuinfo`), OS, kernel and architecture.
    /// Whatever cannot be found is `unknown`.
    pub fn detect() -> Machine {
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        };
        let hostname = read("/proc/sys/kernel/hostname")
            .or_else(|| read("/etc/hostname"))
            .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
            .or_else(|| std::env::var("COMPUTERNAME").ok().filter(|s| !s.is_empty()))
            .unwrap_or_else(|| "unknown".into());
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name") || l.starts_with("Model") || l.starts_with("Hardware"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "unknown".into());
        let os = match read("/proc/sys/kernel/osrelease") {
            Some(kernel) => format!("{} {kernel} {}", std::env::consts::OS, std::env::consts::ARCH),
            None => format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
        };
        Machine {
            hostname,
            cores,
            cpu,
            os,
        }
    }
}

impl LoadReport {
    /// One line for a terminal or a CI log, e.g. `12,345 requests in 10.0 s (1,234.5/s), 0.05% errors, p50 1.23 ms,
    /// p99 4.56 ms (corrected), p99 2.10 ms (service)`.
    pub fn summary_line(&self) -> String {
        let t = &self.totals;
        let mut s = format!(
            "{} requests in {:.1} s ({}/s), {} errors",
            thousands(t.requests),
            self.duration_s,
            thousands_f1(t.throughput_rps),
            percent(t.errors, t.requests)
        );
        let all_errors: u64 = self.errors.values().sum();
        let session_errors = all_errors.saturating_sub(t.errors);
        if session_errors > 0 {
            let _ = write!(s, " (+{} session errors)", thousands(session_errors));
        }
        if t.corrected.count == 0 {
            s.push_str(", no answers");
        } else {
            let _ = write!(
                s,
                ", p50 {}, p99 {} (corrected), p99 {} (service)",
                micros(t.corrected.p50_us),
                micros(t.corrected.p99_us),
                micros(t.service.p99_us)
            );
        }
        if !self.warnings.is_empty() {
            let _ = write!(s, "; {} warning(s)", self.warnings.len());
        }
        s
    }
}

/// `1234567` -> `1,234,567`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `1234.56` -> `1,234.6`.
fn thousands_f1(x: f64) -> String {
    if !x.is_finite() || x < 0.0 {
        return format!("{x:.1}");
    }
    let tenths = (x * 10.0).round() as u64;
    format!("{}.{}", thousands(tenths / 10), tenths % 10)
}

fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        return if part == 0 { "0%".into() } else { thousands(part) };
    }
    if part == 0 {
        return "0%".into();
    }
    format!("{:.2}%", part as f64 * 100.0 / whole as f64)
}

/// A latency in µs with three significant digits and a unit: `850 µs`, `1.23 ms`, `12.3 ms`, `123 ms`, `1.23 s`.
pub fn micros(us: u64) -> String {
    fn three(x: f64, unit: &str) -> String {
        if x < 9.995 {
            format!("{x:.2} {unit}")
        } else if x < 99.95 {
            format!("{x:.1} {unit}")
        } else {
            format!("{x:.0} {unit}")
        }
    }
    if us < 1_000 {
        format!("{us} µs")
    } else if us < 999_500 {
        three(us as f64 / 1e3, "ms")
    } else {
        three(us as f64 / 1e6, "s")
    }
}

/// Merges shard reports (or any reports of the same workload) into one, exactly: every histogram is decoded,
/// added and re-summarised, counts are summed, `throughput_rps` is recomputed as `requests / max(duration_s)`
/// (shards run concurrently).
///
/// The series is aligned on wall-clock time: a report's `t` is shifted by the whole seconds its `started` is
/// later than the earliest one (when every `started` parses as RFC 3339; otherwise `t` is taken as is). Points
/// with the same aligned `t` add their counts and histograms, so per-second percentiles are exact as well.
/// Points from reports written without per-second histograms (empty `hdr` but requests) fall back to the largest
/// of the shards' `p50_us`/`p99_us` for that second — an approximation (an upper bound in practice, not a
/// percentile of the union).
///
/// The merged report: `shard` None; `started` the earliest; `workload` the first report's; `machine` distinct
/// values joined by `, ` and `cores` summed; `tool_version` and `target` the first report's, with a warning when
/// others differ; `warnings` each report's, prefixed by its shard (`shard 1/4: …`) or position (`report 2: …`),
/// plus a warning when shards of the split are missing.
///
/// Refuses (see [`MergeError`]): no reports, different `schema`, different `workload.fingerprint`, shards of
/// different counts, a shard twice, a shard index not below its count, a damaged histogram.
pub fn merge(reports: &[LoadReport]) -> Result<LoadReport, MergeError> {
    let first = reports.first().ok_or(MergeError::Empty)?;
    check(reports)?;

    let label = |i: usize, r: &LoadReport| match r.shard {
        Some(s) => format!("shard {s}"),
        None => format!("report {}", i + 1),
    };
    let mut warnings = Vec::new();
    for (i, r) in reports.iter().enumerate() {
        if r.tool_version != first.tool_version {
            warnings.push(format!(
                "{} was written by mcptape {} ({} by {})",
                label(i, r),
                r.tool_version,
                label(0, first),
                first.tool_version
            ));
        }
        if r.target != first.target {
            warnings.push(format!(
                "{} ran against {} ({} against {})",
                label(i, r),
                r.target,
                label(0, first),
                first.target
            ));
        }
    }
    let shards: BTreeSet<Shard> = reports.iter().filter_map(|r| r.shard).collect();
    if let Some(count) = shards.first().map(|s| s.count) {
        if reports.iter().all(|r| r.shard.is_some()) && shards.len() < count as usize {
            let missing: Vec<String> = (0..count)
                .filter(|&i| !shards.contains(&Shard { index: i, count }))
                .map(|i| format!("{i}/{count}"))
                .collect();
            warnings.push(format!(
                "merged {} of {count} shards; missing {}",
                shards.len(),
                missing.join(", ")
            ));
        }
    }
    for (i, r) in reports.iter().enumerate() {
        for w in &r.warnings {
            warnings.push(format!("{}: {w}", label(i, r)));
        }
    }

    let duration_s = reports.iter().map(|r| r.duration_s).fold(0.0, f64::max);

    let hist_err = |index: usize, place: String| {
        move |source| MergeError::Histogram {
            index: index + 1,
            place,
            source,
        }
    };

    // Totals and methods.
    let mut totals = Acc::default();
    let mut methods: BTreeMap<&str, Acc> = BTreeMap::new();
    let mut phases: BTreeMap<&str, Histogram<u64>> = BTreeMap::new();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for (i, r) in reports.iter().enumerate() {
        totals
            .add(&r.totals)
            .map_err(|(which, e)| hist_err(i, format!("totals.{which}"))(e))?;
        for (m, mr) in &r.methods {
            methods
                .entry(m)
                .or_default()
                .add(mr)
                .map_err(|(which, e)| hist_err(i, format!("methods[{m:?}].{which}"))(e))?;
        }
        for (p, h) in &r.phases {
            let decoded = h.histogram().map_err(hist_err(i, format!("phases[{p:?}]")))?;
            let acc = phases.entry(p).or_insert_with(new_histogram);
            acc.add(&decoded)
                .map_err(|e| hist_err(i, format!("phases[{p:?}]"))(e.into()))?;
        }
        for (class, n) in &r.errors {
            *errors.entry(class.clone()).or_default() += n;
        }
    }

    // Series, aligned on `started`.
    let starts: Option<Vec<std::time::SystemTime>> = reports
        .iter()
        .map(|r| humantime::parse_rfc3339_weak(r.started.trim()).ok())
        .collect();
    let offsets: Vec<u64> = match &starts {
        Some(starts) => {
            let earliest = *starts.iter().min().expect("at least one report");
            starts
                .iter()
                .map(|s| s.duration_since(earliest).map_or(0, |d| d.as_secs_f64().round() as u64))
                .collect()
        }
        None => vec![0; reports.len()],
    };
    let started = match &starts {
        Some(starts) => {
            let (i, _) = starts
                .iter()
                .enumerate()
                .min_by_key(|(_, s)| **s)
                .expect("at least one report");
            reports[i].started.clone()
        }
        None => reports
            .iter()
            .map(|r| r.started.as_str())
            .min()
            .unwrap_or_default()
            .to_string(),
    };
    struct Second {
        requests: u64,
        errors: u64,
        hist: Histogram<u64>,
        /// Largest p50/p99 of points that came without a histogram.
        fallback: Option<(u64, u64)>,
    }
    let mut seconds: BTreeMap<u64, Second> = BTreeMap::new();
    for (i, r) in reports.iter().enumerate() {
        for p in &r.series {
            let t = p.t + offsets[i];
            let s = seconds.entry(t).or_insert_with(|| Second {
                requests: 0,
                errors: 0,
                hist: new_series_histogram(),
                fallback: None,
            });
            s.requests += p.requests;
            s.errors += p.errors;
            if p.hdr.is_empty() && (p.p50_us, p.p99_us) != (0, 0) {
                let (a, b) = s.fallback.unwrap_or((0, 0));
                s.fallback = Some((a.max(p.p50_us), b.max(p.p99_us)));
            } else {
                let h = p.histogram().map_err(hist_err(i, format!("series[t={}]", p.t)))?;
                s.hist
                    .add(&h)
                    .map_err(|e| hist_err(i, format!("series[t={}]", p.t))(e.into()))?;
            }
        }
    }
    let series = seconds
        .into_iter()
        .map(|(t, s)| {
            let mut p = SecondPoint::from_histogram(t, s.requests, s.errors, &s.hist);
            if let Some((p50, p99)) = s.fallback {
                p.p50_us = p.p50_us.max(p50);
                p.p99_us = p.p99_us.max(p99);
            }
            p
        })
        .collect();

    let distinct = |f: &dyn Fn(&LoadReport) -> &str| {
        let mut seen: Vec<&str> = Vec::new();
        for r in reports {
            let v = f(r);
            if !seen.contains(&v) {
                seen.push(v);
            }
        }
        seen.join(", ")
    };
    let machine = Machine {
        hostname: distinct(&|r| &r.machine.hostname),
        cores: reports.iter().map(|r| r.machine.cores).sum(),
        cpu: distinct(&|r| &r.machine.cpu),
        os: distinct(&|r| &r.machine.os),
    };

    Ok(LoadReport {
        schema: first.schema.clone(),
        tool_version: first.tool_version.clone(),
        started,
        duration_s,
        target: first.target.clone(),
        workload: first.workload.clone(),
        machine,
        shard: None,
        totals: totals.report(duration_s),
        methods: methods
            .into_iter()
            .map(|(m, a)| (m.to_string(), a.report(duration_s)))
            .collect(),
        phases: phases
            .into_iter()
            .map(|(p, h)| (p.to_string(), Hist::from_histogram(&h)))
            .collect(),
        errors,
        series,
        warnings,
    })
}

/// The refusals of [`merge`].
fn check(reports: &[LoadReport]) -> Result<(), MergeError> {
    let first = &reports[0];
    for (i, r) in reports.iter().enumerate().skip(1) {
        if r.schema != first.schema {
            return Err(MergeError::Schema {
                first: first.schema.clone(),
                other: r.schema.clone(),
                index: i + 1,
            });
        }
        if r.workload.fingerprint != first.workload.fingerprint {
            return Err(MergeError::Fingerprint {
                first: first.workload.fingerprint.clone(),
                other: r.workload.fingerprint.clone(),
                index: i + 1,
            });
        }
    }
    let mut seen: BTreeMap<Shard, usize> = BTreeMap::new();
    let mut split: Option<(Shard, usize)> = None;
    for (i, r) in reports.iter().enumerate() {
        let Some(s) = r.shard else { continue };
        if s.index >= s.count {
            return Err(MergeError::BadShard {
                shard: s.to_string(),
                index: i + 1,
            });
        }
        match split {
            None => split = Some((s, i)),
            Some((f, fi)) if f.count != s.count => {
                return Err(MergeError::ShardCount {
                    first: f.to_string(),
                    first_index: fi + 1,
                    other: s.to_string(),
                    index: i + 1,
                });
            }
            Some(_) => {}
        }
        if let Some(&fi) = seen.get(&s) {
            return Err(MergeError::DuplicateShard {
                shard: s.to_string(),
                first_index: fi + 1,
                index: i + 1,
            });
        }
        seen.insert(s, i);
    }
    Ok(())
}

/// A [`MethodReport`] being merged.
struct Acc {
    requests: u64,
    errors: u64,
    corrected: Histogram<u64>,
    service: Histogram<u64>,
}

impl Default for Acc {
    fn default() -> Acc {
        Acc {
            requests: 0,
            errors: 0,
            corrected: new_histogram(),
            service: new_histogram(),
        }
    }
}

impl Acc {
    fn add(&mut self, m: &MethodReport) -> Result<(), (&'static str, HistError)> {
        self.requests += m.requests;
        self.errors += m.errors;
        let c = m.corrected.histogram().map_err(|e| ("corrected", e))?;
        self.corrected.add(&c).map_err(|e| ("corrected", e.into()))?;
        let s = m.service.histogram().map_err(|e| ("service", e))?;
        self.service.add(&s).map_err(|e| ("service", e.into()))?;
        Ok(())
    }

    fn report(&self, duration_s: f64) -> MethodReport {
        MethodReport::from_parts(self.requests, self.errors, duration_s, &self.corrected, &self.service)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random latencies (xorshift), spread over several orders of magnitude.
    fn samples(seed: u64, n: usize) -> Vec<u64> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let decade = 10u64.pow((x % 6) as u32 + 1);
                (x >> 8) % decade + 1
            })
            .collect()
    }

    fn hist_of(values: &[u64]) -> Histogram<u64> {
        let mut h = new_histogram();
        for &v in values {
            h.saturating_record(v);
        }
        h
    }

    fn workload() -> Workload {
        let mut w = Workload {
            capture: vec!["captures/demo".into()],
            sessions: 12,
            model: "open".into(),
            concurrency: None,
            rate: Some(200.0),
            arrival: Some("poisson".into()),
            pace: "recorded".into(),
            mix: "round-robin".into(),
            ramp_s: 5.0,
            warmup_s: 2.0,
            fingerprint: String::new(),
        };
        w.fingerprint = fingerprint("sha256:abc", &w);
        w
    }

    fn machine(host: &str) -> Machine {
        Machine {
            hostname: host.into(),
            cores: 4,
            cpu: "Test CPU".into(),
            os: "linux 6.8 x86_64".into(),
        }
    }

    /// The values a report is built from: per method (corrected, service), per phase, per second (corrected).
    #[derive(Clone, Default)]
    struct Values {
        methods: BTreeMap<String, (u64, u64, Vec<u64>, Vec<u64>)>,
        phases: BTreeMap<String, Vec<u64>>,
        errors: BTreeMap<String, u64>,
        seconds: BTreeMap<u64, (u64, u64, Vec<u64>)>,
        warnings: Vec<String>,
    }

    impl Values {
        fn union(&self, o: &Values) -> Values {
            let mut u = self.clone();
            for (m, (r, e, c, s)) in &o.methods {
                let x = u.methods.entry(m.clone()).or_default();
                x.0 += r;
                x.1 += e;
                x.2.extend(c);
                x.3.extend(s);
            }
            for (p, v) in &o.phases {
                u.phases.entry(p.clone()).or_default().extend(v);
            }
            for (k, n) in &o.errors {
                *u.errors.entry(k.clone()).or_default() += n;
            }
            for (t, (r, e, v)) in &o.seconds {
                let x = u.seconds.entry(*t).or_default();
                x.0 += r;
                x.1 += e;
                x.2.extend(v);
            }
            u
        }

        fn report(&self, duration_s: f64, shard: Option<Shard>, host: &str) -> LoadReport {
            let (mut tr, mut te, mut tc, mut ts) = (0, 0, new_histogram(), new_histogram());
            let methods = self
                .methods
                .iter()
                .map(|(m, (r, e, c, s))| {
                    let (c, s) = (hist_of(c), hist_of(s));
                    tr += r;
                    te += e;
                    tc.add(&c).unwrap();
                    ts.add(&s).unwrap();
                    (m.clone(), MethodReport::from_parts(*r, *e, duration_s, &c, &s))
                })
                .collect();
            LoadReport {
                schema: SCHEMA.into(),
                tool_version: "0.1.0".into(),
                started: "2026-11-22T08:00:00Z".into(),
                duration_s,
                target: "http://127.0.0.1:8080/mcp".into(),
                workload: workload(),
                machine: machine(host),
                shard,
                totals: MethodReport::from_parts(tr, te, duration_s, &tc, &ts),
                methods,
                phases: self
                    .phases
                    .iter()
                    .map(|(p, v)| (p.clone(), Hist::from_histogram(&hist_of(v))))
                    .collect(),
                errors: self.errors.clone(),
                series: self
                    .seconds
                    .iter()
                    .map(|(t, (r, e, v))| SecondPoint::from_histogram(*t, *r, *e, &hist_of(v)))
                    .collect(),
                warnings: self.warnings.clone(),
            }
        }
    }

    fn values(seed: u64) -> Values {
        let mut v = Values::default();
        v.methods.insert(
            "tools/call".into(),
            (900, 3, samples(seed, 880), samples(seed + 1, 880)),
        );
        v.methods.insert(
            "tools/list".into(),
            (100, 0, samples(seed + 2, 100), samples(seed + 3, 100)),
        );
        if seed == 1 {
            // A method only this shard saw.
            v.methods.insert("resources/read".into(), (7, 7, vec![], vec![]));
        }
        v.phases.insert("connect".into(), samples(seed + 4, 50));
        v.phases.insert(
            "session".into(),
            samples(seed + 5, 50).iter().map(|x| x * 1000).collect(),
        );
        v.errors.insert("jsonrpc_-32603".into(), 2);
        v.errors.insert("timeout".into(), 1 + seed);
        for t in 0..5 {
            v.seconds.insert(t + seed, (200, 1, samples(seed * 100 + t, 196)));
        }
        v.warnings.push(format!("schedule lag {seed} ms"));
        v
    }

    fn sample_report() -> LoadReport {
        values(1).report(10.0, Some(Shard { index: 0, count: 2 }), "load-0")
    }

    #[test]
    fn hist_round_trips_through_its_encoding() {
        let h = hist_of(&samples(7, 5000));
        let hist = Hist::from_histogram(&h);
        assert_eq!(hist.count, 5000);
        assert!(hist.min_us <= hist.p50_us && hist.p50_us <= hist.p90_us && hist.p99_us <= hist.max_us);
        let back = hist.histogram().unwrap();
        assert_eq!(back, h);
        assert_eq!(Hist::from_histogram(&back), hist);
        // Values beyond the range are clamped, not lost.
        let mut big = new_histogram();
        big.saturating_record(u64::MAX);
        big.saturating_record(1);
        let hb = Hist::from_histogram(&big);
        assert_eq!((hb.count, hb.min_us), (2, 1));
        assert!(hb.max_us >= HIGHEST_US && hb.max_us < HIGHEST_US + HIGHEST_US / 1000);
        assert_eq!(Hist::from_histogram(&hb.histogram().unwrap()), hb);
    }

    #[test]
    fn second_points_are_stored_at_series_precision_whatever_they_were_recorded_at() {
        // 3-digit buckets nest in 2-digit ones, so recording raw values at 2 digits and copying a 3-digit
        // histogram give the same point: the recorder does the first, reports built from `Hist`s the second.
        let values = samples(11, 3000);
        let mut raw = new_series_histogram();
        for &v in &values {
            raw.saturating_record(v);
        }
        let direct = SecondPoint::from_histogram(4, 3000, 0, &raw);
        let copied = SecondPoint::from_histogram(4, 3000, 0, &hist_of(&values));
        assert_eq!(direct, copied);
        assert_eq!(direct.histogram().unwrap().sigfig(), SERIES_SIGFIG);
        assert_eq!(direct.histogram().unwrap(), raw);
    }

    #[test]
    fn empty_hist_is_all_zero_and_decodes_to_an_empty_histogram() {
        let e = Hist::from_histogram(&new_histogram());
        assert_eq!(e, Hist::default());
        assert_eq!(e.hdr, "");
        assert!(e.histogram().unwrap().is_empty());
    }

    #[test]
    fn damaged_hdr_is_an_error_not_a_panic() {
        let bad = Hist {
            hdr: "not base64!".into(),
            ..Hist::default()
        };
        assert!(matches!(bad.histogram(), Err(HistError::Base64(_))));
        let bad = Hist {
            hdr: BASE64.encode(b"\x1c\x84\x93\x14garbage"),
            ..Hist::default()
        };
        assert!(matches!(bad.histogram(), Err(HistError::Decode(_))));
    }

    #[test]
    fn serde_round_trip() {
        let r = sample_report();
        let json = serde_json::to_string_pretty(&r).unwrap();
        let back: LoadReport = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["schema"], "mcptape.load/1");
        assert_eq!(v["shard"]["index"], 0);
        assert_eq!(v["methods"]["tools/call"]["requests"], 900);
    }

    #[test]
    fn merge_equals_the_report_of_the_union() {
        let (a, b) = (values(1), values(2));
        let ra = a.report(10.0, Some(Shard { index: 0, count: 2 }), "load-0");
        let rb = b.report(9.5, Some(Shard { index: 1, count: 2 }), "load-1");
        let merged = merge(&[ra.clone(), rb.clone()]).unwrap();
        let mut union = a.union(&b).report(10.0, None, "load-0, load-1");
        union.machine.cores = 8;
        union.warnings = vec![
            "shard 0/2: schedule lag 1 ms".into(),
            "shard 1/2: schedule lag 2 ms".into(),
        ];

        // Field by field first, for readable failures.
        assert_eq!(merged.totals, union.totals);
        assert_eq!(merged.methods, union.methods);
        assert_eq!(merged.phases, union.phases);
        assert_eq!(merged.errors, union.errors);
        assert_eq!(merged.series, union.series);
        assert_eq!(merged, union);

        assert_eq!(merged.totals.requests, 900 * 2 + 100 * 2 + 7);
        assert_eq!(merged.totals.corrected.count, 880 * 2 + 100 * 2);
        assert!((merged.totals.throughput_rps - merged.totals.requests as f64 / 10.0).abs() < 1e-9);
        assert_eq!(merged.methods["resources/read"].errors, 7);
        assert_eq!(merged.errors["timeout"], 2 + 3);
        // Shard 0 has seconds 1..=5, shard 1 has 2..=6: in the overlap counts add and percentiles come from the
        // added histograms.
        let ts: Vec<u64> = merged.series.iter().map(|p| p.t).collect();
        assert_eq!(ts, vec![1, 2, 3, 4, 5, 6]);
        assert_eq!((merged.series[0].requests, merged.series[1].requests), (200, 400));
        assert_eq!(merged.series[1].histogram().unwrap().len(), 392);

        // Merging is associative with single reports too (a merged report merges again).
        let again = merge(std::slice::from_ref(&merged)).unwrap();
        assert_eq!(again.totals, merged.totals);
        assert_eq!(again.series, merged.series);
    }

    #[test]
    fn merge_aligns_series_on_started() {
        let a = values(1).report(10.0, Some(Shard { index: 0, count: 2 }), "a");
        let mut b = values(1).report(10.0, Some(Shard { index: 1, count: 2 }), "b");
        b.started = "2026-11-22T08:00:03Z".into();
        let m = merge(&[b, a]).unwrap();
        assert_eq!(m.started, "2026-11-22T08:00:00Z");
        let ts: Vec<u64> = m.series.iter().map(|p| p.t).collect();
        assert_eq!(ts, vec![1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(m.series[3].requests, 400); // t=4: a's 4th second and b's 1st
    }

    #[test]
    fn merge_falls_back_to_the_largest_percentile_without_histograms() {
        let mut a = values(1).report(10.0, None, "a");
        let mut b = values(1).report(10.0, None, "b");
        for (p, v) in a.series.iter_mut().zip([100u64, 200, 300, 400, 500]) {
            p.hdr.clear();
            p.p99_us = v;
        }
        for p in b.series.iter_mut() {
            p.hdr.clear();
            p.p99_us = 250;
        }
        let m = merge(&[a, b]).unwrap();
        let p99: Vec<u64> = m.series.iter().map(|p| p.p99_us).collect();
        assert_eq!(p99, vec![250, 250, 300, 400, 500]);
    }

    #[test]
    fn merge_refuses_different_fingerprints_and_schemas() {
        let a = sample_report();
        let mut b = values(2).report(10.0, Some(Shard { index: 1, count: 2 }), "b");
        b.workload.rate = Some(400.0);
        b.workload.fingerprint = fingerprint("sha256:abc", &b.workload);
        let e = merge(&[a.clone(), b.clone()]).unwrap_err();
        assert!(matches!(e, MergeError::Fingerprint { index: 2, .. }));
        let msg = e.to_string();
        assert!(
            msg.contains(&a.workload.fingerprint) && msg.contains(&b.workload.fingerprint),
            "{msg}"
        );
        assert!(!msg.contains('\n'));

        let mut c = values(2).report(10.0, Some(Shard { index: 1, count: 2 }), "c");
        c.schema = "mcptape.load/2".into();
        let e = merge(&[a.clone(), c]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot merge reports of different schemas: report 1 is \"mcptape.load/1\", report 2 is \"mcptape.load/2\""
        );

        assert!(matches!(merge(&[]), Err(MergeError::Empty)));
    }

    #[test]
    fn merge_refuses_inconsistent_shards_and_warns_about_missing_ones() {
        let s = |index, count| Some(Shard { index, count });
        let r = |shard| values(1).report(10.0, shard, "h");
        let e = merge(&[r(s(0, 2)), r(s(0, 2))]).unwrap_err();
        assert_eq!(e.to_string(), "shard 0/2 appears twice: reports 1 and 2");
        let e = merge(&[r(s(0, 2)), r(s(1, 3))]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot merge shards of different splits: report 1 is shard 0/2, report 2 is shard 1/3"
        );
        assert!(matches!(
            merge(&[r(s(2, 2))]),
            Err(MergeError::BadShard { index: 1, .. })
        ));
        let m = merge(&[r(s(0, 4)), r(s(2, 4))]).unwrap();
        assert!(
            m.warnings
                .contains(&"merged 2 of 4 shards; missing 1/4, 3/4".to_string()),
            "{:?}",
            m.warnings
        );
        assert_eq!(m.shard, None);
    }

    #[test]
    fn merge_names_the_damaged_histogram() {
        let a = sample_report();
        let mut b = values(2).report(10.0, Some(Shard { index: 1, count: 2 }), "b");
        b.methods.get_mut("tools/list").unwrap().service.hdr = "@@@".into();
        let e = merge(&[a, b]).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("report 2, methods[\"tools/list\"].service: histogram is not valid base64"),
            "{e}"
        );
    }

    #[test]
    fn fingerprint_covers_model_parameters_but_not_paths() {
        let w = workload();
        let mut moved = w.clone();
        moved.capture = vec!["/mnt/elsewhere/demo".into()];
        assert_eq!(fingerprint("sha256:abc", &moved), w.fingerprint);
        let mut faster = w.clone();
        faster.rate = Some(201.0);
        assert_ne!(fingerprint("sha256:abc", &faster), w.fingerprint);
        assert_ne!(fingerprint("sha256:abd", &w), w.fingerprint);
        assert!(w.fingerprint.starts_with("sha256:") && w.fingerprint.len() == 7 + 64);
    }

    #[test]
    fn summary_line_reads_like_a_sentence() {
        let mut r = sample_report();
        r.totals.requests = 12_345;
        r.totals.errors = 6;
        r.totals.throughput_rps = 1234.54;
        r.totals.corrected.p50_us = 1234;
        r.totals.corrected.p99_us = 4561;
        r.totals.service.p99_us = 2100;
        r.errors.clear();
        r.warnings.clear();
        assert_eq!(
            r.summary_line(),
            "12,345 requests in 10.0 s (1,234.5/s), 0.05% errors, p50 1.23 ms, p99 4.56 ms (corrected), p99 2.10 ms (service)"
        );
        r.errors.insert("transport".into(), 9);
        r.warnings.push("CPU saturated".into());
        assert!(
            r.summary_line().contains("0.05% errors (+3 session errors), p50"),
            "{}",
            r.summary_line()
        );
        assert!(r.summary_line().ends_with("; 1 warning(s)"));
        assert_eq!(micros(850), "850 µs");
        assert_eq!(micros(12_345), "12.3 ms");
        assert_eq!(micros(123_456), "123 ms");
        assert_eq!(micros(999_999), "1.00 s");
        assert_eq!(micros(61_000_000), "61.0 s");
    }

    #[test]
    fn sample_report_satisfies_the_schema_required_fields() {
        // A hand check of the committed JSON Schema's `required` lists against the serialized report; the full
        // validation runs in the integration tests with Python `jsonschema`.
        let schema: serde_json::Value =
            serde_json::from_str(include_str!("../schema/load-report.schema.json")).expect("schema is JSON");
        let report = serde_json::to_value(sample_report()).unwrap();
        fn required(schema: &serde_json::Value, root: &serde_json::Value, value: &serde_json::Value, at: &str) {
            let schema = match schema.get("$ref").and_then(|r| r.as_str()) {
                Some(r) => root.pointer(r.trim_start_matches('#')).expect("resolvable $ref"),
                None => schema,
            };
            if let (Some(req), true) = (schema.get("required").and_then(|r| r.as_array()), value.is_object()) {
                for k in req {
                    let k = k.as_str().unwrap();
                    assert!(value.get(k).is_some(), "{at}: missing required {k}");
                }
            }
            if let (Some(props), Some(obj)) = (schema.get("properties"), value.as_object()) {
                for (k, v) in obj {
                    let sub = props.get(k).unwrap_or_else(|| panic!("{at}: {k} not in the schema"));
                    required(sub, root, v, &format!("{at}/{k}"));
                }
            }
            if let (Some(items), Some(arr)) = (schema.get("items"), value.as_array()) {
                for (i, v) in arr.iter().enumerate() {
                    required(items, root, v, &format!("{at}/{i}"));
                }
            }
            if let (Some(extra), Some(obj)) = (schema.get("additionalProperties"), value.as_object()) {
                if extra.is_object() && schema.get("properties").is_none() {
                    for (k, v) in obj {
                        required(extra, root, v, &format!("{at}/{k}"));
                    }
                }
            }
        }
        required(&schema, &schema, &report, "");
    }
}

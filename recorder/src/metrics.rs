//! What a running tap shows operators: counters kept by the writer thread, rendered in the Prometheus text
//! exposition format (0.0.4) on `/metrics`, and `/healthz`, served on their own loopback port (`--metrics ADDR`).
//!
//! Written by hand on hyper (already here for the HTTP tap) rather than with a metrics crate: a dozen series do
//! not need one. Label cardinality is bounded: methods come from clients, so after [`MAX_METHODS`] distinct names
//! (or for names longer than [`MAX_METHOD_LEN`]) further ones are counted under `method="other"`.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use mcptape_datasets::Direction;

use crate::sink::SegmentSink;

/// Distinct method label values kept before the rest fold into `other`.
pub const MAX_METHODS: usize = 64;
/// Longer method names are counted as `other`.
pub const MAX_METHOD_LEN: usize = 96;
/// The label value of folded methods.
pub const OTHER: &str = "other";

/// Upper bounds (seconds) of the upstream latency histogram buckets.
pub const LATENCY_BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

#[derive(Debug, Default, Clone)]
struct Histogram {
    buckets: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Debug, Default)]
struct PerMethod {
    /// Frames by direction (c2s, s2c).
    frames: [u64; 2],
    latency: Option<Histogram>,
}

#[derive(Debug, Default)]
struct ByMethod {
    methods: foldhash::HashMap<String, PerMethod>,
}

impl ByMethod {
    /// The entry of `method` (no allocation once the name is known), or `other` past the caps.
    fn entry(&mut self, method: Option<&str>) -> &mut PerMethod {
        let m = method.unwrap_or("");
        // A known name: two lookups, no allocation (returning what `get_mut` found and inserting otherwise is what
        // the borrow checker cannot yet accept).
        if self.methods.contains_key(m) {
            return self.methods.get_mut(m).expect("looked up above");
        }
        let key = if m.len() <= MAX_METHOD_LEN && self.methods.len() < MAX_METHODS {
            m
        } else {
            OTHER
        };
        self.methods.entry(key.to_string()).or_default()
    }
}

/// The counters of one tap. Cheap to update from the writer thread; read at each scrape.
#[derive(Default)]
pub struct Metrics {
    by_method: Mutex<ByMethod>,
    bytes_c2s: AtomicU64,
    bytes_s2c: AtomicU64,
    sessions_open: AtomicI64,
    sessions_total: AtomicU64,
    sampled_out: AtomicU64,
    dropped: AtomicU64,
    segments: AtomicU64,
    retention_deleted: AtomicU64,
    /// ns since the epoch of the oldest frame not yet in the journal (0: none).
    pending_since_ns: AtomicI64,
    write_error: Mutex<Option<String>>,
    sink: Mutex<Option<Arc<dyn SegmentSink>>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Metrics {
    /// Counts one recorded frame; `latency_ns` for an answer whose request was seen.
    pub fn frame(&self, direction: Direction, method: Option<&str>, bytes: usize, latency_ns: Option<u64>) {
        let counter = match direction {
            Direction::C2s => &self.bytes_c2s,
            Direction::S2c => &self.bytes_s2c,
        };
        counter.fetch_add(bytes as u64, Ordering::Relaxed);
        let mut m = lock(&self.by_method);
        let e = m.entry(method);
        e.frames[usize::from(direction == Direction::S2c)] += 1;
        if let Some(ns) = latency_ns {
            let secs = ns as f64 / 1e9;
            let h = e.latency.get_or_insert_with(Histogram::default);
            h.count += 1;
            h.sum += secs;
            for (b, le) in h.buckets.iter_mut().zip(LATENCY_BUCKETS) {
                if secs <= le {
                    *b += 1;
                }
            }
        }
    }

    /// A session began (kept or sampled out).
    pub fn session_opened(&self, kept: bool) {
        self.sessions_open.fetch_add(1, Ordering::Relaxed);
        self.sessions_total.fetch_add(1, Ordering::Relaxed);
        if !kept {
            self.sampled_out.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A session ended.
    pub fn session_closed(&self) {
        self.sessions_open.fetch_sub(1, Ordering::Relaxed);
    }

    /// Frames that could not be recorded.
    pub fn dropped(&self, n: u64) {
        self.dropped.fetch_add(n, Ordering::Relaxed);
    }

    /// A segment was finished.
    pub fn segment_written(&self) {
        self.segments.fetch_add(1, Ordering::Relaxed);
    }

    /// Retention deleted `n` segments.
    pub fn retention_deleted(&self, n: u64) {
        self.retention_deleted.fetch_add(n, Ordering::Relaxed);
    }

    /// The oldest frame not yet in the journal was seen at `ts_ns` (0: everything is in the journal).
    pub fn set_pending_since(&self, ts_ns: i64) {
        self.pending_since_ns.store(ts_ns, Ordering::Relaxed);
    }

    /// True when no frame waits for the journal.
    pub fn nothing_pending(&self) -> bool {
        self.pending_since_ns.load(Ordering::Relaxed) == 0
    }

    /// Writing failed (healthz turns 503).
    pub fn write_failed(&self, e: &str) {
        lock(&self.write_error).get_or_insert_with(|| e.to_string());
    }

    /// The uploader (or other segment sink) whose backlog `/metrics` reports.
    pub fn set_sink(&self, sink: Option<Arc<dyn SegmentSink>>) {
        *lock(&self.sink) = sink;
    }

    /// `/healthz`: `Ok` while the capture is being written, else the first write error.
    pub fn health(&self) -> Result<(), String> {
        match &*lock(&self.write_error) {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let m = lock(&self.by_method);
        let mut names: Vec<&String> = m.methods.keys().collect();
        names.sort();
        let _ = writeln!(
            out,
            "# HELP mcptape_frames_total Frames recorded, by direction and method."
        );
        let _ = writeln!(out, "# TYPE mcptape_frames_total counter");
        for (i, dir) in ["c2s", "s2c"].into_iter().enumerate() {
            for name in &names {
                let n = m.methods[*name].frames[i];
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "mcptape_frames_total{{direction=\"{dir}\",method=\"{}\"}} {n}",
                        escape(name)
                    );
                }
            }
        }
        let _ = writeln!(out, "# HELP mcptape_bytes_total Payload bytes recorded, by direction.");
        let _ = writeln!(out, "# TYPE mcptape_bytes_total counter");
        for (dir, c) in [("c2s", &self.bytes_c2s), ("s2c", &self.bytes_s2c)] {
            let _ = writeln!(
                out,
                "mcptape_bytes_total{{direction=\"{dir}\"}} {}",
                c.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP mcptape_upstream_latency_seconds Time from a request to its answer as the tap saw them, by method."
        );
        let _ = writeln!(out, "# TYPE mcptape_upstream_latency_seconds histogram");
        for name in &names {
            let Some(h) = &m.methods[*name].latency else { continue };
            let method = escape(name);
            for (le, n) in LATENCY_BUCKETS.iter().zip(h.buckets) {
                let _ = writeln!(
                    out,
                    "mcptape_upstream_latency_seconds_bucket{{method=\"{method}\",le=\"{le}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "mcptape_upstream_latency_seconds_bucket{{method=\"{method}\",le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "mcptape_upstream_latency_seconds_sum{{method=\"{method}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "mcptape_upstream_latency_seconds_count{{method=\"{method}\"}} {}",
                h.count
            );
        }
        drop(m);
        let lag = match self.pending_since_ns.load(Ordering::Relaxed) {
            0 => 0.0,
            since => (mcptape_datasets::human::now_ns() - since).max(0) as f64 / 1e9,
        };
        let backlog = lock(&self.sink).as_ref().map_or(0, |s| s.backlog_segments());
        let simple: [(&str, &str, &str, String); 8] = [
            (
                "mcptape_sessions_open",
                "gauge",
                "Sessions the tap is carrying now.",
                self.sessions_open.load(Ordering::Relaxed).max(0).to_string(),
            ),
            (
                "mcptape_sessions_total",
                "counter",
                "Sessions seen (kept or sampled out).",
                self.sessions_total.load(Ordering::Relaxed).to_string(),
            ),
            (
                "mcptape_sessions_sampled_out_total",
                "counter",
                "Sessions forwarded but not recorded (--sample).",
                self.sampled_out.load(Ordering::Relaxed).to_string(),
            ),
            (
                "mcptape_frames_dropped_total",
                "counter",
                "Frames that could not be recorded (queue full, write errors).",
                self.dropped.load(Ordering::Relaxed).to_string(),
            ),
            (
                "mcptape_journal_lag_seconds",
                "gauge",
                "Age of the oldest frame not yet in the journal.",
                lag.to_string(),
            ),
            (
                "mcptape_segments_written_total",
                "counter",
                "Parquet segments finished.",
                self.segments.load(Ordering::Relaxed).to_string(),
            ),
            (
                "mcptape_retention_deleted_segments_total",
                "counter",
                "Segments deleted by local retention.",
                self.retention_deleted.load(Ordering::Relaxed).to_string(),
            ),
            (
                "mcptape_upload_backlog_segments",
                "gauge",
                "Finished segments waiting for upload.",
                backlog.to_string(),
            ),
        ];
        for (name, kind, help, value) in simple {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name} {value}");
        }
        out
    }
}

/// Escapes a label value: backslash, double quote and newline.
fn escape(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// Serves `/metrics` and `/healthz` on `listener` until `stop` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    stop: impl std::future::Future<Output = ()>,
) {
    use http_body_util::Full;
    use hyper::body::Bytes;
    use hyper::{Response, StatusCode};
    let mut stop = std::pin::pin!(stop);
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(_) => {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let metrics = metrics.clone();
                async move {
                    let (status, ctype, body) = match req.uri().path() {
                        "/metrics" => (
                            StatusCode::OK,
                            "text/plain; version=0.0.4; charset=utf-8",
                            metrics.render(),
                        ),
                        "/healthz" => match metrics.health() {
                            Ok(()) => (StatusCode::OK, "text/plain; charset=utf-8", "ok\n".to_string()),
                            Err(e) => (
                                StatusCode::SERVICE_UNAVAILABLE,
                                "text/plain; charset=utf-8",
                                format!("capture write failing: {e}\n"),
                            ),
                        },
                        _ => (
                            StatusCode::NOT_FOUND,
                            "text/plain; charset=utf-8",
                            "not found: try /metrics or /healthz\n".to_string(),
                        ),
                    };
                    let mut r = Response::new(Full::new(Bytes::from(body)));
                    *r.status_mut() = status;
                    r.headers_mut()
                        .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static(ctype));
                    Ok::<_, std::convert::Infallible>(r)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// Binds `--metrics ADDR` (loopback unless `allow_remote`).
pub async fn bind(addr: &str, allow_remote: bool) -> anyhow::Result<(tokio::net::TcpListener, SocketAddr)> {
    use anyhow::Context;
    let a = crate::http::parse_listen(addr).map_err(|e| anyhow::anyhow!(e.replacen("--listen", "--metrics", 1)))?;
    anyhow::ensure!(
        a.ip().is_loopback() || allow_remote,
        "--metrics {a}: not a loopback address; add --allow-remote to expose the metrics to other machines"
    );
    let l = tokio::net::TcpListener::bind(a)
        .await
        .with_context(|| format!("--metrics {a}: cannot listen"))?;
    let local = l.local_addr().context("--metrics: no local address")?;
    Ok((l, local))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_fold_into_other_past_the_cap_and_labels_are_escaped() {
        let m = Metrics::default();
        for i in 0..MAX_METHODS + 10 {
            m.frame(Direction::C2s, Some(&format!("m{i}")), 1, None);
        }
        m.frame(Direction::S2c, Some("m0"), 3, Some(2_000_000));
        let text = m.render();
        let series = text.lines().filter(|l| l.starts_with("mcptape_frames_total{")).count();
        // MAX_METHODS names, `other`, and m0 in s2c.
        assert_eq!(series, MAX_METHODS + 2, "{text}");
        assert!(text.contains("mcptape_frames_total{direction=\"c2s\",method=\"other\"} 10"));
        assert!(text.contains("mcptape_upstream_latency_seconds_bucket{method=\"m0\",le=\"0.0025\"} 1"));
        assert!(text.contains("mcptape_upstream_latency_seconds_bucket{method=\"m0\",le=\"0.001\"} 0"));
        assert!(text.contains("mcptape_bytes_total{direction=\"s2c\"} 3"));
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}

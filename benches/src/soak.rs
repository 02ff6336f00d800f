//! The soak: `mcptape record --listen` run as a service for many minutes at a steady request rate, rotating every
//! minute under local retention, watched from outside.
//!
//! What it shows (and fails on): every finished segment verifies (`mcptape dataset verify`, run on each segment
//! soon after it appears, before retention can delete it); no frame is lost between segments (per session, the
//! `seq` values read from all segments are 0..n without a hole, and every request sent and every answer received
//! is in them); disk use stays flat once retention starts deleting; the tap's RSS stays flat after warm-up.
//!
//! The upstream is a small keep-alive HTTP/1.1 MCP server in this process, the driver a few keep-alive
//! connections pacing requests on a fixed schedule; each connection is one MCP session (`Mcp-Session-Id`).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use mcptape_datasets::{Kind, Scan};

/// How long and how hard.
#[derive(Debug, Clone)]
pub struct SoakOptions {
    /// Length of the run.
    pub duration: Duration,
    /// Requests per second, all sessions together.
    pub rate: u32,
    /// Concurrent sessions (one keep-alive connection each).
    pub sessions: u32,
    /// `--rotate-every` of the tap.
    pub rotate_every: Duration,
    /// `--retain-age` of the tap.
    pub retain_age: Duration,
    /// How often disk use and RSS are sampled.
    pub sample_every: Duration,
}

impl SoakOptions {
    /// When retention has had a full window to act: retention age plus two rotations.
    pub fn settled_at(&self) -> Duration {
        self.retain_age + self.rotate_every * 2
    }

    /// True when the run is long enough to judge flatness (a settled period and samples after it).
    pub fn judges_flatness(&self) -> bool {
        self.duration > self.settled_at() + self.rotate_every + self.sample_every
    }
}

/// One sample of the running tap.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Seconds since the start.
    pub at_s: f64,
    /// Bytes of finished segments and journals under the capture folder.
    pub disk: u64,
    /// Finished segments on disk.
    pub segments: usize,
    /// Resident set size of the tap, KiB.
    pub rss_kib: u64,
}

/// What the soak saw.
#[derive(Debug, Default)]
pub struct SoakResult {
    /// Requests answered through the tap.
    pub requests: u64,
    /// Segments seen (and verified) over the run.
    pub segments_seen: usize,
    /// Segments that failed `dataset verify`.
    pub segments_failed: Vec<String>,
    /// Segments on disk at the end.
    pub segments_left: usize,
    /// `tools/call` requests and answers found in the segments.
    pub calls_recorded: u64,
    /// Sessions whose seqs have a hole or a repeat across segments.
    pub seq_breaks: Vec<String>,
    /// Samples over time.
    pub samples: Vec<Sample>,
    /// Frames the tap reported dropped.
    pub dropped: u64,
}

impl SoakResult {
    /// The checks, as failures (empty: passed).
    pub fn failures(&self, opts: &SoakOptions) -> Vec<String> {
        let mut f = Vec::new();
        if !self.segments_failed.is_empty() {
            f.push(format!("segments failed verify: {:?}", self.segments_failed));
        }
        if !self.seq_breaks.is_empty() {
            f.push(format!("seq breaks across segments: {:?}", self.seq_breaks));
        }
        if self.calls_recorded != 2 * self.requests {
            f.push(format!(
                "{} tools/call frames recorded for {} requests (want twice as many)",
                self.calls_recorded, self.requests
            ));
        }
        if self.dropped > 0 {
            f.push(format!("{} frames dropped", self.dropped));
        }
        // Flat: once retention has had a full window to act (`settled_at`), the first rotation period after that
        // sets a ceiling (its samples cover a whole journal cycle, from just after a rotation to just before the
        // next); later samples may not exceed it by more than a quarter (RSS: plus 16 MiB).
        let settled_at = opts.settled_at().as_secs_f64();
        let period_end = settled_at + opts.rotate_every.as_secs_f64();
        let first: Vec<&Sample> = self
            .samples
            .iter()
            .filter(|s| s.at_s >= settled_at && s.at_s < period_end)
            .collect();
        let later: Vec<&Sample> = self.samples.iter().filter(|s| s.at_s >= period_end).collect();
        if let (Some(disk), Some(rss)) = (
            first.iter().map(|s| s.disk).max(),
            first.iter().map(|s| s.rss_kib).max(),
        ) {
            if let Some(max) = later.iter().map(|s| s.disk).max().filter(|m| *m > disk + disk / 4) {
                f.push(format!("disk grew under retention: {disk} B ceiling, {max} B later"));
            }
            if let Some(max) = later
                .iter()
                .map(|s| s.rss_kib)
                .max()
                .filter(|m| *m > rss + rss / 4 + 16 * 1024)
            {
                f.push(format!("RSS grew: {rss} KiB ceiling, {max} KiB later"));
            }
        }
        f
    }
}

/// A status or request line, headers (lower-case names) and body.
type HttpMessage = (String, Vec<(String, String)>, Vec<u8>);

fn read_http(r: &mut impl BufRead) -> Option<HttpMessage> {
    let mut first = String::new();
    if r.read_line(&mut first).ok()? == 0 {
        return None;
    }
    let mut headers = Vec::new();
    loop {
        let mut l = String::new();
        r.read_line(&mut l).ok()?;
        let l = l.trim_end();
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':')?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .map_or(0, |(_, v)| v.parse().unwrap_or(0));
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some((first.trim_end().to_string(), headers, body))
}

/// A keep-alive MCP upstream answering every request with a small result.
fn upstream() -> anyhow::Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0")?;
    let addr = l.local_addr()?;
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(conn) = conn else { continue };
            std::thread::spawn(move || {
                let _ = conn.set_nodelay(true);
                let Ok(read_half) = conn.try_clone() else { return };
                let mut r = BufReader::new(read_half);
                let mut w = conn;
                while let Some((_, _, body)) = read_http(&mut r) {
                    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                    let out = serde_json::json!({"jsonrpc":"2.0","id":v["id"],
                        "result":{"content":[{"type":"text","text":"ok"}]}})
                    .to_string();
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                        out.len()
                    );
                    if w.write_all(head.as_bytes())
                        .and_then(|()| w.write_all(out.as_bytes()))
                        .is_err()
                    {
                        break;
                    }
                }
            });
        }
    });
    Ok(addr)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

fn walk(dir: &Path, out: &mut Vec<(PathBuf, u64)>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else if let Ok(m) = e.metadata() {
            out.push((p, m.len()));
        }
    }
}

/// Per session: the (first, last, count) of seq in each segment read so far.
type SeqRanges = BTreeMap<String, Vec<(u64, u64, u64)>>;

/// Reads and verifies the segments not seen yet.
fn check_new_segments(
    mcptape: &Path,
    out: &Path,
    seen: &mut BTreeSet<PathBuf>,
    seqs: &mut SeqRanges,
    result: &mut SoakResult,
) {
    let mut files = Vec::new();
    walk(out, &mut files);
    for (p, _) in files {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !name.ends_with(".parquet") || name.starts_with('.') || seen.contains(&p) {
            continue;
        }
        seen.insert(p.clone());
        let ok = std::process::Command::new(mcptape)
            .args(["dataset", "verify"])
            .arg(&p)
            .output()
            .is_ok_and(|o| o.status.success());
        let frames = Scan::new(std::slice::from_ref(&p)).and_then(|s| s.frames());
        match (ok, frames) {
            (true, Ok(frames)) => {
                let mut per: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
                for f in &frames {
                    if f.kind != Kind::Lifecycle && f.method.as_deref() == Some("tools/call") {
                        result.calls_recorded += 1;
                    }
                    let e = per.entry(f.session_id.clone()).or_insert((u64::MAX, 0, 0));
                    e.0 = e.0.min(f.seq);
                    e.1 = e.1.max(f.seq);
                    e.2 += 1;
                }
                for (s, r) in per {
                    seqs.entry(s).or_default().push(r);
                }
            }
            _ => result.segments_failed.push(p.display().to_string()),
        }
    }
}

/// Runs the soak against the `mcptape` binary at `mcptape`, with captures under `scratch`.
pub fn run(mcptape: &Path, scratch: &Path, opts: &SoakOptions) -> anyhow::Result<SoakResult> {
    let up = upstream()?;
    let out = scratch.join("soak-captures");
    let secs = |d: Duration| format!("{}ms", d.as_millis());
    let mut child = std::process::Command::new(mcptape)
        .args([
            "record",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &format!("http://{up}/mcp"),
        ])
        .arg("--out")
        .arg(&out)
        .args([
            "--rotate-every",
            &secs(opts.rotate_every),
            "--retain-age",
            &secs(opts.retain_age),
        ])
        .args(["--metrics", "127.0.0.1:0"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("starting mcptape record")?;
    let pid = child.id();
    // Killed if the soak stops early (an error, a panic); stopped with SIGTERM at the end otherwise.
    struct KillOnDrop(u32);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &self.0.to_string()])
                .status();
        }
    }
    let guard = KillOnDrop(pid);
    let mut lines = BufReader::new(child.stderr.take().context("stderr")?).lines();
    let (mut listen, mut metrics) = (None, None);
    for line in lines.by_ref() {
        let line = line?;
        if let Some(a) = line.strip_prefix("mcptape: listening on http://") {
            listen = Some(a.trim().to_string());
        }
        if let Some(a) = line.strip_prefix("mcptape: metrics on http://") {
            metrics = Some(a.trim().trim_end_matches("/metrics").to_string());
        }
        if listen.is_some() && metrics.is_some() {
            break;
        }
    }
    let (Some(listen), Some(metrics)) = (listen, metrics) else {
        let _ = child.kill();
        anyhow::bail!("the tap did not start");
    };
    let log = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());
    let tap: SocketAddr = listen.parse()?;

    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let mut drivers = Vec::new();
    let interval = Duration::from_secs_f64(f64::from(opts.sessions) / f64::from(opts.rate.max(1)));
    for s in 0..opts.sessions {
        let (stop, answered, n) = (stop.clone(), answered.clone(), opts.sessions);
        drivers.push(std::thread::spawn(move || -> anyhow::Result<()> {
            let conn = TcpStream::connect(tap)?;
            conn.set_nodelay(true)?;
            let mut r = BufReader::new(conn.try_clone()?);
            let mut w = conn;
            let sid = format!("soak-{s}");
            // Sessions start spread over one interval, then keep a fixed schedule (no drift, no bursts).
            let start = Instant::now() + interval.mul_f64(f64::from(s) / f64::from(n));
            let mut i: u64 = 0;
            while !stop.load(Ordering::Relaxed) {
                let due = start + interval.mul_f64(i as f64);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                let body = format!(
                    r#"{{"jsonrpc":"2.0","id":{i},"method":"tools/call","params":{{"name":"echo","arguments":{{"n":{i}}}}}}}"#
                );
                write!(
                    w,
                    "POST /mcp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nMcp-Session-Id: {sid}\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )?;
                let (status, _, _) = read_http(&mut r).context("no answer")?;
                anyhow::ensure!(status.contains(" 200 "), "{status}");
                answered.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
            Ok(())
        }));
    }

    let mut result = SoakResult::default();
    let mut seen = BTreeSet::new();
    let mut seqs = SeqRanges::new();
    let began = Instant::now();
    while began.elapsed() < opts.duration {
        std::thread::sleep(opts.sample_every.min(opts.duration.saturating_sub(began.elapsed())));
        check_new_segments(mcptape, &out, &mut seen, &mut seqs, &mut result);
        let mut files = Vec::new();
        walk(&out, &mut files);
        result.samples.push(Sample {
            at_s: began.elapsed().as_secs_f64(),
            disk: files.iter().map(|f| f.1).sum(),
            segments: files
                .iter()
                .filter(|f| f.0.extension().is_some_and(|e| e == "parquet"))
                .count(),
            rss_kib: rss_kib(pid),
        });
        eprintln!(
            "soak: {:>5.0} s  {} requests  {} segments on disk  {} B  RSS {} KiB",
            began.elapsed().as_secs_f64(),
            answered.load(Ordering::Relaxed),
            result.samples.last().map_or(0, |s| s.segments),
            result.samples.last().map_or(0, |s| s.disk),
            result.samples.last().map_or(0, |s| s.rss_kib),
        );
    }
    stop.store(true, Ordering::Relaxed);
    for d in drivers {
        d.join().map_err(|_| anyhow::anyhow!("a driver panicked"))??;
    }
    result.requests = answered.load(Ordering::Relaxed);
    if let Ok(mut s) = TcpStream::connect(&metrics) {
        let _ = write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        result.dropped = text
            .lines()
            .find_map(|l| l.strip_prefix("mcptape_frames_dropped_total "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
    }
    nix_term(pid);
    let status = child.wait()?;
    std::mem::forget(guard);
    let log = log.join().unwrap_or_default();
    anyhow::ensure!(status.success(), "the tap exited with {status}: {}", log.join("\n"));
    // The last segment, written at exit.
    check_new_segments(mcptape, &out, &mut seen, &mut seqs, &mut result);
    result.segments_seen = seen.len();
    let mut files = Vec::new();
    walk(&out, &mut files);
    result.segments_left = files
        .iter()
        .filter(|f| f.0.extension().is_some_and(|e| e == "parquet"))
        .count();
    for (session, mut ranges) in seqs {
        ranges.sort_unstable();
        let mut next = 0u64;
        for (first, last, count) in ranges {
            if first != next || last - first + 1 != count {
                result.seq_breaks.push(format!(
                    "{session}: expected seq {next}, segment has {first}..={last} ({count} frames)"
                ));
            }
            next = last + 1;
        }
    }
    Ok(result)
}

fn nix_term(pid: u32) {
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
}

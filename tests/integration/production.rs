//! `mcptape record` as a long-running service: rotation into a hive layout, retention, recovery after a kill
//! (by `dataset recover` and by a restart), sampling through two taps, `/metrics` read by the Prometheus Python
//! parser, `--config`, SIGHUP/SIGTERM, and the unix-socket tap.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use mcptape_datasets::{Direction, Frame, Scan};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::util::*;

/// A running `mcptape record` service: stderr collected, the lines it announces captured.
struct Svc {
    child: Option<Child>,
    stderr: Arc<Mutex<String>>,
    listen: String,
    metrics: Option<String>,
}

impl Svc {
    /// Starts `mcptape ARGS` and waits for `listening on …` (and `metrics on …` when `--metrics` is given).
    fn start(args: &[&str]) -> Svc {
        Svc::start_with(args, &[])
    }

    /// [`Svc::start`] with extra environment variables.
    fn start_with(args: &[&str], envs: &[(&str, String)]) -> Svc {
        let want_metrics = args.contains(&"--metrics");
        let mut child = mcptape()
            .args(args)
            .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let err = child.stderr.take().unwrap();
        let text = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let sink = text.clone();
        std::thread::spawn(move || {
            let mut r = BufReader::new(err);
            let mut line = String::new();
            while r.read_line(&mut line).is_ok_and(|n| n > 0) {
                let l = line.trim();
                if let Some(a) = l.strip_prefix("mcptape: listening on ") {
                    let _ = tx.send(("listen", a.to_string()));
                }
                if let Some(a) = l.strip_prefix("mcptape: metrics on http://") {
                    let _ = tx.send(("metrics", a.trim_end_matches("/metrics").to_string()));
                }
                sink.lock().unwrap().push_str(&line);
                line.clear();
            }
        });
        let mut svc = Svc {
            child: Some(child),
            stderr: text,
            listen: String::new(),
            metrics: None,
        };
        while svc.listen.is_empty() || (want_metrics && svc.metrics.is_none()) {
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(("listen", a)) => svc.listen = a,
                Ok((_, a)) => svc.metrics = Some(a),
                Err(_) => panic!("the tap did not start: {}", svc.stderr.lock().unwrap()),
            }
        }
        svc
    }

    fn addr(&self) -> SocketAddr {
        self.listen.trim_start_matches("http://").parse().unwrap()
    }

    fn signal(&self, sig: Signal) {
        let pid = self.child.as_ref().unwrap().id();
        kill(Pid::from_raw(i32::try_from(pid).unwrap()), sig).unwrap();
    }

    /// SIGTERM; asserts exit 0; returns stderr.
    fn stop(mut self) -> String {
        self.signal(Signal::SIGTERM);
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(
                Instant::now() < deadline,
                "no exit on SIGTERM: {}",
                self.stderr.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        std::thread::sleep(Duration::from_millis(50));
        let err = self.stderr.lock().unwrap().clone();
        assert_eq!(status.code(), Some(0), "{err}");
        assert!(err.contains("mcptape: recorded "), "{err}");
        assert!(!err.contains("panicked"), "{err}");
        err
    }
}

impl Drop for Svc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn frames(dir: &Path) -> Vec<Frame> {
    Scan::new(&[dir.to_path_buf()]).unwrap().frames().unwrap()
}

/// Asserts every session's seqs are 0..n with no hole, across all segments.
fn assert_seq_continuity(frames: &[Frame]) {
    let mut by: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for f in frames {
        by.entry(&f.session_id).or_default().push(f.seq);
    }
    for (s, seqs) in &mut by {
        seqs.sort_unstable();
        let want: Vec<u64> = (0..seqs.len() as u64).collect();
        assert_eq!(seqs, &want, "session {s}: seq has holes or repeats");
    }
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    mcptape_datasets::scan::discover(&[dir.to_path_buf()]).unwrap()
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn files_ending(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().ends_with(suffix) {
                out.push(p);
            }
        }
    }
    out
}

// ---- rotation, layout, recovery -----------------------------------------------------------------------------

#[test]
fn size_rotation_writes_a_hive_layout_that_verifies_with_seq_continuing_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("caps");
    let mut input = String::new();
    for i in 0..300 {
        input.push_str(&format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":{i},\"method\":\"tools/call\",\"params\":{{\"name\":\"echo\",\"n\":{i}}}}}\n"
        ));
    }
    let mut child = mcptape()
        .args([
            "record",
            "--out",
            out.to_str().unwrap(),
            "--rotate-size",
            "4KiB",
            "--lossless",
            "--",
            "cat",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || stdin.write_all(input.as_bytes()).unwrap());
    let o = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        o.stdout.iter().filter(|b| **b == b'\n').count(),
        300,
        "cat's output relayed"
    );
    assert!(stderr(&o).contains("segment(s) under"), "{}", stderr(&o));
    let segs = segments(&out);
    assert!(segs.len() > 3, "rotated by size: {segs:?}");
    for s in &segs {
        let rel = s.strip_prefix(&out).unwrap().to_string_lossy().into_owned();
        let parts: Vec<&str> = rel.split('/').collect();
        assert_eq!(parts.len(), 3, "{rel}");
        assert!(parts[0].starts_with("date=") && parts[0].len() == 15, "{rel}");
        assert!(parts[1].starts_with("hour=") && parts[1].len() == 7, "{rel}");
        assert!(parts[2].starts_with("cat-") && parts[2].ends_with(".parquet"), "{rel}");
    }
    assert!(files_ending(&out, ".journal").is_empty() && files_ending(&out, ".tmp").is_empty());
    let o = run(&["dataset", "verify", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let all = frames(&out);
    let messages = all
        .iter()
        .filter(|f| f.kind != mcptape_datasets::Kind::Lifecycle)
        .count();
    assert_eq!(
        messages, 600,
        "every message in both directions, none lost between segments"
    );
    assert_seq_continuity(&all);
    // pyarrow reads the folder as one table partitioned by date and hour.
    let script = r#"
import sys, pyarrow.dataset as ds
t = ds.dataset(sys.argv[1], format="parquet", partitioning="hive").to_table()
print(t.num_rows, sorted(set(t.column("date").to_pylist()))[0][:2], "hour" in t.column_names)
"#;
    let o = Command::new(python())
        .args(["-c", script, out.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.starts_with(&format!("{} 20 True", all.len())), "{text}");
}

#[test]
fn a_killed_rotating_recorder_is_recovered_by_dataset_recover_and_by_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("caps");
    let out_s = out.to_str().unwrap();
    let kill_mid_capture = |lines: usize| {
        let mut child = mcptape()
            .args(["record", "--out", out_s, "--rotate-every", "1h", "--", "cat"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        for i in 0..lines {
            writeln!(stdin, "{{\"jsonrpc\":\"2.0\",\"id\":{i},\"method\":\"ping\"}}").unwrap();
        }
        stdin.flush().unwrap();
        // The journal reaches the OS within the flush interval; wait until it holds every line sent.
        wait_until("the journal", || {
            files_ending(&out, ".journal").iter().any(|j| {
                let bytes = std::fs::read(j).unwrap_or_default();
                let c = mcptape_datasets::journal::read_journal(&bytes);
                c.batches.iter().map(|b| b.num_rows()).sum::<usize>() >= 2 * lines
            })
        });
        child.kill().unwrap();
        child.wait().unwrap();
        drop(stdin); // cat, orphaned, sees EOF and exits
    };
    kill_mid_capture(40);
    let journals = files_ending(&out, ".journal");
    assert_eq!(journals.len(), 1);
    let name = journals[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with(".cat-"),
        "the open journal is hidden from data readers: {name}"
    );
    let o = run(&["dataset", "recover", out_s]);
    assert!(o.status.success(), "{}", stderr(&o));
    let recovered = frames(&out);
    assert!(recovered.len() >= 80, "{}", recovered.len());
    assert!(
        segments(&out)[0].parent().unwrap().to_string_lossy().contains("/hour="),
        "recovered into its partition"
    );

    // Killed again; this time the next start of the recorder finishes the leftover journal itself.
    kill_mid_capture(25);
    let o = mcptape()
        .args(["record", "--out", out_s, "--rotate-every", "1h", "--", "true"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("from the leftover journal"), "{}", stderr(&o));
    assert!(files_ending(&out, ".journal").is_empty());
    let o = run(&["dataset", "verify", out_s]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let all = frames(&out);
    let sessions: BTreeSet<&str> = all.iter().map(|f| f.session_id.as_str()).collect();
    assert_eq!(sessions.len(), 3, "two killed captures and the restart");
    assert!(all.iter().filter(|f| f.method.as_deref() == Some("ping")).count() >= 2 * (40 + 25));
    assert_seq_continuity(&all);
}

// ---- a small Streamable HTTP upstream -----------------------------------------------------------------------

/// A status or request line, headers (lower-case names) and body.
type HttpMessage = (String, Vec<(String, String)>, Vec<u8>);

fn read_http(s: &mut impl BufRead) -> Option<HttpMessage> {
    let mut first = String::new();
    if s.read_line(&mut first).ok()? == 0 {
        return None;
    }
    let mut headers = Vec::new();
    loop {
        let mut l = String::new();
        s.read_line(&mut l).ok()?;
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
    s.read_exact(&mut body).ok()?;
    Some((first.trim_end().to_string(), headers, body))
}

/// An MCP server over Streamable HTTP that names each session after its client (`sid-<clientInfo.name>`), so
/// the same traffic through two taps carries the same Mcp-Session-Ids.
fn upstream() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut r = BufReader::new(conn.try_clone().unwrap());
                let mut w = conn;
                while let Some((_, _, body)) = read_http(&mut r) {
                    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                    let (status, extra, out) = match (v.get("id"), v["method"].as_str()) {
                        (None, _) => ("202 Accepted", String::new(), String::new()),
                        (Some(id), Some("initialize")) => {
                            let sid = format!("sid-{}", v["params"]["clientInfo"]["name"].as_str().unwrap_or("x"));
                            let res = serde_json::json!({"jsonrpc":"2.0","id":id,"result":{
                                "protocolVersion":"2025-11-25","capabilities":{},"serverInfo":{"name":"up","version":"1"}}});
                            ("200 OK", format!("Mcp-Session-Id: {sid}\r\n"), res.to_string())
                        }
                        (Some(id), m) => {
                            let res = serde_json::json!({"jsonrpc":"2.0","id":id,"result":{"echo":m}});
                            ("200 OK", String::new(), res.to_string())
                        }
                    };
                    let ctype = if out.is_empty() {
                        ""
                    } else {
                        "Content-Type: application/json\r\n"
                    };
                    let head = format!(
                        "HTTP/1.1 {status}\r\n{ctype}{extra}Content-Length: {}\r\n\r\n",
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
    addr
}

/// POSTs a JSON-RPC message; returns (status, Mcp-Session-Id, body).
fn post(addr: SocketAddr, session: Option<&str>, body: &str) -> (u16, Option<String>, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    let sid = session.map_or(String::new(), |v| format!("Mcp-Session-Id: {v}\r\n"));
    let req = format!(
        "POST /mcp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\n{sid}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut r = BufReader::new(s);
    let (first, headers, body) = read_http(&mut r).unwrap();
    let status = first.split_whitespace().nth(1).unwrap().parse().unwrap();
    let sid = headers
        .iter()
        .find(|(k, _)| k == "mcp-session-id")
        .map(|(_, v)| v.clone());
    (status, sid, String::from_utf8(body).unwrap())
}

/// One MCP session of `calls` tool calls from client `name`.
fn session(addr: SocketAddr, name: &str, calls: usize) {
    let init = format!(
        r#"{{"jsonrpc":"2.0","id":0,"method":"initialize","params":{{"protocolVersion":"2025-11-25","capabilities":{{}},"clientInfo":{{"name":"{name}","version":"1"}}}}}}"#
    );
    let (status, sid, body) = post(addr, None, &init);
    assert_eq!(status, 200, "{body}");
    let sid = sid.expect("the server assigns a session");
    let (status, _, _) = post(
        addr,
        Some(&sid),
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    );
    assert_eq!(status, 202);
    for i in 1..=calls {
        let call = format!(r#"{{"jsonrpc":"2.0","id":{i},"method":"tools/call","params":{{"name":"echo"}}}}"#);
        let (status, _, body) = post(addr, Some(&sid), &call);
        assert_eq!(status, 200);
        assert!(body.contains("\"echo\":\"tools/call\""), "{body}");
    }
}

fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut r = BufReader::new(s);
    let (first, _, body) = read_http(&mut r).unwrap();
    (
        first.split_whitespace().nth(1).unwrap().parse().unwrap(),
        String::from_utf8(body).unwrap(),
    )
}

#[test]
fn metrics_parsed_by_the_prometheus_parser_agree_with_the_capture_and_sighup_rotates() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("caps");
    let up = format!("http://{}/mcp", upstream());
    let tap = Svc::start(&[
        "record",
        "--out",
        out.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        &up,
        "--rotate-every",
        "1h",
        "--metrics",
        "127.0.0.1:0",
        "--grace",
        "2s",
    ]);
    let metrics = tap.metrics.clone().unwrap();
    assert_eq!(http_get(&metrics, "/healthz"), (200, "ok\n".into()));
    for c in 0..4 {
        session(tap.addr(), &format!("client{c}"), 3 + c);
    }
    // SIGHUP closes the segment; the writer handles it after every frame queued before it, so once the
    // segment exists the counters cover all the traffic.
    tap.signal(Signal::SIGHUP);
    wait_until("the rotated segment", || !files_ending(&out, ".parquet").is_empty());
    let (status, text) = http_get(&metrics, "/metrics");
    assert_eq!(status, 200);
    let err = tap.stop();
    assert!(err.contains("SIGHUP: rotating"), "{err}");
    assert_eq!(
        segments(&out).len(),
        1,
        "nothing after the rotation: no second, empty segment"
    );

    let script = r#"
import sys, json
from prometheus_client.parser import text_string_to_metric_families
out = []
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        out.append([fam.type, s.name, s.labels, s.value])
print(json.dumps(out))
"#;
    let mut py = Command::new(python())
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    py.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let o = py.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "the Prometheus parser rejected the exposition: {}\n{text}",
        stderr(&o)
    );
    let samples: Vec<(String, String, BTreeMap<String, String>, f64)> = serde_json::from_slice(&o.stdout).unwrap();
    let get = |name: &str, labels: &[(&str, &str)]| -> f64 {
        samples
            .iter()
            .filter(|(_, n, l, _)| n == name && labels.iter().all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v)))
            .map(|s| s.3)
            .sum()
    };

    let all = frames(&out);
    let mut by: BTreeMap<(String, String), f64> = BTreeMap::new();
    for f in &all {
        *by.entry((f.direction.as_str().to_string(), f.method.clone().unwrap_or_default()))
            .or_default() += 1.0;
    }
    let mut from_metrics: BTreeMap<(String, String), f64> = BTreeMap::new();
    for (_, n, l, v) in &samples {
        if n == "mcptape_frames_total" {
            from_metrics.insert((l["direction"].clone(), l["method"].clone()), *v);
        }
    }
    assert_eq!(from_metrics, by, "frames by direction and method");
    for d in [Direction::C2s, Direction::S2c] {
        let bytes: usize = all.iter().filter(|f| f.direction == d).map(|f| f.payload.len()).sum();
        assert_eq!(get("mcptape_bytes_total", &[("direction", d.as_str())]), bytes as f64);
    }
    let calls = all
        .iter()
        .filter(|f| f.direction == Direction::S2c && f.method.as_deref() == Some("tools/call"))
        .count();
    assert_eq!(calls, 3 + 4 + 5 + 6);
    assert_eq!(
        get("mcptape_upstream_latency_seconds_count", &[("method", "tools/call")]),
        calls as f64
    );
    assert_eq!(
        get(
            "mcptape_upstream_latency_seconds_bucket",
            &[("method", "tools/call"), ("le", "+Inf")]
        ),
        calls as f64
    );
    assert_eq!(get("mcptape_sessions_total", &[]), 4.0);
    assert_eq!(get("mcptape_frames_dropped_total", &[]), 0.0);
    assert_eq!(get("mcptape_segments_written_total", &[]), 1.0);
    assert_eq!(get("mcptape_upload_backlog_segments", &[]), 0.0);
    assert!(
        samples
            .iter()
            .any(|s| s.1 == "mcptape_journal_lag_seconds" && s.0 == "gauge")
    );
    assert!(samples.iter().any(|s| s.1 == "mcptape_sessions_open" && s.0 == "gauge"));
}

#[test]
fn sampling_through_two_taps_keeps_the_same_whole_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let up = format!("http://{}/mcp", upstream());
    let mut kept_sets = Vec::new();
    for tap_no in 0..2 {
        let out = dir.path().join(format!("tap{tap_no}"));
        let tap = Svc::start(&[
            "record",
            "--out",
            out.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &up,
            "--sample",
            "0.5",
            "--rotate-size",
            "2KiB",
        ]);
        // Every session works through the tap, recorded or not.
        for c in 0..24 {
            session(tap.addr(), &format!("c{c}"), 2);
        }
        tap.stop();
        let all = frames(&out);
        let mut by: BTreeMap<String, Vec<&Frame>> = BTreeMap::new();
        for f in &all {
            by.entry(f.mcp_session.clone().unwrap_or_default()).or_default().push(f);
        }
        for (sid, fs) in &by {
            let calls = fs.iter().filter(|f| f.method.as_deref() == Some("tools/call")).count();
            let inits = fs.iter().filter(|f| f.method.as_deref() == Some("initialize")).count();
            assert_eq!((inits, calls), (2, 4), "session {sid} is recorded whole");
        }
        assert_seq_continuity(&all);
        let sampled_out: u64 = Scan::new(std::slice::from_ref(&out))
            .unwrap()
            .metas()
            .unwrap()
            .iter()
            .map(|(_, m, _)| m.sampled_out_sessions)
            .sum();
        assert_eq!(sampled_out + by.len() as u64, 24, "kept + sampled out = all sessions");
        assert!(!by.is_empty() && by.len() < 24, "kept {} of 24", by.len());
        kept_sets.push(by.into_keys().collect::<BTreeSet<_>>());
    }
    assert_eq!(kept_sets[0], kept_sets[1], "both taps keep the same sessions");
}

// ---- unix sockets and --config ------------------------------------------------------------------------------

/// An NDJSON server on a unix socket: answers each line with `{"echo":<line>}`.
fn echo_server(path: &Path) {
    let l = std::os::unix::net::UnixListener::bind(path).unwrap();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut w = conn.try_clone().unwrap();
                for line in BufReader::new(conn).lines() {
                    let Ok(line) = line else { break };
                    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
                    let answer = serde_json::json!({"jsonrpc":"2.0","id":v["id"],"result":{"echo":line}});
                    if writeln!(w, "{answer}").is_err() {
                        break;
                    }
                }
            });
        }
    });
}

#[test]
fn unix_socket_tap_from_a_config_file_relays_ndjson_byte_exact_one_session_per_connection() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (up, listen, out) = (
        dir.path().join("up.sock"),
        dir.path().join("tap.sock"),
        dir.path().join("caps"),
    );
    echo_server(&up);
    let config = dir.path().join("record.toml");
    std::fs::write(
        &config,
        format!(
            "out = \"{}\"\nlisten = \"unix:{}\"\nupstream = \"unix:{}\"\nrotate-every = \"1h\"\nsample = 0\n",
            out.display(),
            listen.display(),
            up.display()
        ),
    )
    .unwrap();
    // The command line wins over the file: --sample 1 records everything.
    let tap = Svc::start(&["record", "--config", config.to_str().unwrap(), "--sample", "1"]);
    assert_eq!(tap.listen, format!("unix:{}", listen.display()));
    let mode = std::fs::metadata(&listen).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the socket is private");
    let mut sent = 0;
    for conn in 0..3 {
        let s = std::os::unix::net::UnixStream::connect(&listen).unwrap();
        let mut w = s.try_clone().unwrap();
        let mut r = BufReader::new(s);
        for i in 0..=conn {
            let msg =
                format!("{{\"jsonrpc\":\"2.0\",\"id\":{i},\"method\":\"tools/call\",\"params\":{{\"c\":{conn}}}}}");
            writeln!(w, "{msg}").unwrap();
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            let want = serde_json::json!({"jsonrpc":"2.0","id":i,"result":{"echo":msg}}).to_string() + "\n";
            assert_eq!(line, want, "answers pass byte for byte");
            sent += 1;
        }
        w.shutdown(std::net::Shutdown::Write).unwrap();
        let mut rest = String::new();
        r.read_to_string(&mut rest).unwrap();
        assert!(rest.is_empty());
    }
    tap.stop();
    assert!(!listen.exists(), "the socket file is removed at exit");
    let all = frames(&out);
    let sessions: BTreeSet<&str> = all.iter().map(|f| f.session_id.as_str()).collect();
    assert_eq!(sessions.len(), 3, "one session per connection");
    assert!(sessions.iter().all(|s| s.starts_with("unix-")));
    let calls = |d: Direction| {
        all.iter()
            .filter(|f| f.direction == d && f.method.as_deref() == Some("tools/call"))
            .count()
    };
    assert_eq!((calls(Direction::C2s), calls(Direction::S2c)), (sent, sent));
    assert_seq_continuity(&all);
    let metas = Scan::new(std::slice::from_ref(&out)).unwrap().metas().unwrap();
    assert!(
        metas
            .iter()
            .all(|(_, m, _)| m.transport == "unix" && m.target.starts_with("unix:"))
    );
}

#[test]
fn production_flags_are_checked_with_one_line_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("caps");
    let out_s = out.to_str().unwrap();
    let o = run(&["record", "--out", out_s, "--retain-size", "1GiB", "--", "true"]);
    assert_one_line_error(&o, 2, &["--retain-age/--retain-size", "--rotate-every"]);
    let o = run(&["record", "--out", out_s, "--sample", "1.5", "--", "true"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("fraction"), "{}", stderr(&o));
    let o = run(&["record", "--out", out_s, "--rotate-size", "lots", "--", "true"]);
    assert_eq!(o.status.code(), Some(2));
    let o = run(&["record", "--out", out_s, "--metrics", "0.0.0.0:0", "--", "true"]);
    assert_one_line_error(&o, 2, &["--metrics", "--allow-remote"]);
    let o = run(&[
        "record",
        "--out",
        out_s,
        "--listen",
        "unix:/nonexistent-dir/x.sock",
        "--upstream",
        "http://127.0.0.1:9/",
    ]);
    assert_one_line_error(&o, 2, &["--upstream", "unix:PATH"]);
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "listen = \"127.0.0.1:0\"\nrotate_every = \"1m\"\n").unwrap();
    let o = run(&["record", "--config", bad.to_str().unwrap()]);
    assert_one_line_error(&o, 2, &["bad.toml", "unknown key `rotate_every`"]);
    assert!(!out.exists(), "nothing is written when the tap cannot start");
}

/// A moto S3 server (`python -m moto.server`, pinned in tests/python/requirements.txt) on a free loopback port,
/// with one bucket; killed when dropped.
struct Moto(Child, u16);

impl Moto {
    fn start(bucket: &str) -> Moto {
        let port = free_port();
        let child = Command::new(python())
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto");
        let moto = Moto(child, port);
        let deadline = Instant::now() + Duration::from_secs(60);
        while moto.http("PUT", &format!("/{bucket}")).0 != 200 {
            assert!(Instant::now() < deadline, "moto did not come up");
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }

    /// One plain unsigned HTTP/1.0 request (moto answers bucket-level ones): (status, body).
    fn http(&self, method: &str, path: &str) -> (u16, Vec<u8>) {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.1)) else {
            return (0, Vec::new());
        };
        let _ = write!(
            s,
            "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n"
        );
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            return (0, Vec::new());
        };
        let status = String::from_utf8_lossy(&buf[..end])
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        (status, buf[end + 4..].to_vec())
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn upload_sends_every_rotated_segment_to_s3_and_keeps_none_locally_once_confirmed() {
    let moto = Moto::start("caps");
    let dir = tempfile::tempdir().unwrap();
    let cap = fixture_capture(dir.path());
    let served = serve_http(&cap, &[]);
    let out = dir.path().join("out");
    let envs = [
        ("AWS_ACCESS_KEY_ID", "test".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_string()),
        ("AWS_REGION", "us-east-1".to_string()),
        ("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{}", moto.1)),
    ];
    let svc = Svc::start_with(
        &[
            "record",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &served.1,
            "--out",
            out.to_str().unwrap(),
            "--rotate-size",
            "4KiB",
            "--upload",
            "s3://caps/prod/tap1",
        ],
        &envs,
    );
    let tap = format!("{}/mcp", svc.listen);
    for _ in 0..4 {
        let o = mcptape()
            .args(["replay", cap.to_str().unwrap(), "--target", &tap])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let err = svc.stop();
    let recorded: u64 = err
        .lines()
        .find_map(|l| l.strip_prefix("mcptape: recorded ")?.split(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("{err}"));
    let line = err
        .lines()
        .find(|l| l.starts_with("mcptape: uploaded "))
        .unwrap_or_else(|| panic!("no upload summary: {err}"));
    assert!(line.contains("; 0 waiting"), "{line}");
    let uploaded: usize = line["mcptape: uploaded ".len()..]
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(uploaded >= 2, "rotation at 4 KiB should give several segments: {line}");

    // Confirmed segments left the capture folder.
    let mut local = Vec::new();
    let mut stack = vec![out.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                local.push(p);
            }
        }
    }
    assert!(local.is_empty(), "uploaded segments still local: {local:?}");

    // Every object is a hive-layout segment under the prefix; downloaded, they hold every recorded frame.
    let (status, listing) = moto.http("GET", "/caps?list-type=2&prefix=prod/tap1/");
    assert_eq!(status, 200);
    let listing = String::from_utf8(listing).unwrap();
    let keys: Vec<&str> = listing
        .split("<Key>")
        .skip(1)
        .filter_map(|k| k.split("</Key>").next())
        .collect();
    assert_eq!(keys.len(), uploaded, "{listing}");
    let down = dir.path().join("down");
    for key in &keys {
        let rel = key.strip_prefix("prod/tap1/").unwrap();
        assert!(rel.starts_with("date=") && rel.contains("/hour="), "{key}");
    }
    // Objects are read back with boto3 (moto's dependency), signed as any S3 client would.
    let script = r#"
import os, sys, boto3
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1",
                  aws_access_key_id="test", aws_secret_access_key="test")
for o in s3.list_objects_v2(Bucket="caps", Prefix="prod/tap1/")["Contents"]:
    path = os.path.join(sys.argv[2], o["Key"][len("prod/tap1/"):])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    s3.download_file("caps", o["Key"], path)
"#;
    let o = Command::new(python())
        .args([
            "-c",
            script,
            &format!("http://127.0.0.1:{}", moto.1),
            down.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let v = mcptape().args(["dataset", "verify"]).arg(&down).output().unwrap();
    assert!(v.status.success(), "{}", stderr(&v));
    let frames = Scan::new(std::slice::from_ref(&down)).unwrap().frames().unwrap();
    assert_eq!(frames.len() as u64, recorded);
}

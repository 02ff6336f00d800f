//! `mcptape record --listen ADDR --upstream URL`: the HTTP tap against real peers (the Python SDK client with
//! server-everything over Streamable HTTP and the legacy HTTP+SSE transport, mcp-server-time over Streamable HTTP
//! in both eras, the conformance suite, the SDK 1.x WebSocket client and server), and against small upstreams
//! written here for what real peers cannot show on demand: pacing, failures, hostile clients, a thousand sessions.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mcptape_datasets::{Direction, Frame, Kind, Scan, Transport};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::util::*;

// ---- the tap ------------------------------------------------------------------------------------------------

/// A running `mcptape record --listen`, stopped with SIGTERM (and killed if a test panics first).
pub(crate) struct TapProc {
    child: Option<Child>,
    pub(crate) addr: SocketAddr,
    stderr: Arc<Mutex<String>>,
    reader: Option<JoinHandle<()>>,
}

impl TapProc {
    pub(crate) fn start(out: &Path, upstream: &str, extra: &[&str]) -> TapProc {
        Self::start_on("127.0.0.1:0", out, upstream, extra)
    }

    fn start_on(listen: &str, out: &Path, upstream: &str, extra: &[&str]) -> TapProc {
        spawn_tap(mcptape(), listen, out, upstream, extra)
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// SIGTERM; asserts the tap exits 0, printed nothing on stdout and said where the capture is. Returns stderr.
    pub(crate) fn stop(mut self) -> String {
        let mut child = self.child.take().unwrap();
        kill(Pid::from_raw(i32::try_from(child.id()).unwrap()), Signal::SIGTERM).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the tap did not stop on SIGTERM: {}", self.stderr.lock().unwrap());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut out = String::new();
        child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
        self.reader.take().unwrap().join().unwrap();
        let err = self.stderr.lock().unwrap().clone();
        assert_eq!(status.code(), Some(0), "{err}");
        assert!(out.is_empty(), "the tap printed to stdout: {out:?}");
        assert!(err.contains("mcptape: recorded "), "{err}");
        assert!(!err.contains("panicked"), "{err}");
        err
    }
}

impl Drop for TapProc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts `record --listen` from `cmd` (the binary, with whatever environment the test set).
fn spawn_tap(mut cmd: Command, listen: &str, out: &Path, upstream: &str, extra: &[&str]) -> TapProc {
    let mut child = cmd
        .args([
            "record",
            "--out",
            out.to_str().unwrap(),
            "--listen",
            listen,
            "--upstream",
            upstream,
        ])
        .args(["--grace", "2s"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mcptape starts");
    let err = child.stderr.take().unwrap();
    let text = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = mpsc::channel();
    let sink = text.clone();
    let reader = std::thread::spawn(move || {
        let mut r = BufReader::new(err);
        let mut line = String::new();
        while r.read_line(&mut line).is_ok_and(|n| n > 0) {
            if let Some(a) = line.trim().strip_prefix("mcptape: listening on http://") {
                let _ = tx.send(a.to_string());
            }
            sink.lock().unwrap().push_str(&line);
            line.clear();
        }
    });
    let Ok(addr) = rx.recv_timeout(Duration::from_secs(60)) else {
        let _ = child.kill();
        panic!("the tap did not say where it listens: {}", text.lock().unwrap());
    };
    let mut addr: SocketAddr = addr.parse().unwrap();
    if addr.ip().is_unspecified() {
        addr.set_ip([127, 0, 0, 1].into());
    }
    TapProc {
        child: Some(child),
        addr,
        stderr: text,
        reader: Some(reader),
    }
}

pub(crate) fn frames(dir: &Path) -> Vec<Frame> {
    Scan::new(&[dir.to_path_buf()]).unwrap().frames().unwrap()
}

fn sessions(frames: &[Frame]) -> BTreeSet<String> {
    frames.iter().map(|f| f.session_id.clone()).collect()
}

fn header<'a>(f: &'a Frame, name: &str) -> Option<&'a str> {
    f.http
        .as_ref()?
        .headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

pub(crate) fn verify(dir: &Path) {
    let o = run(&["dataset", "verify", dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
}

// ---- real peers ---------------------------------------------------------------------------------------------

/// A peer process, killed at the end of the test.
struct Peer(Child);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for_port(port: u16, child: &mut Child) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Starts a peer that listens on the port it is given (retrying with another port if it was taken meanwhile).
fn serve_on_free_port(start: impl Fn(u16) -> Command) -> (Peer, u16) {
    for _ in 0..5 {
        let port = free_port();
        let mut peer = Peer(
            start(port)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        if wait_for_port(port, &mut peer.0) {
            return (peer, port);
        }
    }
    panic!("the peer did not start listening");
}

fn everything(mode: &str) -> (Peer, u16) {
    serve_on_free_port(|port| {
        let mut c = Command::new(npm_bin("mcp-server-everything"));
        c.arg(mode).env("PORT", port.to_string());
        c
    })
}

fn time_server() -> (Peer, u16) {
    serve_on_free_port(|port| {
        let mut c = Command::new(python());
        c.arg("-c").arg(format!(
            "import anyio; from mcp_server_time.server import create_server; \
             anyio.run(lambda: create_server('UTC').run_streamable_http_async(host='127.0.0.1', port={port}))"
        ));
        c
    })
}

/// tests/peers/client.py; its stdout (one JSON document).
fn client_py(args: &[&str]) -> String {
    let o = Command::new(python())
        .arg(peers().join("client.py"))
        .args(args)
        .current_dir(peers())
        .output()
        .expect("the test python runs");
    assert!(o.status.success(), "client.py {args:?} failed:\n{}", stderr(&o));
    stdout(&o)
}

fn method_counts(frames: &[Frame], kind: Kind, dir: Direction) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for f in frames.iter().filter(|f| f.kind == kind && f.direction == dir) {
        *m.entry(f.method.clone().unwrap_or_default()).or_default() += 1;
    }
    m
}

/// What every capture of server-everything's script must hold, whatever the HTTP transport.
fn check_everything_capture(frames: &[Frame]) {
    assert!(
        frames.iter().all(|f| f.kind != Kind::Invalid),
        "every message classified"
    );
    let requests = method_counts(frames, Kind::Request, Direction::C2s);
    for m in [
        "initialize",
        "tools/list",
        "tools/call",
        "resources/read",
        "prompts/get",
        "ping",
    ] {
        assert!(requests.contains_key(m), "no {m} request recorded: {requests:?}");
    }
    let server_requests = method_counts(frames, Kind::Request, Direction::S2c);
    let client_answers = method_counts(frames, Kind::Response, Direction::C2s);
    for m in ["sampling/createMessage", "elicitation/create", "roots/list"] {
        assert!(
            server_requests.contains_key(m),
            "no {m} from the server: {server_requests:?}"
        );
        assert_eq!(server_requests.get(m), client_answers.get(m), "{m} answers not paired");
    }
    let answers: Vec<&Frame> = frames
        .iter()
        .filter(|f| f.direction == Direction::S2c && f.kind.is_answer())
        .collect();
    assert_eq!(
        answers.len(),
        requests.values().sum::<usize>(),
        "every request answered"
    );
    assert!(answers.iter().all(|f| f.latency_ns.is_some()));
    assert!(
        answers
            .iter()
            .all(|f| f.http.as_ref().is_some_and(|h| h.status == Some(200))),
        "answers carry their http status"
    );
    assert!(
        frames
            .iter()
            .any(|f| f.transport == Transport::Sse && f.kind != Kind::Lifecycle),
        "SSE events recorded"
    );
}

// ---- raw HTTP for the tests' own upstreams and clients --------------------------------------------------------

#[derive(Debug)]
pub(crate) struct Resp {
    pub(crate) status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn parse_head(head: &[u8]) -> (u16, Vec<(String, String)>) {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = find(b, b"\r\n") {
        let size = String::from_utf8_lossy(&b[..eol]);
        let size = usize::from_str_radix(size.split(';').next().unwrap().trim(), 16).unwrap();
        if size == 0 {
            break;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[eol + 2 + size + 2..];
    }
    out
}

/// One request on a fresh connection (`Connection: close`), the whole response read back.
fn send(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(180))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let end = find(&raw, b"\r\n\r\n").unwrap_or_else(|| panic!("no response head: {raw:?}"));
    let (status, headers) = parse_head(&raw[..end]);
    let mut resp = Resp {
        status,
        headers,
        body: raw[end + 4..].to_vec(),
    };
    if resp.header("transfer-encoding").is_some_and(|t| t.contains("chunked")) {
        resp.body = dechunk(&resp.body);
    }
    resp
}

pub(crate) fn post_json(addr: SocketAddr, path: &str, headers: &[(&str, &str)], body: &str) -> Resp {
    let mut h = vec![
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
    ];
    h.extend_from_slice(headers);
    send(addr, "POST", path, &h, body.as_bytes())
}

/// An event stream read incrementally (HTTP/1.0, so the body is the stream itself, not chunked).
pub(crate) struct SseClient {
    s: TcpStream,
    buf: Vec<u8>,
    pub(crate) status: u16,
}

impl SseClient {
    pub(crate) fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> SseClient {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
        let mut req = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: text/event-stream\r\n");
        for (n, v) in headers {
            req.push_str(&format!("{n}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).unwrap();
        let mut c = SseClient {
            s,
            buf: Vec::new(),
            status: 0,
        };
        let end = loop {
            if let Some(e) = find(&c.buf, b"\r\n\r\n") {
                break e;
            }
            assert!(c.fill(), "the stream closed before its head");
        };
        c.status = parse_head(&c.buf[..end]).0;
        c.buf.drain(..end + 4);
        c
    }

    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 4096];
        match self.s.read(&mut chunk) {
            Ok(0) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(e) => panic!("reading the event stream: {e}"),
        }
    }

    /// The next event's fields (`event`, `data`, `id`); `None` at the end of the stream.
    pub(crate) fn next_event(&mut self) -> Option<BTreeMap<String, String>> {
        loop {
            if let Some(i) = find(&self.buf, b"\n\n") {
                let block: Vec<u8> = self.buf.drain(..i + 2).collect();
                let fields: BTreeMap<String, String> = String::from_utf8_lossy(&block)
                    .lines()
                    .filter(|l| !l.starts_with(':'))
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, v)| (k.to_string(), v.strip_prefix(' ').unwrap_or(v).to_string()))
                    .collect();
                if !fields.is_empty() {
                    return Some(fields);
                }
                continue;
            }
            if !self.fill() {
                return None;
            }
        }
    }
}

#[derive(Debug)]
pub(crate) struct Req {
    pub(crate) method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Req {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn read_req(s: &TcpStream) -> Option<Req> {
    let mut r = BufReader::new(s);
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if line == "\r\n" {
            break;
        }
        head.push(line.trim_end().to_string());
    }
    let first = head.first()?.clone();
    let mut parts = first.split(' ');
    let (method, path) = (parts.next()?.to_string(), parts.next()?.to_string());
    let headers: Vec<(String, String)> = head[1..]
        .iter()
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0usize);
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some(Req {
        method,
        path,
        headers,
        body,
    })
}

/// An upstream on `listener` calling `handler` for each request (one request per connection: every answer says
/// `Connection: close`).
fn raw_upstream_on(listener: TcpListener, handler: impl Fn(Req, TcpStream) + Send + Sync + 'static) -> SocketAddr {
    let addr = listener.local_addr().unwrap();
    let handler = Arc::new(handler);
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(s) = s else { continue };
            let h = handler.clone();
            std::thread::Builder::new()
                .stack_size(256 << 10)
                .spawn(move || {
                    if let Some(req) = read_req(&s) {
                        h(req, s);
                    }
                })
                .unwrap();
        }
    });
    addr
}

pub(crate) fn raw_upstream(handler: impl Fn(Req, TcpStream) + Send + Sync + 'static) -> SocketAddr {
    raw_upstream_on(TcpListener::bind("127.0.0.1:0").unwrap(), handler)
}

fn reply(mut s: TcpStream, status: &str, headers: &[(&str, &str)], content_type: &str, body: &str) {
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = s.write_all(head.as_bytes());
    let _ = s.write_all(body.as_bytes());
}

pub(crate) fn reply_json(s: TcpStream, headers: &[(&str, &str)], body: &str) {
    reply(s, "200 OK", headers, "application/json", body);
}

/// Starts an event stream (close-delimited).
pub(crate) fn sse_head(s: &mut TcpStream) {
    let head =
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n";
    s.write_all(head.as_bytes()).unwrap();
    s.flush().unwrap();
}

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
const INITIALIZE_RESULT: &str = r#"{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-11-25","capabilities":{},"serverInfo":{"name":"raw","version":"1"}}}"#;

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !cond() {
        assert!(Instant::now() < deadline, "gave up waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn raise_nofile() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
}

// ---- real peers through the tap -----------------------------------------------------------------------------

#[test]
fn python_sdk_client_to_server_everything_over_streamable_http_is_unchanged_by_the_tap() {
    let dir = tempfile::tempdir().unwrap();
    let (_peer, port) = everything("streamableHttp");
    let upstream = format!("http://127.0.0.1:{port}/mcp");
    let tap = TapProc::start(dir.path(), &upstream, &[]);
    let direct = client_py(&["--transport", "http", "--url", &upstream]);
    let through = client_py(&["--transport", "http", "--url", &tap.url("/mcp")]);
    assert_eq!(direct, through, "the client saw a difference through the tap");
    tap.stop();
    let frames = frames(dir.path());
    check_everything_capture(&frames);
    let ids = sessions(&frames);
    assert_eq!(ids.len(), 1, "one Mcp-Session-Id, one session: {ids:?}");
    assert!(ids.iter().all(|s| s.starts_with("http-")), "{ids:?}");
    assert!(
        frames
            .iter()
            .all(|f| f.mcp_session.as_deref().is_some_and(|s| s.starts_with("sha256:"))),
        "Mcp-Session-Id recorded hashed on every frame"
    );
    assert!(
        frames
            .iter()
            .any(|f| f.transport == Transport::Sse && f.http.as_ref().is_some_and(|h| h.sse_event_id.is_some())),
        "SSE events recorded with their ids (server-everything keeps an event store for resumption)"
    );
    assert!(
        frames
            .iter()
            .any(|f| f.method.as_deref() == Some("mcptape/http-request")
                && f.http.as_ref().is_some_and(|h| h.method.as_deref() == Some("DELETE"))),
        "the client's DELETE is recorded"
    );
    verify(dir.path());
}

#[test]
fn python_sdk_client_to_server_everything_over_legacy_sse_is_unchanged_by_the_tap() {
    let dir = tempfile::tempdir().unwrap();
    let (_peer, port) = everything("sse");
    let upstream = format!("http://127.0.0.1:{port}/sse");
    let tap = TapProc::start(dir.path(), &upstream, &[]);
    let direct = client_py(&["--transport", "sse", "--url", &upstream]);
    let through = client_py(&["--transport", "sse", "--url", &tap.url("/sse")]);
    assert_eq!(direct, through, "the client saw a difference through the tap");
    tap.stop();
    let frames = frames(dir.path());
    check_everything_capture(&frames);
    let ids = sessions(&frames);
    assert_eq!(
        ids.len(),
        1,
        "the stream and the posts to its endpoint are one session: {ids:?}"
    );
    assert!(ids.iter().all(|s| s.starts_with("sse-")), "{ids:?}");
    let endpoint = frames
        .iter()
        .find(|f| f.method.as_deref() == Some("mcptape/endpoint"))
        .expect("the endpoint event is recorded");
    let endpoint = String::from_utf8_lossy(&endpoint.payload).into_owned();
    assert!(endpoint.starts_with("/message?sessionId="), "{endpoint}");
    let posts: Vec<&Frame> = frames
        .iter()
        .filter(|f| f.direction == Direction::C2s && f.kind != Kind::Lifecycle)
        .collect();
    assert!(
        posts
            .iter()
            .all(|f| f.http.as_ref().and_then(|h| h.path.as_deref()) == Some(endpoint.as_str()))
    );
    assert!(
        frames
            .iter()
            .filter(|f| f.direction == Direction::S2c && f.kind.is_answer())
            .all(|f| f.transport == Transport::Sse),
        "legacy answers arrive on the stream"
    );
    verify(dir.path());
}

#[test]
fn mcp_server_time_over_streamable_http_in_both_eras_through_the_tap() {
    let dir = tempfile::tempdir().unwrap();
    let (_peer, port) = time_server();
    let upstream = format!("http://127.0.0.1:{port}/mcp");
    let tap = TapProc::start(dir.path(), &upstream, &[]);
    for era in ["2025-11-25", "2026-07-28"] {
        let args = |url: &str| -> Vec<String> {
            ["--server", "time", "--era", era, "--transport", "http", "--url", url]
                .map(String::from)
                .to_vec()
        };
        let direct = client_py(&args(&upstream).iter().map(String::as_str).collect::<Vec<_>>());
        let through = client_py(&args(&tap.url("/mcp")).iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(direct, through, "{era}: the client saw a difference through the tap");
    }
    tap.stop();
    let frames = frames(dir.path());
    let by_version = |v: &str| -> BTreeSet<String> {
        frames
            .iter()
            .filter(|f| f.kind == Kind::Request && f.protocol_version.as_deref() == Some(v))
            .map(|f| f.session_id.clone())
            .collect()
    };
    let legacy = by_version("2025-11-25");
    assert_eq!(legacy.len(), 1, "{legacy:?}");
    assert!(legacy.iter().all(|s| s.starts_with("http-")), "{legacy:?}");
    // Stateless: no Mcp-Session-Id anywhere, and still the one client's requests together.
    let modern = by_version("2026-07-28");
    assert_eq!(
        modern.len(),
        1,
        "one client's stateless requests form one session: {modern:?}"
    );
    assert!(modern.iter().all(|s| s.starts_with("stateless-")), "{modern:?}");
    let stateless: Vec<&Frame> = frames.iter().filter(|f| modern.contains(&f.session_id)).collect();
    assert!(stateless.iter().all(|f| f.mcp_session.is_none()));
    let calls = stateless
        .iter()
        .filter(|f| f.kind == Kind::Request && f.method.as_deref() == Some("tools/call"))
        .collect::<Vec<_>>();
    assert!(calls.len() >= 3, "{}", calls.len());
    assert!(
        calls
            .iter()
            .all(|f| header(f, "mcp-method") == Some("tools/call") && header(f, "mcp-name").is_some()),
        "the 2026-07-28 Mcp-Method / Mcp-Name headers are passed and recorded"
    );
    assert!(
        stateless
            .iter()
            .filter(|f| f.direction == Direction::S2c && f.kind.is_answer())
            .all(|f| f.latency_ns.is_some())
    );
    verify(dir.path());
}

/// A conformance suite's summary: one line per scenario, `✓ name: N passed, M failed`. `package` is the folder
/// under node_modules (the stable suite, or `conformance-2026` for the 2026-07-28 scenarios).
fn conformance(package: &str, url: &str, extra: &[&str]) -> Vec<String> {
    let o = Command::new(node22())
        .arg(peers().join("node_modules").join(package).join("dist/index.js"))
        .args(["server", "--url", url])
        .args(extra)
        .current_dir(peers())
        .output()
        .expect("node runs the conformance suite");
    // It exits 1 when any scenario fails (server-everything fails some): the list is what is compared.
    let text = stdout(&o) + &stderr(&o);
    let summary = text
        .split("=== SUMMARY ===")
        .nth(1)
        .unwrap_or_else(|| panic!("no summary in the conformance output:\n{text}"));
    let lines: Vec<String> = summary
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with('✓') || l.starts_with('✗'))
        .map(String::from)
        .collect();
    assert!(lines.len() >= 15, "too few scenarios ran:\n{text}");
    lines
}

const CONFORMANCE: &str = "@modelcontextprotocol/conformance";

#[test]
fn conformance_suite_gives_the_same_pass_fail_list_directly_and_through_the_tap() {
    let dir = tempfile::tempdir().unwrap();
    let (_peer, port) = everything("streamableHttp");
    let upstream = format!("http://127.0.0.1:{port}/mcp");
    let direct = conformance(CONFORMANCE, &upstream, &[]);
    let tap = TapProc::start(dir.path(), &upstream, &[]);
    let through = conformance(CONFORMANCE, &tap.url("/mcp"), &[]);
    tap.stop();
    assert_eq!(direct, through, "the tap changed the conformance results");
    let frames = frames(dir.path());
    assert!(sessions(&frames).len() >= 20, "every scenario's session recorded");
    verify(dir.path());
}

#[test]
fn conformance_2026_07_28_scenarios_give_the_same_list_directly_and_through_the_tap() {
    // mcp-server-time is the only real 2026-07-28 HTTP server here; the pre-release suite has that era's scenarios.
    let dir = tempfile::tempdir().unwrap();
    let (_peer, port) = time_server();
    let upstream = format!("http://127.0.0.1:{port}/mcp");
    let era = ["--spec-version", "2026-07-28"];
    let direct = conformance("conformance-2026", &upstream, &era);
    let tap = TapProc::start(dir.path(), &upstream, &[]);
    let through = conformance("conformance-2026", &tap.url("/mcp"), &era);
    tap.stop();
    assert_eq!(direct, through, "the tap changed the conformance results");
    assert!(
        frames(dir.path())
            .iter()
            .any(|f| f.protocol_version.as_deref() == Some("2026-07-28")),
        "2026-07-28 traffic recorded"
    );
    verify(dir.path());
}

#[test]
fn python_sdk_1x_websocket_client_and_server_through_the_tap() {
    let dir = tempfile::tempdir().unwrap();
    let script = peers().join("ws_peer.py");
    let (server, line) = spawn_first_line(
        Command::new(python_ws())
            .arg(&script)
            .arg("server")
            .stderr(Stdio::null()),
    );
    let _server = Peer(server);
    let port: u16 = line
        .trim()
        .strip_prefix("PORT ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("ws_peer.py server said {line:?}"));
    let upstream = format!("ws://127.0.0.1:{port}/ws");
    let tap = TapProc::start(dir.path(), &upstream, &[]);
    let client = |url: &str| {
        let o = Command::new(python_ws())
            .arg(&script)
            .args(["client", "--url", url])
            .output()
            .unwrap();
        assert!(o.status.success(), "ws_peer.py client {url}: {}", stderr(&o));
        stdout(&o)
    };
    let direct = client(&upstream);
    let through = client(&format!("ws://{}/ws", tap.addr));
    assert_eq!(direct, through, "the client saw a difference through the tap");
    assert!(through.contains("echo: hello over websocket"), "{through}");

    // A refused upgrade is passed on as the upstream answered it.
    let refused = |addr: SocketAddr| {
        let headers = [
            ("upgrade", "websocket"),
            ("connection", "Upgrade"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ];
        send(addr, "GET", "/no-such-route", &headers, b"").status
    };
    let direct_status = refused(SocketAddr::from(([127, 0, 0, 1], port)));
    assert!(direct_status >= 400, "{direct_status}");
    assert_eq!(refused(tap.addr), direct_status);
    tap.stop();

    let frames = frames(dir.path());
    let ws_session = frames
        .iter()
        .find(|f| f.kind == Kind::Request && f.method.as_deref() == Some("initialize"))
        .map(|f| f.session_id.clone())
        .expect("the initialize request is recorded");
    assert!(ws_session.starts_with("ws-"), "{ws_session}");
    let messages: Vec<&Frame> = frames
        .iter()
        .filter(|f| f.session_id == ws_session && f.kind != Kind::Lifecycle)
        .collect();
    assert!(
        messages
            .iter()
            .all(|f| f.transport == Transport::Ws && f.kind != Kind::Invalid)
    );
    let requests = method_counts(&frames, Kind::Request, Direction::C2s);
    let answers = messages
        .iter()
        .filter(|f| f.direction == Direction::S2c && f.kind.is_answer() && f.latency_ns.is_some())
        .count();
    assert_eq!(
        answers,
        requests.values().sum::<usize>(),
        "each text message a frame, answers paired"
    );
    for m in ["initialize", "tools/list", "tools/call", "ping"] {
        assert!(requests.contains_key(m), "{requests:?}");
    }
    assert!(
        messages
            .iter()
            .any(|f| f.method.as_deref() == Some("notifications/message"))
    );
    verify(dir.path());
}

// ---- what the issue asks that real peers cannot show on demand ----------------------------------------------

#[test]
fn a_bearer_token_and_a_cookie_sent_through_the_tap_appear_nowhere_in_the_output_folder() {
    const TOKEN: &str = "tok-5e0c9f3a1b7d42e8";
    const COOKIE: &str = "ck-91d2a4c7e03b5f6a";
    const SET_COOKIE: &str = "setck-7a3e1f09c2d4b8e5";
    const RAW_SESSION: &str = "raw-session-id-3c8f1e";
    const MARKER: &str = "visible-marker-4b1e7d";
    let up = raw_upstream(|req, mut s| match req.method.as_str() {
        "GET" => {
            sse_head(&mut s);
            let _ = s.write_all(format!("id: 1\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{{\"data\":\"{MARKER}\"}}}}\n\n").as_bytes());
        }
        _ => {
            let set = format!("sid={SET_COOKIE}; HttpOnly");
            let body = if req.header("mcp-session-id").is_some() {
                format!(r#"{{"jsonrpc":"2.0","id":2,"result":{{"content":[{{"type":"text","text":"{MARKER}"}}]}}}}"#)
            } else {
                INITIALIZE_RESULT.to_string()
            };
            reply_json(s, &[("Mcp-Session-Id", RAW_SESSION), ("Set-Cookie", &set)], &body);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let tap = TapProc::start(dir.path(), &format!("http://{up}/mcp"), &[]);
    let auth = format!("Bearer {TOKEN}");
    let cookie = format!("sid={COOKIE}; theme=dark");
    let creds = [("authorization", auth.as_str()), ("cookie", cookie.as_str())];
    let r = post_json(tap.addr, "/mcp", &creds, INITIALIZE);
    assert_eq!((r.status, r.header("mcp-session-id")), (200, Some(RAW_SESSION)));
    assert!(
        r.header("set-cookie").is_some_and(|c| c.contains(SET_COOKIE)),
        "the client gets its cookie"
    );
    let mut with_session = creds.to_vec();
    with_session.push(("mcp-session-id", RAW_SESSION));
    let call = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"t","arguments":{}}}"#;
    assert_eq!(post_json(tap.addr, "/mcp", &with_session, call).status, 200);
    let mut stream = SseClient::get(tap.addr, "/mcp", &with_session);
    assert!(stream.next_event().is_some());
    // Stateless traffic with the same credentials (grouped by them in memory only).
    let ping = r#"{"jsonrpc":"2.0","id":3,"method":"ping"}"#;
    assert_eq!(post_json(tap.addr, "/mcp", &creds, ping).status, 200);

    let secrets = [TOKEN, COOKIE, SET_COOKIE, RAW_SESSION];
    let search = |phase: &str| {
        let files = files_under(dir.path());
        assert!(!files.is_empty());
        for f in files {
            let bytes = std::fs::read(&f).unwrap();
            for s in secrets {
                assert!(
                    find(&bytes, s.as_bytes()).is_none(),
                    "{phase}: {s} found in {}",
                    f.display()
                );
            }
        }
    };
    // While the tap runs, frames are in the (uncompressed) journal: the marker shows the search reads them.
    wait_until("the journal holds the frames", || {
        files_under(dir.path())
            .iter()
            .any(|f| std::fs::read(f).is_ok_and(|b| find(&b, MARKER.as_bytes()).is_some()))
    });
    search("while recording");
    drop(stream);
    tap.stop();
    search("after the capture was finished");
    // The Parquet segment is compressed: check its decoded values too.
    let frames = frames(dir.path());
    assert!(frames.iter().any(|f| header(f, "authorization") == Some("[REDACTED]")));
    assert!(frames.iter().any(|f| header(f, "cookie") == Some("[REDACTED]")));
    assert!(frames.iter().any(|f| header(f, "set-cookie") == Some("[REDACTED]")));
    for f in &frames {
        let mut text = String::from_utf8_lossy(&f.payload).into_owned();
        text.push_str(&format!("{:?} {:?} {}", f.http, f.mcp_session, f.session_id));
        for s in secrets {
            assert!(!text.contains(s), "{s} in a decoded frame: {text}");
        }
    }
}

#[test]
fn sse_events_reach_the_client_before_the_upstream_emits_the_next() {
    const EVENTS: usize = 5;
    let log: Arc<Mutex<Vec<String>>> = Arc::default();
    let upstream_log = log.clone();
    let up = raw_upstream(move |_req, mut s| {
        sse_head(&mut s);
        for n in 0..EVENTS {
            upstream_log.lock().unwrap().push(format!("emit {n}"));
            let event = format!(
                "id: {n}\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{{\"progress\":{n}}}}}\n\n"
            );
            if s.write_all(event.as_bytes()).and_then(|()| s.flush()).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let tap = TapProc::start(dir.path(), &format!("http://{up}/mcp"), &[]);
    let mut stream = SseClient::get(tap.addr, "/mcp", &[("mcp-session-id", "pacing")]);
    assert_eq!(stream.status, 200);
    for n in 0..EVENTS {
        let e = stream.next_event().expect("an event");
        assert_eq!(e.get("id").map(String::as_str), Some(n.to_string().as_str()));
        log.lock().unwrap().push(format!("recv {n}"));
    }
    assert!(
        stream.next_event().is_none(),
        "the stream ends when the upstream's does"
    );
    let log = log.lock().unwrap().clone();
    let at = |s: String| log.iter().position(|l| *l == s).unwrap();
    for n in 0..EVENTS - 1 {
        assert!(
            at(format!("recv {n}")) < at(format!("emit {}", n + 1)),
            "event {n} reached the client only after the upstream emitted event {}: {log:?}",
            n + 1
        );
    }
    tap.stop();
    let frames = frames(dir.path());
    let ids: Vec<_> = frames
        .iter()
        .filter(|f| f.transport == Transport::Sse && f.kind == Kind::Notification)
        .map(|f| f.http.as_ref().and_then(|h| h.sse_event_id.clone()).unwrap_or_default())
        .collect();
    assert_eq!(ids, ["0", "1", "2", "3", "4"], "one frame per event, with its id");
}

#[test]
fn a_silent_event_stream_outlives_the_header_and_idle_timeouts() {
    let up = raw_upstream(|req, mut s| {
        assert_eq!(req.header("last-event-id"), Some("41"), "Last-Event-ID passes through");
        sse_head(&mut s);
        // Silent for three times the tap's timeouts, then one event.
        std::thread::sleep(Duration::from_secs(3));
        let _ = s.write_all(b"id: 42\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\"}\n\n");
    });
    let dir = tempfile::tempdir().unwrap();
    let tap = TapProc::start(
        dir.path(),
        &format!("http://{up}/mcp"),
        &["--header-timeout", "1s", "--idle-timeout", "1s"],
    );
    let mut stream = SseClient::get(tap.addr, "/mcp", &[("mcp-session-id", "s"), ("last-event-id", "41")]);
    let e = stream
        .next_event()
        .expect("the stream is still open when the event comes");
    assert_eq!(e.get("id").map(String::as_str), Some("42"));
    tap.stop();
}

#[test]
fn an_unreachable_upstream_gets_a_502_json_rpc_error_recorded_and_the_tap_keeps_serving() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let tap = TapProc::start(dir.path(), &format!("http://127.0.0.1:{port}/mcp"), &[]);
    let r = post_json(
        tap.addr,
        "/mcp",
        &[],
        r#"{"jsonrpc":"2.0","id":"req-7","method":"tools/list"}"#,
    );
    assert_eq!(r.status, 502);
    let v = r.json();
    assert_eq!(v["jsonrpc"], "2.0");
    assert_eq!(v["id"], "req-7");
    assert_eq!(v["error"]["code"], -32000);
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.starts_with("mcptape: upstream unreachable: "), "{msg}");
    let r = post_json(
        tap.addr,
        "/mcp",
        &[],
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    );
    assert_eq!((r.status, r.json()["id"].clone()), (502, serde_json::Value::Null));

    // The upstream comes up: the same tap now forwards.
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("the upstream's port is still free");
    raw_upstream_on(listener, |_req, s| {
        reply_json(s, &[], r#"{"jsonrpc":"2.0","id":8,"result":{}}"#)
    });
    let r = post_json(tap.addr, "/mcp", &[], r#"{"jsonrpc":"2.0","id":8,"method":"ping"}"#);
    assert_eq!((r.status, r.json()["id"].clone()), (200, serde_json::json!(8)));
    tap.stop();

    let frames = frames(dir.path());
    let error = frames
        .iter()
        .find(|f| f.kind == Kind::Error)
        .expect("the 502 answer is recorded");
    assert_eq!(error.rpc_id.as_deref(), Some("\"req-7\""));
    assert_eq!(error.error_code, Some(-32000));
    assert_eq!(error.method.as_deref(), Some("tools/list"), "paired with its request");
    assert_eq!(error.http.as_ref().and_then(|h| h.status), Some(502));
    assert!(
        frames
            .iter()
            .any(|f| f.kind == Kind::Response && f.method.as_deref() == Some("ping"))
    );
}

/// Reads one response with a `Content-Length` body off a kept-alive connection: (status, body).
/// A connection to `addr` kept alive across requests: its reading side for [`read_kept_alive`], its writing side.
fn kept_alive(addr: SocketAddr) -> (BufReader<TcpStream>, TcpStream) {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    (BufReader::new(s.try_clone().unwrap()), s)
}

fn read_kept_alive(r: &mut BufReader<TcpStream>) -> (u16, String) {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let n = r.read_until(b'\n', &mut head).unwrap();
        assert!(
            n > 0,
            "the tap closed the connection: {:?}",
            String::from_utf8_lossy(&head)
        );
    }
    let (status, headers) = parse_head(&head[..head.len() - 4]);
    let len: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .expect("a content-length");
    let mut body = vec![0; len];
    r.read_exact(&mut body).unwrap();
    (status, String::from_utf8(body).unwrap())
}

/// `POST /mcp` with a JSON body and the `extra` header fields, as the text to write on a connection.
fn json_post(host: impl std::fmt::Display, extra: &[(&str, &str)], body: &str) -> String {
    let mut req = format!("POST /mcp HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n");
    for (n, v) in extra {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    req
}

/// [`json_post`] on a kept-alive connection, and its answer.
fn post_kept_alive(
    (r, w): (&mut BufReader<TcpStream>, &mut TcpStream),
    host: SocketAddr,
    extra: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    w.write_all(json_post(host, extra, body).as_bytes()).unwrap();
    read_kept_alive(r)
}

#[test]
fn a_client_connection_keeps_one_upstream_connection_and_gets_a_new_one_when_the_upstream_closes_it() {
    // The upstream numbers its connections, answers two requests on each (kept alive) and then closes it.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for (conn, s) in listener.incoming().enumerate() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                for _ in 0..2 {
                    let Some(req) = read_req(&s) else { return };
                    let body = format!(
                        r#"{{"jsonrpc":"2.0","id":1,"result":{{"conn":{conn},"seen":{}}}}}"#,
                        String::from_utf8_lossy(&req.body).contains("tools/list")
                    );
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                        body.len()
                    );
                    s.write_all(head.as_bytes()).unwrap();
                    s.write_all(body.as_bytes()).unwrap();
                }
            });
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let tap = TapProc::start(dir.path(), &format!("http://{upstream}/mcp"), &[]);
    let (mut r, mut w) = kept_alive(tap.addr);
    let mut conns = Vec::new();
    for i in 0..4 {
        if i == 2 {
            // The upstream has closed its first connection: give the tap time to see it go.
            std::thread::sleep(Duration::from_millis(300));
        }
        let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
        let accept = [("Accept", "application/json, text/event-stream")];
        let (status, answer) = post_kept_alive((&mut r, &mut w), tap.addr, &accept, body);
        assert_eq!(status, 200, "request {i}: {answer}");
        let v: serde_json::Value = serde_json::from_str(&answer).unwrap();
        assert_eq!(v["result"]["seen"], true, "request {i} reached the upstream whole");
        conns.push(v["result"]["conn"].as_u64().unwrap());
    }
    assert_eq!(conns, [0, 0, 1, 1], "upstream connection of each request");
    drop((r, w));
    tap.stop();
    let answers = frames(dir.path())
        .iter()
        .filter(|f| f.kind == Kind::Response && f.method.as_deref() == Some("tools/list"))
        .count();
    assert_eq!(answers, 4);
}

#[test]
fn a_request_sent_after_an_answer_is_recorded_after_it_whichever_connection_carries_it() {
    // The tap records a request's frame after writing it upstream, and a JSON answer's frame after writing it to
    // the client: the capture must still be causal. One session (by Mcp-Session-Id), each request sent only once
    // the answer before it has arrived, alternately on one kept connection and on a new connection each.
    let upstream = raw_upstream(|req, s| {
        let id = serde_json::from_slice::<serde_json::Value>(&req.body).unwrap()["id"].clone();
        reply_json(s, &[], &format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{}}}}"#));
    });
    let dir = tempfile::tempdir().unwrap();
    let tap = TapProc::start(dir.path(), &format!("http://{upstream}/mcp"), &[]);
    let (mut r, mut w) = kept_alive(tap.addr);
    let headers = [("Content-Type", "application/json"), ("Mcp-Session-Id", "causal")];
    for i in 0..60 {
        let body = format!(r#"{{"jsonrpc":"2.0","id":{i},"method":"tools/call","params":{{"name":"n"}}}}"#);
        if i % 2 == 0 {
            let (status, answer) = post_kept_alive((&mut r, &mut w), tap.addr, &headers[1..], &body);
            assert_eq!(status, 200, "request {i}: {answer}");
        } else {
            let resp = send(tap.addr, "POST", "/mcp", &headers, body.as_bytes());
            assert_eq!(resp.status, 200, "request {i}");
        }
    }
    drop((r, w));
    tap.stop();
    let mut frames: Vec<Frame> = frames(dir.path())
        .into_iter()
        .filter(|f| matches!(f.kind, Kind::Request | Kind::Response))
        .collect();
    assert_eq!(sessions(&frames).len(), 1, "one session by its Mcp-Session-Id");
    frames.sort_by_key(|f| f.seq);
    let order: Vec<String> = frames
        .iter()
        .map(|f| format!("{:?} {}", f.kind, f.rpc_id.as_deref().unwrap_or("?")))
        .collect();
    let expected: Vec<String> = (0..60)
        .flat_map(|i| [format!("Request {i}"), format!("Response {i}")])
        .collect();
    assert_eq!(order, expected);
}

#[test]
fn a_request_whose_upstream_connect_hangs_is_recorded_even_when_the_tap_stops_before_it_is_sent() {
    // An upstream whose accept queue is full: the kernel drops further connection attempts, so the tap's connect
    // hangs. The tap then stops (grace 1 s) with the exchange still waiting: the request must be in the capture.
    let (mut listener, port) = spawn_first_line(
        Command::new("python3")
            .args([
                "-c",
                "import socket,sys,time\ns=socket.socket(); s.bind(('127.0.0.1',0)); s.listen(0)\n\
                 print(s.getsockname()[1], flush=True); sys.stdin.read()",
            ])
            .stdin(Stdio::piped()),
    );
    let upstream: SocketAddr = format!("127.0.0.1:{}", port.trim()).parse().unwrap();
    let mut fill = Vec::new();
    for _ in 0..4 {
        if let Ok(c) = TcpStream::connect_timeout(&upstream, Duration::from_millis(300)) {
            fill.push(c);
        }
    }
    assert!(
        TcpStream::connect_timeout(&upstream, Duration::from_millis(500)).is_err(),
        "the full accept queue should leave a connect hanging"
    );
    let dir = tempfile::tempdir().unwrap();
    let tap = TapProc::start(
        dir.path(),
        &format!("http://{upstream}/mcp"),
        &["--grace", "1s", "--connect-timeout", "60s"],
    );
    let addr = tap.addr;
    let body = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"stuck"}}"#;
    let client = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(json_post(addr, &[], body).as_bytes()).unwrap();
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
    });
    std::thread::sleep(Duration::from_millis(500));
    tap.stop();
    client.join().unwrap();
    drop(fill);
    let _ = listener.kill();
    let _ = listener.wait();
    let recorded: Vec<Frame> = frames(dir.path())
        .into_iter()
        .filter(|f| f.kind == Kind::Request)
        .collect();
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(recorded[0].rpc_id.as_deref(), Some("7"));
    assert_eq!(&recorded[0].payload[..], body.as_bytes());
}

#[test]
fn pipelined_requests_then_a_chunked_upload_and_more_on_one_kept_connection_are_all_answered_in_order() {
    // The tap's own server takes the common requests and hands the connection to hyper at the first it does not
    // (here a chunked upload), with the bytes already read: every request on the connection must be answered.
    let upstream = raw_upstream(|req, s| {
        let v: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
        reply_json(
            s,
            &[],
            &format!(r#"{{"jsonrpc":"2.0","id":{},"result":{{}}}}"#, v["id"]),
        );
    });
    let dir = tempfile::tempdir().unwrap();
    let tap = TapProc::start(dir.path(), &format!("http://{upstream}/mcp"), &[]);
    let (mut r, mut w) = kept_alive(tap.addr);
    let call = |id: u32| format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo"}}}}"#);
    let post = |id: u32| json_post("t", &[], &call(id));
    // Two requests in one write (pipelined), then a chunked upload in two chunks, then a plain one again.
    w.write_all(format!("{}{}", post(1), post(2)).as_bytes()).unwrap();
    let third = call(3);
    let (a, b) = third.split_at(10);
    let chunked = format!(
        "POST /mcp HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n\
         {:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
        a.len(),
        b.len()
    );
    let mut ids = Vec::new();
    for (i, next) in [None, Some(chunked), Some(post(4)), None].into_iter().enumerate() {
        let (status, answer) = read_kept_alive(&mut r);
        assert_eq!(status, 200, "answer {i}: {answer}");
        let v: serde_json::Value = serde_json::from_str(&answer).unwrap();
        ids.push(v["id"].as_u64().unwrap());
        if let Some(req) = next {
            w.write_all(req.as_bytes()).unwrap();
        }
    }
    assert_eq!(ids, [1, 2, 3, 4], "every answer, in order, on the one connection");
    drop((r, w));
    tap.stop();
    let frames = frames(dir.path());
    let recorded = |kind: Kind| {
        frames
            .iter()
            .filter(|f| f.kind == kind && f.method.as_deref() == Some("tools/call"))
            .filter_map(|f| f.rpc_id.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(recorded(Kind::Request), ["1", "2", "3", "4"]);
    assert_eq!(recorded(Kind::Response), ["1", "2", "3", "4"]);
}

#[test]
fn chunked_close_delimited_and_early_hinted_answers_reach_the_client_whole_and_are_recorded() {
    // The upstream frames each answer differently, as RFC 9112 lets it: chunked (with a chunk extension, a trailer
    // and the chunks written apart) after a 103, or delimited by closing the connection.
    let up = raw_upstream(|req, mut s| {
        let body = String::from_utf8_lossy(&req.body).into_owned();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let id = v["id"].as_u64().unwrap();
        let answer = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"result":{{"tools":[],"framing":{}}}}}"#,
            v["params"]["framing"]
        );
        if v["params"]["framing"] == "chunked" {
            s.write_all(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")
                .unwrap();
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
                .unwrap();
            let (a, b) = answer.split_at(answer.len() / 3);
            for part in [a, b] {
                s.write_all(format!("{:x};ext=1\r\n{part}\r\n", part.len()).as_bytes())
                    .unwrap();
                s.flush().unwrap();
                std::thread::sleep(Duration::from_millis(50));
            }
            s.write_all(b"0\r\nx-trailer: t\r\n\r\n").unwrap();
        } else {
            let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n";
            s.write_all(head.as_bytes()).unwrap();
            s.write_all(answer.as_bytes()).unwrap();
            // Closing the connection ends the body.
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let tap = TapProc::start(dir.path(), &format!("http://{up}/mcp"), &[]);
    let mut sent = Vec::new();
    for (id, framing) in [(1, "chunked"), (2, "close"), (3, "chunked")] {
        let req = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/list","params":{{"framing":"{framing}"}}}}"#);
        let r = post_json(tap.addr, "/mcp", &[], &req);
        assert_eq!(r.status, 200, "{framing}: {}", String::from_utf8_lossy(&r.body));
        let want = format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{"tools":[],"framing":"{framing}"}}}}"#);
        assert_eq!(
            String::from_utf8_lossy(&r.body),
            want,
            "{framing}: the body arrives whole and unchanged"
        );
        sent.push(want);
    }
    tap.stop();
    let recorded: Vec<String> = frames(dir.path())
        .iter()
        .filter(|f| f.kind == Kind::Response && f.method.as_deref() == Some("tools/list"))
        .map(|f| String::from_utf8_lossy(&f.payload).into_owned())
        .collect();
    assert_eq!(recorded, sent, "each answer is one frame with the body's bytes");
}

#[test]
fn a_malformed_or_broken_off_upstream_answer_is_a_502_or_a_cut_connection_recorded_and_the_tap_keeps_serving() {
    let up = raw_upstream(|req, mut s| {
        let v: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
        match v["params"]["mode"].as_str().unwrap() {
            "garbage" => s.write_all(b"SMTP ready\r\n\r\n").unwrap(),
            "silent" => {} // closes without a word
            "cut" => {
                let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n";
                s.write_all(head.as_bytes()).unwrap();
                s.write_all(br#"{"jsonrpc""#).unwrap();
            }
            _ => reply_json(s, &[], r#"{"jsonrpc":"2.0","id":4,"result":{}}"#),
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let tap = TapProc::start(dir.path(), &format!("http://{up}/mcp"), &[]);
    let call = |id: u32, mode: &str| {
        let body = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/list","params":{{"mode":"{mode}"}}}}"#);
        post_json(tap.addr, "/mcp", &[], &body)
    };
    for (id, mode, why) in [
        (1, "garbage", "malformed response head"),
        (2, "silent", "closed the connection before answering"),
    ] {
        let r = call(id, mode);
        assert_eq!(r.status, 502, "{mode}");
        let v = r.json();
        assert_eq!(v["id"], id, "{mode}: the error answers the request");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(
            msg.starts_with("mcptape: upstream unreachable: ") && msg.contains(why),
            "{mode}: {msg}"
        );
    }
    // The body breaks off: whether the tap's HTTP server flushed the head and the bytes that came before it cut the
    // connection depends on timing, so what is checked is that the client never gets a whole answer.
    let mut s = TcpStream::connect(tap.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let body = r#"{"jsonrpc":"2.0","id":3,"method":"tools/list","params":{"mode":"cut"}}"#;
    s.write_all(json_post(tap.addr, &[], body).as_bytes()).unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let cut = match find(&raw, b"\r\n\r\n") {
        Some(end) => {
            assert!(raw.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&raw));
            raw[end + 4..].to_vec()
        }
        None => Vec::new(),
    };
    assert!(
        br#"{"jsonrpc""#.starts_with(&cut),
        "at most what came: {}",
        String::from_utf8_lossy(&raw)
    );
    let r = call(4, "ok");
    assert_eq!(
        (r.status, r.json()["id"].clone()),
        (200, serde_json::json!(4)),
        "the tap keeps serving"
    );
    tap.stop();

    let frames = frames(dir.path());
    let errors: Vec<_> = frames
        .iter()
        .filter(|f| f.kind == Kind::Error && f.http.as_ref().and_then(|h| h.status) == Some(502))
        .map(|f| f.rpc_id.clone().unwrap_or_default())
        .collect();
    assert_eq!(errors, ["1", "2"], "both 502 answers are recorded");
    assert!(
        frames.iter().any(|f| f.method.as_deref() == Some("mcptape/eof")
            && String::from_utf8_lossy(&f.payload).contains(r#""end":"error""#)),
        "the broken-off body is recorded as ending in an error"
    );
}

/// Reads a request's head byte by byte and nothing after it (an upstream that has not read the body yet).
fn read_head_only(s: &mut TcpStream) -> Vec<u8> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).unwrap_or(0) == 1 {
        head.push(byte[0]);
    }
    head
}

/// A `tools/call` of 12 MB: more than loopback's socket buffers hold, so writing it waits for the upstream to read.
fn twelve_mb_call() -> String {
    let blob = "x".repeat(12 << 20);
    format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"blob":"{blob}"}}}}"#)
}

#[test]
fn an_upstream_that_answers_before_reading_a_large_body_gets_its_answer_through() {
    // The upstream reads the request's head only, answers 413 and stops reading (keeping the connection open for
    // a while): a tap that waited to finish writing the 12 MB body before reading would hang, then answer 502.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream = listener.local_addr().unwrap();
    let refusal = r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32600,"message":"too large"}}"#;
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        read_head_only(&mut s);
        let answer = format!(
            "HTTP/1.1 413 Payload Too Large\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{refusal}",
            refusal.len()
        );
        s.write_all(answer.as_bytes()).unwrap();
        std::thread::sleep(Duration::from_secs(10));
    });
    let dir = tempfile::tempdir().unwrap();
    let tap = TapProc::start(dir.path(), &format!("http://{upstream}/mcp"), &[]);
    let body = twelve_mb_call();
    let r = post_json(tap.addr, "/mcp", &[], &body);
    assert_eq!(r.status, 413, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(String::from_utf8_lossy(&r.body), refusal);
    tap.stop();
    assert!(
        frames(dir.path())
            .iter()
            .any(|f| f.kind == Kind::Error && f.http.as_ref().and_then(|h| h.status) == Some(413)),
        "the upstream's answer is recorded"
    );
}

#[test]
fn an_unasked_100_continue_during_a_large_body_does_not_stop_the_body() {
    // The upstream sends `100 Continue` (which the tap did not ask for) as soon as it has the head, then reads the
    // whole 12 MB body and answers with its length: the interim answer must not make the tap stop sending.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let head = read_head_only(&mut s);
        s.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").unwrap();
        let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map(|v| v.trim().parse().unwrap())
            .unwrap();
        let mut body = vec![0u8; len];
        s.read_exact(&mut body).unwrap();
        let answer = format!(r#"{{"jsonrpc":"2.0","id":1,"result":{{"bytes":{len}}}}}"#);
        let reply = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{answer}",
            answer.len()
        );
        s.write_all(reply.as_bytes()).unwrap();
    });
    let dir = tempfile::tempdir().unwrap();
    let tap = TapProc::start(dir.path(), &format!("http://{upstream}/mcp"), &[]);
    let body = twelve_mb_call();
    let r = post_json(tap.addr, "/mcp", &[], &body);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.json()["result"]["bytes"],
        body.len(),
        "the upstream got the whole body"
    );
    tap.stop();
}

#[test]
fn status_codes_error_bodies_and_end_to_end_headers_pass_unchanged_and_hop_by_hop_ones_do_not() {
    let up = raw_upstream(|req, s| {
        let names: Vec<&str> = req.headers.iter().map(|(n, _)| n.as_str()).collect();
        let body = serde_json::json!({
            "names": names,
            "host": req.header("host"),
            "via": req.header("via"),
            "mcp": [req.header("mcp-protocol-version"), req.header("mcp-method"), req.header("mcp-name"), req.header("mcp-param-city")],
            "path": req.path,
            "body": String::from_utf8_lossy(&req.body),
        });
        reply(
            s,
            "418 I'm a teapot",
            &[("X-Upstream", "yes"), ("Keep-Alive", "timeout=5")],
            "application/problem+json",
            &body.to_string(),
        );
    });
    let dir = tempfile::tempdir().unwrap();
    let tap = TapProc::start(dir.path(), &format!("http://{up}/mcp"), &[]);
    let req_body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"weather"}}"#;
    let r = post_json(
        tap.addr,
        "/mcp?x=1",
        &[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "weather"),
            ("mcp-param-city", "Paris"),
            ("x-hop", "dropped"),
            ("connection", "close, x-hop"),
            ("keep-alive", "timeout=1"),
            ("te", "trailers"),
        ],
        req_body,
    );
    assert_eq!(r.status, 418, "the upstream's status passes unchanged");
    assert_eq!(r.header("x-upstream"), Some("yes"));
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    assert!(
        r.header("keep-alive").is_none(),
        "hop-by-hop response fields stay behind"
    );
    assert!(r.header("via").is_some_and(|v| v.contains("mcptape")));
    let seen = r.json();
    let names: Vec<&str> = seen["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for hop in ["x-hop", "keep-alive", "te"] {
        assert!(!names.contains(&hop), "{hop} was forwarded: {names:?}");
    }
    assert_eq!(seen["host"], up.to_string(), "Host is the upstream's");
    assert!(seen["via"].as_str().unwrap().contains("1.1 mcptape"));
    assert_eq!(
        seen["mcp"],
        serde_json::json!(["2026-07-28", "tools/call", "weather", "Paris"])
    );
    assert_eq!(
        (seen["path"].as_str(), seen["body"].as_str()),
        (Some("/mcp?x=1"), Some(req_body))
    );
    tap.stop();
    let frames = frames(dir.path());
    let answer = frames.iter().find(|f| f.direction == Direction::S2c).unwrap();
    assert_eq!(answer.http.as_ref().and_then(|h| h.status), Some(418));
    assert_eq!(answer.payload, r.body, "the error body is recorded as sent");
}

#[test]
fn oversized_bodies_slow_headers_and_stalled_bodies_cannot_hold_the_tap() {
    let up = raw_upstream(|_req, s| reply_json(s, &[], r#"{"jsonrpc":"2.0","id":1,"result":{}}"#));
    let dir = tempfile::tempdir().unwrap();
    let tap = TapProc::start(
        dir.path(),
        &format!("http://{up}/mcp"),
        &["--max-body", "1000", "--header-timeout", "1s", "--idle-timeout", "1s"],
    );
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"x","params":{{"p":"{}"}}}}"#,
        "a".repeat(2000)
    );
    let r = post_json(tap.addr, "/mcp", &[], &big);
    assert_eq!(r.status, 413);
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("--max-body"));

    // Headers that never end: the tap closes the connection (no answer needed).
    let mut slow = TcpStream::connect(tap.addr).unwrap();
    slow.write_all(b"POST /mcp HTTP/1.1\r\nHost: x\r\n").unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let mut rest = Vec::new();
    let closed = slow.read_to_end(&mut rest);
    assert!(
        !matches!(&closed, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
        "the tap kept a connection with unfinished headers open"
    );

    // A body that stops coming: 408 with a JSON-RPC error.
    let mut stalled = TcpStream::connect(tap.addr).unwrap();
    stalled
        .write_all(b"POST /mcp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"jsonrpc\"")
        .unwrap();
    stalled.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let mut raw = Vec::new();
    let _ = stalled.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("--idle-timeout"), "{text}");

    let r = post_json(tap.addr, "/mcp", &[], r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#);
    assert_eq!(r.status, 200, "the tap still serves");
    tap.stop();
    let frames = frames(dir.path());
    let statuses: BTreeSet<u16> = frames.iter().filter_map(|f| f.http.as_ref()?.status).collect();
    assert!(statuses.is_superset(&BTreeSet::from([413, 408, 200])), "{statuses:?}");
}

#[test]
fn legacy_endpoint_given_as_an_absolute_url_is_rewritten_so_the_client_posts_through_the_tap() {
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let rx = Mutex::new(rx);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let origin = listener.local_addr().unwrap();
    let up = raw_upstream_on(listener, move |req, mut s| {
        if req.method == "GET" {
            sse_head(&mut s);
            let endpoint = format!(": hello\n\nevent: endpoint\ndata: http://{origin}/messages?sessionId=abc\n\n");
            s.write_all(endpoint.as_bytes()).unwrap();
            s.flush().unwrap();
            // The answer to the posted request arrives on the stream.
            let posted = rx.lock().unwrap().recv_timeout(Duration::from_secs(120)).unwrap();
            let id = serde_json::from_slice::<serde_json::Value>(&posted).unwrap()["id"].clone();
            let _ = s.write_all(
                format!("event: message\ndata: {{\"jsonrpc\":\"2.0\",\"id\":{id},\"result\":{{}}}}\n\n").as_bytes(),
            );
        } else {
            assert_eq!(req.path, "/messages?sessionId=abc");
            tx.send(req.body).unwrap();
            reply(s, "202 Accepted", &[], "text/plain", "Accepted");
        }
    });
    assert_eq!(up, origin);
    let dir = tempfile::tempdir().unwrap();
    let tap = TapProc::start(dir.path(), &format!("http://{up}/sse"), &[]);
    let mut stream = SseClient::get(tap.addr, "/sse", &[]);
    let endpoint = stream.next_event().unwrap();
    assert_eq!(endpoint.get("event").map(String::as_str), Some("endpoint"));
    let path = endpoint["data"].clone();
    assert_eq!(path, "/messages?sessionId=abc", "rewritten to a path on the tap");
    let r = post_json(tap.addr, &path, &[], r#"{"jsonrpc":"2.0","id":5,"method":"ping"}"#);
    assert_eq!(r.status, 202);
    let answer = stream.next_event().unwrap();
    assert_eq!(answer["data"], r#"{"jsonrpc":"2.0","id":5,"result":{}}"#);
    assert!(stream.next_event().is_none());
    tap.stop();
    let frames = frames(dir.path());
    let ids = sessions(&frames);
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert!(ids.iter().all(|s| s.starts_with("sse-")));
    let ping = frames.iter().find(|f| f.kind == Kind::Response).unwrap();
    assert_eq!((ping.method.as_deref(), ping.transport), (Some("ping"), Transport::Sse));
    assert!(ping.latency_ns.is_some());
}

#[test]
fn a_thousand_concurrent_sessions_through_one_tap() {
    const N: usize = 1000;
    const WAVE: usize = 100;
    raise_nofile();
    // The upstream holds every answer until all N requests have arrived: they are all open at once.
    let arrived: Arc<(Mutex<usize>, Condvar)> = Arc::default();
    let upstream_arrived = arrived.clone();
    let up = raw_upstream(move |_req, s| {
        let (count, cv) = &*upstream_arrived;
        let mut n = count.lock().unwrap();
        *n += 1;
        let me = *n;
        cv.notify_all();
        let (n, waited) = cv.wait_timeout_while(n, Duration::from_secs(180), |n| *n < N).unwrap();
        drop(n);
        if waited.timed_out() {
            reply(
                s,
                "500 Internal Server Error",
                &[],
                "text/plain",
                "not all sessions were open at once",
            );
            return;
        }
        reply_json(s, &[("Mcp-Session-Id", &format!("session-{me}"))], INITIALIZE_RESULT);
    });
    let dir = tempfile::tempdir().unwrap();
    let tap = TapProc::start(dir.path(), &format!("http://{up}/mcp"), &[]);
    let addr = tap.addr;
    let mut clients = Vec::new();
    for wave in 0..N / WAVE {
        for _ in 0..WAVE {
            let t = std::thread::Builder::new()
                .stack_size(256 << 10)
                .spawn(move || {
                    let r = post_json(addr, "/mcp", &[], INITIALIZE);
                    (r.status, r.header("mcp-session-id").map(String::from))
                })
                .unwrap();
            clients.push(t);
        }
        // Connections arrive in waves so no listen queue overflows; all stay open until the last wave is in.
        wait_until("a wave reached the upstream", || {
            *arrived.0.lock().unwrap() >= (wave + 1) * WAVE
        });
    }
    let results: Vec<(u16, Option<String>)> = clients.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(
        results.iter().all(|(s, _)| *s == 200),
        "{:?}",
        results.iter().find(|(s, _)| *s != 200)
    );
    let distinct: BTreeSet<_> = results.iter().filter_map(|(_, id)| id.clone()).collect();
    assert_eq!(distinct.len(), N);
    tap.stop();
    let frames = frames(dir.path());
    let ids = sessions(&frames);
    assert_eq!(ids.len(), N, "one session per Mcp-Session-Id");
    let answered: BTreeSet<_> = frames
        .iter()
        .filter(|f| f.kind == Kind::Response && f.method.as_deref() == Some("initialize"))
        .map(|f| f.session_id.clone())
        .collect();
    assert_eq!(answered, ids, "each session holds its initialize, answered");
}

#[test]
fn listen_flags_are_checked_and_errors_are_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cap");
    let out_s = out.to_str().unwrap();
    let record = |extra: &[&str]| {
        let mut args = vec!["record", "--out", out_s];
        args.extend_from_slice(extra);
        run(&args)
    };
    let o = record(&["--listen", "0.0.0.0:0", "--upstream", "http://127.0.0.1:9/mcp"]);
    assert_one_line_error(&o, 2, &["--listen 0.0.0.0:0", "--allow-remote"]);
    let o = record(&["--listen", "127.0.0.1:0", "--upstream", "ftp://127.0.0.1/mcp"]);
    assert_one_line_error(&o, 2, &["--upstream"]);
    let o = record(&["--listen", "nowhere", "--upstream", "http://127.0.0.1:9/mcp"]);
    assert_one_line_error(&o, 2, &["--listen nowhere"]);
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    let o = record(&["--listen", &taken_addr, "--upstream", "http://127.0.0.1:9/mcp"]);
    assert_one_line_error(&o, 2, &[&format!("--listen {taken_addr}")]);
    assert!(!out.exists(), "nothing is written when the tap cannot start");
    let o = record(&["--listen", "0", "--upstream", "http://127.0.0.1:9/mcp", "--", "echo"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("cannot be used with"), "{}", stderr(&o));
    let o = record(&["--upstream", "http://127.0.0.1:9/mcp"]);
    assert_eq!(o.status.code(), Some(2), "--upstream needs --listen");
    drop(taken);

    // --allow-remote binds every interface, with a warning (only loopback is used here).
    let tap = TapProc::start_on("0.0.0.0:0", &out, "http://127.0.0.1:9/mcp", &["--allow-remote"]);
    let r = post_json(tap.addr, "/mcp", &[], r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#);
    assert_eq!(r.status, 502);
    let err = tap.stop();
    assert!(err.contains("warning: listening on 0.0.0.0:"), "{err}");
}

#[test]
fn https_and_wss_upstreams_are_verified_against_the_trusted_roots() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let tls = peers().join("tls.py");
    let o = Command::new(python())
        .arg(&tls)
        .arg("certs")
        .arg(&certs)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let (cert, key, ca) = (
        certs.join("server.pem"),
        certs.join("server-key.pem"),
        certs.join("ca.pem"),
    );
    let (_https, port) = serve_on_free_port(|port| {
        let mut c = Command::new(python());
        c.arg(&tls)
            .args(["time-server", "--port", &port.to_string(), "--cert"])
            .arg(&cert)
            .arg("--key")
            .arg(&key);
        c
    });
    // The tap trusts the test CA through SSL_CERT_FILE (no flag needed for a private CA).
    let trusting = |out: &Path, upstream: &str| {
        let mut c = mcptape();
        c.env("SSL_CERT_FILE", &ca).env_remove("SSL_CERT_DIR");
        spawn_tap(c, "127.0.0.1:0", out, upstream, &[])
    };
    let out = dir.path().join("https");
    let tap = trusting(&out, &format!("https://localhost:{port}/mcp"));
    let through = client_py(&[
        "--server",
        "time",
        "--era",
        "2026-07-28",
        "--transport",
        "http",
        "--url",
        &tap.url("/mcp"),
    ]);
    assert!(through.contains("\"protocol_version\": \"2026-07-28\""), "{through}");
    tap.stop();
    assert!(
        frames(&out)
            .iter()
            .any(|f| f.kind == Kind::Response && f.method.as_deref() == Some("tools/call"))
    );

    // Without the CA the upstream's certificate is refused: 502, naming why.
    let untrusting = TapProc::start(
        &dir.path().join("refused"),
        &format!("https://localhost:{port}/mcp"),
        &[],
    );
    let r = post_json(
        untrusting.addr,
        "/mcp",
        &[],
        r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
    );
    assert_eq!(r.status, 502);
    let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(msg.contains("certificate"), "{msg}");
    untrusting.stop();

    // wss: the SDK 1.x WebSocket server over TLS.
    let (server, line) = spawn_first_line(
        Command::new(python_ws())
            .arg(peers().join("ws_peer.py"))
            .arg("server")
            .arg("--cert")
            .arg(&cert)
            .arg("--key")
            .arg(&key)
            .stderr(Stdio::null()),
    );
    let _server = Peer(server);
    let ws_port = line.trim().strip_prefix("PORT ").unwrap().to_string();
    let out = dir.path().join("wss");
    let tap = trusting(&out, &format!("wss://localhost:{ws_port}/ws"));
    let o = Command::new(python_ws())
        .arg(peers().join("ws_peer.py"))
        .args(["client", "--url", &format!("ws://{}/ws", tap.addr)])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("echo: hello over websocket"));
    tap.stop();
    assert!(
        frames(&out)
            .iter()
            .any(|f| f.transport == Transport::Ws && f.kind == Kind::Response)
    );
}

// ---- replaying what the HTTP tap recorded ---------------------------------------------------------------------

/// `mcptape replay` of `cap` with the ignores server-everything needs; returns (exit code, output).
fn replay_everything(cap: &Path, target: &str) -> (i32, String) {
    let o = mcptape()
        .args(["replay", cap.to_str().unwrap(), "--timeout", "10s", "--ignore-volatile"])
        .args(["--ignore=/result/contents/*/text", "--ignore=/result/contents/*/blob"])
        .args(["--ignore=/result/messages/*/content/resource/text", "--target", target])
        .output()
        .unwrap();
    (o.status.code().unwrap_or(-1), stdout(&o) + &stderr(&o))
}

#[test]
fn a_streamable_http_capture_replays_against_a_fresh_server_everything_with_exit_0() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (_peer, port) = everything("streamableHttp");
        let tap = TapProc::start(dir.path(), &format!("http://127.0.0.1:{port}/mcp"), &[]);
        client_py(&["--transport", "http", "--url", &tap.url("/mcp")]);
        tap.stop();
    }
    // A fresh server: new session id (which it echoes in two answers: compared as <mcp-session-id>), new clock.
    let (_fresh, port) = everything("streamableHttp");
    let (code, out) = replay_everything(dir.path(), &format!("http://127.0.0.1:{port}/mcp"));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("differed 0, missing 0, extra 0"), "{out}");
    assert!(
        out.contains("roots/list") && out.contains("sampling/createMessage"),
        "{out}"
    );
}

#[test]
fn a_websocket_capture_replays_against_a_fresh_websocket_server_with_exit_0() {
    let dir = tempfile::tempdir().unwrap();
    let script = peers().join("ws_peer.py");
    let start_server = || {
        let (mut server, line) = spawn_first_line(
            Command::new(python_ws())
                .arg(&script)
                .arg("server")
                .stderr(Stdio::null()),
        );
        let port: u16 = line.trim().strip_prefix("PORT ").and_then(|p| p.parse().ok()).unwrap();
        assert!(
            wait_for_port(port, &mut server),
            "the WebSocket server did not listen on {port}"
        );
        (Peer(server), format!("ws://127.0.0.1:{port}/ws"))
    };
    {
        let (_server, upstream) = start_server();
        let tap = TapProc::start(dir.path(), &upstream, &[]);
        let o = Command::new(python_ws())
            .arg(&script)
            .args(["client", "--url", &format!("ws://{}/ws", tap.addr)])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        tap.stop();
    }
    let (_fresh, url) = start_server();
    let o = mcptape()
        .args([
            "replay",
            dir.path().to_str().unwrap(),
            "--timeout",
            "10s",
            "--target",
            &url,
        ])
        .output()
        .unwrap();
    let out = stdout(&o) + &stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains("tools/call"), "{out}");
}

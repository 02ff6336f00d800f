//! `mcptape dataset …` on real files: import, inspect, show, export, verify, recover, and bad input.

use std::io::Write;

use mcptape_datasets::journal::JournalWriter;
use mcptape_datasets::{CaptureMeta, Direction, Frame, Kind, Transport, schema};

use crate::util::*;

const SECRET: &str = "sk-live-fixture-secret-123";

#[test]
fn imported_ndjson_pair_inspects_with_methods_and_versions() {
    let dir = tempfile::tempdir().unwrap();
    let cap = fixture_capture(dir.path());
    let o = run(&["dataset", "inspect", cap.to_str().unwrap(), "--format", "json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["sessions"], 1);
    assert_eq!(v["frames"], 18);
    assert_eq!(v["protocol_versions"]["2025-11-25"], 1);
    assert_eq!(v["kinds"]["request"], 8);
    assert_eq!(v["kinds"]["notification"], 2);
    assert_eq!(v["kinds"]["response"], 7);
    assert_eq!(v["kinds"]["error"], 1);
    let m = &v["methods"];
    assert_eq!(m["tools/call"]["requests"], 3);
    assert_eq!(m["tools/call"]["responses"], 2);
    assert_eq!(m["tools/call"]["errors"], 1);
    // The server's sampling request is answered by the client, and that answer is paired with it.
    assert_eq!(m["sampling/createMessage"]["requests"], 1);
    assert_eq!(m["sampling/createMessage"]["responses"], 1);
    // NDJSON logs carry no times: latency is unknown rather than zero.
    assert!(m["tools/list"]["latency_p50_us"].is_null());

    let text = stdout(&run(&["dataset", "inspect", cap.to_str().unwrap()]));
    assert!(text.contains("sessions   1"), "{text}");
    assert!(text.contains("protocol   2025-11-25 (1 session)"), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("tools/call") && l.contains(" 3 ")),
        "{text}"
    );
}

#[test]
fn inspect_reports_latency_percentiles_from_recorded_times() {
    // 100 pings answered after 1, 2, …, 100 ms.
    let dir = tempfile::tempdir().unwrap();
    let jsonl = dir.path().join("timed.jsonl");
    let mut f = std::fs::File::create(&jsonl).unwrap();
    let mut seq = 0;
    for i in 1..=100u64 {
        let t = i * 1_000_000_000;
        writeln!(f, r#"{{"session_id":"t","seq":{seq},"t_ns":{t},"direction":"c2s","payload":"{{\"jsonrpc\":\"2.0\",\"id\":{i},\"method\":\"ping\"}}"}}"#).unwrap();
        writeln!(f, r#"{{"session_id":"t","seq":{},"t_ns":{},"direction":"s2c","payload":"{{\"jsonrpc\":\"2.0\",\"id\":{i},\"result\":{{}}}}"}}"#, seq + 1, t + i * 1_000_000).unwrap();
        seq += 2;
    }
    drop(f);
    let cap = dir.path().join("timed.parquet");
    let o = run(&[
        "dataset",
        "import",
        jsonl.to_str().unwrap(),
        "-o",
        cap.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value =
        serde_json::from_slice(&run(&["dataset", "inspect", cap.to_str().unwrap(), "--format", "json"]).stdout)
            .unwrap();
    let ping = &v["methods"]["ping"];
    assert_eq!(ping["requests"], 100);
    assert_eq!(ping["responses"], 100);
    // HdrHistogram with 3 significant digits: within 0.1%.
    let close = |got: &serde_json::Value, want: f64| (got.as_f64().unwrap() - want).abs() <= want * 0.001;
    assert!(close(&ping["latency_p50_us"], 50_000.0), "{ping}");
    assert!(close(&ping["latency_p99_us"], 99_000.0), "{ping}");
    assert!(close(&ping["latency_max_us"], 100_000.0), "{ping}");
    let text = stdout(&run(&["dataset", "inspect", cap.to_str().unwrap()]));
    let line = text.lines().find(|l| l.starts_with("ping")).unwrap();
    assert!(line.contains("50.0") && line.contains("99.0"), "{line}");
}

#[test]
fn ndjson_import_orders_a_client_answer_before_the_server_result_that_waits_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let cap = fixture_capture(dir.path());
    let frames = mcptape_datasets::Scan::new(&[cap]).unwrap().frames().unwrap();
    let pos = |pred: &dyn Fn(&Frame) -> bool| frames.iter().position(pred).unwrap();
    let sampling_answer =
        pos(&|f| f.direction == Direction::C2s && f.method.as_deref() == Some("sampling/createMessage"));
    let tool_result = pos(&|f| f.direction == Direction::S2c && f.rpc_id.as_deref() == Some("3"));
    let tool_call = pos(&|f| f.direction == Direction::C2s && f.rpc_id.as_deref() == Some("3"));
    assert!(
        tool_call < sampling_answer && sampling_answer < tool_result,
        "{tool_call} {sampling_answer} {tool_result}"
    );
    // seq is the merged order.
    assert!(frames.iter().enumerate().all(|(i, f)| f.seq == i as u64));
}

#[test]
fn import_redacts_secrets_before_they_reach_disk() {
    let dir = tempfile::tempdir().unwrap();
    let cap = fixture_capture(dir.path());
    let jsonl = dir.path().join("out.jsonl");
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
    assert!(!text.contains(SECRET), "secret survived import");
    assert!(text.contains("[REDACTED]"));
    // Redaction kept the message valid JSON and the rest of it unchanged.
    let login = text.lines().find(|l| l.contains("\\\"login\\\"")).unwrap();
    let frame: serde_json::Value = serde_json::from_str(login).unwrap();
    let payload: serde_json::Value = serde_json::from_str(frame["payload"].as_str().unwrap()).unwrap();
    assert_eq!(payload["params"]["arguments"]["api_key"], "[REDACTED]");
    assert_eq!(payload["params"]["name"], "login");
    // And --no-redact keeps it, for users who ask.
    let raw = dir.path().join("raw.parquet");
    let o = run(&[
        "dataset",
        "import",
        "--c2s",
        fixture("session.c2s.ndjson").to_str().unwrap(),
        "--s2c",
        fixture("session.s2c.ndjson").to_str().unwrap(),
        "--no-redact",
        "-o",
        raw.to_str().unwrap(),
    ]);
    assert!(o.status.success());
    let shown = stdout(&run(&["dataset", "show", raw.to_str().unwrap(), "--width", "0"]));
    assert!(shown.contains(SECRET));
}

#[test]
fn capture_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let cap = fixture_capture(dir.path());
    assert_eq!(std::fs::metadata(&cap).unwrap().permissions().mode() & 0o777, 0o600);
    let jsonl = dir.path().join("e.jsonl");
    run(&[
        "dataset",
        "export",
        cap.to_str().unwrap(),
        "--format",
        "jsonl",
        "-o",
        jsonl.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::metadata(&jsonl).unwrap().permissions().mode() & 0o777, 0o600);
}

#[test]
fn show_prints_a_transcript_per_session() {
    let dir = tempfile::tempdir().unwrap();
    let cap = fixture_capture(dir.path());
    let o = run(&["dataset", "show", cap.to_str().unwrap()]);
    assert!(o.status.success());
    let text = stdout(&o);
    assert!(
        text.starts_with("session fixture (stdio, 2025-11-25, 18 frames)"),
        "{text}"
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 19);
    assert!(
        lines[1].contains("->  request") && lines[1].contains("initialize") && lines[1].contains("id=0"),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].contains("<-  response") && lines[2].contains("initialize"),
        "{}",
        lines[2]
    );
    assert!(lines.iter().all(|l| l.chars().count() < 260), "payloads are shortened");
    let o = run(&["dataset", "show", cap.to_str().unwrap(), "--session", "nope"]);
    assert_one_line_error(&o, 2, &["session nope"]);
}

#[test]
fn jsonl_export_import_round_trips_every_column() {
    let dir = tempfile::tempdir().unwrap();
    let cap = fixture_capture(dir.path());
    let a = dir.path().join("a.jsonl");
    let back = dir.path().join("back.parquet");
    let b = dir.path().join("b.jsonl");
    assert!(
        run(&[
            "dataset",
            "export",
            cap.to_str().unwrap(),
            "--format",
            "jsonl",
            "-o",
            a.to_str().unwrap()
        ])
        .status
        .success()
    );
    let o = run(&["dataset", "import", a.to_str().unwrap(), "-o", back.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        run(&[
            "dataset",
            "export",
            back.to_str().unwrap(),
            "--format",
            "jsonl",
            "-o",
            b.to_str().unwrap()
        ])
        .status
        .success()
    );
    let (a, b) = (std::fs::read_to_string(a).unwrap(), std::fs::read_to_string(b).unwrap());
    assert_eq!(a.lines().count(), 18);
    assert_eq!(a, b);
    let original = mcptape_datasets::Scan::new(&[cap]).unwrap().frames().unwrap();
    let again = mcptape_datasets::Scan::new(&[back]).unwrap().frames().unwrap();
    assert_eq!(original, again);
}

#[test]
fn jsonl_import_names_the_bad_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"direction\":\"c2s\",\"payload\":\"{}\"}\n\n{\"direction\":\"sideways\",\"payload\":\"{}\"}\n",
    )
    .unwrap();
    let out = dir.path().join("x.parquet");
    let o = run(&["dataset", "import", bad.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert_one_line_error(&o, 2, &["bad.jsonl:3:", "sideways"]);
    assert!(!out.exists(), "no output from bad input");
    std::fs::write(
        &bad,
        "{\"direction\":\"c2s\",\"ts\":\"yesterday\",\"payload\":\"{}\"}\n",
    )
    .unwrap();
    let o = run(&["dataset", "import", bad.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    assert_one_line_error(&o, 2, &["bad.jsonl:1:", "field `ts`"]);
}

#[test]
fn verify_passes_a_good_capture_and_fails_on_seq_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let cap = fixture_capture(dir.path());
    let o = run(&["dataset", "verify", cap.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(
        stdout(&o).starts_with("ok: 1 file(s), 18 frame(s), 1 session(s)"),
        "{}",
        stdout(&o)
    );

    let gappy = dir.path().join("gappy.jsonl");
    let mut f = std::fs::File::create(&gappy).unwrap();
    for seq in [0, 1, 2, 5, 6] {
        writeln!(f, r#"{{"session_id":"s","seq":{seq},"direction":"c2s","payload":"{{\"jsonrpc\":\"2.0\",\"method\":\"ping\",\"id\":{seq}}}"}}"#).unwrap();
    }
    drop(f);
    let gcap = import_jsonl(&gappy, &dir.path().join("gappy.parquet"));
    let o = run(&["dataset", "verify", gcap.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("session s: 2 seq number(s) missing"),
        "{}",
        stdout(&o)
    );
}

fn frames(session: &str, n: usize) -> Vec<Frame> {
    (0..n)
        .map(|i| {
            let p = format!(r#"{{"jsonrpc":"2.0","id":{i},"method":"tools/call","params":{{"name":"echo"}}}}"#);
            let mut f = Frame::new(session, i as u64, Direction::C2s, Transport::Stdio, Kind::Request, p);
            f.method = Some("tools/call".into());
            f
        })
        .collect()
}

#[test]
fn recover_turns_a_killed_recorders_journal_into_a_segment_and_names_the_damage() {
    let dir = tempfile::tempdir().unwrap();
    let caps = dir.path().join("caps");
    std::fs::create_dir(&caps).unwrap();
    let journal = caps.join("rec-0000.journal");
    let mut j = JournalWriter::create(&journal, &CaptureMeta::new("stdio", "server-cmd")).unwrap();
    j.append(&schema::to_batch(&frames("a", 10))).unwrap();
    j.flush().unwrap();
    let good = std::fs::metadata(&journal).unwrap().len();
    j.append(&schema::to_batch(&frames("b", 10))).unwrap();
    j.flush().unwrap();
    drop(j);
    // A kill in the middle of writing the second batch.
    let bytes = std::fs::read(&journal).unwrap();
    let cut = good as usize + (bytes.len() - good as usize) / 2;
    std::fs::write(&journal, &bytes[..cut]).unwrap();

    // Before recovery, reading the folder says what to do.
    let o = run(&["dataset", "inspect", caps.to_str().unwrap()]);
    assert_one_line_error(&o, 2, &["unrecovered journal", "mcptape dataset recover"]);

    let o = run(&["dataset", "recover", caps.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("10 frame(s) in 1 batch(es)"), "{text}");
    assert!(text.contains(&format!("damaged tail at byte {good}")), "{text}");
    assert!(
        text.contains(&format!("({} byte(s) lost)", cut - good as usize)),
        "{text}"
    );
    assert!(caps.join("rec-0000.parquet").exists());
    assert!(
        caps.join("rec-0000.journal.damaged").exists(),
        "undecodable bytes are kept, out of the way"
    );
    let o = run(&["dataset", "verify", caps.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let v: serde_json::Value =
        serde_json::from_slice(&run(&["dataset", "inspect", caps.to_str().unwrap(), "--format", "json"]).stdout)
            .unwrap();
    assert_eq!(v["frames"], 10);
    // Running again finds nothing to do.
    assert!(stdout(&run(&["dataset", "recover", caps.to_str().unwrap()])).contains("nothing to recover"));
}

#[test]
fn bad_inputs_get_one_line_errors_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.parquet");
    std::fs::write(&empty, b"").unwrap();
    let text = dir.path().join("notes.parquet");
    std::fs::write(&text, "PAR1 but not really a parquet file at all").unwrap();
    let folder = dir.path().join("nothing-here");
    std::fs::create_dir(&folder).unwrap();
    let missing = dir.path().join("missing.parquet");
    let cases: [(&std::path::Path, &str); 4] = [
        (&empty, "empty file"),
        (&text, "not a Parquet file"),
        (&folder, "holds no capture files"),
        (&missing, "no such file"),
    ];
    for (path, why) in cases {
        for cmd in [
            vec!["inspect"],
            vec!["show"],
            vec!["verify"],
            vec!["export", "--format", "jsonl", "-o", "-"],
        ] {
            let mut args = vec!["dataset"];
            args.extend(cmd.iter().copied());
            args.push(path.to_str().unwrap());
            let o = run(&args);
            if cmd[0] == "verify" && path != missing && path != folder {
                // verify reports damage per file and exits 1.
                assert_eq!(o.status.code(), Some(1), "{args:?}");
                assert!(stdout(&o).contains(why), "{args:?}: {}", stdout(&o));
                assert!(stdout(&o).contains(path.to_str().unwrap()));
            } else {
                assert_one_line_error(&o, 2, &[path.to_str().unwrap(), why]);
            }
        }
    }
    let o = run(&["dataset", "recover", missing.to_str().unwrap()]);
    assert_one_line_error(&o, 2, &[missing.to_str().unwrap(), "no such file"]);
}

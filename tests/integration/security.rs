//! What SECURITY.md promises, proven: planted secrets appear in no output byte, capture files are private, and
//! replay and load never send a recorded `Authorization` value.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use crate::util::*;

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

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// A stdio server (sh) that logs secrets on stderr and answers with a token-like result field.
const SERVER: &str = r#"
while IFS= read -r line; do
  echo "starting with token=stderr-tok-7c1e93 and Authorization: Bearer stderr-bearer-52ad0e" >&2
  echo '{"password":"stderr-json-pw-0b9f44"}' >&2
  printf '%s\n' '{"jsonrpc":"2.0","id":1,"result":{"content":[],"access_token":"result-tok-e61f27","session":{"client_secret":"result-cs-3d08aa"}}}'
done
"#;

#[test]
fn secrets_planted_in_params_results_and_the_servers_stderr_appear_in_no_output_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cap");
    let log = dir.path().join("mcptape.log");
    // The server command line is recorded as given (SECURITY.md says so): keep the secrets in a script file.
    let script = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(script.path(), SERVER).unwrap();
    let request = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"q","arguments":{"api_key":"param-key-19f4c2","db":{"password":"param-pw-8e2b71"}},"_meta":{"authorization":"Bearer param-bearer-44a0d9"}}}"#;
    let mut child = mcptape()
        .args([
            "record",
            "--out",
            out.to_str().unwrap(),
            "--log",
            log.to_str().unwrap(),
            "--",
            "sh",
            script.path().to_str().unwrap(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{request}\n").as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // The client still gets the secrets it was sent: redaction is for what is stored, never for the traffic.
    assert!(contains(&o.stdout, "result-tok-e61f27"));
    // And the server's stderr is still the server's: passed through to mcptape's stderr, as without the tap.
    assert!(contains(&o.stderr, "stderr-tok-7c1e93"));

    // Every file mcptape wrote: capture segments, the log, and an export and an inspect report of the capture.
    let export = dir.path().join("export.jsonl");
    let e = run(&[
        "dataset",
        "export",
        out.to_str().unwrap(),
        "--format",
        "jsonl",
        "-o",
        export.to_str().unwrap(),
    ]);
    assert!(e.status.success(), "{}", stderr(&e));
    let inspect = run(&["dataset", "inspect", out.to_str().unwrap(), "--format", "json"]);
    let show = run(&["dataset", "show", out.to_str().unwrap(), "--width", "0"]);
    let secrets = [
        "param-key-19f4c2",
        "param-pw-8e2b71",
        "param-bearer-44a0d9",
        "result-tok-e61f27",
        "result-cs-3d08aa",
        "stderr-tok-7c1e93",
        "stderr-bearer-52ad0e",
        "stderr-json-pw-0b9f44",
    ];
    let files = files_under(dir.path());
    assert!(files.iter().any(|f| f.extension().is_some_and(|e| e == "parquet")));
    let mut outputs: Vec<(String, Vec<u8>)> = files
        .iter()
        .map(|f| (f.display().to_string(), std::fs::read(f).unwrap()))
        .collect();
    outputs.push(("inspect output".into(), inspect.stdout));
    outputs.push(("show output".into(), show.stdout.clone()));
    for (name, bytes) in &outputs {
        for s in secrets {
            assert!(!contains(bytes, s), "{s} found in {name}");
        }
    }
    // The stored (decoded) values are redacted, not gone: the search above read compressed Parquet too, so check
    // the decoded transcript shows the redaction marker where the secrets were.
    let shown = String::from_utf8_lossy(&show.stdout);
    assert!(shown.contains("[REDACTED]"), "{shown}");
    let exported = std::fs::read_to_string(&export).unwrap();
    assert!(exported.contains("starting with token=[REDACTED]"), "{exported}");
    assert!(exported.contains(r#"\"name\":\"q\""#), "{exported}");
}

#[test]
fn capture_files_are_0600_and_their_folders_0700_even_under_a_permissive_umask() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("a/b/cap");
    let o = mcptape()
        .args([
            "record",
            "--out",
            out.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            "umask 000; cat",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin
                .take()
                .unwrap()
                .write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n")?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    for d in [dir.path().join("a"), dir.path().join("a/b"), out.clone()] {
        assert_eq!(mode(&d), 0o700, "{}", d.display());
    }
    let files = files_under(&out);
    assert!(!files.is_empty());
    for f in files {
        assert_eq!(mode(&f), 0o600, "{}", f.display());
    }
}

/// A target that answers every POST with an empty result for its id and remembers every header line it got.
fn header_recording_target() -> (String, Arc<Mutex<Vec<String>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/mcp", l.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen2 = seen.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { return };
            let seen = seen2.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut w = s;
                loop {
                    let mut len = 0usize;
                    let mut method = String::new();
                    loop {
                        let mut line = String::new();
                        if r.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if method.is_empty() {
                            method = line.clone();
                        }
                        let t = line.trim_end().to_string();
                        if t.is_empty() {
                            break;
                        }
                        if let Some(v) = t.to_ascii_lowercase().strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                        seen.lock().unwrap().push(t);
                    }
                    let mut body = vec![0; len];
                    if r.read_exact(&mut body).is_err() {
                        return;
                    }
                    let id = serde_json::from_slice::<serde_json::Value>(&body)
                        .ok()
                        .and_then(|v| v.get("id").cloned());
                    let resp = match id {
                        Some(id) if method.starts_with("POST") => {
                            let b = serde_json::json!({"jsonrpc":"2.0","id":id,"result":{}}).to_string();
                            format!(
                                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{b}",
                                b.len()
                            )
                        }
                        _ => "HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n".to_string(),
                    };
                    if w.write_all(resp.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, seen)
}

/// An HTTP capture (imported from JSONL with --no-redact) whose requests carry a recorded Authorization value.
fn capture_with_authorization(dir: &Path) -> PathBuf {
    let cap = fixture_capture(dir);
    let jsonl = dir.join("plain.jsonl");
    let e = run(&[
        "dataset",
        "export",
        cap.to_str().unwrap(),
        "--format",
        "jsonl",
        "-o",
        jsonl.to_str().unwrap(),
    ]);
    assert!(e.status.success(), "{}", stderr(&e));
    let mut lines = String::new();
    for l in std::fs::read_to_string(&jsonl).unwrap().lines() {
        let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
        v["transport"] = "http".into();
        v["http"] = serde_json::json!({
            "method": "POST", "path": "/mcp",
            "headers": [["authorization", "Bearer recorded-auth-5f1c0e"], ["x-api-key", "recorded-key-a9d3b4"]]
        });
        lines.push_str(&v.to_string());
        lines.push('\n');
    }
    std::fs::write(&jsonl, lines).unwrap();
    let out = dir.join("with-auth.parquet");
    let i = run(&[
        "dataset",
        "import",
        jsonl.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--no-redact",
    ]);
    assert!(i.status.success(), "{}", stderr(&i));
    let show = run(&[
        "dataset",
        "export",
        out.to_str().unwrap(),
        "--format",
        "jsonl",
        "-o",
        "-",
    ]);
    assert!(
        contains(&show.stdout, "recorded-auth-5f1c0e"),
        "the capture does hold the recorded value"
    );
    out
}

#[test]
fn replay_and_load_never_send_a_recorded_authorization_value() {
    let dir = tempfile::tempdir().unwrap();
    let cap = capture_with_authorization(dir.path());
    let (url, seen) = header_recording_target();
    let live = "Authorization: Bearer live-token-given-on-the-command-line";
    let posts = |seen: &Mutex<Vec<String>>| seen.lock().unwrap().iter().filter(|h| h.starts_with("POST")).count();
    let o = run(&[
        "replay",
        cap.to_str().unwrap(),
        "--target",
        &url,
        "--header",
        live,
        "--timeout",
        "1s",
    ]);
    assert_ne!(o.status.code(), Some(2), "{}", stderr(&o));
    let after_replay = posts(&seen);
    assert!(after_replay > 0, "replay sent requests");
    let o = run(&[
        "load",
        cap.to_str().unwrap(),
        "--target",
        &url,
        "-c",
        "2",
        "--sessions",
        "4",
        "--header",
        live,
        "--timeout",
        "1s",
    ]);
    assert_ne!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(posts(&seen) > after_replay, "load sent requests");
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.iter().any(|h| h.starts_with("POST")),
        "the target got requests: {seen:?}"
    );
    let auth: Vec<_> = seen
        .iter()
        .filter(|h| h.to_ascii_lowercase().starts_with("authorization:"))
        .collect();
    assert!(!auth.is_empty(), "the live credential was sent");
    assert!(
        auth.iter().all(|h| h.ends_with("live-token-given-on-the-command-line")),
        "{auth:?}"
    );
    for h in &seen {
        assert!(
            !h.contains("recorded-auth-5f1c0e") && !h.contains("recorded-key-a9d3b4"),
            "sent: {h}"
        );
    }
}

#[test]
fn record_listen_and_serve_listen_refuse_non_loopback_addresses_without_allow_remote() {
    let dir = tempfile::tempdir().unwrap();
    let cap = fixture_capture(dir.path());
    let out = dir.path().join("cap");
    for addr in ["0.0.0.0:0", "[::]:0"] {
        let o = run(&[
            "record",
            "--out",
            out.to_str().unwrap(),
            "--listen",
            addr,
            "--upstream",
            "http://127.0.0.1:9/mcp",
        ]);
        assert_one_line_error(&o, 2, &["not a loopback address", "--allow-remote"]);
        let o = run(&["serve", cap.to_str().unwrap(), "--listen", addr]);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(stderr(&o).contains("--allow-remote"), "{}", stderr(&o));
    }
    assert!(!out.exists(), "nothing is written when the tap refuses to start");
}

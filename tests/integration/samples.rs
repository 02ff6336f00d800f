//! The sample captures in datasets/samples: each verifies, replays against `mcptape serve` of itself, and against
//! the real server it was recorded from (installed by scripts/test) with only the ignores the samples README
//! documents. They are small and hold no secrets or paths of the machine that made them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::util::*;

const SAMPLES: [&str; 4] = ["everything-stdio", "everything-http", "time-2025", "time-2026"];

/// What server-everything stamps with the current time (see datasets/samples/README.md).
const EVERYTHING_IGNORES: [&str; 7] = [
    "--ignore-volatile",
    "--ignore",
    "/result/contents/*/text",
    "--ignore",
    "/result/contents/*/blob",
    "--ignore",
    "/result/messages/*/content/resource/text",
];
/// What mcp-server-time answers with the current time.
const TIME_IGNORES: [&str; 4] = [
    "--ignore",
    "/result/content/*/text",
    "--ignore",
    "/result/structuredContent",
];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn sample(name: &str) -> PathBuf {
    root().join("datasets/samples").join(format!("{name}.parquet"))
}

fn replay(name: &str, extra: &[&str]) -> Output {
    mcptape()
        .arg("replay")
        .arg(sample(name))
        .args(["--timeout", "30s"])
        .args(extra)
        .current_dir(root())
        .output()
        .unwrap()
}

fn assert_pass(o: &Output, what: &str) {
    assert_eq!(o.status.code(), Some(0), "{what}:\n{}\n{}", stdout(o), stderr(o));
    assert!(stdout(o).contains("replay PASS"), "{what}: {}", stdout(o));
}

#[test]
fn every_sample_verifies_and_is_small() {
    for name in SAMPLES {
        let path = sample(name);
        let size = std::fs::metadata(&path).unwrap().len();
        assert!(size < 1 << 20, "{name}: {size} bytes");
        let o = run(&["dataset", "verify", path.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(0), "{name}: {}", stdout(&o));
        assert!(stdout(&o).starts_with("ok: 1 file(s)"), "{}", stdout(&o));
    }
}

#[test]
fn samples_hold_no_secrets_nor_local_paths() {
    for name in SAMPLES {
        let o = run(&[
            "dataset",
            "export",
            sample(name).to_str().unwrap(),
            "--format",
            "jsonl",
            "-o",
            "-",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let text = stdout(&o);
        for needle in ["Bearer ", "/home/", "/root/", "/work/", "/tmp/"] {
            assert!(!text.contains(needle), "{name} holds {needle:?}");
        }
        // Recorded Mcp-Session-Id values are hashed.
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            if let Some(s) = v["mcp_session"].as_str() {
                assert!(s.starts_with("sha256:"), "{name}: {s}");
            }
        }
    }
}

#[test]
fn stdio_samples_replay_against_serve_of_themselves() {
    let bin = env!("CARGO_BIN_EXE_mcptape");
    for name in ["everything-stdio", "time-2025", "time-2026"] {
        let cap = sample(name);
        let o = replay(name, &["--", bin, "serve", cap.to_str().unwrap(), "--stdio"]);
        assert_pass(&o, name);
    }
}

#[test]
fn http_sample_replays_against_serve_of_itself() {
    let served = serve_http(&sample("everything-http"), &[]);
    let url = format!("{}/mcp", served.1);
    assert_pass(&replay("everything-http", &["--target", &url]), "everything-http");
}

#[test]
fn everything_stdio_sample_replays_against_the_real_server() {
    let everything = npm_bin("mcp-server-everything");
    let mut args: Vec<&str> = EVERYTHING_IGNORES.to_vec();
    args.extend(["--", everything.to_str().unwrap(), "stdio"]);
    assert_pass(&replay("everything-stdio", &args), "everything-stdio");
}

/// A real server-everything over Streamable HTTP on a free port, killed when dropped.
struct Everything(std::process::Child);

impl Drop for Everything {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn everything_http_sample_replays_against_the_real_server() {
    let port = free_port();
    let server = Everything(
        Command::new(npm_bin("mcp-server-everything"))
            .arg("streamableHttp")
            .env("PORT", port.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "server-everything did not start");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let url = format!("http://127.0.0.1:{port}/mcp");
    let mut args: Vec<&str> = EVERYTHING_IGNORES.to_vec();
    args.extend(["--target", &url]);
    assert_pass(&replay("everything-http", &args), "everything-http");
    drop(server);
}

#[test]
fn time_samples_replay_against_the_real_server_in_their_era() {
    let py = python();
    for name in ["time-2025", "time-2026"] {
        let mut args: Vec<&str> = TIME_IGNORES.to_vec();
        args.extend([
            "--",
            py.to_str().unwrap(),
            "-m",
            "mcp_server_time",
            "--local-timezone",
            "UTC",
        ]);
        assert_pass(&replay(name, &args), name);
    }
}

#[test]
fn the_samples_readme_documents_every_ignore_the_tests_use() {
    let readme = std::fs::read_to_string(root().join("datasets/samples/README.md")).unwrap();
    for a in EVERYTHING_IGNORES.iter().chain(&TIME_IGNORES) {
        assert!(readme.contains(a), "datasets/samples/README.md does not mention {a}");
    }
    for name in SAMPLES {
        assert!(readme.contains(&format!("{name}.parquet")), "README lacks {name}");
    }
}

#[test]
fn the_http_sample_exports_as_har_that_meets_the_har_1_2_required_fields() {
    let dir = tempfile::tempdir().unwrap();
    let har = dir.path().join("s.har");
    let o = run(&[
        "dataset",
        "export",
        sample("everything-http").to_str().unwrap(),
        "--format",
        "har",
        "-o",
        har.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let check = |path: &Path| {
        Command::new(python())
            .arg(root().join("tests/python/har_check.py"))
            .arg(path)
            .output()
            .unwrap()
    };
    let ok = check(&har);
    assert!(ok.status.success(), "{}", stdout(&ok));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&har).unwrap()).unwrap();
    let n = v["log"]["entries"].as_array().unwrap().len();
    assert_eq!(stdout(&ok).trim(), format!("ok: {n} entries"));
    // The checker is not a rubber stamp: a HAR without a response status fails it.
    let mut broken = v.clone();
    broken["log"]["entries"][0]["response"]
        .as_object_mut()
        .unwrap()
        .remove("status");
    let bad = dir.path().join("bad.har");
    std::fs::write(&bad, broken.to_string()).unwrap();
    let o = check(&bad);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains("missing 'status'"), "{}", stdout(&o));
}

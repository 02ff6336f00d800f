//! The uploader against a real S3-compatible server: moto (`python -m moto.server`, pinned in
//! tests/python/requirements.txt) on a free loopback port, killed and restarted to play an outage.
//!
//! moto keeps its objects in memory, so a restarted moto starts empty. "In order, nothing duplicated" is therefore
//! checked on moto's own request log (every request line with its status, across both runs): the objects created
//! (a 200 PUT of a key, or a 200 POST completing a multipart upload) must be exactly the segments in submit order,
//! each once. Bytes are checked by reading every object back.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use futures_util::TryStreamExt;
use mcptape_uploader::{Backoff, UploadConfig, UploadStats, Uploader, marker_path};
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};

const BUCKET: &str = "captures";
const WAIT: Duration = Duration::from_secs(60);

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("MCPTAPE_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    assert!(
        venv.exists(),
        "no test Python: run scripts/test, which creates .venv with tests/python/requirements.txt (moto)"
    );
    venv
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A moto S3 server; killed when dropped. Its request log goes to `log`.
struct Moto {
    child: Child,
}

impl Moto {
    /// Starts moto on `port` and creates the bucket (retrying until moto answers).
    fn start(port: u16, log: &Path) -> Moto {
        let log = std::fs::File::create(log).unwrap();
        let child = Command::new(python())
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start moto (python -m moto.server)");
        let moto = Moto { child };
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            match http(port, "PUT", &format!("/{BUCKET}")) {
                Ok(200) => return moto,
                r => assert!(
                    std::time::Instant::now() < deadline,
                    "moto on port {port} did not come up: {r:?}"
                ),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A bare HTTP/1.1 request; returns the status code.
fn http(port: u16, method: &str, path: &str) -> std::io::Result<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    resp.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(resp.clone()))
}

/// The keys moto created, in log order: a 200 `PUT /bucket/key` (no query) or a 200 `POST /bucket/key?uploadId=…`.
fn created_keys(log: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(log).unwrap();
    let mut keys = Vec::new();
    for line in text.lines() {
        let line = strip_ansi(line);
        let Some((_, rest)) = line.split_once('"') else {
            continue;
        };
        let Some((request, after)) = rest.split_once('"') else {
            continue;
        };
        let mut parts = request.split(' ');
        let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
            continue;
        };
        if after.trim().split(' ').next() != Some("200") {
            continue;
        }
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let Some(key) = path.strip_prefix(&format!("/{BUCKET}/")) else {
            continue;
        };
        let completes_multipart = method == "POST" && query.contains("uploadId=");
        if (method == "PUT" && query.is_empty()) || completes_multipart {
            keys.push(percent_decode(key));
        }
    }
    keys
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        match (b[i], hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

/// Deterministic pseudo-random bytes (so no two segments share content).
fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Writes a segment under `spool` at hive-style `key`; returns its path.
fn segment(spool: &Path, key: &str, data: &[u8]) -> PathBuf {
    let path = spool.join(key);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, data).unwrap();
    path
}

fn config(spool: &Path, port: u16) -> UploadConfig {
    let mut cfg = UploadConfig::new(format!("s3://{BUCKET}/prod/caps"), spool);
    cfg.endpoint = Some(format!("http://127.0.0.1:{port}"));
    cfg.backoff = Backoff {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(400),
        factor: 2.0,
    };
    cfg.multipart_threshold = 5 << 20;
    cfg.part_size = 5 << 20;
    cfg.s3_options = creds();
    cfg
}

fn creds() -> Vec<(String, String)> {
    [
        ("aws_access_key_id", "testing"),
        ("aws_secret_access_key", "testing"),
        ("aws_region", "us-east-1"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .to_vec()
}

fn reader(port: u16) -> Arc<dyn ObjectStore> {
    Arc::new(
        AmazonS3Builder::new()
            .with_bucket_name(BUCKET)
            .with_endpoint(format!("http://127.0.0.1:{port}"))
            .with_allow_http(true)
            .with_region("us-east-1")
            .with_access_key_id("testing")
            .with_secret_access_key("testing")
            .build()
            .unwrap(),
    )
}

async fn get(store: &dyn ObjectStore, key: &str) -> Vec<u8> {
    let loc = ObjectPath::parse(format!("prod/caps/{key}")).unwrap();
    store
        .get(&loc)
        .await
        .unwrap_or_else(|e| panic!("GET {key}: {e}"))
        .bytes()
        .await
        .unwrap()
        .to_vec()
}

async fn list(store: &dyn ObjectStore) -> Vec<String> {
    let mut keys: Vec<String> = store
        .list(None)
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .expect("list the bucket");
    keys.sort();
    keys
}

/// Polls `stats` until `done` holds (generous deadline; no timing assertions).
async fn wait_for(up: &Uploader, what: &str, done: impl Fn(&UploadStats) -> bool) -> UploadStats {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let s = up.stats();
        if done(&s) {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_arrive_byte_identical_in_order_once_across_a_store_outage_and_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("capture");
    let (log1, log2) = (tmp.path().join("moto1.log"), tmp.path().join("moto2.log"));
    let port = free_port();
    let moto = Moto::start(port, &log1);
    let store = reader(port);

    // Realistic sizes; the 6.5 MB one goes up as a two-part multipart upload (threshold and parts 5 MiB).
    let seg = |n: u64, len: usize| {
        let key = format!("date=2026-11-22/hour=1{}/seg-{n}.parquet", n / 4);
        let data = bytes(n, len);
        (segment(&spool, &key, &data), key, data)
    };
    let first = [seg(1, 2_000), seg(2, 1_000_000), seg(3, 6_500_000)];

    let up = Uploader::start(config(&spool, port)).unwrap();
    for (path, key, _) in &first {
        up.submit(path.clone(), key.clone());
    }
    let s = wait_for(&up, "the first three uploads", |s| s.uploaded_segments == 3).await;
    assert_eq!(s.uploaded_bytes, 2_000 + 1_000_000 + 6_500_000);
    assert_eq!((s.backlog_segments, s.backlog_bytes, s.dropped_segments), (0, 0, 0));
    for (path, key, data) in &first {
        assert!(
            get(store.as_ref(), key).await == *data,
            "{key} differs from the local segment"
        );
        assert!(!path.exists(), "{key}: deleted locally after the confirmed upload");
        assert!(!marker_path(path).exists(), "{key}: marker removed with the segment");
    }

    // The store goes away. New segments are retried with backoff and stay in the spool.
    drop(moto);
    let down = [seg(4, 300_000), seg(5, 4_000)];
    for (path, key, _) in &down {
        up.submit(path.clone(), key.clone());
    }
    let s = wait_for(&up, "failed attempts while moto is down", |s| s.failed_attempts >= 3).await;
    assert_eq!(s.uploaded_segments, 3);
    assert_eq!(s.backlog_segments, 2);
    assert!(s.last_error.is_some());
    for (path, key, _) in &down {
        assert!(path.exists(), "{key}: kept locally while unconfirmed");
        assert!(!up.is_uploaded(path));
    }

    // The recorder stops meanwhile: shutdown gives up at its deadline and leaves them in the spool.
    let s = up.shutdown(Duration::from_millis(300)).await;
    assert_eq!((s.backlog_segments, s.backlog_bytes), (2, 304_000));
    assert!(down.iter().all(|(p, _, _)| p.exists()));

    // A new uploader queues them again (oldest first), ahead of what is submitted now; the store is still down.
    let up = Uploader::start(config(&spool, port)).unwrap();
    assert_eq!(up.stats().backlog_segments, 2, "unmarked segments re-queued at start");
    let late = seg(6, 50_000);
    up.submit(late.0.clone(), late.1.clone());
    up.submit(late.0.clone(), late.1.clone()); // a duplicate submit is ignored
    wait_for(&up, "failed attempts after the restart", |s| s.failed_attempts >= 2).await;

    // The store comes back (empty: moto keeps objects in memory) on the same port.
    let moto = Moto::start(port, &log2);
    let s = wait_for(&up, "the backlog after the store returned", |s| {
        s.uploaded_segments == 3
    })
    .await;
    assert_eq!((s.backlog_segments, s.dropped_segments), (0, 0));
    let after: Vec<_> = down.iter().chain([&late]).collect();
    for (path, key, data) in &after {
        assert!(
            get(store.as_ref(), key).await == *data,
            "{key} differs from the local segment"
        );
        assert!(!path.exists(), "{key}: deleted locally after the confirmed upload");
    }
    let mut expect: Vec<String> = after.iter().map(|(_, k, _)| format!("prod/caps/{k}")).collect();
    expect.sort();
    assert_eq!(
        list(store.as_ref()).await,
        expect,
        "the restarted store holds exactly the later segments"
    );
    let s = up.shutdown(Duration::from_secs(5)).await;
    assert_eq!(s.backlog_segments, 0);
    drop(moto);

    // Across both moto runs: every segment created once, in submit order.
    let mut created = created_keys(&log1);
    created.extend(created_keys(&log2));
    let expected: Vec<String> = first
        .iter()
        .chain(&down)
        .chain([&late])
        .map(|(_, k, _)| format!("prod/caps/{k}"))
        .collect();
    assert_eq!(created, expected, "objects created, in order, across the outage");
    let multipart_completions = std::fs::read_to_string(&log1)
        .unwrap()
        .lines()
        .filter(|l| l.contains("POST") && l.contains("uploadId="))
        .count();
    assert_eq!(
        multipart_completions, 1,
        "the 6.5 MB segment went up as a multipart upload"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_segments_are_marked_not_reuploaded_and_the_spool_bound_drops_the_oldest() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = tmp.path().join("capture");
    let (log1, log2) = (tmp.path().join("moto1.log"), tmp.path().join("moto2.log"));
    let port = free_port();
    let moto = Moto::start(port, &log1);
    let mut cfg = config(&spool, port);
    cfg.delete_after_upload = false;
    cfg.max_spool_bytes = 25_000;
    let seg = |n: u64| {
        let key = format!("date=2026-11-22/hour=09/keep-{n}.parquet");
        let data = bytes(100 + n, 10_000);
        (segment(&spool, &key, &data), key, data)
    };

    let s1 = seg(1);
    let up = Uploader::start(cfg.clone()).unwrap();
    up.submit(s1.0.clone(), s1.1.clone());
    wait_for(&up, "the first upload", |s| s.uploaded_segments == 1).await;
    assert!(s1.0.exists(), "kept locally without delete_after_upload");
    assert!(up.is_uploaded(&s1.0));
    up.shutdown(Duration::from_secs(5)).await;

    // A restart finds the marker and does not upload it again.
    let up = Uploader::start(cfg.clone()).unwrap();
    assert_eq!(up.stats().backlog_segments, 0);

    // The store goes down; with a long backoff the head sits between attempts, so the bound (25 000 bytes, i.e.
    // two 10 000-byte segments) deterministically drops it, the oldest, when the fourth segment arrives.
    drop(moto);
    up.shutdown(Duration::from_secs(5)).await;
    let mut slow = cfg.clone();
    slow.backoff = Backoff {
        initial: Duration::from_secs(30),
        max: Duration::from_secs(60),
        factor: 2.0,
    };
    let up = Uploader::start(slow).unwrap();
    let (s2, s3, s4) = (seg(2), seg(3), seg(4));
    up.submit(s2.0.clone(), s2.1.clone());
    wait_for(&up, "the first failed attempt", |s| s.failed_attempts >= 1).await;
    up.submit(s3.0.clone(), s3.1.clone());
    up.submit(s4.0.clone(), s4.1.clone());
    let s = up.stats();
    assert_eq!(
        (s.dropped_segments, s.backlog_segments, s.backlog_bytes),
        (1, 2, 20_000),
        "{s:?}"
    );
    assert!(
        s2.0.exists(),
        "without delete_after_upload a dropped segment stays in the folder"
    );
    assert!(!up.is_uploaded(&s2.0));
    let s = up.shutdown(Duration::from_millis(200)).await;
    assert_eq!(s.uploaded_segments, 0);

    // Store back, fresh uploader with room for all three (with the same bound the start-up scan would drop the
    // oldest again): the dropped one is queued again with the other two, oldest first.
    let moto = Moto::start(port, &log2);
    cfg.max_spool_bytes = u64::MAX;
    let up = Uploader::start(cfg).unwrap();
    assert_eq!(up.stats().backlog_segments, 3);
    wait_for(&up, "the three kept segments", |s| s.uploaded_segments == 3).await;
    let store = reader(port);
    for (path, key, data) in [&s2, &s3, &s4] {
        assert!(get(store.as_ref(), key).await == *data, "{key} differs");
        assert!(up.is_uploaded(path));
    }
    up.shutdown(Duration::from_secs(5)).await;
    drop(moto);
    let mut created = created_keys(&log1);
    created.extend(created_keys(&log2));
    let expected: Vec<String> = [&s1, &s2, &s3, &s4]
        .iter()
        .map(|(_, k, _)| format!("prod/caps/{k}"))
        .collect();
    assert_eq!(created, expected);
}

#[tokio::test]
async fn a_bad_url_or_option_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let e = Uploader::start(UploadConfig::new("https://bucket/x", tmp.path()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("https://bucket/x") && e.contains("s3://"), "{e}");
    let mut cfg = UploadConfig::new("s3://bucket/x", tmp.path());
    cfg.s3_options = vec![("no_such_option".into(), "1".into())];
    let e = Uploader::start(cfg).unwrap_err().to_string();
    assert!(e.contains("no_such_option"), "{e}");
}

#[test]
fn start_outside_a_runtime_is_an_error_not_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let e = Uploader::start(UploadConfig::new("s3://bucket/x", tmp.path())).unwrap_err();
    assert!(e.to_string().contains("tokio runtime"), "{e}");
}

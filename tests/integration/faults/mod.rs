//! Faults the recorder must survive, each proven here (RELIABILITY.md points at these tests by name): SIGKILL at
//! many points of a busy session, a file-size limit while recording, huge messages; faults on the network are in
//! [`network`].

mod network;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use mcptape_datasets::{Direction, Kind, Scan};

use crate::util::*;

fn msg(i: usize) -> String {
    format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":{i},\"method\":\"tools/call\",\"params\":{{\"name\":\"echo\",\"arguments\":{{\"text\":\"message number {i} of a busy session\"}}}}}}\n"
    )
}

/// Request ids of the recovered c2s and s2c message frames (the echo server repeats each request).
fn ids(dir: &Path, d: Direction) -> Vec<u64> {
    Scan::new(&[dir.to_path_buf()])
        .unwrap()
        .frames()
        .unwrap()
        .into_iter()
        .filter(|f| f.direction == d && f.kind == Kind::Request)
        .map(|f| f.rpc_id.unwrap().parse().unwrap())
        .collect()
}

/// A tiny deterministic generator for the kill points (no dependency needed for 50 numbers).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

/// One kill point: `before` messages pass through the tap and are echoed, the session idles for longer than the
/// flush interval (plus a wide margin for a busy machine), then `after` more are written and the recorder is
/// SIGKILLed `delay_ms` later, in the middle of them. After `dataset recover`, every one of the `before` messages
/// must be there in both directions, what was recovered must be a gap-free prefix, and `verify` must pass.
fn kill_point(root: &Path, point: usize, before: usize, after: usize, delay_ms: u64) {
    let out = root.join(format!("p{point}"));
    let mut child = mcptape()
        .args(["record", "--out", out.to_str().unwrap(), "--", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut echoes = BufReader::new(child.stdout.take().unwrap());
    let mut all = String::new();
    for i in 0..before {
        all.push_str(&msg(i));
    }
    stdin.write_all(all.as_bytes()).unwrap();
    let mut line = String::new();
    for i in 0..before {
        line.clear();
        echoes.read_line(&mut line).unwrap();
        assert_eq!(line, msg(i), "point {point}: echo {i}");
    }
    // Well past the flush interval: what was forwarded so far must now be in the journal.
    std::thread::sleep(mcptape_datasets::writer::FLUSH_INTERVAL * 2 + Duration::from_millis(400));
    let tail: String = (before..before + after).map(msg).collect();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(tail.as_bytes());
        stdin
    });
    std::thread::sleep(Duration::from_millis(delay_ms));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let _ = child.wait();
    drop(writer.join());
    let o = run(&["dataset", "recover", out.to_str().unwrap()]);
    assert!(
        o.status.success(),
        "point {point}: recover: {}{}",
        stdout(&o),
        stderr(&o)
    );
    for d in [Direction::C2s, Direction::S2c] {
        let got = ids(&out, d);
        assert!(
            got.len() >= before,
            "point {point} ({before} before, {after} after, {delay_ms} ms): {d:?} has {} of the {before} flushed messages",
            got.len()
        );
        assert!(
            got.iter().enumerate().all(|(i, &id)| id == i as u64),
            "point {point}: {d:?} is not a gap-free prefix"
        );
    }
    let o = run(&["dataset", "verify", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "point {point}: {}{}", stdout(&o), stderr(&o));
}

#[test]
fn sigkill_at_50_seeded_points_of_a_busy_session_loses_nothing_older_than_the_flush_interval() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Lcg(0x5EED_0009);
    let points: Vec<(usize, usize, u64)> = (0..50)
        .map(|_| (1 + rng.below(1_500) as usize, rng.below(3_000) as usize, rng.below(40)))
        .collect();
    // Ten at a time: each point spends most of its time idling past the flush interval.
    for (batch_no, batch) in points.chunks(10).enumerate() {
        std::thread::scope(|s| {
            for (k, &(before, after, delay)) in batch.iter().enumerate() {
                let root = dir.path();
                s.spawn(move || kill_point(root, batch_no * 10 + k, before, after, delay));
            }
        });
    }
}

/// `prlimit --fsize=BYTES mcptape record ...`: every file the recorder writes is limited to BYTES.
fn limited(bytes: u64) -> Command {
    let mut c = Command::new("prlimit");
    c.arg(format!("--fsize={bytes}")).arg(env!("CARGO_BIN_EXE_mcptape"));
    c
}

#[test]
fn a_file_size_limit_while_recording_keeps_traffic_flowing_and_counts_and_notes_the_dropped_frames() {
    if Command::new("prlimit").arg("--version").output().is_err() {
        panic!("prlimit (util-linux) is needed for this test");
    }
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cap");
    let n = 12_000;
    let input: String = (0..n).map(msg).collect();
    // 1 MB per file; the session is about 2 x 1.6 MB of payload, so the journal hits the limit early.
    let mut child = limited(1_000_000)
        .args(["record", "--out", out.to_str().unwrap(), "--", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let sent = input.clone();
    let writer = std::thread::spawn(move || stdin.write_all(sent.as_bytes()));
    let o = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        o.stdout == input.as_bytes(),
        "the traffic was not relayed byte for byte"
    );
    assert!(err.contains("capture write failed"), "{err}");
    assert!(err.contains("could not be recorded"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let dropped: u64 = err
        .lines()
        .find_map(|l| {
            l.strip_prefix("mcptape: ")?
                .split(" frame(s) could not be recorded")
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no dropped count in {err}"));
    assert!(dropped > 0);

    // What was written is readable, carries the error and the count, and nothing is counted twice.
    let scan = Scan::new(std::slice::from_ref(&out)).unwrap();
    let metas = scan.metas().unwrap();
    assert!(!metas.is_empty(), "no segment at all");
    // Each segment counts what was lost since the one before, so the folder's counts add up to the run's.
    let counted: u64 = metas.iter().map(|(_, m, _)| m.dropped_frames).sum();
    assert_eq!(counted, dropped, "the metadata's dropped counts");
    let last = &metas.iter().max_by_key(|(p, _, _)| p.clone()).unwrap().1;
    assert!(last.note.contains("capture write failed"), "{:?}", last.note);
    let frames = scan.frames().unwrap();
    let messages = frames.iter().filter(|f| f.kind != Kind::Lifecycle).count() as u64;
    assert!(messages < 2 * n as u64, "the limit did not bite");
    assert!(
        messages + dropped >= 2 * n as u64,
        "{messages} recorded + {dropped} dropped < {} sent",
        2 * n
    );
    for f in std::fs::read_dir(&out).unwrap() {
        let p = f.unwrap().path();
        assert!(
            !p.to_string_lossy().ends_with(".tmp"),
            "a half-written segment was left: {}",
            p.display()
        );
    }
}

#[test]
fn messages_of_10_and_100_mb_pass_byte_exact_and_are_recorded_in_bounded_parts() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cap");
    let big = |n: usize| {
        let mut m = b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\",\"params\":{\"p\":\"".to_vec();
        m.resize(n - 4, b'a');
        m.extend_from_slice(b"\"}}\n");
        m
    };
    let ten = big(10 << 20);
    let hundred = big(100 << 20);
    // --max-frame 16 MiB: the 10 MB message is one frame, the 100 MB one is recorded in parts.
    let mut child = mcptape()
        .args([
            "record",
            "--out",
            out.to_str().unwrap(),
            "--max-frame",
            "16777216",
            "--",
            "cat",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let (a, b) = (ten.clone(), hundred.clone());
    let writer = std::thread::spawn(move || {
        stdin.write_all(&a).unwrap();
        stdin.write_all(&b).unwrap();
    });
    let o = child.wait_with_output().unwrap();
    writer.join().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(o.stdout.len(), ten.len() + hundred.len());
    assert!(
        o.stdout[..ten.len()] == ten[..] && o.stdout[ten.len()..] == hundred[..],
        "not byte-exact"
    );
    let frames = Scan::new(&[out]).unwrap().frames().unwrap();
    let c2s: Vec<_> = frames
        .iter()
        .filter(|f| f.direction == Direction::C2s && f.kind != Kind::Lifecycle)
        .collect();
    assert_eq!(c2s[0].payload.len(), ten.len() - 1, "the 10 MB message is one frame");
    assert_eq!(c2s[0].kind, Kind::Request);
    let parts: usize = c2s[1..].iter().map(|f| f.payload.len()).sum();
    assert_eq!(parts, hundred.len() - 1, "the 100 MB message's parts add up");
    assert!(c2s.len() > 2 && c2s[1..].iter().all(|f| f.payload.len() <= 16 << 20));
    assert!(
        frames.iter().any(|f| f.method.as_deref() == Some("mcptape/oversize")),
        "an oversize lifecycle frame marks the split"
    );
}

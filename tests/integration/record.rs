//! `mcptape record -- CMD`: the stdio tap, with small servers made of shell tools.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mcptape_datasets::{Direction, Frame, Kind, Scan};

use crate::util::*;

fn frames_in(dir: &std::path::Path) -> Vec<Frame> {
    Scan::new(&[dir.to_path_buf()]).unwrap().frames().unwrap()
}

/// Payloads of one direction's message frames (lifecycle excluded), joined as the NDJSON stream they came from.
fn stream_of(frames: &[Frame], dir: Direction) -> Vec<u8> {
    let parts: Vec<&[u8]> = frames
        .iter()
        .filter(|f| f.direction == dir && f.kind != Kind::Lifecycle)
        .map(|f| &f.payload[..])
        .collect();
    parts.join(&b'\n')
}

/// Streams `input` through `mcptape record --lossless -- cat` into `out` and checks that stdout and each
/// direction's capture carry it byte for byte (recorded messages rejoined with newlines are the stream without a
/// final newline). Returns the frames and the recorder's stderr.
fn echoed_byte_for_byte(out: &std::path::Path, input: &[u8]) -> (Vec<Frame>, String) {
    let (status, stdout, stderr) = record(&["--out", out.to_str().unwrap(), "--lossless"], &["cat"], input);
    assert!(status.success(), "{stderr}");
    // stdout carries only the child's bytes: cat's echo, exactly.
    assert!(
        stdout == input,
        "relay changed the bytes ({} vs {} bytes)",
        stdout.len(),
        input.len()
    );
    let frames = frames_in(out);
    let lines = input.strip_suffix(b"\n").unwrap_or(input);
    for dir in [Direction::C2s, Direction::S2c] {
        assert!(
            stream_of(&frames, dir) == lines,
            "{dir:?} capture differs from the stream"
        );
    }
    (frames, stderr)
}

/// Runs `mcptape record ARGS -- CMD` with `input` on stdin; returns (status, stdout, stderr).
fn record(args: &[&str], cmd: &[&str], input: &[u8]) -> (std::process::ExitStatus, Vec<u8>, String) {
    let mut child = mcptape()
        .arg("record")
        .args(args)
        .arg("--")
        .args(cmd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    (
        out.status,
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_burst_of_distinct_messages_is_relayed_and_recorded_byte_for_byte() {
    // 16 MB of numbered messages through cat: the relays hand most reads over whole and read on into buffers the
    // writer prepared, so a buffer reused or cut at the wrong place would show as a changed or shifted byte.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cap");
    let mut input = Vec::new();
    let mut n = 0u64;
    while input.len() < 16 << 20 {
        let pad = "y".repeat(usize::try_from(n % 300).unwrap());
        input.extend_from_slice(
            format!("{{\"jsonrpc\":\"2.0\",\"id\":{n},\"method\":\"tools/call\",\"params\":{{\"pad\":\"{pad}\"}}}}\n")
                .as_bytes(),
        );
        n += 1;
    }
    let (frames, _) = echoed_byte_for_byte(&out, &input);
    let messages = frames
        .iter()
        .filter(|f| f.direction == Direction::C2s && f.method.as_deref() == Some("tools/call"))
        .count();
    assert_eq!(u64::try_from(messages).unwrap(), n);
}

#[test]
fn garbage_is_relayed_byte_for_byte_and_recorded_as_invalid_frames() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cap");
    let mut input = Vec::new();
    input.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n");
    input.extend_from_slice(b"\xff\xfe\xfd not utf-8 \xc3\x28\n");
    input.extend_from_slice(b"{\"half\": \n\n\r\n");
    // A single 20 MB line.
    input.extend(std::iter::repeat_n(b'x', 20 << 20));
    input.push(b'\n');
    input.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"ping\"}\n");
    input.extend_from_slice(b"a last line without a newline");
    let (frames, stderr) = echoed_byte_for_byte(&out, &input);
    let c2s: Vec<&Frame> = frames
        .iter()
        .filter(|f| f.direction == Direction::C2s && f.kind != Kind::Lifecycle)
        .collect();
    let kinds: Vec<Kind> = c2s.iter().map(|f| f.kind).collect();
    use Kind::*;
    assert_eq!(
        kinds,
        [Request, Invalid, Invalid, Invalid, Invalid, Invalid, Request, Invalid]
    );
    assert_eq!(c2s[5].payload.len(), 20 << 20);
    assert!(stderr.contains("recorded") && stderr.contains(".parquet"), "{stderr}");
    assert!(!stderr.contains("panicked"));
}

#[test]
fn a_server_that_cannot_start_exits_127_and_leaves_no_files() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cap");
    let (status, stdout, stderr) = record(&["--out", out.to_str().unwrap()], &["/no/such/server"], b"");
    assert_eq!(status.code(), Some(127));
    assert!(stdout.is_empty());
    assert!(stderr.contains("cannot start `/no/such/server`"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(!out.exists(), "no stray files");
    let script = dir.path().join("not-executable.sh");
    std::fs::write(&script, "#!/bin/sh\n").unwrap();
    let (status, _, _) = record(&["--out", out.to_str().unwrap()], &[script.to_str().unwrap()], b"");
    assert_eq!(status.code(), Some(126));
    assert!(!out.exists());
}

#[test]
fn exits_with_the_servers_status_and_records_its_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cap");
    let (status, stdout, stderr) = record(
        &["--out", out.to_str().unwrap()],
        &["sh", "-c", "echo 'server says hi' >&2; cat >/dev/null; exit 3"],
        b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n",
    );
    assert_eq!(status.code(), Some(3));
    assert!(stdout.is_empty());
    assert!(
        stderr.contains("server says hi"),
        "child stderr passes through: {stderr}"
    );
    let frames = frames_in(&out);
    let stderr_frame = frames
        .iter()
        .find(|f| f.method.as_deref() == Some("mcptape/stderr"))
        .unwrap();
    assert_eq!(&stderr_frame.payload[..], b"server says hi");
    assert_eq!(stderr_frame.kind, Kind::Lifecycle);
    let exit = frames
        .iter()
        .find(|f| f.method.as_deref() == Some("mcptape/exit"))
        .unwrap();
    assert!(String::from_utf8_lossy(&exit.payload).contains("\"code\":3"));
    assert!(frames.iter().all(|f| f.transport == mcptape_datasets::Transport::Stdio));
    let seqs: Vec<u64> = frames.iter().map(|f| f.seq).collect();
    assert_eq!(seqs, (0..frames.len() as u64).collect::<Vec<_>>());
}

#[test]
fn a_server_that_ignores_stdin_eof_gets_sigterm_then_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    // Ignores EOF: SIGTERM after the grace period.
    let out = dir.path().join("a");
    let t = Instant::now();
    let (status, _, stderr) = record(
        &["--out", out.to_str().unwrap(), "--grace", "300ms"],
        &["sleep", "30"],
        b"",
    );
    assert_eq!(status.code(), Some(128 + 15), "{stderr}");
    assert!(t.elapsed() < Duration::from_secs(20));
    // Ignores SIGTERM too: SIGKILL after another grace period.
    let out = dir.path().join("b");
    let (status, _, stderr) = record(
        &["--out", out.to_str().unwrap(), "--grace", "300ms"],
        &["sh", "-c", "trap '' TERM; sleep 30"],
        b"",
    );
    assert_eq!(status.code(), Some(128 + 9), "{stderr}");
    let signals: Vec<String> = frames_in(&out)
        .iter()
        .filter(|f| f.method.as_deref() == Some("mcptape/signal"))
        .map(|f| String::from_utf8_lossy(&f.payload).into_owned())
        .collect();
    assert_eq!(signals, ["{\"signal\":\"SIGTERM\"}", "{\"signal\":\"SIGKILL\"}"]);
}

#[test]
fn sigterm_to_the_recorder_is_forwarded_and_the_capture_is_complete() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cap");
    let mut child = mcptape()
        .args(["record", "--out", out.to_str().unwrap(), "--", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    stdin
        .write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n")
        .unwrap();
    // Wait for the echo, so the message is known to have passed through.
    let mut buf = [0u8; 41];
    stdout.read_exact(&mut buf).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(128 + 15), "cat died of the forwarded SIGTERM");
    drop(stdin);
    let frames = frames_in(&out);
    assert_eq!(frames.iter().filter(|f| f.method.as_deref() == Some("ping")).count(), 2);
    assert!(frames.iter().any(|f| f.method.as_deref() == Some("mcptape/signal")));
    assert!(frames.iter().any(|f| f.method.as_deref() == Some("mcptape/exit")));
}

#[test]
fn log_file_takes_the_log_and_the_capture_path_still_goes_to_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cap");
    let log = dir.path().join("tap.log");
    let (status, _, stderr) = record(
        &[
            "--out",
            out.to_str().unwrap(),
            "--log",
            log.to_str().unwrap(),
            "--grace",
            "200ms",
        ],
        &["sleep", "30"],
        b"",
    );
    assert_eq!(status.code(), Some(143));
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("still running; sending SIGTERM"), "{logged}");
    assert!(!stderr.contains("still running"), "{stderr}");
    assert!(stderr.contains("recorded"), "{stderr}");
}

#[test]
fn sigkill_mid_session_then_recover_loses_nothing_older_than_the_flush_interval() {
    // 10,000 messages: 5,000, a pause well past the flush interval, then 5,000 more cut by SIGKILL.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cap");
    let mut child = mcptape()
        .args(["record", "--out", out.to_str().unwrap(), "--", "cat"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    // Count echoed lines, so we know what passed through the tap.
    std::thread::spawn(move || {
        let mut lines = 0usize;
        let mut r = std::io::BufReader::new(stdout);
        let mut line = Vec::new();
        while std::io::BufRead::read_until(&mut r, b'\n', &mut line).unwrap_or(0) > 0 {
            lines += 1;
            line.clear();
            let _ = tx.send(lines);
        }
    });
    let msg = |i: usize| {
        format!("{{\"jsonrpc\":\"2.0\",\"id\":{i},\"method\":\"tools/call\",\"params\":{{\"name\":\"echo\"}}}}\n")
    };
    for i in 0..5_000 {
        stdin.write_all(msg(i).as_bytes()).unwrap();
    }
    let mut echoed = 0;
    while echoed < 5_000 {
        echoed = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("echoes of the first half");
    }
    // The stream goes idle: the tap flushes after its idle delay, and at the latest after the flush interval.
    std::thread::sleep(Duration::from_millis(1_000));
    for i in 5_000..7_500 {
        stdin.write_all(msg(i).as_bytes()).unwrap();
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let _ = child.wait();
    for i in 7_500..10_000 {
        let _ = stdin.write_all(msg(i).as_bytes());
    }
    drop(stdin);

    let o = run(&["dataset", "recover", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stdout_of(&o));
    let frames = frames_in(&out);
    let ids = |dir: Direction| -> Vec<u64> {
        frames
            .iter()
            .filter(|f| f.direction == dir && f.kind == Kind::Request)
            .map(|f| f.rpc_id.as_deref().unwrap().parse().unwrap())
            .collect()
    };
    for dir in [Direction::C2s, Direction::S2c] {
        let got = ids(dir);
        assert!(got.len() >= 5_000, "{dir:?}: only {} frames recovered", got.len());
        // What was recovered is a prefix, in order: nothing in the middle is missing.
        assert!(
            got.iter().enumerate().all(|(i, &id)| id == i as u64),
            "{dir:?}: not a prefix"
        );
    }
    // seq has no holes within what was recovered.
    let o = run(&["dataset", "verify", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout_of(&o));
}

fn stdout_of(o: &std::process::Output) -> String {
    format!("{}{}", stdout(o), stderr(o))
}

#[test]
fn default_capture_folder_is_per_user() {
    let dir = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_mcptape"))
        .args(["record", "--", "true"])
        .env("XDG_DATA_HOME", dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let caps = dir.path().join("mcptape/captures");
    let files: Vec<_> = std::fs::read_dir(&caps)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].to_string_lossy().starts_with("true-"), "{files:?}");
}

#[test]
fn the_server_command_may_come_without_the_double_dash_and_keeps_its_own_flags() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cap");
    let o = mcptape()
        .args([
            "record",
            "--out",
            out.to_str().unwrap(),
            "sh",
            "-c",
            "echo \"$0 $1\" >&2",
            "--out",
            "x",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    // `--out x` after CMD went to the server, not to mcptape.
    assert!(stderr(&o).starts_with("--out x\n"), "{}", stderr(&o));
    assert!(out.exists());
}

#[test]
fn a_full_queue_drops_whole_messages_counts_every_one_and_the_relay_stays_byte_exact() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("cap");
    let line = |i: usize| {
        let pad = "x".repeat((i * 7919) % 1500);
        format!("{{\"jsonrpc\":\"2.0\",\"id\":{i},\"method\":\"tools/call\",\"params\":{{\"pad\":\"{pad}\"}}}}")
    };
    let n = 30_000;
    let mut input = Vec::new();
    for i in 0..n {
        input.extend_from_slice(line(i).as_bytes());
        input.push(b'\n');
    }
    // A 64 KiB queue cannot hold a 23 MB burst: the writer falls behind and whole reads are dropped.
    let (status, stdout, log) = record(
        &["--out", out.to_str().unwrap(), "--queue-max", "64KiB"],
        &["cat"],
        &input,
    );
    assert!(status.success(), "{log}");
    assert!(stdout == input, "the relay changed the bytes");
    let not_recorded: u64 = log
        .lines()
        .find_map(|l| {
            l.strip_prefix("mcptape: ")?
                .split_once(" frame(s) could not be recorded")
        })
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or_else(|| panic!("no drops reported: {log}"));
    assert!(not_recorded > 0);
    let frames = frames_in(&out);
    let mut recorded = 0u64;
    for d in [Direction::C2s, Direction::S2c] {
        let mut last: Option<usize> = None;
        for f in frames.iter().filter(|f| f.direction == d && f.kind != Kind::Lifecycle) {
            // Each recorded message is a whole line that was sent, in order: no fragment of a cut line.
            let id: usize = f
                .rpc_id
                .as_deref()
                .and_then(|s| s.parse().ok())
                .expect("a recorded request has its id");
            assert_eq!(
                f.payload[..],
                *line(id).as_bytes(),
                "{d:?} message {id} recorded changed"
            );
            assert!(last.is_none_or(|l| l < id), "{d:?}: {id} after {last:?}");
            last = Some(id);
            recorded += 1;
        }
    }
    // The tap's own start, two EOF and exit frames share the queue, so they may be dropped too.
    let lifecycle = frames
        .iter()
        .filter(|f| f.kind == Kind::Lifecycle && f.method.as_deref() != Some("mcptape/gap"))
        .count() as u64;
    assert_eq!(
        recorded + lifecycle + not_recorded,
        2 * n as u64 + 4,
        "every frame is recorded or counted as dropped"
    );
    let gaps: u64 = frames
        .iter()
        .filter(|f| f.method.as_deref() == Some("mcptape/gap"))
        .map(|f| {
            serde_json::from_slice::<serde_json::Value>(&f.payload).unwrap()["dropped"]
                .as_u64()
                .unwrap()
        })
        .sum();
    assert!(
        gaps > 0 && gaps <= not_recorded,
        "gap frames count {gaps} of {not_recorded}"
    );
    let o = run(&["dataset", "verify", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout_of(&o), stderr(&o));
}

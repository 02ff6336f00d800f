//! The stdio adapter: spawn the server, relay stdin → child stdin and child stdout → stdout byte for byte, pass
//! child stderr through, and hand copies of everything to the tap.
//!
//! Each direction is a plain thread doing blocking reads and writes: the lowest latency a relay can have, and
//! no runtime between the bytes and the pipe. Each chunk read is queued for the tap (one clock read and one
//! non-blocking send per read; the writer thread splits it into messages) just before it is written on: that keeps
//! the tap's order causal (an answer is never queued before the request it answers, however fast the peer).
//! Shutdown follows the MCP stdio transport: when the client closes stdin, close the child's stdin and wait; then
//! SIGTERM; then SIGKILL.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use mcptape_datasets::Direction;
use mcptape_datasets::wire::ndjson::{NdjsonFramer, Piece};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::sync::mpsc;

use crate::log::Log;
use crate::tap::streams::ChunkLoss;
use crate::tap::{SessionTap, lifecycle};

const CHUNK: usize = crate::tap::READ_BUFFER;

/// Why the child could not be started; maps to the shell's exit codes (127 not found, 126 not executable).
#[derive(Debug, thiserror::Error)]
#[error("cannot start `{command}`: {source}")]
pub struct SpawnError {
    /// The command as given.
    pub command: String,
    /// The OS error.
    pub source: std::io::Error,
}

impl SpawnError {
    /// The exit code a shell would use.
    pub fn exit_code(&self) -> u8 {
        match self.source.kind() {
            std::io::ErrorKind::NotFound => 127,
            _ => 126,
        }
    }
}

/// A started child with its pipes.
#[derive(Debug)]
pub struct Spawned {
    child: Child,
    stdin: ChildStdin,
    stdout: ChildStdout,
    stderr: ChildStderr,
    /// The command line, for lifecycle frames and metadata.
    pub command: Vec<String>,
}

/// Starts `command` with piped stdio. Nothing is written to disk before this succeeds.
pub fn spawn(command: &[OsString]) -> Result<Spawned, SpawnError> {
    let shown: Vec<String> = command.iter().map(|a| a.to_string_lossy().into_owned()).collect();
    let err = |source| SpawnError {
        command: shown.join(" "),
        source,
    };
    let (prog, args) = command
        .split_first()
        .ok_or_else(|| err(std::io::Error::other("no command given")))?;
    let mut child = Command::new(prog)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(err)?;
    let (Some(stdin), Some(stdout), Some(stderr)) = (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        let _ = child.kill();
        return Err(err(std::io::Error::other("child pipes missing")));
    };
    Ok(Spawned {
        child,
        stdin,
        stdout,
        stderr,
        command: shown,
    })
}

impl Spawned {
    /// Kills the child (when the capture cannot start after all).
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Shutdown timing.
#[derive(Debug, Clone, Copy)]
pub struct Shutdown {
    /// After the client closes stdin, how long the child has to exit before SIGTERM.
    pub grace: Duration,
    /// After SIGTERM, how long before SIGKILL.
    pub kill_after: Duration,
    /// After the child exits, how long to wait for its pipes to drain (a grandchild may hold them open).
    pub drain: Duration,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown {
            grace: Duration::from_secs(5),
            kill_after: Duration::from_secs(3),
            drain: Duration::from_secs(2),
        }
    }
}

/// How the child ended.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    /// The child's status.
    pub status: ExitStatus,
    /// The exit code mcptape should return: the child's code, or 128 + signal.
    pub code: u8,
}

fn code_of(status: ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => u8::try_from(c & 0xff).unwrap_or(1),
        (None, Some(s)) => u8::try_from(128 + s).unwrap_or(255),
        _ => 1,
    }
}

enum Event {
    ClientEof,
    ChildExit(std::io::Result<ExitStatus>),
    PumpDone,
}

/// SIGINT, SIGTERM and SIGHUP, caught from before the child starts so none of them can kill the relay itself.
#[derive(Debug)]
pub struct Signals {
    int: Option<tokio::signal::unix::Signal>,
    term: Option<tokio::signal::unix::Signal>,
    hup: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    /// SIGINT and SIGTERM only: SIGHUP is left to a handler that rotates the capture instead of forwarding it.
    pub fn install_without_hup() -> Self {
        use tokio::signal::unix::SignalKind;
        Signals {
            int: signal(SignalKind::interrupt()),
            term: signal(SignalKind::terminate()),
            hup: None,
        }
    }

    /// Installs the handlers (needs a tokio runtime).
    pub fn install() -> Self {
        use tokio::signal::unix::SignalKind;
        Signals {
            int: signal(SignalKind::interrupt()),
            term: signal(SignalKind::terminate()),
            hup: signal(SignalKind::hangup()),
        }
    }
}

/// Relays and records until the child exits, then returns how it ended. `tap` is the session's tap.
pub async fn relay(
    spawned: Spawned,
    tap: SessionTap,
    max_frame: usize,
    shutdown: Shutdown,
    mut signals: Signals,
    log: Log,
) -> Outcome {
    let Spawned {
        mut child,
        stdin,
        stdout,
        stderr,
        command,
    } = spawned;
    let pid = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    let start = serde_json::json!({ "pid": child.id(), "command": command });
    tap.observe(Direction::C2s, Some(lifecycle::START), Bytes::from(start.to_string()));

    let (tx, mut rx) = mpsc::unbounded_channel::<Event>();
    {
        let (tap, tx) = (tap.clone(), tx.clone());
        std::thread::Builder::new()
            .name("mcptape-c2s".into())
            .spawn(move || {
                pump_client(stdin, &tap, max_frame);
                let _ = tx.send(Event::ClientEof);
            })
            .expect("spawn c2s thread");
    }
    {
        let (tap, tx) = (tap.clone(), tx.clone());
        std::thread::Builder::new()
            .name("mcptape-s2c".into())
            .spawn(move || {
                pump_server(stdout, &tap, max_frame);
                let _ = tx.send(Event::PumpDone);
            })
            .expect("spawn s2c thread");
    }
    {
        let (tap, tx) = (tap.clone(), tx.clone());
        std::thread::Builder::new()
            .name("mcptape-stderr".into())
            .spawn(move || {
                pump_stderr(stderr, &tap);
                let _ = tx.send(Event::PumpDone);
            })
            .expect("spawn stderr thread");
    }
    {
        let tx = tx.clone();
        std::thread::Builder::new()
            .name("mcptape-wait".into())
            .spawn(move || {
                let _ = tx.send(Event::ChildExit(child.wait()));
            })
            .expect("spawn wait thread");
    }
    drop(tx);

    // Deadline of the next escalation step (SIGTERM, then SIGKILL) once shutdown has begun.
    let mut escalate: Option<(tokio::time::Instant, Signal)> = None;
    let mut pumps_done = 0;
    let status = loop {
        let deadline = escalate.map(|(at, _)| at);
        tokio::select! {
            ev = rx.recv() => match ev {
                Some(Event::ClientEof) => {
                    if escalate.is_none() {
                        escalate = Some((tokio::time::Instant::now() + shutdown.grace, Signal::SIGTERM));
                    }
                }
                Some(Event::PumpDone) => pumps_done += 1,
                Some(Event::ChildExit(status)) => break status,
                None => break Err(std::io::Error::other("relay threads ended")),
            },
            Some(sig) = next_signal(&mut signals) => {
                forward(pid, sig, &tap, &log);
                let step = if sig == Signal::SIGHUP { Signal::SIGTERM } else { Signal::SIGKILL };
                escalate = Some((tokio::time::Instant::now() + shutdown.kill_after, step));
            }
            _ = sleep_until(deadline) => {
                let Some((_, sig)) = escalate else { continue };
                log.line(&format!("child {pid} still running; sending {sig}"));
                forward(pid, sig, &tap, &log);
                escalate = (sig == Signal::SIGTERM)
                    .then(|| (tokio::time::Instant::now() + shutdown.kill_after, Signal::SIGKILL));
            }
        }
    };
    // Let the child's output drain so its last messages are relayed and recorded.
    let drain_until = tokio::time::Instant::now() + shutdown.drain;
    while pumps_done < 2 {
        match tokio::time::timeout_at(drain_until, rx.recv()).await {
            Ok(Some(Event::PumpDone)) => pumps_done += 1,
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    let status = status.unwrap_or_else(|e| {
        log.line(&format!("could not wait for the child: {e}"));
        std::os::unix::process::ExitStatusExt::from_raw(1 << 8)
    });
    let code = code_of(status);
    let exit = serde_json::json!({ "status": status.to_string(), "code": code });
    tap.observe(Direction::S2c, Some(lifecycle::EXIT), Bytes::from(exit.to_string()));
    Outcome { status, code }
}

fn signal(kind: tokio::signal::unix::SignalKind) -> Option<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(kind).ok()
}

async fn next_signal(s: &mut Signals) -> Option<Signal> {
    async fn recv(s: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
        match s {
            Some(s) => s.recv().await,
            None => std::future::pending().await,
        }
    }
    tokio::select! {
        Some(()) = recv(&mut s.int) => Some(Signal::SIGINT),
        Some(()) = recv(&mut s.term) => Some(Signal::SIGTERM),
        Some(()) = recv(&mut s.hup) => Some(Signal::SIGHUP),
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

fn forward(pid: Pid, sig: Signal, tap: &SessionTap, log: &Log) {
    if let Err(e) = kill(pid, sig) {
        log.line(&format!("could not send {sig} to child {pid}: {e}"));
    }
    tap.observe(
        Direction::C2s,
        Some(lifecycle::SIGNAL),
        Bytes::from(format!("{{\"signal\":\"{sig}\"}}")),
    );
}

/// Reads once into `buf` (allocated and zeroed once per relay) and returns how many bytes came (`None` at EOF
/// or error).
fn read_some(r: &mut impl Read, buf: &mut [u8]) -> Option<usize> {
    loop {
        match r.read(buf) {
            Ok(0) => return None,
            Ok(n) => return Some(n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return None,
        }
    }
}

/// Relays `from` → `to` byte for byte until `from` ends, handing each chunk read to the tap (which frames it
/// into NDJSON messages on its writer thread) just before writing it on, so the capture's order is causal. When
/// `to` stops accepting (the peer went away), keeps reading and recording so the writer of `from` never blocks on
/// a full pipe. Records an `eof` lifecycle frame with payload `eof` at the end. Shared by the stdio relay and the
/// unix-socket tap.
pub(crate) fn pump(
    mut from: impl Read,
    mut to: impl Write,
    tap: &SessionTap,
    dir: Direction,
    max_frame: usize,
    eof: &'static [u8],
) {
    let kept = tap.kept();
    let mut buf = vec![0u8; CHUNK];
    let mut loss = ChunkLoss::default();
    let mut open = true;
    while let Some(n) = read_some(&mut from, &mut buf) {
        let handed;
        let read: &[u8] = if kept {
            // A large read goes to the tap whole and the next read into a buffer the writer prepared (see
            // `tap/read_buffers.rs`). A small one is copied: a queued chunk pins at most a third more memory than
            // the bytes the queue limit counts.
            handed = if n >= CHUNK / 4 * 3 {
                let mut whole = std::mem::replace(&mut buf, tap.tap.read_buffer());
                whole.truncate(n);
                Bytes::from(whole)
            } else {
                Bytes::copy_from_slice(&buf[..n])
            };
            tap.observe_chunk(dir, handed.clone(), max_frame, &mut loss);
            &handed
        } else {
            &buf[..n]
        };
        if open && to.write_all(read).and_then(|()| to.flush()).is_err() {
            open = false;
        }
    }
    tap.end_stream(dir, max_frame, &loss);
    tap.observe(dir, Some(lifecycle::EOF), Bytes::from_static(eof));
}

/// Client → child. Ends at client EOF (or when the child stops reading), closing the child's stdin.
fn pump_client(child_in: ChildStdin, tap: &SessionTap, max_frame: usize) {
    let stdin = std::io::stdin();
    pump(
        stdin.lock(),
        child_in,
        tap,
        Direction::C2s,
        max_frame,
        b"{\"stream\":\"stdin\"}",
    );
}

/// Child → client. Ends when the child closes its stdout.
fn pump_server(child_out: ChildStdout, tap: &SessionTap, max_frame: usize) {
    pump(
        child_out,
        std::io::stdout(),
        tap,
        Direction::S2c,
        max_frame,
        b"{\"stream\":\"stdout\"}",
    );
}

/// Child stderr → our stderr, and each line as a lifecycle frame.
fn pump_stderr(mut child_err: ChildStderr, tap: &SessionTap) {
    let stderr = std::io::stderr();
    let mut buf = vec![0u8; CHUNK];
    let mut framer = NdjsonFramer::new(1 << 20);
    let mut emit = |p: Piece| {
        let (Piece::Line(b) | Piece::Oversize { part: b, .. }) = p;
        tap.observe(Direction::S2c, Some(lifecycle::STDERR), b);
    };
    while let Some(n) = read_some(&mut child_err, &mut buf) {
        let mut err = stderr.lock();
        let _ = err.write_all(&buf[..n]).and_then(|()| err.flush());
        drop(err);
        framer.push(&Bytes::copy_from_slice(&buf[..n]), &mut emit);
    }
    framer.finish(&mut emit);
}

/// Session ids for stdio captures: one per child life.
pub fn session_id() -> Arc<str> {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    Arc::from(format!("stdio-{ms}-{}", std::process::id()))
}

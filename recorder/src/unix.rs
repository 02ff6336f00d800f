//! The unix-socket tap: `mcptape record --listen unix:PATH --upstream unix:PATH` carries the stdio framing
//! (newline-delimited JSON-RPC) over stream sockets, as some gateways do between local processes.
//!
//! Each accepted connection is one session (`unix-…`): the tap opens a new connection to the upstream socket and
//! relays both directions byte for byte with the same pump as the stdio relay (a blocking thread per direction,
//! framing inline, copies to the one [`Tap`] core). A half-close is passed on: when the client shuts its write
//! side, so does the tap towards the upstream, and the other way round. The listening socket is created 0600.

use std::collections::HashMap;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use mcptape_datasets::{Direction, Transport};
use tokio::net::UnixListener;
use tokio::sync::watch;

use crate::log::Log;
use crate::stdio::pump;
use crate::tap::{SessionTap, Tap, lifecycle};

/// `unix:PATH` → PATH.
pub fn parse(s: &str) -> Option<PathBuf> {
    s.strip_prefix("unix:").filter(|p| !p.is_empty()).map(PathBuf::from)
}

/// Binds the listening socket (mode 0600). A stale socket file nobody listens on is replaced; a live one or any
/// other file is an error.
pub fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        anyhow::ensure!(
            meta.file_type().is_socket(),
            "--listen unix:{}: exists and is not a socket",
            path.display()
        );
        anyhow::ensure!(
            UnixStream::connect(path).is_err(),
            "--listen unix:{}: another process is listening there",
            path.display()
        );
        std::fs::remove_file(path).with_context(|| format!("--listen unix:{}: cannot replace", path.display()))?;
    }
    let std_listener = std::os::unix::net::UnixListener::bind(path)
        .with_context(|| format!("--listen unix:{}: cannot listen", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("--listen unix:{}: cannot make it 0600", path.display()))?;
    std_listener.set_nonblocking(true)?;
    UnixListener::from_std(std_listener).with_context(|| format!("--listen unix:{}", path.display()))
}

/// Open connections: both sockets of each, so a shutdown past the grace period can cut them.
#[derive(Default)]
struct Live {
    conns: Mutex<HashMap<u64, (UnixStream, UnixStream)>>,
}

/// Where the unix-socket tap listens and forwards, and its limits.
#[derive(Debug, Clone)]
pub struct UnixOptions {
    /// The listening socket's path (removed at exit).
    pub listen: PathBuf,
    /// The upstream socket's path.
    pub upstream: PathBuf,
    /// Messages longer than this are recorded in parts.
    pub max_frame: usize,
    /// At shutdown, how long open connections have to end before they are cut.
    pub grace: Duration,
}

/// Serves until `stop` completes, then waits up to `grace` for open connections to end, cuts the rest, and
/// removes the socket file. The caller finishes the capture.
pub async fn serve(
    listener: UnixListener,
    opts: UnixOptions,
    tap: Tap,
    log: Log,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let UnixOptions {
        listen,
        upstream,
        max_frame,
        grace,
    } = opts;
    eprintln!("mcptape: listening on unix:{}", listen.display());
    log.line(&format!("forwarding to unix:{}", upstream.display()));
    let mut stop = std::pin::pin!(stop);
    let live = Arc::new(Live::default());
    let (count_tx, mut count_rx) = watch::channel(0usize);
    let count_tx = Arc::new(count_tx);
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let prefix = format!("unix-{ms}-{}", std::process::id());
    let next = AtomicU64::new(1);
    loop {
        let stream = tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    log.line(&format!("accept failed: {e}"));
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        let client = match stream.into_std().and_then(|s| s.set_nonblocking(false).map(|()| s)) {
            Ok(s) => s,
            Err(e) => {
                log.line(&format!("accepted connection unusable: {e}"));
                continue;
            }
        };
        let n = next.fetch_add(1, Ordering::Relaxed);
        let id: Arc<str> = Arc::from(format!("{prefix}-{n}"));
        let (tap, live, count_tx, upstream, log) = (
            tap.clone(),
            live.clone(),
            count_tx.clone(),
            upstream.clone(),
            log.clone(),
        );
        count_tx.send_modify(|c| *c += 1);
        std::thread::Builder::new()
            .name("mcptape-unix".into())
            .spawn(move || {
                connection(n, id, client, &upstream, tap, max_frame, &live, &log);
                count_tx.send_modify(|c| *c -= 1);
            })
            .context("spawn a connection thread")?;
    }
    drop(listener);
    let _ = std::fs::remove_file(&listen);
    log.line("shutting down: waiting for open connections");
    if tokio::time::timeout(grace, count_rx.wait_for(|c| *c == 0))
        .await
        .is_err()
    {
        {
            let conns = live.conns.lock().unwrap_or_else(|e| e.into_inner());
            log.line(&format!(
                "{} connection(s) still open after {}: cut",
                conns.len(),
                humantime::format_duration(grace)
            ));
            for (a, b) in conns.values() {
                let _ = a.shutdown(std::net::Shutdown::Both);
                let _ = b.shutdown(std::net::Shutdown::Both);
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(3), count_rx.wait_for(|c| *c == 0)).await;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn connection(
    n: u64,
    id: Arc<str>,
    client: UnixStream,
    upstream: &Path,
    tap: Tap,
    max_frame: usize,
    live: &Live,
    log: &Log,
) {
    let up = match UnixStream::connect(upstream) {
        Ok(u) => u,
        Err(e) => {
            log.line(&format!("upstream unix:{}: {e}; connection closed", upstream.display()));
            let _ = client.shutdown(std::net::Shutdown::Both);
            return;
        }
    };
    let (Ok(client2), Ok(up2)) = (client.try_clone(), up.try_clone()) else {
        log.line("cannot share a connection between threads; connection closed");
        return;
    };
    if let (Ok(a), Ok(b)) = (client.try_clone(), up.try_clone()) {
        live.conns.lock().unwrap_or_else(|e| e.into_inner()).insert(n, (a, b));
    }
    let session = SessionTap::new(tap, id, Transport::Stdio);
    let start = serde_json::json!({ "upstream": format!("unix:{}", upstream.display()) });
    session.observe(Direction::C2s, Some(lifecycle::START), Bytes::from(start.to_string()));
    let c2s = {
        let session = session.clone();
        std::thread::Builder::new()
            .name("mcptape-unix-c2s".into())
            .spawn(move || {
                pump(
                    &client2,
                    &up2,
                    &session,
                    Direction::C2s,
                    max_frame,
                    b"{\"stream\":\"client\"}",
                );
                let _ = up2.shutdown(std::net::Shutdown::Write);
            })
    };
    pump(
        &up,
        &client,
        &session,
        Direction::S2c,
        max_frame,
        b"{\"stream\":\"upstream\"}",
    );
    let _ = client.shutdown(std::net::Shutdown::Write);
    if let Ok(t) = c2s {
        let _ = t.join();
    }
    live.conns.lock().unwrap_or_else(|e| e.into_inner()).remove(&n);
    session.end();
}

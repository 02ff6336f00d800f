//! The HTTP tap: `mcptape record --listen ADDR --upstream URL` is a reverse proxy for one upstream MCP endpoint
//! (Streamable HTTP in every version, the legacy HTTP+SSE transport, or WebSocket) that hands a copy of every
//! message to the one [`Tap`] core.
//!
//! Where things are:
//! - [`upstream`]: the `--upstream` URL, path mapping, TCP and TLS to it;
//! - [`client`]: the HTTP/1.1 exchanges with the upstream, each client connection on its own upstream connection;
//! - [`server`]: the client side of the common exchange (hyper for the rest);
//! - [`proxy`]: one exchange (read the request, pick the session, forward, 502/413/408 answers);
//! - [`body`]: response bodies streamed through with a copy to the tap; [`sse`]: one frame per event;
//! - [`legacy`]: the 2024-11-05 `endpoint` event rewrite; [`ws`]: WebSocket relay;
//! - [`session`]: which session an exchange belongs to; [`exchange`]: one exchange's frames;
//! - [`headers`]: hop-by-hop fields (RFC 9110 §7.6), `Via`, what is recorded.
//!
//! Why its own server for the common exchange and hyper's connection-level API for the rest, rather than a
//! framework: the tap must pass every status, header and body through unchanged and stream each body frame the
//! moment it arrives (an event stream is never buffered), must bound what a client can make it hold (header and
//! body timeouts, body size, connection count) without a whole-request timeout, which would cut long event
//! streams, and must add as little as it can to each request's latency.

use std::future::Future;
use std::net::{SocketAddr, ToSocketAddrs};
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use mcptape_datasets::redact::RedactionRules;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::log::Log;
use crate::tap::Tap;

pub mod body;
mod chunked;
pub mod client;
pub mod exchange;
pub mod headers;
pub mod legacy;
pub mod proxy;
mod server;
pub mod session;
pub mod sse;
pub mod upstream;
pub mod ws;

pub use upstream::Upstream;

/// Method names of the HTTP tap's own lifecycle frames (on top of [`crate::tap::lifecycle`]).
pub mod lifecycle {
    /// A request without a body (a GET opening a stream, a DELETE, a WebSocket upgrade): payload
    /// `{"method":…,"path":…}`, the request's headers in the frame's http column.
    pub const HTTP_REQUEST: &str = "mcptape/http-request";
    /// A response that carries no message (202, an empty 200, the start of an event stream, 101):
    /// payload `{"status":N}`, the response's headers in the http column.
    pub const HTTP_RESPONSE: &str = "mcptape/http-response";
    /// The legacy transport's `endpoint` event; payload: its data as the server sent it.
    pub const ENDPOINT: &str = "mcptape/endpoint";
    /// An SSE event without data (e.g. a priming event that only carries an id for `Last-Event-ID`).
    pub const SSE_EMPTY: &str = "mcptape/sse-empty";
}

/// What a client can make the tap hold, and for how long.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body accepted (413 beyond).
    pub max_body: usize,
    /// Largest message recorded in one frame (larger ones are recorded in parts; forwarding is not affected).
    pub max_frame: usize,
    /// Time a client has to send a request's headers; also how long an idle kept-alive connection stays open.
    pub header_timeout: Duration,
    /// Longest pause allowed while a client sends a request body (408 beyond).
    pub idle_timeout: Duration,
    /// Time to connect to the upstream (and finish TLS).
    pub connect_timeout: Duration,
    /// Client connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// A stateless client silent this long starts a new session next time.
    pub stateless_gap: Duration,
    /// On SIGINT/SIGTERM, how long open exchanges have to finish before they are cut.
    pub drain: Duration,
}

/// Everything `record --listen` needs besides the tap.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Where to forward.
    pub upstream: Upstream,
    /// Limits and timeouts.
    pub limits: Limits,
    /// Block the traffic rather than drop frames when the writer falls behind.
    pub lossless: bool,
    /// Redaction rules (the tap's writer applies them to frames; the adapter to recorded paths' queries).
    pub rules: RedactionRules,
}

/// Parses `--listen`: `PORT`, `:PORT`, `HOST:PORT` or `[V6]:PORT`; the host defaults to 127.0.0.1.
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    if let Ok(port) = s.trim_start_matches(':').parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    let bad = || format!("--listen {s}: expected PORT, HOST:PORT or [IPV6]:PORT");
    if !s.contains(':') {
        return Err(bad());
    }
    s.to_socket_addrs()
        .map_err(|e| format!("--listen {s}: {e}"))?
        .next()
        .ok_or_else(bad)
}

/// State shared by every connection of the tap.
pub(crate) struct Hub {
    pub upstream: Arc<Upstream>,
    pub sessions: Arc<session::Sessions>,
    pub limits: Limits,
    pub rules: RedactionRules,
    pub log: Log,
    /// Turns true when the tap shuts down.
    pub shutdown: watch::Receiver<bool>,
    /// Tasks that outlive their HTTP exchange (WebSocket relays).
    tasks: Mutex<JoinSet<()>>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").field("upstream", &self.upstream).finish()
    }
}

impl Hub {
    /// Runs a task that must be drained at shutdown.
    pub fn spawn(&self, f: impl Future<Output = ()> + Send + 'static) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        while tasks.try_join_next().is_some() {}
        tasks.spawn(f);
    }
}

/// Serves a client connection with hyper (WebSocket upstreams, and connections [`server`] hands over).
async fn hyper_connection<I>(
    io: I,
    hub: Arc<Hub>,
    up: Arc<client::UpstreamConn>,
    peer: SocketAddr,
    mut stop: watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let header_timeout = hub.limits.header_timeout;
    let svc = service_fn(move |req| proxy::handle(hub.clone(), up.clone(), peer, req));
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(header_timeout);
    let mut conn = pin!(builder.serve_connection(TokioIo::new(io), svc).with_upgrades());
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Completes once the tap is shutting down.
pub(crate) async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// SIGINT or SIGTERM; the handlers are installed at the call, not at the first poll. (SIGHUP rotates the
/// capture: see [`crate::service`].)
pub fn shutdown_signal() -> impl Future<Output = ()> + Send {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt()).ok();
    let mut term = signal(SignalKind::terminate()).ok();
    async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
        match s {
            Some(s) => {
                s.recv().await;
            }
            None => std::future::pending().await,
        }
    }
    async move {
        tokio::select! {
            _ = recv(&mut int) => {}
            _ = recv(&mut term) => {}
        }
    }
}

/// Raises the open-files limit to its hard maximum: every connection costs two descriptors.
fn raise_fd_limit(log: &Log) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_err() {
            log.line(&format!("could not raise the open-files limit from {soft}"));
        }
    }
}

/// Connections the kernel queues for the tap before it accepts them (tokio's default is 128: too few for a
/// burst of clients).
const BACKLOG: u32 = 4096;

/// Binds `--listen` (before anything is written, so a taken port leaves no empty capture behind).
pub async fn bind(listen: SocketAddr, log: &Log) -> anyhow::Result<TcpListener> {
    raise_fd_limit(log);
    let bound = (|| {
        let socket = if listen.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.bind(listen)?;
        socket.listen(BACKLOG)
    })();
    bound.with_context(|| format!("--listen {listen}: cannot listen"))
}

/// Serves until `stop` completes (see [`shutdown_signal`]), then drains (up to `limits.drain`) and returns. The
/// caller finishes the capture.
pub async fn serve(
    listener: TcpListener,
    opts: HttpOptions,
    tap: Tap,
    log: Log,
    stop: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let mut stop_signal = pin!(stop);
    let local = listener.local_addr().context("--listen: no local address")?;
    // Always on stderr, even with --log: the line tests and users look for.
    eprintln!("mcptape: listening on http://{local}");
    log.line(&format!("forwarding to {}", opts.upstream.display()));

    let limits = opts.limits.clone();
    let (stop_tx, stop_rx) = watch::channel(false);
    let sessions = session::Sessions::new(tap, opts.lossless, limits.stateless_gap);
    let hub = Arc::new(Hub {
        upstream: Arc::new(opts.upstream),
        sessions: sessions.clone(),
        limits: limits.clone(),
        rules: opts.rules,
        log: log.clone(),
        shutdown: stop_rx.clone(),
        tasks: Mutex::new(JoinSet::new()),
    });
    let sweeper = {
        let (sessions, mut stop) = (sessions.clone(), stop_rx.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = tick.tick() => sessions.sweep(),
                    _ = stopped(&mut stop) => break,
                }
            }
        })
    };

    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut conns: JoinSet<()> = JoinSet::new();
    let mut accept_errors = 0u64;
    loop {
        while conns.try_join_next().is_some() {}
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.context("connection slots")?,
            _ = &mut stop_signal => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of descriptors and the like: say so (not for every attempt) and keep serving.
                    accept_errors += 1;
                    if accept_errors.is_power_of_two() {
                        log.line(&format!("accept failed ({accept_errors} time(s)): {e}"));
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            _ = &mut stop_signal => break,
        };
        let _ = stream.set_nodelay(true);
        let (hub, stop) = (hub.clone(), stop_rx.clone());
        conns.spawn(async move {
            let up = Arc::new(client::UpstreamConn::default());
            if hub.upstream.is_ws() {
                hyper_connection(stream, hub, up, peer, stop).await;
            } else {
                let (h, u, s) = (hub.clone(), up.clone(), stop.clone());
                let to_hyper = move |io| hyper_connection(io, h, u, peer, s);
                server::connection(stream, hub, up, peer, stop, to_hyper).await;
            }
            drop(permit);
        });
    }
    drop(listener);
    log.line("shutting down: draining open exchanges");
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(limits.drain, async { while conns.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        log.line(&format!(
            "{} connection(s) still open after {}: cut",
            conns.len(),
            humantime::format_duration(limits.drain)
        ));
        conns.abort_all();
        while conns.join_next().await.is_some() {}
    }
    let mut tasks = std::mem::take(&mut *hub.tasks.lock().unwrap_or_else(|e| e.into_inner()));
    if tokio::time::timeout(Duration::from_secs(3), async {
        while tasks.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
    let _ = sweeper.await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_default_to_loopback() {
        assert_eq!(parse_listen("8080").unwrap(), SocketAddr::from(([127, 0, 0, 1], 8080)));
        assert_eq!(parse_listen(":0").unwrap(), SocketAddr::from(([127, 0, 0, 1], 0)));
        assert_eq!(parse_listen("0.0.0.0:9").unwrap(), SocketAddr::from(([0, 0, 0, 0], 9)));
        assert_eq!(parse_listen("[::1]:9").unwrap().port(), 9);
        assert!(parse_listen("localhost:7").unwrap().ip().is_loopback());
        assert!(parse_listen("127.0.0.1").is_err());
        assert!(parse_listen("nonsense").is_err());
    }
}

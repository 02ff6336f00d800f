//! Client-side links to a live target: a message pipe in each direction, whatever carries it.
//!
//! A [`Link`] sends JSON-RPC messages and yields what the server sends, one message at a time. stdio spawns the
//! target; Streamable HTTP posts each message and reads JSON or SSE answers, keeps the live `Mcp-Session-Id`,
//! opens the GET stream for server-initiated messages, and sends only the headers given on the command line:
//! recorded credentials never leave the capture.

use std::process::Stdio;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use mcptape_datasets::wire::envelope::{Envelope, classify};
use mcptape_datasets::wire::sse::SseDecoder;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

mod inline;
#[cfg(test)]
mod test_server;

pub use inline::HttpConnection;
use inline::InlineHttp;

/// What the server sent, or why the link ended.
#[derive(Debug)]
pub enum Incoming {
    /// One JSON-RPC message (or batch).
    Message(Bytes),
    /// The link ended (process exit, connection refused, HTTP error).
    Closed(String),
}

/// Nothing came in time ([`Link::recv_for`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimedOut;

/// Where to replay to.
#[derive(Debug, Clone)]
pub enum Target {
    /// Spawn this command and speak NDJSON over its stdio.
    Stdio(Vec<String>),
    /// A Streamable HTTP endpoint.
    Http {
        /// The endpoint URL.
        url: String,
        /// Extra headers (`--header "K: V"`), e.g. live credentials.
        headers: Vec<(String, String)>,
    },
    /// The deprecated 2024-11-05 HTTP+SSE transport: GET the stream, POST to the endpoint it announces.
    LegacySse {
        /// The GET URL (…/sse).
        url: String,
        /// Extra headers.
        headers: Vec<(String, String)>,
    },
    /// A WebSocket endpoint (`ws://`), subprotocol `mcp`, one message per text frame.
    Ws {
        /// The URL.
        url: String,
        /// Extra headers on the upgrade request.
        headers: Vec<(String, String)>,
    },
}

impl Target {
    /// The target a URL names: `ws://` → WebSocket, a path ending in `/sse` → legacy HTTP+SSE, else Streamable HTTP.
    pub fn from_url(url: &str, headers: Vec<(String, String)>) -> Result<Target, String> {
        let parsed: http::Uri = url.parse().map_err(|e| format!("--target {url}: {e}"))?;
        match parsed.scheme_str() {
            Some("ws") => Ok(Target::Ws {
                url: url.into(),
                headers,
            }),
            Some("wss") => Err(format!(
                "--target {url}: wss:// is not built yet (use ws:// on loopback)"
            )),
            Some("http" | "https") if parsed.path().trim_end_matches('/').ends_with("/sse") => Ok(Target::LegacySse {
                url: url.into(),
                headers,
            }),
            Some("http" | "https") => Ok(Target::Http {
                url: url.into(),
                headers,
            }),
            _ => Err(format!("--target {url}: expected an http://, https:// or ws:// URL")),
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Stdio(cmd) => write!(f, "{}", cmd.join(" ")),
            Target::Http { url, .. } | Target::LegacySse { url, .. } | Target::Ws { url, .. } => write!(f, "{url}"),
        }
    }
}

/// A live connection to the target for one session.
#[derive(Debug)]
pub struct Link {
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    /// Tasks move messages; the link holds the two ends of their channels.
    Piped {
        tx: mpsc::UnboundedSender<Bytes>,
        rx: mpsc::UnboundedReceiver<Incoming>,
        closer: Closer,
    },
    /// Streamable HTTP driven from the caller's task, one exchange at a time.
    Inline(Box<InlineHttp>),
}

#[derive(Debug)]
enum Closer {
    Stdio(tokio::process::Child),
    Http(Arc<HttpState>),
    /// Tasks that end when the link's channels close.
    Tasks(Vec<tokio::task::JoinHandle<()>>),
}

impl Link {
    /// Connects (spawns, for stdio). `protocol_version` is sent as `MCP-Protocol-Version` over HTTP.
    pub async fn open(target: &Target, protocol_version: Option<&str>) -> Result<Link, String> {
        match target {
            Target::Stdio(cmd) => open_stdio(cmd),
            Target::Http { url, headers } => open_http(url, headers, protocol_version),
            Target::LegacySse { url, headers } => open_legacy_sse(url, headers).await,
            Target::Ws { url, headers } => open_ws(url, headers).await,
        }
    }

    /// Like [`Link::open`], for a session that never has two exchanges in flight
    /// ([`crate::script::Script::is_sequential`]): over Streamable HTTP each POST then runs inside
    /// [`Link::recv`], in the caller's task, on `conn` (the caller's own HTTP/1.1 connection, kept from its last
    /// session by [`Link::close_keeping`]; a new one when `None`) instead of hopping through a relay task, channels
    /// and the shared pool. No GET stream is opened (such a session expects no server requests). Other transports
    /// open as usual.
    pub async fn open_sequential(
        target: &Target,
        protocol_version: Option<&str>,
        conn: Option<HttpConnection>,
    ) -> Result<Link, String> {
        match target {
            Target::Http { url, headers } => Ok(Link {
                inner: Inner::Inline(Box::new(InlineHttp::new(url, headers, protocol_version, conn)?)),
            }),
            other => Link::open(other, protocol_version).await,
        }
    }

    /// Sends one message. Errors surface as [`Incoming::Closed`].
    pub fn send(&self, msg: Bytes) {
        match &self.inner {
            Inner::Piped { tx, .. } => {
                let _ = tx.send(msg);
            }
            Inner::Inline(h) => h.outbox.lock().unwrap_or_else(|e| e.into_inner()).push_back(msg),
        }
    }

    /// The next thing the server sent; `None` once everything is consumed after a close. Cancel-safe: a message
    /// is never lost when the future is dropped (an inline exchange in flight resumes on the next call).
    pub async fn recv(&mut self) -> Option<Incoming> {
        match &mut self.inner {
            Inner::Piped { rx, .. } => rx.recv().await,
            Inner::Inline(h) => h.recv().await,
        }
    }

    /// Like [`Link::recv`], giving up after `left` ([`TimedOut`]). A sequential HTTP link reuses one timer, kept
    /// with its connection across sessions: moving a timer's deadline later costs next to nothing, a new timer a
    /// registration with the runtime's timer wheel and a removal.
    pub async fn recv_for(&mut self, left: std::time::Duration) -> Result<Option<Incoming>, TimedOut> {
        match &mut self.inner {
            Inner::Piped { rx, .. } => tokio::time::timeout(left, rx.recv()).await.map_err(|_| TimedOut),
            Inner::Inline(h) => h.recv_for(left).await,
        }
    }

    /// The live transport session id (Streamable HTTP's `Mcp-Session-Id`), once the server gave one.
    pub fn session_id(&self) -> Option<String> {
        match &self.inner {
            Inner::Piped {
                closer: Closer::Http(state),
                ..
            } => state.session.lock().unwrap_or_else(|e| e.into_inner()).clone(),
            Inner::Inline(h) => h.session().map(str::to_string),
            _ => None,
        }
    }

    /// Ends the session: closes stdin and waits for the child (killing it after `grace`), or DELETEs the session.
    pub async fn close(self, grace: std::time::Duration) {
        self.close_keeping(grace).await;
    }

    /// Like [`Link::close`], and hands back the HTTP/1.1 connection of a link from [`Link::open_sequential`] for
    /// the caller's next session (`None` for other links, or when the connection cannot carry another request).
    pub async fn close_keeping(self, grace: std::time::Duration) -> Option<HttpConnection> {
        let (tx, closer) = match self.inner {
            Inner::Piped { tx, closer, .. } => (tx, closer),
            Inner::Inline(h) => return Some(h.finish().await),
        };
        drop(tx);
        match closer {
            Closer::Stdio(mut child) => {
                // The writer task drops the child's stdin once the channel closes.
                if tokio::time::timeout(grace, child.wait()).await.is_err() {
                    let _ = child.start_kill();
                    let _ = child.wait().await;
                }
            }
            Closer::Http(state) => state.delete().await,
            Closer::Tasks(tasks) => {
                for t in tasks {
                    t.abort();
                }
            }
        }
        None
    }
}

fn open_stdio(cmd: &[String]) -> Result<Link, String> {
    let (prog, args) = cmd.split_first().ok_or("no target command")?;
    let mut child = tokio::process::Command::new(prog)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start `{}`: {e}", cmd.join(" ")))?;
    let mut stdin = child.stdin.take().ok_or("no stdin")?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let (tx, mut out_rx) = mpsc::unbounded_channel::<Bytes>();
    let (in_tx, rx) = mpsc::unbounded_channel();
    let err_tx = in_tx.clone();
    tokio::spawn(async move {
        while let Some(msg) = out_rx.recv().await {
            let mut line = Vec::with_capacity(msg.len() + 1);
            line.extend_from_slice(&msg);
            line.push(b'\n');
            if let Err(e) = stdin.write_all(&line).await {
                let _ = err_tx.send(Incoming::Closed(format!("writing to the target: {e}")));
                return;
            }
        }
    });
    tokio::spawn(async move {
        let mut lines = BufReader::new(stdout);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match lines.read_until(b'\n', &mut buf).await {
                Ok(0) => {
                    let _ = in_tx.send(Incoming::Closed("the target closed its stdout".into()));
                    return;
                }
                Ok(_) => {
                    let line = buf.strip_suffix(b"\n").unwrap_or(&buf);
                    let line = line.strip_suffix(b"\r").unwrap_or(line);
                    if !line.iter().all(u8::is_ascii_whitespace) {
                        let _ = in_tx.send(Incoming::Message(Bytes::copy_from_slice(line)));
                    }
                }
                Err(e) => {
                    let _ = in_tx.send(Incoming::Closed(format!("reading from the target: {e}")));
                    return;
                }
            }
        }
    });
    Ok(Link {
        inner: Inner::Piped {
            tx,
            rx,
            closer: Closer::Stdio(child),
        },
    })
}

type HttpClient = Client<Connector, Full<Bytes>>;

/// Shared by the tasks of one HTTP session.
#[derive(Debug)]
struct HttpState {
    client: HttpClient,
    url: http::Uri,
    headers: Vec<(String, String)>,
    session: Mutex<Option<String>>,
    version: Mutex<Option<String>>,
    get_opened: Mutex<bool>,
    incoming: mpsc::UnboundedSender<Incoming>,
}

/// One client, and so one connection pool, per thread. Not one per process: a pooled connection is a task on the
/// runtime that opened it, and a load test runs one single-threaded runtime per core; a connection opened on a
/// runtime that has finished (or is busy) must not be handed to a user on another.
fn http_client() -> HttpClient {
    thread_local! {
        static CLIENT: HttpClient = new_http_client();
    }
    CLIENT.with(HttpClient::clone)
}

fn new_http_client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build(connector())
}

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// The TCP (Nagle off) and TLS connector every HTTP link uses, built once.
fn connector() -> Connector {
    static CONNECTOR: std::sync::OnceLock<Connector> = std::sync::OnceLock::new();
    CONNECTOR.get_or_init(new_connector).clone()
}

fn new_connector() -> Connector {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map(|b| b.with_root_certificates(roots).with_no_client_auth());
    match tls {
        Ok(cfg) => hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(cfg)
            .https_or_http()
            .enable_http1()
            .wrap_connector(nodelay_connector()),
        Err(_) => hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(
                rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                    .with_safe_default_protocol_versions()
                    .expect("ring supports the default protocol versions")
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth(),
            )
            .https_or_http()
            .enable_http1()
            .wrap_connector(nodelay_connector()),
    }
}

/// A plain TCP connector with Nagle off: a POST's headers and body, and small answers, must not wait for an ACK.
fn nodelay_connector() -> HttpConnector {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.enforce_http(false);
    http
}

fn open_http(url: &str, headers: &[(String, String)], version: Option<&str>) -> Result<Link, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("--target {url}: {e}"))?;
    let (tx, mut out_rx) = mpsc::unbounded_channel::<Bytes>();
    let (in_tx, rx) = mpsc::unbounded_channel();
    let state = Arc::new(HttpState {
        client: http_client(),
        url: uri,
        headers: headers.to_vec(),
        session: Mutex::new(None),
        version: Mutex::new(version.map(str::to_string)),
        get_opened: Mutex::new(false),
        incoming: in_tx,
    });
    let st = state.clone();
    tokio::spawn(async move {
        while let Some(msg) = out_rx.recv().await {
            let is_initialize = memchr::memmem::find(&msg, b"\"initialize\"").is_some();
            let is_initialized = memchr::memmem::find(&msg, b"\"notifications/initialized\"").is_some();
            if is_initialize {
                // The response carries the session id every later request needs: wait for its headers.
                st.clone().post(msg).await;
            } else if carries_no_request(&msg) {
                // A client waits for a notification's (or an answer's) 202 before it sends on, so the server has
                // taken it in before what follows: server-everything adds tools on `notifications/initialized`,
                // and a `tools/list` on another connection could overtake it. Bounded: a server that never
                // answers holds the rest back for at most this long.
                let post = tokio::spawn(st.clone().post(msg));
                let _ = tokio::time::timeout(ACCEPTED_WAIT, post).await;
            } else {
                tokio::spawn(st.clone().post(msg));
            }
            if is_initialized {
                tokio::spawn(st.clone().open_get_stream());
            }
        }
    });
    Ok(Link {
        inner: Inner::Piped {
            tx,
            rx,
            closer: Closer::Http(state),
        },
    })
}

/// The longest a POST of notifications or answers holds back the messages after it ([`open_http`]).
const ACCEPTED_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Whether `msg` holds only notifications and answers (a server acknowledges it with 202 and nothing else).
fn carries_no_request(msg: &[u8]) -> bool {
    use mcptape_datasets::Kind;
    let not_a_request = |e: &Envelope| matches!(e.kind, Kind::Notification | Kind::Response | Kind::Error);
    let env = classify(msg);
    match env.kind {
        Kind::Batch => !env.items.is_empty() && env.items.iter().all(not_a_request),
        _ => not_a_request(&env),
    }
}

impl HttpState {
    fn request(&self, method: http::Method, body: Bytes) -> http::Request<Full<Bytes>> {
        let session = self.session.lock().unwrap_or_else(|e| e.into_inner());
        let version = self.version.lock().unwrap_or_else(|e| e.into_inner());
        mcp_request(
            &self.url,
            &self.headers,
            session.as_deref(),
            version.as_deref(),
            method,
            body,
        )
    }

    async fn post(self: Arc<Self>, msg: Bytes) {
        let req = self.request(http::Method::POST, msg);
        match self.client.request(req).await {
            Err(e) => {
                let _ = self.incoming.send(Incoming::Closed(format!("POST {}: {e}", self.url)));
            }
            Ok(resp) => self.read_response(resp, "POST").await,
        }
    }

    async fn open_get_stream(self: Arc<Self>) {
        {
            let mut opened = self.get_opened.lock().unwrap_or_else(|e| e.into_inner());
            if *opened {
                return;
            }
            *opened = true;
        }
        let mut req = self.request(http::Method::GET, Bytes::new());
        req.headers_mut()
            .insert("accept", http::HeaderValue::from_static("text/event-stream"));
        req.headers_mut().remove("content-type");
        if let Ok(resp) = self.client.request(req).await {
            // 405: the server offers no GET stream, which is allowed.
            if resp.status().is_success() {
                self.read_response(resp, "GET").await;
            }
        }
    }

    async fn read_response(&self, resp: http::Response<hyper::body::Incoming>, what: &str) {
        if let Some(s) = resp.headers().get("mcp-session-id").and_then(|v| v.to_str().ok()) {
            *self.session.lock().unwrap_or_else(|e| e.into_inner()) = Some(s.to_string());
        }
        read_answer(resp, what, &self.url, &mut |inc| {
            let _ = self.incoming.send(inc);
        })
        .await;
    }

    async fn delete(&self) {
        if self.session.lock().unwrap_or_else(|e| e.into_inner()).is_none() {
            return;
        }
        delete_session(&self.client, self.request(http::Method::DELETE, Bytes::new())).await;
    }
}

/// A Streamable HTTP request: the MCP accept and content types, the live session id and protocol version once
/// known, then the extra headers from the command line (never recorded ones).
pub(crate) fn mcp_request(
    url: &http::Uri,
    headers: &[(String, String)],
    session: Option<&str>,
    version: Option<&str>,
    method: http::Method,
    body: Bytes,
) -> http::Request<Full<Bytes>> {
    use http::header::{ACCEPT, CONTENT_TYPE, HeaderName, HeaderValue};
    // Built in place (not through `http::request::Builder`, which moves its parts at every step), with the known
    // names and values as constants: nothing to parse or validate per request but the live values.
    let mut req = http::Request::new(Full::new(body));
    *req.method_mut() = method;
    *req.uri_mut() = url.clone();
    let h = req.headers_mut();
    h.reserve(4 + headers.len());
    h.insert(ACCEPT, HeaderValue::from_static("application/json, text/event-stream"));
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    // A value that cannot be a header value (a control character in a recorded protocol version, say) is left out
    // rather than failing the request.
    if let Some(s) = session.and_then(|s| HeaderValue::from_str(s).ok()) {
        h.insert(HeaderName::from_static("mcp-session-id"), s);
    }
    if let Some(v) = version.and_then(|v| HeaderValue::from_str(v).ok()) {
        h.insert(HeaderName::from_static("mcp-protocol-version"), v);
    }
    for (k, v) in headers {
        if let (Ok(k), Ok(v)) = (HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(v)) {
            h.append(k, v);
        }
    }
    req
}

/// Ends a session with its DELETE (no body, so no content type), waiting 5 s at most; the answer does not matter.
async fn delete_session(client: &HttpClient, mut req: http::Request<Full<Bytes>>) {
    req.headers_mut().remove("content-type");
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), client.request(req)).await;
}

/// Reads what a POST or GET answered: JSON, an SSE stream of messages, nothing (202), or an error that ends the
/// session; each message or end goes to `sink`.
pub(crate) async fn read_answer(
    resp: http::Response<hyper::body::Incoming>,
    what: &str,
    url: &http::Uri,
    sink: &mut (dyn FnMut(Incoming) + Send),
) {
    let status = resp.status();
    let sse = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/event-stream"));
    let mut body = resp.into_body();
    if sse {
        let mut dec = SseDecoder::new(64 << 20);
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { break };
            if let Some(chunk) = frame.data_ref() {
                dec.push(chunk, |ev| {
                    if !ev.data.trim().is_empty() {
                        sink(Incoming::Message(Bytes::from(ev.data)));
                    }
                });
            }
        }
        return;
    }
    let bytes = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            sink(Incoming::Closed(format!("{what} {url}: reading the body: {e}")));
            return;
        }
    };
    if status == http::StatusCode::ACCEPTED || bytes.iter().all(u8::is_ascii_whitespace) {
        if !status.is_success() {
            sink(Incoming::Closed(format!("{what} {url}: HTTP {status}")));
        }
        return;
    }
    // A JSON-RPC body (even with an error status) is an answer; anything else ends the session.
    if bytes.first().is_some_and(|b| *b == b'{' || *b == b'[') {
        sink(Incoming::Message(bytes));
    } else if !status.is_success() {
        let text = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
        sink(Incoming::Closed(format!("{what} {url}: HTTP {status}: {text}")));
    }
}

/// The 2024-11-05 HTTP+SSE transport: the `endpoint` event names where to POST; answers come on the stream.
async fn open_legacy_sse(url: &str, headers: &[(String, String)]) -> Result<Link, String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("--target {url}: {e}"))?;
    let client = http_client();
    let mut req = http::Request::builder()
        .method(http::Method::GET)
        .uri(uri.clone())
        .header("accept", "text/event-stream");
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let resp = client
        .request(req.body(Full::new(Bytes::new())).expect("a valid request"))
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("GET {url}: HTTP {}", resp.status()));
    }
    let (tx, mut out_rx) = mpsc::unbounded_channel::<Bytes>();
    let (in_tx, rx) = mpsc::unbounded_channel();
    let (endpoint_tx, endpoint_rx) = tokio::sync::oneshot::channel::<String>();
    let reader_tx = in_tx.clone();
    let reader = tokio::spawn(async move {
        let mut body = resp.into_body();
        let mut dec = SseDecoder::new(64 << 20);
        let mut endpoint_tx = Some(endpoint_tx);
        while let Some(Ok(frame)) = body.frame().await {
            let Some(chunk) = frame.data_ref() else { continue };
            dec.push(chunk, |ev| {
                if ev.event.as_deref() == Some("endpoint") {
                    if let Some(t) = endpoint_tx.take() {
                        let _ = t.send(ev.data);
                    }
                } else if !ev.data.trim().is_empty() {
                    let _ = reader_tx.send(Incoming::Message(Bytes::from(ev.data)));
                }
            });
        }
        let _ = reader_tx.send(Incoming::Closed("the SSE stream ended".into()));
    });
    let endpoint = tokio::time::timeout(std::time::Duration::from_secs(30), endpoint_rx)
        .await
        .map_err(|_| format!("GET {url}: no `endpoint` event within 30 s"))?
        .map_err(|_| format!("GET {url}: the stream ended before its `endpoint` event"))?;
    // The endpoint is relative to the stream's URL.
    let post: http::Uri = if endpoint.starts_with("http://") || endpoint.starts_with("https://") {
        endpoint.parse().map_err(|e| format!("endpoint {endpoint}: {e}"))?
    } else {
        let base = format!(
            "{}://{}",
            uri.scheme_str().unwrap_or("http"),
            uri.authority().map_or("", |a| a.as_str())
        );
        format!("{base}{endpoint}")
            .parse()
            .map_err(|e| format!("endpoint {endpoint}: {e}"))?
    };
    let headers = headers.to_vec();
    let writer = tokio::spawn(async move {
        while let Some(msg) = out_rx.recv().await {
            let mut req = http::Request::builder()
                .method(http::Method::POST)
                .uri(post.clone())
                .header("content-type", "application/json");
            for (k, v) in &headers {
                req = req.header(k.as_str(), v.as_str());
            }
            match client.request(req.body(Full::new(msg)).expect("a valid request")).await {
                Ok(r) if r.status().is_success() => {}
                Ok(r) => {
                    let _ = in_tx.send(Incoming::Closed(format!("POST {post}: HTTP {}", r.status())));
                }
                Err(e) => {
                    let _ = in_tx.send(Incoming::Closed(format!("POST {post}: {e}")));
                }
            }
        }
    });
    Ok(Link {
        inner: Inner::Piped {
            tx,
            rx,
            closer: Closer::Tasks(vec![reader, writer]),
        },
    })
}

/// A WebSocket link: the `mcp` subprotocol, one JSON-RPC message per text frame.
async fn open_ws(url: &str, headers: &[(String, String)]) -> Result<Link, String> {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let uri: http::Uri = url.parse().map_err(|e| format!("--target {url}: {e}"))?;
    let host = uri.host().ok_or_else(|| format!("--target {url}: no host"))?;
    let port = uri.port_u16().unwrap_or(80);
    let stream = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| format!("connect {host}:{port}: {e}"))?;
    let mut req = url.into_client_request().map_err(|e| format!("--target {url}: {e}"))?;
    req.headers_mut()
        .insert("sec-websocket-protocol", http::HeaderValue::from_static("mcp"));
    for (k, v) in headers {
        if let (Ok(k), Ok(v)) = (
            http::HeaderName::from_bytes(k.as_bytes()),
            http::HeaderValue::from_str(v),
        ) {
            req.headers_mut().insert(k, v);
        }
    }
    let (ws, _) = tokio_tungstenite::client_async(req, stream)
        .await
        .map_err(|e| format!("WebSocket {url}: {e}"))?;
    let (mut sink, mut source) = ws.split();
    let (tx, mut out_rx) = mpsc::unbounded_channel::<Bytes>();
    let (in_tx, rx) = mpsc::unbounded_channel();
    let err_tx = in_tx.clone();
    let writer = tokio::spawn(async move {
        while let Some(msg) = out_rx.recv().await {
            let text = String::from_utf8_lossy(&msg).into_owned();
            if let Err(e) = sink.send(Message::text(text)).await {
                let _ = err_tx.send(Incoming::Closed(format!("WebSocket send: {e}")));
                return;
            }
        }
        let _ = sink.close().await;
    });
    let reader = tokio::spawn(async move {
        while let Some(m) = source.next().await {
            match m {
                Ok(Message::Text(t)) => {
                    let _ = in_tx.send(Incoming::Message(Bytes::from(t.as_str().to_string())));
                }
                Ok(Message::Binary(b)) => {
                    let _ = in_tx.send(Incoming::Message(b));
                }
                Ok(Message::Close(_)) | Err(_) => break,
                Ok(_) => {}
            }
        }
        let _ = in_tx.send(Incoming::Closed("the WebSocket closed".into()));
    });
    Ok(Link {
        inner: Inner::Piped {
            tx,
            rx,
            closer: Closer::Tasks(vec![writer, reader]),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn notifications_answers_and_batches_of_them_carry_no_request() {
        assert!(carries_no_request(
            br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#
        ));
        assert!(carries_no_request(br#"{"jsonrpc":"2.0","id":3,"result":{}}"#));
        assert!(carries_no_request(
            br#"{"jsonrpc":"2.0","id":3,"error":{"code":-1,"message":"no"}}"#
        ));
        assert!(carries_no_request(
            br#"[{"jsonrpc":"2.0","method":"a"},{"jsonrpc":"2.0","id":1,"result":{}}]"#
        ));
        assert!(!carries_no_request(
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#
        ));
        assert!(!carries_no_request(
            br#"[{"jsonrpc":"2.0","method":"a"},{"jsonrpc":"2.0","id":1,"method":"b"}]"#
        ));
        assert!(!carries_no_request(b"[]"));
        assert!(!carries_no_request(b"not json"));
    }

    /// A Streamable HTTP server that takes `delay` to accept `notifications/initialized` and logs, in order, each
    /// request's arrival and that acceptance.
    fn slow_to_accept(delay: Duration) -> (String, Arc<Mutex<Vec<String>>>) {
        let log = Arc::new(Mutex::new(Vec::new()));
        let l = log.clone();
        let (url, _) = test_server::serve(move |req| {
            let env = classify(&req.body);
            let bytes = match (req.line.split(' ').next(), env.method.as_deref()) {
                (Some("POST"), Some("notifications/initialized")) => {
                    std::thread::sleep(delay);
                    l.lock().unwrap().push("accepted notifications/initialized".to_string());
                    "HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n".to_string()
                }
                (Some("POST"), Some(m)) => {
                    l.lock().unwrap().push(m.to_string());
                    let a = format!(r#"{{"jsonrpc":"2.0","id":{},"result":{{}}}}"#, env.rpc_id.unwrap());
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nmcp-session-id: s1\r\n\
                         content-length: {}\r\n\r\n{a}",
                        a.len()
                    )
                }
                _ => "HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n".to_string(),
            };
            test_server::Reply { bytes, close: false }
        });
        (url, log)
    }

    #[tokio::test]
    async fn a_request_after_a_notification_is_sent_once_the_server_has_accepted_the_notification() {
        let (url, log) = slow_to_accept(Duration::from_millis(300));
        let target = Target::Http { url, headers: vec![] };
        let mut link = Link::open(&target, None).await.unwrap();
        link.send(Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#,
        ));
        assert!(matches!(link.recv().await, Some(Incoming::Message(_))));
        link.send(Bytes::from_static(
            br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        ));
        link.send(Bytes::from_static(br#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#));
        match link.recv().await {
            Some(Incoming::Message(m)) => assert_eq!(&m[..], br#"{"jsonrpc":"2.0","id":2,"result":{}}"#),
            other => panic!("expected the tools/list answer, got {other:?}"),
        }
        assert_eq!(
            *log.lock().unwrap(),
            ["initialize", "accepted notifications/initialized", "tools/list"]
        );
        link.close(Duration::from_secs(1)).await;
    }
}

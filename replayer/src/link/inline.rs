//! Streamable HTTP for a sequential session, driven in the caller's task on the caller's own HTTP/1.1 connection.
//!
//! Why not the shared pool: a session that never has two exchanges in flight needs one connection at a time, and
//! the pool costs a keyed lookup per request plus two task hops (its connection task reads the answer, the
//! caller's task is woken for it). Here the caller's task polls the connection itself while an exchange is in
//! flight, and a load test's virtual user keeps the connection from one session to the next
//! ([`super::Link::close_keeping`]); it reconnects when the server closes it.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::{Connector, Incoming, connector, mcp_request, read_answer};

type Io = hyper_rustls::MaybeHttpsStream<TokioIo<TcpStream>>;
type Body = Full<Bytes>;

/// Where a sequential link posts: parsed once per connection, not per session or request.
#[derive(Debug)]
struct Endpoint {
    /// The URL as given.
    text: String,
    /// The absolute URL (what the connector dials).
    url: http::Uri,
    /// The request target of an HTTP/1.1 request to it (origin form: path and query).
    origin: http::Uri,
    /// Its `Host` header.
    host: http::HeaderValue,
}

impl Endpoint {
    fn new(text: &str) -> Result<Endpoint, String> {
        let url: http::Uri = text.parse().map_err(|e| format!("--target {text}: {e}"))?;
        let host = url.host().ok_or_else(|| format!("--target {text}: no host"))?;
        let default_port = if url.scheme_str() == Some("https") { 443 } else { 80 };
        let host = match url.port_u16() {
            Some(p) if p != default_port => format!("{host}:{p}"),
            _ => host.to_string(),
        };
        let origin = match url.path_and_query() {
            Some(pq) => pq.as_str().parse().map_err(|e| format!("--target {text}: {e}"))?,
            None => http::Uri::from_static("/"),
        };
        Ok(Endpoint {
            text: text.to_string(),
            host: http::HeaderValue::from_str(&host).map_err(|e| format!("--target {text}: {e}"))?,
            url,
            origin,
        })
    }
}

/// An open HTTP/1.1 connection: the handle requests go through, and the connection the caller polls.
struct Live {
    send: http1::SendRequest<Body>,
    conn: Option<http1::Connection<Io, Body>>,
}

/// A caller's own HTTP/1.1 connection to one endpoint, carried from one sequential session to the next
/// ([`super::Link::open_sequential`], [`super::Link::close_keeping`]). Opened on the first request; reopened
/// when the server closes it.
pub struct HttpConnection {
    endpoint: Arc<Endpoint>,
    live: Option<Box<Live>>,
    timer: Option<Timer>,
}

type Timer = Pin<Box<tokio::time::Sleep>>;

impl std::fmt::Debug for HttpConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpConnection")
            .field("url", &self.endpoint.text)
            .field("open", &self.live.is_some())
            .finish()
    }
}

/// What one exchange brought back.
struct Exchanged {
    session: Option<String>,
    incoming: Vec<Incoming>,
}

type Exchange = Pin<Box<dyn Future<Output = (Exchanged, Option<Box<Live>>)> + Send>>;

/// The connection, idle between exchanges or owned by the exchange in flight.
enum State {
    Idle(Option<Box<Live>>),
    /// Kept here so that a cancelled [`InlineHttp::recv`] resumes it.
    Busy(Exchange),
}

/// Streamable HTTP for a sequential session: queued messages are posted one at a time when the caller asks for
/// the next incoming message.
pub(super) struct InlineHttp {
    endpoint: Arc<Endpoint>,
    connector: Connector,
    headers: Arc<[(String, String)]>,
    session: Option<String>,
    version: Option<String>,
    /// Sent by the engine, not yet posted (behind a lock only because [`super::Link::send`] takes `&self`).
    pub(super) outbox: Mutex<VecDeque<Bytes>>,
    inbox: VecDeque<Incoming>,
    /// In a lock only so that the link stays `Sync`; it is reached through `&mut self`.
    state: Mutex<State>,
    ended: bool,
    /// The timer of [`InlineHttp::recv_for`], reset for each wait (in a lock only so that the link stays `Sync`).
    timer: Mutex<Option<Timer>>,
}

impl std::fmt::Debug for InlineHttp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InlineHttp")
            .field("url", &self.endpoint.text)
            .field("session", &self.session)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl InlineHttp {
    pub(super) fn new(
        url: &str,
        headers: &[(String, String)],
        version: Option<&str>,
        conn: Option<HttpConnection>,
    ) -> Result<InlineHttp, String> {
        let (endpoint, live, timer) = match conn {
            Some(c) if c.endpoint.text == url => (c.endpoint, c.live, c.timer),
            Some(c) => (Arc::new(Endpoint::new(url)?), None, c.timer),
            None => (Arc::new(Endpoint::new(url)?), None, None),
        };
        Ok(InlineHttp {
            endpoint,
            connector: connector(),
            headers: headers.into(),
            session: None,
            version: version.map(str::to_string),
            outbox: Mutex::new(VecDeque::new()),
            inbox: VecDeque::new(),
            state: Mutex::new(State::Idle(live)),
            ended: false,
            timer: Mutex::new(timer),
        })
    }

    pub(super) fn session(&self) -> Option<&str> {
        self.session.as_deref()
    }

    fn request(&self, method: http::Method, body: Bytes) -> http::Request<Body> {
        let mut req = mcp_request(
            &self.endpoint.origin,
            &self.headers,
            self.session.as_deref(),
            self.version.as_deref(),
            method,
            body,
        );
        // A `Host` from the command line wins.
        req.headers_mut()
            .entry(http::header::HOST)
            .or_insert_with(|| self.endpoint.host.clone());
        req
    }

    pub(super) async fn recv(&mut self) -> Option<Incoming> {
        loop {
            if let Some(inc) = self.inbox.pop_front() {
                if matches!(inc, Incoming::Closed(_)) {
                    self.ended = true;
                }
                return Some(inc);
            }
            if self.ended {
                return None;
            }
            let state = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
            if let State::Idle(live) = state {
                let next = self.outbox.get_mut().unwrap_or_else(|e| e.into_inner()).pop_front();
                let Some(msg) = next else {
                    // Nothing to send and nothing coming: only the caller's timeout ends this wait.
                    return std::future::pending().await;
                };
                let live = live.take();
                let req = self.request(http::Method::POST, msg);
                let (endpoint, connector) = (self.endpoint.clone(), self.connector.clone());
                *self.state.get_mut().unwrap_or_else(|e| e.into_inner()) =
                    State::Busy(Box::pin(post(live, endpoint, connector, req)));
            }
            let state = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
            if let State::Busy(fut) = state {
                let (done, live) = fut.await;
                *state = State::Idle(live);
                if done.session.is_some() {
                    self.session = done.session;
                }
                self.inbox.extend(done.incoming);
            }
        }
    }

    /// [`InlineHttp::recv`], giving up after `left`.
    pub(super) async fn recv_for(&mut self, left: Duration) -> Result<Option<Incoming>, super::TimedOut> {
        let at = tokio::time::Instant::now() + left;
        let mut timer = match self.timer.get_mut().unwrap_or_else(|e| e.into_inner()).take() {
            Some(mut t) => {
                t.as_mut().reset(at);
                t
            }
            None => Box::pin(tokio::time::sleep_until(at)),
        };
        let out = tokio::select! {
            biased;
            r = self.recv() => Ok(r),
            () = &mut timer => Err(super::TimedOut),
        };
        *self.timer.get_mut().unwrap_or_else(|e| e.into_inner()) = Some(timer);
        out
    }

    /// Ends the session (its DELETE, when the server gave a session id) and hands back the connection; one with
    /// an exchange still in flight is dropped, its answer belongs to no one.
    pub(super) async fn finish(self) -> HttpConnection {
        let live = match self.state.into_inner().unwrap_or_else(|e| e.into_inner()) {
            State::Idle(live) => live,
            State::Busy(_) => None,
        };
        let live = match &self.session {
            None => live,
            Some(_) => {
                let mut req = mcp_request(
                    &self.endpoint.origin,
                    &self.headers,
                    self.session.as_deref(),
                    self.version.as_deref(),
                    http::Method::DELETE,
                    Bytes::new(),
                );
                req.headers_mut().remove(http::header::CONTENT_TYPE);
                req.headers_mut()
                    .entry(http::header::HOST)
                    .or_insert_with(|| self.endpoint.host.clone());
                // The answer does not matter; 5 s at most.
                tokio::time::timeout(
                    Duration::from_secs(5),
                    send(live, &self.endpoint, &self.connector, req, |resp| async move {
                        let _ = resp.into_body().collect().await;
                    }),
                )
                .await
                .ok()
                .and_then(|(_, live)| live)
            }
        };
        HttpConnection {
            endpoint: self.endpoint,
            live,
            timer: self.timer.into_inner().unwrap_or_else(|e| e.into_inner()),
        }
    }
}

/// One POST and what it answered.
async fn post(
    live: Option<Box<Live>>,
    endpoint: Arc<Endpoint>,
    connector: Connector,
    req: http::Request<Body>,
) -> (Exchanged, Option<Box<Live>>) {
    let url = &endpoint.url;
    let (out, live) = send(live, &endpoint, &connector, req, |resp| async move {
        let session = resp
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut incoming = Vec::new();
        read_answer(resp, "POST", url, &mut |inc| incoming.push(inc)).await;
        Exchanged { session, incoming }
    })
    .await;
    let done = out.unwrap_or_else(|e| Exchanged {
        session: None,
        incoming: vec![Incoming::Closed(format!("POST {url}: {e}"))],
    });
    (done, live)
}

/// Sends `req` on `live` (a new connection when `None` or closed) and runs `read` on the response while polling
/// the connection; hands the connection back if it can carry another request. A request a reused connection
/// could not send (the server closed it meanwhile) is sent once more on a new one.
async fn send<T, F: Future<Output = T>>(
    live: Option<Box<Live>>,
    endpoint: &Endpoint,
    connector: &Connector,
    req: http::Request<Body>,
    read: impl FnOnce(http::Response<hyper::body::Incoming>) -> F,
) -> (Result<T, String>, Option<Box<Live>>) {
    let mut live = live.filter(|l| l.conn.is_some() && !l.send.is_closed());
    let mut req = req;
    let resp = loop {
        let reused = live.is_some();
        let mut l = match live.take() {
            Some(l) => l,
            // Boxed: a connect is rare, its future large.
            None => match Box::pin(connect(endpoint, connector)).await {
                Ok(l) => l,
                Err(e) => return (Err(e), None),
            },
        };
        let Live { send, conn } = &mut *l;
        let sent = drive(conn, async {
            if let Err(e) = send.ready().await {
                return Err((e.to_string(), Some(req)));
            }
            send.try_send_request(req).await.map_err(|mut e| {
                let unsent = e.take_message();
                (e.into_error().to_string(), unsent)
            })
        })
        .await;
        match sent {
            Ok(resp) => break (resp, l),
            Err((e, unsent)) => match unsent {
                Some(r) if reused => req = r,
                _ => return (Err(e), None),
            },
        }
    };
    let (resp, mut l) = resp;
    let out = drive(&mut l.conn, read(resp)).await;
    let keep = l.conn.is_some() && !l.send.is_closed();
    (Ok(out), keep.then_some(l))
}

/// Runs `work` while polling the connection that carries it. A connection that ends is dropped, which fails
/// whatever of `work` still waits on it.
async fn drive<T>(conn: &mut Option<http1::Connection<Io, Body>>, work: impl Future<Output = T>) -> T {
    let mut work = std::pin::pin!(work);
    std::future::poll_fn(|cx| {
        if let Some(c) = conn.as_mut() {
            if Pin::new(c).poll(cx).is_ready() {
                *conn = None;
            }
        }
        work.as_mut().poll(cx)
    })
    .await
}

async fn connect(endpoint: &Endpoint, connector: &Connector) -> Result<Box<Live>, String> {
    use tower_service::Service;
    let mut connector = connector.clone();
    std::future::poll_fn(|cx| connector.poll_ready(cx))
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let io = connector
        .call(endpoint.url.clone())
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (send, conn) = http1::handshake(io).await.map_err(|e| format!("connect: {e}"))?;
    Ok(Box::new(Live { send, conn: Some(conn) }))
}

#[cfg(test)]
mod tests {
    use super::super::test_server;
    use super::*;

    #[test]
    fn the_endpoint_sends_origin_form_and_a_host_with_a_port_only_when_not_the_default() {
        let e = Endpoint::new("http://127.0.0.1:8080/mcp?x=1").unwrap();
        assert_eq!(e.origin, "/mcp?x=1");
        assert_eq!(e.host, "127.0.0.1:8080");
        let e = Endpoint::new("https://example.com:443").unwrap();
        assert_eq!(e.origin, "/");
        assert_eq!(e.host, "example.com");
        let e = Endpoint::new("http://example.com/mcp").unwrap();
        assert_eq!(e.host, "example.com");
    }

    /// A server that answers every request with a JSON-RPC result (and a session id, when asked), optionally
    /// closing the connection after each answer; counts connections and logs request lines and session ids.
    struct Server {
        url: String,
        accepts: Arc<std::sync::atomic::AtomicUsize>,
        log: Arc<Mutex<Vec<String>>>,
    }

    fn server(close_each: bool, session: Option<&'static str>) -> Server {
        let log = Arc::new(Mutex::new(Vec::new()));
        let l = log.clone();
        let (url, accepts) = test_server::serve(move |req| {
            let sid = req.header("mcp-session-id").unwrap_or_default();
            l.lock().unwrap().push(format!("{} sid={sid}", req.line));
            let answer = r#"{"jsonrpc":"2.0","id":1,"result":{}}"#;
            let mut head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
                answer.len()
            );
            if let Some(s) = session {
                head.push_str(&format!("mcp-session-id: {s}\r\n"));
            }
            if close_each {
                head.push_str("connection: close\r\n");
            }
            test_server::Reply {
                bytes: format!("{head}\r\n{answer}"),
                close: close_each,
            }
        });
        Server { url, accepts, log }
    }

    /// Runs `sessions` one-request sessions back to back, each on the connection the last one kept.
    async fn sessions(url: &str, sessions: usize) {
        let target = super::super::Target::Http {
            url: url.to_string(),
            headers: vec![],
        };
        let mut kept = None;
        for _ in 0..sessions {
            let mut link = super::super::Link::open_sequential(&target, None, kept.take())
                .await
                .unwrap();
            link.send(Bytes::from_static(br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#));
            match link.recv().await {
                Some(Incoming::Message(m)) => assert_eq!(&m[..], br#"{"jsonrpc":"2.0","id":1,"result":{}}"#),
                other => panic!("expected the answer, got {other:?}"),
            }
            kept = link.close_keeping(Duration::from_secs(3)).await;
            assert!(kept.is_some());
        }
    }

    #[tokio::test]
    async fn sessions_one_after_another_share_one_connection() {
        let s = server(false, None);
        sessions(&s.url, 3).await;
        assert_eq!(s.accepts.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(s.log.lock().unwrap().len(), 3);
    }

    #[tokio::test]
    async fn a_connection_the_server_closes_is_reopened() {
        let s = server(true, None);
        sessions(&s.url, 3).await;
        assert_eq!(s.accepts.load(std::sync::atomic::Ordering::SeqCst), 3);
        assert_eq!(s.log.lock().unwrap().len(), 3);
    }

    #[tokio::test]
    async fn a_session_with_an_id_ends_with_its_delete_on_the_same_connection() {
        let s = server(false, Some("abc"));
        sessions(&s.url, 2).await;
        assert_eq!(s.accepts.load(std::sync::atomic::Ordering::SeqCst), 1);
        let log = s.log.lock().unwrap().clone();
        assert_eq!(
            log,
            vec![
                "POST /mcp HTTP/1.1 sid=",
                "DELETE /mcp HTTP/1.1 sid=abc",
                "POST /mcp HTTP/1.1 sid=",
                "DELETE /mcp HTTP/1.1 sid=abc",
            ]
        );
    }
}

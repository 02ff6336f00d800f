//! `mcptape serve --listen ADDR`: Streamable HTTP. POST answers with JSON, or with an SSE stream when the recorded
//! answer came with notifications; `initialize` opens a session (`Mcp-Session-Id`); GET opens a quiet server stream;
//! DELETE ends the session. Requests without a session id are served too (2026-07-28 is stateless).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use mcptape_datasets::Kind;
use mcptape_datasets::wire::envelope::classify;
use tokio::net::TcpListener;

use crate::serve::core::{Reply, Server};

type Body = BoxBody<Bytes, Infallible>;

/// Largest request body accepted.
const MAX_BODY: usize = 16 << 20;

/// One HTTP session: where its GET stream is, and what waits for one to open.
#[derive(Default)]
struct Session {
    get: Option<tokio::sync::mpsc::UnboundedSender<Bytes>>,
    queued: Vec<Bytes>,
}

struct Http {
    server: Arc<Server>,
    sessions: Mutex<HashMap<String, Session>>,
    next: Mutex<u64>,
}

fn full(status: StatusCode, ct: Option<&str>, body: impl Into<Bytes>) -> Response<Body> {
    let mut b = Response::builder().status(status);
    if let Some(ct) = ct {
        b = b.header("content-type", ct);
    }
    b.body(Full::new(body.into()).boxed()).expect("a valid response")
}

/// Accepts connections on `listener` until `shutdown` resolves; a connection that has not sent a request's headers
/// within `header_timeout` is closed.
pub async fn serve(
    server: Arc<Server>,
    listener: TcpListener,
    header_timeout: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let state = Arc::new(Http {
        server,
        sessions: Mutex::new(HashMap::new()),
        next: Mutex::new(0),
    });
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(_) => { tokio::time::sleep(Duration::from_millis(10)).await; continue }
            },
            _ = &mut shutdown => return,
        };
        // An answer that follows its server messages on an SSE stream is several small writes: without this,
        // Nagle holds the last one until the client's delayed ACK (about 40 ms).
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(Http::route(&state, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

impl Http {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn route(this: &Arc<Http>, req: Request<Incoming>) -> Response<Body> {
        let session = req
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        if let Some(s) = &session {
            if !this.lock().contains_key(s) {
                return full(
                    StatusCode::NOT_FOUND,
                    Some("application/json"),
                    r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32001,"message":"mcptape serve: unknown session"}}"#,
                );
            }
        }
        match *req.method() {
            Method::POST => Http::post(this, req, session.unwrap_or_default()).await,
            Method::GET => this.get_stream(session),
            Method::DELETE => {
                if let Some(s) = session {
                    this.lock().remove(&s);
                    this.server.end_scope(&s);
                }
                full(StatusCode::OK, None, Bytes::new())
            }
            _ => full(StatusCode::METHOD_NOT_ALLOWED, None, Bytes::new()),
        }
    }

    /// The server stream of a session: what the server sends outside a request, and keep-alive comments.
    fn get_stream(&self, session: Option<String>) -> Response<Body> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
        if let Some(s) = &session {
            if let Some(sess) = self.lock().get_mut(s) {
                for q in sess.queued.drain(..) {
                    let _ = tx.send(q);
                }
                sess.get = Some(tx);
            }
        } else {
            std::mem::forget(tx); // stateless: a quiet stream
        }
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            match tokio::time::timeout(Duration::from_secs(15), rx.recv()).await {
                Ok(Some(msg)) => Some((Ok::<_, Infallible>(Frame::data(sse_event(&msg))), rx)),
                Ok(None) => None,
                Err(_) => Some((Ok(Frame::data(Bytes::from_static(b": keep-alive\n\n"))), rx)),
            }
        });
        Response::builder()
            .header("content-type", "text/event-stream")
            .header("cache-control", "no-cache")
            .body(BodyExt::boxed(StreamBody::new(stream)))
            .expect("a valid response")
    }

    /// Sends on a session's GET stream, or keeps it until one opens.
    fn to_session(&self, session: &str, msg: Bytes) {
        let mut sessions = self.lock();
        if let Some(sess) = sessions.get_mut(session) {
            match &sess.get {
                Some(tx) if tx.send(msg.clone()).is_ok() => {}
                _ => sess.queued.push(msg),
            }
        }
    }

    async fn post(this: &Arc<Http>, req: Request<Incoming>, session: String) -> Response<Body> {
        let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
            Ok(b) => b.to_bytes(),
            Err(_) => return full(StatusCode::PAYLOAD_TOO_LARGE, None, Bytes::new()),
        };
        let env = classify(&body);
        if env.kind == Kind::Batch {
            let items: Vec<serde_json::Value> = serde_json::from_slice(&body).unwrap_or_default();
            let mut answers = Vec::new();
            let mut delay = Duration::ZERO;
            for item in items {
                if let Some(Reply {
                    answer: Some(a),
                    delay: d,
                    ..
                }) = this.server.handle(&session, item.to_string().as_bytes())
                {
                    delay = delay.max(d);
                    answers.push(String::from_utf8_lossy(&a).into_owned());
                }
            }
            tokio::time::sleep(delay).await;
            if answers.is_empty() {
                return full(StatusCode::ACCEPTED, None, Bytes::new());
            }
            return full(
                StatusCode::OK,
                Some("application/json"),
                format!("[{}]", answers.join(",")),
            );
        }
        let Some(reply) = this.server.handle(&session, &body) else {
            return if env.kind == Kind::Invalid {
                full(
                    StatusCode::BAD_REQUEST,
                    Some("application/json"),
                    r#"{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"mcptape serve: parse error"}}"#,
                )
            } else {
                full(StatusCode::ACCEPTED, None, Bytes::new())
            };
        };
        if env.kind != Kind::Request {
            // The server's reaction to a client notification goes on the session's GET stream.
            let (this2, scope) = (this.clone(), session.clone());
            tokio::spawn(async move {
                let st = this2.clone();
                this2.server.deliver(&scope, reply, |b| st.to_session(&scope, b)).await;
            });
            return full(StatusCode::ACCEPTED, None, Bytes::new());
        }
        let scope = if env.method.as_deref() == Some("initialize") {
            this.open_session()
        } else {
            session
        };
        let mut resp = if reply.before.is_empty() {
            if !reply.delay.is_zero() {
                tokio::time::sleep(reply.delay).await;
            }
            full(
                StatusCode::OK,
                Some("application/json"),
                reply.answer.unwrap_or_default(),
            )
        } else {
            // The server's own messages, then the answer, as one SSE stream.
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
            let (server, sc) = (this.server.clone(), scope.clone());
            tokio::spawn(async move {
                server
                    .deliver(&sc, reply, |b| {
                        let _ = tx.send(b);
                    })
                    .await;
            });
            let stream = futures_util::stream::unfold(rx, |mut rx| async move {
                rx.recv()
                    .await
                    .map(|m| (Ok::<_, Infallible>(Frame::data(sse_event(&m))), rx))
            });
            Response::builder()
                .header("content-type", "text/event-stream")
                .header("cache-control", "no-cache")
                .body(BodyExt::boxed(StreamBody::new(stream)))
                .expect("a valid response")
        };
        if env.method.as_deref() == Some("initialize") {
            resp.headers_mut().insert(
                "mcp-session-id",
                http::HeaderValue::from_str(&scope).expect("ascii session id"),
            );
        }
        resp
    }

    fn open_session(&self) -> String {
        let mut n = self.next.lock().unwrap_or_else(|e| e.into_inner());
        *n += 1;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let id = format!("mcptape-{:x}-{}", nanos, *n);
        self.lock().insert(id.clone(), Session::default());
        id
    }
}

fn sse_event(msg: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(msg.len() + 16);
    out.extend_from_slice(b"event: message\n");
    for line in msg.split(|b| *b == b'\n') {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out.push(b'\n');
    Bytes::from(out)
}

/// Binds `addr`, refusing non-loopback addresses unless `allow_remote`.
pub async fn bind(addr: SocketAddr, allow_remote: bool) -> anyhow::Result<TcpListener> {
    if !addr.ip().is_loopback() && !allow_remote {
        anyhow::bail!("--listen {addr}: not a loopback address; add --allow-remote to serve other hosts");
    }
    TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("--listen {addr}: {e}"))
}

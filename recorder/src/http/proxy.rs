//! One HTTP exchange through the tap: read the client's request (bounded), pick its session, forward it, and
//! stream the upstream's answer back through a [`TapBody`].
//!
//! Request bodies are read whole before forwarding: a Streamable HTTP POST carries one JSON-RPC message (or
//! batch), which the server cannot act on before it is complete anyway, and having it whole lets the tap refuse an
//! oversized one with 413 before the upstream sees it and answer an unreachable upstream with the request's own
//! id. The copy recorded is the same `Bytes` that is forwarded. Response bodies are never held: see [`super::body`].
//!
//! What only the recording needs (the head as recorded, the session, the frame) is done right after the request
//! has been written upstream (after the write's first poll, which writes it whole on a kept connection), while the
//! upstream works, not before (the README's HTTP benchmark says what that saved). Nothing else runs on the tap's
//! thread in between, so the request's frame still comes before anything the upstream answers (the capture's order
//! stays causal), and no await either, so an exchange dropped later still has its request recorded.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Body, Incoming};
use mcptape_datasets::Kind;
use mcptape_datasets::Transport;
use mcptape_datasets::wire::envelope::classify;

use super::body::{Collect, Mode, ProxyBody, TapBody, status_note};
use super::client::{UpstreamConn, encode_request};
use super::exchange::Exchange;
use super::headers::{
    MCP_PROTOCOL_VERSION, MCP_SESSION_ID, add_via, media_type, recorded_path, strip_hop_by_hop, text,
};
use super::session::Open;
use super::sse::SseTap;
use super::{Hub, lifecycle, ws};
use crate::tap::{HttpRequestMeta, HttpResponseMeta};

/// The JSON-RPC error code of the tap's own error answers (implementation-defined server error).
pub(crate) const TAP_ERROR: i32 = -32000;

/// hyper's service entry point.
pub(crate) async fn handle(
    hub: Arc<Hub>,
    up: Arc<UpstreamConn>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    if hub.upstream.is_ws() {
        if ws::is_upgrade(req.headers()) {
            return Ok(ws::handle(hub, peer, req).await);
        }
        let body = jsonrpc_error(
            None,
            "mcptape: this tap forwards WebSocket connections only (the upstream is ws://)",
        );
        return Ok(plain(StatusCode::UPGRADE_REQUIRED, body));
    }
    let (parts, body) = req.into_parts();
    let body = read_body(body, hub.limits.max_body, hub.limits.idle_timeout).await;
    Ok(forward(hub, &up, peer, parts, body).await)
}

/// Why a request body could not be read whole.
pub(crate) enum BodyError {
    /// Longer than `--max-body`.
    TooLarge,
    /// Paused longer than `--idle-timeout`.
    Stalled,
    /// The connection failed or the body was malformed.
    Read(String),
}

/// Reads a request body whole, refusing more than `max` bytes and a pause longer than `idle` between chunks.
async fn read_body(mut body: Incoming, max: usize, idle: std::time::Duration) -> Result<Bytes, BodyError> {
    if body.size_hint().lower() > max as u64 {
        return Err(BodyError::TooLarge);
    }
    let mut parts: Vec<Bytes> = Vec::new();
    let mut len = 0usize;
    loop {
        let next = tokio::time::timeout(idle, body.frame())
            .await
            .map_err(|_| BodyError::Stalled)?;
        match next {
            None => break,
            Some(Err(e)) => return Err(BodyError::Read(e.to_string())),
            Some(Ok(frame)) => {
                if let Ok(d) = frame.into_data() {
                    len += d.len();
                    if len > max {
                        return Err(BodyError::TooLarge);
                    }
                    parts.push(d);
                }
            }
        }
    }
    Ok(match parts.len() {
        0 => Bytes::new(),
        1 => parts.pop().unwrap_or_default(),
        _ => {
            let mut b = BytesMut::with_capacity(len);
            for p in parts {
                b.extend_from_slice(&p);
            }
            b.freeze()
        }
    })
}

/// `{"jsonrpc":"2.0","id":<id or null>,"error":{"code":-32000,"message":...}}`, `id` being the exact JSON text.
pub(crate) fn jsonrpc_error(id: Option<&str>, message: &str) -> Bytes {
    let message = serde_json::to_string(message).unwrap_or_else(|_| "\"mcptape error\"".into());
    Bytes::from(format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":{},\"error\":{{\"code\":{TAP_ERROR},\"message\":{message}}}}}",
        id.unwrap_or("null")
    ))
}

/// A response the tap makes itself: JSON body, no upstream involved.
pub(crate) fn plain(status: StatusCode, body: Bytes) -> Response<ProxyBody> {
    let mut r = Response::new(ProxyBody::full(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// Records the tap's own error answer on `ex` and returns it.
pub(crate) fn tap_error(ex: &Exchange, status: StatusCode, body: Bytes) -> Response<ProxyBody> {
    let resp = plain(status, body.clone());
    ex.set_response(HttpResponseMeta {
        status: status.as_u16(),
        content_type: Some("application/json".into()),
        headers: resp.headers().clone(),
    });
    ex.s2c(Transport::Http, None, body, None);
    resp
}

/// Every cause in an error's chain, joined with ": " (hyper's top-level messages say little on their own).
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let s_text = s.to_string();
        if !out.contains(&s_text) {
            out.push_str(": ");
            out.push_str(&s_text);
        }
        cur = s.source();
    }
    out
}

/// Records the request side of `ex`: its body, or a note for a request without one.
fn record_request(ex: &Exchange, body: &Bytes, at: (Instant, i64)) {
    if body.is_empty() {
        let note = serde_json::json!({ "method": ex.request.method, "path": ex.request.path });
        ex.c2s(
            Transport::Http,
            Some(lifecycle::HTTP_REQUEST),
            Bytes::from(note.to_string()),
            Some(at),
        );
    } else {
        ex.c2s(Transport::Http, None, body.clone(), Some(at));
    }
}

fn client_group(hub: &Hub, peer: SocketAddr, headers: &http::HeaderMap, at: Instant) -> Open {
    let auth = text(headers, header::AUTHORIZATION);
    let agent = text(headers, header::USER_AGENT);
    hub.sessions.client(peer.ip(), auth, agent, at)
}

/// Could this JSON text name `initialize` (verbatim, or spelled with `\u` escapes)? The searchers are built once:
/// building one per call cost more than the search of a small body.
fn may_name_initialize(json: &[u8]) -> bool {
    use memchr::memmem::Finder;
    static WORD: std::sync::LazyLock<Finder<'static>> = std::sync::LazyLock::new(|| Finder::new(b"initialize"));
    static ESCAPE: std::sync::LazyLock<Finder<'static>> = std::sync::LazyLock::new(|| Finder::new(b"\\u"));
    WORD.find(json).is_some() || ESCAPE.find(json).is_some()
}

fn is_json(media: Option<&str>) -> bool {
    media.is_some_and(|m| {
        let m = m.as_bytes();
        m.eq_ignore_ascii_case(b"application/json") || (m.len() > 5 && m[m.len() - 5..].eq_ignore_ascii_case(b"+json"))
    })
}

/// The request's head as recorded and as shared by its exchange and frames; takes `parts`' headers (already
/// stripped of hop-by-hop fields).
fn request_meta(hub: &Hub, parts: &mut http::request::Parts, path_q: &str) -> Arc<HttpRequestMeta> {
    Arc::new(HttpRequestMeta {
        method: parts.method.as_str().to_string(),
        path: recorded_path(path_q, &hub.rules),
        content_type: text(&parts.headers, header::CONTENT_TYPE).map(str::to_string),
        mcp_session: text(&parts.headers, MCP_SESSION_ID).map(str::to_string),
        protocol_version: text(&parts.headers, MCP_PROTOCOL_VERSION).map(str::to_string),
        headers: std::mem::take(&mut parts.headers),
    })
}

/// One exchange whose request body was read (or failed to be): session, upstream, the answer to stream back.
pub(crate) async fn forward(
    hub: Arc<Hub>,
    conn: &Arc<UpstreamConn>,
    peer: SocketAddr,
    mut parts: http::request::Parts,
    body: Result<Bytes, BodyError>,
) -> Response<ProxyBody> {
    let uri = std::mem::take(&mut parts.uri);
    let path_q = uri.path_and_query().map_or("/", |p| p.as_str());
    strip_hop_by_hop(&mut parts.headers);
    let limits = &hub.limits;
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            let (status, msg) = match e {
                BodyError::TooLarge => (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("mcptape: request body larger than --max-body {} bytes", limits.max_body),
                ),
                BodyError::Stalled => (
                    StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "mcptape: request body stalled longer than --idle-timeout {}",
                        humantime::format_duration(limits.idle_timeout)
                    ),
                ),
                BodyError::Read(e) => (
                    StatusCode::BAD_REQUEST,
                    format!("mcptape: cannot read the request body: {e}"),
                ),
            };
            let at = (Instant::now(), mcptape_datasets::human::now_ns());
            let request = request_meta(&hub, &mut parts, path_q);
            let open = match &request.mcp_session {
                Some(id) => hub.sessions.mcp(id, at.0),
                None => client_group(&hub, peer, &request.headers, at.0),
            };
            let ex = Exchange::new(hub.sessions.clone(), open, request);
            record_request(&ex, &Bytes::new(), at);
            let mut resp = tap_error(&ex, status, jsonrpc_error(None, &msg));
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return resp;
        }
    };
    let at = (Instant::now(), mcptape_datasets::human::now_ns());
    let get = parts.method == Method::GET;
    // The request goes out first; what only the recording needs (its head as recorded, its session, its frame) is
    // done after its first poll, which on a kept connection writes it whole, while the upstream works. No await
    // comes between the two, so the frame still precedes anything the upstream answers, and a request whose
    // exchange is dropped later (a client gone, the tap stopping) is recorded all the same.
    // A parsed request's path-and-query, or the upstream URL's: valid as a request target.
    let target = hub.upstream.map_path(path_q);
    let mut wire = Vec::with_capacity(512 + body.len());
    encode_request(
        &parts.method,
        target,
        &parts.headers,
        hub.upstream.host_header(),
        &body,
        &mut wire,
    );
    let mut write = std::pin::pin!(conn.write(&hub.upstream, limits.connect_timeout, &wire));
    let first = std::future::poll_fn(|cx| Poll::Ready(write.as_mut().poll(cx))).await;
    // The request's head is shared by the exchange, its frames and the upstream request: no copy of its headers.
    let request = request_meta(&hub, &mut parts, path_q);
    let headers = &request.headers;
    // The writer classifies every message; here only an initialize (it may start a session) and, for the tap's own
    // error answers, the request's id matter: a body that cannot name `initialize` is not parsed on the way.
    let env = (!body.is_empty() && may_name_initialize(&body)).then(|| classify(&body));
    let rpc_id = || {
        let env = env.clone().or_else(|| (!body.is_empty()).then(|| classify(&body)));
        env.filter(|e| e.kind == Kind::Request).and_then(|e| e.rpc_id)
    };
    let initialize = env.as_ref().is_some_and(|e| {
        e.method.as_deref() == Some("initialize") || e.items.iter().any(|i| i.method.as_deref() == Some("initialize"))
    });

    // The session, when the request alone says which: its Mcp-Session-Id, a legacy endpoint, or (neither an
    // initialize nor a stream-opening GET, whose answers may start a session) its client's stateless group.
    let open = if let Some(id) = &request.mcp_session {
        Some(hub.sessions.mcp(id, at.0))
    } else if let Some(o) = hub.sessions.endpoint(path_q) {
        Some(o)
    } else if initialize || (get && body.is_empty()) {
        None
    } else {
        Some(client_group(&hub, peer, headers, at.0))
    };
    let decided = open.is_some();
    let mut ex: Option<Exchange> = open.map(|o| {
        let e = Exchange::new(hub.sessions.clone(), o, request.clone());
        record_request(&e, &body, at);
        e
    });
    let sent = match first {
        Poll::Ready(sent) => sent,
        Poll::Pending => write.await,
    };
    let result = match sent {
        Ok(s) => s.answer(&parts.method).await,
        Err(e) => Err(e),
    };
    let resp = match result {
        Ok(r) => r,
        Err(e) => {
            let ex = ex.unwrap_or_else(|| {
                let e = Exchange::new(
                    hub.sessions.clone(),
                    client_group(&hub, peer, headers, at.0),
                    request.clone(),
                );
                record_request(&e, &body, at);
                e
            });
            let msg = format!("mcptape: upstream unreachable: {e}");
            hub.log.line(&format!(
                "{} {}: {}",
                parts.method,
                ex.request.path,
                msg.trim_start_matches("mcptape: ")
            ));
            return tap_error(&ex, StatusCode::BAD_GATEWAY, jsonrpc_error(rpc_id().as_deref(), &msg));
        }
    };

    let (mut rparts, rbody) = resp.into_parts();
    strip_hop_by_hop(&mut rparts.headers);
    let media = media_type(&rparts.headers);
    let sse = media.is_some_and(|m| m.eq_ignore_ascii_case("text/event-stream"));
    let resp_session = text(&rparts.headers, MCP_SESSION_ID).map(str::to_string);
    // A GET that no Mcp-Session-Id names, answered with a stream: a legacy HTTP+SSE connection.
    let legacy = !decided && resp_session.is_none() && get && sse;
    let ex = match ex.take() {
        Some(e) => e,
        None => {
            let o = match &resp_session {
                Some(id) => hub.sessions.mcp(id, at.0),
                None if legacy => hub.sessions.legacy(at.0),
                None => client_group(&hub, peer, headers, at.0),
            };
            let mut e = Exchange::new(hub.sessions.clone(), o, request.clone());
            e.assigned_mcp_session = resp_session.clone();
            record_request(&e, &body, at);
            e
        }
    };
    let status = rparts.status;
    ex.set_response(HttpResponseMeta {
        status: status.as_u16(),
        content_type: text(&rparts.headers, header::CONTENT_TYPE).map(str::to_string),
        headers: rparts.headers.clone(),
    });
    let ex = Arc::new(ex);
    let gone = status == StatusCode::NOT_FOUND && ex.request.mcp_session.is_some();
    if gone || (parts.method == Method::DELETE && status.is_success()) {
        hub.sessions.close(ex.session());
    }
    let mode = if sse {
        // A stream opened by a GET is recorded from its start (it may stay silent); a POST's answer stream is
        // recorded by its events, which carry the status and headers.
        let answer = !body.is_empty();
        if !answer {
            status_note(&ex);
        }
        let watch = legacy.then(|| hub.upstream.map_path(path_q).to_string());
        Mode::Sse(Box::new(SseTap::new(limits.max_frame, watch, answer)))
    } else if is_json(media) || !status.is_success() {
        Mode::Json(Collect::new(limits.max_frame))
    } else {
        status_note(&ex);
        Mode::Pass
    };
    if matches!(&mode, Mode::Sse(s) if s.may_rewrite()) {
        rparts.headers.remove(header::CONTENT_LENGTH);
    }
    add_via(&mut rparts.headers);
    let body = TapBody::new(rbody, ex, hub.upstream.clone(), mode, legacy);
    Response::from_parts(rparts, ProxyBody::Tapped(Box::new(body)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_body_that_may_name_initialize_is_parsed_for_it() {
        assert!(may_name_initialize(br#"{"method":"initialize"}"#));
        assert!(may_name_initialize(br#"{"method":"\u0069nitialize"}"#));
        assert!(!may_name_initialize(br#"{"method":"tools/call","id":1}"#));
    }

    #[test]
    fn tap_errors_are_json_rpc_with_the_request_id() {
        let b = jsonrpc_error(Some("\"7\""), "mcptape: upstream unreachable: \"x\"");
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["id"], "7");
        assert_eq!(v["error"]["code"], TAP_ERROR);
        assert_eq!(v["error"]["message"], "mcptape: upstream unreachable: \"x\"");
        let v: serde_json::Value = serde_json::from_slice(&jsonrpc_error(None, "m")).unwrap();
        assert!(v["id"].is_null());
    }
}

//! WebSocket upstreams (`ws://`, `wss://`): the client's upgrade is replayed to the upstream first (with the
//! client's end-to-end headers: subprotocol, credentials, cookies), and only once the upstream accepted is the
//! client answered `101` with the upstream's choices. Then messages are relayed one by one, each text (and
//! binary) message becoming a frame. Each side's pings are answered by the tap, not forwarded; a close from
//! either side is forwarded and its answer awaited briefly. A refused upgrade is passed on as the upstream sent
//! it; an unreachable upstream gets the tap's 502.

use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use mcptape_datasets::{Direction, Transport};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::body::{ProxyBody, status_note};
use super::exchange::Exchange;
use super::headers::{add_via, recorded_path, strip_hop_by_hop, text};
use super::proxy::{chain, jsonrpc_error, tap_error};
use super::{Hub, lifecycle};
use crate::tap::{HttpRequestMeta, HttpResponseMeta};

/// How long the other side has to answer a close before the relay drops both connections.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// Handshake fields that belong to each hop's own handshake.
const HANDSHAKE: [&str; 4] = [
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-extensions",
    "sec-websocket-accept",
];

/// Is this a WebSocket upgrade request?
pub(crate) fn is_upgrade(headers: &HeaderMap) -> bool {
    let upgrade = text(headers, "upgrade").is_some_and(|u| u.eq_ignore_ascii_case("websocket"));
    let connection = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    upgrade && connection
}

fn end_to_end(headers: &HeaderMap) -> HeaderMap {
    let mut h = headers.clone();
    strip_hop_by_hop(&mut h);
    for n in HANDSHAKE {
        h.remove(n);
    }
    h
}

/// Relays one WebSocket connection.
pub(crate) async fn handle(hub: Arc<Hub>, _peer: SocketAddr, mut req: Request<Incoming>) -> Response<ProxyBody> {
    let at = (Instant::now(), mcptape_datasets::human::now_ns());
    let path_q = req.uri().path_and_query().map_or("/", |p| p.as_str()).to_string();
    let client_headers = end_to_end(req.headers());
    let request = HttpRequestMeta {
        method: req.method().as_str().to_string(),
        path: recorded_path(&path_q, &hub.rules),
        content_type: None,
        headers: client_headers.clone(),
        mcp_session: None,
        protocol_version: text(req.headers(), "mcp-protocol-version").map(str::to_string),
    };
    let ex = Exchange::new(hub.sessions.clone(), hub.sessions.ws(at.0), request);
    let note = serde_json::json!({ "method": ex.request.method, "path": ex.request.path, "upgrade": "websocket" });
    ex.c2s(
        Transport::Ws,
        Some(lifecycle::HTTP_REQUEST),
        Bytes::from(note.to_string()),
        Some(at),
    );
    let close = |ex: &Exchange| hub.sessions.close(ex.session());

    let Some(key) = req.headers().get("sec-websocket-key").cloned() else {
        let resp = tap_error(
            &ex,
            StatusCode::BAD_REQUEST,
            jsonrpc_error(None, "mcptape: no Sec-WebSocket-Key"),
        );
        close(&ex);
        return resp;
    };
    let url = hub.upstream.ws_url(&path_q);
    let mut up = match url.as_str().into_client_request() {
        Ok(r) => r,
        Err(e) => {
            let msg = format!("mcptape: upstream unreachable: {url}: {e}");
            let resp = tap_error(&ex, StatusCode::BAD_GATEWAY, jsonrpc_error(None, &msg));
            close(&ex);
            return resp;
        }
    };
    let mut forwarded = client_headers.clone();
    forwarded.remove(header::HOST);
    for (n, v) in &forwarded {
        up.headers_mut().append(n.clone(), v.clone());
    }
    add_via(up.headers_mut());
    let max = hub.limits.max_frame;
    let config = WebSocketConfig::default()
        .max_message_size(Some(max))
        .max_frame_size(Some(max));
    let connected = match hub.upstream.connect(hub.limits.connect_timeout).await {
        Ok(io) => tokio_tungstenite::client_async_with_config(up, io, Some(config))
            .await
            .map_err(Some),
        Err(e) => {
            let msg = format!("mcptape: upstream unreachable: {}", chain(&e));
            hub.log.line(&format!(
                "GET {} (websocket): {}",
                ex.request.path,
                msg.trim_start_matches("mcptape: ")
            ));
            let resp = tap_error(&ex, StatusCode::BAD_GATEWAY, jsonrpc_error(None, &msg));
            close(&ex);
            return resp;
        }
    };
    let (upstream_ws, up_resp) = match connected {
        Ok(x) => x,
        Err(Some(WsError::Http(refused))) => {
            // The upstream answered the upgrade with an HTTP error: the client gets it as it was.
            let (parts, body) = refused.into_parts();
            let mut headers = parts.headers;
            strip_hop_by_hop(&mut headers);
            let body = Bytes::from(body.unwrap_or_default());
            ex.set_response(HttpResponseMeta {
                status: parts.status.as_u16(),
                content_type: text(&headers, "content-type").map(str::to_string),
                headers: headers.clone(),
            });
            if body.is_empty() {
                status_note(&ex);
            } else {
                ex.s2c(Transport::Http, None, body.clone(), None);
            }
            add_via(&mut headers);
            let mut resp = Response::new(ProxyBody::full(body));
            *resp.status_mut() = parts.status;
            *resp.headers_mut() = headers;
            close(&ex);
            return resp;
        }
        Err(e) => {
            let msg = format!(
                "mcptape: upstream unreachable: {}",
                e.map_or_else(|| "handshake failed".to_string(), |e| chain(&e))
            );
            hub.log.line(&format!(
                "GET {} (websocket): {}",
                ex.request.path,
                msg.trim_start_matches("mcptape: ")
            ));
            let resp = tap_error(&ex, StatusCode::BAD_GATEWAY, jsonrpc_error(None, &msg));
            close(&ex);
            return resp;
        }
    };

    let mut resp_headers = end_to_end(up_resp.headers());
    ex.set_response(HttpResponseMeta {
        status: 101,
        content_type: None,
        headers: resp_headers.clone(),
    });
    status_note(&ex);
    add_via(&mut resp_headers);
    resp_headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    resp_headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(v) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        resp_headers.insert("sec-websocket-accept", v);
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    let ex = Arc::new(ex);
    let task_hub = hub.clone();
    hub.spawn(async move {
        let end = match on_upgrade.await {
            Ok(upgraded) => {
                let client = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config)).await;
                relay(client, upstream_ws, &ex, task_hub.shutdown.clone()).await
            }
            Err(_) => "client-upgrade-failed",
        };
        let note = format!("{{\"end\":\"{end}\"}}");
        ex.message(
            Direction::S2c,
            Transport::Ws,
            Some(crate::tap::lifecycle::EOF),
            Bytes::from(note),
        );
        task_hub.sessions.close(ex.session());
    });
    let mut resp = Response::new(ProxyBody::Full(None));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    *resp.headers_mut() = resp_headers;
    resp
}

async fn relay<C, U>(
    client: WebSocketStream<C>,
    upstream: WebSocketStream<U>,
    ex: &Exchange,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> &'static str
where
    C: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    U: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut cw, mut cr) = client.split();
    let (mut uw, mut ur) = upstream.split();
    let end = {
        let mut c2s = pin!(pump(&mut cr, &mut uw, ex, Direction::C2s));
        let mut s2c = pin!(pump(&mut ur, &mut cw, ex, Direction::S2c));
        tokio::select! {
            end = &mut c2s => {
                let _ = tokio::time::timeout(CLOSE_WAIT, &mut s2c).await;
                end
            }
            end = &mut s2c => {
                let _ = tokio::time::timeout(CLOSE_WAIT, &mut c2s).await;
                end
            }
            _ = super::stopped(&mut stop) => "shutdown",
        }
    };
    if end == "shutdown" {
        let away = || {
            Message::Close(Some(CloseFrame {
                code: CloseCode::Away,
                reason: "mcptape is shutting down".into(),
            }))
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), cw.send(away())).await;
        let _ = tokio::time::timeout(Duration::from_secs(1), uw.send(away())).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), cw.close()).await;
    let _ = tokio::time::timeout(Duration::from_secs(1), uw.close()).await;
    end
}

/// One direction: each data message is recorded, then sent on. Ends at a close (forwarded), the end of the
/// stream or an error.
async fn pump<R, W>(src: &mut R, dst: &mut W, ex: &Exchange, dir: Direction) -> &'static str
where
    R: Stream<Item = Result<Message, WsError>> + Unpin,
    W: Sink<Message, Error = WsError> + Unpin,
{
    let by = match dir {
        Direction::C2s => ("client-closed", "client-error", "client-gone"),
        Direction::S2c => ("upstream-closed", "upstream-error", "upstream-gone"),
    };
    while let Some(msg) = src.next().await {
        let msg = match msg {
            Ok(m) => m,
            Err(_) => return by.1,
        };
        match &msg {
            Message::Text(t) => ex.message(dir, Transport::Ws, None, Bytes::from(t.clone())),
            Message::Binary(b) => ex.message(dir, Transport::Ws, None, b.clone()),
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
            Message::Close(_) => {
                let _ = dst.send(msg).await;
                return by.0;
            }
        }
        if dst.send(msg).await.is_err() {
            return by.1;
        }
    }
    by.2
}

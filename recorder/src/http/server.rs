//! The tap's own HTTP/1.1 server for the common exchange: a POST, GET or DELETE whose body, if any, has a
//! `Content-Length`, answered with a length-delimited, empty or chunked body (JSON answers and event streams
//! alike). hyper's server machinery was about 13,000 of the proxy thread's 32,000 instructions per small request;
//! this path reads the head with httparse into the connection's buffer, takes the body from the same buffer and
//! writes a small answer's head and body in one `write` (callgrind, 1 connection: 32,000 -> 26,700 per request).
//!
//! Anything else (another method or HTTP version, `Transfer-Encoding`, `Expect`, `Upgrade`, a head httparse
//! refuses or longer than [`MAX_HEAD`]) hands the connection, with the bytes already read, to hyper for the rest
//! of its life: hyper keeps answering the unusual and the malformed (400, 431, `100 Continue`, chunked uploads).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::FutureExt;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Body;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::Hub;
use super::body::ProxyBody;
use super::client::UpstreamConn;
use super::proxy::{self, BodyError};

/// Longest request head taken here; a longer one goes to hyper (which answers 431 beyond its own limit).
const MAX_HEAD: usize = 16 * 1024;
/// Most header fields taken here (a head with more goes to hyper).
const MAX_HEADERS: usize = 64;
/// Room made in the read buffer before each read.
const READ: usize = 8 * 1024;
/// Body frames up to this size are copied next to the head or their chunk-size line (one `write` for both).
const COPY_CHUNK: usize = 16 * 1024;

/// What the connection does next.
// One per request, moved once: a box would only add an allocation per request.
#[allow(clippy::large_enum_variant)]
enum Next {
    /// A request head this path takes (already consumed from the buffer).
    Request(Head),
    /// hyper takes the connection, the buffer included.
    Hyper,
    /// The client left, the header timeout passed, or the tap is stopping.
    Done,
}

/// A request head this path takes.
#[derive(Debug)]
struct Head {
    parts: http::request::Parts,
    content_length: u64,
    /// The client asked to close the connection after this exchange.
    close: bool,
}

/// Serves one client connection until it closes, handing it to `hyper` at the first request this path does not
/// take.
pub(crate) async fn connection<H, F>(
    mut stream: TcpStream,
    hub: Arc<Hub>,
    up: Arc<UpstreamConn>,
    peer: SocketAddr,
    stop: watch::Receiver<bool>,
    hyper: H,
) where
    H: FnOnce(Rewind) -> F,
    F: std::future::Future<Output = ()>,
{
    let mut buf = BytesMut::with_capacity(READ);
    // One timer and one shutdown watch for the connection's life, re-armed per head rather than made anew.
    let mut timer = std::pin::pin!(tokio::time::sleep(Duration::ZERO));
    let mut watch_stop = stop.clone();
    let mut stopping = std::pin::pin!(async move { super::stopped(&mut watch_stop).await });
    loop {
        let head = match next_head(
            &mut stream,
            &mut buf,
            hub.limits.header_timeout,
            timer.as_mut(),
            stopping.as_mut(),
        )
        .await
        {
            Next::Request(h) => h,
            Next::Hyper => {
                return hyper(Rewind {
                    read: buf.freeze(),
                    stream,
                })
                .await;
            }
            Next::Done => return,
        };
        let body = read_body(
            &mut stream,
            &mut buf,
            head.content_length,
            hub.limits.max_body,
            hub.limits.idle_timeout,
        )
        .await;
        let resp = proxy::forward(hub.clone(), &up, peer, head.parts, body).await;
        let keep = write_response(&mut stream, &mut buf, resp, head.close).await;
        if !keep || *stop.borrow() {
            let _ = stream.shutdown().await;
            return;
        }
    }
}

/// Waits for the next request head, for at most `timeout` (also how long an idle kept-alive connection stays).
async fn next_head(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    timeout: Duration,
    mut timer: Pin<&mut tokio::time::Sleep>,
    mut stopping: Pin<&mut impl std::future::Future<Output = ()>>,
) -> Next {
    timer.as_mut().reset(tokio::time::Instant::now() + timeout);
    loop {
        if !buf.is_empty() {
            match parse_head(buf) {
                Parsed::Complete(head) => return Next::Request(head),
                Parsed::Other => return Next::Hyper,
                Parsed::Partial if buf.len() >= MAX_HEAD => return Next::Hyper,
                Parsed::Partial => {}
            }
        }
        buf.reserve(READ);
        tokio::select! {
            r = stream.read_buf(buf) => match r {
                Ok(0) | Err(_) => return Next::Done,
                Ok(_) => {}
            },
            () = timer.as_mut() => return Next::Done,
            // Completes once; the connection ends then.
            () = stopping.as_mut(), if buf.is_empty() => return Next::Done,
        }
    }
}

/// What the buffer holds.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
enum Parsed {
    /// A whole head this path takes; the buffer now starts after it.
    Complete(Head),
    /// Not a whole head yet.
    Partial,
    /// A head for hyper (unusual or malformed); the buffer is untouched.
    Other,
}

/// Parses the head at the start of `buf`.
fn parse_head(buf: &mut BytesMut) -> Parsed {
    let mut slots = [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_request_with_uninit_headers(&mut req, buf, &mut slots) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Other,
    };
    let method = match req.method {
        Some("POST") => Method::POST,
        Some("GET") => Method::GET,
        Some("DELETE") => Method::DELETE,
        _ => return Parsed::Other,
    };
    let (Some(1), Some(path)) = (req.version, req.path.filter(|p| p.starts_with('/'))) else {
        return Parsed::Other;
    };
    let Ok(uri) = Uri::from_maybe_shared(Bytes::copy_from_slice(path.as_bytes())) else {
        return Parsed::Other;
    };
    let mut headers = HeaderMap::with_capacity(req.headers.len());
    let (mut content_length, mut close) = (None, false);
    for h in req.headers.iter() {
        let Ok(name) = HeaderName::from_bytes(h.name.as_bytes()) else {
            return Parsed::Other;
        };
        if name == header::TRANSFER_ENCODING || name == header::EXPECT || name == header::UPGRADE {
            return Parsed::Other;
        }
        if name == header::CONTENT_LENGTH {
            match (decimal(h.value), content_length) {
                (Some(n), None) => content_length = Some(n),
                (Some(n), Some(m)) if n == m => {}
                _ => return Parsed::Other,
            }
        }
        if name == header::CONNECTION {
            for token in h.value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                if token.eq_ignore_ascii_case(b"close") {
                    close = true;
                } else if token.eq_ignore_ascii_case(b"upgrade") {
                    return Parsed::Other;
                }
            }
        }
        let Ok(value) = HeaderValue::from_bytes(h.value) else {
            return Parsed::Other;
        };
        headers.append(name, value);
    }
    let (mut parts, ()) = Request::new(()).into_parts();
    parts.method = method;
    parts.uri = uri;
    parts.version = Version::HTTP_11;
    parts.headers = headers;
    buf.advance(len);
    Parsed::Complete(Head {
        parts,
        content_length: content_length.unwrap_or(0),
        close,
    })
}

/// A `Content-Length` value: ASCII digits only, no sign, no spaces (RFC 9110 §8.6).
fn decimal(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(v.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

/// Reads a `len`-byte body, refusing more than `max` bytes and a pause longer than `idle`.
async fn read_body(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    len: u64,
    max: usize,
    idle: Duration,
) -> Result<Bytes, BodyError> {
    let len = usize::try_from(len)
        .ok()
        .filter(|&n| n <= max)
        .ok_or(BodyError::TooLarge)?;
    while buf.len() < len {
        buf.reserve(len - buf.len());
        match tokio::time::timeout(idle, stream.read_buf(buf)).await {
            Err(_) => return Err(BodyError::Stalled),
            Ok(Ok(0)) => {
                return Err(BodyError::Read(
                    "the client closed the connection inside the body".into(),
                ));
            }
            Ok(Err(e)) => return Err(BodyError::Read(e.to_string())),
            Ok(Ok(_)) => {}
        }
    }
    Ok(buf.split_to(len).freeze())
}

/// How a response body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No body (1xx, 204, 304).
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding, each body frame one chunk as it comes.
    Chunked,
}

/// The response head, and how its body is framed: the headers as given, then what the framing and `close` need
/// (`content-length` or `transfer-encoding: chunked`, `connection: close`) and a `date` if there is none. Returns
/// the framing and whether the connection closes after this answer (`close_asked`, or the answer's `Connection`
/// says so). One pass over the fields, no lookups: this is on every answer's path.
fn encode_head(
    status: StatusCode,
    headers: &HeaderMap,
    body: &impl Body,
    close_asked: bool,
    out: &mut Vec<u8>,
) -> (Framing, bool) {
    let no_body = status.is_informational() || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;
    let from_body = || {
        if body.is_end_stream() {
            Framing::Length(0)
        } else if let Some(n) = body.size_hint().exact() {
            Framing::Length(n)
        } else {
            Framing::Chunked
        }
    };
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    // Decided at the first `content-length` (whose place the length keeps), or after the fields.
    let mut framing = no_body.then_some(Framing::None);
    let (mut close, mut has_connection, mut has_date) = (close_asked, false, false);
    for (name, value) in headers {
        if name == header::CONTENT_LENGTH && !no_body {
            if framing.is_none() {
                let f = decimal(value.as_bytes()).map_or_else(from_body, Framing::Length);
                if let Framing::Length(n) = f {
                    length_field(out, n);
                }
                framing = Some(f);
            }
            continue;
        }
        if name == header::CONNECTION {
            has_connection = true;
            close |= value
                .as_bytes()
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"));
        } else if name == header::DATE {
            has_date = true;
        }
        field(out, name.as_str().as_bytes(), value.as_bytes());
    }
    let framing = framing.unwrap_or_else(|| {
        let f = from_body();
        if let Framing::Length(n) = f {
            length_field(out, n);
        }
        f
    });
    if framing == Framing::Chunked {
        field(out, b"transfer-encoding", b"chunked");
    }
    if close && !has_connection {
        field(out, b"connection", b"close");
    }
    if !has_date {
        date::with(|d| field(out, b"date", d.as_bytes()));
    }
    out.extend_from_slice(b"\r\n");
    (framing, close)
}

fn length_field(out: &mut Vec<u8>, n: u64) {
    use std::io::Write;
    out.extend_from_slice(b"content-length: ");
    let _ = write!(out, "{n}\r\n");
}

fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Writes `resp`; returns whether the connection can carry another request. The body is polled again as soon as
/// its last bytes are written, with no await between: a tapped JSON answer is recorded at that poll (see
/// `TapBody::poll_frame`), so it is recorded after it left yet before anything else on this thread runs.
async fn write_response(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    resp: Response<ProxyBody>,
    close_asked: bool,
) -> bool {
    let (parts, mut body) = resp.into_parts();
    let mut out = Vec::with_capacity(512);
    let (framing, close) = encode_head(parts.status, &parts.headers, &body, close_asked, &mut out);
    let mut left = match framing {
        Framing::None => return stream.write_all(&out).await.is_ok() && !close,
        Framing::Length(n) => Some(n),
        Framing::Chunked => None,
    };
    // A small answer's body is usually there already: head and body in one write. An event stream's head goes out
    // at once, before its first event.
    let mut first = body.frame().now_or_never();
    if first.is_none() && stream.write_all(&std::mem::take(&mut out)).await.is_err() {
        return false;
    }
    let mut watch_client = true;
    loop {
        let frame = match first.take() {
            Some(f) => f,
            None => {
                tokio::select! {
                    biased;
                    f = body.frame() => f,
                    gone = client_left(stream, buf), if watch_client => {
                        if gone {
                            return false;
                        }
                        watch_client = buf.len() < MAX_HEAD;
                        continue;
                    }
                }
            }
        };
        let data = match frame {
            None => break,
            Some(Err(_)) => return false,
            Some(Ok(f)) => match f.into_data() {
                Ok(d) => d,
                Err(_) => continue,
            },
        };
        if data.is_empty() {
            continue;
        }
        let ok = match &mut left {
            Some(n) => {
                // More than the declared length would corrupt the next exchange: cut, and close after.
                let take = data.len().min(usize::try_from(*n).unwrap_or(usize::MAX));
                *n -= take as u64;
                let ok = if take <= COPY_CHUNK {
                    out.extend_from_slice(&data[..take]);
                    stream.write_all(&out).await.is_ok()
                } else {
                    // A large body is written from where it is, not copied behind the head.
                    stream.write_all(&out).await.is_ok() && stream.write_all(&data[..take]).await.is_ok()
                };
                if take < data.len() {
                    return false;
                }
                ok
            }
            None if data.len() <= COPY_CHUNK => {
                out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
                out.extend_from_slice(&data);
                out.extend_from_slice(b"\r\n");
                stream.write_all(&out).await.is_ok()
            }
            None => {
                out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
                stream.write_all(&out).await.is_ok()
                    && stream.write_all(&data).await.is_ok()
                    && stream.write_all(b"\r\n").await.is_ok()
            }
        };
        out.clear();
        if !ok {
            return false;
        }
    }
    match left {
        // The body ended short of its length: the client cannot tell where the next answer starts.
        Some(n) => n == 0 && stream.write_all(&out).await.is_ok() && !close,
        None => {
            out.extend_from_slice(b"0\r\n\r\n");
            stream.write_all(&out).await.is_ok() && !close
        }
    }
}

/// Completes when the client closed its side (`true`) or sent more bytes, kept in `buf` (`false`).
async fn client_left(stream: &mut TcpStream, buf: &mut BytesMut) -> bool {
    loop {
        if stream.readable().await.is_err() {
            return true;
        }
        buf.reserve(READ);
        match stream.try_read_buf(buf) {
            Ok(0) => return true,
            Ok(_) => return false,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return true,
        }
    }
}

/// The `date` field, formatted once a second per thread.
mod date {
    use std::cell::RefCell;
    use std::time::{SystemTime, UNIX_EPOCH};

    thread_local! {
        static CACHE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }

    pub(super) fn with(f: impl FnOnce(&str)) {
        let now = SystemTime::now();
        let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        CACHE.with(|c| {
            let mut c = c.borrow_mut();
            if c.0 != secs {
                *c = (secs, httpdate::fmt_http_date(now));
            }
            f(&c.1);
        });
    }
}

/// The client connection handed to hyper: the bytes this path already read, then the socket.
#[derive(Debug)]
pub(crate) struct Rewind {
    read: Bytes,
    stream: TcpStream,
}

impl AsyncRead for Rewind {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, out: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if !this.read.is_empty() {
            let n = this.read.len().min(out.remaining());
            out.put_slice(&this.read.split_to(n));
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.stream).poll_read(cx, out)
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(text: &[u8]) -> (Parsed, BytesMut) {
        let mut buf = BytesMut::from(text);
        (parse_head(&mut buf), buf)
    }

    fn head(text: &[u8]) -> Head {
        match parse(text).0 {
            Parsed::Complete(h) => h,
            other => panic!("{other:?} for {}", String::from_utf8_lossy(text)),
        }
    }

    #[test]
    fn the_common_requests_are_taken_here() {
        let h = head(b"POST /mcp?x=1 HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 12\r\nMcp-Session-Id: s1\r\nX-Two: 1\r\nx-two: 2\r\n\r\n");
        assert_eq!(h.parts.method, Method::POST);
        assert_eq!(h.parts.uri, "/mcp?x=1");
        assert_eq!(h.content_length, 12);
        assert!(!h.close);
        assert_eq!(h.parts.headers["mcp-session-id"], "s1");
        let two: Vec<_> = h.parts.headers.get_all("x-two").iter().collect();
        assert_eq!(two, ["1", "2"], "repeated fields kept, in order");
        let h = head(b"GET /mcp HTTP/1.1\r\nAccept: text/event-stream\r\nConnection: keep-alive, Close\r\n\r\n");
        assert_eq!((h.parts.method, h.content_length, h.close), (Method::GET, 0, true));
        let h = head(b"DELETE /mcp HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(h.parts.method, Method::DELETE);
    }

    #[test]
    fn anything_unusual_goes_to_hyper_with_the_buffer_untouched() {
        for text in [
            &b"PUT /mcp HTTP/1.1\r\n\r\n"[..],
            b"HEAD /mcp HTTP/1.1\r\n\r\n",
            b"OPTIONS * HTTP/1.1\r\n\r\n",
            b"POST /mcp HTTP/1.0\r\nContent-Length: 2\r\n\r\n{}",
            b"POST http://a/mcp HTTP/1.1\r\n\r\n",
            b"POST /mcp HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST /mcp HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n",
            b"GET /ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
            b"POST /mcp HTTP/1.1\r\nContent-Length: +2\r\n\r\n",
            b"POST /mcp HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n",
            b"POST /mcp HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
            b"POST /mcp HTTP/1.1\r\nBad Name: 1\r\n\r\n",
            b"\x00\x01garbage\r\n\r\n",
        ] {
            let (parsed, buf) = parse(text);
            assert!(
                matches!(parsed, Parsed::Other),
                "{parsed:?} for {}",
                String::from_utf8_lossy(text)
            );
            assert_eq!(&buf[..], text, "hyper must get every byte");
        }
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: v\r\n")).collect();
        let text = format!("POST /mcp HTTP/1.1\r\n{many}\r\n");
        assert!(matches!(parse(text.as_bytes()).0, Parsed::Other));
    }

    proptest! {
        /// A head arriving in pieces is not taken before its last byte, is taken whole then, and what follows it
        /// (the body, a pipelined request) stays in the buffer.
        #[test]
        fn a_head_is_taken_only_whole_and_leaves_what_follows(
            cut in any::<prop::sample::Index>(),
            path in "/[a-z0-9/]{0,20}",
            session in proptest::option::of("[a-zA-Z0-9-]{1,40}"),
            body in "[ -~]{0,40}",
        ) {
            let mut text = format!("POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n", body.len());
            if let Some(s) = &session {
                text.push_str(&format!("Mcp-Session-Id: {s}\r\n"));
            }
            text.push_str("\r\n");
            let head_len = text.len();
            text.push_str(&body);
            text.push_str("GET /next HTTP/1.1\r\n\r\n");
            let cut = cut.index(head_len);
            let (parsed, buf) = parse(&text.as_bytes()[..cut]);
            prop_assert!(matches!(parsed, Parsed::Partial), "{:?} at {}", parsed, cut);
            prop_assert_eq!(buf.len(), cut);
            let (parsed, buf) = parse(text.as_bytes());
            let Parsed::Complete(h) = parsed else { panic!("{parsed:?}") };
            prop_assert_eq!(h.parts.uri.path(), path.as_str());
            prop_assert_eq!(h.content_length, body.len() as u64);
            prop_assert_eq!(h.parts.headers.get("mcp-session-id").map(|v| v.to_str().unwrap()), session.as_deref());
            prop_assert_eq!(&buf[..], &text.as_bytes()[head_len..]);
        }
    }

    proptest! {
        /// Any bytes at all: no panic; a head for hyper or one not yet whole leaves the buffer as it was, and a head
        /// taken here leaves exactly what follows its blank line.
        #[test]
        fn any_bytes_leave_the_buffer_whole_or_just_after_a_head(
            prefix in prop::sample::select(vec![&b""[..], b"POST / HTTP/1.1\r\n", b"GET /mcp HTTP/1.1\r\nHost: x\r\n"]),
            bytes in proptest::collection::vec(
                prop_oneof![any::<u8>(), prop::sample::select(b"\r\n: aZ/-".to_vec())],
                0..200,
            ),
        ) {
            let mut text = prefix.to_vec();
            text.extend_from_slice(&bytes);
            let (parsed, buf) = parse(&text);
            match parsed {
                Parsed::Complete(_) => {
                    // The first blank line (httparse takes a bare `\n` for `\r\n`).
                    let end = (2..=text.len())
                        .find(|&e| text[e - 1] == b'\n' && (text[e - 2] == b'\n' || text[..e - 1].ends_with(b"\n\r")))
                        .expect("a blank line");
                    prop_assert_eq!(&buf[..], &text[end..]);
                }
                Parsed::Partial | Parsed::Other => prop_assert_eq!(&buf[..], &text[..]),
            }
        }
    }

    fn encoded(status: u16, headers: &[(&str, &str)], body: ProxyBody, close: bool) -> (String, Framing) {
        let mut map = HeaderMap::new();
        for (n, v) in headers {
            map.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        let mut out = Vec::new();
        let (framing, _) = encode_head(StatusCode::from_u16(status).unwrap(), &map, &body, close, &mut out);
        (String::from_utf8(out).unwrap(), framing)
    }

    #[test]
    fn response_heads_keep_the_fields_and_say_how_the_body_ends() {
        let dated = [("date", "Thu, 03 Dec 2026 12:00:00 GMT")];
        // The upstream's length stays where it was.
        let (text, framing) = encoded(
            200,
            &[
                ("content-type", "application/json"),
                ("content-length", "2"),
                dated[0],
                ("via", "1.1 mcptape"),
            ],
            ProxyBody::full("{}"),
            false,
        );
        assert_eq!(framing, Framing::Length(2));
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\ndate: Thu, 03 Dec 2026 12:00:00 \
             GMT\r\nvia: 1.1 mcptape\r\n\r\n"
        );
        // The tap's own answer: length from the body; closing when asked.
        let (text, framing) = encoded(413, &dated, ProxyBody::full("{\"e\":1}"), true);
        assert_eq!(framing, Framing::Length(7));
        assert_eq!(
            text,
            "HTTP/1.1 413 Payload Too Large\r\ndate: Thu, 03 Dec 2026 12:00:00 GMT\r\ncontent-length: 7\r\nconnection: \
             close\r\n\r\n"
        );
        let (text, framing) = encoded(202, &dated, ProxyBody::full(""), false);
        assert_eq!(framing, Framing::Length(0));
        assert!(text.contains("content-length: 0\r\n"), "{text}");
        let (text, framing) = encoded(204, &[("content-length", "0"), dated[0]], ProxyBody::full(""), false);
        assert_eq!(framing, Framing::None);
        assert_eq!(
            text,
            "HTTP/1.1 204 No Content\r\ncontent-length: 0\r\ndate: Thu, 03 Dec 2026 12:00:00 GMT\r\n\r\n"
        );
        // The upstream's own `Connection: close` closes after the answer, and is not said twice.
        let mut map = HeaderMap::new();
        map.append(header::CONNECTION, HeaderValue::from_static("keep-alive, Close"));
        map.append(header::DATE, HeaderValue::from_static(dated[0].1));
        let mut out = Vec::new();
        let (framing, close) = encode_head(StatusCode::OK, &map, &ProxyBody::full("{}"), false, &mut out);
        assert_eq!((framing, close), (Framing::Length(2), true));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\nconnection: keep-alive, Close\r\ndate: Thu, 03 Dec 2026 12:00:00 GMT\r\ncontent-length: \
             2\r\n\r\n"
        );
        // An unreadable length gives way to the body's; the length keeps its place.
        let (text, framing) = encoded(
            200,
            &[("content-length", "1x"), ("content-length", "9"), dated[0]],
            ProxyBody::full("abc"),
            false,
        );
        assert_eq!(framing, Framing::Length(3));
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\ncontent-length: 3\r\ndate: Thu, 03 Dec 2026 12:00:00 GMT\r\n\r\n"
        );
        // A date is added when the upstream sent none.
        let (text, _) = encoded(200, &[], ProxyBody::full("x"), false);
        let date = text.lines().find_map(|l| l.strip_prefix("date: ")).expect("a date");
        assert!(httpdate::parse_http_date(date).is_ok(), "{date}");
    }
}

//! The tap's HTTP/1.1 client for its upstream: it writes a request and reads the answer on the exchange's own
//! task, and the answer's body reads the connection directly as hyper's server polls it.
//!
//! Why not hyper's client: it runs each connection as a task of its own and passes the request, the answer's head
//! and every body chunk across channels between that task and the exchange, several task switches per exchange. The
//! tap forwards one exchange at a time per client connection (hyper's server reads the next request only once the
//! previous answer is sent), so it needs none of that. What it does need is here and small: a request with its
//! whole body, a response head (httparse, as hyper uses), and the body framing of RFC 9112 §6.3 (no body,
//! `Content-Length`, `chunked`, or until the connection closes).
//!
//! Each client connection has its own upstream connection, [`UpstreamConn`]: opened at its first request, given
//! back by a body read to its end, kept while the upstream keeps it open (like nginx's `keepalive` upstreams, but
//! pinned, so a client's requests also reach the upstream in the order it sent them).

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode, Version};
use hyper::body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::chunked::{Chunked, Decoded};
use super::headers::via_with_tap;
use super::upstream::{Io, Upstream};

/// Header fields accepted in a response head (hyper's client allows as many).
const MAX_HEADERS: usize = 100;
/// The largest response head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// How much room a read asks for.
const READ: usize = 16 * 1024;

/// Why a request could not be sent upstream or its answer's head not read.
#[derive(Debug)]
pub(crate) enum SendError {
    /// Connecting (TCP or TLS) failed.
    Connect(io::Error),
    /// The connection failed while sending, or before the answer's head was complete, or the head was malformed.
    Exchange(io::Error),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Connect(e) | SendError::Exchange(e) => write!(f, "{e}"),
        }
    }
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// An open connection to the upstream and what has been read from it and not yet used.
pub(crate) struct Conn {
    io: Box<dyn Io>,
    buf: BytesMut,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn").field("buffered", &self.buf.len()).finish()
    }
}

impl Conn {
    fn new(io: Box<dyn Io>) -> Conn {
        Conn {
            io,
            buf: BytesMut::new(),
        }
    }

    /// Can a kept connection carry another request? Not when the upstream closed it or sent bytes nobody asked
    /// for. While the socket is quiet this costs no system call: tokio knows it has nothing to read.
    fn is_open(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut probe = [0u8; 1];
        let mut probe = ReadBuf::new(&mut probe);
        Pin::new(&mut self.io).poll_read(&mut cx, &mut probe).is_pending()
    }

    /// Reads more into the buffer; `Ok(0)` at the end of the stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < READ / 4 {
            self.buf.reserve(READ);
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.buf)
    }

    /// Writes a request, reading at the same time: an upstream may answer before it has read all of a large body
    /// (a 413, say) and stop reading it, and a write that waited alone would then never end. Returns false when an
    /// answer began to arrive before the request was all written; the rest is not sent.
    async fn write_request(&mut self, wire: &[u8]) -> io::Result<bool> {
        let mut written = 0;
        let complete = std::future::poll_fn(|cx| {
            while written < wire.len() {
                match Pin::new(&mut self.io).poll_write(cx, &wire[written..]) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    Poll::Ready(Ok(n)) => written += n,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    // The upstream is not taking more: has it answered?
                    Poll::Pending => {
                        return match self.poll_fill(cx) {
                            Poll::Ready(Ok(0)) => Poll::Ready(Err(io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                "the upstream closed the connection while the request was being sent",
                            ))),
                            // A final answer has begun: stop sending. An interim one (`100 Continue`, sent
                            // unasked) or a status line not yet whole: keep writing.
                            Poll::Ready(Ok(_)) if self.buf.len() >= 10 && self.buf[9] != b'1' => Poll::Ready(Ok(false)),
                            Poll::Ready(Ok(_)) => continue,
                            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                            Poll::Pending => Poll::Pending,
                        };
                    }
                }
            }
            Poll::Ready(Ok(true))
        })
        .await?;
        if complete {
            self.io.flush().await?;
        }
        Ok(complete)
    }

    async fn fill(&mut self) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_fill(cx)).await
    }
}

/// One client connection's connection to the upstream, kept between its exchanges.
#[derive(Debug, Default)]
pub(crate) struct UpstreamConn {
    kept: Mutex<Option<Conn>>,
}

impl UpstreamConn {
    /// Sends a request, `wire` as [`encode_request`] made it. A request whose writing fails on a kept connection (the
    /// upstream closed it while idle) is sent once more on a new connection, as a pool would; one that was written
    /// is not, even if its answer then fails (it may have been acted on). [`Sent::answer`] then waits for the
    /// answer: what the tap does between the two is off the exchange's path, done while the upstream works.
    pub async fn write(
        self: &Arc<Self>,
        upstream: &Upstream,
        connect_timeout: Duration,
        wire: &[u8],
    ) -> Result<Sent, SendError> {
        let kept = self.take().and_then(|mut c| c.is_open().then_some(c));
        let mut reused = kept.is_some();
        let mut conn = match kept {
            Some(c) => c,
            None => open(upstream, connect_timeout).await?,
        };
        let complete = loop {
            match conn.write_request(wire).await {
                Ok(complete) => break complete,
                Err(_) if reused => {
                    conn = open(upstream, connect_timeout).await?;
                    reused = false;
                }
                Err(e) => return Err(SendError::Exchange(e)),
            }
        };
        Ok(Sent {
            conn,
            complete,
            home: self.clone(),
        })
    }

    fn take(&self) -> Option<Conn> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    fn put(&self, conn: Conn) {
        *self.kept.lock().unwrap_or_else(|e| e.into_inner()) = Some(conn);
    }
}

/// A request written to the upstream, its answer not yet read.
#[derive(Debug)]
pub(crate) struct Sent {
    conn: Conn,
    /// The whole request went out (an answer that came before it did leaves the connection out of step).
    complete: bool,
    home: Arc<UpstreamConn>,
}

impl Sent {
    /// The answer's head, with a body that reads the rest.
    pub async fn answer(self, method: &Method) -> Result<Response<UpstreamBody>, SendError> {
        let Sent {
            mut conn,
            complete,
            home,
        } = self;
        let head = loop {
            match parse_head(&mut conn.buf, method).map_err(SendError::Exchange)? {
                // 1xx answers (103 Early Hints and the like) are not forwarded: the final one follows.
                Some(h) if h.parts.status.is_informational() => continue,
                Some(h) => break h,
                None => {}
            }
            match conn.fill().await {
                Ok(0) => {
                    return Err(SendError::Exchange(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the upstream closed the connection before answering",
                    )));
                }
                Ok(_) => {}
                Err(e) => return Err(SendError::Exchange(e)),
            }
        };
        let body = UpstreamBody::new(conn, head.framing, head.keep_alive && complete, home);
        Ok(Response::from_parts(head.parts, body))
    }
}

async fn open(upstream: &Upstream, connect_timeout: Duration) -> Result<Conn, SendError> {
    let io = upstream.connect(connect_timeout).await.map_err(SendError::Connect)?;
    Ok(Conn::new(io))
}

/// Writes a request head and its body: the client's fields (hop-by-hop ones are gone already) with the upstream's
/// `Host`, the tap added to `Via`, and no `Expect` (the body is here already). The body is whole, so its length is
/// sent as `Content-Length` whatever the client said, except on an empty body of a method whose requests usually
/// have none.
pub(crate) fn encode_request(
    method: &Method,
    target: &str,
    headers: &HeaderMap,
    host: &HeaderValue,
    body: &[u8],
    out: &mut Vec<u8>,
) {
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut line = |name: &[u8], value: &[u8]| {
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    };
    for (name, value) in headers {
        if name != header::HOST && name != header::CONTENT_LENGTH && name != header::EXPECT && name != header::VIA {
            line(name.as_str().as_bytes(), value.as_bytes());
        }
    }
    line(b"host", host.as_bytes());
    line(b"via", &via_with_tap(headers));
    let bodiless = matches!(
        *method,
        Method::GET | Method::HEAD | Method::DELETE | Method::OPTIONS | Method::CONNECT | Method::TRACE
    );
    if !body.is_empty() || !bodiless {
        line(b"content-length", body.len().to_string().as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

/// How a response's body ends (RFC 9112 §6.3).
#[derive(Debug)]
enum Framing {
    /// No body (HEAD, 1xx, 204, 304).
    Empty,
    /// `Content-Length`: this many bytes left.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked(Chunked),
    /// Neither: the body ends when the upstream closes the connection.
    Close,
}

/// A parsed response head.
#[derive(Debug)]
struct Head {
    parts: http::response::Parts,
    framing: Framing,
    keep_alive: bool,
}

/// Parses a response head at the start of `buf` and consumes it; `None` when it is not complete yet.
fn parse_head(buf: &mut BytesMut, method: &Method) -> io::Result<Option<Head>> {
    if buf.is_empty() {
        return Ok(None);
    }
    // Uninitialized slots: initializing a hundred of them cost more than parsing a small head.
    let mut slots = [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(&mut resp, buf, &mut slots) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
            return Err(invalid(format!("response head larger than {} KiB", MAX_HEAD / 1024)));
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(invalid(format!("malformed response head: {e}"))),
    };
    let status = StatusCode::from_u16(resp.code.unwrap_or(0)).map_err(|_| invalid("malformed response status"))?;
    if status == StatusCode::SWITCHING_PROTOCOLS {
        return Err(invalid(
            "101 Switching Protocols to a request that asked for no upgrade",
        ));
    }
    let version = if resp.version == Some(0) {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    // Values are slices of the head's bytes, not copies: note where they are, then take the head out of `buf`. The
    // fields that say how the body ends are read on the way.
    let base = buf.as_ptr() as usize;
    let mut length: Option<u64> = None;
    let (mut te, mut chunked, mut close, mut keep) = (false, false, false, false);
    let mut fields: Vec<(HeaderName, usize, usize)> = Vec::with_capacity(resp.headers.len());
    for h in resp.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| invalid(format!("malformed response header name {:?}", h.name)))?;
        let tokens = || h.value.split(|&b| b == b',').map(<[u8]>::trim_ascii);
        if name == header::CONTENT_LENGTH {
            for t in tokens() {
                let n = content_length(t)?;
                if length.is_some_and(|l| l != n) {
                    return Err(invalid("conflicting Content-Length values"));
                }
                length = Some(n);
            }
        } else if name == header::TRANSFER_ENCODING {
            te = true;
            if let Some(last) = tokens().rfind(|t| !t.is_empty()) {
                chunked = last.eq_ignore_ascii_case(b"chunked");
            }
        } else if name == header::CONNECTION {
            close |= tokens().any(|t| t.eq_ignore_ascii_case(b"close"));
            keep |= tokens().any(|t| t.eq_ignore_ascii_case(b"keep-alive"));
        }
        let start = h.value.as_ptr() as usize - base;
        fields.push((name, start, start + h.value.len()));
    }
    let head = buf.split_to(len).freeze();
    // Room for what the proxy adds (`Via`) without regrowing.
    let mut headers = HeaderMap::with_capacity(fields.len() + 2);
    for (name, start, end) in fields {
        let value = HeaderValue::from_maybe_shared(head.slice(start..end))
            .map_err(|_| invalid(format!("malformed value of response header {name}")))?;
        headers.append(name, value);
    }

    let mut keep_alive = match version {
        Version::HTTP_10 => keep,
        _ => !close,
    };
    let framing = if *method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        Framing::Empty
    } else if te {
        // Both fields: the length is not to be trusted, nor the connection after this answer (RFC 9112 §6.3).
        if headers.remove(header::CONTENT_LENGTH).is_some() {
            keep_alive = false;
        }
        if chunked {
            Framing::Chunked(Chunked::default())
        } else {
            Framing::Close
        }
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        Framing::Close
    };
    if matches!(framing, Framing::Close) {
        keep_alive = false;
    }
    let mut parts = Response::new(()).into_parts().0;
    parts.status = status;
    parts.version = version;
    parts.headers = headers;
    Ok(Some(Head {
        parts,
        framing,
        keep_alive,
    }))
}

/// One `Content-Length` value (a field may list several, which must all be equal, RFC 9110 §8.6).
fn content_length(digits: &[u8]) -> io::Result<u64> {
    (!digits.is_empty() && digits.len() <= 19 && digits.iter().all(u8::is_ascii_digit))
        .then(|| digits.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
        .ok_or_else(|| invalid("malformed Content-Length"))
}

/// An upstream answer's body, read from the connection as it is polled. Read to its end on a connection that may
/// be kept, it gives the connection back to its [`UpstreamConn`]; dropped before that, it closes it.
pub(crate) struct UpstreamBody {
    conn: Option<Conn>,
    framing: Framing,
    keep_alive: bool,
    home: Arc<UpstreamConn>,
    done: bool,
}

impl std::fmt::Debug for UpstreamBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamBody")
            .field("framing", &self.framing)
            .field("done", &self.done)
            .finish()
    }
}

impl UpstreamBody {
    fn new(conn: Conn, framing: Framing, keep_alive: bool, home: Arc<UpstreamConn>) -> UpstreamBody {
        let mut body = UpstreamBody {
            conn: Some(conn),
            framing,
            keep_alive,
            home,
            done: false,
        };
        if matches!(body.framing, Framing::Empty | Framing::Length(0)) {
            body.finish();
        }
        body
    }

    /// The body ended as its framing says: the connection goes back for the next exchange if it may.
    fn finish(&mut self) {
        self.done = true;
        if let Some(conn) = self.conn.take() {
            // Bytes beyond the answer belong to no request of ours: such a connection is out of step.
            if self.keep_alive && conn.buf.is_empty() {
                self.home.put(conn);
            }
        }
    }

    /// The body cannot go on: the connection is closed.
    fn fail(&mut self, e: io::Error) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        self.done = true;
        self.conn = None;
        Poll::Ready(Some(Err(e)))
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<io::Result<Frame<Bytes>>>> {
        let this = self.get_mut();
        loop {
            if this.done {
                return Poll::Ready(None);
            }
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            // What the buffer already holds, then read more.
            let (data, ended) = match &mut this.framing {
                Framing::Empty | Framing::Length(0) => (None, true),
                Framing::Length(left) => {
                    if conn.buf.is_empty() {
                        (None, false)
                    } else {
                        let n = usize::try_from(*left).unwrap_or(usize::MAX).min(conn.buf.len());
                        *left -= n as u64;
                        (Some(conn.buf.split_to(n).freeze()), *left == 0)
                    }
                }
                Framing::Chunked(dec) => match dec.decode(&mut conn.buf) {
                    Ok(Decoded::Data(d)) => (Some(d), false),
                    Ok(Decoded::Done) => (None, true),
                    Ok(Decoded::NeedMore) => (None, false),
                    Err(e) => return this.fail(invalid(e.to_string())),
                },
                Framing::Close => ((!conn.buf.is_empty()).then(|| conn.buf.split().freeze()), false),
            };
            if ended {
                this.finish();
            }
            if let Some(d) = data {
                return Poll::Ready(Some(Ok(Frame::data(d))));
            }
            if ended {
                return Poll::Ready(None);
            }
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match ready!(conn.poll_fill(cx)) {
                Ok(0) if matches!(this.framing, Framing::Close) => {
                    this.keep_alive = false;
                    this.finish();
                }
                Ok(0) => {
                    return this.fail(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the upstream closed the connection before the body ended",
                    ));
                }
                Ok(_) => {}
                Err(e) => return this.fail(e),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        match &self.framing {
            _ if self.done => SizeHint::with_exact(0),
            Framing::Empty => SizeHint::with_exact(0),
            Framing::Length(n) => SizeHint::with_exact(*n),
            Framing::Chunked(_) | Framing::Close => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn head_of(wire: &[u8], method: &Method) -> io::Result<Option<Head>> {
        parse_head(&mut BytesMut::from(wire), method)
    }

    #[test]
    fn requests_carry_their_body_length_the_upstream_host_and_the_tap_in_via() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("tap:1"));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("999"));
        h.insert(header::EXPECT, HeaderValue::from_static("100-continue"));
        h.append("x-a", HeaderValue::from_static("1"));
        h.append("x-a", HeaderValue::from_static("2"));
        let host = HeaderValue::from_static("up:1");
        let mut out = Vec::new();
        encode_request(&Method::POST, "/mcp?k=1", &h, &host, b"{}", &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "POST /mcp?k=1 HTTP/1.1\r\nx-a: 1\r\nx-a: 2\r\nhost: up:1\r\nvia: 1.1 mcptape\r\ncontent-length: 2\r\n\r\n{}"
        );
        let mut h = HeaderMap::new();
        h.append(header::VIA, HeaderValue::from_static("1.0 fred"));
        h.append(header::VIA, HeaderValue::from_static("1.1 p"));
        let mut out = Vec::new();
        encode_request(&Method::GET, "/", &h, &host, b"", &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "GET / HTTP/1.1\r\nhost: up:1\r\nvia: 1.0 fred, 1.1 p, 1.1 mcptape\r\n\r\n"
        );
        let mut out = Vec::new();
        encode_request(&Method::POST, "/", &HeaderMap::new(), &host, b"", &mut out);
        assert!(out.ends_with(b"content-length: 0\r\n\r\n"));
    }

    #[test]
    fn heads_say_how_their_body_ends() {
        let h = head_of(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello",
            &Method::POST,
        )
        .unwrap()
        .unwrap();
        assert!(matches!(h.framing, Framing::Length(5)));
        assert!(h.keep_alive);
        assert_eq!(h.parts.headers["x-a"], "b");
        let h = head_of(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            &Method::GET,
        )
        .unwrap()
        .unwrap();
        assert!(matches!(h.framing, Framing::Chunked(_)));
        assert!(h.keep_alive);
        let h = head_of(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
            &Method::GET,
        )
        .unwrap()
        .unwrap();
        assert!(matches!(h.framing, Framing::Chunked(_)));
        assert!(!h.keep_alive, "both length fields: the connection is not reused");
        assert!(!h.parts.headers.contains_key(header::CONTENT_LENGTH));
        let h = head_of(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n",
            &Method::GET,
        )
        .unwrap()
        .unwrap();
        assert!(matches!(h.framing, Framing::Close));
        assert!(!h.keep_alive);
        let h = head_of(b"HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n", &Method::DELETE)
            .unwrap()
            .unwrap();
        assert!(matches!(h.framing, Framing::Empty));
        let h = head_of(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            &Method::POST,
        )
        .unwrap()
        .unwrap();
        assert!(!h.keep_alive);
        let h = head_of(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", &Method::POST)
            .unwrap()
            .unwrap();
        assert!(!h.keep_alive);
        assert_eq!(h.parts.version, Version::HTTP_10);
        let h = head_of(b"HTTP/1.1 200 OK\r\nContent-Length: 4, 4\r\n\r\n", &Method::POST)
            .unwrap()
            .unwrap();
        assert!(matches!(h.framing, Framing::Length(4)));
        assert!(
            head_of(b"HTTP/1.1 200 OK\r\nContent-Len", &Method::POST)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn malformed_heads_are_errors_that_say_why() {
        for (wire, why) in [
            (
                &b"HTTP/1.1 200 OK\r\nContent-Length: 4, 5\r\n\r\n"[..],
                "conflicting Content-Length values",
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
                "malformed Content-Length",
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\n",
                "malformed Content-Length",
            ),
            (b"HTTP/1.1 101 Switching Protocols\r\n\r\n", "101 Switching Protocols"),
            (b"SMTP ready\r\n\r\n", "malformed response head"),
        ] {
            let e = head_of(wire, &Method::POST).unwrap_err().to_string();
            assert!(e.contains(why), "{e}");
        }
        let mut big = b"HTTP/1.1 200 OK\r\nX-Big: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', MAX_HEAD));
        assert!(
            head_of(&big, &Method::POST)
                .unwrap_err()
                .to_string()
                .contains("larger than")
        );
    }

    proptest! {
        /// A head cut anywhere is incomplete until its last byte, then parses to the same fields; the bytes after it
        /// are left for the body.
        #[test]
        fn a_head_parses_the_same_whatever_arrived_first(cut in 0usize..200, body in proptest::collection::vec(any::<u8>(), 0..40)) {
            let mut wire = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nmcp-session-id: abc\r\n".to_vec();
            wire.extend_from_slice(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
            let head_len = wire.len();
            wire.extend_from_slice(&body);
            let cut = cut % (wire.len() + 1);
            let mut buf = BytesMut::from(&wire[..cut]);
            let first = parse_head(&mut buf, &Method::POST).unwrap();
            prop_assert_eq!(first.is_some(), cut >= head_len);
            buf.extend_from_slice(&wire[cut..]);
            let head = match first {
                Some(h) => h,
                None => {
                    let mut all = BytesMut::from(&wire[..]);
                    let h = parse_head(&mut all, &Method::POST).unwrap().unwrap();
                    buf = all;
                    h
                }
            };
            prop_assert_eq!(&buf[..], &body[..]);
            prop_assert_eq!(&head.parts.headers["mcp-session-id"], "abc");
            prop_assert!(matches!(head.framing, Framing::Length(n) if n == body.len() as u64));
        }
    }
}

//! Response bodies: [`TapBody`] wraps the upstream's body and forwards each of its frames as it arrives, handing
//! a copy to the tap (linkerd's shape). A JSON body becomes one frame when it ends, an event stream one frame per
//! event; the end of the body, an upstream error and a client that goes away each close the exchange.
//!
//! The capture's order is causal: a client can never answer a message that the capture has not seen yet. An event
//! is recorded before it is handed on. A JSON answer's last bytes are handed on first and its frame is recorded at
//! the next poll, which the tap's server makes as soon as they are written, with nothing else run on the tap's
//! thread in between; so the recording is off the answer's path, yet before anything the client sends next.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use hyper::body::{Body, Frame, SizeHint};
use mcptape_datasets::Transport;

use super::client::UpstreamBody;
use super::exchange::Exchange;
use super::lifecycle;
use super::sse::{End, SseTap};
use super::upstream::Upstream;

/// Every response body the tap sends.
#[derive(Debug)]
pub(crate) enum ProxyBody {
    /// A body the tap made (errors) or an empty one.
    Full(Option<Bytes>),
    /// The upstream's body, tapped.
    Tapped(Box<TapBody>),
}

impl ProxyBody {
    pub fn full(b: impl Into<Bytes>) -> ProxyBody {
        let b = b.into();
        ProxyBody::Full((!b.is_empty()).then_some(b))
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        match self.get_mut() {
            ProxyBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            ProxyBody::Tapped(t) => Pin::new(t.as_mut()).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Full(b) => b.is_none(),
            ProxyBody::Tapped(t) => t.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            ProxyBody::Tapped(t) => t.size_hint(),
        }
    }
}

/// How the copy of a body is turned into frames.
#[derive(Debug)]
pub(crate) enum Mode {
    /// One message per body (collected; cut into parts beyond `max`).
    Json(Collect),
    /// One message per event.
    Sse(Box<SseTap>),
    /// Not recorded (a 2xx body that is neither JSON nor an event stream, e.g. a legacy `202 Accepted`).
    Pass,
}

/// A JSON body being copied.
#[derive(Debug)]
pub(crate) struct Collect {
    parts: Vec<Bytes>,
    len: usize,
    max: usize,
    cut: u64,
    cut_bytes: usize,
}

impl Collect {
    pub fn new(max: usize) -> Collect {
        Collect {
            parts: Vec::new(),
            len: 0,
            max: max.max(1),
            cut: 0,
            cut_bytes: 0,
        }
    }

    fn push(&mut self, data: &Bytes, ex: &Exchange) {
        let mut data = data.clone();
        while self.len + data.len() > self.max {
            let room = self.max - self.len;
            self.parts.push(data.split_to(room));
            self.len = self.max;
            let part = self.take();
            self.cut += 1;
            self.cut_bytes += part.len();
            ex.s2c(Transport::Http, None, part, None);
        }
        if !data.is_empty() {
            self.len += data.len();
            self.parts.push(data);
        }
    }

    fn take(&mut self) -> Bytes {
        self.len = 0;
        match self.parts.len() {
            0 => Bytes::new(),
            1 => self.parts.pop().unwrap_or_default(),
            _ => {
                let mut b = BytesMut::with_capacity(self.parts.iter().map(Bytes::len).sum());
                for p in self.parts.drain(..) {
                    b.extend_from_slice(&p);
                }
                b.freeze()
            }
        }
    }

    fn finish(&mut self, end: End, ex: &Exchange) {
        let body = self.take();
        if body.is_empty() && self.cut == 0 {
            status_note(ex);
        } else if !body.is_empty() {
            ex.s2c(Transport::Http, None, body.clone(), None);
        }
        if self.cut > 0 {
            let note = format!(
                "{{\"parts\":{},\"bytes\":{}}}",
                self.cut + u64::from(!body.is_empty()),
                self.cut_bytes + body.len()
            );
            ex.s2c(
                Transport::Http,
                Some(crate::tap::lifecycle::OVERSIZE),
                Bytes::from(note),
                None,
            );
        }
        if end != End::Done {
            let note = format!("{{\"end\":\"{}\"}}", end.as_str());
            ex.s2c(
                Transport::Http,
                Some(crate::tap::lifecycle::EOF),
                Bytes::from(note),
                None,
            );
        }
    }
}

/// Records a response that carries no message (its status and headers): `mcptape/http-response`.
pub(crate) fn status_note(ex: &Exchange) {
    let status = ex.response.get().map_or(0, |r| r.status);
    ex.s2c(
        Transport::Http,
        Some(lifecycle::HTTP_RESPONSE),
        Bytes::from(format!("{{\"status\":{status}}}")),
        None,
    );
}

/// The upstream's response body, forwarded frame by frame with a copy to the tap.
#[derive(Debug)]
pub(crate) struct TapBody {
    inner: UpstreamBody,
    inner_done: bool,
    finished: bool,
    ex: Arc<Exchange>,
    upstream: Arc<Upstream>,
    mode: Mode,
    /// End the session when this body ends (a legacy HTTP+SSE stream is the session).
    close_session: bool,
}

impl TapBody {
    pub fn new(
        inner: UpstreamBody,
        ex: Arc<Exchange>,
        upstream: Arc<Upstream>,
        mode: Mode,
        close_session: bool,
    ) -> TapBody {
        TapBody {
            inner,
            inner_done: false,
            finished: false,
            ex,
            upstream,
            mode,
            close_session,
        }
    }

    fn finish(&mut self, end: End) -> Option<Bytes> {
        if std::mem::replace(&mut self.finished, true) {
            return None;
        }
        let held = match &mut self.mode {
            Mode::Json(c) => {
                c.finish(end, &self.ex);
                None
            }
            Mode::Sse(s) => s.finish(end, &self.ex),
            Mode::Pass => None,
        };
        if self.close_session {
            self.ex.sessions.close(self.ex.session());
        }
        held
    }

    fn is_end_stream(&self) -> bool {
        self.finished
    }

    fn size_hint(&self) -> SizeHint {
        match &self.mode {
            Mode::Sse(s) if s.may_rewrite() => SizeHint::default(),
            _ => self.inner.size_hint(),
        }
    }

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        loop {
            if this.inner_done {
                return Poll::Ready(this.finish(End::Done).map(|b| Ok(Frame::data(b))));
            }
            let frame = match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                None => {
                    this.inner_done = true;
                    continue;
                }
                Some(Err(e)) => {
                    this.inner_done = true;
                    this.finish(End::Error);
                    return Poll::Ready(Some(Err(e)));
                }
                Some(Ok(frame)) => frame,
            };
            let data = match frame.into_data() {
                Ok(d) => d,
                Err(trailers) => return Poll::Ready(Some(Ok(trailers))),
            };
            let mut out = match &mut this.mode {
                Mode::Json(c) => {
                    c.push(&data, &this.ex);
                    Some(data)
                }
                Mode::Sse(s) => s.push(data, &this.ex, &this.upstream),
                Mode::Pass => Some(data),
            };
            if this.inner.is_end_stream() {
                this.inner_done = true;
                // A JSON answer's frame is recorded at the next poll (see the module docs). An event stream may
                // hold bytes back, which go out with its last ones.
                if !matches!(this.mode, Mode::Sse(_)) {
                    match out {
                        Some(d) if !d.is_empty() => return Poll::Ready(Some(Ok(Frame::data(d)))),
                        // Nothing to hand on: record now.
                        _ => continue,
                    }
                }
                if let Some(held) = this.finish(End::Done) {
                    out = Some(match out {
                        Some(o) => [o, held].concat().into(),
                        None => held,
                    });
                }
            }
            match out {
                Some(d) if !d.is_empty() => return Poll::Ready(Some(Ok(Frame::data(d)))),
                _ if this.finished => return Poll::Ready(None),
                _ => continue,
            }
        }
    }
}

impl Drop for TapBody {
    fn drop(&mut self) {
        if !self.finished {
            // hyper drops a body it knows is empty (Content-Length: 0) without polling it: that is no cancel.
            let end = if self.inner_done || self.inner.is_end_stream() {
                End::Done
            } else {
                End::Cancel
            };
            self.finish(end);
        }
    }
}

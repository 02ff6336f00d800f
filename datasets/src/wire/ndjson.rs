//! Incremental NDJSON framing for the stdio transport (and stderr lines).
//!
//! The tap forwards bytes untouched and frames a refcounted copy inline, so framing must be cheap and bounded:
//! lines that lie inside one read are `Bytes::slice`s of it (no copy), only a line split across reads is copied,
//! and a line longer than `max_line` is handed out in parts as it arrives instead of being buffered whole (a
//! server that writes a 2 GiB line must not take the recorder's memory with it).
//!
//! Byte-exact: a payload is everything before its `\n` (a `\r` stays), empty lines are emitted, and the stream is
//! the payloads joined with `\n`, plus a final `\n` unless the last line came from [`NdjsonFramer::finish`].

use bytes::{Bytes, BytesMut};
use memchr::memchr;

/// One framed piece of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// A whole line of at most `max_line` bytes, without its `\n`.
    Line(Bytes),
    /// Part of a line longer than `max_line`; the parts of one line concatenate to it, `last` marks its end.
    Oversize {
        /// The next bytes of the line.
        part: Bytes,
        /// True for the final part (at the line's `\n`, or at EOF).
        last: bool,
    },
}

/// Splits a byte stream into lines, chunk by chunk, keeping only the unfinished line.
#[derive(Debug)]
pub struct NdjsonFramer {
    max_line: usize,
    buf: BytesMut,
    /// The current line already went out as `Oversize` parts.
    oversize: bool,
}

impl NdjsonFramer {
    /// A framer that emits lines longer than `max_line` bytes as `Oversize` parts.
    pub fn new(max_line: usize) -> Self {
        NdjsonFramer {
            max_line,
            buf: BytesMut::new(),
            oversize: false,
        }
    }

    /// Frames `chunk`, calling `f` for every piece that is complete.
    pub fn push(&mut self, chunk: &Bytes, mut f: impl FnMut(Piece)) {
        let mut pos = 0;
        while let Some(rest) = chunk.get(pos..).filter(|r| !r.is_empty()) {
            match memchr(b'\n', rest) {
                Some(k) => {
                    self.end_line(chunk.slice(pos..pos + k), &mut f);
                    pos += k + 1;
                }
                None => {
                    self.partial(chunk.slice(pos..), &mut f);
                    return;
                }
            }
        }
    }

    /// Ends the stream: an unterminated last line is emitted as a `Line` (or the last `Oversize` part).
    pub fn finish(&mut self, mut f: impl FnMut(Piece)) {
        if std::mem::take(&mut self.oversize) {
            f(Piece::Oversize {
                part: Bytes::new(),
                last: true,
            });
        } else if !self.buf.is_empty() {
            f(Piece::Line(self.buf.split().freeze()));
        }
    }

    /// Forgets the unfinished line (its rest was lost upstream of the framer); the next byte starts a new line.
    pub fn abandon(&mut self) {
        self.buf.clear();
        self.oversize = false;
    }

    /// Bytes of the unfinished line held back (never more than `max_line`).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    fn end_line(&mut self, tail: Bytes, f: &mut impl FnMut(Piece)) {
        if std::mem::take(&mut self.oversize) {
            f(Piece::Oversize { part: tail, last: true });
        } else if self.buf.is_empty() {
            f(if tail.len() > self.max_line {
                Piece::Oversize { part: tail, last: true }
            } else {
                Piece::Line(tail)
            });
        } else if self.buf.len() + tail.len() > self.max_line {
            f(Piece::Oversize {
                part: self.buf.split().freeze(),
                last: false,
            });
            f(Piece::Oversize { part: tail, last: true });
        } else {
            self.buf.extend_from_slice(&tail);
            f(Piece::Line(self.buf.split().freeze()));
        }
    }

    fn partial(&mut self, rest: Bytes, f: &mut impl FnMut(Piece)) {
        if self.oversize {
            f(Piece::Oversize {
                part: rest,
                last: false,
            });
        } else if self.buf.len() + rest.len() > self.max_line {
            self.oversize = true;
            if !self.buf.is_empty() {
                f(Piece::Oversize {
                    part: self.buf.split().freeze(),
                    last: false,
                });
            }
            f(Piece::Oversize {
                part: rest,
                last: false,
            });
        } else {
            self.buf.extend_from_slice(&rest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A framed line: its bytes, whether it was oversize, whether it came from `finish`.
    type Framed = (Vec<u8>, bool, bool);

    fn frame(chunks: &[Bytes], max_line: usize) -> Vec<Framed> {
        let mut out: Vec<Framed> = Vec::new();
        let mut open: Option<Vec<u8>> = None;
        let mut framer = NdjsonFramer::new(max_line);
        let mut take = |p: Piece, at_eof: bool| match p {
            Piece::Line(l) => {
                assert!(open.is_none() && l.len() <= max_line);
                out.push((l.to_vec(), false, at_eof));
            }
            Piece::Oversize { part, last } => {
                let line = open.get_or_insert_with(Vec::new);
                line.extend_from_slice(&part);
                if last {
                    let line = open.take().unwrap_or_default();
                    assert!(line.len() > max_line);
                    out.push((line, true, at_eof));
                }
            }
        };
        for c in chunks {
            framer.push(c, |p| take(p, false));
            assert!(framer.buffered() <= max_line);
        }
        framer.finish(|p| take(p, true));
        assert!(open.is_none());
        out
    }

    fn split(stream: &[u8], cuts: &[prop::sample::Index]) -> Vec<Bytes> {
        let whole = Bytes::copy_from_slice(stream);
        let mut at: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
        at.push(0);
        at.push(stream.len());
        at.sort_unstable();
        at.windows(2).map(|w| whole.slice(w[0]..w[1])).collect()
    }

    fn rejoin(lines: &[Framed]) -> Vec<u8> {
        let mut out = Vec::new();
        for (line, _, at_eof) in lines {
            out.extend_from_slice(line);
            if !at_eof {
                out.push(b'\n');
            }
        }
        out
    }

    #[test]
    fn lines_inside_a_chunk_are_not_copied() {
        let chunk = Bytes::from_static(b"{\"a\":1}\r\n\n{}\npartial");
        let mut f = NdjsonFramer::new(64);
        let mut lines = Vec::new();
        f.push(&chunk, |p| lines.push(p));
        assert_eq!(
            lines,
            [
                Piece::Line(Bytes::from_static(b"{\"a\":1}\r")),
                Piece::Line(Bytes::new()),
                Piece::Line("{}".into())
            ]
        );
        if let Piece::Line(l) = &lines[0] {
            assert_eq!(l.as_ptr(), chunk.as_ptr());
        }
        assert_eq!(f.buffered(), 7);
        f.push(&Bytes::from_static(b" line\n"), |p| lines.push(p));
        assert_eq!(lines.last(), Some(&Piece::Line("partial line".into())));
        f.finish(|_| panic!("nothing left"));
    }

    #[test]
    fn oversize_lines_stream_out_in_parts() {
        let mut f = NdjsonFramer::new(4);
        let mut got = Vec::new();
        f.push(&"ab".into(), |p| got.push(p));
        f.push(&"cdef".into(), |p| got.push(p));
        assert_eq!(f.buffered(), 0);
        f.push(&"gh\nxy".into(), |p| got.push(p));
        f.finish(|p| got.push(p));
        let part = |s: &'static str, last| Piece::Oversize { part: s.into(), last };
        assert_eq!(
            got,
            [
                part("ab", false),
                part("cdef", false),
                part("gh", true),
                Piece::Line("xy".into())
            ]
        );
        let mut eof = Vec::new();
        f.push(&"123456".into(), |p| eof.push(p));
        f.finish(|p| eof.push(p));
        assert_eq!(eof, [part("123456", false), part("", true)]);
    }

    proptest! {
        #[test]
        fn chunking_does_not_change_the_lines(
            stream in prop::collection::vec(prop::sample::select(b"ab{}\r\n\n\xff\xc3\"".to_vec()), 0..200),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
            max_line in 0usize..24,
        ) {
            let one = frame(&[Bytes::copy_from_slice(&stream)], max_line);
            let many = frame(&split(&stream, &cuts), max_line);
            prop_assert_eq!(&one, &many);
            prop_assert_eq!(rejoin(&many), stream.clone());
            let plain: Vec<u8> = one.iter().map(|l| l.0.clone()).collect::<Vec<_>>().join(&b'\n');
            let expect = stream.strip_suffix(b"\n").unwrap_or(&stream);
            prop_assert_eq!(plain.as_slice(), expect);
        }

        #[test]
        fn arbitrary_bytes_frame_exactly(
            stream in prop::collection::vec(any::<u8>(), 0..300),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            let lines = frame(&split(&stream, &cuts), 16);
            prop_assert_eq!(rejoin(&lines), stream);
        }
    }
}

//! The `chunked` transfer coding of HTTP/1.1 (RFC 9112 §7.1), decoded from a buffer that grows as bytes arrive.
//!
//! A decoder that never blocks and owns no socket: [`Chunked::decode`] takes what the buffer holds and says
//! whether it needs more, so the same code serves a body read on a task and a test that feeds bytes one at a time.
//! Chunk extensions and trailer fields are read and dropped (the tap forwards neither); every line is bounded, so
//! a hostile upstream cannot make the tap hold more than [`MAX_LINE`] bytes of one.

use bytes::{Buf, Bytes, BytesMut};

/// The longest chunk-size line (size, extensions) or trailer line accepted.
pub(crate) const MAX_LINE: usize = 8 * 1024;
/// The most trailer bytes accepted after the last chunk.
const MAX_TRAILERS: usize = 64 * 1024;

/// What [`Chunked::decode`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decoded {
    /// Body bytes (never empty).
    Data(Bytes),
    /// The buffer holds no complete piece: read more and call again.
    NeedMore,
    /// The last chunk and the trailers were read: the body is complete.
    Done,
}

/// Why a chunked body is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed chunked body: {0}")]
pub(crate) struct ChunkError(pub &'static str);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk's data, this many bytes left.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer lines until an empty one; the bytes of trailers read so far.
    Trailers(usize),
    Done,
}

/// A decoder's position in a chunked body.
#[derive(Debug, Clone)]
pub(crate) struct Chunked {
    state: State,
}

impl Default for Chunked {
    fn default() -> Self {
        Chunked { state: State::Size }
    }
}

impl Chunked {
    /// Has the whole body been read?
    #[cfg(test)]
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Takes the next piece of the body out of `buf` (consuming what it decodes).
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, ChunkError> {
        loop {
            match self.state {
                State::Done => return Ok(Decoded::Done),
                State::Size => {
                    let Some(line) = take_line(buf)? else {
                        return Ok(Decoded::NeedMore);
                    };
                    let size = parse_size(&line)?;
                    self.state = if size == 0 {
                        State::Trailers(0)
                    } else {
                        State::Data(size)
                    };
                }
                State::Data(left) => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    let data = buf.split_to(n).freeze();
                    let left = left - n as u64;
                    self.state = if left == 0 { State::DataEnd } else { State::Data(left) };
                    return Ok(Decoded::Data(data));
                }
                State::DataEnd => {
                    if buf.len() < 2 {
                        if buf.first().is_some_and(|&b| b != b'\r') {
                            return Err(ChunkError("chunk data not followed by CRLF"));
                        }
                        return Ok(Decoded::NeedMore);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(ChunkError("chunk data not followed by CRLF"));
                    }
                    buf.advance(2);
                    self.state = State::Size;
                }
                State::Trailers(seen) => {
                    let Some(line) = take_line(buf)? else {
                        return Ok(Decoded::NeedMore);
                    };
                    if line.is_empty() {
                        self.state = State::Done;
                        return Ok(Decoded::Done);
                    }
                    let seen = seen + line.len() + 2;
                    if seen > MAX_TRAILERS {
                        return Err(ChunkError("trailers too large"));
                    }
                    self.state = State::Trailers(seen);
                }
            }
        }
    }
}

/// Takes one CRLF-terminated line out of `buf` (without its CRLF); `None` when no full line is there yet.
fn take_line(buf: &mut BytesMut) -> Result<Option<BytesMut>, ChunkError> {
    match memchr::memchr(b'\n', buf) {
        Some(i) => {
            if i == 0 || buf[i - 1] != b'\r' {
                return Err(ChunkError("line not ended by CRLF"));
            }
            if i > MAX_LINE {
                return Err(ChunkError("line too long"));
            }
            let mut line = buf.split_to(i + 1);
            line.truncate(i - 1);
            Ok(Some(line))
        }
        None if buf.len() > MAX_LINE => Err(ChunkError("line too long")),
        None => Ok(None),
    }
}

/// `chunk-size [ chunk-ext ]`: hex digits, then optionally `;` and extensions (ignored); optional whitespace before
/// the `;` is tolerated, as most servers do.
fn parse_size(line: &[u8]) -> Result<u64, ChunkError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(ChunkError("missing chunk size"));
    }
    if digits > 15 {
        return Err(ChunkError("chunk size too large"));
    }
    let rest = &line[digits..];
    let rest = &rest[rest.iter().take_while(|&&b| b == b' ' || b == b'\t').count()..];
    if !rest.is_empty() && rest[0] != b';' {
        return Err(ChunkError("invalid chunk size"));
    }
    let mut size = 0u64;
    for &b in &line[..digits] {
        let d = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => b - b'A' + 10,
        };
        size = size * 16 + u64::from(d);
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Feeds `wire` in pieces cut at `cuts` and returns the body, or the first error.
    fn decode_in_pieces(wire: &[u8], cuts: &[usize]) -> Result<(Vec<u8>, bool, usize), ChunkError> {
        let mut dec = Chunked::default();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut at = 0;
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
        points.sort_unstable();
        points.push(wire.len());
        for p in points {
            buf.extend_from_slice(&wire[at..p.max(at)]);
            at = p.max(at);
            loop {
                match dec.decode(&mut buf)? {
                    Decoded::Data(d) => {
                        assert!(!d.is_empty());
                        out.extend_from_slice(&d);
                    }
                    Decoded::NeedMore => break,
                    Decoded::Done => return Ok((out, true, buf.len())),
                }
            }
        }
        Ok((out, dec.is_done(), buf.len()))
    }

    fn encode(chunks: &[Vec<u8>], ext: bool, trailers: bool) -> Vec<u8> {
        let mut w = Vec::new();
        for c in chunks.iter().filter(|c| !c.is_empty()) {
            w.extend_from_slice(format!("{:X}", c.len()).as_bytes());
            if ext {
                w.extend_from_slice(b";name=\"v\"");
            }
            w.extend_from_slice(b"\r\n");
            w.extend_from_slice(c);
            w.extend_from_slice(b"\r\n");
        }
        w.extend_from_slice(b"0\r\n");
        if trailers {
            w.extend_from_slice(b"x-checksum: 1\r\n");
        }
        w.extend_from_slice(b"\r\n");
        w
    }

    proptest! {
        #[test]
        fn any_chunking_cut_anywhere_decodes_to_the_body(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..8),
            cuts in proptest::collection::vec(any::<usize>(), 0..12),
            ext in any::<bool>(),
            trailers in any::<bool>(),
            tail in proptest::collection::vec(any::<u8>(), 0..4),
        ) {
            let mut wire = encode(&chunks, ext, trailers);
            let body_end = wire.len();
            wire.extend_from_slice(&tail);
            let (out, done, left) = decode_in_pieces(&wire, &cuts).unwrap();
            prop_assert!(done);
            prop_assert_eq!(out, chunks.concat());
            // Bytes after the body stay in the buffer (they belong to no message: the caller must not reuse).
            prop_assert!(left <= wire.len() - body_end);
        }

        #[test]
        fn a_truncated_body_is_never_done(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..100), 1..5),
            cut in any::<usize>(),
        ) {
            let wire = encode(&chunks, false, false);
            let end = cut % wire.len();
            let (_, done, _) = decode_in_pieces(&wire[..end], &[]).unwrap();
            prop_assert!(!done);
        }

        #[test]
        fn arbitrary_bytes_never_panic(wire in proptest::collection::vec(any::<u8>(), 0..200), cuts in proptest::collection::vec(any::<usize>(), 0..6)) {
            let _ = decode_in_pieces(&wire, &cuts);
        }
    }

    #[test]
    fn malformed_bodies_are_errors() {
        for (wire, why) in [
            (&b"zz\r\n"[..], "missing chunk size"),
            (b"5x\r\n", "invalid chunk size"),
            (b"3\r\nabcX", "chunk data not followed by CRLF"),
            (b"3\nabc", "line not ended by CRLF"),
            (b"1000000000000000\r\n", "chunk size too large"),
        ] {
            let err = decode_in_pieces(wire, &[]).unwrap_err();
            assert_eq!(err.0, why, "{:?}", String::from_utf8_lossy(wire));
        }
        let long = vec![b'1'; MAX_LINE + 1];
        assert_eq!(decode_in_pieces(&long, &[]).unwrap_err().0, "line too long");
        let mut ext = b"1;".to_vec();
        ext.extend(std::iter::repeat_n(b'a', MAX_LINE + 1));
        assert_eq!(decode_in_pieces(&ext, &[]).unwrap_err().0, "line too long");
    }

    #[test]
    fn sizes_are_hex_and_extensions_are_ignored() {
        let (out, done, _) = decode_in_pieces(b"a ; x=1\r\n0123456789\r\n0\r\n\r\n", &[]).unwrap();
        assert!(done);
        assert_eq!(out, b"0123456789");
    }
}

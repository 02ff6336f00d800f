//! NDJSON byte streams (stdio, unix sockets) framed on the writer thread.
//!
//! A relay thread hands the tap each chunk it read as one queue entry, just before writing it on: one clock read,
//! one lock and one send per read instead of per message, so the relay costs about what a plain byte relay costs.
//! The writer splits the chunks into messages with one [`NdjsonFramer`] per stream.
//!
//! When the queue is full a whole chunk is dropped, so the stream the writer sees has a hole that may cut lines.
//! The relay side ([`ChunkLoss`]) counts the messages the hole cost (each line that cannot be recorded whole,
//! once) and tells the writer, with the next chunk it queues, how to resynchronise ([`Resync`]): forget the
//! unfinished line it holds and, when the hole ended inside a line, skip to the next `\n`.

use foldhash::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use mcptape_datasets::Direction;
use mcptape_datasets::wire::ndjson::{NdjsonFramer, Piece};
use memchr::{memchr, memchr_iter};

use super::{Observed, lifecycle};

/// A chunk of an NDJSON byte stream as a relay read it, for the writer to frame.
#[derive(Debug)]
pub struct Chunk {
    /// The stamp of the read; `payload` is the bytes read.
    pub obs: Observed,
    /// Messages longer than this are recorded in parts.
    pub max_frame: usize,
    /// Set on the first chunk queued after dropped ones.
    pub resync: Option<Resync>,
    /// The stream ended (an empty chunk that is never dropped, so an unterminated last line is recorded and a
    /// loss at the very end is known).
    pub end: bool,
}

/// How the writer picks the stream up again after chunks were dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resync {
    /// The last dropped chunk ended inside a line: the next chunk starts with that line's tail.
    pub skip: bool,
}

/// Relay-side bookkeeping of dropped chunks, one per stream.
#[derive(Debug, Default)]
pub struct ChunkLoss {
    pending: Option<Resync>,
    /// The line in progress was already counted as lost.
    line_counted: bool,
}

impl ChunkLoss {
    /// What the next queued chunk must carry.
    pub fn resync(&self) -> Option<Resync> {
        self.pending
    }

    /// `chunk` reached the queue.
    pub fn queued(&mut self, chunk: &[u8]) {
        self.pending = None;
        // A chunk without a newline, while the writer skips a lost line, leaves that line still lost.
        if memchr(b'\n', chunk).is_some() {
            self.line_counted = false;
        }
    }

    /// `chunk` was dropped: returns the messages lost with it (each counted once, however many chunks it spans).
    pub fn dropped(&mut self, chunk: &[u8]) -> u64 {
        let ends = memchr_iter(b'\n', chunk).count() as u64;
        // The first newline ends a line already counted.
        let mut lost = if self.line_counted {
            ends.saturating_sub(1)
        } else {
            ends
        };
        let mid_line = chunk.last().is_some_and(|&b| b != b'\n');
        if mid_line {
            if ends > 0 || !self.line_counted {
                lost += 1;
            }
            self.line_counted = true;
        } else if ends > 0 {
            self.line_counted = false;
        }
        self.pending = Some(Resync { skip: mid_line });
        lost
    }
}

/// What the writer records from a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Out {
    /// A message (or a part of one longer than the frame limit).
    Message(Bytes),
    /// An oversize message ended: payload `{"parts":N,"bytes":M}` (with `"truncated":true` if its end was lost).
    OversizeNote(Bytes),
}

/// Writer-side framing of one stream.
#[derive(Debug)]
pub struct StreamFramer {
    framer: NdjsonFramer,
    skipping: bool,
    oversize: Oversize,
}

/// The parts of an oversize message recorded so far.
#[derive(Debug, Default)]
struct Oversize {
    parts: u64,
    bytes: usize,
}

impl StreamFramer {
    /// A stream whose messages longer than `max_frame` bytes are recorded in parts.
    pub fn new(max_frame: usize) -> Self {
        StreamFramer {
            framer: NdjsonFramer::new(max_frame),
            skipping: false,
            oversize: Oversize::default(),
        }
    }

    /// Frames the next chunk of the stream.
    pub fn push(&mut self, chunk: &Bytes, resync: Option<Resync>, out: &mut Vec<Out>) {
        let mut chunk = chunk.clone();
        if let Some(r) = resync {
            self.framer.abandon();
            self.oversize.end(true, out);
            self.skipping = r.skip;
        }
        if self.skipping {
            match memchr(b'\n', &chunk) {
                Some(k) => {
                    self.skipping = false;
                    chunk = chunk.slice(k + 1..);
                }
                None => return,
            }
        }
        let oversize = &mut self.oversize;
        self.framer.push(&chunk, |p| oversize.piece(p, out));
    }

    /// The stream ended: its unterminated last line, if any.
    pub fn finish(&mut self, out: &mut Vec<Out>) {
        if !self.skipping {
            let oversize = &mut self.oversize;
            self.framer.finish(|p| oversize.piece(p, out));
        }
    }
}

impl Oversize {
    fn piece(&mut self, p: Piece, out: &mut Vec<Out>) {
        match p {
            Piece::Line(line) => out.push(Out::Message(line)),
            Piece::Oversize { part, last } => {
                self.parts += 1;
                self.bytes += part.len();
                out.push(Out::Message(part));
                if last {
                    self.end(false, out);
                }
            }
        }
    }

    fn end(&mut self, truncated: bool, out: &mut Vec<Out>) {
        if self.parts == 0 {
            return;
        }
        let cut = if truncated { ",\"truncated\":true" } else { "" };
        let note = format!("{{\"parts\":{},\"bytes\":{}{cut}}}", self.parts, self.bytes);
        out.push(Out::OversizeNote(Bytes::from(note)));
        *self = Oversize::default();
    }
}

/// The writer's open streams, by session and direction.
#[derive(Debug, Default)]
pub(super) struct Streams {
    open: HashMap<(Arc<str>, Direction), (StreamFramer, Observed)>,
    out: Vec<Out>,
}

impl Streams {
    /// Frames `chunk` and hands every message in it to `emit`, stamped with the chunk's read.
    pub fn push(&mut self, chunk: Chunk, emit: &mut impl FnMut(Observed)) {
        let Chunk {
            mut obs,
            max_frame,
            resync,
            end,
        } = chunk;
        let bytes = std::mem::take(&mut obs.payload);
        let key = (obs.session.clone(), obs.direction);
        let (framer, last) = self
            .open
            .entry(key)
            .or_insert_with(|| (StreamFramer::new(max_frame), obs.clone()));
        framer.push(&bytes, resync, &mut self.out);
        *last = obs;
        Self::drain(&mut self.out, last, emit);
        if end {
            let (session, direction) = (last.session.clone(), last.direction);
            self.finish(&session, direction, emit);
        }
    }

    /// The stream of `session` in `direction` ended.
    fn finish(&mut self, session: &Arc<str>, direction: Direction, emit: &mut impl FnMut(Observed)) {
        if let Some((mut framer, last)) = self.open.remove(&(session.clone(), direction)) {
            framer.finish(&mut self.out);
            Self::drain(&mut self.out, &last, emit);
        }
    }

    /// Ends every stream of `session` (or of every session) whose end never came (a relay thread that never
    /// finished).
    pub fn finish_all(&mut self, session: Option<&Arc<str>>, emit: &mut impl FnMut(Observed)) {
        let keys: Vec<_> = (self.open.keys())
            .filter(|(s, _)| session.is_none_or(|x| x == s))
            .cloned()
            .collect();
        for (s, d) in keys {
            self.finish(&s, d, emit);
        }
    }

    fn drain(out: &mut Vec<Out>, stamp: &Observed, emit: &mut impl FnMut(Observed)) {
        for o in out.drain(..) {
            let (payload, lifecycle) = match o {
                Out::Message(m) => (m, None),
                Out::OversizeNote(n) => (n, Some(lifecycle::OVERSIZE)),
            };
            emit(Observed {
                payload,
                lifecycle,
                ..stamp.clone()
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Runs `stream`, cut at `cuts`, through a relay that drops the chunks `drop` says: the messages recorded and
    /// the messages counted lost.
    fn relay(stream: &[u8], cuts: &[usize], drop: &[bool], max: usize) -> (Vec<Out>, u64) {
        let whole = Bytes::copy_from_slice(stream);
        let mut at: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
        at.extend([0, stream.len()]);
        at.sort_unstable();
        at.dedup();
        let (mut loss, mut framer) = (ChunkLoss::default(), StreamFramer::new(max));
        let (mut out, mut lost) = (Vec::new(), 0);
        for (i, w) in at.windows(2).enumerate() {
            let chunk = whole.slice(w[0]..w[1]);
            if drop.get(i).copied().unwrap_or(false) {
                lost += loss.dropped(&chunk);
            } else {
                framer.push(&chunk, loss.resync(), &mut out);
                loss.queued(&chunk);
            }
        }
        // The end of the stream carries a loss at its very end.
        framer.push(&Bytes::new(), loss.resync(), &mut out);
        framer.finish(&mut out);
        (out, lost)
    }

    fn messages(out: &[Out]) -> Vec<&[u8]> {
        out.iter()
            .filter_map(|o| match o {
                Out::Message(m) => Some(&m[..]),
                Out::OversizeNote(_) => None,
            })
            .collect()
    }

    #[test]
    fn a_drop_inside_a_line_loses_that_line_once() {
        let s = b"{\"a\":1}\n{\"b\":22222222}\n{\"c\":3}\n";
        // Chunks: `{"a":1}\n{"b"` | `:2222` | `2222}\n{"c":3}\n`; the middle one is dropped.
        let (out, lost) = relay(s, &[12, 17], &[false, true, false], 1 << 20);
        assert_eq!(messages(&out), [&b"{\"a\":1}"[..], b"{\"c\":3}"]);
        assert_eq!(lost, 1);
    }

    #[test]
    fn a_drop_at_a_line_boundary_keeps_the_next_line() {
        let s = b"one\ntwo\nthree\n";
        let (out, lost) = relay(s, &[4, 8], &[false, true, false], 1 << 20);
        assert_eq!(messages(&out), [&b"one"[..], b"three"]);
        assert_eq!(lost, 1);
    }

    #[test]
    fn an_oversize_message_cut_by_a_drop_is_noted_as_truncated() {
        let s = b"0123456789abcdef\nok\n";
        let (out, lost) = relay(s, &[6, 12], &[false, true, false], 4);
        assert_eq!(
            out,
            [
                Out::Message(Bytes::from_static(b"012345")),
                Out::OversizeNote(Bytes::from_static(b"{\"parts\":1,\"bytes\":6,\"truncated\":true}")),
                Out::Message(Bytes::from_static(b"ok")),
            ]
        );
        assert_eq!(lost, 1);
        let (whole, lost) = relay(s, &[6, 12], &[], 4);
        assert_eq!(lost, 0);
        assert_eq!(
            whole[3..],
            [
                Out::OversizeNote(Bytes::from_static(b"{\"parts\":3,\"bytes\":16}")),
                Out::Message(Bytes::from_static(b"ok")),
            ]
        );
    }

    proptest! {
        /// Every line is either recorded whole and unchanged, or counted lost exactly once.
        #[test]
        fn recorded_plus_lost_is_every_line(
            lines in prop::collection::vec(prop::collection::vec(prop::sample::select(b"ab{}\"".to_vec()), 0..20), 0..12),
            newline_at_end in any::<bool>(),
            cuts in prop::collection::vec(any::<usize>(), 0..10),
            drop in prop::collection::vec(any::<bool>(), 0..12),
        ) {
            let mut stream = lines.join(&b'\n');
            if newline_at_end && !lines.is_empty() {
                stream.push(b'\n');
            }
            let total = if stream.is_empty() { 0 } else { stream.split(|&b| b == b'\n').count() - usize::from(stream.ends_with(b"\n")) };
            let (out, lost) = relay(&stream, &cuts, &drop, 1 << 20);
            let rec = messages(&out);
            prop_assert_eq!(rec.len() as u64 + lost, total as u64);
            // What was recorded is a subsequence of the lines sent, each unchanged.
            let mut sent = stream.split(|&b| b == b'\n');
            for m in &rec {
                prop_assert!(sent.any(|l| l == *m), "recorded {:?}, not a line sent at that point", m);
            }
            if !drop.iter().take(cuts.len() + 1).any(|&d| d) {
                prop_assert_eq!(lost, 0);
            }
        }
    }
}

//! Incremental server-sent events decoding, per the WHATWG "event stream interpretation".
//!
//! Streamable HTTP responses and GET streams (and the legacy HTTP+SSE transport) carry JSON-RPC messages in SSE
//! `data`. The tap sees the body in arbitrary reads, so the decoder is a push parser that keeps only the
//! unfinished line and event: a `\r\n` split across reads, a BOM split across reads and a multi-line `data` all
//! decode the same as in one read. It follows the browser algorithm rather than a looser reading because replay
//! and resume (`Last-Event-ID`) must see the ids a browser would: the last event id persists across events and
//! an event without data is not dispatched. Memory is bounded by `max_event`; larger events are cut and flagged.

use memchr::{memchr, memchr2};

/// One dispatched event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event` field, when set and non-empty (the spec's default type is `message`).
    pub event: Option<String>,
    /// The `data` lines joined with `\n`.
    pub data: String,
    /// The `id` field seen in this event, if any (an id containing NUL is ignored, per spec).
    pub id: Option<String>,
    /// The stream's last event id when this event was dispatched (`None` while unset or empty).
    pub last_event_id: Option<String>,
    /// The `retry` field seen in this event.
    pub retry: Option<u64>,
    /// Some of the event's bytes beyond `max_event` were dropped.
    pub truncated: bool,
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Decodes an SSE byte stream into events, chunk by chunk.
#[derive(Debug)]
pub struct SseDecoder {
    max_event: usize,
    /// Bytes seen while they could still be a BOM; `None` once the stream start is past.
    start: Option<Vec<u8>>,
    line: Vec<u8>,
    /// Length of the current line including the bytes dropped beyond the cap.
    line_len: usize,
    /// The previous chunk ended in `\r`: a leading `\n` belongs to that line end.
    after_cr: bool,
    event: String,
    data: String,
    has_data: bool,
    id: Option<String>,
    event_retry: Option<u64>,
    truncated: bool,
    last_event_id: String,
    retry: Option<u64>,
    comments: u64,
    /// Bytes of field lines of the event being built (terminators count as one byte).
    pending: usize,
    discarded: usize,
}

impl SseDecoder {
    /// A decoder that keeps at most `max_event` bytes of one event's data.
    pub fn new(max_event: usize) -> Self {
        SseDecoder {
            max_event,
            start: Some(Vec::new()),
            line: Vec::new(),
            line_len: 0,
            after_cr: false,
            event: String::new(),
            data: String::new(),
            has_data: false,
            id: None,
            event_retry: None,
            truncated: false,
            last_event_id: String::new(),
            retry: None,
            comments: 0,
            pending: 0,
            discarded: 0,
        }
    }

    /// Decodes `chunk`, calling `f` for every event dispatched by it.
    pub fn push(&mut self, chunk: &[u8], mut f: impl FnMut(SseEvent)) {
        let mut chunk = chunk;
        if let Some(seen) = &mut self.start {
            while seen.len() < BOM.len() && BOM.starts_with(seen) {
                let Some((&b, rest)) = chunk.split_first() else { return };
                seen.push(b);
                chunk = rest;
            }
            let seen = self.start.take().unwrap_or_default();
            if seen != BOM {
                self.feed(&seen, &mut f);
            }
        }
        self.feed(chunk, &mut f);
    }

    /// Ends the stream. Per spec an unfinished event is discarded, not dispatched: see [`Self::discarded_tail`].
    pub fn finish(&mut self, _f: impl FnMut(SseEvent)) {
        let partial = match (self.start.take(), self.line.first()) {
            (Some(seen), _) => seen.len(),
            (None, Some(b':')) => 0,
            (None, _) => self.line_len,
        };
        self.discarded = self.pending + partial;
        self.line.clear();
        self.line_len = 0;
        self.after_cr = false;
        self.reset_event();
    }

    /// Bytes of the unfinished event that [`Self::finish`] discarded (comment lines not counted).
    pub fn discarded_tail(&self) -> usize {
        self.discarded
    }

    /// Comment lines seen so far (servers send them as keep-alives).
    pub fn comments(&self) -> u64 {
        self.comments
    }

    /// The stream's last event id (what a reconnect sends as `Last-Event-ID`), even if no event was dispatched.
    pub fn last_event_id(&self) -> Option<&str> {
        Some(self.last_event_id.as_str()).filter(|s| !s.is_empty())
    }

    /// The latest valid `retry` value, even if its event was not dispatched.
    pub fn retry(&self) -> Option<u64> {
        self.retry
    }

    fn line_cap(&self) -> usize {
        // Room for the field name and colon on top of the data itself.
        self.max_event.saturating_add(64)
    }

    fn feed(&mut self, bytes: &[u8], f: &mut impl FnMut(SseEvent)) {
        let mut rest = bytes;
        if let Some(&first) = rest.first() {
            if std::mem::take(&mut self.after_cr) && first == b'\n' {
                rest = &rest[1..];
            }
        }
        while !rest.is_empty() {
            let Some(k) = memchr2(b'\r', b'\n', rest) else {
                self.append(rest);
                return;
            };
            self.append(&rest[..k]);
            let cr = rest[k] == b'\r';
            rest = &rest[k + 1..];
            if cr {
                match rest.first() {
                    Some(b'\n') => rest = &rest[1..],
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
            self.end_line(f);
        }
    }

    fn append(&mut self, bytes: &[u8]) {
        self.line_len += bytes.len();
        let room = self.line_cap().saturating_sub(self.line.len());
        self.line.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    fn end_line(&mut self, f: &mut impl FnMut(SseEvent)) {
        let line = std::mem::take(&mut self.line);
        let len = std::mem::take(&mut self.line_len);
        if len == 0 {
            self.dispatch(f);
        } else if line.first() == Some(&b':') {
            self.comments += 1;
        } else {
            self.pending += len + 1;
            let cut = len > line.len();
            let (field, value) = match memchr(b':', &line) {
                Some(c) => (&line[..c], line[c + 1..].strip_prefix(b" ").unwrap_or(&line[c + 1..])),
                None => (&line[..], &[][..]),
            };
            match field {
                b"event" => {
                    self.event = String::from_utf8_lossy(value).into_owned();
                    self.truncated |= cut;
                }
                b"data" => self.add_data(value, cut),
                b"id" if !value.contains(&0) => {
                    self.last_event_id = String::from_utf8_lossy(value).into_owned();
                    self.id = Some(self.last_event_id.clone());
                    self.truncated |= cut;
                }
                b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                    if let Some(n) = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok()) {
                        self.event_retry = Some(n);
                        self.retry = Some(n);
                    }
                }
                _ => {}
            }
            // Keep the line's allocation for the next line.
            self.line = line;
            self.line.clear();
        }
    }

    fn add_data(&mut self, value: &[u8], cut: bool) {
        let value = String::from_utf8_lossy(value);
        let sep = usize::from(self.has_data);
        let room = self.max_event.saturating_sub(self.data.len() + sep);
        if self.has_data && room > 0 {
            self.data.push('\n');
        }
        self.has_data = true;
        let mut keep = value.len().min(room);
        while !value.is_char_boundary(keep) {
            keep -= 1;
        }
        self.data.push_str(&value[..keep]);
        self.truncated |= cut || keep < value.len() || (sep == 1 && room == 0);
    }

    fn dispatch(&mut self, f: &mut impl FnMut(SseEvent)) {
        self.pending = 0;
        if !self.has_data {
            self.reset_event();
            return;
        }
        let event = SseEvent {
            event: Some(std::mem::take(&mut self.event)).filter(|e| !e.is_empty()),
            data: std::mem::take(&mut self.data),
            id: self.id.take(),
            last_event_id: self.last_event_id().map(str::to_owned),
            retry: self.event_retry.take(),
            truncated: self.truncated,
        };
        self.reset_event();
        f(event);
    }

    fn reset_event(&mut self) {
        self.event.clear();
        self.data.clear();
        self.has_data = false;
        self.id = None;
        self.event_retry = None;
        self.truncated = false;
        self.pending = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode(chunks: &[&[u8]], max_event: usize) -> (Vec<SseEvent>, u64, usize) {
        let mut d = SseDecoder::new(max_event);
        let mut out = Vec::new();
        for c in chunks {
            d.push(c, |e| out.push(e));
        }
        d.finish(|e| out.push(e));
        (out, d.comments(), d.discarded_tail())
    }

    fn ev(data: &str) -> SseEvent {
        SseEvent {
            data: data.into(),
            ..SseEvent::default()
        }
    }

    #[test]
    fn spec_examples() {
        let (e, ..) = decode(&[b"data: YHOO\ndata: +2\ndata: 10\n\n"], 1024);
        assert_eq!(e, [ev("YHOO\n+2\n10")]);
        let stream = b": test stream\n\ndata: first event\nid: 1\n\ndata:second event\nid\n\ndata:  third event\n\n";
        let (e, comments, tail) = decode(&[stream], 1024);
        let first = SseEvent {
            id: Some("1".into()),
            last_event_id: Some("1".into()),
            ..ev("first event")
        };
        let second = SseEvent {
            id: Some(String::new()),
            ..ev("second event")
        };
        assert_eq!(e, [first, second, ev(" third event")]);
        assert_eq!((comments, tail), (1, 0));
        let (e, _, tail) = decode(&[b"data\n\ndata\ndata\n\ndata:"], 1024);
        assert_eq!(e, [ev(""), ev("\n")]);
        assert_eq!(tail, 5);
    }

    #[test]
    fn fields_and_line_ends() {
        let stream = b"event: message\r\nid: 7\rretry: 1500\ndata: {\"a\":1}\r\n\r\n";
        let expect = SseEvent {
            event: Some("message".into()),
            data: "{\"a\":1}".into(),
            id: Some("7".into()),
            last_event_id: Some("7".into()),
            retry: Some(1500),
            truncated: false,
        };
        assert_eq!(decode(&[stream], 1024).0, std::slice::from_ref(&expect));
        // `\r` | `\n` split across chunks is one line end, not a blank line.
        let (a, b) = stream.split_at(16);
        assert_eq!(decode(&[a, b"", b], 1024).0, [expect]);
        let (e, ..) = decode(&[b"data: x\r", b"\n", b"data: y\r", b"\r"], 1024);
        assert_eq!(e, [ev("x\ny")]);
        // Invalid retry, NUL in id, unknown fields and a space-less colon.
        let (e, ..) = decode(&[b"retry: 1x\nid: a\0b\nfoo: bar\ndata:z\n\n"], 1024);
        assert_eq!(e, [ev("z")]);
    }

    #[test]
    fn last_event_id_persists_and_empty_events_still_set_it() {
        let mut d = SseDecoder::new(1024);
        let mut out = Vec::new();
        d.push(b"id: 1\nretry: 10\n\n: keep-alive\n\ndata: a\n\n", |e| out.push(e));
        assert_eq!(
            out,
            [SseEvent {
                last_event_id: Some("1".into()),
                ..ev("a")
            }]
        );
        assert_eq!((d.last_event_id(), d.retry(), d.comments()), (Some("1"), Some(10), 1));
        d.push(b"id:\n\n", |e| out.push(e));
        assert_eq!(d.last_event_id(), None);
        d.finish(|e| out.push(e));
        assert_eq!(d.discarded_tail(), 0);
    }

    #[test]
    fn bom_is_stripped_once_even_when_split() {
        let (e, ..) = decode(&[b"\xEF", b"\xBB", b"\xBFdata: a\n\n"], 64);
        assert_eq!(e, [ev("a")]);
        let (e, ..) = decode(&[b"\xEF\xBB\xBF\xEF\xBB\xBFdata: a\n\ndata: b\n\n"], 64);
        assert_eq!(e, [ev("b")]);
        let (e, ..) = decode(&[b"\xEFdata: a\n\n"], 64);
        assert_eq!(e, []);
        let (e, ..) = decode(&[b"d", b"ata: \xff\n\n"], 64);
        assert_eq!(e, [ev("\u{FFFD}")]);
        let (e, _, tail) = decode(&[b"\xEF\xBB"], 64);
        assert_eq!((e, tail), (vec![], 2));
    }

    #[test]
    fn big_events_are_cut_and_flagged() {
        let big = format!("data: {}\ndata: tail\n\ndata: ok\n\n", "\u{e9}".repeat(100));
        let (e, ..) = decode(&[big.as_bytes()], 11);
        assert_eq!(e.len(), 2);
        assert_eq!(
            (e[0].data.as_str(), e[0].truncated),
            ("\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}", true)
        );
        assert_eq!(e[1], ev("ok"));
        let (e, ..) = decode(&[b"data: 12345\ndata: 67\n\n"], 8);
        assert_eq!((e[0].data.as_str(), e[0].truncated), ("12345\n67", false));
        let (e, ..) = decode(&[b"data: 12345\ndata: 678\n\n"], 8);
        assert_eq!((e[0].data.as_str(), e[0].truncated), ("12345\n67", true));
    }

    fn chunks<'a>(stream: &'a [u8], cuts: &[prop::sample::Index]) -> Vec<&'a [u8]> {
        let mut at: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
        at.extend([0, stream.len()]);
        at.sort_unstable();
        at.windows(2).map(|w| &stream[w[0]..w[1]]).collect()
    }

    #[derive(Debug, Clone)]
    struct Gen {
        event: Option<String>,
        data: Vec<String>,
        id: Option<String>,
        retry: Option<u64>,
        comments: Vec<String>,
    }

    fn arb_event() -> impl Strategy<Value = Gen> {
        let text = "[^\r\n\u{0}]{0,10}";
        (
            proptest::option::of("[^\r\n]{1,8}"),
            prop::collection::vec(text, 1..4),
            proptest::option::of(text),
            proptest::option::of(any::<u64>()),
            prop::collection::vec("[^\r\n]{0,6}", 0..3),
        )
            .prop_map(|(event, data, id, retry, comments)| Gen {
                event,
                data,
                id,
                retry,
                comments,
            })
    }

    proptest! {
        #[test]
        fn chunking_does_not_change_the_events(
            stream in prop::collection::vec(prop::sample::select(
                b"data:id:event: retry1\r\n\n\r\n\xEF\xBB\xBF\xff\0x".to_vec()), 0..200),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
            max_event in prop_oneof![Just(1usize << 20), 0usize..12],
        ) {
            let one = decode(&[&stream], max_event);
            prop_assert_eq!(decode(&chunks(&stream, &cuts), max_event), one.clone());
            let bytewise: Vec<&[u8]> = stream.chunks(1).collect();
            prop_assert_eq!(decode(&bytewise, max_event), one);
        }

        #[test]
        fn generated_events_round_trip(
            events in prop::collection::vec(arb_event(), 0..6),
            endings in prop::collection::vec(prop::sample::select(vec!["\n", "\r", "\r\n"]), 1..8),
            bom in any::<bool>(),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            let mut stream = String::from(if bom { "\u{FEFF}" } else { "" });
            let mut n = 0;
            let mut line = |s: &mut String, l: &str| {
                let mut end = endings[n % endings.len()];
                // `\r` then an empty line ended by `\n` would read as one `\r\n`.
                if l.is_empty() && end == "\n" && s.ends_with('\r') {
                    end = "\r\n";
                }
                s.push_str(l);
                s.push_str(end);
                n += 1;
            };
            let mut expect = Vec::new();
            let mut last = None;
            let mut comments = 0;
            for g in &events {
                for c in &g.comments {
                    line(&mut stream, &format!(":{c}"));
                    comments += 1;
                }
                if let Some(e) = &g.event { line(&mut stream, &format!("event: {e}")) }
                if let Some(i) = &g.id { line(&mut stream, &format!("id: {i}")); last = Some(i.clone()).filter(|i| !i.is_empty()); }
                for d in &g.data { line(&mut stream, &format!("data: {d}")) }
                if let Some(r) = g.retry { line(&mut stream, &format!("retry: {r}")) }
                line(&mut stream, "");
                expect.push(SseEvent {
                    event: g.event.clone(),
                    data: g.data.join("\n"),
                    id: g.id.clone(),
                    last_event_id: last.clone(),
                    retry: g.retry,
                    truncated: false,
                });
            }
            let got = decode(&chunks(stream.as_bytes(), &cuts), 1 << 16);
            prop_assert_eq!(got, (expect, comments, 0));
        }
    }
}

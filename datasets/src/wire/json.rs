//! A validating, single-pass JSON scanner that reports where values are instead of building them.
//!
//! Classification and redaction only need a few members of each message and their exact byte spans (ids are
//! stored as their JSON text; redaction splices spans so every other byte stays as it was on the wire). A
//! `serde_json::Value` would allocate the whole tree and lose the original text, so this scanner walks the
//! bytes once with an explicit stack (no recursion, so no stack overflow on hostile nesting) and hands out
//! `(path, span, type)` for object members; the writer runs it on every captured frame, so it is built for speed.
//! String bodies (most of an MCP message: prose, base64 blobs) are skipped a block at a time, and UTF-8 is
//! validated only where it can occur, in the stretches of strings that hold non-ASCII bytes, instead of in a
//! separate pass over the whole input. The accepted inputs are the same as with a whole-input check (non-ASCII
//! bytes outside strings break the grammar anyway); errors point at the first offending byte in reading order.
//!
//! It follows RFC 8259 with one deliberate leniency: `\uXXXX` escapes are checked for grammar only, so a lone
//! surrogate is accepted (serde_json rejects it when decoding to a `String`). It also has no nesting limit and
//! accepts numbers of any magnitude (serde_json stops at depth 128 and rejects `1e400`): the tap records what a
//! peer sent, and the grammar is what makes bytes JSON.

use memchr::{memchr, memchr2};

/// Byte range `start..end` of a value in the scanned input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Span {
    /// First byte of the value (the opening quote of a string).
    pub start: usize,
    /// One past the last byte of the value.
    pub end: usize,
}

impl Span {
    /// The bytes of this span in `input` (empty when the span does not fit, which a scanner span always does).
    pub fn of(self, input: &[u8]) -> &[u8] {
        input.get(self.start..self.end).unwrap_or(&[])
    }
}

/// The JSON type of a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValueType {
    /// `{...}`
    Object,
    /// `[...]`
    Array,
    /// `"..."`
    String,
    /// A number.
    Number,
    /// `true` or `false`.
    Bool,
    /// `null`.
    Null,
}

/// Why the input is not JSON, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid JSON at byte {offset}: {reason}")]
pub struct ScanError {
    /// Byte offset of the first byte that cannot be part of a JSON text.
    pub offset: usize,
    /// What was expected or found.
    pub reason: &'static str,
}

fn err<T>(offset: usize, reason: &'static str) -> Result<T, ScanError> {
    Err(ScanError { offset, reason })
}

/// Callbacks of [`walk`], called in post-order (a value is reported once it is complete).
pub(crate) trait Visitor<'a> {
    /// An object member at `path` (raw keys, arrays not counted); `nesting` is the number of open containers
    /// around the value, so `nesting == path.len()` means no array lies between the root and the member.
    fn member(&mut self, path: &[&'a [u8]], nesting: usize, span: Span, ty: ValueType);
    /// An array element; `nesting` counts open containers including its array (1: element of the root array).
    fn element(&mut self, _nesting: usize, _span: Span, _ty: ValueType) {}
}

/// Is `bytes` exactly one JSON value, optionally surrounded by whitespace?
pub fn is_valid(bytes: &[u8]) -> bool {
    struct Nothing;
    impl Visitor<'_> for Nothing {
        fn member(&mut self, _: &[&[u8]], _: usize, _: Span, _: ValueType) {}
    }
    walk(bytes, 0, &mut Nothing).is_ok()
}

/// Validates `bytes` as one JSON value and calls `f(path, span, type)` for every object member at depth
/// `path.len() <= max_depth`, once the member's value is complete. `path` holds the raw keys (escapes not
/// decoded) from the top-level object down; array elements are walked through without adding to it.
///
/// Returns the type of the top-level value. Callbacks made before an error are not taken back.
pub fn scan_members<'a>(
    bytes: &'a [u8],
    max_depth: usize,
    f: impl FnMut(&[&'a [u8]], Span, ValueType),
) -> Result<ValueType, ScanError> {
    struct Members<F>(F);
    impl<'a, F: FnMut(&[&'a [u8]], Span, ValueType)> Visitor<'a> for Members<F> {
        fn member(&mut self, path: &[&'a [u8]], _: usize, span: Span, ty: ValueType) {
            (self.0)(path, span, ty)
        }
    }
    walk(bytes, max_depth, &mut Members(f))
}

/// The scanner behind [`scan_members`], with array elements and nesting reported too.
pub(crate) fn walk<'a, V: Visitor<'a>>(bytes: &'a [u8], max_depth: usize, v: &mut V) -> Result<ValueType, ScanError> {
    // Open containers: (is_object, start offset).
    // Room for the nesting of a typical message up front: no regrowth on the way down.
    let mut stack: Vec<(bool, usize)> = Vec::with_capacity(16);
    let mut path: Vec<&'a [u8]> = Vec::with_capacity(16);
    let mut i = skip_ws(bytes, 0);
    'value: loop {
        let start = i;
        let (mut ty, end) = match bytes.get(i) {
            None => return err(i, "expected a value, found the end"),
            Some(b'{') => {
                stack.push((true, i));
                i = skip_ws(bytes, i + 1);
                if bytes.get(i) != Some(&b'}') {
                    i = read_key(bytes, i, &mut path)?;
                    continue 'value;
                }
                stack.pop();
                (ValueType::Object, i + 1)
            }
            Some(b'[') => {
                stack.push((false, i));
                i = skip_ws(bytes, i + 1);
                if bytes.get(i) != Some(&b']') {
                    continue 'value;
                }
                stack.pop();
                (ValueType::Array, i + 1)
            }
            Some(b'"') => (ValueType::String, scan_string(bytes, i)?),
            Some(b'-' | b'0'..=b'9') => (ValueType::Number, scan_number(bytes, i)?),
            Some(b't') => (ValueType::Bool, literal(bytes, i, b"true")?),
            Some(b'f') => (ValueType::Bool, literal(bytes, i, b"false")?),
            Some(b'n') => (ValueType::Null, literal(bytes, i, b"null")?),
            Some(_) => return err(i, "expected a value"),
        };
        let mut span = Span { start, end };
        i = end;
        // Report the completed value, then close every container that ends right after it.
        loop {
            match stack.last() {
                Some(&(true, _)) => {
                    if path.len() <= max_depth {
                        v.member(&path, stack.len(), span, ty);
                    }
                    path.pop();
                }
                Some(&(false, _)) => v.element(stack.len(), span, ty),
                None => {}
            }
            i = skip_ws(bytes, i);
            let Some(&(is_object, container_start)) = stack.last() else {
                return if i == bytes.len() {
                    Ok(ty)
                } else {
                    err(i, "unexpected data after the value")
                };
            };
            match (bytes.get(i), is_object) {
                (Some(b','), true) => {
                    i = read_key(bytes, skip_ws(bytes, i + 1), &mut path)?;
                    continue 'value;
                }
                (Some(b','), false) => {
                    i = skip_ws(bytes, i + 1);
                    continue 'value;
                }
                (Some(b'}'), true) | (Some(b']'), false) => {
                    stack.pop();
                    i += 1;
                    span = Span {
                        start: container_start,
                        end: i,
                    };
                    ty = if is_object { ValueType::Object } else { ValueType::Array };
                }
                (None, _) => return err(i, "unexpected end inside a container"),
                (Some(_), true) => return err(i, "expected ',' or '}'"),
                (Some(_), false) => return err(i, "expected ',' or ']'"),
            }
        }
    }
}

fn skip_ws(bytes: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = bytes.get(i) {
        i += 1;
    }
    i
}

/// Reads `"key" :` at `i`, pushes the raw key and returns the offset of the member's value.
fn read_key<'a>(bytes: &'a [u8], i: usize, path: &mut Vec<&'a [u8]>) -> Result<usize, ScanError> {
    if bytes.get(i) != Some(&b'"') {
        return err(i, "expected a string key");
    }
    let end = scan_string(bytes, i)?;
    path.push(bytes.get(i + 1..end - 1).unwrap_or(&[]));
    let colon = skip_ws(bytes, end);
    if bytes.get(colon) != Some(&b':') {
        return err(colon, "expected ':'");
    }
    Ok(skip_ws(bytes, colon + 1))
}

/// Validates the string starting at the quote at `i`; returns the offset after its closing quote.
///
/// [`plain_run`] skips bytes that need no attention (printable ASCII other than `"` and `\\`) a block at a time;
/// quotes and escapes are looked at one by one. From a non-ASCII byte to the next quote or backslash the body is
/// checked in bulk: UTF-8 and no control characters. Every byte of a multi-byte character is `>= 0x80` and
/// everything around a string is ASCII, so checking these stretches accepts exactly the inputs that checking the
/// whole input as UTF-8 would.
fn scan_string(bytes: &[u8], i: usize) -> Result<usize, ScanError> {
    let mut j = i + 1;
    loop {
        j += plain_run(bytes.get(j..).unwrap_or(&[]));
        match bytes.get(j) {
            None => return err(bytes.len(), "unterminated string"),
            Some(b'"') => return Ok(j + 1),
            Some(b'\\') => match bytes.get(j + 1) {
                Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => j += 2,
                Some(b'u')
                    if bytes
                        .get(j + 2..j + 6)
                        .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) =>
                {
                    j += 6
                }
                _ => return err(j, "invalid escape"),
            },
            Some(&c) if c < 0x20 => return err(j, "control character in string"),
            Some(_) => {
                // Non-ASCII text: check the rest of this stretch (up to the next quote or backslash) in bulk, UTF-8
                // in one call and control characters with a branch-free test, rather than character by character.
                let rest = &bytes[j..];
                let len = memchr2(b'"', b'\\', rest).unwrap_or(rest.len());
                let stretch = &rest[..len];
                let control = stretch
                    .chunks(32)
                    .any(|c| c.iter().fold(false, |any, &b| any | (b < 0x20)))
                    .then(|| stretch.iter().position(|&b| b < 0x20))
                    .flatten();
                let utf8 = std::str::from_utf8(stretch).err().map(|e| e.valid_up_to());
                match (control, utf8) {
                    (Some(c), Some(u)) if u < c => return err(j + u, "invalid UTF-8"),
                    (Some(c), _) => return err(j + c, "control character in string"),
                    (None, Some(u)) => return err(j + u, "invalid UTF-8"),
                    (None, None) => j += len,
                }
            }
        }
    }
}

/// Does this byte end a run of plain string content (`"`, `\\`, a control character or a non-ASCII byte)?
#[inline(always)]
fn special(b: u8) -> bool {
    // One signed compare for both ends: 0x80 and up are negative as `i8`, so below 0x20 too. `|`, not `||`: no
    // branches, so a block of these vectorizes (three byte compares per 16 bytes with SSE2).
    (b == b'"') | (b == b'\\') | ((b as i8) < 0x20)
}

/// Length of the leading run of plain string content in `s`: no quote, no backslash, no control character, ASCII.
///
/// String bodies are most of an MCP message, so this is the scanner's inner loop. Most strings are short (keys,
/// ids, method names): the first 16 bytes are looked at 8 at a time with [`special_bits`], which also says where
/// the run ends. Long ones (prose, base64 blobs) are then skipped 32 bytes at a time with a branch-free test that
/// the compiler turns into SIMD compares (safe code, no intrinsics), and the block that ends the run is searched
/// word by word. `s` is the rest of the whole input, not just of the string, so only the input's last few bytes
/// are looked at one by one.
#[inline]
fn plain_run(s: &[u8]) -> usize {
    const BLOCK: usize = 32;
    let word = |k: usize| {
        let w = s.get(k..k + 8)?;
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(w);
        Some(special_bits(u64::from_le_bytes(bytes)))
    };
    let tail = |k: usize| {
        let rest = s.get(k..).unwrap_or(&[]);
        k + rest.iter().position(|&b| special(b)).unwrap_or(rest.len())
    };
    let mut k = 0;
    while k < 16 {
        match word(k) {
            None => return tail(k),
            Some(0) => k += 8,
            Some(bits) => return k + (bits.trailing_zeros() / 8) as usize,
        }
    }
    for block in s[k..].chunks_exact(BLOCK) {
        if block.iter().fold(false, |any, &b| any | special(b)) {
            break;
        }
        k += BLOCK;
    }
    loop {
        match word(k) {
            None => return tail(k),
            Some(0) => k += 8,
            Some(bits) => return k + (bits.trailing_zeros() / 8) as usize,
        }
    }
}

/// The high bit of each byte of `w` (little-endian) that [`special`] holds for, exact up to the first such byte;
/// above it, bits may be set that should not be (borrows), which does not matter for finding the first one.
#[inline(always)]
fn special_bits(w: u64) -> u64 {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    let zero_byte = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let quote = zero_byte(w ^ (ONES * u64::from(b'"')));
    let backslash = zero_byte(w ^ (ONES * u64::from(b'\\')));
    let control = w.wrapping_sub(ONES * 0x20) & !w & HIGH;
    (quote | backslash | control | w) & HIGH
}

fn scan_number(bytes: &[u8], i: usize) -> Result<usize, ScanError> {
    let digits = |mut j: usize| {
        while bytes.get(j).is_some_and(u8::is_ascii_digit) {
            j += 1;
        }
        j
    };
    let mut j = i;
    if bytes.get(j) == Some(&b'-') {
        j += 1;
    }
    match bytes.get(j) {
        Some(b'0') => j += 1,
        Some(b'1'..=b'9') => j = digits(j + 1),
        _ => return err(j, "invalid number"),
    }
    if bytes.get(j) == Some(&b'.') {
        if !bytes.get(j + 1).is_some_and(u8::is_ascii_digit) {
            return err(j + 1, "expected a digit after '.'");
        }
        j = digits(j + 1);
    }
    if let Some(b'e' | b'E') = bytes.get(j) {
        j += 1;
        if let Some(b'+' | b'-') = bytes.get(j) {
            j += 1;
        }
        if !bytes.get(j).is_some_and(u8::is_ascii_digit) {
            return err(j, "expected a digit in the exponent");
        }
        j = digits(j);
    }
    Ok(j)
}

fn literal(bytes: &[u8], i: usize, word: &[u8]) -> Result<usize, ScanError> {
    match bytes.get(i..i + word.len()) {
        Some(w) if w == word => Ok(i + word.len()),
        _ => err(i, "invalid literal"),
    }
}

/// Decodes a JSON string body (the bytes between the quotes). `None` when an escape is malformed or the result
/// is not UTF-8. A lone surrogate escape decodes to U+FFFD (it has no UTF-8 form).
pub fn unescape_str(raw: &[u8]) -> Option<String> {
    if memchr(b'\\', raw).is_none() {
        return std::str::from_utf8(raw).ok().map(str::to_owned);
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some(k) = raw.get(i..).and_then(|rest| memchr(b'\\', rest)) {
        out.extend_from_slice(&raw[i..i + k]);
        i += k;
        let simple = match raw.get(i + 1)? {
            b'"' => Some(b'"'),
            b'\\' => Some(b'\\'),
            b'/' => Some(b'/'),
            b'b' => Some(0x08),
            b'f' => Some(0x0c),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            b'u' => None,
            _ => return None,
        };
        if let Some(b) = simple {
            out.push(b);
            i += 2;
            continue;
        }
        let hi = hex4(raw.get(i + 2..i + 6)?)?;
        i += 6;
        let c = if (0xD800..0xDC00).contains(&hi) {
            // A high surrogate needs `\uDC00..\uDFFF` right after it.
            match raw
                .get(i..i + 2)
                .filter(|p| p == b"\\u")
                .and_then(|_| hex4(raw.get(i + 2..i + 6)?))
            {
                Some(lo) if (0xDC00..0xE000).contains(&lo) => {
                    i += 6;
                    char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))
                }
                _ => None,
            }
        } else {
            char::from_u32(hi)
        };
        let mut utf8 = [0u8; 4];
        out.extend_from_slice(
            c.unwrap_or(char::REPLACEMENT_CHARACTER)
                .encode_utf8(&mut utf8)
                .as_bytes(),
        );
    }
    out.extend_from_slice(raw.get(i..).unwrap_or(&[]));
    String::from_utf8(out).ok()
}

fn hex4(h: &[u8]) -> Option<u32> {
    h.iter()
        .try_fold(0u32, |acc, &b| Some(acc * 16 + (b as char).to_digit(16)?))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    type Member = (Vec<String>, Span, ValueType);

    fn members(doc: &str, depth: usize) -> Result<(ValueType, Vec<Member>), ScanError> {
        let mut out = Vec::new();
        let top = scan_members(doc.as_bytes(), depth, |p, s, t| {
            out.push((
                p.iter().map(|k| String::from_utf8_lossy(k).into_owned()).collect(),
                s,
                t,
            ))
        })?;
        Ok((top, out))
    }

    #[test]
    fn accepts_and_rejects_by_the_grammar() {
        for ok in [
            "0",
            "-0",
            "1.5e+3",
            "-12.25E-2",
            "true",
            " null ",
            "\"\"",
            "\"\\u00e9\\n\\\"\"",
            "[]",
            "{}",
            "[1,[2,{\"a\":[]}]]",
            "{\"a\":{\"b\":null},\"c\":\"d\"}\r\n\t ",
            "\"\u{e9}\u{1F600}\"",
            "\"\\ud800\"",
        ] {
            assert!(is_valid(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "",
            " ",
            "01",
            "1.",
            ".5",
            "-",
            "1e",
            "+1",
            "tru",
            "nul",
            "truex",
            "[1,]",
            "{\"a\":1,}",
            "{\"a\"}",
            "{a:1}",
            "[1 2]",
            "\"abc",
            "\"\\x\"",
            "\"\\u12g4\"",
            "\"a\tb\"",
            "{} {}",
            "[",
            "]",
            "{\"a\":",
            "'a'",
            "NaN",
            "[1]x",
        ] {
            assert!(!is_valid(bad.as_bytes()), "{bad:?}");
        }
        assert!(!is_valid(b"\"\xff\""));
        assert!(!is_valid(b"\"\xe2\x82\""));
    }

    #[test]
    fn errors_point_at_the_offending_byte() {
        let e = scan_members(b"{\"a\":tru}", 8, |_, _, _| {}).unwrap_err();
        assert_eq!(e.offset, 5);
        assert_eq!(scan_members(b"[1] 2", 8, |_, _, _| {}).unwrap_err().offset, 4);
        // UTF-8 is checked inside strings, where it may appear: the offset is the first byte that is not UTF-8.
        let e = scan_members(b"{\"a\":\"\xc3\xa9\xff\"}", 8, |_, _, _| {}).unwrap_err();
        assert_eq!((e.offset, e.reason), (8, "invalid UTF-8"));
        // In non-ASCII text, whichever comes first of a control character and a byte that is not UTF-8.
        let e = scan_members(b"\"\xc3\xa9a\x01\xff\"", 8, |_, _, _| {}).unwrap_err();
        assert_eq!((e.offset, e.reason), (4, "control character in string"));
        let e = scan_members(b"\"\xc3\xa9a\xff\x01\"", 8, |_, _, _| {}).unwrap_err();
        assert_eq!((e.offset, e.reason), (4, "invalid UTF-8"));
        // Outside a string any non-ASCII byte breaks the grammar first.
        let e = scan_members(b"{\"a\":1}\xff", 8, |_, _, _| {}).unwrap_err();
        assert_eq!((e.offset, e.reason), (7, "unexpected data after the value"));
    }

    /// The definition [`plain_run`] implements with blocks and bit tricks.
    fn plain_run_reference(s: &[u8]) -> usize {
        s.iter()
            .position(|&b| b == b'"' || b == b'\\' || !(0x20..0x80).contains(&b))
            .unwrap_or(s.len())
    }

    #[test]
    fn plain_runs_end_at_every_special_byte_in_every_position() {
        // Each special byte (and the edges of the ranges) at each offset of a few blocks and words, after plain
        // bytes of every kind, with and without more special bytes after it.
        let plain: Vec<u8> = (0x20..0x80).filter(|&b| b != b'"' && b != b'\\').collect();
        for special in [b'"', b'\\', 0x00, 0x1f, 0x80, 0xc3, 0xff] {
            for at in 0..100 {
                let mut s: Vec<u8> = plain.iter().cycle().skip(at).take(at).copied().collect();
                s.push(special);
                s.extend_from_slice(b"abc\"\\\x01");
                assert_eq!(plain_run(&s), at, "{special:#x} at {at}");
                assert_eq!(plain_run(&s[..at]), at);
            }
        }
        assert_eq!(plain_run(&plain), plain.len());
        assert_eq!(plain_run(b""), 0);
    }

    #[test]
    fn utf8_is_checked_across_blocks_and_words() {
        // Multi-byte characters straddling every block and word boundary; then each cut short or corrupted.
        for pad in 0..40 {
            for c in ["\u{e9}", "\u{20ac}", "\u{1F600}"] {
                let doc = format!("{{\"k\":\"{}{c}{c}x\"}}", "a".repeat(pad));
                assert!(is_valid(doc.as_bytes()), "{doc}");
                let bytes = doc.as_bytes();
                let first = bytes.iter().position(|&b| b >= 0x80).unwrap();
                let mut cut = bytes.to_vec();
                cut.remove(first + c.len() - 1);
                assert_eq!(is_valid(&cut), serde_accepts(&cut).is_ok(), "{cut:?}");
                assert!(!is_valid(&cut));
                let mut bad = bytes.to_vec();
                bad[first + 1] = b'a';
                assert!(!is_valid(&bad));
            }
        }
    }

    #[test]
    fn members_report_raw_paths_and_spans() {
        let doc = r#"{"a":{"b":[1,{"c":"x"}],"d\"e":true},"f":[[{"g":null}]]}"#;
        let (top, got) = members(doc, 8).unwrap();
        assert_eq!(top, ValueType::Object);
        let pick = |p: &[&str]| {
            got.iter()
                .find(|(q, _, _)| q == p)
                .map(|(_, s, t)| (&doc[s.start..s.end], *t))
        };
        assert_eq!(pick(&["a", "b", "c"]), Some(("\"x\"", ValueType::String)));
        assert_eq!(pick(&["a", "b"]), Some(("[1,{\"c\":\"x\"}]", ValueType::Array)));
        assert_eq!(pick(&["a", "d\\\"e"]), Some(("true", ValueType::Bool)));
        assert_eq!(pick(&["f", "g"]), Some(("null", ValueType::Null)));
        assert_eq!(got.len(), 6);
        // Post-order: children before their parent.
        assert_eq!(got.last().map(|m| m.0.clone()), Some(vec!["f".to_string()]));
        let (_, shallow) = members(doc, 1).unwrap();
        assert_eq!(shallow.iter().map(|m| m.0.join(".")).collect::<Vec<_>>(), ["a", "f"]);
        assert_eq!(members("[1,{\"k\":2}]", 0).unwrap().1.len(), 0);
        assert_eq!(members("\"s\"", 3).unwrap().0, ValueType::String);
    }

    #[test]
    fn deep_nesting_does_not_overflow_the_stack() {
        let doc = format!("{}{}", "[".repeat(200_000), "]".repeat(200_000));
        assert!(is_valid(doc.as_bytes()));
        assert!(!is_valid(&doc.as_bytes()[..doc.len() - 1]));
    }

    #[test]
    fn unescape_decodes_escapes() {
        assert_eq!(unescape_str(b"plain").as_deref(), Some("plain"));
        assert_eq!(
            unescape_str(br#"a\"b\\c\/d\n\t\u0041\u00e9"#).as_deref(),
            Some("a\"b\\c/d\n\tA\u{e9}")
        );
        assert_eq!(unescape_str(br"\ud83d\ude00!").as_deref(), Some("\u{1F600}!"));
        assert_eq!(unescape_str(br"\ud83d!").as_deref(), Some("\u{FFFD}!"));
        assert_eq!(unescape_str(br"\ude00").as_deref(), Some("\u{FFFD}"));
        assert_eq!(unescape_str(br"\x"), None);
        assert_eq!(unescape_str(br"\u12"), None);
        assert_eq!(unescape_str(b"\\"), None);
        assert_eq!(unescape_str(b"\xff"), None);
    }

    /// Arbitrary JSON documents, for this module's and other modules' property tests.
    pub(crate) fn arb_json() -> impl Strategy<Value = serde_json::Value> {
        use serde_json::Value;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            "\\PC{0,12}".prop_map(Value::String),
            "[\"\\\\/\u{0}-\u{1f}a\u{e9}\u{1F600}]{0,6}".prop_map(Value::String),
        ];
        leaf.prop_recursive(5, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::vec(("[a-z\"\\\\\u{1}\u{e9}]{0,6}", inner), 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn serde_accepts(bytes: &[u8]) -> Result<(), String> {
        serde_json::from_slice::<serde_json::Value>(bytes)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// serde_json errors for input this scanner accepts on purpose: lone surrogates (reported as "surrogate" or,
    /// at the end of a string, "end of hex escape"), out-of-range numbers and nesting beyond 128.
    fn documented(serde_error: &str) -> bool {
        ["surrogate", "hex escape", "out of range", "recursion"]
            .iter()
            .any(|w| serde_error.contains(w))
    }

    #[test]
    fn documented_differences_from_serde() {
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        for doc in ["\"\\ud800\"", "[\"\\udc00x\"]", "1e400", &deep] {
            assert!(is_valid(doc.as_bytes()));
            let e = serde_accepts(doc.as_bytes()).unwrap_err();
            assert!(documented(&e), "{e}");
        }
    }

    proptest! {
        #[test]
        fn agrees_with_serde_on_generated_documents(v in arb_json(), pretty in any::<bool>()) {
            let text = if pretty { serde_json::to_vec_pretty(&v) } else { serde_json::to_vec(&v) };
            let text = text.unwrap();
            prop_assert!(is_valid(&text));
            let mut count = 0;
            scan_members(&text, usize::MAX, |_, s, _| {
                count += 1;
                assert!(serde_json::from_slice::<serde_json::Value>(&text[s.start..s.end]).is_ok());
            }).unwrap();
            fn object_members(v: &serde_json::Value) -> usize {
                match v {
                    serde_json::Value::Object(m) => m.len() + m.values().map(object_members).sum::<usize>(),
                    serde_json::Value::Array(a) => a.iter().map(object_members).sum(),
                    _ => 0,
                }
            }
            prop_assert_eq!(count, object_members(&v));
        }

        #[test]
        fn agrees_with_serde_on_mutated_documents(
            v in arb_json(),
            edits in prop::collection::vec((any::<prop::sample::Index>(), 0u8..3, prop::sample::select(
                b"{}[],:\"\\ 0123456789-+.eEtrufalsn\x01\xff\xc3u".to_vec())), 1..4),
        ) {
            let mut text = serde_json::to_vec(&v).unwrap();
            for (at, op, byte) in edits {
                let i = at.index(text.len() + 1);
                match op {
                    0 => text.insert(i, byte),
                    1 if i < text.len() => { text.remove(i); }
                    _ if i < text.len() => text[i] = byte,
                    _ => text.push(byte),
                }
            }
            let ours = is_valid(&text);
            match serde_accepts(&text) {
                Ok(()) => prop_assert!(ours, "serde accepts, we reject {:?}", String::from_utf8_lossy(&text)),
                // The documented leniencies: lone surrogates and out-of-range numbers.
                Err(e) if ours => prop_assert!(documented(&e), "{e}"),
                Err(_) => {}
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let ours = scan_members(&bytes, usize::MAX, |_, _, _| {}).is_ok();
            if let Err(e) = serde_accepts(&bytes) {
                prop_assert!(!ours || documented(&e), "{e}");
            } else {
                prop_assert!(ours);
            }
        }

        #[test]
        fn plain_run_matches_its_definition(
            bytes in prop::collection::vec(prop_oneof![
                8 => 0x20u8..0x80,
                1 => prop::sample::select(vec![b'"', b'\\', 0x00, 0x1f, 0x7f, 0x80, 0xc3, 0xff]),
            ], 0..200),
            skip in 0usize..64,
        ) {
            let s = &bytes[skip.min(bytes.len())..];
            prop_assert_eq!(plain_run(s), plain_run_reference(s));
        }

        #[test]
        fn string_bodies_agree_with_serde(
            pieces in prop::collection::vec(prop::sample::select(vec![
                &b"a"[..], b"plain text ", "\u{e9}".as_bytes(), "\u{20ac}".as_bytes(), "\u{1F600}".as_bytes(),
                b"\xc3", b"\xa9", b"\xe2\x82", b"\xff", b"\xed\xa0\x80", b"\\n", b"\\u00e9", b"\\", b"\"", b"\x01",
                b"\x7f", b" ", b"0123456789abcdef0123456789abcdef",
            ]), 0..24),
        ) {
            let doc = [&b"[\""[..], &pieces.concat(), b"\"]"].concat();
            prop_assert_eq!(is_valid(&doc), serde_accepts(&doc).is_ok(), "{:?}", String::from_utf8_lossy(&doc));
        }

        #[test]
        fn unescape_matches_serde(s in "\\PC{0,16}") {
            let quoted = serde_json::to_string(&s).unwrap();
            prop_assert_eq!(unescape_str(&quoted.as_bytes()[1..quoted.len() - 1]), Some(s));
        }
    }
}

//! Redaction: secrets are removed before a frame reaches the journal or a segment.
//!
//! Captures get shared (attached to bug reports, committed as fixtures), so redaction is on by default and runs on
//! the writer task before anything touches disk. It edits bytes instead of re-serializing: the JSON scanner gives
//! the exact span of each secret value and only those spans are replaced, so every other byte, key order,
//! whitespace and number spelling stays as on the wire and replay still sends what the client sent. A payload
//! with nothing to redact is returned as `None` so the caller keeps its zero-copy `Bytes`.
//!
//! Keys are matched on a normalized form (unescaped, ASCII lower-case, `_`, `-`, `.` removed) against a list and
//! a few suffixes, with MCP's own token-ish names (`progressToken`, `maxTokens`, `nextCursor`) kept. Bytes that
//! are not JSON (stderr lines, partial lines) get a small textual pass instead; no regex crate is needed for it.
//!
//! Cost matters: the writer redacts every frame it records. [`classify_and_redact`] classifies a message and finds
//! its secrets in the same walk (classification needs a walk of the message anyway), and the key check that runs
//! for every member rejects a key from its last two normalized bytes in the common case of no extra rules.

use std::borrow::Cow;

use bytes::Bytes;
use memchr::{memchr, memchr2};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::wire::envelope::{self, Classifier, Envelope};
use crate::wire::json::{self, Span, ValueType, Visitor};

/// What a redacted value becomes.
pub const REDACTED: &str = "[REDACTED]";

const DEFAULT_HEADERS: [&str; 10] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "api-key",
    "x-auth-token",
    "x-access-token",
    "x-amz-security-token",
    "x-goog-api-key",
];
/// Substrings of a normalized header name that make it secret.
const HEADER_PATTERNS: [&str; 5] = ["token", "secret", "password", "apikey", "credential"];
const SECRET_KEYS: [&str; 23] = [
    "token",
    "accesstoken",
    "refreshtoken",
    "idtoken",
    "authtoken",
    "apitoken",
    "bearertoken",
    "sessiontoken",
    "secret",
    "clientsecret",
    "password",
    "passwd",
    "passphrase",
    "apikey",
    "xapikey",
    "codeverifier",
    "authorization",
    "proxyauthorization",
    "cookie",
    "setcookie",
    "privatekey",
    "credentials",
    "credential",
];
const SECRET_SUFFIXES: [&str; 9] = [
    "secret",
    "password",
    "apikey",
    "accesstoken",
    "refreshtoken",
    "authtoken",
    "apitoken",
    "idtoken",
    "privatekey",
];
/// Length of the shortest name in [`SECRET_KEYS`] and [`SECRET_SUFFIXES`] (`token`).
const SHORTEST_SECRET: usize = 5;

/// A 256-bit filter of the last two bytes of every name in [`SECRET_KEYS`] and [`SECRET_SUFFIXES`]: a normalized key
/// that is a built-in secret ends with the last two bytes of one of them, so a key whose bit is clear is not one.
const TAIL_FILTER: [u64; 4] = tail_filter();

const fn tail_bit(before: u8, last: u8) -> usize {
    (before as usize * 31 + last as usize) % 256
}

const fn tail_filter() -> [u64; 4] {
    let mut filter = [0u64; 4];
    let lists: [&[&str]; 2] = [&SECRET_KEYS, &SECRET_SUFFIXES];
    let mut l = 0;
    while l < lists.len() {
        let mut i = 0;
        while i < lists[l].len() {
            let name = lists[l][i].as_bytes();
            let bit = tail_bit(name[name.len() - 2], name[name.len() - 1]);
            filter[bit / 64] |= 1 << (bit % 64);
            i += 1;
        }
        l += 1;
    }
    filter
}

/// Could a normalized key ending in `before`, `last` be a built-in secret name? (False positives are fine.)
fn may_end_a_name(before: u8, last: u8) -> bool {
    let bit = tail_bit(before, last);
    TAIL_FILTER[bit / 64] & (1 << (bit % 64)) != 0
}
const KEEP_KEYS: [&str; 10] = [
    "progresstoken",
    "maxtokens",
    "tokens",
    "nextcursor",
    "cursor",
    "tokencount",
    "totaltokens",
    "inputtokens",
    "outputtokens",
    "tokentype",
];

/// The redaction rules a capture applies (stored in its metadata).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RedactionRules {
    /// False only with an explicit `--no-redact`.
    pub enabled: bool,
    /// Lower-case header names whose values become [`REDACTED`] (on top of the built-in name patterns).
    pub headers: Vec<String>,
    /// Lower-case header names whose values become [`RedactionRules::hash`] of the value, so sessions still group.
    pub hashed_headers: Vec<String>,
    /// Extra JSON key names treated as secret (compared normalized).
    pub keys: Vec<String>,
    /// JSON key names never treated as secret (compared normalized).
    pub keep_keys: Vec<String>,
}

impl Default for RedactionRules {
    fn default() -> Self {
        RedactionRules {
            enabled: true,
            headers: DEFAULT_HEADERS.iter().map(|s| s.to_string()).collect(),
            hashed_headers: vec!["mcp-session-id".to_string()],
            keys: Vec::new(),
            keep_keys: KEEP_KEYS.iter().map(|s| s.to_string()).collect(),
        }
    }
}

/// Does `name`, lower-cased and without `-`, `_` and `.`, contain one of [`HEADER_PATTERNS`]? Runs for every
/// recorded header of every frame, so a usual name is normalized on the stack.
fn secret_header_name(name: &str) -> bool {
    let mut short = [0u8; 64];
    let mut long = Vec::new();
    let mut n = 0;
    for b in name.bytes().filter(|b| !matches!(b, b'-' | b'_' | b'.')) {
        let b = b.to_ascii_lowercase();
        if n < short.len() {
            short[n] = b;
        } else {
            if long.is_empty() {
                long.extend_from_slice(&short);
            }
            long.push(b);
        }
        n += 1;
    }
    let normalized = if long.is_empty() { &short[..n] } else { &long[..] };
    HEADER_PATTERNS
        .iter()
        .any(|p| normalized.windows(p.len()).any(|w| w == p.as_bytes()))
}

/// What [`RedactionRules`] do to one header's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderRule {
    /// Stored as sent.
    Keep,
    /// Stored as [`REDACTED`].
    Redact,
    /// Stored as [`RedactionRules::hash`] of the value (ids that must stay comparable, like `Mcp-Session-Id`).
    Hash,
}

impl HeaderRule {
    /// The value to store.
    pub fn apply(self, value: &str) -> Cow<'_, str> {
        match self {
            HeaderRule::Keep => Cow::Borrowed(value),
            HeaderRule::Redact => Cow::Borrowed(REDACTED),
            HeaderRule::Hash => Cow::Owned(RedactionRules::hash(value)),
        }
    }
}

impl RedactionRules {
    /// No redaction at all (`--no-redact`).
    pub fn none() -> Self {
        RedactionRules {
            enabled: false,
            headers: Vec::new(),
            hashed_headers: Vec::new(),
            keys: Vec::new(),
            keep_keys: Vec::new(),
        }
    }

    /// The value to store for header `name` (matched case-insensitively).
    pub fn header_value<'a>(&self, name: &str, value: &'a str) -> Cow<'a, str> {
        self.header_rule(name).apply(value)
    }

    /// What these rules do to the values of header `name` (matched case-insensitively). It depends on the name
    /// only, so a caller that sees the same names again and again (the tap's writer) can keep it.
    pub fn header_rule(&self, name: &str) -> HeaderRule {
        if !self.enabled {
            return HeaderRule::Keep;
        }
        let name = name.trim();
        let listed = |list: &[String]| list.iter().any(|h| h.eq_ignore_ascii_case(name));
        if listed(&self.hashed_headers) {
            HeaderRule::Hash
        } else if listed(&self.headers) || secret_header_name(name) {
            HeaderRule::Redact
        } else {
            HeaderRule::Keep
        }
    }

    /// `sha256:` and the first 16 hex digits of SHA-256 of `value`.
    pub fn hash(value: &str) -> String {
        let digest = Sha256::digest(value.as_bytes());
        let mut out = String::from("sha256:");
        for b in digest.iter().take(8) {
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 15)]));
        }
        out
    }

    /// Is this raw JSON key (escapes not decoded) a secret under these rules?
    pub fn is_secret_key(&self, raw_key: &[u8]) -> bool {
        if !self.enabled {
            return false;
        }
        // Called for every member of every payload, and almost every key is not a secret: without extra rules, a
        // key whose last two normalized bytes end no built-in name is rejected after looking at just those (and a
        // key shorter than every name, since normalizing and unescaping only shorten a key).
        if self.keys.is_empty() && (raw_key.len() < SHORTEST_SECRET || !raw_key.contains(&b'\\')) {
            let mut tail = raw_key
                .iter()
                .rev()
                .filter(|b| !matches!(b, b'_' | b'-' | b'.'))
                .map(u8::to_ascii_lowercase);
            match (tail.next(), tail.next()) {
                (Some(last), Some(before)) if raw_key.len() >= SHORTEST_SECRET && may_end_a_name(before, last) => {}
                _ => return false,
            }
        }
        let decoded;
        let key = if raw_key.contains(&b'\\') {
            decoded = json::unescape_str(raw_key).map(String::into_bytes);
            decoded.as_deref().unwrap_or(raw_key)
        } else {
            raw_key
        };
        // Normalize on the stack unless the key is long.
        let (mut stack, heap);
        let n: &[u8] = if key.len() <= 64 {
            stack = [0u8; 64];
            let mut len = 0;
            for &b in key.iter().filter(|b| !matches!(b, b'_' | b'-' | b'.')) {
                stack[len] = b.to_ascii_lowercase();
                len += 1;
            }
            &stack[..len]
        } else {
            heap = key
                .iter()
                .filter(|b| !matches!(b, b'_' | b'-' | b'.'))
                .map(u8::to_ascii_lowercase)
                .collect::<Vec<_>>();
            &heap
        };
        let eq = |name: &String| normalized_eq(name, n);
        // The last byte rules out nearly every name before its bytes are compared. The kept names only matter for
        // a key that is a secret otherwise, so they are looked at last.
        let last = n.last().copied();
        let secret = (n.len() >= SHORTEST_SECRET
            && (SECRET_KEYS
                .iter()
                .any(|k| k.len() == n.len() && k.as_bytes().last().copied() == last && k.as_bytes() == n)
                || SECRET_SUFFIXES
                    .iter()
                    .any(|s| s.as_bytes().last().copied() == last && n.ends_with(s.as_bytes()))))
            || self.keys.iter().any(eq);
        secret && !self.keep_keys.iter().any(eq)
    }

    /// Redacts a payload. `None` when nothing matched (keep the original); otherwise the redacted bytes.
    pub fn payload(&self, payload: &Bytes) -> Option<Bytes> {
        if !self.enabled {
            return None;
        }
        let mut edits = JsonEdits::new(self, payload);
        let edits = match json::walk(payload, usize::MAX, &mut edits) {
            Ok(_) => edits.edits,
            Err(_) => self.text_edits(payload),
        };
        apply(payload, &edits)
    }

    /// The rules as compact JSON, for file metadata.
    pub fn describe(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Edits for bytes that are not JSON: `Bearer x`, `"secret": value` and `secret=value`.
    fn text_edits(&self, b: &[u8]) -> Vec<Edit> {
        let mut edits = bearer_edits(b);
        self.quoted_key_edits(b, &mut edits);
        self.assignment_edits(b, &mut edits);
        edits.sort_by_key(|e| (e.start, e.end));
        let mut kept: Vec<Edit> = Vec::with_capacity(edits.len());
        for e in edits {
            if kept.last().is_none_or(|k| k.end <= e.start) {
                kept.push(e);
            }
        }
        kept
    }

    /// `"key" : "value"` or `"key": 123` with a secret key; the value may run to the end of a partial line.
    fn quoted_key_edits(&self, b: &[u8], edits: &mut Vec<Edit>) {
        let mut i = 0;
        while let Some(q) = b.get(i..).and_then(|r| memchr(b'"', r)).map(|q| i + q) {
            let close = string_end(b, q + 1);
            i = close + 1;
            let key = b.get(q + 1..close).unwrap_or(&[]);
            let colon = skip_ws(b, close + 1);
            if b.get(colon) != Some(&b':') || !self.is_secret_key(key) {
                continue;
            }
            let v = skip_ws(b, colon + 1);
            match b.get(v) {
                Some(b'"') => {
                    let end = string_end(b, v + 1);
                    if b.get(v + 1..end) != Some(REDACTED.as_bytes()) {
                        edits.push(Edit {
                            start: v + 1,
                            end,
                            with: Cow::Borrowed(REDACTED),
                        });
                    }
                    i = end + 1;
                }
                Some(b'{' | b'[') | None => {}
                Some(_) => {
                    let end = v + b[v..]
                        .iter()
                        .position(|c| matches!(c, b',' | b'}' | b']') || c.is_ascii_whitespace())
                        .unwrap_or(b.len() - v);
                    edits.push(Edit {
                        start: v,
                        end,
                        with: Cow::Owned(format!("\"{REDACTED}\"")),
                    });
                    i = end;
                }
            }
        }
    }

    /// `key=value` with a secret key (query strings, env dumps, command lines).
    fn assignment_edits(&self, b: &[u8], edits: &mut Vec<Edit>) {
        let mut i = 0;
        while let Some(eq) = b.get(i..).and_then(|r| memchr(b'=', r)).map(|e| i + e) {
            i = eq + 1;
            let key_len = b[..eq]
                .iter()
                .rev()
                .take(64)
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'))
                .count();
            if key_len == 0 || !self.is_secret_key(&b[eq - key_len..eq]) {
                continue;
            }
            let len = b[i..]
                .iter()
                .position(|c| c.is_ascii_whitespace() || matches!(c, b'&' | b',' | b';' | b'"'))
                .unwrap_or(b.len() - i);
            if len > 0 && &b[i..i + len] != REDACTED.as_bytes() {
                edits.push(Edit {
                    start: i,
                    end: i + len,
                    with: Cow::Borrowed(REDACTED),
                });
            }
            i += len;
        }
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn normalized_eq(name: &str, normalized: &[u8]) -> bool {
    name.bytes()
        .filter(|b| !matches!(b, b'_' | b'-' | b'.'))
        .map(|b| b.to_ascii_lowercase())
        .eq(normalized.iter().copied())
}

/// Replace `start..end` of the input with `with`.
#[derive(Debug)]
struct Edit {
    start: usize,
    end: usize,
    with: Cow<'static, str>,
}

/// The redacted payload, or `None` when there is nothing to change.
fn apply(payload: &[u8], edits: &[Edit]) -> Option<Bytes> {
    (!edits.is_empty()).then(|| splice(payload, edits))
}

fn splice(b: &[u8], edits: &[Edit]) -> Bytes {
    let mut out = Vec::with_capacity(b.len() + 16 * edits.len());
    let mut at = 0;
    for e in edits {
        out.extend_from_slice(b.get(at..e.start).unwrap_or(&[]));
        out.extend_from_slice(e.with.as_bytes());
        at = e.end;
    }
    out.extend_from_slice(b.get(at..).unwrap_or(&[]));
    Bytes::from(out)
}

/// Collects edits for a valid JSON document; values arrive in post-order (children before parents).
struct JsonEdits<'r> {
    rules: &'r RedactionRules,
    bytes: &'r [u8],
    edits: Vec<Edit>,
}

impl<'r> JsonEdits<'r> {
    fn new(rules: &'r RedactionRules, bytes: &'r [u8]) -> Self {
        JsonEdits {
            rules,
            bytes,
            edits: Vec::new(),
        }
    }

    fn add(&mut self, span: Span, with: Cow<'static, str>) {
        // Edits inside this span belong to a value that is now replaced whole.
        while self.edits.last().is_some_and(|e| e.start >= span.start) {
            self.edits.pop();
        }
        if span.of(self.bytes) != with.as_bytes() {
            self.edits.push(Edit {
                start: span.start,
                end: span.end,
                with,
            });
        }
    }

    fn string(&mut self, span: Span) {
        let body = span.of(self.bytes);
        let body = body.get(1..body.len().saturating_sub(1)).unwrap_or(&[]);
        // Most strings are not credentials: one byte decides that for all but those starting with a `b`.
        if !matches!(body.first(), Some(b'b' | b'B')) {
            return;
        }
        if let Some(scheme) = auth_scheme(body).filter(|&(_, token)| token == body.len()) {
            let scheme = String::from_utf8_lossy(&body[..scheme.0]);
            self.add(span, Cow::Owned(format!("\"{scheme} {REDACTED}\"")));
        }
    }
}

impl<'a> Visitor<'a> for JsonEdits<'_> {
    fn member(&mut self, path: &[&'a [u8]], _: usize, span: Span, ty: ValueType) {
        if path.last().is_some_and(|k| self.rules.is_secret_key(k)) {
            self.add(span, Cow::Owned(format!("\"{REDACTED}\"")));
        } else if ty == ValueType::String {
            self.string(span);
        }
    }

    fn element(&mut self, _: usize, span: Span, ty: ValueType) {
        if ty == ValueType::String {
            self.string(span);
        }
    }
}

/// Classifies a message and redacts it in one walk of its bytes: the same [`Envelope`] as
/// [`classify`](crate::wire::envelope::classify) and the same bytes as [`RedactionRules::payload`], for half the
/// scanning (both read every byte of the message, and the writer runs both on every frame).
pub fn classify_and_redact(payload: &Bytes, rules: &RedactionRules) -> (Envelope, Option<Bytes>) {
    if !rules.enabled {
        return (envelope::classify(payload), None);
    }
    // Classification ignores surrounding ASCII whitespace; redaction walks the whole payload, and JSON whitespace
    // leaves that walk unchanged but a form feed (ASCII whitespace, not JSON whitespace) makes it fail.
    let body = payload.trim_ascii_start();
    let lead = payload.len() - body.len();
    let body = body.trim_ascii_end();
    let padding_is_json = !payload[..lead].contains(&0x0c) && !payload[lead + body.len()..].contains(&0x0c);
    let mut both = Both {
        class: Classifier::new(body),
        edits: JsonEdits::new(rules, body),
    };
    let top = json::walk(body, usize::MAX, &mut both);
    let edits = match top {
        Ok(_) if padding_is_json => {
            let mut edits = both.edits.edits;
            for e in &mut edits {
                e.start += lead;
                e.end += lead;
            }
            edits
        }
        _ => rules.text_edits(payload),
    };
    (both.class.finish(top), apply(payload, &edits))
}

/// Feeds one walk to the classifier and the redactor.
struct Both<'a, 'r> {
    class: Classifier<'a>,
    edits: JsonEdits<'r>,
}

impl<'a> Visitor<'a> for Both<'a, '_> {
    fn member(&mut self, path: &[&'a [u8]], nesting: usize, span: Span, ty: ValueType) {
        self.class.member(path, nesting, span, ty);
        self.edits.member(path, nesting, span, ty);
    }

    fn element(&mut self, nesting: usize, span: Span, ty: ValueType) {
        self.class.element(nesting, span, ty);
        self.edits.element(nesting, span, ty);
    }
}

/// `Bearer <token>` / `Basic <token>` at the start of `b` (case-insensitive): (scheme length, end of token).
fn auth_scheme(b: &[u8]) -> Option<(usize, usize)> {
    let scheme = [&b"bearer"[..], b"basic"]
        .into_iter()
        .find(|s| b.get(..s.len()).is_some_and(|w| w.eq_ignore_ascii_case(s)))?
        .len();
    let spaces = b[scheme..].iter().take_while(|&&c| c == b' ' || c == b'\t').count();
    let start = scheme + spaces;
    let token = b[start..].iter().take_while(|&&c| is_token_char(c)).count();
    (spaces > 0 && token > 0).then_some((scheme, start + token))
}

/// token68 characters (RFC 9110), `=` allowed anywhere.
fn is_token_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=')
}

/// Textual `Bearer x` / `Basic x`: the token becomes [`REDACTED`].
fn bearer_edits(b: &[u8]) -> Vec<Edit> {
    let mut edits = Vec::new();
    let mut i = 0;
    while let Some(p) = b.get(i..).and_then(|r| memchr2(b'b', b'B', r)).map(|p| i + p) {
        i = p + 1;
        if p > 0 && b[p - 1].is_ascii_alphanumeric() {
            continue;
        }
        if let Some((scheme, end)) = auth_scheme(&b[p..]) {
            let start = p + scheme + b[p + scheme..].iter().take_while(|&&c| c == b' ' || c == b'\t').count();
            edits.push(Edit {
                start,
                end: p + end,
                with: Cow::Borrowed(REDACTED),
            });
            i = p + end;
        }
    }
    edits
}

/// Offset of the closing quote of a string whose body starts at `i` (or the input length when unterminated).
fn string_end(b: &[u8], mut i: usize) -> usize {
    while let Some(k) = b.get(i..).and_then(|r| memchr2(b'"', b'\\', r)) {
        i += k;
        if b[i] == b'"' {
            return i;
        }
        i += 2;
    }
    b.len()
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while b.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn red(s: &str) -> Option<String> {
        RedactionRules::default()
            .payload(&Bytes::copy_from_slice(s.as_bytes()))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    }

    #[test]
    fn secret_keys_by_the_normalized_name() {
        let r = RedactionRules::default();
        for k in [
            "access_token",
            "client_secret",
            "code_verifier",
            "apiKey",
            "X-API-Key",
            "password",
            "db_password",
            "pass\\u0077ord",
            "Authorization",
            "token",
            "my.private-key",
            "refreshToken",
        ] {
            assert!(r.is_secret_key(k.as_bytes()), "{k}");
        }
        for k in [
            "progressToken",
            "maxTokens",
            "nextCursor",
            "tokens",
            "name",
            "tokenType",
            "secretary_name",
            "passwordless",
            "key",
            "id",
        ] {
            assert!(!r.is_secret_key(k.as_bytes()), "{k}");
        }
        let custom = RedactionRules {
            keys: vec!["session_key".into()],
            keep_keys: vec!["Token".into()],
            ..RedactionRules::default()
        };
        assert!(custom.is_secret_key(b"sessionKey"));
        assert!(!custom.is_secret_key(b"token"));
        assert!(!RedactionRules::none().is_secret_key(b"password"));
    }

    #[test]
    fn headers() {
        let r = RedactionRules::default();
        assert_eq!(r.header_value("Authorization", "Bearer abc"), REDACTED);
        assert_eq!(r.header_value("X-Custom-Token", "abc"), REDACTED);
        assert_eq!(r.header_value("x_client_secret", "abc"), REDACTED);
        assert_eq!(r.header_value("X-Api_Key", "abc"), REDACTED);
        assert_eq!(r.header_value("Cookie", "a=b"), REDACTED);
        assert_eq!(r.header_value("content-type", "application/json"), "application/json");
        assert_eq!(r.header_value("Mcp-Protocol-Version", "2025-11-25"), "2025-11-25");
        let hashed = r.header_value("Mcp-Session-Id", "abc");
        assert_eq!(hashed, RedactionRules::hash("abc"));
        assert_eq!(hashed, "sha256:ba7816bf8f01cfea");
        assert!(matches!(r.header_value("accept", "x"), Cow::Borrowed(_)));
        assert_eq!(RedactionRules::none().header_value("authorization", "x"), "x");
        // Past the on-stack buffer of the name check.
        let long = format!("x-{}-pass_word", "a".repeat(80));
        assert_eq!(r.header_value(&long, "x"), REDACTED);
        assert_eq!(r.header_value(&"a-".repeat(60), "x"), "x");
    }

    #[test]
    fn json_values_are_spliced_in_place() {
        let doc = r#"{"id":1, "method":"tools/call","params":{"arguments":{"password" : "hunter2","n":1},"apiKey":{"a":[1,{"token":"x"}]}}}"#;
        let want = r#"{"id":1, "method":"tools/call","params":{"arguments":{"password" : "[REDACTED]","n":1},"apiKey":"[REDACTED]"}}"#;
        assert_eq!(red(doc).as_deref(), Some(want));
        let deep = r#"{"a":{"b":[{"c":{"d":{"client_secret":42}}}]},"e":[{"refresh_token":null}]}"#;
        let want = r#"{"a":{"b":[{"c":{"d":{"client_secret":"[REDACTED]"}}}]},"e":[{"refresh_token":"[REDACTED]"}]}"#;
        assert_eq!(red(deep).as_deref(), Some(want));
        assert_eq!(
            red(r#"{"pass\u0077ord":"x"}"#).as_deref(),
            Some(r#"{"pass\u0077ord":"[REDACTED]"}"#)
        );
        let bearer = r#"{"headers":{"X":"Bearer eyJhbGciOi.J9.x-_"},"args":["basic dXNlcjpwYXNz","Bearer of news"]}"#;
        let want = r#"{"headers":{"X":"Bearer [REDACTED]"},"args":["basic [REDACTED]","Bearer of news"]}"#;
        assert_eq!(red(bearer).as_deref(), Some(want));
        for out in [red(doc), red(deep), red(bearer)] {
            assert!(json::is_valid(out.unwrap_or_default().as_bytes()));
        }
        // Nothing to do, and already redacted payloads stay untouched.
        assert_eq!(
            red(r#"{"progressToken":"p1","maxTokens":100,"text":"my password is long"}"#),
            None
        );
        assert_eq!(red(r#"{"password":"[REDACTED]","h":"Bearer [REDACTED]"}"#), None);
        assert_eq!(
            RedactionRules::none().payload(&Bytes::from_static(br#"{"password":"x"}"#)),
            None
        );
    }

    #[test]
    fn text_is_redacted_too() {
        assert_eq!(
            red("connecting with password=hunter2 to db").as_deref(),
            Some("connecting with password=[REDACTED] to db")
        );
        assert_eq!(
            red("GET /x?api_key=abc&user=me&access-token=t").as_deref(),
            Some("GET /x?api_key=[REDACTED]&user=me&access-token=[REDACTED]")
        );
        assert_eq!(
            red("Authorization: bearer abc.def\n").as_deref(),
            Some("Authorization: bearer [REDACTED]\n")
        );
        assert_eq!(
            red(r#"{"params":{"token": "abc", "password":12,"#).as_deref(),
            Some(r#"{"params":{"token": "[REDACTED]", "password":"[REDACTED]","#)
        );
        assert_eq!(
            red(r#"{"client_secret":"abc"#).as_deref(),
            Some(r#"{"client_secret":"[REDACTED]"#)
        );
        assert_eq!(red("plain log line, nothing here = fine"), None);
        assert_eq!(red("password=[REDACTED] Bearer [REDACTED]"), None);
        assert_eq!(red("\u{1}\"\\"), None);
    }

    #[test]
    fn describe_is_compact_json() {
        let d = RedactionRules::default().describe();
        assert!(d.starts_with("{\"enabled\":true,\"headers\":[\"authorization\""));
        assert_eq!(
            serde_json::from_str::<RedactionRules>(&d).ok(),
            Some(RedactionRules::default())
        );
    }

    /// The rules the equivalence properties are checked under: the defaults, none, and extra and kept names.
    fn rule_sets() -> [RedactionRules; 3] {
        [
            RedactionRules::default(),
            RedactionRules::none(),
            RedactionRules {
                keys: vec!["x".into(), "Session-Key".into()],
                keep_keys: vec!["access_token".into(), "cookie".into()],
                ..RedactionRules::default()
            },
        ]
    }

    /// Key matching as first written (keep list first, every name compared): the fast paths must agree with it.
    fn reference_is_secret_key(r: &RedactionRules, raw_key: &[u8]) -> bool {
        if !r.enabled {
            return false;
        }
        let key = match raw_key.contains(&b'\\') {
            true => json::unescape_str(raw_key).map_or(raw_key.to_vec(), String::into_bytes),
            false => raw_key.to_vec(),
        };
        let n: Vec<u8> = key
            .iter()
            .filter(|b| !matches!(b, b'_' | b'-' | b'.'))
            .map(u8::to_ascii_lowercase)
            .collect();
        let eq = |name: &String| normalized_eq(name, &n);
        if r.keep_keys.iter().any(eq) {
            return false;
        }
        SECRET_KEYS.iter().any(|k| k.as_bytes() == n)
            || SECRET_SUFFIXES.iter().any(|s| n.ends_with(s.as_bytes()))
            || r.keys.iter().any(eq)
    }

    #[test]
    fn the_key_filter_lets_every_name_through() {
        for name in SECRET_KEYS.iter().chain(&SECRET_SUFFIXES) {
            let b = name.as_bytes();
            assert!(b.len() >= SHORTEST_SECRET, "{name}");
            assert!(may_end_a_name(b[b.len() - 2], b[b.len() - 1]), "{name}");
            assert!(
                RedactionRules::default().is_secret_key(name.to_uppercase().as_bytes()),
                "{name}"
            );
        }
        assert!(
            SECRET_KEYS
                .iter()
                .chain(&SECRET_SUFFIXES)
                .any(|n| n.len() == SHORTEST_SECRET)
        );
    }

    fn has_secret(r: &RedactionRules, v: &serde_json::Value) -> bool {
        use serde_json::Value;
        match v {
            Value::String(s) => auth_scheme(s.as_bytes()).is_some(),
            Value::Array(a) => a.iter().any(|v| has_secret(r, v)),
            Value::Object(m) => m.iter().any(|(k, v)| r.is_secret_key(k.as_bytes()) || has_secret(r, v)),
            _ => false,
        }
    }

    proptest! {
        #[test]
        fn header_names_match_as_when_normalized_into_a_string(
            name in "[a-zA-Z_.-]{0,20}((?i)token|secret|pass-word|api_key|credential)?[a-zA-Z_.Ä-]{0,90}",
        ) {
            let normalized: String =
                name.to_ascii_lowercase().chars().filter(|c| !matches!(c, '-' | '_' | '.')).collect();
            let want = HEADER_PATTERNS.iter().any(|p| normalized.contains(p));
            prop_assert_eq!(secret_header_name(&name), want, "{}", name);
        }

        #[test]
        fn json_without_secrets_is_left_alone(v in crate::wire::json::tests::arb_json()) {
            let r = RedactionRules::default();
            prop_assume!(!has_secret(&r, &v));
            let bytes = Bytes::from(serde_json::to_vec(&v).unwrap());
            prop_assert_eq!(r.payload(&bytes), None);
        }

        #[test]
        fn redacted_json_stays_json(
            v in crate::wire::json::tests::arb_json(),
            key in prop::sample::select(vec!["password", "access_token", "apiKey", "name", "progressToken"]),
            secret in crate::wire::json::tests::arb_json(),
        ) {
            let doc = serde_json::json!({"params": {"x": [v, {key: secret.clone()}]}, key: "Bearer abc"});
            let bytes = Bytes::from(serde_json::to_vec_pretty(&doc).unwrap());
            let r = RedactionRules::default();
            let out = r.payload(&bytes);
            if r.is_secret_key(key.as_bytes()) {
                let out = out.unwrap();
                prop_assert!(json::is_valid(&out));
                let back: serde_json::Value = serde_json::from_slice(&out).unwrap();
                prop_assert_eq!(&back[key], REDACTED);
                prop_assert_eq!(&back["params"]["x"][1][key], REDACTED);
                prop_assert_eq!(r.payload(&out), None);
            } else if let Some(out) = out {
                prop_assert!(json::is_valid(&out));
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = RedactionRules::default().payload(&Bytes::from(bytes));
        }

        #[test]
        fn one_walk_equals_classify_then_redact_on_json(
            v in crate::wire::json::tests::arb_json(),
            key in prop::sample::select(vec!["password", "access_token", "apiKey", "name", "progressToken", "x"]),
            secret in crate::wire::json::tests::arb_json(),
            shape in 0u8..4,
            pretty in any::<bool>(),
            lead in prop::collection::vec(prop::sample::select(vec![b' ', b'\t', b'\n', b'\r', 0x0c]), 0..3),
            trail in prop::collection::vec(prop::sample::select(vec![b' ', b'\t', b'\n', b'\r', 0x0c]), 0..3),
        ) {
            let doc = match shape {
                0 => v,
                1 => serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                    "params": {"x": [v, {key: secret}], "_meta": {"progressToken": "p"}}, key: "Bearer abc"}),
                2 => serde_json::json!({"id": v, "result": {key: secret, "protocolVersion": "2025-11-25"}}),
                _ => serde_json::json!([
                    {"id": 1, "method": "a", "params": {key: secret}}, {"id": 2, "error": {"code": 3}}, v
                ]),
            };
            let text = if pretty { serde_json::to_vec_pretty(&doc) } else { serde_json::to_vec(&doc) };
            let bytes = Bytes::from([lead, text.unwrap(), trail].concat());
            for rules in rule_sets() {
                let separate = (envelope::classify(&bytes), rules.payload(&bytes));
                prop_assert_eq!(classify_and_redact(&bytes, &rules), separate);
            }
        }

        #[test]
        fn one_walk_equals_classify_then_redact_on_any_bytes(
            bytes in prop::collection::vec(prop_oneof![
                4 => any::<u8>(),
                4 => prop::sample::select(b"{}[],:\"\\ \x0c0123-eEtrufalsn".to_vec()),
            ], 0..256),
            text in "\\PC{0,40}",
        ) {
            for b in [Bytes::from(bytes), Bytes::from(format!("{{\"token\": \"{text}\", \"password\":1, {text}"))] {
                for rules in rule_sets() {
                    let separate = (envelope::classify(&b), rules.payload(&b));
                    prop_assert_eq!(classify_and_redact(&b, &rules), separate);
                }
            }
        }

        #[test]
        fn secret_keys_match_the_reference(
            parts in prop::collection::vec(prop::sample::select(vec![
                "token", "Token", "secret", "pass", "word", "api", "Key", "x", "access", "refresh", "progress", "max",
                "s", "_", "-", ".", "\\u0074", "\\u005f", "\\\"", "\\", "\u{e9}", "cookie", "credential", "ty",
                "passwd", "priv", "ate", "verifier", "code", "authorization", "en", "id",
            ]), 0..5),
        ) {
            let key = parts.concat();
            for rules in rule_sets() {
                let want = reference_is_secret_key(&rules, key.as_bytes());
                prop_assert_eq!(rules.is_secret_key(key.as_bytes()), want, "{}", key);
            }
        }

        #[test]
        fn text_pass_keeps_unrelated_bytes(text in "[a-f =&,;\"\n]{0,60}") {
            let r = RedactionRules::default();
            let input = format!("{{{text} password=hunter2 {text}");
            let out = r.payload(&Bytes::from(input.clone())).unwrap();
            prop_assert_eq!(String::from_utf8_lossy(&out), input.replace("password=hunter2", "password=[REDACTED]"));
        }
    }
}

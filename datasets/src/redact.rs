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

use std::borrow::Cow;

use bytes::Bytes;
use memchr::{memchr, memchr2};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

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
        if !self.enabled {
            return Cow::Borrowed(value);
        }
        let lower = name.trim().to_ascii_lowercase();
        let listed = |list: &[String]| list.iter().any(|h| h.eq_ignore_ascii_case(&lower));
        if listed(&self.hashed_headers) {
            return Cow::Owned(Self::hash(value));
        }
        let normalized: String = lower.chars().filter(|c| !matches!(c, '-' | '_' | '.')).collect();
        if listed(&self.headers) || HEADER_PATTERNS.iter().any(|p| normalized.contains(p)) {
            return Cow::Borrowed(REDACTED);
        }
        Cow::Borrowed(value)
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
        let decoded;
        let key = if memchr(b'\\', raw_key).is_some() {
            decoded = json::unescape_str(raw_key).map(String::into_bytes);
            decoded.as_deref().unwrap_or(raw_key)
        } else {
            raw_key
        };
        // Called for every member of every payload: normalize on the stack unless the key is long.
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
        if self.keep_keys.iter().any(eq) {
            return false;
        }
        SECRET_KEYS.iter().any(|k| k.as_bytes() == n)
            || SECRET_SUFFIXES.iter().any(|s| n.ends_with(s.as_bytes()))
            || self.keys.iter().any(eq)
    }

    /// Redacts a payload. `None` when nothing matched (keep the original); otherwise the redacted bytes.
    pub fn payload(&self, payload: &Bytes) -> Option<Bytes> {
        if !self.enabled {
            return None;
        }
        let mut edits = JsonEdits {
            rules: self,
            bytes: payload,
            edits: Vec::new(),
        };
        let edits = match json::walk(payload, usize::MAX, &mut edits) {
            Ok(_) => edits.edits,
            Err(_) => self.text_edits(payload),
        };
        if edits.is_empty() {
            None
        } else {
            Some(splice(payload, &edits))
        }
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

impl JsonEdits<'_> {
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
        fn text_pass_keeps_unrelated_bytes(text in "[a-f =&,;\"\n]{0,60}") {
            let r = RedactionRules::default();
            let input = format!("{{{text} password=hunter2 {text}");
            let out = r.payload(&Bytes::from(input.clone())).unwrap();
            prop_assert_eq!(String::from_utf8_lossy(&out), input.replace("password=hunter2", "password=[REDACTED]"));
        }
    }
}

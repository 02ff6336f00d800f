//! JSON-RPC envelope classification: what a message is, derived from its bytes in one scan.
//!
//! Every captured frame gets its `kind`, `method`, `rpc_id`, `error_code` and `protocol_version` columns from
//! here, on the recorder's writer task and again in `dataset recover`, so it must be cheap and total: one pass of
//! the [`json`](super::json) scanner limited to depth 3, no tree, no panics. It is lenient on purpose: a tap
//! records what it sees, so `"jsonrpc": "2.0"` is not required and anything unrecognised is `Invalid`, not an error.
//! The id is kept as its exact JSON text because `7` and `"7"` are different ids.

use std::borrow::Cow;

use super::json::{self, Span, ValueType, Visitor};
use crate::frame::Kind;

/// What one JSON-RPC message (or batch) is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Request, Notification, Response, Error, Batch or Invalid (never Lifecycle).
    pub kind: Kind,
    /// Method of a request or notification.
    pub method: Option<String>,
    /// Exact JSON text of `id` (`7`, `"7"`, `null`), when the message is an object with an `id`.
    pub rpc_id: Option<String>,
    /// `error.code` when it is an integer that fits an `i32`.
    pub error_code: Option<i32>,
    /// First string found of `params._meta["io.modelcontextprotocol/protocolVersion"]`,
    /// `params.protocolVersion` (initialize request) and `result.protocolVersion` (initialize result).
    pub protocol_version: Option<String>,
    /// Batch elements, each classified (non-objects are `Invalid`).
    pub items: Vec<Envelope>,
}

impl Envelope {
    fn invalid() -> Self {
        Envelope {
            kind: Kind::Invalid,
            method: None,
            rpc_id: None,
            error_code: None,
            protocol_version: None,
            items: Vec::new(),
        }
    }
}

/// The `_meta` key carrying the protocol version on every 2026-07-28 request.
const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";

/// Classifies one message. Surrounding ASCII whitespace is ignored; bytes that are not JSON are `Invalid`.
pub fn classify(payload: &[u8]) -> Envelope {
    let bytes = payload.trim_ascii();
    let mut c = Classifier::new(bytes);
    let top = json::walk(bytes, 3, &mut c);
    c.finish(top)
}

/// The [`Visitor`] behind [`classify`], for callers that walk a message once for several purposes
/// (`redact::classify_and_redact`). Feed it a walk of the trimmed message, then [`Classifier::finish`] the result.
///
/// Only members up to depth 3 matter to it; deeper ones are ignored, so the walk's depth limit may be larger.
pub(crate) struct Classifier<'a> {
    bytes: &'a [u8],
    /// Members of a batch element sit one container deeper than their path says.
    base: usize,
    fields: Fields,
    items: Vec<Envelope>,
}

impl<'a> Classifier<'a> {
    /// A classifier of `bytes`: the message without surrounding whitespace, exactly what is walked.
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Classifier {
            bytes,
            base: usize::from(bytes.first() == Some(&b'[')),
            fields: Fields::default(),
            items: Vec::new(),
        }
    }

    /// The envelope, given what the walk returned.
    pub(crate) fn finish(self, top: Result<ValueType, json::ScanError>) -> Envelope {
        match top {
            Ok(ValueType::Object) => self.fields.finish(self.bytes),
            Ok(ValueType::Array) => Envelope {
                kind: Kind::Batch,
                items: self.items,
                ..Envelope::invalid()
            },
            _ => Envelope::invalid(),
        }
    }
}

/// What the scan saw of one message object (spans into the input).
#[derive(Default)]
struct Fields {
    has_method: bool,
    method: Option<Span>,
    id: Option<Span>,
    has_result: bool,
    has_error: bool,
    code: Option<Span>,
    meta_version: Option<Span>,
    params_version: Option<Span>,
    result_version: Option<Span>,
}

impl<'a> Visitor<'a> for Classifier<'a> {
    fn member(&mut self, path: &[&'a [u8]], nesting: usize, span: Span, ty: ValueType) {
        // A member inside an array has the same path as a direct one; only direct members count.
        if nesting != path.len() + self.base {
            return;
        }
        let f = &mut self.fields;
        let string = ty == ValueType::String;
        match path {
            // Every member of the message object: one look at the key instead of one per name.
            [k] => match decoded_key(k).as_ref() {
                b"method" => {
                    f.has_method = true;
                    f.method = string.then_some(span);
                }
                b"id" => f.id = Some(span),
                b"result" => f.has_result = true,
                b"error" => f.has_error = true,
                _ => {}
            },
            [a, b] if ty == ValueType::Number && key_is(a, "error") && key_is(b, "code") => f.code = Some(span),
            [a, b] if string && key_is(b, "protocolVersion") => {
                if key_is(a, "params") {
                    f.params_version = Some(span);
                } else if key_is(a, "result") {
                    f.result_version = Some(span);
                }
            }
            [a, b, c] if string && key_is(a, "params") && key_is(b, "_meta") && key_is(c, META_PROTOCOL_VERSION) => {
                f.meta_version = Some(span)
            }
            _ => {}
        }
    }

    fn element(&mut self, nesting: usize, _span: Span, ty: ValueType) {
        if nesting == 1 && self.base == 1 {
            let fields = std::mem::take(&mut self.fields);
            self.items.push(match ty {
                ValueType::Object => fields.finish(self.bytes),
                _ => Envelope::invalid(),
            });
        }
    }
}

impl Fields {
    fn finish(self, bytes: &[u8]) -> Envelope {
        let string = |s: Option<Span>| s.and_then(|s| json::unescape_str(string_body(s.of(bytes))));
        let method = string(self.method);
        let kind = match (self.has_method, &method, self.id) {
            (true, Some(_), Some(_)) => Kind::Request,
            (true, Some(_), None) => Kind::Notification,
            (false, _, Some(_)) if self.has_result => Kind::Response,
            (false, _, Some(_)) if self.has_error => Kind::Error,
            _ => Kind::Invalid,
        };
        Envelope {
            kind,
            method,
            rpc_id: self.id.map(|s| String::from_utf8_lossy(s.of(bytes)).into_owned()),
            error_code: self
                .code
                .and_then(|s| std::str::from_utf8(s.of(bytes)).ok()?.parse().ok()),
            protocol_version: string(self.meta_version.or(self.params_version).or(self.result_version)),
            items: Vec::new(),
        }
    }
}

/// The bytes between the quotes of a string value's span.
fn string_body(quoted: &[u8]) -> &[u8] {
    quoted.get(1..quoted.len().saturating_sub(1)).unwrap_or(&[])
}

/// Does a raw (possibly escaped) key equal `name`?
fn key_is(raw: &[u8], name: &str) -> bool {
    // An escape is longer than what it stands for, so only a longer key can be an escaped spelling of `name`.
    raw == name.as_bytes()
        || (raw.len() > name.len() && raw.contains(&b'\\') && json::unescape_str(raw).as_deref() == Some(name))
}

/// A raw key with its escapes decoded (borrowed when it has none). A key that does not decode stays raw: it still
/// has its backslash, so it equals no name we look for.
fn decoded_key(raw: &[u8]) -> Cow<'_, [u8]> {
    if raw.contains(&b'\\') {
        if let Some(k) = json::unescape_str(raw) {
            return Cow::Owned(k.into_bytes());
        }
    }
    Cow::Borrowed(raw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn c(s: &str) -> Envelope {
        classify(s.as_bytes())
    }

    #[test]
    fn requests_and_notifications() {
        let e = c(r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"x"}}"#);
        assert_eq!(
            (e.kind, e.method.as_deref(), e.rpc_id.as_deref()),
            (Kind::Request, Some("tools/call"), Some("7"))
        );
        let e = c(r#"{"jsonrpc":"2.0","id":"7","method":"ping"}"#);
        assert_eq!((e.kind, e.rpc_id.as_deref()), (Kind::Request, Some("\"7\"")));
        let e = c(r#"{"method":"notifications/initialized"}"#);
        assert_eq!(
            (e.kind, e.method.as_deref(), e.rpc_id),
            (Kind::Notification, Some("notifications/initialized"), None)
        );
        // Escaped method names and keys are decoded.
        let e = c(r#"{"m\u0065thod":"a\/b","id":1}"#);
        assert_eq!((e.kind, e.method.as_deref()), (Kind::Request, Some("a/b")));
        // A non-string method makes the message invalid, even with an id and a result.
        assert_eq!(c(r#"{"method":5,"id":1}"#).kind, Kind::Invalid);
        assert_eq!(c(r#"{"method":null,"id":1,"result":{}}"#).kind, Kind::Invalid);
    }

    #[test]
    fn responses_errors_and_ids() {
        let e = c(r#"{"jsonrpc":"2.0","id":7,"result":{}}"#);
        assert_eq!(
            (e.kind, e.rpc_id.as_deref(), e.method),
            (Kind::Response, Some("7"), None)
        );
        let e = c(r#"{"id":null,"error":{"code":-32700,"message":"Parse error"}}"#);
        assert_eq!(
            (e.kind, e.rpc_id.as_deref(), e.error_code),
            (Kind::Error, Some("null"), Some(-32700))
        );
        assert_eq!(c(r#"{"id":1,"error":{"code":1.5}}"#).error_code, None);
        assert_eq!(c(r#"{"id":1,"error":{"code":99999999999}}"#).error_code, None);
        assert_eq!(c(r#"{"id":1,"error":{"code":"x"}}"#).error_code, None);
        assert_eq!(c(r#"{"id":1,"error":{"data":{"code":3}}}"#).error_code, None);
        let e = c(r#"{"id": "a\"b" ,"result":null}"#);
        assert_eq!((e.kind, e.rpc_id.as_deref()), (Kind::Response, Some(r#""a\"b""#)));
        // An id alone is not a message, but the id is kept.
        let e = c(r#"{"id":3}"#);
        assert_eq!((e.kind, e.rpc_id.as_deref()), (Kind::Invalid, Some("3")));
        assert_eq!(c(r#"{"result":1}"#).kind, Kind::Invalid);
    }

    #[test]
    fn protocol_versions() {
        let meta = r#"{"id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;
        assert_eq!(c(meta).protocol_version.as_deref(), Some("2026-07-28"));
        let escaped =
            r#"{"id":1,"method":"x","params":{"_meta":{"io.modelcontextprotocol\/protocolVersion":"2026-07-28"}}}"#;
        assert_eq!(c(escaped).protocol_version.as_deref(), Some("2026-07-28"));
        let init = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{}}}"#;
        assert_eq!(c(init).protocol_version.as_deref(), Some("2025-11-25"));
        let result = r#"{"jsonrpc":"2.0","id":0,"result":{"protocolVersion":"2025-06-18","serverInfo":{}}}"#;
        assert_eq!(c(result).protocol_version.as_deref(), Some("2025-06-18"));
        // _meta wins over params.protocolVersion regardless of order.
        let both = r#"{"id":1,"method":"x","params":{"protocolVersion":"old","_meta":{"io.modelcontextprotocol/protocolVersion":"new"}}}"#;
        assert_eq!(c(both).protocol_version.as_deref(), Some("new"));
        // Only strings, only at the right place.
        assert_eq!(c(r#"{"id":1,"result":{"protocolVersion":5}}"#).protocol_version, None);
        assert_eq!(
            c(r#"{"id":1,"result":{"x":{"protocolVersion":"v"}}}"#).protocol_version,
            None
        );
        assert_eq!(
            c(r#"{"id":1,"result":[{"protocolVersion":"v"}]}"#).protocol_version,
            None
        );
        assert_eq!(
            c(r#"{"id":1,"result":{"tools":[{"id":9}]}}"#).rpc_id.as_deref(),
            Some("1")
        );
    }

    #[test]
    fn batches() {
        let e = c(r#" [{"id":1,"method":"a"},{"method":"n"},{"id":2,"result":{}},3,[{"id":4,"method":"b"}]] "#);
        assert_eq!(e.kind, Kind::Batch);
        let kinds: Vec<_> = e.items.iter().map(|i| i.kind).collect();
        assert_eq!(
            kinds,
            [
                Kind::Request,
                Kind::Notification,
                Kind::Response,
                Kind::Invalid,
                Kind::Invalid
            ]
        );
        assert_eq!(e.items[0].rpc_id.as_deref(), Some("1"));
        assert_eq!(e.items[1].rpc_id, None);
        assert_eq!(e.items[2].rpc_id.as_deref(), Some("2"));
        assert_eq!(
            c("[]"),
            Envelope {
                kind: Kind::Batch,
                ..Envelope::invalid()
            }
        );
        let nested = c(r#"[{"id":1,"result":{"items":[{"id":5,"error":{"code":1}}]}}]"#);
        assert_eq!(
            (nested.items[0].kind, nested.items[0].error_code),
            (Kind::Response, None)
        );
    }

    #[test]
    fn whitespace_and_garbage() {
        assert_eq!(c(" \r\n\t{\"method\":\"a\"}\n\x0c").kind, Kind::Notification);
        for bad in [
            "",
            "   ",
            "5",
            "\"x\"",
            "null",
            "{\"method\":\"a\"",
            "{\"method\":\"a\"}}",
            "{\"id\":1,",
        ] {
            assert_eq!(c(bad), Envelope::invalid(), "{bad:?}");
        }
        assert_eq!(classify(b"{\"method\":\"\xff\"}"), Envelope::invalid());
        assert_eq!(classify(b"\xfe\xff{}"), Envelope::invalid());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let e = classify(&bytes);
            prop_assert!(e.kind != Kind::Lifecycle);
        }

        #[test]
        fn arbitrary_json_is_classified_like_serde_would(v in crate::wire::json::tests::arb_json()) {
            let text = serde_json::to_vec(&v).unwrap();
            let e = classify(&text);
            let expect = match &v {
                serde_json::Value::Array(_) => Kind::Batch,
                serde_json::Value::Object(m) => match (m.get("method"), m.get("id")) {
                    (Some(serde_json::Value::String(_)), Some(_)) => Kind::Request,
                    (Some(serde_json::Value::String(_)), None) => Kind::Notification,
                    (Some(_), _) => Kind::Invalid,
                    (None, Some(_)) if m.contains_key("result") => Kind::Response,
                    (None, Some(_)) if m.contains_key("error") => Kind::Error,
                    _ => Kind::Invalid,
                },
                _ => Kind::Invalid,
            };
            prop_assert_eq!(e.kind, expect);
            if let Some(id) = v.get("id") {
                prop_assert_eq!(e.rpc_id, Some(serde_json::to_string(id).unwrap()));
            }
        }

        #[test]
        fn generated_messages_round_trip(
            id in prop_oneof![any::<i64>().prop_map(serde_json::Value::from), "\\PC{0,8}".prop_map(serde_json::Value::from)],
            method in "\\PC{1,12}",
            version in "[0-9-]{10}",
            code in any::<i32>(),
        ) {
            let req = serde_json::json!({"jsonrpc":"2.0","id":id,"method":method,
                "params":{"_meta":{META_PROTOCOL_VERSION:version}}});
            let e = classify(&serde_json::to_vec(&req).unwrap());
            prop_assert_eq!(e.kind, Kind::Request);
            prop_assert_eq!(e.method.as_deref(), Some(method.as_str()));
            prop_assert_eq!(e.protocol_version.as_deref(), Some(version.as_str()));
            prop_assert_eq!(e.rpc_id, Some(id.to_string()));
            let err = serde_json::json!({"jsonrpc":"2.0","id":id,"error":{"code":code,"message":"m"}});
            let e = classify(&serde_json::to_vec_pretty(&err).unwrap());
            prop_assert_eq!((e.kind, e.error_code), (Kind::Error, Some(code)));
        }
    }
}

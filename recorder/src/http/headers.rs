//! Header handling as a proxy must do it (RFC 9110 §7.6): hop-by-hop fields are the tap's own business and are
//! not forwarded; everything else passes through unchanged, and each forwarded message gets a `Via` entry.

use std::borrow::Cow;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use mcptape_datasets::redact::{REDACTED, RedactionRules};

/// Fields that are hop-by-hop whatever `Connection` says (RFC 9110 §7.6.1 and the obsolete `Proxy-Connection`).
/// Names, not strings: removing by a string parses it on every request.
const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    HeaderName::from_static("proxy-connection"),
    HeaderName::from_static("keep-alive"),
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// `Mcp-Session-Id`.
pub(crate) const MCP_SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");
/// `MCP-Protocol-Version`.
pub(crate) const MCP_PROTOCOL_VERSION: HeaderName = HeaderName::from_static("mcp-protocol-version");

/// What the tap adds to `Via`.
const VIA: &str = "1.1 mcptape";

/// Removes the hop-by-hop fields: the fixed ones and those that `Connection` names.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Usually there are none: one pass over the few names present is cheaper than a lookup per hop-by-hop name.
    if !headers.keys().any(|n| HOP_BY_HOP.contains(n)) {
        return;
    }
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
            .collect();
        for n in named {
            headers.remove(n);
        }
    }
    for n in &HOP_BY_HOP {
        if headers.contains_key(n) {
            headers.remove(n);
        }
    }
}

/// `Via` with the tap added: the message's own entries, all of them and in order, then [`VIA`] (RFC 9110 §7.6.3).
/// The request side writes it straight into the upstream request; [`add_via`] puts it into a header map.
pub(crate) fn via_with_tap(headers: &HeaderMap) -> Cow<'static, [u8]> {
    if !headers.contains_key(header::VIA) {
        return Cow::Borrowed(VIA.as_bytes());
    }
    let mut via = Vec::new();
    for v in headers.get_all(header::VIA) {
        via.extend_from_slice(v.as_bytes());
        via.extend_from_slice(b", ");
    }
    via.extend_from_slice(VIA.as_bytes());
    Cow::Owned(via)
}

/// Appends the tap to `Via`.
pub(crate) fn add_via(headers: &mut HeaderMap) {
    let value = match via_with_tap(headers) {
        Cow::Borrowed(_) => Ok(HeaderValue::from_static(VIA)),
        Cow::Owned(v) => HeaderValue::from_bytes(&v),
    };
    if let Ok(v) = value {
        headers.insert(header::VIA, v);
    }
}

/// A header's value as text, if present and valid.
pub(crate) fn text<K: header::AsHeaderName>(headers: &HeaderMap, name: K) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The media type of `Content-Type`, without parameters, as sent (media types compare case-insensitively).
pub(crate) fn media_type(headers: &HeaderMap) -> Option<&str> {
    let ct = text(headers, header::CONTENT_TYPE)?;
    Some(ct.split(';').next().unwrap_or("").trim())
}

/// Path and query for the capture, with the values of secret-looking query parameters (`?api_key=…`,
/// `?access_token=…`) replaced by `[REDACTED]` under the same key rules as payloads. Header values are redacted
/// by the tap's writer; a path is not a header, so it is done here.
pub(crate) fn recorded_path(path_and_query: &str, rules: &RedactionRules) -> String {
    let Some((path, query)) = path_and_query.split_once('?') else {
        return path_and_query.to_string();
    };
    let mut out = String::with_capacity(path_and_query.len());
    out.push_str(path);
    out.push('?');
    for (i, pair) in query.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        match pair.split_once('=') {
            Some((k, _)) if rules.is_secret_key(k.as_bytes()) => {
                out.push_str(k);
                out.push('=');
                out.push_str(REDACTED);
            }
            _ => out.push_str(pair),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_fields_and_the_ones_connection_names_are_removed() {
        let mut h = HeaderMap::new();
        for (n, v) in [
            ("connection", "keep-alive, X-Hop"),
            ("keep-alive", "timeout=5"),
            ("x-hop", "1"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("te", "trailers"),
            ("mcp-session-id", "abc"),
            ("authorization", "Bearer t"),
            ("via", "1.0 fred"),
        ] {
            h.append(HeaderName::from_static(n), HeaderValue::from_static(v));
        }
        strip_hop_by_hop(&mut h);
        add_via(&mut h);
        let mut names: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["authorization", "mcp-session-id", "via"]);
        assert_eq!(h["via"], "1.0 fred, 1.1 mcptape");
        let mut h = HeaderMap::new();
        h.append(header::VIA, HeaderValue::from_static("1.0 a"));
        h.append(header::VIA, HeaderValue::from_static("1.1 b"));
        add_via(&mut h);
        assert_eq!(
            h.get_all(header::VIA).iter().collect::<Vec<_>>(),
            ["1.0 a, 1.1 b, 1.1 mcptape"]
        );
    }

    #[test]
    fn secret_query_values_are_redacted_in_recorded_paths() {
        let r = RedactionRules::default();
        assert_eq!(recorded_path("/mcp", &r), "/mcp");
        assert_eq!(
            recorded_path("/message?sessionId=ab&api_key=k&access_token=t&x", &r),
            "/message?sessionId=ab&api_key=[REDACTED]&access_token=[REDACTED]&x"
        );
        assert_eq!(recorded_path("/m?api_key=k", &RedactionRules::none()), "/m?api_key=k");
    }
}

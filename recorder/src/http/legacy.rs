//! The deprecated 2024-11-05 HTTP+SSE transport: the client opens `GET /sse`, the server's first event is
//! `endpoint` with the URL to post messages to, and answers arrive on the stream.
//!
//! The client must post back through the tap, so the endpoint is made a path on the tap: an absolute URL on the
//! upstream's origin becomes its path-and-query (a client resolves that against the tap's address), a relative
//! one is resolved against the upstream path that was requested. An endpoint already given as an absolute path
//! is left byte for byte as it is. Posts to that path then join the stream's session.
//!
//! Only the first event of such a stream can be rewritten, so the tap holds the stream's bytes until that event is
//! complete (complete comment blocks before it are passed on at once); after it, bytes pass through untouched.

use bytes::Bytes;

use super::upstream::Upstream;

/// The most the tap holds while waiting for the first event of a possible legacy stream.
pub(crate) const HOLD_MAX: usize = 64 * 1024;

/// The path-and-query (on the upstream's origin, and so on the tap) that an `endpoint` event's data names, or
/// `None` when it points at another origin (the client then posts there directly, past the tap).
pub(crate) fn endpoint_path(upstream: &Upstream, requested: &str, data: &str) -> Option<String> {
    let data = data.trim();
    if data.contains("://") {
        return upstream.same_origin_path(data).map(str::to_string);
    }
    if let Some(rest) = data.strip_prefix("//") {
        // Scheme-relative: the upstream's scheme.
        return upstream
            .same_origin_path(&format!("{}://{rest}", upstream.http_scheme()))
            .map(str::to_string);
    }
    if data.starts_with('/') {
        return Some(data.to_string());
    }
    // Relative to the directory of the requested path (its query dropped).
    let path = requested.split(['?', '#']).next().unwrap_or("/");
    let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
    let dir = if dir.is_empty() { "/" } else { dir };
    Some(format!("{dir}{data}"))
}

/// `held` with the value of the `data` line that carries `old` replaced by `new`; `None` if no such line.
pub(crate) fn replace_data(held: &[u8], old: &str, new: &str) -> Option<Bytes> {
    let old = old.as_bytes();
    let mut from = 0;
    while let Some(at) = find(&held[from..], b"data:").map(|i| from + i) {
        let mut v = at + 5;
        if held.get(v) == Some(&b' ') {
            v += 1;
        }
        let end = v + old.len();
        let line_ends = matches!(held.get(end), Some(b'\r' | b'\n'));
        if held.get(v..end) == Some(old) && line_ends {
            let mut out = Vec::with_capacity(held.len() + new.len());
            out.extend_from_slice(&held[..v]);
            out.extend_from_slice(new.as_bytes());
            out.extend_from_slice(&held[end..]);
            return Some(Bytes::from(out));
        }
        from = at + 5;
    }
    None
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The offset just past the last blank line in `buf` (the end of the last complete block of SSE lines).
pub(crate) fn last_boundary(buf: &[u8]) -> Option<usize> {
    let (mut line_start, mut i, mut last) = (0, 0, None);
    while i < buf.len() {
        if matches!(buf[i], b'\r' | b'\n') {
            let mut end = i + 1;
            if buf[i] == b'\r' && buf.get(end) == Some(&b'\n') {
                end += 1;
            }
            if i == line_start {
                last = Some(end);
            }
            line_start = end;
            i = end;
        } else {
            i += 1;
        }
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_become_paths_on_the_tap() {
        let u = Upstream::parse("http://127.0.0.1:3001/sse").unwrap();
        let p = |d: &str| endpoint_path(&u, "/sse", d);
        assert_eq!(p("/message?sessionId=1").as_deref(), Some("/message?sessionId=1"));
        assert_eq!(
            p("http://127.0.0.1:3001/message?sessionId=1").as_deref(),
            Some("/message?sessionId=1")
        );
        assert_eq!(p("//127.0.0.1:3001/m").as_deref(), Some("/m"));
        assert_eq!(p("http://elsewhere/m"), None);
        assert_eq!(
            endpoint_path(&u, "/api/sse?x=1", "messages?s=2").as_deref(),
            Some("/api/messages?s=2")
        );
        assert_eq!(endpoint_path(&u, "", "m").as_deref(), Some("/m"));
    }

    #[test]
    fn data_lines_are_replaced_in_place() {
        let held = b"event: endpoint\r\ndata: http://h:1/message?s=1\r\n\r\n: x\n";
        let out = replace_data(held, "http://h:1/message?s=1", "/message?s=1").unwrap();
        assert_eq!(&out[..], b"event: endpoint\r\ndata: /message?s=1\r\n\r\n: x\n");
        let out = replace_data(b"data:http://a/b\n\n", "http://a/b", "/b").unwrap();
        assert_eq!(&out[..], b"data:/b\n\n");
        assert!(replace_data(b"data: http://a/bc\n\n", "http://a/b", "/b").is_none());
    }

    #[test]
    fn boundaries_are_blank_lines_whatever_the_line_ends() {
        assert_eq!(last_boundary(b": ping\n\ndata: {"), Some(8));
        assert_eq!(last_boundary(b": ping\r\n\r\n"), Some(10));
        assert_eq!(last_boundary(b": a\r\r: b\n"), Some(5));
        assert_eq!(last_boundary(b"data: x\n"), None);
    }
}

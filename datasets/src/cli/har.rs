//! `mcptape dataset export --format har`: HTTP captures as HAR 1.2, for browser dev tools, proxies and HAR viewers.
//!
//! One entry per HTTP exchange (a session's `stream_id`: one POST, GET or DELETE and its answer). Headers are the
//! stored ones, so they stay redacted; an SSE answer is rebuilt as `text/event-stream` text from its events. The
//! capture holds no host for the request line, so URLs are the capture's upstream origin plus the recorded path.
//! stdio and WebSocket captures have no HTTP exchanges and are refused with a clear error.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::{Value, json};

use crate::frame::{Direction, Frame, Kind, Transport};
use crate::scan::Scan;

/// The exchanges of one capture as a HAR document.
pub fn har(frames: &[(String, Frame)]) -> Value {
    // (session, stream) in order of first appearance.
    let mut order: Vec<(String, u32)> = Vec::new();
    let mut groups: HashMap<(String, u32), Vec<&(String, Frame)>> = HashMap::new();
    for item in frames {
        let f = &item.1;
        if f.http.is_none() && f.transport != Transport::Sse && f.transport != Transport::Http {
            continue;
        }
        let key = (f.session_id.clone(), f.stream_id);
        groups
            .entry(key.clone())
            .or_insert_with(|| {
                order.push(key.clone());
                Vec::new()
            })
            .push(item);
    }
    let entries: Vec<Value> = order.iter().filter_map(|k| entry(&groups[k])).collect();
    json!({
        "log": {
            "version": "1.2",
            "creator": { "name": "mcptape", "version": env!("CARGO_PKG_VERSION") },
            "entries": entries,
        }
    })
}

fn header_list(headers: &[(String, String)]) -> Vec<Value> {
    headers.iter().map(|(n, v)| json!({ "name": n, "value": v })).collect()
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn iso_ms(ns: i64) -> String {
    let ns = u64::try_from(ns).unwrap_or(0);
    humantime::format_rfc3339_millis(std::time::UNIX_EPOCH + std::time::Duration::from_nanos(ns)).to_string()
}

fn ms_between(a: i64, b: i64) -> f64 {
    ((b - a).max(0) as f64 / 1e6 * 1000.0).round() / 1000.0
}

fn origin(target: &str) -> String {
    // scheme://authority of the upstream URL; a capture without one gets a placeholder host.
    if let Some((scheme, rest)) = target.split_once("://") {
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        let scheme = match scheme {
            "ws" => "http",
            "wss" => "https",
            s => s,
        };
        return format!("{scheme}://{authority}");
    }
    "http://mcptape.invalid".to_string()
}

fn query_string(path: &str) -> Vec<Value> {
    let Some((_, q)) = path.split_once('?') else {
        return Vec::new();
    };
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (n, v) = p.split_once('=').unwrap_or((p, ""));
            json!({ "name": n, "value": v })
        })
        .collect()
}

fn status_text(status: u16) -> &'static str {
    match status {
        101 => "Switching Protocols",
        200 => "OK",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    }
}

fn lifecycle(f: &Frame, name: &str) -> bool {
    f.kind == Kind::Lifecycle && f.method.as_deref() == Some(name)
}

/// One exchange's HAR entry; `None` when it holds no request (a stream whose request was not recorded).
fn entry(frames: &[&(String, Frame)]) -> Option<Value> {
    let (target, first) = frames
        .iter()
        .find(|(_, f)| f.direction == Direction::C2s)
        .map(|(t, f)| (t, f))?;
    let req_http = first.http.clone().unwrap_or_default();
    let path = req_http.path.clone().unwrap_or_else(|| "/".into());
    let request_body = frames
        .iter()
        .map(|(_, f)| f)
        .filter(|f| f.direction == Direction::C2s && f.kind != Kind::Lifecycle)
        .map(|f| String::from_utf8_lossy(&f.payload).into_owned())
        .collect::<Vec<_>>()
        .join("\n");
    let mut request = json!({
        "method": req_http.method.clone().unwrap_or_else(|| "POST".into()),
        "url": format!("{}{}", origin(target), path),
        "httpVersion": "HTTP/1.1",
        "cookies": [],
        "headers": header_list(&req_http.headers),
        "queryString": query_string(&path),
        "headersSize": -1,
        "bodySize": request_body.len(),
    });
    if !request_body.is_empty() {
        let mime = req_http
            .content_type
            .clone()
            .or_else(|| header(&req_http.headers, "content-type").map(str::to_string))
            .unwrap_or_else(|| "application/json".into());
        request["postData"] = json!({ "mimeType": mime, "text": request_body });
    }

    let answers: Vec<&Frame> = frames
        .iter()
        .map(|(_, f)| f)
        .filter(|f| f.direction == Direction::S2c)
        .collect();
    let resp_http = answers.iter().find_map(|f| f.http.clone()).unwrap_or_default();
    let status = answers
        .iter()
        .find_map(|f| f.http.as_ref().and_then(|h| h.status))
        .unwrap_or(0);
    let sse = answers.iter().any(|f| f.transport == Transport::Sse)
        || resp_http
            .content_type
            .as_deref()
            .is_some_and(|c| c.starts_with("text/event-stream"));
    let mut text = String::new();
    for f in &answers {
        let payload = String::from_utf8_lossy(&f.payload);
        if sse {
            if lifecycle(f, "mcptape/eof") || lifecycle(f, "mcptape/http-response") || lifecycle(f, "mcptape/oversize")
            {
                continue;
            }
            if let Some(id) = f.http.as_ref().and_then(|h| h.sse_event_id.as_deref()) {
                text.push_str(&format!("id: {id}\n"));
            }
            if lifecycle(f, "mcptape/endpoint") {
                text.push_str(&format!("event: endpoint\ndata: {payload}\n\n"));
            } else if lifecycle(f, "mcptape/sse-empty") {
                text.push_str("data: \n\n");
            } else {
                for line in payload.split('\n') {
                    text.push_str(&format!("data: {line}\n"));
                }
                text.push('\n');
            }
        } else if f.kind != Kind::Lifecycle {
            text.push_str(&payload);
        }
    }
    let mime = resp_http
        .content_type
        .clone()
        .or_else(|| header(&resp_http.headers, "content-type").map(str::to_string))
        .unwrap_or_else(|| if sse { "text/event-stream".into() } else { String::new() });
    let mut content = json!({ "size": text.len(), "mimeType": mime });
    if !text.is_empty() {
        content["text"] = Value::from(text.clone());
    }
    let response = json!({
        "status": status,
        "statusText": status_text(status),
        "httpVersion": "HTTP/1.1",
        "cookies": [],
        "headers": header_list(&resp_http.headers),
        "content": content,
        "redirectURL": "",
        "headersSize": -1,
        "bodySize": text.len(),
    });

    let start = first.ts_ns;
    let first_answer = answers.first().map_or(start, |f| f.ts_ns);
    let last = answers.last().map_or(start, |f| f.ts_ns);
    let wait = ms_between(start, first_answer);
    let receive = ms_between(first_answer, last);
    Some(json!({
        "startedDateTime": iso_ms(start),
        "time": wait + receive,
        "request": request,
        "response": response,
        "cache": {},
        "timings": { "blocked": -1, "dns": -1, "connect": -1, "send": 0, "wait": wait, "receive": receive, "ssl": -1 },
        "comment": format!("mcptape session {} stream {}", first.session_id, first.stream_id),
    }))
}

pub(super) fn export(paths: &[PathBuf], output: &Path, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let scan = Scan::new(paths)?;
    for (file, meta, _) in scan.metas()? {
        if meta.transport == "stdio" || meta.transport == "ws" {
            anyhow::bail!(
                "{}: a {} capture has no HTTP exchanges; HAR export needs a capture made with `mcptape record --listen … --upstream http(s)://…` (use --format jsonl instead)",
                file.display(),
                meta.transport
            );
        }
    }
    let mut frames: Vec<(String, Frame)> = Vec::new();
    scan.for_each_frame(|_, meta, f| {
        frames.push((meta.target.clone(), f));
        Ok(())
    })?;
    let doc = har(&frames);
    let n = doc["log"]["entries"].as_array().map_or(0, Vec::len);
    if n == 0 {
        anyhow::bail!(
            "{}: no HTTP exchanges in the capture (HAR export needs frames recorded by `mcptape record --listen`)",
            paths.first().map(|p| p.display().to_string()).unwrap_or_default()
        );
    }
    let mut text = serde_json::to_string_pretty(&doc)?;
    text.push('\n');
    if output == Path::new("-") {
        out.write_all(text.as_bytes())?;
    } else {
        let mut file = crate::fsx::create_private_file_truncate(output).map_err(|e| crate::Error::io(output, e))?;
        file.write_all(text.as_bytes())
            .map_err(|e| crate::Error::io(output, e))?;
        writeln!(out, "exported {n} HTTP exchange(s) to {}", output.display())?;
    }
    Ok(ExitCode::SUCCESS)
}

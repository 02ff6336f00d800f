//! JSONL export and import (one frame per line), and import of plain NDJSON logs.

use std::collections::HashSet;
use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::annotate::Annotator;
use crate::error::Error;
use crate::frame::{Direction, Frame, HttpMeta, Kind, Transport};
use crate::human;
use crate::meta::CaptureMeta;
use crate::redact::RedactionRules;
use crate::scan::Scan;
use crate::schema;
use crate::segment::write_segment;
use crate::wire::envelope::classify;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// One frame as a JSON object. On import only `direction` and a payload are required; the rest is derived.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonFrame {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_id: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// RFC 3339 with nanoseconds, or ns since the epoch as a number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ts: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub t_ns: Option<u64>,
    pub direction: Direction,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<Transport>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<Kind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpc_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ns: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<i32>,
    /// The payload as text, when it is valid UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    /// The payload as base64, when it is not valid UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_base64: Option<String>,
    /// On import only: the message as a JSON value (serialized compactly).
    #[serde(default, skip_serializing)]
    pub message: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpMeta>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp_session: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol_version: Option<String>,
}

/// A frame as its JSONL object (every column present that has a value).
pub fn frame_to_json(f: &Frame) -> JsonFrame {
    let (payload, payload_base64) = match std::str::from_utf8(&f.payload) {
        Ok(s) => (Some(s.to_string()), None),
        Err(_) => (None, Some(B64.encode(&f.payload))),
    };
    let ts = if f.ts_ns >= 0 {
        serde_json::Value::from(human::timestamp_ns(f.ts_ns))
    } else {
        f.ts_ns.into()
    };
    JsonFrame {
        session_id: Some(f.session_id.clone()),
        stream_id: Some(f.stream_id),
        seq: Some(f.seq),
        ts: Some(ts),
        t_ns: Some(f.t_ns),
        direction: f.direction,
        transport: Some(f.transport),
        kind: Some(f.kind),
        method: f.method.clone(),
        rpc_id: f.rpc_id.clone(),
        latency_ns: f.latency_ns,
        error_code: f.error_code,
        payload,
        payload_base64,
        message: None,
        http: f.http.clone(),
        mcp_session: f.mcp_session.clone(),
        protocol_version: f.protocol_version.clone(),
    }
}

/// A JSONL object as a frame; `None` fields are left for the [`Annotator`]. Errors say which field is wrong.
pub fn json_to_frame(j: JsonFrame, line_no: usize) -> Result<(Frame, bool), String> {
    let payload: Vec<u8> = match (j.payload, j.payload_base64, j.message) {
        (Some(p), None, None) => p.into_bytes(),
        (None, Some(b), None) => B64
            .decode(b.as_bytes())
            .map_err(|e| format!("field `payload_base64`: {e}"))?,
        (None, None, Some(m)) => serde_json::to_vec(&m).map_err(|e| format!("field `message`: {e}"))?,
        (None, None, None) => return Err("missing field `payload` (or `payload_base64`, or `message`)".into()),
        _ => return Err("give only one of `payload`, `payload_base64`, `message`".into()),
    };
    let ts_ns = match j.ts {
        None => human::now_ns(),
        Some(serde_json::Value::Number(n)) => n.as_i64().ok_or("field `ts`: not an integer")?,
        Some(serde_json::Value::String(s)) => {
            human::parse_timestamp(&s).ok_or_else(|| format!("field `ts`: not an RFC 3339 time: {s:?}"))?
        }
        Some(_) => return Err("field `ts`: expected an RFC 3339 string or ns since the epoch".into()),
    };
    // Frames that carry their kind keep every column as given (an mcptape export); others are annotated.
    let complete = j.kind.is_some();
    let mut f = Frame::new(
        j.session_id.unwrap_or_else(|| "import".into()),
        j.seq.unwrap_or(line_no as u64),
        j.direction,
        j.transport.unwrap_or(Transport::Stdio),
        j.kind.unwrap_or(Kind::Invalid),
        payload,
    );
    f.stream_id = j.stream_id.unwrap_or(0);
    f.ts_ns = ts_ns;
    f.t_ns = j.t_ns.unwrap_or(0);
    f.method = j.method;
    f.rpc_id = j.rpc_id;
    f.latency_ns = j.latency_ns;
    f.error_code = j.error_code;
    f.http = j.http;
    f.mcp_session = j.mcp_session;
    f.protocol_version = j.protocol_version;
    Ok((f, complete))
}

fn create_output(output: &Path) -> anyhow::Result<Box<dyn Write>> {
    if output == Path::new("-") {
        return Ok(Box::new(std::io::stdout()));
    }
    let file = crate::fsx::create_private_file_truncate(output).map_err(|e| Error::io(output, e))?;
    Ok(Box::new(BufWriter::new(file)))
}

pub(super) fn export(paths: &[PathBuf], output: &Path, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let scan = Scan::new(paths)?;
    let mut w = create_output(output)?;
    let mut n = 0u64;
    scan.for_each_frame(|_, _, f| {
        serde_json::to_writer(&mut w, &frame_to_json(&f)).map_err(|e| Error::io(output, e.into()))?;
        w.write_all(b"\n").map_err(|e| Error::io(output, e))?;
        n += 1;
        Ok(())
    })?;
    w.flush().map_err(|e| Error::io(output, e))?;
    if output != Path::new("-") {
        writeln!(out, "exported {n} frame(s) to {}", output.display())?;
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn import(
    input: Option<&Path>,
    pair: Option<(&Path, &Path)>,
    session: &str,
    output: &Path,
    rules: &RedactionRules,
    out: &mut dyn Write,
) -> anyhow::Result<ExitCode> {
    let (frames, mut meta) = match (input, pair) {
        (Some(input), _) => (
            read_jsonl(input)?,
            CaptureMeta::new("import", &input.display().to_string()),
        ),
        (None, Some((c2s, s2c))) => {
            let mut meta = CaptureMeta::new("import", &format!("{} + {}", c2s.display(), s2c.display()));
            meta.note =
                "imported from NDJSON logs: order reconstructed from request/response pairing; no timing".into();
            (read_ndjson_pair(c2s, s2c, session)?, meta)
        }
        (None, None) => anyhow::bail!("import needs an input file, or --c2s and --s2c"),
    };
    meta.redaction = rules.describe();
    let untimed = input.is_none();
    let now = human::now_ns();
    let mut annotator = Annotator::new();
    let mut redacted = 0u64;
    let frames: Vec<Frame> = frames
        .into_iter()
        .map(|(mut f, complete)| {
            // Frames that carry their kind are only redacted; the others are annotated and redacted in one scan.
            let changed = if !complete {
                annotator.annotate_and_redact(&mut f, rules)
            } else if let Some(p) = rules.payload(&f.payload) {
                f.payload = p;
                true
            } else {
                false
            };
            if changed {
                redacted += 1;
            }
            if untimed {
                // NDJSON logs carry no times: latency is unknown, not zero, and ts is the import time.
                f.latency_ns = None;
                f.ts_ns = now;
            }
            if let Some(h) = &mut f.http {
                for (name, value) in &mut h.headers {
                    *value = rules.header_value(name, value).into_owned();
                }
            }
            f
        })
        .collect();
    let batches: Vec<_> = frames.chunks(8192).map(schema::to_batch).collect();
    let rows = write_segment(output, &meta, &batches)?;
    writeln!(
        out,
        "imported {rows} frame(s) into {} ({redacted} payload(s) redacted)",
        output.display()
    )?;
    Ok(ExitCode::SUCCESS)
}

fn lines(path: &Path) -> anyhow::Result<Vec<(usize, Vec<u8>)>> {
    let file = std::fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::NotFound(path.to_path_buf()),
        _ => Error::io(path, e),
    })?;
    let mut reader = std::io::BufReader::new(file);
    let mut out = Vec::new();
    let mut buf = Vec::new();
    let mut n = 0;
    loop {
        buf.clear();
        let read = reader.read_until(b'\n', &mut buf).map_err(|e| Error::io(path, e))?;
        if read == 0 {
            break;
        }
        n += 1;
        if buf.last() == Some(&b'\n') {
            buf.pop();
        }
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        out.push((n, buf.clone()));
    }
    Ok(out)
}

fn read_jsonl(path: &Path) -> anyhow::Result<Vec<(Frame, bool)>> {
    let mut frames = Vec::new();
    for (line, bytes) in lines(path)? {
        let bad = |reason: String| Error::Line {
            path: path.to_path_buf(),
            line,
            reason,
        };
        let j: JsonFrame = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
        frames.push(json_to_frame(j, line).map_err(bad)?);
    }
    if frames.is_empty() {
        anyhow::bail!("{}: no frames (the file is empty)", path.display());
    }
    Ok(frames)
}

/// Merges two one-directional logs into one plausible order: a message goes after what it answers, and a
/// server message waits for an outstanding client request (servers speak while a request is open).
fn read_ndjson_pair(c2s: &Path, s2c: &Path, session: &str) -> anyhow::Result<Vec<(Frame, bool)>> {
    let c = lines(c2s)?;
    let s = lines(s2c)?;
    if c.is_empty() && s.is_empty() {
        anyhow::bail!("{} and {}: both logs are empty", c2s.display(), s2c.display());
    }
    let ce: Vec<_> = c.iter().map(|(_, b)| classify(b)).collect();
    let se: Vec<_> = s.iter().map(|(_, b)| classify(b)).collect();
    let (mut i, mut j) = (0, 0);
    let mut c_requests: HashSet<String> = HashSet::new(); // ids of client requests sent, not yet answered
    let mut s_requests: HashSet<String> = HashSet::new();
    let mut order: Vec<(Direction, usize)> = Vec::new();
    while i < c.len() || j < s.len() {
        let s_ready = j < s.len() && {
            let e = &se[j];
            match (e.kind, &e.rpc_id) {
                (Kind::Response | Kind::Error, Some(id)) => c_requests.contains(id),
                _ => !c_requests.is_empty() || i >= c.len(),
            }
        };
        let c_ready = i < c.len() && {
            let e = &ce[i];
            match (e.kind, &e.rpc_id) {
                (Kind::Response | Kind::Error, Some(id)) => s_requests.contains(id),
                _ => true,
            }
        };
        // A client answer to a server request goes first: the server is usually blocked waiting for it.
        let c_answers = c_ready && ce[i].kind.is_answer();
        let take_s = !c_answers && (s_ready || (!c_ready && j < s.len()));
        if take_s {
            let e = &se[j];
            match (e.kind, &e.rpc_id) {
                (Kind::Request, Some(id)) => {
                    s_requests.insert(id.clone());
                }
                (Kind::Response | Kind::Error, Some(id)) => {
                    c_requests.remove(id);
                }
                _ => {}
            }
            order.push((Direction::S2c, j));
            j += 1;
        } else {
            let e = &ce[i];
            match (e.kind, &e.rpc_id) {
                (Kind::Request, Some(id)) => {
                    c_requests.insert(id.clone());
                }
                (Kind::Response | Kind::Error, Some(id)) => {
                    s_requests.remove(id);
                }
                _ => {}
            }
            order.push((Direction::C2s, i));
            i += 1;
        }
    }
    Ok(order
        .into_iter()
        .enumerate()
        .map(|(seq, (dir, k))| {
            let bytes = if dir == Direction::C2s { &c[k].1 } else { &s[k].1 };
            (
                Frame::new(session, seq as u64, dir, Transport::Stdio, Kind::Invalid, bytes.clone()),
                false,
            )
        })
        .collect())
}

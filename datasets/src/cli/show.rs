use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use crate::frame::{Frame, Kind};
use crate::human;
use crate::scan::{Filter, Scan};

pub(super) fn run(path: &Path, sessions: &[String], width: usize, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let filter = Filter {
        sessions: sessions.to_vec(),
        ..Default::default()
    };
    let frames = Scan::new(&[path.to_path_buf()])?.with_filter(filter).frames()?;
    if frames.is_empty() && !sessions.is_empty() {
        anyhow::bail!("{}: no frames for session {}", path.display(), sessions.join(", "));
    }
    // Sessions in order of first appearance, frames in tap order within each.
    let mut order: Vec<String> = Vec::new();
    let mut by_session: BTreeMap<String, Vec<Frame>> = BTreeMap::new();
    for f in frames {
        if !by_session.contains_key(&f.session_id) {
            order.push(f.session_id.clone());
        }
        by_session.entry(f.session_id.clone()).or_default().push(f);
    }
    for (n, sid) in order.iter().enumerate() {
        let mut frames = by_session.remove(sid).unwrap_or_default();
        frames.sort_by_key(|f| f.seq);
        if n > 0 {
            writeln!(out)?;
        }
        write_session(sid, &frames, width, out)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn write_session(sid: &str, frames: &[Frame], width: usize, out: &mut dyn Write) -> std::io::Result<()> {
    let transport = frames.first().map_or("?", |f| f.transport.as_str());
    let version = frames
        .iter()
        .find_map(|f| f.protocol_version.as_deref())
        .unwrap_or("unknown version");
    writeln!(out, "session {sid} ({transport}, {version}, {} frames)", frames.len())?;
    for f in frames {
        writeln!(out, "{}", line(f, width))?;
    }
    Ok(())
}

/// One transcript line: `+0.012345s  <-  response      tools/list   id=1   1.20ms  {"jsonrpc":…`.
pub(crate) fn line(f: &Frame, width: usize) -> String {
    let payload = String::from_utf8_lossy(&f.payload);
    let payload = payload.trim_end_matches(['\r', '\n']);
    let payload = if width == 0 {
        payload.to_string()
    } else {
        human::shorten(payload, width)
    };
    let id = f.rpc_id.as_deref().map(|i| format!("id={i}")).unwrap_or_default();
    let latency = f.latency_ns.map(human::duration_ns).unwrap_or_default();
    let arrow = if f.kind == Kind::Lifecycle {
        "**"
    } else {
        f.direction.arrow()
    };
    let status = f
        .http
        .as_ref()
        .and_then(|h| h.status)
        .map(|s| format!(" [{s}]"))
        .unwrap_or_default();
    format!(
        "  +{:.6}s  {arrow}  {:<12}  {:<24}  {:<8}  {:>8}{status}  {payload}",
        f.t_ns as f64 / 1e9,
        f.kind.as_str(),
        f.method.as_deref().unwrap_or("-"),
        id,
        latency,
    )
}

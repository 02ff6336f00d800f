//! What `mcptape dataset inspect` reports: sessions, frames, bytes, time span, protocol versions, and per method
//! counts and request→response latency percentiles. Computed in one pass over the index columns (payloads are
//! only measured, never decoded), with HdrHistograms so memory does not grow with the capture.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use arrow_array::Array;
use arrow_array::cast::AsArray;
use hdrhistogram::Histogram;
use serde::Serialize;

use crate::error::Result;
use crate::scan::Scan;
use crate::schema::{Columns, col};

/// Latency histogram bounds: 1 µs to 1 h, 3 significant digits (the project-wide convention).
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// Per-method figures.
#[derive(Debug, Clone, Serialize, Default)]
pub struct MethodSummary {
    /// Requests seen.
    pub requests: u64,
    /// Notifications seen.
    pub notifications: u64,
    /// Results seen.
    pub responses: u64,
    /// Errors seen.
    pub errors: u64,
    /// Median latency of answers, µs.
    pub latency_p50_us: Option<u64>,
    /// 99th percentile latency of answers, µs.
    pub latency_p99_us: Option<u64>,
    /// Largest latency, µs.
    pub latency_max_us: Option<u64>,
    /// Payload bytes in this method's frames.
    pub bytes: u64,
    #[serde(skip)]
    hist: Option<Histogram<u64>>,
}

/// A whole capture at a glance.
#[derive(Debug, Clone, Serialize, Default)]
pub struct Summary {
    /// Files read.
    pub files: Vec<PathBuf>,
    /// Distinct sessions.
    pub sessions: u64,
    /// Frames.
    pub frames: u64,
    /// Payload bytes.
    pub bytes: u64,
    /// Earliest capture time (RFC 3339).
    pub first: Option<String>,
    /// Latest capture time (RFC 3339).
    pub last: Option<String>,
    /// Seconds between first and last.
    pub span_seconds: f64,
    /// Protocol versions, with the number of sessions that used each.
    pub protocol_versions: BTreeMap<String, u64>,
    /// Frames per kind.
    pub kinds: BTreeMap<String, u64>,
    /// Frames per direction.
    pub directions: BTreeMap<String, u64>,
    /// Frames the tap could not record, from file metadata.
    pub dropped_frames: u64,
    /// Per method.
    pub methods: BTreeMap<String, MethodSummary>,
}

/// Summarizes a scan.
pub fn summarize(scan: &Scan) -> Result<Summary> {
    let mut s = Summary {
        files: scan.files().to_vec(),
        ..Default::default()
    };
    for (_, meta, _) in scan.metas()? {
        s.dropped_frames += meta.dropped_frames;
    }
    let mut sessions = BTreeSet::new();
    let mut versions: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let (mut first, mut last) = (i64::MAX, i64::MIN);
    let scan = scan.clone().with_columns(&[
        col::SESSION_ID,
        col::TS,
        col::DIRECTION,
        col::KIND,
        col::METHOD,
        col::LATENCY_NS,
        col::PAYLOAD,
        col::PROTOCOL_VERSION,
    ]);
    scan.for_each_batch(|path, _, batch| {
        let c = Columns::new(&batch);
        let damaged = |e| crate::Error::damaged(path, e);
        let session = c.text(col::SESSION_ID).map_err(damaged)?;
        let ts = c.ts(col::TS).map_err(damaged)?;
        let dir = c.text(col::DIRECTION).map_err(damaged)?;
        let kind = c.text(col::KIND).map_err(damaged)?;
        let method = c.text(col::METHOD).map_err(damaged)?;
        let latency = c.u64(col::LATENCY_NS).map_err(damaged)?;
        let version = c.text(col::PROTOCOL_VERSION).map_err(damaged)?;
        let payload = batch
            .column_by_name(col::PAYLOAD)
            .and_then(|a| a.as_binary_opt::<i32>().cloned());
        for i in 0..batch.num_rows() {
            let size = payload
                .as_ref()
                .map_or(0, |p| if p.is_valid(i) { p.value_length(i) as u64 } else { 0 });
            s.frames += 1;
            s.bytes += size;
            if let Some(sid) = session[i] {
                if !sessions.contains(sid) {
                    sessions.insert(sid.to_string());
                }
                if let Some(v) = version[i] {
                    versions.entry(v.to_string()).or_default().insert(sid.to_string());
                }
            }
            if let Some(t) = ts[i] {
                first = first.min(t);
                last = last.max(t);
            }
            *s.kinds.entry(kind[i].unwrap_or("?").to_string()).or_default() += 1;
            *s.directions.entry(dir[i].unwrap_or("?").to_string()).or_default() += 1;
            let Some(m) = method[i] else { continue };
            let e = s.methods.entry(m.to_string()).or_default();
            e.bytes += size;
            match kind[i] {
                Some("request") => e.requests += 1,
                Some("notification") => e.notifications += 1,
                Some("response") => e.responses += 1,
                Some("error") => e.errors += 1,
                _ => {}
            }
            if let Some(ns) = latency[i] {
                let us = (ns / 1_000).clamp(1, 3_600_000_000);
                e.hist.get_or_insert_with(latency_histogram).saturating_record(us);
            }
        }
        Ok(())
    })?;
    s.sessions = sessions.len() as u64;
    s.protocol_versions = versions.into_iter().map(|(v, set)| (v, set.len() as u64)).collect();
    if first <= last {
        s.first = Some(crate::human::timestamp_ns(first));
        s.last = Some(crate::human::timestamp_ns(last));
        s.span_seconds = (last - first) as f64 / 1e9;
    }
    for m in s.methods.values_mut() {
        if let Some(h) = m.hist.take() {
            m.latency_p50_us = Some(h.value_at_quantile(0.50));
            m.latency_p99_us = Some(h.value_at_quantile(0.99));
            m.latency_max_us = Some(h.max());
        }
    }
    Ok(s)
}

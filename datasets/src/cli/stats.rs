//! `mcptape dataset stats`: per method, how many messages of each kind, how big, and how slow.
//!
//! `inspect` gives a capture at a glance; `stats` is the per-method table a performance review wants: payload
//! size p50/p99/max and answer latency p50/p90/p99/max. One pass over the index columns with HdrHistograms
//! (sizes in bytes, latencies in µs, 3 significant digits), so memory does not grow with the capture.
//! Lifecycle frames (the tap's own notes) are left out: they are not MCP messages.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use arrow_array::Array;
use arrow_array::cast::AsArray;
use hdrhistogram::Histogram;
use serde::Serialize;

use crate::human;
use crate::scan::Scan;
use crate::schema::{Columns, col};
use crate::summary::latency_histogram;

/// Output format of `stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum StatsFormat {
    /// Aligned text for a terminal.
    #[default]
    Text,
    /// One JSON object.
    Json,
    /// A Markdown table (for a PR comment or a wiki page).
    Md,
}

/// Percentiles of one distribution.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Percentiles {
    pub p50: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p90: Option<u64>,
    pub p99: u64,
    pub max: u64,
}

/// One method's figures.
#[derive(Debug, Clone, Serialize)]
pub struct MethodStats {
    pub requests: u64,
    pub notifications: u64,
    pub responses: u64,
    pub errors: u64,
    /// Payload sizes of every frame of this method, bytes.
    pub size_bytes: Percentiles,
    /// Answer latencies (since the request they answer), µs; absent when no answer carries one.
    pub latency_us: Option<Percentiles>,
}

/// The whole table.
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    pub files: Vec<PathBuf>,
    pub frames: u64,
    /// Frames without a method (invalid payloads, batches) and lifecycle frames, which no row counts.
    pub unattributed_frames: u64,
    pub methods: BTreeMap<String, MethodStats>,
}

#[derive(Debug)]
struct Acc {
    counts: [u64; 4],
    sizes: Histogram<u64>,
    latency: Option<Histogram<u64>>,
}

fn size_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 1 << 40, 3).expect("valid histogram bounds")
}

fn pct(h: &Histogram<u64>, p90: bool) -> Percentiles {
    Percentiles {
        p50: h.value_at_quantile(0.50),
        p90: p90.then(|| h.value_at_quantile(0.90)),
        p99: h.value_at_quantile(0.99),
        max: h.max(),
    }
}

/// Computes the per-method table of a scan.
pub fn compute(scan: &Scan) -> crate::Result<Stats> {
    let mut acc: BTreeMap<String, Acc> = BTreeMap::new();
    let (mut frames, mut unattributed) = (0u64, 0u64);
    let scan = scan
        .clone()
        .with_columns(&[col::KIND, col::METHOD, col::LATENCY_NS, col::PAYLOAD]);
    scan.for_each_batch(|path, _, batch| {
        let c = Columns::new(&batch);
        let damaged = |e| crate::Error::damaged(path, e);
        let kind = c.text(col::KIND).map_err(damaged)?;
        let method = c.text(col::METHOD).map_err(damaged)?;
        let latency = c.u64(col::LATENCY_NS).map_err(damaged)?;
        let payload = batch
            .column_by_name(col::PAYLOAD)
            .and_then(|a| a.as_binary_opt::<i32>().cloned());
        for i in 0..batch.num_rows() {
            frames += 1;
            let (Some(m), Some(k)) = (method[i], kind[i]) else {
                unattributed += 1;
                continue;
            };
            let slot = match k {
                "request" => 0,
                "notification" => 1,
                "response" => 2,
                "error" => 3,
                _ => {
                    unattributed += 1;
                    continue;
                }
            };
            let size = payload
                .as_ref()
                .map_or(0, |p| if p.is_valid(i) { p.value_length(i) as u64 } else { 0 });
            let a = acc.entry(m.to_string()).or_insert_with(|| Acc {
                counts: [0; 4],
                sizes: size_histogram(),
                latency: None,
            });
            a.counts[slot] += 1;
            a.sizes.saturating_record(size);
            if let Some(ns) = latency[i] {
                let us = (ns / 1_000).clamp(1, 3_600_000_000);
                a.latency.get_or_insert_with(latency_histogram).saturating_record(us);
            }
        }
        Ok(())
    })?;
    let methods = acc
        .into_iter()
        .map(|(m, a)| {
            let s = MethodStats {
                requests: a.counts[0],
                notifications: a.counts[1],
                responses: a.counts[2],
                errors: a.counts[3],
                size_bytes: pct(&a.sizes, false),
                latency_us: a.latency.as_ref().map(|h| pct(h, true)),
            };
            (m, s)
        })
        .collect();
    Ok(Stats {
        files: scan.files().to_vec(),
        frames,
        unattributed_frames: unattributed,
        methods,
    })
}

pub(super) fn run(paths: &[PathBuf], format: StatsFormat, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let stats = compute(&Scan::new(paths)?)?;
    match format {
        StatsFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(&stats)?)?,
        StatsFormat::Text => render_table(&stats, false, out)?,
        StatsFormat::Md => render_table(&stats, true, out)?,
    }
    Ok(ExitCode::SUCCESS)
}

const HEAD: [&str; 12] = [
    "method", "requests", "notifs", "results", "errors", "size p50", "size p99", "size max", "lat p50", "lat p90",
    "lat p99", "lat max",
];

fn row(name: &str, m: &MethodStats) -> [String; 12] {
    let us = |v: Option<u64>| v.map_or_else(|| "-".to_string(), |us| human::duration_ns(us.saturating_mul(1000)));
    let l = m.latency_us.as_ref();
    [
        name.to_string(),
        m.requests.to_string(),
        m.notifications.to_string(),
        m.responses.to_string(),
        m.errors.to_string(),
        human::bytes(m.size_bytes.p50),
        human::bytes(m.size_bytes.p99),
        human::bytes(m.size_bytes.max),
        us(l.map(|l| l.p50)),
        us(l.and_then(|l| l.p90)),
        us(l.map(|l| l.p99)),
        us(l.map(|l| l.max)),
    ]
}

fn render_table(s: &Stats, markdown: bool, out: &mut dyn Write) -> std::io::Result<()> {
    let rows: Vec<[String; 12]> = s.methods.iter().map(|(n, m)| row(n, m)).collect();
    if markdown {
        writeln!(out, "| {} |", HEAD.join(" | "))?;
        writeln!(out, "|---|{}", "---:|".repeat(HEAD.len() - 1))?;
        for r in &rows {
            writeln!(out, "| {} |", r.join(" | "))?;
        }
        writeln!(out)?;
        writeln!(
            out,
            "{} frame(s) in {} file(s); {} lifecycle or unattributed frame(s) not in the table.",
            s.frames,
            s.files.len(),
            s.unattributed_frames
        )?;
        return Ok(());
    }
    let mut widths: [usize; 12] = HEAD.map(|h| h.chars().count());
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| -> String {
        let mut l = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i == 0 {
                l.push_str(&format!("{cell:<w$}"));
            } else {
                l.push_str(&format!("  {cell:>w$}"));
            }
        }
        l
    };
    writeln!(out, "{}", line(&HEAD.map(String::from)))?;
    for r in &rows {
        writeln!(out, "{}", line(r))?;
    }
    writeln!(
        out,
        "\n{} frame(s) in {} file(s); {} lifecycle or unattributed frame(s) not in the table",
        s.frames,
        s.files.len(),
        s.unattributed_frames
    )?;
    Ok(())
}

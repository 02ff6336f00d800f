//! Turning a finished run into the versioned JSON load report (`mcptape.load/1`).

use std::time::Instant;

use mcptape_reports::load::{LoadReport, Machine, SCHEMA, Shard, Workload, fingerprint};

use crate::cli::LoadArgs;
use crate::run::{Model, Plan};
use crate::stats::Recorder;

/// What the run itself knows besides the measurements.
#[derive(Debug)]
pub struct RunFacts {
    /// Start of the measured window.
    pub window_start: Instant,
    /// When the run ended.
    pub end: Instant,
    /// The target, as shown.
    pub target: String,
    /// A digest of the capture's messages.
    pub content_hash: String,
    /// Self-check warnings.
    pub warnings: Vec<String>,
}

/// The report of this run (or shard).
pub fn build_report(args: &LoadArgs, plan: &Plan, rec: Recorder, facts: RunFacts) -> LoadReport {
    let RunFacts {
        window_start,
        end,
        target,
        content_hash,
        warnings,
    } = facts;
    let (methods, totals, phases, errors, series) = rec.finish(end);
    let (model, concurrency, rate, arrival) = match plan.model {
        Model::Closed { users } => ("closed", Some(users as u64), None, None),
        Model::Open { rate, poisson, users } => (
            "open",
            Some(users as u64),
            Some(rate),
            Some(if poisson { "poisson" } else { "constant" }.to_string()),
        ),
    };
    let pace = format!("{:?}", plan.engine.pace).to_lowercase();
    let mix = format!("{:?}", args.mix).to_lowercase();
    let mut report = LoadReport {
        schema: SCHEMA.into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        // Wall clock of the window start: merge lines shards' series up by it.
        started: humantime::format_rfc3339_micros(
            std::time::SystemTime::now() - Instant::now().saturating_duration_since(window_start),
        )
        .to_string(),
        // The same span the throughput is computed over.
        duration_s: end.saturating_duration_since(window_start).as_secs_f64(),
        target,
        workload: Workload {
            capture: vec![args.capture.display().to_string()],
            sessions: plan.scripts.len() as u64,
            model: model.into(),
            concurrency,
            rate,
            arrival,
            pace,
            mix,
            ramp_s: plan.ramp.as_secs_f64(),
            warmup_s: plan.warmup.as_secs_f64(),
            fingerprint: String::new(),
        },
        machine: Machine::detect(),
        shard: (plan.shard.1 > 1).then_some(Shard {
            index: plan.shard.0,
            count: plan.shard.1,
        }),
        totals,
        methods,
        phases,
        errors,
        series,
        warnings,
    };
    // What must be equal for shard reports to merge: the work, not the machine or the shard.
    report.workload.fingerprint = fingerprint(&content_hash, &report.workload);
    report
}

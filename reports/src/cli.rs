//! `mcptape report …`: show, merge, compare and plot load and replay reports.
//!
//! Each subcommand writes to the given writer (or to `-o FILE`) so tests drive it in-process; errors name the file
//! or budget they concern and the binary prints them on one line with exit 2. `compare` exits 1 on a regression.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};

use crate::compare::{self, Budget, Named, Options};
use crate::file::{AnyReport, read_report};
use crate::{html, load, render, replay, show};

/// `mcptape report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    #[command(subcommand)]
    pub command: ReportCommand,
}

/// The report subcommands.
#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Per method and overall: requests, throughput, error rate by class, p50/p90/p99/p99.9/max (corrected and
    /// service time).
    Show(ShowArgs),
    /// Merge reports of one workload (shards, or repeated runs) exactly: histograms and counts add.
    Merge(MergeArgs),
    /// Compare candidate runs with baseline runs against budgets; exit 0 pass, 1 regression, 2 error.
    Compare(CompareArgs),
    /// One self-contained HTML page with SVG charts, baselines overlaid.
    Html(HtmlArgs),
}

/// Output of `show`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum ShowFormat {
    /// Aligned text.
    #[default]
    Text,
    /// Markdown tables.
    Md,
    /// A JSON summary (no histograms).
    Json,
}

/// `report show REPORT [--format text|md|json]`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// A load or replay report (JSON).
    pub report: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: ShowFormat,
}

/// `report merge REPORT... -o OUT`.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Reports of one workload: load shards or runs (histograms add), or replay reports (sessions add).
    #[arg(required = true, value_name = "REPORT")]
    pub reports: Vec<PathBuf>,
    /// Where to write the merged report.
    #[arg(short = 'o', long = "output", value_name = "OUT")]
    pub output: PathBuf,
}

/// Output of `compare`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum CompareFormat {
    /// Aligned text.
    #[default]
    Text,
    /// Markdown for a PR comment or $GITHUB_STEP_SUMMARY.
    Md,
    /// JSON (schema mcptape.compare/1).
    Json,
    /// JUnit XML for CI dashboards.
    Junit,
}

/// `report compare --baseline REPORT... --candidate REPORT... [--budget METRIC=LIMIT]...`.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// Baseline report(s): several are repeated runs.
    #[arg(long, required = true, num_args = 1.., value_name = "REPORT")]
    pub baseline: Vec<PathBuf>,
    /// Candidate report(s): several are repeated runs.
    #[arg(long, required = true, num_args = 1.., value_name = "REPORT")]
    pub candidate: Vec<PathBuf>,
    /// A budget, `[METHOD:]METRIC=LIMIT` (repeatable): p99=+10%, p50=+2ms, error_rate=+0.1pp, throughput=-5%,
    /// tools/call:p99=+10%, mismatch=+0. Replaces the default of the same method and metric. Defaults: load
    /// p50=+10%, p99=+25%, error_rate=+0.5pp, throughput=-10%; replay mismatch=+0, failed_sessions=+0.
    #[arg(long = "budget", value_name = "METRIC=LIMIT", allow_hyphen_values = true)]
    pub budgets: Vec<String>,
    /// Check only the --budget ones.
    #[arg(long)]
    pub no_default_budgets: bool,
    /// Significance level of the Mann–Whitney U test (used with several runs a side; 5 or more a side reach 0.01).
    #[arg(long, default_value_t = compare::DEFAULT_ALPHA)]
    pub alpha: f64,
    /// Compare load runs of different workloads (another concurrency or capture) instead of refusing; the output
    /// warns that the difference is not only the build under test.
    #[arg(long)]
    pub any_workload: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: CompareFormat,
    /// Write the output here instead of stdout (the verdict still goes to stderr).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// `report html REPORT [--baseline REPORT...] -o FILE.html`.
#[derive(Debug, Args)]
pub struct HtmlArgs {
    /// The report to plot.
    pub report: PathBuf,
    /// Reports to overlay (dashed) and compare against with the default budgets.
    #[arg(long, num_args = 1.., value_name = "REPORT")]
    pub baseline: Vec<PathBuf>,
    /// The page to write.
    #[arg(short = 'o', long = "output", value_name = "FILE.html")]
    pub output: PathBuf,
}

/// Runs `mcptape report`, writing to stdout.
pub async fn run(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    run_to(args, &mut out)
}

/// Runs `mcptape report`, writing what would go to stdout to `out`.
pub fn run_to(args: ReportArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    match args.command {
        ReportCommand::Show(a) => show_cmd(a, out),
        ReportCommand::Merge(a) => merge_cmd(a, out),
        ReportCommand::Compare(a) => compare_cmd(a, out),
        ReportCommand::Html(a) => html_cmd(a, out),
    }
}

fn named(path: &Path) -> anyhow::Result<Named> {
    Ok(Named {
        name: path.display().to_string(),
        report: read_report(path)?,
    })
}

fn show_cmd(a: ShowArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let text = match (read_report(&a.report)?, a.format) {
        (AnyReport::Load(r), ShowFormat::Text) => show::to_text(&r),
        (AnyReport::Load(r), ShowFormat::Md) => show::to_markdown(&r),
        (AnyReport::Load(r), ShowFormat::Json) => show::to_json(&r),
        (AnyReport::Replay(r), ShowFormat::Text) => r.to_text(),
        (AnyReport::Replay(r), ShowFormat::Md) => r.to_markdown(),
        (AnyReport::Replay(r), ShowFormat::Json) => {
            let mut s = serde_json::to_string_pretty(&r)?;
            s.push('\n');
            s
        }
    };
    out.write_all(text.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}

fn merge_cmd(a: MergeArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let reports: Vec<Named> = a.reports.iter().map(|p| named(p)).collect::<anyhow::Result<_>>()?;
    let first = &reports[0];
    for r in &reports[1..] {
        anyhow::ensure!(
            r.report.schema() == first.report.schema(),
            "{}: schema {:?} differs from {}'s {:?}; cannot merge reports of different schemas",
            r.name,
            r.report.schema(),
            first.name,
            first.report.schema()
        );
    }
    let (json, summary) = match &first.report {
        AnyReport::Load(_) => {
            let loads: Vec<load::LoadReport> = reports
                .iter()
                .map(|n| match &n.report {
                    AnyReport::Load(r) => r.clone(),
                    AnyReport::Replay(_) => unreachable!("schemas checked equal"),
                })
                .collect();
            let merged = load::merge(&loads).map_err(|e| {
                let file = merge_error_index(&e)
                    .and_then(|i| reports.get(i - 1))
                    .map(|n| n.name.as_str());
                match file {
                    Some(f) => anyhow::anyhow!("{f}: {e}"),
                    None => anyhow::anyhow!("{e}"),
                }
            })?;
            (serde_json::to_string_pretty(&merged)?, merged.summary_line())
        }
        AnyReport::Replay(_) => {
            let replays: Vec<(&str, &replay::ReplayReport)> = reports
                .iter()
                .filter_map(|n| match &n.report {
                    AnyReport::Replay(r) => Some((n.name.as_str(), r)),
                    AnyReport::Load(_) => None,
                })
                .collect();
            let merged = replay::merge(&replays).map_err(anyhow::Error::msg)?;
            let t = merged.totals;
            let summary = format!(
                "{} session(s): matched {}, differed {}, missing {}, extra {}, errors {}",
                merged.sessions.len(),
                t.matched,
                t.differed,
                t.missing,
                t.extra,
                t.errors
            );
            (serde_json::to_string_pretty(&merged)?, summary)
        }
    };
    write_file(&a.output, format!("{json}\n").as_bytes())?;
    writeln!(
        out,
        "merged {} report(s) into {}: {summary}",
        reports.len(),
        a.output.display()
    )?;
    Ok(ExitCode::SUCCESS)
}

/// The 1-based report a merge error is about.
fn merge_error_index(e: &load::MergeError) -> Option<usize> {
    use load::MergeError::*;
    match e {
        Empty => None,
        Schema { index, .. }
        | Fingerprint { index, .. }
        | ShardCount { index, .. }
        | DuplicateShard { index, .. }
        | BadShard { index, .. }
        | Histogram { index, .. } => Some(*index),
    }
}

fn compare_cmd(a: CompareArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let budgets: Vec<Budget> = a
        .budgets
        .iter()
        .map(|b| b.parse::<Budget>())
        .collect::<Result<_, _>>()?;
    let baseline: Vec<Named> = a.baseline.iter().map(|p| named(p)).collect::<anyhow::Result<_>>()?;
    let candidate: Vec<Named> = a.candidate.iter().map(|p| named(p)).collect::<anyhow::Result<_>>()?;
    let opts = Options {
        budgets,
        no_defaults: a.no_default_budgets,
        alpha: a.alpha,
        any_workload: a.any_workload,
    };
    let c = compare::compare(&baseline, &candidate, &opts)?;
    let text = match a.format {
        CompareFormat::Text => render::to_text(&c),
        CompareFormat::Md => render::to_markdown(&c),
        CompareFormat::Json => render::to_json(&c),
        CompareFormat::Junit => render::to_junit(&c),
    };
    match &a.output {
        Some(path) => {
            write_file(path, text.as_bytes())?;
            eprintln!(
                "mcptape compare: {}: {}",
                if c.passed() { "pass" } else { "REGRESSION" },
                render::verdict_sentence(&c)
            );
        }
        None => out.write_all(text.as_bytes())?,
    }
    Ok(if c.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn html_cmd(a: HtmlArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    let report = named(&a.report)?;
    let baselines: Vec<Named> = a.baseline.iter().map(|p| named(p)).collect::<anyhow::Result<_>>()?;
    let page = html::page(&report, &baselines)?;
    write_file(&a.output, page.as_bytes())?;
    writeln!(
        out,
        "wrote {} ({} baseline(s), {} KiB)",
        a.output.display(),
        baselines.len(),
        page.len().div_ceil(1024)
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Writes via a temporary file and a rename, so a reader never sees half a file.
fn write_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let name = path
        .file_name()
        .with_context(|| format!("{}: not a file name", path.display()))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    std::fs::write(&tmp, bytes).with_context(|| format!("{}", path.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("{}", path.display()))?;
    Ok(())
}

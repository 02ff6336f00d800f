//! `report compare`: is the candidate worse than the baseline by more than a budget, and is that more than noise?
//!
//! Each side is one or more reports of the same workload (repeated runs). For every budget the metric is taken from
//! every run; a side's value is the median of its runs. A budget is exceeded when the candidate's value is worse
//! than the baseline's by more than the budget allows. With several runs a side, an exceeded budget is a regression
//! only when a one-sided Mann–Whitney U test over the runs says the candidate's runs are worse with p < alpha
//! (default 0.01); otherwise it is reported as "within noise". With one report a side (or too few runs for the test
//! to ever reach alpha) every exceeded budget is a regression and the output says the verdict is not guarded
//! against noise.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::file::AnyReport;

pub mod budget;
pub mod stats;

pub use budget::{Budget, BudgetError, DEFAULT_LOAD, DEFAULT_REPLAY, Limit, Metric, Quantile, Unit};
pub use stats::{TestResult, mann_whitney_greater};

/// Schema id of the JSON rendering of a comparison.
pub const SCHEMA: &str = "mcptape.compare/1";
/// Default significance level. Stricter than the textbook 0.05 because a gate checks several budgets at once (four
/// by default, so at most about 4% false alarms between two builds that do not differ) and a false red in CI costs
/// more than a missed small change. With 5 runs a side the exact test reaches it only when at least 24 of the 25
/// (baseline, candidate) pairs are worse.
pub const DEFAULT_ALPHA: f64 = 0.01;

/// A report and what to call it in the output (its path as given).
#[derive(Debug, Clone)]
pub struct Named {
    /// Path or label.
    pub name: String,
    /// The report.
    pub report: AnyReport,
}

/// How to compare.
#[derive(Debug, Clone)]
pub struct Options {
    /// Budgets given by the user; they replace a default of the same method and metric.
    pub budgets: Vec<Budget>,
    /// Use only `budgets`.
    pub no_defaults: bool,
    /// Significance level of the test, in (0, 1).
    pub alpha: f64,
    /// Compare load runs of different workloads (another concurrency, say) instead of refusing; the result
    /// carries a warning.
    pub any_workload: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            budgets: Vec::new(),
            no_defaults: false,
            alpha: DEFAULT_ALPHA,
            any_workload: false,
        }
    }
}

/// Why the inputs cannot be compared. One line, naming the file or budget.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// A side has no reports.
    #[error("no {0} reports")]
    Empty(&'static str),
    /// Load and replay reports mixed.
    #[error("{file}: a {kind} report, but {first} is a {first_kind} report; compare reports of one kind")]
    MixedKinds {
        /// The odd one.
        file: String,
        /// Its kind.
        kind: &'static str,
        /// The first report.
        first: String,
        /// The first report's kind.
        first_kind: &'static str,
    },
    /// Load reports of different workloads.
    #[error(
        "{file}: workload {other} differs from {first}'s {fingerprint} (capture content or load model differ); \
         compare runs of the same workload, or pass --any-workload"
    )]
    MixedWorkloads {
        /// The odd one.
        file: String,
        /// Its fingerprint.
        other: String,
        /// The first report.
        first: String,
        /// The first report's fingerprint.
        fingerprint: String,
    },
    /// A budget that does not apply.
    #[error("budget {budget:?}: {reason}")]
    Budget {
        /// The budget.
        budget: String,
        /// Why.
        reason: String,
    },
    /// Alpha outside (0, 1).
    #[error("--alpha {0}: must be between 0 and 1")]
    Alpha(f64),
}

/// The result of checking one budget.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// `all` or a method.
    pub scope: String,
    /// The metric.
    pub metric: Metric,
    /// The budget (canonical text).
    pub budget: Budget,
    /// Median of the baseline runs (None: no data).
    pub baseline: Option<f64>,
    /// Median of the candidate runs.
    pub candidate: Option<f64>,
    /// Each baseline run's value.
    pub baseline_runs: Vec<f64>,
    /// Each candidate run's value.
    pub candidate_runs: Vec<f64>,
    /// The largest allowed worsening, in the metric's unit.
    pub allowance: f64,
    /// The candidate is worse than the baseline by more than `allowance`.
    pub exceeded: bool,
    /// The test over the runs, when the comparison is guarded against noise.
    pub test: Option<TestResult>,
    /// The outcome.
    pub status: Status,
}

impl Check {
    /// candidate − baseline, when both have data.
    pub fn change(&self) -> Option<f64> {
        Some(self.candidate? - self.baseline?)
    }
}

/// The outcome of one budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Within budget.
    Pass,
    /// Over budget and (when guarded) significant.
    Regression,
    /// Over budget, but the test does not tell it from noise.
    WithinNoise,
    /// A side has no value for the metric (no answers, or the method is missing).
    NoData,
}

impl Status {
    /// `pass`, `REGRESSION`, `within noise`, `no data`.
    pub fn label(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Regression => "REGRESSION",
            Status::WithinNoise => "within noise",
            Status::NoData => "no data",
        }
    }
}

/// Whether the verdict is guarded against noise, and how.
#[derive(Debug, Clone, Serialize)]
pub struct Guard {
    /// A regression must also be significant.
    pub guarded: bool,
    /// One sentence for the output.
    pub note: String,
}

/// A whole comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// [`SCHEMA`].
    pub schema: &'static str,
    /// `load` or `replay`.
    pub kind: &'static str,
    /// Baseline reports, as named on the command line.
    pub baseline: Vec<String>,
    /// Candidate reports.
    pub candidate: Vec<String>,
    /// Significance level.
    pub alpha: f64,
    /// Noise guard.
    pub guard: Guard,
    /// One per budget.
    pub checks: Vec<Check>,
    /// `pass` or `regression`.
    pub verdict: &'static str,
    /// Things the reader should know (missing data, warnings carried by the reports).
    pub warnings: Vec<String>,
}

impl Comparison {
    /// Checks that regressed.
    pub fn regressions(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| c.status == Status::Regression)
    }

    /// True when nothing regressed.
    pub fn passed(&self) -> bool {
        self.regressions().next().is_none()
    }
}

/// Compares the candidate runs with the baseline runs.
pub fn compare(baseline: &[Named], candidate: &[Named], opts: &Options) -> Result<Comparison, CompareError> {
    if !(opts.alpha > 0.0 && opts.alpha < 1.0) {
        return Err(CompareError::Alpha(opts.alpha));
    }
    let first = baseline.first().ok_or(CompareError::Empty("baseline"))?;
    if candidate.is_empty() {
        return Err(CompareError::Empty("candidate"));
    }
    let all: Vec<&Named> = baseline.iter().chain(candidate).collect();
    let kind = first.report.kind();
    let mut mixed = None;
    for n in &all {
        if n.report.kind() != kind {
            return Err(CompareError::MixedKinds {
                file: n.name.clone(),
                kind: n.report.kind(),
                first: first.name.clone(),
                first_kind: kind,
            });
        }
        if let (AnyReport::Load(a), AnyReport::Load(b)) = (&first.report, &n.report) {
            if a.workload.fingerprint != b.workload.fingerprint && opts.any_workload {
                mixed.get_or_insert_with(|| {
                    format!(
                        "{}'s workload differs from {}'s (compared anyway, as asked): the difference is not only \
                         the build under test",
                        n.name, first.name
                    )
                });
            } else if a.workload.fingerprint != b.workload.fingerprint {
                return Err(CompareError::MixedWorkloads {
                    file: n.name.clone(),
                    other: b.workload.fingerprint.clone(),
                    first: first.name.clone(),
                    fingerprint: a.workload.fingerprint.clone(),
                });
            }
        }
    }
    let budgets = effective_budgets(kind, &all, opts)?;

    let (m, n) = (baseline.len(), candidate.len());
    let min_p = if m >= 2 && n >= 2 {
        mann_whitney_greater(&vec![0.0; m], &vec![0.0; n]).map(|t| t.min_p)
    } else {
        None
    };
    let guard = match min_p {
        Some(p) if p < opts.alpha => Guard {
            guarded: true,
            note: format!(
                "guarded against noise: a regression must exceed its budget and be significant \
                 (one-sided Mann–Whitney U over {m} baseline and {n} candidate runs, alpha {})",
                fmt_p(opts.alpha)
            ),
        },
        Some(p) => Guard {
            guarded: false,
            note: format!(
                "not guarded against noise: with {m} baseline and {n} candidate runs the smallest possible p-value \
                 is {}, not below alpha {}; give 5 or more runs a side",
                fmt_p(p),
                fmt_p(opts.alpha)
            ),
        },
        None => Guard {
            guarded: false,
            note: format!(
                "not guarded against noise: {} against {}; a single run can be a busy second, so give 5 or more \
                 runs a side for a significance test",
                runs(m, "baseline"),
                runs(n, "candidate")
            ),
        },
    };

    let mut warnings: Vec<String> = mixed.into_iter().collect();
    let mut checks = Vec::new();
    for b in budgets {
        let values = |side: &[Named]| -> Vec<Option<f64>> {
            side.iter()
                .map(|r| value(&r.report, b.scope.as_deref(), b.metric))
                .collect()
        };
        let (bv, cv) = (values(baseline), values(candidate));
        let scope = b.scope.clone().unwrap_or_else(|| "all".into());
        let complete = |v: &[Option<f64>]| v.iter().all(Option::is_some);
        if !complete(&bv) || !complete(&cv) {
            warnings.push(format!(
                "{scope} {}: no data in some runs (no answers, or the method is missing); not checked",
                b.metric
            ));
            checks.push(Check {
                scope,
                metric: b.metric,
                allowance: 0.0,
                budget: b,
                baseline: median(&bv.iter().flatten().copied().collect::<Vec<_>>()),
                candidate: median(&cv.iter().flatten().copied().collect::<Vec<_>>()),
                baseline_runs: bv.into_iter().flatten().collect(),
                candidate_runs: cv.into_iter().flatten().collect(),
                exceeded: false,
                test: None,
                status: Status::NoData,
            });
            continue;
        }
        let bv: Vec<f64> = bv.into_iter().flatten().collect();
        let cv: Vec<f64> = cv.into_iter().flatten().collect();
        let (bm, cm) = (median(&bv).unwrap_or(0.0), median(&cv).unwrap_or(0.0));
        let allowance = b.allowance(bm);
        let worse_by = if b.metric.higher_is_worse() { cm - bm } else { bm - cm };
        // A little slack for float noise in the relative limits (10% of 1000 µs is 100.00000000000001).
        let exceeded = worse_by > allowance + 1e-9 * allowance.abs().max(1.0);
        let test = guard.guarded.then(|| {
            let sign = if b.metric.higher_is_worse() { 1.0 } else { -1.0 };
            let flip = |v: &[f64]| v.iter().map(|x| x * sign).collect::<Vec<f64>>();
            mann_whitney_greater(&flip(&bv), &flip(&cv)).expect("both sides have runs")
        });
        let status = match (&test, exceeded) {
            (_, false) => Status::Pass,
            (None, true) => Status::Regression,
            (Some(t), true) if t.p < opts.alpha => Status::Regression,
            (Some(_), true) => Status::WithinNoise,
        };
        checks.push(Check {
            scope,
            metric: b.metric,
            budget: b,
            baseline: Some(bm),
            candidate: Some(cm),
            baseline_runs: bv,
            candidate_runs: cv,
            allowance,
            exceeded,
            test,
            status,
        });
    }
    for n in candidate {
        if let AnyReport::Load(r) = &n.report {
            for w in &r.warnings {
                warnings.push(format!("{}: {w}", n.name));
            }
        }
    }
    let verdict = if checks.iter().any(|c| c.status == Status::Regression) {
        "regression"
    } else {
        "pass"
    };
    Ok(Comparison {
        schema: SCHEMA,
        kind,
        baseline: baseline.iter().map(|n| n.name.clone()).collect(),
        candidate: candidate.iter().map(|n| n.name.clone()).collect(),
        alpha: opts.alpha,
        guard,
        checks,
        verdict,
        warnings,
    })
}

fn runs(n: usize, side: &str) -> String {
    if n == 1 {
        format!("one {side} report")
    } else {
        format!("{n} {side} reports")
    }
}

/// A p-value or alpha: 3 significant digits, no exponent above 0.0001.
pub fn fmt_p(p: f64) -> String {
    if p >= 0.0995 {
        format!("{p:.2}")
    } else if p >= 0.00995 {
        format!("{p:.3}")
    } else if p >= 0.000_1 {
        format!("{p:.4}")
    } else {
        format!("{p:.1e}")
    }
}

/// Defaults for the kind, replaced by the user's budgets of the same scope and metric; each budget checked against
/// the reports (its metric exists for the kind, its method appears somewhere).
fn effective_budgets(kind: &str, all: &[&Named], opts: &Options) -> Result<Vec<Budget>, CompareError> {
    let (defaults, metrics): (&[&str], &[Metric]) = if kind == "load" {
        (DEFAULT_LOAD, &Metric::LOAD)
    } else {
        (DEFAULT_REPLAY, &Metric::REPLAY)
    };
    let mut out: Vec<Budget> = if opts.no_defaults {
        Vec::new()
    } else {
        defaults
            .iter()
            .map(|d| d.parse().expect("default budgets parse"))
            .collect()
    };
    let methods: BTreeSet<&str> = all.iter().flat_map(|n| n.report.methods()).collect();
    for b in &opts.budgets {
        if !metrics.contains(&b.metric) {
            let names: Vec<String> = metrics.iter().map(|m| m.name()).collect();
            return Err(CompareError::Budget {
                budget: b.text(),
                reason: format!("{kind} reports have no {} (they have {})", b.metric, names.join(", ")),
            });
        }
        if let Some(scope) = &b.scope {
            if b.metric == Metric::FailedSessions {
                return Err(CompareError::Budget {
                    budget: b.text(),
                    reason: "failed_sessions is counted for the whole run, not per method".into(),
                });
            }
            if !methods.contains(scope.as_str()) {
                return Err(CompareError::Budget {
                    budget: b.text(),
                    reason: format!("no report has the method {scope:?}"),
                });
            }
        }
        match out.iter_mut().find(|x| x.scope == b.scope && x.metric == b.metric) {
            Some(x) => *x = b.clone(),
            None => out.push(b.clone()),
        }
    }
    if out.is_empty() {
        return Err(CompareError::Budget {
            budget: String::new(),
            reason: "no budgets to check (--no-default-budgets without --budget)".into(),
        });
    }
    Ok(out)
}

/// The value of `metric` for `scope` (None: the totals) in one report. None when the report has no data for it.
pub fn value(report: &AnyReport, scope: Option<&str>, metric: Metric) -> Option<f64> {
    match report {
        AnyReport::Load(r) => {
            let m = match scope {
                None => &r.totals,
                Some(s) => r.methods.get(s)?,
            };
            let q = |h: &crate::Hist, q: Quantile| {
                (h.count > 0).then_some(match q {
                    Quantile::P50 => h.p50_us,
                    Quantile::P90 => h.p90_us,
                    Quantile::P99 => h.p99_us,
                    Quantile::P999 => h.p999_us,
                    Quantile::Max => h.max_us,
                } as f64)
            };
            // The totals' errors miss session-level errors (a refused connection before any request).
            let errors = match scope {
                None => m.errors.max(r.errors.values().sum()),
                Some(_) => m.errors,
            };
            match metric {
                Metric::Latency(x) => q(&m.corrected, x),
                Metric::Service(x) => q(&m.service, x),
                Metric::ErrorRate if m.requests == 0 => (errors > 0).then_some(1.0),
                Metric::ErrorRate => Some((errors as f64 / m.requests as f64).min(1.0)),
                Metric::Throughput => Some(m.throughput_rps),
                Metric::Errors => Some(errors as f64),
                _ => None,
            }
        }
        AnyReport::Replay(r) => {
            let c = match scope {
                None => &r.totals,
                Some(s) => r.methods.get(s)?,
            };
            Some(match metric {
                Metric::Mismatch => (c.differed + c.missing + c.extra) as f64,
                Metric::Differed => c.differed as f64,
                Metric::Missing => c.missing as f64,
                Metric::Extra => c.extra as f64,
                Metric::Errors => c.errors as f64,
                Metric::FailedSessions if scope.is_none() => r.failed() as f64,
                _ => return None,
            })
        }
    }
}

fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let k = s.len() / 2;
    Some(if s.len() % 2 == 1 {
        s[k]
    } else {
        (s[k - 1] + s[k]) / 2.0
    })
}

#[cfg(test)]
mod tests;

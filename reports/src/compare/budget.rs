//! Metrics and budgets: `p99=+10%`, `p50=+2ms`, `error_rate=+0.1pp`, `throughput=-5%`, `tools/call:p99=+10%`,
//! `mismatch=+0`.
//!
//! A budget is how much worse the candidate may be than the baseline before the change counts as a regression.
//! Its sign is the direction in which the metric gets worse (`+` for latencies, error rates and mismatch counts,
//! `-` for throughput); it may be left out, and the wrong sign is refused rather than silently flipped.

use std::fmt;

use serde::{Serialize, Serializer};

/// What a budget measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Metric {
    /// A percentile (or the max) of the corrected latency (from the intended send time), µs. `q` in per-mille of a
    /// hundred: 500 = p50, 999 = p99.9, 1000 = max.
    Latency(Quantile),
    /// The same of the service time (from the actual send), µs.
    Service(Quantile),
    /// Failed requests / requests (a fraction; budgets in percentage points).
    ErrorRate,
    /// Requests per second.
    Throughput,
    /// Replay: answers that differed, were missing or extra.
    Mismatch,
    /// Replay: answers that differed.
    Differed,
    /// Replay: recorded answers with no live answer.
    Missing,
    /// Replay: live messages with no recorded counterpart.
    Extra,
    /// Errors: for load reports failed requests plus session errors, for replay reports live JSON-RPC errors.
    Errors,
    /// Replay: sessions that failed (crash, refused connection, timeout).
    FailedSessions,
}

/// A latency summary point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Quantile {
    /// Median.
    P50,
    /// 90th percentile.
    P90,
    /// 99th percentile.
    P99,
    /// 99.9th percentile.
    P999,
    /// Largest.
    Max,
}

impl Quantile {
    const ALL: [(Quantile, &'static str); 5] = [
        (Quantile::P50, "p50"),
        (Quantile::P90, "p90"),
        (Quantile::P99, "p99"),
        (Quantile::P999, "p99.9"),
        (Quantile::Max, "max"),
    ];

    /// `p50`, `p90`, `p99`, `p99.9`, `max`.
    pub fn name(self) -> &'static str {
        Quantile::ALL
            .iter()
            .find(|(q, _)| *q == self)
            .map(|(_, n)| *n)
            .unwrap_or("?")
    }
}

/// What a metric's values are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Microseconds.
    Micros,
    /// A fraction 0..1, shown in percent.
    Fraction,
    /// Per second.
    PerSecond,
    /// A count.
    Count,
}

impl Metric {
    /// Every metric a load report has, in display order.
    pub const LOAD: [Metric; 13] = [
        Metric::Latency(Quantile::P50),
        Metric::Latency(Quantile::P90),
        Metric::Latency(Quantile::P99),
        Metric::Latency(Quantile::P999),
        Metric::Latency(Quantile::Max),
        Metric::Service(Quantile::P50),
        Metric::Service(Quantile::P90),
        Metric::Service(Quantile::P99),
        Metric::Service(Quantile::P999),
        Metric::Service(Quantile::Max),
        Metric::ErrorRate,
        Metric::Throughput,
        Metric::Errors,
    ];
    /// Every metric a replay report has.
    pub const REPLAY: [Metric; 6] = [
        Metric::Mismatch,
        Metric::Differed,
        Metric::Missing,
        Metric::Extra,
        Metric::Errors,
        Metric::FailedSessions,
    ];

    /// The name used in budgets and output: `p99`, `service_p99`, `error_rate`, `throughput`, `mismatch`, ….
    pub fn name(self) -> String {
        match self {
            Metric::Latency(q) => q.name().to_string(),
            Metric::Service(q) => format!("service_{}", q.name()),
            Metric::ErrorRate => "error_rate".into(),
            Metric::Throughput => "throughput".into(),
            Metric::Mismatch => "mismatch".into(),
            Metric::Differed => "differed".into(),
            Metric::Missing => "missing".into(),
            Metric::Extra => "extra".into(),
            Metric::Errors => "errors".into(),
            Metric::FailedSessions => "failed_sessions".into(),
        }
    }

    /// Parses [`Metric::name`]; `p999` is accepted for `p99.9`.
    pub fn parse(s: &str) -> Option<Metric> {
        let q = |s: &str| {
            let s = if s == "p999" { "p99.9" } else { s };
            Quantile::ALL.iter().find(|(_, n)| *n == s).map(|(q, _)| *q)
        };
        if let Some(rest) = s.strip_prefix("service_") {
            return q(rest).map(Metric::Service);
        }
        if let Some(x) = q(s) {
            return Some(Metric::Latency(x));
        }
        Some(match s {
            "error_rate" => Metric::ErrorRate,
            "throughput" => Metric::Throughput,
            "mismatch" => Metric::Mismatch,
            "differed" => Metric::Differed,
            "missing" => Metric::Missing,
            "extra" => Metric::Extra,
            "errors" => Metric::Errors,
            "failed_sessions" => Metric::FailedSessions,
            _ => return None,
        })
    }

    /// What the values are.
    pub fn unit(self) -> Unit {
        match self {
            Metric::Latency(_) | Metric::Service(_) => Unit::Micros,
            Metric::ErrorRate => Unit::Fraction,
            Metric::Throughput => Unit::PerSecond,
            _ => Unit::Count,
        }
    }

    /// True when a larger value is worse (all but throughput).
    pub fn higher_is_worse(self) -> bool {
        self != Metric::Throughput
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl Serialize for Metric {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name())
    }
}

/// How much worse the candidate may be.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Limit {
    /// A fraction of the baseline value (`+10%` is 0.10).
    Relative(f64),
    /// An amount in the metric's unit: µs for latencies, a fraction for error rates (`+0.1pp` is 0.001), requests
    /// per second for throughput, a count for counts.
    Absolute(f64),
}

/// One budget: `[METHOD:]METRIC=LIMIT`.
#[derive(Debug, Clone, PartialEq)]
pub struct Budget {
    /// A method, or None for the totals.
    pub scope: Option<String>,
    /// The metric.
    pub metric: Metric,
    /// How much worse it may get.
    pub limit: Limit,
}

/// A budget that does not parse; the message names it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("budget {budget:?}: {reason}")]
pub struct BudgetError {
    /// The budget as given.
    pub budget: String,
    /// What is wrong.
    pub reason: String,
}

/// The budgets used for load reports unless `--no-default-budgets`: loose enough that repeated runs of one build on
/// a busy machine stay quiet, tight enough to catch a real slowdown.
pub const DEFAULT_LOAD: &[&str] = &["p50=+10%", "p99=+25%", "error_rate=+0.5pp", "throughput=-10%"];
/// The budgets used for replay reports unless `--no-default-budgets`: any new mismatch or failed session.
pub const DEFAULT_REPLAY: &[&str] = &["mismatch=+0", "failed_sessions=+0"];

impl Budget {
    /// The budget as written canonically: `tools/call:p99=+10%`, `error_rate=+0.1pp`, `p50=+2ms`.
    pub fn text(&self) -> String {
        let scope = self.scope.as_deref().map(|s| format!("{s}:")).unwrap_or_default();
        format!("{scope}{}={}", self.metric, self.limit_text())
    }

    /// The limit as written canonically: `+10%`, `-5%`, `+2ms`, `+0.1pp`, `+0`.
    pub fn limit_text(&self) -> String {
        let sign = if self.metric.higher_is_worse() { '+' } else { '-' };
        match self.limit {
            Limit::Relative(x) => format!("{sign}{}%", num(x * 100.0)),
            Limit::Absolute(x) => match self.metric.unit() {
                Unit::Micros if x >= 1000.0 => format!("{sign}{}ms", num(x / 1000.0)),
                Unit::Micros => format!("{sign}{}us", num(x)),
                Unit::Fraction => format!("{sign}{}pp", num(x * 100.0)),
                Unit::PerSecond => format!("{sign}{}/s", num(x)),
                Unit::Count => format!("{sign}{}", num(x)),
            },
        }
    }

    /// The largest allowed worsening, in the metric's unit, for this baseline value.
    pub fn allowance(&self, baseline: f64) -> f64 {
        match self.limit {
            Limit::Relative(x) => x * baseline.abs(),
            Limit::Absolute(x) => x,
        }
    }
}

/// A number without trailing zeros: `10`, `0.1`, `2.5`.
fn num(x: f64) -> String {
    let s = format!("{x:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-0" {
        "0".into()
    } else {
        s.to_string()
    }
}

impl std::str::FromStr for Budget {
    type Err = BudgetError;

    fn from_str(s: &str) -> Result<Budget, BudgetError> {
        let err = |reason: String| BudgetError {
            budget: s.to_string(),
            reason,
        };
        let (left, right) = s
            .split_once('=')
            .ok_or_else(|| err("expected [METHOD:]METRIC=LIMIT, e.g. p99=+10% or tools/call:p50=+2ms".into()))?;
        let (scope, metric_name) = match left.rsplit_once(':') {
            Some((m, x)) if !m.trim().is_empty() => (Some(m.trim().to_string()), x.trim()),
            Some((_, x)) => (None, x.trim()),
            None => (None, left.trim()),
        };
        let metric = Metric::parse(metric_name).ok_or_else(|| {
            err(format!(
                "unknown metric {metric_name:?} (known: p50, p90, p99, p99.9, max, service_p50 … service_max, \
                 error_rate, throughput, errors, mismatch, differed, missing, extra, failed_sessions)"
            ))
        })?;
        let right = right.trim();
        let (sign, rest) = match right.as_bytes().first() {
            Some(b'+') => (Some(true), &right[1..]),
            Some(b'-') => (Some(false), &right[1..]),
            _ => (None, right),
        };
        if let Some(up) = sign {
            if up != metric.higher_is_worse() {
                let want = if metric.higher_is_worse() { '+' } else { '-' };
                return Err(err(format!(
                    "{metric} gets worse as it {}; write the limit with {want}",
                    if metric.higher_is_worse() { "rises" } else { "falls" }
                )));
            }
        }
        let split = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, unit) = rest.split_at(split);
        let value: f64 = number
            .parse()
            .ok()
            .filter(|v: &f64| v.is_finite() && *v >= 0.0)
            .ok_or_else(|| err(format!("{right:?} is not a limit (a number and a unit, e.g. +10%)")))?;
        let bad_unit = |allowed: &str| err(format!("{metric} takes a limit in {allowed}, not {unit:?}"));
        let limit = match (metric.unit(), unit.trim()) {
            (_, "%") if metric != Metric::ErrorRate => Limit::Relative(value / 100.0),
            (Unit::Micros, "ms") => Limit::Absolute(value * 1000.0),
            (Unit::Micros, "us" | "µs") => Limit::Absolute(value),
            (Unit::Micros, "s") => Limit::Absolute(value * 1e6),
            (Unit::Micros, _) => return Err(bad_unit("% (of the baseline), ms, us or s")),
            (Unit::Fraction, "pp") => Limit::Absolute(value / 100.0),
            (Unit::Fraction, _) => {
                return Err(bad_unit("pp (percentage points: +0.1pp allows 0.5% -> 0.6%)"));
            }
            (Unit::PerSecond, "/s" | "rps") => Limit::Absolute(value),
            (Unit::PerSecond, _) => return Err(bad_unit("% (of the baseline) or /s")),
            (Unit::Count, "") => Limit::Absolute(value),
            (Unit::Count, _) => return Err(bad_unit("% (of the baseline) or a plain count")),
        };
        Ok(Budget { scope, metric, limit })
    }
}

impl Serialize for Budget {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Budget {
        s.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn the_issue_examples_parse_and_print_back() {
        for (given, canonical) in [
            ("p99=+10%", "p99=+10%"),
            ("p50=+2ms", "p50=+2ms"),
            ("error_rate=+0.1pp", "error_rate=+0.1pp"),
            ("throughput=-5%", "throughput=-5%"),
            ("tools/call:p99=+10%", "tools/call:p99=+10%"),
            ("p999=+500us", "p99.9=+500us"),
            ("service_p99=1.5ms", "service_p99=+1.5ms"),
            ("mismatch=+0", "mismatch=+0"),
            ("throughput=-100/s", "throughput=-100/s"),
        ] {
            assert_eq!(b(given).text(), canonical, "{given}");
        }
        let x = b("tools/call:p99=+10%");
        assert_eq!(x.scope.as_deref(), Some("tools/call"));
        assert_eq!(x.metric, Metric::Latency(Quantile::P99));
        assert!((x.allowance(2000.0) - 200.0).abs() < 1e-9);
        assert!((b("error_rate=+0.1pp").allowance(0.3) - 0.001).abs() < 1e-12);
        assert_eq!(b("p50=+2ms").allowance(1.0), 2000.0);
    }

    #[test]
    fn defaults_parse() {
        for d in DEFAULT_LOAD.iter().chain(DEFAULT_REPLAY) {
            assert_eq!(b(d).text(), *d);
        }
    }

    #[test]
    fn bad_budgets_name_themselves_and_say_why() {
        for (given, why) in [
            ("p99", "expected [METHOD:]METRIC=LIMIT"),
            ("p98=+10%", "unknown metric \"p98\""),
            ("throughput=+5%", "write the limit with -"),
            ("p99=-5%", "write the limit with +"),
            ("p99=+ten%", "is not a limit"),
            ("p99=+10", "p99 takes a limit in % (of the baseline), ms"),
            ("error_rate=+1%", "percentage points"),
            ("mismatch=+1ms", "a plain count"),
        ] {
            let e = given.parse::<Budget>().unwrap_err().to_string();
            assert!(e.starts_with(&format!("budget {given:?}: ")), "{e}");
            assert!(e.contains(why), "{given}: {e}");
            assert!(!e.contains('\n'));
        }
    }
}

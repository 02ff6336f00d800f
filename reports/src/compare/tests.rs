use std::collections::BTreeMap;

use super::*;
use crate::load::{Machine, MethodReport, Workload, new_histogram};
use crate::{LoadReport, ReplayReport};

/// A load report of one method whose latencies are `base_us` × (1..=100) / 50 (so p50 ≈ base_us), with
/// `errors` of `requests` failed over 10 s.
fn report(base_us: u64, requests: u64, errors: u64) -> AnyReport {
    let mut h = new_histogram();
    for i in 1..=100u64 {
        h.record(base_us * i / 50).unwrap();
    }
    let m = MethodReport::from_parts(requests, errors, 10.0, &h, &h);
    let mut methods = BTreeMap::new();
    methods.insert("tools/call".to_string(), m.clone());
    AnyReport::Load(LoadReport {
        schema: crate::load::SCHEMA.into(),
        tool_version: "0.1.0".into(),
        started: "2026-11-22T08:00:00Z".into(),
        duration_s: 10.0,
        target: "http://127.0.0.1:1/mcp".into(),
        workload: Workload {
            capture: vec![],
            sessions: 1,
            model: "closed".into(),
            concurrency: Some(2),
            rate: None,
            arrival: None,
            pace: "max".into(),
            mix: "uniform".into(),
            ramp_s: 0.0,
            warmup_s: 0.0,
            fingerprint: "sha256:same".into(),
        },
        machine: Machine {
            hostname: "h".into(),
            cores: 2,
            cpu: "c".into(),
            os: "o".into(),
        },
        shard: None,
        totals: m,
        methods,
        phases: BTreeMap::new(),
        errors: if errors > 0 {
            BTreeMap::from([("timeout".to_string(), errors)])
        } else {
            BTreeMap::new()
        },
        series: vec![],
        warnings: vec![],
    })
}

fn named(i: usize, r: AnyReport) -> Named {
    Named {
        name: format!("r{i}.json"),
        report: r,
    }
}

fn side(values: &[u64]) -> Vec<Named> {
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| named(i, report(v, 1000, 0)))
        .collect()
}

fn check<'a>(c: &'a Comparison, name: &str) -> &'a Check {
    c.checks
        .iter()
        .find(|x| crate::render::check_name(x) == name)
        .unwrap_or_else(|| panic!("no check {name}"))
}

#[test]
fn a_run_against_itself_passes_every_default_budget() {
    let c = compare(&side(&[1000]), &side(&[1000]), &Options::default()).unwrap();
    assert!(c.passed());
    let names: Vec<String> = c.checks.iter().map(crate::render::check_name).collect();
    assert_eq!(names, ["p50", "p99", "error_rate", "throughput"]);
    assert!(c.checks.iter().all(|x| x.status == Status::Pass));
    assert!(!c.guard.guarded && c.guard.note.starts_with("not guarded against noise"));
}

#[test]
fn one_run_a_side_flags_every_exceeded_budget() {
    let c = compare(&side(&[1000]), &side(&[1200]), &Options::default()).unwrap();
    assert!(!c.passed());
    assert_eq!(check(&c, "p50").status, Status::Regression);
    assert_eq!(check(&c, "p99").status, Status::Pass); // +20% is within +25%
    assert_eq!(check(&c, "p50").baseline, Some(1000.0));
}

#[test]
fn several_runs_need_significance_as_well_as_the_budget() {
    // Candidate medians 30% worse, but the runs interleave: over budget, within noise.
    let c = compare(
        &side(&[1000, 1400, 900, 1500, 1100]),
        &side(&[1300, 950, 1450, 1600, 1350]),
        &Options::default(),
    )
    .unwrap();
    assert!(c.guard.guarded, "{}", c.guard.note);
    let p50 = check(&c, "p50");
    assert!(p50.exceeded);
    assert_eq!(p50.status, Status::WithinNoise);
    assert!(p50.test.as_ref().unwrap().p > c.alpha);
    assert!(c.passed());
    // Fully separated: significant (p = 1/252) and over budget.
    let c = compare(
        &side(&[1000, 1010, 990, 1005, 995]),
        &side(&[1300, 1310, 1290, 1305, 1295]),
        &Options::default(),
    )
    .unwrap();
    let p50 = check(&c, "p50");
    assert_eq!(p50.status, Status::Regression);
    assert!((p50.test.as_ref().unwrap().p - 1.0 / 252.0).abs() < 1e-12);
    // Significant but within budget: pass.
    let c = compare(
        &side(&[1000, 1010, 990, 1005, 995]),
        &side(&[1050, 1060, 1040, 1055, 1045]),
        &Options::default(),
    )
    .unwrap();
    assert_eq!(check(&c, "p50").status, Status::Pass);
}

#[test]
fn too_few_runs_for_the_test_fall_back_to_unguarded_and_say_so() {
    let c = compare(&side(&[1000, 1000]), &side(&[1300, 1300]), &Options::default()).unwrap();
    assert!(!c.guard.guarded);
    assert!(
        c.guard.note.contains("smallest possible p-value is 0.17"),
        "{}",
        c.guard.note
    );
    assert_eq!(check(&c, "p50").status, Status::Regression);
}

#[test]
fn throughput_regresses_downwards_and_error_rate_in_points() {
    let base = vec![named(0, report(1000, 1000, 0))];
    let cand = vec![named(1, report(1000, 850, 6))];
    let c = compare(&base, &cand, &Options::default()).unwrap();
    assert_eq!(check(&c, "throughput").status, Status::Regression); // -15%
    assert_eq!(check(&c, "error_rate").status, Status::Regression); // 0 -> 0.71%
    // More throughput is never a regression.
    let c = compare(&cand, &base, &Options::default()).unwrap();
    assert_eq!(check(&c, "throughput").status, Status::Pass);
}

#[test]
fn user_budgets_replace_defaults_and_add_methods() {
    let opts = Options {
        budgets: vec!["p50=+50%".parse().unwrap(), "tools/call:p99=+500us".parse().unwrap()],
        ..Options::default()
    };
    let c = compare(&side(&[1000]), &side(&[1400]), &opts).unwrap();
    assert_eq!(check(&c, "p50").status, Status::Pass);
    assert_eq!(check(&c, "tools/call p99").status, Status::Regression); // p99 1.98 ms -> 2.77 ms
    let p99 = check(&c, "tools/call p99");
    assert!((p99.change().unwrap() - 792.0).abs() < 10.0, "{:?}", p99.change());
    let only = Options {
        budgets: vec!["p50=+50%".parse().unwrap()],
        no_defaults: true,
        ..Options::default()
    };
    assert_eq!(compare(&side(&[1000]), &side(&[1400]), &only).unwrap().checks.len(), 1);
}

#[test]
fn bad_inputs_are_errors_naming_the_file_or_budget() {
    let opts = |b: &str| Options {
        budgets: vec![b.parse().unwrap()],
        ..Options::default()
    };
    let e = compare(&side(&[1000]), &side(&[1000]), &opts("nope:p99=+1%")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "budget \"nope:p99=+1%\": no report has the method \"nope\""
    );
    let e = compare(&side(&[1000]), &side(&[1000]), &opts("mismatch=+0")).unwrap_err();
    assert!(e.to_string().contains("load reports have no mismatch"), "{e}");

    let mut other = report(1000, 1000, 0);
    if let AnyReport::Load(r) = &mut other {
        r.workload.fingerprint = "sha256:other".into();
    }
    let e = compare(&side(&[1000]), &[named(7, other.clone())], &Options::default()).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("r7.json: workload sha256:other differs from r0.json's"),
        "{e}"
    );
    // Asked for: compared, with a warning saying the workloads differ.
    let any = Options {
        any_workload: true,
        ..Options::default()
    };
    let c = compare(&side(&[1000]), &[named(7, other)], &any).unwrap();
    assert!(c.passed());
    assert!(
        c.warnings
            .iter()
            .any(|w| w.starts_with("r7.json's workload differs from r0.json's")),
        "{:?}",
        c.warnings
    );

    let replay: ReplayReport = serde_json::from_str(
        r#"{"schema":"mcptape.replay/1","tool_version":"0","started":"","capture":[],"target":"t","options":{},
            "duration_ms":1,"totals":{"matched":1,"differed":0,"missing":0,"extra":0,"errors":0},"methods":{},"sessions":[]}"#,
    )
    .unwrap();
    let e = compare(
        &side(&[1000]),
        &[named(3, AnyReport::Replay(replay))],
        &Options::default(),
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("r3.json: a replay report, but r0.json is a load report"),
        "{e}"
    );
    let e = compare(
        &side(&[1000]),
        &side(&[1000]),
        &Options {
            alpha: 1.5,
            ..Options::default()
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("--alpha 1.5"));
}

#[test]
fn session_errors_count_in_the_overall_error_rate() {
    let mut r = report(1000, 1000, 0);
    if let AnyReport::Load(x) = &mut r {
        x.errors.insert("transport".into(), 20);
    }
    assert_eq!(value(&r, None, Metric::ErrorRate), Some(0.02));
    assert_eq!(value(&r, Some("tools/call"), Metric::ErrorRate), Some(0.0));
    assert_eq!(value(&r, Some("nope"), Metric::ErrorRate), None);
}

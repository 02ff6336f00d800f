//! Golden files for every rendering: show (text, Markdown, JSON), compare (text, Markdown, JUnit, JSON), the SVG
//! charts and the HTML page, from the report fixtures in tests/fixtures (made by `mcptape load` and `mcptape
//! replay` against `mcptape serve`, host names scrubbed). `MCPTAPE_BLESS=1 cargo test -p mcptape-reports --test
//! golden` rewrites the goldens; without it any difference fails.

use std::path::{Path, PathBuf};

use mcptape_reports::compare::{self, Budget, Named, Options};
use mcptape_reports::html;
use mcptape_reports::{AnyReport, read_report, render, show};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests")
}

fn fixture(name: &str) -> Named {
    Named {
        name: name.to_string(),
        report: read_report(&dir().join("fixtures").join(name)).unwrap(),
    }
}

fn load(name: &str) -> mcptape_reports::LoadReport {
    match fixture(name).report {
        AnyReport::Load(r) => r,
        AnyReport::Replay(_) => panic!("{name} is a replay report"),
    }
}

/// Compares `actual` with tests/golden/`name`, or writes it with MCPTAPE_BLESS=1.
fn golden(name: &str, actual: &str) {
    let path = dir().join("golden").join(name);
    if std::env::var_os("MCPTAPE_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with MCPTAPE_BLESS=1 to create it)", path.display()));
    if expected != actual {
        let line = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(expected.lines().count().min(actual.lines().count()));
        panic!(
            "{} differs from the rendering at line {}:\n  golden: {:?}\n  actual: {:?}\n(MCPTAPE_BLESS=1 rewrites it)",
            path.display(),
            line + 1,
            expected.lines().nth(line),
            actual.lines().nth(line)
        );
    }
}

#[test]
fn show_renderings() {
    let r = load("base.json");
    golden("show-base.txt", &show::to_text(&r));
    golden("show-base.md", &show::to_markdown(&r));
    golden("show-base.json", &show::to_json(&r));
    let text = show::to_text(&r);
    // Every method and both latency kinds, with the error class and its rate.
    for needle in [
        "tools/call",
        "corrected latency",
        "service time",
        "jsonrpc_-32602",
        "p99.9",
    ] {
        assert!(text.contains(needle), "{needle} not in {text}");
    }
}

#[test]
fn compare_one_run_a_side_is_unguarded() {
    let c = compare::compare(&[fixture("base.json")], &[fixture("cand.json")], &Options::default()).unwrap();
    golden("compare-single.txt", &render::to_text(&c));
    golden("compare-single.md", &render::to_markdown(&c));
    golden("compare-single.junit.xml", &render::to_junit(&c));
    golden("compare-single.json", &render::to_json(&c));
    assert!(!c.passed());
    assert!(!c.guard.guarded);
    assert!(render::to_text(&c).contains("not guarded against noise"));
}

#[test]
fn compare_three_runs_a_side_names_the_test_and_p() {
    let runs = |side: &str| {
        (1..=3)
            .map(|i| fixture(&format!("run-{side}{i}.json")))
            .collect::<Vec<_>>()
    };
    let opts = Options {
        budgets: vec![
            "p50=+20%".parse::<Budget>().unwrap(),
            "tools/call:p99=+50%".parse().unwrap(),
        ],
        no_defaults: false,
        alpha: 0.1,
        any_workload: false,
    };
    let c = compare::compare(&runs("a"), &runs("b"), &opts).unwrap();
    golden("compare-runs.txt", &render::to_text(&c));
    golden("compare-runs.md", &render::to_markdown(&c));
    golden("compare-runs.junit.xml", &render::to_junit(&c));
    assert!(c.guard.guarded);
    let text = render::to_text(&c);
    assert!(text.contains("Mann–Whitney U") && text.contains("p=0.050"), "{text}");
}

#[test]
fn compare_replay_reports() {
    let c = compare::compare(
        &[fixture("replay-same.json")],
        &[fixture("replay-diff.json")],
        &Options::default(),
    )
    .unwrap();
    golden("compare-replay.md", &render::to_markdown(&c));
    assert!(!c.passed());
    assert!(c.regressions().any(|x| x.metric == compare::Metric::Mismatch));
}

#[test]
fn svg_charts_and_page() {
    let (base, cand) = (load("base.json"), load("cand.json"));
    let charts = html::load_charts("cand.json", &cand, &[("base.json", &base)]).unwrap();
    let ids = ["spectrum", "latency-time", "throughput-time", "errors"];
    assert_eq!(charts.len(), ids.len());
    for (svg, id) in charts.iter().zip(ids) {
        assert!(svg.contains(&format!("id=\"{id}\"")));
        assert!(svg.matches("class=\"mark\"").count() >= 2, "{id} has no marks");
        golden(&format!("chart-{id}.svg"), svg);
    }
    let page = html::page(&fixture("cand.json"), &[fixture("base.json")]).unwrap();
    golden("page.html", &page);
    for attr in [
        "src=\"http",
        "href=\"http",
        "src='http",
        "href='http",
        "@import",
        "url(",
    ] {
        assert!(!page.contains(attr), "the page must not fetch anything: {attr}");
    }
    // Rendering twice gives the same bytes.
    assert_eq!(
        page,
        html::page(&fixture("cand.json"), &[fixture("base.json")]).unwrap()
    );
}

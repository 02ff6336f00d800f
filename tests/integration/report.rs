//! `mcptape report`: show, merge, compare (exit codes, budgets, the noise guard, A/A runs, a real slowdown) and
//! html (rendered in headless Chromium, screenshot kept).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::util::*;

/// A report fixture of the reports crate (made by `mcptape load`/`replay` against `mcptape serve`).
fn report_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("reports/tests/fixtures")
        .join(name)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Held by the tests that measure, so they do not load the machine for each other.
static TIMING: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn load_to(out: &Path, args: &[&str]) {
    let o = mcptape().arg("load").arg("-o").arg(out).args(args).output().unwrap();
    assert!(o.status.success(), "load {args:?}: {}", stderr(&o));
}

#[test]
fn show_merge_and_compare_of_fixture_reports_and_their_errors() {
    let dir = tempfile::tempdir().unwrap();
    let base = report_fixture("base.json");

    let o = run(&["report", "show", s(&base)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("1,400 requests") && text.contains("jsonrpc_-32602") && text.contains("p99.9"),
        "{text}"
    );
    let o = run(&["report", "show", s(&base), "--format", "md"]);
    assert!(stdout(&o).contains("| `tools/call` | 600 |"), "{}", stdout(&o));
    let o = run(&["report", "show", s(&base), "--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["methods"]["tools/call"]["errors"], 200);
    assert_eq!(v["errors"]["jsonrpc_-32602"]["count"], 200);
    let o = run(&["report", "show", s(&report_fixture("replay-diff.json"))]);
    assert!(stdout(&o).starts_with("replay FAIL"), "{}", stdout(&o));

    // Merge: three runs of one workload add up exactly.
    let merged = dir.path().join("merged.json");
    let runs: Vec<PathBuf> = (1..=3).map(|i| report_fixture(&format!("run-a{i}.json"))).collect();
    let o = mcptape()
        .args(["report", "merge"])
        .args(&runs)
        .arg("-o")
        .arg(&merged)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&merged).unwrap()).unwrap();
    let total: u64 = runs
        .iter()
        .map(|p| {
            let v: serde_json::Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
            v["totals"]["corrected"]["count"].as_u64().unwrap()
        })
        .sum();
    assert_eq!(m["totals"]["corrected"]["count"], total);
    assert_eq!(m["schema"], "mcptape.load/1");

    // Merge refuses other workloads and schemas, naming the file.
    let o = run(&["report", "merge", s(&runs[0]), s(&base), "-o", s(&merged)]);
    assert_one_line_error(&o, 2, &[s(&base), "different workloads"]);
    let replay = report_fixture("replay-same.json");
    let o = run(&["report", "merge", s(&runs[0]), s(&replay), "-o", s(&merged)]);
    assert_one_line_error(&o, 2, &[s(&replay), "different schemas"]);

    // Compare: a run against itself passes; bad input is exit 2 naming the file or budget.
    let o = run(&["report", "compare", "--baseline", s(&base), "--candidate", s(&base)]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("PASS") && stdout(&o).contains("not guarded against noise"));
    let o = run(&[
        "report",
        "compare",
        "--baseline",
        s(&base),
        "--candidate",
        s(&base),
        "--budget",
        "p98=+1%",
    ]);
    assert_one_line_error(&o, 2, &["budget \"p98=+1%\"", "unknown metric"]);
    let o = run(&[
        "report",
        "compare",
        "--baseline",
        s(&base),
        "--candidate",
        s(&base),
        "--budget",
        "throughput=+5%",
    ]);
    assert_one_line_error(&o, 2, &["throughput=+5%", "write the limit with -"]);
    let missing = dir.path().join("missing.json");
    let o = run(&["report", "compare", "--baseline", s(&base), "--candidate", s(&missing)]);
    assert_one_line_error(&o, 2, &[s(&missing)]);
    let o = run(&["report", "compare", "--baseline", s(&base), "--candidate", s(&runs[0])]);
    assert_one_line_error(&o, 2, &[s(&runs[0]), "compare runs of the same workload"]);
    let future = dir.path().join("future.json");
    std::fs::write(&future, r#"{"schema":"mcptape.load/9"}"#).unwrap();
    let o = run(&["report", "show", s(&future)]);
    assert_one_line_error(&o, 2, &[s(&future), "unsupported report schema \"mcptape.load/9\""]);

    // Replay reports compare on mismatches; JUnit to a file.
    let junit = dir.path().join("junit.xml");
    let o = run(&[
        "report",
        "compare",
        "--baseline",
        s(&replay),
        "--candidate",
        s(&report_fixture("replay-diff.json")),
        "--format",
        "junit",
        "-o",
        s(&junit),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains("<failure type=\"regression\" message=\"mismatch regressed\">"),
        "{xml}"
    );
    assert!(stderr(&o).contains("REGRESSION"), "{}", stderr(&o));
}

#[test]
fn a_twenty_millisecond_slowdown_exits_1_and_names_p50_and_p99() {
    // One closed-model user a side, both runs at once: a stall of the busy machine delays only the one request in
    // flight (nothing queues behind it, so coordinated-omission correction has nothing to add), so the baseline's
    // p99 stays near the round trip while every candidate answer takes at least the injected 20 ms. (An open-model
    // run here let one stall of the loaded test suite lift the baseline's corrected p99 to 76 ms.) The timing
    // tests of this module take turns.
    let dir = tempfile::tempdir().unwrap();
    let cap = one_request_capture(dir.path(), 4);
    let fast = serve_http(&cap, &[]);
    let slow = serve_http(&cap, &["--latency", "20ms"]);
    let (a, b) = (dir.path().join("a.json"), dir.path().join("b.json"));
    let _quiet = TIMING.lock().unwrap_or_else(|e| e.into_inner());
    // Both runs at once, so whatever else the machine does hits both alike.
    std::thread::scope(|scope| {
        for (out, url) in [(&a, &fast.1), (&b, &slow.1)] {
            let cap = &cap;
            scope.spawn(move || {
                load_to(out, &[s(cap), "--target", url, "-c", "1", "--sessions", "200"]);
            });
        }
    });
    drop((fast, slow));

    let o = run(&["report", "compare", "--baseline", s(&a), "--candidate", s(&b)]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{}", stderr(&o));
    let verdict = |name: &str| {
        out.lines()
            .find(|l| l.trim_start().starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} line in {out}"))
            .to_string()
    };
    assert!(verdict("p50").ends_with("REGRESSION"), "{out}");
    assert!(verdict("p99").ends_with("REGRESSION"), "{out}");
    // Throughput regresses too (one user waits for each answer); p50 and p99 come first.
    assert!(out.contains("regressed: p50, p99"), "{out}");

    // The forms `mcptape demo` uses.
    let md = dir.path().join("compare.md");
    let o = run(&[
        "report",
        "compare",
        "--baseline",
        s(&a),
        "--candidate",
        s(&b),
        "--format",
        "md",
        "-o",
        s(&md),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let md = std::fs::read_to_string(&md).unwrap();
    assert!(md.starts_with("### mcptape compare (load): ❌ regression"), "{md}");
    assert!(md.contains("| `p50` |") && md.contains("| `p99` |"), "{md}");
    let page = dir.path().join("page.html");
    let o = run(&["report", "html", s(&b), "--baseline", s(&a), "-o", s(&page)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let html = std::fs::read_to_string(&page).unwrap();
    assert_eq!(html.matches("<svg class=\"chart\"").count(), 4);
    assert!(html.contains("regression: "), "the page shows the verdict");
}

#[test]
fn five_a_a_runs_a_side_give_no_false_regression_at_the_default_budgets() {
    // Ten 1-second closed-model runs of the same build against one server, in the order ABBA ABBA AB, so drift
    // of a busy machine (a build starting halfway) hits both sides alike.
    let dir = tempfile::tempdir().unwrap();
    let cap = one_request_capture(dir.path(), 4);
    let served = serve_http(&cap, &[]);
    let _quiet = TIMING.lock().unwrap_or_else(|e| e.into_inner());
    let order = ["a", "b", "b", "a", "a", "b", "b", "a", "a", "b"];
    let (mut base, mut cand) = (Vec::new(), Vec::new());
    for (i, side) in order.iter().enumerate() {
        let out = dir.path().join(format!("{side}{i}.json"));
        load_to(&out, &[s(&cap), "--target", &served.1, "-c", "2", "--duration", "1s"]);
        if *side == "a" { base.push(out) } else { cand.push(out) }
    }
    drop(served);
    let o = mcptape()
        .args(["report", "compare", "--baseline"])
        .args(&base)
        .arg("--candidate")
        .args(&cand)
        .output()
        .unwrap();
    let out = stdout(&o);
    assert_eq!(
        o.status.code(),
        Some(0),
        "false regression between identical builds:\n{out}{}",
        stderr(&o)
    );
    assert!(
        out.contains("guarded against noise") && out.contains("Mann–Whitney U over 5 baseline and 5 candidate runs"),
        "{out}"
    );
    assert!(out.contains("U="), "the test statistic and p-value are shown: {out}");
}

/// Runs `cmd`, killing it after `limit`.
fn run_with_timeout(mut cmd: Command, limit: Duration) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chromium starts");
    let pid = child.id();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = done.clone();
    let killer = std::thread::spawn(move || {
        let start = Instant::now();
        while start.elapsed() < limit {
            if flag.load(std::sync::atomic::Ordering::SeqCst) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Chromium's own children follow when the browser process dies.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        true
    });
    let out = child.wait_with_output().unwrap();
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(
        !killer.join().unwrap(),
        "chromium did not finish within {limit:?} and was killed"
    );
    out
}

fn chromium(user_dir: &Path) -> Command {
    let bin = std::env::var_os("MCPTAPE_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        bin.exists(),
        "{} is missing: run the README test command (scripts/test), which installs Debian's chromium",
        bin.display()
    );
    let mut c = Command::new(bin);
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        // Any attempt to reach the network fails instead of waiting.
        "--host-resolver-rules=MAP * ~NOTFOUND",
    ])
    .arg(format!("--user-data-dir={}", user_dir.display()))
    .env("HOME", user_dir);
    c
}

#[test]
fn the_html_report_draws_every_chart_in_headless_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("report.html");
    let (base, cand) = (report_fixture("base.json"), report_fixture("cand.json"));
    let o = run(&["report", "html", s(&cand), "--baseline", s(&base), "-o", s(&page)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let html = std::fs::read_to_string(&page).unwrap();
    for attr in [
        "src=\"http",
        "href=\"http",
        "src='http",
        "href='http",
        "url(",
        "@import",
        "<link",
    ] {
        assert!(!html.contains(attr), "the page must not fetch anything, found {attr}");
    }
    let url = format!("file://{}", page.display());
    let _quiet = TIMING.lock().unwrap_or_else(|e| e.into_inner());

    // The page's inline check measures each chart after layout and writes the result into #chart-check.
    let mut dump = chromium(&dir.path().join("profile-dom"));
    dump.args(["--dump-dom", &url]);
    let o = run_with_timeout(dump, Duration::from_secs(90));
    let dom = stdout(&o);
    let check = dom
        .split("<output id=\"chart-check\"")
        .nth(1)
        .and_then(|rest| rest.split_once('>'))
        .map(|(_, rest)| rest.split('<').next().unwrap_or_default().to_string())
        .unwrap_or_else(|| panic!("no #chart-check in the DOM: {}", stderr(&o)));
    assert!(check.starts_with("charts-ok "), "{check}");
    for id in ["spectrum", "latency-time", "throughput-time", "errors"] {
        let entry = check
            .split_whitespace()
            .find(|e| e.starts_with(&format!("{id}:")))
            .unwrap_or_else(|| panic!("{id} not measured: {check}"));
        // id:WxH:drawn/marks — a real size and every mark drawn.
        let parts: Vec<&str> = entry.split(':').collect();
        let (w, h) = parts[1].split_once('x').unwrap();
        assert!(
            w.parse::<u32>().unwrap() > 100 && h.parse::<u32>().unwrap() > 50,
            "{entry}"
        );
        let (drawn, marks) = parts[2].split_once('/').unwrap();
        assert!(drawn == marks && drawn.parse::<u32>().unwrap() >= 2, "{entry}");
    }

    // The screenshot stays where CI keeps artifacts: $CARGO_TARGET_DIR (or target/)/report-screenshots/report.png.
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let shots = target.join("report-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let png = shots.join("report.png");
    let _ = std::fs::remove_file(&png);
    let mut shot = chromium(&dir.path().join("profile-shot"));
    shot.arg(format!("--screenshot={}", png.display()))
        .args(["--window-size=1280,1500", &url]);
    let o = run_with_timeout(shot, Duration::from_secs(90));
    let bytes = std::fs::read(&png).unwrap_or_else(|e| panic!("{}: {e}; chromium said {}", png.display(), stderr(&o)));
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 20_000,
        "{} bytes",
        bytes.len()
    );
}

//! `mcptape demo`: the README's first command, run as a new user would (default settings, no network).

use std::path::Path;

use crate::util::{assert_one_line_error, mcptape, stderr, stdout};

#[test]
fn demo_runs_the_whole_loop_and_leaves_the_files_it_names() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    let o = mcptape().arg("demo").arg("--out").arg(&out).output().unwrap();
    let text = stdout(&o);
    assert!(o.status.success(), "demo failed: {}\n{text}", stderr(&o));

    // Every file the summary names is there.
    for name in [
        "replay.json",
        "load-c1.json",
        "load-c4.json",
        "compare.md",
        "report.html",
        "logs",
    ] {
        assert!(text.contains(name), "summary does not name {name}:\n{text}");
        assert!(out.join(name).exists(), "{name} named but missing");
    }
    for transport in ["stdio", "http"] {
        let caps = out.join("captures").join(transport);
        let v = mcptape().args(["dataset", "verify"]).arg(&caps).output().unwrap();
        assert!(
            v.status.success(),
            "{transport} capture does not verify: {}",
            stderr(&v)
        );
        let i = mcptape()
            .args(["dataset", "inspect", "--format", "json"])
            .arg(&caps)
            .output()
            .unwrap();
        let inspect: serde_json::Value = serde_json::from_slice(&i.stdout).unwrap();
        assert_eq!(inspect["sessions"], 1, "{transport}: {inspect}");
        assert!(inspect["frames"].as_u64().unwrap() >= 10, "{transport}: {inspect}");
    }

    let replay: serde_json::Value = read_json(&out.join("replay.json"));
    assert_eq!(replay["schema"], "mcptape.replay/1");
    assert!(replay["totals"]["matched"].as_u64().unwrap() > 0, "{replay}");
    assert_eq!(replay["totals"]["differed"], 0, "{replay}");

    for (name, users) in [("load-c1.json", 1), ("load-c4.json", 4)] {
        let load: mcptape_reports::LoadReport = serde_json::from_value(read_json(&out.join(name))).unwrap();
        assert_eq!(load.workload.concurrency, Some(users));
        assert!(load.totals.requests > 100, "{name}: {} requests", load.totals.requests);
        // The sample's client calls an unknown tool once a session (a recorded -32602 error, answered again by
        // serve); nothing else may fail.
        let sessions = load.phases["session"].count;
        assert!(sessions > 3, "{name}: {sessions} sessions");
        assert!(
            load.errors.keys().all(|class| class == "jsonrpc_-32602"),
            "{name}: errors {:?}",
            load.errors
        );
        let unknown_tool = load.errors.get("jsonrpc_-32602").copied().unwrap_or(0);
        assert!(
            unknown_tool <= sessions + users,
            "{name}: {unknown_tool} errors in {sessions} sessions"
        );
        // The default run is 10 s long.
        assert!((9.0..=11.0).contains(&load.duration_s), "{name}: {} s", load.duration_s);
    }
    let compare = std::fs::read_to_string(out.join("compare.md")).unwrap();
    assert!(compare.contains("p99"), "{compare}");
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("<svg"), "report.html has no chart");
}

#[test]
fn demo_with_an_unusable_folder_fails_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-folder");
    std::fs::write(&file, b"x").unwrap();
    let o = mcptape().args(["demo", "--out"]).arg(&file).output().unwrap();
    assert_one_line_error(&o, 2, &["not-a-folder", "cannot create the demo folder"]);
}

fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

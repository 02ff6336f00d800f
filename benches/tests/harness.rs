//! The harness end to end, in its quick mode: it runs, writes its table, and reads criterion's output format.
//! No timing is checked: only that the numbers are there.

use std::process::Command;

#[test]
fn quick_run_writes_a_table_with_every_scenario() {
    let dir = tempfile::tempdir().unwrap();
    // A criterion result as `cargo bench` leaves it.
    let new = dir.path().join("criterion/classify/mix/new");
    std::fs::create_dir_all(&new).unwrap();
    std::fs::write(
        new.join("benchmark.json"),
        r#"{"group_id":"classify","function_id":"mix","value_str":null,
            "throughput":{"ElementsAndBytes":{"elements":1000,"bytes":2000000}},
            "full_id":"classify/mix","directory_name":"classify/mix","title":"classify/mix"}"#,
    )
    .unwrap();
    std::fs::write(
        new.join("estimates.json"),
        r#"{"mean":{"confidence_interval":{"confidence_level":0.95,"lower_bound":9.0e6,"upper_bound":1.1e7},
            "point_estimate":1.0e7,"standard_error":1.0e5}}"#,
    )
    .unwrap();
    let out = dir.path().join("out/results.md");

    let run = Command::new(env!("CARGO_BIN_EXE_harness"))
        .arg("--quick")
        // `stdio` needs a release `mcptape` beside the harness; `benches/run` builds it.
        .args(["--scenario", "wire", "--scenario", "storage", "--scenario", "criterion"])
        .arg("-o")
        .arg(&out)
        .arg("--criterion-dir")
        .arg(dir.path().join("criterion"))
        .arg("--scratch")
        .arg(dir.path().join("scratch"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");

    let table = std::fs::read_to_string(&out).unwrap();
    assert_eq!(String::from_utf8_lossy(&run.stdout), table, "stdout and the file agree");
    for needle in [
        "- machine: ",
        "- commit: ",
        "- command: `cargo run --release -p mcptape-benches --bin harness -- --quick --scenario wire",
        "| scenario | variant | metric | value | unit | ratio |",
        "| wire | classify | throughput |",
        "| storage | Parquet segment | on disk |",
        "| storage | CaptureWriter append+finish | throughput |",
        "| storage | NDJSON file (baseline) | throughput |",
        // 1000 frames in 10 ms, 2 MB in 10 ms.
        "| criterion: classify | mix | throughput | 100,000 | frames/s |",
        "| criterion: classify | mix | throughput | 200 | MB/s |",
    ] {
        assert!(table.contains(needle), "missing {needle:?} in\n{table}");
    }
    assert!(!table.contains("FAILED"), "{table}");
}

#[test]
fn unknown_scenarios_are_refused() {
    let run = Command::new(env!("CARGO_BIN_EXE_harness"))
        .args(["--scenario", "nope"])
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&run.stderr).contains("no scenario `nope`"));
}

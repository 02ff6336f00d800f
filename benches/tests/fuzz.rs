//! The fuzz targets of `mcptape_benches::fuzz`, with case counts small enough for every test run
//! (`MCPTAPE_FUZZ_CASES` raises them; the harness's `--scenario fuzz` runs them for longer), plus the inputs
//! earlier fuzz runs found, pinned as regression tests.

use mcptape_benches::fuzz::{self, TARGETS};

fn cases(default: u32) -> u32 {
    std::env::var("MCPTAPE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn check(name: &str, default: u32) {
    let t = fuzz::target(name).unwrap_or_else(|| panic!("no target {name}"));
    let seed = std::env::var("MCPTAPE_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let o = fuzz::run_cases(t, cases(default), seed);
    assert_eq!(o.cases, u64::from(cases(default)));
    if let Some(f) = o.failure {
        panic!("fuzz target {name} failed: {f}");
    }
}

#[test]
fn every_target_is_tested_here() {
    let names: Vec<_> = TARGETS.iter().map(|t| t.name).collect();
    assert_eq!(names, ["envelope", "ndjson", "sse", "journal", "parquet", "jsonl"]);
}

#[test]
fn fuzz_envelope() {
    check("envelope", 3_000);
}

#[test]
fn fuzz_ndjson() {
    check("ndjson", 2_000);
}

#[test]
fn fuzz_sse() {
    check("sse", 1_000);
}

#[test]
fn fuzz_journal() {
    check("journal", 400);
}

#[test]
fn fuzz_parquet() {
    check("parquet", 300);
}

#[test]
fn fuzz_jsonl() {
    check("jsonl", 300);
}

// ---- regressions: inputs the fuzz targets found ----

/// Found by the `parquet` target: bit flips that make a page header declare a huge thrift list. The Parquet
/// crate then "skipped" each element by reading the end of the file again, for minutes per file (a hang for
/// `dataset inspect` on one damaged file). `segment::GuardedFile` turns the second read at the end into an error.
#[test]
fn a_segment_whose_page_header_declares_a_huge_list_errors_instead_of_spinning() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fuzz-slow-segment.parquet");
    let err = fuzz::read_segment(&path).expect_err("a damaged segment reads as an error");
    assert!(err.contains("past the end of the file"), "{err}");
    // The scan layer names the file.
    let err = mcptape_datasets::Scan::new(&[path])
        .and_then(|s| s.frames())
        .unwrap_err();
    assert!(err.to_string().contains("fuzz-slow-segment.parquet"), "{err}");
}

/// Found by the `parquet` target (seed 1795345514851346062): one flipped bit in the footer makes a column chunk's
/// offset negative, and the Parquet crate asserts on it. `Segment::open` now checks every chunk's byte range.
#[test]
fn a_segment_with_a_negative_column_offset_is_refused_not_a_panic() {
    let mut bytes = fuzz::valid_segment().clone();
    let at = (262_182_317_980_312_360usize) % bytes.len();
    bytes[at] ^= 31;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flipped.parquet");
    std::fs::write(&path, &bytes).unwrap();
    let err = fuzz::read_segment(&path).expect_err("a damaged footer reads as an error");
    assert!(err.contains("outside the file"), "{err}");
}

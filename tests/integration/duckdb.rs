//! The README's "Querying captures with DuckDB" example, run as written: the query is taken from README.md and its
//! output compared with the output block the README shows, so the two cannot drift apart.

use std::path::Path;
use std::process::Command;

use crate::util::{python, stderr, stdout};

/// The first block fenced `lang` after `heading` in `text`.
fn block_after<'a>(text: &'a str, heading: &str, lang: &str) -> &'a str {
    let start = text
        .find(heading)
        .unwrap_or_else(|| panic!("README has no {heading:?}"));
    let rest = &text[start..];
    let open = format!("```{lang}\n");
    let body = rest
        .find(&open)
        .unwrap_or_else(|| panic!("no ```{lang} block after {heading:?}"))
        + open.len();
    let end = rest[body..].find("\n```").expect("block closed");
    &rest[body..body + end + 1]
}

#[test]
fn the_readme_duckdb_query_returns_what_the_readme_shows() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let heading = "## Querying captures with DuckDB";
    let query = block_after(&readme, heading, "sql");
    let shown = block_after(&readme, heading, "text");
    assert!(query.contains("read_parquet('datasets/samples/"), "{query}");
    let o = Command::new(python())
        .args(["-c", "import duckdb, sys; print(duckdb.sql(sys.argv[1]))", query])
        .current_dir(root)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "duckdb failed (is duckdb in .venv? run scripts/test): {}",
        stderr(&o)
    );
    let trim = |s: &str| {
        s.lines()
            .map(str::trim_end)
            .collect::<Vec<_>>()
            .join("\n")
            .trim()
            .to_string()
    };
    assert_eq!(trim(&stdout(&o)), trim(shown), "README.md's DuckDB output is stale");
    // And the figures the README's prose relies on.
    assert!(shown.contains("│ tools/call │        4 │      1 │"), "{shown}");
}

//! A capture written by mcptape is read by an implementation we did not write: pyarrow, from the test venv.

use std::process::Command;

use crate::util::*;

const CHECK: &str = r#"
import json, sys
import pyarrow as pa, pyarrow.parquet as pq
t = pq.read_table(sys.argv[1])
md = pq.read_metadata(sys.argv[1]).metadata
s = t.schema
types = {f.name: str(f.type) for f in s}
# Python's datetime has no nanoseconds: read ts as its int64 value.
rows = t.set_column(s.get_field_index("ts"), "ts", t["ts"].cast(pa.int64())).to_pylist()
print(json.dumps({
  "columns": [f.name for f in s],
  "types": types,
  "rows": len(rows),
  "schema_version": md[b"mcptape.schema_version"].decode(),
  "first": {k: (v.decode() if isinstance(v, bytes) else v) for k, v in rows[0].items() if k != "http"},
  "methods": sorted({r["method"] for r in rows if r["method"]}),
  "directions": [r["direction"] for r in rows],
  "payloads_c2s": [r["payload"].decode() for r in rows if r["direction"] == "c2s"],
}))
"#;

#[test]
fn pyarrow_reads_columns_types_and_values() {
    let dir = tempfile::tempdir().unwrap();
    let cap = fixture_capture(dir.path());
    let o = Command::new(python())
        .args(["-c", CHECK, cap.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "pyarrow failed: {}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let cols: Vec<&str> = v["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(
        cols,
        [
            "session_id",
            "stream_id",
            "seq",
            "ts",
            "t_ns",
            "direction",
            "transport",
            "kind",
            "method",
            "rpc_id",
            "latency_ns",
            "error_code",
            "payload",
            "http",
            "mcp_session",
            "protocol_version"
        ]
    );
    let t = &v["types"];
    assert_eq!(t["session_id"], "dictionary<values=string, indices=int32, ordered=0>");
    assert_eq!(t["stream_id"], "uint32");
    assert_eq!(t["seq"], "uint64");
    assert_eq!(t["ts"], "timestamp[ns, tz=UTC]");
    assert_eq!(t["payload"], "binary");
    assert_eq!(t["error_code"], "int32");
    assert_eq!(t["latency_ns"], "uint64");
    assert!(
        t["http"]
            .as_str()
            .unwrap()
            .starts_with("struct<method: string, path: string, status: uint16"),
        "{}",
        t["http"]
    );
    assert_eq!(v["rows"], 18);
    assert_eq!(v["schema_version"], "1");
    let first = &v["first"];
    assert_eq!(first["session_id"], "fixture");
    assert_eq!(first["kind"], "request");
    assert_eq!(first["method"], "initialize");
    assert_eq!(first["rpc_id"], "0");
    assert_eq!(first["protocol_version"], "2025-11-25");
    // Imported NDJSON is stamped with the import time: a plausible epoch value in ns.
    assert!(
        first["ts"].as_i64().unwrap() > 1_700_000_000_000_000_000,
        "{}",
        first["ts"]
    );
    // Payloads are the exact input lines (the fixture has no secrets on these lines).
    let c2s: Vec<String> = std::fs::read_to_string(fixture("session.c2s.ndjson"))
        .unwrap()
        .lines()
        .filter(|l| !l.contains("api_key"))
        .map(str::to_string)
        .collect();
    let got: Vec<String> = v["payloads_c2s"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .filter(|l| !l.contains("api_key"))
        .collect();
    assert_eq!(got, c2s);
    assert!(
        v["methods"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m == "sampling/createMessage")
    );
}

#[test]
fn a_parquet_file_of_another_schema_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other.parquet");
    let o = Command::new(python())
        .args([
            "-c",
            "import sys, pyarrow as pa, pyarrow.parquet as pq; pq.write_table(pa.table({'a':[1,2],'b':['x','y']}), sys.argv[1])",
            other.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&["dataset", "inspect", other.to_str().unwrap()]);
    assert_one_line_error(&o, 2, &[other.to_str().unwrap(), "not an mcptape capture"]);
    // A file that claims to be a capture but lacks a column.
    let o = Command::new(python())
        .args([
            "-c",
            "import sys, pyarrow as pa, pyarrow.parquet as pq; t = pa.table({'session_id':['s']}).replace_schema_metadata({'mcptape.schema_version':'1'}); pq.write_table(t, sys.argv[1])",
            other.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&["dataset", "inspect", other.to_str().unwrap()]);
    assert_one_line_error(
        &o,
        2,
        &[
            other.to_str().unwrap(),
            "not an mcptape capture",
            "column `stream_id`: missing",
        ],
    );
}

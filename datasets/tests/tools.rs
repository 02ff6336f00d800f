//! `dataset stats`, `dataset filter` and `dataset export --format har` on a small hand-built HTTP capture:
//! golden files for the rendered outputs (`MCPTAPE_BLESS=1` rewrites them), a property test for filter.

use std::path::{Path, PathBuf};

use mcptape_datasets::cli::{DatasetArgs, DatasetCommand, ExportFormat, StatsFormat, run_to};
use mcptape_datasets::segment::write_segment;
use mcptape_datasets::{CaptureMeta, Direction, Frame, HttpMeta, Kind, Scan, Transport, schema};
use proptest::prelude::*;

const T0: i64 = 1_800_000_000_000_000_000;
const MS: i64 = 1_000_000;

fn meta() -> CaptureMeta {
    CaptureMeta {
        schema_version: schema::SCHEMA_VERSION,
        mcptape_version: "0.1.0".into(),
        capture_start: "2027-01-15T08:00:00Z".into(),
        transport: "http".into(),
        target: "http://127.0.0.1:8080/mcp".into(),
        name: "golden".into(),
        ..Default::default()
    }
}

struct Builder {
    frames: Vec<Frame>,
}

impl Builder {
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        stream: u32,
        at_ms: i64,
        dir: Direction,
        transport: Transport,
        kind: Kind,
        method: &str,
        id: Option<&str>,
        latency_ms: Option<u64>,
        payload: &str,
        http: HttpMeta,
    ) {
        let mut f = Frame::new(
            "http-golden",
            self.frames.len() as u64,
            dir,
            transport,
            kind,
            payload.to_string(),
        );
        f.stream_id = stream;
        f.ts_ns = T0 + at_ms * MS;
        f.t_ns = (at_ms * MS) as u64;
        f.method = Some(method.to_string());
        f.rpc_id = id.map(str::to_string);
        f.latency_ns = latency_ms.map(|l| l * MS as u64);
        f.http = Some(http);
        f.mcp_session = Some("sha256:0123456789abcdef".into());
        f.protocol_version = Some("2025-11-25".into());
        self.frames.push(f);
    }
}

fn req(method: &str, extra: &[(&str, &str)]) -> HttpMeta {
    let mut headers = vec![
        ("content-type".to_string(), "application/json".to_string()),
        ("authorization".to_string(), "[REDACTED]".to_string()),
    ];
    headers.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    HttpMeta {
        method: Some(method.into()),
        path: Some("/mcp".into()),
        content_type: Some("application/json".into()),
        headers,
        ..Default::default()
    }
}

fn resp(status: u16, content_type: Option<&str>, sse_id: Option<&str>) -> HttpMeta {
    let mut headers = vec![("mcp-session-id".to_string(), "sha256:0123456789abcdef".to_string())];
    if let Some(c) = content_type {
        headers.insert(0, ("content-type".to_string(), c.to_string()));
    }
    HttpMeta {
        status: Some(status),
        content_type: content_type.map(str::to_string),
        sse_event_id: sse_id.map(str::to_string),
        headers,
        ..Default::default()
    }
}

/// A Streamable HTTP session: a JSON answer, a 202, an SSE answer with a priming event and progress, a GET
/// stream, a DELETE.
fn golden_frames() -> Vec<Frame> {
    use Direction::{C2s, S2c};
    use Kind::*;
    use Transport::{Http, Sse};
    let mut b = Builder { frames: Vec::new() };
    b.push(0, 0, C2s, Http, Request, "initialize", Some("1"), None,
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"golden","version":"1"}}}"#,
        req("POST", &[]));
    b.push(0, 12, S2c, Http, Response, "initialize", Some("1"), Some(12),
        r#"{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"g","version":"1"}}}"#,
        resp(200, Some("application/json"), None));
    b.push(
        1,
        20,
        C2s,
        Http,
        Notification,
        "notifications/initialized",
        None,
        None,
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        req("POST", &[("mcp-session-id", "sha256:0123456789abcdef")]),
    );
    b.push(
        1,
        21,
        S2c,
        Http,
        Lifecycle,
        "mcptape/http-response",
        None,
        None,
        r#"{"status":202}"#,
        resp(202, None, None),
    );
    b.push(2, 30, C2s, Http, Request, "tools/call", Some("2"), None,
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"slow","arguments":{"n":2},"_meta":{"progressToken":7}}}"#,
        req("POST", &[]));
    b.push(
        2,
        31,
        S2c,
        Sse,
        Lifecycle,
        "mcptape/sse-empty",
        None,
        None,
        r#"{"event":"message"}"#,
        resp(200, Some("text/event-stream"), Some("e0")),
    );
    b.push(
        2,
        80,
        S2c,
        Sse,
        Notification,
        "notifications/progress",
        None,
        None,
        r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":7,"progress":1,"total":2}}"#,
        resp(200, Some("text/event-stream"), Some("e1")),
    );
    b.push(
        2,
        130,
        S2c,
        Sse,
        Response,
        "tools/call",
        Some("2"),
        Some(100),
        r#"{"jsonrpc":"2.0","id":2,"result":{"content":[{"type":"text","text":"done"}]}}"#,
        resp(200, Some("text/event-stream"), Some("e2")),
    );
    b.push(
        3,
        140,
        C2s,
        Http,
        Request,
        "tools/call",
        Some("3"),
        None,
        r#"{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"nope","arguments":{}}}"#,
        req("POST", &[]),
    );
    b.push(
        3,
        143,
        S2c,
        Http,
        Error,
        "tools/call",
        Some("3"),
        Some(3),
        r#"{"jsonrpc":"2.0","id":3,"error":{"code":-32602,"message":"Unknown tool: nope"}}"#,
        resp(200, Some("application/json"), None),
    );
    let mut get = req("GET", &[("accept", "text/event-stream")]);
    get.path = Some("/mcp?stream=1".into());
    get.content_type = None;
    b.push(
        4,
        150,
        C2s,
        Http,
        Lifecycle,
        "mcptape/http-request",
        None,
        None,
        r#"{"method":"GET","path":"/mcp?stream=1"}"#,
        get,
    );
    b.push(
        4,
        151,
        S2c,
        Http,
        Lifecycle,
        "mcptape/http-response",
        None,
        None,
        r#"{"status":200}"#,
        resp(200, Some("text/event-stream"), None),
    );
    b.push(
        4,
        400,
        S2c,
        Sse,
        Lifecycle,
        "mcptape/eof",
        None,
        None,
        r#"{"events":0,"end":"end","discarded_bytes":0}"#,
        resp(200, Some("text/event-stream"), None),
    );
    let mut del = req("DELETE", &[]);
    del.content_type = None;
    b.push(
        5,
        410,
        C2s,
        Http,
        Lifecycle,
        "mcptape/http-request",
        None,
        None,
        r#"{"method":"DELETE","path":"/mcp"}"#,
        del,
    );
    b.push(
        5,
        412,
        S2c,
        Http,
        Lifecycle,
        "mcptape/http-response",
        None,
        None,
        r#"{"status":200}"#,
        resp(200, None, None),
    );
    b.frames
}

fn write(dir: &Path, name: &str, frames: &[Frame], meta: &CaptureMeta) -> PathBuf {
    let path = dir.join(name);
    write_segment(&path, meta, &[schema::to_batch(frames)]).unwrap();
    path
}

fn run(command: DatasetCommand) -> (anyhow::Result<std::process::ExitCode>, String) {
    let mut out = Vec::new();
    let r = run_to(DatasetArgs { command }, &mut out);
    (r, String::from_utf8(out).unwrap())
}

fn golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name);
    if std::env::var_os("MCPTAPE_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{} missing: run with MCPTAPE_BLESS=1", path.display()));
    assert!(
        expected == actual,
        "{} differs (MCPTAPE_BLESS=1 to accept):\n--- expected\n{expected}\n--- actual\n{actual}",
        path.display()
    );
}

#[test]
fn stats_renders_as_the_golden_text_markdown_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let cap = write(dir.path(), "g.parquet", &golden_frames(), &meta());
    for (format, file) in [
        (StatsFormat::Text, "stats.txt"),
        (StatsFormat::Md, "stats.md"),
        (StatsFormat::Json, "stats.json"),
    ] {
        let (r, out) = run(DatasetCommand::Stats {
            paths: vec![cap.clone()],
            format,
        });
        r.unwrap();
        let out = out.replace(&cap.display().to_string(), "CAPTURE");
        golden(file, &out);
    }
    // The numbers behind the table, independently of rendering.
    let s = mcptape_datasets::cli::compute_stats(&Scan::new(&[cap]).unwrap()).unwrap();
    let call = &s.methods["tools/call"];
    assert_eq!((call.requests, call.responses, call.errors), (2, 1, 1));
    let lat = call.latency_us.as_ref().unwrap();
    assert_eq!((lat.p50, lat.max), (3_001, 100_031)); // 3 ms and 100 ms, as HdrHistogram (3 digits) reports them
    assert_eq!(s.unattributed_frames, 7);
}

#[test]
fn har_export_matches_the_golden_file_and_has_every_required_field() {
    let dir = tempfile::tempdir().unwrap();
    let cap = write(dir.path(), "g.parquet", &golden_frames(), &meta());
    let har = dir.path().join("out.har");
    let (r, out) = run(DatasetCommand::Export {
        paths: vec![cap],
        format: ExportFormat::Har,
        output: har.clone(),
    });
    r.unwrap();
    assert!(out.starts_with("exported 6 HTTP exchange(s)"), "{out}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&har).unwrap().permissions().mode() & 0o777, 0o600);
    let text = std::fs::read_to_string(&har).unwrap();
    golden("export.har", &text);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let entries = v["log"]["entries"].as_array().unwrap();
    let sse = &entries[2]["response"]["content"];
    assert_eq!(sse["mimeType"], "text/event-stream");
    assert!(
        sse["text"]
            .as_str()
            .unwrap()
            .starts_with("id: e0\ndata: \n\nid: e1\ndata: {")
    );
    assert_eq!(entries[1]["response"]["status"], 202);
    assert_eq!(entries[4]["request"]["method"], "GET");
    assert_eq!(entries[4]["request"]["queryString"][0]["name"], "stream");
    assert_eq!(entries[2]["timings"]["wait"], 1.0);
    assert_eq!(entries[2]["timings"]["receive"], 99.0);
}

#[test]
fn har_export_of_a_stdio_capture_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = meta();
    m.transport = "stdio".into();
    let frames: Vec<Frame> = golden_frames()
        .into_iter()
        .map(|mut f| {
            f.http = None;
            f.transport = Transport::Stdio;
            f
        })
        .collect();
    let cap = write(dir.path(), "s.parquet", &frames, &m);
    let (r, _) = run(DatasetCommand::Export {
        paths: vec![cap.clone()],
        format: ExportFormat::Har,
        output: dir.path().join("x.har"),
    });
    let e = format!("{:#}", r.unwrap_err());
    assert!(
        e.contains("s.parquet") && e.contains("stdio capture has no HTTP exchanges"),
        "{e}"
    );
    assert!(!dir.path().join("x.har").exists());
}

#[test]
fn filter_keeps_answers_with_their_method_and_notes_itself() {
    let dir = tempfile::tempdir().unwrap();
    let cap = write(dir.path(), "g.parquet", &golden_frames(), &meta());
    let out = dir.path().join("calls.parquet");
    let (r, text) = run(DatasetCommand::Filter {
        paths: vec![cap.clone()],
        sessions: vec![],
        methods: vec!["tools/call".into()],
        direction: None,
        since: Some("+25ms".into()),
        until: Some("+140ms".into()),
        output: out.clone(),
    });
    r.unwrap();
    assert_eq!(text, format!("kept 2 frame(s) in 1 session(s) -> {}\n", out.display()));
    let kept = Scan::new(std::slice::from_ref(&out)).unwrap().frames().unwrap();
    assert_eq!(
        kept.iter()
            .map(|f| (f.kind, f.rpc_id.clone(), f.seq))
            .collect::<Vec<_>>(),
        [
            (Kind::Request, Some("2".into()), 0),
            (Kind::Response, Some("2".into()), 1)
        ]
    );
    let seg = mcptape_datasets::segment::Segment::open(&out).unwrap();
    assert_eq!(seg.meta.target, "http://127.0.0.1:8080/mcp");
    assert!(
        seg.meta
            .note
            .contains("--method tools/call --since +25ms --until +140ms"),
        "{}",
        seg.meta.note
    );
    // The output may not overwrite an input.
    let (r, _) = run(DatasetCommand::Filter {
        paths: vec![cap.clone()],
        sessions: vec![],
        methods: vec![],
        direction: Some("s2c".into()),
        since: None,
        until: None,
        output: cap.clone(),
    });
    assert!(format!("{:#}", r.unwrap_err()).contains("the output is one of the inputs"));
    let (r, _) = run(DatasetCommand::Filter {
        paths: vec![cap],
        sessions: vec![],
        methods: vec![],
        direction: Some("up".into()),
        since: None,
        until: None,
        output: dir.path().join("y.parquet"),
    });
    assert!(format!("{:#}", r.unwrap_err()).contains("--direction \"up\": expected c2s or s2c"));
}

fn arb_frames() -> impl Strategy<Value = Vec<Frame>> {
    let one = (0..3usize, any::<bool>(), 0..4usize, 0..50i64);
    prop::collection::vec(one, 1..40).prop_map(|raw| {
        let methods = ["ping", "tools/call", "tools/list", "resources/read"];
        let mut seqs = [0u64; 3];
        let mut t = 0;
        raw.into_iter()
            .map(|(s, c2s, m, dt)| {
                t += dt;
                let dir = if c2s { Direction::C2s } else { Direction::S2c };
                let kind = if c2s { Kind::Request } else { Kind::Response };
                let mut f = Frame::new(
                    format!("s{s}"),
                    seqs[s],
                    dir,
                    Transport::Stdio,
                    kind,
                    format!("{{\"n\":{t}}}"),
                );
                seqs[s] += 1;
                f.ts_ns = T0 + t * MS;
                f.method = Some(methods[m].into());
                f
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// filter keeps exactly the frames a naive check keeps, in order, with seq renumbered per session.
    #[test]
    fn filter_is_the_naive_filter(
        frames in arb_frames(),
        sessions in prop::collection::vec(0..3usize, 0..2),
        methods in prop::collection::vec(prop::sample::select(vec!["ping", "tools/call", "tools/list"]), 0..2),
        dir in prop::option::of(any::<bool>()),
        since in prop::option::of(0..400i64),
        until in prop::option::of(0..800i64),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        let mut m = meta();
        m.transport = "stdio".into();
        let cap = write(tmp.path(), "in.parquet", &frames, &m);
        let out = tmp.path().join("out.parquet");
        let sessions: Vec<String> = sessions.iter().map(|s| format!("s{s}")).collect();
        let methods: Vec<String> = methods.iter().map(|m| m.to_string()).collect();
        let direction = dir.map(|c| if c { "c2s" } else { "s2c" }.to_string());
        let (r, _) = run(DatasetCommand::Filter {
            paths: vec![cap],
            sessions: sessions.clone(),
            methods: methods.clone(),
            direction: direction.clone(),
            since: since.map(|s| format!("+{s}ms")),
            until: until.map(|u| format!("+{u}ms")),
            output: out.clone(),
        });
        r.unwrap();
        let start = frames.iter().map(|f| f.ts_ns).min().unwrap();
        let expected: Vec<&Frame> = frames.iter().filter(|f| {
            (sessions.is_empty() || sessions.contains(&f.session_id))
                && (methods.is_empty() || methods.contains(f.method.as_ref().unwrap()))
                && direction.as_deref().is_none_or(|d| d == f.direction.as_str())
                && since.is_none_or(|s| f.ts_ns >= start + s * MS)
                && until.is_none_or(|u| f.ts_ns < start + u * MS)
        }).collect();
        let kept = Scan::new(&[out]).unwrap().frames().unwrap();
        prop_assert_eq!(kept.len(), expected.len());
        let mut next = std::collections::HashMap::new();
        for (k, e) in kept.iter().zip(&expected) {
            prop_assert_eq!(&k.payload, &e.payload);
            prop_assert_eq!(&k.session_id, &e.session_id);
            let n = next.entry(k.session_id.clone()).or_insert(0u64);
            prop_assert_eq!(k.seq, *n);
            *n += 1;
        }
    }
}

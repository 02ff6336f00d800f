//! Fuzz targets for everything that reads bytes from outside: envelope classification and redaction, the NDJSON
//! and SSE framers, the crash-journal reader, the Parquet segment reader and the JSONL import.
//!
//! Why proptest rather than cargo-fuzz: cargo-fuzz needs a nightly toolchain (sanitizer flags), and this project
//! builds on stable only. A proptest target runs anywhere `cargo test` does, shrinks a failure to a small input,
//! and takes a seed, so a crash found by a long run in the harness (`--scenario fuzz`) replays exactly. Each
//! target mixes arbitrary bytes with structured mutations of valid inputs (bit flips, truncation, splices), since
//! pure random bytes rarely get past the first check of a parser.
//!
//! A target fails when the code under test panics or breaks an invariant stated next to the target; every failure
//! found so far is pinned in `benches/tests/fuzz.rs`.

use std::io::Write;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mcptape_datasets::cli::{DatasetArgs, DatasetCommand, RedactionArgs};
use mcptape_datasets::journal::{JournalWriter, read_journal};
use mcptape_datasets::redact::{RedactionRules, classify_and_redact};
use mcptape_datasets::segment::{Segment, write_segment};
use mcptape_datasets::wire::envelope::classify;
use mcptape_datasets::wire::ndjson::{NdjsonFramer, Piece};
use mcptape_datasets::wire::sse::{SseDecoder, SseEvent};
use mcptape_datasets::{Kind, schema};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};

/// One fuzz target: a name and a function that runs `cases` cases from `seed`.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// Short name (`envelope`, `ndjson`, …).
    pub name: &'static str,
    /// What it feeds and what it checks.
    pub about: &'static str,
    run: fn(&mut TestRunner) -> Result<(), String>,
}

/// Every target.
pub const TARGETS: &[Target] = &[
    Target {
        name: "envelope",
        about: "classification and redaction of arbitrary and mutated messages: no panic; JSON in, JSON out",
        run: envelope,
    },
    Target {
        name: "ndjson",
        about: "NDJSON framer over arbitrary bytes and chunk splits: the pieces rebuild the stream byte for byte",
        run: ndjson,
    },
    Target {
        name: "sse",
        about: "SSE decoder over arbitrary and mutated event streams: any chunk split decodes like one read",
        run: sse,
    },
    Target {
        name: "journal",
        about: "journal reader over truncated, bit-flipped and arbitrary IPC: no panic; a truncation keeps a prefix",
        run: journal,
    },
    Target {
        name: "parquet",
        about: "segment reader over bit-flipped and truncated Parquet: a clean error or frames, never a panic",
        run: parquet,
    },
    Target {
        name: "jsonl",
        about: "JSONL import of arbitrary and mutated export lines: a one-line error or a capture, never a panic",
        run: jsonl,
    },
];

/// What a bounded run of one target did.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The target.
    pub target: &'static str,
    /// Cases run.
    pub cases: u64,
    /// Time taken.
    pub elapsed: Duration,
    /// The first failure (shrunk input and reason), if any.
    pub failure: Option<String>,
}

/// Runs `cases` cases of `target` from `seed`.
pub fn run_cases(target: &Target, cases: u32, seed: u64) -> Outcome {
    let t = Instant::now();
    let mut runner = runner(cases, seed);
    let failure = (target.run)(&mut runner).err();
    Outcome {
        target: target.name,
        cases: u64::from(cases),
        elapsed: t.elapsed(),
        failure,
    }
}

/// Runs rounds of `round` cases (seeds `seed`, `seed + 1`, …) until `budget` has passed or a case fails.
pub fn run_for(target: &Target, budget: Duration, round: u32, seed: u64) -> Outcome {
    let t = Instant::now();
    let mut cases = 0;
    let mut failure = None;
    let mut s = seed;
    while t.elapsed() < budget && failure.is_none() {
        let o = run_cases(target, round, s);
        cases += o.cases;
        failure = o.failure.map(|f| format!("seed {s}: {f}"));
        s += 1;
    }
    Outcome {
        target: target.name,
        cases,
        elapsed: t.elapsed(),
        failure,
    }
}

/// Finds a target by name.
pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

fn runner(cases: u32, seed: u64) -> TestRunner {
    let config = Config {
        cases,
        failure_persistence: None,
        // Shrinking a large input can take long; a failure is reported with its seed either way.
        max_shrink_iters: 2_000,
        ..Config::default()
    };
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &key))
}

fn report<T: std::fmt::Debug>(r: Result<(), proptest::test_runner::TestError<T>>) -> Result<(), String> {
    r.map_err(|e| {
        let s = e.to_string();
        // A shrunk input of a binary target can still be long: keep the report readable.
        if s.len() > 4_000 {
            let cut = (0..=4_000).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0);
            format!("{}… ({} chars)", &s[..cut], s.len())
        } else {
            s
        }
    })
}

// ---- inputs ----

/// Valid messages to mutate: the benchmark mix (every MCP message shape it has) and a payload with secrets.
fn seeds() -> &'static [Bytes] {
    static SEEDS: OnceLock<Vec<Bytes>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let mut v: Vec<Bytes> = crate::mix(60).into_iter().map(|(_, p)| p).collect();
        v.push(crate::secret_payload());
        v.push(Bytes::from_static(
            br#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"notifications/initialized"}]"#,
        ));
        v.push(Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":"a\"b\\","error":{"code":-32601,"message":"no \u00e9 such","data":{"token":"t"}}}"#,
        ));
        v
    })
}

/// A mutation of `base`: bit flips, a truncation, a splice of random bytes, or a duplicated range.
#[derive(Debug, Clone)]
enum Mutation {
    Flip(Vec<(usize, u8)>),
    Truncate(usize),
    Splice(usize, Vec<u8>),
    Repeat(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        prop::collection::vec((any::<usize>(), 1u8..=255), 1..8).prop_map(Mutation::Flip),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 0..16)).prop_map(|(at, b)| Mutation::Splice(at, b)),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::Repeat(a, b)),
    ]
}

fn apply(base: &[u8], m: &Mutation) -> Vec<u8> {
    let mut v = base.to_vec();
    if v.is_empty() {
        return v;
    }
    let n = v.len();
    match m {
        Mutation::Flip(flips) => {
            for &(at, x) in flips {
                v[at % n] ^= x;
            }
        }
        Mutation::Truncate(at) => v.truncate(at % n),
        Mutation::Splice(at, b) => {
            let at = at % (n + 1);
            v.splice(at..at, b.iter().copied());
        }
        Mutation::Repeat(a, b) => {
            let (lo, hi) = ((a % n).min(b % n), (a % n).max(b % n));
            let copy = v[lo..hi.min(lo + 4096)].to_vec();
            v.splice(hi..hi, copy);
        }
    }
    v
}

/// Arbitrary bytes, or a mutated valid message (several mutations in a row).
fn message() -> impl Strategy<Value = Vec<u8>> {
    let n = seeds().len();
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        (0..n, prop::collection::vec(mutation(), 0..4)).prop_map(|(i, ms)| {
            let mut v = seeds()[i].to_vec();
            for m in &ms {
                v = apply(&v, m);
            }
            v
        }),
        // JSON-looking text from a small alphabet reaches deeper into the scanner than random bytes.
        prop::collection::vec(
            prop::sample::select(
                b"{}[]\":,0123456789-+.eE \\ntrufalsjonrpcidmethodparamsresulterrorcode_meta".to_vec()
            ),
            0..200
        ),
    ]
}

/// Split points for a stream of `len` bytes: sorted, deduplicated.
fn cuts(raw: &[usize], len: usize) -> Vec<usize> {
    let mut c: Vec<usize> = raw.iter().map(|x| x % (len + 1)).collect();
    c.sort_unstable();
    c.dedup();
    c
}

fn split<'a>(data: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut at = 0;
    for &c in cuts.iter().chain(std::iter::once(&data.len())) {
        out.push(&data[at..c]);
        at = c;
    }
    out
}

// ---- targets ----

fn envelope(runner: &mut TestRunner) -> Result<(), String> {
    let rules = RedactionRules::default();
    report(runner.run(&message(), |bytes| {
        let payload = Bytes::from(bytes);
        let env = classify(&payload);
        let (env2, redacted) = classify_and_redact(&payload, &rules);
        prop_assert_eq!(&env.kind, &env2.kind, "classify and classify_and_redact disagree");
        prop_assert_eq!(&env.method, &env2.method);
        prop_assert_eq!(&env.rpc_id, &env2.rpc_id);
        if env.kind != Kind::Invalid {
            prop_assert!(
                serde_json::from_slice::<serde_json::Value>(&payload).is_ok() || std::str::from_utf8(&payload).is_err(),
                "classified as {:?} but serde_json rejects it",
                env.kind
            );
        }
        // Redaction of valid JSON gives valid JSON, and never grows a secret back.
        if let Some(r) = &redacted {
            if serde_json::from_slice::<serde_json::Value>(&payload).is_ok() {
                prop_assert!(
                    serde_json::from_slice::<serde_json::Value>(r).is_ok(),
                    "redaction broke the JSON: {:?}",
                    String::from_utf8_lossy(r)
                );
            }
        }
        let again = rules.payload(&payload);
        prop_assert_eq!(again.is_some(), redacted.is_some(), "redaction is not deterministic");
        Ok(())
    }))
}

fn ndjson(runner: &mut TestRunner) -> Result<(), String> {
    let stream = prop_oneof![
        prop::collection::vec(prop::sample::select(b"ab\n\r{}".to_vec()), 0..400),
        prop::collection::vec(any::<u8>(), 0..400),
    ];
    let input = (stream, prop::collection::vec(any::<usize>(), 0..12), 1usize..64);
    report(runner.run(&input, |(data, raw_cuts, max_line)| {
        let bytes = Bytes::from(data.clone());
        let mut framer = NdjsonFramer::new(max_line);
        let mut out = Vec::new();
        let mut line_open = false;
        let mut push = |p: Piece, out: &mut Vec<u8>, from_finish: bool| match p {
            Piece::Line(l) => {
                assert!(l.len() <= max_line, "a Line longer than max_line");
                assert!(!l.contains(&b'\n'), "a Line holds a newline");
                out.extend_from_slice(&l);
                if !from_finish {
                    out.push(b'\n');
                }
            }
            Piece::Oversize { part, last } => {
                assert!(!part.contains(&b'\n'), "an Oversize part holds a newline");
                out.extend_from_slice(&part);
                line_open = !last;
                if last && !from_finish {
                    out.push(b'\n');
                }
            }
        };
        let c = cuts(&raw_cuts, bytes.len());
        let mut at = 0;
        for &end in c.iter().chain(std::iter::once(&bytes.len())) {
            framer.push(&bytes.slice(at..end), |p| push(p, &mut out, false));
            at = end;
            prop_assert!(
                framer.buffered() <= max_line.max(1) * 2,
                "framer buffers {}",
                framer.buffered()
            );
        }
        framer.finish(|p| push(p, &mut out, true));
        prop_assert!(!line_open, "an oversize line was never closed");
        prop_assert_eq!(out, data, "pieces do not rebuild the stream");
        Ok(())
    }))
}

fn sse_stream() -> impl Strategy<Value = Vec<u8>> {
    let field = prop_oneof![
        Just(b"data".to_vec()),
        Just(b"id".to_vec()),
        Just(b"event".to_vec()),
        Just(b"retry".to_vec()),
        Just(Vec::new()),
        prop::collection::vec(any::<u8>(), 0..6),
    ];
    let value = prop::collection::vec(prop::sample::select(b"ab {}\"\0:1\r\xC3\xA9".to_vec()), 0..20);
    let sep = prop_oneof![Just(&b": "[..]), Just(&b":"[..]), Just(&b""[..])];
    let eol = prop_oneof![Just(&b"\n"[..]), Just(&b"\r\n"[..]), Just(&b"\r"[..])];
    let line = (field, sep, value, eol).prop_map(|(f, s, v, e)| [f, s.to_vec(), v, e.to_vec()].concat());
    let structured = (any::<bool>(), prop::collection::vec(line, 0..20))
        .prop_map(|(bom, lines)| [if bom { b"\xEF\xBB\xBF".to_vec() } else { Vec::new() }, lines.concat()].concat());
    let valid = crate::sse_stream(&crate::mix(8)).to_vec();
    prop_oneof![
        structured,
        prop::collection::vec(any::<u8>(), 0..300),
        prop::collection::vec(mutation(), 0..4).prop_map(move |ms| {
            let mut v = valid.clone();
            for m in &ms {
                v = apply(&v, m);
            }
            v
        }),
    ]
}

fn decode(data: &[u8], cuts: &[usize], max_event: usize) -> (Vec<SseEvent>, usize) {
    let mut d = SseDecoder::new(max_event);
    let mut events = Vec::new();
    for piece in split(data, cuts) {
        d.push(piece, |e| events.push(e));
    }
    d.finish(|e| events.push(e));
    (events, d.discarded_tail())
}

fn sse(runner: &mut TestRunner) -> Result<(), String> {
    let input = (sse_stream(), prop::collection::vec(any::<usize>(), 0..12), 1usize..4096);
    report(runner.run(&input, |(data, raw_cuts, max_event)| {
        let whole = decode(&data, &[], max_event);
        let bytewise: Vec<usize> = (0..=data.len()).collect();
        let chunked = decode(&data, &cuts(&raw_cuts, data.len()), max_event);
        prop_assert_eq!(&whole, &chunked, "a chunk split changed the events");
        prop_assert_eq!(
            &whole,
            &decode(&data, &bytewise, max_event),
            "byte-by-byte reads changed the events"
        );
        for e in &whole.0 {
            prop_assert!(
                e.data.len() <= max_event + 1 || e.truncated,
                "event data past max_event unflagged"
            );
        }
        Ok(())
    }))
}

/// A valid journal of the benchmark mix (several batches) and its per-batch row counts.
fn valid_journal() -> &'static (Vec<u8>, Vec<usize>) {
    static J: OnceLock<(Vec<u8>, Vec<usize>)> = OnceLock::new();
    J.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("j.journal");
        let frames = crate::frames(90);
        let mut w = JournalWriter::create(&path, &fixed_meta()).expect("journal");
        let mut rows = Vec::new();
        for chunk in frames.chunks(20) {
            w.append(&schema::to_batch(chunk)).expect("append");
            w.flush().expect("flush");
            rows.push(chunk.len());
        }
        let path = w.finish().expect("finish");
        (std::fs::read(path).expect("read"), rows)
    })
}

fn journal(runner: &mut TestRunner) -> Result<(), String> {
    let (valid, rows) = valid_journal();
    let total: usize = rows.iter().sum();
    let input = prop_oneof![
        (0..valid.len()).prop_map(|at| (at, Vec::new(), true)),
        prop::collection::vec(mutation(), 1..4).prop_map(|ms| (
            0,
            {
                let mut v = valid.clone();
                for m in &ms {
                    v = apply(&v, m);
                }
                v
            },
            false
        )),
        prop::collection::vec(any::<u8>(), 0..600).prop_map(|v| (0, v, false)),
    ];
    report(runner.run(&input, |(cut, mutated, truncation)| {
        let bytes: &[u8] = if truncation { &valid[..cut] } else { &mutated };
        let c = read_journal(bytes);
        let got: usize = c.batches.iter().map(|b| b.num_rows()).sum();
        if let Some(d) = &c.damage {
            prop_assert!(d.offset + d.lost_bytes <= bytes.len(), "damage past the end: {:?}", d);
        }
        if truncation {
            // Whole batches, in order, and only those that were complete before the cut.
            let mut acc = 0;
            for (b, &n) in c.batches.iter().zip(rows) {
                prop_assert_eq!(b.num_rows(), n);
                acc += n;
            }
            prop_assert_eq!(acc, got);
            prop_assert!(got <= total);
            // (A cut exactly between two messages leaves no damaged bytes: no damage is reported then.)
        }
        // Whatever came back converts to frames without panicking.
        for b in &c.batches {
            let _ = schema::from_batch(b);
        }
        Ok(())
    }))
}

/// The metadata of the fuzz inputs: fixed, so that a seed gives the same bytes on every run.
fn fixed_meta() -> mcptape_datasets::CaptureMeta {
    let mut m = crate::meta();
    m.capture_start = "2026-01-01T00:00:00.000000000Z".into();
    m.mcptape_version = "0.0.0".into();
    m
}

/// A valid segment of the benchmark mix (the same bytes on every run).
pub fn valid_segment() -> &'static Vec<u8> {
    static S: OnceLock<Vec<u8>> = OnceLock::new();
    S.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.parquet");
        let batches = crate::batches(&crate::frames(200));
        write_segment(&path, &fixed_meta(), &batches).expect("segment");
        std::fs::read(path).expect("read")
    })
}

/// Opens and reads a segment file completely: the frames, or the error.
pub fn read_segment(path: &Path) -> Result<usize, String> {
    let seg = Segment::open(path).map_err(|e| e.to_string())?;
    let reader = seg.reader(None).map_err(|e| e.to_string())?;
    let mut n = 0;
    for b in reader {
        let b = b.map_err(|e| e.to_string())?;
        n += schema::from_batch(&b).map_err(|e| e.to_string())?.len();
    }
    Ok(n)
}

fn parquet(runner: &mut TestRunner) -> Result<(), String> {
    let valid = valid_segment();
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let path = dir.path().join("fuzz.parquet");
    let input = prop::collection::vec(mutation(), 1..4);
    report(runner.run(&input, |ms| {
        let mut v = valid.clone();
        for m in &ms {
            v = apply(&v, m);
        }
        std::fs::write(&path, &v).expect("write");
        // The scan layer is what every command uses: it must turn any failure into an error naming the file.
        let scan = mcptape_datasets::Scan::new(std::slice::from_ref(&path));
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| scan.and_then(|s| s.frames())));
        match r {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => prop_assert!(
                e.to_string().contains("fuzz.parquet"),
                "the error does not name the file: {}",
                e
            ),
            Err(_) => return Err(TestCaseError::fail("reading a damaged segment panicked")),
        }
        Ok(())
    }))
}

/// Valid export lines to mutate.
fn valid_jsonl() -> &'static Vec<u8> {
    static J: OnceLock<Vec<u8>> = OnceLock::new();
    J.get_or_init(|| {
        let mut out = Vec::new();
        for f in crate::frames(12) {
            serde_json::to_writer(&mut out, &mcptape_datasets::cli::frame_to_json(&f)).expect("json");
            out.push(b'\n');
        }
        out
    })
}

fn jsonl(runner: &mut TestRunner) -> Result<(), String> {
    let valid = valid_jsonl();
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let input_path = dir.path().join("in.jsonl");
    let output = dir.path().join("out.parquet");
    let line = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200),
        prop::collection::vec(
            prop::sample::select(
                br#"{}[]":,0123456789-. seqdirectionc2ss2cpayloadkindrequestts_nsmessagesession_idhttpheadersnull"#
                    .to_vec()
            ),
            0..200
        ),
    ];
    let input = prop_oneof![
        prop::collection::vec(mutation(), 1..4).prop_map(|ms| {
            let mut v = valid.clone();
            for m in &ms {
                v = apply(&v, m);
            }
            v
        }),
        prop::collection::vec(line, 1..4).prop_map(|ls| ls.join(&b'\n')),
    ];
    report(runner.run(&input, |bytes| {
        std::fs::write(&input_path, &bytes).expect("write");
        let _ = std::fs::remove_file(&output);
        let args = DatasetArgs {
            command: DatasetCommand::Import {
                input: Some(input_path.clone()),
                c2s: None,
                s2c: None,
                session: "import".into(),
                output: output.clone(),
                redaction: RedactionArgs::default(),
            },
        };
        let mut sink = Vec::new();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            mcptape_datasets::cli::run_to(args, &mut sink)
        }));
        match r {
            Ok(Ok(_)) => {
                // What was imported reads back.
                prop_assert!(read_segment(&output).is_ok(), "an import wrote an unreadable segment");
            }
            Ok(Err(e)) => {
                let msg = format!("{e:#}");
                prop_assert!(!msg.contains('\n'), "a multi-line error: {}", msg);
                prop_assert!(msg.contains("in.jsonl"), "the error does not name the file: {}", msg);
            }
            Err(_) => return Err(TestCaseError::fail("the import panicked")),
        }
        let _ = sink.flush();
        Ok(())
    }))
}

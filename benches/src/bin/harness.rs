//! The project's one benchmark command: runs every scenario and writes one Markdown table of results.
//!
//! ```text
//! cargo run --release -p mcptape-benches --bin harness -- [--quick] [-o FILE.md] [--scenario NAME]...
//! ```
//!
//! A scenario is a named measurement that yields rows (scenario, variant, metric, value, unit, ratio). Where a
//! scenario measures a baseline in the same run (a full JSON parse for classification, a plain NDJSON file for
//! storage; later: direct vs socat vs mcptape), every row carries its ratio to that baseline, because a ratio
//! measured on one machine in one run survives a change of machine far better than an absolute number.
//!
//! The criterion scenario does not run criterion: it reads what the last `cargo bench -p mcptape-benches` left
//! in `target/criterion` (`new/benchmark.json` for the throughput, `new/estimates.json` for the mean), so the
//! table includes criterion's careful numbers when they exist and the in-process scenarios still give numbers
//! when they do not. `benches/run` does both in order.
//!
//! No timed assertions anywhere: a number here is reported, never checked.

use std::cell::OnceCell;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use bytes::Bytes;
use clap::Parser;
use mcptape_benches::{self as b, RemoveOnDrop};
use mcptape_datasets::redact::RedactionRules;
use mcptape_datasets::{Direction, Frame};

/// Run mcptape's benchmark scenarios and write a Markdown table of the results.
#[derive(Debug, Parser)]
#[command(
    name = "harness",
    after_help = "The full routine is `benches/run`: criterion benches first, then this."
)]
struct Args {
    /// Small workload, few runs: finishes in seconds (for tests and smoke checks; numbers are rough).
    #[arg(long)]
    quick: bool,
    /// Where to write the Markdown table (its folder is created).
    #[arg(
        short = 'o',
        long = "output",
        value_name = "FILE.md",
        default_value = "bench-results/results.md"
    )]
    output: PathBuf,
    /// Run only this scenario (repeatable; see --list). All by default.
    #[arg(long = "scenario", value_name = "NAME")]
    scenarios: Vec<String>,
    /// List the scenarios and exit.
    #[arg(long)]
    list: bool,
    /// criterion's output folder [default: `target/criterion` of the build this harness belongs to].
    #[arg(long, value_name = "DIR")]
    criterion_dir: Option<PathBuf>,
    /// Folder for the files the storage scenario writes [default: the system temporary folder].
    #[arg(long, value_name = "DIR")]
    scratch: Option<PathBuf>,
    /// Length of the soak scenario, in minutes.
    #[arg(long, value_name = "N", default_value_t = 30)]
    minutes: u64,
    /// Steady request rate of the soak scenario (requests/s, all sessions together).
    #[arg(long, value_name = "N", default_value_t = 100)]
    rate: u32,
}

/// One line of the results table.
#[derive(Debug, Clone)]
struct Row {
    scenario: String,
    variant: String,
    metric: &'static str,
    value: f64,
    unit: &'static str,
    /// Relative to the scenario's baseline in this run: throughput / baseline throughput, size / baseline size.
    ratio: Option<f64>,
}

/// What a scenario produced: rows, and notes for the table's footer.
#[derive(Debug, Default)]
struct Outcome {
    rows: Vec<Row>,
    notes: Vec<String>,
    /// A check failed (the rows are still shown; the harness exits 1).
    failed: bool,
}

/// A named measurement.
struct Scenario {
    name: &'static str,
    about: &'static str,
    run: fn(&Ctx) -> anyhow::Result<Outcome>,
    /// Runs only when named with --scenario (long runs).
    opt_in: bool,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "wire",
        about: "in-process: framing, classification, redaction, annotation (baseline: serde_json::Value parse)",
        run: wire,
        opt_in: false,
    },
    Scenario {
        name: "storage",
        about: "in-process: Arrow batches, journal, Parquet segment, CaptureWriter (baseline: buffered NDJSON file)",
        run: storage,
        opt_in: false,
    },
    Scenario {
        name: "stdio",
        about: "end to end: round trip and NDJSON throughput through a direct pipe, socat and `mcptape record` (echo server: cat)",
        run: stdio,
        opt_in: false,
    },
    Scenario {
        name: "load",
        about: "end to end: requests/s of `mcptape load`, oha and wrk against one `mcptape serve` (one-request workload, same connections); RSS of a 60 s load",
        run: load,
        opt_in: false,
    },
    Scenario {
        name: "http",
        about: "end to end: a small POST directly, through nginx (plain reverse proxy) and through `mcptape record --listen` (and with `--sample 0`, the proxy alone): added latency and throughput at 16 connections",
        run: http,
        opt_in: false,
    },
    Scenario {
        name: "fuzz",
        about: "the fuzz targets (envelope, ndjson, sse, journal, parquet, jsonl) for a bounded time each; fails on a crash",
        run: fuzz,
        opt_in: false,
    },
    Scenario {
        name: "criterion",
        about: "the last `cargo bench -p mcptape-benches` results, read from target/criterion",
        run: criterion,
        opt_in: false,
    },
    Scenario {
        name: "soak",
        about: "end to end, opt-in: `mcptape record --listen` for --minutes (default 30) at --rate req/s, rotating every minute under retention: segments verify, seq continuity across segments, disk and RSS flat",
        run: soak,
        opt_in: true,
    },
];

/// What every scenario may use; the workload is generated on first use.
struct Ctx {
    messages: usize,
    runs: usize,
    /// Shortest timed run: a run repeats the workload until it has taken this long.
    min_run: Duration,
    scratch: tempfile::TempDir,
    criterion_dir: PathBuf,
    mix: OnceCell<Vec<(Direction, Bytes)>>,
    frames: OnceCell<Vec<Frame>>,
    minutes: u64,
    rate: u32,
}

impl Ctx {
    fn mix(&self) -> &[(Direction, Bytes)] {
        self.mix.get_or_init(|| b::mix(self.messages))
    }
    fn frames(&self) -> &[Frame] {
        self.frames.get_or_init(|| b::frames(self.messages))
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("harness: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.list {
        for s in SCENARIOS {
            println!("{:<10} {}", s.name, s.about);
        }
        return Ok(ExitCode::SUCCESS);
    }
    for name in &args.scenarios {
        anyhow::ensure!(
            SCENARIOS.iter().any(|s| s.name == name),
            "no scenario `{name}` (see --list)"
        );
    }
    let scratch = match &args.scratch {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            tempfile::tempdir_in(dir)
        }
        None => tempfile::tempdir(),
    }
    .context("creating the scratch folder")?;
    let ctx = Ctx {
        messages: if args.quick { 2_000 } else { 10_000 },
        runs: if args.quick { 3 } else { 11 },
        min_run: Duration::from_millis(if args.quick { 10 } else { 100 }),
        scratch,
        criterion_dir: args.criterion_dir.clone().unwrap_or_else(default_criterion_dir),
        mix: OnceCell::new(),
        frames: OnceCell::new(),
        minutes: args.minutes,
        rate: args.rate,
    };

    let started = Instant::now();
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    let mut failed = false;
    for s in SCENARIOS {
        let named = args.scenarios.iter().any(|n| n == s.name);
        // Opt-in scenarios run only when named; the others when named or when none is.
        if !(named || (args.scenarios.is_empty() && !s.opt_in)) {
            continue;
        }
        eprintln!("harness: running {} ...", s.name);
        let t = Instant::now();
        match (s.run)(&ctx) {
            Ok(out) => {
                failed |= out.failed;
                rows.extend(out.rows);
                notes.extend(out.notes.into_iter().map(|n| format!("{}: {n}", s.name)));
            }
            Err(e) => {
                failed = true;
                notes.push(format!("{}: FAILED: {e:#}", s.name));
            }
        }
        eprintln!("harness: {} done in {:.1} s", s.name, t.elapsed().as_secs_f64());
    }

    let table = render(&args, &ctx, &rows, &notes, started.elapsed());
    print!("{table}");
    if let Some(parent) = args.output.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(&args.output, &table).with_context(|| format!("writing {}", args.output.display()))?;
    eprintln!("harness: wrote {}", args.output.display());
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

// ---- measuring ----

/// One call of a variant's workload on fresh input: the time of the timed part, and the bytes it left on disk.
type Call<'a> = Box<dyn FnMut() -> anyhow::Result<(Duration, Option<u64>)> + 'a>;

/// A workload to time, and how many frames and bytes one call processes.
struct Variant<'a> {
    name: String,
    frames: u64,
    bytes: u64,
    call: Call<'a>,
}

/// A CPU-only variant: `setup` (untimed) makes the input, `work` is timed, its output is dropped untimed.
fn cpu<'a, S, T>(
    name: &str,
    frames: u64,
    bytes: u64,
    mut setup: impl FnMut() -> S + 'a,
    mut work: impl FnMut(S) -> T + 'a,
) -> Variant<'a> {
    let call = move || {
        let input = setup();
        let t = Instant::now();
        let out = work(input);
        let time = t.elapsed();
        drop(out);
        Ok((time, None))
    };
    Variant {
        name: name.to_string(),
        frames,
        bytes,
        call: Box::new(call),
    }
}

/// A variant that writes files: `work` returns what it wrote, which is measured and deleted untimed.
fn io<'a, S>(
    name: &str,
    frames: u64,
    bytes: u64,
    mut setup: impl FnMut() -> S + 'a,
    mut work: impl FnMut(S) -> anyhow::Result<RemoveOnDrop> + 'a,
) -> Variant<'a> {
    let name_ = name.to_string();
    let call = move || {
        let input = setup();
        let t = Instant::now();
        let out = work(input);
        let time = t.elapsed();
        let out = out.with_context(|| name_.clone())?;
        Ok((time, Some(disk_usage(&out.0))))
    };
    Variant {
        name: name.to_string(),
        frames,
        bytes,
        call: Box::new(call),
    }
}

/// A measured variant: the median time of one call, for how many frames and bytes, and what it left on disk.
struct Measured {
    variant: String,
    time: Duration,
    frames: u64,
    bytes: u64,
    disk: Option<u64>,
}

/// Times the variants of one scenario: `ctx.runs` rounds, each running every variant in turn, so that a baseline
/// and the variants compared with it share the same moments of a busy machine. In a round a variant repeats its
/// call until it has taken at least `ctx.min_run` (one preemption cannot double a 10 ms workload). One untimed
/// call per variant first warms up and sizes the rounds. Reports the median over the rounds of the time per call.
fn measure(ctx: &Ctx, mut variants: Vec<Variant<'_>>) -> anyhow::Result<Vec<Measured>> {
    let mut calls = Vec::with_capacity(variants.len());
    let mut disk = Vec::with_capacity(variants.len());
    for v in &mut variants {
        let (once, d) = (v.call)()?;
        let n = ctx.min_run.as_secs_f64() / once.as_secs_f64().max(1e-9);
        calls.push(n.ceil().clamp(1.0, 100_000.0) as u32);
        disk.push(d);
    }
    let mut times = vec![Vec::with_capacity(ctx.runs); variants.len()];
    for _ in 0..ctx.runs.max(1) {
        for (i, v) in variants.iter_mut().enumerate() {
            let mut total = Duration::ZERO;
            for _ in 0..calls[i] {
                total += (v.call)()?.0;
            }
            times[i].push(total / calls[i]);
        }
    }
    Ok(variants
        .into_iter()
        .zip(times)
        .zip(disk)
        .map(|((v, mut t), disk)| {
            t.sort();
            Measured {
                variant: v.name,
                time: t[t.len() / 2],
                frames: v.frames,
                bytes: v.bytes,
                disk,
            }
        })
        .collect())
}

/// Rows for a scenario's variants; the variant named `baseline` (if any) is the ratios' denominator.
fn rows_for(scenario: &str, measured: &[Measured], baseline: Option<&str>) -> Vec<Row> {
    let rate = |n: u64, t: Duration| n as f64 / t.as_secs_f64().max(1e-12);
    let base = baseline.and_then(|name| measured.iter().find(|m| m.variant == name));
    let mut rows = Vec::new();
    for m in measured {
        let row = |metric, value, unit, ratio| Row {
            scenario: scenario.to_string(),
            variant: m.variant.clone(),
            metric,
            value,
            unit,
            ratio,
        };
        let fps = rate(m.frames, m.time);
        let mbps = rate(m.bytes, m.time) / 1e6;
        rows.push(row(
            "throughput",
            fps,
            "frames/s",
            base.map(|b| fps / rate(b.frames, b.time)),
        ));
        rows.push(row(
            "throughput",
            mbps,
            "MB/s",
            base.map(|b| mbps / (rate(b.bytes, b.time) / 1e6)),
        ));
        if let Some(disk) = m.disk {
            let ratio = base.and_then(|b| b.disk).map(|d| disk as f64 / d as f64);
            rows.push(row("on disk", disk as f64 / 1e6, "MB", ratio));
        }
    }
    rows
}

const WIRE_BASELINE: &str = "serde_json::Value parse (baseline)";

fn wire(ctx: &Ctx) -> anyhow::Result<Outcome> {
    let mix = ctx.mix();
    let n = mix.len() as u64;
    let bytes = b::payload_bytes(mix);
    let rules = RedactionRules::default();
    let ndjson = b::chunks(&b::ndjson_stream(mix), b::CHUNK);
    let ndjson_bytes = ndjson.iter().map(|c| c.len() as u64).sum();
    let sse = b::chunks(&b::sse_stream(mix), b::CHUNK);
    let sse_bytes = sse.iter().map(|c| c.len() as u64).sum();
    let raw = b::raw_frames(ctx.messages);
    let measured = measure(
        ctx,
        vec![
            cpu(WIRE_BASELINE, n, bytes, || (), |_| b::parse_all(mix)),
            cpu("classify", n, bytes, || (), |_| b::classify_all(mix)),
            cpu("annotate", n, bytes, || raw.clone(), b::annotate_all),
            cpu("redact, no secret", n, bytes, || (), |_| b::redact_all(&rules, mix)),
            cpu(
                "classify+redact, one walk",
                n,
                bytes,
                || (),
                |_| b::classify_and_redact_all(&rules, mix),
            ),
            cpu(
                "annotate+redact (the writer's path)",
                n,
                bytes,
                || raw.clone(),
                |f| b::annotate_and_redact_all(&rules, f),
            ),
            cpu(
                "ndjson framing, 16 KiB reads",
                n,
                ndjson_bytes,
                || (),
                |_| b::frame_ndjson(&ndjson),
            ),
            cpu(
                "sse decoding, 16 KiB reads",
                n,
                sse_bytes,
                || (),
                |_| b::decode_sse(&sse),
            ),
        ],
    )?;
    Ok(Outcome {
        rows: rows_for("wire", &measured, Some(WIRE_BASELINE)),
        notes: Vec::new(),
        failed: false,
    })
}

const STORAGE_BASELINE: &str = "NDJSON file (baseline)";

fn storage(ctx: &Ctx) -> anyhow::Result<Outcome> {
    let mix = ctx.mix();
    let frames = ctx.frames();
    let n = frames.len() as u64;
    let bytes = b::frame_bytes(frames);
    let batches = b::batches(frames);
    let meta = b::meta();
    let next = std::cell::Cell::new(0u32);
    let fresh = |ext: &str| {
        next.set(next.get() + 1);
        ctx.scratch.path().join(format!("{}.{ext}", next.get()))
    };
    let measured = measure(
        ctx,
        vec![
            io(
                STORAGE_BASELINE,
                n,
                bytes,
                || fresh("ndjson"),
                |p| b::write_raw_ndjson(&p, mix).map(|_| RemoveOnDrop(p)),
            ),
            io(
                "journal append+flush",
                n,
                bytes,
                || fresh("journal"),
                |p| b::write_journal(&p, &meta, &batches).map(RemoveOnDrop),
            ),
            io(
                "Parquet segment",
                n,
                bytes,
                || fresh("parquet"),
                |p| b::write_parquet(&p, &meta, &batches).map(|_| RemoveOnDrop(p)),
            ),
            io(
                "CaptureWriter append+finish",
                n,
                bytes,
                || (fresh("capture"), frames.to_vec()),
                |(p, f)| b::capture(&p, f).map(|_| RemoveOnDrop(p)),
            ),
            cpu("Arrow to_batch (no I/O)", n, bytes, || (), |_| b::batches(frames).len()),
        ],
    )?;
    Ok(Outcome {
        rows: rows_for("storage", &measured, Some(STORAGE_BASELINE)),
        notes: vec![format!(
            "files in {} ({}); the Parquet segment and the CaptureWriter fsync, the journal and the baseline do not",
            ctx.scratch.path().display(),
            fs_type(ctx.scratch.path()).unwrap_or_else(|| "file system unknown".into())
        )],
        failed: false,
    })
}

/// Bytes in a file, or in the files of a folder.
fn disk_usage(path: &Path) -> u64 {
    match std::fs::read_dir(path) {
        Ok(entries) => entries.flatten().map(|e| disk_usage(&e.path())).sum(),
        Err(_) => std::fs::metadata(path).map_or(0, |m| m.len()),
    }
}

// ---- criterion's results ----

/// One benchmark criterion measured.
#[derive(Debug)]
struct CriterionResult {
    group: String,
    function: String,
    mean_ns: f64,
    elements: Option<u64>,
    bytes: Option<u64>,
    written: Option<SystemTime>,
}

/// Runs every fuzz target for a bounded time (`MCPTAPE_FUZZ_SECS` per target, default 30 s, 3 s with --quick),
/// from a seed that changes each run (`MCPTAPE_FUZZ_SEED` to repeat one). A failure names the target, the seed
/// and the shrunk input: pin it in `benches/tests/fuzz.rs`.
fn fuzz(ctx: &Ctx) -> anyhow::Result<Outcome> {
    use mcptape_benches::fuzz;
    let quick = ctx.runs < 5;
    let secs = std::env::var("MCPTAPE_FUZZ_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 3 } else { 30 });
    let seed = std::env::var("MCPTAPE_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| mcptape_datasets::human::now_ns().unsigned_abs());
    let mut out = Outcome::default();
    let mut failures = Vec::new();
    for t in fuzz::TARGETS {
        let o = fuzz::run_for(t, Duration::from_secs(secs), 500, seed);
        out.rows.push(Row {
            scenario: "fuzz".into(),
            variant: t.name.into(),
            metric: "cases",
            value: o.cases as f64,
            unit: "cases",
            ratio: None,
        });
        out.rows.push(Row {
            scenario: "fuzz".into(),
            variant: t.name.into(),
            metric: "rate",
            value: o.cases as f64 / o.elapsed.as_secs_f64().max(1e-9),
            unit: "cases/s",
            ratio: None,
        });
        if let Some(f) = o.failure {
            failures.push(format!("{}: {f}", t.name));
        }
    }
    out.notes.push(format!("seeds from {seed}, {secs} s per target"));
    anyhow::ensure!(failures.is_empty(), "fuzz failures:\n{}", failures.join("\n"));
    Ok(out)
}

fn criterion(ctx: &Ctx) -> anyhow::Result<Outcome> {
    let dir = &ctx.criterion_dir;
    let mut results = Vec::new();
    let mut skipped = 0;
    find_estimates(dir, &mut |new_dir| match read_criterion(new_dir) {
        Some(r) => results.push(r),
        None => skipped += 1,
    });
    let mut out = Outcome::default();
    if results.is_empty() {
        out.notes.push(format!(
            "no results under {}: run `cargo bench -p mcptape-benches` (or `benches/run`) first",
            dir.display()
        ));
        return Ok(out);
    }
    results.sort_by(|a, b| (&a.group, &a.function).cmp(&(&b.group, &b.function)));
    let times: Vec<SystemTime> = results.iter().filter_map(|r| r.written).collect();
    let stamp = |t: Option<&SystemTime>| t.map_or("?".into(), |t| humantime::format_rfc3339_seconds(*t).to_string());
    out.notes.push(format!(
        "{} results from {}, written {} .. {} (results of renamed benches linger there: delete it to reset){}",
        results.len(),
        dir.display(),
        stamp(times.iter().min()),
        stamp(times.iter().max()),
        if skipped > 0 {
            format!("; {skipped} unreadable")
        } else {
            String::new()
        }
    ));
    for r in &results {
        // A bench named `*baseline*` is the denominator of its group's ratios.
        let base = results
            .iter()
            .find(|b| b.group == r.group && b.function.contains("baseline"));
        let row = |metric, value, unit, ratio| Row {
            scenario: format!("criterion: {}", r.group),
            variant: r.function.clone(),
            metric,
            value,
            unit,
            ratio,
        };
        if r.mean_ns >= 1e6 {
            out.rows.push(row("mean time", r.mean_ns / 1e6, "ms/iter", None));
        } else {
            out.rows.push(row("mean time", r.mean_ns / 1e3, "µs/iter", None));
        }
        let per_s = |n: u64, t: f64| n as f64 / (t / 1e9);
        if let Some(e) = r.elements {
            let ratio = base.and_then(|b| Some(per_s(e, r.mean_ns) / per_s(b.elements?, b.mean_ns)));
            out.rows.push(row("throughput", per_s(e, r.mean_ns), "frames/s", ratio));
        }
        if let Some(n) = r.bytes {
            let ratio = base.and_then(|b| Some(per_s(n, r.mean_ns) / per_s(b.bytes?, b.mean_ns)));
            out.rows
                .push(row("throughput", per_s(n, r.mean_ns) / 1e6, "MB/s", ratio));
        }
    }
    Ok(out)
}

/// Calls `f` for every `new` folder under `dir` that holds both `benchmark.json` and `estimates.json`.
fn find_estimates(dir: &Path, f: &mut impl FnMut(&Path)) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        if entry.file_name() == "new" {
            if path.join("benchmark.json").is_file() && path.join("estimates.json").is_file() {
                f(&path);
            }
        } else if entry.file_name() != "report" {
            find_estimates(&path, f);
        }
    }
}

fn read_criterion(new_dir: &Path) -> Option<CriterionResult> {
    let json = |name: &str| -> Option<serde_json::Value> {
        serde_json::from_slice(&std::fs::read(new_dir.join(name)).ok()?).ok()
    };
    let id = json("benchmark.json")?;
    let est = json("estimates.json")?;
    let mean_ns = est["mean"]["point_estimate"].as_f64()?;
    let group = id["group_id"].as_str()?.to_string();
    let mut function = id["function_id"].as_str().unwrap_or("").to_string();
    if let Some(v) = id["value_str"].as_str() {
        function = if function.is_empty() {
            v.to_string()
        } else {
            format!("{function}/{v}")
        };
    }
    // serde's form of criterion's `Throughput` enum.
    let t = &id["throughput"];
    let (elements, bytes) = if let Some(e) = t.get("ElementsAndBytes") {
        (e["elements"].as_u64(), e["bytes"].as_u64())
    } else {
        (
            t.get("Elements").and_then(|v| v.as_u64()),
            t.get("Bytes")
                .or_else(|| t.get("BytesDecimal"))
                .and_then(|v| v.as_u64()),
        )
    };
    let written = std::fs::metadata(new_dir.join("estimates.json"))
        .and_then(|m| m.modified())
        .ok();
    Some(CriterionResult {
        group,
        function,
        mean_ns,
        elements,
        bytes,
        written,
    })
}

/// `$CARGO_TARGET_DIR/criterion`, else the `target/criterion` next to this executable (`target/<profile>/harness`).
fn default_criterion_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir).join("criterion");
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| {
            exe.ancestors()
                .find(|a| a.file_name().is_some_and(|n| n == "target"))
                .map(Path::to_path_buf)
        })
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
        .join("criterion")
}

// ---- the machine and the table ----

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

/// The file system type of the mount holding `path`, from /proc/mounts.
fn fs_type(path: &Path) -> Option<String> {
    let path = path.canonicalize().ok()?;
    let mounts = std::fs::read_to_string("/proc/mounts").ok()?;
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, point, ty) = (f.next()?, f.next()?, f.next()?);
            path.starts_with(point).then(|| (point.len(), ty.to_string()))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, ty)| ty)
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn commit() -> String {
    match git(&["rev-parse", "--short", "HEAD"]) {
        Some(c) => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{c} (with uncommitted changes)")
            } else {
                c
            }
        }
        None => "unknown (no git)".into(),
    }
}

fn shell_word(s: &str) -> String {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./=:,".contains(&b)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// A number with about three significant digits, thousands separated.
fn number(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    if v.abs() >= 1000.0 {
        let digits = format!("{:.0}", v.abs());
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        if v < 0.0 { format!("-{out}") } else { out }
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn render(args: &Args, ctx: &Ctx, rows: &[Row], notes: &[String], took: Duration) -> String {
    let mut s = String::new();
    let argv: Vec<String> = std::env::args().skip(1).map(|a| shell_word(&a)).collect();
    let mut command = "cargo run --release -p mcptape-benches --bin harness".to_string();
    if !argv.is_empty() {
        command = format!("{command} -- {}", argv.join(" "));
    }
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let _ = writeln!(s, "# mcptape benchmark results\n");
    let _ = writeln!(s, "- machine: {cores} cores, {}", cpu_model());
    let _ = writeln!(s, "- date: {}", humantime::format_rfc3339_seconds(SystemTime::now()));
    let _ = writeln!(s, "- commit: {}", commit());
    let _ = writeln!(s, "- command: `{command}`");
    if let Some(mix) = ctx.mix.get() {
        let _ = writeln!(
            s,
            "- workload: the benchmark mix, {} MCP messages, {:.1} MB of payload; median of {} runs of at least {} ms{}",
            mix.len(),
            b::payload_bytes(mix) as f64 / 1e6,
            ctx.runs,
            ctx.min_run.as_millis(),
            if args.quick { " (--quick: rough numbers)" } else { "" }
        );
    }
    if cfg!(debug_assertions) {
        let _ = writeln!(s, "- **debug build**: these numbers say nothing about a release build");
    }
    let _ = writeln!(s, "- harness time: {:.1} s\n", took.as_secs_f64());
    let _ = writeln!(s, "| scenario | variant | metric | value | unit | ratio |");
    let _ = writeln!(s, "|---|---|---|---:|---|---:|");
    for r in rows {
        let ratio = r.ratio.map_or(String::new(), |x| format!("{x:.2}×"));
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} |",
            r.scenario,
            r.variant,
            r.metric,
            number(r.value),
            r.unit,
            ratio
        );
    }
    let _ = writeln!(
        s,
        "\nratio: against the scenario's baseline measured in the same run (throughput: >1 is faster; on disk: <1 is \
         smaller). MB = 10^6 bytes of payload (framing bytes included for the NDJSON and SSE rows)."
    );
    if !notes.is_empty() {
        let _ = writeln!(s);
        for n in notes {
            let _ = writeln!(s, "- {n}");
        }
    }
    s
}

/// The median of `v` (for an even count, the upper of the two middle values).
fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

// ---- end to end: stdio ----

/// `mcptape` built next to this harness (`cargo build --release` builds both).
fn mcptape_bin() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let bin = exe.with_file_name("mcptape");
    anyhow::ensure!(
        bin.exists(),
        "{} not built: run `cargo build --release` first",
        bin.display()
    );
    Ok(bin)
}

fn which(prog: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(prog))
        .find(|p| p.is_file())
}

const DIRECT: &str = "direct pipe (baseline)";
const SOCAT: &str = "socat relay";

/// Round trips and streaming through each chain. Latency: rounds that run every chain in turn (so all share the
/// same moments of a busy machine), pooled, p50 and p99; the ratio of an added latency is to socat's added latency.
/// Throughput: the benchmark mix as NDJSON, repeated, median of the runs; ratio to socat.
fn stdio(ctx: &Ctx) -> anyhow::Result<Outcome> {
    use mcptape_benches::e2e::{Chain, quantile, round_trips, stream};
    let mut out = Outcome::default();
    let mcptape = mcptape_bin()?.display().to_string();
    let caps = ctx.scratch.path().join("stdio-captures").display().to_string();
    let mut chains = vec![Chain {
        name: DIRECT.into(),
        argv: vec!["cat".into()],
    }];
    match which("socat") {
        Some(s) => chains.push(Chain {
            name: SOCAT.into(),
            argv: vec![s.display().to_string(), "-b65536".into(), "-".into(), "EXEC:cat".into()],
        }),
        None => out
            .notes
            .push("socat not installed (`apt-get install socat`): the relay rows are missing".into()),
    }
    let record = |extra: &[&str]| {
        let mut argv = vec![
            mcptape.clone(),
            "record".into(),
            "--out".into(),
            caps.clone(),
            "--name".into(),
            "bench".into(),
        ];
        argv.extend(extra.iter().map(|s| s.to_string()));
        argv.extend(["--".into(), "cat".into()]);
        argv
    };
    chains.push(Chain {
        name: "mcptape record".into(),
        argv: record(&[]),
    });
    chains.push(Chain {
        name: "mcptape record --lossless".into(),
        argv: record(&["--lossless"]),
    });
    // The tap's relay alone (nothing recorded): shows how much of the gap to socat is the capture.
    chains.push(Chain {
        name: "mcptape record --sample 0".into(),
        argv: record(&["--sample", "0"]),
    });

    let (rounds, per) = if ctx.runs < 5 { (2, 300) } else { (5, 2_000) };
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); chains.len()];
    for _ in 0..rounds {
        for (i, c) in chains.iter().enumerate() {
            samples[i].extend(round_trips(c, 100, per)?);
        }
    }
    let pcts: Vec<(Duration, Duration)> = samples
        .iter_mut()
        .map(|s| (quantile(s, 0.50), quantile(s, 0.99)))
        .collect();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let direct = pcts[0];
    let socat = chains.iter().position(|c| c.name == SOCAT).map(|i| pcts[i]);
    for (c, &(p50, p99)) in chains.iter().zip(&pcts) {
        let row = |metric, value, ratio| Row {
            scenario: "stdio".into(),
            variant: c.name.clone(),
            metric,
            value,
            unit: "µs",
            ratio,
        };
        out.rows.push(row("round trip p50", us(p50), None));
        out.rows.push(row("round trip p99", us(p99), None));
        if c.name != DIRECT {
            let added50 = us(p50) - us(direct.0);
            let added99 = us(p99) - us(direct.1);
            let vs = |mine: f64, theirs: Option<f64>| theirs.filter(|t| *t > 0.0).map(|t| mine / t);
            out.rows.push(row(
                "added p50",
                added50,
                vs(added50, socat.map(|s| us(s.0) - us(direct.0))),
            ));
            out.rows.push(row(
                "added p99",
                added99,
                vs(added99, socat.map(|s| us(s.1) - us(direct.1))),
            ));
        }
    }
    out.notes.push(format!(
        "round trips: {rounds} rounds × {per} requests per chain (after 100 warm-up), one `ping` line echoed by `cat`; \
         added = chain minus direct pipe; the ratio of an added latency is to socat's added latency (goal ≤ 1.2×)"
    ));

    // Throughput: the mix as NDJSON, repeated to the target size.
    let mut data = Vec::new();
    let target = if ctx.runs < 5 { 4 << 20 } else { 64 << 20 };
    while data.len() < target {
        for (_, m) in ctx.mix() {
            data.extend_from_slice(m);
            data.push(b'\n');
        }
    }
    // Rounds of every chain in turn; a chain's ratio is the median over rounds of its throughput over socat's in
    // the same round (a shared machine's slow spells hit both sides of a pair alike).
    let runs = if ctx.runs < 5 { 1 } else { 9 };
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); chains.len()];
    let mut recorded = vec![String::new(); chains.len()];
    for _ in 0..runs {
        for (i, c) in chains.iter().enumerate() {
            let (t, err) = stream(c, &data)?;
            times[i].push(t);
            if let Some(line) = err
                .lines()
                .find(|l| l.contains("recorded") || l.contains("could not be recorded"))
            {
                recorded[i] = line.trim_start_matches("mcptape: ").to_string();
            }
        }
    }
    let rate = |t: Duration| data.len() as f64 / t.as_secs_f64().max(1e-9) / 1e6;
    let mbps: Vec<f64> = times.iter().map(|t| rate(quantile(&mut t.clone(), 0.5))).collect();
    let socat_i = chains.iter().position(|c| c.name == SOCAT);
    let paired = |i: usize, s: usize| {
        let ratios: Vec<f64> = times[i]
            .iter()
            .zip(&times[s])
            .map(|(&a, &b)| rate(a) / rate(b))
            .collect();
        median(&ratios)
    };
    for (i, c) in chains.iter().enumerate() {
        out.rows.push(Row {
            scenario: "stdio".into(),
            variant: c.name.clone(),
            metric: "NDJSON throughput",
            value: mbps[i],
            unit: "MB/s",
            ratio: socat_i.map(|s| paired(i, s)),
        });
        if !recorded[i].is_empty() {
            out.notes
                .push(format!("{}: {}", c.name, recorded[i].replace(&caps, "SCRATCH")));
        }
    }
    out.notes.push(format!(
        "throughput: {:.0} MB of the benchmark mix as NDJSON, through and back, {runs} rounds of every chain; value: the median; ratio: the median over rounds of the chain's throughput over socat's in the same round (goal ≥ 0.8×)",
        data.len() as f64 / 1e6
    ));
    Ok(out)
}

// ---- end to end: http ----

/// A wrk latency figure (`123.45us`, `1.20ms`, `2.00s`) in µs.
fn wrk_us(v: &str) -> Option<f64> {
    let v = v.trim();
    let (n, k) = if let Some(x) = v.strip_suffix("us") {
        (x, 1.0)
    } else if let Some(x) = v.strip_suffix("ms") {
        (x, 1e3)
    } else if let Some(x) = v.strip_suffix('s') {
        (x, 1e6)
    } else {
        return None;
    };
    n.parse::<f64>().ok().map(|n| n * k)
}

/// `wrk` against `url` with the POST script: (requests/s, p50 µs, p99 µs).
fn wrk_run(wrk: &Path, lua: &Path, url: &str, threads: u32, conns: u32, secs: u32) -> anyhow::Result<(f64, f64, f64)> {
    let o = std::process::Command::new(wrk)
        .args([
            format!("-t{threads}"),
            format!("-c{conns}"),
            format!("-d{secs}s"),
            "--latency".into(),
        ])
        .args(["-s", &lua.display().to_string(), url])
        .output()?;
    let text = String::from_utf8_lossy(&o.stdout);
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok());
    let pct = |p: &str| text.lines().find_map(|l| l.trim().strip_prefix(p)).and_then(wrk_us);
    match (rps, pct("50%"), pct("99%")) {
        (Some(r), Some(a), Some(b)) => Ok((r, a, b)),
        _ => anyhow::bail!("could not read wrk's output: {text}"),
    }
}

/// nginx as a plain reverse proxy to `upstream` (host:port), configured here; returns it and its URL.
fn nginx(nginx: &Path, dir: &Path, upstream: &str) -> anyhow::Result<(Child, String)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let prefix = dir.join("nginx");
    std::fs::create_dir_all(prefix.join("logs"))?;
    let conf = prefix.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "worker_processes 1;\ndaemon off;\npid {p}/nginx.pid;\nerror_log {p}/logs/error.log;\nevents {{ worker_connections 4096; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {p}/body;\n  proxy_temp_path {p}/proxy;\n\
               upstream up {{ server {upstream}; keepalive 64; }}\n\
               server {{ listen 127.0.0.1:{port}; location / {{ proxy_pass http://up; proxy_http_version 1.1;\n\
                 proxy_set_header Connection \"\"; proxy_buffering off; }} }}\n}}\n",
            p = prefix.display()
        ),
    )?;
    let child = std::process::Command::new(nginx)
        .args(["-c", &conf.display().to_string(), "-p", &prefix.display().to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let guard = Child(child);
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok((guard, format!("http://127.0.0.1:{port}/mcp")));
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    anyhow::bail!("nginx did not listen on {port}")
}

/// `mcptape record --listen 127.0.0.1:0 --upstream URL [EXTRA...]`, and its URL.
fn tap(mcptape: &Path, upstream: &str, out: &Path, extra: &[&str]) -> anyhow::Result<(Child, String)> {
    use std::io::BufRead;
    let mut child = std::process::Command::new(mcptape)
        .args([
            "record",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            upstream,
            "--out",
            &out.display().to_string(),
        ])
        .args(extra)
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let mut lines = std::io::BufReader::new(child.stderr.take().context("stderr")?).lines();
    let guard = Child(child);
    for line in lines.by_ref() {
        let line = line?;
        if let Some(url) = line.split_whitespace().find(|w| w.starts_with("http://")) {
            std::thread::spawn(move || for _ in lines {});
            return Ok((guard, format!("{}/mcp", url.trim_end_matches('/'))));
        }
    }
    anyhow::bail!("the tap did not say where it listens")
}

/// Latency (1 connection) and throughput (16 connections) of a small POST: direct, nginx, mcptape record (and
/// with `--sample 0`, the proxy alone).
fn http(ctx: &Ctx) -> anyhow::Result<Outcome> {
    let mut out = Outcome::default();
    let mcptape = mcptape_bin()?;
    let wrk = which("wrk").context("wrk not installed (`apt-get install wrk`)")?;
    let (cap, body) = one_request_capture(&mcptape, ctx.scratch.path())?;
    // The upstream answers on one thread: with a worker per CPU, its workers woke each other for every request,
    // and those cross-CPU wake-ups were most of the waits over 50 us in every chain's round trip
    // (`benches/sched-wait`), the same noise for all chains. One worker also answers 16 connections faster.
    let (_serve, direct) = serve(&mcptape, &cap, true)?;
    let lua = ctx.scratch.path().join("post-http.lua");
    std::fs::write(
        &lua,
        format!("wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.body = [[{body}]]\n"),
    )?;
    let upstream_hostport = direct
        .trim_start_matches("http://")
        .trim_end_matches("/mcp")
        .to_string();
    let mut chains: Vec<(String, String, Option<Child>)> = vec![("direct (baseline)".into(), direct.clone(), None)];
    match which("nginx") {
        Some(n) => {
            let (guard, url) = nginx(&n, ctx.scratch.path(), &upstream_hostport)?;
            chains.push(("nginx reverse proxy".into(), url, Some(guard)));
        }
        None => out
            .notes
            .push("nginx not installed (`apt-get install nginx-light`): its rows are missing".into()),
    }
    let (guard, url) = tap(&mcptape, &direct, &ctx.scratch.path().join("http-captures"), &[])?;
    chains.push(("mcptape record --listen".into(), url, Some(guard)));
    // The proxy alone (every session sampled out, nothing queued): what of the tap's cost is the capture's.
    let (guard, url) = tap(
        &mcptape,
        &direct,
        &ctx.scratch.path().join("http-sampled-out"),
        &["--sample", "0"],
    )?;
    chains.push(("mcptape record --listen --sample 0".into(), url, Some(guard)));
    let quick = ctx.runs < 5;
    // Many short rounds, every chain in each: a shared machine's slow spells last seconds, and an added latency
    // taken within one round (chain minus direct, measured back to back) cancels most of them.
    let (secs, rounds) = if quick { (2, 1) } else { (3, 9) };
    let mut lat50: Vec<Vec<f64>> = vec![Vec::new(); chains.len()];
    let mut lat99: Vec<Vec<f64>> = vec![Vec::new(); chains.len()];
    let mut thr: Vec<Vec<f64>> = vec![Vec::new(); chains.len()];
    for _ in 0..rounds {
        for (i, (_, url, _)) in chains.iter().enumerate() {
            let (_, p50, p99) = wrk_run(&wrk, &lua, url, 1, 1, secs)?;
            lat50[i].push(p50);
            lat99[i].push(p99);
            let (rps, _, _) = wrk_run(&wrk, &lua, url, 2, 16, secs)?;
            thr[i].push(rps);
        }
    }
    // Per round, what a chain adds to the direct path; then the median over rounds.
    let added = |lat: &[Vec<f64>], i: usize| {
        let per_round: Vec<f64> = lat[i].iter().zip(&lat[0]).map(|(c, d)| c - d).collect();
        median(&per_round)
    };
    let p50: Vec<f64> = lat50.iter().map(|v| median(v)).collect();
    let p99: Vec<f64> = lat99.iter().map(|v| median(v)).collect();
    let rps: Vec<f64> = thr.iter().map(|t| median(t)).collect();
    let nginx_i = chains.iter().position(|c| c.0.starts_with("nginx"));
    for (i, (name, _, _)) in chains.iter().enumerate() {
        let row = |metric, value, unit, ratio| Row {
            scenario: "http".into(),
            variant: name.clone(),
            metric,
            value,
            unit,
            ratio,
        };
        out.rows.push(row("POST p50 (1 conn)", p50[i], "µs", None));
        out.rows.push(row("POST p99 (1 conn)", p99[i], "µs", None));
        if i > 0 {
            let vs = |mine: f64, theirs: Option<f64>| theirs.filter(|t| *t > 0.0).map(|t| mine / t);
            let added50 = added(&lat50, i);
            let added99 = added(&lat99, i);
            out.rows.push(row(
                "added p50",
                added50,
                "µs",
                vs(added50, nginx_i.map(|n| added(&lat50, n))),
            ));
            out.rows.push(row(
                "added p99",
                added99,
                "µs",
                vs(added99, nginx_i.map(|n| added(&lat99, n))),
            ));
        }
        out.rows
            .push(row("throughput (16 conns)", rps[i], "req/s", Some(rps[i] / rps[0])));
    }
    out.notes.push(format!(
        "http: wrk with a one-request `tools/call` POST against `mcptape serve` (release, one worker thread); latency with 1 connection, throughput with 16; {rounds} rounds of {secs} s per chain and run, medians over the rounds; an added latency is the median over rounds of (chain minus direct in that round), its ratio is to nginx's (goal ≤ 1.0×); a throughput's ratio is to direct"
    ));
    Ok(out)
}

// ---- end to end: load ----

/// One measurement of a load tool: requests per second.
type Measure = Box<dyn Fn() -> anyhow::Result<f64>>;

/// A one-request workload: sessions of a single `tools/call`, imported as a capture by `mcptape` itself.
fn one_request_capture(mcptape: &Path, dir: &Path) -> anyhow::Result<(PathBuf, String)> {
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}"#;
    let answer = r#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"hi"}]}}"#;
    let jsonl = dir.join("one.jsonl");
    let lines = [
        serde_json::json!({"session_id":"s","seq":0,"direction":"c2s","payload":body}).to_string(),
        serde_json::json!({"session_id":"s","seq":1,"t_ns":1000,"direction":"s2c","payload":answer}).to_string(),
    ];
    std::fs::write(&jsonl, lines.join("\n") + "\n")?;
    let cap = dir.join("one.parquet");
    let o = std::process::Command::new(mcptape)
        .args([
            "dataset",
            "import",
            &jsonl.display().to_string(),
            "-o",
            &cap.display().to_string(),
        ])
        .output()?;
    anyhow::ensure!(o.status.success(), "import: {}", String::from_utf8_lossy(&o.stderr));
    Ok((cap, body.to_string()))
}

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        // SIGTERM first: a SIGKILLed nginx master leaves its worker running (orphaned, still holding its port).
        let term = std::process::Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        if term.is_ok_and(|s| s.success()) {
            for _ in 0..100 {
                if matches!(self.0.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `mcptape serve --listen 127.0.0.1:0`, and its URL. With `one_worker`, its runtime has one worker thread
/// (`TOKIO_WORKER_THREADS=1`).
fn serve(mcptape: &Path, cap: &Path, one_worker: bool) -> anyhow::Result<(Child, String)> {
    use std::io::BufRead;
    let mut cmd = std::process::Command::new(mcptape);
    cmd.args(["serve", &cap.display().to_string(), "--listen", "127.0.0.1:0"])
        .stderr(std::process::Stdio::piped());
    if one_worker {
        cmd.env("TOKIO_WORKER_THREADS", "1");
    }
    let mut child = cmd.spawn()?;
    let mut lines = std::io::BufReader::new(child.stderr.take().context("stderr")?).lines();
    let first = lines.next().context("serve said nothing")??;
    std::thread::spawn(move || for _ in lines {});
    let url = first
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .context("no URL")?
        .to_string();
    Ok((Child(child), url))
}

fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Requests per second of mcptape load, oha and wrk, interleaved, against the same serve; and RSS over a long run.
fn load(ctx: &Ctx) -> anyhow::Result<Outcome> {
    let mut out = Outcome::default();
    let mcptape = mcptape_bin()?;
    let (cap, body) = one_request_capture(&mcptape, ctx.scratch.path())?;
    let (_serve, url) = serve(&mcptape, &cap, false)?;
    let quick = ctx.runs < 5;
    let (secs, conns, rounds) = if quick { (2, 16, 1) } else { (10, 16, 3) };
    let report = ctx.scratch.path().join("load.json");
    let lua = ctx.scratch.path().join("post.lua");
    std::fs::write(
        &lua,
        format!("wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.body = [[{body}]]\n"),
    )?;
    let mut tools: Vec<(&str, Measure)> = Vec::new();
    let (m, r, c, u) = (mcptape.clone(), report.clone(), cap.clone(), url.clone());
    tools.push((
        "mcptape load",
        Box::new(move || {
            let o = std::process::Command::new(&m)
                .args([
                    "load",
                    &c.display().to_string(),
                    "--target",
                    &u,
                    "-c",
                    &conns.to_string(),
                ])
                .args(["--duration", &format!("{secs}s"), "-o", &r.display().to_string()])
                .output()?;
            anyhow::ensure!(o.status.success(), "load: {}", String::from_utf8_lossy(&o.stderr));
            let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&r)?)?;
            v["totals"]["throughput_rps"]
                .as_f64()
                .context("no throughput in the report")
        }),
    ));
    match which("oha") {
        Some(oha) => {
            let (u, b) = (url.clone(), body.clone());
            tools.push((
                "oha",
                Box::new(move || {
                    let o = std::process::Command::new(&oha)
                        .args([
                            "-c",
                            &conns.to_string(),
                            "-z",
                            &format!("{secs}s"),
                            "--no-tui",
                            "--output-format",
                            "json",
                        ])
                        .args(["-m", "POST", "-H", "content-type: application/json", "-d", &b, &u])
                        .output()?;
                    let v: serde_json::Value = serde_json::from_slice(&o.stdout).context("oha's JSON")?;
                    v["summary"]["requestsPerSec"].as_f64().context("no requestsPerSec")
                }),
            ));
        }
        None => out
            .notes
            .push("oha not installed (`cargo install oha`): its row is missing".into()),
    }
    match which("wrk") {
        Some(wrk) => {
            let (u, l) = (url.clone(), lua.clone());
            tools.push((
                "wrk",
                Box::new(move || {
                    let o = std::process::Command::new(&wrk)
                        .args([
                            "-t2",
                            &format!("-c{conns}"),
                            &format!("-d{secs}s"),
                            "-s",
                            &l.display().to_string(),
                            &u,
                        ])
                        .output()?;
                    let text = String::from_utf8_lossy(&o.stdout);
                    text.lines()
                        .find_map(|l| l.strip_prefix("Requests/sec:"))
                        .and_then(|v| v.trim().parse().ok())
                        .context("no Requests/sec in wrk's output")
                }),
            ));
        }
        None => out
            .notes
            .push("wrk not installed (`apt-get install wrk`): its row is missing".into()),
    }
    let mut rps: Vec<Vec<f64>> = vec![Vec::new(); tools.len()];
    for _ in 0..rounds {
        for (i, (_, f)) in tools.iter().enumerate() {
            rps[i].push(f()?);
        }
    }
    let meds: Vec<f64> = rps.iter().map(|v| median(v)).collect();
    let of = |name: &str| tools.iter().position(|(n, _)| *n == name).map(|i| meds[i]);
    for (i, (name, _)) in tools.iter().enumerate() {
        let ratio = if *name == "mcptape load" {
            of("wrk").map(|w| meds[i] / w)
        } else {
            None
        };
        out.rows.push(Row {
            scenario: "load".into(),
            variant: name.to_string(),
            metric: "requests/s",
            value: meds[i],
            unit: "req/s",
            ratio,
        });
    }
    if let Some(o) = of("oha") {
        out.notes
            .push(format!("mcptape load / oha = {:.2}× (goal ≥ 1.0×)", meds[0] / o));
    }
    out.notes.push(format!(
        "requests/s: one `tools/call` per request against `mcptape serve --listen` (release), {conns} connections, {secs} s, median of {rounds}; ratio to wrk (goal ≥ 0.8×)"
    ));

    // Memory: RSS of a long run at 10 s and at the end.
    let long = if quick { 4 } else { 60 };
    let mut child = std::process::Command::new(&mcptape)
        .args([
            "load",
            &cap.display().to_string(),
            "--target",
            &url,
            "--rate",
            "500",
            "-c",
            "32",
        ])
        .args(["--duration", &format!("{long}s")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let early_at = if quick { 1 } else { 10 };
    std::thread::sleep(Duration::from_secs(early_at));
    let early = rss_kib(child.id()).unwrap_or(0);
    std::thread::sleep(Duration::from_secs(long - early_at - 1));
    let late = rss_kib(child.id()).unwrap_or(0);
    let _ = child.wait();
    out.rows.push(Row {
        scenario: "load".into(),
        variant: format!("RSS at {early_at} s"),
        metric: "memory",
        value: early as f64 / 1024.0,
        unit: "MiB",
        ratio: None,
    });
    out.rows.push(Row {
        scenario: "load".into(),
        variant: format!("RSS at {} s", long - 1),
        metric: "memory",
        value: late as f64 / 1024.0,
        unit: "MiB",
        ratio: (early > 0).then(|| late as f64 / early as f64),
    });
    out.notes.push(format!(
        "memory: `mcptape load --rate 500 -c 32` for {long} s; ratio = late / early RSS (goal within 1.1×)"
    ));
    Ok(out)
}

// ---- end to end: soak ----

/// `mcptape record --listen` as a service for `--minutes`: rotation every minute, retention, checks from outside.
fn soak(ctx: &Ctx) -> anyhow::Result<Outcome> {
    let mcptape = mcptape_bin()?;
    let minutes = ctx.minutes.max(1);
    // Retention keeps a few minutes of segments: long enough to see it delete well within the run.
    let retain = Duration::from_secs(if minutes >= 10 { 300 } else { 30 });
    let opts = b::soak::SoakOptions {
        duration: Duration::from_secs(minutes * 60),
        rate: ctx.rate.max(1),
        sessions: 8,
        rotate_every: Duration::from_secs(60),
        retain_age: retain,
        sample_every: Duration::from_secs(10),
    };
    let r = b::soak::run(&mcptape, ctx.scratch.path(), &opts)?;
    let mut out = Outcome::default();
    let row = |metric, value, unit| Row {
        scenario: "soak".into(),
        variant: format!("record --listen, {minutes} min at {} req/s", opts.rate),
        metric,
        value,
        unit,
        ratio: None,
    };
    let settled_at = opts.settled_at().as_secs_f64();
    let settled: Vec<_> = r.samples.iter().filter(|s| s.at_s >= settled_at).collect();
    let warm: Vec<_> = r.samples.iter().filter(|s| s.at_s >= 60.0).collect();
    out.rows.push(row("requests answered", r.requests as f64, "requests"));
    out.rows
        .push(row("segments written and verified", r.segments_seen as f64, "files"));
    out.rows
        .push(row("segments failing verify", r.segments_failed.len() as f64, "files"));
    out.rows
        .push(row("sessions with seq breaks", r.seq_breaks.len() as f64, "sessions"));
    out.rows
        .push(row("tools/call frames recorded", r.calls_recorded as f64, "frames"));
    out.rows.push(row("frames dropped", r.dropped as f64, "frames"));
    out.rows
        .push(row("segments on disk at the end", r.segments_left as f64, "files"));
    if let (Some(first), Some(last)) = (settled.first(), settled.last()) {
        let max = settled.iter().map(|s| s.disk).max().unwrap_or(0);
        out.rows
            .push(row("disk after retention settled", first.disk as f64 / 1024.0, "KiB"));
        out.rows.push(row("disk max after that", max as f64 / 1024.0, "KiB"));
        out.rows.push(row("disk at the end", last.disk as f64 / 1024.0, "KiB"));
    }
    if !opts.judges_flatness() {
        out.notes.push(format!(
            "run shorter than retention ({} s) plus three rotations: disk and RSS flatness not judged",
            opts.retain_age.as_secs()
        ));
    }
    if let (Some(first), Some(last)) = (warm.first(), warm.last()) {
        let max = warm.iter().map(|s| s.rss_kib).max().unwrap_or(0);
        out.rows
            .push(row("RSS after 1 min", first.rss_kib as f64 / 1024.0, "MiB"));
        out.rows.push(row("RSS max", max as f64 / 1024.0, "MiB"));
        out.rows
            .push(row("RSS at the end", last.rss_kib as f64 / 1024.0, "MiB"));
    }
    out.notes.push(format!(
        "{} sessions on keep-alive connections to an in-process upstream, --rotate-every 1m --retain-age {}s; \
         every segment verified with `mcptape dataset verify` as it appeared; disk and RSS sampled every 10 s",
        opts.sessions,
        opts.retain_age.as_secs()
    ));
    let failures = r.failures(&opts);
    if !failures.is_empty() {
        out.failed = true;
        out.notes.push(format!("FAILED: {}", failures.join("; ")));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(number(1_234_567.8), "1,234,568");
        assert_eq!(number(999.4), "999");
        assert_eq!(number(12.34), "12.3");
        assert_eq!(number(0.01234), "0.012");
    }

    #[test]
    fn shell_words_are_quoted_when_needed() {
        assert_eq!(shell_word("--quick"), "--quick");
        assert_eq!(shell_word("a b"), "'a b'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
    }

    #[test]
    fn the_args_parse() {
        use clap::CommandFactory;
        Args::command().debug_assert();
    }
}

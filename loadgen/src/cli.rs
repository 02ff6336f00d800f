//! `mcptape load`: the command line of the load generator.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, ValueEnum};
use mcptape_datasets::Scan;
use mcptape_replayer::cli::parse_header;
use mcptape_replayer::compare::Ignore;
use mcptape_replayer::engine::{Options, Pace};
use mcptape_replayer::link::Target;
use mcptape_replayer::script::scripts;

use crate::report::{RunFacts, build_report};
use crate::run::{Model, Plan, run};
use crate::stats::Recorder;

/// How sessions are picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Mix {
    /// Each recorded session in turn.
    #[default]
    Uniform,
    /// Sessions drawn in proportion to their number of requests.
    Weighted,
}

/// Arrival process of the open model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Arrival {
    /// Evenly spaced.
    #[default]
    Constant,
    /// Exponential gaps (seeded).
    Poisson,
}

/// `mcptape load CAPTURE (--target URL | -- CMD)`: run the recorded sessions at a chosen concurrency (closed model)
/// or arrival rate (open model), with latency per method from the intended send time (coordinated omission
/// corrected) and from the actual send (service time), in HdrHistograms. Exit 0 when the run completed (errors are
/// in the report), 2 on usage errors.
#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Capture file or folder.
    pub capture: PathBuf,
    /// Target URL: Streamable HTTP, legacy /sse or ws://; `{user}` and `{shard}` are replaced per user.
    #[arg(
        long,
        value_name = "URL",
        conflicts_with = "command",
        required_unless_present = "command"
    )]
    pub target: Option<String>,
    /// Closed model: this many users back to back. Open model: at most this many sessions in flight.
    #[arg(long, short = 'c', value_name = "N")]
    pub concurrency: Option<u32>,
    /// Open model: start this many sessions per second.
    #[arg(long, value_name = "R")]
    pub rate: Option<f64>,
    /// Open-model arrivals.
    #[arg(long, value_enum, default_value_t)]
    pub arrival: Arrival,
    /// The measured window.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Or stop after this many sessions in all (all shards together).
    #[arg(long, value_name = "N")]
    pub sessions: Option<u64>,
    /// Ramp users (or the rate) up over this long first; not measured.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pub ramp: Duration,
    /// Then run this long unmeasured.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pub warmup: Duration,
    /// How sessions are picked.
    #[arg(long, value_enum, default_value_t)]
    pub mix: Mix,
    /// max (back to back) or recorded (the recorded gaps within a session).
    #[arg(long, default_value = "max", value_parser = parse_pace)]
    pub pace: Pace,
    /// A header on every HTTP request (repeatable).
    #[arg(long = "header", value_name = "K: V", value_parser = parse_header)]
    pub headers: Vec<(String, String)>,
    /// One credential per line, spread over users: a line `Name: value` is a header, anything else a bearer token.
    #[arg(long, value_name = "FILE")]
    pub tokens: Option<PathBuf>,
    /// Run shard I of N (users and arrivals split deterministically); `--shard env/N` reads I from
    /// JOB_COMPLETION_INDEX (Kubernetes Indexed Jobs).
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
    /// Longest wait for any one answer.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Compare answers with the recording; differences count as `mismatch` errors.
    #[arg(long)]
    pub check: bool,
    /// Seed of Poisson arrivals and weighted picks.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Write the JSON report here.
    #[arg(short = 'o', long = "output", value_name = "REPORT.json")]
    pub output: Option<PathBuf>,
    /// Or a command to spawn per user and speak to over stdio (after `--`); one child per user, reused.
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

fn parse_pace(s: &str) -> Result<Pace, String> {
    match s.parse()? {
        Pace::Scaled(_) => Err(format!("--pace {s:?}: load takes max or recorded")),
        p => Ok(p),
    }
}

/// Parses `I/N` (or `env/N`).
pub fn parse_shard(s: &str) -> anyhow::Result<(u32, u32)> {
    let (i, n) = s
        .split_once('/')
        .with_context(|| format!("--shard {s:?}: expected I/N, e.g. 0/4"))?;
    let n: u32 = n
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .with_context(|| format!("--shard {s:?}: N must be a positive number"))?;
    let i: u32 = if i == "env" {
        let v = std::env::var("JOB_COMPLETION_INDEX").context("--shard env/N: JOB_COMPLETION_INDEX is not set")?;
        v.trim()
            .parse()
            .with_context(|| format!("JOB_COMPLETION_INDEX={v:?}: not a number"))?
    } else {
        i.parse()
            .with_context(|| format!("--shard {s:?}: I must be a number"))?
    };
    anyhow::ensure!(i < n, "--shard {s:?}: I must be below N");
    Ok((i, n))
}

fn read_tokens(path: &PathBuf) -> anyhow::Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // `Name: value` (a header name, a colon and a space) is a header; anything else is a bearer token.
        let is_header = line
            .split_once(": ")
            .is_some_and(|(k, _)| !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
        let header = if is_header {
            parse_header(line).map_err(|e| anyhow::anyhow!("{}:{}: {e}", path.display(), n + 1))?
        } else {
            ("Authorization".to_string(), format!("Bearer {line}"))
        };
        out.push(header);
    }
    anyhow::ensure!(!out.is_empty(), "{}: no credentials", path.display());
    Ok(out)
}

/// Runs `mcptape load`.
pub async fn run_cli(args: LoadArgs) -> anyhow::Result<ExitCode> {
    let shard = args.shard.as_deref().map(parse_shard).transpose()?.unwrap_or((0, 1));
    let model = match (args.rate, args.concurrency) {
        (Some(r), users) => {
            anyhow::ensure!(
                r > 0.0 && r.is_finite(),
                "--rate {r}: must be a positive number of sessions per second"
            );
            Model::Open {
                rate: r,
                poisson: args.arrival == Arrival::Poisson,
                users: users.unwrap_or(64),
            }
        }
        (None, users) => Model::Closed {
            users: users.unwrap_or(1),
        },
    };
    match model {
        Model::Closed { users: 0 } | Model::Open { users: 0, .. } => anyhow::bail!("--concurrency must be at least 1"),
        _ => {}
    }
    let tokens = args.tokens.as_ref().map(read_tokens).transpose()?.unwrap_or_default();
    let frames = Scan::new(std::slice::from_ref(&args.capture))?.frames()?;
    let content_hash = fingerprint_frames(&frames);
    let scripts = scripts(frames);
    let scripts: Vec<_> = scripts.into_iter().filter(|s| !s.steps.is_empty()).collect();
    anyhow::ensure!(
        !scripts.is_empty(),
        "{}: no client sessions to run",
        args.capture.display()
    );
    let base_target = match (&args.target, args.command.is_empty()) {
        (Some(url), _) => Target::from_url(url, args.headers.clone()).map_err(anyhow::Error::msg)?,
        (None, false) => Target::Stdio(args.command.clone()),
        (None, true) => anyhow::bail!("give --target URL or -- CMD"),
    };
    let target_text = base_target.to_string();
    let (shard_i, _) = shard;
    let targets: Arc<dyn Fn(u32) -> Target + Send + Sync> = Arc::new(move |user: u32| {
        let expand = |s: &str| {
            s.replace("{user}", &user.to_string())
                .replace("{shard}", &shard_i.to_string())
        };
        let token = (!tokens.is_empty()).then(|| tokens[user as usize % tokens.len()].clone());
        match &base_target {
            Target::Stdio(cmd) => Target::Stdio(cmd.iter().map(|a| expand(a)).collect()),
            Target::Http { url, headers } => Target::Http {
                url: expand(url),
                headers: with(headers, &token),
            },
            Target::LegacySse { url, headers } => Target::LegacySse {
                url: expand(url),
                headers: with(headers, &token),
            },
            Target::Ws { url, headers } => Target::Ws {
                url: expand(url),
                headers: with(headers, &token),
            },
        }
    });
    let weights: Vec<u64> = scripts.iter().map(|s| s.steps.len().max(1) as u64).collect();
    let total: u64 = weights.iter().sum();
    let n = scripts.len();
    let (mix, seed) = (args.mix, args.seed);
    let pick: Arc<dyn Fn(u64) -> usize + Send + Sync> = Arc::new(move |k: u64| match mix {
        Mix::Uniform => (k % n as u64) as usize,
        Mix::Weighted => {
            // A hash of (seed, k) into the cumulative weights: deterministic per session number.
            let mut x = k.wrapping_add(seed).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            x ^= x >> 31;
            let mut r = x % total;
            weights
                .iter()
                .position(|w| {
                    if r < *w {
                        true
                    } else {
                        r -= w;
                        false
                    }
                })
                .unwrap_or(0)
        }
    });
    let engine = Options {
        pace: args.pace,
        timeout: args.timeout,
        ignore: Ignore::default(),
        diff_limit: 1,
        compare: args.check,
        linger: Duration::ZERO,
        observer: None,
    };
    let start = Instant::now() + Duration::from_millis(20);
    let window_start = start + args.ramp + args.warmup;
    let rec = Arc::new(Recorder::new(window_start, window_start));
    let plan = Plan {
        scripts: Arc::new(scripts),
        pick,
        targets,
        model,
        ramp: args.ramp,
        warmup: args.warmup,
        duration: if args.sessions.is_some() {
            Duration::from_secs(24 * 3600)
        } else {
            args.duration
        },
        sessions: args.sessions,
        shard,
        engine,
        seed: args.seed,
    };
    let progress = std::io::stderr()
        .is_terminal()
        .then(|| spawn_progress(rec.clone(), start));
    let cpu_before = cpu_time();
    let wall = Instant::now();
    let check = run(plan.clone(), rec.clone(), start).await;
    let end = Instant::now();
    if let Some(p) = progress {
        p.abort();
        eprintln!();
    }
    let cpu = cpu_time().saturating_sub(cpu_before);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut warnings = Vec::new();
    if check.late_arrivals > 0 {
        warnings.push(format!(
            "schedule lag: {} session(s) waited more than 100 ms for a free user (worst {:.0} ms); raise --concurrency",
            check.late_arrivals,
            check.worst_wait.as_secs_f64() * 1e3
        ));
    }
    let busy = cpu.as_secs_f64() / wall.elapsed().as_secs_f64().max(1e-9) / cores as f64;
    if busy > 0.9 {
        warnings.push(format!(
            "the load generator used {:.0}% of {cores} core(s): the numbers may be limited by the generator",
            busy * 100.0
        ));
    }
    for w in &warnings {
        eprintln!("mcptape: warning: {w}");
    }
    let rec = Arc::try_unwrap(rec).map_err(|_| anyhow::anyhow!("internal: the recorder is still shared"))?;
    let facts = RunFacts {
        window_start,
        end,
        target: target_text,
        content_hash,
        warnings,
    };
    let report = build_report(&args, &plan, rec, facts);
    eprintln!("mcptape: {}", report.summary_line());
    if let Some(path) = &args.output {
        let json = serde_json::to_vec_pretty(&report)?;
        std::fs::write(path, json).with_context(|| format!("{}: cannot write the report", path.display()))?;
        eprintln!("mcptape: wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn with(headers: &[(String, String)], token: &Option<(String, String)>) -> Vec<(String, String)> {
    let mut h = headers.to_vec();
    if let Some(t) = token {
        h.retain(|(k, _)| !k.eq_ignore_ascii_case(&t.0));
        h.push(t.clone());
    }
    h
}

/// A hash of the capture's messages (what the workload sends), for checking that shard reports belong together.
fn fingerprint_frames(frames: &[mcptape_datasets::Frame]) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for f in frames {
        h.update(f.session_id.as_bytes());
        h.update(f.seq.to_le_bytes());
        h.update(&f.payload);
    }
    h.finalize().iter().take(16).map(|b| format!("{b:02x}")).collect()
}

fn cpu_time() -> Duration {
    use nix::sys::resource::{UsageWho, getrusage};
    getrusage(UsageWho::RUSAGE_SELF)
        .map(|u| {
            let t = |tv: nix::sys::time::TimeVal| Duration::new(tv.tv_sec() as u64, tv.tv_usec() as u32 * 1000);
            t(u.user_time()) + t(u.system_time())
        })
        .unwrap_or_default()
}

fn spawn_progress(rec: Arc<Recorder>, start: Instant) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let live = rec.snapshot();
            eprint!(
                "\r  {:>6.1} s  {:>10.1} req/s  errors {:<8}  p50 {:>9}  p99 {:>9}   ",
                start.elapsed().as_secs_f64(),
                live.rate,
                live.errors,
                human_us(live.p50_us),
                human_us(live.p99_us)
            );
        }
    })
}

fn human_us(us: u64) -> String {
    mcptape_datasets::human::duration_ns(us.saturating_mul(1000))
}

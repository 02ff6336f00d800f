//! `mcptape replay`: the command line of the client-side replay.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, ValueEnum};
use mcptape_datasets::{Filter, Scan};
use mcptape_reports::replay::{Counts, ReplayReport, SCHEMA, SessionReport};

use crate::compare::Ignore;
use crate::engine::{Options, Pace, replay_session};
use crate::link::{Link, Target};
use crate::script::scripts;

/// Report formats on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Format {
    /// Aligned text.
    #[default]
    Text,
    /// Markdown, for a PR comment.
    Md,
    /// The JSON report.
    Json,
}

/// `mcptape replay CAPTURE (--target URL | -- CMD...)`: re-send recorded sessions to a live server and compare
/// its answers with the recorded ones. Exit 0 when everything matched, 1 when anything differed or a session
/// failed, 2 on usage errors.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// Capture file or folder.
    pub capture: PathBuf,
    /// Replay only these sessions (repeatable).
    #[arg(long = "session", value_name = "ID")]
    pub sessions: Vec<String>,
    /// recorded (the recorded gaps), max (as fast as causality allows) or a factor such as 2x.
    #[arg(long, default_value = "max", value_parser = parse_pace)]
    pub pace: Pace,
    /// Leave this JSON pointer out of comparisons; `*` matches one key or index, `**` any depth (repeatable).
    #[arg(long = "ignore", value_name = "POINTER")]
    pub ignore: Vec<String>,
    /// Also ignore fields known to vary between runs (see the README's list).
    #[arg(long)]
    pub ignore_volatile: bool,
    /// Longest wait for any one answer.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Also write the JSON report here.
    #[arg(long, value_name = "FILE.json")]
    pub report: Option<PathBuf>,
    /// Format of the report on stdout.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    /// A header to send on every HTTP request, e.g. live credentials (repeatable). Recorded ones are never sent.
    #[arg(long = "header", value_name = "K: V", value_parser = parse_header)]
    pub headers: Vec<(String, String)>,
    /// The live target: a Streamable HTTP URL, a legacy HTTP+SSE URL (path ending in /sse), or ws://.
    #[arg(
        long,
        value_name = "URL",
        conflicts_with = "command",
        required_unless_present = "command"
    )]
    pub target: Option<String>,
    /// Or a command to spawn and speak to over stdio (after `--`).
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

fn parse_pace(s: &str) -> Result<Pace, String> {
    s.parse()
}

/// Parses `"K: V"`.
pub fn parse_header(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once(':')
        .ok_or_else(|| format!("--header {s:?}: expected \"Name: value\""))?;
    let k = k.trim();
    if k.is_empty() || http::HeaderName::from_bytes(k.as_bytes()).is_err() {
        return Err(format!("--header {s:?}: {k:?} is not a header name"));
    }
    Ok((k.to_string(), v.trim().to_string()))
}

/// Runs `mcptape replay`.
pub async fn run(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let target = match (&args.target, args.command.is_empty()) {
        (Some(url), _) => Target::from_url(url, args.headers.clone()).map_err(anyhow::Error::msg)?,
        (None, false) => Target::Stdio(args.command.clone()),
        (None, true) => anyhow::bail!("give --target URL or -- CMD"),
    };
    let ignore = Ignore::new(&args.ignore, args.ignore_volatile).map_err(anyhow::Error::msg)?;
    let filter = Filter {
        sessions: args.sessions.clone(),
        ..Default::default()
    };
    let frames = Scan::new(std::slice::from_ref(&args.capture))?
        .with_filter(filter)
        .frames()?;
    let scripts = scripts(frames);
    if scripts.is_empty() {
        anyhow::bail!(
            "{}: no sessions to replay{}",
            args.capture.display(),
            if args.sessions.is_empty() {
                ""
            } else {
                " (check --session)"
            }
        );
    }
    let opts = Options {
        pace: args.pace,
        timeout: args.timeout,
        ignore,
        diff_limit: 20,
        compare: true,
        linger: Duration::from_millis(50),
        observer: None,
    };
    let started = Instant::now();
    let mut report = ReplayReport {
        schema: SCHEMA.into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        started: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        capture: vec![args.capture.display().to_string()],
        target: target.to_string(),
        options: [
            ("pace".to_string(), serde_json::json!(format!("{:?}", args.pace))),
            ("ignore".to_string(), serde_json::json!(args.ignore)),
            ("ignore_volatile".to_string(), serde_json::json!(args.ignore_volatile)),
            (
                "timeout_ms".to_string(),
                serde_json::json!(args.timeout.as_millis() as u64),
            ),
        ]
        .into_iter()
        .collect(),
        duration_ms: 0.0,
        totals: Counts::default(),
        methods: Default::default(),
        sessions: Vec::new(),
    };
    for script in &scripts {
        let t = Instant::now();
        let session = match Link::open(&target, script.protocol_version.as_deref()).await {
            Ok(link) => replay_session(script, link, &opts).await,
            Err(e) => SessionReport {
                session: script.session.clone(),
                status: "failed".into(),
                reason: Some(e),
                duration_ms: t.elapsed().as_secs_f64() * 1e3,
                methods: Default::default(),
                notifications: Default::default(),
                diffs: vec![],
            },
        };
        report.sessions.push(session);
    }
    report.duration_ms = started.elapsed().as_secs_f64() * 1e3;
    report.tally();
    if let Some(path) = &args.report {
        let json = serde_json::to_vec_pretty(&report)?;
        std::fs::write(path, json).with_context(|| format!("{}: cannot write the report", path.display()))?;
    }
    let out = match args.format {
        Format::Text => report.to_text(),
        Format::Md => report.to_markdown(),
        Format::Json => serde_json::to_string_pretty(&report)? + "\n",
    };
    std::io::stdout().write_all(out.as_bytes())?;
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

//! `mcptape record`: the command line of the tap.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use mcptape_datasets::cli::RedactionArgs;
use mcptape_datasets::{CaptureMeta, Transport, WriterOptions};

use crate::log::Log;
use crate::paths;
use crate::stdio::{self, Shutdown};
use crate::tap::{SessionTap, Tap, TapConfig};

/// `mcptape record [OPTIONS] -- CMD [ARGS...]`: run an MCP server over stdio and record the session.
///
/// Put it where your MCP client starts the server: the server command becomes
/// `mcptape record --out DIR -- <server command...>`. stdin and stdout are relayed byte for byte; mcptape's own
/// messages go to stderr (or --log FILE). Exits with the server's exit status; 127/126 when it cannot start.
#[derive(Debug, Args)]
pub struct RecordArgs {
    /// Capture folder (created 0700). Default: $XDG_DATA_HOME/mcptape/captures or ~/.local/share/mcptape/captures.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Label at the start of the capture's file names. Default: the server's name.
    #[arg(long, value_name = "LABEL")]
    pub name: Option<String>,
    /// Never drop a frame: slow the traffic down instead when the writer falls behind.
    #[arg(long)]
    pub lossless: bool,
    /// Write mcptape's log lines to FILE instead of stderr.
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
    #[command(flatten)]
    pub redaction: RedactionArgs,
    /// After the client closes stdin, how long the server has to exit before SIGTERM (then SIGKILL as long again).
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = humantime::parse_duration)]
    pub grace: Duration,
    /// Messages longer than this many bytes are recorded in parts (memory stays bounded).
    #[arg(long, value_name = "BYTES", default_value_t = 64 << 20)]
    pub max_frame: usize,
    /// The server command and its arguments, after `--` (the `--` may be left out: some clients mangle it).
    /// Everything from CMD on belongs to the server.
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub command: Vec<OsString>,
}

/// Runs `mcptape record`.
pub async fn run(args: RecordArgs) -> anyhow::Result<ExitCode> {
    let log = match &args.log {
        Some(p) => Log::file(p).with_context(|| format!("{}: cannot open log file", p.display()))?,
        None => Log::stderr(),
    };
    let out = match &args.out {
        Some(d) => d.clone(),
        None => paths::default_capture_dir().context("no --out given and no HOME to put captures under")?,
    };
    let rules = args.redaction.rules();
    let signals = stdio::Signals::install();
    // Start the server first: if it cannot start, nothing is written.
    let spawned = match stdio::spawn(&args.command) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("mcptape record: {e}");
            return Ok(ExitCode::from(e.exit_code()));
        }
    };
    let name = args
        .name
        .as_deref()
        .map(paths::sanitize)
        .unwrap_or_else(|| paths::label_for(&spawned.command));
    let mut meta = CaptureMeta::new("stdio", &spawned.command.join(" "));
    meta.name = name.clone();
    meta.redaction = rules.describe();
    let mut config = TapConfig::new(WriterOptions::new(&out, name, meta), rules);
    config.lossless = args.lossless;
    let (tap, writer) = match Tap::start(config, log.clone()) {
        Ok(t) => t,
        Err(e) => {
            spawned.kill();
            return Err(e).context("cannot start the capture");
        }
    };
    let session = SessionTap::new(tap.clone(), stdio::session_id(), Transport::Stdio);
    let shutdown = Shutdown {
        grace: args.grace,
        kill_after: args.grace,
        ..Shutdown::default()
    };
    let outcome = stdio::relay(spawned, session, args.max_frame, shutdown, signals, log.clone()).await;
    tap.shutdown();
    drop(tap);
    let summary = tokio::task::spawn_blocking(move || writer.finish())
        .await
        .context("capture writer")?;
    let paths: Vec<String> = summary.segments.iter().map(|p| p.display().to_string()).collect();
    // Always on stderr, even with --log: the one line a user looks for.
    eprintln!("mcptape: recorded {} frame(s) to {}", summary.frames, paths.join(", "));
    if summary.dropped > 0 {
        eprintln!(
            "mcptape: {} frame(s) could not be recorded (see the gap frames and the file metadata)",
            summary.dropped
        );
    }
    if let Some(e) = &summary.write_error {
        eprintln!("mcptape: capture write error: {e}");
    }
    Ok(ExitCode::from(outcome.code))
}

//! `mcptape record`: the command line of the tap.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use mcptape_datasets::cli::RedactionArgs;
use mcptape_datasets::{CaptureMeta, Transport, WriterOptions};

use crate::http;
use crate::log::Log;
use crate::paths;
use crate::service::{Service, ServiceArgs};
use crate::stdio::{self, Shutdown};
use crate::tap::{SessionTap, Tap, TapConfig};
use crate::upload::UploadSink;

/// `mcptape record [OPTIONS] -- CMD [ARGS...]` or `mcptape record --listen ADDR --upstream URL [OPTIONS]`.
///
/// stdio: put it where your MCP client starts the server: the server command becomes
/// `mcptape record --out DIR -- <server command...>`. stdin and stdout are relayed byte for byte; mcptape's own
/// messages go to stderr (or --log FILE). Exits with the server's exit status; 127/126 when it cannot start.
///
/// HTTP, SSE, WebSocket: `--listen` makes it a reverse proxy for the `--upstream` endpoint; point the client at
/// the printed address instead. Runs until SIGINT/SIGTERM, then finishes the capture and exits 0.
///
/// Unix sockets: `--listen unix:PATH --upstream unix:PATH` relays newline-delimited JSON-RPC (the stdio framing);
/// each connection is a session.
#[derive(Debug, Args)]
pub struct RecordArgs {
    /// Read flags from a TOML file: each key is a flag's long name (`rotate-every = "1m"`, `lossless = true`,
    /// `command = ["npx", "server"]`); flags given on the command line win. Unknown keys are an error.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Capture folder (created 0700). Default: $XDG_DATA_HOME/mcptape/captures or ~/.local/share/mcptape/captures.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Label at the start of the capture's file names. Default: the server's name.
    #[arg(long, value_name = "LABEL")]
    pub name: Option<String>,
    /// Never drop a frame: slow the traffic down instead when the writer falls behind.
    #[arg(long)]
    pub lossless: bool,
    /// Memory the queue between the traffic and the capture writer may hold (`64MiB`, `1GiB`). A burst the
    /// writer cannot keep up with waits there; beyond it frames are dropped and counted (with --lossless the
    /// traffic waits instead).
    #[arg(long, value_name = "SIZE", default_value = "256MiB", value_parser = crate::service::parse_size)]
    pub queue_max: u64,
    /// Write mcptape's log lines to FILE instead of stderr.
    #[arg(long, value_name = "FILE")]
    pub log: Option<PathBuf>,
    #[command(flatten)]
    pub redaction: RedactionArgs,
    #[command(flatten)]
    pub service: ServiceArgs,
    /// After the client closes stdin, how long the server has to exit before SIGTERM (then SIGKILL as long again).
    /// With --listen: after SIGINT/SIGTERM, how long open exchanges (event streams included) have to finish.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = humantime::parse_duration)]
    pub grace: Duration,
    /// Messages longer than this many bytes are recorded in parts (memory stays bounded).
    #[arg(long, value_name = "BYTES", default_value_t = 64 << 20)]
    pub max_frame: usize,
    /// Record a remote server or gateway: listen on ADDR (PORT, HOST:PORT or [V6]:PORT; the host defaults to
    /// 127.0.0.1, port 0 picks a free one) as a reverse proxy for --upstream. The bound address is printed on
    /// stderr as `mcptape: listening on http://HOST:PORT`. `unix:PATH` listens on a unix socket (0600) and
    /// relays NDJSON to `--upstream unix:PATH`.
    #[arg(
        long,
        value_name = "ADDR",
        requires = "upstream",
        conflicts_with = "command",
        help_heading = "HTTP tap"
    )]
    pub listen: Option<String>,
    /// The MCP endpoint --listen forwards to: an http://, https://, ws:// or wss:// URL, or unix:PATH.
    #[arg(long, value_name = "URL", requires = "listen", help_heading = "HTTP tap")]
    pub upstream: Option<String>,
    /// Allow --listen and --metrics on an address other machines can reach (a warning is logged).
    #[arg(long, help_heading = "HTTP tap")]
    pub allow_remote: bool,
    /// Largest request body accepted from a client (413 beyond).
    #[arg(long, value_name = "BYTES", default_value_t = 16 << 20, help_heading = "HTTP tap")]
    pub max_body: usize,
    /// Time a client has to send a request's headers; also how long an idle kept-alive connection stays open.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration, help_heading = "HTTP tap")]
    pub header_timeout: Duration,
    /// Longest pause while a client sends a request body (408 beyond). Responses have no time limit: event
    /// streams stay open as long as both ends keep them.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration, help_heading = "HTTP tap")]
    pub idle_timeout: Duration,
    /// Time to connect to the upstream, TLS included (then 502).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration, help_heading = "HTTP tap")]
    pub connect_timeout: Duration,
    /// Client connections served at once; more wait in the listen backlog.
    #[arg(long, value_name = "N", default_value_t = 10_000, help_heading = "HTTP tap")]
    pub max_connections: usize,
    /// Requests without Mcp-Session-Id (the stateless 2026-07-28 era) are grouped per client (peer IP,
    /// Authorization, User-Agent); a client silent this long starts a new session.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration, help_heading = "HTTP tap")]
    pub stateless_gap: Duration,
    /// The server command and its arguments, after `--` (the `--` may be left out: some clients mangle it).
    /// Everything from CMD on belongs to the server.
    #[arg(
        required_unless_present = "listen",
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub command: Vec<OsString>,
}

/// Runs `mcptape record`.
pub async fn run(args: RecordArgs) -> anyhow::Result<ExitCode> {
    survive_file_size_limit();
    let log = match &args.log {
        Some(p) => Log::file(p).with_context(|| format!("{}: cannot open log file", p.display()))?,
        None => Log::stderr(),
    };
    args.service.validate()?;
    if let Some(listen) = &args.listen {
        if let Some(path) = crate::unix::parse(listen) {
            return run_unix(path, args, log).await;
        }
        return run_http(args, log).await;
    }
    let out = out_dir(&args)?;
    let rules = args.redaction.rules();
    let rotating = args.service.rotation().enabled();
    // With rotation on, SIGHUP rotates the capture; otherwise it is forwarded to the child like the others.
    let signals = if rotating {
        stdio::Signals::install_without_hup()
    } else {
        stdio::Signals::install()
    };
    let metrics = Service::bind(&args.service, args.allow_remote).await?;
    let upload = UploadSink::start(&args.service, &out)?;
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
    config.queue_bytes = usize::try_from(args.queue_max).unwrap_or(usize::MAX);
    args.service.apply(&mut config);
    if let Some(u) = &upload {
        config.sink = Some(u.handle());
    }
    let (tap, writer) = match Tap::start(config, log.clone()) {
        Ok(t) => t,
        Err(e) => {
            spawned.kill();
            return Err(e).context("cannot start the capture");
        }
    };
    let service = Service::start(metrics, &tap, rotating, &log);
    let session = SessionTap::new(tap.clone(), stdio::session_id(), Transport::Stdio);
    let ended = session.clone();
    let shutdown = Shutdown {
        grace: args.grace,
        kill_after: args.grace,
        ..Shutdown::default()
    };
    let outcome = stdio::relay(spawned, session, args.max_frame, shutdown, signals, log.clone()).await;
    ended.end();
    service.stop().await;
    finish(tap, writer).await?;
    finish_upload(upload, args.grace).await;
    Ok(ExitCode::from(outcome.code))
}

/// Under a file-size limit (`ulimit -f`, RLIMIT_FSIZE) a write past it raises SIGXFSZ, whose default action kills
/// the process, and the traffic with it. With a handler installed the write fails with EFBIG instead, which the
/// writer reports and counts like a full disk. (The child's own disposition is reset to the default at exec.)
fn survive_file_size_limit() {
    use tokio::signal::unix::{SignalKind, signal};
    // tokio keeps the handler installed after the stream is dropped; the signal is then simply ignored.
    let _ = signal(SignalKind::from_raw(nix::sys::signal::Signal::SIGXFSZ as i32));
}

fn out_dir(args: &RecordArgs) -> anyhow::Result<PathBuf> {
    match &args.out {
        Some(d) => Ok(d.clone()),
        None => paths::default_capture_dir().context("no --out given and no HOME to put captures under"),
    }
}

/// `record --listen ADDR --upstream URL`: the HTTP tap. Runs until SIGINT/SIGTERM, exits 0; SIGHUP rotates.
async fn run_http(args: RecordArgs, log: Log) -> anyhow::Result<ExitCode> {
    let stop = http::shutdown_signal();
    let listen = http::parse_listen(args.listen.as_deref().unwrap_or_default()).map_err(anyhow::Error::msg)?;
    let upstream = http::Upstream::parse(args.upstream.as_deref().unwrap_or_default()).map_err(anyhow::Error::msg)?;
    if !listen.ip().is_loopback() {
        anyhow::ensure!(
            args.allow_remote,
            "--listen {listen}: not a loopback address; add --allow-remote to accept connections from other machines"
        );
        log.line(&format!(
            "warning: listening on {listen} (--allow-remote): whoever reaches it can use {} through the tap, and is recorded",
            upstream.display()
        ));
    }
    let out = out_dir(&args)?;
    let rules = args.redaction.rules();
    let listener = http::bind(listen, &log).await?;
    let metrics = Service::bind(&args.service, args.allow_remote).await?;
    let name = args
        .name
        .as_deref()
        .map(paths::sanitize)
        .unwrap_or_else(|| paths::sanitize(&upstream.label()));
    let mut meta = CaptureMeta::new(if upstream.is_ws() { "ws" } else { "http" }, &upstream.display());
    meta.name = name.clone();
    meta.redaction = rules.describe();
    let mut config = TapConfig::new(WriterOptions::new(&out, name, meta), rules.clone());
    config.lossless = args.lossless;
    config.queue_bytes = usize::try_from(args.queue_max).unwrap_or(usize::MAX);
    config.poll_writer = true;
    let upload = production(&args, &mut config, &out)?;
    let (tap, writer) = Tap::start(config, log.clone()).context("cannot start the capture")?;
    let service = Service::start(metrics, &tap, true, &log);
    let opts = http::HttpOptions {
        listen,
        upstream,
        limits: http::Limits {
            max_body: args.max_body,
            max_frame: args.max_frame,
            header_timeout: args.header_timeout,
            idle_timeout: args.idle_timeout,
            connect_timeout: args.connect_timeout,
            max_connections: args.max_connections,
            stateless_gap: args.stateless_gap,
            drain: args.grace,
        },
        lossless: args.lossless,
        rules,
    };
    let served = http::serve(listener, opts, tap.clone(), log, stop).await;
    service.stop().await;
    finish(tap, writer).await?;
    finish_upload(upload, args.grace).await;
    served?;
    Ok(ExitCode::SUCCESS)
}

/// `record --listen unix:PATH --upstream unix:PATH`: NDJSON over unix sockets. Runs until SIGINT/SIGTERM, exits 0;
/// SIGHUP rotates.
async fn run_unix(listen: PathBuf, args: RecordArgs, log: Log) -> anyhow::Result<ExitCode> {
    let stop = http::shutdown_signal();
    let upstream_arg = args.upstream.as_deref().unwrap_or_default();
    let upstream = crate::unix::parse(upstream_arg).with_context(|| {
        format!("--upstream {upstream_arg}: with --listen unix:PATH the upstream must be unix:PATH too")
    })?;
    let out = out_dir(&args)?;
    let rules = args.redaction.rules();
    let listener = crate::unix::bind(&listen)?;
    let metrics = Service::bind(&args.service, args.allow_remote).await?;
    let name = args.name.as_deref().map(paths::sanitize).unwrap_or_else(|| {
        let file = upstream.file_name().map(|f| f.to_string_lossy().into_owned());
        paths::sanitize(&file.unwrap_or_else(|| "unix".into()))
    });
    let mut meta = CaptureMeta::new("unix", &format!("unix:{}", upstream.display()));
    meta.name = name.clone();
    meta.redaction = rules.describe();
    let mut config = TapConfig::new(WriterOptions::new(&out, name, meta), rules);
    config.lossless = args.lossless;
    config.queue_bytes = usize::try_from(args.queue_max).unwrap_or(usize::MAX);
    let upload = production(&args, &mut config, &out)?;
    let (tap, writer) = match Tap::start(config, log.clone()) {
        Ok(t) => t,
        Err(e) => {
            let _ = std::fs::remove_file(&listen);
            return Err(e).context("cannot start the capture");
        }
    };
    let service = Service::start(metrics, &tap, true, &log);
    let opts = crate::unix::UnixOptions {
        listen,
        upstream,
        max_frame: args.max_frame,
        grace: args.grace,
    };
    let served = crate::unix::serve(listener, opts, tap.clone(), log, stop).await;
    service.stop().await;
    finish(tap, writer).await?;
    finish_upload(upload, args.grace).await;
    served?;
    Ok(ExitCode::SUCCESS)
}

/// Rotation, sampling and the uploader, as the flags ask.
fn production(args: &RecordArgs, config: &mut TapConfig, out: &Path) -> anyhow::Result<Option<Arc<UploadSink>>> {
    args.service.apply(config);
    let upload = UploadSink::start(&args.service, out)?;
    if let Some(u) = &upload {
        config.sink = Some(u.handle());
    }
    Ok(upload)
}

/// Gives the uploader `grace` to send what is left, and says how it went.
async fn finish_upload(upload: Option<Arc<UploadSink>>, grace: Duration) {
    if let Some(u) = upload {
        if let Some(stats) = u.finish(grace).await {
            eprintln!("{}", crate::upload::summary(&stats));
        }
    }
}

/// Closes the tap, waits for the writer, and says where the capture is.
async fn finish(tap: Tap, writer: crate::tap::TapWriter) -> anyhow::Result<()> {
    tap.shutdown();
    drop(tap);
    let summary = tokio::task::spawn_blocking(move || writer.finish())
        .await
        .context("capture writer")?;
    // Always on stderr, even with --log: the one line a user looks for.
    if summary.rotating {
        eprintln!(
            "mcptape: recorded {} frame(s) in {} segment(s) under {}",
            summary.frames,
            summary.segment_count,
            summary.dir.display()
        );
    } else {
        let paths: Vec<String> = summary.segments.iter().map(|p| p.display().to_string()).collect();
        eprintln!("mcptape: recorded {} frame(s) to {}", summary.frames, paths.join(", "));
    }
    if summary.dropped > 0 {
        eprintln!(
            "mcptape: {} frame(s) could not be recorded (see the gap frames and the file metadata)",
            summary.dropped
        );
    }
    if let Some(e) = &summary.write_error {
        eprintln!("mcptape: capture write error: {e}");
    }
    Ok(())
}

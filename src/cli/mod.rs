//! The command frame: clap definitions of every `mcptape` command and the dispatch to the crate that owns it.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use mcptape_datasets::cli::DatasetArgs;

mod demo;

/// Record, replay, impersonate and load-test MCP (Model Context Protocol) traffic.
///
/// Captures are Parquet files (one row per JSON-RPC message or lifecycle event) that DuckDB, pyarrow or Spark read
/// directly. Exit codes: 0 success, 1 a check failed (damage, differences, regressions), 2 an error.
#[derive(Debug, Parser)]
#[command(name = "mcptape", version, max_term_width = 120)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Capture MCP traffic through a transparent tap: `mcptape record --out DIR -- SERVER_CMD...` (stdio) or
    /// `mcptape record --listen ADDR --upstream URL` (HTTP, SSE, WebSocket).
    #[command(args_override_self = true)]
    Record(Box<mcptape_recorder::RecordArgs>),
    /// Re-send recorded sessions to a live server and diff the answers: `mcptape replay CAPTURE -- SERVER_CMD...`.
    Replay(mcptape_replayer::ReplayArgs),
    /// Answer as a recorded server did: `mcptape serve CAPTURE (--stdio | --listen ADDR)`.
    Serve(mcptape_replayer::ServeArgs),
    /// Load-test a server or gateway with recorded sessions: `mcptape load CAPTURE --target URL -c 16`.
    Load(mcptape_loadgen::LoadArgs),
    /// Show, merge, compare (a CI gate) and plot load and replay reports: `mcptape report compare --baseline A
    /// --candidate B`.
    Report(mcptape_reports::ReportArgs),
    /// Read, summarise, check, recover, export and import captures.
    Dataset(DatasetArgs),
    /// Run the whole loop offline on the embedded sample: serve, record (stdio and HTTP), replay, load at two
    /// concurrencies, compare, and draw the HTML report: `mcptape demo [--out DIR]`.
    Demo(demo::DemoArgs),
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Dataset(args) => mcptape_datasets::cli::run(args).await,
        Command::Record(args) => mcptape_recorder::run(*args).await,
        Command::Replay(args) => mcptape_replayer::run(args).await,
        Command::Serve(args) => mcptape_replayer::serve(args).await,
        Command::Load(args) => mcptape_loadgen::run(args).await,
        Command::Demo(args) => demo::run(args).await,
        Command::Report(args) => mcptape_reports::cli::run(args).await,
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Parses the command line, runs the command, and maps its outcome to an exit code.
pub fn main() -> ExitCode {
    // `record --config FILE` stands for flags placed before the command line's (which therefore win).
    let argv = match mcptape_recorder::config::expand(std::env::args_os().collect()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("mcptape: {}", format!("{e:#}").replace('\n', " "));
            return ExitCode::from(2);
        }
    };
    let cli = Cli::parse_from(argv);
    // The HTTP tap is a proxy: one thread (as nginx runs one worker) keeps a request, its upstream connection and
    // its answer on the same thread, without cross-thread wake-ups on every hop.
    let proxy = matches!(&cli.command, Command::Record(a) if a.listen.is_some());
    let mut builder = if proxy {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mcptape: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: `{:#}` joins the context chain with ": ".
            eprintln!("mcptape: {}", format!("{e:#}").replace('\n', " "));
            ExitCode::from(2)
        }
    }
}

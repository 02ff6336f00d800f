//! `mcptape serve`: answer as a recorded server did, for testing clients and gateways without the real backend,
//! and as the embedded default target of the demo and of load tests.

pub mod book;
pub mod core;
pub mod http;
pub mod stdio;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use mcptape_datasets::Scan;

use self::book::Book;
use self::core::{Faults, Server, parse_stall};

/// `mcptape serve CAPTURE (--stdio | --listen ADDR)`: answer each request with the recorded answer to the same
/// method and params (repeats in recorded order), with the recorded notifications first.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Capture file or folder.
    pub capture: PathBuf,
    /// Serve over stdin/stdout (NDJSON).
    #[arg(long, conflicts_with = "listen", required_unless_present = "listen")]
    pub stdio: bool,
    /// Serve Streamable HTTP on this address (port 0 picks one; the address is printed on stderr).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Allow a non-loopback --listen address.
    #[arg(long)]
    pub allow_remote: bool,
    /// Time a client has to send a request's headers (then the connection is closed); also how long an idle
    /// kept-alive connection stays open. Bounds what slow clients (slowloris) can hold.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    pub header_timeout: Duration,
    /// Delay every answer by this much.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pub latency: Duration,
    /// Plus up to this much, uniformly at random.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pub jitter: Duration,
    /// Answer this fraction of requests with a JSON-RPC error (-32603) instead.
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    pub error_rate: f64,
    /// Pause all answers for FOR every EVERY, e.g. 10s:1s.
    #[arg(long, value_name = "EVERY:FOR", value_parser = parse_stall)]
    pub stall: Option<(Duration, Duration)>,
    /// Unknown requests (same method, other params) get an error instead of the nearest recorded answer.
    #[arg(long)]
    pub strict: bool,
    /// Seed of the fault injection's random numbers.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("--error-rate {s:?}: expected a number between 0 and 1"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("--error-rate {s:?}: expected a number between 0 and 1"))
    }
}

/// Runs `mcptape serve`.
pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let mut frames = Scan::new(std::slice::from_ref(&args.capture))?.frames()?;
    frames.sort_by(|a, b| (a.session_id.as_str(), a.seq).cmp(&(b.session_id.as_str(), b.seq)));
    let book = Book::from_frames(&frames);
    if book.len == 0 {
        anyhow::bail!("{}: no recorded answers to serve", args.capture.display());
    }
    let answers = book.len;
    let faults = Faults {
        latency: args.latency,
        jitter: args.jitter,
        error_rate: args.error_rate,
        stall: args.stall,
    };
    let server = Arc::new(Server::new(book, faults, args.strict, args.seed));
    if args.stdio {
        stdio::serve(server.clone()).await?;
    } else if let Some(addr) = args.listen {
        let listener = http::bind(addr, args.allow_remote).await?;
        let local = listener.local_addr()?;
        if !addr.ip().is_loopback() {
            eprintln!("mcptape: warning: serving on {local}, reachable from other hosts");
        }
        eprintln!("mcptape: serving {answers} recorded answer(s) on http://{local}/mcp");
        http::serve(server.clone(), listener, args.header_timeout, shutdown_signal()).await;
    }
    let s = server.stats();
    eprintln!(
        "mcptape: served {} exact, {} nearest, {} unknown, {} injected error(s)",
        s.exact, s.nearest, s.unknown, s.injected
    );
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
}

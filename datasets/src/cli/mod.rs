//! `mcptape dataset …`: read, summarise, check, recover, export and import captures.
//!
//! Each subcommand writes its result to the given writer so tests drive it in-process; errors are returned with
//! the file they concern, and the binary prints them on one line.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};

mod filter;
mod har;
mod inspect;
mod jsonl;
mod recover;
mod show;
mod stats;
mod verify;

pub use filter::{TimeBound, parse_time_bound};
pub use har::har;
pub use stats::{Stats, StatsFormat, compute as compute_stats};

pub use jsonl::{JsonFrame, frame_to_json, json_to_frame};

/// Redaction flags, shared by every command that writes captures.
#[derive(Debug, Clone, Args, Default)]
pub struct RedactionArgs {
    /// Keep secrets: apply no redaction at all (captures then hold credentials; see SECURITY notes in the README).
    #[arg(long)]
    pub no_redact: bool,
    /// Also redact this header's value (repeatable).
    #[arg(long = "redact-header", value_name = "NAME")]
    pub redact_headers: Vec<String>,
    /// Also redact the value of this JSON key anywhere in payloads (repeatable; case, `_`, `-`, `.` ignored).
    #[arg(long = "redact-key", value_name = "KEY")]
    pub redact_keys: Vec<String>,
    /// Never redact this JSON key (repeatable), e.g. a field of yours that merely looks like a secret.
    #[arg(long = "keep-key", value_name = "KEY")]
    pub keep_keys: Vec<String>,
    /// Store Mcp-Session-Id as sent instead of hashed.
    #[arg(long)]
    pub keep_session_id: bool,
}

impl RedactionArgs {
    /// The rules these flags describe.
    pub fn rules(&self) -> crate::redact::RedactionRules {
        if self.no_redact {
            return crate::redact::RedactionRules::none();
        }
        let mut r = crate::redact::RedactionRules::default();
        r.headers
            .extend(self.redact_headers.iter().map(|h| h.to_ascii_lowercase()));
        r.keys.extend(self.redact_keys.iter().cloned());
        r.keep_keys.extend(self.keep_keys.iter().cloned());
        if self.keep_session_id {
            r.hashed_headers.retain(|h| h != "mcp-session-id");
        }
        r
    }
}

/// `mcptape dataset`.
#[derive(Debug, Args)]
pub struct DatasetArgs {
    #[command(subcommand)]
    pub command: DatasetCommand,
}

/// Output format of `inspect`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum SummaryFormat {
    /// Aligned text for a terminal.
    #[default]
    Text,
    /// One JSON object.
    Json,
}

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// One JSON object per frame, one per line.
    Jsonl,
    /// HAR 1.2 (HTTP captures only): one entry per HTTP exchange, headers as stored (redacted).
    Har,
}

/// The dataset subcommands.
#[derive(Debug, Subcommand)]
pub enum DatasetCommand {
    /// Sessions, frames, bytes, time span, protocol versions, per-method counts and latency p50/p99.
    Inspect {
        /// Capture files or folders.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: SummaryFormat,
    },
    /// A readable transcript: time offset, direction, kind, method, id, shortened payload.
    Show {
        /// A capture file or folder.
        path: PathBuf,
        /// Only these sessions (repeatable).
        #[arg(long = "session", value_name = "ID")]
        sessions: Vec<String>,
        /// Payload characters shown per frame (0 = whole payload).
        #[arg(long, default_value_t = 120)]
        width: usize,
    },
    /// Turn journals left by a killed recorder into Parquet segments, reporting what was damaged.
    Recover {
        /// A capture folder or journal file.
        path: PathBuf,
    },
    /// Check schema version, readability and seq continuity; exit 1 on damage.
    Verify {
        /// Capture files or folders.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Write the frames that match into a new capture (seq renumbered per session, metadata kept).
    Filter {
        /// Capture files or folders.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Keep these sessions (repeatable).
        #[arg(long = "session", value_name = "ID")]
        sessions: Vec<String>,
        /// Keep this method (repeatable); answers carry their request's method, so they are kept with it.
        #[arg(long = "method", value_name = "M")]
        methods: Vec<String>,
        /// Keep one direction: c2s or s2c.
        #[arg(long, value_name = "c2s|s2c")]
        direction: Option<String>,
        /// Keep frames captured at or after T: RFC 3339, or an offset from the first frame such as +2s.
        #[arg(long, value_name = "T")]
        since: Option<String>,
        /// Keep frames captured before T: RFC 3339, or an offset from the first frame such as +1m30s.
        #[arg(long, value_name = "T")]
        until: Option<String>,
        /// Output Parquet file.
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Per method: counts by kind, payload size p50/p99/max, latency p50/p90/p99/max.
    Stats {
        /// Capture files or folders.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: StatsFormat,
    },
    /// Write frames in another format.
    Export {
        /// Capture files or folders.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Output format.
        #[arg(long, value_enum)]
        format: ExportFormat,
        /// Output file (`-` for stdout).
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Make a capture from JSONL (one frame per line, as `export` writes) or from a pair of NDJSON logs.
    Import {
        /// JSONL file (omit with --c2s/--s2c).
        #[arg(required_unless_present_all = ["c2s", "s2c"], conflicts_with_all = ["c2s", "s2c"])]
        input: Option<PathBuf>,
        /// Client→server NDJSON log (e.g. made with `tee`).
        #[arg(long, requires = "s2c")]
        c2s: Option<PathBuf>,
        /// Server→client NDJSON log.
        #[arg(long, requires = "c2s")]
        s2c: Option<PathBuf>,
        /// Session id for NDJSON imports.
        #[arg(long, default_value = "import")]
        session: String,
        /// Output Parquet file.
        #[arg(short, long)]
        output: PathBuf,
        #[command(flatten)]
        redaction: RedactionArgs,
    },
}

/// Runs a dataset subcommand, writing its output to stdout.
pub async fn run(args: DatasetArgs) -> anyhow::Result<ExitCode> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    run_to(args, &mut out)
}

/// Runs a dataset subcommand, writing its output to `out`.
pub fn run_to(args: DatasetArgs, out: &mut dyn Write) -> anyhow::Result<ExitCode> {
    match args.command {
        DatasetCommand::Inspect { paths, format } => inspect::run(&paths, format, out),
        DatasetCommand::Show { path, sessions, width } => show::run(&path, &sessions, width, out),
        DatasetCommand::Recover { path } => recover::run(&path, out),
        DatasetCommand::Verify { paths } => verify::run(&paths, out),
        DatasetCommand::Export {
            paths,
            format: ExportFormat::Jsonl,
            output,
        } => jsonl::export(&paths, &output, out),
        DatasetCommand::Export {
            paths,
            format: ExportFormat::Har,
            output,
        } => har::export(&paths, &output, out),
        DatasetCommand::Filter {
            paths,
            sessions,
            methods,
            direction,
            since,
            until,
            output,
        } => filter::run(
            &paths,
            &filter::FilterRequest {
                sessions,
                methods,
                direction,
                since,
                until,
            },
            &output,
            out,
        ),
        DatasetCommand::Stats { paths, format } => stats::run(&paths, format, out),
        DatasetCommand::Import {
            input,
            c2s,
            s2c,
            session,
            output,
            redaction,
        } => jsonl::import(
            input.as_deref(),
            c2s.as_deref().zip(s2c.as_deref()),
            &session,
            &output,
            &redaction.rules(),
            out,
        ),
    }
}

//! `mcptape demo`: the whole loop on the embedded sample, with nothing else installed and no network.
//!
//! Every step runs the real command as a child process of this same binary and prints it first, so the demo
//! doubles as a transcript a user can copy. Children's own output goes to `DIR/logs/`, keeping the terminal to
//! one line per step.

use std::ffi::OsString;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use mcptape_reports::LoadReport;

/// A capture of `@modelcontextprotocol/server-everything` over stdio, recorded by mcptape from the official
/// Python SDK client (see datasets/samples/README.md).
const SAMPLE: &[u8] = include_bytes!("../../datasets/samples/everything-stdio.parquet");
const SAMPLE_NAME: &str = "everything-stdio.parquet";

/// Run the whole loop offline: serve a bundled capture, record a session through the tap (stdio and HTTP),
/// replay it, load-test at two concurrencies, compare the two runs and draw the HTML report.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Folder for everything the demo writes (created 0700; existing demo files are replaced).
    #[arg(long, value_name = "DIR", default_value = "mcptape-demo")]
    out: PathBuf,
    /// Length of each of the two load runs.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = humantime_duration)]
    duration: Duration,
    /// The two concurrencies of the load runs: the first is the baseline of the comparison.
    #[arg(long, value_name = "N,M", default_value = "1,4", value_parser = concurrency_pair)]
    concurrency: (u32, u32),
}

fn humantime_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("`{s}`: {e} (like 10s or 500ms)"))?;
    if d.is_zero() {
        return Err("must be more than 0".into());
    }
    Ok(d)
}

fn concurrency_pair(s: &str) -> Result<(u32, u32), String> {
    let bad = || format!("`{s}` is not two concurrencies like 1,4");
    let (a, b) = s.split_once(',').ok_or_else(bad)?;
    let a: u32 = a.trim().parse().map_err(|_| bad())?;
    let b: u32 = b.trim().parse().map_err(|_| bad())?;
    if a == 0 || b == 0 {
        return Err(bad());
    }
    Ok((a, b))
}

/// A background child killed (SIGTERM, then SIGKILL) when dropped, so an error never leaves servers behind.
struct Background {
    child: Child,
    name: &'static str,
}

impl Background {
    /// SIGTERM and wait up to `grace` for a clean exit (the recorder finishes its capture on SIGTERM).
    fn stop(mut self, grace: Duration) -> anyhow::Result<()> {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        loop {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    bail!("{} exited with {status} after SIGTERM (see its log)", self.name);
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{} did not stop within {grace:?} of SIGTERM", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

struct Demo {
    exe: PathBuf,
    out: PathBuf,
    logs: PathBuf,
}

impl Demo {
    /// Prints the command the way a user would type it, from inside the demo folder.
    fn announce(&self, args: &[OsString]) {
        let shown: Vec<String> = args
            .iter()
            .map(|a| {
                let s = a.to_string_lossy();
                if a == self.exe.as_os_str() {
                    "mcptape".to_string()
                } else if s.contains(' ') {
                    format!("'{s}'")
                } else {
                    s.into_owned()
                }
            })
            .collect();
        println!("$ mcptape {}", shown.join(" "));
    }

    fn command(&self, args: &[OsString], log: &str) -> anyhow::Result<Command> {
        let log_path = self.logs.join(log);
        let log_file = open_private(&log_path)?;
        let mut cmd = Command::new(&self.exe);
        cmd.args(args)
            .current_dir(&self.out)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file);
        Ok(cmd)
    }

    /// Runs a step to its end; returns its exit code. Codes other than those in `ok` are an error.
    fn run(&self, args: &[OsString], log: &str, ok: &[i32]) -> anyhow::Result<i32> {
        self.announce(args);
        let status = self
            .command(args, log)?
            .status()
            .with_context(|| format!("cannot start {}", self.exe.display()))?;
        let code = status.code().unwrap_or(-1);
        if !ok.contains(&code) {
            bail!(
                "step failed with {status}; its output is in {}",
                self.logs.join(log).display()
            );
        }
        Ok(code)
    }

    /// Starts a listening step (serve or record --listen) on port 0 and returns it with the URL it printed.
    fn listen(&self, args: &[OsString], log: &str, name: &'static str) -> anyhow::Result<(Background, String)> {
        self.announce(args);
        let log_path = self.logs.join(log);
        let mut log_file = open_private(&log_path)?;
        let mut child = Command::new(&self.exe)
            .args(args)
            .current_dir(&self.out)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", self.exe.display()))?;
        let stderr = child.stderr.take().context("no stderr pipe")?;
        let bg = Background { child, name };
        let (tx, rx) = mpsc::channel();
        // Copies the child's stderr to its log for as long as it runs; the first URL goes back to us.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = writeln!(log_file, "{line}");
                if let Some(url) = line.split_whitespace().find(|w| w.starts_with("http://")) {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(url.to_string());
                    }
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(url) => Ok((bg, url)),
            Err(_) => bail!("{name} printed no address within 20 s; see {}", log_path.display()),
        }
    }
}

fn open_private(path: &Path) -> anyhow::Result<fs::File> {
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("{}: cannot create", path.display()))
}

fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

/// The base URL of a listener, without a trailing path: serve prints `http://HOST:PORT/mcp`, record
/// `http://HOST:PORT`.
fn origin(url: &str) -> &str {
    let rest = url.strip_prefix("http://").unwrap_or(url);
    let end = rest.find('/').map_or(url.len(), |i| i + "http://".len());
    &url[..end]
}

pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    tokio::task::spawn_blocking(move || run_blocking(args)).await?
}

fn run_blocking(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let exe = std::env::current_exe().context("cannot find the mcptape executable")?;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&args.out)
        .with_context(|| format!("{}: cannot create the demo folder", args.out.display()))?;
    let out = fs::canonicalize(&args.out).with_context(|| format!("{}: cannot resolve", args.out.display()))?;
    let logs = out.join("logs");
    let captures = out.join("captures");
    for dir in [&logs, &captures] {
        fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    }
    // A rerun starts from empty capture folders, so every number below is this run's.
    for sub in ["stdio", "http"] {
        let dir = captures.join(sub);
        if dir.exists() {
            fs::remove_dir_all(&dir).with_context(|| format!("{}: cannot clear", dir.display()))?;
        }
    }
    let mut f = open_private(&out.join(SAMPLE_NAME))?;
    f.write_all(SAMPLE).and_then(|_| f.sync_all())?;
    drop(f);
    let demo = Demo {
        exe: exe.clone(),
        out: out.clone(),
        logs,
    };
    let exe_s = exe.to_string_lossy().into_owned();

    println!("mcptape demo: everything goes to {}\n", out.display());

    println!("1. Impersonate the recorded server (the embedded sample capture):");
    let (serve, serve_url) = demo.listen(
        &os(&["serve", SAMPLE_NAME, "--listen", "127.0.0.1:0"]),
        "serve.log",
        "mcptape serve",
    )?;
    println!("   serving on {serve_url}\n");

    println!("2. Record a client session through the tap, over stdio (replay plays the client):");
    demo.run(
        &os(&[
            "replay",
            SAMPLE_NAME,
            "--",
            &exe_s,
            "record",
            "--out",
            "captures/stdio",
            "--name",
            "demo",
            "--",
            &exe_s,
            "serve",
            SAMPLE_NAME,
            "--stdio",
        ]),
        "record-stdio.log",
        &[0],
    )?;
    println!("   and over HTTP, with the tap as a reverse proxy in front of the server:");
    let (recorder, record_url) = demo.listen(
        &os(&[
            "record",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &serve_url,
            "--out",
            "captures/http",
            "--name",
            "demo",
        ]),
        "record-http.log",
        "mcptape record",
    )?;
    let tap_url = format!("{}/mcp", origin(&record_url));
    demo.run(
        &os(&["replay", SAMPLE_NAME, "--target", &tap_url]),
        "record-http-client.log",
        &[0],
    )?;
    recorder.stop(Duration::from_secs(15))?;
    println!();

    println!("3. Replay the new capture against the server and compare every answer:");
    demo.run(
        &os(&["dataset", "inspect", "captures/http", "captures/stdio"]),
        "inspect.txt",
        &[0],
    )?;
    demo.run(
        &os(&[
            "replay",
            "captures/http",
            "--target",
            &serve_url,
            "--report",
            "replay.json",
            "--format",
            "md",
        ]),
        "replay.md",
        &[0],
    )?;
    println!();

    let (c1, c2) = args.concurrency;
    let secs = format!("{}ms", args.duration.as_millis());
    let (base, cand) = (format!("load-c{c1}.json"), format!("load-c{c2}.json"));
    println!("4. Load-test the server with the recorded session, at {c1} then {c2} concurrent users:");
    for (c, report) in [(c1, &base), (c2, &cand)] {
        let c = c.to_string();
        demo.run(
            &os(&[
                "load",
                "captures/http",
                "--target",
                &serve_url,
                "-c",
                &c,
                "--duration",
                &secs,
                "-o",
                report,
            ]),
            &format!("load-c{c}.log"),
            &[0],
        )?;
    }
    println!();

    println!("5. Compare the two runs as a CI gate would, and draw the report:");
    let verdict = demo.run(
        &os(&[
            "report",
            "compare",
            "--baseline",
            &base,
            "--candidate",
            &cand,
            "--any-workload",
            "--format",
            "md",
            "-o",
            "compare.md",
        ]),
        "compare.log",
        &[0, 1],
    )?;
    demo.run(
        &os(&["report", "html", &cand, "--baseline", &base, "-o", "report.html"]),
        "html.log",
        &[0],
    )?;
    serve.stop(Duration::from_secs(10))?;

    let summary_of = |name: &str| -> String {
        let path = out.join(name);
        fs::read_to_string(&path)
            .ok()
            .and_then(|s| serde_json::from_str::<LoadReport>(&s).ok())
            .map(|r| load_line(&r))
            .unwrap_or_else(|| "(unreadable)".into())
    };
    let verdict = if verdict == 0 {
        format!("no regression from {c1} to {c2} users at the default budgets")
    } else {
        format!(
            "{c2} users regress against {c1} at the default budgets (more users on one server usually cost latency)"
        )
    };
    let rows = [
        (
            "captures/stdio/, captures/http/".to_string(),
            "the recorded sessions (Parquet: `mcptape dataset show captures/http`)".to_string(),
        ),
        (
            "replay.json, logs/replay.md".into(),
            "the replay: every answer matched".into(),
        ),
        (base.clone(), summary_of(&base)),
        (cand.clone(), summary_of(&cand)),
        ("compare.md".into(), verdict),
        (
            "report.html".into(),
            "open it in a browser: latency spectrum, latency and throughput over time".into(),
        ),
        ("logs/".into(), "what each command printed".into()),
    ];
    println!(
        "\nDone in {:.0} s. In {}:",
        started.elapsed().as_secs_f64(),
        out.display()
    );
    for (what, says) in rows {
        println!("  {what:<33} {says}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `12345 requests, 1234 req/s, p99 1.20 ms` from a load report.
fn load_line(r: &LoadReport) -> String {
    let t = &r.totals;
    format!(
        "{} requests, {:.0} req/s, {} errors, p99 {:.2} ms",
        t.requests,
        t.throughput_rps,
        t.errors,
        t.corrected.p99_us as f64 / 1e3
    )
}

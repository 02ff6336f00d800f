//! The docs runner: every `docs/*.md` page's ```` ```console ```` blocks are run, so the examples cannot go stale.
//!
//! Convention (shared by every page; see HELPERS.md): in a `console` block, a line starting with `$ ` is a bash
//! command (a trailing `\` continues it on the next line); the non-empty lines after it are expected output, each
//! of which must appear (trimmed, as a substring) in the command's stdout or stderr, except lines that are exactly
//! `...`. A command must exit 0 unless its line ends with `# exit N`. A command ending in ` &` runs in the
//! background until the page ends; when its text names `$PORT` or `$PORT2`, the runner waits (up to 20 s) for that
//! port to accept connections before going on. Each page runs in its own temporary directory, blocks in page order,
//! with `mcptape` (the binary under test) first on PATH, and `$SAMPLES`, `$FIXTURES`, `$PORT`, `$PORT2` set.
//! Blocks fenced `sh`, `text`, `json`, … are not run. A page without a `console` block fails, and so does an info
//! string that mentions `console` but is not exactly it (a typo would silently skip the examples).

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::free_port;

/// Longest a foreground command may run.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(90);

#[derive(Debug, Clone, PartialEq)]
struct Step {
    line: usize,
    command: String,
    expect_exit: i32,
    background: bool,
    expected: Vec<String>,
}

/// The runnable steps of a page, or why the page is malformed.
fn parse(text: &str) -> Result<Vec<Step>, String> {
    let mut steps = Vec::new();
    let mut blocks = 0;
    let mut lines = text.lines().enumerate().peekable();
    while let Some((i, line)) = lines.next() {
        let trimmed = line.trim_start();
        let Some(info) = trimmed.strip_prefix("```") else {
            continue;
        };
        let fence = format!("```{}", info.chars().take_while(|c| *c == '`').collect::<String>());
        let info = info.trim_start_matches('`').trim();
        let runnable = info == "console";
        let word = info.split([' ', ',', '{']).next().unwrap_or("").to_ascii_lowercase();
        if !runnable && (info.to_ascii_lowercase().contains("console") || edit_distance(&word, "console") <= 2) {
            return Err(format!(
                "line {}: info string {info:?} is not `console`: the block would not run",
                i + 1
            ));
        }
        // Read to the closing fence.
        let mut body: Vec<(usize, &str)> = Vec::new();
        let mut closed = false;
        for (j, l) in lines.by_ref() {
            if l.trim_start().starts_with(&fence) && l.trim().trim_start_matches('`').is_empty() {
                closed = true;
                break;
            }
            body.push((j + 1, l));
        }
        if !closed {
            return Err(format!("line {}: code block never closed", i + 1));
        }
        if !runnable {
            continue;
        }
        blocks += 1;
        let mut it = body.into_iter();
        let mut current: Option<Step> = None;
        while let Some((n, l)) = it.next() {
            if let Some(cmd) = l.strip_prefix("$ ") {
                if let Some(s) = current.take() {
                    steps.push(s);
                }
                let mut command = cmd.to_string();
                // Kept as written: bash itself joins `\` + newline.
                while command.ends_with('\\') {
                    match it.next() {
                        Some((_, next)) => {
                            command.push('\n');
                            command.push_str(next);
                        }
                        None => return Err(format!("line {n}: command continues past the block")),
                    }
                }
                let mut expect_exit = 0;
                let mut cmdline = command.trim_end().to_string();
                if let Some(pos) = cmdline.rfind("# exit ") {
                    let code = cmdline[pos + 7..].trim();
                    expect_exit = code
                        .parse()
                        .map_err(|_| format!("line {n}: `# exit {code}` is not a number"))?;
                    cmdline = cmdline[..pos].trim_end().to_string();
                }
                let background = cmdline.ends_with(" &");
                if background {
                    cmdline.truncate(cmdline.len() - 2);
                }
                current = Some(Step {
                    line: n,
                    command: cmdline,
                    expect_exit,
                    background,
                    expected: Vec::new(),
                });
            } else if !l.trim().is_empty() {
                match current.as_mut() {
                    Some(s) if s.background => {
                        return Err(format!("line {n}: output expected from a background command"));
                    }
                    Some(s) => {
                        if l.trim() != "..." {
                            s.expected.push(l.trim().to_string());
                        }
                    }
                    None => return Err(format!("line {n}: output before any `$ ` command")),
                }
            }
        }
        if let Some(s) = current.take() {
            steps.push(s);
        }
    }
    if blocks == 0 {
        return Err("no ```console block: nothing on this page is run (check the info strings)".into());
    }
    if steps.is_empty() {
        return Err("```console blocks hold no `$ ` command".into());
    }
    Ok(steps)
}

/// Levenshtein distance, to catch `consle`, `consoel` and friends.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

struct Background(Vec<Child>);

impl Drop for Background {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let pg = nix::unistd::Pid::from_raw(c.id() as i32);
            let _ = nix::sys::signal::killpg(pg, nix::sys::signal::Signal::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for c in &mut self.0 {
            while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let pg = nix::unistd::Pid::from_raw(c.id() as i32);
            let _ = nix::sys::signal::killpg(pg, nix::sys::signal::Signal::SIGKILL);
            let _ = c.wait();
        }
    }
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn shell(dir: &Path, env: &[(&str, String)], command: &str) -> Command {
    let mut c = Command::new("bash");
    c.args(["-c", command]).current_dir(dir).process_group(0);
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

/// Runs one page; returns the first failure as a readable message.
fn run_page(page: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(page).map_err(|e| e.to_string())?;
    let steps = parse(&text)?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_mcptape")).parent().unwrap().to_path_buf();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let (port, port2) = (free_port(), free_port());
    let env = [
        ("PATH", path),
        ("SAMPLES", root().join("datasets/samples").display().to_string()),
        ("FIXTURES", root().join("tests/fixtures").display().to_string()),
        ("PORT", port.to_string()),
        ("PORT2", port2.to_string()),
    ];
    let mut background = Background(Vec::new());
    for step in steps {
        let at = format!("line {}: `{}`", step.line, step.command);
        if step.background {
            let child = shell(dir.path(), &env, &step.command)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("{at}: {e}"))?;
            background.0.push(child);
            let c = &step.command;
            let uses2 = c.contains("$PORT2") || c.contains("${PORT2}");
            let rest = c.replace("$PORT2", "").replace("${PORT2}", "");
            let uses1 = rest.contains("$PORT") || rest.contains("${PORT}");
            for (uses, p) in [(uses1, port), (uses2, port2)] {
                if uses {
                    wait_for_port(p).map_err(|e| format!("{at}: {e}"))?;
                }
            }
            continue;
        }
        let mut child = shell(dir.path(), &env, &step.command)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("{at}: {e}"))?;
        // Drain both pipes on threads so a chatty command cannot block.
        let mut so = child.stdout.take().unwrap();
        let mut se = child.stderr.take().unwrap();
        let t1 = std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = so.read_to_end(&mut s);
            s
        });
        let t2 = std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = se.read_to_end(&mut s);
            s
        });
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        let status = loop {
            if let Some(s) = child.try_wait().map_err(|e| e.to_string())? {
                break s;
            }
            if Instant::now() > deadline {
                let pg = nix::unistd::Pid::from_raw(child.id() as i32);
                let _ = nix::sys::signal::killpg(pg, nix::sys::signal::Signal::SIGKILL);
                let _ = child.wait();
                return Err(format!("{at}: still running after {COMMAND_TIMEOUT:?}"));
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let output = format!(
            "{}{}",
            String::from_utf8_lossy(&t1.join().unwrap()),
            String::from_utf8_lossy(&t2.join().unwrap())
        );
        if status.code() != Some(step.expect_exit) {
            return Err(format!(
                "{at}: exit {:?}, expected {}; output:\n{output}",
                status.code(),
                step.expect_exit
            ));
        }
        for e in &step.expected {
            if !output.contains(e.as_str()) {
                return Err(format!("{at}: expected output line {e:?} not found in:\n{output}"));
            }
        }
    }
    Ok(())
}

fn wait_for_port(port: u16) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err(format!("nothing listens on port {port} after 20 s"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn pages() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root().join("docs"))
        .expect("docs/ exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    v.sort();
    v
}

#[test]
fn every_docs_page_runs_as_written() {
    let pages = pages();
    assert!(!pages.is_empty(), "no docs/*.md pages");
    // Pages in parallel, two at a time (the machine has two cores).
    let failures: Vec<String> = std::thread::scope(|s| {
        let chunks: Vec<Vec<PathBuf>> = (0..2)
            .map(|k| pages.iter().skip(k).step_by(2).cloned().collect())
            .collect();
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                s.spawn(move || {
                    chunk
                        .iter()
                        .filter_map(|p| {
                            run_page(p)
                                .err()
                                .map(|e| format!("{}: {e}", p.strip_prefix(root()).unwrap_or(p).display()))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn the_runner_parses_commands_outputs_exits_and_background() {
    let page = "text\n```console\n$ echo hi\nhi\n...\n$ false # exit 1\n$ sleep 5 &\n$ printf 'a\\\nb'\n```\n```sh\n$ not run\n```\n";
    let steps = parse(page).unwrap();
    assert_eq!(steps.len(), 4);
    assert_eq!(steps[0].command, "echo hi");
    assert_eq!(steps[0].expected, ["hi"]);
    assert_eq!((steps[1].command.as_str(), steps[1].expect_exit), ("false", 1));
    assert!(steps[2].background && steps[2].command == "sleep 5");
    assert_eq!(steps[3].command, "printf 'a\\\nb'");
    assert!(parse("```sh\n$ x\n```\n").unwrap_err().contains("no ```console block"));
    assert!(parse("```Console\n$ x\n```\n").unwrap_err().contains("not `console`"));
    assert!(parse("```consoel\n$ x\n```\n").unwrap_err().contains("not `console`"));
    assert!(parse("```console\n$ x\n```\n```json\n{}\n```\n").is_ok());
    assert!(
        parse("```console\n$ x &\noops\n```\n")
            .unwrap_err()
            .contains("background")
    );
}

#[test]
fn a_wrong_expected_line_or_exit_code_fails_the_page() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("p.md");
    std::fs::write(&page, "```console\n$ echo hello\ngoodbye\n```\n").unwrap();
    assert!(run_page(&page).unwrap_err().contains("goodbye"));
    std::fs::write(&page, "```console\n$ exit 3\n```\n").unwrap();
    assert!(run_page(&page).unwrap_err().contains("exit Some(3), expected 0"));
    std::fs::write(&page, "```console\n$ exit 3 # exit 3\n$ echo $SAMPLES\nsamples\n```\n").unwrap();
    run_page(&page).unwrap();
}

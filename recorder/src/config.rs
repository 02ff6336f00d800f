//! `mcptape record --config FILE`: a TOML file equivalent to the flags, for services (systemd units, Kubernetes
//! ConfigMaps) where a long command line is awkward.
//!
//! Each key is a flag's long name (`out`, `listen`, `rotate-every`, `sample`, …) with a string, number or boolean
//! value (`true` sets a switch), an array for repeatable flags, and `command` for the server command of stdio
//! mode. The file is turned into flags placed before those of the command line, and clap parses both together:
//! values are checked exactly as flags are, and a flag given on the command line wins over the file (for
//! repeatable flags such as `--redact-key`, both lists apply). Unknown keys are an error naming the key and file.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{ArgAction, Args, Command};

use crate::RecordArgs;

fn record_command() -> Command {
    RecordArgs::augment_args(Command::new("record")).no_binary_name(true)
}

/// Expands `--config FILE` in `mcptape record …` argv (`argv[0]` the program); other argv pass through.
pub fn expand(argv: Vec<OsString>) -> anyhow::Result<Vec<OsString>> {
    if argv.get(1).map(OsString::as_os_str) != Some(OsStr::new("record")) {
        return Ok(argv);
    }
    // A lenient parse finds --config where clap would (not inside the server's own arguments).
    let lenient = record_command()
        .ignore_errors(true)
        .try_get_matches_from(&argv[2..])
        .ok();
    let Some(file) = lenient.as_ref().and_then(|m| m.get_one::<PathBuf>("config").cloned()) else {
        return Ok(argv);
    };
    let cli_has_command = lenient
        .as_ref()
        .and_then(|m| m.get_many::<OsString>("command"))
        .is_some_and(|mut v| v.next().is_some());
    let (flags, command) = file_args(&file)?;
    let mut out: Vec<OsString> = argv[..2].to_vec();
    out.extend(flags);
    out.extend(argv[2..].iter().cloned());
    if !cli_has_command && !command.is_empty() {
        out.push("--".into());
        out.extend(command);
    }
    Ok(out)
}

/// The flags a config file stands for, and its `command`.
pub fn file_args(file: &Path) -> anyhow::Result<(Vec<OsString>, Vec<OsString>)> {
    let text = std::fs::read_to_string(file).with_context(|| format!("--config {}", file.display()))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| anyhow::anyhow!("{}: {}", file.display(), one_line(&e.to_string())))?;
    let cmd = record_command();
    let mut flags = Vec::new();
    let mut command = Vec::new();
    let f = file.display();
    for (key, value) in &table {
        if key == "command" {
            let toml::Value::Array(items) = value else {
                bail!("{f}: `command` must be an array of strings, e.g. command = [\"npx\", \"server\"]");
            };
            for item in items {
                let toml::Value::String(s) = item else {
                    bail!("{f}: `command` must be an array of strings");
                };
                command.push(OsString::from(s));
            }
            continue;
        }
        let Some(arg) = cmd
            .get_arguments()
            .find(|a| a.get_long() == Some(key.as_str()) && key != "config")
        else {
            bail!(
                "{f}: unknown key `{key}` (keys are the long names of `mcptape record` flags, such as `out` or `rotate-every`)"
            );
        };
        let flag = OsString::from(format!("--{key}"));
        let switch = matches!(arg.get_action(), ArgAction::SetTrue);
        let many = matches!(arg.get_action(), ArgAction::Append);
        let scalar = |v: &toml::Value| -> anyhow::Result<String> {
            match v {
                toml::Value::String(s) => Ok(s.clone()),
                toml::Value::Integer(i) => Ok(i.to_string()),
                toml::Value::Float(x) => Ok(x.to_string()),
                _ => bail!("{f}: `{key}`: expected a string or number"),
            }
        };
        match value {
            toml::Value::Boolean(b) if switch => {
                if *b {
                    flags.push(flag);
                }
            }
            _ if switch => bail!("{f}: `{key}`: expected true or false"),
            toml::Value::Array(items) if many => {
                for item in items {
                    let v = scalar(item)?;
                    check(arg, key, &v, file)?;
                    flags.push(flag.clone());
                    flags.push(v.into());
                }
            }
            toml::Value::Array(_) => bail!("{f}: `{key}`: takes one value, not an array"),
            v => {
                let v = scalar(v)?;
                check(arg, key, &v, file)?;
                flags.push(flag);
                flags.push(v.into());
            }
        }
    }
    Ok((flags, command))
}

/// Runs the flag's own value parser, so a bad value names the file and key.
fn check(arg: &clap::Arg, key: &str, value: &str, file: &Path) -> anyhow::Result<()> {
    let mut probe = clap::Arg::new("value")
        .long("value")
        .value_parser(arg.get_value_parser().clone());
    if let Some(name) = arg.get_value_names().and_then(|v| v.first()) {
        probe = probe.value_name(name.clone());
    }
    Command::new("config")
        .no_binary_name(true)
        .arg(probe)
        .try_get_matches_from(["--value", value])
        .map(|_| ())
        .map_err(|e| {
            let msg = one_line(&e.to_string()).replace("'--value", &format!("'--{key}"));
            anyhow::anyhow!("{}: `{key}`: {}", file.display(), msg.trim_start_matches("error: "))
        })
}

fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("For more information"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("record.toml");
        std::fs::write(&p, text).unwrap();
        (dir, p)
    }

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn a_file_becomes_flags_before_the_command_line_and_its_command_goes_last() {
        let (_d, p) = write(
            "out = \"/var/lib/cap\"\nrotate-every = \"1m\"\nlossless = true\nsample = 0.5\ncommand = [\"srv\", \"--x\"]\n",
        );
        let got = expand(os(&[
            "mcptape",
            "record",
            "--config",
            p.to_str().unwrap(),
            "--sample",
            "0.1",
        ]))
        .unwrap();
        let want = os(&[
            "mcptape",
            "record",
            "--lossless",
            "--out",
            "/var/lib/cap",
            "--rotate-every",
            "1m",
            "--sample",
            "0.5",
            "--config",
            p.to_str().unwrap(),
            "--sample",
            "0.1",
            "--",
            "srv",
            "--x",
        ]);
        assert_eq!(got, want);
        // A command on the command line wins over the file's.
        let got = expand(os(&[
            "mcptape",
            "record",
            "--config",
            p.to_str().unwrap(),
            "--",
            "other",
        ]))
        .unwrap();
        assert_eq!(got.last().unwrap(), "other");
        assert!(!got.contains(&OsString::from("srv")));
        // No --config, or another command: unchanged.
        let plain = os(&["mcptape", "record", "--", "srv", "--config", "x"]);
        assert_eq!(expand(plain.clone()).unwrap(), plain);
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_file_and_key() {
        let (_d, p) = write("rotate-evry = \"1m\"\n");
        let e = format!(
            "{:#}",
            expand(os(&["m", "record", "--config", p.to_str().unwrap()])).unwrap_err()
        );
        assert!(
            e.contains("record.toml") && e.contains("unknown key `rotate-evry`"),
            "{e}"
        );
        let (_d, p) = write("rotate-every = \"soon\"\n");
        let e = format!(
            "{:#}",
            expand(os(&["m", "record", "--config", p.to_str().unwrap()])).unwrap_err()
        );
        assert!(e.contains("record.toml") && e.contains("`rotate-every`"), "{e}");
        assert_eq!(e.lines().count(), 1, "{e}");
        let (_d, p) = write("lossless = \"yes\"\n");
        let e = format!(
            "{:#}",
            expand(os(&["m", "record", "--config", p.to_str().unwrap()])).unwrap_err()
        );
        assert!(e.contains("`lossless`: expected true or false"), "{e}");
        let (_d, p) = write("out = [\n");
        let e = format!(
            "{:#}",
            expand(os(&["m", "record", "--config", p.to_str().unwrap()])).unwrap_err()
        );
        assert!(e.contains("record.toml"), "{e}");
        assert_eq!(e.lines().count(), 1, "{e}");
    }
}

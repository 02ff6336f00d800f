//! End-to-end measurements of whole processes side by side: a relay chain around an echo server (`cat`), driven
//! over its stdin/stdout. Used by the harness's `stdio` scenario to compare a direct pipe, a plain byte relay
//! (socat) and `mcptape record` in the same run.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

/// A command line that relays stdin/stdout to an echo server.
#[derive(Debug, Clone)]
pub struct Chain {
    /// Label in the results table.
    pub name: String,
    /// The command and its arguments.
    pub argv: Vec<String>,
}

fn spawn(chain: &Chain) -> anyhow::Result<Child> {
    let (prog, args) = chain.argv.split_first().context("empty chain")?;
    Command::new(prog)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", chain.argv.join(" ")))
}

/// Round trips of one small request line through a fresh chain: `warmup` untimed, then `n` timed.
pub fn round_trips(chain: &Chain, warmup: usize, n: usize) -> anyhow::Result<Vec<Duration>> {
    let mut child = spawn(chain)?;
    let mut stdin = child.stdin.take().context("stdin")?;
    let mut stdout = BufReader::new(child.stdout.take().context("stdout")?);
    let mut samples = Vec::with_capacity(n);
    let mut line = Vec::with_capacity(256);
    for i in 0..warmup + n {
        let msg = format!("{{\"jsonrpc\":\"2.0\",\"id\":{i},\"method\":\"ping\"}}\n");
        let t = Instant::now();
        stdin.write_all(msg.as_bytes())?;
        stdin.flush()?;
        line.clear();
        stdout.read_until(b'\n', &mut line)?;
        let rtt = t.elapsed();
        anyhow::ensure!(line == msg.as_bytes(), "{}: echo mismatch", chain.name);
        if i >= warmup {
            samples.push(rtt);
        }
    }
    drop(stdin);
    finish(&mut child, chain)?;
    Ok(samples)
}

/// Streams `data` through a fresh chain and times until the last byte comes back. Returns the time and the
/// chain's stderr (mcptape reports what it recorded there).
pub fn stream(chain: &Chain, data: &[u8]) -> anyhow::Result<(Duration, String)> {
    let mut child = spawn(chain)?;
    let mut stdin = child.stdin.take().context("stdin")?;
    let mut stdout = child.stdout.take().context("stdout")?;
    let payload = data.to_vec();
    let t = Instant::now();
    let writer = std::thread::spawn(move || -> std::io::Result<()> {
        stdin.write_all(&payload)?;
        Ok(())
    });
    let mut buf = vec![0u8; 1 << 16];
    let mut got = 0usize;
    while got < data.len() {
        let n = stdout.read(&mut buf)?;
        anyhow::ensure!(
            n > 0,
            "{}: output ended after {got} of {} bytes",
            chain.name,
            data.len()
        );
        got += n;
    }
    let took = t.elapsed();
    writer.join().map_err(|_| anyhow::anyhow!("writer panicked"))??;
    let err = finish(&mut child, chain)?;
    Ok((took, err))
}

fn finish(child: &mut Child, chain: &Chain) -> anyhow::Result<String> {
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        e.read_to_string(&mut err)?;
    }
    let status = child.wait()?;
    anyhow::ensure!(status.success(), "{} exited with {status}: {err}", chain.name);
    Ok(err)
}

/// The q-quantile of samples (sorted in place), nearest rank.
pub fn quantile(samples: &mut [Duration], q: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples.sort_unstable();
    let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
    samples[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let mut v: Vec<Duration> = (1..=100).rev().map(Duration::from_micros).collect();
        assert_eq!(quantile(&mut v, 0.5), Duration::from_micros(50));
        assert_eq!(quantile(&mut v, 0.99), Duration::from_micros(99));
        assert_eq!(quantile(&mut v, 1.0), Duration::from_micros(100));
    }

    #[test]
    fn a_plain_pipe_echoes_and_streams() {
        let cat = Chain {
            name: "direct".into(),
            argv: vec!["cat".into()],
        };
        assert_eq!(round_trips(&cat, 2, 10).unwrap().len(), 10);
        let data = b"{\"a\":1}\n".repeat(1000);
        assert!(stream(&cat, &data).is_ok());
    }
}

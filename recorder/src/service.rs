//! What makes `mcptape record` a long-running service: rotation and retention, sampling, `/metrics`, SIGHUP.
//! The flags live here (one `clap` group, "Production") so every adapter (stdio, HTTP, unix sockets) gets them
//! the same way.

use std::time::Duration;

use clap::Args;
use mcptape_datasets::layout::Retention;

use crate::log::Log;
use crate::rotation::Rotation;
use crate::sample::{self, Sampler};
use crate::tap::{Tap, TapConfig};

pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    mcptape_datasets::human::parse_bytes(s)
}

/// Rotation, retention, sampling and metrics flags of `mcptape record`.
#[derive(Debug, Args, Clone, Default)]
pub struct ServiceArgs {
    /// Close the current segment once its journal reaches this size (e.g. `64MiB`) and start a new one. Turns
    /// on the hive layout: OUT/date=YYYY-MM-DD/hour=HH/NAME-START-NNNNNN.parquet.
    #[arg(long, value_name = "BYTES", value_parser = parse_size, help_heading = "Production")]
    pub rotate_size: Option<u64>,
    /// Close the current segment at every multiple of this period on the UTC clock (e.g. `1m`, `15m`, `1h`).
    /// Turns on the hive layout.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, help_heading = "Production")]
    pub rotate_every: Option<Duration>,
    /// Delete finished segments older than this (checked at each rotation). Never the open segment.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, help_heading = "Production")]
    pub retain_age: Option<Duration>,
    /// Delete the oldest finished segments while all of them together exceed this size.
    #[arg(long, value_name = "BYTES", value_parser = parse_size, help_heading = "Production")]
    pub retain_size: Option<u64>,
    /// Record this fraction of sessions (0 to 1), whole sessions only, chosen by a hash of the session key so
    /// every tap picks the same ones. Sessions left out are forwarded untouched, just not recorded.
    #[arg(long, value_name = "FRACTION", value_parser = sample::parse, help_heading = "Production")]
    pub sample: Option<f64>,
    /// Serve /metrics (Prometheus text format) and /healthz on ADDR (PORT or HOST:PORT; loopback unless
    /// --allow-remote). The bound address is printed as `mcptape: metrics on http://HOST:PORT/metrics`.
    #[arg(long, value_name = "ADDR", help_heading = "Production")]
    pub metrics: Option<String>,
    /// Upload every finished segment to S3-compatible storage (`s3://bucket/prefix`), in order, retried with
    /// backoff; a segment leaves the capture folder only once the store confirmed it. Credentials, region and
    /// endpoint come from the AWS_* environment variables.
    #[arg(long, value_name = "URL", help_heading = "Production")]
    pub upload: Option<String>,
    /// Most bytes of segments waiting for upload; beyond it the oldest waiting segment is dropped (and counted).
    #[arg(long, value_name = "BYTES", value_parser = parse_size, requires = "upload", help_heading = "Production")]
    pub upload_spool_max: Option<u64>,
}

impl ServiceArgs {
    /// Checks combinations clap cannot express.
    pub fn validate(&self) -> anyhow::Result<()> {
        let rotating = self.rotate_size.is_some() || self.rotate_every.is_some();
        anyhow::ensure!(
            rotating || (self.retain_age.is_none() && self.retain_size.is_none()),
            "--retain-age/--retain-size apply to rotated segments: add --rotate-every or --rotate-size"
        );
        anyhow::ensure!(
            self.rotate_size != Some(0) && self.rotate_every.is_none_or(|d| !d.is_zero()),
            "--rotate-size/--rotate-every must be more than 0"
        );
        Ok(())
    }

    /// Rotation and retention as configured.
    pub fn rotation(&self) -> Rotation {
        Rotation {
            every: self.rotate_every,
            size: self.rotate_size,
            retention: Retention {
                max_age: self.retain_age,
                max_bytes: self.retain_size,
            },
        }
    }

    /// Puts rotation and sampling into a tap's config.
    pub fn apply(&self, config: &mut TapConfig) {
        config.rotation = self.rotation();
        if let Some(f) = self.sample {
            config.sample = Sampler::new(f).unwrap_or_default();
        }
    }
}

/// Background parts of a running service: the metrics server and the SIGHUP handler. Stop with [`Service::stop`].
#[derive(Debug)]
pub struct Service {
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Service {
    /// Binds `--metrics` (before anything is written, so a taken port leaves nothing behind).
    pub async fn bind(args: &ServiceArgs, allow_remote: bool) -> anyhow::Result<Option<tokio::net::TcpListener>> {
        match &args.metrics {
            Some(addr) => {
                let (l, local) = crate::metrics::bind(addr, allow_remote).await?;
                // Always on stderr, even with --log: the line operators and tests look for.
                eprintln!("mcptape: metrics on http://{local}/metrics");
                Ok(Some(l))
            }
            None => Ok(None),
        }
    }

    /// Starts serving metrics on `listener` (if any) and, when `rotate_on_hup`, rotating the capture on SIGHUP.
    pub fn start(listener: Option<tokio::net::TcpListener>, tap: &Tap, rotate_on_hup: bool, log: &Log) -> Service {
        let (stop, rx) = tokio::sync::watch::channel(false);
        let stopped = move || {
            let mut rx = rx.clone();
            async move {
                let _ = rx.wait_for(|s| *s).await;
            }
        };
        let mut tasks = Vec::new();
        if let Some(l) = listener {
            tasks.push(tokio::spawn(crate::metrics::serve(l, tap.metrics().clone(), stopped())));
        }
        if rotate_on_hup {
            use tokio::signal::unix::{SignalKind, signal};
            if let Ok(mut hup) = signal(SignalKind::hangup()) {
                let (tap, log, stop) = (tap.clone(), log.clone(), stopped());
                tasks.push(tokio::spawn(async move {
                    let mut stop = std::pin::pin!(stop);
                    loop {
                        tokio::select! {
                            r = hup.recv() => {
                                if r.is_none() { break; }
                                log.line("SIGHUP: rotating the capture");
                                tap.rotate();
                            }
                            _ = &mut stop => break,
                        }
                    }
                }));
            }
        }
        Service { stop, tasks }
    }

    /// Stops the background tasks (they hold clones of the tap) and waits for them.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

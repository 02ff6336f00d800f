//! Finished capture segments to S3-compatible object storage.
//!
//! Why this shape: a recorder must keep recording while the store is slow or down, and must never lose a segment
//! it has already written. So uploading runs on its own task behind a queue; the local capture folder is the spool
//! (nothing is held only in memory); a segment counts as uploaded only once the store confirmed it (PUT, then a
//! HEAD that reports the same size), and only then is a marker written and the local file deleted. The marker is a
//! hidden sidecar file (`.NAME.parquet.uploaded`) so a restart re-queues exactly the unconfirmed segments, and
//! query engines that glob `*.parquet` or skip dot-files never see it.
//!
//! Order: one upload at a time, oldest first, the head retried with capped exponential backoff (with jitter) until
//! it succeeds; a later segment never overtakes an earlier one. A retry or a restart sends the same bytes to the
//! same key, so the store never holds two copies of a segment.
//!
//! Bound: when the bytes waiting exceed [`UploadConfig::max_spool_bytes`], the oldest waiting segments are
//! dropped (counted, logged on stderr); see [`UploadConfig::max_spool_bytes`] for what dropping does on disk.

mod spool;
mod target;
mod worker;

use std::path::PathBuf;
use std::time::Duration;

pub use spool::marker_path;
pub use worker::Uploader;

/// Where and how to upload. [`UploadConfig::new`] gives the defaults.
#[derive(Debug, Clone)]
pub struct UploadConfig {
    /// `s3://bucket/prefix` (the prefix may be empty); each segment lands at `prefix/KEY`.
    pub url: String,
    /// An S3-compatible endpoint such as `http://127.0.0.1:9000` (MinIO, moto, Ceph, R2 …). `None`: the
    /// `AWS_ENDPOINT_URL` environment variable, else AWS itself. Plain `http://` is allowed for loopback hosts;
    /// elsewhere it needs `AWS_ALLOW_HTTP=true`.
    pub endpoint: Option<String>,
    /// The local capture folder; finished segments in it without an upload marker are queued at start.
    pub spool_dir: PathBuf,
    /// Most bytes of not-yet-uploaded segments to keep waiting (`u64::MAX`: no bound). Beyond it the oldest
    /// waiting segments are dropped from the queue: deleted locally when `delete_after_upload` (the folder is only a
    /// spool then), otherwise left in the folder without a marker, so the next start queues them again.
    pub max_spool_bytes: u64,
    /// Delete a segment (and its marker) locally once its upload is confirmed.
    pub delete_after_upload: bool,
    /// Delays between attempts at the head segment.
    pub backoff: Backoff,
    /// Files larger than this go up as a multipart upload in `part_size` pieces (at least 5 MiB, S3's minimum);
    /// smaller files in one PUT.
    pub multipart_threshold: u64,
    /// Part size of a multipart upload.
    pub part_size: usize,
    /// Extra object_store S3 options applied after the environment, e.g. `("aws_access_key_id", "…")`; keys as in
    /// object_store's `AmazonS3ConfigKey` (`aws_region`, `aws_session_token`, `aws_allow_http`, …).
    pub s3_options: Vec<(String, String)>,
}

impl UploadConfig {
    /// Defaults: no explicit endpoint, a 1 GiB spool bound, delete after upload, backoff 1 s doubling to 60 s,
    /// multipart above 16 MiB in 8 MiB parts.
    pub fn new(url: impl Into<String>, spool_dir: impl Into<PathBuf>) -> Self {
        Self {
            url: url.into(),
            endpoint: None,
            spool_dir: spool_dir.into(),
            max_spool_bytes: 1 << 30,
            delete_after_upload: true,
            backoff: Backoff::default(),
            multipart_threshold: 16 << 20,
            part_size: 8 << 20,
            s3_options: Vec::new(),
        }
    }
}

/// Capped exponential backoff: attempt `n` (from 0) waits a random time in `[d/2, d]` with
/// `d = min(max, initial * factor^n)`, so many recorders that lost the store together do not retry in step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    pub factor: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            factor: 2.0,
        }
    }
}

impl Backoff {
    /// The delay before attempt `attempt + 1`, given `unit` in `[0, 1)` for the jitter.
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let full = self.initial.as_secs_f64() * self.factor.max(1.0).powi(attempt.min(64) as i32);
        let full = full.min(self.max.as_secs_f64()).max(0.0);
        Duration::from_secs_f64(full * (0.5 + 0.5 * unit.clamp(0.0, 1.0)))
    }
}

/// Counters of one [`Uploader`] since it started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UploadStats {
    /// Segments waiting (queued or being uploaded).
    pub backlog_segments: u64,
    pub backlog_bytes: u64,
    /// Segments confirmed by the store.
    pub uploaded_segments: u64,
    pub uploaded_bytes: u64,
    /// Attempts that failed (each is retried after a backoff delay).
    pub failed_attempts: u64,
    /// Segments given up: dropped by the spool bound, or vanished / unreadable before their upload.
    pub dropped_segments: u64,
    /// The last failure, for status lines.
    pub last_error: Option<String>,
}

/// Why an [`Uploader`] could not start.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("upload URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("upload option {key:?}: not an S3 option of object_store")]
    InvalidOption { key: String },
    #[error("upload target {url:?}: {source}")]
    Store {
        url: String,
        #[source]
        source: object_store::Error,
    },
    #[error("upload spool {path}: {source}")]
    Spool {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the uploader needs a tokio runtime (Uploader::start was called outside one)")]
    NoRuntime,
}

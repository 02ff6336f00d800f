//! `--upload s3://bucket/prefix`: finished segments go to S3-compatible storage through `mcptape-uploader`.
//!
//! The uploader is a [`SegmentSink`]: the writer announces each finished segment (queued, never waited for),
//! retention asks before deleting one (only confirmed uploads may go), and `/metrics` reads its backlog.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use mcptape_uploader::{UploadConfig, UploadStats, Uploader};

use crate::service::ServiceArgs;
use crate::sink::{SegmentSink, SinkHandle};

/// The running uploader of one `record`.
pub struct UploadSink {
    uploader: Mutex<Option<Uploader>>,
}

impl std::fmt::Debug for UploadSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UploadSink")
    }
}

impl UploadSink {
    /// Starts uploading from the capture folder `dir` when `--upload` is given; segments a previous run left
    /// unconfirmed there are queued first.
    pub fn start(args: &ServiceArgs, dir: &Path) -> anyhow::Result<Option<Arc<UploadSink>>> {
        let Some(url) = &args.upload else { return Ok(None) };
        let mut cfg = UploadConfig::new(url.clone(), dir.to_path_buf());
        if let Some(max) = args.upload_spool_max {
            cfg.max_spool_bytes = max;
        }
        let uploader = Uploader::start(cfg).with_context(|| format!("--upload {url}"))?;
        Ok(Some(Arc::new(UploadSink {
            uploader: Mutex::new(Some(uploader)),
        })))
    }

    /// The hook for the tap's config.
    pub fn handle(self: &Arc<Self>) -> SinkHandle {
        SinkHandle(self.clone())
    }

    /// Uploads what is left for up to `deadline`, then stops; what is still waiting stays in the folder,
    /// unconfirmed, for the next start.
    pub async fn finish(&self, deadline: Duration) -> Option<UploadStats> {
        let uploader = self.uploader.lock().unwrap_or_else(|e| e.into_inner()).take()?;
        Some(uploader.shutdown(deadline).await)
    }

    fn with<T>(&self, f: impl FnOnce(&Uploader) -> T) -> Option<T> {
        self.uploader.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map(f)
    }
}

impl SegmentSink for UploadSink {
    fn on_segment_finished(&self, path: &Path, key: &str) {
        self.with(|u| u.submit(path.to_path_buf(), key.to_string()));
    }

    fn may_delete(&self, path: &Path) -> bool {
        self.with(|u| u.is_uploaded(path)).unwrap_or(false)
    }

    fn backlog_segments(&self) -> u64 {
        self.with(|u| u.stats().backlog_segments).unwrap_or(0)
    }
}

/// The line `record` prints at exit about the upload.
pub fn summary(stats: &UploadStats) -> String {
    let mut line = format!(
        "mcptape: uploaded {} segment(s) ({} bytes); {} waiting in the capture folder for the next start",
        stats.uploaded_segments, stats.uploaded_bytes, stats.backlog_segments
    );
    if stats.dropped_segments > 0 {
        line.push_str(&format!("; {} dropped by the spool bound", stats.dropped_segments));
    }
    if let Some(e) = &stats.last_error {
        line.push_str(&format!("; last error: {e}"));
    }
    line
}

//! The hook where finished segments leave the tap: an uploader (the `mcptape-uploader` crate, `--upload`)
//! implements [`SegmentSink`] and the tap's writer calls it.
//!
//! Why a trait here rather than upload code: the writer must not wait on the network, and retention must not
//! delete what has not been uploaded yet. So the writer only announces each finished segment (the sink queues it
//! and returns at once), asks the sink before retention deletes a file, and `/metrics` asks it for its backlog.

use std::path::Path;

/// Receives finished segments. Called from the writer thread: implementations must return quickly (queue the
/// work, never block on I/O).
pub trait SegmentSink: Send + Sync {
    /// A segment was published at `path`; `key` is its path relative to the capture folder with `/` separators
    /// (`date=2026-11-22/hour=07/NAME-20261122T070000Z-000003.parquet`), to be appended to an upload prefix.
    /// Leftover journals recovered when the recorder starts are announced here too.
    fn on_segment_finished(&self, path: &Path, key: &str);

    /// May local retention delete `path`? An uploader answers `false` until the segment is uploaded.
    fn may_delete(&self, _path: &Path) -> bool {
        true
    }

    /// Finished segments not yet delivered (`mcptape_upload_backlog_segments`).
    fn backlog_segments(&self) -> u64 {
        0
    }
}

/// A shared [`SegmentSink`] (printable, so configs holding one can derive `Debug`).
#[derive(Clone)]
pub struct SinkHandle(pub std::sync::Arc<dyn SegmentSink>);

impl std::fmt::Debug for SinkHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SegmentSink")
    }
}

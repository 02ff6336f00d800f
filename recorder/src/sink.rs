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

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::{Arc, Mutex};

    use bytes::Bytes;
    use mcptape_datasets::redact::RedactionRules;
    use mcptape_datasets::{CaptureMeta, Direction, Transport, WriterOptions};

    use super::*;
    use crate::log::Log;
    use crate::tap::{SessionTap, Tap, TapConfig};

    /// Records what the writer announces; refuses deletion of the first segment ("not uploaded yet").
    #[derive(Default)]
    struct Recording {
        finished: Mutex<Vec<(PathBuf, String)>>,
    }

    impl SegmentSink for Recording {
        fn on_segment_finished(&self, path: &Path, key: &str) {
            self.finished
                .lock()
                .unwrap()
                .push((path.to_path_buf(), key.to_string()));
        }
        fn may_delete(&self, path: &Path) -> bool {
            self.finished
                .lock()
                .unwrap()
                .first()
                .is_none_or(|(first, _)| first != path)
        }
        fn backlog_segments(&self) -> u64 {
            1
        }
    }

    #[test]
    fn the_sink_hears_of_every_segment_and_retention_keeps_what_it_may_not_delete() {
        let dir = tempfile::tempdir().unwrap();
        let sink = Arc::new(Recording::default());
        let mut config = TapConfig::new(
            WriterOptions::new(dir.path(), "t", CaptureMeta::new("stdio", "x")),
            RedactionRules::default(),
        );
        config.lossless = true;
        config.rotation.size = Some(2048);
        config.rotation.retention.max_bytes = Some(1);
        config.sink = Some(SinkHandle(sink.clone()));
        let (tap, writer) = Tap::start(config, Log::stderr()).unwrap();
        let s = SessionTap::new(tap.clone(), "s", Transport::Stdio);
        for i in 0..200 {
            let msg = format!(
                r#"{{"jsonrpc":"2.0","id":{i},"method":"tools/call","params":{{"pad":"{}"}}}}"#,
                "x".repeat(64)
            );
            s.observe(Direction::C2s, None, Bytes::from(msg));
        }
        assert!(tap.metrics().render().contains("mcptape_upload_backlog_segments 1"));
        tap.shutdown();
        drop((tap, s));
        let summary = writer.finish();
        let finished = sink.finished.lock().unwrap().clone();
        assert!(finished.len() > 2, "{finished:?}");
        assert_eq!(
            summary.segment_count,
            finished.len() as u64,
            "every segment announced once"
        );
        for (path, key) in &finished {
            assert!(
                key.starts_with("date=") && key.contains("/hour=") && key.ends_with(".parquet"),
                "{key}"
            );
            assert_eq!(dir.path().join(key), *path);
        }
        // Retention (1 byte) deleted every finished segment it was asked about, except the one the sink holds
        // and the last one (finished at close, after the last retention pass).
        let left = mcptape_datasets::layout::finished_segments(dir.path()).unwrap();
        let left: Vec<&PathBuf> = left.iter().map(|f| &f.path).collect();
        assert!(left.contains(&&finished[0].0), "held for upload");
        assert!(left.contains(&&finished.last().unwrap().0));
        assert_eq!(left.len(), 2, "{left:?}");
    }
}

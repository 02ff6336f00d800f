//! Where the tap's own messages go: stderr or a `--log FILE`, never stdout (in stdio mode stdout is the protocol).

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// A line logger shared by the tap's threads.
#[derive(Clone)]
pub struct Log {
    sink: Arc<Mutex<Box<dyn Write + Send>>>,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Log")
    }
}

impl Log {
    /// Logs to stderr.
    pub fn stderr() -> Self {
        Log {
            sink: Arc::new(Mutex::new(Box::new(std::io::stderr()))),
        }
    }

    /// Logs to a file (appended, created 0600).
    pub fn file(path: &Path) -> std::io::Result<Self> {
        use std::os::unix::fs::OpenOptionsExt;
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)?;
        Ok(Log {
            sink: Arc::new(Mutex::new(Box::new(f))),
        })
    }

    /// Writes one line prefixed `mcptape: `; write errors are ignored (logging must not stop the traffic).
    pub fn line(&self, msg: &str) {
        let mut sink = self.sink.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(sink, "mcptape: {msg}");
        let _ = sink.flush();
    }
}

//! File-level metadata of a capture, stored as Parquet key-value metadata (and in the journal's Arrow schema
//! metadata, so that a recovered journal keeps it).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::schema::SCHEMA_VERSION;

/// Key prefix of every metadata entry mcptape writes.
pub const PREFIX: &str = "mcptape.";

/// What a capture file says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CaptureMeta {
    /// Capture schema version ([`SCHEMA_VERSION`] for files this build writes).
    pub schema_version: u32,
    /// Version of the mcptape that wrote the file.
    pub mcptape_version: String,
    /// Capture start, RFC 3339 UTC.
    pub capture_start: String,
    /// Transport of the capture (`stdio`, `http`, `ws`, or `import`).
    pub transport: String,
    /// What was captured: the child command line or the upstream URL.
    pub target: String,
    /// A user label (`--name`).
    pub name: String,
    /// The redaction rules applied, as JSON.
    pub redaction: String,
    /// Frames the tap could not record (queue full, disk full).
    pub dropped_frames: u64,
    /// Sessions left out by sampling.
    pub sampled_out_sessions: u64,
    /// Free-form notes (import source, recovery).
    pub note: String,
}

impl CaptureMeta {
    /// Metadata for a new capture written by this build.
    pub fn new(transport: &str, target: &str) -> Self {
        CaptureMeta {
            schema_version: SCHEMA_VERSION,
            mcptape_version: env!("CARGO_PKG_VERSION").to_string(),
            capture_start: humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string(),
            transport: transport.to_string(),
            target: target.to_string(),
            ..Default::default()
        }
    }

    /// The key-value pairs to store.
    pub fn to_pairs(&self) -> Vec<(String, String)> {
        let mut v = vec![
            ("schema_version", self.schema_version.to_string()),
            ("mcptape_version", self.mcptape_version.clone()),
            ("capture_start", self.capture_start.clone()),
            ("transport", self.transport.clone()),
            ("target", self.target.clone()),
            ("name", self.name.clone()),
            ("redaction", self.redaction.clone()),
            ("dropped_frames", self.dropped_frames.to_string()),
            ("sampled_out_sessions", self.sampled_out_sessions.to_string()),
            ("note", self.note.clone()),
        ];
        v.retain(|(_, value)| !value.is_empty());
        v.into_iter()
            .map(|(k, value)| (format!("{PREFIX}{k}"), value))
            .collect()
    }

    /// Reads metadata back; `None` when the file carries no mcptape schema version (not a capture).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Option<Self> {
        let map: HashMap<&str, &str> = pairs
            .into_iter()
            .filter_map(|(k, v)| k.strip_prefix(PREFIX).map(|k| (k, v)))
            .collect();
        let get = |k: &str| map.get(k).map(|v| v.to_string()).unwrap_or_default();
        let num = |k: &str| map.get(k).and_then(|v| v.parse().ok()).unwrap_or(0);
        Some(CaptureMeta {
            schema_version: map.get("schema_version")?.parse().ok()?,
            mcptape_version: get("mcptape_version"),
            capture_start: get("capture_start"),
            transport: get("transport"),
            target: get("target"),
            name: get("name"),
            redaction: get("redaction"),
            dropped_frames: num("dropped_frames"),
            sampled_out_sessions: num("sampled_out_sessions"),
            note: get("note"),
        })
    }

    /// The same pairs as an Arrow schema metadata map.
    pub fn to_map(&self) -> HashMap<String, String> {
        self.to_pairs().into_iter().collect()
    }
}

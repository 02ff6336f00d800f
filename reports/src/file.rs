//! Reading report files of either kind, with errors that name the file.

use std::path::{Path, PathBuf};

use crate::{LoadReport, ReplayReport, load, replay};

/// A report of either kind.
// A handful exist at a time (one per file on the command line): boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum AnyReport {
    /// `mcptape.load/1`.
    Load(LoadReport),
    /// `mcptape.replay/1`.
    Replay(ReplayReport),
}

impl AnyReport {
    /// `load` or `replay`.
    pub fn kind(&self) -> &'static str {
        match self {
            AnyReport::Load(_) => "load",
            AnyReport::Replay(_) => "replay",
        }
    }

    /// The `schema` field.
    pub fn schema(&self) -> &str {
        match self {
            AnyReport::Load(r) => &r.schema,
            AnyReport::Replay(r) => &r.schema,
        }
    }

    /// Method names the report has counts for.
    pub fn methods(&self) -> Vec<&str> {
        match self {
            AnyReport::Load(r) => r.methods.keys().map(String::as_str).collect(),
            AnyReport::Replay(r) => r.methods.keys().map(String::as_str).collect(),
        }
    }
}

/// A report file that could not be read; the message starts with the path.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not JSON, or not the shape its schema promises.
    #[error("{path}: not a valid report: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Why (the JSON parser's message, with line and column).
        reason: String,
    },
    /// A schema this version does not read.
    #[error("{path}: unsupported report schema {schema:?} (this mcptape reads {load} and {replay})", load = load::SCHEMA, replay = replay::SCHEMA)]
    Schema {
        /// The file.
        path: PathBuf,
        /// Its `schema`.
        schema: String,
    },
}

/// Reads a load or replay report, telling them apart by `schema`.
pub fn read_report(path: &Path) -> Result<AnyReport, ReadError> {
    let bytes = std::fs::read(path).map_err(|source| ReadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_report(&bytes).map_err(|e| match e {
        ParseError::Invalid(reason) => ReadError::Invalid {
            path: path.to_path_buf(),
            reason,
        },
        ParseError::Schema(schema) => ReadError::Schema {
            path: path.to_path_buf(),
            schema,
        },
    })
}

enum ParseError {
    Invalid(String),
    Schema(String),
}

fn parse_report(bytes: &[u8]) -> Result<AnyReport, ParseError> {
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| ParseError::Invalid(e.to_string()))?;
    let schema = value
        .get("schema")
        .and_then(|s| s.as_str())
        .ok_or_else(|| ParseError::Invalid("no \"schema\" field (is this an mcptape report?)".into()))?
        .to_string();
    let invalid = |e: serde_json::Error| ParseError::Invalid(format!("{schema}: {e}"));
    if schema == load::SCHEMA {
        Ok(AnyReport::Load(serde_json::from_value(value).map_err(invalid)?))
    } else if schema == replay::SCHEMA {
        Ok(AnyReport::Replay(serde_json::from_value(value).map_err(invalid)?))
    } else {
        Err(ParseError::Schema(schema))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_file_and_stay_on_one_line() {
        let dir = std::env::temp_dir().join(format!("mcptape-reports-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.json");
        let e = read_report(&missing).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{}: ", missing.display())), "{e}");
        for (name, body, why) in [
            (
                "garbage.json",
                "{not json",
                "not a valid report: key must be a string at line 1",
            ),
            ("noschema.json", "{}", "no \"schema\" field"),
            (
                "future.json",
                r#"{"schema":"mcptape.load/2"}"#,
                "unsupported report schema \"mcptape.load/2\"",
            ),
            (
                "short.json",
                r#"{"schema":"mcptape.load/1"}"#,
                "not a valid report: mcptape.load/1: missing field",
            ),
        ] {
            let p = dir.join(name);
            std::fs::write(&p, body).unwrap();
            let e = read_report(&p).unwrap_err().to_string();
            assert!(e.starts_with(&format!("{}: ", p.display())) && e.contains(why), "{e}");
            assert!(!e.contains('\n'), "{e}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

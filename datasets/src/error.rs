//! The one error type of the capture format. Every variant names the file it is about, so the binary can print
//! it on one line and a user knows which file to look at.

use std::path::{Path, PathBuf};

/// What went wrong with a capture file or folder.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The path does not exist.
    #[error("{}: no such file or folder", .0.display())]
    NotFound(PathBuf),
    /// A folder holds no capture files.
    #[error("{}: folder holds no capture files (*.parquet)", .0.display())]
    EmptyFolder(PathBuf),
    /// The file is not Parquet at all.
    #[error("{}: not a Parquet file ({reason})", path.display())]
    NotParquet {
        /// The file.
        path: PathBuf,
        /// What the reader said.
        reason: String,
    },
    /// A Parquet file that is not an mcptape capture, or one this build cannot read.
    #[error("{}: not an mcptape capture: {reason}", path.display())]
    NotCapture {
        /// The file.
        path: PathBuf,
        /// What is missing or different.
        reason: String,
    },
    /// The file's data could not be decoded.
    #[error("{}: damaged: {reason}", path.display())]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// Bad input in a text file (JSONL or NDJSON import).
    #[error("{}:{line}: {reason}", path.display())]
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// An I/O error on a file.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }
    /// Damage in `path`.
    pub fn damaged(path: &Path, reason: impl std::fmt::Display) -> Self {
        Error::Damaged {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        }
    }
}

//! File-system helpers for captures: private permissions and crash-safe publication.
//!
//! Captures hold secrets, so every file is created 0600 and every folder 0700 from the start (not chmod-ed
//! afterwards, which would leave a window). A segment is published by writing `NAME.tmp`, fsyncing it, renaming it
//! and fsyncing the folder, so a reader never sees half a Parquet file.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

/// Creates `dir` and its missing parents with mode 0700.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// Creates a new file with mode 0600, failing if it exists.
pub fn create_private_file(path: &Path) -> io::Result<File> {
    OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)
}

/// Creates or truncates a file with mode 0600.
pub fn create_private_file_truncate(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

/// Renames `tmp` to `dest` after fsyncing `tmp`, then fsyncs the folder so the rename survives a crash.
pub fn publish(file: &File, tmp: &Path, dest: &Path) -> io::Result<()> {
    file.sync_all()?;
    std::fs::rename(tmp, dest)?;
    if let Some(parent) = dest.parent() {
        let parent = if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        };
        File::open(parent)?.sync_all()?;
    }
    Ok(())
}

//! The local side: upload markers and the start-up scan of the capture folder.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

const MARKER_SUFFIX: &str = ".uploaded";

/// The hidden sidecar that records a confirmed upload of `segment`: `DIR/.NAME.uploaded`.
pub fn marker_path(segment: &Path) -> PathBuf {
    let name = segment
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    segment.with_file_name(format!(".{name}{MARKER_SUFFIX}"))
}

/// Writes the marker atomically (temp file, fsync, rename): after a crash it is either absent or complete.
pub(crate) fn write_marker(segment: &Path, key: &str, size: u64, e_tag: Option<&str>) -> io::Result<()> {
    let marker = marker_path(segment);
    let tmp = marker.with_extension("uploaded.tmp");
    {
        let mut f = fs::File::create(&tmp)?;
        writeln!(f, "key={key}\nsize={size}\netag={}", e_tag.unwrap_or(""))?;
        f.sync_all()?;
    }
    fs::rename(&tmp, &marker)?;
    if let Some(dir) = marker.parent()
        && let Ok(d) = fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}

/// A finished segment found in the spool at start.
#[derive(Debug)]
pub(crate) struct Found {
    pub path: PathBuf,
    pub key: String,
    pub size: u64,
}

/// Walks the spool: returns the finished segments (`*.parquet`, not hidden) without a marker, oldest first
/// (modification time, then key). Tidies what a crash or an earlier run left: leftover marker temp files, markers
/// whose segment is gone, and — when `delete_uploaded` — segments whose upload was confirmed but not yet deleted.
pub(crate) fn scan(root: &Path, delete_uploaded: bool) -> io::Result<Vec<Found>> {
    let mut found = Vec::new();
    if root.exists() {
        walk(root, root, delete_uploaded, &mut found)?;
    }
    found.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.key.cmp(&b.0.key)));
    Ok(found.into_iter().map(|(f, _)| f).collect())
}

fn walk(root: &Path, dir: &Path, delete_uploaded: bool, out: &mut Vec<(Found, SystemTime)>) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let ft = entry.file_type()?;
        if ft.is_dir() {
            if !name.starts_with('.') {
                walk(root, &path, delete_uploaded, out)?;
            }
            continue;
        }
        if !ft.is_file() {
            continue;
        }
        if name.starts_with('.') {
            if name.ends_with(".uploaded.tmp") {
                let _ = fs::remove_file(&path);
            } else if let Some(seg) = name.strip_suffix(MARKER_SUFFIX).and_then(|n| n.strip_prefix('.'))
                && !dir.join(seg).exists()
            {
                let _ = fs::remove_file(&path);
            }
            continue;
        }
        if !name.ends_with(".parquet") {
            continue;
        }
        let marker = marker_path(&path);
        if marker.exists() {
            if delete_uploaded {
                fs::remove_file(&path)?;
                let _ = fs::remove_file(&marker);
            }
            continue;
        }
        let meta = entry.metadata()?;
        let rel = path.strip_prefix(root).unwrap_or(&path);
        let key = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/");
        let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        out.push((
            Found {
                path,
                key,
                size: meta.len(),
            },
            mtime,
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scan_queues_unmarked_segments_and_tidies_the_rest() {
        let d = tempfile::tempdir().unwrap();
        let hour = d.path().join("date=2026-01-02/hour=03");
        fs::create_dir_all(&hour).unwrap();
        fs::write(hour.join("a.parquet"), b"aaaa").unwrap();
        fs::write(hour.join("b.parquet"), b"bb").unwrap();
        write_marker(&hour.join("b.parquet"), "k", 2, None).unwrap();
        fs::write(hour.join("c.parquet.tmp"), b"partial").unwrap();
        fs::write(hour.join(".gone.parquet.uploaded"), b"").unwrap();
        fs::write(hour.join(".x.uploaded.tmp"), b"").unwrap();
        fs::create_dir_all(d.path().join(".hidden")).unwrap();
        fs::write(d.path().join(".hidden/h.parquet"), b"h").unwrap();

        let found = scan(d.path(), false).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].key, "date=2026-01-02/hour=03/a.parquet");
        assert_eq!(found[0].size, 4);
        assert!(hour.join("b.parquet").exists(), "kept: delete_uploaded is off");
        assert!(!hour.join(".gone.parquet.uploaded").exists(), "orphan marker removed");
        assert!(!hour.join(".x.uploaded.tmp").exists(), "marker temp file removed");

        let found = scan(d.path(), true).unwrap();
        assert_eq!(found.len(), 1);
        assert!(!hour.join("b.parquet").exists(), "uploaded segment deleted");
        assert!(!marker_path(&hour.join("b.parquet")).exists());
    }

    #[test]
    fn marker_is_a_hidden_sidecar() {
        assert_eq!(
            marker_path(Path::new("/c/d=1/s.parquet")),
            Path::new("/c/d=1/.s.parquet.uploaded")
        );
    }
}

//! The hive-style folder layout of a rotating capture, and local retention.
//!
//! A recorder that rotates writes `OUT/date=YYYY-MM-DD/hour=HH/NAME-YYYYMMDDTHHMMSSZ-NNNNNN.parquet` (UTC, the
//! segment's start), so DuckDB (`read_parquet('OUT/**/*.parquet', hive_partitioning = true)`), Spark, Trino and
//! DataFusion read the folder as one table partitioned by `date` and `hour`. The journal being written sits in its
//! partition as a hidden `.NAME….journal` and half-written segments as hidden `.NAME….parquet.tmp`: those readers
//! skip names starting with `.` or `_`.
//!
//! Retention deletes the oldest finished segments by age and by total size. It never touches journals (the open
//! segment) and asks the caller before each deletion, so a segment still waiting for upload is kept.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::segment;

/// Splits seconds since the epoch into UTC (year, month, day, hour, minute, second).
pub fn civil(secs: i64) -> (i64, u32, u32, u32, u32, u32) {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's days-from-civil, inverted.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let n = |v: i64| u32::try_from(v).unwrap_or(0);
    (year, n(month), n(day), n(rem / 3600), n(rem % 3600 / 60), n(rem % 60))
}

fn epoch_secs(t: SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// The partition folder of a segment that starts at `t`: `date=YYYY-MM-DD/hour=HH` (UTC).
pub fn partition(t: SystemTime) -> String {
    let (y, mo, d, h, _, _) = civil(epoch_secs(t));
    format!("date={y:04}-{mo:02}-{d:02}/hour={h:02}")
}

/// The compact UTC stamp in segment names: `YYYYMMDDTHHMMSSZ`.
pub fn stamp(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s) = civil(epoch_secs(t));
    format!("{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}Z")
}

/// The key of `path` relative to the capture folder, with `/` separators (`date=…/hour=…/NAME.parquet`): what an
/// uploader appends to its prefix.
pub fn key(dir: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(dir).unwrap_or(path);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// How much finished data a capture folder keeps locally. `None` keeps everything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    /// Delete segments finished longer ago than this.
    pub max_age: Option<Duration>,
    /// Delete the oldest segments while the finished segments together exceed this many bytes.
    pub max_bytes: Option<u64>,
}

impl Retention {
    /// True when nothing is ever deleted.
    pub fn keeps_everything(&self) -> bool {
        self.max_age.is_none() && self.max_bytes.is_none()
    }
}

/// A finished segment on disk.
#[derive(Debug, Clone)]
pub struct Finished {
    /// The file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// When it was finished (its modification time).
    pub finished: SystemTime,
}

/// Every finished segment (`*.parquet`, not hidden) under `dir`, oldest first.
pub fn finished_segments(dir: &Path) -> std::io::Result<Vec<Finished>> {
    let mut out = Vec::new();
    walk(dir, &mut out)?;
    out.sort_by(|a, b| a.finished.cmp(&b.finished).then_with(|| a.path.cmp(&b.path)));
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<Finished>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || name.starts_with('_') {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            walk(&entry.path(), out)?;
        } else if name.ends_with(segment::SUFFIX) {
            out.push(Finished {
                path: entry.path(),
                bytes: meta.len(),
                finished: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
            });
        }
    }
    Ok(())
}

/// What one retention pass did.
#[derive(Debug, Clone, Default)]
pub struct Swept {
    /// Segments deleted.
    pub deleted: Vec<PathBuf>,
    /// Bytes freed.
    pub freed: u64,
    /// Segments over the limits that `may_delete` kept (waiting for upload).
    pub held: usize,
    /// Bytes of finished segments left.
    pub kept_bytes: u64,
}

/// Deletes finished segments under `dir` over the limits, oldest first, asking `may_delete` before each one;
/// removes partition folders left empty.
pub fn enforce(
    dir: &Path,
    retention: &Retention,
    may_delete: &dyn Fn(&Path) -> bool,
    now: SystemTime,
) -> std::io::Result<Swept> {
    let segments = finished_segments(dir)?;
    let mut total: u64 = segments.iter().map(|s| s.bytes).sum();
    let mut swept = Swept::default();
    for s in &segments {
        let too_old = retention
            .max_age
            .is_some_and(|age| now.duration_since(s.finished).is_ok_and(|d| d > age));
        let too_big = retention.max_bytes.is_some_and(|max| total > max);
        if !too_old && !too_big {
            // Oldest first: the rest are newer (not too old) and the total only shrinks.
            break;
        }
        if !may_delete(&s.path) {
            swept.held += 1;
            continue;
        }
        match std::fs::remove_file(&s.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        total -= s.bytes;
        swept.freed += s.bytes;
        swept.deleted.push(s.path.clone());
        remove_empty_parents(dir, &s.path);
    }
    swept.kept_bytes = total;
    Ok(swept)
}

fn remove_empty_parents(dir: &Path, file: &Path) {
    let mut cur = file.parent();
    while let Some(p) = cur {
        if p == dir || !p.starts_with(dir) {
            break;
        }
        // Fails (and stops) when the folder is not empty.
        if std::fs::remove_dir(p).is_err() {
            break;
        }
        cur = p.parent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_match_known_instants() {
        assert_eq!(civil(0), (1970, 1, 1, 0, 0, 0));
        // 2000-02-29T12:34:56Z (a leap day)
        assert_eq!(civil(951_827_696), (2000, 2, 29, 12, 34, 56));
        // 2026-12-31T23:59:59Z
        assert_eq!(civil(1_798_761_599), (2026, 12, 31, 23, 59, 59));
        assert_eq!(civil(-1), (1969, 12, 31, 23, 59, 59));
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(951_827_696);
        assert_eq!(partition(t), "date=2000-02-29/hour=12");
        assert_eq!(stamp(t), "20000229T123456Z");
    }

    #[test]
    fn civil_agrees_with_humantime_everywhere() {
        for secs in (0..4_102_444_800i64).step_by(7_919_993) {
            let t = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap());
            let (y, mo, d, h, mi, s) = civil(secs);
            let want = humantime::format_rfc3339_seconds(t).to_string();
            assert_eq!(format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z"), want);
        }
    }

    fn touch(dir: &Path, rel: &str, len: usize) -> PathBuf {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, vec![0u8; len]).unwrap();
        p
    }

    #[test]
    fn retention_deletes_oldest_first_within_size_and_never_held_or_hidden_files() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let a = touch(d, "date=2026-01-01/hour=00/a.parquet", 100);
        std::thread::sleep(Duration::from_millis(20));
        let b = touch(d, "date=2026-01-01/hour=01/b.parquet", 100);
        std::thread::sleep(Duration::from_millis(20));
        let c = touch(d, "date=2026-01-01/hour=02/c.parquet", 100);
        let j = touch(d, "date=2026-01-01/hour=02/.c2.journal", 1000);
        let held = b.clone();
        let r = Retention {
            max_age: None,
            max_bytes: Some(150),
        };
        let swept = enforce(d, &r, &|p| p != held, SystemTime::now()).unwrap();
        // a goes; b is over the limit too but held (waiting for upload), so c, the next oldest, goes instead.
        assert_eq!(swept.deleted, vec![a.clone(), c.clone()]);
        assert_eq!(swept.held, 1);
        assert!(!a.exists() && b.exists() && !c.exists() && j.exists());
        assert!(!d.join("date=2026-01-01/hour=00").exists(), "empty partition removed");
        assert!(
            d.join("date=2026-01-01/hour=02").exists(),
            "the journal keeps its partition"
        );
        // Within the size limit now: nothing more goes.
        let swept = enforce(d, &r, &|_| true, SystemTime::now()).unwrap();
        assert!(swept.deleted.is_empty());
        assert_eq!(swept.kept_bytes, 100);
        // By age: everything finished more than 1 s before `now`.
        let later = SystemTime::now() + Duration::from_secs(3600);
        let r = Retention {
            max_age: Some(Duration::from_secs(1)),
            max_bytes: None,
        };
        let swept = enforce(d, &r, &|_| true, later).unwrap();
        assert_eq!(swept.deleted, vec![b]);
        assert!(j.exists(), "journals are never deleted");
    }
}

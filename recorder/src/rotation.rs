//! When the tap's writer closes a segment (`--rotate-size`, `--rotate-every`, SIGHUP), what happens to it after
//! (the [`crate::sink::SegmentSink`] hook, local retention), and what a restart does with leftover journals.
//!
//! Time rotation is aligned to the wall clock (multiples of the period since the Unix epoch, UTC), so with a
//! period that divides an hour no segment spans two `hour=` partitions and segments of several taps line up.
//! Size rotation compares the journal's size (Arrow, uncompressed) with the limit after each frame; the Parquet
//! segment it becomes is several times smaller.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use mcptape_datasets::layout::Retention;
use mcptape_datasets::recover::{Recovered, recover_journal};

use crate::log::Log;

/// Rotation and retention settings.
#[derive(Debug, Clone, Default)]
pub struct Rotation {
    /// Close the segment at every multiple of this period (wall clock).
    pub every: Option<Duration>,
    /// Close the segment once its journal holds this many bytes.
    pub size: Option<u64>,
    /// What finished segments are kept locally.
    pub retention: Retention,
}

impl Rotation {
    /// True when segments rotate by time or size (the capture then uses the hive layout).
    pub fn enabled(&self) -> bool {
        self.every.is_some() || self.size.is_some()
    }

    /// The next time rotation is due (monotonic clock), if rotating by time.
    pub fn next_due(&self, now_wall: SystemTime, now: Instant) -> Option<Instant> {
        let every = self.every.filter(|d| !d.is_zero())?;
        let since = now_wall.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        let period = every.as_nanos().max(1);
        let into = since.as_nanos() % period;
        let wait = u64::try_from(period - into).unwrap_or(u64::MAX);
        Some(now + Duration::from_nanos(wait))
    }
}

/// Turns journals a killed or crashed recorder left under `dir` into segments (as `mcptape dataset recover`
/// does) and returns the segments written. Called before a rotating capture starts, so the only journals are
/// leftovers (one recorder per folder). Failures are logged and the journal left for `dataset recover`.
pub fn recover_leftovers(dir: &Path, log: &Log) -> Vec<PathBuf> {
    let Ok(journals) = mcptape_datasets::scan::discover_journals(&[dir.to_path_buf()]) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for j in journals {
        match recover_journal(&j) {
            Ok(Recovered::Written {
                segment,
                frames,
                damage,
                ..
            }) => {
                let lost = damage.map_or(0, |(d, _)| d.lost_bytes);
                log.line(&format!(
                    "recovered {frames} frame(s) from the leftover journal {} into {} ({lost} damaged byte(s) lost)",
                    j.display(),
                    segment.display()
                ));
                out.push(segment);
            }
            Ok(Recovered::AlreadyDone { segment, .. }) => {
                log.line(&format!(
                    "removed the leftover journal {} (already in {})",
                    j.display(),
                    segment.display()
                ));
            }
            Err(e) => log.line(&format!(
                "cannot recover a leftover journal: {e}; run `mcptape dataset recover`"
            )),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_rotation_is_aligned_to_multiples_of_the_period() {
        let r = Rotation {
            every: Some(Duration::from_secs(60)),
            ..Rotation::default()
        };
        let now = Instant::now();
        let wall = SystemTime::UNIX_EPOCH + Duration::from_millis(1_000_000_000_250);
        // 1_000_000_000.25 s: the next minute boundary is 1_000_000_020 s.
        assert_eq!(r.next_due(wall, now), Some(now + Duration::from_millis(19_750)));
        let on = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_020);
        assert_eq!(r.next_due(on, now), Some(now + Duration::from_secs(60)));
        assert!(Rotation::default().next_due(wall, now).is_none());
        assert!(!Rotation::default().enabled());
    }
}

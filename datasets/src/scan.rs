//! Reading captures: files or folders (hive-style layouts included), with projection and filters on session,
//! method, direction, kind and time.

use std::path::{Path, PathBuf};

use arrow_array::{BooleanArray, RecordBatch};

use crate::error::{Error, Result};
use crate::frame::{Direction, Frame, Kind};
use crate::journal;
use crate::meta::CaptureMeta;
use crate::schema::{self, Columns, col};
use crate::segment::{self, Segment};

/// Which frames to keep. Empty lists keep everything.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Keep these session ids.
    pub sessions: Vec<String>,
    /// Keep these methods (answers carry the method of their request).
    pub methods: Vec<String>,
    /// Keep one direction.
    pub direction: Option<Direction>,
    /// Keep these kinds.
    pub kinds: Vec<Kind>,
    /// Keep frames captured at or after this wall-clock time (ns since the epoch).
    pub since_ns: Option<i64>,
    /// Keep frames captured before this wall-clock time (ns since the epoch).
    pub until_ns: Option<i64>,
}

impl Filter {
    /// True when the filter keeps everything.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
            && self.methods.is_empty()
            && self.direction.is_none()
            && self.kinds.is_empty()
            && self.since_ns.is_none()
            && self.until_ns.is_none()
    }

    fn columns(&self) -> Vec<&'static str> {
        let mut c = Vec::new();
        if !self.sessions.is_empty() {
            c.push(col::SESSION_ID);
        }
        if !self.methods.is_empty() {
            c.push(col::METHOD);
        }
        if self.direction.is_some() {
            c.push(col::DIRECTION);
        }
        if !self.kinds.is_empty() {
            c.push(col::KIND);
        }
        if self.since_ns.is_some() || self.until_ns.is_some() {
            c.push(col::TS);
        }
        c
    }

    /// The rows of `batch` to keep.
    pub fn mask(&self, batch: &RecordBatch) -> std::result::Result<BooleanArray, schema::ColumnError> {
        let n = batch.num_rows();
        let mut keep = vec![true; n];
        let c = Columns::new(batch);
        let mut retain_text = |name: &str, wanted: &[&str]| -> std::result::Result<(), schema::ColumnError> {
            let values = c.text(name)?;
            for (k, v) in keep.iter_mut().zip(values) {
                *k = *k && v.is_some_and(|v| wanted.contains(&v));
            }
            Ok(())
        };
        if !self.sessions.is_empty() {
            retain_text(
                col::SESSION_ID,
                &self.sessions.iter().map(String::as_str).collect::<Vec<_>>(),
            )?;
        }
        if !self.methods.is_empty() {
            retain_text(
                col::METHOD,
                &self.methods.iter().map(String::as_str).collect::<Vec<_>>(),
            )?;
        }
        if let Some(d) = self.direction {
            retain_text(col::DIRECTION, &[d.as_str()])?;
        }
        if !self.kinds.is_empty() {
            retain_text(col::KIND, &self.kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>())?;
        }
        if self.since_ns.is_some() || self.until_ns.is_some() {
            let ts = c.ts(col::TS)?;
            for (k, t) in keep.iter_mut().zip(ts) {
                let t = t.unwrap_or(i64::MIN);
                *k = *k && self.since_ns.is_none_or(|s| t >= s) && self.until_ns.is_none_or(|u| t < u);
            }
        }
        Ok(BooleanArray::from(keep))
    }
}

/// Capture files under `paths`: files as given, folders walked (sorted) for `*.parquet`. Errors name the path.
pub fn discover(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound(p.clone()),
            _ => Error::io(p, e),
        })?;
        if meta.is_dir() {
            let mut found = Vec::new();
            walk(p, &mut found, segment::SUFFIX)?;
            if found.is_empty() {
                let mut journals = Vec::new();
                walk(p, &mut journals, journal::SUFFIX)?;
                if !journals.is_empty() {
                    return Err(Error::NotCapture {
                        path: p.clone(),
                        reason: format!(
                            "{} unrecovered journal(s) and no segments; run `mcptape dataset recover {}`",
                            journals.len(),
                            p.display()
                        ),
                    });
                }
                return Err(Error::EmptyFolder(p.clone()));
            }
            out.extend(found);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// Journals (`*.journal`) under `paths`, for recovery and verification.
pub fn discover_journals(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            walk(p, &mut out, journal::SUFFIX)?;
        } else if p.to_string_lossy().ends_with(journal::SUFFIX) {
            out.push(p.clone());
        } else if !p.exists() {
            return Err(Error::NotFound(p.clone()));
        }
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>, suffix: &str) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let is_dir = path.is_dir();
        // Hidden and `_` names are skipped, as Spark and Hive do, except the rotating recorder's in-progress
        // journals (`.NAME.journal`), which recovery must find.
        let hidden_journal = !is_dir && suffix == journal::SUFFIX && name.starts_with('.');
        if (name.starts_with('.') || name.starts_with('_')) && !hidden_journal {
            continue;
        }
        if is_dir {
            walk(&path, out, suffix)?;
        } else if name.ends_with(suffix) {
            out.push(path);
        }
    }
    Ok(())
}

/// A read over capture files.
#[derive(Debug, Clone)]
pub struct Scan {
    files: Vec<PathBuf>,
    filter: Filter,
    columns: Option<Vec<&'static str>>,
}

impl Scan {
    /// A scan over files and folders; fails when a path is missing or a folder holds no capture.
    pub fn new(paths: &[PathBuf]) -> Result<Self> {
        Ok(Scan {
            files: discover(paths)?,
            filter: Filter::default(),
            columns: None,
        })
    }

    /// Keeps only frames the filter accepts.
    pub fn with_filter(mut self, filter: Filter) -> Self {
        self.filter = filter;
        self
    }

    /// Reads only these columns (plus those the filter needs).
    pub fn with_columns(mut self, columns: &[&'static str]) -> Self {
        self.columns = Some(columns.to_vec());
        self
    }

    /// The files this scan reads.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// Opens every file, checking each is a capture; returns their metadata.
    pub fn metas(&self) -> Result<Vec<(PathBuf, CaptureMeta, u64)>> {
        self.files
            .iter()
            .map(|f| Segment::open(f).map(|s| (s.path.clone(), s.meta.clone(), s.rows)))
            .collect()
    }

    /// Calls `f` with every (filtered, projected) batch, file by file.
    pub fn for_each_batch(&self, mut f: impl FnMut(&Path, &CaptureMeta, RecordBatch) -> Result<()>) -> Result<()> {
        // Open all first, so that a bad file fails the scan before any output.
        let segments = self
            .files
            .iter()
            .map(|p| Segment::open(p))
            .collect::<Result<Vec<_>>>()?;
        let columns = self.columns.as_ref().map(|c| {
            let mut c = c.clone();
            for extra in self.filter.columns() {
                if !c.contains(&extra) {
                    c.push(extra);
                }
            }
            c
        });
        for seg in segments {
            let path = seg.path.clone();
            let meta = seg.meta.clone();
            let reader = seg.reader(columns.as_deref())?;
            for batch in reader {
                let batch = batch.map_err(|e| Error::damaged(&path, e))?;
                let batch = if self.filter.is_empty() {
                    batch
                } else {
                    let mask = self.filter.mask(&batch).map_err(|e| Error::damaged(&path, e))?;
                    arrow_select::filter::filter_record_batch(&batch, &mask).map_err(|e| Error::damaged(&path, e))?
                };
                if batch.num_rows() > 0 {
                    f(&path, &meta, batch)?;
                }
            }
        }
        Ok(())
    }

    /// Calls `f` with every frame (all columns are read).
    pub fn for_each_frame(&self, mut f: impl FnMut(&Path, &CaptureMeta, Frame) -> Result<()>) -> Result<()> {
        let all = Scan {
            columns: None,
            ..self.clone()
        };
        all.for_each_batch(|path, meta, batch| {
            for frame in schema::from_batch(&batch).map_err(|e| Error::damaged(path, e))? {
                f(path, meta, frame)?;
            }
            Ok(())
        })
    }

    /// Every frame, in file order.
    pub fn frames(&self) -> Result<Vec<Frame>> {
        let mut out = Vec::new();
        self.for_each_frame(|_, _, frame| {
            out.push(frame);
            Ok(())
        })?;
        Ok(out)
    }
}

//! Parquet segments: the durable, queryable form of a capture.
//!
//! zstd-compressed, with the capture metadata as key-value metadata and the Arrow schema embedded, so that
//! DuckDB, Spark, pyarrow and this crate all read the same columns and types. Written as a hidden `.NAME.tmp`, fsynced, renamed.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use crate::error::{Error, Result};
use crate::fsx;
use crate::meta::CaptureMeta;
use crate::schema::{self, SCHEMA_VERSION, col};

/// File name suffix of segments.
pub const SUFFIX: &str = ".parquet";

/// Rows per Parquet row group.
const ROW_GROUP_ROWS: usize = 64 * 1024;

fn properties(meta: &CaptureMeta) -> WriterProperties {
    let kv = meta.to_pairs().into_iter().map(|(k, v)| KeyValue::new(k, v)).collect();
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap_or_default()))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        // Payloads are nearly all distinct: a dictionary only costs time.
        .set_column_dictionary_enabled(ColumnPath::from(col::PAYLOAD), false)
        .set_key_value_metadata(Some(kv))
        .build()
}

/// Writes `batches` as a Parquet segment at `dest` (via a hidden `.NAME.tmp` beside it), mode 0600.
pub fn write_segment<'a>(
    dest: &Path,
    meta: &CaptureMeta,
    batches: impl IntoIterator<Item = &'a RecordBatch>,
) -> Result<u64> {
    write_segment_from(dest, meta, batches.into_iter().map(|b| Ok(b.clone())))
}

/// [`write_segment`] from batches produced as it goes (read from a journal): an `Err` among them abandons the
/// segment, and nothing is left at `dest` or beside it.
pub fn write_segment_from(
    dest: &Path,
    meta: &CaptureMeta,
    batches: impl IntoIterator<Item = Result<RecordBatch>>,
) -> Result<u64> {
    let tmp = tmp_path(dest);
    let r = write_tmp_and_publish(&tmp, dest, meta, batches);
    if r.is_err() {
        // A full disk must not also be left holding half a segment.
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

fn write_tmp_and_publish(
    tmp: &Path,
    dest: &Path,
    meta: &CaptureMeta,
    batches: impl IntoIterator<Item = Result<RecordBatch>>,
) -> Result<u64> {
    let tmp = tmp.to_path_buf();
    let file = fsx::create_private_file_truncate(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let io = |e: parquet::errors::ParquetError| Error::io(&tmp, std::io::Error::other(e));
    let mut writer = ArrowWriter::try_new(
        file.try_clone().map_err(|e| Error::io(&tmp, e))?,
        schema::schema(),
        Some(properties(meta)),
    )
    .map_err(io)?;
    let mut rows = 0u64;
    for batch in batches {
        let batch = batch?;
        rows += batch.num_rows() as u64;
        // Batches from an older journal may carry schema metadata; write them under the file schema.
        let batch =
            RecordBatch::try_new(schema::schema(), batch.columns().to_vec()).map_err(|e| Error::damaged(&tmp, e))?;
        writer.write(&batch).map_err(io)?;
    }
    writer.close().map_err(io)?;
    fsx::publish(&file, &tmp, dest).map_err(|e| Error::io(dest, e))?;
    Ok(rows)
}

/// `.NAME.tmp` next to `dest`: hidden, so a reader listing the folder (Spark, Trino) never picks up a half-written
/// file, and in the same folder, so the rename is atomic.
fn tmp_path(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dest.with_file_name(format!(".{name}.tmp"))
}

/// An opened capture segment: its metadata and a reader builder for its batches.
#[derive(Debug)]
pub struct Segment {
    /// The file.
    pub path: PathBuf,
    /// The capture metadata in its footer.
    pub meta: CaptureMeta,
    /// Rows in the file.
    pub rows: u64,
    builder: ParquetRecordBatchReaderBuilder<GuardedFile>,
}

impl Segment {
    /// Opens a segment, checking that it is Parquet, an mcptape capture, and of a schema version this build reads.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound(path.to_path_buf()),
            _ => Error::io(path, e),
        })?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        if len == 0 {
            return Err(Error::NotParquet {
                path: path.to_path_buf(),
                reason: "empty file".into(),
            });
        }
        let builder = ParquetRecordBatchReaderBuilder::try_new(GuardedFile(file)).map_err(|e| Error::NotParquet {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let file_meta = builder.metadata().file_metadata();
        let pairs = file_meta
            .key_value_metadata()
            .map(|kv| {
                kv.iter()
                    .map(|p| (p.key.as_str(), p.value.as_deref().unwrap_or("")))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        let meta = CaptureMeta::from_pairs(pairs).ok_or_else(|| Error::NotCapture {
            path: path.to_path_buf(),
            reason: "no mcptape.schema_version in the file metadata".into(),
        })?;
        if meta.schema_version > SCHEMA_VERSION {
            return Err(Error::NotCapture {
                path: path.to_path_buf(),
                reason: format!(
                    "schema version {} is newer than this build reads ({SCHEMA_VERSION}); upgrade mcptape",
                    meta.schema_version
                ),
            });
        }
        schema::check_compatible(builder.schema()).map_err(|e| Error::NotCapture {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        check_column_ranges(builder.metadata(), len).map_err(|reason| Error::NotParquet {
            path: path.to_path_buf(),
            reason,
        })?;
        let rows = u64::try_from(file_meta.num_rows()).unwrap_or(0);
        Ok(Segment {
            path: path.to_path_buf(),
            meta,
            rows,
            builder,
        })
    }

    /// Reads the segment's batches, keeping only the named top-level columns (all when `None`).
    pub fn reader(self, columns: Option<&[&str]>) -> Result<SegmentReader> {
        let path = self.path;
        let mut builder = self.builder.with_batch_size(8192);
        if let Some(columns) = columns {
            let arrow = Arc::clone(builder.schema());
            let roots: Vec<usize> = columns
                .iter()
                .filter_map(|c| arrow.index_of(c).ok())
                .collect::<Vec<_>>();
            let mask = parquet::arrow::ProjectionMask::roots(builder.parquet_schema(), roots);
            builder = builder.with_projection(mask);
        }
        let inner = builder.build().map_err(|e| Error::damaged(&path, e))?;
        Ok(SegmentReader { inner: Some(inner) })
    }
}

/// Checks that every column chunk's byte range lies inside the file. The Parquet crate asserts (panics) on a
/// negative offset, which one flipped bit in the footer produces (found by the `parquet` fuzz target).
fn check_column_ranges(
    meta: &parquet::file::metadata::ParquetMetaData,
    file_len: u64,
) -> std::result::Result<(), String> {
    for (g, rg) in meta.row_groups().iter().enumerate() {
        for (c, col) in rg.columns().iter().enumerate() {
            let start = col.dictionary_page_offset().unwrap_or_else(|| col.data_page_offset());
            let len = col.compressed_size();
            let inside = start >= 0
                && len >= 0
                && (start as u64)
                    .checked_add(len as u64)
                    .is_some_and(|end| end <= file_len);
            if !inside {
                return Err(format!(
                    "row group {g}, column {c}: bytes {start}+{len} are outside the file ({file_len} bytes): damaged footer"
                ));
            }
        }
    }
    Ok(())
}

/// The batches of a segment. A panic inside the Parquet reader (its asserts on damaged input) becomes an error
/// for that file and ends the iteration, rather than taking the process down.
pub struct SegmentReader {
    inner: Option<ParquetRecordBatchReader>,
}

impl std::fmt::Debug for SegmentReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentReader").finish_non_exhaustive()
    }
}

impl Iterator for SegmentReader {
    type Item = std::result::Result<RecordBatch, arrow_schema::ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        let inner = self.inner.as_mut()?;
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inner.next())) {
            Ok(item) => item,
            Err(_) => {
                self.inner = None;
                Some(Err(arrow_schema::ArrowError::ParquetError(
                    "the Parquet reader panicked on damaged data".into(),
                )))
            }
        }
    }
}

/// A segment file as the Parquet reader sees it, with one defence added: a reader that hits the end of the file a
/// second time fails instead of answering "0 bytes" again. A damaged page header can declare a list of millions
/// of elements; the Parquet crate's thrift skipper then reads each from the end of the file one by one, which took
/// minutes per file before this guard (found by the `parquet` fuzz target; the file is pinned in
/// benches/tests/fixtures). With it the reader errors at once.
#[derive(Debug)]
pub struct GuardedFile(File);

impl parquet::file::reader::Length for GuardedFile {
    fn len(&self) -> u64 {
        parquet::file::reader::Length::len(&self.0)
    }
}

impl parquet::file::reader::ChunkReader for GuardedFile {
    type T = EofGuard<std::io::BufReader<File>>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        Ok(EofGuard {
            inner: self.0.get_read(start)?,
            at_eof: false,
        })
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<bytes::Bytes> {
        self.0.get_bytes(start, length)
    }
}

/// A reader that reports the end of its input once, and an error on every later read.
#[derive(Debug)]
pub struct EofGuard<R> {
    inner: R,
    at_eof: bool,
}

impl<R: std::io::Read> std::io::Read for EofGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.at_eof {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "read past the end of the file (damaged page header)",
            ));
        }
        let n = self.inner.read(buf)?;
        self.at_eof = n == 0;
        Ok(n)
    }
}

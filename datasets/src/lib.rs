//! THE capture format of mcptape, and the wire-level helpers every other crate shares.
//!
//! One row per observed message or lifecycle event ([`Frame`]); `payload` holds the exact bytes and every other
//! column is an index derived from it or from the transport. While a tap runs, frames go to an Arrow IPC journal
//! that survives a kill ([`journal`]); at rotation and exit the journal becomes a zstd Parquet segment
//! ([`segment`]), which any Parquet reader can query. Secrets are redacted before anything reaches disk.
//!
//! Why Arrow and Parquet rather than JSON: captures of production traffic are large, are queried by data teams
//! with DuckDB or Spark where they land, and must be read back fast for replay and load.
//!
//! Only this crate names arrow and parquet types; the rest of the workspace sees [`Frame`]s and [`Scan`]s.

pub mod annotate;
pub mod cli;
pub mod error;
pub mod frame;
pub mod fsx;
pub mod human;
pub mod journal;
pub mod layout;
pub mod meta;
pub mod recover;
pub mod redact;
pub mod scan;
pub mod schema;
pub mod segment;
pub mod summary;
pub mod wire;
pub mod writer;

pub use error::{Error, Result};
pub use frame::{Direction, Frame, HttpMeta, Kind, Transport};
pub use meta::CaptureMeta;
pub use scan::{Filter, Scan};
pub use writer::{CaptureWriter, Layout, WriterOptions};

//! The tap: one [`Tap`] core that every transport adapter (stdio child process; HTTP reverse proxy for
//! Streamable HTTP, the legacy HTTP+SSE transport and WebSocket) feeds with copies of the bytes it forwards.
//!
//! Why one core: framing, classification, correlation and redaction must behave the same whatever carried the
//! bytes, and forwarding must never wait for the recorder. Adapters therefore only move bytes and hand refcounted
//! copies to the core, which classifies, redacts and writes them on its own thread behind a bounded queue
//! (drop-and-count when full, or backpressure with `--lossless`).

pub mod cli;
pub mod config;
pub mod http;
pub mod log;
pub mod metrics;
pub mod paths;
pub mod rotation;
pub mod sample;
pub mod service;
pub mod sink;
pub mod stdio;
pub mod tap;
pub mod unix;
pub mod upload;

pub use cli::{RecordArgs, run};
pub use tap::{Observed, SessionTap, Tap, TapConfig, TapSummary, TapWriter};

//! Wire-level helpers shared by the recorder, the replayer and the dataset tools.
//!
//! They live in `datasets` because the capture format is defined by what they extract: the tap frames bytes
//! (NDJSON lines, SSE events) inline on the forwarding path and classifies them on the writer task, and replay,
//! serve and `dataset recover` must derive exactly the same columns from the same bytes. Everything here works on
//! borrowed bytes in one pass, never builds a JSON tree, and never panics on any input: a tap sees whatever a
//! misbehaving peer sends.

pub mod envelope;
pub mod json;
pub mod ndjson;
pub mod sse;

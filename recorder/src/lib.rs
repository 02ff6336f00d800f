//! The tap: one `Tap` core that every transport adapter (stdio child process, HTTP reverse proxy, WebSocket)
//! feeds with copies of the bytes it forwards.
//!
//! Why one core: framing, classification, correlation and redaction must behave the same whatever carried the
//! bytes, and forwarding must never wait for the recorder. Adapters therefore only move bytes and hand refcounted
//! copies to the core, which frames them inline and builds Arrow batches on a writer task behind a bounded queue.
//!
//! Not built yet: this crate is the home of `mcptape record` (issues "Stdio tap" and "HTTP tap").

//! End-to-end tests of the `mcptape` binary: one test binary, a module per topic.

mod dataset;
mod frame_cli;
mod peers;
mod pyarrow;
mod record;
mod util;

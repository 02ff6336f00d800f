//! End-to-end tests of the `mcptape` binary: one test binary, a module per topic.

mod dataset;
mod faults;
mod frame_cli;
mod http;
mod load;
mod peers;
mod pyarrow;
mod record;
mod replay;
mod security;
mod util;

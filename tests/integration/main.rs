//! End-to-end tests of the `mcptape` binary: one test binary, a module per topic.

mod dataset;
mod frame_cli;
mod http;
mod load;
mod peers;
mod production;
mod pyarrow;
mod record;
mod replay;
mod util;

//! End-to-end tests of the `mcptape` binary: one test binary, a module per topic.

mod dataset;
mod demo;
mod docs;
mod duckdb;
mod faults;
mod frame_cli;
mod http;
mod load;
mod peers;
mod production;
mod pyarrow;
mod record;
mod replay;
mod report;
mod samples;
mod security;
mod util;

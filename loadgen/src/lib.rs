//! The load generator: many concurrent replays of recorded sessions (open or closed model), measured with
//! HdrHistograms so that memory does not grow with the run and shard reports merge exactly.
//!
//! Why on top of the replayer's session engine: a load test should run the sessions users really run, with the
//! same causality, id rewriting and answers to server requests as a replay, not a made-up scenario.

pub mod cli;
pub mod report;
pub mod run;
pub mod stats;

pub use cli::{LoadArgs, run_cli as run};

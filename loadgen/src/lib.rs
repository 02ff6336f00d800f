//! The load generator: many concurrent replays of recorded sessions (open or closed model), measured with
//! HdrHistograms so that memory does not grow with the run and shard reports merge exactly.
//!
//! Why on top of the replayer's session engine: a load test should run the sessions users really run, not a
//! made-up scenario.
//!
//! Not built yet: this crate is the home of `mcptape load`.

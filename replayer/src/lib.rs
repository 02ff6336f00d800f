//! The session engine: rebuilds the client side of recorded sessions and re-sends it to a live server or gateway
//! (`mcptape replay`), diffs the answers, and impersonates a recorded server (`mcptape serve`).
//!
//! Why one crate for both faces: the schedule, id and session rewriting and the matching of requests to recorded
//! answers are the same problem seen from either end of the connection.

pub mod cli;
pub mod compare;
pub mod engine;
pub mod link;
pub mod script;
pub mod serve;

pub use cli::{ReplayArgs, run};
pub use serve::{ServeArgs, run as serve};

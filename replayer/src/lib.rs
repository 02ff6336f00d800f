//! The session engine: rebuilds the client side of recorded sessions and re-sends it to a live server or gateway
//! (`mcptape replay`), diffs the answers, and impersonates a recorded server (`mcptape serve`).
//!
//! Why one engine for both faces: the schedule, id and session rewriting and the matching of requests to recorded
//! answers are the same problem seen from either end of the connection.
//!
//! Not built yet: this crate is the home of `mcptape replay` and `mcptape serve`.

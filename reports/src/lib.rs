//! The report model shared by replay and load runs: versioned JSON, and its text and Markdown renderings.
//!
//! Why a crate of its own: CI compares reports made on different machines and days, so the model is a contract
//! that must not depend on the code that produced it. Every report carries `schema` (`mcptape.replay/1`, …) so a
//! reader refuses what it does not understand instead of misreading it.

pub mod load;
pub mod replay;

pub use load::{Hist, LoadReport, MergeError, MethodReport, SecondPoint};
pub use replay::ReplayReport;

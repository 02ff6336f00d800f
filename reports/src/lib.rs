//! The report model shared by replay and load runs (versioned JSON), and what `mcptape report` does with it: show,
//! merge, compare with budgets and a noise guard, and plot.
//!
//! Why a crate of its own: CI compares reports made on different machines and days, so the model is a contract
//! that must not depend on the code that produced it. Every report carries `schema` (`mcptape.replay/1`, …) so a
//! reader refuses what it does not understand instead of misreading it.

pub mod cli;
pub mod compare;
pub mod file;
pub mod html;
pub mod load;
pub mod render;
pub mod replay;
pub mod show;

pub use cli::ReportArgs;
pub use file::{AnyReport, read_report};
pub use load::{Hist, LoadReport, MergeError, MethodReport, SecondPoint};
pub use replay::ReplayReport;

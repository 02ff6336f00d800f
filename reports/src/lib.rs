//! The report model shared by replay and load runs: versioned JSON with a schema, exact merge, comparison with
//! noise-aware budgets (a CI gate), and text/Markdown/JUnit/HTML renderings.
//!
//! Why a crate of its own: CI compares reports made on different machines and days, so the model is a contract
//! that must not depend on the code that produced it.
//!
//! Not built yet: this crate is the home of `mcptape report`.

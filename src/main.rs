//! `mcptape`: record, replay, impersonate, load-test and judge MCP traffic. This file only starts the runtime
//! and turns errors into one line on stderr and an exit code; the commands live in the library crates.

use std::process::ExitCode;

mod cli;

fn main() -> ExitCode {
    cli::main()
}

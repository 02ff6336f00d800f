//! `mcptape`: record, replay, impersonate, load-test and judge MCP traffic. This file only starts the runtime
//! and turns errors into one line on stderr and an exit code; the commands live in the library crates.

use std::process::ExitCode;

mod cli;

// glibc's allocator was a fifth of the HTTP tap's instructions per request (frames are allocated on the proxy
// thread and freed on the writer thread); mimalloc's thread-local heaps make both ends cheap.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    cli::main()
}

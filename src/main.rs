//! `mcptape`: record, replay, impersonate, load-test and judge MCP traffic. This file only starts the runtime
//! and turns errors into one line on stderr and an exit code; the commands live in the library crates.

use std::process::ExitCode;

mod cli;

// mimalloc, not glibc's malloc: the relays hand the capture writer a fresh buffer per read and the writer frees
// it on another thread, which made glibc trim and re-fault its per-thread heaps (a 75 MB stdio stream took
// 109k page faults, 6.6k with mimalloc).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    cli::main()
}

//! cons, the console multiplexer (see the library's documentation).
//!
//! `rom/cons [options]`, started by ned with its factory capability named
//! `cons` and the kernel console as its log. Off the target this binary
//! only parses its options.

#![forbid(unsafe_code)]

use std::process::ExitCode;

#[cfg(target_arch = "aarch64")]
mod server;

/// cons's allocator on the target, as ned's and io's: the runtime's buddy
/// heap, a few mappings instead of musl's page after page at start.
#[cfg(all(target_os = "linux", target_arch = "aarch64"))]
#[global_allocator]
static HEAP: l4re::heap::ProgramHeap = l4re::heap::ProgramHeap::new();

fn main() -> ExitCode {
    let opts = match cons::Options::parse(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(cons::OptError::Help) => {
            println!("{}", cons::options::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("cons: {e}\n{}", cons::options::USAGE);
            return ExitCode::from(2);
        }
    };
    run(opts)
}

#[cfg(target_arch = "aarch64")]
fn run(opts: cons::Options) -> ExitCode {
    match server::run(opts) {
        Ok(never) => match never {},
        Err(e) => {
            eprintln!("cons: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(not(target_arch = "aarch64"))]
fn run(_: cons::Options) -> ExitCode {
    eprintln!("cons: the server runs only as an L4 task on AArch64");
    ExitCode::FAILURE
}

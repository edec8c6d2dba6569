//! uvmm, the virtual machine monitor (see the library's documentation).
//!
//! `rom/uvmm [options]`, started by ned with the guest's RAM dataspace as
//! the `ram` capability (vmm.lua's `start_vm`). Off the target this binary
//! only parses its options.

use std::process::ExitCode;

#[cfg(all(target_os = "linux", target_arch = "aarch64", target_env = "musl"))]
mod l4vm;
#[cfg(all(target_os = "linux", target_arch = "aarch64", target_env = "musl"))]
mod target;

fn main() -> ExitCode {
    let opts = match uvmm::Options::parse(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(uvmm::OptError::Help) => {
            println!("{}", uvmm::options::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            uvmm::log::line(format_args!("uvmm: {e}\n{}", uvmm::options::USAGE));
            return ExitCode::from(2);
        }
    };
    uvmm::log::init(&opts);
    run(opts)
}

#[cfg(all(target_os = "linux", target_arch = "aarch64", target_env = "musl"))]
fn run(opts: uvmm::Options) -> ExitCode {
    target::run(opts)
}

#[cfg(not(all(target_os = "linux", target_arch = "aarch64", target_env = "musl")))]
fn run(_: uvmm::Options) -> ExitCode {
    eprintln!("uvmm: the VMM runs only as an L4 task on AArch64");
    ExitCode::FAILURE
}

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

/// uvmm's allocator on the target, as ned's: the runtime's buddy heap, a
/// few mappings at start where musl's maps page after page, and less code
/// to run before the guest's first instruction (musl's allocator was 570 of
/// the 5,075 blocks QEMU translated for uvmm until then).
#[cfg(all(target_os = "linux", target_arch = "aarch64", target_env = "musl"))]
#[global_allocator]
static HEAP: l4re::heap::ProgramHeap = l4re::heap::ProgramHeap::new();

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

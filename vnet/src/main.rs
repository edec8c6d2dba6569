//! `l4vio_net_p2p`, the virtio network switch (see the library's
//! documentation).
//!
//! `rom/l4vio_net_p2p`, started by vmm.lua's `start_virtio_switch` with its
//! factory gate as the capability `svr`. Off the target this binary only
//! says so.

use std::process::ExitCode;

#[cfg(all(target_os = "linux", target_arch = "aarch64", target_env = "musl"))]
mod server;

#[cfg(all(target_os = "linux", target_arch = "aarch64", target_env = "musl"))]
fn main() -> ExitCode {
    match server::run() {
        Ok(never) => match never {},
        Err(e) => {
            eprintln!("l4vio_net_p2p: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(not(all(target_os = "linux", target_arch = "aarch64", target_env = "musl")))]
fn main() -> ExitCode {
    eprintln!("l4vio_net_p2p: the switch runs only as an L4 task on AArch64");
    ExitCode::FAILURE
}

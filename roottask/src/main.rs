//! moe, the root task (`aarch64-unknown-none`).
//!
//! moe takes most of the RAM from the kernel (Sigma0), serves dataspaces,
//! the `rom/` name space of the boot modules, log objects, scheduler
//! proxies and the user factory, and starts the init program named on its
//! command line (see [`roottask::cmdline`]) with the runtime `rom/l4re`. The
//! portable logic is the `moe` library; this binary adds the kernel calls:
//! [`rt`] boots and serves with [`roottask::server`].
//!
//! On other targets the binary is a stub, so that the workspace builds and
//! tests the library on the host.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(target_os = "none")]
extern crate alloc;

#[cfg(target_os = "none")]
mod rt;

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("moe is the root task: build it with --target aarch64-unknown-none");
}

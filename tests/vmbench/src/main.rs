//! vmbench, a tiny bare-metal guest for uvmm (`aarch64-unknown-none`, EL1,
//! MMU off): it times the operations that leave the guest and prints one
//! line each, then powers the VM off. `cargo xtask bench vm` boots it
//! (entry `vmbench`, under `-icount shift=0`) and tabulates the lines; see
//! [`guest`] for what each operation includes.
//!
//! On other targets the binary is a stub, so that the workspace builds and
//! tests the library on the host.

#![cfg_attr(target_os = "none", no_std, no_main)]
#![deny(unsafe_op_in_unsafe_fn)]

#[cfg(target_os = "none")]
mod guest;

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("vmbench is a guest for uvmm: build it with --target aarch64-unknown-none");
}

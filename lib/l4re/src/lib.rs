//! The in-task runtime (`rom/l4re`): region manager, pager and Linux-ABI
//! personality of every task a loader starts, and [`env`] for the programs
//! that run over it.
//!
//! The loader (moe or ned) maps the runtime's binary into each new task
//! beside the program and starts it with the environment page
//! ([`l4_env`]). The runtime then
//!
//! * loads the program ELF from the `PROGRAM` dataspace (static
//!   executables and static PIE, as Rust's `aarch64-unknown-linux-musl`
//!   target links them; read with [`l4_loader::elf`]) into regions of its
//!   [`regions::RegionMap`], builds the main thread's stack as Linux does
//!   ([`stack`]) and starts it;
//! * is the pager of every program thread: a page fault is answered by
//!   mapping the page from the region's dataspace into the task; a fault
//!   outside the regions is reported and ends the task (exit code -11);
//! * is their exception handler: each Linux system call (`svc #0`) arrives
//!   as an exception message and is served by [`runtime::Runtime`] (the
//!   list is [`linux::Sys`]; anything else returns `-ENOSYS`, logged once);
//!   other exceptions are reported and end the task.
//!
//! The crate is a library of portable, host-tested logic plus the `l4re`
//! binary (AArch64 only, `src/main.rs` and `src/rt/`), which implements
//! [`runtime::Backend`] with L4 calls and runs the serve loop. Programs
//! (AArch64 Linux builds) may allocate with `heap::ProgramHeap`.

#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

extern crate alloc;

pub mod env;
pub mod fd;
pub mod futex;
#[cfg(all(target_os = "linux", target_arch = "aarch64"))]
pub mod heap;
pub mod layout;
pub mod linux;
pub mod regions;
pub mod runtime;
pub mod stack;
#[cfg(all(target_os = "linux", target_arch = "aarch64"))]
mod syscall;

pub use l4_abi as abi;

//! The kernel's portable logic: plain Rust that also builds for the host,
//! where `cargo test` exercises it.

#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod cmdline;
pub mod esr;

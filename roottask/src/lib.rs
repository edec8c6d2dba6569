//! moe's portable logic: everything of the root task that does not talk to
//! the kernel, so it is unit tested on the host. The binary (`main.rs`,
//! AArch64 only) puts it together with the kernel calls.
//!
//! * [`boot`]: the kernel interface at boot and how much RAM moe takes;
//! * [`pages`]: the buddy allocator of moe's RAM;
//! * [`ds`]: dataspaces (contiguous or on demand, pinned, super pages);
//! * [`ns`]: name spaces;
//! * [`log`]: log objects' tagged lines;
//! * [`sched`]: scheduler proxies' limits;
//! * [`cmdline`]: moe's command line;
//! * [`server`]: the objects moe serves and its request handling, over a
//!   [`server::Kernel`] trait (the binary implements it with the kernel
//!   calls).

#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

extern crate alloc;

pub mod boot;
pub mod cmdline;
pub mod ds;
pub mod log;
pub mod ns;
pub mod pages;
pub mod sched;
pub mod server;

//! The kernel's portable logic: plain Rust that also builds for the host,
//! where `cargo test` exercises it. No `unsafe` here; the arch code in the
//! kernel crate owns the hardware and calls into these modules.
//!
//! * [`kobj`]: object arena with generation-checked ids (liveness);
//! * [`cap`]: per-task capability tables with rights checks;
//! * [`mapdb`]: the mapping database (map, grant, recursive unmap);
//! * [`ipc_rules`]: invocation decoding, timeouts, message-transfer rules;
//! * [`runqueue`]: per-CPU run queues, priorities, quanta, affinity;
//! * [`shortcut`]: a Vm's MMIO shortcuts (accesses answered in the kernel);
//! * [`quota`]: kernel-memory quotas of factories;
//! * [`sleeplock`]: the big kernel lock's algorithm (spin, then sleep until
//!   a release wakes the waiter);
//! * [`cmdline`]: boot options;
//! * [`arch::aarch64::esr`]: exception syndromes (architecture knowledge);
//! * [`input`]: console input and the escape into the kernel debugger.
//!
//! Lookups, scheduling and the IPC transfer rules never allocate; map,
//! grant, unmap and object creation do (the kernel has a heap).

#![no_std]
#![forbid(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

extern crate alloc;

pub mod arch;
pub mod cap;
pub mod cmdline;
pub mod input;
pub mod ipc_rules;
pub mod kobj;
pub mod mapdb;
pub mod quota;
pub mod runqueue;
pub mod shortcut;
pub mod sleeplock;

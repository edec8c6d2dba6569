//! Typed capabilities: the user side of the kernel's objects.
//!
//! A [`Cap<T>`] is a capability index with a marker type saying which kernel
//! object it names ([`Task`], [`Thread`], [`Factory`], [`IpcGate`], [`Irq`],
//! [`Icu`], [`Scheduler`], [`Vcon`], [`Semaphore`], [`Sigma0`]), in the seL4
//! spirit: the methods a marker allows are the operations that object
//! understands, and each builds its message in the calling thread's UTCB
//! exactly as [`l4_abi::proto`] lays it out, invokes the capability with a
//! call, and decodes the reply (a negative reply label or a failed IPC is an
//! [`Error`]).
//!
//! * [`msg`]: the message builders, plain functions on a [`Utcb`] value, so
//!   every layout is unit tested on the host;
//! * [`cap`]: [`Cap<T>`], the markers and the root task's base capabilities
//!   ([`base`]);
//! * the object stubs (`impl Cap<Task>` and so on, AArch64 only);
//! * `ipc`: the raw IPC calls of `l4_abi::call` plus reply and a raw
//!   system call (AArch64 only);
//! * `utcb`: safe accessors of the calling thread's UTCB (AArch64 only);
//! * [`slots`]: a lock-free allocator of capability slots (or any small
//!   indices);
//! * [`server`]: what a server that makes a gate per client needs from the
//!   kernel ([`ServerCaps`]; on AArch64 implemented on slots);
//! * [`io`]: [`print!`]/[`println!`] over the kernel console (Vcon);
//! * [`cache`] (`l4_abi::cache`): cleaning what a guest reads with its
//!   caches off.
//!
//! The crate is `no_std` and never allocates.

#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod cap;
pub mod io;
pub mod msg;
pub mod server;
pub mod slots;

#[cfg(target_arch = "aarch64")]
pub mod ipc;
#[cfg(target_arch = "aarch64")]
mod objects;
#[cfg(target_arch = "aarch64")]
pub mod utcb;

pub use cap::{
    Cap, Factory, Icu, IpcGate, Irq, Kobject, Scheduler, Semaphore, Sigma0, Task, Thread, Vcon, Vm,
    base,
};
#[cfg(target_arch = "aarch64")]
pub use ipc::Msg;
pub use l4_abi as abi;
pub use l4_abi::cache;
/// The replies of `Thread::ExRegs`, `Icu::Info` and `Scheduler::Info`
/// ([`l4_abi::ops`]) under this crate's names.
pub use l4_abi::ops::{
    ExRegsReply as ExRegs, IcuInfoReply as IcuInfo, SchedInfoReply as SchedInfo,
};
pub use l4_abi::{
    CapRights, Error, Fpage, MemRights, MsgTag, Proto, RecvItem, SendItem, Timeout, Timeouts, Utcb,
};
pub use msg::{SchedParams, ThreadControl};
#[cfg(target_arch = "aarch64")]
pub use objects::{object_timeouts, set_object_timeouts};
pub use server::ServerCaps;
pub use slots::SlotAlloc;

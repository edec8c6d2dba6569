//! The kernel's system-call ABI, shared by the kernel and every task.
//!
//! The ABI follows Fiasco's: everything is an object named by a capability
//! index, and there is one system call, *invoke*, which sends and/or
//! receives a message.
//!
//! # Native call: `svc #1` ([`SVC_NATIVE`])
//!
//! | register | in                                                    | out                                   |
//! |----------|-------------------------------------------------------|---------------------------------------|
//! | `x0`     | capability index << 12 \| op flags ([`sys`])          | status: 0, or a negative [`Error`]    |
//! | `x1`     | message tag ([`MsgTag`])                              | received tag                          |
//! | `x2`     | timeouts: send in bits 16..32, receive 0..16 ([`Timeouts`]) | label (badge) of the gate/sender |
//! | `x8`     | [`sys::X8_IPC`] (0); non-zero: temporary [`debug`] calls | preserved                          |
//!
//! A message through an IPC gate arrives with the gate's label ORed with
//! the `W` and `S` rights of the sender's capability
//! ([`fpage::CapRights::LABEL_BITS`]): a server tells what a client may do
//! from them, and gives its objects labels with those bits zero.
//!
//! All other registers, including SIMD/FP, are preserved. The op flags are
//! Fiasco's: [`sys::SEND`] = 1, [`sys::RECV`] = 2, [`sys::OPEN_WAIT`] = 4
//! (receive from anyone), [`sys::REPLY`] = 8. Call = SEND|RECV,
//! reply-and-wait = SEND|RECV|OPEN_WAIT|REPLY, send = SEND, wait =
//! RECV|OPEN_WAIT, receive from one partner = RECV.
//!
//! The message itself is in the calling thread's [`utcb::Utcb`]: untyped
//! words in the first message registers, then typed items (two words each:
//! [`fpage::SendItem`]) that map or grant memory pages or capabilities
//! ([`fpage::Fpage`]). The receiver says where it accepts mappings with
//! receive items ([`fpage::RecvItem`]) in its buffer registers. Errors:
//! [`error`]; timeouts: [`timeout`]; kernel objects and their operations:
//! [`proto`], their message layouts: [`ops`]; page-fault and exception
//! messages: [`fault`]; the initial capabilities of the root task:
//! [`base_caps`].
//!
//! # Deferred replies
//!
//! A call leaves the caller waiting for the callee's reply; the callee
//! answers through its implicit reply capability (REPLY flag), which the
//! next receive replaces. The callee may also answer later: a plain send
//! (no receive phase) to the caller's *thread* capability is delivered as
//! that reply while the caller still waits for it. A server (the in-task
//! runtime serving a futex wait, a console serving a blocking read) keeps
//! the caller's thread capability and replies when the answer is ready.
//! Page-fault and exception messages are answered the same way.
//!
//! # Linux system call: `svc #0` ([`SVC_LINUX`])
//!
//! Not handled by the kernel: it becomes an exception message to the
//! thread's exception handler, which emulates the call and replies with
//! the new register state ([`fault`]).
//!
//! Only `call` (AArch64 only) contains assembly; everything else is plain data
//! and is tested on the host.

#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

/// An enum of numbered variants with a text each. The number is the
/// variant's discriminant (of the integer type given); the three names in
/// braces are those of the functions that give the variant with a number
/// (`None` if none has it), a variant's number, and its text. `ALL` lists
/// every variant in order.
#[macro_export]
macro_rules! numbered_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $enum:ident: $repr:ident { $from:ident, $number:ident, $text:ident }
        $( $(#[$doc:meta])* $name:ident = $num:expr, $t:literal; )*
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr($repr)]
        $vis enum $enum {
            $( $(#[$doc])* $name = $num, )*
        }

        impl $enum {
            /// The variant numbered `n`, if there is one.
            pub const fn $from(n: $repr) -> Option<$enum> {
                match n {
                    $( $num => Some($enum::$name), )*
                    _ => None,
                }
            }

            /// The number.
            pub const fn $number(self) -> $repr {
                self as $repr
            }

            /// The text.
            pub const fn $text(self) -> &'static str {
                match self {
                    $( $enum::$name => $t, )*
                }
            }

            /// Every variant, in order.
            pub const ALL: &'static [$enum] = &[ $( $enum::$name, )* ];
        }
    };
}

pub mod cache;
pub mod cpuid;
pub mod error;
pub mod fault;
pub mod fpage;
pub mod msgtag;
pub mod ops;
pub mod proto;
pub mod runs;
pub mod sys;
pub mod timeout;
pub mod utcb;
pub mod vcpu;

#[cfg(target_arch = "aarch64")]
pub mod call;

pub use error::Error;
pub use fpage::{CapRights, Fpage, MemRights, RecvItem, SendItem};
pub use msgtag::MsgTag;
pub use proto::Proto;
pub use sys::Cap;
pub use timeout::{Timeout, Timeouts};
pub use utcb::Utcb;

/// The `svc` immediate of native kernel calls.
pub const SVC_NATIVE: u16 = 1;
/// The `svc` immediate of Linux system calls (reflected to the exception handler).
pub const SVC_LINUX: u16 = 0;

/// Temporary debug operations (selected by `x8`), to be replaced by
/// invocations of the kernel's Vcon.
pub mod debug {
    /// Write `x1` bytes at `x0` to the kernel console; returns the count.
    pub const PUTS: u64 = 0xd0;
    /// End the calling task with exit code `x0`.
    pub const EXIT: u64 = 0xd1;
}

/// The root task's memory protocol on its [`base_caps::PAGER`] capability
/// (label [`Proto::Sigma0`]; layouts: [`ops::Sigma0Msg`]). Every mapping is
/// 1:1 (virtual = physical) in the caller; the reply is the address
/// ([`ops::Sigma0Reply`]), a negative label an error.
pub mod sigma0 {
    /// Free RAM, read-write-execute, as it is: the kernel does not clear
    /// it (the root task clears what it hands on, and only when it does).
    pub const MAP_FREE: u64 = 1;
    /// Device memory (refused for RAM), read-write.
    pub const MAP_DEVICE: u64 = 2;
    /// Memory of a boot module (must lie inside one module), read-execute.
    pub const MAP_MODULE: u64 = 3;
}

/// Fixed addresses of the root task.
pub mod root {
    /// The kernel's boot-info page (modules, memory map, command lines),
    /// mapped read-only.
    pub const BOOTINFO_VA: u64 = 0x0000_7ffd_0000_0000;
    /// The UTCB area: 64 UTCBs of 1 KiB; the first thread's is the first.
    pub const UTCB_AREA: u64 = 0x0000_7ff0_0000_0000;
    /// Size of the UTCB area.
    pub const UTCB_AREA_SIZE: u64 = 64 * 1024;
    /// Top of the first thread's stack.
    pub const STACK_TOP: u64 = 0x0000_7fff_ffff_0000;
    /// Size of that stack.
    pub const STACK_SIZE: u64 = 64 * 1024;
    /// Free RAM Sigma0 keeps for the kernel (beyond its heap): `MAP_FREE`
    /// is refused when it would leave less. Translation tables (stage 1
    /// and 2), kernel stacks and UTCB areas come from it.
    pub const KERNEL_MEMORY: u64 = 40 << 20;
    /// The root factory's quota: as much as [`KERNEL_MEMORY`] (what the
    /// quota pays for comes partly from those frames, partly from the
    /// kernel heap), so what the quota allows is there.
    pub const ROOT_QUOTA: u64 = KERNEL_MEMORY;
}

/// Capability indices the kernel gives the root task (Fiasco's
/// `L4_BASE_*_CAP`). Index 0 is never a valid capability.
pub mod base_caps {
    /// The root task itself.
    pub const TASK: u64 = 1;
    /// The root factory (all kernel memory).
    pub const FACTORY: u64 = 2;
    /// The root task's first thread.
    pub const THREAD: u64 = 3;
    /// The pager (sigma0's; unused by this kernel's root task).
    pub const PAGER: u64 = 4;
    /// The kernel console (Vcon / Log).
    pub const LOG: u64 = 5;
    /// The interrupt controller.
    pub const ICU: u64 = 6;
    /// The scheduler.
    pub const SCHEDULER: u64 = 7;
    /// The IOMMU, if present.
    pub const IOMMU: u64 = 8;
    /// The kernel debugger, if present.
    pub const DEBUGGER: u64 = 10;
    /// ARM SMC calls, if present.
    pub const SMCCC: u64 = 11;
}

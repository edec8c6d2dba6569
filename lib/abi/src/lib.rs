//! The kernel's system-call ABI, shared by the kernel and every task.
//!
//! Native calls use `svc #SVC_NATIVE`; `svc #0` is the Linux system-call
//! convention, which the kernel reflects to the thread's exception handler.
//! Until capability invocation exists, the only native calls are the
//! temporary debug calls below (operation number in `x8`).

#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

/// The `svc` immediate of native kernel calls.
pub const SVC_NATIVE: u16 = 1;
/// The `svc` immediate of Linux system calls (reflected to the exception handler).
pub const SVC_LINUX: u16 = 0;

/// Temporary debug operations (in `x8`), replaced by capability invocation.
pub mod debug {
    /// Write `x1` bytes at `x0` to the kernel console.
    pub const PUTS: u64 = 0xd0;
    /// End the calling task with exit code `x0`.
    pub const EXIT: u64 = 0xd1;
}

/// Error codes returned in `x0` as negative numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i64)]
pub enum Error {
    /// Unknown operation.
    NoSys = 38,
    /// Bad address (not mapped or not readable by the caller).
    Fault = 14,
    /// Invalid argument.
    Inval = 22,
}

impl Error {
    pub fn from_ret(ret: i64) -> Result<u64, Error> {
        match ret {
            r if r >= 0 => Ok(r as u64),
            -38 => Err(Error::NoSys),
            -14 => Err(Error::Fault),
            _ => Err(Error::Inval),
        }
    }
}

#[cfg(target_arch = "aarch64")]
pub mod call {
    use super::*;

    /// Writes `s` to the kernel console.
    pub fn debug_puts(s: &[u8]) -> Result<u64, Error> {
        let ret: i64;
        // SAFETY: the call only reads `s.len()` bytes at `s`, which the
        // kernel checks against the caller's address space.
        unsafe {
            core::arch::asm!("svc #{imm}", imm = const SVC_NATIVE,
                inout("x0") s.as_ptr() as u64 => ret, in("x1") s.len(), in("x8") debug::PUTS,
                options(nostack, readonly));
        }
        Error::from_ret(ret)
    }

    /// Ends the calling task.
    pub fn debug_exit(code: i32) -> ! {
        // SAFETY: the call does not return; no memory is touched.
        unsafe {
            core::arch::asm!("svc #{imm}", imm = const SVC_NATIVE, in("x0") code as i64, in("x8") debug::EXIT,
                options(nostack, noreturn));
        }
    }
}

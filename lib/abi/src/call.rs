//! Client-side system calls (AArch64 only).
//!
//! Every IPC wrapper is one `svc #1` with `x0` = invocation word, `x1` =
//! tag, `x2` = timeouts and `x8` = [`X8_IPC`]; it returns the received tag
//! (or the error in `x0`) and the label from `x2`. Message words travel in
//! the calling thread's UTCB ([`utcb`]): fill its message registers before a
//! send, read them after a receive.

use crate::error::Error;
use crate::msgtag::MsgTag;
use crate::sys::{self, Cap, X8_IPC};
use crate::timeout::{Timeout, Timeouts};
use crate::utcb::Utcb;
use crate::{SVC_NATIVE, debug};

/// Writes `s` to the kernel console (temporary debug call).
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

/// Ends the calling task (temporary debug call).
pub fn debug_exit(code: i32) -> ! {
    // SAFETY: the call does not return; no memory is touched.
    unsafe {
        core::arch::asm!("svc #{imm}", imm = const SVC_NATIVE, in("x0") code as i64, in("x8") debug::EXIT,
            options(nostack, noreturn));
    }
}

/// The calling thread's UTCB (from `TPIDRRO_EL0`, which the kernel sets).
///
/// The pointer is valid for the life of the thread; only this thread uses
/// its UTCB, but the kernel reads and writes it during calls, so keep no
/// Rust references to it across a call.
pub fn utcb() -> *mut Utcb {
    let p: u64;
    // SAFETY: reading TPIDRRO_EL0 has no side effects.
    unsafe {
        core::arch::asm!("mrs {}, tpidrro_el0", out(reg) p, options(nomem, nostack, preserves_flags));
    }
    p as *mut Utcb
}

/// The system clock in microseconds (the clock absolute timeouts use).
pub fn clock_us() -> u64 {
    let (count, freq): (u64, u64);
    // SAFETY: reading the generic timer's virtual counter and frequency,
    // which the kernel lets EL0 read; no side effects.
    unsafe {
        core::arch::asm!("isb", "mrs {c}, cntvct_el0", "mrs {f}, cntfrq_el0",
            c = out(reg) count, f = out(reg) freq, options(nomem, nostack));
    }
    crate::timeout::clock_us(count, freq)
}

/// The raw invocation: `flags` from [`crate::sys`], returning the received
/// tag (or the error status) and the label (`x2`).
///
/// The kernel reads the message registers and writes the received message
/// into this thread's UTCB, and maps received flexpages only into the
/// receive windows the buffer registers name (which the caller wrote).
#[inline]
pub fn ipc(cap: Cap, flags: u64, tag: MsgTag, timeouts: Timeouts) -> (Result<MsgTag, Error>, u64) {
    let status: u64;
    let rtag: u64;
    let label: u64;
    // SAFETY: the kernel preserves every register but x0..x2 and touches no
    // memory of this task except the calling thread's UTCB and the receive
    // windows the caller set up; the asm is not marked `nomem`, so the
    // compiler assumes memory may change.
    unsafe {
        core::arch::asm!("svc #{imm}", imm = const SVC_NATIVE,
            inout("x0") sys::invocation(cap, flags) => status,
            inout("x1") tag.0 => rtag,
            inout("x2") timeouts.0 as u64 => label,
            in("x8") X8_IPC,
            options(nostack));
    }
    (Error::from_status(status).map(|()| MsgTag(rtag)), label)
}

/// Call: send to `cap` and receive its reply.
#[inline]
pub fn ipc_call(cap: Cap, tag: MsgTag, timeouts: Timeouts) -> (Result<MsgTag, Error>, u64) {
    ipc(cap, sys::CALL, tag, timeouts)
}

/// Send to `cap` without waiting for an answer.
#[inline]
pub fn ipc_send(cap: Cap, tag: MsgTag, timeouts: Timeouts) -> (Result<MsgTag, Error>, u64) {
    ipc(cap, sys::SEND, tag, timeouts)
}

/// Wait for a message from anyone; the label says where it came from.
#[inline]
pub fn ipc_wait(timeouts: Timeouts) -> (Result<MsgTag, Error>, u64) {
    ipc(Cap::INVALID, sys::WAIT, MsgTag(0), timeouts)
}

/// Reply to the last caller, then wait for a message from anyone.
#[inline]
pub fn ipc_reply_and_wait(tag: MsgTag, timeouts: Timeouts) -> (Result<MsgTag, Error>, u64) {
    ipc(Cap::INVALID, sys::REPLY_AND_WAIT, tag, timeouts)
}

/// Receive from `cap` only (e.g. a thread or an Irq).
#[inline]
pub fn ipc_receive(cap: Cap, timeouts: Timeouts) -> (Result<MsgTag, Error>, u64) {
    ipc(cap, sys::RECV, MsgTag(0), timeouts)
}

/// Sleep for `t` (a receive from nobody; [`Error::RecvTimeout`] is the
/// normal end, [`Error::RecvCanceled`] means another thread woke this one).
pub fn sleep(t: Timeout) -> Result<(), Error> {
    match ipc(
        Cap::INVALID,
        sys::RECV,
        MsgTag(0),
        Timeouts::new(Timeout::ZERO, t),
    )
    .0
    {
        Err(Error::RecvTimeout) => Ok(()),
        Err(e) => Err(e),
        Ok(_) => Ok(()),
    }
}

/// Give up the rest of the time slice.
pub fn yield_now() {
    let _ = ipc(Cap::INVALID, sys::RECV, MsgTag(0), Timeouts::BOTH_ZERO);
}

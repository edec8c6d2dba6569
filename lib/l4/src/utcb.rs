//! The calling thread's UTCB (AArch64 only).
//!
//! The kernel finds a thread's message in its UTCB and writes replies
//! there, so nothing may keep a Rust reference to it across a system call.
//! The accessors here read and write single registers through the raw
//! pointer; [`with_utcb`] lends a `&mut Utcb` for building a message.

use l4_abi::call;
use l4_abi::utcb::{BR_COUNT, MR_COUNT, TCR_COUNT};
use l4_abi::{RecvItem, Utcb};

use crate::msg;

/// The address of the calling thread's UTCB (`TPIDRRO_EL0`).
pub fn addr() -> u64 {
    call::utcb() as u64
}

/// Lends the calling thread's UTCB to `f`.
///
/// # Safety
///
/// `f` must not make a system call and must not call `with_utcb` (or any
/// function that does, such as the capability stubs of this crate): the
/// reference must be the only access to the UTCB while it lives.
pub unsafe fn with_utcb<R>(f: impl FnOnce(&mut Utcb) -> R) -> R {
    // SAFETY: TPIDRRO_EL0 holds this thread's UTCB, which the kernel keeps
    // mapped for the thread's life and which only this thread uses; the
    // caller guarantees that nothing else touches it while `f` runs.
    f(unsafe { &mut *call::utcb() })
}

/// [`with_utcb`] for this crate's message builders, which make no calls.
pub(crate) fn with<R>(f: impl FnOnce(&mut Utcb) -> R) -> R {
    // SAFETY: only used with the builders of `msg` and decoders, which
    // neither make system calls nor nest.
    unsafe { with_utcb(f) }
}

/// Reads word `i` of an array field of the UTCB (`len` long) at `field`.
fn read(field: *const u64, len: usize, i: usize) -> u64 {
    assert!(i < len, "UTCB register index out of range");
    // SAFETY: `field` points into this thread's UTCB, which stays mapped;
    // `i` is in bounds; a plain read of a u64 has no other effect.
    unsafe { field.add(i).read() }
}

/// Writes word `i` of an array field of the UTCB (`len` long) at `field`.
fn write(field: *mut u64, len: usize, i: usize, v: u64) {
    assert!(i < len, "UTCB register index out of range");
    // SAFETY: as `read`; no Rust reference to the UTCB is alive (the
    // accessors never hand one out except through `with_utcb`).
    unsafe { field.add(i).write(v) }
}

fn raw() -> *mut Utcb {
    call::utcb()
}

/// The reader and the writer of word `i` of each register array of the
/// UTCB (both panic if `i` is out of range).
macro_rules! registers {
    ($(
        $(#[$get_doc:meta])* $get:ident,
        $(#[$set_doc:meta])* $set:ident: $field:ident[$len:expr];
    )*) => {$(
        $(#[$get_doc])*
        pub fn $get(i: usize) -> u64 {
            // SAFETY: `raw()` points at this thread's UTCB, which stays
            // mapped; taking a field's address creates no reference.
            let field = unsafe { &raw const (*raw()).$field };
            read(field.cast(), $len, i)
        }

        $(#[$set_doc])*
        pub fn $set(i: usize, v: u64) {
            // SAFETY: as in the reader.
            let field = unsafe { &raw mut (*raw()).$field };
            write(field.cast(), $len, i, v)
        }
    )*};
}

registers! {
    /// Message register `i` (panics if `i >= 64`).
    mr,
    /// Sets message register `i` (panics if `i >= 64`).
    set_mr: mr[MR_COUNT];
    /// Buffer register `i` (panics if `i >= 31`).
    br,
    /// Sets buffer register `i` (panics if `i >= 31`).
    set_br: br[BR_COUNT];
    /// Thread control register `i` (panics if `i >= 32`).
    tcr,
    /// Sets thread control register `i` (panics if `i >= 32`).
    set_tcr: tcr[TCR_COUNT];
}

/// Copies `words` into the message registers from MR0; returns how many fit.
pub fn set_mrs(words: &[u64]) -> usize {
    with(|u| msg::put(u, 0, words))
}

/// Copies the first `out.len()` message registers (at most 64) into `out`.
pub fn mrs(out: &mut [u64]) {
    with(|u| {
        let n = out.len().min(MR_COUNT);
        out[..n].copy_from_slice(&u.mr[..n]);
    })
}

/// Sets the receive items of the next receive (see [`msg::set_recv_items`]).
pub fn set_recv_items(items: &[RecvItem]) {
    with(|u| msg::set_recv_items(u, items))
}

/// Accept no typed items in the next receive.
pub fn clear_recv_items() {
    with(msg::clear_recv_items)
}

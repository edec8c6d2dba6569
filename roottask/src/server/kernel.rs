//! What moe's serving needs from the kernel and from its own RAM: the
//! [`Kernel`] trait. The root task implements it with the `l4` stubs; the
//! host tests with a fake that records what moe asked for.

use core::fmt;

use l4::{SchedInfo, SchedParams, SlotAlloc};
use l4_abi::{CapRights, Error};
use l4_loader::{Host, Sys};

use crate::pages::{MIN_ORDER, PAGE, PageAlloc};

/// The kernel operations and memory accesses of moe's server. Capability
/// arguments are indices in moe's own capability space.
pub trait Kernel {
    /// The loader's kernel operations (starting and destroying children).
    type Loader: Sys;

    /// The loader's kernel operations.
    fn loader(&self) -> Self::Loader;

    /// Creates an IPC gate in `slot` labelled `label`, bound to moe's
    /// server thread (an object moe serves).
    fn bind_gate(&mut self, slot: u64, label: u64) -> Result<(), Error>;

    /// Creates an IPC gate in `slot` for a client: labelled `label`, bound
    /// to the client's `thread` or unbound.
    fn create_gate(&mut self, slot: u64, label: u64, thread: Option<u64>) -> Result<(), Error>;

    /// Creates a kernel factory with `quota` bytes in `slot`.
    fn create_factory(&mut self, slot: u64, quota: u64) -> Result<(), Error>;

    /// Deletes the object in moe's `slot`.
    fn delete_cap(&mut self, slot: u64);

    /// Empties moe's `slot` and revokes what was derived from it.
    fn release_cap(&mut self, slot: u64);

    /// Copies the capability a client sent (`index`, received in moe's
    /// space) with `rights` to moe's `slot`.
    fn keep_cap(&mut self, index: u64, rights: CapRights, slot: u64) -> Result<(), Error>;

    /// Revokes every client mapping of moe's memory `[addr, addr + size)`.
    fn revoke(&mut self, addr: u64, size: u64);

    /// Zeroes moe's memory `[addr, addr + len)`, which moe owns and no one
    /// else uses.
    fn zero(&mut self, addr: u64, len: u64);

    /// Copies `bytes` to moe's memory at `addr` (memory moe allocated).
    fn write(&mut self, addr: u64, bytes: &[u8]);

    /// The memory of boot module `[pa, pa + size)`, mapped read-only in moe
    /// for moe's whole life.
    fn module_bytes(&self, pa: u64, size: u64) -> &'static [u8];

    /// Writes a line of a log object to the kernel log.
    fn log(&mut self, line: &[u8]);

    /// Prints one of moe's own messages (one line, without the newline).
    fn say(&mut self, args: fmt::Arguments<'_>);

    /// The kernel scheduler's CPUs.
    fn sched_info(&mut self) -> Result<SchedInfo, Error>;

    /// Runs moe's capability `thread` (a client's, just received) with `p`.
    fn run_thread(&mut self, thread: u64, p: &SchedParams) -> Result<(), Error>;

    /// The idle time of the CPUs `cpus` (a bitmap), in µs.
    fn idle_time(&mut self, cpus: u64) -> Result<u64, Error>;
}

/// The first capability slot moe uses for the objects it creates.
pub const FIRST_SLOT: u64 = 0x100;

/// moe's capability slots for the objects it creates.
pub type Slots = SlotAlloc<60>;

/// Zeroed memory from moe's allocator: `size` bytes aligned to `2^order`.
pub fn alloc_zeroed<K: Kernel>(
    k: &mut K,
    pages: &mut PageAlloc,
    size: u64,
    order: u8,
) -> Option<u64> {
    let a = pages.alloc(size, order)?;
    k.zero(a, size.next_multiple_of(PAGE));
    Some(a)
}

/// The loader's [`Host`] over moe's memory and slots.
pub struct MoeHost<'a, K> {
    /// The kernel (for the memory accesses).
    pub k: &'a mut K,
    /// moe's RAM.
    pub pages: &'a mut PageAlloc,
    /// moe's slots.
    pub slots: &'a Slots,
}

impl<K: Kernel> Host for MoeHost<'_, K> {
    fn alloc_cap(&mut self) -> Option<u64> {
        self.slots.alloc()
    }

    fn free_cap(&mut self, idx: u64) {
        self.slots.free(idx);
    }

    fn alloc_mem(&mut self, size: u64) -> Option<u64> {
        alloc_zeroed(self.k, self.pages, size, MIN_ORDER)
    }

    fn free_mem(&mut self, addr: u64, size: u64) {
        self.pages.free(addr, size);
    }

    fn write_mem(&mut self, addr: u64, bytes: &[u8]) {
        self.k.write(addr, bytes);
    }
}

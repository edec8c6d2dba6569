//! [`ProgramHeap`]: a memory allocator for programs over the runtime, a
//! buddy allocator over anonymous memory from the runtime in steps of at
//! least [`GROW_MIN`]. A program chooses it with
//!
//! ```ignore
//! #[global_allocator]
//! static HEAP: l4re::heap::ProgramHeap = l4re::heap::ProgramHeap::new();
//! ```
//!
//! musl's allocator maps one page after the other at first, each mapping a
//! system call and a page fault served by the runtime, and its code is a
//! good part of what a program runs first (on QEMU, what it must translate
//! first); this one is small and asks the runtime for memory a few times.
//! Blocks are powers of two: a program with large allocations of other
//! sizes is better off with musl's.

use core::alloc::{GlobalAlloc, Layout};

use buddy_system_allocator::{Heap, LockedHeapWithRescue};

use crate::linux::{Sys, mman};

/// Orders of the buddy allocator: blocks up to 2^32 bytes.
const ORDERS: usize = 33;

/// Smallest growth step (the runtime maps it as it is touched).
pub const GROW_MIN: usize = 256 << 10;

/// The allocator (see the module).
pub struct ProgramHeap(LockedHeapWithRescue<ORDERS>);

impl ProgramHeap {
    /// An empty heap; it grows on the first allocation.
    pub const fn new() -> ProgramHeap {
        ProgramHeap(LockedHeapWithRescue::new(grow))
    }
}

impl Default for ProgramHeap {
    fn default() -> ProgramHeap {
        ProgramHeap::new()
    }
}

// SAFETY: the buddy allocator behind the lock keeps `GlobalAlloc`'s
// contract; this only passes the calls on.
unsafe impl GlobalAlloc for ProgramHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller keeps `GlobalAlloc::alloc`'s contract.
        unsafe { self.0.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller keeps `GlobalAlloc::dealloc`'s contract.
        unsafe { self.0.dealloc(ptr, layout) }
    }
}

/// Adds anonymous memory big enough for `layout` to the heap; on failure
/// the allocation fails.
fn grow(heap: &mut Heap<ORDERS>, layout: &Layout) {
    let need = layout.size().saturating_add(layout.align());
    let Some(size) = need.max(GROW_MIN).checked_next_power_of_two() else {
        return;
    };
    let Some(start) = map_anonymous(size) else {
        return;
    };
    // SAFETY: `start .. start + size` was just mapped read-write for us
    // alone and stays mapped: the heap owns it from now on.
    unsafe { heap.add_to_heap(start, start + size) };
}

/// `size` bytes of fresh anonymous memory (`mmap`), read-write.
fn map_anonymous(size: usize) -> Option<usize> {
    let prot = mman::PROT_READ | mman::PROT_WRITE;
    let flags = mman::MAP_PRIVATE | mman::MAP_ANONYMOUS;
    let ret: i64;
    // SAFETY: an anonymous mmap at an address of the runtime's choice
    // changes no memory the program uses; the runtime serves the call.
    unsafe {
        core::arch::asm!("svc #0", inlateout("x0") 0u64 => ret, in("x1") size as u64,
            in("x2") prot, in("x3") flags, in("x4") u64::MAX, in("x5") 0u64,
            in("x8") Sys::Mmap.nr(), options(nostack));
    }
    (ret >= 0).then_some(ret as usize)
}

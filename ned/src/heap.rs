//! ned's memory allocator on the target: a buddy allocator over anonymous
//! memory from the runtime, in steps of at least [`GROW_MIN`].
//!
//! Nearly all of ned's allocations are the Lua state's (mlua allocates
//! through Rust's allocator). musl's allocator served them from dozens of
//! one-page mappings, each a system call and a page fault, and its code is
//! a good part of what ned runs first (on QEMU, what it must translate
//! first); the buddy allocator is small and asks the runtime for memory a
//! few times.

use std::alloc::Layout;

use buddy_system_allocator::{Heap, LockedHeapWithRescue};
use l4re::linux::{Sys, mman};

use crate::target::linux_syscall;

/// Orders of the buddy allocator: blocks up to 2^32 bytes.
const ORDERS: usize = 33;

/// Smallest growth step (the runtime maps it as it is touched).
const GROW_MIN: usize = 256 << 10;

#[global_allocator]
static HEAP: LockedHeapWithRescue<ORDERS> = LockedHeapWithRescue::new(grow);

/// Adds anonymous memory big enough for `layout` to the heap; on failure
/// the allocation fails (Lua reports it as out of memory).
fn grow(heap: &mut Heap<ORDERS>, layout: &Layout) {
    let need = layout.size().saturating_add(layout.align());
    let Some(size) = need.max(GROW_MIN).checked_next_power_of_two() else {
        return;
    };
    let prot = mman::PROT_READ | mman::PROT_WRITE;
    let flags = mman::MAP_PRIVATE | mman::MAP_ANONYMOUS;
    let p = linux_syscall(Sys::Mmap, [0, size as u64, prot, flags, u64::MAX, 0]);
    if (p as i64) < 0 {
        return;
    }
    let start = p as usize;
    // SAFETY: `start .. start + size` was just mapped read-write for us
    // alone and stays mapped: the heap owns it from now on.
    unsafe { heap.add_to_heap(start, start + size) };
}

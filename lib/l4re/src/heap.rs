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
//! sizes is better off with musl's. A thread that finds the heap taken
//! sleeps on a futex until the holder lets go.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use buddy_system_allocator::Heap;

use crate::linux::{Sys, futex, mman};

/// Orders of the buddy allocator: blocks up to 2^32 bytes.
const ORDERS: usize = 33;

/// Smallest growth step (the runtime maps it as it is touched).
pub const GROW_MIN: usize = 256 << 10;

/// [`ProgramHeap::state`]: nobody holds the heap.
const FREE: u32 = 0;
/// One thread holds it, nobody waits.
const HELD: u32 = 1;
/// One thread holds it and others may wait on the futex.
const CONTENDED: u32 = 2;

/// The allocator (see the module). Its lock puts a thread that finds the
/// heap taken to sleep (a futex), so that it never spins on a holder the
/// scheduler preempted: several threads of a program may share a CPU.
pub struct ProgramHeap {
    state: AtomicU32,
    /// How often a thread went to sleep for the lock.
    waits: AtomicU64,
    heap: UnsafeCell<Heap<ORDERS>>,
}

// SAFETY: `heap` is only reached through `with_heap`, which holds the lock.
unsafe impl Sync for ProgramHeap {}

impl ProgramHeap {
    /// An empty heap; it grows on the first allocation.
    pub const fn new() -> ProgramHeap {
        ProgramHeap {
            state: AtomicU32::new(FREE),
            waits: AtomicU64::new(0),
            heap: UnsafeCell::new(Heap::new()),
        }
    }

    /// How often a thread found the heap taken and slept until it was let
    /// go.
    pub fn waits(&self) -> u64 {
        self.waits.load(Ordering::Relaxed)
    }

    /// Runs `f` on the heap, holding the lock.
    fn with_heap<R>(&self, f: impl FnOnce(&mut Heap<ORDERS>) -> R) -> R {
        if self
            .state
            .compare_exchange(FREE, HELD, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            while self.state.swap(CONTENDED, Ordering::Acquire) != FREE {
                self.waits.fetch_add(1, Ordering::Relaxed);
                futex_call(&self.state, futex::WAIT, CONTENDED);
            }
        }
        // SAFETY: the lock is held: no other thread reaches the heap.
        let r = f(unsafe { &mut *self.heap.get() });
        if self.state.swap(FREE, Ordering::Release) == CONTENDED {
            futex_call(&self.state, futex::WAKE, 1);
        }
        r
    }
}

impl Default for ProgramHeap {
    fn default() -> ProgramHeap {
        ProgramHeap::new()
    }
}

// SAFETY: the buddy allocator behind the lock keeps `GlobalAlloc`'s
// contract; this only passes the calls on (and grows it when it is full).
unsafe impl GlobalAlloc for ProgramHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.with_heap(|heap| {
            let block = heap.alloc(layout).or_else(|()| {
                grow(heap, &layout);
                heap.alloc(layout)
            });
            block.map_or(core::ptr::null_mut(), NonNull::as_ptr)
        })
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(block) = NonNull::new(ptr) {
            // SAFETY: the caller passes a block this allocator gave out,
            // with the layout it was asked for.
            self.with_heap(|heap| unsafe { heap.dealloc(block, layout) });
        }
    }
}

/// `futex(word, op | PRIVATE, value)` without a timeout; the result does
/// not matter (a wait that returns early is retried by the caller).
fn futex_call(word: &AtomicU32, op: u64, value: u32) {
    let args = [
        word.as_ptr() as u64,
        op | futex::PRIVATE,
        u64::from(value),
        0,
        0,
        0,
    ];
    // SAFETY: the runtime serves futex on the program's own memory: a wait
    // reads `word` (a live atomic), a wake touches no memory.
    unsafe { crate::syscall::call(Sys::Futex.nr(), args) };
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
    // SAFETY: an anonymous mmap at an address of the runtime's choice
    // changes no memory the program uses.
    let ret =
        unsafe { crate::syscall::call(Sys::Mmap.nr(), [0, size as u64, prot, flags, u64::MAX, 0]) };
    (ret >= 0).then_some(ret as usize)
}

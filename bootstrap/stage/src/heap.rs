//! A small bump allocator: the ELF parser allocates a few program headers.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;

const SIZE: usize = 64 * 1024;

#[repr(align(16))]
struct Arena(UnsafeCell<[u8; SIZE]>, UnsafeCell<usize>);

// SAFETY: the boot stage runs on one CPU without interrupts.
unsafe impl Sync for Arena {}

#[global_allocator]
static ARENA: Arena = Arena(UnsafeCell::new([0; SIZE]), UnsafeCell::new(0));

// SAFETY: hands out disjoint, aligned ranges of the arena; never frees.
unsafe impl GlobalAlloc for Arena {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: single CPU, no reentrancy.
        let next = unsafe { &mut *self.1.get() };
        let base = self.0.get() as usize;
        let start = (base + *next).next_multiple_of(layout.align());
        let end = start + layout.size();
        if end > base + SIZE {
            return core::ptr::null_mut();
        }
        *next = end - base;
        start as *mut u8
    }

    unsafe fn dealloc(&self, _ptr: *mut u8, _layout: Layout) {}
}

//! The runtime's heap: dataspaces from the memory allocator, mapped
//! whole into [`RT_HEAP_BASE`].. as they are needed (the runtime cannot
//! take page faults on its own memory: its pager is the loader).

use core::alloc::Layout;
use core::sync::atomic::{AtomicU64, Ordering};

use buddy_system_allocator::{Heap, LockedHeapWithRescue};
use l4re::layout::{RT_HEAP_BASE, RT_HEAP_SIZE};
use l4re::regions::Prot;

use super::sys;

/// Smallest growth step (the dataspace's memory is mapped, so allocated,
/// at once: the step is memory every task pays).
const GROW_MIN: u64 = 64 << 10;

#[global_allocator]
static HEAP: LockedHeapWithRescue<40> = LockedHeapWithRescue::new(grow);

/// End of the mapped heap.
static HEAP_END: AtomicU64 = AtomicU64::new(RT_HEAP_BASE);

/// Adds a new dataspace to the heap, big enough for `layout`.
fn grow(heap: &mut Heap<40>, layout: &Layout) {
    let need = (layout.size() as u64).saturating_add(layout.align() as u64);
    let size = need.max(GROW_MIN).next_power_of_two();
    let start = HEAP_END.load(Ordering::Relaxed).next_multiple_of(size);
    let Some(end) = start
        .checked_add(size)
        .filter(|&e| e <= RT_HEAP_BASE + RT_HEAP_SIZE)
    else {
        return;
    };
    let Ok(ds) = sys::ds_alloc_raw(size, true) else {
        return;
    };
    if sys::map_all(ds, start, size, Prot::RW).is_err() {
        return;
    }
    HEAP_END.store(end, Ordering::Relaxed);
    // SAFETY: [start, end) was just mapped read-write from a dataspace of
    // our own, lies in the heap's reserved address range above everything
    // added before, and nothing else uses it.
    unsafe { heap.add_to_heap(start as usize, end as usize) };
}

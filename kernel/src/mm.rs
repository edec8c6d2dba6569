//! Kernel memory: physical frames (buddy allocator over the free RAM the boot
//! stage reported), the kernel heap, the linear map and device mappings.

use buddy_system_allocator::{FrameAllocator, LockedHeap};
use core::sync::atomic::{AtomicU64, Ordering};
use l4_bootinfo::{BootInfo, LINEAR_MAP_VA, MemKind};
use l4_pgtable::{Attr, Tables};
use spin::Mutex;

pub const PAGE: u64 = 4096;
/// Kernel heap (objects, capability tables, the mapping database): what
/// `-kmemsize` asks for (at least 1 MiB, at most half of the free RAM),
/// else a sixteenth of RAM, at most 64 MiB, at least 4 MiB.
fn heap_size(free: u64, asked: Option<u64>) -> u64 {
    let size = match asked {
        Some(b) => b.clamp(1 << 20, (free / 2).max(1 << 20)),
        None => (free / 16).clamp(4 << 20, 64 << 20),
    };
    size & !(PAGE - 1)
}

#[global_allocator]
static HEAP: LockedHeap<32> = LockedHeap::empty();

static FRAMES: Mutex<FrameAllocator<32>> = Mutex::new(FrameAllocator::new());
static FREE_PAGES: AtomicU64 = AtomicU64::new(0);
static KERNEL_PT: AtomicU64 = AtomicU64::new(0);

pub fn phys_to_virt(pa: u64) -> u64 {
    LINEAR_MAP_VA + pa
}

/// The boot-info page, through the linear map, with the CPU features
/// tasks may use (`cpu_id`) noted in it; read-only from then on.
///
/// # Safety
/// `pa` is the physical address of an initialised `BootInfo` in RAM that
/// the linear map covers, nothing else writes any more, and no reference
/// to it exists yet.
pub unsafe fn bootinfo(pa: u64, cpu_id: l4_abi::cpuid::CpuId) -> &'static BootInfo {
    // SAFETY: the caller's contract: the page is the kernel's alone.
    let info = unsafe { &mut *(phys_to_virt(pa) as *mut BootInfo) };
    if !info.is_valid() {
        crate::arch::halt();
    }
    info.cpu_id = cpu_id;
    info
}

/// Sets up the heap in the first free RAM large enough, then hands every
/// other free page to the frame allocator (which itself needs the heap).
pub fn init(info: &BootInfo, asked_heap: Option<u64>) {
    let heap_size = heap_size(info.total(MemKind::Free), asked_heap);
    let heap = info
        .find_free(heap_size, PAGE)
        .unwrap_or_else(|| crate::arch::halt());
    // SAFETY: free RAM the boot stage reported, now owned by the heap alone
    // (excluded from the frames below); the linear map covers it.
    unsafe {
        HEAP.lock()
            .init(phys_to_virt(heap) as usize, heap_size as usize)
    };
    let mut frames = FRAMES.lock();
    let mut add = |start: u64, end: u64| {
        let (start, end) = (start.div_ceil(PAGE), end / PAGE);
        if end > start {
            frames.add_frame(start as usize, end as usize);
            FREE_PAGES.fetch_add(end - start, Ordering::Relaxed);
        }
    };
    for r in info.mem().iter().filter(|r| r.kind == MemKind::Free) {
        if (r.base..r.end()).contains(&heap) {
            add(r.base, heap);
            add(heap + heap_size, r.end());
        } else {
            add(r.base, r.end());
        }
    }
    KERNEL_PT.store(info.kernel_pt_root, Ordering::Relaxed);
    // RAM = everything the boot stage described that is not a device.
    let mut ram = RAM.lock();
    let (mut lo, mut hi) = (u64::MAX, 0);
    for r in info.mem() {
        lo = lo.min(r.base);
        hi = hi.max(r.end());
    }
    ram[0] = (lo, hi);
}

/// A zeroed physical page.
pub fn alloc_frame() -> Option<u64> {
    alloc_frames(1)
}

/// `n` contiguous zeroed pages (aligned to the next power of two).
pub fn alloc_frames(n: usize) -> Option<u64> {
    let pa = alloc_frames_uncleared(n)?;
    // SAFETY: free frames, now ours, reached through the linear map.
    unsafe { core::ptr::write_bytes(phys_to_virt(pa) as *mut u8, 0, n * PAGE as usize) };
    Some(pa)
}

/// `n` contiguous pages as they are (aligned to the next power of two):
/// for memory whose new owner clears what it uses itself (Sigma0's free
/// RAM, which the root task zeroes when it hands it out), so that nothing
/// is cleared twice or before anyone needs it.
pub fn alloc_frames_uncleared(n: usize) -> Option<u64> {
    let pfn = FRAMES.lock().alloc(n)?;
    FREE_PAGES.fetch_sub(n as u64, Ordering::Relaxed);
    Some(pfn as u64 * PAGE)
}

/// Returns pages from [`alloc_frame`] / [`alloc_frames`].
pub fn free_frames(pa: u64, n: usize) {
    FRAMES.lock().dealloc((pa / PAGE) as usize, n);
    FREE_PAGES.fetch_add(n as u64, Ordering::Relaxed);
}

static RAM: Mutex<[(u64, u64); 8]> = Mutex::new([(0, 0); 8]);

/// Whether `[pa, pa + size)` touches RAM.
pub fn is_ram(pa: u64, size: u64) -> bool {
    RAM.lock().iter().any(|&(b, e)| pa < e && b < pa + size)
}

pub fn free_bytes() -> u64 {
    FREE_PAGES.load(Ordering::Relaxed) * PAGE
}

/// Size of the kernel heap.
pub fn heap_bytes() -> u64 {
    HEAP.lock().stats_total_bytes() as u64
}

/// Kernel heap in use.
pub fn heap_used() -> u64 {
    HEAP.lock().stats_alloc_actual() as u64
}

/// Whether the kernel heap can give `bytes` more to one operation and
/// still keep its reserve: what the kernel itself needs to finish any
/// operation already under way and to clean up (a thirty-second of the
/// heap, at least 256 KiB). User-driven growth (objects, mappings,
/// capability slots) asks first and is refused with `NoMem` beyond it, so
/// an allocation failure (which would stop the kernel) cannot be reached.
pub fn heap_allows(bytes: u64) -> bool {
    let h = HEAP.lock();
    let total = h.stats_total_bytes() as u64;
    let free = total - h.stats_alloc_actual() as u64;
    free >= (total / 32).max(256 << 10) + bytes
}

/// Translation tables in frames from [`alloc_frame`], reached through the
/// linear map.
pub struct FrameTables;

impl Tables for FrameTables {
    fn alloc(&mut self) -> Option<u64> {
        alloc_frame()
    }
    fn table(&mut self, pa: u64) -> &mut [u64; 512] {
        // SAFETY: the table walker passes pages of the tree it walks, which
        // its caller owns (a task's tables under the big kernel lock, the
        // kernel's own under the device lock).
        unsafe { table_at(pa) }
    }
}

/// The translation table in the frame at `pa`.
///
/// # Safety
/// `pa` is a page the frame allocator gave out for a translation table
/// and not yet took back, and the caller has the only access to it for
/// `'a` (the lock that guards the tree it belongs to).
pub unsafe fn table_at<'a>(pa: u64) -> &'a mut [u64; 512] {
    // SAFETY: the caller's contract; the linear map covers all RAM.
    unsafe { &mut *(phys_to_virt(pa) as *mut [u64; 512]) }
}

static DEVICE_LOCK: Mutex<()> = Mutex::new(());

/// The block [`map_device`] maps in one entry where it can.
const DEVICE_BLOCK: u64 = 2 << 20;

/// Maps device registers at `pa` into the linear map (device memory) and
/// returns their virtual address. Mapping the same page twice is fine.
/// Whole 2 MiB blocks of the range go in as one entry each when nothing in
/// them is mapped yet (the linear map keeps the alignment; nothing ever
/// unmaps device registers): a GIC's redistributor region (15 MiB on
/// QEMU's virt) takes a few entries instead of thousands of page walks.
///
/// # Safety
/// `[pa, pa + size)` holds device registers, not RAM (which the linear
/// map has as normal memory: two memory types for one page).
pub unsafe fn map_device(pa: u64, size: u64) -> u64 {
    let _g = DEVICE_LOCK.lock();
    let root = KERNEL_PT.load(Ordering::Relaxed);
    let start = pa & !(PAGE - 1);
    let end = (pa + size).div_ceil(PAGE) * PAGE;
    let mut t = FrameTables;
    let mut page = start;
    while page < end {
        if page.is_multiple_of(DEVICE_BLOCK)
            && end - page >= DEVICE_BLOCK
            && l4_pgtable::map(
                &mut t,
                root,
                phys_to_virt(page),
                page,
                DEVICE_BLOCK,
                Attr::DEVICE,
                true,
            )
            .is_ok()
        {
            page += DEVICE_BLOCK;
            continue;
        }
        if l4_pgtable::translate(&mut t, root, phys_to_virt(page)).is_none() {
            l4_pgtable::map(
                &mut t,
                root,
                phys_to_virt(page),
                page,
                PAGE,
                Attr::DEVICE,
                false,
            )
            .unwrap_or_else(|e| panic!("mapping device {page:#x}: {e}"));
        }
        page += PAGE;
    }
    crate::arch::mapping_barrier();
    phys_to_virt(pa)
}

//! moe's physical memory: a buddy allocator of page blocks.
//!
//! moe owns RAM 1:1 (virtual = physical), so an address here is both. Free
//! blocks of `2^order` bytes (orders [`MIN_ORDER`] ..= [`MAX_ORDER`]) are
//! kept per order in ordered sets; a freed block merges with its free
//! buddy. [`PageAlloc::alloc`] hands out exactly the pages asked for (the
//! tail of the power-of-two block goes back at once), aligned as asked, so
//! a 3 MiB continuous dataspace costs 3 MiB.
//!
//! Memory can come on demand ([`PageAlloc::with_source`]): when no block
//! fits, the allocator takes a chunk of at least [`GROW_ORDER`] from its
//! [`Source`] (Sigma0 on the target), up to a reserve. The kernel maps
//! every page of a chunk it hands out, so moe asks for what it needs when
//! it needs it instead of all of its budget at boot.

use alloc::collections::BTreeSet;

/// The smallest block: a page.
pub const MIN_ORDER: u8 = 12;
/// The largest block (1 GiB).
pub const MAX_ORDER: u8 = 30;
/// The page size.
pub const PAGE: u64 = 1 << MIN_ORDER;

/// The smallest chunk taken from the source (2 MiB: a super page).
pub const GROW_ORDER: u8 = 21;

const ORDERS: usize = (MAX_ORDER - MIN_ORDER + 1) as usize;

/// Where more memory comes from: a block of `2^order` bytes aligned to its
/// size, or `None` when there is none that large.
pub type Source = fn(u8) -> Option<u64>;

/// Free page blocks.
#[derive(Debug)]
pub struct PageAlloc {
    free: [BTreeSet<u64>; ORDERS],
    total: u64,
    free_bytes: u64,
    source: Option<Source>,
    /// Bytes the source may still give.
    reserve: u64,
}

impl Default for PageAlloc {
    fn default() -> PageAlloc {
        PageAlloc::new()
    }
}

/// The order of the largest block that starts at `addr` and fits in `len`.
fn fit_order(addr: u64, len: u64) -> u8 {
    let align = addr.trailing_zeros().min(63) as u8;
    let fit = (63 - len.leading_zeros()) as u8;
    align.min(fit).min(MAX_ORDER)
}

impl PageAlloc {
    /// No memory.
    pub const fn new() -> PageAlloc {
        PageAlloc {
            free: [const { BTreeSet::new() }; ORDERS],
            total: 0,
            free_bytes: 0,
            source: None,
            reserve: 0,
        }
    }

    /// No memory yet: up to `reserve` bytes come from `source` as needed.
    pub const fn with_source(reserve: u64, source: Source) -> PageAlloc {
        let mut p = PageAlloc::new();
        p.source = Some(source);
        p.reserve = reserve;
        p
    }

    /// Bytes the source may still give.
    pub const fn reserve(&self) -> u64 {
        self.reserve
    }

    /// Memory free now or obtainable from the source.
    pub const fn available(&self) -> u64 {
        self.free_bytes + self.reserve
    }

    /// All memory added, and what the source may still give.
    pub const fn capacity(&self) -> u64 {
        self.total + self.reserve
    }

    /// Adds the RAM `[base, base + size)` (cut to whole pages).
    pub fn add(&mut self, base: u64, size: u64) {
        let start = base.next_multiple_of(PAGE);
        let end = (base + size) & !(PAGE - 1);
        if end > start {
            self.total += end - start;
            self.free_range(start, end - start);
        }
    }

    /// All memory ever added.
    pub const fn total(&self) -> u64 {
        self.total
    }

    /// Memory free now.
    pub const fn free_bytes(&self) -> u64 {
        self.free_bytes
    }

    /// The largest free block.
    pub fn largest_block(&self) -> u64 {
        (0..ORDERS)
            .rev()
            .find(|&i| !self.free[i].is_empty())
            .map_or(0, |i| 1 << (i + MIN_ORDER as usize))
    }

    /// `size` bytes (rounded up to pages) of contiguous memory aligned to
    /// `2^align_order` (at least a page); `None` if there is no such block.
    pub fn alloc(&mut self, size: u64, align_order: u8) -> Option<u64> {
        if size == 0 || size > 1 << MAX_ORDER {
            return None;
        }
        let size = size.next_multiple_of(PAGE);
        let need = (64 - (size - 1).leading_zeros()) as u8;
        let order = need.max(align_order).max(MIN_ORDER);
        if order > MAX_ORDER {
            return None;
        }
        let addr = match self.alloc_block(order) {
            Some(a) => a,
            None => {
                self.grow(order)?;
                self.alloc_block(order)?
            }
        };
        let block = 1u64 << order;
        self.free_bytes -= block;
        if block > size {
            self.free_range(addr + size, block - size);
        }
        Some(addr)
    }

    /// Returns `[addr, addr + size)` (rounded up to pages), which must have
    /// come from [`PageAlloc::alloc`].
    pub fn free(&mut self, addr: u64, size: u64) {
        self.free_range(addr & !(PAGE - 1), size.next_multiple_of(PAGE));
    }

    fn free_range(&mut self, mut addr: u64, size: u64) {
        let end = addr + size;
        while addr < end {
            let order = fit_order(addr, end - addr);
            self.free_block(addr, order);
            self.free_bytes += 1 << order;
            addr += 1 << order;
        }
    }

    /// Takes a chunk of at least `2^order` bytes (at least [`GROW_ORDER`]
    /// when the reserve allows) from the source.
    fn grow(&mut self, order: u8) -> Option<()> {
        let source = self.source?;
        let mut chunk = order.clamp(GROW_ORDER, MAX_ORDER);
        while chunk >= order {
            if 1u64 << chunk <= self.reserve
                && let Some(a) = source(chunk)
            {
                self.reserve -= 1 << chunk;
                self.add(a, 1 << chunk);
                return Some(());
            }
            chunk -= 1;
        }
        None
    }

    fn alloc_block(&mut self, order: u8) -> Option<u64> {
        let i = (order - MIN_ORDER) as usize;
        let from = (i..ORDERS).find(|&j| !self.free[j].is_empty())?;
        let addr = self.free[from].pop_first()?;
        // Split: the upper halves stay free.
        for j in (i..from).rev() {
            self.free[j].insert(addr + (1 << (j + MIN_ORDER as usize)));
        }
        Some(addr)
    }

    fn free_block(&mut self, mut addr: u64, order: u8) {
        let mut i = (order - MIN_ORDER) as usize;
        while i + 1 < ORDERS {
            let buddy = addr ^ (1 << (i + MIN_ORDER as usize));
            if !self.free[i].remove(&buddy) {
                break;
            }
            addr = addr.min(buddy);
            i += 1;
        }
        self.free[i].insert(addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    const MIB: u64 = 1 << 20;

    #[test]
    fn allocates_exact_sizes_and_merges_back() {
        let mut p = PageAlloc::new();
        p.add(0x4000_0000, 64 * MIB);
        assert_eq!((p.total(), p.free_bytes()), (64 * MIB, 64 * MIB));
        assert_eq!(p.largest_block(), 64 * MIB);
        let a = p.alloc(3 * MIB, 0).unwrap();
        assert_eq!(a, 0x4000_0000);
        assert_eq!(p.free_bytes(), 61 * MIB, "only 3 MiB taken");
        let b = p.alloc(PAGE, 0).unwrap();
        assert_eq!(b, 0x4000_0000 + 3 * MIB, "the tail was returned");
        p.free(a, 3 * MIB);
        p.free(b, 1);
        assert_eq!(p.free_bytes(), 64 * MIB);
        assert_eq!(p.largest_block(), 64 * MIB, "merged into one block");
    }

    #[test]
    fn grows_from_the_source_on_demand() {
        use core::sync::atomic::{AtomicU64, Ordering::Relaxed};
        // A source with 64 MiB at 0x4000_0000 handed out from the top,
        // each block aligned to its size.
        static NEXT: AtomicU64 = AtomicU64::new(0x4400_0000);
        fn source(order: u8) -> Option<u64> {
            let size = 1u64 << order;
            let at = NEXT.load(Relaxed).checked_sub(size)? & !(size - 1);
            (at >= 0x4000_0000).then(|| {
                NEXT.store(at, Relaxed);
                at
            })
        }
        let mut p = PageAlloc::with_source(40 * MIB, source);
        assert_eq!(
            (p.total(), p.available(), p.capacity()),
            (0, 40 * MIB, 40 * MIB)
        );
        let a = p.alloc(PAGE, 0).unwrap();
        assert_eq!(p.total(), 2 * MIB, "one chunk of GROW_ORDER");
        assert_eq!(p.reserve(), 38 * MIB);
        assert_eq!(p.available(), 40 * MIB - PAGE);
        let b = p.alloc(16 * MIB, 21).unwrap();
        assert_eq!(
            (b % (2 * MIB), p.total()),
            (0, 18 * MIB),
            "a chunk as large"
        );
        assert!(p.alloc(32 * MIB, 0).is_none(), "more than the reserve");
        let c = p.alloc(16 * MIB, 0).unwrap();
        assert_eq!(p.reserve(), 6 * MIB);
        assert!(a != c && b != c);
        let d = p.alloc(6 * MIB, 0);
        assert!(d.is_none(), "6 MiB need an 8 MiB block");
        assert!(p.alloc(4 * MIB, 0).is_some());
        assert_eq!(p.reserve(), 2 * MIB);
    }

    #[test]
    fn honours_alignment() {
        let mut p = PageAlloc::new();
        p.add(0x4000_1000, 16 * MIB);
        let a = p.alloc(PAGE, 21).unwrap();
        assert_eq!(a % (2 * MIB), 0);
        let b = p.alloc(5 * PAGE, 16).unwrap();
        assert_eq!(b % 0x1_0000, 0);
        assert!(p.alloc(PAGE, 31).is_none());
    }

    #[test]
    fn runs_out_cleanly() {
        let mut p = PageAlloc::new();
        p.add(0x1000, 8 * PAGE);
        assert!(p.alloc(0, 0).is_none());
        assert!(p.alloc(16 * PAGE, 0).is_none());
        assert!(p.alloc(u64::MAX, 0).is_none());
        let got: Vec<u64> = (0..8).map(|_| p.alloc(PAGE, 0).unwrap()).collect();
        assert!(p.alloc(PAGE, 0).is_none());
        assert_eq!(p.free_bytes(), 0);
        for a in got {
            p.free(a, PAGE);
        }
        assert_eq!(p.free_bytes(), 8 * PAGE);
        // Unaligned region edges are cut to pages.
        let mut q = PageAlloc::new();
        q.add(0x1800, 0x2000);
        assert_eq!(q.total(), PAGE);
    }

    #[test]
    fn random_workload_never_overlaps() {
        let mut p = PageAlloc::new();
        p.add(0x4000_0000, 32 * MIB);
        p.add(0x8000_0000, 4 * MIB);
        let mut live: Vec<(u64, u64)> = Vec::new();
        let mut x: u64 = 88172645463325252;
        for _ in 0..5000 {
            x = l4_xorshift::step(x);
            if x.is_multiple_of(3) && !live.is_empty() {
                let (a, s) = live.swap_remove((x as usize / 3) % live.len());
                p.free(a, s);
            } else {
                let size = ((x >> 8) % (512 * 1024)).max(1);
                let align = 12 + ((x >> 40) % 6) as u8;
                if let Some(a) = p.alloc(size, align) {
                    assert_eq!(a % (1 << align), 0);
                    let s = size.next_multiple_of(PAGE);
                    assert!(live.iter().all(|&(b, t)| a + s <= b || b + t <= a));
                    live.push((a, s));
                }
            }
            let used: u64 = live.iter().map(|l| l.1).sum();
            assert_eq!(p.free_bytes() + used, p.total());
        }
        for (a, s) in live.drain(..) {
            p.free(a, s);
        }
        assert_eq!(p.free_bytes(), 36 * MIB);
        assert_eq!(p.largest_block(), 32 * MIB);
    }
}

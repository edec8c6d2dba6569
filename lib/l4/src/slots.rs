//! A lock-free allocator of capability slots (or any small indices).
//!
//! [`SlotAlloc<W>`] hands out the `64 * W` indices `base..base + 64 * W`
//! from a bitmap of atomic words, so threads of one task can share it
//! without a lock and it can live in a `static`.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::cap::Cap;

/// An allocator of `64 * W` indices from `base`.
pub struct SlotAlloc<const W: usize> {
    base: u64,
    bits: [AtomicU64; W],
}

impl<const W: usize> SlotAlloc<W> {
    /// All indices `base..base + 64 * W` free.
    pub const fn new(base: u64) -> SlotAlloc<W> {
        SlotAlloc {
            base,
            bits: [const { AtomicU64::new(0) }; W],
        }
    }

    /// The first index.
    pub const fn base(&self) -> u64 {
        self.base
    }

    /// How many indices there are.
    pub const fn capacity(&self) -> usize {
        W * 64
    }

    /// Marks `idx` as taken (e.g. a slot the environment already filled);
    /// `false` if it is out of range or already taken.
    pub fn reserve(&self, idx: u64) -> bool {
        let Some((w, b)) = self.locate(idx) else {
            return false;
        };
        self.bits[w].fetch_or(1 << b, Ordering::AcqRel) & (1 << b) == 0
    }

    /// A free index, or `None` when all are taken. Lowest indices first.
    pub fn alloc(&self) -> Option<u64> {
        for (i, word) in self.bits.iter().enumerate() {
            let mut cur = word.load(Ordering::Relaxed);
            while cur != u64::MAX {
                let b = (!cur).trailing_zeros();
                match word.compare_exchange_weak(
                    cur,
                    cur | (1 << b),
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return Some(self.base + (i as u64) * 64 + b as u64),
                    Err(now) => cur = now,
                }
            }
        }
        None
    }

    /// A free index as a capability of kind `T`.
    pub fn alloc_cap<T: ?Sized>(&self) -> Option<Cap<T>> {
        self.alloc().map(Cap::from_index)
    }

    /// Returns `idx`; `false` if it is out of range or was not taken.
    pub fn free(&self, idx: u64) -> bool {
        let Some((w, b)) = self.locate(idx) else {
            return false;
        };
        self.bits[w].fetch_and(!(1 << b), Ordering::AcqRel) & (1 << b) != 0
    }

    /// Whether `idx` is taken.
    pub fn is_taken(&self, idx: u64) -> bool {
        self.locate(idx)
            .is_some_and(|(w, b)| self.bits[w].load(Ordering::Acquire) & (1 << b) != 0)
    }

    /// How many indices are taken.
    pub fn in_use(&self) -> usize {
        self.bits
            .iter()
            .map(|w| w.load(Ordering::Relaxed).count_ones() as usize)
            .sum()
    }

    fn locate(&self, idx: u64) -> Option<(usize, u32)> {
        let off = idx.checked_sub(self.base)?;
        let w = usize::try_from(off / 64).ok()?;
        (w < W).then_some((w, (off % 64) as u32))
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::sync::Arc;
    use std::vec::Vec;

    #[test]
    fn allocates_lowest_first_and_reuses() {
        let a: SlotAlloc<2> = SlotAlloc::new(0x100);
        assert_eq!(a.capacity(), 128);
        assert_eq!(a.alloc(), Some(0x100));
        assert_eq!(a.alloc(), Some(0x101));
        assert!(a.free(0x100));
        assert!(!a.free(0x100), "double free");
        assert!(!a.free(0x50), "below the range");
        assert!(!a.free(0x100 + 128), "above the range");
        assert_eq!(a.alloc(), Some(0x100));
        assert!(a.reserve(0x102));
        assert!(!a.reserve(0x102));
        assert_eq!(a.alloc(), Some(0x103));
        assert_eq!(a.in_use(), 4);
        assert!(a.is_taken(0x101) && !a.is_taken(0x104));
        let c: Cap<crate::Task> = a.alloc_cap().unwrap();
        assert_eq!(c.index(), 0x104);
    }

    #[test]
    fn runs_out_and_crosses_words() {
        let a: SlotAlloc<2> = SlotAlloc::new(0);
        let got: Vec<u64> = (0..128).map(|_| a.alloc().unwrap()).collect();
        assert_eq!(got, (0..128).collect::<Vec<u64>>());
        assert_eq!(a.alloc(), None);
        assert!(a.free(77));
        assert_eq!(a.alloc(), Some(77));
    }

    #[test]
    fn concurrent_allocations_are_unique() {
        let a: Arc<SlotAlloc<4>> = Arc::new(SlotAlloc::new(10));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let a = a.clone();
                std::thread::spawn(move || (0..64).map(|_| a.alloc().unwrap()).collect::<Vec<_>>())
            })
            .collect();
        let mut all: Vec<u64> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 256);
        assert_eq!(a.alloc(), None);
    }
}

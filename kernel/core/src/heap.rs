//! Where the kernel heap grows: the heap's RAM is reserved at boot, but the
//! allocator gets it piece by piece, as allocations need it, 2 MiB at a
//! time and each large block at its own alignment. RAM the allocator has
//! not been given is never written (a buddy allocator writes a free-list
//! entry into every block it holds), so a boot touches only the few pieces
//! it uses, close together, instead of the first page of every block the
//! whole reservation splits into.

/// The piece the heap grows by (a stage-1 and stage-2 block; also the unit
/// in which a host backs guest RAM with large pages).
pub const CHUNK: u64 = 2 << 20;

/// Skipped pieces remembered for later small growth.
const MAX_GAPS: usize = 8;

/// The reserved range `[start, end)` and what of it the allocator has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeapReserve {
    start: u64,
    end: u64,
    /// Everything below was given to the allocator or sits in `gaps`.
    next: u64,
    /// Ranges below `next` skipped to align a large block, lowest first;
    /// small growth takes from them before `next` moves on.
    gaps: [(u64, u64); MAX_GAPS],
    ngaps: usize,
}

impl HeapReserve {
    /// Nothing reserved.
    pub const fn empty() -> HeapReserve {
        HeapReserve {
            start: 0,
            end: 0,
            next: 0,
            gaps: [(0, 0); MAX_GAPS],
            ngaps: 0,
        }
    }

    /// The reservation `[start, end)`, none of it given out yet.
    pub fn new(start: u64, end: u64) -> HeapReserve {
        HeapReserve {
            start,
            end: end.max(start),
            next: start,
            ..HeapReserve::empty()
        }
    }

    /// Bytes reserved.
    pub fn total(&self) -> u64 {
        self.end - self.start
    }

    /// The first piece: up to the first [`CHUNK`] boundary after the
    /// start, a whole chunk when the start is on one (all that is left
    /// when less is).
    pub fn first(&mut self) -> Option<(u64, u64)> {
        if self.next != self.start || self.start == self.end {
            return None;
        }
        let boundary = (self.start / CHUNK + 1) * CHUNK;
        let piece = (self.start, boundary.min(self.end));
        self.next = piece.1;
        Some(piece)
    }

    /// The next piece for an allocation of `size` bytes aligned to
    /// `align`: a range holding a block of the smallest power of two that
    /// fits both (at least a [`CHUNK`]) at its own alignment; `None` when
    /// the reservation has no such room left.
    pub fn grow(&mut self, size: u64, align: u64) -> Option<(u64, u64)> {
        let need = size
            .max(align)
            .max(1)
            .checked_next_power_of_two()?
            .max(CHUNK);
        if need == CHUNK
            && let Some(piece) = self.take_gap()
        {
            return Some(piece);
        }
        let at = self.next.checked_next_multiple_of(need)?;
        let end = at.checked_add(need)?;
        if end > self.end {
            return None;
        }
        let from = if at > self.next && self.ngaps < MAX_GAPS {
            self.gaps[self.ngaps] = (self.next, at);
            self.ngaps += 1;
            at
        } else {
            // No room to remember the gap: the allocator gets it now.
            self.next
        };
        self.next = end;
        Some((from, end))
    }

    /// A chunk (or what a gap has, if less) from the lowest gap.
    fn take_gap(&mut self) -> Option<(u64, u64)> {
        if self.ngaps == 0 {
            return None;
        }
        let (s, e) = self.gaps[0];
        let piece_end = ((s / CHUNK + 1) * CHUNK).min(e);
        if piece_end == e {
            self.gaps.copy_within(1..self.ngaps, 0);
            self.ngaps -= 1;
        } else {
            self.gaps[0].0 = piece_end;
        }
        Some((s, piece_end))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn first_piece_ends_at_a_chunk_boundary() {
        let mut r = HeapReserve::new(0x404b_3000, 0x444b_3000);
        assert_eq!(r.total(), 64 * MIB);
        assert_eq!(r.first(), Some((0x404b_3000, 0x4060_0000)));
        assert_eq!(r.first(), None, "once");
        let mut r = HeapReserve::new(0x7c00_0000, 0x8000_0000);
        assert_eq!(r.first(), Some((0x7c00_0000, 0x7c20_0000)));
        let mut r = HeapReserve::new(0x1000, 0x3000);
        assert_eq!(r.first(), Some((0x1000, 0x3000)), "all there is");
        assert_eq!(r.grow(8, 8), None);
        assert_eq!(HeapReserve::empty().first(), None);
    }

    #[test]
    fn large_blocks_at_their_alignment_small_growth_fills_the_gaps() {
        let base = 0x7c00_0000;
        let mut r = HeapReserve::new(base, base + 64 * MIB);
        r.first();
        // 8 MiB (the object arena): skips 6 MiB.
        assert_eq!(r.grow(6 * MIB, 8), Some((base + 8 * MIB, base + 16 * MIB)));
        // 24 MiB rounds up to 32 MiB (the mapping records).
        assert_eq!(
            r.grow(24 * MIB, 8),
            Some((base + 32 * MIB, base + 64 * MIB))
        );
        // Small growth comes from the gaps, lowest first, a chunk at a time.
        assert_eq!(r.grow(64, 8), Some((base + 2 * MIB, base + 4 * MIB)));
        assert_eq!(r.grow(64, 8), Some((base + 4 * MIB, base + 6 * MIB)));
        assert_eq!(r.grow(4096, 4096), Some((base + 6 * MIB, base + 8 * MIB)));
        assert_eq!(r.grow(64, 8), Some((base + 16 * MIB, base + 18 * MIB)));
        for i in 9..16 {
            assert_eq!(
                r.grow(64, 8),
                Some((base + 2 * i * MIB, base + 2 * (i + 1) * MIB))
            );
        }
        assert_eq!(r.grow(64, 8), None, "all given out");
        assert_eq!(r.grow(u64::MAX, 8), None);
    }

    #[test]
    fn an_unaligned_gap_goes_in_pieces_up_to_chunk_boundaries() {
        let start = 0x404b_3000;
        let mut r = HeapReserve::new(start, start + 64 * MIB);
        r.first();
        assert_eq!(r.grow(4 * MIB, 8), Some((0x4080_0000, 0x40c0_0000)));
        assert_eq!(r.grow(8, 8), Some((0x4060_0000, 0x4080_0000)));
        assert_eq!(r.grow(8, 8), Some((0x40c0_0000, 0x40e0_0000)));
    }

    #[test]
    fn too_many_gaps_hand_out_the_skipped_range_too() {
        let mut r = HeapReserve::new(0, 1 << 40);
        r.first();
        // Each block four times the last: each skips a gap.
        let mut size = 4 * MIB;
        for _ in 0..MAX_GAPS {
            assert_eq!(r.grow(size, 8), Some((size, 2 * size)));
            size *= 4;
        }
        assert_eq!(r.ngaps, MAX_GAPS);
        assert_eq!(r.grow(size, 8), Some((size / 2, 2 * size)), "gap included");
    }
}

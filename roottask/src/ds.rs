//! Dataspaces: memory a client maps page by page (or all at once).
//!
//! A dataspace is backed either by one physically contiguous range
//! ([`Backing::Phys`]: `Continuous` allocations and boot modules) or by
//! blocks allocated on first use ([`Backing::Blocks`]: one for a dataspace
//! up to 64 KiB, 64 KiB ones for larger ones, 2 MiB with `Super_pages`; all of
//! them at creation when `Pinned`; the last block only as far as the
//! dataspace reaches). Addresses are
//! moe's, which are physical ones (moe owns RAM 1:1), so the flexpage a
//! `map` returns names moe's own memory, and [`Ds::phys`] tells a client
//! where its memory really is (uvmm's identity mode needs that).
//!
//! Memory comes from an allocator callback (`size`, alignment order) that
//! returns zeroed memory, and goes back through [`Ds::release`]. A
//! `Continuous` dataspace takes its range uncleared instead
//! ([`Ds::phys_uncleared`]) and has it cleared a 2 MiB frame at a time
//! before the first client can see the frame ([`Ds::take_uncleared`]): a
//! VM's RAM its guest never touches is never cleared.

use alloc::vec;
use alloc::vec::Vec;

use l4_abi::{CapRights, Error, Fpage, MemRights};
use l4_ipc::protocols::{ds_flags, mem_alloc_flags};

use crate::pages::PAGE;

/// The super-page order (2 MiB).
pub const SUPER_ORDER: u8 = 21;
/// The largest block of on-demand dataspaces without `Super_pages` (64
/// KiB; a smaller dataspace is one block): a fault brings up to 16 pages,
/// as Linux's fault-around does, for at most 60 KiB unused per block
/// touched.
pub const BLOCK_ORDER: u8 = 16;

/// Where a dataspace's memory is.
#[derive(Debug)]
pub enum Backing {
    /// One contiguous range from `pa`; `owned` if moe frees it with the
    /// dataspace (not so for boot modules).
    Phys {
        /// Start.
        pa: u64,
        /// Whether it goes back to moe's allocator.
        owned: bool,
    },
    /// Blocks of `2^order` bytes, allocated on first use (0 = not yet).
    Blocks {
        /// Block order.
        order: u8,
        /// Block addresses.
        blocks: Vec<u64>,
    },
}

/// A dataspace.
#[derive(Debug)]
pub struct Ds {
    size: u64,
    rights: u64,
    flags: u64,
    backing: Backing,
    /// Of a [`Backing::Phys`] range taken uncleared: for each physical
    /// 2 MiB frame it overlaps (from the one holding its start), whether
    /// that part still holds old contents.
    uncleared: Vec<bool>,
}

/// The length of block `i` of `2^order` bytes of a dataspace of `size`
/// bytes: the last one reaches to the page after the end.
fn block_len(size: u64, order: u8, i: usize) -> u64 {
    let start = (i as u64) << order;
    (size.next_multiple_of(PAGE) - start.min(size)).min(1 << order)
}

/// The memory callback: `size` bytes aligned to `2^order`, zeroed.
pub type Alloc<'a> = &'a mut dyn FnMut(u64, u8) -> Option<u64>;

impl Ds {
    /// A dataspace on the contiguous memory at `pa`.
    pub fn phys(pa: u64, size: u64, rights: u64, flags: u64, owned: bool) -> Ds {
        Ds {
            size,
            rights: rights & ds_flags::RWX,
            flags,
            backing: Backing::Phys { pa, owned },
            uncleared: Vec::new(),
        }
    }

    /// A dataspace owning the contiguous memory at `pa`, whose old
    /// contents are cleared frame by frame before a client can see them:
    /// [`Ds::take_uncleared`] before every `map` and `phys` answer.
    pub fn phys_uncleared(pa: u64, size: u64, rights: u64, flags: u64) -> Ds {
        let first = pa >> SUPER_ORDER;
        let frames = (pa + size.next_multiple_of(PAGE)).div_ceil(1 << SUPER_ORDER) - first;
        Ds {
            uncleared: vec![true; frames as usize],
            ..Ds::phys(pa, size, rights, flags, true)
        }
    }

    /// The memory ranges of `[offset, offset + len)` (up to the
    /// dataspace's end), widened to the physical 2 MiB frames they touch,
    /// that still hold old contents; they count as cleared from now on, so
    /// the caller zeroes them before it answers. Every mapping `map` gives
    /// for an `offset` (at most a 2 MiB block, aligned in memory) lies in
    /// the frame `take_uncleared(offset, 1)` returns.
    pub fn take_uncleared(&mut self, offset: u64, len: u64) -> Vec<(u64, u64)> {
        let Backing::Phys { pa, .. } = self.backing else {
            return Vec::new();
        };
        if self.uncleared.is_empty() || offset >= self.size || len == 0 {
            return Vec::new();
        }
        let end = pa + self.size.next_multiple_of(PAGE);
        let (from, to) = (pa + offset, end.min((pa + offset).saturating_add(len)));
        let first = pa >> SUPER_ORDER;
        let mut out: Vec<(u64, u64)> = Vec::new();
        for f in (from >> SUPER_ORDER)..to.div_ceil(1 << SUPER_ORDER) {
            let Some(u) = self.uncleared.get_mut((f - first) as usize) else {
                break;
            };
            if !core::mem::take(u) {
                continue;
            }
            let (a, b) = (
                (f << SUPER_ORDER).max(pa),
                ((f + 1) << SUPER_ORDER).min(end),
            );
            match out.last_mut() {
                Some((s, n)) if *s + *n == a => *n += b - a,
                _ => out.push((a, b - a)),
            }
        }
        out
    }

    /// A dataspace whose memory is allocated on demand.
    pub fn on_demand(size: u64, rights: u64, flags: u64) -> Ds {
        let order = if flags & mem_alloc_flags::SUPER_PAGES != 0 && size >= 1 << SUPER_ORDER {
            SUPER_ORDER
        } else {
            // One block for a small dataspace, 64 KiB blocks for larger ones.
            (size.next_power_of_two().trailing_zeros() as u8)
                .clamp(crate::pages::MIN_ORDER, BLOCK_ORDER)
        };
        let n = size.div_ceil(1 << order) as usize;
        Ds {
            size,
            rights: rights & ds_flags::RWX,
            flags,
            backing: Backing::Blocks {
                order,
                blocks: vec![0; n],
            },
            uncleared: Vec::new(),
        }
    }

    /// The size in bytes.
    pub const fn size(&self) -> u64 {
        self.size
    }

    /// The access rights ([`ds_flags`]).
    pub const fn rights(&self) -> u64 {
        self.rights
    }

    /// The allocation flags ([`mem_alloc_flags`]).
    pub const fn flags(&self) -> u64 {
        self.flags
    }

    fn check_range(&self, offset: u64, size: u64) -> Result<u64, Error> {
        let end = offset.checked_add(size).ok_or(Error::Range)?;
        if offset >= self.size || end > self.size {
            return Err(Error::Range);
        }
        Ok(end)
    }

    /// The memory block containing `offset`: (address, its offset in the
    /// dataspace, its length), allocated if needed.
    fn block(&mut self, offset: u64, alloc: Alloc<'_>) -> Result<(u64, u64, u64), Error> {
        match &mut self.backing {
            Backing::Phys { pa, .. } => Ok((*pa, 0, self.size.next_multiple_of(PAGE))),
            Backing::Blocks { order, blocks } => {
                let i = (offset >> *order) as usize;
                let len = block_len(self.size, *order, i);
                let b = blocks.get_mut(i).ok_or(Error::Range)?;
                if *b == 0 {
                    *b = alloc(len, *order).ok_or(Error::NoMem)?;
                }
                Ok((*b, (i as u64) << *order, len))
            }
        }
    }

    /// The mapping for a client's access at `offset` (its address `spot`)
    /// with rights `req` ([`ds_flags`]; none means read): the largest
    /// block, up to a super page, that contains `offset`, lies in one piece
    /// of memory of the dataspace and puts `offset` at `spot` when mapped
    /// into a window aligned to its size. Contiguous memory (boot modules,
    /// `Continuous` allocations) maps in large pieces wherever the client's
    /// address and the memory are aligned alike; blocks allocated on demand
    /// map a block at most.
    pub fn map(
        &mut self,
        offset: u64,
        spot: u64,
        req: u64,
        alloc: Alloc<'_>,
    ) -> Result<Fpage, Error> {
        if offset >= self.size {
            return Err(Error::Range);
        }
        let mut rights = req & ds_flags::RWX;
        if rights == 0 {
            rights = ds_flags::R;
        }
        if rights & !self.rights != 0 {
            return Err(Error::Perm);
        }
        let (pa, base, len) = self.block(offset, alloc)?;
        let page = offset & !(PAGE - 1);
        let spot = spot & !(PAGE - 1);
        let mut start = page;
        let mut order = crate::pages::MIN_ORDER;
        for o in (crate::pages::MIN_ORDER..=SUPER_ORDER).rev() {
            let mask = (1u64 << o) - 1;
            // The dataspace offset that lands at the window's base.
            let Some(first) = page.checked_sub(spot & mask) else {
                continue;
            };
            if first >= base && first + (1 << o) <= base + len && (pa + (first - base)) & mask == 0
            {
                (start, order) = (first, o);
                break;
            }
        }
        Ok(Fpage::mem(
            pa + (start - base),
            order,
            MemRights(rights as u8 | MemRights::R.0),
        ))
    }

    /// Makes sure `[offset, offset + size)` has memory.
    pub fn allocate(&mut self, offset: u64, size: u64, alloc: Alloc<'_>) -> Result<(), Error> {
        if size == 0 {
            return Ok(());
        }
        let end = self.check_range(offset, size)?;
        let mut at = offset;
        while at < end {
            let (_, base, len) = self.block(at, alloc)?;
            at = base + len;
        }
        Ok(())
    }

    /// Allocates all memory now (`Pinned`).
    pub fn pin(&mut self, alloc: Alloc<'_>) -> Result<(), Error> {
        self.allocate(0, self.size, alloc)
    }

    /// The memory ranges holding `[offset, offset + size)` that have memory
    /// (what `clear` zeroes); [`Error::Perm`] for a read-only dataspace.
    pub fn clear_ranges(&self, offset: u64, size: u64) -> Result<Vec<(u64, u64)>, Error> {
        if self.rights & ds_flags::W == 0 {
            return Err(Error::Perm);
        }
        if size == 0 {
            return Ok(Vec::new());
        }
        let end = self.check_range(offset, size)?;
        Ok(match &self.backing {
            Backing::Phys { pa, .. } => vec![(pa + offset, end - offset)],
            Backing::Blocks { order, blocks } => {
                let mut v = Vec::new();
                let bs = 1u64 << order;
                for i in (offset >> order)..end.div_ceil(bs) {
                    let b = blocks[i as usize];
                    let (s, e) = ((i * bs).max(offset), ((i + 1) * bs).min(end));
                    if b != 0 {
                        v.push((b + (s - i * bs), e - s));
                    }
                }
                v
            }
        })
    }

    /// Where `offset` is in physical memory and how many bytes from there
    /// are contiguous (within the dataspace); allocates the block.
    pub fn phys_at(&mut self, offset: u64, alloc: Alloc<'_>) -> Result<(u64, u64), Error> {
        if offset >= self.size {
            return Err(Error::Range);
        }
        let (pa, base, len) = self.block(offset, alloc)?;
        let n = (base + len).min(self.size) - offset;
        Ok((pa + (offset - base), n))
    }

    /// The memory to give back when the dataspace goes away.
    pub fn release(self) -> Vec<(u64, u64)> {
        match self.backing {
            Backing::Phys { pa, owned: true } => vec![(pa, self.size.next_multiple_of(PAGE))],
            Backing::Phys { owned: false, .. } => Vec::new(),
            Backing::Blocks { order, blocks } => blocks
                .into_iter()
                .enumerate()
                .filter(|&(_, b)| b != 0)
                .map(|(i, b)| (b, block_len(self.size, order, i)))
                .collect(),
        }
    }
}

/// What the capability a request came through allows: the kernel passes
/// its W right in the label, and without it a client may neither map
/// writable nor change the contents (`Perm`), and `info` reports the
/// dataspace read-only.
pub fn cap_allows_write(cap: CapRights, wants_write: bool) -> Result<(), Error> {
    if wants_write && !cap.contains(CapRights::W) {
        Err(Error::Perm)
    } else {
        Ok(())
    }
}

/// The rights `info` reports through a capability with `cap` rights.
pub fn visible_rights(ds_rights: u64, cap: CapRights) -> u64 {
    if cap.contains(CapRights::W) {
        ds_rights
    } else {
        ds_rights & !ds_flags::W
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pages::PageAlloc;
    use l4_ipc::protocols::mem_alloc_flags::*;

    const MIB: u64 = 1 << 20;

    fn pool() -> PageAlloc {
        let mut p = PageAlloc::new();
        p.add(0x4000_0000, 64 * MIB);
        p
    }

    #[test]
    fn a_small_dataspace_is_one_block() {
        let mut p = pool();
        let mut alloc = |s, o| p.alloc(s, o);
        let mut ds = Ds::on_demand(3 * PAGE + 1, ds_flags::RWX, 0);
        let f = ds
            .map(0x1234, 0x7000_1234, ds_flags::RW, &mut alloc)
            .unwrap();
        assert_eq!((f.order(), f.mem_rights()), (14, MemRights::RW));
        let g = ds.map(0x1000, 0x7000_1000, 0, &mut alloc).unwrap();
        assert_eq!(g.mem_base(), f.mem_base(), "the same block again");
        assert_eq!(g.mem_rights(), MemRights::R);
        assert_eq!(ds.map(4 * PAGE, 0, 0, &mut alloc), Err(Error::Range));
        let h = ds.map(3 * PAGE, 0x7000_3000, 0, &mut alloc).unwrap();
        assert_eq!((h.order(), h.mem_base()), (14, f.mem_base()));
        let h = ds.map(3 * PAGE, 0, 0, &mut alloc).unwrap();
        assert_eq!((h.order(), h.mem_base()), (12, f.mem_base() + 3 * PAGE));
        assert_eq!(ds.release(), [(f.mem_base(), 4 * PAGE)]);
    }

    #[test]
    fn larger_dataspaces_come_in_64_kib_blocks() {
        let mut p = pool();
        let mut alloc = |s, o| p.alloc(s, o);
        let mut ds = Ds::on_demand(0x1_9000, ds_flags::RW, 0);
        let f = ds.map(0x1000, 0x7000_1000, 0, &mut alloc).unwrap();
        assert_eq!(f.order(), 16);
        assert_eq!(f.mem_base() % 0x1_0000, 0);
        // The last block reaches to the end only.
        let g = ds.map(0x1_0000, 0x7001_0000, 0, &mut alloc).unwrap();
        assert_eq!(g.order(), 15);
        let h = ds.map(0x1_8000, 0x7001_8000, 0, &mut alloc).unwrap();
        assert_eq!((h.order(), h.mem_base()), (12, g.mem_base() + 0x8000));
        let mem = ds.release();
        assert_eq!(mem, [(f.mem_base(), 0x1_0000), (g.mem_base(), 0x9000)]);
    }

    #[test]
    fn uncleared_memory_is_handed_out_frame_by_frame() {
        // 5 MiB from 1 MiB into a 2 MiB frame: frames 0..3 of it.
        let pa = 0x4010_0000;
        let mut ds = Ds::phys_uncleared(pa, 5 * MIB, ds_flags::RWX, CONTINUOUS);
        // The frame holding offset 0 is cut at the dataspace's start.
        assert_eq!(ds.take_uncleared(0x1234, 1), [(pa, MIB)]);
        assert_eq!(ds.take_uncleared(0x1234, 1), []);
        // Across frames: the next two, merged, then the rest.
        assert_eq!(
            ds.take_uncleared(MIB, 2 * MIB + 1),
            [(0x4020_0000, 4 * MIB)]
        );
        assert_eq!(ds.take_uncleared(0, u64::MAX), []);
        // The whole dataspace at once; the end is cut at its last page.
        let mut ds = Ds::phys_uncleared(pa, 5 * MIB - 10, ds_flags::RWX, CONTINUOUS);
        assert_eq!(ds.take_uncleared(0, u64::MAX), [(pa, 5 * MIB)]);
        assert_eq!(ds.take_uncleared(5 * MIB, 1), []);
        // Cleared memory and on-demand blocks have nothing to clear.
        let mut ds = Ds::phys(pa, MIB, ds_flags::RWX, CONTINUOUS, true);
        assert_eq!(ds.take_uncleared(0, MIB), []);
        let mut ds = Ds::on_demand(4 * MIB, ds_flags::RWX, 0);
        assert_eq!(ds.take_uncleared(0, MIB), []);
    }

    #[test]
    fn every_mapping_lies_in_the_frame_that_was_cleared() {
        let mut p = pool();
        // Contiguous memory not aligned to 2 MiB, mapped at spots of every
        // alignment: the mapping stays inside the frame of its offset.
        let pa = p.alloc(8 * MIB, 16).unwrap() + 0x1_0000;
        let mut alloc = |_, _| None;
        for (offset, spot) in [
            (0x30_1000, 0x8030_1000),
            (0x1f_0000, 0x801f_0000),
            (0, 0x10_0000),
        ] {
            let mut ds = Ds::phys_uncleared(pa, 6 * MIB, ds_flags::RWX, CONTINUOUS);
            let cleared = ds.take_uncleared(offset, 1);
            let f = ds.map(offset, spot, ds_flags::RW, &mut alloc).unwrap();
            let (lo, hi) = (f.mem_base(), f.mem_base() + (1 << f.order()));
            assert!(
                cleared.iter().any(|&(a, n)| a <= lo && hi <= a + n),
                "{lo:#x}..{hi:#x} not in {cleared:x?}"
            );
        }
    }

    #[test]
    fn continuous_super_pages_map_big() {
        let mut p = pool();
        let pa = p.alloc(8 * MIB, 21).unwrap();
        let mut ds = Ds::phys(
            pa,
            8 * MIB,
            ds_flags::RWX,
            CONTINUOUS | PINNED | SUPER_PAGES,
            true,
        );
        let mut alloc = |_, _| None;
        let f = ds
            .map(0x30_1000, 0x8030_1000, ds_flags::RW, &mut alloc)
            .unwrap();
        assert_eq!((f.order(), f.mem_base()), (21, pa + 0x20_0000));
        // A spot not aligned alike gets pages only.
        let f = ds
            .map(0x30_1000, 0x8031_2000, ds_flags::RW, &mut alloc)
            .unwrap();
        assert_eq!((f.order(), f.mem_base()), (12, pa + 0x30_1000));
        assert_eq!(
            ds.phys_at(0x10, &mut alloc),
            Ok((pa + 0x10, 8 * MIB - 0x10))
        );
        // Without Super_pages too: contiguous memory maps big.
        let mut cont = Ds::phys(pa, 8 * MIB, ds_flags::RWX, CONTINUOUS, true);
        assert_eq!(cont.map(0, 0, 0, &mut alloc).unwrap().order(), 21);
        assert_eq!(ds.release(), [(pa, 8 * MIB)]);
    }

    #[test]
    fn modules_map_as_far_as_alignment_allows() {
        // A module at a 64 KiB boundary: 64 KiB pieces where the client's
        // address is aligned alike, pages where not, never past its end.
        let pa = 0x5001_0000;
        let mut rom = Ds::phys(pa, 0x2_3000, ds_flags::RX, 0, false);
        let mut none = |_, _| None;
        let f = rom.map(0x1_2345, 0x8001_2000, 0, &mut none).unwrap();
        assert_eq!((f.order(), f.mem_base()), (16, pa + 0x1_0000));
        let f = rom.map(0x2000, 0x8001_2000, 0, &mut none).unwrap();
        assert_eq!((f.order(), f.mem_base()), (16, pa));
        let f = rom.map(0x2000, 0x8001_3000, 0, &mut none).unwrap();
        assert_eq!((f.order(), f.mem_base()), (12, pa + 0x2000));
        let f = rom.map(0x2_1000, 0x8002_1000, 0, &mut none).unwrap();
        assert_eq!((f.order(), f.mem_base()), (13, pa + 0x2_0000), "the tail");
        let f = rom.map(0x1000, 0x1000, 0, &mut none).unwrap();
        assert_eq!((f.order(), f.mem_base()), (16, pa), "low spot");
    }

    #[test]
    fn super_page_blocks_on_demand_and_pinned() {
        let mut p = pool();
        let mut alloc = |s, o| p.alloc(s, o);
        let mut ds = Ds::on_demand(5 * MIB, ds_flags::RW, SUPER_PAGES | PINNED);
        ds.pin(&mut alloc).unwrap();
        let f = ds
            .map(2 * MIB + 5, 0x4020_0000, ds_flags::R, &mut alloc)
            .unwrap();
        assert_eq!(f.order(), 21);
        let (pa, n) = ds.phys_at(MIB, &mut alloc).unwrap();
        assert_eq!((pa % (2 * MIB), n), (MIB, MIB));
        let (_, n) = ds.phys_at(4 * MIB + 8, &mut alloc).unwrap();
        assert_eq!(n, MIB - 8, "cut at the dataspace's end");
        assert_eq!(ds.release().len(), 3);
        assert_eq!(
            p.free_bytes(),
            64 * MIB - 5 * MIB,
            "the last block is 1 MiB"
        );
    }

    #[test]
    fn rights_ranges_and_memory_exhaustion() {
        let mut rom = Ds::phys(0x5000_0000, 100, ds_flags::RX, 0, false);
        let mut none = |_, _| None;
        assert_eq!(rom.map(0, 0, ds_flags::W, &mut none), Err(Error::Perm));
        assert_eq!(
            rom.map(0, 0, ds_flags::RX, &mut none).unwrap().mem_rights(),
            MemRights::RX
        );
        assert_eq!(rom.clear_ranges(0, 10), Err(Error::Perm));
        assert!(
            rom.release().is_empty(),
            "module memory is not moe's to free"
        );
        const B: u64 = 1 << BLOCK_ORDER;
        let mut ds = Ds::on_demand(4 * B, ds_flags::RW, 0);
        assert_eq!(ds.map(0, 0, 0, &mut none), Err(Error::NoMem));
        assert_eq!(ds.allocate(0, 1, &mut none), Err(Error::NoMem));
        assert_eq!(ds.allocate(B, u64::MAX, &mut none), Err(Error::Range));
        assert_eq!(ds.allocate(0, 5 * B, &mut none), Err(Error::Range));
        assert_eq!(ds.phys_at(4 * B, &mut none), Err(Error::Range));
        let mut p = pool();
        let mut alloc = |s, o| p.alloc(s, o);
        ds.allocate(B + 5, B, &mut alloc).unwrap();
        let r = ds.clear_ranges(0x800, 3 * B).unwrap();
        assert_eq!(r.len(), 2, "blocks 1 and 2 have memory");
        assert_eq!((r[0].1, r[1].1), (B, B));
        let r = ds.clear_ranges(B + 0x800, B).unwrap();
        assert_eq!((r[0].1, r[1].1), (B - 0x800, 0x800));
        assert_eq!(ds.clear_ranges(4 * B, 1), Err(Error::Range));
        assert_eq!(ds.clear_ranges(0, 0), Ok(Vec::new()));
    }

    #[test]
    fn capability_rights_limit_writes() {
        assert_eq!(cap_allows_write(CapRights::RO, true), Err(Error::Perm));
        assert_eq!(cap_allows_write(CapRights::RO, false), Ok(()));
        assert_eq!(cap_allows_write(CapRights::RW, true), Ok(()));
        assert_eq!(visible_rights(ds_flags::RWX, CapRights::RO), ds_flags::RX);
        assert_eq!(visible_rights(ds_flags::RW, CapRights::RWS), ds_flags::RW);
    }
}

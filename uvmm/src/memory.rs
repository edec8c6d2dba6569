//! Guest memory: the RAM dataspace's bytes ([`Ram`]) and the guest-physical
//! regions it backs ([`GuestMemory`]).
//!
//! The guest's RAM is one dataspace (`ram` capability, or the memory
//! nodes' `l4vmm,dscap`) mapped into uvmm. Each [`RamRegion`] places a
//! part of it at a guest-physical address. Everything uvmm reads or writes
//! in the guest (loading images, virtqueues) goes through the bounds-checked
//! accessors here; an address outside RAM is an error, never a crash.

use core::fmt;
use core::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Why a guest-memory access failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemError {
    /// `[gpa, gpa + len)` is not inside one RAM region.
    NotRam {
        /// The guest-physical start.
        gpa: u64,
        /// The length.
        len: u64,
    },
    /// An offset range outside the RAM dataspace.
    OutOfRange {
        /// The offset in the dataspace.
        offset: u64,
        /// The length.
        len: u64,
    },
}

impl fmt::Display for MemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            MemError::NotRam { gpa, len } => write!(
                f,
                "guest-physical range {gpa:#x}..{:#x} is not in guest RAM",
                gpa.saturating_add(len)
            ),
            MemError::OutOfRange { offset, len } => {
                write!(f, "range {offset:#x}+{len:#x} is outside the RAM dataspace")
            }
        }
    }
}

impl std::error::Error for MemError {}

/// The largest piece of a stage-2 mapping (a level-2 block).
pub const MAX_MAP_ORDER: u8 = 21;

/// The order of the largest power-of-two piece at `local` (uvmm's address)
/// and `gpa` (the guest's) of at most `left` bytes that both are aligned
/// to: at least a page, at most [`MAX_MAP_ORDER`].
pub fn map_order(local: u64, gpa: u64, left: u64) -> u8 {
    let mut order = 12u8;
    while order < MAX_MAP_ORDER {
        let next = 1u64 << (order + 1);
        if !local.is_multiple_of(next) || !gpa.is_multiple_of(next) || next > left {
            break;
        }
        order += 1;
    }
    order
}

/// A window of guest RAM given to the guest a block at a time, when the
/// guest first touches the block: blocks are the 2 MiB pieces of
/// guest-physical space ([`MAX_MAP_ORDER`]) the window overlaps.
#[derive(Debug)]
pub struct DemandWindow {
    gpa: u64,
    size: u64,
    local: u64,
    /// Per block (from the one holding `gpa`): given to the guest.
    given: Vec<bool>,
}

/// A block of a [`DemandWindow`] to map: guest-physical start, uvmm's
/// address and size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DemandBlock {
    /// Guest-physical start.
    pub gpa: u64,
    /// Where it is in uvmm.
    pub local: u64,
    /// Its size (a whole block but at the window's ends).
    pub size: u64,
}

impl DemandWindow {
    const BLOCK: u64 = 1 << MAX_MAP_ORDER;

    /// `size` bytes at guest-physical `gpa`, at `local` in uvmm, none of
    /// them given yet.
    pub fn new(gpa: u64, size: u64, local: u64) -> DemandWindow {
        let blocks = gpa.saturating_add(size).div_ceil(Self::BLOCK) - gpa / Self::BLOCK;
        DemandWindow {
            gpa,
            size,
            local,
            given: vec![false; blocks as usize],
        }
    }

    /// Whether `gpa` is in the window.
    pub fn contains(&self, gpa: u64) -> bool {
        gpa >= self.gpa && gpa - self.gpa < self.size
    }

    /// The block holding `gpa` if it is in the window and not given yet;
    /// it counts as given from now on.
    pub fn take(&mut self, gpa: u64) -> Option<DemandBlock> {
        if !self.contains(gpa) {
            return None;
        }
        let aligned = gpa & !(Self::BLOCK - 1);
        let i = ((aligned - (self.gpa & !(Self::BLOCK - 1))) / Self::BLOCK) as usize;
        if std::mem::replace(&mut self.given[i], true) {
            return None;
        }
        let start = aligned.max(self.gpa);
        let end = (aligned + Self::BLOCK).min(self.gpa + self.size);
        Some(DemandBlock {
            gpa: start,
            local: self.local + (start - self.gpa),
            size: end - start,
        })
    }
}

/// A VM's [`DemandWindow`]s, shared by its vCPUs. Most exits that ask it
/// are MMIO outside RAM: they are answered from the span of all windows,
/// without taking the lock.
#[derive(Debug)]
pub struct DemandRam {
    /// The lowest guest-physical address of a window (`u64::MAX`: none).
    lo: AtomicU64,
    /// The end of the highest window.
    hi: AtomicU64,
    windows: Mutex<Vec<DemandWindow>>,
}

impl Default for DemandRam {
    fn default() -> DemandRam {
        DemandRam {
            lo: AtomicU64::new(u64::MAX),
            hi: AtomicU64::new(0),
            windows: Mutex::default(),
        }
    }
}

impl DemandRam {
    /// Adds a window.
    pub fn add(&self, w: DemandWindow) {
        self.lo.fetch_min(w.gpa, Ordering::Relaxed);
        self.hi
            .fetch_max(w.gpa.saturating_add(w.size), Ordering::Relaxed);
        crate::bus::lock(&self.windows).push(w);
    }

    /// `None` if `gpa` is in no window; else the block holding it if the
    /// guest has not been given it yet (it counts as given from now on).
    pub fn take(&self, gpa: u64) -> Option<Option<DemandBlock>> {
        if gpa < self.lo.load(Ordering::Relaxed) || gpa >= self.hi.load(Ordering::Relaxed) {
            return None;
        }
        let mut windows = crate::bus::lock(&self.windows);
        let w = windows.iter_mut().find(|w| w.contains(gpa))?;
        Some(w.take(gpa))
    }
}

/// The bytes of the RAM dataspace as uvmm sees them: memory shared with
/// the running guest, so only copied in and out (never lent as a Rust
/// reference the guest could change underneath).
pub struct Ram {
    ptr: NonNull<u8>,
    len: usize,
    /// Allocated by [`Ram::zeroed`] (freed on drop), or mapped by the
    /// caller of [`Ram::from_raw`].
    owned: bool,
}

// SAFETY: `Ram` is a pointer to memory that stays valid for its life
// (owned, or guaranteed by `from_raw`'s caller); all access copies bytes
// through raw pointers, which is as safe from any thread as the guest's own
// concurrent access to the same memory.
unsafe impl Send for Ram {}
// SAFETY: as for `Send`: no method hands out references into the memory.
unsafe impl Sync for Ram {}

impl Ram {
    /// `len` zero bytes of uvmm's own memory (host tests, and a stand-in
    /// while the dataspace cannot be attached).
    pub fn zeroed(len: usize) -> Ram {
        let b: Box<[u8]> = vec![0u8; len].into_boxed_slice();
        let len = b.len();
        let ptr = NonNull::new(Box::into_raw(b).cast::<u8>()).unwrap_or(NonNull::dangling());
        Ram {
            ptr,
            len,
            owned: true,
        }
    }

    /// The dataspace mapped at `ptr` with `len` bytes.
    ///
    /// # Safety
    /// `ptr .. ptr + len` must be mapped readable and writable for the whole
    /// life of the returned `Ram`, and nothing in uvmm may hold Rust
    /// references into it.
    pub unsafe fn from_raw(ptr: NonNull<u8>, len: usize) -> Ram {
        Ram {
            ptr,
            len,
            owned: false,
        }
    }

    /// The size in bytes.
    pub fn len(&self) -> u64 {
        self.len as u64
    }

    /// Whether the RAM has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    fn check(&self, offset: u64, len: usize) -> Result<usize, MemError> {
        let err = MemError::OutOfRange {
            offset,
            len: len as u64,
        };
        let start = usize::try_from(offset).map_err(|_| err)?;
        match start.checked_add(len) {
            Some(end) if end <= self.len => Ok(start),
            _ => Err(err),
        }
    }

    /// [`Ram::check`] for a length given as guest-sized `u64`: the start
    /// and the length as `usize`.
    fn span(&self, offset: u64, len: u64) -> Result<(usize, usize), MemError> {
        let n = usize::try_from(len).map_err(|_| MemError::OutOfRange { offset, len })?;
        Ok((self.check(offset, n)?, n))
    }

    /// Copies `buf.len()` bytes from `offset`.
    #[inline]
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), MemError> {
        let start = self.check(offset, buf.len())?;
        // SAFETY: `check` proved start + buf.len() <= self.len, and the
        // memory is valid for the life of self; `buf` is uvmm's own memory,
        // so the ranges do not overlap.
        unsafe {
            core::ptr::copy_nonoverlapping(
                self.ptr.as_ptr().add(start),
                buf.as_mut_ptr(),
                buf.len(),
            )
        };
        Ok(())
    }

    /// Copies `data` to `offset`.
    #[inline]
    pub fn write(&self, offset: u64, data: &[u8]) -> Result<(), MemError> {
        let start = self.check(offset, data.len())?;
        // SAFETY: as in `read`, with the copy going the other way.
        unsafe {
            core::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.as_ptr().add(start), data.len())
        };
        Ok(())
    }

    /// Lends `len` bytes from `offset` to `f` as a slice, for filling guest
    /// RAM in place before the guest runs (inflating its kernel there).
    ///
    /// # Safety
    /// Nothing else may access these bytes while `f` runs: no vCPU of the
    /// guest, no other thread of uvmm, no other task sharing the dataspace.
    pub unsafe fn with_bytes_mut<R>(
        &self,
        offset: u64,
        len: u64,
        f: impl FnOnce(&mut [u8]) -> R,
    ) -> Result<R, MemError> {
        let (start, n) = self.span(offset, len)?;
        // SAFETY: `check` proved the range is inside the valid memory, and
        // the caller guarantees nobody else accesses it meanwhile.
        let bytes = unsafe { core::slice::from_raw_parts_mut(self.ptr.as_ptr().add(start), n) };
        Ok(f(bytes))
    }

    /// Makes `len` bytes from `offset`, which uvmm wrote, visible to a
    /// guest running with its MMU and caches off: cleaned to the point of
    /// coherency and, for `code`, out of the instruction cache
    /// ([`l4::cache`]).
    pub fn sync_for_guest(&self, offset: u64, len: u64, code: bool) -> Result<(), MemError> {
        let (start, n) = self.span(offset, len)?;
        let addr = self.ptr.as_ptr() as usize + start;
        l4::cache::clean_to_poc(addr, n);
        if code {
            l4::cache::invalidate_icache(addr, n);
        }
        Ok(())
    }

    /// Sets `len` bytes from `offset` to zero.
    pub fn zero(&self, offset: u64, len: u64) -> Result<(), MemError> {
        let (start, n) = self.span(offset, len)?;
        // SAFETY: `check` proved the range is inside the valid memory.
        unsafe { core::ptr::write_bytes(self.ptr.as_ptr().add(start), 0, n) };
        Ok(())
    }
}

impl Drop for Ram {
    fn drop(&mut self) {
        if self.owned {
            let slice = core::ptr::slice_from_raw_parts_mut(self.ptr.as_ptr(), self.len);
            // SAFETY: an owned `Ram` came from `Box::into_raw` of a boxed
            // slice of exactly `len` bytes in `zeroed`, freed only here.
            drop(unsafe { Box::from_raw(slice) });
        }
    }
}

impl fmt::Debug for Ram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ram({:#x} bytes)", self.len)
    }
}

/// A guest-physical range backed by part of a RAM dataspace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RamRegion {
    /// Which of the [`GuestMemory`]'s dataspaces (in the order added).
    pub ram: usize,
    /// Guest-physical start.
    pub gpa: u64,
    /// Size in bytes.
    pub size: u64,
    /// Where the region starts in the dataspace.
    pub ds_offset: u64,
}

impl RamRegion {
    /// One past the last guest-physical address.
    pub fn end(&self) -> u64 {
        self.gpa + self.size
    }

    /// Whether `[gpa, gpa + len)` lies inside the region.
    pub fn contains(&self, gpa: u64, len: u64) -> bool {
        gpa >= self.gpa && gpa.checked_add(len).is_some_and(|e| e <= self.end())
    }
}

/// Why a RAM layout was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LayoutError {
    /// No region (or only empty ones).
    Empty,
    /// Two regions overlap in guest-physical space.
    Overlap(u64, u64),
    /// A region wraps around the address space.
    Wraps(u64),
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LayoutError::Empty => f.write_str("no guest RAM (empty dataspace or no memory region)"),
            LayoutError::Overlap(a, b) => {
                write!(f, "memory regions at {a:#x} and {b:#x} overlap")
            }
            LayoutError::Wraps(a) => write!(f, "memory region at {a:#x} wraps around"),
        }
    }
}

impl std::error::Error for LayoutError {}

/// Guest RAM: the dataspaces' bytes and where they appear.
#[derive(Clone, Debug, Default)]
pub struct GuestMemory {
    rams: Vec<Arc<Ram>>,
    regions: Vec<RamRegion>,
}

impl GuestMemory {
    /// Guest memory with one dataspace, see [`GuestMemory::add_ram`].
    pub fn fill(ram: Arc<Ram>, wanted: &[(u64, u64)]) -> Result<GuestMemory, LayoutError> {
        let mut m = GuestMemory::default();
        m.add_ram(ram, wanted)?;
        Ok(m)
    }

    /// Adds a dataspace: fills the guest-physical ranges `wanted` (base,
    /// size), in order, with consecutive parts of `ram` until it is used
    /// up: a range longer than what is left is cut, ranges after that are
    /// dropped (how uvmm reads memory nodes' `reg`).
    pub fn add_ram(&mut self, ram: Arc<Ram>, wanted: &[(u64, u64)]) -> Result<(), LayoutError> {
        let index = self.rams.len();
        let mut regions = Vec::new();
        let mut offset = 0u64;
        for &(gpa, size) in wanted {
            let size = size.min(ram.len() - offset);
            if size == 0 {
                continue;
            }
            if gpa.checked_add(size).is_none() {
                return Err(LayoutError::Wraps(gpa));
            }
            regions.push(RamRegion {
                ram: index,
                gpa,
                size,
                ds_offset: offset,
            });
            offset += size;
        }
        if regions.is_empty() {
            return Err(LayoutError::Empty);
        }
        let mut sorted: Vec<RamRegion> = self.regions.iter().chain(&regions).copied().collect();
        sorted.sort_by_key(|r| r.gpa);
        for w in sorted.windows(2) {
            if w[0].end() > w[1].gpa {
                return Err(LayoutError::Overlap(w[0].gpa, w[1].gpa));
            }
        }
        self.rams.push(ram);
        self.regions.extend(regions);
        Ok(())
    }

    /// The regions, in the order added (dataspace by dataspace).
    pub fn regions(&self) -> &[RamRegion] {
        &self.regions
    }

    /// The dataspaces' bytes, in the order added.
    pub fn rams(&self) -> &[Arc<Ram>] {
        &self.rams
    }

    /// The region containing all of `[gpa, gpa + len)`.
    pub fn region_of(&self, gpa: u64, len: u64) -> Result<&RamRegion, MemError> {
        self.regions
            .iter()
            .find(|r| r.contains(gpa, len))
            .ok_or(MemError::NotRam { gpa, len })
    }

    /// The dataspace (index in [`GuestMemory::rams`]) and offset in it of
    /// guest-physical `gpa`, when `len` bytes from there are RAM.
    #[inline]
    pub fn translate(&self, gpa: u64, len: u64) -> Result<(usize, u64), MemError> {
        let r = self.region_of(gpa, len)?;
        Ok((r.ram, r.ds_offset + (gpa - r.gpa)))
    }

    /// Copies guest bytes at `gpa` into `buf`.
    #[inline]
    pub fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), MemError> {
        let (ram, off) = self.translate(gpa, buf.len() as u64)?;
        self.rams[ram].read(off, buf)
    }

    /// Copies `data` to the guest at `gpa`.
    #[inline]
    pub fn write(&self, gpa: u64, data: &[u8]) -> Result<(), MemError> {
        let (ram, off) = self.translate(gpa, data.len() as u64)?;
        self.rams[ram].write(off, data)
    }

    /// [`Ram::with_bytes_mut`] for `len` guest bytes at `gpa`.
    ///
    /// # Safety
    /// As for [`Ram::with_bytes_mut`].
    pub unsafe fn with_bytes_mut<R>(
        &self,
        gpa: u64,
        len: u64,
        f: impl FnOnce(&mut [u8]) -> R,
    ) -> Result<R, MemError> {
        let (ram, off) = self.translate(gpa, len)?;
        // SAFETY: passed on from the caller.
        unsafe { self.rams[ram].with_bytes_mut(off, len, f) }
    }

    /// Zeroes `len` guest bytes at `gpa`.
    pub fn zero(&self, gpa: u64, len: u64) -> Result<(), MemError> {
        let (ram, off) = self.translate(gpa, len)?;
        self.rams[ram].zero(off, len)
    }

    /// [`Ram::sync_for_guest`] for the parts of `[gpa, gpa + len)` that
    /// are RAM (an ELF kernel's segments may leave gaps between them).
    pub fn sync_for_guest(&self, gpa: u64, len: u64, code: bool) -> Result<(), MemError> {
        for (ram, offset, len) in self.ram_parts(gpa, len) {
            self.rams[ram].sync_for_guest(offset, len, code)?;
        }
        Ok(())
    }

    /// The parts of `[gpa, gpa + len)` that are RAM: dataspace (index in
    /// [`GuestMemory::rams`]), offset in it, length.
    fn ram_parts(&self, gpa: u64, len: u64) -> impl Iterator<Item = (usize, u64, u64)> + '_ {
        let end = gpa.saturating_add(len);
        self.regions.iter().filter_map(move |r| {
            let (s, e) = (gpa.max(r.gpa), end.min(r.end()));
            (s < e).then(|| (r.ram, r.ds_offset + (s - r.gpa), e - s))
        })
    }

    // The accessors are all `#[inline]`: a device (or the network switch)
    // reads a descriptor field by field, and each fixed-size access then
    // becomes a plain load or store instead of a call to `memcpy` with a
    // run-time length (a ping through the switch: 64,000 -> 62,000
    // instructions).

    /// A little-endian `u16` at `gpa`.
    #[inline]
    pub fn read_u16(&self, gpa: u64) -> Result<u16, MemError> {
        let mut b = [0; 2];
        self.read(gpa, &mut b)?;
        Ok(u16::from_le_bytes(b))
    }

    /// A little-endian `u32` at `gpa`.
    #[inline]
    pub fn read_u32(&self, gpa: u64) -> Result<u32, MemError> {
        let mut b = [0; 4];
        self.read(gpa, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    /// A little-endian `u64` at `gpa`.
    #[inline]
    pub fn read_u64(&self, gpa: u64) -> Result<u64, MemError> {
        let mut b = [0; 8];
        self.read(gpa, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Writes a little-endian `u16` to `gpa`.
    #[inline]
    pub fn write_u16(&self, gpa: u64, v: u16) -> Result<(), MemError> {
        self.write(gpa, &v.to_le_bytes())
    }

    /// Writes a little-endian `u32` to `gpa`.
    #[inline]
    pub fn write_u32(&self, gpa: u64, v: u32) -> Result<(), MemError> {
        self.write(gpa, &v.to_le_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demand_windows_give_each_block_once() {
        const M: u64 = 1 << 20;
        // 5 MiB from 1 MiB into a block, at a local address aligned alike.
        let mut w = DemandWindow::new(0x4010_0000, 5 * M, 0x10_0010_0000);
        let b = |gpa, local, size| Some(DemandBlock { gpa, local, size });
        assert_eq!(w.take(0x4000_0000), None, "before the window");
        assert_eq!(w.take(0x4010_0000), b(0x4010_0000, 0x10_0010_0000, M));
        assert_eq!(w.take(0x401f_ffff), None, "given already");
        assert_eq!(w.take(0x4030_0000), b(0x4020_0000, 0x10_0020_0000, 2 * M));
        assert_eq!(w.take(0x405f_ffff), b(0x4040_0000, 0x10_0040_0000, 2 * M));
        assert_eq!(w.take(0x4060_0000), None, "after the window");
        assert!(w.contains(0x405f_ffff) && !w.contains(0x4060_0000));
    }

    #[test]
    fn demand_ram_answers_outside_its_span_without_a_window() {
        const M: u64 = 1 << 20;
        let ram = DemandRam::default();
        assert_eq!(ram.take(0x4000_0000), None, "no window yet");
        ram.add(DemandWindow::new(0x4000_0000, 4 * M, 0x10_0000_0000));
        ram.add(DemandWindow::new(0x8000_0000, 2 * M, 0x20_0000_0000));
        assert_eq!(ram.take(0x900_0000), None, "MMIO below RAM");
        assert_eq!(ram.take(0x6000_0000), None, "between the windows");
        let first = ram.take(0x8000_1000);
        assert_eq!(first.map(|b| b.map(|b| b.gpa)), Some(Some(0x8000_0000)));
        assert_eq!(ram.take(0x8010_0000), Some(None), "given already");
        assert_eq!(ram.take(0x8020_0000), None, "past the end");
    }

    #[test]
    fn stage2_pieces() {
        assert_eq!(map_order(0x20_0000, 0x4000_0000, 8 << 20), 21);
        assert_eq!(map_order(0x40_0000, 0x4000_0000, 8 << 20), 21);
        assert_eq!(map_order(0x20_1000, 0x4000_1000, 8 << 20), 12);
        assert_eq!(map_order(0x20_0000, 0x4000_0000, 0x10_0000), 20);
        assert_eq!(map_order(0x20_0000, 0x4001_0000, 8 << 20), 16);
    }

    fn mem(size: usize, wanted: &[(u64, u64)]) -> GuestMemory {
        GuestMemory::fill(Arc::new(Ram::zeroed(size)), wanted).unwrap()
    }

    #[test]
    fn regions_fill_the_dataspace_in_order_and_are_cut() {
        let m = mem(
            0x3000,
            &[
                (0x4000_0000, 0x1000),
                (0x8000_0000, 0x10_0000),
                (0x9000_0000, 0x1000),
            ],
        );
        assert_eq!(
            m.regions(),
            [
                RamRegion {
                    ram: 0,
                    gpa: 0x4000_0000,
                    size: 0x1000,
                    ds_offset: 0
                },
                RamRegion {
                    ram: 0,
                    gpa: 0x8000_0000,
                    size: 0x2000,
                    ds_offset: 0x1000
                },
            ]
        );
        assert_eq!(m.translate(0x8000_0010, 4), Ok((0, 0x1010)));
        assert_eq!(
            m.translate(0x4000_0ffe, 4),
            Err(MemError::NotRam {
                gpa: 0x4000_0ffe,
                len: 4
            })
        );
    }

    #[test]
    fn cache_sync_covers_the_ram_parts_only() {
        let mut m = mem(0x3000, &[(0x4000_0000, 0x1000), (0x8000_0000, 0x2000)]);
        m.add_ram(Arc::new(Ram::zeroed(0x1000)), &[(0x9000_0000, 0x1000)])
            .unwrap();
        let parts = |gpa, len| m.ram_parts(gpa, len).collect::<Vec<_>>();
        // An ELF kernel's span from its lowest to its highest segment
        // crosses the gap between two regions and a second dataspace.
        assert_eq!(
            parts(0x4000_0800, 0x5000_0000),
            [(0, 0x800, 0x800), (0, 0x1000, 0x2000), (1, 0, 0x800)]
        );
        assert_eq!(parts(0x8000_1ffc, 4), [(0, 0x2ffc, 4)]);
        assert_eq!(parts(0x7000_0000, 0x1000), []);
        assert_eq!(parts(u64::MAX - 1, u64::MAX), []);
        assert_eq!(m.sync_for_guest(0x4000_0000, u64::MAX, true), Ok(()));
        assert!(m.rams()[0].sync_for_guest(0x2fff, 2, false).is_err());
    }

    #[test]
    fn accessors_are_bounds_checked() {
        let m = mem(0x2000, &[(0x4000_0000, u64::MAX / 2)]);
        m.write_u32(0x4000_0100, 0xdead_beef).unwrap();
        assert_eq!(m.read_u32(0x4000_0100), Ok(0xdead_beef));
        assert_eq!(m.read_u16(0x4000_0102), Ok(0xdead));
        assert!(m.read_u64(0x4000_1ffc).is_err());
        assert!(m.read_u64(0x3fff_fffc).is_err());
        assert!(m.write(u64::MAX - 1, &[1, 2, 3]).is_err());
        m.zero(0x4000_0100, 2).unwrap();
        assert_eq!(m.read_u32(0x4000_0100), Ok(0xdead_0000));
        assert!(m.rams()[0].read(0x1fff, &mut [0; 2]).is_err());
    }

    #[test]
    fn bad_layouts() {
        let ram = Arc::new(Ram::zeroed(0x2000));
        assert_eq!(
            GuestMemory::fill(ram.clone(), &[(0x1000, 0x1000), (0x1800, 0x1000)]).unwrap_err(),
            LayoutError::Overlap(0x1000, 0x1800)
        );
        assert_eq!(
            GuestMemory::fill(ram.clone(), &[]).unwrap_err(),
            LayoutError::Empty
        );
        // A second dataspace must not overlap the first's regions.
        let mut m = GuestMemory::fill(ram.clone(), &[(0x10_0000, 0x2000)]).unwrap();
        assert_eq!(
            m.add_ram(ram.clone(), &[(0x10_1000, 0x1000)]).unwrap_err(),
            LayoutError::Overlap(0x10_0000, 0x10_1000)
        );
        m.add_ram(Arc::new(Ram::zeroed(0x1000)), &[(0x20_0000, 0x1000)])
            .unwrap();
        m.write_u16(0x20_0ffe, 7).unwrap();
        assert_eq!(m.rams()[1].len(), 0x1000);
        assert_eq!(m.translate(0x20_0ffe, 2), Ok((1, 0xffe)));
        assert_eq!(
            GuestMemory::fill(ram, &[(u64::MAX - 0x100, 0x1000)]).unwrap_err(),
            LayoutError::Wraps(u64::MAX - 0x100)
        );
    }
}

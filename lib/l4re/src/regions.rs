//! The region map: which address ranges of the task are attached to what.
//!
//! A [`Region`] is a page-aligned range with access rights and a
//! [`Backing`]: a dataspace at an offset, anonymous memory whose dataspace
//! is created when the region is first touched, or nothing (a reservation:
//! touching it is a fault). Regions never overlap; [`RegionMap::attach`]
//! refuses an overlap. Detaching and changing rights split regions at the
//! edges of the range; the pieces of one dataspace share it, counted in
//! [`DsRefs`], so the runtime releases a dataspace capability when its last
//! region goes.
//!
//! [`PageSet`] remembers which pages are mapped in the task, so the runtime
//! maps pages before it reads or writes them itself.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

/// The page size.
pub const PAGE: u64 = 4096;

/// `addr` rounded down to a page.
pub const fn page_down(addr: u64) -> u64 {
    addr & !(PAGE - 1)
}

/// `addr` rounded up to a page; `None` on overflow.
pub const fn page_up(addr: u64) -> Option<u64> {
    match addr.checked_add(PAGE - 1) {
        Some(a) => Some(a & !(PAGE - 1)),
        None => None,
    }
}

/// Access rights, with the bits of L4 memory rights and dataspace flags:
/// read 4, write 2, execute 1.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Prot(pub u8);

impl Prot {
    /// No access.
    pub const NONE: Prot = Prot(0);
    /// Read.
    pub const R: Prot = Prot(4);
    /// Read and write.
    pub const RW: Prot = Prot(6);
    /// Read and execute.
    pub const RX: Prot = Prot(5);
    /// Everything.
    pub const RWX: Prot = Prot(7);

    /// From Linux `PROT_*` bits (read 1, write 2, exec 4). Write implies
    /// read, as on AArch64.
    pub const fn from_linux(p: u64) -> Prot {
        let mut r = 0;
        if p & 1 != 0 {
            r |= 4;
        }
        if p & 2 != 0 {
            r |= 6;
        }
        if p & 4 != 0 {
            r |= 1;
        }
        Prot(r)
    }

    /// Readable.
    pub const fn read(self) -> bool {
        self.0 & 4 != 0
    }

    /// Writable.
    pub const fn write(self) -> bool {
        self.0 & 2 != 0
    }

    /// Executable.
    pub const fn exec(self) -> bool {
        self.0 & 1 != 0
    }
}

/// What a region's pages come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backing {
    /// Nothing: touching it is a fault (guard areas, the runtime's own
    /// ranges).
    Reserved,
    /// Zero-filled memory; the dataspace (of the region's size) is created
    /// on first use.
    Anon {
        /// The dataspace capability, once created.
        ds: Option<u64>,
        /// Offset of the region's start in it.
        offset: u64,
    },
    /// A dataspace (a file, the program).
    Ds {
        /// The dataspace capability.
        ds: u64,
        /// Offset of the region's start in it.
        offset: u64,
    },
}

impl Backing {
    /// The dataspace, if there is one yet.
    pub const fn ds(&self) -> Option<u64> {
        match *self {
            Backing::Reserved => None,
            Backing::Anon { ds, .. } => ds,
            Backing::Ds { ds, .. } => Some(ds),
        }
    }

    /// The same backing `delta` bytes further in.
    const fn advanced(self, delta: u64) -> Backing {
        match self {
            Backing::Reserved => Backing::Reserved,
            Backing::Anon { ds, offset } => Backing::Anon {
                ds,
                offset: offset + delta,
            },
            Backing::Ds { ds, offset } => Backing::Ds {
                ds,
                offset: offset + delta,
            },
        }
    }
}

/// What a region is for (reports and `brk`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A segment of the program.
    Image,
    /// The main thread's stack.
    Stack,
    /// The `brk` heap.
    Brk,
    /// An `mmap` mapping.
    Mmap,
    /// The runtime's own addresses (UTCBs, environment, runtime image).
    Runtime,
    /// A runtime window onto a file.
    Window,
}

/// An attached range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    /// First address (page-aligned).
    pub start: u64,
    /// End (page-aligned, exclusive).
    pub end: u64,
    /// Access rights.
    pub prot: Prot,
    /// Backing.
    pub backing: Backing,
    /// Purpose.
    pub kind: Kind,
}

impl Region {
    /// A region.
    pub const fn new(start: u64, end: u64, prot: Prot, backing: Backing, kind: Kind) -> Region {
        Region {
            start,
            end,
            prot,
            backing,
            kind,
        }
    }

    /// Its size in bytes.
    pub const fn len(&self) -> u64 {
        self.end - self.start
    }

    /// Whether it is empty.
    pub const fn is_empty(&self) -> bool {
        self.end == self.start
    }

    /// Whether `addr` is inside.
    pub const fn contains(&self, addr: u64) -> bool {
        addr >= self.start && addr < self.end
    }

    /// The dataspace offset of `addr` (inside the region).
    pub const fn offset_of(&self, addr: u64) -> u64 {
        let base = match self.backing {
            Backing::Reserved => 0,
            Backing::Anon { offset, .. } | Backing::Ds { offset, .. } => offset,
        };
        base + (addr - self.start)
    }
}

/// Why a region operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionError {
    /// Not page-aligned, empty, or wrapping.
    BadRange,
    /// Overlaps an attached region.
    Overlap,
    /// Part of the range is not attached.
    NotMapped,
}

/// How many regions use each dataspace capability.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DsRefs(BTreeMap<u64, u32>);

impl DsRefs {
    /// No references.
    pub const fn new() -> DsRefs {
        DsRefs(BTreeMap::new())
    }

    /// One more user of `ds`.
    pub fn inc(&mut self, ds: u64) {
        *self.0.entry(ds).or_insert(0) += 1;
    }

    /// One user less; `true` when it was the last (release the capability).
    pub fn dec(&mut self, ds: u64) -> bool {
        match self.0.get_mut(&ds) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            Some(_) => {
                self.0.remove(&ds);
                true
            }
            None => false,
        }
    }

    /// The users of `ds`.
    pub fn count(&self, ds: u64) -> u32 {
        self.0.get(&ds).copied().unwrap_or(0)
    }
}

/// The regions of one address space.
#[derive(Clone, Debug, Default)]
pub struct RegionMap {
    map: BTreeMap<u64, Region>,
}

impl RegionMap {
    /// An empty map.
    pub const fn new() -> RegionMap {
        RegionMap {
            map: BTreeMap::new(),
        }
    }

    /// Attaches `r`; a dataspace it names gets a reference in `refs`.
    pub fn attach(&mut self, r: Region, refs: &mut DsRefs) -> Result<(), RegionError> {
        if !r.start.is_multiple_of(PAGE) || !r.end.is_multiple_of(PAGE) || r.end <= r.start {
            return Err(RegionError::BadRange);
        }
        if self.overlaps(r.start, r.end) {
            return Err(RegionError::Overlap);
        }
        if let Some(ds) = r.backing.ds() {
            refs.inc(ds);
        }
        self.map.insert(r.start, r);
        Ok(())
    }

    /// The region that contains `addr`.
    pub fn lookup(&self, addr: u64) -> Option<&Region> {
        self.map
            .range(..=addr)
            .next_back()
            .map(|(_, r)| r)
            .filter(|r| r.contains(addr))
    }

    /// The region that contains `addr`, to change it.
    pub fn lookup_mut(&mut self, addr: u64) -> Option<&mut Region> {
        self.map
            .range_mut(..=addr)
            .next_back()
            .map(|(_, r)| r)
            .filter(|r| r.contains(addr))
    }

    /// Whether any region intersects `[start, end)`.
    pub fn overlaps(&self, start: u64, end: u64) -> bool {
        if end <= start {
            return false;
        }
        if self.lookup(start).is_some() {
            return true;
        }
        self.map.range(start..end).next().is_some()
    }

    /// Whether `[start, end)` is attached without holes.
    pub fn covers(&self, start: u64, end: u64) -> bool {
        let mut at = start;
        while at < end {
            match self.lookup(at) {
                Some(r) => at = r.end,
                None => return false,
            }
        }
        true
    }

    /// The regions intersecting `[start, end)`, ascending.
    pub fn intersecting(&self, start: u64, end: u64) -> Vec<Region> {
        let mut v = Vec::new();
        if let Some(r) = self.lookup(start) {
            v.push(*r);
        }
        for (_, r) in self.map.range(start..end) {
            if r.start != v.last().map_or(u64::MAX, |l: &Region| l.start) {
                v.push(*r);
            }
        }
        v
    }

    /// All regions, ascending.
    pub fn iter(&self) -> impl Iterator<Item = &Region> {
        self.map.values()
    }

    /// Number of regions.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Splits the region containing `addr` (page-aligned) so that a region
    /// starts there.
    fn split_at(&mut self, addr: u64, refs: &mut DsRefs) {
        let Some(r) = self.lookup(addr).copied() else {
            return;
        };
        if r.start == addr {
            return;
        }
        let delta = addr - r.start;
        let mut lo = r;
        lo.end = addr;
        let mut hi = r;
        hi.start = addr;
        hi.backing = r.backing.advanced(delta);
        if let Some(ds) = r.backing.ds() {
            refs.inc(ds);
        }
        self.map.insert(lo.start, lo);
        self.map.insert(hi.start, hi);
    }

    /// Removes everything in `[start, end)`, splitting regions at the
    /// edges. Returns the removed pieces; the dataspaces whose last
    /// reference went are in the second vector (release them).
    pub fn detach(
        &mut self,
        start: u64,
        end: u64,
        refs: &mut DsRefs,
    ) -> Result<(Vec<Region>, Vec<u64>), RegionError> {
        if !start.is_multiple_of(PAGE) || !end.is_multiple_of(PAGE) || end <= start {
            return Err(RegionError::BadRange);
        }
        self.split_at(start, refs);
        self.split_at(end, refs);
        let keys: Vec<u64> = self.map.range(start..end).map(|(k, _)| *k).collect();
        let mut removed = Vec::new();
        let mut dead = Vec::new();
        for k in keys {
            if let Some(r) = self.map.remove(&k) {
                if let Some(ds) = r.backing.ds()
                    && refs.dec(ds)
                {
                    dead.push(ds);
                }
                removed.push(r);
            }
        }
        Ok((removed, dead))
    }

    /// Sets the rights of `[start, end)`, which must be attached without
    /// holes (else nothing changes).
    pub fn protect(
        &mut self,
        start: u64,
        end: u64,
        prot: Prot,
        refs: &mut DsRefs,
    ) -> Result<(), RegionError> {
        if !start.is_multiple_of(PAGE) || !end.is_multiple_of(PAGE) || end <= start {
            return Err(RegionError::BadRange);
        }
        if !self.covers(start, end) {
            return Err(RegionError::NotMapped);
        }
        self.split_at(start, refs);
        self.split_at(end, refs);
        for (_, r) in self.map.range_mut(start..end) {
            r.prot = prot;
        }
        Ok(())
    }

    /// Sets the dataspace of the anonymous region starting at `start`.
    pub fn set_anon_ds(&mut self, start: u64, ds: u64, refs: &mut DsRefs) {
        if let Some(r) = self.map.get_mut(&start)
            && let Backing::Anon {
                ds: d @ None,
                offset,
            } = &mut r.backing
        {
            *d = Some(ds);
            *offset = 0;
            refs.inc(ds);
        }
    }

    /// The lowest free, `align`-aligned range of `len` bytes inside
    /// `[lo, hi)`.
    pub fn find_free(&self, len: u64, lo: u64, hi: u64, align: u64) -> Option<u64> {
        let align = align.max(PAGE);
        if len == 0 || !align.is_power_of_two() {
            return None;
        }
        let up = |a: u64| a.checked_add(align - 1).map(|a| a & !(align - 1));
        let mut at = up(lo)?;
        loop {
            let end = at.checked_add(len)?;
            if end > hi {
                return None;
            }
            // The first region intersecting [at, end); aligning past it may
            // land inside a region that starts before the new `at`, which
            // the next round finds through `lookup`.
            let blocker = self
                .lookup(at)
                .or_else(|| self.map.range(at..end).next().map(|(_, r)| r));
            match blocker {
                None => return Some(at),
                Some(r) => at = up(r.end)?,
            }
        }
    }
}

/// A set of page ranges (the pages mapped in the task).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PageSet {
    /// start -> end, disjoint and not touching.
    ranges: BTreeMap<u64, u64>,
}

impl PageSet {
    /// The empty set.
    pub const fn new() -> PageSet {
        PageSet {
            ranges: BTreeMap::new(),
        }
    }

    /// Adds `[start, end)` (rounded out to pages).
    pub fn insert(&mut self, start: u64, end: u64) {
        let mut s = page_down(start);
        let mut e = page_up(end).unwrap_or(!(PAGE - 1));
        if e <= s {
            return;
        }
        // Merge with a range that starts before and reaches s.
        if let Some((&ps, &pe)) = self.ranges.range(..=s).next_back()
            && pe >= s
        {
            s = ps;
            e = e.max(pe);
            self.ranges.remove(&ps);
        }
        // Merge with ranges starting inside [s, e].
        let inside: Vec<(u64, u64)> = self.ranges.range(s..=e).map(|(&a, &b)| (a, b)).collect();
        for (a, b) in inside {
            e = e.max(b);
            self.ranges.remove(&a);
        }
        self.ranges.insert(s, e);
    }

    /// Removes `[start, end)` (rounded out to pages).
    pub fn remove(&mut self, start: u64, end: u64) {
        let s = page_down(start);
        let e = page_up(end).unwrap_or(!(PAGE - 1));
        if e <= s {
            return;
        }
        if let Some((&ps, &pe)) = self.ranges.range(..s).next_back()
            && pe > s
        {
            self.ranges.insert(ps, s);
            if pe > e {
                self.ranges.insert(e, pe);
            }
        }
        let inside: Vec<(u64, u64)> = self.ranges.range(s..e).map(|(&a, &b)| (a, b)).collect();
        for (a, b) in inside {
            self.ranges.remove(&a);
            if b > e {
                self.ranges.insert(e, b);
            }
        }
    }

    /// The first unmapped range inside `[start, end)` (pages), if any.
    pub fn first_gap(&self, start: u64, end: u64) -> Option<(u64, u64)> {
        let mut at = page_down(start);
        let end = page_up(end).unwrap_or(!(PAGE - 1));
        while at < end {
            match self.ranges.range(..=at).next_back() {
                Some((_, &e)) if e > at => at = e,
                _ => {
                    let next = self
                        .ranges
                        .range(at..)
                        .next()
                        .map_or(end, |(&s, _)| s)
                        .min(end);
                    return Some((at, next));
                }
            }
        }
        None
    }

    /// The mapped parts of `[start, end)` (pages), ascending.
    pub fn within(&self, start: u64, end: u64) -> Vec<(u64, u64)> {
        let s = page_down(start);
        let e = page_up(end).unwrap_or(!(PAGE - 1));
        let mut out = Vec::new();
        if let Some((_, &pe)) = self.ranges.range(..s).next_back()
            && pe > s
        {
            out.push((s, pe.min(e)));
        }
        for (&a, &b) in self.ranges.range(s..e) {
            out.push((a, b.min(e)));
        }
        out
    }

    /// Whether all of `[start, end)` is mapped.
    pub fn contains(&self, start: u64, end: u64) -> bool {
        self.first_gap(start, end).is_none()
    }

    /// Number of disjoint ranges.
    pub fn ranges(&self) -> usize {
        self.ranges.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anon(start: u64, end: u64) -> Region {
        Region::new(
            start,
            end,
            Prot::RW,
            Backing::Anon {
                ds: None,
                offset: 0,
            },
            Kind::Mmap,
        )
    }

    fn ds(start: u64, end: u64, cap: u64) -> Region {
        Region::new(
            start,
            end,
            Prot::R,
            Backing::Ds { ds: cap, offset: 0 },
            Kind::Image,
        )
    }

    #[test]
    fn attach_lookup_and_overlap_refusal() {
        let mut m = RegionMap::new();
        let mut refs = DsRefs::new();
        m.attach(anon(0x1000, 0x3000), &mut refs).unwrap();
        m.attach(ds(0x5000, 0x8000, 7), &mut refs).unwrap();
        assert_eq!(refs.count(7), 1);
        assert_eq!(m.lookup(0x1000).unwrap().start, 0x1000);
        assert_eq!(m.lookup(0x2fff).unwrap().start, 0x1000);
        assert!(m.lookup(0x3000).is_none());
        assert!(m.lookup(0xfff).is_none());
        assert_eq!(m.lookup(0x7fff).unwrap().offset_of(0x7fff), 0x2fff);
        for (s, e) in [
            (0, 0x2000),
            (0x2000, 0x6000),
            (0x4000, 0x9000),
            (0x7000, 0x7001),
        ] {
            let r = m.attach(anon(s, e), &mut refs);
            assert!(r.is_err(), "{s:#x}..{e:#x}");
        }
        assert_eq!(
            m.attach(anon(0x3000, 0x3000), &mut refs),
            Err(RegionError::BadRange)
        );
        assert_eq!(
            m.attach(anon(0x3001, 0x4000), &mut refs),
            Err(RegionError::BadRange)
        );
        m.attach(anon(0x3000, 0x5000), &mut refs).unwrap();
        assert!(m.covers(0x1000, 0x8000));
        assert!(!m.covers(0x1000, 0x9000));
        assert_eq!(m.intersecting(0x2000, 0x6000).len(), 3);
        assert_eq!(m.len(), 3);
    }

    #[test]
    fn detach_splits_and_counts_dataspaces() {
        let mut m = RegionMap::new();
        let mut refs = DsRefs::new();
        m.attach(ds(0x10000, 0x20000, 9), &mut refs).unwrap();
        // Punch a hole in the middle: two pieces share the dataspace.
        let (removed, dead) = m.detach(0x14000, 0x16000, &mut refs).unwrap();
        assert_eq!(removed.len(), 1);
        assert_eq!(removed[0].offset_of(0x14000), 0x4000);
        assert!(dead.is_empty());
        assert_eq!(refs.count(9), 2);
        let hi = m.lookup(0x16000).unwrap();
        assert_eq!((hi.start, hi.offset_of(0x16000)), (0x16000, 0x6000));
        assert_eq!(m.lookup(0x13000).unwrap().end, 0x14000);
        // Detaching a range with holes is fine; the last piece frees it.
        let (removed, dead) = m.detach(0x0, 0x100000, &mut refs).unwrap();
        assert_eq!(removed.len(), 2);
        assert_eq!(dead, [9]);
        assert!(m.is_empty());
        assert_eq!(
            m.detach(0x1000, 0x1000, &mut refs),
            Err(RegionError::BadRange)
        );
    }

    #[test]
    fn protect_splits_and_requires_cover() {
        let mut m = RegionMap::new();
        let mut refs = DsRefs::new();
        m.attach(anon(0x10000, 0x20000), &mut refs).unwrap();
        m.protect(0x10000, 0x11000, Prot::NONE, &mut refs).unwrap();
        assert_eq!(m.lookup(0x10000).unwrap().prot, Prot::NONE);
        assert_eq!(m.lookup(0x11000).unwrap().prot, Prot::RW);
        assert_eq!(m.len(), 2);
        assert_eq!(
            m.protect(0x1f000, 0x21000, Prot::R, &mut refs),
            Err(RegionError::NotMapped)
        );
        assert_eq!(m.lookup(0x1f000).unwrap().prot, Prot::RW, "unchanged");
        // The lazily created dataspace goes to one piece only.
        m.set_anon_ds(0x11000, 33, &mut refs);
        assert_eq!(m.lookup(0x12000).unwrap().backing.ds(), Some(33));
        assert_eq!(m.lookup(0x10000).unwrap().backing.ds(), None);
        assert_eq!(refs.count(33), 1);
    }

    #[test]
    fn free_ranges() {
        let mut m = RegionMap::new();
        let mut refs = DsRefs::new();
        assert_eq!(m.find_free(0x2000, 0x10000, 0x20000, PAGE), Some(0x10000));
        m.attach(anon(0x10000, 0x12000), &mut refs).unwrap();
        m.attach(anon(0x13000, 0x14000), &mut refs).unwrap();
        assert_eq!(m.find_free(0x1000, 0x10000, 0x20000, PAGE), Some(0x12000));
        assert_eq!(m.find_free(0x2000, 0x10000, 0x20000, PAGE), Some(0x14000));
        assert_eq!(m.find_free(0x2000, 0x10000, 0x20000, 0x10000), None);
        assert_eq!(m.find_free(0x1000, 0x11000, 0x20000, 0x8000), Some(0x18000));
        assert_eq!(m.find_free(0x10000, 0x10000, 0x20000, PAGE), None);
        assert_eq!(m.find_free(0, 0x10000, 0x20000, PAGE), None);
        assert_eq!(m.find_free(u64::MAX, 0, u64::MAX, PAGE), None);
    }

    #[test]
    fn free_range_after_alignment_lands_inside_a_region() {
        // Aligning up past [0x10000, 0x11000) lands at 0x12000, inside
        // [0x11000, 0x13000), which starts before it: never hand that out.
        let mut m = RegionMap::new();
        let mut refs = DsRefs::new();
        m.attach(anon(0x10000, 0x11000), &mut refs).unwrap();
        m.attach(anon(0x11000, 0x13000), &mut refs).unwrap();
        let at = m.find_free(0x2000, 0x10000, 0x20000, 0x2000).unwrap();
        assert_eq!(at, 0x14000);
        assert!(!m.overlaps(at, at + 0x2000));
        m.attach(anon(at, at + 0x2000), &mut refs).unwrap();
    }

    #[test]
    fn page_sets() {
        let mut s = PageSet::new();
        assert_eq!(s.first_gap(0x1000, 0x3000), Some((0x1000, 0x3000)));
        s.insert(0x1000, 0x2000);
        s.insert(0x3000, 0x4000);
        assert_eq!(s.ranges(), 2);
        assert_eq!(s.first_gap(0x1000, 0x4000), Some((0x2000, 0x3000)));
        s.insert(0x2000, 0x3000);
        assert_eq!(s.ranges(), 1, "merged");
        assert!(s.contains(0x1000, 0x4000));
        assert!(s.contains(0x1800, 0x1801));
        assert!(!s.contains(0x1000, 0x4001));
        s.remove(0x2000, 0x3000);
        assert_eq!(s.first_gap(0x1000, 0x4000), Some((0x2000, 0x3000)));
        assert_eq!(s.ranges(), 2);
        s.remove(0x0, 0x10000);
        assert_eq!(s.ranges(), 0);
        s.insert(0x5000, 0x9000);
        s.insert(0x1000, 0x6000);
        assert!(s.contains(0x1000, 0x9000));
        s.remove(0x3000, 0x4000);
        assert!(s.contains(0x1000, 0x3000) && s.contains(0x4000, 0x9000));
        assert!(!s.contains(0x3000, 0x3001));
        assert_eq!(s.within(0x0, 0x10000), [(0x1000, 0x3000), (0x4000, 0x9000)]);
        assert_eq!(
            s.within(0x2000, 0x5000),
            [(0x2000, 0x3000), (0x4000, 0x5000)]
        );
        assert_eq!(s.within(0x3000, 0x4000), []);
        assert_eq!(page_up(u64::MAX), None);
    }
}

//! Stage-2 translation tables: guest-physical (IPA) to physical addresses
//! for a virtual machine, 4 KiB granule.
//!
//! The IPA space has [`IPA_BITS`] (40) bits and starts at level 1 with two
//! concatenated level-1 tables (an 8 KiB root, 8 KiB aligned), so a walk
//! takes three levels. Leaves are 4 KiB pages and 2 MiB blocks; [`map`]
//! uses a block wherever the guest address, the physical address and the
//! size allow, unless told to use pages only ([`Leaves`]). Descriptors
//! carry the stage-2 attributes: S2AP (read, write), MemAttr (normal
//! write-back or device), XN, shareability and the access flag; [`vtcr`]
//! is the matching VTCR_EL2 value.

use crate::{ADDR_MASK, AF, ENTRIES, MapError, PAGE_SIZE, SH_INNER, TABLE_OR_PAGE, Tables, VALID};

/// Bits of a guest-physical address.
pub const IPA_BITS: u32 = 40;
/// The first IPA past the space.
pub const IPA_LIMIT: u64 = 1 << IPA_BITS;
/// Bytes of the root: two concatenated level-1 tables, aligned to their size.
pub const ROOT_SIZE: u64 = 2 * PAGE_SIZE;
/// Size of a block at level 2.
pub const BLOCK_SIZE: u64 = 1 << 21;

const LEVEL_SHIFT: [u32; 3] = [30, 21, 12];

// The descriptor bits both stages share (valid, table/page, shareability,
// access flag, output address) are the crate's; these are stage 2's own.
const MEMATTR_SHIFT: u32 = 2;
const S2AP_R: u64 = 1 << 6;
const S2AP_W: u64 = 1 << 7;
/// XN[1]: not executable at any level (stage 1's UXN bit).
const XN: u64 = 1 << 54;

/// Stage-2 MemAttr values (with HCR_EL2.FWB clear they combine with the
/// guest's stage-1 attributes, the stricter winning).
const MEMATTR_DEVICE_NGNRE: u64 = 0b0001;
const MEMATTR_NORMAL_NC: u64 = 0b0101;
const MEMATTR_NORMAL_WB: u64 = 0b1111;

/// The leaves [`map`] may make.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leaves {
    /// 2 MiB blocks where the addresses and the size allow, pages
    /// elsewhere: fewest entries and TLB entries on hardware.
    Blocks,
    /// 4 KiB pages only: 512 entries for 2 MiB. For an emulated CPU whose
    /// TLB treats any entry that a block backs as a large page and then
    /// answers each of the guest's invalidations by address with a flush
    /// of the guest's whole translation regime (QEMU's).
    Pages,
}

/// Memory type of a stage-2 mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum S2Mem {
    /// Device-nGnRE: a device passed through to the guest.
    Device,
    /// Normal, not cacheable.
    NormalUncached,
    /// Normal, inner and outer write-back: RAM.
    Normal,
}

/// Access rights and type of a stage-2 mapping. Read access is implied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct S2Attr {
    /// Memory type.
    pub mem: S2Mem,
    /// The guest may write.
    pub write: bool,
    /// The guest may execute.
    pub exec: bool,
}

impl S2Attr {
    /// Guest RAM with the given rights.
    pub const fn ram(write: bool, exec: bool) -> S2Attr {
        S2Attr {
            mem: S2Mem::Normal,
            write,
            exec,
        }
    }

    /// A device region, never executable.
    pub const fn device(write: bool) -> S2Attr {
        S2Attr {
            mem: S2Mem::Device,
            write,
            exec: false,
        }
    }

    fn bits(self) -> u64 {
        let (attr, sh) = match self.mem {
            S2Mem::Device => (MEMATTR_DEVICE_NGNRE, 0),
            S2Mem::NormalUncached => (MEMATTR_NORMAL_NC, SH_INNER),
            S2Mem::Normal => (MEMATTR_NORMAL_WB, SH_INNER),
        };
        let mut d = AF | sh | S2AP_R | (attr << MEMATTR_SHIFT);
        if self.write {
            d |= S2AP_W;
        }
        if !self.exec {
            d |= XN;
        }
        d
    }

    fn from_bits(d: u64) -> S2Attr {
        let mem = match (d >> MEMATTR_SHIFT) & 0xf {
            MEMATTR_NORMAL_WB => S2Mem::Normal,
            MEMATTR_NORMAL_NC => S2Mem::NormalUncached,
            _ => S2Mem::Device,
        };
        S2Attr {
            mem,
            write: d & S2AP_W != 0,
            exec: d & XN == 0,
        }
    }
}

/// VTCR_EL2 for this layout: T0SZ = 64 - [`IPA_BITS`], start at level 1
/// (SL0 = 1), 4 KiB granule, inner-shareable write-back table walks.
/// `pa_range` is ID_AA64MMFR0_EL1.PARange (capped at 48 bits, the most a
/// 4 KiB granule without FEAT_LPA2 addresses); `vmid16` selects 16-bit
/// VMIDs (ID_AA64MMFR1_EL1.VMIDBits = 2).
pub const fn vtcr(pa_range: u64, vmid16: bool) -> u64 {
    let ps = if pa_range > 0b101 { 0b101 } else { pa_range };
    let t0sz = 64 - IPA_BITS as u64;
    let sl0 = 1;
    let irgn0 = 0b01;
    let orgn0 = 0b01;
    let sh0 = 0b11;
    let tg0 = 0b00;
    let res1 = 1 << 31;
    res1 | ((vmid16 as u64) << 19)
        | (ps << 16)
        | (tg0 << 14)
        | (sh0 << 12)
        | (orgn0 << 10)
        | (irgn0 << 8)
        | (sl0 << 6)
        | t0sz
}

/// VTTBR_EL2 for a root and a VMID (bits 48-63; with 8-bit VMIDs only
/// bits 48-55 count).
pub const fn vttbr(root: u64, vmid: u16) -> u64 {
    (root & ADDR_MASK) | ((vmid as u64) << 48)
}

/// Where the level-1 entry for `ipa` sits: the root page and the index in it.
fn root_slot(root: u64, ipa: u64) -> (u64, usize) {
    let i = (ipa >> LEVEL_SHIFT[0]) as usize & (2 * ENTRIES - 1);
    (root + (i / ENTRIES) as u64 * PAGE_SIZE, i % ENTRIES)
}

fn index(ipa: u64, level: usize) -> usize {
    ((ipa >> LEVEL_SHIFT[level]) & 0x1ff) as usize
}

/// The table page and index of `ipa`'s entry at `level`, below `table`.
fn slot(table: u64, ipa: u64, level: usize) -> (u64, usize) {
    if level == 0 {
        root_slot(table, ipa)
    } else {
        (table, index(ipa, level))
    }
}

fn check_range(ipa: u64, pa: u64, size: u64) -> Result<(), MapError> {
    if (ipa | pa | size) & (PAGE_SIZE - 1) != 0 {
        return Err(MapError::Misaligned);
    }
    if ipa.checked_add(size).is_none_or(|e| e > IPA_LIMIT)
        || pa.checked_add(size).is_none_or(|e| e > 1 << 48)
    {
        return Err(MapError::OutOfRange);
    }
    Ok(())
}

/// Maps guest `[ipa, ipa + size)` to `[pa, pa + size)` in the tree at
/// `root` (8 KiB, zeroed by the caller before its first use). With
/// [`Leaves::Blocks`] uses 2 MiB blocks where both addresses are 2 MiB
/// aligned and at least 2 MiB are left. Refused, without changing anything
/// mapped before, if something is mapped in the range already (tables made
/// on the way stay).
pub fn map(
    tables: &mut impl Tables,
    root: u64,
    ipa: u64,
    pa: u64,
    size: u64,
    attr: S2Attr,
    leaves: Leaves,
) -> Result<(), MapError> {
    check_range(ipa, pa, size)?;
    if let Some(va) = first_mapped(tables, root, ipa, size) {
        return Err(MapError::Exists { va });
    }
    let bits = attr.bits();
    let mut off = 0;
    while off < size {
        let (v, p) = (ipa + off, pa + off);
        let block =
            leaves == Leaves::Blocks && (v | p) & (BLOCK_SIZE - 1) == 0 && size - off >= BLOCK_SIZE;
        let leaf_level = if block { 1 } else { 2 };
        let mut table = root;
        for level in 0..leaf_level {
            let (page, i) = slot(table, v, level);
            let entry = tables.table(page)[i];
            table = if entry & VALID == 0 {
                let new = tables.alloc().ok_or(MapError::NoMemory)?;
                tables.table(page)[i] = new | TABLE_OR_PAGE | VALID;
                new
            } else {
                entry & ADDR_MASK
            };
        }
        let (page, i) = slot(table, v, leaf_level);
        let t = tables.table(page);
        if block {
            t[i] = p | bits | VALID;
            off += BLOCK_SIZE;
            continue;
        }
        // Pages to the end of this table or of the range (no block can
        // start inside a table's span).
        for e in &mut t[i..] {
            *e = (pa + off) | bits | TABLE_OR_PAGE | VALID;
            off += PAGE_SIZE;
            if off >= size {
                break;
            }
        }
    }
    Ok(())
}

/// The leaf covering `ipa`: its level, table page and index.
fn leaf(tables: &mut impl Tables, root: u64, ipa: u64) -> Option<(usize, u64, usize)> {
    let mut table = root;
    for level in 0..3 {
        let (page, i) = slot(table, ipa, level);
        let entry = tables.table(page)[i];
        if entry & VALID == 0 {
            return None;
        }
        if level == 2 || entry & TABLE_OR_PAGE == 0 {
            // Level-1 blocks are never made; a level-1 entry is a table.
            return (level > 0).then_some((level, page, i));
        }
        table = entry & ADDR_MASK;
    }
    None
}

/// The first mapped address in `[ipa, ipa + size)`, if any.
fn first_mapped(tables: &mut impl Tables, root: u64, ipa: u64, size: u64) -> Option<u64> {
    next_leaf(tables, root, ipa, ipa + size).map(|l| l.start.max(ipa))
}

/// A leaf as [`next_leaf`] finds it.
struct Leaf {
    /// Its first guest address.
    start: u64,
    /// Its level (1: a 2 MiB block, 2: a page), table page and index.
    level: usize,
    page: u64,
    index: usize,
}

/// The first leaf that covers an address in `[from, end)`. Skips what an
/// invalid entry covers at once, and scans a page table's entries without
/// walking down from the root for each.
fn next_leaf(tables: &mut impl Tables, root: u64, mut from: u64, end: u64) -> Option<Leaf> {
    'walk: while from < end {
        let mut table = root;
        for (level, shift) in LEVEL_SHIFT.iter().enumerate() {
            let span = 1u64 << shift;
            let (page, i) = slot(table, from, level);
            let t = tables.table(page);
            if level == 2 {
                let base = from & !(BLOCK_SIZE - 1);
                match (i..ENTRIES).find(|&j| t[j] & VALID != 0) {
                    Some(j) => {
                        let start = base + ((j as u64) << shift);
                        return (start < end).then_some(Leaf {
                            start,
                            level,
                            page,
                            index: j,
                        });
                    }
                    None => {
                        from = base + BLOCK_SIZE;
                        continue 'walk;
                    }
                }
            }
            let entry = t[i];
            // A valid level-0 entry that is no table would be a 1 GiB
            // block, which `map` never makes: skipped like an invalid one.
            if entry & VALID == 0 || (level == 0 && entry & TABLE_OR_PAGE == 0) {
                from = (from & !(span - 1)) + span;
                continue 'walk;
            }
            if entry & TABLE_OR_PAGE == 0 {
                return Some(Leaf {
                    start: from & !(span - 1),
                    level,
                    page,
                    index: i,
                });
            }
            table = entry & ADDR_MASK;
        }
    }
    None
}

/// Looks up a guest address: the physical address and attributes.
pub fn translate(tables: &mut impl Tables, root: u64, ipa: u64) -> Option<(u64, S2Attr)> {
    if ipa >= IPA_LIMIT {
        return None;
    }
    let (level, page, i) = leaf(tables, root, ipa)?;
    let entry = tables.table(page)[i];
    let size = 1u64 << LEVEL_SHIFT[level];
    let base = entry & ADDR_MASK & !(size - 1);
    Some((base | (ipa & (size - 1)), S2Attr::from_bits(entry)))
}

/// A leaf [`unmap`] removed: guest address and size (4 KiB or 2 MiB).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Removed {
    /// First guest address of the leaf.
    pub ipa: u64,
    /// Its size.
    pub size: u64,
}

/// Removes every leaf overlapping `[ipa, ipa + size)`, a block as a whole
/// even if the range covers only part of it, and reports each to `f`
/// (for TLB invalidation). Tables stay, to be freed with the tree.
pub fn unmap(
    tables: &mut impl Tables,
    root: u64,
    ipa: u64,
    size: u64,
    mut f: impl FnMut(Removed),
) -> Result<(), MapError> {
    check_range(ipa, 0, size)?;
    let end = ipa + size;
    let mut a = ipa;
    while let Some(l) = next_leaf(tables, root, a, end) {
        let len = 1u64 << LEVEL_SHIFT[l.level];
        tables.table(l.page)[l.index] = 0;
        f(Removed {
            ipa: l.start,
            size: len,
        });
        a = l.start + len;
    }
    Ok(())
}

/// Calls `f` with every table page below the root, children before their
/// parent, so `f` may free them; the two root pages are the caller's.
pub fn for_each_table(tables: &mut impl Tables, root: u64, mut f: impl FnMut(u64)) {
    for r in 0..2 * ENTRIES {
        let page = root + (r / ENTRIES) as u64 * PAGE_SIZE;
        let l1 = tables.table(page)[r % ENTRIES];
        if l1 & VALID == 0 || l1 & TABLE_OR_PAGE == 0 {
            continue;
        }
        let l2 = l1 & ADDR_MASK;
        for i in 0..ENTRIES {
            let e = tables.table(l2)[i];
            if e & VALID != 0 && e & TABLE_OR_PAGE != 0 {
                f(e & ADDR_MASK);
            }
        }
        f(l2);
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::host::Host;
    use std::vec::Vec;

    /// Host tables with `limit` table pages besides the two-page root,
    /// and the root.
    fn host(limit: usize) -> (Host, u64) {
        let mut h = Host::new(limit + 2);
        let root = h.alloc().expect("root");
        h.alloc().expect("root, second page");
        (h, root)
    }

    const RAM: S2Attr = S2Attr::ram(true, true);

    /// [`super::map`] with blocks allowed, as most tests want.
    fn map(
        t: &mut Host,
        root: u64,
        ipa: u64,
        pa: u64,
        size: u64,
        attr: S2Attr,
    ) -> Result<(), MapError> {
        super::map(t, root, ipa, pa, size, attr, Leaves::Blocks)
    }

    #[test]
    fn pages_only_when_told() {
        let (mut t, root) = host(16);
        super::map(
            &mut t,
            root,
            0x4000_0000,
            0x8000_0000,
            BLOCK_SIZE,
            RAM,
            Leaves::Pages,
        )
        .unwrap();
        // One L2 table and one full L3 table instead of a block.
        assert_eq!(t.pages.len(), 2 + 2);
        assert_eq!(
            translate(&mut t, root, 0x401f_f123),
            Some((0x801f_f123, RAM))
        );
        let mut gone = Vec::new();
        unmap(&mut t, root, 0x4000_0000, BLOCK_SIZE, |r| gone.push(r)).unwrap();
        assert_eq!(gone.len(), 512);
        assert!(gone.iter().all(|r| r.size == 0x1000));
    }

    #[test]
    fn blocks_where_aligned_pages_elsewhere() {
        let (mut t, root) = host(16);
        // 4 KiB before a 2 MiB boundary, then two blocks, then 4 KiB.
        let ipa = 0x4000_0000 - 0x1000;
        let pa = 0x8000_0000 - 0x1000;
        map(&mut t, root, ipa, pa, 0x1000 + 0x40_0000 + 0x1000, RAM).unwrap();
        // One L2 table per 1 GiB touched (two) and one L3 table for each
        // partial 2 MiB (two); the blocks need no L3 table.
        assert_eq!(t.pages.len(), 2 + 2 + 2);
        assert_eq!(
            translate(&mut t, root, 0x4012_3456),
            Some((0x8012_3456, RAM))
        );
        assert_eq!(translate(&mut t, root, ipa), Some((pa, RAM)));
        assert_eq!(
            translate(&mut t, root, 0x4040_0fff),
            Some((0x8040_0fff, RAM))
        );
        assert_eq!(translate(&mut t, root, 0x4040_1000), None);
    }

    #[test]
    fn misaligned_pa_means_pages() {
        let (mut t, root) = host(16);
        map(&mut t, root, 0x20_0000, 0x9000_1000, 0x20_0000, RAM).unwrap();
        // One L2 table and one full L3 table: no block, PA not aligned.
        assert_eq!(t.pages.len(), 4);
        assert_eq!(translate(&mut t, root, 0x3f_f000), Some((0x9020_0000, RAM)));
    }

    #[test]
    fn upper_half_of_the_root() {
        let (mut t, root) = host(16);
        let ipa = IPA_LIMIT - BLOCK_SIZE;
        map(
            &mut t,
            root,
            ipa,
            0x4000_0000,
            BLOCK_SIZE,
            S2Attr::device(true),
        )
        .unwrap();
        assert_eq!(t.pages[1][511] & VALID, VALID, "second root page");
        assert_eq!(t.pages[0].iter().filter(|e| **e != 0).count(), 0);
        assert_eq!(
            translate(&mut t, root, ipa + 8),
            Some((0x4000_0008, S2Attr::device(true)))
        );
    }

    #[test]
    fn attributes_in_descriptors() {
        let ro = S2Attr::ram(false, false);
        let d = ro.bits();
        assert_eq!(d & S2AP_R, S2AP_R);
        assert_eq!(d & S2AP_W, 0);
        assert_eq!(d & XN, XN);
        assert_eq!((d >> 2) & 0xf, 0b1111);
        assert_eq!(d & AF, AF);
        let dev = S2Attr::device(true).bits();
        assert_eq!((dev >> 2) & 0xf, 0b0001);
        assert_eq!(dev & SH_INNER, 0);
        for a in [
            RAM,
            ro,
            S2Attr::device(false),
            S2Attr {
                mem: S2Mem::NormalUncached,
                write: true,
                exec: false,
            },
        ] {
            assert_eq!(S2Attr::from_bits(a.bits()), a);
        }
    }

    #[test]
    fn refusals_change_nothing() {
        let (mut t, root) = host(16);
        assert_eq!(
            map(&mut t, root, 0x800, 0, 0x1000, RAM),
            Err(MapError::Misaligned)
        );
        assert_eq!(
            map(&mut t, root, IPA_LIMIT - 0x1000, 0, 0x2000, RAM),
            Err(MapError::OutOfRange)
        );
        map(&mut t, root, 0x10_0000, 0x10_0000, 0x1000, RAM).unwrap();
        // Overlaps the page in its middle: nothing of it is mapped.
        assert_eq!(
            map(&mut t, root, 0xf_0000, 0x50_0000, 0x2_0000, RAM),
            Err(MapError::Exists { va: 0x10_0000 })
        );
        assert_eq!(translate(&mut t, root, 0xf_0000), None);
        let (mut t, root) = host(1);
        assert_eq!(
            map(&mut t, root, 0, 0, 0x1000, RAM),
            Err(MapError::NoMemory)
        );
    }

    #[test]
    fn unmap_reports_whole_leaves() {
        let (mut t, root) = host(16);
        map(&mut t, root, 0x4000_0000, 0x4000_0000, 0x40_0000, RAM).unwrap();
        map(&mut t, root, 0x1000, 0x7000_0000, 0x2000, RAM).unwrap();
        let mut gone = Vec::new();
        // Part of the second block and nothing else mapped around it.
        unmap(&mut t, root, 0x4030_0000, 0x1000_0000, |r| gone.push(r)).unwrap();
        assert_eq!(
            gone,
            [Removed {
                ipa: 0x4020_0000,
                size: BLOCK_SIZE
            }]
        );
        assert!(translate(&mut t, root, 0x4000_0000).is_some());
        assert_eq!(translate(&mut t, root, 0x4020_0000), None);
        gone.clear();
        unmap(&mut t, root, 0, 0x4000_0000, |r| gone.push(r)).unwrap();
        assert_eq!(
            gone,
            [
                Removed {
                    ipa: 0x1000,
                    size: 0x1000
                },
                Removed {
                    ipa: 0x2000,
                    size: 0x1000
                }
            ]
        );
        // Mapping again where it was works.
        map(&mut t, root, 0x4020_0000, 0x0, BLOCK_SIZE, RAM).unwrap();
    }

    #[test]
    fn finds_leaves_past_empty_tables() {
        let (mut t, root) = host(16);
        // A page whose table stays after the unmap, empty.
        map(&mut t, root, 0x4000_3000, 0x1000, 0x1000, RAM).unwrap();
        unmap(&mut t, root, 0x4000_3000, 0x1000, |_| {}).unwrap();
        // A page at the end of the next 2 MiB, a block after that.
        map(&mut t, root, 0x403f_f000, 0x2000, 0x1000, RAM).unwrap();
        map(&mut t, root, 0x4060_0000, 0x20_0000, BLOCK_SIZE, RAM).unwrap();
        let span = 0x4000_0000;
        assert_eq!(
            first_mapped(&mut t, root, 0x4000_0000, span),
            Some(0x403f_f000)
        );
        assert_eq!(
            first_mapped(&mut t, root, 0x4040_0000, span),
            Some(0x4060_0000)
        );
        // Inside the block: the address asked about.
        assert_eq!(
            first_mapped(&mut t, root, 0x4061_0000, 0x1000),
            Some(0x4061_0000)
        );
        assert_eq!(first_mapped(&mut t, root, 0x4000_0000, 0x3f_f000), None);
        assert_eq!(first_mapped(&mut t, root, 0x4080_0000, span), None);
        let mut gone = Vec::new();
        unmap(&mut t, root, 0, IPA_LIMIT, |r| gone.push(r)).unwrap();
        let page = |ipa, size| Removed { ipa, size };
        assert_eq!(
            gone,
            [page(0x403f_f000, 0x1000), page(0x4060_0000, BLOCK_SIZE)]
        );
    }

    #[test]
    fn every_table_once_children_first() {
        let (mut t, root) = host(16);
        map(&mut t, root, 0x1000, 0x1000, 0x1000, RAM).unwrap();
        map(&mut t, root, 0x80_0000_0000, 0, BLOCK_SIZE, RAM).unwrap();
        map(&mut t, root, 0x4000_0000, 0, BLOCK_SIZE, RAM).unwrap();
        let mut seen = Vec::new();
        for_each_table(&mut t, root, |pa| seen.push(pa));
        // Root pages excluded: L2 (0), L3 (0), L2 (1 GiB), L2 (512 GiB).
        assert_eq!(seen.len(), t.pages.len() - 2);
        let l3 = t.pages[2][0] & ADDR_MASK;
        let pos = |pa| seen.iter().position(|s| *s == pa).unwrap();
        assert!(pos(l3) < pos(t.pages[0][0] & ADDR_MASK));
    }

    #[test]
    fn vtcr_fields() {
        let v = vtcr(0b110, true);
        assert_eq!(v & 0x3f, 24, "T0SZ");
        assert_eq!((v >> 6) & 3, 1, "SL0: level 1");
        assert_eq!((v >> 14) & 3, 0, "TG0: 4 KiB");
        assert_eq!((v >> 16) & 7, 0b101, "PS capped at 48 bits");
        assert_eq!((v >> 19) & 1, 1, "VS");
        assert_eq!((vtcr(0b010, false) >> 16) & 7, 0b010);
        assert_eq!(vttbr(0x4321_0000, 7), 0x0007_0000_4321_0000);
    }
}

//! AArch64 translation tables with a 4 KiB granule and 48-bit addresses,
//! as the EL2&0 regime with VHE uses them (two VA ranges, AP[1] for EL0,
//! PXN/UXN).
//!
//! The tables live in physical memory; how a table's physical address is
//! reached (identity with the MMU off, through the kernel's linear map, or a
//! plain array in host tests) is the [`Tables`] implementation's business.
//! That keeps this code portable and tested on the host.

#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod stage2;

#[cfg(test)]
mod host;

pub const PAGE_SIZE: u64 = 4096;
pub const ENTRIES: usize = 512;
const LEVEL_SHIFT: [u32; 4] = [39, 30, 21, 12];

/// MAIR_ELx value matching [`MemType`] indices.
pub const MAIR: u64 = 0x04 | (0xff << 8) | (0x44 << 16);

// Descriptor bits; the first two, SH_INNER, AF and ADDR_MASK have the
// same place in stage-2 descriptors ([`stage2`]).
const VALID: u64 = 1 << 0;
const TABLE_OR_PAGE: u64 = 1 << 1;
const AP_EL0: u64 = 1 << 6;
const AP_RO: u64 = 1 << 7;
const SH_INNER: u64 = 3 << 8;
const AF: u64 = 1 << 10;
const NG: u64 = 1 << 11;
const PXN: u64 = 1 << 53;
const UXN: u64 = 1 << 54;
const ADDR_MASK: u64 = 0x0000_ffff_ffff_f000;

/// Memory type, an index into [`MAIR`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemType {
    Device = 0,
    Normal = 1,
    NormalUncached = 2,
}

/// Access rights and attributes of a mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attr {
    pub mem: MemType,
    pub write: bool,
    /// Executable at the kernel's level (EL2).
    pub kernel_exec: bool,
    /// Accessible from EL0.
    pub user: bool,
    /// Executable at EL0.
    pub user_exec: bool,
    /// Not global: tagged with the ASID (user mappings).
    pub not_global: bool,
}

impl Attr {
    pub const KERNEL_RW: Attr = Attr {
        mem: MemType::Normal,
        write: true,
        kernel_exec: false,
        user: false,
        user_exec: false,
        not_global: false,
    };
    pub const KERNEL_RO: Attr = Attr {
        write: false,
        ..Attr::KERNEL_RW
    };
    pub const KERNEL_RX: Attr = Attr {
        write: false,
        kernel_exec: true,
        ..Attr::KERNEL_RW
    };
    pub const KERNEL_RWX: Attr = Attr {
        write: true,
        kernel_exec: true,
        ..Attr::KERNEL_RW
    };
    pub const DEVICE: Attr = Attr {
        mem: MemType::Device,
        ..Attr::KERNEL_RW
    };

    /// User mapping with the given rights (read is implied).
    pub const fn user(write: bool, exec: bool) -> Attr {
        Attr {
            mem: MemType::Normal,
            write,
            kernel_exec: false,
            user: true,
            user_exec: exec,
            not_global: true,
        }
    }

    fn bits(self) -> u64 {
        let mut d = AF | ((self.mem as u64) << 2);
        if self.mem != MemType::Device {
            d |= SH_INNER;
        }
        if !self.write {
            d |= AP_RO;
        }
        if self.user {
            d |= AP_EL0;
        }
        if !self.kernel_exec {
            d |= PXN;
        }
        if !self.user_exec {
            d |= UXN;
        }
        if self.not_global {
            d |= NG;
        }
        d
    }

    fn from_bits(d: u64) -> Attr {
        let mem = match (d >> 2) & 7 {
            0 => MemType::Device,
            2 => MemType::NormalUncached,
            _ => MemType::Normal,
        };
        Attr {
            mem,
            write: d & AP_RO == 0,
            kernel_exec: d & PXN == 0,
            user: d & AP_EL0 != 0,
            user_exec: d & UXN == 0,
            not_global: d & NG != 0,
        }
    }
}

/// Access to translation-table pages in physical memory.
pub trait Tables {
    /// A zeroed page for a new table, by physical address.
    fn alloc(&mut self) -> Option<u64>;
    /// The table at physical address `pa`.
    fn table(&mut self, pa: u64) -> &mut [u64; ENTRIES];
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// Addresses or size not page-aligned.
    Misaligned,
    /// No memory for a translation table.
    NoMemory,
    /// Something is mapped there already.
    Exists { va: u64 },
    /// The range leaves the 48-bit address space.
    OutOfRange,
}

impl core::fmt::Display for MapError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MapError::Misaligned => write!(f, "address or size not page-aligned"),
            MapError::NoMemory => write!(f, "out of memory for translation tables"),
            MapError::Exists { va } => write!(f, "{va:#x} is already mapped"),
            MapError::OutOfRange => write!(f, "range outside the 48-bit address space"),
        }
    }
}

fn index(va: u64, level: usize) -> usize {
    ((va >> LEVEL_SHIFT[level]) & 0x1ff) as usize
}

/// Maps `[va, va + size)` to `[pa, pa + size)` in the table tree at `root`.
/// Uses 1 GiB / 2 MiB blocks where both addresses are aligned and
/// `blocks` allows it. Only the low 48 bits of `va` select entries, so
/// upper-range (TTBR1) addresses work as they are.
pub fn map(
    tables: &mut impl Tables,
    root: u64,
    va: u64,
    pa: u64,
    size: u64,
    attr: Attr,
    blocks: bool,
) -> Result<(), MapError> {
    if (va | pa | size) & (PAGE_SIZE - 1) != 0 {
        return Err(MapError::Misaligned);
    }
    if pa.checked_add(size).is_none_or(|e| e > 1 << 48) {
        return Err(MapError::OutOfRange);
    }
    let attr_bits = attr.bits();
    let mut off = 0;
    while off < size {
        let (v, p) = (va.wrapping_add(off), pa + off);
        let left = size - off;
        let mut table = root;
        let mut level = 0;
        loop {
            let block = 1u64 << LEVEL_SHIFT[level];
            let leaf_ok =
                level == 3 || (blocks && level >= 1 && (v | p) & (block - 1) == 0 && left >= block);
            let i = index(v, level);
            let entry = tables.table(table)[i];
            if leaf_ok {
                if entry & VALID != 0 {
                    return Err(MapError::Exists { va: v });
                }
                let kind = if level == 3 { TABLE_OR_PAGE } else { 0 };
                tables.table(table)[i] = p | attr_bits | kind | VALID;
                off += block;
                break;
            }
            table = if entry & VALID == 0 {
                let new = tables.alloc().ok_or(MapError::NoMemory)?;
                tables.table(table)[i] = new | TABLE_OR_PAGE | VALID;
                new
            } else if entry & TABLE_OR_PAGE == 0 {
                return Err(MapError::Exists { va: v });
            } else {
                entry & ADDR_MASK
            };
            level += 1;
        }
    }
    Ok(())
}

/// Looks up `va`: the physical address it maps to and the mapping's attributes.
pub fn translate(tables: &mut impl Tables, root: u64, va: u64) -> Option<(u64, Attr)> {
    let mut table = root;
    for (level, shift) in LEVEL_SHIFT.iter().enumerate() {
        let entry = tables.table(table)[index(va, level)];
        if entry & VALID == 0 {
            return None;
        }
        let size = 1u64 << shift;
        if level == 3 || entry & TABLE_OR_PAGE == 0 {
            let base = entry & ADDR_MASK & !(size - 1);
            return Some((base | (va & (size - 1)), Attr::from_bits(entry)));
        }
        table = entry & ADDR_MASK;
    }
    None
}

/// Removes the page mapping at `va` (4 KiB leaves only); returns the
/// physical address it had.
pub fn unmap_page(tables: &mut impl Tables, root: u64, va: u64) -> Option<u64> {
    let mut table = root;
    for level in 0..4 {
        let i = index(va, level);
        let entry = tables.table(table)[i];
        if entry & VALID == 0 {
            return None;
        }
        if level == 3 {
            tables.table(table)[i] = 0;
            return Some(entry & ADDR_MASK);
        }
        if entry & TABLE_OR_PAGE == 0 {
            return None;
        }
        table = entry & ADDR_MASK;
    }
    None
}

/// Calls `f` with the physical address of every table of the tree at
/// `root`, the root last (children before their parent, so `f` may free
/// them). Block and page entries are not tables.
pub fn for_each_table(tables: &mut impl Tables, root: u64, mut f: impl FnMut(u64)) {
    // Depth-first without recursion: the path of (table, next index) pairs.
    let mut path = [(0u64, 0usize); 4];
    let mut depth = 0;
    path[0] = (root, 0);
    loop {
        let (table, i) = path[depth];
        if i == ENTRIES || depth == 3 {
            // Done with this table (level-3 tables hold pages only).
            f(table);
            if depth == 0 {
                return;
            }
            depth -= 1;
            continue;
        }
        path[depth].1 += 1;
        let entry = tables.table(table)[i];
        if entry & VALID != 0 && entry & TABLE_OR_PAGE != 0 {
            depth += 1;
            path[depth] = (entry & ADDR_MASK, 0);
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::host::Host;
    use std::vec::Vec;

    #[test]
    fn every_table_once_children_first() {
        let mut t = Host::new(64);
        let root = t.alloc().unwrap();
        let attr = Attr::user(true, false);
        // Two pages under one level-3 table, one far away, and a 2 MiB block
        // (no level-3 table of its own).
        map(&mut t, root, 0x1000, 0x8000_0000, 0x2000, attr, false).unwrap();
        map(
            &mut t,
            root,
            0x7f00_0000_0000,
            0x8000_0000,
            0x1000,
            attr,
            false,
        )
        .unwrap();
        map(
            &mut t,
            root,
            0x4000_0000,
            0x8020_0000,
            0x20_0000,
            attr,
            true,
        )
        .unwrap();
        let mut seen = Vec::new();
        for_each_table(&mut t, root, |pa| seen.push(pa));
        assert_eq!(seen.len(), t.pages.len(), "every table: {seen:x?}");
        assert_eq!(seen.last(), Some(&root), "the root last");
        let mut sorted = seen.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), seen.len(), "each once");
        // A lone root.
        let mut t = Host::new(1);
        let root = t.alloc().unwrap();
        let mut n = 0;
        for_each_table(&mut t, root, |_| n += 1);
        assert_eq!(n, 1);
    }

    #[test]
    fn pages_and_blocks() {
        let mut t = Host::new(16);
        let root = t.alloc().unwrap();
        map(
            &mut t,
            root,
            0x4000_0000,
            0x4000_0000,
            0x4000_0000,
            Attr::KERNEL_RW,
            true,
        )
        .unwrap();
        // One 1 GiB block: only the root and one L1 table.
        assert_eq!(t.pages.len(), 2);
        assert_eq!(
            translate(&mut t, root, 0x4123_4567),
            Some((0x4123_4567, Attr::KERNEL_RW))
        );
        map(
            &mut t,
            root,
            0x1000,
            0x9000_0000,
            0x2000,
            Attr::user(true, false),
            false,
        )
        .unwrap();
        assert_eq!(
            translate(&mut t, root, 0x1fff),
            Some((0x9000_0fff, Attr::user(true, false)))
        );
        assert_eq!(translate(&mut t, root, 0x3000), None);
        assert_eq!(unmap_page(&mut t, root, 0x1000), Some(0x9000_0000));
        assert_eq!(translate(&mut t, root, 0x1000), None);
    }

    #[test]
    fn upper_range_addresses_use_low_bits() {
        let mut t = Host::new(16);
        let root = t.alloc().unwrap();
        let va = 0xffff_ff80_0000_0000;
        map(
            &mut t,
            root,
            va,
            0x4020_0000,
            0x20_0000,
            Attr::KERNEL_RX,
            true,
        )
        .unwrap();
        assert_eq!(
            translate(&mut t, root, va + 0x10),
            Some((0x4020_0010, Attr::KERNEL_RX))
        );
        assert_eq!(t.table(root)[511] & VALID, VALID);
    }

    #[test]
    fn refusals() {
        let mut t = Host::new(3);
        let root = t.alloc().unwrap();
        assert_eq!(
            map(&mut t, root, 0x10, 0, 0x1000, Attr::KERNEL_RW, false),
            Err(MapError::Misaligned)
        );
        map(
            &mut t,
            root,
            0x20_0000,
            0x20_0000,
            0x20_0000,
            Attr::KERNEL_RW,
            true,
        )
        .unwrap();
        assert_eq!(
            map(&mut t, root, 0x20_0000, 0, 0x1000, Attr::KERNEL_RW, false),
            Err(MapError::Exists { va: 0x20_0000 })
        );
        // Needs L1, L2 and L3 tables under another L0 slot: out of table pages.
        assert_eq!(
            map(&mut t, root, 1 << 39, 0, 0x1000, Attr::KERNEL_RW, false),
            Err(MapError::NoMemory)
        );
        assert_eq!(
            map(
                &mut t,
                root,
                0,
                0xffff_ffff_ffff_f000,
                0x1000,
                Attr::KERNEL_RW,
                false
            ),
            Err(MapError::OutOfRange)
        );
    }

    #[test]
    fn attribute_round_trip() {
        for a in [
            Attr::KERNEL_RW,
            Attr::KERNEL_RO,
            Attr::KERNEL_RX,
            Attr::DEVICE,
            Attr::user(false, true),
            Attr::user(true, false),
        ] {
            assert_eq!(Attr::from_bits(a.bits()), a);
        }
    }
}

//! Flexpages, access rights, and the typed items that carry them.
//!
//! A flexpage (Fiasco's `l4_fpage_t`) names a size-aligned power-of-two
//! region of one of a task's spaces in one word:
//!
//! | bits  | field                                                         |
//! |-------|---------------------------------------------------------------|
//! | 0..4  | rights ([`MemRights`] or the low four bits of [`CapRights`])  |
//! | 4..6  | type ([`FpageType`])                                          |
//! | 6..12 | order: log2 of the size (bytes, or number of capabilities)    |
//! | 12..  | base: the address itself, or the capability index << 12       |
//!
//! A **send item** ([`SendItem`]) occupies two message registers after the
//! untyped words: a control word (hot spot / send base in bits 12.., the
//! map-item marker [`item::MAP`], [`item::GRANT`], [`item::CONT`] and, for
//! capabilities, the extra rights bits 4..8) and the flexpage.
//!
//! **Receive items** ([`RecvItem`]) in the buffer registers say where a
//! receiver accepts mappings: a window (two words: [`item::MAP`], flexpage)
//! or a single-capability slot (one word: index << 12 |
//! [`item::RCV_SINGLE_CAP`]). The list ends at the first word without the
//! [`item::MAP`] bit.

use crate::sys::CAP_SHIFT;

/// The smallest memory flexpage order (4 KiB pages).
pub const PAGE_SHIFT: u8 = 12;
/// The order of a flexpage that covers a whole space ([`Fpage::all`]).
pub const WHOLE_SPACE: u8 = 63;

/// Memory access rights (`L4_FPAGE_RO`, `L4_FPAGE_W`, `L4_FPAGE_X`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct MemRights(pub u8);

bitflags::bitflags! {
    impl MemRights: u8 {
        /// No access.
        const NONE = 0;
        /// Execute.
        const X = 1;
        /// Write.
        const W = 2;
        /// Read.
        const R = 4;
        /// Read and write.
        const RW = 6;
        /// Read and execute.
        const RX = 5;
        /// Everything.
        const RWX = 7;
    }
}

impl MemRights {
    /// The rights present in both (kept for the kernel until it moves to
    /// [`MemRights::intersection`]; remove then).
    pub const fn intersect(self, other: MemRights) -> MemRights {
        self.intersection(other)
    }
}

/// Capability rights, with the values of ned's `L4.Rights`: `w`=1, `s`=2,
/// `r`=4, `d`=8, `n`=16, `c`=32. The low four bits travel in a capability
/// flexpage's rights field; bits 4..8 (`n`, `c` and two more object-specific
/// rights) in the control word of a send item (Fiasco's `L4_FPAGE_C_*`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct CapRights(pub u8);

bitflags::bitflags! {
    impl CapRights: u8 {
        /// No rights.
        const NONE = 0;
        /// Interface-specific write right (`L4_CAP_FPAGE_W`).
        const W = 0x01;
        /// Interface-specific special right (`L4_CAP_FPAGE_S`).
        const S = 0x02;
        /// Read right: needed for any invocation and any mapping (`L4_CAP_FPAGE_R`).
        const R = 0x04;
        /// Delete right: may delete the object (`L4_CAP_FPAGE_D`).
        const D = 0x08;
        /// No reference counting (`L4_FPAGE_C_NO_REF_CNT`).
        const N = 0x10;
        /// Object right 1; for IPC gates the server right (`L4_FPAGE_C_IPCGATE_SVR`).
        const C = 0x20;
        /// Object-specific right 2 (`L4_FPAGE_C_OBJ_RIGHT2`).
        const OBJ2 = 0x40;
        /// Object-specific right 3 (`L4_FPAGE_C_OBJ_RIGHT3`).
        const OBJ3 = 0x80;
        /// `ro` = r.
        const RO = 0x04;
        /// `rw` = r | w.
        const RW = 0x05;
        /// `rs` = r | s.
        const RS = 0x06;
        /// `rws` = r | w | s.
        const RWS = 0x07;
        /// r | w | s | d: all flexpage rights.
        const RWSD = 0x0f;
        /// Every right.
        const ALL = 0xff;
    }
}

impl CapRights {
    /// The rights a server sees in the low bits of the label of a message
    /// that came through an IPC gate: the `W` and `S` of the sender's
    /// capability (so a gate's own label keeps these bits zero; servers
    /// look objects up by `label & !LABEL_BITS`).
    pub const LABEL_BITS: u64 = 0x3;
    /// The rights carried in a flexpage.
    pub const FPAGE_MASK: u8 = 0x0f;
    /// The rights carried in a send item's control word.
    pub const CTL_MASK: u8 = 0xf0;

    /// What these rights put into the label of a gate message
    /// ([`CapRights::LABEL_BITS`]).
    pub const fn label_bits(self) -> u64 {
        self.0 as u64 & CapRights::LABEL_BITS
    }

    /// The rights present in both (kept for the kernel until it moves to
    /// [`CapRights::intersection`]; remove then).
    pub const fn intersect(self, other: CapRights) -> CapRights {
        self.intersection(other)
    }

    /// `self` without the rights in `other` (kept for the kernel until it
    /// moves to [`CapRights::difference`]; remove then).
    pub const fn without(self, other: CapRights) -> CapRights {
        self.difference(other)
    }

    /// Parses ned's letters (`"rw"`, `"RWS"`, `"rwsdnc"`); `None` on any
    /// other character. Unlike ned's `:m()`, `r` is not added implicitly.
    pub fn from_letters(s: &str) -> Option<CapRights> {
        let mut r = CapRights::NONE;
        for c in s.chars() {
            r |= match c.to_ascii_lowercase() {
                'w' => CapRights::W,
                's' => CapRights::S,
                'r' => CapRights::R,
                'd' => CapRights::D,
                'n' => CapRights::N,
                'c' => CapRights::C,
                _ => return None,
            };
        }
        Some(r)
    }
}

/// The space a flexpage refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FpageType {
    /// Special: invalid (order 0) or all spaces ([`Fpage::all`]).
    Special = 0,
    /// Memory.
    Memory = 1,
    /// I/O ports (x86 only; refused here).
    Io = 2,
    /// Capabilities (kernel objects).
    Obj = 3,
}

/// A flexpage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct Fpage(pub u64);

impl Fpage {
    /// Mask of the base field.
    pub const ADDR_MASK: u64 = !0xfff;

    /// A memory flexpage; `addr` is truncated to a multiple of 4 KiB (not to
    /// the order: see [`Fpage::mem_base`]).
    pub const fn mem(addr: u64, order: u8, rights: MemRights) -> Fpage {
        Fpage::raw_parts(addr & Self::ADDR_MASK, FpageType::Memory, order, rights.0)
    }

    /// A capability flexpage of `2^order` capabilities from `index`; only
    /// the low four bits of `rights` fit (see [`CapRights`]).
    pub const fn obj(index: u64, order: u8, rights: CapRights) -> Fpage {
        Fpage::raw_parts(index << CAP_SHIFT, FpageType::Obj, order, rights.0)
    }

    /// The flexpage covering all spaces (a receive window for anything).
    pub const fn all() -> Fpage {
        Fpage::raw_parts(0, FpageType::Special, WHOLE_SPACE, 0)
    }

    /// The invalid flexpage.
    pub const fn invalid() -> Fpage {
        Fpage(0)
    }

    const fn raw_parts(base: u64, ty: FpageType, order: u8, rights: u8) -> Fpage {
        Fpage(base | ((ty as u64) << 4) | (((order & 0x3f) as u64) << 6) | (rights & 0xf) as u64)
    }

    /// The type.
    pub const fn kind(self) -> FpageType {
        match (self.0 >> 4) & 3 {
            0 => FpageType::Special,
            1 => FpageType::Memory,
            2 => FpageType::Io,
            _ => FpageType::Obj,
        }
    }

    /// The order (log2 of the size).
    pub const fn order(self) -> u8 {
        ((self.0 >> 6) & 0x3f) as u8
    }

    /// The four rights bits.
    pub const fn rights_bits(self) -> u8 {
        (self.0 & 0xf) as u8
    }

    /// The rights as memory rights.
    pub const fn mem_rights(self) -> MemRights {
        MemRights((self.0 & 7) as u8)
    }

    /// The rights as capability rights (low four bits only).
    pub const fn cap_rights(self) -> CapRights {
        CapRights((self.0 & 0xf) as u8)
    }

    /// The base field as written (a memory address, or index << 12).
    pub const fn base(self) -> u64 {
        self.0 & Self::ADDR_MASK
    }

    /// The memory base, aligned down to the order (as the kernel reads it).
    pub const fn mem_base(self) -> u64 {
        align_down(self.base(), self.order())
    }

    /// The first capability index, aligned down to the order.
    pub const fn obj_index(self) -> u64 {
        align_down(self.base() >> CAP_SHIFT, self.order())
    }

    /// The same flexpage with other rights bits.
    pub const fn with_rights(self, rights: u8) -> Fpage {
        Fpage((self.0 & !0xf) | (rights & 0xf) as u64)
    }

    /// Whether this is the all-spaces flexpage.
    pub const fn is_all(self) -> bool {
        matches!(self.kind(), FpageType::Special) && self.order() == WHOLE_SPACE
    }

    /// Whether this is the invalid flexpage (special, not all-spaces).
    pub const fn is_invalid(self) -> bool {
        matches!(self.kind(), FpageType::Special) && !self.is_all()
    }
}

/// `v` aligned down to a multiple of `2^order` (orders >= 64 give 0).
pub const fn align_down(v: u64, order: u8) -> u64 {
    if order >= 64 {
        0
    } else {
        v & !((1u64 << order) - 1)
    }
}

/// Bits of typed-item control words (Fiasco's `L4_ITEM_*`, `L4_MAP_ITEM_*`,
/// `L4_RCV_ITEM_*`).
pub mod item {
    /// Marks a word as a map item (send) or receive item (buffer).
    pub const MAP: u64 = 0x8;
    /// Send item: the next send item goes into the same receive item.
    pub const CONT: u64 = 0x1;
    /// Send item: grant (move) instead of map.
    pub const GRANT: u64 = 0x2;
    /// Receive item: a single-capability slot (one word).
    pub const RCV_SINGLE_CAP: u64 = MAP | 0x2;
    /// Receive item: prefer a local id over a mapping (accepted, treated as
    /// a plain single-capability slot by this kernel).
    pub const RCV_LOCAL_ID: u64 = 0x4;
    /// Mask of the hot spot / send base (Fiasco's `L4_FPAGE_CONTROL_MASK`).
    pub const BASE_MASK: u64 = !0xfff;
    /// The extra capability rights in a send item's control word; they sit
    /// at the same bit positions as in [`super::CapRights`] (bits 4..8).
    pub const CAP_CTL_MASK: u64 = 0xf0;
}

/// A send item: a mapping (or grant) offered in a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SendItem {
    /// The control word: send base, flags, extra capability rights.
    pub control: u64,
    /// The flexpage to map from the sender's space.
    pub fpage: Fpage,
}

impl SendItem {
    /// A map item. `snd_base` is the hot spot: where in a larger receive
    /// window the flexpage goes, or which part of a larger flexpage a
    /// smaller window receives.
    pub const fn map(fpage: Fpage, snd_base: u64) -> SendItem {
        SendItem {
            control: (snd_base & item::BASE_MASK) | item::MAP,
            fpage,
        }
    }

    /// A grant item: like [`SendItem::map`], but the sender loses the mapping.
    pub const fn grant(fpage: Fpage, snd_base: u64) -> SendItem {
        SendItem {
            control: (snd_base & item::BASE_MASK) | item::MAP | item::GRANT,
            fpage,
        }
    }

    /// A map item of `2^order` capabilities from `index` with all of
    /// `rights`, including the control-word rights (`n`, `c`, ...).
    pub const fn caps(index: u64, order: u8, rights: CapRights, snd_base: u64) -> SendItem {
        let it = SendItem::map(Fpage::obj(index, order, rights), snd_base);
        it.with_cap_ctl(rights)
    }

    /// The same item with the control-word capability rights of `rights`.
    pub const fn with_cap_ctl(self, rights: CapRights) -> SendItem {
        let ctl = (rights.0 & CapRights::CTL_MASK) as u64;
        SendItem {
            control: (self.control & !item::CAP_CTL_MASK) | ctl,
            fpage: self.fpage,
        }
    }

    /// The same item, marked to share the receive item with the next one.
    pub const fn compound(self) -> SendItem {
        SendItem {
            control: self.control | item::CONT,
            fpage: self.fpage,
        }
    }

    /// Reads an item from two message words.
    pub const fn from_words(w: [u64; 2]) -> SendItem {
        SendItem {
            control: w[0],
            fpage: Fpage(w[1]),
        }
    }

    /// The two message words.
    pub const fn to_words(self) -> [u64; 2] {
        [self.control, self.fpage.0]
    }

    /// Whether the control word marks a map item (otherwise the item is void).
    pub const fn is_map_item(self) -> bool {
        self.control & item::MAP != 0
    }

    /// Whether this is a grant.
    pub const fn is_grant(self) -> bool {
        self.control & item::GRANT != 0
    }

    /// Whether the next item shares this item's receive item.
    pub const fn is_compound(self) -> bool {
        self.control & item::CONT != 0
    }

    /// The send base (hot spot).
    pub const fn snd_base(self) -> u64 {
        self.control & item::BASE_MASK
    }

    /// The capability rights offered: the flexpage's four bits plus the
    /// control word's bits 4..8.
    pub const fn cap_rights(self) -> CapRights {
        CapRights(self.fpage.rights_bits() | (self.control & item::CAP_CTL_MASK) as u8)
    }
}

/// A receive item in the buffer registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecvItem {
    /// A receive window: memory, capabilities, or all spaces.
    Window(Fpage),
    /// One capability slot.
    SmallCap {
        /// The capability index that receives the capability.
        index: u64,
    },
}

impl RecvItem {
    /// The buffer-register words for this item (the second word is unused
    /// for a small capability slot); see [`RecvItem::words`].
    pub const fn to_words(self) -> [u64; 2] {
        match self {
            RecvItem::Window(f) => [item::MAP, f.0],
            RecvItem::SmallCap { index } => [(index << CAP_SHIFT) | item::RCV_SINGLE_CAP, 0],
        }
    }

    /// The number of buffer registers the item occupies.
    pub const fn words(self) -> usize {
        match self {
            RecvItem::Window(_) => 2,
            RecvItem::SmallCap { .. } => 1,
        }
    }
}

/// Parses receive items from buffer registers: stops at the first word
/// without [`item::MAP`], at the end of the slice, or at a window whose
/// flexpage word is missing.
#[derive(Clone, Debug)]
pub struct RecvItems<'a> {
    words: &'a [u64],
}

impl<'a> RecvItems<'a> {
    /// Parses `words` (the buffer registers).
    pub const fn new(words: &'a [u64]) -> RecvItems<'a> {
        RecvItems { words }
    }
}

impl Iterator for RecvItems<'_> {
    type Item = RecvItem;

    fn next(&mut self) -> Option<RecvItem> {
        let (&w, rest) = self.words.split_first()?;
        if w & item::MAP == 0 {
            self.words = &[];
            return None;
        }
        if w & 0x2 != 0 {
            self.words = rest;
            return Some(RecvItem::SmallCap {
                index: w >> CAP_SHIFT,
            });
        }
        let Some((&f, rest)) = rest.split_first() else {
            self.words = &[];
            return None;
        };
        self.words = rest;
        Some(RecvItem::Window(Fpage(f)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fiasco_layout() {
        let f = Fpage::mem(0x4020_1000, 21, MemRights::RW);
        assert_eq!(f.0, 0x4020_1000 | (1 << 4) | (21 << 6) | 6);
        assert_eq!(f.kind(), FpageType::Memory);
        assert_eq!(f.order(), 21);
        assert_eq!(f.mem_rights(), MemRights::RW);
        assert_eq!(f.base(), 0x4020_1000);
        assert_eq!(f.mem_base(), 0x4020_0000, "aligned to the order");
        let c = Fpage::obj(0x13, 2, CapRights::RWS);
        assert_eq!(c.0, (0x13 << 12) | (3 << 4) | (2 << 6) | 7);
        assert_eq!(c.obj_index(), 0x10);
        assert_eq!(c.cap_rights(), CapRights::RWS);
        assert!(Fpage::all().is_all() && !Fpage::all().is_invalid());
        assert!(Fpage::invalid().is_invalid());
        assert_eq!(Fpage::all().with_rights(5).rights_bits(), 5);
        assert_eq!(align_down(0x1234, 64), 0);
    }

    #[test]
    fn rights() {
        assert_eq!(CapRights::from_letters("rw"), Some(CapRights::RW));
        assert_eq!(CapRights::from_letters("RWS"), Some(CapRights::RWS));
        assert_eq!(CapRights::from_letters("rwsdnc"), Some(CapRights(0x3f)));
        assert_eq!(CapRights::from_letters("x"), None);
        assert!(CapRights::RWSD.contains(CapRights::D));
        assert_eq!(CapRights::RWS.difference(CapRights::S), CapRights::RW);
        assert_eq!(CapRights::RW.union(CapRights::S), CapRights::RWS);
        assert_eq!(CapRights::ALL.intersect(CapRights::RO), CapRights::RO);
        assert!(MemRights::RWX.contains(MemRights::RX));
        assert!(MemRights::RX.intersect(MemRights::W).is_empty());
    }

    #[test]
    fn send_items() {
        let it = SendItem::grant(Fpage::mem(0x8000, 12, MemRights::R), 0x1_2345);
        assert_eq!(it.control, 0x1_2000 | 8 | 2);
        assert!(it.is_map_item() && it.is_grant() && !it.is_compound());
        assert_eq!(it.snd_base(), 0x1_2000);
        assert_eq!(SendItem::from_words(it.to_words()), it);
        let c = SendItem::caps(5, 0, CapRights(0x27), 0).compound();
        assert_eq!(c.cap_rights(), CapRights(0x27));
        assert_eq!(c.fpage.rights_bits(), 7);
        assert_eq!(c.control & 0xff, 0x20 | 8 | 1);
        assert!(!SendItem::from_words([0, 0]).is_map_item());
    }

    #[test]
    fn receive_items() {
        let w = Fpage::mem(0x10_0000, 20, MemRights::RWX);
        let mut brs = [0u64; 6];
        brs[..2].copy_from_slice(&RecvItem::Window(w).to_words());
        brs[2] = RecvItem::SmallCap { index: 9 }.to_words()[0];
        brs[3..5].copy_from_slice(&RecvItem::Window(Fpage::all()).to_words());
        let items: [Option<RecvItem>; 4] = {
            let mut it = RecvItems::new(&brs);
            [it.next(), it.next(), it.next(), it.next()]
        };
        assert_eq!(
            items,
            [
                Some(RecvItem::Window(w)),
                Some(RecvItem::SmallCap { index: 9 }),
                Some(RecvItem::Window(Fpage::all())),
                None
            ]
        );
        // A window cut off by the end of the registers is ignored.
        assert_eq!(RecvItems::new(&[item::MAP]).next(), None);
        assert_eq!(RecvItem::SmallCap { index: 1 }.words(), 1);
        assert_eq!(RecvItem::Window(w).words(), 2);
    }
}

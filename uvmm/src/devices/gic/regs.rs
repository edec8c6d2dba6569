//! The GICv3 register map: the interrupt register banks the distributor
//! (SPIs) and the redistributors' SGI frames (SGIs, PPIs) share, and the
//! identification registers.

use super::state::{GicState, Irq};

/// `IGROUPR<n>`.
pub const IGROUPR: u64 = 0x0080;
/// `ISENABLER<n>`.
pub const ISENABLER: u64 = 0x0100;
/// `ICENABLER<n>`.
pub const ICENABLER: u64 = 0x0180;
/// `ISPENDR<n>`.
pub const ISPENDR: u64 = 0x0200;
/// `ICPENDR<n>`.
pub const ICPENDR: u64 = 0x0280;
/// `ISACTIVER<n>`.
pub const ISACTIVER: u64 = 0x0300;
/// `ICACTIVER<n>`.
pub const ICACTIVER: u64 = 0x0380;
/// `IPRIORITYR<n>` (a byte per interrupt).
pub const IPRIORITYR: u64 = 0x0400;
/// `ICFGR<n>` (2 bits per interrupt).
pub const ICFGR: u64 = 0x0c00;
/// `IGRPMODR<n>`.
pub const IGRPMODR: u64 = 0x0d00;
/// `PIDR2`: bits 7:4 the architecture revision.
pub const PIDR2: u64 = 0xffe8;

/// The CoreSight identification registers `PIDR4..7, PIDR0..3, CIDR0..3`
/// from 0xffd0: the component preamble and, in `PIDR2`, architecture
/// revision 3 (GICv3); no implementer or part number is claimed.
pub fn id_reg(offset: u64) -> Option<u32> {
    Some(match offset {
        0xffd0..=0xffe4 | 0xffec => 0,
        PIDR2 => 0x30,
        0xfff0 => 0x0d,
        0xfff4 => 0xf0,
        0xfff8 => 0x05,
        0xfffc => 0xb1,
        _ => return None,
    })
}

/// Reads (`None`) or writes one interrupt's flag of a bit bank; the
/// flag's value.
type BitAccess = fn(&mut Irq, Option<bool>) -> bool;

/// One-bit-per-interrupt banks: their base and which flag each reads and
/// writes.
fn bit_bank(offset: u64) -> Option<(u64, BitAccess)> {
    let bank: (u64, BitAccess) = match offset {
        IGROUPR..ISENABLER => (IGROUPR, |i, w| {
            if let Some(v) = w {
                i.group1 = v;
            }
            i.group1
        }),
        ISENABLER..ICENABLER => (ISENABLER, |i, w| {
            if w == Some(true) {
                i.enabled = true;
            }
            i.enabled
        }),
        ICENABLER..ISPENDR => (ICENABLER, |i, w| {
            if w == Some(true) {
                i.enabled = false;
            }
            i.enabled
        }),
        ISPENDR..ICPENDR => (ISPENDR, |i, w| {
            if w == Some(true) {
                i.pending = true;
            }
            i.pending || (!i.edge && i.level)
        }),
        ICPENDR..ISACTIVER => (ICPENDR, |i, w| {
            if w == Some(true) {
                i.pending = false;
            }
            i.pending || (!i.edge && i.level)
        }),
        ISACTIVER..ICACTIVER => (ISACTIVER, |i, w| {
            if w == Some(true) && !i.active {
                i.active = true;
                i.active_priority = i.priority;
            }
            i.active
        }),
        ICACTIVER..IPRIORITYR => (ICACTIVER, |i, w| {
            if w == Some(true) {
                i.active = false;
            }
            i.active
        }),
        _ => return None,
    };
    Some(bank)
}

/// Which interrupts a bank access may touch: the distributor SPIs only,
/// a redistributor its vCPU's SGIs and PPIs only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bank {
    /// The distributor: INTIDs 32 and up.
    Shared,
    /// The SGI frame of vCPU n's redistributor: INTIDs 0..32.
    Private(usize),
}

impl Bank {
    fn allows(self, intid: u32) -> bool {
        match self {
            Bank::Shared => intid >= 32,
            Bank::Private(_) => intid < 32,
        }
    }

    fn cpu(self) -> usize {
        match self {
            Bank::Shared => 0,
            Bank::Private(c) => c,
        }
    }
}

/// A read of the interrupt banks at `offset` (32-bit registers, byte
/// access for `IPRIORITYR`); `None` when `offset` is no bank register.
pub fn read(s: &GicState, bank: Bank, offset: u64, size: u8) -> Option<u64> {
    if let Some((base, f)) = bit_bank(offset) {
        let first = ((offset & !3) - base) as u32 * 8;
        let mut v = 0u64;
        for b in 0..32 {
            let id = first + b;
            if bank.allows(id)
                && let Some(&i) = s.irq(bank.cpu(), id)
                && f(&mut { i }, None)
            {
                v |= 1 << b;
            }
        }
        return Some(crate::bus::read_sub32(offset, size, |_| v as u32));
    }
    match offset {
        IPRIORITYR..0x0800 => {
            let first = (offset - IPRIORITYR) as u32;
            let mut v = 0u64;
            for b in 0..u32::from(size.min(8)) {
                if bank.allows(first + b)
                    && let Some(i) = s.irq(bank.cpu(), first + b)
                {
                    v |= u64::from(i.priority) << (8 * b);
                }
            }
            Some(v)
        }
        ICFGR..IGRPMODR => {
            let first = ((offset & !3) - ICFGR) as u32 * 4;
            let mut v = 0u64;
            for b in 0..16 {
                if bank.allows(first + b)
                    && let Some(i) = s.irq(bank.cpu(), first + b)
                    && i.edge
                {
                    v |= 2 << (2 * b);
                }
            }
            Some(crate::bus::read_sub32(offset, size, |_| v as u32))
        }
        // Group modifiers: one security state, nothing to modify.
        IGRPMODR..0x0e00 => Some(0),
        _ => None,
    }
}

/// A write to the interrupt banks; `false` when `offset` is no bank
/// register.
pub fn write(s: &mut GicState, bank: Bank, offset: u64, size: u8, value: u64) -> bool {
    if let Some((base, f)) = bit_bank(offset) {
        if size != 4 {
            return true;
        }
        let first = (offset - base) as u32 * 8;
        for b in 0..32 {
            let id = first + b;
            if bank.allows(id)
                && let Some(i) = s.irq_mut(bank.cpu(), id)
            {
                let set = value & (1 << b) != 0;
                // IGROUPR writes zeroes too; the set/clear banks only ones.
                if base == IGROUPR || set {
                    f(i, Some(set));
                }
            }
        }
        return true;
    }
    match offset {
        IPRIORITYR..0x0800 => {
            let first = (offset - IPRIORITYR) as u32;
            for b in 0..u32::from(size.min(8)) {
                if bank.allows(first + b)
                    && let Some(i) = s.irq_mut(bank.cpu(), first + b)
                {
                    i.priority = (value >> (8 * b)) as u8;
                }
            }
            true
        }
        ICFGR..IGRPMODR => {
            if size != 4 {
                return true;
            }
            let first = (offset - ICFGR) as u32 * 4;
            for b in 0..16 {
                // SGIs are always edge-triggered.
                if first + b >= 16
                    && bank.allows(first + b)
                    && let Some(i) = s.irq_mut(bank.cpu(), first + b)
                {
                    i.edge = value & (2 << (2 * b)) != 0;
                }
            }
            true
        }
        IGRPMODR..0x0e00 => true,
        _ => false,
    }
}

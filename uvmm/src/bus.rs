//! The MMIO bus: which emulated device answers a guest-physical address.
//!
//! A guest load or store to an address that is not RAM traps (a stage-2
//! data abort); the exit handler ([`crate::vmm`]) asks the bus for the
//! device and calls [`MmioDevice::read`] or [`MmioDevice::write`] with the
//! offset into the device's region. Devices raise interrupts through an
//! [`IrqSink`] (the virtual GIC).

use core::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// An emulated device's register window.
pub trait MmioDevice: Send {
    /// A guest read of `size` (1, 2, 4 or 8) bytes at `offset`; the value
    /// in the low bytes.
    fn read(&mut self, offset: u64, size: u8) -> u64;
    /// A guest write of the low `size` bytes of `value` at `offset`.
    fn write(&mut self, offset: u64, size: u8, value: u64);
}

/// Where devices raise their interrupts (the virtual GIC).
pub trait IrqSink: Send + Sync {
    /// Sets the level of the line of `intid` (SPI, or a PPI of vCPU
    /// `vcpu`): `true` asserts it.
    fn set_level(&self, vcpu: usize, intid: u32, level: bool);
}

/// One interrupt line of a device.
#[derive(Clone)]
pub struct IrqLine {
    sink: Arc<dyn IrqSink>,
    intid: u32,
}

impl IrqLine {
    /// The line of `intid` into `sink`.
    pub fn new(sink: Arc<dyn IrqSink>, intid: u32) -> IrqLine {
        IrqLine { sink, intid }
    }

    /// Asserts or de-asserts the (level-triggered) line.
    pub fn set(&self, level: bool) {
        self.sink.set_level(0, self.intid, level);
    }

    /// The INTID.
    pub fn intid(&self) -> u32 {
        self.intid
    }
}

impl fmt::Debug for IrqLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IrqLine({})", self.intid)
    }
}

/// A device shared between the bus and whoever else drives it (a console
/// input thread, the monitor).
pub type SharedDevice = Arc<Mutex<dyn MmioDevice>>;

/// Locks a device; a device whose lock was poisoned by a panic in another
/// thread is still used (its registers are plain data).
pub fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

struct Range {
    base: u64,
    size: u64,
    name: String,
    dev: SharedDevice,
}

/// Why a device could not be added.
#[derive(Debug, PartialEq, Eq)]
pub enum BusError {
    /// Its window overlaps another device's.
    Overlap {
        /// The new device.
        new: String,
        /// The one already there.
        old: String,
    },
    /// The window is empty or wraps around.
    BadWindow(String),
}

impl fmt::Display for BusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BusError::Overlap { new, old } => {
                write!(f, "the MMIO window of {new} overlaps that of {old}")
            }
            BusError::BadWindow(n) => write!(f, "{n} has an empty or wrapping MMIO window"),
        }
    }
}

impl std::error::Error for BusError {}

/// The guest-physical MMIO windows and their devices.
#[derive(Default)]
pub struct MmioBus {
    /// By address.
    ranges: Vec<Range>,
    /// The index of the window the last access found (a guest mostly
    /// accesses one device many times in a row: it is tried first, which
    /// costs less than the search). Only a hint: every vCPU thread writes
    /// it, and it is checked before use.
    last: AtomicUsize,
}

impl MmioBus {
    /// An empty bus.
    pub fn new() -> MmioBus {
        MmioBus::default()
    }

    /// Adds `dev` at `[base, base + size)`, named `name` in messages.
    pub fn insert(
        &mut self,
        base: u64,
        size: u64,
        name: &str,
        dev: SharedDevice,
    ) -> Result<(), BusError> {
        let end = base
            .checked_add(size)
            .filter(|_| size > 0)
            .ok_or_else(|| BusError::BadWindow(name.to_string()))?;
        if let Some(o) = self
            .ranges
            .iter()
            .find(|r| base < r.base + r.size && r.base < end)
        {
            return Err(BusError::Overlap {
                new: name.to_string(),
                old: o.name.clone(),
            });
        }
        let at = self.ranges.partition_point(|r| r.base < base);
        self.ranges.insert(
            at,
            Range {
                base,
                size,
                name: name.to_string(),
                dev,
            },
        );
        Ok(())
    }

    fn find(&self, addr: u64, size: u8) -> Option<(&Range, u64)> {
        let hint = self.last.load(Ordering::Relaxed);
        let r = match self.ranges.get(hint) {
            Some(r) if r.base <= addr && addr - r.base < r.size => r,
            _ => {
                let i = self
                    .ranges
                    .partition_point(|r| r.base <= addr)
                    .checked_sub(1)?;
                self.last.store(i, Ordering::Relaxed);
                &self.ranges[i]
            }
        };
        let off = addr - r.base;
        (off.checked_add(u64::from(size))? <= r.size).then_some((r, off))
    }

    /// A guest read; `None` when no device is there.
    pub fn read(&self, addr: u64, size: u8) -> Option<u64> {
        let (r, off) = self.find(addr, size)?;
        Some(lock(&r.dev).read(off, size) & size_mask(size))
    }

    /// A guest write; `None` when no device is there.
    pub fn write(&self, addr: u64, size: u8, value: u64) -> Option<()> {
        let (r, off) = self.find(addr, size)?;
        lock(&r.dev).write(off, size, value & size_mask(size));
        Some(())
    }

    /// The windows: (base, size, name), by address.
    pub fn windows(&self) -> impl Iterator<Item = (u64, u64, &str)> {
        self.ranges
            .iter()
            .map(|r| (r.base, r.size, r.name.as_str()))
    }
}

/// The mask of an access of `size` bytes.
pub fn size_mask(size: u8) -> u64 {
    match size {
        8.. => u64::MAX,
        s => (1u64 << (u32::from(s) * 8)) - 1,
    }
}

/// Reads `size` bytes at `offset` of a 32-bit register file through
/// `reg` (called with the word-aligned offset): what byte and half-word
/// accesses to 32-bit registers see.
pub fn read_sub32(offset: u64, size: u8, reg: impl FnOnce(u64) -> u32) -> u64 {
    let word = u64::from(reg(offset & !3));
    (word >> ((offset & 3) * 8)) & size_mask(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Scratch {
        regs: [u64; 4],
    }

    impl MmioDevice for Scratch {
        fn read(&mut self, offset: u64, _size: u8) -> u64 {
            self.regs[(offset / 8) as usize % 4]
        }
        fn write(&mut self, offset: u64, _size: u8, value: u64) {
            self.regs[(offset / 8) as usize % 4] = value;
        }
    }

    fn dev() -> SharedDevice {
        Arc::new(Mutex::new(Scratch::default()))
    }

    #[test]
    fn routes_by_address_and_checks_bounds() {
        let mut bus = MmioBus::new();
        bus.insert(0x900_0000, 0x20, "a", dev()).unwrap();
        bus.insert(0x800_0000, 0x20, "b", dev()).unwrap();
        assert_eq!(bus.write(0x900_0008, 8, 0x1122_3344_5566_7788), Some(()));
        assert_eq!(bus.read(0x900_0008, 8), Some(0x1122_3344_5566_7788));
        assert_eq!(bus.read(0x900_0008, 2), Some(0x7788));
        assert_eq!(bus.read(0x800_0008, 8), Some(0));
        assert_eq!(bus.read(0x900_001c, 8), None);
        assert_eq!(bus.read(0x900_0020, 1), None);
        assert_eq!(bus.read(0x7ff_ffff, 1), None);
        assert_eq!(bus.write(0x1000, 4, 0), None);
        let names: Vec<_> = bus.windows().map(|w| w.2).collect();
        assert_eq!(names, ["b", "a"]);
    }

    #[test]
    fn last_window_hint_never_misroutes() {
        let mut bus = MmioBus::new();
        bus.insert(0x900_0000, 0x20, "a", dev()).unwrap();
        bus.insert(0xa00_0000, 0x20, "c", dev()).unwrap();
        bus.write(0x900_0000, 8, 1).unwrap();
        bus.write(0xa00_0000, 8, 3).unwrap();
        // Once found, "c" is tried first: an access elsewhere (in "a", in
        // a gap, past its end) still goes where its address says.
        assert_eq!(bus.read(0xa00_0000, 8), Some(3));
        assert_eq!(bus.read(0x900_0000, 8), Some(1));
        assert_eq!(bus.read(0xa00_0020, 1), None);
        assert_eq!(bus.read(0xa00_001c, 8), None);
        assert_eq!(bus.read(0x980_0000, 1), None);
        // A device added in front moves the others' indices.
        bus.insert(0x800_0000, 0x20, "b", dev()).unwrap();
        bus.write(0x800_0000, 8, 2).unwrap();
        assert_eq!(bus.read(0x900_0000, 8), Some(1));
        assert_eq!(bus.read(0xa00_0000, 8), Some(3));
        assert_eq!(bus.read(0x800_0000, 8), Some(2));
    }

    #[test]
    fn overlaps_refused() {
        let mut bus = MmioBus::new();
        bus.insert(0x1000, 0x1000, "a", dev()).unwrap();
        assert_eq!(
            bus.insert(0x1800, 0x1000, "b", dev()),
            Err(BusError::Overlap {
                new: "b".into(),
                old: "a".into()
            })
        );
        assert!(matches!(
            bus.insert(0x800, 0x801, "c", dev()),
            Err(BusError::Overlap { .. })
        ));
        assert!(bus.insert(0x2000, 0x1000, "d", dev()).is_ok());
        assert!(matches!(
            bus.insert(u64::MAX, 2, "e", dev()),
            Err(BusError::BadWindow(_))
        ));
        assert!(matches!(
            bus.insert(0x9000, 0, "f", dev()),
            Err(BusError::BadWindow(_))
        ));
    }

    #[test]
    fn sub_word_reads() {
        assert_eq!(
            read_sub32(0x12, 1, |o| if o == 0x10 { 0xaabb_ccdd } else { 0 }),
            0xbb
        );
        assert_eq!(read_sub32(0x12, 2, |_| 0xaabb_ccdd), 0xaabb);
        assert_eq!(size_mask(4), 0xffff_ffff);
    }
}

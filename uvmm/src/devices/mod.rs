//! The emulated devices, one folder each.

pub mod gic;
pub mod pl011;
pub mod virtio;

/// Where a console device's output goes (uvmm's `log` capability, a cons
/// client).
pub trait ConsoleOut: Send {
    /// Writes the guest's bytes.
    fn write(&mut self, bytes: &[u8]);
}

/// A page from which the guest reads a device's registers without an exit,
/// while reads have no side effects: the VMM writes there what each read
/// would give and maps it read-only over the device's register window.
/// Writes still trap (a stage-2 permission fault with a syndrome, which
/// uvmm emulates as MMIO). While a read would change the device (a PL011
/// data read pops its receive FIFO) the page is hidden and every access
/// traps.
pub trait ReadMirror: Send {
    /// Puts `values` (32-bit registers by offset; every other offset reads
    /// zero) on the page and lets the guest read it.
    fn show(&mut self, values: &[(u64, u32)]);
    /// Takes the page away from the guest.
    fn hide(&mut self);
}

/// The size of a [`ReadMirror`]'s page: a device with a mirror has a
/// window of exactly one page, page-aligned (stage 2 maps no less).
pub const MIRROR_PAGE: u64 = 0x1000;

/// Stand-ins for the console and the GIC in device tests.
#[cfg(test)]
pub(crate) mod testing {
    use std::sync::{Arc, Mutex};

    use super::{ConsoleOut, ReadMirror};
    use crate::bus::IrqSink;

    /// What a [`Mirror`] page holds.
    #[derive(Default)]
    pub struct Page {
        /// The registers the guest can read (`None`: hidden).
        shown: Option<Vec<(u64, u32)>>,
        /// How often the page was shown or hidden.
        changes: usize,
    }

    /// A [`ReadMirror`] remembering what the guest could read.
    #[derive(Clone, Default)]
    pub struct Mirror(pub Arc<Mutex<Page>>);

    impl Mirror {
        /// What a guest read at `offset` would give without an exit.
        pub fn read(&self, offset: u64) -> Option<u32> {
            let m = self.0.lock().unwrap();
            let shown = m.shown.as_ref()?;
            Some(shown.iter().find(|(o, _)| *o == offset).map_or(0, |v| v.1))
        }

        /// How many times the page was shown or hidden.
        pub fn changes(&self) -> usize {
            self.0.lock().unwrap().changes
        }
    }

    impl ReadMirror for Mirror {
        fn show(&mut self, values: &[(u64, u32)]) {
            let mut m = self.0.lock().unwrap();
            if m.shown.is_none() {
                m.changes += 1;
            }
            m.shown = Some(values.to_vec());
        }

        fn hide(&mut self) {
            let mut m = self.0.lock().unwrap();
            if m.shown.take().is_some() {
                m.changes += 1;
            }
        }
    }

    /// Collects console output.
    #[derive(Clone, Default)]
    pub struct Collect(pub Arc<Mutex<Vec<u8>>>);

    impl Collect {
        /// What was written so far.
        pub fn bytes(&self) -> Vec<u8> {
            self.0.lock().unwrap().clone()
        }
    }

    impl ConsoleOut for Collect {
        fn write(&mut self, bytes: &[u8]) {
            self.0.lock().unwrap().extend_from_slice(bytes);
        }
    }

    /// An interrupt line remembering its level.
    #[derive(Default)]
    pub struct Line(Mutex<bool>);

    impl Line {
        /// The level now.
        pub fn level(&self) -> bool {
            *self.0.lock().unwrap()
        }
    }

    impl IrqSink for Line {
        fn set_level(&self, _vcpu: usize, _intid: u32, level: bool) {
            *self.0.lock().unwrap() = level;
        }
    }
}

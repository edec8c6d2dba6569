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

/// Stand-ins for the console and the GIC in device tests.
#[cfg(test)]
pub(crate) mod testing {
    use std::sync::{Arc, Mutex};

    use super::ConsoleOut;
    use crate::bus::IrqSink;

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

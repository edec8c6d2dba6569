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

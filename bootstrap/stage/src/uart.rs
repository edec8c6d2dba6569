//! Output on the PL011 the device tree names as the console (MMU off: the
//! registers are accessed at their physical address).

use core::fmt;

pub struct Pl011 {
    base: usize,
}

const DR: usize = 0x00;
const FR: usize = 0x18;
const FR_TXFF: u32 = 1 << 5;

impl Pl011 {
    /// # Safety
    /// `base` must be the physical address of a PL011, accessed with the MMU off.
    pub const unsafe fn new(base: usize) -> Self {
        Pl011 { base }
    }

    fn put(&mut self, b: u8) {
        // SAFETY: `new`'s contract: base is a PL011's register block; FR and
        // DR are 32-bit registers inside it.
        unsafe {
            while core::ptr::read_volatile((self.base + FR) as *const u32) & FR_TXFF != 0 {}
            core::ptr::write_volatile((self.base + DR) as *mut u32, u32::from(b));
        }
    }
}

impl fmt::Write for Pl011 {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                self.put(b'\r');
            }
            self.put(b);
        }
        Ok(())
    }
}

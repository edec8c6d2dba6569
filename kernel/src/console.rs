//! The kernel console on the PL011 (mapped into the linear map as device
//! memory). Lines from different CPUs never interleave.

use core::fmt::{self, Write};
use spin::Mutex;

struct Pl011(usize);

impl Pl011 {
    fn put(&mut self, b: u8) {
        const DR: usize = 0x00;
        const FR: usize = 0x18;
        const TXFF: u32 = 1 << 5;
        // SAFETY: self.0 is the PL011's register block, mapped as device
        // memory by `init`; FR and DR are 32-bit registers inside it.
        unsafe {
            while core::ptr::read_volatile((self.0 + FR) as *const u32) & TXFF != 0 {}
            core::ptr::write_volatile((self.0 + DR) as *mut u32, u32::from(b));
        }
    }
}

impl Write for Pl011 {
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

impl Pl011 {
    /// A received byte, if any.
    fn get(&mut self) -> Option<u8> {
        const DR: usize = 0x00;
        const FR: usize = 0x18;
        const RXFE: u32 = 1 << 4;
        // SAFETY: as in put: the PL011's registers, mapped as device memory.
        unsafe {
            if core::ptr::read_volatile((self.0 + FR) as *const u32) & RXFE != 0 {
                return None;
            }
            Some(core::ptr::read_volatile((self.0 + DR) as *const u32) as u8)
        }
    }
}

static CONSOLE: Mutex<Option<Pl011>> = Mutex::new(None);
static IRQ: Mutex<Option<u32>> = Mutex::new(None);

/// Starts the console on the PL011 registers at virtual address `va`,
/// whose receive interrupt is `irq`.
pub fn init(va: u64, irq: Option<u32>) {
    *CONSOLE.lock() = Some(Pl011(va as usize));
    *IRQ.lock() = irq;
}

/// The console's input interrupt (GIC number).
pub fn input_irq() -> Option<u32> {
    *IRQ.lock()
}

/// Lets the PL011 raise its interrupt when input arrives.
pub fn enable_input_irq() {
    const IMSC: usize = 0x38;
    const RXIM_RTIM: u32 = (1 << 4) | (1 << 6);
    if let Some(c) = CONSOLE.lock().as_mut() {
        // SAFETY: IMSC is a 32-bit register of the mapped PL011.
        unsafe { core::ptr::write_volatile((c.0 + IMSC) as *mut u32, RXIM_RTIM) };
    }
}

pub fn write_fmt(args: fmt::Arguments<'_>) {
    if let Some(c) = CONSOLE.lock().as_mut() {
        let _ = c.write_fmt(args);
    }
}

pub fn write_bytes(bytes: &[u8]) {
    if let Some(c) = CONSOLE.lock().as_mut() {
        for &b in bytes {
            if b == b'\n' {
                c.put(b'\r');
            }
            c.put(b);
        }
    }
}

#[macro_export]
macro_rules! kprintln {
    ($($arg:tt)*) => {
        $crate::console::write_fmt(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// Reads what has been typed, without waiting; returns the count.
pub fn read_bytes(buf: &mut [u8]) -> usize {
    let mut c = CONSOLE.lock();
    let Some(c) = c.as_mut() else { return 0 };
    let mut n = 0;
    while n < buf.len() {
        match c.get() {
            Some(b) => {
                buf[n] = b;
                n += 1;
            }
            None => break,
        }
    }
    n
}

//! The kernel console on the PL011 (mapped into the linear map as device
//! memory; the driver is `l4_pl011`, shared with the boot stage), and the
//! input the kernel keeps for the Vcon. Lines from different CPUs never
//! interleave.

use core::fmt::{self, Write};
use kernel_core::input::InputRing;
use l4_pl011::Pl011;
use spin::Mutex;

static CONSOLE: Mutex<Option<Pl011>> = Mutex::new(None);
static IRQ: Mutex<Option<u32>> = Mutex::new(None);

/// Starts the console on the PL011 registers at virtual address `va`,
/// whose receive interrupt is `irq`.
///
/// # Safety
/// `va` is a PL011's register block mapped as device memory for good, and
/// nothing else drives that UART.
pub unsafe fn init(va: u64, irq: Option<u32>) {
    // SAFETY: the caller's contract.
    *CONSOLE.lock() = Some(unsafe { Pl011::new(va as usize) });
    *IRQ.lock() = irq;
}

/// The console's input interrupt (GIC number).
pub fn input_irq() -> Option<u32> {
    *IRQ.lock()
}

/// Lets the PL011 raise its interrupt when input arrives.
pub fn enable_input_irq() {
    if let Some(c) = CONSOLE.lock().as_mut() {
        c.enable_rx_interrupt();
    }
}

pub fn write_fmt(args: fmt::Arguments<'_>) {
    if let Some(c) = CONSOLE.lock().as_mut() {
        let _ = c.write_fmt(args);
    }
}

pub fn write_bytes(bytes: &[u8]) {
    if let Some(c) = CONSOLE.lock().as_mut() {
        c.write_bytes(bytes);
    }
}

#[macro_export]
macro_rules! kprintln {
    ($($arg:tt)*) => {
        $crate::platform::console::write_fmt(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// Typed bytes the kernel took from the UART and nobody read yet.
static INPUT: Mutex<InputRing<512>> = Mutex::new(InputRing::new());

/// `-serial_esc`: a lone ESC on the line enters the kernel debugger.
static ESCAPE_ARMED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// How long a lone ESC waits for the rest of an escape sequence (an arrow
/// key's bytes may come apart through an emulator's serial backend).
const ESC_WAIT_US: u64 = 50_000;

/// Arms the escape into the kernel debugger.
pub fn arm_escape() {
    ESCAPE_ARMED.store(true, core::sync::atomic::Ordering::Relaxed);
}

/// Moves what the UART received into the input buffer. Returns true if
/// that was a lone ESC while the escape is armed (taken out of the input:
/// the caller enters the kernel debugger).
pub fn pump() -> bool {
    let mut guard = CONSOLE.lock();
    let Some(c) = guard.as_mut() else {
        return false;
    };
    let armed = ESCAPE_ARMED.load(core::sync::atomic::Ordering::Relaxed);
    let mut uart = |wait: bool| {
        if wait {
            get_within(c, ESC_WAIT_US)
        } else {
            c.get()
        }
    };
    INPUT.lock().pump(&mut uart, armed)
}

/// A byte that arrives at `uart` within `us` microseconds.
fn get_within(uart: &mut Pl011, us: u64) -> Option<u8> {
    let start = crate::arch::counter();
    loop {
        if let Some(b) = uart.get() {
            return Some(b);
        }
        if crate::arch::micros_since(start) >= us {
            return None;
        }
    }
}

/// Reads what has been typed, without waiting; returns the count and
/// whether a lone ESC asked for the kernel debugger.
pub fn read_bytes(buf: &mut [u8]) -> (usize, bool) {
    let escape = pump();
    let mut input = INPUT.lock();
    let mut n = 0;
    while n < buf.len() {
        match input.take() {
            Some(b) => {
                buf[n] = b;
                n += 1;
            }
            None => break,
        }
    }
    (n, escape)
}

/// A byte straight from the UART, waiting for it (the kernel debugger's
/// input; everything else stands still meanwhile).
pub fn wait_byte() -> u8 {
    loop {
        if let Some(b) = CONSOLE.lock().as_mut().and_then(|c| c.get()) {
            return b;
        }
        core::hint::spin_loop();
    }
}

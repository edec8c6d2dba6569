//! The console UART both the boot stage and the kernel print on: a PL011
//! driver ([`Pl011`]) and the device-tree scan that finds it
//! ([`find_console`]).
//!
//! The driver only touches the registers it is given; mapping them (or
//! running with the MMU off, as the boot stage does) is the caller's part,
//! stated in [`Pl011::new`]'s contract.

#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

use core::fmt;

/// Register offsets and bits of the PL011 (Arm PrimeCell UART).
mod reg {
    /// Data register: a received byte, or the byte to send.
    pub const DR: usize = 0x00;
    /// Flag register.
    pub const FR: usize = 0x18;
    /// FR: the receive FIFO is empty.
    pub const FR_RXFE: u32 = 1 << 4;
    /// FR: the transmit FIFO is full.
    pub const FR_TXFF: u32 = 1 << 5;
    /// Interrupt mask set/clear register.
    pub const IMSC: usize = 0x38;
    /// IMSC: receive and receive-timeout interrupts.
    pub const IMSC_RX: u32 = (1 << 4) | (1 << 6);
}

/// A PL011 at a register block the caller can reach.
pub struct Pl011 {
    base: usize,
}

impl Pl011 {
    /// The PL011 whose registers start at address `base`.
    ///
    /// # Safety
    /// `base` is the register block of a PL011, reachable at that address
    /// (physical with the MMU off, or mapped as device memory) for as long
    /// as the returned value is used, and nothing else drives that UART
    /// meanwhile.
    pub const unsafe fn new(base: usize) -> Self {
        Pl011 { base }
    }

    fn read(&self, off: usize) -> u32 {
        // SAFETY: `new`'s contract: a PL011's register block; `off` is one
        // of its 32-bit registers.
        unsafe { core::ptr::read_volatile((self.base + off) as *const u32) }
    }

    fn write(&mut self, off: usize, v: u32) {
        // SAFETY: as in `read`.
        unsafe { core::ptr::write_volatile((self.base + off) as *mut u32, v) }
    }

    /// Sends one byte, waiting while the transmit FIFO is full.
    pub fn put(&mut self, b: u8) {
        while self.read(reg::FR) & reg::FR_TXFF != 0 {
            core::hint::spin_loop();
        }
        self.write(reg::DR, u32::from(b));
    }

    /// Sends bytes, each `\n` as `\r\n`.
    pub fn write_bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if b == b'\n' {
                self.put(b'\r');
            }
            self.put(b);
        }
    }

    /// A received byte, if one is waiting.
    pub fn get(&mut self) -> Option<u8> {
        if self.read(reg::FR) & reg::FR_RXFE != 0 {
            return None;
        }
        Some(self.read(reg::DR) as u8)
    }

    /// Lets the UART raise its interrupt when input arrives.
    pub fn enable_rx_interrupt(&mut self) {
        self.write(reg::IMSC, reg::IMSC_RX);
    }
}

impl fmt::Write for Pl011 {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.write_bytes(s.as_bytes());
        Ok(())
    }
}

/// The console UART the device tree names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Console {
    /// Physical address of its registers.
    pub base: u64,
    /// Its interrupt as a GIC interrupt number (SPI n is 32 + n, PPI n is
    /// 16 + n), if the node names one in the GIC's three-cell form.
    pub irq: Option<u32>,
}

/// The console: the node `/chosen/stdout-path` names, else the first
/// `arm,pl011`. `None` if there is neither or it has no registers.
pub fn find_console(dtb: &l4_dtb::Dtb<'_>) -> Option<Console> {
    let node = dtb
        .stdout()
        .or_else(|| dtb.find_compatible(&["arm,pl011"]))?;
    let base = node.reg().next()?.0;
    let irq = node.property("interrupts").and_then(|p| gic_irq(p.value));
    Some(Console { base, irq })
}

/// The GIC interrupt number of a three-cell specifier (type: SPI 0 or
/// PPI 1, number, flags), big-endian as in the device tree.
pub fn gic_irq(cells: &[u8]) -> Option<u32> {
    let n = be32(cells, 1)?;
    match be32(cells, 0)? {
        0 => n.checked_add(32),
        1 => n.checked_add(16),
        _ => None,
    }
}

/// Cell `i` of a big-endian cell array.
fn be32(b: &[u8], i: usize) -> Option<u32> {
    let at = i.checked_mul(4)?;
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;
    use vm_fdt::FdtWriter;

    /// A register block in memory standing in for the UART.
    #[repr(align(8))]
    struct Regs([u32; 16]);

    fn uart(regs: &mut Regs) -> Pl011 {
        // SAFETY: a register block in memory that outlives the driver.
        unsafe { Pl011::new(regs.0.as_mut_ptr() as usize) }
    }

    #[test]
    fn sends_to_the_data_register() {
        let mut regs = Regs([0; 16]);
        uart(&mut regs).put(b'x');
        assert_eq!(regs.0[reg::DR / 4], u32::from(b'x'));
        uart(&mut regs).write_bytes(b"\n");
        // The newline goes last, after its carriage return.
        assert_eq!(regs.0[reg::DR / 4], u32::from(b'\n'));
    }

    #[test]
    fn receives_only_what_is_there() {
        let mut regs = Regs([0; 16]);
        regs.0[reg::FR / 4] = reg::FR_RXFE;
        regs.0[reg::DR / 4] = u32::from(b'a');
        assert_eq!(uart(&mut regs).get(), None);
        regs.0[reg::FR / 4] = 0;
        assert_eq!(uart(&mut regs).get(), Some(b'a'));
    }

    #[test]
    fn unmasks_the_receive_interrupts() {
        let mut regs = Regs([0; 16]);
        uart(&mut regs).enable_rx_interrupt();
        assert_eq!(regs.0[reg::IMSC / 4], reg::IMSC_RX);
    }

    fn cells(c: &[u32]) -> Vec<u8> {
        c.iter().flat_map(|v| v.to_be_bytes()).collect()
    }

    #[test]
    fn gic_specifiers() {
        assert_eq!(gic_irq(&cells(&[0, 1, 4])), Some(33));
        assert_eq!(gic_irq(&cells(&[1, 10, 4])), Some(26));
        assert_eq!(gic_irq(&cells(&[2, 1, 4])), None);
        assert_eq!(gic_irq(&cells(&[0])), None);
        assert_eq!(gic_irq(&cells(&[0, u32::MAX, 4])), None);
    }

    /// A device tree with two PL011s, the second one chosen if `chosen`.
    fn tree(chosen: bool) -> Vec<u8> {
        let mut w = FdtWriter::new().unwrap();
        let root = w.begin_node("").unwrap();
        w.property_u32("#address-cells", 2).unwrap();
        w.property_u32("#size-cells", 2).unwrap();
        if chosen {
            let c = w.begin_node("chosen").unwrap();
            w.property_string("stdout-path", "/pl011@9040000").unwrap();
            w.end_node(c).unwrap();
        }
        for (base, spi) in [(0x900_0000u64, 1u32), (0x904_0000, 8)] {
            let n = w.begin_node(&std::format!("pl011@{base:x}")).unwrap();
            w.property_string("compatible", "arm,pl011").unwrap();
            w.property_array_u64("reg", &[base, 0x1000]).unwrap();
            w.property_array_u32("interrupts", &[0, spi, 4]).unwrap();
            w.end_node(n).unwrap();
        }
        w.end_node(root).unwrap();
        w.finish().unwrap()
    }

    fn console_of(blob: &[u8]) -> Option<Console> {
        find_console(&l4_dtb::Dtb::new(blob).unwrap())
    }

    #[test]
    fn the_chosen_console_wins() {
        let c = console_of(&tree(true));
        assert_eq!(c.map(|c| (c.base, c.irq)), Some((0x904_0000, Some(40))));
    }

    #[test]
    fn else_the_first_pl011() {
        let c = console_of(&tree(false));
        assert_eq!(c.map(|c| (c.base, c.irq)), Some((0x900_0000, Some(33))));
    }

    #[test]
    fn no_uart_no_console() {
        let mut w = FdtWriter::new().unwrap();
        let root = w.begin_node("").unwrap();
        w.end_node(root).unwrap();
        assert_eq!(console_of(&w.finish().unwrap()), None);
    }
}

//! PL011 UART (Arm PrimeCell UART, r1p5 register map): what Linux's
//! `amba-pl011` driver and the `pl011` earlycon use.
//!
//! Output goes to a [`ConsoleOut`] at once (the transmit FIFO is always
//! empty, so `FR.TXFE` is set and `TXFF`/`BUSY` never are). Input arrives
//! through [`Pl011::receive`] into a 32-entry receive FIFO (1 entry with
//! `LCR_H.FEN` clear); overflow drops the byte and sets the overrun
//! interrupt. The interrupt line is high while `RIS & IMSC` is non-zero.
//! Like other emulations uvmm transmits also before `CR.UARTEN` is set,
//! which the earlycon relies on.
//!
//! With a [`ReadMirror`] ([`Pl011::attach_mirror`]) the guest reads the
//! registers from a page while the receive FIFO is empty (then no read
//! changes the UART): a console write of Linux, a flag-register read and a
//! data-register write per character, exits once per character instead of
//! twice. Input hides the page until the guest has read the FIFO empty.

use std::collections::VecDeque;

use crate::bus::{IrqLine, MmioDevice, read_sub32};
use crate::devices::{ConsoleOut, ReadMirror};

/// Size of the register window.
pub const SIZE: u64 = 0x1000;
/// Receive FIFO depth.
pub const FIFO_DEPTH: usize = 32;

const DR: u64 = 0x000;
const RSR: u64 = 0x004;
const FR: u64 = 0x018;
const ILPR: u64 = 0x020;
const IBRD: u64 = 0x024;
const FBRD: u64 = 0x028;
const LCR_H: u64 = 0x02c;
const CR: u64 = 0x030;
const IFLS: u64 = 0x034;
const IMSC: u64 = 0x038;
const RIS: u64 = 0x03c;
const MIS: u64 = 0x040;
const ICR: u64 = 0x044;
const DMACR: u64 = 0x048;

/// `FR` bits.
pub mod fr {
    /// Receive FIFO empty.
    pub const RXFE: u32 = 1 << 4;
    /// Transmit FIFO full.
    pub const TXFF: u32 = 1 << 5;
    /// Receive FIFO full.
    pub const RXFF: u32 = 1 << 6;
    /// Transmit FIFO empty.
    pub const TXFE: u32 = 1 << 7;
}

/// Interrupt bits (`IMSC`, `RIS`, `MIS`, `ICR`).
pub mod int {
    /// Receive.
    pub const RX: u32 = 1 << 4;
    /// Transmit.
    pub const TX: u32 = 1 << 5;
    /// Receive timeout.
    pub const RT: u32 = 1 << 6;
    /// Overrun.
    pub const OE: u32 = 1 << 10;
    /// Every interrupt source.
    pub const ALL: u32 = 0x7ff;
}

/// `LCR_H.FEN`: FIFOs enabled.
const LCR_FEN: u32 = 1 << 4;
/// `DR` and `RSR` overrun error bit.
const DR_OE: u32 = 1 << 11;

/// The PrimeCell identification: `PeriphID0..3` (part 0x011, designer
/// 0x41, revision 3) then `PCellID0..3`.
const IDS: [u32; 8] = [0x11, 0x10, 0x34, 0x00, 0x0d, 0xf0, 0x05, 0xb1];

/// The registers a [`ReadMirror`] shows (every other offset reads zero):
/// all but `ICR` (write-only), then the identification registers.
const MIRRORED: [u64; 21] = [
    DR, RSR, FR, ILPR, IBRD, FBRD, LCR_H, CR, IFLS, IMSC, RIS, MIS, DMACR, 0xfe0, 0xfe4, 0xfe8,
    0xfec, 0xff0, 0xff4, 0xff8, 0xffc,
];

/// What a [`ReadMirror`] shows: each mirrored register's value.
type Shown = [(u64, u32); MIRRORED.len()];

/// A PL011.
pub struct Pl011 {
    out: Box<dyn ConsoleOut>,
    irq: IrqLine,
    rx: VecDeque<u8>,
    rsr: u32,
    ibrd: u32,
    fbrd: u32,
    lcr_h: u32,
    cr: u32,
    ifls: u32,
    imsc: u32,
    /// Latched raw interrupt bits (TX, RT, OE); RX follows the FIFO.
    ris: u32,
    dmacr: u32,
    ilpr: u32,
    /// The page the guest reads from while reads have no side effects.
    mirror: Option<Box<dyn ReadMirror>>,
    /// What the mirror shows now (`None`: hidden).
    shown: Option<Shown>,
}

impl Pl011 {
    /// A PL011 in its reset state writing to `out`, interrupting on `irq`.
    pub fn new(out: Box<dyn ConsoleOut>, irq: IrqLine) -> Pl011 {
        Pl011 {
            out,
            irq,
            rx: VecDeque::new(),
            rsr: 0,
            ibrd: 0,
            fbrd: 0,
            lcr_h: 0,
            cr: 0x300,
            ifls: 0x12,
            imsc: 0,
            ris: 0,
            dmacr: 0,
            ilpr: 0,
            mirror: None,
            shown: None,
        }
    }

    /// Lets the guest read the registers from `mirror` whenever reads have
    /// no side effects.
    pub fn attach_mirror(&mut self, mirror: Box<dyn ReadMirror>) {
        self.mirror = Some(mirror);
        self.shown = None;
        self.sync_mirror();
    }

    /// Shows the registers' values on the mirror while the receive FIFO is
    /// empty (a data read then changes nothing), hides it otherwise.
    fn sync_mirror(&mut self) {
        if self.mirror.is_none() {
            return;
        }
        let now: Option<Shown> = self
            .rx
            .is_empty()
            .then(|| MIRRORED.map(|o| (o, self.peek(o))));
        if self.shown == now {
            return;
        }
        self.shown = now;
        if let Some(mirror) = self.mirror.as_mut() {
            match &now {
                Some(values) => mirror.show(values),
                None => mirror.hide(),
            }
        }
    }

    /// What a 32-bit read at `offset` gives, without its side effects (a
    /// data read's pop).
    fn peek(&self, offset: u64) -> u32 {
        match offset {
            DR => self.rx.front().map_or(0, |&b| u32::from(b)),
            RSR => self.rsr,
            FR => self.flags(),
            ILPR => self.ilpr,
            IBRD => self.ibrd,
            FBRD => self.fbrd,
            LCR_H => self.lcr_h,
            CR => self.cr,
            IFLS => self.ifls,
            IMSC => self.imsc,
            RIS => self.raw(),
            MIS => self.raw() & self.imsc,
            DMACR => self.dmacr,
            0xfe0..=0xffc if offset.is_multiple_of(4) => IDS[((offset - 0xfe0) / 4) as usize],
            _ => 0,
        }
    }

    fn depth(&self) -> usize {
        if self.lcr_h & LCR_FEN != 0 {
            FIFO_DEPTH
        } else {
            1
        }
    }

    fn raw(&self) -> u32 {
        let rx = if self.rx.is_empty() { 0 } else { int::RX };
        self.ris | rx
    }

    fn update_irq(&self) {
        self.irq.set(self.raw() & self.imsc != 0);
    }

    /// Input from the console: queued into the receive FIFO.
    pub fn receive(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.rx.len() >= self.depth() {
                self.rsr |= DR_OE >> 8;
                self.ris |= int::OE;
            } else {
                self.rx.push_back(b);
                self.ris |= int::RT;
            }
        }
        self.sync_mirror();
        self.update_irq();
    }

    /// Whether the receive FIFO has room (the console may hold input back).
    pub fn can_receive(&self) -> bool {
        self.room() > 0
    }

    /// How many bytes the receive FIFO takes now.
    pub fn room(&self) -> usize {
        self.depth().saturating_sub(self.rx.len())
    }

    fn flags(&self) -> u32 {
        let mut f = fr::TXFE;
        if self.rx.is_empty() {
            f |= fr::RXFE;
        }
        if self.rx.len() >= self.depth() {
            f |= fr::RXFF;
        }
        f
    }
}

impl MmioDevice for Pl011 {
    fn read(&mut self, offset: u64, size: u8) -> u64 {
        if offset == DR {
            let v = match self.rx.pop_front() {
                Some(b) => u32::from(b),
                None => 0,
            };
            if self.rx.is_empty() {
                self.ris &= !int::RT;
            }
            self.sync_mirror();
            self.update_irq();
            return u64::from(v);
        }
        read_sub32(offset, size, |o| self.peek(o))
    }

    fn write(&mut self, offset: u64, _size: u8, value: u64) {
        let v = value as u32;
        match offset {
            DR => {
                self.out.write(&[v as u8]);
                // Sent at once: the transmit FIFO is below any trigger level.
                if self.ris & int::TX != 0 {
                    // Nothing changed (the common case, a console write
                    // character by character): the mirror and the line
                    // stay as they are.
                    return;
                }
                self.ris |= int::TX;
            }
            RSR => self.rsr = 0,
            ILPR => self.ilpr = v & 0xff,
            IBRD => self.ibrd = v & 0xffff,
            FBRD => self.fbrd = v & 0x3f,
            LCR_H => {
                // Switching the FIFOs flushes the receive FIFO to its new depth.
                self.lcr_h = v & 0xff;
                let depth = self.depth();
                self.rx.truncate(depth);
            }
            CR => self.cr = v & 0xffff,
            IFLS => self.ifls = v & 0x3f,
            IMSC => self.imsc = v & int::ALL,
            ICR => {
                self.ris &= !v;
                if v & int::OE != 0 {
                    self.rsr &= !(DR_OE >> 8);
                }
            }
            DMACR => self.dmacr = v & 0x7,
            _ => {}
        }
        self.sync_mirror();
        self.update_irq();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::testing::{Collect, Line, Mirror};
    use std::sync::Arc;

    fn uart() -> (Pl011, Collect, Arc<Line>) {
        let out = Collect::default();
        let line = Arc::new(Line::default());
        (
            Pl011::new(Box::new(out.clone()), IrqLine::new(line.clone(), 33)),
            out,
            line,
        )
    }

    #[test]
    fn transmit_and_ids() {
        let (mut u, out, line) = uart();
        assert_eq!(u.read(FR, 4) as u32, fr::TXFE | fr::RXFE);
        for b in b"hi\n" {
            u.write(DR, 4, u64::from(*b));
        }
        assert_eq!(out.bytes(), b"hi\n");
        assert_eq!(u.read(RIS, 4) as u32 & int::TX, int::TX);
        assert!(!line.level(), "TX masked");
        u.write(IMSC, 4, u64::from(int::TX));
        assert!(line.level());
        assert_eq!(u.read(MIS, 4) as u32, int::TX);
        u.write(ICR, 4, u64::from(int::TX));
        assert!(!line.level());
        // The next character raises it again; more leave it high.
        u.write(DR, 4, u64::from(b'!'));
        assert!(line.level());
        u.write(DR, 4, u64::from(b'?'));
        assert!(line.level());
        assert_eq!(u.read(MIS, 4) as u32, int::TX);
        assert_eq!(out.bytes(), b"hi\n!?");
        let ids: Vec<u64> = (0..8).map(|i| u.read(0xfe0 + 4 * i, 4)).collect();
        assert_eq!(ids, [0x11, 0x10, 0x34, 0x00, 0x0d, 0xf0, 0x05, 0xb1]);
        assert_eq!(u.read(CR, 4), 0x300);
        assert_eq!(u.read(IFLS, 4), 0x12);
        u.write(IBRD, 4, 13);
        u.write(FBRD, 4, 0x41);
        assert_eq!((u.read(IBRD, 4), u.read(FBRD, 4)), (13, 1));
    }

    #[test]
    fn receive_fifo_flags_and_interrupts() {
        let (mut u, _, line) = uart();
        u.write(LCR_H, 4, u64::from(LCR_FEN | 0x60));
        u.write(IMSC, 4, u64::from(int::RX | int::RT));
        u.receive(b"ab");
        assert_eq!(u.room(), u.depth() - 2, "what the FIFO still takes");
        assert!(line.level());
        assert_eq!(u.read(FR, 4) as u32 & fr::RXFE, 0);
        assert_eq!(u.read(MIS, 4) as u32, int::RX | int::RT);
        assert_eq!(u.read(DR, 4), u64::from(b'a'));
        assert_eq!(u.read(DR, 4), u64::from(b'b'));
        assert_eq!(u.read(FR, 4) as u32 & fr::RXFE, fr::RXFE);
        assert!(!line.level());
        assert_eq!(u.read(DR, 4), 0);
        // Fill the 32-entry FIFO and overrun it.
        u.receive(&[b'x'; FIFO_DEPTH + 3]);
        assert!(!u.can_receive());
        assert_eq!(u.read(FR, 4) as u32 & fr::RXFF, fr::RXFF);
        assert_eq!(u.read(RIS, 4) as u32 & int::OE, int::OE);
        assert_ne!(u.read(RSR, 4), 0);
        u.write(ICR, 4, u64::from(int::OE));
        assert_eq!(u.read(RSR, 4), 0);
        for _ in 0..FIFO_DEPTH {
            assert_eq!(u.read(DR, 4), u64::from(b'x'));
        }
        assert!(u.can_receive());
    }

    #[test]
    fn without_fifo_one_byte_holds() {
        let (mut u, _, _) = uart();
        u.receive(b"xy");
        assert_eq!(u.read(FR, 4) as u32 & fr::RXFF, fr::RXFF);
        assert_eq!(u.read(DR, 4), u64::from(b'x'));
        assert_eq!(u.read(FR, 4) as u32 & fr::RXFE, fr::RXFE);
        assert_eq!(u.read(RIS, 4) as u32 & int::OE, int::OE);
    }

    /// What the mirror shows is what reads would give, at every offset.
    fn assert_mirror_reads(u: &mut Pl011, m: &Mirror) {
        for o in (0..SIZE).step_by(4) {
            let shown = m.read(o).expect("the mirror is shown");
            assert_eq!(u64::from(shown), u.read(o, 4), "offset {o:#x}");
        }
    }

    #[test]
    fn mirror_shown_while_reads_change_nothing() {
        let (mut u, out, line) = uart();
        let m = Mirror::default();
        u.attach_mirror(Box::new(m.clone()));
        assert_eq!(m.read(FR), Some(fr::TXFE | fr::RXFE));
        assert_mirror_reads(&mut u, &m);
        // Writes trap and the mirror follows them.
        u.write(IMSC, 4, u64::from(int::TX | int::RX));
        u.write(DR, 4, u64::from(b'a'));
        assert_eq!(out.bytes(), b"a");
        assert_eq!(m.read(MIS), Some(int::TX));
        assert!(line.level());
        assert_mirror_reads(&mut u, &m);
        assert_eq!(m.changes(), 1, "shown once, updated in place");
        // Input: a data read would pop it, so every access traps.
        u.write(LCR_H, 4, u64::from(LCR_FEN));
        u.receive(b"xy");
        assert_eq!(m.read(FR), None);
        assert_eq!(m.changes(), 2);
        assert_eq!(u.read(DR, 4), u64::from(b'x'));
        assert_eq!(m.read(FR), None, "one byte left");
        assert_eq!(u.read(DR, 4), u64::from(b'y'));
        assert_eq!(m.read(FR), Some(fr::TXFE | fr::RXFE), "shown again");
        assert_eq!(m.read(DR), Some(0));
        assert_eq!(m.changes(), 3);
        assert_mirror_reads(&mut u, &m);
    }

    #[test]
    fn mirror_attached_with_input_waiting_starts_hidden() {
        let (mut u, _, _) = uart();
        u.receive(b"z");
        let m = Mirror::default();
        u.attach_mirror(Box::new(m.clone()));
        assert_eq!((m.read(FR), m.changes()), (None, 0));
        assert_eq!(u.read(DR, 4), u64::from(b'z'));
        assert_eq!(m.changes(), 1);
        assert_mirror_reads(&mut u, &m);
    }
}

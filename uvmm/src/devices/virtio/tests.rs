use std::sync::Arc;

use super::console::{Console, F_EMERG_WRITE, RXQ, TXQ};
use super::queue::tests::{AVAIL, DATA, DESC, Driver, USED};
use super::queue::{DESC_NEXT, DESC_WRITE};
use super::*;
use crate::devices::testing::{Collect, Line};

struct Setup {
    dev: VirtioMmio<Console>,
    out: Collect,
    line: Arc<Line>,
}

fn setup(mem: GuestMemory) -> Setup {
    let out = Collect::default();
    let line = Arc::new(Line::default());
    let dev = VirtioMmio::new(
        Console::new(Box::new(out.clone())),
        mem,
        IrqLine::new(line.clone(), 40),
    );
    Setup { dev, out, line }
}

/// The driver's start-up sequence; queue `q` at the driver's rings (the
/// other queue's rings after them).
fn negotiate(d: &mut VirtioMmio<Console>, features_hi: u64) -> u32 {
    d.write(STATUS, 4, 0);
    d.write(STATUS, 4, u64::from(status::ACKNOWLEDGE | status::DRIVER));
    d.write(DRIVER_FEATURES_SEL, 4, 1);
    d.write(DRIVER_FEATURES, 4, features_hi);
    d.write(DRIVER_FEATURES_SEL, 4, 0);
    d.write(DRIVER_FEATURES, 4, F_EMERG_WRITE);
    d.write(
        STATUS,
        4,
        u64::from(status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK),
    );
    d.read(STATUS, 4) as u32
}

fn setup_queue(d: &mut VirtioMmio<Console>, q: u64, size: u64, base: u64) {
    d.write(QUEUE_SEL, 4, q);
    assert_eq!(d.read(QUEUE_NUM_MAX, 4), 256);
    d.write(QUEUE_NUM, 4, size);
    for (reg, addr) in [
        (QUEUE_DESC_LOW, DESC + base),
        (QUEUE_DRIVER_LOW, AVAIL + base),
        (QUEUE_DEVICE_LOW, USED + base),
    ] {
        d.write(reg, 4, addr & 0xffff_ffff);
        d.write(reg + 4, 4, addr >> 32);
    }
    d.write(QUEUE_READY, 4, 1);
    assert_eq!(d.read(QUEUE_READY, 4), 1);
}

#[test]
fn identification_and_features() {
    let drv = Driver::new(8);
    let Setup { mut dev, .. } = setup(drv.mem.clone());
    assert_eq!(dev.read(MAGIC_VALUE, 4), 0x7472_6976);
    assert_eq!(dev.read(VERSION_REG, 4), 2);
    assert_eq!(dev.read(DEVICE_ID, 4), 3);
    assert_eq!(dev.read(VENDOR_ID, 4), u64::from(VENDOR));
    dev.write(DEVICE_FEATURES_SEL, 4, 0);
    assert_eq!(dev.read(DEVICE_FEATURES, 4), F_EMERG_WRITE);
    dev.write(DEVICE_FEATURES_SEL, 4, 1);
    assert_eq!(dev.read(DEVICE_FEATURES, 4), 1);
    // Without VERSION_1 (legacy) FEATURES_OK does not stick.
    assert_eq!(negotiate(&mut dev, 0) & status::FEATURES_OK, 0);
    // Unknown features do not either.
    assert_eq!(negotiate(&mut dev, 1 | 2) & status::FEATURES_OK, 0);
    assert_ne!(negotiate(&mut dev, 1) & status::FEATURES_OK, 0);
    // Config: max_nr_ports = 1; emergency write prints.
    assert_eq!(dev.read(CONFIG + 4, 4), 1);
    assert_eq!(dev.read(CONFIG, 2), 0);
    assert_eq!(dev.read(CONFIG_GENERATION, 4), 0);
    // Queue 2 does not exist.
    dev.write(QUEUE_SEL, 4, 2);
    assert_eq!(dev.read(QUEUE_NUM_MAX, 4), 0);
    // A queue size that is not a power of 2 cannot be made ready.
    dev.write(QUEUE_SEL, 4, 0);
    dev.write(QUEUE_NUM, 4, 3);
    dev.write(QUEUE_READY, 4, 1);
    assert_eq!(dev.read(QUEUE_READY, 4), 0);
}

#[test]
fn transmit_receive_interrupts() {
    let mut drv = Driver::new(8);
    let Setup { mut dev, out, line } = setup(drv.mem.clone());
    negotiate(&mut dev, 1);
    setup_queue(&mut dev, TXQ as u64, 8, 0);
    // The receive queue's rings 0x8000 further on.
    setup_queue(&mut dev, RXQ as u64, 8, 0x8000);
    dev.write(
        STATUS,
        4,
        u64::from(status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK),
    );
    dev.write(CONFIG + 8, 4, u64::from(b'!'));

    // Transmit "hello, world" as two buffers of one chain.
    drv.mem.write(DATA, b"hello, world").unwrap();
    drv.desc(0, DATA, 7, DESC_NEXT, 1);
    drv.desc(1, DATA + 7, 5, 0, 0);
    drv.make_available(0);
    dev.write(QUEUE_NOTIFY, 4, TXQ as u64);
    assert_eq!(out.bytes(), b"!hello, world");
    assert_eq!(drv.used(), [(0, 0)]);
    assert_eq!(dev.read(INTERRUPT_STATUS, 4), u64::from(isr::USED));
    assert!(line.level());
    dev.write(INTERRUPT_ACK, 4, u64::from(isr::USED));
    assert!(!line.level());

    // Input before the guest offers a buffer is held, then delivered.
    dev.receive(b"ls\n");
    let rx_mem = drv.mem.clone();
    let rx_desc = DESC + 0x8000;
    rx_mem
        .write(rx_desc, &(DATA + 0x100).to_le_bytes())
        .unwrap();
    rx_mem.write_u32(rx_desc + 8, 2).unwrap();
    rx_mem
        .write_u16(rx_desc + 12, DESC_WRITE | DESC_NEXT)
        .unwrap();
    rx_mem.write_u16(rx_desc + 14, 1).unwrap();
    rx_mem
        .write(rx_desc + 16, &(DATA + 0x200).to_le_bytes())
        .unwrap();
    rx_mem.write_u32(rx_desc + 24, 16).unwrap();
    rx_mem.write_u16(rx_desc + 28, DESC_WRITE).unwrap();
    rx_mem.write_u16(AVAIL + 0x8000 + 4, 0).unwrap();
    rx_mem.write_u16(AVAIL + 0x8000 + 2, 1).unwrap();
    dev.write(QUEUE_NOTIFY, 4, RXQ as u64);
    let mut got = [0u8; 3];
    drv.mem.read(DATA + 0x100, &mut got[..2]).unwrap();
    drv.mem.read(DATA + 0x200, &mut got[2..]).unwrap();
    assert_eq!(&got, b"ls\n");
    assert_eq!(drv.mem.read_u32(USED + 0x8000 + 8), Ok(3));
    assert!(line.level());

    // Reset clears everything.
    dev.write(STATUS, 4, 0);
    assert_eq!(dev.read(STATUS, 4), 0);
    assert_eq!(dev.read(INTERRUPT_STATUS, 4), 0);
    dev.write(QUEUE_SEL, 4, 0);
    assert_eq!(dev.read(QUEUE_READY, 4), 0);
}

#[test]
fn malformed_chain_needs_reset() {
    let mut drv = Driver::new(4);
    let Setup { mut dev, out, line } = setup(drv.mem.clone());
    negotiate(&mut dev, 1);
    setup_queue(&mut dev, TXQ as u64, 4, 0);
    dev.write(
        STATUS,
        4,
        u64::from(status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK),
    );
    drv.desc(0, DATA, 4, DESC_NEXT, 0); // loops to itself
    drv.make_available(0);
    dev.write(QUEUE_NOTIFY, 4, TXQ as u64);
    assert_eq!(dev.last_error(), Some(&QueueError::Loop));
    assert_ne!(dev.read(STATUS, 4) as u32 & status::NEEDS_RESET, 0);
    assert_eq!(dev.read(INTERRUPT_STATUS, 4), u64::from(isr::CONFIG));
    assert!(line.level());
    assert!(out.bytes().is_empty());
    // Further notifies do nothing until the reset.
    dev.write(QUEUE_NOTIFY, 4, TXQ as u64);
    dev.write(STATUS, 4, 0);
    assert_eq!(dev.read(STATUS, 4), 0);
    // Notifying a queue that is not ready, or none, is harmless.
    dev.write(QUEUE_NOTIFY, 4, 7);
}

use crate::devices::virtio::{
    DEVICE_FEATURES_SEL, DRIVER_FEATURES, DRIVER_FEATURES_SEL, QUEUE_DESC_HIGH, QUEUE_DESC_LOW,
    QUEUE_DEVICE_LOW, QUEUE_DRIVER_LOW, QUEUE_SEL,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::*;
use crate::devices::testing::Line;

/// What the fake device was asked.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Call {
    Status(u32),
    Features(u64),
    Queue(u32, QueueConfig),
    Kick,
    Fast(Option<FastPath>),
}

#[derive(Clone, Default)]
struct Fake {
    calls: Arc<Mutex<Vec<Call>>>,
    refuse_queue: bool,
    /// The kernel can answer the fast-path registers.
    fast: bool,
}

impl Fake {
    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
}

impl Port for Fake {
    fn device_info(&mut self) -> Result<DeviceInfo, Error> {
        Ok(DeviceInfo {
            device_id: 1,
            vendor_id: 0x44,
            features: l4_ipc::virtio::F_VERSION_1 | 0x20,
            num_queues: 2,
            queue_max: 256,
            config_size: 8,
        })
    }
    fn set_status(&mut self, s: u32) -> Result<u32, Error> {
        self.calls.lock().unwrap().push(Call::Status(s));
        Ok(s)
    }
    fn set_features(&mut self, f: u64) -> Result<(), Error> {
        self.calls.lock().unwrap().push(Call::Features(f));
        if f & !(l4_ipc::virtio::F_VERSION_1 | 0x20) != 0 {
            return Err(Error::Inval);
        }
        Ok(())
    }
    fn config_queue(&mut self, i: u32, q: QueueConfig) -> Result<(), Error> {
        self.calls.lock().unwrap().push(Call::Queue(i, q));
        if self.refuse_queue {
            return Err(Error::Range);
        }
        Ok(())
    }
    fn read_config(&mut self, off: u32, size: u8) -> Result<u64, Error> {
        l4_ipc::virtio::config_read(&[2, 8, 0, 0, 0, 1, 1, 0], off, size)
    }
    fn write_config(&mut self, _: u32, _: u8, _: u64) -> Result<(), Error> {
        Err(Error::Perm)
    }
    fn kick(&self) {
        self.calls.lock().unwrap().push(Call::Kick);
    }
    fn fast_path(&mut self, regs: Option<FastPath>) -> bool {
        self.calls.lock().unwrap().push(Call::Fast(regs));
        self.fast && regs.is_some()
    }
}

/// Where the tests' proxy has its registers.
const BASE: u64 = 0x3001_0000;

fn proxy(fake: &Fake) -> (ProxyMmio, Arc<ProxyIrq>, Arc<Line>) {
    let line = Arc::new(Line::default());
    let irq = Arc::new(ProxyIrq::new(IrqLine::new(line.clone(), 155)));
    let p = ProxyMmio::new("/net", Box::new(fake.clone()), irq.clone(), Some(1), BASE).unwrap();
    (p, irq, line)
}

/// Has the kernel inject `irq` (as uvmm does with a notification Irq
/// bound to the vCPU); the count of the injections.
fn inject_counted(irq: &ProxyIrq) -> Arc<AtomicUsize> {
    let triggered = Arc::new(AtomicUsize::new(0));
    let t = triggered.clone();
    irq.inject_directly(Box::new(move || {
        t.fetch_add(1, Ordering::SeqCst);
    }));
    triggered
}

fn w(p: &mut ProxyMmio, reg: u64, v: u64) {
    p.write(reg, 4, v);
}

fn start(p: &mut ProxyMmio, features_hi: u64) -> u32 {
    w(p, STATUS, 0);
    w(p, STATUS, u64::from(status::ACKNOWLEDGE | status::DRIVER));
    w(p, DRIVER_FEATURES_SEL, 1);
    w(p, DRIVER_FEATURES, features_hi);
    w(p, DRIVER_FEATURES_SEL, 0);
    w(p, DRIVER_FEATURES, 0x20);
    w(
        p,
        STATUS,
        u64::from(status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK),
    );
    p.read(STATUS, 4) as u32
}

#[test]
fn linux_start_up_is_forwarded() {
    let fake = Fake::default();
    let (mut p, irq, line) = proxy(&fake);
    assert_eq!(p.read(MAGIC_VALUE, 4), u64::from(MAGIC));
    assert_eq!(p.read(VERSION_REG, 4), 2);
    assert_eq!(p.read(DEVICE_ID, 4), 1);
    assert_eq!(p.read(VENDOR_ID, 4), 0x44);
    w(&mut p, DEVICE_FEATURES_SEL, 1);
    assert_eq!(p.read(DEVICE_FEATURES, 4), 1);
    w(&mut p, DEVICE_FEATURES_SEL, 0);
    assert_eq!(p.read(DEVICE_FEATURES, 4), 0x20);
    assert_ne!(start(&mut p, 1) & status::FEATURES_OK, 0);
    // The MAC in the configuration space, byte by byte.
    assert_eq!(p.read(CONFIG, 1), 2);
    assert_eq!(p.read(CONFIG + 1, 1), 8);
    assert_eq!(p.read(CONFIG + 6, 2), 1);
    for (q, base) in [(0u64, 0x4000_0000u64), (1, 0x4000_4000)] {
        w(&mut p, QUEUE_SEL, q);
        assert_eq!(p.read(QUEUE_NUM_MAX, 4), 256);
        w(&mut p, QUEUE_NUM, 128);
        w(&mut p, QUEUE_DESC_LOW, base);
        w(&mut p, QUEUE_DESC_HIGH, 0);
        w(&mut p, QUEUE_DRIVER_LOW, base + 0x800);
        w(&mut p, QUEUE_DEVICE_LOW, base + 0x1000);
        w(&mut p, QUEUE_READY, 1);
        assert_eq!(p.read(QUEUE_READY, 4), 1);
    }
    w(&mut p, QUEUE_SEL, 2);
    assert_eq!(p.read(QUEUE_NUM_MAX, 4), 0, "no third queue");
    let ok = status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK;
    w(&mut p, STATUS, u64::from(ok));
    assert_eq!(p.read(STATUS, 4), u64::from(ok));
    w(&mut p, QUEUE_NOTIFY, 1);
    let q = |base: u64, flags| QueueConfig {
        size: 128,
        desc: base,
        avail: base + 0x800,
        used: base + 0x1000,
        flags,
    };
    assert_eq!(
        fake.calls(),
        [
            Call::Status(0),
            Call::Status(status::ACKNOWLEDGE | status::DRIVER),
            Call::Features(l4_ipc::virtio::F_VERSION_1 | 0x20),
            Call::Status(status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK),
            Call::Queue(0, q(0x4000_0000, 0)),
            Call::Queue(1, q(0x4000_4000, queue_flags::NO_NOTIFY)),
            Call::Status(ok),
            Call::Kick,
        ]
    );
    // The device's notification: the used-buffer interrupt until acked.
    assert!(!line.level());
    irq.raise();
    assert!(line.level());
    assert_eq!(p.read(INTERRUPT_STATUS, 4), u64::from(isr::USED));
    w(&mut p, INTERRUPT_ACK, u64::from(isr::USED));
    assert!(!line.level());
    assert_eq!(p.read(INTERRUPT_STATUS, 4), 0);
    // Reset: queues off, line low.
    irq.raise();
    w(&mut p, STATUS, 0);
    assert!(!line.level());
    w(&mut p, QUEUE_SEL, 0);
    assert_eq!(p.read(QUEUE_READY, 4), 0);
}

#[test]
fn refusals_reach_the_driver() {
    let fake = Fake {
        refuse_queue: true,
        ..Fake::default()
    };
    let (mut p, _irq, line) = proxy(&fake);
    // Features the device does not offer: no FEATURES_OK.
    assert_eq!(start(&mut p, 1 | 4) & status::FEATURES_OK, 0);
    assert_ne!(start(&mut p, 1) & status::FEATURES_OK, 0);
    // A queue the device refuses: not ready, NEEDS_RESET and a
    // configuration interrupt.
    w(&mut p, QUEUE_SEL, 0);
    w(&mut p, QUEUE_NUM, 64);
    w(&mut p, QUEUE_READY, 1);
    assert_eq!(p.read(QUEUE_READY, 4), 0);
    assert_ne!(p.read(STATUS, 4) as u32 & status::NEEDS_RESET, 0);
    assert_eq!(p.read(INTERRUPT_STATUS, 4), u64::from(isr::CONFIG));
    assert!(line.level());
    // Sizes above the maximum are not passed on; no kicks before DRIVER_OK.
    w(&mut p, QUEUE_SEL, 1);
    w(&mut p, QUEUE_NUM, 512);
    w(&mut p, QUEUE_READY, 1);
    w(&mut p, QUEUE_NOTIFY, 0);
    let calls = fake.calls();
    assert!(!calls.contains(&Call::Kick));
    assert_eq!(
        calls
            .iter()
            .filter(|c| matches!(c, Call::Queue(..)))
            .count(),
        1
    );
    // Odd accesses: nothing happens.
    p.write(STATUS, 2, 0);
    assert_eq!(p.read(CONFIG + 0x1000_0000_0000, 4), 0);
    p.write(CONFIG, 1, 0);
}

#[test]
fn kernel_injected_interrupt() {
    let fake = Fake {
        refuse_queue: true,
        ..Fake::default()
    };
    let (mut p, irq, line) = proxy(&fake);
    let triggered = inject_counted(&irq);
    assert!(irq.injected());
    assert_eq!(irq.intid(), 155);
    // Not running: nothing to report.
    assert_ne!(start(&mut p, 1) & status::FEATURES_OK, 0);
    assert_eq!(p.read(INTERRUPT_STATUS, 4), 0);
    // A refused queue: the configuration interrupt goes through the Irq,
    // never the line.
    w(&mut p, QUEUE_SEL, 0);
    w(&mut p, QUEUE_NUM, 64);
    w(&mut p, QUEUE_READY, 1);
    assert_eq!(triggered.load(Ordering::SeqCst), 1);
    assert!(!line.level());
    assert_eq!(p.read(INTERRUPT_STATUS, 4), u64::from(isr::CONFIG));
    w(&mut p, INTERRUPT_ACK, u64::from(isr::CONFIG));
    assert_eq!(p.read(INTERRUPT_STATUS, 4), 0);
    // Running: used buffers are the driver's to find (the kernel injects
    // the device's notifications).
    let ok = status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK;
    w(&mut p, STATUS, u64::from(ok));
    assert_eq!(p.read(INTERRUPT_STATUS, 4), u64::from(isr::USED));
    w(&mut p, INTERRUPT_ACK, u64::from(isr::USED));
    assert!(!line.level());
    // Reset: nothing again.
    w(&mut p, STATUS, 0);
    assert_eq!(p.read(INTERRUPT_STATUS, 4), 0);
    assert!(!line.level());
}

#[test]
fn kernel_answers_the_hot_registers_while_the_device_runs() {
    let fake = Fake {
        refuse_queue: true,
        fast: true,
        ..Fake::default()
    };
    let (mut p, irq, _line) = proxy(&fake);
    let triggered = inject_counted(&irq);
    assert_ne!(start(&mut p, 1) & status::FEATURES_OK, 0);
    assert!(!p.fast_path(), "not before DRIVER_OK");
    let ok = status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK;
    w(&mut p, STATUS, u64::from(ok));
    assert!(p.fast_path());
    let regs = FastPath {
        notify: BASE + QUEUE_NOTIFY,
        status: BASE + INTERRUPT_STATUS,
        status_value: isr::USED,
        ack: BASE + INTERRUPT_ACK,
    };
    assert_eq!(fake.calls().last(), Some(&Call::Fast(Some(regs))));
    // A refusal: the registers come back to uvmm before the driver hears
    // of it, so that it reads the configuration bit from uvmm.
    w(&mut p, QUEUE_SEL, 0);
    w(&mut p, QUEUE_NUM, 64);
    w(&mut p, QUEUE_READY, 1);
    assert!(!p.fast_path());
    let calls = fake.calls();
    assert_eq!(
        &calls[calls.len() - 2..],
        [
            Call::Queue(
                0,
                QueueConfig {
                    size: 64,
                    ..QueueConfig::default()
                }
            ),
            Call::Fast(None),
        ]
    );
    assert_eq!(triggered.load(Ordering::SeqCst), 1);
    assert_eq!(
        p.read(INTERRUPT_STATUS, 4),
        u64::from(isr::USED | isr::CONFIG)
    );
    // Reset, then running again: given again; a reset takes them back.
    w(&mut p, STATUS, 0);
    assert_ne!(start(&mut p, 1) & status::FEATURES_OK, 0);
    w(&mut p, STATUS, u64::from(ok));
    assert!(p.fast_path());
    w(&mut p, STATUS, 0);
    assert!(!p.fast_path());
    assert_eq!(fake.calls().last(), Some(&Call::Fast(None)));
}

#[test]
fn hot_registers_stay_with_uvmm_without_injection_or_kernel() {
    // Interrupt through uvmm's GIC: the status register is uvmm's.
    let fake = Fake {
        fast: true,
        ..Fake::default()
    };
    let (mut p, _irq, _line) = proxy(&fake);
    start(&mut p, 1);
    let ok = status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK | status::DRIVER_OK;
    w(&mut p, STATUS, u64::from(ok));
    assert!(!p.fast_path());
    assert!(!fake.calls().iter().any(|c| matches!(c, Call::Fast(_))));
    // A port without the kernel's help: asked, says no, uvmm answers.
    let fake = Fake::default();
    let (mut p, irq, _line) = proxy(&fake);
    irq.inject_directly(Box::new(|| {}));
    start(&mut p, 1);
    w(&mut p, STATUS, u64::from(ok));
    assert!(!p.fast_path());
    assert_eq!(p.read(INTERRUPT_STATUS, 4), u64::from(isr::USED));
    w(&mut p, QUEUE_NOTIFY, 0);
    assert_eq!(fake.calls().last(), Some(&Call::Kick));
}

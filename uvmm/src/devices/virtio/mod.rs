//! virtio over MMIO (virtio 1.x, section 4.2, version 2 register layout)
//! and the virtio devices behind it.
//!
//! [`VirtioMmio`] is the transport: identification, feature negotiation,
//! status, queue setup and notification, interrupt status. The device
//! behind it ([`VirtioDevice`]) sees its queues when the driver notifies
//! one, and its configuration space. A queue error (a malformed chain)
//! puts the device into `DEVICE_NEEDS_RESET` with a configuration-change
//! interrupt, as the specification asks.
//!
//! [`proxy::ProxyMmio`] is the other kind of virtio-mmio device: one served
//! by another task (a port of the network switch), to which it forwards
//! the driver's setup; the queues stay in guest RAM and uvmm never touches
//! them.

pub mod console;
pub mod proxy;
pub mod queue;

use crate::bus::{IrqLine, MmioDevice, read_sub32};
use crate::memory::GuestMemory;
use queue::{MAX_SIZE, Queue, QueueError};

/// Size of the register window (registers plus configuration space).
pub const SIZE: u64 = 0x200;
/// "virt".
pub const MAGIC: u32 = 0x7472_6976;
/// The register layout version (virtio 1.x).
pub const VERSION: u32 = 2;
/// uvmm's vendor ID ("L4RE").
pub const VENDOR: u32 = u32::from_le_bytes(*b"L4RE");
pub use l4_ipc::virtio::{F_VERSION_1, status};

/// Interrupt status bits.
pub mod isr {
    /// A used buffer.
    pub const USED: u32 = 1;
    /// The configuration changed (or the device needs a reset).
    pub const CONFIG: u32 = 2;
}

/// A device behind the MMIO transport.
pub trait VirtioDevice: Send {
    /// The virtio device ID.
    fn device_id(&self) -> u32;
    /// The features offered (besides [`F_VERSION_1`], which is always).
    fn features(&self) -> u64;
    /// How many queues.
    fn num_queues(&self) -> usize;
    /// Reads `size` bytes of configuration space at `offset`.
    fn read_config(&self, offset: u64, size: u8) -> u64;
    /// Writes configuration space.
    fn write_config(&mut self, offset: u64, size: u8, value: u64);
    /// The driver notified queue `index` (or the device has news for
    /// it): processes it; whether used buffers were added.
    fn process(
        &mut self,
        index: usize,
        queues: &mut [Queue],
        mem: &GuestMemory,
    ) -> Result<bool, QueueError>;
    /// The driver reset the device.
    fn reset(&mut self);
}

/// The virtio-mmio transport around device `D`.
pub struct VirtioMmio<D> {
    dev: D,
    mem: GuestMemory,
    irq: IrqLine,
    queues: Vec<Queue>,
    regs: Selectors,
    status: u32,
    isr: u32,
    config_generation: u32,
    /// The last queue error (for the monitor and the log).
    last_error: Option<QueueError>,
}

pub(crate) const MAGIC_VALUE: u64 = 0x000;
pub(crate) const VERSION_REG: u64 = 0x004;
pub(crate) const DEVICE_ID: u64 = 0x008;
pub(crate) const VENDOR_ID: u64 = 0x00c;
pub(crate) const DEVICE_FEATURES: u64 = 0x010;
pub(crate) const DEVICE_FEATURES_SEL: u64 = 0x014;
pub(crate) const DRIVER_FEATURES: u64 = 0x020;
pub(crate) const DRIVER_FEATURES_SEL: u64 = 0x024;
pub(crate) const QUEUE_SEL: u64 = 0x030;
pub(crate) const QUEUE_NUM_MAX: u64 = 0x034;
pub(crate) const QUEUE_NUM: u64 = 0x038;
pub(crate) const QUEUE_READY: u64 = 0x044;
pub(crate) const QUEUE_NOTIFY: u64 = 0x050;
pub(crate) const INTERRUPT_STATUS: u64 = 0x060;
pub(crate) const INTERRUPT_ACK: u64 = 0x064;
pub(crate) const STATUS: u64 = 0x070;
pub(crate) const QUEUE_DESC_LOW: u64 = 0x080;
pub(crate) const QUEUE_DESC_HIGH: u64 = 0x084;
pub(crate) const QUEUE_DRIVER_LOW: u64 = 0x090;
pub(crate) const QUEUE_DRIVER_HIGH: u64 = 0x094;
pub(crate) const QUEUE_DEVICE_LOW: u64 = 0x0a0;
pub(crate) const QUEUE_DEVICE_HIGH: u64 = 0x0a4;
pub(crate) const CONFIG_GENERATION: u64 = 0x0fc;
pub(crate) const CONFIG: u64 = 0x100;

fn set_half(v: &mut u64, high: bool, half: u64) {
    *v = if high {
        (*v & 0xffff_ffff) | (half << 32)
    } else {
        (*v & !0xffff_ffff) | (half & 0xffff_ffff)
    };
}

/// The registers every virtio-mmio transport keeps the same way: the
/// queue and feature selectors and the driver's features.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Selectors {
    /// `QueueSel`.
    pub queue_sel: u32,
    dev_features_sel: u32,
    drv_features_sel: u32,
    /// The features the driver wrote.
    pub driver_features: u64,
}

impl Selectors {
    /// `DeviceFeatures` of a device offering `offered`.
    pub fn device_features(&self, offered: u64) -> u32 {
        match self.dev_features_sel {
            0 => offered as u32,
            1 => (offered >> 32) as u32,
            _ => 0,
        }
    }

    /// A write of `value` (`size` bytes) to a transport register at
    /// `offset` with the device status `status`. The registers take only
    /// 32-bit writes: another size is ignored. Returns the 32-bit value
    /// of a write that is left to the transport: `None` for an ignored
    /// write or one of these registers (driver features only count before
    /// `FEATURES_OK`).
    pub fn write(&mut self, offset: u64, size: u8, value: u64, status: u32) -> Option<u64> {
        if size != 4 {
            return None;
        }
        let v = value & 0xffff_ffff;
        match offset {
            DEVICE_FEATURES_SEL => self.dev_features_sel = v as u32,
            DRIVER_FEATURES_SEL => self.drv_features_sel = v as u32,
            DRIVER_FEATURES if status & status::FEATURES_OK == 0 => match self.drv_features_sel {
                0 => set_half(&mut self.driver_features, false, v),
                1 => set_half(&mut self.driver_features, true, v),
                _ => {}
            },
            DRIVER_FEATURES => {}
            QUEUE_SEL => self.queue_sel = v as u32,
            _ => return Some(v),
        }
        None
    }
}

/// A write of half a queue address (`QueueDescLow` ... `QueueDeviceHigh`)
/// into the queue's `desc`, `avail` or `used`; whether `offset` was one.
pub(crate) fn write_queue_address(
    offset: u64,
    v: u64,
    desc: &mut u64,
    avail: &mut u64,
    used: &mut u64,
) -> bool {
    let field = match offset & !4 {
        QUEUE_DESC_LOW => desc,
        QUEUE_DRIVER_LOW => avail,
        QUEUE_DEVICE_LOW => used,
        _ => return false,
    };
    set_half(field, offset & 4 != 0, v);
    true
}

impl<D: VirtioDevice> VirtioMmio<D> {
    /// The transport for `dev`, reaching guest RAM through `mem`.
    pub fn new(dev: D, mem: GuestMemory, irq: IrqLine) -> VirtioMmio<D> {
        let queues = (0..dev.num_queues()).map(|_| Queue::new()).collect();
        VirtioMmio {
            dev,
            mem,
            irq,
            queues,
            regs: Selectors::default(),
            status: 0,
            isr: 0,
            config_generation: 0,
            last_error: None,
        }
    }

    /// The device.
    pub fn device(&mut self) -> &mut D {
        &mut self.dev
    }

    /// The last queue error.
    pub fn last_error(&self) -> Option<&QueueError> {
        self.last_error.as_ref()
    }

    /// The device status register.
    pub fn status(&self) -> u32 {
        self.status
    }

    fn offered(&self) -> u64 {
        self.dev.features() | F_VERSION_1
    }

    fn queue(&mut self) -> Option<&mut Queue> {
        self.queues.get_mut(self.regs.queue_sel as usize)
    }

    fn reset(&mut self) {
        self.dev.reset();
        for q in &mut self.queues {
            q.reset();
        }
        self.regs.driver_features = 0;
        self.status = 0;
        self.isr = 0;
        self.irq.set(false);
    }

    /// Processes queue `index` (the driver notified it, or the device
    /// has something for it) and raises the interrupt as needed.
    pub fn kick_queue(&mut self, index: usize) {
        if self.status & status::DRIVER_OK == 0 || self.status & status::NEEDS_RESET != 0 {
            return;
        }
        if !self.queues.get(index).is_some_and(|q| q.ready) {
            return;
        }
        match self.dev.process(index, &mut self.queues, &self.mem) {
            Ok(true) if self.queues[index].wants_interrupt(&self.mem) => self.isr |= isr::USED,
            Ok(_) => {}
            Err(e) => {
                self.last_error = Some(e);
                self.status |= status::NEEDS_RESET;
                self.isr |= isr::CONFIG;
            }
        }
        self.irq.set(self.isr != 0);
    }
}

impl<D: VirtioDevice> MmioDevice for VirtioMmio<D> {
    fn read(&mut self, offset: u64, size: u8) -> u64 {
        if offset >= CONFIG {
            return self.dev.read_config(offset - CONFIG, size);
        }
        let q = self.queues.get(self.regs.queue_sel as usize).cloned();
        read_sub32(offset, size, |o| match o {
            MAGIC_VALUE => MAGIC,
            VERSION_REG => VERSION,
            DEVICE_ID => self.dev.device_id(),
            VENDOR_ID => VENDOR,
            DEVICE_FEATURES => self.regs.device_features(self.offered()),
            QUEUE_NUM_MAX => q.map_or(0, |_| u32::from(MAX_SIZE)),
            QUEUE_READY => q.map_or(0, |q| u32::from(q.ready)),
            INTERRUPT_STATUS => self.isr,
            STATUS => self.status,
            CONFIG_GENERATION => self.config_generation,
            _ => 0,
        })
    }

    fn write(&mut self, offset: u64, size: u8, value: u64) {
        if offset >= CONFIG {
            self.dev.write_config(offset - CONFIG, size, value);
            return;
        }
        let Some(v) = self.regs.write(offset, size, value, self.status) else {
            return;
        };
        match offset {
            QUEUE_NUM => {
                if let Some(q) = self.queue()
                    && !q.ready
                {
                    // Split queues are a power of 2 in size, at most MAX_SIZE.
                    q.size = if v.is_power_of_two() && v <= u64::from(MAX_SIZE) {
                        v as u16
                    } else {
                        0
                    };
                }
            }
            QUEUE_READY => {
                if let Some(q) = self.queue() {
                    q.ready = v & 1 != 0 && q.size != 0;
                }
            }
            QUEUE_DESC_LOW | QUEUE_DESC_HIGH | QUEUE_DRIVER_LOW | QUEUE_DRIVER_HIGH
            | QUEUE_DEVICE_LOW | QUEUE_DEVICE_HIGH => {
                if let Some(q) = self.queue()
                    && !q.ready
                {
                    write_queue_address(offset, v, &mut q.desc, &mut q.avail, &mut q.used);
                }
            }
            QUEUE_NOTIFY => self.kick_queue(v as usize),
            INTERRUPT_ACK => {
                self.isr &= !(v as u32);
                self.irq.set(self.isr != 0);
            }
            STATUS => {
                let v = v as u32;
                if v == 0 {
                    self.reset();
                    return;
                }
                let mut new = v & !status::NEEDS_RESET | (self.status & status::NEEDS_RESET);
                if new & status::FEATURES_OK != 0 && self.status & status::FEATURES_OK == 0 {
                    // Only offered features, and virtio 1.x.
                    let f = self.regs.driver_features;
                    let ok = f & !self.offered() == 0 && f & F_VERSION_1 != 0;
                    if !ok {
                        new &= !status::FEATURES_OK;
                    }
                }
                self.status = new;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests;

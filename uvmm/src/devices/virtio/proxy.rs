//! The virtio proxy (`l4vmm,vdev = "proxy"`): a virtio-mmio device whose
//! device side is another task, reached through the capability the node's
//! `l4vmm,virtiocap` names (e.g. a port of the network switch) with the
//! protocol [`l4_ipc::virtio`].
//!
//! The guest's driver sees an ordinary virtio-mmio device. What it writes
//! to set the device up (features, status, queue addresses) uvmm passes on
//! to the device; the guest RAM dataspace was registered with the device
//! at guest-physical addresses when the proxy was created, so queue and
//! buffer addresses need no translation and uvmm never reads or copies a
//! frame. A queue notification (`QueueNotify`) triggers the device's Irq;
//! the device's Irq is bound to the guest's first vCPU, so that the kernel
//! injects the used-buffer interrupt itself ([`ProxyIrq`]).
//!
//! While the device runs with its interrupt injected by the kernel, uvmm
//! asks the kernel to answer the driver's hottest registers itself
//! ([`FastPath`]): a queue notification then triggers the device's Irq,
//! and the interrupt status and acknowledgement cost no exit either, so a
//! frame passes between the guest and the device without uvmm. Any change
//! of the device's state (reset, a refusal) takes them back first.
//!
//! `l4vmm,no-notify = <q>` names a queue whose notifications the device
//! may suppress while it works on it (L4Re uses it for a network device's
//! transmit queue, 1): uvmm sets [`queue_flags::NO_NOTIFY`] for it.

use core::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use l4_abi::Error;
use l4_ipc::Transport;
use l4_ipc::virtio::{DeviceInfo, QueueConfig, VirtioClient, queue_flags};

use super::{
    CONFIG, CONFIG_GENERATION, DEVICE_FEATURES, DEVICE_ID, INTERRUPT_ACK, INTERRUPT_STATUS, MAGIC,
    MAGIC_VALUE, QUEUE_NOTIFY, QUEUE_NUM, QUEUE_NUM_MAX, QUEUE_READY, STATUS, Selectors, VENDOR_ID,
    VERSION, VERSION_REG, isr, status, write_queue_address,
};
use crate::bus::{IrqLine, MmioDevice, read_sub32};
use crate::warn;

/// The device side as the proxy uses it: the protocol's operations and
/// the kick.
pub trait Port: Send {
    /// `device_info`.
    fn device_info(&mut self) -> Result<DeviceInfo, Error>;
    /// `set_status`: the device's status afterwards.
    fn set_status(&mut self, status: u32) -> Result<u32, Error>;
    /// `set_features`.
    fn set_features(&mut self, features: u64) -> Result<(), Error>;
    /// `config_queue`.
    fn config_queue(&mut self, index: u32, q: QueueConfig) -> Result<(), Error>;
    /// `read_config`.
    fn read_config(&mut self, offset: u32, size: u8) -> Result<u64, Error>;
    /// `write_config`.
    fn write_config(&mut self, offset: u32, size: u8, value: u64) -> Result<(), Error>;
    /// Triggers the device's Irq (the driver made buffers available).
    fn kick(&self);
    /// Has the kernel answer `regs` itself (`Some`), or stops it (`None`);
    /// returns whether it answers them now. Ports that cannot say `false`.
    fn fast_path(&mut self, regs: Option<FastPath>) -> bool {
        let _ = regs;
        false
    }
}

/// The registers of a running proxy the kernel can answer itself, at
/// their guest-physical addresses: a write of `QueueNotify` triggers the
/// device's Irq (what [`Port::kick`] does), `InterruptStatus` reads
/// `status_value`, and writes of `InterruptACK` are dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FastPath {
    /// `QueueNotify`.
    pub notify: u64,
    /// `InterruptStatus`.
    pub status: u64,
    /// What `InterruptStatus` reads while the device runs.
    pub status_value: u32,
    /// `InterruptACK`.
    pub ack: u64,
}

/// How a [`Remote`] has the kernel answer a [`FastPath`] (`Some`) or stop
/// (`None`); whether it answers them afterwards.
pub type FastPathFn = Box<dyn FnMut(Option<FastPath>) -> bool + Send>;

/// A device reached through a [`VirtioClient`], kicked by `kick`.
pub struct Remote<T> {
    /// The protocol client.
    pub client: VirtioClient<T>,
    /// Triggers the device's Irq.
    pub kick: Box<dyn Fn() + Send>,
    /// The kernel's answers to the hot registers, if it can give them.
    pub fast_path: Option<FastPathFn>,
}

impl<T: Transport + Send> Port for Remote<T> {
    fn device_info(&mut self) -> Result<DeviceInfo, Error> {
        self.client.device_info()
    }

    fn set_status(&mut self, status: u32) -> Result<u32, Error> {
        self.client.set_status(status)
    }

    fn set_features(&mut self, features: u64) -> Result<(), Error> {
        self.client.set_features(features)
    }

    fn config_queue(&mut self, index: u32, q: QueueConfig) -> Result<(), Error> {
        self.client.config_queue(index, q)
    }

    fn read_config(&mut self, offset: u32, size: u8) -> Result<u64, Error> {
        self.client.read_config(offset, size)
    }

    fn write_config(&mut self, offset: u32, size: u8, value: u64) -> Result<(), Error> {
        self.client.write_config(offset, size, value)
    }

    fn kick(&self) {
        (self.kick)();
    }

    fn fast_path(&mut self, regs: Option<FastPath>) -> bool {
        self.fast_path.as_mut().is_some_and(|f| f(regs))
    }
}

/// The proxy's interrupt: the interrupt status register and how the
/// guest is interrupted.
///
/// Either through uvmm's GIC: the device's notifications reach a uvmm
/// thread, which calls [`ProxyIrq::raise`], and the line stays high until
/// the driver acknowledges. Or injected by the kernel
/// ([`ProxyIrq::inject_directly`]): the device's notification Irq is
/// bound to the vCPU, so a notification interrupts the guest without
/// passing through uvmm at all. uvmm then does not see the notifications:
/// the used-buffer bit reads as set while the device runs (the driver
/// finds out from the used rings, which it looks at anyway), and a
/// configuration change triggers the same Irq.
pub struct ProxyIrq {
    line: IrqLine,
    status: AtomicU32,
    injected: OnceLock<Box<dyn Fn() + Send + Sync>>,
}

impl fmt::Debug for ProxyIrq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyIrq")
            .field("line", &self.line)
            .field("status", &self.status)
            .field("injected", &self.injected.get().is_some())
            .finish()
    }
}

impl ProxyIrq {
    /// The interrupt on `line`.
    pub fn new(line: IrqLine) -> ProxyIrq {
        ProxyIrq {
            line,
            status: AtomicU32::new(0),
            injected: OnceLock::new(),
        }
    }

    /// The guest's interrupt number.
    pub fn intid(&self) -> u32 {
        self.line.intid()
    }

    /// From now on the kernel injects the interrupt (the device's
    /// notification Irq is bound to a vCPU); `trigger` triggers that Irq.
    pub fn inject_directly(&self, trigger: Box<dyn Fn() + Send + Sync>) {
        // Only the first binding counts.
        let _ = self.injected.set(trigger);
    }

    /// Whether the kernel injects the interrupt.
    pub fn injected(&self) -> bool {
        self.injected.get().is_some()
    }

    /// The device notified the driver: used buffers.
    pub fn raise(&self) {
        self.set(isr::USED);
    }

    /// The interrupt status register of a device that runs or not.
    pub fn status(&self, running: bool) -> u32 {
        let used = if running && self.injected() {
            isr::USED
        } else {
            0
        };
        self.status.load(Ordering::Acquire) | used
    }

    fn set(&self, bits: u32) {
        self.status.fetch_or(bits, Ordering::AcqRel);
        match self.injected.get() {
            Some(trigger) => trigger(),
            None => self.line.set(true),
        }
    }

    fn ack(&self, bits: u32) {
        let left = self.status.fetch_and(!bits, Ordering::AcqRel) & !bits;
        if !self.injected() {
            self.line.set(left != 0);
        }
    }

    fn clear(&self) {
        self.status.store(0, Ordering::Release);
        if !self.injected() {
            self.line.set(false);
        }
    }
}

/// One queue as the driver sets it up.
#[derive(Clone, Copy, Debug, Default)]
struct QueueSetup {
    cfg: QueueConfig,
    ready: bool,
}

/// The virtio-mmio registers of a device served by a [`Port`].
pub struct ProxyMmio {
    port: Box<dyn Port>,
    info: DeviceInfo,
    irq: Arc<ProxyIrq>,
    no_notify: Option<u32>,
    name: String,
    queues: Vec<QueueSetup>,
    regs: Selectors,
    status: u32,
    /// Guest-physical address of the register window.
    base: u64,
    /// The kernel answers the [`FastPath`] registers now.
    fast: bool,
}

impl ProxyMmio {
    /// The proxy of `port` (for the device-tree node `name`) with its
    /// registers at guest-physical `base`, interrupting through `irq`;
    /// `no_notify` as the node's `l4vmm,no-notify`. [`Error`] if the
    /// device does not describe itself.
    pub fn new(
        name: &str,
        mut port: Box<dyn Port>,
        irq: Arc<ProxyIrq>,
        no_notify: Option<u32>,
        base: u64,
    ) -> Result<ProxyMmio, Error> {
        let info = port.device_info()?;
        let queues = usize::try_from(info.num_queues)
            .ok()
            .filter(|&n| n <= 64)
            .ok_or(Error::Inval)?;
        Ok(ProxyMmio {
            port,
            info,
            irq,
            no_notify,
            name: name.to_string(),
            queues: vec![QueueSetup::default(); queues],
            regs: Selectors::default(),
            status: 0,
            base,
            fast: false,
        })
    }

    /// Gives the [`FastPath`] registers to the kernel while the device
    /// runs with an injected interrupt and only used buffers to report,
    /// and takes them back otherwise.
    fn update_fast_path(&mut self) {
        let running = self.status & (status::DRIVER_OK | status::NEEDS_RESET) == status::DRIVER_OK;
        let status = self.irq.status(running);
        let want = running && self.irq.injected() && status == isr::USED;
        if want == self.fast {
            return;
        }
        let regs = FastPath {
            notify: self.base + QUEUE_NOTIFY,
            status: self.base + INTERRUPT_STATUS,
            status_value: status,
            ack: self.base + INTERRUPT_ACK,
        };
        self.fast = self.port.fast_path(want.then_some(regs));
    }

    /// Whether the kernel answers the [`FastPath`] registers now.
    pub fn fast_path(&self) -> bool {
        self.fast
    }

    /// What the device is.
    pub fn info(&self) -> &DeviceInfo {
        &self.info
    }

    fn queue(&mut self) -> Option<&mut QueueSetup> {
        self.queues.get_mut(self.regs.queue_sel as usize)
    }

    /// The device refused something: it needs a reset.
    fn failed(&mut self, what: &str, e: Error) {
        warn!("dev", "{}: the device refused {what}: {e:?}", self.name);
        self.status |= status::NEEDS_RESET;
        // The driver must read the configuration bit from uvmm.
        self.update_fast_path();
        self.irq.set(isr::CONFIG);
    }

    fn reset(&mut self) {
        if let Err(e) = self.port.set_status(0) {
            warn!("dev", "{}: the device refused the reset: {e:?}", self.name);
        }
        self.queues.fill(QueueSetup::default());
        self.regs.driver_features = 0;
        self.status = 0;
        self.update_fast_path();
        self.irq.clear();
    }

    fn queue_ready(&mut self, ready: bool) {
        let index = self.regs.queue_sel;
        let flags = if self.no_notify == Some(index) {
            queue_flags::NO_NOTIFY
        } else {
            0
        };
        let Some(q) = self.queue() else {
            return;
        };
        if q.ready == ready || (ready && q.cfg.size == 0) {
            return;
        }
        let cfg = if ready {
            QueueConfig { flags, ..q.cfg }
        } else {
            QueueConfig::default()
        };
        match self.port.config_queue(index, cfg) {
            Ok(()) => {
                if let Some(q) = self.queue() {
                    q.ready = ready;
                }
            }
            Err(e) => self.failed(&format!("queue {index}"), e),
        }
    }

    fn write_status(&mut self, v: u32) {
        if v == 0 {
            self.reset();
            return;
        }
        if v & status::FEATURES_OK != 0
            && self.status & status::FEATURES_OK == 0
            && let Err(e) = self.port.set_features(self.regs.driver_features)
        {
            warn!(
                "dev",
                "{}: features {:#x} refused: {e:?}", self.name, self.regs.driver_features
            );
            // Without FEATURES_OK: the driver sees the refusal.
            self.status = v & !status::FEATURES_OK;
            return;
        }
        match self.port.set_status(v) {
            Ok(s) => {
                self.status = s;
                self.update_fast_path();
            }
            Err(e) => self.failed("the status", e),
        }
    }
}

impl MmioDevice for ProxyMmio {
    fn read(&mut self, offset: u64, size: u8) -> u64 {
        if offset >= CONFIG {
            let Ok(off) = u32::try_from(offset - CONFIG) else {
                return 0;
            };
            return self.port.read_config(off, size).unwrap_or(0);
        }
        let q = self.queues.get(self.regs.queue_sel as usize).copied();
        let features = self.regs.device_features(self.info.features);
        read_sub32(offset, size, |o| match o {
            MAGIC_VALUE => MAGIC,
            VERSION_REG => VERSION,
            DEVICE_ID => self.info.device_id,
            VENDOR_ID => self.info.vendor_id,
            DEVICE_FEATURES => features,
            QUEUE_NUM_MAX => q.map_or(0, |_| u32::from(self.info.queue_max)),
            QUEUE_READY => q.map_or(0, |q| u32::from(q.ready)),
            INTERRUPT_STATUS => self.irq.status(self.status & status::DRIVER_OK != 0),
            STATUS => self.status,
            CONFIG_GENERATION => 0,
            _ => 0,
        })
    }

    fn write(&mut self, offset: u64, size: u8, value: u64) {
        if offset >= CONFIG {
            if let Ok(off) = u32::try_from(offset - CONFIG)
                && let Err(e) = self.port.write_config(off, size, value)
            {
                warn!(
                    "dev",
                    "{}: configuration write at {off:#x} refused: {e:?}", self.name
                );
            }
            return;
        }
        let Some(v) = self.regs.write(offset, size, value, self.status) else {
            return;
        };
        match offset {
            QUEUE_NUM => {
                let max = self.info.queue_max;
                if let Some(q) = self.queue()
                    && !q.ready
                {
                    q.cfg.size = u16::try_from(v).ok().filter(|&s| s <= max).unwrap_or(0);
                }
            }
            QUEUE_READY => self.queue_ready(v & 1 != 0),
            QUEUE_NOTIFY if self.status & status::DRIVER_OK != 0 => self.port.kick(),
            INTERRUPT_ACK => self.irq.ack(v as u32),
            STATUS => self.write_status(v as u32),
            _ => {
                if let Some(q) = self.queue()
                    && !q.ready
                {
                    let c = &mut q.cfg;
                    write_queue_address(offset, v, &mut c.desc, &mut c.avail, &mut c.used);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;

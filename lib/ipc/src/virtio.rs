//! The virtio device protocol over shared memory (L4Re's "l4virtio"): how
//! a driver (uvmm's virtio proxy, for a guest) uses a virtio device served
//! by another task (a port of the network switch `l4vio_net_p2p`).
//!
//! The virtqueues and buffers stay in the driver's memory (for uvmm: guest
//! RAM). The driver shares that memory with the device as dataspaces, each
//! at a *device address* (for uvmm: the guest-physical address), and every
//! address in a queue or descriptor is such a device address, which the
//! device translates through the dataspaces registered with it. Control
//! (features, status, queue setup, configuration space) goes through IPC;
//! notifications go through two Irq objects, one each way, so that the
//! data path needs no IPC round trip:
//!
//! 1. `register_iface(guest_irq)`: the driver hands over the Irq the device
//!    triggers when it has used buffers (the *driver notification*) and
//!    gets the Irq it triggers when it made buffers available (the *device
//!    notification*, "kick");
//! 2. `register_ds(ds, base, offset, size)` for each piece of shared
//!    memory: bytes `offset .. offset + size` of `ds` at device addresses
//!    `base .. base + size`;
//! 3. `device_info`, then `set_status(ACKNOWLEDGE | DRIVER)`,
//!    `set_features`, `set_status(.. | FEATURES_OK)` (the reply says
//!    whether the device accepted them), `config_queue` for every queue,
//!    `set_status(.. | DRIVER_OK)`; from then on the device serves the
//!    queues whenever it is kicked;
//! 4. `set_status(0)` resets the device (queues off, features cleared;
//!    the registered memory and the Irqs stay).
//!
//! | operation         | opcode | arguments                     | result                    |
//! |-------------------|--------|-------------------------------|---------------------------|
//! | `set_status`      | 0      | status                        | the device's status after |
//! | `config_queue`    | 1      | queue, [`QueueConfig`]        |                           |
//! | `register_iface`  | 2      | the driver notification Irq   | the device's kick Irq     |
//! | `register_ds`     | 3      | dataspace, base, offset, size |                           |
//! | `device_info`     | 0x10   |                               | [`DeviceInfo`]            |
//! | `set_features`    | 0x11   | driver features               |                           |
//! | `read_config`     | 0x12   | offset, size (1, 2, 4, 8)     | the value                 |
//! | `write_config`    | 0x13   | offset, size, value           |                           |
//!
//! The protocol id and the first four opcodes are L4Re's
//! (`L4VIRTIO_PROTOCOL`, `L4VIRTIO_OP_SET_STATUS` ...); L4Re keeps the
//! rest of the device's registers in a shared configuration page, this
//! protocol asks for them with the operations from 0x10 on.
//!
//! Errors: [`Error::Inval`] for a queue index, queue size, alignment or
//! configuration access the device does not have, features it did not
//! offer, or a `register_ds` range that wraps or leaves the dataspace;
//! [`Error::Range`] for rings outside the registered memory;
//! [`Error::Perm`] for a change the status no longer allows (features
//! after `FEATURES_OK`, a queue while `DRIVER_OK`); [`Error::Exist`] for
//! registered memory that overlaps earlier registered memory;
//! [`Error::NoSpc`] when the device takes no more dataspaces.

use l4_abi::Error;

use crate::codec::{CapArg, RcvCap};

/// The protocol id (L4Re's `L4VIRTIO_PROTOCOL`); also what a port
/// factory's `create` is asked for (`create(0, ...)`).
pub const VIRTIO_PROTO: i64 = 0;

/// `VIRTIO_F_VERSION_1`: the device and driver speak virtio 1.x.
pub const F_VERSION_1: u64 = 1 << 32;

/// Device status bits (virtio 1.x, 2.1).
pub mod status {
    /// The driver found the device.
    pub const ACKNOWLEDGE: u32 = 1;
    /// The driver knows how to drive it.
    pub const DRIVER: u32 = 2;
    /// The driver is ready.
    pub const DRIVER_OK: u32 = 4;
    /// Feature negotiation is done.
    pub const FEATURES_OK: u32 = 8;
    /// The device hit an error and must be reset.
    pub const NEEDS_RESET: u32 = 64;
    /// The driver gave up.
    pub const FAILED: u32 = 128;
}

/// What a device is, as `device_info` describes it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceInfo {
    /// The virtio device id (1 = network).
    pub device_id: u32,
    /// The vendor id.
    pub vendor_id: u32,
    /// The features the device offers (always with [`F_VERSION_1`]).
    pub features: u64,
    /// How many queues.
    pub num_queues: u32,
    /// The largest size of each queue.
    pub queue_max: u16,
    /// The size of the device's configuration space in bytes.
    pub config_size: u32,
}

crate::arg_struct!(DeviceInfo {
    device_id,
    vendor_id,
    features,
    num_queues,
    queue_max,
    config_size,
});

/// Flags of a [`QueueConfig`].
pub mod queue_flags {
    /// The device suppresses notifications for this queue while it works
    /// on it (it sets `VIRTQ_USED_F_NO_NOTIFY` until it has emptied the
    /// queue): the driver kicks only a device that went idle. uvmm sets
    /// it for the queue a proxy node's `l4vmm,no-notify` names.
    pub const NO_NOTIFY: u32 = 1;
    /// Every flag this protocol knows.
    pub const ALL: u32 = NO_NOTIFY;
}

/// A split virtqueue's setup: its size and the device addresses of its
/// three parts. Size 0 switches the queue off.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueConfig {
    /// Entries (a power of two up to the device's `queue_max`), 0 = off.
    pub size: u16,
    /// The descriptor table (16-byte aligned).
    pub desc: u64,
    /// The available (driver) ring (2-byte aligned).
    pub avail: u64,
    /// The used (device) ring (4-byte aligned).
    pub used: u64,
    /// [`queue_flags`].
    pub flags: u32,
}

impl QueueConfig {
    /// The bytes of the descriptor table, available and used rings
    /// (virtio 1.x, 2.7), each with its device address: what must lie in
    /// registered memory.
    pub fn areas(&self) -> [(u64, u64); 3] {
        let n = u64::from(self.size);
        [
            (self.desc, 16 * n),
            (self.avail, 6 + 2 * n),
            (self.used, 6 + 8 * n),
        ]
    }

    /// Checks size, alignment and flags against a device whose queues
    /// have at most `max` entries: [`Error::Inval`] if wrong.
    pub fn check(&self, max: u16) -> Result<(), Error> {
        if self.size == 0 {
            return Ok(());
        }
        let aligned = self.desc.is_multiple_of(16)
            && self.avail.is_multiple_of(2)
            && self.used.is_multiple_of(4);
        if !self.size.is_power_of_two()
            || self.size > max
            || !aligned
            || self.flags & !queue_flags::ALL != 0
        {
            return Err(Error::Inval);
        }
        Ok(())
    }
}

crate::arg_struct!(QueueConfig {
    size,
    desc,
    avail,
    used,
    flags,
});

crate::protocol! {
    /// A virtio device served over shared memory (L4Re's
    /// `L4virtio::Device`), see the [module](self).
    pub protocol Virtio = VIRTIO_PROTO;
    client VirtioClient;
    server VirtioServer;

    /// Sets the device status ([`status`]); 0 resets the device. Returns
    /// the status the device has afterwards: without `FEATURES_OK` when it
    /// refused the features, with `NEEDS_RESET` after an error.
    fn set_status(status: u32) -> u32 = 0;
    /// Sets up queue `index` (size 0 switches it off).
    fn config_queue(index: u32, queue: QueueConfig) -> () = 1;
    /// Registers the Irq the device triggers for the driver; returns the
    /// Irq the driver triggers for the device (lands in `rcv`).
    fn register_iface(guest_irq: CapArg) -> RcvCap = 2;
    /// Shares bytes `offset .. offset + size` of dataspace `ds` with the
    /// device at device addresses `base .. base + size`.
    fn register_ds(ds: CapArg, base: u64, offset: u64, size: u64) -> () = 3;
    /// What the device is.
    fn device_info() -> DeviceInfo = 0x10;
    /// The features the driver takes (a subset of those offered, with
    /// [`F_VERSION_1`]); before `FEATURES_OK`.
    fn set_features(features: u64) -> () = 0x11;
    /// Reads `size` bytes (1, 2, 4 or 8) of the configuration space at
    /// `offset` (little-endian).
    fn read_config(offset: u32, size: u8) -> u64 = 0x12;
    /// Writes `size` bytes of the configuration space at `offset`.
    fn write_config(offset: u32, size: u8, value: u64) -> () = 0x13;
}

/// What a `set_status` asks the device to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusChange {
    /// Status 0: reset the device.
    Reset,
    /// The driver just set `DRIVER_OK`: start serving the queues.
    Start,
    /// Nothing for the queues to do.
    Keep,
}

/// The device side's feature negotiation and status (virtio 1.x, 3.1):
/// what every device behind this protocol does the same way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Negotiation {
    offered: u64,
    driver: u64,
    status: u32,
}

impl Negotiation {
    /// A device offering `offered` (plus [`F_VERSION_1`]).
    pub const fn new(offered: u64) -> Negotiation {
        Negotiation {
            offered: offered | F_VERSION_1,
            driver: 0,
            status: 0,
        }
    }

    /// The features offered.
    pub const fn offered(&self) -> u64 {
        self.offered
    }

    /// The features the driver took (valid once `FEATURES_OK`).
    pub const fn features(&self) -> u64 {
        self.driver
    }

    /// Whether the driver took `f`.
    pub const fn has(&self, f: u64) -> bool {
        self.driver & f == f
    }

    /// The status.
    pub const fn status(&self) -> u32 {
        self.status
    }

    /// Whether the device is running (`DRIVER_OK`, no `NEEDS_RESET`).
    pub const fn running(&self) -> bool {
        self.status & status::DRIVER_OK != 0 && self.status & status::NEEDS_RESET == 0
    }

    /// Whether queues may still be set up (before `DRIVER_OK`).
    pub const fn configurable(&self) -> bool {
        self.status & status::DRIVER_OK == 0
    }

    /// The driver's features: [`Error::Perm`] after `FEATURES_OK`,
    /// [`Error::Inval`] for features not offered.
    pub fn set_features(&mut self, f: u64) -> Result<(), Error> {
        if self.status & status::FEATURES_OK != 0 {
            return Err(Error::Perm);
        }
        if f & !self.offered != 0 {
            return Err(Error::Inval);
        }
        self.driver = f;
        Ok(())
    }

    /// A status write: `FEATURES_OK` is kept only for acceptable
    /// features (virtio 1.x required), `NEEDS_RESET` is the device's
    /// and stays, and bits once set cannot be taken back except by a
    /// reset.
    pub fn set_status(&mut self, s: u32) -> StatusChange {
        if s == 0 {
            *self = Negotiation::new(self.offered);
            return StatusChange::Reset;
        }
        let mut new = (s & !status::NEEDS_RESET) | self.status;
        if new & status::FEATURES_OK != 0
            && self.status & status::FEATURES_OK == 0
            && self.driver & F_VERSION_1 == 0
        {
            new &= !status::FEATURES_OK;
        }
        if new & status::DRIVER_OK != 0 && new & status::FEATURES_OK == 0 {
            new &= !status::DRIVER_OK;
        }
        let started = new & status::DRIVER_OK != 0 && self.status & status::DRIVER_OK == 0;
        self.status = new;
        if started && self.running() {
            StatusChange::Start
        } else {
            StatusChange::Keep
        }
    }

    /// The device hit an error: `NEEDS_RESET` until the driver resets it.
    pub fn fail(&mut self) {
        self.status |= status::NEEDS_RESET;
    }
}

/// Reads `size` bytes (1, 2, 4 or 8) at `offset` of a configuration
/// space's bytes, little-endian: [`Error::Inval`] for another size or a
/// range outside `space`.
pub fn config_read(space: &[u8], offset: u32, size: u8) -> Result<u64, Error> {
    let bytes = config_range(space.len(), offset, size)?;
    let mut v = [0u8; 8];
    v[..bytes.len()].copy_from_slice(&space[bytes]);
    Ok(u64::from_le_bytes(v))
}

/// The byte range of a configuration access, checked.
pub fn config_range(len: usize, offset: u32, size: u8) -> Result<core::ops::Range<usize>, Error> {
    if !matches!(size, 1 | 2 | 4 | 8) {
        return Err(Error::Inval);
    }
    let start = offset as usize;
    let end = start + usize::from(size);
    if end > len {
        return Err(Error::Inval);
    }
    Ok(start..end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{decode_one, encode_one};
    use crate::server::Ctx;
    use crate::transport::Loopback;
    use crate::{MR_COUNT, Object, ObjectTable, RecvBufs};
    use l4_abi::CapRights;

    #[test]
    fn types_round_trip() {
        let mut mrs = [0u64; MR_COUNT];
        let q = QueueConfig {
            size: 256,
            desc: 0x4000_0000,
            avail: 0x4000_1000,
            used: 0x4000_2000,
            flags: queue_flags::NO_NOTIFY,
        };
        let tag = encode_one(&q, 0, &mut mrs).unwrap();
        assert_eq!(decode_one::<QueueConfig>(tag, &mrs), Ok(q));
        // A size that does not fit 16 bits is refused.
        mrs[0] = 0x1_0000;
        assert_eq!(decode_one::<QueueConfig>(tag, &mrs), Err(Error::Inval));
        let d = DeviceInfo {
            device_id: 1,
            vendor_id: 0x44,
            features: F_VERSION_1 | 0x20,
            num_queues: 2,
            queue_max: 256,
            config_size: 12,
        };
        let tag = encode_one(&d, 0, &mut mrs).unwrap();
        assert_eq!(decode_one::<DeviceInfo>(tag, &mrs), Ok(d));
    }

    #[test]
    fn queue_checks() {
        let q = QueueConfig {
            size: 8,
            desc: 0x1000,
            avail: 0x2000,
            used: 0x3000,
            flags: 0,
        };
        assert_eq!(q.check(256), Ok(()));
        assert_eq!(
            q.areas(),
            [(0x1000, 128), (0x2000, 6 + 16), (0x3000, 6 + 64)]
        );
        for bad in [
            QueueConfig { size: 6, ..q },
            QueueConfig { size: 512, ..q },
            QueueConfig { desc: 0x1008, ..q },
            QueueConfig { avail: 0x2001, ..q },
            QueueConfig { used: 0x3002, ..q },
            QueueConfig { flags: 2, ..q },
        ] {
            assert_eq!(bad.check(256), Err(Error::Inval), "{bad:?}");
        }
        // Off: anything goes.
        assert_eq!(
            QueueConfig {
                size: 0,
                desc: 3,
                ..q
            }
            .check(256),
            Ok(())
        );
    }

    #[test]
    fn negotiation() {
        let mut n = Negotiation::new(0x20);
        assert_eq!(n.offered(), 0x20 | F_VERSION_1);
        assert_eq!(
            n.set_status(status::ACKNOWLEDGE | status::DRIVER),
            StatusChange::Keep
        );
        assert_eq!(n.set_features(0x40 | F_VERSION_1), Err(Error::Inval));
        // Legacy drivers (no VERSION_1) do not get FEATURES_OK.
        n.set_features(0x20).unwrap();
        n.set_status(status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK);
        assert_eq!(n.status() & status::FEATURES_OK, 0);
        // DRIVER_OK needs FEATURES_OK.
        n.set_status(status::ACKNOWLEDGE | status::DRIVER | status::DRIVER_OK);
        assert!(!n.running());
        n.set_features(0x20 | F_VERSION_1).unwrap();
        let s = status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK;
        assert_eq!(n.set_status(s), StatusChange::Keep);
        assert_eq!(n.status(), s);
        assert!(n.has(0x20));
        assert_eq!(n.set_features(0), Err(Error::Perm));
        assert!(n.configurable());
        assert_eq!(n.set_status(s | status::DRIVER_OK), StatusChange::Start);
        assert!(n.running() && !n.configurable());
        assert_eq!(n.set_status(s | status::DRIVER_OK), StatusChange::Keep);
        // The driver cannot clear NEEDS_RESET, only reset.
        n.fail();
        assert!(!n.running());
        n.set_status(s | status::DRIVER_OK);
        assert_ne!(n.status() & status::NEEDS_RESET, 0);
        assert_eq!(n.set_status(0), StatusChange::Reset);
        assert_eq!((n.status(), n.features()), (0, 0));
    }

    #[test]
    fn config_access() {
        let space = [1u8, 2, 3, 4, 5, 6, 7, 8, 9];
        assert_eq!(config_read(&space, 0, 1), Ok(1));
        assert_eq!(config_read(&space, 4, 2), Ok(0x0605));
        assert_eq!(config_read(&space, 1, 8), Ok(0x0908_0706_0504_0302));
        assert_eq!(config_read(&space, 6, 4), Err(Error::Inval));
        assert_eq!(config_read(&space, 0, 3), Err(Error::Inval));
        assert_eq!(config_read(&space, u32::MAX, 8), Err(Error::Inval));
    }

    /// A device for the round trip: memory regions, two queues, the Irqs.
    #[derive(Default)]
    struct Fake {
        n: Negotiation,
        regions: [(u64, u64); 2],
        nregions: usize,
        queues: [QueueConfig; 2],
        guest_irq: Option<u64>,
    }

    impl Fake {
        fn inside(&self, (a, len): (u64, u64)) -> bool {
            self.regions[..self.nregions]
                .iter()
                .any(|&(b, s)| a >= b && a.checked_add(len).is_some_and(|e| e <= b + s))
        }
    }

    impl VirtioServer for Fake {
        fn set_status(&mut self, _: &Ctx, s: u32) -> Result<u32, Error> {
            if self.n.set_status(s) == StatusChange::Reset {
                self.queues = Default::default();
            }
            Ok(self.n.status())
        }

        fn config_queue(&mut self, _: &Ctx, index: u32, q: QueueConfig) -> Result<(), Error> {
            if index as usize >= self.queues.len() {
                return Err(Error::Inval);
            }
            q.check(16)?;
            if !self.n.configurable() {
                return Err(Error::Perm);
            }
            if q.size != 0 && !q.areas().iter().all(|&a| self.inside(a)) {
                return Err(Error::Range);
            }
            self.queues[index as usize] = q;
            Ok(())
        }

        fn register_iface(&mut self, _: &Ctx, irq: CapArg) -> Result<RcvCap, Error> {
            self.guest_irq = Some(irq.index);
            Ok(RcvCap::new(0x77, CapRights::RWS))
        }

        fn register_ds(
            &mut self,
            _: &Ctx,
            _ds: CapArg,
            base: u64,
            _offset: u64,
            size: u64,
        ) -> Result<(), Error> {
            base.checked_add(size).ok_or(Error::Inval)?;
            if self.inside((base, 1)) {
                return Err(Error::Exist);
            }
            let slot = self.regions.get_mut(self.nregions).ok_or(Error::NoSpc)?;
            *slot = (base, size);
            self.nregions += 1;
            Ok(())
        }

        fn device_info(&mut self, _: &Ctx) -> Result<DeviceInfo, Error> {
            Ok(DeviceInfo {
                device_id: 1,
                vendor_id: 0,
                features: self.n.offered(),
                num_queues: 2,
                queue_max: 16,
                config_size: 6,
            })
        }

        fn set_features(&mut self, _: &Ctx, f: u64) -> Result<(), Error> {
            self.n.set_features(f)
        }

        fn read_config(&mut self, _: &Ctx, offset: u32, size: u8) -> Result<u64, Error> {
            config_read(&[2, 0, 0, 0, 0, 1], offset, size)
        }

        fn write_config(&mut self, _: &Ctx, _: u32, _: u8, _: u64) -> Result<(), Error> {
            Err(Error::Perm)
        }
    }

    #[test]
    fn driver_session() {
        let mut dev = Object::<Virtio, _>::new(Fake {
            n: Negotiation::new(0x20),
            ..Fake::default()
        });
        let mut objects = ObjectTable::<1>::new();
        objects.register(0x40, &mut dev).unwrap();
        let mut lb = Loopback::new(objects);
        lb.server_rcv = RecvBufs::cap_slot(0x500);
        let mut c = VirtioClient::with_transport(0x40, lb);
        c.rcv = RecvBufs::cap_slot(0x600);
        let irq = c.register_iface(CapArg::new(9, CapRights::RW)).unwrap();
        assert_eq!(irq.index(), 0x600, "the kick Irq lands in the slot");
        let ds = CapArg::new(3, CapRights::RW);
        c.register_ds(ds, 0x4000_0000, 0, 0x1_0000).unwrap();
        assert_eq!(c.register_ds(ds, 0x4000_8000, 0, 0x1000), Err(Error::Exist));
        assert_eq!(c.register_ds(ds, u64::MAX, 0, 2), Err(Error::Inval));
        let info = c.device_info().unwrap();
        assert_eq!((info.device_id, info.num_queues), (1, 2));
        assert_eq!(c.read_config(4, 2), Ok(0x100));
        assert_eq!(c.read_config(4, 4), Err(Error::Inval));
        let s = status::ACKNOWLEDGE | status::DRIVER;
        assert_eq!(c.set_status(s), Ok(s));
        assert_eq!(c.set_features(0x40), Err(Error::Inval));
        c.set_features(info.features).unwrap();
        assert_eq!(
            c.set_status(s | status::FEATURES_OK),
            Ok(s | status::FEATURES_OK)
        );
        let q = QueueConfig {
            size: 16,
            desc: 0x4000_0000,
            avail: 0x4000_1000,
            used: 0x4000_2000,
            flags: 0,
        };
        c.config_queue(0, q).unwrap();
        assert_eq!(c.config_queue(2, q), Err(Error::Inval), "no queue 2");
        let outside = QueueConfig {
            used: 0x4000_fff0,
            ..q
        };
        assert_eq!(c.config_queue(1, outside), Err(Error::Range));
        let s = s | status::FEATURES_OK | status::DRIVER_OK;
        assert_eq!(c.set_status(s), Ok(s));
        assert_eq!(c.config_queue(1, q), Err(Error::Perm));
        assert_eq!(c.set_status(0), Ok(0));
        c.config_queue(1, q).unwrap();
    }
}

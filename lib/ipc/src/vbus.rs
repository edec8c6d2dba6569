//! The virtual bus protocol: how a client of io (a driver, uvmm) sees the
//! platform devices io gave its bus.
//!
//! io serves one IPC gate per virtual bus (the capability named like the
//! bus, `vm1_hw`, handed to the client as its `vbus`). The devices of a bus
//! are numbered `0 .. count` in the order of the bus's configuration
//! (children right after their parent); every operation names a device by
//! that index and a resource by its index in the device's list. A client
//! reaches only the devices of its own bus: the index space is the bus's.
//!
//! | operation         | opcode | arguments            | result                                   |
//! |-------------------|--------|----------------------|------------------------------------------|
//! | `info`            | 0      |                      | number of devices                        |
//! | `device`          | 1      | device               | [`DeviceInfo`]                            |
//! | `compatible`      | 2      | device, n            | the n-th compatible string               |
//! | `is_compatible`   | 3      | device, cid          | whether hid or a compatible string is `cid` |
//! | `find`            | 4      | cid, from            | first device `>= from` matching `cid`    |
//! | `resource`        | 5      | device, n            | [`Resource`]                              |
//! | `mmio`            | 6      | device, n            | a Dataspace of the MMIO resource n       |
//! | `irq`             | 7      | device, n            | an Irq bound to the interrupt resource n |
//!
//! Errors: [`Error::NoEnt`] for a device, resource or string index past
//! the end and for a `find` without a match; [`Error::Inval`] for `mmio`
//! of a resource that is not MMIO or `irq` of one that is not an
//! interrupt; [`Error::Busy`] for an interrupt the platform could not
//! bind. The `mmio` dataspace maps the device's pages uncached
//! ([`crate::protocols::Dataspace`], offset 0 = the resource's first
//! byte); the `irq` capability is a kernel Irq with its line's trigger mode
//! set, which the client binds to its thread and unmasks.

use l4_abi::Error;

use crate::codec::{Arg, Reader, Str, Writer};
use crate::transport::Transport;

/// The protocol id (request label) of [`Vbus`].
pub const VBUS_PROTO: i64 = 0x4010;
/// Longest device name in bytes.
pub const NAME_MAX: usize = 64;
/// Longest hid or compatible string in bytes.
pub const CID_MAX: usize = 64;
/// Longest resource id (`reg0`, `irq0`) in bytes.
pub const RES_ID_MAX: usize = 16;

crate::arg_enum! {
    /// The kind of a resource (L4Re's `l4vbus_resource_type_t` values).
    pub enum ResourceKind {
        /// An interrupt line (`Io.Res.irq`).
        Irq = 0,
        /// A memory-mapped I/O range (`Io.Res.mmio`).
        Mmio = 1,
    }
}

/// Resource flags.
pub mod res_flags {
    /// The interrupt trigger mode (an interrupt's flags are its mode,
    /// `l4_abi::proto::icu::mode`, as io's `Io.Resource.Irq_type_*`).
    pub const IRQ_MODE_MASK: u64 = 0xf;
    /// The MMIO range may be cached (`Io.Res.mmio(s, e, flags)`); device
    /// memory is uncached otherwise.
    pub const MMIO_CACHEABLE: u64 = 0x100;
    /// The MMIO range is prefetchable.
    pub const MMIO_PREFETCH: u64 = 0x200;
}

/// A device of a virtual bus, as [`Vbus`] `device` describes it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeviceInfo {
    /// The device's name on the bus (`PL031` in `PL031 = wrap(...)`).
    pub name: Str<NAME_MAX>,
    /// Its hardware id (`Property.hid`), empty if it has none.
    pub hid: Str<CID_MAX>,
    /// The number of its compatible strings.
    pub compatibles: u32,
    /// The number of its resources.
    pub resources: u32,
    /// The index of its parent device on the bus, `None` for a device
    /// directly on the bus.
    pub parent: Option<u32>,
}

crate::arg_struct!(DeviceInfo {
    name,
    hid,
    compatibles,
    resources,
    parent,
});

/// A resource of a device, as [`Vbus`] `resource` describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resource {
    /// What it is.
    pub kind: ResourceKind,
    /// Its flags ([`res_flags`]).
    pub flags: u64,
    /// First address or interrupt number.
    pub start: u64,
    /// Last address or interrupt number (inclusive).
    pub end: u64,
    /// Its name in the device (`reg0` in `Resource.reg0 = ...`).
    pub id: Str<RES_ID_MAX>,
}

impl Resource {
    /// The number of bytes or interrupt lines.
    pub const fn len(&self) -> u64 {
        self.end - self.start + 1
    }

    /// Never empty: `end >= start`.
    pub const fn is_empty(&self) -> bool {
        false
    }
}

impl Arg for Resource {
    type View<'a> = Resource;

    fn encode(&self, w: &mut Writer<'_>) -> Result<(), Error> {
        if self.end < self.start {
            return Err(Error::Inval);
        }
        self.kind.encode(w)?;
        w.words(&[self.flags, self.start, self.end])?;
        self.id.encode(w)
    }

    fn encode_view(v: Resource, w: &mut Writer<'_>) -> Result<(), Error> {
        v.encode(w)
    }

    fn decode(r: &mut Reader<'_>) -> Result<Resource, Error> {
        let kind = ResourceKind::decode(r)?;
        let (flags, start, end) = (r.word()?, r.word()?, r.word()?);
        if end < start {
            return Err(Error::Inval);
        }
        Ok(Resource {
            kind,
            flags,
            start,
            end,
            id: Arg::decode(r)?,
        })
    }
}

crate::protocol! {
    /// A virtual bus of io: the platform devices one client may use.
    pub protocol Vbus = VBUS_PROTO;
    client VbusClient;
    server VbusServer;

    /// The number of devices on the bus.
    fn info() -> u32 = 0;
    /// Device `dev`.
    fn device(dev: u32) -> DeviceInfo = 1;
    /// The `n`-th compatible string of device `dev`.
    fn compatible(dev: u32, n: u32) -> Str<CID_MAX> = 2;
    /// Whether device `dev` has the hid or a compatible string `cid`.
    fn is_compatible(dev: u32, cid: Str<CID_MAX>) -> bool = 3;
    /// The first device at index `from` or later whose hid or compatible
    /// string is `cid`.
    fn find(cid: Str<CID_MAX>, from: u32) -> u32 = 4;
    /// The `n`-th resource of device `dev`.
    fn resource(dev: u32, n: u32) -> Resource = 5;
    /// A dataspace of the MMIO resource `n` of device `dev` (lands in the
    /// client's receive slot).
    fn mmio(dev: u32, n: u32) -> crate::RcvCap = 6;
    /// An Irq of the interrupt resource `n` of device `dev`, bound to the
    /// line (lands in the client's receive slot).
    fn irq(dev: u32, n: u32) -> crate::RcvCap = 7;
}

impl<T: Transport> VbusClient<T> {
    /// Every device of the bus with its index.
    #[cfg(feature = "alloc")]
    pub fn devices(&mut self) -> Result<alloc::vec::Vec<(u32, DeviceInfo)>, Error> {
        let n = self.info()?;
        (0..n).map(|i| self.device(i).map(|d| (i, d))).collect()
    }

    /// The resources of device `dev`.
    #[cfg(feature = "alloc")]
    pub fn resources(&mut self, dev: u32) -> Result<alloc::vec::Vec<Resource>, Error> {
        let n = self.device(dev)?.resources;
        (0..n).map(|i| self.resource(dev, i)).collect()
    }

    /// The compatible strings of device `dev`.
    #[cfg(feature = "alloc")]
    pub fn compatibles(&mut self, dev: u32) -> Result<alloc::vec::Vec<Str<CID_MAX>>, Error> {
        let n = self.device(dev)?.compatibles;
        (0..n).map(|i| self.compatible(dev, i)).collect()
    }

    /// The first device matching `cid`, `None` if there is none.
    pub fn find_first(&mut self, cid: &str) -> Result<Option<u32>, Error> {
        match self.find(cid, 0) {
            Ok(d) => Ok(Some(d)),
            Err(Error::NoEnt) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{decode_one, encode_one};
    use crate::{MR_COUNT, MsgTag};

    fn res() -> Resource {
        Resource {
            kind: ResourceKind::Mmio,
            flags: 0,
            start: 0x901_0000,
            end: 0x901_0fff,
            id: Str::new("reg0").unwrap(),
        }
    }

    #[test]
    fn resource_round_trip() {
        let mut mrs = [0u64; MR_COUNT];
        let tag = encode_one(&res(), 0, &mut mrs).unwrap();
        assert_eq!(&mrs[..4], &[1, 0, 0x901_0000, 0x901_0fff]);
        assert_eq!(decode_one::<Resource>(tag, &mrs), Ok(res()));
        assert_eq!(res().len(), 0x1000);
        // An unknown kind and an inverted range are refused.
        mrs[0] = 7;
        assert_eq!(decode_one::<Resource>(tag, &mrs), Err(Error::Inval));
        mrs[0] = 0;
        mrs[3] = 0x900_0000;
        assert_eq!(decode_one::<Resource>(tag, &mrs), Err(Error::Inval));
        let bad = Resource { end: 0, ..res() };
        assert_eq!(encode_one(&bad, 0, &mut mrs), Err(Error::Inval));
        // Cut short.
        let short = MsgTag::new(0, 3, 0, 0);
        assert_eq!(decode_one::<Resource>(short, &mrs), Err(Error::MsgTooShort));
    }

    #[test]
    fn device_info_round_trip() {
        let d = DeviceInfo {
            name: Str::new("PL031").unwrap(),
            hid: Str::empty(),
            compatibles: 1,
            resources: 2,
            parent: Some(3),
        };
        let mut mrs = [0u64; MR_COUNT];
        let tag = encode_one(&d, 0, &mut mrs).unwrap();
        assert_eq!(decode_one::<DeviceInfo>(tag, &mrs), Ok(d));
        let top = DeviceInfo { parent: None, ..d };
        let tag = encode_one(&top, 0, &mut mrs).unwrap();
        assert_eq!(decode_one::<DeviceInfo>(tag, &mrs), Ok(top));
        // A name longer than its bound is refused both ways.
        assert!(Str::<NAME_MAX>::new(&"x".repeat(NAME_MAX + 1)).is_err());
        mrs[0] = NAME_MAX as u64 + 1;
        assert_eq!(decode_one::<DeviceInfo>(tag, &mrs), Err(Error::TooBig));
    }

    #[test]
    fn request_layout() {
        // resource(2, 1): label, opcode, then the arguments.
        let mut mrs = [0u64; MR_COUNT];
        let mut w = Writer::new(&mut mrs);
        w.word(Vbus::resource).unwrap();
        w.words(&[2, 1]).unwrap();
        let tag = w.finish(Vbus::ID).unwrap();
        assert_eq!((tag.label(), tag.words(), tag.items()), (VBUS_PROTO, 3, 0));
        assert_eq!(&mrs[..3], &[5, 2, 1]);
    }
}

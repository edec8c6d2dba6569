//! The server: each virtual bus on its gate ([`l4_ipc::vbus::Vbus`]), each
//! MMIO resource a client asked for as a dataspace
//! ([`l4_ipc::protocols::Dataspace`]), interrupts as Irqs.
//!
//! [`Service`] is the registry of io's objects by gate label: a request
//! through a bus gate reaches only that bus's devices, a request through
//! a dataspace gate only that resource's pages. What touches the system
//! (mapping device memory into io, creating gates and Irqs) is the
//! [`Backend`], so that all of this runs on the host against a fake.

use std::collections::BTreeMap;

use l4_abi::{CapRights, Error, Fpage, MemRights, MsgTag};
use l4_ipc::codec::{CapArg, MemArg, RcvCap, Str};
use l4_ipc::protocols::{Dataspace, DataspaceServer, ds_flags};
use l4_ipc::vbus::{DeviceInfo, Resource, ResourceKind, Vbus, VbusServer, res_flags};
use l4_ipc::{Ctx, Handler, MR_COUNT, Registry};

use crate::model::{Config, Device, Res};

/// The page size of MMIO dataspaces.
pub const PAGE: u64 = 0x1000;

/// What the server needs from the system.
pub trait Backend {
    /// Makes the device memory `[pa, pa + size)` (page aligned) accessible
    /// to io; returns io's address of `pa`.
    fn map_mmio(&mut self, pa: u64, size: u64) -> Result<u64, Error>;
    /// A new IPC gate with `label`, bound to the server thread; returns its
    /// capability index.
    fn create_gate(&mut self, label: u64) -> Result<u64, Error>;
    /// A new Irq bound to the interrupt line `line` with trigger mode
    /// `mode`; returns its capability index.
    fn create_irq(&mut self, line: u64, mode: u64) -> Result<u64, Error>;
}

/// An MMIO resource served as a dataspace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MmioDs {
    /// io's address of the first page.
    pub local: u64,
    /// The physical address of the first page.
    pub phys: u64,
    /// Size in bytes (whole pages).
    pub size: u64,
    /// Whether it may be mapped cached.
    pub cacheable: bool,
    /// The gate's capability in io.
    pub cap: u64,
}

/// What a gate label stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    /// The bus with this index in the configuration.
    Bus(usize),
    /// The MMIO dataspace with this index.
    Mmio(usize),
}

/// io's objects.
pub struct Service<B> {
    cfg: Config,
    backend: B,
    targets: BTreeMap<u64, Target>,
    mmio: Vec<MmioDs>,
    /// `(bus, device, resource)` -> index in `mmio`.
    mmio_by_res: BTreeMap<(usize, u32, u32), usize>,
    /// `(bus, device, resource)` -> Irq capability.
    irqs: BTreeMap<(usize, u32, u32), u64>,
    next_label: u64,
}

/// Gate labels step by this (the kernel's rights bits stay clear).
const LABEL_STEP: u64 = 0x10;

impl<B: Backend> Service<B> {
    /// A server of `cfg`'s buses; bus `i` has the label
    /// [`Service::bus_label`]`(i)`.
    pub fn new(cfg: Config, backend: B) -> Service<B> {
        let mut s = Service {
            cfg,
            backend,
            targets: BTreeMap::new(),
            mmio: Vec::new(),
            mmio_by_res: BTreeMap::new(),
            irqs: BTreeMap::new(),
            next_label: LABEL_STEP,
        };
        for i in 0..s.cfg.buses.len() {
            let l = s.take_label();
            s.targets.insert(l, Target::Bus(i));
        }
        s
    }

    fn take_label(&mut self) -> u64 {
        let l = self.next_label;
        self.next_label += LABEL_STEP;
        l
    }

    /// The label of the gate of the bus named `name`.
    pub fn bus_label(&self, name: &str) -> Option<u64> {
        let i = self.cfg.buses.iter().position(|b| b.name == name)?;
        self.targets
            .iter()
            .find(|(_, t)| **t == Target::Bus(i))
            .map(|(l, _)| *l)
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The backend.
    pub fn backend(&mut self) -> &mut B {
        &mut self.backend
    }

    /// The MMIO dataspaces handed out so far.
    pub fn mmio_dataspaces(&self) -> &[MmioDs] {
        &self.mmio
    }

    /// Device `dev` of bus `bus`.
    fn device(&self, bus: usize, dev: u32) -> Result<&Device, Error> {
        let v = self.cfg.buses[bus]
            .devices
            .get(dev as usize)
            .ok_or(Error::NoEnt)?;
        Ok(&self.cfg.platform.devices[v.hw])
    }

    /// Resource `n` of device `dev` of bus `bus`, with its id.
    fn resource(&self, bus: usize, dev: u32, n: u32) -> Result<(&str, &Res), Error> {
        let d = self.device(bus, dev)?;
        let (id, r) = d.resources.get(n as usize).ok_or(Error::NoEnt)?;
        Ok((id, r))
    }

    fn mmio_cap(&mut self, bus: usize, dev: u32, n: u32) -> Result<u64, Error> {
        if let Some(&i) = self.mmio_by_res.get(&(bus, dev, n)) {
            return Ok(self.mmio[i].cap);
        }
        let (_, r) = self.resource(bus, dev, n)?;
        if r.kind != ResourceKind::Mmio {
            return Err(Error::Inval);
        }
        let phys = r.start & !(PAGE - 1);
        let size = ((r.end | (PAGE - 1)) - phys)
            .checked_add(1)
            .ok_or(Error::Inval)?;
        let cacheable = r.flags & res_flags::MMIO_CACHEABLE != 0;
        let local = self.backend.map_mmio(phys, size)?;
        let label = self.take_label();
        let cap = self.backend.create_gate(label)?;
        self.mmio.push(MmioDs {
            local,
            phys,
            size,
            cacheable,
            cap,
        });
        let i = self.mmio.len() - 1;
        self.targets.insert(label, Target::Mmio(i));
        self.mmio_by_res.insert((bus, dev, n), i);
        Ok(cap)
    }

    fn irq_cap(&mut self, bus: usize, dev: u32, n: u32) -> Result<u64, Error> {
        if let Some(&c) = self.irqs.get(&(bus, dev, n)) {
            return Ok(c);
        }
        let (_, r) = self.resource(bus, dev, n)?;
        if r.kind != ResourceKind::Irq || r.start != r.end {
            return Err(Error::Inval);
        }
        let (line, mode) = (r.start, r.flags);
        let cap = self.backend.create_irq(line, mode)?;
        self.irqs.insert((bus, dev, n), cap);
        Ok(cap)
    }
}

/// One bus as the server of its gate.
struct BusView<'a, B> {
    svc: &'a mut Service<B>,
    bus: usize,
}

fn str_of<const N: usize>(s: &str) -> Result<Str<N>, Error> {
    Str::new(s)
}

impl<B: Backend> VbusServer for BusView<'_, B> {
    fn info(&mut self, _: &Ctx) -> Result<u32, Error> {
        u32::try_from(self.svc.cfg.buses[self.bus].devices.len()).map_err(|_| Error::Range)
    }

    fn device(&mut self, _: &Ctx, dev: u32) -> Result<DeviceInfo, Error> {
        let v = self.svc.cfg.buses[self.bus]
            .devices
            .get(dev as usize)
            .ok_or(Error::NoEnt)?;
        let d = self.svc.device(self.bus, dev)?;
        Ok(DeviceInfo {
            name: str_of(&v.name)?,
            hid: str_of(d.hid.as_deref().unwrap_or(""))?,
            compatibles: d.compatible.len() as u32,
            resources: d.resources.len() as u32,
            parent: v.parent,
        })
    }

    fn compatible(&mut self, _: &Ctx, dev: u32, n: u32) -> Result<Str<64>, Error> {
        let d = self.svc.device(self.bus, dev)?;
        str_of(d.compatible.get(n as usize).ok_or(Error::NoEnt)?)
    }

    fn is_compatible(&mut self, _: &Ctx, dev: u32, cid: Str<64>) -> Result<bool, Error> {
        Ok(self.svc.device(self.bus, dev)?.matches(&cid))
    }

    fn find(&mut self, _: &Ctx, cid: Str<64>, from: u32) -> Result<u32, Error> {
        let bus = &self.svc.cfg.buses[self.bus];
        (from as usize..bus.devices.len())
            .find(|&i| self.svc.cfg.platform.devices[bus.devices[i].hw].matches(&cid))
            .map(|i| i as u32)
            .ok_or(Error::NoEnt)
    }

    fn resource(&mut self, _: &Ctx, dev: u32, n: u32) -> Result<Resource, Error> {
        let (id, r) = self.svc.resource(self.bus, dev, n)?;
        Ok(Resource {
            kind: r.kind,
            flags: r.flags,
            start: r.start,
            end: r.end,
            id: str_of(id)?,
        })
    }

    fn mmio(&mut self, _: &Ctx, dev: u32, n: u32) -> Result<RcvCap, Error> {
        let cap = self.svc.mmio_cap(self.bus, dev, n)?;
        Ok(RcvCap(CapArg::new(cap, CapRights::RW)))
    }

    fn irq(&mut self, _: &Ctx, dev: u32, n: u32) -> Result<RcvCap, Error> {
        let cap = self.svc.irq_cap(self.bus, dev, n)?;
        // W lets the client bind it to its thread and unmask it.
        Ok(RcvCap(CapArg::new(cap, CapRights::RWS)))
    }
}

/// One MMIO dataspace as the server of its gate.
struct MmioView<'a> {
    ds: &'a MmioDs,
}

impl DataspaceServer for MmioView<'_> {
    fn map(&mut self, ctx: &Ctx, offset: u64, spot: u64, flags: u64) -> Result<MemArg, Error> {
        if offset >= self.ds.size {
            return Err(Error::Range);
        }
        let write = flags & ds_flags::W != 0;
        if write && !ctx.rights().contains(CapRights::W) {
            return Err(Error::Perm);
        }
        let rights = if write { MemRights::RW } else { MemRights::R };
        let page = offset & !(PAGE - 1);
        Ok(MemArg::map(
            Fpage::mem(self.ds.local + page, 12, rights),
            spot & !(PAGE - 1),
        ))
    }

    fn clear(&mut self, _: &Ctx, _: u64, _: u64) -> Result<(), Error> {
        // Zeroing device registers is never what a client means.
        Err(Error::NoSys)
    }

    fn info(&mut self, ctx: &Ctx) -> Result<(u64, u64), Error> {
        let rights = if ctx.rights().contains(CapRights::W) {
            ds_flags::RW
        } else {
            ds_flags::R
        };
        let caching = if self.ds.cacheable {
            ds_flags::NORMAL
        } else {
            ds_flags::UNCACHEABLE
        };
        Ok((self.ds.size, rights | caching))
    }

    fn copy_in(&mut self, _: &Ctx, _: u64, _: CapArg, _: u64, _: u64) -> Result<(), Error> {
        Err(Error::NoSys)
    }

    fn allocate(&mut self, _: &Ctx, offset: u64, size: u64) -> Result<(), Error> {
        // Device memory is always there.
        match offset.checked_add(size) {
            Some(end) if end <= self.ds.size => Ok(()),
            _ => Err(Error::Range),
        }
    }
}

impl<B: Backend> Handler for Service<B> {
    fn handle(&mut self, ctx: &Ctx, tag: MsgTag, mrs: &mut [u64; MR_COUNT]) -> MsgTag {
        match self.targets.get(&ctx.label()) {
            Some(Target::Bus(bus)) => {
                let bus = *bus;
                Vbus::dispatch(&mut BusView { svc: self, bus }, ctx, tag, mrs)
            }
            Some(Target::Mmio(i)) => {
                let ds = &self.mmio[*i];
                Dataspace::dispatch(&mut MmioView { ds }, ctx, tag, mrs)
            }
            None => l4_ipc::server::error_reply(Error::NoEnt),
        }
    }
}

impl<B: Backend> Registry for Service<B> {
    fn handler(&mut self, label: u64) -> Option<&mut dyn Handler> {
        if self.targets.contains_key(&label) {
            Some(self)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_all;
    use crate::model::Limits;
    use l4_abi::RecvItem;
    use l4_ipc::protocols::DataspaceClient;
    use l4_ipc::vbus::VbusClient;
    use l4_ipc::{Loopback, RecvBufs};

    /// Records what the server asked of the system; gates get their label
    /// as capability index, so the loopback reaches them.
    #[derive(Default)]
    struct Fake {
        mapped: Vec<(u64, u64)>,
        irqs: Vec<(u64, u64)>,
        fail_irq: bool,
    }

    impl Backend for Fake {
        fn map_mmio(&mut self, pa: u64, size: u64) -> Result<u64, Error> {
            self.mapped.push((pa, size));
            Ok(0x1_0000_0000 + pa)
        }
        fn create_gate(&mut self, label: u64) -> Result<u64, Error> {
            Ok(label)
        }
        fn create_irq(&mut self, line: u64, mode: u64) -> Result<u64, Error> {
            if self.fail_irq {
                return Err(Error::Busy);
            }
            self.irqs.push((line, mode));
            Ok(0x800 + line)
        }
    }

    const CFG: &str = r#"
Io.hw_add_devices(function()
  rtc = Io.Hw.Device(function()
    compatible = { "arm,pl031", "arm,primecell" };
    Resource.reg0 = Io.Res.mmio(0x9010000, 0x9010fff);
    Resource.irq0 = Io.Res.irq(34, Io.Resource.Irq_type_level_high);
  end)
  gpio = Io.Hw.Device(function()
    Property.hid = "ARMH0061";
    Resource.regs = Io.Res.mmio(0x9030000, 0x9031fff);
    Resource.irqs = Io.Res.irq({40, 41});
  end)
end)
Io.add_vbusses{
  a = Io.Vi.System_bus(function() PL031 = wrap(Io.system_bus().rtc) end),
  b = Io.Vi.System_bus(function() GPIO = wrap(Io.system_bus():match("ARMH0061")) end),
  c = Io.Vi.System_bus(function() end),
}
"#;

    fn service() -> Service<Fake> {
        let cfg = load_all(Limits::qemu_virt(), None, &[("t.cfg".into(), CFG.into())]).unwrap();
        Service::new(cfg, Fake::default())
    }

    type Client<'a> = VbusClient<&'a mut Loopback<Service<Fake>>>;

    fn client<'a>(lb: &'a mut Loopback<Service<Fake>>, bus: &str) -> Client<'a> {
        let label = lb.objects.bus_label(bus).unwrap();
        let mut c = VbusClient::with_transport(label, lb);
        c.rcv = RecvBufs::cap_slot(0x200);
        c
    }

    #[test]
    fn each_bus_lists_its_own_devices() {
        let mut lb = Loopback::new(service());
        let mut a = client(&mut lb, "a");
        assert_eq!(a.info(), Ok(1));
        let d = a.device(0).unwrap();
        assert_eq!((d.name.as_str(), d.hid.as_str()), ("PL031", ""));
        assert_eq!((d.compatibles, d.resources, d.parent), (2, 2, None));
        assert_eq!(a.compatible(0, 1).unwrap().as_str(), "arm,primecell");
        assert_eq!(a.compatible(0, 2), Err(Error::NoEnt));
        assert_eq!(a.is_compatible(0, "arm,pl031"), Ok(true));
        assert_eq!(a.is_compatible(0, "ARMH0061"), Ok(false));
        assert_eq!(a.find_first("arm,pl031"), Ok(Some(0)));
        assert_eq!(a.find_first("ARMH0061"), Ok(None), "bus b's device");
        assert_eq!(a.find("arm,pl031", 1), Err(Error::NoEnt));
        let r = a.resource(0, 0).unwrap();
        assert_eq!(
            (r.kind, r.start, r.end),
            (ResourceKind::Mmio, 0x901_0000, 0x901_0fff)
        );
        assert_eq!(r.id.as_str(), "reg0");
        let r = a.resource(0, 1).unwrap();
        assert_eq!((r.kind, r.start, r.flags), (ResourceKind::Irq, 34, 3));
        // Bad indexes.
        assert_eq!(a.device(1), Err(Error::NoEnt));
        assert_eq!(a.resource(0, 2), Err(Error::NoEnt));
        assert_eq!(a.resource(u32::MAX, 0), Err(Error::NoEnt));
        assert_eq!(a.mmio(1, 0), Err(Error::NoEnt));

        let mut b = client(&mut lb, "b");
        let d = b.device(0).unwrap();
        assert_eq!((d.name.as_str(), d.hid.as_str()), ("GPIO", "ARMH0061"));
        assert_eq!(b.is_compatible(0, "arm,pl031"), Ok(false));
        assert_eq!(b.find_first("arm,pl031"), Ok(None));
        let mut c = client(&mut lb, "c");
        assert_eq!(c.info(), Ok(0));
        assert_eq!(c.device(0), Err(Error::NoEnt));
        assert_eq!(c.find_first("arm,pl031"), Ok(None));
    }

    #[test]
    fn mmio_as_a_dataspace() {
        let mut lb = Loopback::new(service());
        let mut a = client(&mut lb, "a");
        a.mmio(0, 0).unwrap();
        // Asked twice: the same dataspace, mapped once.
        a.mmio(0, 0).unwrap();
        assert_eq!(a.mmio(0, 1), Err(Error::Inval), "an IRQ is no MMIO");
        let svc = &lb.objects;
        assert_eq!(svc.backend.mapped, [(0x901_0000, 0x1000)]);
        let ds = svc.mmio_dataspaces()[0].clone();
        assert_eq!(
            (ds.phys, ds.size, ds.local),
            (0x901_0000, 0x1000, 0x1_0901_0000)
        );
        let mut d = DataspaceClient::with_transport(ds.cap, &mut lb);
        assert_eq!(
            d.info(),
            Ok((0x1000, ds_flags::R | ds_flags::UNCACHEABLE)),
            "the loopback passes no W right"
        );
        d.rcv
            .push(RecvItem::Window(Fpage::mem(0x7000_0000, 12, MemRights::RW)))
            .unwrap();
        let m = d.map(0x0, 0x7000_0000, ds_flags::R).unwrap();
        assert_eq!(m.fpage, Fpage::mem(0x7000_0000, 12, MemRights::R));
        assert_eq!(d.map(0x1000, 0x7000_0000, ds_flags::R), Err(Error::Range));
        assert_eq!(d.map(0, 0x7000_0000, ds_flags::RW), Err(Error::Perm));
        assert_eq!(d.clear(0, 8), Err(Error::NoSys));
        assert_eq!(d.allocate(0, 0x1000), Ok(()));
        assert_eq!(d.allocate(0, 0x1001), Err(Error::Range));

        // Bus b's two-page range.
        let mut b = client(&mut lb, "b");
        b.mmio(0, 0).unwrap();
        assert_eq!(lb.objects.backend.mapped[1], (0x903_0000, 0x2000));
    }

    #[test]
    fn write_mappings_need_the_w_right() {
        let mut svc = service();
        let a = svc.bus_label("a").unwrap();
        let mut lb = Loopback::new(&mut svc);
        let mut c = VbusClient::with_transport(a, &mut lb);
        c.rcv = RecvBufs::cap_slot(0x200);
        c.mmio(0, 0).unwrap();
        let ds = svc.mmio_dataspaces()[0].clone();
        let ctx = Ctx::new(0, MsgTag::new(0, 0, 0, 0), &[]);
        let view = &mut MmioView { ds: &ds };
        assert_eq!(view.map(&ctx, 0, 0, ds_flags::RW), Err(Error::Perm));
        let ctx = Ctx::new(CapRights::W.0 as u64, MsgTag::new(0, 0, 0, 0), &[]);
        let m = view.map(&ctx, 0x10, 0x5000_0123, ds_flags::RW).unwrap();
        assert_eq!(m.fpage, Fpage::mem(0x1_0901_0000, 12, MemRights::RW));
        assert_eq!(m.snd_base, 0x5000_0000);
        assert_eq!(
            view.info(&ctx).unwrap().1 & ds_flags::RIGHTS_MASK,
            ds_flags::RW
        );
    }

    #[test]
    fn interrupts_as_irqs() {
        let mut lb = Loopback::new(service());
        let mut a = client(&mut lb, "a");
        a.irq(0, 1).unwrap();
        a.irq(0, 1).unwrap();
        assert_eq!(a.irq(0, 0), Err(Error::Inval), "MMIO is no IRQ");
        assert_eq!(a.irq(0, 5), Err(Error::NoEnt));
        assert_eq!(lb.objects.backend.irqs, [(34, 3)], "bound once, level high");
        let mut b = client(&mut lb, "b");
        assert_eq!(b.irq(0, 1), Err(Error::Inval), "a range of lines");
        let mut svc = service();
        svc.backend.fail_irq = true;
        let label = svc.bus_label("a").unwrap();
        let mut lb = Loopback::new(svc);
        assert_eq!(
            VbusClient::with_transport(label, &mut lb).irq(0, 1),
            Err(Error::Busy)
        );
    }

    /// Random requests on every bus gate, on the gates of MMIO dataspaces
    /// handed out and on labels of nothing: each answered, none a panic;
    /// io makes at most one gate per MMIO resource and one Irq per line
    /// however often it is asked, and the buses answer as before.
    #[test]
    fn random_requests_are_answered() {
        let mut svc = service();
        let mut labels: Vec<u64> = ["a", "b", "c"]
            .iter()
            .map(|b| svc.bus_label(b).unwrap())
            .collect();
        labels.extend([0, 0x7770, 1]);
        let mut rng = l4_xorshift::XorShift::new(0x9e37_79b9_7f4a_7c15);
        let mut next = move || rng.next_u64();
        for i in 0..50_000 {
            if i % 1000 == 0 {
                // The gates of dataspaces handed out so far are targets too.
                labels.extend(svc.targets.keys().copied());
                labels.sort_unstable();
                labels.dedup();
            }
            let label = labels[(next() % labels.len() as u64) as usize];
            let mut mrs = [0u64; MR_COUNT];
            for m in mrs.iter_mut() {
                *m = l4_xorshift::word(next());
            }
            let tag = if next() % 2 == 0 {
                // Plausible: a bus or dataspace operation with its few
                // words (opcode, device, index or offset).
                mrs[0] = next() % 10;
                mrs[1] = next() % 3;
                mrs[2] = next() % 3;
                let proto = [Vbus::ID, Dataspace::ID][(next() % 2) as usize];
                MsgTag::new(proto, 1 + (next() % 4) as u32, 0, 0)
            } else {
                let proto =
                    [Vbus::ID, Dataspace::ID, 0, next() as i64 >> 40][(next() % 4) as usize];
                MsgTag::new(proto, (next() % 70) as u32, (next() % 4) as u32, 0)
            };
            let reply = l4_ipc::server::handle_request(&mut svc, label, tag, &mut mrs);
            assert!(reply.words() as usize <= MR_COUNT);
        }
        assert!(
            (1..=2).contains(&svc.mmio.len()),
            "{} MMIO gates",
            svc.mmio.len()
        );
        assert!((1..=3).contains(&svc.irqs.len()), "{} Irqs", svc.irqs.len());
        let mut lb = Loopback::new(svc);
        assert_eq!(client(&mut lb, "a").info(), Ok(1));
        assert_eq!(client(&mut lb, "c").info(), Ok(0));
    }

    #[test]
    fn requests_of_the_wrong_kind_or_label() {
        let mut lb = Loopback::new(service());
        let a = lb.objects.bus_label("a").unwrap();
        // A dataspace request on a bus gate, an unknown label.
        let mut d = DataspaceClient::with_transport(a, &mut lb);
        assert_eq!(d.info(), Err(Error::BadProto));
        let mut x = VbusClient::with_transport(0x7770, &mut lb);
        assert_eq!(x.info(), Err(Error::NoEnt));
        assert_eq!(lb.objects.bus_label("nope"), None);
    }
}

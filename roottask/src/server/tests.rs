//! moe's serving against a fake kernel: requests go through the protocols'
//! client stubs straight to [`Moe`]'s handler, so every reply is what a
//! client would get (with moe's own capability and memory addresses).

extern crate std;

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use l4::{SchedInfo, SchedParams};
use l4_abi::fpage::item;
use l4_abi::proto::SchedulerOp;
use l4_abi::utcb::MR_COUNT;
use l4_abi::{CapRights, Error, Fpage, MsgTag, Proto, SendItem};
use l4_ipc::protocols::{
    DataspaceClient, FactoryClient, LogClient, NamespaceClient, ds_flags, mem_alloc_flags::*,
};
use l4_ipc::varg::VarArgs;
use l4_ipc::{CapArg, Request, Transport, handle_request};
use l4_loader::Sys;

use super::*;
use l4_ipc::protocols::DataspacePhysClient;

const MIB: u64 = 1 << 20;
/// Where the fake RAM starts (1 GiB aligned, as real RAM may be).
const RAM: u64 = 0x4000_0000;
const RAM_SIZE: u64 = 64 * MIB;
const ROM_LABEL: u64 = FIRST_LABEL;
const FACTORY_LABEL: u64 = FIRST_LABEL + LABEL_STEP;

/// What moe asked the fake kernel for.
#[derive(Default)]
struct Fake {
    said: Vec<String>,
    logged: Vec<String>,
    zeroed: Vec<(u64, u64)>,
    gates: Vec<(u64, u64, Option<u64>)>,
    released: Vec<u64>,
    kept: Vec<(u64, u64)>,
    runs: Vec<(u64, u64, u64)>,
    /// Refuse to create gates (as a full kernel factory would).
    no_gates: bool,
}

impl Fake {
    fn said(&self, what: &str) -> bool {
        self.said.iter().any(|l| l.contains(what))
    }
}

/// The loader's kernel operations are not used by these tests.
struct NoLoader;

impl Sys for NoLoader {
    fn create_task(&mut self, _: u64, _: Fpage) -> Result<(), Error> {
        Err(Error::NoSys)
    }
    fn create_thread(&mut self, _: u64) -> Result<(), Error> {
        Err(Error::NoSys)
    }
    fn create_factory(&mut self, _: u64, _: u64) -> Result<(), Error> {
        Err(Error::NoSys)
    }
    fn create_gate(&mut self, _: u64, _: u64) -> Result<(), Error> {
        Err(Error::NoSys)
    }
    fn map(&mut self, _: u64, _: SendItem) -> Result<(), Error> {
        Err(Error::NoSys)
    }
    fn control(&mut self, _: u64, _: u64, _: u64, _: u64) -> Result<(), Error> {
        Err(Error::NoSys)
    }
    fn ex_regs(&mut self, _: u64, _: u64, _: u64) -> Result<(), Error> {
        Err(Error::NoSys)
    }
    fn run(&mut self, _: u64, _: u64, _: u64, _: u64) -> Result<(), Error> {
        Err(Error::NoSys)
    }
    fn delete(&mut self, _: u64) {}
    fn unmap_own(&mut self, _: u64, _: u64) {}
}

impl Kernel for Fake {
    type Loader = NoLoader;

    fn loader(&self) -> NoLoader {
        NoLoader
    }
    fn bind_gate(&mut self, slot: u64, label: u64) -> Result<(), Error> {
        self.create_gate(slot, label, Some(0))
    }
    fn create_gate(&mut self, slot: u64, label: u64, thread: Option<u64>) -> Result<(), Error> {
        if self.no_gates {
            return Err(Error::NoMem);
        }
        self.gates.push((slot, label, thread));
        Ok(())
    }
    fn create_factory(&mut self, _: u64, _: u64) -> Result<(), Error> {
        Ok(())
    }
    fn delete_cap(&mut self, _: u64) {}
    fn release_cap(&mut self, slot: u64) {
        self.released.push(slot);
    }
    fn keep_cap(&mut self, index: u64, _: CapRights, slot: u64) -> Result<(), Error> {
        self.kept.push((index, slot));
        Ok(())
    }
    fn revoke(&mut self, _: u64, _: u64) {}
    fn zero(&mut self, addr: u64, len: u64) {
        self.zeroed.push((addr, len));
    }
    fn write(&mut self, _: u64, _: &[u8]) {}
    fn module_bytes(&self, _: u64, _: u64) -> &'static [u8] {
        &[]
    }
    fn log(&mut self, line: &[u8]) {
        self.logged.push(String::from_utf8_lossy(line).into_owned());
    }
    fn say(&mut self, args: fmt::Arguments<'_>) {
        self.said.push(args.to_string());
    }
    fn sched_info(&mut self) -> Result<SchedInfo, Error> {
        Ok(SchedInfo {
            online: 0b1111,
            max_cpus: 4,
        })
    }
    fn run_thread(&mut self, thread: u64, p: &SchedParams) -> Result<(), Error> {
        self.runs.push((thread, p.prio, p.cpus.map));
        Ok(())
    }
    fn idle_time(&mut self, cpus: u64) -> Result<u64, Error> {
        Ok(cpus.count_ones() as u64 * 1000)
    }
}

/// Calls go straight to moe's handler; replies keep moe's own items.
struct Direct<'a>(&'a mut Moe<Fake>);

impl Transport for Direct<'_> {
    fn call(&mut self, r: Request<'_>) -> Result<MsgTag, Error> {
        Ok(handle_request(self.0, r.cap, r.tag, r.mrs))
    }
}

/// moe with 64 MiB of RAM, `rom/` and the user factory.
fn moe() -> Moe<Fake> {
    let mut pages = PageAlloc::new();
    pages.add(RAM, RAM_SIZE);
    let mut moe = Moe::new(Fake::default(), pages);
    moe.create_services().unwrap();
    moe
}

fn factory(moe: &mut Moe<Fake>) -> FactoryClient<Direct<'_>> {
    FactoryClient::with_transport(FACTORY_LABEL, Direct(moe))
}

/// A client of object `label` through a capability with `rights`.
fn ds(moe: &mut Moe<Fake>, label: u64, rights: CapRights) -> DataspaceClient<Direct<'_>> {
    DataspaceClient::with_transport(label | rights.label_bits(), Direct(moe))
}

/// The label of the newest object.
fn newest(moe: &Moe<Fake>) -> u64 {
    *moe.objects.keys().next_back().unwrap()
}

/// Creates a dataspace; returns its label.
fn new_ds(moe: &mut Moe<Fake>, size: u64, flags: u64, align: Option<u64>) -> Result<u64, Error> {
    let cap = factory(moe).create_dataspace(size, Some(flags), align)?;
    assert_eq!(cap.0.rights, CapRights::RWS);
    assert_eq!(moe.objects[&newest(moe)].gate, cap.0.index);
    Ok(newest(moe))
}

/// Where `offset` of dataspace `label` is.
fn phys(moe: &mut Moe<Fake>, label: u64, offset: u64) -> (u64, u64) {
    DataspacePhysClient::with_transport(label, Direct(moe))
        .phys(offset)
        .unwrap()
}

fn map(
    moe: &mut Moe<Fake>,
    label: u64,
    rights: CapRights,
    offset: u64,
    spot: u64,
    flags: u64,
) -> Result<Fpage, Error> {
    ds(moe, label, rights)
        .map(offset, spot, flags)
        .map(|m| m.fpage)
}

#[test]
fn on_demand_dataspaces_get_memory_when_used() {
    let mut moe = moe();
    let free = moe.pages.free_bytes();
    let d = new_ds(&mut moe, 0x3000, 0, None).unwrap();
    assert_eq!(moe.pages.free_bytes(), free, "nothing allocated yet");
    assert_eq!(
        ds(&mut moe, d, CapRights::RWS).info(),
        Ok((0x3000, ds_flags::RWX))
    );
    // A small dataspace is one block: all of it comes at once.
    let f = map(&mut moe, d, CapRights::RWS, 0x1000, 0x10_1000, ds_flags::RW).unwrap();
    assert_eq!(f.order(), 13);
    assert!(f.mem_base() >= RAM && f.mem_base() < RAM + RAM_SIZE);
    assert_eq!(moe.pages.free_bytes(), free - 0x3000);
    assert_eq!(
        moe.k.zeroed,
        [(f.mem_base(), 0x3000)],
        "fresh memory is zeroed"
    );
    // The same block again: no new memory.
    let g = map(&mut moe, d, CapRights::RWS, 0x1800, 0x10_1800, 0).unwrap();
    assert_eq!(g.mem_base(), f.mem_base());
    assert_eq!(moe.pages.free_bytes(), free - 0x3000);
    // Beyond the end.
    assert_eq!(
        map(&mut moe, d, CapRights::RWS, 0x3000, 0, 0),
        Err(Error::Range)
    );
    // allocate: nothing left to back.
    ds(&mut moe, d, CapRights::RWS).allocate(0, 0x3000).unwrap();
    assert_eq!(moe.pages.free_bytes(), free - 0x3000);
    // A larger one gets memory block by block.
    let d = new_ds(&mut moe, 0x2_0000, 0, None).unwrap();
    map(&mut moe, d, CapRights::RWS, 0x1_2000, 0x11_2000, 0).unwrap();
    assert_eq!(moe.pages.free_bytes(), free - 0x3000 - 0x1_0000);
}

#[test]
fn continuous_dataspaces_are_one_aligned_range() {
    let mut moe = moe();
    // Take a page first so that alignment is not for free.
    new_ds(&mut moe, 0x1000, CONTINUOUS, None).unwrap();
    let d = new_ds(&mut moe, 0x5000, CONTINUOUS, Some(16)).unwrap();
    let (pa, n) = phys(&mut moe, d, 0);
    assert_eq!(n, 0x5000);
    assert_eq!(pa % 0x1_0000, 0, "aligned to 2^16");
    assert_eq!(phys(&mut moe, d, 0x2345), (pa + 0x2345, 0x5000 - 0x2345));
    assert!(moe.k.zeroed.contains(&(pa, 0x5000)));
    let f = map(
        &mut moe,
        d,
        CapRights::RWS,
        0x4000,
        0x7000_4000,
        ds_flags::RW,
    )
    .unwrap();
    assert_eq!((f.mem_base(), f.order()), (pa + 0x4000, 12));
}

#[test]
fn pinned_dataspaces_are_allocated_at_creation() {
    let mut moe = moe();
    let free = moe.pages.free_bytes();
    let d = new_ds(&mut moe, 0x3000, PINNED, None).unwrap();
    assert_eq!(moe.pages.free_bytes(), free - 0x3000);
    assert_eq!(moe.k.zeroed.len(), 1, "one block");
    let f = map(&mut moe, d, CapRights::RWS, 0x2000, 0x2000, ds_flags::RW).unwrap();
    assert_eq!(moe.k.zeroed[0], (f.mem_base() - 0x2000, 0x3000));
    assert_eq!(moe.k.zeroed.len(), 1, "nothing more to allocate");
    // More than moe has: refused before anything is taken.
    let r = new_ds(&mut moe, RAM_SIZE * 2, PINNED, None);
    assert_eq!(r, Err(Error::NoMem));
    assert_eq!(moe.pages.free_bytes(), free - 0x3000);
    assert!(moe.k.said("out of memory"));
}

#[test]
fn super_pages_map_two_mib_at_once() {
    let mut moe = moe();
    let d = new_ds(&mut moe, 4 * MIB, CONTINUOUS | SUPER_PAGES, None).unwrap();
    let (pa, _) = phys(&mut moe, d, 0);
    assert_eq!(pa % (2 * MIB), 0, "super pages are 2 MiB aligned");
    let f = map(&mut moe, d, CapRights::RWS, 0x1000, 0x20_1000, ds_flags::RW).unwrap();
    assert_eq!((f.mem_base(), f.order()), (pa, 21));
    // A hot spot that is not aligned alike gets a page.
    let f = map(&mut moe, d, CapRights::RWS, 0x1000, 0x30_2000, ds_flags::RW).unwrap();
    assert_eq!(f.order(), 12);
    // On demand: 2 MiB blocks.
    let d = new_ds(&mut moe, 4 * MIB, SUPER_PAGES, None).unwrap();
    let f = map(&mut moe, d, CapRights::RWS, 2 * MIB + 0x5000, 0x60_5000, 0).unwrap();
    assert_eq!(f.order(), 21);
    assert_eq!(f.mem_base() % (2 * MIB), 0);
    assert_eq!(moe.k.zeroed.last(), Some(&(f.mem_base(), 2 * MIB)));
    // Contiguous memory without Super_pages maps big too; blocks on
    // demand without it are 64 KiB.
    let d = new_ds(&mut moe, 4 * MIB, CONTINUOUS, Some(21)).unwrap();
    let f = map(&mut moe, d, CapRights::RWS, 0, 0x20_0000, 0).unwrap();
    assert_eq!(f.order(), 21);
    let d = new_ds(&mut moe, 4 * MIB, 0, None).unwrap();
    let f = map(&mut moe, d, CapRights::RWS, 0, 0x20_0000, 0).unwrap();
    assert_eq!(f.order(), 16);
}

#[test]
fn bad_dataspace_requests_are_refused() {
    let mut moe = moe();
    let free = moe.pages.free_bytes();
    for (size, flags, align) in [
        (0, 0, None),
        (0x1000, 8, None),
        (0x1000, CONTINUOUS, Some(31)),
    ] {
        assert_eq!(new_ds(&mut moe, size, flags, align), Err(Error::Inval));
    }
    assert!(
        moe.k
            .said("bad dataspace request (size 0x1000, flags 0x8, align 0)")
    );
    assert_eq!(
        new_ds(&mut moe, RAM_SIZE + 0x1000, CONTINUOUS, None),
        Err(Error::NoMem)
    );
    // More than is free but no more than moe has: fine on demand.
    new_ds(&mut moe, RAM_SIZE, 0, None).unwrap();
    assert_eq!(new_ds(&mut moe, RAM_SIZE * 2, 0, None), Err(Error::NoMem));
    assert_eq!(moe.pages.free_bytes(), free);
}

#[test]
fn a_failed_gate_gives_the_memory_back() {
    let mut moe = moe();
    let free = moe.pages.free_bytes();
    moe.k.no_gates = true;
    assert_eq!(new_ds(&mut moe, MIB, CONTINUOUS, None), Err(Error::NoMem));
    assert_eq!(new_ds(&mut moe, MIB, PINNED, None), Err(Error::NoMem));
    assert_eq!(moe.pages.free_bytes(), free);
    assert!(moe.k.said("cannot create a dataspace object"));
}

#[test]
fn read_only_capabilities_cannot_write() {
    let mut moe = moe();
    let d = new_ds(&mut moe, 0x2000, 0, None).unwrap();
    let ro = CapRights::RO;
    assert_eq!(map(&mut moe, d, ro, 0, 0, ds_flags::RW), Err(Error::Perm));
    assert_eq!(ds(&mut moe, d, ro).clear(0, 0x1000), Err(Error::Perm));
    assert_eq!(ds(&mut moe, d, ro).allocate(0, 0x1000), Err(Error::Perm));
    assert_eq!(ds(&mut moe, d, ro).info(), Ok((0x2000, ds_flags::RX)));
    let f = map(&mut moe, d, ro, 0, 0, ds_flags::R).unwrap();
    assert!(!f.mem_rights().contains(l4_abi::MemRights::W));
    assert!(moe.k.said("refused"));
    // Through a writable capability all of it works; clear zeroes.
    ds(&mut moe, d, CapRights::RW).clear(0, 0x1000).unwrap();
    assert_eq!(moe.k.zeroed.last(), Some(&(f.mem_base(), 0x1000)));
    map(&mut moe, d, CapRights::RW, 0, 0, ds_flags::RW).unwrap();
}

#[test]
fn rom_serves_the_boot_modules_read_only() {
    let mut moe = moe();
    moe.add_module("hello", 0x8000_0000, 0x1234).unwrap();
    moe.add_module("l4re", 0x8010_0000, 0x4000).unwrap();
    let mut rom = NamespaceClient::with_transport(ROM_LABEL, Direct(&mut moe));
    let (rest, cap) = rom.query("hello").unwrap();
    assert_eq!(rom.query("nope"), Err(Error::NoEnt));
    assert_eq!(rom.register(0, "x", None), Err(Error::Perm));
    assert_eq!(rom.unlink("hello"), Err(Error::Perm));
    assert_eq!(rest, 0);
    assert_eq!(cap.rights, CapRights::RO);
    let m = moe.module("rom/hello").unwrap();
    assert_eq!((m.gate, m.pa, m.size), (cap.index, 0x8000_0000, 0x1234));
    assert!(moe.module("rom/nope").is_none());
    // A failed lookup is not worth a message; the refused writes are.
    assert!(!moe.k.said("request 0x0"));
    assert!(moe.k.said("rom 0x1000"));
    // The module's dataspace: read-execute, never writable.
    let label = *moe
        .objects
        .iter()
        .find(|(_, o)| o.gate == cap.index)
        .unwrap()
        .0;
    assert_eq!(
        ds(&mut moe, label, CapRights::RW).info(),
        Ok((0x1234, ds_flags::RX))
    );
    // Both pages at once where the client's address allows, else the one.
    let f = map(&mut moe, label, CapRights::RW, 0x1000, 0x1000, ds_flags::RX).unwrap();
    assert_eq!((f.mem_base(), f.order()), (0x8000_0000, 13));
    let f = map(&mut moe, label, CapRights::RW, 0x1000, 0x2000, ds_flags::RX).unwrap();
    assert_eq!((f.mem_base(), f.order()), (0x8000_1000, 12));
    assert_eq!(
        map(&mut moe, label, CapRights::RW, 0, 0, ds_flags::RW),
        Err(Error::Perm)
    );
    assert_eq!(
        ds(&mut moe, label, CapRights::RW).clear(0, 1),
        Err(Error::Perm)
    );
}

#[test]
fn name_spaces_keep_what_clients_register() {
    let mut moe = moe();
    factory(&mut moe).create_namespace().unwrap();
    let ns = newest(&moe);
    let mut c = NamespaceClient::with_transport(ns, Direct(&mut moe));
    c.register(
        ns_flags_rw(),
        "svc",
        Some(CapArg::new(0x77, CapRights::RWS)),
    )
    .unwrap();
    let (rest, cap) = c.query("svc/x").unwrap();
    assert_eq!(rest, 1, "'x' is left for the next server");
    let kept = moe.k.kept[0];
    assert_eq!((kept.0, cap.index), (0x77, kept.1));
    let mut c = NamespaceClient::with_transport(ns, Direct(&mut moe));
    c.unlink("svc").unwrap();
    assert_eq!(c.query("svc"), Err(Error::NoEnt));
    assert_eq!(moe.k.released, [kept.1]);
}

fn ns_flags_rw() -> u64 {
    l4_ipc::protocols::ns_flags::RW
}

#[test]
fn logs_tag_whole_lines() {
    let mut moe = moe();
    factory(&mut moe)
        .create_log("app", Some(l4_ipc::varg::VAny::Uint(2)), &VarArgs::new())
        .unwrap();
    let log = newest(&moe);
    let mut c = LogClient::with_transport(log, Direct(&mut moe));
    c.write_all(b"hello ").unwrap();
    c.write_all(b"world\nnext").unwrap();
    assert_eq!(moe.k.logged.len(), 1);
    assert!(moe.k.logged[0].contains("app"));
    assert!(moe.k.logged[0].contains("hello world"));
}

#[test]
fn bad_messages_get_errors() {
    let mut moe = moe();
    let d = new_ds(&mut moe, 0x1000, 0, None).unwrap();
    let call = |moe: &mut Moe<Fake>, label: u64, proto: i64, words: &[u64]| {
        let mut mrs = [0u64; MR_COUNT];
        mrs[..words.len()].copy_from_slice(words);
        let tag = MsgTag::new(proto, words.len() as u32, 0, 0);
        handle_request(moe, label, tag, &mut mrs)
            .to_result()
            .map(|_| ())
    };
    let ds_proto = l4_ipc::protocols::ids::DATASPACE;
    // No such object.
    assert_eq!(call(&mut moe, 0x9990, ds_proto, &[2]), Err(Error::NoEnt));
    // Unknown operation, wrong protocol, no words, missing arguments.
    assert_eq!(call(&mut moe, d, ds_proto, &[0x99]), Err(Error::NoSys));
    assert_eq!(
        call(&mut moe, d, Proto::Log as i64, &[0]),
        Err(Error::BadProto)
    );
    assert!(call(&mut moe, d, ds_proto, &[]).is_err());
    assert!(call(&mut moe, d, ds_proto, &[0, 0x1000]).is_err());
    assert!(
        call(
            &mut moe,
            FACTORY_LABEL,
            Proto::Factory as i64,
            &[ds_proto as u64]
        )
        .is_err()
    );
    assert!(moe.k.said("dataspace"));
    assert!(moe.k.said("refused"));
}

#[test]
fn scheduler_proxies_stay_within_their_limits() {
    let mut moe = moe();
    factory(&mut moe)
        .create_scheduler(10, 2, Some(0b0110))
        .unwrap();
    let s = newest(&moe);
    let sched = Proto::Scheduler as i64;
    let mut mrs = [0u64; MR_COUNT];
    mrs[0] = SchedulerOp::Info as u64;
    let r = handle_request(&mut moe, s, MsgTag::new(sched, 2, 0, 0), &mut mrs);
    assert!(r.to_result().is_ok());
    assert_eq!((mrs[0], mrs[1]), (0b0110, 4), "only the proxy's CPUs");
    // Run a thread (item: capability 0x55) at priority 3 on any CPU.
    let mut mrs = [0u64; MR_COUNT];
    mrs[..5].copy_from_slice(&[SchedulerOp::RunThread as u64, 0, !0, 3, 1000]);
    let it = CapArg::new(0x55, CapRights::RWS).item().to_words();
    mrs[5..7].copy_from_slice(&it);
    let r = handle_request(&mut moe, s, MsgTag::new(sched, 5, 1, 0), &mut mrs);
    assert!(r.to_result().is_ok());
    assert_eq!(moe.k.runs, [(0x55, 5, 0b0110)]);
    // No thread; no allowed CPU; not the scheduler protocol.
    let mut mrs = [0u64; MR_COUNT];
    mrs[..5].copy_from_slice(&[SchedulerOp::RunThread as u64, 0, 0b1, 3, 1000]);
    let r = handle_request(&mut moe, s, MsgTag::new(sched, 5, 0, 0), &mut mrs);
    assert_eq!(r.to_result().map(|_| ()), Err(Error::MsgMissArg));
    mrs[..5].copy_from_slice(&[SchedulerOp::RunThread as u64, 0, 0b1, 3, 1000]);
    mrs[5..7].copy_from_slice(&it);
    let r = handle_request(&mut moe, s, MsgTag::new(sched, 5, 1, 0), &mut mrs);
    assert_eq!(r.to_result().map(|_| ()), Err(Error::Inval));
    assert!(moe.k.said("run_thread refused"));
    let r = handle_request(
        &mut moe,
        s,
        MsgTag::new(Proto::Log as i64, 1, 0, 0),
        &mut mrs,
    );
    assert_eq!(r.to_result().map(|_| ()), Err(Error::BadProto));
    // Idle time of the allowed CPUs only.
    let mut mrs = [0u64; MR_COUNT];
    mrs[..3].copy_from_slice(&[SchedulerOp::IdleTime as u64, 0, 0b1111]);
    handle_request(&mut moe, s, MsgTag::new(sched, 3, 0, 0), &mut mrs);
    assert_eq!(mrs[0], 2000);
    // Bad limits are refused at creation.
    assert_eq!(
        factory(&mut moe).create_scheduler(2, 10, None).map(|_| ()),
        Err(Error::Inval)
    );
}

#[test]
fn kernel_objects_are_granted_not_kept() {
    let mut moe = moe();
    let gate = factory(&mut moe).create_ipc_gate(Some(0x40), None).unwrap();
    assert_eq!(moe.k.gates.last(), Some(&(gate.0.index, 0x40, None)));
    assert_eq!(moe.granted, [gate.0.index]);
    // The next request empties the slot moe handed over.
    factory(&mut moe).create_namespace().unwrap();
    assert!(moe.granted.is_empty());
    assert_eq!(moe.k.released, [gate.0.index]);
}

#[test]
fn granted_replies_carry_the_grant_bit() {
    let mut moe = moe();
    let mut mrs = [0u64; MR_COUNT];
    let tag = {
        let mut w = l4_ipc::Writer::new(&mut mrs);
        w.word(Proto::Factory as i64 as u64).unwrap();
        l4_ipc::Arg::encode(&l4_ipc::varg::VUint(0x1000), &mut w).unwrap();
        w.finish(Proto::Factory as i64).unwrap()
    };
    let r = handle_request(&mut moe, FACTORY_LABEL, tag, &mut mrs);
    assert!(r.to_result().is_ok());
    assert_eq!(r.items(), 1);
    let at = r.words() as usize;
    assert_ne!(mrs[at] & item::GRANT, 0);
}

#[test]
fn init_needs_its_module_and_the_runtime() {
    let mut moe = moe();
    let args = crate::cmdline::parse("--init=rom/hello a b");
    moe.start_init(&args, l4_abi::cpuid::CpuId::UNKNOWN);
    assert!(moe.k.said("cannot start init 'rom/hello': no such module"));
    moe.add_module("hello", 0x8000_0000, 0x1000).unwrap();
    moe.start_init(&args, l4_abi::cpuid::CpuId::UNKNOWN);
    assert!(
        moe.k
            .said("the runtime 'rom/l4re' is not among the modules")
    );
    // A runtime the loader refuses: nothing is left behind but init's log.
    moe.add_module("l4re", 0x8010_0000, 0x1000).unwrap();
    let (free, slots, objects) = (
        moe.pages.free_bytes(),
        moe.slots.in_use(),
        moe.objects.len(),
    );
    moe.start_init(&args, l4_abi::cpuid::CpuId::UNKNOWN);
    assert!(moe.k.said("moe: starting init 'rom/hello a b'"));
    assert!(moe.k.said("cannot start init 'rom/hello': "));
    assert_eq!(moe.pages.free_bytes(), free);
    assert_eq!(
        (moe.slots.in_use(), moe.objects.len()),
        (slots + 1, objects + 1)
    );
    assert!(matches!(moe.objects[&newest(&moe)].kind, Kind::Log(_)));
}

//! moe's objects and its server loop.
//!
//! Every object moe serves has an IPC gate of its own, created with the
//! kernel factory and bound to moe's thread with the object's *label*;
//! [`Moe`] keeps the objects by label ([`Obj`]). Labels are multiples of
//! [`LABEL_STEP`] from [`FIRST_LABEL`], and moe ignores the low four bits
//! of a received label (room for the kernel to report the invoker's
//! rights there, as Fiasco does in the low two bits). The kinds:
//!
//! | kind         | protocol                               | created by                  |
//! |--------------|----------------------------------------|-----------------------------|
//! | dataspace    | Dataspace (+ [`DataspacePhys`])        | user factory, boot modules  |
//! | name space   | Namespace (read-write)                 | user factory                |
//! | `rom`        | Namespace (read-only, boot modules)    | moe at boot                 |
//! | log          | Log (Vcon layout)                      | user factory, init's log    |
//! | user factory | Factory                                | moe at boot                 |
//! | sched proxy  | kernel Scheduler layout                | user factory                |
//! | parent       | Parent; page faults and exceptions of a child's runtime | the loader |
//!
//! Capabilities clients send arrive in [`RCV_SLOT`]; moe moves those it
//! keeps to a slot of its own. Objects moe creates for a client and does
//! not serve itself (kernel IPC gates and factories) are *granted* to the
//! client, so moe keeps no copy.

use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use l4::abi::fault::{ExcRegs, PageFault};
use l4::abi::fpage::item;
use l4::abi::proto::{SchedCpuSet, SchedulerOp, vcon};
use l4::{Cap, CapRights, Error, MsgTag, Proto, SchedParams, SlotAlloc, base, println};
use l4_ipc::protocols::{
    Dataspace, DataspaceServer, Factory, FactoryServer, Log, LogRead, LogServer, NAME_MAX,
    Namespace, NamespaceServer, Parent, ParentServer, ds_flags, mem_alloc_flags, ns_flags,
    parent_signal,
};
use l4_ipc::varg::{VAny, VOpt, VStr, VUint, VarArgs};
use l4_ipc::{
    Bytes, CapArg, Ctx, Handler, MR_COUNT, MemArg, OptCap, RcvCap, RecvBufs, Registry, Server, Str,
    UtcbServerTransport,
};
use l4_loader::kernel::KernelSys;
use l4_loader::{Child, ChildCaps, Host, NamedCap, StartArgs};
use moe::cmdline::MoeArgs;
use moe::ds::{DataspacePhys, DataspacePhysServer, Ds};
use moe::log::{LineLog, colour_letter, colour_number};
use moe::ns::Names;
use moe::pages::{PAGE, PageAlloc};
use moe::sched::{SchedLimits, cpu_bitmap, to_set};

/// Where capabilities that clients send arrive.
pub const RCV_SLOT: u64 = 0x20;
/// The first label.
pub const FIRST_LABEL: u64 = 0x1000;
/// The distance between labels (the low bits are ignored).
pub const LABEL_STEP: u64 = 0x10;
const LABEL_MASK: u64 = !(LABEL_STEP - 1);

/// The kernel-factory quota of init, in bytes.
pub const INIT_QUOTA: u64 = 32 << 20;
/// The priority of init's runtime thread.
pub const INIT_PRIO: u64 = 1;
/// The runtime every program is started with.
pub const RUNTIME: &str = "rom/l4re";

/// moe's capability slots for the objects it creates.
static SLOTS: SlotAlloc<60> = SlotAlloc::new(0x100);

/// What an object is.
pub enum Kind {
    /// A dataspace.
    Ds(Ds),
    /// A read-write name space.
    Ns(Names),
    /// The `rom/` name space.
    Rom,
    /// A log.
    Log(LineLog),
    /// The user factory.
    Factory,
    /// A scheduler proxy.
    Sched(SchedLimits),
    /// A child's parent gate.
    Parent(Child),
}

impl Kind {
    fn name(&self) -> &'static str {
        match self {
            Kind::Ds(_) => "dataspace",
            Kind::Ns(_) => "name space",
            Kind::Rom => "rom",
            Kind::Log(_) => "log",
            Kind::Factory => "factory",
            Kind::Sched(_) => "scheduler proxy",
            Kind::Parent(_) => "parent",
        }
    }
}

/// An object and its gate (moe's slot).
pub struct Obj {
    /// moe's capability of the object's gate.
    pub gate: u64,
    /// The object.
    pub kind: Kind,
}

/// A boot module.
pub struct Module {
    /// Its name in `rom/`.
    pub name: String,
    /// Physical (= moe's) address.
    pub pa: u64,
    /// Size in bytes.
    pub size: u64,
    /// Its dataspace's gate.
    pub gate: u64,
}

/// All of moe's state.
pub struct Moe {
    pages: PageAlloc,
    objects: BTreeMap<u64, Obj>,
    next_label: u64,
    modules: Vec<Module>,
    rom_gate: u64,
    factory_gate: u64,
    /// Slots granted in the last reply, emptied at the next request.
    granted: Vec<u64>,
}

/// The loader's kernel operations for moe.
fn ksys() -> KernelSys {
    KernelSys {
        this_task: base::TASK,
        factory: base::FACTORY,
        server_thread: base::THREAD,
    }
}

/// Zeroed memory from moe's allocator.
fn alloc_zeroed(pages: &mut PageAlloc, size: u64, order: u8) -> Option<u64> {
    let a = pages.alloc(size, order)?;
    // SAFETY: moe owns its RAM 1:1 read-write; the block was free, so no
    // one else uses it (client mappings of freed memory were revoked when
    // it was freed).
    unsafe { core::ptr::write_bytes(a as *mut u8, 0, size.next_multiple_of(PAGE) as usize) };
    Some(a)
}

/// Revokes every client mapping of moe's memory `[addr, addr + size)`.
fn revoke(addr: u64, size: u64) {
    use l4_loader::Sys;
    ksys().unmap_own(addr, size);
}

/// Empties moe's slot `idx` (and what was derived from it) and frees it.
fn release_slot(idx: u64) {
    let _ = base::TASK.release_cap(idx);
    SLOTS.free(idx);
}

/// The loader's [`Host`] over moe's memory and slots.
struct MoeHost<'a> {
    pages: &'a mut PageAlloc,
}

impl Host for MoeHost<'_> {
    fn alloc_cap(&mut self) -> Option<u64> {
        SLOTS.alloc()
    }

    fn free_cap(&mut self, idx: u64) {
        SLOTS.free(idx);
    }

    fn alloc_mem(&mut self, size: u64) -> Option<u64> {
        alloc_zeroed(self.pages, size, moe::pages::MIN_ORDER)
    }

    fn free_mem(&mut self, addr: u64, size: u64) {
        self.pages.free(addr, size);
    }

    fn write_mem(&mut self, addr: u64, bytes: &[u8]) {
        // SAFETY: the loader writes only inside memory it got from
        // `alloc_mem` (moe's 1:1 RAM, read-write, used by nothing else).
        unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), addr as *mut u8, bytes.len()) };
    }
}

impl Moe {
    /// moe with the memory `pages` and no objects yet.
    pub fn new(pages: PageAlloc) -> Moe {
        Moe {
            pages,
            objects: BTreeMap::new(),
            next_label: FIRST_LABEL,
            modules: Vec::new(),
            rom_gate: 0,
            factory_gate: 0,
            granted: Vec::new(),
        }
    }

    /// A new object with a gate of its own; returns the gate.
    fn new_object(&mut self, kind: Kind) -> Result<u64, Error> {
        let label = self.next_label;
        let r = SLOTS.alloc().ok_or(Error::NoMem).and_then(|slot| {
            base::FACTORY
                .create_gate(slot, label, Some(base::THREAD))
                .map(|_| slot)
                .inspect_err(|_| {
                    SLOTS.free(slot);
                })
        });
        match r {
            Ok(gate) => {
                self.next_label += LABEL_STEP;
                self.objects.insert(label, Obj { gate, kind });
                Ok(gate)
            }
            Err(e) => {
                println!(
                    "moe: cannot create a {} object: {}",
                    kind.name(),
                    e.describe()
                );
                self.drop_kind(kind);
                Err(e)
            }
        }
    }

    /// Deletes object `label` and what it holds.
    fn drop_object(&mut self, label: u64) {
        let Some(obj) = self.objects.remove(&label) else {
            return;
        };
        if !matches!(obj.kind, Kind::Parent(_)) {
            let _ = base::TASK.delete_cap(obj.gate);
            SLOTS.free(obj.gate);
        }
        self.drop_kind(obj.kind);
    }

    fn drop_kind(&mut self, kind: Kind) {
        match kind {
            Kind::Ds(ds) => {
                for (a, s) in ds.release() {
                    revoke(a, s);
                    self.pages.free(a, s);
                }
            }
            Kind::Ns(names) => names.caps().for_each(release_slot),
            Kind::Log(mut log) => log.flush(&mut |l: &[u8]| {
                let _ = base::LOG.write(l);
            }),
            Kind::Parent(child) => child.destroy(
                &mut ksys(),
                &mut MoeHost {
                    pages: &mut self.pages,
                },
            ),
            Kind::Rom | Kind::Factory | Kind::Sched(_) => {}
        }
    }

    /// Creates the `rom` name space and the user factory.
    pub fn create_services(&mut self) -> Result<(), Error> {
        self.rom_gate = self.new_object(Kind::Rom)?;
        self.factory_gate = self.new_object(Kind::Factory)?;
        Ok(())
    }

    /// Adds boot module `name` (its memory mapped 1:1 in moe) as a
    /// read-only dataspace.
    pub fn add_module(&mut self, name: &str, pa: u64, size: u64) -> Result<(), Error> {
        let ds = Ds::phys(pa, size, ds_flags::RX, 0, false);
        let gate = self.new_object(Kind::Ds(ds))?;
        self.modules.push(Module {
            name: name.to_string(),
            pa,
            size,
            gate,
        });
        Ok(())
    }

    fn module(&self, path: &str) -> Option<&Module> {
        let name = l4_loader::rom_name(path)?;
        self.modules.iter().find(|m| m.name == name)
    }

    /// Starts the init program (moe's command line).
    pub fn start_init(&mut self, args: &MoeArgs<'_>) {
        let mut line = String::from(args.init);
        for a in &args.init_args {
            line.push(' ');
            line.push_str(a);
        }
        let Some(program) = self.module(args.init).map(|m| m.gate) else {
            println!("moe: cannot start init '{}': no such module", args.init);
            return;
        };
        let Some((rt_pa, rt_size)) = self.module(RUNTIME).map(|m| (m.pa, m.size)) else {
            println!(
                "moe: cannot start init '{}': the runtime '{RUNTIME}' is not among the modules",
                args.init
            );
            return;
        };
        let tag = l4_loader::program_basename(args.init);
        let Ok(log) = self.new_object(Kind::Log(LineLog::new(tag, None))) else {
            println!("moe: cannot start init '{}': no log object", args.init);
            return;
        };
        let online = base::SCHEDULER.info().map_or(1, |i| i.online);
        println!("moe: starting init '{line}'");
        // SAFETY: the runtime module's memory is mapped 1:1 read-only in
        // moe for moe's whole life (add_module after map_module) and never
        // written.
        let runtime = unsafe { core::slice::from_raw_parts(rt_pa as *const u8, rt_size as usize) };
        let named = [
            NamedCap {
                name: "rom",
                index: self.rom_gate,
                rights: CapRights::RO,
            },
            NamedCap {
                name: "log",
                index: base::LOG.index(),
                rights: CapRights::RWS,
            },
            NamedCap {
                name: "icu",
                index: base::ICU.index(),
                rights: CapRights::RWS,
            },
            NamedCap {
                name: "sigma0",
                index: base::PAGER.index(),
                rights: CapRights::RWS,
            },
            NamedCap {
                name: "mem",
                index: self.factory_gate,
                rights: CapRights::RWS,
            },
        ];
        let label = self.next_label;
        self.next_label += LABEL_STEP;
        let start = StartArgs {
            program: args.init,
            args: &args.init_args,
            envs: &[],
            runtime,
            runtime_addr: rt_pa,
            caps: ChildCaps {
                log,
                scheduler: base::SCHEDULER.index(),
                mem_alloc: self.factory_gate,
                rom: self.rom_gate,
                program,
            },
            named: &named,
            parent_label: label,
            factory_quota: INIT_QUOTA,
            prio: INIT_PRIO,
            cpus: online,
            dbg: args.l4re_dbg,
        };
        let mut host = MoeHost {
            pages: &mut self.pages,
        };
        match l4_loader::start(&mut ksys(), &mut host, &start) {
            Ok(child) => {
                self.objects.insert(
                    label,
                    Obj {
                        gate: child.gate,
                        kind: Kind::Parent(child),
                    },
                );
            }
            Err(e) => println!("moe: cannot start init '{}': {e}", args.init),
        }
    }

    /// Empties the slots granted in the last reply.
    fn release_granted(&mut self) {
        for slot in self.granted.drain(..) {
            release_slot(slot);
        }
    }

    fn name_of(&self, label: u64) -> &str {
        match self.objects.get(&label) {
            Some(Obj {
                kind: Kind::Parent(c),
                ..
            }) => &c.name,
            _ => "?",
        }
    }

    /// A child's runtime signalled its exit, or failed.
    fn end_child(&mut self, label: u64, why: core::fmt::Arguments<'_>) {
        println!("moe: '{}' {why}", self.name_of(label));
        self.drop_object(label);
    }

    /// A request to a scheduler proxy (the kernel Scheduler's layout).
    fn sched_request(&mut self, label: u64, tag: MsgTag, mrs: &mut [u64; MR_COUNT]) -> MsgTag {
        let lim = match self.objects.get(&label).map(|o| &o.kind) {
            Some(&Kind::Sched(lim)) => lim,
            _ => return MsgTag::reply(Err(Error::NoEnt)),
        };
        if tag.label() != Proto::Scheduler as i64 {
            return MsgTag::reply(Err(Error::BadProto));
        }
        let w = (tag.words() as usize).min(MR_COUNT);
        let req: [u64; 5] = core::array::from_fn(|i| if i < w { mrs[i] } else { 0 });
        let word = |i: usize| req[i];
        let Ok((op, _)) = SchedulerOp::decode(word(0)) else {
            return MsgTag::reply(Err(Error::NoSys));
        };
        let r = match op {
            SchedulerOp::Info => base::SCHEDULER.info().map(|i| {
                let like = SchedCpuSet::from_words(word(1), 0);
                mrs[0] = to_set(i.online & lim.cpus, like);
                mrs[1] = i.max_cpus;
                MsgTag::new(0, 2, 0, 0)
            }),
            SchedulerOp::RunThread => {
                let item = (w >= 5 && tag.items() >= 1 && w + 2 <= MR_COUNT)
                    .then(|| l4::SendItem::from_words([mrs[w], mrs[w + 1]]));
                match item.map(CapArg::from_item) {
                    None => Err(Error::MsgMissArg),
                    Some(Err(e)) => Err(e),
                    Some(Ok(thread)) => {
                        let set = SchedCpuSet::from_words(word(1), word(2));
                        match lim.cpus_for(set) {
                            Err(e) => {
                                println!(
                                    "moe: scheduler proxy {label:#x}: run_thread refused: {e}"
                                );
                                Err(Error::Inval)
                            }
                            Ok(cpus) => {
                                let p = SchedParams::new(lim.prio(word(3)), cpus).quantum(word(4));
                                base::SCHEDULER
                                    .run_thread_with(Cap::from_index(thread.index), &p)
                                    .map(|()| MsgTag::new(0, 0, 0, 0))
                            }
                        }
                    }
                }
            }
            SchedulerOp::IdleTime => {
                let m = cpu_bitmap(SchedCpuSet::from_words(word(1), word(2))) & lim.cpus;
                base::SCHEDULER.idle_time(m).map(|us| {
                    mrs[0] = us;
                    MsgTag::new(0, 1, 0, 0)
                })
            }
        };
        r.unwrap_or_else(|e| MsgTag::reply(Err(e)))
    }

    /// A message on a child's parent gate.
    fn parent_request(
        &mut self,
        label: u64,
        ctx: &Ctx,
        tag: MsgTag,
        mrs: &mut [u64; MR_COUNT],
    ) -> MsgTag {
        let n = (tag.words() as usize).min(MR_COUNT);
        if tag.is_page_fault() && n >= 2 {
            let pf = PageFault::from_words([mrs[0], mrs[1]]);
            self.end_child(
                label,
                format_args!(
                    "stopped: its runtime faulted at {:#x} ({}) at pc {:#x}",
                    pf.addr,
                    if pf.write { "write" } else { "read" },
                    pf.pc
                ),
            );
            return MsgTag::reply(Err(Error::NoReply));
        }
        if tag.is_exception() {
            let (pc, esr) = ExcRegs::from_words(&mrs[..n]).map_or((0, 0), |r| (r.pc, r.err));
            self.end_child(
                label,
                format_args!(
                    "stopped: its runtime raised an exception (ESR {esr:#x}) at pc {pc:#x}"
                ),
            );
            return MsgTag::reply(Err(Error::NoReply));
        }
        Parent::dispatch(&mut View { moe: self, label }, ctx, tag, mrs)
    }
}

/// moe seen from one object's request.
struct View<'a> {
    moe: &'a mut Moe,
    label: u64,
}

impl View<'_> {
    fn kind(&mut self) -> Result<&mut Kind, Error> {
        self.moe
            .objects
            .get_mut(&self.label)
            .map(|o| &mut o.kind)
            .ok_or(Error::NoEnt)
    }

    /// The dataspace and moe's memory.
    fn ds(&mut self) -> Result<(&mut Ds, &mut PageAlloc), Error> {
        match self.moe.objects.get_mut(&self.label).map(|o| &mut o.kind) {
            Some(&mut Kind::Ds(ref mut ds)) => Ok((ds, &mut self.moe.pages)),
            _ => Err(Error::NoEnt),
        }
    }

    fn names(&mut self) -> Result<&mut Names, Error> {
        match self.kind()? {
            Kind::Ns(n) => Ok(n),
            _ => Err(Error::NoEnt),
        }
    }
}

impl DataspaceServer for View<'_> {
    fn map(&mut self, ctx: &Ctx, offset: u64, spot: u64, flags: u64) -> Result<MemArg, Error> {
        moe::ds::cap_allows_write(ctx.rights(), flags & ds_flags::W != 0)?;
        let (ds, pages) = self.ds()?;
        let f = ds.map(offset, spot, flags, &mut |s, o| alloc_zeroed(pages, s, o))?;
        Ok(MemArg::map(f, spot))
    }

    fn clear(&mut self, ctx: &Ctx, offset: u64, size: u64) -> Result<(), Error> {
        moe::ds::cap_allows_write(ctx.rights(), true)?;
        let (ds, _) = self.ds()?;
        for (a, n) in ds.clear_ranges(offset, size)? {
            // SAFETY: the range is memory of this dataspace (moe's 1:1 RAM,
            // read-write); clients that map it see the zeroes, as they should.
            unsafe { core::ptr::write_bytes(a as *mut u8, 0, n as usize) };
        }
        Ok(())
    }

    fn info(&mut self, ctx: &Ctx) -> Result<(u64, u64), Error> {
        let (ds, _) = self.ds()?;
        Ok((
            ds.size(),
            moe::ds::visible_rights(ds.rights(), ctx.rights()),
        ))
    }

    fn copy_in(&mut self, _: &Ctx, _: u64, _: CapArg, _: u64, _: u64) -> Result<(), Error> {
        Err(Error::NoSys)
    }

    fn allocate(&mut self, ctx: &Ctx, offset: u64, size: u64) -> Result<(), Error> {
        moe::ds::cap_allows_write(ctx.rights(), true)?;
        let (ds, pages) = self.ds()?;
        ds.allocate(offset, size, &mut |s, o| alloc_zeroed(pages, s, o))
    }
}

impl DataspacePhysServer for View<'_> {
    fn phys(&mut self, _: &Ctx, offset: u64) -> Result<(u64, u64), Error> {
        let (ds, pages) = self.ds()?;
        ds.phys_at(offset, &mut |s, o| alloc_zeroed(pages, s, o))
    }
}

/// Moves a received capability into a slot of moe's own.
fn keep_cap(c: CapArg) -> Result<u64, Error> {
    let slot = SLOTS.alloc().ok_or(Error::NoMem)?;
    base::TASK
        .map_cap(base::TASK, c.index, c.rights, slot)
        .inspect_err(|_| {
            SLOTS.free(slot);
        })?;
    Ok(slot)
}

impl NamespaceServer for View<'_> {
    fn query(&mut self, _: &Ctx, name: Str<NAME_MAX>) -> Result<(u64, CapArg), Error> {
        if matches!(self.kind()?, Kind::Rom) {
            let m = self
                .moe
                .modules
                .iter()
                .find(|m| m.name == name.as_str())
                .ok_or(Error::NoEnt)?;
            return Ok((0, CapArg::new(m.gate, CapRights::RO)));
        }
        let (e, rest) = self.names()?.query(&name)?;
        let rights = CapRights((e.flags & ns_flags::CAP_FLAGS) as u8).union(CapRights::R);
        Ok((rest, CapArg::new(e.cap.unwrap_or(0), rights)))
    }

    fn register(
        &mut self,
        _: &Ctx,
        flags: u64,
        name: Str<NAME_MAX>,
        cap: OptCap,
    ) -> Result<(), Error> {
        if matches!(self.kind()?, Kind::Rom) {
            return Err(Error::Perm);
        }
        let slot = cap.0.map(keep_cap).transpose()?;
        match self.names()?.register(&name, slot, flags) {
            Ok(old) => {
                old.into_iter().for_each(release_slot);
                Ok(())
            }
            Err(e) => {
                slot.into_iter().for_each(release_slot);
                Err(e)
            }
        }
    }

    fn unlink(&mut self, _: &Ctx, name: Str<NAME_MAX>) -> Result<(), Error> {
        if matches!(self.kind()?, Kind::Rom) {
            return Err(Error::Perm);
        }
        let old = self.names()?.unlink(&name)?;
        old.into_iter().for_each(release_slot);
        Ok(())
    }
}

impl LogServer for View<'_> {
    fn write(
        &mut self,
        _: &Ctx,
        data: Bytes<{ l4_ipc::protocols::LOG_WRITE_MAX }>,
    ) -> Result<(), Error> {
        match self.kind()? {
            Kind::Log(log) => {
                log.write(&data, &mut |l: &[u8]| {
                    let _ = base::LOG.write(l);
                });
                Ok(())
            }
            _ => Err(Error::NoEnt),
        }
    }

    fn read(&mut self, _: &Ctx, _: u64) -> Result<LogRead, Error> {
        Ok(LogRead {
            data: Bytes::empty(),
            flags: vcon::READ_STAT_DONE,
        })
    }

    fn set_attr(&mut self, _: &Ctx, _: u64, _: u64, _: u64) -> Result<(), Error> {
        Ok(())
    }

    fn get_attr(&mut self, _: &Ctx) -> Result<(u64, u64, u64), Error> {
        Ok((0, 0, 0))
    }
}

impl FactoryServer for View<'_> {
    fn create_dataspace(
        &mut self,
        _: &Ctx,
        size: VUint,
        flags: VOpt<VUint>,
        align: VOpt<VUint>,
    ) -> Result<RcvCap, Error> {
        use mem_alloc_flags::*;
        let (size, flags) = (size.0, flags.0.map_or(0, |f| f.0));
        let align = align.0.map_or(0, |a| a.0);
        if size == 0 || flags & !(CONTINUOUS | PINNED | SUPER_PAGES) != 0 || align > 30 {
            println!(
                "moe: factory: bad dataspace request (size {size:#x}, flags {flags:#x}, align {align})"
            );
            return Err(Error::Inval);
        }
        let pages = &mut self.moe.pages;
        if size > pages.free_bytes() && (flags & (CONTINUOUS | PINNED) != 0 || size > pages.total())
        {
            println!(
                "moe: out of memory: a dataspace of {size:#x} bytes requested, {:#x} free",
                pages.free_bytes()
            );
            return Err(Error::NoMem);
        }
        let ds = if flags & CONTINUOUS != 0 {
            let mut order = (align as u8).max(moe::pages::MIN_ORDER);
            if flags & SUPER_PAGES != 0 && size >= 1 << moe::ds::SUPER_ORDER {
                order = order.max(moe::ds::SUPER_ORDER);
            }
            let Some(pa) = alloc_zeroed(pages, size, order) else {
                println!(
                    "moe: out of memory: no contiguous {size:#x} bytes (largest free block {:#x})",
                    pages.largest_block()
                );
                return Err(Error::NoMem);
            };
            Ds::phys(pa, size, ds_flags::RWX, flags, true)
        } else {
            let mut ds = Ds::on_demand(size, ds_flags::RWX, flags);
            if flags & PINNED != 0
                && let Err(e) = ds.pin(&mut |s, o| alloc_zeroed(pages, s, o))
            {
                println!("moe: out of memory: cannot pin {size:#x} bytes");
                for (a, s) in ds.release() {
                    pages.free(a, s);
                }
                return Err(e);
            }
            ds
        };
        let gate = self.moe.new_object(Kind::Ds(ds))?;
        Ok(RcvCap::new(gate, CapRights::RWS))
    }

    fn create_namespace(&mut self, _: &Ctx) -> Result<RcvCap, Error> {
        let gate = self.moe.new_object(Kind::Ns(Names::new()))?;
        Ok(RcvCap::new(gate, CapRights::RWS))
    }

    fn create_log(
        &mut self,
        _: &Ctx,
        tag: VStr<{ l4_ipc::protocols::LOG_TAG_MAX }>,
        colour: VOpt<VAny<16>>,
        _opts: VarArgs,
    ) -> Result<RcvCap, Error> {
        let colour = match colour.0 {
            None => None,
            Some(VAny::Str(s)) => colour_letter(&s),
            Some(v) => v.as_int().and_then(colour_number),
        };
        let gate = self
            .moe
            .new_object(Kind::Log(LineLog::new(tag.as_str(), colour)))?;
        Ok(RcvCap::new(gate, CapRights::RWS))
    }

    fn create_scheduler(
        &mut self,
        _: &Ctx,
        max_prio: VUint,
        base_prio: VUint,
        cpus: VOpt<VUint>,
    ) -> Result<RcvCap, Error> {
        let lim = SchedLimits::new(max_prio.0, base_prio.0, cpus.0.map(|c| c.0)).map_err(|e| {
            println!("moe: factory: scheduler proxy refused: {e}");
            Error::Inval
        })?;
        let gate = self.moe.new_object(Kind::Sched(lim))?;
        Ok(RcvCap::new(gate, CapRights::RWS))
    }

    fn create_ipc_gate(
        &mut self,
        _: &Ctx,
        label: VOpt<VUint>,
        thread: OptCap,
    ) -> Result<RcvCap, Error> {
        let slot = SLOTS.alloc().ok_or(Error::NoMem)?;
        let t = thread.0.map(|c| Cap::from_index(c.index));
        match base::FACTORY.create_gate(slot, label.0.map_or(0, |l| l.0), t) {
            Ok(_) => {
                self.moe.granted.push(slot);
                Ok(RcvCap::new(slot, CapRights::ALL))
            }
            Err(e) => {
                SLOTS.free(slot);
                Err(e)
            }
        }
    }

    fn create_factory(&mut self, _: &Ctx, quota: VUint) -> Result<RcvCap, Error> {
        let slot = SLOTS.alloc().ok_or(Error::NoMem)?;
        match base::FACTORY.create_factory(slot, quota.0) {
            Ok(_) => {
                self.moe.granted.push(slot);
                Ok(RcvCap::new(slot, CapRights::ALL))
            }
            Err(e) => {
                SLOTS.free(slot);
                Err(e)
            }
        }
    }
}

impl ParentServer for View<'_> {
    fn signal(&mut self, _: &Ctx, sig: u64, val: u64) -> Result<(), Error> {
        if sig == parent_signal::EXIT {
            self.moe
                .end_child(self.label, format_args!("exited with code {}", val as i64));
        } else {
            println!(
                "moe: '{}' sent signal {sig} ({val:#x}); ignored",
                self.moe.name_of(self.label)
            );
        }
        Ok(())
    }
}

/// Which kind an object is, without borrowing it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum K {
    Ds,
    Ns,
    Log,
    Factory,
    Sched,
    Parent,
}

impl Registry for Moe {
    fn handler(&mut self, label: u64) -> Option<&mut dyn Handler> {
        if self.objects.contains_key(&(label & LABEL_MASK)) {
            Some(self)
        } else {
            None
        }
    }
}

impl Handler for Moe {
    fn handle(&mut self, ctx: &Ctx, tag: MsgTag, mrs: &mut [u64; MR_COUNT]) -> MsgTag {
        self.release_granted();
        let label = ctx.label() & LABEL_MASK;
        let Some(obj) = self.objects.get(&label) else {
            return MsgTag::reply(Err(Error::NoEnt));
        };
        let what = obj.kind.name();
        let k = match obj.kind {
            Kind::Ds(_) => K::Ds,
            Kind::Ns(_) | Kind::Rom => K::Ns,
            Kind::Log(_) => K::Log,
            Kind::Factory => K::Factory,
            Kind::Sched(_) => K::Sched,
            Kind::Parent(_) => K::Parent,
        };
        let op = if tag.words() > 0 { mrs[0] } else { u64::MAX };
        let mut view = View { moe: self, label };
        let reply = match k {
            K::Ds if tag.label() == DataspacePhys::ID && op == DataspacePhys::phys => {
                DataspacePhys::dispatch(&mut view, ctx, tag, mrs)
            }
            K::Ds => Dataspace::dispatch(&mut view, ctx, tag, mrs),
            K::Ns => Namespace::dispatch(&mut view, ctx, tag, mrs),
            K::Log => Log::dispatch(&mut view, ctx, tag, mrs),
            K::Factory => Factory::dispatch(&mut view, ctx, tag, mrs),
            K::Sched => self.sched_request(label, tag, mrs),
            K::Parent => self.parent_request(label, ctx, tag, mrs),
        };
        match reply.to_result() {
            Ok(_) if k == K::Factory && !self.granted.is_empty() => {
                // Hand the new kernel object over instead of sharing it.
                let at = reply.words() as usize;
                if reply.items() == 1 && at < MR_COUNT {
                    mrs[at] |= item::GRANT;
                }
            }
            Ok(_) => {}
            Err(Error::NoReply) => {}
            Err(Error::NoEnt) if k == K::Ns && op == Namespace::query => {}
            Err(e) => println!(
                "moe: {what} {label:#x}: request {op:#x} (protocol {}) refused: {}",
                tag.label(),
                e.describe()
            ),
        }
        reply
    }
}

/// Serves forever.
pub fn serve(moe: Moe) -> ! {
    let transport = UtcbServerTransport::new(RecvBufs::cap_slot(RCV_SLOT));
    let mut server = Server::new(moe, transport);
    server.run()
}

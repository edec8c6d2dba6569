//! [`start`]: a new task running the runtime, and [`Child`], its handle.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use l4_abi::sys::CAP_SHIFT;
use l4_abi::{CapRights, Error, Fpage, MemRights, SendItem};
use l4_env::{EnvError, caps};

use crate::elf::{Elf, ElfError, Segment};
use crate::{PAGE, blocks};

/// Largest flexpage order the loader maps in one item.
const MAX_MAP_ORDER: u8 = 30;

/// The kernel operations the loader needs. Capability arguments are
/// indices in the *loading* task; errors are the kernel's.
pub trait Sys {
    /// Creates a task in slot `dest` with `utcb_area` (kernel factory).
    fn create_task(&mut self, dest: u64, utcb_area: Fpage) -> Result<(), Error>;
    /// Creates a thread in slot `dest`.
    fn create_thread(&mut self, dest: u64) -> Result<(), Error>;
    /// Creates a kernel factory with `quota` bytes in slot `dest`.
    fn create_factory(&mut self, dest: u64, quota: u64) -> Result<(), Error>;
    /// Creates an IPC gate with `label` in slot `dest`, bound to the
    /// loader's server thread (where the child's parent requests arrive).
    fn create_gate(&mut self, dest: u64, label: u64) -> Result<(), Error>;
    /// Maps `item` (memory or capabilities of the loading task; the send
    /// base is the destination) into task `task`.
    fn map(&mut self, task: u64, item: SendItem) -> Result<(), Error>;
    /// Binds `thread` to `task` with its UTCB at `utcb`, with `handler` (a
    /// selector in the *child*) as its pager and exception handler.
    fn control(&mut self, thread: u64, task: u64, utcb: u64, handler: u64) -> Result<(), Error>;
    /// Sets the thread's pc and sp.
    fn ex_regs(&mut self, thread: u64, pc: u64, sp: u64) -> Result<(), Error>;
    /// Runs the thread through `scheduler` at `prio` on the CPUs of `cpus`.
    fn run(&mut self, scheduler: u64, thread: u64, prio: u64, cpus: u64) -> Result<(), Error>;
    /// Deletes the object of capability `cap` (best effort).
    fn delete(&mut self, cap: u64);
    /// Revokes every mapping derived from the loader's memory
    /// `[addr, addr + size)` (best effort), before the memory is reused.
    fn unmap_own(&mut self, addr: u64, size: u64);
}

/// What the loading task provides.
pub trait Host {
    /// A free capability slot.
    fn alloc_cap(&mut self) -> Option<u64>;
    /// Returns a slot from [`Host::alloc_cap`].
    fn free_cap(&mut self, idx: u64);
    /// `size` bytes (a page multiple) of zeroed, page-aligned memory,
    /// present (mapped) in the loading task, so that [`Sys::map`] can map it
    /// on; returns its address.
    fn alloc_mem(&mut self, size: u64) -> Option<u64>;
    /// Returns memory from [`Host::alloc_mem`].
    fn free_mem(&mut self, addr: u64, size: u64);
    /// Copies `bytes` to `addr`, inside memory from [`Host::alloc_mem`].
    fn write_mem(&mut self, addr: u64, bytes: &[u8]);
}

/// A named capability for the child (ned's `caps = { name = cap }`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NamedCap<'a> {
    /// The name (at most [`l4_env::NAME_LEN`] bytes).
    pub name: &'a str,
    /// The capability in the loading task.
    pub index: u64,
    /// The rights the child gets.
    pub rights: CapRights,
}

/// The service capabilities of the child (indices in the loading task; 0
/// leaves the child's slot empty).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChildCaps {
    /// [`caps::LOG`] (Vcon protocol).
    pub log: u64,
    /// [`caps::SCHEDULER`] (kernel scheduler or a proxy).
    pub scheduler: u64,
    /// [`caps::MEM_ALLOC`] (moe's user factory).
    pub mem_alloc: u64,
    /// [`caps::ROM`] (the `rom/` namespace).
    pub rom: u64,
    /// [`caps::PROGRAM`] (the program's ELF dataspace).
    pub program: u64,
}

/// How to start a program.
#[derive(Clone, Copy, Debug)]
pub struct StartArgs<'a> {
    /// The program (`rom/name`): `argv[0]`, and the name in messages.
    pub program: &'a str,
    /// Its arguments.
    pub args: &'a [&'a str],
    /// Its environment strings (`NAME=value`).
    pub envs: &'a [&'a str],
    /// The runtime's ELF file (`rom/l4re`), present in the loading task.
    pub runtime: &'a [u8],
    /// The address of `runtime` in the loading task (page-aligned for its
    /// read-only segments to be mapped without copying; the memory from
    /// there up to the next page boundary after the file must be mapped).
    pub runtime_addr: u64,
    /// The service capabilities.
    pub caps: ChildCaps,
    /// Named capabilities, at [`caps::FIRST_NAMED`] on.
    pub named: &'a [NamedCap<'a>],
    /// The label of the child's parent gate.
    pub parent_label: u64,
    /// Quota of the child's kernel factory, in bytes.
    pub factory_quota: u64,
    /// Priority of the runtime thread.
    pub prio: u64,
    /// CPUs of the runtime thread (bit `i` = CPU `i`).
    pub cpus: u64,
    /// The runtime's debug flags (`l4re_dbg`).
    pub dbg: u32,
    /// The CPU features the child may use (the loader's own, as it got
    /// them): its runtime reports them to the program as `AT_HWCAP`.
    pub cpu_id: l4_abi::cpuid::CpuId,
}

/// Why a program could not be started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadError {
    /// The runtime is not a loadable ELF file.
    Elf(ElfError),
    /// Arguments, environment or capability names do not fit.
    Env(EnvError),
    /// A runtime segment collides with a fixed area (named).
    Layout(&'static str),
    /// No capability slot left in the loader.
    NoCapSlot,
    /// No memory left in the loader.
    NoMem,
    /// A kernel operation failed: what, and the error.
    Kernel(&'static str, Error),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Elf(e) => write!(f, "runtime: {e}"),
            LoadError::Env(e) => write!(f, "environment: {e}"),
            LoadError::Layout(what) => write!(f, "runtime segment overlaps the {what}"),
            LoadError::NoCapSlot => f.write_str("out of capability slots"),
            LoadError::NoMem => f.write_str("out of memory"),
            LoadError::Kernel(what, e) => write!(f, "{what}: {}", e.describe()),
        }
    }
}

impl From<ElfError> for LoadError {
    fn from(e: ElfError) -> LoadError {
        LoadError::Elf(e)
    }
}

impl From<EnvError> for LoadError {
    fn from(e: EnvError) -> LoadError {
        LoadError::Env(e)
    }
}

/// A started program: what the loader created for it.
#[derive(Debug)]
pub struct Child {
    /// The program (`rom/name`).
    pub name: String,
    /// The label of its parent gate.
    pub label: u64,
    /// Its task (loader's index).
    pub task: u64,
    /// Its runtime thread.
    pub thread: u64,
    /// Its kernel factory.
    pub factory: u64,
    /// Its parent gate.
    pub gate: u64,
    /// Memory of the loader mapped into it (address, size).
    pub mem: Vec<(u64, u64)>,
}

impl Child {
    /// Deletes the task, its runtime thread, factory and parent gate, and
    /// returns the memory and capability slots. Threads the runtime
    /// created die with the task; objects created through its factory
    /// stay with their holders.
    pub fn destroy(self, sys: &mut impl Sys, host: &mut impl Host) {
        for cap in [self.task, self.thread, self.gate, self.factory] {
            if cap != 0 {
                sys.delete(cap);
                host.free_cap(cap);
            }
        }
        for (addr, size) in self.mem {
            sys.unmap_own(addr, size);
            host.free_mem(addr, size);
        }
    }
}

fn kernel(what: &'static str) -> impl FnOnce(Error) -> LoadError {
    move |e| LoadError::Kernel(what, e)
}

/// The fixed areas of a loaded task a runtime segment must stay clear of.
const FIXED_AREAS: [(&str, u64, u64); 3] = [
    (
        "UTCB area",
        l4_env::UTCB_AREA,
        l4_env::UTCB_AREA + l4_env::UTCB_AREA_SIZE,
    ),
    (
        "environment page",
        l4_env::ENV_VA,
        l4_env::ENV_VA + l4_env::ENV_SIZE as u64,
    ),
    (
        "runtime stack",
        l4_env::RUNTIME_STACK_TOP - l4_env::RUNTIME_STACK_SIZE,
        l4_env::RUNTIME_STACK_TOP,
    ),
];

fn check_layout(elf: &Elf<'_>) -> Result<(), LoadError> {
    for s in elf.segments() {
        for (what, start, end) in FIXED_AREAS {
            if s.page_start() < end && start < s.page_end() {
                return Err(LoadError::Layout(what));
            }
        }
    }
    Ok(())
}

fn mem_rights(s: &Segment) -> MemRights {
    let mut r = MemRights::R.0;
    if s.writable() {
        r |= MemRights::W.0;
    }
    if s.executable() {
        r |= MemRights::X.0;
    }
    MemRights(r)
}

/// Maps `[src, src + len)` of the loader to `dst` in `task`.
fn map_range(
    sys: &mut impl Sys,
    task: u64,
    src: u64,
    dst: u64,
    len: u64,
    rights: MemRights,
) -> Result<(), LoadError> {
    for (s, d, order) in blocks(src, dst, len, MAX_MAP_ORDER) {
        sys.map(task, SendItem::map(Fpage::mem(s, order, rights), d))
            .map_err(kernel("map memory into the task"))?;
    }
    Ok(())
}

/// A free capability slot of the loader.
fn slot(host: &mut impl Host) -> Result<u64, LoadError> {
    host.alloc_cap().ok_or(LoadError::NoCapSlot)
}

/// A new kernel object that `create` makes in a fresh slot; the slot goes
/// back if the kernel refuses (`what`: the step, for the error).
fn create_in_slot(
    host: &mut impl Host,
    what: &'static str,
    create: impl FnOnce(u64) -> Result<(), Error>,
) -> Result<u64, LoadError> {
    let s = slot(host)?;
    create(s).map_err(|e| {
        host.free_cap(s);
        LoadError::Kernel(what, e)
    })?;
    Ok(s)
}

/// Fresh memory of `len` bytes recorded in `child`.
fn fresh(host: &mut impl Host, child: &mut Child, len: u64) -> Result<u64, LoadError> {
    let a = host.alloc_mem(len).ok_or(LoadError::NoMem)?;
    child.mem.push((a, len));
    Ok(a)
}

fn load_segment(
    sys: &mut impl Sys,
    host: &mut impl Host,
    child: &mut Child,
    elf: &Elf<'_>,
    a: &StartArgs<'_>,
    s: &Segment,
) -> Result<(), LoadError> {
    let (start, end) = (s.page_start(), s.page_end());
    let rights = mem_rights(s);
    let in_page = s.vaddr - start;
    // A read-only segment whose file bytes cover it and sit at the same
    // offset in their page as in memory is mapped straight from the file.
    let file_page = (a.runtime_addr + s.offset).wrapping_sub(in_page);
    let file_end = a.runtime_addr + (a.runtime.len() as u64).next_multiple_of(PAGE);
    let direct = !s.writable()
        && s.filesz == s.memsz
        && a.runtime_addr.is_multiple_of(PAGE)
        && file_page.is_multiple_of(PAGE)
        && file_page >= a.runtime_addr
        && file_page + (end - start) <= file_end;
    if direct {
        return map_range(sys, child.task, file_page, start, end - start, rights);
    }
    let mem = fresh(host, child, end - start)?;
    host.write_mem(mem + in_page, elf.file_bytes(s));
    map_range(sys, child.task, mem, start, end - start, rights)
}

fn map_cap(
    sys: &mut impl Sys,
    task: u64,
    from: u64,
    to: u64,
    rights: CapRights,
) -> Result<(), LoadError> {
    if from == 0 {
        return Ok(());
    }
    sys.map(task, SendItem::caps(from, 0, rights, to << CAP_SHIFT))
        .map_err(kernel("map a capability into the task"))
}

/// Starts `a.program`: see the crate documentation. On failure everything
/// created so far is destroyed again.
pub fn start(
    sys: &mut impl Sys,
    host: &mut impl Host,
    a: &StartArgs<'_>,
) -> Result<Child, LoadError> {
    let elf = Elf::parse(a.runtime)?;
    check_layout(&elf)?;
    let names: Vec<&str> = a.named.iter().map(|n| n.name).collect();
    let mut env = crate::env::build_env(a.program, a.args, a.envs, &names, a.dbg)?;
    env.cpu_id = a.cpu_id;
    let mut child = Child {
        name: a.program.to_string(),
        label: a.parent_label,
        task: 0,
        thread: 0,
        factory: 0,
        gate: 0,
        mem: Vec::new(),
    };
    match build(sys, host, a, &elf, env.as_bytes(), &mut child) {
        Ok(()) => Ok(child),
        Err(e) => {
            child.destroy(sys, host);
            Err(e)
        }
    }
}

fn build(
    sys: &mut impl Sys,
    host: &mut impl Host,
    a: &StartArgs<'_>,
    elf: &Elf<'_>,
    env: &[u8],
    child: &mut Child,
) -> Result<(), LoadError> {
    let utcb_order = l4_env::UTCB_AREA_SIZE.trailing_zeros() as u8;
    let utcb_area = Fpage::mem(l4_env::UTCB_AREA, utcb_order, MemRights::RW);
    child.task = create_in_slot(host, "create the task", |s| sys.create_task(s, utcb_area))?;
    child.thread = create_in_slot(host, "create the runtime thread", |s| sys.create_thread(s))?;
    child.factory = create_in_slot(host, "create the task's factory", |s| {
        sys.create_factory(s, a.factory_quota)
    })?;
    child.gate = create_in_slot(host, "create the parent gate", |s| {
        sys.create_gate(s, a.parent_label)
    })?;

    for s in elf.segments() {
        load_segment(sys, host, child, elf, a, s)?;
    }
    let stack = fresh(host, child, l4_env::RUNTIME_STACK_SIZE)?;
    map_range(
        sys,
        child.task,
        stack,
        l4_env::RUNTIME_STACK_TOP - l4_env::RUNTIME_STACK_SIZE,
        l4_env::RUNTIME_STACK_SIZE,
        MemRights::RW,
    )?;
    let env_len = l4_env::ENV_SIZE as u64;
    let page = fresh(host, child, env_len)?;
    host.write_mem(page, env);
    map_range(sys, child.task, page, l4_env::ENV_VA, env_len, MemRights::R)?;

    let task = child.task;
    let fixed = [
        (child.task, caps::THIS_TASK, CapRights::ALL),
        (child.factory, caps::FACTORY, CapRights::ALL),
        (child.thread, caps::RUNTIME_THREAD, CapRights::ALL),
        (child.gate, caps::PARENT, CapRights::RWS),
        (a.caps.log, caps::LOG, CapRights::RWS),
        (a.caps.scheduler, caps::SCHEDULER, CapRights::RWS),
        (a.caps.mem_alloc, caps::MEM_ALLOC, CapRights::RWS),
        (a.caps.rom, caps::ROM, CapRights::RO),
        (a.caps.program, caps::PROGRAM, CapRights::RO),
    ];
    for (from, to, rights) in fixed {
        map_cap(sys, task, from, to, rights)?;
    }
    for (i, n) in a.named.iter().enumerate() {
        map_cap(sys, task, n.index, caps::FIRST_NAMED + i as u64, n.rights)?;
    }

    sys.control(child.thread, task, l4_env::UTCB_AREA, caps::PARENT)
        .map_err(kernel("bind the runtime thread"))?;
    sys.ex_regs(child.thread, elf.entry(), l4_env::RUNTIME_STACK_TOP)
        .map_err(kernel("set the runtime's registers"))?;
    sys.run(a.caps.scheduler, child.thread, a.prio, a.cpus)
        .map_err(kernel("run the runtime thread"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elf::build::elf;
    use crate::elf::{PF_R, PF_W, PF_X, PT_LOAD};
    use alloc::collections::BTreeMap;
    use alloc::vec;

    const BASE: u64 = l4_env::RUNTIME_BASE;

    /// Records kernel operations; fails the `fail_at`-th one.
    #[derive(Default)]
    struct FakeSys {
        log: Vec<String>,
        /// Memory mappings: child address -> (loader address, order, rights).
        mem: BTreeMap<u64, (u64, u8, u8)>,
        /// Capability mappings: child index -> (loader index, rights).
        caps: BTreeMap<u64, (u64, u8)>,
        deleted: Vec<u64>,
        unmapped: Vec<(u64, u64)>,
        ops: usize,
        fail_at: Option<usize>,
    }

    impl FakeSys {
        fn op(&mut self, s: String) -> Result<(), Error> {
            self.ops += 1;
            if self.fail_at == Some(self.ops) {
                return Err(Error::NoMem);
            }
            self.log.push(s);
            Ok(())
        }
    }

    impl Sys for FakeSys {
        fn create_task(&mut self, dest: u64, utcb: Fpage) -> Result<(), Error> {
            self.op(format!(
                "task {dest} utcb {:#x}/{}",
                utcb.mem_base(),
                utcb.order()
            ))
        }
        fn create_thread(&mut self, dest: u64) -> Result<(), Error> {
            self.op(format!("thread {dest}"))
        }
        fn create_factory(&mut self, dest: u64, quota: u64) -> Result<(), Error> {
            self.op(format!("factory {dest} {quota}"))
        }
        fn create_gate(&mut self, dest: u64, label: u64) -> Result<(), Error> {
            self.op(format!("gate {dest} {label:#x}"))
        }
        fn map(&mut self, _task: u64, it: SendItem) -> Result<(), Error> {
            self.op(String::new())?;
            self.log.pop();
            let f = it.fpage;
            if f.kind() == l4_abi::fpage::FpageType::Obj {
                self.caps.insert(
                    it.snd_base() >> CAP_SHIFT,
                    (f.obj_index(), it.cap_rights().0),
                );
            } else {
                self.mem
                    .insert(it.snd_base(), (f.mem_base(), f.order(), f.rights_bits()));
            }
            Ok(())
        }
        fn control(&mut self, th: u64, task: u64, utcb: u64, h: u64) -> Result<(), Error> {
            self.op(format!("control {th} {task} {utcb:#x} {h}"))
        }
        fn ex_regs(&mut self, th: u64, pc: u64, sp: u64) -> Result<(), Error> {
            self.op(format!("ex_regs {th} {pc:#x} {sp:#x}"))
        }
        fn run(&mut self, s: u64, th: u64, prio: u64, cpus: u64) -> Result<(), Error> {
            self.op(format!("run {s} {th} {prio} {cpus:#x}"))
        }
        fn delete(&mut self, cap: u64) {
            self.deleted.push(cap);
        }
        fn unmap_own(&mut self, addr: u64, size: u64) {
            self.unmapped.push((addr, size));
        }
    }

    /// Hands out slots from 0x100 and memory from 0x4000_0000 (bump).
    struct FakeHost {
        next_cap: u64,
        caps_left: usize,
        next_mem: u64,
        mem_left: u64,
        live_caps: Vec<u64>,
        live_mem: Vec<(u64, u64)>,
        bytes: BTreeMap<u64, Vec<u8>>,
    }

    impl FakeHost {
        fn new() -> FakeHost {
            FakeHost {
                next_cap: 0x100,
                caps_left: 100,
                next_mem: 0x4000_0000,
                mem_left: 1 << 30,
                live_caps: Vec::new(),
                live_mem: Vec::new(),
                bytes: BTreeMap::new(),
            }
        }
    }

    impl Host for FakeHost {
        fn alloc_cap(&mut self) -> Option<u64> {
            self.caps_left = self.caps_left.checked_sub(1)?;
            self.next_cap += 1;
            self.live_caps.push(self.next_cap);
            Some(self.next_cap)
        }
        fn free_cap(&mut self, idx: u64) {
            let at = self
                .live_caps
                .iter()
                .position(|&c| c == idx)
                .expect("double free");
            self.live_caps.remove(at);
        }
        fn alloc_mem(&mut self, size: u64) -> Option<u64> {
            assert_eq!(size % PAGE, 0);
            self.mem_left = self.mem_left.checked_sub(size)?;
            let a = self.next_mem;
            self.next_mem += size.next_multiple_of(1 << 21);
            self.live_mem.push((a, size));
            Some(a)
        }
        fn free_mem(&mut self, addr: u64, size: u64) {
            let at = self
                .live_mem
                .iter()
                .position(|&m| m == (addr, size))
                .unwrap();
            self.live_mem.remove(at);
        }
        fn write_mem(&mut self, addr: u64, bytes: &[u8]) {
            let (base, size) = *self
                .live_mem
                .iter()
                .find(|(a, s)| (*a..a + s).contains(&addr))
                .expect("write outside allocated memory");
            assert!(addr + bytes.len() as u64 <= base + size);
            self.bytes.insert(addr, bytes.to_vec());
        }
    }

    fn runtime() -> Vec<u8> {
        // Text: 0x1800 bytes at file offset 0x1000 (direct), data: 0x10
        // file bytes at 0x2800 in a 0x2000 segment (copied, bss zeroed).
        let mut body = vec![0x11u8; 0x1800];
        body.extend_from_slice(&[0x22; 0x10]);
        elf(
            BASE + 0x40,
            &[
                (PT_LOAD, PF_R | PF_X, 0x1000, BASE, 0x1800, 0x1800, 0x1000),
                (
                    PT_LOAD,
                    PF_R | PF_W,
                    0x2800,
                    BASE + 0x10800,
                    0x10,
                    0x2000,
                    0x1000,
                ),
            ],
            &body,
        )
    }

    const RT_ADDR: u64 = 0x4800_0000;

    fn args<'a>(rt: &'a [u8], named: &'a [NamedCap<'a>]) -> StartArgs<'a> {
        StartArgs {
            program: "rom/ned",
            args: &["rom/hello.ned"],
            envs: &[],
            runtime: rt,
            runtime_addr: RT_ADDR,
            caps: ChildCaps {
                log: 0x30,
                scheduler: 7,
                mem_alloc: 0x31,
                rom: 0x32,
                program: 0x33,
            },
            named,
            parent_label: 0x1230,
            factory_quota: 1 << 20,
            prio: 2,
            cpus: 0xf,
            dbg: 0,
            cpu_id: l4_abi::cpuid::CpuId::for_tasks(0x10_0000, 0, 0),
        }
    }

    #[test]
    fn starts_a_task() {
        let rt = runtime();
        let named = [NamedCap {
            name: "icu",
            index: 6,
            rights: CapRights::RWS,
        }];
        let (mut sys, mut host) = (FakeSys::default(), FakeHost::new());
        let c = start(&mut sys, &mut host, &args(&rt, &named)).unwrap();
        assert_eq!(
            (c.task, c.thread, c.factory, c.gate),
            (0x101, 0x102, 0x103, 0x104)
        );
        assert_eq!(c.name, "rom/ned");
        assert_eq!(c.label, 0x1230);
        assert_eq!(
            sys.log,
            [
                "task 257 utcb 0x7ff000000000/16",
                "thread 258",
                "factory 259 1048576",
                "gate 260 0x1230",
                "control 258 257 0x7ff000000000 4",
                "ex_regs 258 0x7f0000000040 0x7fffffff0000",
                "run 7 258 2 0xf",
            ]
        );
        // Text mapped straight from the file (offset 0x1000), 8 KiB.
        assert_eq!(sys.mem[&BASE], (RT_ADDR + 0x1000, 12, 5));
        assert_eq!(sys.mem[&(BASE + 0x1000)], (RT_ADDR + 0x2000, 12, 5));
        // Data copied into fresh memory, three pages, RW.
        let (data, _, r) = sys.mem[&(BASE + 0x10000)];
        assert_eq!(r, 6);
        assert_eq!(host.bytes[&(data + 0x800)], [0x22; 0x10]);
        let data_pages: u64 = sys
            .mem
            .range(BASE + 0x10000..BASE + 0x20000)
            .map(|(_, m)| 1 << m.1)
            .sum();
        assert_eq!(data_pages, 0x3000);
        // Stack and environment page.
        let stack_base = l4_env::RUNTIME_STACK_TOP - l4_env::RUNTIME_STACK_SIZE;
        assert_eq!(sys.mem[&stack_base].1, 16);
        let (envp, order, r) = sys.mem[&l4_env::ENV_VA];
        assert_eq!((order, r), (13, 4));
        let env = &host.bytes[&envp];
        assert_eq!(env.len(), core::mem::size_of::<l4_env::Env>());
        assert_eq!(&env[..8], b"L4RE_ENV");
        let at = core::mem::offset_of!(l4_env::Env, cpu_id);
        let isar0 = u64::from_le_bytes(env[at..at + 8].try_into().unwrap());
        assert_eq!(isar0, 0x10_0000, "the CPU features passed on");
        // Capabilities.
        let all = CapRights::ALL.0;
        assert_eq!(sys.caps[&caps::THIS_TASK], (0x101, all));
        assert_eq!(sys.caps[&caps::FACTORY], (0x103, all));
        assert_eq!(sys.caps[&caps::RUNTIME_THREAD], (0x102, all));
        assert_eq!(sys.caps[&caps::PARENT], (0x104, CapRights::RWS.0));
        assert_eq!(sys.caps[&caps::LOG].0, 0x30);
        assert_eq!(sys.caps[&caps::SCHEDULER].0, 7);
        assert_eq!(sys.caps[&caps::MEM_ALLOC].0, 0x31);
        assert_eq!(sys.caps[&caps::ROM], (0x32, CapRights::RO.0));
        assert_eq!(sys.caps[&caps::PROGRAM].0, 0x33);
        assert_eq!(sys.caps[&caps::FIRST_NAMED], (6, CapRights::RWS.0));
        // Teardown returns everything.
        c.destroy(&mut sys, &mut host);
        assert_eq!(sys.deleted, [0x101, 0x102, 0x104, 0x103]);
        assert!(host.live_caps.is_empty() && host.live_mem.is_empty());
        assert_eq!(sys.unmapped.len(), 3);
    }

    #[test]
    fn copies_when_the_file_is_not_page_aligned() {
        let rt = runtime();
        let mut a = args(&rt, &[]);
        a.runtime_addr = RT_ADDR + 8;
        let (mut sys, mut host) = (FakeSys::default(), FakeHost::new());
        let c = start(&mut sys, &mut host, &a).unwrap();
        let (text, _, r) = sys.mem[&BASE];
        assert_eq!(r, 5);
        assert!(host.bytes[&text].iter().all(|&b| b == 0x11));
        assert_eq!(c.mem.len(), 4, "text, data, stack, env");
    }

    #[test]
    fn every_failure_cleans_up() {
        let rt = runtime();
        let total = {
            let (mut sys, mut host) = (FakeSys::default(), FakeHost::new());
            start(&mut sys, &mut host, &args(&rt, &[])).unwrap();
            sys.ops
        };
        for n in 1..=total {
            let mut sys = FakeSys {
                fail_at: Some(n),
                ..FakeSys::default()
            };
            let mut host = FakeHost::new();
            let e = start(&mut sys, &mut host, &args(&rt, &[])).unwrap_err();
            assert!(matches!(e, LoadError::Kernel(_, Error::NoMem)), "{e}");
            assert!(host.live_caps.is_empty(), "op {n}: slots leaked");
            assert!(host.live_mem.is_empty(), "op {n}: memory leaked");
        }
        // Out of slots and out of memory.
        for (caps, mem) in [(2, 1 << 30), (100, 0x2000)] {
            let mut host = FakeHost::new();
            host.caps_left = caps;
            host.mem_left = mem;
            let e = start(&mut FakeSys::default(), &mut host, &args(&rt, &[])).unwrap_err();
            assert!(matches!(e, LoadError::NoCapSlot | LoadError::NoMem));
            assert!(host.live_caps.is_empty() && host.live_mem.is_empty());
        }
    }

    #[test]
    fn refuses_bad_runtimes_and_layouts() {
        let (mut sys, mut host) = (FakeSys::default(), FakeHost::new());
        let junk = [0u8; 100];
        let e = start(&mut sys, &mut host, &args(&junk, &[])).unwrap_err();
        assert_eq!(e, LoadError::Elf(ElfError::BadMagic));
        assert_eq!(e.to_string(), "runtime: not an ELF file (bad magic)");
        let at_env = elf(
            l4_env::ENV_VA,
            &[(PT_LOAD, PF_R | PF_X, 0x1000, l4_env::ENV_VA, 0x10, 0x10, 0)],
            &[0; 0x10],
        );
        let e = start(&mut sys, &mut host, &args(&at_env, &[])).unwrap_err();
        assert_eq!(e, LoadError::Layout("environment page"));
        let dup = [NamedCap {
            name: "a",
            index: 1,
            rights: CapRights::R,
        }; 2];
        let rt = runtime();
        let e = start(&mut sys, &mut host, &args(&rt, &dup)).unwrap_err();
        assert_eq!(e, LoadError::Env(EnvError::BadName));
        assert!(sys.log.is_empty(), "nothing created");
    }
}

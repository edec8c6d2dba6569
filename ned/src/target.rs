//! [`TargetBackend`]: the [`Backend`] of the real system (AArch64 musl).
//!
//! | operation           | how                                                              |
//! |---------------------|------------------------------------------------------------------|
//! | `L4.Env`            | the well-known indices of [`l4_env::caps`] and the named capabilities of ned's environment page ([`l4re::env`]) |
//! | `new_channel`       | an IPC gate from the kernel factory, not bound yet               |
//! | `create`            | the Factory protocol ([`l4_ipc::protocols::FactoryClient`]) with L4Re's typed arguments |
//! | name spaces         | the Namespace protocol                                           |
//! | `start`             | [`l4_loader::start`]: the runtime from `l4re_loader`, the program's dataspace from ned's `rom` name space |
//! | `kill`              | [`l4_loader::Child::destroy`]                                    |
//! | `rom/` files        | `std::fs` (the runtime serves `rom/`)                            |
//! | log, sleep          | standard output, `std::thread::sleep`                            |
//!
//! The children's parent gates are bound to ned's main thread (the
//! runtime puts it at `MAIN_THREAD`) labelled with the child's task id (above
//! the two bits that carry the sender's rights):
//! `wait` and the exit handlers receive the children's exit signals and
//! the faults of their runtimes there. Not available: `L4.server_loop`.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::time::Duration;

use l4::{Cap as KCap, Factory, SlotAlloc, Task};
use l4_abi::{Error, MsgTag};
use l4_env::caps;
use l4_ipc::protocols::{FactoryClient, NamespaceClient, ns_flags};
use l4_ipc::varg::VarArgs;
use l4_ipc::{CapArg, RecvBufs};
use l4_loader::kernel::KernelSys;
use l4_loader::{Child, ChildCaps, Host, NamedCap, StartArgs};
use l4re::linux::{Sys, mman};

use crate::backend::{
    Backend, BackendError, ExitCode, FactoryArg, Result, StartSpec, TaskId, TaskState,
};
use crate::cap::Cap;
use crate::proto;

/// Capability slots ned allocates: the program's range of the runtime
/// ([`l4re::env::FIRST_PROGRAM_CAP`] up to [`l4re::env::CAP_LIMIT`]).
const SLOT_WORDS: usize = ((l4re::env::CAP_LIMIT - l4re::env::FIRST_PROGRAM_CAP) / 64) as usize;

/// Kernel-memory quota of a started task's factory.
const CHILD_FACTORY_QUOTA: u64 = 6 << 20;
/// Priority of a child's runtime thread (through its scheduler): that of
/// the program's own threads, which it serves (their system calls and page
/// faults). Below them, a thread that spins on its CPU (a vCPU whose guest
/// waits for another vCPU) would starve it, and every thread waiting for
/// an answer with it.
const CHILD_PRIO: u64 = l4re::env::PROGRAM_PRIO;

/// The page size.
const PAGE: usize = 4096;

/// ned's part of the loader: capability slots and memory of its own.
struct NedHost {
    slots: SlotAlloc<SLOT_WORDS>,
}

impl Host for NedHost {
    fn alloc_cap(&mut self) -> Option<u64> {
        self.slots.alloc()
    }

    fn free_cap(&mut self, idx: u64) {
        self.slots.free(idx);
    }

    fn alloc_mem(&mut self, size: u64) -> Option<u64> {
        // Anonymous memory straight from the runtime, executable too: the
        // loader maps the runtime's code on from these pages, and a mapping
        // never gains rights on the way.
        let size = size.next_multiple_of(PAGE as u64).max(PAGE as u64);
        let prot = mman::PROT_READ | mman::PROT_WRITE | mman::PROT_EXEC;
        let flags = mman::MAP_PRIVATE | mman::MAP_ANONYMOUS;
        let p = linux_syscall(Sys::Mmap, [0, size, prot, flags, u64::MAX, 0]);
        if (p as i64) < 0 {
            return None;
        }
        // The loader maps these pages on into the child, so they must be
        // present in ned: touch every page (the runtime maps on faults).
        for off in (0..size).step_by(PAGE) {
            // SAFETY: `p .. p + size` was just mapped for us.
            unsafe { ((p + off) as *mut u8).write_volatile(0) };
        }
        Some(p)
    }

    fn free_mem(&mut self, addr: u64, size: u64) {
        let size = size.next_multiple_of(PAGE as u64).max(PAGE as u64);
        linux_syscall(Sys::Munmap, [addr, size, 0, 0, 0, 0]);
    }

    fn write_mem(&mut self, addr: u64, bytes: &[u8]) {
        // SAFETY: the loader writes only inside memory from `alloc_mem`,
        // which is ned's own, allocated and not aliased by Rust references.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), addr as *mut u8, bytes.len()) };
    }
}

/// A Linux system call with six arguments.
fn linux_syscall(nr: Sys, a: [u64; 6]) -> u64 {
    let nr = nr.nr();
    let ret: u64;
    // SAFETY: mmap/munmap of memory ned owns (anonymous, or a `rom/` file
    // read-only at a new place); the runtime serves the call and touches
    // nothing else of ours.
    unsafe {
        core::arch::asm!("svc #0", inlateout("x0") a[0] => ret, in("x1") a[1], in("x2") a[2],
            in("x3") a[3], in("x4") a[4], in("x5") a[5], in("x8") nr, options(nostack));
    }
    ret
}

/// A runtime image, the file mapped page-aligned into ned for the loader
/// to map its read-only segments straight into every child (kept for
/// good).
struct Runtime {
    addr: u64,
    len: usize,
}

impl Runtime {
    fn bytes(&self) -> &[u8] {
        // SAFETY: `addr .. addr + len` is the file mapped read-only by
        // `TargetBackend::runtime`, never unmapped.
        unsafe { std::slice::from_raw_parts(self.addr as *const u8, self.len) }
    }
}

struct Started {
    /// `None` once killed.
    child: Option<Child>,
    state: TaskState,
}

/// The real system.
pub struct TargetBackend {
    host: NedHost,
    sys: KernelSys,
    runtimes: BTreeMap<String, Runtime>,
    tasks: BTreeMap<TaskId, Started>,
    next_task: u64,
}

impl Default for TargetBackend {
    fn default() -> TargetBackend {
        TargetBackend::new()
    }
}

/// The label of child `id`'s parent gate: the id above the bits in which
/// the kernel passes the sender's capability rights.
fn parent_label(id: TaskId) -> u64 {
    id.0 << 2
}

/// The child a parent-gate label names (rights bits ignored).
fn task_of_label(label: u64) -> TaskId {
    TaskId(label >> 2)
}

impl TargetBackend {
    /// Waits for one message on a child's parent gate (they are bound to
    /// ned's main thread, labelled with the child's task id) and handles
    /// it: an exit signal makes the child a zombie with its code, a fault
    /// of its runtime one without; either way the child's task goes.
    fn receive_parent_message(&mut self) {
        use l4_abi::call::ipc_wait;
        let (r, label) = ipc_wait(l4_abi::Timeouts::NEVER);
        let Ok(tag) = r else { return };
        let id = task_of_label(label);
        let (op, sig, val) = (l4::utcb::mr(0), l4::utcb::mr(1), l4::utcb::mr(2));
        let code = if tag.label() == l4_ipc::protocols::ids::PARENT && op == 0 {
            if sig != l4_ipc::protocols::parent_signal::EXIT {
                let _ = l4::ipc::reply(MsgTag::new(0, 0, 0, 0));
                return;
            }
            let _ = l4::ipc::reply(MsgTag::new(0, 0, 0, 0));
            Some(val as i64)
        } else if tag.is_page_fault() || tag.is_exception() {
            self.log(&format!(
                "Ned: task {}: its runtime faulted; task ended",
                id.0
            ));
            None
        } else {
            let _ = l4::ipc::reply(MsgTag::new(Error::BadProto.as_ret(), 0, 0, 0));
            return;
        };
        let Some(t) = self.tasks.get_mut(&id) else {
            return;
        };
        if let Some(child) = t.child.take() {
            child.destroy(&mut self.sys, &mut self.host);
        }
        t.state = TaskState::Zombie(code);
    }

    /// ned's own capabilities as its environment has them.
    pub fn new() -> TargetBackend {
        TargetBackend {
            host: NedHost {
                slots: SlotAlloc::new(l4re::env::FIRST_PROGRAM_CAP),
            },
            sys: KernelSys {
                this_task: KCap::<Task>::from_index(caps::THIS_TASK),
                factory: KCap::<Factory>::from_index(caps::FACTORY),
                // The children's parent gates: their exit signals and the
                // faults of their runtimes come to ned's main thread.
                server_thread: KCap::from_index(caps::MAIN_THREAD),
            },
            runtimes: BTreeMap::new(),
            tasks: BTreeMap::new(),
            next_task: 1,
        }
    }

    fn slot(&mut self) -> Result<u64> {
        self.host
            .alloc_cap()
            .ok_or_else(|| BackendError::l4("ned has no capability slot left", Error::NoMem))
    }

    /// The runtime at `path`, mapped once: its file straight from `rom/`
    /// (read-only and executable, every page present), so that every
    /// child maps the same pages of the boot module.
    fn runtime(&mut self, path: &str) -> Result<(u64, usize)> {
        if let Some(r) = self.runtimes.get(path) {
            return Ok((r.addr, r.len));
        }
        let fail = |e: &dyn std::fmt::Display| BackendError::new(format!("{path}: {e}"));
        let file = std::fs::File::open(path).map_err(|e| fail(&e))?;
        let len = file.metadata().map_err(|e| fail(&e))?.len();
        if len == 0 {
            return Err(fail(&"empty file"));
        }
        let prot = mman::PROT_READ | mman::PROT_EXEC;
        let flags = mman::MAP_PRIVATE | mman::MAP_POPULATE;
        let fd = file.as_raw_fd() as u64;
        let addr = linux_syscall(Sys::Mmap, [0, len, prot, flags, fd, 0]);
        if (addr as i64) < 0 {
            return Err(fail(&std::io::Error::from_raw_os_error(
                -(addr as i64) as i32,
            )));
        }
        let r = Runtime {
            addr,
            len: len as usize,
        };
        self.runtimes.insert(path.to_string(), r);
        Ok((addr, len as usize))
    }

    /// The program's file as a dataspace, from ned's `rom` name space.
    fn program_dataspace(&mut self, program: &str) -> Result<u64> {
        let name = program
            .strip_prefix("rom/")
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                BackendError::l4(
                    format!("programs come from rom/, not '{program}'"),
                    Error::Inval,
                )
            })?;
        let c = self.ns_query(&Cap::new(caps::ROM, Some(proto::NAMESPACE)), name)?;
        Ok(c.obj)
    }
}

fn varargs(args: &[FactoryArg]) -> core::result::Result<VarArgs, Error> {
    let mut v = VarArgs::new();
    for a in args {
        match a {
            FactoryArg::Int(i) => v.push_int(*i)?,
            FactoryArg::Uint(u) => v.push_uint(*u)?,
            FactoryArg::Str(s) => v.push_str(s)?,
            FactoryArg::Nil => v.push_nil()?,
        };
    }
    Ok(v)
}

impl Backend for TargetBackend {
    fn env_caps(&mut self) -> Vec<(String, Cap)> {
        let mut out: Vec<(String, Cap)> = [
            ("parent", caps::PARENT, None),
            ("mem_alloc", caps::MEM_ALLOC, Some(proto::FACTORY)),
            ("log", caps::LOG, Some(proto::LOG)),
            ("factory", caps::FACTORY, Some(proto::FACTORY)),
            ("scheduler", caps::SCHEDULER, Some(proto::SCHEDULER)),
            ("rom", caps::ROM, Some(proto::NAMESPACE)),
        ]
        .into_iter()
        .map(|(n, i, p)| (n.to_string(), Cap::new(i, p)))
        .collect();
        if let Some(env) = l4re::env::env() {
            // Named capabilities win: moe names the kernel console `log`,
            // as L4Re's moe hands ned the kernel's log.
            for (name, index) in env.named_caps() {
                let p = match name {
                    "icu" => Some(-1),
                    "sigma0" => Some(proto::SIGMA0),
                    "log" => Some(proto::LOG),
                    _ => None,
                };
                out.retain(|(n, _)| n != name);
                out.push((name.to_string(), Cap::new(index, p)));
            }
        }
        out
    }

    fn new_channel(&mut self, factory: &Cap) -> Result<Cap> {
        let dest = self.slot()?;
        let r = KCap::<Factory>::from_index(factory.obj).create_gate(dest, 0, None);
        match r {
            Ok(_) => Ok(Cap::new(dest, Some(proto::IPC_GATE))),
            Err(e) => {
                self.host.free_cap(dest);
                Err(BackendError::l4("IPC gate", e))
            }
        }
    }

    fn create(&mut self, factory: &Cap, proto: i64, args: &[FactoryArg]) -> Result<Cap> {
        let v = varargs(args).map_err(|e| BackendError::l4("factory arguments", e))?;
        let dest = self.slot()?;
        let mut client = FactoryClient::new(factory.obj);
        client.rcv = RecvBufs::cap_slot(dest);
        match client.create(proto, &v) {
            Ok(c) => Ok(Cap::new(c.index(), Some(proto))),
            Err(e) => {
                self.host.free_cap(dest);
                Err(BackendError::l4("the factory refused", e))
            }
        }
    }

    fn ns_register(&mut self, ns: &Cap, name: &str, cap: Option<&Cap>) -> Result<()> {
        let mut client = NamespaceClient::new(ns.obj);
        let r = match cap {
            Some(c) => client.register(
                u64::from(c.rights.0) & ns_flags::CAP_FLAGS | ns_flags::OVERWRITE,
                name,
                Some(CapArg::new(c.obj, c.rights)),
            ),
            None => client.unlink(name),
        };
        r.map_err(|e| BackendError::l4(format!("name '{name}'"), e))
    }

    fn ns_query(&mut self, ns: &Cap, name: &str) -> Result<Cap> {
        let dest = self.slot()?;
        let mut client = NamespaceClient::new(ns.obj);
        client.rcv = RecvBufs::cap_slot(dest);
        match client.query(name) {
            Ok((0, c)) => Ok(Cap::new(c.index, None)),
            Ok(_) => {
                self.host.free_cap(dest);
                Err(BackendError::l4(
                    format!("name '{name}' (nested name spaces are not followed yet)"),
                    Error::NoEnt,
                ))
            }
            Err(e) => {
                self.host.free_cap(dest);
                Err(BackendError::l4(format!("name '{name}'"), e))
            }
        }
    }

    fn start(&mut self, spec: &StartSpec) -> Result<TaskId> {
        let (runtime_addr, runtime_len) = self.runtime(&spec.l4re_loader)?;
        let program = self.program_dataspace(&spec.program)?;
        let args: Vec<&str> = spec.args.iter().map(String::as_str).collect();
        let envs: Vec<&str> = spec.env.iter().map(String::as_str).collect();
        let named: Vec<NamedCap<'_>> = spec
            .caps
            .iter()
            .map(|(n, c)| NamedCap {
                name: n,
                index: c.obj,
                rights: c.rights,
            })
            .collect();
        let id = TaskId(self.next_task);
        let runtime = self.runtimes.get(&spec.l4re_loader).map(Runtime::bytes);
        let Some(runtime) = runtime else {
            return Err(BackendError::new("the runtime vanished"));
        };
        debug_assert_eq!(runtime.len(), runtime_len);
        let a = StartArgs {
            program: &spec.program,
            args: &args,
            envs: &envs,
            runtime,
            runtime_addr,
            caps: ChildCaps {
                log: spec.log.obj,
                scheduler: spec.scheduler.map_or(caps::SCHEDULER, |c| c.obj),
                mem_alloc: spec.mem.map_or(caps::MEM_ALLOC, |c| c.obj),
                rom: spec.cap("rom").map_or(caps::ROM, |c| c.obj),
                program,
            },
            named: &named,
            parent_label: parent_label(id),
            factory_quota: CHILD_FACTORY_QUOTA,
            prio: CHILD_PRIO,
            cpus: u64::MAX,
            dbg: spec.l4re_dbg as u32 | l4re::env::inherited_dbg(),
            cpu_id: l4re::env::cpu_id(),
        };
        let child = l4_loader::start(&mut self.sys, &mut self.host, &a)
            .map_err(|e| BackendError::new(e.to_string()))?;
        self.next_task += 1;
        self.tasks.insert(
            id,
            Started {
                child: Some(child),
                state: TaskState::Running,
            },
        );
        Ok(id)
    }

    fn task_state(&mut self, task: TaskId) -> TaskState {
        self.tasks.get(&task).map_or(TaskState::Reaped, |t| t.state)
    }

    fn wait(&mut self, task: TaskId) -> Result<ExitCode> {
        loop {
            match self.tasks.get(&task).map(|t| t.state) {
                None => return Err(BackendError::new("the task was already waited for")),
                Some(TaskState::Zombie(code)) => {
                    self.tasks.remove(&task);
                    return Ok(code);
                }
                Some(_) => self.receive_parent_message(),
            }
        }
    }

    fn kill(&mut self, task: TaskId) -> Result<()> {
        let Some(t) = self.tasks.get_mut(&task) else {
            return Err(BackendError::new("the task was already waited for"));
        };
        if let Some(child) = t.child.take() {
            child.destroy(&mut self.sys, &mut self.host);
            t.state = TaskState::Zombie(None);
        }
        Ok(())
    }

    fn wait_any(&mut self) -> Option<(TaskId, ExitCode)> {
        loop {
            let zombie = self
                .tasks
                .iter()
                .find(|(_, t)| matches!(t.state, TaskState::Zombie(_)))
                .map(|(id, _)| *id);
            if let Some(id) = zombie {
                return self.wait(id).ok().map(|code| (id, code));
            }
            if !self.tasks.values().any(|t| t.child.is_some()) {
                return None;
            }
            self.receive_parent_message();
        }
    }

    fn read_rom(&mut self, path: &str) -> Result<Vec<u8>> {
        std::fs::read(path).map_err(|e| BackendError::new(format!("{path}: {e}")))
    }

    fn log(&mut self, line: &str) {
        let _ = writeln!(std::io::stdout(), "{line}");
    }

    fn sleep(&mut self, duration: Duration) {
        std::thread::sleep(duration);
    }

    fn kernel_info(&mut self) -> String {
        "L4RS microkernel".to_string()
    }
}

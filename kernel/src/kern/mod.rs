//! The kernel proper: objects, capabilities, threads, scheduling and IPC.
//!
//! Everything here runs under the big kernel lock ([`bkl`]) and to
//! completion: an operation changes state, writes the result registers of
//! the threads it finishes, and marks threads blocked or ready. Only the
//! entry points ([`user_exception`], [`irq`], the idle loop) then call
//! [`schedule`], which may switch to another thread. No reference to the
//! kernel state is held across a switch, so a blocked thread's kernel
//! stack holds nothing but "release the lock, return to user mode": the
//! IPC fast path ([`fastpath`]) relies on that to hand the CPU from caller
//! to callee without switching kernel stacks.
//!
//! FP/SIMD state is switched lazily ([`fp`]). Idle CPUs other than the
//! timekeeper stop their tick and sleep until an IPI brings them work.

pub mod bkl;
mod fastpath;
mod fp;
mod invoke;
mod ipc;
pub mod task;
pub mod thread;
pub mod vcpu;
pub mod vm;
mod xfer;

use crate::arch::{self, KContext};
use crate::kprintln;
use crate::mm;
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::mem::MaybeUninit;
use kernel_core::kobj::{Arena, ObjId};
use kernel_core::mapdb::MapDb;
use kernel_core::sched::{CpuSet, Next, RunQueue, Running};
use l4_abi::{CapRights, Error};
use task::Task;
use thread::{State, Thread};

pub use invoke::{Semaphore, create_root_task};

/// A kernel object.
///
/// Tasks and threads are boxed and the tag is a plain byte: slots stay
/// small, and a lookup checks the kind (and that the slot is used) with
/// one compare.
#[repr(u8)]
pub enum KObject {
    Task(Box<Task>),
    Thread(Box<Thread>),
    Vm(Box<vm::Vm>),
    Gate(Gate),
    Factory(Factory),
    Irq(Irq),
    Semaphore(Semaphore),
    Scheduler,
    Icu,
    Vcon,
    Sigma0,
}

pub struct Gate {
    pub thread: Option<ObjId>,
    pub label: u64,
    /// Senders waiting for a thread to bind the gate (a server may bind
    /// after its clients started calling).
    pub waiters: alloc::collections::VecDeque<ObjId>,
}

pub struct Factory {
    /// Kernel memory this factory may still hand out, in bytes.
    pub quota: u64,
}

pub struct Irq {
    pub thread: Option<ObjId>,
    pub label: u64,
    /// Hardware interrupt number, if bound to one through the Icu.
    pub hw: Option<u32>,
    pub masked: bool,
    /// Bound to the vCPU of `thread`: triggering injects this interrupt
    /// (INTID, priority) into its guest.
    pub vcpu: Option<(u32, u8)>,
}

/// One CPU's scheduling state. The fields the IPC fast path reads come
/// first (`repr(C)`), where short offsets reach them.
#[derive(Default)]
#[repr(C)]
pub struct Cpu {
    pub current: Option<ObjId>,
    /// What TTBR0 holds ([`thread::Space::ttbr`]; 0: no user space yet).
    pub ttbr: u64,
    pub need_resched: bool,
    /// The IPC fast path may run (off with the kernel option `-nofastpath`).
    pub fast_path: bool,
    /// The running thread's slice ran out while others of its priority
    /// wait: it goes behind them at the next [`schedule`].
    pub slice_out: bool,
    /// EL0 may use FP/SIMD without trapping (a thread's state is loaded).
    pub fp_on: bool,
    /// The thread whose saved FP/SIMD state the registers still hold.
    pub fp_regs_of: Option<ObjId>,
    pub idle: KContext,
    pub rq: RunQueue<ObjId>,
}

impl Cpu {
    /// Installs the address space `space` unless it is there.
    #[inline(always)]
    pub fn switch_space(&mut self, space: thread::Space) {
        let ttbr = space.ttbr();
        if self.ttbr != ttbr {
            arch::set_user_space(ttbr);
            self.ttbr = ttbr;
        }
    }
}

pub struct Kernel {
    pub objs: Arena<KObject>,
    /// Every possible CPU (indexed by [`arch::cpu_id`]); `ncpus` exist.
    pub cpus: Box<[Cpu; arch::MAX_CPUS]>,
    pub ncpus: usize,
    pub online: CpuSet,
    pub mapdb: MapDb<ObjId>,
    next_asid: u16,
    /// Threads whose wait has a deadline.
    pub sleepers: Vec<ObjId>,
    /// Kernel memory each object cost and the factory that paid it.
    pub charges: alloc::collections::BTreeMap<ObjId, (ObjId, u64)>,
    /// Deleted threads whose kernel stack may still be in use. Boxed: a
    /// CPU switching away from one saves its context through a pointer.
    #[allow(clippy::vec_box)]
    zombies: Vec<Box<Thread>>,
    /// Address spaces of deleted tasks, freed once no CPU runs in them.
    dead_spaces: Vec<task::DeadSpace>,
}

/// The kernel state, set up by [`init`] before any entry point can run
/// (interrupts stay masked and no user thread exists until then).
static KERNEL: bkl::Locked<MaybeUninit<Kernel>> = bkl::Locked::new(MaybeUninit::uninit());
/// Whether [`init`] ran (checked in debug builds).
static READY: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// The boot-info page (read-only after boot) and its physical address.
static BOOTINFO: spin::Once<(&'static l4_bootinfo::BootInfo, u64)> = spin::Once::new();

pub fn bootinfo() -> &'static l4_bootinfo::BootInfo {
    BOOTINFO.get().expect("boot info before init").0
}

pub fn bootinfo_pa() -> u64 {
    BOOTINFO.get().expect("boot info before init").1
}

/// The kernel state.
///
/// # Safety
/// As [`bkl::Locked::get`]: the BKL is held and no other reference from
/// here is alive.
#[inline(always)]
unsafe fn k() -> &'static mut Kernel {
    debug_assert!(
        READY.load(core::sync::atomic::Ordering::Relaxed),
        "kernel state used before init"
    );
    // SAFETY: lock and uniqueness are the caller's contract; `init` wrote
    // the state before the first entry point ran.
    unsafe { KERNEL.get().assume_init_mut() }
}

/// Runs `f` on the kernel state. The BKL must be held by this CPU, and
/// `with` must not be nested (it is only used at the top of entry points).
pub fn with<R>(f: impl FnOnce(&mut Kernel) -> R) -> R {
    // SAFETY: callers hold the BKL (entry points take it first) and do not
    // nest `with`, so this is the only live reference.
    f(unsafe { k() })
}

/// Sets up the kernel state for `ncpus` CPUs, with the IPC fast path on
/// or off (kernel option `-nofastpath`). Boot CPU, BKL held.
pub fn init(ncpus: usize, info: &'static l4_bootinfo::BootInfo, info_pa: u64, fast_path: bool) {
    BOOTINFO.call_once(|| (info, info_pa));
    // Built on the heap one by one (the array would not fit a boot stack).
    let cpus: Box<[Cpu; arch::MAX_CPUS]> = (0..arch::MAX_CPUS)
        .map(|_| Cpu {
            fast_path,
            ..Cpu::default()
        })
        .collect::<Box<[Cpu]>>()
        .try_into()
        .unwrap_or_else(|_| unreachable!("MAX_CPUS elements"));
    // The two tables that grow with what tasks do get their room now, from
    // fixed shares of the heap, and never grow (a full table refuses with
    // NoMem): an eighth for objects, three eighths for mapping records.
    let heap = mm::heap_bytes() as usize;
    let max_objs = heap / 8 / Arena::<KObject>::slot_bytes();
    let mut objs = Arena::with_limit(max_objs);
    objs.reserve(max_objs);
    let mapdb = MapDb::with_capacity(heap / 8 * 3 / MapDb::<ObjId>::node_bytes());
    // SAFETY: boot CPU, BKL held, nothing else uses the state yet.
    unsafe {
        KERNEL.get().write(Kernel {
            objs,
            cpus,
            ncpus,
            online: CpuSet::first_n(ncpus),
            mapdb,
            next_asid: 1,
            sleepers: Vec::new(),
            charges: alloc::collections::BTreeMap::new(),
            zombies: Vec::new(),
            dead_spaces: Vec::new(),
        });
    }
    READY.store(true, core::sync::atomic::Ordering::Relaxed);
}

impl Kernel {
    pub fn thread(&self, id: ObjId) -> Option<&Thread> {
        match self.objs.get(id)? {
            KObject::Thread(t) => Some(t),
            _ => None,
        }
    }

    pub fn thread_mut(&mut self, id: ObjId) -> Option<&mut Thread> {
        match self.objs.get_mut(id)? {
            KObject::Thread(t) => Some(t),
            _ => None,
        }
    }

    /// The thread, known to exist (an internal invariant, not user input).
    pub fn t(&mut self, id: ObjId) -> &mut Thread {
        self.thread_mut(id).expect("thread vanished")
    }

    pub fn task(&self, id: ObjId) -> Option<&Task> {
        match self.objs.get(id)? {
            KObject::Task(t) => Some(t),
            _ => None,
        }
    }

    pub fn task_mut(&mut self, id: ObjId) -> Option<&mut Task> {
        match self.objs.get_mut(id)? {
            KObject::Task(t) => Some(t),
            _ => None,
        }
    }

    pub fn vm_mut(&mut self, id: ObjId) -> Option<&mut vm::Vm> {
        match self.objs.get_mut(id)? {
            KObject::Vm(v) => Some(v),
            _ => None,
        }
    }

    pub fn current(&self) -> ObjId {
        self.cpus[arch::cpu_id()]
            .current
            .expect("no current thread")
    }

    /// Binds thread `th` to task `task` with its UTCB at user address
    /// `utcb` (in the task's UTCB area). A thread is bound once.
    pub fn bind_thread(&mut self, th: ObjId, task: ObjId, utcb: u64) -> Result<(), Error> {
        let tk = self.task(task).ok_or(Error::Inval)?;
        let kva = tk.utcb_kva(utcb).ok_or(Error::Inval)?;
        let space = thread::Space {
            root: tk.pt_root,
            asid: tk.asid,
        };
        let t = self.thread_mut(th).ok_or(Error::Inval)?;
        if t.task.is_some() {
            return Err(Error::Busy);
        }
        t.task = Some(task);
        t.space = Some(space);
        t.utcb_uva = utcb;
        t.utcb_kva = kva;
        if let Some(tk) = self.task_mut(task) {
            tk.threads.push(th);
        }
        Ok(())
    }

    pub fn alloc_asid(&mut self) -> Option<u16> {
        // ASIDs are not reused yet: 65535 tasks per boot.
        let a = self.next_asid;
        self.next_asid = a.checked_add(1)?;
        Some(a)
    }

    /// Looks up capability `index` of task `task` with `need` rights; a
    /// capability to a deleted object is invalid.
    pub fn lookup_cap(
        &mut self,
        task: ObjId,
        index: u64,
        need: CapRights,
    ) -> Result<(ObjId, CapRights), Error> {
        let objs = &self.objs;
        let caps = match objs.get(task) {
            Some(KObject::Task(t)) => &t.caps,
            _ => return Err(Error::Inval),
        };
        match caps.lookup(index, need) {
            Ok(e) if objs.contains(e.obj) => Ok((e.obj, e.rights)),
            Ok(_) => Err(Error::NoEnt),
            Err(e) => Err(e.to_error()),
        }
    }

    /// Makes a thread ready on its CPU; asks that CPU to reschedule if the
    /// thread should preempt what runs there.
    pub fn make_ready(&mut self, id: ObjId) {
        let me = arch::cpu_id();
        let online = self.online;
        let t = self.t(id);
        t.state = State::Ready;
        t.deadline = None;
        // A running thread is not queued: on its own CPU it simply goes on;
        // on another (it migrated), that CPU queues it when it switches away.
        if t.queued.is_some() || !online.contains(t.cpu) || t.running_on.is_some() {
            return;
        }
        let (cpu, prio) = (t.cpu, t.sched.prio);
        let cur_prio = self.cpus[cpu]
            .current
            .and_then(|c| self.thread(c))
            .map(|c| c.sched.prio);
        let h = match self.cpus[cpu].rq.enqueue(id, prio) {
            Ok(h) => h,
            Err(_) => return,
        };
        self.t(id).queued = Some(h);
        if kernel_core::sched::should_preempt(cur_prio, prio) || cur_prio.is_none() {
            self.cpus[cpu].need_resched = true;
            if cpu != me {
                crate::irq::send_resched_ipi(cpu);
            }
        }
    }

    /// Takes a thread off its run queue (it blocks).
    pub fn make_blocked(&mut self, id: ObjId, state: State, deadline: Option<u64>) {
        let t = self.t(id);
        t.state = state;
        t.deadline = deadline;
        let (cpu, q) = (t.cpu, t.queued.take());
        if let Some(h) = q {
            self.cpus[cpu].rq.dequeue(h);
        }
        if deadline.is_some() && !self.sleepers.contains(&id) {
            self.sleepers.push(id);
        }
        if self.cpus[cpu].current == Some(id) {
            self.cpus[cpu].need_resched = true;
        }
    }

    /// Timer tick on this CPU: expire timeouts, account the time slice.
    pub fn tick(&mut self) {
        let now = arch::counter();
        let mut i = 0;
        while i < self.sleepers.len() {
            let id = self.sleepers[i];
            match self.thread(id).and_then(|t| t.deadline) {
                Some(d) if d <= now => {
                    self.sleepers.swap_remove(i);
                    ipc::timeout_expired(self, id);
                }
                Some(_) => i += 1,
                None => {
                    self.sleepers.swap_remove(i);
                }
            }
        }
        let cpu = arch::cpu_id();
        if let Some(cur) = self.cpus[cpu].current {
            let Some(t) = self.thread_mut(cur) else {
                return;
            };
            if t.state == State::Ready {
                let mut ctx = t.sched;
                let out = self.cpus[cpu].rq.tick(&mut ctx, 1);
                self.t(cur).sched = ctx;
                if out {
                    let c = &mut self.cpus[cpu];
                    c.slice_out = true;
                    c.need_resched = true;
                }
            }
        }
    }

    /// Deletes an object: capabilities to it become invalid at once (the
    /// arena slot's generation changes); threads blocked on it are woken
    /// with an error.
    pub fn delete_object(&mut self, id: ObjId) {
        ipc::abort_waiters_on(self, id);
        if let Some((fac, cost)) = self.charges.remove(&id) {
            invoke::refund(self, fac, cost);
        }
        match self.objs.remove(id) {
            Some(KObject::Thread(mut t)) => {
                if let Some(h) = t.queued.take() {
                    self.cpus[t.cpu].rq.dequeue(h);
                }
                // Forget every reference other objects hold to it.
                for (_, o) in self.objs.iter_mut() {
                    match o {
                        KObject::Thread(other) => {
                            other.senders.retain(|&s| s != id);
                            if other.reply_to == Some(id) {
                                other.reply_to = None;
                            }
                        }
                        KObject::Semaphore(sem) => sem.waiters.retain(|&w| w != id),
                        KObject::Gate(g) => {
                            if g.thread == Some(id) {
                                g.thread = None;
                            }
                            g.waiters.retain(|&w| w != id);
                        }
                        KObject::Irq(i) if i.thread == Some(id) => i.thread = None,
                        _ => {}
                    }
                }
                t.state = State::Dead;
                if let Some(c) = t.running_on {
                    self.cpus[c].need_resched = true;
                    if c != arch::cpu_id() {
                        crate::irq::send_resched_ipi(c);
                    }
                }
                self.zombies.push(t);
            }
            Some(KObject::Task(mut t)) => {
                let threads = core::mem::take(&mut t.threads);
                // Mappings others derived from the task's memory go too.
                self.mapdb
                    .remove_space(id, &mut xfer::Apply(&mut self.objs));
                for th in threads {
                    if self.thread(th).is_some() {
                        self.delete_object(th);
                    }
                }
                // The quota its translation tables took goes back.
                if let Some(f) = t.factory {
                    invoke::refund(self, f, t.tables_charged);
                }
                // Its threads may still run on other CPUs until those switch
                // away: the space's memory is freed by `reap` after that.
                self.dead_spaces.push(t.detach());
                self.reap();
            }
            Some(KObject::Vm(v)) => {
                // The guest's mappings go; vCPUs running in it are sent
                // out and find it gone. Its tables are freed (by dropping
                // it) once no CPU runs in it.
                self.mapdb
                    .remove_space(id, &mut xfer::Apply(&mut self.objs));
                if let Some(f) = v.factory {
                    invoke::refund(self, f, v.tables_charged);
                }
                vcpu::vm_deleted(self, id);
                drop(v);
            }
            _ => {}
        }
    }

    /// Frees dead threads whose stacks no CPU uses any more.
    fn reap(&mut self) {
        self.zombies.retain(|t| t.running_on.is_some());
        if !self.dead_spaces.is_empty() {
            let zombies = &self.zombies;
            // Dropping a dead space frees it.
            self.dead_spaces.retain(|d| {
                zombies
                    .iter()
                    .any(|z| z.space.is_some_and(|s| s.asid == d.asid))
            });
        }
    }
}

/// Picks what this CPU runs next and switches to it. Called at the end of
/// kernel entries with the BKL held; returns (possibly much later, on the
/// same thread) with the BKL held.
pub fn schedule() {
    let cpu = arch::cpu_id();
    let (from, to): (*mut KContext, *const KContext) = {
        // SAFETY: BKL held (callers); this borrow ends before the switch.
        let k = unsafe { k() };
        let c = &mut k.cpus[cpu];
        c.need_resched = false;
        let expired = core::mem::take(&mut c.slice_out);
        let prev = c.current;
        // The running thread is not queued; it goes on if it can and
        // nothing queued beats it (round robin: its slice ran out).
        let running = prev.and_then(|p| {
            let t = k.thread(p)?;
            (t.state == State::Ready && t.cpu == cpu).then_some(Running {
                item: p,
                prio: t.sched.prio,
                expired,
            })
        });
        let next = match k.cpus[cpu].rq.choose(running) {
            Next::Keep => return,
            Next::Switch { next, requeued } => {
                if let (Some(p), Some(h)) = (prev, requeued) {
                    k.t(p).queued = Some(h);
                }
                if let Some(n) = next {
                    k.t(n).queued = None;
                }
                next
            }
        };
        if next == prev {
            return;
        }
        let from: *mut KContext = match prev {
            Some(p) => match k.thread_mut(p) {
                Some(t) => {
                    t.stop_running(arch::counter());
                    fp::leave(t, cpu);
                    // Moved to another CPU while it ran here: queue it there.
                    if t.cpu != cpu && t.state == State::Ready && t.queued.is_none() {
                        k.make_ready(p);
                    }
                    &mut k.t(p).kctx
                }
                None => k
                    .zombies
                    .iter_mut()
                    .find(|z| z.running_on == Some(cpu))
                    .map_or(&mut k.cpus[cpu].idle as *mut KContext, |z| {
                        z.running_on = None;
                        &mut z.kctx as *mut KContext
                    }),
            },
            None => &mut k.cpus[cpu].idle,
        };
        k.cpus[cpu].current = next;
        let to: *const KContext = match next {
            Some(n) => {
                fp::enter(&mut k.cpus[cpu]);
                let t = k.t(n);
                t.start_running(cpu, arch::counter());
                if let Some(space) = t.space {
                    k.cpus[cpu].switch_space(space);
                }
                &k.t(n).kctx
            }
            None => &k.cpus[cpu].idle,
        };
        (from, to)
    };
    // SAFETY: both contexts live in kernel objects (boxed threads, zombies
    // or the per-CPU idle context) that stay allocated until reaped, which
    // happens only when no CPU runs on them.
    unsafe { arch::switch_context(from, to) };
    // Back on this thread (or idle), maybe on another CPU.
    with(|k| k.reap());
}

/// The idle loop of every CPU (boot CPU after starting the root task,
/// secondaries once up). Holds the BKL except while waiting.
pub fn idle_loop() -> ! {
    loop {
        let busy = with(|k| {
            let c = &k.cpus[arch::cpu_id()];
            c.need_resched || !c.rq.is_empty()
        });
        if busy {
            schedule();
            continue;
        }
        // Wait with interrupts masked (a pending one still ends the wait),
        // then take what is pending: nothing can slip in between. Only the
        // timekeeper CPU ticks while idle (it expires the timeouts); the
        // others sleep until an IPI brings them work, and take no part in
        // the lock meanwhile.
        let tickless = arch::cpu_id() != TIMEKEEPER;
        if tickless {
            arch::timer_pause();
        }
        bkl::unlock();
        arch::wait_for_interrupt();
        arch::irq_enable();
        arch::irq_disable();
        bkl::lock();
        if tickless {
            arch::timer_resume();
        }
    }
}

/// The CPU whose tick never stops (timeouts expire on any CPU's tick).
const TIMEKEEPER: usize = 0;

/// Interrupt entry (from EL0 or from idle). Takes the BKL unless this CPU
/// holds it already (the idle loop releases it before waiting, so it does
/// not).
pub fn irq(from_user: bool) {
    bkl::lock();
    crate::irq::handle();
    if from_user {
        with(apply_pending);
        let resched = with(|k| k.cpus[arch::cpu_id()].need_resched);
        if resched {
            schedule();
        }
    }
    bkl::unlock();
}

/// A lone ESC arrived (`-serial_esc`): the kernel debugger, until `g`.
/// Called by the IRQ layer with the BKL held.
pub fn enter_debugger() {
    with(|k| crate::jdb::run(k));
}

/// Called by the IRQ layer for the tick.
pub fn on_tick() {
    with(|k| k.tick());
}

/// Another CPU made work for us.
pub fn on_resched_ipi() {
    with(|k| k.cpus[arch::cpu_id()].need_resched = true);
}

/// A hardware interrupt bound to Irq object `irq` fired. Returns false if
/// that object is gone.
pub fn on_hw_irq(irq: ObjId) -> bool {
    with(|k| {
        let alive = matches!(k.objs.get(irq), Some(KObject::Irq(_)));
        ipc::irq_trigger(k, irq);
        alive
    })
}

/// Entry from a thread's first switch (see entry of a new thread).
#[unsafe(no_mangle)]
extern "C" fn thread_started() {
    with(|k| k.reap());
    bkl::unlock();
}

/// The IPC fast path ([`fastpath`]) for a native IPC with registers
/// `x0..x2`. Takes the big kernel lock and keeps it: `Some(frame)`: this
/// CPU now runs the thread of `frame` (entry.S releases the lock once it
/// stands on that thread's stack); `None`: nothing was done, the general
/// path ([`user_exception`]) goes on.
#[inline(always)]
pub fn fast_ipc(x0: u64, x1: u64, x2: u64) -> Option<*mut arch::TrapFrame> {
    bkl::lock();
    with(|k| fastpath::ipc(k, x0, x1, x2))
}

/// A synchronous exception from EL0 on the current thread (the general
/// path); `regs` are the registers of a native call. `locked`: the big
/// kernel lock is held already (the fast path gave up). Releases it.
pub fn user_exception(esr: kernel_core::esr::Esr, regs: arch::CallRegs, locked: bool) {
    if !locked {
        bkl::lock();
    }
    let native = esr.ec() == kernel_core::esr::ec::SVC64 && esr.imm16() == l4_abi::SVC_NATIVE;
    with(|k| {
        let cur = k.current();
        let Some(t) = k.thread(cur) else {
            // Deleted while it ran here: it never runs again.
            k.cpus[arch::cpu_id()].need_resched = true;
            return;
        };
        if t.pending.is_some() && apply_pending(k) {
            return;
        }
        if native {
            invoke::syscall(k, cur, regs);
        } else if esr.ec() == kernel_core::esr::ec::FP_ACCESS {
            fp::trap(k, cur);
        } else {
            ipc::raise_fault(k, cur, esr, arch::fault_address());
        }
    });
    let resched = with(|k| {
        let c = &k.cpus[arch::cpu_id()];
        c.need_resched
            || c.current
                .is_none_or(|cur| k.thread(cur).is_none_or(|t| t.state != State::Ready))
    });
    if resched {
        schedule();
    }
    bkl::unlock();
}

/// Applies an ex_regs change to a thread whose registers are saved (not
/// running on another CPU); raises its exception message if asked.
pub fn apply_regs(k: &mut Kernel, th: ObjId, p: thread::PendingRegs) {
    let t = k.t(th);
    let f = t.frame();
    if let Some(pc) = p.pc {
        f.elr = pc;
    }
    if let Some(sp) = p.sp {
        f.sp_el0 = sp;
    }
    if p.exception && t.task.is_some() && matches!(t.state, State::Ready) {
        ipc::raise_fault(k, th, kernel_core::esr::Esr(0), 0);
    }
}

/// Applies what an ex_regs on another CPU left for the current thread.
/// Returns whether there was something (the interrupted work is void).
fn apply_pending(k: &mut Kernel) -> bool {
    let cur = k.cpus[arch::cpu_id()].current;
    match cur
        .and_then(|c| k.thread_mut(c))
        .and_then(|t| t.pending.take())
    {
        Some(p) => {
            apply_regs(k, cur.expect("current thread"), p);
            k.cpus[arch::cpu_id()].need_resched = true;
            true
        }
        None => false,
    }
}

/// Reports a thread that cannot go on and stops it (never deletes objects
/// of others).
pub fn kill_thread(k: &mut Kernel, id: ObjId, why: core::fmt::Arguments<'_>) {
    kprintln!("kernel: thread {:?}: {}; thread stopped", id, why);
    k.make_blocked(id, State::Dead, None);
}

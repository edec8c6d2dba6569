//! Threads: a kernel stack, saved kernel and FP/SIMD context, a UTCB, and
//! the IPC and scheduling state.

use super::{Call, OpResult, cap_arg, need, ok};
use crate::arch::{self, FpState, KContext, TrapFrame};
use crate::ipc;
use crate::kprintln;
use crate::mm;
use crate::state::Kernel;
use alloc::collections::VecDeque;
use kernel_core::kobj::ObjId;
use kernel_core::runqueue::CpuSet;
use kernel_core::runqueue::{QueueHandle, SchedContext};
use l4_abi::MsgTag;
use l4_abi::ops::{ExRegsReply, ThreadMsg, ThreadStatsReply};
use l4_abi::proto::{self, ControlFlags, ExRegsFlags};
use l4_abi::{CapRights, Error};

/// Default scheduling of new threads: priority 1, 10 ms slices, CPU 0.
pub const DEFAULT_PRIO: u8 = 1;
pub const DEFAULT_QUANTUM: u32 = 1;

pub const KSTACK_PAGES: usize = 4;
pub const KSTACK_SIZE: u64 = KSTACK_PAGES as u64 * mm::PAGE;

/// A task's address space as the MMU needs it: translation-table root and
/// ASID.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Space {
    pub root: u64,
    pub asid: u16,
}

impl Space {
    /// The TTBR0 value that installs the space: root and ASID.
    #[inline(always)]
    pub fn ttbr(self) -> u64 {
        self.root | (u64::from(self.asid) << 48)
    }
}

/// Where a thread stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Created, not yet started (no pc/sp, not bound, or not scheduled).
    Inactive,
    /// Ready to run (or running).
    Ready,
    /// Waiting to send to `to` (queued in its senders).
    Send {
        to: ObjId,
        via: Option<ObjId>,
        label: u64,
        call: Option<l4_abi::Timeout>,
        s: bool,
    },
    /// Waiting to receive: from anyone (`None`) or one partner.
    Recv { from: Option<ObjId> },
    /// Waiting for the reply of `from` to a call.
    Reply { from: ObjId },
    /// Waiting on a semaphore.
    Sem { sem: ObjId },
    /// Ended (deleted or killed); never runs again.
    Dead,
}

/// A message the kernel sends on the thread's behalf (page fault or
/// exception), kept here until its handler takes it.
#[derive(Clone, Copy, Debug)]
pub struct KernelMsg {
    pub tag: MsgTag,
    pub words: [u64; 40],
}

pub struct Thread {
    /// Saved callee-saved registers and kernel sp (switch_context).
    pub kctx: KContext,
    pub kstack_pa: u64,
    /// Where the user register frame sits: the top of the kernel stack
    /// (virtual address), since the thread enters the kernel from EL0 on
    /// an empty stack.
    frame_va: u64,
    pub fp: FpState,
    /// The FP/SIMD registers hold this thread's state (it used them since
    /// it was switched in); `fp` is then stale.
    pub fp_live: bool,
    /// The CPU `fp` was last saved on.
    pub fp_saved_on: Option<usize>,
    pub task: Option<ObjId>,
    /// The address space of `task` (fixed for the task's life).
    pub space: Option<Space>,
    pub utcb_uva: u64,
    pub utcb_kva: u64,
    pub tpidr_el0: u64,
    pub state: State,
    pub sched: SchedContext,
    pub cpu: usize,
    /// Place in `cpu`'s run queue while ready.
    pub queued: Option<QueueHandle>,
    /// CPU this thread is the current thread of (its registers live there).
    pub running_on: Option<usize>,
    /// Every CPU the thread ever ran on (bit `i`: CPU `i`), for the
    /// debugger's partition view (`lv`).
    pub ran_on: u64,
    /// Capability indices (in the thread's task) of its pager and exception handler.
    pub pager: u64,
    pub exc_handler: u64,
    /// The caller waiting for our reply (the implicit reply capability).
    pub reply_to: Option<ObjId>,
    /// Threads waiting to send to us.
    pub senders: VecDeque<ObjId>,
    /// Interrupts triggered while we were not waiting: (irq, label).
    pub pending_irqs: VecDeque<(ObjId, u64)>,
    /// A page-fault or exception message waiting for its handler.
    pub kmsg: Option<KernelMsg>,
    /// When the current wait ends (counter value), if it has a timeout.
    pub deadline: Option<u64>,
    /// The user registers (x0..x30, sp, pc, pstate) were set by ex_regs.
    pub has_regs: bool,
    /// An ex_regs for this thread while it ran on another CPU, applied when
    /// it next enters the kernel there.
    pub pending: Option<PendingRegs>,
    /// CPU time used (counter ticks) and when it last started running.
    pub cpu_time: u64,
    pub ran_since: u64,
    /// vCPU mode: the state area, Vm and guest state ([`super::vcpu`]).
    pub vcpu: Option<alloc::boxed::Box<super::vcpu::Vcpu>>,
}

/// Register changes waiting for a thread that runs elsewhere.
#[derive(Clone, Copy, Debug, Default)]
pub struct PendingRegs {
    pub pc: Option<u64>,
    pub sp: Option<u64>,
    pub exception: bool,
}

impl Thread {
    /// A new thread with its own kernel stack; `None` without memory.
    pub fn new(sched: SchedContext) -> Option<Thread> {
        let kstack_pa = mm::alloc_frames(KSTACK_PAGES)?;
        let kstack_top = mm::phys_to_virt(kstack_pa) + KSTACK_SIZE;
        let mut t = Thread {
            kctx: KContext::default(),
            kstack_pa,
            frame_va: kstack_top - core::mem::size_of::<TrapFrame>() as u64,
            fp: FpState::default(),
            fp_live: false,
            fp_saved_on: None,
            task: None,
            space: None,
            utcb_uva: 0,
            utcb_kva: 0,
            tpidr_el0: 0,
            state: State::Inactive,
            sched,
            cpu: 0,
            queued: None,
            running_on: None,
            ran_on: 0,
            pager: 0,
            exc_handler: 0,
            reply_to: None,
            senders: VecDeque::new(),
            pending_irqs: VecDeque::new(),
            kmsg: None,
            deadline: None,
            has_regs: false,
            pending: None,
            cpu_time: 0,
            ran_since: 0,
            vcpu: None,
        };
        t.reset_kernel_context();
        *t.frame_mut() = TrapFrame::default();
        Some(t)
    }

    /// How a new thread is scheduled until the Scheduler says otherwise.
    pub fn default_sched() -> SchedContext {
        SchedContext::new(DEFAULT_PRIO, DEFAULT_QUANTUM, CpuSet::single(0))
    }

    /// The thread stops running at counter value `now`: its CPU time and
    /// TLS register are saved. Its FP/SIMD registers are the caller's part
    /// ([`super::fp::leave`]).
    #[inline(always)]
    pub fn stop_running(&mut self, now: u64) {
        self.running_on = None;
        self.cpu_time += now.saturating_sub(self.ran_since);
        self.tpidr_el0 = crate::arch::tpidr_el0();
    }

    /// The thread starts running on CPU `cpu` at counter value `now`: its
    /// TLS registers are loaded (the address space is the caller's part).
    #[inline(always)]
    pub fn start_running(&mut self, cpu: usize, now: u64) {
        self.running_on = Some(cpu);
        self.ran_on |= 1 << (cpu % 64);
        self.ran_since = now;
        crate::arch::set_tls(self.tpidr_el0, self.utcb_uva);
    }

    /// The next switch to the thread enters thread_first_entry with sp at
    /// its user frame, which releases the lock and returns to EL0: the
    /// start of a new thread, and the continuation of one the IPC fast
    /// path switched away from.
    #[inline(always)]
    pub fn reset_kernel_context(&mut self) {
        self.kctx.sp = self.frame_va;
        self.kctx.lr = crate::arch::thread_first_entry_va();
    }

    /// The user register frame (at the top of the kernel stack).
    #[inline(always)]
    pub fn frame(&self) -> &TrapFrame {
        // SAFETY: the kernel stack is this thread's own memory (freed only
        // when the thread is), the frame slot at its top is reserved for
        // the user registers, and the kernel reaches it only through the
        // thread, under the big kernel lock.
        unsafe { &*(self.frame_va as *const TrapFrame) }
    }

    /// The user register frame, to change it.
    #[inline(always)]
    pub fn frame_mut(&mut self) -> &mut TrapFrame {
        // SAFETY: as in `frame`; the exclusive borrow of the thread makes
        // this the only reference.
        unsafe { &mut *(self.frame_va as *mut TrapFrame) }
    }

    /// The thread's UTCB, if it has one.
    #[inline(always)]
    pub fn utcb(&self) -> Option<&l4_abi::Utcb> {
        if self.utcb_kva == 0 {
            return None;
        }
        // SAFETY: utcb_kva points into a UTCB area page the kernel
        // allocated for the thread's task and keeps while the task lives;
        // the kernel reaches it only through the thread, under the big
        // kernel lock (the thread itself writes it from EL0 only while it
        // runs, and then the kernel does not touch it).
        Some(unsafe { &*(self.utcb_kva as *const l4_abi::Utcb) })
    }

    /// The thread's UTCB, to write it.
    #[inline(always)]
    pub fn utcb_mut(&mut self) -> Option<&mut l4_abi::Utcb> {
        if self.utcb_kva == 0 {
            return None;
        }
        // SAFETY: as in `utcb`; the exclusive borrow of the thread makes
        // this the only reference (each UTCB belongs to one thread).
        Some(unsafe { &mut *(self.utcb_kva as *mut l4_abi::Utcb) })
    }

    /// Sets the result registers of the thread's pending system call.
    pub fn set_result(&mut self, status: u64, tag: MsgTag, label: u64) {
        self.frame_mut().set_result(status, tag, label);
    }

    pub fn set_error(&mut self, e: l4_abi::Error) {
        self.set_result(e.as_status(), MsgTag(0), 0);
    }

    pub fn is_waiting_for(&self, sender: ObjId) -> bool {
        match self.state {
            State::Recv { from: None } => true,
            State::Recv { from: Some(f) } => f == sender,
            _ => false,
        }
    }
}

impl Drop for Thread {
    fn drop(&mut self) {
        mm::free_frames(self.kstack_pa, KSTACK_PAGES);
    }
}

pub fn invoke(k: &mut Kernel, c: &Call<'_>) -> OpResult {
    let (task, th, rights) = (c.task, c.obj, c.rights);
    match ThreadMsg::decode(c.tag, c.m)? {
        ThreadMsg::Control(a) => {
            need(rights, CapRights::W)?;
            if a.flags.contains(ControlFlags::BIND_TASK) {
                let (bind, r) = cap_arg(k, task, a.bind_task.ok_or(Error::Inval)?)?;
                need(r, CapRights::W)?;
                k.bind_thread(th, bind, a.bind_utcb)?;
            }
            if a.flags.contains(ControlFlags::SET_PAGER) {
                k.known_thread(th).pager = a.pager >> l4_abi::sys::CAP_SHIFT;
            }
            if a.flags.contains(ControlFlags::SET_EXC_HANDLER) {
                k.known_thread(th).exc_handler = a.exc_handler >> l4_abi::sys::CAP_SHIFT;
            }
            ok(0)
        }
        ThreadMsg::ExRegs(e) => {
            need(rights, CapRights::W)?;
            let keep = |v: u64| (v != proto::ex_regs::UNCHANGED).then_some(v);
            let change = PendingRegs {
                pc: keep(e.pc),
                sp: keep(e.sp),
                exception: e.flags.contains(ExRegsFlags::TRIGGER_EXCEPTION),
            };
            // A canceled wait ends first, so a triggered exception follows it.
            if e.flags.contains(ExRegsFlags::CANCEL)
                && !matches!(
                    k.known_thread(th).state,
                    State::Ready | State::Inactive | State::Dead
                )
            {
                ipc::cancel(k, th);
            }
            let t = k.known_thread(th);
            let f = t.frame();
            let old = ExRegsReply {
                pstate: f.spsr,
                pc: f.elr,
                sp: f.sp_el0,
            };
            t.has_regs = true;
            match t.running_on {
                Some(c) if c != arch::cpu_id() => {
                    // Its registers live on that CPU: apply there.
                    let p = t.pending.get_or_insert_with(PendingRegs::default);
                    p.pc = change.pc.or(p.pc);
                    p.sp = change.sp.or(p.sp);
                    p.exception |= change.exception;
                    crate::platform::gic::send_resched_ipi(c);
                }
                _ => apply_regs(k, th, change),
            }
            c.reply(k, old)
        }
        ThreadMsg::Switch(_) => ok(0),
        ThreadMsg::Stats(_) => {
            let t = k.known_thread(th);
            let mut ticks = t.cpu_time;
            if t.running_on.is_some() {
                ticks += arch::counter().saturating_sub(t.ran_since);
            }
            let us = ticks * 1_000_000 / arch::counter_freq().max(1);
            c.reply(k, ThreadStatsReply { time_us: us })
        }
        ThreadMsg::ArmTpidrUro(_) => Err(Error::Perm),
        ThreadMsg::VcpuControl(op) => {
            need(rights, CapRights::W)?;
            let vm = match op.vm {
                Some(a) if op.state != 0 => {
                    let (vm, r) = cap_arg(k, task, a)?;
                    need(r, CapRights::W)?;
                    Some(vm)
                }
                _ => None,
            };
            super::vcpu::control(k, th, op.state, vm)?;
            ok(0)
        }
        ThreadMsg::VcpuResume(_) => {
            super::vcpu::resume(k, c.cur, th)?;
            ok(0)
        }
        ThreadMsg::RegisterDeleteIrq(_) => Err(Error::NoSys),
    }
}

/// Applies an ex_regs change to a thread whose registers are saved (not
/// running on another CPU); raises its exception message if asked.
pub fn apply_regs(k: &mut Kernel, th: ObjId, p: PendingRegs) {
    let t = k.known_thread(th);
    let f = t.frame_mut();
    if let Some(pc) = p.pc {
        f.elr = pc;
    }
    if let Some(sp) = p.sp {
        f.sp_el0 = sp;
    }
    if p.exception && t.task.is_some() && matches!(t.state, State::Ready) {
        ipc::raise_fault(k, th, kernel_core::arch::aarch64::esr::Esr(0), 0);
    }
}
/// Reports a thread that cannot go on and stops it (never deletes objects
/// of others).
pub fn kill_thread(k: &mut Kernel, id: ObjId, why: core::fmt::Arguments<'_>) {
    kprintln!("kernel: thread {:?}: {}; thread stopped", id, why);
    k.make_blocked(id, State::Dead, None);
}

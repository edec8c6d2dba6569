//! Threads: a kernel stack, saved kernel and FP/SIMD context, a UTCB, and
//! the IPC and scheduling state.

use crate::arch::{FpState, KContext, TrapFrame};
use crate::mm;
use alloc::collections::VecDeque;
use kernel_core::kobj::ObjId;
use kernel_core::sched::{QueueHandle, SchedContext};
use l4_abi::MsgTag;

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
        *t.frame() = TrapFrame::default();
        Some(t)
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
    #[allow(clippy::mut_from_ref)]
    #[inline(always)]
    pub fn frame(&self) -> &mut TrapFrame {
        // SAFETY: the kernel stack is this thread's own memory, the frame
        // slot at its top is reserved for the user registers, and the BKL
        // serialises all access to it.
        unsafe { &mut *(self.frame_va as *mut TrapFrame) }
    }

    /// The thread's UTCB, if it has one.
    #[allow(clippy::mut_from_ref)]
    pub fn utcb(&self) -> Option<&mut l4_abi::Utcb> {
        if self.utcb_kva == 0 {
            return None;
        }
        // SAFETY: utcb_kva points into a UTCB area page the kernel
        // allocated for the thread's task and keeps while the task lives;
        // the BKL serialises kernel access (the thread itself may write it
        // concurrently from EL0 only while it runs, and then the kernel
        // does not touch it).
        Some(unsafe { &mut *(self.utcb_kva as *mut l4_abi::Utcb) })
    }

    /// Sets the result registers of the thread's pending system call.
    pub fn set_result(&self, status: u64, tag: MsgTag, label: u64) {
        let f = self.frame();
        f.x[0] = status;
        f.x[1] = tag.0;
        f.x[2] = label;
    }

    pub fn set_error(&self, e: l4_abi::Error) {
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

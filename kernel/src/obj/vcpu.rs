//! vCPU mode of threads: a thread runs a guest in a Vm and comes back to
//! its VMM (its own user code) on every exit the kernel does not handle
//! itself.
//!
//! * `vcpu_control` names the thread's state area (a page of its task's
//!   UTCB area, [`l4_abi::vcpu::VcpuState`]) and its Vm.
//! * `vcpu_resume` (on the thread itself) checks the state area, takes the
//!   injection requests, and marks the thread as running its guest. On
//!   the way back to user mode ([`return_to_user`]) the kernel enters the
//!   guest instead, and keeps doing so until an exit for the VMM; then the
//!   state area holds the guest's state and the exit, and `vcpu_resume`
//!   returns with the exit reason as its label. A VMM's resume on every
//!   exit takes a fast path from the system call entry
//!   ([`fast_resume`]) straight into the guest, and back to the VMM.
//! * The kernel handles: WFI (the vCPU blocks until an interrupt is
//!   pending for it, or its timer's deadline), physical interrupts (taken
//!   and handled, preemption included), the virtual timer (injected as
//!   PPI 27 when it fires), FP/SIMD (the guest's registers go in before
//!   every entry, see [`Vcpu::fp`]), and injection: requests from the
//!   state area, from Irq objects bound to the vCPU, and the timer go to
//!   free list registers, or wait in the vCPU's pending queue until one
//!   is free (an underflow maintenance interrupt brings the guest out to
//!   refill them). A vCPU running on another CPU is kicked by IPI.
//! * The Vm's MMIO shortcuts ([`super::vm`]): a 32-bit access to one of
//!   its registers is answered here (a doorbell's Irq triggered, a
//!   constant read) and the guest goes on, without an exit to the VMM.
//! * Interrupts or messages for the VMM thread (an Irq attached to it
//!   fired, a sender waits) end the guest run with [`ExitReason::Kick`].

use super::KObject;
use super::thread::State;
use crate::arch::{self, FpState, vcpu as hw};
use crate::bkl;
use crate::sched::schedule;
use crate::state::Kernel;
use alloc::boxed::Box;
use core::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use kernel_core::kobj::ObjId;
use kernel_core::shortcut::Answer;
use l4_abi::vcpu::{
    self as abi, Exit, ExitReason, GuestRegs, MAX_LRS, VTIMER_INTID, VcpuState, classify,
    fault_gpa, lr,
};
use l4_abi::{Error, MsgTag};
use l4_bootinfo::MAX_CPUS;

/// The GIC maintenance interrupt (a PPI).
pub const MAINTENANCE_INTID: u32 = 25;

/// Threads whose guest runs (or is about to): while there are none, the
/// way back to user mode costs one load.
static ACTIVE: AtomicUsize = AtomicUsize::new(0);

/// Names for vCPUs ([`hw::load`]'s `id`), never reused: 0 is none.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A thread's vCPU.
pub struct Vcpu {
    /// Kernel address of the state area.
    state_kva: u64,
    /// The Vm the guest runs in.
    pub vm: ObjId,
    /// This vCPU's name for [`hw::load`].
    id: u64,
    /// The parts of the guest's state the kernel checks or uses itself
    /// while it runs the guest (pstate in `s.regs`, timer, GIC, VMPIDR;
    /// checked on resume). The general registers and the EL1 registers,
    /// which need no checking, stay in the state area: the guest is
    /// entered from there and its exits save them there.
    s: VcpuState,
    /// The area's EL1 registers are the ones the last [`hw::load`] or
    /// exit left in the CPU (since then, the VMM only resumed with them
    /// marked unchanged): if the CPU still holds them, they need no load.
    el1_kept: bool,
    /// `vcpu_resume` is under way.
    in_guest: bool,
    /// The state area shows `s` as the last exit wrote it (the parts a
    /// VMM marks unchanged may be taken from `s`).
    synced: bool,
    /// The guest waits for an interrupt (it executed WFI).
    wfi: bool,
    /// The guest's FP/SIMD registers, and whether the CPU holds them.
    /// They are in the CPU at every entry, never loaded on the guest's
    /// first use (a trap): a Linux guest uses them in every user process,
    /// so a lazy load costs it a trap after most exits; and the guest's
    /// code then always runs with FP/SIMD untrapped, where switching made
    /// QEMU translate a Linux guest's kernel code once per trapping state
    /// (17,000 blocks, about 0.2 s, more per boot). After an exit for the
    /// VMM they stay in the CPU while the VMM runs with FP/SIMD trapped
    /// (see [`Vcpu::vmm_fp`]); the VMM's first use, or a switch away from
    /// the thread ([`crate::fp::leave`]), saves them here.
    fp: FpState,
    /// The guest's SVE registers instead of `fp`, where guests get SVE
    /// (the Z registers hold the FP/SIMD ones).
    sve: Option<arch::SveState>,
    fp_loaded: bool,
    /// Exits for the VMM left that give the VMM its own FP/SIMD registers
    /// back at once (saving the guest's) instead of on its first use.
    /// A VMM that used them after an exit (a trap) gets [`EAGER_VMM_FP`]
    /// more: its exits that need them then cost no trap, and one that
    /// stopped needing them keeps the guest's registers in the CPU again
    /// after a while.
    vmm_fp: u8,
    /// The CPU the guest last ran on.
    last_cpu: Option<usize>,
    /// Interrupts waiting for a list register (bit n: INTID n), with
    /// their priorities; bit w of `queued`: `pending[w]` is not zero.
    pending: [u64; 16],
    queued: u16,
    prio: [u8; 1024],
    /// Hardware interrupts bound to this vCPU through an Irq: (INTID the
    /// guest sees, physical line). Their line stays masked from the time
    /// it fires until the guest completes the interrupt.
    hw_irqs: alloc::vec::Vec<(u32, u32)>,
    /// The list registers of `s` that are not zero (bit n: list register
    /// n), for [`hw::load`].
    lrs: u16,
    /// The list registers the kernel filled with such an interrupt, with
    /// the EOI bit set (bit n: list register n), and (INTID, physical
    /// line) of each. The guest's EOI brings it out (maintenance
    /// interrupt) and the kernel unmasks the line at once.
    lr_hw_mask: u16,
    lr_hw: [(u32, u32); MAX_LRS],
}

impl Vcpu {
    /// Whether the thread runs its guest (`vcpu_resume` is under way).
    pub fn in_guest(&self) -> bool {
        self.in_guest
    }

    /// The physical line of hardware interrupt `intid`, if it is one.
    fn hw_line(&self, intid: u32) -> Option<u32> {
        self.hw_irqs
            .iter()
            .find(|&&(i, _)| i == intid)
            .map(|&(_, line)| line)
    }

    /// The lines of the hardware interrupts the guest completed, from the
    /// EOI maintenance status (`eisr`, bit n: list register n) of an exit.
    fn completed_hw(&mut self, eisr: u64) -> impl Iterator<Item = u32> + '_ {
        let done = u64::from(self.lr_hw_mask) & eisr;
        self.lr_hw_mask &= !(done as u16);
        self.lr_hw
            .iter()
            .enumerate()
            .filter(move |(n, _)| done & (1 << n) != 0)
            .map(|(_, &(_, line))| line)
    }

    /// Forgets the records of [`Vcpu::lr_hw`] whose list register no
    /// longer holds that interrupt with its EOI bit (the VMM took it over
    /// or the guest completed it); the VMM then unmasks the line.
    fn check_lr_hw(&mut self) {
        let mut m = self.lr_hw_mask;
        while m != 0 {
            let n = m.trailing_zeros() as usize;
            m &= m - 1;
            let v = self.s.gic.lr[n];
            if lr::state(v) == 0 || lr::intid(v) != self.lr_hw[n].0 || v & lr::EOI == 0 {
                self.lr_hw_mask &= !(1 << n);
            }
        }
    }

    /// The guest's general registers, in the state area.
    fn regs(&self) -> *mut GuestRegs {
        let area = self.state_kva as *mut VcpuState;
        // SAFETY: only the address is taken (of kernel memory, the task's
        // UTCB area, which lives as long as the task and so the thread).
        unsafe { &raw mut (*area).regs }
    }

    /// Steps the guest past the (4-byte) instruction that exited.
    fn skip_instruction(&mut self) {
        let regs = self.regs();
        // SAFETY: see `regs`; the VMM may change the area meanwhile, which
        // only changes the guest's own registers.
        unsafe {
            let pc = core::ptr::read_volatile(&raw const (*regs).pc);
            core::ptr::write_volatile(&raw mut (*regs).pc, pc.wrapping_add(4));
        }
    }

    /// Sets the guest's general register `r` (31, the zero register,
    /// ignores the write).
    fn set_reg(&mut self, r: u8, v: u64) {
        let regs = self.regs();
        if usize::from(r) < 31 {
            // SAFETY: as in `skip_instruction`.
            unsafe { core::ptr::write_volatile(&raw mut (*regs).x[usize::from(r)], v) };
        }
    }

    fn queue(&mut self, intid: u32, prio: u8) {
        let i = intid as usize % 1024;
        self.pending[i / 64] |= 1 << (i % 64);
        self.queued |= 1 << (i / 64);
        self.prio[i] = prio;
    }

    fn has_queued(&self) -> bool {
        self.queued != 0
    }

    /// Whether `intid` sits in a list register in one of `states`.
    fn in_lr(&self, intid: u32, states: u64) -> bool {
        self.s.gic.lr[..hw::lr_count()]
            .iter()
            .any(|&v| lr::intid(v) == intid && lr::state(v) & states != 0)
    }

    /// Moves queued interrupts into free list registers. Returns whether
    /// some are left over.
    fn fill_lrs(&mut self) -> bool {
        if self.lr_hw_mask != 0 {
            self.check_lr_hw();
        }
        let n = hw::lr_count();
        while self.queued != 0 {
            let w = self.queued.trailing_zeros() as usize;
            while self.pending[w] != 0 {
                let b = self.pending[w].trailing_zeros();
                let intid = (w * 64) as u32 + b;
                if self.in_lr(intid, 0b01) {
                    // Pending already: it is one interrupt.
                    self.pending[w] &= !(1 << b);
                    continue;
                }
                if let Some(v) = self.s.gic.lr[..n]
                    .iter_mut()
                    .find(|v| lr::intid(**v) == intid && lr::state(**v) == 0b10)
                {
                    // Active (the guest handles it): pending as well, in
                    // the same list register (never in two).
                    *v |= lr::PENDING;
                    self.pending[w] &= !(1 << b);
                    continue;
                }
                let Some(slot) = self.s.gic.lr[..n].iter().position(|&v| lr::state(v) == 0) else {
                    return true;
                };
                let mut value = lr::pending(intid, self.prio[intid as usize]);
                if let Some(line) = self.hw_line(intid) {
                    value |= lr::EOI;
                    self.lr_hw[slot] = (intid, line);
                    self.lr_hw_mask |= 1 << slot;
                }
                self.s.gic.lr[slot] = value;
                self.lrs |= 1 << slot;
                self.pending[w] &= !(1 << b);
            }
            self.queued &= !(1 << w);
        }
        false
    }

    /// Whether an interrupt waits for the guest (it would leave WFI).
    fn irq_pending(&self) -> bool {
        self.has_queued()
            || self.s.gic.lr[..hw::lr_count()]
                .iter()
                .any(|&v| lr::state(v) & 1 != 0)
    }

    /// The virtual timer: whether its condition holds now.
    fn timer_fired(&self) -> bool {
        let t = &self.s.timer;
        t.ctl & 0b10 == 0 && t.condition_met(arch::counter())
    }

    /// When (in physical counter ticks) the armed timer fires.
    fn timer_deadline(&self) -> Option<u64> {
        let t = &self.s.timer;
        (t.ctl & 0b11 == 0b01).then(|| t.cval.saturating_add(t.cntvoff))
    }

    /// Saves the guest's FP/SIMD registers if the CPU holds them. While
    /// they are loaded no thread's are (the CPU's `fp_on` is clear), so
    /// FP/SIMD use traps again afterwards. Before another thread, or the
    /// VMM itself, may use the CPU's registers.
    pub fn spill_fp(&mut self) {
        if self.fp_loaded {
            arch::fp_access(true);
            match &mut self.sve {
                Some(sve) => arch::sve_save(sve),
                None => arch::fp_save(&mut self.fp),
            }
            self.fp_loaded = false;
            arch::fp_access(false);
        }
    }
}

impl Drop for Vcpu {
    fn drop(&mut self) {
        // The thread went (deleted) while its guest ran.
        if self.in_guest {
            ACTIVE.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

fn vcpu_of(k: &mut Kernel, th: ObjId) -> Option<&mut Vcpu> {
    k.thread_mut(th)?.vcpu.as_deref_mut()
}

/// `vcpu_control`: `state` (0: leave vCPU mode) names the state area in
/// the thread's task's UTCB area (page-aligned); `vm` the Vm.
pub fn control(k: &mut Kernel, th: ObjId, state: u64, vm: Option<ObjId>) -> Result<(), Error> {
    let t = k.thread(th).ok_or(Error::Inval)?;
    if t.vcpu.as_ref().is_some_and(|v| v.in_guest) {
        return Err(Error::Busy);
    }
    if state == 0 {
        k.known_thread(th).vcpu = None;
        return Ok(());
    }
    let vm = vm.ok_or(Error::Inval)?;
    if !matches!(k.objs.get(vm), Some(KObject::Vm(_))) {
        return Err(Error::Inval);
    }
    let task = t.task.ok_or(Error::Inval)?;
    if !state.is_multiple_of(crate::mm::PAGE) {
        return Err(Error::Inval);
    }
    let kva = k
        .task(task)
        .and_then(|t| t.utcb_kva(state))
        .ok_or(Error::Inval)?;
    if !crate::mm::heap_allows(core::mem::size_of::<Vcpu>() as u64) {
        return Err(Error::NoMem);
    }
    let mut s = VcpuState::default();
    s.gic.lr_count = hw::lr_count() as u64;
    k.known_thread(th).vcpu = Some(Box::new(Vcpu {
        state_kva: kva,
        vm,
        id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        s,
        el1_kept: false,
        in_guest: false,
        synced: false,
        wfi: false,
        fp: FpState::default(),
        sve: arch::SveState::new(),
        fp_loaded: false,
        vmm_fp: 0,
        last_cpu: None,
        pending: [0; 16],
        queued: 0,
        prio: [0; 1024],
        hw_irqs: alloc::vec::Vec::new(),
        lrs: 0,
        lr_hw_mask: 0,
        lr_hw: [(0, 0); MAX_LRS],
    }));
    // The area starts as the kernel's view: list-register count filled in.
    // SAFETY: kva is a page of the task's UTCB area (kernel memory).
    unsafe { core::ptr::write_volatile(kva as *mut VcpuState, s) };
    Ok(())
}

/// `vcpu_resume` by thread `cur` on itself.
pub fn resume(k: &mut Kernel, cur: ObjId, th: ObjId) -> Result<(), Error> {
    if cur != th {
        return Err(Error::Inval);
    }
    let t = k.thread_mut(th).ok_or(Error::Inval)?;
    let v = t.vcpu.as_deref_mut().ok_or(Error::Inval)?;
    // The guest gets its own TPIDR_EL0: keep the VMM's (live in the
    // register, since the caller runs here) for the exit to restore.
    t.tpidr_el0 = arch::tpidr_el0();
    let area = v.state_kva as *mut VcpuState;
    let kept = if v.synced {
        // SAFETY: the state area is a page of kernel memory (the task's
        // UTCB area), which lives as long as the task and so the thread.
        let bits = unsafe { core::ptr::read_volatile(&raw const (*area).unchanged) };
        bits & abi::unchanged::ALL
    } else {
        0
    };
    // SAFETY: as above. The VMM may change the area at any time, so each
    // part is copied once and the copy checked. VcpuState is integers
    // only: any bits are a valid one.
    unsafe {
        // The other registers are entered from the area (any values do).
        v.s.regs.pstate = core::ptr::read_volatile(&raw const (*area).regs.pstate);
        if kept & abi::unchanged::TIMER == 0 {
            arch::read_shared(&mut v.s.timer, &raw const (*area).timer);
        }
        if kept & abi::unchanged::GIC == 0 {
            arch::read_shared(&mut v.s.gic, &raw const (*area).gic);
        }
        if kept & abi::unchanged::VMPIDR == 0 {
            v.s.vmpidr = core::ptr::read_volatile(&raw const (*area).vmpidr);
        }
        v.s.inject.count = core::ptr::read_volatile(&raw const (*area).inject.count);
        let n = (v.s.inject.count as usize).min(abi::MAX_INJECT);
        if n != 0 {
            for (i, r) in v.s.inject.req[..n].iter_mut().enumerate() {
                *r = core::ptr::read_volatile(&raw const (*area).inject.req[i]);
            }
        }
    }
    if let Err(e) = v.s.check_parts(hw::lr_count(), kept) {
        // The kernel's copy now holds refused parts: the next resume
        // reads everything again.
        v.synced = false;
        v.s.inject.count = 0;
        let exit = Exit {
            reason: ExitReason::BadState as u64,
            info: e.code(),
            ..v.s.exit
        };
        // SAFETY: as above.
        unsafe { core::ptr::write_volatile(&raw mut (*area).exit, exit) };
        return Err(Error::Inval);
    }
    let n = v.s.inject.count as usize;
    v.s.inject.count = 0;
    for i in 0..n {
        let r = v.s.inject.req[i];
        v.queue(r.intid, r.priority);
    }
    let s = &mut v.s;
    if kept & abi::unchanged::TIMER == 0 {
        s.timer.ctl &= 0b11;
    }
    if kept & abi::unchanged::GIC == 0 {
        // List registers past the hardware's count are never used (nor
        // checked): the kernel reads, loads and writes back the first
        // `lr_count` only.
        s.gic.lr_count = hw::lr_count() as u64;
        v.lrs = 0;
        for (i, &lr) in s.gic.lr[..hw::lr_count()].iter().enumerate() {
            if lr != 0 {
                v.lrs |= 1 << i;
            }
        }
    }
    v.synced = false;
    if kept & abi::unchanged::EL1 == 0 {
        v.el1_kept = false;
    }
    v.wfi = false;
    v.in_guest = true;
    ACTIVE.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// The invocation with `tag` on `cur`'s own capability, if it is
/// [`l4_abi::ops::ThreadVcpuResume`] (its opcode alone in `MR0`): resumes
/// and sets the result as the general path would. Returns whether it was.
pub fn resume_call(k: &mut Kernel, cur: ObjId, tag: MsgTag) -> bool {
    if !is_resume(k.known_thread(cur), tag) {
        return false;
    }
    let label = match resume(k, cur, cur) {
        Ok(()) => 0,
        Err(e) => e.as_ret(),
    };
    k.known_thread(cur)
        .set_result(0, MsgTag::new(label, 0, 0, 0), 0);
    true
}

/// Whether the invocation with `tag` by `t` carries
/// [`l4_abi::ops::ThreadVcpuResume`] (its opcode alone in `MR0`).
fn is_resume(t: &super::thread::Thread, tag: MsgTag) -> bool {
    use l4_abi::ops::{Op, ThreadVcpuResume};
    tag.words() >= 1
        && tag.items() == 0
        && t.utcb().is_some_and(|u| u.mr[0] == ThreadVcpuResume::CODE)
}

/// The fast path of a VMM's `vcpu_resume` on every guest exit it handled
/// (entry.S tries it with the native IPC registers `x0..x2`, the lock
/// held): when the invocation is exactly what the general path would
/// take to [`resume_call`] (a call on the current thread's own
/// capability with the Thread protocol and the resume opcode), resumes
/// and runs the guest until its next exit for the VMM, and returns the
/// guard and the thread's user registers (its result set). Else (or when the general
/// path has work first: registers from an ex_regs, a reschedule) nothing
/// was done and the guard comes back in `Err`.
pub fn fast_resume(
    mut g: bkl::Guard,
    x0: u64,
    x1: u64,
    x2: u64,
) -> Result<(bkl::Guard, *mut arch::TrapFrame), bkl::Guard> {
    let tag = MsgTag(x1);
    if tag.label() != l4_abi::Proto::Thread as i64 {
        return Err(g);
    }
    let k = g.kernel();
    let cpu = arch::cpu_id();
    let Some(cur) = k.cpus[cpu].current else {
        return Err(g);
    };
    if k.cpus[cpu].need_resched {
        return Err(g);
    }
    let Ok(inv) = kernel_core::ipc_rules::decode(x0, x1, x2) else {
        return Err(g);
    };
    let (Some(index), kernel_core::ipc_rules::Operation::Call) = (inv.cap.index(), inv.op) else {
        return Err(g);
    };
    let (task, frame) = match k.thread_mut(cur) {
        Some(t) if t.pending.is_none() && t.vcpu.is_some() && is_resume(t, tag) => {
            (t.task, t.frame_mut() as *mut arch::TrapFrame)
        }
        _ => return Err(g),
    };
    // The capability names the current thread (alive: it runs here), as
    // `Kernel::lookup_cap` would find it.
    let own = matches!(task.and_then(|t| k.objs.get(t)), Some(KObject::Task(t))
        if t.caps.lookup(index, l4_abi::CapRights::R).is_ok_and(|e| e.obj == cur));
    if !own {
        return Err(g);
    }
    let label = match resume(k, cur, cur) {
        Ok(()) => 0,
        Err(e) => e.as_ret(),
    };
    // SAFETY: the current thread's user registers, on its kernel stack:
    // nothing else refers to them while it runs here.
    unsafe { (*frame).set_result(0, MsgTag::new(label, 0, 0, 0), 0) };
    Ok((guest_loop(g), frame))
}

/// An interrupt for the vCPU of thread `th` (an Irq bound to it, or the
/// kernel's own): queued, and the vCPU woken or kicked to take it. `hw`:
/// the physical line of a hardware interrupt, which the kernel unmasks
/// when the guest completes it.
pub fn inject(k: &mut Kernel, th: ObjId, intid: u32, prio: u8, hw: Option<u32>) {
    let Some(v) = vcpu_of(k, th) else { return };
    // The line of the source that injects `intid` now (an INTID may pass
    // from a hardware Irq to a software one).
    if v.hw_line(intid) != hw {
        v.hw_irqs.retain(|&(i, _)| i != intid);
        if let Some(line) = hw {
            v.hw_irqs.push((intid, line));
        }
    }
    v.queue(intid, prio);
    let waiting = v.in_guest;
    let t = k.known_thread(th);
    if waiting && t.state == (State::Recv { from: Some(th) }) {
        k.make_ready(th);
    } else if let Some(c) = t.running_on
        && c != arch::cpu_id()
    {
        crate::platform::gic::send_resched_ipi(c);
    }
}

/// Something arrived for the VMM thread `th` itself (an Irq attached to
/// it, a sender): a running guest is sent out ([`ExitReason::Kick`]).
pub fn kick(k: &mut Kernel, th: ObjId) {
    let Some(t) = k.thread(th) else { return };
    if !t.vcpu.as_ref().is_some_and(|v| v.in_guest) {
        return;
    }
    if t.state == (State::Recv { from: Some(th) }) {
        k.make_ready(th);
    } else if let Some(c) = t.running_on
        && c != arch::cpu_id()
    {
        crate::platform::gic::send_resched_ipi(c);
    }
}

/// A Vm was deleted: vCPUs running in it are sent out.
pub fn vm_deleted(k: &mut Kernel, vm: ObjId) {
    let mut users = alloc::vec::Vec::new();
    for (id, o) in k.objs.iter_mut() {
        if let KObject::Thread(t) = o
            && t.vcpu.as_ref().is_some_and(|v| v.vm == vm && v.in_guest)
        {
            users.push(id);
        }
    }
    for th in users {
        kick(k, th);
    }
}

/// What the kernel does next for the current thread.
enum Step {
    /// Not a vCPU in its guest: on to user mode.
    User,
    /// Enter the guest; afterwards the VMM's TLS registers (its
    /// TPIDR_EL0 and TPIDRRO_EL0) come back.
    Enter(*mut Vcpu, (u64, u64)),
    /// Let another thread run (this one blocked or was preempted), then
    /// look again.
    Schedule,
}

/// On the way back to user mode (no lock held, IRQs masked): if the
/// current thread resumed its vCPU, run the guest until an exit for the
/// VMM.
#[inline(always)]
pub fn return_to_user() {
    if ACTIVE.load(Ordering::Relaxed) != 0 {
        run_guest();
    }
}

/// [`return_to_user`] while some vCPU is in its guest.
#[inline(never)]
fn run_guest() {
    drop(guest_loop(bkl::lock()));
}

/// Runs the current thread's guest, if it resumed it, until an exit for
/// the VMM; returns with the lock held when on to user mode.
fn guest_loop(mut g: bkl::Guard) -> bkl::Guard {
    loop {
        let (v, tls) = match prepare(g.kernel()) {
            Step::User => {
                own_space(g.kernel());
                return g;
            }
            Step::Schedule => {
                schedule(&mut g);
                continue;
            }
            Step::Enter(v, tls) => (v, tls),
        };
        drop(g);
        // SAFETY: the vCPU belongs to the current thread, which is not
        // freed while this CPU runs it (a deleted thread stays a zombie
        // until its CPU switched away), and only this CPU touches the
        // guest state (`s`, `lrs`, `fp`) while it runs; the rest is
        // changed under the lock only.
        let (exit, eisr) = unsafe {
            let area = (*v).state_kva as *mut VcpuState;
            let exit = hw::run(&raw mut (*area).regs, (*v).s.regs.pstate);
            (*v).s.regs.pstate = hw::exit_pstate();
            let gic = hw::save(area, &mut (*v).s);
            (*v).lrs = gic.lrs;
            (exit, gic.eisr)
        };
        // The guest had its own TLS registers: the VMM's come back, so that
        // a switch away from this thread keeps the VMM's, not the guest's.
        arch::set_tls(tls.0, tls.1);
        super::vm::set_running(0);
        g = bkl::lock();
        let k = g.kernel();
        if eisr != 0 {
            // SAFETY: as above; under the lock now.
            for line in unsafe { (*v).completed_hw(eisr) } {
                crate::platform::gic::set_enabled(line, true);
            }
        }
        if matches!(exit, hw::ExitKind::Irq | hw::ExitKind::Fiq) {
            // An interrupt came to EL2: take it as from user mode.
            arch::fp_access(k.cpus[arch::cpu_id()].fp_on);
            crate::platform::gic::handle(k);
            crate::entry::apply_pending(k);
            if k.cpus[arch::cpu_id()].need_resched {
                schedule(&mut g);
            }
        } else if handle_exit(k, exit) {
            // An exit for the VMM: on to user mode (what `prepare` would
            // find on the next round).
            own_space(k);
            return g;
        }
    }
}

/// Installs the current thread's address space on the way to user mode:
/// `schedule` leaves it out for a vCPU thread in its guest.
fn own_space(k: &mut Kernel) {
    let cpu = arch::cpu_id();
    if !k.cpus[cpu].space_deferred {
        return;
    }
    k.cpus[cpu].space_deferred = false;
    let space = k.cpus[cpu]
        .current
        .and_then(|c| k.thread(c))
        .and_then(|t| t.space);
    if let Some(space) = space {
        k.cpus[cpu].switch_space(space);
    }
}

/// Under the lock: decides whether and how to enter the guest.
fn prepare(k: &mut Kernel) -> Step {
    let cpu = arch::cpu_id();
    let Some(cur) = k.cpus[cpu].current else {
        return Step::User;
    };
    let Some(t) = k.thread_mut(cur) else {
        // Deleted while it ran here: it never runs again.
        k.cpus[cpu].need_resched = true;
        return Step::Schedule;
    };
    let (pending_msgs, pending_regs) = (
        !t.pending_irqs.is_empty() || !t.senders.is_empty(),
        t.pending.is_some(),
    );
    let tls = (t.tpidr_el0, t.utcb_uva);
    let Some(v) = t.vcpu.as_deref_mut() else {
        return Step::User;
    };
    if !v.in_guest {
        return Step::User;
    }
    if pending_regs {
        // ex_regs from another CPU: the VMM's registers change, so it
        // gets them back now.
        finish(k, cur, ExitReason::Kick, None, None);
        crate::entry::apply_pending(k);
        return Step::User;
    }
    let vm = v.vm;
    let Some(vttbr) = (match k.objs.get(vm) {
        Some(KObject::Vm(m)) => Some((m.vttbr(), m.vmid)),
        _ => None,
    }) else {
        finish(k, cur, ExitReason::Kick, Some(Error::NoEnt), None);
        return Step::User;
    };
    if pending_msgs {
        finish(k, cur, ExitReason::Kick, None, None);
        return Step::User;
    }
    let resched = k.cpus[cpu].need_resched;
    let v = vcpu_of(k, cur).expect("vcpu");
    // The virtual timer: inject its PPI when it fired and is not in a
    // list register yet.
    if v.timer_fired() && !v.in_lr(VTIMER_INTID, 0b11) {
        v.queue(VTIMER_INTID, 0);
    }
    let left = v.fill_lrs();
    if v.wfi {
        if v.irq_pending() {
            v.wfi = false;
        } else {
            // Wait for an interrupt: injection wakes us, or the timer's
            // deadline ends the wait.
            let deadline = v.timer_deadline();
            k.make_blocked(cur, State::Recv { from: Some(cur) }, deadline);
            return Step::Schedule;
        }
    }
    if resched {
        return Step::Schedule;
    }
    let v = if v.fp_loaded {
        v
    } else {
        load_guest_fp(k, cur);
        vcpu_of(k, cur).expect("vcpu")
    };
    // Timer armed and not pending: let its PPI bring the guest out.
    let timer_armed = v.timer_deadline().is_some() && !v.in_lr(VTIMER_INTID, 0b11);
    set_vtimer_ppi(cpu, timer_armed);
    if v.last_cpu.is_some_and(|c| c != cpu) {
        hw::tlb_flush_vmid_local(vttbr.1);
    }
    // A CPU that held this vCPU's EL1 registers before it ran elsewhere
    // holds old ones: only the CPU it last ran on may keep them.
    let el1_here = v.el1_kept && v.last_cpu == Some(cpu);
    v.last_cpu = Some(cpu);
    let ich_extra = if left { abi::hcr::UIE } else { 0 };
    // SAFETY: the state area is a page of kernel memory (the task's UTCB
    // area), which lives as long as the task and so the thread.
    unsafe {
        hw::load(
            v.state_kva as *const VcpuState,
            &v.s,
            v.id,
            el1_here,
            vttbr.0,
            v.lrs,
            ich_extra,
        )
    };
    v.el1_kept = true;
    hw::guest_fp();
    super::vm::set_running(vttbr.1);
    Step::Enter(v as *mut Vcpu, tls)
}

/// Under the lock, after an exit: handles it, or ends `vcpu_resume`.
/// Returns whether the guest's run ended (or there is none any more): on
/// to user mode.
fn handle_exit(k: &mut Kernel, exit: hw::ExitKind) -> bool {
    let cpu = arch::cpu_id();
    arch::fp_access(k.cpus[cpu].fp_on);
    super::vm::reap();
    let Some(cur) = k.cpus[cpu].current else {
        return true;
    };
    match exit {
        hw::ExitKind::Irq | hw::ExitKind::Fiq => false,
        hw::ExitKind::SError { esr } => {
            let exit = Exit {
                esr,
                ..Exit::default()
            };
            finish(k, cur, ExitReason::Other, None, Some(exit));
            true
        }
        hw::ExitKind::Sync { esr, far, hpfar } => sync_exit(k, cur, esr, far, hpfar),
    }
}

/// A synchronous exit: handled here (WFx, ID registers), or for the VMM
/// (returns true).
fn sync_exit(k: &mut Kernel, cur: ObjId, esr: u64, far: u64, hpfar: u64) -> bool {
    let ec = (esr >> 26) & 0x3f;
    let Some(v) = vcpu_of(k, cur).filter(|v| v.in_guest) else {
        return true;
    };
    let vm = v.vm;
    match ec {
        abi::ec::WFX => {
            v.skip_instruction();
            if hw::is_wfi(esr) {
                v.wfi = true;
            }
            return false;
        }
        abi::ec::SYSREG => {
            // An ID register read: the kernel answers.
            let access = Exit {
                esr,
                ..Exit::default()
            }
            .sysreg();
            if let Some(a) = access.filter(|a| a.read)
                && let Some(value) = hw::id_register(a.encoding)
            {
                v.set_reg(a.reg, value);
                v.skip_instruction();
                return false;
            }
        }
        _ => {}
    }
    let abort = matches!(ec, abi::ec::DABT_LOWER | abi::ec::IABT_LOWER);
    let gpa = if abort { fault_gpa(hpfar, far) } else { 0 };
    if ec == abi::ec::DABT_LOWER && shortcut_access(k, cur, vm, esr, gpa) {
        return false;
    }
    // The syndrome's fault status says whether the address was mapped.
    let reason = classify(esr);
    let exit = Exit {
        reason: reason as u64,
        esr,
        far,
        gpa,
        info: 0,
    };
    finish(k, cur, reason, None, Some(exit));
    true
}

/// A data abort at `gpa` on one of the Vm's MMIO shortcuts: answered
/// here, and the guest goes on after the instruction. `false`: the access
/// is the VMM's (no shortcut covers it, or a doorbell's Irq is gone or no
/// longer the setter's, which removes the shortcut).
fn shortcut_access(k: &mut Kernel, cur: ObjId, vm: ObjId, esr: u64, gpa: u64) -> bool {
    let Some(KObject::Vm(m)) = k.objs.get(vm) else {
        return false;
    };
    if m.shortcuts.is_empty() {
        return false;
    }
    let Some(access) = (Exit {
        esr,
        ..Exit::default()
    })
    .mmio() else {
        return false;
    };
    let Some(answer) = m.shortcuts.answer(gpa, access.size, access.write) else {
        return false;
    };
    let read = match answer {
        Answer::Trigger(bell) => {
            let Some(irq) = bell.irq(k) else {
                if let Some(KObject::Vm(m)) = k.objs.get_mut(vm) {
                    let _ = m.shortcuts.remove(gpa);
                }
                return false;
            };
            super::irq::trigger(k, irq);
            None
        }
        Answer::Read(value) => Some(access.read_value(value.into())),
        Answer::Drop => None,
    };
    if let Some(v) = vcpu_of(k, cur) {
        if let Some(value) = read {
            v.set_reg(access.reg, value);
        }
        v.skip_instruction();
    }
    true
}

/// Puts the FP/SIMD registers of `cur`'s guest into the CPU (the VMM's,
/// if it used them, saved first). While they are loaded no thread's are
/// (the CPU's `fp_on` is clear).
fn load_guest_fp(k: &mut Kernel, cur: ObjId) {
    let cpu = arch::cpu_id();
    let c = &mut k.cpus[cpu];
    c.fp_regs_of = None;
    c.fp_on = false;
    arch::fp_access(true);
    if let Some(t) = k.thread_mut(cur) {
        crate::fp::leave(t, cpu);
        if let Some(v) = t.vcpu.as_deref_mut() {
            match &v.sve {
                Some(sve) => arch::sve_restore(sve),
                None => arch::fp_restore(&v.fp),
            }
            v.fp_loaded = true;
        }
    }
    arch::fp_access(false);
}

/// Ends `vcpu_resume` for `cur`: the state, with `exit` when the guest
/// exited for the VMM, goes to the state area, the VMM's FP/SIMD state
/// comes back, and the call returns the exit reason as its label (or
/// `err`).
fn finish(k: &mut Kernel, cur: ObjId, reason: ExitReason, err: Option<Error>, exit: Option<Exit>) {
    let Some(t) = k.thread_mut(cur) else { return };
    if !t.vcpu.as_ref().is_some_and(|v| v.in_guest) {
        return;
    }
    let label = match err {
        Some(e) => e.as_ret(),
        None => reason as i64,
    };
    t.set_result(0, MsgTag::new(label, 0, 0, 0), 0);
    let Some(v) = t.vcpu.as_deref_mut() else {
        return;
    };
    v.in_guest = false;
    v.wfi = false;
    ACTIVE.fetch_sub(1, Ordering::Relaxed);
    // The guest's FP/SIMD registers stay in the CPU for the next entry
    // unless the VMM wants its own now.
    let give_back = v.fp_loaded && v.vmm_fp > 0;
    if give_back {
        v.vmm_fp -= 1;
        v.spill_fp();
    }
    if let Some(e) = exit {
        // Field by field: a struct copy becomes a call.
        let x = &mut v.s.exit;
        (x.esr, x.far, x.gpa, x.info) = (e.esr, e.far, e.gpa, e.info);
    }
    v.s.exit.reason = reason as u64;
    // What is still queued stays for the next resume; the area shows the
    // list registers as the guest left them. The general and EL1
    // registers are there already (the exit saved them there).
    write_back(v.state_kva as *mut VcpuState, &v.s, hw::lr_count());
    v.synced = true;
    // The VMM's TLS registers are back already (the exit put them back,
    // or the guest did not run since the resume), and so is the host's
    // FP/SIMD trapping (`handle_exit`, or `spill_fp`): with the guest's
    // registers still in the CPU, the VMM's first FP/SIMD use traps
    // ([`vmm_used_fp`]). A VMM that used them lately gets its own back
    // now, as that trap would.
    if give_back {
        crate::fp::give_back(t);
        crate::fp::own(&mut k.cpus[arch::cpu_id()], cur);
    }
}

/// How many exits for the VMM give it its FP/SIMD registers back at once
/// after it used them ([`Vcpu::vmm_fp`]).
const EAGER_VMM_FP: u8 = 16;

/// The VMM thread `t` used FP/SIMD (the access trapped) while the CPU may
/// hold its guest's registers: they go to the vCPU first, and its next
/// exits give the VMM its registers back at once.
pub fn vmm_used_fp(t: &mut super::thread::Thread) {
    if let Some(v) = t.vcpu.as_deref_mut()
        && v.fp_loaded
    {
        v.spill_fp();
        v.vmm_fp = EAGER_VMM_FP;
    }
}

/// Writes the kernel's parts of the state (`s`) to the state area `area`:
/// the exit, pstate, timer, GIC (the first `lrs` list registers),
/// VMPIDR, with `unchanged` and the injection count zero. From here to
/// the next resume, the kernel's copy and the area agree.
fn write_back(area: *mut VcpuState, s: &VcpuState, lrs: usize) {
    let g = &s.gic;
    // SAFETY: the state area is a page of kernel memory (the task's UTCB
    // area), which lives as long as the task and so the thread; the VMM
    // may read it meanwhile (each field is written once).
    unsafe {
        // Field by field: a volatile write of a struct becomes a call.
        let e = &raw mut (*area).exit;
        core::ptr::write_volatile(&raw mut (*e).reason, s.exit.reason);
        core::ptr::write_volatile(&raw mut (*e).esr, s.exit.esr);
        core::ptr::write_volatile(&raw mut (*e).far, s.exit.far);
        core::ptr::write_volatile(&raw mut (*e).gpa, s.exit.gpa);
        core::ptr::write_volatile(&raw mut (*e).info, s.exit.info);
        core::ptr::write_volatile(&raw mut (*area).regs.pstate, s.regs.pstate);
        let t = &raw mut (*area).timer;
        core::ptr::write_volatile(&raw mut (*t).cntvoff, s.timer.cntvoff);
        core::ptr::write_volatile(&raw mut (*t).ctl, s.timer.ctl);
        core::ptr::write_volatile(&raw mut (*t).cval, s.timer.cval);
        let a = &raw mut (*area).gic;
        core::ptr::write_volatile(&raw mut (*a).hcr, g.hcr);
        core::ptr::write_volatile(&raw mut (*a).vmcr, g.vmcr);
        for i in 0..hw::apr_count() {
            core::ptr::write_volatile(&raw mut (*a).ap0r[i], g.ap0r[i]);
            core::ptr::write_volatile(&raw mut (*a).ap1r[i], g.ap1r[i]);
        }
        for (i, &v) in g.lr.iter().enumerate().take(lrs) {
            core::ptr::write_volatile(&raw mut (*a).lr[i], v);
        }
        core::ptr::write_volatile(&raw mut (*a).lr_count, g.lr_count);
        core::ptr::write_volatile(&raw mut (*a).elrsr, g.elrsr);
        core::ptr::write_volatile(&raw mut (*area).vmpidr, s.vmpidr);
        core::ptr::write_volatile(&raw mut (*area).unchanged, 0);
        core::ptr::write_volatile(&raw mut (*area).inject.count, 0);
    }
}

/// The maintenance interrupt: the guest left, which is all it is for.
pub fn maintenance() {}

/// The virtual timer's PPI fired while a guest ran: keep it off until
/// the guest is entered again (the kernel then injects it).
pub fn vtimer() {
    set_vtimer_ppi(arch::cpu_id(), false);
}

/// Whether PPI 27 is enabled at each CPU's redistributor, as the kernel
/// last set it (anything else: not known yet).
static VTIMER_PPI: [AtomicU8; MAX_CPUS] = [const { AtomicU8::new(PPI_UNKNOWN) }; MAX_CPUS];
const PPI_UNKNOWN: u8 = 2;

/// Enables or disables the virtual timer's PPI on this CPU (`cpu`), with
/// the redistributor written only when that changes it.
fn set_vtimer_ppi(cpu: usize, on: bool) {
    let Some(last) = VTIMER_PPI.get(cpu) else {
        crate::platform::gic::set_private_enabled(VTIMER_INTID, on);
        return;
    };
    // Only this CPU uses its entry (IRQs masked): no atomic swap needed.
    if last.load(Ordering::Relaxed) != u8::from(on) {
        last.store(u8::from(on), Ordering::Relaxed);
        crate::platform::gic::set_private_enabled(VTIMER_INTID, on);
    }
}

const _: () = assert!(MAX_LRS >= 4);

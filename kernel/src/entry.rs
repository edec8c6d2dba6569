//! The kernel's entry points from the exception vectors (`arch::trap`) and
//! the interrupt controller: each takes the big kernel lock, does its work
//! on the kernel state, and schedules before it returns.

use crate::arch;
use crate::bkl;
use crate::fp;
use crate::ipc;
use crate::obj::KObject;
use crate::obj::thread::{self, State};
use crate::sched::schedule;
use crate::state::Kernel;
use crate::syscall;
use kernel_core::arch::aarch64::esr::{Esr, ec};
use kernel_core::kobj::ObjId;
use l4_abi::MsgTag;

/// Interrupt entry (from EL0 or from idle; the idle loop releases the
/// lock before it waits, so this takes it either way).
pub fn irq(from_user: bool) {
    let mut g = bkl::lock();
    crate::platform::gic::handle(g.kernel());
    if from_user {
        let k = g.kernel();
        apply_pending(k);
        if k.cpus[arch::cpu_id()].need_resched {
            schedule(&mut g);
        }
    }
}

/// A lone ESC arrived (`-serial_esc`): the kernel debugger, until `g`.
/// Called by the IRQ layer.
pub fn enter_debugger(k: &mut Kernel) {
    crate::jdb::run(k);
}

/// Called by the IRQ layer for this CPU's timer: the tick, or a timeout
/// that falls between ticks.
pub fn on_tick(k: &mut Kernel) {
    k.tick();
}

/// Another CPU made work for us.
pub fn on_resched_ipi(k: &mut Kernel) {
    k.cpus[arch::cpu_id()].need_resched = true;
    // Or a thread was queued behind the running one: turns need the tick.
    k.start_tick();
}

/// A hardware interrupt bound to Irq object `irq` fired. Returns false if
/// that object is gone.
pub fn on_hw_irq(k: &mut Kernel, irq: ObjId) -> bool {
    let alive = matches!(k.objs.get(irq), Some(KObject::Irq(_)));
    crate::obj::irq::trigger(k, irq);
    alive
}

/// Entry from a thread's first switch (see entry of a new thread).
#[unsafe(no_mangle)]
extern "C" fn thread_started() {
    // SAFETY: the switch to this new thread handed it the lock, held by
    // the guard of the thread switched away from, which stays on that
    // thread's stack until it runs again.
    let mut g = unsafe { bkl::Guard::adopt() };
    g.kernel().reap();
}

/// The IPC fast path ([`ipc::fastpath`]) for a native IPC with registers
/// `x0..x2`, then that of a VMM's vCPU resume
/// ([`crate::obj::vcpu::fast_resume`]). Takes the big kernel lock and keeps it: `Some(frame)`: this
/// CPU now runs the thread of `frame` (entry.S releases the lock once it
/// stands on that thread's stack); `None`: nothing was done, the general
/// path ([`user_exception`]) goes on.
#[inline(always)]
pub fn fast_ipc(x0: u64, x1: u64, x2: u64) -> Option<*mut arch::TrapFrame> {
    let mut g = bkl::lock();
    let thread_call = x0 & l4_abi::sys::FLAGS_MASK == l4_abi::sys::CALL
        && MsgTag(x1).label() == l4_abi::Proto::Thread as i64;
    let frame = if thread_call {
        // A VMM's resume of its vCPU (the IPC fast path takes no call with
        // the Thread protocol): back to the VMM (the same thread) after the guest's
        // next exit for it.
        match crate::obj::vcpu::fast_resume(g, x0, x1, x2) {
            Ok((kept, f)) => {
                g = kept;
                Some(f)
            }
            Err(kept) => {
                g = kept;
                None
            }
        }
    } else {
        ipc::fastpath::ipc(g.kernel(), x0, x1, x2)
    };
    g.keep();
    frame
}

/// A synchronous exception from EL0 on the current thread (the general
/// path); `regs` are the registers of a native call. `locked`: the big
/// kernel lock is held already (the fast path gave up). Releases it.
pub fn user_exception(esr: Esr, regs: arch::CallRegs, locked: bool) {
    let mut g = if locked {
        // SAFETY: the fast path took the lock and kept it, without a guard.
        unsafe { bkl::Guard::adopt() }
    } else {
        bkl::lock()
    };
    let native = esr.ec() == ec::SVC64 && esr.imm16() == l4_abi::SVC_NATIVE;
    let k = g.kernel();
    let cur = k.current();
    if let Some(t) = k.thread(cur) {
        if t.pending.is_some() && apply_pending(k) {
            // The interrupted work is void.
        } else if native {
            syscall::syscall(k, cur, regs);
        } else if esr.ec() == ec::FP_ACCESS {
            fp::trap(k, cur);
        } else {
            ipc::raise_fault(k, cur, esr, arch::fault_address());
        }
    } else {
        // Deleted while it ran here: it never runs again.
        k.cpus[arch::cpu_id()].need_resched = true;
    }
    let c = &k.cpus[arch::cpu_id()];
    let resched = c.need_resched
        || c.current
            .is_none_or(|cur| k.thread(cur).is_none_or(|t| t.state != State::Ready));
    if resched {
        schedule(&mut g);
    }
}

/// Applies what an ex_regs on another CPU left for the current thread.
/// Returns whether there was something (the interrupted work is void).
pub fn apply_pending(k: &mut Kernel) -> bool {
    let cur = k.cpus[arch::cpu_id()].current;
    match cur
        .and_then(|c| k.thread_mut(c))
        .and_then(|t| t.pending.take())
    {
        Some(p) => {
            thread::apply_regs(k, cur.expect("current thread"), p);
            k.cpus[arch::cpu_id()].need_resched = true;
            true
        }
        None => false,
    }
}

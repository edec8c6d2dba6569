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
use crate::state::{Kernel, with};
use crate::syscall;
use kernel_core::kobj::ObjId;

/// Interrupt entry (from EL0 or from idle). Takes the BKL unless this CPU
/// holds it already (the idle loop releases it before waiting, so it does
/// not).
pub fn irq(from_user: bool) {
    bkl::lock();
    crate::platform::gic::handle();
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
        crate::obj::irq::trigger(k, irq);
        alive
    })
}

/// Entry from a thread's first switch (see entry of a new thread).
#[unsafe(no_mangle)]
extern "C" fn thread_started() {
    with(|k| k.reap());
    bkl::unlock();
}

/// The IPC fast path ([`ipc::fastpath`]) for a native IPC with registers
/// `x0..x2`. Takes the big kernel lock and keeps it: `Some(frame)`: this
/// CPU now runs the thread of `frame` (entry.S releases the lock once it
/// stands on that thread's stack); `None`: nothing was done, the general
/// path ([`user_exception`]) goes on.
#[inline(always)]
pub fn fast_ipc(x0: u64, x1: u64, x2: u64) -> Option<*mut arch::TrapFrame> {
    bkl::lock();
    with(|k| ipc::fastpath::ipc(k, x0, x1, x2))
}

/// A synchronous exception from EL0 on the current thread (the general
/// path); `regs` are the registers of a native call. `locked`: the big
/// kernel lock is held already (the fast path gave up). Releases it.
pub fn user_exception(
    esr: kernel_core::arch::aarch64::esr::Esr,
    regs: arch::CallRegs,
    locked: bool,
) {
    if !locked {
        bkl::lock();
    }
    let native =
        esr.ec() == kernel_core::arch::aarch64::esr::ec::SVC64 && esr.imm16() == l4_abi::SVC_NATIVE;
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
            syscall::syscall(k, cur, regs);
        } else if esr.ec() == kernel_core::arch::aarch64::esr::ec::FP_ACCESS {
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

/// Applies what an ex_regs on another CPU left for the current thread.
/// Returns whether there was something (the interrupted work is void).
fn apply_pending(k: &mut Kernel) -> bool {
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

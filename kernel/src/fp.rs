//! Lazy FP/SIMD switching. A thread's FP/SIMD registers are loaded only
//! when it first uses them after being switched in (the access traps), and
//! saved on switch-out only if it used them. A thread that never touches
//! them (servers, the IPC fast path) costs nothing; the state of a thread
//! that is not running is always in its `fp` block, so migration needs no
//! cross-CPU work.

use crate::arch;
use crate::obj::thread::Thread;
use crate::sched::Cpu;
use crate::state::Kernel;
use kernel_core::kobj::ObjId;

/// `t` stops running on CPU `cpu`: keep its registers if it used them,
/// and its guest's if the CPU holds them (a VMM thread after an exit, see
/// [`crate::obj::vcpu`]).
#[inline(always)]
pub fn leave(t: &mut Thread, cpu: usize) {
    if t.fp_live {
        arch::fp_save(&mut t.fp);
        t.fp_live = false;
        t.fp_saved_on = Some(cpu);
    }
    if t.vcpu.is_some() {
        leave_vcpu(t);
    }
}

/// [`leave`] for a VMM thread: its guest's registers, if the CPU holds
/// them, go to the vCPU (out of line: the IPC fast path calls `leave`).
#[cold]
#[inline(never)]
fn leave_vcpu(t: &mut Thread) {
    if let Some(v) = t.vcpu.as_deref_mut() {
        v.spill_fp();
    }
}

/// Another thread starts running on CPU `c`: its first FP/SIMD use traps.
pub fn enter(c: &mut Cpu) {
    if c.fp_on {
        arch::fp_access(false);
        c.fp_on = false;
    }
}

/// Thread `id` starts running on CPU `cpu` (see [`enter`]). When the
/// CPU's registers still hold exactly what it saved there last (no other
/// thread or guest used FP/SIMD on this CPU since), they are its again at
/// once instead of on the trap of its first use: a server with a CPU to
/// itself, or one that alternates with threads that leave FP/SIMD alone,
/// then does not trap on every wake-up. VMM threads, whose guest's
/// registers may be in the CPU ([`crate::obj::vcpu`]), trap as before.
/// Not for the IPC fast path (a few instructions more there).
pub fn enter_thread(k: &mut Kernel, id: ObjId, cpu: usize) {
    let cached = k.cpus[cpu].fp_regs_of == Some(id);
    match k.thread_mut(id) {
        Some(t) if cached && t.fp_saved_on == Some(cpu) && t.vcpu.is_none() => {
            t.fp_live = true;
            own(&mut k.cpus[cpu], id);
        }
        _ => enter(&mut k.cpus[cpu]),
    }
}

/// Loads `t`'s registers (the CPU holds nobody's that must be kept) and
/// marks them live; the caller makes `t` the CPU's FP/SIMD owner.
pub fn give_back(t: &mut Thread) {
    arch::fp_restore(&t.fp);
    t.fp_live = true;
}

/// The current thread `cur` used FP/SIMD: load its registers (unless this
/// CPU's registers still hold exactly what it saved here last) and let it
/// go on.
pub fn trap(k: &mut Kernel, cur: ObjId) {
    let cpu = arch::cpu_id();
    let cached = k.cpus[cpu].fp_regs_of == Some(cur);
    let Some(t) = k.thread_mut(cur) else { return };
    crate::obj::vcpu::vmm_used_fp(t);
    if cached && t.fp_saved_on == Some(cpu) {
        t.fp_live = true;
    } else {
        give_back(t);
    }
    own(&mut k.cpus[cpu], cur);
}

/// The registers of `cur` (the current thread) are live on CPU `c`: its
/// FP/SIMD use no longer traps.
pub fn own(c: &mut Cpu, cur: ObjId) {
    c.fp_regs_of = Some(cur);
    c.fp_on = true;
    arch::fp_access(true);
}

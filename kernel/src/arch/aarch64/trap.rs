//! Exception entry from the vectors in entry.S.

use aarch64_cpu::registers::{ESR_EL2, FAR_EL2, Readable};
use kernel_core::arch::aarch64::esr::Esr;

/// Registers saved on exception entry (layout fixed by entry.S).
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct TrapFrame {
    pub x: [u64; 31],
    pub sp_el0: u64,
    pub elr: u64,
    pub spsr: u64,
}

const _: () = assert!(core::mem::size_of::<TrapFrame>() == 272);

impl TrapFrame {
    /// The result of a system call: status, tag and label in `x0..x2`.
    pub fn set_result(&mut self, status: u64, tag: l4_abi::MsgTag, label: u64) {
        self.x[0] = status;
        self.x[1] = tag.0;
        self.x[2] = label;
    }
}

/// Vector slots, in table order.
const KINDS: [&str; 16] = [
    "sync (EL2, SP0)",
    "IRQ (EL2, SP0)",
    "FIQ (EL2, SP0)",
    "SError (EL2, SP0)",
    "sync (EL2)",
    "IRQ (EL2)",
    "FIQ (EL2)",
    "SError (EL2)",
    "sync (EL0)",
    "IRQ (EL0)",
    "FIQ (EL0)",
    "SError (EL0)",
    "sync (AArch32)",
    "IRQ (AArch32)",
    "FIQ (AArch32)",
    "SError (AArch32)",
];

/// The registers of a native call: x0, x1, x2 and x8.
#[derive(Clone, Copy)]
pub struct CallRegs {
    pub x0: u64,
    pub x1: u64,
    pub x2: u64,
    pub x8: u64,
}

/// A native IPC system call (entry.S checked ESR and `x8`), with the
/// thread's registers `x0..x2`: the IPC fast path. Takes the big kernel
/// lock. Returns the frame of the thread the CPU switched to, whose stack
/// entry.S moves to before it calls [`bkl_release`]; null: nothing was
/// done, the general path goes on with the lock held.
#[unsafe(no_mangle)]
extern "C" fn fastpath_ipc(x0: u64, x1: u64, x2: u64) -> *mut TrapFrame {
    crate::entry::fast_ipc(x0, x1, x2).unwrap_or(core::ptr::null_mut())
}

/// A synchronous exception from EL0 (vector 8): system calls, faults.
/// `locked`: the fast path gave up on this native IPC and holds the big
/// kernel lock. Returns the frame to restore (always `frame`).
#[unsafe(no_mangle)]
extern "C" fn user_sync_handler(frame: *mut TrapFrame, locked: u64) -> *mut TrapFrame {
    let esr = Esr(ESR_EL2.get());
    // SAFETY: entry.S just saved the frame on this kernel stack; the
    // kernel only reaches it through the thread (Thread::frame) while it
    // holds the lock, which it does not use yet.
    let regs = unsafe {
        let f = &*frame;
        CallRegs {
            x0: f.x[0],
            x1: f.x[1],
            x2: f.x[2],
            x8: f.x[8],
        }
    };
    crate::entry::user_exception(esr, regs, locked != 0);
    crate::obj::vcpu::return_to_user();
    frame
}

/// Every other exception (entry.S).
#[unsafe(no_mangle)]
extern "C" fn trap_handler(frame: *mut TrapFrame, kind: u64) -> *mut TrapFrame {
    match kind {
        5 => crate::entry::irq(false),
        9 => {
            crate::entry::irq(true);
            crate::obj::vcpu::return_to_user();
        }
        _ => {
            let esr = Esr(ESR_EL2.get());
            let far = FAR_EL2.get();
            crate::kprintln!(
                "\nkernel: unhandled exception: {} on CPU {}",
                KINDS[kind as usize & 15],
                super::cpu_id()
            );
            // SAFETY: the frame entry.S saved; nothing else uses it, the
            // kernel stops here.
            dump(unsafe { &*frame }, esr, far);
            panic!("unhandled exception in the kernel");
        }
    }
    frame
}

/// The lock release of a fast-path switch (called from entry.S).
#[unsafe(no_mangle)]
extern "C" fn bkl_release() {
    // SAFETY: the fast path kept the lock (its guard is gone) and this CPU
    // now stands on the stack of the thread it switched to, which returns
    // to EL0 without touching kernel state.
    unsafe { crate::bkl::release_kept() };
}

/// Prints a register dump.
pub fn dump(f: &TrapFrame, esr: Esr, far: u64) {
    crate::kprintln!("  {}", esr);
    crate::kprintln!(
        "  pc {:016x}  far {:016x}  spsr {:08x}  sp_el0 {:016x}",
        f.elr,
        far,
        f.spsr,
        f.sp_el0
    );
    for row in 0..8 {
        let i = row * 4;
        let r = |j: usize| if i + j < 31 { f.x[i + j] } else { 0 };
        crate::kprintln!(
            "  x{:02} {:016x}  x{:02} {:016x}  x{:02} {:016x}  x{:02} {:016x}",
            i,
            r(0),
            i + 1,
            r(1),
            i + 2,
            r(2),
            i + 3,
            r(3)
        );
    }
}

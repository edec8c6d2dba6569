//! Exception entry from the vectors in entry.S.

use kernel_core::esr::Esr;

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

#[unsafe(no_mangle)]
extern "C" fn trap_handler(frame: &mut TrapFrame, kind: u64) {
    match kind {
        5 => crate::kern::irq(false),
        9 => crate::kern::irq(true),
        8 => {
            let esr = Esr(super::read_sysreg!("esr_el2"));
            let far = super::read_sysreg!("far_el2");
            crate::kern::user_exception(esr, far);
        }
        _ => {
            let esr = Esr(super::read_sysreg!("esr_el2"));
            let far = super::read_sysreg!("far_el2");
            crate::kprintln!(
                "\nkernel: unhandled exception: {} on CPU {}",
                KINDS[kind as usize & 15],
                super::cpu_id()
            );
            dump(frame, esr, far);
            panic!("unhandled exception in the kernel");
        }
    }
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

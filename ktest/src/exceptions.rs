//! Exceptions: the message to the exception handler with the register
//! state, replies that change registers (and only the allowed ones),
//! Linux system calls reflected the same way, triggering an exception,
//! a thread without a handler.

use l4::MsgTag;
use l4::abi::fault::ExcRegs;
use l4::abi::proto::ex_regs;
use l4::ipc;

use crate::fw::{Ctx, R};
use crate::rt::{self, Opts, Space, Worker, in_text, instruction_at, reply_regs, signal};

tests! {
    "exc.undefined_instruction_to_handler" => undefined,
    "exc.linux_svc_reflected" => linux_svc,
    "exc.short_reply_keeps_registers" => short_reply,
    "exc.reply_changes_only_nzcv_of_pstate" => pstate,
    "exc.in_other_task" => other_task,
    "exc.ex_regs_trigger_exception" => trigger,
    "exc.no_handler_stops_thread" => no_handler,
    "exc.shared_cpu_registers_trap" => shared_registers,
}

/// `udf #0`.
const UDF0: u32 = 0x0000_0000;
/// `svc #0`.
const SVC0: u32 = 0xd400_0001;

/// Executes `udf #0` with x0 = 7, x1 = 11; reports x0 afterwards.
extern "C" fn udf_entry(_: u64, _: u64) {
    let r: u64;
    // SAFETY: the undefined instruction traps to the exception handler (the
    // main thread), which resumes the thread after it or deletes it.
    unsafe {
        core::arch::asm!("mov x0, #7", "mov x1, #11", "udf #0",
            out("x0") r, out("x1") _, options(nostack));
    }
    signal(&[r]);
}

/// A Linux `write(1, 0x1234, 5)`: `svc #0` with x8 = 64; reports x0.
extern "C" fn svc0_entry(_: u64, _: u64) {
    let r: u64;
    // SAFETY: `svc #0` is reflected to the exception handler, which
    // replies with the result in x0; no memory is touched.
    unsafe {
        core::arch::asm!("svc #0",
            inout("x0") 1u64 => r, in("x1") 0x1234u64, in("x2") 5u64, in("x8") 64u64,
            options(nostack));
    }
    signal(&[r]);
}

/// Clears NZCV, executes `udf #0`, reports NZCV afterwards.
extern "C" fn nzcv_entry(_: u64, _: u64) {
    let f: u64;
    // SAFETY: as in `udf_entry`; only the flags change.
    unsafe {
        core::arch::asm!("msr nzcv, xzr", "udf #0", "mrs {f}, nzcv",
            f = out(reg) f, options(nostack));
    }
    signal(&[f]);
}

/// Replies to the exception `r` of `w` with x0 = `x0` and pc past the
/// instruction; the thread reports its x0 when it runs on.
fn skip_with_x0(w: &Worker, mut r: ExcRegs, x0: u64) -> R {
    r.x[0] = x0;
    r.pc += 4;
    reply_regs(&r)?;
    ensure_eq!(w.signal_word()?, x0, "x0 after the reply");
    Ok(())
}

/// The handler gets the registers of an undefined instruction; its reply
/// sets x0 and moves pc past the instruction.
fn undefined() -> R {
    let w = rt::spawn_default(udf_entry, 0, 0)?;
    let r = w.exception()?;
    ensure_eq!(r.exception_class(), 0, "exception class (unknown reason)");
    ensure_eq!(instruction_at(r.pc), Some(UDF0), "instruction at pc");
    ensure_eq!((r.x[0], r.x[1]), (7, 11), "x0 and x1");
    let (lo, hi) = w.stack_range();
    ensure!((lo..hi).contains(&r.sp), "sp {:#x} outside the stack", r.sp);
    ensure_eq!(r.tpidruro, w.utcb, "TPIDRRO_EL0 (the UTCB)");
    skip_with_x0(&w, r, 0x1234)
}

/// `svc #0` becomes an exception message with the syscall's ESR, the
/// arguments in x0..x2, the number in x8 and pc after the `svc`; the
/// reply's x0 is the result.
fn linux_svc() -> R {
    let w = rt::spawn_default(svc0_entry, 0, 0)?;
    let mut r = w.exception()?;
    ensure!(r.is_linux_syscall(), "ESR {:#x} is not svc #0", r.err);
    ensure_eq!(r.x[8], 64, "x8 (syscall number)");
    ensure_eq!((r.x[0], r.x[1], r.x[2]), (1, 0x1234, 5), "x0..x2");
    ensure_eq!(
        instruction_at(r.pc.wrapping_sub(4)),
        Some(SVC0),
        "instruction before pc (pc must be the return address)"
    );
    r.x[0] = 42;
    reply_regs(&r)?;
    ensure_eq!(w.signal_word()?, 42, "syscall result");
    Ok(())
}

/// A reply shorter than the register state changes nothing: the thread
/// executes the same instruction again.
fn short_reply() -> R {
    let w = rt::spawn_default(udf_entry, 0, 0)?;
    let first = w.exception()?;
    ipc::reply(MsgTag::new(0, 0, 0, 0)).ctx("short reply")?;
    let second = w.exception()?;
    ensure_eq!(second.pc, first.pc, "pc of the second exception");
    ensure_eq!(second.x[0], 7, "x0 of the second exception");
    skip_with_x0(&w, second, 99)
}

/// Of `pstate` a reply sets only NZCV (the thread stays at EL0 and runs
/// on).
fn pstate() -> R {
    let w = rt::spawn_default(nzcv_entry, 0, 0)?;
    let mut r = w.exception()?;
    ensure_eq!(r.pstate & 0xf, 0, "mode bits (EL0t)");
    r.pstate = u64::MAX;
    r.pc += 4;
    reply_regs(&r)?;
    ensure_eq!(w.signal_word()?, 0xf000_0000, "NZCV after the reply");
    let again = w.cap().read_regs().ctx("ex_regs")?;
    ensure_eq!(again.pstate & 0xf, 0, "mode bits after the reply");
    Ok(())
}

/// The handler of a thread in another task works the same.
fn other_task() -> R {
    let s = Space::new()?;
    let w = rt::spawn(udf_entry, 0, 0, &Opts::new().space(&s))?;
    let r = w.exception()?;
    ensure!(in_text(r.pc), "pc {:#x} not in ktest's code", r.pc);
    skip_with_x0(&w, r, 0x55)
}

/// ex_regs can make a (blocked) thread raise an exception.
fn trigger() -> R {
    let w = rt::spawn_default(rt::park_entry, 0, 0)?;
    rt::sleep_us(10_000)?;
    w.cap()
        .ex_regs(
            ex_regs::UNCHANGED,
            ex_regs::UNCHANGED,
            ex_regs::CANCEL | ex_regs::TRIGGER_EXCEPTION,
        )
        .ctx("ex_regs trigger exception")?;
    let r = w.exception()?;
    ensure!(in_text(r.pc), "pc {:#x} not in ktest's code", r.pc);
    Ok(())
}

/// Without an exception handler the thread stops; nothing arrives.
fn no_handler() -> R {
    let w = rt::spawn(udf_entry, 0, 0, &Opts::new().no_exc())?;
    w.quiet(rt::QUIET_US)
}

/// Accesses to registers one set of which every CPU has, which the kernel
/// does not switch between threads: `which` picks one (0: a PMCR_EL0
/// write, 1: a PMSELR_EL0 read, 2: an MDCCSR_EL0 read, 3: an SCXTNUM_EL0
/// write, 4: a CNTP_CTL_EL0 write, which at EL0 of the host is the
/// kernel's own timer, 5: a CNTV_CVAL_EL0 write, 9: RDVL, an SVE
/// instruction: the kernel switches only the FP/SIMD part of tasks' Z
/// registers; then reads tasks may do: 6: PMCCNTR_EL0, 7: CNTVCT_EL0,
/// 8: CNTPCT_EL0). Reports 1 after it.
extern "C" fn shared_register_entry(which: u64, _: u64) {
    // SAFETY: each access either traps to the exception handler (the main
    // thread), which resumes the thread after it, or reads a register no
    // Rust code here depends on; no memory is touched.
    unsafe {
        match which {
            0 => core::arch::asm!("msr pmcr_el0, xzr", options(nostack)),
            1 => core::arch::asm!("mrs {x}, pmselr_el0", x = out(reg) _, options(nostack)),
            2 => core::arch::asm!("mrs {x}, mdccsr_el0", x = out(reg) _, options(nostack)),
            3 => core::arch::asm!("msr S3_3_C13_C0_7, {x}", x = in(reg) 0x5c7u64, options(nostack)),
            4 => core::arch::asm!("msr cntp_ctl_el0, xzr", options(nostack)),
            5 => core::arch::asm!("msr cntv_cval_el0, xzr", options(nostack)),
            6 => core::arch::asm!("mrs {x}, pmccntr_el0", x = out(reg) _, options(nostack)),
            7 => core::arch::asm!("mrs {x}, cntvct_el0", x = out(reg) _, options(nostack)),
            9 => core::arch::asm!(".inst 0x04bf5029", out("x9") _, options(nostack)), // rdvl x9, #1
            _ => core::arch::asm!("mrs {x}, cntpct_el0", x = out(reg) _, options(nostack)),
        }
    }
    signal(&[1]);
}

/// A task must not configure the PMU (stop or reset the counters, count
/// events of others), use the debug communication channel, keep a value
/// in SCXTNUM_EL0, program a timer (at EL0 of the host, CNTP is the
/// kernel's own) or use SVE (guests may): each of these is one set per
/// CPU, shared by every thread that runs there. Each access is an
/// exception for the handler;
/// reading the cycle counter and the system counter is not.
fn shared_registers() -> R {
    let trapped = [
        (0, "PMCR_EL0"),
        (1, "PMSELR_EL0"),
        (2, "MDCCSR_EL0"),
        (3, "SCXTNUM_EL0"),
        (4, "CNTP_CTL_EL0"),
        (5, "CNTV_CVAL_EL0"),
        (9, "RDVL (SVE)"),
    ];
    for (which, name) in trapped {
        let w = rt::spawn_default(shared_register_entry, which, 0)?;
        let r = match w.recv(rt::WAIT_US) {
            Ok(m) if m.tag.is_exception() => {
                ExcRegs::from_words(m.words()).ok_or("short message")?
            }
            Ok(_) => fail!("{name}: accessed without an exception"),
            Err(e) => fail!("{name}: nothing arrived: {e:?}"),
        };
        ensure!(
            matches!(r.exception_class(), 0 | 0x18 | 0x19),
            "{name}: exception class {:#x}",
            r.exception_class()
        );
        let mut r = r;
        r.pc += 4;
        reply_regs(&r)?;
        ensure_eq!(w.signal_word()?, 1, "the thread runs on");
    }
    for (which, name) in [(6, "PMCCNTR_EL0"), (7, "CNTVCT_EL0"), (8, "CNTPCT_EL0")] {
        let w = rt::spawn_default(shared_register_entry, which, 0)?;
        match w.recv(rt::WAIT_US) {
            Ok(m) if m.proto() == rt::SIG => {}
            Ok(_) => fail!("{name}: read with an exception"),
            Err(e) => fail!("{name}: nothing arrived: {e:?}"),
        }
    }
    Ok(())
}

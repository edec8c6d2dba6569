//! Random code, for the kernel to survive: a tiny guest, and a thread of
//! another task, run programs of random instructions, most of them of the
//! kinds that leave the program's level or change what it runs with
//! (system registers, cache and TLB maintenance, PSTATE fields, exception
//! generation and return, hints (WFI and WFE among them), loads and stores
//! to memory, to devices and to nothing, branches).
//!
//! The guest's VMM is ktest, answering every exit as a VMM would; an Irq
//! for the VMM, triggered every few milliseconds, kicks a looping or
//! waiting program out. The thread's exception handler and pager is
//! ktest's main thread, which steps it past each exception and ends the
//! program at a page fault or when it goes quiet. The kernel must carry
//! out or refuse each instruction and keep running guests and threads.

use l4::abi::fault::ExcRegs;
use l4::abi::vcpu::{ExitReason, VcpuState, ec};
use l4::{Cap, Error, MemRights, base, ipc};

use crate::fuzz::xorshift;
use crate::fw::{Ctx, R};
use crate::rt::{self, Opts, Page, Space, reply_regs};
use crate::vm::{DATA, GUEST_BASE, Guest, MMIO, VMCR_OPEN, hvc, state, write_code};

tests! {
    "vm.random_guest_code_survives" => random_guest_code,
    "exc.random_task_code_survives" => random_task_code,
}

/// Programs run.
const PROGRAMS: u32 = 1_000;
/// Random instructions in each; `hvc #END` follows them.
const LENGTH: usize = 48;
const END: u32 = 0x7ff;
/// Exits a program may cause before the next one starts.
const EXITS_PER_PROGRAM: u32 = 100;
/// How often the VMM's Irq kicks the guest out.
const KICK_US: u64 = 3_000;

/// What the programs did.
#[derive(Debug, Default)]
struct Counts {
    /// Exits in all.
    exits: u32,
    /// Of them: MMIO, system registers, HVC (not the end), SMC.
    mmio: u32,
    sysreg: u32,
    hvc: u32,
    smc: u32,
    /// Programs that reached their end, or made their exits before.
    ended: u32,
    exhausted: u32,
    /// Exceptions the guest took (its vectors are not mapped).
    exceptions: u32,
    /// Programs kicked out.
    kicked: u32,
    /// Resumes the kernel refused (a state the guest made, e.g. an
    /// illegal return, that the VMM handed back as it was).
    refused: u32,
    /// Programs that branched out of their page or exited otherwise.
    left: u32,
}

fn random_guest_code() -> R {
    let mut code = [hvc(END); LENGTH + 1];
    let g = Guest::new(&code)?;
    let data = Page::with_marker(0)?;
    g.vm.cap()
        .as_task()
        .map_mem(base::TASK, data.addr(), 12, MemRights::RW, DATA)
        .ctx("map data")?;
    let irq = rt::irq()?;
    irq.cap().attach(base::THREAD, 0x6660).ctx("attach")?;
    let kicker = rt::spawn_default(kick_every, irq.idx(), KICK_US)?;
    let mut seed = 0x1234_5678_9abc_def1;
    let mut n = Counts::default();
    for _ in 0..PROGRAMS {
        for c in code.iter_mut().take(LENGTH) {
            seed = xorshift(seed);
            *c = instruction(seed);
        }
        g.load(&code);
        let s = state();
        *s = VcpuState::boot(GUEST_BASE, 0, 0);
        s.gic.vmcr = VMCR_OPEN;
        for x in s.regs.x.iter_mut() {
            seed = xorshift(seed);
            *x = operand(seed, &[DATA, MMIO, GUEST_BASE]);
        }
        run_program(&mut seed, &mut n)?;
    }
    drop(kicker);
    // Take a kick that came after the last program.
    let _ = ipc::ipc_wait(ipc::recv_timeout_us(0));
    drop(irq);
    // Every kind of exit came, and programs ended every way.
    let kinds = [n.mmio, n.sysreg, n.hvc, n.smc, n.exceptions];
    let ends = [n.ended + n.exhausted, n.kicked, n.left];
    ensure!(
        kinds.iter().chain(&ends).all(|&k| k > 0),
        "{PROGRAMS} programs: {n:?}"
    );
    // The kernel runs guests as before.
    drop(g);
    let g = Guest::new(&[hvc(5)])?;
    g.expect(ExitReason::Hvc)?;
    ensure_eq!(
        state().exit.imm16(),
        Some(5),
        "hvc after the random programs"
    );
    Ok(())
}

/// Runs the program in the code page until it ends, leaves, is kicked out
/// or made [`EXITS_PER_PROGRAM`] exits.
fn run_program(seed: &mut u64, n: &mut Counts) -> R {
    for _ in 0..EXITS_PER_PROGRAM {
        let r = match base::THREAD.vcpu_resume() {
            Ok(r) => r,
            Err(Error::Inval) => {
                n.refused += 1;
                return Ok(());
            }
            Err(e) => fail!("vcpu_resume: {e:?}"),
        };
        n.exits += 1;
        let s = state();
        match r {
            ExitReason::Hvc if s.exit.imm16() == Some(END as u16) => {
                n.ended += 1;
                return Ok(());
            }
            ExitReason::Hvc => n.hvc += 1,
            ExitReason::Smc => {
                n.smc += 1;
                s.regs.skip_instruction();
            }
            ExitReason::Mmio => {
                n.mmio += 1;
                let m = s.exit.mmio().ok_or("an MMIO exit without its access")?;
                if !m.write {
                    *seed = xorshift(*seed);
                    s.regs.set_reg(m.reg, m.read_value(*seed));
                }
                s.regs.skip_instruction();
            }
            ExitReason::SysReg => {
                n.sysreg += 1;
                let a = s
                    .exit
                    .sysreg()
                    .ok_or("a system-register exit without its access")?;
                if a.read {
                    s.regs.set_reg(a.reg, 0);
                }
                s.regs.skip_instruction();
            }
            ExitReason::Stage2Fault if s.exit.ec() == ec::IABT_LOWER => {
                // The guest took an exception of its own: its vectors
                // (VBAR_EL1 0) are not mapped. Back past what raised it,
                // at EL1 with everything masked. A fetch elsewhere is a
                // branch out of the page: the program is over.
                if s.exit.gpa >= 0x800 {
                    n.left += 1;
                    return Ok(());
                }
                n.exceptions += 1;
                s.regs.pc = s.regs.elr_el1.wrapping_add(4);
                s.regs.pstate = 0x3c5;
            }
            // A store to read-only or an access without syndrome.
            ExitReason::Stage2Fault => s.regs.skip_instruction(),
            ExitReason::Kick => {
                let _ = ipc::ipc_wait(ipc::recv_timeout_us(0));
                n.kicked += 1;
                return Ok(());
            }
            _ => {
                n.left += 1;
                return Ok(());
            }
        }
    }
    n.exhausted += 1;
    Ok(())
}

/// A random instruction: mostly system instructions, exception
/// generation and return, hints (WFI and WFE among them), loads and
/// stores; one in ten any 32-bit word.
fn instruction(r: u64) -> u32 {
    let low = (r >> 8) as u32;
    let reg = (r >> 40) as u32 & 0x1f;
    match r % 10 {
        // mrs, msr: half of them in the spaces that trap to EL2 or that
        // the kernel switches, the rest anywhere.
        k @ (0 | 1) => {
            let op = if k == 0 { 0xd530_0000 } else { 0xd510_0000 };
            let any = low & 0xf_ffff;
            if low >> 31 == 0 {
                return op | any;
            }
            // (op0 - 2, op1, CRn): debug; ID registers; SCTLR, CPACR;
            // TTBRs, TCR; RAS, ESR; PMU; LOR, MAIR; GIC, VBAR, DISR;
            // timers (EL0 and EL1).
            const SPACES: [(u32, u32, u32); 12] = [
                (0, 0, 0),
                (0, 0, 1),
                (1, 0, 0),
                (1, 0, 1),
                (1, 0, 2),
                (1, 0, 5),
                (1, 3, 9),
                (1, 0, 10),
                (1, 0, 12),
                (1, 3, 14),
                (1, 0, 14),
                (1, 0, 13),
            ];
            let (o0, op1, crn) = SPACES[(low >> 20) as usize % SPACES.len()];
            op | o0 << 19 | op1 << 16 | crn << 12 | (any & 0xfff)
        }
        // sys (DC, IC, TLBI, AT and the rest) and sysl.
        2 => 0xd508_0000 | (low & 0x7_ffff),
        3 => 0xd528_0000 | (low & 0x7_ffff),
        // msr to a PSTATE field (SPSel, DAIF, PAN, UAO, SSBS, DIT, ...).
        4 => 0xd500_401f | (low & 0x7_0fe0),
        // svc, hvc, smc, brk with any immediate, or anything of their
        // space (hlt, dcps, undefined).
        5 => {
            let imm = (low & 0xffff) << 5;
            match (low >> 16) % 5 {
                0 => 0xd400_0001 | imm,
                1 => 0xd400_0002 | imm,
                2 => 0xd400_0003 | imm,
                3 => 0xd420_0000 | imm,
                _ => 0xd400_0000 | (low & 0xff_ffff),
            }
        }
        // Hints and barriers (nop, yield, wfe, wfi, sev, ...; dsb, isb).
        6 => 0xd503_201f | (low & 0x1fe0),
        // ldr or str of a register at a register's address.
        7 => {
            let op = if low & 1 == 0 {
                0xf940_0000
            } else {
                0xf900_0000
            };
            op | ((low >> 1) & 0x1f) << 5 | reg
        }
        // eret, br, blr, ret.
        8 => match low % 4 {
            0 => 0xd69f_03e0,
            1 => 0xd61f_0000 | reg << 5,
            2 => 0xd63f_0000 | reg << 5,
            _ => 0xd65f_03c0,
        },
        _ => r as u32,
    }
}

/// A register's value at the start: an address in the first page at one
/// of `bases` (the program's data, a device, its code), a small number,
/// any number, or zero.
fn operand(r: u64, bases: &[u64]) -> u64 {
    let n = bases.len() as u64;
    match r % (n + 3) {
        k if k < n => bases[k as usize] + ((r >> 8) & 0xff8),
        k if k == n => (r >> 8) & 0xff,
        k if k == n + 1 => r,
        _ => 0,
    }
}

/// Worker: triggers the Irq `irq` every `us` microseconds (until it is
/// deleted with its thread).
extern "C" fn kick_every(irq: u64, us: u64) {
    loop {
        let _ = ipc::sleep_us(us);
        let _ = Cap::<l4::Irq>::from_index(irq).trigger();
    }
}

/// Programs the thread runs.
const TASK_PROGRAMS: u32 = 300;
/// Where its code and its data are in its task.
const TASK_CODE: u64 = 0x3100_0000_0000;
const TASK_DATA: u64 = 0x3100_0001_0000;
/// `udf #0x77`: the end of a program, and where it stands.
const UDF_END: u32 = 0x77;
const TASK_END: u64 = TASK_CODE + LENGTH as u64 * 4;
/// `svc #1`, the kernel's own system call: left out, since the thread
/// holds ktest's main thread (its pager) and could change it (random
/// system calls are `fuzz.random_invocations_survive`).
const SVC_KERNEL: u32 = 0xd400_0021;
/// How long a program may be silent before it is ended.
const QUIET_US: u64 = 20_000;

/// What the thread's programs did.
#[derive(Debug, Default)]
struct TaskCounts {
    /// Exceptions the handler stepped the thread past.
    exceptions: u32,
    /// Of them: Linux system calls (`svc #0`).
    syscalls: u32,
    /// Programs that reached their end.
    ended: u32,
    /// Ended by a page fault, by silence (a loop, a wait), by another
    /// message, or after [`EXITS_PER_PROGRAM`] exceptions.
    faulted: u32,
    silent: u32,
    other: u32,
    exhausted: u32,
}

/// A task for the programs: ktest's code, and the program's code and data
/// pages.
fn task_space(code: &Page, data: &Page) -> Result<Space, crate::fw::Fail> {
    let s = Space::new()?;
    s.map_page(code, TASK_CODE, MemRights::RX)?;
    s.map_page(data, TASK_DATA, MemRights::RW)?;
    Ok(s)
}

fn random_task_code() -> R {
    let code_page = Page::new(12)?;
    let data = Page::new(12)?;
    let mut s = task_space(&code_page, &data)?;
    let mut seed = 0x0bad_5eed_1234_5679;
    let mut n = TaskCounts::default();
    for program in 0..TASK_PROGRAMS {
        // A new task when the UTCBs of this one ran out (each thread
        // takes one).
        if program > 0 && u64::from(program) % (rt::UTCBS_PER_AREA / 2) == 0 {
            s = task_space(&code_page, &data)?;
        }
        let mut code = [UDF_END; LENGTH + 1];
        for c in code.iter_mut().take(LENGTH) {
            seed = xorshift(seed);
            *c = task_instruction(seed);
        }
        write_code(&code_page, &code);
        // The registers the program starts with (see `jump_entry`).
        for i in 0..32 {
            seed = xorshift(seed);
            data.write(i * 8, operand(seed, &[TASK_DATA, TASK_CODE]));
        }
        let w = rt::spawn(jump_entry, TASK_CODE, TASK_DATA, &Opts::new().space(&s))?;
        run_task_program(&w, &mut n)?;
    }
    ensure!(
        n.exceptions > TASK_PROGRAMS && n.syscalls > 0 && n.faulted > 0 && n.ended > 0,
        "{TASK_PROGRAMS} programs: {n:?}"
    );
    // The kernel serves as before: a thread that raises an exception.
    let w = rt::spawn(jump_entry, TASK_END, TASK_DATA, &Opts::new().space(&s))?;
    ensure_eq!(w.exception()?.pc, TASK_END, "the end marker's exception");
    Ok(())
}

/// A random instruction for the thread: as for the guest
/// ([`instruction`]), with Linux system calls and breakpoints added and
/// fewer loads, stores and branches (most of which end the program at a
/// page fault); never the kernel's own system call ([`SVC_KERNEL`]).
fn task_instruction(r: u64) -> u32 {
    let (kind, rest) = (r % 16, r >> 4);
    match kind {
        0 => 0xd400_0001,
        1 => 0xd420_0000 | ((rest as u32) & 0xffff) << 5,
        // Loads, stores and branches one time in four.
        _ if matches!(rest % 10, 7 | 8) && kind % 4 != 0 => instruction(rest - rest % 10),
        _ => match instruction(rest) {
            SVC_KERNEL => hvc(END),
            w => w,
        },
    }
}

/// Handles the messages of the thread `w` running a program until it
/// ends; the thread is deleted with `w` then.
fn run_task_program(w: &rt::Worker, n: &mut TaskCounts) -> R {
    for _ in 0..EXITS_PER_PROGRAM {
        let m = match w.recv(QUIET_US) {
            Ok(m) => m,
            Err(_) => {
                n.silent += 1;
                return Ok(());
            }
        };
        if m.tag.is_page_fault() {
            n.faulted += 1;
            return Ok(());
        }
        if !m.tag.is_exception() {
            n.other += 1;
            return Ok(());
        }
        let mut r = ExcRegs::from_words(m.words()).ok_or("a short exception message")?;
        if r.pc == TASK_END {
            n.ended += 1;
            return Ok(());
        }
        n.exceptions += 1;
        // A system call's pc is past the svc already.
        if r.exception_class() == 0x15 {
            n.syscalls += u32::from(r.is_linux_syscall());
        } else {
            r.pc = r.pc.wrapping_add(4);
        }
        reply_regs(&r)?;
    }
    n.exhausted += 1;
    Ok(())
}

/// Worker: loads x0..x15 and x18..x29 from the words at `regs` (x30 = 0,
/// so that a `ret` goes nowhere) and jumps to `code`; it never returns.
extern "C" fn jump_entry(code: u64, regs: u64) {
    // SAFETY: the jump leaves Rust for good: the thread runs the random
    // program in its own task, and ends only when ktest deletes it.
    unsafe {
        core::arch::asm!(
            "mov x16, x9",
            "mov x17, x10",
            "ldp x0, x1, [x17, #0]",
            "ldp x2, x3, [x17, #16]",
            "ldp x4, x5, [x17, #32]",
            "ldp x6, x7, [x17, #48]",
            "ldp x8, x9, [x17, #64]",
            "ldp x10, x11, [x17, #80]",
            "ldp x12, x13, [x17, #96]",
            "ldp x14, x15, [x17, #112]",
            "ldp x18, x19, [x17, #144]",
            "ldp x20, x21, [x17, #160]",
            "ldp x22, x23, [x17, #176]",
            "ldp x24, x25, [x17, #192]",
            "ldp x26, x27, [x17, #208]",
            "ldp x28, x29, [x17, #224]",
            "mov x30, xzr",
            "br x16",
            in("x9") code,
            in("x10") regs,
            options(noreturn),
        )
    }
}

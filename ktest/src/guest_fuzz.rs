//! Random guest code: a tiny guest runs programs of random instructions,
//! most of them of the kinds that reach EL2 or change what the guest runs
//! with (system registers, cache and TLB maintenance, PSTATE fields,
//! exception generation and return, WFI, loads and stores to memory, to
//! devices and to nothing), with ktest as its VMM answering every exit as
//! a VMM would. The kernel must carry out or refuse each and keep running
//! guests; an Irq for the VMM, triggered every few milliseconds, kicks a
//! looping or waiting program out.

use l4::abi::vcpu::{ExitReason, VcpuState, ec};
use l4::{Cap, Error, MemRights, base, ipc};

use crate::fuzz::xorshift;
use crate::fw::{Ctx, R};
use crate::rt::{self, Page};
use crate::vm::{DATA, GUEST_BASE, Guest, MMIO, VMCR_OPEN, hvc, state};

tests! {
    "vm.random_guest_code_survives" => random_guest_code,
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
            *x = operand(seed);
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

/// A register's value at the start: an address in the guest's data page,
/// at a device, in the code page, a small number, any number, or zero.
fn operand(r: u64) -> u64 {
    let off = (r >> 8) & 0xff8;
    match r % 6 {
        0 => DATA + off,
        1 => MMIO + off,
        2 => GUEST_BASE + off,
        3 => (r >> 8) & 0xff,
        4 => r,
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

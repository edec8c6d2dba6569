//! Virtual machines: the Vm object, vCPU mode of the main thread, and tiny
//! bare-metal guests (a few instructions in one page) that exit in every
//! way the kernel reports: HVC, SMC, MMIO reads and writes, trapped
//! system registers, stage-2 faults; WFI with and without an interrupt,
//! the virtual timer, injection from the VMM and from a bound Irq, kicks,
//! revocation of guest memory, deleting the Vm under a running guest, the
//! refusals of bad state, and MMIO shortcuts (accesses the kernel answers
//! without an exit).
//!
//! The main thread is the vCPU: its state area is the last page of its
//! UTCB area ([`rt::VCPU_STATE`]), which ktest keeps free of UTCBs; a
//! worker that runs a second vCPU uses the page before
//! ([`rt::VCPU_STATE_2`]).

use core::sync::atomic::{AtomicU64, Ordering};
use l4::abi::proto::unmap;
use l4::abi::vcpu::{
    ExitReason, InjectReq, StateError, VTIMER_INTID, VcpuState, ec, lr, sysreg_encoding,
    translation_fault, unchanged,
};
use l4::{Cap, Error, Fpage, MemRights, Thread, Vm, base, ipc};

use crate::fw::{Ctx, Fail, R};
use crate::rt::{self, Opts, Page, Slot, WAIT_US, other_cpu};

tests! {
    "vm.create_and_delete" => create_delete,
    "vm.hvc_exit" => hvc_exit,
    "vm.registers_round_trip" => registers_round_trip,
    "vm.smc_exit" => smc_exit,
    "vm.mmio_write_exit" => mmio_write,
    "vm.mmio_read_completed_by_vmm" => mmio_read,
    "vm.sysreg_trap_exit" => sysreg_trap,
    "vm.id_registers_without_el2_el3_sme" => id_registers,
    "vm.debug_and_pmu_registers_trap" => debug_pmu_trap,
    "vm.ras_and_lor_registers_trap" => ras_lor_trap,
    "vm.stage2_fault_instruction_fetch" => stage2_fetch,
    "vm.guest_reads_mapped_memory" => reads_memory,
    "vm.write_to_read_only_memory_is_stage2_fault" => write_read_only,
    "vm.two_mib_block_mapping" => block_mapping,
    "vm.unmap_in_source_revokes_guest" => revoke_through_source,
    "vm.deleting_source_task_revokes_guest" => revoke_by_deletion,
    "vm.vm_unmap" => vm_unmap,
    "vm.inject_from_vmm" => inject_from_vmm,
    "vm.pending_queue_when_lrs_full" => pending_queue,
    "vm.wfi_with_pending_interrupt" => wfi_pending,
    "vm.wfi_blocks_until_bound_irq" => wfi_blocks,
    "vm.bound_irq_on_other_cpu_kicks" => bound_irq_other_cpu,
    "vm.virtual_timer_interrupt" => vtimer,
    "vm.virtual_timer_while_guest_runs" => vtimer_running,
    "vm.irq_for_vmm_kicks_guest_out" => kick,
    "vm.delete_vm_while_guest_runs" => delete_running,
    "vm.bad_pstate_refused" => bad_pstate,
    "vm.bad_list_register_refused" => bad_lr,
    "vm.bad_injection_refused" => bad_injection,
    "vm.unchanged_parts_only_from_a_checked_exit" => unchanged_parts,
    "vm.resume_without_vcpu_mode_refused" => resume_not_vcpu,
    "vm.resume_of_other_thread_refused" => resume_other,
    "vm.control_refusals" => control_refusals,
    "vm.guest_fp_kept_apart" => fp_apart,
    "vm.guest_fp_kept_over_runs_without_it" => fp_over_runs,
    "vm.guest_fp_kept_while_another_thread_uses_it" => fp_over_switch,
    "vm.vmm_thread_pointer_kept" => thread_pointer_apart,
    "vm.vcpu_moves_to_another_cpu" => migrate,
    "vm.el1_registers_kept_until_the_vmm_changes_them" => el1_kept,
    "vm.el1_registers_after_another_vcpu_on_the_cpu" => el1_other_vcpu,
    "vm.disr_after_another_vcpu_on_the_cpu" => disr_other_vcpu,
    "vm.pointer_auth_keys_are_per_vcpu" => pac_keys_per_vcpu,
    "vm.generic_key_not_left_to_tasks" => pac_generic_key_cleared,
    "vm.sve_registers_kept_apart" => sve_apart,
    "vm.el1_registers_follow_a_moving_vcpu" => el1_migrate,
    "vm.shortcut_doorbell_injects_without_exit" => shortcut_doorbell,
    "vm.shortcut_doorbell_reaches_a_thread" => shortcut_doorbell_thread,
    "vm.shortcut_constant_register" => shortcut_constant,
    "vm.shortcut_other_accesses_exit" => shortcut_other_accesses,
    "vm.shortcut_goes_with_its_irq" => shortcut_irq_deleted,
    "vm.shortcut_goes_with_the_capability" => shortcut_cap_revoked,
    "vm.shortcut_refusals" => shortcut_refusals,
}

/// Where the guest's code page sits in guest-physical memory.
pub(crate) const GUEST_BASE: u64 = 0x4000_0000;
/// An unmapped guest-physical address (a device to emulate).
pub(crate) const MMIO: u64 = 0x0900_0000;

// A few instruction encodings (A64).
const fn movz(rd: u32, imm: u32, shift16: u32) -> u32 {
    0xd280_0000 | (shift16 << 21) | ((imm & 0xffff) << 5) | rd
}
/// `movk x<rd>, #imm` (bits 0..16)
const fn movk(rd: u32, imm: u32) -> u32 {
    0xf280_0000 | ((imm & 0xffff) << 5) | rd
}
pub(crate) const fn hvc(imm: u32) -> u32 {
    0xd400_0002 | (imm << 5)
}
const fn smc(imm: u32) -> u32 {
    0xd400_0003 | (imm << 5)
}
const WFI: u32 = 0xd503_207f;
const SELF_LOOP: u32 = 0x1400_0000;
/// `str x<rt>, [x<rn>]`
const fn str64(rt: u32, rn: u32) -> u32 {
    0xf900_0000 | (rn << 5) | rt
}
/// `str w<rt>, [x<rn>]`
const fn str32(rt: u32, rn: u32) -> u32 {
    0xb900_0000 | (rn << 5) | rt
}
/// `ldr w<rt>, [x<rn>]`
const fn ldr32(rt: u32, rn: u32) -> u32 {
    0xb940_0000 | (rn << 5) | rt
}
/// `ldr x<rt>, [x<rn>]`
const fn ldr64(rt: u32, rn: u32) -> u32 {
    0xf940_0000 | (rn << 5) | rt
}
/// `br x<rn>`
const fn br(rn: u32) -> u32 {
    0xd61f_0000 | (rn << 5)
}
/// `mrs x<rt>, <op0, op1, CRn, CRm, op2>`
const fn mrs(rt: u32, op0: u32, op1: u32, crn: u32, crm: u32, op2: u32) -> u32 {
    0xd520_0000 | (op0 << 19) | (op1 << 16) | (crn << 12) | (crm << 8) | (op2 << 5) | rt
}
/// `msr <op0, op1, CRn, CRm, op2>, x<rt>`
const fn msr(rt: u32, op0: u32, op1: u32, crn: u32, crm: u32, op2: u32) -> u32 {
    0xd500_0000 | (op0 << 19) | (op1 << 16) | (crn << 12) | (crm << 8) | (op2 << 5) | rt
}
/// `add x<rd>, x<rn>, #imm`
const fn addi(rd: u32, rn: u32, imm: u32) -> u32 {
    0x9100_0000 | (imm << 10) | (rn << 5) | rd
}
/// `fmov d<n>, x<m>` and back.
const fn fmov_to_d(d: u32, x: u32) -> u32 {
    0x9e67_0000 | (x << 5) | d
}
const fn fmov_from_d(x: u32, d: u32) -> u32 {
    0x9e66_0000 | (d << 5) | x
}
const IAR1: u32 = mrs(0, 3, 0, 12, 12, 0);
/// `mrs x<rt>, tpidr_el1` and `msr tpidr_el1, x<rt>`: an EL1 register
/// only the guest and its VMM change.
const fn get_tpidr_el1(rt: u32) -> u32 {
    mrs(rt, 3, 0, 13, 0, 4)
}
const fn set_tpidr_el1(rt: u32) -> u32 {
    msr(rt, 3, 0, 13, 0, 4)
}
const EOIR1: u32 = msr(0, 3, 0, 12, 12, 1);

/// ICH_VMCR_EL2: group 1 enabled, priority mask open.
pub(crate) const VMCR_OPEN: u64 = (1 << 1) | (0xff << 24);

/// The main thread's state area.
pub(crate) fn state() -> &'static mut VcpuState {
    // SAFETY: the page is in the main thread's UTCB area, mapped RW in
    // ktest for good, used by nothing else (rt keeps its UTCB slots free),
    // and only the main thread touches it, between its own kernel calls.
    unsafe { &mut *(rt::VCPU_STATE as *mut VcpuState) }
}

/// A guest: a Vm, its code page at [`GUEST_BASE`], and the main thread
/// in vCPU mode (left again when dropped).
pub(crate) struct Guest {
    pub(crate) vm: Slot<Vm>,
    code: Page,
}

impl Guest {
    pub(crate) fn new(code: &[u32]) -> Result<Guest, Fail> {
        let vm = rt::create("create vm", |d| base::FACTORY.create_vm(d))?;
        let page = Page::new(12)?;
        write_code(&page, code);
        vm.cap()
            .as_task()
            .map_mem(base::TASK, page.addr(), 12, MemRights::RWX, GUEST_BASE)
            .ctx("map code into the vm")?;
        base::THREAD
            .vcpu_control(rt::VCPU_STATE, vm.cap())
            .ctx("vcpu_control")?;
        let s = state();
        *s = VcpuState::boot(GUEST_BASE, 0, 0);
        s.gic.vmcr = VMCR_OPEN;
        Ok(Guest { vm, code: page })
    }

    /// Puts `code` into the code page instead of what was there.
    pub(crate) fn load(&self, code: &[u32]) {
        write_code(&self.code, code);
    }

    fn resume(&self) -> Result<ExitReason, Fail> {
        base::THREAD.vcpu_resume().ctx("vcpu_resume")
    }

    /// Resumes and expects `want`.
    pub(crate) fn expect(&self, want: ExitReason) -> R {
        let got = self.resume()?;
        ensure_eq!(got, want, "exit reason");
        ensure_eq!(state().exit.reason(), Some(want), "exit in the state area");
        Ok(())
    }
}

/// Writes `code` at the start of `page` (a self-loop after an odd count).
pub(crate) fn write_code(page: &Page, code: &[u32]) {
    for (i, pair) in code.chunks(2).enumerate() {
        let lo = u64::from(pair[0]);
        let hi = u64::from(*pair.get(1).unwrap_or(&SELF_LOOP));
        page.write(i as u64 * 8, lo | hi << 32);
    }
    // The guest fetches with its MMU and caches off.
    let (addr, len) = (page.addr() as usize, code.len().div_ceil(2) * 8);
    l4::cache::clean_to_poc(addr, len);
    l4::cache::invalidate_icache(addr, len);
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = base::THREAD.vcpu_disable();
    }
}

fn create_delete() -> R {
    let vm = rt::create("create vm", |d| base::FACTORY.create_vm(d))?;
    ensure!(rt::valid(vm.idx())?, "the vm capability is valid");
    // A Vm is no task: no threads bind to it, no capabilities go there.
    let t = rt::thread_obj()?;
    let c = l4::ThreadControl::new().bind(vm.idx(), rt::UTCB_AREA);
    expect_err!(t.control(&c), Error::Inval, "binding a thread to a vm");
    drop(vm);
    Ok(())
}

fn hvc_exit() -> R {
    let g = Guest::new(&[movz(0, 0x1234, 0), hvc(0x42)])?;
    g.expect(ExitReason::Hvc)?;
    let s = state();
    ensure_eq!(s.exit.imm16(), Some(0x42), "hvc immediate");
    ensure_eq!(s.regs.x[0], 0x1234, "x0");
    ensure_eq!(s.regs.pc, GUEST_BASE + 8, "pc past the hvc");
    ensure_eq!(s.regs.pstate & 0xf, 0b0101, "still EL1h");
    Ok(())
}

fn registers_round_trip() -> R {
    let g = Guest::new(&[hvc(1), hvc(2)])?;
    let s = state();
    for i in 0..31 {
        s.regs.x[i] = 0x1000 + i as u64;
    }
    s.el1.vbar = 0x4000_0800;
    s.el1.tpidr_el1 = 0xfeed;
    s.regs.sp_el1 = 0x4000_0f00;
    g.expect(ExitReason::Hvc)?;
    g.expect(ExitReason::Hvc)?;
    let s = state();
    for i in 0..31 {
        ensure_eq!(s.regs.x[i], 0x1000 + i as u64, "x{i}");
    }
    ensure_eq!(s.el1.vbar, 0x4000_0800, "vbar");
    ensure_eq!(s.el1.tpidr_el1, 0xfeed, "tpidr_el1");
    ensure_eq!(s.regs.sp_el1, 0x4000_0f00, "sp_el1");
    ensure_eq!(s.regs.pc, GUEST_BASE + 8, "pc");
    Ok(())
}

fn smc_exit() -> R {
    let g = Guest::new(&[smc(7)])?;
    g.expect(ExitReason::Smc)?;
    let s = state();
    ensure_eq!(s.exit.imm16(), Some(7), "smc immediate");
    ensure_eq!(s.regs.pc, GUEST_BASE, "pc at the smc");
    Ok(())
}

/// Resumes and expects an MMIO exit at `gpa`; returns the access.
fn mmio_exit(g: &Guest, gpa: u64) -> Result<l4::abi::vcpu::Mmio, Fail> {
    g.expect(ExitReason::Mmio)?;
    let s = state();
    let m = s.exit.mmio().ok_or("no access decoded")?;
    ensure_eq!(s.exit.gpa, gpa, "address");
    Ok(m)
}

fn mmio_write() -> R {
    let g = Guest::new(&[
        movz(0, (MMIO >> 16) as u32, 1),
        movz(1, 0xabcd, 0),
        str64(1, 0),
        hvc(0),
    ])?;
    let m = mmio_exit(&g, MMIO)?;
    let s = state();
    ensure!(m.write && m.size == 8 && m.reg == 1, "access {m:?}");
    ensure_eq!(m.write_value(s.regs.reg(m.reg)), 0xabcd, "value");
    ensure_eq!(s.regs.pc, GUEST_BASE + 8, "pc at the store");
    s.regs.skip_instruction();
    g.expect(ExitReason::Hvc)?;
    Ok(())
}

fn mmio_read() -> R {
    let g = Guest::new(&[
        movz(0, (MMIO >> 16) as u32, 1),
        addi(0, 0, 0x10),
        ldr32(2, 0),
        hvc(0),
    ])?;
    let m = mmio_exit(&g, MMIO + 0x10)?;
    let s = state();
    ensure!(!m.write && m.size == 4 && m.reg == 2, "access {m:?}");
    s.regs.set_reg(m.reg, m.read_value(0x1_8765_4321));
    s.regs.skip_instruction();
    g.expect(ExitReason::Hvc)?;
    ensure_eq!(state().regs.x[2], 0x8765_4321, "the value read");
    Ok(())
}

fn sysreg_trap() -> R {
    // The EL1 physical timer traps (the guest has the virtual one).
    expect_sysreg_exits(3, &[([3, 3, 14, 2, 1], true, "CNTP_CTL_EL0")])
}

fn id_registers() -> R {
    // mrs x1, ID_AA64PFR0_EL1; mrs x2, ID_AA64PFR1_EL1; mrs x3,
    // ID_AA64ISAR0_EL1; hvc: the kernel answers, no exit before the hvc.
    let g = Guest::new(&[
        mrs(1, 3, 0, 0, 4, 0),
        mrs(2, 3, 0, 0, 4, 1),
        mrs(3, 3, 0, 0, 6, 0),
        hvc(6),
    ])?;
    g.expect(ExitReason::Hvc)?;
    let s = state();
    let field = |v: u64, shift: u32| (v >> shift) & 0xf;
    let pfr0 = s.regs.x[1];
    ensure!(field(pfr0, 0) != 0, "EL0 implemented");
    ensure!(field(pfr0, 4) != 0, "EL1 implemented");
    ensure_eq!((field(pfr0, 8), field(pfr0, 12)), (0, 0), "no EL2, no EL3");
    ensure_eq!(field(s.regs.x[2], 24), 0, "no SME");
    ensure!(s.regs.x[3] != 0, "ISAR0 as the CPU has it");
    Ok(())
}

/// The debug registers and the PMU are one set per CPU, which the kernel
/// does not switch: a guest that read or armed them would see or disturb
/// another guest's and the host's. Every access goes to the VMM.
/// The traps stay set while the host runs (MDCR_EL2 is not switched):
/// the host's tasks still read the cycle counter after a guest ran.
fn debug_pmu_trap() -> R {
    expect_sysreg_exits(
        3,
        &[
            ([2, 0, 0, 0, 4], true, "DBGBVR0_EL1"),
            ([2, 0, 0, 2, 2], false, "MDSCR_EL1"),
            ([2, 0, 1, 0, 4], false, "OSLAR_EL1"),
            ([3, 3, 9, 13, 0], true, "PMCCNTR_EL0"),
            ([3, 3, 9, 12, 0], false, "PMCR_EL0"),
        ],
    )?;
    let (a, b) = (crate::bench::cycles(), crate::bench::cycles());
    ensure!(
        b > a,
        "the cycle counter at EL0 after a guest: {a}, then {b}"
    );
    Ok(())
}

/// RAS error records are the CPU's (a guest could read or clear what
/// another's errors left there), limited-ordering regions are EL1
/// registers the kernel does not switch: both go to the VMM.
fn ras_lor_trap() -> R {
    need_ras()?;
    expect_sysreg_exits(
        3,
        &[
            // QEMU has no other error-record register (it has no records).
            ([3, 0, 5, 3, 0], true, "ERRIDR_EL1"),
            ([3, 0, 10, 4, 3], true, "LORC_EL1"),
        ],
    )
}

/// A guest whose instructions are `accesses` of registers (op0, op1,
/// CRn, CRm, op2): an `mrs` into x<rt> where the flag says read, else an
/// `msr` of x<rt>; then `hvc #9`. Each access must exit to the VMM as a
/// decoded system-register access of itself.
fn expect_sysreg_exits(rt: u32, accesses: &[([u32; 5], bool, &str)]) -> R {
    let mut code = [hvc(9); 8];
    ensure!(accesses.len() < code.len(), "at most 7 accesses");
    for (c, (r, read, _)) in code.iter_mut().zip(accesses) {
        let op = if *read { mrs } else { msr };
        *c = op(rt, r[0], r[1], r[2], r[3], r[4]);
    }
    let g = Guest::new(&code[..=accesses.len()])?;
    for &(r, read, name) in accesses {
        let got = g.resume()?;
        let s = state();
        ensure!(
            got == ExitReason::SysReg && s.exit.reason() == Some(got),
            "{name}: exit {got:?}, in the state area {:?}",
            s.exit.reason()
        );
        let a = s.exit.sysreg().ok_or("no access decoded")?;
        ensure_eq!(
            a.encoding,
            sysreg_encoding(r[0], r[1], r[2], r[3], r[4]),
            name
        );
        ensure!(a.read == read && a.reg == rt as u8, "{name}: access {a:?}");
        s.regs.skip_instruction();
    }
    g.expect(ExitReason::Hvc)?;
    ensure_eq!(state().exit.imm16(), Some(9), "the hvc after them");
    Ok(())
}

/// Fails unless guests see RAS (ID_AA64PFR0_EL1.RAS), as on QEMU's `max`.
fn need_ras() -> R {
    let g = Guest::new(&[mrs(1, 3, 0, 0, 4, 0), hvc(0)])?;
    g.expect(ExitReason::Hvc)?;
    ensure!(
        (state().regs.x[1] >> 28) & 0xf != 0,
        "needs a CPU with RAS (ID_AA64PFR0_EL1 {:#x})",
        state().regs.x[1]
    );
    Ok(())
}

/// Fails unless the guest sees address and generic pointer
/// authentication (ID_AA64ISAR1_EL1 APA or API, GPA or GPI).
fn need_pauth() -> R {
    let g = Guest::new(&[mrs(1, 3, 0, 0, 6, 1), hvc(0)])?;
    g.expect(ExitReason::Hvc)?;
    let isar1 = state().regs.x[1];
    ensure!(
        isar1 & 0xff0 != 0 && isar1 & 0xff00_0000 != 0,
        "needs a CPU with pointer authentication, shown to guests (ID_AA64ISAR1_EL1 {isar1:#x})"
    );
    Ok(())
}

/// `msr`/`mrs` of APIAKeyLo_EL1 and APGAKeyLo_EL1.
fn apia_lo(op: fn(u32, u32, u32, u32, u32, u32) -> u32, rt: u32) -> u32 {
    op(rt, 3, 0, 2, 1, 0)
}
fn apga_lo(op: fn(u32, u32, u32, u32, u32, u32) -> u32, rt: u32) -> u32 {
    op(rt, 3, 0, 2, 3, 0)
}

/// The pointer authentication keys (an address key and the generic one)
/// a vCPU set, another vCPU on the same CPU does not read, the first finds
/// them again, and its exit shows them in the state area.
fn pac_keys_per_vcpu() -> R {
    need_pauth()?;
    const A: u64 = 0x1111_0000;
    const B: u64 = 0x2222;
    let g = Guest::new(&[
        apia_lo(msr, 4),
        apga_lo(msr, 5),
        hvc(1),
        apia_lo(mrs, 3),
        apga_lo(mrs, 6),
        0xaa06_0063, // orr x3, x3, x6
        hvc(2),
        apga_lo(mrs, 3),
        hvc(3),
    ])?;
    state().regs.x[4] = A;
    state().regs.x[5] = B;
    g.expect(ExitReason::Hvc)?;
    let pac = state().el1.pac;
    ensure_eq!((pac.apia_lo, pac.apga_lo), (A, B), "keys in the state area");
    ensure_eq!(
        other_vcpu_x3(&g, GUEST_BASE + 12)?,
        0,
        "the other vcpu's keys"
    );
    state().unchanged = unchanged::ALL;
    g.expect(ExitReason::Hvc)?;
    ensure_eq!(state().regs.x[3], A | B, "this vcpu's keys");
    state().unchanged = unchanged::ALL;
    g.expect(ExitReason::Hvc)?;
    ensure_eq!(state().regs.x[3], B, "this vcpu's generic key");
    Ok(())
}

/// SVE: a guest that set its vector length to 512 bits and the upper
/// lanes of z0 finds them (and its predicate p0) again after its VMM used
/// FP/SIMD (which spills the guest's registers) and another vCPU ran on
/// the CPU, which finds its own, zero.
fn sve_apart() -> R {
    const V: u64 = 0x1234_5678_9abc_def0;
    let zcr_el1 = |rt| msr(rt, 3, 0, 1, 2, 0);
    const PTRUE_P0_D: u32 = 0x25d8_e3e0;
    const DUP_Z0_D_X4: u32 = 0x05e0_3880;
    const RDVL_X6: u32 = 0x04bf_5026;
    const LASTB_X3_P0_Z0_D: u32 = 0x05e1_a003;
    let g = Guest::new(&[
        movz(7, 3, 0),
        zcr_el1(7),
        PTRUE_P0_D,
        DUP_Z0_D_X4,
        RDVL_X6,
        hvc(1),
        LASTB_X3_P0_Z0_D,
        hvc(2),
        // The other vCPU, from GUEST_BASE + 32.
        movz(7, 3, 0),
        zcr_el1(7),
        PTRUE_P0_D,
        LASTB_X3_P0_Z0_D,
        hvc(3),
    ])?;
    state().el1.cpacr = 3 << 20 | 3 << 16;
    state().regs.x[4] = V;
    let r = base::THREAD.vcpu_resume();
    ensure_eq!(r, Ok(ExitReason::Hvc), "first exit (no SVE for guests?)");
    ensure_eq!(state().regs.x[6], 64, "the guest's vector length (bytes)");
    set_d9(0x1111);
    ensure_eq!(
        other_vcpu_x3(&g, GUEST_BASE + 32)?,
        0,
        "the other vcpu's last lane of z0"
    );
    state().unchanged = unchanged::ALL;
    g.expect(ExitReason::Hvc)?;
    ensure_eq!(state().regs.x[3], V, "this vcpu's last lane of z0");
    ensure_eq!(d9(), 0x1111, "the vmm's d9");
    Ok(())
}

/// PACGA (generic authentication: no enable bit, so it works at EL0 of
/// the host too) of `x` with modifier `m`, under whatever key the CPU
/// holds.
fn pacga(x: u64, m: u64) -> u64 {
    let out: u64;
    // SAFETY: PACGA x0, x1, x2 computes a value from registers only.
    unsafe {
        core::arch::asm!(".inst 0x9ac23020", inout("x0") 0u64 => out, in("x1") x, in("x2") m, options(nomem, nostack))
    };
    out
}

/// A guest's generic key does not stay in the CPU for the host's tasks
/// after its exit: a task's PACGA gives the same before and after.
fn pac_generic_key_cleared() -> R {
    need_pauth()?;
    let before = pacga(0x1234_5678, 0x9abc);
    let g = Guest::new(&[apga_lo(msr, 5), hvc(1)])?;
    state().regs.x[5] = 0x5eed_5eed_5eed;
    g.expect(ExitReason::Hvc)?;
    ensure_eq!(
        pacga(0x1234_5678, 0x9abc),
        before,
        "a task's PACGA after the guest set its key"
    );
    Ok(())
}

fn stage2_fetch() -> R {
    let g = Guest::new(&[movz(0, 0x5000, 1), br(0)])?;
    g.expect(ExitReason::Stage2Fault)?;
    let s = state();
    ensure_eq!(s.exit.ec(), ec::IABT_LOWER, "instruction abort");
    ensure_eq!(s.exit.gpa, 0x5000_0000, "address");
    Ok(())
}

/// A guest that loads x1 from `addr` (x0) and reports it with hvc #5.
fn load_guest(addr: u64) -> [u32; 4] {
    [
        movz(0, (addr >> 16) as u32, 1),
        movk(0, (addr & 0xffff) as u32),
        ldr64(1, 0),
        hvc(5),
    ]
}

pub(crate) const DATA: u64 = 0x4800_0000;

fn reads_memory() -> R {
    let g = Guest::new(&load_guest(DATA + 8))?;
    let p = Page::with_marker(0)?;
    p.write(8, 0x5151_5151);
    g.vm.cap()
        .as_task()
        .map_mem(base::TASK, p.addr(), 12, MemRights::R, DATA)
        .ctx("map data")?;
    g.expect(ExitReason::Hvc)?;
    ensure_eq!(state().regs.x[1], 0x5151_5151, "the word read");
    Ok(())
}

/// A store to guest memory mapped read-only is a permission fault: the
/// VMM gets a stage-2 fault at its address, not an access to emulate
/// (the syndrome is as valid as for one).
fn write_read_only() -> R {
    let g = Guest::new(&[
        movz(0, (DATA >> 16) as u32, 1),
        movk(0, 8),
        str64(1, 0),
        hvc(5),
    ])?;
    let p = Page::with_marker(0)?;
    g.vm.cap()
        .as_task()
        .map_mem(base::TASK, p.addr(), 12, MemRights::R, DATA)
        .ctx("map data")?;
    g.expect(ExitReason::Stage2Fault)?;
    let s = state();
    ensure_eq!(s.exit.ec(), ec::DABT_LOWER, "data abort");
    ensure_eq!(s.exit.gpa, DATA + 8, "address");
    ensure!(!translation_fault(s.exit.esr), "not a translation fault");
    Ok(())
}

fn block_mapping() -> R {
    let p = Page::new(21)?;
    p.write(0x1f_fff8, 0x2222);
    let g = Guest::new(&load_guest(DATA + 0x1f_f000))?;
    g.vm.cap()
        .as_task()
        .map_mem(base::TASK, p.addr(), 21, MemRights::RW, DATA)
        .ctx("map 2 MiB")?;
    // ldr x1, [x0] reads offset 0x1ff000; the word at the end is 0x1ffff8.
    p.write(0x1f_f000, 0x1111);
    g.expect(ExitReason::Hvc)?;
    ensure_eq!(state().regs.x[1], 0x1111, "the word read");
    Ok(())
}

/// Maps page `p` into a second task and from there into the guest;
/// returns the task.
fn via_task(g: &Guest, p: &Page) -> Result<Slot<l4::Task>, Fail> {
    let t = rt::bare_task()?;
    t.cap()
        .map_mem(base::TASK, p.addr(), 12, MemRights::RW, 0x10_0000)
        .ctx("map into the task")?;
    g.vm.cap()
        .as_task()
        .map_mem(t.cap(), 0x10_0000, 12, MemRights::RW, DATA)
        .ctx("map from the task into the vm")?;
    Ok(t)
}

fn revoke_through_source() -> R {
    let g = Guest::new(&load_guest(DATA))?;
    let p = Page::with_marker(0x77)?;
    let _t = via_task(&g, &p)?;
    g.expect(ExitReason::Hvc)?;
    ensure_eq!(state().regs.x[1], 0x77, "read through the task's mapping");
    base::TASK
        .unmap(p.fpage(MemRights::RWX), unmap::OTHER_SPACES)
        .ctx("unmap")?;
    state().regs.pc = GUEST_BASE;
    g.expect(ExitReason::Mmio)?;
    ensure_eq!(state().exit.gpa, DATA, "the access now exits");
    Ok(())
}

fn revoke_by_deletion() -> R {
    let g = Guest::new(&load_guest(DATA))?;
    let p = Page::with_marker(0x78)?;
    let t = via_task(&g, &p)?;
    g.expect(ExitReason::Hvc)?;
    drop(t);
    state().regs.pc = GUEST_BASE;
    g.expect(ExitReason::Mmio)?;
    Ok(())
}

fn vm_unmap() -> R {
    let g = Guest::new(&load_guest(DATA))?;
    let p = Page::with_marker(0x79)?;
    g.vm.cap()
        .as_task()
        .map_mem(base::TASK, p.addr(), 12, MemRights::RW, DATA)
        .ctx("map")?;
    g.expect(ExitReason::Hvc)?;
    g.vm.cap()
        .as_task()
        .unmap(Fpage::mem(DATA, 12, MemRights::RWX), unmap::ALL_SPACES)
        .ctx("unmap in the vm")?;
    state().regs.pc = GUEST_BASE;
    g.expect(ExitReason::Mmio)?;
    Ok(())
}

/// A guest that acknowledges an interrupt (x0 = INTID), ends it, and
/// reports with hvc #9, over and over.
const ACK_LOOP: [u32; 3] = [IAR1, EOIR1, hvc(9)];

/// Runs the ack loop guest once more from the start.
fn ack(g: &Guest) -> Result<u64, Fail> {
    state().regs.pc = GUEST_BASE;
    g.expect(ExitReason::Hvc)?;
    Ok(state().regs.x[0])
}

fn inject_from_vmm() -> R {
    let g = Guest::new(&ACK_LOOP)?;
    let s = state();
    s.inject.req[0] = InjectReq::new(40, 0xa0);
    s.inject.count = 1;
    ensure_eq!(ack(&g)?, 40, "INTID acknowledged");
    ensure_eq!(state().inject.count, 0, "requests taken");
    ensure_eq!(ack(&g)?, 1023, "nothing more pending (spurious)");
    Ok(())
}

fn pending_queue() -> R {
    let g = Guest::new(&ACK_LOOP)?;
    let s = state();
    let want = [33u32, 34, 35, 36, 37, 38, 39];
    for (i, n) in want.iter().enumerate() {
        s.inject.req[i] = InjectReq::new(*n, 0x80);
    }
    s.inject.count = want.len() as u64;
    let mut got = [0u64; 7];
    for g_i in got.iter_mut() {
        *g_i = ack(&g)?;
    }
    got.sort_unstable();
    ensure_eq!(got, want.map(u64::from), "every interrupt, once");
    ensure_eq!(ack(&g)?, 1023, "then none");
    Ok(())
}

fn wfi_pending() -> R {
    let g = Guest::new(&[WFI, hvc(3)])?;
    let s = state();
    s.inject.req[0] = InjectReq::new(50, 0x80);
    s.inject.count = 1;
    g.expect(ExitReason::Hvc)?;
    let s = state();
    ensure_eq!(s.regs.pc, GUEST_BASE + 8, "past wfi and hvc");
    ensure!(
        s.gic
            .lr
            .iter()
            .any(|&v| lr::intid(v) == 50 && lr::state(v) == 1),
        "50 pending in a list register: {:x?}",
        &s.gic.lr[..4]
    );
    Ok(())
}

/// Worker: triggers Irq `a0` after `a1` µs. (It sends the main thread
/// nothing: a message for the vCPU thread would end its guest run.)
extern "C" fn trigger_later(irq: u64, us: u64) {
    let _ = ipc::sleep_us(us);
    let _ = Cap::<l4::Irq>::from_index(irq).trigger();
}

fn wfi_blocks() -> R {
    let g = Guest::new(&[WFI, hvc(3)])?;
    let irq = rt::irq()?;
    irq.cap()
        .bind_vcpu(base::THREAD, 60, 0x80)
        .ctx("bind_vcpu")?;
    let start = l4::abi::call::clock_us();
    let _w = rt::spawn_default(trigger_later, irq.idx(), 50_000)?;
    g.expect(ExitReason::Hvc)?;
    let waited = l4::abi::call::clock_us() - start;
    ensure!(waited >= 40_000, "the guest waited only {waited} µs in wfi");
    ensure!(
        state().gic.lr.iter().any(|&v| lr::intid(v) == 60),
        "60 in a list register"
    );
    Ok(())
}

fn bound_irq_other_cpu() -> R {
    rt::need_cpus(2)?;
    // The guest spins; a worker on another CPU triggers the bound Irq;
    // the guest acknowledges it and reports.
    // Loop: mrs x0, iar; cmp x0, #1023; b.eq loop; hvc #9.
    let g = Guest::new(&[IAR1, 0xf10f_fc1f, 0x54ff_ffc0, hvc(9)])?;
    let irq = rt::irq()?;
    irq.cap()
        .bind_vcpu(base::THREAD, 61, 0x80)
        .ctx("bind_vcpu")?;
    let _w = rt::spawn(
        trigger_later,
        irq.idx(),
        30_000,
        &Opts::new().cpu(other_cpu(1)),
    )?;
    g.expect(ExitReason::Hvc)?;
    ensure_eq!(state().regs.x[0], 61, "INTID acknowledged");
    Ok(())
}

fn vtimer() -> R {
    // x1 = CNTVCT + 1000; CNTV_CVAL = x1; CNTV_CTL = 1; wfi; ack; hvc.
    let g = Guest::new(&[
        mrs(1, 3, 3, 14, 0, 2),
        addi(1, 1, 1000),
        msr(1, 3, 3, 14, 3, 2),
        movz(2, 1, 0),
        msr(2, 3, 3, 14, 3, 1),
        WFI,
        IAR1,
        hvc(4),
    ])?;
    g.expect(ExitReason::Hvc)?;
    let s = state();
    ensure_eq!(
        s.regs.x[0],
        u64::from(VTIMER_INTID),
        "timer interrupt acknowledged"
    );
    ensure_eq!(s.timer.ctl & 0b101, 0b101, "timer enabled and fired");
    Ok(())
}

fn vtimer_running() -> R {
    // x1 = CNTVCT + 30 << 12 (about 2 ms); timer on; spin on IAR until an
    // interrupt comes; hvc. No WFI: the timer fires while the guest runs.
    let g = Guest::new(&[
        mrs(1, 3, 3, 14, 0, 2),
        0x9140_0000 | (30 << 10) | (1 << 5) | 1,
        msr(1, 3, 3, 14, 3, 2),
        movz(2, 1, 0),
        msr(2, 3, 3, 14, 3, 1),
        IAR1,
        0xf10f_fc1f,
        0x54ff_ffc0,
        hvc(4),
    ])?;
    g.expect(ExitReason::Hvc)?;
    let s = state();
    ensure_eq!(
        s.regs.x[0],
        u64::from(VTIMER_INTID),
        "timer interrupt acknowledged"
    );
    ensure!(s.timer.ctl & 0b100 != 0, "timer condition met");
    Ok(())
}

fn kick() -> R {
    let g = Guest::new(&[SELF_LOOP])?;
    let irq = rt::irq()?;
    irq.cap().attach(base::THREAD, 0x4440).ctx("attach")?;
    let _w = rt::spawn_default(trigger_later, irq.idx(), 20_000)?;
    g.expect(ExitReason::Kick)?;
    ensure_eq!(state().regs.pc, GUEST_BASE, "the guest was looping");
    let (r, label) = ipc::ipc_wait(ipc::recv_timeout_us(WAIT_US));
    r.ctx("receive the irq")?;
    ensure_eq!(label, 0x4440, "the irq for the vmm");
    Ok(())
}

/// Worker: deletes capability `a0` after `a1` µs.
extern "C" fn delete_later(idx: u64, us: u64) {
    let _ = ipc::sleep_us(us);
    let _ = base::TASK.delete_cap(idx);
    rt::signal(&[1]);
}

fn delete_running() -> R {
    let g = Guest::new(&[SELF_LOOP])?;
    let vm = rt::copy_cap(g.vm.cap(), l4::CapRights::ALL)?;
    let w = rt::spawn_default(delete_later, vm.idx(), 20_000)?;
    // Deleting through the copy removes the object for every capability.
    let r = base::THREAD.vcpu_resume();
    expect_err!(r, Error::NoEnt, "resume after the vm went");
    ensure_eq!(w.signal_word()?, 1, "the worker deleted it");
    expect_err!(base::THREAD.vcpu_resume(), Error::NoEnt, "another resume");
    Ok(())
}

fn refused(e: StateError) -> R {
    let r = base::THREAD.vcpu_resume();
    expect_err!(r, Error::Inval, "resume with bad state");
    let s = state();
    ensure_eq!(s.exit.reason(), Some(ExitReason::BadState), "exit reason");
    ensure_eq!(s.exit.info, e.code(), "which field");
    Ok(())
}

fn bad_pstate() -> R {
    let _g = Guest::new(&[hvc(0)])?;
    state().regs.pstate = 0x3c9; // EL2h
    refused(StateError::Pstate(0x3c9))?;
    state().regs.pstate = 0x3c5 | (1 << 4); // AArch32
    refused(StateError::Pstate(0x3d5))
}

fn bad_lr() -> R {
    let _g = Guest::new(&[hvc(0)])?;
    let v = lr::pending(40, 0) | lr::HW;
    state().gic.lr[1] = v;
    refused(StateError::ListRegister { index: 1, value: v })
}

fn bad_injection() -> R {
    let _g = Guest::new(&[hvc(0)])?;
    let s = state();
    s.inject.req[0] = InjectReq::new(40, 0);
    s.inject.req[1] = InjectReq::new(1020, 0);
    s.inject.count = 2;
    refused(StateError::Injection {
        index: 1,
        intid: 1020,
    })
}

/// Parts marked unchanged come from the kernel's copy of the last exit
/// (what the area holds instead is not looked at), never after a refusal.
fn unchanged_parts() -> R {
    let g = Guest::new(&[hvc(1), hvc(2), hvc(3)])?;
    g.expect(ExitReason::Hvc)?;
    let bad = lr::pending(40, 0) | lr::HW;
    let s = state();
    s.gic.lr[1] = bad;
    s.unchanged = unchanged::ALL;
    g.expect(ExitReason::Hvc)?;
    ensure_eq!(state().exit.imm16(), Some(2), "second hvc");
    ensure_eq!(state().gic.lr[1], 0, "the kernel's list register");
    ensure_eq!(state().unchanged, 0, "bits cleared by the exit");
    state().regs.pstate = 0x3c9;
    refused(StateError::Pstate(0x3c9))?;
    let s = state();
    s.regs.pstate = 0x3c5;
    s.gic.lr[1] = bad;
    s.unchanged = unchanged::ALL;
    refused(StateError::ListRegister {
        index: 1,
        value: bad,
    })?;
    state().gic.lr[1] = 0;
    g.expect(ExitReason::Hvc)?;
    ensure_eq!(state().exit.imm16(), Some(3), "third hvc");
    Ok(())
}

fn resume_not_vcpu() -> R {
    expect_err!(
        base::THREAD.vcpu_resume(),
        Error::Inval,
        "resume outside vcpu mode"
    );
    Ok(())
}

fn resume_other() -> R {
    let _g = Guest::new(&[hvc(0)])?;
    let w = rt::spawn(rt_idle, 0, 0, &Opts::new().unstarted())?;
    expect_err!(
        w.cap().vcpu_resume(),
        Error::Inval,
        "resuming another thread"
    );
    Ok(())
}

extern "C" fn rt_idle(_: u64, _: u64) {}

fn control_refusals() -> R {
    let vm = rt::create("create vm", |d| base::FACTORY.create_vm(d))?;
    let not_vm = Cap::<Vm>::from_index(base::TASK.index());
    expect_err!(
        base::THREAD.vcpu_control(rt::VCPU_STATE, not_vm),
        Error::Inval,
        "a task as the vm"
    );
    expect_err!(
        base::THREAD.vcpu_control(rt::VCPU_STATE + 8, vm.cap()),
        Error::Inval,
        "state area not page-aligned"
    );
    expect_err!(
        base::THREAD.vcpu_control(0x10_0000, vm.cap()),
        Error::Inval,
        "state area outside the utcb area"
    );
    let ro = rt::copy_cap(
        Cap::<Thread>::from_index(base::THREAD.index()),
        l4::CapRights::R,
    )?;
    expect_err!(
        ro.cap().vcpu_control(rt::VCPU_STATE, vm.cap()),
        Error::Perm,
        "thread capability without W"
    );
    Ok(())
}

/// Sets the VMM's (this thread's) d9.
fn set_d9(v: u64) {
    // SAFETY: writes a callee-saved FP register that the surrounding code
    // does not use (ktest's code does no floating point).
    unsafe { core::arch::asm!("fmov d9, {}", in(reg) v, options(nomem, nostack)) };
}

/// Reads the VMM's d9.
fn d9() -> u64 {
    let v: u64;
    // SAFETY: reads an FP register.
    unsafe { core::arch::asm!("fmov {}, d9", out(reg) v, options(nomem, nostack)) };
    v
}

/// The calling thread's TPIDR_EL0.
fn tpidr_el0() -> u64 {
    let v: u64;
    // SAFETY: reads EL0's thread register.
    unsafe { core::arch::asm!("mrs {}, tpidr_el0", out(reg) v, options(nomem, nostack)) };
    v
}

fn set_tpidr_el0(v: u64) {
    // SAFETY: ktest's code does not use TPIDR_EL0 (no thread-local storage).
    unsafe { core::arch::asm!("msr tpidr_el0, {}", in(reg) v, options(nomem, nostack)) };
}

fn thread_pointer_apart() -> R {
    // The guest sets its own TPIDR_EL0; the VMM's comes back from the
    // resume, although the VMM's thread never left its CPU.
    let _g = Guest::new(&[movz(0, 0x1234, 0), msr(0, 3, 3, 13, 0, 2), hvc(1)])?;
    let old = tpidr_el0();
    set_tpidr_el0(0x5555);
    let r = base::THREAD.vcpu_resume();
    let mine = tpidr_el0();
    set_tpidr_el0(old);
    ensure_eq!(r, Ok(ExitReason::Hvc), "exit");
    ensure_eq!(mine, 0x5555, "the vmm's TPIDR_EL0");
    Ok(())
}

/// What the guest of [`fp_guest`] puts into its d9 (1.0).
const GUEST_D9: u64 = 0x3ff0 << 48;

/// A guest that puts [`GUEST_D9`] into its d9, exits with hvc #1, then
/// reads d9 back into x1 and exits with hvc #2; FP/SIMD enabled in its
/// CPACR_EL1.
fn fp_guest() -> Result<Guest, Fail> {
    let g = Guest::new(&[
        movz(0, 0x3ff0, 3),
        fmov_to_d(9, 0),
        hvc(1),
        fmov_from_d(1, 9),
        hvc(2),
    ])?;
    // CPACR_EL1.FPEN: the guest's own FP/SIMD enable.
    state().el1.cpacr = 3 << 20;
    Ok(g)
}

/// Resumes the guest of [`fp_guest`] after its first exit: it must find
/// its own d9, and the VMM (its d9 `vmm_d9`) keep its own.
fn fp_guest_second_run(vmm_d9: u64) -> R {
    let r = base::THREAD.vcpu_resume();
    let mine = d9();
    ensure_eq!(r, Ok(ExitReason::Hvc), "second exit");
    ensure_eq!(state().exit.imm16(), Some(2), "the second hvc");
    ensure_eq!(state().regs.x[1], GUEST_D9, "the guest's d9");
    ensure_eq!(mine, vmm_d9, "the vmm's d9 at the end");
    Ok(())
}

fn fp_apart() -> R {
    // The guest puts its value into d9 and reads d9 back after an exit;
    // the VMM keeps its own d9 across both resumes.
    let _g = fp_guest()?;
    set_d9(0x1111);
    let r = base::THREAD.vcpu_resume();
    let mine = d9();
    ensure_eq!(r, Ok(ExitReason::Hvc), "first exit");
    ensure_eq!(mine, 0x1111, "the vmm's d9 after the guest set its own");
    set_d9(0x2222);
    fp_guest_second_run(0x2222)
}

/// Puts the main thread back on CPU 0 when dropped.
struct BackToCpu0;

impl Drop for BackToCpu0 {
    fn drop(&mut self) {
        let _ = base::SCHEDULER.run_thread(base::THREAD, rt::MAIN_PRIO, 1);
    }
}

fn migrate() -> R {
    rt::need_cpus(2)?;
    // The guest counts in x5 between exits; the vCPU moves in between.
    let g = Guest::new(&[addi(5, 5, 1), hvc(1), addi(5, 5, 1), hvc(2)])?;
    g.expect(ExitReason::Hvc)?;
    let _back = BackToCpu0;
    base::SCHEDULER
        .run_thread(base::THREAD, rt::MAIN_PRIO, 1 << other_cpu(1))
        .ctx("move to another cpu")?;
    g.expect(ExitReason::Hvc)?;
    let s = state();
    ensure_eq!(s.exit.imm16(), Some(2), "the second hvc");
    ensure_eq!(s.regs.x[5], 2, "the guest went on where it was");
    Ok(())
}

/// The guest's EL1 registers stay in the CPU across exits the VMM marks
/// unchanged; a value the VMM writes (not marked) reaches the guest.
fn el1_kept() -> R {
    let g = Guest::new(&[hvc(1), get_tpidr_el1(3), hvc(2), get_tpidr_el1(3), hvc(3)])?;
    state().el1.tpidr_el1 = 0x1111;
    g.expect(ExitReason::Hvc)?;
    state().unchanged = unchanged::ALL;
    g.expect(ExitReason::Hvc)?;
    ensure_eq!(state().regs.x[3], 0x1111, "tpidr_el1 kept");
    ensure_eq!(state().el1.tpidr_el1, 0x1111, "tpidr_el1 in the area");
    let s = state();
    s.el1.tpidr_el1 = 0x2222;
    s.unchanged = unchanged::ALL & !unchanged::EL1;
    g.expect(ExitReason::Hvc)?;
    ensure_eq!(state().regs.x[3], 0x2222, "the vmm's tpidr_el1");
    Ok(())
}

/// The worker of [`el1_other_vcpu`]: its thread's capability.
static OTHER_VCPU_THREAD: AtomicU64 = AtomicU64::new(0);

/// Worker: a second vCPU (state area [`rt::VCPU_STATE_2`]) in Vm `vm`
/// from `pc` with TPIDR_EL1 0x3333, until its first exit; reports its
/// x3 (`u64::MAX` if it did not exit with an HVC).
extern "C" fn other_vcpu(vm: u64, pc: u64) {
    let me = Cap::<Thread>::from_index(OTHER_VCPU_THREAD.load(Ordering::Relaxed));
    let run = || -> Result<u64, Error> {
        me.vcpu_control(rt::VCPU_STATE_2, Cap::<Vm>::from_index(vm))?;
        // SAFETY: the second state area, mapped RW in ktest for good and
        // used by this worker alone (one at a time), between its own
        // kernel calls.
        let s = unsafe { &mut *(rt::VCPU_STATE_2 as *mut VcpuState) };
        *s = VcpuState::boot(pc, 0, 0);
        s.el1.tpidr_el1 = 0x3333;
        // CPACR_EL1 FPEN and ZEN: its FP/SIMD and SVE untrapped.
        s.el1.cpacr = 3 << 20 | 3 << 16;
        match me.vcpu_resume()? {
            ExitReason::Hvc => Ok(s.regs.x[3]),
            _ => Err(Error::Inval),
        }
    };
    let r = run();
    let _ = me.vcpu_disable();
    rt::signal(&[r.unwrap_or(u64::MAX)]);
}

/// Runs a second vCPU of `g`'s Vm from `pc` (its TPIDR_EL1 0x3333) on this
/// CPU (0), where the main thread waits for its report: its x3 at its
/// first exit, an HVC.
fn other_vcpu_x3(g: &Guest, pc: u64) -> Result<u64, Fail> {
    let w = rt::spawn(other_vcpu, g.vm.idx(), pc, &Opts::new().unstarted())?;
    OTHER_VCPU_THREAD.store(w.idx(), Ordering::Relaxed);
    w.run(rt::MAIN_PRIO, 0)?;
    w.signal_word()
}

/// Another vCPU runs on the CPU between two entries of this one (marked
/// unchanged): each sees its own EL1 registers.
fn el1_other_vcpu() -> R {
    let g = Guest::new(&[hvc(1), get_tpidr_el1(3), hvc(2)])?;
    state().el1.tpidr_el1 = 0x1111;
    g.expect(ExitReason::Hvc)?;
    let other = other_vcpu_x3(&g, GUEST_BASE + 4)?;
    ensure_eq!(other, 0x3333, "the other vcpu's tpidr_el1");
    state().unchanged = unchanged::ALL;
    g.expect(ExitReason::Hvc)?;
    ensure_eq!(state().regs.x[3], 0x1111, "this vcpu's tpidr_el1");
    Ok(())
}

/// DISR_EL1 (which a guest reaches in VDISR_EL2): what one vCPU wrote,
/// another on the same CPU does not read, and the first finds it again.
fn disr_other_vcpu() -> R {
    need_ras()?;
    const A: u32 = 1 << 31;
    let disr = |op: fn(u32, u32, u32, u32, u32, u32) -> u32, rt| op(rt, 3, 0, 12, 1, 1);
    let g = Guest::new(&[disr(msr, 4), hvc(1), disr(mrs, 3), hvc(2)])?;
    state().regs.x[4] = u64::from(A);
    g.expect(ExitReason::Hvc)?;
    ensure_eq!(
        other_vcpu_x3(&g, GUEST_BASE + 8)?,
        0,
        "the other vcpu's DISR_EL1"
    );
    state().unchanged = unchanged::ALL;
    g.expect(ExitReason::Hvc)?;
    ensure_eq!(state().regs.x[3], u64::from(A), "this vcpu's DISR_EL1");
    Ok(())
}

/// A vCPU that ran on another CPU since does not find its old EL1
/// registers on this one: what it set there counts.
fn el1_migrate() -> R {
    rt::need_cpus(2)?;
    let g = Guest::new(&[
        get_tpidr_el1(3),
        hvc(1),
        set_tpidr_el1(4),
        hvc(2),
        get_tpidr_el1(3),
        hvc(3),
    ])?;
    state().el1.tpidr_el1 = 0x1111;
    g.expect(ExitReason::Hvc)?;
    ensure_eq!(state().regs.x[3], 0x1111, "tpidr_el1 at first");
    let _back = BackToCpu0;
    base::SCHEDULER
        .run_thread(base::THREAD, rt::MAIN_PRIO, 1 << other_cpu(1))
        .ctx("move to another cpu")?;
    let s = state();
    s.regs.x[4] = 0x2222;
    s.unchanged = unchanged::ALL;
    g.expect(ExitReason::Hvc)?;
    base::SCHEDULER
        .run_thread(base::THREAD, rt::MAIN_PRIO, 1)
        .ctx("back to cpu 0")?;
    state().unchanged = unchanged::ALL;
    g.expect(ExitReason::Hvc)?;
    ensure_eq!(state().regs.x[3], 0x2222, "tpidr_el1 set on the other cpu");
    Ok(())
}

/// Worker: reports the d9 it starts with (a new thread's: zero), then
/// puts `v` there and reports that too.
extern "C" fn fp_other_thread(v: u64, _: u64) {
    let first = d9();
    set_d9(v);
    rt::signal(&[first, d9()]);
}

/// After an exit the guest's FP/SIMD registers may stay in the CPU while
/// the VMM does not use its own: another thread that runs on the CPU in
/// between neither sees them nor changes them for the guest.
fn fp_over_switch() -> R {
    let _g = fp_guest()?;
    set_d9(0x1111);
    let r = base::THREAD.vcpu_resume();
    ensure_eq!(r, Ok(ExitReason::Hvc), "first exit");
    let w = rt::spawn(fp_other_thread, 0x7777, 0, &Opts::new().unstarted())?;
    // On this CPU (0), where the main thread waits for its report.
    w.run(rt::MAIN_PRIO, 0)?;
    let m = w.signal()?;
    ensure_eq!(m.word(0), 0, "the other thread's d9 at its start");
    ensure_eq!(m.word(1), 0x7777, "the other thread's own d9");
    fp_guest_second_run(0x1111)
}

/// The guest sets d9, then runs many times without FP/SIMD (its
/// registers are saved and loaded around every run all the same), then
/// reads d9: its value; the VMM's d9 stays its own throughout.
fn fp_over_runs() -> R {
    let _g = Guest::new(&[
        movz(0, 0x3ff0, 3),
        fmov_to_d(9, 0),
        hvc(1),
        // b .-4: back to the hvc.
        0x17ff_ffff,
        fmov_from_d(1, 9),
        hvc(2),
    ])?;
    state().el1.cpacr = 3 << 20;
    set_d9(0x1111);
    for run in 0..48 {
        let r = base::THREAD.vcpu_resume();
        ensure_eq!(r, Ok(ExitReason::Hvc), format_args!("exit {run}"));
        ensure_eq!(d9(), 0x1111, format_args!("the vmm's d9 after exit {run}"));
    }
    state().regs.pc = GUEST_BASE + 16;
    fp_guest_second_run(0x1111)
}

/// The shortcut tests' registers, in the unmapped device page.
const BELL: u64 = MMIO + 0x50;
const STATUS: u64 = MMIO + 0x60;
/// `x<rd> = MMIO + off`.
const fn mmio_at(rd: u32, off: u32) -> [u32; 2] {
    [movz(rd, (MMIO >> 16) as u32, 1), addi(rd, rd, off)]
}

fn shortcut_doorbell() -> R {
    // The write at the doorbell triggers the Irq bound to the vCPU, whose
    // interrupt ends the wfi: the first exit is the hvc after it.
    let [a, b] = mmio_at(0, 0x50);
    let g = Guest::new(&[a, b, str32(1, 0), WFI, hvc(5)])?;
    let irq = rt::irq()?;
    irq.cap()
        .bind_vcpu(base::THREAD, 62, 0x80)
        .ctx("bind_vcpu")?;
    g.vm.cap()
        .set_doorbell(BELL, irq.cap())
        .ctx("set_doorbell")?;
    g.expect(ExitReason::Hvc)?;
    let s = state();
    ensure_eq!(s.exit.imm16(), Some(5), "the hvc after the wfi");
    ensure!(
        s.gic.lr.iter().any(|&v| lr::intid(v) == 62),
        "62 in a list register"
    );
    Ok(())
}

fn shortcut_doorbell_thread() -> R {
    // A doorbell whose Irq is attached to a thread (here the VMM thread
    // itself): the guest goes on after the write until the Irq's message
    // sends it out; the message carries the Irq's label.
    let [a, b] = mmio_at(0, 0x50);
    let g = Guest::new(&[a, b, str32(1, 0), SELF_LOOP])?;
    let irq = rt::irq()?;
    irq.cap().attach(base::THREAD, 0x5550).ctx("attach")?;
    g.vm.cap()
        .set_doorbell(BELL, irq.cap())
        .ctx("set_doorbell")?;
    g.expect(ExitReason::Kick)?;
    ensure_eq!(state().regs.pc, GUEST_BASE + 12, "past the write, looping");
    let (r, label) = ipc::ipc_wait(ipc::recv_timeout_us(WAIT_US));
    r.ctx("receive the irq")?;
    ensure_eq!(label, 0x5550, "the doorbell's irq");
    Ok(())
}

fn shortcut_constant() -> R {
    // Read, write, read again: both reads give the value, the write is
    // dropped, and the guest never exits before the hvc.
    let [a, b] = mmio_at(0, 0x60);
    let g = Guest::new(&[a, b, ldr32(2, 0), str32(1, 0), ldr32(3, 0), hvc(6)])?;
    let s = state();
    s.regs.x[1] = 7;
    s.regs.x[2] = 0xdead;
    g.vm.cap()
        .set_constant(STATUS, 0x8000_0001)
        .ctx("set_constant")?;
    g.expect(ExitReason::Hvc)?;
    let s = state();
    ensure_eq!(s.exit.imm16(), Some(6), "the hvc");
    ensure_eq!(s.regs.x[2], 0x8000_0001, "first read");
    ensure_eq!(s.regs.x[3], 0x8000_0001, "read after the write");
    Ok(())
}

fn shortcut_other_accesses() -> R {
    // A 64-bit read of the constant, a read of the doorbell and, once the
    // VMM removed it, a 32-bit read of the former constant: all exit.
    let [a, b] = mmio_at(0, 0x60);
    let [c, d] = mmio_at(4, 0x50);
    let g = Guest::new(&[a, b, c, d, ldr64(2, 0), ldr32(5, 4), ldr32(6, 0), hvc(7)])?;
    let irq = rt::irq()?;
    let vm = g.vm.cap();
    vm.set_constant(STATUS, 1).ctx("set_constant")?;
    vm.set_doorbell(BELL, irq.cap()).ctx("set_doorbell")?;
    let m = mmio_exit(&g, STATUS)?;
    ensure!(!m.write && m.size == 8, "64-bit read {m:?}");
    state().regs.skip_instruction();
    let m = mmio_exit(&g, BELL)?;
    ensure!(!m.write && m.size == 4, "doorbell read {m:?}");
    state().regs.skip_instruction();
    vm.remove_shortcut(STATUS).ctx("remove")?;
    let m = mmio_exit(&g, STATUS)?;
    ensure!(
        !m.write && m.size == 4 && m.reg == 6,
        "read after removal {m:?}"
    );
    state().regs.skip_instruction();
    g.expect(ExitReason::Hvc)?;
    Ok(())
}

/// A guest that writes the doorbell [`BELL`], then makes an HVC.
fn bell_guest() -> Result<Guest, Fail> {
    let [a, b] = mmio_at(0, 0x50);
    Guest::new(&[a, b, str32(1, 0), hvc(8)])
}

/// The doorbell of `g` ([`bell_guest`]) is gone (`why`): the write exits
/// to the VMM, and removing the shortcut finds none.
fn expect_bell_gone(g: &Guest, why: &str) -> R {
    let m = mmio_exit(g, BELL)?;
    ensure!(m.write && m.size == 4, "access {m:?}");
    state().regs.skip_instruction();
    g.expect(ExitReason::Hvc)?;
    expect_err!(g.vm.cap().remove_shortcut(BELL), Error::NoEnt, why);
    Ok(())
}

fn shortcut_irq_deleted() -> R {
    // The doorbell's Irq is deleted.
    let g = bell_guest()?;
    let irq = rt::irq()?;
    g.vm.cap()
        .set_doorbell(BELL, irq.cap())
        .ctx("set_doorbell")?;
    drop(irq);
    expect_bell_gone(&g, "the shortcut after its irq went")
}

fn shortcut_cap_revoked() -> R {
    // The doorbell names a second capability to the Irq; the VMM drops
    // that one and the Irq lives on: the doorbell rings only with the
    // capability it was set with.
    let g = bell_guest()?;
    let irq = rt::irq()?;
    let copy = rt::copy_cap(irq.cap(), l4::CapRights::ALL)?;
    g.vm.cap()
        .set_doorbell(BELL, copy.cap())
        .ctx("set_doorbell")?;
    drop(copy);
    ensure!(rt::valid(irq.idx())?, "the irq itself lives on");
    expect_bell_gone(&g, "the shortcut after its capability went")
}

fn shortcut_refusals() -> R {
    let vm = rt::create("create vm", |d| base::FACTORY.create_vm(d))?;
    let v = vm.cap();
    expect_err!(v.set_constant(MMIO + 2, 0), Error::Inval, "unaligned");
    expect_err!(v.set_constant(1 << 48, 0), Error::Inval, "beyond 48 bits");
    expect_err!(v.remove_shortcut(MMIO), Error::NoEnt, "removing none");
    let not_irq = Cap::<l4::Irq>::from_index(base::THREAD.index());
    expect_err!(
        v.set_doorbell(MMIO, not_irq),
        Error::Inval,
        "a thread as the irq"
    );
    let ro = rt::copy_cap(v, l4::CapRights::R)?;
    expect_err!(
        ro.cap().set_constant(MMIO, 0),
        Error::Perm,
        "without W on the vm"
    );
    for i in 0..l4::abi::vcpu::shortcut::MAX as u64 {
        v.set_constant(MMIO + 4 * i, i as u32).ctx("set")?;
    }
    expect_err!(
        v.set_constant(MMIO + 0x100, 0),
        Error::NoMem,
        "one too many"
    );
    // Replacing one is no new one; a removed one makes room.
    v.set_constant(MMIO, 9).ctx("replace")?;
    v.remove_shortcut(MMIO + 4).ctx("remove")?;
    v.set_constant(MMIO + 0x100, 0).ctx("set after a removal")?;
    Ok(())
}

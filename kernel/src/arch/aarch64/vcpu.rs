//! Guests at EL1: the world switch, the guest's register state in the
//! hardware, stage-2 TLB maintenance, and decoding of exits.
//!
//! While a guest runs, HCR_EL2 has TGE clear and VM set: EL1 and EL0 are
//! the guest's, translated by stage 2 under VTTBR_EL2 (the Vm's tables and
//! VMID). Physical IRQs and FIQs (IMO/FMO) and SErrors (AMO) come to EL2,
//! WFI traps (TWI), SMC traps (TSC), implementation-defined registers and
//! ACTLR trap (TIDCP, TACR), and the ID registers trap (TID3): the kernel
//! answers them with what the guest gets ([`id_register`]). The debug and
//! PMU registers, trace, profiling, activity monitors, RAS error records
//! and limited-ordering regions, which the kernel does not switch, trap to
//! the VMM ([`GuestTraps`]). NV stays clear and EL2 registers UNDEF at
//! EL1, and the PSTATE the kernel erets to is checked to be EL0 or EL1
//! ([`l4_abi::vcpu::check_pstate`]): the guest never reaches EL2.
//!
//! The host never uses the EL1 registers (its threads run at EL0 in the
//! EL2&0 regime), so the guest's EL1 registers are saved after every exit
//! and loaded before an entry unless the CPU still holds them ([`load`]),
//! through the `_EL12`/`_EL02` aliases where VHE redirects the plain
//! names to EL2; only the EL0 thread registers, SP_EL0 and MDSCR_EL1,
//! which the host changes, are loaded every time. The virtual timer and the GIC virtual
//! CPU interface (ICH_*) are switched the same way and left disabled
//! while the host runs.

use crate::arch::MAX_CPUS;
use aarch64_cpu::registers::*;
use core::arch::asm;
use core::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, AtomicUsize, Ordering};
use l4_abi::vcpu::{GuestRegs, MAX_LRS, VcpuState};

core::arch::global_asm!(include_str!("vcpu.S"));

unsafe extern "C" {
    fn guest_run(regs: *mut GuestRegs, pstate: u64) -> u64;
}

/// Reads a system register by its encoded name (the VHE aliases, which
/// the assembler may not know by name).
macro_rules! mrs {
    ($name:literal) => {{
        let v: u64;
        // SAFETY: reading an EL1/EL0 register of the guest from EL2 has no
        // side effects.
        unsafe { asm!(concat!("mrs {}, ", $name), out(reg) v, options(nomem, nostack, preserves_flags)) };
        v
    }};
}

/// Writes a system register by its encoded name.
macro_rules! msr {
    ($name:literal, $v:expr) => {{
        let v: u64 = $v;
        // SAFETY: the register is the guest's (EL1/EL0 state, virtual timer,
        // GIC virtual interface): the host does not depend on it, and the
        // values were checked or come from the guest itself.
        unsafe { asm!(concat!("msr ", $name, ", {}"), in(reg) v, options(nomem, nostack, preserves_flags)) };
    }};
}

/// How an exit came to EL2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitKind {
    /// A synchronous exception: the syndrome says which.
    Sync { esr: u64, far: u64, hpfar: u64 },
    /// A physical interrupt (the kernel takes it once the host runs).
    Irq,
    /// A physical FIQ.
    Fiq,
    /// An SError.
    SError { esr: u64 },
}

/// HCR_EL2 while the host runs (read at start-up).
static HOST_HCR: AtomicU64 = AtomicU64::new(0);
/// HCR_EL2 while a guest runs ([`guest_hcr`] and [`GuestTraps::hcr`]).
static GUEST_HCR: AtomicU64 = AtomicU64::new(0);
/// CPTR_EL2 bits a guest runs with besides FPEN ([`GuestTraps::cptr`]).
static GUEST_CPTR: AtomicU64 = AtomicU64::new(0);
/// Whether the CPU has RAS: the guest's DISR_EL1 is in VDISR_EL2, which
/// the kernel then switches.
static RAS: AtomicBool = AtomicBool::new(false);
/// Whether the CPU has address authentication (the APIA, APIB, APDA and
/// APDB keys) and generic authentication (the APGA key): guests get them,
/// and the kernel switches the keys ([`load`], [`save`]).
static PAUTH_ADDRESS: AtomicBool = AtomicBool::new(false);
static PAUTH_GENERIC: AtomicBool = AtomicBool::new(false);
/// The vector length (bytes) guests get SVE with, 0 without: the CPU's
/// largest up to [`SVE_MAX_VL`], the smallest of all CPUs'.
static SVE_VL: AtomicUsize = AtomicUsize::new(usize::MAX);
/// The largest vector length guests get (bytes): 512 bits, Linux's
/// default for its programs, so that a vCPU's SVE state is 2.2 KB and
/// switching it costs what 4 times the FP/SIMD registers cost.
pub const SVE_MAX_VL: usize = 64;
/// List registers of the GIC virtual interface (ICH_VTR_EL2.ListRegs + 1).
static LR_COUNT: AtomicUsize = AtomicUsize::new(0);
/// Active-priority registers per group (from ICH_VTR_EL2.PREbits).
static APR_COUNT: AtomicUsize = AtomicUsize::new(0);
/// Width of a VMID: 8 or 16 bits.
static VMID_BITS: AtomicUsize = AtomicUsize::new(8);

/// Per-CPU set-up for guests: VTCR_EL2 for [`l4_pgtable::stage2`], the
/// virtual interface off, and what the hardware offers.
pub fn cpu_init() {
    // VM stays set while the host runs: with TGE set it has no effect
    // there (the EL2&0 regime has no stage 2), and an HCR_EL2 write that
    // flips it makes an emulator drop every cached translation (QEMU's
    // TCG does), twice per guest exit.
    let host_hcr = HCR_EL2.get() | HCR_EL2::VM::Enable.value;
    HCR_EL2.set(host_hcr);
    HOST_HCR.store(host_hcr, Ordering::Relaxed);
    let host_mdcr = MDCR_EL2.get();
    let (pfr0, dfr0, mmfr1) = (read_id(4, 0), read_id(5, 0), read_id(7, 1));
    fine_grained_traps_init(read_id(7, 0), pfr0, mmfr1);
    let traps = GuestTraps::for_cpu(pfr0, dfr0, mmfr1);
    let (isar1, isar2) = (read_id(6, 1), read_id(6, 2));
    // ID_AA64ISAR1: APA 4, API 8, GPA 24, GPI 28; ID_AA64ISAR2: GPA3 8,
    // APA3 12.
    let address = id_field(isar1, 4) | id_field(isar1, 8) | id_field(isar2, 12) != 0;
    let generic = id_field(isar1, 24) | id_field(isar1, 28) | id_field(isar2, 8) != 0;
    PAUTH_ADDRESS.store(address, Ordering::Relaxed);
    PAUTH_GENERIC.store(generic, Ordering::Relaxed);
    if generic {
        // Reset leaves it UNKNOWN; tasks' PACGA uses it (see `save_keys`).
        msr!("S3_0_C2_C3_0", 0);
        msr!("S3_0_C2_C3_1", 0);
    }
    // HCR_EL2 APK (40): the guest's key accesses, API (41): its pointer
    // authentication instructions, both untrapped.
    let pauth = if address || generic { 0b11 << 40 } else { 0 };
    GUEST_HCR.store(guest_hcr() | traps.hcr | pauth, Ordering::Relaxed);
    let sve = sve_init(pfr0);
    // MDCR_EL2: what `pmu_init` set, and the guests' traps
    // ([`GuestTraps::mdcr`]), for good: with HCR_EL2.TGE set, as while the
    // host runs, its trap bits do not reach the host's EL0 (debug
    // accesses trap there anyway, PMU accesses go by PMUSERENR_EL0: a
    // task's cycle-counter read after a guest ran was tried on QEMU), so
    // it need not be switched at every exit.
    MDCR_EL2.set(host_mdcr | traps.mdcr);
    // CPTR_EL2 ZEN (16-17) 0b11: the guest's SVE untrapped.
    GUEST_CPTR.store(
        traps.cptr | if sve { 0b11 << 16 } else { 0 },
        Ordering::Relaxed,
    );
    RAS.store(id_field(pfr0, 28) != 0, Ordering::Relaxed);
    let pa_range = ID_AA64MMFR0_EL1.read(ID_AA64MMFR0_EL1::PARange);
    let vmid16 = ID_AA64MMFR1_EL1.read(ID_AA64MMFR1_EL1::VMIDBits) == 2;
    VMID_BITS.store(if vmid16 { 16 } else { 8 }, Ordering::Relaxed);
    VTCR_EL2.set(l4_pgtable::stage2::vtcr(pa_range, vmid16));
    let vtr = ICH_VTR_EL2.extract();
    LR_COUNT.store(
        (vtr.read(ICH_VTR_EL2::ListRegs) as usize + 1).min(MAX_LRS),
        Ordering::Relaxed,
    );
    // 5, 6 or 7 preemption bits: 1, 2 or 4 active-priority registers.
    let pre = vtr.read(ICH_VTR_EL2::PREbits) as usize + 1;
    APR_COUNT.store(1 << pre.saturating_sub(5).min(2), Ordering::Relaxed);
    ICH_HCR_EL2.set(0);
    // The list registers reset to unknown values: none holds an
    // interrupt from here on but what `load_gic` writes (see LR_LIVE).
    write_lrs(&[0; MAX_LRS], all_lrs());
    if let Some(live) = LR_LIVE.get(crate::arch::cpu_id()) {
        live.store(0, Ordering::Relaxed);
    }
    // SAFETY: an isb only synchronises the writes above.
    unsafe { asm!("isb", options(nomem, nostack)) };
}

/// SVE for guests where the CPU has it (ID_AA64PFR0_EL1.SVE): EL2 may
/// execute SVE (to switch the guests' registers; the host's EL0 still
/// traps), and ZCR_EL2 limits EL2 and the guests to [`SVE_MAX_VL`] or
/// the CPU's largest vector length if that is smaller. Whether guests get
/// SVE.
fn sve_init(pfr0: u64) -> bool {
    if id_field(pfr0, 32) == 0 {
        SVE_VL.store(0, Ordering::Relaxed);
        return false;
    }
    super::HOST_ZEN.store(0b01 << 16, Ordering::Relaxed);
    super::fp_access(false);
    // ZCR_EL2.LEN: vector length (LEN + 1) * 16 bytes.
    msr!("S3_4_C1_C2_0", (SVE_MAX_VL / 16 - 1) as u64);
    // SAFETY: an isb only synchronises the writes above.
    unsafe { asm!("isb", options(nomem, nostack)) };
    SVE_VL.fetch_min(super::sve_vl_el2(), Ordering::Relaxed);
    true
}

/// The vector length (bytes) guests get SVE with; 0 without SVE.
pub fn sve_vl() -> usize {
    match SVE_VL.load(Ordering::Relaxed) {
        usize::MAX => 0,
        vl => vl,
    }
}

/// Puts the fine-grained trap registers (FEAT_FGT) and HCRX_EL2
/// (FEAT_HCX) into a known state: they reset to UNKNOWN values where the
/// firmware gives them to EL2, which would trap guest accesses at random
/// or, worse, let some through. All zero: no positive trap, and every
/// negative one (`nXXX` bits: features newer than FGT, such as branch
/// records, the guarded control stack or permission indirection, which
/// the kernel does not switch and the ID registers hide) traps, so a
/// guest cannot reach them anyway; HCRX_EL2's enables all clear. They
/// apply only where HCR_EL2.{E2H, TGE} is not {1, 1}, that is to guests,
/// so they stay as set for good. QEMU 7.2 has neither feature: this runs
/// only on CPUs that say they have them (ID_AA64MMFR0_EL1.FGT,
/// ID_AA64MMFR1_EL1.HCX; HAFGRTR_EL2 only with activity monitors,
/// ID_AA64PFR0_EL1.AMU).
fn fine_grained_traps_init(mmfr0: u64, pfr0: u64, mmfr1: u64) {
    if id_field(mmfr0, 56) != 0 {
        msr!("S3_4_C1_C1_4", 0); // HFGRTR_EL2
        msr!("S3_4_C1_C1_5", 0); // HFGWTR_EL2
        msr!("S3_4_C1_C1_6", 0); // HFGITR_EL2
        msr!("S3_4_C3_C1_4", 0); // HDFGRTR_EL2
        msr!("S3_4_C3_C1_5", 0); // HDFGWTR_EL2
        if id_field(pfr0, 44) != 0 {
            msr!("S3_4_C3_C1_6", 0); // HAFGRTR_EL2
        }
    }
    // FEAT_FGT2 (FGT 0b0010): the second set, negative bits but for
    // HFGITR2_EL2.TSBCSYNC, also reset UNKNOWN.
    if id_field(mmfr0, 56) >= 2 {
        msr!("S3_4_C3_C1_0", 0); // HDFGRTR2_EL2
        msr!("S3_4_C3_C1_1", 0); // HDFGWTR2_EL2
        msr!("S3_4_C3_C1_2", 0); // HFGRTR2_EL2
        msr!("S3_4_C3_C1_3", 0); // HFGWTR2_EL2
        msr!("S3_4_C3_C1_7", 0); // HFGITR2_EL2
    }
    if id_field(mmfr1, 40) != 0 {
        msr!("S3_4_C1_C2_2", 0); // HCRX_EL2
    }
}

/// How many list registers the hardware has.
pub fn lr_count() -> usize {
    LR_COUNT.load(Ordering::Relaxed)
}

/// Every list register the hardware has (bit n: list register n).
#[inline(always)]
fn all_lrs() -> u16 {
    u16::MAX >> (16 - lr_count())
}

/// How many active-priority registers per group the hardware has.
pub fn apr_count() -> usize {
    APR_COUNT.load(Ordering::Relaxed)
}

/// How many VMIDs there are (besides 0, which the kernel never gives out).
pub fn vmid_count() -> u32 {
    (1u32 << VMID_BITS.load(Ordering::Relaxed)) - 1
}

/// The 4-bit ID register field of `v` at `shift`.
const fn id_field(v: u64, shift: u32) -> u64 {
    (v >> shift) & 0xf
}

/// What a guest must not reach because the kernel does not switch it
/// between guests and the host: trap bits of HCR_EL2, MDCR_EL2 and
/// CPTR_EL2 (VHE layout) for the features the CPU has (a trap bit of a
/// missing feature is RES0). Accesses exit to the VMM as trapped system
/// registers; uvmm reads the debug registers as zero and ignores writes,
/// the rest go by its fault mode (their ID registers say the features are
/// absent, [`id_register`], but for RAS, whose error records a guest
/// then finds empty).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct GuestTraps {
    /// RAS error records, shared by all of the CPU's software (TERR);
    /// limited-ordering regions, EL1 registers the kernel does not switch
    /// (TLOR).
    hcr: u64,
    /// The debug registers (breakpoints, watchpoints, OS lock, MDSCR_EL1,
    /// the debug communication channel: TDA, TDOSA, TDRA) and the PMU
    /// (TPM, TPMCR), which the host uses too: one set per CPU, so that one
    /// guest would read or arm what another set; the statistical
    /// profiling controls (TPMS) and trace filter (TTRF) likewise.
    mdcr: u64,
    /// Trace registers (TTA) and activity monitors (TAM).
    cptr: u64,
}

impl GuestTraps {
    /// The traps for a CPU with these ID_AA64PFR0_EL1, ID_AA64DFR0_EL1
    /// and ID_AA64MMFR1_EL1.
    fn for_cpu(pfr0: u64, dfr0: u64, mmfr1: u64) -> GuestTraps {
        let bit = |on: bool, b: u32| if on { 1u64 << b } else { 0 };
        let pmu = id_field(dfr0, 8);
        let pmu = pmu != 0 && pmu != 0xf;
        let (tpmcr, tpm, tda, tdosa, tdra, tpms, ttrf) = (5, 6, 9, 10, 11, 14, 19);
        let (tlor, terr, tta, tam) = (35, 36, 28, 30);
        GuestTraps {
            hcr: bit(id_field(mmfr1, 16) != 0, tlor) | bit(id_field(pfr0, 28) != 0, terr),
            mdcr: bit(true, tda)
                | bit(true, tdosa)
                | bit(true, tdra)
                | bit(pmu, tpm)
                | bit(pmu, tpmcr)
                | bit(id_field(dfr0, 32) != 0, tpms)
                | bit(id_field(dfr0, 40) != 0, ttrf),
            cptr: bit(id_field(dfr0, 4) != 0, tta) | bit(id_field(pfr0, 44) != 0, tam),
        }
    }
}

/// HCR_EL2 while a guest runs, but for the traps that depend on the CPU
/// ([`GuestTraps::hcr`]).
fn guest_hcr() -> u64 {
    (HCR_EL2::E2H::EnableOsAtEl2
        + HCR_EL2::RW::EL1IsAarch64
        + HCR_EL2::VM::Enable
        + HCR_EL2::IMO::EnableVirtualIRQ
        + HCR_EL2::FMO::EnableVirtualFIQ
        + HCR_EL2::AMO::SET
        + HCR_EL2::TWI::SET
        + HCR_EL2::TSC::EnableTrapEl1SmcToEl2
        + HCR_EL2::TID3::SET
        + HCR_EL2::TIDCP::SET
        + HCR_EL2::TACR::SET
        + HCR_EL2::FB::SET
        + HCR_EL2::BSU.val(1))
    .value
    // API and APK are set by `cpu_init` where the CPU has pointer
    // authentication (the kernel switches the keys).
}

/// CNTHCTL_EL2 (VHE layout) while a guest runs: the host's EL0 counter
/// access, and EL1 may read the physical counter (EL1PCTEN) but its
/// physical timer traps (EL1PCEN clear).
const CNTHCTL_GUEST: u64 = 0b11 | (1 << 10);

/// ICC_SRE_EL1 for the guest: system-register interface, IRQ and FIQ
/// bypass disabled.
const ICC_SRE_GUEST: u64 = 0b111;

/// Reads a field of the state area (see [`load`]).
macro_rules! get {
    ($area:ident . $($f:ident).+) => {{
        // SAFETY: `load`'s caller vouches for the area; the VMM may change
        // it meanwhile, so each field is read once, and any value of these
        // fields is one the guest could have set itself.
        unsafe { core::ptr::read_volatile(&raw const (*$area).$($f).+) }
    }};
}

/// Writes a field of the state area (see [`save`]).
macro_rules! put {
    ($area:ident . $($f:ident).+ = $v:expr) => {{
        let v: u64 = $v;
        // SAFETY: `save`'s caller vouches for the area.
        unsafe { core::ptr::write_volatile(&raw mut (*$area).$($f).+, v) };
    }};
}

/// Per CPU: the vCPU (its [`load`] `id`) whose EL1 registers the CPU
/// holds, 0 for none known. The host never uses them (see the module
/// documentation) and only [`load`] writes them, so they stay as that
/// vCPU's last exit left them until another vCPU is loaded here.
static LIVE_EL1: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// Loads the guest's state into the hardware: EL1 registers, timer, GIC
/// virtual interface, VMPIDR, and stage 2 (`vttbr`). The general
/// registers but pstate, and the EL1 registers, come from the state area
/// `area` (any values are fine there); the checked parts (timer control,
/// GIC, VMPIDR) from `s`, which must have passed [`VcpuState::check`].
/// `id` names the vCPU (never 0); `el1_kept`: the area's EL1 registers
/// are what this vCPU's last run, on this CPU, left in them, so when this
/// CPU still holds them (no other vCPU was loaded here since) they are
/// not written again. IRQs are masked. `lrs`: the list registers of `s`
/// that are not zero (bit n: list register n). `ich_extra`: the kernel's
/// own ICH_HCR_EL2 bits (maintenance interrupts it wants).
///
/// # Safety
///
/// `area` must point to the vCPU's state area (kernel memory, valid for
/// reads of a [`VcpuState`]).
pub unsafe fn load(
    area: *const VcpuState,
    s: &VcpuState,
    id: u64,
    el1_kept: bool,
    vttbr: u64,
    lrs: u16,
    ich_extra: u64,
) {
    let live = LIVE_EL1.get(crate::arch::cpu_id());
    let held = el1_kept && live.is_some_and(|l| l.load(Ordering::Relaxed) == id);
    if !held {
        load_el1(area);
        if let Some(l) = live {
            l.store(id, Ordering::Relaxed);
        }
    }
    // What the host changes while it runs: the EL0 thread registers,
    // SP_EL0 and MDSCR_EL1 (see `save`); the rest of the EL1 state only
    // the guest changes.
    TPIDR_EL0.set(get!(area.el1.tpidr_el0));
    TPIDRRO_EL0.set(get!(area.el1.tpidrro_el0));
    MDSCR_EL1.set(get!(area.el1.mdscr));
    load_generic_key(area);
    SP_EL0.set(get!(area.regs.sp_el0));
    SP_EL1.set(get!(area.regs.sp_el1));
    msr!("S3_5_C4_C0_0", get!(area.regs.spsr_el1));
    msr!("S3_5_C4_C0_1", get!(area.regs.elr_el1));
    // The virtual timer: offset first, then compare value and control,
    // each written only when the CPU holds another value (the offset and
    // compare value stay from the last guest's exit, see `save`): an
    // emulator re-arms a host timer on each write, and QEMU's TCG also
    // wakes its main loop when that becomes its earliest timer.
    if CNTVOFF_EL2.get() != s.timer.cntvoff {
        CNTVOFF_EL2.set(s.timer.cntvoff);
    }
    if mrs!("S3_5_C14_C3_2") != s.timer.cval {
        msr!("S3_5_C14_C3_2", s.timer.cval);
    }
    if mrs!("S3_5_C14_C3_1") & 0b11 != s.timer.ctl & 0b11 {
        msr!("S3_5_C14_C3_1", s.timer.ctl & 0b11);
    }
    VMPIDR_EL2.set(s.vmpidr | (1 << 31));
    load_gic(s, lrs, ich_extra);
    VTTBR_EL2.set(vttbr);
    HCR_EL2.set(GUEST_HCR.load(Ordering::Relaxed));
    // SAFETY: synchronises the register writes before the eret.
    unsafe { asm!("isb", options(nomem, nostack)) };
}

/// The EL1 registers only the guest changes (and what the host sets
/// once for every guest), from the state area.
fn load_el1(area: *const VcpuState) {
    msr!("S3_5_C1_C0_0", get!(area.el1.sctlr));
    msr!("S3_5_C1_C0_2", get!(area.el1.cpacr));
    msr!("S3_5_C2_C0_0", get!(area.el1.ttbr0));
    msr!("S3_5_C2_C0_1", get!(area.el1.ttbr1));
    // A TCR write may change how ASIDs are read, so an emulator drops all
    // cached translations on it (QEMU's TCG does); the value is usually
    // the one already in the register (this vCPU ran here last).
    let tcr = get!(area.el1.tcr);
    if mrs!("S3_5_C2_C0_2") != tcr {
        msr!("S3_5_C2_C0_2", tcr);
    }
    msr!("S3_5_C10_C2_0", get!(area.el1.mair));
    msr!("S3_5_C10_C3_0", get!(area.el1.amair));
    msr!("S3_5_C12_C0_0", get!(area.el1.vbar));
    msr!("S3_5_C13_C0_1", get!(area.el1.contextidr));
    msr!("S3_5_C5_C2_0", get!(area.el1.esr));
    msr!("S3_5_C6_C0_0", get!(area.el1.far));
    msr!("S3_5_C5_C1_0", get!(area.el1.afsr0));
    msr!("S3_5_C5_C1_1", get!(area.el1.afsr1));
    msr!("S3_5_C14_C1_0", get!(area.el1.cntkctl));
    PAR_EL1.set(get!(area.el1.par));
    TPIDR_EL1.set(get!(area.el1.tpidr_el1));
    CSSELR_EL1.set(get!(area.el1.csselr));
    if RAS.load(Ordering::Relaxed) {
        msr!("S3_4_C12_C1_1", get!(area.el1.disr)); // VDISR_EL2
    }
    msr!("cnthctl_el2", CNTHCTL_GUEST);
    set_vpidr(MIDR_EL1.get());
    if sve_vl() != 0 {
        msr!("S3_5_C1_C2_0", get!(area.el1.zcr)); // ZCR_EL12
    }
    if PAUTH_ADDRESS.load(Ordering::Relaxed) {
        msr!("S3_0_C2_C1_0", get!(area.el1.pac.apia_lo));
        msr!("S3_0_C2_C1_1", get!(area.el1.pac.apia_hi));
        msr!("S3_0_C2_C1_2", get!(area.el1.pac.apib_lo));
        msr!("S3_0_C2_C1_3", get!(area.el1.pac.apib_hi));
        msr!("S3_0_C2_C2_0", get!(area.el1.pac.apda_lo));
        msr!("S3_0_C2_C2_1", get!(area.el1.pac.apda_hi));
        msr!("S3_0_C2_C2_2", get!(area.el1.pac.apdb_lo));
        msr!("S3_0_C2_C2_3", get!(area.el1.pac.apdb_hi));
    }
}

/// The guest's generic authentication key: written at every entry, since
/// [`save`] clears it for the host.
fn load_generic_key(area: *const VcpuState) {
    if PAUTH_GENERIC.load(Ordering::Relaxed) {
        msr!("S3_0_C2_C3_0", get!(area.el1.pac.apga_lo));
        msr!("S3_0_C2_C3_1", get!(area.el1.pac.apga_hi));
    }
}

/// VPIDR_EL2 (what the guest reads as MIDR_EL1); the crate lacks it.
fn set_vpidr(v: u64) {
    msr!("S3_4_C0_C0_0", v);
}

/// Per CPU: the list registers that may hold an interrupt (bit n: list
/// register n), whichever vCPU ran last: what the last [`load_gic`] wrote
/// non-zero. The others are zero or hold an interrupt the guest completed
/// (invalid), so an entry need not write them unless it puts one there,
/// and an exit need not read them.
static LR_LIVE: [AtomicU16; MAX_CPUS] = [const { AtomicU16::new(0) }; MAX_CPUS];

/// [`LR_LIVE`] of this CPU (all list registers if it has no entry).
#[inline(always)]
fn live_lrs() -> u16 {
    LR_LIVE
        .get(crate::arch::cpu_id())
        .map_or_else(all_lrs, |l| l.load(Ordering::Relaxed))
}

fn load_gic(s: &VcpuState, lrs: u16, ich_extra: u64) {
    let g = &s.gic;
    // Every entry: the guest may have changed it, and it gets this one.
    // SAFETY: ICC_SRE_EL1 only concerns EL1 (the guest's).
    unsafe { asm!("msr S3_0_C12_C12_5, {}", in(reg) ICC_SRE_GUEST, options(nomem, nostack)) };
    ICH_VMCR_EL2.set(g.vmcr);
    let aprs = APR_COUNT.load(Ordering::Relaxed);
    for i in 0..aprs {
        write_apr(0, i, g.ap0r[i]);
        write_apr(1, i, g.ap1r[i]);
    }
    // The ones that hold an interrupt, and those that may still hold one
    // of the CPU's last entry.
    write_lrs(&g.lr, lrs | live_lrs());
    if let Some(l) = LR_LIVE.get(crate::arch::cpu_id()) {
        l.store(lrs, Ordering::Relaxed);
    }
    ICH_HCR_EL2.set(g.hcr | ich_extra | l4_abi::vcpu::hcr::EN);
}

/// Enters the guest with its general registers from `regs` (pc and
/// x0-x30; the state area's) and `pstate` (checked with
/// [`l4_abi::vcpu::check_pstate`], or the hardware's from an exit), and
/// returns on the next exit, the registers saved to `regs`. The other
/// state was [`load`]ed; IRQs are masked.
///
/// # Safety
///
/// `regs` must be valid for reads and writes of a [`GuestRegs`] (kernel
/// memory) for the call.
pub unsafe fn run(regs: *mut GuestRegs, pstate: u64) -> ExitKind {
    // SAFETY: guest_run saves the host's callee-saved registers and
    // vectors on this kernel stack, erets to EL1 with the checked pstate,
    // and on the exit restores them and writes `regs` (the caller vouches
    // for it).
    let kind = unsafe { guest_run(regs, pstate) };
    match kind {
        0 => ExitKind::Sync {
            esr: ESR_EL2.get(),
            far: FAR_EL2.get(),
            hpfar: HPFAR_EL2.get(),
        },
        1 => ExitKind::Irq,
        2 => ExitKind::Fiq,
        _ => ExitKind::SError { esr: ESR_EL2.get() },
    }
}

/// Saves the guest's state after an exit and gives the hardware back to
/// the host: timer stopped, virtual interface off, HCR_EL2 the host's.
/// The EL1 registers and the stack and exception registers go to the
/// state area `area`, the timer and GIC state to `s`.
///
/// # Safety
///
/// `area` must point to the vCPU's state area (kernel memory, valid for
/// writes of a [`VcpuState`]).
/// Returns what the virtual interface says: which list registers hold an
/// interrupt now, and which the guest completed while their EOI bit asked
/// to be told (ICH_EISR_EL2).
pub unsafe fn save(area: *mut VcpuState, s: &mut VcpuState) -> GicExit {
    HCR_EL2.set(HOST_HCR.load(Ordering::Relaxed));
    // SAFETY: synchronises the HCR change before the EL1 accesses below
    // (with TGE set again, the _EL12 names still reach EL1).
    unsafe { asm!("isb", options(nomem, nostack)) };
    put!(area.el1.sctlr = mrs!("S3_5_C1_C0_0"));
    put!(area.el1.cpacr = mrs!("S3_5_C1_C0_2"));
    put!(area.el1.ttbr0 = mrs!("S3_5_C2_C0_0"));
    put!(area.el1.ttbr1 = mrs!("S3_5_C2_C0_1"));
    put!(area.el1.tcr = mrs!("S3_5_C2_C0_2"));
    put!(area.el1.mair = mrs!("S3_5_C10_C2_0"));
    put!(area.el1.amair = mrs!("S3_5_C10_C3_0"));
    put!(area.el1.vbar = mrs!("S3_5_C12_C0_0"));
    put!(area.el1.contextidr = mrs!("S3_5_C13_C0_1"));
    put!(area.el1.esr = mrs!("S3_5_C5_C2_0"));
    put!(area.el1.far = mrs!("S3_5_C6_C0_0"));
    put!(area.el1.afsr0 = mrs!("S3_5_C5_C1_0"));
    put!(area.el1.afsr1 = mrs!("S3_5_C5_C1_1"));
    put!(area.el1.cntkctl = mrs!("S3_5_C14_C1_0"));
    put!(area.regs.spsr_el1 = mrs!("S3_5_C4_C0_0"));
    put!(area.regs.elr_el1 = mrs!("S3_5_C4_C0_1"));
    put!(area.el1.par = PAR_EL1.get());
    put!(area.el1.tpidr_el1 = TPIDR_EL1.get());
    put!(area.el1.tpidr_el0 = TPIDR_EL0.get());
    put!(area.el1.tpidrro_el0 = TPIDRRO_EL0.get());
    put!(area.el1.csselr = CSSELR_EL1.get());
    put!(area.el1.mdscr = MDSCR_EL1.get());
    if RAS.load(Ordering::Relaxed) {
        put!(area.el1.disr = mrs!("S3_4_C12_C1_1")); // VDISR_EL2
    }
    save_keys(area);
    if sve_vl() != 0 {
        put!(area.el1.zcr = mrs!("S3_5_C1_C2_0")); // ZCR_EL12
    }
    put!(area.regs.sp_el1 = SP_EL1.get());
    put!(area.regs.sp_el0 = SP_EL0.get());
    s.timer.cval = mrs!("S3_5_C14_C3_2");
    // ENABLE and IMASK as the guest left them, ISTATUS (ENABLE and the
    // condition) from the counter: QEMU 7.2 sets the register's ISTATUS
    // only when it evaluates the timer (at a write of it, or when its own
    // host timer for it runs, later), so it may still read clear just
    // after the condition came true.
    s.timer.ctl = mrs!("S3_5_C14_C3_1") & 0b11;
    let met = s.timer.condition_met(crate::arch::counter());
    s.timer.ctl |= u64::from(met) << 2;
    // Stop the guest's timer so that it does not fire while others run.
    // (Left armed over an exit, ktest `vm.virtual_timer_interrupt` once
    // failed 2 times in 13, when ISTATUS was still taken from the
    // register; with it computed as above, 6 full runs and 12 of the vm
    // tests passed, but a ping or a TCP stream between two VMs did not
    // get faster either way, so the timer stops as before.)
    msr!("S3_5_C14_C3_1", 0);
    // MDSCR_EL1 also governs debug exceptions at EL2 and EL0's debug
    // channel: the host's value.
    MDSCR_EL1.set(crate::arch::HOST_MDSCR);
    save_gic(s)
}

/// The guest's pointer authentication keys, to the state area. The
/// address keys stay in the CPU (the host never enables address
/// authentication: its instructions leave pointers unchanged at EL0 and
/// EL2, and EL0 cannot read keys), but the generic key is cleared: PACGA
/// has no enable bit, so a task could compute MACs under it.
fn save_keys(area: *mut VcpuState) {
    if PAUTH_ADDRESS.load(Ordering::Relaxed) {
        put!(area.el1.pac.apia_lo = mrs!("S3_0_C2_C1_0"));
        put!(area.el1.pac.apia_hi = mrs!("S3_0_C2_C1_1"));
        put!(area.el1.pac.apib_lo = mrs!("S3_0_C2_C1_2"));
        put!(area.el1.pac.apib_hi = mrs!("S3_0_C2_C1_3"));
        put!(area.el1.pac.apda_lo = mrs!("S3_0_C2_C2_0"));
        put!(area.el1.pac.apda_hi = mrs!("S3_0_C2_C2_1"));
        put!(area.el1.pac.apdb_lo = mrs!("S3_0_C2_C2_2"));
        put!(area.el1.pac.apdb_hi = mrs!("S3_0_C2_C2_3"));
    }
    if PAUTH_GENERIC.load(Ordering::Relaxed) {
        put!(area.el1.pac.apga_lo = mrs!("S3_0_C2_C3_0"));
        put!(area.el1.pac.apga_hi = mrs!("S3_0_C2_C3_1"));
        msr!("S3_0_C2_C3_0", 0);
        msr!("S3_0_C2_C3_1", 0);
    }
}

/// The pstate of the last exit (SPSR_EL2 as the exception left it; only
/// an exit from the guest wrote it since).
pub fn exit_pstate() -> u64 {
    SPSR_EL2.get()
}

/// The virtual interface's state after an exit ([`save`]).
pub struct GicExit {
    /// The list registers that still hold an interrupt (bit n: list
    /// register n; the others are zero in the saved state).
    pub lrs: u16,
    /// ICH_EISR_EL2.
    pub eisr: u64,
}

fn save_gic(s: &mut VcpuState) -> GicExit {
    let g = &mut s.gic;
    // SAFETY: reading ICH_EISR_EL2 has no side effects.
    let eisr = unsafe {
        let v: u64;
        asm!("mrs {}, S3_4_C12_C11_3", out(reg) v, options(nomem, nostack));
        v
    };
    g.vmcr = ICH_VMCR_EL2.get();
    let aprs = APR_COUNT.load(Ordering::Relaxed);
    for i in 0..aprs {
        g.ap0r[i] = read_apr(0, i);
        g.ap1r[i] = read_apr(1, i);
    }
    // Only the list registers the entry filled can hold an interrupt; the
    // others are zero in `g` already (what the entry wrote).
    let lrs = read_lrs(&mut g.lr, live_lrs());
    g.lr_count = lr_count() as u64;
    // SAFETY: reading ICH_ELRSR_EL2 has no side effects.
    g.elrsr = unsafe {
        let v: u64;
        asm!("mrs {}, S3_4_C12_C11_5", out(reg) v, options(nomem, nostack));
        v
    };
    g.hcr &= l4_abi::vcpu::hcr::VMM_TRAPS;
    ICH_HCR_EL2.set(0);
    GicExit { lrs, eisr }
}

/// The list registers the hardware has, in a chain of tests of a mask
/// (cheaper than a loop that picks each register by its index) that ends
/// after its highest bit: bit n for list register n, only below
/// [`lr_count`].
macro_rules! lr_access {
    ($($i:literal => $reg:ident),* $(,)?) => {
        /// Reads the list registers of `mask` into `lrs`; returns those
        /// that hold an interrupt. An emptied one keeps its old fields;
        /// `lrs` shows it as zero (what the checks want of an invalid one).
        fn read_lrs(lrs: &mut [u64; MAX_LRS], mask: u16) -> u16 {
            let mut full = 0;
            $(
                if mask >> $i == 0 {
                    return full;
                }
                if mask & (1 << $i) != 0 {
                    let v = $reg.get();
                    if l4_abi::vcpu::lr::state(v) == 0 {
                        lrs[$i] = 0;
                    } else {
                        lrs[$i] = v;
                        full |= 1 << $i;
                    }
                }
            )*
            full
        }
        /// Writes the list registers of `mask` from `lrs`.
        #[inline(always)]
        fn write_lrs(lrs: &[u64; MAX_LRS], mask: u16) {
            $(
                if mask >> $i == 0 {
                    return;
                }
                if mask & (1 << $i) != 0 {
                    $reg.set(lrs[$i]);
                }
            )*
        }
    };
}

lr_access! {
    0 => ICH_LR0_EL2, 1 => ICH_LR1_EL2, 2 => ICH_LR2_EL2, 3 => ICH_LR3_EL2,
    4 => ICH_LR4_EL2, 5 => ICH_LR5_EL2, 6 => ICH_LR6_EL2, 7 => ICH_LR7_EL2,
    8 => ICH_LR8_EL2, 9 => ICH_LR9_EL2, 10 => ICH_LR10_EL2, 11 => ICH_LR11_EL2,
    12 => ICH_LR12_EL2, 13 => ICH_LR13_EL2, 14 => ICH_LR14_EL2, 15 => ICH_LR15_EL2,
}

fn read_apr(group: u8, i: usize) -> u64 {
    match (group, i) {
        (0, 0) => ICH_AP0R0_EL2.get(),
        (0, 1) => ICH_AP0R1_EL2.get(),
        (0, 2) => ICH_AP0R2_EL2.get(),
        (0, 3) => ICH_AP0R3_EL2.get(),
        (_, 0) => ICH_AP1R0_EL2.get(),
        (_, 1) => ICH_AP1R1_EL2.get(),
        (_, 2) => ICH_AP1R2_EL2.get(),
        _ => ICH_AP1R3_EL2.get(),
    }
}

fn write_apr(group: u8, i: usize, v: u64) {
    match (group, i) {
        (0, 0) => ICH_AP0R0_EL2.set(v),
        (0, 1) => ICH_AP0R1_EL2.set(v),
        (0, 2) => ICH_AP0R2_EL2.set(v),
        (0, 3) => ICH_AP0R3_EL2.set(v),
        (_, 0) => ICH_AP1R0_EL2.set(v),
        (_, 1) => ICH_AP1R1_EL2.set(v),
        (_, 2) => ICH_AP1R2_EL2.set(v),
        _ => ICH_AP1R3_EL2.set(v),
    }
}

/// Runs `f` with the TLB maintenance context of a guest: HCR_EL2.TGE
/// clear (so EL1 TLB instructions name the EL1&0 regime, not the host's)
/// and VTTBR_EL2 carrying `vmid`. IRQs are masked.
fn with_guest_tlb_context(vmid: u16, f: impl FnOnce()) {
    let hcr = HCR_EL2.get();
    let vttbr = VTTBR_EL2.get();
    VTTBR_EL2.set(u64::from(vmid) << 48);
    HCR_EL2.set(hcr & !(1 << 27));
    // SAFETY: synchronises the context change before the TLB operations.
    unsafe { asm!("isb", options(nomem, nostack)) };
    f();
    HCR_EL2.set(hcr);
    VTTBR_EL2.set(vttbr);
    // SAFETY: back to the host's context before anything is translated.
    unsafe { asm!("isb", options(nomem, nostack)) };
}

/// Drops the TLB entries of the stage-2 leaf (page or block) at
/// guest-physical `ipa` of VMID `vmid` on every CPU, and the guest's
/// combined stage-1 entries (which may have been built from it).
pub fn tlb_flush_ipa(vmid: u16, ipa: u64) {
    with_guest_tlb_context(vmid, || {
        // SAFETY: TLB maintenance only.
        unsafe {
            asm!("dsb ishst", "tlbi ipas2e1is, {}", in(reg) (ipa >> 12) & 0xf_ffff_ffff, options(nostack))
        };
        // SAFETY: TLB maintenance and barriers only.
        unsafe { asm!("dsb ish", "tlbi vmalle1is", "dsb ish", options(nostack)) };
    });
}

/// Drops every TLB entry of VMID `vmid` (a Vm is deleted, its VMID freed).
pub fn tlb_flush_vmid(vmid: u16) {
    with_guest_tlb_context(vmid, || {
        // SAFETY: TLB maintenance and barriers only.
        unsafe {
            asm!(
                "dsb ishst",
                "tlbi vmalls12e1is",
                "dsb ish",
                options(nostack)
            )
        };
    });
}

/// CPTR_EL2 for the guest's entry: FP/SIMD untrapped (the kernel loads
/// the guest's registers before every entry; the host's value comes back
/// right after the exit), trace and activity monitors trapped
/// ([`GuestTraps::cptr`]).
pub fn guest_fp() {
    let fpen: u64 = 0b11;
    let cptr = fpen << 20 | GUEST_CPTR.load(Ordering::Relaxed);
    // SAFETY: only changes FP/SIMD, trace and activity-monitor trapping
    // for the guest; see above.
    unsafe { asm!("msr cptr_el2, {}", in(reg) cptr, options(nomem, nostack, preserves_flags)) };
}

/// Drops this CPU's TLB entries of VMID `vmid` (a vCPU came from another
/// CPU: what its guest invalidated there with local TLB operations may
/// still be cached here).
pub fn tlb_flush_vmid_local(vmid: u16) {
    with_guest_tlb_context(vmid, || {
        // SAFETY: TLB maintenance and barriers only.
        unsafe { asm!("dsb nshst", "tlbi vmalls12e1", "dsb nsh", options(nostack)) };
    });
}

/// Reads an ID register of the group TID3 traps (op0 3, op1 0, CRn 0,
/// `crm` 1..=7, `op2`) by its encoding. Unallocated encodings of this
/// space read as zero, so every one may be read.
fn read_id(crm: u32, op2: u32) -> u64 {
    macro_rules! id {
        ($($crm:literal, $op2:literal => $name:literal),* $(,)?) => {
            match (crm, op2) {
                $(($crm, $op2) => mrs!($name),)*
                _ => 0,
            }
        };
    }
    id! {
        4, 0 => "S3_0_C0_C4_0", 4, 1 => "S3_0_C0_C4_1", 4, 2 => "S3_0_C0_C4_2",
        5, 0 => "S3_0_C0_C5_0", 5, 1 => "S3_0_C0_C5_1", 5, 4 => "S3_0_C0_C5_4",
        5, 5 => "S3_0_C0_C5_5",
        6, 0 => "S3_0_C0_C6_0", 6, 1 => "S3_0_C0_C6_1", 6, 2 => "S3_0_C0_C6_2",
        6, 3 => "S3_0_C0_C6_3",
        7, 0 => "S3_0_C0_C7_0", 7, 1 => "S3_0_C0_C7_1", 7, 2 => "S3_0_C0_C7_2",
        7, 3 => "S3_0_C0_C7_3", 7, 4 => "S3_0_C0_C7_4",
    }
}

/// Clears the 4-bit ID fields at `shifts` of `v`.
const fn without(v: u64, shifts: &[u32]) -> u64 {
    let mut v = v;
    let mut i = 0;
    while i < shifts.len() {
        v &= !(0xf << shifts[i]);
        i += 1;
    }
    v
}

/// What a guest reads from the ID register `encoding` (as
/// [`l4_abi::vcpu::sysreg_encoding`] packs it; op0 3, op1 0, CRn 0, CRm
/// 1..=7): the CPU's value without what the kernel does not give guests
/// (EL2 and EL3, SME, MTE, AMU, MPAM, the PMU, statistical profiling,
/// trace, nested virtualisation, VHE; pointer authentication and SVE are
/// given, their state switched); AArch32 ID registers read as zero
/// (guests run AArch64 only). `None` outside that space.
pub fn id_register(encoding: u32) -> Option<u64> {
    let (op0, op1, crn) = (encoding >> 14, (encoding >> 11) & 7, (encoding >> 7) & 0xf);
    let (crm, op2) = ((encoding >> 3) & 0xf, encoding & 7);
    if (op0, op1, crn) != (3, 0, 0) || !(1..=7).contains(&crm) {
        return None;
    }
    let v = read_id(crm, op2);
    Some(match (crm, op2) {
        // ID_AA64PFR0: EL2 8, EL3 12, SEL2 36, MPAM 40, AMU 44, RME 52;
        // SVE 32 where guests get it.
        (4, 0) if sve_vl() != 0 => without(v, &[8, 12, 36, 40, 44, 52]),
        (4, 0) => without(v, &[8, 12, 32, 36, 40, 44, 52]),
        // ID_AA64PFR1: MTE 8, SME 24, NMI 36, GCS 44.
        (4, 1) => without(v, &[8, 24, 36, 44]),
        // ID_AA64ZFR0 (the SVE features) where guests get SVE, and
        // ID_AA64SMFR0.
        (4, 4) if sve_vl() != 0 => v,
        (4, 4) | (4, 5) => 0,
        // ID_AA64DFR0: PMUVer 8, TraceVer 4, PMSVer 32, TraceFilt 40,
        // TraceBuffer 44, BRBE 52.
        (5, 0) => without(v, &[4, 8, 32, 40, 44, 52]),
        // ID_AA64MMFR1: VH 8, LO 16. ID_AA64MMFR2: NV 24.
        (7, 1) => without(v, &[8, 16]),
        (7, 2) => without(v, &[24]),
        (1..=3, _) => 0,
        _ => v,
    })
}

/// The ID registers that say what tasks may execute at EL0, reduced to
/// that ([`l4_abi::cpuid`]); the root task finds them in its boot info.
pub fn task_cpu_id() -> l4_abi::cpuid::CpuId {
    l4_abi::cpuid::CpuId::for_tasks(read_id(6, 0), read_id(6, 1), read_id(4, 0))
}

/// Whether a WFx exit is a WFI (else WFE).
pub fn is_wfi(esr: u64) -> bool {
    esr & 1 == 0
}

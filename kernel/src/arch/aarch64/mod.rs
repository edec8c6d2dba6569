//! AArch64 at EL2 with VHE: CPU set-up, exceptions, timer, PSCI.

mod trap;
pub mod vcpu;

pub use trap::{CallRegs, TrapFrame, dump as trap_dump};

use core::arch::asm;

// System registers go through `aarch64-cpu`; these two macros serve the
// few it does not describe (the PMU's, CNTHP_TVAL_EL2, TTBR1_EL2).
macro_rules! read_sysreg {
    ($name:tt) => {{
        let v: u64;
        // SAFETY: reading this system register has no side effects.
        unsafe { core::arch::asm!(concat!("mrs {}, ", $name), out(reg) v, options(nomem, nostack, preserves_flags)) };
        v
    }};
}

macro_rules! write_sysreg {
    ($name:tt, $v:expr) => {{
        let v: u64 = $v;
        // SAFETY: the callers below write values valid for the register.
        unsafe { asm!(concat!("msr ", $name, ", {}"), "isb", in(reg) v, options(nostack, preserves_flags)) };
    }};
}

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::{
    CNTFRQ_EL0, CNTHCTL_EL2, CNTHP_CTL_EL2, CNTPCT_EL0, CPTR_EL2, FAR_EL2, HCR_EL2, MAIR_EL2,
    MDCR_EL2, MDSCR_EL1, MIDR_EL1, MPIDR_EL1, Readable, SCTLR_EL2, TCR_EL2, TPIDR_EL0, TPIDR_EL2,
    TPIDRRO_EL0, TTBR0_EL2, Writeable,
};

/// Bits of registers in their VHE layout (`HCR_EL2.E2H = 1`), which
/// `aarch64-cpu` does not describe (it has the non-VHE one).
mod vhe {
    /// TCR_EL2.AS: 16-bit ASIDs.
    pub const TCR_AS: u64 = 1 << 36;
    /// CNTHCTL_EL2.EL0PCTEN and EL0VCTEN: EL0 reads both counters.
    pub const CNTHCTL_EL0_COUNTERS: u64 = 0b11;
    /// CPTR_EL2.FPEN (bits 20-21): 0b11 no trap, 0b01 traps EL0 only.
    pub const CPTR_FPEN_SHIFT: u64 = 20;
}

// One block, so that the macros of regs.S serve both files.
core::arch::global_asm!(
    include_str!("regs.S"),
    include_str!("entry.S"),
    include_str!("switch.S"),
    frame_size = const core::mem::size_of::<TrapFrame>(),
    kernel_stack_size = const KERNEL_STACK_SIZE,
    svc_native = const l4_abi::SVC_NATIVE,
    x8_ipc = const l4_abi::sys::X8_IPC,
);
// memcpy and memmove (faster than compiler_builtins' generic ones).
core::arch::global_asm!(include_str!("mem.S"));

unsafe extern "C" {
    /// mem.S: memcpy under a name the compiler does not know.
    fn copy_shared(dst: *mut u8, src: *const u8, n: usize) -> *mut u8;
}

/// Copies the `T` at `src`, which user space may change meanwhile (a part
/// of a vCPU's state area), into `dst`: one pass over it through an
/// opaque call, so the compiler neither reads the source again later nor
/// splits the copy into single fields, as it does for a volatile read of
/// a large struct.
///
/// # Safety
///
/// `src` must be valid for reads of `size_of::<T>()` bytes, and every bit
/// pattern must be a valid `T`.
pub unsafe fn read_shared<T: Copy>(dst: &mut T, src: *const T) {
    // SAFETY: the caller vouches for `src`; `dst` is a reference to a
    // distinct `T`, which the copy overwrites fully (any bit pattern is a
    // valid `T`).
    unsafe {
        copy_shared(
            (dst as *mut T).cast(),
            src.cast(),
            core::mem::size_of::<T>(),
        );
    }
}

/// Callee-saved registers and the kernel stack pointer of a thread that is
/// not running (layout fixed by switch.S).
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct KContext {
    pub x19_x29: [u64; 11],
    pub lr: u64,
    pub sp: u64,
}

/// FP/SIMD registers of a user thread (layout fixed by switch.S).
#[repr(C, align(16))]
#[derive(Clone, Copy, Debug, Default)]
pub struct FpState {
    pub q: [u128; 32],
    pub fpcr: u64,
    pub fpsr: u64,
}

const _: () = assert!(core::mem::size_of::<KContext>() == 104);
const _: () = assert!(core::mem::size_of::<FpState>() == 528);

mod switch {
    unsafe extern "C" {
        pub fn switch_context(from: *mut super::KContext, to: *const super::KContext);
        pub fn thread_first_entry();
        pub fn fp_save(state: *mut super::FpState);
        pub fn fp_restore(state: *const super::FpState);
        pub fn sve_save(state: *mut u8);
        pub fn sve_restore(state: *const u8);
        pub fn sve_vl() -> usize;
    }
}

/// Saves the current kernel context in `from` and continues with `to`.
///
/// # Safety
/// Both point to live contexts; `to` was saved by an earlier switch or set
/// up for a new thread (stack and `thread_first_entry`), and its stack
/// stays allocated while it runs.
pub unsafe fn switch_context(from: *mut KContext, to: *const KContext) {
    // SAFETY: the caller's contract.
    unsafe { switch::switch_context(from, to) }
}

pub fn thread_first_entry_va() -> u64 {
    switch::thread_first_entry as *const () as u64
}

pub fn fp_save(state: &mut FpState) {
    // SAFETY: writes exactly one FpState; the kernel itself never uses
    // FP/SIMD registers (soft-float build), so they hold the user's state.
    unsafe { switch::fp_save(state) }
}

pub fn fp_restore(state: &FpState) {
    // SAFETY: reads exactly one FpState into the FP/SIMD registers, which
    // only user code uses.
    unsafe { switch::fp_restore(state) }
}

/// A guest's SVE registers (z0-z31, p0-p15, FFR, fpcr, fpsr; layout fixed
/// by switch.S) at the vector length guests get ([`vcpu::sve_vl`]).
pub struct SveState(alloc::vec::Vec<u8>);

impl SveState {
    /// Zeroed state, or `None` when guests get no SVE.
    pub fn new() -> Option<SveState> {
        let vl = vcpu::sve_vl();
        (vl != 0).then(|| SveState(alloc::vec![0; 32 * vl + 17 * (vl / 8) + 16]))
    }
}

/// Saves the guest's SVE registers into `state`.
pub fn sve_save(state: &mut SveState) {
    // SAFETY: the buffer was sized for the vector length EL2 runs with,
    // which `vcpu::cpu_init` set once; the kernel never uses SVE itself,
    // so the registers hold the guest's. EL2 may execute SVE (HOST_ZEN).
    unsafe { switch::sve_save(state.0.as_mut_ptr()) }
}

/// Loads the guest's SVE registers from `state`.
pub fn sve_restore(state: &SveState) {
    // SAFETY: as for `sve_save`, reading the buffer.
    unsafe { switch::sve_restore(state.0.as_ptr()) }
}

/// The vector length (bytes) EL2 runs with: ZCR_EL2's, once set.
fn sve_vl_el2() -> usize {
    // SAFETY: RDVL only reads the vector length; EL2 may execute SVE once
    // HOST_ZEN is set, which the caller did.
    unsafe { switch::sve_vl() }
}

/// CPTR_EL2 ZEN of the host: 0b01 (EL0 traps, EL2 may execute SVE to
/// switch guests' registers) where guests get SVE, else 0.
static HOST_ZEN: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// The user thread-pointer registers: TPIDR_EL0 (user-writable TLS) and
/// TPIDRRO_EL0 (the UTCB address). Only EL0 reads them, after the
/// exception return, which synchronises: no barrier needed.
#[inline(always)]
pub fn set_tls(tpidr: u64, tpidrro: u64) {
    TPIDR_EL0.set(tpidr);
    TPIDRRO_EL0.set(tpidrro);
}

/// CPTR_EL2 (VHE layout) FPEN: 0b11 lets EL0 use FP/SIMD, 0b01 traps its
/// first use (EC 0x07) so the kernel can load the thread's registers
/// lazily. EL2 itself is never trapped. The exception return to EL0
/// synchronises the change.
#[inline(always)]
pub fn fp_access(enabled: bool) {
    let fpen: u64 = if enabled { 0b11 } else { 0b01 };
    let zen = HOST_ZEN.load(core::sync::atomic::Ordering::Relaxed);
    CPTR_EL2.set(fpen << vhe::CPTR_FPEN_SHIFT | zen);
}

#[inline(always)]
pub fn tpidr_el0() -> u64 {
    TPIDR_EL0.get()
}

/// Drops the TLB entries of one user page.
pub fn tlb_flush_page(va: u64, asid: u16) {
    let arg = ((va >> 12) & 0xfff_ffff_ffff) | (u64::from(asid) << 48);
    // SAFETY: TLB maintenance only.
    unsafe {
        asm!("dsb ishst", "tlbi vae1is, {}", "dsb ish", "isb", in(reg) arg, options(nostack))
    };
}

/// Drops every TLB entry of an ASID.
pub fn tlb_flush_asid(asid: u16) {
    // SAFETY: TLB maintenance only.
    unsafe {
        asm!("dsb ishst", "tlbi aside1is, {}", "dsb ish", "isb", in(reg) u64::from(asid) << 48, options(nostack))
    };
}

/// Waits until `a` holds `v` (acquire ordering), sleeping in `wfe`
/// meanwhile. The load is exclusive, so the store that changes `a` clears
/// this CPU's exclusive monitor, which is an event that ends the `wfe`:
/// the writer needs no `sev`.
pub fn wait_until_eq(a: &core::sync::atomic::AtomicU32, v: u32) {
    while !wait_turns_until_eq(a, v, u32::MAX) {}
}

/// [`wait_until_eq`] for at most `turns` wake-ups from `wfe`; whether `a`
/// came to hold `v`. Under QEMU `wfe` is a yield, so a turn is short.
pub fn wait_turns_until_eq(a: &core::sync::atomic::AtomicU32, v: u32, turns: u32) -> bool {
    for _ in 0..turns {
        let now: u32;
        // SAFETY: an exclusive load of a valid, aligned atomic; the open
        // exclusive reservation has no effect but to deliver the event.
        unsafe {
            asm!("ldaxr {0:w}, [{1}]", out(reg) now, in(reg) a.as_ptr(), options(nostack, readonly))
        };
        if now == v {
            return true;
        }
        // SAFETY: wfe only waits.
        unsafe { asm!("wfe", options(nomem, nostack)) };
    }
    false
}

/// One turn of a polling loop: `yield`, which tells the hardware (and an
/// emulator that runs all CPUs on one host thread, which then runs the
/// others) that this CPU only waits. `core::hint::spin_loop` is an `isb`
/// here, which an emulator runs as one more instruction.
pub fn cpu_relax() {
    // SAFETY: yield is a hint with no effect on state.
    unsafe { asm!("yield", options(nomem, nostack)) };
}

pub fn wait_for_interrupt() {
    // SAFETY: wfi waits for an interrupt.
    unsafe { asm!("wfi", options(nomem, nostack)) };
}

/// The exception-message register state of a thread.
pub fn exc_regs(f: &TrapFrame, esr: u64, far: u64, utcb: u64) -> l4_abi::fault::ExcRegs {
    l4_abi::fault::ExcRegs {
        eret_work: 0,
        x: f.x,
        reserved: 0,
        err: esr,
        pfa: far,
        sp: f.sp_el0,
        pc: f.elr,
        pstate: f.spsr,
        tpidruro: utcb,
        tpidrurw: tpidr_el0(),
    }
}

/// Sets a thread's registers from an exception handler's reply (only the
/// condition flags of pstate).
pub fn set_user_regs(f: &mut TrapFrame, r: &l4_abi::fault::ExcRegs) {
    f.x = r.x;
    f.sp_el0 = r.sp;
    f.elr = r.pc;
    f.spsr = (f.spsr & !0xf000_0000) | (r.pstate & 0xf000_0000);
}

pub const MAX_CPUS: usize = l4_bootinfo::MAX_CPUS;
/// The boot stacks of the CPUs (entry.S sets up CPU 0's).
pub const KERNEL_STACK_SIZE: usize = 0x8000;

#[repr(C, align(16))]
pub struct Stacks(core::cell::UnsafeCell<[[u8; KERNEL_STACK_SIZE]; MAX_CPUS]>);

// SAFETY: Rust code never reads or writes the stacks as data: each is the
// memory of one CPU's stack pointer (entry.S, secondary_entry).
unsafe impl Sync for Stacks {}

/// Per-CPU kernel stacks (entry.S uses the first for the boot CPU).
#[unsafe(no_mangle)]
pub static KERNEL_STACKS: Stacks = Stacks(core::cell::UnsafeCell::new(
    [[0; KERNEL_STACK_SIZE]; MAX_CPUS],
));

pub fn stack_top(cpu: usize) -> u64 {
    let base = KERNEL_STACKS.0.get() as u64;
    base + ((cpu + 1) * KERNEL_STACK_SIZE) as u64
}

/// Per-CPU register set-up: CPU index in TPIDR_EL2, FP/SIMD usable by user
/// threads, EL0 access to the virtual counter.
pub fn cpu_init(cpu: usize) {
    TPIDR_EL2.set(cpu as u64);
    // FP/SIMD: the first use by a thread traps (see crate::fp).
    fp_access(false);
    ASID16.store(
        TCR_EL2.get() & vhe::TCR_AS != 0,
        core::sync::atomic::Ordering::Relaxed,
    );
    CNTHCTL_EL2.set(vhe::CNTHCTL_EL0_COUNTERS);
    MDSCR_EL1.set(HOST_MDSCR);
    barrier::isb(barrier::SY);
    pmu_init();
    amu_init();
    vcpu::cpu_init();
}

/// Activity monitors (FEAT_AMU; QEMU 7.2 has none): their counters are
/// one set per CPU, which the kernel does not switch, and
/// AMUSERENR_EL0 resets to an UNKNOWN value: EL0 gets no access
/// (EN clear), so a task that tries gets an exception for its handler.
fn amu_init() {
    let pfr0 = read_sysreg!("id_aa64pfr0_el1");
    if (pfr0 >> 44) & 0xf != 0 {
        write_sysreg!("S3_3_C13_C2_3", 0); // AMUSERENR_EL0
    }
}

/// MDSCR_EL1 while the host runs: no debug exceptions, and EL0's accesses
/// to the debug communication channel (one per CPU, which the kernel does
/// not switch between threads) trap (TDCC).
pub const HOST_MDSCR: u64 = 1 << 12;

/// The cycle counter for benchmarks: running, counting at EL2 too
/// (PMCCFILTR_EL0.NSH), readable from EL0 (PMUSERENR_EL0.CR), and all
/// event counters left to EL0/EL1 (MDCR_EL2.HPMN = PMCR_EL0.N). Under
/// `-icount shift=0` it counts instructions exactly. Anything else of the
/// PMU traps at EL0 (PMUSERENR_EL0.EN clear): the counters and their
/// configuration are one set per CPU, which the kernel does not switch,
/// so a task could stop them or count another's events.
fn pmu_init() {
    let n = (read_sysreg!("pmcr_el0") >> 11) & 0x1f;
    MDCR_EL2.write(MDCR_EL2::HPMN.val(n));
    barrier::isb(barrier::SY);
    write_sysreg!("pmccfiltr_el0", 1 << 27);
    write_sysreg!("pmcntenset_el0", 1 << 31);
    write_sysreg!("pmuserenr_el0", 0b100);
    // PMCR_EL0: E (enable), LC (64-bit cycle counter), C (reset it).
    write_sysreg!("pmcr_el0", (1 << 0) | (1 << 2) | (1 << 6));
}

/// The faulting address of the current synchronous exception (FAR_EL2).
pub fn fault_address() -> u64 {
    FAR_EL2.get()
}

/// This CPU's index (below [`MAX_CPUS`], which lets per-CPU arrays be
/// indexed without a bounds check).
pub fn cpu_id() -> usize {
    TPIDR_EL2.get() as usize % MAX_CPUS
}

/// MIDR_EL1: who made this CPU, and which one it is.
pub fn midr() -> u64 {
    MIDR_EL1.get()
}

/// The MPIDR affinity of this CPU (Aff3..Aff0).
pub fn mpidr() -> u64 {
    MPIDR_EL1.get() & 0xff_00ff_ffff
}

pub fn irq_enable() {
    // SAFETY: unmasking IRQs at EL2; the vectors are installed.
    unsafe { asm!("msr daifclr, #2", "isb", options(nomem, nostack)) };
}

pub fn irq_disable() {
    // SAFETY: masking IRQs is always allowed.
    unsafe { asm!("msr daifset, #2", options(nomem, nostack)) };
}

pub fn halt() -> ! {
    irq_disable();
    loop {
        // SAFETY: wfe waits for an event.
        unsafe { asm!("wfe", options(nomem, nostack)) };
    }
}

#[inline(always)]
pub fn counter() -> u64 {
    CNTPCT_EL0.get()
}

pub fn counter_freq() -> u64 {
    CNTFRQ_EL0.get()
}

pub fn micros_since(start: u64) -> u64 {
    counter().saturating_sub(start) * 1_000_000 / counter_freq().max(1)
}

/// Timer tick period in microseconds.
pub const TICK_US: u64 = 10_000;

static TIMER_IRQ: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

/// The EL2 physical timer (CNTHP) drives the tick on every CPU.
pub fn timer_init(intid: u32) {
    TIMER_IRQ.store(intid, core::sync::atomic::Ordering::Relaxed);
    timer_start();
}

pub fn timer_irq() -> u32 {
    TIMER_IRQ.load(core::sync::atomic::Ordering::Relaxed)
}

pub fn timer_start() {
    crate::platform::gic::enable_private(timer_irq());
    timer_rearm();
    timer_enable(true);
}

/// The tick period in counter ticks.
pub fn tick_period() -> u64 {
    counter_freq() * TICK_US / 1_000_000
}

/// Stops this CPU's timer (an idle CPU that other CPUs wake by IPI).
pub fn timer_pause() {
    if CNTHP_CTL_EL2.is_set(CNTHP_CTL_EL2::ENABLE) {
        timer_enable(false);
    }
}

/// Arms this CPU's timer to fire when the counter reaches `at` (at once
/// if it has already). Registers that already say so are not written: an
/// emulator re-arms a host timer on each write (QEMU's TCG also wakes its
/// main loop when that timer becomes its earliest).
pub fn timer_arm_at(at: u64) {
    if read_sysreg!("cnthp_cval_el2") != at {
        write_sysreg!("cnthp_cval_el2", at);
    }
    if !CNTHP_CTL_EL2.is_set(CNTHP_CTL_EL2::ENABLE) {
        timer_enable(true);
    }
}

/// When this CPU's timer fires next, if it is on.
pub fn timer_armed_at() -> Option<u64> {
    CNTHP_CTL_EL2
        .is_set(CNTHP_CTL_EL2::ENABLE)
        .then(|| read_sysreg!("cnthp_cval_el2"))
}

fn timer_enable(on: bool) {
    CNTHP_CTL_EL2.write(if on {
        CNTHP_CTL_EL2::ENABLE::SET
    } else {
        CNTHP_CTL_EL2::ENABLE::CLEAR
    });
    barrier::isb(barrier::SY);
}

fn timer_rearm() {
    write_sysreg!("cnthp_tval_el2", tick_period());
}

/// PSCI conduit as the device tree names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conduit {
    Smc,
    Hvc,
}

/// A PSCI call with up to three arguments.
pub fn psci_call(conduit: Conduit, fid: u32, a1: u64, a2: u64, a3: u64) -> i64 {
    let ret: i64;
    // SAFETY: PSCI calls are handled by firmware (QEMU) and only change the
    // power state of other CPUs or the system, as asked.
    unsafe {
        match conduit {
            Conduit::Smc => {
                asm!("smc #0", inout("x0") fid as u64 => ret, inout("x1") a1 => _, inout("x2") a2 => _,
                inout("x3") a3 => _, options(nostack))
            }
            Conduit::Hvc => {
                asm!("hvc #0", inout("x0") fid as u64 => ret, inout("x1") a1 => _, inout("x2") a2 => _,
                inout("x3") a3 => _, options(nostack))
            }
        }
    }
    ret
}

/// Whether the TLB tags entries with 16-bit ASIDs (TCR_EL2.AS).
static ASID16: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Installs a user address space: `ttbr` is the TTBR0_EL2 value, the
/// translation-table root with the ASID in bits 48-63. ASIDs are never
/// reused and page-table changes invalidate what they replace, so the TLB
/// may keep other spaces' entries; only with 8-bit ASIDs, where our 16-bit
/// numbers alias, the entries of this ASID are dropped.
///
/// # Safety
/// `ttbr` is the root of a user translation-table tree (a task's, which
/// maps only what the task was given) with its ASID, and that tree stays
/// allocated while any CPU may use it.
#[inline(always)]
pub unsafe fn set_user_space(ttbr: u64) {
    TTBR0_EL2.set(ttbr);
    barrier::isb(barrier::SY);
    if !ASID16.load(core::sync::atomic::Ordering::Relaxed) {
        // SAFETY: TLB maintenance for the new ASID; barriers only.
        unsafe {
            asm!("tlbi aside1, {}", "dsb ish", "isb", in(reg) ttbr & (0xffff << 48), options(nostack))
        };
    }
}

/// Makes new kernel mappings visible (no entries were valid before).
pub fn mapping_barrier() {
    // SAFETY: barriers only.
    unsafe { asm!("dsb ishst", "isb", options(nostack)) };
}

/// The register values this CPU runs the kernel with, for secondaries.
pub fn boot_regs(idmap: u64) -> [u64; 6] {
    [
        HCR_EL2.get(),
        MAIR_EL2.get(),
        TCR_EL2.get(),
        idmap,
        read_sysreg!("S3_4_C2_C0_1"), // TTBR1_EL2
        SCTLR_EL2.get(),
    ]
}

unsafe extern "C" {
    fn secondary_entry();
}

/// Virtual address of the secondary CPUs' entry point.
pub fn secondary_entry_va() -> u64 {
    secondary_entry as *const () as u64
}

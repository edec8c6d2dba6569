//! The guest: start-up, the devices it touches, the measurements.
//!
//! The VM is the one `conf/virt-arm_virt.dtb` describes (uvmm's PL011 at
//! 0x9000000, GICv3 distributor at 0x8000000 and redistributors from
//! 0x80a0000, PSCI over HVC). Each operation runs [`ROUNDS`] times after a
//! warm-up; the loop with an empty operation is timed the same way and
//! taken off. What one operation includes:
//!
//! * **MMIO read**: a load from the virtio console's `InterruptStatus`
//!   register (what a virtio driver reads on each of the device's
//!   interrupts): stage-2 data abort to the kernel, exit to uvmm's vCPU
//!   thread, uvmm's MMIO bus and virtio-mmio model, back into the guest
//!   past the load. (The PL011's registers are no measure: the guest reads
//!   them from uvmm's mirror page without an exit.)
//! * **HVC**: `PSCI_VERSION`: HVC exit to the kernel, exit to uvmm, its
//!   PSCI emulation, back into the guest.
//! * **SGI to itself, injected by uvmm**: a write of `ICC_SGI1R_EL1`
//!   (trapped to the kernel, exit to uvmm, which makes the SGI pending in
//!   its GIC model and puts it into a list register), back into the guest,
//!   which takes the interrupt at once: IRQ exception, acknowledge
//!   (`ICC_IAR1_EL1`), end (`ICC_EOIR1_EL1`), return; both at the GIC's
//!   virtual CPU interface, without exits.
//! * **virtual timer, injected by the kernel**: with IRQs masked, arm the
//!   virtual timer already expired and execute WFI: the WFI exit to the
//!   kernel (and the timer's interrupt at EL2, when it comes first), which
//!   sees the timer fired and injects PPI 27 into a list register without
//!   uvmm; back in the guest, unmask and take the interrupt as above (its
//!   handler disarms the timer).

use core::arch::{asm, global_asm};
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU64, Ordering};

use vmbench::{DONE, Measurement, PREFIX, per_round_ns};

/// Timed operations per measurement.
const ROUNDS: u64 = 2_000;
/// Untimed operations before (the emulator translates code, the first
/// accesses fault pages in).
const WARM_UP: u64 = 50;
/// Polls for an interrupt before it counts as lost.
const IRQ_WAIT_POLLS: u64 = 1_000_000;

/// The PL011 of uvmm.
const PL011: usize = 0x0900_0000;
const PL011_DR: usize = PL011;
const PL011_FR: usize = PL011 + 0x18;
const FR_TXFF: u32 = 1 << 5;

/// GICv3 distributor and the first redistributor.
const GICD: usize = 0x0800_0000;
const GICD_CTLR_ENABLE_GRP1: u32 = 1 << 1;

/// The virtio console (`virtio_uart@20000` under the `l4vmm` node at
/// 0x30000000) and its `InterruptStatus` register.
const VIRTIO_CONSOLE: usize = 0x3002_0000;
const VIRTIO_INTERRUPT_STATUS: usize = 0x60;
const GICR: usize = 0x080a_0000;
const GICR_STRIDE: usize = 0x2_0000;
const GICR_TYPER: usize = 0x08;
const GICR_TYPER_LAST: u64 = 1 << 4;
const GICR_WAKER: usize = 0x14;
const GICR_SGI_FRAME: usize = 0x1_0000;
const GICR_IGROUPR0: usize = GICR_SGI_FRAME + 0x80;
const GICR_ISENABLER0: usize = GICR_SGI_FRAME + 0x100;

/// The SGI the guest sends itself.
const SGI: u64 = 1;
/// The virtual timer's PPI.
const VTIMER_PPI: u64 = 27;

/// PSCI function IDs (SMC32 calling convention).
const PSCI_VERSION: u64 = 0x8400_0000;
const PSCI_SYSTEM_OFF: u64 = 0x8400_0008;

global_asm!(
    r#"
    .section .text.start, "ax"
    .global _start
_start:
    ldr     x1, =__stack_top
    mov     sp, x1
    // FP/SIMD at EL1 and EL0 (the target's code may use it).
    mov     x1, #(3 << 20)
    msr     cpacr_el1, x1
    ldr     x1, =vmbench_vectors
    msr     vbar_el1, x1
    isb
    ldr     x1, =__bss_start
    ldr     x2, =__bss_end
1:  cmp     x1, x2
    b.hs    2f
    str     xzr, [x1], #8
    b       1b
2:  bl      vmbench_main
3:  wfe
    b       3b

    // Exception vectors: IRQs from EL1 with SP_EL1 go to the handler,
    // everything else is unexpected (its vector offset in x0).
    .section .text.vectors, "ax"
    .balign 0x800
vmbench_vectors:
    .irp offset, 0x000, 0x080, 0x100, 0x180, 0x200
    .balign 0x80
    mov     x0, #\offset
    b       vmbench_unexpected_entry
    .endr
    .balign 0x80
    b       vmbench_irq
    .irp offset, 0x300, 0x380, 0x400, 0x480, 0x500, 0x580, 0x600, 0x680, 0x700, 0x780
    .balign 0x80
    mov     x0, #\offset
    b       vmbench_unexpected_entry
    .endr

vmbench_unexpected_entry:
    mrs     x1, esr_el1
    mrs     x2, elr_el1
    bl      vmbench_unexpected
    b       .

    // Acknowledge, disarm the virtual timer when it was its PPI, end,
    // count: VMBENCH_IRQS[0] += 1, VMBENCH_IRQS[1] = INTID.
vmbench_irq:
    stp     x0, x1, [sp, #-16]!
    stp     x2, x3, [sp, #-16]!
    mrs     x0, S3_0_C12_C12_0          // ICC_IAR1_EL1
    cmp     x0, #{vtimer}
    b.ne    1f
    msr     cntv_ctl_el0, xzr
    isb
1:  msr     S3_0_C12_C12_1, x0          // ICC_EOIR1_EL1
    adrp    x1, VMBENCH_IRQS
    add     x1, x1, :lo12:VMBENCH_IRQS
    ldr     x2, [x1]
    add     x2, x2, #1
    stp     x2, x0, [x1]
    ldp     x2, x3, [sp], #16
    ldp     x0, x1, [sp], #16
    eret
"#,
    vtimer = const VTIMER_PPI,
);

/// Interrupts taken, and the INTID of the last one.
#[unsafe(no_mangle)]
static VMBENCH_IRQS: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];
/// The `ICC_SGI1R_EL1` value that sends [`SGI`] to this vCPU.
static SGI_TO_SELF: AtomicU64 = AtomicU64::new(0);
/// An interrupt did not come: the INTID waited for, plus one.
static LOST_IRQ: AtomicU64 = AtomicU64::new(0);

fn read32(addr: usize) -> u32 {
    // SAFETY: `addr` is a register of a device uvmm emulates (the MMU is
    // off: device memory); a read has no effect on guest memory.
    unsafe { core::ptr::read_volatile(addr as *const u32) }
}

fn write32(addr: usize, v: u32) {
    // SAFETY: as in `read32`, a device register.
    unsafe { core::ptr::write_volatile(addr as *mut u32, v) }
}

fn read64(addr: usize) -> u64 {
    // SAFETY: as in `read32`, a device register.
    unsafe { core::ptr::read_volatile(addr as *const u64) }
}

/// The console: uvmm's PL011.
struct Uart;

impl Write for Uart {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            while read32(PL011_FR) & FR_TXFF != 0 {}
            write32(PL011_DR, u32::from(b));
        }
        Ok(())
    }
}

macro_rules! say {
    ($($arg:tt)*) => {{
        let _ = writeln!(Uart, $($arg)*);
    }};
}

/// The virtual counter.
fn counter() -> u64 {
    let v: u64;
    // SAFETY: reading the virtual counter has no side effects; the ISB
    // keeps it from being read early.
    unsafe { asm!("isb", "mrs {}, cntvct_el0", out(reg) v, options(nomem, nostack)) };
    v
}

fn counter_frequency() -> u64 {
    let v: u64;
    // SAFETY: reading CNTFRQ_EL0 has no side effects.
    unsafe { asm!("mrs {}, cntfrq_el0", out(reg) v, options(nomem, nostack)) };
    v
}

/// A PSCI call over HVC with function `id`; its `x0`.
fn psci(id: u64) -> u64 {
    let mut x0 = id;
    // SAFETY: an HVC to uvmm's PSCI (SMC calling convention: x0-x17 may
    // change); the calls used here do not touch guest memory.
    unsafe { asm!("hvc #0", inout("x0") x0, clobber_abi("C"), options(nostack)) };
    x0
}

fn power_off() -> ! {
    psci(PSCI_SYSTEM_OFF);
    loop {
        // SAFETY: waiting for an event has no effect on memory.
        unsafe { asm!("wfe", options(nomem, nostack)) };
    }
}

/// An exception the guest does not expect: say so and power off.
#[unsafe(no_mangle)]
extern "C" fn vmbench_unexpected(vector: u64, esr: u64, elr: u64) -> ! {
    say!("{PREFIX}failed: unexpected exception (vector {vector:#x}, ESR {esr:#x}, ELR {elr:#x})");
    power_off()
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    say!("{PREFIX}failed: panic: {info}");
    power_off()
}

/// The distributor, this vCPU's redistributor (found by affinity) and the
/// CPU interface: group 1 on, [`SGI`] enabled, IRQs unmasked. Returns the
/// `ICC_SGI1R_EL1` value of an SGI to this vCPU.
fn gic_init() -> Result<u64, &'static str> {
    let mpidr: u64;
    // SAFETY: reading MPIDR_EL1 has no side effects.
    unsafe { asm!("mrs {}, mpidr_el1", out(reg) mpidr, options(nomem, nostack)) };
    let aff = (mpidr & 0xff_ffff) | ((mpidr >> 32 & 0xff) << 24);
    let mut rd = GICR;
    loop {
        let typer = read64(rd + GICR_TYPER);
        if typer >> 32 == aff {
            break;
        }
        if typer & GICR_TYPER_LAST != 0 {
            return Err("no redistributor has this vCPU's affinity");
        }
        rd += GICR_STRIDE;
    }
    write32(GICD, GICD_CTLR_ENABLE_GRP1);
    write32(rd + GICR_WAKER, 0);
    write32(rd + GICR_IGROUPR0, u32::MAX);
    write32(rd + GICR_ISENABLER0, (1 << SGI) | (1 << VTIMER_PPI));
    // SAFETY: the GIC's system register interface, priority mask open,
    // group 1 on, IRQs unmasked: interrupts go to `vmbench_irq`.
    unsafe {
        asm!(
            "msr S3_0_C12_C12_5, {sre}", // ICC_SRE_EL1.SRE
            "isb",
            "msr S3_0_C4_C6_0, {pmr}",   // ICC_PMR_EL1
            "msr S3_0_C12_C12_7, {one}", // ICC_IGRPEN1_EL1
            "isb",
            "msr daifclr, #2",
            sre = in(reg) 1u64,
            pmr = in(reg) 0xffu64,
            one = in(reg) 1u64,
            options(nostack),
        )
    };
    if aff & 0xff >= 16 {
        return Err("Aff0 of this vCPU is beyond an SGI target list");
    }
    // INTID, Aff3, Aff2, Aff1, target list bit for Aff0.
    let aff0 = mpidr & 0xff;
    Ok((SGI << 24)
        | ((mpidr >> 32 & 0xff) << 48)
        | ((mpidr >> 16 & 0xff) << 32)
        | ((mpidr >> 8 & 0xff) << 16)
        | (1 << aff0))
}

/// Waits until the interrupt count passes `before` (the interrupt with
/// `intid` was taken); notes a lost one.
fn wait_irq(before: u64, intid: u64) {
    for _ in 0..IRQ_WAIT_POLLS {
        if VMBENCH_IRQS[0].load(Ordering::Relaxed) != before {
            return;
        }
    }
    LOST_IRQ.store(intid + 1, Ordering::Relaxed);
}

/// The empty operation: the loop's own cost.
fn nothing() {
    // SAFETY: an empty instruction sequence.
    unsafe { asm!("", options(nomem, nostack)) };
}

fn mmio_read() {
    read32(VIRTIO_CONSOLE + VIRTIO_INTERRUPT_STATUS);
}

fn hvc() {
    psci(PSCI_VERSION);
}

fn sgi_to_self() {
    let before = VMBENCH_IRQS[0].load(Ordering::Relaxed);
    let value = SGI_TO_SELF.load(Ordering::Relaxed);
    // SAFETY: sends an SGI to this vCPU, whose handler only counts it.
    unsafe { asm!("msr S3_0_C12_C11_5, {}", "isb", in(reg) value, options(nostack)) };
    wait_irq(before, SGI);
}

fn vtimer() {
    let before = VMBENCH_IRQS[0].load(Ordering::Relaxed);
    // SAFETY: arms the guest's own virtual timer (compare value 0: it has
    // fired) with IRQs masked, waits for its interrupt, and unmasks IRQs
    // to take it; the handler disarms the timer.
    unsafe {
        asm!(
            "msr daifset, #2",
            "msr cntv_cval_el0, xzr",
            "msr cntv_ctl_el0, {one}",
            "isb",
            "wfi",
            "msr daifclr, #2",
            "isb",
            one = in(reg) 1u64,
            options(nostack),
        )
    };
    wait_irq(before, VTIMER_PPI);
}

/// Counter ticks for `rounds` calls of `op`.
#[inline(never)]
fn time(rounds: u64, op: fn()) -> u64 {
    let op = core::hint::black_box(op);
    let start = counter();
    for _ in 0..rounds {
        op();
    }
    counter() - start
}

/// Times `op` against the empty operation and prints its line.
fn measure(what: &str, op: fn(), frequency: u64) {
    LOST_IRQ.store(0, Ordering::Relaxed);
    time(WARM_UP, op);
    time(WARM_UP, nothing);
    let ticks = time(ROUNDS, op);
    let baseline = time(ROUNDS, nothing);
    let lost = LOST_IRQ.load(Ordering::Relaxed);
    if lost != 0 {
        say!(
            "{PREFIX}{what}: failed: interrupt {} was not taken",
            lost - 1
        );
        return;
    }
    match per_round_ns(ticks, baseline, ROUNDS, frequency) {
        Some(ns) => say!(
            "{}",
            Measurement {
                what,
                rounds: ROUNDS,
                ns
            }
        ),
        None => say!("{PREFIX}{what}: failed: the counter frequency is 0"),
    }
}

#[unsafe(no_mangle)]
extern "C" fn vmbench_main() -> ! {
    let frequency = counter_frequency();
    say!("{PREFIX}guest at EL1, virtual counter at {frequency} Hz, {ROUNDS} rounds per operation");
    measure(
        "MMIO read (virtio console, InterruptStatus)",
        mmio_read,
        frequency,
    );
    measure("HVC (PSCI_VERSION)", hvc, frequency);
    match gic_init() {
        Ok(v) => {
            SGI_TO_SELF.store(v, Ordering::Relaxed);
            measure("SGI to itself, injected by uvmm", sgi_to_self, frequency);
            measure(
                "virtual timer after WFI, injected by the kernel",
                vtimer,
                frequency,
            );
        }
        Err(why) => say!("{PREFIX}interrupts: failed: {why}"),
    }
    say!("{DONE}");
    power_off()
}

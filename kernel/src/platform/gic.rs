//! Interrupts: the GICv3 (distributor and one redistributor per CPU), the
//! tick, the reschedule IPI, and hardware interrupts bound to Irq objects.

use crate::arch;
use crate::platform::Platform;
use arm_gic::gicv3::{GicCpuInterface, GicV3, SgiTarget, SgiTargetGroup};
use arm_gic::{IntId, InterruptGroup, Trigger, UniqueMmioPointer};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use kernel_core::kobj::ObjId;
use spin::Mutex;

/// Highest interrupt number we handle (GICv3 SPIs end at 1019).
const MAX_IRQS: usize = 1020;
/// SGI used to ask another CPU to reschedule.
const SGI_RESCHED: u32 = 0;
/// SGI that ends a CPU's wait for the big kernel lock ([`crate::bkl`]).
/// Taking it does nothing: the wait it ended looks at the lock itself.
const SGI_LOCK_WAKE: u32 = 1;

static GIC: Mutex<Option<GicV3<'static>>> = Mutex::new(None);
/// Number of interrupt lines the distributor implements.
static COUNT: AtomicUsize = AtomicUsize::new(32);
/// Irq object each hardware interrupt is bound to.
static OWNERS: Mutex<[Option<ObjId>; MAX_IRQS]> = Mutex::new([None; MAX_IRQS]);
/// MPIDR of each CPU, for SGIs. Written once at start; read without a
/// lock, because the big kernel lock's release sends SGIs.
static MPIDRS: [AtomicU64; arch::MAX_CPUS] = [const { AtomicU64::new(0) }; arch::MAX_CPUS];

/// Sets up the distributor and every redistributor, and this (boot) CPU's
/// interface.
pub fn init(p: &Platform) {
    // SAFETY: the device tree names these as the GIC's register blocks.
    let (gicd, gicr) = unsafe {
        (
            crate::mm::map_device(p.gicd, 0x1_0000),
            crate::mm::map_device(p.gicr, p.gicr_size.max(0x2_0000 * p.nr_cpus as u64)),
        )
    };
    // SAFETY: the device tree names these register blocks; they are mapped
    // as device memory above and used only through this driver.
    let mut gic = unsafe {
        GicV3::new(
            UniqueMmioPointer::new(NonNull::new(gicd as *mut _).unwrap()),
            NonNull::new(gicr as *mut _).unwrap(),
            p.nr_cpus,
        )
    }
    .unwrap_or_else(|e| panic!("GICv3: {e}"));
    GicCpuInterface::enable_system_register_el2(false);
    gic.setup(arch::cpu_id());
    GicCpuInterface::set_priority_mask(0xff);
    // GICD_TYPER.ITLinesNumber: 32 * (N + 1) lines.
    // SAFETY: GICD_TYPER at offset 4 of the mapped distributor, read-only.
    let typer = unsafe { core::ptr::read_volatile((gicd + 4) as *const u32) };
    COUNT.store(
        (32 * ((typer as usize & 0x1f) + 1)).min(MAX_IRQS),
        Ordering::Relaxed,
    );
    for (slot, &mpidr) in MPIDRS.iter().zip(&p.cpus[..p.nr_cpus]) {
        slot.store(mpidr, Ordering::Relaxed);
    }
    *GIC.lock() = Some(gic);
    enable_kernel_privates();
}

/// Brings up the interface and redistributor of a secondary CPU.
pub fn init_cpu(cpu: usize) {
    GicCpuInterface::enable_system_register_el2(false);
    if let Some(g) = GIC.lock().as_mut() {
        g.init_cpu(cpu);
    }
    GicCpuInterface::enable_group1(true);
    GicCpuInterface::set_priority_mask(0xff);
    enable_kernel_privates();
}

/// Enables the private interrupts the kernel takes on every CPU: its
/// SGIs and the vCPU maintenance interrupt.
fn enable_kernel_privates() {
    for intid in [
        SGI_RESCHED,
        SGI_LOCK_WAKE,
        crate::obj::vcpu::MAINTENANCE_INTID,
    ] {
        enable_private(intid);
    }
}

/// Enables a private interrupt (SGI/PPI) on the calling CPU.
pub fn enable_private(intid: u32) {
    if let Some(g) = GIC.lock().as_mut() {
        let id = if intid < 16 {
            IntId::sgi(intid)
        } else {
            IntId::ppi(intid - 16)
        };
        let cpu = Some(arch::cpu_id());
        let _ = g.set_interrupt_priority(id, cpu, 0x80);
        let _ = g.enable_interrupt(id, cpu, true);
    }
}

/// Enables or disables a PPI on the calling CPU (the virtual timer's,
/// while a guest runs).
pub fn set_private_enabled(intid: u32, on: bool) {
    if !(16..32).contains(&intid) {
        return;
    }
    if let Some(g) = GIC.lock().as_mut() {
        let id = IntId::ppi(intid - 16);
        let cpu = Some(arch::cpu_id());
        let _ = g.set_interrupt_priority(id, cpu, 0x80);
        let _ = g.enable_interrupt(id, cpu, on);
    }
}

pub fn count() -> usize {
    COUNT.load(Ordering::Relaxed)
}

pub fn owner(n: u32) -> Option<ObjId> {
    OWNERS.lock().get(n as usize).copied().flatten()
}

pub fn set_owner(n: u32, irq: Option<ObjId>) {
    if let Some(slot) = OWNERS.lock().get_mut(n as usize) {
        *slot = irq;
    }
}

/// The kernel takes the console's input interrupt itself (for the
/// debugger's escape): level-triggered, enabled, the UART raising it.
pub fn take_console_line(n: u32) {
    set_mode(n, l4_abi::proto::icu::mode::LEVEL_HIGH);
    set_enabled(n, true);
    crate::platform::console::enable_input_irq();
}

/// Unmasks or masks a shared interrupt (SPI).
pub fn set_enabled(n: u32, on: bool) {
    if n < 32 || n as usize >= count() {
        return;
    }
    if let Some(g) = GIC.lock().as_mut() {
        let id = IntId::spi(n - 32);
        let _ = g.set_interrupt_priority(id, None, 0xa0);
        let _ = g.enable_interrupt(id, None, on);
    }
}

/// Sets the trigger mode of an SPI ([`l4_abi::proto::icu::mode`]).
pub fn set_mode(n: u32, mode: u64) {
    if n < 32 || n as usize >= count() {
        return;
    }
    let trigger = if mode & l4_abi::proto::icu::mode::LEVEL != 0 {
        Trigger::Level
    } else {
        Trigger::Edge
    };
    if let Some(g) = GIC.lock().as_mut() {
        let _ = g.set_trigger(IntId::spi(n - 32), None, trigger);
    }
}

/// Asks `cpu` to look at its run queue.
pub fn send_resched_ipi(cpu: usize) {
    send_sgi(cpu, SGI_RESCHED);
}

/// Ends `cpu`'s wait for the big kernel lock (it waits in `wfi`, which a
/// pending interrupt ends even while interrupts are masked).
pub fn send_lock_wake(cpu: usize) {
    send_sgi(cpu, SGI_LOCK_WAKE);
}

fn send_sgi(cpu: usize, sgi: u32) {
    let m = MPIDRS[cpu % arch::MAX_CPUS].load(Ordering::Relaxed);
    let target = SgiTarget::List {
        affinity3: (m >> 32) as u8,
        affinity2: (m >> 16) as u8,
        affinity1: (m >> 8) as u8,
        target_list: 1 << (m & 0xf),
    };
    let _ = GicCpuInterface::send_sgi(IntId::sgi(sgi), target, SgiTargetGroup::CurrentGroup1);
}

/// Handles every pending interrupt (BKL held).
pub fn handle(k: &mut crate::state::Kernel) {
    while let Some(id) = GicCpuInterface::get_and_acknowledge_interrupt(InterruptGroup::Group1) {
        let n = id.raw_value();
        if n == arch::timer_irq() {
            crate::entry::on_tick(k);
        } else if n == SGI_RESCHED {
            crate::entry::on_resched_ipi(k);
        } else if n == SGI_LOCK_WAKE {
            // Its work was done when it ended the wait.
        } else if n == crate::obj::vcpu::MAINTENANCE_INTID {
            crate::obj::vcpu::maintenance();
        } else if n == l4_abi::vcpu::VTIMER_INTID {
            crate::obj::vcpu::vtimer();
        } else if Some(n) == crate::platform::console::input_irq() {
            // Input: into the kernel's buffer (a lone ESC enters the
            // debugger), then to the Irq bound to the Vcon, if any.
            if crate::platform::console::pump() {
                crate::entry::enter_debugger(k);
            }
            if let Some(irq) = owner(n) {
                if crate::entry::on_hw_irq(k, irq) {
                    set_enabled(n, false);
                } else {
                    // Its Irq was deleted: the line is the kernel's again.
                    set_owner(n, None);
                }
            }
        } else if let Some(irq) = owner(n) {
            // Masked until the owner unmasks it (level-triggered lines would
            // fire again at once).
            set_enabled(n, false);
            crate::entry::on_hw_irq(k, irq);
        } else {
            crate::kprintln!(
                "kernel: unexpected interrupt {} on CPU {}",
                n,
                arch::cpu_id()
            );
        }
        GicCpuInterface::end_interrupt(id, InterruptGroup::Group1);
    }
}

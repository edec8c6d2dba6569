//! Interrupts: the GICv3 (distributor and one redistributor per CPU).

use crate::platform::Platform;
use arm_gic::InterruptGroup;
use arm_gic::gicv3::{GicCpuInterface, GicV3};
use arm_gic::{IntId, UniqueMmioPointer};
use core::ptr::NonNull;
use spin::Mutex;

static GIC: Mutex<Option<GicV3<'static>>> = Mutex::new(None);

/// Sets up the distributor and every redistributor, and this (boot) CPU's
/// interface.
pub fn init(p: &Platform) {
    let gicd = crate::mm::map_device(p.gicd, 0x1_0000);
    let gicr = crate::mm::map_device(p.gicr, p.gicr_size.max(0x2_0000 * p.nr_cpus as u64));
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
    gic.setup(crate::arch::cpu_id());
    GicCpuInterface::set_priority_mask(0xff);
    *GIC.lock() = Some(gic);
}

/// Brings up the interface and redistributor of a secondary CPU.
pub fn init_cpu(cpu: usize) {
    GicCpuInterface::enable_system_register_el2(false);
    if let Some(g) = GIC.lock().as_mut() {
        g.init_cpu(cpu);
    }
    GicCpuInterface::enable_group1(true);
    GicCpuInterface::set_priority_mask(0xff);
}

/// Enables a private interrupt (PPI/SGI) on the calling CPU.
pub fn enable_private(intid: u32) {
    if let Some(g) = GIC.lock().as_mut() {
        let id = IntId::ppi(intid.saturating_sub(16));
        let cpu = Some(crate::arch::cpu_id());
        let _ = g.set_interrupt_priority(id, cpu, 0x80);
        let _ = g.enable_interrupt(id, cpu, true);
    }
}

/// Handles every pending interrupt.
pub fn handle() {
    while let Some(id) = GicCpuInterface::get_and_acknowledge_interrupt(InterruptGroup::Group1) {
        let n = id.raw_value();
        if n == crate::arch::timer_irq() {
            crate::arch::timer_tick();
        } else {
            crate::kprintln!(
                "kernel: unexpected interrupt {} on CPU {}",
                n,
                crate::arch::cpu_id()
            );
        }
        GicCpuInterface::end_interrupt(id, InterruptGroup::Group1);
    }
}

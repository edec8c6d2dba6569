//! The board: what the device tree says about it, and its devices' drivers.
//!
//! * [`console`]: the kernel console on the PL011 UART;
//! * [`gic`]: the GICv3 interrupt controller and interrupt routing;
//! * [`smp`]: starting the other CPUs through PSCI.
//!
//! Everything else in the kernel reaches the hardware through these and
//! `arch`, never by addresses of its own.

pub mod console;
pub mod gic;
pub mod smp;

use crate::arch::Conduit;
use l4_bootinfo::MAX_CPUS;

pub struct Platform {
    pub gicd: u64,
    pub gicr: u64,
    pub gicr_size: u64,
    pub timer_irq: u32,
    pub psci: Conduit,
    pub cpus: [u64; MAX_CPUS],
    pub nr_cpus: usize,
}

/// The device tree the boot stage passed, at physical address `pa`.
///
/// # Safety
/// `pa` holds a device tree (the boot stage checked it) in RAM that the
/// linear map covers and nothing ever writes.
pub unsafe fn device_tree(pa: u64) -> Result<l4_dtb::Dtb<'static>, l4_dtb::Error> {
    // SAFETY: the caller's contract.
    unsafe { l4_dtb::Dtb::from_ptr(crate::mm::phys_to_virt(pa) as *const u8) }
}

impl Platform {
    pub fn from_dtb(dtb: &l4_dtb::Dtb<'_>) -> Result<Self, &'static str> {
        let gic = dtb.find_compatible(&["arm,gic-v3"]).ok_or("no GICv3")?;
        let mut regs = gic.reg();
        let (gicd, _) = regs.next().ok_or("GICv3 without distributor")?;
        let (gicr, gicr_size) = regs.next().ok_or("GICv3 without redistributors")?;
        let timer = dtb
            .find_compatible(&["arm,armv8-timer", "arm,armv7-timer"])
            .ok_or("no arch timer")?;
        let ints = timer
            .property("interrupts")
            .ok_or("timer without interrupts")?;
        // Fourth specifier (3 cells each): the EL2 physical timer PPI.
        let timer_irq = ints
            .u32_at(3 * 3 + 1)
            .and_then(|ppi| ppi.checked_add(16))
            .ok_or("timer lacks the hypervisor timer interrupt")?;
        let psci = match dtb
            .find_node("/psci")
            .and_then(|n| n.property("method"))
            .and_then(|p| p.as_str())
        {
            Some("smc") => Conduit::Smc,
            Some("hvc") => Conduit::Hvc,
            _ => return Err("no PSCI method"),
        };
        let mut cpus = [0; MAX_CPUS];
        let mut nr_cpus = 0;
        for id in dtb.cpus().filter_map(|c| c.reg().next()).take(MAX_CPUS) {
            cpus[nr_cpus] = id.0;
            nr_cpus += 1;
        }
        Ok(Platform {
            gicd,
            gicr,
            gicr_size: gicr_size.unwrap_or(0),
            timer_irq,
            psci,
            cpus,
            nr_cpus: nr_cpus.max(1),
        })
    }
}

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
use l4_pl011::be32;

pub struct Platform {
    pub gicd: u64,
    pub gicr: u64,
    pub gicr_size: u64,
    pub timer_irq: u32,
    pub psci: Conduit,
    pub cpus: [u64; MAX_CPUS],
    pub nr_cpus: usize,
}

fn reg(n: fdt::node::FdtNode<'_, '_>, i: usize) -> Option<fdt::standard_nodes::MemoryRegion> {
    n.reg().and_then(|mut r| r.nth(i))
}

/// The device tree the boot stage passed, at physical address `pa`.
///
/// # Safety
/// `pa` holds a device tree (the boot stage checked its header) in RAM
/// that the linear map covers and nothing ever writes.
pub unsafe fn device_tree(pa: u64) -> Result<fdt::Fdt<'static>, &'static str> {
    // SAFETY: the caller's contract.
    unsafe { fdt::Fdt::from_ptr(crate::mm::phys_to_virt(pa) as *const u8) }
        .map_err(|_| "invalid device tree")
}

impl Platform {
    pub fn from_dtb(fdt: &fdt::Fdt<'_>) -> Result<Self, &'static str> {
        let gic = fdt.find_compatible(&["arm,gic-v3"]).ok_or("no GICv3")?;
        let gicd = reg(gic, 0)
            .ok_or("GICv3 without distributor")?
            .starting_address as u64;
        let r = reg(gic, 1).ok_or("GICv3 without redistributors")?;
        let timer = fdt
            .find_compatible(&["arm,armv8-timer", "arm,armv7-timer"])
            .ok_or("no arch timer")?;
        let ints = timer
            .property("interrupts")
            .ok_or("timer without interrupts")?
            .value;
        // Fourth specifier (3 cells each): the EL2 physical timer PPI.
        let timer_irq =
            be32(ints, 3 * 3 + 1).ok_or("timer lacks the hypervisor timer interrupt")? + 16;
        let psci = match fdt
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
        for cpu in fdt.cpus().take(MAX_CPUS) {
            cpus[nr_cpus] = cpu.ids().first() as u64;
            nr_cpus += 1;
        }
        Ok(Platform {
            gicd,
            gicr: r.starting_address as u64,
            gicr_size: r.size.unwrap_or(0) as u64,
            timer_irq,
            psci,
            cpus,
            nr_cpus: nr_cpus.max(1),
        })
    }
}

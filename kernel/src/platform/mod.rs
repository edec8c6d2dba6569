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

fn be32(b: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_be_bytes(
        b.get(i * 4..i * 4 + 4)?.try_into().ok()?,
    ))
}

fn reg(n: fdt::node::FdtNode<'_, '_>, i: usize) -> Option<fdt::standard_nodes::MemoryRegion> {
    n.reg().and_then(|mut r| r.nth(i))
}

fn open(dtb: *const u8) -> Result<fdt::Fdt<'static>, &'static str> {
    // SAFETY: the boot stage checked this is a device tree; it lies in RAM
    // covered by the linear map and is never written.
    unsafe { fdt::Fdt::from_ptr(dtb) }.map_err(|_| "invalid device tree")
}

/// The console UART: /chosen/stdout-path, or the first PL011. Returns its
/// registers and its interrupt (GIC number), if it names one.
pub fn console_uart(dtb: *const u8) -> Result<(u64, Option<u32>), &'static str> {
    let fdt = open(dtb)?;
    let node = fdt
        .chosen()
        .stdout()
        .or_else(|| fdt.find_compatible(&["arm,pl011"]));
    let irq = node
        .and_then(|n| n.property("interrupts"))
        .and_then(|p| gic_irq(p.value));
    Ok((
        node.and_then(|n| reg(n, 0))
            .ok_or("no PL011 console")?
            .starting_address as u64,
        irq,
    ))
}

/// The GIC interrupt number of a 3-cell specifier (SPI 0 / PPI 1, number).
fn gic_irq(cells: &[u8]) -> Option<u32> {
    let n = be32(cells, 1)?;
    match be32(cells, 0)? {
        0 => Some(n + 32),
        1 => Some(n + 16),
        _ => None,
    }
}

impl Platform {
    pub fn from_dtb(dtb: *const u8) -> Result<Self, &'static str> {
        let fdt = open(dtb)?;
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

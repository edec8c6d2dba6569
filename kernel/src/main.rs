//! The capability microkernel. Runs at EL2 with VHE (`HCR_EL2.E2H = TGE = 1`):
//! the kernel in the upper half (TTBR1_EL2), user tasks at EL0 in TTBR0_EL2.
//!
//! Kernel objects live in [`obj`] (one file per kind), IPC in [`ipc`],
//! scheduling in [`sched`], the board in [`platform`] and the CPU in
//! [`arch`]; `docs/kernel.md` maps every file.

#![no_std]
#![no_main]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate alloc;

mod arch;
mod bkl;
mod entry;
mod fp;
mod ipc;
mod jdb;
mod mm;
mod obj;
mod platform;
mod roottask;
mod sched;
mod state;
mod syscall;

use core::sync::atomic::Ordering;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The boot CPU starts here (from `_start`) with the physical address of the
/// boot-info page.
#[unsafe(no_mangle)]
extern "C" fn kernel_main(bootinfo_pa: u64) -> ! {
    arch::cpu_init(0);
    // SAFETY: the boot stage passes its boot-info page, which it filled
    // and never touches again; this is the first use of it.
    let info = unsafe { mm::bootinfo(bootinfo_pa, arch::vcpu::task_cpu_id()) };
    let (opts, unknown) = kernel_core::cmdline::parse(info.kernel_cmdline.as_str());
    mm::init(info, opts.kmem_kib.map(|k| k.saturating_mul(1024)));
    // SAFETY: the boot stage passed a device tree it checked, in RAM it
    // reserved (the linear map covers it and nobody writes it).
    let Ok(dtb) = (unsafe { platform::device_tree(info.dtb_paddr) }) else {
        arch::halt() // no console to say so on
    };
    match l4_pl011::find_console(&dtb) {
        // SAFETY: the device tree names this PL011 as the console; it is
        // mapped as device memory here (registers, not RAM), and only the
        // console drives it.
        Some(c) => unsafe { platform::console::init(mm::map_device(c.base, 0x1000), c.irq) },
        None => arch::halt(), // nowhere to say anything
    }
    let plat = platform::Platform::from_dtb(&dtb).unwrap_or_else(|e| panic!("device tree: {e}"));
    if let Some(w) = unknown {
        kprintln!("kernel: ignoring unknown option '{}'", w);
    }
    let (leaves, why) = kernel_core::cmdline::stage2_leaves(opts.stage2, arch::midr());
    obj::vm::set_leaves(leaves);
    let leaves_are = match leaves {
        l4_pgtable::stage2::Leaves::Pages => "4 KiB pages",
        l4_pgtable::stage2::Leaves::Blocks => "2 MiB blocks where they fit",
    };
    kprintln!("kernel: guest memory in {} ({})", leaves_are, why);
    platform::gic::init(&plat);
    if opts.serial_esc && !opts.nojdb {
        // The kernel watches the line itself (a lone ESC enters jdb).
        jdb::init(plat.psci);
        platform::console::arm_escape();
        if let Some(line) = platform::console::input_irq() {
            platform::gic::take_console_line(line);
        }
    }
    arch::timer_init(plat.timer_irq);
    kprintln!(
        "kernel: timer: CNTHP, IRQ {}, {} Hz, {} us tick",
        plat.timer_irq,
        arch::counter_freq(),
        arch::TICK_US
    );
    let online = platform::smp::start_secondaries(&plat, info);
    kprintln!(
        "L4RS microkernel {} (AArch64, EL2 VHE), {} MiB free, kernel heap {} MiB, CPUs online: {}",
        VERSION,
        mm::free_bytes() >> 20,
        mm::heap_bytes() >> 20,
        online
    );
    kprintln!(
        "kernel: boot took {} us since the boot stage started",
        arch::micros_since(info.boot_counter)
    );
    if opts.wait {
        kprintln!("kernel: -wait: press a key to start the root task");
        platform::console::wait_byte();
    }
    let mut g = bkl::lock();
    state::init(
        &mut g,
        plat.nr_cpus.max(online),
        info,
        bootinfo_pa,
        !opts.nofastpath,
    );
    match roottask::create(g.kernel(), info) {
        Ok(_) => kprintln!(
            "kernel: starting root task '{}' at {:#x} {}",
            info.roottask.name.as_str(),
            info.roottask.entry,
            info.roottask.cmdline.as_str()
        ),
        Err(e) => panic!("cannot create the root task: {e}"),
    }
    SMP_GO.store(1, Ordering::Release);
    sched::idle_loop(g)
}

/// Secondary CPUs wait for the kernel state before they schedule (1: go).
static SMP_GO: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

/// Secondary CPUs arrive here from `secondary_entry`, MMU on.
#[unsafe(no_mangle)]
extern "C" fn secondary_main(cpu: u64) -> ! {
    arch::cpu_init(cpu as usize);
    platform::gic::init_cpu(cpu as usize);
    arch::timer_start();
    platform::smp::ONLINE.fetch_add(1, Ordering::Release);
    // Asleep in `wfe` meanwhile, not polling: the boot CPU (or, on an
    // emulator, the host thread all CPUs share) runs at full speed.
    arch::wait_until_eq(&SMP_GO, 1);
    sched::idle_loop(bkl::lock())
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    arch::irq_disable();
    kprintln!("kernel panic on CPU {}: {}", arch::cpu_id(), info);
    arch::halt()
}

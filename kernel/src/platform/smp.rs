//! Bringing up the other CPUs through PSCI.

use crate::arch;
use crate::platform::Platform;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use l4_bootinfo::{BootInfo, KERNEL_IMAGE_VA, MAX_CPUS};

/// CPUs running the kernel.
pub static ONLINE: AtomicUsize = AtomicUsize::new(1);

/// What a secondary CPU needs before its MMU is on (read at its physical
/// address by `secondary_entry`): [hcr, mair, tcr, ttbr0, ttbr1, sctlr, sp, cpu].
#[repr(C, align(64))]
struct SecondaryBoot([AtomicU64; 8]);

static BOOT_BLOCKS: [SecondaryBoot; MAX_CPUS] =
    [const { SecondaryBoot([const { AtomicU64::new(0) }; 8]) }; MAX_CPUS];

const PSCI_CPU_ON: u32 = 0xc400_0003;
const START_TIMEOUT_US: u64 = 1_000_000;

/// Kernel-image virtual address to physical.
fn image_pa(info: &BootInfo, va: u64) -> u64 {
    va - KERNEL_IMAGE_VA + info.kernel_paddr
}

/// Starts every CPU the device tree lists; returns how many are online.
pub fn start_secondaries(p: &Platform, info: &BootInfo) -> usize {
    let me = arch::mpidr();
    if p.cpus[0] != me {
        panic!("boot CPU {me:#x} is not the first CPU in the device tree");
    }
    let regs = arch::boot_regs(info.idmap_pt_root);
    let entry = image_pa(info, arch::secondary_entry_va());
    let mut expected = 1;
    for (cpu, block) in BOOT_BLOCKS.iter().enumerate().take(p.nr_cpus).skip(1) {
        // Written before its CPU starts, then cleaned to memory: it reads
        // the block with its MMU and caches off.
        let words = regs.into_iter().chain([arch::stack_top(cpu), cpu as u64]);
        for (w, v) in block.0.iter().zip(words) {
            w.store(v, Ordering::Relaxed);
        }
        let va = block as *const SecondaryBoot as u64;
        l4_abi::cache::clean_to_poc(va as usize, core::mem::size_of::<SecondaryBoot>());
        let ret = arch::psci_call(p.psci, PSCI_CPU_ON, p.cpus[cpu], entry, image_pa(info, va));
        if ret != 0 {
            crate::kprintln!(
                "kernel: CPU {} (MPIDR {:#x}) did not start: PSCI error {}",
                cpu,
                p.cpus[cpu],
                ret
            );
            continue;
        }
        expected += 1;
    }
    let start = arch::counter();
    while ONLINE.load(Ordering::Acquire) < expected && arch::micros_since(start) < START_TIMEOUT_US
    {
        arch::cpu_relax();
    }
    let online = ONLINE.load(Ordering::Acquire);
    if online < expected {
        crate::kprintln!("kernel: only {} of {} CPUs came up", online, expected);
    }
    online
}

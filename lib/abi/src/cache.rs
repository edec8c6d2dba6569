//! Cache maintenance by address, for what a guest or another CPU reads
//! with its MMU and caches off.
//!
//! A guest starts with its MMU and caches off: its loads then bypass the
//! data cache and its instruction fetches may hit stale lines, while its
//! VMM wrote its code and data through cacheable mappings. What was
//! written is cleaned to the point of coherency and, for code, the
//! instruction cache invalidated (as Linux's arm64 boot protocol asks of
//! a boot loader): uvmm does it for a guest's kernel, ramdisk and device
//! tree, ktest for its tiny guests' code, the kernel for the block a
//! secondary CPU reads before its MMU is on. At EL0 the kernel allows both
//! by address (SCTLR_EL2.UCI) and reading CTR_EL0 (UCT). Off AArch64 (host
//! tests) there is no guest to see a cache, and both are no-ops.
//!
//! The functions are safe: maintenance by address changes no value, and
//! an address the caller has not mapped is a fault for it, as a load
//! would be.

/// Cleans the data cache lines of `[addr, addr + len)` of the caller's
/// address space to the point of coherency (memory it has just written).
pub fn clean_to_poc(addr: usize, len: usize) {
    #[cfg(target_arch = "aarch64")]
    by_line(addr, len, dminline(), |a| {
        // SAFETY: cleaning a mapped line writes it back and changes no
        // value; the barrier after `by_line` orders it.
        unsafe { core::arch::asm!("dc cvac, {}", in(reg) a, options(nostack, preserves_flags)) }
    });
    #[cfg(not(target_arch = "aarch64"))]
    let _ = (addr, len);
}

/// Makes `[addr, addr + len)` (code the caller wrote, already cleaned with
/// [`clean_to_poc`]) free of stale instruction-cache lines: invalidated
/// by line, unless the CPU says its instruction cache needs no
/// invalidation (CTR_EL0.DIC).
pub fn invalidate_icache(addr: usize, len: usize) {
    #[cfg(target_arch = "aarch64")]
    {
        let ctr = ctr_el0();
        if ctr & (1 << 29) == 0 {
            by_line(addr, len, 4 << (ctr & 0xf), |a| {
                // SAFETY: invalidating a mapped instruction-cache line
                // changes no data; the barriers after `by_line` order it.
                unsafe {
                    core::arch::asm!("ic ivau, {}", in(reg) a, options(nostack, preserves_flags))
                }
            });
        }
        // SAFETY: synchronises the invalidation with later fetches.
        unsafe { core::arch::asm!("isb", options(nostack, preserves_flags)) };
    }
    #[cfg(not(target_arch = "aarch64"))]
    let _ = (addr, len);
}

#[cfg(target_arch = "aarch64")]
fn ctr_el0() -> u64 {
    let ctr: u64;
    // SAFETY: reading CTR_EL0 has no side effects (EL0 may: UCT; EL2
    // always).
    unsafe {
        core::arch::asm!("mrs {}, ctr_el0", out(reg) ctr, options(nomem, nostack, preserves_flags))
    };
    ctr
}

/// The smallest data cache line (CTR_EL0.DminLine, log2 of words).
#[cfg(target_arch = "aarch64")]
fn dminline() -> usize {
    4 << ((ctr_el0() >> 16) & 0xf)
}

/// Runs `op` on every `line`-sized line that `[addr, addr + len)`
/// touches, then waits for all of them to complete (`dsb sy`).
#[cfg(target_arch = "aarch64")]
fn by_line(addr: usize, len: usize, line: usize, op: impl Fn(usize)) {
    let end = addr.saturating_add(len);
    let mut a = addr & !(line - 1);
    while a < end {
        op(a);
        a += line;
    }
    // SAFETY: a barrier only.
    unsafe { core::arch::asm!("dsb sy", options(nostack, preserves_flags)) };
}

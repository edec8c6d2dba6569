//! What moe gets from the kernel at boot, in one place: the boot-info page
//! (memory map, boot modules, command lines), the memory operations of its
//! Sigma0 capability, and how much RAM moe takes.
//!
//! The kernel maps its boot-info page ([`l4_bootinfo::BootInfo`]) read-only
//! at [`BOOTINFO_VA`] in the root task. A boot module's memory is mapped
//! 1:1 read-execute by Sigma0 [`MAP_MODULE`] (MR1 = physical address,
//! MR2 = size; the range must lie inside a module region of the memory
//! map), free RAM 1:1 read-write by [`MAP_FREE`] (MR1 = log2 of the size,
//! 12..=30; the reply's MR0 is the address). The kernel does not clear free
//! RAM: moe zeroes every block when it hands it out ([`crate::pages`] keeps
//! the chunks, `server::kernel::alloc_zeroed` clears).

pub use l4_abi::root::BOOTINFO_VA;
pub use l4_abi::sigma0::{MAP_FREE, MAP_MODULE};

/// 1 MiB.
pub const MIB: u64 = 1 << 20;

/// moe leaves at least this much of the free RAM to the kernel: the
/// kernel takes translation tables, UTCBs and kernel stacks from the same
/// frames that Sigma0 hands out (and Sigma0 refuses to give them away).
/// The kernel's root factory has a quota ([`l4_abi::root::ROOT_QUOTA`])
/// within it. The kernel's heap comes off the free RAM too, so Sigma0
/// refuses before moe has taken its whole budget.
pub const KERNEL_KEEP: u64 = l4_abi::root::KERNEL_MEMORY;

/// How much of `free` (the free RAM the boot-info page lists) moe takes.
pub fn budget(free: u64) -> u64 {
    free.saturating_sub(KERNEL_KEEP) & !(MIB - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets() {
        assert_eq!(budget(1024 * MIB), 984 * MIB);
        assert_eq!(budget(128 * MIB), 88 * MIB);
        assert_eq!(budget(1021 * MIB + 5), 981 * MIB);
        assert_eq!(budget(40 * MIB), 0);
        assert_eq!(budget(16 * MIB), 0);
        assert_eq!(budget(0), 0);
    }
}

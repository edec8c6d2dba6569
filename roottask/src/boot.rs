//! What moe gets from the kernel at boot, in one place: the boot-info page
//! (memory map, boot modules, command lines), the memory operations of its
//! Sigma0 capability, and how much RAM moe takes.
//!
//! The kernel maps its boot-info page ([`l4_bootinfo::BootInfo`]) read-only
//! at [`BOOTINFO_VA`] in the root task. A boot module's memory is mapped
//! 1:1 read-execute by Sigma0 [`MAP_MODULE`] (MR1 = physical address,
//! MR2 = size; the range must lie inside a module region of the memory
//! map), free RAM 1:1 read-write by [`MAP_FREE`] (MR1 = log2 of the size,
//! 12..=30; the reply's MR0 is the address).

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

/// The largest chunk asked for first, and the smallest one asked for.
pub const CHUNK_ORDERS: core::ops::RangeInclusive<u8> = 20..=28;
/// The heap moe takes before anything else (log2 of the size; smaller
/// orders are tried if that fails).
pub const HEAP_ORDER: u8 = 23;

/// How much of `free` (the free RAM the boot-info page lists) moe takes.
pub fn budget(free: u64) -> u64 {
    free.saturating_sub(KERNEL_KEEP) & !(MIB - 1)
}

/// The chunk sizes (log2) to take `budget` bytes in, largest first: as many
/// of each as fit in what is left; `take` returns whether the kernel gave
/// one (it stops asking for a size once the kernel refuses). Returns the
/// bytes taken.
pub fn take_memory(budget: u64, mut take: impl FnMut(u8) -> bool) -> u64 {
    let mut got = 0u64;
    for order in CHUNK_ORDERS.rev() {
        while got + (1 << order) <= budget {
            if !take(order) {
                break;
            }
            got += 1 << order;
        }
    }
    got
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

    #[test]
    fn takes_big_chunks_first_and_stops_when_refused() {
        let mut asked = std::vec::Vec::new();
        let got = take_memory(768 * MIB + 3 * MIB, |o| {
            asked.push(o);
            true
        });
        assert_eq!(got, 771 * MIB);
        assert_eq!(asked, [28, 28, 28, 21, 20]);
        // The kernel has only 300 MiB in 1 MiB pieces.
        let mut left = 300;
        let got = take_memory(768 * MIB, |o| {
            if o > 20 || left == 0 {
                return false;
            }
            left -= 1;
            true
        });
        assert_eq!(got, 300 * MIB);
        assert_eq!(take_memory(0, |_| true), 0);
    }
}

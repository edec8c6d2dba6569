//! Where things go in a task's address space (beyond what
//! [`l4_env`] fixes for the loader).
//!
//! | range                                   | what                              |
//! |-----------------------------------------|-----------------------------------|
//! | 0 .. [`PROGRAM_MIN`]                    | never mapped (null pointers)      |
//! | [`DYN_BASE`] ..                         | a static-PIE program, then `brk`  |
//! | [`MMAP_BASE`] .. [`MMAP_END`]           | `mmap`                            |
//! | `RUNTIME_BASE` ..                       | the runtime's image               |
//! | [`RT_HEAP_BASE`] .. + [`RT_HEAP_SIZE`]  | the runtime's heap                |
//! | [`RT_WINDOWS_BASE`] .. [`RT_WINDOWS_END`] | runtime windows onto files      |
//! | `UTCB_AREA` ..                          | UTCBs (slot 0: the runtime)       |
//! | stack guard, then the main stack up to `PROGRAM_STACK_TOP` |                |
//! | `ENV_VA`, the runtime's stack           | loader-provided                   |

use l4_env::{PROGRAM_STACK_SIZE, PROGRAM_STACK_TOP, RUNTIME_BASE, UTCB_AREA, UTCB_AREA_SIZE};

/// Lowest address a program may map.
pub const PROGRAM_MIN: u64 = 0x1_0000;
/// Where a position-independent program is loaded.
pub const DYN_BASE: u64 = 0x40_0000;
/// Most bytes `brk` hands out.
pub const BRK_MAX: u64 = 1 << 30;
/// `brk` grows in regions of this granularity.
pub const BRK_CHUNK: u64 = 1 << 20;
/// Lowest `mmap` address chosen by the runtime.
pub const MMAP_BASE: u64 = 0x10_0000_0000;
/// End of the `mmap` area.
pub const MMAP_END: u64 = RUNTIME_BASE;
/// The runtime's heap.
pub const RT_HEAP_BASE: u64 = RUNTIME_BASE + 0x10_0000_0000;
/// Size of the runtime heap's address range.
pub const RT_HEAP_SIZE: u64 = 0x10_0000_0000;
/// Runtime windows onto files (the program, `rom/` files).
pub const RT_WINDOWS_BASE: u64 = RUNTIME_BASE + 0x20_0000_0000;
/// End of the windows.
pub const RT_WINDOWS_END: u64 = RUNTIME_BASE + 0xa0_0000_0000;
/// The guard below the main stack.
pub const STACK_GUARD: u64 = 0x1_0000;
/// Lowest address of the main stack.
pub const STACK_LOW: u64 = PROGRAM_STACK_TOP - PROGRAM_STACK_SIZE;
/// End of the user half.
pub const USER_END: u64 = 1 << 47;
/// Number of UTCB slots (slot 0 is the runtime's thread).
pub const UTCB_SLOTS: usize = (UTCB_AREA_SIZE / 1024) as usize;
/// The runtime's own capability indices: threads, dataspaces, files.
pub const RT_CAPS: core::ops::Range<u64> = l4_env::caps::FIRST_FREE..crate::env::FIRST_PROGRAM_CAP;

/// The UTCB address of slot `i`.
pub const fn utcb(slot: usize) -> u64 {
    UTCB_AREA + slot as u64 * 1024
}

/// The slot of a UTCB address.
pub const fn utcb_slot(addr: u64) -> Option<usize> {
    if addr < UTCB_AREA || addr >= UTCB_AREA + UTCB_AREA_SIZE || !addr.is_multiple_of(1024) {
        return None;
    }
    Some(((addr - UTCB_AREA) / 1024) as usize)
}

const _: () = {
    assert!(RT_WINDOWS_END <= UTCB_AREA);
    assert!(RT_HEAP_BASE + RT_HEAP_SIZE <= RT_WINDOWS_BASE);
    assert!(UTCB_AREA + UTCB_AREA_SIZE <= STACK_LOW - STACK_GUARD);
    assert!(DYN_BASE + BRK_MAX < MMAP_BASE);
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utcb_slots() {
        assert_eq!(utcb_slot(utcb(0)), Some(0));
        assert_eq!(utcb_slot(utcb(63)), Some(63));
        assert_eq!(utcb_slot(utcb(64)), None);
        assert_eq!(utcb_slot(utcb(1) + 8), None);
        assert_eq!(utcb_slot(0), None);
        assert_eq!(UTCB_SLOTS, 64);
    }
}

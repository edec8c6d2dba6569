//! Starting a program in a new task: the part of L4Re's loader that moe
//! (for init) and ned (for everything else) share.
//!
//! [`start`] creates a task with the UTCB area of [`l4_env`], a thread
//! for the in-task runtime (UTCB slot 0), loads the runtime ELF
//! (`rom/l4re`) at its link addresses, maps a runtime stack and the
//! environment page ([`l4_env::Env`], read-only at
//! [`l4_env::ENV_VA`]), maps the well-known capabilities
//! ([`l4_env::caps`]) and the named ones, points the thread at the
//! runtime's entry with `sp` = [`l4_env::RUNTIME_STACK_TOP`] and runs
//! it. The runtime then finds everything else through the environment
//! page: it loads the program from the [`l4_env::caps::PROGRAM`]
//! dataspace itself.
//!
//! The loader is plain Rust over two traits, so all of it is tested on the
//! host against a fake:
//!
//! * [`Sys`]: the kernel operations (create, map, control, ex_regs, run,
//!   delete); [`kernel::KernelSys`] implements it with the `l4` stubs on
//!   AArch64;
//! * [`Host`]: what the loading task provides: capability slots and
//!   memory present in its own address space (moe: its 1:1 RAM; ned: its
//!   own pages).
//!
//! The child's runtime thread has the child's [`l4_env::caps::PARENT`]
//! capability (an IPC gate to the loader labelled [`StartArgs::parent_label`])
//! as pager and exception handler: a fault of the runtime itself reaches
//! the loader as a page-fault or exception message on that label, and the
//! runtime signals the program's exit there (Parent protocol, signal 0).
//! [`Child::destroy`] tears everything down again.
//!
//! [`elf`] is the ELF reader of both sides: the loader reads the runtime
//! with it, the runtime the program (only its headers, through a window).

#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

extern crate alloc;

pub mod elf;
mod env;
mod start;

#[cfg(target_arch = "aarch64")]
pub mod kernel;

pub use elf::{Elf, ElfError, Segment};
pub use env::{build_env, program_basename, rom_name, split_args};
pub use start::{Child, ChildCaps, Host, LoadError, NamedCap, StartArgs, Sys, start};

/// The page size.
pub const PAGE: u64 = 4096;
/// The order (log2) of a page.
pub const PAGE_SHIFT: u8 = 12;

/// Splits `[src, src + len)` mapped to `[dst, dst + len)` into the largest
/// blocks both sides are aligned for: `(src, dst, order)` each. `src`,
/// `dst` and `len` must be page multiples (anything else is cut to pages);
/// orders are capped at `max_order`.
pub fn blocks(src: u64, dst: u64, len: u64, max_order: u8) -> impl Iterator<Item = (u64, u64, u8)> {
    let len = len & !(PAGE - 1);
    let mut off = 0u64;
    core::iter::from_fn(move || {
        if off >= len {
            return None;
        }
        let (s, d) = (src + off, dst + off);
        let align = ((s | d) & !(PAGE - 1)).trailing_zeros().min(63) as u8;
        let fit = (63 - (len - off).leading_zeros()) as u8;
        let order = align.min(fit).min(max_order).max(PAGE_SHIFT);
        off += 1 << order;
        Some((s, d, order))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    #[test]
    fn blocks_follow_both_alignments() {
        let b: Vec<_> = blocks(0x4000_0000, 0x7f00_0000_0000, 0x3000, 30).collect();
        assert_eq!(
            b,
            [
                (0x4000_0000, 0x7f00_0000_0000, 13),
                (0x4000_2000, 0x7f00_0000_2000, 12)
            ]
        );
        // Misaligned against each other: pages only.
        let b: Vec<_> = blocks(0x1000, 0x20_0000, 0x4000, 30).collect();
        assert_eq!(b.len(), 4);
        assert!(b.iter().all(|x| x.2 == 12));
        // Large aligned range, capped order.
        let b: Vec<_> = blocks(0x4000_0000, 0x4000_0000, 0x80_0000, 21).collect();
        assert_eq!(b.len(), 4);
        assert!(b.iter().all(|x| x.2 == 21));
        assert_eq!(blocks(0, 0, 0, 30).count(), 0);
        assert_eq!(blocks(0, 0, 0xfff, 30).count(), 0);
        // Address 0 on both sides is aligned to everything.
        assert_eq!(blocks(0, 0, 0x1_0000, 30).collect::<Vec<_>>(), [(0, 0, 16)]);
    }
}

//! moe, the root task. For now it announces itself from EL0 and exits; the
//! memory, dataspace, rom/ and factory services come with the userland issue.

#![no_std]
#![no_main]
#![deny(unsafe_op_in_unsafe_fn)]

use l4_abi::call::{debug_exit, debug_puts};

core::arch::global_asm!(
    ".section .text.start, \"ax\"",
    ".global _start",
    "_start:",
    "    bl moe_main",
    "1:  b 1b",
);

#[unsafe(no_mangle)]
extern "C" fn moe_main() -> ! {
    let _ = debug_puts(b"moe: hello from the root task at EL0\n");
    debug_exit(0)
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    let _ = debug_puts(b"moe: panic\n");
    debug_exit(1)
}

//! The entry point and the clone trampoline (the runtime's only assembly).

// `_start`: the loader starts the runtime's thread here with sp =
// RUNTIME_STACK_TOP (and the environment at ENV_VA). Clear .bss (the
// loader zero-fills it too; this keeps the runtime independent of how),
// then enter Rust.
//
// `l4re_clone_trampoline`: where a thread made by `clone` starts, with sp
// = the new stack. The runtime stored the thread pointer at sp - 16 and
// the pc to continue at (after the parent's `svc`) at sp - 8; the child
// continues there with TPIDR_EL0 set and x0 = 0, as Linux returns from
// `clone` in the child. x1 is scratch (musl's `__clone` reloads it).
core::arch::global_asm!(
    ".section .text.start, \"ax\"",
    ".global _start",
    "_start:",
    "    adrp x1, __bss_start",
    "    add x1, x1, :lo12:__bss_start",
    "    adrp x2, __bss_end",
    "    add x2, x2, :lo12:__bss_end",
    "1:  cmp x1, x2",
    "    b.hs 2f",
    "    str xzr, [x1], #8",
    "    b 1b",
    "2:  mov x29, #0",
    "    mov x30, #0",
    "    bl l4re_main",
    "3:  b 3b",
    "",
    ".section .text.l4re_clone_trampoline, \"ax\"",
    ".global l4re_clone_trampoline",
    "l4re_clone_trampoline:",
    "    ldp x0, x1, [sp, #-16]",
    "    msr tpidr_el0, x0",
    "    mov x0, #0",
    "    br x1",
);

unsafe extern "C" {
    safe fn l4re_clone_trampoline();
}

/// The address of the clone trampoline.
pub fn trampoline() -> u64 {
    l4re_clone_trampoline as *const () as u64
}

// Entry of the boot stage. The image builder wraps the stage and its payload
// in an ELF file whose segments put them at the stage's link address (RAM
// base + text_offset): QEMU's -kernel loads it there, puts the DTB at RAM
// base and enters with x0 = 0. The arm64 Linux Image header keeps the flat
// image bootable as an Image too, loaded at RAM base + text_offset with the
// DTB's address in x0.
.section .text.head, "ax"
.global _start
_start:
    b       1f                      // code0
    .word   0                       // code1
    .quad   0x200000                // text_offset: room for QEMU's DTB below
    .quad   0                       // image_size: patched by the image builder
    .quad   0xa                     // flags: little-endian, 4K pages, anywhere
    .quad   0, 0, 0                 // res2-4
    .ascii  "ARM\x64"               // magic
    .word   0                       // res5
1:
    mov     x19, x0                 // DTB
    mrs     x20, cntpct_el0         // time of entry
    adrp    x1, __stack_top
    add     x1, x1, :lo12:__stack_top
    mov     sp, x1
    adrp    x1, __bss_start
    add     x1, x1, :lo12:__bss_start
    adrp    x2, __bss_end
    add     x2, x2, :lo12:__bss_end
2:  cmp     x1, x2
    b.hs    3f
    stp     xzr, xzr, [x1], #16
    b       2b
3:  mov     x0, x19
    mov     x1, x20
    bl      stage_main
4:  wfe
    b       4b

// enter_kernel(entry_va, bootinfo_pa, regs: *const [u64; 6])
// regs = [hcr, mair, tcr, ttbr0, ttbr1, sctlr]. Turns the MMU on (we run in
// the identity map of RAM) and jumps to the kernel's virtual entry.
.section .text
.global enter_kernel
enter_kernel:
    ldp     x3, x4, [x2]
    ldp     x5, x6, [x2, #16]
    ldp     x7, x8, [x2, #32]
    msr     hcr_el2, x3
    isb
    msr     mair_el2, x4
    msr     tcr_el2, x5
    msr     ttbr0_el2, x6
    msr     S3_4_C2_C0_1, x7    // TTBR1_EL2 (VHE)
    isb
    tlbi    alle2
    ic      iallu
    dsb     sy
    isb
    msr     sctlr_el2, x8
    isb
    mov     x9, x0
    mov     x0, x1
    mov     x1, xzr
    br      x9

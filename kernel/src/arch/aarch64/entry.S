// Kernel entry points, exception vectors and the return to user mode.

.equ FRAME_SIZE, 272
.equ KERNEL_STACK_SIZE, 0x8000   // must match arch::KERNEL_STACK_SIZE        // struct TrapFrame: x0-x30, sp_el0, elr, spsr

// Boot CPU: the boot stage enters here at our virtual address with the MMU
// on and x0 = physical address of the boot-info page.
.section .text.boot, "ax"
.global _start
_start:
    adrp    x1, KERNEL_STACKS       // CPU 0's stack is the first one
    add     x1, x1, :lo12:KERNEL_STACKS
    add     x1, x1, #KERNEL_STACK_SIZE
    mov     sp, x1
    adr     x1, exception_vectors
    msr     vbar_el2, x1
    isb
    bl      kernel_main
1:  wfe
    b       1b

// Secondary CPUs: PSCI CPU_ON starts them here at our *physical* address,
// MMU off, x0 = physical address of their SecondaryBoot block.
.global secondary_entry
secondary_entry:
    ldp     x1, x2, [x0]            // hcr, mair
    ldp     x3, x4, [x0, #16]       // tcr, ttbr0 (identity map of RAM)
    ldp     x5, x6, [x0, #32]       // ttbr1, sctlr
    ldp     x7, x8, [x0, #48]       // stack top (virtual), cpu index
    msr     hcr_el2, x1
    isb
    msr     mair_el2, x2
    msr     tcr_el2, x3
    msr     ttbr0_el2, x4
    msr     S3_4_C2_C0_1, x5    // TTBR1_EL2 (VHE)
    isb
    tlbi    alle2
    dsb     nsh
    isb
    msr     sctlr_el2, x6
    isb
    mov     sp, x7
    mov     x0, x8
    ldr     x1, =exception_vectors
    msr     vbar_el2, x1
    isb
    ldr     x1, =secondary_main
    br      x1
    .ltorg

.section .text
.macro VENTRY kind
    .balign 0x80
    sub     sp, sp, #FRAME_SIZE
    stp     x0, x1, [sp, #0]
    mov     x0, #\kind
    b       trap_common
.endm

.balign 0x800
.global exception_vectors
exception_vectors:
    VENTRY 0
    VENTRY 1
    VENTRY 2
    VENTRY 3
    VENTRY 4
    VENTRY 5
    VENTRY 6
    VENTRY 7
    VENTRY 8
    VENTRY 9
    VENTRY 10
    VENTRY 11
    VENTRY 12
    VENTRY 13
    VENTRY 14
    VENTRY 15

trap_common:
    stp     x2, x3, [sp, #16]
    stp     x4, x5, [sp, #32]
    stp     x6, x7, [sp, #48]
    stp     x8, x9, [sp, #64]
    stp     x10, x11, [sp, #80]
    stp     x12, x13, [sp, #96]
    stp     x14, x15, [sp, #112]
    stp     x16, x17, [sp, #128]
    stp     x18, x19, [sp, #144]
    stp     x20, x21, [sp, #160]
    stp     x22, x23, [sp, #176]
    stp     x24, x25, [sp, #192]
    stp     x26, x27, [sp, #208]
    stp     x28, x29, [sp, #224]
    mrs     x2, sp_el0
    stp     x30, x2, [sp, #240]
    mrs     x2, elr_el2
    mrs     x3, spsr_el2
    stp     x2, x3, [sp, #256]
    mov     x1, x0
    mov     x0, sp
    cmp     x1, #8                  // synchronous, from EL0: system calls
    b.eq    2f
    bl      trap_handler
    b       3f
2:  bl      user_sync_handler
3:
    // x0 = the frame to return from: our own, or the frame of the thread
    // the IPC fast path switched to, whose kernel stack we move to before
    // releasing the big kernel lock (x1 != 0): the old thread's stack may
    // be taken by another CPU as soon as the lock is free.
    mov     sp, x0
    cbz     x1, 1f
    bl      bkl_release
    mov     x0, sp
1:
    // fall through

// Restores the frame at x0 and returns from the exception.
.global trap_return
trap_return:
    mov     sp, x0
    ldp     x2, x3, [sp, #256]
    msr     elr_el2, x2
    msr     spsr_el2, x3
    ldp     x30, x2, [sp, #240]
    msr     sp_el0, x2
    ldp     x2, x3, [sp, #16]
    ldp     x4, x5, [sp, #32]
    ldp     x6, x7, [sp, #48]
    ldp     x8, x9, [sp, #64]
    ldp     x10, x11, [sp, #80]
    ldp     x12, x13, [sp, #96]
    ldp     x14, x15, [sp, #112]
    ldp     x16, x17, [sp, #128]
    ldp     x18, x19, [sp, #144]
    ldp     x20, x21, [sp, #160]
    ldp     x22, x23, [sp, #176]
    ldp     x24, x25, [sp, #192]
    ldp     x26, x27, [sp, #208]
    ldp     x28, x29, [sp, #224]
    ldp     x0, x1, [sp, #0]
    add     sp, sp, #FRAME_SIZE
    eret

// Kernel entry points, exception vectors and the return to user mode.

.equ FRAME_SIZE, {frame_size}              // struct TrapFrame: x0-x30, sp_el0, elr, spsr
.equ KERNEL_STACK_SIZE, {kernel_stack_size}

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

// Saves x2-x30, sp_el0, elr and spsr in the frame at sp (x0 and x1 are
// stored already); x0, x1 and x8 keep their values.
.macro SAVE_REST
    PAIRS   stp, sp, 16, 16, x2, x3, x4, x5, x6, x7, x8, x9, x10, x11, x12, x13, x14, x15, x16, x17, x18, x19, x20, x21, x22, x23, x24, x25, x26, x27, x28, x29
    mrs     x9, sp_el0
    stp     x30, x9, [sp, #240]
    mrs     x9, elr_el2
    mrs     x10, spsr_el2
    stp     x9, x10, [sp, #256]
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
    // Synchronous from EL0 (system calls, faults) has a path of its own.
    .balign 0x80
    sub     sp, sp, #FRAME_SIZE
    stp     x0, x1, [sp, #0]
    b       el0_sync
    VENTRY 9
    VENTRY 10
    VENTRY 11
    VENTRY 12
    VENTRY 13
    VENTRY 14
    VENTRY 15

el0_sync:
    SAVE_REST
    // A native IPC (svc #SVC_NATIVE with x8 = X8_IPC) first tries the fast
    // path, with the thread's x0-x2 still in place. It returns the frame of
    // the thread to resume, having switched to it; we move to that thread's
    // kernel stack before releasing the big kernel lock, since the old
    // thread's stack may be taken by another CPU as soon as the lock is
    // free. Zero: the general path goes on with the lock held (x1 = 1).
    mrs     x9, esr_el2
    and     w9, w9, #0xfc00ffff     // EC and the immediate
    movz    w10, #{svc_native}
    movk    w10, #(0x15 << 10), lsl #16     // EC 0x15: SVC from AArch64
    cmp     w9, w10
    ccmp    x8, #{x8_ipc}, #0, eq
    mov     x9, #0
    b.ne    1f
    bl      fastpath_ipc
    cbz     x0, 2f
    mov     sp, x0
    bl      bkl_release
    mov     x0, sp
    b       trap_return
2:  mov     x9, #1
1:  mov     x0, sp
    mov     x1, x9
    bl      user_sync_handler
    b       trap_return

trap_common:
    SAVE_REST
    mov     x1, x0
    mov     x0, sp
    bl      trap_handler
    // fall through: x0 = the frame to return from

// Restores the frame at x0 and returns from the exception.
.global trap_return
trap_return:
    mov     sp, x0
    ldp     x2, x3, [sp, #256]
    msr     elr_el2, x2
    msr     spsr_el2, x3
    ldp     x30, x2, [sp, #240]
    msr     sp_el0, x2
    PAIRS   ldp, sp, 16, 16, x2, x3, x4, x5, x6, x7, x8, x9, x10, x11, x12, x13, x14, x15, x16, x17, x18, x19, x20, x21, x22, x23, x24, x25, x26, x27, x28, x29
    ldp     x0, x1, [sp, #0]
    add     sp, sp, #FRAME_SIZE
    eret

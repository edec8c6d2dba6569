// The world switch: entering a guest at EL1 and coming back on its exit.
//
// guest_run(regs: *mut GuestRegs, pstate: u64) -> u64 (the exception
// kind: 0 sync, 1 IRQ, 2 FIQ, 3 SError)
//
// GuestRegs starts with x0-x30, pc, pstate (offsets 0, 248, 256): they
// are loaded from there and saved there on the exit, except the pstate
// entered with, which is the checked one the caller passes (`regs` is
// the state area, which the VMM may change at any time). The
// host's callee-saved registers, the regs pointer and the host vectors are
// kept on the kernel stack, which stays SP_EL2 while the guest runs; the
// guest vectors find them there. Everything else (EL1 system registers,
// stage 2, timer, GIC) is loaded and saved around this by vcpu.rs.
.equ GUEST_FRAME, 112

.section .text
.global guest_run
guest_run:
    sub     sp, sp, #GUEST_FRAME
    stp     x19, x20, [sp, #0]
    stp     x21, x22, [sp, #16]
    stp     x23, x24, [sp, #32]
    stp     x25, x26, [sp, #48]
    stp     x27, x28, [sp, #64]
    stp     x29, x30, [sp, #80]
    mrs     x2, vbar_el2
    stp     x0, x2, [sp, #96]
    adr     x2, guest_vectors
    msr     vbar_el2, x2
    ldr     x2, [x0, #248]
    msr     elr_el2, x2
    msr     spsr_el2, x1
    isb
    ldp     x2, x3, [x0, #16]
    ldp     x4, x5, [x0, #32]
    ldp     x6, x7, [x0, #48]
    ldp     x8, x9, [x0, #64]
    ldp     x10, x11, [x0, #80]
    ldp     x12, x13, [x0, #96]
    ldp     x14, x15, [x0, #112]
    ldp     x16, x17, [x0, #128]
    ldp     x18, x19, [x0, #144]
    ldp     x20, x21, [x0, #160]
    ldp     x22, x23, [x0, #176]
    ldp     x24, x25, [x0, #192]
    ldp     x26, x27, [x0, #208]
    ldp     x28, x29, [x0, #224]
    ldr     x30, [x0, #240]
    ldp     x0, x1, [x0, #0]
    eret
    dsb     nsh
    isb

// An exception at EL2 while the guest's vectors are installed (none is
// expected: IRQs are masked at EL2 up to the eret) goes where it would
// have gone anyway.
.macro HOST_ENTRY n
    .balign 0x80
    b       exception_vectors + \n * 0x80
.endm

// Exits from the guest (lower EL, AArch64). x0 and x1 are freed on the
// stack below the guest frame; x1 carries the kind.
.macro GUEST_EXIT kind
    .balign 0x80
    stp     x0, x1, [sp, #-16]!
    mov     x1, #\kind
    b       guest_exit
.endm

// Lower EL AArch32 cannot happen (HCR_EL2.RW): treat it as an SError.
.macro GUEST_BAD
    .balign 0x80
    stp     x0, x1, [sp, #-16]!
    mov     x1, #3
    b       guest_exit
.endm

.balign 0x800
guest_vectors:
    HOST_ENTRY 0
    HOST_ENTRY 1
    HOST_ENTRY 2
    HOST_ENTRY 3
    HOST_ENTRY 4
    HOST_ENTRY 5
    HOST_ENTRY 6
    HOST_ENTRY 7
    GUEST_EXIT 0
    GUEST_EXIT 1
    GUEST_EXIT 2
    GUEST_EXIT 3
    GUEST_BAD
    GUEST_BAD
    GUEST_BAD
    GUEST_BAD

guest_exit:
    ldr     x0, [sp, #16 + 96]      // regs
    stp     x2, x3, [x0, #16]
    stp     x4, x5, [x0, #32]
    stp     x6, x7, [x0, #48]
    stp     x8, x9, [x0, #64]
    stp     x10, x11, [x0, #80]
    stp     x12, x13, [x0, #96]
    stp     x14, x15, [x0, #112]
    stp     x16, x17, [x0, #128]
    stp     x18, x19, [x0, #144]
    stp     x20, x21, [x0, #160]
    stp     x22, x23, [x0, #176]
    stp     x24, x25, [x0, #192]
    stp     x26, x27, [x0, #208]
    stp     x28, x29, [x0, #224]
    str     x30, [x0, #240]
    ldp     x2, x3, [sp], #16       // the guest's x0, x1
    stp     x2, x3, [x0, #0]
    mrs     x2, elr_el2
    mrs     x3, spsr_el2
    stp     x2, x3, [x0, #248]
    ldr     x2, [sp, #104]          // the host's vectors
    msr     vbar_el2, x2
    isb
    mov     x0, x1
    ldp     x19, x20, [sp, #0]
    ldp     x21, x22, [sp, #16]
    ldp     x23, x24, [sp, #32]
    ldp     x25, x26, [sp, #48]
    ldp     x27, x28, [sp, #64]
    ldp     x29, x30, [sp, #80]
    add     sp, sp, #GUEST_FRAME
    ret

// Thread switching inside the kernel, and FP/SIMD state of user threads.
// The kernel itself is built soft-float and never touches q0-q31.
.arch armv8-a+fp+simd

// switch_context(from: *mut KContext, to: *const KContext)
// KContext = x19-x29, lr, sp (13 words).
.section .text
.global switch_context
switch_context:
    PAIRS   stp, x0, 0, 16, x19, x20, x21, x22, x23, x24, x25, x26, x27, x28, x29, x30
    mov     x2, sp
    str     x2, [x0, #96]
    PAIRS   ldp, x1, 0, 16, x19, x20, x21, x22, x23, x24, x25, x26, x27, x28, x29, x30
    ldr     x2, [x1, #96]
    mov     sp, x2
    ret

// A new thread's first switch lands here, with sp at its user TrapFrame.
.global thread_first_entry
thread_first_entry:
    bl      thread_started
    mov     x0, sp
    b       trap_return

// fp_save(state: *mut FpState): q0-q31, fpcr, fpsr (528 bytes).
.global fp_save
fp_save:
    PAIRS   stp, x0, 0, 32, q0, q1, q2, q3, q4, q5, q6, q7, q8, q9, q10, q11, q12, q13, q14, q15
    PAIRS   stp, x0, 256, 32, q16, q17, q18, q19, q20, q21, q22, q23, q24, q25, q26, q27, q28, q29, q30, q31
    mrs     x1, fpcr
    mrs     x2, fpsr
    add     x0, x0, #512
    stp     x1, x2, [x0]
    ret

// fp_restore(state: *const FpState)
.global fp_restore
fp_restore:
    PAIRS   ldp, x0, 0, 32, q0, q1, q2, q3, q4, q5, q6, q7, q8, q9, q10, q11, q12, q13, q14, q15
    PAIRS   ldp, x0, 256, 32, q16, q17, q18, q19, q20, q21, q22, q23, q24, q25, q26, q27, q28, q29, q30, q31
    add     x3, x0, #512
    ldp     x1, x2, [x3]
    msr     fpcr, x1
    msr     fpsr, x2
    ret

// The SVE state of a guest, at the vector length ZCR_EL2 gives EL2 (the
// guests' limit, set once per CPU; the kernel uses SVE nowhere else):
// z0-z31 (32 VL), p0-p15 (16 VL/8), FFR (VL/8), then fpcr and fpsr.
.arch_extension sve

// sve_save(state: *mut u8)
.global sve_save
sve_save:
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    str     z\n, [x0, #\n, mul vl]
    .endr
    addvl   x1, x0, #16
    addvl   x1, x1, #16
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
    str     p\n, [x1, #\n, mul vl]
    .endr
    rdffr   p0.b
    str     p0, [x1, #16, mul vl]
    ldr     p0, [x1, #0, mul vl]
    addpl   x2, x1, #17
    mrs     x3, fpcr
    mrs     x4, fpsr
    stp     x3, x4, [x2]
    ret

// sve_restore(state: *const u8)
.global sve_restore
sve_restore:
    addvl   x1, x0, #16
    addvl   x1, x1, #16
    ldr     p0, [x1, #16, mul vl]
    wrffr   p0.b
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
    ldr     p\n, [x1, #\n, mul vl]
    .endr
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    ldr     z\n, [x0, #\n, mul vl]
    .endr
    addpl   x2, x1, #17
    ldp     x3, x4, [x2]
    msr     fpcr, x3
    msr     fpsr, x4
    ret

// sve_vl() -> usize: the vector length EL2 runs with, in bytes.
.global sve_vl
sve_vl:
    rdvl    x0, #1
    ret

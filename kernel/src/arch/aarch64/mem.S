// memcpy and memmove for the kernel, in place of the generic ones of
// compiler_builtins (weak symbols), which copy 8 bytes per 4 instructions:
// these move 64 bytes per 12 when source and destination are equally
// aligned. Every exit of a vCPU copies its state (about 900 bytes) a few
// times. No access is ever unaligned: mutually misaligned copies go byte
// by byte, like the small tails.
//
// memcpy(x0 = dst, x1 = src, x2 = n) -> x0; memmove the same, for
// overlapping ranges too. Clobbers x1-x11 and the flags only.
// copy_shared is memcpy under a name the compiler does not know (see
// read_shared in mod.rs).

    .section .text.memcpy, "ax"
    .global memcpy
    .type memcpy, %function
    .global copy_shared
    .type copy_shared, %function
    .balign 16
memcpy:
copy_shared:
    mov     x3, x0
    eor     x4, x0, x1
    tst     x4, #7
    b.ne    5f                      // mutually misaligned: bytes
    // Bytes up to an 8-byte boundary of both.
1:  tst     x1, #7
    b.eq    2f
    cbz     x2, 7f
    ldrb    w4, [x1], #1
    strb    w4, [x3], #1
    sub     x2, x2, #1
    b       1b
    // 64-byte blocks.
2:  subs    x2, x2, #64
    b.lo    4f
3:  ldp     x4, x5, [x1]
    ldp     x6, x7, [x1, #16]
    ldp     x8, x9, [x1, #32]
    ldp     x10, x11, [x1, #48]
    add     x1, x1, #64
    stp     x4, x5, [x3]
    stp     x6, x7, [x3, #16]
    stp     x8, x9, [x3, #32]
    stp     x10, x11, [x3, #48]
    add     x3, x3, #64
    subs    x2, x2, #64
    b.hs    3b
    // 8-byte words.
4:  adds    x2, x2, #56
    b.lo    6f
41: ldr     x4, [x1], #8
    str     x4, [x3], #8
    subs    x2, x2, #8
    b.hs    41b
6:  add     x2, x2, #8
    // Bytes.
5:  cbz     x2, 7f
51: ldrb    w4, [x1], #1
    strb    w4, [x3], #1
    subs    x2, x2, #1
    b.ne    51b
7:  ret
    .size memcpy, . - memcpy
    .size copy_shared, . - copy_shared

    .section .text.memmove, "ax"
    .global memmove
    .type memmove, %function
    .balign 16
memmove:
    // Forward unless the destination starts inside the source (dst - src
    // < n, unsigned): a forward copy reads every byte before it writes
    // over it when dst < src.
    sub     x4, x0, x1
    cmp     x4, x2
    b.hs    memcpy
    // Backward, from the end.
    add     x1, x1, x2
    add     x3, x0, x2
    tst     x4, #7
    b.ne    3f                      // mutually misaligned: bytes
1:  tst     x1, #7
    b.eq    2f
    cbz     x2, 4f
    ldrb    w4, [x1, #-1]!
    strb    w4, [x3, #-1]!
    sub     x2, x2, #1
    b       1b
2:  subs    x2, x2, #8
    b.lo    21f
22: ldr     x4, [x1, #-8]!
    str     x4, [x3, #-8]!
    subs    x2, x2, #8
    b.hs    22b
21: add     x2, x2, #8
3:  cbz     x2, 4f
31: ldrb    w4, [x1, #-1]!
    strb    w4, [x3, #-1]!
    subs    x2, x2, #1
    b.ne    31b
4:  ret
    .size memmove, . - memmove

// svecheck: a guest program that checks that its SVE registers keep their
// values while it runs. It fills z0-z31 with byte ramps of its own (z<n>
// byte j = seed + n + j) and p0-p15 with one more ramp (loaded from
// memory), spins without touching them long enough for the
// vCPU to be switched out and in many times (other vCPUs and VMs, the VMM,
// other tasks on the same CPU), stores them and compares every byte, for
// ROUNDS rounds with a new seed each. The upper parts beyond the 128 bits
// of the v registers are what only an SVE-aware switch keeps.
//
// Built into the guest's initramfs as /bin/svecheck (see mod.rs); exit code
// 0 and "svecheck: ok ..." when every byte was right, 1 and
// "svecheck: z<n> changed" (or p<n>) at the first wrong register.
//
// Linux system calls: write (64), exit (93); none while the registers are
// checked (a system call may discard SVE state beyond the v registers).

        .arch   armv8.2-a+sve
        .equ    ROUNDS, 8
        .equ    SPIN, 20000000          // about 0.1-0.3 s under TCG

        .text
        .global _start
_start:
        sub     sp, sp, #12288          // z0-z31 (up to 8 KiB), p0-p15 twice
        rdvl    x19, #1                 // the vector length in bytes
        lsr     x24, x19, #3            // a predicate's length in bytes
        lsl     x25, x24, #4            // p0-p15's bytes
        add     x22, sp, #8192          // the predicates' pattern
        add     x23, x22, #2048         // where they are stored back
        mov     x20, #ROUNDS
        mov     w21, #0                 // the round's seed

round:
        .irp    n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
        add     w9, w21, #\n
        index   z\n\().b, w9, #1
        .endr

        mov     x11, #0                 // pattern byte k = seed + 0x80 + k
pattern:
        add     w15, w21, w11
        add     w15, w15, #0x80
        strb    w15, [x22, x11]
        add     x11, x11, #1
        cmp     x11, x25
        b.lo    pattern
        .irp    n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
        ldr     p\n, [x22, #\n, mul vl]
        .endr

        ldr     x10, =SPIN
spin:   subs    x10, x10, #1
        b.ne    spin

        .irp    n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
        str     z\n, [sp, #\n, mul vl]
        .endr
        .irp    n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
        str     p\n, [x23, #\n, mul vl]
        .endr

        mov     x11, #0                 // register n
        mov     x12, sp                 // its stored bytes
register:
        mov     x13, #0                 // byte j
byte:   ldrb    w14, [x12], #1
        add     w15, w21, w11
        add     w15, w15, w13
        and     w15, w15, #0xff
        cmp     w14, w15
        b.ne    changed
        add     x13, x13, #1
        cmp     x13, x19
        b.lo    byte
        add     x11, x11, #1
        cmp     x11, #32
        b.lo    register

        mov     x13, #0                 // predicate byte k
predicate:
        ldrb    w14, [x23, x13]
        ldrb    w15, [x22, x13]
        cmp     w14, w15
        b.ne    predicate_changed
        add     x13, x13, #1
        cmp     x13, x25
        b.lo    predicate

        add     w21, w21, #7
        subs    x20, x20, #1
        b.ne    round

        adr     x1, ok
        mov     x2, #(ok_end - ok)
        mov     x3, #0
        b       report

predicate_changed:                      // x13: the byte
        udiv    x11, x13, x24
        mov     w7, #'p'
        b       name
changed:                                // x11: the register
        mov     w7, #'z'
name:
        mov     w4, #10
        udiv    w5, w11, w4
        msub    w6, w5, w4, w11
        add     w5, w5, #'0'
        add     w6, w6, #'0'
        adr     x1, bad
        strb    w7, [x1, #(bad_digits - bad - 1)]
        strb    w5, [x1, #(bad_digits - bad)]
        strb    w6, [x1, #(bad_digits - bad + 1)]
        mov     x2, #(bad_end - bad)
        mov     x3, #1

report:                                 // x1, x2: the line; x3: exit code
        mov     x0, #1
        mov     x8, #64
        svc     #0
        mov     x0, x3
        mov     x8, #93
        svc     #0

        .data
ok:     .ascii  "svecheck: ok, z0-z31 and p0-p15 kept over 8 rounds\n"
ok_end:
bad:    .ascii  "svecheck: z"
bad_digits:
        .ascii  "00 changed\n"
bad_end:

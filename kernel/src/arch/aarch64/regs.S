// Assembler macros shared by entry.S and switch.S (mod.rs assembles the
// three in one block, this file first).

// PAIRS op, base, offset, step, r1, r2, ...: `op r1, r2, [base, #offset]`
// (op: stp or ldp), then the next two registers at offset + step, and so
// on to the end of the list.
.macro PAIRS op, base, offset, step, r1, r2, rest:vararg
    \op     \r1, \r2, [\base, #\offset]
    .ifnb \rest
    PAIRS   \op, \base, (\offset+\step), \step, \rest
    .endif
.endm

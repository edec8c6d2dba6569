//! The one place where a program thread makes a Linux system call
//! (`svc #0`): the task's runtime serves it (the heap's futex and mmap,
//! the runtime's own calls of [`crate::env`]).

/// Linux system call `nr` with `args`, served by the runtime; its raw
/// result (negative: an error number).
///
/// # Safety
///
/// The call with these arguments must touch only memory the caller lets
/// it (the runtime keeps every register but x0).
pub(crate) unsafe fn call(nr: u64, args: [u64; 6]) -> i64 {
    let ret: i64;
    // SAFETY: the caller vouches for what the call does.
    unsafe {
        core::arch::asm!("svc #0", inlateout("x0") args[0] as i64 => ret, in("x1") args[1],
            in("x2") args[2], in("x3") args[3], in("x4") args[4], in("x5") args[5],
            in("x8") nr, options(nostack));
    }
    ret
}

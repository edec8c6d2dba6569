//! FP/SIMD registers belong to each thread: the kernel loads them lazily
//! (on a thread's first use after a switch) and saves them only if used,
//! so these tests switch threads with live FP/SIMD state on one CPU (IPC
//! fast path) and move a thread between CPUs while its state is saved.
//!
//! Each IPC here is one `asm!` block that sets a pattern in d0, d7, d16,
//! d31 and the rounding mode in FPCR, makes the call, and reads them back,
//! so no compiler-generated code can touch the registers in between.

use core::sync::atomic::{AtomicU64, Ordering};

use l4::abi::{Cap, sys};
use l4::{Error, MsgTag, Timeout, Timeouts, utcb};

use crate::fw::R;
use crate::rt::{self, Opts, WAIT_US};

tests! {
    "fp.registers_survive_switches" => survive_switches,
    "fp.state_follows_migration" => follows_migration,
    "fp.registers_survive_sleeps" => survive_sleeps,
}

/// FPCR.RMode = round towards plus infinity (bits 23:22 = 0b01).
const RMODE_PLUS: u64 = 1 << 22;
/// FPCR.RMode bits.
const RMODE_MASK: u64 = 3 << 22;

/// What a thread's FP/SIMD registers held after its IPC returned.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Seen {
    d: [u64; 4],
    rmode: u64,
}

impl Seen {
    /// What `pattern` should have left.
    fn expected(pattern: u64) -> Seen {
        Seen {
            d: [pattern, pattern ^ 1, pattern ^ 2, pattern ^ 3],
            rmode: RMODE_PLUS,
        }
    }
}

/// One native IPC (`x0..x2` as the ABI has them) with `pattern` in the
/// FP/SIMD registers across it. Returns `x0..x2` after the call and what
/// the registers held. FPCR is restored afterwards.
fn fp_ipc(x0: u64, x1: u64, x2: u64, pattern: u64) -> ([u64; 3], Seen) {
    let (r0, r1, r2): (u64, u64, u64);
    let (a, b, c, d, fpcr): (u64, u64, u64, u64, u64);
    // SAFETY: a native system call (the kernel preserves every register
    // but x0..x2, FP/SIMD included); the FP/SIMD registers it writes are
    // declared clobbered and FPCR is put back as it was.
    unsafe {
        core::arch::asm!(
            "mrs {old}, fpcr",
            "orr {t}, {old}, #0x400000",
            "msr fpcr, {t}",
            "fmov d0, {p}",
            "eor {t}, {p}, #1",
            "fmov d7, {t}",
            "eor {t}, {p}, #2",
            "fmov d16, {t}",
            "eor {t}, {p}, #3",
            "fmov d31, {t}",
            "svc #1",
            "fmov {a}, d0",
            "fmov {b}, d7",
            "fmov {c}, d16",
            "fmov {d}, d31",
            "mrs {f}, fpcr",
            "msr fpcr, {old}",
            p = in(reg) pattern,
            t = out(reg) _,
            old = out(reg) _,
            a = out(reg) a,
            b = out(reg) b,
            c = out(reg) c,
            d = out(reg) d,
            f = out(reg) fpcr,
            inout("x0") x0 => r0,
            inout("x1") x1 => r1,
            inout("x2") x2 => r2,
            in("x8") sys::X8_IPC,
            out("v0") _, out("v7") _, out("v16") _, out("v31") _,
            options(nostack),
        );
    }
    (
        [r0, r1, r2],
        Seen {
            d: [a, b, c, d],
            rmode: fpcr & RMODE_MASK,
        },
    )
}

/// The server: MR0 of each call is the pattern it keeps in its registers
/// while it waits for the next call; its reply's MR0 says whether the
/// previous pattern survived that wait (1), or not (0), or 2 at first.
extern "C" fn fp_server(_: u64, _: u64) {
    utcb::clear_recv_items();
    let (mut r, _) = l4::abi::call::ipc_wait(Timeouts::NEVER);
    let mut verdict = 2;
    loop {
        if r.is_err() {
            (r, _) = l4::abi::call::ipc_wait(Timeouts::NEVER);
            continue;
        }
        let pattern = utcb::mr(0);
        utcb::set_mr(0, verdict);
        let x0 = sys::invocation(Cap::INVALID, sys::REPLY_AND_WAIT);
        let (regs, seen) = fp_ipc(
            x0,
            MsgTag::new(0, 1, 0, 0).0,
            Timeouts::NEVER.0 as u64,
            pattern,
        );
        verdict = u64::from(seen == Seen::expected(pattern));
        r = l4::Error::from_status(regs[0]).map(|()| MsgTag(regs[1]));
    }
}

/// Calls `server` `rounds` times with FP/SIMD state of its own; `between`
/// runs before each call (with the round number).
fn ping(server: &rt::Worker, rounds: u64, mut between: impl FnMut(u64) -> R) -> R {
    let x0 = sys::invocation(server.cap().sel(), sys::CALL);
    let timeouts = l4::ipc::timeouts_us(WAIT_US).0 as u64;
    for i in 0..rounds {
        between(i)?;
        let mine = 0x3ff0_0000_0000_0000 | (i << 8);
        utcb::set_mr(0, 0x4010_0000_0000_0000 | (i << 8));
        let (regs, seen) = fp_ipc(x0, MsgTag::new(0, 1, 0, 0).0, timeouts, mine);
        if let Err(e) = l4::Error::from_status(regs[0]) {
            fail!("call {i}: {e:?}");
        }
        ensure!(
            seen == Seen::expected(mine),
            "caller's registers after call {i}: {seen:x?}, expected {:x?}",
            Seen::expected(mine)
        );
        let verdict = utcb::mr(0);
        ensure!(
            verdict == 1 || (i == 0 && verdict == 2),
            "server's registers changed while it waited before call {i} (verdict {verdict})"
        );
    }
    Ok(())
}

/// Caller and server on one CPU at the same priority (the IPC fast path
/// switches between them): each keeps its own registers.
fn survive_switches() -> R {
    let w = rt::spawn(fp_server, 0, 0, &Opts::new())?;
    ping(&w, 200, |_| Ok(()))
}

/// The server moves between CPU 0 and another CPU between calls, with
/// its FP/SIMD state saved while it waits.
fn follows_migration() -> R {
    rt::need_cpus(2)?;
    let w = rt::spawn(fp_server, 0, 0, &Opts::new())?;
    ping(&w, 40, |i| {
        let cpu = if i % 2 == 0 { rt::other_cpu(0) } else { 0 };
        w.run(rt::MAIN_PRIO, cpu)
    })
}

/// Sleeps `us` with `pattern` in the FP/SIMD registers (a receive from
/// nobody that times out: the scheduler, not the IPC fast path, switches
/// away and back). Returns what the registers held after it.
fn fp_sleep(us: u64, pattern: u64) -> Result<Seen, Error> {
    let x0 = sys::invocation(Cap::INVALID, sys::RECV);
    let t = Timeouts::new(Timeout::ZERO, Timeout::from_us(us));
    let (regs, seen) = fp_ipc(x0, MsgTag(0).0, t.0 as u64, pattern);
    match Error::from_status(regs[0]) {
        Ok(()) | Err(Error::RecvTimeout) => Ok(seen),
        Err(e) => Err(e),
    }
}

/// Rounds the sleeper of [`survive_sleeps`] made, and how many of them
/// found their registers changed.
static SLEEPER_ROUNDS: AtomicU64 = AtomicU64::new(0);
static SLEEPER_BAD: AtomicU64 = AtomicU64::new(0);

extern "C" fn fp_sleeper(_: u64, _: u64) {
    let mut round = 0u64;
    loop {
        let pattern = 0x4020_0000_0000_0000 | (round << 8);
        match fp_sleep(300, pattern) {
            Ok(seen) if seen == Seen::expected(pattern) => {}
            _ => {
                SLEEPER_BAD.fetch_add(1, Ordering::Relaxed);
            }
        }
        SLEEPER_ROUNDS.fetch_add(1, Ordering::Relaxed);
        round += 1;
    }
}

/// A thread sleeps with live FP/SIMD state: first alone on its CPU (the
/// CPU idles meanwhile and still holds its registers, which it gets back
/// without a trap), then taking turns with another thread that uses them
/// (its first use after each wake-up traps and loads them).
fn survive_sleeps() -> R {
    let rounds = |first: u64| -> R {
        for i in first..first + 30 {
            let mine = 0x3ff0_0000_0000_0000 | (i << 8);
            let seen = match fp_sleep(200, mine) {
                Ok(seen) => seen,
                Err(e) => fail!("sleep {i}: {e:?}"),
            };
            ensure!(
                seen == Seen::expected(mine),
                "registers after sleep {i}: {seen:x?}, expected {:x?}",
                Seen::expected(mine)
            );
        }
        Ok(())
    };
    rounds(0)?;
    SLEEPER_ROUNDS.store(0, Ordering::Relaxed);
    SLEEPER_BAD.store(0, Ordering::Relaxed);
    let w = rt::spawn(fp_sleeper, 0, 0, &Opts::new())?;
    rounds(100)?;
    drop(w);
    let (n, bad) = (
        SLEEPER_ROUNDS.load(Ordering::Relaxed),
        SLEEPER_BAD.load(Ordering::Relaxed),
    );
    ensure!(n > 0, "the other thread never woke");
    ensure!(
        bad == 0,
        "the other thread found its registers changed {bad} of {n} times"
    );
    Ok(())
}

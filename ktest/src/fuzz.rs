//! Random system calls: threads in tasks of their own throw invocations
//! with random selectors, flags, tags, timeouts, message words and typed
//! items at a handful of real objects (and at empty slots, and at their own
//! task). The kernel must refuse or carry out each one and keep serving:
//! afterwards ktest creates objects and makes IPC as before. A worker may
//! well destroy itself (delete its task, redirect itself, unmap its code);
//! the next one takes over with another seed.

use l4::abi::{Cap, sys};
use l4::{CapRights, MemRights, MsgTag, Timeout, Timeouts, base, ipc, utcb};

use crate::fw::{Ctx, Fail, R};
use crate::rt::{self, Opts, Page, Space, WAIT_US};

tests! {
    "fuzz.random_invocations_survive" => random_invocations,
}

/// Invocations each worker makes (if it lives that long).
const CALLS_PER_WORKER: u64 = 2_500;
/// Invocations in all.
const TOTAL: u64 = 10_000;
/// Workers at most (each one that dies early costs one).
const MAX_WORKERS: u32 = 40;
/// Where a worker counts its invocations (a page ktest reads too).
const PROGRESS_VA: u64 = 0x3000_0000_0000;
/// Capability indices of the worker's objects in its task.
const FIRST_OBJ: u64 = 2;

fn random_invocations() -> R {
    let (mut total, mut accepted, mut refused) = (0, 0, 0);
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut workers = 0;
    while total < TOTAL {
        workers += 1;
        if workers > MAX_WORKERS {
            fail!("{MAX_WORKERS} workers made only {total} invocations");
        }
        let [n, a, r] = one_worker(seed)?;
        (total, accepted, refused) = (total + n, accepted + a, refused + r);
        seed = xorshift(seed);
    }
    // Neither all refused (decoding alone) nor all accepted.
    ensure!(
        accepted > total / 50 && refused > total / 50,
        "{total} invocations: {accepted} accepted, {refused} refused"
    );
    // The kernel still serves: a new thread, an IPC round trip.
    let w = rt::spawn(rt::echo_entry, 0, 0, &Opts::new())?;
    utcb::set_mr(0, 41);
    ipc::ipc_call(
        w.cap().sel(),
        MsgTag::new(0, 1, 0, 0),
        ipc::timeouts_us(WAIT_US),
    )
    .0
    .ctx("call after the random invocations")?;
    ensure_eq!(utcb::mr(0), 42, "echo after the random invocations");
    Ok(())
}

/// Runs one worker with `seed` until it made its calls or stopped making
/// progress; returns how many it made, how many the kernel accepted and
/// how many it refused.
fn one_worker(seed: u64) -> Result<[u64; 3], Fail> {
    let s = Space::bare()?;
    let progress = Page::new(12)?;
    for w in [0, 8, 16] {
        progress.write(w, 0);
    }
    s.map_page(&progress, PROGRESS_VA, MemRights::RW)?;
    // Something to aim at: one of each object, and the worker's own task.
    let (gate, sem, irq) = (rt::gate(7, None)?, rt::semaphore()?, rt::irq()?);
    let (thread, factory, task) = (rt::thread_obj()?, rt::factory(64 * 1024)?, rt::bare_task()?);
    let vm = rt::create("create vm", |d| base::FACTORY.create_vm(d))?;
    let objs = [
        gate.idx(),
        sem.idx(),
        irq.idx(),
        thread.idx(),
        factory.idx(),
        task.idx(),
        vm.idx(),
    ];
    for (i, &o) in objs.iter().enumerate() {
        s.cap()
            .map_cap(base::TASK, o, CapRights::RWS, FIRST_OBJ + i as u64)
            .ctx("give the worker an object")?;
    }
    s.cap()
        .map_cap(
            base::TASK,
            s.idx(),
            CapRights::RWS,
            FIRST_OBJ + objs.len() as u64,
        )
        .ctx("give the worker its task")?;
    let _w = rt::spawn(
        fuzz_entry,
        PROGRESS_VA,
        seed,
        &Opts::new().space(&s).no_handlers(),
    )?;
    let counts = || [progress.read(0), progress.read(8), progress.read(16)];
    let (mut last, mut still) = (0, 0);
    loop {
        rt::sleep_us(20_000)?;
        let n = progress.read(0);
        if n >= CALLS_PER_WORKER {
            return Ok(counts());
        }
        if n == last {
            still += 1;
            if still == 10 {
                return Ok(counts());
            }
        } else {
            (last, still) = (n, 0);
        }
    }
}

pub(crate) use l4_xorshift::step as xorshift;

/// A random timeout: mostly zero, rarely absolute or up to about 130 ms
/// (which, with no partner ready, costs a tick or more); never "never", so
/// the worker does not stop for good.
fn timeout(r: u64) -> Timeout {
    match r % 64 {
        0 => Timeout(Timeout::ABSOLUTE | (r >> 8) as u16),
        1 => Timeout::rel(((r >> 8) % 1024).max(1) as u16, ((r >> 20) % 8) as u8),
        _ => Timeout::ZERO,
    }
}

/// A worker: `CALLS_PER_WORKER` random invocations, counted at `progress`.
extern "C" fn fuzz_entry(progress: u64, seed: u64) {
    let mut r = seed | 1;
    let mut next = || {
        r = xorshift(r);
        r
    };
    for i in 0..CALLS_PER_WORKER {
        for m in 0..12 {
            let v = next();
            // Some words are small (indices, orders), some anything.
            utcb::set_mr(m, if v % 3 == 0 { v >> 56 } else { v });
        }
        utcb::set_br(0, next() & 0xffff_ffff_f0ff);
        let sel = match next() % 8 {
            0 => Cap::INVALID.selector(),
            _ => (next() % 12) << sys::CAP_SHIFT,
        };
        let (flags, reserved, tag) = if next() % 2 == 0 {
            // Plausible: a protocol label, an opcode (the operations sit
            // below 0x20), a few words and items.
            utcb::set_mr(0, next() % 32);
            let flags =
                [sys::CALL, sys::CALL, sys::SEND, sys::SEND_AND_WAIT][(next() % 4) as usize];
            let label = -((next() % 24) as i64);
            let tag = MsgTag::new(label, 1 + (next() % 6) as u32, (next() % 3) as u32, 0);
            (flags, 0, tag)
        } else {
            // Anything.
            let flags = next() % 16;
            let reserved = if next() % 16 == 0 { next() & 0x7f0 } else { 0 };
            let label: i64 = match next() % 4 {
                0 => 0,
                1 => -((next() % 24) as i64),
                2 => (next() % 8) as i64,
                _ => (next() as i64) >> 16,
            };
            let tag = MsgTag::new(
                label,
                (next() % 70) as u32,
                (next() % 4) as u32,
                (next() % 4) as u16,
            );
            (flags, reserved, tag)
        };
        let t = Timeouts::new(timeout(next()), timeout(next()));
        // The temporary debug calls (0xd0, 0xd1) would print garbage or
        // end the task; any other x8 must be refused.
        let x8 = match next() % 32 {
            0 => 0xd2 + next() % 64,
            _ => sys::X8_IPC,
        };
        let status = raw(sel | flags | reserved, tag.0, t.0 as u64, x8);
        let counts = progress as *mut u64;
        // SAFETY: PROGRESS_VA is a page ktest mapped read-write into this
        // task for these three words: calls made, accepted, refused.
        unsafe {
            let which = if status == 0 { 1 } else { 2 };
            let c = counts.add(which);
            core::ptr::write_volatile(c, core::ptr::read_volatile(c) + 1);
            core::ptr::write_volatile(counts, i + 1);
        }
    }
    loop {
        let _ = ipc::sleep_us(u64::MAX);
    }
}

/// A native system call with arbitrary registers; returns the status
/// (`x0`).
fn raw(x0: u64, x1: u64, x2: u64, x8: u64) -> u64 {
    let status;
    // SAFETY: the kernel changes x0..x2 only and touches this task's memory
    // only through its UTCB and receive windows; the asm is not `nomem`.
    unsafe {
        core::arch::asm!("svc #1",
            inout("x0") x0 => status, inout("x1") x1 => _, inout("x2") x2 => _, in("x8") x8,
            options(nostack));
    }
    status
}

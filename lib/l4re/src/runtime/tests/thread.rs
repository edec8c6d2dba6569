//! `clone`, futexes and thread exit.

use super::*;

/// Creates a thread with `clone` as musl's pthread_create does; returns
/// (tid, its slot, its stack, the ptid/ctid word).
pub(super) fn spawn(rt: &mut Runtime<Fake>) -> (u64, usize, u64, u64) {
    let stack = call(rt, 1, 222, &[0, 16 * PAGE, 3, 0x22, u64::MAX, 0]) as u64;
    let sp = stack + 16 * PAGE - 64;
    let word = buffer(rt, &[0xff; 8]);
    let flags = 0x7d0f00; // musl: VM|FS|FILES|SIGHAND|THREAD|SYSVSEM|SETTLS|PARENT_SETTID|CHILD_CLEARTID|DETACHED
    let threads_before: Vec<u64> = rt.b.threads.keys().copied().collect();
    let tid = call(rt, 1, 220, &[flags, sp, word, 0xabc0, word]) as u64;
    let (&cap, &(u, pc, tsp, _)) =
        rt.b.threads
            .iter()
            .find(|(c, _)| !threads_before.contains(c))
            .unwrap();
    assert_eq!((pc, tsp), (TRAMPOLINE, sp));
    let slot = utcb_slot(u).unwrap();
    assert!(slot >= 2 && cap >= 0x100);
    // The trampoline's frame: tls, then the pc after the parent's svc.
    let f = rt.b.prog_read(sp - 16, 16);
    assert_eq!(u64::from_le_bytes(f[..8].try_into().unwrap()), 0xabc0);
    assert_eq!(u64::from_le_bytes(f[8..].try_into().unwrap()), 0x40_1234);
    assert_eq!(
        rt.b.prog_read(word, 4),
        (tid as u32).to_le_bytes(),
        "PARENT_SETTID"
    );
    (tid, slot, sp, word)
}

#[test]
fn clone_futex_join() {
    let mut rt = runtime();
    let (tid, slot, _, word) = spawn(&mut rt);
    assert_eq!(tid, 2);
    assert_eq!(call(&mut rt, slot, 178, &[]), 2, "gettid");
    assert_eq!(call(&mut rt, 1, 178, &[]), 1);
    assert_eq!(call(&mut rt, slot, 172, &[]), 1, "getpid");
    let name = buffer(&mut rt, b"worker0\0");
    assert_eq!(call(&mut rt, slot, 167, &[15, name]), 0);
    assert_eq!(call(&mut rt, slot, 167, &[16, name + 16]), 0);
    assert_eq!(rt.b.prog_read(name + 16, 8), b"worker0\0");
    assert_eq!(call(&mut rt, slot, 167, &[1234, 0]), -EINVAL);
    // The main thread joins: waits on the tid word while it holds the tid.
    let op = fx::WAIT | fx::PRIVATE;
    assert_eq!(call(&mut rt, 1, 98, &[word, op, 99, 0, 0, 0]), -EAGAIN);
    assert_eq!(
        sys(&mut rt, 1, 98, &[word, op, tid, 0, 0, 0]),
        Action::NoReply
    );
    assert!(rt.take_wakeups().is_empty());
    // The thread exits: CHILD_CLEARTID clears the word and wakes the joiner.
    assert_eq!(sys(&mut rt, slot, 93, &[0]), Action::NoReply);
    assert_eq!(rt.b.prog_read(word, 4), [0; 4]);
    let w = rt.take_wakeups();
    assert_eq!(w.len(), 1);
    let main_cap = *rt.b.threads.keys().next().unwrap();
    assert_eq!((w[0].0, w[0].1.x[0], w[0].1.pc), (main_cap, 0, 0x40_1234));
    assert_eq!(rt.thread_count(), 1);
    assert_eq!(rt.b.deleted.len(), 1);
    assert!(rt.b.exit.is_none(), "the task goes on");
    // The last thread's exit ends the task.
    assert_eq!(sys(&mut rt, 1, 93, &[7]), Action::Exit);
    assert_eq!(rt.b.exit, Some(7));
}

#[test]
fn futex_wake_requeue_and_timeouts() {
    let mut rt = runtime();
    let (_, t2, _, _) = spawn(&mut rt);
    let (_, t3, _, _) = spawn(&mut rt);
    let cpus: Vec<u32> = rt.b.threads.values().map(|t| t.3).collect();
    assert_eq!(cpus, [0, 1, 2], "threads spread over the CPUs");
    let f = buffer(&mut rt, &[1, 0, 0, 0, 0, 0, 0, 0]);
    let op = fx::WAIT_BITSET | fx::PRIVATE;
    assert_eq!(
        sys(&mut rt, t2, 98, &[f, op, 1, 0, 0, u32::MAX as u64]),
        Action::NoReply
    );
    assert_eq!(
        sys(&mut rt, t3, 98, &[f, op, 1, 0, 0, u32::MAX as u64]),
        Action::NoReply
    );
    assert_eq!(
        call(&mut rt, 1, 98, &[f + 1, fx::WAKE, 1, 0, 0, 0]),
        -EINVAL
    );
    assert_eq!(
        call(&mut rt, 1, 98, &[f, fx::WAKE | fx::PRIVATE, 1, 0, 0, 0]),
        1
    );
    let w = rt.take_wakeups();
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].1.tpidruro, utcb(t2), "oldest first");
    // Requeue t3 to f+4 and wake it there.
    assert_eq!(
        call(&mut rt, 1, 98, &[f, fx::CMP_REQUEUE, 0, 1, f + 4, 1]),
        1
    );
    assert_eq!(call(&mut rt, 1, 98, &[f, fx::WAKE, 1, 0, 0, 0]), 0);
    assert_eq!(call(&mut rt, 1, 98, &[f + 4, fx::WAKE, 9, 0, 0, 0]), 1);
    assert_eq!(rt.take_wakeups()[0].1.tpidruro, utcb(t3));
    // A timed wait (relative for WAIT) ends with ETIMEDOUT.
    let ts = buffer(
        &mut rt,
        &Timespec {
            sec: 0,
            nsec: 5_000_000,
        }
        .to_bytes(),
    );
    assert_eq!(
        sys(&mut rt, t2, 98, &[f, fx::WAIT, 1, ts, 0, 0]),
        Action::NoReply
    );
    let d = rt.next_deadline().unwrap();
    assert_eq!(d, rt.b.now + 5_000_000);
    rt.b.now = d - 1;
    rt.tick();
    assert!(rt.take_wakeups().is_empty());
    rt.b.now = d;
    rt.tick();
    let w = rt.take_wakeups();
    assert_eq!(w[0].1.x[0] as i64, -ETIMEDOUT);
    // An absolute timeout in the past fails at once; bad timespecs are refused.
    let past = buffer(&mut rt, &Timespec { sec: 0, nsec: 1 }.to_bytes());
    assert_eq!(
        call(&mut rt, t2, 98, &[f, op, 1, past, 0, u32::MAX as u64]),
        -ETIMEDOUT
    );
    let bad = buffer(
        &mut rt,
        &Timespec {
            sec: 0,
            nsec: 2_000_000_000,
        }
        .to_bytes(),
    );
    assert_eq!(call(&mut rt, t2, 98, &[f, fx::WAIT, 1, bad, 0, 0]), -EINVAL);
    assert_eq!(call(&mut rt, t2, 98, &[f, 77, 1, 0, 0, 0]), -ENOSYS);
    assert_eq!(rt.next_deadline(), None);
}

#[test]
fn clone_refusals() {
    let mut rt = runtime();
    // fork and posix_spawn's vfork need a new task.
    assert_eq!(call(&mut rt, 1, 220, &[17, 0, 0, 0, 0]), -ENOSYS);
    assert_eq!(call(&mut rt, 1, 220, &[0x4111, 0x1000, 0, 0, 0]), -ENOSYS);
    assert_eq!(call(&mut rt, 1, 220, &[0x10f00, 0, 0, 0, 0]), -EINVAL);
    // The new stack must be writable.
    assert_eq!(
        call(&mut rt, 1, 220, &[0x10f00, 0x10_0000, 0, 0, 0]),
        -EFAULT
    );
    // UTCB slots run out.
    for _ in 2..UTCB_SLOTS {
        spawn(&mut rt);
    }
    let s = call(&mut rt, 1, 222, &[0, PAGE, 3, 0x22, u64::MAX, 0]) as u64;
    assert_eq!(
        call(&mut rt, 1, 220, &[0x10f00, s + PAGE, 0, 0, 0]),
        -EAGAIN
    );
    assert_eq!(rt.thread_count(), UTCB_SLOTS - 1);
}

#[test]
fn threads_go_round_the_cpus() {
    use crate::runtime::thread::nth_cpu;
    let cpus: Vec<u32> = (0..5).map(|n| nth_cpu(0b1010_0100, n)).collect();
    assert_eq!(cpus, [2, 5, 7, 2, 5]);
    assert_eq!(nth_cpu(1, 7), 0);
}

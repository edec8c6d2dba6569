//! The big kernel lock's algorithm: a test-and-set lock whose waiters spin
//! for a while and then sleep until a release wakes one of them.
//!
//! The kernel (`bkl.rs`) supplies the waiting through [`Waiting`]: `wfe`
//! on an exclusive load to spin, `wfi` to sleep, an SGI to wake. Under
//! QEMU, `wfe` is a plain yield, so with a host thread per emulated CPU and
//! fewer host cores than CPUs, spinning waiters would keep the host cores
//! from a holder the host preempted; `wfi` gives them back. The lock hands
//! out no turns for the same reason: a ticket lock waits for its next owner
//! even while the host has preempted it.
//!
//! No wake-up is lost: a sleeper announces itself in [`SleepLock`]'s
//! sleeper mask and then looks at the lock word, a release clears the lock
//! word and then looks at the mask (all four accesses sequentially
//! consistent), so at least one of them sees the other.

use core::sync::atomic::{AtomicU32, Ordering};

/// How a CPU waits for the lock.
pub trait Waiting {
    /// The calling CPU's number (below 32).
    fn cpu(&self) -> usize;
    /// Waits, at most `turns` times, for `word` to become 0; whether it
    /// did (acquire ordering).
    fn spin_until_free(&self, word: &AtomicU32, turns: u32) -> bool;
    /// Sleeps until [`Waiting::wake`] for this CPU, or any other event; a
    /// wake-up sent before the sleep ends it at once (a pending interrupt
    /// ends `wfi`).
    fn sleep(&self);
    /// Ends CPU `cpu`'s [`Waiting::sleep`].
    fn wake(&self, cpu: usize);
    /// A clock for [`Waited::since`] (any unit; read only when the lock
    /// was taken).
    fn now(&self) -> u64 {
        0
    }
}

/// How a [`SleepLock::lock`] that found the lock taken waited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Waited {
    /// [`Waiting::now`] when the wait began.
    pub since: u64,
    /// How often the waiter slept.
    pub sleeps: u32,
}

/// The lock word, the mask of sleeping waiters and the number of spinning
/// ones.
pub struct SleepLock {
    locked: AtomicU32,
    sleepers: AtomicU32,
    spinners: AtomicU32,
}

impl Default for SleepLock {
    fn default() -> Self {
        Self::new()
    }
}

impl SleepLock {
    /// A free lock.
    pub const fn new() -> SleepLock {
        SleepLock {
            locked: AtomicU32::new(0),
            sleepers: AtomicU32::new(0),
            spinners: AtomicU32::new(0),
        }
    }

    /// Takes the lock: tries, spins up to `spin_turns` turns, then sleeps
    /// until a release, and tries again. `None` if it was free at once,
    /// else how the caller waited (the lock costs nothing more when free).
    pub fn lock(&self, w: &impl Waiting, spin_turns: u32) -> Option<Waited> {
        if self.locked.swap(1, Ordering::Acquire) == 0 {
            return None;
        }
        let mut waited = Waited {
            since: w.now(),
            sleeps: 0,
        };
        loop {
            self.spinners.fetch_add(1, Ordering::SeqCst);
            let free = w.spin_until_free(&self.locked, spin_turns);
            self.spinners.fetch_sub(1, Ordering::SeqCst);
            if !free && self.sleep(w) {
                waited.sleeps += 1;
            }
            if self.locked.swap(1, Ordering::Acquire) == 0 {
                return Some(waited);
            }
        }
    }

    /// Sleeps while the lock is taken (or until any event: the caller
    /// tries again either way); whether it slept.
    fn sleep(&self, w: &impl Waiting) -> bool {
        let me = 1u32 << w.cpu();
        self.sleepers.fetch_or(me, Ordering::SeqCst);
        let taken = self.locked.load(Ordering::SeqCst) != 0;
        if taken {
            w.sleep();
        }
        self.sleepers.fetch_and(!me, Ordering::SeqCst);
        taken
    }

    /// Releases the lock (the caller holds it) and wakes the first
    /// sleeper after the calling CPU, so that each gets its turn; but not
    /// while another CPU spins for the lock: that one takes it, and its
    /// release decides again (a sleeper woken then would mostly find the
    /// lock taken and sleep again, a wake-up for nothing).
    pub fn unlock(&self, w: &impl Waiting) {
        self.locked.store(0, Ordering::SeqCst);
        let sleepers = self.sleepers.load(Ordering::SeqCst);
        if sleepers != 0 && self.spinners.load(Ordering::SeqCst) == 0 {
            let after = w.cpu() as u32 + 1;
            let next = (after + sleepers.rotate_right(after).trailing_zeros()) % u32::BITS;
            w.wake(next as usize);
        }
    }

    /// Whether some CPU holds the lock.
    pub fn is_locked(&self) -> bool {
        self.locked.load(Ordering::Relaxed) != 0
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
    use std::thread;
    use std::time::Duration;
    use std::vec::Vec;

    /// How long a sleep waits for its wake-up before it counts as lost.
    const TIMEOUT: Duration = Duration::from_secs(2);

    /// CPUs as host threads: a spin is a yield, a sleep parks the thread
    /// until a wake-up (which stays pending, like an SGI, until a sleep
    /// takes it), and a sleep that ends by its timeout while nobody holds
    /// the lock counts as a lost wake-up.
    struct Cpus {
        threads: Vec<std::sync::OnceLock<thread::Thread>>,
        pending: Vec<AtomicBool>,
        lost: AtomicUsize,
        wakes: AtomicUsize,
    }

    struct Cpu<'a> {
        n: usize,
        all: &'a Cpus,
        lock: &'a SleepLock,
    }

    impl Waiting for Cpu<'_> {
        fn cpu(&self) -> usize {
            self.n
        }
        fn spin_until_free(&self, word: &AtomicU32, turns: u32) -> bool {
            for _ in 0..turns {
                if word.load(Ordering::Acquire) == 0 {
                    return true;
                }
                thread::yield_now();
            }
            false
        }
        fn sleep(&self) {
            if self.all.pending[self.n].swap(false, Ordering::SeqCst) {
                return;
            }
            // A park may also end early (an unpark whose wake-up the
            // check above took); only the full timeout counts.
            let start = std::time::Instant::now();
            thread::park_timeout(TIMEOUT);
            let woken = self.all.pending[self.n].swap(false, Ordering::SeqCst);
            if !woken && start.elapsed() >= TIMEOUT && !self.lock.is_locked() {
                self.all.lost.fetch_add(1, Ordering::SeqCst);
            }
        }
        fn wake(&self, cpu: usize) {
            self.all.wakes.fetch_add(1, Ordering::SeqCst);
            self.all.pending[cpu].store(true, Ordering::SeqCst);
            if let Some(t) = self.all.threads[cpu].get() {
                t.unpark();
            }
        }
    }

    /// `cpus` threads take the lock `rounds` times each and increment a
    /// counter non-atomically inside: mutual exclusion keeps every
    /// increment; returns (lost wake-ups, wake-ups sent).
    fn stress(cpus: usize, rounds: u64, spin_turns: u32) -> (usize, usize) {
        let lock = Arc::new(SleepLock::new());
        let all = Arc::new(Cpus {
            threads: (0..cpus).map(|_| std::sync::OnceLock::new()).collect(),
            pending: (0..cpus).map(|_| AtomicBool::new(false)).collect(),
            lost: AtomicUsize::new(0),
            wakes: AtomicUsize::new(0),
        });
        let counter = Arc::new(AtomicU64::new(0));
        let handles: Vec<_> = (0..cpus)
            .map(|n| {
                let (lock, all, counter) = (lock.clone(), all.clone(), counter.clone());
                thread::spawn(move || {
                    all.threads[n].set(thread::current()).unwrap();
                    let me = Cpu {
                        n,
                        all: &all,
                        lock: &lock,
                    };
                    for i in 0..rounds {
                        lock.lock(&me, spin_turns);
                        // Not an atomic increment: only the lock keeps
                        // another CPU's store from coming in between.
                        let v = counter.load(Ordering::Relaxed);
                        if i % 64 == 0 {
                            thread::yield_now();
                        }
                        counter.store(v + 1, Ordering::Relaxed);
                        lock.unlock(&me);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(counter.load(Ordering::SeqCst), cpus as u64 * rounds);
        assert!(!lock.is_locked());
        (
            all.lost.load(Ordering::SeqCst),
            all.wakes.load(Ordering::SeqCst),
        )
    }

    #[test]
    fn waiters_that_sleep_at_once_lose_no_wake_up() {
        let (lost, wakes) = stress(4, 5_000, 0);
        assert_eq!(lost, 0);
        assert!(wakes > 0, "the sleep path was never taken");
    }

    #[test]
    fn waiters_that_spin_first_keep_mutual_exclusion() {
        let (lost, _) = stress(4, 5_000, 64);
        assert_eq!(lost, 0);
    }

    /// CPU 1 waits for the lock CPU 0 holds; `release_in` says where in
    /// CPU 1's wait CPU 0 releases it. Returns whether CPU 1 slept with the
    /// lock free and no wake-up coming (it would never wake), and whether
    /// CPU 0's release woke it.
    fn race(release_in_spin: bool) -> (bool, bool, Option<Waited>) {
        use core::cell::Cell;
        struct Cpu0<'a>(&'a Cell<bool>);
        impl Waiting for Cpu0<'_> {
            fn cpu(&self) -> usize {
                0
            }
            fn spin_until_free(&self, _: &AtomicU32, _: u32) -> bool {
                unreachable!()
            }
            fn sleep(&self) {
                unreachable!()
            }
            fn wake(&self, cpu: usize) {
                assert_eq!(cpu, 1);
                self.0.set(true);
            }
        }
        struct Cpu1<'a> {
            lock: &'a SleepLock,
            release_in_spin: bool,
            released: Cell<bool>,
            woken: &'a Cell<bool>,
            stuck: Cell<bool>,
        }
        impl Cpu1<'_> {
            fn release(&self) {
                if !self.released.replace(true) {
                    self.lock.unlock(&Cpu0(self.woken));
                }
            }
        }
        impl Waiting for Cpu1<'_> {
            fn cpu(&self) -> usize {
                1
            }
            fn spin_until_free(&self, _: &AtomicU32, _: u32) -> bool {
                if self.release_in_spin {
                    // After the failed try, before the sleep.
                    self.release();
                }
                false
            }
            fn sleep(&self) {
                self.release();
                if !self.lock.is_locked() && !self.woken.get() {
                    self.stuck.set(true);
                }
            }
            fn wake(&self, _: usize) {
                unreachable!()
            }
            fn now(&self) -> u64 {
                7
            }
        }
        let lock = SleepLock::new();
        let woken = Cell::new(false);
        lock.locked.store(1, Ordering::SeqCst);
        let cpu1 = Cpu1 {
            lock: &lock,
            release_in_spin,
            released: Cell::new(false),
            woken: &woken,
            stuck: Cell::new(false),
        };
        let waited = lock.lock(&cpu1, 0);
        assert!(lock.is_locked(), "CPU 1 holds the lock");
        assert_eq!(lock.sleepers.load(Ordering::SeqCst), 0);
        (cpu1.stuck.get(), woken.get(), waited)
    }

    #[test]
    fn a_release_before_the_waiter_sleeps_is_seen() {
        let waited = Waited {
            since: 7,
            sleeps: 0,
        };
        assert_eq!(race(true), (false, false, Some(waited)));
    }

    #[test]
    fn a_release_while_the_waiter_sleeps_wakes_it() {
        let waited = Waited {
            since: 7,
            sleeps: 1,
        };
        assert_eq!(race(false), (false, true, Some(waited)));
    }

    #[test]
    fn a_free_lock_is_taken_without_waiting() {
        struct Alone;
        impl Waiting for Alone {
            fn cpu(&self) -> usize {
                0
            }
            fn spin_until_free(&self, _: &AtomicU32, _: u32) -> bool {
                unreachable!()
            }
            fn sleep(&self) {
                unreachable!()
            }
            fn wake(&self, _: usize) {
                unreachable!()
            }
        }
        let lock = SleepLock::new();
        assert_eq!(lock.lock(&Alone, 8), None);
        assert!(lock.is_locked());
    }

    #[test]
    fn the_next_sleeper_after_the_releasing_cpu_is_woken() {
        struct Record(usize, std::sync::Mutex<Vec<usize>>);
        impl Waiting for Record {
            fn cpu(&self) -> usize {
                self.0
            }
            fn spin_until_free(&self, _: &AtomicU32, _: u32) -> bool {
                false
            }
            fn sleep(&self) {}
            fn wake(&self, cpu: usize) {
                self.1.lock().unwrap().push(cpu);
            }
        }
        let lock = SleepLock::new();
        for (me, sleepers, next) in [
            (2, 0b1001, 3),
            (3, 0b1001, 0),
            (0, 0b1001, 3),
            (31, 0b10, 1),
        ] {
            let r = Record(me, Default::default());
            lock.sleepers.store(sleepers, Ordering::SeqCst);
            lock.locked.store(1, Ordering::SeqCst);
            lock.unlock(&r);
            assert_eq!(
                *r.1.lock().unwrap(),
                [next],
                "CPU {me}, sleepers {sleepers:#b}"
            );
        }
        lock.sleepers.store(0, Ordering::SeqCst);
        let r = Record(1, Default::default());
        lock.unlock(&r);
        assert!(r.1.lock().unwrap().is_empty(), "no sleeper, no wake-up");
        // A CPU spinning for the lock takes it: the sleeper waits for the
        // next release.
        lock.sleepers.store(0b100, Ordering::SeqCst);
        lock.spinners.store(1, Ordering::SeqCst);
        lock.locked.store(1, Ordering::SeqCst);
        lock.unlock(&r);
        assert!(r.1.lock().unwrap().is_empty(), "a spinner, no wake-up");
        lock.spinners.store(0, Ordering::SeqCst);
        lock.locked.store(1, Ordering::SeqCst);
        lock.unlock(&r);
        assert_eq!(*r.1.lock().unwrap(), [2], "no spinner any more");
    }
}

//! The big kernel lock. The kernel runs to completion with interrupts
//! masked; one lock serialises all kernel state across CPUs. It is taken on
//! every entry from EL0 and by the idle loop, and released on the way back
//! to EL0 or into `wfi`. A thread switch hands it over.
//!
//! Holding the lock is holding a [`Guard`]: [`lock`] returns one, dropping
//! it unlocks, and the state the lock protects ([`Locked`]) is reached
//! only through `&mut Guard`, so the borrow checker sees to it that one
//! reference at a time exists.

use core::cell::UnsafeCell;
use core::marker::PhantomData;
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering, compiler_fence};

use kernel_core::sleeplock::{SleepLock, Waited, Waiting};

/// The lock (its algorithm: [`kernel_core::sleeplock`]).
static LOCK: SleepLock = SleepLock::new();
/// Turns of `wfe` a waiter spends before it sleeps in `wfi`. At 64, a
/// machine with a QEMU thread per CPU on as many host cores ran `uvmm-2vm`
/// 60% slower (waiters slept and paid the wake-up for short holds).
const SPIN_TURNS: u32 = 2048;
const NOBODY: usize = usize::MAX;
/// The CPU that holds the lock (debug builds only, for assertions).
static OWNER: AtomicUsize = AtomicUsize::new(NOBODY);

/// How one CPU waited for the lock so far: waits, the counter ticks they
/// took, and the sleeps among them. Written by that CPU once it holds the
/// lock (a free lock costs nothing here); read by jdb.
struct Waits {
    count: AtomicU64,
    ticks: AtomicU64,
    sleeps: AtomicU64,
}

static WAITS: [Waits; crate::arch::MAX_CPUS] = [const {
    Waits {
        count: AtomicU64::new(0),
        ticks: AtomicU64::new(0),
        sleeps: AtomicU64::new(0),
    }
}; crate::arch::MAX_CPUS];

/// CPU `cpu`'s waits for the lock: (waits, counter ticks, sleeps).
pub fn waits(cpu: usize) -> (u64, u64, u64) {
    WAITS.get(cpu).map_or((0, 0, 0), |w| {
        (
            w.count.load(Ordering::Relaxed),
            w.ticks.load(Ordering::Relaxed),
            w.sleeps.load(Ordering::Relaxed),
        )
    })
}

/// Counts a wait of this CPU (it holds the lock now).
#[cold]
fn record(waited: Waited) {
    if let Some(w) = WAITS.get(crate::arch::cpu_id()) {
        let ticks = crate::arch::counter().saturating_sub(waited.since);
        w.count.fetch_add(1, Ordering::Relaxed);
        w.ticks.fetch_add(ticks, Ordering::Relaxed);
        w.sleeps
            .fetch_add(u64::from(waited.sleeps), Ordering::Relaxed);
    }
}

/// Proof that this CPU holds the big kernel lock; unlocks when dropped.
/// Not `Send`: the lock belongs to the CPU that took it (a thread switch
/// hands it to the thread switched to, which holds its own guard).
pub struct Guard {
    _cpu_bound: PhantomData<*mut ()>,
}

/// How this CPU waits for the lock: `wfe` on an exclusive load (a
/// release ends it at once on hardware), `wfi`, and an SGI to wake.
struct Hw;

impl Waiting for Hw {
    fn cpu(&self) -> usize {
        crate::arch::cpu_id()
    }
    fn spin_until_free(&self, word: &AtomicU32, turns: u32) -> bool {
        crate::arch::wait_turns_until_eq(word, 0, turns)
    }
    fn sleep(&self) {
        crate::arch::wait_for_interrupt();
        // What follows is not before the wait (`wfi` touches no memory to
        // the compiler).
        compiler_fence(Ordering::SeqCst);
    }
    fn wake(&self, cpu: usize) {
        crate::platform::gic::send_lock_wake(cpu);
    }
    fn now(&self) -> u64 {
        crate::arch::counter()
    }
}

/// Takes the lock (spinning, then sleeping: see
/// [`kernel_core::sleeplock`]).
pub fn lock() -> Guard {
    debug_assert!(!held_here(), "BKL taken twice on one CPU");
    if let Some(waited) = LOCK.lock(&Hw, SPIN_TURNS) {
        record(waited);
    }
    if cfg!(debug_assertions) {
        OWNER.store(crate::arch::cpu_id(), Ordering::Relaxed);
    }
    Guard {
        _cpu_bound: PhantomData,
    }
}

impl Guard {
    /// The guard of a lock this CPU already holds without one: taken by
    /// code that has ended (the fast path that gave up, a thread switch
    /// that arrives on a new thread's stack).
    ///
    /// # Safety
    /// This CPU holds the lock and no other guard for it is alive.
    pub unsafe fn adopt() -> Guard {
        debug_assert!(held_here() || !cfg!(debug_assertions));
        Guard {
            _cpu_bound: PhantomData,
        }
    }

    /// Keeps the lock past the guard: whoever goes on (entry.S, or the
    /// general path through [`Guard::adopt`]) releases it.
    pub fn keep(self) {
        core::mem::forget(self);
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        unlock();
    }
}

/// Releases a lock whose guard was kept ([`Guard::keep`]): entry.S, once
/// a fast-path switch stands on the new thread's stack.
///
/// # Safety
/// This CPU holds the lock, no guard for it is alive, and nothing uses
/// kernel state after this.
pub unsafe fn release_kept() {
    unlock();
}

fn unlock() {
    if cfg!(debug_assertions) {
        OWNER.store(NOBODY, Ordering::Relaxed);
    }
    LOCK.unlock(&Hw);
}

/// Whether this CPU holds the lock. Only tracked in debug builds (for
/// assertions); always false in release builds.
fn held_here() -> bool {
    cfg!(debug_assertions) && OWNER.load(Ordering::Relaxed) == crate::arch::cpu_id()
}

/// Kernel state that only the holder of the big kernel lock touches.
pub struct Locked<T>(UnsafeCell<T>);

// SAFETY: the value is reached only through `get`, which needs the guard
// of the one lock: one CPU at a time, one reference at a time.
unsafe impl<T: Send> Sync for Locked<T> {}

impl<T> Locked<T> {
    pub const fn new(v: T) -> Self {
        Locked(UnsafeCell::new(v))
    }

    /// The state, for as long as the guard is lent.
    #[inline(always)]
    pub fn get<'a>(&'a self, _held: &'a mut Guard) -> &'a mut T {
        // SAFETY: the guard proves the lock is held by this CPU, and the
        // exclusive borrow of it lasts as long as the reference: no other
        // reference from any `Locked` can be alive meanwhile.
        unsafe { &mut *self.0.get() }
    }
}

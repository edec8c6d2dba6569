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
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering, compiler_fence};

/// The lock word: 1 while a CPU holds the lock.
static LOCKED: AtomicU32 = AtomicU32::new(0);
/// CPUs waiting for the lock in `wfi` (bit per CPU); the release wakes
/// one of them with an SGI.
static SLEEPERS: AtomicU32 = AtomicU32::new(0);
/// Turns of `wfe` a waiter spends before it sleeps in `wfi`.
const SPIN_TURNS: u32 = 2048;
const NOBODY: usize = usize::MAX;
/// The CPU that holds the lock (debug builds only, for assertions).
static OWNER: AtomicUsize = AtomicUsize::new(NOBODY);

/// Proof that this CPU holds the big kernel lock; unlocks when dropped.
/// Not `Send`: the lock belongs to the CPU that took it (a thread switch
/// hands it to the thread switched to, which holds its own guard).
pub struct Guard {
    _cpu_bound: PhantomData<*mut ()>,
}

/// Takes the lock.
///
/// A waiter first spins in `wfe` (a release ends that at once on
/// hardware), then sleeps in `wfi` until a release wakes it. Under QEMU
/// with a host thread per emulated CPU and fewer host cores than CPUs, the
/// host may preempt the holder: `wfe` is only a yield there, so spinning
/// waiters would take the host cores from it, while `wfi` gives them back.
/// For the same reason the lock hands out no turns (a ticket lock waits for
/// its next owner even while the host has preempted it).
pub fn lock() -> Guard {
    debug_assert!(!held_here(), "BKL taken twice on one CPU");
    while LOCKED.swap(1, Ordering::Acquire) != 0 {
        if !crate::arch::wait_turns_until_eq(&LOCKED, 0, SPIN_TURNS) {
            sleep();
        }
    }
    if cfg!(debug_assertions) {
        OWNER.store(crate::arch::cpu_id(), Ordering::Relaxed);
    }
    Guard {
        _cpu_bound: PhantomData,
    }
}

/// Waits in `wfi` until the lock is released (or any interrupt is
/// pending: the caller tries again either way).
fn sleep() {
    let me = 1 << crate::arch::cpu_id();
    // With the release's store and load (both SeqCst), either it sees this
    // CPU among the sleepers, or this CPU sees the lock free.
    SLEEPERS.fetch_or(me, Ordering::SeqCst);
    if LOCKED.load(Ordering::SeqCst) != 0 {
        crate::arch::wait_for_interrupt();
    }
    // Not before the wait (`wfi` touches no memory to the compiler).
    compiler_fence(Ordering::SeqCst);
    SLEEPERS.fetch_and(!me, Ordering::Relaxed);
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
    // The store also ends spinning waiters' `wfe` (see
    // arch::wait_until_eq).
    LOCKED.store(0, Ordering::SeqCst);
    let sleepers = SLEEPERS.load(Ordering::SeqCst);
    if sleepers != 0 {
        // The next sleeper after this CPU, so that each gets its turn.
        let me = crate::arch::cpu_id() as u32;
        let next = (me + 1 + sleepers.rotate_right(me + 1).trailing_zeros()) % u32::BITS;
        crate::platform::gic::send_lock_wake(next as usize);
    }
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

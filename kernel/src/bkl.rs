//! The big kernel lock. The kernel runs to completion with interrupts
//! masked; one lock serialises all kernel state across CPUs. It is taken on
//! every entry from EL0 and by the idle loop, and released on the way back
//! to EL0 or into `wfi`. A thread switch hands it over.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

/// The ticket lock: the next ticket to hand out, and the one served.
/// Side by side, so one address reaches both.
struct Tickets {
    next: AtomicU32,
    serving: AtomicU32,
}

static TICKETS: Tickets = Tickets {
    next: AtomicU32::new(0),
    serving: AtomicU32::new(0),
};
const NOBODY: usize = usize::MAX;
static OWNER: AtomicUsize = AtomicUsize::new(NOBODY);

/// Takes the lock (ticket order, so every CPU gets its turn).
pub fn lock() {
    debug_assert!(!held_here(), "BKL taken twice on one CPU");
    let t = &TICKETS;
    let ticket = t.next.fetch_add(1, Ordering::Relaxed);
    // Sleeps until the unlock that serves our ticket (on an emulator this
    // also yields the host thread to the CPU holding the lock).
    crate::arch::wait_until_eq(&t.serving, ticket);
    if cfg!(debug_assertions) {
        OWNER.store(crate::arch::cpu_id(), Ordering::Relaxed);
    }
}

pub fn unlock() {
    if cfg!(debug_assertions) {
        OWNER.store(NOBODY, Ordering::Relaxed);
    }
    // Only the holder changes `serving`, so a plain increment will do; the
    // store wakes the waiters (see arch::wait_until_eq).
    let serving = &TICKETS.serving;
    serving.store(
        serving.load(Ordering::Relaxed).wrapping_add(1),
        Ordering::Release,
    );
}

/// Whether this CPU holds the lock. Only tracked in debug builds (for
/// assertions); always false in release builds.
pub fn held_here() -> bool {
    cfg!(debug_assertions) && OWNER.load(Ordering::Relaxed) == crate::arch::cpu_id()
}

/// Kernel state that only the holder of the big kernel lock touches.
pub struct Locked<T>(UnsafeCell<T>);

// SAFETY: every access goes through `get`, which requires the lock.
unsafe impl<T: Send> Sync for Locked<T> {}

impl<T> Locked<T> {
    pub const fn new(v: T) -> Self {
        Locked(UnsafeCell::new(v))
    }

    /// The state.
    ///
    /// # Safety
    /// The caller holds the big kernel lock and no other reference obtained
    /// from `get` is alive (the kernel's entry points each take one and pass
    /// it down; none is held across a thread switch).
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn get(&self) -> &mut T {
        debug_assert!(held_here());
        // SAFETY: the caller's contract: lock held, no other live reference.
        unsafe { &mut *self.0.get() }
    }
}

//! Futex waiters: which thread waits on which address, in arrival order,
//! with an optional deadline. The runtime checks the futex word itself
//! (the program shares its address space) and keeps a waiting thread
//! without a reply; waking it is a deferred reply.

use alloc::vec::Vec;

/// A waiting thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Waiter {
    /// The futex address.
    pub addr: u64,
    /// The wait's bit set (`u32::MAX` for plain waits).
    pub bitset: u32,
    /// The thread (its tid).
    pub tid: u32,
    /// When the wait times out (runtime clock, ns).
    pub deadline: Option<u64>,
}

/// All futex waiters of the task.
#[derive(Clone, Debug, Default)]
pub struct FutexTable {
    waiters: Vec<Waiter>,
}

impl FutexTable {
    /// No waiters.
    pub const fn new() -> FutexTable {
        FutexTable {
            waiters: Vec::new(),
        }
    }

    /// `tid` waits on `addr` (a thread waits at most once).
    pub fn wait(&mut self, addr: u64, bitset: u32, tid: u32, deadline: Option<u64>) {
        self.remove(tid);
        self.waiters.push(Waiter {
            addr,
            bitset,
            tid,
            deadline,
        });
    }

    /// Wakes up to `n` waiters on `addr` whose bit set meets `bitset`,
    /// oldest first; returns their tids.
    pub fn wake(&mut self, addr: u64, n: u32, bitset: u32) -> Vec<u32> {
        let mut woken = Vec::new();
        self.waiters.retain(|w| {
            if (woken.len() as u32) < n && w.addr == addr && w.bitset & bitset != 0 {
                woken.push(w.tid);
                false
            } else {
                true
            }
        });
        woken
    }

    /// Wakes up to `n_wake` waiters on `from` and moves up to `n_move` of
    /// the rest to `to`; returns the woken tids and the number moved.
    pub fn requeue(&mut self, from: u64, to: u64, n_wake: u32, n_move: u32) -> (Vec<u32>, u32) {
        let woken = self.wake(from, n_wake, u32::MAX);
        let mut moved = 0;
        for w in self.waiters.iter_mut() {
            if moved < n_move && w.addr == from {
                w.addr = to;
                moved += 1;
            }
        }
        (woken, moved)
    }

    /// Removes and returns the waiters whose deadline is at or before
    /// `now`.
    pub fn expire(&mut self, now: u64) -> Vec<u32> {
        let mut out = Vec::new();
        self.waiters.retain(|w| {
            if w.deadline.is_some_and(|d| d <= now) {
                out.push(w.tid);
                false
            } else {
                true
            }
        });
        out
    }

    /// Forgets `tid` (it ended); whether it was waiting.
    pub fn remove(&mut self, tid: u32) -> bool {
        let before = self.waiters.len();
        self.waiters.retain(|w| w.tid != tid);
        before != self.waiters.len()
    }

    /// The earliest deadline.
    pub fn next_deadline(&self) -> Option<u64> {
        self.waiters.iter().filter_map(|w| w.deadline).min()
    }

    /// Number of waiters.
    pub fn len(&self) -> usize {
        self.waiters.len()
    }

    /// Whether nobody waits.
    pub fn is_empty(&self) -> bool {
        self.waiters.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_wake_in_order() {
        let mut f = FutexTable::new();
        f.wait(0x100, u32::MAX, 1, None);
        f.wait(0x100, u32::MAX, 2, None);
        f.wait(0x200, u32::MAX, 3, None);
        f.wait(0x100, u32::MAX, 4, None);
        assert_eq!(f.wake(0x100, 2, u32::MAX), [1, 2]);
        assert_eq!(f.wake(0x100, 0, u32::MAX), [] as [u32; 0]);
        assert_eq!(f.wake(0x300, 10, u32::MAX), [] as [u32; 0]);
        assert_eq!(f.wake(0x100, u32::MAX, u32::MAX), [4]);
        assert_eq!(f.len(), 1);
        // A thread waits only once.
        f.wait(0x300, u32::MAX, 3, None);
        assert_eq!(f.len(), 1);
        assert_eq!(f.wake(0x200, 1, u32::MAX), [] as [u32; 0]);
    }

    #[test]
    fn bitsets() {
        let mut f = FutexTable::new();
        f.wait(0x10, 0b01, 1, None);
        f.wait(0x10, 0b10, 2, None);
        assert_eq!(f.wake(0x10, 5, 0b10), [2]);
        assert_eq!(f.wake(0x10, 5, 0b10), [] as [u32; 0]);
        assert_eq!(f.wake(0x10, 5, u32::MAX), [1]);
    }

    #[test]
    fn requeue_and_timeouts() {
        let mut f = FutexTable::new();
        for t in 1..=4 {
            f.wait(0x10, u32::MAX, t, Some(100 * t as u64));
        }
        let (woken, moved) = f.requeue(0x10, 0x20, 1, 2);
        assert_eq!((woken, moved), (alloc::vec![1], 2));
        assert_eq!(f.wake(0x20, 9, u32::MAX), [2, 3]);
        assert_eq!(f.next_deadline(), Some(400));
        f.wait(0x30, u32::MAX, 5, Some(50));
        f.wait(0x30, u32::MAX, 6, None);
        assert_eq!(f.next_deadline(), Some(50));
        assert_eq!(f.expire(399), [5]);
        assert_eq!(f.expire(400), [4]);
        assert!(f.remove(6));
        assert!(!f.remove(6));
        assert!(f.is_empty());
        assert_eq!(f.next_deadline(), None);
    }
}

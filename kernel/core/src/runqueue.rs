//! Scheduling: fixed priorities 0..=255 (higher runs first), round robin
//! within a priority by quanta, one run queue per CPU.
//!
//! A thread is in its CPU's [`RunQueue`] while it is ready and **not**
//! running: the running thread is outside, so handing the CPU from one
//! thread to another that it wakes (IPC) touches no queue at all.
//! [`RunQueue::choose`] decides what runs next: the running thread goes on
//! unless a queued thread has a higher priority, or the same priority
//! while its quantum ran out ([`RunQueue::tick`]). A thread that makes way
//! is queued: a preempted one at the head of its level (it resumes first),
//! one whose quantum ran out at the tail; a woken thread joins the tail.
//!
//! Each queue is an arena of nodes linked by index (no allocation once the
//! capacity is reserved with [`RunQueue::with_capacity`]) plus a 256-bit map
//! of non-empty levels, so enqueue, dequeue and pick are O(1).

use crate::kobj::{Arena, ObjId};
use l4_abi::proto::SchedCpuSet;

/// A priority; higher values run first.
pub type Prio = u8;

/// Number of priority levels.
pub const PRIO_LEVELS: usize = 256;

/// A set of CPUs (at most 64).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CpuSet(pub u64);

impl CpuSet {
    /// No CPU.
    pub const EMPTY: CpuSet = CpuSet(0);
    /// Every CPU.
    pub const ALL: CpuSet = CpuSet(!0);

    /// The set with only `cpu` (empty if `cpu >= 64`).
    pub const fn single(cpu: usize) -> CpuSet {
        if cpu < 64 {
            CpuSet(1 << cpu)
        } else {
            CpuSet::EMPTY
        }
    }

    /// The first `n` CPUs.
    pub const fn first_n(n: usize) -> CpuSet {
        if n >= 64 {
            CpuSet::ALL
        } else {
            CpuSet((1 << n) - 1)
        }
    }

    /// Whether `cpu` is in the set.
    pub const fn contains(self, cpu: usize) -> bool {
        cpu < 64 && self.0 & (1 << cpu) != 0
    }

    /// The CPUs in both sets.
    pub const fn intersect(self, other: CpuSet) -> CpuSet {
        CpuSet(self.0 & other.0)
    }

    /// Whether the set is empty.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The number of CPUs.
    pub const fn count(self) -> u32 {
        self.0.count_ones()
    }

    /// The lowest CPU in the set.
    pub const fn first(self) -> Option<usize> {
        if self.0 == 0 {
            None
        } else {
            Some(self.0.trailing_zeros() as usize)
        }
    }

    /// The CPUs, in ascending order.
    pub fn iter(self) -> impl Iterator<Item = usize> {
        (0..64).filter(move |&c| self.contains(c))
    }

    /// Converts Fiasco's message form (offset, granularity, map).
    pub fn from_sched(s: SchedCpuSet) -> CpuSet {
        CpuSet(
            (0..64u32)
                .filter(|&c| s.contains(c))
                .fold(0, |m, c| m | (1 << c)),
        )
    }

    /// Fiasco's message form with offset 0 and granularity 0.
    pub const fn to_sched(self) -> SchedCpuSet {
        SchedCpuSet {
            offset: 0,
            granularity: 0,
            map: self.0,
        }
    }
}

/// The scheduling parameters and state of one thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SchedContext {
    /// Priority.
    pub prio: Prio,
    /// Time slice length, in the kernel's tick unit; 0 = no time slicing
    /// (the thread runs until it blocks or is preempted).
    pub quantum: u32,
    /// What is left of the current slice.
    pub left: u32,
    /// CPUs the thread may run on.
    pub affinity: CpuSet,
}

impl SchedContext {
    /// A context with a full slice.
    pub const fn new(prio: Prio, quantum: u32, affinity: CpuSet) -> SchedContext {
        SchedContext {
            prio,
            quantum,
            left: quantum,
            affinity,
        }
    }

    /// Consumes `elapsed` time; returns true (and refills the slice) when
    /// the slice is used up.
    pub fn consume(&mut self, elapsed: u32) -> bool {
        if self.quantum == 0 {
            return false;
        }
        if elapsed >= self.left {
            self.left = self.quantum;
            true
        } else {
            self.left -= elapsed;
            false
        }
    }
}

/// Whether a thread of priority `woken` that becomes ready should preempt
/// the thread running at `current` (`None`: the CPU is idle). Equal
/// priority does not preempt: the woken thread waits for its turn.
pub const fn should_preempt(current: Option<Prio>, woken: Prio) -> bool {
    match current {
        None => true,
        Some(c) => woken > c,
    }
}

/// The CPU a thread should run on: `preferred` if the thread may run there
/// and it is online, else the lowest allowed online CPU; `None` if the
/// affinity and the online CPUs do not meet.
pub const fn pick_cpu(affinity: CpuSet, online: CpuSet, preferred: usize) -> Option<usize> {
    let ok = affinity.intersect(online);
    if ok.contains(preferred) {
        Some(preferred)
    } else {
        ok.first()
    }
}

/// The running thread of a CPU, as [`RunQueue::choose`] sees it.
#[derive(Clone, Copy, Debug)]
pub struct Running<T> {
    /// The thread.
    pub item: T,
    /// Its priority.
    pub prio: Prio,
    /// Its quantum ran out ([`RunQueue::tick`]).
    pub expired: bool,
}

/// What [`RunQueue::choose`] decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Next<T> {
    /// The running thread goes on.
    Keep,
    /// Run `next` (dequeued; `None`: idle); the running thread, if it
    /// could have gone on, made way and is queued.
    Switch {
        /// What runs now.
        next: Option<T>,
        /// Where the thread that made way was queued.
        requeued: Option<QueueHandle>,
    },
}

/// A thread's place in a run queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct QueueHandle(ObjId);

#[derive(Debug)]
struct QNode<T> {
    item: T,
    prio: Prio,
    prev: Option<ObjId>,
    next: Option<ObjId>,
}

/// One CPU's run queue of items `T` (the kernel's thread references).
pub struct RunQueue<T> {
    nodes: Arena<QNode<T>>,
    head: [Option<ObjId>; PRIO_LEVELS],
    tail: [Option<ObjId>; PRIO_LEVELS],
    bitmap: [u64; PRIO_LEVELS / 64],
}

impl<T> RunQueue<T> {
    /// An empty queue.
    pub const fn new() -> RunQueue<T> {
        RunQueue {
            nodes: Arena::new(),
            head: [None; PRIO_LEVELS],
            tail: [None; PRIO_LEVELS],
            bitmap: [0; PRIO_LEVELS / 64],
        }
    }

    /// An empty queue that holds `n` threads without allocating.
    pub fn with_capacity(n: usize) -> RunQueue<T> {
        let mut q = RunQueue::new();
        q.nodes.reserve(n);
        q
    }

    /// The number of queued threads.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether no thread is queued (the CPU idles).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The highest priority with a queued thread.
    pub fn highest_prio(&self) -> Option<Prio> {
        (0..self.bitmap.len()).rev().find_map(|w| {
            let b = self.bitmap[w];
            (b != 0).then(|| (w * 64 + 63 - b.leading_zeros() as usize) as Prio)
        })
    }

    /// The thread to run: the head of the highest non-empty level.
    pub fn pick(&self) -> Option<(QueueHandle, &T)> {
        let id = self.head[self.highest_prio()? as usize]?;
        Some((QueueHandle(id), &self.nodes.get(id)?.item))
    }

    /// Whether the handle names a queued thread.
    pub fn contains(&self, h: QueueHandle) -> bool {
        self.nodes.contains(h.0)
    }

    /// The queued item.
    pub fn get(&self, h: QueueHandle) -> Option<&T> {
        self.nodes.get(h.0).map(|n| &n.item)
    }

    /// The priority a queued thread is queued at.
    pub fn prio_of(&self, h: QueueHandle) -> Option<Prio> {
        self.nodes.get(h.0).map(|n| n.prio)
    }

    fn set_bit(&mut self, p: Prio) {
        self.bitmap[p as usize / 64] |= 1 << (p % 64);
    }

    fn clear_bit(&mut self, p: Prio) {
        self.bitmap[p as usize / 64] &= !(1 << (p % 64));
    }

    fn node_mut(&mut self, id: ObjId) -> &mut QNode<T> {
        self.nodes
            .get_mut(id)
            .expect("runqueue: live node expected")
    }

    fn link_back(&mut self, id: ObjId, p: Prio) {
        let old_tail = self.tail[p as usize];
        {
            let n = self.node_mut(id);
            n.prio = p;
            n.prev = old_tail;
            n.next = None;
        }
        match old_tail {
            Some(t) => self.node_mut(t).next = Some(id),
            None => self.head[p as usize] = Some(id),
        }
        self.tail[p as usize] = Some(id);
        self.set_bit(p);
    }

    fn link_front(&mut self, id: ObjId, p: Prio) {
        let old_head = self.head[p as usize];
        {
            let n = self.node_mut(id);
            n.prio = p;
            n.prev = None;
            n.next = old_head;
        }
        match old_head {
            Some(h) => self.node_mut(h).prev = Some(id),
            None => self.tail[p as usize] = Some(id),
        }
        self.head[p as usize] = Some(id);
        self.set_bit(p);
    }

    fn unlink(&mut self, id: ObjId) -> Prio {
        let (p, prev, next) = {
            let n = self.node_mut(id);
            (n.prio, n.prev, n.next)
        };
        match prev {
            Some(x) => self.node_mut(x).next = next,
            None => self.head[p as usize] = next,
        }
        match next {
            Some(x) => self.node_mut(x).prev = prev,
            None => self.tail[p as usize] = prev,
        }
        if self.head[p as usize].is_none() {
            self.clear_bit(p);
        }
        p
    }

    fn insert(&mut self, item: T) -> Result<ObjId, T> {
        self.nodes
            .insert(QNode {
                item,
                prio: 0,
                prev: None,
                next: None,
            })
            .map_err(|e| e.0.item)
    }

    /// Queues a thread at the tail of its level (it becomes ready). Fails,
    /// handing the item back, only if the queue cannot grow.
    pub fn enqueue(&mut self, item: T, prio: Prio) -> Result<QueueHandle, T> {
        let id = self.insert(item)?;
        self.link_back(id, prio);
        Ok(QueueHandle(id))
    }

    /// Queues a thread at the head of its level (e.g. a thread migrated
    /// while running, which should keep its turn).
    pub fn enqueue_front(&mut self, item: T, prio: Prio) -> Result<QueueHandle, T> {
        let id = self.insert(item)?;
        self.link_front(id, prio);
        Ok(QueueHandle(id))
    }

    /// Removes a thread (it blocks, dies or migrates); `None` for a stale
    /// handle.
    pub fn dequeue(&mut self, h: QueueHandle) -> Option<T> {
        self.nodes.get(h.0)?;
        self.unlink(h.0);
        self.nodes.remove(h.0).map(|n| n.item)
    }

    /// A timer tick for the running thread (which is not queued), whose
    /// context is `ctx`: consumes `elapsed`. Returns whether its quantum
    /// ran out (it is refilled) while a thread of at least its priority is
    /// ready: it should then make way, going behind its equals (see
    /// [`RunQueue::choose`]). A thread alone at its level runs on.
    pub fn tick(&self, ctx: &mut SchedContext, elapsed: u32) -> bool {
        ctx.consume(elapsed) && self.highest_prio().is_some_and(|p| p >= ctx.prio)
    }

    /// Decides what a CPU runs next. `running`: its running thread, if it
    /// could go on (ready, on this CPU); `None` if it blocked or died, or
    /// the CPU idles. A thread that makes way is queued (see the module
    /// description); if the queue cannot take it, it goes on.
    pub fn choose(&mut self, running: Option<Running<T>>) -> Next<T> {
        let head = self.highest_prio();
        let mut requeued = None;
        if let Some(r) = running {
            let yields = match head {
                None => false,
                Some(h) => h > r.prio || (h == r.prio && r.expired),
            };
            if !yields {
                return Next::Keep;
            }
            let queued = if r.expired {
                self.enqueue(r.item, r.prio)
            } else {
                self.enqueue_front(r.item, r.prio)
            };
            match queued {
                Ok(h) => requeued = Some(h),
                Err(_) => return Next::Keep,
            }
        }
        let next = self.pick().map(|(h, _)| h).and_then(|h| self.dequeue(h));
        Next::Switch { next, requeued }
    }

    /// The queued items in the order they would run (highest priority
    /// first, FIFO within a level).
    pub fn iter(&self) -> impl Iterator<Item = (Prio, &T)> + '_ {
        (0..PRIO_LEVELS).rev().flat_map(move |p| {
            let mut next = self.head[p];
            core::iter::from_fn(move || {
                let id = next?;
                let n = self.nodes.get(id)?;
                next = n.next;
                Some((p as Prio, &n.item))
            })
        })
    }
}

impl<T> Default for RunQueue<T> {
    fn default() -> RunQueue<T> {
        RunQueue::new()
    }
}

/// Moves a queued thread from one CPU's queue to another's (tail of its
/// level); `None` if the handle is stale or the target cannot grow (the
/// thread then stays where it was).
pub fn migrate<T>(
    from: &mut RunQueue<T>,
    to: &mut RunQueue<T>,
    h: QueueHandle,
) -> Option<QueueHandle> {
    let prio = from.prio_of(h)?;
    if !to.nodes.has_room() {
        return None;
    }
    let item = from.dequeue(h)?;
    to.enqueue(item, prio).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;

    fn order<T: Copy>(q: &RunQueue<T>) -> Vec<T> {
        q.iter().map(|(_, t)| *t).collect()
    }

    #[test]
    fn highest_priority_first_fifo_within() {
        let mut q = RunQueue::with_capacity(8);
        q.enqueue('a', 10).unwrap();
        q.enqueue('b', 200).unwrap();
        q.enqueue('c', 10).unwrap();
        q.enqueue('d', 0).unwrap();
        q.enqueue('e', 255).unwrap();
        q.enqueue('f', 64).unwrap();
        assert_eq!(q.highest_prio(), Some(255));
        assert_eq!(q.pick().map(|(_, t)| *t), Some('e'));
        assert_eq!(order(&q), vec!['e', 'b', 'f', 'a', 'c', 'd']);
        assert_eq!(q.len(), 6);
    }

    #[test]
    fn dequeue_updates_levels() {
        let mut q = RunQueue::new();
        let a = q.enqueue(1, 5).unwrap();
        let b = q.enqueue(2, 5).unwrap();
        let c = q.enqueue(3, 5).unwrap();
        assert_eq!(q.dequeue(b), Some(2));
        assert_eq!(order(&q), vec![1, 3]);
        assert_eq!(q.dequeue(b), None, "stale handle");
        assert_eq!(q.dequeue(a), Some(1));
        assert_eq!(q.dequeue(c), Some(3));
        assert!(q.is_empty());
        assert_eq!(q.highest_prio(), None);
        assert!(q.pick().is_none());
        // A new thread in the old slot does not answer to the old handle.
        let d = q.enqueue(4, 1).unwrap();
        assert!(!q.contains(a) && q.contains(d));
        assert_eq!(q.get(a), None);
    }

    fn run<T: Copy>(item: T, prio: Prio, expired: bool) -> Option<Running<T>> {
        Some(Running {
            item,
            prio,
            expired,
        })
    }

    fn next<T: Copy>(n: Next<T>) -> Option<T> {
        match n {
            Next::Switch { next, .. } => next,
            Next::Keep => panic!("kept running"),
        }
    }

    #[test]
    fn the_running_thread_goes_on_until_something_beats_it() {
        let mut q = RunQueue::new();
        assert_eq!(q.choose(run('a', 5, false)), Next::Keep, "nothing else");
        assert_eq!(q.choose(run('a', 5, true)), Next::Keep, "alone, expired");
        q.enqueue('b', 5).unwrap();
        q.enqueue('x', 1).unwrap();
        assert_eq!(q.choose(run('a', 5, false)), Next::Keep, "equal");
        // Blocked: the head runs, and leaves the queue.
        assert_eq!(next(q.choose(None)), Some('b'));
        assert_eq!(order(&q), vec!['x']);
        // A higher priority preempts; the preempted thread is queued at
        // the head of its level, before an equal that was waiting.
        q.enqueue('b', 5).unwrap();
        q.enqueue('h', 9).unwrap();
        match q.choose(run('a', 5, false)) {
            Next::Switch { next, requeued } => {
                assert_eq!(next, Some('h'));
                assert_eq!(requeued.and_then(|h| q.get(h)), Some(&'a'));
            }
            Next::Keep => panic!("not preempted"),
        }
        assert_eq!(order(&q), vec!['a', 'b', 'x']);
        // Nothing queued, nothing running: idle.
        let mut e: RunQueue<char> = RunQueue::new();
        assert_eq!(
            e.choose(None),
            Next::Switch {
                next: None,
                requeued: None
            }
        );
    }

    #[test]
    fn round_robin_by_quantum() {
        let mut q = RunQueue::new();
        q.enqueue('b', 7).unwrap();
        q.enqueue('c', 7).unwrap();
        let mut ctx = SchedContext::new(7, 3, CpuSet::ALL);
        // Two ticks: still a's turn.
        assert!(!q.tick(&mut ctx, 1));
        assert!(!q.tick(&mut ctx, 1));
        assert_eq!(ctx.left, 1);
        // Third tick: quantum expired; a goes to the tail, b runs.
        assert!(q.tick(&mut ctx, 1));
        assert_eq!(ctx.left, 3, "refilled");
        assert_eq!(next(q.choose(run('a', 7, true))), Some('b'));
        assert_eq!(order(&q), vec!['c', 'a']);
        // A lone thread keeps running after expiry.
        let solo: RunQueue<u8> = RunQueue::new();
        let mut sctx = SchedContext::new(1, 1, CpuSet::ALL);
        assert!(!solo.tick(&mut sctx, 5));
        // So does one above everything queued.
        assert!(!q.tick(&mut SchedContext::new(8, 1, CpuSet::ALL), 1));
        // No time slicing with quantum 0.
        let mut inf = SchedContext::new(1, 0, CpuSet::ALL);
        assert!(!inf.consume(u32::MAX));
    }

    #[test]
    fn lower_priority_never_runs_while_higher_ready() {
        let mut q = RunQueue::new();
        q.enqueue("lo", 1).unwrap();
        let mut ctx = SchedContext::new(100, 1, CpuSet::ALL);
        for _ in 0..5 {
            assert!(!q.tick(&mut ctx, 1));
            assert_eq!(q.choose(run("hi", 100, true)), Next::Keep);
        }
        assert_eq!(next(q.choose(None)), Some("lo"));
    }

    #[test]
    fn preemption_decision() {
        assert!(should_preempt(None, 0));
        assert!(should_preempt(Some(10), 11));
        assert!(!should_preempt(Some(10), 10));
        assert!(!should_preempt(Some(10), 9));
    }

    #[test]
    fn front_insert() {
        let mut q = RunQueue::new();
        let a = q.enqueue('a', 9).unwrap();
        q.enqueue('b', 3).unwrap();
        q.enqueue_front('z', 3).unwrap();
        assert_eq!(order(&q), vec!['a', 'z', 'b']);
        assert_eq!(q.get(a), Some(&'a'));
        assert_eq!(q.prio_of(a), Some(9));
    }

    #[test]
    fn affinity_and_migration() {
        let online = CpuSet::first_n(4);
        assert_eq!(pick_cpu(CpuSet::ALL, online, 2), Some(2));
        assert_eq!(pick_cpu(CpuSet::single(3), online, 0), Some(3));
        assert_eq!(pick_cpu(CpuSet(0b1100), online, 1), Some(2));
        assert_eq!(pick_cpu(CpuSet::single(5), online, 0), None);
        assert_eq!(pick_cpu(CpuSet::ALL, online, 7), Some(0));
        let mut cpu0 = RunQueue::new();
        let mut cpu1 = RunQueue::new();
        let t = cpu0.enqueue("t", 42).unwrap();
        let t1 = migrate(&mut cpu0, &mut cpu1, t).unwrap();
        assert!(cpu0.is_empty());
        assert_eq!(cpu1.prio_of(t1), Some(42));
        assert_eq!(migrate(&mut cpu0, &mut cpu1, t), None, "stale");
    }

    #[test]
    fn cpu_sets() {
        let s = CpuSet::single(1).intersect(CpuSet(0b110));
        assert_eq!(s, CpuSet(0b10));
        assert_eq!(s.count(), 1);
        assert_eq!(CpuSet(0b1010).iter().collect::<Vec<_>>(), vec![1, 3]);
        assert!(CpuSet::single(64).is_empty());
        assert_eq!(CpuSet::first_n(64), CpuSet::ALL);
        assert_eq!(CpuSet::EMPTY.first(), None);
        let fiasco = SchedCpuSet::from_words((1 << 24) | 2, 0b11);
        assert_eq!(CpuSet::from_sched(fiasco), CpuSet(0b11_1100));
        assert_eq!(CpuSet::from_sched(CpuSet(0b101).to_sched()), CpuSet(0b101));
    }
}

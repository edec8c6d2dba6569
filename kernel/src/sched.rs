//! Scheduling: each CPU's state and run queue, making threads ready and
//! blocked, the tick, the switch to the next thread, and the idle loop.
//!
//! Every kernel operation runs under the big kernel lock ([`crate::bkl`])
//! and to completion: it changes state, writes the result registers of the
//! threads it finishes, and marks threads blocked or ready. Only the entry
//! points ([`crate::entry`], the idle loop) then call [`schedule`], which
//! may switch to another thread. No reference to the kernel state is held
//! across a switch, so a blocked thread's kernel stack holds nothing but
//! "release the lock, return to user mode": the IPC fast path
//! ([`crate::ipc::fastpath`]) relies on that to hand the CPU from caller to
//! callee without switching kernel stacks.
//!
//! FP/SIMD state is switched lazily ([`crate::fp`]). Idle CPUs stop their
//! tick and sleep until a timeout, an interrupt or an IPI brings them work.

use crate::arch::{self, KContext};
use crate::bkl;
use crate::fp;
use crate::ipc;
use crate::obj::thread::{self, State};
use crate::state::Kernel;
use kernel_core::kobj::ObjId;
use kernel_core::runqueue::{Next, RunQueue, Running};

/// One CPU's scheduling state. The fields the IPC fast path reads come
/// first (`repr(C)`), where short offsets reach them.
#[derive(Default)]
#[repr(C)]
pub struct Cpu {
    pub current: Option<ObjId>,
    /// What TTBR0 holds ([`thread::Space::ttbr`]; 0: no user space yet).
    pub ttbr: u64,
    /// The running thread's space may not be in TTBR0: it went into its
    /// guest without it (see [`schedule`]). Never wrongly clear; when
    /// set, the way back to user mode of a vCPU thread looks.
    pub space_deferred: bool,
    pub need_resched: bool,
    /// The IPC fast path may run (off with the kernel option `-nofastpath`).
    pub fast_path: bool,
    /// The running thread's slice ran out while others of its priority
    /// wait: it goes behind them at the next [`schedule`].
    pub slice_out: bool,
    /// EL0 may use FP/SIMD without trapping (a thread's state is loaded).
    pub fp_on: bool,
    /// The thread whose saved FP/SIMD state the registers still hold.
    pub fp_regs_of: Option<ObjId>,
    pub idle: KContext,
    pub rq: RunQueue<ObjId>,
    /// When this CPU's next tick is due (counter ticks): its timer fires
    /// then, or earlier for a timeout.
    pub next_tick: u64,
    /// Whether the tick is on: only while threads of the running one's
    /// priority wait in the run queue behind it (the tick only makes
    /// threads of one priority take turns), so a thread, or a guest, with
    /// a CPU to itself, or above all that waits for it, is not
    /// interrupted 100 times a second.
    pub ticking: bool,
}

impl Cpu {
    /// Installs the address space `space` unless it is there.
    #[inline(always)]
    pub fn switch_space(&mut self, space: thread::Space) {
        let ttbr = space.ttbr();
        if self.ttbr != ttbr {
            // SAFETY: a task's translation tables and ASID (`Space`), which
            // the kernel frees only once no CPU runs in them (`reap`).
            unsafe { arch::set_user_space(ttbr) };
            self.ttbr = ttbr;
        }
    }
}

impl Kernel {
    /// Makes a thread ready on its CPU; asks that CPU to reschedule if the
    /// thread should preempt what runs there.
    pub fn make_ready(&mut self, id: ObjId) {
        let me = arch::cpu_id();
        let online = self.online;
        let t = self.known_thread(id);
        t.state = State::Ready;
        t.deadline = None;
        // A running thread is not queued: on its own CPU it simply goes on;
        // on another (it migrated), that CPU queues it when it switches away.
        if t.queued.is_some() || !online.contains(t.cpu) || t.running_on.is_some() {
            return;
        }
        let (cpu, prio) = (t.cpu, t.sched.prio);
        let cur_prio = self.cpus[cpu]
            .current
            .and_then(|c| self.thread(c))
            .map(|c| c.sched.prio);
        let h = match self.cpus[cpu].rq.enqueue(id, prio) {
            Ok(h) => h,
            Err(_) => return,
        };
        self.known_thread(id).queued = Some(h);
        if kernel_core::runqueue::should_preempt(cur_prio, prio) || cur_prio.is_none() {
            self.cpus[cpu].need_resched = true;
            if cpu != me {
                crate::platform::gic::send_resched_ipi(cpu);
            }
        } else if cpu == me {
            self.start_tick();
        } else if !self.cpus[cpu].ticking && cur_prio == Some(prio) {
            // Its tick must come on for turns (see `on_resched_ipi`); a
            // thread below the running one only waits.
            crate::platform::gic::send_resched_ipi(cpu);
        }
    }

    /// Takes a thread off its run queue (it blocks).
    pub fn make_blocked(&mut self, id: ObjId, state: State, deadline: Option<u64>) {
        let t = self.known_thread(id);
        t.state = state;
        t.deadline = deadline;
        let (cpu, q) = (t.cpu, t.queued.take());
        if let Some(h) = q {
            self.cpus[cpu].rq.dequeue(h);
        }
        if let Some(d) = deadline {
            if !self.sleepers.contains(&id) {
                self.sleepers.push(id);
            }
            // Expire it on time, not at the next tick (a guest's timer
            // waits this way): this CPU's timer fires by then.
            if arch::timer_armed_at().is_none_or(|at| d < at) {
                arch::timer_arm_at(d);
            }
        }
        if self.cpus[cpu].current == Some(id) {
            self.cpus[cpu].need_resched = true;
        }
    }

    /// The earliest deadline of a waiting thread.
    pub fn next_deadline(&self) -> Option<u64> {
        self.sleepers
            .iter()
            .filter_map(|&id| self.thread(id).and_then(|t| t.deadline))
            .min()
    }

    /// Whether `cpu` needs its tick: a thread of the running one's
    /// priority waits in its run queue. The tick only makes threads of one
    /// priority take turns: a higher one preempts at once, a lower one
    /// waits until the CPU is free anyway. With nothing running, any
    /// queued thread (the CPU is about to pick one).
    fn needs_tick(&self, cpu: usize) -> bool {
        let c = &self.cpus[cpu];
        let Some(queued) = c.rq.highest_prio() else {
            return false;
        };
        let running = c.current.and_then(|id| self.thread(id));
        running.is_none_or(|t| queued >= t.sched.prio)
    }

    /// Arms this CPU's timer for its next tick (if threads of the running
    /// one's priority are queued behind it, see [`Cpu::ticking`]) or the
    /// earliest timeout, whichever comes first; stops it if there is
    /// neither.
    pub fn arm_timer(&mut self) {
        let deadline = self.next_deadline();
        let cpu = arch::cpu_id();
        let ticking = self.needs_tick(cpu);
        let c = &mut self.cpus[cpu];
        c.ticking = ticking;
        let tick = c.ticking.then_some(c.next_tick);
        match [deadline, tick].into_iter().flatten().min() {
            Some(at) => arch::timer_arm_at(at),
            None => arch::timer_pause(),
        }
    }

    /// Starts this CPU's tick, a period from now, if it is off and
    /// needed ([`Kernel::needs_tick`]).
    pub fn start_tick(&mut self) {
        let cpu = arch::cpu_id();
        if !self.cpus[cpu].ticking && self.needs_tick(cpu) {
            self.cpus[cpu].next_tick = arch::counter() + arch::tick_period();
            self.arm_timer();
        }
    }

    /// This CPU's timer fired: expire timeouts, and when a tick period has
    /// passed, account the time slice; then arm the timer again.
    pub fn tick(&mut self) {
        let now = arch::counter();
        let cpu = arch::cpu_id();
        let period_over = self.cpus[cpu].ticking && now >= self.cpus[cpu].next_tick;
        if period_over {
            self.cpus[cpu].next_tick = now + arch::tick_period();
        }
        self.expire(now);
        if period_over {
            self.account_slice();
        }
        self.arm_timer();
    }

    /// Ends the waits whose deadline has come.
    fn expire(&mut self, now: u64) {
        let mut i = 0;
        while i < self.sleepers.len() {
            let id = self.sleepers[i];
            match self.thread(id).and_then(|t| t.deadline) {
                Some(d) if d <= now => {
                    self.sleepers.swap_remove(i);
                    ipc::timeout_expired(self, id);
                }
                Some(_) => i += 1,
                None => {
                    self.sleepers.swap_remove(i);
                }
            }
        }
    }

    /// One tick of the running thread's time slice.
    fn account_slice(&mut self) {
        let cpu = arch::cpu_id();
        if let Some(cur) = self.cpus[cpu].current {
            let Some(t) = self.thread_mut(cur) else {
                return;
            };
            if t.state == State::Ready {
                let mut ctx = t.sched;
                let out = self.cpus[cpu].rq.tick(&mut ctx, 1);
                self.known_thread(cur).sched = ctx;
                if out {
                    let c = &mut self.cpus[cpu];
                    c.slice_out = true;
                    c.need_resched = true;
                }
            }
        }
    }
}

/// Picks what this CPU runs next and switches to it. Called at the end of
/// kernel entries with the BKL held; returns (possibly much later, on the
/// same thread) with the BKL held.
pub fn schedule(g: &mut bkl::Guard) {
    let cpu = arch::cpu_id();
    let (from, to): (*mut KContext, *const KContext) = {
        // This borrow ends before the switch.
        let k = g.kernel();
        let c = &mut k.cpus[cpu];
        c.need_resched = false;
        let expired = core::mem::take(&mut c.slice_out);
        let prev = c.current;
        // The running thread is not queued; it goes on if it can and
        // nothing queued beats it (round robin: its slice ran out).
        let running = prev.and_then(|p| {
            let t = k.thread(p)?;
            (t.state == State::Ready && t.cpu == cpu).then_some(Running {
                item: p,
                prio: t.sched.prio,
                expired,
            })
        });
        let next = match k.cpus[cpu].rq.choose(running) {
            Next::Keep => prev,
            Next::Switch { next, requeued } => {
                if let (Some(p), Some(h)) = (prev, requeued) {
                    k.known_thread(p).queued = Some(h);
                }
                if let Some(n) = next {
                    k.known_thread(n).queued = None;
                }
                next
            }
        };
        if next == prev {
            // Its priority may have changed against the queued ones.
            k.start_tick();
            return;
        }
        let from: *mut KContext = match prev {
            Some(p) => match k.thread_mut(p) {
                Some(t) => {
                    t.stop_running(arch::counter());
                    fp::leave(t, cpu);
                    // Moved to another CPU while it ran here: queue it there.
                    if t.cpu != cpu && t.state == State::Ready && t.queued.is_none() {
                        k.make_ready(p);
                    }
                    &mut k.known_thread(p).kctx
                }
                None => k
                    .zombies
                    .iter_mut()
                    .find(|z| z.running_on == Some(cpu))
                    .map_or(&mut k.cpus[cpu].idle as *mut KContext, |z| {
                        z.running_on = None;
                        &mut z.kctx as *mut KContext
                    }),
            },
            None => &mut k.cpus[cpu].idle,
        };
        k.cpus[cpu].current = next;
        // Turns among the queued threads of the next one's priority.
        k.start_tick();
        let to: *const KContext = match next {
            Some(n) => {
                fp::enter_thread(k, n, cpu);
                let t = k.known_thread(n);
                t.start_running(cpu, arch::counter());
                // A vCPU thread in its guest needs no user space until it
                // comes back to its VMM ([`crate::obj::vcpu`] installs it
                // then): the guest runs under its own translation regime,
                // and an emulator drops every cached translation of this
                // regime on an ASID change (QEMU's TCG does), so a thread
                // that only passes through its guest keeps the one there.
                let in_guest = t.vcpu.as_ref().is_some_and(|v| v.in_guest());
                match t.space {
                    Some(_) if in_guest => k.cpus[cpu].space_deferred = true,
                    Some(space) => {
                        k.cpus[cpu].space_deferred = false;
                        k.cpus[cpu].switch_space(space);
                    }
                    None => {}
                }
                &k.known_thread(n).kctx
            }
            None => &k.cpus[cpu].idle,
        };
        (from, to)
    };
    // SAFETY: both contexts live in kernel objects (boxed threads, zombies
    // or the per-CPU idle context) that stay allocated until reaped, which
    // happens only when no CPU runs on them.
    unsafe { arch::switch_context(from, to) };
    // Back on this thread (or idle), maybe on another CPU.
    g.kernel().reap();
}

/// The idle loop of every CPU (boot CPU after starting the root task,
/// secondaries once up). Holds the BKL except while waiting.
pub fn idle_loop(mut g: bkl::Guard) -> ! {
    loop {
        let c = &g.kernel().cpus[arch::cpu_id()];
        if c.need_resched || !c.rq.is_empty() {
            schedule(&mut g);
            continue;
        }
        // Wait with interrupts masked (a pending one still ends the wait),
        // then take what is pending: nothing can slip in between. An idle
        // CPU has no time slice to account, so its tick is off (the run
        // queue is empty): it wakes for the earliest timeout, for which
        // `arm_timer` arms it (when that comes, any CPU's timer expires
        // it), or when an interrupt or an IPI brings it work, and takes no
        // part in the lock meanwhile.
        g.kernel().arm_timer();
        drop(g);
        arch::wait_for_interrupt();
        arch::irq_enable();
        arch::irq_disable();
        g = bkl::lock();
        // Work came: threads that take turns need the tick again.
        g.kernel().start_tick();
    }
}

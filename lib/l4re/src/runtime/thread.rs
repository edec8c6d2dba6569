//! Program threads: their table (by UTCB slot), `clone` (a kernel thread
//! at the clone trampoline), thread and task exit, waiting in a system call
//! and the deferred reply that ends the wait, thread names.
//!
//! # Threads
//!
//! A thread is known by its UTCB slot (the exception message carries the
//! UTCB address). `clone` starts a new kernel thread at the runtime's
//! clone trampoline with the new stack; the 16 bytes below that stack
//! pointer hold the thread pointer (`sp - 16`) and the pc to continue at
//! (`sp - 8`), which the trampoline loads into `TPIDR_EL0` and jumps to
//! with `x0` = 0. Linux leaves those bytes alone too (they are below the
//! stack pointer), so a clone caller loses nothing.

use l4_abi::fault::ExcRegs;

use super::{Backend, Flow, PID, Runtime};
use crate::layout::*;
use crate::linux::errno::*;
use crate::linux::{self, SysResult, sig};

/// Why a thread waits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Wait {
    Futex,
    Sleep {
        deadline: u64,
    },
    Read {
        buf: u64,
        len: u64,
    },
    Poll {
        fds: u64,
        nfds: u64,
        deadline: Option<u64>,
    },
}

/// A program thread, known by its UTCB slot.
#[derive(Clone, Debug)]
pub(super) struct Thread {
    /// Its Linux thread id.
    pub(super) tid: u32,
    /// Its kernel thread capability.
    pub(super) cap: u64,
    /// Where to write 0 and wake a futex when it ends (`CLONE_CHILD_CLEARTID`,
    /// `set_tid_address`), or 0.
    pub(super) clear_tid: u64,
    /// Blocked signals.
    pub(super) sigmask: u64,
    /// Its `stack_t` for `sigaltstack`.
    pub(super) altstack: [u8; 24],
    /// Its name (`PR_SET_NAME`).
    pub(super) name: [u8; 16],
    /// The registers of a system call it waits in, and why.
    pub(super) blocked: Option<(ExcRegs, Wait)>,
}

impl<B: Backend> Runtime<B> {
    pub(super) fn no_altstack() -> [u8; 24] {
        let mut a = [0u8; 24];
        a[8..12].copy_from_slice(&sig::SS_DISABLE.to_le_bytes());
        a
    }

    pub(super) fn next_cpu(&mut self) -> u32 {
        let cpus = if self.cfg.cpus == 0 { 1 } else { self.cfg.cpus };
        let cpu = nth_cpu(cpus, self.spawned);
        self.spawned += 1;
        cpu
    }

    /// Ends the task: stops every thread and tells the parent.
    pub(super) fn exit_group(&mut self, code: i64) {
        let threads = core::mem::take(&mut self.threads);
        for t in threads.values() {
            self.b.thread_delete(t.cap);
        }
        self.wakeups.clear();
        self.exited = true;
        self.b.parent_exit(code);
    }

    pub(super) fn slot_of(&self, tid: u32) -> Option<usize> {
        self.threads
            .iter()
            .find(|(_, t)| t.tid == tid)
            .map(|(s, _)| *s)
    }

    /// Answers a waiting thread with `r` in `x0` (a deferred reply).
    pub(super) fn wake(&mut self, slot: usize, r: SysResult) {
        if let Some(t) = self.threads.get_mut(&slot)
            && let Some((mut regs, _)) = t.blocked.take()
        {
            regs.x[0] = linux::ret_value(r);
            self.wakeups.push((t.cap, regs));
        }
    }

    pub(super) fn block(&mut self, slot: usize, regs: &ExcRegs, why: Wait) -> Flow {
        if let Some(t) = self.threads.get_mut(&slot) {
            t.blocked = Some((*regs, why));
        }
        Flow::Wait
    }

    pub(super) fn sys_clone(&mut self, slot: usize, regs: &ExcRegs, a: [u64; 6]) -> SysResult {
        use linux::clone_flags::*;
        let flags = a[0];
        let (sp, ptid, tls, ctid) = (a[1], a[2], a[3], a[4]);
        if flags & (VM | THREAD | SIGHAND) != (VM | THREAD | SIGHAND) {
            // fork, vfork and posix_spawn need a new task.
            return Err(ENOSYS);
        }
        if sp == 0 || !sp.is_multiple_of(16) {
            return Err(EINVAL);
        }
        let Some(new_slot) = (2..UTCB_SLOTS)
            .find(|s| !self.threads.contains_key(s) && !self.utcb_reserved.contains(s))
        else {
            return Err(EAGAIN);
        };
        let tls = if flags & SETTLS != 0 {
            tls
        } else {
            regs.tpidrurw
        };
        let mut frame = [0u8; 16];
        frame[..8].copy_from_slice(&tls.to_le_bytes());
        frame[8..].copy_from_slice(&regs.pc.to_le_bytes());
        self.write_user(sp - 16, &frame)?;
        let tid = self.next_tid;
        if flags & PARENT_SETTID != 0 {
            self.write_user(ptid, &tid.to_le_bytes())?;
        }
        if flags & CHILD_SETTID != 0 {
            self.write_user(ctid, &tid.to_le_bytes())?;
        }
        let cpu = self.next_cpu();
        let cap = self
            .b
            .thread_create(utcb(new_slot), self.cfg.trampoline, sp, cpu)?;
        self.next_tid = self.next_tid.checked_add(1).unwrap_or(PID + 1);
        let sigmask = self.threads.get(&slot).map_or(0, |t| t.sigmask);
        self.threads.insert(
            new_slot,
            Thread {
                tid,
                cap,
                clear_tid: if flags & CHILD_CLEARTID != 0 { ctid } else { 0 },
                sigmask,
                altstack: Self::no_altstack(),
                name: [0; 16],
                blocked: None,
            },
        );
        Ok(tid as u64)
    }

    pub(super) fn thread_exit(&mut self, slot: usize, code: i64) {
        let Some(t) = self.threads.remove(&slot) else {
            return;
        };
        self.futex.remove(t.tid);
        if t.clear_tid != 0 && self.write_user(t.clear_tid, &0u32.to_le_bytes()).is_ok() {
            for w in self.futex.wake(t.clear_tid, 1, u32::MAX) {
                if let Some(s) = self.slot_of(w) {
                    self.wake(s, Ok(0));
                }
            }
        }
        self.b.thread_delete(t.cap);
        if self.threads.is_empty() {
            self.exit_group(code & 0xff);
        }
    }

    pub(super) fn sys_prctl(&mut self, slot: usize, op: u64, arg: u64) -> SysResult {
        const PR_SET_NAME: u64 = 15;
        const PR_GET_NAME: u64 = 16;
        match op {
            PR_SET_NAME => {
                let n = self.read_cstr(arg, 4096)?;
                if let Some(t) = self.threads.get_mut(&slot) {
                    let k = n.len().min(15);
                    t.name = [0; 16];
                    t.name[..k].copy_from_slice(&n[..k]);
                }
                Ok(0)
            }
            PR_GET_NAME => {
                let name = self.threads.get(&slot).map_or([0; 16], |t| t.name);
                self.write_user(arg, &name)?;
                Ok(0)
            }
            _ => Err(EINVAL),
        }
    }
}

/// The CPU the `n`-th thread runs on: round robin over the set bits of
/// `cpus` (not empty).
pub(super) fn nth_cpu(cpus: u64, n: u32) -> u32 {
    let mut m = cpus;
    for _ in 0..n % cpus.count_ones() {
        m &= m - 1;
    }
    m.trailing_zeros()
}

//! Clocks and timeouts: `clock_gettime`/`clock_getres`, sleeping, and
//! [`Runtime::tick`], which ends waits whose deadline passed and polls the
//! log for input at [`Runtime::next_deadline`].

use alloc::vec::Vec;

use l4_abi::fault::ExcRegs;

use super::{Backend, Flow, Runtime, Wait};
use crate::linux::errno::*;
use crate::linux::{SysResult, Timespec, clock};

impl<B: Backend> Runtime<B> {
    /// When [`Runtime::tick`] is due next (runtime clock, ns).
    pub fn next_deadline(&self) -> Option<u64> {
        let threads = self.threads.values().filter_map(|t| match t.blocked {
            Some((_, Wait::Sleep { deadline })) => Some(deadline),
            Some((_, Wait::Poll { deadline, .. })) => deadline,
            _ => None,
        });
        threads
            .chain(self.futex.next_deadline())
            .chain(self.stdin_poll_at)
            .min()
    }

    /// Ends timed-out waits and polls the log for input.
    pub fn tick(&mut self) {
        if self.exited {
            return;
        }
        let now = self.b.now_ns();
        for tid in self.futex.expire(now) {
            if let Some(slot) = self.slot_of(tid) {
                self.wake(slot, Err(ETIMEDOUT));
            }
        }
        let due: Vec<usize> = self
            .threads
            .iter()
            .filter(|(_, t)| match t.blocked {
                Some((_, Wait::Sleep { deadline })) => deadline <= now,
                Some((_, Wait::Poll { deadline, .. })) => deadline.is_some_and(|d| d <= now),
                _ => false,
            })
            .map(|(s, _)| *s)
            .collect();
        for slot in due {
            let poll = match self.threads.get(&slot).and_then(|t| t.blocked.as_ref()) {
                Some((_, Wait::Poll { fds, nfds, .. })) => Some((*fds, *nfds)),
                _ => None,
            };
            match poll {
                Some((fds, nfds)) => {
                    let r = self.poll_eval(fds, nfds, true).map(|n| n as u64);
                    self.wake(slot, r);
                }
                None => self.wake(slot, Ok(0)),
            }
        }
        if self.stdin_poll_at.is_some_and(|t| t <= now) {
            self.stdin_poll_at = None;
            self.serve_stdin(now);
        }
    }

    pub(super) fn sleep(
        &mut self,
        slot: usize,
        regs: &ExcRegs,
        clk: u64,
        flags: u64,
        req: u64,
    ) -> Flow {
        let r: Result<Option<u64>, i64> = (|| {
            if !matches!(clk, clock::REALTIME | clock::MONOTONIC | clock::BOOTTIME) {
                return Err(EINVAL);
            }
            let t = self.read_timespec(req)?;
            let now = self.b.now_ns();
            let deadline = if flags & clock::TIMER_ABSTIME != 0 {
                t
            } else {
                now.saturating_add(t)
            };
            Ok((deadline > now).then_some(deadline))
        })();
        match r {
            Err(e) => Flow::Done(Err(e)),
            Ok(None) => Flow::Done(Ok(0)),
            Ok(Some(deadline)) => self.block(slot, regs, Wait::Sleep { deadline }),
        }
    }

    pub(super) fn sys_clock_gettime(&mut self, clk: u64, tp: u64) -> SysResult {
        if clk > clock::BOOTTIME {
            return Err(EINVAL);
        }
        let now = self.b.now_ns();
        self.write_user(tp, &Timespec::from_ns(now).to_bytes())?;
        Ok(0)
    }

    pub(super) fn sys_clock_getres(&mut self, clk: u64, res: u64) -> SysResult {
        if clk > clock::BOOTTIME {
            return Err(EINVAL);
        }
        if res != 0 {
            self.write_user(res, &Timespec::from_ns(1).to_bytes())?;
        }
        Ok(0)
    }
}

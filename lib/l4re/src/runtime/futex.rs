//! The `futex` system call (wait, wake, requeue, with bitsets and
//! timeouts) over the runtime's [`crate::futex::FutexTable`].

use super::{Backend, Runtime};
use crate::linux;
use crate::linux::errno::*;

impl<B: Backend> Runtime<B> {
    pub(super) fn sys_futex(&mut self, tid: u32, a: [u64; 6]) -> Result<Option<u64>, i64> {
        use linux::futex::*;
        let (uaddr, op, val, arg4, uaddr2, val3) =
            (a[0], a[1], a[2] as u32, a[3], a[4], a[5] as u32);
        let cmd = op & CMD_MASK;
        if !uaddr.is_multiple_of(4) {
            return Err(EINVAL);
        }
        match cmd {
            WAIT | WAIT_BITSET => {
                let bitset = if cmd == WAIT { u32::MAX } else { val3 };
                if bitset == 0 {
                    return Err(EINVAL);
                }
                let now = self.b.now_ns();
                let deadline = if arg4 == 0 {
                    None
                } else {
                    let t = self.read_timespec(arg4)?;
                    Some(if cmd == WAIT {
                        now.saturating_add(t)
                    } else {
                        t
                    })
                };
                if self.read_u32(uaddr)? != val {
                    return Err(EAGAIN);
                }
                if deadline.is_some_and(|d| d <= now) {
                    return Err(ETIMEDOUT);
                }
                self.futex.wait(uaddr, bitset, tid, deadline);
                Ok(None)
            }
            WAKE | WAKE_BITSET => {
                let bitset = if cmd == WAKE { u32::MAX } else { val3 };
                if bitset == 0 {
                    return Err(EINVAL);
                }
                let woken = self.futex.wake(uaddr, val.min(i32::MAX as u32), bitset);
                for w in &woken {
                    if let Some(s) = self.slot_of(*w) {
                        self.wake(s, Ok(0));
                    }
                }
                Ok(Some(woken.len() as u64))
            }
            REQUEUE | CMP_REQUEUE => {
                if !uaddr2.is_multiple_of(4) {
                    return Err(EINVAL);
                }
                if cmd == CMP_REQUEUE && self.read_u32(uaddr)? != val3 {
                    return Err(EAGAIN);
                }
                let n_move = (arg4 as u32).min(i32::MAX as u32);
                let (woken, moved) =
                    self.futex
                        .requeue(uaddr, uaddr2, val.min(i32::MAX as u32), n_move);
                for w in &woken {
                    if let Some(s) = self.slot_of(*w) {
                        self.wake(s, Ok(0));
                    }
                }
                Ok(Some(woken.len() as u64 + moved as u64))
            }
            _ => Err(ENOSYS),
        }
    }
}

//! The process's CPUs (`sched_getaffinity`), resource limits
//! (`prlimit64`) and random numbers (`getrandom`).

use alloc::vec;

use super::{Backend, IO_MAX, PID, Runtime};
use crate::fd;
use crate::linux::SysResult;
use crate::linux::errno::*;

impl<B: Backend> Runtime<B> {
    pub(super) fn sys_getaffinity(&mut self, _pid: u64, size: u64, mask: u64) -> SysResult {
        if size < 8 || !size.is_multiple_of(8) {
            return Err(EINVAL);
        }
        let cpus = if self.cfg.cpus == 0 { 1 } else { self.cfg.cpus };
        self.write_user(mask, &cpus.to_le_bytes())?;
        Ok(8)
    }

    pub(super) fn sys_prlimit(&mut self, pid: u64, res: u64, old: u64) -> SysResult {
        const RLIMIT_STACK: u64 = 3;
        const RLIMIT_NOFILE: u64 = 7;
        if pid != 0 && pid != PID as u64 {
            return Err(ESRCH);
        }
        if res > 15 {
            return Err(EINVAL);
        }
        if old != 0 {
            let (cur, max) = match res {
                RLIMIT_STACK => (l4_env::PROGRAM_STACK_SIZE, u64::MAX),
                RLIMIT_NOFILE => (fd::MAX_FDS as u64, fd::MAX_FDS as u64),
                _ => (u64::MAX, u64::MAX),
            };
            let mut b = [0u8; 16];
            b[..8].copy_from_slice(&cur.to_le_bytes());
            b[8..].copy_from_slice(&max.to_le_bytes());
            self.write_user(old, &b)?;
        }
        Ok(0)
    }

    pub(super) fn sys_getrandom(&mut self, buf: u64, len: u64) -> SysResult {
        let n = (len as usize).min(IO_MAX);
        let mut v = vec![0u8; n];
        for c in v.chunks_mut(8) {
            let r = self.random().to_le_bytes();
            c.copy_from_slice(&r[..c.len()]);
        }
        self.write_user(buf, &v)?;
        Ok(n as u64)
    }
}

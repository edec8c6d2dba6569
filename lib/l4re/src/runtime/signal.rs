//! Signals: actions, masks and alternate stacks are kept per process and
//! thread; a signal sent that is not ignored ends the task (signals are
//! not delivered to handlers).

use alloc::format;

use super::{Backend, Runtime};
use crate::linux::errno::*;
use crate::linux::{SysResult, sig};

pub(super) fn signame(s: i64) -> &'static str {
    match s {
        sig::SIGILL => "SIGILL",
        sig::SIGTRAP => "SIGTRAP",
        sig::SIGABRT => "SIGABRT",
        sig::SIGBUS => "SIGBUS",
        sig::SIGFPE => "SIGFPE",
        sig::SIGKILL => "SIGKILL",
        sig::SIGSEGV => "SIGSEGV",
        sig::SIGSYS => "SIGSYS",
        _ => "signal",
    }
}

impl<B: Backend> Runtime<B> {
    pub(super) fn sys_kill(&mut self, target_exists: bool, signal: u64) -> SysResult {
        if !target_exists {
            return Err(ESRCH);
        }
        if signal == 0 {
            return Ok(0);
        }
        if signal > sig::NSIG as u64 {
            return Err(EINVAL);
        }
        let handler = self.sigactions[signal as usize - 1][0];
        let ignored = handler == sig::SIG_IGN
            || (handler == sig::SIG_DFL && sig::DEFAULT_IGNORED & (1 << (signal - 1)) != 0);
        if ignored {
            return Ok(0);
        }
        let s = signal as i64;
        if handler != sig::SIG_DFL {
            self.report(&format!(
                "signal {s} has a handler, but signals cannot be delivered; ending"
            ));
        }
        self.report(&format!("killed by signal {s} ({})", signame(s)));
        self.exit_group(-s);
        Ok(0)
    }

    pub(super) fn sys_sigaction(
        &mut self,
        signal: u64,
        act: u64,
        oact: u64,
        size: u64,
    ) -> SysResult {
        if size != 8 || signal == 0 || signal > sig::NSIG as u64 {
            return Err(EINVAL);
        }
        let i = signal as usize - 1;
        if act != 0 && (signal as i64 == sig::SIGKILL || signal as i64 == sig::SIGSTOP) {
            return Err(EINVAL);
        }
        let new = if act != 0 {
            let v = self.read_user(act, 32)?;
            let mut w = [0u64; 4];
            for (k, c) in v.chunks(8).enumerate() {
                w[k] = u64::from_le_bytes(c.try_into().unwrap_or([0; 8]));
            }
            Some(w)
        } else {
            None
        };
        if oact != 0 {
            let mut b = [0u8; 32];
            for (k, w) in self.sigactions[i].iter().enumerate() {
                b[k * 8..k * 8 + 8].copy_from_slice(&w.to_le_bytes());
            }
            self.write_user(oact, &b)?;
        }
        if let Some(w) = new {
            self.sigactions[i] = w;
        }
        Ok(0)
    }

    pub(super) fn sys_sigprocmask(
        &mut self,
        slot: usize,
        how: u64,
        set: u64,
        oset: u64,
        size: u64,
    ) -> SysResult {
        if size != 8 {
            return Err(EINVAL);
        }
        let old = self.threads.get(&slot).map_or(0, |t| t.sigmask);
        let new = if set != 0 {
            let s = self.read_u64(set)?;
            Some(new_sigmask(old, how, s)?)
        } else {
            None
        };
        if oset != 0 {
            self.write_user(oset, &old.to_le_bytes())?;
        }
        if let (Some(n), Some(t)) = (new, self.threads.get_mut(&slot)) {
            t.sigmask = n;
        }
        Ok(0)
    }

    pub(super) fn sys_sigaltstack(&mut self, slot: usize, ss: u64, old: u64) -> SysResult {
        let cur = self
            .threads
            .get(&slot)
            .map_or(Self::no_altstack(), |t| t.altstack);
        let new = if ss != 0 {
            let v = self.read_user(ss, 24)?;
            let flags = u32::from_le_bytes([v[8], v[9], v[10], v[11]]);
            let size = u64::from_le_bytes(v[16..24].try_into().unwrap_or([0; 8]));
            if flags & !sig::SS_DISABLE != 0 {
                return Err(EINVAL);
            }
            if flags & sig::SS_DISABLE == 0 && size < 2048 {
                return Err(ENOMEM);
            }
            let mut a = [0u8; 24];
            a.copy_from_slice(&v);
            Some(a)
        } else {
            None
        };
        if old != 0 {
            self.write_user(old, &cur)?;
        }
        if let (Some(a), Some(t)) = (new, self.threads.get_mut(&slot)) {
            t.altstack = a;
        }
        Ok(0)
    }
}

/// The signal mask after `rt_sigprocmask(how, set)` on `old`: block
/// (`SIG_BLOCK` 0), unblock (`SIG_UNBLOCK` 1) or set (`SIG_SETMASK` 2);
/// `SIGKILL` and `SIGSTOP` stay unblocked.
pub(super) fn new_sigmask(old: u64, how: u64, set: u64) -> Result<u64, i64> {
    let unblockable = (1u64 << (sig::SIGKILL - 1)) | (1 << (sig::SIGSTOP - 1));
    let new = match how {
        0 => old | set,
        1 => old & !set,
        2 => set,
        _ => return Err(EINVAL),
    };
    Ok(new & !unblockable)
}

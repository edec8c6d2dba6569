//! Standard input and output: writes go to the log, reads of standard
//! input take what the log has (waiting for more when empty), `ppoll`
//! reports readiness and waits like a read.

use alloc::vec::Vec;

use super::{Backend, IO_MAX, Runtime, STDIN_POLL_NS, Space, Wait};
use crate::fd::File;
use crate::linux::errno::*;
use crate::linux::{self, SysResult};

impl<B: Backend> Runtime<B> {
    pub(super) fn sys_write(&mut self, fd: u64, buf: u64, len: u64) -> SysResult {
        match self.fds.get(fd)?.file {
            File::Stdout | File::Stderr => {}
            _ => return Err(EBADF),
        }
        let n = (len as usize).min(IO_MAX);
        let data = self.read_user(buf, n)?;
        self.output(&data);
        Ok(n as u64)
    }

    pub(super) fn sys_writev(&mut self, fd: u64, iov: u64, cnt: u64) -> SysResult {
        match self.fds.get(fd)?.file {
            File::Stdout | File::Stderr => {}
            _ => return Err(EBADF),
        }
        if cnt > 1024 {
            return Err(EINVAL);
        }
        let mut data = Vec::new();
        for i in 0..cnt {
            let base = self.read_u64(iov + 16 * i)?;
            let len = self.read_u64(iov + 16 * i + 8)?;
            let n = (len as usize).min(IO_MAX - data.len());
            data.extend_from_slice(&self.read_user(base, n)?);
            if data.len() >= IO_MAX {
                break;
            }
        }
        self.output(&data);
        Ok(data.len() as u64)
    }

    /// `Ok(None)`: nothing to read yet (the caller waits).
    pub(super) fn sys_read(&mut self, fd: u64, buf: u64, len: u64) -> Result<Option<u64>, i64> {
        let file = self.fds.get(fd)?.file.clone();
        match file {
            File::Stdin => {
                if len == 0 {
                    return Ok(Some(0));
                }
                self.fill_stdin();
                if self.stdin.is_empty() {
                    // Check the buffer is writable before waiting.
                    self.ensure(Space::Program, buf, 1, true)?;
                    let now = self.b.now_ns();
                    self.await_stdin(now);
                    return Ok(None);
                }
                self.deliver_stdin(buf, len).map(Some)
            }
            File::Rom(f) => {
                let n = self.rom_read(&f, f.pos, buf, len)?;
                if let File::Rom(f) = &mut self.fds.get_mut(fd)?.file {
                    f.pos += n;
                }
                Ok(Some(n))
            }
            File::Proc(f) => {
                let n = self.proc_read(&f, f.pos, buf, len)?;
                if let File::Proc(f) = &mut self.fds.get_mut(fd)?.file {
                    f.pos += n;
                }
                Ok(Some(n))
            }
            _ => Err(EBADF),
        }
    }

    pub(super) fn sys_readv(&mut self, fd: u64, iov: u64, cnt: u64) -> SysResult {
        if cnt > 1024 {
            return Err(EINVAL);
        }
        let mut total = 0;
        for i in 0..cnt {
            let base = self.read_u64(iov + 16 * i)?;
            let len = self.read_u64(iov + 16 * i + 8)?;
            if len == 0 {
                continue;
            }
            // Never wait in readv: a stdin read without input returns what
            // was read so far (EAGAIN if nothing).
            match self.sys_read(fd, base, len)? {
                Some(n) => {
                    total += n;
                    if n < len {
                        break;
                    }
                }
                None if total == 0 => return Err(EAGAIN),
                None => break,
            }
        }
        Ok(total)
    }

    fn fill_stdin(&mut self) {
        let mut buf = [0u8; 256];
        loop {
            let n = self.b.log_read(&mut buf).min(buf.len());
            self.stdin.extend(&buf[..n]);
            if n < buf.len() || self.stdin.len() > 4096 {
                break;
            }
        }
    }

    fn deliver_stdin(&mut self, buf: u64, len: u64) -> SysResult {
        let n = (len as usize).min(self.stdin.len());
        let data: Vec<u8> = self.stdin.iter().take(n).copied().collect();
        self.write_user(buf, &data)?;
        self.stdin.drain(..n);
        Ok(n as u64)
    }

    /// Serves threads waiting for log input.
    pub(super) fn serve_stdin(&mut self, now: u64) {
        let readers: Vec<usize> = self
            .threads
            .iter()
            .filter(|(_, t)| matches!(t.blocked, Some((_, Wait::Read { .. } | Wait::Poll { .. }))))
            .map(|(s, _)| *s)
            .collect();
        if readers.is_empty() {
            return;
        }
        self.fill_stdin();
        for slot in readers {
            let w = self.threads.get(&slot).and_then(|t| t.blocked.clone());
            match w {
                Some((_, Wait::Read { buf, len })) if !self.stdin.is_empty() => {
                    let r = self.deliver_stdin(buf, len);
                    self.wake(slot, r);
                }
                Some((_, Wait::Poll { fds, nfds, .. })) => {
                    if let Ok(n) = self.poll_eval(fds, nfds, false)
                        && n > 0
                    {
                        self.wake(slot, Ok(n as u64));
                    }
                }
                _ => {}
            }
        }
        let still = self.threads.values().any(|t| {
            matches!(t.blocked, Some((_, Wait::Read { .. })))
                || matches!(t.blocked, Some((_, Wait::Poll { .. })))
        });
        if still {
            self.await_stdin(now);
        }
    }

    /// The log signalled input ([`Backend::stdin_irq`]): waiting readers
    /// take it.
    pub fn stdin_signalled(&mut self) {
        let now = self.b.now_ns();
        self.serve_stdin(now);
    }

    /// A reader waits for log input: the log signals it, or the runtime
    /// polls for it every [`STDIN_POLL_NS`].
    fn await_stdin(&mut self, now: u64) {
        if self.stdin_irq.is_none() {
            self.stdin_irq = Some(self.b.stdin_irq());
        }
        if self.stdin_irq == Some(true) {
            self.b.stdin_unmask();
        } else {
            self.stdin_poll_at.get_or_insert(now + STDIN_POLL_NS);
        }
    }

    /// `Ok(Ok(n))`: ready now; `Ok(Err(deadline))`: the caller waits.
    pub(super) fn sys_ppoll(
        &mut self,
        fds: u64,
        nfds: u64,
        tmo: u64,
    ) -> Result<Result<u64, Option<u64>>, i64> {
        if nfds > 1024 {
            return Err(EINVAL);
        }
        let timeout = if tmo == 0 {
            None
        } else {
            Some(self.read_timespec(tmo)?)
        };
        // Input is fetched from the log only for a poll that asks for it
        // (a program's start polls its standard descriptors for nothing
        // but their validity).
        let wants_input = self.poll_watches_stdin(fds, nfds)?;
        if wants_input {
            self.fill_stdin();
        }
        let n = self.poll_eval(fds, nfds, timeout == Some(0))?;
        if n > 0 || timeout == Some(0) {
            return Ok(Ok(n as u64));
        }
        let now = self.b.now_ns();
        if wants_input {
            self.await_stdin(now);
        }
        Ok(Err(timeout.map(|t| now.saturating_add(t))))
    }

    /// Whether a poll of `fds` asks whether standard input is readable.
    fn poll_watches_stdin(&mut self, fds: u64, nfds: u64) -> Result<bool, i64> {
        let v = self.read_user(fds, (nfds * 8) as usize)?;
        Ok(v.chunks(8).any(|e| {
            let fd = i32::from_le_bytes([e[0], e[1], e[2], e[3]]);
            let events = u16::from_le_bytes([e[4], e[5]]);
            fd >= 0
                && events & linux::poll::POLLIN != 0
                && matches!(self.fds.get(fd as u64).map(|f| &f.file), Ok(File::Stdin))
        }))
    }

    /// Fills in `revents`; writes them back if any is set or `always`.
    pub(super) fn poll_eval(&mut self, fds: u64, nfds: u64, always: bool) -> Result<usize, i64> {
        use linux::poll::*;
        let len = (nfds * 8) as usize;
        let mut v = self.read_user(fds, len)?;
        let mut ready = 0;
        for e in v.chunks_mut(8) {
            let fd = i32::from_le_bytes([e[0], e[1], e[2], e[3]]);
            let events = u16::from_le_bytes([e[4], e[5]]);
            let rev = if fd < 0 {
                0
            } else {
                match self.fds.get(fd as u64).map(|f| &f.file) {
                    Err(_) => POLLNVAL,
                    Ok(File::Stdin) if !self.stdin.is_empty() => events & POLLIN,
                    Ok(File::Stdin) => 0,
                    Ok(File::Stdout | File::Stderr) => events & POLLOUT,
                    Ok(File::Rom(_) | File::Proc(_)) => events & (POLLIN | POLLOUT),
                }
            };
            e[6..8].copy_from_slice(&rev.to_le_bytes());
            if rev != 0 {
                ready += 1;
            }
        }
        if ready > 0 || always {
            self.write_user(fds, &v)?;
        }
        Ok(ready)
    }
}

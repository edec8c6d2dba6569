//! The system-call switch: decodes the Linux call in the exception
//! registers, hands it to its concern's module and turns the outcome into
//! a reply, a wait or the end of the task; optionally traces every call.

use alloc::format;
use alloc::string::String;

use l4_abi::fault::ExcRegs;

use super::{Action, Backend, PID, Runtime, Wait};
use crate::linux::errno::*;
use crate::linux::{self, Sys, SysResult, clock};

/// How a system call went.
pub(super) enum Flow {
    /// Reply with this result.
    Done(SysResult),
    /// The thread waits (deferred reply).
    Wait,
    /// The task ended.
    Exit,
}

impl<B: Backend> Runtime<B> {
    pub(super) fn syscall(&mut self, slot: usize, regs: ExcRegs) -> Action {
        let nr = regs.x[8];
        let a = [
            regs.x[0], regs.x[1], regs.x[2], regs.x[3], regs.x[4], regs.x[5],
        ];
        let r = match Sys::from_nr(nr) {
            Some(s) => match self.dispatch(slot, &regs, s, a) {
                Flow::Done(r) => r,
                Flow::Wait => {
                    self.traced(slot, nr, a, None);
                    return Action::NoReply;
                }
                Flow::Exit => return Action::Exit,
            },
            None => {
                if self.unknown.insert(nr) {
                    self.report(&format!("system call {nr} is not implemented (ENOSYS)"));
                }
                Err(ENOSYS)
            }
        };
        self.traced(slot, nr, a, Some(r));
        let mut out = regs;
        out.x[0] = linux::ret_value(r);
        Action::Reply(out)
    }

    fn traced(&mut self, slot: usize, nr: u64, a: [u64; 6], r: Option<SysResult>) {
        if self.cfg.trace {
            let name = Sys::from_nr(nr).map_or("?", Sys::name);
            let tid = self.threads.get(&slot).map_or(0, |t| t.tid);
            let res = match r {
                None => String::from("(waits)"),
                Some(Ok(v)) => format!("= {v:#x}"),
                Some(Err(e)) => format!("= -{e}"),
            };
            self.report(&format!(
                "[{tid}] {name}({:#x}, {:#x}, {:#x}, {:#x}) {res}",
                a[0], a[1], a[2], a[3]
            ));
        }
    }

    /// `Ok(Some(r))`: reply with `r`; `Ok(None)`: the thread waits;
    /// `Err(action)`: something else (exit).
    fn dispatch(&mut self, slot: usize, regs: &ExcRegs, s: Sys, a: [u64; 6]) -> Flow {
        let done = Flow::Done;
        let tid = self.threads.get(&slot).map_or(0, |t| t.tid);
        match s {
            Sys::Write => done(self.sys_write(a[0], a[1], a[2])),
            Sys::Writev => done(self.sys_writev(a[0], a[1], a[2])),
            Sys::Read => match self.sys_read(a[0], a[1], a[2]) {
                Ok(Some(n)) => done(Ok(n)),
                Ok(None) => self.block(
                    slot,
                    regs,
                    Wait::Read {
                        buf: a[1],
                        len: a[2],
                    },
                ),
                Err(e) => done(Err(e)),
            },
            Sys::Readv => done(self.sys_readv(a[0], a[1], a[2])),
            Sys::Pread64 => done(self.sys_pread(a[0], a[1], a[2], a[3])),
            Sys::Openat => done(self.sys_openat(a[0] as i64, a[1], a[2])),
            Sys::Close => done(self.sys_close(a[0])),
            Sys::Lseek => done(self.sys_lseek(a[0], a[1] as i64, a[2])),
            Sys::Fstat => done(self.sys_fstat(a[0], a[1], false)),
            Sys::Newfstatat => done(self.sys_fstatat(a[0] as i64, a[1], a[2], a[3], false)),
            Sys::Statx => done(self.sys_fstatat(a[0] as i64, a[1], a[4], a[2], true)),
            Sys::Faccessat => done(self.sys_faccessat(a[0] as i64, a[1], a[2])),
            Sys::Fcntl => done(self.sys_fcntl(a[0], a[1], a[2])),
            Sys::Ioctl => done(self.fds.get(a[0]).map_or(Err(EBADF), |_| Err(ENOTTY))),
            Sys::Getcwd => done(self.sys_getcwd(a[0], a[1])),
            Sys::Getdents64 => done(self.fds.get(a[0]).map_or(Err(EBADF), |_| Err(ENOTDIR))),
            Sys::Readlinkat => done(Err(ENOENT)),
            Sys::Ppoll => match self.sys_ppoll(a[0], a[1], a[2]) {
                Ok(Ok(n)) => done(Ok(n)),
                Ok(Err(deadline)) => self.block(
                    slot,
                    regs,
                    Wait::Poll {
                        fds: a[0],
                        nfds: a[1],
                        deadline,
                    },
                ),
                Err(e) => done(Err(e)),
            },
            Sys::Exit => {
                self.thread_exit(slot, a[0] as i32 as i64);
                if self.exited { Flow::Exit } else { Flow::Wait }
            }
            Sys::ExitGroup => {
                self.exit_group((a[0] & 0xff) as i64);
                Flow::Exit
            }
            Sys::SetTidAddress => {
                if let Some(t) = self.threads.get_mut(&slot) {
                    t.clear_tid = a[0];
                }
                done(Ok(tid as u64))
            }
            Sys::SetRobustList => done(Ok(0)),
            Sys::Futex => match self.sys_futex(tid, a) {
                Ok(Some(v)) => done(Ok(v)),
                Ok(None) => self.block(slot, regs, Wait::Futex),
                Err(e) => done(Err(e)),
            },
            Sys::Nanosleep => self.sleep(slot, regs, clock::MONOTONIC, 0, a[0]),
            Sys::ClockNanosleep => self.sleep(slot, regs, a[0], a[1], a[2]),
            Sys::ClockGettime => done(self.sys_clock_gettime(a[0], a[1])),
            Sys::ClockGetres => done(self.sys_clock_getres(a[0], a[1])),
            Sys::SchedGetaffinity => done(self.sys_getaffinity(a[0], a[1], a[2])),
            Sys::SchedSetaffinity => done(Ok(0)),
            Sys::SchedYield => done(Ok(0)),
            Sys::Kill => done(self.sys_kill(a[0] as i64 == PID as i64 || a[0] == 0, a[1])),
            Sys::Tkill => done(self.sys_kill(self.slot_of(a[0] as u32).is_some(), a[1])),
            Sys::Tgkill => done(self.sys_kill(
                a[0] as u32 == PID && self.slot_of(a[1] as u32).is_some(),
                a[2],
            )),
            Sys::Sigaltstack => done(self.sys_sigaltstack(slot, a[0], a[1])),
            Sys::RtSigaction => done(self.sys_sigaction(a[0], a[1], a[2], a[3])),
            Sys::RtSigprocmask => done(self.sys_sigprocmask(slot, a[0], a[1], a[2], a[3])),
            Sys::Uname => done(
                self.write_user(a[0], &linux::utsname("6.1.0", "aarch64"))
                    .map(|()| 0),
            ),
            Sys::Prctl => done(self.sys_prctl(slot, a[0], a[1])),
            Sys::Getpid => done(Ok(PID as u64)),
            Sys::Getppid => done(Ok(0)),
            Sys::Getuid | Sys::Geteuid | Sys::Getgid | Sys::Getegid => done(Ok(0)),
            Sys::Gettid => done(Ok(tid as u64)),
            Sys::Brk => done(Ok(self.sys_brk(a[0]))),
            Sys::Mmap => done(self.sys_mmap(a[0], a[1], a[2], a[3], a[4] as i32 as i64, a[5])),
            Sys::Munmap => done(self.sys_munmap(a[0], a[1])),
            Sys::Mremap => done(self.sys_mremap(a[0], a[1])),
            Sys::Mprotect => done(self.sys_mprotect(a[0], a[1], a[2])),
            Sys::Madvise => done(self.sys_madvise(a[0], a[1], a[2])),
            Sys::Prlimit64 => done(self.sys_prlimit(a[0], a[1], a[3])),
            Sys::Getrandom => done(self.sys_getrandom(a[0], a[1])),
            Sys::Rseq | Sys::Clone3 => done(Err(ENOSYS)),
            Sys::L4reAttach => done(self.sys_l4re_attach(a[0], a[1], a[2], a[3])),
            Sys::L4reThreadCap => done(self.threads.get(&slot).map(|t| t.cap).ok_or(ESRCH)),
            Sys::L4reUtcbPage => done(self.sys_l4re_utcb_page()),
            Sys::Clone => done(self.sys_clone(slot, regs, a)),
        }
    }
}

//! Page faults and exceptions of program threads: a fault inside a region
//! that allows the access is resolved by mapping the page; a Linux system
//! call goes to [`super::syscall`]; anything else is reported (with the
//! registers) and ends the task with the signal Linux would send.

use alloc::format;
use alloc::string::String;

use l4_abi::fault::{ExcRegs, PageFault};

use super::signal::signame;
use super::{Action, Backend, PfAction, Runtime, Space};
use crate::layout::*;
use crate::linux::sig;
use crate::regions::{Backing, PAGE, Prot, page_down};

/// A description of an exception syndrome and the signal Linux would send.
pub fn describe_esr(esr: u64) -> (&'static str, i64) {
    let ec = (esr >> 26) & 0x3f;
    match ec {
        0x00 => ("undefined instruction", sig::SIGILL),
        0x01 => ("trapped WFI/WFE", sig::SIGILL),
        0x07 => ("trapped SIMD/FP access", sig::SIGILL),
        0x0e => ("illegal execution state", sig::SIGILL),
        0x15 => ("SVC with an unknown immediate", sig::SIGSYS),
        0x18 => ("trapped system register access", sig::SIGILL),
        0x20 => ("instruction abort", sig::SIGSEGV),
        0x22 => ("misaligned pc", sig::SIGBUS),
        0x24 if esr & 0x3f == 0x21 => ("alignment fault", sig::SIGBUS),
        0x24 => ("data abort", sig::SIGSEGV),
        0x26 => ("misaligned sp", sig::SIGBUS),
        0x2c => ("floating-point exception", sig::SIGFPE),
        0x30 | 0x32 | 0x34 => ("debug exception", sig::SIGTRAP),
        0x3c => ("breakpoint (BRK)", sig::SIGTRAP),
        _ => ("unknown exception", sig::SIGILL),
    }
}

fn prot_str(p: Prot) -> [u8; 3] {
    [
        if p.read() { b'r' } else { b'-' },
        if p.write() { b'w' } else { b'-' },
        if p.exec() { b'x' } else { b'-' },
    ]
}

impl<B: Backend> Runtime<B> {
    /// A page fault of a program thread.
    pub fn page_fault(&mut self, pf: PageFault) -> PfAction {
        if self.exited {
            return PfAction::Exit;
        }
        let access = if pf.exec {
            "exec"
        } else if pf.write {
            "write"
        } else {
            "read"
        };
        self.startup.faults += 1;
        let addr = page_down(pf.addr);
        let region = self.regions.lookup(pf.addr).copied();
        let detail = match region {
            None => None,
            Some(r) if matches!(r.backing, Backing::Reserved) => Some(format!(
                "{:#x} is in a guard or runtime area ({:#x}..{:#x})",
                pf.addr, r.start, r.end
            )),
            Some(r)
                if !r.prot.read()
                    || (pf.write && !r.prot.write())
                    || (pf.exec && !r.prot.exec()) =>
            {
                let p = prot_str(r.prot);
                Some(format!(
                    "region {:#x}..{:#x} is {}",
                    r.start,
                    r.end,
                    core::str::from_utf8(&p).unwrap_or("?")
                ))
            }
            Some(r) => {
                // Repeated faults at one address: the mapping does not stick.
                if self.last_fault.0 == addr {
                    self.last_fault.1 += 1;
                } else {
                    self.last_fault = (addr, 0);
                }
                if self.last_fault.1 > 16 {
                    Some(String::from("the page does not stay mapped"))
                } else {
                    let page = (addr, addr + PAGE);
                    match self.map_pages(Space::Program, &r, page, (r.start, r.end), r.prot) {
                        Ok(()) => return PfAction::Retry,
                        Err(e) => Some(format!("cannot map the page (error {e})")),
                    }
                }
            }
        };
        self.report(&format!(
            "unhandled page fault at {:#x} pc {:#x} ({access})",
            pf.addr, pf.pc
        ));
        if let Some(d) = detail {
            self.report(&d);
        }
        self.exit_group(-sig::SIGSEGV);
        PfAction::Exit
    }

    /// An exception of a program thread (its UTCB tells which).
    pub fn exception(&mut self, regs: ExcRegs) -> Action {
        let began = self.serve_begins();
        let a = self.handle_exception(regs);
        self.serve_ends(began);
        a
    }

    /// Until the program's first output: the clock when serving a message
    /// begins.
    fn serve_begins(&mut self) -> Option<u64> {
        (!self.startup.reported).then(|| self.b.now_ns())
    }

    fn serve_ends(&mut self, began: Option<u64>) {
        if let Some(t) = began {
            self.startup.serving_ns += self.b.now_ns().saturating_sub(t);
        }
    }

    fn handle_exception(&mut self, regs: ExcRegs) -> Action {
        if self.exited {
            return Action::Exit;
        }
        let Some(slot) = utcb_slot(regs.tpidruro).filter(|s| self.threads.contains_key(s)) else {
            self.report(&format!(
                "exception from an unknown thread (UTCB {:#x}, pc {:#x}); ignored",
                regs.tpidruro, regs.pc
            ));
            return Action::NoReply;
        };
        if !regs.is_linux_syscall() {
            return self.fatal_exception(&regs);
        }
        self.startup.syscalls += 1;
        let a = self.syscall(slot, regs);
        if self.exited {
            return Action::Exit;
        }
        a
    }

    fn fatal_exception(&mut self, r: &ExcRegs) -> Action {
        let (what, signal) = describe_esr(r.err);
        self.report(&format!(
            "unhandled exception: {what} (ESR {:#x}) at pc {:#x}, address {:#x}",
            r.err, r.pc, r.pfa
        ));
        for i in (0..31).step_by(4) {
            let mut line = String::new();
            for j in i..(i + 4).min(31) {
                line.push_str(&format!("x{j:<2} {:016x}  ", r.x[j]));
            }
            if i == 28 {
                line.push_str(&format!("sp  {:016x}", r.sp));
            }
            self.report(line.trim_end());
        }
        self.report(&format!("ends with {}", signame(signal)));
        self.exit_group(-signal);
        Action::Exit
    }
}

//! Messages the kernel sends on behalf of a faulting thread.
//!
//! **Page fault** (to the thread's pager, a call): label
//! [`Proto::PageFault`], 2 words: MR0 = fault address with the low three
//! bits replaced by [`PF_WRITE`] / [`PF_EXEC`] (Fiasco puts the write bit at
//! bit 1 too), MR1 = pc. The faulting thread's receive window is the whole
//! address space, so the pager answers with map items whose send base
//! (hot spot) is the fault address. The thread then retries the access; a
//! reply without items makes it fault again.
//!
//! **Exception** (to the exception handler, a call): label
//! [`Proto::Exception`], [`EXC_REGS_WORDS`] words laid out as [`ExcRegs`]
//! (Fiasco's arm64 `l4_exc_regs_t`). A Linux system call (`svc #0`) arrives
//! this way with `err` = its ESR (class 0x15, immediate 0). A reply with at
//! least [`EXC_REGS_WORDS`] words sets the thread's registers from it (of
//! `pstate` only the condition flags NZCV); a shorter reply leaves them
//! unchanged. Either way the thread resumes at its (possibly new) pc.

use crate::msgtag::MsgTag;
use crate::proto::Proto;

/// Page-fault flag in MR0: the access was a write.
pub const PF_WRITE: u64 = 0x2;
/// Page-fault flag in MR0: the access was an instruction fetch.
pub const PF_EXEC: u64 = 0x1;
/// Mask of the address part of MR0.
pub const PF_ADDR_MASK: u64 = !0x7;

/// A decoded page-fault message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageFault {
    /// The faulting address (low three bits cleared).
    pub addr: u64,
    /// Whether it was a write.
    pub write: bool,
    /// Whether it was an instruction fetch.
    pub exec: bool,
    /// The pc of the faulting instruction.
    pub pc: u64,
}

impl PageFault {
    /// The message tag of a page fault.
    pub const TAG: MsgTag = MsgTag::proto(Proto::PageFault, 2, 0);

    /// The two message words.
    pub const fn to_words(self) -> [u64; 2] {
        let flags = if self.write { PF_WRITE } else { 0 } | if self.exec { PF_EXEC } else { 0 };
        [(self.addr & PF_ADDR_MASK) | flags, self.pc]
    }

    /// Reads the two message words.
    pub const fn from_words(w: [u64; 2]) -> PageFault {
        PageFault {
            addr: w[0] & PF_ADDR_MASK,
            write: w[0] & PF_WRITE != 0,
            exec: w[0] & PF_EXEC != 0,
            pc: w[1],
        }
    }
}

/// The register state in an exception message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct ExcRegs {
    /// Reserved (Fiasco: `eret_work`), 0.
    pub eret_work: u64,
    /// x0..x30.
    pub x: [u64; 31],
    /// Reserved, 0.
    pub reserved: u64,
    /// The exception syndrome (ESR).
    pub err: u64,
    /// The fault address (FAR) for aborts, else 0.
    pub pfa: u64,
    /// The stack pointer (SP_EL0).
    pub sp: u64,
    /// The program counter.
    pub pc: u64,
    /// PSTATE (SPSR).
    pub pstate: u64,
    /// TPIDRRO_EL0 (the UTCB address; not changed by a reply).
    pub tpidruro: u64,
    /// TPIDR_EL0 (thread pointer).
    pub tpidrurw: u64,
}

/// Number of message words of an exception message.
pub const EXC_REGS_WORDS: usize = core::mem::size_of::<ExcRegs>() / 8;

/// PSTATE bits a reply may change (NZCV).
pub const PSTATE_USER_MASK: u64 = 0xf000_0000;

const _: () = assert!(EXC_REGS_WORDS == 40 && EXC_REGS_WORDS <= crate::utcb::MR_COUNT);

impl ExcRegs {
    /// The message tag of an exception.
    pub const TAG: MsgTag = MsgTag::proto(Proto::Exception, EXC_REGS_WORDS as u32, 0);

    /// The message words.
    pub fn to_words(&self) -> [u64; EXC_REGS_WORDS] {
        let mut w = [0u64; EXC_REGS_WORDS];
        w[0] = self.eret_work;
        w[1..32].copy_from_slice(&self.x);
        w[32] = self.reserved;
        w[33] = self.err;
        w[34] = self.pfa;
        w[35] = self.sp;
        w[36] = self.pc;
        w[37] = self.pstate;
        w[38] = self.tpidruro;
        w[39] = self.tpidrurw;
        w
    }

    /// Reads the message words; `None` if fewer than [`EXC_REGS_WORDS`].
    pub fn from_words(w: &[u64]) -> Option<ExcRegs> {
        let w = w.get(..EXC_REGS_WORDS)?;
        let mut x = [0u64; 31];
        x.copy_from_slice(&w[1..32]);
        Some(ExcRegs {
            eret_work: w[0],
            x,
            reserved: w[32],
            err: w[33],
            pfa: w[34],
            sp: w[35],
            pc: w[36],
            pstate: w[37],
            tpidruro: w[38],
            tpidrurw: w[39],
        })
    }

    /// The exception class (ESR bits 26..32).
    pub const fn exception_class(&self) -> u32 {
        ((self.err >> 26) & 0x3f) as u32
    }

    /// Whether this is a Linux system call (`svc #0` from AArch64).
    pub const fn is_linux_syscall(&self) -> bool {
        self.exception_class() == 0x15 && self.err & 0xffff == crate::SVC_LINUX as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_fault_words() {
        let pf = PageFault {
            addr: 0x1234_5678,
            write: true,
            exec: false,
            pc: 0x40_0000,
        };
        let w = pf.to_words();
        assert_eq!(w, [0x1234_5678 | PF_WRITE, 0x40_0000]);
        assert_eq!(PageFault::from_words(w), pf);
        let x = PageFault::from_words([0x1007, 0]);
        assert_eq!((x.addr, x.write, x.exec), (0x1000, true, true));
        assert_eq!(PageFault::TAG.words(), 2);
        assert!(PageFault::TAG.is_page_fault());
    }

    #[test]
    fn exception_words() {
        let mut r = ExcRegs {
            err: (0x15 << 26) | (1 << 25),
            pc: 0x1000,
            sp: 0x2000,
            tpidrurw: 9,
            ..Default::default()
        };
        r.x[8] = 64;
        r.x[30] = 0xdead;
        let w = r.to_words();
        assert_eq!(w[9], 64, "x8");
        assert_eq!(w[31], 0xdead, "x30");
        assert_eq!(ExcRegs::from_words(&w), Some(r));
        assert_eq!(ExcRegs::from_words(&w[..39]), None);
        assert!(r.is_linux_syscall());
        r.err |= 1;
        assert!(!r.is_linux_syscall());
        assert_eq!(ExcRegs::TAG.words(), 40);
    }
}

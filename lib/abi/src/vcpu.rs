//! The vCPU state area: what a VMM and the kernel exchange about a guest
//! CPU.
//!
//! A thread in vCPU mode has a state area: one 4 KiB page of its task's
//! UTCB area ([`VcpuState`], at most [`STATE_SIZE`] bytes), named when the
//! thread is switched to vCPU mode. The VMM fills it (registers, EL1
//! system registers, timer, GIC virtual interface, injection requests)
//! and resumes the vCPU; the kernel checks everything it is handed with
//! [`VcpuState::check`], runs the guest at EL1 in its Vm's stage-2 space
//! until an exit it does not handle itself (WFI, the virtual timer and
//! interrupt injection are the kernel's), and writes the state back with
//! the exit in [`VcpuState::exit`]. Parts the VMM left as the last exit
//! wrote them it may mark in [`VcpuState::unchanged`]: the kernel then
//! takes them from its own checked copy instead of reading them again.
//!
//! The guest's EL1 system registers need no checking: the guest may set
//! any value in them itself, and they only govern its own EL1&0 regime.
//! What the kernel does check: the PSTATE (AArch64 EL0t, EL1t or EL1h,
//! no reserved bits), the GIC virtual interface (no hardware-linked list
//! registers, valid interrupt numbers and states, no reserved bits), the
//! timer control, the virtual MPIDR, and the injection requests.
//!
//! Exits are reported with the raw syndrome and addresses; [`Exit::mmio`],
//! [`Exit::sysreg`] and [`Exit::imm16`] decode them for the VMM.
//!
//! # Messages
//!
//! The kernel messages of virtualisation are declared in [`crate::ops`]:
//!
//! * Factory create Vm: [`crate::ops::FactoryVm`], no arguments; the
//!   capability goes to the first receive item, as for every factory
//!   call. A Vm costs two pages (its stage-2 root) plus a small object of
//!   the factory's quota; its translation tables are paid as mapped.
//! * Task map into a Vm: the ordinary [`crate::ops::TaskMap`] invoked on
//!   the *Vm* capability (with `W`), the source task as the item and a
//!   memory flexpage whose send base is the guest-physical address.
//!   Mappings are recorded in up to 2 MiB pieces, as large as the
//!   source's own mapping and alignment allow; unmapping in the source
//!   (or deleting it) revokes them in the guest. [`crate::ops::TaskUnmap`]
//!   on the Vm capability unmaps guest memory.
//! * Thread vcpu_control: [`crate::ops::ThreadVcpuControl`] on the
//!   thread's capability (`W`).
//! * Thread vcpu_resume: [`crate::ops::ThreadVcpuResume`] on the calling
//!   thread's own capability. Returns when the guest exits for the VMM:
//!   the reply label is the [`ExitReason`], negative for an error
//!   (`Inval` with [`ExitReason::BadState`] in the state area: a field was
//!   refused; `NoEnt`: the Vm was deleted).
//! * Irq bind_vcpu: [`crate::ops::IrqBindVcpu`] on an Irq (`W`), naming
//!   the vCPU thread (`S`) and the interrupt. Triggering the Irq then
//!   injects it into the vCPU (waking it from WFI, or kicking it off
//!   another CPU) instead of sending a message. Detach undoes it.

use core::fmt;

/// The interrupt an Irq bound to a vCPU injects: INTID in bits 0..32,
/// priority in bits 32..40.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirqSpec {
    /// The interrupt number (below [`INTID_LIMIT`]).
    pub intid: u32,
    /// Its priority.
    pub priority: u8,
}

impl crate::ops::Field for VirqSpec {
    fn put(&self, w: &mut [u64]) -> usize {
        match w.first_mut() {
            Some(s) => {
                *s = u64::from(self.intid) | u64::from(self.priority) << 32;
                1
            }
            None => 0,
        }
    }

    fn take(w: &[u64]) -> Result<(Self, usize), crate::ops::FieldError> {
        let &v = w.first().ok_or(crate::ops::FieldError::Short)?;
        if v >> 40 != 0 || (v as u32) >= INTID_LIMIT {
            return Err(crate::ops::FieldError::Malformed);
        }
        Ok((
            VirqSpec {
                intid: v as u32,
                priority: (v >> 32) as u8,
            },
            1,
        ))
    }
}

/// The most bytes a state area takes (it lies in one page).
pub const STATE_SIZE: usize = 4096;
/// List registers the state area has room for (the hardware may have
/// fewer: [`VGic::lr_count`]).
pub const MAX_LRS: usize = 16;
/// Injection requests one resume takes at most.
pub const MAX_INJECT: usize = 16;
/// The first interrupt number that is not an SGI, PPI or SPI (1020-1023
/// are special, LPIs are not supported).
pub const INTID_LIMIT: u32 = 1020;
/// The virtual timer's PPI, which the kernel injects itself.
pub const VTIMER_INTID: u32 = 27;

/// Why the vCPU returned to the VMM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum ExitReason {
    /// Nothing yet (a fresh state area).
    None = 0,
    /// A data access to guest memory that is not mapped, with a valid
    /// syndrome: emulate it ([`Exit::mmio`]), then skip the instruction.
    Mmio = 1,
    /// `hvc` ([`Exit::imm16`]); the guest's pc is past the instruction.
    Hvc = 2,
    /// `smc` ([`Exit::imm16`]); the pc is still at the instruction.
    Smc = 3,
    /// A trapped system-register access ([`Exit::sysreg`]).
    SysReg = 4,
    /// A stage-2 fault the VMM must resolve (map memory, or stop the
    /// guest): an instruction fetch, an access without a valid syndrome,
    /// or a permission fault, at [`Exit::gpa`].
    Stage2Fault = 5,
    /// The kernel returned to the VMM for its own sake: an interrupt or
    /// message for the VMM thread is pending (a kick).
    Kick = 6,
    /// Another exception from the guest; [`Exit::esr`] says which.
    Other = 7,
    /// The resume was refused: [`Exit::info`] holds the [`StateError`]
    /// code naming the bad field.
    BadState = 8,
}

impl ExitReason {
    /// The reason with the given number.
    pub const fn from_u64(v: u64) -> Option<ExitReason> {
        Some(match v {
            0 => ExitReason::None,
            1 => ExitReason::Mmio,
            2 => ExitReason::Hvc,
            3 => ExitReason::Smc,
            4 => ExitReason::SysReg,
            5 => ExitReason::Stage2Fault,
            6 => ExitReason::Kick,
            7 => ExitReason::Other,
            8 => ExitReason::BadState,
            _ => return None,
        })
    }
}

/// Exception classes (ESR_EL2.EC) of guest exits.
pub mod ec {
    /// WFI or WFE (the kernel handles WFI itself).
    pub const WFX: u64 = 0x01;
    /// HVC from AArch64.
    pub const HVC64: u64 = 0x16;
    /// SMC from AArch64.
    pub const SMC64: u64 = 0x17;
    /// MSR, MRS or system instruction.
    pub const SYSREG: u64 = 0x18;
    /// Instruction abort from a lower exception level.
    pub const IABT_LOWER: u64 = 0x20;
    /// Data abort from a lower exception level.
    pub const DABT_LOWER: u64 = 0x24;
}

/// MMIO shortcuts of a Vm ([`crate::ops::VmShortcut`]): 32-bit guest
/// accesses to a register the kernel answers without an exit, for the
/// hottest registers of a device whose VMM would only pass the access on
/// (a virtio queue notification, an interrupt status that always reads
/// the same while the device runs). Other sizes, and the accesses a kind
/// does not cover, exit to the VMM as before.
pub mod shortcut {
    /// No shortcut (removes the one at the address).
    pub const NONE: u64 = 0;
    /// A doorbell: a write triggers the Irq (the value is dropped); reads
    /// exit. It rings only while the task that set it still holds the
    /// capability it named: once the Irq is deleted or that capability
    /// is gone, the next write exits and the shortcut is removed.
    pub const DOORBELL: u64 = 1;
    /// A constant register: reads give the value, writes are dropped.
    pub const CONSTANT: u64 = 2;
    /// Shortcuts a Vm holds at most.
    pub const MAX: usize = 16;
    /// The width of the accesses a shortcut answers, in bytes.
    pub const SIZE: u8 = 4;
}

/// The exit the kernel reports.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Exit {
    /// An [`ExitReason`] number.
    pub reason: u64,
    /// ESR_EL2 of the exit.
    pub esr: u64,
    /// The guest virtual address of an abort (FAR_EL2).
    pub far: u64,
    /// The guest physical address of a stage-2 abort.
    pub gpa: u64,
    /// With [`ExitReason::BadState`]: the [`StateError::code`].
    pub info: u64,
}

/// An emulated memory access, from the syndrome of a data abort.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mmio {
    /// Bytes accessed: 1, 2, 4 or 8.
    pub size: u8,
    /// A write (the value is in register `reg`); else a read into `reg`.
    pub write: bool,
    /// The general register (31: the zero register).
    pub reg: u8,
    /// A read is sign-extended to the register.
    pub sign_extend: bool,
    /// The register is 64 bits wide (else 32: a read zero-extends to 64).
    pub reg64: bool,
}

/// A trapped system-register access, from its syndrome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SysRegAccess {
    /// The register's encoding: op0 << 14 | op1 << 11 | CRn << 7 |
    /// CRm << 3 | op2, as [`sysreg_encoding`] makes it.
    pub encoding: u32,
    /// `mrs` (a read into `reg`); else `msr` (a write of `reg`).
    pub read: bool,
    /// The general register (31: the zero register).
    pub reg: u8,
}

/// A system register's encoding as [`SysRegAccess::encoding`] holds it.
pub const fn sysreg_encoding(op0: u32, op1: u32, crn: u32, crm: u32, op2: u32) -> u32 {
    (op0 << 14) | (op1 << 11) | (crn << 7) | (crm << 3) | op2
}

impl Exit {
    /// The reason, if the number is known.
    pub fn reason(&self) -> Option<ExitReason> {
        ExitReason::from_u64(self.reason)
    }

    /// The exception class of the syndrome.
    pub fn ec(&self) -> u64 {
        (self.esr >> 26) & 0x3f
    }

    /// The access of a data abort with a valid syndrome (ISV).
    pub fn mmio(&self) -> Option<Mmio> {
        if self.ec() != ec::DABT_LOWER || self.esr & (1 << 24) == 0 {
            return None;
        }
        Some(Mmio {
            size: 1 << ((self.esr >> 22) & 3),
            write: self.esr & (1 << 6) != 0,
            reg: ((self.esr >> 16) & 0x1f) as u8,
            sign_extend: self.esr & (1 << 21) != 0,
            reg64: self.esr & (1 << 15) != 0,
        })
    }

    /// The access of a trapped MSR or MRS.
    pub fn sysreg(&self) -> Option<SysRegAccess> {
        if self.ec() != ec::SYSREG {
            return None;
        }
        let iss = self.esr as u32;
        let op0 = (iss >> 20) & 3;
        let op2 = (iss >> 17) & 7;
        let op1 = (iss >> 14) & 7;
        let crn = (iss >> 10) & 0xf;
        let crm = (iss >> 1) & 0xf;
        Some(SysRegAccess {
            encoding: sysreg_encoding(op0, op1, crn, crm, op2),
            read: iss & 1 != 0,
            reg: ((iss >> 5) & 0x1f) as u8,
        })
    }

    /// The immediate of an `hvc` or `smc`.
    pub fn imm16(&self) -> Option<u16> {
        matches!(self.ec(), ec::HVC64 | ec::SMC64).then_some(self.esr as u16)
    }
}

impl Mmio {
    /// The value a read puts in its register: `data` (the `size` bytes
    /// read) sign- or zero-extended as the instruction wants.
    pub fn read_value(&self, data: u64) -> u64 {
        let bits = u32::from(self.size) * 8;
        let data = if bits == 64 {
            data
        } else {
            data & ((1 << bits) - 1)
        };
        let v = if self.sign_extend && bits < 64 {
            let shift = 64 - bits;
            (((data << shift) as i64) >> shift) as u64
        } else {
            data
        };
        if self.reg64 { v } else { v & 0xffff_ffff }
    }

    /// The value a write stores: the low `size` bytes of `reg_value`.
    pub fn write_value(&self, reg_value: u64) -> u64 {
        match self.size {
            8 => reg_value,
            s => reg_value & ((1u64 << (u32::from(s) * 8)) - 1),
        }
    }
}

/// The guest's general registers and where it runs.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuestRegs {
    /// x0 to x30.
    pub x: [u64; 31],
    /// The program counter.
    pub pc: u64,
    /// PSTATE (as SPSR_EL2 holds it): see [`check_pstate`].
    pub pstate: u64,
    /// SP_EL0.
    pub sp_el0: u64,
    /// SP_EL1.
    pub sp_el1: u64,
    /// ELR_EL1.
    pub elr_el1: u64,
    /// SPSR_EL1.
    pub spsr_el1: u64,
}

impl GuestRegs {
    /// Register `r` as an instruction reads it (31 is the zero register).
    pub fn reg(&self, r: u8) -> u64 {
        self.x.get(usize::from(r)).copied().unwrap_or(0)
    }

    /// Sets register `r` (31, the zero register, ignores the write).
    pub fn set_reg(&mut self, r: u8, v: u64) {
        if let Some(x) = self.x.get_mut(usize::from(r)) {
            *x = v;
        }
    }

    /// Steps past the (4-byte) instruction that exited.
    pub fn skip_instruction(&mut self) {
        self.pc = self.pc.wrapping_add(4);
    }
}

/// The guest's EL1 system registers (and EL0 thread registers), which
/// the kernel switches.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct El1Regs {
    pub sctlr: u64,
    pub cpacr: u64,
    pub ttbr0: u64,
    pub ttbr1: u64,
    pub tcr: u64,
    pub mair: u64,
    pub amair: u64,
    pub vbar: u64,
    pub contextidr: u64,
    pub esr: u64,
    pub far: u64,
    pub afsr0: u64,
    pub afsr1: u64,
    pub par: u64,
    pub tpidr_el1: u64,
    pub tpidr_el0: u64,
    pub tpidrro_el0: u64,
    pub cntkctl: u64,
    pub csselr: u64,
    pub mdscr: u64,
    /// DISR_EL1, which the guest reaches in VDISR_EL2 (with RAS; zero
    /// without).
    pub disr: u64,
    /// ZCR_EL1, the guest's SVE vector length (where it has SVE; zero
    /// without).
    pub zcr: u64,
    /// The pointer authentication keys (where the CPU has them; zero
    /// without).
    pub pac: PacKeys,
}

/// The pointer authentication keys, low and high halves: instruction A
/// and B, data A and B (address authentication), generic (generic
/// authentication).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct PacKeys {
    pub apia_lo: u64,
    pub apia_hi: u64,
    pub apib_lo: u64,
    pub apib_hi: u64,
    pub apda_lo: u64,
    pub apda_hi: u64,
    pub apdb_lo: u64,
    pub apdb_hi: u64,
    pub apga_lo: u64,
    pub apga_hi: u64,
}

/// SCTLR_EL1 as the architecture resets it (MMU and caches off), with
/// its RES1 bits: a good value for a guest's first entry.
pub const SCTLR_EL1_RESET: u64 = 0x30d0_0800;

/// The guest's virtual timer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VTimer {
    /// CNTVOFF_EL2: the guest's virtual count is the physical count minus this.
    pub cntvoff: u64,
    /// CNTV_CTL_EL0: ENABLE (bit 0), IMASK (bit 1); ISTATUS (bit 2) is
    /// reported by the kernel and ignored on resume.
    pub ctl: u64,
    /// CNTV_CVAL_EL0.
    pub cval: u64,
}

impl VTimer {
    /// ISTATUS at physical count `now`: the timer enabled and the guest's
    /// virtual count (`now - cntvoff`) at or past the compare value,
    /// whether or not IMASK masks its interrupt.
    pub fn condition_met(&self, now: u64) -> bool {
        self.ctl & 1 != 0 && now.wrapping_sub(self.cntvoff) >= self.cval
    }
}

/// The GICv3 virtual CPU interface of the vCPU.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VGic {
    /// ICH_HCR_EL2 without its enable bit (the kernel sets En): only
    /// the trap bits TC, TALL0, TALL1, TSEI, TDIR may be set.
    pub hcr: u64,
    /// ICH_VMCR_EL2.
    pub vmcr: u64,
    /// ICH_AP0R<n>_EL2.
    pub ap0r: [u64; 4],
    /// ICH_AP1R<n>_EL2.
    pub ap1r: [u64; 4],
    /// ICH_LR<n>_EL2 (the first [`VGic::lr_count`]).
    pub lr: [u64; MAX_LRS],
    /// How many list registers the hardware has (written by the kernel).
    pub lr_count: u64,
    /// ICH_ELRSR_EL2 at the exit: which list registers are empty
    /// (written by the kernel).
    pub elrsr: u64,
}

/// ICH_LR<n>_EL2 fields.
pub mod lr {
    /// vINTID, bits 0..32.
    pub const VINTID_MASK: u64 = 0xffff_ffff;
    /// EOI maintenance request (with HW clear), bit 41.
    pub const EOI: u64 = 1 << 41;
    /// Priority, bits 48..56.
    pub const PRIORITY_SHIFT: u32 = 48;
    /// Group 1, bit 60.
    pub const GROUP1: u64 = 1 << 60;
    /// Linked to a physical interrupt, bit 61 (the kernel's only).
    pub const HW: u64 = 1 << 61;
    /// State, bits 62..64.
    pub const STATE_SHIFT: u32 = 62;
    /// Pending.
    pub const PENDING: u64 = 1 << STATE_SHIFT;
    /// Active.
    pub const ACTIVE: u64 = 2 << STATE_SHIFT;
    /// The bits a list register without HW may have.
    pub const ALLOWED: u64 =
        (3 << STATE_SHIFT) | HW | GROUP1 | (0xff << PRIORITY_SHIFT) | EOI | VINTID_MASK;

    /// A pending group-1 interrupt with a priority.
    pub const fn pending(intid: u32, priority: u8) -> u64 {
        PENDING | GROUP1 | ((priority as u64) << PRIORITY_SHIFT) | intid as u64
    }

    /// The vINTID.
    pub const fn intid(lr: u64) -> u32 {
        (lr & VINTID_MASK) as u32
    }

    /// The priority.
    pub const fn priority(lr: u64) -> u8 {
        (lr >> PRIORITY_SHIFT) as u8
    }

    /// The state (0 invalid, 1 pending, 2 active, 3 both).
    pub const fn state(lr: u64) -> u64 {
        lr >> STATE_SHIFT
    }
}

/// ICH_HCR_EL2 bits.
pub mod hcr {
    /// Virtual CPU interface enable (the kernel's).
    pub const EN: u64 = 1 << 0;
    /// Underflow maintenance interrupt (the kernel's).
    pub const UIE: u64 = 1 << 1;
    /// No-pending maintenance interrupt (the kernel's).
    pub const NPIE: u64 = 1 << 3;
    /// Trap bits a VMM may set: TC, TALL0, TALL1, TSEI, TDIR.
    pub const VMM_TRAPS: u64 = 0x1f << 10;
}

/// ICH_VMCR_EL2 bits that are not RES0.
pub const VMCR_ALLOWED: u64 = 0x1f | (1 << 9) | (0x3fff << 18);

/// One interrupt the VMM asks the kernel to inject.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InjectReq {
    /// The interrupt number (below [`INTID_LIMIT`]).
    pub intid: u32,
    /// Its priority (the upper bits count, as the GIC implements them).
    pub priority: u8,
    #[doc(hidden)]
    pub _pad: [u8; 3],
}

impl InjectReq {
    /// A request.
    pub const fn new(intid: u32, priority: u8) -> InjectReq {
        InjectReq {
            intid,
            priority,
            _pad: [0; 3],
        }
    }
}

/// Interrupts to inject at the next resume. The kernel puts each in a
/// free list register, or in the vCPU's pending queue when they are all
/// taken (an interrupt already pending is not queued twice), and sets
/// `count` back to zero.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Inject {
    /// How many of `req` are valid.
    pub count: u64,
    /// The requests.
    pub req: [InjectReq; MAX_INJECT],
}

/// The state area.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuState {
    /// The last exit (kernel to VMM).
    pub exit: Exit,
    /// General registers, pc, pstate, stack pointers.
    pub regs: GuestRegs,
    /// EL1 system registers.
    pub el1: El1Regs,
    /// The virtual timer.
    pub timer: VTimer,
    /// The GIC virtual CPU interface.
    pub gic: VGic,
    /// VMPIDR_EL2: what the guest reads as MPIDR_EL1 (affinity and MT,
    /// U; bit 31 is set by the kernel).
    pub vmpidr: u64,
    /// [`unchanged`] bits (VMM to kernel): parts the VMM left as the last
    /// exit reported them, which the next resume need not read again. The
    /// kernel sets the field back to zero on every exit.
    pub unchanged: u64,
    /// Injection requests (VMM to kernel).
    pub inject: Inject,
}

/// Parts of the state area a VMM may mark in [`VcpuState::unchanged`]:
/// a resume takes them from the kernel's own copy (what the last exit
/// wrote to the area) instead of reading and checking them again; marked
/// EL1 registers the CPU may even still hold from the last exit (on the
/// CPU the vCPU last ran on, no other vCPU loaded there since), so a
/// change to them must not be marked. The general registers (with pc and
/// pstate) and the injection requests are read on every resume. The
/// kernel ignores the bits when its copy is not the one the area last
/// showed (the vCPU never exited yet, or the last resume was refused).
pub mod unchanged {
    /// [`super::VcpuState::el1`].
    pub const EL1: u64 = 1 << 0;
    /// [`super::VcpuState::timer`].
    pub const TIMER: u64 = 1 << 1;
    /// [`super::VcpuState::gic`].
    pub const GIC: u64 = 1 << 2;
    /// [`super::VcpuState::vmpidr`].
    pub const VMPIDR: u64 = 1 << 3;
    /// Every part.
    pub const ALL: u64 = EL1 | TIMER | GIC | VMPIDR;
}

const _: () = assert!(core::mem::size_of::<VcpuState>() <= STATE_SIZE);

/// A state-area field the kernel refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateError {
    /// PSTATE is not AArch64 EL0t/EL1t/EL1h or has reserved bits set.
    Pstate(u64),
    /// List register `index` has a bad value.
    ListRegister {
        /// Which one.
        index: u8,
        /// Its value.
        value: u64,
    },
    /// ICH_HCR has bits a VMM may not set.
    VgicHcr(u64),
    /// ICH_VMCR has reserved bits set.
    Vmcr(u64),
    /// An active-priority register has bits beyond the implemented ones.
    ActivePriority(u64),
    /// CNTV_CTL has bits other than ENABLE, IMASK, ISTATUS.
    TimerCtl(u64),
    /// VMPIDR has reserved bits set.
    Vmpidr(u64),
    /// Injection request `index` names no SGI, PPI or SPI.
    Injection {
        /// Which one.
        index: u8,
        /// The interrupt number.
        intid: u32,
    },
    /// More than [`MAX_INJECT`] injection requests.
    InjectCount(u64),
}

impl StateError {
    /// The code the kernel reports in [`Exit::info`]: the kind in bits
    /// 56..64 and the index in bits 48..56.
    pub fn code(&self) -> u64 {
        let (kind, index) = match *self {
            StateError::Pstate(_) => (1, 0),
            StateError::ListRegister { index, .. } => (2, index),
            StateError::VgicHcr(_) => (3, 0),
            StateError::Vmcr(_) => (4, 0),
            StateError::ActivePriority(_) => (5, 0),
            StateError::TimerCtl(_) => (6, 0),
            StateError::Vmpidr(_) => (7, 0),
            StateError::Injection { index, .. } => (8, index),
            StateError::InjectCount(_) => (9, 0),
        };
        (kind << 56) | (u64::from(index) << 48)
    }
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateError::Pstate(v) => write!(f, "pstate {v:#x}: not AArch64 EL0t/EL1t/EL1h"),
            StateError::ListRegister { index, value } => {
                write!(f, "list register {index} = {value:#x}: invalid")
            }
            StateError::VgicHcr(v) => write!(f, "ICH_HCR {v:#x}: only trap bits allowed"),
            StateError::Vmcr(v) => write!(f, "ICH_VMCR {v:#x}: reserved bits set"),
            StateError::ActivePriority(v) => {
                write!(f, "active priorities {v:#x}: beyond 32 bits")
            }
            StateError::TimerCtl(v) => write!(f, "CNTV_CTL {v:#x}: reserved bits set"),
            StateError::Vmpidr(v) => write!(f, "VMPIDR {v:#x}: reserved bits set"),
            StateError::Injection { index, intid } => {
                write!(
                    f,
                    "injection {index}: interrupt {intid} is no SGI, PPI or SPI"
                )
            }
            StateError::InjectCount(n) => write!(f, "{n} injection requests, at most 16"),
        }
    }
}

/// PSTATE bits a guest may have: NZCV, PAN, UAO, DIT, TCO, SSBS, BTYPE,
/// DAIF, and M[3:0] (checked apart).
const PSTATE_ALLOWED: u64 = (0xf << 28)
    | (1 << 22)
    | (1 << 23)
    | (1 << 24)
    | (1 << 25)
    | (1 << 12)
    | (3 << 10)
    | (0xf << 6)
    | 0xf;

/// PSTATE mode fields a guest may run in, as bits of a mask indexed by
/// M[3:0]: EL0t (0b0000), EL1t (0b0100), EL1h (0b0101), all AArch64.
const MODES: u16 = (1 << 0b0000) | (1 << 0b0100) | (1 << 0b0101);

/// Checks a guest PSTATE: AArch64 (M[4] clear), EL0t, EL1t or EL1h,
/// never EL2 or EL3, and no reserved or execution-state bits (IL, SS).
pub fn check_pstate(p: u64) -> Result<(), StateError> {
    if p & !PSTATE_ALLOWED != 0 || MODES & (1 << (p & 0xf)) == 0 {
        return Err(StateError::Pstate(p));
    }
    Ok(())
}

/// Checks a list register: all zero when invalid; else a vINTID below
/// [`INTID_LIMIT`], no HW link, no reserved bits.
pub fn check_lr(index: usize, v: u64) -> Result<(), StateError> {
    let bad = StateError::ListRegister {
        index: index as u8,
        value: v,
    };
    if lr::state(v) == 0 {
        return if v == 0 { Ok(()) } else { Err(bad) };
    }
    if v & !lr::ALLOWED != 0 || v & lr::HW != 0 || lr::intid(v) >= INTID_LIMIT {
        return Err(bad);
    }
    Ok(())
}

impl VGic {
    /// Checks what a VMM handed in (the first `lrs` list registers count).
    pub fn check(&self, lrs: usize) -> Result<(), StateError> {
        if self.hcr & !hcr::VMM_TRAPS != 0 {
            return Err(StateError::VgicHcr(self.hcr));
        }
        if self.vmcr & !VMCR_ALLOWED != 0 {
            return Err(StateError::Vmcr(self.vmcr));
        }
        for &ap in self.ap0r.iter().chain(self.ap1r.iter()) {
            if ap >> 32 != 0 {
                return Err(StateError::ActivePriority(ap));
            }
        }
        for (i, &v) in self.lr.iter().enumerate().take(lrs.min(MAX_LRS)) {
            check_lr(i, v)?;
        }
        Ok(())
    }
}

impl VcpuState {
    /// Everything the kernel checks before it runs the guest with this
    /// state, given how many list registers the hardware has.
    pub fn check(&self, lrs: usize) -> Result<(), StateError> {
        self.check_parts(lrs, 0)
    }

    /// [`VcpuState::check`] without the parts in `kept` (bits of
    /// [`unchanged`]), which the kernel checked when it took them before.
    pub fn check_parts(&self, lrs: usize, kept: u64) -> Result<(), StateError> {
        check_pstate(self.regs.pstate)?;
        if kept & unchanged::GIC == 0 {
            self.gic.check(lrs)?;
        }
        if kept & unchanged::TIMER == 0 && self.timer.ctl & !0b111 != 0 {
            return Err(StateError::TimerCtl(self.timer.ctl));
        }
        // VMPIDR: Aff3 (32..40), bit 31 (RES1), U (30), MT (24), Aff2..0.
        if kept & unchanged::VMPIDR == 0 && self.vmpidr & !(0xff_c1ff_ffff | (1 << 31)) != 0 {
            return Err(StateError::Vmpidr(self.vmpidr));
        }
        let n = self.inject.count;
        if n > MAX_INJECT as u64 {
            return Err(StateError::InjectCount(n));
        }
        for (i, r) in self.inject.req.iter().enumerate().take(n as usize) {
            if r.intid >= INTID_LIMIT {
                return Err(StateError::Injection {
                    index: i as u8,
                    intid: r.intid,
                });
            }
        }
        Ok(())
    }

    /// A state for a guest's first entry at `pc` in EL1h with interrupts
    /// masked, MMU off, `x0` = `arg`, and the given VMPIDR.
    pub fn boot(pc: u64, arg: u64, vmpidr: u64) -> VcpuState {
        let mut s = VcpuState::default();
        s.regs.pc = pc;
        s.regs.x[0] = arg;
        s.regs.pstate = 0x3c5; // EL1h, DAIF masked
        s.el1.sctlr = SCTLR_EL1_RESET;
        s.vmpidr = vmpidr | (1 << 31);
        s
    }
}

/// The guest-physical address of a stage-2 abort from HPFAR_EL2 (the
/// page) and FAR_EL2 (the offset in it).
pub const fn fault_gpa(hpfar: u64, far: u64) -> u64 {
    ((hpfar & 0x0000_0fff_ffff_fff0) << 8) | (far & 0xfff)
}

/// Whether the fault status code of an abort's syndrome (bits 5:0) says
/// translation fault (`0b0001LL`, any level): nothing was mapped at the
/// address, as opposed to a permission, access-flag or address-size
/// fault.
pub const fn translation_fault(esr: u64) -> bool {
    esr & 0x3c == 0x04
}

/// What a guest exit with this syndrome is, for the VMM: the kernel
/// handles WFI and interrupts before it gets here. A data access with a
/// valid syndrome is an access to emulate only when its stage-2 address
/// was not mapped ([`translation_fault`]); the fault status code says
/// so, no table walk needed.
#[inline]
pub fn classify(esr: u64) -> ExitReason {
    let ec = (esr >> 26) & 0x3f;
    match ec {
        ec::HVC64 => ExitReason::Hvc,
        ec::SMC64 => ExitReason::Smc,
        ec::SYSREG => ExitReason::SysReg,
        ec::DABT_LOWER if esr & (1 << 24) != 0 && translation_fault(esr) => ExitReason::Mmio,
        ec::DABT_LOWER | ec::IABT_LOWER => ExitReason::Stage2Fault,
        _ => ExitReason::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timer_condition_from_the_counter() {
        let t = VTimer {
            cntvoff: 1000,
            ctl: 0b01,
            cval: 500,
        };
        assert!(!t.condition_met(1499));
        assert!(t.condition_met(1500));
        // Masked still meets the condition; disabled never does.
        assert!(VTimer { ctl: 0b11, ..t }.condition_met(1500));
        assert!(!VTimer { ctl: 0b10, ..t }.condition_met(u64::MAX));
    }

    fn dabt(sas: u64, sse: bool, srt: u64, sf: bool, write: bool) -> u64 {
        (ec::DABT_LOWER << 26)
            | (1 << 25)
            | (1 << 24)
            | (sas << 22)
            | ((sse as u64) << 21)
            | (srt << 16)
            | ((sf as u64) << 15)
            | ((write as u64) << 6)
            | 0x07 // translation fault, level 3
    }

    #[test]
    fn layout_fits_a_page_and_is_stable() {
        assert!(core::mem::size_of::<VcpuState>() <= STATE_SIZE);
        assert_eq!(core::mem::size_of::<Exit>(), 40);
        assert_eq!(core::mem::offset_of!(VcpuState, regs), 40);
        assert_eq!(core::mem::size_of::<GuestRegs>(), 37 * 8);
        assert_eq!(core::mem::size_of::<InjectReq>(), 8);
    }

    #[test]
    fn mmio_decode_and_values() {
        let e = Exit {
            reason: ExitReason::Mmio as u64,
            esr: dabt(1, true, 3, false, false),
            ..Exit::default()
        };
        let m = e.mmio().unwrap();
        assert_eq!(
            m,
            Mmio {
                size: 2,
                write: false,
                reg: 3,
                sign_extend: true,
                reg64: false
            }
        );
        // ldrsh w3: 0x8001 becomes 0xffff8001 in a 32-bit register.
        assert_eq!(m.read_value(0x1234_8001), 0xffff_8001);
        let m = Mmio { reg64: true, ..m };
        assert_eq!(m.read_value(0x8001), 0xffff_ffff_ffff_8001);
        let m = Exit {
            esr: dabt(3, false, 31, true, true),
            ..e
        }
        .mmio()
        .unwrap();
        assert!(m.write && m.size == 8 && m.reg == 31 && m.reg64);
        assert_eq!(m.write_value(u64::MAX), u64::MAX);
        let b = Mmio { size: 1, ..m };
        assert_eq!(b.write_value(0x1ff), 0xff);
        assert_eq!(b.read_value(0x1ff), 0xff);
        // No ISV: not decodable.
        let e = Exit {
            esr: dabt(0, false, 0, false, false) & !(1 << 24),
            ..e
        };
        assert_eq!(e.mmio(), None);
        assert_eq!(classify(e.esr), ExitReason::Stage2Fault);
        let translation = dabt(0, false, 0, false, false);
        assert_eq!(classify(translation), ExitReason::Mmio);
        // Translation faults at levels 0 to 3 are all unmapped addresses.
        for level in 0..4 {
            assert_eq!(
                classify((translation & !0x3f) | 0x04 | level),
                ExitReason::Mmio
            );
        }
        // Permission, access-flag and address-size faults: the address
        // was mapped (or cannot be), nothing to emulate.
        for fsc in [0x0f, 0x0b, 0x01] {
            assert_eq!(
                classify((translation & !0x3f) | fsc),
                ExitReason::Stage2Fault
            );
        }
    }

    #[test]
    fn sysreg_and_calls() {
        // mrs x5, CNTPCT_EL0: op0 3, op1 3, CRn 14, CRm 0, op2 1.
        let iss = (3 << 20) | (1 << 17) | (3 << 14) | (14 << 10) | (5 << 5) | 1;
        let e = Exit {
            esr: (ec::SYSREG << 26) | (1 << 25) | iss,
            ..Exit::default()
        };
        assert_eq!(
            e.sysreg(),
            Some(SysRegAccess {
                encoding: sysreg_encoding(3, 3, 14, 0, 1),
                read: true,
                reg: 5
            })
        );
        assert_eq!(classify(e.esr), ExitReason::SysReg);
        assert_eq!(e.imm16(), None);
        let h = Exit {
            esr: (ec::HVC64 << 26) | (1 << 25) | 0x4242,
            ..Exit::default()
        };
        assert_eq!(h.imm16(), Some(0x4242));
        assert_eq!(classify(h.esr), ExitReason::Hvc);
        assert_eq!(classify((ec::SMC64 << 26) | 1), ExitReason::Smc);
        assert_eq!(classify(0x3c << 26), ExitReason::Other);
        assert_eq!(fault_gpa(0x0900_0000 >> 8, 0xffff_0123), 0x0900_0123);
    }

    #[test]
    fn registers() {
        let mut r = GuestRegs::default();
        r.set_reg(31, 5);
        assert_eq!(r.reg(31), 0);
        r.set_reg(30, 7);
        assert_eq!(r.reg(30), 7);
        r.pc = 0x1000;
        r.skip_instruction();
        assert_eq!(r.pc, 0x1004);
    }

    #[test]
    fn pstate_checks() {
        for ok in [0x3c5, 0x3c4, 0x0, 0x6000_0005, 0x0040_0005] {
            assert_eq!(check_pstate(ok), Ok(()), "{ok:#x}");
        }
        // EL2h, EL2t, EL3h, AArch32 (M[4]), reserved M[1], IL, SS.
        for bad in [0x9, 0x8, 0xd, 0x10, 0x7, 0x2, 1 << 20, 1 << 21, 1 << 40] {
            assert_eq!(check_pstate(bad), Err(StateError::Pstate(bad)), "{bad:#x}");
        }
    }

    #[test]
    fn list_register_checks() {
        assert_eq!(check_lr(0, 0), Ok(()));
        assert_eq!(check_lr(0, lr::pending(33, 0xa0)), Ok(()));
        assert_eq!(check_lr(0, lr::pending(33, 0xa0) | lr::EOI), Ok(()));
        assert_eq!(check_lr(0, lr::ACTIVE | lr::GROUP1 | 1019), Ok(()));
        for bad in [
            lr::GROUP1 | 5,              // invalid but not clean
            lr::pending(1020, 0),        // special INTID
            lr::pending(8192, 0),        // LPI
            lr::pending(40, 0) | lr::HW, // hardware link
            lr::pending(40, 0) | (1 << 57),
        ] {
            assert_eq!(
                check_lr(2, bad),
                Err(StateError::ListRegister {
                    index: 2,
                    value: bad
                })
            );
        }
    }

    #[test]
    fn state_checks() {
        let mut s = VcpuState::boot(0x4000_0000, 0x4800_0000, 0x1);
        assert_eq!(s.check(4), Ok(()));
        s.gic.lr[3] = lr::pending(2000, 0);
        assert!(matches!(
            s.check(4),
            Err(StateError::ListRegister { index: 3, .. })
        ));
        // A list register the hardware lacks is not looked at.
        assert_eq!(s.check(3), Ok(()));
        s.gic.lr[3] = 0;
        s.gic.hcr = hcr::EN;
        assert_eq!(s.check(4), Err(StateError::VgicHcr(1)));
        s.gic.hcr = 1 << 10;
        assert_eq!(s.check(4), Ok(()));
        s.gic.vmcr = 1 << 5;
        assert_eq!(s.check(4), Err(StateError::Vmcr(1 << 5)));
        s.gic.vmcr = 0xff << 24 | 3;
        s.gic.ap1r[0] = 1 << 32;
        assert!(matches!(s.check(4), Err(StateError::ActivePriority(_))));
        s.gic.ap1r[0] = 1;
        s.timer.ctl = 8;
        assert_eq!(s.check(4), Err(StateError::TimerCtl(8)));
        s.timer.ctl = 0b111;
        s.vmpidr = 1 << 29;
        assert_eq!(s.check(4), Err(StateError::Vmpidr(1 << 29)));
        s.vmpidr = 1 << 31 | 1 << 24 | 0x3;
        s.inject.count = 17;
        assert_eq!(s.check(4), Err(StateError::InjectCount(17)));
        s.inject.count = 2;
        s.inject.req[0] = InjectReq::new(40, 0x80);
        s.inject.req[1] = InjectReq::new(1023, 0x80);
        let e = s.check(4).unwrap_err();
        assert_eq!(
            e,
            StateError::Injection {
                index: 1,
                intid: 1023
            }
        );
        assert_eq!(e.code(), (8 << 56) | (1 << 48));
        s.inject.req[1].intid = 1019;
        assert_eq!(s.check(4), Ok(()));
        s.regs.pstate = 0x3c9;
        assert_eq!(s.check(4), Err(StateError::Pstate(0x3c9)));
    }

    #[test]
    fn unchanged_parts_are_not_checked_again() {
        let mut s = VcpuState::boot(0x4000_0000, 0, 0);
        s.gic.hcr = hcr::EN;
        s.timer.ctl = 8;
        s.vmpidr = 1 << 29;
        assert_eq!(s.check(4), Err(StateError::VgicHcr(1)));
        assert_eq!(
            s.check_parts(4, unchanged::GIC),
            Err(StateError::TimerCtl(8))
        );
        assert_eq!(
            s.check_parts(4, unchanged::GIC | unchanged::TIMER),
            Err(StateError::Vmpidr(1 << 29))
        );
        assert_eq!(s.check_parts(4, unchanged::ALL), Ok(()));
        // The registers and the requests are checked whatever the bits say.
        s.inject.count = 17;
        assert_eq!(
            s.check_parts(4, unchanged::ALL),
            Err(StateError::InjectCount(17))
        );
        s.inject.count = 0;
        s.regs.pstate = 0x3c9;
        assert_eq!(
            s.check_parts(4, unchanged::ALL),
            Err(StateError::Pstate(0x3c9))
        );
    }
}

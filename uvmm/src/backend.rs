//! The boundary to the kernel: what uvmm needs from the Vm object and its
//! vCPUs, and the decoding of the exits they report.
//!
//! The kernel's side (a `Vm` kernel object with a stage-2 address space,
//! vCPU threads that enter the guest and come back on a trap) implements
//! [`VmBackend`] and [`VcpuBackend`]. uvmm never sees EL2 itself: a vCPU
//! returns from [`VcpuBackend::run`] with the guest's registers and the
//! raw syndrome ([`Trap`]: `ESR_EL2`, `FAR_EL2`, the faulting IPA) in a
//! [`VcpuState`], uvmm handles the exit (it may change the registers, e.g.
//! the result of an MMIO read, `pc` past the trapping instruction, or
//! inject an exception through the EL1 registers) and runs the vCPU again
//! with the changed state.
//!
//! Interrupts reach the guest through the GICv3 virtual CPU interface:
//! before each entry uvmm fills [`VcpuState::lrs`] (the `ICH_LR<n>_EL2`
//! values, built by [`lr_value`]) and the kernel loads them; after the exit
//! the kernel stores them back, so uvmm sees which interrupts the guest
//! has taken and completed. To make a running vCPU pick up a new interrupt
//! uvmm calls [`VcpuKick::kick`], which makes its `run` return
//! [`RunExit::Kicked`] soon.

use core::fmt;

/// Number of list registers uvmm manages per vCPU (GICv3 has at most 16;
/// the kernel reports how many the CPU has with [`GicInfo`]).
pub const MAX_LRS: usize = 16;

/// The guest registers a vCPU exit reports and an entry loads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VcpuState {
    /// `x0..x30`.
    pub x: [u64; 31],
    /// `SP_EL1` (the guest kernel's stack pointer).
    pub sp_el1: u64,
    /// The guest's `pc` (`ELR_EL2`: after an HVC the next instruction,
    /// after any other trap the trapping one).
    pub pc: u64,
    /// The guest's PSTATE (`SPSR_EL2`).
    pub pstate: u64,
    /// The EL1 exception registers, read and written when uvmm injects an
    /// abort or undefined-instruction exception into the guest.
    pub el1: El1Regs,
    /// What trapped (valid when `run` returned [`RunExit::Trap`]).
    pub trap: Trap,
    /// `ICH_LR<n>_EL2` of the vCPU's virtual CPU interface; the first
    /// [`GicInfo::lrs`] are used.
    pub lrs: [u64; MAX_LRS],
    /// The guest's virtual timer (stored on exit; uvmm only reads it, to
    /// know how long a WFI may sleep).
    pub vtimer: VirtualTimer,
}

/// The guest's virtual timer registers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VirtualTimer {
    /// `CNTV_CTL_EL0` (bit 0 ENABLE, bit 1 IMASK).
    pub ctl: u64,
    /// `CNTV_CVAL_EL0`, in guest counter ticks.
    pub cval: u64,
}

impl VirtualTimer {
    /// How long from counter value `now` (at `frequency` Hz) until the
    /// timer fires; `None` when it is off or masked.
    pub fn remaining(&self, now: u64, frequency: u64) -> Option<core::time::Duration> {
        if self.ctl & 0b11 != 0b01 || frequency == 0 {
            return None;
        }
        let ticks = u128::from(self.cval.saturating_sub(now));
        let nanos = ticks * 1_000_000_000 / u128::from(frequency);
        Some(core::time::Duration::from_nanos(
            u64::try_from(nanos).unwrap_or(u64::MAX),
        ))
    }
}

impl Default for VcpuState {
    fn default() -> VcpuState {
        VcpuState {
            x: [0; 31],
            sp_el1: 0,
            pc: 0,
            pstate: 0,
            el1: El1Regs::default(),
            trap: Trap::default(),
            lrs: [0; MAX_LRS],
            vtimer: VirtualTimer::default(),
        }
    }
}

impl VcpuState {
    /// General register `n` as an instruction names it: 31 is `xzr`.
    pub fn reg(&self, n: u8) -> u64 {
        self.x.get(usize::from(n)).copied().unwrap_or(0)
    }

    /// Sets general register `n`; writes to 31 (`xzr`) vanish.
    pub fn set_reg(&mut self, n: u8, v: u64) {
        if let Some(r) = self.x.get_mut(usize::from(n)) {
            *r = v;
        }
    }
}

/// The guest's EL1 exception registers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct El1Regs {
    /// `VBAR_EL1`.
    pub vbar: u64,
    /// `ESR_EL1`.
    pub esr: u64,
    /// `FAR_EL1`.
    pub far: u64,
    /// `ELR_EL1`.
    pub elr: u64,
    /// `SPSR_EL1`.
    pub spsr: u64,
}

/// The raw syndrome of a trap to EL2.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Trap {
    /// `ESR_EL2`.
    pub esr: u64,
    /// `FAR_EL2` (the faulting virtual address of an abort).
    pub far: u64,
    /// The faulting guest-physical address of a stage-2 abort
    /// (`HPFAR_EL2.FIPA << 12 | FAR_EL2[11:0]`, as the kernel reports it).
    pub gpa: u64,
}

/// Why [`VcpuBackend::run`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunExit {
    /// The guest trapped; [`VcpuState::trap`] says why.
    Trap,
    /// [`VcpuKick::kick`] was called (or a host interrupt ended the run):
    /// nothing to handle but the interrupt state.
    Kicked,
    /// The guest's virtual timer fired (the kernel masks it until uvmm has
    /// injected PPI 27 and the guest handled it).
    VirtualTimer,
}

/// What the kernel's GIC virtual CPU interface offers (`ICH_VTR_EL2`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GicInfo {
    /// Number of list registers (1..=16).
    pub lrs: usize,
    /// Priority bits of the virtual CPU interface (5..=8).
    pub priority_bits: u8,
}

/// Why the kernel refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendError(pub String);

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BackendError {}

/// The Vm kernel object (one per uvmm task).
pub trait VmBackend {
    /// The vCPU type.
    type Vcpu: VcpuBackend;

    /// Maps `size` bytes of the RAM dataspace named `dscap` from
    /// `ds_offset` at guest-physical `gpa` into the guest's stage-2 address
    /// space, read-write-execute, cacheable.
    fn map_ram(
        &mut self,
        dscap: &str,
        ds_offset: u64,
        gpa: u64,
        size: u64,
    ) -> Result<(), BackendError>;

    /// The GIC virtual CPU interface of this machine.
    fn gic_info(&self) -> GicInfo;

    /// Creates vCPU `index` with `MPIDR_EL1` affinity `mpidr`, its thread
    /// bound to the `index`-th CPU the scheduler allows. It does not run
    /// until [`VcpuBackend::run`].
    fn create_vcpu(&mut self, index: usize, mpidr: u64) -> Result<Self::Vcpu, BackendError>;
}

/// One vCPU, used from its own uvmm thread.
pub trait VcpuBackend: Send {
    /// Enters the guest with `state` (registers, list registers) and
    /// returns at the next exit with `state` updated.
    fn run(&mut self, state: &mut VcpuState) -> Result<RunExit, BackendError>;

    /// A handle other threads use to interrupt `run`.
    fn kicker(&self) -> Box<dyn VcpuKick>;

    /// The guest's virtual counter now (`CNTVCT_EL0` as the guest reads
    /// it) and its frequency in Hz (`CNTFRQ_EL0`).
    fn counter(&self) -> (u64, u64);
}

/// Makes a vCPU leave the guest ([`RunExit::Kicked`]) so that uvmm can
/// update its list registers; harmless when it is not running (the next
/// `run` returns at once).
pub trait VcpuKick: Send + Sync {
    /// Kicks the vCPU.
    fn kick(&self);
}

/// A decoded exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// A data abort with a valid instruction syndrome (a load or store to
    /// a non-RAM address): the MMIO access to emulate.
    Mmio(MmioAccess),
    /// An abort uvmm cannot emulate (no syndrome, or an instruction
    /// fetch outside RAM).
    Abort {
        /// The guest-physical address.
        gpa: u64,
        /// Whether it was an instruction fetch.
        fetch: bool,
    },
    /// `HVC #imm`.
    Hvc(u16),
    /// `SMC #imm`.
    Smc(u16),
    /// A trapped `MSR`/`MRS`.
    SysReg(SysRegAccess),
    /// `WFI` (`false`) or `WFE` (`true`).
    Wfx {
        /// WFE rather than WFI.
        wfe: bool,
    },
    /// Anything else: the exception class.
    Unknown {
        /// `ESR_EL2.EC`.
        ec: u8,
    },
}

/// A guest load or store to emulate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmioAccess {
    /// The guest-physical address.
    pub gpa: u64,
    /// 1, 2, 4 or 8 bytes.
    pub size: u8,
    /// A store.
    pub write: bool,
    /// The register (31: `xzr`/`wzr`).
    pub reg: u8,
    /// A load sign-extends (`LDRSB` and friends).
    pub sign_extend: bool,
    /// The register is 64-bit (`x`, not `w`).
    pub sixty_four: bool,
}

/// A trapped system-register access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SysRegAccess {
    /// The register's encoding.
    pub reg: SysReg,
    /// `MSR` (a write) rather than `MRS`.
    pub write: bool,
    /// The general register (31: `xzr`).
    pub rt: u8,
}

/// A system register's encoding (op0, op1, CRn, CRm, op2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SysReg {
    /// op0.
    pub op0: u8,
    /// op1.
    pub op1: u8,
    /// CRn.
    pub crn: u8,
    /// CRm.
    pub crm: u8,
    /// op2.
    pub op2: u8,
}

impl SysReg {
    /// `ICC_SGI1R_EL1`.
    pub const ICC_SGI1R_EL1: SysReg = SysReg::new(3, 0, 12, 11, 5);
    /// `ICC_ASGI1R_EL1`.
    pub const ICC_ASGI1R_EL1: SysReg = SysReg::new(3, 1, 12, 11, 6);
    /// `ICC_SGI0R_EL1`.
    pub const ICC_SGI0R_EL1: SysReg = SysReg::new(3, 2, 12, 11, 7);

    /// The register (op0, op1, CRn, CRm, op2).
    pub const fn new(op0: u8, op1: u8, crn: u8, crm: u8, op2: u8) -> SysReg {
        SysReg {
            op0,
            op1,
            crn,
            crm,
            op2,
        }
    }
}

impl fmt::Display for SysReg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "S{}_{}_C{}_C{}_{}",
            self.op0, self.op1, self.crn, self.crm, self.op2
        )
    }
}

/// `ESR_EL2.EC` values uvmm handles.
pub mod ec {
    /// WFI/WFE.
    pub const WFX: u8 = 0x01;
    /// HVC from AArch64.
    pub const HVC64: u8 = 0x16;
    /// SMC from AArch64.
    pub const SMC64: u8 = 0x17;
    /// MSR/MRS/system instruction.
    pub const SYSREG: u8 = 0x18;
    /// Instruction abort from a lower EL.
    pub const IABT_LOW: u8 = 0x20;
    /// Data abort from a lower EL.
    pub const DABT_LOW: u8 = 0x24;
}

/// `ESR.IL`: the trapping instruction was 32 bits.
pub const ESR_IL: u64 = 1 << 25;

fn bits(v: u64, hi: u32, lo: u32) -> u64 {
    (v >> lo) & ((1u64 << (hi - lo + 1)) - 1)
}

impl Trap {
    /// `ESR_EL2.EC`.
    pub fn ec(&self) -> u8 {
        bits(self.esr, 31, 26) as u8
    }

    /// Decodes the syndrome.
    pub fn decode(&self) -> Exit {
        let esr = self.esr;
        match self.ec() {
            ec::DABT_LOW if esr & (1 << 24) != 0 => Exit::Mmio(MmioAccess {
                gpa: self.gpa,
                size: 1 << bits(esr, 23, 22),
                sign_extend: esr & (1 << 21) != 0,
                reg: bits(esr, 20, 16) as u8,
                sixty_four: esr & (1 << 15) != 0,
                write: esr & (1 << 6) != 0,
            }),
            ec::DABT_LOW => Exit::Abort {
                gpa: self.gpa,
                fetch: false,
            },
            ec::IABT_LOW => Exit::Abort {
                gpa: self.gpa,
                fetch: true,
            },
            ec::HVC64 => Exit::Hvc(esr as u16),
            ec::SMC64 => Exit::Smc(esr as u16),
            ec::SYSREG => Exit::SysReg(SysRegAccess {
                reg: SysReg::new(
                    bits(esr, 21, 20) as u8,
                    bits(esr, 16, 14) as u8,
                    bits(esr, 13, 10) as u8,
                    bits(esr, 4, 1) as u8,
                    bits(esr, 19, 17) as u8,
                ),
                write: esr & 1 == 0,
                rt: bits(esr, 9, 5) as u8,
            }),
            ec::WFX => Exit::Wfx {
                wfe: bits(esr, 1, 0) == 1,
            },
            ec => Exit::Unknown { ec },
        }
    }

    /// Bytes of the trapping instruction (to step past it).
    pub fn insn_len(&self) -> u64 {
        if self.esr & ESR_IL != 0 { 4 } else { 2 }
    }
}

/// Builds an `ICH_LR<n>_EL2` value: virtual INTID `intid`, group 1,
/// `priority`, state pending (or active when `active`); with `hw` the
/// physical INTID `pintid` is deactivated when the guest deactivates the
/// virtual one. Level interrupts also set EOI maintenance (bit 41) so the
/// guest's completion is seen.
pub fn lr_value(
    intid: u32,
    priority: u8,
    pending: bool,
    active: bool,
    eoi_maintenance: bool,
) -> u64 {
    let state = u64::from(pending) | (u64::from(active) << 1);
    (state << 62)
        | (1 << 60)
        | (u64::from(priority) << 48)
        | (u64::from(eoi_maintenance && intid < 1020) << 41)
        | u64::from(intid)
}

/// The fields of an `ICH_LR<n>_EL2` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LrFields {
    /// The virtual INTID.
    pub intid: u32,
    /// Pending.
    pub pending: bool,
    /// Active.
    pub active: bool,
}

/// Decodes a list register.
pub fn lr_fields(lr: u64) -> LrFields {
    LrFields {
        intid: lr as u32,
        pending: lr & (1 << 62) != 0,
        active: lr & (1 << 63) != 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn esr(ec: u8, iss: u64) -> u64 {
        (u64::from(ec) << 26) | ESR_IL | iss
    }

    #[test]
    fn data_aborts() {
        // str w3, [x1] at 0x0900_0000: ISV, SAS=2, SRT=3, WnR.
        let t = Trap {
            esr: esr(ec::DABT_LOW, (1 << 24) | (2 << 22) | (3 << 16) | (1 << 6)),
            far: 0xffff_0000_1234_5018,
            gpa: 0x900_0018,
        };
        assert_eq!(
            t.decode(),
            Exit::Mmio(MmioAccess {
                gpa: 0x900_0018,
                size: 4,
                write: true,
                reg: 3,
                sign_extend: false,
                sixty_four: false
            })
        );
        // ldrsb x5: SAS=0, SSE, SF.
        let t = Trap {
            esr: esr(ec::DABT_LOW, (1 << 24) | (1 << 21) | (5 << 16) | (1 << 15)),
            far: 0x4,
            gpa: 0x80a_0004,
        };
        assert!(
            matches!(t.decode(), Exit::Mmio(a) if a.size == 1 && a.sign_extend && a.sixty_four && !a.write && a.gpa == 0x80a_0004)
        );
        let t = Trap {
            esr: esr(ec::DABT_LOW, 0),
            far: 0x10,
            gpa: 0x1010,
        };
        assert_eq!(
            t.decode(),
            Exit::Abort {
                gpa: 0x1010,
                fetch: false
            }
        );
        let t = Trap {
            esr: esr(ec::IABT_LOW, 0),
            far: 0,
            gpa: 0x2000,
        };
        assert_eq!(
            t.decode(),
            Exit::Abort {
                gpa: 0x2000,
                fetch: true
            }
        );
    }

    #[test]
    fn calls_sysregs_wfx() {
        assert_eq!(
            Trap {
                esr: esr(ec::HVC64, 0),
                ..Trap::default()
            }
            .decode(),
            Exit::Hvc(0)
        );
        assert_eq!(
            Trap {
                esr: esr(ec::SMC64, 7),
                ..Trap::default()
            }
            .decode(),
            Exit::Smc(7)
        );
        // msr ICC_SGI1R_EL1, x2: op0=3 op2=5 op1=0 CRn=12 Rt=2 CRm=11 dir=0.
        let iss = (3 << 20) | (5 << 17) | (12 << 10) | (2 << 5) | (11 << 1);
        assert_eq!(
            Trap {
                esr: esr(ec::SYSREG, iss),
                ..Trap::default()
            }
            .decode(),
            Exit::SysReg(SysRegAccess {
                reg: SysReg::ICC_SGI1R_EL1,
                write: true,
                rt: 2
            })
        );
        assert!(
            matches!(Trap { esr: esr(ec::SYSREG, iss | 1), ..Trap::default() }.decode(), Exit::SysReg(s) if !s.write)
        );
        assert_eq!(
            Trap {
                esr: esr(ec::WFX, 0),
                ..Trap::default()
            }
            .decode(),
            Exit::Wfx { wfe: false }
        );
        assert_eq!(
            Trap {
                esr: esr(ec::WFX, 1),
                ..Trap::default()
            }
            .decode(),
            Exit::Wfx { wfe: true }
        );
        assert_eq!(
            Trap {
                esr: esr(0x07, 0),
                ..Trap::default()
            }
            .decode(),
            Exit::Unknown { ec: 7 }
        );
        assert_eq!(SysReg::ICC_SGI1R_EL1.to_string(), "S3_0_C12_C11_5");
    }

    #[test]
    fn list_registers() {
        let lr = lr_value(33, 0xa0, true, false, true);
        assert_eq!(lr, (1 << 62) | (1 << 60) | (0xa0 << 48) | (1 << 41) | 33);
        assert_eq!(
            lr_fields(lr),
            LrFields {
                intid: 33,
                pending: true,
                active: false
            }
        );
        let mut s = VcpuState::default();
        s.set_reg(31, 5);
        assert_eq!(s.reg(31), 0);
        s.set_reg(30, 5);
        assert_eq!(s.reg(30), 5);
        let t = VirtualTimer {
            ctl: 1,
            cval: 2_000,
        };
        assert_eq!(
            t.remaining(1_000, 1_000_000),
            Some(core::time::Duration::from_millis(1))
        );
        assert_eq!(
            t.remaining(3_000, 1_000_000),
            Some(core::time::Duration::ZERO)
        );
        assert_eq!(
            VirtualTimer {
                ctl: 3,
                cval: 2_000
            }
            .remaining(0, 1),
            None
        );
        assert_eq!(
            VirtualTimer {
                ctl: 0,
                cval: 2_000
            }
            .remaining(0, 1),
            None
        );
    }
}

//! The boundary to the kernel: what uvmm needs from the Vm object and its
//! vCPUs. The state a vCPU exchanges with uvmm and the decoding of its
//! exits are the kernel's ABI ([`l4_abi::vcpu`]): one home for both.
//!
//! The kernel's side (a `Vm` kernel object with a stage-2 address space,
//! vCPU threads that enter the guest and come back on an exit) implements
//! [`VmBackend`] and [`VcpuBackend`]. uvmm never sees EL2 itself: a vCPU
//! returns from [`VcpuBackend::run`] with the guest's registers and the
//! raw syndrome ([`VcpuState::exit`]: `ESR_EL2`, `FAR_EL2`, the faulting
//! IPA) in a [`VcpuState`], uvmm handles the exit (it may change the
//! registers, e.g. the result of an MMIO read, `pc` past the trapping
//! instruction, or inject an exception through the EL1 registers) and runs
//! the vCPU again with the changed state.
//!
//! Interrupts reach the guest through the GICv3 virtual CPU interface:
//! before each entry uvmm fills the list registers (`VcpuState::gic.lr`,
//! [`l4_abi::vcpu::lr`]) and the kernel loads them; after the exit the
//! kernel stores them back, so uvmm sees which interrupts the guest has
//! taken and completed. To make a running vCPU pick up a new interrupt
//! uvmm calls [`VcpuKick::kick`], which makes its `run` return
//! [`RunExit::Kicked`] soon.

use core::fmt;

use crate::passthrough::{PtIrq, PtMmio};

pub use l4_abi::vcpu::{
    El1Regs, Exit, GuestRegs, MAX_LRS, Mmio, SysRegAccess, VTimer, VcpuState, ec, lr,
    sysreg_encoding, unchanged,
};

/// How long from counter value `now` (at `frequency` Hz) until the
/// virtual timer `t` fires; `None` when it is off or masked.
pub fn timer_remaining(t: &VTimer, now: u64, frequency: u64) -> Option<core::time::Duration> {
    if t.ctl & 0b11 != 0b01 || frequency == 0 {
        return None;
    }
    let ticks = u128::from(t.cval.saturating_sub(now));
    let nanos = ticks * 1_000_000_000 / u128::from(frequency);
    Some(core::time::Duration::from_nanos(
        u64::try_from(nanos).unwrap_or(u64::MAX),
    ))
}

/// `ICC_SGI1R_EL1`.
pub const ICC_SGI1R_EL1: u32 = sysreg_encoding(3, 0, 12, 11, 5);
/// `ICC_ASGI1R_EL1`.
pub const ICC_ASGI1R_EL1: u32 = sysreg_encoding(3, 1, 12, 11, 6);
/// `ICC_SGI0R_EL1`.
pub const ICC_SGI0R_EL1: u32 = sysreg_encoding(3, 2, 12, 11, 7);

/// `OSLSR_EL1`.
pub const OSLSR_EL1: u32 = sysreg_encoding(2, 0, 1, 1, 4);

/// What a guest at EL1 reads from a register the kernel traps for every
/// guest, since it does not switch it, and that uvmm answers with a
/// constant, ignoring writes: the debug registers (op0 2, op1 0 or 3:
/// breakpoints, watchpoints, `MDSCR_EL1`, the OS lock, claim tags, the
/// debug communication channel) read as zero, `OSLSR_EL1` as an OS lock
/// that is there and open (no self-hosted debug for guests, but a
/// kernel's set-up of its breakpoints runs); the RAS error records
/// (`ERRIDR_EL1`, `ERRSELR_EL1`, `ERX*_EL1`) as none. `None` for others.
pub fn constant_register(encoding: u32) -> Option<u64> {
    let (op0, op1) = (encoding >> 14, (encoding >> 11) & 7);
    let (crn, crm) = ((encoding >> 7) & 0xf, (encoding >> 3) & 0xf);
    if encoding == OSLSR_EL1 {
        Some(0b1000)
    } else if (op0 == 2 && matches!(op1, 0 | 3))
        || (op0, op1, crn) == (3, 0, 5) && (3..=5).contains(&crm)
    {
        Some(0)
    } else {
        None
    }
}

/// A system register's name as `S<op0>_<op1>_C<n>_C<m>_<op2>`.
pub fn sysreg_name(encoding: u32) -> String {
    format!(
        "S{}_{}_C{}_C{}_{}",
        encoding >> 14,
        (encoding >> 11) & 7,
        (encoding >> 7) & 0xf,
        (encoding >> 3) & 0xf,
        encoding & 7
    )
}

/// `ESR.IL`: the instruction was 32 bits (always, in AArch64).
pub const ESR_IL: u64 = 1 << 25;

/// Why [`VcpuBackend::run`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunExit {
    /// The guest exited for uvmm; [`VcpuState::exit`] says why.
    Trap,
    /// [`VcpuKick::kick`] was called (or a host interrupt ended the run,
    /// or the backend handled the exit itself: it mapped guest RAM the
    /// guest touched first): nothing to handle but the interrupt state.
    Kicked,
    /// The guest's virtual timer fired (a kernel that leaves the timer to
    /// uvmm: uvmm makes PPI 27 pending).
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

    /// Gives the guest `size` bytes of the RAM dataspace named `dscap`
    /// from `ds_offset` at guest-physical `gpa` in its stage-2 address
    /// space, read-write-execute, cacheable (the kernel backend maps each
    /// 2 MiB block when the guest first touches it).
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

    /// Maps an MMIO range of a vbus device into the guest's stage-2 space
    /// at `m.gpa` (device memory).
    fn map_mmio(&mut self, m: &PtMmio) -> Result<(), BackendError>;

    /// Has the kernel inject the interrupt of a vbus device as
    /// `irq.intid` into vCPU `vcpu` directly (called before that vCPU is
    /// created). The line is masked while the guest handles it; the
    /// returned [`IrqEoi`] unmasks it once the guest completed it.
    fn route_irq(&mut self, irq: &PtIrq, vcpu: usize) -> Result<Box<dyn IrqEoi>, BackendError>;

    /// A page the guest may read the registers of the device at `gpa`
    /// (one page, page-aligned) from without exits
    /// ([`crate::devices::ReadMirror`]); `None` where the backend has none.
    fn read_mirror(
        &mut self,
        _gpa: u64,
    ) -> Result<Option<Box<dyn crate::devices::ReadMirror>>, BackendError> {
        Ok(None)
    }
}

/// The end of a passed-through interrupt: the guest deactivated it, so
/// its line may fire again.
pub trait IrqEoi: Send + Sync {
    /// Unmasks the line.
    fn eoi(&self);
}

/// One vCPU, used from its own uvmm thread.
pub trait VcpuBackend: Send {
    /// The vCPU's state, which uvmm changes between runs (for the
    /// kernel's vCPUs: the state area itself, so nothing is copied).
    fn state(&mut self) -> &mut VcpuState;

    /// Enters the guest with [`VcpuBackend::state`] (registers, list
    /// registers) and returns at the next exit with it updated.
    fn run(&mut self) -> Result<RunExit, BackendError>;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timer_and_names() {
        let t = VTimer {
            ctl: 1,
            cval: 2_000,
            ..VTimer::default()
        };
        assert_eq!(
            timer_remaining(&t, 1_000, 1_000_000),
            Some(core::time::Duration::from_millis(1))
        );
        assert_eq!(
            timer_remaining(&t, 3_000, 1_000_000),
            Some(core::time::Duration::ZERO)
        );
        assert_eq!(timer_remaining(&VTimer { ctl: 3, ..t }, 0, 1), None);
        assert_eq!(timer_remaining(&VTimer { ctl: 0, ..t }, 0, 1), None);
        assert_eq!(sysreg_name(ICC_SGI1R_EL1), "S3_0_C12_C11_5");
        // Debug registers and RAS error records read as zero (OSLSR_EL1
        // as an open OS lock); a trace register (op1 1), ESR_EL1 (CRn 5,
        // CRm 2), PMCCNTR_EL0 and ICC_SGI1R_EL1 are none of them.
        for (e, v) in [
            (sysreg_encoding(2, 0, 0, 2, 2), Some(0)),
            (sysreg_encoding(2, 0, 0, 0, 4), Some(0)),
            (sysreg_encoding(2, 3, 0, 4, 0), Some(0)),
            (OSLSR_EL1, Some(0b1000)),
            (sysreg_encoding(3, 0, 5, 3, 0), Some(0)),
            (sysreg_encoding(3, 0, 5, 5, 3), Some(0)),
            (sysreg_encoding(2, 1, 0, 0, 0), None),
            (sysreg_encoding(3, 0, 5, 2, 0), None),
            (sysreg_encoding(3, 3, 9, 13, 0), None),
            (ICC_SGI1R_EL1, None),
        ] {
            assert_eq!(constant_register(e), v, "{}", sysreg_name(e));
        }
    }
}

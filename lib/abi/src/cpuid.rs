//! The CPU features a task may use at EL0, as the kernel reports them.
//!
//! EL0 cannot read the CPU's ID registers itself (the access traps), so
//! the kernel reads them at boot and gives the root task, in its boot-info
//! page, the three that say which instructions user code may execute,
//! with every field cleared that names something the kernel does not
//! provide to tasks (SVE, pointer authentication, EL1 to EL3, the RAS and
//! GIC system registers, ...). Loaders pass the values on in each task's
//! environment page; the runtime turns them into Linux's `AT_HWCAP` bits,
//! so that code which picks an implementation by `getauxval(AT_HWCAP)`
//! (CRC32 and polynomial multiplication in libdeflate, LSE atomics in
//! Rust's and GCC's outline atomics) finds what the CPU has.
//!
//! All fields are the architecture's 4-bit ID fields at their usual
//! places; [`CpuId::field`] reads one.

/// ID registers as a task may read them. All zero means "nothing known"
/// (then only what every AArch64 CPU has may be assumed: FP and ASIMD).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct CpuId {
    /// `ID_AA64ISAR0_EL1`: AES, SHA, CRC32, atomics, RDM, dot product, ...
    pub isar0: u64,
    /// `ID_AA64ISAR1_EL1`: DC CVAP, JSCVT, FCMA, LRCPC, FRINTTS, SB, ...
    pub isar1: u64,
    /// `ID_AA64PFR0_EL1`: FP, AdvSIMD, DIT, CSV2, CSV3.
    pub pfr0: u64,
}

/// Fields of [`CpuId::isar0`] kept for tasks (their shifts): AES 4, SHA1 8,
/// SHA2 12, CRC32 16, Atomic 20, RDM 28, SHA3 32, SM3 36, SM4 40, DP 44,
/// FHM 48, TS 52, RNDR 60. Not kept: TME 24 (needs the kernel), TLB 56
/// (EL1's instructions).
pub const ISAR0_FOR_TASKS: &[u32] = &[4, 8, 12, 16, 20, 28, 32, 36, 40, 44, 48, 52, 60];
/// Fields of [`CpuId::isar1`] kept for tasks: DPB 0, JSCVT 12, FCMA 16,
/// LRCPC 20, FRINTTS 32, SB 36, BF16 44, DGH 48, I8MM 52. Not kept: pointer
/// authentication (APA 4, API 8, GPA 24, GPI 28: no keys are set up),
/// SPECRES 40, XS 56, LS64 60.
pub const ISAR1_FOR_TASKS: &[u32] = &[0, 12, 16, 20, 32, 36, 44, 48, 52];
/// Fields of [`CpuId::pfr0`] kept for tasks: EL0 0, FP 16, AdvSIMD 20,
/// DIT 48, CSV2 56, CSV3 60. Not kept: EL1 to EL3, GIC, RAS, SVE (the
/// kernel does not switch SVE state), SEL2, MPAM, AMU, RME.
pub const PFR0_FOR_TASKS: &[u32] = &[0, 16, 20, 48, 56, 60];

/// `v` with only the 4-bit fields at `shifts`.
const fn only(v: u64, shifts: &[u32]) -> u64 {
    let mut mask = 0;
    let mut i = 0;
    while i < shifts.len() {
        mask |= 0xf << shifts[i];
        i += 1;
    }
    v & mask
}

impl CpuId {
    /// Nothing known (FP and ASIMD may still be assumed).
    pub const UNKNOWN: CpuId = CpuId {
        isar0: 0,
        isar1: 0,
        pfr0: 0,
    };

    /// The CPU's ID registers reduced to what tasks may use.
    pub const fn for_tasks(isar0: u64, isar1: u64, pfr0: u64) -> CpuId {
        CpuId {
            isar0: only(isar0, ISAR0_FOR_TASKS),
            isar1: only(isar1, ISAR1_FOR_TASKS),
            pfr0: only(pfr0, PFR0_FOR_TASKS),
        }
    }

    /// The 4-bit field of `reg` at `shift`.
    pub const fn field(reg: u64, shift: u32) -> u64 {
        (reg >> shift) & 0xf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_what_tasks_may_use_and_clears_the_rest() {
        let all = u64::MAX;
        let id = CpuId::for_tasks(all, all, all);
        // ISAR0: TME and TLB gone.
        assert_eq!(CpuId::field(id.isar0, 24), 0);
        assert_eq!(CpuId::field(id.isar0, 56), 0);
        assert_eq!(CpuId::field(id.isar0, 16), 0xf);
        assert_eq!(id.isar0 & 0xf, 0, "ISAR0 bits 0..4 are reserved");
        // ISAR1: pointer authentication gone, LRCPC kept.
        for shift in [4, 8, 24, 28, 40, 56, 60] {
            assert_eq!(CpuId::field(id.isar1, shift), 0, "ISAR1 field at {shift}");
        }
        assert_eq!(CpuId::field(id.isar1, 20), 0xf);
        // PFR0: SVE, EL2 and EL3 gone; FP and AdvSIMD kept.
        for shift in [4, 8, 12, 24, 28, 32, 36, 40, 44, 52] {
            assert_eq!(CpuId::field(id.pfr0, shift), 0, "PFR0 field at {shift}");
        }
        assert_eq!(CpuId::field(id.pfr0, 16), 0xf);
        assert_eq!(CpuId::field(id.pfr0, 20), 0xf);
    }

    #[test]
    fn a_real_cpu() {
        // Cortex-A72: AES+PMULL, SHA1, SHA2, CRC32; FP and AdvSIMD; EL0-EL3.
        let id = CpuId::for_tasks(0x0001_1120, 0, 0x0000_0000_0000_2222);
        assert_eq!(id.isar0, 0x0001_1120);
        assert_eq!(id.pfr0, 0x0000_0000_0000_0002);
    }
}

//! Decoding of the Exception Syndrome Register (ESR_ELx) for reports.

use core::fmt;

/// Exception classes (ESR_ELx.EC) the kernel distinguishes.
pub mod ec {
    /// Unknown reason (e.g. an undefined instruction).
    pub const UNKNOWN: u32 = 0x00;
    /// A trapped WFI or WFE.
    pub const WFX: u32 = 0x01;
    /// A trapped FP/SIMD access.
    pub const FP_ACCESS: u32 = 0x07;
    /// Illegal execution state.
    pub const ILLEGAL_STATE: u32 = 0x0e;
    /// SVC from AArch64.
    pub const SVC64: u32 = 0x15;
    /// HVC from AArch64.
    pub const HVC64: u32 = 0x16;
    /// SMC from AArch64.
    pub const SMC64: u32 = 0x17;
    /// A trapped system-register access (MSR, MRS, system instruction).
    pub const SYSREG: u32 = 0x18;
    /// Instruction abort from a lower exception level.
    pub const IABT_LOWER: u32 = 0x20;
    /// Instruction abort from the current exception level.
    pub const IABT_CUR: u32 = 0x21;
    /// PC alignment fault.
    pub const PC_ALIGN: u32 = 0x22;
    /// Data abort from a lower exception level.
    pub const DABT_LOWER: u32 = 0x24;
    /// Data abort from the current exception level.
    pub const DABT_CUR: u32 = 0x25;
    /// SP alignment fault.
    pub const SP_ALIGN: u32 = 0x26;
    /// SError interrupt.
    pub const SERROR: u32 = 0x2f;
    /// BRK from AArch64.
    pub const BRK64: u32 = 0x3c;
}

/// A decoded syndrome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Esr(pub u64);

impl Esr {
    /// The exception class (bits 26..32).
    pub fn ec(self) -> u32 {
        ((self.0 >> 26) & 0x3f) as u32
    }

    /// The instruction-specific syndrome (bits 0..25).
    pub fn iss(self) -> u32 {
        (self.0 & 0x1ff_ffff) as u32
    }

    /// The immediate of an SVC/HVC/SMC.
    pub fn imm16(self) -> u16 {
        (self.0 & 0xffff) as u16
    }

    /// Whether this is an instruction or data abort.
    pub fn is_abort(self) -> bool {
        matches!(
            self.ec(),
            ec::IABT_LOWER | ec::IABT_CUR | ec::DABT_LOWER | ec::DABT_CUR
        )
    }

    /// For data aborts: whether the access was a write.
    pub fn is_write(self) -> bool {
        matches!(self.ec(), ec::DABT_LOWER | ec::DABT_CUR) && self.iss() & (1 << 6) != 0
    }

    /// The exception class in words.
    pub fn class_name(self) -> &'static str {
        match self.ec() {
            ec::UNKNOWN => "unknown reason (undefined instruction)",
            ec::WFX => "WFI/WFE trapped",
            ec::FP_ACCESS => "FP/SIMD access trapped",
            ec::ILLEGAL_STATE => "illegal execution state",
            ec::SVC64 => "SVC",
            ec::HVC64 => "HVC",
            ec::SMC64 => "SMC",
            ec::SYSREG => "system register access trapped",
            ec::IABT_LOWER => "instruction abort from a lower level",
            ec::IABT_CUR => "instruction abort",
            ec::PC_ALIGN => "PC alignment fault",
            ec::DABT_LOWER => "data abort from a lower level",
            ec::DABT_CUR => "data abort",
            ec::SP_ALIGN => "SP alignment fault",
            ec::SERROR => "SError",
            ec::BRK64 => "BRK instruction",
            _ => "other exception class",
        }
    }

    /// The fault status of an abort, in words.
    pub fn fault_status(self) -> &'static str {
        let fsc = self.iss() & 0x3f;
        match fsc {
            0x00..=0x03 => "address size fault",
            0x04..=0x07 => "translation fault",
            0x09..=0x0b => "access flag fault",
            0x0d..=0x0f => "permission fault",
            0x10 => "synchronous external abort",
            0x21 => "alignment fault",
            0x30 => "TLB conflict",
            _ => "other fault",
        }
    }
}

impl fmt::Display for Esr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ESR {:#010x}: EC {:#04x} {}",
            self.0,
            self.ec(),
            self.class_name()
        )?;
        if self.is_abort() {
            let level = self.iss() & 3;
            write!(f, ", {} (level {})", self.fault_status(), level)?;
            if matches!(self.ec(), ec::DABT_LOWER | ec::DABT_CUR) {
                f.write_str(if self.is_write() { ", write" } else { ", read" })?;
            }
        } else if matches!(self.ec(), ec::SVC64 | ec::HVC64 | ec::SMC64 | ec::BRK64) {
            write!(f, " #{}", self.imm16())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::format;

    #[test]
    fn data_abort_is_decoded() {
        // EC 0x24, IL, WnR, DFSC translation fault level 3.
        let e = Esr((0x24 << 26) | (1 << 25) | (1 << 6) | 0x07);
        assert!(e.is_abort());
        assert!(e.is_write());
        assert_eq!(
            format!("{e}"),
            "ESR 0x92000047: EC 0x24 data abort from a lower level, translation fault (level 3), write"
        );
    }

    #[test]
    fn svc_immediate() {
        let e = Esr((0x15 << 26) | (1 << 25) | 1);
        assert_eq!(e.ec(), ec::SVC64);
        assert_eq!(e.imm16(), 1);
        assert_eq!(format!("{e}"), "ESR 0x56000001: EC 0x15 SVC #1");
    }

    #[test]
    fn instruction_abort_has_no_direction() {
        let e = Esr((0x20 << 26) | 0x0f);
        assert_eq!(
            format!("{e}"),
            "ESR 0x8000000f: EC 0x20 instruction abort from a lower level, permission fault (level 3)"
        );
        assert!(!e.is_write());
    }
}

//! AArch64.

pub mod esr;

//! Architecture-specific code. Everything instruction-level lives below here.

mod aarch64;
pub use aarch64::*;

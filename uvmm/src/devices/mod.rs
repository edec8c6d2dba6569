//! The emulated devices, one folder each.

pub mod gic;

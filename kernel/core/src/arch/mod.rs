//! What the kernel knows of its CPU architectures, portable enough to test
//! on the host.

pub mod aarch64;

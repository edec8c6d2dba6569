//! uvmm, the virtual machine monitor: one task per guest.
//!
//! uvmm loads a guest kernel ([`loader`]) into the RAM dataspace(s)
//! ([`memory`]), builds the guest's device tree ([`dt`]) and then runs the
//! guest's vCPUs, handling every exit ([`vmm`]): MMIO accesses go over the
//! [`bus`] to the emulated [`devices`] (GICv3, PL011, virtio-mmio console),
//! HVC/SMC calls to [`psci`]. Devices of io's virtual bus are passed
//! through ([`passthrough`]). The kernel side (the Vm object with its
//! stage-2 address space, vCPU threads that resume the guest and come back
//! with an exit) is reached through the [`backend`] traits only, so
//! everything here runs and is tested on the host.

#![forbid(unsafe_op_in_unsafe_fn)]

pub mod backend;
pub mod bus;
#[cfg(test)]
mod damage;
pub mod devices;
pub mod dt;
pub mod dtb;
pub mod loader;
pub mod log;
pub mod machine;
pub mod memory;
pub mod monitor;
pub mod options;
pub mod passthrough;
pub mod psci;
pub mod vmm;

pub use options::{OptError, Options};

//! The task's L4Re environment, for programs (std or no_std) running over
//! the runtime: named capabilities from the loader (ned's `caps = {...}`),
//! arguments, and the well-known capability indices.
//!
//! ```no_run
//! // In a std program started by ned with caps = { ram = ... }:
//! if let Some(ram) = l4re::env::get_cap("ram") {
//!     // Invoke it with l4re::abi::call::ipc_call(l4re::abi::Cap::new(ram), ...).
//!     let _ = ram;
//! }
//! ```
//!
//! The environment page is at [`l4_env::ENV_VA`]. A std program finds
//! out that it runs over this runtime through the auxiliary vector entry
//! [`crate::linux::auxv::AT_L4RE_ENV`], so on Linux [`env`] is `None`
//! instead of a crash.

pub use l4_env::{Env, caps};

/// Capability indices a program may allocate freely (the runtime uses
/// `caps::FIRST_FREE .. FIRST_PROGRAM_CAP` for threads, dataspaces and
/// files).
pub const FIRST_PROGRAM_CAP: u64 = 0x800;
/// `l4re_dbg` bit (L4Re's `L4.Dbg.Boot`): the runtime reports what the
/// program's start cost before its first output, and ned passes the bit
/// on to the programs it starts (`cargo xtask bench boot` sets it for
/// init).
pub const DBG_BOOT: u32 = 0x4;

/// End of the capability indices (the kernel's table size).
pub const CAP_LIMIT: u64 = 0x1000;

/// The environment page, when running as an L4Re task.
pub fn env() -> Option<&'static Env> {
    let va = env_address()?;
    // SAFETY: `env_address` only returns ENV_VA when the runtime said (or,
    // for no_std tasks, the target guarantees) that the loader mapped the
    // read-only environment page there for the task's whole life; `Env`
    // is plain data valid for any bytes.
    let e = unsafe { &*(va as *const Env) };
    e.is_valid().then_some(e)
}

/// The capability index the loader put under `name`.
pub fn get_cap(name: &str) -> Option<u64> {
    env()?.cap(name)
}

/// The `l4re_dbg` bits the task's programs pass on to the programs they
/// start ([`DBG_BOOT`]).
pub fn inherited_dbg() -> u32 {
    env().map_or(0, |e| e.dbg & DBG_BOOT)
}

/// The program's arguments as the loader gave them.
pub fn args() -> impl Iterator<Item = &'static str> {
    env().into_iter().flat_map(|e| e.args())
}

#[cfg(target_env = "musl")]
fn env_address() -> Option<u64> {
    unsafe extern "C" {
        safe fn getauxval(t: core::ffi::c_ulong) -> core::ffi::c_ulong;
    }
    let va = getauxval(crate::linux::auxv::AT_L4RE_ENV as core::ffi::c_ulong) as u64;
    (va == l4_env::ENV_VA).then_some(va)
}

#[cfg(target_os = "none")]
fn env_address() -> Option<u64> {
    Some(l4_env::ENV_VA)
}

#[cfg(not(any(target_env = "musl", target_os = "none")))]
fn env_address() -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn not_an_l4re_task_on_the_host() {
        assert!(super::env().is_none());
        assert_eq!(super::get_cap("ram"), None);
        assert_eq!(super::args().count(), 0);
        const _: () = assert!(super::FIRST_PROGRAM_CAP > super::caps::FIRST_FREE);
    }
}

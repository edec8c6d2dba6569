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

/// Priority of the program's threads (the loader runs the runtime's
/// thread at its own; it should not be lower).
pub const PROGRAM_PRIO: u64 = 2;
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

/// The CPU features the task may use ([`l4_abi::cpuid`]), which the
/// programs it starts inherit.
pub fn cpu_id() -> l4_abi::cpuid::CpuId {
    env().map_or(l4_abi::cpuid::CpuId::UNKNOWN, |e| e.cpu_id)
}

/// The program's arguments as the loader gave them.
pub fn args() -> impl Iterator<Item = &'static str> {
    env().into_iter().flat_map(|e| e.args())
}

/// Attaches `size` bytes of the program's dataspace capability `ds` from
/// `offset` (`prot`: Linux `PROT_*` bits) and maps all of it now; where.
/// The capability stays the program's. Errors are Linux error numbers.
pub fn attach(ds: u64, size: u64, offset: u64, prot: u64) -> Result<u64, i64> {
    l4re_call(crate::linux::l4re_sys::ATTACH, [ds, size, offset, prot])
}

/// The calling thread's capability index.
pub fn thread_cap() -> Result<u64, i64> {
    l4re_call(crate::linux::l4re_sys::THREAD_CAP, [0; 4])
}

/// Reserves a free 4 KiB page of the task's UTCB area (no thread gets its
/// UTCB there), e.g. for a vCPU's state area; its address.
pub fn utcb_page() -> Result<u64, i64> {
    l4re_call(crate::linux::l4re_sys::UTCB_PAGE, [0; 4])
}

#[cfg(all(target_env = "musl", target_arch = "aarch64"))]
fn l4re_call(nr: u64, a: [u64; 4]) -> Result<u64, i64> {
    if env().is_none() {
        return Err(crate::linux::errno::ENOSYS);
    }
    // SAFETY: a system call served by the runtime (`crate::linux::l4re_sys`):
    // it reads its four arguments and writes x0 only.
    let r = unsafe { crate::syscall::call(nr, [a[0], a[1], a[2], a[3], 0, 0]) };
    if (-4095..0).contains(&r) {
        Err(-r)
    } else {
        Ok(r as u64)
    }
}

#[cfg(not(all(target_env = "musl", target_arch = "aarch64")))]
fn l4re_call(_nr: u64, _a: [u64; 4]) -> Result<u64, i64> {
    Err(crate::linux::errno::ENOSYS)
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
        assert_eq!(super::thread_cap(), Err(crate::linux::errno::ENOSYS));
        const _: () = assert!(super::FIRST_PROGRAM_CAP > super::caps::FIRST_FREE);
    }
}

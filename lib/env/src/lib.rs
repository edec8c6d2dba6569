//! The environment of a task started by a loader (moe or ned).
//!
//! The loader creates the task, maps the runtime (`rom/l4re`) into it,
//! puts capabilities at the well-known indices of [`caps`], writes an
//! [`Env`] page at [`ENV_VA`] and starts the runtime's thread at the
//! runtime's entry with `sp` = [`RUNTIME_STACK_TOP`] and `x0` = [`ENV_VA`].
//! The runtime then loads the program from the [`caps::PROGRAM`]
//! dataspace, starts its main thread and serves its page faults and Linux
//! system calls.
//!
//! Layout of a task's address space (user half, 47 bits):
//!
//! | range                              | what                                   |
//! |------------------------------------|----------------------------------------|
//! | program's own addresses            | ELF segments, heap (`brk`), `mmap`     |
//! | [`RUNTIME_BASE`] ..                | the runtime's segments                 |
//! | [`UTCB_AREA`] .. + [`UTCB_AREA_SIZE`] | UTCBs: slot 0 the runtime, then threads |
//! | [`PROGRAM_STACK_TOP`] - 8 MiB ..   | the main thread's stack (on demand)     |
//! | [`ENV_VA`] .. + [`ENV_SIZE`]       | this page (read-only)                  |
//! | .. [`RUNTIME_STACK_TOP`]           | the runtime's stack                    |

#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

/// Capability indices every loaded task finds.
pub mod caps {
    /// The task itself.
    pub const THIS_TASK: u64 = 1;
    /// A kernel factory (threads, gates, IRQs, semaphores), with a quota.
    pub const FACTORY: u64 = 2;
    /// The runtime's own thread (pager and exception handler of the others).
    pub const RUNTIME_THREAD: u64 = 3;
    /// The parent: an IPC gate to the loader (exit is signalled there).
    pub const PARENT: u64 = 4;
    /// The task's log (Vcon protocol: the kernel console or a cons client).
    pub const LOG: u64 = 5;
    /// The program's main thread (servers bind their gates to it).
    pub const MAIN_THREAD: u64 = 6;
    /// The scheduler the task's threads run through (kernel or a proxy).
    pub const SCHEDULER: u64 = 7;
    /// moe's user factory (`L4.Env.user_factory`, `mem_alloc`).
    pub const MEM_ALLOC: u64 = 8;
    /// The `rom/` namespace.
    pub const ROM: u64 = 9;
    /// The program's ELF file (a read-only dataspace).
    pub const PROGRAM: u64 = 10;
    /// First index of the named capabilities of [`crate::Env::caps`].
    pub const FIRST_NAMED: u64 = 0x40;
    /// First index the runtime and the program allocate freely.
    pub const FIRST_FREE: u64 = 0x100;
}

/// Where the runtime is linked.
pub const RUNTIME_BASE: u64 = 0x0000_7f00_0000_0000;
/// The UTCB area of every loaded task (64 UTCBs of 1 KiB).
pub const UTCB_AREA: u64 = 0x0000_7ff0_0000_0000;
/// Size of the UTCB area.
pub const UTCB_AREA_SIZE: u64 = 64 * 1024;
/// Top of the main thread's stack.
pub const PROGRAM_STACK_TOP: u64 = 0x0000_7ffe_0000_0000;
/// Largest main-thread stack.
pub const PROGRAM_STACK_SIZE: u64 = 8 << 20;
/// Where the [`Env`] page is mapped.
pub const ENV_VA: u64 = 0x0000_7fff_fe00_0000;
/// Size of the [`Env`] area.
pub const ENV_SIZE: usize = 8192;
/// Top of the runtime's stack (mapped by the loader).
pub const RUNTIME_STACK_TOP: u64 = 0x0000_7fff_ffff_0000;
/// Size of the runtime's stack.
pub const RUNTIME_STACK_SIZE: u64 = 64 * 1024;

/// "L4RE_ENV".
pub const MAGIC: u64 = u64::from_le_bytes(*b"L4RE_ENV");
/// Layout version.
pub const VERSION: u32 = 2;
/// Longest capability name (ned allows 16; we keep 24 bytes).
pub const NAME_LEN: usize = 24;
/// Most named capabilities.
pub const MAX_CAPS: usize = 32;
/// Bytes for the program name, arguments and environment strings.
pub const STRINGS: usize = 6144;

/// A named capability (ned's `caps = { name = cap }`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct NamedCap {
    /// The name, NUL-padded.
    pub name: [u8; NAME_LEN],
    /// Its index in the task.
    pub index: u64,
}

/// Why a value did not fit the environment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnvError {
    /// The strings area is full.
    NoRoom,
    /// Too many named capabilities.
    TooManyCaps,
    /// A capability name is empty, too long or not unique.
    BadName,
}

impl core::fmt::Display for EnvError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            EnvError::NoRoom => "arguments and environment do not fit the task's environment page",
            EnvError::TooManyCaps => "too many named capabilities",
            EnvError::BadName => "capability names must be 1 to 24 bytes and unique",
        })
    }
}

/// The environment page.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Env {
    /// [`MAGIC`].
    pub magic: u64,
    /// [`VERSION`].
    pub version: u32,
    /// Number of arguments (the first is the program's name, `rom/x`).
    pub argc: u32,
    /// Number of environment strings.
    pub envc: u32,
    /// Number of named capabilities.
    pub ncaps: u32,
    /// Bytes used in `strings`.
    pub strings_len: u32,
    /// `l4re_dbg` flags of the start options.
    pub dbg: u32,
    /// The CPU features the task may use ([`l4_abi::cpuid`]), as the
    /// kernel told the root task; loaders pass on what they were given.
    pub cpu_id: l4_abi::cpuid::CpuId,
    /// The named capabilities.
    pub caps: [NamedCap; MAX_CAPS],
    /// argv then envp, each NUL-terminated.
    pub strings: [u8; STRINGS],
}

const _: () = assert!(core::mem::size_of::<Env>() <= ENV_SIZE);

impl Default for Env {
    fn default() -> Self {
        Env::new()
    }
}

impl Env {
    /// An empty environment.
    pub const fn new() -> Env {
        Env {
            magic: MAGIC,
            version: VERSION,
            argc: 0,
            envc: 0,
            ncaps: 0,
            strings_len: 0,
            dbg: 0,
            cpu_id: l4_abi::cpuid::CpuId::UNKNOWN,
            caps: [NamedCap {
                name: [0; NAME_LEN],
                index: 0,
            }; MAX_CAPS],
            strings: [0; STRINGS],
        }
    }

    /// Whether the page looks like an environment of this version.
    pub fn is_valid(&self) -> bool {
        self.magic == MAGIC
            && self.version == VERSION
            && self.strings_len as usize <= STRINGS
            && self.ncaps as usize <= MAX_CAPS
    }

    fn push_str(&mut self, s: &str) -> Result<(), EnvError> {
        let at = self.strings_len as usize;
        let end = at + s.len() + 1;
        if end > STRINGS || s.as_bytes().contains(&0) {
            return Err(EnvError::NoRoom);
        }
        self.strings[at..end - 1].copy_from_slice(s.as_bytes());
        self.strings[end - 1] = 0;
        self.strings_len = end as u32;
        Ok(())
    }

    /// Appends an argument. All arguments come before the first
    /// environment string.
    pub fn push_arg(&mut self, s: &str) -> Result<(), EnvError> {
        if self.envc != 0 {
            return Err(EnvError::NoRoom);
        }
        self.push_str(s)?;
        self.argc += 1;
        Ok(())
    }

    /// Appends an environment string (`NAME=value`).
    pub fn push_env(&mut self, s: &str) -> Result<(), EnvError> {
        self.push_str(s)?;
        self.envc += 1;
        Ok(())
    }

    /// Records that capability `name` is at `index`.
    pub fn add_cap(&mut self, name: &str, index: u64) -> Result<(), EnvError> {
        if name.is_empty() || name.len() > NAME_LEN || self.cap(name).is_some() {
            return Err(EnvError::BadName);
        }
        let n = self.ncaps as usize;
        if n >= MAX_CAPS {
            return Err(EnvError::TooManyCaps);
        }
        let mut c = NamedCap {
            name: [0; NAME_LEN],
            index,
        };
        c.name[..name.len()].copy_from_slice(name.as_bytes());
        self.caps[n] = c;
        self.ncaps += 1;
        Ok(())
    }

    /// The index of the capability called `name`.
    pub fn cap(&self, name: &str) -> Option<u64> {
        self.named_caps().find(|(n, _)| *n == name).map(|(_, i)| i)
    }

    /// Every named capability.
    pub fn named_caps(&self) -> impl Iterator<Item = (&str, u64)> {
        self.caps[..(self.ncaps as usize).min(MAX_CAPS)]
            .iter()
            .map(|c| {
                let len = c.name.iter().position(|&b| b == 0).unwrap_or(NAME_LEN);
                (core::str::from_utf8(&c.name[..len]).unwrap_or(""), c.index)
            })
    }

    fn strs(&self) -> impl Iterator<Item = &str> {
        self.strings[..(self.strings_len as usize).min(STRINGS)]
            .split(|&b| b == 0)
            .map(|s| core::str::from_utf8(s).unwrap_or(""))
    }

    /// The arguments (the first is the program).
    pub fn args(&self) -> impl Iterator<Item = &str> {
        self.strs().take(self.argc as usize)
    }

    /// The environment strings.
    pub fn envs(&self) -> impl Iterator<Item = &str> {
        self.strs()
            .skip(self.argc as usize)
            .take(self.envc as usize)
    }

    /// The bytes of the page, to copy into the task.
    pub fn as_bytes(&self) -> &[u8] {
        // SAFETY: Env is repr(C) plain data without padding-sensitive
        // invariants (integers and byte arrays); any byte view is valid.
        unsafe {
            core::slice::from_raw_parts(
                self as *const Env as *const u8,
                core::mem::size_of::<Env>(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    #[test]
    fn arguments_environment_and_caps_round_trip() {
        let mut e = Env::new();
        e.push_arg("rom/hello").unwrap();
        e.push_arg("-v").unwrap();
        e.push_env("HOME=/").unwrap();
        assert_eq!(e.push_arg("late"), Err(EnvError::NoRoom));
        e.add_cap("ram", 0x40).unwrap();
        e.add_cap("vbus", 0x41).unwrap();
        assert_eq!(e.add_cap("ram", 0x42), Err(EnvError::BadName));
        assert_eq!(e.add_cap("", 0x42), Err(EnvError::BadName));
        assert_eq!(
            e.add_cap("this_name_is_much_too_long", 0x42),
            Err(EnvError::BadName)
        );
        assert!(e.is_valid());
        assert_eq!(e.args().collect::<Vec<_>>(), ["rom/hello", "-v"]);
        assert_eq!(e.envs().collect::<Vec<_>>(), ["HOME=/"]);
        assert_eq!(e.cap("vbus"), Some(0x41));
        assert_eq!(e.cap("nope"), None);
        assert_eq!(e.named_caps().count(), 2);
    }

    #[test]
    fn strings_and_caps_are_bounded() {
        let mut e = Env::new();
        let long = "x".repeat(100);
        while e.push_arg(&long).is_ok() {}
        assert!(e.strings_len as usize <= STRINGS);
        let mut e = Env::new();
        assert_eq!(e.push_arg("nul\0inside"), Err(EnvError::NoRoom));
        for i in 0..MAX_CAPS {
            e.add_cap(&std::format!("c{i}"), i as u64).unwrap();
        }
        assert_eq!(e.add_cap("zz", 1), Err(EnvError::TooManyCaps));
    }
}

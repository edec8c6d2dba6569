//! io, the platform device manager: it owns the platform's devices and
//! gives each client (a driver, a virtual machine's uvmm) a virtual bus
//! with only the devices meant for it, as L4Re's io does.
//!
//! ```text
//! io [-v] CONFIG...            e.g. rom/io io.cfg vm1_hw.vbus
//! ```
//!
//! io runs its configuration files in order as Lua ([`config`]): `io.cfg`
//! describes the platform's devices with their MMIO ranges and interrupts,
//! the `*.vbus` files put some of them on virtual buses, each named after
//! a capability io was started with (`vm1_hw = vbus:svr()`). io then
//! serves each bus on that capability ([`service`], protocol
//! [`l4_ipc::vbus`]): its devices with names, hid and compatible strings
//! and resources, an MMIO range as a dataspace the client maps (io gets
//! the memory from its `sigma0` capability), an interrupt as an Irq bound
//! to the line through its `icu` capability.
//!
//! * [`model`]: platform devices, virtual buses and their checks;
//! * [`config`]: the `Io` Lua module over the model;
//! * [`service`]: the servers of buses and MMIO dataspaces over a
//!   [`service::Backend`];
//! * `target`: the backend of the real system (AArch64 musl builds only).

#![warn(missing_docs)]

pub mod config;
pub mod model;
pub mod service;

#[cfg(all(target_os = "linux", target_arch = "aarch64", target_env = "musl"))]
pub mod target;

/// io's allocator on the target, as ned's: nearly all its allocations at
/// start are the Lua state's, which musl's allocator served from dozens
/// of one-page mappings (each a system call and a page fault for the
/// runtime), with code of its own to run first.
#[cfg(all(target_os = "linux", target_arch = "aarch64", target_env = "musl"))]
#[global_allocator]
static HEAP: l4re::heap::ProgramHeap = l4re::heap::ProgramHeap::new();

pub use config::{Loader, load_all};
pub use model::{Config, ConfigError, Limits};

/// io's command line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// `-v`: print the virtual buses and their devices.
    pub verbose: bool,
    /// The configuration files, in order.
    pub files: Vec<String>,
}

/// The usage line.
pub const USAGE: &str = "usage: io [-v] CONFIG... (e.g. rom/io.cfg rom/vm1_hw.vbus)";

impl Options {
    /// Parses the arguments after the program name.
    pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Options, String> {
        use lexopt::prelude::*;
        let mut opts = Options::default();
        let mut p = lexopt::Parser::from_args(args);
        while let Some(arg) = p.next().map_err(|e| e.to_string())? {
            match arg {
                Short('v') | Long("verbose") => opts.verbose = true,
                Value(v) => opts
                    .files
                    .push(v.into_string().map_err(|_| "a file name is not UTF-8")?),
                other => return Err(other.unexpected().to_string()),
            }
        }
        if opts.files.is_empty() {
            return Err("no configuration file given".into());
        }
        Ok(opts)
    }
}

/// Reads and runs the configuration files.
pub fn load_files(
    files: &[String],
    limits: Limits,
    caps: Option<Vec<String>>,
) -> Result<Config, String> {
    let mut texts = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).map_err(|e| format!("cannot read '{f}': {e}"))?;
        texts.push((f.clone(), text));
    }
    load_all(limits, caps, &texts).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn command_line() {
        assert_eq!(
            Options::parse(strings(&["-v", "rom/io.cfg", "rom/a.vbus"])),
            Ok(Options {
                verbose: true,
                files: strings(&["rom/io.cfg", "rom/a.vbus"]),
            })
        );
        assert!(Options::parse(strings(&[])).is_err());
        assert!(Options::parse(strings(&["-x", "a"])).is_err());
    }

    #[test]
    fn missing_files_are_named() {
        let e = load_files(
            &strings(&["/nonexistent/io.cfg"]),
            Limits::qemu_virt(),
            None,
        )
        .unwrap_err();
        assert!(e.starts_with("cannot read '/nonexistent/io.cfg'"), "{e}");
    }
}

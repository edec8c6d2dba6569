//! Debian packages the commands need, installed on demand when running as root.
//!
//! Presence is checked by looking for one file or program of each package (no
//! process is started), so a warm run costs nothing.

use std::fmt;
use std::path::Path;
use std::process::Command;

use crate::error::{Context, Result, bail};

/// What a package is needed for; each command asks for the needs it has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Booting images.
    Qemu,
    /// Compiling C for `aarch64-unknown-linux-musl` (std userland crates, e.g. Lua
    /// inside mlua) through `tools/musl-gcc`.
    MuslC,
    /// Compiling `conf/*.dts` into device-tree blobs for guests.
    DeviceTree,
}

/// How to tell that a package is installed.
#[derive(Clone, Copy, Debug)]
enum Probe {
    /// A program found on `PATH`.
    Program(&'static str),
    /// A file the package ships.
    File(&'static str),
}

struct Package {
    /// Name for `apt-get install` (`name:arch` for a foreign architecture).
    name: &'static str,
    need: Need,
    probe: Probe,
}

/// Every Debian package the tool may install.
const PACKAGES: &[Package] = &[
    Package {
        name: "qemu-system-arm",
        need: Need::Qemu,
        probe: Probe::Program("qemu-system-aarch64"),
    },
    // The option ROM of the virt machine's default network card: QEMU refuses to
    // start without it (the package is only a recommendation of qemu-system-arm).
    Package {
        name: "ipxe-qemu",
        need: Need::Qemu,
        probe: Probe::File("/usr/lib/ipxe/qemu/efi-virtio.rom"),
    },
    Package {
        name: "gcc-aarch64-linux-gnu",
        need: Need::MuslC,
        probe: Probe::Program("aarch64-linux-gnu-gcc"),
    },
    Package {
        name: "musl-dev:arm64",
        need: Need::MuslC,
        probe: Probe::File("/usr/include/aarch64-linux-musl/stdio.h"),
    },
    Package {
        name: "device-tree-compiler",
        need: Need::DeviceTree,
        probe: Probe::Program("dtc"),
    },
];

impl Probe {
    fn present(self) -> bool {
        match self {
            Probe::File(path) => Path::new(path).exists(),
            Probe::Program(name) => std::env::var_os("PATH").is_some_and(|paths| {
                std::env::split_paths(&paths).any(|dir| dir.join(name).is_file())
            }),
        }
    }
}

/// Makes sure the packages for `needs` are installed: installs the missing ones
/// when running as root, otherwise prints the command to run and fails.
pub fn ensure(needs: &[Need]) -> Result<()> {
    let missing: Vec<&'static str> = PACKAGES
        .iter()
        .filter(|p| needs.contains(&p.need) && !p.probe.present())
        .map(|p| p.name)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let plan = install_plan(&missing, &foreign_architectures()?);
    run_as_root(
        &plan,
        &format!("missing Debian packages: {}", missing.join(" ")),
        &format!("installing {}", missing.join(" ")),
    )
}

/// Makes apt know the arm64 packages (for `apt-get download NAME:arm64`):
/// adds the architecture when dpkg lacks it and updates the index when
/// running as root, otherwise prints the commands and fails. `why` says
/// what needs it.
pub fn ensure_arm64_index(why: &str) -> Result<()> {
    let plan = index_plan(true, &foreign_architectures()?);
    run_as_root(
        &plan,
        &format!("{why} needs apt's arm64 package index"),
        "updating apt's package index with arm64",
    )
}

/// Runs `plan` when running as root (saying `doing` first), otherwise
/// fails with `problem` and the commands to run.
fn run_as_root(plan: &[Step], problem: &str, doing: &str) -> Result<()> {
    if !is_root()? {
        let commands: Vec<String> = plan.iter().map(Step::to_string).collect();
        bail!(
            "{problem}\nrun as root (or rerun `cargo xtask` as root, which does it):\n  {}",
            commands.join(" && ")
        );
    }
    let last = plan.last().map(Step::to_string).unwrap_or_default();
    eprintln!("xtask: {doing} ({last})");
    for step in plan {
        step.run()?;
    }
    Ok(())
}

/// One command of an installation.
#[derive(Debug, PartialEq)]
struct Step {
    argv: Vec<&'static str>,
    /// Run with `DEBIAN_FRONTEND=noninteractive` (no debconf questions).
    noninteractive: bool,
}

impl Step {
    fn new(argv: &[&'static str]) -> Self {
        Step {
            argv: argv.to_vec(),
            noninteractive: false,
        }
    }

    fn run(&self) -> Result<()> {
        eprintln!("xtask: running {self}");
        let mut cmd = Command::new(self.argv[0]);
        cmd.args(&self.argv[1..]);
        if self.noninteractive {
            cmd.env("DEBIAN_FRONTEND", "noninteractive");
        }
        let status = cmd
            .status()
            .context(|| format!("cannot run {}", self.argv[0]))?;
        if !status.success() {
            bail!("`{self}` failed with {status}");
        }
        Ok(())
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.noninteractive {
            f.write_str("DEBIAN_FRONTEND=noninteractive ")?;
        }
        f.write_str(&self.argv.join(" "))
    }
}

/// The commands installing `missing`, given the foreign architectures dpkg has.
fn install_plan(missing: &[&'static str], foreign: &[String]) -> Vec<Step> {
    let needs_arm64 = missing.iter().any(|p| p.ends_with(":arm64"));
    let mut plan = index_plan(needs_arm64, foreign);
    let mut install = Step::new(&["apt-get", "install", "-y", "--no-install-recommends"]);
    install.noninteractive = true;
    install.argv.extend(missing);
    plan.push(install);
    plan
}

/// Updating apt's index, first adding the arm64 architecture when
/// `needs_arm64` and dpkg lacks it.
fn index_plan(needs_arm64: bool, foreign: &[String]) -> Vec<Step> {
    let mut plan = Vec::new();
    if needs_arm64 && !foreign.iter().any(|a| a == "arm64") {
        plan.push(Step::new(&["dpkg", "--add-architecture", "arm64"]));
    }
    plan.push(Step::new(&["apt-get", "update"]));
    plan
}

fn foreign_architectures() -> Result<Vec<String>> {
    let Ok(output) = Command::new("dpkg")
        .arg("--print-foreign-architectures")
        .output()
    else {
        bail!("this is not a Debian system (no dpkg); install the packages by hand");
    };
    Ok(String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect())
}

/// Effective user id 0, read from /proc (no libc needed).
fn is_root() -> Result<bool> {
    let status = std::fs::read_to_string("/proc/self/status")
        .context(|| "reading /proc/self/status".to_string())?;
    Ok(status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        == Some("0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_adds_arm64_only_when_needed() {
        let text = |plan: Vec<Step>| plan.iter().map(Step::to_string).collect::<Vec<_>>();
        assert_eq!(
            text(install_plan(&["musl-dev:arm64"], &[])),
            [
                "dpkg --add-architecture arm64",
                "apt-get update",
                "DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends musl-dev:arm64"
            ]
        );
        assert_eq!(
            text(install_plan(&["musl-dev:arm64"], &["arm64".to_string()]))[0],
            "apt-get update"
        );
        assert_eq!(
            text(install_plan(&["ipxe-qemu", "qemu-system-arm"], &[])),
            [
                "apt-get update",
                "DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ipxe-qemu qemu-system-arm"
            ]
        );
    }

    #[test]
    fn probes_find_programs_and_files() {
        assert!(Probe::Program("sh").present());
        assert!(!Probe::Program("surely-no-such-program-xtask").present());
        assert!(Probe::File("/proc/self/status").present());
    }
}

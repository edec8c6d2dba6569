//! The target binaries: which crate is built for which target, and how.
//!
//! [`TARGET_CRATES`] is the one table of everything that runs on the AArch64
//! machine. `build`, `lint` and the image aliases all follow it, so a new
//! userland program is one line here.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Context, Result, bail};
use crate::packages::Need;
use crate::workspace::{Workspace, run};

/// Kernel and boot stage: soft-float, so kernel code never touches FP/SIMD state.
pub const KERNEL_TARGET: &str = "aarch64-unknown-none-softfloat";
/// no_std user programs (ktest, the vmbench guest).
pub const BARE_USER_TARGET: &str = "aarch64-unknown-none";
/// no_std servers every task talks to (moe, the in-task runtime):
/// soft-float like the kernel, so their threads never use FP/SIMD and the
/// kernel never loads, saves or traps for them (its lazy switching then
/// costs them nothing on every request they serve).
pub const SERVER_TARGET: &str = KERNEL_TARGET;
/// std user programs over the Linux-ABI personality.
pub const MUSL_TARGET: &str = "aarch64-unknown-linux-musl";

pub struct TargetCrate {
    /// Cargo package name.
    pub package: &'static str,
    pub target: &'static str,
    /// Binary name in `target/<target>/release/`.
    pub binary: &'static str,
    /// Name the modules list uses for it when that differs from the file name
    /// (`kernel fiasco` means our kernel).
    pub alias: Option<&'static str>,
}

pub const TARGET_CRATES: &[TargetCrate] = &[
    TargetCrate {
        package: "bootstrap-stage",
        target: KERNEL_TARGET,
        binary: "bootstrap",
        alias: Some(STAGE_ALIAS),
    },
    TargetCrate {
        package: "kernel",
        target: KERNEL_TARGET,
        binary: "kernel",
        alias: Some(KERNEL_ALIAS),
    },
    TargetCrate {
        package: "roottask",
        target: SERVER_TARGET,
        binary: "moe",
        alias: Some(ROOTTASK_ALIAS),
    },
    TargetCrate {
        package: "ktest",
        target: BARE_USER_TARGET,
        binary: "ktest",
        alias: Some("ktest"),
    },
    // The in-task runtime (`module l4re`): pager, region manager and Linux
    // personality of every task a loader starts.
    TargetCrate {
        package: "l4re",
        target: SERVER_TARGET,
        binary: "l4re",
        alias: Some("l4re"),
    },
    // The console multiplexer (`module cons`) and its test client.
    TargetCrate {
        package: "cons",
        target: MUSL_TARGET,
        binary: "cons",
        alias: None,
    },
    TargetCrate {
        package: "echoclient",
        target: MUSL_TARGET,
        binary: "echoclient",
        alias: None,
    },
    // The runtime's std test program (`module stdtest`).
    TargetCrate {
        package: "stdtest",
        target: MUSL_TARGET,
        binary: "stdtest",
        alias: None,
    },
    // The init task (`module ned`): runs the ned scripts (Lua, mlua).
    TargetCrate {
        package: "ned",
        target: MUSL_TARGET,
        binary: "ned",
        alias: None,
    },
    // The platform device manager (`module io`) and its test client.
    TargetCrate {
        package: "io",
        target: MUSL_TARGET,
        binary: "io",
        alias: None,
    },
    TargetCrate {
        package: "vbusclient",
        target: MUSL_TARGET,
        binary: "vbusclient",
        alias: None,
    },
    // A client of the switch's statistics interface.
    TargetCrate {
        package: "statsclient",
        target: MUSL_TARGET,
        binary: "statsclient",
        alias: None,
    },
    // The virtual machine monitor (`module uvmm`): one task per guest.
    TargetCrate {
        package: "uvmm",
        target: MUSL_TARGET,
        binary: "uvmm",
        alias: None,
    },
    // The guest `cargo xtask bench vm` times VM exits with (`module
    // vmbench`, loaded by uvmm as an ELF).
    TargetCrate {
        package: "vmbench",
        target: BARE_USER_TARGET,
        binary: "vmbench",
        alias: None,
    },
    // The virtio network switch (`module l4vio_net_p2p`, and under the
    // name of L4Re's full switch, `module l4vio_switch`: the same program,
    // which takes that one's options and port arguments).
    TargetCrate {
        package: "vnet",
        target: MUSL_TARGET,
        binary: "l4vio_net_p2p",
        alias: Some("l4vio_switch"),
    },
    // `module hello` of the `hello-ned` entry: prints `Hello World!`.
    TargetCrate {
        package: "hello",
        target: MUSL_TARGET,
        binary: "hello",
        alias: None,
    },
];

/// The alias of the boot stage, also the image's first part.
pub const STAGE_ALIAS: &str = "bootstrap";
pub const KERNEL_ALIAS: &str = "fiasco";
pub const ROOTTASK_ALIAS: &str = "moe";

impl TargetCrate {
    pub fn path(&self, ws: &Workspace) -> PathBuf {
        ws.release_dir(self.target).join(self.binary)
    }

    pub fn by_alias(alias: &str) -> &'static TargetCrate {
        TARGET_CRATES
            .iter()
            .find(|c| c.alias == Some(alias))
            .unwrap_or_else(|| panic!("no target crate with alias '{alias}' in TARGET_CRATES"))
    }
}

/// The table grouped by target (one cargo run per target), in table order.
pub fn by_target() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
    for c in TARGET_CRATES {
        match groups.iter_mut().find(|(t, _)| *t == c.target) {
            Some((_, packages)) => packages.push(c.package),
            None => groups.push((c.target, vec![c.package])),
        }
    }
    groups
}

/// `(alias, binary)` for the image builder.
pub fn aliases(ws: &Workspace) -> Vec<(String, PathBuf)> {
    TARGET_CRATES
        .iter()
        .filter_map(|c| c.alias.map(|a| (a.to_string(), c.path(ws))))
        .collect()
}

/// Debian packages that building the table needs.
pub fn needs(ws: &Workspace) -> Result<Vec<Need>> {
    let mut needs = Vec::new();
    if TARGET_CRATES.iter().any(|c| c.target == MUSL_TARGET) {
        needs.push(Need::MuslC);
    }
    if !device_tree_sources(ws)?.is_empty() {
        needs.push(Need::DeviceTree);
    }
    Ok(needs)
}

/// `cargo <subcommand> --release --target <target> -p ...` with the
/// environment the target needs.
pub fn cargo_for_target(
    ws: &Workspace,
    subcommand: &str,
    target: &str,
    packages: &[&str],
) -> Command {
    let mut cmd = ws.cargo();
    cmd.args([subcommand, "--release", "--target", target]);
    for p in packages {
        cmd.args(["-p", p]);
    }
    if target == MUSL_TARGET {
        // C code (e.g. Lua in mlua) through Debian's cross gcc and musl headers;
        // Rust links statically with rust-lld.
        cmd.env(
            "CC_aarch64_unknown_linux_musl",
            ws.root.join("tools").join("musl-gcc"),
        )
        .env("AR_aarch64_unknown_linux_musl", "aarch64-linux-gnu-ar")
        .env("CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER", "rust-lld");
    }
    cmd
}

/// Installs the Debian packages the build and `extra` need, then builds.
pub fn prepare(ws: &Workspace, extra: &[Need]) -> Result<()> {
    let mut needs = needs(ws)?;
    needs.extend_from_slice(extra);
    crate::packages::ensure(&needs)?;
    build(ws)
}

/// Builds every target binary and the guest device trees.
fn build(ws: &Workspace) -> Result<()> {
    ensure_rust_targets(ws)?;
    for (target, packages) in by_target() {
        eprintln!(
            "xtask: building {} ({target}, release)",
            packages.join(", ")
        );
        run(&mut cargo_for_target(ws, "build", target, &packages))?;
    }
    compile_device_trees(ws)
}

/// Installs the Rust standard libraries of the table's targets when missing
/// (rust-toolchain.toml lists them, but rustup adds them only on install).
pub fn ensure_rust_targets(ws: &Workspace) -> Result<()> {
    let output = Command::new("rustc")
        .args(["--print", "sysroot"])
        .current_dir(&ws.root)
        .output()
        .context(|| "cannot run rustc".to_string())?;
    if !output.status.success() {
        bail!(
            "`rustc --print sysroot` failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let sysroot = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    let missing: Vec<&str> = by_target()
        .into_iter()
        .map(|(target, _)| target)
        .filter(|t| !sysroot.join("lib/rustlib").join(t).exists())
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!(
        "xtask: installing Rust targets {} (rustup target add)",
        missing.join(" ")
    );
    let mut cmd = Command::new("rustup");
    cmd.arg("target")
        .arg("add")
        .args(&missing)
        .current_dir(&ws.root);
    run(&mut cmd)
}

/// `conf/*.dts`, sorted.
fn device_tree_sources(ws: &Workspace) -> Result<Vec<PathBuf>> {
    conf_files(ws, "dts")
}

/// `conf/*.<extension>`, sorted.
fn conf_files(ws: &Workspace, extension: &str) -> Result<Vec<PathBuf>> {
    let conf = ws.conf_dir();
    let Ok(entries) = std::fs::read_dir(&conf) else {
        return Ok(Vec::new());
    };
    let mut sources = Vec::new();
    for entry in entries {
        let path = entry
            .context(|| format!("reading {}", conf.display()))?
            .path();
        if path.extension().is_some_and(|e| e == extension) {
            sources.push(path);
        }
    }
    sources.sort();
    Ok(sources)
}

/// `conf/NAME.dts` -> `target/guest/NAME.dtb` with dtc, when out of date; the
/// guest directory is on the module search path.
pub fn compile_device_trees(ws: &Workspace) -> Result<()> {
    let sources = device_tree_sources(ws)?;
    if sources.is_empty() {
        return Ok(());
    }
    let out_dir = ws.guest_dir();
    std::fs::create_dir_all(&out_dir).context(|| format!("creating {}", out_dir.display()))?;
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    // Sources may `/include/` the `conf/*.dtsi` files: a change there counts too.
    let includes = conf_files(ws, "dtsi")?
        .iter()
        .map(|p| modified(p))
        .max()
        .flatten();
    for source in &sources {
        let blob = out_dir
            .join(source.file_stem().unwrap_or_default())
            .with_extension("dtb");
        // A missing blob (None) is older than any source.
        if modified(&blob) >= modified(source).max(includes) {
            continue;
        }
        eprintln!(
            "xtask: compiling device tree {} -> {}",
            ws.show(source),
            ws.show(&blob)
        );
        let mut cmd = Command::new("dtc");
        cmd.args(["-q", "-I", "dts", "-O", "dtb", "-o"])
            .arg(&blob)
            .arg(source);
        run(&mut cmd)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouped_by_target_in_table_order() {
        let groups = by_target();
        assert_eq!(
            groups[0],
            (
                KERNEL_TARGET,
                vec!["bootstrap-stage", "kernel", "roottask", "l4re"]
            )
        );
        assert_eq!(groups[1], (BARE_USER_TARGET, vec!["ktest", "vmbench"]));
        let total: usize = groups.iter().map(|(_, p)| p.len()).sum();
        assert_eq!(total, TARGET_CRATES.len());
    }

    #[test]
    fn aliases_name_the_boot_chain() {
        for alias in [STAGE_ALIAS, KERNEL_ALIAS, ROOTTASK_ALIAS] {
            TargetCrate::by_alias(alias);
        }
    }

    #[test]
    fn musl_builds_get_the_cross_c_environment() {
        let ws = Workspace {
            root: "/repo".into(),
            target_dir: "/repo/target".into(),
        };
        let cmd = cargo_for_target(&ws, "build", MUSL_TARGET, &["ned"]);
        let envs: Vec<_> = cmd.get_envs().map(|(k, _)| k.to_owned()).collect();
        assert!(envs.iter().any(|k| k == "CC_aarch64_unknown_linux_musl"));
        let args: Vec<_> = cmd.get_args().collect();
        assert_eq!(
            args,
            ["build", "--release", "--target", MUSL_TARGET, "-p", "ned"]
        );
        let cmd = cargo_for_target(&ws, "clippy", KERNEL_TARGET, &["kernel"]);
        assert_eq!(cmd.get_envs().count(), 0);
    }
}

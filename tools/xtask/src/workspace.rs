//! Where things are: the repository, cargo's target directory, images, scenarios.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{Context, Result, bail};
use crate::shell;

pub struct Workspace {
    /// The repository (workspace root).
    pub root: PathBuf,
    /// Cargo's target directory (`CARGO_TARGET_DIR` or `<root>/target`).
    pub target_dir: PathBuf,
}

impl Workspace {
    /// The workspace this xtask was compiled in (`tools/xtask` is two levels down).
    pub fn locate() -> Result<Self> {
        let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let Some(root) = manifest_dir.ancestors().nth(2) else {
            bail!("{}: no workspace root above it", manifest_dir.display());
        };
        let root = root.to_path_buf();
        let target_dir = match std::env::var_os("CARGO_TARGET_DIR") {
            Some(dir) => root.join(dir),
            None => root.join("target"),
        };
        Ok(Workspace { root, target_dir })
    }

    /// `target/<triple>/release`, where cargo puts the release binaries.
    pub fn release_dir(&self, target: &str) -> PathBuf {
        self.target_dir.join(target).join("release")
    }

    pub fn images_dir(&self) -> PathBuf {
        self.target_dir.join("images")
    }

    /// Host-built guest files (device-tree blobs, later kernels and ramdisks).
    pub fn guest_dir(&self) -> PathBuf {
        self.target_dir.join("guest")
    }

    pub fn conf_dir(&self) -> PathBuf {
        self.root.join("conf")
    }

    pub fn scenarios_dir(&self) -> PathBuf {
        self.root.join("tests").join("scenarios")
    }

    pub fn default_modules_list(&self) -> PathBuf {
        self.root.join("modules.list")
    }

    /// A `cargo` command in the workspace root (the cargo that runs this xtask).
    pub fn cargo(&self) -> Command {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(&self.root);
        cmd
    }

    /// A repository path as it is best shown: relative to the root when inside it.
    pub fn show<'a>(&self, path: &'a Path) -> std::path::Display<'a> {
        path.strip_prefix(&self.root).unwrap_or(path).display()
    }
}

/// Runs a command to completion with the terminal's stdio, failing on a non-zero exit.
pub fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .status()
        .context(|| format!("cannot start {}", cmd.get_program().to_string_lossy()))?;
    if !status.success() {
        bail!("`{}` failed with {status}", command_line(cmd));
    }
    Ok(())
}

/// The command as a line to show: the program's file name and the arguments
/// (not the environment).
pub fn command_line(cmd: &Command) -> String {
    let program = Path::new(cmd.get_program())
        .file_name()
        .unwrap_or_else(|| cmd.get_program());
    let words = std::iter::once(program)
        .chain(cmd.get_args())
        .map(OsStr::to_string_lossy);
    shell::join(words)
}

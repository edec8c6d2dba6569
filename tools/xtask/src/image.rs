//! modules.list entries: listing, choosing one, packing it into a bootable image
//! with the `bootstrap_builder` library.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use bootstrap_builder::modlist::{ModulesList, basename};
use bootstrap_builder::{BuildOptions, build_image};
use bootstrap_format::Kind;

use crate::cli::Vars;
use crate::error::{Context, Result, bail};
use crate::targets::{self, STAGE_ALIAS, TargetCrate};
use crate::workspace::Workspace;

/// Where modules come from: the modules list and the search path.
pub struct Modules<'a> {
    ws: &'a Workspace,
    list: PathBuf,
    /// `MODULE_SEARCH_PATH`, then `conf/`, then the build output directories.
    search_path: Vec<PathBuf>,
}

/// A packed image.
pub struct Image {
    pub path: PathBuf,
    pub size: u64,
    /// The packed modules: name and size.
    pub modules: Vec<(String, u64)>,
}

impl<'a> Modules<'a> {
    pub fn new(ws: &'a Workspace, vars: &Vars) -> Result<Self> {
        let absolute = |p: &Path| std::path::absolute(p).context(|| p.display().to_string());
        let list = match &vars.modules_list {
            Some(list) => absolute(list)?,
            None => ws.default_modules_list(),
        };
        let mut search_path = vars
            .module_search_path
            .iter()
            .map(|p| absolute(p))
            .collect::<Result<Vec<_>>>()?;
        search_path.push(ws.conf_dir());
        search_path.push(ws.release_dir(targets::MUSL_TARGET));
        search_path.push(ws.release_dir(targets::SERVER_TARGET));
        search_path.push(ws.release_dir(targets::BARE_USER_TARGET));
        search_path.push(ws.guest_dir());
        Ok(Modules {
            ws,
            list,
            search_path,
        })
    }

    /// The modules list file.
    pub fn list(&self) -> &Path {
        &self.list
    }

    /// Where modules are looked for, in order (without the list's own
    /// `search-path` lines).
    pub fn search_path(&self) -> &[PathBuf] {
        &self.search_path
    }

    /// Entry names in file order.
    pub fn entries(&self) -> Result<Vec<String>> {
        let list =
            ModulesList::load(&self.list).context(|| "reading the modules list".to_string())?;
        Ok(list.entries().map(str::to_string).collect())
    }

    /// The entry to boot: `E`, or one picked from a numbered menu on a terminal.
    pub fn choose_entry(&self, given: Option<&str>) -> Result<String> {
        let entries = self.entries()?;
        if let Some(entry) = given {
            if !entries.iter().any(|e| e == entry) {
                bail!(
                    "no entry '{entry}' in {} (entries: {})",
                    self.list.display(),
                    entries.join(", ")
                );
            }
            return Ok(entry.to_string());
        }
        if entries.is_empty() {
            bail!("{} has no entries", self.list.display());
        }
        eprintln!("entries in {}:", self.ws.show(&self.list));
        for (i, entry) in entries.iter().enumerate() {
            eprintln!("  {:>2}) {entry}", i + 1);
        }
        if !std::io::stdin().is_terminal() {
            bail!("no entry given: pass E=<entry> (no menu: stdin is not a terminal)");
        }
        eprint!("select an entry [1-{}]: ", entries.len());
        std::io::stderr().flush().ok();
        let mut answer = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut answer)
            .context(|| "reading the choice".to_string())?;
        let answer = answer.trim();
        match answer.parse::<usize>() {
            Ok(n) if (1..=entries.len()).contains(&n) => Ok(entries[n - 1].clone()),
            _ => bail!(
                "'{answer}' is not an entry number between 1 and {}",
                entries.len()
            ),
        }
    }

    /// The QEMU options the entry adds with `# qemu:` comments.
    pub fn qemu_options(&self, entry: &str) -> Result<Vec<String>> {
        let text = std::fs::read_to_string(&self.list)
            .context(|| format!("reading {}", self.list.display()))?;
        crate::qemu::entry_options(&text, entry).context(|| self.list.display().to_string())
    }

    /// The QEMU command line that boots `image` of `entry` with the
    /// console in `mode`: the machine, the entry's options, then `extra`
    /// (a scenario's) and `env_options` (the user's).
    pub fn qemu_arguments(
        &self,
        entry: &str,
        mode: crate::qemu::ConsoleMode,
        extra: &[String],
        env_options: &[String],
        image: &Path,
    ) -> Result<Vec<String>> {
        let entry_options = self.qemu_options(entry)?;
        Ok(crate::qemu::arguments(
            mode,
            &entry_options,
            extra,
            env_options,
            image,
        ))
    }

    /// Builds the guest files (`cargo xtask guest`) when the entry names one
    /// that no other directory of the search path has.
    fn ensure_guest_files(&self, entry: &str) -> Result<()> {
        let list =
            ModulesList::load(&self.list).context(|| "reading the modules list".to_string())?;
        let spec = list.entry(entry).context(|| format!("entry '{entry}'"))?;
        let guest_dir = self.ws.guest_dir();
        let elsewhere = |file: &str| {
            self.search_path
                .iter()
                .chain(list.search_path())
                .filter(|dir| **dir != guest_dir)
                .any(|dir| dir.join(file).is_file())
        };
        let needs_guest = spec
            .modules
            .iter()
            .filter(|m| !m.opts.shell && !m.opts.glob)
            .map(|m| basename(&m.file))
            .any(|file| crate::guest::makes(file) && !elsewhere(file));
        if needs_guest {
            crate::guest::ensure(self.ws)?;
        }
        Ok(())
    }

    /// Packs `entry` into `target/images/<entry>.img` (target binaries must be built).
    pub fn pack(&self, entry: &str) -> Result<Image> {
        self.pack_variant(entry, "", &[])
    }

    /// Packs `entry` with `roottask_options` before the root task's command
    /// line into `target/images/<entry><suffix>.img`.
    pub fn pack_variant(
        &self,
        entry: &str,
        suffix: &str,
        roottask_options: &[String],
    ) -> Result<Image> {
        let ws = self.ws;
        self.ensure_guest_files(entry)?;
        let images = ws.images_dir();
        std::fs::create_dir_all(&images).context(|| format!("creating {}", images.display()))?;
        let output = images.join(format!("{entry}{suffix}.img"));
        eprintln!(
            "xtask: packing image for entry '{entry}' -> {}",
            ws.show(&output)
        );
        let root = ws.root.display().to_string();
        let options = BuildOptions {
            modules_list: self.list.clone(),
            entry: entry.to_string(),
            search_path: self.search_path.clone(),
            aliases: targets::aliases(ws),
            stage_elf: TargetCrate::by_alias(STAGE_ALIAS).path(ws),
            shell_env: vec![
                ("SRC_BASE_ABS".to_string(), root.clone()),
                ("L4DIR".to_string(), root),
            ],
            roottask_options: roottask_options.to_vec(),
            output,
        };
        let report = build_image(&options).context(|| format!("packing entry '{entry}'"))?;
        for module in &report.modules {
            let kind = match module.kind {
                Kind::Kernel => "kernel",
                Kind::Roottask => "roottask",
                Kind::Module => "module",
            };
            eprintln!(
                "  {kind:<8} {:<20} {:>9} B  {}",
                module.name,
                module.size,
                ws.show(&module.source)
            );
        }
        for note in &report.notes {
            eprintln!("  note: {note}");
        }
        eprintln!(
            "  image {} B (boot stage {} B): {}",
            report.image_size,
            report.stage_size,
            ws.show(&report.image)
        );
        Ok(Image {
            path: report.image,
            size: report.image_size,
            modules: report
                .modules
                .iter()
                .map(|m| (m.name.clone(), m.size))
                .collect(),
        })
    }
}

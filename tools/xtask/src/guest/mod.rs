//! `cargo xtask guest`: the Linux guest for virtual machines, made from
//! Debian's arm64 packages.
//!
//! The kernel package (`linux-image-<release>`, whatever `linux-image-arm64`
//! depends on today) and `busybox-static` are downloaded once with
//! `apt-get download` into `target/guest/cache/`. From them this builds, in
//! `target/guest/` (on the module search path):
//!
//! - `Image.gz`: the kernel's arm64 Image in a gzip file of stored
//!   (uncompressed) blocks, as the VM entries name it. Inflating a deflated
//!   33 MB kernel costs uvmm 250 million emulated instructions (0.3-0.5 s
//!   of every VM's start under QEMU); copying stored blocks (and the
//!   ramdisk) costs 12 million. The boot image is 22 MB larger for it,
//!   which QEMU loads in about 25 ms (an ELF file: see `bootstrap/builder`).
//!   The kernel's bytes start [`KERNEL_DATA_AT`] into the file;
//! - `ramdisk-armv8.cpio.gz` and `ramdisk-armv8-64.cpio.gz` (the same
//!   bytes, under the names the VM entries use): busybox, the virtio kernel
//!   modules the kernel does not have built in, with their dependencies, an
//!   `/init` script (`init.sh`) that loads them and starts a shell, and the
//!   modules of [`ON_DEMAND_MODULES`] (VLANs), which only `modprobe` loads,
//!   with the `modules.dep` it needs.
//!
//! `cache/Image` keeps the uncompressed kernel for booting it natively
//! (`bench vm`). `cache/guest.txt` records what the files were made from; a
//! later run with the same packages and the same ramdisk recipe does
//! nothing. Removing `target/guest/cache` fetches the packages again.

mod cpio;
mod kmod;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};

use flate2::Compression;
use flate2::write::GzEncoder;

use crate::error::{Context, Error, Result, bail};
use crate::packages;
use crate::qemu::{self, ConsoleMode};
use crate::workspace::{Workspace, command_line, run};

/// The gzipped kernel, as the VM entries name it.
pub const IMAGE_GZ: &str = "Image.gz";
/// The ramdisk names of the VM entries (the same content).
pub const RAMDISKS: [&str; 2] = ["ramdisk-armv8.cpio.gz", "ramdisk-armv8-64.cpio.gz"];

/// The Debian package whose dependency names the current kernel package.
const KERNEL_META_PACKAGE: &str = "linux-image-arm64";
const BUSYBOX_PACKAGE: &str = "busybox-static";

/// The modules `/init` loads at every boot: the virtio transport of uvmm and
/// QEMU's virt machine, the console, block and network devices. Those the
/// kernel has built in are skipped; dependencies are added.
const BOOT_MODULES: &[&str] = &[
    "virtio",
    "virtio_ring",
    "virtio_mmio",
    "virtio_console",
    "virtio_blk",
    "virtio_net",
];

/// Modules the ramdisk carries but does not load at boot (every boot, and
/// the boot-time benchmarks, would pay for them): `modprobe 8021q` in the
/// guest loads them, or the kernel does when a VLAN link is added (it asks
/// modprobe for the alias `rtnl-link-vlan`). Dependencies are added, except
/// those built in or already among the boot modules.
const ON_DEMAND_MODULES: &[&str] = &["8021q"];

/// The ramdisk's `/init` and busybox init's table.
const INIT: &str = include_str!("init.sh");
const INITTAB: &str = include_str!("inittab");
/// The source of `/bin/svecheck` (assembled here with binutils).
const SVECHECK: &str = include_str!("svecheck.S");

/// The line `/init` prints just before the shell starts.
pub const READY_LINE: &str = "guest: ready, shell on ";

/// What `guest` made, and from what.
pub struct Guest {
    /// The kernel package, e.g. `linux-image-6.1.0-57-arm64_6.1.192-3_arm64.deb`.
    pub kernel_deb: String,
    pub busybox_deb: String,
    /// The uncompressed kernel (for booting natively).
    pub image: PathBuf,
    pub image_gz: PathBuf,
    pub ramdisks: Vec<PathBuf>,
    /// Modules `/init` loads at boot, in load order.
    pub modules: Vec<String>,
    /// Modules in the ramdisk that only `modprobe` loads (dependencies
    /// first).
    pub on_demand_modules: Vec<String>,
}

/// QEMU's CPU for native reference boots: `max` without what guests under
/// uvmm do not get (kernel/src/arch/aarch64/vcpu.rs, `id_register`), with
/// pointer authentication in QEMU's fast algorithm, as every entry runs
/// (`qemu::MACHINE`). The benchmarks give our side the same CPU (`bench`):
/// QEMU's cost per instruction depends a little on the features a CPU has.
pub const NATIVE_CPU: &str = "max,pauth-impdef=on,sme=off,pmu=off";

/// The kernel command line of a native boot.
const NATIVE_CMDLINE: &str = "console=ttyAMA0 rdinit=/init";

impl Guest {
    /// QEMU's arguments for booting the kernel and ramdisk natively (without
    /// our system) on the machine every entry runs on, with QEMU's own device
    /// tree and the piped console of the test harness.
    pub fn native_arguments(&self, env_options: &[String]) -> Vec<String> {
        self.native_arguments_with(env_options, "", &[])
    }

    /// [`Guest::native_arguments`] with `extra_cmdline` appended to the
    /// kernel command line (e.g. `ip=...`) and further QEMU options
    /// (e.g. a network device).
    pub fn native_arguments_with(
        &self,
        env_options: &[String],
        extra_cmdline: &str,
        extra_options: &[String],
    ) -> Vec<String> {
        let mut cmdline = NATIVE_CMDLINE.to_string();
        if !extra_cmdline.is_empty() {
            cmdline = format!("{cmdline} {extra_cmdline}");
        }
        // The CPU features uvmm's guests see (the kernel hides pointer
        // authentication, SVE, SME and the PMU from them): the same guest
        // work on both sides. With pointer authentication QEMU's emulation
        // of every signed return makes Linux boot about 2.5 times slower.
        let mut boot = vec![
            "-cpu".to_string(),
            NATIVE_CPU.to_string(),
            "-initrd".to_string(),
            self.ramdisks[0].display().to_string(),
            "-append".to_string(),
            cmdline,
        ];
        boot.extend_from_slice(extra_options);
        qemu::arguments(ConsoleMode::Piped, &[], &boot, env_options, &self.image)
    }
}

/// Whether a module file name is one this module makes.
pub fn makes(file: &str) -> bool {
    file == IMAGE_GZ || RAMDISKS.contains(&file)
}

/// Makes sure the guest files exist and are up to date, fetching the Debian
/// packages when the cache lacks them.
pub fn ensure(ws: &Workspace) -> Result<Guest> {
    let out = ws.guest_dir();
    let cache = out.join("cache");
    std::fs::create_dir_all(&cache).context(|| format!("creating {}", cache.display()))?;
    let kernel_deb = cached_or_fetch(ws, &cache, Fetch::Kernel)?;
    let busybox_deb = cached_or_fetch(ws, &cache, Fetch::Busybox)?;
    let record = Record {
        kernel_deb: file_name(&kernel_deb),
        busybox_deb: file_name(&busybox_deb),
        recipe: recipe_hash(),
        modules: Vec::new(),
        on_demand: Vec::new(),
    };
    let guest = |modules: Vec<String>, on_demand_modules: Vec<String>| Guest {
        kernel_deb: record.kernel_deb.clone(),
        busybox_deb: record.busybox_deb.clone(),
        image: cache.join("Image"),
        image_gz: out.join(IMAGE_GZ),
        ramdisks: RAMDISKS.iter().map(|r| out.join(r)).collect(),
        modules,
        on_demand_modules,
    };
    let record_path = cache.join("guest.txt");
    if let Ok(text) = std::fs::read_to_string(&record_path)
        && let Some(done) = Record::parse(&text)
        && done.same_inputs(&record)
    {
        let g = guest(done.modules, done.on_demand);
        let all_there = [&g.image, &g.image_gz]
            .into_iter()
            .chain(&g.ramdisks)
            .all(|p| p.is_file());
        if all_there {
            return Ok(g);
        }
    }

    let kernel = read_kernel_package(ws, &kernel_deb)?;
    let image = cache.join("Image");
    write_file(&image, &kernel.image)?;
    eprintln!(
        "xtask: storing the kernel Image ({} B) in gzip's stored blocks -> {}",
        kernel.image.len(),
        ws.show(&out.join(IMAGE_GZ))
    );
    write_file(&out.join(IMAGE_GZ), &stored_kernel(&kernel.image)?)?;

    let busybox = read_busybox(ws, &busybox_deb)?;
    let svecheck = svecheck(ws, &cache)?;
    let names = |list: &[(String, Vec<u8>)]| -> Vec<String> {
        list.iter().map(|(n, _)| n.clone()).collect()
    };
    let order = names(&kernel.modules.boot);
    let on_demand = names(&kernel.modules.on_demand);
    eprintln!(
        "xtask: building the ramdisk: busybox, /init, modules {} (at boot), {} (on demand), \
         modules.dep for /lib/modules/{}",
        order.join(" "),
        on_demand.join(" "),
        kernel.modules.release
    );
    let ramdisk = gzip(
        &ramdisk(&busybox, &svecheck, &kernel.modules)?,
        Compression::default(),
    )?;
    for name in RAMDISKS {
        let path = out.join(name);
        eprintln!("xtask: writing {} ({} B)", ws.show(&path), ramdisk.len());
        write_file(&path, &ramdisk)?;
    }
    let done = guest(order, on_demand);
    let record = Record {
        modules: done.modules.clone(),
        on_demand: done.on_demand_modules.clone(),
        ..record
    };
    write_file(&record_path, record.to_string().as_bytes())?;
    Ok(done)
}

/// `cargo xtask guest`: [`ensure`], then what there is.
pub fn command(ws: &Workspace) -> Result<()> {
    let g = ensure(ws)?;
    println!("guest kernel:  {}", g.kernel_deb);
    println!("guest busybox: {}", g.busybox_deb);
    println!("modules at boot (load order): {}", g.modules.join(" "));
    println!(
        "modules on demand (modprobe): {}",
        g.on_demand_modules.join(" ")
    );
    for path in [&g.image_gz].into_iter().chain(&g.ramdisks) {
        let size = std::fs::metadata(path)
            .context(|| path.display().to_string())?
            .len();
        println!("  {size:>10} B  {}", ws.show(path));
    }
    Ok(())
}

/// The two packages.
#[derive(Clone, Copy)]
enum Fetch {
    Kernel,
    Busybox,
}

/// The package's `.deb` in the cache, downloaded when missing.
fn cached_or_fetch(ws: &Workspace, cache: &Path, what: Fetch) -> Result<PathBuf> {
    let prefix = match what {
        Fetch::Kernel => "linux-image-",
        Fetch::Busybox => "busybox-static_",
    };
    if let Some(deb) = find_deb(cache, prefix)? {
        return Ok(deb);
    }
    let package = match what {
        Fetch::Kernel => kernel_package()?,
        Fetch::Busybox => BUSYBOX_PACKAGE.to_string(),
    };
    let label = match what {
        Fetch::Kernel => "kernel",
        Fetch::Busybox => "busybox",
    };
    let mut download = Command::new("apt-get");
    download
        .args(["download", &format!("{package}:arm64")])
        .current_dir(cache);
    eprintln!(
        "xtask: fetching Debian arm64 {label} {package} into {} ({})",
        ws.show(cache),
        command_line(&download)
    );
    run(&mut download)?;
    find_deb(cache, prefix)?.ok_or_else(|| {
        Error::new(format!(
            "`apt-get download {package}:arm64` left no {prefix}*_arm64.deb in {}",
            cache.display()
        ))
    })
}

/// The newest (by name) `<prefix>*_arm64.deb` in `dir`.
fn find_deb(dir: &Path, prefix: &str) -> Result<Option<PathBuf>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).context(|| format!("reading {}", dir.display()))? {
        let path = entry.context(|| dir.display().to_string())?.path();
        let name = file_name(&path);
        if name.starts_with(prefix) && name.ends_with("_arm64.deb") {
            found.push(path);
        }
    }
    found.sort();
    Ok(found.pop())
}

/// The kernel package `linux-image-arm64:arm64` depends on now, e.g.
/// `linux-image-6.1.0-57-arm64`; makes apt know arm64 packages first when
/// it does not.
fn kernel_package() -> Result<String> {
    let query = || -> Result<Option<String>> {
        let output = Command::new("apt-cache")
            .args(["depends", &format!("{KERNEL_META_PACKAGE}:arm64")])
            .stderr(Stdio::null())
            .output()
            .context(|| "cannot run apt-cache (is this Debian?)".to_string())?;
        Ok(kernel_dependency(&String::from_utf8_lossy(&output.stdout)))
    };
    if let Some(package) = query()? {
        return Ok(package);
    }
    packages::ensure_arm64_index("fetching the guest kernel")?;
    query()?.ok_or_else(|| {
        Error::new(format!(
            "`apt-cache depends {KERNEL_META_PACKAGE}:arm64` names no linux-image package"
        ))
    })
}

/// The `Depends: linux-image-...` package in `apt-cache depends` output.
fn kernel_dependency(apt_cache: &str) -> Option<String> {
    apt_cache.lines().find_map(|line| {
        let dep = line.trim().strip_prefix("Depends:")?.trim();
        let dep = dep.strip_suffix(":arm64").unwrap_or(dep);
        dep.starts_with("linux-image-").then(|| dep.to_string())
    })
}

/// What the ramdisk and Image need from the kernel package.
struct KernelPackage {
    image: Vec<u8>,
    modules: RamdiskModules,
}

/// The kernel modules of the ramdisk, all in `/lib/modules/<name>.ko`, and
/// the index files busybox's modprobe reads.
struct RamdiskModules {
    /// The kernel's release (`uname -r`, e.g. `6.1.0-57-arm64`): modprobe
    /// looks in `/lib/modules/<release>/`.
    release: String,
    /// (name, uncompressed .ko) that `/init` loads, in load order.
    boot: Vec<(String, Vec<u8>)>,
    /// (name, uncompressed .ko) that only modprobe loads, dependencies
    /// first.
    on_demand: Vec<(String, Vec<u8>)>,
    /// The texts of `modules.dep` and `modules.alias` for every module of
    /// the ramdisk (see [`kmod`]), and the package's `modules.builtin`.
    dep: String,
    alias: String,
    builtin: String,
}

/// Reads the kernel package in two passes over its files: first the Image,
/// `modules.builtin` and every module's dependencies and aliases, then the
/// modules the ramdisk carries.
fn read_kernel_package(ws: &Workspace, deb: &Path) -> Result<KernelPackage> {
    eprintln!(
        "xtask: reading the kernel and module dependencies from {}",
        ws.show(deb)
    );
    let mut image = None;
    let mut builtin = Vec::new();
    let mut builtin_text = String::new();
    let mut known = BTreeMap::new();
    let mut aliases = BTreeMap::new();
    let mut files = BTreeMap::new();
    let mut releases = BTreeSet::new();
    each_file(deb, |path, data| {
        let shown = path.display().to_string();
        let name = file_name(path);
        if let Some(release) = module_release(path) {
            releases.insert(release);
        }
        if path.starts_with("boot") && name.starts_with("vmlinuz-") {
            image = Some(read_all(&shown, data)?);
        } else if is_module_tree(path) && name == "modules.builtin" {
            builtin_text = String::from_utf8_lossy(&read_all(&shown, data)?).into_owned();
            builtin = kmod::builtin_names(&builtin_text);
        } else if is_module_tree(path) && kmod::name_of_file(&name).is_some() {
            let bytes = module_bytes(&shown, data)?;
            let info = kmod::modinfo(&shown, &bytes)?;
            files.insert(info.name.clone(), path.to_path_buf());
            aliases.insert(info.name.clone(), info.aliases);
            known.insert(info.name, info.depends);
        }
        Ok(())
    })?;
    let Some(image) = image else {
        bail!("{}: no /boot/vmlinuz-* in the package", deb.display());
    };
    if image.get(56..60) != Some(b"ARM\x64".as_slice()) {
        bail!(
            "{}: /boot/vmlinuz-* is not an uncompressed arm64 Image",
            deb.display()
        );
    }
    let release = match releases.into_iter().collect::<Vec<_>>().as_slice() {
        [one] => one.clone(),
        [] => bail!(
            "{}: no lib/modules/<release>/ in the package",
            deb.display()
        ),
        many => bail!(
            "{}: modules of several kernel releases: {}",
            deb.display(),
            many.join(" ")
        ),
    };
    let (order, on_demand) = module_lists(BOOT_MODULES, ON_DEMAND_MODULES, &known, &builtin)?;
    let all: Vec<String> = order.iter().chain(&on_demand).cloned().collect();
    let dep = kmod::modules_dep(&all, &known, &builtin)?;
    let alias = kmod::modules_alias(&all, &aliases);

    eprintln!(
        "xtask: extracting modules {} and, for modprobe, {}",
        order.join(" "),
        on_demand.join(" ")
    );
    // path in the package -> name, for the modules of the ramdisk
    let wanted: BTreeMap<&PathBuf, &String> = all
        .iter()
        .filter_map(|name| Some((files.get(name)?, name)))
        .collect();
    let mut modules: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    each_file(deb, |path, data| {
        if let Some(&name) = wanted.get(&path.to_path_buf()) {
            let bytes = module_bytes(&path.display().to_string(), data)?;
            modules.insert(name.clone(), bytes);
        }
        Ok(())
    })?;
    let mut take = |names: Vec<String>| {
        names
            .into_iter()
            .map(|name| {
                let bytes = modules.remove(&name).ok_or_else(|| {
                    Error::new(format!("{}: module {name} vanished", deb.display()))
                })?;
                Ok((name, bytes))
            })
            .collect::<Result<Vec<_>>>()
    };
    let modules = RamdiskModules {
        release,
        boot: take(order)?,
        on_demand: take(on_demand)?,
        dep,
        alias,
        builtin: builtin_text,
    };
    Ok(KernelPackage { image, modules })
}

/// The modules `/init` loads (`boot` with dependencies, in load order) and
/// those only modprobe loads (`on_demand` with the dependencies that are
/// neither built in nor among the first, dependencies first).
fn module_lists(
    boot: &[&str],
    on_demand: &[&str],
    known: &BTreeMap<String, Vec<String>>,
    builtin: &[String],
) -> Result<(Vec<String>, Vec<String>)> {
    let order = kmod::load_order(boot, known, builtin)?;
    let present: Vec<String> = builtin.iter().chain(&order).cloned().collect();
    let later = kmod::load_order(on_demand, known, &present)?;
    Ok((order, later))
}

/// `lib/modules/...` or `usr/lib/modules/...`.
fn is_module_tree(path: &Path) -> bool {
    path.starts_with("lib/modules") || path.starts_with("usr/lib/modules")
}

/// The kernel release of a file in the module tree: `6.1.0-57-arm64` for
/// `lib/modules/6.1.0-57-arm64/kernel/net/8021q/8021q.ko`.
fn module_release(path: &Path) -> Option<String> {
    let rest = path
        .strip_prefix("lib/modules")
        .or_else(|_| path.strip_prefix("usr/lib/modules"))
        .ok()?;
    let mut parts = rest.components();
    let Some(Component::Normal(release)) = parts.next() else {
        return None;
    };
    // A file inside the directory, not a file named like one.
    parts.next()?;
    Some(release.to_string_lossy().into_owned())
}

/// A module file, uncompressed (`.ko.xz` through lzma-rs).
fn module_bytes(shown: &str, data: &mut dyn Read) -> Result<Vec<u8>> {
    if !shown.ends_with(".xz") {
        return read_all(shown, data);
    }
    let mut input = std::io::BufReader::new(data);
    let mut bytes = Vec::new();
    lzma_rs::xz_decompress(&mut input, &mut bytes).context(|| format!("{shown}: xz"))?;
    Ok(bytes)
}

/// The busybox binary of the busybox-static package.
fn read_busybox(ws: &Workspace, deb: &Path) -> Result<Vec<u8>> {
    eprintln!("xtask: reading busybox from {}", ws.show(deb));
    let mut busybox = None;
    each_file(deb, |path, data| {
        if file_name(path) == "busybox" && path.parent().is_some_and(|p| p.ends_with("bin")) {
            busybox = Some(read_all(&path.display().to_string(), data)?);
        }
        Ok(())
    })?;
    busybox.ok_or_else(|| Error::new(format!("{}: no bin/busybox in it", deb.display())))
}

/// Calls `each(path, contents)` for every regular file of a `.deb`'s data
/// (paths relative, without `./`), read through `dpkg-deb --fsys-tarfile`.
fn each_file(deb: &Path, mut each: impl FnMut(&Path, &mut dyn Read) -> Result<()>) -> Result<()> {
    let mut child = Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(deb)
        .stdout(Stdio::piped())
        .spawn()
        .context(|| "cannot run dpkg-deb".to_string())?;
    let stdout = child.stdout.take().expect("piped stdout");
    let walked = (|| -> Result<()> {
        let shown = || deb.display().to_string();
        let mut archive = tar::Archive::new(stdout);
        for entry in archive.entries().context(shown)? {
            let mut entry = entry.context(shown)?;
            if !entry.header().entry_type().is_file() {
                continue;
            }
            let path = entry.path().context(shown)?;
            let path: PathBuf = path
                .components()
                .filter(|c| matches!(c, Component::Normal(_)))
                .collect();
            each(&path, &mut entry)?;
        }
        Ok(())
    })();
    if walked.is_err() {
        child.kill().ok();
    }
    let status = child
        .wait()
        .context(|| "waiting for dpkg-deb".to_string())?;
    walked?;
    if !status.success() {
        bail!(
            "`dpkg-deb --fsys-tarfile {}` failed with {status}",
            deb.display()
        );
    }
    Ok(())
}

/// `/bin/svecheck` ([`SVECHECK`]) assembled and linked with the aarch64
/// binutils that come with gcc-aarch64-linux-gnu, in `dir`.
fn svecheck(ws: &Workspace, dir: &Path) -> Result<Vec<u8>> {
    packages::ensure(&[packages::Need::MuslC])?;
    let source = dir.join("svecheck.S");
    let object = dir.join("svecheck.o");
    let program = dir.join("svecheck");
    eprintln!(
        "xtask: assembling the guest's SVE check -> {}",
        ws.show(&program)
    );
    write_file(&source, SVECHECK.as_bytes())?;
    let mut assemble = Command::new("aarch64-linux-gnu-as");
    assemble.arg(&source).arg("-o").arg(&object);
    run(&mut assemble)?;
    let mut link = Command::new("aarch64-linux-gnu-ld");
    link.args(["-static", "-e", "_start", "-o"])
        .arg(&program)
        .arg(&object);
    run(&mut link)?;
    std::fs::read(&program).context(|| format!("reading {}", program.display()))
}

/// The ramdisk's cpio archive (uncompressed).
///
/// All modules lie in `/lib/modules/<name>.ko`; `/lib/modules/load-order`
/// lists those `/init` loads. Busybox's modprobe looks in
/// `/lib/modules/<release>/` (`uname -r`), which is a link to
/// `/lib/modules` itself: one flat directory serves both, and the paths
/// the boot script and the test scenarios use (`/lib/modules/virtio_net.ko`)
/// stay as they are. `modules.dep` there is mandatory for modprobe;
/// `modules.alias` lets the kernel's requests by alias load a module and
/// `modules.builtin` (the package's `kernel/.../<name>.ko` lines; busybox
/// goes by the name) makes `modprobe <built-in module>` succeed, as it does
/// with a full module tree.
fn ramdisk(busybox: &[u8], svecheck: &[u8], modules: &RamdiskModules) -> Result<Vec<u8>> {
    let mut a = cpio::Archive::new();
    for dir in [
        "bin",
        "dev",
        "etc",
        "lib",
        "lib/modules",
        "mnt",
        "proc",
        "root",
        "run",
        "sbin",
        "sys",
        "usr",
        "usr/bin",
        "usr/sbin",
    ] {
        a.dir(dir, 0o755)?;
    }
    a.dir("tmp", 0o1777)?;
    // The kernel opens it for /init before devtmpfs is mounted.
    a.char_device("dev/console", 0o600, 5, 1)?;
    a.file("bin/busybox", 0o755, busybox)?;
    a.symlink("bin/sh", "busybox")?;
    a.file("bin/svecheck", 0o755, svecheck)?;
    a.file("init", 0o755, INIT.as_bytes())?;
    a.file("etc/inittab", 0o644, INITTAB.as_bytes())?;
    for (name, bytes) in modules.boot.iter().chain(&modules.on_demand) {
        a.file(
            &format!("lib/modules/{}", kmod::file_of(name)),
            0o644,
            bytes,
        )?;
    }
    let order: String = modules.boot.iter().map(|(n, _)| format!("{n}\n")).collect();
    a.file("lib/modules/load-order", 0o644, order.as_bytes())?;
    a.file("lib/modules/modules.dep", 0o644, modules.dep.as_bytes())?;
    a.file("lib/modules/modules.alias", 0o644, modules.alias.as_bytes())?;
    a.file(
        "lib/modules/modules.builtin",
        0o644,
        modules.builtin.as_bytes(),
    )?;
    let release = &modules.release;
    if release.is_empty() || release.contains('/') || release.starts_with('.') {
        bail!("kernel release {release:?} cannot name a directory");
    }
    a.symlink(&format!("lib/modules/{release}"), ".")?;
    Ok(a.finish())
}

/// What the guest files were made from (`cache/guest.txt`).
#[derive(Debug, PartialEq)]
struct Record {
    kernel_deb: String,
    busybox_deb: String,
    /// [`recipe_hash`] of the tool that made them.
    recipe: String,
    /// The modules loaded at boot, in load order.
    modules: Vec<String>,
    /// The modules only modprobe loads.
    on_demand: Vec<String>,
}

impl Record {
    fn same_inputs(&self, other: &Record) -> bool {
        (&self.kernel_deb, &self.busybox_deb, &self.recipe)
            == (&other.kernel_deb, &other.busybox_deb, &other.recipe)
    }

    fn parse(text: &str) -> Option<Record> {
        let field = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
                .map(str::to_string)
        };
        let list = |key: &str| -> Option<Vec<String>> {
            Some(field(key)?.split_whitespace().map(str::to_string).collect())
        };
        Some(Record {
            kernel_deb: field("kernel")?,
            busybox_deb: field("busybox")?,
            recipe: field("recipe")?,
            modules: list("modules")?,
            on_demand: list("on_demand")?,
        })
    }
}

impl std::fmt::Display for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "kernel {}", self.kernel_deb)?;
        writeln!(f, "busybox {}", self.busybox_deb)?;
        writeln!(f, "recipe {}", self.recipe)?;
        writeln!(f, "modules {}", self.modules.join(" "))?;
        writeln!(f, "on_demand {}", self.on_demand.join(" "))
    }
}

/// A fingerprint of how the files are made (init script, inittab, module
/// lists, ramdisk layout version): FNV-1a, 64 bits.
fn recipe_hash() -> String {
    /// Raise when the ramdisk's layout (or how the kernel is stored)
    /// changes in code. 3: on-demand modules, modprobe's index files and
    /// the `/lib/modules/<release>` link; 5: `/bin/svecheck`.
    const LAYOUT: &str = "layout 5";
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in [
        LAYOUT,
        INIT,
        INITTAB,
        SVECHECK,
        &BOOT_MODULES.join(" "),
        &ON_DEMAND_MODULES.join(" "),
    ] {
        for byte in part.bytes().chain([0]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

/// Where the kernel's bytes start in `Image.gz`: one and a half pages
/// into the file.
///
/// uvmm copies them from the boot module (mapped in its address space at
/// a 2 MiB boundary, so that it takes 2 MiB mappings) into guest RAM
/// (also at a 2 MiB boundary). QEMU's software TLB is direct-mapped by
/// virtual page number: with the data at the file's start, each source
/// page and its destination page take the same TLB entry, and the copy
/// swaps them in and out of the victim TLB every few loads and stores
/// (about 30 ms of the 100 ms the copy of a 33 MB kernel takes). With the
/// data 1.5 pages on (the stored blocks' headers add 5 bytes per 64 KiB,
/// 2.6 KiB over the kernel), the two are 1 or 2 pages apart all along.
pub const KERNEL_DATA_AT: usize = 4096 + 2048;

/// The gzip header (10 bytes) and the first stored block's (5 bytes).
const GZIP_OVERHEAD: usize = 15;

/// `image` in a gzip file of stored (uncompressed) blocks whose data
/// starts [`KERNEL_DATA_AT`] bytes into the file: the header carries a
/// comment (`FCOMMENT`) long enough, saying why.
fn stored_kernel(image: &[u8]) -> Result<Vec<u8>> {
    let mut comment = b"The kernel's bytes start 6 KiB into this file: see KERNEL_DATA_AT in \
                        tools/xtask/src/guest/mod.rs."
        .to_vec();
    // The comment's NUL ends the header.
    comment.resize(KERNEL_DATA_AT - GZIP_OVERHEAD - 1, b' ');
    let mut encoder = flate2::GzBuilder::new()
        .comment(comment)
        .write(Vec::new(), Compression::none());
    encoder.write_all(image).context(|| "gzip".to_string())?;
    encoder.finish().context(|| "gzip".to_string())
}

fn gzip(data: &[u8], level: Compression) -> Result<Vec<u8>> {
    let mut encoder = GzEncoder::new(Vec::new(), level);
    encoder.write_all(data).context(|| "gzip".to_string())?;
    encoder.finish().context(|| "gzip".to_string())
}

fn read_all(shown: &str, data: &mut dyn Read) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    data.read_to_end(&mut bytes).context(|| shown.to_string())?;
    Ok(bytes)
}

/// Writes through a temporary file, so an interrupted run leaves no half file.
fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("part");
    std::fs::write(&tmp, bytes).context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).context(|| format!("renaming to {}", path.display()))
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_dependency_of_apt_cache() {
        let out = "linux-image-arm64:arm64\n  Depends: linux-image-6.1.0-57-arm64:arm64\n";
        assert_eq!(
            kernel_dependency(out).as_deref(),
            Some("linux-image-6.1.0-57-arm64")
        );
        assert_eq!(kernel_dependency("N: Unable to locate package\n"), None);
        assert_eq!(
            kernel_dependency(
                "x\n  Depends: initramfs-tools\n  Depends: linux-image-6.12.1-arm64\n"
            )
            .as_deref(),
            Some("linux-image-6.12.1-arm64")
        );
    }

    #[test]
    fn record_round_trip() {
        let r = Record {
            kernel_deb: "linux-image-6.1.0-57-arm64_6.1.192-3_arm64.deb".into(),
            busybox_deb: "busybox-static_1%3a1.35.0-4_arm64.deb".into(),
            recipe: recipe_hash(),
            modules: vec!["virtio_mmio".into(), "failover".into()],
            on_demand: vec!["mrp".into(), "8021q".into()],
        };
        let parsed = Record::parse(&r.to_string()).unwrap();
        assert_eq!(parsed, r);
        assert!(Record::parse("kernel x\n").is_none());
        let other = Record {
            recipe: "0".into(),
            ..Record::parse(&r.to_string()).unwrap()
        };
        assert!(!other.same_inputs(&r));
        // A record of an older tool (no on-demand list) means a rebuild.
        let old = "kernel k\nbusybox b\nrecipe r\nmodules virtio_mmio\n";
        assert!(Record::parse(old).is_none());
        let none = Record {
            on_demand: Vec::new(),
            ..Record::parse(&r.to_string()).unwrap()
        };
        assert_eq!(Record::parse(&none.to_string()).unwrap(), none);
    }

    #[test]
    fn on_demand_modules_get_their_own_dependencies_only() {
        let known: BTreeMap<String, Vec<String>> = [
            ("virtio_mmio", &[][..]),
            ("virtio_net", &["net_failover", "virtio_ring"]),
            ("net_failover", &["failover"]),
            ("failover", &[]),
            ("virtio_ring", &[]),
            ("8021q", &["mrp", "garp"]),
            ("mrp", &[]),
            ("garp", &["stp", "llc"]),
            ("stp", &["llc"]),
            ("llc", &[]),
        ]
        .into_iter()
        .map(|(n, d)| (n.to_string(), d.iter().map(|d| d.to_string()).collect()))
        .collect();
        let builtin = vec!["virtio_ring".to_string()];
        // failover is wanted on demand too, and virtio_ring: one is loaded at
        // boot anyway, the other built in; neither is carried twice.
        let (boot, later) = module_lists(
            &["virtio_mmio", "virtio_net"],
            &["failover", "8021q", "virtio_ring"],
            &known,
            &builtin,
        )
        .unwrap();
        assert_eq!(
            boot,
            ["virtio_mmio", "failover", "net_failover", "virtio_net"]
        );
        assert_eq!(later, ["mrp", "llc", "stp", "garp", "8021q"]);
        let err = module_lists(&["virtio_mmio"], &["vlan"], &known, &builtin)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no module vlan"), "{err}");
    }

    #[test]
    fn release_of_module_tree_paths() {
        let release = |p: &str| module_release(Path::new(p));
        assert_eq!(
            release("lib/modules/6.1.0-57-arm64/kernel/net/8021q/8021q.ko").as_deref(),
            Some("6.1.0-57-arm64")
        );
        assert_eq!(
            release("usr/lib/modules/6.12.1-arm64/modules.builtin").as_deref(),
            Some("6.12.1-arm64")
        );
        assert_eq!(release("lib/modules/stray-file"), None);
        assert_eq!(release("boot/vmlinuz-6.1.0-57-arm64"), None);
    }

    #[test]
    fn ramdisk_has_init_busybox_and_modules_in_order() {
        let modules = RamdiskModules {
            release: "6.1.0-57-arm64".into(),
            boot: vec![
                ("failover".to_string(), b"f".to_vec()),
                ("net_failover".to_string(), b"n".to_vec()),
            ],
            on_demand: vec![
                ("llc".to_string(), b"l".to_vec()),
                ("8021q".to_string(), b"q".to_vec()),
            ],
            dep: "failover.ko:\nnet_failover.ko: failover.ko\nllc.ko:\n8021q.ko: llc.ko\n".into(),
            alias: "alias rtnl-link-vlan 8021q\n".into(),
            builtin: "kernel/drivers/virtio/virtio.ko\n".into(),
        };
        let bytes = ramdisk(b"BB", b"SVE", &modules).unwrap();
        let members = cpio::members(&bytes);
        let member = |name: &str| {
            members
                .iter()
                .find(|m| m.0 == name)
                .unwrap_or_else(|| panic!("no {name} in {members:?}"))
        };
        let text = |name: &str| String::from_utf8(member(name).3.clone()).unwrap();
        for name in ["init", "bin/busybox", "dev/console", "etc/inittab"] {
            member(name);
        }
        let sve = member("bin/svecheck");
        assert_eq!((sve.1, sve.3.as_slice()), (0o100755, b"SVE".as_slice()));
        assert_eq!(member("bin/sh").3, b"busybox");
        assert_eq!(text("init"), INIT);
        // Every module in one directory, whether loaded at boot or not.
        for (name, data) in [
            ("failover", "f"),
            ("net_failover", "n"),
            ("llc", "l"),
            ("8021q", "q"),
        ] {
            let m = member(&format!("lib/modules/{name}.ko"));
            assert_eq!((m.1, m.3.as_slice()), (0o100644, data.as_bytes()));
        }
        // /init loads only the boot modules.
        assert_eq!(text("lib/modules/load-order"), "failover\nnet_failover\n");
        assert_eq!(text("lib/modules/modules.dep"), modules.dep);
        assert_eq!(text("lib/modules/modules.alias"), modules.alias);
        assert_eq!(text("lib/modules/modules.builtin"), modules.builtin);
        // modprobe's /lib/modules/`uname -r` is that directory.
        let link = member("lib/modules/6.1.0-57-arm64");
        assert_eq!((link.1, link.3.as_slice()), (0o120777, b".".as_slice()));
        // Directories come before what is in them.
        let at = |name: &str| members.iter().position(|m| m.0 == name).unwrap();
        assert!(at("lib/modules") < at("lib/modules/8021q.ko"));
        assert!(INIT.starts_with("#!/bin/sh\n"));
        assert!(INIT.contains(READY_LINE.trim_end()));

        let bad = RamdiskModules {
            release: "../x".into(),
            ..modules
        };
        assert!(ramdisk(b"BB", b"SVE", &bad).is_err());
    }

    #[test]
    fn kernel_data_one_and_a_half_pages_in() {
        let image: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let gz = stored_kernel(&image).unwrap();
        // The first stored block: its header byte (final bit, type 00),
        // LEN and NLEN, then the data.
        let at = KERNEL_DATA_AT;
        assert_eq!(gz[at - 5] & 0b110, 0, "a stored block");
        let len = u16::from_le_bytes([gz[at - 4], gz[at - 3]]);
        assert_eq!(!len, u16::from_le_bytes([gz[at - 2], gz[at - 1]]));
        assert_eq!(gz[at..at + usize::from(len)], image[..usize::from(len)]);
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, image);
    }

    #[test]
    fn products() {
        assert!(makes("Image.gz"));
        assert!(makes("ramdisk-armv8-64.cpio.gz"));
        assert!(!makes("virt-arm_virt.dtb"));
    }

    /// Boots the guest natively and uses its shell through the console
    /// harness (needs QEMU and fetches the guest: run it with
    /// `cargo test -p xtask -- --ignored native_guest_shell`).
    #[test]
    #[ignore]
    fn native_guest_shell() {
        use crate::console::{Pattern, Session};
        use std::time::Duration;

        let ws = Workspace::locate().unwrap();
        let guest = ensure(&ws).unwrap();
        let cmd = qemu::command(&guest.native_arguments(&[]));
        let forbid = vec![Pattern::Text("Kernel panic".into())];
        let mut session = Session::spawn(cmd, forbid, true).unwrap();
        let deadline = session.started() + Duration::from_secs(240);
        // (typed, then expected); the prompt is "/ # ".
        let steps: &[(&str, &str)] = &[
            ("", "guest: ready, shell on ttyAMA0"),
            ("", "/ # "),
            ("nproc\n", "\n4\r\n"),
            ("", "/ # "),
            ("free -m\n", "Mem:"),
            ("", "/ # "),
            ("cat /proc/interrupts\n", "arch_timer"),
            ("", "/ # "),
            // Job control: a background job, then Ctrl-C for one in front.
            ("sleep 30 &\n", "/ # "),
            ("jobs\n", "Running"),
            ("", "/ # "),
            ("sleep 30\n", "sleep 30"),
            ("\x03", "/ # "),
            ("poweroff\n", "reboot: Power down"),
        ];
        for (send, expect) in steps {
            session.send(send.as_bytes()).unwrap();
            let found = session.expect(&Pattern::Text(expect.to_string()), deadline);
            assert!(found.is_ok(), "{send:?}: no {expect:?}: {:?}", found.err());
        }
        let record = session.finish();
        assert!(record.transcript.contains("uart-pl011"));
    }
}

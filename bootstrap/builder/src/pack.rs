//! Packs one `modules.list` entry into a bootable image.
//!
//! The image is the boot stage's flat binary (its `PT_LOAD` segments from the
//! lowest `p_vaddr` on, bss zeroed), zero padding up to the next page, then the
//! payload [`bootstrap_format::build`] makes of the kernel, the root task and the
//! modules in list order. The `image_size` field of the stage's arm64 Image
//! header is set to the size of the whole image.
//!
//! The file written is an ELF executable that puts that image at the
//! stage's link address and is entered there: one segment for the stage
//! and the payload's tables, one per module, without the padding before
//! modules. QEMU's `-kernel` maps an ELF file and copies each segment into
//! RAM once; an arm64 Image it reads twice and copies twice more, which for
//! a 37 MB image with a Linux guest in it took 0.13 s more before the first
//! instruction.
//!
//! # Finding files
//!
//! A file word from the modules.list is looked up in this order; the first
//! regular file wins:
//! 1. [`BuildOptions::aliases`] (the exact word);
//! 2. the word as a path (absolute, or relative to the current directory);
//! 3. each directory of [`BuildOptions::search_path`], in order (the caller
//!    puts `MODULE_SEARCH_PATH` first, then its default directories);
//! 4. each `searchpath` directory of the modules.list, in file order.
//!
//! As in L4Re, the list's own `searchpath` lines come after the caller's path.
//! `module[glob]` patterns are matched in the directories of 3 and 4 (or in
//! the pattern's own directory if it is absolute); a name found in an earlier
//! directory hides the same name in later ones.

use std::collections::HashSet;
use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use bootstrap_format::{Input, Kind, PAGE, Payload};
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use goblin::elf::Elf;
use goblin::elf::header::{EM_AARCH64, ET_EXEC, et_to_str, machine_to_str};
use goblin::elf::program_header::{PT_LOAD, ProgramHeader};

use crate::elfwrite::{Segment, elf_file};
use crate::modlist::{
    Compression, Location, ModListError, ModOpts, ModSpec, ModulesList, basename,
};

/// Where the arm64 Image header keeps its magic and the image size.
const IMAGE_MAGIC_OFFSET: usize = 56;
const IMAGE_MAGIC: [u8; 4] = *b"ARM\x64";
const IMAGE_SIZE_OFFSET: usize = 16;
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// A boot stage spanning more than this is a link error, not a boot stage.
const MAX_STAGE_SPAN: u64 = 64 << 20;

#[derive(Clone, Debug)]
pub struct BuildOptions {
    pub modules_list: PathBuf,
    pub entry: String,
    /// Directories where module files are looked up, in order, before the
    /// modules.list's own `searchpath` directories: `MODULE_SEARCH_PATH`
    /// first, then the defaults (see the module documentation).
    pub search_path: Vec<PathBuf>,
    /// Names a modules.list may use for our own binaries, mapped to files:
    /// "fiasco" -> kernel ELF, "moe" -> root task ELF, "bootstrap" -> boot
    /// stage ELF. Looked up before the search path.
    pub aliases: Vec<(String, PathBuf)>,
    /// The boot stage ELF (aarch64, its flat image starts with an arm64 Linux
    /// Image header).
    pub stage_elf: PathBuf,
    /// Environment for module[shell] commands (e.g. SRC_BASE_ABS), added to
    /// the inherited one.
    pub shell_env: Vec<(String, String)>,
    /// Options put before the root task's own command line (a benchmark
    /// turns on reports this way, e.g. moe's `--l4re-dbg=4`).
    pub roottask_options: Vec<String>,
    pub output: PathBuf,
}

#[derive(Clone, Debug)]
pub struct BuildReport {
    pub image: PathBuf,
    pub image_size: u64,
    /// Size of the flat boot stage; the payload starts at the next page.
    pub stage_size: u64,
    /// In payload order.
    pub modules: Vec<PackedModule>,
    /// Things worth telling the user, e.g. a `module[shell]` file found by its
    /// base name because the printed path does not exist.
    pub notes: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct PackedModule {
    pub kind: Kind,
    pub name: String,
    pub cmdline: String,
    pub source: PathBuf,
    /// Size in the image (after `uncompress` or `compress=`).
    pub size: u64,
}

/// What is wrong with an ELF file the image needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ElfProblem {
    Malformed(String),
    Not64Bit,
    BigEndian,
    WrongMachine(u16),
    NotExecutable(u16),
    NoLoadSegments,
    BadSegment(usize),
    TooLarge(u64),
    NoImageHeader,
}

impl fmt::Display for ElfProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ElfProblem::Malformed(why) => write!(f, "is not a valid ELF file ({why})"),
            ElfProblem::Not64Bit => write!(f, "is a 32-bit ELF file, expected 64-bit"),
            ElfProblem::BigEndian => write!(f, "is big-endian, expected little-endian"),
            ElfProblem::WrongMachine(m) => write!(
                f,
                "is for machine {} ({m}), expected AARCH64 ({EM_AARCH64})",
                machine_to_str(*m)
            ),
            ElfProblem::NotExecutable(t) => write!(
                f,
                "has type ET_{} ({t}), expected an executable (ET_EXEC)",
                et_to_str(*t)
            ),
            ElfProblem::NoLoadSegments => write!(f, "has no loadable (PT_LOAD) segment"),
            ElfProblem::BadSegment(i) => write!(
                f,
                "has a bad program header {i} (outside the file, or more file than memory bytes)"
            ),
            ElfProblem::TooLarge(span) => write!(
                f,
                "has loadable segments spanning {span:#x} bytes (limit {MAX_STAGE_SPAN:#x})"
            ),
            ElfProblem::NoImageHeader => write!(
                f,
                "has no arm64 Image header (magic \"ARM\\x64\" at offset {IMAGE_MAGIC_OFFSET} of its flat image)"
            ),
        }
    }
}

#[derive(Debug)]
pub enum BuildError {
    List(ModListError),
    Io {
        action: &'static str,
        path: PathBuf,
        error: io::Error,
    },
    NotFound {
        at: Location,
        role: &'static str,
        name: String,
        looked: Vec<PathBuf>,
    },
    NoGlobMatch {
        at: Location,
        pattern: String,
        looked: Vec<PathBuf>,
    },
    Shell {
        at: Location,
        command: String,
        problem: String,
    },
    Elf {
        /// The modules.list line naming the file (none for the boot stage).
        at: Option<Location>,
        role: &'static str,
        path: PathBuf,
        problem: ElfProblem,
    },
}

fn write_paths(f: &mut fmt::Formatter<'_>, paths: &[PathBuf]) -> fmt::Result {
    if paths.is_empty() {
        return write!(f, "\n  (no directories to search)");
    }
    paths
        .iter()
        .try_for_each(|p| write!(f, "\n  {}", p.display()))
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildError::List(e) => write!(f, "{e}"),
            BuildError::Io {
                action,
                path,
                error,
            } => write!(f, "cannot {action} '{}': {error}", path.display()),
            BuildError::NotFound {
                at,
                role,
                name,
                looked,
            } => {
                write!(f, "{at}: {role} '{name}' not found; looked at:")?;
                write_paths(f, looked)
            }
            BuildError::NoGlobMatch {
                at,
                pattern,
                looked,
            } => {
                write!(f, "{at}: module[glob] '{pattern}' matches no file in:")?;
                write_paths(f, looked)
            }
            BuildError::Shell {
                at,
                command,
                problem,
            } => write!(f, "{at}: module[shell] '{command}': {problem}"),
            BuildError::Elf {
                at,
                role,
                path,
                problem,
            } => {
                if let Some(at) = at {
                    write!(f, "{at}: ")?;
                }
                write!(f, "{role} '{}' {problem}", path.display())
            }
        }
    }
}

impl std::error::Error for BuildError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BuildError::List(e) => Some(e),
            BuildError::Io { error, .. } => Some(error),
            _ => None,
        }
    }
}

impl From<ModListError> for BuildError {
    fn from(e: ModListError) -> Self {
        BuildError::List(e)
    }
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> BuildError {
    let path = path.to_path_buf();
    move |error| BuildError::Io {
        action,
        path,
        error,
    }
}

/// Reads the modules.list, packs `opts.entry` and writes the image.
pub fn build_image(opts: &BuildOptions) -> Result<BuildReport, BuildError> {
    let list = ModulesList::load(&opts.modules_list)?;
    let entry = list.entry(&opts.entry)?;
    let mut packer = Packer {
        finder: Finder {
            aliases: &opts.aliases,
            dirs: opts
                .search_path
                .iter()
                .chain(list.search_path())
                .map(PathBuf::as_path)
                .collect(),
        },
        shell_env: &opts.shell_env,
        inputs: Vec::new(),
        packed: Vec::new(),
        notes: Vec::new(),
    };
    packer.boot_module(Kind::Kernel, &entry.kernel)?;
    packer.boot_module(Kind::Roottask, &entry.roottask)?;
    packer.prepend_options(&opts.roottask_options);
    for spec in &entry.modules {
        packer.module(spec)?;
    }

    let (base, stage) = flat_stage(&opts.stage_elf)?;
    let stage_size = stage.len() as u64;
    let payload_at = payload_offset(stage_size);
    let payload = bootstrap_format::build(&packer.inputs, payload_at);
    let image = assemble(stage, &payload);
    let segments: Vec<Segment> = filled(&image, payload_at)
        .into_iter()
        .map(|(start, end)| Segment {
            vaddr: base + start,
            data: &image[start as usize..end as usize],
            memsz: end - start,
        })
        .collect();
    let file = elf_file(EM_AARCH64, ET_EXEC, base, &segments, PAGE);
    if let Some(dir) = opts.output.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(io_error("create", dir))?;
    }
    fs::write(&opts.output, &file).map_err(io_error("write", &opts.output))?;
    Ok(BuildReport {
        image: opts.output.clone(),
        image_size: file.len() as u64,
        stage_size,
        modules: packer.packed,
        notes: packer.notes,
    })
}

/// Where the payload starts in an image whose stage has `stage_size` bytes.
fn payload_offset(stage_size: u64) -> u64 {
    stage_size.div_ceil(PAGE) * PAGE
}

/// The ranges of `image` (offsets) that hold bytes: the stage with the
/// payload's tables, then each module, adjacent ranges merged. The ELF file
/// carries only these: the padding before a module (up to 2 MiB,
/// [`bootstrap_format::module_align`]) is neither in the file nor copied
/// by QEMU, and nothing reads it.
fn filled(image: &[u8], payload_at: u64) -> Vec<(u64, u64)> {
    let payload =
        Payload::parse(&image[payload_at as usize..]).expect("the payload just built parses");
    let mut ranges: Vec<(u64, u64)> = vec![(0, payload_at)];
    for (start, end) in payload.filled() {
        let (start, end) = (payload_at + start, payload_at + end);
        match ranges.last_mut() {
            Some(last) if last.1 >= start => last.1 = last.1.max(end),
            _ => ranges.push((start, end)),
        }
    }
    ranges
}

/// The stage, zero padding to the next page, the payload; with the Image
/// header's `image_size` set to the total.
fn assemble(mut image: Vec<u8>, payload: &[u8]) -> Vec<u8> {
    let payload_at = payload_offset(image.len() as u64);
    image.resize(payload_at as usize, 0);
    image.extend_from_slice(payload);
    let total = image.len() as u64;
    image[IMAGE_SIZE_OFFSET..IMAGE_SIZE_OFFSET + 8].copy_from_slice(&total.to_le_bytes());
    image
}

struct Finder<'a> {
    aliases: &'a [(String, PathBuf)],
    dirs: Vec<&'a Path>,
}

impl Finder<'_> {
    /// Finds `word`, or returns every place looked at.
    fn find(&self, word: &str) -> Result<PathBuf, Vec<PathBuf>> {
        let aliased = self.aliases.iter().filter(|(name, _)| name == word);
        let mut candidates: Vec<PathBuf> = aliased.map(|(_, path)| path.clone()).collect();
        candidates.push(PathBuf::from(word));
        if !Path::new(word).is_absolute() {
            candidates.extend(self.dirs.iter().map(|dir| dir.join(word)));
        }
        match candidates.iter().find(|p| p.is_file()) {
            Some(found) => Ok(found.clone()),
            None => Err(candidates),
        }
    }

    /// The files matching `pattern` (wildcards in its last component only),
    /// or the directories searched.
    fn glob(&self, pattern: &str) -> Result<Vec<PathBuf>, Vec<PathBuf>> {
        let (dir, file_pattern) = pattern.rsplit_once('/').unwrap_or(("", pattern));
        let dirs: Vec<PathBuf> = if Path::new(pattern).is_absolute() {
            vec![PathBuf::from(if dir.is_empty() { "/" } else { dir })]
        } else if dir.is_empty() {
            self.dirs.iter().map(|d| d.to_path_buf()).collect()
        } else {
            self.dirs.iter().map(|d| d.join(dir)).collect()
        };
        let mut seen = HashSet::new();
        let mut found = Vec::new();
        for dir in &dirs {
            let Ok(listing) = fs::read_dir(dir) else {
                continue;
            };
            let mut names: Vec<String> = listing
                .filter_map(Result::ok)
                .filter(|e| e.path().is_file())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|name| wildcard_match(file_pattern, name))
                .collect();
            names.sort();
            for name in names {
                if seen.insert(name.clone()) {
                    found.push(dir.join(name));
                }
            }
        }
        if found.is_empty() {
            Err(dirs)
        } else {
            Ok(found)
        }
    }
}

/// Shell-style matching of `*` and `?`; a leading `.` must be matched
/// literally.
fn wildcard_match(pattern: &str, name: &str) -> bool {
    if name.starts_with('.') && !pattern.starts_with('.') {
        return false;
    }
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni) = (0, 0);
    // The last `*` seen and the name position it currently stands for.
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((star_pi, star_ni)) = star {
            // Let the `*` swallow one more character and retry.
            star = Some((star_pi, star_ni + 1));
            pi = star_pi + 1;
            ni = star_ni + 1;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

struct Packer<'a> {
    finder: Finder<'a>,
    shell_env: &'a [(String, String)],
    inputs: Vec<Input>,
    packed: Vec<PackedModule>,
    notes: Vec<String>,
}

fn role(kind: Kind) -> &'static str {
    match kind {
        Kind::Kernel => "kernel",
        Kind::Roottask => "root task",
        Kind::Module => "module",
    }
}

impl Packer<'_> {
    /// Puts `options` before the command line of the module packed last.
    fn prepend_options(&mut self, options: &[String]) {
        if options.is_empty() {
            return;
        }
        let prefix = options.join(" ");
        let with = |cmdline: &mut String| {
            *cmdline = if cmdline.is_empty() {
                prefix.clone()
            } else {
                format!("{prefix} {cmdline}")
            };
        };
        if let Some(m) = self.packed.last_mut() {
            with(&mut m.cmdline);
        }
        if let Some(i) = self.inputs.last_mut() {
            with(&mut i.cmdline);
        }
    }

    fn find(&self, spec: &ModSpec, role: &'static str, word: &str) -> Result<PathBuf, BuildError> {
        self.finder
            .find(word)
            .map_err(|looked| BuildError::NotFound {
                at: spec.at(),
                role,
                name: word.to_string(),
                looked,
            })
    }

    /// The kernel or the root task: one AArch64 executable.
    fn boot_module(&mut self, kind: Kind, spec: &ModSpec) -> Result<(), BuildError> {
        let path = self.find(spec, role(kind), &spec.file)?;
        let data = load(&path, &spec.opts)?;
        if let Err(problem) = aarch64_executable(&data) {
            return Err(BuildError::Elf {
                at: Some(spec.at()),
                role: role(kind),
                path,
                problem,
            });
        }
        self.push(kind, spec.name(), spec, path, data);
        Ok(())
    }

    fn module(&mut self, spec: &ModSpec) -> Result<(), BuildError> {
        let files = if spec.opts.shell {
            self.shell(spec)?
        } else if spec.opts.glob {
            let paths = self
                .finder
                .glob(&spec.file)
                .map_err(|looked| BuildError::NoGlobMatch {
                    at: spec.at(),
                    pattern: spec.file.clone(),
                    looked,
                })?;
            let named = paths.into_iter().map(|path| {
                let name = path.file_name().unwrap_or_default().to_string_lossy();
                (spec.name_for(&name).to_string(), path)
            });
            named.collect()
        } else {
            vec![(
                spec.name().to_string(),
                self.find(spec, "module", &spec.file)?,
            )]
        };
        for (name, path) in files {
            let data = load(&path, &spec.opts)?;
            self.push(Kind::Module, &name, spec, path, data);
        }
        Ok(())
    }

    /// Runs a `module[shell]` command; returns (name, file) for each word it
    /// prints.
    fn shell(&mut self, spec: &ModSpec) -> Result<Vec<(String, PathBuf)>, BuildError> {
        let fail = |problem: String| BuildError::Shell {
            at: spec.at(),
            command: spec.file.clone(),
            problem,
        };
        let output = Command::new("sh")
            .arg("-c")
            .arg(&spec.file)
            .envs(self.shell_env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .output()
            .map_err(|e| fail(format!("cannot run sh: {e}")))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(fail(format!(
                "failed ({}): {}",
                output.status,
                stderr.trim()
            )));
        }
        let stdout = String::from_utf8_lossy(&output.stdout);
        if stdout.trim().is_empty() {
            return Err(fail("printed no file names".to_string()));
        }
        let mut files = Vec::new();
        for word in stdout.split_whitespace() {
            let printed = Path::new(word);
            let path = if printed.is_file() {
                printed.to_path_buf()
            } else {
                let base = basename(word);
                let found = self.finder.find(base).map_err(|mut looked| {
                    looked.insert(0, printed.to_path_buf());
                    BuildError::NotFound {
                        at: spec.at(),
                        role: "module[shell] output",
                        name: word.to_string(),
                        looked,
                    }
                })?;
                self.notes.push(format!(
                    "{}: module[shell] printed '{word}', which does not exist; using '{}'",
                    spec.at(),
                    found.display()
                ));
                found
            };
            files.push((spec.name_for(word).to_string(), path));
        }
        Ok(files)
    }

    fn push(&mut self, kind: Kind, name: &str, spec: &ModSpec, source: PathBuf, data: Vec<u8>) {
        let cmdline = spec.cmdline();
        self.packed.push(PackedModule {
            kind,
            name: name.to_string(),
            cmdline: cmdline.clone(),
            source,
            size: data.len() as u64,
        });
        self.inputs.push(Input {
            kind,
            name: name.to_string(),
            cmdline,
            data,
        });
    }
}

/// Reads a module file, applying `uncompress` and `compress=`.
fn load(path: &Path, opts: &ModOpts) -> Result<Vec<u8>, BuildError> {
    let mut data = fs::read(path).map_err(io_error("read", path))?;
    if opts.uncompress && data.starts_with(&GZIP_MAGIC) {
        let mut plain = Vec::new();
        MultiGzDecoder::new(data.as_slice())
            .read_to_end(&mut plain)
            .map_err(io_error("decompress", path))?;
        data = plain;
    }
    if opts.compress == Some(Compression::Gzip) {
        let mut encoder = GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder
            .write_all(&data)
            .map_err(io_error("compress", path))?;
        data = encoder.finish().map_err(io_error("compress", path))?;
    }
    Ok(data)
}

/// Checks that `data` is a 64-bit little-endian AArch64 executable with
/// something to load.
fn aarch64_executable(data: &[u8]) -> Result<Elf<'_>, ElfProblem> {
    let elf = Elf::parse(data).map_err(|e| ElfProblem::Malformed(e.to_string()))?;
    if !elf.is_64 {
        return Err(ElfProblem::Not64Bit);
    }
    if !elf.little_endian {
        return Err(ElfProblem::BigEndian);
    }
    if elf.header.e_machine != EM_AARCH64 {
        return Err(ElfProblem::WrongMachine(elf.header.e_machine));
    }
    if elf.header.e_type != ET_EXEC {
        return Err(ElfProblem::NotExecutable(elf.header.e_type));
    }
    if !elf.program_headers.iter().any(|ph| ph.p_type == PT_LOAD) {
        return Err(ElfProblem::NoLoadSegments);
    }
    Ok(elf)
}

/// The boot stage as a flat binary with its Image header checked, and the
/// address it starts at.
fn flat_stage(path: &Path) -> Result<(u64, Vec<u8>), BuildError> {
    let data = fs::read(path).map_err(io_error("read", path))?;
    let flat = aarch64_executable(&data).and_then(|elf| flatten(&data, &elf.program_headers));
    flat.map_err(|problem| BuildError::Elf {
        at: None,
        role: "boot stage",
        path: path.to_path_buf(),
        problem,
    })
}

/// The file bytes of a segment, if it lies inside the file and is no larger
/// than its memory size.
fn segment_bytes<'a>(data: &'a [u8], ph: &ProgramHeader) -> Option<&'a [u8]> {
    if ph.p_filesz > ph.p_memsz {
        return None;
    }
    let start = usize::try_from(ph.p_offset).ok()?;
    let len = usize::try_from(ph.p_filesz).ok()?;
    data.get(start..start.checked_add(len)?)
}

/// Lays the `PT_LOAD` segments out from the lowest `p_vaddr` (returned
/// with them) to the highest end, zero-filling gaps and bss.
fn flatten(data: &[u8], headers: &[ProgramHeader]) -> Result<(u64, Vec<u8>), ElfProblem> {
    let loads: Vec<(usize, &ProgramHeader)> = headers
        .iter()
        .enumerate()
        .filter(|(_, ph)| ph.p_type == PT_LOAD && ph.p_memsz > 0)
        .collect();
    let start = loads
        .iter()
        .map(|(_, ph)| ph.p_vaddr)
        .min()
        .ok_or(ElfProblem::NoLoadSegments)?;
    let mut end = start;
    for &(i, ph) in &loads {
        end = end.max(
            ph.p_vaddr
                .checked_add(ph.p_memsz)
                .ok_or(ElfProblem::BadSegment(i))?,
        );
    }
    let span = end - start;
    if span > MAX_STAGE_SPAN {
        return Err(ElfProblem::TooLarge(span));
    }
    let mut flat = vec![0u8; span as usize];
    for (i, ph) in loads {
        let bytes = segment_bytes(data, ph).ok_or(ElfProblem::BadSegment(i))?;
        let at = (ph.p_vaddr - start) as usize;
        flat[at..at + bytes.len()].copy_from_slice(bytes);
    }
    let magic = flat.get(IMAGE_MAGIC_OFFSET..IMAGE_MAGIC_OFFSET + IMAGE_MAGIC.len());
    if magic != Some(&IMAGE_MAGIC[..]) {
        return Err(ElfProblem::NoImageHeader);
    }
    Ok((start, flat))
}

#[cfg(test)]
mod tests;

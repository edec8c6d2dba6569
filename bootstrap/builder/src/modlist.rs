//! Parser for L4Re's `modules.list` format.
//!
//! ```text
//! # a comment; '#' after whitespace starts a comment too
//! default-kernel fiasco -serial_esc   # also default-roottask, default-sigma0, default-bootstrap
//! searchpath dir:other                # relative to this file's directory
//! modaddr 0x01100000                  # global here, per entry inside an entry
//! include more.list                   # relative to this file's directory
//!
//! group common                        # module lines up to the next entry/group
//! module l4re
//!
//! entry hello-ned                     # entry[no-defaults] ignores the default-* lines
//! roottask moe rom/hello.ned
//! module-group common
//! module[uncompress,fname=Image] Image.gz
//! ```
//!
//! Lines start with a keyword, optionally followed by options in brackets:
//! `shell` (the rest of the line is a command whose output names the files),
//! `glob` (the file is a `*`/`?` pattern), `uncompress`, `fname=NAME`,
//! `nostrip`, `compress=gz` and `arch=a|b` (the line counts only if the list
//! names `arm64` or `aarch64`). `moe FILE` is short for `roottask moe
//! rom/FILE` plus `module FILE`.
//!
//! Unlike L4Re, there are no built-in defaults: an entry without a `kernel`
//! (or `roottask`) line needs a `default-kernel` (`default-roottask`) line
//! somewhere in the list. Entries and groups must be named by one word, a
//! group must be defined before `module-group` uses it, and including a file
//! that is already being read is an error rather than a warning.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Architecture names an `arch=` option must list for its line to count.
const OUR_ARCH: [&str; 2] = ["arm64", "aarch64"];

/// The kernel, root task, sigma0 and boot stage lines of an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    Kernel = 0,
    Roottask = 1,
    Sigma0 = 2,
    Bootstrap = 3,
}

impl Slot {
    fn name(self) -> &'static str {
        match self {
            Slot::Kernel => "kernel",
            Slot::Roottask => "roottask",
            Slot::Sigma0 => "sigma0",
            Slot::Bootstrap => "bootstrap",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Keyword {
    Entry,
    Group,
    Include,
    SearchPath,
    ModAddr,
    Default(Slot),
    Boot(Slot),
    Moe,
    Module,
    ModuleGroup,
}

const KEYWORDS: &[(&str, Keyword)] = &[
    ("entry", Keyword::Entry),
    ("kernel", Keyword::Boot(Slot::Kernel)),
    ("roottask", Keyword::Boot(Slot::Roottask)),
    ("module", Keyword::Module),
    ("bin", Keyword::Module),
    ("data", Keyword::Module),
    ("moe", Keyword::Moe),
    ("sigma0", Keyword::Boot(Slot::Sigma0)),
    ("bootstrap", Keyword::Boot(Slot::Bootstrap)),
    ("module-group", Keyword::ModuleGroup),
    ("group", Keyword::Group),
    ("include", Keyword::Include),
    ("searchpath", Keyword::SearchPath),
    ("modaddr", Keyword::ModAddr),
    ("default-kernel", Keyword::Default(Slot::Kernel)),
    ("default-roottask", Keyword::Default(Slot::Roottask)),
    ("default-sigma0", Keyword::Default(Slot::Sigma0)),
    ("default-bootstrap", Keyword::Default(Slot::Bootstrap)),
    ("title", Keyword::Entry),
];

const KNOWN_OPTIONS: &[&str] = &[
    "shell",
    "glob",
    "uncompress",
    "fname",
    "nostrip",
    "compress",
    "arch",
    "no-defaults",
];

impl Keyword {
    fn from_name(name: &str) -> Option<Self> {
        KEYWORDS.iter().find(|(n, _)| *n == name).map(|&(_, k)| k)
    }

    /// The bracket options this keyword accepts.
    fn options(self) -> &'static [&'static str] {
        match self {
            Keyword::Entry => &["no-defaults"],
            Keyword::Group => &[],
            Keyword::Include | Keyword::SearchPath | Keyword::ModAddr | Keyword::ModuleGroup => {
                &["arch"]
            }
            Keyword::Default(_) | Keyword::Boot(_) | Keyword::Moe => {
                &["uncompress", "fname", "nostrip", "arch"]
            }
            Keyword::Module => &[
                "shell",
                "glob",
                "uncompress",
                "fname",
                "nostrip",
                "compress",
                "arch",
            ],
        }
    }
}

/// A place in a modules.list file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
}

impl Location {
    fn error(&self, kind: ErrorKind) -> ModListError {
        ModListError {
            at: Some(self.clone()),
            kind,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    Gzip,
}

/// Options given in brackets after a keyword.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ModOpts {
    /// `ModSpec::file` is a shell command printing file names.
    pub shell: bool,
    /// `ModSpec::file` is a pattern with `*` and `?`.
    pub glob: bool,
    /// Decompress a gzip file while packing.
    pub uncompress: bool,
    /// The module's name in `rom/` instead of the file's base name.
    pub fname: Option<String>,
    /// Accepted for compatibility; files are never stripped.
    pub nostrip: bool,
    /// Compress the module while packing.
    pub compress: Option<Compression>,
    /// Architectures the line is meant for; empty means all.
    pub arch: Vec<String>,
}

impl ModOpts {
    fn for_this_arch(&self) -> bool {
        self.arch.is_empty() || self.arch.iter().any(|a| OUR_ARCH.contains(&a.as_str()))
    }
}

/// One file-naming line: `kernel`, `roottask`, `module`, a `default-*` line...
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModSpec {
    /// The file word as written; for `shell` the whole command, for `glob`
    /// the pattern.
    pub file: String,
    /// The words after the file (none for `shell`).
    pub args: Vec<String>,
    pub opts: ModOpts,
    /// The modules.list file and line the spec comes from.
    pub source: PathBuf,
    pub line: usize,
}

impl ModSpec {
    /// The module's name in `rom/`: `fname=` or the base name of `file`.
    pub fn name(&self) -> &str {
        self.name_for(&self.file)
    }

    /// The `rom/` name for one of the files a `shell` or `glob` spec yields.
    pub fn name_for<'a>(&'a self, file: &'a str) -> &'a str {
        self.opts.fname.as_deref().unwrap_or_else(|| basename(file))
    }

    /// The command line: the arguments joined by single spaces.
    pub fn cmdline(&self) -> String {
        self.args.join(" ")
    }

    pub fn at(&self) -> Location {
        Location {
            file: self.source.clone(),
            line: self.line,
        }
    }
}

/// The last `/`-separated component of a file word.
pub fn basename(file: &str) -> &str {
    file.rsplit('/').next().unwrap_or(file)
}

/// One boot entry with its defaults applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub kernel: ModSpec,
    pub roottask: ModSpec,
    /// Parsed for compatibility; this system has no sigma0.
    pub sigma0: Option<ModSpec>,
    /// Parsed for compatibility; the image builder is given its boot stage.
    pub bootstrap: Option<ModSpec>,
    /// Modules in list order (groups expanded).
    pub modules: Vec<ModSpec>,
    /// The entry's `modaddr`, else the global one.
    pub modaddr: Option<u64>,
    /// Where the `entry` line is.
    pub source: PathBuf,
    pub line: usize,
}

/// A parsed modules.list with all its includes.
#[derive(Clone, Debug)]
pub struct ModulesList {
    file: PathBuf,
    entries: Vec<Entry>,
    search_path: Vec<PathBuf>,
    modaddr: Option<u64>,
}

impl ModulesList {
    /// Reads and parses `path`.
    pub fn load(path: &Path) -> Result<Self, ModListError> {
        let text = fs::read_to_string(path).map_err(|error| ModListError {
            at: None,
            kind: ErrorKind::Read {
                path: path.to_path_buf(),
                error,
            },
        })?;
        Self::parse(&text, path)
    }

    /// Parses `text` as the contents of `file_name`; `include` and
    /// `searchpath` are relative to its directory.
    pub fn parse(text: &str, file_name: &Path) -> Result<Self, ModListError> {
        let mut parser = Parser::default();
        parser.parse_file(text, file_name)?;
        parser.finish(file_name)
    }

    /// Entry names, in file order.
    pub fn entries(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.name.as_str())
    }

    /// The entry called `name` (an exact match first, then ignoring ASCII
    /// case as L4Re does).
    pub fn entry(&self, name: &str) -> Result<&Entry, ModListError> {
        self.entries
            .iter()
            .find(|e| e.name == name)
            .or_else(|| {
                self.entries
                    .iter()
                    .find(|e| e.name.eq_ignore_ascii_case(name))
            })
            .ok_or_else(|| ModListError {
                at: None,
                kind: ErrorKind::NoSuchEntry {
                    name: name.to_string(),
                    file: self.file.clone(),
                    available: self.entries().map(String::from).collect(),
                },
            })
    }

    /// The `searchpath` directories, in file order, made relative to the
    /// directory of the file that names them.
    pub fn search_path(&self) -> &[PathBuf] {
        &self.search_path
    }

    /// The global `modaddr`.
    pub fn modaddr(&self) -> Option<u64> {
        self.modaddr
    }

    pub fn file(&self) -> &Path {
        &self.file
    }
}

/// A modules.list error, with the place it was found at.
#[derive(Debug)]
pub struct ModListError {
    pub at: Option<Location>,
    pub kind: ErrorKind,
}

#[derive(Debug)]
pub enum ErrorKind {
    Read {
        path: PathBuf,
        error: io::Error,
    },
    UnknownKeyword(String),
    UnclosedBracket(String),
    UnknownOption {
        keyword: String,
        option: String,
    },
    OptionNotAllowed {
        keyword: String,
        option: String,
        allowed: &'static [&'static str],
    },
    BadOptionValue {
        option: String,
        value: Option<String>,
        expected: &'static str,
    },
    ConflictingOptions(&'static str, &'static str),
    MissingArgument {
        keyword: String,
        what: &'static str,
    },
    ExtraArgument {
        keyword: String,
        what: &'static str,
        extra: String,
    },
    BadNumber {
        keyword: String,
        value: String,
    },
    OutsideEntry(String),
    InGroup {
        keyword: String,
        group: String,
    },
    Repeated {
        keyword: &'static str,
        entry: String,
        first: usize,
    },
    DuplicateEntry {
        name: String,
        first: Location,
    },
    DuplicateGroup {
        name: String,
        first: Location,
    },
    UnknownGroup {
        name: String,
        known: Vec<String>,
    },
    IncludeCycle(Vec<PathBuf>),
    Missing {
        entry: String,
        what: &'static str,
        no_defaults: bool,
    },
    NoSuchEntry {
        name: String,
        file: PathBuf,
        available: Vec<String>,
    },
}

/// Writes `items` as `'a', 'b'`, or `none` if there are none.
struct List<'a, T>(&'a [T]);

impl<T: fmt::Display> fmt::Display for List<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return write!(f, "none");
        }
        for (i, item) in self.0.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{item}")?;
        }
        Ok(())
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::Read { path, error } => {
                write!(f, "cannot read '{}': {error}", path.display())
            }
            ErrorKind::UnknownKeyword(word) => {
                let names: Vec<&str> = KEYWORDS.iter().map(|(name, _)| *name).collect();
                write!(f, "unknown keyword '{word}' (expected {})", List(&names))
            }
            ErrorKind::UnclosedBracket(keyword) => {
                write!(f, "'{keyword}[' has no closing ']'")
            }
            ErrorKind::UnknownOption { keyword, option } => write!(
                f,
                "unknown option '{option}' in '{keyword}[...]' (expected {})",
                List(KNOWN_OPTIONS)
            ),
            ErrorKind::OptionNotAllowed {
                keyword,
                option,
                allowed,
            } => write!(
                f,
                "option '{option}' is not allowed on '{keyword}' (allowed: {})",
                List(allowed)
            ),
            ErrorKind::BadOptionValue {
                option,
                value: Some(value),
                expected,
            } => write!(f, "option '{option}={value}': expected {expected}"),
            ErrorKind::BadOptionValue {
                option,
                value: None,
                expected,
            } => write!(f, "option '{option}' needs a value: {expected}"),
            ErrorKind::ConflictingOptions(a, b) => {
                write!(f, "options '{a}' and '{b}' cannot be combined")
            }
            ErrorKind::MissingArgument { keyword, what } => {
                write!(f, "'{keyword}' needs {what}")
            }
            ErrorKind::ExtraArgument {
                keyword,
                what,
                extra,
            } => write!(f, "'{keyword}' takes {what} only; unexpected '{extra}'"),
            ErrorKind::BadNumber { keyword, value } => write!(
                f,
                "'{keyword}': '{value}' is not a number (expected decimal or 0x hex)"
            ),
            ErrorKind::OutsideEntry(keyword) => write!(
                f,
                "'{keyword}' outside an entry (expected 'entry NAME' before it)"
            ),
            ErrorKind::InGroup { keyword, group } => write!(
                f,
                "'{keyword}' in group '{group}' (a group holds only module lines)"
            ),
            ErrorKind::Repeated {
                keyword,
                entry,
                first,
            } => write!(f, "entry '{entry}' already has a {keyword} (line {first})"),
            ErrorKind::DuplicateEntry { name, first } => {
                write!(f, "duplicate entry '{name}' (first defined at {first})")
            }
            ErrorKind::DuplicateGroup { name, first } => {
                write!(f, "duplicate group '{name}' (first defined at {first})")
            }
            ErrorKind::UnknownGroup { name, known } => write!(
                f,
                "unknown group '{name}' (groups defined before this line: {})",
                List(known)
            ),
            ErrorKind::IncludeCycle(chain) => {
                let names: Vec<_> = chain.iter().map(|p| p.display()).collect();
                write!(f, "include cycle: ")?;
                for (i, name) in names.iter().enumerate() {
                    let sep = if i == 0 { "" } else { " -> " };
                    write!(f, "{sep}{name}")?;
                }
                Ok(())
            }
            ErrorKind::Missing {
                entry,
                what,
                no_defaults: true,
            } => write!(f, "entry[no-defaults] '{entry}' has no '{what}' line"),
            ErrorKind::Missing {
                entry,
                what,
                no_defaults: false,
            } => write!(
                f,
                "entry '{entry}' has no {what}: add a '{what}' line to it or a 'default-{what}' line"
            ),
            ErrorKind::NoSuchEntry {
                name,
                file,
                available,
            } => write!(
                f,
                "no entry '{name}' in {} (available: {})",
                file.display(),
                List(available)
            ),
        }
    }
}

impl fmt::Display for ModListError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.at {
            Some(at) => write!(f, "{at}: {}", self.kind),
            None => write!(f, "{}", self.kind),
        }
    }
}

impl std::error::Error for ModListError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.kind {
            ErrorKind::Read { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// Drops a comment: `#` at the start or after whitespace.
fn strip_comment(line: &str) -> &str {
    let mut after_space = true;
    for (i, c) in line.char_indices() {
        if c == '#' && after_space {
            return &line[..i];
        }
        after_space = c.is_whitespace();
    }
    line
}

/// A non-empty line split into keyword, bracket options and the rest.
struct Line<'a> {
    keyword: String,
    options: &'a str,
    rest: &'a str,
}

impl<'a> Line<'a> {
    fn split(text: &'a str) -> Result<Self, ErrorKind> {
        let end = text
            .find(|c: char| c.is_whitespace() || c == '[')
            .unwrap_or(text.len());
        let (keyword, after) = text.split_at(end);
        let (options, rest) = match after.strip_prefix('[') {
            Some(inner) => inner
                .split_once(']')
                .ok_or_else(|| ErrorKind::UnclosedBracket(keyword.to_string()))?,
            None => ("", after),
        };
        Ok(Line {
            keyword: keyword.to_ascii_lowercase(),
            options,
            rest: rest.trim(),
        })
    }

    /// The single word after the keyword.
    fn word(&self, what: &'static str) -> Result<&'a str, ErrorKind> {
        let mut words = self.rest.split_whitespace();
        let word = words.next().ok_or_else(|| self.missing(what))?;
        match words.next() {
            Some(extra) => Err(ErrorKind::ExtraArgument {
                keyword: self.keyword.clone(),
                what,
                extra: extra.to_string(),
            }),
            None => Ok(word),
        }
    }

    fn missing(&self, what: &'static str) -> ErrorKind {
        ErrorKind::MissingArgument {
            keyword: self.keyword.clone(),
            what,
        }
    }

    /// The file (or shell command) and its arguments.
    fn spec(&self, opts: ModOpts, at: &Location) -> Result<ModSpec, ErrorKind> {
        let (file, args) = if opts.shell {
            (self.rest.to_string(), Vec::new())
        } else {
            let mut words = self.rest.split_whitespace().map(String::from);
            (words.next().unwrap_or_default(), words.collect())
        };
        if file.is_empty() {
            let what = if opts.shell {
                "a shell command"
            } else {
                "a file name"
            };
            return Err(self.missing(what));
        }
        Ok(ModSpec {
            file,
            args,
            opts,
            source: at.file.clone(),
            line: at.line,
        })
    }

    /// Parses the bracket options; returns them and whether `no-defaults`
    /// was given.
    fn options(&self, allowed: &'static [&'static str]) -> Result<(ModOpts, bool), ErrorKind> {
        let mut opts = ModOpts::default();
        let mut no_defaults = false;
        for item in self
            .options
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let (name, value) = match item.split_once('=') {
                Some((name, value)) => (name.trim(), Some(value.trim())),
                None => (item, None),
            };
            if !KNOWN_OPTIONS.contains(&name) {
                return Err(ErrorKind::UnknownOption {
                    keyword: self.keyword.clone(),
                    option: name.to_string(),
                });
            }
            if !allowed.contains(&name) {
                return Err(ErrorKind::OptionNotAllowed {
                    keyword: self.keyword.clone(),
                    option: name.to_string(),
                    allowed,
                });
            }
            let bad_value = |expected| ErrorKind::BadOptionValue {
                option: name.to_string(),
                value: value.map(String::from),
                expected,
            };
            match (name, value) {
                ("fname", Some(v)) if !v.is_empty() && !v.contains('/') => {
                    opts.fname = Some(v.to_string())
                }
                ("fname", _) => return Err(bad_value("a file name without '/'")),
                ("compress", Some("gz")) => opts.compress = Some(Compression::Gzip),
                ("compress", _) => return Err(bad_value("gz")),
                ("arch", Some(v)) if !v.is_empty() => {
                    opts.arch = v.split('|').map(|a| a.trim().to_string()).collect()
                }
                ("arch", _) => return Err(bad_value("architectures such as arm64|amd64")),
                (_, Some(_)) => return Err(bad_value("no value")),
                ("shell", None) => opts.shell = true,
                ("glob", None) => opts.glob = true,
                ("uncompress", None) => opts.uncompress = true,
                ("nostrip", None) => opts.nostrip = true,
                // The only other known option.
                (_, None) => no_defaults = true,
            }
        }
        if opts.shell && opts.glob {
            return Err(ErrorKind::ConflictingOptions("shell", "glob"));
        }
        Ok((opts, no_defaults))
    }
}

/// An entry while its lines are read.
struct OpenEntry {
    name: String,
    at: Location,
    no_defaults: bool,
    /// Indexed by `Slot`.
    slots: [Option<ModSpec>; 4],
    modules: Vec<ModSpec>,
    modaddr: Option<u64>,
}

impl OpenEntry {
    fn set(&mut self, slot: Slot, spec: ModSpec) -> Result<(), ErrorKind> {
        if let Some(first) = &self.slots[slot as usize] {
            return Err(ErrorKind::Repeated {
                keyword: slot.name(),
                entry: self.name.clone(),
                first: first.line,
            });
        }
        self.slots[slot as usize] = Some(spec);
        Ok(())
    }

    fn resolve(
        self,
        defaults: &[Option<ModSpec>; 4],
        modaddr: Option<u64>,
    ) -> Result<Entry, ModListError> {
        let mut slots = self.slots;
        if !self.no_defaults {
            for (own, default) in slots.iter_mut().zip(defaults) {
                if own.is_none() {
                    own.clone_from(default);
                }
            }
        }
        let [kernel, roottask, sigma0, bootstrap] = slots;
        let missing = |slot: Slot| {
            self.at.error(ErrorKind::Missing {
                entry: self.name.clone(),
                what: slot.name(),
                no_defaults: self.no_defaults,
            })
        };
        Ok(Entry {
            kernel: kernel.ok_or_else(|| missing(Slot::Kernel))?,
            roottask: roottask.ok_or_else(|| missing(Slot::Roottask))?,
            sigma0,
            bootstrap,
            modules: self.modules,
            modaddr: self.modaddr.or(modaddr),
            source: self.at.file,
            line: self.at.line,
            name: self.name,
        })
    }
}

struct Group {
    name: String,
    at: Location,
    modules: Vec<ModSpec>,
}

/// What the lines being read belong to.
#[derive(Default)]
enum Block {
    #[default]
    Top,
    Entry(Box<OpenEntry>),
    Group(Group),
}

impl Block {
    fn open_entry(&mut self, keyword: &str) -> Result<&mut OpenEntry, ErrorKind> {
        match self {
            Block::Entry(entry) => Ok(entry),
            Block::Group(group) => Err(ErrorKind::InGroup {
                keyword: keyword.to_string(),
                group: group.name.clone(),
            }),
            Block::Top => Err(ErrorKind::OutsideEntry(keyword.to_string())),
        }
    }

    /// Where module lines go: the open entry or group.
    fn module_sink(&mut self, keyword: &str) -> Result<&mut Vec<ModSpec>, ErrorKind> {
        match self {
            Block::Entry(entry) => Ok(&mut entry.modules),
            Block::Group(group) => Ok(&mut group.modules),
            Block::Top => Err(ErrorKind::OutsideEntry(keyword.to_string())),
        }
    }
}

#[derive(Default)]
struct Parser {
    block: Block,
    entries: Vec<OpenEntry>,
    groups: Vec<Group>,
    /// Indexed by `Slot`.
    defaults: [Option<ModSpec>; 4],
    search_path: Vec<PathBuf>,
    modaddr: Option<u64>,
    /// Files being read, outermost first: (canonical path, path as shown).
    reading: Vec<(PathBuf, PathBuf)>,
}

fn canonical(path: &Path) -> PathBuf {
    fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// `name` relative to the directory of `file`.
fn beside(file: &Path, name: &str) -> PathBuf {
    file.parent().unwrap_or(Path::new("")).join(name)
}

impl Parser {
    fn parse_file(&mut self, text: &str, file: &Path) -> Result<(), ModListError> {
        self.reading.push((canonical(file), file.to_path_buf()));
        let result = self.parse_lines(text, file);
        self.reading.pop();
        result
    }

    fn parse_lines(&mut self, text: &str, file: &Path) -> Result<(), ModListError> {
        for (index, raw) in text.lines().enumerate() {
            let line = strip_comment(raw).trim();
            if line.is_empty() {
                continue;
            }
            let at = Location {
                file: file.to_path_buf(),
                line: index + 1,
            };
            if let Some(target) = self.parse_line(line, &at).map_err(|kind| at.error(kind))? {
                self.include(&target, &at)?;
            }
        }
        Ok(())
    }

    fn include(&mut self, target: &Path, at: &Location) -> Result<(), ModListError> {
        let key = canonical(target);
        if let Some(pos) = self.reading.iter().position(|(k, _)| *k == key) {
            let mut chain: Vec<PathBuf> = self.reading[pos..]
                .iter()
                .map(|(_, shown)| shown.clone())
                .collect();
            chain.push(target.to_path_buf());
            return Err(at.error(ErrorKind::IncludeCycle(chain)));
        }
        let text = fs::read_to_string(target).map_err(|error| {
            at.error(ErrorKind::Read {
                path: target.to_path_buf(),
                error,
            })
        })?;
        self.parse_file(&text, target)
    }

    /// Applies one line; returns the file to include if it is an `include`.
    fn parse_line(&mut self, text: &str, at: &Location) -> Result<Option<PathBuf>, ErrorKind> {
        let line = Line::split(text)?;
        let keyword = Keyword::from_name(&line.keyword)
            .ok_or_else(|| ErrorKind::UnknownKeyword(line.keyword.clone()))?;
        let (opts, no_defaults) = line.options(keyword.options())?;
        if !opts.for_this_arch() {
            return Ok(None);
        }
        match keyword {
            Keyword::Include => return Ok(Some(beside(&at.file, line.word("a file name")?))),
            Keyword::Entry => {
                let name = line.word("a name")?;
                self.close_block();
                if let Some(first) = self.entries.iter().find(|e| e.name == name) {
                    return Err(ErrorKind::DuplicateEntry {
                        name: name.to_string(),
                        first: first.at.clone(),
                    });
                }
                self.block = Block::Entry(Box::new(OpenEntry {
                    name: name.to_string(),
                    at: at.clone(),
                    no_defaults,
                    slots: Default::default(),
                    modules: Vec::new(),
                    modaddr: None,
                }));
            }
            Keyword::Group => {
                let name = line.word("a name")?;
                self.close_block();
                if let Some(first) = self.groups.iter().find(|g| g.name == name) {
                    return Err(ErrorKind::DuplicateGroup {
                        name: name.to_string(),
                        first: first.at.clone(),
                    });
                }
                self.block = Block::Group(Group {
                    name: name.to_string(),
                    at: at.clone(),
                    modules: Vec::new(),
                });
            }
            Keyword::SearchPath => {
                let dirs = line.word("a directory list")?;
                let dirs = dirs.split(':').filter(|d| !d.is_empty());
                self.search_path.extend(dirs.map(|d| beside(&at.file, d)));
            }
            Keyword::ModAddr => {
                let value = line.word("an address")?;
                let addr = l4_cmdline::parse_number(value).ok_or_else(|| ErrorKind::BadNumber {
                    keyword: line.keyword.clone(),
                    value: value.to_string(),
                })?;
                match &mut self.block {
                    Block::Entry(entry) => entry.modaddr = Some(addr),
                    _ => self.modaddr = Some(addr),
                }
            }
            Keyword::Default(slot) => self.defaults[slot as usize] = Some(line.spec(opts, at)?),
            Keyword::Boot(slot) => {
                let spec = line.spec(opts, at)?;
                self.block.open_entry(&line.keyword)?.set(slot, spec)?;
            }
            Keyword::Moe => {
                let module = line.spec(opts, at)?;
                let roottask = ModSpec {
                    file: "moe".to_string(),
                    args: vec![format!("rom/{}", module.name())],
                    opts: ModOpts::default(),
                    source: at.file.clone(),
                    line: at.line,
                };
                let entry = self.block.open_entry(&line.keyword)?;
                entry.set(Slot::Roottask, roottask)?;
                entry.modules.push(module);
            }
            Keyword::Module => {
                let spec = line.spec(opts, at)?;
                self.block.module_sink(&line.keyword)?.push(spec);
            }
            Keyword::ModuleGroup => {
                if line.rest.is_empty() {
                    return Err(line.missing("a group name"));
                }
                let groups = &self.groups;
                let sink = self.block.module_sink(&line.keyword)?;
                for name in line.rest.split_whitespace() {
                    let group = groups.iter().find(|g| g.name == name).ok_or_else(|| {
                        ErrorKind::UnknownGroup {
                            name: name.to_string(),
                            known: groups.iter().map(|g| g.name.clone()).collect(),
                        }
                    })?;
                    sink.extend(group.modules.iter().cloned());
                }
            }
        }
        Ok(None)
    }

    fn close_block(&mut self) {
        match std::mem::take(&mut self.block) {
            Block::Top => {}
            Block::Entry(entry) => self.entries.push(*entry),
            Block::Group(group) => self.groups.push(group),
        }
    }

    fn finish(mut self, file: &Path) -> Result<ModulesList, ModListError> {
        self.close_block();
        let (defaults, modaddr) = (&self.defaults, self.modaddr);
        let entries = self
            .entries
            .into_iter()
            .map(|entry| entry.resolve(defaults, modaddr))
            .collect::<Result<_, _>>()?;
        Ok(ModulesList {
            file: file.to_path_buf(),
            entries,
            search_path: self.search_path,
            modaddr,
        })
    }
}

#[cfg(test)]
mod tests;

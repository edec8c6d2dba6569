//! uvmm's command line, with L4Re's option names.
//!
//! ```text
//! -k, --kernel FILE        guest kernel: arm64 Image, Image.gz, ELF or raw binary
//! -r, --ramdisk FILE       initial ramdisk
//! -d, --dtb FILE           device tree (repeatable: later trees are merged over earlier ones)
//! -c, --cmdline ARGS       kernel command line (/chosen/bootargs)
//! -b, --rambase ADDR       guest-physical base of the RAM when no memory node says otherwise
//! -i                       identity-map guest RAM (guest-physical = host-physical)
//! -D, --debug [COMP=]LVL   log level, for one component or all (quiet, warn, info, trace)
//! -v                       more verbose (repeatable)
//! -q                       quiet
//! -f, --fault-mode MODE    unhandled guest accesses: ignore, halt or inject
//! -m, --dt-mod MOD         device-tree change: /node/path/prop=TYPE:VALUE
//! -h, --help               this text
//! ```
//!
//! Short options take their value attached (`-krom/Image`) or as the next
//! argument; long options as `--opt=value` or `--opt value`.

use core::fmt;
use std::ffi::OsString;

/// The usage text.
pub const USAGE: &str = "\
usage: uvmm [options]
  -k, --kernel FILE        guest kernel (arm64 Image, Image.gz, ELF, raw)
  -r, --ramdisk FILE       initial ramdisk
  -d, --dtb FILE           device tree (repeatable, merged in order)
  -c, --cmdline ARGS       kernel command line
  -b, --rambase ADDR       guest-physical RAM base (default 0x40000000)
  -i                       identity-map guest RAM
  -D, --debug [COMP=]LVL   log level: quiet, warn, info, trace
  -v                       more verbose (repeatable)
  -q                       quiet
  -f, --fault-mode MODE    unhandled accesses: ignore, halt, inject
  -m, --dt-mod MOD         device-tree change /path/prop=TYPE:VALUE
                           (TYPE: str, u32, u64, empty)
  -h, --help               this text";

/// The guest-physical RAM base when neither `-b` nor a memory node gives
/// one (QEMU virt's RAM starts there).
pub const DEFAULT_RAM_BASE: u64 = 0x4000_0000;

/// How much uvmm says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Nothing but fatal errors.
    Quiet,
    /// Warnings.
    Warn,
    /// What uvmm does (the default).
    Info,
    /// Every exit and device access.
    Trace,
}

impl Level {
    fn parse(s: &str) -> Option<Level> {
        Some(match s {
            "quiet" => Level::Quiet,
            "warn" => Level::Warn,
            "info" => Level::Info,
            "trace" => Level::Trace,
            _ => return None,
        })
    }

    fn louder(self) -> Level {
        match self {
            Level::Quiet => Level::Warn,
            Level::Warn => Level::Info,
            Level::Info | Level::Trace => Level::Trace,
        }
    }
}

/// What uvmm does with a guest access no device handles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultMode {
    /// Reads return 0, writes are dropped (the default).
    Ignore,
    /// The VM stops: "VM entered a fatal state. Halting."
    Halt,
    /// The guest gets a synchronous external abort.
    Inject,
}

/// The type of a `-m` property value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PropValue {
    /// A NUL-terminated string (`str:`).
    Str(String),
    /// Big-endian 32-bit cells (`u32:1,2,3`).
    U32(Vec<u32>),
    /// Big-endian 64-bit values (`u64:0x1000`).
    U64(Vec<u64>),
    /// An empty property (`empty:`), a flag such as `dma-coherent`.
    Empty,
}

/// One `-m` device-tree change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DtMod {
    /// The node path (`/chosen`); created when missing.
    pub node: String,
    /// The property name.
    pub prop: String,
    /// The new value.
    pub value: PropValue,
}

/// The parsed command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// `-k`.
    pub kernel: Option<String>,
    /// `-r`.
    pub ramdisk: Option<String>,
    /// `-d`, in order.
    pub dtbs: Vec<String>,
    /// `-c`.
    pub cmdline: Option<String>,
    /// `-b`.
    pub ram_base: Option<u64>,
    /// `-i`.
    pub identity: bool,
    /// The level of every component without its own.
    pub level: Level,
    /// Per-component levels from `-D comp=level`.
    pub component_levels: Vec<(String, Level)>,
    /// `-f`.
    pub fault_mode: FaultMode,
    /// `-m`, in order.
    pub dt_mods: Vec<DtMod>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            kernel: None,
            ramdisk: None,
            dtbs: Vec::new(),
            cmdline: None,
            ram_base: None,
            identity: false,
            level: Level::Info,
            component_levels: Vec::new(),
            fault_mode: FaultMode::Ignore,
            dt_mods: Vec::new(),
        }
    }
}

/// What was wrong with the command line.
#[derive(Debug, PartialEq, Eq)]
pub enum OptError {
    /// `-h`: print the usage.
    Help,
    /// Anything else, with a message naming the option.
    Bad(String),
}

impl fmt::Display for OptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OptError::Help => f.write_str("help requested"),
            OptError::Bad(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for OptError {}

impl From<lexopt::Error> for OptError {
    fn from(e: lexopt::Error) -> OptError {
        OptError::Bad(e.to_string())
    }
}

fn bad(msg: impl Into<String>) -> OptError {
    OptError::Bad(msg.into())
}

/// A number as the kernel and moe read them (decimal or `0x` hex,
/// [`l4_cmdline::parse_number`]), and also `0o` (octal) or `0b` (binary);
/// `_` may group digits (`0x8000_0000`).
pub fn parse_number(s: &str) -> Option<u64> {
    let t = s.trim().replace('_', "");
    let radix = |digits: &str, radix| match digits {
        "" => None,
        d => u64::from_str_radix(d, radix).ok(),
    };
    if let Some(o) = t.strip_prefix("0o") {
        radix(o, 8)
    } else if let Some(b) = t.strip_prefix("0b") {
        radix(b, 2)
    } else {
        l4_cmdline::parse_number(&t)
    }
}

fn parse_dt_mod(s: &str) -> Result<DtMod, OptError> {
    let what = || format!("-m '{s}': expected /node/path/property=TYPE:VALUE");
    let (path, value) = s.split_once('=').ok_or_else(|| bad(what()))?;
    if !path.starts_with('/') {
        return Err(bad(format!(
            "{}: the node path must start with '/'",
            what()
        )));
    }
    let (node, prop) = path.rsplit_once('/').ok_or_else(|| bad(what()))?;
    if prop.is_empty() {
        return Err(bad(format!("{}: no property name", what())));
    }
    let node = if node.is_empty() { "/" } else { node };
    let (ty, val) = value.split_once(':').ok_or_else(|| bad(what()))?;
    let list = |val: &str| -> Result<Vec<u64>, OptError> {
        val.split([',', ' '])
            .filter(|v| !v.is_empty())
            .map(|v| parse_number(v).ok_or_else(|| bad(format!("-m '{s}': '{v}' is not a number"))))
            .collect()
    };
    let value = match ty {
        "str" => PropValue::Str(val.to_string()),
        "u32" => PropValue::U32(
            list(val)?
                .into_iter()
                .map(|v| {
                    u32::try_from(v)
                        .map_err(|_| bad(format!("-m '{s}': {v:#x} does not fit 32 bits")))
                })
                .collect::<Result<_, _>>()?,
        ),
        "u64" => PropValue::U64(list(val)?),
        "empty" if val.is_empty() => PropValue::Empty,
        "empty" => return Err(bad(format!("-m '{s}': an empty property takes no value"))),
        _ => {
            return Err(bad(format!(
                "-m '{s}': unknown type '{ty}' (str, u32, u64 or empty)"
            )));
        }
    };
    Ok(DtMod {
        node: node.to_string(),
        prop: prop.to_string(),
        value,
    })
}

impl Options {
    /// Parses the arguments (without the program name).
    pub fn parse<I>(args: I) -> Result<Options, OptError>
    where
        I: IntoIterator,
        I::Item: Into<OsString>,
    {
        use lexopt::prelude::*;
        let mut o = Options::default();
        let mut p = lexopt::Parser::from_args(args);
        let mut verbose = 0u32;
        let mut quiet = false;
        while let Some(arg) = p.next()? {
            let name = match &arg {
                Short(c) => format!("-{c}"),
                Long(l) => format!("--{l}"),
                Value(v) => {
                    return Err(bad(format!(
                        "unexpected argument '{}' (uvmm takes options only)",
                        v.to_string_lossy()
                    )));
                }
            };
            let value = |p: &mut lexopt::Parser| -> Result<String, OptError> {
                let v = p
                    .value()
                    .map_err(|_| bad(format!("{name} needs a value")))?;
                v.into_string()
                    .map_err(|v| bad(format!("{name}: '{}' is not UTF-8", v.to_string_lossy())))
            };
            match arg {
                Short('k') | Long("kernel") => o.kernel = Some(value(&mut p)?),
                Short('r') | Long("ramdisk") => o.ramdisk = Some(value(&mut p)?),
                Short('d') | Long("dtb") => o.dtbs.push(value(&mut p)?),
                Short('c') | Long("cmdline") => o.cmdline = Some(value(&mut p)?),
                Short('b') | Long("rambase") => {
                    let v = value(&mut p)?;
                    o.ram_base = Some(
                        parse_number(&v)
                            .ok_or_else(|| bad(format!("{name}: '{v}' is not an address")))?,
                    );
                }
                Short('i') => o.identity = true,
                Short('D') | Long("debug") => {
                    let v = value(&mut p)?;
                    let (comp, lvl) = match v.split_once('=') {
                        Some((c, l)) => (Some(c), l),
                        None => (None, v.as_str()),
                    };
                    let level = Level::parse(lvl).ok_or_else(|| {
                        bad(format!(
                            "{name} '{v}': unknown level '{lvl}' (quiet, warn, info, trace)"
                        ))
                    })?;
                    match comp {
                        Some("") => return Err(bad(format!("{name} '{v}': empty component"))),
                        Some(c) => o.component_levels.push((c.to_string(), level)),
                        None => o.level = level,
                    }
                }
                Short('v') | Long("verbose") => verbose += 1,
                Short('q') | Long("quiet") => quiet = true,
                Short('f') | Long("fault-mode") => {
                    let v = value(&mut p)?;
                    o.fault_mode = match v.as_str() {
                        "ignore" => FaultMode::Ignore,
                        "halt" => FaultMode::Halt,
                        "inject" => FaultMode::Inject,
                        _ => {
                            return Err(bad(format!(
                                "{name}: unknown fault mode '{v}' (ignore, halt or inject)"
                            )));
                        }
                    };
                }
                Short('m') | Long("dt-mod") => {
                    let v = value(&mut p)?;
                    o.dt_mods.push(parse_dt_mod(&v)?);
                }
                Short('h') | Long("help") => return Err(OptError::Help),
                _ => return Err(bad(format!("unknown option {name}"))),
            }
        }
        if quiet {
            o.level = Level::Quiet;
        }
        for _ in 0..verbose {
            o.level = o.level.louder();
        }
        Ok(o)
    }

    /// The loudest level of any component.
    pub fn loudest(&self) -> Level {
        self.component_levels
            .iter()
            .map(|(_, l)| *l)
            .fold(self.level, Level::max)
    }

    /// The level for component `comp` (its own `-D comp=...` or the global one).
    pub fn level_of(&self, comp: &str) -> Level {
        self.component_levels
            .iter()
            .rev()
            .find(|(c, _)| c == comp)
            .map_or(self.level, |(_, l)| *l)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Options, OptError> {
        Options::parse(args.iter().copied())
    }

    fn err(args: &[&str]) -> String {
        match parse(args) {
            Err(OptError::Bad(m)) => m,
            other => panic!("{args:?}: expected an error, got {other:?}"),
        }
    }

    #[test]
    fn seed_command_lines() {
        let o = parse(&[
            "-i",
            "-krom/Image.gz",
            "-rrom/ramdisk-armv8-64.cpio.gz",
            "-drom/virt-arm_virt-64-pl031.dtb",
            "-cconsole=ttyAMA0 earlyprintk=1 rdinit=/init",
        ])
        .unwrap();
        assert!(o.identity);
        assert_eq!(o.kernel.as_deref(), Some("rom/Image.gz"));
        assert_eq!(o.ramdisk.as_deref(), Some("rom/ramdisk-armv8-64.cpio.gz"));
        assert_eq!(o.dtbs, ["rom/virt-arm_virt-64-pl031.dtb"]);
        assert_eq!(
            o.cmdline.as_deref(),
            Some("console=ttyAMA0 earlyprintk=1 rdinit=/init")
        );
        let o = parse(&[
            "--dtb",
            "a.dtb",
            "--ramdisk",
            "rd",
            "--kernel=k",
            "--cmdline",
            "console=hvc0",
            "-d",
            "b.dtb",
        ])
        .unwrap();
        assert_eq!(o.dtbs, ["a.dtb", "b.dtb"]);
        assert_eq!(o.kernel.as_deref(), Some("k"));
        assert!(!o.identity);
        assert_eq!(o.fault_mode, FaultMode::Ignore);
    }

    #[test]
    fn numbers_levels_and_fault_modes() {
        let o = parse(&["-b", "0x8000_0000", "-f", "halt", "-D", "gic=trace", "-v"]).unwrap();
        assert_eq!(o.ram_base, Some(0x8000_0000));
        assert_eq!(parse_number(" 0o17 "), Some(0o17));
        assert_eq!(parse_number("0b101"), Some(5));
        assert_eq!(parse_number("1_000"), Some(1000));
        assert_eq!(parse_number("0x"), None);
        assert_eq!(parse_number("0b"), None);
        assert_eq!(o.fault_mode, FaultMode::Halt);
        assert_eq!(o.level, Level::Trace);
        assert_eq!(o.level_of("gic"), Level::Trace);
        let o = parse(&["-Dwarn", "--fault-mode=inject", "-b1073741824"]).unwrap();
        assert_eq!(o.level, Level::Warn);
        assert_eq!(o.fault_mode, FaultMode::Inject);
        assert_eq!(o.ram_base, Some(1 << 30));
        assert_eq!(parse(&["-q"]).unwrap().level, Level::Quiet);
        assert_eq!(parse(&["-q", "-v"]).unwrap().level, Level::Warn);
        assert_eq!(parse(&["-q"]).unwrap().loudest(), Level::Quiet);
        let o = parse(&["-q", "-D", "mmio=trace"]).unwrap();
        assert_eq!(o.loudest(), Level::Trace);
    }

    #[test]
    fn dt_mods() {
        let o = parse(&[
            "-m",
            "/chosen/stdout-path=str:serial0",
            "--dt-mod=/soc/uart@9000000/clock=u32:0x10,24",
            "-m/reg=u64:0x1000",
            "-m",
            "/pl031/dma-coherent=empty:",
        ])
        .unwrap();
        assert_eq!(
            o.dt_mods[0],
            DtMod {
                node: "/chosen".into(),
                prop: "stdout-path".into(),
                value: PropValue::Str("serial0".into())
            }
        );
        assert_eq!(o.dt_mods[1].node, "/soc/uart@9000000");
        assert_eq!(o.dt_mods[1].value, PropValue::U32(vec![16, 24]));
        assert_eq!(o.dt_mods[2].node, "/");
        assert_eq!(o.dt_mods[2].value, PropValue::U64(vec![0x1000]));
        assert_eq!(o.dt_mods[3].value, PropValue::Empty);
    }

    #[test]
    fn random_command_lines_parse_or_fail_clearly() {
        let pieces = [
            "-k",
            "-r",
            "-d",
            "-c",
            "-b",
            "-i",
            "-D",
            "-v",
            "-q",
            "-f",
            "-m",
            "--kernel=",
            "--rambase",
            "--fault-mode",
            "--debug",
            "rom/Image",
            "0x",
            "0x4000_0000",
            "inject",
            "/chosen/x=",
            "/a/b=u32:",
            "/a/b=u64:0x",
            "str:",
            "=",
            "/",
            "",
            "-",
            "--",
            "€",
            "1",
            "trace",
            "ignore",
            "/pl011@9000000/l4vmm,vcon_cap=str:con1",
        ];
        let mut rng = l4_xorshift::XorShift::new(0x2545_f491_4f6c_dd1d);
        let mut next = move || rng.next_u64();
        for _ in 0..20_000 {
            let args: Vec<String> = (0..next() % 8)
                .map(|_| {
                    (0..1 + next() % 3)
                        .map(|_| pieces[(next() % pieces.len() as u64) as usize])
                        .collect()
                })
                .collect();
            match Options::parse(args.iter().map(String::as_str)) {
                Ok(_) | Err(OptError::Help) => {}
                Err(OptError::Bad(m)) => assert!(!m.is_empty(), "{args:?}"),
            }
        }
    }

    #[test]
    fn clear_errors() {
        assert!(err(&["-k"]).contains("-k needs a value"));
        assert!(err(&["--rambase", "lots"]).contains("'lots' is not an address"));
        assert!(err(&["-f", "explode"]).contains("unknown fault mode 'explode'"));
        assert!(err(&["-D", "loud"]).contains("unknown level 'loud'"));
        assert!(err(&["-x"]).contains("unknown option -x"));
        assert!(err(&["--frobnicate"]).contains("unknown option --frobnicate"));
        assert!(err(&["Image"]).contains("unexpected argument 'Image'"));
        assert!(err(&["-m", "chosen/x=str:y"]).contains("must start with '/'"));
        assert!(err(&["-m", "/chosen/x=float:1"]).contains("unknown type 'float'"));
        assert!(err(&["-m", "/chosen/x=u32:0x100000000"]).contains("does not fit 32 bits"));
        assert!(err(&["-m", "/chosen/x"]).contains("expected /node/path"));
        assert_eq!(parse(&["-h"]), Err(OptError::Help));
    }
}

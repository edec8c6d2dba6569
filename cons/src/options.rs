//! cons's command line, with L4Re's option names.
//!
//! ```text
//! -a, --show-all               show the output of every client (default: only the focused one)
//! -B, --defaultbufsize N       history bytes per client (default 40960)
//! -c, --autoconnect NAME       focus the client NAME as soon as it is created (repeatable)
//! -f, --frontend CAP           use the Vcon capability CAP for the terminal (default: the log)
//! -k, --keep                   keep clients' history after they are gone
//! -l, --no-line-buffering      show partial lines at once instead of per line
//!     --line-buffering-ms MS   how long a partial line waits for its end (default 50)
//! -m, --mux NAME               the multiplexer's name (its prompt is `NAME> `)
//! -n, --defaultname NAME       the name when no -m is given (default "cons")
//! -t, --timestamp              prefix every line with the time
//! -h, --help                   this text
//! ```
//!
//! Short options combine (`-ak`) and take their value attached (`-B4096`)
//! or as the next argument; long options as `--opt=value` or `--opt value`.
//! L4Re's cons can run several multiplexers (`-m` repeated, each with its
//! frontends); this one runs one: the last `-m` names it.

use core::fmt;

/// The default history size per client (L4Re's cons: 40960 bytes).
pub const DEFAULT_BUFSZ: usize = 40960;
/// The smallest history size accepted.
pub const MIN_BUFSZ: usize = 64;
/// The largest history size accepted (per client).
pub const MAX_BUFSZ: usize = 16 << 20;
/// How long a partial line waits for its end by default, in ms.
pub const DEFAULT_LINE_BUFFERING_MS: u64 = 50;
/// The longest line-buffering delay accepted, in ms.
pub const MAX_LINE_BUFFERING_MS: u64 = 60_000;
/// The longest multiplexer or client name accepted on the command line.
pub const MAX_NAME: usize = 64;

/// The usage text.
pub const USAGE: &str = "\
usage: cons [options]
  -a, --show-all               show the output of every client
  -B, --defaultbufsize N       history bytes per client (default 40960)
  -c, --autoconnect NAME       focus client NAME when it is created
  -f, --frontend CAP           terminal Vcon capability (default: the log)
  -k, --keep                   keep clients' history after they are gone
  -l, --no-line-buffering      show partial lines at once
      --line-buffering-ms MS   partial-line delay (default 50)
  -m, --mux NAME               multiplexer name (prompt `NAME> `)
  -n, --defaultname NAME       name when no -m is given (default cons)
  -t, --timestamp              prefix lines with the time
  -h, --help                   this text";

/// The parsed command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Show every client's output (`-a`); new clients are shown unless
    /// they say `hide`.
    pub show_all: bool,
    /// History bytes per client (`-B`).
    pub bufsz: usize,
    /// Clients to focus as soon as they are created (`-c`).
    pub autoconnect: Vec<String>,
    /// The terminal's Vcon capability name (`-f`); `None`: the log.
    pub frontend: Option<String>,
    /// Keep clients after they are gone (`-k`).
    pub keep: bool,
    /// Assemble lines before showing them (off with `-l`).
    pub line_buffering: bool,
    /// How long a partial line waits for its end, in ms.
    pub line_buffering_ms: u64,
    /// The multiplexer's name (`-m`).
    pub mux: Option<String>,
    /// The name used when there is no `-m` (`-n`).
    pub default_name: String,
    /// Timestamps on every line (`-t`).
    pub timestamp: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            show_all: false,
            bufsz: DEFAULT_BUFSZ,
            autoconnect: Vec::new(),
            frontend: None,
            keep: false,
            line_buffering: true,
            line_buffering_ms: DEFAULT_LINE_BUFFERING_MS,
            mux: None,
            default_name: "cons".to_string(),
            timestamp: false,
        }
    }
}

/// Why the command line was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OptError {
    /// `-h`/`--help`: print [`USAGE`].
    Help,
    /// An option cons does not know.
    Unknown(String),
    /// An option that needs a value came last.
    MissingValue(String),
    /// An option without a value got one (`--keep=yes`).
    UnexpectedValue(String),
    /// A value that is not valid for its option.
    BadValue {
        /// The option.
        option: String,
        /// The value.
        value: String,
        /// What is wrong.
        why: &'static str,
    },
    /// An argument that is not an option.
    Unexpected(String),
}

impl fmt::Display for OptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OptError::Help => f.write_str("help requested"),
            OptError::Unknown(o) => write!(f, "unknown option '{o}'"),
            OptError::MissingValue(o) => write!(f, "option '{o}' needs a value"),
            OptError::UnexpectedValue(o) => write!(f, "option '{o}' takes no value"),
            OptError::BadValue { option, value, why } => {
                write!(f, "bad value '{value}' for option '{option}': {why}")
            }
            OptError::Unexpected(a) => write!(f, "unexpected argument '{a}'"),
        }
    }
}

impl std::error::Error for OptError {}

impl From<lexopt::Error> for OptError {
    fn from(e: lexopt::Error) -> OptError {
        use lexopt::Error as E;
        match e {
            E::MissingValue { option } => OptError::MissingValue(option.unwrap_or_default()),
            E::UnexpectedValue { option, value } => {
                OptError::UnexpectedValue(format!("{option}={}", value.to_string_lossy()))
            }
            E::UnexpectedOption(o) => OptError::Unknown(o),
            E::UnexpectedArgument(a) | E::NonUnicodeValue(a) => {
                OptError::Unexpected(a.to_string_lossy().into_owned())
            }
            e => OptError::Unexpected(e.to_string()),
        }
    }
}

impl Options {
    /// Parses the arguments after the program name.
    pub fn parse<I, S>(args: I) -> Result<Options, OptError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        use lexopt::prelude::*;

        let mut o = Options::default();
        let mut p = lexopt::Parser::from_args(args.into_iter().map(|a| a.as_ref().to_string()));
        // `-B=4096` is the value `=4096` (refused), not 4096.
        p.set_short_equals(false);
        while let Some(arg) = p.next()? {
            let name = match &arg {
                Short(c) => format!("-{c}"),
                Long(l) => format!("--{l}"),
                Value(v) => return Err(OptError::Unexpected(v.to_string_lossy().into_owned())),
            };
            let bad = |value: &str, why| OptError::BadValue {
                option: name.clone(),
                value: value.to_string(),
                why,
            };
            match arg {
                Short('a') | Long("show-all") => o.show_all = true,
                Short('k') | Long("keep") => o.keep = true,
                Short('l') | Long("no-line-buffering") => o.line_buffering = false,
                Short('t') | Long("timestamp") => o.timestamp = true,
                Short('h') | Long("help") => return Err(OptError::Help),
                Short('B') | Long("defaultbufsize") => {
                    let v = value(&mut p)?;
                    o.bufsz = v
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (MIN_BUFSZ..=MAX_BUFSZ).contains(n))
                        .ok_or_else(|| bad(&v, "must be a byte count from 64 to 16777216"))?;
                }
                Long("line-buffering-ms") => {
                    let v = value(&mut p)?;
                    o.line_buffering_ms = v
                        .parse::<u64>()
                        .ok()
                        .filter(|n| *n <= MAX_LINE_BUFFERING_MS)
                        .ok_or_else(|| bad(&v, "must be milliseconds from 0 to 60000"))?;
                }
                Short('c') | Long("autoconnect") => {
                    let n = name_value(&mut p, bad)?;
                    o.autoconnect.push(n);
                }
                Short('f') | Long("frontend") => o.frontend = Some(name_value(&mut p, bad)?),
                Short('m') | Long("mux") => o.mux = Some(name_value(&mut p, bad)?),
                Short('n') | Long("defaultname") => o.default_name = name_value(&mut p, bad)?,
                _ => return Err(OptError::Unknown(name)),
            }
        }
        Ok(o)
    }

    /// The multiplexer's name: `-m`, else `-n`.
    pub fn mux_name(&self) -> &str {
        self.mux.as_deref().unwrap_or(&self.default_name)
    }
}

/// The value of the option just read.
fn value(p: &mut lexopt::Parser) -> Result<String, OptError> {
    let v = p.value()?;
    v.into_string()
        .map_err(|v| OptError::Unexpected(v.to_string_lossy().into_owned()))
}

/// The value of the option just read, a name (of a client, a multiplexer
/// or a capability).
fn name_value(
    p: &mut lexopt::Parser,
    bad: impl Fn(&str, &'static str) -> OptError,
) -> Result<String, OptError> {
    let v = value(p)?;
    if v.is_empty() || v.len() > MAX_NAME || v.chars().any(char::is_control) {
        Err(bad(&v, "must be 1 to 64 printable characters"))
    } else {
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Options, OptError> {
        Options::parse(args)
    }

    #[test]
    fn defaults() {
        let o = parse(&[]).unwrap();
        assert_eq!(o, Options::default());
        assert!(!o.show_all && o.line_buffering && !o.keep && !o.timestamp);
        assert_eq!(o.bufsz, 40960);
        assert_eq!(o.mux_name(), "cons");
    }

    #[test]
    fn short_and_long() {
        let o = parse(&["-a"]).unwrap();
        assert!(o.show_all);
        let o = parse(&["-akt", "-l", "-B4096", "-c", "vm1", "-cvm2", "-m", "top"]).unwrap();
        assert!(o.show_all && o.keep && o.timestamp && !o.line_buffering);
        assert_eq!(o.bufsz, 4096);
        assert_eq!(o.autoconnect, ["vm1", "vm2"]);
        assert_eq!(o.mux_name(), "top");
        let o = parse(&[
            "--show-all",
            "--defaultbufsize=1000",
            "--autoconnect",
            "x",
            "--defaultname=con",
            "--line-buffering-ms",
            "10",
            "--frontend=uart",
            "--keep",
            "--timestamp",
            "--no-line-buffering",
        ])
        .unwrap();
        assert!(o.show_all && o.keep && o.timestamp && !o.line_buffering);
        assert_eq!((o.bufsz, o.line_buffering_ms), (1000, 10));
        assert_eq!(o.autoconnect, ["x"]);
        assert_eq!(o.frontend.as_deref(), Some("uart"));
        assert_eq!(o.mux_name(), "con");
        // A value that looks like an option is still the value.
        assert_eq!(parse(&["-c", "-a"]).unwrap().autoconnect, ["-a"]);
        assert!(parse(&["-a", "--"]).unwrap().show_all);
    }

    #[test]
    fn errors() {
        assert_eq!(parse(&["-x"]), Err(OptError::Unknown("-x".into())));
        assert_eq!(parse(&["-ax"]), Err(OptError::Unknown("-x".into())));
        assert_eq!(parse(&["--nope"]), Err(OptError::Unknown("--nope".into())));
        assert_eq!(parse(&["-B"]), Err(OptError::MissingValue("-B".into())));
        assert_eq!(
            parse(&["--mux"]),
            Err(OptError::MissingValue("--mux".into()))
        );
        assert_eq!(
            parse(&["--keep=1"]),
            Err(OptError::UnexpectedValue("--keep=1".into()))
        );
        assert!(matches!(
            parse(&["-B", "ten"]),
            Err(OptError::BadValue { .. })
        ));
        assert!(matches!(parse(&["-B1"]), Err(OptError::BadValue { .. })));
        assert!(matches!(
            parse(&["--line-buffering-ms=99999999"]),
            Err(OptError::BadValue { .. })
        ));
        assert!(matches!(parse(&["-m", ""]), Err(OptError::BadValue { .. })));
        assert!(matches!(
            parse(&["-n", "a\u{7}"]),
            Err(OptError::BadValue { .. })
        ));
        assert_eq!(parse(&["file"]), Err(OptError::Unexpected("file".into())));
        assert_eq!(parse(&["-"]), Err(OptError::Unexpected("-".into())));
        assert_eq!(parse(&["--", "x"]), Err(OptError::Unexpected("x".into())));
        assert_eq!(parse(&["-h"]), Err(OptError::Help));
        assert_eq!(parse(&["-ah"]), Err(OptError::Help));
        for e in [
            OptError::Unknown("-x".into()),
            OptError::MissingValue("-B".into()),
            OptError::Unexpected("y".into()),
        ] {
            assert!(!e.to_string().is_empty());
        }
    }
}

//! The switch's command line: the options of L4Re's virtio network switch
//! (`l4vio_switch`), so that its scripts start this one unchanged.
//!
//! | option | meaning |
//! |---|---|
//! | `-p N`, `--ports N` | at most N ports at a time (default 256) |
//! | `-s N`, `--size N` | the largest queue a port offers, a power of 2 from 1 to 32768 (default 256) |
//! | `-M`, `--no-random-mac` | a port created without `mac=` offers no address: its driver picks one |
//! | `-m`, `--mac` | accepted and ignored (as by L4Re's switch, for older scripts) |
//! | `-v`, `--verbose` | more messages (up to three times) |
//! | `-q`, `--quiet` | only errors |
//! | `-D C=L`, `--debug C=L` | the level of component C (`core`, `virtio`, `port`, `request`, `queue`, `packet`): `quiet`, `warn`, `info`, `debug` or `trace` |
//!
//! Without `-M`, a port's address is made up from its number
//! (`02:08:00:00:00:<N+1>`), not drawn at random: the same script gives
//! the same addresses on every boot. Anything else (`-d`/`--register-ds`,
//! trusted dataspaces, included) is refused with a message naming it.

use lexopt::prelude::*;

/// The most ports unless `-p` says otherwise.
pub const DEFAULT_PORTS: usize = 256;
/// The largest queue a port offers unless `-s` says otherwise.
pub const DEFAULT_QUEUE_SIZE: u16 = 256;
/// The largest queue `-s` allows (virtio's split queues).
pub const QUEUE_SIZE_LIMIT: u16 = 32768;

/// How much a component says, in increasing order. Errors are always
/// shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Errors only.
    Quiet,
    /// Warnings: frames dropped, queues stopped, refused requests.
    Warn,
    /// What happens to ports: created, up, addresses learned, freed.
    Info,
    /// Every dropped frame (not only the first of each port).
    Debug,
    /// As `Debug`.
    Trace,
}

/// The parts of the switch that have their own level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Component {
    Core,
    Virtio,
    Port,
    Request,
    Queue,
    Packet,
}

const COMPONENTS: [(&str, Component); 6] = [
    ("core", Component::Core),
    ("virtio", Component::Virtio),
    ("port", Component::Port),
    ("request", Component::Request),
    ("queue", Component::Queue),
    ("packet", Component::Packet),
];

const LEVELS: [(&str, Level); 5] = [
    ("quiet", Level::Quiet),
    ("warn", Level::Warn),
    ("info", Level::Info),
    ("debug", Level::Debug),
    ("trace", Level::Trace),
];

/// The level of each component.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verbosity([Level; 6]);

impl Default for Verbosity {
    fn default() -> Verbosity {
        Verbosity([Level::Info; 6])
    }
}

impl Verbosity {
    /// Whether a message of component `c` at level `l` is shown.
    pub fn shows(&self, c: Component, l: Level) -> bool {
        l <= self.0[c as usize]
    }

    /// Component `c`'s level.
    pub fn level(&self, c: Component) -> Level {
        self.0[c as usize]
    }
}

/// What the command line asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// At most this many ports at a time.
    pub max_ports: usize,
    /// The largest queue a port offers.
    pub queue_size: u16,
    /// Whether a port created without `mac=` gets an address.
    pub default_mac: bool,
    /// What is logged.
    pub verbosity: Verbosity,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            max_ports: DEFAULT_PORTS,
            queue_size: DEFAULT_QUEUE_SIZE,
            default_mac: true,
            verbosity: Verbosity::default(),
        }
    }
}

fn number<T: std::str::FromStr>(opt: &str, v: &str, ok: impl Fn(&T) -> bool) -> Result<T, String> {
    v.parse::<T>()
        .ok()
        .filter(ok)
        .ok_or_else(|| format!("{opt} {v}: not a valid number here"))
}

impl Options {
    /// Reads the arguments after the program's name.
    pub fn parse<I>(args: I) -> Result<Options, String>
    where
        I: IntoIterator,
        I::Item: Into<std::ffi::OsString>,
    {
        let mut o = Options::default();
        let mut global = Level::Info;
        let mut debug: Vec<(Component, Level)> = Vec::new();
        let mut p = lexopt::Parser::from_args(args);
        let err = |e: lexopt::Error| e.to_string();
        while let Some(arg) = p.next().map_err(err)? {
            match arg {
                Short('p') | Long("ports") => {
                    let v = p.value().map_err(err)?.string().map_err(err)?;
                    o.max_ports = number("--ports", &v, |n: &usize| *n >= 1)?;
                }
                Short('s') | Long("size") => {
                    let v = p.value().map_err(err)?.string().map_err(err)?;
                    o.queue_size = number("--size", &v, |n: &u16| {
                        n.is_power_of_two() && *n <= QUEUE_SIZE_LIMIT
                    })
                    .map_err(|_| {
                        format!("--size {v}: a power of 2 from 1 to {QUEUE_SIZE_LIMIT}")
                    })?;
                }
                Short('M') | Long("no-random-mac") => o.default_mac = false,
                Short('m') | Long("mac") => {}
                Short('v') | Long("verbose") => {
                    global = match global {
                        Level::Quiet | Level::Warn | Level::Info => Level::Debug,
                        _ => Level::Trace,
                    }
                }
                Short('q') | Long("quiet") => global = Level::Quiet,
                Short('D') | Long("debug") => {
                    let v = p.value().map_err(err)?.string().map_err(err)?;
                    debug.push(parse_debug(&v)?);
                }
                Short('d') | Long("register-ds") => {
                    return Err(
                        "--register-ds: trusted dataspaces are not supported (every port takes the \
                         dataspaces its driver registers, up to ds-max)"
                            .to_string(),
                    );
                }
                other => return Err(other.unexpected().to_string()),
            }
        }
        o.verbosity = Verbosity([global; 6]);
        for (c, l) in debug {
            o.verbosity.0[c as usize] = l;
        }
        Ok(o)
    }
}

/// `component=level`.
fn parse_debug(v: &str) -> Result<(Component, Level), String> {
    let (c, l) = v
        .split_once('=')
        .ok_or_else(|| format!("--debug {v}: expected component=level"))?;
    let c = COMPONENTS
        .iter()
        .find(|(n, _)| *n == c)
        .map(|e| e.1)
        .ok_or_else(|| {
            format!("--debug {v}: no component '{c}' (core, virtio, port, request, queue, packet)")
        })?;
    let l = LEVELS
        .iter()
        .find(|(n, _)| *n == l)
        .map(|e| e.1)
        .ok_or_else(|| format!("--debug {v}: no level '{l}' (quiet, warn, info, debug, trace)"))?;
    Ok((c, l))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Options, String> {
        Options::parse(args.iter().copied())
    }

    #[test]
    fn defaults_and_l4re_command_lines() {
        assert_eq!(parse(&[]), Ok(Options::default()));
        // What L4Re's vmm.lua passes.
        let o = parse(&["-v", "-m", "-p", "2"]).unwrap();
        assert_eq!(o.max_ports, 2);
        assert_eq!(o.verbosity.level(Component::Packet), Level::Debug);
        let o = parse(&["--ports=7", "--size", "1024", "-M", "-vv"]).unwrap();
        assert_eq!((o.max_ports, o.queue_size, o.default_mac), (7, 1024, false));
        assert_eq!(o.verbosity.level(Component::Core), Level::Trace);
    }

    #[test]
    fn levels() {
        let o = parse(&["-q", "-D", "packet=warn", "--debug=port=trace"]).unwrap();
        let v = o.verbosity;
        assert!(!v.shows(Component::Core, Level::Warn));
        assert!(v.shows(Component::Core, Level::Quiet), "errors");
        assert!(v.shows(Component::Packet, Level::Warn));
        assert!(!v.shows(Component::Packet, Level::Info));
        assert!(v.shows(Component::Port, Level::Trace));
        // -D wins over a later global level.
        let o = parse(&["-D", "queue=quiet", "-v"]).unwrap();
        assert_eq!(o.verbosity.level(Component::Queue), Level::Quiet);
        assert_eq!(o.verbosity.level(Component::Port), Level::Debug);
    }

    #[test]
    fn refusals() {
        for (args, msg) in [
            (&["-p", "0"][..], "--ports 0"),
            (&["-p", "x"], "--ports x"),
            (&["-s", "100"], "--size 100: a power of 2"),
            (&["-s", "65536"], "--size 65536"),
            (&["-s"], "missing argument"),
            (&["-D", "packet"], "expected component=level"),
            (&["-D", "net=info"], "no component 'net'"),
            (&["-D", "port=loud"], "no level 'loud'"),
            (&["-d", "ram"], "trusted dataspaces are not supported"),
            (&["--frobnicate"], "--frobnicate"),
            (&["extra"], "extra"),
        ] {
            let e = parse(args).unwrap_err();
            assert!(e.contains(msg), "{args:?}: {e}");
        }
    }
}

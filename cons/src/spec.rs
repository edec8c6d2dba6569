//! What a client asks for when its log is created: the arguments of
//! `create(L4.Proto.Log, tag, colour, opts...)`.
//!
//! * `tag`: the client's name (empty: `<noname>`). Whitespace and control
//!   characters become `_`, so that the name can be typed in commands.
//! * `colour`: see [`crate::colour`]; absent or nil: white.
//! * options (strings; other arguments are ignored, as L4Re's cons does):
//!   `hide`/`show`, `keep`/`no-keep`, `line-buffering`/`no-line-buffering`,
//!   `line-buffered-ms=N`, `timestamp`/`no-timestamp`, `key=X` (the first
//!   character; `key=` for none), `bufsz=N` (history bytes). Unknown
//!   strings are collected in [`ClientSpec::ignored`] for a warning.

use core::fmt;

use crate::colour::{BadColour, Colour};
use crate::options::{MAX_BUFSZ, MAX_LINE_BUFFERING_MS, MIN_BUFSZ};

/// The longest tag kept (longer ones are cut).
pub const MAX_TAG: usize = 64;
/// The name of a client whose tag is empty.
pub const NONAME: &str = "<noname>";

/// One argument of the create call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CreateArg<'a> {
    /// A string.
    Str(&'a str),
    /// An integer (signed or unsigned on the wire).
    Int(i64),
    /// Anything else (a flexpage).
    Other,
}

/// A client's creation parameters; `None` fields take the server's
/// defaults ([`crate::Options`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientSpec {
    /// The tag (sanitised).
    pub tag: String,
    /// The colour.
    pub colour: Colour,
    /// The key that focuses it (after Ctrl-E).
    pub key: Option<u8>,
    /// Whether its output is shown while it is not focused.
    pub show: Option<bool>,
    /// Whether it is kept after it is gone.
    pub keep: Option<bool>,
    /// Whether its output is assembled into lines.
    pub line_buffering: Option<bool>,
    /// How long a partial line of it waits for its end, in ms.
    pub line_buffering_ms: Option<u64>,
    /// Whether its lines get timestamps.
    pub timestamp: Option<bool>,
    /// History bytes.
    pub bufsz: Option<usize>,
    /// Options that were not understood.
    pub ignored: Vec<String>,
}

/// Why a create request was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpecError {
    /// The colour number is out of range.
    Colour(BadColour),
    /// `key=` with a character that cannot be typed as a key.
    Key(String),
    /// An option with a value that is out of range or not a number.
    Value {
        /// The option as given.
        option: String,
        /// What is allowed.
        why: &'static str,
    },
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpecError::Colour(c) => c.fmt(f),
            SpecError::Key(k) => write!(f, "'{k}': a key must be a printable ASCII character"),
            SpecError::Value { option, why } => write!(f, "'{option}': {why}"),
        }
    }
}

impl std::error::Error for SpecError {}

impl From<BadColour> for SpecError {
    fn from(c: BadColour) -> SpecError {
        SpecError::Colour(c)
    }
}

/// Makes a tag usable as a name: no whitespace or control characters, at
/// most [`MAX_TAG`] bytes, not empty.
pub fn sanitise_tag(tag: &str) -> String {
    let mut s = String::new();
    for c in tag.chars() {
        if s.len() + c.len_utf8() > MAX_TAG {
            break;
        }
        s.push(if c.is_whitespace() || c.is_control() {
            '_'
        } else {
            c
        });
    }
    if s.is_empty() {
        s.push_str(NONAME);
    }
    s
}

/// Whether `b` can be a client's key: a printable ASCII character.
pub fn valid_key(b: u8) -> bool {
    b.is_ascii_graphic()
}

impl ClientSpec {
    /// A client called `tag` with every default.
    pub fn new(tag: &str) -> ClientSpec {
        ClientSpec {
            tag: sanitise_tag(tag),
            ..ClientSpec::default()
        }
    }

    /// Reads the create arguments after the protocol: the tag, the colour
    /// (`None` when absent or nil) and the options.
    pub fn parse(
        tag: &str,
        colour: Option<CreateArg<'_>>,
        opts: &[CreateArg<'_>],
    ) -> Result<ClientSpec, SpecError> {
        let mut s = ClientSpec::new(tag);
        s.colour = match colour {
            Some(CreateArg::Str(c)) => Colour::from_name(c),
            Some(CreateArg::Int(n)) => Colour::from_number(n)?,
            Some(CreateArg::Other) | None => Colour::DEFAULT,
        };
        for o in opts {
            if let CreateArg::Str(o) = o {
                s.option(o)?;
            }
        }
        Ok(s)
    }

    /// Applies one option string.
    pub fn option(&mut self, o: &str) -> Result<(), SpecError> {
        let number = |v: &str, lo: u64, hi: u64, why| {
            v.parse::<u64>()
                .ok()
                .filter(|n| (lo..=hi).contains(n))
                .ok_or_else(|| SpecError::Value {
                    option: o.to_string(),
                    why,
                })
        };
        match o {
            "hide" => self.show = Some(false),
            "show" => self.show = Some(true),
            "keep" => self.keep = Some(true),
            "no-keep" => self.keep = Some(false),
            "line-buffering" => self.line_buffering = Some(true),
            "no-line-buffering" => self.line_buffering = Some(false),
            "timestamp" => self.timestamp = Some(true),
            "no-timestamp" => self.timestamp = Some(false),
            _ => {
                if let Some(k) = o.strip_prefix("key=") {
                    self.key = match k.as_bytes().first() {
                        None => None,
                        Some(&b) if valid_key(b) => Some(b),
                        Some(_) => return Err(SpecError::Key(k.to_string())),
                    };
                } else if let Some(v) = o.strip_prefix("bufsz=") {
                    let n = number(
                        v,
                        MIN_BUFSZ as u64,
                        MAX_BUFSZ as u64,
                        "bufsz must be 64 to 16777216 bytes",
                    )?;
                    self.bufsz = Some(n as usize);
                } else if let Some(v) = o.strip_prefix("line-buffered-ms=") {
                    let n = number(
                        v,
                        0,
                        MAX_LINE_BUFFERING_MS,
                        "line-buffered-ms must be 0 to 60000",
                    )?;
                    self.line_buffering_ms = Some(n);
                } else {
                    self.ignored.push(o.to_string());
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use CreateArg::*;

    #[test]
    fn ned_style_arguments() {
        let s = ClientSpec::parse("one", Some(Str("g")), &[Str("key=1")]).unwrap();
        assert_eq!(s.tag, "one");
        assert_eq!(s.colour, Colour::from_name("g"));
        assert_eq!(s.key, Some(b'1'));
        assert_eq!((s.show, s.keep, s.bufsz), (None, None, None));
        // vmm.lua: `create(Proto.Log, "vm" .. id, "w", "key=" .. id)`.
        let s = ClientSpec::parse("vm2", Some(Str("w")), &[Str("key=2")]).unwrap();
        assert_eq!((s.colour, s.key), (Colour::DEFAULT, Some(b'2')));
        // The static-partitioning seed: an empty colour.
        let s = ClientSpec::parse("vm1", Some(Str("")), &[Str("key=1")]).unwrap();
        assert_eq!(s.colour, Colour::DEFAULT);
        let s = ClientSpec::parse("io", Some(Str("red")), &[]).unwrap();
        assert_eq!(s.colour.number(), 1);
        let s = ClientSpec::parse("switch", Some(Str("Blue")), &[]).unwrap();
        assert_eq!(s.colour.number(), 12);
        let s = ClientSpec::parse("x", None, &[]).unwrap();
        assert_eq!(s.colour, Colour::DEFAULT);
        let s = ClientSpec::parse("x", Some(Int(3)), &[Int(5), Other]).unwrap();
        assert_eq!(s.colour.number(), 3);
    }

    #[test]
    fn options() {
        let s = ClientSpec::parse(
            "t",
            None,
            &[
                Str("hide"),
                Str("keep"),
                Str("no-line-buffering"),
                Str("timestamp"),
                Str("bufsz=1024"),
                Str("line-buffered-ms=7"),
                Str("frobnicate"),
            ],
        )
        .unwrap();
        assert_eq!(s.show, Some(false));
        assert_eq!(s.keep, Some(true));
        assert_eq!(s.line_buffering, Some(false));
        assert_eq!(s.timestamp, Some(true));
        assert_eq!(s.bufsz, Some(1024));
        assert_eq!(s.line_buffering_ms, Some(7));
        assert_eq!(s.ignored, ["frobnicate"]);
        let mut s = ClientSpec::new("t");
        for o in ["show", "no-keep", "line-buffering", "no-timestamp", "key="] {
            s.option(o).unwrap();
        }
        assert_eq!(
            (s.show, s.keep, s.line_buffering, s.timestamp, s.key),
            (Some(true), Some(false), Some(true), Some(false), None)
        );
        s.option("key=abc").unwrap();
        assert_eq!(s.key, Some(b'a'));
    }

    #[test]
    fn refusals() {
        assert_eq!(
            ClientSpec::parse("x", Some(Int(16)), &[]),
            Err(SpecError::Colour(BadColour(16)))
        );
        let mut s = ClientSpec::new("x");
        assert!(matches!(s.option("key= "), Err(SpecError::Key(_))));
        assert!(matches!(s.option("key=\u{1}"), Err(SpecError::Key(_))));
        assert!(matches!(s.option("key=é"), Err(SpecError::Key(_))));
        assert!(matches!(s.option("bufsz=1"), Err(SpecError::Value { .. })));
        assert!(matches!(s.option("bufsz=x"), Err(SpecError::Value { .. })));
        assert!(matches!(
            s.option("line-buffered-ms=-1"),
            Err(SpecError::Value { .. })
        ));
        assert!(!SpecError::Key("x".into()).to_string().is_empty());
    }

    #[test]
    fn tags() {
        assert_eq!(sanitise_tag(""), NONAME);
        assert_eq!(sanitise_tag("a b\tc\u{1b}"), "a_b_c_");
        assert_eq!(sanitise_tag(&"x".repeat(100)).len(), MAX_TAG);
        assert_eq!(sanitise_tag(&"é".repeat(40)).len(), 64);
    }
}

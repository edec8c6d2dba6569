//! The commands typed at cons's prompt (`cons> `), as L4Re's cons has them.
//!
//! A line is split at whitespace into the command and its arguments.
//! Parsing is separate from running ([`crate::Console`]) so that every
//! line, however malformed, gets either a [`Command`] or a [`CmdError`]
//! with the command's usage.

use core::fmt;

use crate::spec::valid_key;

/// Lines `tail` shows when no count is given.
pub const DEFAULT_TAIL: usize = 20;
/// The largest count `tail` takes.
pub const MAX_TAIL: usize = 100_000;

/// One command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `help`: the commands and key shortcuts.
    Help,
    /// `info`: about cons.
    Info,
    /// `clear`: clear the screen.
    Clear,
    /// `list [-l]` / `ls`: the clients.
    List {
        /// With attributes and pending input (`-l`).
        long: bool,
    },
    /// `connect NAME` / `c NAME`: focus a client.
    Connect(String),
    /// `cat NAME`: a client's whole history.
    Cat(String),
    /// `tail NAME [N]`: a client's last lines.
    Tail(String, usize),
    /// `show NAME`: show a client's output while not focused.
    Show(String),
    /// `hide NAME`: hide it.
    Hide(String),
    /// `showall`.
    ShowAll,
    /// `hideall`.
    HideAll,
    /// `keep NAME`: keep a client after it is gone.
    Keep(String),
    /// `drop NAME`: stop keeping it (removes it if it is gone).
    Drop(String),
    /// `kick NAME`: trigger a client's input interrupt.
    Kick(String),
    /// `key NAME CHAR`: set a client's key.
    Key(String, u8),
    /// `grep [-i] [-v] [-c] PATTERN [NAME...]`: search histories.
    Grep(Grep),
    /// `timestamp NAME [on|off]`: timestamps on a client's lines.
    Timestamp(String, bool),
}

/// The arguments of `grep`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grep {
    /// The text searched for.
    pub pattern: String,
    /// The clients searched (all if empty).
    pub clients: Vec<String>,
    /// Ignore case (`-i`).
    pub ignore_case: bool,
    /// Lines that do not match (`-v`).
    pub invert: bool,
    /// Only count matches (`-c`).
    pub count: bool,
}

/// The commands: name, arguments, help text; `None` help for aliases.
pub const COMMANDS: &[(&str, &str, Option<&str>)] = &[
    ("c", "NAME", None),
    ("cat", "NAME", Some("Dump buffer of channel")),
    ("clear", "", Some("Clear screen")),
    ("connect", "NAME", Some("Connect to channel")),
    ("drop", "NAME", Some("Drop kept client")),
    (
        "grep",
        "[-i] [-v] [-c] TEXT [NAME...]",
        Some("Search for text"),
    ),
    ("help", "", Some("Help screen")),
    ("hide", "NAME", Some("Hide channel output")),
    ("hideall", "", Some("Hide all channels output")),
    ("info", "", Some("Info screen")),
    ("keep", "NAME", Some("Keep client from garbage collection")),
    ("key", "NAME CHAR", Some("Set key shortcut for channel")),
    (
        "kick",
        "NAME",
        Some("Trigger the channel's input interrupt"),
    ),
    ("list", "[-l]", Some("List channels")),
    ("ls", "[-l]", None),
    ("show", "NAME", Some("Show channel output")),
    ("showall", "", Some("Show all channels output")),
    ("tail", "NAME [N]", Some("Show last lines of output")),
    (
        "timestamp",
        "NAME [on|off]",
        Some("Prefix log with timestamp"),
    ),
];

/// Why a line is not a command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CmdError {
    /// No such command.
    Unknown(String),
    /// Wrong arguments: the command and its usage.
    Usage(&'static str, &'static str),
    /// A count that is not a number in range.
    BadNumber(&'static str, String),
    /// A key that is not a printable ASCII character.
    BadKey(String),
}

impl fmt::Display for CmdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CmdError::Unknown(c) => write!(f, "Unknown command '{c}'. {}", short_help()),
            CmdError::Usage(c, args) => write!(f, "usage: {c} {args}"),
            CmdError::BadNumber(c, a) => write!(f, "{c}: invalid number '{a}'"),
            CmdError::BadKey(k) => {
                write!(f, "key: '{k}' is not a printable ASCII character")
            }
        }
    }
}

impl std::error::Error for CmdError {}

/// One line naming every command.
pub fn short_help() -> String {
    let names: Vec<&str> = COMMANDS
        .iter()
        .filter(|c| c.2.is_some())
        .map(|c| c.0)
        .collect();
    format!("Commands: {}.", names.join(" "))
}

fn usage(name: &'static str) -> CmdError {
    let args = COMMANDS.iter().find(|c| c.0 == name).map_or("", |c| c.1);
    CmdError::Usage(name, args)
}

/// The static name of a known command.
fn known(name: &str) -> Option<&'static str> {
    COMMANDS.iter().find(|c| c.0 == name).map(|c| c.0)
}

/// Parses a line; `Ok(None)` for an empty one.
pub fn parse(line: &str) -> Result<Option<Command>, CmdError> {
    let mut words = line.split_whitespace();
    let Some(first) = words.next() else {
        return Ok(None);
    };
    let args: Vec<&str> = words.collect();
    let name = known(first).ok_or_else(|| CmdError::Unknown(first.to_string()))?;
    let one = || match args.as_slice() {
        [a] => Ok(a.to_string()),
        _ => Err(usage(name)),
    };
    let none = |c: Command| {
        if args.is_empty() {
            Ok(c)
        } else {
            Err(usage(name))
        }
    };
    let cmd = match name {
        "help" => none(Command::Help)?,
        "info" => none(Command::Info)?,
        "clear" => none(Command::Clear)?,
        "showall" => none(Command::ShowAll)?,
        "hideall" => none(Command::HideAll)?,
        "list" | "ls" => match args.as_slice() {
            [] => Command::List { long: false },
            ["-l"] => Command::List { long: true },
            _ => return Err(usage(name)),
        },
        "connect" | "c" => Command::Connect(one()?),
        "cat" => Command::Cat(one()?),
        "show" => Command::Show(one()?),
        "hide" => Command::Hide(one()?),
        "keep" => Command::Keep(one()?),
        "drop" => Command::Drop(one()?),
        "kick" => Command::Kick(one()?),
        "tail" => match args.as_slice() {
            [n] => Command::Tail(n.to_string(), DEFAULT_TAIL),
            [n, count] => {
                let c = count
                    .parse::<usize>()
                    .ok()
                    .filter(|c| *c <= MAX_TAIL)
                    .ok_or_else(|| CmdError::BadNumber(name, count.to_string()))?;
                Command::Tail(n.to_string(), c)
            }
            _ => return Err(usage(name)),
        },
        "key" => match args.as_slice() {
            [n, k] => match k.as_bytes() {
                [b] if valid_key(*b) => Command::Key(n.to_string(), *b),
                _ => return Err(CmdError::BadKey(k.to_string())),
            },
            _ => return Err(usage(name)),
        },
        "timestamp" => match args.as_slice() {
            [n] | [n, "on"] => Command::Timestamp(n.to_string(), true),
            [n, "off"] => Command::Timestamp(n.to_string(), false),
            _ => return Err(usage(name)),
        },
        "grep" => {
            let mut g = Grep::default();
            let mut rest = args.iter();
            let mut pattern = None;
            for a in rest.by_ref() {
                match *a {
                    "-i" => g.ignore_case = true,
                    "-v" => g.invert = true,
                    "-c" => g.count = true,
                    _ => {
                        pattern = Some(a.to_string());
                        break;
                    }
                }
            }
            g.pattern = pattern.ok_or_else(|| usage(name))?;
            g.clients = rest.map(|s| s.to_string()).collect();
            Command::Grep(g)
        }
        _ => return Err(CmdError::Unknown(first.to_string())),
    };
    Ok(Some(cmd))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Option<Command>, CmdError> {
        parse(s)
    }

    #[test]
    fn commands() {
        assert_eq!(p(""), Ok(None));
        assert_eq!(p("   "), Ok(None));
        assert_eq!(p("help"), Ok(Some(Command::Help)));
        assert_eq!(p(" ls "), Ok(Some(Command::List { long: false })));
        assert_eq!(p("list -l"), Ok(Some(Command::List { long: true })));
        assert_eq!(p("c vm1"), Ok(Some(Command::Connect("vm1".into()))));
        assert_eq!(p("connect\tvm1"), Ok(Some(Command::Connect("vm1".into()))));
        assert_eq!(p("cat io"), Ok(Some(Command::Cat("io".into()))));
        assert_eq!(p("tail io"), Ok(Some(Command::Tail("io".into(), 20))));
        assert_eq!(p("tail io 5"), Ok(Some(Command::Tail("io".into(), 5))));
        assert_eq!(p("show a"), Ok(Some(Command::Show("a".into()))));
        assert_eq!(p("hide a"), Ok(Some(Command::Hide("a".into()))));
        assert_eq!(p("showall"), Ok(Some(Command::ShowAll)));
        assert_eq!(p("hideall"), Ok(Some(Command::HideAll)));
        assert_eq!(p("keep a"), Ok(Some(Command::Keep("a".into()))));
        assert_eq!(p("drop a"), Ok(Some(Command::Drop("a".into()))));
        assert_eq!(p("kick a"), Ok(Some(Command::Kick("a".into()))));
        assert_eq!(p("key a x"), Ok(Some(Command::Key("a".into(), b'x'))));
        assert_eq!(
            p("timestamp a"),
            Ok(Some(Command::Timestamp("a".into(), true)))
        );
        assert_eq!(
            p("timestamp a off"),
            Ok(Some(Command::Timestamp("a".into(), false)))
        );
        assert_eq!(p("info"), Ok(Some(Command::Info)));
        assert_eq!(p("clear"), Ok(Some(Command::Clear)));
        assert_eq!(
            p("grep -i -c err vm1 vm2"),
            Ok(Some(Command::Grep(Grep {
                pattern: "err".into(),
                clients: vec!["vm1".into(), "vm2".into()],
                ignore_case: true,
                invert: false,
                count: true,
            })))
        );
        assert_eq!(
            p("grep -v x"),
            Ok(Some(Command::Grep(Grep {
                pattern: "x".into(),
                invert: true,
                ..Grep::default()
            })))
        );
    }

    #[test]
    fn errors() {
        let unknown = p("frob x").unwrap_err();
        assert_eq!(unknown, CmdError::Unknown("frob".into()));
        let text = unknown.to_string();
        assert!(text.starts_with("Unknown command 'frob'. Commands: "));
        assert!(text.contains("connect") && !text.contains(" c "));
        assert_eq!(p("connect"), Err(CmdError::Usage("connect", "NAME")));
        assert_eq!(p("cat a b"), Err(CmdError::Usage("cat", "NAME")));
        assert_eq!(p("help me"), Err(CmdError::Usage("help", "")));
        assert_eq!(p("ls -x"), Err(CmdError::Usage("ls", "[-l]")));
        assert_eq!(p("tail"), Err(CmdError::Usage("tail", "NAME [N]")));
        assert_eq!(p("tail a b c"), Err(CmdError::Usage("tail", "NAME [N]")));
        assert_eq!(p("tail a x"), Err(CmdError::BadNumber("tail", "x".into())));
        assert_eq!(
            p("tail a 999999999"),
            Err(CmdError::BadNumber("tail", "999999999".into()))
        );
        assert_eq!(p("key a"), Err(CmdError::Usage("key", "NAME CHAR")));
        assert_eq!(p("key a xy"), Err(CmdError::BadKey("xy".into())));
        assert_eq!(
            p("timestamp a maybe").unwrap_err().to_string(),
            "usage: timestamp NAME [on|off]"
        );
        assert_eq!(
            p("grep"),
            Err(CmdError::Usage("grep", "[-i] [-v] [-c] TEXT [NAME...]"))
        );
        assert_eq!(
            p("grep -i"),
            Err(CmdError::Usage("grep", "[-i] [-v] [-c] TEXT [NAME...]"))
        );
        assert_eq!(
            p("tail a x").unwrap_err().to_string(),
            "tail: invalid number 'x'"
        );
    }
}

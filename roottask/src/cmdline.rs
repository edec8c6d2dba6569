//! moe's command line: `[--init=rom/prog] [options] [init arguments...]`.
//!
//! As L4Re's moe: options come first; the first word that is not an
//! option and everything after it are the init program's arguments. The
//! init program defaults to [`DEFAULT_INIT`] (ned), so `roottask moe
//! rom/hello.ned` starts `rom/ned rom/hello.ned`, and `roottask moe
//! --init=rom/stdtest` starts `rom/stdtest` alone.

use alloc::vec::Vec;

use l4_cmdline::{Word, parse_number};

/// The init program when no `--init=` is given.
pub const DEFAULT_INIT: &str = "rom/ned";

/// The parsed command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MoeArgs<'a> {
    /// The init program (`rom/name`).
    pub init: &'a str,
    /// Its arguments.
    pub init_args: Vec<&'a str>,
    /// `--l4re-dbg=`: debug flags for the runtime of init.
    pub l4re_dbg: u32,
    /// `--ldr-flags=`: loader flags (accepted, not used yet).
    pub ldr_flags: u32,
    /// `--debug=`: moe's own debug flags (accepted, not used yet).
    pub debug: Option<&'a str>,
    /// Options moe does not know (reported, otherwise ignored).
    pub unknown: Vec<&'a str>,
    /// Options with a bad value.
    pub bad: Vec<&'a str>,
}

/// Parses moe's command line (the words after `moe` in modules.list).
pub fn parse(cmdline: &str) -> MoeArgs<'_> {
    let mut a = MoeArgs {
        init: DEFAULT_INIT,
        init_args: Vec::new(),
        l4re_dbg: 0,
        ldr_flags: 0,
        debug: None,
        unknown: Vec::new(),
        bad: Vec::new(),
    };
    let mut words = l4_cmdline::words(cmdline);
    for w in words.by_ref() {
        let (name, value, word) = match w {
            Word::Opt {
                name,
                value,
                long: true,
                word,
            } => (name, value.unwrap_or(""), word),
            Word::Opt { word, .. } | Word::Arg(word) => {
                a.init_args.push(word);
                break;
            }
            Word::End => break,
        };
        let number = || parse_number(value).and_then(|v| u32::try_from(v).ok());
        match name {
            "init" if !value.is_empty() => a.init = value,
            "debug" => a.debug = Some(value),
            "l4re-dbg" => match number() {
                Some(v) => a.l4re_dbg = v,
                None => a.bad.push(word),
            },
            "ldr-flags" => match number() {
                Some(v) => a.ldr_flags = v,
                None => a.bad.push(word),
            },
            "init" => a.bad.push(word),
            _ => a.unknown.push(word),
        }
    }
    a.init_args.extend(words.rest());
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_for_ned() {
        let a = parse("rom/hello.ned");
        assert_eq!(a.init, "rom/ned");
        assert_eq!(a.init_args, ["rom/hello.ned"]);
        assert!(a.unknown.is_empty() && a.bad.is_empty());
    }

    #[test]
    fn plain_init_program() {
        let a = parse("--init=rom/stdtest");
        assert_eq!(a.init, "rom/stdtest");
        assert!(a.init_args.is_empty());
        let a = parse("  --init=rom/x   a  --b  c ");
        assert_eq!(
            (a.init, a.init_args),
            ("rom/x", alloc::vec!["a", "--b", "c"])
        );
    }

    #[test]
    fn options() {
        let a = parse("--l4re-dbg=0x10 --ldr-flags=3 --debug=all --frob --init= x");
        assert_eq!((a.l4re_dbg, a.ldr_flags, a.debug), (0x10, 3, Some("all")));
        assert_eq!(a.unknown, ["--frob"]);
        assert_eq!(a.bad, ["--init="]);
        assert_eq!(a.init, DEFAULT_INIT);
        assert_eq!(a.init_args, ["x"]);
        let a = parse("--l4re-dbg=zz --ldr-flags=0x1_0000_0000");
        assert_eq!(a.bad.len(), 2);
        let a = parse("-- --init=rom/y");
        assert_eq!(
            (a.init, a.init_args),
            (DEFAULT_INIT, alloc::vec!["--init=rom/y"])
        );
        let a = parse("");
        assert_eq!((a.init, a.init_args.len()), (DEFAULT_INIT, 0));
        let a = parse("-v --l4re-dbg=0XfF");
        assert_eq!(
            (a.l4re_dbg, a.init_args),
            (0, alloc::vec!["-v", "--l4re-dbg=0XfF"])
        );
        assert_eq!(parse("--l4re-dbg=0XfF").l4re_dbg, 255);
    }
}

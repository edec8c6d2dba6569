//! moe's command line: `[--init=rom/prog] [options] [init arguments...]`.
//!
//! As L4Re's moe: options come first; the first word that is not an
//! option and everything after it are the init program's arguments. The
//! init program defaults to [`DEFAULT_INIT`] (ned), so `roottask moe
//! rom/hello.ned` starts `rom/ned rom/hello.ned`, and `roottask moe
//! --init=rom/stdtest` starts `rom/stdtest` alone.

use alloc::vec::Vec;

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

/// Reads a number in decimal or `0x` hexadecimal.
pub fn parse_number(s: &str) -> Option<u64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
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
    let mut words = cmdline.split_ascii_whitespace();
    for w in words.by_ref() {
        if !w.starts_with("--") {
            a.init_args.push(w);
            break;
        }
        let (name, value) = w.split_once('=').unwrap_or((w, ""));
        let number = || parse_number(value).and_then(|v| u32::try_from(v).ok());
        match name {
            "--" => break,
            "--init" if !value.is_empty() => a.init = value,
            "--debug" => a.debug = Some(value),
            "--l4re-dbg" => match number() {
                Some(v) => a.l4re_dbg = v,
                None => a.bad.push(w),
            },
            "--ldr-flags" => match number() {
                Some(v) => a.ldr_flags = v,
                None => a.bad.push(w),
            },
            "--init" => a.bad.push(w),
            _ => a.unknown.push(w),
        }
    }
    a.init_args.extend(words);
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
        assert_eq!(parse_number("0XfF"), Some(255));
    }
}

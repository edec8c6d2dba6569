//! Building a task's environment page, and names of programs.

use alloc::boxed::Box;
use l4_env::{Env, EnvError, caps};

/// Splits a command line at runs of white space (as L4Re's loader splits
/// `start(env, "prog args")`).
pub fn split_args(cmdline: &str) -> impl Iterator<Item = &str> {
    cmdline.split_ascii_whitespace()
}

/// The module name of a `rom/` path (`rom/ned` gives `ned`); `None` if the
/// path does not start with `rom/` or names nothing.
pub fn rom_name(path: &str) -> Option<&str> {
    path.strip_prefix("rom/").filter(|n| !n.is_empty())
}

/// The last component of a path (`rom/hello` gives `hello`): the default
/// log tag of a program.
pub fn program_basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The environment page of a program: `program` is `argv[0]` (`rom/x`),
/// then `args`; `envs` are `NAME=value` strings; named capability `i` of
/// `names` is at [`caps::FIRST_NAMED`] + `i` in the task. `dbg` is the
/// runtime's debug flags (`l4re_dbg`).
pub fn build_env(
    program: &str,
    args: &[&str],
    envs: &[&str],
    names: &[&str],
    dbg: u32,
) -> Result<Box<Env>, EnvError> {
    let mut e = Box::new(Env::new());
    e.dbg = dbg;
    e.push_arg(program)?;
    for a in args {
        e.push_arg(a)?;
    }
    for v in envs {
        e.push_env(v)?;
    }
    for (i, n) in names.iter().enumerate() {
        e.add_cap(n, caps::FIRST_NAMED + i as u64)?;
    }
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    #[test]
    fn names() {
        assert_eq!(rom_name("rom/ned"), Some("ned"));
        assert_eq!(rom_name("rom/"), None);
        assert_eq!(rom_name("ned"), None);
        assert_eq!(rom_name("rom/a/b"), Some("a/b"));
        assert_eq!(program_basename("rom/hello"), "hello");
        assert_eq!(program_basename("hello"), "hello");
        assert_eq!(
            split_args("  rom/x   -v\targ ").collect::<Vec<_>>(),
            ["rom/x", "-v", "arg"]
        );
    }

    #[test]
    fn builds_the_page() {
        let e = build_env("rom/ned", &["rom/hello.ned"], &["A=1"], &["rom", "icu"], 3).unwrap();
        assert!(e.is_valid());
        assert_eq!(e.args().collect::<Vec<_>>(), ["rom/ned", "rom/hello.ned"]);
        assert_eq!(e.envs().collect::<Vec<_>>(), ["A=1"]);
        assert_eq!(e.cap("rom"), Some(caps::FIRST_NAMED));
        assert_eq!(e.cap("icu"), Some(caps::FIRST_NAMED + 1));
        assert_eq!(e.dbg, 3);
        assert_eq!(
            build_env("rom/x", &[], &[], &["a", "a"], 0).err(),
            Some(EnvError::BadName)
        );
        let long = "y".repeat(7000);
        assert_eq!(
            build_env("rom/x", &[&long], &[], &[], 0).err(),
            Some(EnvError::NoRoom)
        );
    }
}

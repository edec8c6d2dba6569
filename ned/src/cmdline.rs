//! ned's command line: `[--exit|--wait-and-exit] [-e STMT]... script [args]`
//! (moe passes what follows `roottask moe` in `modules.list`).

use std::fmt;

/// What ned does after the script.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum After {
    /// Keep running: reap tasks, run exit handlers, then wait forever.
    #[default]
    Serve,
    /// Exit at once (`--exit`).
    Exit,
    /// Wait until every started task has ended, then exit
    /// (`--wait-and-exit`).
    WaitAndExit,
}

/// A parsed command line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CmdLine {
    /// What to do after the script.
    pub after: After,
    /// `-e` statements, run in order before the script.
    pub statements: Vec<String>,
    /// The script (`rom/x.ned`).
    pub script: Option<String>,
    /// Its arguments (Lua's `arg[1]`, ...).
    pub args: Vec<String>,
}

/// A command line ned cannot follow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (usage: {USAGE})", self.0)
    }
}

impl std::error::Error for UsageError {}

/// The usage line.
pub const USAGE: &str = "ned [--exit|--wait-and-exit] [-e STMT]... script [args]";

/// Parses the arguments after the program name.
pub fn parse<I, S>(args: I) -> Result<CmdLine, UsageError>
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    use lexopt::prelude::*;

    let usage = |e: lexopt::Error| UsageError(e.to_string());
    let string = |v: std::ffi::OsString| v.string().map_err(usage);
    let mut c = CmdLine::default();
    let mut p = lexopt::Parser::from_args(args.into_iter().map(Into::into));
    // `-e=x` runs `=x`, as a shell's `-c` would.
    p.set_short_equals(false);
    while let Some(arg) = p.next().map_err(usage)? {
        match arg {
            Long("exit") => c.after = After::Exit,
            Long("wait-and-exit") => c.after = After::WaitAndExit,
            Short('e') => match p.value() {
                Ok(stmt) => c.statements.push(string(stmt)?),
                Err(_) => return Err(UsageError("-e needs a statement".into())),
            },
            Value(script) => {
                c.script = Some(string(script)?);
                break;
            }
            Short(o) => return Err(UsageError(format!("unknown option '-{o}'"))),
            Long(o) => return Err(UsageError(format!("unknown option '--{o}'"))),
        }
    }
    for a in p.raw_args().map_err(usage)? {
        c.args.push(string(a)?);
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_and_arguments() {
        let c = parse(["rom/hello.ned"]).unwrap();
        assert_eq!(c.script.as_deref(), Some("rom/hello.ned"));
        assert_eq!(c.after, After::Serve);
        assert!(c.args.is_empty());

        let c = parse([
            "--wait-and-exit",
            "-e",
            "x = 1",
            "-ey = 2",
            "rom/a.ned",
            "-v",
            "--exit",
        ])
        .unwrap();
        assert_eq!(c.after, After::WaitAndExit);
        assert_eq!(c.statements, ["x = 1", "y = 2"]);
        assert_eq!(c.script.as_deref(), Some("rom/a.ned"));
        assert_eq!(
            c.args,
            ["-v", "--exit"],
            "options after the script are its own"
        );

        let c = parse(["--exit", "-e", "print(1)"]).unwrap();
        assert_eq!(c.script, None);
        assert_eq!(c.after, After::Exit);
        assert_eq!(
            parse(["--", "-x.ned"]).unwrap().script.as_deref(),
            Some("-x.ned")
        );
    }

    #[test]
    fn bad_command_lines() {
        assert!(parse(["-e"]).is_err());
        let e = parse(["--frobnicate", "x"]).unwrap_err();
        assert!(e.to_string().contains("unknown option '--frobnicate'"));
        assert!(e.to_string().contains("usage: ned"));
        let e = parse(["-x"]).unwrap_err();
        assert_eq!(e.0, "unknown option '-x'");
        assert_eq!(parse(["-e"]).unwrap_err().0, "-e needs a statement");
        assert!(parse(["--exit=1"]).is_err());
    }
}

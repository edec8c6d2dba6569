//! A test client for cons: `echoclient NAME [PERIOD_SECS]`.
//!
//! Prints `NAME: hello from NAME (N)` every `PERIOD_SECS` seconds (default
//! 2; 0 greets once) from a second thread, and answers every line it reads
//! from stdin with `NAME: got 'LINE'`. At the end of its input it says so
//! and exits. Started by ned with a cons log (`conf/cons-test.ned`), its
//! output is tagged by cons unless it is focused, and what is typed after
//! Ctrl-E and its key is what it reads.

use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::time::Duration;

/// The default greeting period in seconds.
const DEFAULT_PERIOD: u64 = 2;

/// The command line.
#[derive(Debug, PartialEq, Eq)]
struct Args {
    name: String,
    period: u64,
}

/// Parses the arguments after the program name.
fn parse_args(args: &[String]) -> Result<Args, String> {
    match args {
        [] => Err("usage: echoclient NAME [PERIOD_SECS]".into()),
        [name] => Ok(Args {
            name: name.clone(),
            period: DEFAULT_PERIOD,
        }),
        [name, p] => p
            .parse()
            .map(|period| Args {
                name: name.clone(),
                period,
            })
            .map_err(|_| format!("echoclient: bad period '{p}' (seconds expected)")),
        _ => Err("usage: echoclient NAME [PERIOD_SECS]".into()),
    }
}

/// The n-th greeting.
fn greeting(name: &str, n: u64) -> String {
    format!("{name}: hello from {name} ({n})")
}

/// The answer to a line read.
fn echo(name: &str, line: &str) -> String {
    let line = line.strip_suffix('\r').unwrap_or(line);
    format!("{name}: got '{line}'")
}

/// Prints a line at once (the log shows it when its newline arrives).
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse_args(&args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    say(&greeting(&args.name, 1));
    if args.period > 0 {
        let name = args.name.clone();
        let period = Duration::from_secs(args.period);
        let spawned = std::thread::Builder::new()
            .name("greeter".into())
            .spawn(move || {
                for n in 2.. {
                    std::thread::sleep(period);
                    say(&greeting(&name, n));
                }
            });
        if let Err(e) = spawned {
            eprintln!("{}: cannot start the greeter thread: {e}", args.name);
        }
    }
    for line in std::io::stdin().lock().lines() {
        match line {
            Ok(l) => say(&echo(&args.name, &l)),
            Err(e) => {
                eprintln!("{}: reading stdin: {e}", args.name);
                return ExitCode::FAILURE;
            }
        }
    }
    say(&format!("{}: end of input", args.name));
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn arguments() {
        assert_eq!(
            parse_args(&strings(&["one"])),
            Ok(Args {
                name: "one".into(),
                period: DEFAULT_PERIOD
            })
        );
        assert_eq!(
            parse_args(&strings(&["two", "0"])),
            Ok(Args {
                name: "two".into(),
                period: 0
            })
        );
        assert!(parse_args(&[]).is_err());
        assert!(parse_args(&strings(&["a", "x"])).is_err());
        assert!(parse_args(&strings(&["a", "1", "2"])).is_err());
    }

    #[test]
    fn lines() {
        assert_eq!(greeting("one", 3), "one: hello from one (3)");
        assert_eq!(echo("one", "hello one"), "one: got 'hello one'");
        assert_eq!(echo("two", "x\r"), "two: got 'x'");
    }
}

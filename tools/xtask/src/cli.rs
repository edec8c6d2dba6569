//! Command line: `cargo xtask <command> [KEY=value]... [flags]`.
//!
//! Like L4Re's make, variables are given as `KEY=value` arguments or taken from
//! the environment (arguments win); an empty value counts as unset.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::error::{Error, Result, bail};

pub const USAGE: &str = "\
usage: cargo xtask <command> [KEY=value]... [flags]

commands:
  build               build the boot stage, kernel and root task (release)
  image E=<entry>     build and pack a modules.list entry into target/images/<entry>.img
  qemu E=<entry>      build, pack and boot an entry in QEMU (quit with Ctrl-A x)
  plan E=<entry> [--strict] [-i] [--all]
                      run the entry's ned script on the host and show the system it
                      builds (tasks, schedulers, capabilities, dataspaces, VMs, io's
                      buses); check partitions (memory, guest RAM over MMIO, devices
                      on two buses, shared CPUs, console keys, missing modules and
                      capabilities); draw it to target/plan/<entry>.svg. --strict:
                      VMs sharing a CPU is an error; -i: describe host ranges of
                      identity-mapped RAM; --all: every entry. Fails when a check does
  list                list the entries of the modules list
  guest               fetch the Debian arm64 kernel and busybox once and build the
                      guest files in target/guest/ (Image.gz, ramdisk-armv8*.cpio.gz);
                      image/qemu/test do it for entries that need them
  test [--host] [-v] [<scenario>...]
                      host unit tests, then every QEMU scenario in tests/scenarios/;
                      with names only those scenarios, with --host only the host tests,
                      -v echoes the console while a scenario runs
  bench boot E=<entry> [--runs N] [--timeout SECS] [--settle SECS]
            [--stage-marker TEXT] [--kernel-marker TEXT] [--roottask-marker TEXT]
                      boot an entry N times (default 5) and print median boot times,
                      each program's first line and what its start cost
  bench ipc [E=<entry>] [--timeout SECS]
                      boot an entry (default ipcbench) headless once, wait for
                      `ipcbench: done` (default 300 s) and print the IPC costs
  bench vm [--runs N] [--timeout SECS] [--exits-only]
                      boot the guest kernel and ramdisk natively and under uvmm,
                      alternating, N times each (default 5), and print the median
                      times to the guest's ready line; before that, boot entry
                      vmbench once and print the instructions of one MMIO exit,
                      HVC, SGI and virtual-timer interrupt
  bench staticpart [--runs N] [--timeout SECS]
                      boot the guest natively and entry uvmm-staticpart,
                      alternating, N times each (default 3), and print the median
                      times until its shell / both VMs' shells are up
  bench net [--rounds N] [--timeout SECS]
                      two guests on the virtio switch (entry uvmm-2vm-net): TCP
                      throughput VM1 -> VM2 (64 MiB through busybox nc) and ping
                      round trip; the same under plain QEMU (two QEMUs, virtio-net
                      on a socket network) for scale; both up at once, taking
                      turns for N rounds (default 3)
  lint                cargo fmt --check and clippy -D warnings for every crate and target
  help                this text

variables (KEY=value argument or environment variable):
  E                   the modules.list entry; without it image/qemu/bench boot show a menu
  MODULES_LIST        modules list file (default: <repo>/modules.list)
  MODULE_SEARCH_PATH  extra module directories, colon separated, searched first
  QEMU_OPTIONS        extra QEMU options, appended (shell-like quoting)
";

/// Variables the tool knows; anything else spelled `KEY=value` is an error.
const VARIABLES: [&str; 4] = ["E", "MODULES_LIST", "MODULE_SEARCH_PATH", "QEMU_OPTIONS"];

/// Marker lines that `bench boot` times by default (first match of each, in order).
pub const DEFAULT_STAGE_MARKER: &str = "L4 Bootstrapper";
pub const DEFAULT_KERNEL_MARKER: &str = "CPUs online";
pub const DEFAULT_ROOTTASK_MARKER: &str = "moe: hello from the root task";

/// The entry `bench ipc` boots without `E`.
pub const DEFAULT_IPC_ENTRY: &str = "ipcbench";

/// The benchmarks `bench` knows, for messages.
const BENCHMARKS: &str = "boot, ipc, vm, staticpart, net";

#[derive(Debug, PartialEq)]
pub struct Invocation {
    pub command: Command,
    pub vars: Vars,
}

#[derive(Debug, PartialEq)]
pub enum Command {
    Build,
    Image,
    Qemu,
    List,
    Guest,
    Test(TestArgs),
    Bench(Bench),
    Plan(PlanArgs),
    Lint,
    Help,
}

#[derive(Debug, Default, PartialEq)]
pub struct TestArgs {
    /// Only the host unit tests.
    pub host_only: bool,
    /// Echo the console of each scenario while it runs.
    pub verbose: bool,
    /// Scenario names; empty means host tests plus all scenarios.
    pub scenarios: Vec<String>,
}

/// `plan [--strict] [-i] [--all]`.
#[derive(Debug, Default, PartialEq)]
pub struct PlanArgs {
    /// VMs whose schedulers share a CPU are an error, not a warning.
    pub strict: bool,
    /// Describe the host side of identity-mapped guest RAM.
    pub identity: bool,
    /// Every entry of the modules list.
    pub all: bool,
}

/// `bench <name> [flags]`.
#[derive(Debug, PartialEq)]
pub enum Bench {
    Boot(BootBenchArgs),
    Ipc(IpcBenchArgs),
    Vm(VmBenchArgs),
    Staticpart(StaticpartBenchArgs),
    Net(NetBenchArgs),
}

#[derive(Debug, PartialEq)]
pub struct BootBenchArgs {
    pub runs: usize,
    pub timeout: Duration,
    /// How long no program may report its start before a run ends.
    pub settle: Duration,
    pub stage_marker: String,
    pub kernel_marker: String,
    pub roottask_marker: String,
}

impl Default for BootBenchArgs {
    fn default() -> Self {
        BootBenchArgs {
            runs: 5,
            timeout: Duration::from_secs(60),
            settle: Duration::from_secs(2),
            stage_marker: DEFAULT_STAGE_MARKER.into(),
            kernel_marker: DEFAULT_KERNEL_MARKER.into(),
            roottask_marker: DEFAULT_ROOTTASK_MARKER.into(),
        }
    }
}

#[derive(Debug, PartialEq)]
pub struct IpcBenchArgs {
    /// How long to wait for `ipcbench: done` after QEMU's start.
    pub timeout: Duration,
}

impl Default for IpcBenchArgs {
    fn default() -> Self {
        IpcBenchArgs {
            timeout: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, PartialEq)]
pub struct VmBenchArgs {
    pub runs: usize,
    /// How long one boot may take to reach the ready line.
    pub timeout: Duration,
    /// Only the VM exits (entry `vmbench`), no Linux boots.
    pub exits_only: bool,
}

impl Default for VmBenchArgs {
    fn default() -> Self {
        VmBenchArgs {
            runs: 5,
            timeout: Duration::from_secs(120),
            exits_only: false,
        }
    }
}

#[derive(Debug, PartialEq)]
pub struct StaticpartBenchArgs {
    /// Boots of each kind, alternating.
    pub runs: usize,
    /// How long each boot may take until its shell(s) are up.
    pub timeout: Duration,
}

impl Default for StaticpartBenchArgs {
    fn default() -> Self {
        StaticpartBenchArgs {
            runs: 3,
            timeout: Duration::from_secs(600),
        }
    }
}

#[derive(Debug, PartialEq)]
pub struct NetBenchArgs {
    /// How long each machine may take to boot, and the rounds altogether.
    pub timeout: Duration,
    /// Rounds of stream and pings, the setups taking turns.
    pub rounds: usize,
}

impl Default for NetBenchArgs {
    fn default() -> Self {
        NetBenchArgs {
            timeout: Duration::from_secs(1800),
            rounds: 3,
        }
    }
}

/// The make-like variables after merging arguments over the environment.
#[derive(Debug, Default, PartialEq)]
pub struct Vars {
    pub entry: Option<String>,
    pub modules_list: Option<PathBuf>,
    pub module_search_path: Vec<PathBuf>,
    /// Raw `QEMU_OPTIONS`; split shell-like where it is used.
    pub qemu_options: Option<String>,
}

/// Parses the arguments after `cargo xtask`; `env` looks up environment variables.
pub fn parse(args: &[String], env: impl Fn(&str) -> Option<String>) -> Result<Invocation> {
    let mut values: Vec<(&str, String)> = VARIABLES
        .iter()
        .filter_map(|&key| env(key).map(|value| (key, value)))
        .collect();
    let mut rest = Vec::new();
    for arg in args {
        match split_assignment(arg) {
            Some((key, value)) => {
                let Some(&key) = VARIABLES.iter().find(|&&k| k == key) else {
                    bail!("unknown variable '{key}' (known: {})", VARIABLES.join(", "));
                };
                values.retain(|(k, _)| *k != key);
                values.push((key, value.to_string()));
            }
            None => rest.push(arg.as_str()),
        }
    }
    let get = |key: &str| {
        values
            .iter()
            .find(|(k, v)| *k == key && !v.is_empty())
            .map(|(_, v)| v.clone())
    };
    let vars = Vars {
        entry: get("E"),
        modules_list: get("MODULES_LIST").map(PathBuf::from),
        module_search_path: get("MODULE_SEARCH_PATH")
            .map(|p| split_search_path(&p))
            .unwrap_or_default(),
        qemu_options: get("QEMU_OPTIONS"),
    };

    let (name, flags) = match rest.split_first() {
        Some((name, flags)) => (*name, flags),
        None => ("help", &[][..]),
    };
    let command = match name {
        "build" => no_flags(Command::Build, name, flags)?,
        "image" => no_flags(Command::Image, name, flags)?,
        "qemu" => no_flags(Command::Qemu, name, flags)?,
        "list" => no_flags(Command::List, name, flags)?,
        "guest" => no_flags(Command::Guest, name, flags)?,
        "lint" => no_flags(Command::Lint, name, flags)?,
        "help" | "-h" | "--help" => Command::Help,
        "test" => Command::Test(parse_test(flags)?),
        "bench" => Command::Bench(parse_bench(flags)?),
        "plan" => Command::Plan(parse_plan(flags)?),
        other => bail!("unknown command '{other}'; see `cargo xtask help`"),
    };
    Ok(Invocation { command, vars })
}

/// `KEY=value` with an upper-case shell-variable name; anything else is not one.
fn split_assignment(arg: &str) -> Option<(&str, &str)> {
    let (key, value) = arg.split_once('=')?;
    let mut chars = key.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_uppercase() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    (first_ok && rest_ok).then_some((key, value))
}

/// `a:b::c` -> `[a, b, c]` (empty elements are skipped).
pub fn split_search_path(value: &str) -> Vec<PathBuf> {
    value
        .split(':')
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .collect()
}

fn no_flags(command: Command, name: &str, flags: &[&str]) -> Result<Command> {
    match flags.first() {
        None => Ok(command),
        Some(arg) if !arg.starts_with('-') && matches!(command, Command::Image | Command::Qemu) => {
            bail!("unexpected argument '{arg}' for '{name}' (did you mean E={arg}?)")
        }
        Some(arg) => bail!("unexpected argument '{arg}' for '{name}'; see `cargo xtask help`"),
    }
}

fn parse_test(flags: &[&str]) -> Result<TestArgs> {
    let mut args = TestArgs::default();
    for &flag in flags {
        match flag {
            "--host" => args.host_only = true,
            "-v" | "--verbose" => args.verbose = true,
            f if f.starts_with('-') => bail!("unknown flag '{f}' for 'test'"),
            name => args.scenarios.push(name.to_string()),
        }
    }
    if args.host_only && !args.scenarios.is_empty() {
        bail!("'test --host' runs no scenario; drop --host or the scenario names");
    }
    Ok(args)
}

fn parse_plan(flags: &[&str]) -> Result<PlanArgs> {
    let mut args = PlanArgs::default();
    for &flag in flags {
        match flag {
            "--strict" => args.strict = true,
            "-i" => args.identity = true,
            "--all" => args.all = true,
            f if !f.starts_with('-') => {
                bail!("unexpected argument '{f}' for 'plan' (did you mean E={f}?)")
            }
            f => bail!("unknown flag '{f}' for 'plan'"),
        }
    }
    Ok(args)
}

fn parse_bench(flags: &[&str]) -> Result<Bench> {
    let Some((&kind, flags)) = flags.split_first() else {
        bail!("'bench' needs a benchmark name (known: {BENCHMARKS}), e.g. `cargo xtask bench ipc`");
    };
    match kind {
        "boot" => parse_bench_boot(flags).map(Bench::Boot),
        "ipc" => parse_bench_timeout(flags, kind, IpcBenchArgs::default().timeout)
            .map(|timeout| Bench::Ipc(IpcBenchArgs { timeout })),
        "vm" => parse_bench_vm(flags).map(Bench::Vm),
        "staticpart" => parse_bench_staticpart(flags).map(Bench::Staticpart),
        "net" => parse_bench_net(flags).map(Bench::Net),
        other => bail!("unknown benchmark '{other}' (known: {BENCHMARKS})"),
    }
}

fn parse_bench_boot(flags: &[&str]) -> Result<BootBenchArgs> {
    let mut args = BootBenchArgs::default();
    parse_flags(flags, |name, value| {
        match name {
            "--runs" => args.runs = parse_runs(name, &value()?)?,
            "--timeout" => args.timeout = parse_seconds(name, &value()?)?,
            "--settle" => args.settle = parse_seconds(name, &value()?)?,
            "--stage-marker" => args.stage_marker = value()?,
            "--kernel-marker" => args.kernel_marker = value()?,
            "--roottask-marker" => args.roottask_marker = value()?,
            other => bail!("unknown flag '{other}' for 'bench boot'"),
        }
        Ok(())
    })?;
    Ok(args)
}

fn parse_bench_vm(flags: &[&str]) -> Result<VmBenchArgs> {
    let mut args = VmBenchArgs::default();
    parse_flags(flags, |name, value| {
        match name {
            "--runs" => args.runs = parse_runs(name, &value()?)?,
            "--timeout" => args.timeout = parse_seconds(name, &value()?)?,
            "--exits-only" => args.exits_only = true,
            other => bail!("unknown flag '{other}' for 'bench vm'"),
        }
        Ok(())
    })?;
    Ok(args)
}

fn parse_bench_net(flags: &[&str]) -> Result<NetBenchArgs> {
    let d = NetBenchArgs::default();
    let (rounds, timeout) = parse_count_and_timeout(flags, "net", "--rounds", d.rounds, d.timeout)?;
    Ok(NetBenchArgs { timeout, rounds })
}

fn parse_bench_staticpart(flags: &[&str]) -> Result<StaticpartBenchArgs> {
    let d = StaticpartBenchArgs::default();
    let (runs, timeout) =
        parse_count_and_timeout(flags, "staticpart", "--runs", d.runs, d.timeout)?;
    Ok(StaticpartBenchArgs { runs, timeout })
}

/// The flags of benchmark `bench` that takes a count (`count_flag`, at
/// least one) and `--timeout`; the defaults without them.
fn parse_count_and_timeout(
    flags: &[&str],
    bench: &str,
    count_flag: &str,
    count: usize,
    timeout: Duration,
) -> Result<(usize, Duration)> {
    let (mut count, mut timeout) = (count, timeout);
    parse_flags(flags, |name, value| {
        match name {
            n if n == count_flag => count = parse_runs(name, &value()?)?,
            "--timeout" => timeout = parse_seconds(name, &value()?)?,
            other => bail!("unknown flag '{other}' for 'bench {bench}'"),
        }
        Ok(())
    })?;
    Ok((count, timeout))
}

/// The flags of benchmark `bench` whose only flag is `--timeout`: the
/// timeout, `default` without the flag.
fn parse_bench_timeout(flags: &[&str], bench: &str, default: Duration) -> Result<Duration> {
    let mut timeout = default;
    parse_flags(flags, |name, value| {
        match name {
            "--timeout" => timeout = parse_seconds(name, &value()?)?,
            other => bail!("unknown flag '{other}' for 'bench {bench}'"),
        }
        Ok(())
    })?;
    Ok(timeout)
}

/// Calls `handle(name, value)` for each flag; `value()` takes the flag's value,
/// given as `--flag value` or `--flag=value`.
fn parse_flags(
    flags: &[&str],
    mut handle: impl FnMut(&str, &mut dyn FnMut() -> Result<String>) -> Result<()>,
) -> Result<()> {
    let mut it = flags.iter();
    while let Some(&flag) = it.next() {
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
            _ => (flag, None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next().map(|v| v.to_string()))
                .ok_or_else(|| Error::new(format!("'{name}' needs a value")))
        };
        handle(name, &mut value)?;
    }
    Ok(())
}

/// A number of runs: at least one.
fn parse_runs(flag: &str, value: &str) -> Result<usize> {
    match parse_number(flag, value)? {
        0 => bail!("{flag} must be at least 1"),
        runs => Ok(runs),
    }
}

fn parse_seconds(flag: &str, value: &str) -> Result<Duration> {
    parse_number(flag, value).map(Duration::from_secs)
}

fn parse_number<T: FromStr>(flag: &str, value: &str) -> Result<T> {
    value
        .parse()
        .map_err(|_| Error::new(format!("{flag}: '{value}' is not a number")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_with(args: &[&str], env: &[(&str, &str)]) -> Result<Invocation> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        parse(&args, |key| {
            env.iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn no_arguments_is_help() {
        assert_eq!(parse_with(&[], &[]).unwrap().command, Command::Help);
    }

    #[test]
    fn make_like_variables_anywhere() {
        let inv = parse_with(
            &[
                "E=hello",
                "qemu",
                "MODULE_SEARCH_PATH=/a::/b",
                "QEMU_OPTIONS=-s -S",
            ],
            &[],
        )
        .unwrap();
        assert_eq!(inv.command, Command::Qemu);
        assert_eq!(inv.vars.entry.as_deref(), Some("hello"));
        assert_eq!(
            inv.vars.module_search_path,
            vec![PathBuf::from("/a"), PathBuf::from("/b")]
        );
        assert_eq!(inv.vars.qemu_options.as_deref(), Some("-s -S"));
    }

    #[test]
    fn arguments_override_environment_and_empty_is_unset() {
        let env = [("E", "from-env"), ("MODULES_LIST", "/env.list")];
        let inv = parse_with(&["image", "E=from-arg"], &env).unwrap();
        assert_eq!(inv.vars.entry.as_deref(), Some("from-arg"));
        assert_eq!(inv.vars.modules_list, Some(PathBuf::from("/env.list")));
        let inv = parse_with(&["image", "E="], &env).unwrap();
        assert_eq!(inv.vars.entry, None);
    }

    #[test]
    fn unknown_variable_and_command_are_errors() {
        let err = parse_with(&["qemu", "ENTRY=hello"], &[]).unwrap_err();
        assert!(err.to_string().contains("unknown variable 'ENTRY'"));
        assert!(parse_with(&["boot"], &[]).is_err());
        let err = parse_with(&["qemu", "hello"], &[]).unwrap_err();
        assert!(err.to_string().contains("E=hello"));
    }

    #[test]
    fn lower_case_assignment_is_a_plain_argument() {
        // e.g. a scenario named `a=b` is not a variable
        let inv = parse_with(&["test", "a=b"], &[]).unwrap();
        assert_eq!(
            inv.command,
            Command::Test(TestArgs {
                scenarios: vec!["a=b".into()],
                ..TestArgs::default()
            })
        );
    }

    #[test]
    fn test_flags() {
        let inv = parse_with(&["test", "--host"], &[]).unwrap();
        assert_eq!(
            inv.command,
            Command::Test(TestArgs {
                host_only: true,
                ..TestArgs::default()
            })
        );
        let inv = parse_with(&["test", "-v", "hello", "ktest"], &[]).unwrap();
        assert_eq!(
            inv.command,
            Command::Test(TestArgs {
                host_only: false,
                verbose: true,
                scenarios: vec!["hello".into(), "ktest".into()],
            })
        );
        assert!(parse_with(&["test", "--host", "hello"], &[]).is_err());
        assert!(parse_with(&["test", "--bogus"], &[]).is_err());
    }

    #[test]
    fn bench_flags() {
        let inv = parse_with(
            &[
                "bench",
                "boot",
                "E=hello",
                "--runs",
                "3",
                "--kernel-marker=Fiasco",
                "--timeout",
                "9",
            ],
            &[],
        )
        .unwrap();
        let Command::Bench(Bench::Boot(args)) = inv.command else {
            panic!("not bench boot")
        };
        assert_eq!(args.runs, 3);
        assert_eq!(args.kernel_marker, "Fiasco");
        assert_eq!(args.timeout, Duration::from_secs(9));
        assert_eq!(args.stage_marker, DEFAULT_STAGE_MARKER);
        assert!(parse_with(&["bench"], &[]).is_err());
        assert!(parse_with(&["bench", "boot", "--runs"], &[]).is_err());
        assert!(parse_with(&["bench", "boot", "--runs", "0"], &[]).is_err());
        assert!(parse_with(&["bench", "boot", "--timeout", "x"], &[]).is_err());
        let err = parse_with(&["bench", "disk"], &[]).unwrap_err();
        assert!(
            err.to_string()
                .contains("known: boot, ipc, vm, staticpart, net"),
            "{err}"
        );
        let err = parse_with(&["bench"], &[]).unwrap_err();
        assert!(
            err.to_string().contains("boot, ipc, vm, staticpart, net"),
            "{err}"
        );
    }

    #[test]
    fn bench_ipc() {
        let inv = parse_with(&["bench", "ipc"], &[]).unwrap();
        assert_eq!(
            inv.command,
            Command::Bench(Bench::Ipc(IpcBenchArgs::default()))
        );
        assert_eq!(IpcBenchArgs::default().timeout, Duration::from_secs(300));
        assert_eq!(inv.vars.entry, None);
        let inv = parse_with(&["bench", "ipc", "--timeout", "10"], &[]).unwrap();
        let timeout = Duration::from_secs(10);
        assert_eq!(
            inv.command,
            Command::Bench(Bench::Ipc(IpcBenchArgs { timeout }))
        );
        let inv = parse_with(&["bench", "ipc", "--timeout=10", "E=mine"], &[]).unwrap();
        assert_eq!(
            inv.command,
            Command::Bench(Bench::Ipc(IpcBenchArgs { timeout }))
        );
        assert_eq!(inv.vars.entry.as_deref(), Some("mine"));
    }

    #[test]
    fn bench_ipc_bad_flags() {
        let err = parse_with(&["bench", "ipc", "--runs", "3"], &[]).unwrap_err();
        assert!(
            err.to_string()
                .contains("unknown flag '--runs' for 'bench ipc'"),
            "{err}"
        );
        assert!(parse_with(&["bench", "ipc", "--timeout"], &[]).is_err());
        assert!(parse_with(&["bench", "ipc", "--timeout", "soon"], &[]).is_err());
        assert!(parse_with(&["bench", "ipc", "extra"], &[]).is_err());
    }

    #[test]
    fn plan_flags() {
        let inv = parse_with(&["plan", "E=x", "--strict", "-i"], &[]).unwrap();
        assert_eq!(
            inv.command,
            Command::Plan(PlanArgs {
                strict: true,
                identity: true,
                all: false
            })
        );
        assert!(
            parse_with(&["plan", "x"], &[])
                .unwrap_err()
                .to_string()
                .contains("E=x")
        );
        assert!(parse_with(&["plan", "--bogus"], &[]).is_err());
    }

    #[test]
    fn guest_and_bench_vm() {
        assert_eq!(parse_with(&["guest"], &[]).unwrap().command, Command::Guest);
        assert!(parse_with(&["guest", "--update"], &[]).is_err());
        let inv = parse_with(&["bench", "vm"], &[]).unwrap();
        assert_eq!(
            inv.command,
            Command::Bench(Bench::Vm(VmBenchArgs::default()))
        );
        let inv = parse_with(
            &["bench", "vm", "--runs", "3", "--timeout=30", "--exits-only"],
            &[],
        )
        .unwrap();
        assert_eq!(
            inv.command,
            Command::Bench(Bench::Vm(VmBenchArgs {
                runs: 3,
                timeout: Duration::from_secs(30),
                exits_only: true,
            }))
        );
        assert!(parse_with(&["bench", "vm", "--runs", "0"], &[]).is_err());
        assert!(parse_with(&["bench", "vm", "--stage-marker", "x"], &[]).is_err());
    }

    /// The benchmarks whose only flag is `--timeout`.
    #[test]
    fn bench_net_rounds_and_timeout() {
        let timeout = Duration::from_secs(90);
        let inv = parse_with(&["bench", "net", "--timeout", "90", "--rounds=2"], &[]).unwrap();
        assert_eq!(
            inv.command,
            Command::Bench(Bench::Net(NetBenchArgs { timeout, rounds: 2 }))
        );
        let inv = parse_with(&["bench", "net"], &[]).unwrap();
        assert_eq!(
            inv.command,
            Command::Bench(Bench::Net(NetBenchArgs::default()))
        );
        assert!(parse_with(&["bench", "net", "--runs", "2"], &[]).is_err());
        assert!(parse_with(&["bench", "net", "--rounds", "0"], &[]).is_err());
    }

    #[test]
    fn bench_staticpart_runs_and_timeout() {
        let inv = parse_with(&["bench", "staticpart", "--runs=2", "--timeout", "90"], &[]).unwrap();
        assert_eq!(
            inv.command,
            Command::Bench(Bench::Staticpart(StaticpartBenchArgs {
                runs: 2,
                timeout: Duration::from_secs(90)
            }))
        );
        let inv = parse_with(&["bench", "staticpart"], &[]).unwrap();
        assert_eq!(
            inv.command,
            Command::Bench(Bench::Staticpart(StaticpartBenchArgs::default()))
        );
        assert!(parse_with(&["bench", "staticpart", "--runs", "0"], &[]).is_err());
        assert!(parse_with(&["bench", "staticpart", "--exits-only"], &[]).is_err());
    }
}

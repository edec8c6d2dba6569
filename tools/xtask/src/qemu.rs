//! QEMU: the one place its command line is made, and the interactive boot.
//!
//! Options, in order (later ones win where QEMU lets a later option override):
//! 1. [`MACHINE`] plus the console options of the mode (`-nographic`, or a piped
//!    serial console without monitor for the test harness and benchmarks),
//! 2. the entry's `# qemu: ...` comments in the modules list,
//! 3. a scenario's `qemu_options` (tests only),
//! 4. `QEMU_OPTIONS` (split shell-like), as in L4Re's Makeconf.boot,
//! 5. `-accel tcg,thread=single` when the machine has more CPUs than the host
//!    and no option chose the accelerator ([`single_threaded_tcg`]),
//! 6. guest RAM from a memfd ([`ram_backend`]) unless an option chose a
//!    memory backend.

use std::path::Path;
use std::process::Command;

use crate::error::{Context, Result, bail};
use crate::shell;

pub const QEMU: &str = "qemu-system-aarch64";

/// The machine every entry runs on (see DESIGN.md, "The machine").
pub const MACHINE: &[&str] = &[
    "-M",
    "virt,virtualization=on,gic-version=3",
    "-cpu",
    // Pointer authentication with QEMU's own fast algorithm (an
    // IMPLEMENTATION DEFINED one, which guests support as well as the
    // architected QARMA): guests use the keys the kernel switches, and
    // QEMU's QARMA, applied to every signed return, made a Linux guest
    // boot take about twice as long.
    "max,pauth-impdef=on",
    "-smp",
    "4",
    "-m",
    "1024",
    // No NIC of QEMU's own (the board's default, a virtio-net PCI card on
    // user networking): nothing here drives it, and setting it up costs
    // QEMU's start about 6 ms. A later `-nic`, `-netdev` or `-device`
    // still adds one.
    "-nic",
    "none",
];

/// How the serial console reaches the user.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ConsoleMode {
    /// `-nographic`: serial and monitor multiplexed on the terminal (Ctrl-A x quits).
    Terminal,
    /// Serial console on QEMU's stdin/stdout pipes, no display, no monitor: works
    /// without a terminal (tests, benchmarks).
    Piped,
}

impl ConsoleMode {
    fn options(self) -> &'static [&'static str] {
        match self {
            ConsoleMode::Terminal => &["-nographic"],
            ConsoleMode::Piped => &["-display", "none", "-monitor", "none", "-serial", "stdio"],
        }
    }
}

/// The full argument list for booting `image`.
pub fn arguments(
    mode: ConsoleMode,
    entry_options: &[String],
    scenario_options: &[String],
    env_options: &[String],
    image: &Path,
) -> Vec<String> {
    let mut args: Vec<String> = MACHINE
        .iter()
        .chain(mode.options())
        .map(|s| s.to_string())
        .chain(entry_options.iter().cloned())
        .chain(scenario_options.iter().cloned())
        .chain(env_options.iter().cloned())
        .collect();
    let host_cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if single_threaded_tcg(&args, host_cpus) {
        args.extend(["-accel", "tcg,thread=single"].map(String::from));
    }
    if let Some(backend) = ram_backend(&args) {
        args.extend(backend);
    }
    args.extend(["-kernel".to_string(), image.display().to_string()]);
    args
}

/// Whether QEMU should run all emulated CPUs on one thread: when `args` ask
/// for more CPUs than the host has and choose no accelerator themselves.
/// With a thread per emulated CPU, the host then preempts CPUs holding a
/// lock (the kernel's, a Linux guest's) while others spin on it (QEMU runs
/// WFE as a plain yield): a 4-CPU machine with two busy VMs on 2 host cores
/// takes 20-30 s to their shells, against about 7 s on one thread, which
/// hands the host CPU to the next emulated CPU at each WFE.
pub fn single_threaded_tcg(args: &[String], host_cpus: usize) -> bool {
    let chosen = args
        .iter()
        .any(|a| a == "-accel" || a.starts_with("accel=") || a.contains(",accel="));
    let cpus = last_value(args, "-smp").and_then(smp_cpus).unwrap_or(1);
    !chosen && cpus as usize > host_cpus
}

/// Options that give the guest its RAM from a memfd (shared memory) of the
/// final `-m` size, unless `args` already name a memory backend or the size
/// is not one this reads (`N`, `NM`, `NG`).
///
/// QEMU asks for transparent huge pages on its default anonymous RAM; on a
/// host that allocates those slowly (compaction) every first touch of a
/// 2 MiB guest block costs milliseconds: clearing a fresh 128 MiB guest RAM
/// dataspace took 456 ms on this machine, against 104 ms from a memfd
/// (4 KiB pages, whose first touch is cheap). The native reference boots of
/// the benchmarks get the same backend, since they are made here too.
pub fn ram_backend(args: &[String]) -> Option<[String; 4]> {
    if args.iter().any(|a| a.contains("memory-backend")) {
        return None;
    }
    let size = last_value(args, "-m").map_or(Some(DEFAULT_RAM), ram_bytes)? >> 20;
    Some([
        "-object".to_string(),
        format!("memory-backend-memfd,id=ram,size={size}M"),
        "-machine".to_string(),
        "memory-backend=ram".to_string(),
    ])
}

/// The value of the last `option` in `args` (the one QEMU goes by).
fn last_value<'a>(args: &'a [String], option: &str) -> Option<&'a str> {
    args.windows(2)
        .rfind(|w| w[0] == option)
        .map(|w| w[1].as_str())
}

/// QEMU's RAM size without `-m`.
pub const DEFAULT_RAM: u64 = 128 << 20;

/// Bytes of an `-m` value: `N` (MiB) or `N` with a unit (`M`, `MB`,
/// `MiB`, `G`, ...), alone or as `size=...` before other fields.
pub fn ram_bytes(value: &str) -> Option<u64> {
    let first = value.split(',').next()?;
    let v = first.strip_prefix("size=").unwrap_or(first);
    let (digits, unit) = match v.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => (&v[..i], &v[i..]),
        None => (v, "M"),
    };
    let shift = match unit.to_ascii_uppercase().as_str() {
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        _ => return None,
    };
    digits.parse::<u64>().ok()?.checked_mul(1 << shift)
}

/// The CPU count of an `-smp` value: `N` or `cpus=N,...`.
pub fn smp_cpus(value: &str) -> Option<u32> {
    let first = value.split(',').next()?;
    first.strip_prefix("cpus=").unwrap_or(first).parse().ok()
}

/// `QEMU_OPTIONS`, split shell-like.
pub fn env_options(raw: Option<&str>) -> Result<Vec<String>> {
    raw.map_or(Ok(Vec::new()), |raw| {
        shell::split(raw).context(|| "QEMU_OPTIONS".to_string())
    })
}

/// The options an entry adds with `# qemu: <options>` comment lines inside its
/// block of the modules list (from `entry NAME` to the next `entry`, `group` or
/// `module-group` line). Several such lines add up. Only the given file is read,
/// not the files it `include`s.
pub fn entry_options(modules_list: &str, entry: &str) -> Result<Vec<String>> {
    let mut current: Option<&str> = None;
    let mut options = Vec::new();
    for (number, line) in modules_list.lines().enumerate() {
        let line = line.trim();
        if let Some(comment) = line.strip_prefix('#') {
            if current == Some(entry)
                && let Some(text) = comment.trim_start().strip_prefix("qemu:")
            {
                let words = shell::split(text)
                    .context(|| format!("modules list line {}: '# qemu:'", number + 1))?;
                options.extend(words);
            }
            continue;
        }
        let mut words = line.split_whitespace();
        let keyword = words.next().unwrap_or("");
        let keyword = keyword.split('[').next().unwrap_or(keyword);
        match keyword {
            "entry" => current = words.next(),
            "group" | "module-group" => current = None,
            _ => {}
        }
    }
    Ok(options)
}

/// A QEMU command for `arguments` (for a [`crate::console::Session`]).
pub fn command(arguments: &[String]) -> Command {
    let mut cmd = Command::new(QEMU);
    cmd.args(arguments);
    cmd
}

/// Boots interactively with the terminal attached and returns when QEMU exits.
pub fn run_interactive(arguments: &[String], env_options: Option<&str>) -> Result<()> {
    eprintln!(
        "xtask: booting: {} {}{}",
        QEMU,
        shell::join(arguments),
        env_options.map_or(String::new(), |o| format!(" (QEMU_OPTIONS {o})"))
    );
    eprintln!("xtask: quit QEMU with Ctrl-A x (Ctrl-A h for more)");
    let status = command(arguments)
        .status()
        .context(|| format!("cannot start {QEMU}"))?;
    if !status.success() {
        bail!("{QEMU} exited with {status}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = "\
default-kernel fiasco -serial_esc
entry hello
# qemu: -smp 2
kernel fiasco
roottask moe
  #qemu: -append 'a b'
entry[no-defaults] other
# qemu: -m 2048
group foo
# qemu: -s
";

    #[test]
    fn entry_comments_are_collected_per_entry() {
        assert_eq!(
            entry_options(LIST, "hello").unwrap(),
            ["-smp", "2", "-append", "a b"]
        );
        assert_eq!(entry_options(LIST, "other").unwrap(), ["-m", "2048"]);
        assert!(entry_options(LIST, "foo").unwrap().is_empty());
        assert!(entry_options(LIST, "missing").unwrap().is_empty());
    }

    #[test]
    fn bad_quote_in_comment_names_the_line() {
        let err = entry_options("entry x\n# qemu: 'oops\n", "x").unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
    }

    #[test]
    fn option_order_and_console_modes() {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let args = arguments(
            ConsoleMode::Piped,
            &s(&["-smp", "2"]),
            &s(&["-d", "int"]),
            &s(&["-s"]),
            Path::new("img"),
        );
        let line = args.join(" ");
        assert!(line.starts_with(
            "-M virt,virtualization=on,gic-version=3 -cpu max,pauth-impdef=on -smp 4 -m 1024"
        ));
        assert!(
            line.contains("-display none -monitor none -serial stdio -smp 2 -d int -s -object")
        );
        assert!(line.ends_with("-kernel img"));
        assert!(!line.contains("-nographic"));
        let args = arguments(ConsoleMode::Terminal, &[], &[], &[], Path::new("img"));
        assert!(args.contains(&"-nographic".to_string()));
        assert!(!args.contains(&"stdio".to_string()));
    }

    #[test]
    fn one_tcg_thread_when_the_host_has_fewer_cpus() {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(single_threaded_tcg(&s(&["-smp", "4"]), 2));
        assert!(!single_threaded_tcg(&s(&["-smp", "4"]), 4));
        assert!(!single_threaded_tcg(&s(&["-smp", "4", "-smp", "2"]), 2));
        assert!(single_threaded_tcg(&s(&["-smp", "cpus=3,sockets=1"]), 2));
        assert!(!single_threaded_tcg(&s(&["-smp", "4", "-accel", "tcg"]), 2));
        assert!(!single_threaded_tcg(
            &s(&["-M", "virt,accel=tcg", "-smp", "4"]),
            2
        ));
        assert!(!single_threaded_tcg(&s(&["-m", "1024"]), 1));
        let args = arguments(ConsoleMode::Piped, &[], &[], &[], Path::new("img"));
        let host = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(args.join(" ").contains("thread=single"), host < 4);
    }

    #[test]
    fn ram_from_a_memfd_of_the_last_m_size() {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let b = ram_backend(&s(&["-m", "1024", "-m", "2G"])).unwrap();
        assert_eq!(b[1], "memory-backend-memfd,id=ram,size=2048M");
        assert_eq!(b[3], "memory-backend=ram");
        assert_eq!(
            ram_backend(&s(&["-m", "size=512M,slots=2"])).unwrap()[1],
            "memory-backend-memfd,id=ram,size=512M"
        );
        assert!(ram_backend(&s(&["-m", "lots"])).is_none());
        assert!(ram_backend(&s(&["-machine", "memory-backend=mine"])).is_none());
        let args = arguments(ConsoleMode::Piped, &[], &[], &[], Path::new("img"));
        let line = args.join(" ");
        assert!(line.ends_with(
            "-object memory-backend-memfd,id=ram,size=1024M -machine memory-backend=ram -kernel img"
        ));
    }

    #[test]
    fn env_options_split() {
        assert_eq!(
            env_options(Some("-s -S -append 'x y'")).unwrap(),
            ["-s", "-S", "-append", "x y"]
        );
        assert!(env_options(None).unwrap().is_empty());
        assert!(env_options(Some("'")).is_err());
    }
}

//! `cargo xtask bench boot E=<entry>`: boot times and binary sizes.
//! `cargo xtask bench ipc [E=<entry>]`: IPC costs from ktest's ipcbench.
//! `cargo xtask bench vm`: boot time of the Linux guest, natively and under
//! uvmm, and the instructions of single VM exits (the `vmbench` guest).
//! `cargo xtask bench staticpart`: seed 000's two partitioned VMs against
//! one native boot of the same guest.
//! `cargo xtask bench net`: TCP throughput and ping round trip between two
//! guests on the virtio switch, and between the same guests under plain
//! QEMU.
//!
//! Benchmarks, not tests: `boot` boots the entry headless N times and reports
//! the median wall time from QEMU's start to the first occurrence of each
//! marker; `ipc` boots the `ipcbench` entry once and tabulates what it prints.

use std::path::Path;
use std::time::Duration;

use crate::cli::{
    Bench, BootBenchArgs, DEFAULT_IPC_ENTRY, IpcBenchArgs, NetBenchArgs, StaticpartBenchArgs, Vars,
    VmBenchArgs,
};
use crate::console::{Failure, Pattern, Record, Session};
use crate::error::{Context, Error, Result, bail};
use crate::image::Modules;
use crate::packages::Need;
use crate::qemu::{self, ConsoleMode};
use crate::targets::{self, KERNEL_ALIAS, MUSL_TARGET, ROOTTASK_ALIAS, TARGET_CRATES, TargetCrate};
use crate::workspace::Workspace;

pub fn run(ws: &Workspace, vars: &Vars, bench: &Bench) -> Result<()> {
    match bench {
        Bench::Boot(args) => boot(ws, vars, args),
        Bench::Ipc(args) => ipc(ws, vars, args),
        Bench::Vm(args) => vm(ws, vars, args),
        Bench::Staticpart(args) => staticpart(ws, vars, args),
        Bench::Net(args) => net(ws, vars, args),
    }
}

/// Packs `entry` (or the one the user picks), with `roottask_options`
/// before the root task's command line (into an image of its own when
/// there are any), and returns its name, the arguments that boot it
/// headless with a piped console, and the image.
fn headless(
    ws: &Workspace,
    vars: &Vars,
    entry: Option<&str>,
    roottask_options: &[String],
) -> Result<(String, Vec<String>, crate::image::Image)> {
    let env_options = qemu::env_options(vars.qemu_options.as_deref())?;
    let modules = Modules::new(ws, vars)?;
    let entry = modules.choose_entry(entry)?;
    targets::prepare(ws, &[Need::Qemu])?;
    let suffix = if roottask_options.is_empty() {
        ""
    } else {
        ".bench"
    };
    let image = modules.pack_variant(&entry, suffix, roottask_options)?;
    let arguments =
        modules.qemu_arguments(&entry, ConsoleMode::Piped, &[], &env_options, &image.path)?;
    Ok((entry, arguments, image))
}

/// moe's option that makes every runtime report its program's start
/// (`l4re_dbg` bit `L4.Dbg.Boot`, passed on by ned).
const STARTUP_REPORTS: &str = "--l4re-dbg=4";

fn boot(ws: &Workspace, vars: &Vars, args: &BootBenchArgs) -> Result<()> {
    let (entry, arguments, image) = headless(
        ws,
        vars,
        vars.entry.as_deref(),
        &[STARTUP_REPORTS.to_string()],
    )?;
    let markers = [
        &args.stage_marker,
        &args.kernel_marker,
        &args.roottask_marker,
    ];
    eprintln!(
        "xtask: booting '{entry}' {} times: {} {}",
        args.runs,
        qemu::QEMU,
        crate::shell::join(&arguments)
    );
    // A program's report, or uvmm's vCPU entering its guest.
    let event = Pattern::regex(&format!("{REPORT}|{}", regex::escape(GUEST_ENTRY)))
        .map_err(|e| Error::new(e.to_string()))?;
    let any_line = Pattern::Text("\n".into());

    // times[marker][run]
    let mut times = vec![Vec::new(); markers.len()];
    let mut programs = Programs::default();
    for run in 1..=args.runs {
        let mut session = Session::spawn(qemu::command(&arguments), Vec::new(), false)?;
        let deadline = session.started() + args.timeout;
        let mut line = format!("  run {run}:");
        for (i, marker) in markers.iter().enumerate() {
            match session.expect(&Pattern::Text(marker.to_string()), deadline) {
                Ok(at) => {
                    times[i].push(at);
                    line.push_str(&format!(" {:.3} s", at.as_secs_f64()));
                }
                Err(failure) => {
                    let record = session.finish();
                    bail!(
                        "run {run}: waiting for {marker:?}: {failure}\n--- console log ---\n{}--- QEMU stderr ---\n{}",
                        record.transcript,
                        record.stderr
                    );
                }
            }
        }
        // The programs' reports: the first one, then more until none came
        // (and no guest was entered) for a while.
        let mut wait = deadline;
        loop {
            match session.expect(&event, wait) {
                Ok(_) => wait = (std::time::Instant::now() + args.settle).min(deadline),
                Err(Failure::Timeout | Failure::Closed(_)) => break,
                Err(failure) => bail!("run {run}: {failure}"),
            }
        }
        // Guests take longer to print: wait line by line for the first
        // line of every guest that was entered.
        while guest_pending(&program_starts(&session.lines(), &args.roottask_marker)) {
            match session.expect(&any_line, deadline) {
                Ok(_) => {}
                Err(Failure::Timeout | Failure::Closed(_)) => break,
                Err(failure) => bail!("run {run}: {failure}"),
            }
        }
        let record = session.finish();
        let starts = program_starts(&record.lines, &args.roottask_marker);
        for s in &starts {
            line.push_str(&format!(" {} {:.3} s", s.name, s.first_line.as_secs_f64()));
        }
        programs.add(starts);
        eprintln!("{line}");
    }

    println!(
        "boot of '{entry}': median of {} runs, wall time from QEMU start to the first line with",
        args.runs
    );
    let width = markers.iter().map(|m| m.len()).max().unwrap_or(0) + 2;
    for (marker, samples) in markers.iter().zip(&mut times) {
        let quoted = format!("{marker:?}");
        println!(
            "  {quoted:<width$}  {:>8.3} s",
            median(samples).as_secs_f64()
        );
    }
    programs.print(args.runs);
    println!("sizes:");
    let kernel = TargetCrate::by_alias(KERNEL_ALIAS).path(ws);
    let roottask = TargetCrate::by_alias(ROOTTASK_ALIAS).path(ws);
    println!(
        "  kernel ELF     {:>10} B  {}",
        file_size(&kernel)?,
        ws.show(&kernel)
    );
    println!(
        "  root task ELF  {:>10} B  {}",
        file_size(&roottask)?,
        ws.show(&roottask)
    );
    for (name, size) in image.modules.iter().skip(2) {
        println!("  rom/{name:<10} {size:>10} B");
    }
    println!(
        "  image          {:>10} B  {}",
        image.size,
        ws.show(&image.path)
    );
    println!("std programs (stripped ELF, whether the entry has them or not):");
    for c in TARGET_CRATES.iter().filter(|c| c.target == MUSL_TARGET) {
        let path = c.path(ws);
        if let Ok(size) = file_size(&path) {
            println!("  {:<12} {size:>10} B  {}", c.binary, ws.show(&path));
        }
    }
    Ok(())
}

/// The report a runtime writes before its program's first output
/// (`l4re: NAME: first output at T ms: runtime began at T ms, N page
/// faults, N mappings (N KiB), N system calls, N dataspaces, T ms
/// serving`).
const REPORT: &str = r"l4re: ([^:]+): first output at ([0-9.]+) ms: runtime began at ([0-9.]+) ms, ([0-9]+) page faults, ([0-9]+) mappings \(([0-9]+) KiB\), ([0-9]+) system calls, ([0-9]+) dataspaces, ([0-9.]+) ms serving";

/// uvmm's line right before its first vCPU enters the guest.
const GUEST_ENTRY: &str = "VMM[vmm]: vCPU 0 runs on CPU";

/// A guest's row, after its VMM's name: vCPU 0 entered it.
const GUEST_ENTERED: &str = "guest entered";
/// A guest's row, after its VMM's name: its first line.
const GUEST_PRINTED: &str = "guest's first line";

/// The prefix of uvmm's own lines (`VMM[component]: `); a guest's lines
/// on the same console have none.
const VMM_PREFIX: &str = "VMM[";

/// What a runtime reported about its program's start.
#[derive(Clone, Debug, Default, PartialEq)]
struct StartReport {
    /// The program as the runtime names it (`rom/uvmm`).
    program: String,
    /// The machine's clock (ms since it started) at the first output and
    /// when the runtime began.
    output_ms: f64,
    began_ms: f64,
    faults: u64,
    maps: u64,
    mapped_kib: u64,
    syscalls: u64,
    dataspaces: u64,
    serving_ms: f64,
}

impl StartReport {
    fn parse(text: &str) -> Option<StartReport> {
        // Compiled once: the boot benchmark parses every console line,
        // again each time it waits for a guest's next line.
        static RE: std::sync::LazyLock<Option<regex::Regex>> =
            std::sync::LazyLock::new(|| regex::Regex::new(REPORT).ok());
        let c = RE.as_ref()?.captures(text)?;
        let num = |i: usize| c.get(i).map(|m| m.as_str());
        Some(StartReport {
            program: num(1)?.to_string(),
            output_ms: num(2)?.parse().ok()?,
            began_ms: num(3)?.parse().ok()?,
            faults: num(4)?.parse().ok()?,
            maps: num(5)?.parse().ok()?,
            mapped_kib: num(6)?.parse().ok()?,
            syscalls: num(7)?.parse().ok()?,
            dataspaces: num(8)?.parse().ok()?,
            serving_ms: num(9)?.parse().ok()?,
        })
    }

    /// The program's name without its directory (`uvmm`).
    fn short_name(&self) -> &str {
        self.program.rsplit('/').next().unwrap_or(&self.program)
    }
}

/// One program's (or guest's) start in one boot: its console tag, when its
/// first own line arrived, and its runtime's report if it has one.
#[derive(Clone, Debug, PartialEq)]
struct ProgramStart {
    name: String,
    first_line: Duration,
    report: Option<StartReport>,
}

/// Where a guest on one console is.
#[derive(Clone, Copy, Default, PartialEq)]
enum Guest {
    /// No vCPU has entered a guest yet.
    #[default]
    Outside,
    /// vCPU 0 entered the guest; it has not printed yet.
    Entered,
    /// The guest printed its first line.
    Printed,
}

/// One console on the serial line: a tag of the log multiplexer, or the
/// untagged output of the programs that write to the kernel's console.
#[derive(Default)]
struct Source {
    /// Who writes there: the tag, or for untagged output the program whose
    /// runtime reported last.
    owner: Option<String>,
    /// A report whose program has not printed its first line yet.
    pending: Option<StartReport>,
    guest: Guest,
}

/// The starts seen on the console after the root task's `marker` line, in
/// order: every tag (`name | text`) of the log multiplexer is a program;
/// untagged lines that are not the kernel's or moe's belong to the program
/// whose runtime reported there last (uvmm with ned's log), or without a
/// report to a program that writes to the console itself (cons), named by
/// its first line. A console on which uvmm says that vCPU 0 enters the guest
/// ([`GUEST_ENTRY`]) gets two more starts: `NAME: guest entered` at that
/// line and `NAME: guest's first line` at the first line after it that is
/// not uvmm's own.
fn program_starts(lines: &[(Duration, String)], marker: &str) -> Vec<ProgramStart> {
    let mut starts: Vec<ProgramStart> = Vec::new();
    let mut sources: Vec<(Option<String>, Source)> = Vec::new();
    let mut untagged_named = false;
    let after = lines
        .iter()
        .position(|(_, l)| l.contains(marker))
        .map_or(lines.len(), |i| i + 1);
    for (at, line) in &lines[after..] {
        let line = visible(line);
        let tagged = line
            .split_once(" | ")
            .map(|(tag, text)| (tag.trim(), text))
            .filter(|(tag, _)| !tag.is_empty() && !tag.contains(char::is_whitespace));
        let (tag, text) = match tagged {
            Some((tag, text)) => (Some(tag.to_string()), text),
            None => (None, line.as_str()),
        };
        if tag.is_none() {
            let own = ["moe:", "MOE:", "kernel:"]
                .iter()
                .any(|p| text.starts_with(p));
            if own || text.trim().is_empty() {
                continue;
            }
        }
        let i = match sources.iter().position(|(t, _)| *t == tag) {
            Some(i) => i,
            None => {
                let owner = tag.clone();
                sources.push((
                    tag.clone(),
                    Source {
                        owner,
                        ..Source::default()
                    },
                ));
                sources.len() - 1
            }
        };
        let source = &mut sources[i].1;
        let mut start = |name: String, report: Option<StartReport>| {
            if !starts.iter().any(|s| s.name == name) {
                starts.push(ProgramStart {
                    name,
                    first_line: *at,
                    report,
                });
            }
        };
        if let Some(report) = StartReport::parse(text) {
            if tag.is_none() {
                source.owner = Some(report.short_name().to_string());
            }
            source.pending = Some(report);
            continue;
        }
        let owner = source.owner.clone();
        let guest_name = |what: &str| format!("{}: {what}", owner.as_deref().unwrap_or("guest"));
        if source.guest == Guest::Entered && !text.starts_with(VMM_PREFIX) {
            source.guest = Guest::Printed;
            start(guest_name(GUEST_PRINTED), None);
            continue;
        }
        match (&owner, source.pending.take()) {
            (Some(name), report @ Some(_)) => start(name.clone(), report),
            (Some(name), None) if tag.is_some() => start(name.clone(), None),
            (_, _) if tag.is_none() && !untagged_named => {
                start(format!("{:?}", text.trim()), None);
            }
            _ => {}
        }
        if tag.is_none() {
            untagged_named = true;
        }
        if source.guest == Guest::Outside && text.contains(GUEST_ENTRY) {
            source.guest = Guest::Entered;
            start(guest_name(GUEST_ENTERED), None);
        }
    }
    starts
}

/// Whether a guest entered on some console but has not printed a line yet.
fn guest_pending(starts: &[ProgramStart]) -> bool {
    let entered = starts
        .iter()
        .filter(|s| s.name.ends_with(&format!(": {GUEST_ENTERED}")));
    let printed = starts
        .iter()
        .filter(|s| s.name.ends_with(&format!(": {GUEST_PRINTED}")));
    entered.count() > printed.count()
}

/// What a terminal shows of `line`: its last piece between carriage
/// returns that shows any text (cons redraws its prompt, `cons> `, then
/// returns to the line's start and erases it before each line it
/// multiplexes; a guest's own line ends in a carriage return before cons
/// resets the colour), without control sequences (`ESC [ ... final`).
fn visible(line: &str) -> String {
    line.rsplit('\r')
        .map(without_controls)
        .find(|piece| !piece.is_empty())
        .unwrap_or_default()
}

/// `text` without `ESC [ ... final` sequences (colours, erasing); a lone
/// ESC is dropped.
fn without_controls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('\x1b') {
        out.push_str(&rest[..i]);
        let seq = &rest[i + 1..];
        rest = match seq.strip_prefix('[').and_then(|s| {
            s.find(|c: char| ('@'..='~').contains(&c))
                .map(|end| &s[end + 1..])
        }) {
            Some(after) => after,
            None => seq,
        };
    }
    out.push_str(rest);
    out
}

/// The starts of every run, by program.
#[derive(Default)]
struct Programs {
    /// Program name, then its starts (one per run that saw it).
    by_name: Vec<(String, Vec<ProgramStart>)>,
}

impl Programs {
    fn add(&mut self, starts: Vec<ProgramStart>) {
        for s in starts {
            match self.by_name.iter_mut().find(|(n, _)| *n == s.name) {
                Some((_, runs)) => runs.push(s),
                None => self.by_name.push((s.name.clone(), vec![s])),
            }
        }
    }

    fn print(&self, runs: usize) {
        if self.by_name.is_empty() {
            println!("programs: none reported");
            return;
        }
        println!(
            "programs (medians): first line (wall time); on the machine's clock: runtime began, first output, time its runtime served it; until then: page faults, mappings, system calls, dataspaces"
        );
        let width = self.by_name.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
        for (name, starts) in &self.by_name {
            let mut wall: Vec<Duration> = starts.iter().map(|s| s.first_line).collect();
            let seen = if starts.len() < runs {
                format!("  (in {} of {runs} runs)", starts.len())
            } else {
                String::new()
            };
            let reports: Vec<&StartReport> =
                starts.iter().filter_map(|s| s.report.as_ref()).collect();
            let mut line = format!(
                "  {name:<width$} {:>8.3} s",
                median(&mut wall).as_secs_f64()
            );
            if !reports.is_empty() {
                let ms = |f: fn(&StartReport) -> f64| {
                    let mut v: Vec<Duration> = reports
                        .iter()
                        .map(|r| Duration::from_secs_f64(f(r) / 1000.0))
                        .collect();
                    median(&mut v).as_secs_f64()
                };
                let count = |f: fn(&StartReport) -> u64| {
                    let mut v: Vec<u64> = reports.iter().map(|r| f(r)).collect();
                    v.sort_unstable();
                    v[v.len() / 2]
                };
                line.push_str(&format!(
                    "  began {:.3} s  output {:.3} s  served {:.3} s  {} faults  {} mappings ({} KiB)  {} syscalls  {} dataspaces",
                    ms(|r| r.began_ms),
                    ms(|r| r.output_ms),
                    ms(|r| r.serving_ms),
                    count(|r| r.faults),
                    count(|r| r.maps),
                    count(|r| r.mapped_kib),
                    count(|r| r.syscalls),
                    count(|r| r.dataspaces),
                ));
            }
            println!("{line}{seen}");
        }
    }
}

/// QEMU options that give a natively booted guest the machine of the VM
/// it is compared with: as many CPUs and as much RAM (a Linux guest with
/// 1 GiB boots about 7 % slower than one with 128 MiB, from initialising
/// the memory it has), before the user's `QEMU_OPTIONS`.
fn native_shape(cpus: u32, ram_mib: u32, env_options: &[String]) -> Vec<String> {
    let mut v = vec![
        "-smp".to_string(),
        cpus.to_string(),
        "-m".to_string(),
        ram_mib.to_string(),
    ];
    v.extend(env_options.iter().cloned());
    v
}

/// Puts `options` into the QEMU arguments of an entry's boot, before
/// `-kernel` (the last two arguments), where `QEMU_OPTIONS` go too. With
/// `-smp` and the natively booted guest's CPU ([`crate::guest::NATIVE_CPU`]:
/// the features uvmm's guests see anyway) both sides of a comparison run
/// on the same machine.
fn add_before_kernel(args: &mut Vec<String>, options: &[&str]) {
    let at = args.len().saturating_sub(2);
    args.splice(at..at, options.iter().map(|o| o.to_string()));
}

/// RAM (MiB) of the VM of entry `uvmm` and of each of seed 003's VMs
/// (`uvmm-2vm-net`'s): what the natively booted guest gets for scale.
const VM_RAM_MIB: u32 = 128;

/// The entry that boots the guest under uvmm for `bench vm`.
const UVMM_ENTRY: &str = "uvmm";
/// The entry that runs the exit-timing guest (tests/vmbench) under uvmm.
const VMBENCH_ENTRY: &str = "vmbench";

/// Boots the guest kernel and ramdisk natively (QEMU's own device tree and
/// PL011) and under uvmm (entry `uvmm`), alternating, N times each; the
/// median time from QEMU's start to `/init`'s ready line of each. Before
/// that, the cost of single VM exits from one boot of entry `vmbench`
/// (only those with `--exits-only`).
fn vm(ws: &Workspace, vars: &Vars, args: &VmBenchArgs) -> Result<()> {
    let (exits, icount) = vm_exits(ws, vars, args)?;
    if args.exits_only {
        print_exits(&exits, icount);
        return Ok(());
    }
    // One CPU for both: the comparison wants the same machine, and the
    // guest then has one CPU either way (uvmm gives it one vCPU per CPU of
    // its scheduler); natively also the VM's RAM.
    let env_options = qemu::env_options(vars.qemu_options.as_deref())?;
    crate::packages::ensure(&[Need::Qemu])?;
    let guest = crate::guest::ensure(ws)?;
    let native_args = guest.native_arguments(&native_shape(1, VM_RAM_MIB, &env_options));
    let (_, mut uvmm_args, _) = headless(ws, vars, Some(UVMM_ENTRY), &[])?;
    add_before_kernel(
        &mut uvmm_args,
        &["-smp", "1", "-cpu", crate::guest::NATIVE_CPU],
    );
    eprintln!(
        "xtask: booting the guest {} times natively ({} {}) and under uvmm (entry {UVMM_ENTRY}), alternating",
        args.runs,
        qemu::QEMU,
        crate::shell::join(&native_args)
    );
    let ready = Pattern::Text(crate::guest::READY_LINE.into());
    let mut entries = Vec::new();
    let (native_timings, uvmm_timings) = alternate(
        args.runs,
        args.timeout,
        ("native", &native_args, &ready),
        ("uvmm", &uvmm_args, &ready),
        &mut |record| entries.push(guest_entry(record)),
    )?;
    let (mut native, mut uvmm) = (walls(&native_timings), walls(&uvmm_timings));
    let ratio = run_ratios(&native, &uvmm);
    let native = median(&mut native).as_secs_f64();
    let uvmm = median(&mut uvmm).as_secs_f64();
    println!(
        "Linux guest boot ({}), median of {} runs, wall time from QEMU start to {:?}:",
        guest.kernel_deb,
        args.runs,
        crate::guest::READY_LINE.trim_end()
    );
    println!(
        "  (both on QEMU's virt board with -cpu {} -smp 1)",
        crate::guest::NATIVE_CPU
    );
    println!("  native (-m {VM_RAM_MIB})                      {native:>8.3} s");
    println!("  under uvmm (entry {UVMM_ENTRY})            {uvmm:>8.3} s");
    if let Some((m, each)) = ratio {
        println!("  uvmm / native, median of the runs  {m:>8.2}  (run by run: {each})");
    }
    print_cpu_times(("native", &native_timings), ("uvmm", &uvmm_timings), 34);
    let mut entered: Vec<Duration> = entries.iter().filter_map(|e| e.entered).collect();
    let mut load: Vec<Duration> = entries.iter().filter_map(|e| e.load).collect();
    if !entered.is_empty() {
        let entered = median(&mut entered).as_secs_f64();
        println!(
            "  of which before the guest's first instruction {entered:>5.3} s{}; the guest then took {:.3} s",
            if load.is_empty() {
                String::new()
            } else {
                format!(
                    " (uvmm loading the kernel: {:.3} s)",
                    median(&mut load).as_secs_f64()
                )
            },
            uvmm - entered
        );
    }
    println!("sizes:");
    for path in [&guest.image, &guest.image_gz, &guest.ramdisks[0]] {
        println!("  {:>10} B  {}", file_size(path)?, ws.show(path));
    }
    print_exits(&exits, icount);
    Ok(())
}

/// The table of [`vm_exits`]' measurements.
fn print_exits(exits: &[VmExit], icount: bool) {
    println!(
        "VM exits (tests/vmbench under uvmm, entry {VMBENCH_ENTRY}, one vCPU; {} per operation, the loop's own cost taken off):",
        if icount {
            "instructions under -icount shift=0 (guest, kernel and uvmm)"
        } else {
            "ns of virtual time without -icount shift=0, host-dependent"
        }
    );
    let width = exits.iter().map(|m| m.what.len()).max().unwrap_or(0);
    for m in exits {
        println!("  {:<width$}  {:>7}", m.what, m.ns);
    }
}

/// One measurement of the vmbench guest.
#[derive(Debug, PartialEq)]
struct VmExit {
    what: String,
    ns: u64,
}

/// Boots entry `vmbench` headless, waits for the guest's last line and
/// returns its measurements, and whether they are instructions.
fn vm_exits(ws: &Workspace, vars: &Vars, args: &VmBenchArgs) -> Result<(Vec<VmExit>, bool)> {
    let forbid = vec![
        Pattern::Text(": failed".into()),
        Pattern::Text("panic".into()),
        Pattern::Text("VM entered a fatal state".into()),
    ];
    let run = boot_until(ws, vars, VMBENCH_ENTRY, vmbench::DONE, forbid, args.timeout)?;
    let exits = parse_vmbench(&run.record.transcript).map_err(|e| run.failed(e))?;
    Ok((exits, run.icount))
}

/// The measurements in the vmbench guest's console output, up to its last
/// line. Fails on a line that reports a failure, no last line, or no
/// measurement.
fn parse_vmbench(console: &str) -> Result<Vec<VmExit>> {
    let mut exits = Vec::new();
    for line in console.lines() {
        match vmbench::parse(line) {
            None | Some(vmbench::Line::Other(_)) => {}
            Some(vmbench::Line::Failed(what)) => bail!("the guest reported a failure: {what}"),
            Some(vmbench::Line::Measurement(m)) => exits.push(VmExit {
                what: m.what.to_string(),
                ns: m.ns,
            }),
            Some(vmbench::Line::Done) if exits.is_empty() => {
                bail!(
                    "the guest printed {:?} without any measurement",
                    vmbench::DONE
                )
            }
            Some(vmbench::Line::Done) => return Ok(exits),
        }
    }
    bail!("no line {:?} in the console output", vmbench::DONE)
}

/// The entry `bench staticpart` boots.
const STATICPART_ENTRY: &str = "uvmm-staticpart";
/// CPUs and RAM (MiB) of seed 000's larger VM (vm1, on CPUs 0-1 with
/// 256 MiB; vm2 has CPUs 2-3 and 128 MiB): the native guest's machine.
const STATICPART_VM1: (u32, u32) = (2, 256);

/// Both VMs of seed 000 at their shell, in either order (cons tags their
/// lines `vm1     | ...`).
const BOTH_READY: &str =
    "(?s)vm1 +\\| guest: ready.*vm2 +\\| guest: ready|vm2 +\\| guest: ready.*vm1 +\\| guest: ready";

/// Boots the guest natively (QEMU's virt board shaped like seed 000's
/// larger VM: 2 CPUs, 256 MiB) and entry `uvmm-staticpart`, alternating;
/// prints the median wall time from QEMU's start to the native shell and
/// to both VMs' shells, and the median of the runs' ratios.
fn staticpart(ws: &Workspace, vars: &Vars, args: &StaticpartBenchArgs) -> Result<()> {
    let env_options = qemu::env_options(vars.qemu_options.as_deref())?;
    crate::packages::ensure(&[Need::Qemu])?;
    let guest = crate::guest::ensure(ws)?;
    let native_args = guest.native_arguments(&native_shape(
        STATICPART_VM1.0,
        STATICPART_VM1.1,
        &env_options,
    ));
    let (_, mut part_args, _) = headless(ws, vars, Some(STATICPART_ENTRY), &[])?;
    add_before_kernel(&mut part_args, &["-cpu", crate::guest::NATIVE_CPU]);
    let native_ready = Pattern::Text(crate::guest::READY_LINE.into());
    let both = Pattern::regex(BOTH_READY).map_err(|e| Error::new(e.to_string()))?;
    eprintln!(
        "xtask: booting the guest {} times natively and entry {STATICPART_ENTRY} until both shells are up, alternating",
        args.runs
    );
    let (native_timings, part_timings) = alternate(
        args.runs,
        args.timeout,
        ("native", &native_args, &native_ready),
        ("staticpart", &part_args, &both),
        &mut |_| {},
    )?;
    let (mut native, mut part) = (walls(&native_timings), walls(&part_timings));
    let ratio = run_ratios(&native, &part);
    println!(
        "Seed 000's static partitioning, median of {} runs, wall time from QEMU start until the shell is up ({}):",
        args.runs, guest.kernel_deb
    );
    let native_label = format!(
        "native guest (QEMU virt, vm1's {} CPUs, {} MiB)",
        STATICPART_VM1.0, STATICPART_VM1.1
    );
    let part_label = format!("both VMs of entry {STATICPART_ENTRY}");
    println!(
        "  {native_label:<48} {:>6.3} s",
        median(&mut native).as_secs_f64()
    );
    println!(
        "  {part_label:<48} {:>6.3} s",
        median(&mut part).as_secs_f64()
    );
    if let Some((m, each)) = ratio {
        let label = "staticpart / native, median of the runs";
        println!("  {label:<48} {m:>6.2}  (run by run: {each})");
    }
    print_cpu_times(
        ("native", &native_timings),
        ("staticpart", &part_timings),
        48,
    );
    Ok(())
}

/// The entry `bench net` boots: seed 003's two VMs on the switch.
const NET_ENTRY: &str = "uvmm-2vm-net";
/// MiB VM1 sends VM2.
const NET_MIB: u64 = 64;
/// Pings of the round-trip measurement.
const NET_PINGS: u32 = 10;
/// The busybox shell's prompt in the guests.
const SHELL_PROMPT: &str = "/ # ";
/// The guests' addresses (`ip=` of the entry, and of the reference).
const NET_ADDRESSES: [&str; 2] = ["192.168.1.1", "192.168.1.2"];

/// The guests' consoles: one session multiplexed by cons (Ctrl-E), or one
/// QEMU per guest.
enum NetConsoles {
    Cons(Session),
    Separate([Session; 2]),
}

impl NetConsoles {
    /// The console of guest `vm` (0 or 1), focused.
    fn focus(&mut self, vm: usize, deadline: std::time::Instant) -> Result<&mut Session> {
        match self {
            NetConsoles::Cons(s) => {
                let key = (b'1' + vm as u8) as char;
                s.send(&[0x05]).map_err(|f| Error::new(f.to_string()))?;
                s.send(key.to_string().as_bytes())
                    .map_err(|f| Error::new(f.to_string()))?;
                let connected = Pattern::Text(format!("Connecting to 'vm{key}'"));
                s.expect(&connected, deadline)
                    .map_err(|f| Error::new(format!("switching to vm{key}: {f}")))?;
                // The replay (or the live output) ends with the shell's
                // prompt: typing goes to the shell from there.
                s.expect(&Pattern::Text(SHELL_PROMPT.into()), deadline)
                    .map_err(|f| Error::new(format!("vm{key}'s prompt: {f}")))?;
                Ok(s)
            }
            NetConsoles::Separate(s) => Ok(&mut s[vm]),
        }
    }

    /// The process ids of the setup's QEMUs.
    fn pids(&self) -> Vec<u32> {
        match self {
            NetConsoles::Cons(s) => vec![s.pid()],
            NetConsoles::Separate([a, b]) => vec![a.pid(), b.pid()],
        }
    }

    /// The consoles' transcripts, with what QEMU said on stderr.
    fn finish(self) -> String {
        let with_stderr = |r: crate::console::Record| {
            if r.stderr.is_empty() {
                r.transcript
            } else {
                format!("{}--- QEMU stderr ---\n{}", r.transcript, r.stderr)
            }
        };
        match self {
            NetConsoles::Cons(s) => with_stderr(s.finish()),
            NetConsoles::Separate([a, b]) => {
                let (a, b) = (with_stderr(a.finish()), with_stderr(b.finish()));
                format!("--- VM1 ---\n{a}--- VM2 ---\n{b}")
            }
        }
    }
}

/// What `bench net` measured on one setup.
struct NetFigures {
    /// Seconds of each round's transfer, as the host sees it.
    transfers: Vec<f64>,
    /// Seconds of CPU time the setup's QEMU threads used for each round's
    /// transfer; `None` where the host did not say.
    transfer_cpu: Vec<Option<f64>>,
    /// The pings' round trips, all rounds.
    rtt: Rtt,
}

impl NetFigures {
    /// MiB/s of each round's transfer.
    fn rates(&self) -> Vec<f64> {
        self.transfers
            .iter()
            .map(|t| NET_MIB as f64 / t.max(f64::EPSILON))
            .collect()
    }

    /// The median of [`NetFigures::rates`].
    fn rate(&self) -> f64 {
        median(&mut self.rates())
    }

    /// The median of the rounds' host CPU time per MiB sent, ms; `None`
    /// unless the host gave every round's.
    fn cpu_per_mib(&self) -> Option<f64> {
        let mut each: Vec<f64> = self
            .transfer_cpu
            .iter()
            .map(|c| c.map(|c| c * 1e3 / NET_MIB as f64))
            .collect::<Option<_>>()?;
        (!each.is_empty()).then(|| median(&mut each))
    }
}

/// Round trips of ping, in ms, from the replies' own times: smallest,
/// mean, largest and median (one slow reply, the host's doing, moves the
/// mean but not the median).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Rtt {
    min: f64,
    avg: f64,
    max: f64,
    median: f64,
    /// How many replies.
    count: usize,
}

/// Runs a command on the focused guest and waits for its end marker
/// (written so that the echoed command line does not match it); when the
/// marker came.
fn net_run(
    s: &mut Session,
    command: &str,
    marker: &str,
    deadline: std::time::Instant,
) -> Result<Duration> {
    let (head, tail) = marker.split_at(marker.len() / 2);
    s.send(format!("{command}; echo {head}''{tail}\n").as_bytes())
        .map_err(|f| Error::new(f.to_string()))?;
    s.expect(&Pattern::Text(marker.into()), deadline)
        .map_err(|f| Error::new(format!("waiting for `{command}`: {f}")))
}

/// One setup of `bench net`: its consoles and what its rounds measured.
struct NetSetup {
    what: &'static str,
    consoles: NetConsoles,
    transfers: Vec<f64>,
    transfer_cpu: Vec<Option<f64>>,
    /// The counted pings' round trips, ms.
    replies: Vec<f64>,
}

impl NetSetup {
    /// Before the first round: one ping, not counted: it waits for the
    /// address resolution, which no later one does.
    fn prepare(&mut self, deadline: std::time::Instant) -> Result<()> {
        let vm1 = self.consoles.focus(0, deadline)?;
        let warm = format!("ping -c 1 {} > /dev/null", NET_ADDRESSES[1]);
        net_run(vm1, &warm, "WARM-DONE", deadline)?;
        Ok(())
    }

    /// One round, the same on both setups: VM2 listens with `nc`, VM1
    /// pings it [`NET_PINGS`] times, then pipes 64 MiB of zeros into `nc`
    /// (timed; the pings gave the listener seconds to start).
    fn round(&mut self, deadline: std::time::Instant) -> Result<()> {
        // The CPU time of all the setup's QEMU threads so far, if the host
        // says.
        let pids = self.consoles.pids();
        let cpu_time = || -> Option<Duration> {
            pids.iter()
                .map(|&p| crate::console::process_cpu_time(p))
                .sum()
        };
        let vm2 = self.consoles.focus(1, deadline)?;
        // In the background, so that the prompt comes back at once; it
        // ends with the stream.
        net_run(
            vm2,
            "nc -l -p 5001 > /dev/null & true",
            "LISTENING",
            deadline,
        )?;
        let vm1 = self.consoles.focus(0, deadline)?;
        let ping = format!("ping -c {NET_PINGS} -i 0.5 {}", NET_ADDRESSES[1]);
        let from = vm1.elapsed();
        let to = net_run(vm1, &ping, "PING-DONE", deadline)?;
        // The lines of this ping alone: cons replays a guest's earlier
        // output when its console is picked again.
        let text: String = vm1
            .lines()
            .into_iter()
            .filter(|(at, _)| (from..=to).contains(at))
            .map(|(_, l)| l + "\n")
            .collect();
        self.replies.extend(reply_times(&text));
        let send = format!(
            "dd if=/dev/zero bs=65536 count={} 2>/dev/null | nc {} 5001",
            NET_MIB * 16,
            NET_ADDRESSES[1]
        );
        let cpu_before = cpu_time();
        let before = vm1.elapsed();
        let after = net_run(vm1, &send, "SEND-DONE", deadline)?;
        let cpu_after = cpu_time();
        self.transfers
            .push(after.saturating_sub(before).as_secs_f64());
        self.transfer_cpu.push(
            cpu_before
                .zip(cpu_after)
                .map(|(b, a)| a.saturating_sub(b).as_secs_f64()),
        );
        Ok(())
    }

    /// Ends the setup's QEMUs; its figures.
    fn finish(self, failed: Option<Error>) -> Result<NetFigures> {
        let transcript = self.consoles.finish();
        let what = self.what;
        if let Some(e) = failed {
            bail!("{what}: {e}\n--- console log ---\n{transcript}");
        }
        let rtt = Rtt::of(self.replies).ok_or_else(|| {
            Error::new(format!(
                "{what}: no ping replies\n--- console log ---\n{transcript}"
            ))
        })?;
        let f = NetFigures {
            transfers: self.transfers,
            transfer_cpu: self.transfer_cpu,
            rtt,
        };
        let each: Vec<String> = f.rates().iter().map(|r| format!("{r:.2}")).collect();
        eprintln!(
            "  {what}: {NET_MIB} MiB per round at {} MiB/s, ping median {:.3} ms of {}",
            each.join(", "),
            f.rtt.median,
            f.rtt.count
        );
        Ok(f)
    }
}

/// The round trips of busybox ping's replies (`seq=N ttl=N time=T ms`)
/// in `text`, ms.
fn reply_times(text: &str) -> Vec<f64> {
    let reply = regex::Regex::new(r"seq=[0-9]+ ttl=[0-9]+ time=([0-9.]+) ms").expect("valid");
    reply
        .captures_iter(text)
        .filter_map(|r| r[1].parse().ok())
        .collect()
}

impl Rtt {
    /// The figures of these round trips; `None` without any.
    fn of(mut times: Vec<f64>) -> Option<Rtt> {
        if times.is_empty() {
            return None;
        }
        let count = times.len();
        let avg = times.iter().sum::<f64>() / count as f64;
        let (min, max) = times
            .iter()
            .fold((f64::MAX, f64::MIN), |(lo, hi), &t| (lo.min(t), hi.max(t)));
        Some(Rtt {
            min,
            avg,
            max,
            median: median(&mut times),
            count,
        })
    }
}

/// `bench net`: the switch (entry uvmm-2vm-net) and, for scale, the same
/// guests under plain QEMU, each with a virtio-net NIC on one QEMU socket
/// network. Both setups are up at once and take turns, round by round, so
/// that the host's drift meets both alike.
fn net(ws: &Workspace, vars: &Vars, args: &NetBenchArgs) -> Result<()> {
    crate::packages::ensure(&[Need::Qemu])?;
    let guest = crate::guest::ensure(ws)?;
    let env_options = qemu::env_options(vars.qemu_options.as_deref())?;
    let forbid = vec![
        Pattern::Text("Kernel panic".into()),
        Pattern::Text("VM entered a fatal state".into()),
        // A program of the system that died (cons, the switch, a uvmm).
        Pattern::Text("killed by signal".into()),
    ];
    let ready = |s: &mut Session, n: usize, deadline| -> Result<()> {
        for _ in 0..n {
            s.expect(&Pattern::Text(crate::guest::READY_LINE.into()), deadline)
                .map_err(|f| Error::new(format!("waiting for the guests' shells: {f}")))?;
        }
        Ok(())
    };

    // Plain QEMU: two QEMUs on a socket network.
    let port = 20_000 + (std::process::id() % 20_000) as u16;
    eprintln!(
        "xtask: the same guests under plain QEMU, virtio-net on a socket network (port {port})"
    );
    let qemus = [
        format!("listen=127.0.0.1:{port}"),
        format!("connect=127.0.0.1:{port}"),
    ];
    let mut sessions = Vec::new();
    for (i, net) in qemus.iter().enumerate() {
        let extra = [
            "-netdev".to_string(),
            format!("socket,id=net0,{net}"),
            "-device".to_string(),
            format!(
                "virtio-net-device,netdev=net0,mac=52:54:00:00:00:0{}",
                i + 1
            ),
        ];
        let a = guest.native_arguments_with(
            &native_shape(1, VM_RAM_MIB, &env_options),
            &format!("ip={}:::255.255.255.0:server:eth0", NET_ADDRESSES[i]),
            &extra,
        );
        let mut s = Session::spawn(qemu::command(&a), forbid.clone(), false)?;
        // The listener first: once its guest prints, QEMU listens.
        let deadline = s.started() + args.timeout;
        s.expect(&Pattern::Text("Booting Linux".into()), deadline)
            .map_err(|f| Error::new(format!("plain QEMU {}: {f}", i + 1)))?;
        sessions.push(s);
    }

    // Under our system, booting meanwhile: both guests on one console.
    // One CPU: the comparison wants the same machine, and one vCPU per
    // guest keeps the figures free of host scheduling noise.
    let (_, mut uvmm_args, _) = headless(ws, vars, Some(NET_ENTRY), &[])?;
    add_before_kernel(
        &mut uvmm_args,
        &["-smp", "1", "-cpu", crate::guest::NATIVE_CPU],
    );
    eprintln!("xtask: two guests on the virtio switch (entry {NET_ENTRY})");
    let mut s = Session::spawn(qemu::command(&uvmm_args), forbid.clone(), false)?;

    let b = sessions.pop().expect("two sessions");
    let a = sessions.pop().expect("two sessions");
    let mut pair = [a, b];
    for q in &mut pair {
        let deadline = q.started() + args.timeout;
        ready(q, 1, deadline)?;
        q.expect(&Pattern::Text(SHELL_PROMPT.into()), deadline)
            .map_err(|f| Error::new(format!("plain QEMU's prompt: {f}")))?;
    }
    let deadline = s.started() + args.timeout;
    if let Err(e) = ready(&mut s, 2, deadline) {
        let t = s.finish().transcript;
        bail!("{NET_ENTRY}: {e}\n--- console log ---\n{t}");
    }
    let mut setups = [
        NetSetup {
            what: "plain QEMU",
            consoles: NetConsoles::Separate(pair),
            transfers: Vec::new(),
            transfer_cpu: Vec::new(),
            replies: Vec::new(),
        },
        NetSetup {
            what: "switch",
            consoles: NetConsoles::Cons(s),
            transfers: Vec::new(),
            transfer_cpu: Vec::new(),
            replies: Vec::new(),
        },
    ];
    let deadline = std::time::Instant::now() + args.timeout;
    let mut failed = [None, None];
    for (setup, f) in setups.iter_mut().zip(&mut failed) {
        *f = setup.prepare(deadline).err();
    }
    eprintln!(
        "xtask: {} rounds, each setup in turn: {NET_PINGS} pings VM1 -> VM2, then {NET_MIB} MiB",
        args.rounds
    );
    'rounds: for _ in 0..args.rounds {
        for (setup, f) in setups.iter_mut().zip(&mut failed) {
            if f.is_some() {
                break 'rounds;
            }
            *f = setup.round(deadline).err();
        }
    }
    let [reference, ours] = setups;
    let [ref_failed, our_failed] = failed;
    let reference = reference.finish(ref_failed);
    let ours = ours.finish(our_failed)?;
    let reference = reference?;

    println!(
        "Two guests ({}), {} rounds, the setups taking turns: ping x{NET_PINGS} (-i 0.5) and one\n\
         TCP stream VM1 -> VM2 of {NET_MIB} MiB (busybox dd | nc):",
        guest.kernel_deb, args.rounds
    );
    println!(
        "  (plain QEMU: two QEMU processes, one emulated CPU, {VM_RAM_MIB} MiB and one host thread\n   \
         each, QEMU's virtio-net in native code, no offloads on a socket network; the switch:\n   \
         one QEMU with one emulated CPU for the kernel, both VMs, the switch and cons, one\n   \
         host thread; the CPU on both sides -cpu {})",
        crate::guest::NATIVE_CPU
    );
    println!(
        "                                         MiB/s   ping min/median/avg/max ms (replies)"
    );
    for (what, f) in [
        (format!("virtio switch (entry {NET_ENTRY})"), &ours),
        ("plain QEMU, socket network".to_string(), &reference),
    ] {
        let r = f.rtt;
        println!(
            "  {what:<36} {:>7.2}   {:.3}/{:.3}/{:.3}/{:.3} ({})",
            f.rate(),
            r.min,
            r.median,
            r.avg,
            r.max,
            r.count
        );
    }
    let each: Vec<String> = ours
        .rates()
        .iter()
        .zip(reference.rates())
        .map(|(o, r)| format!("{:.2}", o / r))
        .collect();
    println!(
        "  switch / plain QEMU throughput        {:>7.2}  (round by round: {})",
        ours.rate() / reference.rate(),
        each.join(" ")
    );
    println!(
        "  switch / plain QEMU ping median       {:>7.2}",
        ours.rtt.median / reference.rtt.median
    );
    // What the host gave each setup for the stream: the wall-time ratio
    // moves with how much of the second core the host leaves to plain
    // QEMU's second process; this one does not.
    if let (Some(o), Some(r)) = (ours.cpu_per_mib(), reference.cpu_per_mib()) {
        println!(
            "  host CPU time per MiB streamed (QEMU's threads, median of the rounds): switch\n  \
             {o:.0} ms, plain QEMU {r:.0} ms (both processes); switch / plain QEMU {:.2}",
            o / r
        );
    }
    Ok(())
}

/// The line ipcbench prints after its last measurement.
const IPC_DONE: &str = "ipcbench: done";

fn ipc(ws: &Workspace, vars: &Vars, args: &IpcBenchArgs) -> Result<()> {
    // Without `E`: the fast path and, when the modules list has it, the
    // general path alone, side by side from one command.
    let (entries, compare) = match vars.entry.as_deref() {
        Some(e) => (vec![e.to_string()], false),
        None => {
            let listed = Modules::new(ws, vars)?.entries()?;
            let mut v = vec![DEFAULT_IPC_ENTRY.to_string()];
            if listed.iter().any(|e| e == SLOWPATH_IPC_ENTRY) {
                v.push(SLOWPATH_IPC_ENTRY.to_string());
            }
            let compare = v.len() == 2;
            (v, compare)
        }
    };
    let mut runs = Vec::new();
    let mut icount = true;
    for entry in &entries {
        let (m, counted) = ipcbench_run(ws, vars, entry, args)?;
        icount &= counted;
        runs.push(m);
    }
    println!(
        "IPC cost (ktest ipcbench, call/reply round trips / 2, {}):",
        if icount {
            "instructions under -icount shift=0"
        } else {
            "PMU cycles without -icount shift=0, host-dependent"
        }
    );
    let width = runs[0].iter().map(|m| m.what.len()).max().unwrap_or(0);
    if compare {
        println!(
            "  {:<width$}  {:>9}  {:>12}",
            "", "fast path", "general path"
        );
        for m in &runs[0] {
            let slow = runs[1].iter().find(|s| s.what == m.what).map(|s| s.cycles);
            match slow {
                Some(s) => println!(
                    "  {:<width$}  {:>9}  {:>12}  ({:.2}x)",
                    m.what,
                    m.cycles,
                    s,
                    s as f64 / m.cycles.max(1) as f64
                ),
                None => println!("  {:<width$}  {:>9}  {:>12}", m.what, m.cycles, "-"),
            }
        }
    } else {
        for m in &runs[0] {
            println!("  {:<width$}  {:>7}", m.what, m.cycles);
        }
    }
    Ok(())
}

/// The entry that runs ipcbench with the kernel's `-nofastpath`.
const SLOWPATH_IPC_ENTRY: &str = "ipcbench-slowpath";

/// Boots `entry` headless, waits for ipcbench to finish and returns its
/// measurements, and whether the cycles were instructions.
fn ipcbench_run(
    ws: &Workspace,
    vars: &Vars,
    entry: &str,
    args: &IpcBenchArgs,
) -> Result<(Vec<IpcMeasurement>, bool)> {
    // Stop at the first failure or panic instead of waiting for the timeout.
    let forbid = vec![
        Pattern::regex(IPC_FAILED).expect("valid regex"),
        Pattern::Text("panic".into()),
    ];
    let run = boot_until(ws, vars, entry, IPC_DONE, forbid, args.timeout)?;
    let measurements = parse_ipcbench(&run.record.transcript).map_err(|e| run.failed(e))?;
    Ok((measurements, run.icount))
}

/// A benchmark boot that reached its last line.
struct BenchRun {
    entry: String,
    record: crate::console::Record,
    /// QEMU ran with `-icount shift=0`: counts are instructions.
    icount: bool,
}

impl BenchRun {
    /// An error about the run, with its console log.
    fn failed(&self, why: impl std::fmt::Display) -> Error {
        failure_with_log(&self.entry, why, &self.record)
    }
}

fn failure_with_log(
    entry: &str,
    why: impl std::fmt::Display,
    record: &crate::console::Record,
) -> Error {
    Error::new(format!(
        "{entry}: {why}\n--- console log ---\n{}--- QEMU stderr ---\n{}",
        record.transcript, record.stderr
    ))
}

/// Boots `entry` headless and waits up to `timeout` for a line with
/// `done`, failing at once on a line with one of `forbid`.
fn boot_until(
    ws: &Workspace,
    vars: &Vars,
    entry: &str,
    done: &str,
    forbid: Vec<Pattern>,
    timeout: Duration,
) -> Result<BenchRun> {
    let (entry, arguments, _) = headless(ws, vars, Some(entry), &[])?;
    let icount = counts_instructions(&arguments);
    eprintln!(
        "xtask: booting '{entry}' ({}), waiting up to {} s for {done:?}: {} {}",
        if icount {
            "-icount shift=0: cycles and nanoseconds are instructions"
        } else {
            "no -icount shift=0: cycles and nanoseconds depend on the host"
        },
        timeout.as_secs(),
        qemu::QEMU,
        crate::shell::join(&arguments)
    );
    let mut session = Session::spawn(qemu::command(&arguments), forbid, false)?;
    let deadline = session.started() + timeout;
    let waited = session.expect(&Pattern::Text(done.into()), deadline);
    let record = session.finish();
    let at = waited
        .map_err(|f| failure_with_log(&entry, format!("waiting for {done:?}: {f}"), &record))?;
    eprintln!("xtask: {done:?} after {:.3} s", at.as_secs_f64());
    Ok(BenchRun {
        entry,
        record,
        icount,
    })
}

/// Whether QEMU runs with `-icount shift=0` (the last `-icount` wins), so that
/// the guest's cycle counter counts instructions.
fn counts_instructions(arguments: &[String]) -> bool {
    let value = arguments
        .windows(2)
        .rev()
        .find(|pair| pair[0] == "-icount")
        .map(|pair| pair[1].as_str());
    // `-icount 0` is the short spelling of `-icount shift=0`.
    value.is_some_and(|v| {
        v.split(',')
            .enumerate()
            .any(|(i, p)| p == "shift=0" || (i == 0 && p == "0"))
    })
}

/// A line of ipcbench that reports a failure (of a measurement or its set-up).
const IPC_FAILED: &str = "ipcbench: .*failed";

/// One line `ipcbench: <what>: <N> round trips, <C> cycles per IPC`.
#[derive(Debug, PartialEq)]
struct IpcMeasurement {
    what: String,
    round_trips: u64,
    /// Cycles per IPC: a round trip's cycles divided by two.
    cycles: u64,
}

/// The measurements in ipcbench's console output (with or without the
/// transcript's time stamps), up to `ipcbench: done`. Fails on a line that
/// reports a failure, a measurement line whose numbers do not parse, no
/// `done` line, or no measurement.
fn parse_ipcbench(console: &str) -> Result<Vec<IpcMeasurement>> {
    let failed = regex::Regex::new(IPC_FAILED).expect("valid regex");
    let mut measurements = Vec::new();
    for line in console.lines() {
        let Some(start) = line.find("ipcbench: ") else {
            continue;
        };
        let text = line[start..].trim_end();
        if failed.is_match(text) {
            bail!("ipcbench reported a failure: {text}");
        }
        if text == IPC_DONE {
            if measurements.is_empty() {
                bail!("ipcbench printed {IPC_DONE:?} without any measurement");
            }
            return Ok(measurements);
        }
        let rest = &text["ipcbench: ".len()..];
        let Some(numbers) = rest.strip_suffix(" cycles per IPC") else {
            continue;
        };
        let parsed = numbers.rsplit_once(": ").and_then(|(what, numbers)| {
            let (round_trips, cycles) = numbers.split_once(" round trips, ")?;
            Some(IpcMeasurement {
                what: what.to_string(),
                round_trips: round_trips.parse().ok()?,
                cycles: cycles.parse().ok()?,
            })
        });
        match parsed {
            Some(m) if m.round_trips > 0 => measurements.push(m),
            _ => bail!(
                "cannot read the line {text:?} (expected 'ipcbench: <what>: <N> round trips, <C> cycles per IPC')"
            ),
        }
    }
    bail!("no line {IPC_DONE:?} in the console output")
}

fn file_size(path: &Path) -> Result<u64> {
    Ok(std::fs::metadata(path)
        .context(|| path.display().to_string())?
        .len())
}

/// One kind of boot of [`alternate`]: its name, QEMU's arguments, and the
/// console output that ends it.
type Boot<'a> = (&'a str, &'a [String], &'a Pattern);

/// How long a boot took to its ready line: wall time since QEMU's start,
/// and the CPU time QEMU's threads had used by then (the same when QEMU
/// has a CPU to itself; less when other work on the host took it away).
#[derive(Clone, Copy, Debug)]
struct Timing {
    wall: Duration,
    cpu: Option<Duration>,
}

/// Boots `base` and `other` in turn, `runs` times each, each until its
/// pattern (at most `timeout`), a Linux guest's panic or a VM's fatal
/// state failing the run; the timings, printed as they come, and each of
/// `other`'s boots' console handed to `seen`. Alternating, a busy host
/// slows both kinds alike.
fn alternate(
    runs: usize,
    timeout: Duration,
    base: Boot<'_>,
    other: Boot<'_>,
    seen: &mut dyn FnMut(&Record),
) -> Result<(Vec<Timing>, Vec<Timing>)> {
    let forbid = vec![
        Pattern::Text("Kernel panic".into()),
        Pattern::Text("VM entered a fatal state".into()),
    ];
    let time = |(name, arguments, ready): Boot<'_>, run: usize| -> Result<(Timing, Record)> {
        let mut session = Session::spawn(qemu::command(arguments), forbid.clone(), false)?;
        let deadline = session.started() + timeout;
        let waited = session.expect(ready, deadline);
        let cpu = session.cpu_time();
        let record = session.finish();
        let wall = waited.map_err(|f| {
            failure_with_log(
                &format!("{name} run {run}"),
                format!("waiting for {ready}: {f}"),
                &record,
            )
        })?;
        let cpu_note = cpu.map_or(String::new(), |c| {
            format!(" (QEMU's CPU time {:.3} s)", c.as_secs_f64())
        });
        eprintln!("  run {run} {name}: {:.3} s{cpu_note}", wall.as_secs_f64());
        Ok((Timing { wall, cpu }, record))
    };
    let mut times = (Vec::new(), Vec::new());
    for run in 1..=runs {
        times.0.push(time(base, run)?.0);
        let (t, record) = time(other, run)?;
        seen(&record);
        times.1.push(t);
    }
    Ok(times)
}

/// The walls of `timings`.
fn walls(timings: &[Timing]) -> Vec<Duration> {
    timings.iter().map(|t| t.wall).collect()
}

/// The CPU times of `timings`, if the host gave every one.
fn cpu_times(timings: &[Timing]) -> Option<Vec<Duration>> {
    timings.iter().map(|t| t.cpu).collect()
}

/// Prints the medians of QEMU's CPU time of `base` and `other` and of the
/// runs' ratios, labelled like the wall-time lines (`width` wide), when
/// the host gave them.
fn print_cpu_times(base: (&str, &[Timing]), other: (&str, &[Timing]), width: usize) {
    let (Some(mut b), Some(mut o)) = (cpu_times(base.1), cpu_times(other.1)) else {
        return;
    };
    let ratio = run_ratios(&b, &o);
    println!("  QEMU's CPU time to the same line (all its threads):");
    for (label, v) in [(base.0, &mut b), (other.0, &mut o)] {
        println!("  {label:<width$} {:>6.3} s", median(v).as_secs_f64());
    }
    if let Some((m, each)) = ratio {
        let label = format!("{} / {}, median of the runs", other.0, base.0);
        println!("  {label:<width$} {m:>6.2}  (run by run: {each})");
    }
}

/// When a uvmm boot's vCPU 0 entered the guest ([`GUEST_ENTRY`]) and how
/// long uvmm said loading the kernel took.
struct GuestEntry {
    entered: Option<Duration>,
    load: Option<Duration>,
}

/// [`GuestEntry`] of a uvmm boot's console.
fn guest_entry(record: &Record) -> GuestEntry {
    let load = regex::Regex::new(r"VMM\[loader\]: kernel .*; (\d+) ms to (inflate|copy) it")
        .ok()
        .and_then(|re| {
            record.lines.iter().find_map(|(_, l)| {
                let ms = re.captures(l)?.get(1)?.as_str().parse().ok()?;
                Some(Duration::from_millis(ms))
            })
        });
    GuestEntry {
        entered: record
            .lines
            .iter()
            .find(|(_, l)| l.contains(GUEST_ENTRY))
            .map(|&(at, _)| at),
        load,
    }
}

/// The median of the runs' ratios `other[i] / base[i]`, and every ratio
/// (for printing); `None` without runs. A run's two boots follow each
/// other, so their ratio holds while the host's speed drifts over the runs
/// (it does, by a quarter on a quiet host), where the ratio of two medians
/// would mix boots from different phases.
fn run_ratios(base: &[Duration], other: &[Duration]) -> Option<(f64, String)> {
    let mut ratios: Vec<f64> = base
        .iter()
        .zip(other)
        .filter(|(b, _)| !b.is_zero())
        .map(|(b, o)| o.as_secs_f64() / b.as_secs_f64())
        .collect();
    let each: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
    (!ratios.is_empty()).then(|| (median(&mut ratios), each.join(" ")))
}

/// What [`median`] takes: times and ratios.
trait Sample: Copy + PartialOrd {
    const ZERO: Self;
    /// The mean of two.
    fn mid(a: Self, b: Self) -> Self;
}

impl Sample for Duration {
    const ZERO: Self = Duration::ZERO;
    fn mid(a: Self, b: Self) -> Self {
        (a + b) / 2
    }
}

impl Sample for f64 {
    const ZERO: Self = 0.0;
    fn mid(a: Self, b: Self) -> Self {
        (a + b) / 2.0
    }
}

/// The median (mean of the middle two for an even count); zero when empty.
fn median<T: Sample>(samples: &mut [T]) -> T {
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let n = samples.len();
    match n {
        0 => T::ZERO,
        _ if n % 2 == 1 => samples[n / 2],
        _ => T::mid(samples[n / 2 - 1], samples[n / 2]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_entry_and_load_time_from_uvmm_lines() {
        let ms = Duration::from_millis;
        let record = |lines: &[(u64, &str)]| Record {
            transcript: String::new(),
            stderr: String::new(),
            lines: lines.iter().map(|&(t, l)| (ms(t), l.to_string())).collect(),
        };
        let e = guest_entry(&record(&[
            (
                300,
                "VMM[ram]: dataspace 'ram': 0x8000000 bytes at 0x1000200000",
            ),
            (
                640,
                "VMM[loader]: kernel rom/Image.gz (Image(...), gzip) at 0x40000000..0x42010000, entry 0x40000000; 271 ms to inflate it and the ramdisk",
            ),
            (700, "VMM[vmm]: vCPU 0 runs on CPU 0 (thread 0x110)"),
        ]));
        assert_eq!((e.entered, e.load), (Some(ms(700)), Some(ms(271))));
        let e = guest_entry(&record(&[(5, "Hello World!")]));
        assert_eq!((e.entered, e.load), (None, None));
    }

    #[test]
    fn program_starts_from_the_console() {
        let report = "l4re: rom/x: first output at 226.965 ms: runtime began at 142.127 ms, 43 page faults, 55 mappings (1244 KiB), 43 system calls, 26 dataspaces, 5.515 ms serving";
        let ms = Duration::from_millis;
        let lines: Vec<(Duration, String)> = [
            (10, "kernel: starting root task 'moe'".to_string()),
            (11, "stray | before moe's line".to_string()),
            (12, "moe: hello from the root task at EL0".to_string()),
            (13, "MOE: RAM: 1 MiB".to_string()),
            (20, format!("ned     | {report}")),
            (21, "ned     | Ned says: Hi World!".to_string()),
            (22, "ned     | again".to_string()),
            (30, "Console Server".to_string()),
            (31, "cons> ".to_string()),
            (40, format!("\x1b[32mone     | {report}\x1b[0m")),
            (41, "\x1b[32mone     | one: hello\x1b[0m".to_string()),
            (50, "guest | Linux version 6.1".to_string()),
            (60, report.replace("rom/x", "rom/uvmm")),
            (61, "VMM[ram]: dataspace 'ram'".to_string()),
            (
                62,
                "VMM[vmm]: vCPU 0 runs on CPU 0 (thread 0x115)".to_string(),
            ),
            (
                63,
                "VMM[vmm]: vCPU 1 runs on CPU 1 (thread 0x117)".to_string(),
            ),
            (64, "moe: something".to_string()),
            (70, "guest: ready".to_string()),
            (71, "more guest output".to_string()),
            (80, format!("vm1     | {report}")),
            // As cons writes it: its prompt, back to the start, erased.
            (
                81,
                "cons> \r\x1b[K\x1b[37mvm1     | VMM[vmm]: vCPU 0 runs on CPU 2 (thread 0x200)\x1b[0m\r".to_string(),
            ),
            (
                82,
                "vm1     | VMM[vmm]: vCPU 1 runs on CPU 3 (thread 0x201)".to_string(),
            ),
            (90, "vm1     | [    0.000000] Booting Linux".to_string()),
        ]
        .into_iter()
        .map(|(t, l)| (ms(t), l))
        .collect();
        let starts = program_starts(&lines, "moe: hello from the root task");
        let got: Vec<(&str, Duration, bool)> = starts
            .iter()
            .map(|s| (s.name.as_str(), s.first_line, s.report.is_some()))
            .collect();
        assert_eq!(
            got,
            [
                ("ned", ms(21), true),
                ("\"Console Server\"", ms(30), false),
                ("one", ms(41), true),
                ("guest", ms(50), false),
                ("uvmm", ms(61), true),
                ("uvmm: guest entered", ms(62), false),
                ("uvmm: guest's first line", ms(70), false),
                ("vm1", ms(81), true),
                ("vm1: guest entered", ms(81), false),
                ("vm1: guest's first line", ms(90), false),
            ]
        );
        assert!(!guest_pending(&starts));
        assert!(guest_pending(&program_starts(&lines[..17], "moe: hello")));
        assert_eq!(starts[4].report.as_ref().unwrap().program, "rom/uvmm");
        let r = starts[0].report.as_ref().unwrap();
        assert_eq!((r.faults, r.maps, r.mapped_kib), (43, 55, 1244));
        assert_eq!((r.syscalls, r.dataspaces), (43, 26));
        assert!((r.output_ms - 226.965).abs() < 1e-9 && (r.serving_ms - 5.515).abs() < 1e-9);
        assert_eq!(StartReport::parse("l4re: x: first output at soon"), None);
        assert_eq!(visible("\x1b[1;32ma\x1b[0m b \x1bx"), "a b x");
        assert_eq!(
            visible("cons> \r\x1b[K\x1b[37mvm2     | text\r\x1b[0m\r"),
            "vm2     | text"
        );
        assert_eq!(visible("cons> \r\x1b[K"), "cons> ");
    }

    /// What ipcbench prints, as the session's transcript shows it.
    const GOOD: &str = "\
[   0.101] L4 Bootstrapper
[   0.480] Fiasco: CPUs online: 4
[   2.000] ipcbench: same address space, one CPU: 10000 round trips, 123 cycles per IPC
[   3.000] ipcbench: two address spaces, one CPU: 10000 round trips, 130 cycles per IPC
[   9.000] ipcbench: same address space, two CPUs: 10000 round trips, 900 cycles per IPC
[   9.001] ipcbench: done
";

    fn measurement(what: &str, cycles: u64) -> IpcMeasurement {
        IpcMeasurement {
            what: what.into(),
            round_trips: 10000,
            cycles,
        }
    }

    #[test]
    fn ipcbench_good_transcript() {
        assert_eq!(
            parse_ipcbench(GOOD).unwrap(),
            vec![
                measurement("same address space, one CPU", 123),
                measurement("two address spaces, one CPU", 130),
                measurement("same address space, two CPUs", 900),
            ]
        );
        // Raw console output with CRLF line ends, without time stamps.
        let raw = "ipcbench: same address space, one CPU: 10000 round trips, 7 cycles per IPC\r\n\
                   ipcbench: done\r\n";
        assert_eq!(
            parse_ipcbench(raw).unwrap(),
            vec![measurement("same address space, one CPU", 7)]
        );
    }

    #[test]
    fn ipcbench_failed_line() {
        let failed = GOOD.replace(
            "two address spaces, one CPU: 10000 round trips, 130 cycles per IPC",
            "two address spaces, one CPU: failed: call: no capability",
        );
        let err = parse_ipcbench(&failed).unwrap_err().to_string();
        assert!(err.contains("two address spaces, one CPU: failed"), "{err}");
        let setup = format!("[   1.000] ipcbench: setup map failed: denied\n{GOOD}");
        assert!(parse_ipcbench(&setup).is_err());
        let task =
            "ipcbench: two address spaces: failed to make the task: no memory\nipcbench: done\n";
        assert!(parse_ipcbench(task).is_err());
        assert!(Pattern::regex(IPC_FAILED).unwrap().is_in(task.as_bytes()));
        assert!(!Pattern::regex(IPC_FAILED).unwrap().is_in(GOOD.as_bytes()));
    }

    #[test]
    fn ipcbench_without_done() {
        let cut = GOOD.replace("ipcbench: done", "ipcbench: do");
        let err = parse_ipcbench(&cut).unwrap_err().to_string();
        assert!(err.contains("no line \"ipcbench: done\""), "{err}");
        assert!(parse_ipcbench("").is_err());
        assert!(parse_ipcbench("ipcbench: done\n").is_err());
    }

    #[test]
    fn ipcbench_garbage_numbers() {
        for garbage in [
            "ipcbench: x: many round trips, 12 cycles per IPC",
            "ipcbench: x: 100 round trips, 12x cycles per IPC",
            "ipcbench: x: 100 round trips, -3 cycles per IPC",
            "ipcbench: x: 0 round trips, 0 cycles per IPC",
            "ipcbench: x: 100 round trips,  cycles per IPC",
            "ipcbench: 100 round trips, 12 cycles per IPC",
            "ipcbench: x: 99999999999999999999999 round trips, 1 cycles per IPC",
        ] {
            let text = format!("{garbage}\nipcbench: done\n");
            let err = parse_ipcbench(&text).unwrap_err().to_string();
            assert!(err.contains("cannot read the line"), "{garbage}: {err}");
        }
    }

    #[test]
    fn vmbench_transcript() {
        let good = "\
[   2.000] VMM[vmm]: 1 vCPU(s), boot at 0x40080000 with the device tree at 0x40e00000
[   2.100] vmbench: guest at EL1, virtual counter at 62500000 Hz, 2000 rounds per operation
[   2.200] vmbench: MMIO read (virtio console, InterruptStatus): 2000 rounds, 6179 ns each
[   2.300] vmbench: HVC (PSCI_VERSION): 2000 rounds, 7056 ns each
[   2.400] vmbench: done
";
        assert_eq!(
            parse_vmbench(good).unwrap(),
            vec![
                VmExit {
                    what: "MMIO read (virtio console, InterruptStatus)".into(),
                    ns: 6179
                },
                VmExit {
                    what: "HVC (PSCI_VERSION)".into(),
                    ns: 7056
                },
            ]
        );
        let failed = good.replace(
            "HVC (PSCI_VERSION): 2000 rounds, 7056 ns each",
            "SGI: failed: interrupt 1 was not taken",
        );
        let err = parse_vmbench(&failed).unwrap_err().to_string();
        assert!(err.contains("SGI: failed: interrupt 1"), "{err}");
        let cut = good.replace("vmbench: done", "vmbench: do");
        assert!(parse_vmbench(&cut).is_err());
        assert!(parse_vmbench("vmbench: done\n").is_err());
    }

    #[test]
    fn icount_detection() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(counts_instructions(&args(&[
            "-m", "1", "-icount", "shift=0"
        ])));
        assert!(counts_instructions(&args(&[
            "-icount",
            "shift=0,align=off"
        ])));
        assert!(counts_instructions(&args(&["-icount", "0"])));
        assert!(!counts_instructions(&args(&["-icount", "shift=auto"])));
        assert!(!counts_instructions(&args(&[
            "-icount", "shift=0", "-icount", "shift=3"
        ])));
        assert!(!counts_instructions(&args(&["-m", "1024"])));
    }

    #[test]
    fn round_trips_of_the_replies() {
        let t = "PING 192.168.1.2 (192.168.1.2): 56 data bytes\r\n\
                 64 bytes from 192.168.1.2: seq=0 ttl=64 time=2.500 ms\r\n\
                 64 bytes from 192.168.1.2: seq=1 ttl=64 time=24.000 ms\r\n\
                 64 bytes from 192.168.1.2: seq=2 ttl=64 time=3.000 ms\r\n\
                 64 bytes from 192.168.1.2: seq=3 ttl=64 time=2.000 ms\r\n\
                 round-trip min/avg/max = 2.000/7.875/24.000 ms\r\n";
        let times = reply_times(t);
        assert_eq!(times, [2.5, 24.0, 3.0, 2.0]);
        assert_eq!(
            Rtt::of(times),
            Some(Rtt {
                min: 2.0,
                avg: 7.875,
                max: 24.0,
                median: 2.75,
                count: 4
            })
        );
        assert!(reply_times("round-trip min/avg/max = 1.000/1.000/1.000 ms\r\n").is_empty());
        assert_eq!(Rtt::of(Vec::new()), None);
    }

    #[test]
    fn rates_of_the_rounds() {
        let mut f = NetFigures {
            transfers: vec![16.0, 32.0, 20.0],
            transfer_cpu: vec![Some(16.0), Some(64.0), Some(32.0)],
            rtt: Rtt::default(),
        };
        assert_eq!(f.rates(), [4.0, 2.0, 3.2]);
        assert_eq!(f.rate(), 3.2);
        // 64 MiB per round: 250, 1000 and 500 ms of CPU per MiB.
        assert_eq!(f.cpu_per_mib(), Some(500.0));
        f.transfer_cpu[1] = None;
        assert_eq!(f.cpu_per_mib(), None, "a round the host said nothing of");
    }

    #[test]
    fn median_of_odd_even_and_empty() {
        let ms = Duration::from_millis;
        assert_eq!(median(&mut [ms(5), ms(1), ms(3)]), ms(3));
        assert_eq!(
            median(&mut [ms(4), ms(1), ms(3), ms(2)]),
            Duration::from_micros(2500)
        );
        assert_eq!(median::<Duration>(&mut []), Duration::ZERO);
        assert_eq!(median(&mut [1.3, 1.1, 1.2, 1.0]), 1.15);
    }

    #[test]
    fn ratios_run_by_run() {
        let ms = Duration::from_millis;
        let (m, each) = run_ratios(
            &[ms(2000), ms(1000), ms(1000)],
            &[ms(3000), ms(1100), ms(2000)],
        )
        .unwrap();
        assert_eq!(each, "1.50 1.10 2.00");
        assert_eq!(m, 1.5);
        // A run without a base time has no ratio; no runs, none at all.
        assert_eq!(run_ratios(&[ms(0)], &[ms(5)]), None);
        assert_eq!(run_ratios(&[], &[]), None);
    }
}

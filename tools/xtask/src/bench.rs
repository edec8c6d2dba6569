//! `cargo xtask bench boot E=<entry>`: boot times and binary sizes.
//! `cargo xtask bench ipc [E=<entry>]`: IPC costs from ktest's ipcbench.
//! `cargo xtask bench vm`: boot time of the Linux guest, natively and under
//! uvmm.
//!
//! Benchmarks, not tests: `boot` boots the entry headless N times and reports
//! the median wall time from QEMU's start to the first occurrence of each
//! marker; `ipc` boots the `ipcbench` entry once and tabulates what it prints.

use std::path::Path;
use std::time::Duration;

use crate::cli::{Bench, BootBenchArgs, DEFAULT_IPC_ENTRY, IpcBenchArgs, Vars, VmBenchArgs};
use crate::console::{Pattern, Session};
use crate::error::{Context, Error, Result, bail};
use crate::image::Modules;
use crate::packages::Need;
use crate::qemu::{self, ConsoleMode};
use crate::targets::{self, KERNEL_ALIAS, ROOTTASK_ALIAS, TargetCrate};
use crate::workspace::Workspace;

pub fn run(ws: &Workspace, vars: &Vars, bench: &Bench) -> Result<()> {
    match bench {
        Bench::Boot(args) => boot(ws, vars, args),
        Bench::Ipc(args) => ipc(ws, vars, args),
        Bench::Vm(args) => vm(ws, vars, args),
    }
}

/// Packs `entry` (or the one the user picks) and returns its name, the
/// arguments that boot it headless with a piped console, and the image.
fn headless(
    ws: &Workspace,
    vars: &Vars,
    entry: Option<&str>,
) -> Result<(String, Vec<String>, crate::image::Image)> {
    let env_options = qemu::env_options(vars.qemu_options.as_deref())?;
    let modules = Modules::new(ws, vars)?;
    let entry = modules.choose_entry(entry)?;
    targets::prepare(ws, &[Need::Qemu])?;
    let image = modules.pack(&entry)?;
    let arguments = qemu::arguments(
        ConsoleMode::Piped,
        &modules.qemu_options(&entry)?,
        &[],
        &env_options,
        &image.path,
    );
    Ok((entry, arguments, image))
}

fn boot(ws: &Workspace, vars: &Vars, args: &BootBenchArgs) -> Result<()> {
    let (entry, arguments, image) = headless(ws, vars, vars.entry.as_deref())?;
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

    // times[marker][run]
    let mut times = vec![Vec::new(); markers.len()];
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
        session.finish();
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
    println!(
        "  image          {:>10} B  {}",
        image.size,
        ws.show(&image.path)
    );
    Ok(())
}

/// The entry that boots the guest under uvmm for `bench vm`.
const UVMM_ENTRY: &str = "uvmm";

/// Boots the guest kernel and ramdisk natively (QEMU's own device tree and
/// PL011) and under uvmm (entry `uvmm`), alternating, N times each; the
/// median time from QEMU's start to `/init`'s ready line of each.
fn vm(ws: &Workspace, vars: &Vars, args: &VmBenchArgs) -> Result<()> {
    let env_options = qemu::env_options(vars.qemu_options.as_deref())?;
    crate::packages::ensure(&[Need::Qemu])?;
    let guest = crate::guest::ensure(ws)?;
    let native_args = guest.native_arguments(&env_options);
    let (_, uvmm_args, _) = headless(ws, vars, Some(UVMM_ENTRY))?;
    eprintln!(
        "xtask: booting the guest {} times natively ({} {}) and under uvmm (entry {UVMM_ENTRY}), alternating",
        args.runs,
        qemu::QEMU,
        crate::shell::join(&native_args)
    );
    let ready = Pattern::Text(crate::guest::READY_LINE.into());
    let forbid = vec![
        Pattern::Text("Kernel panic".into()),
        Pattern::Text("VM entered a fatal state".into()),
    ];
    let time_to_ready = |arguments: &[String], what: &str, run: usize| -> Result<Duration> {
        let mut session = Session::spawn(qemu::command(arguments), forbid.clone(), false)?;
        let deadline = session.started() + args.timeout;
        let waited = session.expect(&ready, deadline);
        let record = session.finish();
        let at = waited.map_err(|failure| {
            Error::new(format!(
                "{what} run {run}: waiting for {ready}: {failure}\n--- console log ---\n{}--- QEMU stderr ---\n{}",
                record.transcript, record.stderr
            ))
        })?;
        eprintln!("  run {run} {what}: {:.3} s", at.as_secs_f64());
        Ok(at)
    };
    let mut native = Vec::new();
    let mut uvmm = Vec::new();
    for run in 1..=args.runs {
        native.push(time_to_ready(&native_args, "native", run)?);
        uvmm.push(time_to_ready(&uvmm_args, "uvmm", run)?);
    }
    let native = median(&mut native).as_secs_f64();
    let uvmm = median(&mut uvmm).as_secs_f64();
    println!(
        "Linux guest boot ({}), median of {} runs, wall time from QEMU start to {:?}:",
        guest.kernel_deb,
        args.runs,
        crate::guest::READY_LINE.trim_end()
    );
    println!("  native (QEMU virt, -smp 4 -m 1024)  {native:>8.3} s");
    println!("  under uvmm (entry {UVMM_ENTRY})            {uvmm:>8.3} s");
    if native > 0.0 {
        println!(
            "  uvmm / native                       {:>8.2}",
            uvmm / native
        );
    }
    println!("sizes:");
    for path in [&guest.image, &guest.image_gz, &guest.ramdisks[0]] {
        println!("  {:>10} B  {}", file_size(path)?, ws.show(path));
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
    let (entry, arguments, _) = headless(ws, vars, Some(entry))?;
    let icount = counts_instructions(&arguments);
    eprintln!(
        "xtask: booting '{entry}' ({}), waiting up to {} s for {IPC_DONE:?}: {} {}",
        if icount {
            "-icount shift=0: cycles are instructions"
        } else {
            "no -icount shift=0: cycles depend on the host"
        },
        args.timeout.as_secs(),
        qemu::QEMU,
        crate::shell::join(&arguments)
    );

    // Stop at the first failure or panic instead of waiting for the timeout.
    let forbid = vec![
        Pattern::regex(IPC_FAILED).expect("valid regex"),
        Pattern::Text("panic".into()),
    ];
    let mut session = Session::spawn(qemu::command(&arguments), forbid, false)?;
    let deadline = session.started() + args.timeout;
    let waited = session.expect(&Pattern::Text(IPC_DONE.into()), deadline);
    let record = session.finish();
    let failed = |why: String| {
        Error::new(format!(
            "{why}\n--- console log ---\n{}--- QEMU stderr ---\n{}",
            record.transcript, record.stderr
        ))
    };
    let at = waited.map_err(|failure| failed(format!("waiting for {IPC_DONE:?}: {failure}")))?;
    eprintln!("xtask: {IPC_DONE:?} after {:.3} s", at.as_secs_f64());
    let measurements = parse_ipcbench(&record.transcript).map_err(|e| failed(e.to_string()))?;
    Ok((measurements, icount))
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

/// The median (mean of the middle two for an even count); zero when empty.
fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    let n = samples.len();
    match n {
        0 => Duration::ZERO,
        _ if n % 2 == 1 => samples[n / 2],
        _ => (samples[n / 2 - 1] + samples[n / 2]) / 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn median_of_odd_even_and_empty() {
        let ms = Duration::from_millis;
        assert_eq!(median(&mut [ms(5), ms(1), ms(3)]), ms(3));
        assert_eq!(
            median(&mut [ms(4), ms(1), ms(3), ms(2)]),
            Duration::from_micros(2500)
        );
        assert_eq!(median(&mut []), Duration::ZERO);
    }
}

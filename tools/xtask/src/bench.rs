//! `cargo xtask bench boot E=<entry>`: boot times and binary sizes.
//!
//! A benchmark, not a test: it boots the entry headless N times and reports the
//! median wall time from QEMU's start to the first occurrence of each marker.

use std::path::Path;
use std::time::Duration;

use crate::cli::{BenchArgs, Vars};
use crate::console::{Pattern, Session};
use crate::error::{Context, Result, bail};
use crate::image::Modules;
use crate::packages::Need;
use crate::qemu::{self, ConsoleMode};
use crate::targets::{self, KERNEL_ALIAS, ROOTTASK_ALIAS, TargetCrate};
use crate::workspace::Workspace;

pub fn boot(ws: &Workspace, vars: &Vars, args: &BenchArgs) -> Result<()> {
    let env_options = qemu::env_options(vars.qemu_options.as_deref())?;
    let modules = Modules::new(ws, vars)?;
    let entry = modules.choose_entry(vars.entry.as_deref())?;
    targets::prepare(ws, &[Need::Qemu])?;
    let image = modules.pack(&entry)?;
    let arguments = qemu::arguments(
        ConsoleMode::Piped,
        &modules.qemu_options(&entry)?,
        &[],
        &env_options,
        &image.path,
    );
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

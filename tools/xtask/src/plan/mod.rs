//! `cargo xtask plan E=<entry>`: the system an entry builds, before it
//! boots, and the checks that catch what makes static partitioning fail
//! at run time.
//!
//! The entry's ned script runs on the host against ned's recording
//! backend ([`model`]); the plan follows what it starts: io's
//! configuration files (read by the io crate's own evaluator,
//! [`io::load_all`]), uvmm's command lines and device trees ([`vm`]), the
//! network switches' command lines and ports (read by the switch's own
//! code, [`net`]). [`checks`] finds the faults, [`report`] prints the
//! system and [`svg`] draws it (`target/plan/<entry>.svg`).

pub mod checks;
pub mod model;
pub mod net;
pub mod report;
pub mod svg;
pub mod vm;

use std::path::PathBuf;

use bootstrap_builder::modlist::{ModulesList, basename};

use crate::cli::{PlanArgs, Vars};
use crate::error::{Context, Result, bail};
use crate::image::Modules;
use crate::workspace::Workspace;

pub use checks::{Finding, Level};
use model::{Inputs, Machine, System};
use vm::Vm;

/// The plan of an entry.
#[derive(Clone, Debug)]
pub struct Plan {
    pub system: System,
    pub vms: Vec<Vm>,
    /// The virtio network switches and their ports.
    pub switches: Vec<net::SwitchPlan>,
    /// `rom/` files the system needs, with who needs them (and where).
    pub needs: Vec<(String, String)>,
}

/// `n` bytes in MiB (rounded up).
pub fn mib(n: u64) -> u64 {
    n.div_ceil(1 << 20)
}

/// `0x9010000..0x9011000`.
pub fn range((a, b): (u64, u64)) -> String {
    format!("{a:#x}..{b:#x}")
}

/// `0x8000000..0x8010000, 0x80a0000..0x9000000`.
pub fn ranges(r: &[(u64, u64)]) -> String {
    r.iter().map(|&m| range(m)).collect::<Vec<_>>().join(", ")
}

/// Builds the plan from `inputs`.
pub fn build(inputs: &Inputs) -> Plan {
    let system = model::run_script(inputs);
    let vms = system
        .tasks
        .iter()
        .filter(|t| t.name() == "uvmm")
        .map(|t| vm::read(t, &system, inputs))
        .collect();
    let switches = net::read(&system);
    let mut plan = Plan {
        system,
        vms,
        switches,
        needs: Vec::new(),
    };
    plan.needs = needs(&plan, inputs);
    plan
}

/// Every `rom/` file the system needs.
fn needs(plan: &Plan, inputs: &Inputs) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut add = |file: &str, why: String| {
        if file.starts_with("rom/") && !out.iter().any(|(f, _)| f == file) {
            out.push((file.to_string(), why));
        }
    };
    if let Some((script, _)) = &inputs.script {
        add("rom/ned", "moe (starting ned)".into());
        add("rom/l4re", "moe (starting ned)".into());
        add(script, "moe (ned's script)".into());
    }
    for (file, site) in &plan.system.rom_reads {
        add(file, format!("{site} (the script reads it)"));
    }
    for t in &plan.system.tasks {
        let who = format!("{} (#{}, started at {})", t.label(), t.id, t.site);
        add(&t.program, who.clone());
        add("rom/l4re", who.clone());
        for a in &t.args {
            add(a, who.clone());
        }
    }
    for vm in &plan.vms {
        let t = plan.system.task(vm.task);
        let who = format!("{} (#{}, started at {})", t.label(), t.id, t.site);
        for f in vm.dtbs.iter().chain(&vm.kernel).chain(&vm.ramdisk) {
            add(f, who.clone());
        }
    }
    out
}

/// What `cargo xtask plan` resolves for an entry.
pub fn inputs(ws: &Workspace, vars: &Vars, entry: &str) -> Result<Inputs> {
    let modules = Modules::new(ws, vars)?;
    let list = ModulesList::load(modules.list()).context(|| "reading the modules list".into())?;
    let spec = list.entry(entry).context(|| format!("entry '{entry}'"))?;
    let mut dirs: Vec<PathBuf> = modules.search_path().to_vec();
    dirs.extend(list.search_path().iter().cloned());
    let names: Vec<String> = spec
        .modules
        .iter()
        .map(|m| {
            if m.opts.shell {
                // The file the command names (`echo $X/vmm.lua`): its last word.
                let last = m.file.split_whitespace().last().unwrap_or("");
                basename(last).to_string()
            } else {
                m.name().to_string()
            }
        })
        .collect();
    let mut size = 0;
    for n in &names {
        if let Some(p) = dirs.iter().map(|d| d.join(n)).find(|p| p.is_file()) {
            size += std::fs::metadata(&p).map_or(0, |m| m.len());
        }
    }
    // moe starts ned with a script as its first argument (but not with
    // --init=<program>); other root tasks run on their own.
    let args = &spec.roottask.args;
    let is_moe = basename(&spec.roottask.file) == "moe";
    let script = args
        .iter()
        .position(|a| !a.starts_with('-'))
        .filter(|_| is_moe && !args.iter().any(|a| a.starts_with("--init")))
        .map(|i| {
            (
                spec.roottask.args[i].clone(),
                spec.roottask.args[i + 1..].to_vec(),
            )
        });
    let qemu = modules.qemu_arguments(
        entry,
        crate::qemu::ConsoleMode::Piped,
        &[],
        &crate::qemu::env_options(vars.qemu_options.as_deref())?,
        std::path::Path::new("-"),
    )?;
    Ok(Inputs {
        entry: entry.to_string(),
        script,
        root: format!("{} {}", spec.roottask.file, spec.roottask.cmdline())
            .trim()
            .to_string(),
        modules: names,
        modules_size: size,
        dirs,
        machine: machine(&qemu)?,
    })
}

/// CPUs and RAM from QEMU's options (the last `-smp` and `-m` win).
pub fn machine(args: &[String]) -> Result<Machine> {
    let mut m = Machine {
        cpus: 1,
        ram: crate::qemu::DEFAULT_RAM,
    };
    for w in args.windows(2) {
        match w[0].as_str() {
            "-smp" => {
                m.cpus = crate::qemu::smp_cpus(&w[1]).ok_or_else(|| {
                    crate::error::Error::new(format!("-smp '{}': not a CPU count", w[1]))
                })?;
            }
            "-m" => {
                m.ram = crate::qemu::ram_bytes(&w[1]).ok_or_else(|| {
                    crate::error::Error::new(format!("-m '{}': not a size", w[1]))
                })?;
            }
            _ => {}
        }
    }
    Ok(m)
}

/// Plans `entry` and runs the checks.
pub fn check(
    ws: &Workspace,
    vars: &Vars,
    entry: &str,
    strict: bool,
) -> Result<(Plan, Inputs, Vec<Finding>)> {
    crate::targets::compile_device_trees(ws)?;
    let inputs = inputs(ws, vars, entry)?;
    let plan = build(&inputs);
    let findings = checks::run(&plan, &inputs, strict);
    Ok((plan, inputs, findings))
}

/// `cargo xtask plan`.
pub fn command(ws: &Workspace, vars: &Vars, args: &PlanArgs) -> Result<()> {
    let entries = if args.all {
        Modules::new(ws, vars)?.entries()?
    } else {
        vec![Modules::new(ws, vars)?.choose_entry(vars.entry.as_deref())?]
    };
    let mut failed = Vec::new();
    for entry in &entries {
        let (plan, inputs, findings) = check(ws, vars, entry, args.strict)?;
        print!("{}", report::text(&plan, &inputs, &findings, args.identity));
        let dir = ws.root.join("target/plan");
        std::fs::create_dir_all(&dir).context(|| format!("creating {}", dir.display()))?;
        let out = dir.join(format!("{entry}.svg"));
        std::fs::write(&out, svg::draw(&plan, &inputs, &findings, args.strict))
            .context(|| format!("writing {}", out.display()))?;
        println!("picture: {}", ws.show(&out));
        println!();
        if findings.iter().any(|f| f.level == Level::Error) {
            failed.push(entry.clone());
        }
    }
    if !failed.is_empty() {
        bail!("the plan of {} is not sound", failed.join(", "));
    }
    Ok(())
}

/// For `cargo xtask qemu`: the checks, said before booting.
pub fn preflight(ws: &Workspace, vars: &Vars, entry: &str) {
    match check(ws, vars, entry, false) {
        Ok((_, _, findings)) if findings.is_empty() => {
            eprintln!("xtask: plan of '{entry}': sound");
        }
        Ok((_, _, findings)) => {
            for f in &findings {
                eprintln!("xtask: plan of '{entry}': {}", report::finding(f));
            }
        }
        Err(e) => eprintln!("xtask: plan of '{entry}' not made: {e}"),
    }
}

#[cfg(test)]
mod tests;

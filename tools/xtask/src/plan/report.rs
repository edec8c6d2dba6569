//! The plan as text: what a person wants to see of the system.

use std::fmt::Write;

use super::checks::{Finding, Level};
use super::model::{Inputs, Made, Origin, System, Task, irq_lines, mmio_ranges};
use super::{Plan, mib, ranges};

/// `0-1`, `0, 2`, `0-3`.
pub fn cpu_list(cpus: &[u32]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < cpus.len() {
        let mut j = i;
        while j + 1 < cpus.len() && cpus[j + 1] == cpus[j] + 1 {
            j += 1;
        }
        parts.push(if j > i {
            format!("{}-{}", cpus[i], cpus[j])
        } else {
            cpus[i].to_string()
        });
        i = j + 1;
    }
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

/// `34, 35`.
fn numbers(n: &[u64]) -> String {
    n.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
}

/// `error: ...` / `warning: ...`.
pub fn finding(f: &Finding) -> String {
    match f.level {
        Level::Error => format!("error: {}", f.message),
        Level::Warning => format!("warning: {}", f.message),
    }
}

fn who(s: &System, id: usize) -> String {
    let t = s.task(id);
    format!("{} (#{id})", t.label())
}

/// `for vm1 (#4) cap net` (each holder), or `held by no task`.
fn held_by(s: &System, m: &Made) -> String {
    let held: Vec<String> = m
        .holders
        .iter()
        .map(|(t, c)| format!("{} cap {c}", who(s, *t)))
        .collect();
    if held.is_empty() {
        "held by no task".to_string()
    } else {
        format!("for {}", held.join(", "))
    }
}

fn origin(s: &System, o: &Origin) -> String {
    match o {
        Origin::Env(n) => format!("ned's {n}"),
        Origin::Client { channel, server } => match server {
            Some(sv) => format!("client end of channel#{channel}, served by {}", who(s, *sv)),
            None => format!("client end of channel#{channel}, served by no task"),
        },
        Origin::Server { channel } => format!("server end of channel#{channel}"),
        Origin::Created {
            what,
            server: Some(sv),
            ..
        } => format!("{what}, made by {}", who(s, *sv)),
        Origin::Created { what, factory, .. } if what.starts_with("Dataspace(") => {
            format!(
                "dataspace from {} (see dataspaces)",
                factory.replace("env:", "ned's ")
            )
        }
        Origin::Created { what, .. } => what.clone(),
        Origin::Rom(n) => format!("rom/{n}"),
    }
}

fn sched(t: &Task) -> String {
    match t.sched.prio {
        Some((max, base)) => format!(
            "priorities {base}-{max}, CPUs {} ({})",
            cpu_list(&t.sched.cpus),
            t.sched.site
        ),
        None => format!("ned's scheduler, CPUs {}", cpu_list(&t.sched.cpus)),
    }
}

/// The whole report.
pub fn text(plan: &Plan, inputs: &Inputs, findings: &[Finding], show_host: bool) -> String {
    let s = &plan.system;
    let mut o = String::new();
    let _ = writeln!(o, "plan of entry '{}'", inputs.entry);
    let _ = writeln!(
        o,
        "  machine: QEMU virt, {} CPUs (-smp), {} MiB RAM (-m), {} MiB of boot modules",
        inputs.machine.cpus,
        mib(inputs.machine.ram),
        mib(inputs.modules_size)
    );
    match &inputs.script {
        Some((script, _)) => {
            let _ = writeln!(
                o,
                "  boot: roottask {}: moe starts ned with {script}",
                inputs.root
            );
        }
        None => {
            let _ = writeln!(o, "  boot: roottask {} (no ned script)", inputs.root);
        }
    }

    if !s.tasks.is_empty() {
        let _ = writeln!(o, "\ntasks");
    }
    for t in &s.tasks {
        let _ = writeln!(o, "  #{} {}", t.id, t.argv().join(" "));
        let _ = writeln!(o, "      started at {}", t.site);
        let log = match (&t.log.tag, t.log.server) {
            (Some((tag, colour)), sv) => format!(
                "log \"{tag}\"{}{}{}",
                if colour.is_empty() {
                    String::new()
                } else {
                    format!(" {colour}")
                },
                t.log
                    .key
                    .as_ref()
                    .map_or(String::new(), |k| format!(", Ctrl-E {k}")),
                sv.map_or(String::new(), |sv| format!(", on {}", who(s, sv)))
            ),
            (None, _) => "log: ned's log (the boot console)".into(),
        };
        let _ = writeln!(o, "      {log}");
        let _ = writeln!(o, "      scheduler: {}", sched(t));
        for c in &t.caps {
            if c.name == "rom" {
                continue;
            }
            let _ = writeln!(
                o,
                "      cap {:<8} {} [{}]",
                c.name,
                origin(s, &c.origin),
                c.rights
            );
        }
    }

    if !s.dataspaces.is_empty() {
        let _ = writeln!(o, "\ndataspaces");
    }
    for d in &s.dataspaces {
        let holders: Vec<String> = d
            .holders
            .iter()
            .map(|(t, n)| format!("{} of {}", n, who(s, *t)))
            .collect();
        let _ = writeln!(
            o,
            "  {} MiB, {}, aligned to {} KiB: {} ({})",
            mib(d.size),
            d.flag_names(),
            (1u64 << d.align.min(63)) >> 10,
            if holders.is_empty() {
                "held by no task".into()
            } else {
                holders.join(", ")
            },
            d.site
        );
    }

    for vm in &plan.vms {
        let t = s.task(vm.task);
        let _ = writeln!(o, "\nvirtual machine {} (#{})", t.label(), t.id);
        let _ = writeln!(
            o,
            "  CPUs: {} vCPUs on CPUs {}",
            vm.vcpus,
            cpu_list(&t.sched.cpus)
        );
        for r in &vm.ram {
            let size = r.size.map_or("?".into(), |n| format!("{} MiB", mib(n)));
            let place = if r.identity {
                if show_host {
                    "guest-physical = host-physical (-i): a Continuous range of host RAM moe places at boot, clear of MMIO by construction".to_string()
                } else {
                    "identity-mapped (-i), host-physical, placed by moe".to_string()
                }
            } else {
                format!(
                    "guest-physical {} (the device tree's memory node)",
                    ranges(&r.gpa)
                )
            };
            let _ = writeln!(o, "  RAM '{}': {size}, {place}", r.cap);
        }
        for p in &vm.passed {
            if let Some(io) = s.io.iter().find(|i| i.task == p.io_task) {
                let d = io.device(p.hw);
                let _ = writeln!(
                    o,
                    "  passed through: {} = {} ({}), MMIO {}, IRQ {}, vbus '{}' of {}; guest node {}",
                    p.name,
                    io.path(p.hw),
                    d.compatible.join(", "),
                    ranges(&mmio_ranges(d)),
                    numbers(&irq_lines(d)),
                    p.bus,
                    who(s, p.io_task),
                    p.node.as_deref().unwrap_or("(none)")
                );
            }
        }
        if vm.passed.is_empty() {
            let _ = writeln!(o, "  passed through: nothing");
        }
        for e in &vm.emulated {
            let console = e
                .console
                .as_ref()
                .map(|c| format!(", console on cap {c}"))
                .unwrap_or_default();
            let _ = writeln!(
                o,
                "  emulated: {} {} at {}{console}",
                e.kind,
                e.path,
                ranges(&e.mmio)
            );
        }
        for d in &vm.disabled {
            let _ = writeln!(o, "  disabled: {d}");
        }
        let _ = writeln!(
            o,
            "  guest: kernel {}, ramdisk {}, device trees {}, command line \"{}\"",
            vm.kernel.as_deref().unwrap_or("(default)"),
            vm.ramdisk.as_deref().unwrap_or("(none)"),
            vm.dtbs.join(" "),
            vm.cmdline.as_deref().unwrap_or("")
        );
    }

    for io in &s.io {
        let _ = writeln!(o, "\nio {} ({})", who(s, io.task), io.files.join(" "));
        for hw in io.platform_devices() {
            let d = io.device(hw);
            let _ = writeln!(
                o,
                "  device {} ({}) MMIO {} IRQ {} ({})",
                io.path(hw),
                d.compatible.join(", "),
                ranges(&mmio_ranges(d)),
                numbers(&irq_lines(d)),
                d.pos
            );
        }
        for b in &io.config.buses {
            let devs: Vec<String> = b
                .devices
                .iter()
                .map(|v| format!("{} = {}", v.name, io.path(v.hw)))
                .collect();
            let _ = writeln!(o, "  vbus '{}': {} ({})", b.name, devs.join(", "), b.pos);
        }
    }

    for sw in &plan.switches {
        let t = s.task(sw.task);
        let _ = writeln!(
            o,
            "\nnetwork of {}: {}",
            who(s, sw.task),
            t.argv().join(" ")
        );
        if let Ok(opts) = &sw.options {
            let _ = writeln!(
                o,
                "  at most {} ports, queues of up to {} entries, {}",
                opts.max_ports,
                opts.queue_size,
                if opts.default_mac {
                    "addresses from the port numbers"
                } else {
                    "no address unless mac= (-M)"
                }
            );
        }
        for (p, info) in sw.made_ports() {
            let mac = info
                .mac
                .map_or("no address".to_string(), |m| vnet::mac::format(&m));
            let kind = if info.monitor {
                "monitor port".to_string()
            } else {
                info.vlan.clone()
            };
            let _ = writeln!(
                o,
                "  port {}: {mac}, {kind}; {} ({})",
                info.name,
                held_by(s, &p.made),
                p.made.site
            );
        }
        for m in &sw.stats {
            let _ = writeln!(o, "  statistics: {} ({})", held_by(s, m), m.site);
        }
    }

    let _ = writeln!(o, "\nchecks");
    for f in findings {
        let _ = writeln!(o, "  {}", finding(f));
    }
    let errors = findings.iter().filter(|f| f.level == Level::Error).count();
    let warnings = findings.len() - errors;
    let _ = writeln!(
        o,
        "  {}: {errors} errors, {warnings} warnings",
        if errors == 0 { "sound" } else { "NOT SOUND" }
    );
    o
}

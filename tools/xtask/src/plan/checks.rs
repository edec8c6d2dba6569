//! The checks: what makes a statically partitioned system fail at run
//! time, each found with the script line or file that causes it.

use super::model::{CONTINUOUS, Inputs, Origin, System, mmio_ranges};
use super::vm::Vm;
use super::{Plan, mib, range};

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Warning,
    Error,
}

/// One finding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub level: Level,
    pub message: String,
}

/// The MMIO windows of QEMU's virt board below its RAM (QEMU's memory map
/// of the `virt` machine).
pub const PLATFORM_MMIO: &[(&str, u64, u64)] = &[
    ("flash", 0x0, 0x0800_0000),
    ("GIC", 0x0800_0000, 0x0900_0000),
    ("PL011 UART", 0x0900_0000, 0x0900_1000),
    ("PL031 RTC", 0x0901_0000, 0x0901_1000),
    ("fw_cfg", 0x0902_0000, 0x0902_0018),
    ("PL061 GPIO", 0x0903_0000, 0x0903_1000),
    ("virtio-mmio", 0x0a00_0000, 0x0a00_4000),
    ("PCIe MMIO", 0x1000_0000, 0x3eff_0000),
    ("PCIe PIO", 0x3eff_0000, 0x3f00_0000),
    ("PCIe ECAM", 0x3f00_0000, 0x4000_0000),
];

fn overlaps(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

/// Runs every check.
pub fn run(plan: &Plan, inputs: &Inputs, strict: bool) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut err = |level, message: String| out.push(Finding { level, message });
    let s = &plan.system;
    if let Some(e) = &s.script_error {
        err(Level::Error, format!("the script fails: {e}"));
    }
    for (t, e) in &s.io_errors {
        err(
            Level::Error,
            format!("{} (#{t}, {}): {e}", s.task(*t).label(), s.task(*t).site),
        );
    }
    for vm in &plan.vms {
        for e in &vm.errors {
            err(Level::Error, format!("{}: {e}", vm_name(s, vm)));
        }
    }
    memory(s, inputs, &mut err);
    for vm in &plan.vms {
        guest_ram(s, vm, &mut err);
        passed_and_emulated(s, vm, &mut err);
    }
    buses(s, &mut err);
    cpus(s, plan, strict, &mut err);
    keys(s, &mut err);
    modules(plan, inputs, &mut err);
    cap_names(s, plan, &mut err);
    switches(plan, &mut err);
    out
}

/// What the switches would refuse, and ports that reach no other port.
fn switches(plan: &Plan, err: &mut impl FnMut(Level, String)) {
    let s = &plan.system;
    for sw in &plan.switches {
        let t = s.task(sw.task);
        let name = format!("{} (#{}, {})", t.label(), t.id, t.site);
        if let Err(e) = &sw.options {
            err(
                Level::Error,
                format!("{name}: its command line is refused: {e}"),
            );
        }
        for p in &sw.ports {
            if let Err(e) = &p.port {
                err(
                    Level::Error,
                    format!("{}: the port asked of {name} is refused: {e}", p.made.site),
                );
            }
        }
        if sw.made_ports().count() < 2 {
            continue;
        }
        for (p, info) in sw.made_ports() {
            if !info.monitor && sw.peers(info).next().is_none() {
                err(
                    Level::Warning,
                    format!(
                        "{}: port {} ({}) of {name} shares no network with another port: its frames reach nobody",
                        p.made.site, info.name, info.vlan
                    ),
                );
            }
        }
    }
}

fn vm_name(s: &System, vm: &Vm) -> String {
    let t = s.task(vm.task);
    format!("{} (#{} {}, {})", t.label(), t.id, t.name(), t.site)
}

fn memory(s: &System, inputs: &Inputs, err: &mut impl FnMut(Level, String)) {
    let have = inputs.machine.ram.saturating_sub(inputs.modules_size);
    let mut used = 0u64;
    for ds in &s.dataspaces {
        if ds.flags & CONTINUOUS == 0 {
            continue;
        }
        used += ds.size;
        if used > have {
            err(
                Level::Error,
                format!(
                    "{}: {} MiB of Continuous memory do not fit: with the {} MiB asked before, {} MiB are needed, but QEMU's {} MiB (-m) minus {} MiB of boot modules leave {} MiB",
                    ds.site,
                    mib(ds.size),
                    mib(used - ds.size),
                    mib(used),
                    mib(inputs.machine.ram),
                    mib(inputs.modules_size),
                    have >> 20
                ),
            );
        }
    }
}

/// What the guest-physical RAM range `g` of `vm` lies over: devices it
/// is given, devices it emulates, QEMU virt's MMIO.
pub fn ram_clashes(s: &System, vm: &Vm, g: (u64, u64)) -> Vec<String> {
    let mut hits = Vec::new();
    for p in &vm.passed {
        let io = s.io.iter().find(|i| i.task == p.io_task);
        if let Some(d) = io.map(|i| i.device(p.hw)) {
            for m in mmio_ranges(d).into_iter().filter(|&m| overlaps(g, m)) {
                hits.push(format!(
                    "the {} ({}) at {} it is given on vbus '{}' ({})",
                    p.name,
                    d.compatible.first().map_or("?", String::as_str),
                    range(m),
                    p.bus,
                    d.pos
                ));
            }
        }
    }
    for e in &vm.emulated {
        if let Some(&m) = e.mmio.iter().find(|&&m| overlaps(g, m)) {
            hits.push(format!("its emulated {} at {}", e.kind, range(m)));
        }
    }
    let platform: Vec<&str> = PLATFORM_MMIO
        .iter()
        .filter(|&&(_, a, b)| overlaps(g, (a, b)))
        .map(|&(name, _, _)| name)
        .collect();
    if !platform.is_empty() {
        hits.push(format!("QEMU virt's MMIO ({})", platform.join(", ")));
    }
    hits
}

fn guest_ram(s: &System, vm: &Vm, err: &mut impl FnMut(Level, String)) {
    for ram in &vm.ram {
        for &g in &ram.gpa {
            let hits = ram_clashes(s, vm, g);
            if !hits.is_empty() {
                err(
                    Level::Error,
                    format!(
                        "{}: guest RAM '{}' at {} (from the device tree's memory node, no -i) overlaps {}",
                        vm_name(s, vm),
                        ram.cap,
                        range(g),
                        hits.join("; ")
                    ),
                );
            }
        }
    }
}

fn passed_and_emulated(s: &System, vm: &Vm, err: &mut impl FnMut(Level, String)) {
    for p in &vm.passed {
        let Some(io) = s.io.iter().find(|i| i.task == p.io_task) else {
            continue;
        };
        let d = io.device(p.hw);
        for e in &vm.emulated {
            if mmio_ranges(d)
                .into_iter()
                .any(|m| e.mmio.iter().any(|&w| overlaps(m, w)))
            {
                err(
                    Level::Error,
                    format!(
                        "{}: {} ({}) is passed through on vbus '{}' and emulated by uvmm as {} {} at the same address",
                        vm_name(s, vm),
                        p.name,
                        d.pos,
                        p.bus,
                        e.kind,
                        e.path
                    ),
                );
            }
        }
    }
}

/// Devices on buses of different io tasks (io itself refuses a device on
/// two of its own buses).
fn buses(s: &System, err: &mut impl FnMut(Level, String)) {
    // Platform devices by MMIO range, over every io: (range, io task,
    // bus, where it was wrapped).
    let mut seen: Vec<((u64, u64), usize, &str, String)> = Vec::new();
    for io in &s.io {
        for b in &io.config.buses {
            for v in &b.devices {
                for m in mmio_ranges(io.device(v.hw)) {
                    if let Some((_, _, other, opos)) = seen
                        .iter()
                        .find(|(r, t, bus, _)| overlaps(*r, m) && (*t, *bus) != (io.task, &b.name))
                    {
                        err(
                            Level::Error,
                            format!(
                                "{}: device {} ({}, {}) is on two virtual buses: '{}' and '{other}' ({opos})",
                                v.pos,
                                io.path(v.hw),
                                v.name,
                                range(m),
                                b.name
                            ),
                        );
                    }
                    seen.push((m, io.task, &b.name, v.pos.to_string()));
                }
            }
        }
    }
}

fn cpus(s: &System, plan: &Plan, strict: bool, err: &mut impl FnMut(Level, String)) {
    let level = if strict { Level::Error } else { Level::Warning };
    for (i, a) in plan.vms.iter().enumerate() {
        for b in &plan.vms[i + 1..] {
            let (ta, tb) = (s.task(a.task), s.task(b.task));
            let shared: Vec<String> = ta
                .sched
                .cpus
                .iter()
                .filter(|c| tb.sched.cpus.contains(c))
                .map(u32::to_string)
                .collect();
            if shared.is_empty() {
                continue;
            }
            let of = |t: &super::model::Task| {
                if t.sched.site.is_empty() {
                    "ned's scheduler: all CPUs".to_string()
                } else {
                    format!("scheduler from {}", t.sched.site)
                }
            };
            err(
                level,
                format!(
                    "{} and {} share CPU {} ({}; {}){}",
                    ta.label(),
                    tb.label(),
                    shared.join(", "),
                    of(ta),
                    of(tb),
                    if strict {
                        ""
                    } else {
                        " (an error with --strict)"
                    }
                ),
            );
        }
    }
}

fn keys(s: &System, err: &mut impl FnMut(Level, String)) {
    for (i, a) in s.tasks.iter().enumerate() {
        let Some(k) = &a.log.key else { continue };
        for b in &s.tasks[i + 1..] {
            if b.log.key.as_ref() == Some(k) && b.log.server == a.log.server {
                err(
                    Level::Error,
                    format!(
                        "{}: console '{}' gets Ctrl-E key {k}, which console '{}' ({}) has already",
                        b.log.site,
                        b.label(),
                        a.label(),
                        a.log.site
                    ),
                );
            }
        }
    }
}

fn modules(plan: &Plan, inputs: &Inputs, err: &mut impl FnMut(Level, String)) {
    for (file, why) in &plan.needs {
        let name = file.strip_prefix("rom/").unwrap_or(file);
        if !inputs.modules.iter().any(|m| m == name) {
            err(
                Level::Error,
                format!(
                    "{why}: needs {file}, but entry '{}' does not list it (add `module {name}`)",
                    inputs.entry
                ),
            );
        }
    }
}

fn cap_names(s: &System, plan: &Plan, err: &mut impl FnMut(Level, String)) {
    for vm in &plan.vms {
        let t = s.task(vm.task);
        for c in &vm.expects {
            if c != "log" && t.cap(c).is_none() {
                err(
                    Level::Error,
                    format!(
                        "{}: uvmm expects a capability '{c}' (its device tree's memory node), but is given only: {}",
                        vm_name(s, vm),
                        t.caps
                            .iter()
                            .map(|c| c.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
            }
        }
        for r in &vm.ram {
            let flags = t
                .cap(&r.cap)
                .and_then(|c| s.dataspace(c.obj))
                .map(|d| d.flags);
            if r.identity && flags.is_some_and(|f| f & CONTINUOUS == 0) {
                err(
                    Level::Error,
                    format!(
                        "{}: -i maps guest RAM at its host-physical address, but '{}' is not Continuous memory",
                        vm_name(s, vm),
                        r.cap
                    ),
                );
            }
        }
        if let Some(c) = t.cap("vbus")
            && !matches!(
                c.origin,
                Origin::Client {
                    server: Some(_),
                    ..
                }
            )
        {
            err(
                Level::Warning,
                format!(
                    "{}: its 'vbus' capability is served by no task",
                    vm_name(s, vm)
                ),
            );
        }
    }
    for io in &s.io {
        let t = s.task(io.task);
        for b in &io.config.buses {
            if t.cap(&b.name).is_none() {
                err(
                    Level::Error,
                    format!(
                        "{} (#{}, {}): io serves vbus '{}' ({}) on a capability of that name, but is not given one",
                        t.label(),
                        t.id,
                        t.site,
                        b.name,
                        b.pos
                    ),
                );
            }
        }
    }
}

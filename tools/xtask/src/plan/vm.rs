//! A virtual machine: what uvmm makes of its command line, its device
//! trees (read with uvmm's own `dt` module), its RAM capability and its
//! vbus.

use uvmm::dt::{self, DeviceKind, Tree};
use uvmm::options::{DEFAULT_RAM_BASE, Options};

use super::model::{Inputs, Origin, System, Task};

/// Guest RAM of one memory node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ram {
    /// The capability (`ram`).
    pub cap: String,
    /// Its dataspace's size, when the capability is a dataspace.
    pub size: Option<u64>,
    /// Guest-physical `[start, end)` ranges; empty with `-i` (placed by moe).
    pub gpa: Vec<(u64, u64)>,
    /// `-i` or `l4vmm,physmap`: guest-physical = host-physical.
    pub identity: bool,
}

/// A device uvmm emulates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Emulated {
    pub path: String,
    pub kind: &'static str,
    /// `[start, end)` guest-physical windows.
    pub mmio: Vec<(u64, u64)>,
    /// A console's Vcon capability (`l4vmm,vcon_cap`, `log` without it).
    pub console: Option<String>,
}

/// A device passed through from an io bus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PassedThrough {
    /// Its name on the bus.
    pub name: String,
    /// The io task and bus.
    pub io_task: usize,
    pub bus: String,
    /// The platform device (index into that io's devices).
    pub hw: io::model::DevId,
    /// The guest's device-tree node for it, if any.
    pub node: Option<String>,
}

/// One uvmm.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vm {
    pub task: usize,
    pub vcpus: usize,
    pub dtbs: Vec<String>,
    pub kernel: Option<String>,
    pub ramdisk: Option<String>,
    pub cmdline: Option<String>,
    pub ram: Vec<Ram>,
    pub emulated: Vec<Emulated>,
    pub passed: Vec<PassedThrough>,
    /// Nodes uvmm disables (neither emulated nor on its vbus), with why.
    pub disabled: Vec<String>,
    /// The capability names uvmm looks for (RAM and console caps).
    pub expects: Vec<String>,
    /// What went wrong reading its command line or device trees.
    pub errors: Vec<String>,
}

fn kind_name(k: &DeviceKind) -> &'static str {
    match k {
        DeviceKind::GicV3 => "GICv3",
        DeviceKind::Pl011 => "PL011 UART",
        DeviceKind::VirtioConsole => "virtio console",
        DeviceKind::VirtioProxy { .. } => "virtio proxy",
        DeviceKind::ArchTimer => "arch timer",
    }
}

/// Reads the VM of `task` (a `rom/uvmm`).
pub fn read(task: &Task, system: &System, inputs: &Inputs) -> Vm {
    let mut vm = Vm {
        task: task.id,
        vcpus: task.sched.cpus.len(),
        dtbs: Vec::new(),
        kernel: None,
        ramdisk: None,
        cmdline: None,
        ram: Vec::new(),
        emulated: Vec::new(),
        passed: Vec::new(),
        disabled: Vec::new(),
        expects: Vec::new(),
        errors: Vec::new(),
    };
    let opts = match Options::parse(task.args.iter().cloned()) {
        Ok(o) => o,
        Err(e) => {
            vm.errors.push(format!("uvmm's command line: {e}"));
            return vm;
        }
    };
    vm.dtbs.clone_from(&opts.dtbs);
    vm.kernel.clone_from(&opts.kernel);
    vm.ramdisk.clone_from(&opts.ramdisk);
    vm.cmdline.clone_from(&opts.cmdline);

    let mut tree: Option<Tree> = None;
    for path in &opts.dtbs {
        let t = inputs
            .read(path)
            .and_then(|b| Tree::from_dtb(&b).map_err(|e| format!("{path}: {e}")));
        match t {
            Ok(t) => match &mut tree {
                Some(base) => base.merge(t),
                None => tree = Some(t),
            },
            Err(e) => vm.errors.push(format!("device tree {e}")),
        }
    }
    if let Some(t) = &mut tree {
        for m in &opts.dt_mods {
            t.apply(m);
        }
        vm.vcpus = dt::cpu_count(t).min(vm.vcpus.max(1));
    }

    // RAM.
    let specs = match tree.as_ref().map(dt::memory_specs) {
        Some(Ok(s)) if !s.is_empty() => s,
        Some(Err(e)) => {
            vm.errors.push(e.to_string());
            Vec::new()
        }
        _ => vec![dt::MemorySpec {
            path: String::new(),
            dscap: dt::DEFAULT_RAM_CAP.into(),
            reg: vec![(opts.ram_base.unwrap_or(DEFAULT_RAM_BASE), u64::MAX / 2)],
            physmap: false,
            dma_ranges: false,
        }],
    };
    for spec in specs {
        vm.expects.push(spec.dscap.clone());
        let size = task
            .cap(&spec.dscap)
            .and_then(|c| system.dataspace(c.obj))
            .map(|d| d.size);
        let identity = opts.identity || spec.physmap;
        let mut gpa = Vec::new();
        if let (Some(size), false) = (size, identity) {
            let mut left = size;
            for &(base, len) in &spec.reg {
                let n = len.min(left);
                if n > 0 {
                    gpa.push((base, base.saturating_add(n)));
                }
                left -= n;
            }
        }
        vm.ram.push(Ram {
            cap: spec.dscap,
            size,
            gpa,
            identity,
        });
    }

    // Emulated devices.
    let mut keep = Vec::new();
    if let Some(t) = &tree {
        match dt::find_devices(t) {
            Ok((found, unsupported)) => {
                for d in found {
                    // uvmm disables a proxy whose capability it has not
                    // got (uvmm's machine.rs says the same at start).
                    if let DeviceKind::VirtioProxy { cap, .. } = &d.kind
                        && task.cap(cap).is_none()
                    {
                        vm.disabled.push(format!(
                            "{}: virtio capability '{cap}': no capability named '{cap}'",
                            d.path
                        ));
                        keep.push(d.path);
                        continue;
                    }
                    let console = matches!(d.kind, DeviceKind::Pl011 | DeviceKind::VirtioConsole)
                        .then(|| d.vcon_cap.clone().unwrap_or_else(|| "log".into()));
                    if let Some(cap) = &console
                        && !vm.expects.contains(cap)
                    {
                        vm.expects.push(cap.clone());
                    }
                    if !matches!(d.kind, DeviceKind::ArchTimer) {
                        vm.emulated.push(Emulated {
                            path: d.path.clone(),
                            kind: kind_name(&d.kind),
                            mmio: d
                                .reg
                                .iter()
                                .map(|&(b, s)| (b, b.saturating_add(s)))
                                .collect(),
                            console,
                        });
                    }
                    keep.push(d.path);
                }
                for u in unsupported {
                    vm.disabled.push(format!("{}: {}", u.path, u.why));
                    keep.push(u.path);
                }
            }
            Err(e) => vm.errors.push(e.to_string()),
        }
    }

    // Passed through: the devices of the io bus its `vbus` is a client of.
    let bus = task.cap("vbus").and_then(|c| match &c.origin {
        Origin::Client {
            server: Some(s), ..
        } => system
            .task(*s)
            .caps
            .iter()
            .find(|sc| sc.obj == c.obj)
            .map(|sc| (*s, sc.name.clone())),
        _ => None,
    });
    if let Some((io_task, bus_name)) = bus
        && let Some(io) = system.io.iter().find(|i| i.task == io_task)
        && let Some(b) = io.config.buses.iter().find(|b| b.name == bus_name)
    {
        for v in &b.devices {
            let dev = io.device(v.hw);
            let node = tree.as_ref().and_then(|t| {
                t.walk().into_iter().find_map(|(path, n, _)| {
                    let hit = n.is_enabled()
                        && !keep.contains(&path)
                        && dev.compatible.iter().any(|c| n.is_compatible(c));
                    hit.then_some(path)
                })
            });
            if let Some(n) = &node {
                keep.push(n.clone());
            }
            vm.passed.push(PassedThrough {
                name: v.name.clone(),
                io_task,
                bus: bus_name.clone(),
                hw: v.hw,
                node,
            });
        }
    }
    if let Some(t) = &tree {
        let mut t = t.clone();
        for p in dt::disable_unbacked(&mut t, &keep) {
            vm.disabled
                .push(format!("{p}: not emulated and not on its vbus"));
        }
    }
    vm
}

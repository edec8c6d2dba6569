//! Putting a VM together from the command line: device tree(s), RAM,
//! kernel, ramdisk, emulated devices, the final device tree in guest RAM
//! and the boot vCPU's registers.
//!
//! [`build`] does everything that does not need the kernel's Vm object,
//! through a [`Host`] (files, RAM dataspaces, console output), so it runs
//! on the host in tests exactly as in uvmm.

use core::fmt;
use std::sync::{Arc, Mutex};

use crate::backend::{BackendError, VcpuBackend, VmBackend};
use crate::bus::{IrqLine, MmioBus, SharedDevice, lock};
use crate::devices::gic::{DIST_SIZE, Gic, REDIST_STRIDE};
use crate::devices::pl011::{self, Pl011};
use crate::devices::virtio::console::Console;
use crate::devices::virtio::proxy::{Port, ProxyIrq, ProxyMmio};
use crate::devices::virtio::{self, VirtioMmio};
use crate::devices::{ConsoleOut, MIRROR_PAGE};
use crate::dt::{self, DeviceKind, Tree, reg_bytes, str_bytes, vcpu_mpidr};
use crate::loader::{self, BootState, Kernel, Layout};
use crate::memory::{GuestMemory, Ram, RamRegion};
use crate::options::{DEFAULT_RAM_BASE, Options};
use crate::passthrough::{self, BusDevice, Passthrough};
use crate::vmm::{EXIT_FATAL, Vm};
use crate::{info, warn};

/// The Vcon capability of console devices without `l4vmm,vcon_cap`.
pub const DEFAULT_VCON_CAP: &str = "log";

/// The kernel uvmm loads without `-k` (as L4Re's uvmm).
pub const DEFAULT_KERNEL: &str = "rom/linux";

/// A file's bytes, read into memory or mapped.
pub type FileBytes = Box<dyn AsRef<[u8]>>;

/// What uvmm needs from its environment.
pub trait Host {
    /// A file's bytes (`rom/...`).
    fn read_file(&mut self, path: &str) -> Result<FileBytes, String>;
    /// The RAM dataspace of capability `cap`, mapped, and, when `phys`
    /// asks for it, its host-physical address if known (for `-i`,
    /// `l4vmm,physmap` and `dma-ranges`).
    fn ram(&mut self, cap: &str, phys: bool) -> Result<(Arc<Ram>, Option<u64>), String>;
    /// Where the output of a console device goes: the Vcon capability
    /// `cap` (the device node's `l4vmm,vcon_cap`, default `log`).
    fn console(&mut self, cap: &str) -> Result<Box<dyn ConsoleOut>, String>;
    /// The devices of the `vbus` capability (none without one).
    fn vbus_devices(&mut self) -> Result<Vec<BusDevice>, String>;

    /// The device side of a virtio proxy (`l4vmm,vdev = "proxy"`): the
    /// capability `cap` (the node's `l4vmm,virtiocap`), with the guest
    /// RAM (`ram`: each region and its dataspace's capability name)
    /// registered at its guest-physical addresses, and `irq` raised
    /// whenever the device notifies the driver (or, with
    /// [`ProxyIrq::inject_directly`], the notification bound to the
    /// vCPU for the kernel to inject).
    fn virtio_port(
        &mut self,
        cap: &str,
        ram: &[(String, RamRegion)],
        irq: Arc<ProxyIrq>,
    ) -> Result<Box<dyn Port>, String> {
        let _ = (cap, ram, irq);
        Err("no virtio devices of other tasks here".into())
    }
}

/// The vCPU the interrupts of passed-through devices go to (the boot
/// vCPU, where the guest routes SPIs unless it moves them).
pub const PASSTHROUGH_VCPU: usize = 0;

/// Why the VM could not be built.
#[derive(Debug, PartialEq, Eq)]
pub struct SetupError(pub String);

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SetupError {}

fn err(m: impl Into<String>) -> SetupError {
    SetupError(m.into())
}

/// A console device's input side.
#[derive(Clone)]
pub enum ConsoleInput {
    /// A PL011.
    Pl011(Arc<Mutex<Pl011>>),
    /// A virtio console.
    Virtio(Arc<Mutex<VirtioMmio<Console>>>),
}

impl ConsoleInput {
    /// Gives the guest as much of `bytes` as its console takes now; how
    /// many that were. A PL011 takes what fits its receive FIFO, so that
    /// pasted or fast-typed input waits instead of overrunning it.
    pub fn receive(&self, bytes: &[u8]) -> usize {
        match self {
            ConsoleInput::Pl011(p) => {
                let mut p = lock(p);
                let n = bytes.len().min(p.room());
                p.receive(&bytes[..n]);
                n
            }
            ConsoleInput::Virtio(v) => {
                lock(v).receive(bytes);
                bytes.len()
            }
        }
    }
}

/// A VM ready to run.
pub struct Machine {
    /// Memory, devices, GIC, power state.
    pub vm: Arc<Vm>,
    /// The guest's device tree as written to RAM.
    pub tree: Tree,
    /// Where the images went.
    pub layout: Layout,
    /// The boot vCPU's registers.
    pub boot: BootState,
    /// The vCPUs' MPIDR affinities.
    pub mpidrs: Vec<u64>,
    /// The RAM: (capability name, region) for stage-2 mapping.
    pub ram_map: Vec<(String, RamRegion)>,
    /// The console devices' Vcon capabilities (`l4vmm,vcon_cap`, default
    /// [`DEFAULT_VCON_CAP`]) and input sides, in device-tree order.
    pub consoles: Vec<(String, ConsoleInput)>,
    /// PL011s whose registers the guest may read from a mirror page
    /// (their window is one whole page), by guest-physical address.
    pub mirrored: Vec<(u64, Arc<Mutex<Pl011>>)>,
    /// Device nodes uvmm switched off.
    pub disabled: Vec<String>,
    /// Device nodes backed by devices of the vbus.
    pub passthrough: Vec<Passthrough>,
    /// The kernel and ramdisk files, kept (mapped) as long as the VM:
    /// unmapping 12 MB of boot modules took about 9 ms under QEMU right
    /// before the guest could start; they go with uvmm's task.
    pub images: Vec<FileBytes>,
}

impl Machine {
    /// Runs the VM on the kernel's Vm object: maps the RAM, creates one
    /// vCPU thread per vCPU and waits until the VM ends; its exit code.
    pub fn run<V>(&self, backend: &mut V) -> Result<u8, BackendError>
    where
        V: VmBackend,
        V::Vcpu: 'static,
    {
        for (cap, r) in &self.ram_map {
            backend.map_ram(cap, r.ds_offset, r.gpa, r.size)?;
        }
        for p in &self.passthrough {
            for m in &p.mmio {
                backend.map_mmio(m)?;
            }
            for irq in &p.irqs {
                let eoi = backend.route_irq(irq, PASSTHROUGH_VCPU)?;
                self.vm.gic.set_hw_irq(irq.intid, eoi);
            }
        }
        for (gpa, p) in &self.mirrored {
            match backend.read_mirror(*gpa) {
                Ok(Some(m)) => {
                    lock(p).attach_mirror(m);
                    info!(
                        "dev",
                        "UART at {gpa:#x}: registers read from a mirror page while no input waits"
                    );
                }
                Ok(None) => {}
                Err(e) => warn!("dev", "no read mirror for the UART at {gpa:#x}: {e}"),
            }
        }
        let lrs = backend.gic_info().lrs;
        let mut threads = Vec::new();
        for (i, &mpidr) in self.mpidrs.iter().enumerate() {
            let mut vcpu = backend.create_vcpu(i, mpidr)?;
            self.vm.gic.set_kicker(i, vcpu.kicker());
            let vm = self.vm.clone();
            let boot = (i == 0).then_some(self.boot);
            let t = std::thread::Builder::new()
                .name(format!("vcpu{i}"))
                .spawn(move || vm.run_vcpu(i, &mut vcpu, boot, lrs))
                .map_err(|e| BackendError(format!("cannot start the thread of vCPU {i}: {e}")))?;
            threads.push(t);
        }
        let mut code = None;
        for t in threads {
            let c = t.join().unwrap_or(EXIT_FATAL);
            code.get_or_insert(c);
        }
        Ok(self.vm.stopped().or(code).unwrap_or(EXIT_FATAL))
    }
}

/// A QEMU-virt-like tree for a VM started without `-d`: GICv3, timer,
/// PL011 with its clock.
pub fn default_tree(vcpus: usize) -> Tree {
    let mut t = Tree::default();
    t.root
        .set_prop("compatible", str_bytes(&["linux,dummy-virt"]));
    t.root.set_u32("interrupt-parent", 1);
    let gic = t.node_or_create("/intc@8000000");
    gic.set_prop("compatible", str_bytes(&["arm,gic-v3"]));
    gic.set_prop(
        "reg",
        reg_bytes(
            &[
                (0x800_0000, DIST_SIZE),
                (0x80a_0000, vcpus as u64 * REDIST_STRIDE),
            ],
            2,
            2,
        ),
    );
    gic.set_prop("interrupt-controller", Vec::new());
    gic.set_u32("#interrupt-cells", 3);
    gic.set_u32("phandle", 1);
    let timer = t.node_or_create("/timer");
    timer.set_prop("compatible", str_bytes(&["arm,armv8-timer"]));
    let ppis: Vec<u8> = [13u32, 14, 11, 10]
        .iter()
        .flat_map(|p| [1, *p, 4])
        .flat_map(u32::to_be_bytes)
        .collect();
    timer.set_prop("interrupts", ppis);
    let clk = t.node_or_create("/apb-pclk");
    clk.set_prop("compatible", str_bytes(&["fixed-clock"]));
    clk.set_u32("#clock-cells", 0);
    clk.set_u32("clock-frequency", 24_000_000);
    clk.set_u32("phandle", 2);
    let uart = t.node_or_create("/pl011@9000000");
    uart.set_prop("compatible", str_bytes(&["arm,pl011", "arm,primecell"]));
    uart.set_prop("reg", reg_bytes(&[(0x900_0000, pl011::SIZE)], 2, 2));
    uart.set_prop(
        "interrupts",
        [0u32, 1, 4].iter().flat_map(|c| c.to_be_bytes()).collect(),
    );
    uart.set_prop(
        "clocks",
        [2u32, 2].iter().flat_map(|c| c.to_be_bytes()).collect(),
    );
    uart.set_prop("clock-names", str_bytes(&["uartclk", "apb_pclk"]));
    t.node_or_create("/chosen")
        .set_str("stdout-path", "/pl011@9000000");
    t
}

/// Builds the VM for `opts` with at most `max_vcpus` vCPUs (the CPUs the
/// scheduler offers).
pub fn build(opts: &Options, host: &mut dyn Host, max_vcpus: usize) -> Result<Machine, SetupError> {
    // The device tree: -d files merged in order, then -m changes.
    let mut tree = None::<Tree>;
    for path in &opts.dtbs {
        let blob = host
            .read_file(path)
            .map_err(|e| err(format!("device tree {path}: {e}")))?;
        let t = Tree::from_dtb((*blob).as_ref()).map_err(|e| err(format!("{path}: {e}")))?;
        match &mut tree {
            Some(base) => base.merge(t),
            None => tree = Some(t),
        }
    }
    let vcpus = match &tree {
        Some(t) => dt::cpu_count(t).min(max_vcpus.max(1)),
        None => max_vcpus.max(1),
    };
    let mut tree = tree.unwrap_or_else(|| default_tree(vcpus));
    for m in &opts.dt_mods {
        tree.apply(m);
    }

    // RAM: the memory nodes, or one region at -b (or the host-physical
    // address with -i).
    let mut mem = GuestMemory::default();
    let mut ram_map = Vec::new();
    let specs = dt::memory_specs(&tree).map_err(|e| err(e.to_string()))?;
    let specs = if specs.is_empty() {
        vec![dt::MemorySpec {
            path: String::new(),
            dscap: dt::DEFAULT_RAM_CAP.into(),
            reg: vec![(opts.ram_base.unwrap_or(DEFAULT_RAM_BASE), u64::MAX / 2)],
            physmap: false,
            dma_ranges: false,
        }]
    } else {
        if opts.ram_base.is_some() {
            warn!("ram", "-b is ignored: the device tree has memory nodes");
        }
        specs
    };
    for spec in &specs {
        let want_phys = opts.identity || spec.physmap || spec.dma_ranges;
        let (ram, phys) = host
            .ram(&spec.dscap, want_phys)
            .map_err(|e| err(format!("RAM capability '{}': {e}", spec.dscap)))?;
        let wanted = match phys {
            Some(pa) if opts.identity || spec.physmap => vec![(pa, ram.len())],
            None if opts.identity => {
                return Err(err(format!(
                    "-i: the host-physical address of dataspace '{}' is not known",
                    spec.dscap
                )));
            }
            None if spec.physmap && spec.reg.is_empty() => {
                return Err(err(format!(
                    "{}: l4vmm,physmap without reg, and the host-physical address of '{}' is not known",
                    spec.path, spec.dscap
                )));
            }
            _ => spec.reg.clone(),
        };
        let before = mem.regions().len();
        mem.add_ram(ram, &wanted)
            .map_err(|e| err(format!("RAM '{}': {e}", spec.dscap)))?;
        let regions: Vec<RamRegion> = mem.regions()[before..].to_vec();
        let pairs: Vec<(u64, u64)> = regions.iter().map(|r| (r.gpa, r.size)).collect();
        dt::set_memory(
            &mut tree,
            (!spec.path.is_empty()).then_some(spec.path.as_str()),
            &pairs,
        );
        if let Some(pa) = phys.filter(|_| spec.dma_ranges && !spec.path.is_empty()) {
            let dma: Vec<(u64, u64, u64)> = regions
                .iter()
                .map(|r| (r.gpa, pa + r.ds_offset, r.size))
                .collect();
            dt::add_dma_ranges(&mut tree, &spec.path, &dma);
        }
        for r in regions {
            info!(
                "ram",
                "{:#x}..{:#x} from '{}' + {:#x}",
                r.gpa,
                r.end(),
                spec.dscap,
                r.ds_offset
            );
            ram_map.push((spec.dscap.clone(), r));
        }
    }

    // vCPUs.
    dt::set_cpus(&mut tree, vcpus);
    let mpidrs: Vec<u64> = (0..vcpus).map(vcpu_mpidr).collect();

    // Kernel and ramdisk.
    let kpath = opts.kernel.as_deref().unwrap_or(DEFAULT_KERNEL);
    let kfile = host
        .read_file(kpath)
        .map_err(|e| err(format!("kernel {kpath}: {e}")))?;
    let ram_total: u64 = mem.regions().iter().map(|r| r.size).sum();
    let kernel = Kernel::parse((*kfile).as_ref(), ram_total)
        .map_err(|e| err(format!("kernel {kpath}: {e}")))?;
    let rd = match &opts.ramdisk {
        Some(p) => Some(
            host.read_file(p)
                .map_err(|e| err(format!("ramdisk {p}: {e}")))?,
        ),
        None => None,
    };
    let loading = std::time::Instant::now();
    let layout = loader::load(&mem, &kernel, rd.as_ref().map(|f| (**f).as_ref()))
        .map_err(|e| err(e.to_string()))?;
    info!(
        "loader",
        "kernel {kpath} ({:?}{}) at {:#x}..{:#x}, entry {:#x}; {} ms to {} it and the ramdisk",
        kernel.format,
        if kernel.was_gzip { ", gzip" } else { "" },
        layout.kernel.0,
        layout.kernel.1,
        layout.entry,
        loading.elapsed().as_millis(),
        if kernel.was_gzip { "inflate" } else { "copy" }
    );

    // Devices: what the vbus provides is passed through, the rest emulated.
    let bus_devices = host.vbus_devices().map_err(|e| err(format!("vbus: {e}")))?;
    let matched =
        passthrough::match_devices(&tree, &bus_devices).map_err(|e| err(e.to_string()))?;
    for w in &matched.warnings {
        warn!("dev", "{w}");
    }
    for p in &matched.passed {
        for m in &p.mmio {
            if let Some(r) = mem
                .regions()
                .iter()
                .find(|r| m.gpa < r.end() && r.gpa < m.gpa + m.size)
            {
                return Err(err(format!(
                    "{}: its MMIO at {:#x}..{:#x} lies in guest RAM {:#x}..{:#x} (move the RAM, e.g. with -i)",
                    p.path,
                    m.gpa,
                    m.gpa + m.size,
                    r.gpa,
                    r.end()
                )));
            }
        }
        info!("dev", "{p}: passed through");
    }
    let passed = |path: &str| matched.passed.iter().any(|p| p.path == path);
    let (devices, unsupported) = dt::find_devices(&tree).map_err(|e| err(e.to_string()))?;
    for u in unsupported.iter().filter(|u| !passed(&u.path)) {
        warn!("dev", "{}: {}; disabled", u.path, u.why);
    }
    // Never also emulate what the vbus provides (the GIC and the timer
    // are uvmm's and the kernel's whatever a bus says).
    let devices: Vec<_> = devices
        .into_iter()
        .filter(|d| matches!(d.kind, DeviceKind::GicV3 | DeviceKind::ArchTimer) || !passed(&d.path))
        .collect();
    let max_irq = devices
        .iter()
        .flat_map(|d| d.irqs.iter().copied())
        .chain(
            matched
                .passed
                .iter()
                .flat_map(|p| p.irqs.iter().map(|i| i.intid)),
        )
        .max()
        .unwrap_or(0);
    if !devices.iter().any(|d| d.kind == DeviceKind::GicV3) {
        return Err(err(
            "the device tree has no enabled arm,gic-v3 node (uvmm emulates GICv3)",
        ));
    }
    let gic = Gic::new(&mpidrs, max_irq.saturating_sub(31).max(64));
    let mut bus = MmioBus::new();
    let mut consoles = Vec::new();
    let mut mirrored = Vec::new();
    let mut keep = Vec::new();
    let need = vcpus as u64 * REDIST_STRIDE;
    for d in &devices {
        let window = |i: usize| -> Result<(u64, u64), SetupError> {
            d.reg
                .get(i)
                .copied()
                .ok_or_else(|| err(format!("{}: no reg entry {i}", d.path)))
        };
        let irq = |gic: &Arc<Gic>| -> Result<IrqLine, SetupError> {
            let intid = d
                .irqs
                .first()
                .ok_or_else(|| err(format!("{}: no interrupts", d.path)))?;
            Ok(IrqLine::new(gic.clone(), *intid))
        };
        let add = |bus: &mut MmioBus, (base, size): (u64, u64), dev: SharedDevice| {
            bus.insert(base, size, &d.path, dev)
                .map_err(|e| err(e.to_string()))
        };
        let vcon = d.vcon_cap.as_deref().unwrap_or(DEFAULT_VCON_CAP);
        let console = |host: &mut dyn Host| {
            host.console(vcon)
                .map_err(|e| err(format!("{}: console capability '{vcon}': {e}", d.path)))
        };
        // The node's window, at most the device's register file.
        let window_of = |i: usize, max: u64| window(i).map(|(b, s)| (b, s.min(max)));
        match &d.kind {
            DeviceKind::GicV3 => {
                let (dbase, _) = window(0)?;
                let (rbase, rsize) = window(1)?;
                if rsize < need {
                    return Err(err(format!(
                        "{}: the redistributor region ({rsize:#x} bytes) is too small for {vcpus} vCPUs ({need:#x})",
                        d.path
                    )));
                }
                add(
                    &mut bus,
                    (dbase, DIST_SIZE),
                    Arc::new(Mutex::new(gic.distributor())),
                )?;
                add(
                    &mut bus,
                    (rbase, need),
                    Arc::new(Mutex::new(gic.redistributors())),
                )?;
                // The guest sees exactly the redistributors there are.
                let (a, s) = tree.cells_of(&d.path);
                if let Some(n) = tree.node_mut(&d.path) {
                    n.set_prop("reg", reg_bytes(&[(dbase, DIST_SIZE), (rbase, need)], a, s));
                }
            }
            DeviceKind::Pl011 => {
                let p = Arc::new(Mutex::new(Pl011::new(console(host)?, irq(&gic)?)));
                let (base, size) = window_of(0, pl011::SIZE)?;
                add(&mut bus, (base, size), p.clone())?;
                if base.is_multiple_of(MIRROR_PAGE) && size == MIRROR_PAGE {
                    mirrored.push((base, p.clone()));
                }
                consoles.push((vcon.to_string(), ConsoleInput::Pl011(p)));
            }
            DeviceKind::VirtioConsole => {
                let v = Arc::new(Mutex::new(VirtioMmio::new(
                    Console::new(console(host)?),
                    mem.clone(),
                    irq(&gic)?,
                )));
                add(&mut bus, window_of(0, virtio::SIZE)?, v.clone())?;
                consoles.push((vcon.to_string(), ConsoleInput::Virtio(v)));
            }
            DeviceKind::VirtioProxy { cap, no_notify } => {
                let Ok(line) = irq(&gic) else {
                    warn!("dev", "{}: no interrupts; disabled", d.path);
                    continue;
                };
                let pirq = Arc::new(ProxyIrq::new(line));
                let port = match host.virtio_port(cap, &ram_map, pirq.clone()) {
                    Ok(p) => p,
                    Err(e) => {
                        warn!(
                            "dev",
                            "{}: virtio capability '{cap}': {e}; disabled", d.path
                        );
                        continue;
                    }
                };
                let regs = window_of(0, virtio::SIZE)?;
                let p = ProxyMmio::new(&d.path, port, pirq, *no_notify, regs.0).map_err(|e| {
                    err(format!(
                        "{}: the device behind '{cap}' does not describe itself: {e:?}",
                        d.path
                    ))
                })?;
                info!(
                    "dev",
                    "{}: virtio device {} of '{cap}'",
                    d.path,
                    p.info().device_id
                );
                add(&mut bus, regs, Arc::new(Mutex::new(p)))?;
            }
            DeviceKind::ArchTimer => {}
        }
        keep.push(d.path.clone());
    }
    keep.extend(matched.passed.iter().map(|p| p.path.clone()));
    let disabled = dt::disable_unbacked(&mut tree, &keep);
    for p in &disabled {
        info!("dev", "{p}: not emulated and not on a vbus; disabled");
    }

    dt::set_chosen(&mut tree, opts.cmdline.as_deref(), layout.initrd);
    dt::set_psci(&mut tree);
    let blob = tree.to_dtb().map_err(|e| err(e.to_string()))?;
    loader::write_dtb(&mem, &layout, &blob).map_err(|e| err(e.to_string()))?;
    let synced = std::time::Instant::now();
    loader::sync_for_boot(&mem, &layout, blob.len() as u64).map_err(|e| err(e.to_string()))?;
    info!(
        "loader",
        "device tree ({} bytes) at {:#x}; images cleaned from the caches in {} ms",
        blob.len(),
        layout.dtb,
        synced.elapsed().as_millis()
    );

    let vm = Vm::new(mem, bus, gic, &mpidrs, opts.fault_mode);
    drop(kernel);
    let images = std::iter::once(kfile).chain(rd).collect();
    Ok(Machine {
        vm: Arc::new(vm),
        tree,
        boot: layout.boot_state(),
        layout,
        mpidrs,
        ram_map,
        consoles,
        mirrored,
        disabled,
        passthrough: matched.passed,
        images,
    })
}

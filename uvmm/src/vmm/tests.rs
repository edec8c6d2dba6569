//! A whole VM on the host: built from a device tree and an Image by
//! [`crate::machine::build`], run by [`Vm::run_vcpu`] over a scripted
//! vCPU backend that plays the guest's traps.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::*;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::backend::{BackendError, ESR_IL, Exit, IrqEoi, VcpuKick, VmBackend, ec, lr};
use crate::devices::testing::{Collect, Mirror};
use crate::devices::{ConsoleOut, ReadMirror};
use crate::loader::tests::image;
use crate::machine::{FileBytes, Host, Machine, build};
use crate::memory::Ram;
use crate::options::Options;
use crate::passthrough::tests::pl031 as bus_pl031;
use crate::passthrough::{BusDevice, PtIrq, PtMmio};
use crate::psci::func;

struct TestHost {
    files: HashMap<String, Vec<u8>>,
    ram_size: usize,
    out: Collect,
    /// What goes to the console capability `con1`.
    con1: Collect,
    bus: Vec<BusDevice>,
}

impl Host for TestHost {
    fn read_file(&mut self, path: &str) -> Result<FileBytes, String> {
        self.files
            .get(path)
            .map(|f| Box::new(f.clone()) as FileBytes)
            .ok_or_else(|| "no such file".into())
    }
    fn ram(&mut self, cap: &str, phys: bool) -> Result<(Arc<Ram>, Option<u64>), String> {
        match cap {
            "ram" => Ok((
                Arc::new(Ram::zeroed(self.ram_size)),
                phys.then_some(0x8000_0000),
            )),
            _ => Err(format!("no capability named '{cap}'")),
        }
    }
    fn console(&mut self, cap: &str) -> Result<Box<dyn ConsoleOut>, String> {
        match cap {
            "log" => Ok(Box::new(self.out.clone())),
            "con1" => Ok(Box::new(self.con1.clone())),
            _ => Err("no such capability".into()),
        }
    }
    fn vbus_devices(&mut self) -> Result<Vec<BusDevice>, String> {
        Ok(self.bus.clone())
    }
}

fn host() -> TestHost {
    let mut files = HashMap::new();
    files.insert("rom/virt.dtb".into(), crate::dt::tests::virt_dtb(2));
    files.insert("rom/Image".into(), image(0, 0x10_0000, 0, 4096));
    files.insert("rom/initrd".into(), b"initrd".to_vec());
    TestHost {
        files,
        ram_size: 32 << 20,
        out: Collect::default(),
        con1: Collect::default(),
        bus: Vec::new(),
    }
}

fn machine(
    args: &[&str],
    h: &mut TestHost,
    cpus: usize,
) -> Result<Machine, crate::machine::SetupError> {
    build(&Options::parse(args.iter().copied()).unwrap(), h, cpus)
}

/// One guest trap: how to set it up in the registers, and what to check
/// when the vCPU is run next (the result of handling it).
struct Step {
    trap: Exit,
    set: Box<dyn Fn(&mut VcpuState) + Send>,
    check: Check,
}

/// A look at the registers after an exit was handled.
type Check = Box<dyn Fn(&VcpuState) + Send>;

struct Scripted {
    st: VcpuState,
    steps: VecDeque<Step>,
    pending_check: Option<Check>,
    seen_pcs: Arc<Mutex<Vec<u64>>>,
    start: std::time::Instant,
}

impl Scripted {
    fn new(steps: Vec<Step>) -> Scripted {
        Scripted {
            st: VcpuState::default(),
            steps: steps.into(),
            pending_check: None,
            seen_pcs: Arc::default(),
            start: std::time::Instant::now(),
        }
    }
}

struct NoKick;
impl VcpuKick for NoKick {
    fn kick(&self) {}
}

impl VcpuBackend for Scripted {
    fn state(&mut self) -> &mut VcpuState {
        &mut self.st
    }
    fn run(&mut self) -> Result<RunExit, BackendError> {
        let st = &mut self.st;
        if let Some(c) = self.pending_check.take() {
            c(st);
        }
        self.seen_pcs.lock().unwrap().push(st.regs.pc);
        let Some(step) = self.steps.pop_front() else {
            return Err(BackendError("script ended".into()));
        };
        st.exit = step.trap;
        (step.set)(st);
        self.pending_check = Some(step.check);
        Ok(RunExit::Trap)
    }
    fn kicker(&self) -> Box<dyn VcpuKick> {
        Box::new(NoKick)
    }
    fn counter(&self) -> (u64, u64) {
        let t = self.start.elapsed().as_nanos() as u64;
        (t / 1000, 1_000_000)
    }
}

/// The kernel's Vm object, handing out scripted vCPUs.
struct ScriptedVm {
    scripts: Vec<Option<Vec<Step>>>,
    mapped: Vec<(String, u64, u64, u64)>,
    mmio: Vec<PtMmio>,
    routes: Vec<(PtIrq, usize)>,
    eois: Arc<AtomicUsize>,
    /// The read mirrors handed out, by guest-physical address.
    mirrors: Vec<(u64, Mirror)>,
}

impl ScriptedVm {
    fn new(scripts: Vec<Option<Vec<Step>>>) -> ScriptedVm {
        ScriptedVm {
            scripts,
            mapped: Vec::new(),
            mmio: Vec::new(),
            routes: Vec::new(),
            eois: Arc::default(),
            mirrors: Vec::new(),
        }
    }
}

/// Counts the unmasks of a passed-through line.
struct CountEoi(Arc<AtomicUsize>);

impl IrqEoi for CountEoi {
    fn eoi(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl VmBackend for ScriptedVm {
    type Vcpu = Scripted;
    fn map_ram(
        &mut self,
        dscap: &str,
        ds_offset: u64,
        gpa: u64,
        size: u64,
    ) -> Result<(), BackendError> {
        self.mapped.push((dscap.into(), ds_offset, gpa, size));
        Ok(())
    }
    fn gic_info(&self) -> crate::backend::GicInfo {
        crate::backend::GicInfo {
            lrs: 4,
            priority_bits: 5,
        }
    }
    fn create_vcpu(&mut self, index: usize, _mpidr: u64) -> Result<Scripted, BackendError> {
        let steps = self.scripts.get_mut(index).and_then(Option::take);
        steps
            .map(Scripted::new)
            .ok_or_else(|| BackendError(format!("no vCPU {index}")))
    }
    fn map_mmio(&mut self, m: &PtMmio) -> Result<(), BackendError> {
        self.mmio.push(m.clone());
        Ok(())
    }
    fn route_irq(&mut self, irq: &PtIrq, vcpu: usize) -> Result<Box<dyn IrqEoi>, BackendError> {
        self.routes.push((irq.clone(), vcpu));
        Ok(Box::new(CountEoi(self.eois.clone())))
    }
    fn read_mirror(&mut self, gpa: u64) -> Result<Option<Box<dyn ReadMirror>>, BackendError> {
        let m = Mirror::default();
        self.mirrors.push((gpa, m.clone()));
        Ok(Some(Box::new(m)))
    }
}

fn esr(class: u64, iss: u64) -> u64 {
    (class << 26) | ESR_IL | iss
}

/// `str w<reg>, [gpa]` with `value` in the register.
fn store(gpa: u64, reg: u8, value: u64) -> Step {
    Step {
        trap: Exit {
            esr: esr(
                ec::DABT_LOWER,
                (1 << 24) | (2 << 22) | (u64::from(reg) << 16) | (1 << 6),
            ),
            far: gpa & 0xfff,
            gpa,
            ..Exit::default()
        },
        set: Box::new(move |st| st.regs.x[usize::from(reg)] = value),
        check: Box::new(|_| {}),
    }
}

/// `ldr w<reg>, [gpa]`, expecting `want`.
fn load(gpa: u64, reg: u8, want: u64) -> Step {
    Step {
        trap: Exit {
            esr: esr(
                ec::DABT_LOWER,
                (1 << 24) | (2 << 22) | (u64::from(reg) << 16),
            ),
            far: gpa & 0xfff,
            gpa,
            ..Exit::default()
        },
        set: Box::new(|_| {}),
        check: Box::new(move |st| {
            assert_eq!(st.regs.x[usize::from(reg)], want, "load of {gpa:#x}")
        }),
    }
}

fn hvc(x: [u64; 4], want_x0: Option<u64>) -> Step {
    Step {
        trap: Exit {
            esr: esr(ec::HVC64, 0),
            ..Exit::default()
        },
        set: Box::new(move |st| st.regs.x[..4].copy_from_slice(&x)),
        check: Box::new(move |st| {
            if let Some(w) = want_x0 {
                assert_eq!(st.regs.x[0], w, "PSCI call {:#x}", x[0]);
            }
        }),
    }
}

#[test]
fn build_from_seed_like_command_line() {
    let mut h = host();
    let m = machine(
        &[
            "-krom/Image",
            "-rrom/initrd",
            "-drom/virt.dtb",
            "-cconsole=ttyAMA0 rdinit=/init",
        ],
        &mut h,
        4,
    )
    .unwrap();
    // Two cpu nodes in the tree, four CPUs available: two vCPUs.
    assert_eq!(m.mpidrs, [0, 1]);
    assert_eq!(m.boot.pc, 0x4000_0000);
    assert_eq!(m.boot.x[0], m.layout.dtb);
    assert_eq!(m.boot.pstate, 0x3c5);
    // RAM: the memory node cut to the 32 MiB dataspace.
    assert_eq!(m.ram_map.len(), 1);
    assert_eq!(
        (m.ram_map[0].1.gpa, m.ram_map[0].1.size),
        (0x4000_0000, 32 << 20)
    );
    assert_eq!(m.disabled, ["/pl031@9010000", "/virtio_net@10000"]);
    assert_eq!(m.consoles.len(), 2);
    // The tree in guest RAM, read back with fdt.
    let mut blob = vec![0u8; 64 * 1024];
    m.vm.mem.read(m.layout.dtb, &mut blob).unwrap();
    let f = fdt::Fdt::new(&blob).unwrap();
    assert_eq!(f.chosen().bootargs(), Some("console=ttyAMA0 rdinit=/init"));
    assert_eq!(f.cpus().count(), 2);
    let mem: Vec<_> = f
        .memory()
        .regions()
        .map(|r| (r.starting_address as u64, r.size))
        .collect();
    assert_eq!(mem, [(0x4000_0000, Some(32 << 20))]);
    let gic = f.find_node("/intc@8000000").unwrap();
    let regs: Vec<_> = gic
        .reg()
        .unwrap()
        .map(|r| (r.starting_address as u64, r.size))
        .collect();
    assert_eq!(
        regs,
        [(0x800_0000, Some(0x1_0000)), (0x80a_0000, Some(0x4_0000))]
    );
    let windows: Vec<_> = m.vm.bus.windows().map(|w| (w.0, w.1)).collect();
    assert_eq!(
        windows,
        [
            (0x2_0000, 0x200),
            (0x800_0000, 0x1_0000),
            (0x80a_0000, 0x4_0000),
            (0x900_0000, 0x1000)
        ]
    );
    let (rs, re) = m.layout.initrd.unwrap();
    let mut rd = vec![0u8; (re - rs) as usize];
    m.vm.mem.read(rs, &mut rd).unwrap();
    assert_eq!(rd, b"initrd");
}

#[test]
fn consoles_on_the_capabilities_their_nodes_name() {
    let mut h = host();
    let args = [
        "-krom/Image",
        "-drom/virt.dtb",
        "-m/pl011@9000000/l4vmm,vcon_cap=str:con1",
    ];
    let m = machine(&args, &mut h, 1).unwrap();
    let caps: Vec<&str> = m.consoles.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(caps, ["con1", "log"], "in device-tree order");
    // The PL011 writes to con1, the virtio console to the log.
    m.vm.bus.write(0x900_0000, 4, u64::from(b'x')).unwrap();
    assert_eq!(h.con1.bytes(), b"x");
    assert!(h.out.bytes().is_empty());
    // A capability uvmm was not given: the node and the name in the error.
    let args = [
        "-krom/Image",
        "-drom/virt.dtb",
        "-m/virtio_uart@20000/l4vmm,vcon_cap=str:con9",
    ];
    let e = machine(&args, &mut h, 1).err().unwrap().to_string();
    assert!(
        e.contains("/virtio_uart@20000") && e.contains("'con9'"),
        "{e}"
    );
}

#[test]
fn build_without_device_tree_and_with_identity_ram() {
    let mut h = host();
    let m = machine(&["-krom/Image", "-i"], &mut h, 3).unwrap();
    assert_eq!(m.mpidrs.len(), 3);
    assert_eq!(m.ram_map[0].1.gpa, 0x8000_0000);
    assert_eq!(m.boot.pc, 0x8000_0000);
    assert_eq!(m.consoles.len(), 1);
    let m = machine(&["-krom/Image", "-b", "0x60000000"], &mut h, 1).unwrap();
    assert_eq!(m.ram_map[0].1.gpa, 0x6000_0000);
}

#[test]
fn physmap_and_dma_ranges() {
    let mut h = host();
    let mods = [
        "-krom/Image",
        "-drom/virt.dtb",
        "-m/memory@40000000/l4vmm,physmap=empty:",
        "-m/memory@40000000/dma-ranges=empty:",
    ];
    let m = machine(&mods, &mut h, 1).unwrap();
    assert_eq!(m.ram_map[0].1.gpa, 0x8000_0000);
    let n = m.tree.node("/memory@40000000").unwrap();
    assert_eq!(
        n.prop("dma-ranges").unwrap(),
        crate::dt::reg_bytes(&[(0x8000_0000, 0x8000_0000), (32 << 20, 0)], 2, 2)[..24].to_vec()
    );
}

#[test]
fn setup_errors_name_the_problem() {
    let mut h = host();
    let e = |args: &[&str], h: &mut TestHost| machine(args, h, 1).err().unwrap().to_string();
    assert!(e(&["-krom/nothing"], &mut h).contains("kernel rom/nothing: no such file"));
    assert!(e(&[], &mut h).contains("kernel rom/linux"));
    assert!(e(&["-krom/Image", "-drom/none.dtb"], &mut h).contains("device tree rom/none.dtb"));
    h.files.insert("rom/bad.dtb".into(), b"garbage".to_vec());
    assert!(e(&["-krom/Image", "-drom/bad.dtb"], &mut h).contains("not a valid device tree"));
    assert!(e(&["-krom/Image", "-rrom/nope"], &mut h).contains("ramdisk rom/nope"));
    h.files.insert("rom/junk.gz".into(), vec![0x1f, 0x8b, 0, 0]);
    assert!(e(&["-krom/junk.gz"], &mut h).contains("does not decompress"));
    assert!(
        e(
            &[
                "-krom/Image",
                "-m/memory@0/device_type=str:memory",
                "-m/memory@0/l4vmm,dscap=str:other",
                "-m/memory@0/reg=u64:0,0x1000000"
            ],
            &mut h
        )
        .contains("RAM capability 'other'")
    );
    h.ram_size = 1 << 20;
    assert!(e(&["-krom/Image"], &mut h).contains("guest RAM"));
}

#[test]
fn guest_run_uart_psci_sgi_and_power_off() {
    let mut h = host();
    let m = machine(&["-krom/Image", "-drom/virt.dtb"], &mut h, 2).unwrap();
    let uart = 0x900_0000;
    let boot = m.boot;
    let mut cpu0 = Scripted::new(vec![
        store(uart, 1, u64::from(b'o')),
        store(uart, 2, u64::from(b'k')),
        load(uart + 0x18, 3, 0x90), // FR: TXFE | RXFE
        load(uart + 0xfe0, 4, 0x11),
        hvc([u64::from(func::VERSION), 0, 0, 0], Some(0x1_0000)),
        hvc(
            [u64::from(func::smc64(func::CPU_ON)), 1, 0x4010_0000, 0x77],
            Some(0),
        ),
        // Nothing at this address: the default fault mode reads 0.
        load(0x0c00_0000, 5, 0),
        // Sleeps until vCPU 1 powers the VM off.
        wfi(),
    ]);
    let pcs0 = cpu0.seen_pcs.clone();
    let mut cpu1 = Scripted::new(vec![Step {
        trap: Exit {
            esr: esr(ec::HVC64, 0),
            ..Exit::default()
        },
        set: Box::new(|st| {
            assert_eq!(
                (st.regs.pc, st.regs.x[0], st.regs.pstate),
                (0x4010_0000, 0x77, 0x3c5),
                "CPU_ON start state"
            );
            st.regs.x[0] = u64::from(func::SYSTEM_OFF);
        }),
        check: Box::new(|_| panic!("SYSTEM_OFF returned")),
    }]);
    let vm = m.vm.clone();
    let t1 = std::thread::spawn(move || vm.run_vcpu(1, &mut cpu1, None, 4));
    let code0 = m.vm.run_vcpu(0, &mut cpu0, Some(boot), 4);
    let code1 = t1.join().unwrap();
    assert_eq!((code0, code1), (0, 0));
    assert_eq!(h.out.bytes(), b"ok");
    let pcs = pcs0.lock().unwrap();
    assert_eq!(pcs[0], 0x4000_0000);
    // Each MMIO access stepped over its 4-byte instruction; HVC did not.
    assert_eq!(
        &pcs[1..5],
        [0x4000_0004, 0x4000_0008, 0x4000_000c, 0x4000_0010]
    );
}

#[test]
fn reset_and_fatal_exit_codes() {
    let mut h = host();
    let m = machine(&["-krom/Image", "-drom/virt.dtb"], &mut h, 1).unwrap();
    let mut cpu = Scripted::new(vec![hvc([u64::from(func::SYSTEM_RESET), 0, 0, 0], None)]);
    assert_eq!(m.vm.run_vcpu(0, &mut cpu, Some(m.boot), 4), 102);
    let m = machine(&["-krom/Image", "-drom/virt.dtb", "-f", "halt"], &mut h, 1).unwrap();
    let mut cpu = Scripted::new(vec![load(0x0c00_0000, 1, 0)]);
    assert_eq!(m.vm.run_vcpu(0, &mut cpu, Some(m.boot), 4), EXIT_FATAL);
}

#[test]
fn handle_exit_details() {
    let mut h = host();
    let m = machine(
        &["-krom/Image", "-drom/virt.dtb", "-f", "inject"],
        &mut h,
        2,
    )
    .unwrap();
    let vm = &m.vm;
    // Sign-extending byte load into a w register from the GIC's PIDR2.
    let mut st = VcpuState::default();
    st.regs.pc = 0x1000;
    st.regs.pstate = 0x3c5;
    st.exit = Exit {
        esr: esr(ec::DABT_LOWER, (1 << 24) | (1 << 21) | (7 << 16)),
        far: 0xfe8,
        gpa: 0x800_ffe8,
        ..Exit::default()
    };
    assert_eq!(vm.handle_exit(0, &mut st), Action::Resume);
    assert_eq!(st.regs.x[7], 0x30);
    // Inject mode: an access to nothing becomes a data abort at VBAR + 0x200.
    st.el1.vbar = 0xffff_8000_0000_0000;
    st.exit = Exit {
        esr: esr(ec::DABT_LOWER, (1 << 24) | (2 << 22) | (1 << 6)),
        far: 0xffff_0000_0000_0123,
        gpa: 0x0c00_0123,
        ..Exit::default()
    };
    assert_eq!(vm.handle_exit(0, &mut st), Action::Resume);
    assert_eq!(st.regs.pc, 0xffff_8000_0000_0200);
    assert_eq!(st.regs.elr_el1, 0x1004);
    assert_eq!(st.el1.far, 0xffff_0000_0000_0123);
    assert_eq!(st.el1.esr >> 26, 0x25);
    assert_eq!(st.el1.esr & (1 << 6), 1 << 6);
    // ICC_SGI1R_EL1 write: SGI 1 to vCPU 1.
    vm.gic.with_state(|s| {
        s.ctlr = 2;
        let i = s.irq_mut(1, 1).unwrap();
        i.enabled = true;
        i.group1 = true;
    });
    let iss = (3 << 20) | (5 << 17) | (12 << 10) | (2 << 5) | (11 << 1);
    st.exit = Exit {
        esr: esr(ec::SYSREG, iss),
        ..Exit::default()
    };
    st.regs.x[2] = (1 << 24) | 0b10;
    st.regs.pc = 0x2000;
    assert_eq!(vm.handle_exit(0, &mut st), Action::Resume);
    assert_eq!(st.regs.pc, 0x2004);
    assert!(vm.gic.has_pending(1));
    // Debug registers at EL1: MDSCR_EL1 and DBGBVR0_EL1 read as zero,
    // OSLSR_EL1 as an open OS lock, a write to OSLAR_EL1 is ignored; at
    // EL0 (DBGDTR_EL0) and for the PMU (PMCCNTR_EL0) an exception.
    let sysreg = |r: [u64; 5], rt: u64, read: bool| Exit {
        esr: esr(
            ec::SYSREG,
            (r[0] << 20)
                | (r[4] << 17)
                | (r[1] << 14)
                | (r[2] << 10)
                | (rt << 5)
                | (r[3] << 1)
                | u64::from(read),
        ),
        ..Exit::default()
    };
    for (r, want) in [
        ([2, 0, 0, 2, 2], 0),
        ([2, 0, 0, 0, 4], 0),
        ([2, 0, 1, 1, 4], 0b1000),
    ] {
        st.exit = sysreg(r, 5, true);
        (st.regs.x[5], st.regs.pc) = (0x55, 0x2000);
        assert_eq!(vm.handle_exit(0, &mut st), Action::Resume);
        assert_eq!((st.regs.x[5], st.regs.pc), (want, 0x2004), "{r:?}");
    }
    st.exit = sysreg([2, 0, 1, 0, 4], 5, false);
    assert_eq!(vm.handle_exit(0, &mut st), Action::Resume);
    assert_eq!(st.regs.pc, 0x2008);
    for (r, pstate, vector) in [
        ([2, 3, 0, 4, 0], 0, 0x400),
        ([3, 3, 9, 13, 0], 0x3c5, 0x200),
    ] {
        st.exit = sysreg(r, 5, true);
        (st.regs.pc, st.regs.pstate) = (0x2000, pstate);
        assert_eq!(vm.handle_exit(0, &mut st), Action::Resume);
        assert_eq!(st.regs.pc, 0xffff_8000_0000_0000 + vector, "{r:?}");
        assert_eq!((st.el1.esr >> 26, st.regs.elr_el1), (0, 0x2000), "{r:?}");
    }
    st.regs.pstate = 0x3c5;
    // WFI with nothing pending waits; WFE does not.
    st.exit = Exit {
        esr: esr(ec::WFX, 0),
        ..Exit::default()
    };
    assert_eq!(vm.handle_exit(0, &mut st), Action::WaitForInterrupt);
    assert_eq!(vm.handle_exit(1, &mut st), Action::Resume);
    st.exit = Exit {
        esr: esr(ec::WFX, 1),
        ..Exit::default()
    };
    assert_eq!(vm.handle_exit(0, &mut st), Action::Resume);
    // SMC steps over the instruction, PSCI CPU_SUSPEND standby waits.
    st.exit = Exit {
        esr: esr(ec::SMC64, 0),
        ..Exit::default()
    };
    st.regs.pc = 0x3000;
    st.regs.x[0] = u64::from(func::smc64(func::CPU_SUSPEND));
    st.regs.x[1] = 0;
    assert_eq!(vm.handle_exit(0, &mut st), Action::WaitForInterrupt);
    assert_eq!((st.regs.pc, st.regs.x[0]), (0x3004, 0));
    // An unknown exception class in inject mode: undefined instruction.
    st.exit = Exit {
        esr: esr(0x07, 0),
        ..Exit::default()
    };
    st.regs.pstate = 0; // from EL0
    assert_eq!(vm.handle_exit(0, &mut st), Action::Resume);
    assert_eq!(st.regs.pc, 0xffff_8000_0000_0400);
    assert_eq!(st.el1.esr >> 26, 0);
    // An instruction fetch outside RAM cannot be skipped.
    let m = machine(&["-krom/Image", "-drom/virt.dtb"], &mut h, 1).unwrap();
    let mut st = VcpuState {
        exit: Exit {
            esr: esr(ec::IABT_LOWER, 0),
            far: 0,
            gpa: 0x1000,
            ..Exit::default()
        },
        ..VcpuState::default()
    };
    assert!(matches!(m.vm.handle_exit(0, &mut st), Action::Fatal(_)));
}

fn wfi() -> Step {
    Step {
        trap: Exit {
            esr: esr(ec::WFX, 0),
            ..Exit::default()
        },
        set: Box::new(|_| {}),
        check: Box::new(|_| {}),
    }
}

#[test]
fn machine_runs_vcpu_threads_until_power_off() {
    let mut h = host();
    let m = machine(&["-krom/Image", "-drom/virt.dtb"], &mut h, 2).unwrap();
    let mut vm = ScriptedVm::new(vec![
        Some(vec![
            hvc(
                [u64::from(func::smc64(func::CPU_ON)), 1, 0x4010_0000, 0],
                Some(0),
            ),
            // Sleeps until the VM ends.
            wfi(),
        ]),
        Some(vec![hvc([u64::from(func::SYSTEM_OFF), 0, 0, 0], None)]),
    ]);
    assert_eq!(m.run(&mut vm), Ok(0));
    assert_eq!(vm.mapped, [("ram".to_string(), 0, 0x4000_0000, 32 << 20)]);
}

#[test]
fn uart_registers_read_from_a_mirror_and_writes_trap() {
    let mut h = host();
    let m = machine(&["-krom/Image", "-drom/virt.dtb"], &mut h, 1).unwrap();
    let uart = 0x900_0000;
    assert_eq!(m.mirrored.len(), 1);
    assert_eq!(m.mirrored[0].0, uart);
    // A store into the read-only mirror: a stage-2 permission fault
    // (fault status 0b001111) with the syndrome of an MMIO write.
    let mut put = store(uart, 1, u64::from(b'!'));
    put.trap.esr |= 0b00_1111;
    let mut vm = ScriptedVm::new(vec![Some(vec![
        put,
        hvc([u64::from(func::SYSTEM_OFF), 0, 0, 0], None),
    ])]);
    assert_eq!(m.run(&mut vm), Ok(0));
    assert_eq!(h.out.bytes(), b"!");
    let [(gpa, mirror)] = &vm.mirrors[..] else {
        panic!("one mirror: {:?}", vm.mirrors.len());
    };
    assert_eq!(*gpa, uart);
    assert_eq!(mirror.read(0x18), Some(0x90), "FR: TXFE | RXFE");
    assert_eq!(mirror.read(0x3c), Some(1 << 5), "RIS: the write's TX");
    // Input: the guest's reads trap until it has read the FIFO empty.
    assert_eq!(m.consoles[0].1.receive(b"q"), 1);
    assert_eq!(mirror.read(0x18), None);
}

#[test]
fn wfi_ends_when_the_virtual_timer_fires() {
    let mut h = host();
    let m = machine(&["-krom/Image", "-drom/virt.dtb"], &mut h, 1).unwrap();
    m.vm.gic.with_state(|s| {
        s.ctlr = 2;
        let t = s.irq_mut(0, VTIMER_INTID).unwrap();
        t.enabled = true;
        t.group1 = true;
    });
    let mut wait = wfi();
    // Timer on, 5 ms from now (the scripted counter runs at 1 MHz from 0).
    wait.set = Box::new(|st| {
        st.timer = crate::backend::VTimer {
            ctl: 1,
            cval: 5_000,
            ..Default::default()
        }
    });
    let after = Step {
        trap: Exit {
            esr: esr(ec::HVC64, 0),
            ..Exit::default()
        },
        set: Box::new(|st| {
            let ids: Vec<u32> = st
                .gic
                .lr
                .iter()
                .filter(|l| **l != 0)
                .map(|l| *l as u32)
                .collect();
            assert_eq!(ids, [VTIMER_INTID], "the timer PPI is in a list register");
            st.regs.x[0] = u64::from(func::SYSTEM_RESET);
        }),
        check: Box::new(|_| {}),
    };
    let mut vm = ScriptedVm::new(vec![Some(vec![wait, after])]);
    assert_eq!(m.run(&mut vm), Ok(102));
}

#[test]
fn vbus_device_passed_through_not_emulated_and_unmasked_after_completion() {
    let mut h = host();
    h.bus = vec![bus_pl031(0x901_0000)];
    let m = machine(&["-krom/Image", "-drom/virt.dtb"], &mut h, 1).unwrap();
    // The node stays enabled and nothing of uvmm's sits at its address.
    let pl031 = m.tree.node("/pl031@9010000").unwrap();
    assert!(pl031.is_enabled());
    assert!(!m.disabled.contains(&"/pl031@9010000".to_string()));
    assert!(
        m.vm.bus
            .windows()
            .all(|(base, size, _)| !(base..base + size).contains(&0x901_0000))
    );
    assert_eq!(m.passthrough.len(), 1);
    // The guest took INTID 34 (the kernel put it in a list register),
    // then completed it: its line is unmasked once, not before.
    let active = Step {
        trap: Exit {
            esr: esr(ec::HVC64, 0),
            ..Exit::default()
        },
        set: Box::new(|st| {
            st.gic.lr[0] = lr::pending(34, 0xa0) ^ lr::PENDING ^ lr::ACTIVE;
            st.regs.x[0] = u64::from(func::VERSION);
        }),
        check: Box::new(|_| {}),
    };
    let done = Step {
        trap: Exit {
            esr: esr(ec::HVC64, 0),
            ..Exit::default()
        },
        set: Box::new(|st| {
            // The guest deactivated what uvmm loaded back.
            assert_eq!(lr::intid(st.gic.lr[0]), 34);
            st.gic.lr[0] = 34;
            st.regs.x[0] = u64::from(func::SYSTEM_OFF);
        }),
        check: Box::new(|_| {}),
    };
    let mut vm = ScriptedVm::new(vec![Some(vec![active, done])]);
    let eois = vm.eois.clone();
    assert_eq!(m.run(&mut vm), Ok(0));
    assert_eq!(
        vm.mmio,
        [PtMmio {
            device: 0,
            resource: 0,
            gpa: 0x901_0000,
            size: 0x1000
        }]
    );
    assert_eq!(
        vm.routes,
        [(
            PtIrq {
                device: 0,
                resource: 1,
                line: 34,
                intid: 34
            },
            0
        )]
    );
    assert_eq!(eois.load(Ordering::SeqCst), 1);
}

#[test]
fn vbus_device_inside_guest_ram_is_refused() {
    let mut h = host();
    h.ram_size = 64 << 20;
    h.bus = vec![bus_pl031(0x4100_0000)];
    let mut dtb = crate::dt::Tree::from_dtb(&crate::dt::tests::virt_dtb(1)).unwrap();
    dtb.node_mut("/pl031@9010000")
        .unwrap()
        .set_prop("reg", crate::dt::reg_bytes(&[(0x4100_0000, 0x1000)], 2, 2));
    h.files
        .insert("rom/clash.dtb".into(), dtb.to_dtb().unwrap());
    let e = machine(&["-krom/Image", "-drom/clash.dtb"], &mut h, 1)
        .err()
        .unwrap();
    assert!(e.0.contains("lies in guest RAM"), "{e}");
}

/// The monitor's commands on a built VM: what each shows, and clear
/// answers to bad commands and arguments.
#[test]
fn monitor_commands() {
    use crate::monitor::execute;
    let mut h = host();
    let m = machine(&["-krom/Image", "-drom/virt.dtb"], &mut h, 2).unwrap();
    let vm = &m.vm;
    let run = |line: &str| execute(vm, &m.tree, line);
    assert!(run("help").contains("ram dump <gpa> [<bytes>]"));
    assert_eq!(run("   "), "");
    assert_eq!(
        run("cpu"),
        "vCPU 0: affinity 0x0, on\nvCPU 1: affinity 0x1, off\n"
    );
    assert_eq!(run("cpu list"), run("cpu"));
    let dev = run("dev list");
    assert!(dev.contains("pl011") || dev.contains("PL011"), "{dev}");
    let map = run("memmap");
    let ram = map.lines().find(|l| l.contains("RAM (")).unwrap();
    assert!(
        ram.starts_with("0x0040000000..0x0042000000  RAM (32 MiB"),
        "{map}"
    );
    // Ordered by address: the MMIO windows below RAM come first.
    assert!(map.lines().next().unwrap().contains("MMIO"), "{map}");
    // The kernel's first bytes, as the loader put them.
    vm.mem
        .write(0x4000_0000, b"Hello, monitor!\x00\x01")
        .unwrap();
    let dump = run("ram dump 0x40000000 18");
    assert_eq!(
        dump,
        "0x0040000000: 48 65 6c 6c 6f 2c 20 6d 6f 6e 69 74 6f 72 21 00  Hello, monitor!.\n\
         0x0040000010: 01 00                                            ..\n"
    );
    assert_eq!(run("ram dump 1073741824 1").lines().count(), 1, "decimal");
    for (bad, says) in [
        ("ram dump", "usage: ram dump <gpa> [<bytes>]"),
        ("ram dump x", "'x' is not an address"),
        (
            "ram dump 0x40000000 0",
            "the length must be 1 to 4096 bytes",
        ),
        (
            "ram dump 0x40000000 5000",
            "the length must be 1 to 4096 bytes",
        ),
        ("ram dump 0x10 16", "ram dump: 0x10 (+0x10):"),
        (
            "frobnicate",
            "unknown command 'frobnicate' (help lists the commands)",
        ),
    ] {
        let got = run(bad);
        assert!(got.contains(says) && got.ends_with('\n'), "{bad}: {got}");
    }
    // Edges: the last bytes of RAM, across its end, the top of the
    // address space, numbers too big for 64 bits; answers, never a panic.
    for line in [
        "ram dump 0x41fffff0 4096",
        "ram dump 0x41ffffff",
        "ram dump 0xffffffffffffffff 4096",
        "ram dump 0xfffffffffffff000",
        "ram dump 0x1ffffffffffffffff 1",
        "ram dump 18446744073709551615 2",
        "ram dump 0x40000000 18446744073709551615",
        "cpu 18446744073709551615 regs",
        "cpu -1 regs",
        "ram dump 0x 1",
    ] {
        assert!(run(line).ends_with('\n'), "{line}");
    }
    let dt = run("dt");
    assert!(dt.starts_with("/ {\n"), "{dt}");
    assert!(dt.contains("\tchosen {\n"), "{dt}");
    assert!(dt.contains("compatible = \"arm,psci-1.0\""), "{dt}");
    assert!(dt.contains("#address-cells = <0x2>;"), "{dt}");
    for (bad, says) in [
        ("cpu 1 regs", "cpu 1 regs: the vCPU is not on"),
        ("cpu 9 regs", "cpu 9 regs: no such vCPU"),
        ("cpu x regs", "cpu: 'x' is not a vCPU number"),
    ] {
        assert_eq!(run(bad), format!("{says}\n"));
    }
    // vCPU 0's registers: its thread (here a loop standing in for the
    // vCPU loop) hands them over at its next exit.
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let vcpu = {
        let (vm, done) = (m.vm.clone(), done.clone());
        std::thread::spawn(move || {
            let mut st = VcpuState::default();
            st.regs.pc = 0xffff_8000_1234_5678;
            st.regs.pstate = 0x3c5;
            st.regs.x[29] = 0x2929;
            st.el1.ttbr1 = 0x4100_0000;
            while !done.load(std::sync::atomic::Ordering::Acquire) {
                vm.note_exit(0, &st);
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        })
    };
    let regs = run("cpu 0 regs");
    done.store(true, std::sync::atomic::Ordering::Release);
    vcpu.join().unwrap();
    assert!(
        regs.starts_with("vCPU 0 at its exit for the monitor (EL1h):\n"),
        "{regs}"
    );
    assert!(regs.contains("x29 0000000000002929"), "{regs}");
    assert!(regs.contains("pc         ffff800012345678"), "{regs}");
    assert!(regs.contains("ttbr1_el1  0000000041000000"), "{regs}");
    let gic = run("gic");
    assert!(
        gic.starts_with("distributor: group 0 disabled, group 1 disabled; "),
        "{gic}"
    );
    // An SPI the guest enabled and that is pending shows.
    let mut d = vm.gic.distributor();
    crate::bus::MmioDevice::write(&mut d, 0, 4, 0x2);
    crate::bus::MmioDevice::write(&mut d, 0x104, 4, 1 << 1);
    vm.gic.set_pending(0, 33);
    let gic = run("gic");
    assert!(gic.contains("group 1 enabled"), "{gic}");
    let line = gic.lines().find(|l| l.starts_with("INTID 33")).unwrap();
    assert!(
        line.contains("enabled pending") && line.contains("routed to"),
        "{line}"
    );
}

/// Random guest accesses on two vCPUs: reads and writes of 1 to 8 bytes
/// at any offset in (and just past) every emulated device's window, with
/// values that often point into guest RAM full of random bytes (so that
/// the virtio console follows random queues and descriptor chains), SGIs
/// with random targets, PSCI calls with random arguments. uvmm must
/// answer each without panicking, and no MMIO access stops the VM.
#[test]
fn random_guest_accesses_are_answered() {
    let mut h = host();
    let m = machine(&["-krom/Image", "-drom/virt.dtb"], &mut h, 2).unwrap();
    let vm = &m.vm;
    let windows: Vec<(u64, u64, String)> = vm
        .bus
        .windows()
        .map(|(b, s, n)| (b, s, n.to_string()))
        .collect();
    assert!(windows.len() >= 4, "{windows:?}");
    let mut rng = l4_xorshift::XorShift::new(0x2545_f491_4f6c_dd1d);
    let mut next = move || rng.next_u64();
    const RAM: u64 = 0x4000_0000;
    let noise: Vec<u8> = (0..0x1_0000).map(|_| next() as u8).collect();
    vm.mem.write(RAM, &noise).unwrap();
    let psci = [
        func::VERSION,
        func::FEATURES,
        func::CPU_ON,
        func::smc64(func::CPU_ON),
        func::AFFINITY_INFO,
        func::CPU_SUSPEND,
        func::MIGRATE_INFO_TYPE,
        0x8400_00ff,
        0xc400_0123,
    ];
    let console = windows
        .iter()
        .find(|w| w.2.contains("virtio"))
        .map(|w| w.0)
        .expect("a virtio console");
    let mut st = VcpuState::default();
    for i in 0..200_000 {
        if i % 2_000 == 0 {
            // Now and then a driver sets the console up properly, over
            // rings and descriptors of random content that point into RAM,
            // and kicks both queues.
            random_rings(vm, RAM, &mut next);
            virtio_console_up(vm, console, RAM);
        }
        let r = next();
        let cpu = (r & 1) as usize;
        let reg = ((r >> 8) % 31) as usize;
        // Half the values are addresses in the noisy RAM.
        st.regs.x[reg] = if r & 2 == 0 {
            RAM + next() % 0x1_0000
        } else {
            next()
        };
        st.regs.pstate = 0x3c5;
        st.exit = match (r >> 2) % 16 {
            0 => {
                st.regs.x[0] = u64::from(psci[(r >> 16) as usize % psci.len()]);
                st.regs.x[1] = next() % 4;
                st.regs.x[2] = RAM + next() % 0x10_0000;
                Exit {
                    esr: esr(ec::HVC64, 0),
                    ..Exit::default()
                }
            }
            1 => Exit {
                // ICC_SGI1R_EL1 write.
                esr: esr(
                    ec::SYSREG,
                    (3 << 20) | (5 << 17) | (12 << 10) | ((reg as u64) << 5) | (11 << 1),
                ),
                ..Exit::default()
            },
            _ => {
                let (base, size, _) = &windows[(r >> 16) as usize % windows.len()];
                let sas = (r >> 20) & 3;
                let mut offset = next() % (size + 0x10);
                if r & (1 << 22) == 0 {
                    offset &= !((1 << sas) - 1);
                }
                let write = (r >> 23) & 1;
                Exit {
                    esr: esr(
                        ec::DABT_LOWER,
                        (1 << 24) | (sas << 22) | ((reg as u64) << 16) | (1 << 15) | (write << 6),
                    ),
                    gpa: base + offset,
                    far: base + offset,
                    ..Exit::default()
                }
            }
        };
        let a = vm.handle_exit(cpu, &mut st);
        assert!(
            !matches!(a, Action::Fatal(_)),
            "access {i} ({:#x}): {a:?}",
            st.exit.gpa
        );
    }
}

/// Fills the first 32 KiB of RAM at `ram` with descriptor tables and rings
/// of random content for 16-entry queues: descriptors whose buffers are in
/// RAM or not, of random lengths and flags (NEXT, WRITE, INDIRECT) and
/// links; rings with random indices and heads.
fn random_rings(vm: &Vm, ram: u64, next: &mut impl FnMut() -> u64) {
    for q in 0..2u64 {
        let table = ram + q * 0x4000;
        for d in 0..16 {
            let r = next();
            let addr = if r & 1 == 0 {
                ram + next() % 0x1_0000
            } else {
                next()
            };
            let len = (next() % 0x3000) as u32;
            let flags = (r >> 8) as u16 & 0b111;
            let link = ((r >> 16) % 20) as u16;
            let e = table + d * 16;
            vm.mem.write(e, &addr.to_le_bytes()).unwrap();
            vm.mem.write_u32(e + 8, len).unwrap();
            vm.mem.write_u16(e + 12, flags).unwrap();
            vm.mem.write_u16(e + 14, link).unwrap();
        }
        let avail = table + 0x1000;
        vm.mem.write_u16(avail + 2, (next() % 40) as u16).unwrap();
        for k in 0..16 {
            vm.mem
                .write_u16(avail + 4 + 2 * k, (next() % 20) as u16)
                .unwrap();
        }
    }
}

/// A virtio 1 driver's set-up of the console at `base`: reset,
/// ACKNOWLEDGE, DRIVER, VERSION_1, FEATURES_OK, queues 0 and 1 (16
/// entries each, their rings in RAM at `ram` as [`random_rings`] lays them
/// out), DRIVER_OK, then a notification of each queue.
fn virtio_console_up(vm: &Vm, base: u64, ram: u64) {
    let w = |off: u64, v: u64| {
        vm.bus.write(base + off, 4, v);
    };
    for status in [0, 1, 3] {
        w(0x70, status);
    }
    for (sel, features) in [(1, 1), (0, 0)] {
        w(0x24, sel);
        w(0x20, features);
    }
    w(0x70, 0xb);
    for q in 0..2u64 {
        let table = ram + q * 0x4000;
        w(0x30, q);
        w(0x38, 16);
        for (off, addr) in [
            (0x80, table),
            (0x90, table + 0x1000),
            (0xa0, table + 0x2000),
        ] {
            w(off, addr & 0xffff_ffff);
            w(off + 4, addr >> 32);
        }
        w(0x44, 1);
    }
    w(0x70, 0xf);
    for q in 0..2 {
        w(0x50, q);
    }
    // DRIVER_OK (NEEDS_RESET too when a chain was malformed).
    let status = vm.bus.read(base + 0x70, 4);
    assert_eq!(status.map(|s| s & 0xf), Some(0xf), "status {status:?}");
}

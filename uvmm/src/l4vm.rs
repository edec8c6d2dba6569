//! The kernel backend: uvmm's [`VmBackend`] and [`VcpuBackend`] on the
//! kernel's Vm object and vCPU threads (`l4::vm`, `l4_abi::vcpu`).
//!
//! * The Vm is created through the task's factory; guest RAM, attached
//!   into uvmm's address space by the runtime on demand, is mapped into it
//!   from uvmm's own task a 2 MiB block at a time when the guest first
//!   touches the block (a stage-2 abort in RAM): uvmm faults the block in
//!   first, so moe clears only RAM that is used (`--kernel` inflating
//!   touches the kernel's blocks before the guest runs).
//! * Each vCPU is a uvmm thread in vCPU mode: on its first run it moves
//!   itself to its CPU, takes a page of the UTCB area as its state area,
//!   attaches its kick Irq to itself and enters vCPU mode. From then on
//!   uvmm handles exits in the state area itself (nothing is copied), and
//!   marks what it left alone since the last exit (`unchanged`: EL1
//!   registers, timer, list registers, VMPIDR), which the kernel then
//!   neither reads nor checks again.
//! * The kernel handles WFI, the virtual timer and its own injections; an
//!   exit it does not handle comes back as [`RunExit::Trap`]. A kick
//!   triggers the vCPU's Irq, which sends the guest out with `Kick`.
//! * Devices of the vbus: their MMIO dataspaces (from io) are attached
//!   into uvmm and mapped into the Vm like RAM (the kernel maps what is
//!   not RAM as device memory); their Irqs are bound to the vCPU that
//!   takes them (`bind_vcpu`), so the kernel injects them directly, and
//!   unmasked when the vCPU starts and after the guest completed one.
//! * The notification Irqs of virtio proxies are bound to the first vCPU
//!   the same way ([`L4Vm::route_virq`]): the device's notification
//!   interrupts the guest without a uvmm thread in between.
//! * A device's read mirror ([`uvmm::devices::ReadMirror`]) is a page of
//!   uvmm's memory mapped read-only into the Vm over the device's window
//!   while shown, and revoked from the Vm (not from uvmm) when hidden.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use l4::abi::proto::unmap;
use l4::abi::vcpu::{self as abi, ExitReason, ec};
use l4::abi::{Error, Fpage, MemRights, Timeout, Timeouts};
use l4::cap::{Factory, Irq, Scheduler, Task, Thread, Vm};
use l4::{Cap, SlotAlloc};
use l4_ipc::RecvBufs;
use l4_ipc::vbus::VbusClient;
use l4re::env::{FIRST_PROGRAM_CAP, caps};
use uvmm::backend::{
    BackendError, GicInfo, IrqEoi, MAX_LRS, RunExit, VcpuBackend, VcpuKick, VcpuState, VmBackend,
};
use uvmm::devices::{MIRROR_PAGE, ReadMirror};
use uvmm::memory::{DemandRam, DemandWindow, map_order};
use uvmm::passthrough::{PtIrq, PtMmio};

/// Capability slots uvmm allocates (the Vm, the kick Irqs, the virtio
/// proxies' Irqs).
pub(crate) static SLOTS: SlotAlloc<2> = SlotAlloc::new(FIRST_PROGRAM_CAP);

/// List registers every GICv3 implementation uvmm runs on has; the kernel
/// reports the real count once a vCPU ran, and uvmm never needs more.
const MIN_LRS: usize = 4;
/// The label of a vCPU's kick Irq.
const KICK_LABEL: u64 = 0x6b69_636b;
/// The priority of vCPU threads in uvmm's scheduler: its lowest, below
/// uvmm's other threads (`l4re::env::PROGRAM_PRIO`: the runtime thread serving
/// their system calls, console input, the log writer), which a guest that
/// keeps its vCPU busy must not starve. With a scheduler whose base is
/// the host services' priority (seed 000's `create(L4.Proto.Scheduler,
/// 10, 2, 0x3)`), the vCPUs share their CPU with cons and moe round-robin
/// instead of shutting them out while the guest boots.
const VCPU_PRIO: u64 = 0;
/// The priority passed-through interrupts are injected with (Linux's
/// default for device interrupts).
const PASSTHROUGH_PRIORITY: u8 = 0xa0;
/// `PROT_READ | PROT_WRITE` for attaching device memory.
const PROT_RW: u64 = 3;

fn kerr(what: &str, e: Error) -> BackendError {
    BackendError(format!("{what}: {e:?}"))
}

fn slot() -> Result<u64, BackendError> {
    SLOTS
        .alloc()
        .ok_or_else(|| BackendError("out of capability slots".into()))
}

/// A RAM dataspace as uvmm attached it.
pub struct AttachedRam {
    /// The capability name (`ram`, a memory node's `l4vmm,dscap`).
    pub name: String,
    /// Where it is in uvmm's address space.
    pub local: u64,
    /// Its size.
    pub size: u64,
}

/// Maps `size` bytes at uvmm's `local` into Vm `vm` at `gpa`.
fn map_local(
    vm: Cap<Vm>,
    local: u64,
    gpa: u64,
    size: u64,
    rights: MemRights,
) -> Result<(), BackendError> {
    let me = Cap::<Task>::from_index(caps::THIS_TASK);
    let mut off = 0;
    while off < size {
        let order = map_order(local + off, gpa + off, size - off);
        vm.as_task()
            .map_mem(me, local + off, order, rights, gpa + off)
            .map_err(|e| kerr(&format!("mapping guest memory at {:#x}", gpa + off), e))?;
        off += 1 << order;
    }
    Ok(())
}

/// The kernel's Vm object of this uvmm.
pub struct L4Vm {
    vm: Cap<Vm>,
    rams: Vec<AttachedRam>,
    /// Guest RAM, mapped into the Vm on demand (shared by the vCPUs).
    windows: Arc<DemandRam>,
    /// The CPUs the scheduler offers, in order (vCPU i runs on the i-th).
    cpus: Vec<u32>,
    /// The `vbus` capability, if uvmm has one.
    vbus: Option<u64>,
    /// Interrupts the kernel injects (passed-through ones, virtio
    /// notifications): the vCPU, the Irq, the guest's INTID.
    routes: Vec<(usize, Cap<Irq>, u32)>,
}

impl L4Vm {
    /// Creates the Vm; `rams` are the attached RAM dataspaces, `online`
    /// the scheduler's CPU mask, `vbus` the capability of io's bus.
    pub fn new(
        rams: Vec<AttachedRam>,
        online: u64,
        vbus: Option<u64>,
    ) -> Result<L4Vm, BackendError> {
        let dest = slot()?;
        let vm = Cap::<Factory>::from_index(caps::FACTORY)
            .create_vm(dest)
            .map_err(|e| {
                kerr(
                    "cannot create the Vm (does the kernel have virtualisation?)",
                    e,
                )
            })?;
        let cpus = (0..64)
            .filter(|c| online & (1 << c) != 0)
            .collect::<Vec<u32>>();
        Ok(L4Vm {
            vm,
            rams,
            cpus: if cpus.is_empty() { vec![0] } else { cpus },
            vbus,
            routes: Vec::new(),
            windows: Default::default(),
        })
    }

    /// The Vm's capability.
    pub fn cap(&self) -> Cap<Vm> {
        self.vm
    }

    /// Has the kernel inject `intid` into the first vCPU (where uvmm's
    /// passed-through interrupts go, [`uvmm::machine::PASSTHROUGH_VCPU`])
    /// when Irq `irq` is triggered: a virtio device's notification Irq.
    pub fn route_virq(&mut self, irq: u64, intid: u32) {
        self.routes
            .push((uvmm::machine::PASSTHROUGH_VCPU, Cap::from_index(irq), intid));
    }

    /// A client of the vbus whose answer capability lands in a new slot.
    fn vbus(&self) -> Result<VbusClient, BackendError> {
        let bus = self
            .vbus
            .ok_or_else(|| BackendError("no capability named 'vbus'".into()))?;
        let mut c = VbusClient::new(bus);
        c.rcv = RecvBufs::cap_slot(slot()?);
        Ok(c)
    }
}

/// A read mirror: a page of uvmm's, mapped read-only into the Vm at
/// `gpa` while shown.
struct L4Mirror {
    vm: Cap<Vm>,
    /// The page in uvmm (allocated for good: the Vm may map it).
    page: usize,
    gpa: u64,
    mapped: bool,
    /// Mapping failed once: the device stays fully trapped.
    failed: bool,
}

impl L4Mirror {
    fn new(vm: Cap<Vm>, gpa: u64) -> Result<L4Mirror, BackendError> {
        let layout =
            std::alloc::Layout::from_size_align(MIRROR_PAGE as usize, MIRROR_PAGE as usize)
                .map_err(|e| BackendError(e.to_string()))?;
        // SAFETY: the layout has a non-zero size; the page is never freed
        // (the Vm may map it as long as it lives).
        let page = unsafe { std::alloc::alloc_zeroed(layout) };
        if page.is_null() {
            return Err(BackendError("no memory for a read mirror".into()));
        }
        Ok(L4Mirror {
            vm,
            page: page as usize,
            gpa,
            mapped: false,
            failed: false,
        })
    }
}

impl ReadMirror for L4Mirror {
    fn show(&mut self, values: &[(u64, u32)]) {
        for &(offset, v) in values {
            if offset.is_multiple_of(4) && offset < MIRROR_PAGE {
                let word = self.page + offset as usize;
                // SAFETY: an aligned word inside the page, which uvmm owns
                // for good; the guest only reads it.
                unsafe { (word as *mut u32).write_volatile(v) };
                // The guest maps the window as device memory, so its reads
                // bypass the caches: the line goes to memory before the
                // guest may read it.
                l4::cache::clean_to_poc(word, 4);
            }
        }
        if self.mapped || self.failed {
            return;
        }
        match map_local(
            self.vm,
            self.page as u64,
            self.gpa,
            MIRROR_PAGE,
            MemRights::R,
        ) {
            Ok(()) => self.mapped = true,
            Err(e) => {
                self.failed = true;
                uvmm::warn!(
                    "dev",
                    "no read mirror at {:#x}, every read exits: {e}",
                    self.gpa
                );
            }
        }
    }

    fn hide(&mut self) {
        if !self.mapped {
            return;
        }
        let me = Cap::<Task>::from_index(caps::THIS_TASK);
        let page = Fpage::mem(
            self.page as u64,
            MIRROR_PAGE.trailing_zeros() as u8,
            MemRights::RWX,
        );
        match me.unmap(page, unmap::OTHER_SPACES) {
            Ok(()) => self.mapped = false,
            Err(e) => {
                // Still mapped: the guest reads the registers as they were
                // (no input waiting) until a later hide succeeds, the next
                // time input arrives.
                uvmm::warn!(
                    "dev",
                    "cannot revoke the read mirror at {:#x}: {e:?}",
                    self.gpa
                );
            }
        }
    }
}

/// Unmasks a passed-through line.
struct Unmask(Cap<Irq>);

impl IrqEoi for Unmask {
    fn eoi(&self) {
        // A failing unmask means the Irq is gone: nothing left to unmask.
        let _ = self.0.unmask();
    }
}

impl VmBackend for L4Vm {
    type Vcpu = L4Vcpu;

    fn map_ram(
        &mut self,
        dscap: &str,
        ds_offset: u64,
        gpa: u64,
        size: u64,
    ) -> Result<(), BackendError> {
        let ram = self
            .rams
            .iter()
            .find(|r| r.name == dscap)
            .ok_or_else(|| BackendError(format!("RAM '{dscap}' is not attached")))?;
        if ds_offset.checked_add(size).is_none_or(|e| e > ram.size) {
            return Err(BackendError(format!(
                "{size:#x} bytes at {ds_offset:#x} are beyond RAM '{dscap}' ({:#x} bytes)",
                ram.size
            )));
        }
        let local = ram.local + ds_offset;
        self.windows.add(DemandWindow::new(gpa, size, local));
        Ok(())
    }

    fn map_mmio(&mut self, m: &PtMmio) -> Result<(), BackendError> {
        let what = format!("MMIO {} of vbus device {}", m.resource, m.device);
        let ds = self
            .vbus()?
            .mmio(m.device, m.resource)
            .map_err(|e| kerr(&format!("io refused {what}"), e))?;
        let local = l4re::env::attach(ds.index(), m.size, 0, PROT_RW)
            .map_err(|e| BackendError(format!("cannot attach {what} (error {e})")))?;
        map_local(self.vm, local, m.gpa, m.size, MemRights::RW)
    }

    fn route_irq(&mut self, irq: &PtIrq, vcpu: usize) -> Result<Box<dyn IrqEoi>, BackendError> {
        let got = self.vbus()?.irq(irq.device, irq.resource).map_err(|e| {
            kerr(
                &format!(
                    "io refused interrupt {} of vbus device {}",
                    irq.resource, irq.device
                ),
                e,
            )
        })?;
        let cap = Cap::<Irq>::from_index(got.index());
        self.routes.push((vcpu, cap, irq.intid));
        Ok(Box::new(Unmask(cap)))
    }

    fn read_mirror(&mut self, gpa: u64) -> Result<Option<Box<dyn ReadMirror>>, BackendError> {
        Ok(Some(Box::new(L4Mirror::new(self.vm, gpa)?)))
    }

    fn gic_info(&self) -> GicInfo {
        GicInfo {
            lrs: MIN_LRS,
            priority_bits: 5,
        }
    }

    fn create_vcpu(&mut self, index: usize, mpidr: u64) -> Result<L4Vcpu, BackendError> {
        let dest = slot()?;
        let kick = Cap::<Factory>::from_index(caps::FACTORY)
            .create_irq(dest)
            .map_err(|e| kerr("cannot create a kick Irq", e))?;
        let cpu = self.cpus[index % self.cpus.len()];
        let irqs = self
            .routes
            .iter()
            .filter(|r| r.0 == index)
            .map(|&(_, irq, intid)| (irq, intid))
            .collect();
        Ok(L4Vcpu {
            vm: self.vm,
            index,
            irqs,
            cpu,
            mpidr,
            kick,
            attached: std::sync::Arc::new(AtomicBool::new(false)),
            area: None,
            thread: None,
            exited: [0; MAX_LRS],
            entered: [0; MAX_LRS],
            local: Box::default(),
            windows: self.windows.clone(),
        })
    }
}

/// One vCPU, run by its own uvmm thread.
pub struct L4Vcpu {
    vm: Cap<Vm>,
    index: usize,
    /// Passed-through interrupts it takes: the Irq and the guest's INTID.
    irqs: Vec<(Cap<Irq>, u32)>,
    cpu: u32,
    mpidr: u64,
    kick: Cap<Irq>,
    /// The kick Irq is attached (kicks before that are not needed: the
    /// first run takes everything pending anyway).
    attached: std::sync::Arc<AtomicBool>,
    /// The state area (a page of the UTCB area), once in vCPU mode.
    area: Option<usize>,
    thread: Option<Cap<Thread>>,
    /// The list registers as the last exit left them (the kernel's copy).
    exited: [u64; MAX_LRS],
    /// The list registers of the last entry, as uvmm filled them (a
    /// field, not a local array: zeroing one on every exit uses FP/SIMD,
    /// which costs a trap while the kernel keeps the guest's registers in
    /// the CPU).
    entered: [u64; MAX_LRS],
    /// The state until the thread is in vCPU mode (then: the state area).
    local: Box<VcpuState>,
    /// Guest RAM, mapped into the Vm on demand.
    windows: Arc<DemandRam>,
}

/// Triggers a vCPU's kick Irq.
struct Kick(Cap<Irq>, std::sync::Arc<AtomicBool>);

impl VcpuKick for Kick {
    fn kick(&self) {
        if self.1.load(Ordering::Acquire) {
            // A failing trigger means the vCPU is gone: nothing to kick.
            self.0.notify();
        }
    }
}

impl L4Vcpu {
    /// Makes the calling thread this vCPU: its CPU, the kick Irq, the
    /// state area, vCPU mode. The state area's address.
    fn enter_vcpu_mode(&mut self) -> Result<usize, BackendError> {
        if let Some(a) = self.area {
            return Ok(a);
        }
        let errno = |what: &str, e: i64| BackendError(format!("{what}: error {e}"));
        let me = Cap::<Thread>::from_index(
            l4re::env::thread_cap().map_err(|e| errno("no thread capability", e))?,
        );
        Cap::<Scheduler>::from_index(caps::SCHEDULER)
            .run_thread(me, VCPU_PRIO, 1 << self.cpu)
            .map_err(|e| kerr(&format!("cannot move to CPU {}", self.cpu), e))?;
        self.kick
            .attach(me, KICK_LABEL)
            .map_err(|e| kerr("cannot attach the kick Irq", e))?;
        self.attached.store(true, Ordering::Release);
        let page = l4re::env::utcb_page().map_err(|e| errno("no page for the state area", e))?;
        let area = page as usize;
        me.vcpu_control(page, self.vm)
            .map_err(|e| kerr("cannot enter vCPU mode", e))?;
        for &(irq, intid) in &self.irqs {
            irq.bind_vcpu(me, intid, PASSTHROUGH_PRIORITY)
                .map_err(|e| kerr(&format!("cannot bind INTID {intid} to the vCPU"), e))?;
            irq.unmask()
                .map_err(|e| kerr(&format!("cannot unmask INTID {intid}"), e))?;
        }
        uvmm::info!(
            "vmm",
            "vCPU {} runs on CPU {} (thread {:#x})",
            self.index,
            self.cpu,
            me.index()
        );
        self.thread = Some(me);
        self.area = Some(area);
        Ok(area)
    }

    /// Takes the kick Irq's messages, which are all a vCPU thread receives.
    fn drain_kicks(&self) {
        let t = Timeouts::new(Timeout::NEVER, Timeout::ZERO);
        while l4::ipc::wait_msg(t).is_ok() {}
    }
}

/// The vCPU's state: the state area once the thread is in vCPU mode
/// (`area`), else uvmm's own copy.
fn state_of(area: Option<usize>, local: &mut VcpuState) -> &mut VcpuState {
    match area {
        // SAFETY: the runtime reserved the state area's page of the UTCB
        // area for this vCPU alone; it is mapped read-write for the task's
        // life, and the kernel only reads and writes it during
        // `vcpu_resume`, which this thread makes in `run`, while no
        // reference from here is alive (each ends before the call).
        Some(a) => unsafe { &mut *(a as *mut VcpuState) },
        None => local,
    }
}

/// The list registers after an exit as the architecture leaves them: the
/// kernel clears the ones the guest emptied, uvmm wants their interrupt
/// number (state invalid) to know what was completed.
fn lrs_back(loaded: &[u64], lrs: &mut [u64]) {
    for (v, &l) in lrs.iter_mut().zip(loaded) {
        if *v == 0 && l != 0 {
            *v = l & !(3 << abi::lr::STATE_SHIFT);
        }
    }
}

impl L4Vcpu {
    /// Maps the block of guest RAM the exit's stage-2 abort is in unless
    /// another vCPU did: whether the abort was in RAM (the guest then
    /// retries the access; all RAM is mapped read-write-execute).
    fn map_on_demand(&mut self) -> Result<bool, BackendError> {
        let exit = state_of(self.area, &mut self.local).exit;
        if !matches!(exit.ec(), ec::DABT_LOWER | ec::IABT_LOWER) {
            return Ok(false);
        }
        let Some(block) = self.windows.take(exit.gpa) else {
            return Ok(false);
        };
        let Some(b) = block else {
            // Another vCPU mapped the block since this one's abort.
            return Ok(true);
        };
        // Fault every page of the block into uvmm (the runtime maps what
        // the dataspace gives, 2 MiB at once for moe's contiguous RAM):
        // what is not mapped in uvmm is not mapped into the Vm.
        for page in (b.local..b.local + b.size).step_by(4096) {
            // SAFETY: the page lies in RAM the runtime attached read-write
            // for good (`L4Host::ram`); reading a byte only maps it.
            unsafe { core::ptr::read_volatile(page as *const u8) };
        }
        map_local(self.vm, b.local, b.gpa, b.size, MemRights::RWX)?;
        Ok(true)
    }
}

impl VcpuBackend for L4Vcpu {
    fn state(&mut self) -> &mut VcpuState {
        state_of(self.area, &mut self.local)
    }

    fn run(&mut self) -> Result<RunExit, BackendError> {
        match self.resume()? {
            RunExit::Trap if self.map_on_demand()? => Ok(RunExit::Kicked),
            exit => Ok(exit),
        }
    }

    fn kicker(&self) -> Box<dyn VcpuKick> {
        Box::new(Kick(self.kick, self.attached.clone()))
    }

    fn counter(&self) -> (u64, u64) {
        counter()
    }
}

impl L4Vcpu {
    /// Runs the guest until an exit for uvmm.
    fn resume(&mut self) -> Result<RunExit, BackendError> {
        if self.area.is_none() {
            let area = self.enter_vcpu_mode()? as *mut VcpuState;
            // SAFETY: as in `state`; from here on uvmm works in the area.
            unsafe { area.write(*self.local) };
        }
        let thread = self
            .thread
            .ok_or_else(|| BackendError("no vCPU thread".into()))?;
        let vmpidr = self.mpidr | (1 << 31);
        let loaded = &mut self.entered;
        // The list registers the hardware has (the kernel's count; the
        // others stay zero).
        let st = state_of(self.area, &mut self.local);
        // uvmm's interrupts go through the list registers it fills.
        st.inject.count = 0;
        if st.vmpidr != vmpidr {
            st.vmpidr = vmpidr;
            st.unchanged &= !abi::unchanged::VMPIDR;
        }
        let n = (st.gic.lr_count as usize).clamp(MIN_LRS, MAX_LRS);
        // One pass, word by word (a slice comparison calls a bytewise
        // memcmp): what changed since the exit, what goes in.
        let (mut changed, mut any) = (0, 0);
        for ((l, &v), &e) in loaded[..n]
            .iter_mut()
            .zip(&st.gic.lr[..n])
            .zip(&self.exited[..n])
        {
            *l = v;
            changed |= v ^ e;
            any |= v;
        }
        if changed != 0 {
            st.unchanged &= !abi::unchanged::GIC;
        }
        // The kernel hands uvmm's own TPIDR_EL0 (its TLS) back with the
        // exit (ktest vm.vmm_thread_pointer_kept). The system call may read
        // and write all memory: the changes above are in the area before
        // it, and what the kernel wrote is read after it.
        let r = thread.vcpu_resume();
        let st = state_of(self.area, &mut self.local);
        let (reason, info) = (st.exit.reason, st.exit.info);
        if r.is_ok() {
            // Until uvmm changes them, the parts stay as the exit left them.
            st.unchanged = abi::unchanged::ALL;
        }
        for (e, &v) in self.exited[..n].iter_mut().zip(&st.gic.lr[..n]) {
            *e = v;
        }
        if any != 0 {
            lrs_back(&loaded[..n], &mut st.gic.lr[..n]);
        }
        match r {
            Ok(ExitReason::Kick | ExitReason::None) => {
                self.drain_kicks();
                Ok(RunExit::Kicked)
            }
            Ok(ExitReason::BadState) | Err(Error::Inval)
                if reason == ExitReason::BadState as u64 =>
            {
                Err(BackendError(format!(
                    "the kernel refused the vCPU state (code {info:#x})"
                )))
            }
            Ok(_) => Ok(RunExit::Trap),
            Err(e) => Err(kerr("vcpu_resume", e)),
        }
    }
}

/// The virtual counter and its frequency.
fn counter() -> (u64, u64) {
    let (now, freq): (u64, u64);
    // SAFETY: reading the virtual counter and its frequency, which EL0
    // may do (the kernel sets CNTKCTL_EL1.EL0VCTEN), has no effects.
    unsafe {
        core::arch::asm!("mrs {}, cntvct_el0", out(reg) now, options(nomem, nostack));
        core::arch::asm!("mrs {}, cntfrq_el0", out(reg) freq, options(nomem, nostack));
    }
    (now, freq)
}

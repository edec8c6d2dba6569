//! The kernel backend: uvmm's [`VmBackend`] and [`VcpuBackend`] on the
//! kernel's Vm object and vCPU threads (`l4::vm`, `l4_abi::vcpu`).
//!
//! * The Vm is created through the task's factory; guest RAM, attached
//!   into uvmm's address space by the runtime, is mapped into it from
//!   uvmm's own task in pieces of up to 2 MiB.
//! * Each vCPU is a uvmm thread in vCPU mode: on its first run it moves
//!   itself to its CPU, takes a page of the UTCB area as its state area,
//!   attaches its kick Irq to itself and enters vCPU mode; every run copies
//!   uvmm's [`VcpuState`] into the state area, resumes the guest and copies
//!   the guest's state and the exit back.
//! * The kernel handles WFI, the virtual timer and its own injections; an
//!   exit it does not handle comes back as [`RunExit::Trap`]. A kick
//!   triggers the vCPU's Irq, which sends the guest out with `Kick`.

use std::sync::atomic::{AtomicBool, Ordering};

use l4::abi::vcpu::{self as abi, ExitReason};
use l4::abi::{Error, MemRights, Timeout, Timeouts};
use l4::cap::{Factory, Irq, Scheduler, Task, Thread, Vm};
use l4::{Cap, SlotAlloc};
use l4re::env::{FIRST_PROGRAM_CAP, PROGRAM_PRIO, caps};
use uvmm::backend::{
    BackendError, GicInfo, MAX_LRS, RunExit, VcpuBackend, VcpuKick, VcpuState, VmBackend,
};
use uvmm::memory::map_order;

/// Capability slots uvmm allocates (the Vm, the kick Irqs, the virtio
/// proxies' Irqs).
pub(crate) static SLOTS: SlotAlloc<2> = SlotAlloc::new(FIRST_PROGRAM_CAP);

/// List registers every GICv3 implementation uvmm runs on has; the kernel
/// reports the real count once a vCPU ran, and uvmm never needs more.
const MIN_LRS: usize = 4;
/// The label of a vCPU's kick Irq.
const KICK_LABEL: u64 = 0x6b69_636b;

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

/// The kernel's Vm object of this uvmm.
pub struct L4Vm {
    vm: Cap<Vm>,
    rams: Vec<AttachedRam>,
    /// The CPUs the scheduler offers, in order (vCPU i runs on the i-th).
    cpus: Vec<u32>,
}

impl L4Vm {
    /// Creates the Vm; `rams` are the attached RAM dataspaces, `online`
    /// the scheduler's CPU mask.
    pub fn new(rams: Vec<AttachedRam>, online: u64) -> Result<L4Vm, BackendError> {
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
        })
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
        let me = Cap::<Task>::from_index(caps::THIS_TASK);
        let mut off = 0;
        while off < size {
            let local = ram.local + ds_offset + off;
            let order = map_order(local, gpa + off, size - off);
            self.vm
                .as_task()
                .map_mem(me, local, order, MemRights::RWX, gpa + off)
                .map_err(|e| kerr(&format!("mapping guest RAM at {:#x}", gpa + off), e))?;
            off += 1 << order;
        }
        Ok(())
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
        Ok(L4Vcpu {
            vm: self.vm,
            cpu,
            mpidr,
            kick,
            attached: std::sync::Arc::new(AtomicBool::new(false)),
            area: None,
            thread: None,
            loaded: [0; MAX_LRS],
        })
    }
}

/// One vCPU, run by its own uvmm thread.
pub struct L4Vcpu {
    vm: Cap<Vm>,
    cpu: u32,
    mpidr: u64,
    kick: Cap<Irq>,
    /// The kick Irq is attached (kicks before that are not needed: the
    /// first run takes everything pending anyway).
    attached: std::sync::Arc<AtomicBool>,
    /// The state area (a page of the UTCB area), once in vCPU mode.
    area: Option<usize>,
    thread: Option<Cap<Thread>>,
    /// The list registers of the last entry.
    loaded: [u64; MAX_LRS],
}

/// Triggers a vCPU's kick Irq.
struct Kick(Cap<Irq>, std::sync::Arc<AtomicBool>);

impl VcpuKick for Kick {
    fn kick(&self) {
        if self.1.load(Ordering::Acquire) {
            // A failing trigger means the vCPU is gone: nothing to kick.
            let _ = self.0.trigger();
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
            .run_thread(me, PROGRAM_PRIO, 1 << self.cpu)
            .map_err(|e| kerr(&format!("cannot move to CPU {}", self.cpu), e))?;
        self.kick
            .attach(me, KICK_LABEL)
            .map_err(|e| kerr("cannot attach the kick Irq", e))?;
        self.attached.store(true, Ordering::Release);
        let page = l4re::env::utcb_page().map_err(|e| errno("no page for the state area", e))?;
        let area = page as usize;
        me.vcpu_control(page, self.vm)
            .map_err(|e| kerr("cannot enter vCPU mode", e))?;
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

/// The list registers after an exit as the architecture leaves them: the
/// kernel clears the ones the guest emptied, uvmm wants their interrupt
/// number (state invalid) to know what was completed.
fn lrs_back(loaded: &[u64; MAX_LRS], lrs: &mut [u64; MAX_LRS]) {
    for (v, &l) in lrs.iter_mut().zip(loaded) {
        if *v == 0 && l != 0 {
            *v = l & !(3 << abi::lr::STATE_SHIFT);
        }
    }
}

impl VcpuBackend for L4Vcpu {
    fn run(&mut self, st: &mut VcpuState) -> Result<RunExit, BackendError> {
        let area = self.enter_vcpu_mode()? as *mut VcpuState;
        let thread = self
            .thread
            .ok_or_else(|| BackendError("no vCPU thread".into()))?;
        // uvmm's interrupts go through the list registers it fills.
        st.inject.count = 0;
        st.vmpidr = self.mpidr | (1 << 31);
        self.loaded = st.gic.lr;
        // SAFETY: the runtime reserved the state area's page of the UTCB
        // area for this vCPU alone; it is mapped read-write for the task's
        // life, and the kernel only reads and writes it during
        // `vcpu_resume`, which this thread makes.
        unsafe { core::ptr::write_volatile(area, *st) };
        // The kernel hands uvmm's own TPIDR_EL0 (its TLS) back with the
        // exit (ktest vm.vmm_thread_pointer_kept).
        let r = thread.vcpu_resume();
        // SAFETY: as above; `vcpu_resume` has returned.
        *st = unsafe { core::ptr::read_volatile(area) };
        lrs_back(&self.loaded, &mut st.gic.lr);
        let a = &*st;
        match r {
            Ok(ExitReason::Kick | ExitReason::None) => {
                self.drain_kicks();
                Ok(RunExit::Kicked)
            }
            Ok(ExitReason::BadState) | Err(Error::Inval)
                if a.exit.reason == ExitReason::BadState as u64 =>
            {
                Err(BackendError(format!(
                    "the kernel refused the vCPU state (code {:#x})",
                    a.exit.info
                )))
            }
            Ok(_) => Ok(RunExit::Trap),
            Err(e) => Err(kerr("vcpu_resume", e)),
        }
    }

    fn kicker(&self) -> Box<dyn VcpuKick> {
        Box::new(Kick(self.kick, self.attached.clone()))
    }

    fn counter(&self) -> (u64, u64) {
        let (now, freq): (u64, u64);
        // SAFETY: reading the virtual counter and its frequency, which EL0
        // may do (the kernel sets CNTKCTL_EL1.EL0VCTEN), has no effects.
        unsafe {
            core::arch::asm!("mrs {}, cntvct_el0", out(reg) now, options(nomem, nostack));
            core::arch::asm!("mrs {}, cntfrq_el0", out(reg) freq, options(nomem, nostack));
        }
        (now, freq)
    }
}

//! Handling vCPU exits and running the vCPUs.
//!
//! [`Vm::handle_exit`] turns one exit into register changes and an
//! [`Action`]: MMIO over the [`MmioBus`], HVC/SMC to [`Psci`], the SGI
//! register to the [`Gic`], WFI, and everything else by the fault mode.
//! [`Vm::run_vcpu`] is a vCPU thread's loop around a [`VcpuBackend`].

use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::backend::{
    El1Regs, GuestRegs, ICC_ASGI1R_EL1, ICC_SGI0R_EL1, ICC_SGI1R_EL1, Mmio, RunExit, SysRegAccess,
    VcpuBackend, VcpuState, constant_register, ec, sysreg_name, timer_remaining,
};
use crate::bus::{MmioBus, lock};
use crate::devices::gic::Gic;
use crate::loader::{BOOT_PSTATE, BootState};
use crate::memory::GuestMemory;
use crate::options::FaultMode;
use crate::psci::{Power, PowerAction, Psci};
use crate::{trace, warn};

/// The virtual timer's PPI (CNTV, INTID 27).
pub const VTIMER_INTID: u32 = 27;
/// The exit code of a fatal guest error.
pub const EXIT_FATAL: u8 = 1;
/// [`Vm`]'s `stop` while the VM runs (beyond every exit code).
const RUNNING: u16 = u16::MAX;
/// How long a vCPU in WFI sleeps before it looks again (a stop request).
const WFI_POLL: Duration = Duration::from_millis(50);

/// What the vCPU thread does after an exit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Enter the guest again.
    Resume,
    /// Wait until an interrupt is pending for this vCPU (WFI, standby).
    WaitForInterrupt,
    /// The vCPU is off (CPU_OFF): wait for a CPU_ON.
    Off,
    /// Wait for an interrupt, then start at `entry` with `x0` = `context`.
    Suspend {
        /// The resume address.
        entry: u64,
        /// Its `x0`.
        context: u64,
    },
    /// The VM ends with this exit code (SYSTEM_OFF 0, SYSTEM_RESET 102).
    Exit(u8),
    /// The guest did something uvmm cannot continue from.
    Fatal(String),
}

/// The VM: memory, devices, interrupt controller, power state.
pub struct Vm {
    /// Guest RAM.
    pub mem: GuestMemory,
    /// The emulated devices' windows.
    pub bus: MmioBus,
    /// The interrupt controller.
    pub gic: Arc<Gic>,
    /// What happens on accesses nobody handles.
    pub fault_mode: FaultMode,
    psci: Mutex<Psci>,
    /// The vCPUs' affinities (their `VMPIDR`).
    mpidrs: Vec<u64>,
    power_changed: Condvar,
    /// Set when the VM ends: the exit code ([`RUNNING`] before); an atomic,
    /// since every exit of every vCPU looks at it.
    stop: AtomicU16,
    /// Per vCPU: the monitor wants its registers at its next exit.
    regs_wanted: Vec<AtomicBool>,
    /// Per vCPU: its registers as that exit left them.
    regs_taken: Mutex<Vec<Option<VcpuRegs>>>,
    regs_ready: Condvar,
}

/// A vCPU's registers as an exit left them (for the monitor).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VcpuRegs {
    pub regs: GuestRegs,
    pub el1: El1Regs,
}

/// Why [`Vm::vcpu_regs`] has no registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegsError {
    /// No such vCPU.
    NoVcpu,
    /// The vCPU is not on.
    Off,
    /// It did not come out of the guest in time.
    Timeout,
}

impl std::fmt::Display for RegsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RegsError::NoVcpu => "no such vCPU",
            RegsError::Off => "the vCPU is not on",
            RegsError::Timeout => "the vCPU did not come out of the guest in time",
        })
    }
}

/// `ESR_EL1` of a synchronous external data abort (or instruction abort
/// when `fetch`), taken from EL0 (`lower`) or EL1.
fn abort_esr(lower: bool, fetch: bool, write: bool) -> u64 {
    let class = match (fetch, lower) {
        (true, true) => 0x20,
        (true, false) => 0x21,
        (false, true) => 0x24,
        (false, false) => 0x25,
    };
    (class << 26) | crate::backend::ESR_IL | (u64::from(write && !fetch) << 6) | 0x10
}

/// Takes an exception to the guest's EL1 with syndrome `esr` (and `far`
/// for aborts): the vector of the current EL with SP_EL1, or of a lower
/// EL, as the architecture does.
pub fn inject_exception(st: &mut VcpuState, esr: u64, far: Option<u64>) {
    let mode = st.regs.pstate & 0xf;
    let offset = match mode {
        0 => 0x400,      // from EL0 (AArch64)
        0b0101 => 0x200, // EL1h
        _ => 0x000,      // EL1t
    };
    st.unchanged &= !crate::backend::unchanged::EL1;
    st.regs.elr_el1 = st.regs.pc;
    st.regs.spsr_el1 = st.regs.pstate;
    st.el1.esr = esr;
    if let Some(f) = far {
        st.el1.far = f;
    }
    st.regs.pc = st.el1.vbar + offset;
    st.regs.pstate = BOOT_PSTATE;
}

impl Vm {
    /// A VM of vCPUs with these affinities (vCPU 0 boots).
    pub fn new(
        mem: GuestMemory,
        bus: MmioBus,
        gic: Arc<Gic>,
        mpidrs: &[u64],
        fault_mode: FaultMode,
    ) -> Vm {
        Vm {
            mem,
            bus,
            gic,
            fault_mode,
            psci: Mutex::new(Psci::new(mpidrs)),
            mpidrs: mpidrs.to_vec(),
            power_changed: Condvar::new(),
            stop: AtomicU16::new(RUNNING),
            regs_wanted: mpidrs.iter().map(|_| AtomicBool::new(false)).collect(),
            regs_taken: Mutex::new(vec![None; mpidrs.len()]),
            regs_ready: Condvar::new(),
        }
    }

    /// vCPU `cpu`'s registers at its next exit (it is kicked out of the
    /// guest for it), waiting at most `timeout`.
    pub fn vcpu_regs(&self, cpu: usize, timeout: Duration) -> Result<VcpuRegs, RegsError> {
        let wanted = self.regs_wanted.get(cpu).ok_or(RegsError::NoVcpu)?;
        if self.power(cpu) != Some(Power::On) {
            return Err(RegsError::Off);
        }
        let mut taken = lock(&self.regs_taken);
        taken[cpu] = None;
        wanted.store(true, Ordering::Release);
        let deadline = std::time::Instant::now() + timeout;
        let got = loop {
            if let Some(r) = taken[cpu].take() {
                break Ok(r);
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                break Err(RegsError::Timeout);
            }
            // Kicked again now and then: a kick that found the vCPU
            // thread outside the guest (waiting for an interrupt in uvmm)
            // is gone by the time it enters the guest again.
            self.gic.kick(cpu);
            taken = self
                .regs_ready
                .wait_timeout(taken, (deadline - now).min(WFI_POLL))
                .map_or_else(|e| e.into_inner().0, |(g, _)| g);
        };
        wanted.store(false, Ordering::Release);
        got
    }

    /// On an exit of vCPU `cpu` (state `st`): hands its registers to the
    /// monitor if it asked for them (one atomic load otherwise).
    pub fn note_exit(&self, cpu: usize, st: &VcpuState) {
        if self
            .regs_wanted
            .get(cpu)
            .is_some_and(|w| w.load(Ordering::Acquire) && w.swap(false, Ordering::AcqRel))
        {
            lock(&self.regs_taken)[cpu] = Some(VcpuRegs {
                regs: st.regs,
                el1: st.el1,
            });
            self.regs_ready.notify_all();
        }
    }

    /// The exit code once the VM has ended.
    pub fn stopped(&self) -> Option<u8> {
        u8::try_from(self.stop.load(Ordering::Acquire)).ok()
    }

    /// Ends the VM (first caller's code wins) and wakes every waiting vCPU.
    pub fn request_stop(&self, code: u8) {
        let _ = self.stop.compare_exchange(
            RUNNING,
            u16::from(code),
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        self.power_changed.notify_all();
        self.gic.kick_all();
    }

    /// vCPU `cpu`'s power state.
    pub fn power(&self, cpu: usize) -> Option<Power> {
        lock(&self.psci).power(cpu)
    }

    /// The vCPUs' affinities (their `VMPIDR`), in vCPU order.
    pub fn mpidrs(&self) -> &[u64] {
        &self.mpidrs
    }

    fn unhandled(
        &self,
        st: &mut VcpuState,
        what: String,
        inject: impl FnOnce(&mut VcpuState),
    ) -> Action {
        match self.fault_mode {
            FaultMode::Ignore => {
                warn!("guest", "ignored: {what} at pc {:#x}", st.regs.pc);
                st.regs.skip_instruction();
                Action::Resume
            }
            FaultMode::Halt => Action::Fatal(format!("{what} at pc {:#x}", st.regs.pc)),
            FaultMode::Inject => {
                warn!(
                    "guest",
                    "injecting an exception: {what} at pc {:#x}", st.regs.pc
                );
                inject(st);
                Action::Resume
            }
        }
    }

    fn mmio(&self, st: &mut VcpuState, gpa: u64, a: Mmio) -> Action {
        let done = if a.write {
            let v = a.write_value(st.regs.reg(a.reg));
            trace!("mmio", "write {gpa:#x} size {} = {v:#x}", a.size);
            self.bus.write(gpa, a.size, v).is_some()
        } else {
            match self.bus.read(gpa, a.size) {
                Some(v) => {
                    trace!("mmio", "read {gpa:#x} size {} -> {v:#x}", a.size);
                    st.regs.set_reg(a.reg, a.read_value(v));
                    true
                }
                None => false,
            }
        };
        if done {
            st.regs.skip_instruction();
            return Action::Resume;
        }
        let what = format!(
            "{} of {} bytes at {gpa:#x}, no device there",
            if a.write { "write" } else { "read" },
            a.size,
        );
        if !a.write && self.fault_mode == FaultMode::Ignore {
            st.regs.set_reg(a.reg, 0);
        }
        let lower = st.regs.pstate & 0xf == 0;
        let far = st.exit.far;
        self.unhandled(st, what, |st| {
            inject_exception(st, abort_esr(lower, false, a.write), Some(far))
        })
    }

    fn call(&self, cpu: usize, st: &mut VcpuState) -> Action {
        let x = [st.regs.x[0], st.regs.x[1], st.regs.x[2], st.regs.x[3]];
        let mem = &self.mem;
        let outcome = lock(&self.psci).call(cpu, x, |a| mem.region_of(a, 4).is_ok());
        if let Some(v) = outcome.x0 {
            st.regs.x[0] = v;
        }
        match outcome.action {
            PowerAction::Resume => Action::Resume,
            PowerAction::Start(t) => {
                self.power_changed.notify_all();
                trace!("psci", "vCPU {cpu} starts vCPU {t}");
                Action::Resume
            }
            PowerAction::Off => Action::Off,
            PowerAction::Standby => Action::WaitForInterrupt,
            PowerAction::Suspend { entry, context } => Action::Suspend { entry, context },
            PowerAction::Exit(code) => Action::Exit(code),
        }
    }

    fn sysreg(&self, cpu: usize, st: &mut VcpuState, s: SysRegAccess) -> Action {
        let sgi = [ICC_SGI1R_EL1, ICC_ASGI1R_EL1, ICC_SGI0R_EL1];
        if !s.read && sgi.contains(&s.encoding) {
            self.gic.send_sgi(cpu, st.regs.reg(s.reg));
            st.regs.skip_instruction();
            return Action::Resume;
        }
        // At EL0 (mode 0) these are undefined, as a kernel that keeps the
        // debug channel from EL0 makes them.
        if let Some(v) = constant_register(s.encoding)
            && st.regs.pstate & 0xf != 0
        {
            if s.read {
                st.regs.set_reg(s.reg, v);
            }
            st.regs.skip_instruction();
            return Action::Resume;
        }
        if s.read && self.fault_mode == FaultMode::Ignore {
            st.regs.set_reg(s.reg, 0);
        }
        let what = format!(
            "{} of system register {}",
            if s.read { "read" } else { "write" },
            sysreg_name(s.encoding)
        );
        self.unhandled(st, what, |st| {
            inject_exception(st, crate::backend::ESR_IL, None)
        })
    }

    /// An abort uvmm cannot emulate: no syndrome, or an instruction fetch
    /// outside RAM.
    fn abort(&self, st: &mut VcpuState, fetch: bool) -> Action {
        let lower = st.regs.pstate & 0xf == 0;
        let (gpa, far) = (st.exit.gpa, st.exit.far);
        let what = format!(
            "{} at {gpa:#x} outside RAM that uvmm cannot emulate",
            if fetch {
                "instruction fetch"
            } else {
                "access without syndrome"
            }
        );
        if fetch {
            // Skipping an instruction that was never fetched helps nobody.
            return match self.fault_mode {
                FaultMode::Inject => {
                    inject_exception(st, abort_esr(lower, true, false), Some(far));
                    Action::Resume
                }
                _ => Action::Fatal(what),
            };
        }
        self.unhandled(st, what, |st| {
            inject_exception(st, abort_esr(lower, false, false), Some(far))
        })
    }

    /// Handles the exit in `st` of vCPU `cpu` (its syndrome decides, as
    /// [`l4_abi::vcpu::Exit`] decodes it).
    pub fn handle_exit(&self, cpu: usize, st: &mut VcpuState) -> Action {
        let exit = st.exit;
        match exit.ec() {
            ec::DABT_LOWER => match exit.mmio() {
                Some(a) => self.mmio(st, exit.gpa, a),
                None => self.abort(st, false),
            },
            ec::IABT_LOWER => self.abort(st, true),
            // HVC returns to the next instruction already.
            ec::HVC64 => self.call(cpu, st),
            ec::SMC64 => {
                st.regs.skip_instruction();
                self.call(cpu, st)
            }
            ec::SYSREG => match exit.sysreg() {
                Some(s) => self.sysreg(cpu, st, s),
                None => Action::Fatal("undecodable system register access".into()),
            },
            ec::WFX => {
                st.regs.skip_instruction();
                let wfe = exit.esr & 1 != 0;
                if wfe || self.gic.has_pending(cpu) {
                    Action::Resume
                } else {
                    Action::WaitForInterrupt
                }
            }
            class => {
                let what = format!("exception class {class:#x}");
                self.unhandled(st, what, |st| {
                    inject_exception(st, crate::backend::ESR_IL, None)
                })
            }
        }
    }

    /// Waits until vCPU `cpu` is started (CPU_ON) or the VM ends; the
    /// start state.
    fn wait_power_on(&self, cpu: usize) -> Option<BootState> {
        let mut p = lock(&self.psci);
        loop {
            if self.stopped().is_some() {
                return None;
            }
            if let Some((entry, context)) = p.started(cpu) {
                return Some(BootState {
                    pc: entry,
                    x: [context, 0, 0, 0],
                    pstate: BOOT_PSTATE,
                });
            }
            p = self
                .power_changed
                .wait_timeout(p, WFI_POLL)
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }

    /// Sleeps until vCPU `cpu` has an interrupt, its virtual timer fires
    /// (then PPI 27 becomes pending) or the VM ends.
    fn wait_interrupt<B: VcpuBackend>(&self, cpu: usize, vcpu: &mut B) {
        let t = vcpu.state().timer;
        while self.stopped().is_none() {
            let (now, freq) = vcpu.counter();
            let timer = timer_remaining(&t, now, freq);
            if timer == Some(Duration::ZERO) {
                self.gic.set_pending(cpu, VTIMER_INTID);
                return;
            }
            let wait = timer.map_or(WFI_POLL, |t| t.min(WFI_POLL));
            if self.gic.wait_for_interrupt(cpu, wait) {
                return;
            }
        }
    }

    /// Runs vCPU `cpu` until the VM ends; vCPU 0 starts from `boot`, the
    /// others when the guest starts them. The VM's exit code.
    pub fn run_vcpu<B: VcpuBackend>(
        &self,
        cpu: usize,
        vcpu: &mut B,
        boot: Option<BootState>,
        lrs: usize,
    ) -> u8 {
        let lrs = lrs.min(crate::backend::MAX_LRS);
        let mut start = boot;
        // The vCPU was on at the last look: only its own CPU_OFF turns it
        // off, and every action but a plain resume looks again.
        let mut on = false;
        loop {
            if let Some(code) = self.stopped() {
                return code;
            }
            // A vCPU that is not on waits for its CPU_ON (or the VM's end)
            // first.
            if start.is_none() && !on {
                if self.power(cpu) == Some(Power::On) {
                    on = true;
                } else {
                    start = self.wait_power_on(cpu);
                    if start.is_none() {
                        continue;
                    }
                }
            }
            if let Some(b) = start.take() {
                let mpidr = self.mpidrs.get(cpu).copied().unwrap_or(0);
                trace!("vmm", "vCPU {cpu} starts at {:#x}", b.pc);
                let st = vcpu.state();
                *st = VcpuState::boot(b.pc, b.x[0], mpidr);
                st.regs.pstate = b.pstate;
                st.regs.x[..4].copy_from_slice(&b.x);
            }
            self.gic.fill_lrs(cpu, &mut vcpu.state().gic.lr[..lrs]);
            let exit = vcpu.run();
            let st = vcpu.state();
            self.note_exit(cpu, st);
            self.gic.sync_lrs(cpu, &mut st.gic.lr[..lrs]);
            let action = match exit {
                Err(e) => Action::Fatal(format!("the kernel refused to run vCPU {cpu}: {e}")),
                Ok(RunExit::Kicked) => Action::Resume,
                Ok(RunExit::VirtualTimer) => {
                    self.gic.set_pending(cpu, VTIMER_INTID);
                    Action::Resume
                }
                Ok(RunExit::Trap) => self.handle_exit(cpu, st),
            };
            if action != Action::Resume {
                on = false;
            }
            match action {
                Action::Resume => {}
                Action::WaitForInterrupt => self.wait_interrupt(cpu, vcpu),
                Action::Off => {}
                Action::Suspend { entry, context } => {
                    self.wait_interrupt(cpu, vcpu);
                    start = Some(BootState {
                        pc: entry,
                        x: [context, 0, 0, 0],
                        pstate: BOOT_PSTATE,
                    });
                }
                Action::Exit(code) => self.request_stop(code),
                Action::Fatal(why) => {
                    crate::log::line(format_args!(
                        "VMM: vCPU {cpu}: {why}\nVM entered a fatal state. Halting."
                    ));
                    self.request_stop(EXIT_FATAL);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;

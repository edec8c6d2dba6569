//! Handling vCPU exits and running the vCPUs.
//!
//! [`Vm::handle_exit`] turns one exit into register changes and an
//! [`Action`]: MMIO over the [`MmioBus`], HVC/SMC to [`Psci`], the SGI
//! register to the [`Gic`], WFI, and everything else by the fault mode.
//! [`Vm::run_vcpu`] is a vCPU thread's loop around a [`VcpuBackend`].

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::backend::{Exit, MmioAccess, RunExit, SysReg, SysRegAccess, VcpuBackend, VcpuState};
use crate::bus::{MmioBus, lock, size_mask};
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
    power_changed: Condvar,
    /// Set when the VM ends: the exit code.
    stop: Mutex<Option<u8>>,
}

/// An MMIO load's value as the register gets it.
fn extend(value: u64, a: &MmioAccess) -> u64 {
    let bits = u32::from(a.size) * 8;
    let v = if a.sign_extend && bits < 64 {
        let shift = 64 - bits;
        (((value << shift) as i64) >> shift) as u64
    } else {
        value
    };
    if a.sixty_four { v } else { v & 0xffff_ffff }
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
    let mode = st.pstate & 0xf;
    let offset = match mode {
        0 => 0x400,      // from EL0 (AArch64)
        0b0101 => 0x200, // EL1h
        _ => 0x000,      // EL1t
    };
    st.el1.elr = st.pc;
    st.el1.spsr = st.pstate;
    st.el1.esr = esr;
    if let Some(f) = far {
        st.el1.far = f;
    }
    st.pc = st.el1.vbar + offset;
    st.pstate = BOOT_PSTATE;
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
            power_changed: Condvar::new(),
            stop: Mutex::new(None),
        }
    }

    /// The exit code once the VM has ended.
    pub fn stopped(&self) -> Option<u8> {
        *lock(&self.stop)
    }

    /// Ends the VM (first caller's code wins) and wakes every waiting vCPU.
    pub fn request_stop(&self, code: u8) {
        lock(&self.stop).get_or_insert(code);
        self.power_changed.notify_all();
        self.gic.kick_all();
    }

    /// vCPU `cpu`'s power state.
    pub fn power(&self, cpu: usize) -> Option<Power> {
        lock(&self.psci).power(cpu)
    }

    fn unhandled(
        &self,
        st: &mut VcpuState,
        what: String,
        inject: impl FnOnce(&mut VcpuState),
    ) -> Action {
        match self.fault_mode {
            FaultMode::Ignore => {
                warn!("guest", "ignored: {what} at pc {:#x}", st.pc);
                st.pc += st.trap.insn_len();
                Action::Resume
            }
            FaultMode::Halt => Action::Fatal(format!("{what} at pc {:#x}", st.pc)),
            FaultMode::Inject => {
                warn!("guest", "injecting an exception: {what} at pc {:#x}", st.pc);
                inject(st);
                Action::Resume
            }
        }
    }

    fn mmio(&self, st: &mut VcpuState, a: MmioAccess) -> Action {
        let done = if a.write {
            let v = st.reg(a.reg) & size_mask(a.size);
            trace!("mmio", "write {:#x} size {} = {v:#x}", a.gpa, a.size);
            self.bus.write(a.gpa, a.size, v).is_some()
        } else {
            match self.bus.read(a.gpa, a.size) {
                Some(v) => {
                    trace!("mmio", "read {:#x} size {} -> {v:#x}", a.gpa, a.size);
                    st.set_reg(a.reg, extend(v, &a));
                    true
                }
                None => false,
            }
        };
        if done {
            st.pc += st.trap.insn_len();
            return Action::Resume;
        }
        let what = format!(
            "{} of {} bytes at {:#x}, no device there",
            if a.write { "write" } else { "read" },
            a.size,
            a.gpa
        );
        if !a.write && self.fault_mode == FaultMode::Ignore {
            st.set_reg(a.reg, 0);
        }
        let lower = st.pstate & 0xf == 0;
        let far = st.trap.far;
        self.unhandled(st, what, |st| {
            inject_exception(st, abort_esr(lower, false, a.write), Some(far))
        })
    }

    fn call(&self, cpu: usize, st: &mut VcpuState) -> Action {
        let x = [st.x[0], st.x[1], st.x[2], st.x[3]];
        let mem = &self.mem;
        let outcome = lock(&self.psci).call(cpu, x, |a| mem.region_of(a, 4).is_ok());
        if let Some(v) = outcome.x0 {
            st.x[0] = v;
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
        let sgi = [
            SysReg::ICC_SGI1R_EL1,
            SysReg::ICC_ASGI1R_EL1,
            SysReg::ICC_SGI0R_EL1,
        ];
        if s.write && sgi.contains(&s.reg) {
            self.gic.send_sgi(cpu, st.reg(s.rt));
            st.pc += st.trap.insn_len();
            return Action::Resume;
        }
        if !s.write && self.fault_mode == FaultMode::Ignore {
            st.set_reg(s.rt, 0);
        }
        let what = format!(
            "{} of system register {}",
            if s.write { "write" } else { "read" },
            s.reg
        );
        self.unhandled(st, what, |st| {
            inject_exception(st, crate::backend::ESR_IL, None)
        })
    }

    /// Handles the trap in `st` of vCPU `cpu`.
    pub fn handle_exit(&self, cpu: usize, st: &mut VcpuState) -> Action {
        match st.trap.decode() {
            Exit::Mmio(a) => self.mmio(st, a),
            Exit::Abort { gpa, fetch } => {
                let lower = st.pstate & 0xf == 0;
                let far = st.trap.far;
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
            // HVC returns to the next instruction already.
            Exit::Hvc(_) => self.call(cpu, st),
            Exit::Smc(_) => {
                st.pc += st.trap.insn_len();
                self.call(cpu, st)
            }
            Exit::SysReg(s) => self.sysreg(cpu, st, s),
            Exit::Wfx { wfe } => {
                st.pc += st.trap.insn_len();
                if wfe || self.gic.has_pending(cpu) {
                    Action::Resume
                } else {
                    Action::WaitForInterrupt
                }
            }
            Exit::Unknown { ec } => {
                let what = format!("exception class {ec:#x}");
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
    fn wait_interrupt<B: VcpuBackend>(&self, cpu: usize, st: &VcpuState, vcpu: &B) {
        while self.stopped().is_none() {
            let (now, freq) = vcpu.counter();
            let timer = st.vtimer.remaining(now, freq);
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
        let mut st = VcpuState::default();
        let mut start = boot;
        loop {
            if let Some(code) = self.stopped() {
                return code;
            }
            if let Some(b) = start.take().or_else(|| {
                (self.power(cpu) != Some(Power::On))
                    .then(|| self.wait_power_on(cpu))
                    .flatten()
            }) {
                st = VcpuState {
                    pc: b.pc,
                    pstate: b.pstate,
                    ..VcpuState::default()
                };
                st.x[..4].copy_from_slice(&b.x);
            }
            if self.power(cpu) != Some(Power::On) {
                continue;
            }
            self.gic.fill_lrs(cpu, &mut st.lrs[..lrs]);
            let exit = vcpu.run(&mut st);
            self.gic.sync_lrs(cpu, &mut st.lrs[..lrs]);
            let action = match exit {
                Err(e) => Action::Fatal(format!("the kernel refused to run vCPU {cpu}: {e}")),
                Ok(RunExit::Kicked) => Action::Resume,
                Ok(RunExit::VirtualTimer) => {
                    self.gic.set_pending(cpu, VTIMER_INTID);
                    Action::Resume
                }
                Ok(RunExit::Trap) => self.handle_exit(cpu, &mut st),
            };
            match action {
                Action::Resume => {}
                Action::WaitForInterrupt => self.wait_interrupt(cpu, &st, vcpu),
                Action::Off => {}
                Action::Suspend { entry, context } => {
                    self.wait_interrupt(cpu, &st, vcpu);
                    start = Some(BootState {
                        pc: entry,
                        x: [context, 0, 0, 0],
                        pstate: BOOT_PSTATE,
                    });
                }
                Action::Exit(code) => self.request_stop(code),
                Action::Fatal(why) => {
                    eprintln!("VMM: vCPU {cpu}: {why}");
                    eprintln!("VM entered a fatal state. Halting.");
                    self.request_stop(EXIT_FATAL);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;

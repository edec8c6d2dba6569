//! The virtual GICv3: a distributor and one redistributor per vCPU,
//! emulated; the CPU interface is the hardware's virtual one, fed through
//! the list registers (see [`crate::backend`]).
//!
//! [`Gic`] owns the interrupt state ([`state::GicState`]) behind one lock.
//! Devices raise interrupts through its [`IrqSink`]; vCPU threads fill and
//! take back their list registers ([`Gic::fill_lrs`], [`Gic::sync_lrs`]),
//! send SGIs ([`Gic::send_sgi`], from `ICC_SGI1R_EL1` traps) and wait in
//! WFI ([`Gic::wait_for_interrupt`]). When an interrupt becomes pending
//! for a vCPU, that vCPU is kicked so it leaves the guest and picks it up.
//!
//! The cost of an injection does not grow with the number of interrupts:
//! each vCPU has a set ([`irqset::IrqSet`]) of the interrupts that may be
//! pending or active for it, which a fill walks; a take-back looks only at
//! what the fill put into the list registers; an exit with nothing in
//! them, after no change, takes no lock at all.
//!
//! Interrupts of passed-through devices ([`Gic::set_hw_irq`]) are injected
//! by the kernel; their line stays masked from the moment it fired until
//! the guest completed the interrupt. uvmm sees that in the list
//! registers an exit brings back: an interrupt of such a line found there
//! that is afterwards neither pending nor active was completed, and its
//! line is unmasked ([`crate::backend::IrqEoi`]).
//!
//! The guest-visible part is [`Distributor`] (the `GICD_*` frame) and
//! [`Redistributors`] (`GICR_*`: an RD and an SGI frame, 128 KiB, per
//! vCPU, the last one marked `Last`). One security state (`GICD_CTLR.DS`),
//! affinity routing always on (`ARE`), no LPIs.

pub mod irqset;
pub mod regs;
pub mod state;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::backend::{IrqEoi, MAX_LRS, VcpuKick, lr};
use crate::bus::{IrqSink, MmioDevice, lock, read_sub32};
use regs::Bank;
use state::{CTLR_GRP0, CTLR_GRP1, GicState, PRIVATE};

/// Size of the distributor frame.
pub const DIST_SIZE: u64 = 0x1_0000;
/// Size of one vCPU's redistributor (RD frame + SGI frame).
pub const REDIST_STRIDE: u64 = 0x2_0000;
/// The SGI frame's offset in a redistributor.
pub const SGI_FRAME: u64 = 0x1_0000;
/// The most SPIs (INTIDs up to 1019).
pub const MAX_SPIS: u32 = 988;

/// `GICD_CTLR`.
const GICD_CTLR: u64 = 0x0000;
/// `GICD_TYPER`.
const GICD_TYPER: u64 = 0x0004;
/// `GICD_IIDR`.
const GICD_IIDR: u64 = 0x0008;
/// `GICD_IROUTER<n>`.
const GICD_IROUTER: u64 = 0x6000;
/// `GICD_CTLR.ARE_NS`/`ARE` and `DS`: always set.
const CTLR_ARE: u32 = 1 << 4;
const CTLR_DS: u32 = 1 << 6;

const GICR_CTLR: u64 = 0x0000;
const GICR_IIDR: u64 = 0x0004;
const GICR_TYPER: u64 = 0x0008;
const GICR_WAKER: u64 = 0x0014;
/// `GICR_WAKER.ProcessorSleep`.
const WAKER_SLEEP: u32 = 1 << 1;
/// `GICR_WAKER.ChildrenAsleep`.
const WAKER_CHILDREN_ASLEEP: u32 = 1 << 2;

/// [`Gic`]'s `quiet_since` of a vCPU whose list registers were filled
/// with something (never a value of `changes`, which would take 2^64
/// changes to reach it).
const NOT_QUIET: u64 = u64::MAX;

/// uvmm's implementer code in `IIDR` (0: none claimed), revision 1.
const IIDR: u32 = 1 << 12;

/// The virtual GIC.
pub struct Gic {
    state: Mutex<GicState>,
    /// Bumped under the state's lock by every change (see
    /// [`Gic::fill_lrs`]); read without it.
    changes: AtomicU64,
    /// Per vCPU: the value of `changes` when its list registers were last
    /// filled with nothing (nothing active or deliverable for it), or
    /// [`NOT_QUIET`]. Written by the vCPU's own thread only.
    quiet_since: Vec<AtomicU64>,
    /// Per vCPU: its list registers were filled with something (they are
    /// taken back after the exit even if the guest emptied them all).
    /// Written by the vCPU's own thread only.
    lrs_filled: Vec<AtomicBool>,
    wake: Condvar,
    /// Threads waiting on `wake` ([`Gic::wait_for_interrupt`]; changed
    /// under the state's lock). Most of the time none is: the kernel
    /// blocks a vCPU in WFI itself, and a wake-up of nobody would still
    /// cost a system call.
    waiters: AtomicUsize,
    kickers: Mutex<Vec<Option<Box<dyn VcpuKick>>>>,
    /// Interrupts of passed-through lines, with what unmasks their line.
    hw: Mutex<Vec<(u32, Box<dyn IrqEoi>)>>,
}

impl Gic {
    /// A GIC for vCPUs with these MPIDR affinities and `spis` SPIs
    /// (rounded up to a multiple of 32, at most [`MAX_SPIS`]).
    pub fn new(mpidrs: &[u64], spis: u32) -> Arc<Gic> {
        let spis = spis.div_ceil(32).saturating_mul(32).min(MAX_SPIS);
        Arc::new(Gic {
            state: Mutex::new(GicState::new(mpidrs, spis)),
            changes: AtomicU64::new(0),
            quiet_since: mpidrs.iter().map(|_| AtomicU64::new(NOT_QUIET)).collect(),
            lrs_filled: mpidrs.iter().map(|_| AtomicBool::new(false)).collect(),
            wake: Condvar::new(),
            waiters: AtomicUsize::new(0),
            kickers: Mutex::new((0..mpidrs.len()).map(|_| None).collect()),
            hw: Mutex::new(Vec::new()),
        })
    }

    /// Runs `f` on the state (the monitor, tests).
    pub fn with_state<R>(&self, f: impl FnOnce(&mut GicState) -> R) -> R {
        f(&mut self.changing())
    }

    /// The state, locked for a change: every vCPU's list registers are
    /// worked out again at its next entry.
    fn changing(&self) -> MutexGuard<'_, GicState> {
        let s = lock(&self.state);
        self.changes.fetch_add(1, Ordering::AcqRel);
        s
    }

    /// Registers how to interrupt vCPU `cpu`'s `run`.
    pub fn set_kicker(&self, cpu: usize, k: Box<dyn VcpuKick>) {
        if let Some(slot) = lock(&self.kickers).get_mut(cpu) {
            *slot = Some(k);
        }
    }

    /// Wakes the threads waiting in [`Gic::wait_for_interrupt`], if any.
    /// A change is made under the state's lock before this is called, and
    /// a waiter counts itself under that lock before it looks: either it
    /// saw the change, or it is counted here.
    fn wake_waiters(&self) {
        if self.waiters.load(Ordering::Acquire) != 0 {
            self.wake.notify_all();
        }
    }

    /// Kicks the vCPUs in `cpus` and wakes those waiting in WFI.
    fn notify(&self, cpus: &[usize]) {
        if cpus.is_empty() {
            return;
        }
        self.wake_waiters();
        let kickers = lock(&self.kickers);
        for &c in cpus {
            if let Some(Some(k)) = kickers.get(c) {
                k.kick();
            }
        }
    }

    /// Kicks the vCPUs that have something to take and wakes all WFI
    /// waits (after a change that may concern any vCPU).
    fn notify_pending(&self) {
        self.wake_waiters();
        let pending: Vec<usize> = (0..lock(&self.kickers).len())
            .filter(|&c| self.has_pending(c))
            .collect();
        self.notify(&pending);
    }

    /// Kicks vCPU `cpu` out of the guest (and wakes the WFI waits): it
    /// comes back to its thread, which then looks at what it is asked.
    pub fn kick(&self, cpu: usize) {
        self.notify(&[cpu]);
    }

    /// Kicks every vCPU and wakes all WFI waits (the VM ends).
    pub fn kick_all(&self) {
        let n = lock(&self.kickers).len();
        self.notify(&(0..n).collect::<Vec<_>>());
    }

    /// Handles an `ICC_SGI1R_EL1` write of vCPU `from`, made by `from`'s
    /// own thread on its exit: `from` is not kicked, it fills its list
    /// registers before it enters the guest again anyway (a kick would
    /// cost it another exit).
    pub fn send_sgi(&self, from: usize, value: u64) {
        let others = self.changing().send_sgi(from, value);
        self.notify(&others);
    }

    /// Makes `intid` pending for vCPU `cpu` whatever its trigger mode (an
    /// interrupt the kernel reports as an event, like the virtual timer).
    pub fn set_pending(&self, cpu: usize, intid: u32) {
        let target = {
            let mut s = self.changing();
            let Some(i) = s.irq_mut(cpu, intid) else {
                return;
            };
            i.pending = true;
            s.target(cpu, intid)
        };
        if let Some(t) = target {
            self.notify(&[t]);
        }
    }

    /// Makes `intid` the interrupt of a passed-through line, which
    /// `eoi` unmasks once the guest completed it.
    pub fn set_hw_irq(&self, intid: u32, eoi: Box<dyn IrqEoi>) {
        lock(&self.hw).push((intid, eoi));
    }

    /// Takes back vCPU `cpu`'s list registers after an exit (nothing to
    /// do when they were filled with nothing and came back empty, the
    /// common exit); unmasks the passed-through lines whose interrupt the
    /// guest completed.
    pub fn sync_lrs(&self, cpu: usize, lrs: &mut [u64]) {
        let Some(filled) = self.lrs_filled.get(cpu) else {
            return;
        };
        // Only this vCPU's thread fills them (and reads the flag): the
        // common exit looks at no lock.
        if lrs.iter().all(|&lr| lr == 0) && !filled.load(Ordering::Relaxed) {
            return;
        }
        filled.store(false, Ordering::Relaxed);
        let hw = lock(&self.hw);
        let mut s = self.changing();
        // The passed-through interrupts among them (their index in `hw`),
        // and those the guest completed.
        let mut lines = [usize::MAX; MAX_LRS];
        if !hw.is_empty() {
            for (line, &v) in lines.iter_mut().zip(lrs.iter()) {
                if v != 0
                    && let Some(l) = hw.iter().position(|(h, _)| *h == lr::intid(v))
                {
                    *line = l;
                }
            }
        }
        let handed_over = s.sync_lrs(cpu, lrs);
        for line in lines.iter_mut().take(lrs.len()) {
            if let Some((h, _)) = hw.get(*line)
                && s.irq(cpu, *h).is_some_and(|i| i.pending || i.active)
            {
                *line = usize::MAX;
            }
        }
        drop(s);
        for &line in lines.iter().take(lrs.len()) {
            if let Some((_, eoi)) = hw.get(line) {
                eoi.eoi();
            }
        }
        drop(hw);
        if handed_over {
            self.notify_pending();
        }
    }

    /// Fills vCPU `cpu`'s list registers (empty, as [`Gic::sync_lrs`]
    /// leaves them) before an entry. When the last fill found nothing for
    /// `cpu` and the state has not changed since, nothing is looked at.
    ///
    /// That test takes no lock: a change after it is followed by a kick of
    /// the vCPUs it concerns, which brings this one out of the guest again.
    pub fn fill_lrs(&self, cpu: usize, lrs: &mut [u64]) {
        let (Some(quiet), Some(filled)) = (self.quiet_since.get(cpu), self.lrs_filled.get(cpu))
        else {
            return;
        };
        if quiet.load(Ordering::Relaxed) == self.changes.load(Ordering::Acquire) {
            return;
        }
        let mut s = lock(&self.state);
        // Changes are made under the lock: this is the state's count.
        let changes = self.changes.load(Ordering::Relaxed);
        s.fill_lrs(cpu, lrs);
        let any = lrs.iter().any(|&lr| lr != 0);
        filled.store(any, Ordering::Relaxed);
        quiet.store(if any { NOT_QUIET } else { changes }, Ordering::Relaxed);
    }

    /// Whether vCPU `cpu` has an interrupt to take.
    pub fn has_pending(&self, cpu: usize) -> bool {
        let s = lock(&self.state);
        let quiet = self.quiet_since.get(cpu).map(|q| q.load(Ordering::Relaxed));
        quiet != Some(self.changes.load(Ordering::Relaxed)) && s.has_pending(cpu)
    }

    /// Blocks (WFI) until vCPU `cpu` has an interrupt or `timeout` passed;
    /// whether it has one.
    pub fn wait_for_interrupt(&self, cpu: usize, timeout: Duration) -> bool {
        let s = lock(&self.state);
        self.waiters.fetch_add(1, Ordering::AcqRel);
        let (s, _) = self
            .wake
            .wait_timeout_while(s, timeout, |s| !s.has_pending(cpu))
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.waiters.fetch_sub(1, Ordering::AcqRel);
        s.has_pending(cpu)
    }

    /// The distributor's register frame.
    pub fn distributor(self: &Arc<Gic>) -> Distributor {
        Distributor(self.clone())
    }

    /// The redistributors' register frames (all vCPUs, one window).
    pub fn redistributors(self: &Arc<Gic>) -> Redistributors {
        Redistributors(self.clone())
    }
}

impl IrqSink for Gic {
    /// A line that keeps its level changes nothing (devices report their
    /// line after every register access): no vCPU looks again, nobody is
    /// kicked.
    fn set_level(&self, vcpu: usize, intid: u32, level: bool) {
        let target = {
            let mut s = lock(&self.state);
            if s.irq(vcpu, intid).is_none_or(|i| i.level == level) {
                return;
            }
            self.changes.fetch_add(1, Ordering::AcqRel);
            let Some(i) = s.irq_mut(vcpu, intid) else {
                return;
            };
            let rising = level && !i.level;
            i.level = level;
            if i.edge && rising {
                i.pending = true;
            }
            if !level {
                return;
            }
            s.target(vcpu, intid)
        };
        if let Some(t) = target {
            self.notify(&[t]);
        }
    }
}

/// The `GICD_*` frame.
pub struct Distributor(Arc<Gic>);

impl MmioDevice for Distributor {
    fn read(&mut self, offset: u64, size: u8) -> u64 {
        // A read changes nothing: no vCPU needs to look again.
        let s = lock(&self.0.state);
        match offset {
            GICD_IROUTER.. if offset < 0x7fe0 => {
                let intid = ((offset - GICD_IROUTER) / 8) as u32;
                let v = if intid >= PRIVATE {
                    s.irq(0, intid).map_or(0, |i| i.route)
                } else {
                    0
                };
                if size == 8 {
                    v
                } else {
                    (v >> ((offset & 4) * 8)) & 0xffff_ffff
                }
            }
            _ => {
                if let Some(v) = regs::read(&s, Bank::Shared, offset, size) {
                    return v;
                }
                let nr = s.nr_irqs();
                let ctlr = s.ctlr | CTLR_ARE | CTLR_DS;
                read_sub32(offset, size, |o| match o {
                    GICD_CTLR => ctlr,
                    // ITLinesNumber, IDbits = 9 (10 bits), no LPIs/MBIS.
                    GICD_TYPER => (nr / 32 - 1) | (9 << 19),
                    GICD_IIDR => IIDR,
                    _ => regs::id_reg(o).unwrap_or(0),
                })
            }
        }
    }

    fn write(&mut self, offset: u64, size: u8, value: u64) {
        let mut s = self.0.changing();
        match offset {
            GICD_CTLR => s.ctlr = value as u32 & (CTLR_GRP0 | CTLR_GRP1),
            GICD_IROUTER.. if offset < 0x7fe0 => {
                let intid = ((offset - GICD_IROUTER) / 8) as u32;
                if intid < PRIVATE {
                    return;
                }
                if let Some(i) = s.irq_mut(0, intid) {
                    // IRM, Aff3..Aff0; a 32-bit write replaces its half.
                    let mask = 0xff_8000_0000u64 | 0xff_ffff;
                    i.route = match (size, offset & 4) {
                        (8, _) => value & mask,
                        (_, 0) => (i.route & !0xffff_ffff) | (value & 0xffff_ffff & mask),
                        _ => (i.route & 0xffff_ffff) | ((value << 32) & mask),
                    };
                }
            }
            _ => {
                regs::write(&mut s, Bank::Shared, offset, size, value);
            }
        }
        drop(s);
        // Enabling or routing may have made something deliverable.
        self.0.notify_pending();
    }
}

/// The `GICR_*` frames of all vCPUs, [`REDIST_STRIDE`] apart.
pub struct Redistributors(Arc<Gic>);

impl MmioDevice for Redistributors {
    fn read(&mut self, offset: u64, size: u8) -> u64 {
        let cpu = (offset / REDIST_STRIDE) as usize;
        let off = offset % REDIST_STRIDE;
        let s = lock(&self.0.state);
        if cpu >= s.nr_vcpus() {
            return 0;
        }
        if off >= SGI_FRAME {
            let off = off - SGI_FRAME;
            return regs::read(&s, Bank::Private(cpu), off, size).unwrap_or(0);
        }
        if off & !7 == GICR_TYPER {
            let last = u64::from(cpu + 1 == s.nr_vcpus()) << 4;
            let mpidr = s.mpidr[cpu];
            let aff = (mpidr & 0xff_ffff) | ((mpidr >> 32 & 0xff) << 24);
            let v = (aff << 32) | ((cpu as u64) << 8) | last;
            return if size == 8 {
                v
            } else {
                (v >> ((off & 4) * 8)) & 0xffff_ffff
            };
        }
        let asleep = s.asleep(cpu);
        read_sub32(off, size, |o| match o {
            GICR_CTLR => 0,
            GICR_IIDR => IIDR,
            GICR_WAKER if asleep => WAKER_SLEEP | WAKER_CHILDREN_ASLEEP,
            GICR_WAKER => 0,
            _ => regs::id_reg(o).unwrap_or(0),
        })
    }

    fn write(&mut self, offset: u64, size: u8, value: u64) {
        let cpu = (offset / REDIST_STRIDE) as usize;
        let off = offset % REDIST_STRIDE;
        let mut s = self.0.changing();
        if cpu >= s.nr_vcpus() {
            return;
        }
        if off >= SGI_FRAME {
            regs::write(&mut s, Bank::Private(cpu), off - SGI_FRAME, size, value);
        } else if off == GICR_WAKER {
            s.set_asleep(cpu, value as u32 & WAKER_SLEEP != 0);
        }
        let pending = s.has_pending(cpu);
        drop(s);
        if pending {
            self.0.notify(&[cpu]);
        }
    }
}

#[cfg(test)]
mod tests;

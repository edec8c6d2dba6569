//! The interrupt state of the virtual GICv3: per-interrupt configuration
//! and pending/active state, routing, and the choice of what each vCPU's
//! list registers should hold.

use super::irqset::IrqSet;
use crate::backend::{MAX_LRS, lr};
use crate::psci::MPIDR_AFF_MASK;

/// SGIs are INTIDs 0..16, PPIs 16..32, SPIs from 32.
pub const PRIVATE: u32 = 32;
/// `GICD_IROUTER.Interrupt_Routing_Mode`: any participating vCPU.
pub const IROUTER_IRM: u64 = 1 << 31;

/// One interrupt's state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Irq {
    /// `I[SC]ENABLER`.
    pub enabled: bool,
    /// The pending latch (edge, `ISPENDR`, SGIs).
    pub pending: bool,
    /// The input line (level-sensitive interrupts are pending while high).
    pub level: bool,
    /// Active (taken by the guest, not yet deactivated).
    pub active: bool,
    /// The priority of the list register the guest took it from. The
    /// guest's end of interrupt drops that priority and completes the
    /// interrupt only if its list register still has it: an active
    /// interrupt goes back with it, not with `priority` (which the guest
    /// may have changed since, or which the kernel did not use when it
    /// injected the interrupt itself, like the virtual timer's).
    pub active_priority: u8,
    /// `IGROUPR`: group 1.
    pub group1: bool,
    /// `IPRIORITYR`.
    pub priority: u8,
    /// `ICFGR`: edge-triggered.
    pub edge: bool,
    /// `IROUTER` (SPIs).
    pub route: u64,
    /// The vCPU whose list registers hold it now.
    pub owner: Option<usize>,
    /// Its pending latch moved into that list register.
    pub latched_in_lr: bool,
    /// That list register was filled pending (else active only: a
    /// pending state it comes back with was added by the kernel, which
    /// injects interrupts bound to the vCPU).
    pub filled_pending: bool,
}

impl Irq {
    fn is_pending(&self) -> bool {
        self.pending || (!self.edge && self.level)
    }
}

/// The whole interrupt state of the VM.
///
/// Besides each interrupt's state it keeps, per vCPU, the set of
/// interrupts that may be pending or active for it ([`IrqSet`]): finding
/// what to put in a vCPU's list registers walks that set, not every
/// interrupt. The set may hold more (an interrupt completed since, an SPI
/// routed elsewhere): whoever walks it drops those. Every change goes
/// through [`GicState::irq_mut`] (or [`GicState::set_asleep`]), which
/// adds the interrupt to the sets of every vCPU it may now be for.
#[derive(Clone, Debug)]
pub struct GicState {
    /// `GICD_CTLR` group enables: bit 0 group 0, bit 1 group 1.
    pub ctlr: u32,
    /// Per vCPU: its SGIs and PPIs.
    private: Vec<[Irq; PRIVATE as usize]>,
    /// The SPIs, INTID 32 upwards.
    spis: Vec<Irq>,
    /// Per vCPU: its MPIDR affinity.
    pub mpidr: Vec<u64>,
    /// Per vCPU: `GICR_WAKER.ProcessorSleep`.
    asleep: Vec<bool>,
    /// Per vCPU: the interrupts that may be pending or active for it.
    queued: Vec<IrqSet>,
    /// Per vCPU: the INTIDs its list registers were filled with.
    in_lrs: Vec<Vec<u32>>,
}

/// `GICD_CTLR.EnableGrp1`.
pub const CTLR_GRP1: u32 = 1 << 1;
/// `GICD_CTLR.EnableGrp0`.
pub const CTLR_GRP0: u32 = 1;

/// What [`GicState::fill_lrs`] found, at most `MAX_LRS`: keys with the
/// INTID in bits 31:0 and above it what orders them.
struct Picks {
    keys: [u64; MAX_LRS],
    len: usize,
}

impl Picks {
    fn new() -> Picks {
        Picks {
            keys: [0; MAX_LRS],
            len: 0,
        }
    }

    fn keys(&self) -> &[u64] {
        &self.keys[..self.len]
    }

    /// Appends while there are fewer than `limit`.
    fn push(&mut self, limit: usize, key: u64) {
        if self.len < limit.min(MAX_LRS) {
            self.keys[self.len] = key;
            self.len += 1;
        }
    }

    /// Keeps the `limit` smallest keys, in order.
    fn insert(&mut self, limit: usize, key: u64) {
        let limit = limit.min(MAX_LRS);
        let at = self.keys().partition_point(|&k| k < key);
        if at >= limit {
            return;
        }
        let end = self.len.min(limit - 1);
        self.keys.copy_within(at..end, at + 1);
        self.keys[at] = key;
        self.len = end + 1;
    }
}

impl GicState {
    /// The number of SPIs.
    pub fn spi_count(&self) -> usize {
        self.spis.len()
    }

    /// Every interrupt by INTID: each vCPU's SGIs and PPIs (with the
    /// vCPU), then the SPIs.
    pub fn interrupts(&self) -> impl Iterator<Item = (u32, Option<usize>, &Irq)> {
        let private = self.private.iter().enumerate().flat_map(|(cpu, irqs)| {
            irqs.iter()
                .enumerate()
                .map(move |(i, irq)| (i as u32, Some(cpu), irq))
        });
        let spis = self
            .spis
            .iter()
            .enumerate()
            .map(|(i, irq)| (PRIVATE + i as u32, None, irq));
        private.chain(spis)
    }

    /// A GIC with `spis` SPIs (a multiple of 32) for vCPUs with these
    /// affinities. SGIs are edge, enabled like on reset: everything off,
    /// group 0, priority 0.
    pub fn new(mpidrs: &[u64], spis: u32) -> GicState {
        let mut private = [Irq::default(); PRIVATE as usize];
        for sgi in private.iter_mut().take(16) {
            sgi.edge = true;
        }
        let nr = PRIVATE + spis;
        GicState {
            ctlr: 0,
            private: vec![private; mpidrs.len()],
            spis: vec![Irq::default(); spis as usize],
            mpidr: mpidrs.to_vec(),
            asleep: vec![true; mpidrs.len()],
            queued: vec![IrqSet::new(nr); mpidrs.len()],
            in_lrs: vec![Vec::with_capacity(MAX_LRS); mpidrs.len()],
        }
    }

    /// Number of INTIDs (32 + SPIs).
    pub fn nr_irqs(&self) -> u32 {
        PRIVATE + self.spis.len() as u32
    }

    /// Number of vCPUs.
    pub fn nr_vcpus(&self) -> usize {
        self.mpidr.len()
    }

    /// Interrupt `intid` as vCPU `cpu` sees it.
    pub fn irq(&self, cpu: usize, intid: u32) -> Option<&Irq> {
        if intid < PRIVATE {
            self.private.get(cpu)?.get(intid as usize)
        } else {
            self.spis.get((intid - PRIVATE) as usize)
        }
    }

    /// Interrupt `intid` as vCPU `cpu` sees it, to change: it goes into
    /// the sets of the vCPUs it may be for (`cpu` for an SGI or PPI,
    /// every vCPU for an SPI, whose route may change too).
    pub fn irq_mut(&mut self, cpu: usize, intid: u32) -> Option<&mut Irq> {
        if intid < PRIVATE {
            self.queued.get_mut(cpu)?.insert(intid);
            self.private.get_mut(cpu)?.get_mut(intid as usize)
        } else {
            let i = self.spis.get_mut((intid - PRIVATE) as usize)?;
            for q in &mut self.queued {
                q.insert(intid);
            }
            Some(i)
        }
    }

    /// Whether vCPU `cpu`'s redistributor is asleep (`GICR_WAKER`).
    pub fn asleep(&self, cpu: usize) -> bool {
        self.asleep.get(cpu).copied().unwrap_or(true)
    }

    /// Puts vCPU `cpu`'s redistributor to sleep or wakes it; SPIs routed
    /// to any vCPU (`IRM`) may go elsewhere now.
    pub fn set_asleep(&mut self, cpu: usize, asleep: bool) {
        let Some(a) = self.asleep.get_mut(cpu) else {
            return;
        };
        *a = asleep;
        for n in 0..self.spis.len() {
            let i = &self.spis[n];
            if i.route & IROUTER_IRM != 0 && (i.is_pending() || i.active) {
                for q in &mut self.queued {
                    q.insert(PRIVATE + n as u32);
                }
            }
        }
    }

    /// The vCPU an SPI goes to: the one whose affinity its `IROUTER`
    /// names, or with `IRM` the first awake vCPU (vCPU 0 if none is).
    pub fn spi_target(&self, route: u64) -> Option<usize> {
        if route & IROUTER_IRM != 0 {
            return Some(self.asleep.iter().position(|s| !s).unwrap_or(0));
        }
        let aff = route & MPIDR_AFF_MASK;
        self.mpidr.iter().position(|m| *m == aff)
    }

    /// The vCPU that `intid` (pending for `cpu` when private) would be
    /// delivered to.
    pub fn target(&self, cpu: usize, intid: u32) -> Option<usize> {
        if intid < PRIVATE {
            Some(cpu)
        } else {
            self.spi_target(self.irq(cpu, intid)?.route)
        }
    }

    fn group_enabled(&self, i: &Irq) -> bool {
        self.ctlr & if i.group1 { CTLR_GRP1 } else { CTLR_GRP0 } != 0
    }

    /// Whether `intid` may be given to `cpu` now: enabled, pending, not
    /// active, not in another vCPU's list registers, routed to `cpu`.
    fn deliverable(&self, cpu: usize, intid: u32) -> Option<u8> {
        let i = self.irq(cpu, intid)?;
        let ok = i.enabled
            && i.is_pending()
            && !i.active
            && i.owner.is_none()
            && self.group_enabled(i)
            && (intid < PRIVATE || self.spi_target(i.route) == Some(cpu));
        ok.then_some(i.priority)
    }

    /// Interrupts that may be given to `cpu` now (see `deliverable`), by
    /// priority then INTID.
    pub fn candidates(&self, cpu: usize) -> Vec<(u32, u8)> {
        let Some(q) = self.queued.get(cpu) else {
            return Vec::new();
        };
        let mut out: Vec<(u32, u8)> = q
            .iter()
            .filter_map(|n| Some((n, self.deliverable(cpu, n)?)))
            .collect();
        out.sort_by_key(|&(id, prio)| (prio, id));
        out
    }

    /// Whether `cpu` has an interrupt to take (WFI ends).
    pub fn has_pending(&self, cpu: usize) -> bool {
        self.queued
            .get(cpu)
            .is_some_and(|q| q.iter().any(|n| self.deliverable(cpu, n).is_some()))
    }

    /// Takes back the list registers of `cpu` after an exit: what the guest
    /// completed is inactive, what it took is active, what it did not take
    /// is pending again.
    ///
    /// An interrupt this vCPU's list registers were filled with that none
    /// holds now was completed (the kernel may reuse an emptied list
    /// register for an interrupt of its own).
    ///
    /// Returns whether an SPI it gave back pending is another vCPU's now
    /// (its route changed while this vCPU held it): that one needs a kick.
    pub fn sync_lrs(&mut self, cpu: usize, lrs: &mut [u64]) -> bool {
        let Some(filled) = self.in_lrs.get_mut(cpu) else {
            return false;
        };
        let mut filled = core::mem::take(filled);
        for &n in &filled {
            if lrs.iter().any(|&v| v != 0 && lr::intid(v) == n) {
                continue;
            }
            if let Some(i) = self.irq_mut(cpu, n)
                && i.owner == Some(cpu)
            {
                i.owner = None;
                i.active = false;
                i.latched_in_lr = false;
            }
        }
        filled.clear();
        self.in_lrs[cpu] = filled;
        let mut handed_over = false;
        for lr in lrs.iter_mut() {
            if *lr == 0 {
                continue;
            }
            let (intid, state, priority) = (lr::intid(*lr), lr::state(*lr), lr::priority(*lr));
            let (pending, active) = (state & 1 != 0, state & 2 != 0);
            *lr = 0;
            if let Some(i) = self.irq_mut(cpu, intid) {
                // Pending state not taken goes back to the latch when it came
                // from there, or when the kernel put the interrupt there
                // itself (the virtual timer, an Irq bound to the vCPU), or
                // made an interrupt uvmm gave active pending again; a level
                // interrupt pending by its line stays pending by its line.
                if pending && (i.latched_in_lr || i.owner != Some(cpu) || !i.filled_pending) {
                    i.pending = true;
                }
                i.owner = None;
                i.latched_in_lr = false;
                i.active = active;
                if active {
                    i.active_priority = priority;
                }
                let moved = i.is_pending() && !active && intid >= PRIVATE;
                handed_over |= moved && self.target(cpu, intid) != Some(cpu);
            }
        }
        handed_over
    }

    /// Fills the list registers of `cpu` for the next entry: first the
    /// interrupts the guest has active (so it can complete them), then the
    /// highest-priority pending ones. A pending latch (edge, `ISPENDR`,
    /// SGIs) moves into the list register. An active level interrupt whose
    /// line is high goes in active and pending, so the guest takes it again
    /// as soon as it completed it, without an exit; a level interrupt given
    /// pending whose line is still high after the guest completed it is
    /// given again after the next exit (its handler's device access is
    /// one, and a line that rises again kicks the vCPU).
    ///
    /// Walks `cpu`'s set and drops from it what is neither pending nor
    /// active for `cpu`.
    pub fn fill_lrs(&mut self, cpu: usize, lrs: &mut [u64]) {
        let Some(q) = self.queued.get_mut(cpu) else {
            return;
        };
        let mut q = core::mem::take(q);
        // Active ones by INTID, with their pending latch in bit 32;
        // pending ones by priority (bits 39:32), then INTID.
        let mut active = Picks::new();
        let mut pending = Picks::new();
        q.retain(|n| {
            let Some(i) = self.irq(cpu, n) else {
                return false;
            };
            if !(i.is_pending() || i.active)
                || (n >= PRIVATE && self.spi_target(i.route) != Some(cpu))
            {
                return false;
            }
            if i.owner.is_none() {
                if i.active {
                    // Pending again as well: its latch, or its line still
                    // high (the guest takes it again once it completed it).
                    let by_line = !i.edge && i.level && i.enabled && self.group_enabled(i);
                    let again = i.pending || by_line;
                    active.push(lrs.len(), u64::from(n) | u64::from(again) << 32);
                } else if let Some(prio) = self.deliverable(cpu, n) {
                    pending.insert(lrs.len(), u64::from(n) | u64::from(prio) << 32);
                }
            }
            true
        });
        self.queued[cpu] = q;
        let wanted = active
            .keys()
            .iter()
            .map(|&k| (k as u32, k >> 32 != 0, true))
            .chain(pending.keys().iter().map(|&k| (k as u32, true, false)));
        for (lr, (intid, pending, active)) in lrs.iter_mut().zip(wanted) {
            let Some(i) = self.irq_mut(cpu, intid) else {
                continue;
            };
            let priority = if active {
                i.active_priority
            } else {
                i.priority
            };
            *lr = lr_value(intid, priority, pending, active);
            i.owner = Some(cpu);
            i.filled_pending = pending;
            // The pending latch moves into the list register.
            i.latched_in_lr = pending && i.pending;
            if pending {
                i.pending = false;
            }
            self.in_lrs[cpu].push(intid);
        }
    }

    /// Decodes an `ICC_SGI1R_EL1` write by vCPU `from` and makes the SGI
    /// pending on its targets; returns the targets other than `from`
    /// (which takes it at its next entry without being kicked).
    pub fn send_sgi(&mut self, from: usize, value: u64) -> Vec<usize> {
        let sgi = Sgi::decode(value);
        let mut others = Vec::new();
        for c in 0..self.nr_vcpus() {
            let target = if sgi.all_but_self {
                c != from
            } else {
                sgi.targets(self.mpidr[c])
            };
            if !target {
                continue;
            }
            if let Some(i) = self.irq_mut(c, sgi.intid) {
                i.pending = true;
            }
            if c != from {
                others.push(c);
            }
        }
        others
    }
}

/// A list register for group-1 interrupt `intid` with `priority`, pending
/// and/or active (never hardware-linked: uvmm's interrupts are virtual).
pub fn lr_value(intid: u32, priority: u8, pending: bool, active: bool) -> u64 {
    let state = u64::from(pending) | (u64::from(active) << 1);
    (state << lr::STATE_SHIFT)
        | lr::GROUP1
        | (u64::from(priority) << lr::PRIORITY_SHIFT)
        | u64::from(intid)
}

/// A decoded `ICC_SGI1R_EL1` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sgi {
    /// The SGI (0..16).
    pub intid: u32,
    /// `IRM`: every vCPU but the sender.
    pub all_but_self: bool,
    /// Aff3.Aff2.Aff1 of the targets (bits 39:32, 23:16, 15:8 as in MPIDR).
    pub aff321: u64,
    /// `RS`: which 16 Aff0 values the target list covers.
    pub range: u8,
    /// `TargetList`: bit n is Aff0 = RS * 16 + n.
    pub list: u16,
}

impl Sgi {
    /// Decodes a register value.
    pub fn decode(v: u64) -> Sgi {
        Sgi {
            intid: ((v >> 24) & 0xf) as u32,
            all_but_self: v & (1 << 40) != 0,
            aff321: (((v >> 48) & 0xff) << 32)
                | (((v >> 32) & 0xff) << 16)
                | (((v >> 16) & 0xff) << 8),
            range: ((v >> 44) & 0xf) as u8,
            list: v as u16,
        }
    }

    /// Whether a vCPU with affinity `mpidr` is a target (IRM clear).
    pub fn targets(&self, mpidr: u64) -> bool {
        let aff0 = mpidr & 0xff;
        mpidr & !0xff == self.aff321
            && aff0 / 16 == u64::from(self.range)
            && self.list & (1 << (aff0 % 16)) != 0
    }
}

//! The interrupt state of the virtual GICv3: per-interrupt configuration
//! and pending/active state, routing, and the choice of what each vCPU's
//! list registers should hold.

use crate::backend::lr;
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
}

impl Irq {
    fn is_pending(&self) -> bool {
        self.pending || (!self.edge && self.level)
    }
}

/// The whole interrupt state of the VM.
#[derive(Clone, Debug)]
pub struct GicState {
    /// `GICD_CTLR` group enables: bit 0 group 0, bit 1 group 1.
    pub ctlr: u32,
    /// Per vCPU: its SGIs and PPIs.
    pub private: Vec<[Irq; PRIVATE as usize]>,
    /// The SPIs, INTID 32 upwards.
    pub spis: Vec<Irq>,
    /// Per vCPU: its MPIDR affinity.
    pub mpidr: Vec<u64>,
    /// Per vCPU: `GICR_WAKER.ProcessorSleep`.
    pub asleep: Vec<bool>,
}

/// `GICD_CTLR.EnableGrp1`.
pub const CTLR_GRP1: u32 = 1 << 1;
/// `GICD_CTLR.EnableGrp0`.
pub const CTLR_GRP0: u32 = 1;

impl GicState {
    /// A GIC with `spis` SPIs (a multiple of 32) for vCPUs with these
    /// affinities. SGIs are edge, enabled like on reset: everything off,
    /// group 0, priority 0.
    pub fn new(mpidrs: &[u64], spis: u32) -> GicState {
        let mut private = [Irq::default(); PRIVATE as usize];
        for sgi in private.iter_mut().take(16) {
            sgi.edge = true;
        }
        GicState {
            ctlr: 0,
            private: vec![private; mpidrs.len()],
            spis: vec![Irq::default(); spis as usize],
            mpidr: mpidrs.to_vec(),
            asleep: vec![true; mpidrs.len()],
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

    /// Interrupt `intid` as vCPU `cpu` sees it, mutable.
    pub fn irq_mut(&mut self, cpu: usize, intid: u32) -> Option<&mut Irq> {
        if intid < PRIVATE {
            self.private.get_mut(cpu)?.get_mut(intid as usize)
        } else {
            self.spis.get_mut((intid - PRIVATE) as usize)
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

    /// Interrupts that may be given to `cpu` now: enabled, pending, not
    /// active, not in another vCPU's list registers, routed to `cpu`; by
    /// priority then INTID.
    pub fn candidates(&self, cpu: usize) -> Vec<(u32, u8)> {
        let mut out = Vec::new();
        let ok = |i: &Irq| {
            i.enabled && i.is_pending() && !i.active && i.owner.is_none() && self.group_enabled(i)
        };
        if let Some(p) = self.private.get(cpu) {
            for (n, i) in p.iter().enumerate() {
                if ok(i) {
                    out.push((n as u32, i.priority));
                }
            }
        }
        for (n, i) in self.spis.iter().enumerate() {
            if ok(i) && self.spi_target(i.route) == Some(cpu) {
                out.push((PRIVATE + n as u32, i.priority));
            }
        }
        out.sort_by_key(|&(id, prio)| (prio, id));
        out
    }

    /// Whether `cpu` has an interrupt to take (WFI ends).
    pub fn has_pending(&self, cpu: usize) -> bool {
        !self.candidates(cpu).is_empty()
    }

    /// Takes back the list registers of `cpu` after an exit: what the guest
    /// completed is inactive, what it took is active, what it did not take
    /// is pending again.
    ///
    /// An interrupt this vCPU's list registers held that none holds now
    /// was completed (the kernel may reuse an emptied list register for
    /// an interrupt of its own).
    pub fn sync_lrs(&mut self, cpu: usize, lrs: &mut [u64]) {
        let seen: Vec<u32> = lrs
            .iter()
            .filter(|&&lr| lr != 0)
            .map(|&v| lr::intid(v))
            .collect();
        let nr = self.nr_irqs();
        for n in 0..nr {
            if seen.contains(&n) {
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
                // itself (the virtual timer); a level interrupt pending by
                // its line stays pending by its line.
                if pending && (i.latched_in_lr || i.owner != Some(cpu)) {
                    i.pending = true;
                }
                i.owner = None;
                i.latched_in_lr = false;
                i.active = active;
                if active {
                    i.active_priority = priority;
                }
            }
        }
    }

    /// Fills the list registers of `cpu` for the next entry: first the
    /// interrupts the guest has active (so it can complete them), then the
    /// highest-priority pending ones. A pending latch (edge, `ISPENDR`,
    /// SGIs) moves into the list register; a level interrupt whose line is
    /// still high after the guest completed it is given again after the
    /// next exit (its handler's device access is one).
    pub fn fill_lrs(&mut self, cpu: usize, lrs: &mut [u64]) {
        let active = (0..self.nr_irqs()).filter(|&n| {
            self.irq(cpu, n)
                .is_some_and(|i| i.active && i.owner.is_none())
                && (n < PRIVATE || self.target(cpu, n) == Some(cpu))
        });
        let active: Vec<(u32, bool)> = active
            .map(|n| (n, self.irq(cpu, n).is_some_and(|i| i.pending)))
            .collect();
        let pending = self.candidates(cpu).into_iter().map(|(n, _)| (n, true));
        let wanted = active
            .iter()
            .map(|&(n, p)| (n, p, true))
            .chain(pending.map(|(n, p)| (n, p, false)))
            .collect::<Vec<_>>();
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
            // The pending latch moves into the list register.
            i.latched_in_lr = pending && i.pending;
            if pending {
                i.pending = false;
            }
        }
    }

    /// Decodes an `ICC_SGI1R_EL1` write by vCPU `from` and makes the SGI
    /// pending on its targets; returns the targets.
    pub fn send_sgi(&mut self, from: usize, value: u64) -> Vec<usize> {
        let sgi = Sgi::decode(value);
        let targets: Vec<usize> = (0..self.nr_vcpus())
            .filter(|&c| {
                if sgi.all_but_self {
                    c != from
                } else {
                    sgi.targets(self.mpidr[c])
                }
            })
            .collect();
        for &c in &targets {
            if let Some(i) = self.irq_mut(c, sgi.intid) {
                i.pending = true;
            }
        }
        targets
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

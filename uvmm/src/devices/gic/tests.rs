use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::backend::lr;
use state::Sgi;

struct Count(Arc<AtomicUsize>);

impl VcpuKick for Count {
    fn kick(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A GIC for 3 vCPUs (Aff0 0, 1 and Aff1 1) with 64 SPIs; kick counters.
fn gic() -> (Arc<Gic>, Distributor, Redistributors, Vec<Arc<AtomicUsize>>) {
    let g = Gic::new(&[0, 1, 0x100], 64);
    let counts: Vec<_> = (0..3).map(|_| Arc::new(AtomicUsize::new(0))).collect();
    for (i, c) in counts.iter().enumerate() {
        g.set_kicker(i, Box::new(Count(c.clone())));
    }
    (g.clone(), g.distributor(), g.redistributors(), counts)
}

/// The (INTID, state) of the list registers in use (state 1 pending,
/// 2 active).
fn lr_ids(lrs: &[u64]) -> Vec<(u32, u64)> {
    lrs.iter()
        .filter(|l| **l != 0)
        .map(|l| (lr::intid(*l), lr::state(*l)))
        .collect()
}

#[test]
fn distributor_identification() {
    let (_, mut d, mut r, _) = gic();
    assert_eq!(d.read(0x4, 4), (96 / 32 - 1) | (9 << 19));
    assert_eq!(d.read(0xffe8, 4) >> 4 & 0xf, 3);
    assert_eq!(r.read(0xffe8, 4) >> 4 & 0xf, 3);
    assert_eq!(d.read(0xfff0, 4), 0x0d);
    // ARE and DS always set; group enables stick.
    assert_eq!(d.read(0, 4), 0x50);
    d.write(0, 4, 0x3 | (1 << 4));
    assert_eq!(d.read(0, 4), 0x53);
}

#[test]
fn enable_pending_active_priority_config_banks() {
    let (g, mut d, mut r, _) = gic();
    // SPI 40 (bank 1, bit 8) enable, then clear.
    d.write(0x104, 4, 1 << 8);
    assert_eq!(d.read(0x104, 4), 1 << 8);
    assert_eq!(d.read(0x184, 4), 1 << 8);
    d.write(0x184, 4, 1 << 8);
    assert_eq!(d.read(0x104, 4), 0);
    // The distributor's bank 0 (SGIs/PPIs) is RAZ/WI under ARE.
    d.write(0x100, 4, u64::MAX);
    assert_eq!(d.read(0x100, 4), 0);
    // Pending / active set and clear.
    d.write(0x204, 4, 1 << 9);
    assert_eq!(d.read(0x204, 4), 1 << 9);
    d.write(0x284, 4, 1 << 9);
    assert_eq!(d.read(0x204, 4), 0);
    d.write(0x304, 4, 1 << 10);
    assert_eq!(d.read(0x384, 4), 1 << 10);
    d.write(0x384, 4, 1 << 10);
    assert_eq!(d.read(0x304, 4), 0);
    // Priorities by byte and by word.
    d.write(0x400 + 40, 1, 0xa0);
    d.write(0x400 + 44, 4, 0x1020_3040);
    assert_eq!(d.read(0x400 + 40, 1), 0xa0);
    assert_eq!(d.read(0x400 + 44, 4), 0x1020_3040);
    assert_eq!(d.read(0x400 + 45, 1), 0x30);
    // Config: SPI 33 edge (ICFGR2 bits 3:2).
    d.write(0xc08, 4, 0b1000);
    assert_eq!(d.read(0xc08, 4), 0b1000);
    assert!(g.with_state(|s| s.irq(0, 33).unwrap().edge));
    // Groups.
    d.write(0x84, 4, 0xffff_ffff);
    assert_eq!(d.read(0x84, 4), 0xffff_ffff);
    // Redistributor of vCPU 1: SGIs are edge, PPIs configurable.
    let sgi = REDIST_STRIDE + SGI_FRAME;
    assert_eq!(r.read(sgi + 0xc00, 4), 0xaaaa_aaaa);
    r.write(sgi + 0xc00, 4, 0);
    assert_eq!(r.read(sgi + 0xc00, 4), 0xaaaa_aaaa);
    r.write(sgi + 0x100, 4, 1 << 27);
    assert_eq!(r.read(sgi + 0x100, 4), 1 << 27);
    assert_eq!(
        r.read(SGI_FRAME + 0x100, 4),
        0,
        "vCPU 0's PPIs are separate"
    );
    // A byte write to a bit bank is ignored.
    d.write(0x108, 1, 0xff);
    assert_eq!(d.read(0x108, 4), 0);
}

#[test]
fn redistributor_typer_and_waker() {
    let (_, _, mut r, _) = gic();
    let typer = |r: &mut Redistributors, cpu: u64| r.read(cpu * REDIST_STRIDE + 8, 8);
    assert_eq!(typer(&mut r, 0), 0);
    assert_eq!(typer(&mut r, 1), (1 << 32) | (1 << 8));
    assert_eq!(typer(&mut r, 2), (0x100 << 32) | (2 << 8) | (1 << 4));
    assert_eq!(r.read(2 * REDIST_STRIDE + 0xc, 4), 0x100);
    assert_eq!(r.read(0x14, 4), 0b110);
    r.write(0x14, 4, 0);
    assert_eq!(r.read(0x14, 4), 0);
    assert_eq!(r.read(3 * REDIST_STRIDE + 8, 8), 0, "beyond the last vCPU");
}

#[test]
fn spi_routing_and_injection() {
    let (g, mut d, mut r, kicks) = gic();
    d.write(0, 4, 0x2); // group 1 on
    d.write(0x84, 4, 0xffff_ffff); // SPIs 32..63 group 1
    d.write(0x104, 4, 1 << 1); // enable SPI 33
    d.write(0x400 + 33, 1, 0x80);
    // Route SPI 33 to Aff1 = 1 (vCPU 2).
    d.write(0x6000 + 33 * 8, 8, 0x100);
    assert_eq!(d.read(0x6000 + 33 * 8, 8), 0x100);
    assert_eq!(d.read(0x6000 + 33 * 8 + 4, 4), 0);
    let before = kicks[2].load(Ordering::SeqCst);
    g.set_level(0, 33, true);
    assert!(kicks[2].load(Ordering::SeqCst) > before);
    assert!(!g.has_pending(0));
    assert!(g.has_pending(2));
    let mut lrs = [0u64; 4];
    g.fill_lrs(2, &mut lrs);
    assert_eq!(lr_ids(&lrs), [(33, 1)]);
    assert_eq!(lrs[0] >> 48 & 0xff, 0x80);
    assert_eq!(lrs[0] & lr::EOI, 0, "completion is seen at the next exit");
    // In vCPU 2's list registers: not offered again.
    assert!(!g.has_pending(2));
    // The guest took it (active), then completed it with the line low.
    lrs[0] = (lrs[0] & !(3 << 62)) | (2 << 62);
    g.sync_lrs(2, &mut lrs);
    assert!(g.with_state(|s| s.irq(0, 33).unwrap().active));
    g.set_level(0, 33, false);
    g.fill_lrs(2, &mut lrs);
    assert_eq!(lr_ids(&lrs), [(33, 2)]);
    // Deactivated: the state bits clear, the INTID stays.
    lrs[0] &= !(3 << 62);
    g.sync_lrs(2, &mut lrs);
    assert!(!g.with_state(|s| s.irq(0, 33).unwrap().active));
    assert!(!g.has_pending(2));
    // Given again, taken, completed, and the list register reused by the
    // kernel for the timer: completed all the same, offered again.
    g.set_level(0, 33, true);
    g.fill_lrs(2, &mut lrs);
    assert_eq!(lr_ids(&lrs), [(33, 1)]);
    lrs[0] = lr::pending(27, 0);
    g.sync_lrs(2, &mut lrs);
    assert!(
        g.has_pending(2),
        "level 33 still high, no longer in a list register"
    );
    g.set_level(0, 33, false);
    lrs = [0; 4];
    g.fill_lrs(2, &mut lrs);
    g.sync_lrs(2, &mut lrs);
    // IRM: any vCPU, the first awake one.
    d.write(0x6000 + 33 * 8, 8, 1 << 31);
    r.write(REDIST_STRIDE + 0x14, 4, 0);
    g.set_level(0, 33, true);
    assert!(g.has_pending(1));
    // Routed to an affinity no vCPU has: nobody.
    d.write(0x6000 + 33 * 8, 4, 0x7);
    assert!(!g.has_pending(0) && !g.has_pending(1) && !g.has_pending(2));
    // Disabled group: nothing deliverable.
    d.write(0x6000 + 33 * 8, 4, 0);
    assert!(g.has_pending(0));
    d.write(0, 4, 0);
    assert!(!g.has_pending(0));
}

#[test]
fn edge_and_priority_order_and_lr_limit() {
    let (g, mut d, _, _) = gic();
    d.write(0, 4, 0x2);
    d.write(0x84, 4, 0xffff_ffff);
    d.write(0x104, 4, 0xf); // SPIs 32..35
    d.write(0xc08, 4, 0xaa); // all four edge
    for (i, p) in [(32, 0xa0), (33, 0x20), (34, 0x20), (35, 0x60)] {
        d.write(0x400 + i, 1, p);
        pulse(&g, i as u32);
    }
    assert_eq!(
        g.with_state(|s| s.candidates(0)),
        [(33, 0x20), (34, 0x20), (35, 0x60), (32, 0xa0)]
    );
    let mut lrs = [0u64; 2];
    g.fill_lrs(0, &mut lrs);
    assert_eq!(
        lr_ids(&lrs).iter().map(|f| f.0).collect::<Vec<_>>(),
        [33, 34]
    );
    assert_eq!(lrs[0] & (1 << 41), 0, "edge: no EOI exit");
    // Not taken: back to pending, offered again in order.
    g.sync_lrs(0, &mut lrs);
    assert_eq!(lrs, [0, 0]);
    assert_eq!(g.with_state(|s| s.candidates(0)).len(), 4);
}

#[test]
fn kernel_placed_interrupts_survive_a_sync() {
    let (g, _, mut r, _) = gic();
    g.with_state(|s| s.ctlr = 2);
    r.write(SGI_FRAME + 0x80, 4, 1 << 27);
    r.write(SGI_FRAME + 0x100, 4, 1 << 27);
    // The kernel injected the (level-configured) timer PPI; the guest has
    // not taken it yet.
    let mut lrs = [super::state::lr_value(27, 0xa0, true, false), 0, 0, 0];
    g.sync_lrs(0, &mut lrs);
    assert!(g.has_pending(0));
    g.fill_lrs(0, &mut lrs);
    assert_eq!(lr_ids(&lrs), [(27, 1)]);
    // Taken and completed: not pending again (its line is low).
    lrs[0] &= !(3 << 62);
    g.sync_lrs(0, &mut lrs);
    assert!(!g.has_pending(0));
    // Set pending through ISPENDR0, taken (active), not yet completed.
    r.write(SGI_FRAME + 0x200, 4, 1 << 27);
    g.fill_lrs(0, &mut lrs);
    lrs[0] = (lrs[0] & !(3 << 62)) | (2 << 62);
    g.sync_lrs(0, &mut lrs);
    assert!(!g.has_pending(0));
    assert!(g.with_state(|s| s.irq(0, 27).unwrap().active));
}

#[test]
fn the_kernel_makes_an_active_interrupt_pending_again() {
    let (g, mut d, _, _) = gic();
    enable_spis(&mut d);
    // An SPI the kernel injects (a virtio device's notification bound to
    // the vCPU): the guest took it, uvmm took it over at an exit.
    let mut lrs = [super::state::lr_value(40, 0xa0, false, true), 0, 0, 0];
    g.sync_lrs(0, &mut lrs);
    g.fill_lrs(0, &mut lrs);
    assert_eq!(lr_ids(&lrs), [(40, 2)]);
    // The device notified again meanwhile: the kernel made the list
    // register active and pending. That pending state is kept.
    lrs[0] |= 1 << 62;
    g.sync_lrs(0, &mut lrs);
    g.fill_lrs(0, &mut lrs);
    assert_eq!(lr_ids(&lrs), [(40, 3)]);
    // Completed: pending is left, then taken and completed: nothing.
    guest_sets(&mut lrs, 1);
    g.sync_lrs(0, &mut lrs);
    assert!(g.has_pending(0));
    g.fill_lrs(0, &mut lrs);
    assert_eq!(lr_ids(&lrs), [(40, 1)]);
    guest_sets(&mut lrs, 0);
    g.sync_lrs(0, &mut lrs);
    assert!(!g.has_pending(0));
}

#[test]
fn sgi_decode_and_delivery() {
    // INTID 5, Aff1 1, target list {0}.
    let v = (5 << 24) | (1 << 16) | 1;
    assert_eq!(
        Sgi::decode(v),
        Sgi {
            intid: 5,
            all_but_self: false,
            aff321: 0x100,
            range: 0,
            list: 1
        }
    );
    assert!(Sgi::decode(v).targets(0x100));
    assert!(!Sgi::decode(v).targets(0x0));
    // RS = 1: Aff0 16..31.
    let s = Sgi::decode((1 << 44) | 0b10);
    assert!(s.targets(17) && !s.targets(1));
    // Aff3 and Aff2.
    let s = Sgi::decode((2 << 48) | (3 << 32) | 1);
    assert_eq!(s.aff321, (2 << 32) | (3 << 16));
    assert!(s.targets((2 << 32) | (3 << 16)));

    let (g, _, mut r, kicks) = gic();
    g.with_state(|s| s.ctlr = 0x2);
    for cpu in 0..3u64 {
        let sgi = cpu * REDIST_STRIDE + SGI_FRAME;
        r.write(sgi + 0x80, 4, 0xffff);
        r.write(sgi + 0x100, 4, 0xffff);
    }
    g.send_sgi(0, (3 << 24) | 0b10); // SGI 3 to Aff0 1 = vCPU 1
    assert!(g.has_pending(1) && !g.has_pending(0) && !g.has_pending(2));
    assert_eq!(kicks[1].load(Ordering::SeqCst), 1);
    assert_eq!(r.read(REDIST_STRIDE + SGI_FRAME + 0x200, 4), 1 << 3);
    g.send_sgi(1, (1 << 40) | (7 << 24)); // SGI 7 to all but vCPU 1
    assert!(g.has_pending(0) && g.has_pending(2));
    assert_eq!(g.with_state(|s| s.candidates(1)), [(3, 0)]);
    let mut lrs = [0u64; 4];
    g.fill_lrs(0, &mut lrs);
    assert_eq!(lr_ids(&lrs), [(7, 1)]);
    assert!(!g.has_pending(0));
}

#[test]
fn wfi_wakes_on_interrupt() {
    let (g, mut d, _, _) = gic();
    d.write(0, 4, 0x2);
    d.write(0x84, 4, 1);
    d.write(0x104, 4, 1);
    assert!(!g.wait_for_interrupt(0, Duration::from_millis(1)));
    let g2 = g.clone();
    let t = std::thread::spawn(move || g2.wait_for_interrupt(0, Duration::from_secs(10)));
    // The interrupt comes while the thread waits (it counts itself first).
    while g.waiters.load(std::sync::atomic::Ordering::Acquire) == 0 {
        std::thread::yield_now();
    }
    let raised = std::time::Instant::now();
    g.set_level(0, 32, true);
    assert!(t.join().unwrap());
    assert!(
        raised.elapsed() < Duration::from_secs(5),
        "woken by the interrupt, not by the timeout"
    );
    assert_eq!(g.waiters.load(std::sync::atomic::Ordering::Acquire), 0);
}

#[test]
fn an_active_interrupt_keeps_the_priority_the_guest_took_it_with() {
    let (g, _, mut r, _) = gic();
    g.with_state(|s| s.ctlr = 2);
    r.write(SGI_FRAME + 0x80, 4, 1 << 27);
    r.write(SGI_FRAME + 0x100, 4, 1 << 27);
    // The guest configured 0xa0 for the timer PPI ...
    r.write(SGI_FRAME + 0x400 + 24, 4, 0xa0 << 24);
    // ... but the kernel injected it with priority 0 and the guest took it:
    // its end of interrupt drops priority 0, so the list register must go
    // back with 0, or the interrupt would stay active for ever.
    let mut lrs = [super::state::lr_value(27, 0, false, true), 0, 0, 0];
    g.sync_lrs(0, &mut lrs);
    g.fill_lrs(0, &mut lrs);
    assert_eq!(lr_ids(&lrs), [(27, 2)]);
    assert_eq!(lr::priority(lrs[0]), 0);
    // A new one, pending again, takes the configured priority.
    lrs[0] &= !(3 << 62);
    g.sync_lrs(0, &mut lrs);
    r.write(SGI_FRAME + 0x200, 4, 1 << 27);
    g.fill_lrs(0, &mut lrs);
    assert_eq!(lr_ids(&lrs), [(27, 1)]);
    assert_eq!(lr::priority(lrs[0]), 0xa0);
}

#[test]
fn quiet_entries_skip_the_scan_until_something_changes() {
    let (g, mut d, mut r, kicks) = gic();
    d.write(0, 4, 0x2);
    r.write(SGI_FRAME + 0x80, 4, 0xffff);
    r.write(SGI_FRAME + 0x100, 4, 0xffff);
    let mut lrs = [0u64; 4];
    // Nothing pending: the fill finds nothing and remembers it; empty
    // list registers come back without a take-back.
    g.fill_lrs(0, &mut lrs);
    assert_eq!(lrs, [0; 4]);
    assert!(!g.has_pending(0));
    g.sync_lrs(0, &mut lrs);
    g.fill_lrs(0, &mut lrs);
    assert_eq!(lrs, [0; 4]);
    // A change through any path is seen at the next fill.
    g.with_state(|s| s.irq_mut(0, 5).unwrap().pending = true);
    assert!(g.has_pending(0));
    g.fill_lrs(0, &mut lrs);
    assert_eq!(lr_ids(&lrs), [(5, 1)]);
    // The guest took and completed it: the list register comes back
    // empty and is taken back all the same (SGI 5 is no longer active).
    lrs = [0; 4];
    g.sync_lrs(0, &mut lrs);
    assert!(!g.with_state(|s| s.irq(0, 5).unwrap().active));
    g.fill_lrs(0, &mut lrs);
    assert_eq!(lrs, [0; 4]);
    // An SGI to itself: pending at the next fill, and no kick (the
    // sender fills its list registers before it enters again); one to
    // another vCPU kicks that one.
    g.send_sgi(0, (2 << 24) | 0b1);
    assert_eq!(kicks[0].load(Ordering::SeqCst), 0);
    g.fill_lrs(0, &mut lrs);
    assert_eq!(lr_ids(&lrs), [(2, 1)]);
    r.write(REDIST_STRIDE + SGI_FRAME + 0x80, 4, 0xffff);
    r.write(REDIST_STRIDE + SGI_FRAME + 0x100, 4, 0xffff);
    g.send_sgi(0, (2 << 24) | 0b10);
    assert_eq!(kicks[1].load(Ordering::SeqCst), 1);
}

/// The list registers a fill gives `cpu` (INTID, state), with room for
/// `n`.
fn fill(g: &Gic, cpu: usize, n: usize) -> (Vec<u64>, Vec<(u32, u64)>) {
    let mut lrs = vec![0u64; n];
    g.fill_lrs(cpu, &mut lrs);
    let ids = lr_ids(&lrs);
    (lrs, ids)
}

/// Sets the list registers' state (0 inactive, 1 pending, 2 active) as
/// the guest would by taking or completing their interrupts.
fn guest_sets(lrs: &mut [u64], state: u64) {
    for lr in lrs.iter_mut().filter(|l| **l != 0) {
        *lr = (*lr & !(3 << 62)) | (state << 62);
    }
}

/// Group 1 on, SPIs 32..95 group 1 and enabled, level, priority 0x80.
fn enable_spis(d: &mut Distributor) {
    d.write(0, 4, 0x2);
    for bank in 1..3u64 {
        d.write(0x80 + bank * 4, 4, 0xffff_ffff);
        d.write(0x100 + bank * 4, 4, 0xffff_ffff);
    }
    for n in 32..96u64 {
        d.write(0x400 + n, 1, 0x80);
    }
}

#[test]
fn a_pending_spi_follows_its_route_to_another_vcpu() {
    let (g, mut d, _, kicks) = gic();
    enable_spis(&mut d);
    g.set_level(0, 40, true);
    assert!(g.has_pending(0) && !g.has_pending(2));
    // In vCPU 0's list registers when its route changes to vCPU 2: vCPU 2
    // does not get it while vCPU 0 holds it.
    let (mut lrs0, ids) = fill(&g, 0, 4);
    assert_eq!(ids, [(40, 1)]);
    d.write(0x6000 + 40 * 8, 8, 0x100);
    assert!(!g.has_pending(2));
    assert_eq!(fill(&g, 2, 4).1, []);
    // vCPU 0 gives it back untaken: now vCPU 2's (kicked), not vCPU 0's.
    let before = kicks[2].load(Ordering::SeqCst);
    g.sync_lrs(0, &mut lrs0);
    assert_eq!(kicks[2].load(Ordering::SeqCst), before + 1);
    assert_eq!(fill(&g, 0, 4).1, []);
    let (mut lrs2, ids) = fill(&g, 2, 4);
    assert_eq!(ids, [(40, 1)]);
    // vCPU 2 takes it and completes it with the line low: nobody has it.
    guest_sets(&mut lrs2, 2);
    g.sync_lrs(2, &mut lrs2);
    g.set_level(0, 40, false);
    let (mut lrs2, ids) = fill(&g, 2, 4);
    assert_eq!(ids, [(40, 2)], "active: given back to be completed");
    guest_sets(&mut lrs2, 0);
    g.sync_lrs(2, &mut lrs2);
    for cpu in 0..3 {
        assert!(!g.has_pending(cpu));
        assert_eq!(fill(&g, cpu, 4).1, []);
    }
}

#[test]
fn an_spi_to_any_vcpu_goes_to_the_first_awake_one() {
    let (g, mut d, mut r, _) = gic();
    enable_spis(&mut d);
    d.write(0x6000 + 50 * 8, 8, 1 << 31);
    r.write(REDIST_STRIDE + 0x14, 4, 0); // vCPU 1 awake
    g.set_level(0, 50, true);
    // vCPU 0's fill drops it from vCPU 0's set: it is vCPU 1's.
    assert_eq!(fill(&g, 0, 4).1, []);
    assert!(g.has_pending(1));
    // vCPU 0 wakes: the first awake one now, it finds it again.
    r.write(0x14, 4, 0);
    assert!(g.has_pending(0) && !g.has_pending(1));
    assert_eq!(fill(&g, 0, 4).1, [(50, 1)]);
}

#[test]
fn fills_give_the_highest_priorities_first_among_many() {
    let g = Gic::new(&[0, 1], 960);
    let mut d = g.distributor();
    d.write(0, 4, 0x2);
    let mut seed = 7u32;
    let mut next = move || {
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        seed >> 16
    };
    for bank in 1..31u64 {
        d.write(0x80 + bank * 4, 4, 0xffff_ffff);
        d.write(0x100 + bank * 4, 4, 0xffff_ffff);
        d.write(0xc00 + bank * 8, 4, 0xaaaa_aaaa); // edge
        d.write(0xc00 + bank * 8 + 4, 4, 0xaaaa_aaaa);
    }
    // 200 edge SPIs fire, at 8 priorities, half routed to vCPU 1.
    let mut fired = Vec::new();
    for _ in 0..200 {
        let n = 32 + next() % 960;
        let prio = (next() % 8) as u8 * 0x10;
        d.write(0x400 + u64::from(n), 1, u64::from(prio));
        let cpu = (next() % 2) as u64;
        d.write(0x6000 + u64::from(n) * 8, 8, cpu);
        pulse(&g, n);
        fired.retain(|&(m, _, _)| m != n);
        fired.push((n, prio, cpu as usize));
    }
    for cpu in 0..2 {
        // The reference: every fired one for `cpu`, by priority then INTID.
        let mut want: Vec<(u32, u8)> = fired
            .iter()
            .filter(|f| f.2 == cpu)
            .map(|f| (f.0, f.1))
            .collect();
        want.sort_by_key(|&(n, p)| (p, n));
        assert_eq!(g.with_state(|s| s.candidates(cpu)), want);
        // The guest takes and completes 4 at a time.
        let mut got = Vec::new();
        loop {
            let (mut lrs, ids) = fill(&g, cpu, 4);
            if ids.is_empty() {
                break;
            }
            assert!(ids.iter().all(|&(_, state)| state == 1));
            got.extend(lrs.iter().map(|&l| (lr::intid(l), lr::priority(l))));
            guest_sets(&mut lrs, 0);
            g.sync_lrs(cpu, &mut lrs);
        }
        let got: Vec<_> = got.into_iter().filter(|&(n, _)| n != 0).collect();
        assert_eq!(got, want, "vCPU {cpu}");
    }
}

#[test]
fn active_interrupts_come_first_then_pending_ones() {
    let (g, mut d, _, _) = gic();
    enable_spis(&mut d);
    d.write(0x400 + 60, 1, 0x10);
    for n in [33, 34, 35] {
        g.set_level(0, n, true);
    }
    let (mut lrs, ids) = fill(&g, 0, 2);
    assert_eq!(ids, [(33, 1), (34, 1)]);
    // The guest takes both; then a higher-priority one comes.
    guest_sets(&mut lrs, 2);
    g.sync_lrs(0, &mut lrs);
    g.set_level(0, 60, true);
    // Only two list registers: the active ones keep them (pending as
    // well: their lines are still high).
    let (mut lrs, ids) = fill(&g, 0, 2);
    assert_eq!(ids, [(33, 3), (34, 3)]);
    g.sync_lrs(0, &mut lrs);
    g.set_level(0, 33, false);
    let (mut lrs, ids) = fill(&g, 0, 4);
    assert_eq!(ids, [(33, 2), (34, 3), (60, 1), (35, 1)]);
    g.sync_lrs(0, &mut lrs);
}

/// One entry and exit of `cpu` (four list registers): what the fill gave
/// it, after which the guest leaves each in `state` (see `guest_sets`).
fn round(g: &Gic, cpu: usize, state: u64) -> Vec<(u32, u64)> {
    let (mut lrs, ids) = fill(g, cpu, 4);
    guest_sets(&mut lrs, state);
    g.sync_lrs(cpu, &mut lrs);
    ids
}

/// An edge on line `n`.
fn pulse(g: &Gic, n: u32) {
    g.set_level(0, n, true);
    g.set_level(0, n, false);
}

#[test]
fn level_and_edge_after_completion_and_clearing() {
    let (g, mut d, _, _) = gic();
    enable_spis(&mut d);
    d.write(0xc08, 4, 0b10 << 2); // SPI 33 edge, 32 level
    // Level 32: taken; while active with its line still high it goes back
    // active and pending, which the guest's completion leaves pending.
    g.set_level(0, 32, true);
    assert_eq!(round(&g, 0, 2), [(32, 1)]);
    assert_eq!(round(&g, 0, 1), [(32, 3)]);
    // Given pending and completed without the exit that would show it
    // active: pending again by its line.
    assert_eq!(round(&g, 0, 0), [(32, 1)]);
    assert_eq!(round(&g, 0, 1), [(32, 1)]);
    // Active, its line lowered by the guest's device access: active only.
    assert_eq!(round(&g, 0, 2), [(32, 1)]);
    g.set_level(0, 32, false);
    assert_eq!(round(&g, 0, 0), [(32, 2)]);
    assert!(!g.has_pending(0), "its line is low");
    // Edge 33: fires, taken, fires again while active: given back active
    // and pending; completed once: pending from the second edge only.
    pulse(&g, 33);
    assert_eq!(round(&g, 0, 2), [(33, 1)]);
    pulse(&g, 33);
    assert_eq!(round(&g, 0, 1), [(33, 3)]);
    assert_eq!(round(&g, 0, 0), [(33, 1)]);
    assert!(!g.has_pending(0));
    // Pending, disabled, cleared, enabled: cleared stays cleared;
    // disabled and enabled again it comes.
    pulse(&g, 33);
    d.write(0x184, 4, 1 << 1);
    assert!(!g.has_pending(0) && round(&g, 0, 0).is_empty());
    d.write(0x104, 4, 1 << 1);
    assert!(g.has_pending(0));
    d.write(0x284, 4, 1 << 1);
    assert!(!g.has_pending(0) && round(&g, 0, 0).is_empty());
    d.write(0x204, 4, 1 << 1);
    assert_eq!(round(&g, 0, 0), [(33, 1)]);
}

#[test]
fn a_line_that_keeps_its_level_changes_nothing() {
    let (g, mut d, _, kicks) = gic();
    enable_spis(&mut d);
    let mut lrs = [0u64; 4];
    g.fill_lrs(0, &mut lrs);
    let changes = g.changes.load(Ordering::SeqCst);
    g.set_level(0, 33, false);
    assert_eq!(g.changes.load(Ordering::SeqCst), changes, "low stays low");
    g.set_level(0, 33, true);
    g.set_level(0, 33, true);
    assert_eq!(kicks[0].load(Ordering::SeqCst), 1, "one kick per rise");
    assert_eq!(g.changes.load(Ordering::SeqCst), changes + 1);
    g.fill_lrs(0, &mut lrs);
    assert_eq!(lr_ids(&lrs), [(33, 1)]);
}

//! The runtime's own calls: attaching a dataspace, the thread's
//! capability, UTCB-area pages.

use super::thread::spawn;
use super::*;
use crate::linux::l4re_sys;

/// A runtime with 4 MiB dataspace 0x900 attached with `prot`: it, the
/// dataspace, the size and the address.
fn attached(prot: u64) -> (Runtime<Fake>, u64, u64, u64) {
    let mut rt = runtime();
    let ds = 0x900;
    let len = 4u64 << 20;
    rt.b.dss.insert(ds, vec![0; len as usize]);
    let a = call(&mut rt, 1, l4re_sys::ATTACH, &[ds, len, 0, prot]) as u64;
    assert!(a >= MMAP_BASE && a.is_multiple_of(2 << 20), "{a:#x}");
    (rt, ds, len, a)
}

#[test]
fn attach_maps_everything_and_keeps_the_capability() {
    let (mut rt, ds, len, a) = attached(3);
    // Mapped at once, every page, from the dataspace.
    for p in (a..a + len).step_by(PAGE as usize) {
        assert_eq!(rt.b.pages.get(&p).map(|e| (e.0, e.1)), Some((ds, p - a)));
    }
    // munmap detaches, but the capability stays the program's.
    assert_eq!(call(&mut rt, 1, 215, &[a, len]), 0);
    assert!(rt.b.released.is_empty());
    // Refusals: no size, a misaligned offset, a runtime capability, none.
    assert_eq!(call(&mut rt, 1, l4re_sys::ATTACH, &[ds, 0, 0, 3]), -EINVAL);
    assert_eq!(
        call(&mut rt, 1, l4re_sys::ATTACH, &[ds, len, 0x10, 3]),
        -EINVAL
    );
    assert_eq!(
        call(&mut rt, 1, l4re_sys::ATTACH, &[0x100, len, 0, 3]),
        -EPERM
    );
    assert_eq!(
        call(&mut rt, 1, l4re_sys::ATTACH, &[0x901, len, 0, 3]),
        -EINVAL
    );
    assert!(
        rt.regions().lookup(MMAP_BASE).is_none(),
        "nothing left behind"
    );
}

#[test]
fn attach_on_demand_maps_at_the_first_fault() {
    let (rt, _, len, a) = attached(3 | l4re_sys::ATTACH_ON_DEMAND);
    assert!(rt.b.pages.range(a..a + len).next().is_none(), "nothing yet");
    let r = rt.regions().lookup(a).copied().expect("attached");
    assert!(r.prot.read() && r.prot.write() && !r.prot.exec());
}

#[test]
fn thread_cap_and_utcb_pages() {
    let mut rt = runtime();
    let (_, slot, _, _) = spawn(&mut rt);
    let cap = call(&mut rt, slot, l4re_sys::THREAD_CAP, &[]) as u64;
    assert_eq!(rt.b.threads[&cap].0, utcb(slot));
    // Pages from the top of the area; no thread gets their slots.
    let top = utcb(UTCB_SLOTS - 4);
    assert_eq!(call(&mut rt, 1, l4re_sys::UTCB_PAGE, &[]) as u64, top);
    assert_eq!(
        call(&mut rt, 1, l4re_sys::UTCB_PAGE, &[]) as u64,
        top - PAGE
    );
    let mut slots = vec![];
    while rt.thread_count() < UTCB_SLOTS - 1 - 8 {
        slots.push(spawn(&mut rt).1);
    }
    assert!(slots.iter().all(|&s| s < UTCB_SLOTS - 8));
    // All pages taken (threads in every other one).
    assert_eq!(call(&mut rt, 1, l4re_sys::UTCB_PAGE, &[]), -ENOMEM);
}

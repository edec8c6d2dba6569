//! Memory: the root task's memory source (sigma0 protocol), mapping into
//! other tasks, rights, grant, unmap (recursive, partial rights, along a
//! chain of tasks), refusals; the same for capabilities.

use l4::abi::proto::unmap;
use l4::{CapRights, Fpage, MemRights, SendItem, base};

use crate::fw::{Ctx, Fail, R};
use crate::rt::{
    self, Page, Space, bare_task, copy_cap, expect_fault, expect_value, fresh_va, marker, valid,
};

tests! {
    "sigma0.map_free_page" => sigma0_page,
    "sigma0.map_free_2m" => sigma0_2m,
    "sigma0.bad_order_refused" => sigma0_bad_order,
    "sigma0.non_module_refused" => sigma0_module_refused,
    "sigma0.device_refuses_ram" => sigma0_device_ram,
    "sigma0.map_device_pl031" => sigma0_device,
    "sigma0.factory_create_sigma0" => sigma0_create,
    "mapping.into_other_task" => into_other_task,
    "mapping.read_only" => read_only,
    "mapping.unmap_revokes_derived" => unmap_revokes_derived,
    "mapping.unmap_write_right_only" => unmap_write_only,
    "mapping.unmap_chain_of_three_tasks" => chain_of_three,
    "mapping.unmap_in_middle_of_chain" => chain_middle,
    "mapping.rights_cannot_grow" => rights_cannot_grow,
    "mapping.grant_moves" => grant_moves,
    "mapping.unowned_memory_maps_nothing" => unowned_memory,
    "mapping.superpage" => superpage,
    "mapping.capability_chain_revoked" => capability_chain,
    "mapping.kernel_memory_exhaustion_refused" => kmem_exhaustion,
}

/// The PL031 real-time clock of QEMU's virt machine.
pub const PL031: u64 = 0x0901_0000;
/// Start of RAM on QEMU's virt machine.
const RAM_BASE: u64 = 0x4000_0000;

/// A page of free RAM, 1:1 and writable.
fn sigma0_page() -> R {
    let p = Page::new(12)?;
    ensure!(p.addr() >= RAM_BASE, "page at {:#x}, below RAM", p.addr());
    p.write(0, 0x1122_3344);
    p.write(4088, 0x5566_7788);
    ensure_eq!(p.read(0), 0x1122_3344, "first word");
    ensure_eq!(p.read(4088), 0x5566_7788, "last word");
    Ok(())
}

/// 2 MiB in one piece, aligned to its size.
fn sigma0_2m() -> R {
    let p = Page::new(21)?;
    p.write(0, 1);
    p.write(p.size() - 8, 2);
    ensure_eq!(
        (p.read(0), p.read(p.size() - 8)),
        (1, 2),
        "first and last word"
    );
    Ok(())
}

/// Sizes outside 4 KiB..1 GiB (orders 12..=30) are refused.
fn sigma0_bad_order() -> R {
    expect_some_err!(base::PAGER.map_free(11), "map 2 KiB");
    expect_some_err!(base::PAGER.map_free(31), "map 2 GiB");
    expect_some_err!(base::PAGER.map_free(40), "map 1 TiB");
    Ok(())
}

/// Memory that is not a boot module is refused by the module call.
fn sigma0_module_refused() -> R {
    let p = Page::new(12)?;
    expect_some_err!(
        base::PAGER.map_module(p.addr(), 4096),
        "free RAM as a boot module"
    );
    expect_some_err!(
        base::PAGER.map_module(PL031, 4096),
        "a device as a boot module"
    );
    Ok(())
}

/// The device call does not hand out RAM.
fn sigma0_device_ram() -> R {
    expect_some_err!(base::PAGER.map_device(RAM_BASE, 12), "RAM as a device");
    Ok(())
}

/// Reads a 32-bit device register.
pub fn mmio_read(addr: u64) -> u32 {
    // SAFETY: callers pass registers of the PL031, which sigma0 mapped 1:1
    // as device memory; reading them has no side effects.
    unsafe { (addr as *const u32).read_volatile() }
}

/// Writes a 32-bit device register.
pub fn mmio_write(addr: u64, v: u32) {
    // SAFETY: callers pass registers of the PL031 (mapped as in
    // `mmio_read`), which only this test suite uses.
    unsafe { (addr as *mut u32).write_volatile(v) }
}

/// Device memory 1:1: the PL031's identification registers read right.
fn sigma0_device() -> R {
    let a = base::PAGER.map_device(PL031, 12).ctx("map the PL031")?;
    ensure_eq!(a, PL031, "device address");
    ensure_eq!(mmio_read(PL031 + 0xfe0), 0x31, "PL031 PeriphID0");
    ensure_eq!(mmio_read(PL031 + 0xff0), 0x0d, "PL031 PCellID0");
    Ok(())
}

/// sigma0 as a factory makes only sigma0 capabilities, and they work; a
/// factory refuses to make one.
fn sigma0_create() -> R {
    let s = rt::Slot::<l4::Sigma0>::empty()?;
    let cap = base::PAGER.create_sigma0(s.idx()).ctx("create sigma0")?;
    let a = cap.map_device(PL031, 12).ctx("map the PL031 through it")?;
    ensure_eq!(a, PL031, "device address");
    let other = rt::Slot::<l4::Sigma0>::empty()?;
    expect_some_err!(
        l4::Cap::<l4::Factory>::from_index(base::PAGER.index()).create_vm(other.idx()),
        "a Vm from sigma0"
    );
    expect_some_err!(
        l4::Cap::<l4::Sigma0>::from_index(base::FACTORY.index()).create_sigma0(other.idx()),
        "sigma0 from a factory"
    );
    Ok(())
}

/// A page mapped into another task is shared: both see each other's
/// writes.
fn into_other_task() -> R {
    let (p, x, s) = page_in_new_task(0x201, MemRights::RW)?;
    rt::expect_marker(Some(&s), x, 0x201, "read in the task")?;
    expect_value(
        rt::probe_write(Some(&s), x, 0x4242)?,
        0x4242,
        "write in the task",
    )?;
    ensure_eq!(p.read(0), 0x4242, "the write as ktest sees it");
    Ok(())
}

/// A read-only mapping can be read; a write faults with the write flag.
fn read_only() -> R {
    let (p, x, s) = page_in_new_task(0x202, MemRights::R)?;
    rt::expect_marker(Some(&s), x, 0x202, "read")?;
    let pf = expect_fault(rt::probe_write(Some(&s), x, 1)?, "write")?;
    ensure!(pf.write, "write fault without the write flag");
    ensure_eq!(pf.addr, x, "fault address");
    ensure_eq!(p.read(0), marker(0x202), "the page after the refused write");
    Ok(())
}

/// Unmap without `ALL_SPACES` revokes the mappings derived from a page
/// and keeps the page itself.
fn unmap_revokes_derived() -> R {
    let (p, x, s) = page_in_new_task(0x203, MemRights::RW)?;
    rt::expect_marker(Some(&s), x, 0x203, "before the unmap")?;
    base::TASK
        .unmap(p.fpage(MemRights::RWX), unmap::OTHER_SPACES)
        .ctx("unmap")?;
    expect_fault(rt::probe_read(Some(&s), x)?, "the task after the unmap")?;
    rt::expect_marker(None, p.addr(), 0x203, "ktest after the unmap")
}

/// Unmapping only `W` leaves a read-only mapping.
fn unmap_write_only() -> R {
    let (p, x, s) = page_in_new_task(0x204, MemRights::RW)?;
    base::TASK
        .unmap(p.fpage(MemRights::W), unmap::OTHER_SPACES)
        .ctx("unmap W")?;
    rt::expect_marker(Some(&s), x, 0x204, "read after unmapping W")?;
    let pf = expect_fault(rt::probe_write(Some(&s), x, 1)?, "write after unmapping W")?;
    ensure!(pf.write, "fault without the write flag");
    Ok(())
}

/// A page holding `marker(n)`, mapped with `rights` at a fresh address of
/// a new task: (page, address, task).
pub fn page_in_new_task(n: u64, rights: MemRights) -> Result<(Page, u64, Space), Fail> {
    let p = Page::with_marker(marker(n))?;
    let x = fresh_va();
    let s = Space::new()?;
    s.map_page(&p, x, rights)?;
    Ok((p, x, s))
}

/// ktest's page → a → b → c, each at `x`; returns the three spaces.
fn chain(p: &Page, x: u64) -> Result<[Space; 3], Fail> {
    let spaces = [Space::new()?, Space::new()?, Space::new()?];
    spaces[0].map_page(p, x, MemRights::RW)?;
    for i in 1..3 {
        spaces[i]
            .cap()
            .map_mem(spaces[i - 1].cap(), x, 12, MemRights::RW, x)
            .ctx("map along the chain")?;
    }
    Ok(spaces)
}

/// Unmap in ktest revokes the page along a chain of three tasks.
fn chain_of_three() -> R {
    let p = Page::with_marker(marker(0x205))?;
    let x = fresh_va();
    let [a, b, c] = chain(&p, x)?;
    rt::expect_marker(Some(&c), x, 0x205, "the end of the chain")?;
    base::TASK
        .unmap(p.fpage(MemRights::RWX), unmap::OTHER_SPACES)
        .ctx("unmap")?;
    expect_fault(rt::probe_read(Some(&c), x)?, "third task after the unmap")?;
    expect_fault(rt::probe_read(Some(&b), x)?, "second task after the unmap")?;
    expect_fault(rt::probe_read(Some(&a), x)?, "first task after the unmap")?;
    rt::expect_marker(None, p.addr(), 0x205, "ktest after the unmap")
}

/// Unmap with `ALL_SPACES` in the middle task revokes its mapping and what
/// came from it, not what it came from.
fn chain_middle() -> R {
    let p = Page::with_marker(marker(0x206))?;
    let x = fresh_va();
    let [a, b, c] = chain(&p, x)?;
    b.cap()
        .unmap(Fpage::mem(x, 12, MemRights::RWX), unmap::ALL_SPACES)
        .ctx("unmap in the middle task")?;
    expect_fault(rt::probe_read(Some(&c), x)?, "third task")?;
    expect_fault(rt::probe_read(Some(&b), x)?, "second task")?;
    rt::expect_marker(Some(&a), x, 0x206, "first task")
}

/// Passing on a read-only mapping as read-write gives read-only.
fn rights_cannot_grow() -> R {
    let (p, x, a) = page_in_new_task(0x207, MemRights::R)?;
    let b = Space::new()?;
    let _ = b.cap().map_mem(a.cap(), x, 12, MemRights::RW, x);
    rt::expect_marker(Some(&b), x, 0x207, "read in the second task")?;
    let pf = expect_fault(rt::probe_write(Some(&b), x, 1)?, "write in the second task")?;
    ensure!(pf.write, "fault without the write flag");
    ensure_eq!(p.read(0), marker(0x207), "page after the refused write");
    Ok(())
}

/// A grant moves a mapping from one task to another.
fn grant_moves() -> R {
    let (_p, x, a) = page_in_new_task(0x208, MemRights::RW)?;
    let b = Space::new()?;
    b.cap()
        .map(
            a.cap(),
            SendItem::grant(Fpage::mem(x, 12, MemRights::RW), x),
        )
        .ctx("grant")?;
    rt::expect_marker(Some(&b), x, 0x208, "receiver of the grant")?;
    expect_fault(rt::probe_read(Some(&a), x)?, "grantor after the grant").map(|_| ())
}

/// Mapping memory the source does not have maps nothing.
fn unowned_memory() -> R {
    let s = Space::new()?;
    let z = fresh_va();
    let x = fresh_va();
    let _ = s.cap().map_mem(base::TASK, z, 12, MemRights::RW, x);
    expect_fault(
        rt::probe_read(Some(&s), x)?,
        "the task after mapping unowned memory",
    )
    .map(|_| ())
}

/// A 2 MiB flexpage maps in one piece.
fn superpage() -> R {
    let p = Page::new(21)?;
    p.write(0x1f_f000, marker(0x209));
    let s = Space::new()?;
    let x = fresh_va();
    s.map_page(&p, x, MemRights::RW)?;
    rt::expect_marker(
        Some(&s),
        x + 0x1f_f000,
        0x209,
        "last page of the 2 MiB mapping",
    )
}

/// Unmapping a capability revokes it along a chain of three tasks.
fn capability_chain() -> R {
    let k = copy_cap(base::LOG, CapRights::RW)?;
    let t = [bare_task()?, bare_task()?, bare_task()?];
    t[0].map_cap(base::TASK, k.idx(), CapRights::RW, 20)
        .ctx("map into the first task")?;
    for i in 1..3 {
        t[i].map_cap(t[i - 1].cap(), 20, CapRights::RW, 20)
            .ctx("map along the chain")?;
    }
    ensure!(t[2].cap_valid(20).ctx("cap_valid")?, "chain did not arrive");
    base::TASK
        .unmap(Fpage::obj(k.idx(), 0, CapRights::RWSD), unmap::OTHER_SPACES)
        .ctx("unmap")?;
    for (i, task) in t.iter().enumerate() {
        ensure!(
            !task.cap_valid(20).ctx("cap_valid")?,
            "task {} still has the capability",
            i + 1
        );
    }
    ensure!(valid(k.idx())?, "the named capability went too");
    Ok(())
}

/// Mapping without end runs the kernel out of memory for the mappings
/// (translation tables from the quota, records of the mapping database):
/// the kernel refuses the map that does not fit (and keeps running);
/// deleting the task gives the memory back.
fn kmem_exhaustion() -> R {
    /// Far more 2 MiB mappings than any kernel heap holds the records of.
    const LIMIT: u64 = 1 << 16;
    const BASE: u64 = 0x2000_0000_0000;
    let p = Page::new(21)?;
    p.write(0, marker(0x20a));
    let map = |s: &Space, i: u64| {
        s.cap()
            .map_mem(base::TASK, p.addr(), 21, MemRights::RW, BASE + (i << 21))
    };
    let s = Space::new()?;
    let mut n = 0;
    let err = loop {
        if n == LIMIT {
            fail!("{LIMIT} mappings of 2 MiB went through");
        }
        match map(&s, n) {
            Ok(()) => n += 1,
            Err(e) => break e,
        }
    };
    ensure!(n > 0, "the first mapping failed: {err:?}");
    ensure_eq!(err, l4::Error::NoMem, "error after {n} mappings");
    drop(s);
    // The memory came back: the same again works.
    let s = Space::new()?;
    for i in 0..n.min(64) {
        if let Err(e) = map(&s, i) {
            fail!("map {i} after deleting the first task: {e:?}");
        }
    }
    rt::expect_marker(Some(&s), BASE, 0x20a, "read in the second task")
}

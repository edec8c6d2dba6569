//! Page faults: the message to the pager, the reply that maps memory and
//! resumes the thread, fault flags, faults in other tasks and through
//! gates, and a thread without a pager.

use l4::abi::fault::PageFault;
use l4::ipc;
use l4::{MemRights, MsgTag, base};

use crate::fw::{Ctx, Fail, R};
use crate::rt::{
    self, Entry, Opts, Page, Space, WAIT_US, Worker, fresh_va, in_text, marker, reply_map,
};

tests! {
    "faults.pager_maps_and_resumes" => maps_and_resumes,
    "faults.write_fault_flag" => write_flag,
    "faults.exec_fault_flag" => exec_flag,
    "faults.reply_without_mapping_refaults" => refault,
    "faults.deferred_reply_by_send" => deferred_reply,
    "faults.read_only_mapping_write_refaults" => read_only_write,
    "faults.in_other_task" => other_task,
    "faults.pager_through_gate" => pager_gate,
    "faults.no_pager_stops_thread" => no_pager,
}

/// Checks a fault message against what was expected.
fn check(pf: &PageFault, addr: u64, write: bool, exec: bool) -> R {
    ensure_eq!(pf.addr, addr, "fault address");
    ensure_eq!(pf.write, write, "write flag");
    ensure_eq!(pf.exec, exec, "exec flag");
    Ok(())
}

/// A read of unmapped memory reaches the pager with the address and pc;
/// the reply's mapping resumes the thread, which reads the page.
fn maps_and_resumes() -> R {
    let p = Page::with_marker(0)?;
    p.write(0x808, marker(0x301));
    let x = fresh_va() + 0x808;
    let w = rt::spawn_default(rt::probe_read_entry, x, 0)?;
    let pf = w.page_fault()?;
    check(&pf, x, false, false)?;
    ensure!(in_text(pf.pc), "pc {:#x} not in ktest's code", pf.pc);
    reply_map(&p, MemRights::RW, x & !0xfff)?;
    ensure_eq!(
        w.signal_word()?,
        marker(0x301),
        "value read after the fault"
    );
    Ok(())
}

/// A write fault has the write flag; the thread's write lands in the page.
fn write_flag() -> R {
    let p = Page::with_marker(0)?;
    let x = fresh_va();
    let w = rt::spawn_default(rt::probe_write_entry, x, 0x99)?;
    let pf = w.page_fault()?;
    check(&pf, x, true, false)?;
    reply_map(&p, MemRights::RW, x)?;
    ensure_eq!(w.signal_word()?, 0x99, "value read back");
    ensure_eq!(p.read(0), 0x99, "the write in the page");
    Ok(())
}

/// A page holding `marker(n)` and a thread (started with `opts`) that
/// runs `entry` with a fresh, unmapped address and `v`: the page, the
/// address and the thread.
fn prober(n: u64, entry: Entry, v: u64, opts: &Opts<'_>) -> Result<(Page, u64, Worker), Fail> {
    let p = Page::with_marker(marker(n))?;
    let x = fresh_va();
    let w = rt::spawn(entry, x, v, opts)?;
    Ok((p, x, w))
}

/// Jumps to `va` (never mapped: the fault is not resolved).
extern "C" fn jump_entry(va: u64, _: u64) {
    // SAFETY: deliberately branches to an unmapped address; the fault goes
    // to the pager (the main thread), which deletes the thread.
    unsafe { core::arch::asm!("br {0}", in(reg) va, options(noreturn)) }
}

/// An instruction fetch fault has the exec flag and pc = the address.
fn exec_flag() -> R {
    let x = fresh_va();
    let w = rt::spawn_default(jump_entry, x, 0)?;
    let pf = w.page_fault()?;
    check(&pf, x, false, true)?;
    ensure_eq!(pf.pc, x, "pc of an instruction fetch fault");
    Ok(())
}

/// A reply without a mapping makes the thread fault again.
fn refault() -> R {
    let (p, x, w) = prober(0x302, rt::probe_read_entry, 0, &Opts::new())?;
    let first = w.page_fault()?;
    ipc::reply(MsgTag::new(0, 0, 0, 0)).ctx("empty reply")?;
    let second = w.page_fault()?;
    ensure_eq!(second, first, "second fault");
    reply_map(&p, MemRights::RW, x)?;
    ensure_eq!(w.signal_word()?, marker(0x302), "value read");
    Ok(())
}

/// A pager may answer a fault later with a plain send (the mapping) to
/// the faulting thread's capability.
fn deferred_reply() -> R {
    let (p, x, w) = prober(0x306, rt::probe_read_entry, 0, &Opts::new())?;
    check(&w.page_fault()?, x, false, false)?;
    // Answer something else first: the reply capability is gone then.
    ipc::sleep(l4::Timeout::from_us(1_000)).ctx("sleep")?;
    let item = l4::SendItem::map(p.fpage(MemRights::R), x);
    l4::utcb::set_mrs(&item.to_words());
    ipc::ipc_send(
        w.cap().sel(),
        MsgTag::new(0, 0, 1, 0),
        ipc::timeouts_us(WAIT_US),
    )
    .0
    .ctx("send the mapping to the faulting thread")?;
    ensure_eq!(w.signal_word()?, marker(0x306), "value read");
    Ok(())
}

/// A read-only mapping does not resolve a write fault.
fn read_only_write() -> R {
    let (p, x, w) = prober(0x303, rt::probe_write_entry, 5, &Opts::new())?;
    check(&w.page_fault()?, x, true, false)?;
    reply_map(&p, MemRights::R, x)?;
    check(&w.page_fault()?, x, true, false)?;
    ensure_eq!(p.read(0), marker(0x303), "the read-only page was written");
    Ok(())
}

/// The pager of a thread in another task maps into that task.
fn other_task() -> R {
    let s = Space::new()?;
    let (p, x, w) = prober(0x304, rt::probe_read_entry, 0, &Opts::new().space(&s))?;
    check(&w.page_fault()?, x, false, false)?;
    reply_map(&p, MemRights::R, x)?;
    ensure_eq!(
        w.signal_word()?,
        marker(0x304),
        "value read in the other task"
    );
    Ok(())
}

/// A gate as pager: the fault arrives with the gate's label.
fn pager_gate() -> R {
    let g = rt::gate(0x4440, Some(base::THREAD))?;
    let opts = Opts::new().pager(g.idx());
    let (p, x, w) = prober(0x305, rt::probe_read_entry, 0, &opts)?;
    let m = ipc::wait_msg(ipc::recv_timeout_us(WAIT_US)).ctx("wait for the fault")?;
    ensure!(
        m.tag.is_page_fault(),
        "expected a page fault, got {}",
        rt::describe(&m)
    );
    // With the pager capability's W and S rights in the low bits.
    ensure_eq!(m.label, 0x4440 | 3, "label of the fault message");
    check(
        &PageFault::from_words([m.word(0), m.word(1)]),
        x,
        false,
        false,
    )?;
    reply_map(&p, MemRights::R, x)?;
    ensure_eq!(w.signal_word()?, marker(0x305), "value read");
    Ok(())
}

/// Without a pager the faulting thread stops: nothing arrives, and the
/// kernel goes on.
fn no_pager() -> R {
    let x = fresh_va();
    let w = rt::spawn(rt::probe_read_entry, x, 0, &Opts::new().no_pager())?;
    w.quiet(rt::QUIET_US)?;
    ensure!(
        rt::valid(w.idx())?,
        "the stopped thread's capability is gone"
    );
    base::LOG.write(b"").ctx("the kernel after the fault")
}

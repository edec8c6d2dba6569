//! Threads: start with arguments, UTCB, reading and changing registers,
//! stopping, rights, bind refusals, statistics, thread control registers.

use l4::abi::proto::ex_regs;
use l4::{CapRights, Error, ThreadControl, base, utcb};

use crate::fw::{Ctx, R};
use crate::rt::{self, Opts, Space, copy_cap, in_text, signal};

tests! {
    "thread.start_with_arguments" => start,
    "thread.utcb_in_tpidrro" => utcb_address,
    "thread.ex_regs_reads_pc_sp" => read_regs,
    "thread.ex_regs_redirects" => redirect,
    "thread.ex_regs_stops_spinning_thread" => stop_spinning,
    "thread.missing_w_right_perm" => missing_w,
    "thread.bind_outside_utcb_area_refused" => bind_bad_utcb,
    "thread.stats" => stats,
    "thread.tcr_user_words_preserved" => tcr_preserved,
}

/// A started thread runs its function with its arguments.
fn start() -> R {
    let w = rt::spawn_default(rt::signal_args_entry, 0x1111, 0x2222)?;
    let m = w.signal()?;
    ensure_eq!((m.word(0), m.word(1)), (0x1111, 0x2222), "arguments");
    Ok(())
}

/// Reports `TPIDRRO_EL0`.
extern "C" fn utcb_entry(_: u64, _: u64) {
    signal(&[utcb::addr()]);
}

/// `TPIDRRO_EL0` holds the UTCB address given at bind, in ktest's task
/// and in another.
fn utcb_address() -> R {
    let w = rt::spawn_default(utcb_entry, 0, 0)?;
    ensure_eq!(w.signal_word()?, w.utcb, "UTCB address");
    let s = Space::new()?;
    let v = rt::spawn(utcb_entry, 0, 0, &Opts::new().space(&s))?;
    ensure_eq!(v.signal_word()?, v.utcb, "UTCB address in another task");
    Ok(())
}

/// ex_regs without changes reads pc and sp of a blocked thread.
fn read_regs() -> R {
    let w = rt::spawn_default(rt::park_entry, 0, 0)?;
    rt::sleep_us(10_000)?;
    let r = w.cap().read_regs().ctx("ex_regs")?;
    ensure!(in_text(r.pc), "pc {:#x} not in ktest's code", r.pc);
    let (lo, hi) = w.stack_range();
    ensure!((lo..hi).contains(&r.sp), "sp {:#x} outside the stack", r.sp);
    ensure_eq!(r.pstate & 0xf, 0, "mode bits (EL0t)");
    Ok(())
}

/// ex_regs moves a blocked thread to another function.
fn redirect() -> R {
    let w = rt::spawn_default(rt::park_entry, 0, 0)?;
    rt::sleep_us(10_000)?;
    w.restart(rt::signal_args_entry, 0x77, 0x88, ex_regs::CANCEL)?;
    let m = w.signal()?;
    ensure_eq!(
        (m.word(0), m.word(1)),
        (0x77, 0x88),
        "report after the redirect"
    );
    Ok(())
}

/// ex_regs stops a thread spinning on another CPU (it parks).
fn stop_spinning() -> R {
    let w = rt::spinner_elsewhere()?;
    let park = rt::ktest_park as *const () as u64;
    w.cap()
        .ex_regs(park, ex_regs::UNCHANGED, 0)
        .ctx("ex_regs to park")?;
    ensure!(
        rt::sleep_until_still(0)?,
        "the thread goes on counting after the redirect"
    );
    Ok(())
}

/// Changing a thread needs `W`.
fn missing_w() -> R {
    let w = rt::spawn_default(rt::park_entry, 0, 0)?;
    let c = copy_cap(w.cap(), CapRights::RS)?;
    expect_err!(
        c.control(&ThreadControl::new().pager(base::THREAD.sel())),
        Error::Perm,
        "control without W"
    );
    expect_err!(
        c.ex_regs(ex_regs::UNCHANGED, ex_regs::UNCHANGED, ex_regs::CANCEL),
        Error::Perm,
        "ex_regs without W"
    );
    Ok(())
}

/// A UTCB must lie in the task's UTCB area, aligned.
fn bind_bad_utcb() -> R {
    let t = rt::thread_obj()?;
    expect_some_err!(
        t.control(&ThreadControl::new().bind(base::TASK.index(), 0x1000)),
        "bind with a UTCB outside the area"
    );
    expect_some_err!(
        t.control(&ThreadControl::new().bind(base::TASK.index(), rt::UTCB_AREA + 0x408)),
        "bind with a misaligned UTCB"
    );
    Ok(())
}

/// The main thread has used CPU time.
fn stats() -> R {
    let us = base::THREAD.stats_us().ctx("stats")?;
    ensure!(us > 0, "the main thread used no CPU time");
    Ok(())
}

/// The kernel leaves the user TCRs alone.
fn tcr_preserved() -> R {
    utcb::set_tcr(5, 0x5a5a_5a5a);
    utcb::set_tcr(31, 0xa5a5);
    base::LOG.write(b"").ctx("a call")?;
    l4::ipc::sleep(l4::Timeout::ZERO).ctx("a receive")?;
    ensure_eq!(
        (utcb::tcr(5), utcb::tcr(31)),
        (0x5a5a_5a5a, 0xa5a5),
        "TCR 5 and 31"
    );
    Ok(())
}

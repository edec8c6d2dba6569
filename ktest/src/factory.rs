//! The factory: every kind of object, kernel-memory quotas, refusals.

use l4::ipc::{self, ipc_call};
use l4::{CapRights, Error, Fpage, Proto, Semaphore, Thread, Timeouts, base, msg, utcb};

use crate::fw::{Ctx, Fail, R};
use crate::rt::{self, Slot, copy_cap, valid};

tests! {
    "factory.task" => task,
    "factory.thread" => thread,
    "factory.gate" => gate,
    "factory.gate_bound_to_thread" => gate_bound,
    "factory.irq" => irq,
    "factory.semaphore" => semaphore,
    "factory.quota_limits_creation" => quota_limits,
    "factory.deleting_returns_quota" => quota_returned,
    "factory.quota_beyond_parent_no_mem" => beyond_parent,
    "factory.nested_quota_no_mem" => nested_quota,
    "factory.missing_w_right_perm" => missing_w,
    "factory.unknown_object_refused" => unknown_object,
    "factory.no_receive_slot_refused" => no_receive_slot,
    "factory.task_needs_memory_utcb_area" => task_bad_utcb_area,
    "factory.translation_tables_paid_from_quota" => tables_from_quota,
}

/// Fails unless the new `what` capability `idx` is valid.
fn expect_valid(idx: u64, what: &str) -> R {
    ensure!(valid(idx)?, "new {what} capability not valid");
    Ok(())
}

/// A task: the reply carries the UTCB area back.
fn task() -> R {
    let t = rt::bare_task()?;
    // `bare_task` made no call after the factory's reply.
    let area = Fpage(utcb::mr(0));
    ensure_eq!(area, rt::utcb_area_fpage(), "UTCB area in the reply");
    expect_valid(t.idx(), "task")?;
    Ok(())
}

/// A thread.
fn thread() -> R {
    expect_valid(rt::thread_obj()?.idx(), "thread")
}

/// An unbound gate knows its label.
fn gate() -> R {
    let g = rt::gate(0x1000, None)?;
    expect_valid(g.idx(), "gate")?;
    ensure_eq!(g.get_info().ctx("get_info")?, 0x1000, "gate label");
    Ok(())
}

/// A gate created bound to a thread delivers calls to it.
fn gate_bound() -> R {
    let w = rt::spawn_default(rt::echo_entry, 0, 0)?;
    let g = rt::gate(0x2200, Some(w.cap()))?;
    let m =
        ipc::call_words(g.sel(), 0, &[5], ipc::timeouts_us(rt::WAIT_US)).ctx("call the gate")?;
    ensure_eq!(m.word(0), 6, "reply word");
    // The caller's W and S rights arrive in the label's low bits.
    ensure_eq!(m.proto(), 0x2200 | 3, "label the server saw");
    Ok(())
}

/// An Irq.
fn irq() -> R {
    expect_valid(rt::irq()?.idx(), "irq")
}

/// A semaphore (count 0).
fn semaphore() -> R {
    let s = rt::semaphore()?;
    expect_valid(s.idx(), "semaphore")?;
    expect_err!(
        s.down(l4::Timeout::ZERO),
        Error::RecvTimeout,
        "down on a new semaphore"
    );
    Ok(())
}

/// Creates objects (`what`, plural) with `f` from a factory until it
/// refuses, which must be with `NoMem` and after one object at least;
/// returns how many it made (kept in `made`).
fn fill<T: ?Sized, const N: usize>(
    made: &mut [Option<Slot<T>>; N],
    what: &str,
    f: impl Fn(u64) -> Result<l4::Cap<T>, Error>,
) -> Result<usize, Fail> {
    for (n, m) in made.iter_mut().enumerate() {
        let s = Slot::<T>::empty()?.owning();
        match f(s.idx()) {
            Ok(_) => *m = Some(s),
            Err(e) => {
                ensure!(
                    n > 0,
                    "the factory could not create one of the {what} ({e:?})"
                );
                ensure_eq!(e, Error::NoMem, "refusal after {n} {what}");
                return Ok(n);
            }
        }
    }
    fail!("the factory never ran out after {N} {what}");
}

/// A factory with a small quota refuses with `NoMem` once it is used up.
fn quota_limits() -> R {
    let f = rt::factory(32 * 1024)?;
    let mut made: [Option<Slot<Thread>>; 200] = [const { None }; 200];
    fill(&mut made, "threads", |d| f.create_thread(d))?;
    Ok(())
}

/// Deleting an object gives its memory back to the factory.
fn quota_returned() -> R {
    let f = rt::factory(4096)?;
    let mut made: [Option<Slot<Semaphore>>; 256] = [const { None }; 256];
    fill(&mut made, "semaphores", |d| f.create_semaphore(d))?;
    made[0] = None;
    let s = Slot::<Semaphore>::empty()?.owning();
    f.create_semaphore(s.idx())
        .ctx("create after deleting one")?;
    Ok(())
}

/// A factory cannot get more quota than its parent has.
fn beyond_parent() -> R {
    let s = Slot::<l4::Factory>::empty()?.owning();
    expect_err!(
        base::FACTORY.create_factory(s.idx(), 1 << 50),
        Error::NoMem,
        "a factory with 1 PiB"
    );
    Ok(())
}

/// A child factory's quota comes out of its parent's.
fn nested_quota() -> R {
    let f = rt::factory(64 * 1024)?;
    let s = Slot::<l4::Factory>::empty()?.owning();
    expect_err!(
        f.create_factory(s.idx(), 128 * 1024),
        Error::NoMem,
        "128 KiB from a 64 KiB factory"
    );
    Ok(())
}

/// Creating needs `W` on the factory.
fn missing_w() -> R {
    let f = copy_cap(base::FACTORY, CapRights::RO)?;
    let s = Slot::<Semaphore>::empty()?.owning();
    expect_err!(
        f.create_semaphore(s.idx()),
        Error::Perm,
        "create through a read-only factory capability"
    );
    ensure!(!valid(s.idx())?, "an object was created anyway");
    Ok(())
}

/// An object type the factory does not make is refused.
fn unknown_object() -> R {
    let s = Slot::<l4::Kobject>::empty()?.owning();
    let e = expect_some_err!(
        base::FACTORY.create_raw(s.idx(), Proto::Meta as i64 as u64, &[]),
        "create a Meta object"
    );
    ensure!(!valid(s.idx())?, "something was created ({e:?})");
    Ok(())
}

/// The new capability needs a single-capability receive item.
fn no_receive_slot() -> R {
    let s = Slot::<Semaphore>::empty()?.owning();
    // SAFETY: the closure only builds the message and makes no call.
    let tag = unsafe {
        utcb::with_utcb(|u| {
            let t = msg::factory_semaphore(u, s.idx());
            msg::clear_recv_items(u);
            t
        })
    };
    let r = msg::result(ipc_call(base::FACTORY.sel(), tag, Timeouts::NEVER).0);
    expect_some_err!(r, "create without a receive item");
    ensure!(
        !valid(s.idx())?,
        "a capability arrived without a receive item"
    );
    Ok(())
}

/// A task's UTCB area must be memory.
fn task_bad_utcb_area() -> R {
    let s = Slot::<l4::Task>::empty()?.owning();
    expect_some_err!(
        base::FACTORY.create_task(s.idx(), Fpage::obj(0, 4, CapRights::RW)),
        "a task with a capability flexpage as UTCB area"
    );
    Ok(())
}

/// A task's translation tables come out of the quota of the factory that
/// made it: mapping pages far apart (a new table each) stops with
/// `NoMem` when the quota is used up, and deleting the task gives it back.
fn tables_from_quota() -> R {
    /// Room for the task itself (16 KiB) and a few tables.
    const QUOTA: u64 = 16 * 1024 + 6 * 4096;
    let f = rt::factory(QUOTA)?;
    let p = rt::Page::with_marker(rt::marker(0x20b))?;
    let mut maps = 0;
    for round in 0..2 {
        let t = rt::create("create task", |d| f.create_task(d, rt::utcb_area_fpage()))?;
        let mut n = 0u64;
        let err = loop {
            // 1 GiB apart: every page needs its own level-2 and level-3 tables.
            let at = 0x10_0000_0000 + (n << 30);
            match t
                .cap()
                .map_mem(base::TASK, p.addr(), 12, l4::MemRights::RW, at)
            {
                Ok(()) => n += 1,
                Err(e) => break e,
            }
            if n > 64 {
                fail!("64 pages mapped 1 GiB apart with a {QUOTA}-byte quota");
            }
        };
        ensure_eq!(err, Error::NoMem, "round {round}: error after {n} pages");
        ensure!(n > 0, "round {round}: no page mapped at all");
        if round == 1 {
            ensure_eq!(n, maps, "pages mapped after the first task was deleted");
        }
        maps = n;
        // Dropping `t` deletes the task: its tables' quota comes back.
    }
    Ok(())
}

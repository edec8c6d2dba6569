//! Deleting objects: every capability to the object becomes invalid,
//! threads blocked on it wake with an error, a deleted task takes its
//! mappings (and what was derived from them) along, running threads stop,
//! slots can be reused.

use l4::{CapRights, Error, MemRights, base};

use crate::fw::{Ctx, R};
use crate::mapping::page_in_new_task;
use crate::rt::{self, Slot, Space, bare_task, copy_cap, expect_fault, valid};

tests! {
    "del.object_caps_invalid_everywhere" => caps_invalid,
    "del.gate_with_blocked_client" => gate_with_blocked_client,
    "del.server_thread_aborts_call" => server_thread,
    "del.task_revokes_derived_memory" => task_revokes,
    "del.running_thread_stops" => running_thread,
    "del.slot_reusable" => slot_reusable,
}

/// After deletion no capability to the object is valid: not the deleted
/// one, not a copy, not one in another task.
fn caps_invalid() -> R {
    let s = rt::semaphore()?;
    let b = copy_cap(s.cap(), CapRights::RW)?;
    let t = bare_task()?;
    t.map_cap(base::TASK, s.idx(), CapRights::RW, 9)
        .ctx("map into a task")?;
    base::TASK.delete_cap(s.idx()).ctx("delete")?;
    ensure!(!valid(s.idx())?, "the deleted capability is valid");
    ensure!(!valid(b.idx())?, "a copy is valid");
    ensure!(
        !t.cap_valid(9).ctx("cap_valid")?,
        "the other task's capability is valid"
    );
    expect_err!(b.up(), Error::NoPartner, "up through the copy");
    Ok(())
}

/// A client blocked sending to a gate whose server never receives gets an
/// error when the gate is deleted.
fn gate_with_blocked_client() -> R {
    let server = rt::spawn_default(rt::park_entry, 0, 0)?;
    let g = rt::gate(0x5550, Some(server.cap()))?;
    let client = rt::spawn_default(rt::call_report_entry, g.idx(), 0)?;
    rt::sleep_us(20_000)?;
    client.quiet(0)?;
    base::TASK.delete_cap(g.idx()).ctx("delete the gate")?;
    let status = client.signal_word()?;
    let ok = [Error::NoPartner, Error::SendAborted, Error::SendCanceled]
        .iter()
        .any(|e| e.code() as u64 == status);
    ensure!(
        ok,
        "client's status {status}, expected NoPartner, SendAborted or SendCanceled"
    );
    Ok(())
}

/// A client waiting for the reply of a deleted server gets an error.
fn server_thread() -> R {
    let server = rt::spawn_default(rt::wait_then_park_entry, 0, 0)?;
    let client = rt::spawn_default(rt::call_report_entry, server.idx(), 0)?;
    rt::sleep_us(20_000)?;
    client.quiet(0)?;
    drop(server);
    let status = client.signal_word()?;
    ensure!(status != 0, "the call to the deleted server succeeded");
    Ok(())
}

/// Deleting a task revokes the mappings derived from its own.
fn task_revokes() -> R {
    let (p, x, a) = page_in_new_task(0x401, MemRights::RW)?;
    let b = Space::new()?;
    b.cap()
        .map_mem(a.cap(), x, 12, MemRights::RW, x)
        .ctx("map from the first task")?;
    rt::expect_marker(Some(&b), x, 0x401, "before the delete")?;
    base::TASK.delete_cap(a.idx()).ctx("delete the task")?;
    ensure!(!valid(a.idx())?, "the deleted task's capability is valid");
    expect_fault(
        rt::probe_read(Some(&b), x)?,
        "after deleting the first task",
    )?;
    rt::expect_marker(None, p.addr(), 0x401, "ktest's page")
}

/// Deleting a thread running on another CPU stops it.
fn running_thread() -> R {
    let w = rt::spinner_elsewhere()?;
    base::TASK.delete_cap(w.idx()).ctx("delete the thread")?;
    ensure!(!valid(w.idx())?, "the deleted thread's capability is valid");
    ensure!(
        rt::sleep_until_still(0)?,
        "the thread goes on counting after its deletion"
    );
    Ok(())
}

/// A slot whose object was deleted takes a new object.
fn slot_reusable() -> R {
    let s = Slot::<l4::Semaphore>::empty()?.owning();
    base::FACTORY.create_semaphore(s.idx()).ctx("create")?;
    base::TASK.delete_cap(s.idx()).ctx("delete")?;
    ensure!(!valid(s.idx())?, "valid after delete");
    base::FACTORY
        .create_irq(s.idx())
        .ctx("create in the same slot")?;
    ensure!(valid(s.idx())?, "the new object's capability is not valid");
    Ok(())
}

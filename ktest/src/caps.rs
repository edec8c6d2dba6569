//! Capabilities: empty and invalid slots, wrong protocols and opcodes,
//! rights (missing, reduced, never growing), capability queries, copies,
//! grants and revocation.

use l4::abi::proto::{TaskOp, unmap};
use l4::abi::sys::CAP_SHIFT;
use l4::{Cap, CapRights, Error, Fpage, Proto, SendItem, Task, Vcon, base};

use crate::fw::{Ctx, R};
use crate::rt::{self, Slot, bare_task, copy_cap, valid};

tests! {
    "caps.empty_slot_no_partner" => empty_slot,
    "caps.slot_zero_no_partner" => slot_zero,
    "caps.index_out_of_range_no_partner" => out_of_range,
    "caps.wrong_protocol_bad_proto" => wrong_protocol,
    "caps.unknown_opcode_no_sys" => unknown_opcode,
    "caps.cap_valid" => cap_valid,
    "caps.cap_equal" => cap_equal,
    "caps.copy_has_child" => has_child,
    "caps.missing_w_right_perm" => missing_w,
    "caps.no_r_right_maps_nothing" => no_r,
    "caps.rights_cannot_grow" => rights_cannot_grow,
    "caps.release_keeps_object" => release_keeps_object,
    "caps.unmap_revokes_derived" => unmap_revokes_derived,
    "caps.map_into_other_task" => map_into_other_task,
    "caps.grant_moves" => grant_moves,
    "caps.map_empty_slot_maps_nothing" => map_empty_slot,
    "caps.delete_needs_d_right" => delete_needs_d,
}

/// Invoking an empty slot fails with `NoPartner`, whatever the protocol.
fn empty_slot() -> R {
    let s = Slot::<Vcon>::empty()?;
    expect_err!(
        s.write(b"x"),
        Error::NoPartner,
        "vcon write to an empty slot"
    );
    expect_err!(
        s.cap().cast::<Task>().cap_valid(1),
        Error::NoPartner,
        "task op on an empty slot"
    );
    Ok(())
}

/// Index 0 is never a capability.
fn slot_zero() -> R {
    expect_err!(
        Cap::<Vcon>::from_index(0).write(b"x"),
        Error::NoPartner,
        "write to index 0"
    );
    Ok(())
}

/// Indices beyond the table are empty.
fn out_of_range() -> R {
    for idx in [0x10_0000, l4::abi::Cap::MAX_INDEX] {
        expect_err!(
            Cap::<Vcon>::from_index(idx).write(b"x"),
            Error::NoPartner,
            "write to a huge index"
        );
    }
    Ok(())
}

/// An object refuses another object's protocol with `BadProto`.
fn wrong_protocol() -> R {
    let sel = l4::abi::Cap::new(1).selector();
    expect_err!(
        base::LOG.invoke_raw(Proto::Task as i64, &[TaskOp::CapInfo.code(), sel]),
        Error::BadProto,
        "task protocol on the vcon"
    );
    expect_err!(
        base::SCHEDULER.invoke_raw(
            Proto::Factory as i64,
            &[l4::abi::proto::FactoryOp::Thread.code()]
        ),
        Error::BadProto,
        "factory protocol on the scheduler"
    );
    Ok(())
}

/// An unknown opcode of a known protocol is `NoSys`.
fn unknown_opcode() -> R {
    expect_err!(
        base::LOG.invoke_raw(Proto::Log as i64, &[0x77]),
        Error::NoSys,
        "vcon opcode 0x77"
    );
    expect_err!(
        base::TASK.invoke_raw(Proto::Task as i64, &[0x55]),
        Error::NoSys,
        "task opcode 0x55"
    );
    Ok(())
}

/// `CapInfo` tells valid capabilities from empty slots.
fn cap_valid() -> R {
    ensure!(valid(base::LOG.index())?, "LOG not valid");
    ensure!(valid(base::THREAD.index())?, "THREAD not valid");
    let e = Slot::<Vcon>::empty()?;
    ensure!(!valid(e.idx())?, "an empty slot is valid");
    ensure!(!valid(0)?, "index 0 is valid");
    Ok(())
}

/// `CapInfo` with two selectors compares the objects.
fn cap_equal() -> R {
    let f = copy_cap(base::FACTORY, CapRights::RWS)?;
    ensure!(
        base::TASK
            .cap_equal(f.idx(), base::FACTORY.index())
            .ctx("cap_equal")?,
        "a copy of FACTORY is another object"
    );
    ensure!(
        !base::TASK
            .cap_equal(base::FACTORY.index(), base::LOG.index())
            .ctx("cap_equal")?,
        "FACTORY and LOG are the same object"
    );
    Ok(())
}

/// A mapped capability has a child; the copy has none.
fn has_child() -> R {
    let a = copy_cap(base::LOG, CapRights::RW)?;
    ensure!(
        !base::TASK.cap_has_child(a.idx()).ctx("has_child")?,
        "fresh copy has children"
    );
    let b = copy_cap(a.cap(), CapRights::RW)?;
    ensure!(
        base::TASK.cap_has_child(a.idx()).ctx("has_child")?,
        "no child after mapping"
    );
    ensure!(
        !base::TASK.cap_has_child(b.idx()).ctx("has_child")?,
        "the child has children"
    );
    Ok(())
}

/// Changing a task needs `W`: a read-only task capability can query but
/// not map.
fn missing_w() -> R {
    let t = copy_cap(base::TASK, CapRights::RO)?;
    let dst = Slot::<Vcon>::empty()?;
    expect_err!(
        t.map_cap(base::TASK, base::LOG.index(), CapRights::RW, dst.idx()),
        Error::Perm,
        "map through a read-only task capability"
    );
    ensure!(!valid(dst.idx())?, "the refused map mapped something");
    ensure!(
        t.cap_valid(base::LOG.index())
            .ctx("cap_valid with R only")?,
        "cap_valid through a read-only task capability is wrong"
    );
    Ok(())
}

/// A capability without `R` maps nothing.
fn no_r() -> R {
    let dst = Slot::<Vcon>::empty()?;
    let _ = base::TASK.map_cap(base::TASK, base::LOG.index(), CapRights::W, dst.idx());
    ensure!(!valid(dst.idx())?, "a capability without R was mapped");
    Ok(())
}

/// Rights never grow along a chain: a copy of a read-only copy is
/// read-only, whatever the map offers.
fn rights_cannot_grow() -> R {
    let a = copy_cap(base::TASK, CapRights::RO)?;
    let b = copy_cap(a.cap(), CapRights::RWSD)?;
    let dst = Slot::<Vcon>::empty()?;
    expect_err!(
        b.map_cap(base::TASK, base::LOG.index(), CapRights::RW, dst.idx()),
        Error::Perm,
        "map through a copy of a read-only task capability"
    );
    Ok(())
}

/// Releasing a slot empties it; the object lives on.
fn release_keeps_object() -> R {
    let a = copy_cap(base::LOG, CapRights::RW)?;
    base::TASK.release_cap(a.idx()).ctx("release")?;
    ensure!(!valid(a.idx())?, "slot still valid after release");
    ensure!(valid(base::LOG.index())?, "the object went with the copy");
    base::LOG
        .write(b"")
        .ctx("write to LOG after releasing a copy")
}

/// Unmap without `ALL_SPACES` revokes what was derived and keeps the
/// named capability; with it, the named one goes too.
fn unmap_revokes_derived() -> R {
    let a = copy_cap(base::LOG, CapRights::RW)?;
    let b = copy_cap(a.cap(), CapRights::RW)?;
    let fp = Fpage::obj(a.idx(), 0, CapRights::RWSD);
    base::TASK.unmap(fp, unmap::OTHER_SPACES).ctx("unmap")?;
    ensure!(!valid(b.idx())?, "derived copy survived the unmap");
    ensure!(valid(a.idx())?, "the named capability went too");
    base::TASK
        .unmap(fp, unmap::ALL_SPACES)
        .ctx("unmap all spaces")?;
    ensure!(!valid(a.idx())?, "ALL_SPACES kept the named capability");
    ensure!(valid(base::LOG.index())?, "LOG went too");
    Ok(())
}

/// Task map puts a capability into another task's table.
fn map_into_other_task() -> R {
    let t = bare_task()?;
    t.map_cap(base::TASK, base::LOG.index(), CapRights::RW, 9)
        .ctx("map LOG into the task")?;
    ensure!(t.cap_valid(9).ctx("cap_valid")?, "slot 9 of the task empty");
    ensure!(
        !t.cap_valid(10).ctx("cap_valid")?,
        "slot 10 of the task valid"
    );
    Ok(())
}

/// A grant moves the capability: the source slot is empty afterwards.
fn grant_moves() -> R {
    let a = copy_cap(base::LOG, CapRights::RW)?;
    let t = bare_task()?;
    let item = SendItem::grant(Fpage::obj(a.idx(), 0, CapRights::RW), 9 << CAP_SHIFT);
    t.map(base::TASK, item).ctx("grant")?;
    ensure!(
        t.cap_valid(9).ctx("cap_valid")?,
        "granted capability missing"
    );
    ensure!(!valid(a.idx())?, "the grantor kept the capability");
    Ok(())
}

/// Mapping an empty slot maps nothing.
fn map_empty_slot() -> R {
    let e = Slot::<Vcon>::empty()?;
    let t = bare_task()?;
    let _ = t.map_cap(base::TASK, e.idx(), CapRights::RW, 9);
    ensure!(
        !t.cap_valid(9).ctx("cap_valid")?,
        "an empty slot was mapped"
    );
    Ok(())
}

/// Deleting needs `D`: through a copy without it the object survives.
fn delete_needs_d() -> R {
    let s = rt::semaphore()?;
    let b = copy_cap(s.cap(), CapRights::RWS)?;
    let _ = base::TASK.delete_cap(b.idx());
    ensure!(valid(s.idx())?, "deleted through a capability without D");
    s.up().ctx("up")?;
    s.down(l4::Timeout::ZERO).ctx("down after up")
}

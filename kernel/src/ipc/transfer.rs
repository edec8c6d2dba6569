//! Typed items: mapping and granting memory pages and capabilities between
//! tasks through the mapping database, and applying what revocation
//! changes to page tables and capability tables.

use crate::mm::{self, PAGE};
use crate::obj::KObject;
use crate::obj::factory;
use crate::obj::task::CAP_LIMIT;
use crate::state::Kernel;
use alloc::vec::Vec;
use kernel_core::ipc_rules::{Limits, MapAction, RecvBuffers, TransferOptions};
use kernel_core::kobj::Arena;
use kernel_core::kobj::ObjId;
use kernel_core::mapdb::{Change, ChangeSink, Kind, MapDbError, MapReq, Range};
use l4_abi::utcb::MR_COUNT;
use l4_abi::{CapRights, Error, MemRights, MsgTag};

/// Every task's spaces: 47 bits of user addresses, CAP_LIMIT capabilities.
pub const LIMITS: Limits = Limits {
    mem_order: 47,
    cap_order: CAP_LIMIT.trailing_zeros() as u8,
};

/// The result of a message transfer.
pub struct Delivered {
    pub tag: MsgTag,
    pub mrs: [u64; MR_COUNT],
}

/// Applies the transfer rules to the message (`tag`, `mrs`) from task
/// `src` to task `dst` with the receiver's buffers, performs the typed
/// items, and returns what the receiver gets.
pub fn message(
    k: &mut Kernel,
    tag: MsgTag,
    mrs: &[u64; MR_COUNT],
    src: ObjId,
    dst: ObjId,
    bufs: &RecvBuffers,
    partner_s: bool,
) -> Result<Delivered, Error> {
    let t = kernel_core::ipc_rules::transfer(
        tag,
        mrs,
        bufs,
        &TransferOptions {
            src: LIMITS,
            dst: LIMITS,
            partner_s,
        },
    );
    t.sender_result()?;
    for a in t.actions() {
        perform(k, src, dst, a).map_err(|e| match e {
            // The kernel ran out of room: say so, not "map failed".
            Error::NoMem => Error::NoMem,
            _ => Error::SendMapFailed,
        })?;
    }
    let mut out = [0u64; MR_COUNT];
    out[..t.words()].copy_from_slice(&mrs[..t.words()]);
    t.write_receiver_items(&mut out);
    Ok(Delivered {
        tag: t.receiver_tag(),
        mrs: out,
    })
}

/// Performs one map or grant from task `src` to task `dst`.
pub fn perform(k: &mut Kernel, src: ObjId, dst: ObjId, a: &MapAction) -> Result<(), Error> {
    match a.kind {
        Kind::Mem => map_pages(k, src, dst, a),
        Kind::Cap => map_caps(k, src, dst, a),
    }
}

fn map_pages(k: &mut Kernel, src: ObjId, dst: ObjId, a: &MapAction) -> Result<(), Error> {
    let size = 1u64
        .checked_shl(a.order.into())
        .ok_or(Error::Inval)?
        .max(PAGE);
    if size > 1 << 30 {
        return Err(Error::Inval);
    }
    let to_vm = matches!(k.objs.get(dst), Some(KObject::Vm(_)));
    let mut off = 0;
    while off < size {
        if !mm::heap_allows(RECORD_HEAP) {
            return Err(Error::NoMem);
        }
        let (sva, dva) = (a.src + off, a.dst + off);
        // One record for as much as the source holds in one (2 MiB at
        // most): a large dataspace mapped on into a Vm costs one record
        // per 2 MiB, not per page.
        let Some((node, order)) =
            k.mapdb
                .chunk(src, Kind::Mem, sva, dva, size - off, 12..=RECORD_ORDER_MAX)
        else {
            off += PAGE;
            continue;
        };
        let len = 1u64 << order;
        let Some((pa, have)) = k.task(src).ok_or(Error::Inval)?.lookup(sva) else {
            off += len;
            continue;
        };
        let rights = MemRights(a.rights).intersect(have);
        if rights.is_empty() {
            off += len;
            continue;
        }
        // The translation tables the mapping may need are paid from the
        // quota of the factory that made the destination.
        let (factory, tables) = match k.objs.get(dst) {
            Some(KObject::Task(t)) => (t.factory, TABLES_PER_PAGE * PAGE),
            Some(KObject::Vm(v)) => (v.factory, crate::obj::vm::TABLES_PER_MAPPING),
            _ => return Err(Error::Inval),
        };
        if let Some(f) = factory
            && !factory::has_quota(k, f, tables)
        {
            return Err(Error::NoMem);
        }
        let req = MapReq::new(sva, order, dst, dva, rights.0);
        let new = derive(k, node, req, a.grant)?;
        let granted = k.mapdb.get(new).map_or(rights, |m| MemRights(m.rights));
        let added = if to_vm {
            let v = k.vm_mut(dst).ok_or(Error::Inval)?;
            let before = v.table_pages;
            v.map(dva, pa, len, granted)?;
            let added = (v.table_pages - before) * PAGE;
            v.tables_charged += added;
            added
        } else {
            let t = k.task_mut(dst).ok_or(Error::Inval)?;
            let before = t.table_pages;
            for p in (0..len).step_by(PAGE as usize) {
                t.map_page(dva + p, pa + p, granted)?;
            }
            let added = (t.table_pages - before) * PAGE;
            t.tables_charged += added;
            added
        };
        if added > 0
            && let Some(f) = factory
        {
            let _ = factory::charge_quota(k, f, added);
        }
        if a.grant && src != dst {
            let t = k.task_mut(src).ok_or(Error::Inval)?;
            for p in (0..len).step_by(PAGE as usize) {
                t.unmap_page(sva + p);
            }
        }
        off += len;
    }
    Ok(())
}

/// The largest mapping record: 2 MiB, a stage-2 block.
const RECORD_ORDER_MAX: u8 = 21;

/// Records a mapping derived from `node` (or the grant of it); what the
/// database replaces or revokes for it is applied on the way, before the
/// caller installs the new entry. Returns the new node.
fn derive(
    k: &mut Kernel,
    node: kernel_core::mapdb::NodeId,
    req: MapReq<ObjId>,
    grant: bool,
) -> Result<kernel_core::mapdb::NodeId, Error> {
    let sink = &mut Apply(&mut k.objs);
    let res = if grant {
        k.mapdb.grant_part(node, req, sink)
    } else {
        k.mapdb.map(node, req, sink)
    };
    res.map_err(mapdb_error)
}

fn map_caps(k: &mut Kernel, src: ObjId, dst: ObjId, a: &MapAction) -> Result<(), Error> {
    let count = 1u64.checked_shl(a.order.into()).ok_or(Error::Inval)?;
    if count > CAP_LIMIT || k.task(dst).is_none() {
        return Err(Error::Inval);
    }
    for i in 0..count {
        // A capability table grows by doubling, to CAP_LIMIT slots at most.
        if !mm::heap_allows(RECORD_HEAP + CAP_LIMIT * 16) {
            return Err(Error::NoMem);
        }
        let (si, di) = (a.src + i, a.dst + i);
        let Some(e) = k.task(src).ok_or(Error::Inval)?.caps.get(si).copied() else {
            continue;
        };
        if !k.objs.contains(e.obj) {
            continue;
        }
        let rights = CapRights(a.rights).intersect(e.rights);
        let node = match k.mapdb.lookup(src, Kind::Cap, si) {
            Some(n) => n,
            None => k
                .mapdb
                .insert_root(
                    src,
                    Range::new(Kind::Cap, si, 0),
                    e.rights.0,
                    e.obj.to_raw(),
                    &mut Apply(&mut k.objs),
                )
                .map_err(mapdb_error)?,
        };
        let req = MapReq::new(si, 0, dst, di, rights.0);
        let new = derive(k, node, req, a.grant)?;
        let granted = k.mapdb.get(new).map_or(rights, |m| CapRights(m.rights));
        let task = k.task_mut(dst).ok_or(Error::Inval)?;
        task.caps
            .insert(di, e.obj, granted)
            .map_err(|e| e.to_error())?;
        if a.grant
            && (src, si) != (dst, di)
            && let Some(t) = k.task_mut(src)
        {
            t.caps.remove(si);
        }
    }
    Ok(())
}

/// Translation tables one more page can need at most (levels 1 to 3).
const TABLES_PER_PAGE: u64 = 3;

/// Heap bytes one more mapping may take besides its (reserved) record:
/// its index entry and a share of an index node.
const RECORD_HEAP: u64 = 256;

/// What a refusal of the mapping database means for the caller.
fn mapdb_error(e: MapDbError) -> Error {
    match e {
        MapDbError::Full => Error::NoMem,
        _ => Error::Inval,
    }
}

/// Carries out what the mapping database changes, as it reports it: page
/// table entries and capabilities of the spaces concerned (a space that
/// is gone has nothing left to change).
pub struct Apply<'a>(pub &'a mut Arena<KObject>);

impl ChangeSink<ObjId> for Apply<'_> {
    fn change(&mut self, c: Change<ObjId>) {
        let (Change::Unmapped(m) | Change::Rights(m)) = c;
        let task = match self.0.get_mut(m.space) {
            Some(KObject::Task(task)) => task,
            Some(KObject::Vm(vm)) => {
                // Guest memory: m.origin is the physical address.
                let size = 1u64 << m.order.max(12);
                match c {
                    Change::Unmapped(_) => vm.unmap(m.addr, size),
                    Change::Rights(_) => {
                        let _ = vm.map(m.addr, m.origin, size, MemRights(m.rights));
                    }
                }
                return;
            }
            _ => return,
        };
        match (c, m.kind) {
            (Change::Unmapped(_), Kind::Mem) => {
                let size = 1u64 << m.order.max(12);
                for off in (0..size).step_by(PAGE as usize) {
                    task.unmap_page(m.addr + off);
                }
            }
            (Change::Unmapped(_), Kind::Cap) => {
                task.caps.remove(m.addr);
            }
            (Change::Rights(_), Kind::Mem) => {
                let size = 1u64 << m.order.max(12);
                for off in (0..size).step_by(PAGE as usize) {
                    if let Some((pa, _)) = task.lookup(m.addr + off) {
                        let _ = task.map_page(m.addr + off, pa, MemRights(m.rights));
                    }
                }
            }
            (Change::Rights(_), Kind::Cap) => {
                task.caps.reduce_rights(m.addr, CapRights(!m.rights));
            }
        }
    }
}

/// Records a fresh mapping the kernel made itself (root task memory,
/// sigma0) as the root of its tree, and enters it in the page table.
pub fn map_root_memory(
    k: &mut Kernel,
    task: ObjId,
    va: u64,
    pa: u64,
    order: u8,
    rights: MemRights,
) -> Result<(), Error> {
    k.mapdb
        .insert_root(
            task,
            Range::new(Kind::Mem, va, order),
            rights.0,
            pa,
            &mut Apply(&mut k.objs),
        )
        .map_err(|_| Error::Exist)?;
    let t = k.task_mut(task).ok_or(Error::Inval)?;
    for off in (0..1u64 << order).step_by(PAGE as usize) {
        t.map_page(va + off, pa + off, rights)?;
    }
    Ok(())
}

/// Gives task `task` a new capability at `index` (the creator's root of
/// the object's capability tree).
pub fn insert_root_cap(
    k: &mut Kernel,
    task: ObjId,
    index: u64,
    obj: ObjId,
    rights: CapRights,
) -> Result<(), Error> {
    if let Some(old) = k.mapdb.lookup(task, Kind::Cap, index) {
        let _ = k.mapdb.unmap(old, 0xff, true, &mut Apply(&mut k.objs));
    }
    k.mapdb
        .insert_root(
            task,
            Range::new(Kind::Cap, index, 0),
            rights.0,
            obj.to_raw(),
            &mut Apply(&mut k.objs),
        )
        .map_err(mapdb_error)?;
    k.task_mut(task)
        .ok_or(Error::Inval)?
        .caps
        .insert(index, obj, rights)
        .map_err(|e| e.to_error())?;
    Ok(())
}

/// Unmaps a flexpage of task `task` (memory or capabilities): revokes
/// `revoke` rights from what others derived from it, and from the task
/// itself too with `self_too`. Capabilities are looked at one by one.
pub fn unmap(
    k: &mut Kernel,
    task: ObjId,
    fp: l4_abi::Fpage,
    self_too: bool,
) -> Vec<(u64, ObjId, CapRights)> {
    let mut caps_seen = Vec::new();
    // Taking away R takes the whole mapping (as in Fiasco).
    let revoke = match fp.rights_bits() {
        r if r & l4_abi::MemRights::R.0 != 0 => 0xff,
        r => r,
    };
    match fp.kind() {
        l4_abi::fpage::FpageType::Memory => {
            let order = fp.order().clamp(12, 47);
            let _ = k.mapdb.unmap_range(
                task,
                Range::new(Kind::Mem, fp.mem_base(), order),
                revoke,
                self_too,
                &mut Apply(&mut k.objs),
            );
        }
        l4_abi::fpage::FpageType::Obj => {
            let count = 1u64 << fp.order().min(12);
            for i in fp.obj_index()..fp.obj_index() + count {
                if let Some(e) = k.task(task).and_then(|t| t.caps.get(i).copied()) {
                    caps_seen.push((i, e.obj, e.rights));
                }
                if let Some(n) = k.mapdb.lookup(task, Kind::Cap, i) {
                    let _ = k.mapdb.unmap(n, revoke, self_too, &mut Apply(&mut k.objs));
                } else if self_too && let Some(t) = k.task_mut(task) {
                    t.caps.reduce_rights(i, CapRights(revoke));
                }
            }
        }
        _ => {}
    }
    caps_seen
}

//! Sigma0: the root task's memory protocol ([`l4_abi::sigma0`]): free
//! RAM, device memory and boot modules, mapped into the root task.

use super::{Call, OpResult};
use crate::ipc::transfer;
use crate::mm::{self, PAGE};
use crate::state::Kernel;
use kernel_core::kobj::ObjId;
use l4_abi::ops::{FactoryMsg, Sigma0Msg, Sigma0Reply};
use l4_abi::{CapRights, Error, MemRights};

/// The root task's pager (one).
pub struct Sigma0;

/// `create(L4.Proto.Sigma0)` on sigma0 (L4Re scripts cast sigma0 to a
/// factory for it): another capability to sigma0 in the caller's receive
/// slot, with no more rights than the invoked one and never the right to
/// delete sigma0 (there is one, for the whole system).
pub fn create(k: &mut Kernel, c: &Call<'_>) -> OpResult {
    match FactoryMsg::decode(c.tag, c.m)? {
        FactoryMsg::Sigma0(_) => {
            let dest = super::factory::receive_slot(k, c.cur)?;
            let rights = c.rights & CapRights::RWS;
            transfer::insert_root_cap(k, c.task, dest, c.obj, rights)?;
            super::ok(0)
        }
        _ => Err(Error::BadProto),
    }
}

/// The root task's memory protocol ([`l4_abi::sigma0`]).
pub fn invoke(k: &mut Kernel, c: &Call<'_>) -> OpResult {
    let task = c.task;
    match Sigma0Msg::decode(c.tag, c.m)? {
        Sigma0Msg::MapFree(a) => {
            let order = u8::try_from(a.order).map_err(|_| Error::Inval)?;
            if !(12..=30).contains(&order) {
                return Err(Error::Inval);
            }
            let pages = 1usize << (order - 12);
            // The kernel keeps its own frames (l4_abi::root::KERNEL_MEMORY).
            if mm::free_bytes() < (1 << order) + l4_abi::root::KERNEL_MEMORY {
                return Err(Error::NoMem);
            }
            // Not cleared here: the root task zeroes what it hands out.
            let pa = mm::alloc_frames_uncleared(pages).ok_or(Error::NoMem)?;
            if let Err(e) = transfer::map_root_memory(k, task, pa, pa, order, MemRights::RWX) {
                mm::free_frames(pa, pages);
                return Err(e);
            }
            c.reply(k, Sigma0Reply { addr: pa })
        }
        Sigma0Msg::MapDevice(a) => {
            let (pa, order) = (a.pa, u8::try_from(a.order).map_err(|_| Error::Inval)?);
            if !(12..=30).contains(&order)
                || pa % (1 << order) != 0
                || mm::is_ram(pa, 1 << order)
                || pa >= 1 << 40
            {
                return Err(Error::Inval);
            }
            // SAFETY: not RAM (checked above).
            unsafe { crate::mm::map_device(pa, 1 << order) };
            transfer::map_root_memory(k, task, pa, pa, order, MemRights::RW)?;
            c.reply(k, Sigma0Reply { addr: pa })
        }
        Sigma0Msg::MapModule(a) => {
            let (pa, size) = (a.pa, a.size);
            let end = pa.checked_add(size).ok_or(Error::Inval)?;
            let inside = crate::state::bootinfo()
                .mem()
                .iter()
                .any(|r| r.kind == l4_bootinfo::MemKind::Module && r.base <= pa && end <= r.end());
            if size == 0 || !pa.is_multiple_of(PAGE) || !inside {
                return Err(Error::Inval);
            }
            let mut r = Ok(());
            l4_abi::fpage::for_each_block(pa, end, 12, |at, order| {
                if r.is_ok() {
                    r = map_module_block(k, task, at, order);
                }
            });
            r?;
            c.reply(k, Sigma0Reply { addr: pa })
        }
    }
}

/// Maps one aligned block of a boot module 1:1 read-execute: as one
/// mapping if none of its pages is mapped yet, else the missing pages one
/// by one (asking again for all or part of a module is fine).
fn map_module_block(k: &mut Kernel, task: ObjId, pa: u64, order: u8) -> Result<(), Error> {
    let size = 1u64 << order;
    let mapped = |k: &Kernel, at: u64| k.task(task).and_then(|t| t.lookup(at)).is_some();
    if order <= 30
        && !(pa..pa + size)
            .step_by(PAGE as usize)
            .any(|at| mapped(k, at))
    {
        return transfer::map_root_memory(k, task, pa, pa, order, MemRights::RX);
    }
    for at in (pa..pa + size).step_by(PAGE as usize) {
        if !mapped(k, at) {
            transfer::map_root_memory(k, task, at, at, 12, MemRights::RX)?;
        }
    }
    Ok(())
}

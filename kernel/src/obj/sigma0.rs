//! Sigma0: the root task's memory protocol ([`l4_abi::sigma0`]): free
//! RAM, device memory and boot modules, mapped into the root task.

use super::{Call, OpResult};
use crate::ipc::transfer;
use crate::mm::{self, PAGE};
use crate::state::Kernel;
use l4_abi::{Error, MemRights};

/// The root task's pager (one).
pub struct Sigma0;

/// The root task's memory protocol ([`l4_abi::sigma0`]).
pub fn invoke(k: &mut Kernel, c: &Call<'_>) -> OpResult {
    let Call { task, m, .. } = *c;
    match m[0] {
        l4_abi::sigma0::MAP_FREE => {
            let order = u8::try_from(m[1]).map_err(|_| Error::Inval)?;
            if !(12..=30).contains(&order) {
                return Err(Error::Inval);
            }
            let pages = 1usize << (order - 12);
            // The kernel keeps its own frames (l4_abi::root::KERNEL_MEMORY).
            if mm::free_bytes() < (1 << order) + l4_abi::root::KERNEL_MEMORY {
                return Err(Error::NoMem);
            }
            let pa = mm::alloc_frames(pages).ok_or(Error::NoMem)?;
            if let Err(e) = transfer::map_root_memory(k, task, pa, pa, order, MemRights::RWX) {
                mm::free_frames(pa, pages);
                return Err(e);
            }
            c.reply(k, &[pa])
        }
        l4_abi::sigma0::MAP_DEVICE => {
            let (pa, order) = (m[1], u8::try_from(m[2]).map_err(|_| Error::Inval)?);
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
            c.reply(k, &[pa])
        }
        l4_abi::sigma0::MAP_MODULE => {
            let (pa, size) = (m[1], m[2]);
            let end = pa.checked_add(size).ok_or(Error::Inval)?;
            let inside = crate::state::bootinfo()
                .mem()
                .iter()
                .any(|r| r.kind == l4_bootinfo::MemKind::Module && r.base <= pa && end <= r.end());
            if size == 0 || !pa.is_multiple_of(PAGE) || !inside {
                return Err(Error::Inval);
            }
            for off in (0..size).step_by(PAGE as usize) {
                if k.task(task).and_then(|t| t.lookup(pa + off)).is_none() {
                    transfer::map_root_memory(k, task, pa + off, pa + off, 12, MemRights::RX)?;
                }
            }
            c.reply(k, &[pa])
        }
        _ => Err(Error::NoSys),
    }
}

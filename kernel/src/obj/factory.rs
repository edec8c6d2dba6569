//! Factory: creates kernel objects and charges their memory to its quota.

use super::ipc_gate::Gate;
use super::irq::Irq;
use super::semaphore::Semaphore;
use super::task::Task;
use super::thread::Thread;
use super::{Call, KObject, OpResult, bind_target, need, ok};
use crate::ipc::transfer;
use crate::mm;
use crate::state::Kernel;
use alloc::boxed::Box;
use kernel_core::kobj::ObjId;
use l4_abi::ops::{FactoryMsg, FactoryTaskReply};
use l4_abi::{CapRights, Error, Fpage, RecvItem};

/// A factory: kernel memory it may still hand out.
pub struct Factory {
    /// Kernel memory this factory may still hand out, in bytes.
    pub quota: u64,
}

/// Kernel memory charged to a factory per object.
const COST_TASK: u64 = 16 * 1024;
const COST_THREAD: u64 = 20 * 1024;
const COST_SMALL: u64 = 256;
/// A Vm: its stage-2 root (two pages), the object and its MMIO shortcut
/// table.
const COST_VM: u64 = 2 * mm::PAGE
    + COST_SMALL
    + core::mem::size_of::<kernel_core::shortcut::Shortcuts<super::vm::Bell>>() as u64;
/// The most kernel heap one new object takes (a thread, with its boxed
/// state and run-queue and index entries).
const COST_HEAP: u64 = 4 * 1024;

/// Gives `bytes` of quota back to `factory` (if it still exists).
pub fn refund(k: &mut Kernel, factory: ObjId, bytes: u64) {
    if let Some(KObject::Factory(f)) = k.objs.get_mut(factory) {
        f.quota = f.quota.saturating_add(bytes);
    }
}

/// Whether `factory` exists and has `bytes` of quota left.
pub fn has_quota(k: &Kernel, factory: ObjId, bytes: u64) -> bool {
    matches!(k.objs.get(factory), Some(KObject::Factory(f)) if f.quota >= bytes)
}

/// Takes `bytes` of `factory`'s quota for kernel memory that is not heap
/// (translation tables); `NoMem` if it does not have them or is gone.
pub fn charge_quota(k: &mut Kernel, factory: ObjId, bytes: u64) -> Result<(), Error> {
    match k.objs.get_mut(factory) {
        Some(KObject::Factory(f)) if f.quota >= bytes => {
            f.quota -= bytes;
            Ok(())
        }
        _ => Err(Error::NoMem),
    }
}

fn charge(k: &mut Kernel, factory: ObjId, bytes: u64) -> Result<(), Error> {
    // The quota is the factory's share; the heap must have the room too.
    if !mm::heap_allows(COST_HEAP) || !k.objs.has_room() {
        return Err(Error::NoMem);
    }
    if !matches!(k.objs.get(factory), Some(KObject::Factory(_))) {
        return Err(Error::Inval);
    }
    charge_quota(k, factory, bytes)
}

/// Where a created object's capability goes: the caller's first receive
/// item, a capability slot other than 0.
pub(super) fn receive_slot(k: &mut Kernel, cur: ObjId) -> Result<u64, Error> {
    let br = k.known_thread(cur).utcb().ok_or(Error::Inval)?.br;
    match l4_abi::fpage::RecvItems::new(&br).next() {
        Some(RecvItem::SmallCap { index }) if index != 0 => Ok(index),
        _ => Err(Error::Inval),
    }
}

pub fn invoke(k: &mut Kernel, c: &Call<'_>) -> OpResult {
    let (cur, task, fac, rights) = (c.cur, c.task, c.obj, c.rights);
    need(rights, CapRights::W)?;
    let msg = FactoryMsg::decode(c.tag, c.m)?;
    let dest = receive_slot(k, cur)?;
    let mut reply = None;
    // What to make, read from the arguments before anything is charged.
    enum Make {
        Task(Fpage),
        Thread,
        Factory(u64),
        Gate(u64, Option<ObjId>),
        Irq,
        Semaphore,
        Vm,
    }
    let (make, cost) = match msg {
        FactoryMsg::Task(a) => {
            let area = a.utcb_area.0;
            if area.kind() != l4_abi::fpage::FpageType::Memory {
                return Err(Error::Inval);
            }
            (Make::Task(area), COST_TASK)
        }
        FactoryMsg::Thread(_) => (Make::Thread, COST_THREAD),
        FactoryMsg::Factory(a) => {
            let quota = a.quota.0;
            (Make::Factory(quota), quota.saturating_add(COST_SMALL))
        }
        FactoryMsg::IpcGate(a) => {
            let label = a.label.map_or(0, |l| l.0);
            let thread = match a.thread {
                Some(t) => Some(bind_target(k, task, t)?),
                None => None,
            };
            (Make::Gate(label, thread), COST_SMALL)
        }
        FactoryMsg::Irq(_) => (Make::Irq, COST_SMALL),
        FactoryMsg::Semaphore(_) => (Make::Semaphore, COST_SMALL),
        FactoryMsg::Vm(_) => (Make::Vm, COST_VM),
        // Only sigma0 makes sigma0 capabilities.
        FactoryMsg::Sigma0(_) => return Err(Error::BadProto),
    };
    charge(k, fac, cost)?;
    let made = match make {
        Make::Task(area) => (|| {
            let asid = k.alloc_asid().ok_or(Error::NoMem)?;
            let mut t = Task::new(asid).ok_or(Error::NoMem)?;
            t.factory = Some(fac);
            t.set_utcb_area(area.mem_base(), 1u64 << area.order().clamp(10, 20))?;
            reply = Some(area);
            Ok(KObject::Task(Box::new(t)))
        })(),
        Make::Thread => Thread::new(Thread::default_sched())
            .map(|t| KObject::Thread(Box::new(t)))
            .ok_or(Error::NoMem),
        Make::Factory(quota) => Ok(KObject::Factory(Factory { quota })),
        Make::Gate(label, thread) => Ok(KObject::Gate(Gate::new(label, thread))),
        Make::Irq => Ok(KObject::Irq(Irq::new())),
        Make::Semaphore => Ok(KObject::Semaphore(Semaphore::new())),
        Make::Vm => super::vm::Vm::new()
            .map(|mut v| {
                v.factory = Some(fac);
                KObject::Vm(Box::new(v))
            })
            .ok_or(Error::NoMem),
    };
    let new = match made.and_then(|o| k.objs.insert(o).map_err(|_| Error::NoMem)) {
        Ok(new) => new,
        Err(e) => {
            // Nothing was made: the quota goes back.
            refund(k, fac, cost);
            return Err(e);
        }
    };
    k.charges.insert(new, (fac, cost));
    transfer::insert_root_cap(k, task, dest, new, CapRights::ALL)?;
    match reply {
        Some(utcb_area) => c.reply(k, FactoryTaskReply { utcb_area }),
        None => ok(0),
    }
}

//! The root task, made at boot: the boot stage's segments, a stack, a UTCB
//! area, the base capabilities, and one thread ready at its entry.

use crate::ipc::transfer;
use crate::mm::{self, PAGE};
use crate::obj::KObject;
use crate::obj::factory::Factory;
use crate::obj::icu::Icu;
use crate::obj::scheduler::Scheduler;
use crate::obj::sigma0::Sigma0;
use crate::obj::task::Task;
use crate::obj::thread::{DEFAULT_QUANTUM, Thread};

use crate::obj::vcon::Vcon;
use crate::state::{self, Kernel};
use alloc::boxed::Box;
use kernel_core::kobj::ObjId;
use kernel_core::runqueue::{CpuSet, SchedContext};
use l4_abi::{CapRights, Error, MemRights};

/// The root task's priority: above every program it serves (memory,
/// dataspaces, page faults), so that a busy program of higher priority on
/// its CPU, such as a VM's vCPU, never holds up the others' page faults.
/// moe only runs when asked.
pub const ROOT_PRIO: u8 = 240;

/// The root task: a task with the boot stage's segments, a stack, a UTCB
/// area, the base capabilities, and one thread ready at its entry.
pub fn create(k: &mut Kernel, info: &l4_bootinfo::BootInfo) -> Result<ObjId, Error> {
    use l4_abi::base_caps as bc;
    let asid = k.alloc_asid().ok_or(Error::NoMem)?;
    let mut t = Task::new(asid).ok_or(Error::NoMem)?;
    t.set_utcb_area(ROOT_UTCB_AREA, ROOT_UTCB_SIZE)?;
    let task = k
        .objs
        .insert(KObject::Task(Box::new(t)))
        .map_err(|_| Error::NoMem)?;
    for s in info.roottask.segments() {
        let rights = MemRights(
            MemRights::R.0
                | if s.flags & l4_bootinfo::SEG_W != 0 {
                    MemRights::W.0
                } else {
                    0
                }
                | if s.flags & l4_bootinfo::SEG_X != 0 {
                    MemRights::X.0
                } else {
                    0
                },
        );
        for off in (0..s.memsz).step_by(PAGE as usize) {
            transfer::map_root_memory(k, task, s.vaddr + off, s.paddr + off, 12, rights)?;
        }
    }
    for i in 1..=ROOT_STACK_SIZE / PAGE {
        let pa = mm::alloc_frame().ok_or(Error::NoMem)?;
        transfer::map_root_memory(k, task, ROOT_STACK_TOP - i * PAGE, pa, 12, MemRights::RW)?;
    }
    let bi = state::bootinfo_pa();
    let bi_size = (core::mem::size_of::<l4_bootinfo::BootInfo>() as u64).div_ceil(PAGE) * PAGE;
    for off in (0..bi_size).step_by(PAGE as usize) {
        let t = k.task_mut(task).ok_or(Error::Inval)?;
        t.map_page(l4_abi::root::BOOTINFO_VA + off, bi + off, MemRights::R)?;
    }
    let th = Thread::new(SchedContext::new(
        ROOT_PRIO,
        DEFAULT_QUANTUM,
        CpuSet::single(0),
    ))
    .ok_or(Error::NoMem)?;
    let th = k
        .objs
        .insert(KObject::Thread(Box::new(th)))
        .map_err(|_| Error::NoMem)?;
    k.bind_thread(th, task, ROOT_UTCB_AREA)?;
    {
        let t = k.known_thread(th);
        t.has_regs = true;
        let f = t.frame_mut();
        f.elr = info.roottask.entry;
        f.sp_el0 = ROOT_STACK_TOP;
    }
    let fac = k
        .objs
        .insert(KObject::Factory(Factory {
            quota: l4_abi::root::ROOT_QUOTA.min(mm::free_bytes() / 2),
        }))
        .map_err(|_| Error::NoMem)?;
    let objs = [
        (bc::TASK, task),
        (bc::FACTORY, fac),
        (bc::THREAD, th),
        (
            bc::PAGER,
            k.objs
                .insert(KObject::Sigma0(Sigma0))
                .map_err(|_| Error::NoMem)?,
        ),
        (
            bc::LOG,
            k.objs
                .insert(KObject::Vcon(Vcon))
                .map_err(|_| Error::NoMem)?,
        ),
        (
            bc::ICU,
            k.objs.insert(KObject::Icu(Icu)).map_err(|_| Error::NoMem)?,
        ),
        (
            bc::SCHEDULER,
            k.objs
                .insert(KObject::Scheduler(Scheduler))
                .map_err(|_| Error::NoMem)?,
        ),
    ];
    for (idx, obj) in objs {
        transfer::insert_root_cap(k, task, idx, obj, CapRights::ALL)?;
    }
    k.make_ready(th);
    Ok(th)
}

use l4_abi::root::{
    STACK_SIZE as ROOT_STACK_SIZE, STACK_TOP as ROOT_STACK_TOP, UTCB_AREA as ROOT_UTCB_AREA,
    UTCB_AREA_SIZE as ROOT_UTCB_SIZE,
};

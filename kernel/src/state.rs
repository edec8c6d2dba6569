//! The kernel state: the object table, the CPUs, the mapping database,
//! and what lets entry points reach them under the big kernel lock.

use crate::arch;
use crate::bkl;
use crate::ipc;
use crate::mm;
use crate::obj::KObject;
use crate::obj::factory;
use crate::obj::task::{DeadSpace, Task};
use crate::obj::thread::{self, State, Thread};
use crate::sched::Cpu;
use alloc::boxed::Box;
use alloc::vec::Vec;
use kernel_core::kobj::{Arena, ObjId};
use kernel_core::mapdb::MapDb;
use kernel_core::runqueue::CpuSet;
use l4_abi::{CapRights, Error};

pub struct Kernel {
    pub objs: Arena<KObject>,
    /// Every possible CPU (indexed by [`arch::cpu_id`]); `ncpus` exist.
    pub cpus: Box<[Cpu; arch::MAX_CPUS]>,
    pub ncpus: usize,
    pub online: CpuSet,
    pub mapdb: MapDb<ObjId>,
    next_asid: u16,
    /// Threads whose wait has a deadline.
    pub sleepers: Vec<ObjId>,
    /// Kernel memory each object cost and the factory that paid it.
    pub charges: alloc::collections::BTreeMap<ObjId, (ObjId, u64)>,
    /// Deleted threads whose kernel stack may still be in use. Boxed: a
    /// CPU switching away from one saves its context through a pointer.
    #[allow(clippy::vec_box)]
    pub zombies: Vec<Box<Thread>>,
    /// Address spaces of deleted tasks, freed once no CPU runs in them.
    dead_spaces: Vec<DeadSpace>,
}

/// The kernel state, set up by [`init`] before any entry point can run
/// (interrupts stay masked and no user thread exists until then).
static KERNEL: bkl::Locked<Option<Kernel>> = bkl::Locked::new(None);

impl bkl::Guard {
    /// The kernel state, for as long as the guard is lent.
    #[inline(always)]
    pub fn kernel(&mut self) -> &mut Kernel {
        KERNEL.get(self).as_mut().expect("kernel state before init")
    }
}

/// The boot-info page (read-only after boot) and its physical address.
static BOOTINFO: spin::Once<(&'static l4_bootinfo::BootInfo, u64)> = spin::Once::new();

pub fn bootinfo() -> &'static l4_bootinfo::BootInfo {
    BOOTINFO.get().expect("boot info before init").0
}

pub fn bootinfo_pa() -> u64 {
    BOOTINFO.get().expect("boot info before init").1
}

/// Sets up the kernel state for `ncpus` CPUs, with the IPC fast path on
/// or off (kernel option `-nofastpath`). Boot CPU.
pub fn init(
    g: &mut bkl::Guard,
    ncpus: usize,
    info: &'static l4_bootinfo::BootInfo,
    info_pa: u64,
    fast_path: bool,
) {
    BOOTINFO.call_once(|| (info, info_pa));
    // Built on the heap one by one (the array would not fit a boot stack).
    let cpus: Box<[Cpu; arch::MAX_CPUS]> = (0..arch::MAX_CPUS)
        .map(|_| Cpu {
            fast_path,
            ..Cpu::default()
        })
        .collect::<Box<[Cpu]>>()
        .try_into()
        .unwrap_or_else(|_| unreachable!("MAX_CPUS elements"));
    // The two tables that grow with what tasks do get their room now, from
    // fixed shares of the heap, and never grow (a full table refuses with
    // NoMem): an eighth for objects, three eighths for mapping records.
    let heap = mm::heap_bytes() as usize;
    let max_objs = heap / 8 / Arena::<KObject>::slot_bytes();
    let mut objs = Arena::with_limit(max_objs);
    objs.reserve(max_objs);
    let mapdb = MapDb::with_capacity(heap / 8 * 3 / MapDb::<ObjId>::node_bytes());
    *KERNEL.get(g) = Some(Kernel {
        objs,
        cpus,
        ncpus,
        online: CpuSet::first_n(ncpus),
        mapdb,
        next_asid: 1,
        sleepers: Vec::new(),
        charges: alloc::collections::BTreeMap::new(),
        zombies: Vec::new(),
        dead_spaces: Vec::new(),
    });
}

/// `$get`/`$get_mut`: the object `id` if it is a `$kind` (the variant of
/// [`KObject`] and its type have the same name).
macro_rules! typed_objects {
    ($($get:ident, $get_mut:ident: $kind:ident;)*) => {
        $(
            pub fn $get(&self, id: ObjId) -> Option<&$kind> {
                match self.objs.get(id)? {
                    KObject::$kind(o) => Some(o),
                    _ => None,
                }
            }

            pub fn $get_mut(&mut self, id: ObjId) -> Option<&mut $kind> {
                match self.objs.get_mut(id)? {
                    KObject::$kind(o) => Some(o),
                    _ => None,
                }
            }
        )*
    };
}

impl Kernel {
    typed_objects! {
        thread, thread_mut: Thread;
        task, task_mut: Task;
    }

    /// The thread, known to exist (an internal invariant, not user input).
    pub fn known_thread(&mut self, id: ObjId) -> &mut Thread {
        self.thread_mut(id).expect("thread vanished")
    }

    pub fn vm_mut(&mut self, id: ObjId) -> Option<&mut crate::obj::vm::Vm> {
        match self.objs.get_mut(id)? {
            KObject::Vm(v) => Some(v),
            _ => None,
        }
    }

    pub fn current(&self) -> ObjId {
        self.cpus[arch::cpu_id()]
            .current
            .expect("no current thread")
    }

    /// Binds thread `th` to task `task` with its UTCB at user address
    /// `utcb` (in the task's UTCB area). A thread is bound once.
    pub fn bind_thread(&mut self, th: ObjId, task: ObjId, utcb: u64) -> Result<(), Error> {
        let tk = self.task(task).ok_or(Error::Inval)?;
        let kva = tk.utcb_kva(utcb).ok_or(Error::Inval)?;
        let space = thread::Space {
            root: tk.pt_root,
            asid: tk.asid,
        };
        let t = self.thread_mut(th).ok_or(Error::Inval)?;
        if t.task.is_some() {
            return Err(Error::Busy);
        }
        t.task = Some(task);
        t.space = Some(space);
        t.utcb_uva = utcb;
        t.utcb_kva = kva;
        if let Some(tk) = self.task_mut(task) {
            tk.threads.push(th);
        }
        Ok(())
    }

    pub fn alloc_asid(&mut self) -> Option<u16> {
        // ASIDs are not reused yet: 65535 tasks per boot.
        let a = self.next_asid;
        self.next_asid = a.checked_add(1)?;
        Some(a)
    }

    /// Looks up capability `index` of task `task` with `need` rights; a
    /// capability to a deleted object is invalid.
    pub fn lookup_cap(
        &mut self,
        task: ObjId,
        index: u64,
        need: CapRights,
    ) -> Result<(ObjId, CapRights), Error> {
        let objs = &self.objs;
        let caps = match objs.get(task) {
            Some(KObject::Task(t)) => &t.caps,
            _ => return Err(Error::Inval),
        };
        match caps.lookup(index, need) {
            Ok(e) if objs.contains(e.obj) => Ok((e.obj, e.rights)),
            Ok(_) => Err(Error::NoEnt),
            Err(e) => Err(e.to_error()),
        }
    }

    /// Deletes an object: capabilities to it become invalid at once (the
    /// arena slot's generation changes); threads blocked on it are woken
    /// with an error.
    pub fn delete_object(&mut self, id: ObjId) {
        ipc::abort_waiters_on(self, id);
        if let Some((fac, cost)) = self.charges.remove(&id) {
            factory::refund(self, fac, cost);
        }
        match self.objs.remove(id) {
            Some(KObject::Thread(mut t)) => {
                if let Some(h) = t.queued.take() {
                    self.cpus[t.cpu].rq.dequeue(h);
                }
                // Forget every reference other objects hold to it.
                for (_, o) in self.objs.iter_mut() {
                    match o {
                        KObject::Thread(other) => {
                            other.senders.retain(|&s| s != id);
                            if other.reply_to == Some(id) {
                                other.reply_to = None;
                            }
                        }
                        KObject::Semaphore(sem) => sem.waiters.retain(|&w| w != id),
                        KObject::Gate(g) => {
                            if g.thread == Some(id) {
                                g.thread = None;
                            }
                            g.waiters.retain(|&w| w != id);
                        }
                        KObject::Irq(i) if i.thread == Some(id) => i.thread = None,
                        _ => {}
                    }
                }
                t.state = State::Dead;
                if let Some(c) = t.running_on {
                    self.cpus[c].need_resched = true;
                    if c != arch::cpu_id() {
                        crate::platform::gic::send_resched_ipi(c);
                    }
                }
                self.zombies.push(t);
            }
            Some(KObject::Task(mut t)) => {
                let threads = core::mem::take(&mut t.threads);
                // Mappings others derived from the task's memory go too.
                self.mapdb
                    .remove_space(id, &mut ipc::transfer::Apply(&mut self.objs));
                for th in threads {
                    if self.thread(th).is_some() {
                        self.delete_object(th);
                    }
                }
                // The quota its translation tables took goes back.
                if let Some(f) = t.factory {
                    factory::refund(self, f, t.tables_charged);
                }
                // Its threads may still run on other CPUs until those switch
                // away: the space's memory is freed by `reap` after that.
                self.dead_spaces.push(t.detach());
                self.reap();
            }
            Some(KObject::Vm(v)) => {
                // The guest's mappings go; vCPUs running in it are sent
                // out and find it gone. Its tables are freed (by dropping
                // it) once no CPU runs in it.
                self.mapdb
                    .remove_space(id, &mut ipc::transfer::Apply(&mut self.objs));
                if let Some(f) = v.factory {
                    factory::refund(self, f, v.tables_charged);
                }
                crate::obj::vcpu::vm_deleted(self, id);
                drop(v);
            }
            _ => {}
        }
    }

    /// Frees dead threads whose stacks no CPU uses any more.
    pub fn reap(&mut self) {
        self.zombies.retain(|t| t.running_on.is_some());
        if !self.dead_spaces.is_empty() {
            let zombies = &self.zombies;
            // Dropping a dead space frees it.
            self.dead_spaces.retain(|d| {
                zombies
                    .iter()
                    .any(|z| z.space.is_some_and(|s| s.asid == d.asid))
            });
        }
    }
}

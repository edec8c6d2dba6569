//! [`Sys`] over the kernel (AArch64): the `l4` crate's typed stubs.

use l4::abi::proto::unmap;
use l4::{Cap, Error, Factory, Fpage, IpcGate, Kobject, SendItem, Task, Thread, ThreadControl};

use crate::{PAGE, Sys};

/// The kernel operations of a loader running in the task `this_task`,
/// creating objects with `factory` and receiving its children's parent
/// requests on `server_thread`.
#[derive(Clone, Copy, Debug)]
pub struct KernelSys {
    /// The loading task.
    pub this_task: Cap<Task>,
    /// The kernel factory new objects come from.
    pub factory: Cap<Factory>,
    /// The thread the children's parent gates are bound to.
    pub server_thread: Cap<Thread>,
}

impl Sys for KernelSys {
    fn create_task(&mut self, dest: u64, utcb_area: Fpage) -> Result<(), Error> {
        self.factory.create_task(dest, utcb_area).map(|_| ())
    }

    fn create_thread(&mut self, dest: u64) -> Result<(), Error> {
        self.factory.create_thread(dest).map(|_| ())
    }

    fn create_factory(&mut self, dest: u64, quota: u64) -> Result<(), Error> {
        self.factory.create_factory(dest, quota).map(|_| ())
    }

    fn create_gate(&mut self, dest: u64, label: u64) -> Result<(), Error> {
        self.factory
            .create_gate(dest, label, Some(self.server_thread))
            .map(|_: Cap<IpcGate>| ())
    }

    fn map(&mut self, task: u64, item: SendItem) -> Result<(), Error> {
        Cap::<Task>::from_index(task).map(self.this_task, item)
    }

    fn control(&mut self, thread: u64, task: u64, utcb: u64, handler: u64) -> Result<(), Error> {
        let c = ThreadControl::new()
            .pager(l4::abi::Cap::new(handler))
            .exc_handler(l4::abi::Cap::new(handler))
            .bind(task, utcb);
        Cap::<Thread>::from_index(thread).control(&c)
    }

    fn ex_regs(&mut self, thread: u64, pc: u64, sp: u64) -> Result<(), Error> {
        Cap::<Thread>::from_index(thread)
            .ex_regs(pc, sp, 0)
            .map(|_| ())
    }

    fn run(&mut self, scheduler: u64, thread: u64, prio: u64, cpus: u64) -> Result<(), Error> {
        Cap::<l4::Scheduler>::from_index(scheduler).run_thread(Cap::from_index(thread), prio, cpus)
    }

    fn delete(&mut self, cap: u64) {
        let _ = self
            .this_task
            .delete_cap(Cap::<Kobject>::from_index(cap).index());
    }

    fn unmap_own(&mut self, addr: u64, size: u64) {
        let mut batch = [Fpage::invalid(); 16];
        let mut n = 0;
        for (a, _, order) in crate::blocks(addr, addr, size.next_multiple_of(PAGE), 30) {
            batch[n] = Fpage::mem(a, order, l4::MemRights::RWX);
            n += 1;
            if n == batch.len() {
                let _ = self.this_task.unmap_batch(&batch, unmap::OTHER_SPACES);
                n = 0;
            }
        }
        if n > 0 {
            let _ = self.this_task.unmap_batch(&batch[..n], unmap::OTHER_SPACES);
        }
    }
}

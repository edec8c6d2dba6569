//! The capabilities of a server that makes an IPC gate for each client and
//! keeps capabilities its clients send (cons, the network switch): what it
//! needs from the kernel besides IPC ([`ServerCaps`]). The portable
//! service logic is written against the trait (a server's own kernel
//! interface hands out its `ServerCaps`) and tested on the host with a
//! fake; on AArch64, `SlotCaps` implements it with system calls on slots
//! of a [`SlotAlloc`](crate::SlotAlloc).

use l4_abi::Error;

/// What a gate-making server needs from the kernel.
pub trait ServerCaps {
    /// Milliseconds since the server started (its clock for timeouts and
    /// periodic work).
    fn now_ms(&mut self) -> u64;
    /// The same clock in microseconds (for finer deadlines); a clock that
    /// only counts milliseconds gives those.
    fn now_us(&mut self) -> u64 {
        self.now_ms() * 1000
    }
    /// Creates an IPC gate bound to the server thread with `label`; its
    /// capability index.
    fn create_gate(&mut self, label: u64) -> Result<u64, Error>;
    /// Keeps the capability that arrived in receive slot `slot` (and
    /// offers a fresh slot for the next request); returns where it is now.
    fn adopt_received(&mut self, slot: u64) -> Result<u64, Error>;
    /// Triggers the Irq `irq`; a client that deleted it is just not woken.
    fn trigger(&mut self, irq: u64);
    /// Deletes an object the server created (a gate, an Irq) and frees
    /// its slot.
    fn delete(&mut self, cap: u64);
    /// Drops the server's capability `cap` (one a client gave it; the
    /// object stays) and frees its slot.
    fn release(&mut self, cap: u64);
    /// Whether others hold capabilities derived from `gate` (a client
    /// that still uses it).
    fn has_users(&mut self, gate: u64) -> Result<bool, Error>;
}

#[cfg(target_arch = "aarch64")]
pub use target::SlotCaps;

#[cfg(target_arch = "aarch64")]
mod target {
    use super::ServerCaps;
    use crate::cap::{Cap, Factory, Irq, Task, Thread};
    use crate::slots::SlotAlloc;
    use l4_abi::Error;
    use l4_abi::call::clock_us;

    /// [`ServerCaps`] with system calls: objects made by `factory` in
    /// slots of `slots` in `task`, gates and Irqs bound to `thread`.
    pub struct SlotCaps<const W: usize> {
        /// The slots the server's capabilities live in.
        pub slots: &'static SlotAlloc<W>,
        /// The server's task.
        pub task: Cap<Task>,
        /// The factory objects are made with.
        pub factory: Cap<Factory>,
        /// The thread gates and Irqs are bound to.
        pub thread: Cap<Thread>,
        /// Where the next request's capability lands.
        pub rcv_slot: u64,
        /// The system clock at the start, in µs.
        start_us: u64,
    }

    impl<const W: usize> SlotCaps<W> {
        /// The capabilities of a server whose thread is `thread`, with a
        /// fresh receive slot, its clock starting now; [`Error::NoMem`]
        /// without a free slot.
        pub fn new(
            slots: &'static SlotAlloc<W>,
            task: Cap<Task>,
            factory: Cap<Factory>,
            thread: Cap<Thread>,
        ) -> Result<Self, Error> {
            let rcv_slot = slots.alloc().ok_or(Error::NoMem)?;
            Ok(SlotCaps {
                slots,
                task,
                factory,
                thread,
                rcv_slot,
                start_us: clock_us(),
            })
        }
    }

    impl<const W: usize> ServerCaps for SlotCaps<W> {
        fn now_ms(&mut self) -> u64 {
            self.now_us() / 1000
        }

        fn now_us(&mut self) -> u64 {
            clock_us().saturating_sub(self.start_us)
        }

        fn create_gate(&mut self, label: u64) -> Result<u64, Error> {
            let (factory, thread) = (self.factory, self.thread);
            self.slots
                .create(self.task, |slot| {
                    factory.create_gate(slot, label, Some(thread))
                })
                .map(|g| g.index())
        }

        fn adopt_received(&mut self, slot: u64) -> Result<u64, Error> {
            self.rcv_slot = self.slots.alloc().ok_or(Error::NoMem)?;
            Ok(slot)
        }

        fn trigger(&mut self, irq: u64) {
            Cap::<Irq>::from_index(irq).notify();
        }

        fn delete(&mut self, cap: u64) {
            self.slots.delete_cap(self.task, cap);
        }

        fn release(&mut self, cap: u64) {
            self.slots.release_cap(self.task, cap);
        }

        fn has_users(&mut self, gate: u64) -> Result<bool, Error> {
            self.task.cap_has_child(gate)
        }
    }
}

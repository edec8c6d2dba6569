//! Typed capability indices.
//!
//! [`Cap<T>`] is only an index into the caller's capability table plus a
//! marker type; it owns nothing and is `Copy`. Whether the slot really holds
//! an object of kind `T` is the kernel's to check: invoking a capability
//! with the wrong object's protocol fails with [`crate::Error::BadProto`] or
//! similar, an empty slot with [`crate::Error::NoPartner`].

use core::fmt;
use core::marker::PhantomData;

use l4_abi::base_caps;

/// A capability of kind `T`: an index into the caller's capability table.
#[repr(transparent)]
pub struct Cap<T: ?Sized> {
    idx: u64,
    _kind: PhantomData<fn() -> T>,
}

impl<T: ?Sized> Cap<T> {
    /// The capability at `idx`.
    pub const fn from_index(idx: u64) -> Cap<T> {
        Cap {
            idx,
            _kind: PhantomData,
        }
    }

    /// The index.
    pub const fn index(self) -> u64 {
        self.idx
    }

    /// The selector of the index, as the ABI's calls take it.
    pub const fn sel(self) -> l4_abi::Cap {
        l4_abi::Cap::new(self.idx)
    }

    /// The same index seen as another kind of object.
    pub const fn cast<U: ?Sized>(self) -> Cap<U> {
        Cap::from_index(self.idx)
    }

    /// The same index as an untyped kernel-object capability.
    pub const fn kobject(self) -> Cap<Kobject> {
        self.cast()
    }
}

impl<T: ?Sized> Clone for Cap<T> {
    fn clone(&self) -> Cap<T> {
        *self
    }
}

impl<T: ?Sized> Copy for Cap<T> {}

impl<T: ?Sized> PartialEq for Cap<T> {
    fn eq(&self, other: &Cap<T>) -> bool {
        self.idx == other.idx
    }
}

impl<T: ?Sized> Eq for Cap<T> {}

impl<T: ?Sized> fmt::Debug for Cap<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = core::any::type_name::<T>();
        let short = name.rsplit("::").next().unwrap_or(name);
        write!(f, "Cap<{short}>({:#x})", self.idx)
    }
}

macro_rules! kinds {
    ($( $(#[$doc:meta])* $name:ident, )*) => {
        $( $(#[$doc])* pub enum $name {} )*
    };
}

kinds! {
    /// Any kernel object (only the generic operations).
    Kobject,
    /// A task: an address space and a capability table.
    Task,
    /// A thread.
    Thread,
    /// A factory: creates kernel objects from its quota.
    Factory,
    /// An IPC gate: an endpoint bound to a thread with a label.
    IpcGate,
    /// An IRQ (software-triggerable, or bound to a line through an Icu).
    Irq,
    /// The interrupt controller.
    Icu,
    /// The scheduler.
    Scheduler,
    /// The kernel console.
    Vcon,
    /// A counting semaphore.
    Semaphore,
    /// The kernel's sigma0-like memory source (the root task's pager).
    Sigma0,
    /// A virtual machine's guest-physical memory (stage 2).
    Vm,
}

/// The capabilities the kernel gives the root task ([`l4_abi::base_caps`]).
pub mod base {
    use super::*;

    /// The root task itself.
    pub const TASK: Cap<Task> = Cap::from_index(base_caps::TASK);
    /// The root factory.
    pub const FACTORY: Cap<Factory> = Cap::from_index(base_caps::FACTORY);
    /// The root task's first thread.
    pub const THREAD: Cap<Thread> = Cap::from_index(base_caps::THREAD);
    /// The memory source (sigma0 protocol).
    pub const PAGER: Cap<Sigma0> = Cap::from_index(base_caps::PAGER);
    /// The kernel console.
    pub const LOG: Cap<Vcon> = Cap::from_index(base_caps::LOG);
    /// The interrupt controller.
    pub const ICU: Cap<Icu> = Cap::from_index(base_caps::ICU);
    /// The scheduler.
    pub const SCHEDULER: Cap<Scheduler> = Cap::from_index(base_caps::SCHEDULER);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_indices() {
        let t: Cap<Task> = Cap::from_index(0x123);
        assert_eq!(t.index(), 0x123);
        assert_eq!(t.sel().selector(), 0x123 << 12);
        let g: Cap<IpcGate> = t.cast();
        assert_eq!(g.index(), 0x123);
        assert_eq!(t.kobject().index(), 0x123);
        assert_eq!(base::LOG.index(), 5);
        assert_eq!(base::SCHEDULER.sel(), l4_abi::Cap::new(7));
        extern crate std;
        assert_eq!(std::format!("{:?}", base::TASK), "Cap<Task>(0x1)");
    }
}

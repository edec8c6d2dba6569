//! moe's objects and how it serves them, over the [`Kernel`] trait (so all
//! of it is tested on the host, see `tests.rs`).
//!
//! Every object moe serves has an IPC gate of its own, created with the
//! kernel factory and bound to moe's thread with the object's *label*;
//! [`Moe`] keeps the objects by label ([`Obj`]). Labels are multiples of
//! [`LABEL_STEP`] from [`FIRST_LABEL`], and moe ignores the low four bits
//! of a received label (room for the kernel to report the invoker's
//! rights there, as Fiasco does in the low two bits). The kinds, each
//! served by a module of its own:
//!
//! | kind         | protocol                               | created by                  | served in     |
//! |--------------|----------------------------------------|-----------------------------|---------------|
//! | dataspace    | Dataspace (+ `DataspacePhys`)          | user factory, boot modules  | [`dataspace`] |
//! | name space   | Namespace (read-write)                 | user factory                | [`namespace`] |
//! | `rom`        | Namespace (read-only, boot modules)    | moe at boot                 | [`namespace`] |
//! | log          | Log (Vcon layout)                      | user factory, init's log    | [`log`]       |
//! | user factory | Factory                                | moe at boot                 | [`factory`]   |
//! | sched proxy  | kernel Scheduler layout                | user factory                | [`sched`]     |
//! | parent       | Parent; page faults and exceptions of a child's runtime | the loader ([`init`]) | [`parent`] |
//!
//! Capabilities clients send arrive in [`RCV_SLOT`]; moe moves those it
//! keeps to a slot of its own. Objects moe creates for a client and does
//! not serve itself (kernel IPC gates and factories) are *granted* to the
//! client, so moe keeps no copy.

pub mod dataspace;
pub mod factory;
pub mod init;
pub mod kernel;
pub mod log;
pub mod namespace;
pub mod parent;
pub mod sched;

#[cfg(test)]
mod tests;

use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use l4_abi::fpage::item;
use l4_abi::utcb::MR_COUNT;
use l4_abi::{Error, MsgTag};
use l4_ipc::protocols::{Dataspace, Factory, Log, Namespace, ds_flags};
use l4_ipc::{Ctx, Handler, Registry};
use l4_loader::Child;

use crate::ds::Ds;
use crate::log::LineLog;
use crate::ns::Names;
use crate::pages::PageAlloc;
use crate::sched::SchedLimits;
use l4_ipc::protocols::DataspacePhys;

pub use kernel::{FIRST_SLOT, Kernel, Slots};

/// Where capabilities that clients send arrive.
pub const RCV_SLOT: u64 = 0x20;
/// The first label.
pub const FIRST_LABEL: u64 = 0x1000;
/// The distance between labels (the low bits are ignored).
pub const LABEL_STEP: u64 = 0x10;
const LABEL_MASK: u64 = !(LABEL_STEP - 1);

/// What an object is.
pub enum Kind {
    /// A dataspace.
    Ds(Ds),
    /// A read-write name space.
    Ns(Names),
    /// The `rom/` name space.
    Rom,
    /// A log.
    Log(LineLog),
    /// The user factory.
    Factory,
    /// A scheduler proxy.
    Sched(SchedLimits),
    /// A child's parent gate.
    Parent(Child),
}

impl Kind {
    fn name(&self) -> &'static str {
        match self {
            Kind::Ds(_) => "dataspace",
            Kind::Ns(_) => "name space",
            Kind::Rom => "rom",
            Kind::Log(_) => "log",
            Kind::Factory => "factory",
            Kind::Sched(_) => "scheduler proxy",
            Kind::Parent(_) => "parent",
        }
    }
}

/// An object and its gate (moe's slot).
pub struct Obj {
    /// moe's capability of the object's gate.
    pub gate: u64,
    /// The object.
    pub kind: Kind,
}

/// A boot module.
pub struct Module {
    /// Its name in `rom/`.
    pub name: String,
    /// Physical (= moe's) address.
    pub pa: u64,
    /// Size in bytes.
    pub size: u64,
    /// Its dataspace's gate.
    pub gate: u64,
}

/// All of moe's state.
pub struct Moe<K> {
    k: K,
    pages: PageAlloc,
    slots: Slots,
    objects: BTreeMap<u64, Obj>,
    next_label: u64,
    modules: Vec<Module>,
    rom_gate: u64,
    factory_gate: u64,
    /// Slots granted in the last reply, emptied at the next request.
    granted: Vec<u64>,
}

impl<K: Kernel> Moe<K> {
    /// moe over kernel `k` with the memory `pages` and no objects yet.
    pub fn new(k: K, pages: PageAlloc) -> Moe<K> {
        Moe {
            k,
            pages,
            slots: Slots::new(FIRST_SLOT),
            objects: BTreeMap::new(),
            next_label: FIRST_LABEL,
            modules: Vec::new(),
            rom_gate: 0,
            factory_gate: 0,
            granted: Vec::new(),
        }
    }

    /// The label of the next object.
    fn take_label(&mut self) -> u64 {
        let label = self.next_label;
        self.next_label += LABEL_STEP;
        label
    }

    /// A new object with a gate of its own; returns the gate.
    fn new_object(&mut self, kind: Kind) -> Result<u64, Error> {
        let label = self.next_label;
        let r = self.slots.alloc().ok_or(Error::NoMem).and_then(|slot| {
            self.k
                .bind_gate(slot, label)
                .map(|()| slot)
                .inspect_err(|_| {
                    self.slots.free(slot);
                })
        });
        match r {
            Ok(gate) => {
                self.take_label();
                self.objects.insert(label, Obj { gate, kind });
                Ok(gate)
            }
            Err(e) => {
                self.k.say(format_args!(
                    "moe: cannot create a {} object: {}",
                    kind.name(),
                    e.describe()
                ));
                self.drop_kind(kind);
                Err(e)
            }
        }
    }

    /// Deletes object `label` and what it holds.
    fn drop_object(&mut self, label: u64) {
        let Some(obj) = self.objects.remove(&label) else {
            return;
        };
        if !matches!(obj.kind, Kind::Parent(_)) {
            self.k.delete_cap(obj.gate);
            self.slots.free(obj.gate);
        }
        self.drop_kind(obj.kind);
    }

    fn drop_kind(&mut self, kind: Kind) {
        match kind {
            Kind::Ds(ds) => {
                for (a, s) in ds.release() {
                    self.k.revoke(a, s);
                    self.pages.free(a, s);
                }
            }
            Kind::Ns(names) => names.caps().for_each(|c| self.release_slot(c)),
            Kind::Log(mut log) => log.flush(&mut |l: &[u8]| self.k.log(l)),
            Kind::Parent(child) => {
                let mut sys = self.k.loader();
                child.destroy(&mut sys, &mut self.host());
            }
            Kind::Rom | Kind::Factory | Kind::Sched(_) => {}
        }
    }

    /// The loader's view of moe's memory and slots.
    fn host(&mut self) -> kernel::MoeHost<'_, K> {
        kernel::MoeHost {
            k: &mut self.k,
            pages: &mut self.pages,
            slots: &self.slots,
        }
    }

    /// Empties moe's slot `idx` (and what was derived from it) and frees it.
    fn release_slot(&mut self, idx: u64) {
        self.k.release_cap(idx);
        self.slots.free(idx);
    }

    /// Creates the `rom` name space and the user factory.
    pub fn create_services(&mut self) -> Result<(), Error> {
        self.rom_gate = self.new_object(Kind::Rom)?;
        self.factory_gate = self.new_object(Kind::Factory)?;
        Ok(())
    }

    /// Adds boot module `name` (its memory mapped 1:1 in moe) as a
    /// read-only dataspace.
    pub fn add_module(&mut self, name: &str, pa: u64, size: u64) -> Result<(), Error> {
        let ds = Ds::phys(pa, size, ds_flags::RX, 0, false);
        let gate = self.new_object(Kind::Ds(ds))?;
        self.modules.push(Module {
            name: name.to_string(),
            pa,
            size,
            gate,
        });
        Ok(())
    }

    /// The boot module `rom/name` (or `name`).
    fn module(&self, path: &str) -> Option<&Module> {
        let name = l4_loader::rom_name(path)?;
        self.modules.iter().find(|m| m.name == name)
    }

    /// Empties the slots granted in the last reply.
    fn release_granted(&mut self) {
        for slot in core::mem::take(&mut self.granted) {
            self.release_slot(slot);
        }
    }
}

/// moe seen from one object's request.
struct View<'a, K> {
    moe: &'a mut Moe<K>,
    label: u64,
}

impl<K: Kernel> View<'_, K> {
    fn kind(&mut self) -> Result<&mut Kind, Error> {
        self.moe
            .objects
            .get_mut(&self.label)
            .map(|o| &mut o.kind)
            .ok_or(Error::NoEnt)
    }
}

/// Which kind an object is, without borrowing it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum K {
    Ds,
    Ns,
    Log,
    Factory,
    Sched,
    Parent,
}

impl<Kn: Kernel> Registry for Moe<Kn> {
    fn handler(&mut self, label: u64) -> Option<&mut dyn Handler> {
        if self.objects.contains_key(&(label & LABEL_MASK)) {
            Some(self)
        } else {
            None
        }
    }
}

impl<Kn: Kernel> Handler for Moe<Kn> {
    fn handle(&mut self, ctx: &Ctx, tag: MsgTag, mrs: &mut [u64; MR_COUNT]) -> MsgTag {
        self.release_granted();
        let label = ctx.label() & LABEL_MASK;
        let Some(obj) = self.objects.get(&label) else {
            return MsgTag::reply(Err(Error::NoEnt));
        };
        let what = obj.kind.name();
        let k = match obj.kind {
            Kind::Ds(_) => K::Ds,
            Kind::Ns(_) | Kind::Rom => K::Ns,
            Kind::Log(_) => K::Log,
            Kind::Factory => K::Factory,
            Kind::Sched(_) => K::Sched,
            Kind::Parent(_) => K::Parent,
        };
        let op = if tag.words() > 0 { mrs[0] } else { u64::MAX };
        let mut view = View { moe: self, label };
        let reply = match k {
            K::Ds if tag.label() == DataspacePhys::ID && op == DataspacePhys::phys => {
                DataspacePhys::dispatch(&mut view, ctx, tag, mrs)
            }
            K::Ds => Dataspace::dispatch(&mut view, ctx, tag, mrs),
            K::Ns => Namespace::dispatch(&mut view, ctx, tag, mrs),
            K::Log => Log::dispatch(&mut view, ctx, tag, mrs),
            K::Factory => Factory::dispatch(&mut view, ctx, tag, mrs),
            K::Sched => self.sched_request(label, tag, mrs),
            K::Parent => self.parent_request(label, ctx, tag, mrs),
        };
        match reply.to_result() {
            Ok(_) if k == K::Factory && !self.granted.is_empty() => {
                // Hand the new kernel object over instead of sharing it.
                let at = reply.words() as usize;
                if reply.items() == 1 && at < MR_COUNT {
                    mrs[at] |= item::GRANT;
                }
            }
            Ok(_) => {}
            Err(Error::NoReply) => {}
            Err(Error::NoEnt) if k == K::Ns && op == Namespace::query => {}
            Err(e) => self.k.say(format_args!(
                "moe: {what} {label:#x}: request {op:#x} (protocol {}) refused: {}",
                tag.label(),
                e.describe()
            )),
        }
        reply
    }
}

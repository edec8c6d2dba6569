//! Serving the user factory: dataspaces (`Continuous`, `Pinned`,
//! `Super_pages`, alignment), name spaces, logs, scheduler proxies, and
//! kernel IPC gates and factories (granted to the client).

use l4_abi::{CapRights, Error};
use l4_ipc::protocols::{FactoryServer, LOG_TAG_MAX, ds_flags, mem_alloc_flags};
use l4_ipc::varg::{VAny, VOpt, VStr, VUint, VarArgs};
use l4_ipc::{Ctx, OptCap, RcvCap};

use super::kernel::alloc_zeroed;
use super::{Kernel, Kind, Moe, View};
use crate::ds::{Ds, SUPER_ORDER};
use crate::log::{LineLog, colour_letter, colour_number};
use crate::ns::Names;
use crate::pages::MIN_ORDER;
use crate::sched::SchedLimits;

/// The largest alignment order a dataspace may ask for (1 GiB).
pub const MAX_ALIGN: u64 = 30;

impl<K: Kernel> Moe<K> {
    /// A new dataspace of `size` bytes with [`mem_alloc_flags`] `flags`,
    /// its memory aligned to `2^align` when contiguous.
    fn new_dataspace(&mut self, size: u64, flags: u64, align: u64) -> Result<Ds, Error> {
        use mem_alloc_flags::*;
        if size == 0 || flags & !(CONTINUOUS | PINNED | SUPER_PAGES) != 0 || align > MAX_ALIGN {
            self.k.say(format_args!(
                "moe: factory: bad dataspace request (size {size:#x}, flags {flags:#x}, align {align})"
            ));
            return Err(Error::Inval);
        }
        let (k, pages) = (&mut self.k, &mut self.pages);
        if size > pages.available()
            && (flags & (CONTINUOUS | PINNED) != 0 || size > pages.capacity())
        {
            k.say(format_args!(
                "moe: out of memory: a dataspace of {size:#x} bytes requested, {:#x} free",
                pages.available()
            ));
            return Err(Error::NoMem);
        }
        if flags & CONTINUOUS != 0 {
            let mut order = (align as u8).max(MIN_ORDER);
            if flags & SUPER_PAGES != 0 && size >= 1 << SUPER_ORDER {
                order = order.max(SUPER_ORDER);
            }
            // Cleared frame by frame when first handed out (Ds::take_uncleared).
            let Some(pa) = pages.alloc(size, order) else {
                k.say(format_args!(
                    "moe: out of memory: no contiguous {size:#x} bytes (largest free block {:#x})",
                    pages.largest_block()
                ));
                return Err(Error::NoMem);
            };
            return Ok(Ds::phys_uncleared(pa, size, ds_flags::RWX, flags));
        }
        let mut ds = Ds::on_demand(size, ds_flags::RWX, flags);
        if flags & PINNED != 0
            && let Err(e) = ds.pin(&mut |s, o| alloc_zeroed(k, pages, s, o))
        {
            k.say(format_args!(
                "moe: out of memory: cannot pin {size:#x} bytes"
            ));
            for (a, s) in ds.release() {
                pages.free(a, s);
            }
            return Err(e);
        }
        Ok(ds)
    }

    /// A kernel object the client gets, made by `create` in a fresh slot;
    /// the reply grants it and the next request empties the slot.
    fn granted_object(
        &mut self,
        create: impl FnOnce(&mut K, u64) -> Result<(), Error>,
    ) -> Result<RcvCap, Error> {
        let slot = self.slots.alloc().ok_or(Error::NoMem)?;
        match create(&mut self.k, slot) {
            Ok(()) => {
                self.granted.push(slot);
                Ok(RcvCap::new(slot, CapRights::ALL))
            }
            Err(e) => {
                self.slots.free(slot);
                Err(e)
            }
        }
    }
}

impl<K: Kernel> FactoryServer for View<'_, K> {
    fn create_dataspace(
        &mut self,
        _: &Ctx,
        size: VUint,
        flags: VOpt<VUint>,
        align: VOpt<VUint>,
    ) -> Result<RcvCap, Error> {
        let flags = flags.0.map_or(0, |f| f.0);
        let align = align.0.map_or(0, |a| a.0);
        let ds = self.moe.new_dataspace(size.0, flags, align)?;
        let gate = self.moe.new_object(Kind::Ds(ds))?;
        Ok(RcvCap::new(gate, CapRights::RWS))
    }

    fn create_namespace(&mut self, _: &Ctx) -> Result<RcvCap, Error> {
        let gate = self.moe.new_object(Kind::Ns(Names::new()))?;
        Ok(RcvCap::new(gate, CapRights::RWS))
    }

    fn create_log(
        &mut self,
        _: &Ctx,
        tag: VStr<LOG_TAG_MAX>,
        colour: VOpt<VAny<16>>,
        _opts: VarArgs,
    ) -> Result<RcvCap, Error> {
        let colour = match colour.0 {
            None => None,
            Some(VAny::Str(s)) => colour_letter(&s),
            Some(v) => v.as_int().and_then(colour_number),
        };
        let gate = self
            .moe
            .new_object(Kind::Log(LineLog::new(tag.as_str(), colour)))?;
        Ok(RcvCap::new(gate, CapRights::RWS))
    }

    fn create_scheduler(
        &mut self,
        _: &Ctx,
        max_prio: VUint,
        base_prio: VUint,
        cpus: VOpt<VUint>,
    ) -> Result<RcvCap, Error> {
        let lim = SchedLimits::new(max_prio.0, base_prio.0, cpus.0.map(|c| c.0)).map_err(|e| {
            self.moe
                .k
                .say(format_args!("moe: factory: scheduler proxy refused: {e}"));
            Error::Inval
        })?;
        let gate = self.moe.new_object(Kind::Sched(lim))?;
        Ok(RcvCap::new(gate, CapRights::RWS))
    }

    fn create_ipc_gate(
        &mut self,
        _: &Ctx,
        label: VOpt<VUint>,
        thread: OptCap,
    ) -> Result<RcvCap, Error> {
        let label = label.0.map_or(0, |l| l.0);
        let thread = thread.0.map(|c| c.index);
        self.moe
            .granted_object(|k, slot| k.create_gate(slot, label, thread))
    }

    fn create_factory(&mut self, _: &Ctx, quota: VUint) -> Result<RcvCap, Error> {
        self.moe
            .granted_object(|k, slot| k.create_factory(slot, quota.0))
    }
}

//! Serving name spaces: `rom/` (the boot modules, read-only) and the
//! read-write name spaces of the user factory.

use l4_abi::{CapRights, Error};
use l4_ipc::protocols::{NAME_MAX, NamespaceServer, ns_flags};
use l4_ipc::{CapArg, Ctx, OptCap, Str};

use super::{Kernel, Kind, View};
use crate::ns::Names;

impl<K: Kernel> View<'_, K> {
    /// The read-write name space (`Perm` for `rom/`).
    fn names(&mut self) -> Result<&mut Names, Error> {
        match self.kind()? {
            Kind::Ns(n) => Ok(n),
            Kind::Rom => Err(Error::Perm),
            _ => Err(Error::NoEnt),
        }
    }

    /// Moves a received capability into a slot of moe's own.
    fn keep_cap(&mut self, c: CapArg) -> Result<u64, Error> {
        let moe = &mut *self.moe;
        let slot = moe.slots.alloc().ok_or(Error::NoMem)?;
        moe.k.keep_cap(c.index, c.rights, slot).inspect_err(|_| {
            moe.slots.free(slot);
        })?;
        Ok(slot)
    }
}

impl<K: Kernel> NamespaceServer for View<'_, K> {
    fn query(&mut self, _: &Ctx, name: Str<NAME_MAX>) -> Result<(u64, CapArg), Error> {
        if matches!(self.kind()?, Kind::Rom) {
            let m = self
                .moe
                .modules
                .iter()
                .find(|m| m.name == name.as_str())
                .ok_or(Error::NoEnt)?;
            return Ok((0, CapArg::new(m.gate, CapRights::RO)));
        }
        let (e, rest) = self.names()?.query(&name)?;
        let rights = CapRights((e.flags & ns_flags::CAP_FLAGS) as u8).union(CapRights::R);
        Ok((rest, CapArg::new(e.cap.unwrap_or(0), rights)))
    }

    fn register(
        &mut self,
        _: &Ctx,
        flags: u64,
        name: Str<NAME_MAX>,
        cap: OptCap,
    ) -> Result<(), Error> {
        // Refuse (rom/) before keeping the capability.
        self.names()?;
        let slot = cap.0.map(|c| self.keep_cap(c)).transpose()?;
        match self.names()?.register(&name, slot, flags) {
            Ok(old) => {
                old.into_iter().for_each(|s| self.moe.release_slot(s));
                Ok(())
            }
            Err(e) => {
                slot.into_iter().for_each(|s| self.moe.release_slot(s));
                Err(e)
            }
        }
    }

    fn unlink(&mut self, _: &Ctx, name: Str<NAME_MAX>) -> Result<(), Error> {
        let old = self.names()?.unlink(&name)?;
        old.into_iter().for_each(|s| self.moe.release_slot(s));
        Ok(())
    }
}

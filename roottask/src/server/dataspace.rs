//! Serving dataspaces: the Dataspace protocol and moe's
//! [`DataspacePhys`](l4_ipc::protocols::DataspacePhys), with the rights of the
//! capability a request came through.

use l4_abi::Error;
use l4_ipc::protocols::{DataspacePhysServer, DataspaceServer, ds_flags};
use l4_ipc::{CapArg, Ctx, MemArg};

use super::kernel::alloc_zeroed;
use super::{Kernel, Kind, View};
use crate::ds::{self, Ds};
use crate::pages::PageAlloc;

impl<K: Kernel> View<'_, K> {
    /// The dataspace, moe's memory and the kernel.
    fn ds(&mut self) -> Result<(&mut Ds, &mut PageAlloc, &mut K), Error> {
        let moe = &mut *self.moe;
        match moe.objects.get_mut(&self.label).map(|o| &mut o.kind) {
            Some(&mut Kind::Ds(ref mut ds)) => Ok((ds, &mut moe.pages, &mut moe.k)),
            _ => Err(Error::NoEnt),
        }
    }
}

impl<K: Kernel> DataspaceServer for View<'_, K> {
    fn map(&mut self, ctx: &Ctx, offset: u64, spot: u64, flags: u64) -> Result<MemArg, Error> {
        ds::cap_allows_write(ctx.rights(), flags & ds_flags::W != 0)?;
        let (ds, pages, k) = self.ds()?;
        for (a, n) in ds.take_uncleared(offset, 1) {
            k.zero(a, n);
        }
        let f = ds.map(offset, spot, flags, &mut |s, o| {
            alloc_zeroed(k, pages, s, o)
        })?;
        Ok(MemArg::map(f, spot))
    }

    fn clear(&mut self, ctx: &Ctx, offset: u64, size: u64) -> Result<(), Error> {
        ds::cap_allows_write(ctx.rights(), true)?;
        let (ds, _, k) = self.ds()?;
        for (a, n) in ds.clear_ranges(offset, size)? {
            // Clients that map the range see the zeroes, as they should.
            k.zero(a, n);
        }
        Ok(())
    }

    fn info(&mut self, ctx: &Ctx) -> Result<(u64, u64), Error> {
        let (ds, _, _) = self.ds()?;
        Ok((ds.size(), ds::visible_rights(ds.rights(), ctx.rights())))
    }

    fn copy_in(&mut self, _: &Ctx, _: u64, _: CapArg, _: u64, _: u64) -> Result<(), Error> {
        Err(Error::NoSys)
    }

    fn allocate(&mut self, ctx: &Ctx, offset: u64, size: u64) -> Result<(), Error> {
        ds::cap_allows_write(ctx.rights(), true)?;
        let (ds, pages, k) = self.ds()?;
        ds.allocate(offset, size, &mut |s, o| alloc_zeroed(k, pages, s, o))
    }
}

impl<K: Kernel> DataspacePhysServer for View<'_, K> {
    fn phys(&mut self, _: &Ctx, offset: u64) -> Result<(u64, u64), Error> {
        let (ds, pages, k) = self.ds()?;
        let (pa, n) = ds.phys_at(offset, &mut |s, o| alloc_zeroed(k, pages, s, o))?;
        // Who knows where memory is may reach it without a mapping (a
        // device's DMA): all of it is cleared first.
        for (a, len) in ds.take_uncleared(offset, n) {
            k.zero(a, len);
        }
        Ok((pa, n))
    }
}

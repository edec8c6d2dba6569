//! The task's address space as the runtime sees it: attaching and
//! detaching regions, mapping their pages on demand (a page fault, or the
//! runtime touching program memory), and reading and writing program
//! memory for system calls.
//!
//! Two region maps share one set of mapped pages: the program's
//! ([`Space::Program`]) and the runtime's windows onto files
//! ([`Space::Windows`]).

use alloc::vec;
use alloc::vec::Vec;

use super::{Backend, DsMap, MAX_WINDOW_ORDER, Runtime};
use crate::layout::*;
use crate::linux::Timespec;
use crate::linux::errno::*;
use crate::regions::{Backing, Kind, PAGE, Prot, Region, RegionMap, page_down, page_up};

/// Where the runtime looks up an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Space {
    /// The program's regions (syscall buffers, faults).
    Program,
    /// The runtime's windows (files).
    Windows,
}

impl<B: Backend> Runtime<B> {
    fn map_of(&self, space: Space) -> &RegionMap {
        match space {
            Space::Program => &self.regions,
            Space::Windows => &self.windows,
        }
    }

    /// The dataspace of region `r`, creating an anonymous one on first use.
    fn region_ds(&mut self, space: Space, r: &Region) -> Result<(u64, u64), i64> {
        match r.backing {
            Backing::Reserved => Err(EFAULT),
            Backing::Ds { ds, offset }
            | Backing::Anon {
                ds: Some(ds),
                offset,
            } => Ok((ds, offset)),
            Backing::Anon { ds: None, .. } => {
                let ds = self.b.ds_alloc(r.len(), r.kind != Kind::Stack)?;
                self.startup.dataspaces += 1;
                let map = match space {
                    Space::Program => &mut self.regions,
                    Space::Windows => &mut self.windows,
                };
                map.set_anon_ds(r.start, ds, &mut self.refs);
                Ok((ds, 0))
            }
        }
    }

    /// Maps `[from, to)` of region `r` (all inside it) with `prot`, in
    /// receive windows as large as alignment allows inside `[lo, hi)` (the
    /// region for a fault, so that one fault maps as much as the region and
    /// the dataspace allow; the range alone when the runtime reads or
    /// writes program memory).
    pub(super) fn map_pages(
        &mut self,
        space: Space,
        r: &Region,
        (from, to): (u64, u64),
        (lo, hi): (u64, u64),
        prot: Prot,
    ) -> Result<(), i64> {
        let (ds, offset) = self.region_ds(space, r)?;
        let (lo, hi) = (lo.max(r.start), hi.min(r.end));
        let mut va = page_down(from);
        while va < to {
            let mut order = 12u8;
            while order < MAX_WINDOW_ORDER {
                let size = 1u64 << (order + 1);
                let base = va & !(size - 1);
                if base < lo || base + size > hi {
                    break;
                }
                order += 1;
            }
            let base = va & !((1u64 << order) - 1);
            let off = offset + (va - r.start);
            let (lb, lo) = self.b.ds_map(DsMap {
                ds,
                offset: off,
                spot: va,
                window: (base, order),
                prot,
            })?;
            let lend = lb.saturating_add(1u64 << lo.min(63));
            if lb > va || lend <= va {
                return Err(EFAULT);
            }
            let (ms, me) = (lb.max(r.start), lend.min(r.end));
            self.mapped.insert(ms, me);
            self.startup.maps += 1;
            self.startup.mapped += me - ms;
            va = lend;
        }
        Ok(())
    }

    /// Makes sure `[addr, addr + len)` is mapped so the runtime can read
    /// it (and write it with `write`), within regions that allow it.
    pub(super) fn ensure(
        &mut self,
        space: Space,
        addr: u64,
        len: u64,
        write: bool,
    ) -> Result<(), i64> {
        if len == 0 {
            return Ok(());
        }
        let end = addr.checked_add(len).ok_or(EFAULT)?;
        while let Some((gs, ge)) = self.mapped.first_gap(addr, end) {
            let r = *self.map_of(space).lookup(gs).ok_or(EFAULT)?;
            if !r.prot.read() || (write && !r.prot.write()) {
                return Err(EFAULT);
            }
            let (from, to) = (gs, ge.min(r.end));
            let bounds = (page_down(from), page_up(to).ok_or(EFAULT)?);
            self.map_pages(space, &r, (from, to), bounds, r.prot)?;
        }
        // Mapped pages may belong to regions that forbid the access.
        let mut at = addr;
        while at < end {
            let r = self.map_of(space).lookup(at).ok_or(EFAULT)?;
            if !r.prot.read() || (write && !r.prot.write()) {
                return Err(EFAULT);
            }
            at = r.end;
        }
        Ok(())
    }

    pub(super) fn read_user(&mut self, addr: u64, len: usize) -> Result<Vec<u8>, i64> {
        self.ensure(Space::Program, addr, len as u64, false)?;
        let mut v = vec![0u8; len];
        self.b.read_mem(addr, &mut v);
        Ok(v)
    }

    pub(super) fn write_user(&mut self, addr: u64, data: &[u8]) -> Result<(), i64> {
        self.ensure(Space::Program, addr, data.len() as u64, true)?;
        self.b.write_mem(addr, data);
        Ok(())
    }

    pub(super) fn read_u32(&mut self, addr: u64) -> Result<u32, i64> {
        let v = self.read_user(addr, 4)?;
        Ok(u32::from_le_bytes([v[0], v[1], v[2], v[3]]))
    }

    pub(super) fn read_u64(&mut self, addr: u64) -> Result<u64, i64> {
        let v = self.read_user(addr, 8)?;
        let mut w = [0u8; 8];
        w.copy_from_slice(&v);
        Ok(u64::from_le_bytes(w))
    }

    pub(super) fn read_timespec(&mut self, addr: u64) -> Result<u64, i64> {
        let v = self.read_user(addr, 16)?;
        let mut b = [0u8; 16];
        b.copy_from_slice(&v);
        Timespec::from_bytes(b).to_ns().ok_or(EINVAL)
    }

    /// A NUL-terminated string of at most `max` bytes.
    pub(super) fn read_cstr(&mut self, addr: u64, max: usize) -> Result<Vec<u8>, i64> {
        let mut out = Vec::new();
        let mut at = addr;
        loop {
            let n = (PAGE - at % PAGE) as usize;
            let chunk = self.read_user(at, n)?;
            if let Some(z) = chunk.iter().position(|&c| c == 0) {
                out.extend_from_slice(&chunk[..z]);
                break;
            }
            out.extend_from_slice(&chunk);
            if out.len() > max {
                return Err(ENAMETOOLONG);
            }
            at = at.checked_add(n as u64).ok_or(EFAULT)?;
        }
        if out.len() > max {
            return Err(ENAMETOOLONG);
        }
        Ok(out)
    }

    /// Removes the mappings of `[start, end)` (the runtime maps again on
    /// the next touch).
    pub(super) fn unmap_range(&mut self, start: u64, end: u64) {
        // Only what is mapped: unmapping costs the kernel work per page.
        for (s, e) in self.mapped.within(start, end) {
            self.b.unmap(s, e);
        }
        self.mapped.remove(start, end);
        // A page faulting again after this is not "not staying mapped".
        if (start..end).contains(&self.last_fault.0) {
            self.last_fault = (u64::MAX, 0);
        }
    }

    pub(super) fn detach(&mut self, space: Space, start: u64, end: u64) {
        let map = match space {
            Space::Program => &mut self.regions,
            Space::Windows => &mut self.windows,
        };
        if let Ok((removed, dead)) = map.detach(start, end, &mut self.refs) {
            for r in removed {
                self.unmap_range(r.start, r.end);
            }
            for ds in dead {
                self.b.release_cap(ds);
            }
        }
    }

    pub(super) fn attach(&mut self, space: Space, r: Region) -> Result<(), i64> {
        let map = match space {
            Space::Program => &mut self.regions,
            Space::Windows => &mut self.windows,
        };
        map.attach(r, &mut self.refs).map_err(|_| ENOMEM)
    }

    pub(super) fn open_window(&mut self, ds: u64, size: u64) -> Result<u64, i64> {
        let len = page_up(size).ok_or(ENOMEM)?.max(PAGE);
        let at = self
            .windows
            .find_free(len, RT_WINDOWS_BASE, RT_WINDOWS_END, 1 << 16)
            .ok_or(ENOMEM)?;
        self.attach(
            Space::Windows,
            Region::new(
                at,
                at + len,
                Prot::R,
                Backing::Ds { ds, offset: 0 },
                Kind::Window,
            ),
        )?;
        Ok(at)
    }

    pub(super) fn close_window(&mut self, window: u64, size: u64) {
        let len = page_up(size).unwrap_or(PAGE).max(PAGE);
        self.detach(Space::Windows, window, window + len);
    }
}

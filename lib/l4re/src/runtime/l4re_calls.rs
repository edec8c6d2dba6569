//! The runtime's own system calls ([`crate::linux::l4re_sys`]): attaching
//! a dataspace capability of the program, and a page of the UTCB area
//! (a vCPU's state area). `THREAD_CAP` is answered by the switch.

use super::mmap::placement_align;
use super::{Backend, Runtime, Space};
use crate::env::CAP_LIMIT;
use crate::layout::*;
use crate::linux::SysResult;
use crate::linux::errno::*;
use crate::regions::{Backing, Kind, PAGE, Prot, Region, page_up};

/// UTCB slots in a page.
const SLOTS_PER_PAGE: usize = (PAGE / 1024) as usize;

impl<B: Backend> Runtime<B> {
    /// `l4re_attach(ds, size, offset, prot)`.
    pub(super) fn sys_l4re_attach(
        &mut self,
        ds: u64,
        size: u64,
        offset: u64,
        prot: u64,
    ) -> SysResult {
        if size == 0 || !offset.is_multiple_of(PAGE) || ds == 0 || ds >= CAP_LIMIT {
            return Err(EINVAL);
        }
        if RT_CAPS.contains(&ds) {
            // The runtime's own capabilities are not the program's to map.
            return Err(EPERM);
        }
        let len = page_up(size).ok_or(ENOMEM)?;
        let start = self
            .regions
            .find_free(len, MMAP_BASE, MMAP_END, placement_align(len))
            .ok_or(ENOMEM)?;
        let p = Prot::from_linux(prot);
        // One reference more than regions hold: detaching never releases
        // the program's capability.
        self.refs.inc(ds);
        let r = Region::new(
            start,
            start + len,
            p,
            Backing::Ds { ds, offset },
            Kind::Mmap,
        );
        if let Err(e) = self.attach(Space::Program, r) {
            self.refs.dec(ds);
            return Err(e);
        }
        if prot & crate::linux::l4re_sys::ATTACH_ON_DEMAND != 0 {
            return Ok(start);
        }
        // All of it now, in pieces as large as the dataspace gives: the
        // program may hand the memory on (to a Vm), which needs it mapped.
        let whole = (start, start + len);
        if let Err(e) = self.map_pages(Space::Program, &r, whole, whole, p) {
            self.detach(Space::Program, start, start + len);
            return Err(e);
        }
        Ok(start)
    }

    /// `l4re_utcb_page()`: the highest free page of the UTCB area.
    pub(super) fn sys_l4re_utcb_page(&mut self) -> SysResult {
        // Slot 0 (the runtime) and 1 (the main thread) are in page 0.
        let free =
            |rt: &Self, s: usize| !rt.threads.contains_key(&s) && !rt.utcb_reserved.contains(&s);
        let page = (1..UTCB_SLOTS / SLOTS_PER_PAGE)
            .rev()
            .find(|p| (p * SLOTS_PER_PAGE..(p + 1) * SLOTS_PER_PAGE).all(|s| free(self, s)))
            .ok_or(ENOMEM)?;
        let first = page * SLOTS_PER_PAGE;
        self.utcb_reserved.extend(first..first + SLOTS_PER_PAGE);
        Ok(utcb(first))
    }
}

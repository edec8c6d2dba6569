//! Tasks: an address space (a TTBR0 translation table with an ASID), a
//! capability table, and the UTCB area the kernel provides.

use super::{Call, Done, OpResult, cap_arg, need, ok};
use crate::ipc::transfer;
use crate::mm::{self, FrameTables, PAGE};
use crate::state::Kernel;
use alloc::vec::Vec;
use kernel_core::cap::CapTable;
use kernel_core::kobj::ObjId;
use l4_abi::MemRights;
use l4_abi::ops::TaskMsg;
use l4_abi::proto::UnmapFlags;
use l4_abi::utcb::MR_COUNT;
use l4_abi::{CapRights, Error, MsgTag};
use l4_pgtable::Attr;

/// Capability slots per task.
pub const CAP_LIMIT: u64 = 4096;
/// Top of the user address range (TTBR0, 48 bits; we use the low 47).
pub const USER_TOP: u64 = 1 << 47;

pub struct Task {
    pub pt_root: u64,
    pub asid: u16,
    pub caps: CapTable<ObjId>,
    /// UTCB area: user address, size, and the kernel pages behind it.
    pub utcb_base: u64,
    pub utcb_pages: Vec<u64>,
    /// Threads bound to this task (for cleanup).
    pub threads: Vec<ObjId>,
    /// The factory whose quota pays for the task's translation tables
    /// (`None`: the root task, unlimited).
    pub factory: Option<ObjId>,
    /// Translation-table pages the task's mappings have made so far.
    pub table_pages: u64,
    /// Quota taken from `factory` for them (given back when the task goes).
    pub tables_charged: u64,
}

/// Translation tables that count the pages they take.
struct CountedTables<'a>(&'a mut u64);

impl l4_pgtable::Tables for CountedTables<'_> {
    fn alloc(&mut self) -> Option<u64> {
        let pa = mm::alloc_frame()?;
        *self.0 += 1;
        Some(pa)
    }
    fn table(&mut self, pa: u64) -> &mut [u64; 512] {
        // SAFETY: the walker passes pages of the task's own tree, which the
        // task (under the big kernel lock) alone uses.
        unsafe { mm::table_at(pa) }
    }
}

pub fn mem_attr(r: MemRights) -> Attr {
    Attr::user(r.contains(MemRights::W), r.contains(MemRights::X))
}

impl Task {
    pub fn new(asid: u16) -> Option<Task> {
        let root = mm::alloc_frame()?;
        Some(Task {
            pt_root: root,
            asid,
            caps: CapTable::new(CAP_LIMIT),
            utcb_base: 0,
            utcb_pages: Vec::new(),
            threads: Vec::new(),
            factory: None,
            table_pages: 0,
            tables_charged: 0,
        })
    }

    /// Maps one page (replacing what was there).
    pub fn map_page(&mut self, va: u64, pa: u64, rights: MemRights) -> Result<(), l4_abi::Error> {
        if va >= USER_TOP {
            return Err(l4_abi::Error::Inval);
        }
        let (root, asid) = (self.pt_root, self.asid);
        let mut t = CountedTables(&mut self.table_pages);
        // Only a replaced entry can be in a TLB: invalid entries are never
        // cached, so a fresh mapping needs no (broadcast) invalidation.
        if l4_pgtable::unmap_page(&mut t, root, va).is_some() {
            crate::arch::tlb_flush_page(va, asid);
        }
        l4_pgtable::map(&mut t, root, va, pa, PAGE, mem_attr(rights), false).map_err(
            |e| match e {
                l4_pgtable::MapError::NoMemory => l4_abi::Error::NoMem,
                _ => l4_abi::Error::Inval,
            },
        )?;
        crate::arch::mapping_barrier();
        Ok(())
    }

    /// Maps `size` bytes of 4 KiB pages from `va` to `pa` in one walk of
    /// the tables (one barrier for all); pages already mapped in the range
    /// are replaced one by one.
    pub fn map_range(
        &mut self,
        va: u64,
        pa: u64,
        size: u64,
        rights: MemRights,
    ) -> Result<(), l4_abi::Error> {
        if va.checked_add(size).is_none_or(|end| end > USER_TOP) {
            return Err(l4_abi::Error::Inval);
        }
        let (root, attr) = (self.pt_root, mem_attr(rights));
        let mut t = CountedTables(&mut self.table_pages);
        match l4_pgtable::map(&mut t, root, va, pa, size, attr, false) {
            Ok(()) => {
                crate::arch::mapping_barrier();
                Ok(())
            }
            Err(l4_pgtable::MapError::NoMemory) => Err(l4_abi::Error::NoMem),
            // Something is mapped there already: replace page by page.
            Err(l4_pgtable::MapError::Exists { .. }) => (0..size)
                .step_by(PAGE as usize)
                .try_for_each(|off| self.map_page(va + off, pa + off, rights)),
            Err(_) => Err(l4_abi::Error::Inval),
        }
    }

    pub fn unmap_page(&mut self, va: u64) {
        let mut t = FrameTables;
        if l4_pgtable::unmap_page(&mut t, self.pt_root, va).is_some() {
            crate::arch::tlb_flush_page(va, self.asid);
        }
    }

    /// Physical address and rights of the page at `va`.
    pub fn lookup(&self, va: u64) -> Option<(u64, MemRights)> {
        let (pa, attr) = l4_pgtable::translate(&mut FrameTables, self.pt_root, va)?;
        if !attr.user {
            return None;
        }
        let mut r = MemRights::R;
        if attr.write {
            r = MemRights(r.0 | MemRights::W.0);
        }
        if attr.user_exec {
            r = MemRights(r.0 | MemRights::X.0);
        }
        Some((pa, r))
    }

    /// Sets up the UTCB area: `size` bytes of zeroed kernel memory mapped
    /// read-write at `base`.
    pub fn set_utcb_area(&mut self, base: u64, size: u64) -> Result<(), l4_abi::Error> {
        if !self.utcb_pages.is_empty()
            || !base.is_multiple_of(PAGE)
            || size == 0
            || size > 64 * PAGE
            || base + size > USER_TOP
        {
            return Err(l4_abi::Error::Inval);
        }
        for i in 0..size.div_ceil(PAGE) {
            let pa = mm::alloc_frame().ok_or(l4_abi::Error::NoMem)?;
            self.utcb_pages.push(pa);
            self.map_page(base + i * PAGE, pa, MemRights::RW)?;
        }
        self.utcb_base = base;
        Ok(())
    }

    /// Kernel address of the UTCB at user address `uva` in the area.
    pub fn utcb_kva(&self, uva: u64) -> Option<u64> {
        let off = uva.checked_sub(self.utcb_base)?;
        if !uva.is_multiple_of(l4_abi::utcb::UTCB_ALIGN as u64) {
            return None;
        }
        let pa = *self.utcb_pages.get((off / PAGE) as usize)?;
        Some(mm::phys_to_virt(pa) + off % PAGE)
    }

    /// Copies bytes from the task's memory; `None` if any is not mapped.
    pub fn read_user(&self, va: u64, buf: &mut [u8]) -> Option<()> {
        let mut done = 0;
        while done < buf.len() {
            let at = va.checked_add(done as u64)?;
            let (pa, _) = self.lookup(at & !(PAGE - 1))?;
            let off = at & (PAGE - 1);
            let n = ((PAGE - off) as usize).min(buf.len() - done);
            // SAFETY: pa is a page mapped into the task, so RAM (or device
            // memory handed out by sigma0) covered by the linear map.
            let src =
                unsafe { core::slice::from_raw_parts(mm::phys_to_virt(pa + off) as *const u8, n) };
            buf[done..done + n].copy_from_slice(src);
            done += n;
        }
        Some(())
    }
}

/// The memory of a deleted task's address space: its translation tables
/// and UTCB pages. Freed when dropped, which the kernel does only once no
/// CPU can still run in that space (a deleted thread keeps running until
/// its CPU switches away).
pub struct DeadSpace {
    root: u64,
    pub asid: u16,
    utcb_pages: Vec<u64>,
}

impl Task {
    /// Takes the address space's memory out of the task (which then owns
    /// nothing to free).
    pub fn detach(&mut self) -> DeadSpace {
        DeadSpace {
            root: core::mem::take(&mut self.pt_root),
            asid: self.asid,
            utcb_pages: core::mem::take(&mut self.utcb_pages),
        }
    }
}

impl Drop for DeadSpace {
    fn drop(&mut self) {
        for &pa in &self.utcb_pages {
            mm::free_frames(pa, 1);
        }
        if self.root != 0 {
            // The translation tables, found by walking them (no list to grow).
            l4_pgtable::for_each_table(&mut FrameTables, self.root, |pa| mm::free_frames(pa, 1));
        }
        crate::arch::tlb_flush_asid(self.asid);
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        // A task that never ran (creation failed half-way) or was detached.
        drop(self.detach());
    }
}

pub fn invoke(k: &mut Kernel, c: &Call<'_>) -> OpResult {
    let (caller_task, target, rights) = (c.task, c.obj, c.rights);
    match TaskMsg::decode(c.tag, c.m)? {
        TaskMsg::Map(a) => {
            need(rights, CapRights::W)?;
            let (src, _) = cap_arg(k, caller_task, a.src)?;
            if k.task(src).is_none() {
                return Err(Error::Inval);
            }
            let mut msg = [0u64; MR_COUNT];
            msg[..2].copy_from_slice(&a.item.to_words());
            let t = MsgTag::new(0, 0, 1, 0);
            transfer::message(
                k,
                t,
                &msg,
                src,
                target,
                &kernel_core::ipc_rules::RecvBuffers::whole_space(),
                true,
            )?;
            ok(0)
        }
        TaskMsg::Unmap(a) => {
            need(rights, CapRights::W)?;
            let self_too = a.flags.contains(UnmapFlags::ALL_SPACES);
            let delete = a.flags.contains(UnmapFlags::DELETE_OBJ);
            for &fp in a.fpages.as_slice() {
                let seen = transfer::unmap(k, target, fp, self_too);
                if delete {
                    // Deleting needs D on the capability named.
                    for (_, obj, rights) in seen {
                        if rights.contains(CapRights::D) {
                            k.delete_object(obj);
                        }
                    }
                }
            }
            ok(0)
        }
        TaskMsg::CapInfo(a) => {
            let idx = a.sel >> l4_abi::sys::CAP_SHIFT;
            let t = k.task(target).ok_or(Error::Inval)?;
            let found = t.caps.get(idx).copied().filter(|e| k.objs.contains(e.obj));
            if let Some(other) = a.other {
                let b = t
                    .caps
                    .get(other >> l4_abi::sys::CAP_SHIFT)
                    .copied()
                    .filter(|e| k.objs.contains(e.obj));
                let same = matches!((found, b), (Some(x), Some(y)) if x.obj == y.obj);
                return Ok(Done::Reply(same as i64, 0));
            }
            if a.sel & 1 != 0 {
                let node = k.mapdb.lookup(target, kernel_core::mapdb::Kind::Cap, idx);
                let children = node.is_some_and(|n| k.mapdb.children(n).next().is_some());
                return Ok(Done::Reply(children as i64, 0));
            }
            Ok(Done::Reply(found.is_some() as i64, 0))
        }
        TaskMsg::AddKuMem(_) => Err(Error::NoSys),
    }
}

//! The Vm object: a guest-physical address space (stage-2 translation
//! tables with a VMID of its own).
//!
//! A task fills it with the ordinary map operation (Task map with the Vm
//! as the destination): the mapping database records each mapping as a
//! child of the task's, in records of up to 2 MiB, so unmapping in the
//! task, or deleting it, revokes the guest's mapping too. vCPU threads run
//! guests in it ([`super::vcpu`]).
//!
//! Its MMIO shortcuts ([`l4_abi::vcpu::shortcut`]) let the kernel answer
//! a few device registers itself ([`invoke`], and the exit path in
//! [`super::vcpu`]).
//!
//! Deleting a Vm removes its mappings at once; its tables and VMID are
//! freed once no CPU runs a guest in it any more (a vCPU that ran in it
//! is kicked out and finds the Vm gone).

use super::{Call, KObject, OpResult, cap_arg, need, ok};
use crate::arch::{self, vcpu as hw};
use crate::mm::{self, PAGE};
use crate::state::Kernel;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use kernel_core::kobj::ObjId;
use kernel_core::shortcut::{Kind, Shortcuts};
use l4_abi::ops::VmMsg;
use l4_abi::vcpu::shortcut;
use l4_abi::{CapRights, Error, MemRights};
use l4_pgtable::stage2::{self, Leaves, S2Attr};
use spin::Mutex;

pub struct Vm {
    /// The stage-2 root (two pages).
    root: u64,
    pub vmid: u16,
    /// The factory whose quota pays for the tables (as for a task).
    pub factory: Option<ObjId>,
    /// Table pages made so far, and the quota taken for them.
    pub table_pages: u64,
    pub tables_charged: u64,
    /// Registers the kernel answers itself.
    pub shortcuts: Shortcuts<Bell>,
}

/// What a doorbell rings: an Irq, through the capability the task that
/// set the doorbell held (and must still hold: revoking that capability
/// silences the doorbell, as it would the task's own triggers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bell {
    /// The task that set the doorbell.
    pub task: ObjId,
    /// Its capability index of the Irq.
    pub index: u64,
    /// The Irq.
    pub irq: ObjId,
}

impl Bell {
    /// The Irq, if `task` still has it at `index` (the id names that very
    /// object while it lives, and `lookup_cap` finds live objects only).
    pub fn irq(&self, k: &mut Kernel) -> Option<ObjId> {
        let (obj, _) = k.lookup_cap(self.task, self.index, CapRights::NONE).ok()?;
        (obj == self.irq).then_some(obj)
    }
}

/// Tables of a Vm that count the pages they take.
struct Counted<'a>(&'a mut u64);

impl l4_pgtable::Tables for Counted<'_> {
    fn alloc(&mut self) -> Option<u64> {
        let pa = mm::alloc_frame()?;
        *self.0 += 1;
        Some(pa)
    }
    fn table(&mut self, pa: u64) -> &mut [u64; 512] {
        // SAFETY: the walker passes pages of the Vm's own tree, which the
        // Vm (under the big kernel lock) alone uses.
        unsafe { mm::table_at(pa) }
    }
}

/// VMIDs in use (bit n: VMID n; 0 is never given out).
static VMIDS: Mutex<[u64; 1024]> = Mutex::new([0; 1024]);

fn alloc_vmid() -> Option<u16> {
    let mut map = VMIDS.lock();
    let limit = hw::vmid_count().min(65535);
    (1..=limit).find_map(|v| {
        let (w, b) = (v as usize / 64, v % 64);
        (map[w] & (1 << b) == 0).then(|| {
            map[w] |= 1 << b;
            v as u16
        })
    })
}

fn free_vmid(v: u16) {
    VMIDS.lock()[usize::from(v) / 64] &= !(1 << (v % 64));
}

/// Every Vm's stage-2 leaves are pages only ([`Leaves::Pages`]), not
/// blocks where they fit: chosen once at boot ([`set_leaves`]).
static PAGES_ONLY: AtomicBool = AtomicBool::new(false);

/// Sets the leaves every Vm's stage-2 tables get (at boot, before any Vm).
pub fn set_leaves(l: Leaves) {
    PAGES_ONLY.store(l == Leaves::Pages, Ordering::Relaxed);
}

fn leaves() -> Leaves {
    if PAGES_ONLY.load(Ordering::Relaxed) {
        Leaves::Pages
    } else {
        Leaves::Blocks
    }
}

/// Leaves an unmap invalidates one by one; beyond that it drops the VMID's
/// whole TLB instead (a 2 MiB record made of pages is 512 leaves).
const FLUSH_EACH_MAX: usize = 8;

/// Per CPU: the VMID of the guest it runs (0: none).
static RUNNING: [AtomicU16; arch::MAX_CPUS] = [const { AtomicU16::new(0) }; arch::MAX_CPUS];

/// Deleted Vms' tables, freed when no CPU runs in them any more.
static DEAD: Mutex<Vec<(u64, u16)>> = Mutex::new(Vec::new());
/// `DEAD` is not empty (set and cleared under its lock): every guest
/// exit reaps, and most find nothing without taking the lock.
static ANY_DEAD: AtomicBool = AtomicBool::new(false);

/// Stage-2 attributes of a mapping of `[pa, pa + size)`: RAM is normal
/// memory, anything else (a device passed through) device memory.
pub fn s2_attr(pa: u64, size: u64, r: MemRights) -> S2Attr {
    if mm::is_ram(pa, size) {
        S2Attr::ram(r.contains(MemRights::W), r.contains(MemRights::X))
    } else {
        S2Attr::device(r.contains(MemRights::W))
    }
}

impl Vm {
    /// A new, empty Vm; `None` without memory or VMIDs.
    pub fn new() -> Option<Vm> {
        let vmid = alloc_vmid()?;
        // Two pages, aligned to 8 KiB by the buddy allocator.
        let Some(root) = mm::alloc_frames(2) else {
            free_vmid(vmid);
            return None;
        };
        Some(Vm {
            root,
            vmid,
            factory: None,
            table_pages: 0,
            tables_charged: 0,
            shortcuts: Shortcuts::default(),
        })
    }

    /// VTTBR_EL2 for running a guest in this Vm.
    pub fn vttbr(&self) -> u64 {
        stage2::vttbr(self.root, self.vmid)
    }

    /// Maps `size` bytes (a page or a 2 MiB-aligned block) of guest
    /// memory at `ipa`, replacing what was there; in one block or in pages
    /// as chosen at boot ([`set_leaves`]).
    pub fn map(&mut self, ipa: u64, pa: u64, size: u64, rights: MemRights) -> Result<(), Error> {
        self.unmap(ipa, size);
        let root = self.root;
        stage2::map(
            &mut Counted(&mut self.table_pages),
            root,
            ipa,
            pa,
            size,
            s2_attr(pa, size, rights),
            leaves(),
        )
        .map_err(|e| match e {
            l4_pgtable::MapError::NoMemory => Error::NoMem,
            _ => Error::Inval,
        })?;
        arch::mapping_barrier();
        Ok(())
    }

    /// Removes what is mapped in `[ipa, ipa + size)` (whole blocks), and
    /// its TLB entries: leaf by leaf, or the VMID's all for many leaves.
    pub fn unmap(&mut self, ipa: u64, size: u64) {
        let mut gone = [0u64; FLUSH_EACH_MAX];
        let mut n = 0;
        let _ = stage2::unmap(&mut mm::FrameTables, self.root, ipa, size, |r| {
            if let Some(slot) = gone.get_mut(n) {
                *slot = r.ipa;
            }
            n += 1;
        });
        if n > FLUSH_EACH_MAX {
            hw::tlb_flush_vmid(self.vmid);
        } else {
            for &a in &gone[..n] {
                hw::tlb_flush_ipa(self.vmid, a);
            }
        }
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let mut dead = DEAD.lock();
        dead.push((self.root, self.vmid));
        ANY_DEAD.store(true, Ordering::Release);
        drop(dead);
        reap();
    }
}

/// Vm operations ([`VmMsg`]; memory goes in with the Task protocol's map).
pub fn invoke(k: &mut Kernel, c: &Call<'_>) -> OpResult {
    match VmMsg::decode(c.tag, c.m)? {
        VmMsg::Shortcut(op) => {
            need(c.rights, CapRights::W)?;
            let kind = match op.kind {
                shortcut::NONE => None,
                shortcut::CONSTANT => Some(Kind::Constant(op.value as u32)),
                shortcut::DOORBELL => {
                    // Whoever may trigger the Irq may have the guest do it,
                    // as long as it may.
                    let arg = op.irq.ok_or(Error::Inval)?;
                    let (irq, _) = cap_arg(k, c.task, arg)?;
                    if !matches!(k.objs.get(irq), Some(KObject::Irq(_))) {
                        return Err(Error::Inval);
                    }
                    Some(Kind::Doorbell(Bell {
                        task: c.task,
                        index: arg.index,
                        irq,
                    }))
                }
                _ => return Err(Error::Inval),
            };
            let Some(KObject::Vm(vm)) = k.objs.get_mut(c.obj) else {
                return Err(Error::NoEnt);
            };
            match kind {
                Some(kind) => vm.shortcuts.set(op.gpa, kind)?,
                None => vm.shortcuts.remove(op.gpa)?,
            }
            ok(0)
        }
    }
}

/// Frees the tables and VMIDs of deleted Vms that no CPU runs a guest in.
#[inline(always)]
pub fn reap() {
    if ANY_DEAD.load(Ordering::Acquire) {
        reap_dead();
    }
}

/// [`reap`] when there are deleted Vms.
#[inline(never)]
fn reap_dead() {
    let mut dead = DEAD.lock();
    dead.retain(|&(root, vmid)| {
        if RUNNING.iter().any(|r| r.load(Ordering::Acquire) == vmid) {
            return true;
        }
        stage2::for_each_table(&mut mm::FrameTables, root, |pa| mm::free_frames(pa, 1));
        mm::free_frames(root, 2);
        hw::tlb_flush_vmid(vmid);
        free_vmid(vmid);
        false
    });
    ANY_DEAD.store(!dead.is_empty(), Ordering::Release);
}

/// This CPU is about to run a guest with `vmid` (0: it stopped).
pub fn set_running(vmid: u16) {
    RUNNING[arch::cpu_id()].store(vmid, Ordering::Release);
}

/// Bytes of translation tables one more mapping can need at most.
pub const TABLES_PER_MAPPING: u64 = 2 * PAGE;

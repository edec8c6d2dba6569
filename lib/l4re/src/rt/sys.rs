//! The L4 backend: the runtime's effects as kernel and service calls.

use l4::abi::fault::{EXC_REGS_WORDS, ExcRegs};
use l4::abi::proto::unmap;
use l4::msg::{self, ThreadControl};
use l4::{Cap, Error, Fpage, MemRights, MsgTag, RecvItem, Timeouts};
use l4_env::caps;
use l4_ipc::RecvBufs;
use l4_ipc::protocols::{
    DataspaceClient, FactoryClient, NamespaceClient, ParentClient, mem_alloc_flags, parent_signal,
};
use l4re::linux::errno::*;
use l4re::regions::Prot;
use l4re::runtime::{Backend, DsMap};

use super::PROGRAM_PRIO;

/// The runtime's capability slots.
static SLOTS: l4::SlotAlloc<
    { ((l4re::layout::RT_CAPS.end - l4re::layout::RT_CAPS.start) / 64) as usize },
> = l4::SlotAlloc::new(l4re::layout::RT_CAPS.start);

/// Whether the main thread's capability is at [`caps::MAIN_THREAD`] yet.
static MAIN_MAPPED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

fn this_task() -> Cap<l4::Task> {
    Cap::from_index(caps::THIS_TASK)
}

/// A Linux error number for an L4 error.
fn errno(e: Error) -> i64 {
    match e {
        Error::NoEnt => ENOENT,
        Error::NoMem | Error::NoSpc => ENOMEM,
        Error::Perm | Error::Access => EACCES,
        Error::Inval | Error::Range => EINVAL,
        Error::NoSys | Error::BadProto => ENOSYS,
        Error::Fault => EFAULT,
        Error::Again => EAGAIN,
        Error::NameTooLong => ENAMETOOLONG,
        _ => EIO,
    }
}

fn slot() -> Result<u64, i64> {
    SLOTS.alloc().ok_or(EMFILE)
}

/// Writes to the log directly (before the runtime is up).
pub fn log_str(s: &str) {
    let _ = Cap::<l4::Vcon>::from_index(caps::LOG).write(s.as_bytes());
}

/// Tells the parent the task exits with `code`.
pub fn parent_exit(code: i64) {
    let _ = ParentClient::new(caps::PARENT).signal(parent_signal::EXIT, code as u64);
}

/// The CPUs the task may use (at least CPU 0).
pub fn online_cpus() -> u64 {
    match Cap::<l4::Scheduler>::from_index(caps::SCHEDULER).info() {
        Ok(i) if i.online != 0 => i.online,
        _ => 1,
    }
}

/// The counter and its frequency.
fn counter() -> (u64, u64) {
    let (cnt, frq): (u64, u64);
    // SAFETY: reading the virtual counter and its frequency has no side
    // effects; the kernel allows EL0 access (CNTHCTL_EL2.EL0VCTEN).
    unsafe {
        core::arch::asm!("isb", "mrs {}, cntvct_el0", "mrs {}, cntfrq_el0",
            out(reg) cnt, out(reg) frq, options(nomem, nostack, preserves_flags));
    }
    (cnt, frq.max(1))
}

/// The monotonic clock in nanoseconds.
pub fn now_ns() -> u64 {
    let (cnt, frq) = counter();
    l4_abi::timeout::counter_to_units(cnt, frq, 1_000_000_000)
}

/// A new dataspace of `size` bytes (no runtime state needed: the heap
/// uses it before the runtime exists).
pub fn ds_alloc_raw(size: u64, dense: bool) -> Result<u64, i64> {
    let dest = slot()?;
    let mut f = FactoryClient::new(caps::MEM_ALLOC);
    f.rcv = RecvBufs::cap_slot(dest);
    // Super pages where they fit and the memory is likely used in full: a
    // fault then maps up to 2 MiB at once.
    let flags = (dense && size >= 1 << 21).then_some(mem_alloc_flags::SUPER_PAGES);
    match f.create_dataspace(size, flags, None) {
        Ok(c) => Ok(c.index()),
        Err(e) => {
            SLOTS.free(dest);
            Err(errno(e))
        }
    }
}

/// Maps part of a dataspace into its receive window.
fn ds_map_raw(m: DsMap) -> Result<(u64, u8), i64> {
    let mut c = DataspaceClient::new(m.ds);
    let mut rcv = RecvBufs::new();
    let (base, order) = m.window;
    rcv.push(RecvItem::Window(Fpage::mem(base, order, MemRights::RWX)))
        .map_err(errno)?;
    c.rcv = rcv;
    let got = c.map(m.offset, m.spot, m.prot.0 as u64).map_err(errno)?;
    Ok((got.fpage.mem_base(), got.fpage.order()))
}

/// Maps all of `[va, va + size)` (size-aligned) from `ds` at offset 0.
pub fn map_all(ds: u64, va: u64, size: u64, prot: Prot) -> Result<(), i64> {
    let mut at = va;
    while at < va + size {
        let order = (size.trailing_zeros().min(21)) as u8;
        let win = at & !((1u64 << order) - 1);
        let (b, o) = ds_map_raw(DsMap {
            ds,
            offset: at - va,
            spot: at,
            window: (win, order),
            prot,
        })?;
        let end = b.saturating_add(1 << o.min(63));
        if b > at || end <= at {
            return Err(EFAULT);
        }
        at = end;
    }
    Ok(())
}

/// Answers a thread waiting for its exception reply (deferred reply).
pub fn deferred_reply(cap: u64, regs: &ExcRegs) {
    let tag = exception_reply(regs);
    let _ = l4::ipc::ipc_send(l4::abi::Cap::new(cap), tag, Timeouts::BOTH_ZERO);
}

/// Puts `regs` into the message registers; the reply tag.
pub fn exception_reply(regs: &ExcRegs) -> MsgTag {
    for (i, w) in regs.to_words().iter().enumerate() {
        l4::utcb::set_mr(i, *w);
    }
    MsgTag::new(0, EXC_REGS_WORDS as u32, 0, 0)
}

/// Largest flexpage of one unmap item.
const UNMAP_MAX_ORDER: u8 = 21;

/// The backend of the real runtime.
pub struct L4;

impl Backend for L4 {
    fn ds_alloc(&mut self, size: u64, dense: bool) -> Result<u64, i64> {
        ds_alloc_raw(size, dense)
    }

    fn ds_map(&mut self, m: DsMap) -> Result<(u64, u8), i64> {
        ds_map_raw(m)
    }

    fn ds_size(&mut self, ds: u64) -> Result<u64, i64> {
        DataspaceClient::new(ds).size().map_err(errno)
    }

    fn unmap(&mut self, start: u64, end: u64) {
        let mut batch = [Fpage::invalid(); msg::UNMAP_MAX];
        let mut n = 0;
        let flush = |b: &[Fpage]| {
            let _ = this_task().unmap_batch(b, unmap::ALL_SPACES);
        };
        // At most 2 MiB per flexpage: the kernel's work per item grows
        // with its size.
        msg::for_each_block(start, end, 12, |a, order| {
            let o = order.min(UNMAP_MAX_ORDER);
            let block_end = a.saturating_add(1u64 << order.min(63));
            for part in (a..block_end).step_by(1 << o) {
                batch[n] = Fpage::mem(part, o, MemRights::RWX);
                n += 1;
                if n == batch.len() {
                    flush(&batch);
                    n = 0;
                }
            }
        });
        if n > 0 {
            flush(&batch[..n]);
        }
    }

    fn release_cap(&mut self, cap: u64) {
        SLOTS.release_cap(this_task(), cap);
    }

    fn read_mem(&mut self, addr: u64, buf: &mut [u8]) {
        // SAFETY: the runtime mapped `[addr, addr + len)` readable in this
        // (its own) address space before calling (`Runtime::ensure`); the
        // program may change the bytes concurrently, which a byte copy
        // tolerates.
        unsafe { core::ptr::copy_nonoverlapping(addr as *const u8, buf.as_mut_ptr(), buf.len()) }
    }

    fn write_mem(&mut self, addr: u64, data: &[u8]) {
        // SAFETY: the runtime mapped the range writable before calling;
        // it is program memory, not the runtime's own.
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), addr as *mut u8, data.len()) }
    }

    fn copy_mem(&mut self, dst: u64, src: u64, len: u64) {
        // SAFETY: both ranges are mapped (src readable, dst writable) by
        // the runtime; `copy` allows them to overlap.
        unsafe { core::ptr::copy(src as *const u8, dst as *mut u8, len as usize) }
    }

    fn log_write(&mut self, data: &[u8]) {
        let _ = Cap::<l4::Vcon>::from_index(caps::LOG).write(data);
    }

    fn log_read(&mut self, buf: &mut [u8]) -> usize {
        Cap::<l4::Vcon>::from_index(caps::LOG)
            .read(buf)
            .map_or(0, |(n, _)| n)
    }

    fn stdin_irq(&mut self) -> bool {
        // An Irq of the task's own, bound to this (the runtime's) thread,
        // on line 0 of the log. The kernel's console refuses it (`Busy`)
        // while another reader (cons) has the line; the runtime then polls.
        SLOTS
            .create(this_task(), |dest| {
                let irq = Cap::<l4::Factory>::from_index(caps::FACTORY).create_irq(dest)?;
                irq.bind(
                    Cap::from_index(caps::RUNTIME_THREAD),
                    l4re::runtime::STDIN_IRQ_LABEL,
                )?;
                Cap::<l4::Vcon>::from_index(caps::LOG)
                    .cast::<l4::Icu>()
                    .bind(0, irq)
            })
            .is_ok()
    }

    fn stdin_unmask(&mut self) {
        let _ = Cap::<l4::Vcon>::from_index(caps::LOG)
            .cast::<l4::Icu>()
            .unmask(0);
    }

    fn rom_open(&mut self, name: &str) -> Result<u64, i64> {
        if name.len() > l4_ipc::protocols::NAME_MAX {
            return Err(ENAMETOOLONG);
        }
        let dest = slot()?;
        let mut ns = NamespaceClient::new(caps::ROM);
        ns.rcv = RecvBufs::cap_slot(dest);
        match ns.query(name) {
            Ok((0, c)) => Ok(c.index),
            Ok((_, c)) => {
                // A name space, not a file.
                let _ = this_task().release_cap(c.index);
                SLOTS.free(dest);
                Err(EISDIR)
            }
            Err(e) => {
                SLOTS.free(dest);
                Err(errno(e))
            }
        }
    }

    fn thread_create(&mut self, utcb: u64, pc: u64, sp: u64, cpu: u32) -> Result<u64, i64> {
        let dest = slot()?;
        let th = match Cap::<l4::Factory>::from_index(caps::FACTORY).create_thread(dest) {
            Ok(t) => t,
            Err(e) => {
                SLOTS.free(dest);
                return Err(errno(e));
            }
        };
        // The first thread is the program's main thread: servers find it at
        // MAIN_THREAD to bind their gates to.
        if !MAIN_MAPPED.swap(true, core::sync::atomic::Ordering::Relaxed) {
            let _ = this_task().map_cap(this_task(), dest, l4::CapRights::ALL, caps::MAIN_THREAD);
        }
        let me = l4::abi::Cap::new(caps::RUNTIME_THREAD);
        let r = th
            .control(
                &ThreadControl::new()
                    .pager(me)
                    .exc_handler(me)
                    .bind(caps::THIS_TASK, utcb),
            )
            .and_then(|()| th.ex_regs(pc, sp, 0).map(|_| ()))
            .and_then(|()| {
                Cap::<l4::Scheduler>::from_index(caps::SCHEDULER).run_thread(
                    th,
                    PROGRAM_PRIO,
                    1 << cpu,
                )
            });
        match r {
            Ok(()) => Ok(dest),
            Err(e) => {
                self.thread_delete(dest);
                Err(errno(e))
            }
        }
    }

    fn thread_delete(&mut self, cap: u64) {
        SLOTS.delete_cap(this_task(), cap);
    }

    fn now_ns(&mut self) -> u64 {
        now_ns()
    }

    fn entropy(&mut self) -> u64 {
        let (cnt, _) = counter();
        let here = &cnt as *const u64 as u64;
        cnt.rotate_left(17) ^ here ^ 0x6a09_e667_f3bc_c908
    }

    fn parent_exit(&mut self, code: i64) {
        parent_exit(code);
    }
}

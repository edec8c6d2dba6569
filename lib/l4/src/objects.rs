//! The object stubs: `impl Cap<Task>`, `impl Cap<Thread>` and so on
//! (AArch64 only). Each builds its message with [`crate::msg`], calls the
//! capability and decodes the reply.

use core::sync::atomic::{AtomicU32, Ordering};

use l4_abi::proto::{SchedCpuSet, ex_regs};
use l4_abi::{CapRights, Error, Fpage, MemRights, MsgTag, SendItem, Timeout, Timeouts, Utcb};

use crate::cap::*;
use crate::ipc::{ipc_call, ipc_receive, ipc_send};
use crate::msg::{self, SchedParams, ThreadControl};
use crate::slots::SlotAlloc;
use crate::utcb;
use crate::{ExRegs, IcuInfo, SchedInfo};
use l4_abi::ops::{GateInfo, SchedIdleTimeReply, Sigma0Reply, ThreadStatsReply, VconAttrReply};

static OBJECT_TIMEOUTS: AtomicU32 = AtomicU32::new(Timeouts::NEVER.0);

/// Sets the IPC timeouts of every object invocation of this crate's stubs
/// (default: never), except [`Cap::<Semaphore>::down`], which waits by its
/// own timeout. A kernel object answers within the system call, so finite
/// timeouts only matter when a capability does not name the object the
/// caller thinks (or a kernel does not answer): the call then fails with
/// a timeout instead of blocking.
///
/// The setting is a static of this crate: code running in a task that
/// does not have the caller's data mapped must not use the stubs.
pub fn set_object_timeouts(t: Timeouts) {
    OBJECT_TIMEOUTS.store(t.0, Ordering::Relaxed);
}

/// The timeouts of object invocations (see [`set_object_timeouts`]).
pub fn object_timeouts() -> Timeouts {
    Timeouts(OBJECT_TIMEOUTS.load(Ordering::Relaxed))
}

/// Builds a message with `build` and calls `cap` with `t`; the reply's
/// label must not be negative.
fn invoke_with(
    cap: l4_abi::Cap,
    t: Timeouts,
    build: impl FnOnce(&mut Utcb) -> MsgTag,
) -> Result<MsgTag, Error> {
    let tag = utcb::with(build);
    msg::result(ipc_call(cap, tag, t).0)
}

/// [`invoke_with`] with the [`object_timeouts`].
pub(crate) fn invoke(
    cap: l4_abi::Cap,
    build: impl FnOnce(&mut Utcb) -> MsgTag,
) -> Result<MsgTag, Error> {
    invoke_with(cap, object_timeouts(), build)
}

/// Builds a message with `build` and sends it to `cap` (no reply).
fn send(cap: l4_abi::Cap, build: impl FnOnce(&mut Utcb) -> MsgTag) -> Result<(), Error> {
    let tag = utcb::with(build);
    ipc_send(cap, tag, object_timeouts()).0.map(|_| ())
}

/// Generic operations of every capability.
impl<T: ?Sized> Cap<T> {
    /// Calls the object with label `proto` and `words`; a negative reply
    /// label is an error. Reply words are in the UTCB ([`utcb::mr`]).
    pub fn invoke_raw(self, proto: i64, words: &[u64]) -> Result<MsgTag, Error> {
        invoke(self.sel(), |u| msg::raw(u, proto, words))
    }

    /// IPC call with the message already in the UTCB.
    pub fn ipc_call(self, tag: MsgTag, t: Timeouts) -> Result<MsgTag, Error> {
        ipc_call(self.sel(), tag, t).0
    }

    /// IPC send with the message already in the UTCB.
    pub fn ipc_send(self, tag: MsgTag, t: Timeouts) -> Result<MsgTag, Error> {
        ipc_send(self.sel(), tag, t).0
    }

    /// IPC receive from this object only; returns the tag and label.
    pub fn ipc_receive(self, t: Timeouts) -> Result<(MsgTag, u64), Error> {
        let (r, label) = ipc_receive(self.sel(), t);
        r.map(|tag| (tag, label))
    }
}

impl Cap<Task> {
    /// Maps `item` (a flexpage of `src`'s space; its send base is where it
    /// goes in this task) from `src` into this task.
    pub fn map(self, src: Cap<Task>, item: SendItem) -> Result<(), Error> {
        invoke(self.sel(), |u| msg::task_map(u, src.index(), item)).map(|_| ())
    }

    /// Maps `2^order` bytes at `addr` of `src` to `dst` in this task.
    pub fn map_mem(
        self,
        src: Cap<Task>,
        addr: u64,
        order: u8,
        rights: MemRights,
        dst: u64,
    ) -> Result<(), Error> {
        self.map(src, SendItem::map(Fpage::mem(addr, order, rights), dst))
    }

    /// Maps the pages of `[start, end)` of `src` to the same addresses in
    /// this task, in the largest aligned blocks; stops at the first error.
    pub fn map_range(
        self,
        src: Cap<Task>,
        start: u64,
        end: u64,
        rights: MemRights,
    ) -> Result<(), Error> {
        let mut r = Ok(());
        msg::for_each_block(start, end, l4_abi::fpage::PAGE_SHIFT, |a, o| {
            if r.is_ok() {
                r = self.map_mem(src, a, o, rights, a);
            }
        });
        r
    }

    /// Maps capability `idx` of `src` with `rights` (including the
    /// control-word rights) to index `dst` of this task.
    pub fn map_cap(
        self,
        src: Cap<Task>,
        idx: u64,
        rights: CapRights,
        dst: u64,
    ) -> Result<(), Error> {
        self.map(
            src,
            SendItem::caps(idx, 0, rights, dst << l4_abi::sys::CAP_SHIFT),
        )
    }

    /// Revokes `fpage` (its rights bits: the rights to revoke) in this task
    /// with [`l4_abi::proto::unmap`] `flags`.
    pub fn unmap(self, fpage: Fpage, flags: u64) -> Result<(), Error> {
        self.unmap_batch(&[fpage], flags)
    }

    /// Revokes several flexpages (at most [`msg::UNMAP_MAX`]).
    pub fn unmap_batch(self, fpages: &[Fpage], flags: u64) -> Result<(), Error> {
        invoke(self.sel(), |u| msg::task_unmap(u, flags, fpages)).map(|_| ())
    }

    /// Whether capability `idx` of this task is valid.
    pub fn cap_valid(self, idx: u64) -> Result<bool, Error> {
        let t = invoke(self.sel(), |u| msg::task_cap_info(u, idx, false))?;
        Ok(t.label() != 0)
    }

    /// Whether capability `idx` of this task has derived mappings.
    pub fn cap_has_child(self, idx: u64) -> Result<bool, Error> {
        let t = invoke(self.sel(), |u| msg::task_cap_info(u, idx, true))?;
        Ok(t.label() != 0)
    }

    /// Whether capabilities `a` and `b` of this task name the same object.
    pub fn cap_equal(self, a: u64, b: u64) -> Result<bool, Error> {
        let t = invoke(self.sel(), |u| msg::task_cap_equal(u, a, b))?;
        Ok(t.label() != 0)
    }

    /// Deletes the object capability `idx` names (needs `D`).
    pub fn delete_cap(self, idx: u64) -> Result<(), Error> {
        invoke(self.sel(), |u| msg::task_delete_cap(u, idx)).map(|_| ())
    }

    /// Empties slot `idx` (and what was derived from it); the object stays.
    pub fn release_cap(self, idx: u64) -> Result<(), Error> {
        invoke(self.sel(), |u| msg::task_release_cap(u, idx)).map(|_| ())
    }
}

impl Cap<Thread> {
    /// Sets pager, exception handler, binds to a task (see
    /// [`ThreadControl`]).
    pub fn control(self, c: &ThreadControl) -> Result<(), Error> {
        invoke(self.sel(), |u| msg::thread_control(u, c)).map(|_| ())
    }

    /// Sets pc and sp ([`ex_regs::UNCHANGED`] keeps them) with
    /// [`ex_regs`] flags; returns the previous state.
    pub fn ex_regs(self, pc: u64, sp: u64, flags: u64) -> Result<ExRegs, Error> {
        let tag = invoke(self.sel(), |u| msg::thread_ex_regs(u, pc, sp, flags))?;
        utcb::with(|u| msg::thread_ex_regs_reply(u, tag))
    }

    /// Reads pc and sp without changing anything.
    pub fn read_regs(self) -> Result<ExRegs, Error> {
        self.ex_regs(ex_regs::UNCHANGED, ex_regs::UNCHANGED, 0)
    }

    /// The CPU time the thread consumed, in µs.
    pub fn stats_us(self) -> Result<u64, Error> {
        let tag = invoke(self.sel(), msg::thread_stats)?;
        utcb::with(|u| msg::reply::<ThreadStatsReply>(u, tag)).map(|r| r.time_us)
    }

    /// Donates the rest of the caller's time slice to the thread.
    pub fn switch_to(self) -> Result<(), Error> {
        invoke(self.sel(), msg::thread_switch).map(|_| ())
    }
}

/// Factory calls: each sets the caller's receive items to one
/// single-capability slot, the destination of the new capability
/// (replacing the receive items that were there).
impl Cap<Factory> {
    /// Creates a task with `utcb_area` as its UTCB area in slot `dest`.
    pub fn create_task(self, dest: u64, utcb_area: Fpage) -> Result<Cap<Task>, Error> {
        invoke(self.sel(), |u| msg::factory_task(u, dest, utcb_area))?;
        Ok(Cap::from_index(dest))
    }

    /// Creates a thread in slot `dest`.
    pub fn create_thread(self, dest: u64) -> Result<Cap<Thread>, Error> {
        invoke(self.sel(), |u| msg::factory_thread(u, dest))?;
        Ok(Cap::from_index(dest))
    }

    /// Creates a factory with `quota` bytes in slot `dest`.
    pub fn create_factory(self, dest: u64, quota: u64) -> Result<Cap<Factory>, Error> {
        invoke(self.sel(), |u| msg::factory_factory(u, dest, quota))?;
        Ok(Cap::from_index(dest))
    }

    /// Creates an IPC gate with `label`, bound to `thread` if given.
    pub fn create_gate(
        self,
        dest: u64,
        label: u64,
        thread: Option<Cap<Thread>>,
    ) -> Result<Cap<IpcGate>, Error> {
        let t = thread.map(|t| t.index());
        invoke(self.sel(), |u| msg::factory_gate(u, dest, label, t))?;
        Ok(Cap::from_index(dest))
    }

    /// Creates an Irq in slot `dest`.
    pub fn create_irq(self, dest: u64) -> Result<Cap<Irq>, Error> {
        invoke(self.sel(), |u| msg::factory_irq(u, dest))?;
        Ok(Cap::from_index(dest))
    }

    /// Creates a semaphore (count 0) in slot `dest`.
    pub fn create_semaphore(self, dest: u64) -> Result<Cap<Semaphore>, Error> {
        invoke(self.sel(), |u| msg::factory_semaphore(u, dest))?;
        Ok(Cap::from_index(dest))
    }

    /// A raw factory call (MR0 = `op`, `args` after it) into slot `dest`.
    pub fn create_raw(self, dest: u64, op: u64, args: &[u64]) -> Result<MsgTag, Error> {
        invoke(self.sel(), |u| msg::factory_raw(u, dest, op, args))
    }
}

/// `Kobject::Bind` of a receive endpoint (IPC gate or Irq) to `thread`
/// with `label`, offering `rights` on the thread.
fn bind_endpoint(
    sel: l4_abi::Cap,
    thread: Cap<Thread>,
    label: u64,
    rights: CapRights,
) -> Result<(), Error> {
    invoke(sel, |u| msg::kobject_bind(u, thread.index(), label, rights)).map(|_| ())
}

/// `bind` and `bind_with_rights` of a receive endpoint (gate or Irq):
/// messages through it arrive at `thread` carrying `label`.
macro_rules! endpoint_bind {
    ($t:ty, $what:literal) => {
        impl Cap<$t> {
            #[doc = concat!("Binds the ", $what, " to `thread` with `label` (needs `C` on the ", $what, ", `S` on the thread).")]
            pub fn bind(self, thread: Cap<Thread>, label: u64) -> Result<(), Error> {
                self.bind_with_rights(thread, label, msg::ARG_RIGHTS)
            }

            /// `bind`, offering only `rights` on the thread.
            pub fn bind_with_rights(
                self,
                thread: Cap<Thread>,
                label: u64,
                rights: CapRights,
            ) -> Result<(), Error> {
                bind_endpoint(self.sel(), thread, label, rights)
            }
        }
    };
}

endpoint_bind!(IpcGate, "gate");
endpoint_bind!(Irq, "Irq");

impl Cap<IpcGate> {
    /// The gate's label (needs `C`).
    pub fn get_info(self) -> Result<u64, Error> {
        let tag = invoke(self.sel(), msg::kobject_get_info)?;
        utcb::with(|u| msg::reply::<GateInfo>(u, tag)).map(|r| r.label)
    }
}

impl Cap<Irq> {
    /// Legacy bind (`IrqSender::Attach`).
    pub fn attach(self, thread: Cap<Thread>, label: u64) -> Result<(), Error> {
        invoke(self.sel(), |u| msg::irq_attach(u, thread.index(), label)).map(|_| ())
    }

    /// Detaches from the bound thread.
    pub fn detach(self) -> Result<(), Error> {
        invoke(self.sel(), msg::irq_detach).map(|_| ())
    }

    /// Triggers the IRQ (a send, as Fiasco's `l4_irq_trigger`).
    pub fn trigger(self) -> Result<(), Error> {
        send(self.sel(), msg::irq_trigger)
    }

    /// Triggers the IRQ for a party that may have gone: a failure (the
    /// Irq was deleted with its owner's task) only means nobody is woken,
    /// so it is not reported.
    pub fn notify(self) {
        let _ = self.trigger();
    }

    /// Unmasks the IRQ (end of interrupt).
    pub fn unmask(self) -> Result<(), Error> {
        invoke(self.sel(), msg::irq_unmask).map(|_| ())
    }
}

impl Cap<Icu> {
    /// Binds Irq `irq` to line `line`.
    pub fn bind(self, line: u64, irq: Cap<Irq>) -> Result<(), Error> {
        invoke(self.sel(), |u| msg::icu_bind(u, line, irq.index(), false)).map(|_| ())
    }

    /// Unbinds Irq `irq` from line `line`.
    pub fn unbind(self, line: u64, irq: Cap<Irq>) -> Result<(), Error> {
        invoke(self.sel(), |u| msg::icu_bind(u, line, irq.index(), true)).map(|_| ())
    }

    /// Controller information.
    pub fn info(self) -> Result<IcuInfo, Error> {
        let tag = invoke(self.sel(), msg::icu_info)?;
        utcb::with(|u| msg::icu_info_reply(u, tag))
    }

    /// Masks line `line`.
    pub fn mask(self, line: u64) -> Result<(), Error> {
        invoke(self.sel(), |u| msg::icu_mask(u, line, true)).map(|_| ())
    }

    /// Unmasks line `line`.
    pub fn unmask(self, line: u64) -> Result<(), Error> {
        invoke(self.sel(), |u| msg::icu_mask(u, line, false)).map(|_| ())
    }

    /// Sets the trigger mode of line `line`.
    pub fn set_mode(self, line: u64, mode: u64) -> Result<(), Error> {
        invoke(self.sel(), |u| msg::icu_set_mode(u, line, mode)).map(|_| ())
    }
}

impl Cap<Scheduler> {
    /// Runs `thread` at `prio` on the CPUs of `cpu_mask` (bit i = CPU i).
    pub fn run_thread(self, thread: Cap<Thread>, prio: u64, cpu_mask: u64) -> Result<(), Error> {
        self.run_thread_with(thread, &SchedParams::new(prio, cpu_mask))
    }

    /// Runs `thread` with `p`.
    pub fn run_thread_with(self, thread: Cap<Thread>, p: &SchedParams) -> Result<(), Error> {
        invoke(self.sel(), |u| msg::sched_run_thread(u, thread.index(), p)).map(|_| ())
    }

    /// The online CPUs.
    pub fn info(self) -> Result<SchedInfo, Error> {
        let tag = invoke(self.sel(), |u| msg::sched_info(u, 0))?;
        utcb::with(|u| msg::sched_info_reply(u, tag))
    }

    /// The idle time of the CPUs of `cpu_mask`, in µs.
    pub fn idle_time(self, cpu_mask: u64) -> Result<u64, Error> {
        let set = SchedCpuSet::from_words(0, cpu_mask);
        let tag = invoke(self.sel(), |u| msg::sched_idle_time(u, set))?;
        utcb::with(|u| msg::reply::<SchedIdleTimeReply>(u, tag)).map(|r| r.time_us)
    }
}

impl Cap<Vcon> {
    /// Writes `bytes` (several calls if needed).
    pub fn write(self, bytes: &[u8]) -> Result<(), Error> {
        self.write_chunks(bytes, |cap, build| invoke(cap, build).map(|_| ()))
    }

    /// Writes `bytes` with sends (no reply; "a send suffices").
    pub fn write_send(self, bytes: &[u8]) -> Result<(), Error> {
        self.write_chunks(bytes, |cap, build| send(cap, build))
    }

    /// Writes `bytes` in as many messages as they need, each with `op`.
    fn write_chunks(
        self,
        bytes: &[u8],
        op: impl Fn(l4_abi::Cap, &mut dyn FnMut(&mut Utcb) -> MsgTag) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let mut rest = bytes;
        while !rest.is_empty() {
            let mut n = 0;
            op(self.sel(), &mut |u| {
                let (tag, len) = msg::vcon_write(u, rest);
                n = len;
                tag
            })?;
            rest = &rest[n..];
        }
        Ok(())
    }

    /// Reads pending input into `buf` (at most [`msg::VCON_READ_MAX`]
    /// bytes); returns the count and the [`l4_abi::proto::vcon`] flags.
    pub fn read(self, buf: &mut [u8]) -> Result<(usize, u64), Error> {
        let tag = invoke(self.sel(), |u| msg::vcon_read(u, buf.len()))?;
        utcb::with(|u| msg::vcon_read_reply(u, tag, buf))
    }

    /// The input, output and local attribute flags
    /// ([`l4_abi::proto::vcon::attr`]).
    pub fn get_attr(self) -> Result<(u64, u64, u64), Error> {
        let tag = invoke(self.sel(), msg::vcon_get_attr)?;
        let r = utcb::with(|u| msg::reply::<VconAttrReply>(u, tag))?;
        Ok((r.iflags, r.oflags, r.lflags))
    }

    /// Sets the input, output and local attribute flags.
    pub fn set_attr(self, iflags: u64, oflags: u64, lflags: u64) -> Result<(), Error> {
        invoke(self.sel(), |u| {
            msg::vcon_set_attr(u, iflags, oflags, lflags)
        })
        .map(|_| ())
    }

    /// Raw mode, as a VMM's console wants it: no echo, no line editing and
    /// no CR/NL translation either way (the guest's own terminal does all
    /// that).
    pub fn make_raw(self) -> Result<(), Error> {
        use l4_abi::proto::vcon::attr;
        let (i, o, l) = self.get_attr()?;
        self.set_attr(
            i & !attr::RAW_CLEAR_I,
            o & !attr::RAW_CLEAR_O,
            l & !attr::RAW_CLEAR_L,
        )
    }
}

impl Cap<Semaphore> {
    /// Increments the count (wakes one waiter).
    pub fn up(self) -> Result<(), Error> {
        send(self.sel(), msg::irq_trigger)
    }

    /// Decrements the count, waiting at most `t` while it is zero
    /// ([`Error::RecvTimeout`] when the time is up).
    pub fn down(self, t: Timeout) -> Result<(), Error> {
        invoke_with(self.sel(), Timeouts::NEVER, |u| msg::semaphore_down(u, t)).map(|_| ())
    }
}

impl Cap<Sigma0> {
    /// Another capability to sigma0 in slot `dest` (sigma0 answers this one
    /// factory operation, `create(L4.Proto.Sigma0)` in L4Re's scripts).
    pub fn create_sigma0(self, dest: u64) -> Result<Cap<Sigma0>, Error> {
        invoke(self.sel(), |u| msg::factory_sigma0(u, dest))?;
        Ok(Cap::from_index(dest))
    }

    /// Maps `2^order` bytes of free RAM 1:1 into the caller; returns the
    /// address.
    pub fn map_free(self, order: u8) -> Result<u64, Error> {
        let tag = invoke(self.sel(), |u| msg::sigma0_map_free(u, order))?;
        utcb::with(|u| msg::reply::<Sigma0Reply>(u, tag)).map(|r| r.addr)
    }

    /// Maps `2^order` bytes of device memory at `pa` 1:1 into the caller;
    /// returns the address.
    pub fn map_device(self, pa: u64, order: u8) -> Result<u64, Error> {
        let tag = invoke(self.sel(), |u| msg::sigma0_map_device(u, pa, order))?;
        utcb::with(|u| msg::reply::<Sigma0Reply>(u, tag)).map(|r| r.addr)
    }

    /// Maps the boot-module memory `[pa, pa + size)` 1:1 (read-execute)
    /// into the caller; returns the address.
    pub fn map_module(self, pa: u64, size: u64) -> Result<u64, Error> {
        let tag = invoke(self.sel(), |u| msg::sigma0_map_module(u, pa, size))?;
        utcb::with(|u| msg::reply::<Sigma0Reply>(u, tag)).map(|r| r.addr)
    }
}

// Virtualisation: the Vm, vCPU mode, Irqs bound to a vCPU.

impl Cap<Factory> {
    /// Creates a Vm in slot `dest`.
    pub fn create_vm(self, dest: u64) -> Result<Cap<Vm>, Error> {
        invoke(self.sel(), |u| msg::factory_vm(u, dest))?;
        Ok(Cap::from_index(dest))
    }
}

impl Cap<Vm> {
    /// The Vm as a task: it understands the Task protocol's map (into the
    /// guest, destination = guest-physical address) and unmap, so
    /// `vm.as_task().map_mem(src, addr, order, rights, gpa)` fills it.
    pub fn as_task(self) -> Cap<Task> {
        Cap::from_index(self.index())
    }

    /// Guest 32-bit writes at `gpa` trigger `irq` in the kernel, without
    /// an exit ([`l4_abi::vcpu::shortcut::DOORBELL`]).
    pub fn set_doorbell(self, gpa: u64, irq: Cap<Irq>) -> Result<(), Error> {
        use l4_abi::vcpu::shortcut::DOORBELL;
        invoke(self.sel(), |u| {
            msg::vm_shortcut(u, gpa, DOORBELL, 0, Some(irq.index()))
        })
        .map(|_| ())
    }

    /// Guest 32-bit reads at `gpa` give `value` and writes are dropped, in
    /// the kernel ([`l4_abi::vcpu::shortcut::CONSTANT`]).
    pub fn set_constant(self, gpa: u64, value: u32) -> Result<(), Error> {
        use l4_abi::vcpu::shortcut::CONSTANT;
        invoke(self.sel(), |u| {
            msg::vm_shortcut(u, gpa, CONSTANT, value, None)
        })
        .map(|_| ())
    }

    /// Accesses at `gpa` exit to the VMM again.
    pub fn remove_shortcut(self, gpa: u64) -> Result<(), Error> {
        use l4_abi::vcpu::shortcut::NONE;
        invoke(self.sel(), |u| msg::vm_shortcut(u, gpa, NONE, 0, None)).map(|_| ())
    }
}

impl Cap<Thread> {
    /// Switches the thread to vCPU mode with its state area at `state`
    /// and guest memory `vm`.
    pub fn vcpu_control(self, state: u64, vm: Cap<Vm>) -> Result<(), Error> {
        invoke(self.sel(), |u| msg::vcpu_control(u, state, vm.index())).map(|_| ())
    }

    /// Leaves vCPU mode.
    pub fn vcpu_disable(self) -> Result<(), Error> {
        invoke(self.sel(), |u| msg::vcpu_control(u, 0, 0)).map(|_| ())
    }

    /// Runs the guest (the thread must be the caller) until an exit for
    /// the VMM; the state area holds the details.
    pub fn vcpu_resume(self) -> Result<l4_abi::vcpu::ExitReason, Error> {
        let tag = invoke(self.sel(), msg::vcpu_resume)?;
        l4_abi::vcpu::ExitReason::from_u64(tag.label() as u64).ok_or(Error::Inval)
    }
}

impl Cap<Irq> {
    /// Binds the Irq to the vCPU of `thread`: triggering it injects
    /// `intid` with `priority`.
    pub fn bind_vcpu(self, thread: Cap<Thread>, intid: u32, priority: u8) -> Result<(), Error> {
        invoke(self.sel(), |u| {
            msg::irq_bind_vcpu(u, thread.index(), intid, priority)
        })
        .map(|_| ())
    }
}

/// Objects in slots of a [`SlotAlloc`]: made in a fresh slot, and deleted
/// or dropped together with their slot.
impl<const W: usize> SlotAlloc<W> {
    /// Runs `make` on a free slot (which it fills with a capability of
    /// `task`); if `make` fails, deletes what it left in the slot and
    /// frees the slot. [`Error::NoMem`] when no slot is free.
    pub fn create<R>(
        &self,
        task: Cap<Task>,
        make: impl FnOnce(u64) -> Result<R, Error>,
    ) -> Result<R, Error> {
        let slot = self.alloc().ok_or(Error::NoMem)?;
        make(slot).inspect_err(|_| self.delete_cap(task, slot))
    }

    /// Deletes the object slot `idx` of `task` names (needs `D`) and
    /// frees the slot. The slot is free afterwards whatever the kernel
    /// answered (an object that is gone already leaves it empty), so a
    /// failure is not reported.
    pub fn delete_cap(&self, task: Cap<Task>, idx: u64) {
        let _ = task.delete_cap(idx);
        self.free(idx);
    }

    /// Empties slot `idx` of `task` (the object stays for its other
    /// holders) and frees the slot; like [`SlotAlloc::delete_cap`], a
    /// failure is not reported.
    pub fn release_cap(&self, task: Cap<Task>, idx: u64) {
        let _ = task.release_cap(idx);
        self.free(idx);
    }
}

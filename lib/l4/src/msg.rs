//! Message builders and reply decoders for every kernel-object operation.
//!
//! Each builder fills the operation's declaration in [`l4_abi::ops`] (the
//! one place the layouts live), encodes it into the message registers
//! (and, where an operation returns a capability, the buffer registers) of
//! a [`Utcb`] and returns the tag to send. Capability arguments travel as
//! typed items whose flexpage names the caller's index; the rights offered
//! with them are [`ARG_RIGHTS`] unless a builder takes them as a parameter.
//! Reply readers decode the operation's reply struct and refuse a reply
//! shorter than its layout.
//!
//! Nothing here performs a call, so all of it is tested on the host.

use l4_abi::fault::{EXC_REGS_WORDS, ExcRegs};
use l4_abi::ops::{
    Bytes, CapArg, ExRegsReply, FactoryFactory, FactoryIpcGate, FactoryIrq, FactorySemaphore,
    FactorySigma0, FactoryTask, FactoryThread, FactoryVm, Fpages, IcuBind, IcuInfo, IcuInfoReply,
    IcuMask, IcuSetMode, IcuUnbind, IcuUnmask, IrqAttach, IrqBindVcpu, IrqDetach, IrqTrigger,
    IrqUnmask, KobjectBind, KobjectGetInfo, Op, Reply, SchedIdleTime, SchedInfo, SchedInfoReply,
    SchedRunThread, SemaphoreDown, Sigma0MapDevice, Sigma0MapFree, Sigma0MapModule, TaskCapInfo,
    TaskMap, TaskUnmap, ThreadExRegs, ThreadStats, ThreadSwitch, ThreadVcpuControl,
    ThreadVcpuResume, Varg, VconGetAttr, VconRead, VconReadReply, VconSetAttr, VconWrite,
    VmShortcut,
};
use l4_abi::proto::{ControlFlags, ExRegsFlags, SchedCpuSet, UnmapFlags, unmap, vcon};
use l4_abi::utcb::{BR_COUNT, MR_COUNT};
use l4_abi::vcpu::VirqSpec;
use l4_abi::{CapRights, Error, Fpage, MsgTag, RecvItem, SendItem, Timeout, Utcb};

pub use l4_abi::ops::{UNMAP_MAX, VCON_READ_MAX};

/// Rights offered with a capability argument (Fiasco's `L4_CAP_FPAGE_RWS`).
pub const ARG_RIGHTS: CapRights = CapRights::RWS;

/// Default time slice for [`SchedParams`], in µs.
pub const DEFAULT_QUANTUM_US: u64 = 10_000;

/// Most bytes one [`vcon_write`] carries.
pub const VCON_WRITE_MAX: usize = vcon::WRITE_MAX;

/// A capability argument: capability `idx` of the caller with
/// [`ARG_RIGHTS`].
const fn cap_arg(idx: u64) -> CapArg {
    CapArg::new(idx, ARG_RIGHTS)
}

/// Copies `words` into the message registers from `MR[at]` on; returns the
/// index after the last one written. Words beyond the registers are dropped.
pub fn put(u: &mut Utcb, at: usize, words: &[u64]) -> usize {
    let at = at.min(MR_COUNT);
    let n = words.len().min(MR_COUNT - at);
    u.mr[at..at + n].copy_from_slice(&words[..n]);
    at + n
}

/// Writes receive items into the buffer registers (BDR = 0), ending the
/// list with a zero word when there is room. Items that do not fit are
/// left out.
pub fn set_recv_items(u: &mut Utcb, items: &[RecvItem]) {
    u.bdr = 0;
    let mut at = 0;
    for it in items {
        let n = it.words();
        if at + n > BR_COUNT {
            break;
        }
        u.br[at..at + n].copy_from_slice(&it.to_words()[..n]);
        at += n;
    }
    if at < BR_COUNT {
        u.br[at] = 0;
    }
}

/// Removes all receive items: the thread then accepts no typed items.
pub fn clear_recv_items(u: &mut Utcb) {
    set_recv_items(u, &[]);
}

/// A raw invocation: label `proto`, `words` as the untyped words, no items.
pub fn raw(u: &mut Utcb, proto: i64, words: &[u64]) -> MsgTag {
    let n = put(u, 0, &words[..words.len().min(MsgTag::MAX_WORDS as usize)]);
    MsgTag::new(proto, n as u32, 0, 0)
}

/// Reads the reply with tag `tag` (of a successful call) as `R`; a
/// reply shorter than `R`'s layout is [`Error::Inval`].
pub fn reply<R: Reply>(u: &Utcb, tag: MsgTag) -> Result<R, Error> {
    Ok(R::decode(tag.words() as usize, &u.mr)?)
}

// ---------------------------------------------------------------------
// Task
// ---------------------------------------------------------------------

/// `Task::Map`: map `item` (a flexpage of `src_task`'s space, send base =
/// the destination in the invoked task) from the source task.
pub fn task_map(u: &mut Utcb, src_task: u64, item: SendItem) -> MsgTag {
    TaskMap {
        item,
        src: cap_arg(src_task),
    }
    .encode(&mut u.mr)
}

/// `Task::Unmap`: revoke `fpages` (their rights bits = the rights to
/// revoke) of the invoked task with [`unmap`] `flags`. At most
/// [`UNMAP_MAX`] flexpages are sent.
pub fn task_unmap(u: &mut Utcb, flags: u64, fpages: &[Fpage]) -> MsgTag {
    TaskUnmap {
        flags: UnmapFlags::from_bits_retain(flags),
        fpages: Fpages::new(fpages),
    }
    .encode(&mut u.mr)
}

/// `Task::Unmap` of capability `idx` with [`unmap::DELETE_OBJ`]: deletes
/// the object (needs the `D` right).
pub fn task_delete_cap(u: &mut Utcb, idx: u64) -> MsgTag {
    task_unmap(u, unmap::DELETE_OBJ, &[Fpage::obj(idx, 0, CapRights::RWSD)])
}

/// `Task::Unmap` of capability `idx` with [`unmap::ALL_SPACES`]: empties
/// the slot (and everything derived from it); the object stays.
pub fn task_release_cap(u: &mut Utcb, idx: u64) -> MsgTag {
    task_unmap(u, unmap::ALL_SPACES, &[Fpage::obj(idx, 0, CapRights::RWSD)])
}

/// `Task::CapInfo`: whether capability `idx` is valid (`children`: whether
/// it has derived mappings). Reply label 1 or 0.
pub fn task_cap_info(u: &mut Utcb, idx: u64, children: bool) -> MsgTag {
    TaskCapInfo {
        sel: l4_abi::Cap::new(idx).selector() | children as u64,
        other: None,
    }
    .encode(&mut u.mr)
}

/// `Task::CapInfo` with two selectors: whether `a` and `b` name the same
/// object. Reply label 1 or 0.
pub fn task_cap_equal(u: &mut Utcb, a: u64, b: u64) -> MsgTag {
    TaskCapInfo {
        sel: l4_abi::Cap::new(a).selector(),
        other: Some(l4_abi::Cap::new(b).selector()),
    }
    .encode(&mut u.mr)
}

// ---------------------------------------------------------------------
// Thread
// ---------------------------------------------------------------------

/// The arguments of `Thread::Control`; `None` fields are left unchanged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThreadControl {
    /// The pager: a selector in the thread's task.
    pub pager: Option<l4_abi::Cap>,
    /// The exception handler: a selector in the thread's task.
    pub exc_handler: Option<l4_abi::Cap>,
    /// Bind to (task capability index of the caller, UTCB address in that
    /// task's UTCB area).
    pub bind: Option<(u64, u64)>,
    /// Alien mode on or off.
    pub alien: Option<bool>,
    /// Rights offered with the task item of a bind.
    pub bind_rights: Option<CapRights>,
}

impl ThreadControl {
    /// Nothing changes.
    pub const fn new() -> ThreadControl {
        ThreadControl {
            pager: None,
            exc_handler: None,
            bind: None,
            alien: None,
            bind_rights: None,
        }
    }

    /// Sets the pager (selector in the thread's task).
    pub const fn pager(mut self, sel: l4_abi::Cap) -> ThreadControl {
        self.pager = Some(sel);
        self
    }

    /// Sets the exception handler (selector in the thread's task).
    pub const fn exc_handler(mut self, sel: l4_abi::Cap) -> ThreadControl {
        self.exc_handler = Some(sel);
        self
    }

    /// Binds the thread to task `task` (the caller's index) with its UTCB
    /// at `utcb`.
    pub const fn bind(mut self, task: u64, utcb: u64) -> ThreadControl {
        self.bind = Some((task, utcb));
        self
    }

    /// Switches alien mode.
    pub const fn alien(mut self, on: bool) -> ThreadControl {
        self.alien = Some(on);
        self
    }

    /// The message: flags for what changes, zero for the rest.
    pub fn to_op(&self) -> l4_abi::ops::ThreadControl {
        let mut flags = ControlFlags::empty();
        let mut flag_vals = ControlFlags::empty();
        flags.set(ControlFlags::SET_PAGER, self.pager.is_some());
        flags.set(ControlFlags::SET_EXC_HANDLER, self.exc_handler.is_some());
        flags.set(ControlFlags::BIND_TASK, self.bind.is_some());
        if let Some(on) = self.alien {
            flags |= ControlFlags::ALIEN;
            flag_vals.set(ControlFlags::ALIEN, on);
        }
        let rights = self.bind_rights.unwrap_or(ARG_RIGHTS);
        l4_abi::ops::ThreadControl {
            flags,
            pager: self.pager.map_or(0, |p| p.selector()),
            exc_handler: self.exc_handler.map_or(0, |e| e.selector()),
            reserved: 0,
            flag_vals,
            bind_utcb: self.bind.map_or(0, |(_, utcb)| utcb),
            bind_task: self.bind.map(|(task, _)| CapArg::new(task, rights)),
        }
    }
}

/// `Thread::Control` (6 words, plus the task item when binding).
pub fn thread_control(u: &mut Utcb, c: &ThreadControl) -> MsgTag {
    c.to_op().encode(&mut u.mr)
}

/// `Thread::ExRegs`: new pc and sp
/// ([`l4_abi::proto::ex_regs::UNCHANGED`] keeps them) and
/// [`l4_abi::proto::ex_regs`] flags.
pub fn thread_ex_regs(u: &mut Utcb, pc: u64, sp: u64, flags: u64) -> MsgTag {
    let flags = ExRegsFlags::from_bits_retain(flags);
    ThreadExRegs { flags, pc, sp }.encode(&mut u.mr)
}

/// Reads the reply (with tag `tag`) of `Thread::ExRegs`: the state before
/// the change.
pub fn thread_ex_regs_reply(u: &Utcb, tag: MsgTag) -> Result<ExRegsReply, Error> {
    reply(u, tag)
}

/// `Thread::Stats`: reply MR0 = consumed CPU time in µs.
pub fn thread_stats(u: &mut Utcb) -> MsgTag {
    ThreadStats {}.encode(&mut u.mr)
}

/// `Thread::Switch`: donate the rest of the time slice to the thread.
pub fn thread_switch(u: &mut Utcb) -> MsgTag {
    ThreadSwitch {}.encode(&mut u.mr)
}

// ---------------------------------------------------------------------
// Factory
// ---------------------------------------------------------------------

/// Prepares the receive item for a factory's new capability: a
/// single-capability slot at `dest`.
fn factory_dest(u: &mut Utcb, dest: u64) {
    set_recv_items(u, &[RecvItem::SmallCap { index: dest }]);
}

/// A factory call: MR0 = `op` (the protocol of the object, sign-extended,
/// or any raw value), `args` (already [`l4_abi::proto::varg`]-encoded)
/// after it; the new capability goes to `dest` (the receive items are
/// replaced by that one slot).
pub fn factory_raw(u: &mut Utcb, dest: u64, op: u64, args: &[u64]) -> MsgTag {
    factory_dest(u, dest);
    u.mr[0] = op;
    let n = put(
        u,
        1,
        &args[..args.len().min(MsgTag::MAX_WORDS as usize - 1)],
    );
    MsgTag::proto(l4_abi::Proto::Factory, n as u32, 0)
}

/// A factory operation; the new capability goes to `dest`.
fn factory_op(u: &mut Utcb, dest: u64, op: impl Op) -> MsgTag {
    factory_dest(u, dest);
    op.encode(&mut u.mr)
}

/// Factory: create a task with `utcb_area` (a memory flexpage) as its UTCB
/// area. Reply MR0 = the flexpage.
pub fn factory_task(u: &mut Utcb, dest: u64, utcb_area: Fpage) -> MsgTag {
    let utcb_area = Varg(utcb_area);
    factory_op(u, dest, FactoryTask { utcb_area })
}

/// Factory: create a thread.
pub fn factory_thread(u: &mut Utcb, dest: u64) -> MsgTag {
    factory_op(u, dest, FactoryThread {})
}

/// Factory: create a factory with `quota` bytes of kernel memory.
pub fn factory_factory(u: &mut Utcb, dest: u64, quota: u64) -> MsgTag {
    let quota = Varg(quota);
    factory_op(u, dest, FactoryFactory { quota })
}

/// Factory: create an IPC gate with `label`, bound to `thread` (the
/// caller's index) if given.
pub fn factory_gate(u: &mut Utcb, dest: u64, label: u64, thread: Option<u64>) -> MsgTag {
    let op = FactoryIpcGate {
        label: Some(Varg(label)),
        thread: thread.map(cap_arg),
    };
    factory_op(u, dest, op)
}

/// Factory: create an Irq (IRQ sender).
pub fn factory_irq(u: &mut Utcb, dest: u64) -> MsgTag {
    factory_op(u, dest, FactoryIrq {})
}

/// Factory: create a semaphore.
pub fn factory_semaphore(u: &mut Utcb, dest: u64) -> MsgTag {
    factory_op(u, dest, FactorySemaphore {})
}

/// Factory: create a Vm.
pub fn factory_vm(u: &mut Utcb, dest: u64) -> MsgTag {
    factory_op(u, dest, FactoryVm {})
}

/// Sigma0's one factory operation: another capability to sigma0.
pub fn factory_sigma0(u: &mut Utcb, dest: u64) -> MsgTag {
    factory_op(u, dest, FactorySigma0 {})
}

// ---------------------------------------------------------------------
// Generic kernel object: IPC gates and Irqs
// ---------------------------------------------------------------------

/// `Kobject::Bind`: bind the endpoint (IPC gate, Irq) to `thread` (the
/// caller's index, offered with `rights`; the kernel needs `S`) with
/// `label`.
pub fn kobject_bind(u: &mut Utcb, thread: u64, label: u64, rights: CapRights) -> MsgTag {
    KobjectBind {
        label,
        thread: CapArg::new(thread, rights),
    }
    .encode(&mut u.mr)
}

/// `Kobject::GetInfo` of an IPC gate: reply MR0 = the label.
pub fn kobject_get_info(u: &mut Utcb) -> MsgTag {
    KobjectGetInfo {}.encode(&mut u.mr)
}

// ---------------------------------------------------------------------
// Irq and semaphore up
// ---------------------------------------------------------------------

/// `Irq::Trigger` (also the semaphore's `up`).
pub fn irq_trigger(u: &mut Utcb) -> MsgTag {
    IrqTrigger {}.encode(&mut u.mr)
}

/// `Irq::Unmask` (end of interrupt).
pub fn irq_unmask(u: &mut Utcb) -> MsgTag {
    IrqUnmask {}.encode(&mut u.mr)
}

/// `IrqSender::Attach` (legacy bind): MR1 = label, item = thread.
pub fn irq_attach(u: &mut Utcb, thread: u64, label: u64) -> MsgTag {
    IrqAttach {
        label,
        thread: cap_arg(thread),
    }
    .encode(&mut u.mr)
}

/// `IrqSender::Detach`.
pub fn irq_detach(u: &mut Utcb) -> MsgTag {
    IrqDetach {}.encode(&mut u.mr)
}

// ---------------------------------------------------------------------
// Virtualisation: vCPU mode, Irqs bound to a vCPU
// ---------------------------------------------------------------------

/// `Thread::VcpuControl`: vCPU mode with the state area at `state` (in
/// the thread's UTCB area; 0 leaves vCPU mode) and the Vm `vm` (the
/// caller's index).
pub fn vcpu_control(u: &mut Utcb, state: u64, vm: u64) -> MsgTag {
    ThreadVcpuControl {
        state,
        vm: (state != 0).then(|| cap_arg(vm)),
    }
    .encode(&mut u.mr)
}

/// `Thread::VcpuResume` (on the caller's own thread): the reply label is
/// the exit reason.
pub fn vcpu_resume(u: &mut Utcb) -> MsgTag {
    ThreadVcpuResume {}.encode(&mut u.mr)
}

/// Irq bind_vcpu: triggering the Irq injects `intid` with `priority` into
/// the vCPU of `thread` (the caller's index).
pub fn irq_bind_vcpu(u: &mut Utcb, thread: u64, intid: u32, priority: u8) -> MsgTag {
    IrqBindVcpu {
        irq: VirqSpec { intid, priority },
        thread: cap_arg(thread),
    }
    .encode(&mut u.mr)
}

/// Vm shortcut: `kind` ([`l4_abi::vcpu::shortcut`]) at `gpa`, with a
/// constant's `value` or a doorbell's Irq `irq` (the caller's index).
pub fn vm_shortcut(u: &mut Utcb, gpa: u64, kind: u64, value: u32, irq: Option<u64>) -> MsgTag {
    VmShortcut {
        gpa,
        kind,
        value: value.into(),
        irq: irq.map(cap_arg),
    }
    .encode(&mut u.mr)
}

// ---------------------------------------------------------------------
// Icu
// ---------------------------------------------------------------------

/// `Icu::Bind` (or `Unbind`): IRQ line `irq`, item = the Irq capability.
pub fn icu_bind(u: &mut Utcb, irq: u64, irq_cap: u64, unbind: bool) -> MsgTag {
    let irq_cap = cap_arg(irq_cap);
    if unbind {
        IcuUnbind { irq, irq_cap }.encode(&mut u.mr)
    } else {
        IcuBind { irq, irq_cap }.encode(&mut u.mr)
    }
}

/// `Icu::Info`.
pub fn icu_info(u: &mut Utcb) -> MsgTag {
    IcuInfo {}.encode(&mut u.mr)
}

/// Reads the reply (with tag `tag`) of `Icu::Info`.
pub fn icu_info_reply(u: &Utcb, tag: MsgTag) -> Result<IcuInfoReply, Error> {
    reply(u, tag)
}

/// `Icu::Mask` or `Icu::Unmask` of line `irq`.
pub fn icu_mask(u: &mut Utcb, irq: u64, mask: bool) -> MsgTag {
    if mask {
        IcuMask { irq }.encode(&mut u.mr)
    } else {
        IcuUnmask { irq }.encode(&mut u.mr)
    }
}

/// `Icu::SetMode` of line `irq` ([`l4_abi::proto::icu::mode`]).
pub fn icu_set_mode(u: &mut Utcb, irq: u64, mode: u64) -> MsgTag {
    IcuSetMode { irq, mode }.encode(&mut u.mr)
}

// ---------------------------------------------------------------------
// Scheduler
// ---------------------------------------------------------------------

/// How to run a thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SchedParams {
    /// Priority (higher runs first).
    pub prio: u64,
    /// Time slice in µs.
    pub quantum_us: u64,
    /// The CPUs the thread may run on.
    pub cpus: SchedCpuSet,
}

impl SchedParams {
    /// Priority `prio` on the CPUs of bitmap `cpu_mask` (bit `i` = CPU
    /// `i`), default quantum.
    pub const fn new(prio: u64, cpu_mask: u64) -> SchedParams {
        SchedParams {
            prio,
            quantum_us: DEFAULT_QUANTUM_US,
            cpus: SchedCpuSet {
                offset: 0,
                granularity: 0,
                map: cpu_mask,
            },
        }
    }

    /// The same with another time slice.
    pub const fn quantum(mut self, us: u64) -> SchedParams {
        self.quantum_us = us;
        self
    }
}

/// `Scheduler::Info` for CPUs from `offset` with `granularity`.
pub fn sched_info(u: &mut Utcb, gran_offset: u64) -> MsgTag {
    SchedInfo { gran_offset }.encode(&mut u.mr)
}

/// Reads the reply (with tag `tag`) of `Scheduler::Info`.
pub fn sched_info_reply(u: &Utcb, tag: MsgTag) -> Result<SchedInfoReply, Error> {
    reply(u, tag)
}

/// `Scheduler::RunThread`: run `thread` (the caller's index) with `p`.
pub fn sched_run_thread(u: &mut Utcb, thread: u64, p: &SchedParams) -> MsgTag {
    SchedRunThread {
        cpus: p.cpus,
        prio: p.prio,
        quantum_us: p.quantum_us,
        thread: cap_arg(thread),
    }
    .encode(&mut u.mr)
}

/// `Scheduler::IdleTime` of the CPUs in `cpus`: reply MR0 = µs.
pub fn sched_idle_time(u: &mut Utcb, cpus: SchedCpuSet) -> MsgTag {
    SchedIdleTime { cpus }.encode(&mut u.mr)
}

// ---------------------------------------------------------------------
// Vcon
// ---------------------------------------------------------------------

/// `Vcon::Write` of up to [`VCON_WRITE_MAX`] bytes of `bytes`; returns the
/// tag and the number of bytes the message carries.
pub fn vcon_write(u: &mut Utcb, bytes: &[u8]) -> (MsgTag, usize) {
    let op = VconWrite {
        bytes: Bytes::new(bytes),
    };
    (op.encode(&mut u.mr), op.bytes.as_slice().len())
}

/// `Vcon::Read` of at most `max` bytes (cut to [`VCON_READ_MAX`]).
pub fn vcon_read(u: &mut Utcb, max: usize) -> MsgTag {
    let max = max.min(VCON_READ_MAX) as u64;
    VconRead { max }.encode(&mut u.mr)
}

/// Reads the reply (with tag `tag`) of `Vcon::Read` into `buf`: returns
/// the number of bytes copied (at most `buf.len()`; the rest is dropped)
/// and the [`vcon`] status flags.
pub fn vcon_read_reply(u: &Utcb, tag: MsgTag, buf: &mut [u8]) -> Result<(usize, u64), Error> {
    let r: VconReadReply = reply(u, tag)?;
    let data = r.bytes.as_slice();
    let n = data.len().min(buf.len());
    buf[..n].copy_from_slice(&data[..n]);
    Ok((n, r.status))
}

/// `Vcon::SetAttr`: input, output and local flags
/// ([`vcon::attr`]).
pub fn vcon_set_attr(u: &mut Utcb, iflags: u64, oflags: u64, lflags: u64) -> MsgTag {
    VconSetAttr {
        iflags,
        oflags,
        lflags,
    }
    .encode(&mut u.mr)
}

/// `Vcon::GetAttr`; its reply is a [`VconAttrReply`].
pub fn vcon_get_attr(u: &mut Utcb) -> MsgTag {
    VconGetAttr {}.encode(&mut u.mr)
}

// ---------------------------------------------------------------------
// Semaphore
// ---------------------------------------------------------------------

/// `Semaphore::Down` with timeout `t` (in the receive half of MR1).
pub fn semaphore_down(u: &mut Utcb, t: Timeout) -> MsgTag {
    SemaphoreDown { timeout: t }.encode(&mut u.mr)
}

// ---------------------------------------------------------------------
// Sigma0
// ---------------------------------------------------------------------

/// Sigma0 ([`l4_abi::sigma0`]): map `2^order` bytes of free RAM 1:1;
/// reply MR0 = the address.
pub fn sigma0_map_free(u: &mut Utcb, order: u8) -> MsgTag {
    let order = order as u64;
    Sigma0MapFree { order }.encode(&mut u.mr)
}

/// Sigma0: map `2^order` bytes of device memory at `pa` 1:1; reply MR0 =
/// the address.
pub fn sigma0_map_device(u: &mut Utcb, pa: u64, order: u8) -> MsgTag {
    let order = order as u64;
    Sigma0MapDevice { pa, order }.encode(&mut u.mr)
}

/// Sigma0: map the boot-module memory `[pa, pa + size)` 1:1 (read-execute);
/// reply MR0 = the address.
pub fn sigma0_map_module(u: &mut Utcb, pa: u64, size: u64) -> MsgTag {
    Sigma0MapModule { pa, size }.encode(&mut u.mr)
}

// ---------------------------------------------------------------------
// Replies to page faults and exceptions
// ---------------------------------------------------------------------

/// A page-fault reply carrying `items` (map items whose send base is the
/// fault address); at most 32 fit.
pub fn page_fault_reply(u: &mut Utcb, items: &[SendItem]) -> MsgTag {
    let n = items.len().min(MR_COUNT / 2);
    for (i, it) in items[..n].iter().enumerate() {
        let [c, f] = it.to_words();
        u.mr[2 * i] = c;
        u.mr[2 * i + 1] = f;
    }
    MsgTag::new(0, 0, n as u32, 0)
}

/// An exception reply that sets the thread's registers to `regs`.
pub fn exception_reply(u: &mut Utcb, regs: &ExcRegs) -> MsgTag {
    put(u, 0, &regs.to_words());
    MsgTag::new(0, EXC_REGS_WORDS as u32, 0, 0)
}

/// Reads an exception message's registers, if it has all its words.
pub fn exception_regs(u: &Utcb, tag: MsgTag) -> Option<ExcRegs> {
    let n = (tag.words() as usize).min(MR_COUNT);
    ExcRegs::from_words(&u.mr[..n])
}

// ---------------------------------------------------------------------
// Results
// ---------------------------------------------------------------------

/// The result of a kernel-object call: the IPC status, then the reply
/// label (negative = error). Returns the reply tag.
pub fn result(r: Result<MsgTag, Error>) -> Result<MsgTag, Error> {
    let tag = r?;
    tag.to_result()?;
    Ok(tag)
}

pub use l4_abi::fpage::for_each_block;

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use l4_abi::Proto;
    use l4_abi::fpage::{FpageType, RecvItems};
    use l4_abi::ops::{IrqSenderMsg, ThreadMsg};
    use l4_abi::proto::varg::{Varg, Vargs};
    use l4_abi::proto::{FactoryOp, TaskOp, ThreadOp, ex_regs};
    use l4_abi::{MemRights, fault};
    use l4_abi::{MsgTag as Tag, Timeouts};
    use std::vec::Vec;

    fn utcb() -> std::boxed::Box<Utcb> {
        std::boxed::Box::new(Utcb::new())
    }

    /// The capability item in two words: (index, rights bits).
    fn item_cap(w: &[u64]) -> (u64, CapRights) {
        let it = SendItem::from_words([w[0], w[1]]);
        assert!(it.is_map_item());
        assert_eq!(it.fpage.kind(), FpageType::Obj);
        (it.fpage.obj_index(), it.cap_rights())
    }

    #[test]
    fn task_map_layout() {
        let mut u = utcb();
        let it = SendItem::map(Fpage::mem(0x1000_0000, 16, MemRights::RX), 0x2000_0000);
        let tag = task_map(&mut u, 1, it);
        assert_eq!(tag.label(), Proto::Task as i64);
        assert_eq!((tag.words(), tag.items()), (3, 1));
        assert_eq!(u.mr[0], TaskOp::Map.code());
        assert_eq!(SendItem::from_words([u.mr[1], u.mr[2]]), it);
        assert_eq!(item_cap(&u.mr[3..5]), (1, CapRights::RWS));
    }

    #[test]
    fn task_unmap_and_delete() {
        let mut u = utcb();
        let f = [
            Fpage::mem(0x4000, 12, MemRights::W),
            Fpage::obj(9, 0, CapRights::RWSD),
        ];
        let tag = task_unmap(&mut u, unmap::ALL_SPACES, &f);
        assert_eq!((tag.label(), tag.words(), tag.items()), (-11, 4, 0));
        assert_eq!(u.mr[..4], [1, unmap::ALL_SPACES, f[0].0, f[1].0]);
        let tag = task_delete_cap(&mut u, 0x42);
        assert_eq!(tag.words(), 3);
        assert_eq!(u.mr[1], unmap::DELETE_OBJ);
        let fp = Fpage(u.mr[2]);
        assert_eq!(
            (fp.kind(), fp.obj_index(), fp.order()),
            (FpageType::Obj, 0x42, 0)
        );
        assert_eq!(fp.cap_rights(), CapRights::RWSD);
        task_release_cap(&mut u, 0x42);
        assert_eq!(u.mr[1], unmap::ALL_SPACES);
        // Too many flexpages are cut to what a tag can carry.
        let many = [Fpage::invalid(); 80];
        assert_eq!(task_unmap(&mut u, 0, &many).words(), 63);
    }

    #[test]
    fn cap_info_layout() {
        let mut u = utcb();
        let tag = task_cap_info(&mut u, 7, false);
        assert_eq!((tag.words(), u.mr[0], u.mr[1]), (2, 2, 7 << 12));
        task_cap_info(&mut u, 7, true);
        assert_eq!(u.mr[1], (7 << 12) | 1);
        let tag = task_cap_equal(&mut u, 3, 4);
        assert_eq!((tag.words(), u.mr[1], u.mr[2]), (3, 3 << 12, 4 << 12));
    }

    #[test]
    fn thread_control_layout() {
        use l4_abi::proto::thread_control::*;
        let mut u = utcb();
        u.mr.fill(0xdead);
        let c = ThreadControl::new()
            .pager(l4_abi::Cap::new(3))
            .exc_handler(l4_abi::Cap::new(4))
            .bind(1, 0x7ff0_0000_0400);
        let tag = thread_control(&mut u, &c);
        assert_eq!(tag.label(), Proto::Thread as i64);
        assert_eq!((tag.words(), tag.items()), (6, 1));
        assert_eq!(u.mr[0], SET_PAGER | SET_EXC_HANDLER | BIND_TASK);
        assert_eq!(u.mr[1], 3 << 12);
        assert_eq!(u.mr[2], 4 << 12);
        assert_eq!(u.mr[3], 0);
        assert_eq!(u.mr[4], 0);
        assert_eq!(u.mr[5], 0x7ff0_0000_0400);
        assert_eq!(item_cap(&u.mr[6..]), (1, CapRights::RWS));

        let tag = thread_control(&mut u, &ThreadControl::new().alien(true));
        assert_eq!((tag.words(), tag.items()), (6, 0));
        assert_eq!(u.mr[0], ALIEN);
        assert_eq!(u.mr[4], ALIEN);
        assert_eq!(u.mr[1], 0, "unused words are cleared");
        thread_control(&mut u, &ThreadControl::new().alien(false));
        assert_eq!((u.mr[0], u.mr[4]), (ALIEN, 0));
    }

    #[test]
    fn ex_regs_layout() {
        let mut u = utcb();
        let tag = thread_ex_regs(&mut u, 0x1000, ex_regs::UNCHANGED, ex_regs::CANCEL);
        assert_eq!((tag.label(), tag.words()), (-12, 3));
        assert_eq!(u.mr[..3], [1 | ex_regs::CANCEL, 0x1000, u64::MAX]);
        assert_eq!(
            ThreadOp::decode(u.mr[0]),
            Ok((ThreadOp::ExRegs, ex_regs::CANCEL))
        );
        u.mr[..3].copy_from_slice(&[0x3c0, 0x2000, 0x3000]);
        assert_eq!(
            thread_ex_regs_reply(&u, Tag::new(0, 3, 0, 0)),
            Ok(ExRegsReply {
                pstate: 0x3c0,
                pc: 0x2000,
                sp: 0x3000
            })
        );
        assert_eq!(
            thread_ex_regs_reply(&u, Tag::new(0, 2, 0, 0)),
            Err(Error::Inval),
            "short reply"
        );
        assert_eq!(thread_stats(&mut u).words(), 1);
        assert_eq!(u.mr[0], ThreadOp::Stats.code());
    }

    fn vargs(u: &Utcb, tag: MsgTag) -> Vec<Varg<'_>> {
        Vargs::new(&u.mr[1..tag.words() as usize])
            .map(|v| v.unwrap())
            .collect()
    }

    fn dest_slot(u: &Utcb) -> Vec<l4_abi::RecvItem> {
        assert_eq!(u.bdr, 0);
        RecvItems::new(&u.br).collect()
    }

    #[test]
    fn factory_layouts() {
        let mut u = utcb();
        u.br.fill(!0);
        let area = Fpage::mem(0x7ff0_0000_0000, 16, MemRights::RW);
        let tag = factory_task(&mut u, 0x300, area);
        assert_eq!(tag.label(), Proto::Factory as i64);
        assert_eq!((tag.words(), tag.items()), (3, 0));
        assert_eq!(FactoryOp::try_from(u.mr[0]), Ok(FactoryOp::Task));
        assert_eq!(u.mr[0], (-11i64) as u64, "sign-extended protocol");
        assert_eq!(vargs(&u, tag), [Varg::Fpage(area)]);
        assert_eq!(dest_slot(&u), [l4_abi::RecvItem::SmallCap { index: 0x300 }]);

        let tag = factory_thread(&mut u, 0x301);
        assert_eq!(
            (tag.words(), FactoryOp::try_from(u.mr[0])),
            (1, Ok(FactoryOp::Thread))
        );
        assert_eq!(dest_slot(&u), [l4_abi::RecvItem::SmallCap { index: 0x301 }]);

        let tag = factory_factory(&mut u, 0x302, 65536);
        assert_eq!(FactoryOp::try_from(u.mr[0]), Ok(FactoryOp::Factory));
        assert_eq!(vargs(&u, tag), [Varg::Umword(65536)]);

        let tag = factory_gate(&mut u, 0x303, 0x1230, None);
        assert_eq!((tag.words(), tag.items()), (3, 0));
        assert_eq!(FactoryOp::try_from(u.mr[0]), Ok(FactoryOp::IpcGate));
        assert_eq!(vargs(&u, tag), [Varg::Umword(0x1230)]);
        let tag = factory_gate(&mut u, 0x303, 0x1230, Some(0x55));
        assert_eq!((tag.words(), tag.items()), (3, 1));
        assert_eq!(item_cap(&u.mr[3..5]), (0x55, CapRights::RWS));

        assert_eq!(factory_irq(&mut u, 1).words(), 1);
        assert_eq!(FactoryOp::try_from(u.mr[0]), Ok(FactoryOp::Irq));
        assert_eq!(factory_semaphore(&mut u, 1).words(), 1);
        assert_eq!(FactoryOp::try_from(u.mr[0]), Ok(FactoryOp::Semaphore));
    }

    #[test]
    fn kobject_irq_icu_layouts() {
        let mut u = utcb();
        let tag = kobject_bind(&mut u, 0x40, 0xabc0, CapRights::RWS);
        assert_eq!((tag.label(), tag.words(), tag.items()), (-10, 2, 1));
        assert_eq!(u.mr[..2], [0x10, 0xabc0]);
        assert_eq!(item_cap(&u.mr[2..4]), (0x40, CapRights::RWS));
        assert_eq!(kobject_get_info(&mut u).words(), 1);
        assert_eq!(u.mr[0], 0x11);

        let tag = irq_trigger(&mut u);
        assert_eq!((tag.label(), tag.words(), u.mr[0]), (-1, 1, 2));
        irq_unmask(&mut u);
        assert_eq!(u.mr[0], 4);
        let tag = irq_attach(&mut u, 3, 9);
        assert_eq!((tag.label(), tag.words(), tag.items()), (-18, 2, 1));
        assert_eq!(u.mr[..2], [0, 9]);
        irq_detach(&mut u);
        assert_eq!(u.mr[0], 1);

        let tag = icu_bind(&mut u, 34, 0x77, false);
        assert_eq!((tag.label(), tag.words(), tag.items()), (-1, 2, 1));
        assert_eq!(u.mr[..2], [0, 34]);
        assert_eq!(item_cap(&u.mr[2..4]).0, 0x77);
        icu_bind(&mut u, 34, 0x77, true);
        assert_eq!(u.mr[0], 1);
        icu_mask(&mut u, 34, true);
        assert_eq!(u.mr[..2], [5, 34]);
        icu_mask(&mut u, 34, false);
        assert_eq!(u.mr[..2], [4, 34]);
        assert_eq!(icu_set_mode(&mut u, 34, 3).words(), 3);
        assert_eq!(u.mr[..3], [6, 34, 3]);
        assert_eq!(icu_info(&mut u).words(), 1);
        u.mr[..3].copy_from_slice(&[0, 288, 0]);
        assert_eq!(
            icu_info_reply(&u, Tag::new(0, 3, 0, 0)).map(|i| i.nr_irqs),
            Ok(288)
        );
    }

    #[test]
    fn scheduler_layouts() {
        let mut u = utcb();
        let p = SchedParams::new(100, 0b10).quantum(5000);
        let tag = sched_run_thread(&mut u, 0x88, &p);
        assert_eq!((tag.label(), tag.words(), tag.items()), (-14, 5, 1));
        assert_eq!(u.mr[..5], [1, 0, 0b10, 100, 5000]);
        assert_eq!(item_cap(&u.mr[5..7]), (0x88, CapRights::RWS));
        assert_eq!(sched_info(&mut u, 0).words(), 2);
        assert_eq!(u.mr[..2], [0, 0]);
        u.mr[..2].copy_from_slice(&[0b1111, 4]);
        let info = sched_info_reply(&u, Tag::new(0, 2, 0, 0)).unwrap();
        assert_eq!((info.count(), info.max_cpus), (4, 4));
        let tag = sched_idle_time(&mut u, SchedCpuSet::from_words(0, 1));
        assert_eq!((tag.words(), u.mr[0], u.mr[2]), (3, 2, 1));
    }

    #[test]
    fn vcon_layouts() {
        let mut u = utcb();
        let (tag, n) = vcon_write(&mut u, b"hello, world\n");
        assert_eq!((tag.label(), tag.words(), n), (-13, 4, 13));
        assert_eq!(u.mr[..2], [0, 13]);
        assert_eq!(u.mr[2].to_le_bytes(), *b"hello, w");
        assert_eq!(u.mr[3].to_le_bytes(), *b"orld\n\0\0\0");
        let long = [b'x'; 1000];
        let (tag, n) = vcon_write(&mut u, &long);
        assert_eq!((n, tag.words()), (VCON_WRITE_MAX, 63));

        let tag = vcon_read(&mut u, 10_000);
        assert_eq!((tag.words(), u.mr[1]), (2, VCON_READ_MAX as u64));
        u.mr[0] = 5 | vcon::READ_STAT_DONE;
        u.mr[1] = u64::from_le_bytes(*b"abcdefgh");
        let mut buf = [0u8; 16];
        let two = Tag::new(0, 2, 0, 0);
        assert_eq!(
            vcon_read_reply(&u, two, &mut buf),
            Ok((5, vcon::READ_STAT_DONE))
        );
        assert_eq!(&buf[..5], b"abcde");
        let mut small = [0u8; 3];
        assert_eq!(
            vcon_read_reply(&u, two, &mut small),
            Ok((3, vcon::READ_STAT_DONE))
        );
        assert_eq!(
            vcon_read_reply(&u, Tag::new(0, 1, 0, 0), &mut buf),
            Err(Error::Inval),
            "count beyond the data words"
        );

        // Fiasco's layout: opcode, then the input, output and local flags.
        let tag = vcon_set_attr(&mut u, vcon::attr::ICRNL, 0, vcon::attr::ECHO);
        assert_eq!((tag.label(), tag.words()), (-13, 4));
        assert_eq!(u.mr[..4], [2, 0o400, 0, 0o10]);
        let tag = vcon_get_attr(&mut u);
        assert_eq!((tag.words(), u.mr[0]), (1, 3));
    }

    #[test]
    fn vcon_write_max_fits_a_tag() {
        // The tag's word count is 6 bits: a full write must not wrap it.
        let mut u = utcb();
        let (tag, n) = vcon_write(&mut u, &[b'y'; 1000]);
        assert_eq!(n, 488);
        assert_eq!(tag.words() as usize, 2 + n.div_ceil(8));
        assert!(tag.words() <= MsgTag::MAX_WORDS);
    }

    #[test]
    fn semaphore_sigma0_layouts() {
        let mut u = utcb();
        let t = Timeout::from_us(10_000);
        let tag = semaphore_down(&mut u, t);
        assert_eq!((tag.label(), tag.words(), u.mr[0]), (-20, 2, 0));
        assert_eq!(Timeouts::from_reg(u.mr[1]).recv(), t);
        assert_eq!(Timeouts::from_reg(u.mr[1]).send(), Timeout::NEVER);
        let tag = sigma0_map_free(&mut u, 12);
        assert_eq!((tag.label(), tag.words()), (-6, 2));
        assert_eq!(u.mr[..2], [1, 12]);
        let tag = sigma0_map_device(&mut u, 0x0901_0000, 12);
        assert_eq!(tag.words(), 3);
        assert_eq!(u.mr[..3], [2, 0x0901_0000, 12]);
        let tag = sigma0_map_module(&mut u, 0x4010_0000, 0x3000);
        assert_eq!((tag.label(), tag.words()), (-6, 3));
        assert_eq!(u.mr[..3], [3, 0x4010_0000, 0x3000]);
    }

    #[test]
    fn fault_replies() {
        let mut u = utcb();
        let it = SendItem::map(Fpage::mem(0x4000_0000, 12, MemRights::RW), 0x1000_0000);
        let tag = page_fault_reply(&mut u, &[it]);
        assert_eq!((tag.label(), tag.words(), tag.items()), (0, 0, 1));
        assert_eq!(SendItem::from_words([u.mr[0], u.mr[1]]), it);
        let mut r = fault::ExcRegs {
            pc: 0x1234,
            ..Default::default()
        };
        r.x[0] = 42;
        let tag = exception_reply(&mut u, &r);
        assert_eq!(tag.words() as usize, EXC_REGS_WORDS);
        assert_eq!(exception_regs(&u, tag), Some(r));
        assert_eq!(exception_regs(&u, tag.with_counts(39, 0)), None);
    }

    #[test]
    fn recv_items_and_raw() {
        let mut u = utcb();
        u.br.fill(!0);
        set_recv_items(
            &mut u,
            &[
                RecvItem::Window(Fpage::mem(0x10_0000, 20, MemRights::RWX)),
                RecvItem::SmallCap { index: 4 },
            ],
        );
        assert_eq!(RecvItems::new(&u.br).count(), 2);
        assert_eq!(u.br[3], 0);
        clear_recv_items(&mut u);
        assert_eq!(RecvItems::new(&u.br).count(), 0);
        let tag = raw(&mut u, -13, &[0x77, 1]);
        assert_eq!((tag.label(), tag.words(), u.mr[0]), (-13, 2, 0x77));
        assert_eq!(put(&mut u, 62, &[1, 2, 3]), 64);
    }

    #[test]
    fn results() {
        assert_eq!(
            result(Ok(MsgTag::new(1, 0, 0, 0))).map(|t| t.label()),
            Ok(1)
        );
        assert_eq!(
            result(Ok(MsgTag::reply(Err(Error::Perm)))),
            Err(Error::Perm)
        );
        assert_eq!(result(Err(Error::NoPartner)), Err(Error::NoPartner));
    }
    #[test]
    fn vcpu_layouts_decode_as_declared() {
        let mut u = std::boxed::Box::new(Utcb::new());
        let t = vcpu_control(&mut u, 0x7000, 9);
        assert_eq!(
            (t.label(), t.words(), t.items()),
            (Proto::Thread as i64, 2, 1)
        );
        assert_eq!(
            ThreadMsg::decode(t, &u.mr),
            Ok(ThreadMsg::VcpuControl(ThreadVcpuControl {
                state: 0x7000,
                vm: Some(CapArg::new(9, CapRights::RWS))
            }))
        );
        let t = vcpu_control(&mut u, 0, 9);
        assert_eq!((t.words(), t.items()), (2, 0));
        let t = vcpu_resume(&mut u);
        assert_eq!(
            ThreadMsg::decode(t, &u.mr),
            Ok(ThreadMsg::VcpuResume(ThreadVcpuResume {}))
        );
        let t = irq_bind_vcpu(&mut u, 5, 33, 0xa0);
        assert_eq!(t.label(), Proto::IrqSender as i64);
        assert_eq!(u.mr[1], 33 | 0xa0 << 32);
        assert_eq!(
            IrqSenderMsg::decode(t, &u.mr),
            Ok(IrqSenderMsg::BindVcpu(IrqBindVcpu {
                irq: VirqSpec {
                    intid: 33,
                    priority: 0xa0
                },
                thread: CapArg::new(5, CapRights::RWS)
            }))
        );
        // An INTID beyond the SPIs does not decode.
        u.mr[1] = 1020;
        assert!(IrqSenderMsg::decode(t, &u.mr).is_err());
        let t = factory_vm(&mut u, 12);
        assert_eq!(t.label(), Proto::Factory as i64);
        assert_eq!(FactoryOp::try_from(u.mr[0]), Ok(FactoryOp::Vm));
    }
}

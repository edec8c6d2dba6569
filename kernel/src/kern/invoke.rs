//! The system call: IPC to threads and gates, and invocation of kernel
//! objects (Factory, Task, Thread, Ipc_gate, Irq, Icu, Scheduler, Vcon,
//! Semaphore, Sigma0), with the rights checks `l4_abi::proto` documents.

use super::ipc::{self, Sent};
use super::task::Task;
use super::thread::{PendingRegs, State, Thread};
use super::{Factory, Gate, Irq, KObject, Kernel, xfer};
use crate::arch;
use crate::mm::{self, PAGE};
use alloc::boxed::Box;
use alloc::collections::VecDeque;
use kernel_core::ipc::{Operation, decode};
use kernel_core::kobj::ObjId;
use kernel_core::sched::{CpuSet, SchedContext};
use l4_abi::proto::{
    self, FactoryOp, IcuOp, IrqOp, IrqSenderOp, KobjectOp, SchedulerOp, SemaphoreOp, TaskOp,
    ThreadOp, VconOp, varg,
};
use l4_abi::utcb::MR_COUNT;
use l4_abi::{
    CapRights, Error, Fpage, MemRights, MsgTag, Proto, RecvItem, SendItem, Timeout, debug,
};

/// Kernel memory charged to a factory per object.
const COST_TASK: u64 = 16 * 1024;
const COST_THREAD: u64 = 20 * 1024;
const COST_SMALL: u64 = 256;
/// A Vm: its stage-2 root (two pages) and the object.
const COST_VM: u64 = 2 * PAGE + COST_SMALL;
/// The most kernel heap one new object takes (a thread, with its boxed
/// state and run-queue and index entries).
const COST_HEAP: u64 = 4 * 1024;

/// Default scheduling of new threads: priority 1, 10 ms slices, CPU 0.
pub const DEFAULT_PRIO: u8 = 1;
pub const DEFAULT_QUANTUM: u32 = 1;

pub struct Semaphore {
    pub count: u64,
    pub waiters: VecDeque<ObjId>,
}

/// Result of a kernel-object operation: reply label and words, or an
/// error (negative label), or "the caller blocked" (Semaphore down).
enum Done {
    Reply(i64, usize),
    Blocked,
}

type OpResult = Result<Done, Error>;

fn ok(words: usize) -> OpResult {
    Ok(Done::Reply(0, words))
}

pub fn syscall(k: &mut Kernel, cur: ObjId, f: arch::CallRegs) {
    if f.x8 != l4_abi::sys::X8_IPC {
        return debug_call(k, cur, f);
    }
    let inv = match decode(f.x0, f.x1, f.x2) {
        Ok(i) => i,
        Err(e) => return k.t(cur).set_error(e),
    };
    let op = inv.op;
    if op.replies() {
        let r = ipc::reply(k, cur);
        if !op.receives() {
            return match r {
                Ok(()) => k.t(cur).set_result(0, MsgTag(0), 0),
                Err(e) => k.t(cur).set_error(e),
            };
        }
        return ipc::receive(k, cur, None, inv.timeouts.recv());
    }
    let Some(task) = k.t(cur).task else {
        return k.t(cur).set_error(Error::Inval);
    };
    if !op.sends() {
        // Receive only: from anyone, or from the thread the capability names.
        let from = match (op.open_wait(), inv.cap.index()) {
            (true, _) => None,
            (false, None) => {
                // The invalid selector: sleep until the timeout.
                return sleep(k, cur, inv.timeouts.recv());
            }
            (false, Some(i)) => match k.lookup_cap(task, i, CapRights::R) {
                Ok((obj, _))
                    if matches!(k.objs.get(obj), Some(KObject::Thread(_) | KObject::Irq(_))) =>
                {
                    Some(obj)
                }
                Ok(_) => return k.t(cur).set_error(Error::Inval),
                Err(e) => return k.t(cur).set_error(e),
            },
        };
        return ipc::receive(k, cur, from, inv.timeouts.recv());
    }
    let index = inv.cap.index().unwrap_or(0);
    let (obj, rights) = match k.lookup_cap(task, index, CapRights::R) {
        Ok(x) => x,
        Err(e) => return k.t(cur).set_error(e),
    };
    // Threads and gates are IPC endpoints; their own protocol (Thread, and
    // Kobject through a gate capability with the C right) reaches the kernel.
    let label = inv.tag.label();
    let kernel_op = match k.objs.get(obj) {
        Some(KObject::Thread(_)) => label == Proto::Thread as i64,
        Some(KObject::Gate(_)) => label == Proto::Kobject as i64 && rights.contains(CapRights::C),
        _ => true,
    };
    if let Some(target) = ipc::ipc_target(k, obj, rights).filter(|_| !kernel_op) {
        let call = (op == Operation::Call).then_some(inv.timeouts.recv());
        let s = rights.contains(CapRights::S);
        let sent = ipc::send(k, cur, target, call, s, inv.timeouts.send());
        if op == Operation::SendAndWait && matches!(sent, Sent::Done) {
            ipc::receive(k, cur, None, inv.timeouts.recv());
        }
        return;
    }
    if !kernel_op {
        // A gate nobody is bound to yet: wait for its server to bind it.
        let call = (op == Operation::Call).then_some(inv.timeouts.recv());
        ipc::wait_for_binding(k, cur, obj, rights, call, inv.timeouts.send());
        return;
    }
    let tag = inv.tag;
    let r = invoke_object(k, cur, task, obj, rights, tag);
    let (label, words) = match r {
        Ok(Done::Blocked) => return,
        Ok(Done::Reply(l, w)) => (l, w),
        Err(e) => (e.as_ret(), 0),
    };
    if op.receives() {
        k.t(cur)
            .set_result(0, MsgTag::new(label, words as u32, 0, 0), 0);
    } else {
        k.t(cur).set_result(0, MsgTag(0), 0);
    }
    if op == Operation::SendAndWait {
        ipc::receive(k, cur, None, inv.timeouts.recv());
    }
}

/// Receive from nobody: wait for the timeout (a sleep).
fn sleep(k: &mut Kernel, cur: ObjId, t: Timeout) {
    match ipc::deadline(k, cur, t, Error::RecvTimeout) {
        Err(e) => k.t(cur).set_error(e),
        Ok(d) => k.make_blocked(cur, State::Recv { from: Some(cur) }, d),
    }
}

/// The temporary debug calls (x8 != 0).
fn debug_call(k: &mut Kernel, cur: ObjId, f: arch::CallRegs) {
    let ret = match f.x8 {
        debug::PUTS => {
            let mut buf = [0u8; 512];
            let len = (f.x1 as usize).min(buf.len());
            let task = k.t(cur).task.and_then(|t| k.task(t));
            match task.and_then(|t| t.read_user(f.x0, &mut buf[..len])) {
                Some(()) => {
                    crate::console::write_bytes(&buf[..len]);
                    len as u64
                }
                None => Error::Fault.as_status(),
            }
        }
        debug::EXIT => {
            crate::kprintln!("kernel: task exited with code {}", f.x0 as i64);
            k.make_blocked(cur, State::Dead, None);
            return;
        }
        _ => Error::NoSys.as_status(),
    };
    k.t(cur).frame().x[0] = ret;
}

fn mrs(k: &mut Kernel, cur: ObjId) -> Result<[u64; MR_COUNT], Error> {
    Ok(k.t(cur).utcb().ok_or(Error::Inval)?.mr)
}

fn set_mrs(k: &mut Kernel, cur: ObjId, words: &[u64]) -> Result<(), Error> {
    k.t(cur).utcb().ok_or(Error::Inval)?.mr[..words.len()].copy_from_slice(words);
    Ok(())
}

/// The rights `r` and at least `words` message words (else `Inval`).
fn need_words(rights: CapRights, r: CapRights, tag: MsgTag, words: u32) -> Result<(), Error> {
    need(rights, r)?;
    if tag.words() < words {
        return Err(Error::Inval);
    }
    Ok(())
}

fn need(rights: CapRights, r: CapRights) -> Result<(), Error> {
    if rights.contains(r) {
        Ok(())
    } else {
        Err(Error::Perm)
    }
}

/// Reads typed item `n` of a kernel-object invocation as a reference to a
/// capability of the caller: (object, rights of that capability reduced by
/// the item's rights).
fn item_cap(
    k: &mut Kernel,
    task: ObjId,
    tag: MsgTag,
    mrs: &[u64; MR_COUNT],
    n: usize,
) -> Result<(ObjId, CapRights), Error> {
    if n >= tag.items() as usize {
        return Err(Error::Inval);
    }
    let at = tag.words() as usize + 2 * n;
    if at + 1 >= MR_COUNT {
        return Err(Error::Inval);
    }
    let it = SendItem::from_words([mrs[at], mrs[at + 1]]);
    if it.fpage.kind() != l4_abi::fpage::FpageType::Obj {
        return Err(Error::Inval);
    }
    let (obj, rights) = k.lookup_cap(task, it.fpage.obj_index(), CapRights::NONE)?;
    Ok((
        obj,
        rights.intersect(CapRights(it.fpage.rights_bits() | !CapRights::FPAGE_MASK)),
    ))
}

/// The thread named by the first typed item of a bind (gate, Irq): it
/// must be a thread, and the caller's capability to it must carry `S`.
fn bind_target(
    k: &mut Kernel,
    task: ObjId,
    tag: MsgTag,
    m: &[u64; MR_COUNT],
) -> Result<ObjId, Error> {
    let (t, r) = item_cap(k, task, tag, m, 0)?;
    need(r, CapRights::S)?;
    match k.objs.get(t) {
        Some(KObject::Thread(_)) => Ok(t),
        _ => Err(Error::Inval),
    }
}

fn invoke_object(
    k: &mut Kernel,
    cur: ObjId,
    task: ObjId,
    obj: ObjId,
    rights: CapRights,
    tag: MsgTag,
) -> OpResult {
    let m = mrs(k, cur)?;
    let label = tag.label();
    let proto = Proto::try_from(label).map_err(|_| Error::BadProto)?;
    let kind = match k.objs.get(obj) {
        Some(o) => core::mem::discriminant(o),
        None => return Err(Error::NoEnt),
    };
    let _ = kind;
    match (k.objs.get(obj).ok_or(Error::NoEnt)?, proto) {
        (KObject::Factory(_), Proto::Factory) => factory(k, cur, task, obj, rights, tag, &m),
        (KObject::Task(_) | KObject::Vm(_), Proto::Task) => task_op(k, task, obj, rights, tag, &m),
        (KObject::Thread(_), Proto::Thread) => thread_op(k, cur, task, obj, rights, tag, &m),
        (KObject::Gate(_), Proto::Kobject) => gate_op(k, cur, task, obj, rights, tag, &m),
        (KObject::Irq(_), Proto::Kobject | Proto::Irq | Proto::IrqSender) => {
            irq_op(k, task, obj, rights, proto, tag, &m)
        }
        (KObject::Icu, Proto::Irq) => icu_op(k, cur, task, rights, tag, &m),
        (KObject::Scheduler, Proto::Scheduler) => sched_op(k, cur, task, tag, &m),
        (KObject::Vcon, Proto::Log) => vcon_op(k, cur, &m),
        (KObject::Vcon, Proto::Irq) => vcon_icu_op(k, cur, task, rights, tag, &m),
        (KObject::Semaphore(_), Proto::Semaphore | Proto::Irq) => sem_op(k, cur, obj, proto, &m),
        (KObject::Sigma0, Proto::Sigma0) => sigma0_op(k, cur, task, &m),
        _ => Err(Error::BadProto),
    }
}

// ---------------------------------------------------------------- Factory

/// Gives `bytes` of quota back to `factory` (if it still exists).
pub fn refund(k: &mut Kernel, factory: ObjId, bytes: u64) {
    if let Some(KObject::Factory(f)) = k.objs.get_mut(factory) {
        f.quota = f.quota.saturating_add(bytes);
    }
}

/// Whether `factory` exists and has `bytes` of quota left.
pub fn has_quota(k: &Kernel, factory: ObjId, bytes: u64) -> bool {
    matches!(k.objs.get(factory), Some(KObject::Factory(f)) if f.quota >= bytes)
}

/// Takes `bytes` of `factory`'s quota for kernel memory that is not heap
/// (translation tables); `NoMem` if it does not have them or is gone.
pub fn charge_quota(k: &mut Kernel, factory: ObjId, bytes: u64) -> Result<(), Error> {
    match k.objs.get_mut(factory) {
        Some(KObject::Factory(f)) if f.quota >= bytes => {
            f.quota -= bytes;
            Ok(())
        }
        _ => Err(Error::NoMem),
    }
}

fn charge(k: &mut Kernel, factory: ObjId, bytes: u64) -> Result<(), Error> {
    // The quota is the factory's share; the heap must have the room too.
    if !mm::heap_allows(COST_HEAP) || !k.objs.has_room() {
        return Err(Error::NoMem);
    }
    if !matches!(k.objs.get(factory), Some(KObject::Factory(_))) {
        return Err(Error::Inval);
    }
    charge_quota(k, factory, bytes)
}

fn factory(
    k: &mut Kernel,
    cur: ObjId,
    task: ObjId,
    fac: ObjId,
    rights: CapRights,
    tag: MsgTag,
    m: &[u64; MR_COUNT],
) -> OpResult {
    need(rights, CapRights::W)?;
    let words = tag.words() as usize;
    if words == 0 {
        return Err(Error::Inval);
    }
    let op = FactoryOp::try_from(m[0]).map_err(|_| Error::NoSys)?;
    // Where the new capability goes: the caller's first receive item.
    let br = k.t(cur).utcb().ok_or(Error::Inval)?.br;
    let dest = match l4_abi::fpage::RecvItems::new(&br).next() {
        Some(RecvItem::SmallCap { index }) if index != 0 => index,
        _ => return Err(Error::Inval),
    };
    let mut args = varg::Vargs::new(&m[1..words]);
    let mut reply = None;
    // What to make, read from the arguments before anything is charged.
    enum Make {
        Task(Fpage),
        Thread,
        Factory(u64),
        Gate(u64, Option<ObjId>),
        Irq,
        Semaphore,
        Vm,
    }
    let (make, cost) = match op {
        FactoryOp::Task => {
            let Some(Ok(varg::Varg::Fpage(area))) = args.next() else {
                return Err(Error::Inval);
            };
            if area.kind() != l4_abi::fpage::FpageType::Memory {
                return Err(Error::Inval);
            }
            (Make::Task(area), COST_TASK)
        }
        FactoryOp::Thread => (Make::Thread, COST_THREAD),
        FactoryOp::Factory => {
            let Some(Ok(varg::Varg::Umword(quota))) = args.next() else {
                return Err(Error::Inval);
            };
            (Make::Factory(quota), quota.saturating_add(COST_SMALL))
        }
        FactoryOp::IpcGate => {
            let label = match args.next() {
                Some(Ok(varg::Varg::Umword(l))) => l,
                None => 0,
                _ => return Err(Error::Inval),
            };
            let thread = if tag.items() > 0 {
                Some(bind_target(k, task, tag, m)?)
            } else {
                None
            };
            (Make::Gate(label, thread), COST_SMALL)
        }
        FactoryOp::Irq => (Make::Irq, COST_SMALL),
        FactoryOp::Semaphore => (Make::Semaphore, COST_SMALL),
        FactoryOp::Vm => (Make::Vm, COST_VM),
    };
    charge(k, fac, cost)?;
    let made = match make {
        Make::Task(area) => (|| {
            let asid = k.alloc_asid().ok_or(Error::NoMem)?;
            let mut t = Task::new(asid).ok_or(Error::NoMem)?;
            t.factory = Some(fac);
            t.set_utcb_area(area.mem_base(), 1u64 << area.order().clamp(10, 20))?;
            reply = Some(area.0);
            Ok(KObject::Task(Box::new(t)))
        })(),
        Make::Thread => Thread::new(SchedContext::new(
            DEFAULT_PRIO,
            DEFAULT_QUANTUM,
            CpuSet::single(0),
        ))
        .map(|t| KObject::Thread(Box::new(t)))
        .ok_or(Error::NoMem),
        Make::Factory(quota) => Ok(KObject::Factory(Factory { quota })),
        Make::Gate(label, thread) => Ok(KObject::Gate(Gate {
            thread,
            label,
            waiters: VecDeque::new(),
        })),
        Make::Irq => Ok(KObject::Irq(Irq {
            thread: None,
            label: 0,
            hw: None,
            masked: true,
            vcpu: None,
        })),
        Make::Semaphore => Ok(KObject::Semaphore(Semaphore {
            count: 0,
            waiters: VecDeque::new(),
        })),
        Make::Vm => super::vm::Vm::new()
            .map(|mut v| {
                v.factory = Some(fac);
                KObject::Vm(Box::new(v))
            })
            .ok_or(Error::NoMem),
    };
    let new = match made.and_then(|o| k.objs.insert(o).map_err(|_| Error::NoMem)) {
        Ok(new) => new,
        Err(e) => {
            // Nothing was made: the quota goes back.
            refund(k, fac, cost);
            return Err(e);
        }
    };
    k.charges.insert(new, (fac, cost));
    xfer::insert_root_cap(k, task, dest, new, CapRights::ALL)?;
    match reply {
        Some(w) => {
            set_mrs(k, cur, &[w])?;
            ok(1)
        }
        None => ok(0),
    }
}

// ---------------------------------------------------------------- Task

fn task_op(
    k: &mut Kernel,
    caller_task: ObjId,
    target: ObjId,
    rights: CapRights,
    tag: MsgTag,
    m: &[u64; MR_COUNT],
) -> OpResult {
    let (op, flags) = TaskOp::decode(m[0]).map_err(|_| Error::NoSys)?;
    match op {
        TaskOp::Map => {
            need_words(rights, CapRights::W, tag, 3)?;
            let (src, src_rights) = item_cap(k, caller_task, tag, m, 0)?;
            if k.task(src).is_none() {
                return Err(Error::Inval);
            }
            let _ = src_rights;
            let mut msg = [0u64; MR_COUNT];
            msg[0] = m[1];
            msg[1] = m[2];
            let t = MsgTag::new(0, 0, 1, 0);
            xfer::message(
                k,
                t,
                &msg,
                src,
                target,
                &kernel_core::ipc::RecvBuffers::whole_space(),
                true,
            )?;
            ok(0)
        }
        TaskOp::Unmap => {
            need(rights, CapRights::W)?;
            let words = tag.words() as usize;
            if words < 2 {
                return Err(Error::Inval);
            }
            let uflags = m[1];
            let self_too = uflags & proto::unmap::ALL_SPACES != 0;
            let delete = uflags & proto::unmap::DELETE_OBJ == proto::unmap::DELETE_OBJ;
            for &w in &m[2..words.min(MR_COUNT)] {
                let fp = Fpage(w);
                let seen = xfer::unmap(k, target, fp, self_too);
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
        TaskOp::CapInfo => {
            let sel = m[1];
            let idx = sel >> l4_abi::sys::CAP_SHIFT;
            let t = k.task(target).ok_or(Error::Inval)?;
            let a = t.caps.get(idx).copied().filter(|e| k.objs.contains(e.obj));
            if tag.words() >= 3 {
                let b = t
                    .caps
                    .get(m[2] >> l4_abi::sys::CAP_SHIFT)
                    .copied()
                    .filter(|e| k.objs.contains(e.obj));
                let same = matches!((a, b), (Some(x), Some(y)) if x.obj == y.obj);
                return Ok(Done::Reply(same as i64, 0));
            }
            let _ = flags;
            if sel & 1 != 0 {
                let node = k.mapdb.lookup(target, kernel_core::mapdb::Kind::Cap, idx);
                let children = node.is_some_and(|n| k.mapdb.children(n).next().is_some());
                return Ok(Done::Reply(children as i64, 0));
            }
            Ok(Done::Reply(a.is_some() as i64, 0))
        }
        TaskOp::AddKuMem => Err(Error::NoSys),
    }
}

// ---------------------------------------------------------------- Thread

fn thread_op(
    k: &mut Kernel,
    cur: ObjId,
    task: ObjId,
    th: ObjId,
    rights: CapRights,
    tag: MsgTag,
    m: &[u64; MR_COUNT],
) -> OpResult {
    let (op, flags) = ThreadOp::decode(m[0]).map_err(|_| Error::NoSys)?;
    use proto::thread_control as tc;
    match op {
        ThreadOp::Control => {
            need_words(rights, CapRights::W, tag, tc::WORDS)?;
            if flags & tc::BIND_TASK != 0 {
                let (bind, r) = item_cap(k, task, tag, m, 0)?;
                need(r, CapRights::W)?;
                k.bind_thread(th, bind, m[tc::MR_BIND_UTCB])?;
            }
            if flags & tc::SET_PAGER != 0 {
                k.t(th).pager = m[tc::MR_PAGER] >> l4_abi::sys::CAP_SHIFT;
            }
            if flags & tc::SET_EXC_HANDLER != 0 {
                k.t(th).exc_handler = m[tc::MR_EXC_HANDLER] >> l4_abi::sys::CAP_SHIFT;
            }
            ok(0)
        }
        ThreadOp::ExRegs => {
            need_words(rights, CapRights::W, tag, 3)?;
            let keep = |v: u64| (v != proto::ex_regs::UNCHANGED).then_some(v);
            let change = PendingRegs {
                pc: keep(m[1]),
                sp: keep(m[2]),
                exception: flags & proto::ex_regs::TRIGGER_EXCEPTION != 0,
            };
            // A canceled wait ends first, so a triggered exception follows it.
            if flags & proto::ex_regs::CANCEL != 0
                && !matches!(k.t(th).state, State::Ready | State::Inactive | State::Dead)
            {
                super::ipc::cancel(k, th);
            }
            let t = k.t(th);
            let f = t.frame();
            let old = [f.spsr, f.elr, f.sp_el0];
            t.has_regs = true;
            match t.running_on {
                Some(c) if c != arch::cpu_id() => {
                    // Its registers live on that CPU: apply there.
                    let p = t.pending.get_or_insert_with(PendingRegs::default);
                    p.pc = change.pc.or(p.pc);
                    p.sp = change.sp.or(p.sp);
                    p.exception |= change.exception;
                    crate::irq::send_resched_ipi(c);
                }
                _ => super::apply_regs(k, th, change),
            }
            set_mrs(k, cur, &old)?;
            ok(3)
        }
        ThreadOp::Switch => ok(0),
        ThreadOp::Stats => {
            let t = k.t(th);
            let mut ticks = t.cpu_time;
            if t.running_on.is_some() {
                ticks += arch::counter().saturating_sub(t.ran_since);
            }
            let us = ticks * 1_000_000 / arch::counter_freq().max(1);
            set_mrs(k, cur, &[us])?;
            ok(1)
        }
        ThreadOp::ArmTpidrUro => Err(Error::Perm),
        ThreadOp::VcpuControl => {
            need_words(rights, CapRights::W, tag, 2)?;
            let vm = if m[1] != 0 {
                let (vm, r) = item_cap(k, task, tag, m, 0)?;
                need(r, CapRights::W)?;
                Some(vm)
            } else {
                None
            };
            super::vcpu::control(k, th, m[1], vm)?;
            ok(0)
        }
        ThreadOp::VcpuResume => {
            super::vcpu::resume(k, cur, th)?;
            ok(0)
        }
        _ => Err(Error::NoSys),
    }
}

// ---------------------------------------------------------------- Gate

fn gate_op(
    k: &mut Kernel,
    cur: ObjId,
    task: ObjId,
    gate: ObjId,
    rights: CapRights,
    tag: MsgTag,
    m: &[u64; MR_COUNT],
) -> OpResult {
    let (op, _) = KobjectOp::decode(m[0]).map_err(|_| Error::NoSys)?;
    need(rights, CapRights::C)?;
    match op {
        KobjectOp::Bind => {
            let t = bind_target(k, task, tag, m)?;
            if let Some(KObject::Gate(g)) = k.objs.get_mut(gate) {
                g.thread = Some(t);
                g.label = m[1];
            }
            ipc::gate_bound(k, gate);
            ok(0)
        }
        KobjectOp::GetInfo => {
            let label = match k.objs.get(gate) {
                Some(KObject::Gate(g)) => g.label,
                _ => return Err(Error::Inval),
            };
            set_mrs(k, cur, &[label])?;
            ok(1)
        }
    }
}

// ---------------------------------------------------------------- Irq, Icu

fn irq_op(
    k: &mut Kernel,
    task: ObjId,
    irq: ObjId,
    rights: CapRights,
    proto: Proto,
    tag: MsgTag,
    m: &[u64; MR_COUNT],
) -> OpResult {
    match proto {
        Proto::Kobject => {
            let (op, _) = KobjectOp::decode(m[0]).map_err(|_| Error::NoSys)?;
            need(rights, CapRights::W)?;
            if op != KobjectOp::Bind {
                return Err(Error::NoSys);
            }
            let t = bind_target(k, task, tag, m)?;
            if let Some(KObject::Irq(i)) = k.objs.get_mut(irq) {
                i.thread = Some(t);
                i.label = m[1];
                i.vcpu = None;
            }
            ok(0)
        }
        Proto::IrqSender if m[0] == l4_abi::vcpu::IRQ_BIND_VCPU => {
            need_words(rights, CapRights::W, tag, 2)?;
            let t = bind_target(k, task, tag, m)?;
            let intid = m[1] as u32;
            if intid >= l4_abi::vcpu::INTID_LIMIT || k.t(t).vcpu.is_none() {
                return Err(Error::Inval);
            }
            if let Some(KObject::Irq(i)) = k.objs.get_mut(irq) {
                i.thread = Some(t);
                i.vcpu = Some((intid, (m[1] >> 32) as u8));
            }
            ok(0)
        }
        Proto::IrqSender => {
            let (op, _) = IrqSenderOp::decode(m[0]).map_err(|_| Error::NoSys)?;
            need(rights, CapRights::W)?;
            match op {
                IrqSenderOp::Attach => irq_op(k, task, irq, rights, Proto::Kobject, tag, &{
                    let mut x = *m;
                    x[0] = KobjectOp::Bind.code();
                    x
                }),
                IrqSenderOp::Detach => {
                    if let Some(KObject::Irq(i)) = k.objs.get_mut(irq) {
                        i.thread = None;
                        i.vcpu = None;
                    }
                    ok(0)
                }
            }
        }
        _ => {
            let (op, _) = IrqOp::decode(m[0]).map_err(|_| Error::NoSys)?;
            match op {
                IrqOp::Trigger => {
                    ipc::irq_trigger(k, irq);
                    ok(0)
                }
                IrqOp::Unmask => {
                    let hw = match k.objs.get_mut(irq) {
                        Some(KObject::Irq(i)) => {
                            i.masked = false;
                            i.hw
                        }
                        _ => None,
                    };
                    if let Some(n) = hw {
                        crate::irq::set_enabled(n, true);
                    }
                    ok(0)
                }
            }
        }
    }
}

fn icu_op(
    k: &mut Kernel,
    cur: ObjId,
    task: ObjId,
    rights: CapRights,
    tag: MsgTag,
    m: &[u64; MR_COUNT],
) -> OpResult {
    let (op, _) = IcuOp::decode(m[0]).map_err(|_| Error::NoSys)?;
    let n = m[1];
    let nirqs = crate::irq::count() as u64;
    match op {
        IcuOp::Info => {
            set_mrs(k, cur, &[0, nirqs, 0])?;
            ok(3)
        }
        IcuOp::Bind | IcuOp::Unbind => {
            need(rights, CapRights::W)?;
            if n < 32 || n >= nirqs {
                return Err(Error::Inval);
            }
            let (irq, r) = item_cap(k, task, tag, m, 0)?;
            need(r, CapRights::W)?;
            let busy = crate::irq::owner(n as u32).is_some_and(|o| o != irq && k.objs.contains(o));
            let Some(KObject::Irq(i)) = k.objs.get_mut(irq) else {
                return Err(Error::Inval);
            };
            if op == IcuOp::Bind {
                if busy {
                    return Err(Error::Busy);
                }
                i.hw = Some(n as u32);
                i.masked = true;
                crate::irq::set_owner(n as u32, Some(irq));
            } else {
                i.hw = None;
                crate::irq::set_enabled(n as u32, false);
                crate::irq::set_owner(n as u32, None);
            }
            ok(0)
        }
        IcuOp::Mask | IcuOp::Unmask => {
            if n < 32 || n >= nirqs || crate::irq::owner(n as u32).is_none() {
                return Err(Error::Inval);
            }
            crate::irq::set_enabled(n as u32, op == IcuOp::Unmask);
            ok(0)
        }
        IcuOp::SetMode => {
            need(rights, CapRights::W)?;
            if n < 32 || n >= nirqs {
                return Err(Error::Inval);
            }
            crate::irq::set_mode(n as u32, m[2]);
            ok(0)
        }
        IcuOp::MsiInfo => Err(Error::NoSys),
    }
}

// ---------------------------------------------------------------- Scheduler

fn sched_op(k: &mut Kernel, cur: ObjId, task: ObjId, tag: MsgTag, m: &[u64; MR_COUNT]) -> OpResult {
    let (op, _) = SchedulerOp::decode(m[0]).map_err(|_| Error::NoSys)?;
    match op {
        SchedulerOp::Info => {
            let set = proto::SchedCpuSet::from_words(m[1], 0);
            let mut map = 0u64;
            for cpu in k.online.iter() {
                let d = (cpu as u32).checked_sub(set.offset);
                if let Some(d) = d {
                    let bit = if set.granularity >= 64 {
                        0
                    } else {
                        (d as u64) >> set.granularity
                    };
                    if bit < 64 {
                        map |= 1 << bit;
                    }
                }
            }
            let max = k.ncpus as u64;
            set_mrs(k, cur, &[map, max])?;
            ok(2)
        }
        SchedulerOp::RunThread => {
            if tag.words() < 5 {
                return Err(Error::Inval);
            }
            let (th, r) = item_cap(k, task, tag, m, 0)?;
            need(r, CapRights::W)?;
            let aff =
                CpuSet::from_sched(proto::SchedCpuSet::from_words(m[1], m[2])).intersect(k.online);
            let prio = u8::try_from(m[3]).map_err(|_| Error::Inval)?;
            let quantum_ticks = (m[4] / arch::TICK_US).clamp(1, u32::MAX as u64) as u32;
            let Some(cpu) = aff.first() else {
                return Err(Error::Inval);
            };
            let t = k.thread_mut(th).ok_or(Error::Inval)?;
            if t.task.is_none() || !t.has_regs {
                return Err(Error::Inval);
            }
            let was = t.state;
            t.sched = SchedContext::new(prio, quantum_ticks, aff);
            if let Some(h) = t.queued.take() {
                let old = t.cpu;
                k.cpus[old].rq.dequeue(h);
                k.t(th).cpu = cpu;
                k.make_ready(th);
            } else {
                k.t(th).cpu = cpu;
                if was == State::Inactive {
                    k.make_ready(th);
                }
            }
            // A running thread (not queued) lets its CPU decide anew: its
            // priority may have dropped, or it must move.
            if let Some(c) = k.t(th).running_on {
                k.cpus[c].need_resched = true;
                if c != arch::cpu_id() {
                    crate::irq::send_resched_ipi(c);
                }
            }
            ok(0)
        }
        SchedulerOp::IdleTime => {
            set_mrs(k, cur, &[0])?;
            ok(1)
        }
    }
}

// ---------------------------------------------------------------- Vcon

fn vcon_op(k: &mut Kernel, cur: ObjId, m: &[u64; MR_COUNT]) -> OpResult {
    let (op, _) = VconOp::decode(m[0]).map_err(|_| Error::NoSys)?;
    match op {
        VconOp::Write => {
            let n = (m[1] as usize).min(proto::vcon::WRITE_MAX);
            let bytes: &[u8] = bytemuck_words(&m[2..]);
            crate::console::write_bytes(&bytes[..n]);
            ok(0)
        }
        VconOp::Read => {
            let max = (m[1] as usize).min(proto::vcon::WRITE_MAX);
            let mut buf = [0u8; proto::vcon::WRITE_MAX];
            let (n, escape) = crate::console::read_bytes(&mut buf[..max]);
            if escape {
                crate::jdb::run(k);
            }
            let mut out = [0u64; MR_COUNT];
            out[0] = n as u64
                | if n < max {
                    proto::vcon::READ_STAT_DONE
                } else {
                    0
                };
            for (i, chunk) in buf[..n].chunks(8).enumerate() {
                let mut w = [0u8; 8];
                w[..chunk.len()].copy_from_slice(chunk);
                out[1 + i] = u64::from_le_bytes(w);
            }
            let words = 1 + n.div_ceil(8);
            set_mrs(k, cur, &out[..words])?;
            ok(words)
        }
        VconOp::SetAttr => ok(0),
        VconOp::GetAttr => {
            set_mrs(k, cur, &[0, 0, 0])?;
            ok(3)
        }
    }
}

/// The Vcon is also an interrupt controller with one line: input arrived.
fn vcon_icu_op(
    k: &mut Kernel,
    cur: ObjId,
    task: ObjId,
    rights: CapRights,
    tag: MsgTag,
    m: &[u64; MR_COUNT],
) -> OpResult {
    let (op, _) = IcuOp::decode(m[0]).map_err(|_| Error::NoSys)?;
    let line = crate::console::input_irq().ok_or(Error::NoSys)?;
    match op {
        IcuOp::Info => {
            set_mrs(k, cur, &[0, 1, 0])?;
            ok(3)
        }
        IcuOp::Bind if m[1] == 0 => {
            need(rights, CapRights::W)?;
            let (irq, r) = item_cap(k, task, tag, m, 0)?;
            need(r, CapRights::W)?;
            let Some(KObject::Irq(i)) = k.objs.get_mut(irq) else {
                return Err(Error::Inval);
            };
            i.hw = Some(line);
            i.masked = false;
            crate::irq::set_owner(line, Some(irq));
            crate::irq::take_console_line(line);
            ok(0)
        }
        IcuOp::Unmask if m[1] == 0 => {
            crate::irq::set_enabled(line, true);
            ok(0)
        }
        _ => Err(Error::Inval),
    }
}

/// The bytes of message words (little-endian).
fn bytemuck_words(w: &[u64]) -> &[u8] {
    // SAFETY: u64 has no padding and a stricter alignment than u8; the
    // slice covers exactly the words' bytes.
    unsafe { core::slice::from_raw_parts(w.as_ptr() as *const u8, w.len() * 8) }
}

// ---------------------------------------------------------------- Semaphore

fn sem_op(k: &mut Kernel, cur: ObjId, sem: ObjId, proto: Proto, m: &[u64; MR_COUNT]) -> OpResult {
    // Fiasco: "up" is an Irq trigger on the semaphore; "down" a call.
    if proto == Proto::Irq {
        IrqOp::decode(m[0])
            .ok()
            .filter(|(op, _)| *op == IrqOp::Trigger)
            .ok_or(Error::NoSys)?;
        let Some(KObject::Semaphore(s)) = k.objs.get_mut(sem) else {
            return Err(Error::Inval);
        };
        if let Some(w) = s.waiters.pop_front() {
            k.t(w).set_result(0, MsgTag::new(0, 0, 0, 0), 0);
            k.make_ready(w);
        } else {
            s.count += 1;
        }
        return ok(0);
    }
    let (SemaphoreOp::Down, _) = SemaphoreOp::decode(m[0]).map_err(|_| Error::NoSys)?;
    let Some(KObject::Semaphore(s)) = k.objs.get_mut(sem) else {
        return Err(Error::Inval);
    };
    if s.count > 0 {
        s.count -= 1;
        return ok(0);
    }
    let t = Timeout(m[1] as u16);
    match ipc::deadline(k, cur, t, Error::RecvTimeout) {
        Err(e) => Err(e),
        Ok(d) => {
            if let Some(KObject::Semaphore(s)) = k.objs.get_mut(sem) {
                s.waiters.push_back(cur);
            }
            k.make_blocked(cur, State::Sem { sem }, d);
            Ok(Done::Blocked)
        }
    }
}

// ---------------------------------------------------------------- Sigma0

/// The root task's memory protocol ([`l4_abi::sigma0`]).
fn sigma0_op(k: &mut Kernel, cur: ObjId, task: ObjId, m: &[u64; MR_COUNT]) -> OpResult {
    match m[0] {
        l4_abi::sigma0::MAP_FREE => {
            let order = u8::try_from(m[1]).map_err(|_| Error::Inval)?;
            if !(12..=30).contains(&order) {
                return Err(Error::Inval);
            }
            let pages = 1usize << (order - 12);
            // The kernel keeps its own frames (l4_abi::root::KERNEL_MEMORY).
            if mm::free_bytes() < (1 << order) + l4_abi::root::KERNEL_MEMORY {
                return Err(Error::NoMem);
            }
            let pa = mm::alloc_frames(pages).ok_or(Error::NoMem)?;
            if let Err(e) = xfer::map_root_memory(k, task, pa, pa, order, MemRights::RWX) {
                mm::free_frames(pa, pages);
                return Err(e);
            }
            set_mrs(k, cur, &[pa])?;
            ok(1)
        }
        l4_abi::sigma0::MAP_DEVICE => {
            let (pa, order) = (m[1], u8::try_from(m[2]).map_err(|_| Error::Inval)?);
            if !(12..=30).contains(&order)
                || pa % (1 << order) != 0
                || mm::is_ram(pa, 1 << order)
                || pa >= 1 << 40
            {
                return Err(Error::Inval);
            }
            crate::mm::map_device(pa, 1 << order);
            xfer::map_root_memory(k, task, pa, pa, order, MemRights::RW)?;
            set_mrs(k, cur, &[pa])?;
            ok(1)
        }
        l4_abi::sigma0::MAP_MODULE => {
            let (pa, size) = (m[1], m[2]);
            let end = pa.checked_add(size).ok_or(Error::Inval)?;
            let inside = super::bootinfo()
                .mem()
                .iter()
                .any(|r| r.kind == l4_bootinfo::MemKind::Module && r.base <= pa && end <= r.end());
            if size == 0 || !pa.is_multiple_of(PAGE) || !inside {
                return Err(Error::Inval);
            }
            for off in (0..size).step_by(PAGE as usize) {
                if k.task(task).and_then(|t| t.lookup(pa + off)).is_none() {
                    xfer::map_root_memory(k, task, pa + off, pa + off, 12, MemRights::RX)?;
                }
            }
            set_mrs(k, cur, &[pa])?;
            ok(1)
        }
        _ => Err(Error::NoSys),
    }
}

/// The root task: a task with the boot stage's segments, a stack, a UTCB
/// area, the base capabilities, and one thread ready at its entry.
pub fn create_root_task(k: &mut Kernel, info: &l4_bootinfo::BootInfo) -> Result<ObjId, Error> {
    use l4_abi::base_caps as bc;
    let asid = k.alloc_asid().ok_or(Error::NoMem)?;
    let mut t = Task::new(asid).ok_or(Error::NoMem)?;
    t.set_utcb_area(ROOT_UTCB_AREA, ROOT_UTCB_SIZE)?;
    let task = k
        .objs
        .insert(KObject::Task(Box::new(t)))
        .map_err(|_| Error::NoMem)?;
    for s in info.roottask.segments() {
        let rights = MemRights(
            MemRights::R.0
                | if s.flags & l4_bootinfo::SEG_W != 0 {
                    MemRights::W.0
                } else {
                    0
                }
                | if s.flags & l4_bootinfo::SEG_X != 0 {
                    MemRights::X.0
                } else {
                    0
                },
        );
        for off in (0..s.memsz).step_by(PAGE as usize) {
            xfer::map_root_memory(k, task, s.vaddr + off, s.paddr + off, 12, rights)?;
        }
    }
    for i in 1..=ROOT_STACK_SIZE / PAGE {
        let pa = mm::alloc_frame().ok_or(Error::NoMem)?;
        xfer::map_root_memory(k, task, ROOT_STACK_TOP - i * PAGE, pa, 12, MemRights::RW)?;
    }
    let bi = super::bootinfo_pa();
    let bi_size = (core::mem::size_of::<l4_bootinfo::BootInfo>() as u64).div_ceil(PAGE) * PAGE;
    for off in (0..bi_size).step_by(PAGE as usize) {
        let t = k.task_mut(task).ok_or(Error::Inval)?;
        t.map_page(l4_abi::root::BOOTINFO_VA + off, bi + off, MemRights::R)?;
    }
    let th = Thread::new(SchedContext::new(
        DEFAULT_PRIO + 1,
        DEFAULT_QUANTUM,
        CpuSet::single(0),
    ))
    .ok_or(Error::NoMem)?;
    let th = k
        .objs
        .insert(KObject::Thread(Box::new(th)))
        .map_err(|_| Error::NoMem)?;
    k.bind_thread(th, task, ROOT_UTCB_AREA)?;
    {
        let t = k.t(th);
        t.has_regs = true;
        let f = t.frame();
        f.elr = info.roottask.entry;
        f.sp_el0 = ROOT_STACK_TOP;
    }
    let fac = k
        .objs
        .insert(KObject::Factory(Factory {
            quota: l4_abi::root::ROOT_QUOTA.min(mm::free_bytes() / 2),
        }))
        .map_err(|_| Error::NoMem)?;
    let objs = [
        (bc::TASK, task),
        (bc::FACTORY, fac),
        (bc::THREAD, th),
        (
            bc::PAGER,
            k.objs.insert(KObject::Sigma0).map_err(|_| Error::NoMem)?,
        ),
        (
            bc::LOG,
            k.objs.insert(KObject::Vcon).map_err(|_| Error::NoMem)?,
        ),
        (
            bc::ICU,
            k.objs.insert(KObject::Icu).map_err(|_| Error::NoMem)?,
        ),
        (
            bc::SCHEDULER,
            k.objs
                .insert(KObject::Scheduler)
                .map_err(|_| Error::NoMem)?,
        ),
    ];
    for (idx, obj) in objs {
        xfer::insert_root_cap(k, task, idx, obj, CapRights::ALL)?;
    }
    k.make_ready(th);
    Ok(th)
}

use l4_abi::root::{
    STACK_SIZE as ROOT_STACK_SIZE, STACK_TOP as ROOT_STACK_TOP, UTCB_AREA as ROOT_UTCB_AREA,
    UTCB_AREA_SIZE as ROOT_UTCB_SIZE,
};

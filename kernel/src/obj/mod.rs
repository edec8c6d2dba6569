//! Kernel objects: what each kind holds and what invoking it does.
//!
//! Every kind has its own file, which owns its state and its operations
//! (`invoke`, with the rights checks `l4_abi::proto` documents). Messages
//! are read and replies written only through the layouts of
//! [`l4_abi::ops`] (the protocol enums, [`CapArg`], [`Reply`]). This file
//! holds the object table's element type, [`KObject`], and the dispatch
//! from an invocation to the file of the invoked object's kind. A new kind
//! of object is a new file, a variant here, a line in [`invoke`], and (if
//! factories make it) a line in [`factory`].

pub mod factory;
pub mod icu;
pub mod ipc_gate;
pub mod irq;
pub mod scheduler;
pub mod semaphore;
pub mod sigma0;
pub mod task;
pub mod thread;
pub mod vcon;
pub mod vcpu;
pub mod vm;

use crate::state::Kernel;
use alloc::boxed::Box;
use kernel_core::kobj::ObjId;
use l4_abi::ops::{CapArg, Reply};
use l4_abi::utcb::MR_COUNT;
use l4_abi::{CapRights, Error, MsgTag, Proto};

/// A kernel object.
///
/// Tasks and threads are boxed and the tag is a plain byte: slots stay
/// small, and a lookup checks the kind (and that the slot is used) with
/// one compare.
#[repr(u8)]
pub enum KObject {
    Task(Box<task::Task>),
    Thread(Box<thread::Thread>),
    Vm(Box<vm::Vm>),
    Gate(ipc_gate::Gate),
    Factory(factory::Factory),
    Irq(irq::Irq),
    Semaphore(semaphore::Semaphore),
    Scheduler(scheduler::Scheduler),
    Icu(icu::Icu),
    Vcon(vcon::Vcon),
    Sigma0(sigma0::Sigma0),
}

/// One invocation of a kernel object: the calling thread and its task,
/// the object and the rights of the capability used, the protocol, the
/// message tag and a copy of the caller's message registers.
#[derive(Clone, Copy)]
pub struct Call<'a> {
    pub cur: ObjId,
    pub task: ObjId,
    pub obj: ObjId,
    pub rights: CapRights,
    pub proto: Proto,
    pub tag: MsgTag,
    pub m: &'a [u64; MR_COUNT],
}

impl Call<'_> {
    /// Replies (label 0) with the words of `r` in the caller's message
    /// registers.
    pub fn reply(&self, k: &mut Kernel, r: impl Reply) -> OpResult {
        let mut out = [0u64; MR_COUNT];
        let n = r.encode(&mut out);
        set_mrs(k, self.cur, &out[..n])?;
        ok(n)
    }
}

/// Result of a kernel-object operation: reply label and words, or an
/// error (negative label), or "the caller blocked" (Semaphore down).
pub enum Done {
    Reply(i64, usize),
    Blocked,
}

pub type OpResult = Result<Done, Error>;

/// A reply with label 0 and `words` message words.
pub fn ok(words: usize) -> OpResult {
    Ok(Done::Reply(0, words))
}

/// Invokes object `obj` (reached through a capability with `rights`) for
/// thread `cur` of task `task` with the message `tag`.
pub fn invoke(
    k: &mut Kernel,
    cur: ObjId,
    task: ObjId,
    obj: ObjId,
    rights: CapRights,
    tag: MsgTag,
) -> OpResult {
    let m = mrs(k, cur)?;
    let proto = Proto::try_from(tag.label()).map_err(|_| Error::BadProto)?;
    let c = Call {
        cur,
        task,
        obj,
        rights,
        proto,
        tag,
        m: &m,
    };
    match (k.objs.get(obj).ok_or(Error::NoEnt)?, proto) {
        (KObject::Factory(_), Proto::Factory) => factory::invoke(k, &c),
        (KObject::Task(_) | KObject::Vm(_), Proto::Task) => task::invoke(k, &c),
        (KObject::Vm(_), Proto::Vm) => vm::invoke(k, &c),
        (KObject::Thread(_), Proto::Thread) => thread::invoke(k, &c),
        (KObject::Gate(_), Proto::Kobject) => ipc_gate::invoke(k, &c),
        (KObject::Irq(_), Proto::Kobject | Proto::Irq | Proto::IrqSender) => irq::invoke(k, &c),
        (KObject::Icu(_), Proto::Irq) => icu::invoke(k, &c),
        (KObject::Scheduler(_), Proto::Scheduler) => scheduler::invoke(k, &c),
        (KObject::Vcon(_), Proto::Log) => vcon::invoke(k, &c),
        (KObject::Vcon(_), Proto::Irq) => vcon::invoke_icu(k, &c),
        (KObject::Semaphore(_), Proto::Semaphore | Proto::Irq) => semaphore::invoke(k, &c),
        (KObject::Sigma0(_), Proto::Sigma0) => sigma0::invoke(k, &c),
        (KObject::Sigma0(_), Proto::Factory) => sigma0::create(k, &c),
        _ => Err(Error::BadProto),
    }
}

fn mrs(k: &mut Kernel, cur: ObjId) -> Result<[u64; MR_COUNT], Error> {
    Ok(k.known_thread(cur).utcb().ok_or(Error::Inval)?.mr)
}

pub fn set_mrs(k: &mut Kernel, cur: ObjId, words: &[u64]) -> Result<(), Error> {
    k.known_thread(cur).utcb_mut().ok_or(Error::Inval)?.mr[..words.len()].copy_from_slice(words);
    Ok(())
}

pub fn need(rights: CapRights, r: CapRights) -> Result<(), Error> {
    if rights.contains(r) {
        Ok(())
    } else {
        Err(Error::Perm)
    }
}

/// A capability argument of a kernel-object invocation: (object, rights
/// of the caller's capability reduced by the rights the item offers).
pub fn cap_arg(k: &mut Kernel, task: ObjId, a: CapArg) -> Result<(ObjId, CapRights), Error> {
    let (obj, rights) = k.lookup_cap(task, a.index, CapRights::NONE)?;
    Ok((obj, rights.intersection(a.restricts())))
}

/// The object of capability argument `a`, which must be of a kind `is`
/// accepts (else `Inval`), the caller's capability to it carrying `right`.
pub fn typed_cap_arg(
    k: &mut Kernel,
    task: ObjId,
    a: CapArg,
    right: CapRights,
    is: fn(&KObject) -> bool,
) -> Result<ObjId, Error> {
    let (obj, r) = cap_arg(k, task, a)?;
    need(r, right)?;
    match k.objs.get(obj) {
        Some(o) if is(o) => Ok(obj),
        _ => Err(Error::Inval),
    }
}

/// The thread named in a bind (gate, Irq): it must be a thread, and the
/// caller's capability to it must carry `S`.
pub fn bind_target(k: &mut Kernel, task: ObjId, a: CapArg) -> Result<ObjId, Error> {
    typed_cap_arg(k, task, a, CapRights::S, |o| {
        matches!(o, KObject::Thread(_))
    })
}

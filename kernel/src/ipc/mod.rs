//! IPC, the general path: rendezvous of senders and receivers, calls and
//! replies, timeouts, cancellation, and the messages the kernel sends for
//! faulting threads. [`fastpath`] is the short path for the common call
//! and reply; [`transfer`] performs typed items (map and grant).

pub mod fastpath;
pub mod transfer;

use crate::arch;
use crate::obj::KObject;
use crate::obj::ipc_gate::leave_gate;
use crate::obj::thread::{KernelMsg, State, kill_thread};
use crate::state::Kernel;
use kernel_core::arch::aarch64::esr::{Esr, ec};
use kernel_core::ipc_rules::RecvBuffers;
use kernel_core::kobj::ObjId;
use l4_abi::fault::{EXC_REGS_WORDS, ExcRegs, PageFault};
use l4_abi::utcb::MR_COUNT;
use l4_abi::{CapRights, Error, MsgTag, Proto, Timeout};

/// When the wait of thread `th` with timeout `t` ends: `Ok(None)` never,
/// `Ok(Some(counter value))`; a zero timeout (or an absolute one already
/// past) fails at once with `zero`. An absolute timeout's deadline is in
/// one of `th`'s buffer registers.
#[inline(always)]
pub fn deadline(k: &Kernel, th: ObjId, t: Timeout, zero: Error) -> Result<Option<u64>, Error> {
    // The common cases need no clock.
    if t.is_never() {
        return Ok(None);
    }
    if t.is_zero() {
        return Err(zero);
    }
    deadline_on_clock(k, th, t, zero)
}

#[inline(never)]
fn deadline_on_clock(k: &Kernel, th: ObjId, t: Timeout, zero: Error) -> Result<Option<u64>, Error> {
    use kernel_core::ipc_rules::Deadline;
    use l4_abi::timeout::{TimeoutKind, clock_count, clock_us};
    let utcb = match t.kind() {
        TimeoutKind::Absolute { .. } => k.thread(th).and_then(|x| x.utcb()),
        _ => None,
    };
    let freq = arch::counter_freq();
    let now_us = clock_us(arch::counter(), freq);
    let brs: &[u64] = utcb.as_ref().map_or(&[], |u| &u.br[..]);
    match Deadline::from_timeout(t, now_us, brs)? {
        Deadline::Now => Err(zero),
        Deadline::Never => Ok(None),
        Deadline::At(us) => Ok(Some(clock_count(us, freq))),
    }
}

/// Outcome of a send phase.
pub enum Sent {
    /// Delivered (for a call, the sender now waits for the reply).
    Done,
    /// The sender is blocked until a receiver takes the message.
    Blocked,
    /// Failed; the error is in the sender's result registers.
    Failed,
}

/// Sends from `cur` to thread `to`. `call`: the sender then waits for the
/// reply (receive phase implied).
pub fn send(
    k: &mut Kernel,
    cur: ObjId,
    target: Target,
    call: Option<Timeout>,
    s: bool,
    t: Timeout,
) -> Sent {
    let Target { to, via, label } = target;
    if to == cur {
        k.known_thread(cur).set_error(Error::Inval);
        return Sent::Failed;
    }
    if via.is_none() && call.is_none() && awaits_reply_from(k, to, cur) {
        return match reply_to(k, cur, to) {
            Ok(()) => {
                k.known_thread(cur).set_result(0, MsgTag(0), 0);
                Sent::Done
            }
            Err(e) => {
                k.known_thread(cur).set_error(e);
                Sent::Failed
            }
        };
    }
    let Some(target) = k.thread(to) else {
        k.known_thread(cur).set_error(Error::NoEnt);
        return Sent::Failed;
    };
    if target.is_waiting_for(cur) {
        match transfer(k, cur, to, s) {
            Ok(tag) => {
                k.known_thread(to).set_result(0, tag, label);
                finish_send(k, cur, to, call);
                k.make_ready(to);
                Sent::Done
            }
            Err(e) => {
                k.known_thread(cur).set_error(e);
                Sent::Failed
            }
        }
    } else {
        match deadline(k, cur, t, Error::SendTimeout) {
            Err(e) => {
                k.known_thread(cur).set_error(e);
                Sent::Failed
            }
            Ok(d) => {
                k.make_blocked(
                    cur,
                    State::Send {
                        to,
                        via,
                        label,
                        call,
                        s,
                    },
                    d,
                );
                k.known_thread(to).senders.push_back(cur);
                Sent::Blocked
            }
        }
    }
}

/// After a message from `from` reached `to`: a caller waits for the reply,
/// a plain sender is done.
fn finish_send(k: &mut Kernel, from: ObjId, to: ObjId, call: Option<Timeout>) {
    if let Some(rt) = call {
        match deadline(k, from, rt, Error::RecvTimeout) {
            Ok(d) => {
                k.known_thread(to).reply_to = Some(from);
                k.make_blocked(from, State::Reply { from: to }, d);
            }
            Err(e) => {
                k.known_thread(from).set_error(e);
                k.make_ready(from);
            }
        }
    } else if k.known_thread(from).kmsg.is_none() {
        k.known_thread(from).set_result(0, MsgTag(0), 0);
        if !matches!(k.known_thread(from).state, State::Ready) {
            k.make_ready(from);
        }
    }
}

/// The receive phase of `cur`: from anyone (`from` = None) or one thread.
pub fn receive(k: &mut Kernel, cur: ObjId, from: Option<ObjId>, t: Timeout) {
    let me = k.known_thread(cur);
    let irq = me
        .pending_irqs
        .iter()
        .position(|&(i, _)| from.is_none_or(|f| f == i));
    if let Some(pos) = irq {
        let (_, label) = me.pending_irqs.remove(pos).expect("pending irq");
        me.set_result(0, MsgTag::proto(Proto::Irq, 0, 0), label);
        return;
    }
    if from.is_some_and(|f| matches!(k.objs.get(f), Some(KObject::Irq(_)))) {
        return match deadline(k, cur, t, Error::RecvTimeout) {
            Err(e) => k.known_thread(cur).set_error(e),
            Ok(d) => k.make_blocked(cur, State::Recv { from }, d),
        };
    }
    let pos = k
        .known_thread(cur)
        .senders
        .iter()
        .position(|&s| from.is_none_or(|f| f == s));
    if let Some(pos) = pos {
        let sender = k
            .known_thread(cur)
            .senders
            .remove(pos)
            .expect("sender position");
        let State::Send { label, call, s, .. } = k.known_thread(sender).state else {
            // Not sending any more (canceled): drop it and look again.
            return receive(k, cur, from, t);
        };
        match transfer(k, sender, cur, s) {
            Ok(tag) => {
                k.known_thread(cur).set_result(0, tag, label);
                finish_send(k, sender, cur, call);
            }
            Err(e) => {
                k.known_thread(sender).set_error(e);
                k.make_ready(sender);
                // The receiver learns why (as a caller does of a reply).
                k.known_thread(cur).set_error(receive_side(e));
            }
        }
        return;
    }
    match deadline(k, cur, t, Error::RecvTimeout) {
        Err(e) => k.known_thread(cur).set_error(e),
        Ok(d) => k.make_blocked(cur, State::Recv { from }, d),
    }
}

/// Replies from `cur` to the caller it received from. `Err` if there is
/// none (any more).
pub fn reply(k: &mut Kernel, cur: ObjId) -> Result<(), Error> {
    let to = k.known_thread(cur).reply_to.take().ok_or(Error::NoEnt)?;
    reply_to(k, cur, to)
}

/// Whether `to` waits for the reply of `from`.
pub fn awaits_reply_from(k: &Kernel, to: ObjId, from: ObjId) -> bool {
    k.thread(to)
        .is_some_and(|t| t.state == State::Reply { from })
}

/// Answers `to`, which waits for the reply of `cur`. Besides the implicit
/// reply capability, a thread may answer a caller later by sending to its
/// thread capability (a deferred reply: the runtime uses it for futex
/// waits and sleeps of the threads it serves).
pub fn reply_to(k: &mut Kernel, cur: ObjId, to: ObjId) -> Result<(), Error> {
    if !awaits_reply_from(k, to, cur) {
        return Err(Error::NoEnt);
    }
    if k.known_thread(cur).reply_to == Some(to) {
        k.known_thread(cur).reply_to = None;
    }
    if let Some(msg) = k.known_thread(to).kmsg.take() {
        return reply_to_fault(k, cur, to, msg);
    }
    // The reply capability is used up either way: a reply that cannot be
    // delivered (its items do not fit what the caller accepts) ends the
    // caller's call with the receive-side error instead of leaving it
    // waiting for good.
    let r = transfer(k, cur, to, true);
    match r {
        Ok(tag) => k.known_thread(to).set_result(0, tag, 0),
        Err(e) => k.known_thread(to).set_error(receive_side(e)),
    }
    k.make_ready(to);
    r.map(|_| ())
}

/// The error the receiver sees when a transfer failed with `e` for the
/// sender.
fn receive_side(e: Error) -> Error {
    match e {
        Error::SendMsgCut => Error::RecvMsgCut,
        Error::SendMapFailed => Error::RecvMapFailed,
        Error::NoMem => Error::NoMem,
        _ => Error::RecvCanceled,
    }
}

/// Copies the message of `from` (its UTCB, or the kernel's message for it)
/// into the UTCB of `to`, performing the typed items. Returns the tag `to`
/// receives.
fn transfer(k: &mut Kernel, from: ObjId, to: ObjId, partner_s: bool) -> Result<MsgTag, Error> {
    if let Some(msg) = k.known_thread(from).kmsg {
        let n = msg.tag.words() as usize;
        let dst = k.known_thread(to).utcb_mut().ok_or(Error::Inval)?;
        dst.mr[..n].copy_from_slice(&msg.words[..n]);
        return Ok(msg.tag);
    }
    // Untyped words only (the common case): UTCB to UTCB, nothing else.
    let tag = MsgTag(k.known_thread(from).frame().x[1]);
    if tag.items() == 0 {
        let n = (tag.words() as usize).min(MR_COUNT);
        let src = k.known_thread(from).utcb().ok_or(Error::Inval)?.mr.as_ptr();
        let dst = k
            .known_thread(to)
            .utcb_mut()
            .ok_or(Error::Inval)?
            .mr
            .as_mut_ptr();
        if !core::ptr::eq(src, dst) {
            // SAFETY: two distinct UTCBs (each the only UTCB of its thread,
            // 1 KiB aligned, never overlapping), n <= MR_COUNT words each.
            unsafe { core::ptr::copy_nonoverlapping(src, dst, n) };
        }
        return Ok(MsgTag::new(tag.label(), n as u32, 0, 0));
    }
    let (tag, mrs) = outgoing(k, from)?;
    let bufs = RecvBuffers::from_brs(&k.known_thread(to).utcb().ok_or(Error::Inval)?.br);
    let (src, dst) = (
        k.known_thread(from).task.ok_or(Error::Inval)?,
        k.known_thread(to).task.ok_or(Error::Inval)?,
    );
    let d = transfer::message(k, tag, &mrs, src, dst, &bufs, partner_s)?;
    let n = (d.tag.words() + 2 * d.tag.items()) as usize;
    k.known_thread(to).utcb_mut().ok_or(Error::Inval)?.mr[..n].copy_from_slice(&d.mrs[..n]);
    Ok(d.tag)
}

/// The tag (from the thread's x1) and message registers of a sender.
fn outgoing(k: &mut Kernel, from: ObjId) -> Result<(MsgTag, [u64; MR_COUNT]), Error> {
    let t = k.known_thread(from);
    let tag = MsgTag(t.frame().x[1]);
    Ok((tag, t.utcb().ok_or(Error::Inval)?.mr))
}

/// The pager or exception handler answered a fault of `to`.
fn reply_to_fault(k: &mut Kernel, handler: ObjId, to: ObjId, msg: KernelMsg) -> Result<(), Error> {
    let (tag, mrs) = outgoing(k, handler)?;
    if msg.tag.label() == Proto::PageFault as i64 {
        // The faulting thread's receive window is its whole address space.
        let (src, dst) = (
            k.known_thread(handler).task.ok_or(Error::Inval)?,
            k.known_thread(to).task.ok_or(Error::Inval)?,
        );
        // Whatever the handler's reply did, the thread runs again: if the
        // page is still missing it faults again and its pager hears of it.
        let r = transfer::message(k, tag, &mrs, src, dst, &RecvBuffers::whole_space(), true);
        k.make_ready(to);
        return r.map(|_| ());
    } else if tag.words() as usize >= EXC_REGS_WORDS
        && let Some(regs) = ExcRegs::from_words(&mrs[..EXC_REGS_WORDS])
    {
        arch::set_user_regs(k.known_thread(to).frame_mut(), &regs);
    }
    k.make_ready(to);
    Ok(())
}

/// A synchronous exception of `cur` that is not a native call: a page fault
/// goes to its pager, anything else (including a Linux system call) to its
/// exception handler, as a call on its behalf. Without a handler the thread
/// is stopped with a report.
pub fn raise_fault(k: &mut Kernel, cur: ObjId, esr: Esr, far: u64) {
    let frame = *k.known_thread(cur).frame();
    let translation_or_permission = matches!(esr.iss() & 0x3c, 0x04 | 0x08 | 0x0c);
    let is_pf = matches!(esr.ec(), ec::DABT_LOWER | ec::IABT_LOWER) && translation_or_permission;
    let (handler_cap, msg) = if is_pf {
        let pf = PageFault {
            addr: far,
            write: esr.is_write(),
            exec: esr.ec() == ec::IABT_LOWER,
            pc: frame.elr,
        };
        let mut words = [0u64; 40];
        words[..2].copy_from_slice(&pf.to_words());
        (
            k.known_thread(cur).pager,
            KernelMsg {
                tag: MsgTag::proto(Proto::PageFault, 2, 0),
                words,
            },
        )
    } else {
        let regs = arch::exc_regs(&frame, esr.0, far, k.known_thread(cur).utcb_uva);
        let mut words = [0u64; 40];
        words[..EXC_REGS_WORDS].copy_from_slice(&regs.to_words());
        (
            k.known_thread(cur).exc_handler,
            KernelMsg {
                tag: MsgTag::proto(Proto::Exception, EXC_REGS_WORDS as u32, 0),
                words,
            },
        )
    };
    let Some(task) = k.known_thread(cur).task else {
        return kill_thread(k, cur, format_args!("fault without a task"));
    };
    let target = match k.lookup_cap(task, handler_cap, l4_abi::CapRights::NONE) {
        Ok((obj, rights)) => ipc_target(k, obj, rights),
        Err(_) => None,
    };
    let Some(target) = target else {
        let what = if is_pf {
            "page fault without a pager"
        } else {
            "exception without an exception handler"
        };
        crate::kprintln!(
            "kernel: {} at pc {:#x}, address {:#x}",
            what,
            frame.elr,
            far
        );
        arch::trap_dump(&frame, esr, far);
        return kill_thread(k, cur, format_args!("{}", what));
    };
    k.known_thread(cur).kmsg = Some(msg);
    match send(k, cur, target, Some(Timeout::NEVER), true, Timeout::NEVER) {
        Sent::Done | Sent::Blocked => {}
        Sent::Failed => kill_thread(k, cur, format_args!("its fault handler is gone")),
    }
}

/// The thread and label an IPC through object `obj`, with a capability
/// holding `rights`, goes to. Through a gate, the label carries the
/// capability's W and S rights in its low bits.
pub fn ipc_target(k: &Kernel, obj: ObjId, rights: CapRights) -> Option<Target> {
    match k.objs.get(obj)? {
        KObject::Thread(_) => Some(Target {
            to: obj,
            via: None,
            label: 0,
        }),
        KObject::Gate(g) => Some(Target {
            to: g.thread?,
            via: Some(obj),
            label: g.label | rights.label_bits(),
        }),
        _ => None,
    }
}

/// Where an IPC goes: a thread, the gate it came through, the label the
/// receiver sees.
#[derive(Clone, Copy)]
pub struct Target {
    pub to: ObjId,
    pub via: Option<ObjId>,
    pub label: u64,
}

/// Aborts the IPC or semaphore wait of `id` (ex_regs with cancel): it
/// returns with a canceled error.
pub fn cancel(k: &mut Kernel, id: ObjId) {
    let state = k.known_thread(id).state;
    match state {
        State::Send { to, .. } => {
            if let Some(t) = k.thread_mut(to) {
                t.senders.retain(|&s| s != id);
            }
            leave_gate(k, to, id);
            k.known_thread(id).set_error(Error::SendCanceled);
        }
        State::Sem { sem } => {
            if let Some(KObject::Semaphore(s)) = k.objs.get_mut(sem) {
                s.waiters.retain(|&w| w != id);
            }
            k.known_thread(id).set_error(Error::RecvCanceled);
        }
        State::Recv { .. } | State::Reply { .. } => {
            k.known_thread(id).set_error(Error::RecvCanceled)
        }
        _ => return,
    }
    k.known_thread(id).kmsg = None;
    k.make_ready(id);
}

/// A wait of `id` timed out.
pub fn timeout_expired(k: &mut Kernel, id: ObjId) {
    let state = k.known_thread(id).state;
    let err = match state {
        State::Send { to, .. } => {
            if let Some(t) = k.thread_mut(to) {
                t.senders.retain(|&s| s != id);
            }
            leave_gate(k, to, id);
            Error::SendTimeout
        }
        State::Recv { .. } => Error::RecvTimeout,
        State::Reply { from } => {
            if let Some(t) = k.thread_mut(from)
                && t.reply_to == Some(id)
            {
                t.reply_to = None;
            }
            Error::RecvTimeout
        }
        State::Sem { sem } => {
            if let Some(KObject::Semaphore(s)) = k.objs.get_mut(sem) {
                s.waiters.retain(|&w| w != id);
            }
            Error::RecvTimeout
        }
        _ => return,
    };
    k.known_thread(id).set_error(err);
    k.make_ready(id);
}

/// Object `obj` is being deleted: threads waiting on it (sending through
/// a gate, sending to or waiting for a thread, on a semaphore) get an error.
pub fn abort_waiters_on(k: &mut Kernel, obj: ObjId) {
    let ids: alloc::vec::Vec<ObjId> = k
        .objs
        .iter()
        .filter_map(|(id, o)| matches!(o, KObject::Thread(_)).then_some(id))
        .collect();
    for id in ids {
        if id == obj {
            continue;
        }
        let state = k.known_thread(id).state;
        let hit = match state {
            State::Send { to, via, .. } => via == Some(obj) || to == obj,
            State::Recv { from: Some(f) } => f == obj,
            State::Reply { from } => from == obj,
            State::Sem { sem } => sem == obj,
            _ => false,
        };
        if hit {
            if let State::Send { to, .. } = state
                && let Some(t) = k.thread_mut(to)
            {
                t.senders.retain(|&s| s != id);
            }
            if k.known_thread(id).kmsg.take().is_some() {
                kill_thread(k, id, format_args!("its fault handler was deleted"));
                continue;
            }
            let e = if matches!(state, State::Send { .. }) {
                Error::SendCanceled
            } else {
                Error::RecvCanceled
            };
            k.known_thread(id).set_error(e);
            k.make_ready(id);
        }
    }
}

//! The IPC fast path: a call to a thread that already waits for it, and a
//! reply-and-wait to a caller that waits for the reply, both with message
//! words only, on one CPU. It does exactly what the general path
//! ([`crate::syscall`] with [`crate::ipc`]) would do, without its
//! generality: the message goes UTCB to UTCB, no run queue changes (the
//! running thread is never queued, and the sender blocks), and the CPU
//! returns straight to the receiver's user registers instead of switching
//! kernel stacks.
//!
//! That last step relies on a property of the whole kernel: a thread that
//! is not running has no kernel state on its stack worth keeping. Every
//! entry runs to completion, and what follows a switch back to a blocked
//! thread is only "release the lock and return to user mode". So the
//! sender's kernel context is reset to that continuation (the one a new
//! thread starts with), and the receiver's old one is simply dropped.
//!
//! Anything unusual (typed items, timeouts other than "never", another
//! CPU, a lower priority, pending interrupts or senders, a kernel message,
//! a reschedule already asked for) takes the general path, which remains
//! the reference for the semantics.

use crate::arch::{self, TrapFrame};
use crate::fp;
use crate::obj::KObject;
use crate::obj::thread::{State, Thread};
use crate::state::Kernel;
use kernel_core::kobj::ObjId;
use l4_abi::utcb::MR_COUNT;
use l4_abi::{CapRights, MsgTag, Proto, Timeouts, sys};

/// The two IPC operations the fast path knows.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    /// Send to a waiting receiver, then wait for its reply.
    Call,
    /// Answer the caller waiting for us, then wait for anyone.
    ReplyAndWait,
}

/// Tries the fast path for the native IPC call (`x8` selects IPC) of the
/// current thread with registers `x0..x2`. `Some(frame)`: done, the CPU
/// now runs the receiver, whose user registers are `frame`; the caller
/// keeps the big kernel lock until it stands on that thread's kernel
/// stack. `None`: nothing was changed; take the general path.
#[inline(always)]
pub fn ipc(k: &mut Kernel, x0: u64, x1: u64, x2: u64) -> Option<*mut TrapFrame> {
    let tag = MsgTag(x1);
    if tag.items() != 0 || !Timeouts::from_reg(x2).recv().is_never() || x0 & sys::RESERVED_MASK != 0
    {
        return None;
    }
    let cpu = arch::cpu_id();
    let Kernel { objs, cpus, .. } = k;
    let c = &mut cpus[cpu];
    if c.need_resched || !c.fast_path {
        return None;
    }
    let cur = c.current?;
    let (op, to, label) = match x0 & sys::FLAGS_MASK {
        // The Thread protocol (a kernel operation on a thread; a VMM's
        // vcpu_resume on every guest exit has its own fast path,
        // `obj::vcpu::fast_resume`) is not IPC: known before any lookup.
        sys::CALL if x0 & sys::INVALID_CAP_BIT == 0 && tag.label() != Proto::Thread as i64 => {
            let Some(KObject::Thread(me)) = objs.get(cur) else {
                return None;
            };
            let Some(KObject::Task(task)) = objs.get(me.task?) else {
                return None;
            };
            let cap = task.caps.lookup(x0 >> sys::CAP_SHIFT, CapRights::R).ok()?;
            match objs.get(cap.obj)? {
                // A gate's own protocol goes to the kernel; a partner on
                // another CPU is for the general path (known here without a
                // lookup).
                KObject::Thread(t) if t.cpu == cpu => (Op::Call, cap.obj, 0),
                KObject::Gate(g)
                    if !(tag.label() == Proto::Kobject as i64
                        && cap.rights.contains(CapRights::C)) =>
                {
                    (Op::Call, g.thread?, g.label | cap.rights.label_bits())
                }
                _ => return None,
            }
        }
        sys::REPLY_AND_WAIT => match objs.get(cur) {
            Some(KObject::Thread(me)) => (Op::ReplyAndWait, me.reply_to?, 0),
            _ => return None,
        },
        _ => return None,
    };
    let (KObject::Thread(me), KObject::Thread(dest)) = objs.get2_mut(cur, to)? else {
        return None;
    };
    let (me, dest): (&mut Thread, &mut Thread) = (me, dest);
    if !can_hand_over(op, cur, me, dest, cpu) {
        return None;
    }
    if me.utcb_kva == 0 || dest.utcb_kva == 0 {
        return None;
    }
    let space = dest.space?;

    // Committed: nothing below fails.
    let n = (tag.words() as usize).min(MR_COUNT);
    dest.set_result(0, MsgTag::new(tag.label(), n as u32, 0, 0), label);
    if op == Op::Call {
        dest.reply_to = Some(cur);
        me.state = State::Reply { from: to };
    } else {
        me.reply_to = None;
        me.state = State::Recv { from: None };
    }
    me.deadline = None;
    dest.deadline = None;
    dest.state = State::Ready;

    // The switch: what `schedule` and `switch_context` would do.
    let now = arch::counter();
    me.stop_running(now);
    me.reset_kernel_context();
    dest.start_running(cpu, now);
    let frame: *mut TrapFrame = dest.frame_mut();

    // Neither thread is queued: the running one never is, and the sender
    // now blocks. Nothing queued beats the receiver: nothing beat the
    // sender (no reschedule pending), and the receiver's priority is at
    // least the sender's.
    c.current = Some(to);
    fp::enter(c);
    c.switch_space(space);
    // Last, as they may call out (few values live across): the sender's
    // FP/SIMD registers, if it used them, and the message.
    fp::leave(me, cpu);
    if n > 0
        && let (Some(src), Some(dst)) = (me.utcb(), dest.utcb_mut())
    {
        dst.mr[..n].copy_from_slice(&src.mr[..n]);
    }
    Some(frame)
}

/// Whether `me` (thread `cur`, running here) can hand the CPU straight to
/// `dest` for `op`.
#[inline(always)]
fn can_hand_over(op: Op, cur: ObjId, me: &Thread, dest: &Thread, cpu: usize) -> bool {
    let waits = match op {
        Op::Call => dest.is_waiting_for(cur),
        // The general path delivers a waiting sender or interrupt at once.
        Op::ReplyAndWait => {
            matches!(dest.state, State::Reply { from } if from == cur)
                && me.senders.is_empty()
                && me.pending_irqs.is_empty()
        }
    };
    // A blocked thread is neither queued nor running, and has no pending
    // ex_regs (those wait for a running thread's next entry, which would
    // have applied them before it blocked); a thread in a system call has
    // no kernel message of its own.
    debug_assert!(!waits || (dest.running_on.is_none() && dest.queued.is_none()));
    debug_assert!(dest.pending.is_none() && me.kmsg.is_none() && me.queued.is_none());
    waits
        && dest.cpu == cpu
        && dest.kmsg.is_none()
        && matches!(me.state, State::Ready)
        && me.pending.is_none()
        && dest.sched.prio >= me.sched.prio
}

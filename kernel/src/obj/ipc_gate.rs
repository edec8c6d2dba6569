//! Ipc_gate: an IPC endpoint with a label, bound to the thread that
//! serves it. Senders through a gate nobody is bound to yet wait for the
//! binding.

use super::{Call, KObject, OpResult, bind_target, need, ok};
use crate::ipc;
use crate::obj::thread::State;
use crate::state::Kernel;
use alloc::collections::VecDeque;
use kernel_core::kobj::ObjId;
use l4_abi::ops::{GateInfo, KobjectMsg};
use l4_abi::{CapRights, Error, Timeout};

pub struct Gate {
    pub thread: Option<ObjId>,
    pub label: u64,
    /// Senders waiting for a thread to bind the gate (a server may bind
    /// after its clients started calling).
    pub waiters: VecDeque<ObjId>,
}

impl Gate {
    /// A new gate with `label`, bound to `thread` if given.
    pub fn new(label: u64, thread: Option<ObjId>) -> Gate {
        Gate {
            thread,
            label,
            waiters: VecDeque::new(),
        }
    }
}

pub fn invoke(k: &mut Kernel, c: &Call<'_>) -> OpResult {
    let (task, gate) = (c.task, c.obj);
    let msg = KobjectMsg::decode(c.tag, c.m)?;
    need(c.rights, CapRights::C)?;
    match msg {
        KobjectMsg::Bind(b) => {
            let t = bind_target(k, task, b.thread)?;
            if let Some(KObject::Gate(g)) = k.objs.get_mut(gate) {
                g.thread = Some(t);
                g.label = b.label;
            }
            gate_bound(k, gate);
            ok(0)
        }
        KobjectMsg::GetInfo(_) => {
            let label = match k.objs.get(gate) {
                Some(KObject::Gate(g)) => g.label,
                _ => return Err(Error::Inval),
            };
            c.reply(k, GateInfo { label })
        }
    }
}

/// `cur` sends through `gate`, which no thread is bound to yet: it waits
/// (with its send timeout) until one is.
pub fn wait_for_binding(
    k: &mut Kernel,
    cur: ObjId,
    gate: ObjId,
    rights: CapRights,
    call: Option<Timeout>,
    t: Timeout,
) {
    let s = rights.contains(CapRights::S);
    match ipc::deadline(k, cur, t, Error::SendTimeout) {
        Err(e) => k.known_thread(cur).set_error(e),
        Ok(d) => {
            // The label is the gate's once it is bound; the rights bits
            // are the sender's.
            let label = match k.objs.get_mut(gate) {
                Some(KObject::Gate(g)) => {
                    g.waiters.push_back(cur);
                    rights.label_bits()
                }
                _ => return k.known_thread(cur).set_error(Error::NoPartner),
            };
            k.make_blocked(
                cur,
                State::Send {
                    to: gate,
                    via: Some(gate),
                    label,
                    call,
                    s,
                },
                d,
            );
        }
    }
}

/// A thread was bound to `gate`: its waiting senders now queue at that
/// thread (and reach it at once if it waits for anyone).
pub fn gate_bound(k: &mut Kernel, gate: ObjId) {
    let Some(KObject::Gate(g)) = k.objs.get_mut(gate) else {
        return;
    };
    let (Some(to), label) = (g.thread, g.label) else {
        return;
    };
    let waiters = core::mem::take(&mut g.waiters);
    for w in waiters {
        let Some(t) = k.thread_mut(w) else { continue };
        if let State::Send {
            call,
            s,
            label: bits,
            ..
        } = t.state
        {
            t.state = State::Send {
                to,
                via: Some(gate),
                label: label | (bits & CapRights::LABEL_BITS),
                call,
                s,
            };
            k.known_thread(to).senders.push_back(w);
        }
    }
    // Every waiter queued above is sending, so a waiting server gets one now.
    if k.known_thread(to).state == (State::Recv { from: None })
        && !k.known_thread(to).senders.is_empty()
    {
        ipc::receive(k, to, None, Timeout::NEVER);
        k.make_ready(to);
    }
}

/// Forgets a sender waiting at an unbound gate.
pub fn leave_gate(k: &mut Kernel, gate: ObjId, id: ObjId) {
    if let Some(KObject::Gate(g)) = k.objs.get_mut(gate) {
        g.waiters.retain(|&w| w != id);
    }
}

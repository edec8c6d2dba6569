//! Semaphore: a counter threads wait on ("down") and that an Irq-style
//! trigger raises ("up").

use super::{Call, KObject, OpResult, ok};
use crate::ipc;
use crate::obj::thread::State;
use crate::state::Kernel;
use alloc::collections::VecDeque;
use kernel_core::kobj::ObjId;
use l4_abi::ops::{IrqMsg, SemaphoreMsg};
use l4_abi::{Error, MsgTag, Proto};

pub struct Semaphore {
    pub count: u64,
    pub waiters: VecDeque<ObjId>,
}

impl Semaphore {
    /// A new semaphore at zero.
    pub fn new() -> Semaphore {
        Semaphore {
            count: 0,
            waiters: VecDeque::new(),
        }
    }
}

pub fn invoke(k: &mut Kernel, c: &Call<'_>) -> OpResult {
    let (cur, sem) = (c.cur, c.obj);
    // Fiasco: "up" is an Irq trigger on the semaphore; "down" a call.
    if c.proto == Proto::Irq {
        let IrqMsg::Trigger(_) = IrqMsg::decode(c.tag, c.m)? else {
            return Err(Error::NoSys);
        };
        let Some(KObject::Semaphore(s)) = k.objs.get_mut(sem) else {
            return Err(Error::Inval);
        };
        if let Some(w) = s.waiters.pop_front() {
            k.known_thread(w).set_result(0, MsgTag::new(0, 0, 0, 0), 0);
            k.make_ready(w);
        } else {
            s.count += 1;
        }
        return ok(0);
    }
    let SemaphoreMsg::Down(down) = SemaphoreMsg::decode(c.tag, c.m)?;
    let Some(KObject::Semaphore(s)) = k.objs.get_mut(sem) else {
        return Err(Error::Inval);
    };
    if s.count > 0 {
        s.count -= 1;
        return ok(0);
    }
    match ipc::deadline(k, cur, down.timeout, Error::RecvTimeout) {
        Err(e) => Err(e),
        Ok(d) => {
            if let Some(KObject::Semaphore(s)) = k.objs.get_mut(sem) {
                s.waiters.push_back(cur);
            }
            k.make_blocked(cur, State::Sem { sem }, d);
            Ok(super::Done::Blocked)
        }
    }
}

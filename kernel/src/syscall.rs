//! The system call (general path): decodes the invocation in `x0..x2`,
//! then either does IPC with a thread or through an Ipc_gate
//! ([`crate::ipc`]), or invokes a kernel object ([`crate::obj::invoke`],
//! which hands it to the object's own file). Also the temporary debug
//! calls (`x8 != 0`).

use crate::arch;
use crate::ipc::{self, Sent};
use crate::obj::thread::State;
use crate::obj::{self, Done, KObject};
use crate::state::Kernel;
use kernel_core::ipc_rules::{Operation, decode};
use kernel_core::kobj::ObjId;
use l4_abi::ops::DebugCall;
use l4_abi::{CapRights, Error, MsgTag, Proto, Timeout};

/// The native system call of thread `cur` (the current one) with the
/// registers `f`; its results go to `cur`'s registers.
pub fn syscall(k: &mut Kernel, cur: ObjId, f: arch::CallRegs) {
    if f.x8 != l4_abi::sys::X8_IPC {
        return debug_call(k, cur, f);
    }
    let inv = match decode(f.x0, f.x1, f.x2) {
        Ok(i) => i,
        Err(e) => return k.known_thread(cur).set_error(e),
    };
    let op = inv.op;
    if op.replies() {
        let r = ipc::reply(k, cur);
        if !op.receives() {
            return match r {
                Ok(()) => k.known_thread(cur).set_result(0, MsgTag(0), 0),
                Err(e) => k.known_thread(cur).set_error(e),
            };
        }
        return ipc::receive(k, cur, None, inv.timeouts.recv());
    }
    let Some(task) = k.known_thread(cur).task else {
        return k.known_thread(cur).set_error(Error::Inval);
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
                Ok(_) => return k.known_thread(cur).set_error(Error::Inval),
                Err(e) => return k.known_thread(cur).set_error(e),
            },
        };
        return ipc::receive(k, cur, from, inv.timeouts.recv());
    }
    let index = inv.cap.index().unwrap_or(0);
    let (obj, rights) = match k.lookup_cap(task, index, CapRights::R) {
        Ok(x) => x,
        Err(e) => return k.known_thread(cur).set_error(e),
    };
    let label = inv.tag.label();
    // A VMM's resume of its own vCPU, on every guest exit it handles:
    // straight there, without the general decoding.
    if obj == cur
        && op == Operation::Call
        && label == Proto::Thread as i64
        && obj::vcpu::resume_call(k, cur, inv.tag)
    {
        return;
    }
    // Threads and gates are IPC endpoints; their own protocol (Thread, and
    // Kobject through a gate capability with the C right) reaches the kernel.
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
        obj::ipc_gate::wait_for_binding(k, cur, obj, rights, call, inv.timeouts.send());
        return;
    }
    let tag = inv.tag;
    let r = obj::invoke(k, cur, task, obj, rights, tag);
    let (label, words) = match r {
        Ok(Done::Blocked) => return,
        Ok(Done::Reply(l, w)) => (l, w),
        Err(e) => (e.as_ret(), 0),
    };
    if op.receives() {
        k.known_thread(cur)
            .set_result(0, MsgTag::new(label, words as u32, 0, 0), 0);
    } else {
        k.known_thread(cur).set_result(0, MsgTag(0), 0);
    }
    if op == Operation::SendAndWait {
        ipc::receive(k, cur, None, inv.timeouts.recv());
    }
}

/// Receive from nobody: wait for the timeout (a sleep).
fn sleep(k: &mut Kernel, cur: ObjId, t: Timeout) {
    match ipc::deadline(k, cur, t, Error::RecvTimeout) {
        Err(e) => k.known_thread(cur).set_error(e),
        Ok(d) => k.make_blocked(cur, State::Recv { from: Some(cur) }, d),
    }
}

/// The temporary debug calls (x8 != 0).
fn debug_call(k: &mut Kernel, cur: ObjId, f: arch::CallRegs) {
    let ret = match DebugCall::from_regs(f.x8, f.x0, f.x1) {
        Ok(DebugCall::Puts { addr, len }) => {
            let mut buf = [0u8; 512];
            let len = (len as usize).min(buf.len());
            let task = k.known_thread(cur).task.and_then(|t| k.task(t));
            match task.and_then(|t| t.read_user(addr, &mut buf[..len])) {
                Some(()) => {
                    crate::platform::console::write_bytes(&buf[..len]);
                    len as u64
                }
                None => Error::Fault.as_status(),
            }
        }
        Ok(DebugCall::Exit { code }) => {
            crate::kprintln!("kernel: task exited with code {}", code);
            k.make_blocked(cur, State::Dead, None);
            return;
        }
        Err(_) => Error::NoSys.as_status(),
    };
    k.known_thread(cur).frame_mut().x[0] = ret;
}

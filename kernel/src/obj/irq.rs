//! Irq: an interrupt object. Bound to a thread (with a label), it sends
//! that thread a message when it fires: from hardware (through the Icu)
//! or triggered by software.

use super::{Call, KObject, OpResult, bind_target, need, ok, typed_cap_arg};
use crate::obj::thread::State;
use crate::state::Kernel;
use kernel_core::kobj::ObjId;
use l4_abi::ops::{CapArg, IrqMsg, IrqSenderMsg, KobjectMsg};
use l4_abi::{CapRights, Error, MsgTag, Proto};

pub struct Irq {
    pub thread: Option<ObjId>,
    pub label: u64,
    /// Hardware interrupt number, if bound to one through the Icu.
    pub hw: Option<u32>,
    pub masked: bool,
    /// Bound to the vCPU of `thread`: triggering injects this interrupt
    /// (INTID, priority) into its guest ([`super::vcpu::inject`]).
    pub vcpu: Option<(u32, u8)>,
}

impl Irq {
    /// A new interrupt object, unbound and masked.
    pub fn new() -> Irq {
        Irq {
            thread: None,
            label: 0,
            hw: None,
            masked: true,
            vcpu: None,
        }
    }
}

pub fn invoke(k: &mut Kernel, c: &Call<'_>) -> OpResult {
    let (task, irq, rights, tag, m) = (c.task, c.obj, c.rights, c.tag, c.m);
    // Bind (and the legacy attach): label and thread.
    let (label, thread) = match c.proto {
        Proto::Kobject => match KobjectMsg::decode(tag, m)? {
            KobjectMsg::Bind(b) => (b.label, b.thread),
            KobjectMsg::GetInfo(_) => return Err(Error::NoSys),
        },
        Proto::IrqSender => match IrqSenderMsg::decode(tag, m)? {
            IrqSenderMsg::Attach(a) => (a.label, a.thread),
            IrqSenderMsg::BindVcpu(b) => {
                need(rights, CapRights::W)?;
                let t = bind_target(k, task, b.thread)?;
                if k.known_thread(t).vcpu.is_none() {
                    return Err(Error::Inval);
                }
                if let Some(KObject::Irq(i)) = k.objs.get_mut(irq) {
                    i.thread = Some(t);
                    i.vcpu = Some((b.irq.intid, b.irq.priority));
                }
                return ok(0);
            }
            IrqSenderMsg::Detach(_) => {
                need(rights, CapRights::W)?;
                if let Some(KObject::Irq(i)) = k.objs.get_mut(irq) {
                    i.thread = None;
                    i.vcpu = None;
                }
                return ok(0);
            }
        },
        _ => {
            return match IrqMsg::decode(tag, m)? {
                IrqMsg::Trigger(_) => {
                    trigger(k, irq);
                    ok(0)
                }
                IrqMsg::Unmask(_) => {
                    let hw = match k.objs.get_mut(irq) {
                        Some(KObject::Irq(i)) => {
                            i.masked = false;
                            i.hw
                        }
                        _ => None,
                    };
                    if let Some(n) = hw {
                        crate::platform::gic::set_enabled(n, true);
                    }
                    ok(0)
                }
            };
        }
    };
    need(rights, CapRights::W)?;
    let t = bind_target(k, task, thread)?;
    if let Some(KObject::Irq(i)) = k.objs.get_mut(irq) {
        i.thread = Some(t);
        i.label = label;
        i.vcpu = None;
    }
    ok(0)
}

/// Interrupt object `irq` fired: deliver to its thread or keep it pending.
pub fn trigger(k: &mut Kernel, irq: ObjId) {
    let Some(KObject::Irq(i)) = k.objs.get(irq) else {
        return;
    };
    let (Some(t), label) = (i.thread, i.label) else {
        return;
    };
    if let Some((intid, prio)) = i.vcpu {
        return super::vcpu::inject(k, t, intid, prio, i.hw);
    }
    let Some(th) = k.thread_mut(t) else { return };
    if th.state == (State::Recv { from: None }) || th.state == (State::Recv { from: Some(irq) }) {
        th.set_result(0, MsgTag::proto(Proto::Irq, 0, 0), label);
        k.make_ready(t);
    } else if !th.pending_irqs.iter().any(|&(i, _)| i == irq) {
        th.pending_irqs.push_back((irq, label));
        // A vCPU thread running its guest comes out for it.
        super::vcpu::kick(k, t);
    }
}

/// The Irq object the capability argument of an Icu bind names (the
/// caller needs `W` on that capability); `Inval` if it names something
/// else.
pub fn irq_arg(k: &mut Kernel, task: ObjId, a: CapArg) -> Result<ObjId, Error> {
    typed_cap_arg(k, task, a, CapRights::W, |o| matches!(o, KObject::Irq(_)))
}

/// Connects Irq object `irq` to hardware interrupt `line`, masked or not,
/// unless another live Irq has the line: then `Busy` (one reader per
/// line; a line whose Irq was deleted is free again).
pub fn attach_hw(k: &mut Kernel, irq: ObjId, line: u32, masked: bool) -> Result<(), Error> {
    let taken = crate::platform::gic::owner(line).is_some_and(|o| o != irq && k.objs.contains(o));
    if taken {
        return Err(Error::Busy);
    }
    if let Some(KObject::Irq(i)) = k.objs.get_mut(irq) {
        i.hw = Some(line);
        i.masked = masked;
    }
    crate::platform::gic::set_owner(line, Some(irq));
    Ok(())
}

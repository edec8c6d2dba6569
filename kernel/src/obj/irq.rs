//! Irq: an interrupt object. Bound to a thread (with a label), it sends
//! that thread a message when it fires: from hardware (through the Icu)
//! or triggered by software.

use super::{Call, KObject, OpResult, bind_target, item_cap, need, ok};
use crate::obj::thread::State;
use crate::state::Kernel;
use kernel_core::kobj::ObjId;
use l4_abi::ops::{IrqBindVcpu, Op};
use l4_abi::proto::{IrqOp, IrqSenderOp, KobjectOp};
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
    let (task, irq, rights, proto, tag, m) = (c.task, c.obj, c.rights, c.proto, c.tag, c.m);
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
        Proto::IrqSender => {
            let (op, _) = IrqSenderOp::decode(m[0]).map_err(|_| Error::NoSys)?;
            need(rights, CapRights::W)?;
            match op {
                IrqSenderOp::Attach => {
                    let mut m = *m;
                    m[0] = KobjectOp::Bind.code();
                    invoke(
                        k,
                        &Call {
                            proto: Proto::Kobject,
                            m: &m,
                            ..*c
                        },
                    )
                }
                IrqSenderOp::BindVcpu => {
                    let op = IrqBindVcpu::decode(tag, m)?;
                    let t = bind_target(k, task, tag, m)?;
                    if k.known_thread(t).vcpu.is_none() {
                        return Err(Error::Inval);
                    }
                    if let Some(KObject::Irq(i)) = k.objs.get_mut(irq) {
                        i.thread = Some(t);
                        i.vcpu = Some((op.irq.intid, op.irq.priority));
                    }
                    ok(0)
                }
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
                    trigger(k, irq);
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
                        crate::platform::gic::set_enabled(n, true);
                    }
                    ok(0)
                }
            }
        }
    }
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
        return super::vcpu::inject(k, t, intid, prio);
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

/// The Irq object the first typed item of an Icu bind names (the caller
/// needs `W` on that capability); `Inval` if it names something else.
pub fn from_bind_item(k: &mut Kernel, c: &Call<'_>) -> Result<ObjId, Error> {
    let (irq, r) = item_cap(k, c.task, c.tag, c.m, 0)?;
    need(r, CapRights::W)?;
    match k.objs.get(irq) {
        Some(KObject::Irq(_)) => Ok(irq),
        _ => Err(Error::Inval),
    }
}

/// Connects Irq object `irq` to hardware interrupt `line`, masked or not.
pub fn attach_hw(k: &mut Kernel, irq: ObjId, line: u32, masked: bool) {
    if let Some(KObject::Irq(i)) = k.objs.get_mut(irq) {
        i.hw = Some(line);
        i.masked = masked;
    }
    crate::platform::gic::set_owner(line, Some(irq));
}

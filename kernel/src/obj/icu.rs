//! Icu: the interrupt controller as an object: binds hardware interrupts
//! to Irq objects, masks and unmasks them, sets their trigger mode.

use super::irq;
use super::{Call, KObject, OpResult, need, ok};
use crate::state::Kernel;
use l4_abi::proto::IcuOp;
use l4_abi::{CapRights, Error};

/// The interrupt controller (one, given to the root task).
pub struct Icu;

pub fn invoke(k: &mut Kernel, c: &Call<'_>) -> OpResult {
    let (rights, m) = (c.rights, c.m);
    let (op, _) = IcuOp::decode(m[0]).map_err(|_| Error::NoSys)?;
    let n = m[1];
    let nirqs = crate::platform::gic::count() as u64;
    match op {
        IcuOp::Info => c.reply(k, &[0, nirqs, 0]),
        IcuOp::Bind | IcuOp::Unbind => {
            need(rights, CapRights::W)?;
            if n < 32 || n >= nirqs {
                return Err(Error::Inval);
            }
            let irq = irq::from_bind_item(k, c)?;
            if op == IcuOp::Bind {
                let busy = crate::platform::gic::owner(n as u32)
                    .is_some_and(|o| o != irq && k.objs.contains(o));
                if busy {
                    return Err(Error::Busy);
                }
                irq::attach_hw(k, irq, n as u32, true);
            } else {
                if let Some(KObject::Irq(i)) = k.objs.get_mut(irq) {
                    i.hw = None;
                }
                crate::platform::gic::set_enabled(n as u32, false);
                crate::platform::gic::set_owner(n as u32, None);
            }
            ok(0)
        }
        IcuOp::Mask | IcuOp::Unmask => {
            if n < 32 || n >= nirqs || crate::platform::gic::owner(n as u32).is_none() {
                return Err(Error::Inval);
            }
            crate::platform::gic::set_enabled(n as u32, op == IcuOp::Unmask);
            ok(0)
        }
        IcuOp::SetMode => {
            need(rights, CapRights::W)?;
            if n < 32 || n >= nirqs {
                return Err(Error::Inval);
            }
            crate::platform::gic::set_mode(n as u32, m[2]);
            ok(0)
        }
        IcuOp::MsiInfo => Err(Error::NoSys),
    }
}

//! Icu: the interrupt controller as an object: binds hardware interrupts
//! to Irq objects, masks and unmasks them, sets their trigger mode.

use super::{Call, KObject, OpResult, item_cap, need, ok, set_mrs};
use crate::state::Kernel;
use l4_abi::proto::IcuOp;
use l4_abi::{CapRights, Error};

/// The interrupt controller (one, given to the root task).
pub struct Icu;

pub fn invoke(k: &mut Kernel, c: &Call<'_>) -> OpResult {
    let Call {
        cur,
        task,
        rights,
        tag,
        m,
        ..
    } = *c;
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

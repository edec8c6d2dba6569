//! Icu: the interrupt controller as an object: binds hardware interrupts
//! to Irq objects, masks and unmasks them, sets their trigger mode.
//!
//! As in Fiasco, the Icu capability's rights are not checked: having the
//! capability is what counts (ned hands `L4.Env.icu` on read-only, and
//! L4Re's io binds with it); binding needs `W` on the *Irq*
//! ([`irq::irq_arg`]), which is the caller's own object.

use super::irq;
use super::{Call, KObject, OpResult, ok};
use crate::state::Kernel;
use l4_abi::Error;
use l4_abi::ops::{IcuBind, IcuInfoReply, IcuMask, IcuMsg, IcuSetMode, IcuUnbind, IcuUnmask};

/// The interrupt controller (one, given to the root task).
pub struct Icu;

pub fn invoke(k: &mut Kernel, c: &Call<'_>) -> OpResult {
    let nirqs = crate::platform::gic::count() as u64;
    // A line the Icu hands out: SPIs only.
    let line = |n: u64| {
        (32..nirqs)
            .contains(&n)
            .then_some(n as u32)
            .ok_or(Error::Inval)
    };
    match IcuMsg::decode(c.tag, c.m)? {
        IcuMsg::Info(_) => c.reply(
            k,
            IcuInfoReply {
                features: 0,
                nr_irqs: nirqs,
                nr_msis: 0,
            },
        ),
        IcuMsg::Bind(IcuBind { irq: n, irq_cap }) => {
            let n = line(n)?;
            let irq = irq::irq_arg(k, c.task, irq_cap)?;
            irq::attach_hw(k, irq, n, true)?;
            ok(0)
        }
        IcuMsg::Unbind(IcuUnbind { irq: n, irq_cap }) => {
            let n = line(n)?;
            let irq = irq::irq_arg(k, c.task, irq_cap)?;
            if let Some(KObject::Irq(i)) = k.objs.get_mut(irq) {
                i.hw = None;
            }
            crate::platform::gic::set_enabled(n, false);
            crate::platform::gic::set_owner(n, None);
            ok(0)
        }
        IcuMsg::Mask(IcuMask { irq: n }) => enable_line(line(n)?, false),
        IcuMsg::Unmask(IcuUnmask { irq: n }) => enable_line(line(n)?, true),
        IcuMsg::SetMode(IcuSetMode { irq: n, mode }) => {
            crate::platform::gic::set_mode(line(n)?, mode);
            ok(0)
        }
        IcuMsg::MsiInfo(_) => Err(Error::NoSys),
    }
}

/// Masks or unmasks a line that has an Irq bound.
fn enable_line(n: u32, on: bool) -> OpResult {
    if crate::platform::gic::owner(n).is_none() {
        return Err(Error::Inval);
    }
    crate::platform::gic::set_enabled(n, on);
    ok(0)
}

//! Vcon: the kernel console as an object: writes, reads, and an input
//! interrupt (the Vcon is also an interrupt controller with one line).

use super::irq;
use super::{Call, OpResult, need, ok};
use crate::state::Kernel;
use l4_abi::ops::{Bytes, IcuInfoReply, IcuMsg, VconAttrReply, VconMsg, VconReadReply};
use l4_abi::proto;
use l4_abi::{CapRights, Error};

/// The kernel console (one, given to the root task as its log).
pub struct Vcon;

pub fn invoke(k: &mut Kernel, c: &Call<'_>) -> OpResult {
    match VconMsg::decode(c.tag, c.m)? {
        VconMsg::Write(w) => {
            crate::platform::console::write_bytes(w.bytes.as_slice());
            ok(0)
        }
        VconMsg::Read(r) => {
            let max = usize::try_from(r.max)
                .map_or(proto::vcon::WRITE_MAX, |n| n.min(proto::vcon::WRITE_MAX));
            let mut buf = [0u8; proto::vcon::WRITE_MAX];
            let (n, escape) = crate::platform::console::read_bytes(&mut buf[..max]);
            if escape {
                crate::jdb::run(k);
            }
            let status = if n < max {
                proto::vcon::READ_STAT_DONE
            } else {
                0
            };
            let bytes = Bytes::new(&buf[..n]);
            c.reply(k, VconReadReply { status, bytes })
        }
        VconMsg::SetAttr(_) => ok(0),
        VconMsg::GetAttr(_) => c.reply(k, VconAttrReply::default()),
    }
}

/// The Vcon is also an interrupt controller with one line: input arrived.
pub fn invoke_icu(k: &mut Kernel, c: &Call<'_>) -> OpResult {
    let msg = IcuMsg::decode(c.tag, c.m)?;
    let line = crate::platform::console::input_irq().ok_or(Error::NoSys)?;
    match msg {
        IcuMsg::Info(_) => c.reply(
            k,
            IcuInfoReply {
                features: 0,
                nr_irqs: 1,
                nr_msis: 0,
            },
        ),
        IcuMsg::Bind(b) if b.irq == 0 => {
            need(c.rights, CapRights::W)?;
            let irq = irq::irq_arg(k, c.task, b.irq_cap)?;
            // One reader of the console's input at a time (cons, or a
            // program on the kernel's console without cons): a second
            // binder gets `Busy` and may poll instead.
            irq::attach_hw(k, irq, line, false)?;
            crate::platform::gic::take_console_line(line);
            ok(0)
        }
        IcuMsg::Unmask(u) if u.irq == 0 => {
            crate::platform::gic::set_enabled(line, true);
            ok(0)
        }
        _ => Err(Error::Inval),
    }
}

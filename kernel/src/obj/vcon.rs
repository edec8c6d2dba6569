//! Vcon: the kernel console as an object: writes, reads, and an input
//! interrupt (the Vcon is also an interrupt controller with one line).

use super::irq;
use super::{Call, OpResult, need, ok};
use crate::state::Kernel;
use l4_abi::proto::{self, IcuOp, VconOp};
use l4_abi::utcb::MR_COUNT;
use l4_abi::{CapRights, Error};

/// The kernel console (one, given to the root task as its log).
pub struct Vcon;

pub fn invoke(k: &mut Kernel, c: &Call<'_>) -> OpResult {
    let Call { m, .. } = *c;
    let (op, _) = VconOp::decode(m[0]).map_err(|_| Error::NoSys)?;
    match op {
        VconOp::Write => {
            let n = (m[1] as usize).min(proto::vcon::WRITE_MAX);
            let bytes: &[u8] = bytemuck_words(&m[2..]);
            crate::platform::console::write_bytes(&bytes[..n]);
            ok(0)
        }
        VconOp::Read => {
            let max = (m[1] as usize).min(proto::vcon::WRITE_MAX);
            let mut buf = [0u8; proto::vcon::WRITE_MAX];
            let (n, escape) = crate::platform::console::read_bytes(&mut buf[..max]);
            if escape {
                crate::jdb::run(k);
            }
            let mut out = [0u64; MR_COUNT];
            out[0] = n as u64
                | if n < max {
                    proto::vcon::READ_STAT_DONE
                } else {
                    0
                };
            for (i, chunk) in buf[..n].chunks(8).enumerate() {
                let mut w = [0u8; 8];
                w[..chunk.len()].copy_from_slice(chunk);
                out[1 + i] = u64::from_le_bytes(w);
            }
            let words = 1 + n.div_ceil(8);
            c.reply(k, &out[..words])
        }
        VconOp::SetAttr => ok(0),
        VconOp::GetAttr => c.reply(k, &[0, 0, 0]),
    }
}

/// The Vcon is also an interrupt controller with one line: input arrived.
pub fn invoke_icu(k: &mut Kernel, c: &Call<'_>) -> OpResult {
    let (rights, m) = (c.rights, c.m);
    let (op, _) = IcuOp::decode(m[0]).map_err(|_| Error::NoSys)?;
    let line = crate::platform::console::input_irq().ok_or(Error::NoSys)?;
    match op {
        IcuOp::Info => c.reply(k, &[0, 1, 0]),
        IcuOp::Bind if m[1] == 0 => {
            need(rights, CapRights::W)?;
            let irq = irq::from_bind_item(k, c)?;
            irq::attach_hw(k, irq, line, false);
            crate::platform::gic::take_console_line(line);
            ok(0)
        }
        IcuOp::Unmask if m[1] == 0 => {
            crate::platform::gic::set_enabled(line, true);
            ok(0)
        }
        _ => Err(Error::Inval),
    }
}

/// The bytes of message words (little-endian).
fn bytemuck_words(w: &[u64]) -> &[u8] {
    // SAFETY: u64 has no padding and a stricter alignment than u8; the
    // slice covers exactly the words' bytes.
    unsafe { core::slice::from_raw_parts(w.as_ptr() as *const u8, w.len() * 8) }
}

//! The invocation word: reserved bits, flag combinations without meaning,
//! the invalid selector, yielding.

use l4::abi::proto::VconOp;
use l4::abi::sys;
use l4::ipc::{self, raw_syscall};
use l4::{Error, MsgTag, Proto, Timeout, Timeouts, base, utcb};

use crate::fw::{Ctx, R};

tests! {
    "sys.reserved_invocation_bits_refused" => reserved_bits,
    "sys.meaningless_flags_refused" => meaningless_flags,
    "sys.send_to_invalid_selector_refused" => invalid_selector,
    "sys.yield_and_zero_sleep" => yield_and_sleep,
}

/// A harmless message for the console: write 0 bytes.
fn empty_write() -> MsgTag {
    utcb::set_mrs(&[VconOp::Write.code(), 0]);
    MsgTag::proto(Proto::Log, 2, 0)
}

/// Bits 4..11 of `x0` are reserved: a call with one set is refused with
/// `Inval`.
fn reserved_bits() -> R {
    for bit in [4, 7, 10] {
        let x0 = sys::invocation(base::LOG.sel(), sys::CALL) | (1 << bit);
        let [status, _, _] = raw_syscall(x0, empty_write().0, Timeouts::BOTH_ZERO.0 as u64);
        ensure_eq!(
            Error::from_status(status),
            Err(Error::Inval),
            "status with reserved bit set"
        );
    }
    Ok(())
}

/// Flag combinations that are no operation (none, open-wait or reply
/// alone) are refused with `Inval`.
fn meaningless_flags() -> R {
    for flags in [0, sys::OPEN_WAIT, sys::REPLY, sys::SEND | sys::OPEN_WAIT] {
        let x0 = sys::invocation(base::LOG.sel(), flags);
        let [status, _, _] = raw_syscall(x0, empty_write().0, Timeouts::BOTH_ZERO.0 as u64);
        ensure!(
            Error::from_status(status) == Err(Error::Inval),
            "flags {flags:#x}: got {:?}, expected Inval",
            Error::from_status(status)
        );
    }
    Ok(())
}

/// A send or call needs a partner: the invalid selector gives `NoPartner`.
fn invalid_selector() -> R {
    let tag = empty_write();
    expect_err!(
        ipc::ipc_send(l4::abi::Cap::INVALID, tag, Timeouts::BOTH_ZERO).0,
        Error::NoPartner,
        "send to the invalid selector"
    );
    expect_err!(
        ipc::ipc_call(l4::abi::Cap::INVALID, tag, Timeouts::BOTH_ZERO).0,
        Error::NoPartner,
        "call to the invalid selector"
    );
    Ok(())
}

/// Yielding (receive from nobody, both timeouts zero) and a zero sleep
/// return at once.
fn yield_and_sleep() -> R {
    ipc::yield_now();
    ipc::sleep(Timeout::ZERO).ctx("zero sleep")
}

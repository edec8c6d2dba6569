//! Error codes, numbered as L4Re/Fiasco number them (`l4/sys/err.h`).
//!
//! Two places carry errors:
//!
//! * the **status** a native call returns in `x0`: `0` (`EOK`) or the
//!   negative error code ([`Error::as_status`]). IPC failures (timeouts,
//!   cancellation, message cut, no partner) use the codes
//!   `EIPC_BASE + ipc code` where the IPC code is Fiasco's
//!   (`L4_IPC_SETIMEOUT` = 2 and so on; an odd code means the receive
//!   phase failed, an even one the send phase);
//! * the **label** of a kernel object's reply: `>= 0` for success, else the
//!   negative error code (Fiasco's `l4_error()` convention), see
//!   [`crate::MsgTag::to_result`].

use core::fmt;

/// The success code.
pub const EOK: i64 = 0;

/// Base of the IPC error range (`L4_EIPC_LO`): an IPC error with Fiasco's
/// IPC code `c` has the error code `EIPC_BASE + c`.
pub const EIPC_BASE: i64 = 2000;

crate::numbered_enum! {
    /// An error code. The discriminant is the positive code; system calls
    /// return its negation.
    pub enum Error: i64 { from_code, code, describe }
    /// No permission (`L4_EPERM`): the capability lacks a right.
    Perm = 1, "operation not permitted";
    /// No such entity (`L4_ENOENT`).
    NoEnt = 2, "no such entity";
    /// I/O error (`L4_EIO`).
    Io = 5, "I/O error";
    /// No such device or address (`L4_ENXIO`).
    NxIo = 6, "no such device or address";
    /// Argument too big (`L4_E2BIG`).
    TooBig = 7, "argument too big";
    /// Try again (`L4_EAGAIN`).
    Again = 11, "try again";
    /// Out of memory or kernel-memory quota (`L4_ENOMEM`).
    NoMem = 12, "out of memory";
    /// Permission denied (`L4_EACCESS`).
    Access = 13, "permission denied";
    /// Bad address: not mapped or not accessible to the caller (`L4_EFAULT`).
    Fault = 14, "bad address";
    /// Object busy (`L4_EBUSY`).
    Busy = 16, "object busy";
    /// Already exists (`L4_EEXIST`).
    Exist = 17, "already exists";
    /// No such device (`L4_ENODEV`).
    NoDev = 19, "no such device";
    /// Invalid argument (`L4_EINVAL`).
    Inval = 22, "invalid argument";
    /// No space left (`L4_ENOSPC`).
    NoSpc = 28, "no space left";
    /// Value out of range (`L4_ERANGE`).
    Range = 34, "out of range";
    /// Name too long (`L4_ENAMETOOLONG`).
    NameTooLong = 36, "name too long";
    /// Operation not implemented (`L4_ENOSYS`).
    NoSys = 38, "operation not implemented";
    /// Protocol (message label) not supported by the object (`L4_EBADPROTO`).
    BadProto = 39, "unsupported protocol";
    /// Address not available (`L4_EADDRNOTAVAIL`).
    AddrNotAvail = 99, "address not available";
    /// A server will not reply (`L4_ENOREPLY`).
    NoReply = 1000, "no reply";
    /// Message too short (`L4_EMSGTOOSHORT`).
    MsgTooShort = 1001, "message too short";
    /// Message too long (`L4_EMSGTOOLONG`).
    MsgTooLong = 1002, "message too long";
    /// Message lacks a capability argument (`L4_EMSGMISSARG`).
    MsgMissArg = 1003, "message misses a capability";
    /// IPC: the send phase timed out (`L4_IPC_SETIMEOUT`).
    SendTimeout = 2002, "IPC send timeout";
    /// IPC: the receive phase timed out (`L4_IPC_RETIMEOUT`).
    RecvTimeout = 2003, "IPC receive timeout";
    /// IPC: no partner: the capability is empty or does not name an IPC
    /// endpoint, or the partner vanished (`L4_IPC_ENOT_EXISTENT`).
    NoPartner = 2004, "IPC partner does not exist";
    /// IPC: the send phase was canceled (`L4_IPC_SECANCELED`).
    SendCanceled = 2006, "IPC send canceled";
    /// IPC: the receive phase was canceled (`L4_IPC_RECANCELED`).
    RecvCanceled = 2007, "IPC receive canceled";
    /// IPC: the message was cut in the send phase: the typed items did not
    /// fit the message registers or the receiver's buffers (`L4_IPC_SEMSGCUT`).
    SendMsgCut = 2008, "IPC send message cut";
    /// IPC: the received message was cut (`L4_IPC_REMSGCUT`).
    RecvMsgCut = 2009, "IPC receive message cut";
    /// IPC: the send phase was aborted (`L4_IPC_SEABORTED`).
    SendAborted = 2014, "IPC send aborted";
    /// IPC: the receive phase was aborted (`L4_IPC_REABORTED`).
    RecvAborted = 2015, "IPC receive aborted";
    /// IPC: a map item could not be mapped in the send phase (`L4_IPC_SEMAPFAILED`).
    SendMapFailed = 2016, "IPC send map failed";
    /// IPC: a map item could not be mapped in the receive phase (`L4_IPC_REMAPFAILED`).
    RecvMapFailed = 2017, "IPC receive map failed";
}

impl Error {
    /// The negative return value (`-code`), as in `x0` or a reply label.
    pub const fn as_ret(self) -> i64 {
        -(self as i64)
    }

    /// The status word a call returns in `x0` for this error.
    pub const fn as_status(self) -> u64 {
        self.as_ret() as u64
    }

    /// Interprets a return value: non-negative values are results; negative
    /// ones are errors. The kernel only returns codes of this enum; an
    /// unknown negative value is reported as [`Error::Inval`].
    pub const fn from_ret(ret: i64) -> Result<u64, Error> {
        if ret >= 0 {
            return Ok(ret as u64);
        }
        match Error::from_code(ret.wrapping_neg()) {
            Some(e) => Err(e),
            None => Err(Error::Inval),
        }
    }

    /// Interprets the `x0` status of a native call: `0` is success.
    pub const fn from_status(status: u64) -> Result<(), Error> {
        match Error::from_ret(status as i64) {
            Ok(0) => Ok(()),
            Ok(_) => Err(Error::Inval),
            Err(e) => Err(e),
        }
    }

    /// The `x0` status for a result.
    pub const fn status_of(r: Result<(), Error>) -> u64 {
        match r {
            Ok(()) => EOK as u64,
            Err(e) => e.as_status(),
        }
    }

    /// The IPC error with Fiasco's IPC code `code` (`L4_IPC_*`).
    pub const fn from_ipc_code(code: u8) -> Option<Error> {
        match Error::from_code(EIPC_BASE + code as i64) {
            Some(e) if e.is_ipc() => Some(e),
            _ => None,
        }
    }

    /// Fiasco's IPC code (`L4_IPC_*`), for IPC errors.
    pub const fn ipc_code(self) -> Option<u8> {
        if self.is_ipc() {
            Some((self.code() - EIPC_BASE) as u8)
        } else {
            None
        }
    }

    /// Whether this is an IPC (communication) error.
    pub const fn is_ipc(self) -> bool {
        self.code() >= EIPC_BASE
    }

    /// For IPC errors: whether the send phase failed (the message was not
    /// delivered). Fiasco marks receive-phase errors with an odd code.
    pub const fn is_send_phase(self) -> bool {
        self.is_ipc() && self.code() % 2 == 0 && !matches!(self, Error::NoPartner)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (-{})", self.describe(), self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fiasco_numbers() {
        assert_eq!(Error::Perm.code(), 1);
        assert_eq!(Error::NoMem.code(), 12);
        assert_eq!(Error::Inval.code(), 22);
        assert_eq!(Error::NoSys.code(), 38);
        assert_eq!(Error::Fault.code(), 14);
        assert_eq!(Error::SendTimeout.ipc_code(), Some(0x02));
        assert_eq!(Error::RecvTimeout.ipc_code(), Some(0x03));
        assert_eq!(Error::NoPartner.ipc_code(), Some(0x04));
        assert_eq!(Error::SendMsgCut.ipc_code(), Some(0x08));
        assert_eq!(Error::RecvMsgCut.ipc_code(), Some(0x09));
        assert_eq!(Error::RecvAborted.ipc_code(), Some(0x0f));
        assert_eq!(Error::SendMapFailed.ipc_code(), Some(0x10));
        assert_eq!(Error::Inval.ipc_code(), None);
    }

    #[test]
    fn round_trips() {
        for &e in Error::ALL {
            assert_eq!(Error::from_code(e.code()), Some(e));
            assert_eq!(Error::from_ret(e.as_ret()), Err(e));
            assert_eq!(Error::from_status(e.as_status()), Err(e));
            if let Some(c) = e.ipc_code() {
                assert_eq!(Error::from_ipc_code(c), Some(e));
            }
        }
        assert_eq!(Error::from_ret(0), Ok(0));
        assert_eq!(Error::from_ret(42), Ok(42));
        assert_eq!(Error::from_ret(-3), Err(Error::Inval), "unknown code");
        assert_eq!(Error::from_ret(i64::MIN), Err(Error::Inval));
        assert_eq!(Error::from_status(0), Ok(()));
        assert_eq!(Error::status_of(Err(Error::NoSys)), (-38i64) as u64);
        assert_eq!(Error::from_ipc_code(1), None);
    }

    #[test]
    fn phases() {
        assert!(Error::SendTimeout.is_send_phase());
        assert!(!Error::RecvTimeout.is_send_phase());
        assert!(Error::SendMsgCut.is_send_phase());
        assert!(!Error::NoPartner.is_send_phase());
        assert!(!Error::Perm.is_ipc());
    }
}

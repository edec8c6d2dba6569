//! The AArch64 glue: message registers in and out of the calling thread's
//! UTCB around the kernel's IPC calls. The only `unsafe` of the crate is
//! here ([`with_utcb`]).

use l4_abi::call::{ipc_call, ipc_reply_and_wait, ipc_wait, utcb};
use l4_abi::utcb::MR_COUNT;
use l4_abi::{Cap, Error, MsgTag, Timeouts, Utcb};

use crate::server::ServerTransport;
use crate::transport::{RecvBufs, Request, Transport};

/// Runs `f` on the calling thread's UTCB.
///
/// `f` must not make system calls: the kernel reads and writes the UTCB
/// during a call, so no reference to it may live across one. The callers
/// below only copy registers.
fn with_utcb<R>(f: impl FnOnce(&mut Utcb) -> R) -> R {
    let p = utcb();
    // SAFETY: the kernel maps the UTCB for the whole life of the thread
    // and points TPIDRRO_EL0 (read by `utcb()`) at it; it is 1 KiB-aligned
    // and laid out as `Utcb`. Only this thread uses its UTCB, the kernel
    // only during this thread's system calls, and the reference does not
    // outlive `f`, which makes none.
    f(unsafe { &mut *p })
}

/// Copies a message into the UTCB's message registers and `rcv` into its
/// buffer registers.
fn store(tag: MsgTag, mrs: &[u64; MR_COUNT], rcv: &RecvBufs) {
    let n = tag.mr_len().min(MR_COUNT);
    with_utcb(|u| {
        u.mr[..n].copy_from_slice(&mrs[..n]);
        u.bdr = 0;
        rcv.write_brs(&mut u.br);
    });
}

/// Copies a received message out of the UTCB's message registers.
fn load(tag: MsgTag, mrs: &mut [u64; MR_COUNT]) {
    let n = tag.mr_len().min(MR_COUNT);
    with_utcb(|u| mrs[..n].copy_from_slice(&u.mr[..n]));
}

/// The real transport: the calling thread's UTCB and [`ipc_call`].
#[derive(Clone, Copy, Debug)]
pub struct UtcbTransport {
    /// Send and receive timeouts of calls.
    pub timeouts: Timeouts,
}

impl UtcbTransport {
    /// Calls that wait forever.
    pub const fn new() -> UtcbTransport {
        UtcbTransport {
            timeouts: Timeouts::NEVER,
        }
    }
}

impl Default for UtcbTransport {
    fn default() -> UtcbTransport {
        UtcbTransport::new()
    }
}

impl Transport for UtcbTransport {
    fn call(&mut self, r: Request<'_>) -> Result<MsgTag, Error> {
        store(r.tag, r.mrs, r.rcv);
        let reply = ipc_call(Cap::new(r.cap), r.tag, self.timeouts).0?;
        load(reply, r.mrs);
        Ok(reply)
    }
}

/// The receive side of a server thread on its UTCB: open wait and
/// reply-and-wait, offering the receive buffers `rcv` for items in
/// requests.
#[derive(Clone, Copy, Debug)]
pub struct UtcbServerTransport {
    /// Where the server accepts capabilities and memory that clients send.
    pub rcv: RecvBufs,
    /// Timeouts (the send timeout applies to replies; keep it zero so that
    /// a client that does not wait for its reply cannot block the server).
    pub timeouts: Timeouts,
}

impl UtcbServerTransport {
    /// A server side accepting items into `rcv`, waiting forever for
    /// requests and never for replies.
    pub const fn new(rcv: RecvBufs) -> UtcbServerTransport {
        UtcbServerTransport {
            rcv,
            timeouts: Timeouts::SEND_ZERO,
        }
    }

    fn received(
        &self,
        r: (Result<MsgTag, Error>, u64),
        mrs: &mut [u64; MR_COUNT],
    ) -> Result<(MsgTag, u64), Error> {
        let (tag, label) = r;
        let tag = tag?;
        load(tag, mrs);
        Ok((tag, label))
    }
}

impl ServerTransport for UtcbServerTransport {
    fn wait(&mut self, mrs: &mut [u64; MR_COUNT]) -> Result<(MsgTag, u64), Error> {
        store(MsgTag(0), mrs, &self.rcv);
        let r = ipc_wait(self.timeouts);
        self.received(r, mrs)
    }

    fn reply_and_wait(
        &mut self,
        reply: MsgTag,
        mrs: &mut [u64; MR_COUNT],
    ) -> Result<(MsgTag, u64), Error> {
        store(reply, mrs, &self.rcv);
        let r = ipc_reply_and_wait(reply, self.timeouts);
        self.received(r, mrs)
    }
}

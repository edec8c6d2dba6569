//! How a message gets to a server and the reply back.
//!
//! A [`Transport`] performs one call: it sends a message to a capability
//! and returns the reply, both in a plain `[u64; 64]` of message registers,
//! with the receive buffers ([`RecvBufs`]) the caller offers for typed items
//! in the reply. `UtcbTransport` is the real one (AArch64: the calling
//! thread's UTCB and `ipc_call`); [`Loopback`] runs the server in-process,
//! translating typed items as the kernel would, so that client stubs,
//! dispatch and servers can be tested on the host.
//!
//! [`call`] is what generated client stubs use: transport call, then the
//! reply's label (negative: an [`Error`]) and its words and items.

use l4_abi::fpage::{FpageType, RecvItems, align_down};
use l4_abi::utcb::{BR_COUNT, MR_COUNT};
use l4_abi::{CapRights, Error, Fpage, MsgTag, RecvItem, SendItem};

use crate::codec::{Arg, Reader};
use crate::server::{Registry, handle_request};
use crate::words::Words;

/// One call as a [`Transport`] makes it: the message `tag`/`mrs` to
/// capability `cap`, offering the receive buffers `rcv` for items in the
/// reply.
#[derive(Debug)]
pub struct Request<'a> {
    /// The capability called.
    pub cap: u64,
    /// The message's tag.
    pub tag: MsgTag,
    /// The message's words; the reply replaces them.
    pub mrs: &'a mut [u64; MR_COUNT],
    /// Where items in the reply go.
    pub rcv: &'a RecvBufs,
}

impl<'a> Request<'a> {
    /// The message `tag`/`mrs` to `cap`, accepting no items in the reply.
    pub fn new(cap: u64, tag: MsgTag, mrs: &'a mut [u64; MR_COUNT]) -> Request<'a> {
        static NO_BUFFERS: RecvBufs = RecvBufs::new();
        Request {
            cap,
            tag,
            mrs,
            rcv: &NO_BUFFERS,
        }
    }
}

/// Performs calls: send a message, receive the reply.
pub trait Transport {
    /// Sends the request's message and waits for the reply, which replaces
    /// the message in `r.mrs`. IPC failures are errors; the reply's own
    /// label is not interpreted.
    fn call(&mut self, r: Request<'_>) -> Result<MsgTag, Error>;
}

impl<T: Transport + ?Sized> Transport for &mut T {
    fn call(&mut self, r: Request<'_>) -> Result<MsgTag, Error> {
        (**self).call(r)
    }
}

/// Calls `cap` with the request `tag`/`mrs` and decodes the reply as `R`:
/// a negative reply label is that [`Error`]; otherwise the reply's words
/// and items must be exactly an `R`.
pub fn call<T: Transport + ?Sized, R: Arg>(
    t: &mut T,
    cap: u64,
    tag: MsgTag,
    mrs: &mut [u64; MR_COUNT],
    rcv: &RecvBufs,
) -> Result<R, Error> {
    let reply = t.call(Request {
        cap,
        tag,
        mrs: &mut *mrs,
        rcv,
    })?;
    Error::from_ret(reply.label())?;
    let mut r = Reader::new(reply, &mrs[..])?.with_rcv_cap(rcv.first_cap_slot());
    let v = R::decode(&mut r)?;
    r.finish()?;
    Ok(v)
}

// ----------------------------------------------------------------------
// Receive buffers
// ----------------------------------------------------------------------

/// Receive buffers: where a receiver accepts the typed items of the next
/// message (the buffer registers' receive items).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecvBufs(Words<BR_COUNT>);

impl RecvBufs {
    /// No buffers: typed items are refused (the message is cut).
    pub const fn new() -> RecvBufs {
        RecvBufs(Words::new())
    }

    /// One single-capability slot at `index`.
    pub const fn cap_slot(index: u64) -> RecvBufs {
        RecvBufs(Words::one(RecvItem::SmallCap { index }.to_words()[0]))
    }

    /// Appends a buffer; [`Error::MsgTooLong`] if the buffer registers are
    /// full.
    pub fn push(&mut self, item: RecvItem) -> Result<(), Error> {
        self.0.push(&item.to_words()[..item.words()])
    }

    /// Replaces all buffers.
    pub fn set(&mut self, items: &[RecvItem]) -> Result<(), Error> {
        let mut b = RecvBufs::new();
        for &it in items {
            b.push(it)?;
        }
        *self = b;
        Ok(())
    }

    /// Removes all buffers.
    pub fn clear(&mut self) {
        *self = RecvBufs::new();
    }

    /// The buffers.
    pub fn items(&self) -> RecvItems<'_> {
        RecvItems::new(self.words())
    }

    /// The buffer-register words (without terminator).
    pub fn words(&self) -> &[u64] {
        self.0.as_slice()
    }

    /// The index of the first buffer if it is a single-capability slot
    /// (where kernel factories put a new capability).
    pub fn first_cap_slot(&self) -> Option<u64> {
        match self.items().next() {
            Some(RecvItem::SmallCap { index }) => Some(index),
            _ => None,
        }
    }

    /// Writes the buffer registers: the buffers, then a terminating zero
    /// word if there is room.
    pub fn write_brs(&self, br: &mut [u64; BR_COUNT]) {
        let n = self.words().len();
        br[..n].copy_from_slice(self.words());
        if let Some(end) = br.get_mut(n) {
            *end = 0;
        }
    }
}

impl Default for RecvBufs {
    fn default() -> RecvBufs {
        RecvBufs::new()
    }
}

// ----------------------------------------------------------------------
// Kernel transfer model (for the loopback)
// ----------------------------------------------------------------------

const fn mask(order: u8) -> u64 {
    if order >= 64 {
        u64::MAX
    } else {
        (1u64 << order) - 1
    }
}

/// Where a sent item lands in a receive buffer, or `None` if the buffer
/// does not take it. A simplified version of the kernel's rules: a window
/// takes an item of its own kind (or an all-spaces window any), placed by
/// the hot spot and cut to the window's size.
fn land(it: SendItem, buf: RecvItem) -> Option<Fpage> {
    let f = it.fpage;
    match (f.kind(), buf) {
        (FpageType::Obj, RecvItem::SmallCap { index }) => {
            Some(Fpage::obj(index, 0, CapRights(f.rights_bits())))
        }
        (FpageType::Obj, RecvItem::Window(w)) if w.is_all() => Some(Fpage::obj(
            it.snd_base() >> 12,
            f.order(),
            CapRights(f.rights_bits()),
        )),
        (FpageType::Obj, RecvItem::Window(w)) if w.kind() == FpageType::Obj => {
            let order = f.order().min(w.order());
            let off = align_down((it.snd_base() >> 12) & mask(w.order()), order);
            Some(Fpage::obj(
                w.obj_index() + off,
                order,
                CapRights(f.rights_bits()),
            ))
        }
        (FpageType::Memory, RecvItem::Window(w)) if w.is_all() => {
            let order = f.order();
            Some(Fpage::mem(
                align_down(it.snd_base(), order),
                order,
                f.mem_rights(),
            ))
        }
        (FpageType::Memory, RecvItem::Window(w)) if w.kind() == FpageType::Memory => {
            let order = f.order().min(w.order());
            let off = align_down(it.snd_base() & mask(w.order()), order);
            Some(Fpage::mem(w.mem_base() + off, order, f.mem_rights()))
        }
        _ => None,
    }
}

/// Delivers the message `tag`/`src` to a receiver with buffers `rcv` as
/// the kernel would (label unchanged, words copied, each map item landed in
/// the next receive buffer, void items dropped) and returns the tag the
/// receiver sees. [`Error::SendMsgCut`] if an item finds no buffer that
/// takes it, or the tag describes more registers than there are.
pub fn deliver(
    tag: MsgTag,
    src: &[u64; MR_COUNT],
    rcv: &RecvBufs,
    dst: &mut [u64; MR_COUNT],
) -> Result<MsgTag, Error> {
    if tag.mr_len() > MR_COUNT {
        return Err(Error::SendMsgCut);
    }
    let words = tag.words() as usize;
    dst[..words].copy_from_slice(&src[..words]);
    let mut bufs = rcv.items();
    let mut n = 0;
    for k in 0..tag.items() as usize {
        let at = words + 2 * k;
        let it = SendItem::from_words([src[at], src[at + 1]]);
        let void =
            !it.is_map_item() || matches!(it.fpage.kind(), FpageType::Special | FpageType::Io);
        if void {
            continue;
        }
        let landed = bufs
            .next()
            .and_then(|b| land(it, b))
            .ok_or(Error::SendMsgCut)?;
        let to = words + 2 * n;
        dst[to] = it.control;
        dst[to + 1] = landed.0;
        n += 1;
    }
    Ok(MsgTag::new(tag.label(), words as u32, n as u32, 0))
}

/// An in-process transport: calls go straight to a [`Registry`] of server
/// objects, with typed items translated by [`deliver`] both ways.
///
/// Capability index `n` stands for an IPC gate with label `n`: a call to it
/// reaches the object registered under `n`. The server side offers the
/// receive buffers [`Loopback::server_rcv`].
#[derive(Debug)]
pub struct Loopback<R> {
    /// The server's objects.
    pub objects: R,
    /// The server's receive buffers for items in requests.
    pub server_rcv: RecvBufs,
    /// Number of calls made.
    pub calls: usize,
}

impl<R: Registry> Loopback<R> {
    /// A loopback to `objects`; the server accepts no items.
    pub const fn new(objects: R) -> Loopback<R> {
        Loopback {
            objects,
            server_rcv: RecvBufs::new(),
            calls: 0,
        }
    }
}

impl<R: Registry> Transport for Loopback<R> {
    fn call(&mut self, r: Request<'_>) -> Result<MsgTag, Error> {
        self.calls += 1;
        let mut smrs = [0u64; MR_COUNT];
        let stag = deliver(r.tag, r.mrs, &self.server_rcv, &mut smrs)?;
        let reply = handle_request(&mut self.objects, r.cap, stag, &mut smrs);
        deliver(reply, &smrs, r.rcv, r.mrs).map_err(|_| Error::RecvMsgCut)
    }
}

/// A transport with no kernel behind it: every call fails with
/// [`Error::NoPartner`]. The default transport off AArch64, where there is
/// no UTCB.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoTransport;

impl NoTransport {
    /// The transport.
    pub const fn new() -> NoTransport {
        NoTransport
    }
}

impl Transport for NoTransport {
    fn call(&mut self, _: Request<'_>) -> Result<MsgTag, Error> {
        Err(Error::NoPartner)
    }
}

#[cfg(target_arch = "aarch64")]
pub use crate::glue::UtcbTransport;

/// The transport client stubs use unless told otherwise: [`UtcbTransport`]
/// on AArch64, [`NoTransport`] elsewhere.
#[cfg(target_arch = "aarch64")]
pub type DefaultTransport = UtcbTransport;

/// The transport client stubs use unless told otherwise: `UtcbTransport`
/// on AArch64, [`NoTransport`] elsewhere.
#[cfg(not(target_arch = "aarch64"))]
pub type DefaultTransport = NoTransport;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{CapArg, MemArg};
    use l4_abi::MemRights;

    fn one_item(it: SendItem) -> (MsgTag, [u64; MR_COUNT]) {
        let mut m = [0; MR_COUNT];
        m[1..3].copy_from_slice(&it.to_words());
        (MsgTag::new(5, 1, 1, 0), m)
    }

    #[test]
    fn recv_bufs() {
        let mut b = RecvBufs::new();
        assert_eq!(b.first_cap_slot(), None);
        b.push(RecvItem::SmallCap { index: 9 }).unwrap();
        b.push(RecvItem::Window(Fpage::all())).unwrap();
        assert_eq!(b.words().len(), 3);
        assert_eq!(b.first_cap_slot(), Some(9));
        assert_eq!(b.items().count(), 2);
        let mut br = [7; BR_COUNT];
        b.write_brs(&mut br);
        assert_eq!(br[3], 0, "terminated");
        assert_eq!(RecvBufs::cap_slot(9).first_cap_slot(), Some(9));
        let many = [RecvItem::Window(Fpage::all()); 16];
        assert_eq!(b.set(&many), Err(Error::MsgTooLong));
        assert_eq!(b.items().count(), 2, "unchanged on error");
        b.set(&many[..15]).unwrap();
        let mut full = [7; BR_COUNT];
        b.set(&[RecvItem::SmallCap { index: 1 }; BR_COUNT]).unwrap();
        b.write_brs(&mut full);
        b.clear();
        assert_eq!(b, RecvBufs::default());
    }

    #[test]
    fn delivery() {
        let cap = CapArg::new(3, CapRights::RWS).item();
        let (t, m) = one_item(cap);
        let mut d = [0; MR_COUNT];
        let rt = deliver(t, &m, &RecvBufs::cap_slot(40), &mut d).unwrap();
        assert_eq!((rt.label(), rt.words(), rt.items()), (5, 1, 1));
        let got = CapArg::from_item(SendItem::from_words([d[1], d[2]])).unwrap();
        assert_eq!(got, CapArg::new(40, CapRights::RWS));
        // No buffer, or the wrong kind of buffer: cut.
        assert_eq!(
            deliver(t, &m, &RecvBufs::new(), &mut d),
            Err(Error::SendMsgCut)
        );
        let mut memwin = RecvBufs::new();
        memwin
            .push(RecvItem::Window(Fpage::mem(0x10_0000, 20, MemRights::RWX)))
            .unwrap();
        assert_eq!(deliver(t, &m, &memwin, &mut d), Err(Error::SendMsgCut));
        // Memory at the hot spot's offset in the window.
        let mem = MemArg::map(Fpage::mem(0x4000_0000, 12, MemRights::RW), 0x3000).item();
        let (t, m) = one_item(mem);
        deliver(t, &m, &memwin, &mut d).unwrap();
        let got = MemArg::from_item(SendItem::from_words([d[1], d[2]])).unwrap();
        assert_eq!(got.fpage, Fpage::mem(0x10_3000, 12, MemRights::RW));
        // A larger flexpage is cut to the window.
        let big = MemArg::map(Fpage::mem(0, 30, MemRights::R), 0).item();
        let (t, m) = one_item(big);
        deliver(t, &m, &memwin, &mut d).unwrap();
        assert_eq!(Fpage(d[2]).order(), 20);
        // All-spaces windows take either kind.
        let mut all = RecvBufs::new();
        all.push(RecvItem::Window(Fpage::all())).unwrap();
        all.push(RecvItem::Window(Fpage::all())).unwrap();
        let mut two = [0; MR_COUNT];
        two[..2].copy_from_slice(&SendItem::caps(3, 0, CapRights::R, 7 << 12).to_words());
        two[2..4].copy_from_slice(&mem.to_words());
        let rt = deliver(MsgTag::new(0, 0, 2, 0), &two, &all, &mut d).unwrap();
        assert_eq!(rt.items(), 2);
        assert_eq!(Fpage(d[1]).obj_index(), 7);
        assert_eq!(Fpage(d[3]).mem_base(), 0x3000);
        // Capability windows.
        let mut cw = RecvBufs::new();
        cw.push(RecvItem::Window(Fpage::obj(0x100, 4, CapRights::RWSD)))
            .unwrap();
        let (t, m) = one_item(SendItem::caps(3, 0, CapRights::R, 5 << 12));
        deliver(t, &m, &cw, &mut d).unwrap();
        assert_eq!(Fpage(d[2]).obj_index(), 0x105);
        // Void items are dropped.
        let (t, m) = one_item(SendItem::from_words([0, 0]));
        let rt = deliver(t, &m, &RecvBufs::new(), &mut d).unwrap();
        assert_eq!(rt.items(), 0);
        // Impossible tags.
        assert_eq!(
            deliver(MsgTag::new(0, 63, 1, 0), &m, &all, &mut d),
            Err(Error::SendMsgCut)
        );
    }

    #[test]
    fn no_transport() {
        let mut m = [0; MR_COUNT];
        assert_eq!(
            NoTransport.call(Request::new(1, MsgTag(0), &mut m)),
            Err(Error::NoPartner)
        );
    }
}

//! IPC rules: decoding an invocation, timeouts, and what a message transfer
//! does.
//!
//! [`transfer`] takes the sender's tag and message registers and the
//! receiver's receive buffers and returns a [`Transfer`]: how many untyped
//! words to copy, and a list of [`MapAction`]s (map or grant of memory or
//! capabilities) for the kernel to perform with its mapping database and
//! page/capability tables. It never allocates and never trusts the sender:
//!
//! * untyped words: `min(words, 64)` are copied (a tag holds at most 63);
//! * typed items must fit in the 64 message registers after the words;
//!   items that do not, or that find no suitable receive buffer, cut the
//!   message: processing stops there, both sides get a "message cut" error
//!   ([`Error::SendMsgCut`], [`Error::RecvMsgCut`]), and the items before
//!   the cut still take effect (as in Fiasco);
//! * a *void* item (control word without the map bit, or an invalid,
//!   all-spaces or I/O flexpage) is skipped and uses no buffer;
//! * each other item uses the next receive buffer, unless the previous item
//!   was marked compound ([`l4_abi::fpage::item::CONT`]): then it shares the
//!   previous item's buffer. Memory items need a memory or all-spaces
//!   window, capability items a capability window, an all-spaces window or
//!   a single-capability slot;
//! * the flexpage is clipped to the sender's space and fitted into the
//!   window by the hot spot (send base), as Fiasco does: a larger flexpage
//!   gives the window-sized part containing the hot spot, a smaller one
//!   lands at the hot spot's offset in the window;
//! * rights: memory items carry their R/W/X bits, capability items their
//!   four flexpage bits plus the control-word bits (`n`, `c`, ...); a
//!   capability without `R` maps nothing, and `S` survives only if the
//!   capability the sender invoked has `S`. The rights are then reduced to
//!   what the sender actually holds when the kernel performs the action
//!   (the mapping database never lets rights grow along a chain).
//!
//! Performing the actions is the kernel's part: for each action, walk the
//! sender's mappings in `[src, src + 2^order)` (do not iterate every unit of
//! a huge memory range), look up each one's mapping-database node, and
//! [`crate::mapdb::MapDb::map`] (or `grant_part`) it to the corresponding
//! place at `dst`. A failure there is reported as [`Error::SendMapFailed`] /
//! [`Error::RecvMapFailed`].

use crate::mapdb::Kind;
use l4_abi::fpage::{FpageType, PAGE_SHIFT, RecvItems, align_down};
use l4_abi::sys::{self, CAP_SHIFT, Cap};
use l4_abi::utcb::{BR_COUNT, MR_COUNT};
use l4_abi::{CapRights, Error, Fpage, MsgTag, RecvItem, SendItem, Timeout, Timeouts};

/// Most typed items one message can carry (two registers each).
pub const MAX_ITEMS: usize = MR_COUNT / 2;

// ----------------------------------------------------------------------
// Invocation
// ----------------------------------------------------------------------

/// The operation an invocation asks for (the flag combinations Fiasco
/// accepts).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    /// Send to the named object.
    Send,
    /// Receive from the named object only (the invalid selector: from
    /// nobody, i.e. sleep until the timeout).
    Receive,
    /// Receive from anyone.
    Wait,
    /// Send to the named object, then receive from it.
    Call,
    /// Send to the named object, then receive from anyone.
    SendAndWait,
    /// Send through the reply capability.
    Reply,
    /// Send through the reply capability, then receive from that partner.
    ReplyAndReceive,
    /// Send through the reply capability, then receive from anyone.
    ReplyAndWait,
}

impl Operation {
    /// The operation for `flags` ([`l4_abi::sys`] bits); `None` for
    /// combinations without a meaning.
    pub const fn from_flags(flags: u64) -> Option<Operation> {
        Some(match flags {
            sys::SEND => Operation::Send,
            sys::RECV => Operation::Receive,
            sys::WAIT => Operation::Wait,
            sys::CALL => Operation::Call,
            sys::SEND_AND_WAIT => Operation::SendAndWait,
            f if f == sys::REPLY | sys::SEND => Operation::Reply,
            f if f == sys::REPLY | sys::CALL => Operation::ReplyAndReceive,
            sys::REPLY_AND_WAIT => Operation::ReplyAndWait,
            _ => return None,
        })
    }

    /// The flag bits.
    pub const fn flags(self) -> u64 {
        match self {
            Operation::Send => sys::SEND,
            Operation::Receive => sys::RECV,
            Operation::Wait => sys::WAIT,
            Operation::Call => sys::CALL,
            Operation::SendAndWait => sys::SEND_AND_WAIT,
            Operation::Reply => sys::REPLY | sys::SEND,
            Operation::ReplyAndReceive => sys::REPLY | sys::CALL,
            Operation::ReplyAndWait => sys::REPLY_AND_WAIT,
        }
    }

    /// Whether there is a send phase.
    pub const fn sends(self) -> bool {
        self.flags() & sys::SEND != 0
    }

    /// Whether there is a receive phase.
    pub const fn receives(self) -> bool {
        self.flags() & sys::RECV != 0
    }

    /// Whether the receive phase accepts any sender.
    pub const fn open_wait(self) -> bool {
        self.flags() & sys::OPEN_WAIT != 0
    }

    /// Whether the send phase uses the reply capability (the selector is
    /// then ignored for the send).
    pub const fn replies(self) -> bool {
        self.flags() & sys::REPLY != 0
    }

    /// Whether the send phase needs a valid capability selector.
    pub const fn needs_cap(self) -> bool {
        self.sends() && !self.replies()
    }
}

/// A decoded native call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Invocation {
    /// The capability selector.
    pub cap: Cap,
    /// The operation.
    pub op: Operation,
    /// The message tag.
    pub tag: MsgTag,
    /// The timeouts.
    pub timeouts: Timeouts,
}

/// Decodes `x0..x2` of a native call. Refuses reserved bits, unknown flag
/// combinations, and the invalid selector where a send needs a partner,
/// with [`Error::Inval`] ([`Error::NoPartner`] for the selector).
pub fn decode(x0: u64, x1: u64, x2: u64) -> Result<Invocation, Error> {
    let (cap, flags) = sys::decode_invocation(x0).ok_or(Error::Inval)?;
    let op = Operation::from_flags(flags).ok_or(Error::Inval)?;
    if op.needs_cap() && cap.is_invalid() {
        return Err(Error::NoPartner);
    }
    Ok(Invocation {
        cap,
        op,
        tag: MsgTag(x1),
        timeouts: Timeouts::from_reg(x2),
    })
}

// ----------------------------------------------------------------------
// Timeouts
// ----------------------------------------------------------------------

/// When a blocked phase gives up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deadline {
    /// Do not block.
    Now,
    /// Block without limit.
    Never,
    /// Block until this time (µs on the kernel clock).
    At(u64),
}

impl Deadline {
    /// The deadline of `t` started at `now_us` (saturating). An absolute
    /// timeout reads its deadline from the caller's buffer registers `brs`
    /// (one already past is [`Deadline::Now`]); a register index beyond
    /// them is refused with [`Error::Inval`].
    pub const fn from_timeout(t: Timeout, now_us: u64, brs: &[u64]) -> Result<Deadline, Error> {
        use l4_abi::timeout::TimeoutKind;
        match t.kind() {
            TimeoutKind::Never => Ok(Deadline::Never),
            TimeoutKind::Zero => Ok(Deadline::Now),
            TimeoutKind::Micros(us) => Ok(Deadline::At(now_us.saturating_add(us))),
            TimeoutKind::Absolute { br } => {
                if br >= brs.len() {
                    Err(Error::Inval)
                } else if brs[br] <= now_us {
                    Ok(Deadline::Now)
                } else {
                    Ok(Deadline::At(brs[br]))
                }
            }
        }
    }

    /// Whether the deadline has passed at `now_us`.
    pub const fn expired(self, now_us: u64) -> bool {
        match self {
            Deadline::Now => true,
            Deadline::Never => false,
            Deadline::At(t) => now_us >= t,
        }
    }
}

/// The phase of an IPC operation, for choosing error codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Sending.
    Send,
    /// Receiving.
    Recv,
}

impl Phase {
    /// The timeout error of this phase.
    pub const fn timeout(self) -> Error {
        match self {
            Phase::Send => Error::SendTimeout,
            Phase::Recv => Error::RecvTimeout,
        }
    }

    /// The error when another thread cancels the operation (ex_regs).
    pub const fn canceled(self) -> Error {
        match self {
            Phase::Send => Error::SendCanceled,
            Phase::Recv => Error::RecvCanceled,
        }
    }

    /// The error when the partner goes away during the operation.
    pub const fn aborted(self) -> Error {
        match self {
            Phase::Send => Error::SendAborted,
            Phase::Recv => Error::RecvAborted,
        }
    }

    /// The message-cut error.
    pub const fn msg_cut(self) -> Error {
        match self {
            Phase::Send => Error::SendMsgCut,
            Phase::Recv => Error::RecvMsgCut,
        }
    }

    /// The map-failed error.
    pub const fn map_failed(self) -> Error {
        match self {
            Phase::Send => Error::SendMapFailed,
            Phase::Recv => Error::RecvMapFailed,
        }
    }

    /// The timeout that governs this phase.
    pub const fn timeout_of(self, t: Timeouts) -> Timeout {
        match self {
            Phase::Send => t.send(),
            Phase::Recv => t.recv(),
        }
    }
}

/// The partner of `phase` is not ready: block until the deadline, or, with
/// a zero timeout, fail at once with the phase's timeout error.
pub const fn when_not_ready(phase: Phase, deadline: Deadline) -> Result<Deadline, Error> {
    match deadline {
        Deadline::Now => Err(phase.timeout()),
        d => Ok(d),
    }
}

// ----------------------------------------------------------------------
// Transfer
// ----------------------------------------------------------------------

/// The size of a task's spaces: `2^mem_order` bytes of user addresses and
/// `2^cap_order` capability indices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Log2 of the user address-space size (e.g. 48).
    pub mem_order: u8,
    /// Log2 of the capability-index space (e.g. 16).
    pub cap_order: u8,
}

impl Limits {
    /// The order of the `kind` space.
    pub const fn order(self, kind: Kind) -> u8 {
        match kind {
            Kind::Mem => self.mem_order,
            Kind::Cap => self.cap_order,
        }
    }
}

/// The receiver's receive items, parsed once per transfer (no allocation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecvBuffers {
    items: [RecvItem; BR_COUNT],
    len: usize,
}

impl RecvBuffers {
    /// No buffers: the receiver accepts no typed items.
    pub const fn none() -> RecvBuffers {
        RecvBuffers {
            items: [RecvItem::SmallCap { index: 0 }; BR_COUNT],
            len: 0,
        }
    }

    /// One all-spaces window (what a faulting thread offers its pager).
    pub const fn whole_space() -> RecvBuffers {
        let mut b = RecvBuffers::none();
        b.items[0] = RecvItem::Window(Fpage::all());
        b.len = 1;
        b
    }

    /// Parses buffer registers (see [`l4_abi::fpage::RecvItems`]).
    pub fn from_brs(brs: &[u64]) -> RecvBuffers {
        let mut b = RecvBuffers::none();
        for it in RecvItems::new(brs).take(BR_COUNT) {
            b.items[b.len] = it;
            b.len += 1;
        }
        b
    }

    /// The items.
    pub fn items(&self) -> &[RecvItem] {
        &self.items[..self.len]
    }
}

/// Context of one transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransferOptions {
    /// The sender's spaces.
    pub src: Limits,
    /// The receiver's spaces.
    pub dst: Limits,
    /// Whether the capability the sender invoked has the `S` right.
    pub partner_s: bool,
}

/// One mapping to perform.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MapAction {
    /// Memory or capabilities.
    pub kind: Kind,
    /// First address/index in the sender's space.
    pub src: u64,
    /// First address/index in the receiver's space.
    pub dst: u64,
    /// Log2 of the size (bytes or capabilities).
    pub order: u8,
    /// The rights offered (memory or capability rights bits); the kernel
    /// still reduces them to what the sender holds.
    pub rights: u8,
    /// Grant (move) rather than map.
    pub grant: bool,
    /// The sender's control word, as sent.
    pub control: u64,
}

impl MapAction {
    const EMPTY: MapAction = MapAction {
        kind: Kind::Mem,
        src: 0,
        dst: 0,
        order: 0,
        rights: 0,
        grant: false,
        control: 0,
    };

    /// The two words the receiver finds for this item in its message
    /// registers: the sender's control word, and a flexpage naming where
    /// the item landed (with the rights offered; the four low bits only for
    /// capabilities).
    pub const fn receiver_words(&self) -> [u64; 2] {
        let f = match self.kind {
            Kind::Mem => Fpage::mem(self.dst, self.order, l4_abi::MemRights(self.rights)),
            Kind::Cap => Fpage::obj(self.dst, self.order, CapRights(self.rights)),
        };
        [self.control, f.0]
    }
}

/// The result of [`transfer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transfer {
    words: usize,
    actions: [MapAction; MAX_ITEMS],
    n: usize,
    cut: bool,
    label: i64,
}

impl Transfer {
    /// Untyped words to copy (`MR[0..words]`).
    pub const fn words(&self) -> usize {
        self.words
    }

    /// The mappings to perform, in order.
    pub fn actions(&self) -> &[MapAction] {
        &self.actions[..self.n]
    }

    /// Whether the message was cut.
    pub const fn is_cut(&self) -> bool {
        self.cut
    }

    /// The tag the receiver gets: the sender's label, the words copied, one
    /// item per action, and [`MsgTag::ERROR`] if the message was cut.
    pub const fn receiver_tag(&self) -> MsgTag {
        let flags = if self.cut { MsgTag::ERROR } else { 0 };
        MsgTag::new(self.label, self.words as u32, self.n as u32, flags)
    }

    /// The sender's status.
    pub const fn sender_result(&self) -> Result<(), Error> {
        if self.cut {
            Err(Error::SendMsgCut)
        } else {
            Ok(())
        }
    }

    /// The receiver's status.
    pub const fn receiver_result(&self) -> Result<(), Error> {
        if self.cut {
            Err(Error::RecvMsgCut)
        } else {
            Ok(())
        }
    }

    /// Writes the receiver's message registers after the untyped words
    /// (which the kernel copies itself): the item words of each action.
    pub fn write_receiver_items(&self, mrs: &mut [u64; MR_COUNT]) {
        for (i, a) in self.actions().iter().enumerate() {
            let at = self.words + 2 * i;
            mrs[at..at + 2].copy_from_slice(&a.receiver_words());
        }
    }
}

/// `2^order - 1`, for orders up to 63 (all ones beyond).
const fn mask(order: u8) -> u64 {
    if order >= 64 {
        u64::MAX
    } else {
        (1u64 << order) - 1
    }
}

/// Clips a range (base aligned to its order) to a space of `2^limit`
/// units: `None` if it lies outside, the whole space if it covers it.
const fn clip(base: u64, order: u8, limit: u8) -> Option<(u64, u8)> {
    if order >= limit {
        // base is a multiple of 2^order >= 2^limit: 0, or outside the space.
        return if base == 0 { Some((0, limit)) } else { None };
    }
    if limit < 64 && base >> limit != 0 {
        return None;
    }
    Some((base, order))
}

/// Fits a send range into a window by the hot spot (all in units).
const fn fit(src: (u64, u8), win: (u64, u8), hot: u64) -> (u64, u64, u8) {
    let (sb, so) = src;
    let (wb, wo) = win;
    if so >= wo {
        let off = align_down(hot & mask(so), wo);
        (sb + off, wb, wo)
    } else {
        let off = align_down(hot & mask(wo), so);
        (sb, wb + off, so)
    }
}

enum Fit {
    Action(MapAction),
    Nothing,
    Cut,
}

fn place(it: SendItem, buf: RecvItem, opts: &TransferOptions) -> Fit {
    let f = it.fpage;
    let kind = match f.kind() {
        FpageType::Memory => Kind::Mem,
        FpageType::Obj => Kind::Cap,
        _ => return Fit::Nothing,
    };
    // The window, in units of the receiver's space.
    let win = match (buf, kind) {
        (RecvItem::Window(w), _) if w.is_all() => Some((0, opts.dst.order(kind))),
        (RecvItem::Window(w), Kind::Mem) if w.kind() == FpageType::Memory => {
            clip(w.mem_base(), w.order(), opts.dst.mem_order)
        }
        (RecvItem::Window(w), Kind::Cap) if w.kind() == FpageType::Obj => {
            clip(w.obj_index(), w.order(), opts.dst.cap_order)
        }
        (RecvItem::SmallCap { index }, Kind::Cap) => clip(index, 0, opts.dst.cap_order),
        _ => return Fit::Cut,
    };
    let Some(win) = win else { return Fit::Cut };
    // The offered range and rights, in units of the sender's space.
    let (src, hot, rights) = match kind {
        Kind::Mem => {
            if f.order() < PAGE_SHIFT || f.mem_rights().is_empty() {
                return Fit::Nothing;
            }
            (
                clip(f.mem_base(), f.order(), opts.src.mem_order),
                it.snd_base(),
                f.mem_rights().0,
            )
        }
        Kind::Cap => {
            let mut r = it.cap_rights();
            if !r.contains(CapRights::R) {
                return Fit::Nothing;
            }
            if !opts.partner_s {
                r = r.difference(CapRights::S);
            }
            (
                clip(f.obj_index(), f.order(), opts.src.cap_order),
                it.snd_base() >> CAP_SHIFT,
                r.0,
            )
        }
    };
    let Some(src) = src else { return Fit::Nothing };
    let (s, d, order) = fit(src, win, hot);
    Fit::Action(MapAction {
        kind,
        src: s,
        dst: d,
        order,
        rights,
        grant: it.is_grant(),
        control: it.control,
    })
}

/// Applies the transfer rules to a message (see the module documentation).
pub fn transfer(
    tag: MsgTag,
    mrs: &[u64; MR_COUNT],
    bufs: &RecvBuffers,
    opts: &TransferOptions,
) -> Transfer {
    let words = (tag.words() as usize).min(MR_COUNT);
    let room = (MR_COUNT - words) / 2;
    let items = tag.items() as usize;
    let mut t = Transfer {
        words,
        actions: [MapAction::EMPTY; MAX_ITEMS],
        n: 0,
        cut: items > room,
        label: tag.label(),
    };
    let mut buf = 0usize;
    for i in 0..items.min(room) {
        let at = words + 2 * i;
        let it = SendItem::from_words([mrs[at], mrs[at + 1]]);
        let f = it.fpage;
        if !it.is_map_item() || matches!(f.kind(), FpageType::Special | FpageType::Io) {
            continue;
        }
        let Some(&b) = bufs.items().get(buf) else {
            t.cut = true;
            break;
        };
        match place(it, b, opts) {
            Fit::Cut => {
                t.cut = true;
                break;
            }
            Fit::Nothing => {}
            Fit::Action(a) => {
                t.actions[t.n] = a;
                t.n += 1;
            }
        }
        if !it.is_compound() {
            buf += 1;
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use l4_abi::MemRights;

    const LIMITS: Limits = Limits {
        mem_order: 48,
        cap_order: 16,
    };
    const OPTS: TransferOptions = TransferOptions {
        src: LIMITS,
        dst: LIMITS,
        partner_s: true,
    };

    fn msg(words: &[u64], items: &[SendItem]) -> (MsgTag, [u64; MR_COUNT]) {
        let mut mrs = [0u64; MR_COUNT];
        mrs[..words.len()].copy_from_slice(words);
        for (i, it) in items.iter().enumerate() {
            let at = words.len() + 2 * i;
            mrs[at..at + 2].copy_from_slice(&it.to_words());
        }
        (
            MsgTag::new(0x42, words.len() as u32, items.len() as u32, 0),
            mrs,
        )
    }

    /// The first action of a message of the one item `it` into `b`.
    fn first_action(it: SendItem, b: &RecvBuffers) -> MapAction {
        let (tag, mrs) = msg(&[], &[it]);
        transfer(tag, &mrs, b, &OPTS).actions()[0]
    }

    fn bufs(items: &[RecvItem]) -> RecvBuffers {
        let mut brs = [0u64; BR_COUNT];
        let mut at = 0;
        for it in items {
            let w = it.to_words();
            brs[at..at + it.words()].copy_from_slice(&w[..it.words()]);
            at += it.words();
        }
        RecvBuffers::from_brs(&brs)
    }

    #[test]
    fn decode_invocations() {
        let i = decode(
            sys::invocation(Cap::new(4), sys::CALL),
            MsgTag::new(-12, 3, 0, 0).0,
            Timeouts::RECV_ZERO.0 as u64,
        )
        .unwrap();
        assert_eq!(i.op, Operation::Call);
        assert_eq!(i.cap, Cap::new(4));
        assert_eq!(i.tag.label(), -12);
        assert_eq!(i.timeouts, Timeouts::RECV_ZERO);
        assert!(i.op.sends() && i.op.receives() && !i.op.open_wait() && !i.op.replies());
        let rw = decode(sys::invocation(Cap::INVALID, sys::REPLY_AND_WAIT), 0, 0).unwrap();
        assert_eq!(rw.op, Operation::ReplyAndWait);
        assert!(rw.op.replies() && rw.op.open_wait() && !rw.op.needs_cap());
        assert_eq!(
            decode(sys::invocation(Cap::INVALID, sys::SEND), 0, 0),
            Err(Error::NoPartner)
        );
        assert_eq!(
            decode(sys::invocation(Cap::new(1), 0), 0, 0),
            Err(Error::Inval),
            "no flags"
        );
        assert_eq!(
            decode(sys::invocation(Cap::new(1), sys::REPLY), 0, 0),
            Err(Error::Inval)
        );
        assert_eq!(
            decode(sys::invocation(Cap::new(1), sys::OPEN_WAIT), 0, 0),
            Err(Error::Inval)
        );
        assert_eq!(decode(0x1013, 0, 0), Err(Error::Inval), "reserved bits");
        for f in 0..16 {
            if let Some(op) = Operation::from_flags(f) {
                assert_eq!(op.flags(), f);
            }
        }
        assert_eq!(
            Operation::from_flags(sys::REPLY | sys::CALL),
            Some(Operation::ReplyAndReceive)
        );
        assert_eq!(
            Operation::from_flags(sys::REPLY | sys::SEND),
            Some(Operation::Reply)
        );
        assert!(
            decode(sys::invocation(Cap::INVALID, sys::RECV), 0, 0).is_ok(),
            "sleep"
        );
    }

    #[test]
    fn timeouts() {
        let brs = [0, 1000, 3];
        assert_eq!(
            Deadline::from_timeout(Timeout::NEVER, 5, &brs),
            Ok(Deadline::Never)
        );
        assert_eq!(
            Deadline::from_timeout(Timeout::ZERO, 5, &brs),
            Ok(Deadline::Now)
        );
        assert_eq!(
            Deadline::from_timeout(Timeout::from_us(100), 5, &brs),
            Ok(Deadline::At(105))
        );
        assert_eq!(
            Deadline::from_timeout(Timeout::MAX, u64::MAX - 1, &brs),
            Ok(Deadline::At(u64::MAX))
        );
        // Absolute: the deadline is in the named buffer register.
        assert_eq!(
            Deadline::from_timeout(Timeout::abs(1), 5, &brs),
            Ok(Deadline::At(1000))
        );
        assert_eq!(
            Deadline::from_timeout(Timeout::abs(2), 5, &brs),
            Ok(Deadline::Now),
            "already past"
        );
        assert_eq!(
            Deadline::from_timeout(Timeout::abs(3), 0, &brs),
            Err(Error::Inval),
            "no such register"
        );
        assert!(Deadline::Now.expired(0));
        assert!(!Deadline::Never.expired(u64::MAX));
        assert!(!Deadline::At(10).expired(9) && Deadline::At(10).expired(10));
        // Zero timeout: fail at once if no partner is ready.
        assert_eq!(
            when_not_ready(Phase::Send, Deadline::Now),
            Err(Error::SendTimeout)
        );
        assert_eq!(
            when_not_ready(Phase::Recv, Deadline::Now),
            Err(Error::RecvTimeout)
        );
        assert_eq!(
            when_not_ready(Phase::Recv, Deadline::At(3)),
            Ok(Deadline::At(3))
        );
        assert_eq!(Phase::Send.canceled(), Error::SendCanceled);
        assert_eq!(Phase::Recv.aborted(), Error::RecvAborted);
        assert_eq!(Phase::Recv.msg_cut(), Error::RecvMsgCut);
        assert_eq!(Phase::Send.map_failed(), Error::SendMapFailed);
        let t = Timeouts::new(Timeout::ZERO, Timeout::NEVER);
        assert_eq!(Phase::Send.timeout_of(t), Timeout::ZERO);
        assert_eq!(Phase::Recv.timeout_of(t), Timeout::NEVER);
    }

    #[test]
    fn untyped_words_only() {
        let (tag, mrs) = msg(&[1, 2, 3], &[]);
        let t = transfer(tag, &mrs, &RecvBuffers::none(), &OPTS);
        assert_eq!(t.words(), 3);
        assert!(t.actions().is_empty() && !t.is_cut());
        assert_eq!(t.receiver_tag(), MsgTag::new(0x42, 3, 0, 0));
        assert_eq!(t.sender_result(), Ok(()));
        // 63 words, the most a tag can say, all fit.
        let t = transfer(
            MsgTag::new(1, 63, 0, 0),
            &[7; MR_COUNT],
            &RecvBuffers::none(),
            &OPTS,
        );
        assert_eq!(t.words(), 63);
    }

    #[test]
    fn memory_into_window() {
        let it = SendItem::map(Fpage::mem(0x40_0000, 12, MemRights::RW), 0);
        let (tag, mrs) = msg(&[9], &[it]);
        let b = bufs(&[RecvItem::Window(Fpage::mem(
            0x8000_0000,
            12,
            MemRights::RWX,
        ))]);
        let t = transfer(tag, &mrs, &b, &OPTS);
        assert_eq!(
            t.actions(),
            &[MapAction {
                kind: Kind::Mem,
                src: 0x40_0000,
                dst: 0x8000_0000,
                order: 12,
                rights: 6,
                grant: false,
                control: it.control
            }]
        );
        assert_eq!(t.receiver_tag().items(), 1);
        let mut rmrs = [0u64; MR_COUNT];
        t.write_receiver_items(&mut rmrs);
        assert_eq!(Fpage(rmrs[2]), Fpage::mem(0x8000_0000, 12, MemRights::RW));
        assert_eq!(rmrs[1], it.control);
    }

    #[test]
    fn hot_spot_picks_the_part_that_lands() {
        use MemRights as M;
        // (offered, hot spot, window: `None` the whole space) -> (src, dst,
        // order, rights).
        let cases = [
            // 2 MiB offered, 4 KiB window: the page containing the hot spot.
            (
                Fpage::mem(0x20_0000, 21, M::RWX),
                0x2f_5123,
                Some(Fpage::mem(0x1000, 12, M::RWX)),
                (0x2f_5000, 0x1000, 12, 7),
            ),
            // 4 KiB offered into a whole-space window: lands at the hot spot
            // (a pager answering a page fault).
            (
                Fpage::mem(0x7000, 12, M::RX),
                0x40_1abc,
                None,
                (0x7000, 0x40_1000, 12, 5),
            ),
            // A 64 KiB window at 0x10000 with hot spot 0x...3000: offset
            // 0x3000.
            (
                Fpage::mem(0x9000, 12, M::R),
                0xdead_3000,
                Some(Fpage::mem(0x1_0000, 16, M::R)),
                (0x9000, 0x1_3000, 12, 4),
            ),
        ];
        for (offered, hot_spot, window, want) in cases {
            let b = match window {
                Some(w) => bufs(&[RecvItem::Window(w)]),
                None => RecvBuffers::whole_space(),
            };
            let a = first_action(SendItem::map(offered, hot_spot), &b);
            assert_eq!((a.src, a.dst, a.order, a.rights), want, "{offered:?}");
        }
    }

    #[test]
    fn capabilities_rights_and_small_buffer() {
        let it = SendItem::caps(7, 0, CapRights(CapRights::RWS.0 | CapRights::C.0), 0);
        let (tag, mrs) = msg(&[], &[it]);
        let b = bufs(&[RecvItem::SmallCap { index: 30 }]);
        let a = transfer(tag, &mrs, &b, &OPTS).actions()[0];
        assert_eq!((a.kind, a.src, a.dst, a.order), (Kind::Cap, 7, 30, 0));
        assert_eq!(a.rights, 0x27);
        // Without S on the invoked capability, S is dropped.
        let no_s = TransferOptions {
            partner_s: false,
            ..OPTS
        };
        assert_eq!(transfer(tag, &mrs, &b, &no_s).actions()[0].rights, 0x25);
        // Without R nothing is mapped (the buffer is still used).
        let it = SendItem::caps(7, 0, CapRights::W, 0);
        let (tag, mrs) = msg(&[], &[it]);
        let t = transfer(tag, &mrs, &b, &OPTS);
        assert!(t.actions().is_empty() && !t.is_cut());
    }

    #[test]
    fn capability_window_and_whole_space() {
        let it = SendItem::caps(0x10, 2, CapRights::RO, 0);
        let b = bufs(&[RecvItem::Window(Fpage::obj(0x100, 4, CapRights::RWSD))]);
        let a = first_action(it, &b);
        assert_eq!((a.src, a.dst, a.order), (0x10, 0x100, 2));
        // Into the all-spaces window, at the hot spot index.
        let it = SendItem::caps(0x10, 0, CapRights::RO, 0x55 << 12);
        let a = first_action(it, &RecvBuffers::whole_space());
        assert_eq!((a.src, a.dst), (0x10, 0x55));
    }

    #[test]
    fn compound_items_share_a_buffer() {
        let a = SendItem::map(Fpage::mem(0x1000, 12, MemRights::R), 0x1000).compound();
        let b = SendItem::map(Fpage::mem(0x2000, 12, MemRights::R), 0x2000);
        let c = SendItem::map(Fpage::mem(0x3000, 12, MemRights::R), 0x3000);
        let (tag, mrs) = msg(&[], &[a, b, c]);
        let w = Fpage::mem(0x10_0000, 16, MemRights::R);
        let t = transfer(tag, &mrs, &bufs(&[RecvItem::Window(w)]), &OPTS);
        // a and b go into the one window; c finds no buffer: cut.
        assert_eq!(t.actions().len(), 2);
        assert_eq!(t.actions()[1].dst, 0x10_2000);
        assert!(t.is_cut());
        assert_eq!(t.sender_result(), Err(Error::SendMsgCut));
        assert_eq!(t.receiver_result(), Err(Error::RecvMsgCut));
        assert!(t.receiver_tag().has_error());
    }

    #[test]
    fn grant_flag_is_kept() {
        let it = SendItem::grant(Fpage::mem(0x5000, 12, MemRights::RW), 0);
        let a = first_action(it, &RecvBuffers::whole_space());
        assert!(a.grant);
    }

    #[test]
    fn hostile_too_many_items() {
        // 60 words leave room for 2 items; the tag claims 40.
        let mut mrs = [0u64; MR_COUNT];
        for i in 0..2 {
            let it =
                SendItem::map(Fpage::mem(0x1000 * (i as u64 + 1), 12, MemRights::R), 0).compound();
            mrs[60 + 2 * i..62 + 2 * i].copy_from_slice(&it.to_words());
        }
        let tag = MsgTag::new(0, 60, 40, 0);
        let t = transfer(tag, &mrs, &RecvBuffers::whole_space(), &OPTS);
        assert_eq!(t.words(), 60);
        assert_eq!(t.actions().len(), 2);
        assert!(t.is_cut());
        // 63 words and one item: no room at all.
        let t = transfer(
            MsgTag::new(0, 63, 1, 0),
            &mrs,
            &RecvBuffers::whole_space(),
            &OPTS,
        );
        assert!(t.is_cut() && t.actions().is_empty());
        // 63 items claimed with no words: only 32 fit.
        let t = transfer(
            MsgTag::new(0, 0, 63, 0),
            &[0; MR_COUNT],
            &RecvBuffers::whole_space(),
            &OPTS,
        );
        assert!(t.is_cut());
    }

    #[test]
    fn hostile_no_receive_window() {
        let it = SendItem::map(Fpage::mem(0x1000, 12, MemRights::R), 0);
        let (tag, mrs) = msg(&[1], &[it]);
        let t = transfer(tag, &mrs, &RecvBuffers::none(), &OPTS);
        assert!(t.is_cut() && t.actions().is_empty());
        assert_eq!(t.words(), 1, "words still delivered");
        // A capability window does not take memory, a small slot neither.
        for b in [
            RecvItem::Window(Fpage::obj(0, 4, CapRights::RO)),
            RecvItem::SmallCap { index: 3 },
            RecvItem::Window(Fpage::invalid()),
        ] {
            let t = transfer(tag, &mrs, &bufs(&[b]), &OPTS);
            assert!(t.is_cut(), "{b:?}");
        }
        // A memory window does not take capabilities.
        let c = SendItem::caps(1, 0, CapRights::RO, 0);
        let (tag, mrs) = msg(&[], &[c]);
        assert!(
            transfer(
                tag,
                &mrs,
                &bufs(&[RecvItem::Window(Fpage::mem(0, 12, MemRights::R))]),
                &OPTS
            )
            .is_cut()
        );
        // A window outside the receiver's space is no window.
        let b = bufs(&[RecvItem::SmallCap { index: 1 << 20 }]);
        assert!(transfer(tag, &mrs, &b, &OPTS).is_cut());
    }

    #[test]
    fn hostile_items_outside_sender_space_or_rights() {
        let b = RecvBuffers::whole_space();
        // Beyond the sender's 48-bit space: nothing mapped.
        let it = SendItem::map(Fpage::mem(1 << 50, 12, MemRights::RW), 0);
        let (tag, mrs) = msg(&[], &[it]);
        let t = transfer(tag, &mrs, &b, &OPTS);
        assert!(t.actions().is_empty() && !t.is_cut());
        // A capability index beyond the table.
        let it = SendItem::caps(1 << 17, 0, CapRights::RO, 0);
        let (tag, mrs) = msg(&[], &[it]);
        assert!(transfer(tag, &mrs, &b, &OPTS).actions().is_empty());
        // No rights, or a sub-page flexpage: nothing.
        for f in [
            Fpage::mem(0x1000, 12, MemRights::NONE),
            Fpage::mem(0x1000, 11, MemRights::RW),
        ] {
            let (tag, mrs) = msg(&[], &[SendItem::map(f, 0)]);
            assert!(transfer(tag, &mrs, &b, &OPTS).actions().is_empty());
        }
        // "Everything": clipped to the sender's space, fitted at the hot spot.
        let it = SendItem::map(Fpage::mem(0, 63, MemRights::RWX), 0);
        let a = first_action(it, &b);
        assert_eq!((a.src, a.dst, a.order), (0, 0, 48));
        // Unaligned base: aligned down to the order.
        let it = SendItem::map(Fpage::mem(0x12_3000, 16, MemRights::R), 0);
        let a = first_action(it, &b);
        assert_eq!((a.src, a.order), (0x12_0000, 16));
    }

    #[test]
    fn void_items_are_skipped() {
        let void = SendItem::from_words([0, Fpage::mem(0x1000, 12, MemRights::R).0]);
        let invalid = SendItem::map(Fpage::invalid(), 0);
        let all = SendItem::map(Fpage::all(), 0);
        let real = SendItem::map(Fpage::mem(0x2000, 12, MemRights::R), 0);
        let (tag, mrs) = msg(&[], &[void, invalid, all, real]);
        let b = bufs(&[RecvItem::Window(Fpage::mem(0x9000, 12, MemRights::R))]);
        let t = transfer(tag, &mrs, &b, &OPTS);
        assert_eq!(t.actions().len(), 1);
        assert_eq!(t.actions()[0].src, 0x2000);
        assert!(!t.is_cut());
    }

    #[test]
    fn receive_buffer_parsing_is_bounded() {
        // Buffer registers full of small-cap items: at most BR_COUNT items.
        let brs = [RecvItem::SmallCap { index: 1 }.to_words()[0]; BR_COUNT];
        assert_eq!(RecvBuffers::from_brs(&brs).items().len(), BR_COUNT);
        assert_eq!(RecvBuffers::from_brs(&[]).items().len(), 0);
        assert_eq!(
            RecvBuffers::whole_space().items(),
            &[RecvItem::Window(Fpage::all())]
        );
    }

    #[test]
    fn clipping() {
        assert_eq!(clip(0, 63, 48), Some((0, 48)));
        assert_eq!(clip(1 << 50, 12, 48), None);
        assert_eq!(clip(1 << 49, 49, 48), None);
        assert_eq!(clip(0x1000, 12, 48), Some((0x1000, 12)));
        assert_eq!(clip(0, 12, 64), Some((0, 12)));
        assert_eq!(clip(0, 64, 64), Some((0, 64)));
    }
}

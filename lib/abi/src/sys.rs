//! The invocation word (`x0` of a native call): capability selector and
//! operation flags, as Fiasco's `l4_cap_idx_t | l4_syscall_flags_t`.
//!
//! `x0 = index << CAP_SHIFT | flags`. Bit 11 ([`INVALID_CAP_BIT`]) marks the
//! invalid selector ([`Cap::INVALID`]), used by operations that do not name
//! a partner (wait, reply-and-wait) and by a receive that only sleeps. Bits
//! 4..11 are reserved and must be zero. `x8` must be [`X8_IPC`] (zero) for an
//! invocation; non-zero values select the temporary [`crate::debug`] calls.

/// Send phase: send the message to the invoked object.
pub const SEND: u64 = 0x1;
/// Receive phase: wait for a message (from the invoked object unless
/// [`OPEN_WAIT`] is set).
pub const RECV: u64 = 0x2;
/// Receive from any sender.
pub const OPEN_WAIT: u64 = 0x4;
/// Send through the implicit one-shot reply capability instead of the
/// invoked capability.
pub const REPLY: u64 = 0x8;
/// Call: send, then receive the reply from the same object.
pub const CALL: u64 = SEND | RECV;
/// Wait: receive from anyone.
pub const WAIT: u64 = RECV | OPEN_WAIT;
/// Send to the invoked object, then receive from anyone.
pub const SEND_AND_WAIT: u64 = SEND | RECV | OPEN_WAIT;
/// Reply to the last caller, then receive from anyone (the server loop).
pub const REPLY_AND_WAIT: u64 = REPLY | SEND | RECV | OPEN_WAIT;
/// Mask of the flag bits.
pub const FLAGS_MASK: u64 = 0xf;

/// `x8` of an invocation.
pub const X8_IPC: u64 = 0;

/// Bits a capability index is shifted by in selectors and flexpages.
pub const CAP_SHIFT: u32 = 12;
/// The bit that marks the invalid selector.
pub const INVALID_CAP_BIT: u64 = 1 << (CAP_SHIFT - 1);
/// Reserved bits of the invocation word.
pub const RESERVED_MASK: u64 = (INVALID_CAP_BIT - 1) & !FLAGS_MASK;

/// A capability selector: an index into the caller's capability table, or
/// the invalid selector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(transparent)]
pub struct Cap(u64);

impl Cap {
    /// The invalid selector (Fiasco's `L4_INVALID_CAP`). Invoking it with a
    /// receive phase only waits (a sleep when the timeout is finite).
    pub const INVALID: Cap = Cap(!0u64 << (CAP_SHIFT - 1));
    /// The largest index a selector can carry.
    pub const MAX_INDEX: u64 = (1 << (64 - CAP_SHIFT)) - 1;

    /// The selector of capability `index` (cut to [`Cap::MAX_INDEX`]).
    pub const fn new(index: u64) -> Cap {
        Cap((index & Cap::MAX_INDEX) << CAP_SHIFT)
    }

    /// Reads a selector (e.g. from a message word); the low 11 bits are
    /// ignored unless the invalid bit is set.
    pub const fn from_selector(sel: u64) -> Cap {
        if sel & INVALID_CAP_BIT != 0 {
            Cap::INVALID
        } else {
            Cap(sel & !(INVALID_CAP_BIT | (INVALID_CAP_BIT - 1)))
        }
    }

    /// The selector word (`index << CAP_SHIFT`).
    pub const fn selector(self) -> u64 {
        self.0
    }

    /// The index, or `None` for the invalid selector.
    pub const fn index(self) -> Option<u64> {
        if self.is_invalid() {
            None
        } else {
            Some(self.0 >> CAP_SHIFT)
        }
    }

    /// Whether this is the invalid selector.
    pub const fn is_invalid(self) -> bool {
        self.0 & INVALID_CAP_BIT != 0
    }
}

/// Builds the invocation word for `x0`.
pub const fn invocation(cap: Cap, flags: u64) -> u64 {
    cap.selector() | (flags & FLAGS_MASK)
}

/// Splits an invocation word into selector and flags. `None` if reserved
/// bits are set.
pub const fn decode_invocation(x0: u64) -> Option<(Cap, u64)> {
    if x0 & RESERVED_MASK != 0 {
        return None;
    }
    Some((Cap::from_selector(x0), x0 & FLAGS_MASK))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors() {
        assert_eq!(Cap::new(3).selector(), 3 << 12);
        assert_eq!(Cap::new(3).index(), Some(3));
        assert_eq!(Cap::INVALID.index(), None);
        assert_eq!(Cap::INVALID.selector(), !0u64 << 11);
        assert_eq!(Cap::from_selector(0x5003), Cap::new(5));
        assert_eq!(Cap::from_selector(0x5803), Cap::INVALID);
        assert_eq!(Cap::new(Cap::MAX_INDEX + 1), Cap::new(0));
    }

    #[test]
    fn invocation_words() {
        assert_eq!(REPLY_AND_WAIT, 0xf);
        assert_eq!(CALL, 3);
        assert_eq!(WAIT, 6);
        let x0 = invocation(Cap::new(7), CALL);
        assert_eq!(x0, 0x7003);
        assert_eq!(decode_invocation(x0), Some((Cap::new(7), CALL)));
        assert_eq!(
            decode_invocation(invocation(Cap::INVALID, WAIT)),
            Some((Cap::INVALID, WAIT))
        );
        assert_eq!(decode_invocation(0x7013), None, "reserved bit 4");
        assert_eq!(decode_invocation(0x7403), None, "reserved bit 10");
    }
}

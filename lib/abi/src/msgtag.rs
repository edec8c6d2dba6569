//! The message tag: what a message consists of and which protocol it speaks.
//!
//! Layout (as Fiasco's `l4_msgtag_t`, one 64-bit word):
//!
//! | bits   | field                                                    |
//! |--------|----------------------------------------------------------|
//! | 0..6   | number of untyped words in the message registers (0..63) |
//! | 6..12  | number of typed items (two words each) after them        |
//! | 12..16 | flags ([`MsgTag::ERROR`], [`MsgTag::TRANSFER_FPU`], ...) |
//! | 16..64 | label, signed: the protocol for kernel objects           |

use crate::error::Error;
use crate::proto::Proto;

/// A message tag (`x1` of a native call, both ways).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct MsgTag(pub u64);

impl MsgTag {
    /// Flag set in a received tag when the operation failed.
    pub const ERROR: u16 = 0x8000;
    /// Sender flag: propagate the reply connection (accepted, not implemented).
    pub const PROPAGATE: u16 = 0x4000;
    /// Sender flag: make a real scheduling decision instead of donating time.
    pub const SCHEDULE: u16 = 0x2000;
    /// Sender flag: transfer the FPU state (accepted, not implemented).
    pub const TRANSFER_FPU: u16 = 0x1000;
    /// Mask of all flag bits.
    pub const FLAGS_MASK: u16 = 0xf000;
    /// Largest number of untyped words a tag can describe.
    pub const MAX_WORDS: u32 = 0x3f;
    /// Largest number of typed items a tag can describe.
    pub const MAX_ITEMS: u32 = 0x3f;
    /// Smallest label the 48-bit label field holds.
    pub const LABEL_MIN: i64 = -(1 << 47);
    /// Largest label the 48-bit label field holds.
    pub const LABEL_MAX: i64 = (1 << 47) - 1;

    /// A tag; each field is truncated to its width (use [`MsgTag::checked`]
    /// to refuse values that do not fit).
    pub const fn new(label: i64, words: u32, items: u32, flags: u16) -> MsgTag {
        MsgTag(
            ((label as u64) << 16)
                | (words as u64 & 0x3f)
                | ((items as u64 & 0x3f) << 6)
                | (flags & Self::FLAGS_MASK) as u64,
        )
    }

    /// A tag, or `None` if a field does not fit its width.
    pub const fn checked(label: i64, words: u32, items: u32, flags: u16) -> Option<MsgTag> {
        if label < Self::LABEL_MIN
            || label > Self::LABEL_MAX
            || words > Self::MAX_WORDS
            || items > Self::MAX_ITEMS
            || flags & !Self::FLAGS_MASK != 0
        {
            return None;
        }
        Some(MsgTag::new(label, words, items, flags))
    }

    /// A tag for a kernel-object protocol.
    pub const fn proto(proto: Proto, words: u32, items: u32) -> MsgTag {
        MsgTag::new(proto as i64, words, items, 0)
    }

    /// The label (signed).
    pub const fn label(self) -> i64 {
        (self.0 as i64) >> 16
    }

    /// The number of untyped words.
    pub const fn words(self) -> u32 {
        (self.0 & 0x3f) as u32
    }

    /// The number of typed items.
    pub const fn items(self) -> u32 {
        ((self.0 >> 6) & 0x3f) as u32
    }

    /// The flag bits.
    pub const fn flags(self) -> u16 {
        (self.0 as u16) & Self::FLAGS_MASK
    }

    /// Whether the [`MsgTag::ERROR`] flag is set.
    pub const fn has_error(self) -> bool {
        self.flags() & Self::ERROR != 0
    }

    /// The same tag with another label.
    pub const fn with_label(self, label: i64) -> MsgTag {
        MsgTag((self.0 & 0xffff) | ((label as u64) << 16))
    }

    /// The same tag with other word and item counts.
    pub const fn with_counts(self, words: u32, items: u32) -> MsgTag {
        MsgTag::new(self.label(), words, items, self.flags())
    }

    /// The same tag with `flags` added.
    pub const fn with_flags(self, flags: u16) -> MsgTag {
        MsgTag(self.0 | (flags & Self::FLAGS_MASK) as u64)
    }

    /// The number of message registers the message occupies
    /// (`words + 2 * items`; may exceed the 64 registers of a UTCB).
    pub const fn mr_len(self) -> usize {
        self.words() as usize + 2 * self.items() as usize
    }

    /// The kernel protocol named by the label, if any.
    pub fn protocol(self) -> Option<Proto> {
        Proto::try_from(self.label()).ok()
    }

    /// Whether this is a page-fault message.
    pub const fn is_page_fault(self) -> bool {
        self.label() == Proto::PageFault as i64
    }

    /// Whether this is an exception message.
    pub const fn is_exception(self) -> bool {
        self.label() == Proto::Exception as i64
    }

    /// Whether this is an IRQ message.
    pub const fn is_irq(self) -> bool {
        self.label() == Proto::Irq as i64
    }

    /// Reads a kernel object's reply (Fiasco's `l4_error`): a non-negative
    /// label is the result, a negative one an error.
    pub const fn to_result(self) -> Result<u64, Error> {
        Error::from_ret(self.label())
    }

    /// A reply tag carrying `r` in its label (no words, no items).
    pub const fn reply(r: Result<u64, Error>) -> MsgTag {
        match r {
            Ok(v) => MsgTag::new(v as i64, 0, 0, 0),
            Err(e) => MsgTag::new(e.as_ret(), 0, 0, 0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields() {
        let t = MsgTag::new(-15, 3, 1, MsgTag::SCHEDULE);
        assert_eq!(t.label(), -15);
        assert_eq!(t.words(), 3);
        assert_eq!(t.items(), 1);
        assert_eq!(t.flags(), MsgTag::SCHEDULE);
        assert!(!t.has_error());
        assert_eq!(t.protocol(), Some(Proto::Factory));
        assert_eq!(t.mr_len(), 5);
        // Same bits as Fiasco's l4_msgtag(-15, 3, 1, 0x2000).
        assert_eq!(t.0, ((-15i64 as u64) << 16) | 3 | (1 << 6) | 0x2000);
    }

    #[test]
    fn truncation_and_checks() {
        let t = MsgTag::new(1, 64, 65, 0x0fff);
        assert_eq!((t.words(), t.items(), t.flags()), (0, 1, 0));
        assert_eq!(MsgTag::checked(1, 64, 0, 0), None);
        assert_eq!(MsgTag::checked(1, 0, 64, 0), None);
        assert_eq!(MsgTag::checked(1, 0, 0, 1), None);
        assert_eq!(MsgTag::checked(MsgTag::LABEL_MAX + 1, 0, 0, 0), None);
        assert_eq!(
            MsgTag::checked(MsgTag::LABEL_MIN, 63, 63, MsgTag::ERROR).map(|t| t.label()),
            Some(MsgTag::LABEL_MIN)
        );
    }

    #[test]
    fn results() {
        assert_eq!(MsgTag::reply(Ok(5)).to_result(), Ok(5));
        assert_eq!(
            MsgTag::reply(Err(Error::NoMem)).to_result(),
            Err(Error::NoMem)
        );
        let t = MsgTag::new(7, 1, 2, 0)
            .with_label(-2)
            .with_flags(MsgTag::ERROR);
        assert!(t.is_page_fault() && t.has_error());
        assert_eq!((t.words(), t.items()), (1, 2));
        assert_eq!(t.with_counts(4, 0).mr_len(), 4);
        assert!(MsgTag::proto(Proto::Irq, 0, 0).is_irq());
        assert!(MsgTag::proto(Proto::Exception, 0, 0).is_exception());
    }
}

//! The user thread control block (UTCB): one per thread, 1 KiB, mapped in
//! the thread's task and readable by the kernel. User code finds its own
//! UTCB in `TPIDRRO_EL0` (`call::utcb`).
//!
//! | offset | words | content                                                |
//! |--------|-------|--------------------------------------------------------|
//! | 0      | 64    | message registers (MRs): untyped words, then send items |
//! | 512    | 1     | buffer descriptor (BDR): reserved, write 0             |
//! | 520    | 31    | buffer registers (BRs): receive items                  |
//! | 768    | 32    | thread control registers (TCRs)                        |
//!
//! TCR 0 holds Fiasco's IPC error code of the last failed call ([`TCR_ERROR`],
//! also reported in `x0`), TCR 1 is reserved, TCRs 2.. are user words the
//! kernel neither reads nor changes ([`TCR_USER`]).

/// Number of message registers.
pub const MR_COUNT: usize = 64;
/// Number of buffer registers.
pub const BR_COUNT: usize = 31;
/// Number of thread control registers.
pub const TCR_COUNT: usize = 32;
/// Size of a UTCB in bytes.
pub const UTCB_SIZE: usize = 1024;
/// Required alignment of a UTCB.
pub const UTCB_ALIGN: usize = 1024;

/// Byte offset of the message registers.
pub const MR_OFFSET: usize = 0;
/// Byte offset of the buffer descriptor.
pub const BDR_OFFSET: usize = 512;
/// Byte offset of the buffer registers.
pub const BR_OFFSET: usize = 520;
/// Byte offset of the thread control registers.
pub const TCR_OFFSET: usize = 768;

/// TCR index of the last IPC error code (Fiasco's `L4_IPC_*`, 0 if none).
pub const TCR_ERROR: usize = 0;
/// TCR index reserved for the kernel.
pub const TCR_RESERVED: usize = 1;
/// TCR indices free for user data.
pub const TCR_USER: core::ops::Range<usize> = 2..TCR_COUNT;

/// A UTCB.
#[derive(Clone, Debug, PartialEq, Eq)]
#[repr(C, align(1024))]
pub struct Utcb {
    /// Message registers.
    pub mr: [u64; MR_COUNT],
    /// Buffer descriptor (reserved, 0).
    pub bdr: u64,
    /// Buffer registers.
    pub br: [u64; BR_COUNT],
    /// Thread control registers.
    pub tcr: [u64; TCR_COUNT],
}

const _: () = {
    assert!(core::mem::size_of::<Utcb>() == UTCB_SIZE);
    assert!(core::mem::align_of::<Utcb>() == UTCB_ALIGN);
    assert!(core::mem::offset_of!(Utcb, mr) == MR_OFFSET);
    assert!(core::mem::offset_of!(Utcb, bdr) == BDR_OFFSET);
    assert!(core::mem::offset_of!(Utcb, br) == BR_OFFSET);
    assert!(core::mem::offset_of!(Utcb, tcr) == TCR_OFFSET);
};

impl Utcb {
    /// An all-zero UTCB.
    pub const fn new() -> Utcb {
        Utcb {
            mr: [0; MR_COUNT],
            bdr: 0,
            br: [0; BR_COUNT],
            tcr: [0; TCR_COUNT],
        }
    }
}

impl Default for Utcb {
    fn default() -> Utcb {
        Utcb::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let u = Utcb::new();
        let base = &u as *const Utcb as usize;
        assert_eq!(u.br.as_ptr() as usize - base, BR_OFFSET);
        assert_eq!(u.tcr.as_ptr() as usize - base, TCR_OFFSET);
        assert_eq!(TCR_USER.len(), 30);
        assert_eq!(Utcb::default(), u);
    }
}

//! The message of every kernel-object operation, declared once.
//!
//! Each operation is one struct: its fields are the message's arguments in
//! order, first the untyped words after `MR0` (the opcode), then the typed
//! items. From the one declaration come the client's encoder
//! ([`Op::encode`], used by the `l4` crate) and the kernel's decoder
//! ([`Op::decode`], which refuses a short or malformed message with a
//! [`MsgError`] naming the operation and the field). Each protocol also has
//! an enum of its operations whose `decode` reads the opcode and then the
//! operation's arguments (e.g. [`TaskMsg::decode`]); operation replies with
//! words have a struct implementing [`Reply`].
//!
//! Words after the last declared argument are ignored, as are the bits
//! above [`OPCODE_MASK`] in `MR0` of operations without flags. A typed item
//! argument must be a map item of one capability ([`CapArg`]).
//!
//! ```
//! use l4_abi::ops::{CapArg, Op, TaskMsg, TaskMap};
//! use l4_abi::{CapRights, Fpage, MemRights, SendItem, utcb::MR_COUNT};
//!
//! let item = SendItem::map(Fpage::mem(0x1000, 12, MemRights::RW), 0x2000);
//! let op = TaskMap { item, src: CapArg::new(1, CapRights::RWS) };
//! let mut mr = [0; MR_COUNT];
//! let tag = op.encode(&mut mr);
//! assert_eq!((tag.words(), tag.items()), (3, 1));
//! assert_eq!(TaskMsg::decode(tag, &mr), Ok(TaskMsg::Map(op)));
//! ```

use crate::fpage::{CapRights, Fpage, FpageType, SendItem};
use crate::msgtag::MsgTag;
use crate::proto::{
    ControlFlags, ExRegsFlags, FactoryOp, IcuOp, IrqOp, IrqSenderOp, KobjectOp, OPCODE_MASK,
    SchedCpuSet, SchedulerOp, SemaphoreOp, Sigma0Op, TaskOp, ThreadOp, UnmapFlags, VconOp, VmOp,
    varg, vcon,
};
use crate::utcb::MR_COUNT;
use crate::{Error, Proto, Timeout, Timeouts};

/// Why a message does not have the layout of its operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MsgError {
    /// `MR0` names no operation of the protocol (`op` is the protocol).
    UnknownOp {
        /// The protocol's enum.
        op: &'static str,
        /// The word read.
        mr0: u64,
    },
    /// The message ends before the argument `field` of `op`.
    Short {
        /// The operation (`Protocol::Op`).
        op: &'static str,
        /// The argument.
        field: &'static str,
    },
    /// The argument `field` of `op` holds a value its layout does not allow
    /// (a typed item that is no capability, a varg of the wrong type, a
    /// byte count beyond the limit).
    Malformed {
        /// The operation (`Protocol::Op`).
        op: &'static str,
        /// The argument.
        field: &'static str,
    },
}

impl From<MsgError> for Error {
    /// An unknown operation is [`Error::NoSys`]; a short or malformed
    /// message [`Error::Inval`].
    fn from(e: MsgError) -> Error {
        match e {
            MsgError::UnknownOp { .. } => Error::NoSys,
            MsgError::Short { .. } | MsgError::Malformed { .. } => Error::Inval,
        }
    }
}

impl core::fmt::Display for MsgError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MsgError::UnknownOp { op, mr0 } => write!(f, "{op}: unknown operation {mr0:#x}"),
            MsgError::Short { op, field } => write!(f, "{op}: message ends before `{field}`"),
            MsgError::Malformed { op, field } => write!(f, "{op}: malformed `{field}`"),
        }
    }
}

/// What went wrong reading one argument (the operation adds the names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldError {
    /// Not enough words (or no typed item) left.
    Short,
    /// The value is not allowed.
    Malformed,
}

impl FieldError {
    /// The message error for argument `field` of operation `op`.
    pub const fn at(self, op: &'static str, field: &'static str) -> MsgError {
        match self {
            FieldError::Short => MsgError::Short { op, field },
            FieldError::Malformed => MsgError::Malformed { op, field },
        }
    }
}

/// A value that travels in untyped message words.
pub trait Field: Sized {
    /// Writes the value at the start of `w`; returns the number of words
    /// written (words that do not fit are dropped).
    fn put(&self, w: &mut [u64]) -> usize;
    /// Reads the value from the start of `w`, the message words left;
    /// returns it and the number of words it took.
    fn take(w: &[u64]) -> Result<(Self, usize), FieldError>;
}

/// Writes `v` to `w[at]` if it exists.
fn set(w: &mut [u64], at: usize, v: u64) {
    if let Some(s) = w.get_mut(at) {
        *s = v;
    }
}

/// `n` words from the start of `w`, or [`FieldError::Short`].
fn first<const N: usize>(w: &[u64]) -> Result<[u64; N], FieldError> {
    match w.get(..N) {
        Some(s) => {
            let mut a = [0; N];
            a.copy_from_slice(s);
            Ok(a)
        }
        None => Err(FieldError::Short),
    }
}

impl Field for u64 {
    fn put(&self, w: &mut [u64]) -> usize {
        set(w, 0, *self);
        1
    }
    fn take(w: &[u64]) -> Result<(u64, usize), FieldError> {
        Ok((first::<1>(w)?[0], 1))
    }
}

impl Field for Fpage {
    fn put(&self, w: &mut [u64]) -> usize {
        self.0.put(w)
    }
    fn take(w: &[u64]) -> Result<(Fpage, usize), FieldError> {
        Ok((Fpage(first::<1>(w)?[0]), 1))
    }
}

/// A send item in two untyped words (Task map: a flexpage of the source).
impl Field for SendItem {
    fn put(&self, w: &mut [u64]) -> usize {
        let [c, f] = self.to_words();
        set(w, 0, c);
        set(w, 1, f);
        2
    }
    fn take(w: &[u64]) -> Result<(SendItem, usize), FieldError> {
        Ok((SendItem::from_words(first::<2>(w)?), 2))
    }
}

/// A CPU set: the granularity/offset word, then the map.
impl Field for SchedCpuSet {
    fn put(&self, w: &mut [u64]) -> usize {
        set(w, 0, self.gran_offset());
        set(w, 1, self.map);
        2
    }
    fn take(w: &[u64]) -> Result<(SchedCpuSet, usize), FieldError> {
        let [g, m] = first::<2>(w)?;
        Ok((SchedCpuSet::from_words(g, m), 2))
    }
}

/// A timeout in the receive half of a [`Timeouts`] word (send half never).
impl Field for Timeout {
    fn put(&self, w: &mut [u64]) -> usize {
        (Timeouts::new(Timeout::NEVER, *self).0 as u64).put(w)
    }
    fn take(w: &[u64]) -> Result<(Timeout, usize), FieldError> {
        Ok((Timeouts::from_reg(first::<1>(w)?[0]).recv(), 1))
    }
}

/// Flag sets travel as their bits (unknown bits are kept).
macro_rules! flags_field {
    ($($t:ty),*) => {$(
        impl Field for $t {
            fn put(&self, w: &mut [u64]) -> usize {
                self.bits().put(w)
            }
            fn take(w: &[u64]) -> Result<($t, usize), FieldError> {
                Ok((<$t>::from_bits_retain(first::<1>(w)?[0]), 1))
            }
        }
    )*};
}

flags_field!(ControlFlags, UnmapFlags);

/// A trailing optional argument: absent when the message ends before it.
impl<T: Field> Field for Option<T> {
    fn put(&self, w: &mut [u64]) -> usize {
        self.as_ref().map_or(0, |v| v.put(w))
    }
    fn take(w: &[u64]) -> Result<(Option<T>, usize), FieldError> {
        if w.is_empty() {
            return Ok((None, 0));
        }
        T::take(w).map(|(v, n)| (Some(v), n))
    }
}

/// A value encoded as a typed factory argument ([`varg`]): a header word,
/// then the value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Varg<T>(pub T);

/// Reads the one-word value of a varg of type `ty`.
fn varg_word(w: &[u64], ty: u64) -> Result<(u64, usize), FieldError> {
    let [h] = first::<1>(w)?;
    if h != varg::header(ty, 8) {
        return Err(FieldError::Malformed);
    }
    let [v] = first::<1>(&w[1..])?;
    Ok((v, 2))
}

impl Field for Varg<u64> {
    fn put(&self, w: &mut [u64]) -> usize {
        set(w, 0, varg::header(varg::UMWORD, 8));
        set(w, 1, self.0);
        2
    }
    fn take(w: &[u64]) -> Result<(Varg<u64>, usize), FieldError> {
        varg_word(w, varg::UMWORD).map(|(v, n)| (Varg(v), n))
    }
}

impl Field for Varg<Fpage> {
    fn put(&self, w: &mut [u64]) -> usize {
        set(w, 0, varg::header(varg::FPAGE, 8));
        set(w, 1, self.0.0);
        2
    }
    fn take(w: &[u64]) -> Result<(Varg<Fpage>, usize), FieldError> {
        varg_word(w, varg::FPAGE).map(|(v, n)| (Varg(Fpage(v)), n))
    }
}

/// Most flexpages one [`TaskUnmap`] carries (a tag describes at most 63
/// words; two are the opcode and the flags).
pub const UNMAP_MAX: usize = MsgTag::MAX_WORDS as usize - 2;

/// The flexpages of a [`TaskUnmap`]: every word after the flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fpages {
    len: usize,
    fpages: [Fpage; UNMAP_MAX],
}

impl Fpages {
    /// The first [`UNMAP_MAX`] of `fpages`.
    pub fn new(fpages: &[Fpage]) -> Fpages {
        let len = fpages.len().min(UNMAP_MAX);
        let mut a = [Fpage(0); UNMAP_MAX];
        a[..len].copy_from_slice(&fpages[..len]);
        Fpages { len, fpages: a }
    }

    /// The flexpages.
    pub fn as_slice(&self) -> &[Fpage] {
        &self.fpages[..self.len]
    }
}

impl Field for Fpages {
    fn put(&self, w: &mut [u64]) -> usize {
        for (s, f) in w.iter_mut().zip(self.as_slice()) {
            *s = f.0;
        }
        self.len.min(w.len())
    }
    fn take(w: &[u64]) -> Result<(Fpages, usize), FieldError> {
        let len = w.len().min(UNMAP_MAX);
        let mut fpages = [Fpage(0); UNMAP_MAX];
        for (f, &v) in fpages.iter_mut().zip(w) {
            *f = Fpage(v);
        }
        Ok((Fpages { len, fpages }, len))
    }
}

/// Bytes as a count word and then the bytes, eight to a word
/// (little-endian); at most `N`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bytes<const N: usize> {
    len: usize,
    data: [u8; N],
}

impl<const N: usize> Bytes<N> {
    /// The first `N` of `bytes`.
    pub fn new(bytes: &[u8]) -> Bytes<N> {
        let len = bytes.len().min(N);
        let mut data = [0; N];
        data[..len].copy_from_slice(&bytes[..len]);
        Bytes { len, data }
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.data[..self.len]
    }

    /// Writes the bytes into words from `w[0]` on; returns the words.
    fn put_data(&self, w: &mut [u64]) -> usize {
        let mut n = 0;
        for chunk in self.as_slice().chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            set(w, n, u64::from_le_bytes(b));
            n += 1;
        }
        n.min(w.len())
    }

    /// Reads `len` bytes from the words of `w`.
    fn take_data(w: &[u64], len: usize) -> Result<(Bytes<N>, usize), FieldError> {
        if len > N {
            return Err(FieldError::Malformed);
        }
        let words = len.div_ceil(8);
        let src = w.get(..words).ok_or(FieldError::Short)?;
        let mut data = [0; N];
        for (i, b) in data[..len].iter_mut().enumerate() {
            *b = src[i / 8].to_le_bytes()[i % 8];
        }
        Ok((Bytes { len, data }, words))
    }
}

impl<const N: usize> Field for Bytes<N> {
    fn put(&self, w: &mut [u64]) -> usize {
        set(w, 0, self.len as u64);
        1 + self.put_data(w.get_mut(1..).unwrap_or_default())
    }
    fn take(w: &[u64]) -> Result<(Bytes<N>, usize), FieldError> {
        let [count] = first::<1>(w)?;
        let len = usize::try_from(count).map_err(|_| FieldError::Malformed)?;
        Bytes::take_data(&w[1..], len).map(|(b, n)| (b, n + 1))
    }
}

/// A capability argument: one typed item, a map item of one capability.
///
/// Sending: the capability at `index` in the sender's table, offered with
/// `rights` (include [`CapRights::R`]: the kernel maps nothing without it).
/// Receiving (an IPC server): where the kernel put it in the receiver's
/// table and the rights it was offered with. Invoking a kernel object: the
/// caller's capability the operation uses, restricted to
/// [`CapArg::restricts`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CapArg {
    /// Capability index (sender: the one to send; receiver: where it is).
    pub index: u64,
    /// Rights offered: the flexpage's four bits and the control word's.
    pub rights: CapRights,
}

impl CapArg {
    /// Capability `index` with `rights`.
    pub const fn new(index: u64, rights: CapRights) -> CapArg {
        CapArg { index, rights }
    }

    /// What the kernel keeps of the rights of the capability named: the
    /// flexpage's rights restrict `w`, `s`, `r`, `d`; the control-word
    /// rights (`n`, `c`, ...) of the capability stay.
    pub const fn restricts(self) -> CapRights {
        CapRights(self.rights.0 | CapRights::CTL_MASK)
    }

    /// The send item that maps it.
    pub const fn item(self) -> SendItem {
        SendItem::caps(self.index, 0, self.rights, 0)
    }

    /// Reads an item: it must be a map item of one capability
    /// ([`Error::Inval`] otherwise).
    pub fn from_item(it: SendItem) -> Result<CapArg, Error> {
        if !it.is_map_item() || it.fpage.kind() != FpageType::Obj || it.fpage.order() != 0 {
            return Err(Error::Inval);
        }
        Ok(CapArg {
            index: it.fpage.obj_index(),
            rights: it.cap_rights(),
        })
    }
}

/// A value that travels as a typed item.
pub trait ItemField: Sized {
    /// The item's words, if there is one to send.
    fn put(&self) -> Option<[u64; 2]>;
    /// Reads the item (`None`: the message has no further item).
    fn take(item: Option<[u64; 2]>) -> Result<Self, FieldError>;
}

impl ItemField for CapArg {
    fn put(&self) -> Option<[u64; 2]> {
        Some(self.item().to_words())
    }
    fn take(item: Option<[u64; 2]>) -> Result<CapArg, FieldError> {
        let w = item.ok_or(FieldError::Short)?;
        CapArg::from_item(SendItem::from_words(w)).map_err(|_| FieldError::Malformed)
    }
}

/// An optional trailing item.
impl ItemField for Option<CapArg> {
    fn put(&self) -> Option<[u64; 2]> {
        self.as_ref().and_then(ItemField::put)
    }
    fn take(item: Option<[u64; 2]>) -> Result<Option<CapArg>, FieldError> {
        match item {
            Some(_) => CapArg::take(item).map(Some),
            None => Ok(None),
        }
    }
}

/// The words of typed item `n` of a message with tag `tag`, if it has one.
pub fn item_words(tag: MsgTag, mr: &[u64; MR_COUNT], n: usize) -> Option<[u64; 2]> {
    if n >= tag.items() as usize {
        return None;
    }
    let at = tag.words() as usize + 2 * n;
    let w = mr.get(at..at + 2)?;
    Some([w[0], w[1]])
}

/// An operation of a kernel object: its protocol, opcode and arguments.
pub trait Op: Sized {
    /// The tag label.
    const PROTO: Proto;
    /// `MR0` (without flags).
    const CODE: u64;
    /// `Protocol::Op`, for messages.
    const NAME: &'static str;
    /// Writes the message into `mr`; returns its tag.
    fn encode(&self, mr: &mut [u64; MR_COUNT]) -> MsgTag;
    /// Reads the message with `tag` from `mr`: the opcode must be this
    /// operation's and every argument present and well-formed.
    fn decode(tag: MsgTag, mr: &[u64; MR_COUNT]) -> Result<Self, MsgError>;
}

/// The words of a successful reply (label 0 unless the operation says).
pub trait Reply: Sized {
    /// Writes the reply words into `mr`; returns their number.
    fn encode(&self, mr: &mut [u64; MR_COUNT]) -> usize;
    /// Reads a reply of `words` words from `mr`.
    fn decode(words: usize, mr: &[u64; MR_COUNT]) -> Result<Self, MsgError>;
}

/// Whether `mr0` is the opcode `code`: its low 16 bits (`masked`, the
/// bits above are flags), or the whole word (`whole`).
macro_rules! opcode_is {
    (masked, $mr0:expr, $code:expr) => {
        $mr0 & OPCODE_MASK == $code
    };
    (whole, $mr0:expr, $code:expr) => {
        $mr0 == $code
    };
}

/// The opcode enum's variant for `mr0`.
macro_rules! opcode_of {
    (masked, $ops:ident, $mr0:expr) => {
        $ops::try_from($mr0 & OPCODE_MASK)
    };
    (whole, $ops:ident, $mr0:expr) => {
        $ops::try_from($mr0)
    };
}

/// Declares a protocol's operations: per operation a struct with its
/// arguments (optional MR0 flags, untyped words in order, typed items in
/// order) implementing [`Op`], and the protocol's enum with `decode`.
macro_rules! kernel_protocol {
    (
        $(#[$pmeta:meta])*
        pub enum $msg:ident ($proto:expr, $ops:ident, $mode:ident) {
            $(
                $(#[$ometa:meta])*
                $var:ident ( $st:ident ) {
                    $( flags: $flt:ty, )?
                    words { $( $(#[$wmeta:meta])* $w:ident : $wt:ty ),* $(,)? }
                    items { $( $(#[$imeta:meta])* $i:ident : $it:ty ),* $(,)? }
                }
            )*
        }
    ) => {
        $(
            $(#[$ometa])*
            #[derive(Clone, Copy, Debug, PartialEq, Eq)]
            pub struct $st {
                $(
                    /// The flags in `MR0` above the opcode.
                    pub flags: $flt,
                )?
                $( $(#[$wmeta])* pub $w: $wt, )*
                $( $(#[$imeta])* pub $i: $it, )*
            }

            impl Op for $st {
                const PROTO: Proto = $proto;
                const CODE: u64 = $ops::$var.code();
                const NAME: &'static str = concat!(stringify!($msg), "::", stringify!($var));

                #[allow(unused_mut, unused_assignments)]
                fn encode(&self, mr: &mut [u64; MR_COUNT]) -> MsgTag {
                    let mut mr0 = Self::CODE;
                    $( mr0 |= <$flt>::bits(&self.flags) & !OPCODE_MASK; )?
                    mr[0] = mr0;
                    let mut at = 1;
                    $( at += Field::put(&self.$w, mr.get_mut(at..).unwrap_or_default()); )*
                    let words = at.min(MsgTag::MAX_WORDS as usize);
                    let mut items = 0;
                    $(
                        if let Some(iw) = ItemField::put(&self.$i) {
                            if let Some(s) = mr.get_mut(at..at + 2) {
                                s.copy_from_slice(&iw);
                                at += 2;
                                items += 1;
                            }
                        }
                    )*
                    MsgTag::proto($proto, words as u32, items)
                }

                #[allow(unused_mut, unused_variables, unused_assignments)]
                fn decode(tag: MsgTag, mr: &[u64; MR_COUNT]) -> Result<$st, MsgError> {
                    let words = (tag.words() as usize).min(MR_COUNT);
                    let w = &mr[..words];
                    let Some(&mr0) = w.first() else {
                        return Err(MsgError::Short { op: Self::NAME, field: "opcode" });
                    };
                    if !opcode_is!($mode, mr0, Self::CODE) {
                        return Err(MsgError::UnknownOp { op: stringify!($msg), mr0 });
                    }
                    let mut at = 1;
                    $(
                        let $w = match <$wt as Field>::take(w.get(at..).unwrap_or_default()) {
                            Ok((v, n)) => {
                                at += n;
                                v
                            }
                            Err(e) => return Err(e.at(Self::NAME, stringify!($w))),
                        };
                    )*
                    let mut item = 0;
                    $(
                        let $i = <$it as ItemField>::take(item_words(tag, mr, item))
                            .map_err(|e| e.at(Self::NAME, stringify!($i)))?;
                        item += 1;
                    )*
                    Ok($st {
                        $( flags: <$flt>::from_bits_retain(mr0 & !OPCODE_MASK), )?
                        $( $w, )*
                        $( $i, )*
                    })
                }
            }
        )*

        $(#[$pmeta])*
        // Decoded once per invocation on the stack; the variants that
        // carry up to a message of flexpages or bytes are the big ones.
        #[allow(clippy::large_enum_variant)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum $msg {
            $(
                $(#[$ometa])*
                $var($st),
            )*
        }

        impl $msg {
            /// Reads the operation `MR0` names and its arguments; an
            /// opcode this kernel has no layout for is
            /// [`MsgError::UnknownOp`].
            pub fn decode(tag: MsgTag, mr: &[u64; MR_COUNT]) -> Result<$msg, MsgError> {
                let mr0 = match tag.words() {
                    0 => return Err(MsgError::Short { op: stringify!($msg), field: "opcode" }),
                    _ => mr[0],
                };
                let unknown = MsgError::UnknownOp { op: stringify!($msg), mr0 };
                #[allow(unreachable_patterns)]
                match opcode_of!($mode, $ops, mr0).map_err(|_| unknown)? {
                    $( $ops::$var => $st::decode(tag, mr).map($msg::$var), )*
                    _ => Err(unknown),
                }
            }

            /// Writes the message into `mr`; returns its tag.
            pub fn encode(&self, mr: &mut [u64; MR_COUNT]) -> MsgTag {
                match self {
                    $( $msg::$var(op) => op.encode(mr), )*
                }
            }
        }
    };
}

/// Declares reply structs: the words of a successful reply in order.
macro_rules! replies {
    ($(
        $(#[$meta:meta])*
        pub struct $st:ident { $( $(#[$fmeta:meta])* $f:ident : $ft:ty ),* $(,)? }
    )*) => {$(
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct $st {
            $( $(#[$fmeta])* pub $f: $ft, )*
        }

        impl Reply for $st {
            #[allow(unused_mut)]
            fn encode(&self, mr: &mut [u64; MR_COUNT]) -> usize {
                let mut at = 0;
                $( at += Field::put(&self.$f, mr.get_mut(at..).unwrap_or_default()); )*
                at.min(MsgTag::MAX_WORDS as usize)
            }

            #[allow(unused_mut, unused_variables, unused_assignments)]
            fn decode(words: usize, mr: &[u64; MR_COUNT]) -> Result<$st, MsgError> {
                let w = &mr[..words.min(MR_COUNT)];
                let mut at = 0;
                $(
                    let $f = match <$ft as Field>::take(w.get(at..).unwrap_or_default()) {
                        Ok((v, n)) => {
                            at += n;
                            v
                        }
                        Err(e) => return Err(e.at(stringify!($st), stringify!($f))),
                    };
                )*
                Ok($st { $( $f, )* })
            }
        }
    )*};
}

kernel_protocol! {
    /// Operations of the generic kernel-object protocol ([`Proto::Kobject`]):
    /// IPC gates and Irqs.
    pub enum KobjectMsg(Proto::Kobject, KobjectOp, masked) {
        /// Bind the endpoint (IPC gate, Irq) to a thread with a label; the
        /// caller's capability to the thread needs `S`.
        Bind(KobjectBind) {
            words {
                /// The label messages through the endpoint carry.
                label: u64,
            }
            items {
                /// The thread.
                thread: CapArg,
            }
        }
        /// Read an IPC gate's label (reply [`GateInfo`]).
        GetInfo(KobjectGetInfo) {
            words {}
            items {}
        }
    }
}

kernel_protocol! {
    /// Task operations ([`Proto::Task`], invoked on the destination task).
    pub enum TaskMsg(Proto::Task, TaskOp, masked) {
        /// Map `item` (a flexpage of the source task, its send base the
        /// destination) from the source task into the invoked task.
        Map(TaskMap) {
            words {
                /// What to map.
                item: SendItem,
            }
            items {
                /// The source task.
                src: CapArg,
            }
        }
        /// Revoke mappings of the invoked task.
        Unmap(TaskUnmap) {
            words {
                /// What to revoke where.
                flags: UnmapFlags,
                /// The flexpages; their rights bits are the rights to revoke.
                fpages: Fpages,
            }
            items {}
        }
        /// Whether a capability is valid (reply label 1 or 0); with bit 0
        /// of `sel` set, whether it has derived mappings; with `other`,
        /// whether both name the same object.
        CapInfo(TaskCapInfo) {
            words {
                /// The selector (index << 12), bit 0: ask for children.
                sel: u64,
                /// A second selector.
                other: Option<u64>,
            }
            items {}
        }
        /// Add kernel-user memory (reserved).
        AddKuMem(TaskAddKuMem) {
            words {
                /// The memory.
                fpage: Fpage,
            }
            items {}
        }
    }
}

kernel_protocol! {
    /// Thread operations ([`Proto::Thread`]).
    pub enum ThreadMsg(Proto::Thread, ThreadOp, masked) {
        /// Set pager and exception handler, bind to a task, switch alien
        /// mode; `flags` say which.
        Control(ThreadControl) {
            flags: ControlFlags,
            words {
                /// The pager: a selector in the thread's task.
                pager: u64,
                /// The exception handler: a selector in the thread's task.
                exc_handler: u64,
                /// Unused (zero).
                reserved: u64,
                /// The values of the flags (alien on/off).
                flag_vals: ControlFlags,
                /// The UTCB address of a bind.
                bind_utcb: u64,
            }
            items {
                /// The task to bind to (with `BIND_TASK`).
                bind_task: Option<CapArg>,
            }
        }
        /// Set pc and sp ([`crate::proto::ex_regs::UNCHANGED`] keeps
        /// them), cancel IPC, trigger an exception (`flags`); reply
        /// [`ExRegsReply`].
        ExRegs(ThreadExRegs) {
            flags: ExRegsFlags,
            words {
                /// The new pc.
                pc: u64,
                /// The new sp.
                sp: u64,
            }
            items {}
        }
        /// Donate the rest of the time slice to the thread.
        Switch(ThreadSwitch) {
            words {}
            items {}
        }
        /// Statistics; reply [`ThreadStatsReply`].
        Stats(ThreadStats) {
            words {}
            items {}
        }
        /// Register an Irq triggered when an IPC gate bound to the thread
        /// is deleted.
        RegisterDeleteIrq(ThreadRegisterDeleteIrq) {
            words {}
            items {
                /// The Irq.
                irq: CapArg,
            }
        }
        /// Set `TPIDRRO_EL0` (reserved: it holds the UTCB).
        ArmTpidrUro(ThreadArmTpidrUro) {
            words {
                /// The new value.
                value: u64,
            }
            items {}
        }
        /// vCPU mode ([`crate::vcpu`]): the state area (a page of the
        /// thread's task's UTCB area; 0 leaves vCPU mode) and the Vm the
        /// guest runs in (`W`; needed unless leaving).
        VcpuControl(ThreadVcpuControl) {
            words {
                /// The state area's address.
                state: u64,
            }
            items {
                /// The Vm.
                vm: Option<CapArg>,
            }
        }
        /// Run the guest (on the calling thread itself) until an exit for
        /// the VMM; the reply label is the [`crate::vcpu::ExitReason`].
        VcpuResume(ThreadVcpuResume) {
            words {}
            items {}
        }
    }
}

kernel_protocol! {
    /// Factory operations ([`Proto::Factory`]): `MR0` is the whole word
    /// (the protocol of the object, sign-extended), the arguments are
    /// [`varg`] values; the new capability goes to the caller's first
    /// receive item.
    pub enum FactoryMsg(Proto::Factory, FactoryOp, whole) {
        /// Create a task with a UTCB area; reply [`FactoryTaskReply`].
        Task(FactoryTask) {
            words {
                /// The UTCB area (a memory flexpage).
                utcb_area: Varg<Fpage>,
            }
            items {}
        }
        /// Create a thread.
        Thread(FactoryThread) {
            words {}
            items {}
        }
        /// Create a factory with a quota.
        Factory(FactoryFactory) {
            words {
                /// Bytes of kernel memory moved to the new factory.
                quota: Varg<u64>,
            }
            items {}
        }
        /// Create an IPC gate with a label (0 if absent), bound to a
        /// thread if one is given.
        IpcGate(FactoryIpcGate) {
            words {
                /// The label.
                label: Option<Varg<u64>>,
            }
            items {
                /// The thread to bind to.
                thread: Option<CapArg>,
            }
        }
        /// Create an Irq (IRQ sender).
        Irq(FactoryIrq) {
            words {}
            items {}
        }
        /// Create a semaphore.
        Semaphore(FactorySemaphore) {
            words {}
            items {}
        }
        /// Create a virtual machine.
        Vm(FactoryVm) {
            words {}
            items {}
        }
        /// Sent to sigma0 (it speaks this one operation of the factory
        /// protocol): another capability to sigma0, with the rights of the
        /// invoked one.
        Sigma0(FactorySigma0) {
            words {}
            items {}
        }
    }
}

kernel_protocol! {
    /// Irq operations with [`Proto::Irq`] (on an Irq; on a semaphore
    /// `Trigger` is `up`).
    pub enum IrqMsg(Proto::Irq, IrqOp, masked) {
        /// Trigger the IRQ (software IRQ, semaphore up).
        Trigger(IrqTrigger) {
            words {}
            items {}
        }
        /// Unmask (end of interrupt).
        Unmask(IrqUnmask) {
            words {}
            items {}
        }
    }
}

kernel_protocol! {
    /// Irq-sender operations ([`Proto::IrqSender`]).
    pub enum IrqSenderMsg(Proto::IrqSender, IrqSenderOp, masked) {
        /// Attach to a thread (legacy [`KobjectBind`]).
        Attach(IrqAttach) {
            words {
                /// The label of the IRQ messages.
                label: u64,
            }
            items {
                /// The thread.
                thread: CapArg,
            }
        }
        /// Detach from the bound thread.
        Detach(IrqDetach) {
            words {}
            items {}
        }
        /// Bind to the vCPU of a thread (`S`): triggering the Irq injects
        /// the interrupt into its guest.
        BindVcpu(IrqBindVcpu) {
            words {
                /// The interrupt ([`crate::vcpu::VirqSpec`]).
                irq: crate::vcpu::VirqSpec,
            }
            items {
                /// The vCPU thread.
                thread: CapArg,
            }
        }
    }
}

kernel_protocol! {
    /// Vm operations ([`Proto::Vm`]); the caller's capability to the Vm
    /// needs `W`.
    pub enum VmMsg(Proto::Vm, VmOp, masked) {
        /// Sets the shortcut at `gpa` (4-byte aligned) to `kind`
        /// ([`crate::vcpu::shortcut`]), replacing one there, or removes it
        /// (kind [`crate::vcpu::shortcut::NONE`]; `NoEnt` if there is
        /// none). `Inval`: a bad address or kind, a doorbell without an
        /// Irq; `NoMem`: the Vm has [`crate::vcpu::shortcut::MAX`] already.
        Shortcut(VmShortcut) {
            words {
                /// The guest-physical address of the register.
                gpa: u64,
                /// What the kernel does there.
                kind: u64,
                /// A constant register's value (its low 32 bits).
                value: u64,
            }
            items {
                /// A doorbell's Irq (the caller's capability may carry
                /// any rights, as for triggering it).
                irq: Option<CapArg>,
            }
        }
    }
}

kernel_protocol! {
    /// Interrupt-controller operations ([`Proto::Irq`] on an Icu or a Vcon).
    pub enum IcuMsg(Proto::Irq, IcuOp, masked) {
        /// Bind an Irq object to IRQ line `irq`.
        Bind(IcuBind) {
            words {
                /// The line.
                irq: u64,
            }
            items {
                /// The Irq object.
                irq_cap: CapArg,
            }
        }
        /// Unbind an Irq object from IRQ line `irq`.
        Unbind(IcuUnbind) {
            words {
                /// The line.
                irq: u64,
            }
            items {
                /// The Irq object.
                irq_cap: CapArg,
            }
        }
        /// Controller information; reply [`IcuInfoReply`].
        Info(IcuInfo) {
            words {}
            items {}
        }
        /// MSI information; reply [`IcuMsiInfoReply`].
        MsiInfo(IcuMsiInfo) {
            words {
                /// The MSI number.
                msi: u64,
                /// The source.
                source: u64,
            }
            items {}
        }
        /// Unmask line `irq`.
        Unmask(IcuUnmask) {
            words {
                /// The line.
                irq: u64,
            }
            items {}
        }
        /// Mask line `irq`.
        Mask(IcuMask) {
            words {
                /// The line.
                irq: u64,
            }
            items {}
        }
        /// Set the trigger mode of line `irq`.
        SetMode(IcuSetMode) {
            words {
                /// The line.
                irq: u64,
                /// [`crate::proto::icu::mode`].
                mode: u64,
            }
            items {}
        }
    }
}

kernel_protocol! {
    /// Scheduler operations ([`Proto::Scheduler`]).
    pub enum SchedulerMsg(Proto::Scheduler, SchedulerOp, masked) {
        /// Online CPUs; reply [`SchedInfoReply`]. Only the
        /// granularity/offset of `cpus` travels (its map is zero).
        Info(SchedInfo) {
            words {
                /// The granularity/offset word of the CPU set asked about.
                gran_offset: u64,
            }
            items {}
        }
        /// Run a thread with a priority, quantum and affinity.
        RunThread(SchedRunThread) {
            words {
                /// The CPUs it may run on.
                cpus: SchedCpuSet,
                /// The priority (higher runs first).
                prio: u64,
                /// The time slice in µs.
                quantum_us: u64,
            }
            items {
                /// The thread.
                thread: CapArg,
            }
        }
        /// Idle time of CPUs; reply [`SchedIdleTimeReply`].
        IdleTime(SchedIdleTime) {
            words {
                /// The CPUs.
                cpus: SchedCpuSet,
            }
            items {}
        }
    }
}

kernel_protocol! {
    /// Vcon operations ([`Proto::Log`], the kernel console).
    pub enum VconMsg(Proto::Log, VconOp, masked) {
        /// Write bytes (a send suffices).
        Write(VconWrite) {
            words {
                /// The bytes.
                bytes: Bytes<{ vcon::WRITE_MAX }>,
            }
            items {}
        }
        /// Read at most `max` bytes; reply [`VconReadReply`].
        Read(VconRead) {
            words {
                /// The most bytes to return.
                max: u64,
            }
            items {}
        }
        /// Set the attributes.
        SetAttr(VconSetAttr) {
            words {
                /// Input flags.
                iflags: u64,
                /// Output flags.
                oflags: u64,
                /// Local flags.
                lflags: u64,
            }
            items {}
        }
        /// Get the attributes; reply [`VconAttrReply`].
        GetAttr(VconGetAttr) {
            words {}
            items {}
        }
    }
}

kernel_protocol! {
    /// Semaphore operations ([`Proto::Semaphore`]; `up` is [`IrqTrigger`]).
    pub enum SemaphoreMsg(Proto::Semaphore, SemaphoreOp, masked) {
        /// Decrement, blocking while zero; fails with
        /// [`Error::RecvTimeout`] after the timeout.
        Down(SemaphoreDown) {
            words {
                /// How long to wait.
                timeout: Timeout,
            }
            items {}
        }
    }
}

kernel_protocol! {
    /// The root task's memory protocol ([`Proto::Sigma0`],
    /// [`crate::sigma0`]); `MR0` is the whole word; reply [`Sigma0Reply`].
    pub enum Sigma0Msg(Proto::Sigma0, Sigma0Op, whole) {
        /// Map `2^order` bytes of free RAM.
        MapFree(Sigma0MapFree) {
            words {
                /// Log2 of the size (12..=30).
                order: u64,
            }
            items {}
        }
        /// Map device memory.
        MapDevice(Sigma0MapDevice) {
            words {
                /// The physical address.
                pa: u64,
                /// Log2 of the size.
                order: u64,
            }
            items {}
        }
        /// Map the memory of a boot module.
        MapModule(Sigma0MapModule) {
            words {
                /// The physical address.
                pa: u64,
                /// The size in bytes.
                size: u64,
            }
            items {}
        }
    }
}

replies! {
    /// The reply of [`KobjectGetInfo`].
    pub struct GateInfo {
        /// The gate's label.
        label: u64,
    }

    /// The reply of [`ThreadExRegs`]: the state before the change.
    pub struct ExRegsReply {
        /// PSTATE.
        pstate: u64,
        /// The old pc.
        pc: u64,
        /// The old sp.
        sp: u64,
    }

    /// The reply of [`ThreadStats`].
    pub struct ThreadStatsReply {
        /// Consumed CPU time in µs.
        time_us: u64,
    }

    /// The reply of [`FactoryTask`].
    pub struct FactoryTaskReply {
        /// The UTCB area.
        utcb_area: Fpage,
    }

    /// The reply of [`IcuInfo`].
    pub struct IcuInfoReply {
        /// Features ([`crate::proto::icu::FLAG_MSI`]).
        features: u64,
        /// Number of IRQ lines.
        nr_irqs: u64,
        /// Number of MSIs.
        nr_msis: u64,
    }

    /// The reply of [`IcuMsiInfo`].
    pub struct IcuMsiInfoReply {
        /// The address to write.
        addr: u64,
        /// The data to write.
        data: u64,
    }

    /// The reply of [`SchedInfo`].
    pub struct SchedInfoReply {
        /// Bitmap of online CPUs.
        online: u64,
        /// Highest CPU number + 1.
        max_cpus: u64,
    }

    /// The reply of [`SchedIdleTime`].
    pub struct SchedIdleTimeReply {
        /// Idle time in µs.
        time_us: u64,
    }

    /// The reply of [`VconGetAttr`].
    pub struct VconAttrReply {
        /// Input flags.
        iflags: u64,
        /// Output flags.
        oflags: u64,
        /// Local flags.
        lflags: u64,
    }

    /// The reply of every [`Sigma0Msg`] operation.
    pub struct Sigma0Reply {
        /// The address mapped (1:1).
        addr: u64,
    }
}

impl SchedInfoReply {
    /// The number of online CPUs.
    pub const fn count(self) -> u32 {
        self.online.count_ones()
    }
}

/// Most bytes a [`VconReadReply`] carries: its status word and the data
/// must fit in the 63 words a tag describes.
pub const VCON_READ_MAX: usize = (MsgTag::MAX_WORDS as usize - 1) * 8;

/// The reply of [`VconRead`]: `MR0` = byte count | [`vcon`] status flags,
/// then the bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VconReadReply {
    /// [`vcon::READ_STAT_BREAK`], [`vcon::READ_STAT_DONE`].
    pub status: u64,
    /// The bytes read.
    pub bytes: Bytes<VCON_READ_MAX>,
}

impl Reply for VconReadReply {
    fn encode(&self, mr: &mut [u64; MR_COUNT]) -> usize {
        mr[0] = self.bytes.len as u64 | (self.status & !vcon::READ_SIZE_MASK);
        1 + self.bytes.put_data(&mut mr[1..])
    }

    fn decode(words: usize, mr: &[u64; MR_COUNT]) -> Result<VconReadReply, MsgError> {
        let w = &mr[..words.min(MR_COUNT)];
        let e = |f: FieldError| f.at("VconReadReply", "bytes");
        let [w0] = first::<1>(w).map_err(e)?;
        let len =
            usize::try_from(w0 & vcon::READ_SIZE_MASK).map_err(|_| e(FieldError::Malformed))?;
        let (bytes, _) = Bytes::take_data(&w[1..], len).map_err(e)?;
        Ok(VconReadReply {
            status: w0 & !vcon::READ_SIZE_MASK,
            bytes,
        })
    }
}

/// A temporary debug call ([`crate::debug`]): its registers `x8`, `x0`,
/// `x1` rather than a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DebugCall {
    /// Write `len` bytes at `addr` to the kernel console.
    Puts {
        /// The address of the bytes in the caller.
        addr: u64,
        /// The number of bytes.
        len: u64,
    },
    /// End the calling task with `code`.
    Exit {
        /// The exit code.
        code: i64,
    },
}

impl DebugCall {
    /// The registers `[x8, x0, x1]` of the call.
    pub const fn to_regs(self) -> [u64; 3] {
        match self {
            DebugCall::Puts { addr, len } => [crate::debug::PUTS, addr, len],
            DebugCall::Exit { code } => [crate::debug::EXIT, code as u64, 0],
        }
    }

    /// Reads the call from `x8`, `x0`, `x1`.
    pub const fn from_regs(x8: u64, x0: u64, x1: u64) -> Result<DebugCall, MsgError> {
        match x8 {
            crate::debug::PUTS => Ok(DebugCall::Puts { addr: x0, len: x1 }),
            crate::debug::EXIT => Ok(DebugCall::Exit { code: x0 as i64 }),
            _ => Err(MsgError::UnknownOp {
                op: "DebugCall",
                mr0: x8,
            }),
        }
    }
}

#[cfg(test)]
mod tests;

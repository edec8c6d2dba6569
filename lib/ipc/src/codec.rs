//! The message codec: how typed values become message registers and back.
//!
//! A message is a [`MsgTag`] (label, number of untyped words, number of
//! typed items) and the message registers: the untyped words first, then
//! the typed items, two registers each ([`SendItem`]). Values are encoded
//! one after the other by a [`Writer`] and decoded in the same order by a
//! [`Reader`]; word values go to the untyped words, capability and memory
//! arguments to the typed items, each in its own order.
//!
//! | type                                   | words                                   | items |
//! |----------------------------------------|-----------------------------------------|-------|
//! | `u8` `u16` `u32` `u64` `usize`         | 1, zero-extended; decoding refuses values that do not fit | |
//! | `i8` `i16` `i32` `i64`                 | 1, sign-extended; ditto                  |       |
//! | `bool`                                 | 1: 0 or 1, anything else is refused      |       |
//! | [`Fpage`]                              | 1                                       |       |
//! | `()`                                   | none                                    |       |
//! | tuples `(A, B, ...)` (up to 8), `[T; N]` | the elements in order                 | the elements' |
//! | `Option<T>`                            | 1 (0 = `None`, 1 = `Some`), then `T` if `Some` | `T`'s |
//! | [`Bytes<N>`], [`Str<N>`]               | length in bytes, then the bytes packed little-endian, 8 per word, zero padded | |
//! | [`CapArg`], [`MemArg`], [`SendItem`]   |                                         | 1     |
//! | [`OptCap`]                             |                                         | 0 or 1, only as the last item |
//! | [`RcvCap`]                             |                                         | 0 or 1 (replies only) |
//! | enums declared with [`arg_enum!`](crate::arg_enum) | 1: a declared discriminant | |
//! | the `varg` module's types              | L4Re's typed factory arguments ([`crate::varg`]) | |
//!
//! Decoding never panics and never trusts the message. The errors:
//!
//! * [`Error::MsgTooShort`]: fewer words than the values need (including a
//!   length prefix that points past the end of the message);
//! * [`Error::MsgTooLong`]: words or items left over after the last value,
//!   or a tag describing more registers than there are; when encoding: more
//!   than fits into the 64 message registers;
//! * [`Error::MsgMissArg`]: a capability or memory item is missing;
//! * [`Error::Inval`]: a value out of range for its type (a `u8` above 255, a
//!   `bool` or `Option` tag other than 0/1, an unknown enum value, invalid
//!   UTF-8), or an item of the wrong type;
//! * [`Error::TooBig`]: a byte string longer than its bound, encoding or
//!   decoding.
//!
//! On the receiving side a capability or memory item is what the kernel
//! delivered: the sender's control word, and a flexpage naming where the
//! mapping landed in the *receiver's* space (its receive window or slot).

use core::fmt;

use l4_abi::fpage::FpageType;
use l4_abi::utcb::MR_COUNT;
use l4_abi::{CapRights, Error, Fpage, MsgTag, SendItem};

/// Most typed items one message can carry (two registers each).
pub const MAX_ITEMS: usize = MR_COUNT / 2;

/// Most untyped words one message can carry (the tag's 6-bit field).
pub const MAX_WORDS: usize = MsgTag::MAX_WORDS as usize;

/// A value that can travel in a message.
///
/// `encode` and `decode` must be inverse: `decode` reads exactly what
/// `encode` wrote. `decode` must refuse malformed input with an error and
/// never panic.
pub trait Arg: Sized {
    /// What a client stub takes for an argument of this type: the value
    /// itself for most types, a borrowed form where that is handier (`&str`
    /// for [`Str<N>`], `&[u8]` for [`Bytes<N>`]).
    type View<'a>;

    /// Appends the value to a message.
    fn encode(&self, w: &mut Writer<'_>) -> Result<(), Error>;

    /// Appends a client-side view of a value to a message (the same words
    /// and items as [`Arg::encode`] of the corresponding value).
    fn encode_view(v: Self::View<'_>, w: &mut Writer<'_>) -> Result<(), Error>;

    /// Reads a value from a message.
    fn decode(r: &mut Reader<'_>) -> Result<Self, Error>;
}

// ----------------------------------------------------------------------
// Writer
// ----------------------------------------------------------------------

/// Builds a message in a set of message registers.
///
/// Untyped words fill the registers from the front; typed items are kept at
/// the back until [`Writer::finish`] moves them behind the words, so values
/// may be written in any mix. Every write checks that the message still
/// fits (at most 63 words, `words + 2 * items <= 64`).
#[derive(Debug)]
pub struct Writer<'m> {
    mrs: &'m mut [u64; MR_COUNT],
    words: usize,
    items: usize,
    pending_nil: usize,
}

impl<'m> Writer<'m> {
    /// An empty message in `mrs`.
    pub fn new(mrs: &'m mut [u64; MR_COUNT]) -> Writer<'m> {
        Writer {
            mrs,
            words: 0,
            items: 0,
            pending_nil: 0,
        }
    }

    /// Untyped words written so far.
    pub const fn word_count(&self) -> usize {
        self.words
    }

    /// Typed items written so far.
    pub const fn item_count(&self) -> usize {
        self.items
    }

    fn room_for_words(&self, n: usize) -> Result<(), Error> {
        if self.words + n > MAX_WORDS || self.words + n + 2 * self.items > MR_COUNT {
            Err(Error::MsgTooLong)
        } else {
            Ok(())
        }
    }

    fn flush_nil(&mut self) -> Result<(), Error> {
        while self.pending_nil > 0 {
            self.pending_nil -= 1;
            self.push_word(crate::varg::header(l4_abi::proto::varg::NIL, 0))?;
        }
        Ok(())
    }

    fn push_word(&mut self, v: u64) -> Result<(), Error> {
        self.room_for_words(1)?;
        self.mrs[self.words] = v;
        self.words += 1;
        Ok(())
    }

    /// Appends one untyped word.
    pub fn word(&mut self, v: u64) -> Result<(), Error> {
        self.flush_nil()?;
        self.push_word(v)
    }

    /// Appends untyped words.
    pub fn words(&mut self, vs: &[u64]) -> Result<(), Error> {
        if vs.is_empty() {
            return Ok(());
        }
        self.flush_nil()?;
        self.room_for_words(vs.len())?;
        self.mrs[self.words..self.words + vs.len()].copy_from_slice(vs);
        self.words += vs.len();
        Ok(())
    }

    /// Appends bytes packed little-endian into `ceil(len / 8)` words, the
    /// last one zero padded (no length word: see [`Bytes`]).
    pub fn bytes(&mut self, b: &[u8]) -> Result<(), Error> {
        if b.is_empty() {
            return Ok(());
        }
        self.flush_nil()?;
        self.room_for_words(b.len().div_ceil(8))?;
        for chunk in b.chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.push_word(u64::from_le_bytes(w))?;
        }
        Ok(())
    }

    /// Appends a typed item.
    pub fn item(&mut self, it: SendItem) -> Result<(), Error> {
        if self.words + 2 * (self.items + 1) > MR_COUNT {
            return Err(Error::MsgTooLong);
        }
        self.items += 1;
        let at = MR_COUNT - 2 * self.items;
        self.mrs[at..at + 2].copy_from_slice(&it.to_words());
        Ok(())
    }

    /// Records an absent optional typed factory argument
    /// ([`crate::varg::VOpt`]): it becomes a nil argument if another word
    /// follows, and nothing if it is among the last words of the message,
    /// so a kernel factory, which refuses nil, gets trailing optional
    /// arguments left out.
    pub fn nil_unless_last(&mut self) {
        self.pending_nil += 1;
    }

    /// Completes the message: moves the items behind the words and returns
    /// the tag with `label`. [`Error::Inval`] if the label does not fit the
    /// tag's 48-bit field.
    pub fn finish(self, label: i64) -> Result<MsgTag, Error> {
        let (words, items) = (self.words, self.items);
        let mut tmp = [0u64; MR_COUNT];
        tmp[..2 * items].copy_from_slice(&self.mrs[MR_COUNT - 2 * items..]);
        for k in 0..items {
            // Item k was stored at the back, the first one last.
            let from = 2 * (items - 1 - k);
            let to = words + 2 * k;
            self.mrs[to..to + 2].copy_from_slice(&tmp[from..from + 2]);
        }
        MsgTag::checked(label, words as u32, items as u32, 0).ok_or(Error::Inval)
    }
}

// ----------------------------------------------------------------------
// Reader
// ----------------------------------------------------------------------

/// Reads a received message: the untyped words and the typed items that its
/// tag describes.
#[derive(Clone, Debug)]
pub struct Reader<'m> {
    words: &'m [u64],
    items: &'m [u64],
    wpos: usize,
    ipos: usize,
    rcv_cap: Option<u64>,
}

impl<'m> Reader<'m> {
    /// A reader of the message that `tag` describes in `mrs`.
    /// [`Error::MsgTooLong`] if the tag claims more registers than `mrs`
    /// holds.
    pub fn new(tag: MsgTag, mrs: &'m [u64]) -> Result<Reader<'m>, Error> {
        let words = tag.words() as usize;
        let end = tag.mr_len();
        if end > mrs.len() {
            return Err(Error::MsgTooLong);
        }
        Ok(Reader {
            words: &mrs[..words],
            items: &mrs[words..end],
            wpos: 0,
            ipos: 0,
            rcv_cap: None,
        })
    }

    /// Tells the reader which capability slot the receiver offered (its
    /// first single-capability receive item), for [`RcvCap`].
    pub const fn with_rcv_cap(mut self, slot: Option<u64>) -> Reader<'m> {
        self.rcv_cap = slot;
        self
    }

    /// The capability slot the receiver offered, if known.
    pub const fn rcv_cap(&self) -> Option<u64> {
        self.rcv_cap
    }

    /// Untyped words not read yet.
    pub const fn remaining_words(&self) -> usize {
        self.words.len() - self.wpos
    }

    /// Typed items not read yet.
    pub const fn remaining_items(&self) -> usize {
        (self.items.len() - self.ipos) / 2
    }

    /// The next untyped word without consuming it.
    pub fn peek_word(&self) -> Option<u64> {
        self.words.get(self.wpos).copied()
    }

    /// The next untyped word; [`Error::MsgTooShort`] if there is none.
    pub fn word(&mut self) -> Result<u64, Error> {
        let w = self.peek_word().ok_or(Error::MsgTooShort)?;
        self.wpos += 1;
        Ok(w)
    }

    /// The next `n` untyped words; [`Error::MsgTooShort`] if there are fewer.
    pub fn words(&mut self, n: usize) -> Result<&'m [u64], Error> {
        if n > self.remaining_words() {
            return Err(Error::MsgTooShort);
        }
        let ws = &self.words[self.wpos..self.wpos + n];
        self.wpos += n;
        Ok(ws)
    }

    /// The rest of the untyped words.
    pub fn rest_words(&mut self) -> &'m [u64] {
        let ws = &self.words[self.wpos..];
        self.wpos = self.words.len();
        ws
    }

    /// Fills `out` from `ceil(out.len() / 8)` words packed as
    /// [`Writer::bytes`] packs them (padding bytes are ignored).
    pub fn bytes_into(&mut self, out: &mut [u8]) -> Result<(), Error> {
        let ws = self.words(out.len().div_ceil(8))?;
        for (chunk, w) in out.chunks_mut(8).zip(ws) {
            chunk.copy_from_slice(&w.to_le_bytes()[..chunk.len()]);
        }
        Ok(())
    }

    /// The next typed item; [`Error::MsgMissArg`] if there is none.
    pub fn item(&mut self) -> Result<SendItem, Error> {
        let it = self.peek_item().ok_or(Error::MsgMissArg)?;
        self.ipos += 2;
        Ok(it)
    }

    /// The next typed item without consuming it.
    pub fn peek_item(&self) -> Option<SendItem> {
        match self.items.get(self.ipos..self.ipos + 2) {
            Some(&[c, f]) => Some(SendItem::from_words([c, f])),
            _ => None,
        }
    }

    /// Checks that the whole message was read: [`Error::MsgTooLong`] if
    /// words or items are left over.
    pub fn finish(&self) -> Result<(), Error> {
        if self.remaining_words() != 0 || self.remaining_items() != 0 {
            Err(Error::MsgTooLong)
        } else {
            Ok(())
        }
    }
}

/// Encodes `v` alone into `mrs` and returns the tag (tests and tools).
pub fn encode_one<A: Arg>(v: &A, label: i64, mrs: &mut [u64; MR_COUNT]) -> Result<MsgTag, Error> {
    let mut w = Writer::new(mrs);
    v.encode(&mut w)?;
    w.finish(label)
}

/// Decodes a message that consists of exactly one `A` (tests and tools).
pub fn decode_one<A: Arg>(tag: MsgTag, mrs: &[u64]) -> Result<A, Error> {
    let mut r = Reader::new(tag, mrs)?;
    let v = A::decode(&mut r)?;
    r.finish()?;
    Ok(v)
}

// ----------------------------------------------------------------------
// Scalars
// ----------------------------------------------------------------------

macro_rules! unsigned_arg {
    ($($t:ty),*) => {$(
        impl Arg for $t {
            type View<'a> = $t;

            fn encode(&self, w: &mut Writer<'_>) -> Result<(), Error> {
                w.word(*self as u64)
            }

            fn encode_view(v: $t, w: &mut Writer<'_>) -> Result<(), Error> {
                v.encode(w)
            }

            fn decode(r: &mut Reader<'_>) -> Result<$t, Error> {
                <$t>::try_from(r.word()?).map_err(|_| Error::Inval)
            }
        }
    )*};
}

macro_rules! signed_arg {
    ($($t:ty),*) => {$(
        impl Arg for $t {
            type View<'a> = $t;

            fn encode(&self, w: &mut Writer<'_>) -> Result<(), Error> {
                w.word(*self as i64 as u64)
            }

            fn encode_view(v: $t, w: &mut Writer<'_>) -> Result<(), Error> {
                v.encode(w)
            }

            fn decode(r: &mut Reader<'_>) -> Result<$t, Error> {
                <$t>::try_from(r.word()? as i64).map_err(|_| Error::Inval)
            }
        }
    )*};
}

unsigned_arg!(u8, u16, u32, u64, usize);
signed_arg!(i8, i16, i32, i64);

impl Arg for bool {
    type View<'a> = bool;

    fn encode(&self, w: &mut Writer<'_>) -> Result<(), Error> {
        w.word(*self as u64)
    }

    fn encode_view(v: bool, w: &mut Writer<'_>) -> Result<(), Error> {
        v.encode(w)
    }

    fn decode(r: &mut Reader<'_>) -> Result<bool, Error> {
        match r.word()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(Error::Inval),
        }
    }
}

impl Arg for Fpage {
    type View<'a> = Fpage;

    fn encode(&self, w: &mut Writer<'_>) -> Result<(), Error> {
        w.word(self.0)
    }

    fn encode_view(v: Fpage, w: &mut Writer<'_>) -> Result<(), Error> {
        v.encode(w)
    }

    fn decode(r: &mut Reader<'_>) -> Result<Fpage, Error> {
        Ok(Fpage(r.word()?))
    }
}

impl Arg for () {
    type View<'a> = ();

    fn encode(&self, _: &mut Writer<'_>) -> Result<(), Error> {
        Ok(())
    }

    fn encode_view(_: (), _: &mut Writer<'_>) -> Result<(), Error> {
        Ok(())
    }

    fn decode(_: &mut Reader<'_>) -> Result<(), Error> {
        Ok(())
    }
}

macro_rules! tuple_arg {
    ($($n:tt $t:ident),+) => {
        impl<$($t: Arg),+> Arg for ($($t,)+) {
            type View<'a> = ($($t::View<'a>,)+);

            fn encode(&self, w: &mut Writer<'_>) -> Result<(), Error> {
                $( self.$n.encode(w)?; )+
                Ok(())
            }

            fn encode_view(v: Self::View<'_>, w: &mut Writer<'_>) -> Result<(), Error> {
                $( $t::encode_view(v.$n, w)?; )+
                Ok(())
            }

            fn decode(r: &mut Reader<'_>) -> Result<Self, Error> {
                Ok(($($t::decode(r)?,)+))
            }
        }
    };
}

tuple_arg!(0 A);
tuple_arg!(0 A, 1 B);
tuple_arg!(0 A, 1 B, 2 C);
tuple_arg!(0 A, 1 B, 2 C, 3 D);
tuple_arg!(0 A, 1 B, 2 C, 3 D, 4 E);
tuple_arg!(0 A, 1 B, 2 C, 3 D, 4 E, 5 F);
tuple_arg!(0 A, 1 B, 2 C, 3 D, 4 E, 5 F, 6 G);
tuple_arg!(0 A, 1 B, 2 C, 3 D, 4 E, 5 F, 6 G, 7 H);

impl<T: Arg + Default, const N: usize> Arg for [T; N] {
    type View<'a> = [T; N];

    fn encode(&self, w: &mut Writer<'_>) -> Result<(), Error> {
        self.iter().try_for_each(|x| x.encode(w))
    }

    fn encode_view(v: [T; N], w: &mut Writer<'_>) -> Result<(), Error> {
        v.encode(w)
    }

    fn decode(r: &mut Reader<'_>) -> Result<[T; N], Error> {
        let mut a: [T; N] = core::array::from_fn(|_| T::default());
        for x in a.iter_mut() {
            *x = T::decode(r)?;
        }
        Ok(a)
    }
}

impl<T: Arg> Arg for Option<T> {
    type View<'a> = Option<T::View<'a>>;

    fn encode(&self, w: &mut Writer<'_>) -> Result<(), Error> {
        match self {
            None => w.word(0),
            Some(v) => {
                w.word(1)?;
                v.encode(w)
            }
        }
    }

    fn encode_view(v: Self::View<'_>, w: &mut Writer<'_>) -> Result<(), Error> {
        match v {
            None => w.word(0),
            Some(v) => {
                w.word(1)?;
                T::encode_view(v, w)
            }
        }
    }

    fn decode(r: &mut Reader<'_>) -> Result<Option<T>, Error> {
        match r.word()? {
            0 => Ok(None),
            1 => Ok(Some(T::decode(r)?)),
            _ => Err(Error::Inval),
        }
    }
}

// ----------------------------------------------------------------------
// Byte strings
// ----------------------------------------------------------------------

/// A byte string of at most `N` bytes, stored inline.
///
/// In a message: a length word, then the bytes packed into words. Encoding
/// or decoding more than `N` bytes is [`Error::TooBig`]; a length that
/// points past the end of the message is [`Error::MsgTooShort`].
#[derive(Clone, Copy)]
pub struct Bytes<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> Bytes<N> {
    /// The bound.
    pub const CAPACITY: usize = N;

    /// The empty string.
    pub const fn empty() -> Bytes<N> {
        Bytes {
            buf: [0; N],
            len: 0,
        }
    }

    /// A copy of `b`; [`Error::TooBig`] if it is longer than `N`.
    pub fn new(b: &[u8]) -> Result<Bytes<N>, Error> {
        if b.len() > N {
            return Err(Error::TooBig);
        }
        let mut s = Bytes::empty();
        s.buf[..b.len()].copy_from_slice(b);
        s.len = b.len();
        Ok(s)
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// The length in bytes.
    pub const fn len(&self) -> usize {
        self.len
    }

    /// Whether the string is empty.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Reads the length word and the bytes (shared by [`Str`]).
    fn read(r: &mut Reader<'_>) -> Result<Bytes<N>, Error> {
        let len = r.word()?;
        if len > N as u64 {
            return Err(Error::TooBig);
        }
        let mut s = Bytes::empty();
        s.len = len as usize;
        r.bytes_into(&mut s.buf[..s.len])?;
        Ok(s)
    }
}

impl<const N: usize> Default for Bytes<N> {
    fn default() -> Bytes<N> {
        Bytes::empty()
    }
}

impl<const N: usize> core::ops::Deref for Bytes<N> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl<const N: usize> PartialEq for Bytes<N> {
    fn eq(&self, other: &Bytes<N>) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl<const N: usize> Eq for Bytes<N> {}

impl<const N: usize> fmt::Debug for Bytes<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bytes({:?})", self.as_slice())
    }
}

fn encode_bytes(b: &[u8], bound: usize, w: &mut Writer<'_>) -> Result<(), Error> {
    if b.len() > bound {
        return Err(Error::TooBig);
    }
    w.word(b.len() as u64)?;
    w.bytes(b)
}

impl<const N: usize> Arg for Bytes<N> {
    type View<'a> = &'a [u8];

    fn encode(&self, w: &mut Writer<'_>) -> Result<(), Error> {
        encode_bytes(self.as_slice(), N, w)
    }

    fn encode_view(v: &[u8], w: &mut Writer<'_>) -> Result<(), Error> {
        encode_bytes(v, N, w)
    }

    fn decode(r: &mut Reader<'_>) -> Result<Bytes<N>, Error> {
        Bytes::read(r)
    }
}

/// A UTF-8 string of at most `N` bytes, stored inline; in a message like
/// [`Bytes<N>`]. Decoding refuses invalid UTF-8 ([`Error::Inval`]).
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct Str<const N: usize>(Bytes<N>);

impl<const N: usize> Str<N> {
    /// The empty string.
    pub const fn empty() -> Str<N> {
        Str(Bytes::empty())
    }

    /// A copy of `s`; [`Error::TooBig`] if it is longer than `N` bytes.
    pub fn new(s: &str) -> Result<Str<N>, Error> {
        Bytes::new(s.as_bytes()).map(Str)
    }

    /// Checks that `b` is UTF-8 and copies it.
    pub fn from_utf8(b: &[u8]) -> Result<Str<N>, Error> {
        let s = core::str::from_utf8(b).map_err(|_| Error::Inval)?;
        Str::new(s)
    }

    /// The string.
    pub fn as_str(&self) -> &str {
        // Always valid: every constructor checks UTF-8.
        core::str::from_utf8(self.0.as_slice()).unwrap_or("")
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_slice()
    }
}

impl<const N: usize> core::ops::Deref for Str<N> {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl<const N: usize> fmt::Debug for Str<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl<const N: usize> fmt::Display for Str<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<const N: usize> Arg for Str<N> {
    type View<'a> = &'a str;

    fn encode(&self, w: &mut Writer<'_>) -> Result<(), Error> {
        encode_bytes(self.as_bytes(), N, w)
    }

    fn encode_view(v: &str, w: &mut Writer<'_>) -> Result<(), Error> {
        encode_bytes(v.as_bytes(), N, w)
    }

    fn decode(r: &mut Reader<'_>) -> Result<Str<N>, Error> {
        let b = Bytes::<N>::read(r)?;
        core::str::from_utf8(b.as_slice()).map_err(|_| Error::Inval)?;
        Ok(Str(b))
    }
}

// ----------------------------------------------------------------------
// Typed items
// ----------------------------------------------------------------------

pub use l4_abi::ops::CapArg;

/// [`Arg`] for the typed-item arguments: one item (`item()`), decoded by
/// `from_item` (which checks the item's kind).
macro_rules! item_arg {
    ($($t:ty),*) => {$(
        impl Arg for $t {
            type View<'a> = $t;

            fn encode(&self, w: &mut Writer<'_>) -> Result<(), Error> {
                w.item(self.item())
            }

            fn encode_view(v: $t, w: &mut Writer<'_>) -> Result<(), Error> {
                v.encode(w)
            }

            fn decode(r: &mut Reader<'_>) -> Result<$t, Error> {
                <$t>::from_item(r.item()?)
            }
        }
    )*};
}

item_arg!(CapArg, MemArg);

/// An optional capability as the *last* typed item: present or not, with
/// no word saying which (the layout kernel factories use for the thread
/// of a new IPC gate). Decoding takes an item if one is left.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct OptCap(pub Option<CapArg>);

impl Arg for OptCap {
    type View<'a> = Option<CapArg>;

    fn encode(&self, w: &mut Writer<'_>) -> Result<(), Error> {
        Self::encode_view(self.0, w)
    }

    fn encode_view(v: Option<CapArg>, w: &mut Writer<'_>) -> Result<(), Error> {
        match v {
            Some(c) => c.encode(w),
            None => Ok(()),
        }
    }

    fn decode(r: &mut Reader<'_>) -> Result<OptCap, Error> {
        if r.remaining_items() == 0 {
            return Ok(OptCap(None));
        }
        CapArg::decode(r).map(|c| OptCap(Some(c)))
    }
}

/// A capability a reply hands to the caller's receive slot.
///
/// A server returns it as a [`CapArg`] would be (an item mapping its
/// capability). Kernel factories instead write the new capability straight
/// into the caller's first receive slot and reply with no item; a client
/// decoding a reply without the item takes that slot (from
/// [`Reader::with_rcv_cap`]) with all rights, as the kernel inserts it.
/// Without item and slot the reply is refused ([`Error::MsgMissArg`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RcvCap(pub CapArg);

impl RcvCap {
    /// A returned capability (server side: the index in the server's table).
    pub const fn new(index: u64, rights: CapRights) -> RcvCap {
        RcvCap(CapArg::new(index, rights))
    }

    /// The capability index (client side: where it landed).
    pub const fn index(self) -> u64 {
        self.0.index
    }
}

impl From<CapArg> for RcvCap {
    fn from(c: CapArg) -> RcvCap {
        RcvCap(c)
    }
}

impl Arg for RcvCap {
    type View<'a> = RcvCap;

    fn encode(&self, w: &mut Writer<'_>) -> Result<(), Error> {
        self.0.encode(w)
    }

    fn encode_view(v: RcvCap, w: &mut Writer<'_>) -> Result<(), Error> {
        v.encode(w)
    }

    fn decode(r: &mut Reader<'_>) -> Result<RcvCap, Error> {
        if r.remaining_items() > 0 {
            return CapArg::decode(r).map(RcvCap);
        }
        match r.rcv_cap() {
            Some(slot) => Ok(RcvCap::new(slot, CapRights::ALL)),
            None => Err(Error::MsgMissArg),
        }
    }
}

/// A memory mapping argument: one typed item of a memory flexpage.
///
/// Sending: `fpage` of the sender's memory, mapped (or granted) at the hot
/// spot `snd_base` of the receiver's window. Receiving: the flexpage where
/// it landed in the receiver's space, and the sender's hot spot and grant
/// flag. Decoding refuses a missing item ([`Error::MsgMissArg`]) and a
/// non-memory item ([`Error::Inval`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct MemArg {
    /// The flexpage.
    pub fpage: Fpage,
    /// The hot spot (send base).
    pub snd_base: u64,
    /// Grant (move) instead of map.
    pub grant: bool,
}

impl MemArg {
    /// A map of `fpage` at hot spot `snd_base`.
    pub const fn map(fpage: Fpage, snd_base: u64) -> MemArg {
        MemArg {
            fpage,
            snd_base,
            grant: false,
        }
    }

    /// The send item.
    pub const fn item(self) -> SendItem {
        if self.grant {
            SendItem::grant(self.fpage, self.snd_base)
        } else {
            SendItem::map(self.fpage, self.snd_base)
        }
    }

    /// Reads a received memory item.
    pub fn from_item(it: SendItem) -> Result<MemArg, Error> {
        if !it.is_map_item() || it.fpage.kind() != FpageType::Memory {
            return Err(Error::Inval);
        }
        Ok(MemArg {
            fpage: it.fpage,
            snd_base: it.snd_base(),
            grant: it.is_grant(),
        })
    }
}

/// Any typed item, as is (no checks).
impl Arg for SendItem {
    type View<'a> = SendItem;

    fn encode(&self, w: &mut Writer<'_>) -> Result<(), Error> {
        w.item(*self)
    }

    fn encode_view(v: SendItem, w: &mut Writer<'_>) -> Result<(), Error> {
        w.item(v)
    }

    fn decode(r: &mut Reader<'_>) -> Result<SendItem, Error> {
        r.item()
    }
}

// ----------------------------------------------------------------------
// Records
// ----------------------------------------------------------------------

/// Implements [`Arg`] for a struct that travels as its fields, each an
/// [`Arg`] whose view is itself (numbers, [`Str`], `Option`s of them ...),
/// one after the other in the order listed. The struct is its own view.
///
/// ```
/// #[derive(Clone, Copy, Debug, PartialEq)]
/// struct Span {
///     start: u64,
///     len: u32,
/// }
/// l4_ipc::arg_struct!(Span { start, len });
/// let mut mrs = [0u64; 64];
/// let s = Span { start: 0x1000, len: 3 };
/// let tag = l4_ipc::codec::encode_one(&s, 0, &mut mrs).unwrap();
/// assert_eq!((tag.words(), mrs[0], mrs[1]), (2, 0x1000, 3));
/// assert_eq!(l4_ipc::codec::decode_one::<Span>(tag, &mrs), Ok(s));
/// ```
#[macro_export]
macro_rules! arg_struct {
    ($name:ident { $($field:ident),+ $(,)? }) => {
        $crate::__arg_by_value!($name,
            |this, w| {
                $( $crate::codec::Arg::encode(&this.$field, w)?; )+
                Ok(())
            },
            |r| Ok($name { $( $field: $crate::codec::Arg::decode(r)?, )+ })
        );
    };
}

/// The [`Arg`] impl of [`arg_struct!`] and [`arg_enum!`]: a type that is
/// its own view, encoded by `encode` (given the value and the writer) and
/// decoded by `decode` (given the reader).
#[doc(hidden)]
#[macro_export]
macro_rules! __arg_by_value {
    ($name:ident, |$this:ident, $w:ident| $encode:expr, |$r:ident| $decode:expr) => {
        impl $crate::codec::Arg for $name {
            type View<'a> = $name;

            fn encode(
                &self,
                $w: &mut $crate::codec::Writer<'_>,
            ) -> ::core::result::Result<(), $crate::Error> {
                let $this = self;
                $encode
            }

            fn encode_view(
                v: $name,
                w: &mut $crate::codec::Writer<'_>,
            ) -> ::core::result::Result<(), $crate::Error> {
                $crate::codec::Arg::encode(&v, w)
            }

            fn decode(
                $r: &mut $crate::codec::Reader<'_>,
            ) -> ::core::result::Result<$name, $crate::Error> {
                $decode
            }
        }
    };
}

// ----------------------------------------------------------------------
// Enums
// ----------------------------------------------------------------------

/// Declares a fieldless enum that travels as one word: its discriminant.
/// Decoding any other value is [`Error::Inval`].
///
/// ```
/// l4_ipc::arg_enum! {
///     /// A colour.
///     pub enum Colour {
///         /// Red.
///         Red = 1,
///         /// Blue.
///         Blue = 4,
///     }
/// }
/// let mut mrs = [0u64; 64];
/// let tag = l4_ipc::codec::encode_one(&Colour::Blue, 0, &mut mrs).unwrap();
/// assert_eq!(mrs[0], 4);
/// assert_eq!(l4_ipc::codec::decode_one::<Colour>(tag, &mrs), Ok(Colour::Blue));
/// mrs[0] = 2;
/// assert_eq!(
///     l4_ipc::codec::decode_one::<Colour>(tag, &mrs),
///     Err(l4_abi::Error::Inval)
/// );
/// ```
#[macro_export]
macro_rules! arg_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $var:ident = $val:expr ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u64)]
        $vis enum $name {
            $( $(#[$vmeta])* $var = $val, )*
        }

        impl ::core::convert::TryFrom<u64> for $name {
            type Error = $crate::Error;

            fn try_from(v: u64) -> ::core::result::Result<$name, $crate::Error> {
                $( if v == $name::$var as u64 { return Ok($name::$var); } )*
                Err($crate::Error::Inval)
            }
        }

        $crate::__arg_by_value!($name,
            |this, w| w.word(*this as u64),
            |r| <$name as ::core::convert::TryFrom<u64>>::try_from(r.word()?)
        );
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use l4_abi::MemRights;

    fn round_trip<A: Arg + PartialEq + fmt::Debug>(v: A) -> (MsgTag, [u64; MR_COUNT]) {
        let mut mrs = [0xdead_beef; MR_COUNT];
        let tag = encode_one(&v, 7, &mut mrs).expect("encode");
        assert_eq!(tag.label(), 7);
        assert_eq!(decode_one::<A>(tag, &mrs), Ok(v));
        (tag, mrs)
    }

    #[test]
    fn scalars() {
        let (t, m) = round_trip(0xffu8);
        assert_eq!((t.words(), t.items(), m[0]), (1, 0, 0xff));
        round_trip(0xffffu16);
        round_trip(u32::MAX);
        round_trip(u64::MAX);
        round_trip(usize::MAX);
        let (_, m) = round_trip(-1i8);
        assert_eq!(m[0], u64::MAX, "sign-extended");
        round_trip(i16::MIN);
        round_trip(i32::MIN);
        round_trip(i64::MIN);
        round_trip(true);
        round_trip(false);
        round_trip(Fpage::mem(0x1000, 12, MemRights::RW));
        let (t, _) = round_trip(());
        assert_eq!(t.mr_len(), 0);
    }

    #[test]
    fn out_of_range_scalars() {
        let tag = MsgTag::new(0, 1, 0, 0);
        assert_eq!(decode_one::<u8>(tag, &[256]), Err(Error::Inval));
        assert_eq!(decode_one::<u16>(tag, &[0x1_0000]), Err(Error::Inval));
        assert_eq!(decode_one::<u32>(tag, &[1 << 32]), Err(Error::Inval));
        assert_eq!(decode_one::<i8>(tag, &[128]), Err(Error::Inval));
        assert_eq!(
            decode_one::<i8>(tag, &[(-129i64) as u64]),
            Err(Error::Inval)
        );
        assert_eq!(decode_one::<i32>(tag, &[1 << 31]), Err(Error::Inval));
        assert_eq!(decode_one::<i32>(tag, &[u64::MAX]), Ok(-1));
        assert_eq!(decode_one::<bool>(tag, &[2]), Err(Error::Inval));
        assert_eq!(decode_one::<Option<u8>>(tag, &[2]), Err(Error::Inval));
    }

    #[test]
    fn compounds() {
        let (t, m) = round_trip((1u8, -2i32, 3u64));
        assert_eq!((t.words(), &m[..3]), (3, &[1, (-2i64) as u64, 3][..]));
        round_trip([1u16, 2, 3, 4]);
        round_trip([[1u8, 2], [3, 4]]);
        let (t, m) = round_trip(Some(5u32));
        assert_eq!(&m[..t.words() as usize], &[1, 5]);
        let (t, m) = round_trip(None::<u32>);
        assert_eq!(&m[..t.words() as usize], &[0]);
        round_trip(Some(Some(false)));
        round_trip((1u8, 2u8, 3u8, 4u8, 5u8, 6u8, 7u8, 8u8));
    }

    #[test]
    fn byte_strings() {
        let (t, m) = round_trip(Bytes::<16>::new(b"hello, world!").unwrap());
        assert_eq!(t.words(), 3);
        assert_eq!(m[0], 13);
        assert_eq!(m[1], u64::from_le_bytes(*b"hello, w"));
        assert_eq!(m[2], u64::from_le_bytes(*b"orld!\0\0\0"));
        round_trip(Bytes::<0>::empty());
        let (t, _) = round_trip(Str::<8>::new("").unwrap());
        assert_eq!(t.words(), 1);
        round_trip(Str::<8>::new("12345678").unwrap());
        round_trip(Str::<64>::new("grüße").unwrap());
        assert_eq!(Str::<4>::new("12345"), Err(Error::TooBig));
        assert_eq!(Bytes::<4>::new(b"12345"), Err(Error::TooBig));
        assert_eq!(Str::<8>::from_utf8(&[0xff]), Err(Error::Inval));
        assert_eq!(&*Str::<8>::new("abc").unwrap(), "abc");
    }

    #[test]
    fn hostile_byte_strings() {
        // Longer than the bound.
        let tag = MsgTag::new(0, 3, 0, 0);
        assert_eq!(decode_one::<Bytes<8>>(tag, &[9, 0, 0]), Err(Error::TooBig));
        assert_eq!(
            decode_one::<Str<8>>(tag, &[u64::MAX, 0, 0]),
            Err(Error::TooBig)
        );
        // Length past the end of the message.
        let tag = MsgTag::new(0, 2, 0, 0);
        assert_eq!(
            decode_one::<Bytes<64>>(tag, &[9, 0, 0, 0]),
            Err(Error::MsgTooShort)
        );
        // Invalid UTF-8.
        assert_eq!(decode_one::<Str<8>>(tag, &[1, 0xff]), Err(Error::Inval));
        // Surplus word.
        let tag = MsgTag::new(0, 3, 0, 0);
        assert_eq!(
            decode_one::<Bytes<64>>(tag, &[8, 0, 0]),
            Err(Error::MsgTooLong)
        );
        // Encoding refuses too long a view.
        let mut mrs = [0; MR_COUNT];
        let mut w = Writer::new(&mut mrs);
        assert_eq!(Str::<2>::encode_view("abc", &mut w), Err(Error::TooBig));
        assert_eq!(Bytes::<2>::encode_view(b"abc", &mut w), Err(Error::TooBig));
        assert_eq!(w.word_count(), 0);
    }

    #[test]
    fn items() {
        let c = CapArg::new(9, CapRights::RWS);
        let (t, m) = round_trip(c);
        assert_eq!((t.words(), t.items()), (0, 1));
        assert_eq!(SendItem::from_words([m[0], m[1]]), c.item());
        let mem = MemArg::map(Fpage::mem(0x20_0000, 21, MemRights::RW), 0x4000_0000);
        round_trip(mem);
        round_trip(MemArg { grant: true, ..mem });
        round_trip(OptCap(Some(c)));
        let (t, _) = round_trip(OptCap(None));
        assert_eq!(t.mr_len(), 0);
        let raw = SendItem::from_words([0x1234, 0x5678]);
        round_trip(raw);
        // Words and items interleaved: items end up behind all words.
        let (t, m) = round_trip((1u64, c, 2u64, mem, 3u64));
        assert_eq!((t.words(), t.items()), (3, 2));
        assert_eq!(&m[..3], &[1, 2, 3]);
        assert_eq!(SendItem::from_words([m[3], m[4]]), c.item());
        assert_eq!(SendItem::from_words([m[5], m[6]]), mem.item());
    }

    #[test]
    fn hostile_items() {
        let none = MsgTag::new(0, 0, 0, 0);
        assert_eq!(decode_one::<CapArg>(none, &[]), Err(Error::MsgMissArg));
        assert_eq!(decode_one::<MemArg>(none, &[]), Err(Error::MsgMissArg));
        assert_eq!(decode_one::<RcvCap>(none, &[]), Err(Error::MsgMissArg));
        let one = MsgTag::new(0, 0, 1, 0);
        let mem = MemArg::map(Fpage::mem(0x1000, 12, MemRights::R), 0).item();
        let cap = CapArg::new(3, CapRights::RW).item();
        assert_eq!(
            decode_one::<CapArg>(one, &mem.to_words()),
            Err(Error::Inval)
        );
        assert_eq!(
            decode_one::<MemArg>(one, &cap.to_words()),
            Err(Error::Inval)
        );
        assert_eq!(
            decode_one::<OptCap>(one, &mem.to_words()),
            Err(Error::Inval)
        );
        // A void item (no map bit) is no capability.
        assert_eq!(
            decode_one::<CapArg>(one, &[0, cap.fpage.0]),
            Err(Error::Inval)
        );
        // More than one capability.
        let many = SendItem::caps(4, 2, CapRights::RW, 0);
        assert_eq!(
            decode_one::<CapArg>(one, &many.to_words()),
            Err(Error::Inval)
        );
        // Surplus item.
        let two = MsgTag::new(0, 0, 2, 0);
        let w = [cap.to_words(), cap.to_words()].concat();
        assert_eq!(decode_one::<CapArg>(two, &w), Err(Error::MsgTooLong));
        // A tag that claims more registers than there are.
        assert_eq!(
            decode_one::<()>(MsgTag::new(0, 63, 63, 0), &[0; MR_COUNT]),
            Err(Error::MsgTooLong)
        );
    }

    #[test]
    fn rcv_cap_falls_back_to_the_receive_slot() {
        let none = MsgTag::new(0, 0, 0, 0);
        let mut r = Reader::new(none, &[]).unwrap().with_rcv_cap(Some(12));
        assert_eq!(RcvCap::decode(&mut r), Ok(RcvCap::new(12, CapRights::ALL)));
        let one = MsgTag::new(0, 0, 1, 0);
        let cap = CapArg::new(3, CapRights::RW);
        let words = cap.item().to_words();
        let mut r = Reader::new(one, &words).unwrap().with_rcv_cap(Some(12));
        assert_eq!(RcvCap::decode(&mut r).map(RcvCap::index), Ok(3));
    }

    #[test]
    fn capacity() {
        let mut mrs = [0; MR_COUNT];
        let mut w = Writer::new(&mut mrs);
        for i in 0..63 {
            w.word(i).unwrap();
        }
        assert_eq!(w.word(63), Err(Error::MsgTooLong), "63 words at most");
        assert_eq!(w.item(CapArg::default().item()), Err(Error::MsgTooLong));
        let tag = w.finish(0).unwrap();
        assert_eq!(tag.words(), 63);

        let mut w = Writer::new(&mut mrs);
        for i in 0..32 {
            w.item(CapArg::new(i, CapRights::R).item()).unwrap();
        }
        assert_eq!(w.word(0), Err(Error::MsgTooLong));
        assert_eq!(w.item(CapArg::default().item()), Err(Error::MsgTooLong));
        let tag = w.finish(0).unwrap();
        assert_eq!((tag.words(), tag.items()), (0, 32));
        for i in 0..32 {
            let it = SendItem::from_words([mrs[2 * i], mrs[2 * i + 1]]);
            assert_eq!(CapArg::from_item(it).unwrap().index, i as u64, "order kept");
        }

        let mut w = Writer::new(&mut mrs);
        w.word(1).unwrap();
        assert_eq!(w.bytes(&[0; 8 * 63]), Err(Error::MsgTooLong));
        assert_eq!(w.words(&[0; 63]), Err(Error::MsgTooLong));
        assert_eq!(w.finish(MsgTag::LABEL_MAX + 1), Err(Error::Inval));
    }

    #[test]
    fn reader_accessors() {
        let mrs = [1, 2, 3, 4];
        let mut r = Reader::new(MsgTag::new(0, 4, 0, 0), &mrs).unwrap();
        assert_eq!(r.peek_word(), Some(1));
        assert_eq!(r.words(2), Ok(&[1, 2][..]));
        assert_eq!(r.words(3), Err(Error::MsgTooShort));
        assert_eq!(r.rest_words(), &[3, 4]);
        assert_eq!(r.word(), Err(Error::MsgTooShort));
        assert_eq!(r.item(), Err(Error::MsgMissArg));
        assert_eq!(r.finish(), Ok(()));
    }
}

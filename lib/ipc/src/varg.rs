//! L4Re's typed factory arguments ("vargs", Fiasco's `L4_varg_type`).
//!
//! A factory `create` message (label [`l4_abi::Proto::Factory`]) carries
//! the protocol of the object to create in MR0 and then a list of typed
//! arguments, each a header word `type | size << 16` followed by its value
//! ([`l4_abi::proto::varg`]): an unsigned or signed word, a string (its
//! bytes, including a terminating NUL, packed into words), a flexpage, or
//! nil. Kernel factories and L4Re's moe speak this layout, and so does ned's
//! Lua `factory:create(proto, ...)`, whose integers, strings and nils map
//! onto it.
//!
//! The types here are [`Arg`]s with that layout:
//!
//! * [`VUint`], [`VInt`]: integers; decoding accepts both the signed and the
//!   unsigned form (L4Re sends sizes signed, flags unsigned, Lua integers
//!   signed), encoding writes the type's own form;
//! * [`VStr<N>`]: a string of at most `N` bytes (the NUL is added when
//!   encoding and dropped when decoding);
//! * [`VAny<N>`]: any non-nil argument;
//! * [`VOpt<T>`]: an optional argument: decoding gives `None` for nil or for
//!   the end of the message; encoding writes nil, or nothing if no word
//!   follows ([`Writer::nil_unless_last`]);
//! * [`VarArgs`]: all remaining arguments, checked, for a server to walk
//!   with [`VarArgs::iter`] and a client to build with `push_*`.
//!
//! Errors as in [`crate::codec`]: a missing argument is
//! [`Error::MsgTooShort`], an argument of another type [`Error::Inval`], a
//! string longer than its bound [`Error::TooBig`].

use core::fmt;

use l4_abi::proto::varg::{self, Varg, Vargs};
use l4_abi::{Error, Fpage};

use crate::codec::{Arg, MAX_WORDS, Reader, Str, Writer};
use crate::words::Words;

pub use l4_abi::proto::varg::header;

/// Reads an integer argument of either signedness.
fn read_int(r: &mut Reader<'_>) -> Result<u64, Error> {
    let h = r.word()?;
    match (h & 0xffff, h >> 16) {
        (varg::UMWORD | varg::MWORD, 8) => r.word(),
        _ => Err(Error::Inval),
    }
}

/// An unsigned integer argument (`L4_VARG_TYPE_UMWORD`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct VUint(pub u64);

impl Arg for VUint {
    type View<'a> = u64;

    fn encode(&self, w: &mut Writer<'_>) -> Result<(), Error> {
        w.words(&[header(varg::UMWORD, 8), self.0])
    }

    fn encode_view(v: u64, w: &mut Writer<'_>) -> Result<(), Error> {
        VUint(v).encode(w)
    }

    fn decode(r: &mut Reader<'_>) -> Result<VUint, Error> {
        read_int(r).map(VUint)
    }
}

/// A signed integer argument (`L4_VARG_TYPE_MWORD`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct VInt(pub i64);

impl Arg for VInt {
    type View<'a> = i64;

    fn encode(&self, w: &mut Writer<'_>) -> Result<(), Error> {
        w.words(&[header(varg::MWORD, 8), self.0 as u64])
    }

    fn encode_view(v: i64, w: &mut Writer<'_>) -> Result<(), Error> {
        VInt(v).encode(w)
    }

    fn decode(r: &mut Reader<'_>) -> Result<VInt, Error> {
        read_int(r).map(|v| VInt(v as i64))
    }
}

/// Writes a string argument: `len + 1` bytes with the terminating NUL.
fn write_str(s: &[u8], bound: usize, w: &mut Writer<'_>) -> Result<(), Error> {
    if s.len() > bound {
        return Err(Error::TooBig);
    }
    let size = s.len() + 1;
    w.word(header(varg::STRING, size))?;
    // The NUL is the first padding byte of the packed words, unless the
    // string fills its last word exactly.
    w.bytes(s)?;
    if size % 8 == 1 {
        w.word(0)?;
    }
    Ok(())
}

/// Reads the value of a string argument whose header `h` was read.
fn read_str_value<const N: usize>(h: u64, r: &mut Reader<'_>) -> Result<Str<N>, Error> {
    let size = h >> 16;
    if size > N as u64 + 1 {
        return Err(Error::TooBig);
    }
    let mut buf = [0u8; 8 * MAX_WORDS];
    let size = size as usize;
    let buf = buf.get_mut(..size).ok_or(Error::MsgTooShort)?;
    r.bytes_into(buf)?;
    let s = match buf.split_last() {
        Some((0, s)) => s,
        _ => buf,
    };
    // Str::from_utf8 refuses > N bytes (a size of N + 1 without NUL).
    Str::from_utf8(s)
}

/// A string argument of at most `N` bytes (`L4_VARG_TYPE_STRING`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VStr<const N: usize>(pub Str<N>);

impl<const N: usize> VStr<N> {
    /// The string.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl<const N: usize> Arg for VStr<N> {
    type View<'a> = &'a str;

    fn encode(&self, w: &mut Writer<'_>) -> Result<(), Error> {
        write_str(self.0.as_bytes(), N, w)
    }

    fn encode_view(v: &str, w: &mut Writer<'_>) -> Result<(), Error> {
        write_str(v.as_bytes(), N, w)
    }

    fn decode(r: &mut Reader<'_>) -> Result<VStr<N>, Error> {
        let h = r.word()?;
        if h & 0xffff != varg::STRING {
            return Err(Error::Inval);
        }
        read_str_value(h, r).map(VStr)
    }
}

/// Any non-nil argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VAny<const N: usize> {
    /// An unsigned integer.
    Uint(u64),
    /// A signed integer.
    Int(i64),
    /// A string.
    Str(Str<N>),
    /// A flexpage.
    Fpage(Fpage),
}

impl<const N: usize> VAny<N> {
    /// The value as an integer, if it is one (of either signedness).
    pub const fn as_int(&self) -> Option<i64> {
        match *self {
            VAny::Uint(v) => Some(v as i64),
            VAny::Int(v) => Some(v),
            _ => None,
        }
    }

    /// The value as a string, if it is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            VAny::Str(s) => Some(s.as_str()),
            _ => None,
        }
    }
}

impl<const N: usize> Arg for VAny<N> {
    type View<'a> = VAny<N>;

    fn encode(&self, w: &mut Writer<'_>) -> Result<(), Error> {
        match self {
            VAny::Uint(v) => VUint(*v).encode(w),
            VAny::Int(v) => VInt(*v).encode(w),
            VAny::Str(s) => write_str(s.as_bytes(), N, w),
            VAny::Fpage(f) => w.words(&[header(varg::FPAGE, 8), f.0]),
        }
    }

    fn encode_view(v: VAny<N>, w: &mut Writer<'_>) -> Result<(), Error> {
        v.encode(w)
    }

    fn decode(r: &mut Reader<'_>) -> Result<VAny<N>, Error> {
        let h = r.word()?;
        match (h & 0xffff, h >> 16) {
            (varg::UMWORD, 8) => Ok(VAny::Uint(r.word()?)),
            (varg::MWORD, 8) => Ok(VAny::Int(r.word()? as i64)),
            (varg::FPAGE, 8) => Ok(VAny::Fpage(Fpage(r.word()?))),
            (varg::STRING, _) => read_str_value(h, r).map(VAny::Str),
            _ => Err(Error::Inval),
        }
    }
}

/// An optional argument: nil, absent at the end of the message, or a `T`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VOpt<T>(pub Option<T>);

impl<T: Arg> Arg for VOpt<T> {
    type View<'a> = Option<T::View<'a>>;

    fn encode(&self, w: &mut Writer<'_>) -> Result<(), Error> {
        match &self.0 {
            Some(v) => v.encode(w),
            None => {
                w.nil_unless_last();
                Ok(())
            }
        }
    }

    fn encode_view(v: Self::View<'_>, w: &mut Writer<'_>) -> Result<(), Error> {
        match v {
            Some(v) => T::encode_view(v, w),
            None => {
                w.nil_unless_last();
                Ok(())
            }
        }
    }

    fn decode(r: &mut Reader<'_>) -> Result<VOpt<T>, Error> {
        match r.peek_word() {
            None => Ok(VOpt(None)),
            Some(h) if h & 0xffff == varg::NIL => {
                r.word()?;
                Ok(VOpt(None))
            }
            Some(_) => T::decode(r).map(|v| VOpt(Some(v))),
        }
    }
}

/// All remaining arguments, checked to be well formed.
#[derive(Clone, Copy)]
pub struct VarArgs(Words<MAX_WORDS>);

impl VarArgs {
    /// No arguments.
    pub const fn new() -> VarArgs {
        VarArgs(Words::new())
    }

    /// The arguments' words.
    pub fn words(&self) -> &[u64] {
        self.0.as_slice()
    }

    /// The arguments (every one well formed: decoding checked them).
    pub fn iter(&self) -> Vargs<'_> {
        Vargs::new(self.words())
    }

    /// The number of arguments.
    pub fn count(&self) -> usize {
        self.iter().count()
    }

    /// Whether there are no arguments.
    pub const fn is_empty(&self) -> bool {
        self.0.room() == MAX_WORDS
    }

    fn push_words(&mut self, ws: &[u64]) -> Result<&mut VarArgs, Error> {
        self.0.push(ws)?;
        Ok(self)
    }

    /// Appends an unsigned integer.
    pub fn push_uint(&mut self, v: u64) -> Result<&mut VarArgs, Error> {
        self.push_words(&[header(varg::UMWORD, 8), v])
    }

    /// Appends a signed integer.
    pub fn push_int(&mut self, v: i64) -> Result<&mut VarArgs, Error> {
        self.push_words(&[header(varg::MWORD, 8), v as u64])
    }

    /// Appends a flexpage.
    pub fn push_fpage(&mut self, f: Fpage) -> Result<&mut VarArgs, Error> {
        self.push_words(&[header(varg::FPAGE, 8), f.0])
    }

    /// Appends nil.
    pub fn push_nil(&mut self) -> Result<&mut VarArgs, Error> {
        self.push_words(&[header(varg::NIL, 0)])
    }

    /// Appends a string (with its terminating NUL).
    pub fn push_str(&mut self, s: &str) -> Result<&mut VarArgs, Error> {
        let size = s.len() + 1;
        if 1 + size.div_ceil(8) > self.0.room() {
            return Err(Error::MsgTooLong);
        }
        self.push_words(&[header(varg::STRING, size)])?;
        for chunk in s.as_bytes().chunks(8) {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.push_words(&[u64::from_le_bytes(w)])?;
        }
        if size % 8 == 1 {
            self.push_words(&[0])?;
        }
        Ok(self)
    }
}

impl Default for VarArgs {
    fn default() -> VarArgs {
        VarArgs::new()
    }
}

impl PartialEq for VarArgs {
    fn eq(&self, other: &VarArgs) -> bool {
        self.words() == other.words()
    }
}

impl Eq for VarArgs {}

impl fmt::Debug for VarArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Arg for VarArgs {
    type View<'a> = &'a VarArgs;

    fn encode(&self, w: &mut Writer<'_>) -> Result<(), Error> {
        w.words(self.words())
    }

    fn encode_view(v: &VarArgs, w: &mut Writer<'_>) -> Result<(), Error> {
        v.encode(w)
    }

    fn decode(r: &mut Reader<'_>) -> Result<VarArgs, Error> {
        let ws = r.rest_words();
        if Vargs::new(ws).any(|a| a.is_err()) {
            return Err(Error::Inval);
        }
        let mut v = VarArgs::new();
        v.push_words(ws)?;
        Ok(v)
    }
}

/// Reads a string argument's bytes (without the terminating NUL) into
/// `out` (for walking [`VarArgs::iter`]); `None` if it does not fit.
pub fn str_bytes<'o>(a: &Varg<'_>, out: &'o mut [u8]) -> Option<&'o [u8]> {
    let Varg::Str(words, size) = *a else {
        return None;
    };
    let out = out.get_mut(..size)?;
    for (chunk, w) in out.chunks_mut(8).zip(words) {
        chunk.copy_from_slice(&w.to_le_bytes()[..chunk.len()]);
    }
    Some(match out.split_last() {
        Some((0, s)) => s,
        _ => out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{decode_one, encode_one};
    use l4_abi::MsgTag;
    use l4_abi::utcb::MR_COUNT;

    #[test]
    fn integers() {
        let mut mrs = [0; MR_COUNT];
        let t = encode_one(&VUint(42), 0, &mut mrs).unwrap();
        assert_eq!(&mrs[..2], &[header(varg::UMWORD, 8), 42]);
        assert_eq!(decode_one::<VUint>(t, &mrs), Ok(VUint(42)));
        let t = encode_one(&VInt(-3), 0, &mut mrs).unwrap();
        assert_eq!(&mrs[..2], &[header(varg::MWORD, 8), -3i64 as u64]);
        assert_eq!(decode_one::<VInt>(t, &mrs), Ok(VInt(-3)));
        // Either signedness is accepted.
        assert_eq!(decode_one::<VUint>(t, &mrs), Ok(VUint(-3i64 as u64)));
        // Wrong type, wrong size, missing value.
        let two = MsgTag::new(0, 2, 0, 0);
        assert_eq!(
            decode_one::<VUint>(two, &[header(varg::STRING, 8), 0]),
            Err(Error::Inval)
        );
        assert_eq!(
            decode_one::<VUint>(two, &[header(varg::UMWORD, 4), 0]),
            Err(Error::Inval)
        );
        let one = MsgTag::new(0, 1, 0, 0);
        assert_eq!(
            decode_one::<VUint>(one, &[header(varg::UMWORD, 8)]),
            Err(Error::MsgTooShort)
        );
    }

    #[test]
    fn strings() {
        let mut mrs = [0; MR_COUNT];
        for s in ["", "a", "1234567", "12345678", "rom/hello.lua"] {
            let t = encode_one(&VStr::<16>(Str::new(s).unwrap()), 0, &mut mrs).unwrap();
            assert_eq!(mrs[0], header(varg::STRING, s.len() + 1));
            assert_eq!(t.words() as usize, 1 + (s.len() + 1).div_ceil(8));
            let got = decode_one::<VStr<16>>(t, &mrs).unwrap();
            assert_eq!(got.as_str(), s);
            let v = Vargs::new(&mrs[..t.words() as usize])
                .next()
                .unwrap()
                .unwrap();
            let mut buf = [0; 32];
            assert_eq!(str_bytes(&v, &mut buf), Some(s.as_bytes()));
        }
        // Without NUL (as some senders do).
        let t = MsgTag::new(0, 2, 0, 0);
        let w = [
            header(varg::STRING, 3),
            u64::from_le_bytes(*b"abc\0\0\0\0\0"),
        ];
        assert_eq!(decode_one::<VStr<3>>(t, &w).unwrap().as_str(), "abc");
        // Longer than the bound, past the end, not UTF-8.
        let w = [
            header(varg::STRING, 5),
            u64::from_le_bytes(*b"abcd\0\0\0\0"),
        ];
        assert_eq!(decode_one::<VStr<3>>(t, &w), Err(Error::TooBig));
        let w = [
            header(varg::STRING, 5),
            u64::from_le_bytes(*b"abcd\0\0\0\0"),
        ];
        assert_eq!(
            decode_one::<VStr<16>>(MsgTag::new(0, 1, 0, 0), &w),
            Err(Error::MsgTooShort)
        );
        let w = [header(varg::STRING, 40), 0];
        assert_eq!(decode_one::<VStr<64>>(t, &w), Err(Error::MsgTooShort));
        let w = [header(varg::STRING, 1 << 40), 0];
        assert_eq!(decode_one::<VStr<64>>(t, &w), Err(Error::TooBig));
        let w = [header(varg::STRING, 2), 0xff];
        assert_eq!(decode_one::<VStr<8>>(t, &w), Err(Error::Inval));
        assert_eq!(
            decode_one::<VStr<8>>(t, &[header(varg::UMWORD, 8), 0]),
            Err(Error::Inval)
        );
    }

    #[test]
    fn optional_and_any() {
        let mut mrs = [0; MR_COUNT];
        // A trailing None vanishes; an inner one becomes nil.
        let t = encode_one(&(VUint(1), VOpt::<VUint>(None)), 0, &mut mrs).unwrap();
        assert_eq!(t.words(), 2);
        let t2 = encode_one(&(VOpt::<VUint>(None), VUint(1)), 0, &mut mrs).unwrap();
        assert_eq!(t2.words(), 3);
        assert_eq!(mrs[0], header(varg::NIL, 0));
        assert_eq!(
            decode_one::<(VOpt<VUint>, VUint)>(t2, &mrs),
            Ok((VOpt(None), VUint(1)))
        );
        let t = encode_one(&(VUint(1), VOpt(Some(VUint(2)))), 0, &mut mrs).unwrap();
        assert_eq!(
            decode_one::<(VUint, VOpt<VUint>)>(t, &mrs),
            Ok((VUint(1), VOpt(Some(VUint(2)))))
        );
        for a in [
            VAny::<8>::Uint(1),
            VAny::Int(-1),
            VAny::Str(Str::new("blue").unwrap()),
            VAny::Fpage(Fpage(0x1234_5000)),
        ] {
            let t = encode_one(&a, 0, &mut mrs).unwrap();
            assert_eq!(decode_one::<VAny<8>>(t, &mrs), Ok(a));
        }
        assert_eq!(VAny::<8>::Uint(3).as_int(), Some(3));
        assert_eq!(VAny::<8>::Str(Str::new("x").unwrap()).as_str(), Some("x"));
        let t = MsgTag::new(0, 1, 0, 0);
        assert_eq!(
            decode_one::<VAny<8>>(t, &[header(varg::NIL, 0)]),
            Err(Error::Inval)
        );
    }

    #[test]
    fn rest() {
        let mut v = VarArgs::new();
        v.push_str("key=1")
            .unwrap()
            .push_int(-1)
            .unwrap()
            .push_nil()
            .unwrap();
        v.push_uint(7).unwrap().push_fpage(Fpage(0x5000)).unwrap();
        assert_eq!(v.count(), 5);
        let mut mrs = [0; MR_COUNT];
        let t = encode_one(&v, 0, &mut mrs).unwrap();
        assert_eq!(decode_one::<VarArgs>(t, &mrs), Ok(v));
        // A malformed argument anywhere is refused.
        let n = t.words() as usize;
        mrs[n - 2] = header(0x77, 8);
        assert_eq!(decode_one::<VarArgs>(t, &mrs), Err(Error::Inval));
        // Capacity.
        let mut big = VarArgs::new();
        while big.push_uint(0).is_ok() {}
        assert_eq!(big.words().len(), MAX_WORDS - 1);
        assert_eq!(big.push_str("x").map(|_| ()), Err(Error::MsgTooLong));
        assert!(VarArgs::default().is_empty());
    }
}

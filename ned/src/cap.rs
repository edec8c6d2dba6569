//! Capabilities as scripts hold them, and their rights.
//!
//! A [`Cap`] names an object of the [`Backend`](crate::backend::Backend)
//! (its handle), carries the rights a script gave it and the protocol it
//! was created as or cast to. Rights follow L4Re's ned: `:m("rw")` *sets*
//! the rights the capability is handed on with (the kernel never lets a
//! mapping add rights ned does not hold), `r` is always added, and
//! [`SVR_RIGHTS`] is what `:svr()` gives the server end of an IPC gate.

use std::fmt;

pub use l4_abi::CapRights;

use crate::proto;

/// The rights a new capability object starts with: read only, as in L4Re
/// (scripts say `:m("rw")` or `:m("rws")` where a program needs more).
pub const DEFAULT_RIGHTS: CapRights = CapRights::R;

/// The rights of a server end (`:svr()`): `rwsd` and the server right `c`.
pub const SVR_RIGHTS: CapRights = CapRights(CapRights::RWSD.0 | CapRights::C.0);

/// A capability: an object of the backend, the rights it is handed on
/// with, and the protocol it was created as or cast to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cap {
    /// The backend's handle of the object (0 is never valid).
    pub obj: u64,
    /// The rights given to a task that gets this capability.
    pub rights: CapRights,
    /// The protocol (`L4.Proto`), when known.
    pub proto: Option<i64>,
}

impl Cap {
    /// A capability of object `obj` with the default rights.
    pub const fn new(obj: u64, proto: Option<i64>) -> Cap {
        Cap {
            obj,
            rights: DEFAULT_RIGHTS,
            proto,
        }
    }

    /// The same object with `rights` (L4Re's `:m()`; `r` is added).
    pub const fn with_rights(self, rights: CapRights) -> Cap {
        Cap {
            rights: CapRights(rights.0 | CapRights::R.0),
            ..self
        }
    }

    /// The same object seen as protocol `proto` (`L4.cast`).
    pub const fn cast(self, proto: i64) -> Cap {
        Cap {
            proto: Some(proto),
            ..self
        }
    }

    /// Whether the capability names an object.
    pub const fn is_valid(&self) -> bool {
        self.obj != 0
    }
}

impl fmt::Display for Cap {
    /// `L4::Cap<Dataspace>[0x12 rw]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = self.proto.map_or("?", |p| proto::name(p).unwrap_or("?"));
        write!(
            f,
            "L4::Cap<{kind}>[{:#x} {}]",
            self.obj,
            RightsLetters(self.rights)
        )
    }
}

/// Why a rights specification was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RightsError {
    /// A character that is not one of `r w s d n c`.
    BadLetter(char),
    /// An integer outside `0..=255`.
    OutOfRange(i64),
}

impl fmt::Display for RightsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RightsError::BadLetter(c) => write!(
                f,
                "unknown right '{c}' (rights are the letters r w s d n c, or an integer)"
            ),
            RightsError::OutOfRange(v) => {
                write!(f, "rights {v} out of range (0 to 255, see L4.Rights)")
            }
        }
    }
}

/// Parses rights letters as `:m()` takes them: `r w s d n c` in any case
/// and order; `r` is always added.
pub fn parse_rights(letters: &str) -> Result<CapRights, RightsError> {
    let mut r = CapRights::R.0;
    for c in letters.chars() {
        r |= match c.to_ascii_lowercase() {
            'r' => CapRights::R.0,
            'w' => CapRights::W.0,
            's' => CapRights::S.0,
            'd' => CapRights::D.0,
            'n' => CapRights::N.0,
            'c' => CapRights::C.0,
            _ => return Err(RightsError::BadLetter(c)),
        };
    }
    Ok(CapRights(r))
}

/// Rights given as an integer (`L4.Rights.rw`, `5`); `r` is always added.
pub fn rights_from_int(v: i64) -> Result<CapRights, RightsError> {
    u8::try_from(v)
        .map(|r| CapRights(r | CapRights::R.0))
        .map_err(|_| RightsError::OutOfRange(v))
}

/// Shows rights as letters in the order `r w s d n c` (`rw`, `rwsdc`);
/// object rights without a letter as `+0x40`.
#[derive(Clone, Copy, Debug)]
pub struct RightsLetters(pub CapRights);

impl fmt::Display for RightsLetters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let letters = [
            (CapRights::R, 'r'),
            (CapRights::W, 'w'),
            (CapRights::S, 's'),
            (CapRights::D, 'd'),
            (CapRights::N, 'n'),
            (CapRights::C, 'c'),
        ];
        let mut rest = self.0.0;
        for (bit, letter) in letters {
            if self.0.contains(bit) {
                write!(f, "{letter}")?;
                rest &= !bit.0;
            }
        }
        if rest != 0 {
            write!(f, "+{rest:#x}")?;
        }
        if self.0.0 == 0 {
            f.write_str("-")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_in_any_case_and_order_with_r_added() {
        assert_eq!(parse_rights("rw"), Ok(CapRights::RW));
        assert_eq!(parse_rights("w"), Ok(CapRights::RW));
        assert_eq!(parse_rights("RWS"), Ok(CapRights::RWS));
        assert_eq!(parse_rights("sWr"), Ok(CapRights::RWS));
        assert_eq!(parse_rights(""), Ok(CapRights::R));
        assert_eq!(parse_rights("rwsdnc"), Ok(CapRights(0x3f)));
        assert_eq!(parse_rights("rx"), Err(RightsError::BadLetter('x')));
        assert_eq!(parse_rights("r w"), Err(RightsError::BadLetter(' ')));
    }

    #[test]
    fn integers_get_r_added_and_are_bounded() {
        assert_eq!(rights_from_int(1), Ok(CapRights::RW));
        assert_eq!(rights_from_int(0), Ok(CapRights::R));
        assert_eq!(rights_from_int(0xff), Ok(CapRights::ALL));
        assert_eq!(rights_from_int(256), Err(RightsError::OutOfRange(256)));
        assert_eq!(rights_from_int(-1), Err(RightsError::OutOfRange(-1)));
    }

    #[test]
    fn rights_show_as_letters() {
        assert_eq!(RightsLetters(CapRights::RW).to_string(), "rw");
        assert_eq!(RightsLetters(SVR_RIGHTS).to_string(), "rwsdc");
        assert_eq!(RightsLetters(CapRights(0x44)).to_string(), "r+0x40");
        assert_eq!(RightsLetters(CapRights::NONE).to_string(), "-");
    }

    #[test]
    fn caps_change_rights_and_protocol_by_value() {
        let c = Cap::new(7, None);
        assert_eq!(c.rights, CapRights::R);
        let rw = c.with_rights(CapRights::W);
        assert_eq!(rw.rights, CapRights::RW);
        assert_eq!(rw.obj, 7);
        let f = rw.cast(proto::FACTORY);
        assert_eq!(f.proto, Some(proto::FACTORY));
        assert_eq!(f.to_string(), "L4::Cap<Factory>[0x7 rw]");
        assert!(!Cap::new(0, None).is_valid());
    }
}

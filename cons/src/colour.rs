//! Client colours as L4Re's cons takes them, and their ANSI sequences.
//!
//! A colour is one of the 16 ANSI colours: `0..=7` normal, `8..=15` bright.
//! The `create` argument is either a string whose first letter names it
//! (`n r g y b m c w`: black, red, green, yellow, blue, magenta, cyan,
//! white; upper case = bright; an empty string = white; another letter =
//! black), or an integer `0..=15`. Colour 0 (black) means "no colour":
//! output is written without colour sequences, as L4Re's cons does.

use core::fmt;

/// One of the 16 ANSI colours; 0 means uncoloured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Colour(u8);

/// An integer colour outside `0..=15`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadColour(pub i64);

impl fmt::Display for BadColour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "colour {} is not in 0..15", self.0)
    }
}

impl std::error::Error for BadColour {}

/// The colour letters in ANSI order.
const LETTERS: &[u8; 8] = b"nrgybmcw";

impl Colour {
    /// No colour sequences (colour 0).
    pub const NONE: Colour = Colour(0);
    /// White, the default when no colour is given.
    pub const DEFAULT: Colour = Colour(7);

    /// The colour a string names (its first letter).
    pub fn from_name(s: &str) -> Colour {
        let Some(&c) = s.as_bytes().first() else {
            return Colour::DEFAULT;
        };
        let bright = if c.is_ascii_uppercase() { 8 } else { 0 };
        match LETTERS.iter().position(|&l| l == c.to_ascii_lowercase()) {
            Some(i) => Colour(i as u8 | bright),
            None => Colour::NONE,
        }
    }

    /// The colour with ANSI number `n` (`0..=15`).
    pub fn from_number(n: i64) -> Result<Colour, BadColour> {
        u8::try_from(n)
            .ok()
            .filter(|&c| c < 16)
            .map(Colour)
            .ok_or(BadColour(n))
    }

    /// The ANSI number.
    pub const fn number(self) -> u8 {
        self.0
    }

    /// Whether output in this colour gets colour sequences.
    pub const fn is_coloured(self) -> bool {
        self.0 != 0
    }

    /// Whether this is a bright colour.
    pub const fn is_bright(self) -> bool {
        self.0 & 8 != 0
    }

    /// The letter naming this colour (upper case when bright).
    pub fn letter(self) -> char {
        let l = LETTERS[usize::from(self.0 & 7)];
        char::from(if self.is_bright() {
            l.to_ascii_uppercase()
        } else {
            l
        })
    }

    /// Appends the sequence that switches to this colour (nothing for
    /// [`Colour::NONE`]).
    pub fn push_start(self, out: &mut Vec<u8>) {
        if self.is_coloured() {
            out.extend_from_slice(b"\x1b[");
            if self.is_bright() {
                out.extend_from_slice(b"01;");
            }
            out.extend_from_slice(&[b'3', b'0' + (self.0 & 7), b'm']);
        }
    }

    /// Appends the sequence that ends a coloured stretch (nothing for
    /// [`Colour::NONE`]).
    pub fn push_end(self, out: &mut Vec<u8>) {
        if self.is_coloured() {
            out.extend_from_slice(RESET);
        }
    }
}

/// The ANSI sequence that resets all attributes.
pub const RESET: &[u8] = b"\x1b[0m";

impl Default for Colour {
    fn default() -> Colour {
        Colour::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(Colour::from_name("red"), Colour(1));
        assert_eq!(Colour::from_name("g"), Colour(2));
        assert_eq!(Colour::from_name("Blue"), Colour(12));
        assert_eq!(Colour::from_name("w"), Colour(7));
        assert_eq!(Colour::from_name("W"), Colour(15));
        assert_eq!(Colour::from_name(""), Colour::DEFAULT);
        assert_eq!(Colour::from_name("x"), Colour::NONE);
        assert_eq!(Colour::from_name("n"), Colour::NONE);
        assert_eq!(Colour::from_name("N"), Colour(8));
        assert_eq!(Colour::from_name("é"), Colour::NONE);
        assert_eq!(Colour(12).letter(), 'B');
        assert_eq!(Colour(3).letter(), 'y');
    }

    #[test]
    fn numbers() {
        assert_eq!(Colour::from_number(0), Ok(Colour::NONE));
        assert_eq!(Colour::from_number(15), Ok(Colour(15)));
        assert_eq!(Colour::from_number(16), Err(BadColour(16)));
        assert_eq!(Colour::from_number(-1), Err(BadColour(-1)));
        assert_eq!(BadColour(16).to_string(), "colour 16 is not in 0..15");
    }

    #[test]
    fn sequences() {
        let mut v = Vec::new();
        Colour(2).push_start(&mut v);
        assert_eq!(v, b"\x1b[32m");
        v.clear();
        Colour(12).push_start(&mut v);
        assert_eq!(v, b"\x1b[01;34m");
        v.clear();
        Colour::NONE.push_start(&mut v);
        Colour::NONE.push_end(&mut v);
        assert!(v.is_empty());
        Colour(1).push_end(&mut v);
        assert_eq!(v, RESET);
    }
}

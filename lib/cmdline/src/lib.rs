//! Command lines of the programs that have no `std`: the kernel's
//! (`-serial_esc -kmemsize=4096`, Fiasco's spelling) and moe's
//! (`--init=rom/x --l4re-dbg=0x10 args...`), both from `modules.list`.
//!
//! * [`parse_number`]: decimal or `0x` hexadecimal (no user needs a
//!   `K`/`M` suffix yet);
//! * [`words`]: the whitespace-separated words of a line as [`Word`]s:
//!   options (`-name`, `--name`, with an optional `=value`), arguments,
//!   and the `--` that ends the options.
//!
//! What an option means, and what follows the first argument, is the
//! caller's business. std programs (ned, cons) use `lexopt` instead.

#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

use core::str::SplitAsciiWhitespace;

/// Reads a number in decimal or `0x` (`0X`) hexadecimal; `None` for
/// anything else, including an empty string, a sign and overflow.
pub fn parse_number(s: &str) -> Option<u64> {
    let digits = |d: &str, radix| {
        if d.is_empty() || d.starts_with('+') {
            None
        } else {
            u64::from_str_radix(d, radix).ok()
        }
    };
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => digits(hex, 16),
        None => digits(s, 10),
    }
}

/// One word of a command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Word<'a> {
    /// `-name`, `--name`, `-name=value` or `--name=value`.
    Opt {
        /// The name, without the dashes and the value.
        name: &'a str,
        /// What follows the first `=` (`Some("")` for `--name=`).
        value: Option<&'a str>,
        /// Two dashes.
        long: bool,
        /// The whole word, for messages.
        word: &'a str,
    },
    /// `--` alone: the end of the options.
    End,
    /// Anything else (including `-` alone).
    Arg(&'a str),
}

impl<'a> Word<'a> {
    /// Classifies one word.
    pub fn of(word: &'a str) -> Word<'a> {
        let (body, long) = match word.strip_prefix("--") {
            Some("") => return Word::End,
            Some(b) => (b, true),
            None => match word.strip_prefix('-') {
                Some(b) if !b.is_empty() => (b, false),
                _ => return Word::Arg(word),
            },
        };
        let (name, value) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        Word::Opt {
            name,
            value,
            long,
            word,
        }
    }
}

/// The words of a command line ([`words`]).
#[derive(Clone, Debug)]
pub struct Words<'a> {
    inner: SplitAsciiWhitespace<'a>,
}

impl<'a> Words<'a> {
    /// The words not read yet, as they are (e.g. a program's arguments
    /// after the first one).
    pub fn rest(self) -> SplitAsciiWhitespace<'a> {
        self.inner
    }
}

impl<'a> Iterator for Words<'a> {
    type Item = Word<'a>;

    fn next(&mut self) -> Option<Word<'a>> {
        self.inner.next().map(Word::of)
    }
}

/// The words of `line` (separated by ASCII white space).
pub fn words(line: &str) -> Words<'_> {
    Words {
        inner: line.split_ascii_whitespace(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(parse_number("0"), Some(0));
        assert_eq!(parse_number("4096"), Some(4096));
        assert_eq!(parse_number("0x10"), Some(16));
        assert_eq!(parse_number("0XfF"), Some(255));
        assert_eq!(parse_number("18446744073709551615"), Some(u64::MAX));
        for bad in [
            "",
            "0x",
            "x10",
            "-1",
            "+1",
            "0x+1",
            "1_000",
            "12a",
            "18446744073709551616",
        ] {
            assert_eq!(parse_number(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn words_of_a_line() {
        let w: [Word<'_>; 7] = {
            let mut it = words("  -serial_esc --init=rom/x -k=  --  - arg\t--z");
            core::array::from_fn(|_| it.next().unwrap())
        };
        let opt = |name, value, long, word| Word::Opt {
            name,
            value,
            long,
            word,
        };
        assert_eq!(w[0], opt("serial_esc", None, false, "-serial_esc"));
        assert_eq!(w[1], opt("init", Some("rom/x"), true, "--init=rom/x"));
        assert_eq!(w[2], opt("k", Some(""), false, "-k="));
        assert_eq!(w[3], Word::End);
        assert_eq!(w[4], Word::Arg("-"));
        assert_eq!(w[5], Word::Arg("arg"));
        assert_eq!(w[6], opt("z", None, true, "--z"));
        assert_eq!(words("").next(), None);
        assert_eq!(Word::of("--a=b=c"), opt("a", Some("b=c"), true, "--a=b=c"));
    }

    #[test]
    fn the_rest_as_it_is() {
        let mut w = words("--x prog -v  --y");
        assert!(matches!(w.next(), Some(Word::Opt { name: "x", .. })));
        assert_eq!(w.next(), Some(Word::Arg("prog")));
        assert!(w.rest().eq(["-v", "--y"]));
    }
}

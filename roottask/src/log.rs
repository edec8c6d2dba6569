//! Log objects: a tag, a colour, and whole lines on the kernel console.
//!
//! Each write adds bytes to the object's line buffer; every complete line
//! goes out as one console write `tag     | text`, the tag padded to 8
//! columns (as L4Re's moe and cons print them) and, with a colour, the whole
//! line in that ANSI colour. A line longer than [`LINE_MAX`] is cut into
//! several.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

/// Longest text of one output line.
pub const LINE_MAX: usize = 400;
/// Column the `|` is in.
pub const TAG_WIDTH: usize = 8;

/// A colour: 0..=15 (0 = the terminal's default, 8.. bright).
pub type Colour = u8;

/// A colour from a letter of `nrgybmcw` (upper case: bright).
pub fn colour_letter(s: &str) -> Option<Colour> {
    let c = s.chars().next()?;
    let i = "nrgybmcw".find(c.to_ascii_lowercase())? as u8;
    Some(if c.is_ascii_uppercase() { i + 8 } else { i })
}

/// A colour from a number `0..=15`.
pub fn colour_number(n: i64) -> Option<Colour> {
    u8::try_from(n).ok().filter(|&n| n < 16)
}

/// A log's line buffer.
#[derive(Debug)]
pub struct LineLog {
    prefix: String,
    suffix: &'static str,
    buf: Vec<u8>,
}

impl LineLog {
    /// A log tagged `tag` in `colour`.
    pub fn new(tag: &str, colour: Option<Colour>) -> LineLog {
        let mut prefix = String::new();
        let mut suffix = "";
        if let Some(c) = colour.filter(|&c| c != 0) {
            let bright = if c & 8 != 0 { "1;" } else { "" };
            let _ = write!(prefix, "\x1b[{bright}3{}m", c & 7);
            suffix = "\x1b[0m";
        }
        let _ = write!(prefix, "{tag:<TAG_WIDTH$}| ");
        LineLog {
            prefix,
            suffix,
            buf: Vec::new(),
        }
    }

    /// Adds `data`; each complete line goes to `out` (one call per line,
    /// with its newline).
    pub fn write(&mut self, data: &[u8], out: &mut impl FnMut(&[u8])) {
        for &b in data {
            match b {
                b'\n' => self.emit(out),
                b'\r' => {}
                _ => {
                    self.buf.push(b);
                    if self.buf.len() >= LINE_MAX {
                        self.emit(out);
                    }
                }
            }
        }
    }

    /// Sends out a pending incomplete line.
    pub fn flush(&mut self, out: &mut impl FnMut(&[u8])) {
        if !self.buf.is_empty() {
            self.emit(out);
        }
    }

    fn emit(&mut self, out: &mut impl FnMut(&[u8])) {
        let mut line = Vec::with_capacity(self.prefix.len() + self.buf.len() + 8);
        line.extend_from_slice(self.prefix.as_bytes());
        line.append(&mut self.buf);
        line.extend_from_slice(self.suffix.as_bytes());
        line.push(b'\n');
        out(&line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;

    fn run(log: &mut LineLog, chunks: &[&[u8]]) -> Vec<String> {
        let mut lines = Vec::new();
        for c in chunks {
            log.write(c, &mut |l: &[u8]| {
                lines.push(String::from_utf8(l.to_vec()).unwrap())
            });
        }
        lines
    }

    #[test]
    fn whole_tagged_lines() {
        let mut l = LineLog::new("hello", None);
        let out = run(&mut l, &[b"Hello ", b"World!\nsecond\r\nthi", b"rd"]);
        assert_eq!(out, ["hello   | Hello World!\n", "hello   | second\n"]);
        let mut rest = Vec::new();
        l.flush(&mut |b: &[u8]| rest.push(b.to_vec()));
        assert_eq!(rest, [b"hello   | third\n".to_vec()]);
        let mut none = 0;
        l.flush(&mut |_: &[u8]| none += 1);
        assert_eq!(none, 0);
    }

    #[test]
    fn long_lines_are_cut_and_tags_not() {
        let mut l = LineLog::new("a_long_tag_name", None);
        let text = vec![b'x'; LINE_MAX + 10];
        let out = run(&mut l, &[&text, b"\n"]);
        assert_eq!(out.len(), 2);
        assert!(out[0].starts_with("a_long_tag_name| xxx"));
        assert_eq!(
            out[1],
            std::format!("a_long_tag_name| {}\n", "x".repeat(10))
        );
    }

    #[test]
    fn colours() {
        assert_eq!(colour_letter("r"), Some(1));
        assert_eq!(colour_letter("Blue"), Some(12));
        assert_eq!(colour_letter("w"), Some(7));
        assert_eq!(colour_letter("x"), None);
        assert_eq!(colour_letter(""), None);
        assert_eq!(colour_number(15), Some(15));
        assert_eq!(colour_number(16), None);
        assert_eq!(colour_number(-1), None);
        let mut l = LineLog::new("vm1", Some(10));
        let out = run(&mut l, &[b"hi\n"]);
        assert_eq!(out, ["\x1b[1;32mvm1     | hi\x1b[0m\n"]);
        let mut n = LineLog::new("n", colour_letter("n"));
        assert_eq!(run(&mut n, &[b"x\n"]), ["n       | x\n"]);
    }
}

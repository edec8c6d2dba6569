//! The output formatter: what goes to the terminal, line by line.
//!
//! Output of a client that is not focused is *tagged*: its name padded or
//! cut to [`TAG_WIDTH`] characters, then `| `, or `: ` when the line
//! continues one that was broken by somebody else's output, all in the
//! client's colour:
//!
//! ```text
//! vm1     | Linux version 6.1.0 ...
//! io      | io: ready
//! vm1     : (continued)
//! ```
//!
//! The focused client and cons itself write untagged. The formatter
//! remembers who has an unfinished line on the terminal; when somebody
//! else writes, that line is ended first (colour reset, newline) and its
//! owner is reported so it can be marked as broken. Lines therefore never
//! mix two writers. A line marked *erasable* (cons's prompt, which cons
//! shows again after the output) is erased instead of ended, so the
//! prompt stays below the output rather than after every line of it.

use crate::colour::{Colour, RESET};

/// The width of a tag.
pub const TAG_WIDTH: usize = 8;

/// Who writes on the terminal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Writer {
    /// cons itself: prompt, command output, messages.
    Mux,
    /// A client (by id).
    Client(u32),
}

/// The tag of a segment of tagged output.
#[derive(Clone, Copy, Debug)]
pub struct Tag<'a> {
    /// The client's name.
    pub name: &'a str,
    /// Its colour.
    pub colour: Colour,
    /// Whether the line continues a broken one (`: ` instead of `| `).
    pub continued: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Open {
    who: Writer,
    coloured: bool,
    /// Erased, not ended, when another writer takes the terminal.
    erasable: bool,
}

/// Back to the line's start and erase it (VT100).
const ERASE_LINE: &[u8] = b"\r\x1b[K";

/// The terminal's output and its open line.
#[derive(Clone, Debug, Default)]
pub struct Term {
    out: Vec<u8>,
    open: Option<Open>,
}

/// Appends `name` padded or cut to [`TAG_WIDTH`] characters.
pub fn push_tag_name(name: &str, out: &mut Vec<u8>) {
    let mut n = 0;
    for c in name.chars().take(TAG_WIDTH) {
        let mut b = [0; 4];
        out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
        n += 1;
    }
    out.resize(out.len() + (TAG_WIDTH - n), b' ');
}

impl Term {
    /// An empty terminal at the start of a line.
    pub const fn new() -> Term {
        Term {
            out: Vec::new(),
            open: None,
        }
    }

    /// Whether the terminal is at the start of a line.
    pub fn at_line_start(&self) -> bool {
        self.open.is_none()
    }

    /// Who has an unfinished line on the terminal.
    pub fn open_line(&self) -> Option<Writer> {
        self.open.map(|o| o.who)
    }

    /// Ends the open line, if any; returns its writer.
    pub fn break_line(&mut self) -> Option<Writer> {
        self.end_line(b"\n")
    }

    /// Ends the open line, if any, with `end` after its colour's reset;
    /// returns its writer.
    fn end_line(&mut self, end: &[u8]) -> Option<Writer> {
        let o = self.open.take()?;
        if o.coloured {
            self.out.extend_from_slice(RESET);
        }
        self.out.extend_from_slice(end);
        Some(o.who)
    }

    /// Marks the open line erasable: when another writer takes the
    /// terminal, or [`Term::yield_line`] is called, it is erased rather
    /// than ended (its writer shows it again afterwards).
    pub fn mark_erasable(&mut self) {
        if let Some(o) = &mut self.open {
            o.erasable = true;
        }
    }

    /// Frees the terminal for other output: ends the open line, or erases
    /// it if it is erasable. Returns its writer.
    pub fn yield_line(&mut self) -> Option<Writer> {
        let erasable = self.open?.erasable;
        self.end_line(if erasable { ERASE_LINE } else { b"\n" })
    }

    /// Declares the cursor back at the start of a line without a newline
    /// (after output that erased itself, such as `[Ctrl-E]` and its
    /// backspaces on an empty line).
    pub fn assume_line_start(&mut self) {
        self.open = None;
    }

    /// Writes `text` for `who`, tagged if `tag` is given; `end` ends the
    /// line after it. Newlines inside `text` end lines too. Returns the
    /// writer whose open line had to be broken first.
    pub fn segment(
        &mut self,
        who: Writer,
        tag: Option<Tag<'_>>,
        text: &[u8],
        end: bool,
    ) -> Option<Writer> {
        let mut broken = None;
        if self.open.is_some_and(|o| o.who != who) {
            broken = self.yield_line();
        }
        let mut pieces = text.split(|&b| b == b'\n').peekable();
        let mut first = true;
        while let Some(piece) = pieces.next() {
            let line_ends = pieces.peek().is_some() || end;
            if self.open.is_none() && (!piece.is_empty() || line_ends) {
                let coloured = match tag {
                    Some(t) => {
                        t.colour.push_start(&mut self.out);
                        push_tag_name(t.name, &mut self.out);
                        self.out.extend_from_slice(if first && t.continued {
                            b": "
                        } else {
                            b"| "
                        });
                        t.colour.is_coloured()
                    }
                    None => false,
                };
                self.open = Some(Open {
                    who,
                    coloured,
                    erasable: false,
                });
            }
            self.out.extend_from_slice(piece);
            if line_ends {
                self.break_line();
            }
            first = false;
        }
        broken
    }

    /// Writes `bytes` for `who` as they are (untagged, newlines kept);
    /// afterwards `who` has an open line if they do not end with a
    /// newline. Returns the writer whose open line had to be broken.
    pub fn raw(&mut self, who: Writer, bytes: &[u8]) -> Option<Writer> {
        if bytes.is_empty() {
            return None;
        }
        let broken = if self.open.is_some_and(|o| o.who != who) {
            self.yield_line()
        } else {
            None
        };
        self.out.extend_from_slice(bytes);
        self.open = match bytes.last() {
            Some(b'\n') => None,
            _ => Some(Open {
                who,
                coloured: self.open.is_some_and(|o| o.coloured),
                erasable: false,
            }),
        };
        broken
    }

    /// The output not yet taken.
    pub fn pending(&self) -> &[u8] {
        &self.out
    }

    /// Takes the output.
    pub fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Writer = Writer::Client(1);
    const B: Writer = Writer::Client(2);

    fn tag(name: &str, colour: u8, continued: bool) -> Option<Tag<'_>> {
        Some(Tag {
            name,
            colour: Colour::from_number(colour.into()).unwrap(),
            continued,
        })
    }

    fn text(t: &mut Term) -> String {
        String::from_utf8(t.take()).unwrap()
    }

    #[test]
    fn tags_are_padded_and_cut() {
        let mut v = Vec::new();
        push_tag_name("vm1", &mut v);
        push_tag_name("averylongname", &mut v);
        push_tag_name("äöü", &mut v);
        assert_eq!(String::from_utf8(v).unwrap(), "vm1     averylonäöü     ");
    }

    #[test]
    fn tagged_lines() {
        let mut t = Term::new();
        assert_eq!(t.segment(A, tag("one", 2, false), b"hello", true), None);
        assert_eq!(text(&mut t), "\x1b[32mone     | hello\x1b[0m\n");
        t.segment(A, tag("one", 0, false), b"plain", true);
        assert_eq!(text(&mut t), "one     | plain\n");
        t.segment(A, tag("one", 12, true), b"rest", true);
        assert_eq!(text(&mut t), "\x1b[01;34mone     : rest\x1b[0m\n");
        // Several lines in one segment: only the first continues.
        t.segment(A, tag("one", 0, true), b"a\nb", true);
        assert_eq!(text(&mut t), "one     : a\none     | b\n");
        assert!(t.at_line_start());
    }

    #[test]
    fn lines_never_mix() {
        let mut t = Term::new();
        t.segment(A, tag("a", 1, false), b"part", false);
        assert_eq!(t.open_line(), Some(A));
        // The same writer continues its line without a new tag.
        t.segment(A, tag("a", 1, false), b"-more", false);
        // Another one breaks it.
        assert_eq!(t.segment(B, tag("b", 0, false), b"line", true), Some(A));
        assert_eq!(
            text(&mut t),
            "\x1b[31ma       | part-more\x1b[0m\nb       | line\n"
        );
        // Untagged writers (cons, the focused client) are broken the same way.
        t.segment(Writer::Mux, None, b"cons> ", false);
        assert_eq!(
            t.segment(B, tag("b", 0, false), b"x", true),
            Some(Writer::Mux)
        );
        assert_eq!(text(&mut t), "cons> \nb       | x\n");
        assert_eq!(t.break_line(), None);
        // An erasable line (the prompt) is erased, not ended.
        t.segment(Writer::Mux, None, b"cons> ab", false);
        t.mark_erasable();
        t.segment(Writer::Mux, None, b"c", false);
        assert_eq!(
            t.segment(B, tag("b", 0, false), b"x", true),
            Some(Writer::Mux)
        );
        assert_eq!(text(&mut t), "cons> abc\r\x1b[Kb       | x\n");
        // Its own writer ends it as any line.
        t.segment(Writer::Mux, None, b"cons> ", false);
        t.mark_erasable();
        t.segment(Writer::Mux, None, b"list", true);
        assert_eq!(text(&mut t), "cons> list\n");
        t.segment(Writer::Mux, None, b"cons> ", false);
        t.mark_erasable();
        assert_eq!(t.yield_line(), Some(Writer::Mux));
        assert_eq!(text(&mut t), "cons> \r\x1b[K");
        // Nothing to write: no tag, no open line.
        t.segment(A, tag("a", 1, false), b"", false);
        assert!(t.at_line_start() && t.pending().is_empty());
        // An empty line still is a line.
        t.segment(A, None, b"", true);
        assert_eq!(text(&mut t), "\n");
    }

    #[test]
    fn raw_output() {
        let mut t = Term::new();
        t.segment(A, None, b"prompt", false);
        assert_eq!(t.raw(B, b"1\n2\n$ "), Some(A));
        assert_eq!(t.open_line(), Some(B));
        assert_eq!(t.raw(B, b""), None);
        assert_eq!(t.raw(B, b"x\n"), None);
        assert!(t.at_line_start());
        assert_eq!(text(&mut t), "prompt\n1\n2\n$ x\n");
    }
}

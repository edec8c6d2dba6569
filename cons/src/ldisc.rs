//! The input side of a client's line discipline: Vcon attributes, the
//! translation of typed bytes, echo, and the queue a client's `read`
//! takes from.
//!
//! As in L4Re's cons, input is not edited here (no canonical mode): typed
//! bytes go to the focused client one by one, translated by its input
//! flags (`ICRNL` turns the Enter key's `\r` into `\n`), and are echoed
//! when its `ECHO` flag is set. A client changes its flags with the Vcon
//! `set_attr` operation. Output flags are kept for `get_attr` but not
//! applied: the terminal (the kernel console) turns `\n` into `\r\n`.

use std::collections::VecDeque;

use l4_abi::proto::vcon;

/// Vcon attribute flags (Fiasco's `L4_vcon_*_flags`, the termios values).
pub use l4_abi::proto::vcon::attr as flags;

/// A client's Vcon attributes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attrs {
    /// Input flags.
    pub iflags: u64,
    /// Output flags.
    pub oflags: u64,
    /// Local flags.
    pub lflags: u64,
}

impl Default for Attrs {
    /// L4Re's cons defaults: CR to NL on input, echo on.
    fn default() -> Attrs {
        Attrs {
            iflags: flags::ICRNL,
            oflags: flags::ONLRET | flags::ONLCR,
            lflags: flags::ECHO,
        }
    }
}

impl Attrs {
    /// Translates a typed byte by the input flags; `None` if it is dropped.
    pub fn translate(&self, b: u8) -> Option<u8> {
        match b {
            b'\n' if self.iflags & flags::INLCR != 0 => Some(b'\r'),
            b'\r' if self.iflags & flags::IGNCR != 0 => None,
            b'\r' if self.iflags & flags::ICRNL != 0 => Some(b'\n'),
            b => Some(b),
        }
    }

    /// Whether typed bytes are echoed.
    pub fn echo(&self) -> bool {
        self.lflags & flags::ECHO != 0
    }
}

/// Appends how a byte the user typed is echoed: printable bytes, tab and
/// newline as they are, erase (DEL, BS) as `\b \b`, a lone CR as newline,
/// other control characters as `^X`.
pub fn push_echo(b: u8, out: &mut Vec<u8>) {
    match b {
        0x7f | 0x08 => out.extend_from_slice(b"\x08 \x08"),
        b'\r' => out.push(b'\n'),
        b'\n' | b'\t' => out.push(b),
        0..=0x1f => out.extend_from_slice(&[b'^', b + 0x40]),
        _ => out.push(b),
    }
}

/// The default number of bytes a client's input queue holds.
pub const INPUT_QUEUE: usize = 4096;

/// What a client has been sent and not read yet.
#[derive(Clone, Debug)]
pub struct InputQueue {
    buf: VecDeque<u8>,
    capacity: usize,
    brk: bool,
    bytes: u64,
    lines: u64,
    dropped: u64,
}

impl InputQueue {
    /// An empty queue of at most `capacity` bytes (at least 1).
    pub fn new(capacity: usize) -> InputQueue {
        InputQueue {
            buf: VecDeque::new(),
            capacity: capacity.max(1),
            brk: false,
            bytes: 0,
            lines: 0,
            dropped: 0,
        }
    }

    /// Queues `b`; `false` (and the byte counted as dropped) if full.
    pub fn put(&mut self, b: u8) -> bool {
        if self.buf.len() >= self.capacity {
            self.dropped += 1;
            return false;
        }
        self.buf.push_back(b);
        self.bytes += 1;
        self.lines += u64::from(b == b'\n');
        true
    }

    /// Records a break condition (reported by the next read).
    pub fn put_break(&mut self) {
        self.brk = true;
    }

    /// Whether a read would return something (bytes or a break).
    pub fn has_input(&self) -> bool {
        !self.buf.is_empty() || self.brk
    }

    /// Bytes waiting.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether no bytes are waiting.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Bytes ever queued.
    pub fn total_bytes(&self) -> u64 {
        self.bytes
    }

    /// Newlines ever queued.
    pub fn total_lines(&self) -> u64 {
        self.lines
    }

    /// Bytes dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Takes up to `max` bytes, with the Vcon read flags:
    /// [`vcon::READ_STAT_DONE`] when nothing is left afterwards,
    /// [`vcon::READ_STAT_BREAK`] once after a break.
    pub fn read(&mut self, max: usize) -> (Vec<u8>, u64) {
        let n = max.min(self.buf.len());
        let data: Vec<u8> = self.buf.drain(..n).collect();
        let mut f = 0;
        if self.brk {
            self.brk = false;
            f |= vcon::READ_STAT_BREAK;
        }
        if self.buf.is_empty() {
            f |= vcon::READ_STAT_DONE;
        }
        (data, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_flags() {
        let a = Attrs::default();
        assert_eq!(a.translate(b'\r'), Some(b'\n'));
        assert_eq!(a.translate(b'\n'), Some(b'\n'));
        assert_eq!(a.translate(b'x'), Some(b'x'));
        assert!(a.echo());
        let raw = Attrs {
            iflags: 0,
            oflags: 0,
            lflags: 0,
        };
        assert_eq!(raw.translate(b'\r'), Some(b'\r'));
        assert!(!raw.echo());
        let ign = Attrs {
            iflags: flags::IGNCR | flags::ICRNL | flags::INLCR,
            ..raw
        };
        assert_eq!(ign.translate(b'\r'), None);
        assert_eq!(ign.translate(b'\n'), Some(b'\r'));
    }

    #[test]
    fn echo() {
        let mut v = Vec::new();
        for b in [b'a', b'\n', 0x7f, 0x03, b'\r', 0xc3] {
            push_echo(b, &mut v);
        }
        assert_eq!(v, b"a\n\x08 \x08^C\n\xc3");
    }

    #[test]
    fn queue() {
        let mut q = InputQueue::new(4);
        let (d, f) = q.read(10);
        assert!(d.is_empty());
        assert_eq!(f, vcon::READ_STAT_DONE);
        for b in *b"ab\ncd" {
            q.put(b);
        }
        assert_eq!((q.len(), q.dropped(), q.total_lines()), (4, 1, 1));
        let (d, f) = q.read(3);
        assert_eq!((d.as_slice(), f), (&b"ab\n"[..], 0));
        let (d, f) = q.read(3);
        assert_eq!((d.as_slice(), f), (&b"c"[..], vcon::READ_STAT_DONE));
        q.put_break();
        assert!(q.has_input() && q.is_empty());
        let (d, f) = q.read(3);
        assert!(d.is_empty());
        assert_eq!(f, vcon::READ_STAT_BREAK | vcon::READ_STAT_DONE);
        assert!(!q.has_input());
        assert_eq!(q.total_bytes(), 4);
        assert_eq!(InputQueue::new(0).capacity, 1);
    }
}

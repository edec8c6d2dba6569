//! A client's output history: a ring buffer of its last bytes, for `cat`,
//! `tail`, `grep` and the lines shown when the client is focused.

use std::collections::VecDeque;

/// The last `capacity` bytes a client wrote, with totals.
#[derive(Clone, Debug)]
pub struct History {
    buf: VecDeque<u8>,
    capacity: usize,
    bytes: u64,
    lines: u64,
}

impl History {
    /// An empty history of at most `capacity` bytes (at least 1).
    pub fn new(capacity: usize) -> History {
        History {
            buf: VecDeque::new(),
            capacity: capacity.max(1),
            bytes: 0,
            lines: 0,
        }
    }

    /// Appends `data`, dropping the oldest bytes beyond the capacity.
    pub fn push(&mut self, data: &[u8]) {
        self.bytes += data.len() as u64;
        self.lines += data.iter().filter(|&&b| b == b'\n').count() as u64;
        let data = &data[data.len().saturating_sub(self.capacity)..];
        let excess = (self.buf.len() + data.len()).saturating_sub(self.capacity);
        self.buf.drain(..excess);
        self.buf.extend(data);
    }

    /// The bytes held.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The capacity in bytes.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes ever written.
    pub fn total_bytes(&self) -> u64 {
        self.bytes
    }

    /// Newlines ever written.
    pub fn total_lines(&self) -> u64 {
        self.lines
    }

    /// Whether the held bytes end in the middle of a line.
    pub fn ends_mid_line(&self) -> bool {
        self.buf.back().is_some_and(|&b| b != b'\n')
    }

    /// Everything held.
    pub fn all(&self) -> Vec<u8> {
        self.buf.iter().copied().collect()
    }

    /// The last `n` lines (an unfinished last line counts as one).
    pub fn tail(&self, n: usize) -> Vec<u8> {
        if n == 0 {
            return Vec::new();
        }
        // Skip the newline that ends the last line, then find the n-th
        // newline before it: the tail starts after it.
        let end = self.buf.len() - usize::from(!self.ends_mid_line() && !self.is_empty());
        let mut seen = 0;
        let mut start = 0;
        for i in (0..end).rev() {
            if self.buf[i] == b'\n' {
                seen += 1;
                if seen == n {
                    start = i + 1;
                    break;
                }
            }
        }
        self.buf.range(start..).copied().collect()
    }

    /// The lines held (without their newlines); the first may be cut by
    /// the ring, the last may be unfinished.
    pub fn lines(&self) -> Vec<Vec<u8>> {
        let all = self.all();
        let body = all.strip_suffix(b"\n").unwrap_or(&all);
        if body.is_empty() && all.is_empty() {
            return Vec::new();
        }
        body.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect()
    }

    /// Forgets the bytes held (the totals stay).
    pub fn clear(&mut self) {
        self.buf.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring() {
        let mut h = History::new(8);
        h.push(b"abc\n");
        assert_eq!((h.len(), h.total_bytes(), h.total_lines()), (4, 4, 1));
        h.push(b"defgh\n");
        assert_eq!(h.all(), b"c\ndefgh\n");
        assert_eq!(h.len(), 8);
        h.push(b"0123456789");
        assert_eq!(h.all(), b"23456789");
        assert_eq!((h.total_bytes(), h.total_lines()), (20, 2));
        assert!(h.ends_mid_line());
        h.clear();
        assert!(h.is_empty() && !h.ends_mid_line());
        assert_eq!(History::new(0).capacity(), 1);
    }

    #[test]
    fn tails() {
        let mut h = History::new(100);
        assert!(h.tail(3).is_empty());
        h.push(b"1\n2\n3\n4\n");
        assert_eq!(h.tail(2), b"3\n4\n");
        assert_eq!(h.tail(4), b"1\n2\n3\n4\n");
        assert_eq!(h.tail(10), b"1\n2\n3\n4\n");
        assert_eq!(h.tail(0), b"");
        h.push(b"prompt> ");
        assert_eq!(h.tail(1), b"prompt> ");
        assert_eq!(h.tail(2), b"4\nprompt> ");
        let mut e = History::new(10);
        e.push(b"\n\n");
        assert_eq!(e.tail(1), b"\n");
        assert_eq!(e.tail(5), b"\n\n");
    }

    #[test]
    fn line_lists() {
        let mut h = History::new(100);
        assert!(h.lines().is_empty());
        h.push(b"a\nbb\n");
        assert_eq!(h.lines(), vec![b"a".to_vec(), b"bb".to_vec()]);
        h.push(b"c");
        assert_eq!(h.lines().len(), 3);
        let mut n = History::new(10);
        n.push(b"\n");
        assert_eq!(n.lines(), vec![Vec::<u8>::new()]);
    }
}

//! Console input: the bytes the kernel takes from the UART until a program
//! reads them, and the escape into the kernel debugger (`-serial_esc`): a
//! lone ESC enters it, while an ESC that starts a sequence (an arrow key's
//! `ESC [ A`) is input like any other byte.

/// Where bytes come from: `next(false)` is a byte that is there now,
/// `next(true)` one that arrives within the escape's grace time.
pub trait Source {
    /// The next byte, if any (waiting for it when `wait`).
    fn next(&mut self, wait: bool) -> Option<u8>;
}

impl<F: FnMut(bool) -> Option<u8>> Source for F {
    fn next(&mut self, wait: bool) -> Option<u8> {
        self(wait)
    }
}

/// The escape byte.
pub const ESC: u8 = 0x1b;

/// A ring of input bytes; when full, the oldest are dropped.
pub struct InputRing<const N: usize> {
    buf: [u8; N],
    head: usize,
    len: usize,
}

impl<const N: usize> InputRing<N> {
    /// An empty ring.
    pub const fn new() -> InputRing<N> {
        InputRing {
            buf: [0; N],
            head: 0,
            len: 0,
        }
    }

    /// The number of bytes held.
    pub const fn len(&self) -> usize {
        self.len
    }

    /// Whether no byte is held.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends a byte (dropping the oldest when full).
    pub fn push(&mut self, b: u8) {
        if N == 0 {
            return;
        }
        if self.len == N {
            self.head = (self.head + 1) % N;
            self.len -= 1;
        }
        self.buf[(self.head + self.len) % N] = b;
        self.len += 1;
    }

    /// Takes the oldest byte.
    pub fn take(&mut self) -> Option<u8> {
        if self.len == 0 {
            return None;
        }
        let b = self.buf[self.head];
        self.head = (self.head + 1) % N;
        self.len -= 1;
        Some(b)
    }

    /// Drops the newest byte.
    fn drop_last(&mut self) {
        self.len = self.len.saturating_sub(1);
    }

    /// Moves what `src` has into the ring. With `escape_armed`, an ESC that
    /// is the last byte and is not followed by another within the grace
    /// time is taken out again; returns whether that happened (the caller
    /// enters the debugger).
    pub fn pump(&mut self, src: &mut impl Source, escape_armed: bool) -> bool {
        let mut last = None;
        loop {
            let next = match src.next(false) {
                Some(b) => Some(b),
                None if escape_armed && last == Some(ESC) => src.next(true),
                None => return false,
            };
            match next {
                Some(b) => {
                    self.push(b);
                    last = Some(b);
                }
                None => {
                    self.drop_last();
                    return true;
                }
            }
        }
    }
}

impl<const N: usize> Default for InputRing<N> {
    fn default() -> InputRing<N> {
        InputRing::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    /// Bytes that are there now, then (after a wait) later ones.
    struct Line {
        now: Vec<u8>,
        later: Vec<u8>,
    }

    impl Source for Line {
        fn next(&mut self, wait: bool) -> Option<u8> {
            if self.now.is_empty() && wait && !self.later.is_empty() {
                self.now = core::mem::take(&mut self.later);
            }
            (!self.now.is_empty()).then(|| self.now.remove(0))
        }
    }

    fn line(now: &[u8], later: &[u8]) -> Line {
        Line {
            now: now.to_vec(),
            later: later.to_vec(),
        }
    }

    fn drain<const N: usize>(r: &mut InputRing<N>) -> Vec<u8> {
        core::iter::from_fn(|| r.take()).collect()
    }

    #[test]
    fn plain_bytes_pass() {
        let mut r = InputRing::<8>::new();
        assert!(!r.pump(&mut line(b"ab", b""), true));
        assert_eq!(drain(&mut r), b"ab");
        assert!(r.is_empty());
    }

    #[test]
    fn a_lone_escape_is_taken_out() {
        let mut r = InputRing::<8>::new();
        assert!(r.pump(&mut line(b"x\x1b", b""), true));
        assert_eq!(drain(&mut r), b"x");
        // Not armed: it is input.
        assert!(!r.pump(&mut line(b"\x1b", b""), false));
        assert_eq!(drain(&mut r), b"\x1b");
    }

    #[test]
    fn escape_sequences_are_input() {
        let mut r = InputRing::<8>::new();
        assert!(!r.pump(&mut line(b"\x1b[A", b""), true));
        assert_eq!(drain(&mut r), b"\x1b[A");
        // The rest of the sequence comes a little later.
        assert!(!r.pump(&mut line(b"\x1b", b"[B"), true));
        assert_eq!(drain(&mut r), b"\x1b[B");
        // Two escapes: the first starts a "sequence", the second is lone.
        assert!(r.pump(&mut line(b"\x1b\x1b", b""), true));
        assert_eq!(drain(&mut r), b"\x1b");
    }

    #[test]
    fn a_full_ring_drops_the_oldest() {
        let mut r = InputRing::<4>::new();
        assert!(!r.pump(&mut line(b"abcdef", b""), true));
        assert_eq!(r.len(), 4);
        assert_eq!(drain(&mut r), b"cdef");
        assert_eq!(r.take(), None);
    }
}

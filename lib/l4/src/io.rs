//! Console output over the kernel's Vcon: [`print!`](crate::print) and
//! [`println!`](crate::println).
//!
//! Output is formatted into a line buffer on the stack and written with one
//! Vcon write per line (or per full buffer), so lines of different threads
//! do not interleave inside a line. The Vcon used is [`base::LOG`] unless
//! `set_log` chose another.
//!
//! [`base::LOG`]: crate::base::LOG

use core::fmt;

/// Buffers bytes and hands them to `sink` a line (or a full buffer) at a
/// time.
pub struct LineWriter<const N: usize, F: FnMut(&[u8])> {
    buf: [u8; N],
    len: usize,
    sink: F,
}

impl<const N: usize, F: FnMut(&[u8])> LineWriter<N, F> {
    /// An empty buffer writing to `sink`.
    pub const fn new(sink: F) -> LineWriter<N, F> {
        LineWriter {
            buf: [0; N],
            len: 0,
            sink,
        }
    }

    /// Adds bytes; complete lines and full buffers go to the sink.
    pub fn write_bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.len == N {
                self.flush();
            }
            self.buf[self.len] = b;
            self.len += 1;
            if b == b'\n' {
                self.flush();
            }
        }
    }

    /// Hands what is buffered to the sink.
    pub fn flush(&mut self) {
        if self.len > 0 {
            (self.sink)(&self.buf[..self.len]);
            self.len = 0;
        }
    }
}

impl<const N: usize, F: FnMut(&[u8])> fmt::Write for LineWriter<N, F> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.write_bytes(s.as_bytes());
        Ok(())
    }
}

/// A fixed-capacity string that formats into a buffer and silently cuts
/// what does not fit (for messages built without an allocator).
#[derive(Clone)]
pub struct FixedStr<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> FixedStr<N> {
    /// An empty string.
    pub const fn new() -> FixedStr<N> {
        FixedStr {
            buf: [0; N],
            len: 0,
        }
    }

    /// The text (cut at a character boundary if it overflowed).
    pub fn as_str(&self) -> &str {
        match core::str::from_utf8(&self.buf[..self.len]) {
            Ok(s) => s,
            Err(e) => {
                // Cut inside a multi-byte character: keep the valid part.
                let valid = &self.buf[..e.valid_up_to()];
                core::str::from_utf8(valid).unwrap_or("")
            }
        }
    }

    /// Formats `args` into a new string.
    pub fn format(args: fmt::Arguments<'_>) -> FixedStr<N> {
        let mut s = FixedStr::new();
        let _ = fmt::Write::write_fmt(&mut s, args);
        s
    }
}

impl<const N: usize> Default for FixedStr<N> {
    fn default() -> FixedStr<N> {
        FixedStr::new()
    }
}

impl<const N: usize> fmt::Write for FixedStr<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let n = s.len().min(N - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

impl<const N: usize> fmt::Debug for FixedStr<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl<const N: usize> fmt::Display for FixedStr<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(target_arch = "aarch64")]
mod console {
    use core::fmt::{self, Write};
    use core::sync::atomic::{AtomicU64, Ordering};

    use super::LineWriter;
    use crate::cap::{Cap, Vcon, base};

    static LOG: AtomicU64 = AtomicU64::new(base::LOG.index());

    /// Makes `print!` use `cap`.
    pub fn set_log(cap: Cap<Vcon>) {
        LOG.store(cap.index(), Ordering::Relaxed);
    }

    /// The Vcon `print!` uses.
    pub fn log() -> Cap<Vcon> {
        Cap::from_index(LOG.load(Ordering::Relaxed))
    }

    /// Unbuffered writer to one Vcon (each `write_str` is one or more
    /// writes); errors of the Vcon are reported as [`fmt::Error`].
    pub struct Console(pub Cap<Vcon>);

    impl Write for Console {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            self.0.write(s.as_bytes()).map_err(|_| fmt::Error)
        }
    }

    /// Writes formatted text to `cap`, a line per Vcon write.
    pub fn print_to(cap: Cap<Vcon>, args: fmt::Arguments<'_>) {
        let mut w = LineWriter::<256, _>::new(|b: &[u8]| {
            let _ = cap.write(b);
        });
        let _ = w.write_fmt(args);
        w.flush();
    }

    #[doc(hidden)]
    pub fn _print(args: fmt::Arguments<'_>) {
        print_to(log(), args);
    }
}

#[cfg(target_arch = "aarch64")]
pub use console::{_print, Console, log, print_to, set_log};

/// Prints to the kernel console (see [`crate::io`]).
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::io::_print(format_args!($($arg)*)) };
}

/// Prints a line to the kernel console (see [`crate::io`]).
#[macro_export]
macro_rules! println {
    () => { $crate::io::_print(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::io::_print(format_args!("{}\n", format_args!($($arg)*))) };
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use core::fmt::Write;
    use std::vec::Vec;

    #[test]
    fn writes_whole_lines() {
        let mut out: Vec<Vec<u8>> = Vec::new();
        {
            let mut w = LineWriter::<8, _>::new(|b: &[u8]| out.push(b.to_vec()));
            write!(w, "ab\ncdefghijk\n{}", 42).unwrap();
            w.flush();
        }
        assert_eq!(
            out,
            [
                b"ab\n".to_vec(),
                b"cdefghij".to_vec(),
                b"k\n".to_vec(),
                b"42".to_vec()
            ]
        );
    }

    #[test]
    fn fixed_strings_cut() {
        let s = FixedStr::<8>::format(format_args!("{}-{}", "abc", 12345));
        assert_eq!(s.as_str(), "abc-1234");
        let u = FixedStr::<4>::format(format_args!("aé€"));
        assert_eq!(u.as_str(), "aé", "cut before a partial character");
        assert_eq!(std::format!("{u}"), "aé");
        assert_eq!(FixedStr::<4>::default().as_str(), "");
    }
}

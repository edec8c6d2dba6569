//! xorshift64 (Marsaglia; shifts 13, 7, 17): the same pseudo-random
//! numbers from the same seed, cheap enough for the kernel test suite's
//! fuzzers and the host tests that throw random input at parsers and
//! servers. Predictable by design: never for keys, addresses or anything
//! an attacker must not guess.

#![no_std]

/// One step of xorshift64 from `x` (a non-zero `x` never gives zero).
pub const fn step(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

/// A fuzzer's message word from the random `v`: half the time a small
/// number (0 to 7, what opcodes, indices and counts look like), else `v`
/// itself.
pub const fn word(v: u64) -> u64 {
    if v.is_multiple_of(2) { v % 8 } else { v }
}

/// A generator.
#[derive(Clone, Debug)]
pub struct XorShift(u64);

impl XorShift {
    /// A generator from `seed` (zero, xorshift's fixed point, becomes 1).
    pub const fn new(seed: u64) -> XorShift {
        XorShift(if seed == 0 { 1 } else { seed })
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = step(self.0);
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_and_seed_zero() {
        let mut a = XorShift::new(1);
        assert_eq!(a.next_u64(), step(1));
        assert_eq!(step(1), 0x0000_0000_4082_2041);
        let mut z = XorShift::new(0);
        assert_eq!(z.next_u64(), step(1));
        // No short cycle in the first thousand.
        let mut s = XorShift::new(42);
        let first = s.next_u64();
        assert!((0..1000).all(|_| s.next_u64() != first));
    }

    #[test]
    fn words_small_or_whole() {
        assert_eq!(word(10), 2);
        assert_eq!(word(11), 11);
    }
}

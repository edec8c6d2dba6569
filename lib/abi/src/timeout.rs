//! IPC timeouts, encoded as Fiasco encodes them (`l4_timeout_s`).
//!
//! A timeout is 16 bits. A *relative* timeout (bit 15 clear) is a small
//! floating-point number of microseconds: a 10-bit mantissa `m` (bits 0..10)
//! and a 5-bit exponent `e` (bits 10..15) give `m * 2^e` µs. Two values are
//! special: `0` ([`Timeout::NEVER`], wait forever) and any `m = 0, e != 0`
//! (zero time; the canonical one is [`Timeout::ZERO`] = `0x0400`). With bit 15
//! set the timeout is *absolute*, as in Fiasco: its low bits name a buffer
//! register of the caller's UTCB that holds the deadline, in microseconds of
//! the system clock ([`clock_us`] of the generic timer's counter and
//! frequency; `l4_abi::call::clock_us` reads it). A deadline already past acts as
//! a zero timeout; a register index beyond the buffer registers is refused.
//!
//! A call carries two timeouts in `x2`: the send timeout in bits 16..32 and
//! the receive timeout in bits 0..16 ([`Timeouts`]).

/// `count` ticks of a counter running at `freq` Hz in units of which
/// `per_second` make a second (10^6: microseconds, 10^9: nanoseconds),
/// rounded down (modulo 2^64 where the result is larger; 0 for a zero
/// frequency).
///
/// Whole seconds and the rest apart, in 64 bits: a 128-bit division is a
/// library call of some hundred instructions, and the kernel converts on
/// every IPC with a timeout, the runtime on every clock read.
pub const fn counter_to_units(count: u64, freq: u64, per_second: u64) -> u64 {
    if freq == 0 {
        return 0;
    }
    if per_second != 0 && freq > u64::MAX / per_second {
        // The rest times `per_second` would not fit.
        return (count as u128 * per_second as u128 / freq as u128) as u64;
    }
    // count * p / freq = (count / freq) * p + (count % freq) * p / freq
    (count / freq)
        .wrapping_mul(per_second)
        .wrapping_add(count % freq * per_second / freq)
}

/// The system clock in microseconds for counter value `count` of a timer
/// running at `freq` Hz (what absolute timeouts are measured in).
pub const fn clock_us(count: u64, freq: u64) -> u64 {
    counter_to_units(count, freq, 1_000_000)
}

/// The largest counter frequency [`clock_count`] takes in 64 bits (the
/// rest of a second times the frequency must fit).
const FREQ_64_MAX: u64 = u64::MAX / 1_000_000;

/// The counter value at which the system clock reaches `us` (rounded up,
/// so a deadline never passes early); saturates at `u64::MAX`.
pub const fn clock_count(us: u64, freq: u64) -> u64 {
    if freq > FREQ_64_MAX {
        let c = (us as u128 * freq as u128).div_ceil(1_000_000);
        return if c > u64::MAX as u128 {
            u64::MAX
        } else {
            c as u64
        };
    }
    // us * freq / 10^6, rounded up = (us / 10^6) * freq + ceil((us % 10^6) * freq / 10^6)
    let part = (us % 1_000_000 * freq).div_ceil(1_000_000);
    match (us / 1_000_000).checked_mul(freq) {
        Some(whole) => whole.saturating_add(part),
        None => u64::MAX,
    }
}

/// One IPC timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct Timeout(pub u16);

/// What a timeout means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeoutKind {
    /// Wait without limit.
    Never,
    /// Do not wait: fail at once if the partner is not ready.
    Zero,
    /// Wait at most this many microseconds (> 0).
    Micros(u64),
    /// An absolute timeout (bit 15): the deadline (µs of the system
    /// clock) is in buffer register `br` of the caller's UTCB.
    Absolute {
        /// The buffer register.
        br: usize,
    },
}

impl Timeout {
    /// Wait forever.
    pub const NEVER: Timeout = Timeout(0);
    /// Do not wait.
    pub const ZERO: Timeout = Timeout(0x0400);
    /// The longest finite relative timeout: 1023 * 2^31 µs (about 610 hours).
    pub const MAX: Timeout = Timeout(0x7fff);
    /// [`Timeout::MAX`] in microseconds.
    pub const MAX_US: u64 = 1023 << 31;
    /// Bit 15: absolute timeout.
    pub const ABSOLUTE: u16 = 0x8000;

    /// A relative timeout `mantissa * 2^exponent` µs; the mantissa is cut to
    /// 10 bits and the exponent to 5.
    pub const fn rel(mantissa: u16, exponent: u8) -> Timeout {
        Timeout((mantissa & 0x3ff) | (((exponent as u16) & 0x1f) << 10))
    }

    /// The timeout closest to `us` microseconds that is not shorter (the
    /// mantissa is rounded up), so a wait never ends early. `0` gives
    /// [`Timeout::ZERO`]; values above [`Timeout::MAX_US`] saturate to
    /// [`Timeout::MAX`] (unlike Fiasco's `l4_timeout_from_us`, which turns
    /// them into "never": use [`Timeout::NEVER`] for that).
    pub const fn from_us(us: u64) -> Timeout {
        if us == 0 {
            return Timeout::ZERO;
        }
        if us > Timeout::MAX_US {
            return Timeout::MAX;
        }
        let mut e = 0u32;
        // Smallest e with ceil(us / 2^e) <= 1023.
        while us.div_ceil(1u64 << e) > 0x3ff {
            e += 1;
        }
        Timeout::rel(us.div_ceil(1u64 << e) as u16, e as u8)
    }

    /// An absolute timeout whose deadline is in buffer register `br`.
    pub const fn abs(br: u8) -> Timeout {
        Timeout(Self::ABSOLUTE | (br as u16 & 0x7fff))
    }

    /// What the timeout means.
    pub const fn kind(self) -> TimeoutKind {
        if self.0 & Self::ABSOLUTE != 0 {
            return TimeoutKind::Absolute {
                br: (self.0 & 0x7fff) as usize,
            };
        }
        if self.0 == 0 {
            return TimeoutKind::Never;
        }
        let m = (self.0 & 0x3ff) as u64;
        let e = (self.0 >> 10) & 0x1f;
        if m == 0 {
            TimeoutKind::Zero
        } else {
            TimeoutKind::Micros(m << e)
        }
    }

    /// The timeout in microseconds: `None` for never (and for absolute
    /// timeouts, which have no relative length), `Some(0)` for zero.
    pub const fn to_us(self) -> Option<u64> {
        match self.kind() {
            TimeoutKind::Never | TimeoutKind::Absolute { .. } => None,
            TimeoutKind::Zero => Some(0),
            TimeoutKind::Micros(us) => Some(us),
        }
    }

    /// Whether the timeout means "do not wait".
    pub const fn is_zero(self) -> bool {
        matches!(self.kind(), TimeoutKind::Zero)
    }

    /// Whether the timeout means "wait forever".
    pub const fn is_never(self) -> bool {
        self.0 == 0
    }
}

/// The pair of timeouts of one call (`x2`): send in bits 16..32, receive in
/// bits 0..16 (Fiasco's `l4_timeout_t`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct Timeouts(pub u32);

impl Timeouts {
    /// Both phases wait forever.
    pub const NEVER: Timeouts = Timeouts(0);
    /// Receive timeout zero, send forever.
    pub const RECV_ZERO: Timeouts = Timeouts(0x0000_0400);
    /// Send timeout zero, receive forever.
    pub const SEND_ZERO: Timeouts = Timeouts(0x0400_0000);
    /// Both timeouts zero.
    pub const BOTH_ZERO: Timeouts = Timeouts(0x0400_0400);

    /// Combines a send and a receive timeout.
    pub const fn new(send: Timeout, recv: Timeout) -> Timeouts {
        Timeouts(((send.0 as u32) << 16) | recv.0 as u32)
    }

    /// Reads `x2`; bits above 32 are ignored.
    pub const fn from_reg(x2: u64) -> Timeouts {
        Timeouts(x2 as u32)
    }

    /// The send timeout.
    pub const fn send(self) -> Timeout {
        Timeout((self.0 >> 16) as u16)
    }

    /// The receive timeout.
    pub const fn recv(self) -> Timeout {
        Timeout(self.0 as u16)
    }
}

impl Default for Timeout {
    fn default() -> Timeout {
        Timeout::NEVER
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specials() {
        assert_eq!(Timeout::NEVER.kind(), TimeoutKind::Never);
        assert_eq!(Timeout::ZERO.kind(), TimeoutKind::Zero);
        assert_eq!(
            Timeout(0x7c00).kind(),
            TimeoutKind::Zero,
            "m = 0, e != 0 is zero"
        );
        assert_eq!(Timeout(0x8001).kind(), TimeoutKind::Absolute { br: 1 });
        assert_eq!(Timeout::abs(5), Timeout(0x8005));
        assert_eq!(Timeout(0x8001).to_us(), None);
        assert_eq!(Timeout::MAX.to_us(), Some(Timeout::MAX_US));
        assert!(Timeout::ZERO.is_zero() && Timeout::NEVER.is_never());
    }

    #[test]
    fn clock_conversions() {
        assert_eq!(clock_us(62_500_000, 62_500_000), 1_000_000);
        assert_eq!(clock_us(1, 0), 0);
        // Round trip never ends early.
        for us in [0, 1, 7, 999_999, 1 << 40] {
            assert!(clock_us(clock_count(us, 62_500_000), 62_500_000) >= us);
        }
        assert_eq!(clock_count(u64::MAX, u64::MAX), u64::MAX);
        assert_eq!(clock_count(u64::MAX, 62_500_000), u64::MAX);
    }

    #[test]
    fn clock_conversions_match_128_bit_arithmetic() {
        let us_of = |c: u64, f: u64| (c as u128 * 1_000_000 / f as u128) as u64;
        let ns_of = |c: u64, f: u64| (c as u128 * 1_000_000_000 / f as u128) as u64;
        let count_of = |us: u64, f: u64| {
            let c = (us as u128 * f as u128).div_ceil(1_000_000);
            c.min(u64::MAX as u128) as u64
        };
        let freqs = [
            1,
            3,
            1_000_000,
            24_000_000,
            62_500_000,
            1_000_000_007,
            FREQ_64_MAX,
        ];
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for f in freqs {
            for v in [
                0,
                1,
                999_999,
                1_000_000,
                f - 1,
                f,
                f + 1,
                u64::MAX / f,
                u64::MAX,
            ] {
                assert_eq!(clock_us(v, f), us_of(v, f), "clock_us({v}, {f})");
                assert_eq!(clock_count(v, f), count_of(v, f), "clock_count({v}, {f})");
                let ns = counter_to_units(v, f, 1_000_000_000);
                assert_eq!(ns, ns_of(v, f), "ns of ({v}, {f})");
            }
            for _ in 0..2000 {
                // xorshift: values of every size.
                x = l4_xorshift::step(x);
                let v = x >> (x % 64);
                assert_eq!(clock_us(v, f), us_of(v, f), "clock_us({v}, {f})");
                assert_eq!(clock_count(v, f), count_of(v, f), "clock_count({v}, {f})");
            }
        }
    }

    #[test]
    fn encoding_matches_fiasco() {
        // l4_timeout_rel(m, e) = m | e << 10.
        assert_eq!(Timeout::rel(1000, 3).0, 1000 | (3 << 10));
        assert_eq!(Timeout::rel(1000, 3).to_us(), Some(8000));
        // Exact values below 1024 µs use exponent 0.
        assert_eq!(Timeout::from_us(1), Timeout::rel(1, 0));
        assert_eq!(Timeout::from_us(1023), Timeout::rel(1023, 0));
        assert_eq!(Timeout::from_us(1024), Timeout::rel(512, 1));
        assert_eq!(Timeout::from_us(0), Timeout::ZERO);
    }

    #[test]
    fn conversion_never_shortens_and_saturates() {
        for us in [
            1u64,
            7,
            1023,
            1024,
            1025,
            4095,
            1_000_000,
            123_456_789,
            1 << 40,
            Timeout::MAX_US,
        ] {
            let t = Timeout::from_us(us);
            let back = t.to_us().unwrap();
            assert!(back >= us, "{us} -> {back}");
            // Within one mantissa step (< 0.2 % for large values).
            assert!(back - us < back / 512 + 1, "{us} -> {back}");
        }
        assert_eq!(Timeout::from_us(Timeout::MAX_US + 1), Timeout::MAX);
        assert_eq!(Timeout::from_us(u64::MAX), Timeout::MAX);
    }

    #[test]
    fn pairs() {
        let t = Timeouts::new(Timeout::ZERO, Timeout::from_us(10));
        assert_eq!(t.send(), Timeout::ZERO);
        assert_eq!(t.recv().to_us(), Some(10));
        assert_eq!(
            Timeouts::from_reg(0xffff_ffff_0400_0400),
            Timeouts::BOTH_ZERO
        );
        assert_eq!(Timeouts::RECV_ZERO.recv(), Timeout::ZERO);
        assert_eq!(Timeouts::RECV_ZERO.send(), Timeout::NEVER);
        assert_eq!(Timeouts::SEND_ZERO.send(), Timeout::ZERO);
    }
}

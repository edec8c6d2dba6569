//! vmbench's portable part: from counter ticks to a cost per operation, and
//! the line the guest prints for it, which `cargo xtask bench vm` reads back.
//!
//! The guest times `rounds` operations with the virtual counter, then the
//! same loop with an empty operation, and prints the difference per round
//! in nanoseconds. Under QEMU's `-icount shift=0` every instruction takes
//! one nanosecond of virtual time, so the figure is the instructions the
//! whole machine executed for one operation: guest, kernel and uvmm.

#![no_std]
#![deny(unsafe_op_in_unsafe_fn)]

use core::fmt;

/// What every line of the guest starts with.
pub const PREFIX: &str = "vmbench: ";
/// The line after the last measurement.
pub const DONE: &str = "vmbench: done";

/// Nanoseconds per round of `ticks` counter ticks (at `frequency` Hz) for
/// `rounds` rounds, less the loop's own `baseline` ticks for as many
/// rounds; `None` without rounds or frequency. A baseline above the
/// measurement gives 0.
pub fn per_round_ns(ticks: u64, baseline: u64, rounds: u64, frequency: u64) -> Option<u64> {
    if rounds == 0 || frequency == 0 {
        return None;
    }
    let net = u128::from(ticks.saturating_sub(baseline));
    let ns = net * 1_000_000_000 / u128::from(frequency) / u128::from(rounds);
    u64::try_from(ns).ok()
}

/// One measurement: `vmbench: <what>: <rounds> rounds, <ns> ns each`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Measurement<'a> {
    /// The operation.
    pub what: &'a str,
    /// How many were timed.
    pub rounds: u64,
    /// Nanoseconds per operation, the loop's cost taken off.
    pub ns: u64,
}

impl fmt::Display for Measurement<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PREFIX}{}: {} rounds, {} ns each",
            self.what, self.rounds, self.ns
        )
    }
}

/// A line of the guest, read back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// A measurement.
    Measurement(Measurement<'a>),
    /// `vmbench: <what>: failed: <why>`: the text after the prefix.
    Failed(&'a str),
    /// [`DONE`].
    Done,
    /// Another line of the guest (its greeting): the text after the prefix.
    Other(&'a str),
}

/// Reads a line that contains [`PREFIX`] (console time stamps or tags may
/// come before it); `None` for lines without it.
pub fn parse(line: &str) -> Option<Line<'_>> {
    let at = line.find(PREFIX)?;
    let text = line[at..].trim_end();
    if text == DONE {
        return Some(Line::Done);
    }
    let rest = &text[PREFIX.len()..];
    if rest.contains(": failed") {
        return Some(Line::Failed(rest));
    }
    let measured = rest.strip_suffix(" ns each").and_then(|numbers| {
        let (what, numbers) = numbers.rsplit_once(": ")?;
        let (rounds, ns) = numbers.split_once(" rounds, ")?;
        Some(Measurement {
            what,
            rounds: rounds.parse().ok().filter(|&r| r > 0)?,
            ns: ns.parse().ok()?,
        })
    });
    Some(measured.map_or(Line::Other(rest), Line::Measurement))
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::format;

    #[test]
    fn ticks_to_nanoseconds() {
        // 62.5 MHz: 16 ns a tick.
        assert_eq!(
            per_round_ns(1_000_000, 100_000, 1_000, 62_500_000),
            Some(14_400)
        );
        // 1 GHz: ticks are nanoseconds.
        assert_eq!(per_round_ns(5_000, 1_000, 4, 1_000_000_000), Some(1_000));
        assert_eq!(per_round_ns(10, 20, 1, 1_000_000_000), Some(0));
        assert_eq!(per_round_ns(10, 0, 0, 1), None);
        assert_eq!(per_round_ns(10, 0, 1, 0), None);
        assert_eq!(per_round_ns(u64::MAX, 0, 1, 1), None);
    }

    #[test]
    fn lines_round_trip() {
        let m = Measurement {
            what: "HVC (PSCI_VERSION)",
            rounds: 10_000,
            ns: 1234,
        };
        let text = format!("{m}");
        assert_eq!(
            text,
            "vmbench: HVC (PSCI_VERSION): 10000 rounds, 1234 ns each"
        );
        assert_eq!(parse(&text), Some(Line::Measurement(m)));
        let tagged = format!("[   3.100] vmbench | {text}\r");
        assert_eq!(parse(&tagged), Some(Line::Measurement(m)));
        assert_eq!(parse("vmbench: done\r"), Some(Line::Done));
        assert_eq!(
            parse("vmbench: SGI: failed: not delivered"),
            Some(Line::Failed("SGI: failed: not delivered"))
        );
        // Not measurements: a greeting, no rounds, a negative figure.
        for other in [
            "counter at 62500000 Hz",
            "x: 0 rounds, 3 ns each",
            "x: 10 rounds, -3 ns each",
        ] {
            let line = format!("{PREFIX}{other}");
            assert_eq!(parse(&line), Some(Line::Other(other)));
        }
        assert_eq!(parse("guest: hello"), None);
    }
}

//! Sets of numbers written as runs, the form CPU sets take in L4Re's
//! configurations and ned's messages (`0-3,6`), used for CPU lists and
//! VLAN lists alike.

use core::fmt;

/// Displays the ascending numbers `I` yields as runs of consecutive
/// numbers: `0-3,6` (nothing for none). `I` is cloned for each display.
#[derive(Clone, Copy, Debug)]
pub struct Runs<I>(pub I);

impl<I: Iterator<Item = u64> + Clone> fmt::Display for Runs<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut it = self.0.clone().peekable();
        let mut first = true;
        while let Some(lo) = it.next() {
            let mut hi = lo;
            while it.peek() == Some(&(hi + 1)) {
                hi += 1;
                it.next();
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if lo == hi {
                write!(f, "{lo}")?;
            } else {
                write!(f, "{lo}-{hi}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    extern crate std;
    use std::string::ToString;

    #[test]
    fn runs_of_consecutive_numbers() {
        let s = |v: &[u64]| Runs(v.iter().copied()).to_string();
        assert_eq!(s(&[]), "");
        assert_eq!(s(&[5]), "5");
        assert_eq!(s(&[0, 1, 2, 3, 6]), "0-3,6");
        assert_eq!(s(&[1, 3, 4, 7, 8, 9]), "1,3-4,7-9");
    }
}

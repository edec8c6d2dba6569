//! CPU sets (`L4.Cpu_set`): which CPUs a scheduler proxy may use.
//!
//! A set is built from nothing, a bit mask (`0x3`: CPUs 0 and 1, as the
//! seeds write scheduler masks), a list of CPU numbers (`{0, 2}`) or a
//! string of numbers and ranges (`"0-3,6"`); `|` is the union, `&` the
//! intersection. As a factory argument it becomes its mask words, lowest
//! CPUs first (L4Re's scheduler `create` takes them that way).

use std::collections::BTreeSet;
use std::fmt;

/// The largest CPU number a set takes.
pub const MAX_CPU: u32 = 1023;

/// A set of CPU numbers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CpuSet(BTreeSet<u32>);

impl CpuSet {
    /// No CPU.
    pub fn new() -> CpuSet {
        CpuSet::default()
    }

    /// The CPUs whose bits are set in `mask`.
    pub fn from_mask(mask: u64) -> CpuSet {
        CpuSet((0..64).filter(|b| mask & (1 << b) != 0).collect())
    }

    /// The CPUs of a list.
    pub fn from_cpus(cpus: impl IntoIterator<Item = u32>) -> Result<CpuSet, String> {
        let mut s = CpuSet::new();
        for c in cpus {
            s.insert(c)?;
        }
        Ok(s)
    }

    /// Parses `"0-3,6"`: numbers and ranges separated by commas.
    pub fn parse(spec: &str) -> Result<CpuSet, String> {
        let mut s = CpuSet::new();
        let bad =
            || format!("invalid CPU set \"{spec}\" (expected numbers and ranges like \"0-3,6\")");
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let num = |t: &str| t.trim().parse::<u32>().map_err(|_| bad());
            let (lo, hi) = match part.split_once('-') {
                Some((a, b)) => (num(a)?, num(b)?),
                None => (num(part)?, num(part)?),
            };
            if lo > hi {
                return Err(bad());
            }
            for c in lo..=hi {
                s.insert(c)?;
            }
        }
        Ok(s)
    }

    /// Adds CPU `cpu`.
    pub fn insert(&mut self, cpu: u32) -> Result<(), String> {
        if cpu > MAX_CPU {
            return Err(format!("CPU {cpu} out of range (0 to {MAX_CPU})"));
        }
        self.0.insert(cpu);
        Ok(())
    }

    /// Whether CPU `cpu` is in the set.
    pub fn contains(&self, cpu: u32) -> bool {
        self.0.contains(&cpu)
    }

    /// The CPUs, in order.
    pub fn cpus(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().copied()
    }

    /// How many CPUs.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The union.
    pub fn union(&self, other: &CpuSet) -> CpuSet {
        CpuSet(self.0.union(&other.0).copied().collect())
    }

    /// The intersection.
    pub fn intersection(&self, other: &CpuSet) -> CpuSet {
        CpuSet(self.0.intersection(&other.0).copied().collect())
    }

    /// The mask words, CPU 0 in bit 0 of the first (at least one word).
    pub fn mask_words(&self) -> Vec<u64> {
        let n = self.0.last().map_or(1, |&c| c as usize / 64 + 1);
        let mut words = vec![0u64; n];
        for &c in &self.0 {
            words[c as usize / 64] |= 1 << (c % 64);
        }
        words
    }
}

impl fmt::Display for CpuSet {
    /// Ranges, like the strings [`CpuSet::parse`] takes: `0-3,6`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        l4_abi::runs::Runs(self.0.iter().map(|&c| u64::from(c))).fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_lists_and_ranges() {
        let a = CpuSet::from_mask(0x3);
        assert_eq!(a.cpus().collect::<Vec<_>>(), [0, 1]);
        let b = CpuSet::parse("2-3").unwrap();
        assert_eq!(b.mask_words(), [0xc]);
        assert_eq!(a.union(&b).to_string(), "0-3");
        assert!(a.intersection(&b).is_empty());
        let c = CpuSet::parse("0-3, 6,70").unwrap();
        assert_eq!(c.to_string(), "0-3,6,70");
        assert_eq!(c.mask_words(), [0x4f, 0x40]);
        assert_eq!(CpuSet::new().mask_words(), [0]);
        assert_eq!(CpuSet::from_cpus([5, 1]).unwrap().to_string(), "1,5");
    }

    #[test]
    fn bad_specifications_are_refused() {
        assert!(CpuSet::parse("3-1").is_err());
        assert!(CpuSet::parse("a").is_err());
        assert!(CpuSet::parse("0-").is_err());
        assert!(CpuSet::from_cpus([5000]).is_err());
        assert!(CpuSet::parse("").unwrap().is_empty());
    }
}

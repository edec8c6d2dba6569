//! Scheduler proxies: a client's view of the kernel scheduler, limited to
//! a priority range and a set of CPUs.
//!
//! A proxy created with `(max_prio, base_prio, cpus)` runs a thread asking
//! for priority `p` at `base_prio + p`, but never above `max_prio`, on the
//! requested CPUs that are also in `cpus`; a request for CPUs none of
//! which are allowed is refused. `Info` shows only the allowed CPUs.

use core::fmt;

use l4_abi::proto::SchedCpuSet;

/// Highest priority the kernel knows.
pub const PRIO_MAX: u64 = 255;

/// Why a proxy cannot be created or a request is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SchedError {
    /// `max_prio` must exceed `base_prio` and be at most [`PRIO_MAX`].
    BadLimits {
        /// Requested maximum.
        max: u64,
        /// Requested base.
        base: u64,
    },
    /// The proxy allows no CPU at all.
    NoCpus,
    /// None of the requested CPUs is allowed.
    NoAllowedCpu {
        /// The requested CPUs (bitmap of CPUs 0..64).
        requested: u64,
        /// The allowed ones.
        allowed: u64,
    },
}

impl fmt::Display for SchedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            SchedError::BadLimits { max, base } => write!(
                f,
                "bad priority limits: max {max} must exceed base {base} and be at most {PRIO_MAX}"
            ),
            SchedError::NoCpus => f.write_str("the CPU mask is empty"),
            SchedError::NoAllowedCpu { requested, allowed } => write!(
                f,
                "none of the requested CPUs {requested:#x} is allowed (allowed: {allowed:#x})"
            ),
        }
    }
}

/// The limits of a proxy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SchedLimits {
    /// Highest priority a thread gets.
    pub max_prio: u64,
    /// Priority 0 of the client.
    pub base_prio: u64,
    /// Allowed CPUs (bit `i` = CPU `i`).
    pub cpus: u64,
}

/// The CPUs 0..64 of a CPU set, as a bitmap.
pub fn cpu_bitmap(set: SchedCpuSet) -> u64 {
    (0..64u32)
        .filter(|&c| set.contains(c))
        .fold(0, |m, c| m | 1 << c)
}

/// `map` (bit `i` = CPU `i`) expressed in the form of `like` (its offset and
/// granularity): bit `j` set if any CPU of its group is in `map`.
pub fn to_set(map: u64, like: SchedCpuSet) -> u64 {
    let mut out = 0u64;
    for c in (0..64u32).filter(|c| map & (1 << c) != 0) {
        let Some(d) = c.checked_sub(like.offset) else {
            continue;
        };
        let bit = if like.granularity >= 32 {
            0
        } else {
            d >> like.granularity
        };
        if bit < 64 {
            out |= 1 << bit;
        }
    }
    out
}

impl SchedLimits {
    /// Limits `base_prio ..= max_prio` on `cpus` (all CPUs if `None`).
    pub fn new(
        max_prio: u64,
        base_prio: u64,
        cpus: Option<u64>,
    ) -> Result<SchedLimits, SchedError> {
        if max_prio <= base_prio || max_prio > PRIO_MAX {
            return Err(SchedError::BadLimits {
                max: max_prio,
                base: base_prio,
            });
        }
        let cpus = cpus.unwrap_or(u64::MAX);
        if cpus == 0 {
            return Err(SchedError::NoCpus);
        }
        Ok(SchedLimits {
            max_prio,
            base_prio,
            cpus,
        })
    }

    /// The kernel priority for a requested one.
    pub fn prio(&self, requested: u64) -> u64 {
        self.base_prio.saturating_add(requested).min(self.max_prio)
    }

    /// The CPUs (bitmap) for a requested set: the allowed ones among them.
    pub fn cpus_for(&self, requested: SchedCpuSet) -> Result<u64, SchedError> {
        let req = cpu_bitmap(requested);
        match req & self.cpus {
            0 => Err(SchedError::NoAllowedCpu {
                requested: req,
                allowed: self.cpus,
            }),
            m => Ok(m),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_are_offset_and_capped() {
        let l = SchedLimits::new(0x20, 0x10, Some(0b1100)).unwrap();
        assert_eq!(l.prio(0), 0x10);
        assert_eq!(l.prio(5), 0x15);
        assert_eq!(l.prio(0x10), 0x20);
        assert_eq!(l.prio(0xff), 0x20);
        assert_eq!(l.prio(u64::MAX), 0x20);
    }

    #[test]
    fn cpus_are_intersected() {
        let l = SchedLimits::new(10, 1, Some(0b1100)).unwrap();
        let all = SchedCpuSet::from_words(0, u64::MAX);
        assert_eq!(l.cpus_for(all), Ok(0b1100));
        assert_eq!(l.cpus_for(SchedCpuSet::from_words(0, 0b0110)), Ok(0b0100));
        assert_eq!(
            l.cpus_for(SchedCpuSet::from_words(0, 0b0011)),
            Err(SchedError::NoAllowedCpu {
                requested: 0b11,
                allowed: 0b1100
            })
        );
        // Offset 2, granularity 1: bit 0 = CPUs 2 and 3.
        let set = SchedCpuSet::from_words((1 << 24) | 2, 1);
        assert_eq!(cpu_bitmap(set), 0b1100);
        assert_eq!(l.cpus_for(set), Ok(0b1100));
        assert!(l.cpus_for(SchedCpuSet::from_words(0, 0)).is_err());
        let any = SchedLimits::new(10, 1, None).unwrap();
        assert_eq!(any.cpus, u64::MAX);
    }

    #[test]
    fn bad_limits_are_refused() {
        assert!(matches!(
            SchedLimits::new(5, 5, None),
            Err(SchedError::BadLimits { .. })
        ));
        assert!(matches!(
            SchedLimits::new(4, 5, None),
            Err(SchedError::BadLimits { .. })
        ));
        assert!(matches!(
            SchedLimits::new(256, 5, None),
            Err(SchedError::BadLimits { .. })
        ));
        assert_eq!(SchedLimits::new(6, 5, Some(0)), Err(SchedError::NoCpus));
        let e = SchedLimits::new(1, 2, None).unwrap_err();
        assert!(alloc::format!("{e}").contains("must exceed"));
    }

    #[test]
    fn maps_are_expressed_like_the_request() {
        assert_eq!(to_set(0b1111, SchedCpuSet::from_words(0, 0)), 0b1111);
        assert_eq!(
            to_set(0b1100, SchedCpuSet::from_words((1 << 24) | 2, 0)),
            0b1
        );
        assert_eq!(to_set(0b0110, SchedCpuSet::from_words(1, 0)), 0b11);
    }
}

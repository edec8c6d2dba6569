//! PSCI 1.0 (Arm DEN 0022) over HVC or SMC: the guest's CPU and system
//! power management.
//!
//! [`Psci::call`] handles one call from vCPU `caller` with the function ID
//! and arguments from `x0..x3` and returns the value for `x0` and what the
//! VMM must do ([`PowerAction`]): start another vCPU, stop this one, wait
//! for an interrupt, end the VM.

/// Return codes.
pub mod ret {
    /// Success.
    pub const SUCCESS: i64 = 0;
    /// The function is not implemented.
    pub const NOT_SUPPORTED: i64 = -1;
    /// A bad argument (an unknown target CPU, affinity level).
    pub const INVALID_PARAMETERS: i64 = -2;
    /// Not allowed now.
    pub const DENIED: i64 = -3;
    /// CPU_ON on a running CPU.
    pub const ALREADY_ON: i64 = -4;
    /// CPU_ON on a CPU that is being started.
    pub const ON_PENDING: i64 = -5;
    /// The entry point is not in guest RAM.
    pub const INVALID_ADDRESS: i64 = -9;
}

/// Function IDs (SMC32 `0x84..`, SMC64 `0xc4..`).
pub mod func {
    /// PSCI_VERSION.
    pub const VERSION: u32 = 0x8400_0000;
    /// CPU_SUSPEND (32-bit).
    pub const CPU_SUSPEND: u32 = 0x8400_0001;
    /// CPU_OFF.
    pub const CPU_OFF: u32 = 0x8400_0002;
    /// CPU_ON (32-bit).
    pub const CPU_ON: u32 = 0x8400_0003;
    /// AFFINITY_INFO (32-bit).
    pub const AFFINITY_INFO: u32 = 0x8400_0004;
    /// MIGRATE (32-bit).
    pub const MIGRATE: u32 = 0x8400_0005;
    /// MIGRATE_INFO_TYPE.
    pub const MIGRATE_INFO_TYPE: u32 = 0x8400_0006;
    /// MIGRATE_INFO_UP_CPU (32-bit).
    pub const MIGRATE_INFO_UP_CPU: u32 = 0x8400_0007;
    /// SYSTEM_OFF.
    pub const SYSTEM_OFF: u32 = 0x8400_0008;
    /// SYSTEM_RESET.
    pub const SYSTEM_RESET: u32 = 0x8400_0009;
    /// PSCI_FEATURES.
    pub const FEATURES: u32 = 0x8400_000a;
    /// SYSTEM_SUSPEND (32-bit).
    pub const SYSTEM_SUSPEND: u32 = 0x8400_000e;
    /// The SMC64 variant of a 32-bit ID.
    pub const fn smc64(f: u32) -> u32 {
        f | 0x4000_0000
    }
}

/// The version uvmm implements: 1.0.
pub const VERSION_1_0: u64 = 0x0001_0000;
/// MIGRATE_INFO_TYPE: no Trusted OS needs migrating.
pub const MIGRATE_NOT_NEEDED: u64 = 2;
/// The exit code of SYSTEM_OFF.
pub const EXIT_OFF: u8 = 0;
/// The exit code of SYSTEM_RESET (ned's handler may restart the VM).
pub const EXIT_RESET: u8 = 102;

/// A vCPU's power state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Power {
    /// Off (never started, or CPU_OFF).
    Off,
    /// Started by CPU_ON, not yet running.
    OnPending {
        /// Where it starts.
        entry: u64,
        /// Its `x0`.
        context: u64,
    },
    /// Running.
    On,
}

/// What the VMM does after a PSCI call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerAction {
    /// Resume the caller.
    Resume,
    /// Start vCPU `target` (now [`Power::OnPending`]), then resume the caller.
    Start(usize),
    /// The caller is off: stop running it until a CPU_ON.
    Off,
    /// Standby: wait for an interrupt, then resume after the call.
    Standby,
    /// Power-down suspend: wait for an interrupt, then start at `entry`
    /// with `x0` = `context` (MMU off, interrupts masked).
    Suspend {
        /// The resume address.
        entry: u64,
        /// Its `x0`.
        context: u64,
    },
    /// End the VM with this exit code.
    Exit(u8),
}

/// The result of a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The value for `x0` (`None`: the call does not return, x0 untouched).
    pub x0: Option<u64>,
    /// What to do.
    pub action: PowerAction,
}

impl Outcome {
    fn ret(v: i64) -> Outcome {
        Outcome {
            x0: Some(v as u64),
            action: PowerAction::Resume,
        }
    }

    fn noreturn(action: PowerAction) -> Outcome {
        Outcome { x0: None, action }
    }
}

/// The vCPUs' power states.
#[derive(Clone, Debug)]
pub struct Psci {
    /// (MPIDR affinity, power state) per vCPU.
    cpus: Vec<(u64, Power)>,
}

/// The affinity bits of an MPIDR (Aff3, Aff2, Aff1, Aff0).
pub const MPIDR_AFF_MASK: u64 = 0xff_00ff_ffff;

impl Psci {
    /// vCPUs with these affinities; the first is on (the boot vCPU).
    pub fn new(mpidrs: &[u64]) -> Psci {
        Psci {
            cpus: mpidrs
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    (
                        m & MPIDR_AFF_MASK,
                        if i == 0 { Power::On } else { Power::Off },
                    )
                })
                .collect(),
        }
    }

    /// vCPU `i`'s state.
    pub fn power(&self, i: usize) -> Option<Power> {
        self.cpus.get(i).map(|c| c.1)
    }

    /// Marks a started vCPU as running; its entry and context.
    pub fn started(&mut self, i: usize) -> Option<(u64, u64)> {
        match self.cpus.get(i)?.1 {
            Power::OnPending { entry, context } => {
                self.cpus[i].1 = Power::On;
                Some((entry, context))
            }
            _ => None,
        }
    }

    fn index_of(&self, mpidr: u64) -> Option<usize> {
        self.cpus.iter().position(|c| c.0 == mpidr & MPIDR_AFF_MASK)
    }

    fn supported(f: u32) -> bool {
        use func::*;
        [
            VERSION,
            CPU_SUSPEND,
            CPU_OFF,
            CPU_ON,
            AFFINITY_INFO,
            MIGRATE_INFO_TYPE,
            SYSTEM_OFF,
            SYSTEM_RESET,
            FEATURES,
            SYSTEM_SUSPEND,
            smc64(CPU_SUSPEND),
            smc64(CPU_ON),
            smc64(AFFINITY_INFO),
            smc64(SYSTEM_SUSPEND),
        ]
        .contains(&f)
    }

    /// Handles a call from vCPU `caller`: `x` = `x0..x3`; `in_ram` says
    /// whether an entry address is guest RAM.
    pub fn call(&mut self, caller: usize, x: [u64; 4], in_ram: impl Fn(u64) -> bool) -> Outcome {
        let f = x[0] as u32;
        // SMC32 calls take 32-bit arguments.
        let arg = |i: usize| {
            if f & 0x4000_0000 == 0 {
                x[i] & 0xffff_ffff
            } else {
                x[i]
            }
        };
        if x[0] >> 32 != 0 {
            return Outcome::ret(ret::NOT_SUPPORTED);
        }
        let fid = f & !0x4000_0000;
        let is_64 = f & 0x4000_0000 != 0;
        if is_64 && !Psci::supported(f) {
            return Outcome::ret(ret::NOT_SUPPORTED);
        }
        match fid {
            func::VERSION => Outcome::ret(VERSION_1_0 as i64),
            func::FEATURES => {
                let q = arg(1);
                if q >> 32 == 0 && Psci::supported(q as u32) {
                    // CPU_SUSPEND: original power_state format, no OS-initiated mode.
                    Outcome::ret(ret::SUCCESS)
                } else {
                    Outcome::ret(ret::NOT_SUPPORTED)
                }
            }
            func::CPU_ON => {
                let (target, entry, context) = (arg(1), arg(2), arg(3));
                let Some(t) = self.index_of(target) else {
                    return Outcome::ret(ret::INVALID_PARAMETERS);
                };
                match self.cpus[t].1 {
                    Power::On => Outcome::ret(ret::ALREADY_ON),
                    Power::OnPending { .. } => Outcome::ret(ret::ON_PENDING),
                    Power::Off if !in_ram(entry) => Outcome::ret(ret::INVALID_ADDRESS),
                    Power::Off => {
                        self.cpus[t].1 = Power::OnPending { entry, context };
                        Outcome {
                            x0: Some(ret::SUCCESS as u64),
                            action: PowerAction::Start(t),
                        }
                    }
                }
            }
            func::CPU_OFF => {
                if let Some(c) = self.cpus.get_mut(caller) {
                    c.1 = Power::Off;
                }
                Outcome::noreturn(PowerAction::Off)
            }
            func::AFFINITY_INFO => {
                let (target, level) = (arg(1), arg(2));
                if level != 0 {
                    return Outcome::ret(ret::INVALID_PARAMETERS);
                }
                match self.index_of(target).map(|t| self.cpus[t].1) {
                    None => Outcome::ret(ret::INVALID_PARAMETERS),
                    Some(Power::On) => Outcome::ret(0),
                    Some(Power::Off) => Outcome::ret(1),
                    Some(Power::OnPending { .. }) => Outcome::ret(2),
                }
            }
            func::CPU_SUSPEND => {
                let (state, entry, context) = (arg(1), arg(2), arg(3));
                // Original format: bit 16 StateType, 1 = power down.
                if state & (1 << 16) == 0 {
                    Outcome {
                        x0: Some(ret::SUCCESS as u64),
                        action: PowerAction::Standby,
                    }
                } else if !in_ram(entry) {
                    Outcome::ret(ret::INVALID_ADDRESS)
                } else {
                    Outcome::noreturn(PowerAction::Suspend { entry, context })
                }
            }
            func::SYSTEM_SUSPEND => {
                let (entry, context) = (arg(1), arg(2));
                let others_on = self
                    .cpus
                    .iter()
                    .enumerate()
                    .any(|(i, c)| i != caller && c.1 != Power::Off);
                if others_on {
                    Outcome::ret(ret::DENIED)
                } else if !in_ram(entry) {
                    Outcome::ret(ret::INVALID_ADDRESS)
                } else {
                    Outcome::noreturn(PowerAction::Suspend { entry, context })
                }
            }
            func::MIGRATE_INFO_TYPE => Outcome::ret(MIGRATE_NOT_NEEDED as i64),
            func::SYSTEM_OFF => Outcome::noreturn(PowerAction::Exit(EXIT_OFF)),
            func::SYSTEM_RESET => Outcome::noreturn(PowerAction::Exit(EXIT_RESET)),
            // MIGRATE, MIGRATE_INFO_UP_CPU (no Trusted OS), and the rest.
            _ => Outcome::ret(ret::NOT_SUPPORTED),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::func::*;
    use super::*;

    fn ram(a: u64) -> bool {
        (0x4000_0000..0x5000_0000).contains(&a)
    }

    fn r(v: i64) -> Outcome {
        Outcome {
            x0: Some(v as u64),
            action: PowerAction::Resume,
        }
    }

    #[test]
    fn version_features_migrate() {
        let mut p = Psci::new(&[0, 1]);
        assert_eq!(p.call(0, [VERSION as u64, 0, 0, 0], ram), r(0x1_0000));
        assert_eq!(
            p.call(0, [FEATURES as u64, smc64(CPU_ON) as u64, 0, 0], ram),
            r(0)
        );
        assert_eq!(
            p.call(0, [FEATURES as u64, SYSTEM_RESET as u64, 0, 0], ram),
            r(0)
        );
        assert_eq!(
            p.call(0, [FEATURES as u64, MIGRATE as u64, 0, 0], ram),
            r(-1)
        );
        assert_eq!(p.call(0, [FEATURES as u64, 0x8000_0000, 0, 0], ram), r(-1));
        assert_eq!(p.call(0, [MIGRATE_INFO_TYPE as u64, 0, 0, 0], ram), r(2));
        assert_eq!(p.call(0, [MIGRATE_INFO_UP_CPU as u64, 0, 0, 0], ram), r(-1));
        assert_eq!(p.call(0, [smc64(MIGRATE) as u64, 0, 0, 0], ram), r(-1));
        assert_eq!(p.call(0, [smc64(VERSION) as u64, 0, 0, 0], ram), r(-1));
        assert_eq!(p.call(0, [0x8400_00ff, 0, 0, 0], ram), r(-1));
        assert_eq!(p.call(0, [0x1_8400_0000, 0, 0, 0], ram), r(-1));
    }

    #[test]
    fn cpu_on_affinity_off() {
        let mut p = Psci::new(&[0x8000_0000, 0x8000_0001, 0x100]);
        let on = smc64(CPU_ON) as u64;
        let aff = smc64(AFFINITY_INFO) as u64;
        assert_eq!(p.call(0, [aff, 1, 0, 0], ram), r(1));
        assert_eq!(p.call(0, [aff, 0, 0, 0], ram), r(0));
        assert_eq!(p.call(0, [aff, 0, 1, 0], ram), r(-2));
        assert_eq!(p.call(0, [on, 7, 0x4000_0000, 0], ram), r(-2));
        assert_eq!(p.call(0, [on, 1, 0x1000, 0], ram), r(-9));
        assert_eq!(p.call(0, [on, 0, 0x4000_0000, 0], ram), r(-4));
        assert_eq!(
            p.call(0, [on, 1, 0x4008_0000, 0xc0de], ram),
            Outcome {
                x0: Some(0),
                action: PowerAction::Start(1)
            }
        );
        assert_eq!(p.call(0, [on, 1, 0x4008_0000, 0], ram), r(-5));
        assert_eq!(p.call(0, [aff, 1, 0, 0], ram), r(2));
        assert_eq!(p.started(1), Some((0x4008_0000, 0xc0de)));
        assert_eq!(p.started(1), None);
        assert_eq!(p.call(0, [aff, 1, 0, 0], ram), r(0));
        // Aff1 = 1 is vCPU 2.
        assert!(matches!(
            p.call(0, [on, 0x100, 0x4000_0000, 0], ram).action,
            PowerAction::Start(2)
        ));
        assert_eq!(
            p.call(1, [CPU_OFF as u64, 0, 0, 0], ram),
            Outcome {
                x0: None,
                action: PowerAction::Off
            }
        );
        assert_eq!(p.power(1), Some(Power::Off));
        // 32-bit CPU_ON truncates its arguments.
        assert!(matches!(
            p.call(
                0,
                [CPU_ON as u64, 0xffff_ffff_0000_0001, 0x4000_0000, 0],
                ram
            )
            .action,
            PowerAction::Start(1)
        ));
    }

    #[test]
    fn suspend_and_system_calls() {
        let mut p = Psci::new(&[0, 1]);
        let s = smc64(CPU_SUSPEND) as u64;
        assert_eq!(
            p.call(0, [s, 0, 0, 0], ram),
            Outcome {
                x0: Some(0),
                action: PowerAction::Standby
            }
        );
        assert_eq!(
            p.call(0, [s, 1 << 16, 0x4000_1000, 5], ram),
            Outcome {
                x0: None,
                action: PowerAction::Suspend {
                    entry: 0x4000_1000,
                    context: 5
                }
            }
        );
        assert_eq!(p.call(0, [s, 1 << 16, 0, 5], ram), r(-9));
        let ss = smc64(SYSTEM_SUSPEND) as u64;
        assert_eq!(
            p.call(0, [ss, 0x4000_1000, 0, 0], ram).action,
            PowerAction::Suspend {
                entry: 0x4000_1000,
                context: 0
            }
        );
        p.call(0, [smc64(CPU_ON) as u64, 1, 0x4000_0000, 0], ram);
        assert_eq!(p.call(0, [ss, 0x4000_1000, 0, 0], ram), r(-3));
        assert_eq!(
            p.call(0, [SYSTEM_OFF as u64, 0, 0, 0], ram).action,
            PowerAction::Exit(0)
        );
        assert_eq!(
            p.call(1, [SYSTEM_RESET as u64, 0, 0, 0], ram).action,
            PowerAction::Exit(102)
        );
    }
}

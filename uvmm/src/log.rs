//! uvmm's messages, with L4Re's `-D`/`-v`/`-q` levels per component:
//! `VMM[comp]: text` on standard error (the task's log).

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::options::{Level, Options};

static LEVELS: RwLock<Option<Options>> = RwLock::new(None);
/// The loudest level of any component (`Level as u8`): what is louder
/// is off everywhere, known without the lock (a trace on every exit).
static LOUDEST: AtomicU8 = AtomicU8::new(Level::Info as u8);

/// Takes the levels from the command line.
pub fn init(opts: &Options) {
    if let Ok(mut l) = LEVELS.write() {
        *l = Some(opts.clone());
        LOUDEST.store(opts.loudest() as u8, Ordering::Relaxed);
    }
}

/// Whether some component says things at `level` (the macros look
/// before they format anything).
#[inline]
pub fn on(level: Level) -> bool {
    level as u8 <= LOUDEST.load(Ordering::Relaxed)
}

/// Whether `comp` says things at `level`.
pub fn enabled(comp: &str, level: Level) -> bool {
    if !on(level) {
        return false;
    }
    let l = LEVELS.read().ok();
    let max = l
        .as_ref()
        .and_then(|o| o.as_ref().map(|o| o.level_of(comp)))
        .unwrap_or(Level::Info);
    level <= max && level != Level::Quiet
}

/// Prints `VMM[comp]: msg` if `comp` is at `level` or louder. What the
/// guest causes (component `guest`: an access nobody handles, each time
/// it makes one) is held to [`GuestLimit`]: a guest cannot flood the log
/// that other VMs' consoles share.
pub fn log(comp: &str, level: Level, msg: std::fmt::Arguments<'_>) {
    if !enabled(comp, level) {
        return;
    }
    if comp == "guest" {
        static LIMIT: Mutex<GuestLimit> = Mutex::new(GuestLimit::new());
        let admit = LIMIT
            .lock()
            .map_or(Admit::Yes { left_out: 0 }, |mut l| l.admit(Instant::now()));
        match admit {
            Admit::No => return,
            Admit::Yes { left_out: 0 } => {}
            Admit::Yes { left_out } => line(format_args!(
                "VMM[{comp}]: {left_out} more messages left out (at most {} a second)",
                GuestLimit::PER_SECOND
            )),
        }
    }
    line(format_args!("VMM[{comp}]: {msg}"));
}

/// How many of the guest's messages are let through: at most
/// [`GuestLimit::PER_SECOND`] in each second; the count of those left out
/// comes with the next one let through.
#[derive(Debug)]
pub struct GuestLimit {
    /// Start of the current second.
    since: Option<Instant>,
    /// Let through in it.
    count: u32,
    /// Left out since the last one let through.
    left_out: u64,
}

/// Whether a message goes out, and how many went unsaid before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admit {
    /// Print it, after saying how many were left out.
    Yes { left_out: u64 },
    /// Leave it out.
    No,
}

impl GuestLimit {
    /// Messages a second.
    pub const PER_SECOND: u32 = 20;

    /// A limit with nothing said yet.
    pub const fn new() -> GuestLimit {
        GuestLimit {
            since: None,
            count: 0,
            left_out: 0,
        }
    }

    /// Decides about a message at `now`.
    pub fn admit(&mut self, now: Instant) -> Admit {
        let fresh = self
            .since
            .is_none_or(|s| now.saturating_duration_since(s) >= Duration::from_secs(1));
        if fresh {
            (self.since, self.count) = (Some(now), 0);
        }
        if self.count >= Self::PER_SECOND {
            self.left_out += 1;
            return Admit::No;
        }
        self.count += 1;
        Admit::Yes {
            left_out: core::mem::take(&mut self.left_out),
        }
    }
}

impl Default for GuestLimit {
    fn default() -> Self {
        Self::new()
    }
}

/// Writes `text` and a newline to standard error (the task's log) in one
/// write. `eprintln!` writes each piece of its format on its own, and a
/// log server that shows several clients' lines (cons) writes out a
/// partial line that waits too long: a thread preempted between two
/// pieces would have its line torn in two.
pub fn line(text: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let text = format!("{text}\n");
    // Nowhere to report a failing log.
    let _ = std::io::stderr().write_all(text.as_bytes());
}

/// `info!(comp, fmt, args...)`.
#[macro_export]
macro_rules! info {
    ($comp:expr, $($arg:tt)*) => {
        if $crate::log::on($crate::options::Level::Info) {
            $crate::log::log($comp, $crate::options::Level::Info, format_args!($($arg)*))
        }
    };
}

/// `warn!(comp, fmt, args...)`.
#[macro_export]
macro_rules! warn {
    ($comp:expr, $($arg:tt)*) => {
        if $crate::log::on($crate::options::Level::Warn) {
            $crate::log::log($comp, $crate::options::Level::Warn, format_args!($($arg)*))
        }
    };
}

/// `trace!(comp, fmt, args...)`.
#[macro_export]
macro_rules! trace {
    ($comp:expr, $($arg:tt)*) => {
        if $crate::log::on($crate::options::Level::Trace) {
            $crate::log::log($comp, $crate::options::Level::Trace, format_args!($($arg)*))
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guest_gets_twenty_messages_a_second() {
        let mut l = GuestLimit::new();
        let t0 = Instant::now();
        for _ in 0..GuestLimit::PER_SECOND {
            assert_eq!(l.admit(t0), Admit::Yes { left_out: 0 });
        }
        for i in 0..5 {
            assert_eq!(l.admit(t0 + Duration::from_millis(100 * i)), Admit::No);
        }
        // The next second: the count of those left out comes first.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(l.admit(t1), Admit::Yes { left_out: 5 });
        assert_eq!(l.admit(t1), Admit::Yes { left_out: 0 });
    }
}

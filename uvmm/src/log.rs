//! uvmm's messages, with L4Re's `-D`/`-v`/`-q` levels per component:
//! `VMM[comp]: text` on standard error (the task's log).

use std::sync::RwLock;
use std::sync::atomic::{AtomicU8, Ordering};

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

/// Prints `VMM[comp]: msg` if `comp` is at `level` or louder.
pub fn log(comp: &str, level: Level, msg: std::fmt::Arguments<'_>) {
    if enabled(comp, level) {
        line(format_args!("VMM[{comp}]: {msg}"));
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

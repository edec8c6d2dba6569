//! The `ned` program.
//!
//! On the target (`aarch64-unknown-linux-musl`) it runs over the real
//! system. Built for the host it is a dry run: scripts run against the
//! recording [`FakeBackend`](ned::fake::FakeBackend), which prints what
//! they would start; `rom/x` is read from the directories in
//! `NED_ROM_PATH` (colon separated, default `conf`):
//!
//! ```text
//! cargo run -p ned -- rom/uvmm-staticpart.ned
//! ```

use std::cell::RefCell;
use std::io::Write;
use std::rc::Rc;

use ned::cmdline::{self, CmdLine};
use ned::{Ned, run};

fn main() {
    let cmd = match cmdline::parse(std::env::args().skip(1)) {
        Ok(c) => c,
        Err(e) => {
            // Keep going without a script: ned must not take the system down.
            let _ = writeln!(std::io::stderr(), "Ned: {e}");
            CmdLine::default()
        }
    };
    let ned = match make_ned() {
        Ok(n) => n,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "Ned: {e}");
            std::process::exit(1);
        }
    };
    if let Some(code) = run(&ned, &cmd) {
        std::process::exit(code);
    }
    stay();
}

#[cfg(all(target_os = "linux", target_arch = "aarch64", target_env = "musl"))]
fn make_ned() -> Result<Ned, ned::ScriptError> {
    Ned::new(Rc::new(RefCell::new(ned::target::TargetBackend::new())))
}

#[cfg(not(all(target_os = "linux", target_arch = "aarch64", target_env = "musl")))]
fn make_ned() -> Result<Ned, ned::ScriptError> {
    let dirs = std::env::var("NED_ROM_PATH").unwrap_or_else(|_| "conf".to_string());
    let mut fake = ned::fake::FakeBackend::new().with_echo().with_any_program();
    for d in dirs.split(':').filter(|d| !d.is_empty()) {
        fake = fake.with_rom_dir(d);
    }
    Ned::new(Rc::new(RefCell::new(fake)))
}

/// After the script: the programs ned started live on; ned stays.
#[cfg(all(target_os = "linux", target_arch = "aarch64", target_env = "musl"))]
fn stay() -> ! {
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

/// On the host there is nothing to stay for.
#[cfg(not(all(target_os = "linux", target_arch = "aarch64", target_env = "musl")))]
fn stay() {}

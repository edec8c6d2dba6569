//! io, the platform device manager (see the library's documentation).
//!
//! Off the target this binary checks configuration files against QEMU's
//! `virt` machine and prints their virtual buses.

use std::process::ExitCode;

fn main() -> ExitCode {
    let opts = match io::Options::parse(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("io: {e}\n{}", io::USAGE);
            return ExitCode::from(2);
        }
    };
    run(opts)
}

#[cfg(all(target_os = "linux", target_arch = "aarch64", target_env = "musl"))]
fn run(opts: io::Options) -> ExitCode {
    match io::target::run(&opts) {
        Ok(never) => match never {},
        Err(e) => {
            eprintln!("io: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(not(all(target_os = "linux", target_arch = "aarch64", target_env = "musl")))]
fn run(opts: io::Options) -> ExitCode {
    match io::load_files(&opts.files, io::Limits::qemu_virt(), None) {
        Ok(cfg) => {
            print!("{}", io::config::summary(&cfg));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("io: {e}");
            ExitCode::FAILURE
        }
    }
}

//! `cargo xtask`: build, pack, boot, test and lint the system (`cargo xtask help`).
//!
//! Messages go to stderr as `xtask: ...`; results meant to be read or parsed
//! (entry lists, test summaries, benchmark numbers) go to stdout.

mod bench;
mod cli;
mod console;
mod error;
mod guest;
mod harness;
mod image;
mod lint;
mod packages;
mod plan;
mod qemu;
mod scenario;
mod shell;
mod targets;
mod workspace;

use std::process::ExitCode;

use cli::{Command, Invocation};
use error::Result;
use image::Modules;
use packages::Need;
use qemu::ConsoleMode;
use workspace::Workspace;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result<()> {
    let Invocation { command, vars } = cli::parse(args, |key| std::env::var(key).ok())?;
    let ws = Workspace::locate()?;
    match command {
        Command::Help => print!("{}", cli::USAGE),
        Command::List => {
            for entry in Modules::new(&ws, &vars)?.entries()? {
                println!("{entry}");
            }
        }
        Command::Build => targets::prepare(&ws, &[])?,
        Command::Guest => guest::command(&ws)?,
        Command::Image => {
            let modules = Modules::new(&ws, &vars)?;
            let entry = modules.choose_entry(vars.entry.as_deref())?;
            targets::prepare(&ws, &[])?;
            modules.pack(&entry)?;
        }
        Command::Qemu => {
            let env_options = qemu::env_options(vars.qemu_options.as_deref())?;
            let modules = Modules::new(&ws, &vars)?;
            let entry = modules.choose_entry(vars.entry.as_deref())?;
            plan::preflight(&ws, &vars, &entry);
            targets::prepare(&ws, &[Need::Qemu])?;
            let image = modules.pack(&entry)?;
            let arguments = modules.qemu_arguments(
                &entry,
                ConsoleMode::Terminal,
                &[],
                &env_options,
                &image.path,
            )?;
            qemu::run_interactive(&arguments, vars.qemu_options.as_deref())?;
        }
        Command::Test(args) => harness::test(&ws, &vars, &args)?,
        Command::Bench(args) => bench::run(&ws, &vars, &args)?,
        Command::Lint => lint::lint(&ws)?,
        Command::Plan(args) => plan::command(&ws, &vars, &args)?,
    }
    Ok(())
}

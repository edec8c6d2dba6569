//! ned, the init task: it runs Lua scripts (`*.ned`) that create
//! channels and objects and start the system's programs with the
//! capabilities they need, with the `L4` Lua module of L4Re's ned.
//!
//! moe starts ned with the script named on moe's command line
//! (`roottask moe rom/hello.ned` in `modules.list`):
//!
//! ```text
//! ned [--exit|--wait-and-exit] [-e STMT]... script [args]
//! ```
//!
//! ned greets (`Ned says: Hi World!`), announces the script
//! (`Ned: loading file: 'rom/hello.ned'`), runs the `-e` statements and
//! then the script with `args` in the global `arg`. A failing script is
//! reported as `file:line: message` (with the script lines that called the
//! failing place) on ned's log; ned itself goes on. After the script ned
//! keeps serving: it reaps tasks as they end and runs their exit handlers,
//! and then stays, so that the programs it started live on.
//!
//! The crate is a library plus the `ned` binary, so that everything except
//! the system calls is tested on the host:
//!
//! * [`backend`]: the [`Backend`](backend::Backend) trait, the only thing
//!   that touches the system, and what it is given ([`backend::StartSpec`]);
//! * [`api`]: the `L4` module over a backend;
//! * [`cap`], [`proto`], [`cpuset`], [`options`]: capabilities and rights,
//!   L4Re's constants, CPU sets, start options;
//! * [`ned`]: running statements and scripts, error reports, the serving loop;
//! * [`cmdline`]: ned's command line;
//! * [`fake`]: a recording backend for tests (and `ned` on the host);
//! * `target`: the backend of the real system (AArch64 musl builds only),
//!   where ned allocates with `l4re::heap::ProgramHeap`.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod api;
pub mod backend;
pub mod cap;
pub mod cmdline;
pub mod cpuset;
pub mod fake;
pub mod ned;
pub mod options;
pub mod proto;

/// ned's allocator on the target: nearly all its allocations are the Lua
/// state's, which musl's allocator served from dozens of one-page
/// mappings.
#[cfg(all(target_os = "linux", target_arch = "aarch64", target_env = "musl"))]
#[global_allocator]
static HEAP: l4re::heap::ProgramHeap = l4re::heap::ProgramHeap::new();

#[cfg(all(target_os = "linux", target_arch = "aarch64", target_env = "musl"))]
pub mod target;

pub use ned::{Ned, ScriptError};

use cmdline::{After, CmdLine};

/// ned's greeting, as L4Re's ned says it.
pub const BANNER: &str = "Ned says: Hi World!";

/// Runs ned's command line on `ned`: the banner, the `-e` statements, the
/// script; then, as the command line says, serves or waits. Returns the
/// exit code for `--exit` and `--wait-and-exit` (the script's integer
/// result, 0 without one, 1 if a statement or the script failed); `None`
/// when ned is to stay (the caller then waits forever).
pub fn run(ned: &Ned, cmd: &CmdLine) -> Option<i32> {
    ned.log(BANNER);
    let mut code = 0;
    for stmt in &cmd.statements {
        if let Err(e) = ned.exec(stmt) {
            ned.report(&e);
            code = 1;
        }
    }
    match &cmd.script {
        Some(script) => {
            ned.log(&format!("Ned: loading file: '{script}'"));
            match ned.run_file(script, &cmd.args) {
                Ok(result) => {
                    if code == 0 {
                        code = result.map_or(0, |r| r.clamp(0, 255) as i32);
                    }
                }
                Err(e) => {
                    ned.report(&e);
                    code = 1;
                }
            }
        }
        None if cmd.statements.is_empty() => {
            ned.log(&format!("Ned: no script given (usage: {})", cmdline::USAGE));
        }
        None => {}
    }
    match cmd.after {
        After::Exit => Some(code),
        After::WaitAndExit => {
            ned.serve();
            Some(code)
        }
        After::Serve => {
            ned.serve();
            None
        }
    }
}

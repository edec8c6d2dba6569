//! `cargo xtask lint`: formatting and clippy with warnings denied, for the host
//! crates and for every target crate on its own target.

use crate::error::Result;
use crate::targets::{self, TARGET_CRATES, by_target, cargo_for_target};
use crate::workspace::{Workspace, command_line, run};

pub fn lint(ws: &Workspace) -> Result<()> {
    crate::packages::ensure(&targets::needs(ws)?)?;
    targets::ensure_rust_targets(ws)?;

    let mut fmt = ws.cargo();
    fmt.args(["fmt", "--all", "--check"]);
    eprintln!("xtask: checking formatting ({})", command_line(&fmt));
    run(&mut fmt)?;

    let mut host = ws.cargo();
    host.args(["clippy", "--workspace", "--all-targets"]);
    for c in TARGET_CRATES {
        host.args(["--exclude", c.package]);
    }
    host.args(["--", "-D", "warnings"]);
    eprintln!("xtask: linting host crates ({})", command_line(&host));
    run(&mut host)?;

    // Target programs with portable logic (moe, ned, cons, uvmm, ...) are
    // default members: their host tests are linted here too.
    let mut host_tests = ws.cargo();
    host_tests.args(["clippy", "--all-targets", "--", "-D", "warnings"]);
    eprintln!(
        "xtask: linting the host tests of the default members ({})",
        command_line(&host_tests)
    );
    run(&mut host_tests)?;

    for (target, packages) in by_target() {
        let mut clippy = cargo_for_target(ws, "clippy", target, &packages);
        clippy.args(["--", "-D", "warnings"]);
        eprintln!("xtask: linting {} ({target}, release)", packages.join(", "));
        run(&mut clippy)?;
    }
    Ok(())
}

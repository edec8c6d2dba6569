//! `cargo xtask test`: host unit tests, then the QEMU scenarios of tests/scenarios/.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::cli::{TestArgs, Vars};
use crate::console::{Failure, Pattern, Record, Session};
use crate::error::{Error, Result, bail};
use crate::image::Modules;
use crate::packages::Need;
use crate::qemu::{self, ConsoleMode};
use crate::scenario::{Scenario, Step, load_scenarios};
use crate::shell;
use crate::targets;
use crate::workspace::{Workspace, command_line, run};

/// The result of one line of the final report.
struct Outcome {
    name: String,
    passed: bool,
    detail: String,
}

pub fn test(ws: &Workspace, vars: &Vars, args: &TestArgs) -> Result<()> {
    // Parse the scenarios first: a broken file fails at once, before any build.
    let scenarios = if args.host_only {
        Vec::new()
    } else {
        load_scenarios(&ws.scenarios_dir(), &args.scenarios)?
    };
    let mut outcomes = Vec::new();
    if args.scenarios.is_empty() {
        outcomes.push(host_tests(ws));
    }
    if !scenarios.is_empty() {
        match Runner::prepare(ws, vars, args.verbose) {
            Ok(mut runner) => outcomes.extend(scenarios.iter().map(|s| runner.run(s))),
            Err(error) => {
                eprintln!("xtask: error: {error}");
                outcomes.extend(scenarios.iter().map(|s| Outcome {
                    name: s.name.clone(),
                    passed: false,
                    detail: "not run: preparing the boot failed (see above)".into(),
                }));
            }
        }
    }
    report(&outcomes)
}

fn host_tests(ws: &Workspace) -> Outcome {
    let mut cargo_test = ws.cargo();
    cargo_test.args(["test", "--no-fail-fast"]);
    eprintln!(
        "xtask: running host unit tests ({})",
        command_line(&cargo_test)
    );
    let start = Instant::now();
    let result = run(&mut cargo_test);
    let time = start.elapsed().as_secs_f64();
    Outcome {
        name: "host unit tests".into(),
        passed: result.is_ok(),
        detail: match result {
            Ok(()) => format!("passed in {time:.1} s"),
            Err(error) => format!("FAILED after {time:.1} s: {error}"),
        },
    }
}

/// Runs scenarios, packing each entry's image once.
struct Runner<'a> {
    modules: Modules<'a>,
    /// `QEMU_OPTIONS`, split.
    env_options: Vec<String>,
    /// Echo the console live.
    echo: bool,
    /// Packed images by entry.
    images: HashMap<String, PathBuf>,
}

impl<'a> Runner<'a> {
    /// Installs what booting needs and builds the target binaries.
    fn prepare(ws: &'a Workspace, vars: &Vars, echo: bool) -> Result<Self> {
        let env_options = qemu::env_options(vars.qemu_options.as_deref())?;
        let modules = Modules::new(ws, vars)?;
        targets::prepare(ws, &[Need::Qemu])?;
        Ok(Runner {
            modules,
            env_options,
            echo,
            images: HashMap::new(),
        })
    }

    fn run(&mut self, scenario: &Scenario) -> Outcome {
        let name = &scenario.name;
        eprintln!(
            "xtask: scenario '{name}': entry '{}', timeout {} s",
            scenario.entry,
            scenario.timeout.as_secs()
        );
        let outcome = |passed, detail| Outcome {
            name: name.clone(),
            passed,
            detail,
        };
        match self.boot_and_check(scenario) {
            Ok(last) => outcome(
                true,
                format!("passed, last expected line at {:.3} s", last.as_secs_f64()),
            ),
            Err(error) => {
                eprintln!("xtask: scenario '{name}' FAILED: {error}");
                outcome(false, format!("FAILED: {}", first_line(&error.to_string())))
            }
        }
    }

    /// Boots the scenario's entry and walks its steps; returns when the last
    /// expected output arrived.
    fn boot_and_check(&mut self, scenario: &Scenario) -> Result<Duration> {
        let image = self.image(&scenario.entry)?;
        let arguments = self.modules.qemu_arguments(
            &scenario.entry,
            ConsoleMode::Piped,
            &scenario.qemu_options,
            &self.env_options,
            &image,
        )?;
        eprintln!("xtask: booting: {} {}", qemu::QEMU, shell::join(&arguments));
        let forbid = scenario.forbid.clone();
        let mut session = Session::spawn(qemu::command(&arguments), forbid, self.echo)?;
        let result = walk(&mut session, scenario);
        let record = session.finish();
        result.map_err(|failed| Error::new(failed.report(scenario, &record)))
    }

    /// The entry's image, packed on first use.
    fn image(&mut self, entry: &str) -> Result<PathBuf> {
        if let Some(image) = self.images.get(entry) {
            return Ok(image.clone());
        }
        let image = self.modules.pack(entry)?.path;
        self.images.insert(entry.to_string(), image.clone());
        Ok(image)
    }
}

/// Runs the steps against the console within the scenario's deadline; returns
/// when the last expected output arrived.
fn walk(session: &mut Session, scenario: &Scenario) -> std::result::Result<Duration, StepFailure> {
    let deadline = session.started() + scenario.timeout;
    let mut last_expected = Duration::ZERO;
    for (index, step) in scenario.steps.iter().enumerate() {
        let result = match step {
            Step::Expect(pattern) => session
                .expect(pattern, deadline)
                .inspect(|&at| last_expected = at),
            Step::Send(bytes) => session.send(bytes).map(|()| session.elapsed()),
        };
        match result {
            Ok(at) => eprintln!("  [{:>8.3}] step {}: {step}", at.as_secs_f64(), index + 1),
            Err(failure) => {
                let missing = match step {
                    Step::Expect(pattern @ Pattern::All(_)) => session.missing(pattern),
                    _ => String::new(),
                };
                return Err(StepFailure {
                    step: Some(index),
                    failure,
                    missing,
                    after: session.elapsed(),
                });
            }
        }
    }
    session
        .check_all_forbidden()
        .map_err(|failure| StepFailure {
            step: None,
            failure,
            missing: String::new(),
            after: session.elapsed(),
        })?;
    Ok(last_expected)
}

struct StepFailure {
    /// Index of the failed step; `None` for forbidden output found after the last.
    step: Option<usize>,
    failure: Failure,
    /// The parts of an `expect_all` step that never came (the rest did).
    missing: String,
    /// Since QEMU's start.
    after: Duration,
}

impl StepFailure {
    /// What failed, then the console log and QEMU's stderr.
    fn report(&self, scenario: &Scenario, record: &Record) -> String {
        let what = match self.step {
            Some(index) => format!("step {} ({})", index + 1, scenario.steps[index]),
            None => "after the last step".to_string(),
        };
        let mut message = format!(
            "{what} failed after {:.3} s: {}",
            self.after.as_secs_f64(),
            self.failure
        );
        if matches!(self.failure, Failure::Timeout) {
            message.push_str(&format!(" (timeout_secs = {})", scenario.timeout.as_secs()));
        }
        if !self.missing.is_empty() {
            message.push_str(&format!("; never seen: {}", self.missing));
        }
        message.push_str(&format!(
            "\n--- console log (seconds since QEMU start) ---\n{}--- end of console log ---",
            record.transcript
        ));
        if !record.stderr.trim().is_empty() {
            message.push_str(&format!(
                "\n--- QEMU stderr ---\n{}--- end of QEMU stderr ---",
                record.stderr
            ));
        }
        message
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

/// Prints one line per outcome and the summary; fails when anything failed.
fn report(outcomes: &[Outcome]) -> Result<()> {
    let passed = outcomes.iter().filter(|o| o.passed).count();
    let failed = outcomes.len() - passed;
    let width = outcomes.iter().map(|o| o.name.len()).max().unwrap_or(0);
    println!();
    println!("test results:");
    for o in outcomes {
        println!("  {:<width$}  {}", o.name, o.detail);
    }
    println!("{passed} passed, {failed} failed");
    if failed > 0 {
        bail!("{failed} of {} failed", outcomes.len());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// A stand-in for QEMU: a shell script on the same pipes.
    fn fake_qemu(script: &str, scenario: &Scenario) -> Session {
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(script);
        Session::spawn(cmd, scenario.forbid.clone(), false).unwrap()
    }

    fn scenario(steps: &str) -> Scenario {
        let text = format!("entry = 'x'\ntimeout_secs = 1\nforbid = ['panic']\nsteps = [{steps}]");
        Scenario::parse("fake", &text).unwrap()
    }

    #[test]
    fn walks_expect_and_send_steps() {
        let s = scenario(
            r#"{ expect = 'login:' }, { send = "root\n" }, { expect_regex = 'hello, ro+t' }"#,
        );
        let mut session = fake_qemu(r#"echo login:; read name; echo "hello, $name""#, &s);
        let last = walk(&mut session, &s).map_err(|f| f.failure).unwrap();
        assert!(last < Duration::from_secs(1));
        session.finish();
    }

    #[test]
    fn failure_report_names_the_step_and_shows_the_log() {
        let s = scenario("{ expect = 'login:' }, { expect = 'never' }");
        let mut session = fake_qemu("echo login:; exec sleep 10", &s);
        let failed = walk(&mut session, &s).unwrap_err();
        let report = failed.report(&s, &session.finish());
        assert!(
            report.starts_with("step 2 (expect \"never\") failed after"),
            "{report}"
        );
        assert!(report.contains("timed out (timeout_secs = 1)"), "{report}");
        assert!(report.contains("] login:\n"), "{report}");
    }

    #[test]
    fn failure_report_names_what_of_an_expect_all_never_came() {
        let s = scenario("{ expect_all = ['vm1 ready', 'vm2 ready', 'vm3'] }");
        let mut session = fake_qemu("echo vm2 ready; exec sleep 10", &s);
        let failed = walk(&mut session, &s).unwrap_err();
        let report = failed.report(&s, &session.finish());
        let first = report.lines().next().unwrap();
        assert!(
            first.ends_with("(timeout_secs = 1); never seen: /vm1 ready/, /vm3/"),
            "{report}"
        );
    }

    #[test]
    fn forbidden_output_after_the_last_step_fails() {
        let s = scenario("{ expect = 'ok' }");
        // One small write: it arrives in one piece.
        let mut session = fake_qemu("printf 'ok, then panic'; exec sleep 10", &s);
        let failed = walk(&mut session, &s).unwrap_err();
        assert_eq!(failed.step, None);
        let report = failed.report(&s, &session.finish());
        assert!(report.starts_with("after the last step failed"), "{report}");
        assert!(report.contains("forbidden output \"panic\""), "{report}");
    }
}

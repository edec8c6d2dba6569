//! QEMU test scenarios: `tests/scenarios/<name>.toml` (format in tests/README.md).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::console::Pattern;
use crate::error::{Context, Result, bail};

const DEFAULT_TIMEOUT_SECS: u64 = 60;

/// A scenario as written in its file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScenarioFile {
    entry: String,
    timeout_secs: Option<u64>,
    #[serde(default)]
    qemu_options: Vec<String>,
    #[serde(default)]
    forbid: Vec<String>,
    #[serde(default)]
    forbid_regex: Vec<String>,
    steps: Vec<StepFile>,
}

/// One step as written: exactly one of the fields.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StepFile {
    expect: Option<String>,
    expect_regex: Option<String>,
    expect_all: Option<Vec<String>>,
    send: Option<String>,
    send_line: Option<String>,
}

#[derive(Debug)]
pub struct Scenario {
    pub name: String,
    pub entry: String,
    /// Deadline for the whole scenario, from QEMU's start.
    pub timeout: Duration,
    pub qemu_options: Vec<String>,
    /// Output that fails the scenario whenever it appears on a console line.
    pub forbid: Vec<Pattern>,
    pub steps: Vec<Step>,
}

#[derive(Debug)]
pub enum Step {
    /// Wait for the pattern in the output after the previous match.
    Expect(Pattern),
    /// Type these bytes on the console.
    Send(Vec<u8>),
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Expect(pattern) => write!(f, "expect {pattern}"),
            Step::Send(bytes) => write!(f, "send \"{}\"", bytes.escape_ascii()),
        }
    }
}

impl Scenario {
    /// Parses the text of `<name>.toml`.
    pub fn parse(name: &str, text: &str) -> Result<Scenario> {
        let file: ScenarioFile = toml::from_str(text).context(|| format!("scenario '{name}'"))?;
        let timeout_secs = file.timeout_secs.unwrap_or(DEFAULT_TIMEOUT_SECS);
        if timeout_secs == 0 {
            bail!("scenario '{name}': timeout_secs must be at least 1");
        }
        if file.steps.is_empty() {
            bail!("scenario '{name}': no steps");
        }
        let regex = |what: &str, re: &str| {
            Pattern::regex(re).context(|| format!("scenario '{name}': {what} {re:?}"))
        };
        let mut forbid: Vec<Pattern> = file.forbid.into_iter().map(Pattern::Text).collect();
        for re in &file.forbid_regex {
            forbid.push(regex("forbid_regex", re)?);
        }
        let mut steps = Vec::new();
        for (index, step) in file.steps.into_iter().enumerate() {
            let number = index + 1;
            let given = [
                step.expect.is_some(),
                step.expect_regex.is_some(),
                step.expect_all.is_some(),
                step.send.is_some(),
                step.send_line.is_some(),
            ];
            if given.iter().filter(|&&g| g).count() != 1 {
                bail!(
                    "scenario '{name}': step {number} needs exactly one of expect, expect_regex, expect_all, send, send_line"
                );
            }
            let step = if let Some(text) = step.expect {
                Step::Expect(Pattern::Text(text))
            } else if let Some(re) = step.expect_regex {
                Step::Expect(regex(&format!("step {number}: expect_regex"), &re)?)
            } else if let Some(all) = step.expect_all {
                if all.is_empty() {
                    bail!("scenario '{name}': step {number}: expect_all is empty");
                }
                let what = format!("step {number}: expect_all");
                let all = all
                    .iter()
                    .map(|re| regex(&what, re))
                    .collect::<Result<_>>()?;
                Step::Expect(Pattern::All(all))
            } else if let Some(text) = step.send {
                Step::Send(text.into_bytes())
            } else {
                let text = step.send_line.unwrap_or_default();
                Step::Send(format!("{text}\r").into_bytes())
            };
            if matches!(&step, Step::Expect(Pattern::Text(t)) if t.is_empty()) {
                bail!("scenario '{name}': step {number} expects an empty string");
            }
            steps.push(step);
        }
        Ok(Scenario {
            name: name.to_string(),
            entry: file.entry,
            timeout: Duration::from_secs(timeout_secs),
            qemu_options: file.qemu_options,
            forbid,
            steps,
        })
    }

    pub fn load(path: &Path) -> Result<Scenario> {
        let name = path.file_stem().unwrap_or_default().to_string_lossy();
        let text =
            std::fs::read_to_string(path).context(|| format!("reading {}", path.display()))?;
        Scenario::parse(&name, &text)
    }
}

/// Every `*.toml` in `dir`, sorted by name.
pub fn scenario_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).context(|| format!("reading {}", dir.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .context(|| format!("reading {}", dir.display()))?
            .path();
        if path.extension().is_some_and(|e| e == "toml") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// The scenarios to run: the named ones, or all of them when `names` is empty.
pub fn load_scenarios(dir: &Path, names: &[String]) -> Result<Vec<Scenario>> {
    let files = scenario_files(dir)?;
    if names.is_empty() {
        return files.iter().map(|f| Scenario::load(f)).collect();
    }
    names
        .iter()
        .map(|name| {
            let path = dir.join(format!("{name}.toml"));
            if !path.is_file() {
                let known: Vec<_> = files
                    .iter()
                    .filter_map(|f| f.file_stem())
                    .map(|s| s.to_string_lossy())
                    .collect();
                bail!(
                    "no scenario '{name}' in {} (known: {})",
                    dir.display(),
                    known.join(", ")
                );
            }
            Scenario::load(&path)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_step_kinds_and_escapes() {
        let text = r#"
            entry = "hello"
            timeout_secs = 30
            qemu_options = ["-smp", "2"]
            forbid = ["panic"]
            forbid_regex = ['(?i)unhandled']
            steps = [
                { expect = "L4 Bootstrapper" },
                { expect_regex = 'CPUs online: \d+' },
                { send = "\u0005" },
                { send = "\e1\x7f" },
                { send_line = "help" },
            ]
        "#;
        let s = Scenario::parse("hello", text).unwrap();
        assert_eq!(s.entry, "hello");
        assert_eq!(s.timeout, Duration::from_secs(30));
        assert_eq!(s.qemu_options, ["-smp", "2"]);
        assert_eq!(s.forbid.len(), 2);
        assert!(s.forbid[1].is_in(b"Unhandled exception"));
        assert!(matches!(&s.steps[0], Step::Expect(Pattern::Text(t)) if t == "L4 Bootstrapper"));
        assert!(matches!(&s.steps[1], Step::Expect(p) if p.is_in(b"CPUs online: 4")));
        assert!(matches!(&s.steps[2], Step::Send(b) if b == b"\x05"));
        assert!(matches!(&s.steps[3], Step::Send(b) if b == b"\x1b1\x7f"));
        assert!(matches!(&s.steps[4], Step::Send(b) if b == b"help\r"));
        assert_eq!(s.steps[2].to_string(), r#"send "\x05""#);
    }

    #[test]
    fn expect_all_matches_in_any_order() {
        let text = "entry = 'x'\nsteps = [{ expect_all = ['b\\d', 'a'] }]";
        let s = Scenario::parse("x", text).unwrap();
        let Step::Expect(p) = &s.steps[0] else {
            panic!("not an expectation")
        };
        assert_eq!(p.find(b"..b1..a.."), Some(2..7));
        assert_eq!(p.find(b"a b2"), Some(0..4));
        assert_eq!(p.find(b"b2 only"), None);
        assert_eq!(p.to_string(), r#"all of [/b\d/, /a/]"#);
    }

    #[test]
    fn array_of_tables_form_and_default_timeout() {
        let text = "entry = 'x'\n[[steps]]\nexpect = 'a'\n[[steps]]\nsend = 'b'\n";
        let s = Scenario::parse("x", text).unwrap();
        assert_eq!(s.steps.len(), 2);
        assert_eq!(s.timeout, Duration::from_secs(DEFAULT_TIMEOUT_SECS));
    }

    #[test]
    fn rejects_bad_steps() {
        let bad = [
            ("entry = 'x'\nsteps = []", "no steps"),
            ("entry = 'x'\nsteps = [{}]", "exactly one"),
            (
                "entry = 'x'\nsteps = [{ expect = 'a', send = 'b' }]",
                "exactly one",
            ),
            ("entry = 'x'\nsteps = [{ expect = '' }]", "empty"),
            (
                "entry = 'x'\nsteps = [{ expect_regex = '(' }]",
                "expect_regex",
            ),
            (
                "entry = 'x'\nsteps = [{ expect_all = [] }]",
                "expect_all is empty",
            ),
            (
                "entry = 'x'\nsteps = [{ expect_all = ['a', '('] }]",
                "expect_all",
            ),
            ("entry = 'x'\nsteps = [{ wait = 'a' }]", "wait"),
            ("steps = [{ expect = 'a' }]", "entry"),
            (
                "entry = 'x'\ntimeout_secs = 0\nsteps = [{ expect = 'a' }]",
                "timeout_secs",
            ),
        ];
        for (text, needle) in bad {
            let err = Scenario::parse("s", text).unwrap_err().to_string();
            assert!(err.contains(needle), "{text:?}: {err}");
        }
    }

    #[test]
    fn repository_scenarios_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/scenarios");
        let scenarios = load_scenarios(&dir, &[]).unwrap();
        assert!(scenarios.iter().any(|s| s.name == "hello"));
        assert!(load_scenarios(&dir, &["no-such".to_string()]).is_err());
    }
}

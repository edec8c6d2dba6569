//! Helpers of the integration tests: ned over a fake backend that serves
//! the test scripts and the real `conf/` files.

#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;

use ned::backend::StartSpec;
use ned::fake::FakeBackend;
use ned::{Ned, ScriptError};

/// The workspace's `conf/`.
pub fn conf_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../conf")
}

/// `ned/tests/scripts/`.
pub fn scripts_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/scripts")
}

/// ned over `fake`, which also serves `rom/<file>` from the test scripts
/// and then from `conf/`.
pub fn ned_with(fake: FakeBackend) -> (Ned, Rc<RefCell<FakeBackend>>) {
    let fake = Rc::new(RefCell::new(
        fake.with_rom_dir(scripts_dir()).with_rom_dir(conf_dir()),
    ));
    let ned = Ned::new(fake.clone()).expect("ned sets up");
    (ned, fake)
}

/// ned, its backend, and what running a script gave.
pub type Run = (
    Ned,
    Rc<RefCell<FakeBackend>>,
    Result<Option<i64>, ScriptError>,
);

/// Runs `rom/<script>` with the boot modules `modules`.
pub fn run(script: &str, modules: &[&str]) -> Run {
    let (ned, fake) = ned_with(FakeBackend::new().with_modules(modules));
    let r = ned.run_file(&format!("rom/{script}"), &[]);
    (ned, fake, r)
}

/// Runs Lua source `src` as the script `rom/test.ned`.
pub fn run_src(src: &str, modules: &[&str]) -> Run {
    let (ned, fake) = ned_with(
        FakeBackend::new()
            .with_modules(modules)
            .with_file("test.ned", src),
    );
    let r = ned.run_file("rom/test.ned", &[]);
    (ned, fake, r)
}

/// The capabilities of a started program, described: name -> description.
pub fn caps(fake: &FakeBackend, spec: &StartSpec) -> BTreeMap<String, String> {
    spec.caps
        .iter()
        .map(|(n, c)| (n.clone(), fake.describe(c)))
        .collect()
}

/// A `BTreeMap` from pairs of string slices.
pub fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

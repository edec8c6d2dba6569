//! [`FakeBackend`]: a [`Backend`] that records what scripts do.
//!
//! It keeps a table of objects (ned's environment, channels, created
//! objects, `rom/` files), checks requests the way moe and the loader will
//! (dataspace sizes against free memory, scheduler limits and CPU masks
//! against the machine, programs against the `rom/` files, capability
//! counts and names against the environment page), serves `rom/` files
//! from a map or from host directories, and lets tests script task exits.
//!
//! [`FakeBackend::describe`] names a capability by how it came to be, so
//! tests can say what a program got:
//!
//! | object                | description                                   |
//! |-----------------------|-----------------------------------------------|
//! | ned's `icu`           | `env:icu`                                     |
//! | 2nd `new_channel()`   | `channel#2`                                   |
//! | created by a factory  | `Dataspace(268435456, 7, 21)@env:mem_alloc`   |
//! | a `rom/` file         | `rom:hello`                                   |
//!
//! followed by the rights: `channel#1 rwsdc`.
//!
//! With a locator ([`FakeBackend::with_locator`]) it also notes where in
//! the scripts each object was made, each program started and each `rom/`
//! file read (`rom/x.ned:12`), for tools that explain a script's system
//! (`cargo xtask plan`).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::Duration;

use l4_abi::Error;

use crate::backend::{
    Backend, BackendError, ExitCode, FactoryArg, Result, StartSpec, TaskId, TaskState,
};
use crate::cap::{Cap, RightsLetters};
use crate::proto;

/// How an object of the fake came to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FakeObject {
    /// One of ned's own capabilities.
    Env(String),
    /// The n-th IPC gate from `new_channel` (from 1).
    Channel(usize),
    /// Made by a factory.
    Created {
        /// The factory's object.
        factory: u64,
        /// The protocol asked for.
        proto: i64,
        /// The arguments.
        args: Vec<FactoryArg>,
    },
    /// A `rom/` file (from a `rom` name-space query).
    Rom(String),
}

/// A program the fake started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Started {
    /// Its task.
    pub task: TaskId,
    /// What it was started with.
    pub spec: StartSpec,
    /// Where in the scripts it was started, innermost first (empty
    /// without a locator).
    pub site: Site,
}

/// A place in the scripts: Lua frames `file:line`, innermost first.
pub type Site = Vec<String>;

/// A function that tells where the scripts are now (see
/// [`FakeBackend::with_locator`]).
pub type Locator = Box<dyn Fn() -> Site>;

#[derive(Clone, Debug)]
struct FakeTask {
    program: String,
    state: TaskState,
}

/// A recording backend for tests and for `ned` on the host.
pub struct FakeBackend {
    objects: Vec<FakeObject>,
    sites: Vec<Site>,
    locator: Option<Locator>,
    rom_reads: Vec<(String, Site)>,
    env: Vec<(String, Cap)>,
    rom: BTreeMap<String, Vec<u8>>,
    rom_dirs: Vec<PathBuf>,
    started: Vec<Started>,
    tasks: BTreeMap<TaskId, FakeTask>,
    exits: BTreeMap<String, i64>,
    default_exit: Option<i64>,
    registered: Vec<(u64, String, Option<Cap>)>,
    log: Vec<String>,
    echo: bool,
    any_program: bool,
    mem_free: u64,
    cpus: u32,
    slept: Duration,
    channels: usize,
}

/// Memory the fake's `mem_alloc` starts with.
pub const DEFAULT_MEMORY: u64 = 768 << 20;
/// CPUs of the fake's machine (QEMU `-smp 4`).
pub const DEFAULT_CPUS: u32 = 4;
/// Highest priority a scheduler proxy may have.
pub const MAX_PRIO: u64 = 255;

/// ned's environment: name and protocol.
const ENV: &[(&str, Option<i64>)] = &[
    ("parent", None),
    ("mem_alloc", Some(proto::FACTORY)),
    ("rm", Some(0x4005)),
    ("log", Some(proto::LOG)),
    ("factory", Some(proto::FACTORY)),
    ("scheduler", Some(proto::SCHEDULER)),
    ("rom", Some(proto::NAMESPACE)),
    ("icu", Some(-1)),
    ("sigma0", Some(proto::SIGMA0)),
    ("kip", None),
];

impl std::fmt::Debug for FakeBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeBackend")
            .field("objects", &self.objects)
            .field("started", &self.started)
            .field("log", &self.log)
            .field("mem_free", &self.mem_free)
            .field("cpus", &self.cpus)
            .finish_non_exhaustive()
    }
}

impl Default for FakeBackend {
    fn default() -> FakeBackend {
        FakeBackend::new()
    }
}

impl FakeBackend {
    /// ned's usual environment, no `rom/` files, [`DEFAULT_MEMORY`] and
    /// [`DEFAULT_CPUS`].
    pub fn new() -> FakeBackend {
        let mut f = FakeBackend {
            objects: Vec::new(),
            sites: Vec::new(),
            locator: None,
            rom_reads: Vec::new(),
            env: Vec::new(),
            rom: BTreeMap::new(),
            rom_dirs: Vec::new(),
            started: Vec::new(),
            tasks: BTreeMap::new(),
            exits: BTreeMap::new(),
            default_exit: None,
            registered: Vec::new(),
            log: Vec::new(),
            echo: false,
            any_program: false,
            mem_free: DEFAULT_MEMORY,
            cpus: DEFAULT_CPUS,
            slept: Duration::ZERO,
            channels: 0,
        };
        for (name, p) in ENV {
            let obj = f.add(FakeObject::Env(name.to_string()));
            f.env.push((name.to_string(), Cap::new(obj, *p)));
        }
        f
    }

    /// Adds the file `rom/<name>` with `contents`.
    pub fn with_file(mut self, name: &str, contents: impl Into<Vec<u8>>) -> FakeBackend {
        self.rom.insert(format!("rom/{name}"), contents.into());
        self
    }

    /// Adds (empty) boot modules, as a `modules.list` entry names them.
    pub fn with_modules(mut self, names: &[&str]) -> FakeBackend {
        for n in names {
            self.rom.entry(format!("rom/{n}")).or_default();
        }
        self
    }

    /// Serves `rom/<name>` from `dir/<name>` for files not added.
    pub fn with_rom_dir(mut self, dir: impl Into<PathBuf>) -> FakeBackend {
        self.rom_dirs.push(dir.into());
        self
    }

    /// Also prints every log line and action to standard output.
    pub fn with_echo(mut self) -> FakeBackend {
        self.echo = true;
        self
    }

    /// Starts programs whether or not their files exist (`ned` on the
    /// host, where the programs are not built).
    pub fn with_any_program(mut self) -> FakeBackend {
        self.any_program = true;
        self
    }

    /// Sets the memory `mem_alloc` can hand out.
    pub fn with_memory(mut self, bytes: u64) -> FakeBackend {
        self.mem_free = bytes;
        self
    }

    /// Sets the CPUs of the machine (scheduler masks are checked against it).
    pub fn with_cpus(mut self, cpus: u32) -> FakeBackend {
        self.cpus = cpus.max(1);
        self
    }

    /// Notes where the scripts are (`locate()`) with every object made,
    /// program started and `rom/` file read.
    pub fn with_locator(mut self, locate: impl Fn() -> Site + 'static) -> FakeBackend {
        self.locator = Some(Box::new(locate));
        self
    }

    /// ned over this fake, with a locator that reads ned's Lua stack
    /// ([`crate::ned::script_frames`]): every site is a script line.
    pub fn into_located_ned(
        self,
    ) -> std::result::Result<(crate::Ned, Rc<RefCell<FakeBackend>>), crate::ScriptError> {
        let slot: Rc<RefCell<Option<mlua::WeakLua>>> = Rc::default();
        let lua = slot.clone();
        let fake = Rc::new(RefCell::new(self.with_locator(move || {
            lua.borrow()
                .as_ref()
                .and_then(mlua::WeakLua::try_upgrade)
                .map(|lua| crate::ned::script_frames(&lua))
                .unwrap_or_default()
        })));
        let ned = crate::Ned::new(fake.clone())?;
        *slot.borrow_mut() = Some(ned.lua().weak());
        Ok((ned, fake))
    }

    /// Where the object `obj` was made (empty if unknown).
    pub fn site_of(&self, obj: u64) -> &[String] {
        obj.checked_sub(1)
            .and_then(|i| self.sites.get(i as usize))
            .map_or(&[], Vec::as_slice)
    }

    /// Every `rom/` file read (scripts, `require`d modules, programs'
    /// files read through ned), with where it was read, in order.
    pub fn rom_reads(&self) -> &[(String, Site)] {
        &self.rom_reads
    }

    fn locate(&self) -> Site {
        self.locator.as_ref().map_or_else(Vec::new, |l| l())
    }

    /// Tasks without a scripted exit exit with `code` when waited for
    /// (a dry run that goes on past `task:wait()`).
    pub fn with_default_exit(mut self, code: i64) -> FakeBackend {
        self.default_exit = Some(code);
        self
    }

    /// Tasks running `program` exit with `code` when waited for.
    pub fn set_exit(&mut self, program: &str, code: i64) {
        self.exits.insert(program.to_string(), code);
    }

    /// The programs started, in order.
    pub fn started(&self) -> &[Started] {
        &self.started
    }

    /// The started programs running `program`.
    pub fn started_program(&self, program: &str) -> Vec<&StartSpec> {
        self.started
            .iter()
            .filter(|s| s.spec.program == program)
            .map(|s| &s.spec)
            .collect()
    }

    /// ned's log lines.
    pub fn log_lines(&self) -> &[String] {
        &self.log
    }

    /// Every object made by a factory, in order: `(description, object)`.
    pub fn created(&self) -> Vec<(String, &FakeObject)> {
        self.objects
            .iter()
            .enumerate()
            .filter(|(_, o)| matches!(o, FakeObject::Created { .. }))
            .map(|(i, o)| (self.describe_obj(i as u64 + 1), o))
            .collect()
    }

    /// Every object with its handle, in the order they were made.
    pub fn objects(&self) -> impl Iterator<Item = (u64, &FakeObject)> {
        self.objects
            .iter()
            .enumerate()
            .map(|(i, o)| (i as u64 + 1, o))
    }

    /// Name-space registrations: `(name space, name, capability)` described.
    pub fn registrations(&self) -> Vec<(String, String, Option<String>)> {
        self.registered
            .iter()
            .map(|(ns, n, c)| {
                (
                    self.describe_obj(*ns),
                    n.clone(),
                    c.map(|c| self.describe(&c)),
                )
            })
            .collect()
    }

    /// Time scripts slept.
    pub fn slept(&self) -> Duration {
        self.slept
    }

    /// Memory left for dataspaces.
    pub fn memory_free(&self) -> u64 {
        self.mem_free
    }

    /// The object with handle `obj`.
    pub fn object(&self, obj: u64) -> Option<&FakeObject> {
        obj.checked_sub(1)
            .and_then(|i| self.objects.get(i as usize))
    }

    /// How the object came to be (see the module documentation).
    pub fn describe_obj(&self, obj: u64) -> String {
        match self.object(obj) {
            None => format!("invalid#{obj}"),
            Some(FakeObject::Env(n)) => format!("env:{n}"),
            Some(FakeObject::Channel(n)) => format!("channel#{n}"),
            Some(FakeObject::Rom(n)) => format!("rom:{n}"),
            Some(FakeObject::Created {
                factory,
                proto,
                args,
            }) => {
                let name = proto::name(*proto).map_or_else(|| proto.to_string(), str::to_string);
                let args: Vec<String> = args.iter().map(ToString::to_string).collect();
                format!(
                    "{name}({})@{}",
                    args.join(", "),
                    self.describe_obj(*factory)
                )
            }
        }
    }

    /// The object and the rights: `Log("io", "red")@channel#1 r`.
    pub fn describe(&self, cap: &Cap) -> String {
        format!(
            "{} {}",
            self.describe_obj(cap.obj),
            RightsLetters(cap.rights)
        )
    }

    fn add(&mut self, o: FakeObject) -> u64 {
        let site = self.locate();
        self.sites.push(site);
        self.objects.push(o);
        self.objects.len() as u64
    }

    fn echo(&self, line: &str) {
        if self.echo {
            let _ = writeln!(std::io::stdout(), "{line}");
        }
    }

    fn check_cap(&self, what: &str, cap: &Cap) -> Result<()> {
        if self.object(cap.obj).is_none() {
            return Err(BackendError::l4(
                format!("{what}: invalid capability"),
                Error::Inval,
            ));
        }
        Ok(())
    }

    /// What moe's user factory checks.
    fn check_mem_alloc(&mut self, proto: i64, args: &[FactoryArg]) -> Result<()> {
        let int = |i: usize| args.get(i).and_then(FactoryArg::as_u64);
        let inval = |m: String| Err(BackendError::l4(m, Error::Inval));
        match proto {
            proto::DATASPACE => {
                let Some(size) = int(0).filter(|&s| s > 0 && s < 1 << 48) else {
                    return inval("a dataspace needs a size in bytes".into());
                };
                let flags = int(1).unwrap_or(0);
                if flags & !7 != 0 {
                    return inval(format!("unknown Mem_alloc_flags {flags:#x}"));
                }
                let align = int(2).unwrap_or(0);
                if align > 30 {
                    return inval(format!("alignment 2^{align} is too large (at most 2^30)"));
                }
                let pages = size.div_ceil(4096) * 4096;
                if pages > self.mem_free {
                    return Err(BackendError::l4(
                        format!(
                            "{} MiB requested, {} MiB free",
                            pages >> 20,
                            self.mem_free >> 20
                        ),
                        Error::NoMem,
                    ));
                }
                self.mem_free -= pages;
                Ok(())
            }
            proto::SCHEDULER => {
                let (Some(max), Some(base)) = (int(0), int(1)) else {
                    return inval("a scheduler needs a maximum and a base priority".into());
                };
                if max <= base || max > MAX_PRIO {
                    return inval(format!(
                        "scheduler priorities: the maximum ({max}) must exceed the base ({base}) and be at most {MAX_PRIO}"
                    ));
                }
                let mut any = false;
                let masks: Vec<&FactoryArg> = args
                    .iter()
                    .skip(2)
                    .filter(|a| **a != FactoryArg::Nil)
                    .collect();
                for (w, a) in masks.iter().enumerate() {
                    let Some(mask) = a.as_u64() else {
                        return inval("CPU masks must be integers".into());
                    };
                    for bit in 0..64 {
                        if mask & (1 << bit) == 0 {
                            continue;
                        }
                        let cpu = w as u64 * 64 + bit;
                        if cpu >= u64::from(self.cpus) {
                            return inval(format!(
                                "invalid scheduler CPU mask: CPU {cpu} does not exist (CPUs 0-{})",
                                self.cpus - 1
                            ));
                        }
                        any = true;
                    }
                }
                if !masks.is_empty() && !any {
                    return inval("invalid scheduler CPU mask: it names no CPU".into());
                }
                Ok(())
            }
            proto::LOG => match args.first() {
                Some(FactoryArg::Str(_)) => Ok(()),
                _ => inval("a log needs a tag string".into()),
            },
            proto::NAMESPACE | proto::FACTORY | proto::IPC_GATE => Ok(()),
            p => Err(BackendError::l4(
                format!(
                    "mem_alloc cannot create {}",
                    proto::name(p).map_or_else(|| format!("protocol {p}"), str::to_string)
                ),
                Error::NoSys,
            )),
        }
    }
}

impl Backend for FakeBackend {
    fn env_caps(&mut self) -> Vec<(String, Cap)> {
        self.env.clone()
    }

    fn new_channel(&mut self, factory: &Cap) -> Result<Cap> {
        self.check_cap("factory", factory)?;
        self.channels += 1;
        let obj = self.add(FakeObject::Channel(self.channels));
        self.echo(&format!("[fake] new channel#{}", self.channels));
        Ok(Cap::new(obj, Some(proto::IPC_GATE)))
    }

    fn create(&mut self, factory: &Cap, proto: i64, args: &[FactoryArg]) -> Result<Cap> {
        self.check_cap("factory", factory)?;
        if self.object(factory.obj) == Some(&FakeObject::Env("mem_alloc".into())) {
            self.check_mem_alloc(proto, args)?;
        }
        let obj = self.add(FakeObject::Created {
            factory: factory.obj,
            proto,
            args: args.to_vec(),
        });
        self.echo(&format!("[fake] create {}", self.describe_obj(obj)));
        Ok(Cap::new(obj, Some(proto)))
    }

    fn ns_register(&mut self, ns: &Cap, name: &str, cap: Option<&Cap>) -> Result<()> {
        self.check_cap("name space", ns)?;
        if let Some(c) = cap {
            self.check_cap(name, c)?;
        }
        self.registered
            .push((ns.obj, name.to_string(), cap.copied()));
        Ok(())
    }

    fn ns_query(&mut self, ns: &Cap, name: &str) -> Result<Cap> {
        self.check_cap("name space", ns)?;
        if self.object(ns.obj) == Some(&FakeObject::Env("rom".into())) {
            let path = format!("rom/{name}");
            if self.read_rom(&path).is_err() {
                return Err(BackendError::l4(format!("rom: '{name}'"), Error::NoEnt));
            }
            let obj = self.add(FakeObject::Rom(name.to_string()));
            return Ok(Cap::new(obj, Some(proto::DATASPACE)));
        }
        let found = self
            .registered
            .iter()
            .rev()
            .find(|(n, k, _)| *n == ns.obj && k == name)
            .and_then(|(_, _, c)| *c);
        found.ok_or_else(|| BackendError::l4(format!("name '{name}'"), Error::NoEnt))
    }

    fn start(&mut self, spec: &StartSpec) -> Result<TaskId> {
        for file in [&spec.program, &spec.l4re_loader] {
            if !self.any_program && self.read_rom(file).is_err() {
                return Err(BackendError::l4(
                    format!("no such file: {file}"),
                    Error::NoEnt,
                ));
            }
        }
        for (name, cap) in &spec.caps {
            self.check_cap(&format!("caps.{name}"), cap)?;
        }
        for (what, cap) in [
            ("log", Some(&spec.log)),
            ("scheduler", spec.scheduler.as_ref()),
            ("mem", spec.mem.as_ref()),
            ("factory", spec.factory.as_ref()),
            ("rm_fab", spec.rm_fab.as_ref()),
        ] {
            if let Some(c) = cap {
                self.check_cap(what, c)?;
            }
        }
        // The environment page must hold it all.
        let mut page = Box::new(l4re_env::Env::new());
        let mut fits = || -> std::result::Result<(), l4re_env::EnvError> {
            for a in spec.argv() {
                page.push_arg(a)?;
            }
            for e in &spec.env {
                page.push_env(e)?;
            }
            for (i, (n, _)) in spec.caps.iter().enumerate() {
                page.add_cap(n, l4re_env::caps::FIRST_NAMED + i as u64)?;
            }
            Ok(())
        };
        fits().map_err(|e| BackendError::l4(e, Error::TooBig))?;

        let id = TaskId(self.started.len() as u64 + 1);
        self.tasks.insert(
            id,
            FakeTask {
                program: spec.program.clone(),
                state: TaskState::Running,
            },
        );
        let site = self.locate();
        self.started.push(Started {
            task: id,
            spec: spec.clone(),
            site,
        });
        if self.echo {
            let caps: Vec<String> = spec
                .caps
                .iter()
                .map(|(n, c)| format!("{n}={}", self.describe(c)))
                .collect();
            self.echo(&format!(
                "[fake] start #{} {} (log {}; caps {})",
                id.0,
                spec.argv().join(" "),
                self.describe(&spec.log),
                caps.join(", ")
            ));
        }
        Ok(id)
    }

    fn task_state(&mut self, task: TaskId) -> TaskState {
        self.tasks.get(&task).map_or(TaskState::Reaped, |t| t.state)
    }

    fn wait(&mut self, task: TaskId) -> Result<ExitCode> {
        let Some(t) = self.tasks.get_mut(&task) else {
            return Err(BackendError::new("the task was already waited for"));
        };
        let code = match t.state {
            TaskState::Zombie(code) => code,
            _ => match self.exits.get(&t.program).copied().or(self.default_exit) {
                Some(code) => Some(code),
                None => {
                    return Err(BackendError::new(format!(
                        "the fake backend would wait forever: no exit scripted for {}",
                        t.program
                    )));
                }
            },
        };
        self.tasks.remove(&task);
        Ok(code)
    }

    fn kill(&mut self, task: TaskId) -> Result<()> {
        match self.tasks.get_mut(&task) {
            Some(t) => {
                if !matches!(t.state, TaskState::Zombie(_)) {
                    t.state = TaskState::Zombie(None);
                }
                Ok(())
            }
            None => Err(BackendError::new("the task was already waited for")),
        }
    }

    fn wait_any(&mut self) -> Option<(TaskId, ExitCode)> {
        let (&id, _) = self.tasks.iter().find(|(_, t)| {
            matches!(t.state, TaskState::Zombie(_)) || self.exits.contains_key(&t.program)
        })?;
        self.wait(id).ok().map(|code| (id, code))
    }

    fn read_rom(&mut self, path: &str) -> Result<Vec<u8>> {
        let mut found = self.rom.get(path).cloned();
        if let Some(name) = path.strip_prefix("rom/").filter(|n| !n.contains("..")) {
            for dir in &self.rom_dirs {
                if found.is_some() {
                    break;
                }
                found = std::fs::read(dir.join(name)).ok();
            }
        }
        let contents = found.ok_or_else(|| BackendError::l4(path, Error::NoEnt))?;
        let site = self.locate();
        self.rom_reads.push((path.to_string(), site));
        Ok(contents)
    }

    fn log(&mut self, line: &str) {
        self.echo(line);
        self.log.push(line.to_string());
    }

    fn sleep(&mut self, duration: Duration) {
        self.slept += duration;
    }

    fn kernel_info(&mut self) -> String {
        "L4RS microkernel (fake backend)".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Ned;

    /// A fake that knows where the script is, and ned over it.
    fn located() -> (Ned, Rc<RefCell<FakeBackend>>) {
        FakeBackend::new()
            .with_any_program()
            .with_default_exit(3)
            .with_file(
                "s.ned",
                "local L4 = require 'L4'\n\
                 local ch = L4.default_loader:new_channel()\n\
                 local t = L4.default_loader:start({ caps = { c = ch:svr() } }, 'rom/x')\n\
                 return t:wait()\n",
            )
            .into_located_ned()
            .unwrap()
    }

    #[test]
    fn sites_of_objects_starts_and_reads() {
        let (ned, fake) = located();
        // The waited-for program ends with the default exit code.
        assert_eq!(ned.run_file("rom/s.ned", &[]), Ok(Some(3)));
        let fake = fake.borrow();
        assert_eq!(fake.started()[0].site, ["rom/s.ned:3"]);
        let (channel, _) = fake
            .objects()
            .find(|(_, o)| matches!(o, FakeObject::Channel(1)))
            .unwrap();
        assert_eq!(fake.site_of(channel), ["rom/s.ned:2"]);
        assert_eq!(fake.site_of(9999), [] as [String; 0]);
        assert_eq!(fake.rom_reads()[0].0, "rom/s.ned");
    }

    #[test]
    fn without_a_locator_sites_are_empty_and_waits_need_an_exit() {
        let fake = Rc::new(RefCell::new(
            FakeBackend::new().with_any_program().with_file(
                "s.ned",
                "return require('L4').default_loader:start({}, 'rom/x'):wait()",
            ),
        ));
        let ned = Ned::new(fake.clone()).unwrap();
        let e = ned.run_file("rom/s.ned", &[]).unwrap_err();
        assert!(e.message.contains("no exit scripted"), "{e}");
        assert!(fake.borrow().started()[0].site.is_empty());
    }
}

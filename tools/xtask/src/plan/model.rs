//! The system a modules.list entry builds, as the plan sees it: tasks,
//! schedulers, dataspaces, virtual machines and io's buses, read from a
//! dry run of the entry's ned script on ned's recording backend.

use std::path::PathBuf;

use ned::backend::FactoryArg;
use ned::cap::{Cap, CapRights, RightsLetters};
use ned::fake::{FakeBackend, FakeObject, Site};
use ned::proto;

use io::model::{DevId, Device};

/// `L4.Mem_alloc_flags.Continuous`.
pub const CONTINUOUS: u64 = 1;

/// The machine QEMU emulates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Machine {
    /// `-smp`.
    pub cpus: u32,
    /// `-m`, in bytes.
    pub ram: u64,
}

/// What the plan starts from.
#[derive(Clone, Debug)]
pub struct Inputs {
    /// The entry's name.
    pub entry: String,
    /// The ned script moe starts (`rom/x.ned`) and its arguments; `None`
    /// when the root task runs something else.
    pub script: Option<(String, Vec<String>)>,
    /// What the entry boots without ned (`moe --init=rom/x`, `ktest`).
    pub root: String,
    /// The `rom/` names the entry lists.
    pub modules: Vec<String>,
    /// Their total size in bytes, where the files were found.
    pub modules_size: u64,
    /// Where `rom/` files are read from, in order.
    pub dirs: Vec<PathBuf>,
    /// The machine.
    pub machine: Machine,
}

impl Inputs {
    /// The host file for `rom/<name>`.
    pub fn find(&self, rom_path: &str) -> Option<PathBuf> {
        let name = rom_path.strip_prefix("rom/").unwrap_or(rom_path);
        self.dirs.iter().map(|d| d.join(name)).find(|p| p.is_file())
    }

    /// The contents of `rom/<name>`.
    pub fn read(&self, rom_path: &str) -> Result<Vec<u8>, String> {
        let p = self
            .find(rom_path)
            .ok_or_else(|| format!("{rom_path}: not found in the module search path"))?;
        std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))
    }
}

/// Where a capability came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// One of ned's own (`L4.Env.icu`).
    Env(String),
    /// The client end of channel `n`, served by task `server`.
    Client {
        channel: usize,
        server: Option<usize>,
    },
    /// The server end of channel `n`.
    Server { channel: usize },
    /// Made by the factory `factory` (described); `server` is the task
    /// serving it when the factory is a channel.
    Created {
        what: String,
        factory: String,
        server: Option<usize>,
    },
    /// A `rom/` file.
    Rom(String),
}

/// A named capability of a task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapInfo {
    pub name: String,
    pub obj: u64,
    pub rights: String,
    pub origin: Origin,
}

/// A task's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogInfo {
    /// Tag and colour (`vm1`, `red`); `None` for ned's own log.
    pub tag: Option<(String, String)>,
    /// The Ctrl-E key (`key=1`).
    pub key: Option<String>,
    /// The task serving the log (cons), if any.
    pub server: Option<usize>,
    /// Where the log was made.
    pub site: String,
}

/// A scheduler (proxy) a task runs through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sched {
    /// `None`: ned's own scheduler.
    pub prio: Option<(u64, u64)>,
    /// The CPUs it may use.
    pub cpus: Vec<u32>,
    /// Where it was made (script line), empty for ned's.
    pub site: String,
    /// The object, to tell shared schedulers apart.
    pub obj: u64,
}

/// A started program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Task {
    /// Number in start order (from 1).
    pub id: usize,
    /// `rom/uvmm`.
    pub program: String,
    pub args: Vec<String>,
    /// Where it was started (`conf/x.ned:40`, or `... via vmm.lua:200`).
    pub site: String,
    pub log: LogInfo,
    pub sched: Sched,
    pub caps: Vec<CapInfo>,
}

impl Task {
    /// `uvmm` for `rom/uvmm`.
    pub fn name(&self) -> &str {
        self.program.rsplit('/').next().unwrap_or(&self.program)
    }

    /// The program and its arguments.
    pub fn argv(&self) -> Vec<&str> {
        std::iter::once(self.program.as_str())
            .chain(self.args.iter().map(String::as_str))
            .collect()
    }

    /// `vm1` (the log tag) or the program's name.
    pub fn label(&self) -> String {
        match &self.log.tag {
            Some((t, _)) if !t.is_empty() => t.clone(),
            _ => self.name().to_string(),
        }
    }

    pub fn cap(&self, name: &str) -> Option<&CapInfo> {
        self.caps.iter().find(|c| c.name == name)
    }
}

/// A dataspace made from ned's memory allocator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dataspace {
    pub obj: u64,
    pub size: u64,
    pub flags: u64,
    /// log2 of the alignment.
    pub align: u64,
    pub site: String,
    /// `(task, capability name)` of those that got it.
    pub holders: Vec<(usize, String)>,
}

impl Dataspace {
    pub fn flag_names(&self) -> String {
        let names: Vec<&str> = proto::MEM_ALLOC_FLAGS
            .iter()
            .filter(|(_, b)| self.flags & *b as u64 != 0)
            .map(|(n, _)| *n)
            .collect();
        if names.is_empty() {
            "no flags".into()
        } else {
            names.join("|")
        }
    }
}

/// An io task and what its configuration says.
#[derive(Clone, Debug)]
pub struct IoServer {
    pub task: usize,
    /// The files it reads, as named on its command line.
    pub files: Vec<String>,
    /// Its configuration, as io reads it.
    pub config: io::Config,
}

impl IoServer {
    /// The platform device `hw`.
    pub fn device(&self, hw: DevId) -> &Device {
        &self.config.platform.devices[hw]
    }

    /// The devices on the platform (not the system bus itself), parents
    /// before their children.
    pub fn platform_devices(&self) -> impl Iterator<Item = DevId> + '_ {
        self.config
            .platform
            .subtree(io::model::SYSTEM_BUS)
            .into_iter()
            .skip(1)
    }

    /// Where `hw` is below the system bus (`rtc`, `soc.uart0`).
    pub fn path(&self, hw: DevId) -> String {
        self.config.platform.path_on_platform(hw)
    }
}

/// A device's MMIO ranges, `[start, end)`.
pub fn mmio_ranges(d: &Device) -> Vec<(u64, u64)> {
    d.mmio()
        .map(|r| (r.start, r.end.saturating_add(1)))
        .collect()
}

/// A device's interrupt lines.
pub fn irq_lines(d: &Device) -> Vec<u64> {
    d.irqs().flat_map(|r| r.start..=r.end).collect()
}

/// An object the script asked a task for through a channel it serves
/// (`create` on the channel): a switch port, a console.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Made {
    pub obj: u64,
    /// The task serving the channel.
    pub server: usize,
    /// The protocol asked for.
    pub proto: i64,
    pub args: Vec<FactoryArg>,
    /// Where it was asked for.
    pub site: String,
    /// `(task, capability name)` of those that got it.
    pub holders: Vec<(usize, String)>,
}

/// The system.
#[derive(Clone, Debug)]
pub struct System {
    pub tasks: Vec<Task>,
    pub dataspaces: Vec<Dataspace>,
    /// Objects made by tasks, in the order the script asked for them.
    pub made: Vec<Made>,
    pub io: Vec<IoServer>,
    /// `rom/` files the scripts read, with where.
    pub rom_reads: Vec<(String, String)>,
    /// The script failed: its error.
    pub script_error: Option<String>,
    /// Problems reading io's files: `(task, message)`.
    pub io_errors: Vec<(usize, String)>,
}

impl System {
    pub fn task(&self, id: usize) -> &Task {
        &self.tasks[id - 1]
    }

    pub fn dataspace(&self, obj: u64) -> Option<&Dataspace> {
        self.dataspaces.iter().find(|d| d.obj == obj)
    }
}

/// A site as a person reads it: the outermost script frame, and the
/// innermost when that is elsewhere (`conf/a.ned:40 (in conf/vmm.lua:210)`),
/// `rom/` files named by their host files.
pub fn show_site(inputs: &Inputs, site: &[String]) -> String {
    let site: Vec<String> = site
        .iter()
        .map(|f| match f.rsplit_once(':') {
            Some((file, line)) if file.starts_with("rom/") => inputs
                .find(file)
                .map_or_else(|| f.clone(), |p| format!("{}:{line}", short_path(&p))),
            _ => f.clone(),
        })
        .collect();
    match (site.first(), site.last()) {
        (Some(inner), Some(outer)) if inner != outer => format!("{outer} (in {inner})"),
        (_, Some(outer)) => outer.clone(),
        _ => String::new(),
    }
}

/// The CPUs of the mask words `args` on a machine of `cpus` CPUs.
fn cpus_of(masks: &[FactoryArg], cpus: u32) -> Vec<u32> {
    let words: Vec<u64> = masks
        .iter()
        .filter(|a| **a != FactoryArg::Nil)
        .filter_map(FactoryArg::as_u64)
        .collect();
    if words.is_empty() {
        return (0..cpus).collect();
    }
    (0..cpus)
        .filter(|&c| {
            words
                .get(c as usize / 64)
                .is_some_and(|w| w & (1 << (c % 64)) != 0)
        })
        .collect()
}

/// Runs the entry's script on the recording backend and reads the system
/// it starts.
pub fn run_script(inputs: &Inputs) -> System {
    let mut system = System {
        tasks: Vec::new(),
        dataspaces: Vec::new(),
        made: Vec::new(),
        io: Vec::new(),
        rom_reads: Vec::new(),
        script_error: None,
        io_errors: Vec::new(),
    };
    let Some((script, args)) = &inputs.script else {
        return system;
    };
    let mut fake = FakeBackend::new()
        .with_any_program()
        // Waited-for programs end (with 0), so the script goes on.
        .with_default_exit(0)
        // Memory is checked against QEMU's -m by the plan itself.
        .with_memory(1 << 46)
        .with_cpus(inputs.machine.cpus);
    for d in &inputs.dirs {
        fake = fake.with_rom_dir(d);
    }
    let fake = match fake.into_located_ned() {
        Ok((ned, fake)) => {
            if let Err(e) = ned.run_file(script, args) {
                system.script_error = Some(e.to_string());
            }
            fake
        }
        Err(e) => {
            system.script_error = Some(e.to_string());
            return system;
        }
    };
    let fake = fake.borrow();
    read_system(&fake, inputs, &mut system);
    system
}

fn read_system(fake: &FakeBackend, inputs: &Inputs, system: &mut System) {
    let started = fake.started();
    // Who serves each channel: the task holding its server end.
    let server_of = |obj: u64| -> Option<usize> {
        started
            .iter()
            .position(|s| {
                s.spec
                    .caps
                    .iter()
                    .any(|(_, c)| c.obj == obj && c.rights.contains(CapRights::C))
            })
            .map(|i| i + 1)
    };
    let origin = |cap: &Cap| -> Origin {
        match fake.object(cap.obj) {
            Some(FakeObject::Env(n)) => Origin::Env(n.clone()),
            Some(FakeObject::Channel(n)) if cap.rights.contains(CapRights::C) => {
                Origin::Server { channel: *n }
            }
            Some(FakeObject::Channel(n)) => Origin::Client {
                channel: *n,
                server: server_of(cap.obj),
            },
            Some(FakeObject::Rom(n)) => Origin::Rom(n.clone()),
            Some(FakeObject::Created { factory, .. }) => Origin::Created {
                what: fake.describe_obj(cap.obj),
                factory: fake.describe_obj(*factory),
                server: match fake.object(*factory) {
                    Some(FakeObject::Channel(_)) => server_of(*factory),
                    _ => None,
                },
            },
            None => Origin::Env("invalid".into()),
        }
    };
    for (i, s) in started.iter().enumerate() {
        let spec = &s.spec;
        let log = match fake.object(spec.log.obj) {
            Some(FakeObject::Created {
                factory,
                proto: proto::LOG,
                args,
            }) => {
                let strs: Vec<&str> = args.iter().filter_map(FactoryArg::as_str).collect();
                LogInfo {
                    tag: Some((
                        strs.first().unwrap_or(&"").to_string(),
                        strs.get(1).unwrap_or(&"").to_string(),
                    )),
                    key: strs
                        .iter()
                        .skip(2)
                        .find_map(|o| o.strip_prefix("key="))
                        .map(str::to_string),
                    server: match fake.object(*factory) {
                        Some(FakeObject::Channel(_)) => server_of(*factory),
                        _ => None,
                    },
                    site: show_site(inputs, fake.site_of(spec.log.obj)),
                }
            }
            _ => LogInfo {
                tag: None,
                key: None,
                server: None,
                site: String::new(),
            },
        };
        let sched = match spec
            .scheduler
            .and_then(|c| fake.object(c.obj).map(|o| (c, o)))
        {
            Some((
                c,
                FakeObject::Created {
                    proto: proto::SCHEDULER,
                    args,
                    ..
                },
            )) => Sched {
                prio: Some((
                    args.first().and_then(FactoryArg::as_u64).unwrap_or(0),
                    args.get(1).and_then(FactoryArg::as_u64).unwrap_or(0),
                )),
                cpus: cpus_of(args.get(2..).unwrap_or(&[]), inputs.machine.cpus),
                site: show_site(inputs, fake.site_of(c.obj)),
                obj: c.obj,
            },
            _ => Sched {
                prio: None,
                cpus: (0..inputs.machine.cpus).collect(),
                site: String::new(),
                obj: 0,
            },
        };
        let caps = spec
            .caps
            .iter()
            .map(|(n, c)| CapInfo {
                name: n.clone(),
                obj: c.obj,
                rights: RightsLetters(c.rights).to_string(),
                origin: origin(c),
            })
            .collect();
        system.tasks.push(Task {
            id: i + 1,
            program: spec.program.clone(),
            args: spec.args.clone(),
            site: show_site(inputs, &s.site),
            log,
            sched,
            caps,
        });
    }
    let holders_of = |system: &System, handle: u64| -> Vec<(usize, String)> {
        system
            .tasks
            .iter()
            .flat_map(|t| {
                t.caps
                    .iter()
                    .filter(|c| c.obj == handle)
                    .map(|c| (t.id, c.name.clone()))
            })
            .collect()
    };
    for (handle, obj) in fake.objects() {
        let FakeObject::Created {
            factory,
            proto,
            args,
        } = obj
        else {
            continue;
        };
        if let (Some(FakeObject::Channel(_)), Some(server)) =
            (fake.object(*factory), server_of(*factory))
        {
            let holders = holders_of(system, handle);
            system.made.push(Made {
                obj: handle,
                server,
                proto: *proto,
                args: args.clone(),
                site: show_site(inputs, fake.site_of(handle)),
                holders,
            });
            continue;
        }
        if *proto != proto::DATASPACE {
            continue;
        }
        let int = |i: usize| args.get(i).and_then(FactoryArg::as_u64).unwrap_or(0);
        let holders = holders_of(system, handle);
        system.dataspaces.push(Dataspace {
            obj: handle,
            size: int(0),
            flags: int(1),
            align: int(2),
            site: show_site(inputs, fake.site_of(handle)),
            holders,
        });
    }
    system.rom_reads = fake
        .rom_reads()
        .iter()
        .map(|(p, s): &(String, Site)| (p.clone(), show_site(inputs, s)))
        .collect();
    // io: its command line names its configuration files.
    for t in &system.tasks {
        if t.name() != "io" {
            continue;
        }
        let files: Vec<String> = t
            .args
            .iter()
            .filter(|a| !a.starts_with('-'))
            .cloned()
            .collect();
        let mut texts = Vec::new();
        let mut failed = None;
        for f in &files {
            match inputs.read(f) {
                Ok(b) => {
                    let shown = inputs.find(f).map_or_else(|| f.clone(), |p| short_path(&p));
                    texts.push((shown, String::from_utf8_lossy(&b).into_owned()));
                }
                Err(e) => failed = Some(e),
            }
        }
        let result = match failed {
            Some(e) => Err(e),
            // Bus names against io's capabilities: a check of the plan's
            // own (`checks`), which names the task.
            None => io::load_all(
                io::Limits::qemu_virt_with_ram(inputs.machine.ram),
                None,
                &texts,
            )
            .map_err(|e| e.to_string()),
        };
        match result {
            Ok(config) => system.io.push(IoServer {
                task: t.id,
                files,
                config,
            }),
            Err(e) => system.io_errors.push((t.id, e)),
        }
    }
}

/// `conf/io.cfg` for a file of the repository, else the path as it is.
pub fn short_path(p: &std::path::Path) -> String {
    let cwd = std::env::current_dir().unwrap_or_default();
    p.strip_prefix(&cwd).unwrap_or(p).display().to_string()
}

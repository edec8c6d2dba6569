//! The system as ned's Lua API sees it: the [`Backend`] trait.
//!
//! Everything a script does that reaches beyond the Lua state goes through
//! one `Backend`: creating IPC gates and factory objects, filling name
//! spaces, starting programs and following their tasks, reading `rom/`
//! files, writing ned's own log and sleeping. [`crate::fake::FakeBackend`]
//! records all of it on the host (the tests); `TargetBackend` (AArch64
//! musl only) does it with the system's IPC protocols and loader.
//!
//! Capabilities travel as [`Cap`] values: an object handle the backend
//! chose, the rights the script gave it (`:m("rw")`) and the protocol it was
//! created as or cast to. A backend honours the rights when it hands a
//! capability to a new task.

use std::fmt;
use std::time::Duration;

use crate::cap::Cap;

/// A backend failure: what went wrong, and the L4 error code when there is
/// one (negative, as L4Re reports it, e.g. `-12` for out of memory).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendError {
    /// A sentence for a person, without a trailing period.
    pub message: String,
    /// The L4 error, if the failure was one.
    pub code: Option<l4_abi::Error>,
}

impl BackendError {
    /// A failure without an error code.
    pub fn new(message: impl Into<String>) -> BackendError {
        BackendError {
            message: message.into(),
            code: None,
        }
    }

    /// A failure with the L4 error `code`; the message gets its description.
    pub fn l4(context: impl fmt::Display, code: l4_abi::Error) -> BackendError {
        BackendError {
            message: format!("{context}: {}", code.describe()),
            code: Some(code),
        }
    }

    /// A part of the system that does not exist yet (`-ENOSYS`).
    pub fn unavailable(what: impl fmt::Display) -> BackendError {
        BackendError {
            message: format!("{what} is not available yet"),
            code: Some(l4_abi::Error::NoSys),
        }
    }

    /// The error code as L4Re numbers it (negative), or `-1` without one.
    pub fn code_value(&self) -> i64 {
        self.code.map_or(-1, l4_abi::Error::as_ret)
    }
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for BackendError {}

/// Result of a backend operation.
pub type Result<T> = std::result::Result<T, BackendError>;

/// An argument of a factory `create` (L4Re's typed "vargs"): what a
/// script's integers, strings and nils become.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FactoryArg {
    /// A Lua integer (sent signed, as L4Re does).
    Int(i64),
    /// An unsigned word (CPU-set mask words).
    Uint(u64),
    /// A string.
    Str(String),
    /// `nil`.
    Nil,
}

impl FactoryArg {
    /// The value as an unsigned integer, if it is an integer.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            FactoryArg::Int(v) => Some(v as u64),
            FactoryArg::Uint(v) => Some(v),
            _ => None,
        }
    }

    /// The value as a string, if it is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            FactoryArg::Str(s) => Some(s),
            _ => None,
        }
    }
}

impl fmt::Display for FactoryArg {
    /// Integers in decimal, masks in hex, strings quoted, `nil`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FactoryArg::Int(v) => write!(f, "{v}"),
            FactoryArg::Uint(v) => write!(f, "{v:#x}"),
            FactoryArg::Str(s) => write!(f, "{s:?}"),
            FactoryArg::Nil => f.write_str("nil"),
        }
    }
}

/// Everything needed to start one program (the result of a script's
/// `loader:start(opts, "rom/prog args")` after ned resolved its options).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartSpec {
    /// The program file, `rom/...` (also `argv[0]`).
    pub program: String,
    /// The arguments after the program.
    pub args: Vec<String>,
    /// POSIX environment strings, `NAME=value`.
    pub env: Vec<String>,
    /// Named capabilities, sorted by name (always including `rom`).
    pub caps: Vec<(String, Cap)>,
    /// The program's log.
    pub log: Cap,
    /// The scheduler its threads run through; `None`: ned's own.
    pub scheduler: Option<Cap>,
    /// Where its memory comes from (`mem`; L4Re: the loader's `mem`).
    pub mem: Option<Cap>,
    /// The kernel factory it gets (`factory`).
    pub factory: Option<Cap>,
    /// The factory of its region map (`rm_fab`).
    pub rm_fab: Option<Cap>,
    /// Debug flags of its runtime (`l4re_dbg`, L4Re's `L4.Dbg`).
    pub l4re_dbg: u64,
    /// Loader flags (`ldr_flags`, L4Re's `L4.Ldr_flags`).
    pub ldr_flags: u64,
    /// The in-task runtime to load (`l4re_loader`, default `rom/l4re`).
    pub l4re_loader: String,
}

impl StartSpec {
    /// The capability called `name`.
    pub fn cap(&self, name: &str) -> Option<&Cap> {
        self.caps.iter().find(|(n, _)| n == name).map(|(_, c)| c)
    }

    /// The capability names, in order.
    pub fn cap_names(&self) -> Vec<&str> {
        self.caps.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// `argv`: the program, then the arguments.
    pub fn argv(&self) -> Vec<&str> {
        std::iter::once(self.program.as_str())
            .chain(self.args.iter().map(String::as_str))
            .collect()
    }
}

/// A started task, as the backend numbers them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TaskId(pub u64);

/// How a task ended: its exit code, or `None` when it was killed.
pub type ExitCode = Option<i64>;

/// Where a started task is in its life (L4Re's `task:state()`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskState {
    /// Being loaded.
    Initializing,
    /// Running.
    Running,
    /// Ended, not yet waited for.
    Zombie(ExitCode),
    /// Ended and waited for (or unknown): nothing left.
    Reaped,
}

impl TaskState {
    /// L4Re's name of the state; `None` once reaped.
    pub fn name(self) -> Option<&'static str> {
        match self {
            TaskState::Initializing => Some("initializing"),
            TaskState::Running => Some("running"),
            TaskState::Zombie(_) => Some("zombie"),
            TaskState::Reaped => None,
        }
    }
}

/// The system, as ned's scripts reach it.
///
/// Methods take `&mut self` and never call back into Lua. Blocking ones
/// ([`Backend::wait`], [`Backend::wait_any`], [`Backend::sleep`]) block the
/// whole of ned, as in L4Re.
pub trait Backend {
    /// ned's own capabilities (L4Re's `L4.Env`): the well-known ones
    /// (`parent`, `mem_alloc`, `log`, `factory`, `scheduler`, `rom`, ...)
    /// and every named one of its environment (`icu`, `sigma0`, ...).
    fn env_caps(&mut self) -> Vec<(String, Cap)>;

    /// A new IPC gate from `factory` (L4Re's `loader:new_channel()`): the
    /// client end; `:svr()` of it is the server end.
    fn new_channel(&mut self, factory: &Cap) -> Result<Cap>;

    /// `factory:create(proto, args...)`: a new object.
    fn create(&mut self, factory: &Cap, proto: i64, args: &[FactoryArg]) -> Result<Cap>;

    /// Registers `cap` as `name` in the name space `ns`; `None` removes
    /// the name.
    fn ns_register(&mut self, ns: &Cap, name: &str, cap: Option<&Cap>) -> Result<()>;

    /// Looks `name` up in the name space `ns`.
    fn ns_query(&mut self, ns: &Cap, name: &str) -> Result<Cap>;

    /// Starts a program in a new task.
    fn start(&mut self, spec: &StartSpec) -> Result<TaskId>;

    /// Where `task` is in its life.
    fn task_state(&mut self, task: TaskId) -> TaskState;

    /// Waits until `task` ends and reaps it: its exit code.
    fn wait(&mut self, task: TaskId) -> Result<ExitCode>;

    /// Ends `task` (it becomes a zombie whose exit code is `None`).
    fn kill(&mut self, task: TaskId) -> Result<()>;

    /// Waits until any started task ends and reaps it; `None` when no
    /// task is left to wait for.
    fn wait_any(&mut self) -> Option<(TaskId, ExitCode)>;

    /// The contents of a `rom/` file.
    fn read_rom(&mut self, path: &str) -> Result<Vec<u8>>;

    /// Writes one line of ned's own output (without the newline).
    fn log(&mut self, line: &str);

    /// Sleeps.
    fn sleep(&mut self, duration: Duration);

    /// The kernel's version string (`L4.Info.Kip.str()`).
    fn kernel_info(&mut self) -> String;
}

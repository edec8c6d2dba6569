//! `L4.Loader` and `L4.default_loader`.
//!
//! A loader is a plain Lua table whose metatable is `L4.Loader`, so a
//! script can change its fields (`l.log_fab = cons`) and later starts use
//! them:
//!
//! | field          | what                                                      | default             |
//! |----------------|-----------------------------------------------------------|---------------------|
//! | `mem`          | memory allocator of started programs                      | `L4.Env.mem_alloc`  |
//! | `factory`      | kernel factory (programs, `new_channel`)                  | `L4.Env.factory`    |
//! | `log_fab`      | creates the programs' logs (`create(L4.Proto.Log, ...)`)  | `mem`               |
//! | `ns_fab`       | creates name spaces (tables in `caps`)                    | `mem`               |
//! | `rm_fab`       | region-map factory of programs                            | `mem`               |
//! | `sched_fab`    | creates scheduler proxies (`create_sched_proxy`)          | `mem`               |
//! | `default_caps` | capabilities every program gets unless `caps` has them    | `{rom = L4.Env.rom:m("r")}` |
//!
//! Methods: `start(opts, "rom/prog args", [posix_env])`,
//! `startv(opts, "rom/prog", arg1, ..., [posix_env])`, `new_channel()`,
//! `create_namespace(tbl[, fab])`, `create_sched_proxy{cpus, prio_offset,
//! prio_limit}`, and `Loader.split_args(cmd[, posix_env])`,
//! `Loader.new{...}`.

use mlua::{AnyUserData, Lua, MultiValue, Table, Value};

use super::caps::{self, create_object, factory_arg};
use super::raise::{self, ApiResult, Args, Raise, function};
use super::{backend, l4_table, task};
use crate::backend::{FactoryArg, StartSpec};
use crate::cap::Cap;
use crate::options::{self, CapOpt, LogOpt};
use crate::proto;

/// Registry key of the `L4.Loader` class.
const CLASS_KEY: &str = "ned.Loader";

/// `L4.Loader`: the class of loaders.
pub fn class(lua: &Lua) -> mlua::Result<Table> {
    let class = lua.create_table()?;
    class.set("__index", class.clone())?;
    class.set("new", function(lua, new)?)?;
    class.set("start", function(lua, start)?)?;
    class.set("startv", function(lua, startv)?)?;
    class.set("new_channel", function(lua, new_channel)?)?;
    class.set("create_namespace", function(lua, create_namespace)?)?;
    class.set("create_sched_proxy", function(lua, create_sched_proxy)?)?;
    class.set("split_args", function(lua, split_args)?)?;
    lua.set_named_registry_value(CLASS_KEY, class.clone())?;
    Ok(class)
}

/// `L4.default_loader`: a loader with ned's factory and memory allocator
/// (`l4` is the `L4` table, which gives `L4.Loader` and `L4.Env`).
pub fn default_loader(lua: &Lua, l4: &Table) -> mlua::Result<Table> {
    l4.get::<Table>("Loader")?;
    let env: Table = l4.get("Env")?;
    let proto = lua.create_table()?;
    proto.set("factory", env.get::<Value>("factory")?)?;
    proto.set("mem", env.get::<Value>("mem_alloc")?)?;
    new_loader(lua, proto).map_err(mlua::Error::runtime)
}

/// `L4.Loader.new{...}` (also `L4.Loader:new{...}`).
fn new(lua: &Lua, a: MultiValue) -> ApiResult<Table> {
    let mut a = Args::new("Loader.new", a);
    let class: Table = lua.named_registry_value(CLASS_KEY)?;
    if matches!(a.get(0), Value::Table(t) if t == class) {
        a = a.skip_self();
    }
    let proto = a.opt_table(lua, 0)?;
    new_loader(lua, proto)
}

fn new_loader(lua: &Lua, f: Table) -> ApiResult<Table> {
    let env: Table = l4_table(lua)?.get("Env")?;
    if f.get::<Value>("mem")?.is_nil() {
        f.set("mem", env.get::<Value>("mem_alloc")?)?;
    }
    let fab = match f.get::<Value>("loader")? {
        Value::Nil => f.get::<Value>("mem")?,
        v => v,
    };
    for key in ["log_fab", "ns_fab", "rm_fab", "sched_fab"] {
        if f.get::<Value>(key)?.is_nil() {
            f.set(key, fab.clone())?;
        }
    }
    if f.get::<Value>("factory")?.is_nil() {
        f.set("factory", env.get::<Value>("factory")?)?;
    }
    if f.get::<Value>("default_caps")?.is_nil() {
        let caps = lua.create_table()?;
        if let Some(rom) = raise::to_cap(&env.get::<Value>("rom")?) {
            caps.set(
                "rom",
                caps::new(lua, rom.with_rights(crate::cap::CapRights::R))?,
            )?;
        }
        f.set("default_caps", caps)?;
    }
    f.set_metatable(Some(lua.named_registry_value::<Table>(CLASS_KEY)?))?;
    Ok(f)
}

/// The loader a method was called on: a table made by `L4.Loader.new` (or
/// one with a loader's fields).
fn this(lua: &Lua, a: &Args) -> ApiResult<Table> {
    let hint = |got: &str| {
        a.bad(
            0,
            format!(
                "loader expected, got {got} (call it as loader:{}(...))",
                a.func()
            ),
        )
    };
    match a.get(0) {
        Value::Table(t) => {
            let class: Table = lua.named_registry_value(CLASS_KEY)?;
            let is_loader = t.metatable().is_some_and(|m| m == class)
                || !t.get::<Value>("factory")?.is_nil()
                || !t.get::<Value>("mem")?.is_nil();
            if is_loader {
                Ok(t)
            } else {
                Err(hint("a table"))
            }
        }
        v => Err(hint(raise::type_name(&v))),
    }
}

/// A capability field of the loader (`nil` allowed).
fn field_cap(loader: &Table, key: &str) -> Result<Option<Cap>, String> {
    raise::field_cap(loader, key, format_args!("the loader's '{key}'"))
}

/// A program argument: a string or a number.
fn arg_string(a: &Args, i: usize) -> ApiResult<String> {
    match a.get(i) {
        Value::String(s) => Ok(s.to_string_lossy()),
        Value::Integer(n) => Ok(n.to_string()),
        Value::Number(n) => Ok(n.to_string()),
        v => Err(a.bad(
            i,
            format!(
                "program arguments must be strings or numbers, got {}",
                raise::type_name(&v)
            ),
        )),
    }
}

/// The POSIX environment: `{"A=1", B = "2"}` gives `A=1`, `B=2`.
fn posix_env(t: &Table) -> ApiResult<Vec<String>> {
    let mut env = Vec::new();
    for pair in t.pairs::<Value, Value>() {
        let (k, v) = pair?;
        let value = raise::to_string(&v).or_else(|| raise::to_int(&v).map(|n| n.to_string()));
        match (&k, value) {
            (Value::Integer(_), Some(s)) => env.push(s),
            (Value::String(k), Some(s)) => env.push(format!("{}={s}", k.to_string_lossy())),
            _ => {
                return Err(Raise::msg(
                    "the POSIX environment must hold strings (\"NAME=value\" or NAME = \"value\")",
                ));
            }
        }
    }
    env.sort();
    Ok(env)
}

/// `loader:startv(opts, "rom/prog", arg1, ..., [posix_env])`.
fn startv(lua: &Lua, a: MultiValue) -> ApiResult<AnyUserData> {
    let a = Args::method("startv", a);
    let loader = this(lua, &a)?;
    let opts = a.opt_table(lua, 1)?;
    let program = a.string(2)?;
    let mut rest = a.len().saturating_sub(3);
    let mut env = Vec::new();
    if let Some(Value::Table(t)) = a.rest(3).last() {
        env = posix_env(t)?;
        rest -= 1;
    }
    let args = (3..3 + rest)
        .map(|i| arg_string(&a, i))
        .collect::<ApiResult<Vec<_>>>()?;
    start_program(lua, &loader, &opts, program, args, env)
}

/// `loader:start(opts, "rom/prog arg1 arg2", [posix_env])`.
fn start(lua: &Lua, a: MultiValue) -> ApiResult<AnyUserData> {
    let a = Args::method("start", a);
    let loader = this(lua, &a)?;
    let opts = a.opt_table(lua, 1)?;
    let cmd = a.string(2)?;
    let env = match a.get(3) {
        Value::Nil => Vec::new(),
        _ => posix_env(&a.table(3)?)?,
    };
    let words = options::split_command(&cmd);
    let Some((program, args)) = words.split_first() else {
        return Err(a.bad(2, "the command line names no program"));
    };
    let args = args.iter().map(|s| s.to_string()).collect();
    start_program(lua, &loader, &opts, program.to_string(), args, env)
}

/// `Loader.split_args(cmd[, posix_env])`: the words, then `posix_env`.
fn split_args(lua: &Lua, a: MultiValue) -> ApiResult<MultiValue> {
    let mut a = Args::new("split_args", a);
    if matches!(a.get(0), Value::Table(_)) {
        a = a.skip_self();
    }
    let cmd = a.string(0)?;
    let mut out = MultiValue::new();
    for w in options::split_command(&cmd) {
        out.push_back(Value::String(lua.create_string(w)?));
    }
    if !a.get(1).is_nil() {
        out.push_back(a.get(1));
    }
    Ok(out)
}

/// The common part of `start` and `startv`.
fn start_program(
    lua: &Lua,
    loader: &Table,
    opts: &Table,
    program: String,
    args: Vec<String>,
    env: Vec<String>,
) -> ApiResult<AnyUserData> {
    let name = program.clone();
    let fail = |e: String| Raise::msg(format!("cannot start {name}: {e}"));
    if program.is_empty() {
        return Err(fail("the program name is empty".into()));
    }
    let o = options::parse(opts).map_err(fail)?;
    if !o.unknown.is_empty() {
        backend(lua)?.borrow_mut().log(&format!(
            "Ned: warning: {program}: unknown start option(s) {} ignored",
            o.unknown.join(", ")
        ));
    }

    let mut caps = Vec::new();
    for (name, value) in o.caps {
        if let Some(cap) = resolve_cap(lua, loader, &name, value)? {
            caps.push((name, cap));
        }
    }
    if let Value::Table(defaults) = loader.get::<Value>("default_caps")? {
        for pair in defaults.pairs::<String, Value>() {
            let (name, v) = pair?;
            if caps.iter().any(|(n, _)| *n == name) {
                continue;
            }
            let cap = raise::to_cap(&v)
                .ok_or_else(|| fail(format!("default_caps.{name} is not a capability")))?;
            caps.push((name, cap));
        }
    }
    caps.sort_by(|a, b| a.0.cmp(&b.0));

    let log = match o.log {
        LogOpt::Cap(c) => c,
        LogOpt::Function(f) => {
            let v: Value = f.call(())?;
            raise::to_cap(&v)
                .ok_or_else(|| fail("the 'log' function did not return a capability".into()))?
        }
        LogOpt::Default => make_log(lua, loader, &program, &[])?,
        LogOpt::Args(a) => make_log(lua, loader, &program, &a)?,
    };

    let loader_cap = |key: &str| field_cap(loader, key).map_err(fail);
    let spec = StartSpec {
        caps,
        log,
        scheduler: o.scheduler,
        mem: o.mem.or(loader_cap("mem")?),
        factory: o.factory.or(loader_cap("factory")?),
        rm_fab: o.rm_fab.or(loader_cap("rm_fab")?),
        l4re_dbg: o.l4re_dbg.unwrap_or(proto::DBG_WARN as u64),
        ldr_flags: o.ldr_flags.unwrap_or(0),
        l4re_loader: o
            .l4re_loader
            .unwrap_or_else(|| options::DEFAULT_RUNTIME.to_string()),
        program,
        args,
        env,
    };
    let id = backend(lua)?
        .borrow_mut()
        .start(&spec)
        .map_err(|e| fail(e.message))?;
    Ok(task::new(lua, id, &spec.program)?)
}

/// The program's log: `log_fab:create(L4.Proto.Log, tag, ...)`, the tag
/// defaulting to the program's name.
fn make_log(lua: &Lua, loader: &Table, program: &str, args: &[Value]) -> ApiResult<Cap> {
    let fail = |e: String| Raise::msg(format!("cannot start {program}: {e}"));
    let fab = field_cap(loader, "log_fab")
        .map_err(fail)?
        .ok_or_else(|| fail("the loader has no log factory (set its 'log_fab')".into()))?;
    let mut fargs = Vec::with_capacity(args.len().max(1));
    match args.first() {
        None | Some(Value::Nil) => {
            fargs.push(FactoryArg::Str(options::basename(program).to_string()))
        }
        Some(v) => factory_arg(v, &mut fargs).map_err(|e| fail(format!("log tag: {e}")))?,
    }
    for v in args.iter().skip(1) {
        factory_arg(v, &mut fargs).map_err(|e| fail(format!("log option: {e}")))?;
    }
    create_object(lua, &fab, proto::LOG, &fargs)
}

/// A `caps` entry as the capability to hand on (`None`: a function gave
/// `nil`, nothing to hand on).
fn resolve_cap(lua: &Lua, loader: &Table, name: &str, v: CapOpt) -> ApiResult<Option<Cap>> {
    match v {
        CapOpt::Cap(c) => Ok(Some(c)),
        CapOpt::Function(f) => {
            let v: Value = f.call(name)?;
            match v {
                Value::Nil => Ok(None),
                v => raise::to_cap(&v).map(Some).ok_or_else(|| {
                    Raise::msg(format!(
                        "the function for caps.{name} returned a {}, not a capability",
                        raise::type_name(&v)
                    ))
                }),
            }
        }
        CapOpt::Namespace(t) => {
            let fab = field_cap(loader, "ns_fab").map_err(Raise::Msg)?;
            namespace_from_table(lua, &t, fab).map(Some)
        }
    }
}

/// A new name space with the entries of `t` (capabilities, functions
/// giving one, tables for nested name spaces), made by `fab` (default: the
/// default loader's `ns_fab`).
pub fn namespace_from_table(lua: &Lua, t: &Table, fab: Option<Cap>) -> ApiResult<Cap> {
    let fab = match fab {
        Some(f) => f,
        None => {
            let l: Table = l4_table(lua)?.get("default_loader")?;
            field_cap(&l, "ns_fab")
                .map_err(Raise::Msg)?
                .ok_or_else(|| Raise::msg("no name-space factory (ns_fab)"))?
        }
    };
    let ns = create_object(lua, &fab, proto::NAMESPACE, &[])?;
    for pair in t.pairs::<Value, Value>() {
        let (k, mut v) = pair?;
        let key = raise::to_string(&k).ok_or_else(|| {
            Raise::msg(format!(
                "name-space keys must be strings, not {}",
                raise::type_name(&k)
            ))
        })?;
        if let Value::Function(f) = &v {
            v = f.call((caps::new(lua, ns)?, key.as_str()))?;
        }
        let cap = match &v {
            Value::Nil => continue,
            Value::Table(sub) => namespace_from_table(lua, sub, Some(fab))?,
            v => raise::to_cap(v).ok_or_else(|| {
                Raise::msg(format!(
                    "name-space entry '{key}' must be a capability, function or table, not a {}",
                    raise::type_name(v)
                ))
            })?,
        };
        backend(lua)?
            .borrow_mut()
            .ns_register(&ns, &key, Some(&cap))
            .map_err(|e| Raise::failure(&e))?;
    }
    Ok(ns)
}

/// `loader:new_channel()`: an IPC gate from the loader's `factory`.
fn new_channel(lua: &Lua, a: MultiValue) -> ApiResult<AnyUserData> {
    let a = Args::method("new_channel", a);
    let loader = this(lua, &a)?;
    let factory = field_cap(&loader, "factory")
        .map_err(Raise::Msg)?
        .ok_or_else(|| Raise::msg("cannot create a channel: the loader has no 'factory'"))?;
    let r = backend(lua)?.borrow_mut().new_channel(&factory);
    let gate = r.map_err(|e| {
        Raise::failure(&crate::backend::BackendError {
            message: format!("cannot create a channel: {}", e.message),
            ..e
        })
    })?;
    Ok(caps::new(lua, gate.cast(proto::IPC_GATE))?)
}

/// `loader:create_namespace(tbl[, fab])`.
fn create_namespace(lua: &Lua, a: MultiValue) -> ApiResult<Value> {
    let a = Args::method("create_namespace", a);
    let loader = this(lua, &a)?;
    let t = match a.get(1) {
        Value::Table(t) => t,
        // L4Re hands anything else back unchanged.
        v => return Ok(v),
    };
    let fab = match a.get(2) {
        Value::Nil => field_cap(&loader, "ns_fab").map_err(Raise::Msg)?,
        _ => Some(a.cap(2)?),
    };
    let ns = namespace_from_table(lua, &t, fab)?;
    Ok(Value::UserData(caps::new(lua, ns)?))
}

/// `loader:create_sched_proxy{cpus = set_or_mask, prio_offset = n,
/// prio_limit = n}`: a scheduler proxy from `sched_fab` for priorities
/// `prio_offset ..= prio_offset + prio_limit` on `cpus` (all if absent).
fn create_sched_proxy(lua: &Lua, a: MultiValue) -> ApiResult<AnyUserData> {
    let a = Args::method("create_sched_proxy", a);
    let loader = this(lua, &a)?;
    let o = a.opt_table(lua, 1)?;
    let fab = field_cap(&loader, "sched_fab")
        .map_err(Raise::Msg)?
        .ok_or_else(|| Raise::msg("the loader has no scheduler factory (sched_fab)"))?;
    let int = |key: &str| -> ApiResult<i64> {
        match o.get::<Value>(key)? {
            Value::Nil => Ok(0),
            v => raise::to_int(&v).ok_or_else(|| a.bad(1, format!("'{key}' must be an integer"))),
        }
    };
    let offset = int("prio_offset")?;
    let limit = int("prio_limit")?;
    let mut args = vec![FactoryArg::Int(offset + limit), FactoryArg::Int(offset)];
    let cpus = o.get::<Value>("cpus")?;
    if !cpus.is_nil() {
        factory_arg(&cpus, &mut args).map_err(|e| a.bad(1, format!("'cpus': {e}")))?;
    }
    Ok(caps::new(
        lua,
        create_object(lua, &fab, proto::SCHEDULER, &args)?,
    )?)
}

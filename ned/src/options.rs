//! The start options of `loader:start(opts, ...)` and `loader:startv(opts,
//! ...)`, as L4Re's ned takes them:
//!
//! | option        | value                                                                   |
//! |---------------|-------------------------------------------------------------------------|
//! | `caps`        | `name = capability`, a function returning one, or a table (a new name space) |
//! | `log`         | `{tag, colour, opts...}` for the loader's `log_fab`, a capability, or a function |
//! | `scheduler`   | a scheduler (proxy) capability                                           |
//! | `mem`         | the memory allocator (default: the loader's `mem`)                       |
//! | `factory`     | the kernel factory (default: the loader's `factory`)                     |
//! | `rm_fab`      | the region-map factory (default: the loader's `rm_fab`)                  |
//! | `l4re_dbg`    | runtime debug flags (`L4.Dbg`, default `Warn`)                           |
//! | `ldr_flags`   | loader flags (`L4.Ldr_flags`)                                            |
//! | `l4re_loader` | the runtime to load (default `rom/l4re`)                                 |
//!
//! [`parse`] checks the types and names and leaves capability values to
//! be resolved by [`crate::api::loader`] (functions and name spaces need
//! the backend).

use mlua::{Function, Table, Value};

use crate::api::raise;
use crate::cap::Cap;

/// Longest capability name L4Re's ned allows.
pub const CAP_NAME_MAX: usize = 16;

/// The runtime loaded into every task unless `l4re_loader` says otherwise.
pub const DEFAULT_RUNTIME: &str = "rom/l4re";

/// Options L4Re's loader knows that need no handling here (`loader` is set
/// by L4Re's own `startv`, `ns_fab`/`log_fab` are loader fields).
const IGNORED: &[&str] = &["loader", "ns_fab", "log_fab", "sched_fab"];

/// The `log` option.
#[derive(Clone, Debug)]
pub enum LogOpt {
    /// None given: a log tagged with the program's name.
    Default,
    /// `{tag, colour, opts...}`: arguments of `log_fab:create(L4.Proto.Log, ...)`.
    Args(Vec<Value>),
    /// A capability.
    Cap(Cap),
    /// A function returning a capability.
    Function(Function),
}

/// A value of the `caps` option, before it is resolved.
#[derive(Clone, Debug)]
pub enum CapOpt {
    /// A capability.
    Cap(Cap),
    /// A function returning a capability (called with the name).
    Function(Function),
    /// A table: a new name space with these entries.
    Namespace(Table),
}

/// The parsed options.
#[derive(Clone, Debug)]
pub struct StartOptions {
    /// The `caps` entries, sorted by name.
    pub caps: Vec<(String, CapOpt)>,
    /// The `log` option.
    pub log: LogOpt,
    /// `scheduler`.
    pub scheduler: Option<Cap>,
    /// `mem`.
    pub mem: Option<Cap>,
    /// `factory`.
    pub factory: Option<Cap>,
    /// `rm_fab`.
    pub rm_fab: Option<Cap>,
    /// `l4re_dbg`.
    pub l4re_dbg: Option<u64>,
    /// `ldr_flags`.
    pub ldr_flags: Option<u64>,
    /// `l4re_loader`.
    pub l4re_loader: Option<String>,
    /// Options ned does not know (ignored, with a warning).
    pub unknown: Vec<String>,
}

/// Checks a capability name: 1 to [`CAP_NAME_MAX`] bytes, no NUL.
pub fn check_cap_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("capability names must not be empty".into());
    }
    if name.len() > CAP_NAME_MAX {
        return Err(format!(
            "capability name '{name}' is too long ({} characters, at most {CAP_NAME_MAX})",
            name.len()
        ));
    }
    if name.contains('\0') {
        return Err(format!("capability name {name:?} contains a NUL character"));
    }
    Ok(())
}

/// Splits a command line at white space (L4Re's `Loader.split_args`).
pub fn split_command(cmd: &str) -> Vec<&str> {
    cmd.split_whitespace().collect()
}

/// The last component of a program path: its default log tag.
pub fn basename(program: &str) -> &str {
    program.rsplit('/').next().unwrap_or(program)
}

fn opt_cap(t: &Table, key: &str) -> Result<Option<Cap>, String> {
    raise::field_cap(t, key, format_args!("option '{key}'"))
}

fn opt_uint(t: &Table, key: &str) -> Result<Option<u64>, String> {
    match t.get::<Value>(key).map_err(|e| e.to_string())? {
        Value::Nil => Ok(None),
        v => match raise::to_int(&v) {
            Some(n) if n >= 0 => Ok(Some(n as u64)),
            _ => Err(format!(
                "option '{key}' must be a non-negative integer, not {}",
                describe(&v)
            )),
        },
    }
}

fn describe(v: &Value) -> String {
    match raise::to_int(v) {
        Some(n) => n.to_string(),
        None => format!("a {}", raise::type_name(v)),
    }
}

fn parse_caps(v: Value) -> Result<Vec<(String, CapOpt)>, String> {
    let t = match v {
        Value::Nil => return Ok(Vec::new()),
        Value::Table(t) => t,
        v => {
            return Err(format!(
                "option 'caps' must be a table of name = capability, not a {}",
                raise::type_name(&v)
            ));
        }
    };
    let mut caps = Vec::new();
    for pair in t.pairs::<Value, Value>() {
        let (k, v) = pair.map_err(|e| e.to_string())?;
        let name = match raise::to_string(&k) {
            Some(n) => n,
            None => {
                return Err(format!(
                    "capability names must be strings (caps has a key of type {})",
                    raise::type_name(&k)
                ));
            }
        };
        check_cap_name(&name)?;
        let value = match v {
            Value::Function(f) => CapOpt::Function(f),
            Value::Table(t) if t.metatable().is_none() => CapOpt::Namespace(t),
            v => CapOpt::Cap(raise::to_cap(&v).ok_or_else(|| {
                format!(
                    "caps.{name} must be a capability, a function or a table, not {}",
                    describe(&v)
                )
            })?),
        };
        caps.push((name, value));
    }
    caps.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(caps)
}

fn parse_log(v: Value) -> Result<LogOpt, String> {
    match v {
        Value::Nil => Ok(LogOpt::Default),
        Value::Function(f) => Ok(LogOpt::Function(f)),
        Value::Table(t) => {
            let n = t.raw_len();
            let mut args = Vec::with_capacity(n);
            for i in 1..=n {
                args.push(t.raw_get::<Value>(i).map_err(|e| e.to_string())?);
            }
            Ok(LogOpt::Args(args))
        }
        v => raise::to_cap(&v).map(LogOpt::Cap).ok_or_else(|| {
            format!(
                "option 'log' must be a table {{tag, colour, ...}}, a capability or a function, not a {}",
                raise::type_name(&v)
            )
        }),
    }
}

/// Parses the options table of a start.
pub fn parse(t: &Table) -> Result<StartOptions, String> {
    const KNOWN: &[&str] = &[
        "caps",
        "log",
        "scheduler",
        "mem",
        "factory",
        "rm_fab",
        "l4re_dbg",
        "ldr_flags",
        "l4re_loader",
    ];
    let mut unknown = Vec::new();
    for pair in t.pairs::<Value, Value>() {
        let (k, _) = pair.map_err(|e| e.to_string())?;
        let name = raise::to_string(&k).unwrap_or_else(|| format!("[{}]", describe(&k)));
        if !KNOWN.contains(&name.as_str()) && !IGNORED.contains(&name.as_str()) {
            unknown.push(name);
        }
    }
    unknown.sort();
    let l4re_loader = match t.get::<Value>("l4re_loader").map_err(|e| e.to_string())? {
        Value::Nil => None,
        v => Some(raise::to_string(&v).ok_or_else(|| {
            format!(
                "option 'l4re_loader' must be a string, not a {}",
                raise::type_name(&v)
            )
        })?),
    };
    Ok(StartOptions {
        caps: parse_caps(t.get("caps").map_err(|e| e.to_string())?)?,
        log: parse_log(t.get("log").map_err(|e| e.to_string())?)?,
        scheduler: opt_cap(t, "scheduler")?,
        mem: opt_cap(t, "mem")?,
        factory: opt_cap(t, "factory")?,
        rm_fab: opt_cap(t, "rm_fab")?,
        l4re_dbg: opt_uint(t, "l4re_dbg")?,
        ldr_flags: opt_uint(t, "ldr_flags")?,
        l4re_loader,
        unknown,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mlua::Lua;

    fn opts(lua: &Lua, src: &str) -> Result<StartOptions, String> {
        let t: Table = lua.load(src).eval().unwrap();
        parse(&t)
    }

    #[test]
    fn names_and_commands() {
        assert!(check_cap_name("vm1_hw").is_ok());
        assert!(check_cap_name("sixteen_chars_ok").is_ok());
        assert!(check_cap_name("seventeen_chars_x").is_err());
        assert!(check_cap_name("").is_err());
        assert_eq!(
            split_command("rom/io  rom/io.cfg\trom/vm1_hw.vbus"),
            ["rom/io", "rom/io.cfg", "rom/vm1_hw.vbus"]
        );
        assert_eq!(basename("rom/uvmm"), "uvmm");
        assert_eq!(basename("uvmm"), "uvmm");
    }

    #[test]
    fn options_are_checked() {
        let lua = Lua::new();
        let o = opts(&lua, "{}").unwrap();
        assert!(o.caps.is_empty());
        assert!(matches!(o.log, LogOpt::Default));
        let o = opts(
            &lua,
            r#"{ log = {"vm1", "", "key=1"}, l4re_dbg = 7, ldr_flags = 1, l4re_loader = "rom/rt", cpas = {} }"#,
        )
        .unwrap();
        assert!(matches!(&o.log, LogOpt::Args(a) if a.len() == 3));
        assert_eq!(o.l4re_dbg, Some(7));
        assert_eq!(o.ldr_flags, Some(1));
        assert_eq!(o.l4re_loader.as_deref(), Some("rom/rt"));
        assert_eq!(o.unknown, ["cpas"]);

        let e = opts(&lua, "{ caps = { net = 1 } }").unwrap_err();
        assert_eq!(
            e,
            "caps.net must be a capability, a function or a table, not 1"
        );
        let e = opts(&lua, "{ caps = { [1] = {} } }").unwrap_err();
        assert!(e.contains("names must be strings"), "{e}");
        let e = opts(&lua, "{ caps = 3 }").unwrap_err();
        assert!(e.contains("option 'caps' must be a table"), "{e}");
        let e = opts(&lua, "{ scheduler = 3 }").unwrap_err();
        assert_eq!(e, "option 'scheduler' must be a capability, not a number");
        let e = opts(&lua, "{ log = 3 }").unwrap_err();
        assert!(e.starts_with("option 'log' must be a table"), "{e}");
        let e = opts(&lua, "{ l4re_dbg = -1 }").unwrap_err();
        assert!(e.contains("non-negative integer, not -1"), "{e}");
        let e = opts(&lua, "{ caps = { a_very_long_capability_name = {} } }").unwrap_err();
        assert!(e.contains("too long"), "{e}");
    }
}

//! The Lua configuration: L4Re io's `Io` module over the [`model`].
//!
//! io runs its configuration files (`io.cfg`, `*.vbus`) as Lua 5.4 chunks
//! in one state with these globals:
//!
//! | name | what it does |
//! |------|--------------|
//! | `Io.Res.mmio(s, e[, flags])` | an MMIO range `s..=e`; flags `Io.Resource.F_prefetchable`, `Io.Resource.F_cached_mem` |
//! | `Io.Res.irq(n \| {s, e}[, type])` | interrupt line(s), `type` one of `Io.Resource.Irq_type_*` |
//! | `Io.Resource.Irq_type_{none,level_high,level_low,raising_edge,falling_edge,both_edges}` | trigger types |
//! | `Io.Hw.Device(fn)` | a device; `fn` runs with the device as its globals (below) |
//! | `Io.Dt.add_children(dev, fn)` | `fn` adds children to `dev` (same globals as a device's) |
//! | `Io.hw_add_devices(fn \| {name = dev, ...})` | the same for the system bus |
//! | `Io.system_bus()` | the platform's root device |
//! | `dev.name`, `dev:match(cid, ...)` | a child of `dev`; the devices under `dev` whose hid or compatible string is one of the `cid`s |
//! | `Io.Vi.System_bus(fn)` | a virtual bus; in `fn`, `NAME = wrap(devs)` puts platform devices on it |
//! | `wrap(dev \| {dev, ...})` | platform devices for a virtual bus |
//! | `Io.add_vbus(name, bus)`, `Io.add_vbusses{name = bus, ...}` | serve `bus` on the capability `name` |
//!
//! In a device's function, `compatible = {...}` sets its compatible
//! strings, `Property.hid = "..."` (or `hid = ...`) its hardware id and
//! `Property.x = v` other properties, `Resource.id = Io.Res...` adds a
//! resource, `Child.name = dev` or `name = dev` a child; other globals read
//! through to the real ones. Mistakes are [`ConfigError`]s with the
//! `file:line` of the offending statement.

use std::fmt::Write as _;

use mlua::{Function, Lua, MetaMethod, Table, UserData, UserDataMethods, Value, Variadic};

use crate::model::{
    BusDraft, Config, ConfigError, DevId, IRQ_TYPES, Limits, MMIO_FLAGS, Pos, Res, SYSTEM_BUS,
};

/// The configuration being built, kept in the Lua state's app data.
struct State {
    cfg: Config,
    drafts: Vec<BusDraft>,
    caps: Option<Vec<String>>,
}

/// A resource value (`Io.Res.mmio(...)`) not yet given to a device.
#[derive(Clone, Debug)]
struct LRes(Res);

impl UserData for LRes {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        m.add_meta_method(MetaMethod::ToString, |_, this, ()| Ok(this.0.describe()));
    }
}

/// A platform device.
#[derive(Clone, Copy, Debug)]
struct LDev(DevId);

impl UserData for LDev {
    fn add_methods<M: UserDataMethods<Self>>(m: &mut M) {
        m.add_method("match", |lua, this, cids: Variadic<String>| {
            let found = with_state(lua, |s| Ok(s.cfg.platform.find(this.0, &cids)))?;
            lua.create_sequence_from(found.into_iter().map(LDev))
        });
        m.add_meta_method(MetaMethod::Index, |lua, this, key: String| {
            with_state(lua, |s| {
                let p = &s.cfg.platform;
                match p.child(this.0, &key) {
                    Some(c) => Ok(LDev(c)),
                    None => {
                        let have: Vec<&str> = p.devices[this.0]
                            .children
                            .iter()
                            .map(|&c| p.devices[c].name.as_str())
                            .collect();
                        Err(fail(
                            lua,
                            format!(
                                "{} has no device '{key}' (it has: {})",
                                p.path(this.0),
                                if have.is_empty() {
                                    "none".into()
                                } else {
                                    have.join(", ")
                                }
                            ),
                        ))
                    }
                }
            })
        });
        m.add_meta_method(MetaMethod::ToString, |lua, this, ()| {
            with_state(lua, |s| {
                Ok(format!("device {}", s.cfg.platform.path(this.0)))
            })
        });
    }
}

/// A virtual bus under construction (`Io.Vi.System_bus(fn)`).
#[derive(Clone, Copy, Debug)]
struct LBus(usize);

impl UserData for LBus {}

/// Platform devices wrapped for a virtual bus (`wrap(...)`).
#[derive(Clone, Debug)]
struct LWrap(Vec<DevId>);

impl UserData for LWrap {}

/// Where the running configuration is: the innermost frame's `file:line`.
fn here(lua: &Lua) -> Pos {
    for level in 0..32 {
        let found = lua.inspect_stack(level, |d| {
            // Only the configuration files (chunks named `@file`), not
            // C functions or mlua's own Lua helpers.
            let src = d.source();
            let file = src.source.as_deref().and_then(|s| s.strip_prefix('@'));
            match (file, d.current_line()) {
                (Some(f), Some(line)) => Some(format!("{f}:{line}")),
                _ => None,
            }
        });
        match found {
            Some(Some(p)) => return Pos(p),
            Some(None) => continue,
            None => break,
        }
    }
    Pos::default()
}

/// A configuration error at the running Lua code's position, as a Lua
/// error.
fn fail(lua: &Lua, message: String) -> mlua::Error {
    mlua::Error::external(ConfigError::new(&here(lua), message))
}

fn with_state<R>(lua: &Lua, f: impl FnOnce(&mut State) -> mlua::Result<R>) -> mlua::Result<R> {
    let mut s = lua
        .app_data_mut::<State>()
        .ok_or_else(|| mlua::Error::runtime("io: configuration state missing"))?;
    f(&mut s)
}

/// A Lua value as an unsigned integer, or a clear error naming `what`.
fn uint(lua: &Lua, v: &Value, what: &str) -> mlua::Result<u64> {
    match v {
        Value::Integer(i) if *i >= 0 => Ok(*i as u64),
        // Hex literals above i64::MAX wrap in Lua; take them as written.
        Value::Integer(i) => Ok(*i as u64),
        Value::Number(n) if n.fract() == 0.0 && *n >= 0.0 && *n < 18446744073709551616.0 => {
            Ok(*n as u64)
        }
        other => Err(fail(
            lua,
            format!(
                "{what} must be a non-negative integer, not {}",
                describe(other)
            ),
        )),
    }
}

/// An optional unsigned integer argument: 0 when absent or nil.
fn opt_uint(lua: &Lua, v: Option<Value>, what: &str) -> mlua::Result<u64> {
    match v {
        Some(v) if !v.is_nil() => uint(lua, &v, what),
        _ => Ok(0),
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::Nil => "nil".into(),
        Value::Integer(i) => format!("the number {i}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string '{}'", s.to_string_lossy()),
        Value::UserData(u) if u.is::<LDev>() => "a device".into(),
        Value::UserData(u) if u.is::<LRes>() => "a resource".into(),
        Value::UserData(u) if u.is::<LWrap>() => "wrapped devices".into(),
        Value::UserData(u) if u.is::<LBus>() => "a virtual bus".into(),
        other => format!("a {}", other.type_name()),
    }
}

/// `Io.Res.mmio(s, e[, flags])`.
fn res_mmio(lua: &Lua, (s, e, f): (Value, Value, Option<Value>)) -> mlua::Result<LRes> {
    let start = uint(lua, &s, "Io.Res.mmio: the start address")?;
    let end = uint(lua, &e, "Io.Res.mmio: the end address")?;
    let flags = opt_uint(lua, f, "Io.Res.mmio: the flags")?;
    Res::mmio(start, end, flags, here(lua))
        .map(LRes)
        .map_err(mlua::Error::external)
}

/// `Io.Res.irq(n | {s, e}[, type])`.
fn res_irq(lua: &Lua, (n, t): (Value, Option<Value>)) -> mlua::Result<LRes> {
    let (start, end) = match &n {
        Value::Table(t) => {
            let s: Value = t.raw_get(1)?;
            let e: Value = t.raw_get(2)?;
            (
                uint(lua, &s, "Io.Res.irq: the first line")?,
                uint(lua, &e, "Io.Res.irq: the last line")?,
            )
        }
        v => {
            let n = uint(lua, v, "Io.Res.irq: the line")?;
            (n, n)
        }
    };
    let mode = opt_uint(lua, t, "Io.Res.irq: the trigger type")?;
    Res::irq(start, end, mode, here(lua))
        .map(LRes)
        .map_err(mlua::Error::external)
}

/// A string list for `compatible = ...`.
fn strings(lua: &Lua, v: &Value, what: &str) -> mlua::Result<Vec<String>> {
    match v {
        Value::String(s) => Ok(vec![s.to_str()?.to_string()]),
        Value::Table(t) => {
            let mut out = Vec::new();
            for x in t.clone().sequence_values::<Value>() {
                match x? {
                    Value::String(s) => out.push(s.to_str()?.to_string()),
                    other => {
                        return Err(fail(
                            lua,
                            format!("{what}: expected strings, found {}", describe(&other)),
                        ));
                    }
                }
            }
            Ok(out)
        }
        other => Err(fail(
            lua,
            format!("{what} must be a list of strings, not {}", describe(other)),
        )),
    }
}

/// A property value as text.
fn prop_text(lua: &Lua, key: &str, v: &Value) -> mlua::Result<String> {
    match v {
        Value::String(s) => Ok(s.to_str()?.to_string()),
        Value::Integer(i) => Ok(i.to_string()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Boolean(b) => Ok(b.to_string()),
        other => Err(fail(
            lua,
            format!(
                "property '{key}' must be a string, number or boolean, not {}",
                describe(other)
            ),
        )),
    }
}

/// What an assignment in a device's function means.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// A bare global: decided by the value.
    Any,
    /// `Property.x`.
    Property,
    /// `Resource.x`.
    Resource,
    /// `Child.x`.
    Child,
}

fn assign(lua: &Lua, dev: DevId, slot: Slot, key: &str, v: Value) -> mlua::Result<()> {
    let pos = here(lua);
    match (&v, slot) {
        (Value::UserData(u), Slot::Any | Slot::Child) if u.is::<LDev>() => {
            let child = u.borrow::<LDev>()?.0;
            with_state(lua, |s| {
                s.cfg
                    .platform
                    .add_child(dev, key, child, &pos)
                    .map_err(mlua::Error::external)
            })
        }
        (Value::UserData(u), Slot::Any | Slot::Resource) if u.is::<LRes>() => {
            let r = u.borrow::<LRes>()?.0.clone();
            with_state(lua, |s| {
                let d = &mut s.cfg.platform.devices[dev];
                if d.resources.iter().any(|(id, _)| id == key) {
                    return Err(mlua::Error::external(ConfigError::new(
                        &pos,
                        format!("resource '{key}' is set twice"),
                    )));
                }
                d.resources.push((key.to_string(), r));
                Ok(())
            })
        }
        (_, Slot::Resource) => Err(fail(
            lua,
            format!(
                "Resource.{key} must be a resource (Io.Res.mmio or Io.Res.irq), not {}",
                describe(&v)
            ),
        )),
        (_, Slot::Child) => Err(fail(
            lua,
            format!(
                "Child.{key} must be a device (Io.Hw.Device), not {}",
                describe(&v)
            ),
        )),
        (_, Slot::Any) if key == "compatible" => {
            let list = strings(lua, &v, "compatible")?;
            with_state(lua, |s| {
                s.cfg.platform.devices[dev].compatible = list;
                Ok(())
            })
        }
        (Value::UserData(_) | Value::Table(_) | Value::Function(_) | Value::Nil, Slot::Any) => {
            Err(fail(
                lua,
                format!(
                    "'{key}' cannot be {} in a device (devices, resources, compatible and properties can)",
                    describe(&v)
                ),
            ))
        }
        _ => {
            let text = prop_text(lua, key, &v)?;
            with_state(lua, |s| {
                let d = &mut s.cfg.platform.devices[dev];
                if key == "hid" {
                    d.hid = Some(text);
                } else if let Some(p) = d.props.iter_mut().find(|(k, _)| k == key) {
                    p.1 = text;
                } else {
                    d.props.push((key.to_string(), text));
                }
                Ok(())
            })
        }
    }
}

/// A table that turns `T.key = v` into an assignment of `slot` to `dev`.
fn slot_table(lua: &Lua, dev: DevId, slot: Slot) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    let mt = lua.create_table()?;
    mt.raw_set(
        "__newindex",
        lua.create_function(move |lua, (_, k, v): (Table, String, Value)| {
            assign(lua, dev, slot, &k, v)
        })?,
    )?;
    t.set_metatable(Some(mt))?;
    Ok(t)
}

/// Calls `f` with globals that `index` reads and `newindex` writes (its
/// own `_ENV`, so the file's other functions keep theirs).
fn call_with_env(lua: &Lua, f: Function, index: Function, newindex: Function) -> mlua::Result<()> {
    let env = lua.create_table()?;
    let mt = lua.create_table()?;
    mt.raw_set("__index", index)?;
    mt.raw_set("__newindex", newindex)?;
    env.set_metatable(Some(mt))?;
    f.set_environment(env)?;
    f.call(())
}

/// Runs `f` with the globals of device `dev`.
fn run_in_device(lua: &Lua, dev: DevId, f: Function) -> mlua::Result<()> {
    let (prop, res, child) = (
        slot_table(lua, dev, Slot::Property)?,
        slot_table(lua, dev, Slot::Resource)?,
        slot_table(lua, dev, Slot::Child)?,
    );
    let index = lua.create_function(move |lua, (_, k): (Table, Value)| -> mlua::Result<Value> {
        if let Value::String(s) = &k {
            match s.as_bytes().as_ref() {
                b"Property" => return Ok(Value::Table(prop.clone())),
                b"Resource" => return Ok(Value::Table(res.clone())),
                b"Child" => return Ok(Value::Table(child.clone())),
                _ => {}
            }
        }
        lua.globals().raw_get(k)
    })?;
    let newindex = lua.create_function(move |lua, (_, k, v): (Table, String, Value)| {
        assign(lua, dev, Slot::Any, &k, v)
    })?;
    call_with_env(lua, f, index, newindex)
}

/// `v` as the userdata `T`, or the error "`what` must be `expected`".
fn expect_ud<T: UserData + Clone + 'static>(
    lua: &Lua,
    v: &Value,
    what: &str,
    expected: &str,
) -> mlua::Result<T> {
    match v {
        Value::UserData(u) if u.is::<T>() => Ok(u.borrow::<T>()?.clone()),
        other => Err(fail(
            lua,
            format!("{what} must be {expected}, not {}", describe(other)),
        )),
    }
}

fn device_arg(lua: &Lua, v: &Value, what: &str) -> mlua::Result<DevId> {
    expect_ud::<LDev>(lua, v, what, "a device").map(|d| d.0)
}

fn function_arg(lua: &Lua, v: Value, what: &str) -> mlua::Result<Function> {
    match v {
        Value::Function(f) => Ok(f),
        other => Err(fail(
            lua,
            format!("{what} must be a function, not {}", describe(&other)),
        )),
    }
}

/// `Io.Hw.Device(fn)`.
fn hw_device(lua: &Lua, f: Value) -> mlua::Result<LDev> {
    let f = function_arg(lua, f, "Io.Hw.Device's argument")?;
    let pos = here(lua);
    let dev = with_state(lua, |s| Ok(s.cfg.platform.create(pos)))?;
    run_in_device(lua, dev, f)?;
    Ok(LDev(dev))
}

/// `Io.hw_add_devices(fn | table)`.
fn hw_add_devices(lua: &Lua, v: Value) -> mlua::Result<()> {
    match v {
        Value::Table(t) => {
            let mut entries: Vec<(String, Value)> =
                t.pairs::<String, Value>().collect::<mlua::Result<_>>()?;
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            for (k, v) in entries {
                device_arg(lua, &v, &format!("Io.hw_add_devices: '{k}'"))?;
                assign(lua, SYSTEM_BUS, Slot::Child, &k, v)?;
            }
            Ok(())
        }
        v => {
            let f = function_arg(lua, v, "Io.hw_add_devices's argument")?;
            run_in_device(lua, SYSTEM_BUS, f)
        }
    }
}

/// `Io.Vi.System_bus(fn)`.
fn vi_system_bus(lua: &Lua, f: Value) -> mlua::Result<LBus> {
    let f = function_arg(lua, f, "Io.Vi.System_bus's argument")?;
    let pos = here(lua);
    let id = with_state(lua, |s| {
        s.drafts.push(BusDraft {
            wrapped: Vec::new(),
            pos,
        });
        Ok(s.drafts.len() - 1)
    })?;
    let index = lua.create_function(|lua, (_, k): (Table, Value)| -> mlua::Result<Value> {
        lua.globals().raw_get(k)
    })?;
    let newindex = lua.create_function(move |lua, (_, k, v): (Table, String, Value)| {
        let devs =
            expect_ud::<LWrap>(lua, &v, &format!("virtual bus entry '{k}'"), "wrap(device)")?.0;
        let pos = here(lua);
        with_state(lua, |s| {
            let d = &mut s.drafts[id];
            if d.wrapped
                .iter()
                .any(|(n, _, _)| *n == k || n.starts_with(&format!("{k}[")))
            {
                return Err(mlua::Error::external(ConfigError::new(
                    &pos,
                    format!("virtual bus entry '{k}' is set twice"),
                )));
            }
            let many = devs.len() > 1;
            for (i, hw) in devs.into_iter().enumerate() {
                let name = if many { format!("{k}[{i}]") } else { k.clone() };
                d.wrapped.push((name, hw, pos.clone()));
            }
            Ok(())
        })
    })?;
    call_with_env(lua, f, index, newindex)?;
    Ok(LBus(id))
}

/// `wrap(dev | {dev, ...})`.
fn wrap(lua: &Lua, v: Value) -> mlua::Result<LWrap> {
    match &v {
        Value::UserData(u) if u.is::<LDev>() => Ok(LWrap(vec![u.borrow::<LDev>()?.0])),
        Value::Table(t) => {
            let mut out = Vec::new();
            for x in t.clone().sequence_values::<Value>() {
                out.push(device_arg(lua, &x?, "wrap: every entry")?);
            }
            if out.is_empty() {
                return Err(fail(lua, "wrap: no devices (an empty match?)".into()));
            }
            Ok(LWrap(out))
        }
        other => Err(fail(
            lua,
            format!(
                "wrap: expected a device or a list of devices, not {}",
                describe(other)
            ),
        )),
    }
}

fn add_vbus(lua: &Lua, name: &str, bus: &Value) -> mlua::Result<()> {
    let id = expect_ud::<LBus>(
        lua,
        bus,
        &format!("virtual bus '{name}'"),
        "an Io.Vi.System_bus(...)",
    )?
    .0;
    let pos = here(lua);
    with_state(lua, |s| {
        let draft = s.drafts[id].clone();
        let caps = s.caps.clone();
        s.cfg
            .add_bus(name, &draft, caps.as_deref(), &pos)
            .map_err(mlua::Error::external)
    })
}

/// Installs the `Io` module and `wrap`.
fn install(lua: &Lua) -> mlua::Result<()> {
    let io = lua.create_table()?;
    let res = lua.create_table()?;
    res.raw_set("mmio", lua.create_function(res_mmio)?)?;
    res.raw_set("irq", lua.create_function(res_irq)?)?;
    io.raw_set("Res", res)?;
    let resource = lua.create_table()?;
    for (name, value) in IRQ_TYPES.iter().chain(MMIO_FLAGS) {
        resource.raw_set(*name, *value)?;
    }
    // A misspelt trigger type would silently be nil (no trigger type).
    let strict = lua.create_table()?;
    strict.raw_set(
        "__index",
        lua.create_function(|lua, (_, k): (Table, Value)| -> mlua::Result<()> {
            let names: Vec<&str> = IRQ_TYPES
                .iter()
                .chain(MMIO_FLAGS)
                .map(|(n, _)| *n)
                .collect();
            Err(fail(
                lua,
                format!(
                    "Io.Resource has no {} (it has: {})",
                    describe(&k),
                    names.join(", ")
                ),
            ))
        })?,
    )?;
    resource.set_metatable(Some(strict))?;
    io.raw_set("Resource", resource)?;
    let hw = lua.create_table()?;
    hw.raw_set("Device", lua.create_function(hw_device)?)?;
    io.raw_set("Hw", hw)?;
    let dt = lua.create_table()?;
    dt.raw_set(
        "add_children",
        lua.create_function(|lua, (parent, f): (Value, Value)| {
            let parent = device_arg(lua, &parent, "Io.Dt.add_children's parent")?;
            let f = function_arg(lua, f, "Io.Dt.add_children's second argument")?;
            run_in_device(lua, parent, f)?;
            Ok(LDev(parent))
        })?,
    )?;
    io.raw_set("Dt", dt)?;
    io.raw_set(
        "system_bus",
        lua.create_function(|_, ()| Ok(LDev(SYSTEM_BUS)))?,
    )?;
    io.raw_set("hw_add_devices", lua.create_function(hw_add_devices)?)?;
    let vi = lua.create_table()?;
    vi.raw_set("System_bus", lua.create_function(vi_system_bus)?)?;
    io.raw_set("Vi", vi)?;
    io.raw_set(
        "add_vbus",
        lua.create_function(|lua, (name, bus): (String, Value)| add_vbus(lua, &name, &bus))?,
    )?;
    io.raw_set(
        "add_vbusses",
        lua.create_function(|lua, t: Value| {
            let Value::Table(t) = t else {
                return Err(fail(
                    lua,
                    format!(
                        "Io.add_vbusses takes a table {{ name = bus, ... }}, not {}",
                        describe(&t)
                    ),
                ));
            };
            let mut entries: Vec<(String, Value)> =
                t.pairs::<String, Value>().collect::<mlua::Result<_>>()?;
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            for (k, v) in entries {
                add_vbus(lua, &k, &v)?;
            }
            Ok(())
        })?,
    )?;
    lua.globals().raw_set("Io", io)?;
    lua.globals().raw_set("wrap", lua.create_function(wrap)?)?;
    Ok(())
}

/// The message of a failed chunk: a [`ConfigError`] raised by the `Io`
/// module, or Lua's own `file:line: message`.
fn to_config_error(e: &mlua::Error) -> ConfigError {
    if let Some(c) = e.chain().find_map(|x| x.downcast_ref::<ConfigError>()) {
        return c.clone();
    }
    let mut innermost = e;
    while let mlua::Error::CallbackError { cause, .. } | mlua::Error::WithContext { cause, .. } =
        innermost
    {
        innermost = cause;
    }
    let text = match innermost {
        mlua::Error::RuntimeError(m) | mlua::Error::SyntaxError { message: m, .. } => m.clone(),
        other => other.to_string(),
    };
    // Without the traceback Lua adds to errors crossing callbacks.
    let text = text
        .split("\nstack traceback:")
        .next()
        .unwrap_or_default()
        .to_string();
    // Lua's messages start with `file:line: `; keep that as the position.
    match text.split_once(": ") {
        Some((at, rest))
            if at
                .rsplit_once(':')
                .is_some_and(|(_, l)| l.parse::<u32>().is_ok()) =>
        {
            ConfigError {
                pos: Pos(at.to_string()),
                message: rest.to_string(),
            }
        }
        _ => ConfigError {
            pos: Pos::default(),
            message: text,
        },
    }
}

/// The most memory the Lua state may take while the files load.
pub const LOAD_MEMORY_LIMIT: usize = 64 << 20;

/// Builds a [`Config`] from configuration files.
pub struct Loader {
    lua: Lua,
    limits: Limits,
}

impl Loader {
    /// A loader for a machine with `limits`; `caps` are the names of the
    /// capabilities io was given (buses must be named after one), `None`
    /// to accept any name.
    pub fn new(limits: Limits, caps: Option<Vec<String>>) -> Result<Loader, ConfigError> {
        let lua = Lua::new();
        // A file that allocates without end fails, named, with Lua's
        // "not enough memory" instead of taking all of io's memory.
        lua.set_memory_limit(LOAD_MEMORY_LIMIT)
            .map_err(|e| to_config_error(&e))?;
        lua.set_app_data(State {
            cfg: Config::default(),
            drafts: Vec::new(),
            caps,
        });
        install(&lua).map_err(|e| to_config_error(&e))?;
        Ok(Loader { lua, limits })
    }

    /// Runs the configuration file `name` with the text `text`.
    pub fn load(&self, name: &str, text: &str) -> Result<(), ConfigError> {
        self.lua
            .load(text)
            .set_name(format!("@{name}"))
            .exec()
            .map_err(|e| {
                let mut c = to_config_error(&e);
                // Errors without a line (running out of memory) name the file.
                if c.pos.0.is_empty() {
                    c.pos = Pos(name.to_string());
                }
                if matches!(e, mlua::Error::MemoryError(_)) {
                    c.message = format!(
                        "{} (the configuration may take {} MiB while it loads)",
                        c.message,
                        LOAD_MEMORY_LIMIT >> 20
                    );
                }
                c
            })
    }

    /// The configuration, with the platform's resources checked.
    pub fn finish(self) -> Result<Config, ConfigError> {
        let state = self
            .lua
            .remove_app_data::<State>()
            .ok_or_else(|| ConfigError::new(&Pos::default(), "configuration state missing"))?;
        state.cfg.platform.check(&self.limits)?;
        Ok(state.cfg)
    }
}

/// Loads `files` (`(name, text)`) in order into one configuration.
pub fn load_all(
    limits: Limits,
    caps: Option<Vec<String>>,
    files: &[(String, String)],
) -> Result<Config, ConfigError> {
    let l = Loader::new(limits, caps)?;
    for (name, text) in files {
        l.load(name, text)?;
    }
    l.finish()
}

/// A readable summary of a configuration (io prints it at start).
pub fn summary(cfg: &Config) -> String {
    let p = &cfg.platform;
    let mut out = String::new();
    for bus in &cfg.buses {
        let _ = writeln!(out, "vbus '{}': {} device(s)", bus.name, bus.devices.len());
        for v in &bus.devices {
            let d = &p.devices[v.hw];
            let res: Vec<String> = d
                .resources
                .iter()
                .map(|(id, r)| format!("{id} {}", r.describe()))
                .collect();
            let _ = writeln!(
                out,
                "  {} = {} [{}] {}",
                v.name,
                p.path(v.hw),
                d.compatible.join(", "),
                res.join(", ")
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(files: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let files: Vec<(String, String)> = files
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect();
        load_all(
            Limits::qemu_virt(),
            Some(vec!["a".into(), "b".into()]),
            &files,
        )
    }

    fn err(files: &[(&str, &str)]) -> String {
        load(files).unwrap_err().to_string()
    }

    #[test]
    fn devices_resources_and_properties() {
        let c = load(&[(
            "x.cfg",
            r#"
local Res = Io.Res
Io.hw_add_devices(function()
  uart = Io.Hw.Device(function()
    compatible = { "arm,pl011", "arm,primecell" }
    Property.hid = "PL011"
    Property.clock = 24000000
    Resource.regs = Res.mmio(0x9000000, 0x9000fff)
    Resource.irq = Res.irq({33, 33}, Io.Resource.Irq_type_raising_edge)
    Child.sub = Io.Hw.Device(function() hid = "SUB" end)
  end)
end)
Io.add_vbus("a", Io.Vi.System_bus(function()
  U = wrap(Io.system_bus():match("PL011"))
end))
"#,
        )])
        .unwrap();
        let p = &c.platform;
        let uart = p.child(SYSTEM_BUS, "uart").unwrap();
        let d = &p.devices[uart];
        assert_eq!(d.hid.as_deref(), Some("PL011"));
        assert_eq!(d.compatible, ["arm,pl011", "arm,primecell"]);
        assert_eq!(d.props, [("clock".to_string(), "24000000".to_string())]);
        assert_eq!(d.resources[0].0, "regs");
        assert_eq!(d.resources[1].1.flags, 1);
        assert_eq!(d.resources[1].1.pos, Pos("x.cfg:9".into()));
        assert_eq!(d.pos, Pos("x.cfg:4".into()));
        let sub = p.child(uart, "sub").unwrap();
        assert_eq!(p.devices[sub].hid.as_deref(), Some("SUB"));
        let bus = c.bus("a").unwrap();
        let names: Vec<_> = bus.devices.iter().map(|v| v.name.as_str()).collect();
        assert_eq!(names, ["U", "sub"]);
        assert!(summary(&c).contains("U = System_bus.uart [arm,pl011, arm,primecell]"));
    }

    #[test]
    fn a_file_that_allocates_without_end_fails_with_its_name() {
        let e = err(&[(
            "big.cfg",
            "local t = {}\nfor i = 1, 1e9 do t[i] = string.rep('x', 4096) .. i end",
        )]);
        assert!(
            e.starts_with("big.cfg: ") && e.contains("not enough memory"),
            "{e}"
        );
    }

    #[test]
    fn mmio_flags() {
        let c = load(&[(
            "f.cfg",
            "Io.hw_add_devices{ d = Io.Hw.Device(function()\n  Resource.r = Io.Res.mmio(0x9000000, 0x9000fff, Io.Resource.F_cached_mem | Io.Resource.F_prefetchable)\nend) }",
        )])
        .unwrap();
        assert_eq!(c.platform.devices[1].resources[0].1.flags, 0x300);
    }

    #[test]
    fn globals_stay_globals() {
        // Assignments in a device function go to the device; the file's
        // own globals are untouched and still readable inside.
        let c = load(&[(
            "g.cfg",
            r#"
base = 0x9000000
Io.hw_add_devices{ d = Io.Hw.Device(function()
  Resource.r = Io.Res.mmio(base, base + 0xfff)
end) }
assert(Resource == nil and r == nil)
"#,
        )])
        .unwrap();
        assert_eq!(c.platform.devices.len(), 2);
    }

    #[test]
    fn mistakes_name_file_and_line() {
        assert_eq!(
            err(&[("s.cfg", "local x = \n\n)")]),
            "s.cfg:3: unexpected symbol near ')'"
        );
        assert_eq!(
            err(&[("m.cfg", "\nlocal r = Io.Res.mmio(0x2000, 0x1000)")]),
            "m.cfg:2: Io.Res.mmio: end 0x1000 is below start 0x2000"
        );
        assert_eq!(
            err(&[("m.cfg", "Io.Res.mmio('a', 1)")]),
            "m.cfg:1: Io.Res.mmio: the start address must be a non-negative integer, not the string 'a'"
        );
        let e = err(&[(
            "r.cfg",
            "Io.hw_add_devices(function()\n  d = Io.Hw.Device(function()\n    Resource.x = 5\n  end)\nend)",
        )]);
        assert_eq!(
            e,
            "r.cfg:3: Resource.x must be a resource (Io.Res.mmio or Io.Res.irq), not the number 5"
        );
        let e = err(&[("n.cfg", "wrap(Io.system_bus().nothing)")]);
        assert_eq!(
            e,
            "n.cfg:1: System_bus has no device 'nothing' (it has: none)"
        );
        let e = err(&[(
            "w.cfg",
            "Io.add_vbus('a', Io.Vi.System_bus(function()\n X = 1\nend))",
        )]);
        assert_eq!(
            e,
            "w.cfg:2: virtual bus entry 'X' must be wrap(device), not the number 1"
        );
        let e = err(&[(
            "c.cfg",
            "Io.add_vbusses{ zz = Io.Vi.System_bus(function() end) }",
        )]);
        assert!(e.starts_with("c.cfg:1: no capability named 'zz'"), "{e}");
        let e = err(&[("u.cfg", "Io.Hw.Devise(function() end)")]);
        assert!(e.starts_with("u.cfg:1: attempt to call a nil value"), "{e}");
        let e = err(&[("t.cfg", "Io.Res.irq(40, 99)")]);
        assert!(
            e.starts_with("t.cfg:1: Io.Res.irq: unknown trigger type"),
            "{e}"
        );
    }

    #[test]
    fn platform_checks_run_at_the_end() {
        let e = err(&[(
            "o.cfg",
            "Io.hw_add_devices(function()\n a = Io.Hw.Device(function() Resource.m = Io.Res.mmio(0x40000000, 0x40000fff) end)\nend)",
        )]);
        assert!(
            e.starts_with("o.cfg:2: System_bus.a.m (MMIO 0x40000000-0x40000fff) lies in RAM"),
            "{e}"
        );
        let e = err(&[(
            "i.cfg",
            "Io.hw_add_devices(function()\n a = Io.Hw.Device(function() Resource.i = Io.Res.irq(5) end)\nend)",
        )]);
        assert!(e.contains("lies outside the platform"), "{e}");
    }
}

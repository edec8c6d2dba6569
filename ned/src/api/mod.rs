//! The `L4` Lua module: L4Re's names and behaviour over a [`Backend`].
//!
//! [`install`] puts the module into a Lua state (`require("L4")` and the
//! global `L4`), replaces Lua's file searcher by one that loads modules
//! through the backend from `package.path` (`rom/?.lua`), and makes
//! `dofile`/`loadfile` read through the backend too.
//!
//! | part                    | where                         |
//! |-------------------------|-------------------------------|
//! | constants (`L4.Proto`, `L4.Rights`, `L4.Mem_alloc_flags`, `L4.Ldr_flags`, `L4.Dbg`), `L4.Env`, `L4.cast`, `L4.Info`, `L4.sleep`, `L4.msleep`, `L4.server_loop` | this file |
//! | capability objects (`:m()`, `:svr()`, `:create()`, `:query()`, `:register()`) | [`caps`] |
//! | `L4.Loader`, `L4.default_loader` (`start`, `startv`, `new_channel`, ...) | [`loader`] |
//! | start options                | [`crate::options`] |
//! | task objects (`:wait()`, `:kill()`, ...) | [`task`] |
//! | `L4.Cpu_set`            | [`cpuset`] |
//! | `require` and `dofile` on `rom/` | [`rom`] |
//! | raising errors, reading arguments | [`raise`] |

pub mod caps;
pub mod cpuset;
pub mod loader;
pub mod raise;
pub mod rom;
pub mod task;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use mlua::{Lua, MultiValue, Table, Value};

use crate::backend::Backend;
use crate::proto;
use raise::{ApiResult, Args, Raise, function};

/// The backend, shared by every function of the module.
pub type Shared = Rc<RefCell<dyn Backend>>;

/// Registry key of the `L4` table.
const L4_KEY: &str = "ned.L4";

/// The backend of `lua` (set by [`install`]).
pub fn backend(lua: &Lua) -> ApiResult<Shared> {
    lua.app_data_ref::<Shared>()
        .map(|b| b.clone())
        .ok_or_else(|| Raise::msg("ned: the L4 module is not installed in this Lua state"))
}

/// The `L4` table (set by [`install`]).
pub fn l4_table(lua: &Lua) -> mlua::Result<Table> {
    lua.named_registry_value(L4_KEY)
}

/// Installs the `L4` module, the `rom/` module loader and the
/// backend-reading `dofile`/`loadfile` into `lua`. Returns the module.
///
/// The module's fields ([`FIELDS`]) are built when a script first reads
/// them (`pairs(L4)` builds them all first): most scripts use a few, and
/// each costs new code to run at ned's start (on QEMU, code to translate).
pub fn install(lua: &Lua, backend: Shared) -> mlua::Result<Table> {
    lua.set_app_data(backend);
    raise::install(lua)?;
    caps::install(lua)?;
    task::install(lua)?;

    let l4 = lua.create_table()?;
    lua.set_named_registry_value(L4_KEY, l4.clone())?;
    let meta = lua.create_table()?;
    meta.set(
        "__index",
        function(lua, |lua, a: MultiValue| {
            let a = Args::new("L4.__index", a);
            Ok(field(lua, &a.table(0)?, &a.get(1))?)
        })?,
    )?;
    meta.set(
        "__pairs",
        function(lua, |lua, a: MultiValue| {
            let l4 = Args::new("L4.__pairs", a).table(0)?;
            for (name, _) in FIELDS {
                l4.get::<Value>(*name)?;
            }
            let next: Value = lua.globals().raw_get("next")?;
            Ok((next, l4, Value::Nil))
        })?,
    )?;
    l4.set_metatable(Some(meta))?;

    let loaded: Table = lua.globals().get::<Table>("package")?.get("loaded")?;
    loaded.set("L4", l4.clone())?;
    lua.globals().set("L4", l4.clone())?;
    rom::install(lua)?;
    Ok(l4)
}

/// Builds a field of the `L4` table (`l4`) from the `L4` table.
type Build = fn(&Lua, &Table) -> mlua::Result<Value>;

/// The fields of the `L4` table and how each is built.
pub const FIELDS: &[(&str, Build)] = &[
    ("Proto", |lua, _| {
        let t = lua.create_table()?;
        for (name, number, _) in proto::PROTOS {
            t.set(*name, *number)?;
        }
        Ok(Value::Table(t))
    }),
    ("Rights", |lua, _| constants(lua, proto::RIGHTS)),
    ("Mem_alloc_flags", |lua, _| {
        constants(lua, proto::MEM_ALLOC_FLAGS)
    }),
    ("Ldr_flags", |lua, _| constants(lua, proto::LDR_FLAGS)),
    ("Dbg", |lua, _| constants(lua, proto::DBG)),
    ("Env", |lua, _| {
        let backend = backend(lua).map_err(|e| mlua::Error::runtime(e.to_string()))?;
        env_table(lua, &backend).map(Value::Table)
    }),
    ("cast", |lua, _| function(lua, cast).map(Value::Function)),
    ("Info", |lua, _| info_table(lua).map(Value::Table)),
    ("sleep", |lua, _| {
        function(lua, |lua, a: MultiValue| {
            let a = Args::new("sleep", a);
            sleep(lua, &a, a.number(0)?)
        })
        .map(Value::Function)
    }),
    ("msleep", |lua, _| {
        function(lua, |lua, a: MultiValue| {
            let a = Args::new("msleep", a);
            sleep(lua, &a, a.number(0)? / 1000.0)
        })
        .map(Value::Function)
    }),
    ("server_loop", |lua, _| {
        function(lua, |_, _: MultiValue| -> ApiResult<()> {
            Err(Raise::msg(
                "L4.server_loop is not available yet: ned serves no Lua objects",
            ))
        })
        .map(Value::Function)
    }),
    ("Cpu_set", |lua, _| {
        cpuset::install(lua)?;
        cpuset::class(lua).map(Value::Table)
    }),
    ("Loader", |lua, _| loader::class(lua).map(Value::Table)),
    ("default_loader", |lua, l4| {
        loader::default_loader(lua, l4).map(Value::Table)
    }),
];

/// `L4[key]` when the table does not hold it yet: the field built and
/// kept, `nil` for a name that is no field.
fn field(lua: &Lua, l4: &Table, key: &Value) -> mlua::Result<Value> {
    let Value::String(name) = key else {
        return Ok(Value::Nil);
    };
    let Some((_, build)) = FIELDS.iter().find(|(n, _)| name.as_bytes() == n.as_bytes()) else {
        return Ok(Value::Nil);
    };
    let value = build(lua, l4)?;
    l4.raw_set(key, &value)?;
    Ok(value)
}

/// A table of the constants `table`.
fn constants(lua: &Lua, table: &[(&str, i64)]) -> mlua::Result<Value> {
    let t = lua.create_table()?;
    for (k, v) in table {
        t.set(*k, *v)?;
    }
    Ok(Value::Table(t))
}

/// `L4.Env`: ned's capabilities, and `user_factory` = `mem_alloc`.
fn env_table(lua: &Lua, backend: &Shared) -> mlua::Result<Table> {
    let env = lua.create_table()?;
    for (name, cap) in backend.borrow_mut().env_caps() {
        env.set(name, caps::new(lua, cap)?)?;
    }
    if let Value::UserData(ud) = env.get::<Value>("mem_alloc")? {
        env.set("user_factory", ud)?;
    }
    Ok(env)
}

/// `L4.Info`: `arch()`, `platform()`, `mword_bits()`, `Kip.str()`.
fn info_table(lua: &Lua) -> mlua::Result<Table> {
    let info = lua.create_table()?;
    info.set("arch", lua.create_function(|_, ()| Ok("arm64"))?)?;
    info.set("platform", lua.create_function(|_, ()| Ok("virt"))?)?;
    info.set("mword_bits", lua.create_function(|_, ()| Ok(64))?)?;
    let kip = lua.create_table()?;
    kip.set(
        "str",
        function(lua, |lua, _: MultiValue| {
            Ok(backend(lua)?.borrow_mut().kernel_info())
        })?,
    )?;
    info.set("Kip", kip)?;
    Ok(info)
}

/// `L4.cast(proto_or_name, cap)`: the capability seen as another
/// protocol; `nil` for an unknown protocol.
fn cast(lua: &Lua, a: MultiValue) -> ApiResult<Value> {
    let a = Args::new("cast", a);
    let cap = a.cap(1)?;
    let to = match a.get(0) {
        Value::String(s) => proto::by_name(&s.to_string_lossy()),
        v => raise::to_int(&v).filter(|p| proto::name(*p).is_some()),
    };
    match to {
        Some(p) => Ok(Value::UserData(caps::new(lua, cap.cast(p))?)),
        None => Ok(Value::Nil),
    }
}

fn sleep(lua: &Lua, a: &Args, seconds: f64) -> ApiResult<()> {
    if !(0.0..=1e9).contains(&seconds) {
        return Err(a.bad(0, format!("cannot sleep for {seconds} s")));
    }
    backend(lua)?
        .borrow_mut()
        .sleep(Duration::from_secs_f64(seconds));
    Ok(())
}

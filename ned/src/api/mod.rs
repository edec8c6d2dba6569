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
use raise::{ApiResult, Args, Raise, function, set_function};

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
pub fn install(lua: &Lua, backend: Shared) -> mlua::Result<Table> {
    lua.set_app_data(backend.clone());
    raise::install(lua)?;
    caps::install(lua)?;
    task::install(lua)?;
    cpuset::install(lua)?;

    let l4 = lua.create_table()?;
    lua.set_named_registry_value(L4_KEY, l4.clone())?;

    let protos = lua.create_table()?;
    for (name, number, _) in proto::PROTOS {
        protos.set(*name, *number)?;
    }
    l4.set("Proto", protos)?;
    for (name, table) in [
        ("Rights", proto::RIGHTS),
        ("Mem_alloc_flags", proto::MEM_ALLOC_FLAGS),
        ("Ldr_flags", proto::LDR_FLAGS),
        ("Dbg", proto::DBG),
    ] {
        let t = lua.create_table()?;
        for (k, v) in table {
            t.set(*k, *v)?;
        }
        l4.set(name, t)?;
    }

    l4.set("Env", env_table(lua, &backend)?)?;
    l4.set("cast", function(lua, cast)?)?;
    l4.set("Info", info_table(lua)?)?;
    set_function(lua, &l4, "sleep", |lua, a| sleep(lua, &a, a.number(0)?))?;
    set_function(lua, &l4, "msleep", |lua, a| {
        sleep(lua, &a, a.number(0)? / 1000.0)
    })?;
    l4.set(
        "server_loop",
        function(lua, |_, _: MultiValue| -> ApiResult<()> {
            Err(Raise::msg(
                "L4.server_loop is not available yet: ned serves no Lua objects",
            ))
        })?,
    )?;
    l4.set("Cpu_set", cpuset::class(lua)?)?;
    loader::install(lua, &l4)?;

    let loaded: Table = lua.globals().get::<Table>("package")?.get("loaded")?;
    loaded.set("L4", l4.clone())?;
    lua.globals().set("L4", l4.clone())?;
    rom::install(lua)?;
    Ok(l4)
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

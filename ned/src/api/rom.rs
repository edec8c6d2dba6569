//! `require`, `loadfile` and `dofile` through the backend.
//!
//! Lua's own file searcher and C loaders are replaced by one searcher that
//! tries the templates of `package.path` (default `rom/?.lua`, as the seeds
//! set it) with [`Backend::read_rom`](crate::backend::Backend::read_rom),
//! so `require "vmm"` loads `rom/vmm.lua` on the target and from the test's
//! files on the host. Chunks are named `@rom/x.lua`, so errors in them name
//! the file and line.

use std::ffi::c_int;

use mlua::chunk::ChunkMode;
use mlua::ffi::{self, lua_State};
use mlua::{Function, Lua, MultiValue, Table, Value};

use super::backend;
use super::raise::{ApiResult, Args, Raise, function, raise_top};

/// The default `package.path`.
pub const DEFAULT_PATH: &str = "rom/?.lua";

/// Loads the file `path` through the backend as a chunk named `@path`.
pub fn load(
    lua: &Lua,
    path: &str,
    mode: ChunkMode,
    env: Option<Table>,
) -> Result<Function, String> {
    let bytes = backend(lua)
        .map_err(|_| "no backend".to_string())?
        .borrow_mut()
        .read_rom(path)
        .map_err(|e| format!("cannot open {path}: {e}"))?;
    let mut chunk = lua.load(bytes).set_name(format!("@{path}")).set_mode(mode);
    if let Some(env) = env {
        chunk = chunk.set_environment(env);
    }
    chunk
        .into_function()
        .map_err(|e| crate::ned::error_text(&e))
}

/// Installs the searcher, `loadfile` and `dofile`.
pub fn install(lua: &Lua) -> mlua::Result<()> {
    let package: Table = lua.globals().get("package")?;
    package.set("path", DEFAULT_PATH)?;
    package.set("cpath", "")?;
    let searchers: Table = package.get("searchers")?;
    searchers.raw_set(2, function(lua, search)?)?;
    searchers.raw_set(3, Value::Nil)?;
    searchers.raw_set(4, Value::Nil)?;

    let loadfile = function(lua, loadfile)?;
    // SAFETY: `dofile` is a C function that keeps Lua's calling
    // conventions; the closure gets `loadfile` as its one upvalue, which
    // is what `dofile` reads.
    let dofile: Function = unsafe {
        lua.exec_raw(loadfile.clone(), |state| {
            ffi::lua_pushcclosure(state, dofile, 1);
        })
    }?;
    lua.globals().set("loadfile", loadfile)?;
    lua.globals().set("dofile", dofile)
}

/// `dofile(path)` (upvalue 1: `loadfile`): the file's chunk called, its
/// results returned and its errors passed on unchanged; a file that does
/// not load raises `loadfile`'s message at the caller's position. In C
/// rather than Lua so that ned's start compiles no Lua.
unsafe extern "C-unwind" fn dofile(state: *mut lua_State) -> c_int {
    // SAFETY: Lua calls this C function of the closure made by `install`
    // with its upvalue; it uses at most three stack slots (Lua grants a C
    // function LUA_MINSTACK) and owns nothing to drop when a call it
    // makes raises (longjmp).
    unsafe {
        ffi::lua_settop(state, 1);
        ffi::lua_pushvalue(state, ffi::lua_upvalueindex(1));
        ffi::lua_insert(state, 1);
        ffi::lua_call(state, 1, 2);
        if ffi::lua_toboolean(state, 1) == 0 {
            ffi::lua_settop(state, 2);
            raise_top(state)
        }
        ffi::lua_settop(state, 1);
        ffi::lua_call(state, 0, ffi::LUA_MULTRET);
        ffi::lua_gettop(state)
    }
}

/// The searcher: `(loader, path)` or the list of files tried.
fn search(lua: &Lua, a: MultiValue) -> ApiResult<MultiValue> {
    let a = Args::new("require", a);
    let name = a.string(0)?;
    let path: String = lua
        .globals()
        .get::<Table>("package")?
        .get::<Option<String>>("path")?
        .unwrap_or_default();
    let file = name.replace('.', "/");
    let mut tried = String::new();
    for template in path.split(';').filter(|t| !t.is_empty()) {
        let candidate = template.replace('?', &file);
        let found = backend(lua)?.borrow_mut().read_rom(&candidate);
        match found {
            Ok(bytes) => {
                let f = lua
                    .load(bytes)
                    .set_name(format!("@{candidate}"))
                    .into_function()
                    .map_err(|e| {
                        Raise::msg(format!(
                            "error loading module '{name}' from file '{candidate}':\n\t{}",
                            crate::ned::error_text(&e)
                        ))
                    })?;
                return Ok(MultiValue::from_iter([
                    Value::Function(f),
                    Value::String(lua.create_string(&candidate)?),
                ]));
            }
            Err(_) => tried.push_str(&format!("\n\tno file '{candidate}'")),
        }
    }
    Ok(MultiValue::from_iter([Value::String(
        lua.create_string(&tried)?,
    )]))
}

/// `loadfile(path[, mode[, env]])`: the chunk, or `nil` and a message.
fn loadfile(lua: &Lua, a: MultiValue) -> ApiResult<MultiValue> {
    let a = Args::new("loadfile", a);
    let path = match a.get(0) {
        Value::Nil => return Err(a.bad(0, "ned reads no standard input: a file name is required")),
        _ => a.string(0)?,
    };
    let mode = match a.get(1) {
        Value::Nil => ChunkMode::Text,
        _ => match a.string(1)?.as_str() {
            "t" | "bt" => ChunkMode::Text,
            "b" => ChunkMode::Binary,
            m => return Err(a.bad(1, format!("invalid mode '{m}'"))),
        },
    };
    let env = match a.get(2) {
        Value::Nil => None,
        _ => Some(a.table(2)?),
    };
    Ok(match load(lua, &path, mode, env) {
        Ok(f) => MultiValue::from_iter([Value::Function(f)]),
        Err(msg) => MultiValue::from_iter([Value::Nil, Value::String(lua.create_string(&msg)?)]),
    })
}

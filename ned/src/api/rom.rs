//! `require`, `loadfile` and `dofile` through the backend.
//!
//! Lua's own file searcher and C loaders are replaced by one searcher that
//! tries the templates of `package.path` (default `rom/?.lua`, as the seeds
//! set it) with [`Backend::read_rom`](crate::backend::Backend::read_rom),
//! so `require "vmm"` loads `rom/vmm.lua` on the target and from the test's
//! files on the host. Chunks are named `@rom/x.lua`, so errors in them name
//! the file and line.

use mlua::chunk::ChunkMode;
use mlua::{Function, Lua, MultiValue, Table, Value};

use super::backend;
use super::raise::{ApiResult, Args, Raise, function};

/// The default `package.path`.
pub const DEFAULT_PATH: &str = "rom/?.lua";

/// `dofile` in Lua, so errors of the file pass through unchanged.
const DOFILE: &str = r#"
local loadfile, error = ...
return function(path)
  local f, err = loadfile(path)
  if not f then
    error(err, 2)
  end
  return f()
end
"#;

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
    let dofile: Function = lua
        .load(DOFILE)
        .set_name("=[ned]")
        .call((loadfile.clone(), lua.globals().get::<Function>("error")?))?;
    lua.globals().set("loadfile", loadfile)?;
    lua.globals().set("dofile", dofile)
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

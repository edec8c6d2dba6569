//! Running scripts: [`Ned`] owns the Lua state with the `L4` module and
//! runs `-e` statements and script files, turning every failure into a
//! [`ScriptError`] with the file, the line and a message, never a panic.

use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;

use mlua::chunk::ChunkMode;
use mlua::{Function, Lua, LuaOptions, MultiValue, StdLib, Table, Value};

use crate::api::{self, Shared, raise};
use crate::backend::Backend;

/// Registry key of the original `xpcall` (scripts may replace the global).
const XPCALL_KEY: &str = "ned.xpcall";
/// Registry key of the message handler.
const HANDLER_KEY: &str = "ned.msgh";

/// Most callers a [`ScriptError`] lists.
const MAX_TRACEBACK: usize = 10;

/// A failed script or statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptError {
    /// `file:line: message` (the file and line where it went wrong).
    pub message: String,
    /// The callers of that place in the scripts, innermost first
    /// (`rom/uvmm-2vm.ned:12`).
    pub traceback: Vec<String>,
}

impl ScriptError {
    fn new(message: impl Into<String>) -> ScriptError {
        ScriptError {
            message: message.into(),
            traceback: Vec::new(),
        }
    }
}

impl fmt::Display for ScriptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        for t in &self.traceback {
            write!(f, "\n  called from {t}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ScriptError {}

/// The text of an mlua error: the innermost cause's message, without the
/// decorations mlua adds (`runtime error: `, tracebacks of callbacks).
pub fn error_text(e: &mlua::Error) -> String {
    match e {
        mlua::Error::CallbackError { cause, .. } => error_text(cause),
        mlua::Error::WithContext { cause, .. } => error_text(cause),
        mlua::Error::RuntimeError(m) | mlua::Error::MemoryError(m) => m.clone(),
        mlua::Error::SyntaxError { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// Where the scripts are now: their Lua frames `file:line`, innermost
/// first (for [`crate::fake::FakeBackend::with_locator`]).
pub fn script_frames(lua: &Lua) -> Vec<String> {
    lua_frames(lua, 0)
        .into_iter()
        .map(|(place, _)| place)
        .collect()
}

/// The Lua frames on the stack from `level` on: `(where, function name)`.
fn lua_frames(lua: &Lua, level: usize) -> Vec<(String, Option<String>)> {
    let mut frames = Vec::new();
    for l in level..level + 200 {
        let Some(frame) = lua.inspect_stack(l, |d| {
            let src = d.source();
            let line = d.current_line();
            match (src.what, line) {
                ("C", _) | (_, None) => None,
                (_, Some(line)) => {
                    let file = src.short_src.as_deref().unwrap_or("?").to_string();
                    let name = d.names().name.map(|n| n.to_string());
                    Some((format!("{file}:{line}"), name))
                }
            }
        }) else {
            break;
        };
        frames.extend(frame);
    }
    frames
}

/// Whether `msg` already starts with a position (`file:12: `).
fn has_position(msg: &str) -> bool {
    msg.split_once(": ").is_some_and(|(head, _)| {
        head.rsplit_once(':').is_some_and(|(file, line)| {
            !file.is_empty() && !line.is_empty() && line.bytes().all(|b| b.is_ascii_digit())
        })
    })
}

/// The message handler: where the error happened and what it says, as
/// `{message, frame, frame, ...}`. It must never fail itself.
fn message_handler(lua: &Lua, err: Value) -> mlua::Result<Table> {
    let frames = lua_frames(lua, 1);
    let here = frames.first().map(|f| f.0.clone());
    let text = match &err {
        Value::String(s) => s.to_string_lossy(),
        Value::Table(t) => match (t.raw_get::<Value>(1), t.raw_get::<Value>(2)) {
            (Ok(Value::String(m)), Ok(code)) => match raise::to_int(&code) {
                Some(c) => format!("{} (error {c})", m.to_string_lossy()),
                None => m.to_string_lossy(),
            },
            _ => "(error object is a table value)".to_string(),
        },
        Value::Error(e) => error_text(e),
        Value::Nil => "(error object is a nil value)".to_string(),
        v => format!("(error object is a {} value)", v.type_name()),
    };
    let message = match here {
        Some(h) if !has_position(&text) => format!("{h}: {text}"),
        _ => text,
    };
    let out = lua.create_table()?;
    out.raw_push(message)?;
    for (place, name) in frames.iter().skip(1).take(MAX_TRACEBACK) {
        let entry = match name {
            Some(n) => format!("{place} (in {n})"),
            None => place.clone(),
        };
        out.raw_push(entry)?;
    }
    Ok(out)
}

/// The standard libraries opened with the Lua state (the base library
/// always is): what scripts use at once, `require` and strings.
fn eager_libs() -> StdLib {
    StdLib::PACKAGE | StdLib::STRING | StdLib::TABLE
}

/// The other standard libraries: opened when a script first reads their
/// global or `require`s them (each costs new code to run at ned's start,
/// and on QEMU new code to translate, which most scripts never use).
const LAZY_LIBS: [(&str, mlua::lua_CFunction); 5] = [
    ("coroutine", mlua::ffi::luaopen_coroutine),
    ("io", mlua::ffi::luaopen_io),
    ("math", mlua::ffi::luaopen_math),
    ("os", mlua::ffi::luaopen_os),
    ("utf8", mlua::ffi::luaopen_utf8),
];

/// Makes [`LAZY_LIBS`] open on first use: Lua's own openers in
/// `package.preload` for `require`, and a metatable on the globals whose
/// `__index` `require`s them when a script reads their global (`__pairs`
/// opens them all first). Rust functions, not Lua: compiling Lua would
/// run parts of the compiler that a simple script does not need.
fn open_lazily(lua: &Lua) -> mlua::Result<()> {
    fn open(globals: &Table, name: &str) -> mlua::Result<Value> {
        let module: Value = globals.get::<Function>("require")?.call(name)?;
        globals.raw_set(name, &module)?;
        Ok(module)
    }
    let globals = lua.globals();
    let preload: Table = globals.get::<Table>("package")?.get("preload")?;
    for (name, opener) in LAZY_LIBS {
        // SAFETY: `opener` is one of Lua's library openers (`luaopen_*`),
        // a C function of the Lua state's own version that keeps Lua's
        // calling conventions.
        preload.set(name, unsafe { lua.create_c_function(opener) }?)?;
    }
    let meta = lua.create_table()?;
    meta.set(
        "__index",
        api::raise::function(lua, |lua, a: MultiValue| {
            let globals = lua.globals();
            match a.get(1) {
                Some(Value::String(key)) => {
                    let key = key.to_string_lossy();
                    match LAZY_LIBS.iter().find(|(n, _)| *n == key) {
                        Some((name, _)) => Ok(open(&globals, name)?),
                        None => Ok(Value::Nil),
                    }
                }
                _ => Ok(Value::Nil),
            }
        })?,
    )?;
    meta.set(
        "__pairs",
        api::raise::function(lua, |lua, _: MultiValue| {
            let globals = lua.globals();
            for (name, _) in LAZY_LIBS {
                if globals.raw_get::<Value>(name)?.is_nil() {
                    open(&globals, name)?;
                }
            }
            let next: Value = globals.raw_get("next")?;
            Ok((next, globals, Value::Nil))
        })?,
    )?;
    globals.set_metatable(Some(meta))
}

/// ned: a Lua state with the `L4` module over a backend.
pub struct Ned {
    lua: Lua,
    backend: Shared,
}

impl Ned {
    /// A Lua state with the standard libraries and the `L4` module.
    pub fn new<B: Backend + 'static>(backend: Rc<RefCell<B>>) -> Result<Ned, ScriptError> {
        let backend: Shared = backend;
        let failed = |e: mlua::Error| {
            ScriptError::new(format!("ned: setting up Lua failed: {}", error_text(&e)))
        };
        let lua = Lua::new_with(eager_libs(), LuaOptions::default()).map_err(failed)?;
        let setup = || -> mlua::Result<()> {
            api::install(&lua, backend.clone())?;
            open_lazily(&lua)?;
            lua.set_named_registry_value(XPCALL_KEY, lua.globals().get::<Function>("xpcall")?)?;
            lua.set_named_registry_value(
                HANDLER_KEY,
                lua.create_function(|lua, err: Value| message_handler(lua, err))?,
            )
        };
        setup().map_err(failed)?;
        Ok(Ned { lua, backend })
    }

    /// The Lua state.
    pub fn lua(&self) -> &Lua {
        &self.lua
    }

    /// Writes a line of ned's output.
    pub fn log(&self, line: &str) {
        self.backend.borrow_mut().log(line);
    }

    /// Calls `f` with `args` under the message handler.
    fn protected_call(&self, f: Function, args: MultiValue) -> Result<MultiValue, ScriptError> {
        let call = || -> mlua::Result<MultiValue> {
            let xpcall: Function = self.lua.named_registry_value(XPCALL_KEY)?;
            let handler: Function = self.lua.named_registry_value(HANDLER_KEY)?;
            let mut all = MultiValue::from_iter([Value::Function(f), Value::Function(handler)]);
            all.extend(args);
            xpcall.call(all)
        };
        let mut r = call().map_err(|e| ScriptError::new(error_text(&e)))?;
        match r.pop_front() {
            Some(Value::Boolean(true)) => Ok(r),
            _ => Err(match r.pop_front() {
                Some(Value::Table(t)) => {
                    let mut lines = t.sequence_values::<String>().filter_map(Result::ok);
                    ScriptError {
                        message: lines.next().unwrap_or_else(|| "unknown error".into()),
                        traceback: lines.collect(),
                    }
                }
                Some(v) => ScriptError::new(
                    v.to_string()
                        .unwrap_or_else(|_| "unknown error".to_string()),
                ),
                None => ScriptError::new("unknown error"),
            }),
        }
    }

    /// Runs a statement (`-e STMT`), named `=(command line)`.
    pub fn exec(&self, stmt: &str) -> Result<(), ScriptError> {
        let f = self
            .lua
            .load(stmt)
            .set_name("=(command line)")
            .into_function()
            .map_err(|e| ScriptError::new(error_text(&e)))?;
        self.protected_call(f, MultiValue::new()).map(|_| ())
    }

    /// Runs the script `path` (read through the backend) with `args` as
    /// its `...` and in the global `arg` (`arg[0]` is the script). Returns
    /// the script's first result if it is an integer (its exit code for
    /// `--exit`).
    pub fn run_file(&self, path: &str, args: &[String]) -> Result<Option<i64>, ScriptError> {
        let set_arg = || -> mlua::Result<()> {
            let arg = self.lua.create_table()?;
            arg.raw_set(0, path)?;
            for (i, a) in args.iter().enumerate() {
                arg.raw_set(i + 1, a.as_str())?;
            }
            self.lua.globals().set("arg", arg)
        };
        set_arg().map_err(|e| ScriptError::new(error_text(&e)))?;
        let f = api::rom::load(&self.lua, path, ChunkMode::Text, None).map_err(ScriptError::new)?;
        let args = args
            .iter()
            .map(|a| self.lua.create_string(a).map(Value::String))
            .collect::<mlua::Result<MultiValue>>()
            .map_err(|e| ScriptError::new(error_text(&e)))?;
        let r = self.protected_call(f, args)?;
        Ok(r.front().and_then(raise::to_int))
    }

    /// Reaps tasks as they end and runs their exit handlers, until no task
    /// is left to wait for. A failing handler is reported and does not stop
    /// the loop.
    pub fn serve(&self) {
        loop {
            let next = self.backend.borrow_mut().wait_any();
            let Some((id, code)) = next else {
                return;
            };
            let handler = match api::task::take_exit_handler(&self.lua, id) {
                Ok(Some(h)) => h,
                Ok(None) => continue,
                Err(e) => {
                    self.log(&format!(
                        "Ned: exit handler of task {}: {}",
                        id.0,
                        error_text(&e)
                    ));
                    continue;
                }
            };
            let args = MultiValue::from_iter([code.map_or(Value::Nil, Value::Integer)]);
            if let Err(e) = self.protected_call(handler, args) {
                self.report(&e);
            }
        }
    }

    /// Writes a script error to ned's log.
    pub fn report(&self, e: &ScriptError) {
        self.log(&format!("Ned: error: {}", e.message));
        for t in &e.traceback {
            self.log(&format!("Ned:   called from {t}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_recognised() {
        assert!(has_position("rom/x.ned:12: boom"));
        assert!(has_position("[string \"x\"]:1: boom"));
        assert!(!has_position("cannot start rom/x: no such file"));
        assert!(!has_position("boom"));
        assert!(!has_position("a:b: c"));
    }

    #[test]
    fn mlua_errors_lose_their_decoration() {
        let lua = Lua::new();
        let f = lua
            .create_function(|_, ()| -> mlua::Result<()> { Err(mlua::Error::runtime("boom")) })
            .unwrap();
        lua.globals().set("f", f).unwrap();
        let e = lua.load("f()").exec().unwrap_err();
        assert!(matches!(e, mlua::Error::CallbackError { .. }), "{e:?}");
        assert_eq!(error_text(&e), "boom");
    }
}

//! How the `L4` module's Rust functions raise Lua errors, and how they read
//! their arguments.
//!
//! A Rust callback of mlua can only fail with an `mlua::Error`, which Lua
//! code sees as an opaque userdata. ned's scripts must instead see what
//! L4Re's ned raises: a string `"file:line: message"` naming the line of
//! the script that made the call, or for a failed factory `create` the
//! table `{msg, code}`. So every function of the module is a Rust function
//! that *returns* its failure behind a unique marker value, wrapped in a
//! small C function ([`raising`]) that turns the marker into what Lua's
//! `error(value, 2)` does: a string gets the calling script's position.
//! The wrapper is C rather than Lua so that ned's start compiles no Lua
//! (the parser is code that a simple script hardly needs: on QEMU, code
//! to translate before the first line).

use std::ffi::c_int;

use mlua::ffi::{self, lua_State};
use mlua::{Function, IntoLua, IntoLuaMulti, Lua, MultiValue, Table, UserDataFields, Value};

use crate::backend::BackendError;
use crate::cap::Cap;

/// Registry key of the failure marker.
const FAIL_KEY: &str = "ned.fail";
/// A Lua error to raise.
#[derive(Clone, Debug, PartialEq)]
pub enum Raise {
    /// A message; Lua prefixes the calling script's `file:line: `.
    Msg(String),
    /// A failure of an L4 operation, raised as L4Re's `{msg, code}` table
    /// (also with the fields `msg` and `code`).
    Failure {
        /// What failed.
        msg: String,
        /// The negative L4 error code.
        code: i64,
    },
}

impl Raise {
    /// A message error.
    pub fn msg(m: impl Into<String>) -> Raise {
        Raise::Msg(m.into())
    }

    /// `{msg, code}` for a failed backend operation.
    pub fn failure(e: &BackendError) -> Raise {
        Raise::Failure {
            msg: e.message.clone(),
            code: e.code_value(),
        }
    }

    /// The Lua value to raise.
    fn into_value(self, lua: &Lua) -> mlua::Result<Value> {
        match self {
            Raise::Msg(m) => m.into_lua(lua),
            Raise::Failure { msg, code } => {
                let t = lua.create_table()?;
                t.raw_set(1, msg.as_str())?;
                t.raw_set(2, code)?;
                t.raw_set("msg", msg)?;
                t.raw_set("code", code)?;
                Ok(Value::Table(t))
            }
        }
    }
}

impl std::fmt::Display for Raise {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Raise::Msg(m) => f.write_str(m),
            Raise::Failure { msg, code } => write!(f, "{msg} (error {code})"),
        }
    }
}

impl From<mlua::Error> for Raise {
    fn from(e: mlua::Error) -> Raise {
        Raise::Msg(crate::ned::error_text(&e))
    }
}

impl From<BackendError> for Raise {
    fn from(e: BackendError) -> Raise {
        Raise::Msg(e.message)
    }
}

/// Result of an `L4` module function.
pub type ApiResult<T> = Result<T, Raise>;

/// Sets up the marker (once per Lua state).
pub fn install(lua: &Lua) -> mlua::Result<()> {
    lua.set_named_registry_value(FAIL_KEY, lua.create_table()?)
}

/// The wrapper of every raw function (upvalue 1: the marker, 2: the raw
/// function): calls the raw function with its arguments and returns its
/// results, unless the first is the marker; then it raises the second as
/// `error(value, 2)` would from a Lua wrapper: a string prefixed with the
/// position of the wrapper's caller, anything else as it is.
unsafe extern "C-unwind" fn raising(state: *mut lua_State) -> c_int {
    // SAFETY: Lua calls this C function of a closure made by
    // `lua_function` with its two upvalues; it uses the stack as Lua's C
    // API allows (at least LUA_MINSTACK free slots; the call leaves its
    // results). Errors of the raw function pass through as Lua errors
    // (longjmp): this frame owns nothing to drop.
    unsafe {
        let nargs = ffi::lua_gettop(state);
        ffi::lua_pushvalue(state, ffi::lua_upvalueindex(2));
        ffi::lua_insert(state, 1);
        ffi::lua_call(state, nargs, ffi::LUA_MULTRET);
        let nresults = ffi::lua_gettop(state);
        if nresults == 0 || ffi::lua_rawequal(state, 1, ffi::lua_upvalueindex(1)) == 0 {
            return nresults;
        }
        ffi::lua_settop(state, 2);
        raise_top(state)
    }
}

/// Raises the value on the top of the stack of the running C function as
/// Lua's `error(value, 2)` would from a Lua function in its place: a
/// string prefixed with the position of the caller (`file:line: `),
/// anything else as it is.
///
/// # Safety
///
/// `state` is the state of a running C function with a value on its stack
/// and a free slot; the caller's frame owns nothing to drop (this does not
/// return: Lua unwinds with longjmp).
pub(crate) unsafe fn raise_top(state: *mut lua_State) -> ! {
    // SAFETY: as the caller promises.
    unsafe {
        if ffi::lua_type(state, -1) == ffi::LUA_TSTRING {
            ffi::luaL_where(state, 1);
            ffi::lua_insert(state, -2);
            ffi::lua_concat(state, 2);
        }
        ffi::lua_error(state)
    }
}

/// A Lua function running `f`; its failures are raised as [`Raise`]
/// describes, at the level of its caller.
pub fn function<R, F>(lua: &Lua, f: F) -> mlua::Result<Function>
where
    R: IntoLuaMulti,
    F: Fn(&Lua, MultiValue) -> ApiResult<R> + 'static,
{
    lua_function(
        lua,
        Box::new(move |lua, args| match f(lua, args) {
            Ok(r) => r.into_lua_multi(lua).map(Ok),
            Err(e) => Ok(Err(e)),
        }),
    )
}

/// What [`function`] makes of its `f`: one type for every function of the
/// module.
type Body = Box<dyn Fn(&Lua, MultiValue) -> mlua::Result<ApiResult<MultiValue>>>;

/// [`function`]'s work, once for all bodies rather than once for each:
/// the `L4` module has dozens of functions, and a copy of mlua's function
/// machinery for each made ned larger and its start slower (every copy is
/// new code to run, and on QEMU new code to translate).
#[inline(never)]
fn lua_function(lua: &Lua, body: Body) -> mlua::Result<Function> {
    let fail: Table = lua.named_registry_value(FAIL_KEY)?;
    let marker = fail.clone();
    let raw = lua.create_function(move |lua, args: MultiValue| match body(lua, args)? {
        Ok(r) => Ok(r),
        Err(e) => Ok(MultiValue::from_iter([
            Value::Table(marker.clone()),
            e.into_value(lua)?,
        ])),
    })?;
    // SAFETY: `raising` is a C function that keeps Lua's calling
    // conventions; the closure gets the two values pushed as its upvalues,
    // which is what `raising` reads.
    unsafe {
        lua.exec_raw((fail, raw), |state| {
            ffi::lua_pushcclosure(state, raising, 2);
        })
    }
}

/// Sets `t[name]` to a method (`obj:name(...)`) running `f` ([`function`]),
/// which gets its arguments as [`Args::method`] named `name`.
pub fn set_method<R, F>(lua: &Lua, t: &Table, name: &'static str, f: F) -> mlua::Result<()>
where
    R: IntoLuaMulti,
    F: Fn(&Lua, Args) -> ApiResult<R> + 'static,
{
    set(lua, t, name, Args::method, name, f)
}

/// Sets `t[key]` to a Lua function running `f` ([`function`]), which gets
/// its arguments as `args(name, ..)`: [`Args::new`] or [`Args::method`],
/// `name` being what errors call it (an operator for a metamethod).
pub fn set<R, F>(
    lua: &Lua,
    t: &Table,
    key: &str,
    args: fn(&'static str, MultiValue) -> Args,
    name: &'static str,
    f: F,
) -> mlua::Result<()>
where
    R: IntoLuaMulti,
    F: Fn(&Lua, Args) -> ApiResult<R> + 'static,
{
    t.set(
        key,
        function(lua, move |lua, a: MultiValue| f(lua, args(name, a)))?,
    )
}

/// The arguments of a call, read with error messages that name the
/// function and the argument (`bad argument #2 to 'create' (...)`).
pub struct Args {
    func: &'static str,
    values: Vec<Value>,
    /// 1 for methods: `self` is argument 0 in messages.
    first: usize,
}

impl Args {
    /// The arguments of function `func`.
    pub fn new(func: &'static str, values: MultiValue) -> Args {
        Args {
            func,
            values: values.into_vec(),
            first: 1,
        }
    }

    /// The arguments of method `func` (`self` first).
    pub fn method(func: &'static str, values: MultiValue) -> Args {
        Args {
            first: 0,
            ..Args::new(func, values)
        }
    }

    /// The same arguments without the first (a method called on a class
    /// table, `Cpu_set:new(x)`).
    pub fn skip_self(mut self) -> Args {
        if !self.values.is_empty() {
            self.values.remove(0);
        }
        self
    }

    /// The function's name.
    pub fn func(&self) -> &'static str {
        self.func
    }

    /// How many arguments there are.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Argument `i` (from 0), `nil` if absent.
    pub fn get(&self, i: usize) -> Value {
        self.values.get(i).cloned().unwrap_or(Value::Nil)
    }

    /// The arguments from `i` on.
    pub fn rest(&self, i: usize) -> &[Value] {
        self.values.get(i..).unwrap_or(&[])
    }

    /// An error about argument `i`.
    pub fn bad(&self, i: usize, what: impl std::fmt::Display) -> Raise {
        let n = i + self.first;
        if n == 0 {
            Raise::msg(format!("calling '{}' on bad self ({what})", self.func))
        } else {
            Raise::msg(format!("bad argument #{n} to '{}' ({what})", self.func))
        }
    }

    fn expected(&self, i: usize, what: &str) -> Raise {
        self.bad(
            i,
            format!("{what} expected, got {}", type_name(&self.get(i))),
        )
    }

    /// Argument `i` as a capability.
    pub fn cap(&self, i: usize) -> ApiResult<Cap> {
        to_cap(&self.get(i)).ok_or_else(|| self.expected(i, "capability"))
    }

    /// Argument `i` as an integer.
    pub fn int(&self, i: usize) -> ApiResult<i64> {
        to_int(&self.get(i)).ok_or_else(|| self.expected(i, "integer"))
    }

    /// Argument `i` as a number (seconds may be fractional).
    pub fn number(&self, i: usize) -> ApiResult<f64> {
        match self.get(i) {
            Value::Integer(v) => Ok(v as f64),
            Value::Number(v) => Ok(v),
            _ => Err(self.expected(i, "number")),
        }
    }

    /// Argument `i` as a string.
    pub fn string(&self, i: usize) -> ApiResult<String> {
        to_string(&self.get(i)).ok_or_else(|| self.expected(i, "string"))
    }

    /// Argument `i` as a table.
    pub fn table(&self, i: usize) -> ApiResult<Table> {
        match self.get(i) {
            Value::Table(t) => Ok(t),
            _ => Err(self.expected(i, "table")),
        }
    }

    /// Argument `i` as a table, an empty one if `nil`.
    pub fn opt_table(&self, lua: &Lua, i: usize) -> ApiResult<Table> {
        match self.get(i) {
            Value::Nil => Ok(lua.create_table()?),
            _ => self.table(i),
        }
    }

    /// Argument `i` as a function, `None` if `nil`.
    pub fn opt_function(&self, i: usize) -> ApiResult<Option<Function>> {
        match self.get(i) {
            Value::Nil => Ok(None),
            Value::Function(f) => Ok(Some(f)),
            _ => Err(self.expected(i, "function or nil")),
        }
    }
}

/// The fields of a userdata class named `name` (`__name`) whose methods
/// are the table in the registry under `methods_key` (`__index`).
pub fn class_fields<T, F: UserDataFields<T>>(
    fields: &mut F,
    methods_key: &'static str,
    name: &'static str,
) {
    fields.add_meta_field_with("__index", move |lua| {
        lua.named_registry_value::<Table>(methods_key)
    });
    fields.add_meta_field("__name", name);
}

/// The capability in `v`, if it holds one.
pub fn to_cap(v: &Value) -> Option<Cap> {
    match v {
        Value::UserData(ud) => ud.borrow::<Cap>().ok().map(|c| *c),
        _ => None,
    }
}

/// The integer in `v`: an integer, or a float without fraction.
pub fn to_int(v: &Value) -> Option<i64> {
    match *v {
        Value::Integer(i) => Some(i),
        Value::Number(f) if f.fract() == 0.0 && f >= -(2f64.powi(63)) && f < 2f64.powi(63) => {
            Some(f as i64)
        }
        _ => None,
    }
}

/// The string in `v` (numbers are not strings here).
pub fn to_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.to_string_lossy()),
        _ => None,
    }
}

/// The capability at `t[key]`, `None` for `nil`; anything else is an error
/// naming the field as `what` ("option 'mem'").
pub fn field_cap(
    t: &Table,
    key: &str,
    what: std::fmt::Arguments<'_>,
) -> Result<Option<Cap>, String> {
    match t.get::<Value>(key).map_err(|e| e.to_string())? {
        Value::Nil => Ok(None),
        v => to_cap(&v)
            .map(Some)
            .ok_or_else(|| format!("{what} must be a capability, not a {}", type_name(&v))),
    }
}

/// Lua's name of the type of `v`, `capability` for capabilities.
pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::UserData(ud) if ud.is::<Cap>() => "capability",
        Value::Integer(_) | Value::Number(_) => "number",
        other => other.type_name(),
    }
}

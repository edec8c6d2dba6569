//! Task objects: what `loader:start()` returns.
//!
//! | method             | what                                                        |
//! |--------------------|-------------------------------------------------------------|
//! | `state()`          | `"initializing"`, `"running"`, `"zombie"`, `nil` once reaped |
//! | `exit_code()`      | the exit code of a zombie, else `nil`                        |
//! | `wait()`           | blocks until the task ends, reaps it, returns the exit code  |
//! | `kill()`           | ends the task                                                |
//! | `exit_handler(fn)` | `fn(code)` runs when ned reaps the task (`nil` if killed)    |
//!
//! Exit handlers run from ned's serving loop after the script
//! ([`crate::Ned::serve`]), as in L4Re.

use mlua::{AnyUserData, Function, Lua, Table, UserData, UserDataFields, UserDataMethods, Value};

use super::backend;
use super::raise::{self, ApiResult, Args, Raise, set_method};
use crate::backend::{ExitCode, TaskId, TaskState};

/// Registry key of the methods table.
const METHODS_KEY: &str = "ned.task.methods";
/// Registry key of the exit handlers (task number -> function).
const HANDLERS_KEY: &str = "ned.task.exit_handlers";

/// A started task.
#[derive(Clone, Debug)]
pub struct Task {
    /// The backend's number of the task.
    pub id: TaskId,
    /// The program it runs.
    pub program: String,
}

impl UserData for Task {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        raise::class_fields(fields, METHODS_KEY, "L4::Task");
    }

    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_meta_method("__tostring", |_, t, ()| {
            Ok(format!("L4::Task[{} #{}]", t.program, t.id.0))
        });
    }
}

/// A new task object.
pub fn new(lua: &Lua, id: TaskId, program: &str) -> mlua::Result<AnyUserData> {
    lua.create_userdata(Task {
        id,
        program: program.to_string(),
    })
}

fn this(a: &Args) -> ApiResult<Task> {
    match a.get(0) {
        Value::UserData(ud) => ud
            .borrow::<Task>()
            .map(|t| t.clone())
            .map_err(|_| a.bad(0, "task expected")),
        _ => Err(a.bad(0, "task expected")),
    }
}

fn code_value(code: ExitCode) -> Value {
    code.map_or(Value::Nil, Value::Integer)
}

/// Sets up the methods and the handler table.
pub fn install(lua: &Lua) -> mlua::Result<()> {
    lua.set_named_registry_value(HANDLERS_KEY, lua.create_table()?)?;
    let m = lua.create_table()?;
    set_method(lua, &m, "state", |lua, a| {
        let t = this(&a)?;
        Ok(backend(lua)?.borrow_mut().task_state(t.id).name())
    })?;
    set_method(lua, &m, "exit_code", |lua, a| {
        let t = this(&a)?;
        Ok(match backend(lua)?.borrow_mut().task_state(t.id) {
            TaskState::Zombie(code) => code_value(code),
            _ => Value::Nil,
        })
    })?;
    set_method(lua, &m, "wait", |lua, a| {
        let t = this(&a)?;
        let r = backend(lua)?.borrow_mut().wait(t.id);
        let code = r.map_err(|e| Raise::msg(format!("cannot wait for {}: {e}", t.program)))?;
        Ok(code_value(code))
    })?;
    set_method(lua, &m, "kill", |lua, a| {
        let t = this(&a)?;
        let r = backend(lua)?.borrow_mut().kill(t.id);
        r.map_err(|e| Raise::msg(format!("cannot kill {}: {e}", t.program)))
    })?;
    set_method(lua, &m, "exit_handler", |lua, a| {
        let t = this(&a)?;
        let f = a.opt_function(1)?;
        let handlers: Table = lua.named_registry_value(HANDLERS_KEY)?;
        handlers.set(t.id.0, f)?;
        Ok(())
    })?;
    lua.set_named_registry_value(METHODS_KEY, m)
}

/// The exit handler of task `id`, removed from the table.
pub fn take_exit_handler(lua: &Lua, id: TaskId) -> mlua::Result<Option<Function>> {
    let handlers: Table = lua.named_registry_value(HANDLERS_KEY)?;
    let f: Option<Function> = handlers.get(id.0)?;
    handlers.set(id.0, Value::Nil)?;
    Ok(f)
}

/// Calls `handler` with `code`, as ned does when it reaps a task.
pub fn run_exit_handler(handler: &Function, code: ExitCode) -> mlua::Result<()> {
    handler.call::<()>(code_value(code))
}

//! Capability objects: a [`Cap`] as Lua userdata with L4Re's methods.
//!
//! | method                      | what                                                     |
//! |-----------------------------|----------------------------------------------------------|
//! | `is_valid()`                | whether it names an object                               |
//! | `m(r)`, `mode(r)`, `rights(r)` | a copy with rights `r` (letters `rwsdnc` or an integer; `r` added) |
//! | `svr()`                     | a copy with all rights of a server end                   |
//! | `create(proto, ...)`        | a new object from this factory; raises `{msg, code}`     |
//! | `query(name[, r])`, `q`     | a name-space look-up                                     |
//! | `register(key, v[, fab])`, `r` | a name-space entry: capability, function, table or `nil` |
//!
//! Every capability has every method, as the object behind it (a user
//! server behind an IPC gate, say) decides what it understands; a request
//! it does not understand fails there.

use mlua::{AnyUserData, Lua, MultiValue, UserData, UserDataFields, UserDataMethods, Value};

use super::raise::{self, ApiResult, Args, Raise, function, set_method};
use super::{backend, cpuset};
use crate::backend::{BackendError, FactoryArg};
use crate::cap::{self, Cap};

/// Registry key of the methods table (`__index` of capabilities).
const METHODS_KEY: &str = "ned.cap.methods";

impl UserData for Cap {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        raise::class_fields(fields, METHODS_KEY, "L4::Cap");
    }

    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_meta_method("__tostring", |_, c, ()| Ok(c.to_string()));
        methods.add_meta_function("__eq", |_, (a, b): (Value, Value)| {
            Ok(matches!(
                (raise::to_cap(&a), raise::to_cap(&b)),
                (Some(a), Some(b)) if a.obj == b.obj
            ))
        });
    }
}

/// A new capability object.
pub fn new(lua: &Lua, cap: Cap) -> mlua::Result<AnyUserData> {
    lua.create_userdata(cap)
}

/// Sets up the methods (before the first capability object exists).
pub fn install(lua: &Lua) -> mlua::Result<()> {
    let m = lua.create_table()?;
    set_method(lua, &m, "is_valid", |_, a| Ok(a.cap(0)?.is_valid()))?;
    for name in ["m", "mode", "rights"] {
        set_method(lua, &m, name, |lua, a| {
            let c = a.cap(0)?;
            let rights = rights_arg(&a, 1)?;
            Ok(new(lua, c.with_rights(rights))?)
        })?;
    }
    set_method(lua, &m, "svr", |lua, a| {
        let c = a.cap(0)?;
        Ok(new(
            lua,
            Cap {
                rights: cap::SVR_RIGHTS,
                ..c
            },
        )?)
    })?;
    m.set("create", function(lua, create)?)?;
    let query = function(lua, query)?;
    m.set("query", query.clone())?;
    m.set("q", query)?;
    let register = function(lua, register)?;
    m.set("register", register.clone())?;
    m.set("r", register)?;
    lua.set_named_registry_value(METHODS_KEY, m)
}

/// Rights given as letters or an integer (argument `i` of `a`).
pub fn rights_arg(a: &Args, i: usize) -> ApiResult<cap::CapRights> {
    let v = a.get(i);
    let r = match (&v, raise::to_int(&v)) {
        (Value::String(s), _) => cap::parse_rights(&s.to_string_lossy()),
        (_, Some(n)) => cap::rights_from_int(n),
        _ => {
            return Err(a.bad(
                i,
                format!(
                    "rights expected (letters like \"rw\" or an integer), got {}",
                    raise::type_name(&v)
                ),
            ));
        }
    };
    r.map_err(|e| a.bad(i, e))
}

/// Converts one argument of a `create`: an integer, string or `nil` as it
/// is, a CPU set as its mask words.
pub fn factory_arg(v: &Value, out: &mut Vec<FactoryArg>) -> Result<(), String> {
    match v {
        Value::Nil => out.push(FactoryArg::Nil),
        Value::String(s) => out.push(FactoryArg::Str(s.to_string_lossy())),
        Value::UserData(ud) if ud.is::<cpuset::LuaCpuSet>() => {
            let set = ud
                .borrow::<cpuset::LuaCpuSet>()
                .map_err(|e| e.to_string())?;
            out.extend(set.0.mask_words().into_iter().map(FactoryArg::Uint));
        }
        v => match raise::to_int(v) {
            Some(n) => out.push(FactoryArg::Int(n)),
            None => {
                return Err(format!(
                    "integer, string, CPU set or nil expected, got {}",
                    raise::type_name(v)
                ));
            }
        },
    }
    Ok(())
}

/// Converts the arguments of a `create` from argument `from` on.
pub fn factory_args(a: &Args, from: usize) -> ApiResult<Vec<FactoryArg>> {
    let mut out = Vec::new();
    for (k, v) in a.rest(from).iter().enumerate() {
        factory_arg(v, &mut out).map_err(|e| a.bad(from + k, e))?;
    }
    Ok(out)
}

/// Creates an object with `factory` and raises L4Re's `{msg, code}` on
/// failure.
pub fn create_object(lua: &Lua, factory: &Cap, proto: i64, args: &[FactoryArg]) -> ApiResult<Cap> {
    let r = backend(lua)?.borrow_mut().create(factory, proto, args);
    r.map(|c| Cap {
        proto: Some(proto),
        ..c
    })
    .map_err(|e| {
        let what = crate::proto::name(proto)
            .map_or_else(|| format!("object of protocol {proto}"), str::to_string);
        Raise::failure(&BackendError {
            message: format!("cannot create {what}: {}", e.message),
            ..e
        })
    })
}

/// `cap:create(proto, ...)`.
fn create(lua: &Lua, a: MultiValue) -> ApiResult<AnyUserData> {
    let a = Args::method("create", a);
    let factory = a.cap(0)?;
    let proto = a.int(1)?;
    let args = factory_args(&a, 2)?;
    Ok(new(lua, create_object(lua, &factory, proto, &args)?)?)
}

/// `ns:query(name[, rights])`.
fn query(lua: &Lua, a: MultiValue) -> ApiResult<AnyUserData> {
    let a = Args::method("query", a);
    let ns = a.cap(0)?;
    let name = a.string(1)?;
    let mut c = backend(lua)?
        .borrow_mut()
        .ns_query(&ns, &name)
        .map_err(|e| Raise::failure(&e))?;
    if !a.get(2).is_nil() {
        c = c.with_rights(rights_arg(&a, 2)?);
    }
    Ok(new(lua, c)?)
}

/// `ns:register(key, value[, fab])`: a capability, a function called with
/// `(ns, key)` for the value, a table for a new name space made by `fab`
/// (default: the default loader's `ns_fab`), or `nil` to remove `key`.
fn register(lua: &Lua, a: MultiValue) -> ApiResult<()> {
    let a = Args::method("register", a);
    let ns = a.cap(0)?;
    let key = a.string(1)?;
    let mut value = a.get(2);
    if let Value::Function(f) = &value {
        value = f.call((Value::UserData(new(lua, ns)?), key.as_str()))?;
    }
    let fab = match a.get(3) {
        Value::Nil => None,
        _ => Some(a.cap(3)?),
    };
    let cap = match &value {
        Value::Nil => None,
        Value::Table(t) => Some(super::loader::namespace_from_table(lua, t, fab)?),
        v => Some(raise::to_cap(v).ok_or_else(|| {
            a.bad(
                2,
                format!(
                    "capability, function, table or nil expected, got {}",
                    raise::type_name(v)
                ),
            )
        })?),
    };
    backend(lua)?
        .borrow_mut()
        .ns_register(&ns, &key, cap.as_ref())
        .map_err(|e| Raise::failure(&e))
}

//! `L4.Cpu_set`: [`CpuSet`] as Lua userdata.
//!
//! `L4.Cpu_set:new()` (empty), `:new(0x3)` (a bit mask), `:new{0, 2}` (CPU
//! numbers), `:new("0-3,6")` (ranges); `a | b` union, `a & b` intersection
//! (either side may also be a mask integer); methods `add(n)`,
//! `contains(n)`, `cpus()` (list), `mask()` (the mask as one integer, CPUs
//! 0 to 63), `count()`. A set is a valid factory argument: it becomes its
//! mask words (`create(L4.Proto.Scheduler, 10, 2, set)`).

use mlua::{AnyUserData, Lua, MultiValue, Table, UserData, UserDataFields, Value};

use super::raise::{self, ApiResult, Args, Raise, function, set, set_method};
use crate::cpuset::CpuSet;

/// Registry key of the metatable entries (`__index`, operators).
const META_KEY: &str = "ned.cpuset.meta";
/// The metatable entries taken from [`META_KEY`].
const META: [&str; 6] = ["__index", "__bor", "__band", "__tostring", "__eq", "__len"];

/// A CPU set as Lua sees it.
#[derive(Clone, Debug)]
pub struct LuaCpuSet(pub CpuSet);

impl UserData for LuaCpuSet {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        for name in META {
            fields.add_meta_field_with(name, move |lua| {
                lua.named_registry_value::<Table>(META_KEY)?
                    .get::<Value>(name)
            });
        }
        fields.add_meta_field("__name", "L4::Cpu_set");
    }
}

fn new(lua: &Lua, set: CpuSet) -> mlua::Result<AnyUserData> {
    lua.create_userdata(LuaCpuSet(set))
}

/// The set in `v`: a CPU set, or an integer mask.
fn operand(v: &Value) -> Option<CpuSet> {
    match v {
        Value::UserData(ud) => ud.borrow::<LuaCpuSet>().ok().map(|s| s.0.clone()),
        v => raise::to_int(v).map(|m| CpuSet::from_mask(m as u64)),
    }
}

fn this(a: &Args) -> ApiResult<CpuSet> {
    operand(&a.get(0))
        .filter(|_| matches!(a.get(0), Value::UserData(_)))
        .ok_or_else(|| a.bad(0, "CPU set expected"))
}

fn cpu_arg(a: &Args, i: usize) -> ApiResult<u32> {
    let n = a.int(i)?;
    u32::try_from(n).map_err(|_| a.bad(i, format!("CPU {n} out of range")))
}

/// A set from a constructor argument.
fn from_value(a: &Args, i: usize) -> ApiResult<CpuSet> {
    let v = a.get(i);
    let r = match &v {
        Value::Nil => Ok(CpuSet::new()),
        Value::String(s) => CpuSet::parse(&s.to_string_lossy()),
        Value::Table(t) => {
            let mut cpus = Vec::new();
            for c in t.clone().sequence_values::<Value>() {
                let c = c?;
                match raise::to_int(&c).and_then(|n| u32::try_from(n).ok()) {
                    Some(n) => cpus.push(n),
                    None => return Err(a.bad(i, "a list of CPU numbers expected")),
                }
            }
            CpuSet::from_cpus(cpus)
        }
        v => match raise::to_int(v) {
            Some(m) => Ok(CpuSet::from_mask(m as u64)),
            None => {
                return Err(a.bad(
                    i,
                    format!(
                        "mask, list of CPUs or range string expected, got {}",
                        raise::type_name(v)
                    ),
                ));
            }
        },
    };
    r.map_err(|e| a.bad(i, e))
}

/// Sets up the methods and operators.
pub fn install(lua: &Lua) -> mlua::Result<()> {
    let methods = lua.create_table()?;
    set_method(lua, &methods, "add", |lua, a| {
        let mut s = this(&a)?;
        s.insert(cpu_arg(&a, 1)?).map_err(|e| a.bad(1, e))?;
        if let Value::UserData(ud) = a.get(0) {
            ud.borrow_mut::<LuaCpuSet>()?.0 = s;
            return Ok(ud);
        }
        Ok(new(lua, s)?)
    })?;
    set_method(lua, &methods, "contains", |_, a| {
        Ok(this(&a)?.contains(cpu_arg(&a, 1)?))
    })?;
    set_method(lua, &methods, "cpus", |lua, a| {
        Ok(lua.create_sequence_from(this(&a)?.cpus())?)
    })?;
    set_method(lua, &methods, "mask", |_, a| {
        let words = this(&a)?.mask_words();
        if words.len() > 1 {
            return Err(a.bad(0, "the set has CPUs above 63; use it as a whole"));
        }
        Ok(words[0] as i64)
    })?;
    set_method(lua, &methods, "count", |_, a| Ok(this(&a)?.len()))?;

    let meta = lua.create_table()?;
    meta.set("__index", methods)?;
    set(lua, &meta, "__bor", Args::new, "|", |lua, a| {
        binary(lua, &a, CpuSet::union)
    })?;
    set(lua, &meta, "__band", Args::new, "&", |lua, a| {
        binary(lua, &a, CpuSet::intersection)
    })?;
    set(
        lua,
        &meta,
        "__tostring",
        Args::method,
        "tostring",
        |_, a| Ok(format!("L4.Cpu_set({})", this(&a)?)),
    )?;
    set(lua, &meta, "__eq", Args::new, "==", |_, a| {
        Ok(operand(&a.get(0)) == operand(&a.get(1)))
    })?;
    set(lua, &meta, "__len", Args::method, "#", |_, a| {
        Ok(this(&a)?.len())
    })?;
    lua.set_named_registry_value(META_KEY, meta)
}

fn binary(lua: &Lua, a: &Args, op: fn(&CpuSet, &CpuSet) -> CpuSet) -> ApiResult<AnyUserData> {
    let x = operand(&a.get(0)).ok_or_else(|| a.bad(0, "CPU set or mask expected"))?;
    let y = operand(&a.get(1)).ok_or_else(|| a.bad(1, "CPU set or mask expected"))?;
    Ok(new(lua, op(&x, &y))?)
}

/// The `L4.Cpu_set` class: `new` works as `Cpu_set:new(x)` and
/// `Cpu_set.new(x)`.
pub fn class(lua: &Lua) -> mlua::Result<Table> {
    let class = lua.create_table()?;
    let me = class.clone();
    class.set(
        "new",
        function(lua, move |lua, a: MultiValue| {
            let mut a = Args::new("Cpu_set.new", a);
            if matches!(a.get(0), Value::Table(t) if t == me) {
                a = a.skip_self();
            }
            let set = from_value(&a, 0)?;
            new(lua, set).map_err(Raise::from)
        })?,
    )?;
    Ok(class)
}

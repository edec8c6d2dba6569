//! io's configuration (`io.cfg`, `*.vbus`) as the plan needs it: the
//! platform devices with their MMIO ranges and interrupts, and which of
//! them each virtual bus hands on.
//!
//! TO BE REPLACED: this is a small evaluation of L4Re's `Io` Lua module of
//! our own (the subset the seeds' files use: `Io.Hw.Device`,
//! `Io.Res.mmio`/`irq`, `Io.Dt.add_children`, `Io.system_bus()`,
//! `Io.Vi.System_bus`, `wrap`, `Io.add_vbusses`/`add_vbus`). Once the io
//! crate (branch `io`) is in main, [`evaluate`] becomes a call of its
//! host library (`io::load_all`) and this file goes away; nothing else in
//! the plan reads io's files.

use mlua::{Lua, Table, Value};

/// A device of the platform (from `io.cfg`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HwDevice {
    /// Its path below the system bus (`rtc`, `soc.uart0`).
    pub path: String,
    /// `compatible` strings.
    pub compatible: Vec<String>,
    /// MMIO ranges, `[start, end)`.
    pub mmio: Vec<(u64, u64)>,
    /// Interrupt lines.
    pub irqs: Vec<u64>,
    /// Where it is described (`conf/io.cfg:7`).
    pub pos: String,
}

/// A virtual bus (from a `*.vbus` file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IoBus {
    /// Its name (the capability io serves it on).
    pub name: String,
    /// Where it is defined.
    pub pos: String,
    /// Its devices: the name on the bus, the platform device (index into
    /// [`IoConfig::devices`]) and where it was wrapped.
    pub devices: Vec<(String, usize, String)>,
}

/// What io's configuration files describe.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IoConfig {
    /// Platform devices.
    pub devices: Vec<HwDevice>,
    /// Virtual buses.
    pub buses: Vec<IoBus>,
}

/// The `Io` module: records devices and buses in `__io_devices` and
/// `__io_buses`.
const PRELUDE: &str = r#"
local devices, buses = {}, {}
__io_devices, __io_buses = devices, buses

-- `file:line` in the configuration files.
local function pos()
  return __io_pos()
end

-- Runs `f` with globals looked up in and assigned to `env`.
local function run_in(f, env)
  __io_run_in(f, env)
end

local Dev = {}
Dev.__index = function(d, k)
  for _, c in ipairs(rawget(d, "__children")) do
    if rawget(c, "__name") == k then return c end
  end
  return nil
end

local function new_device(p)
  local d = setmetatable({ __children = {}, __compatible = {}, __res = {},
                           __pos = p }, Dev)
  devices[#devices + 1] = d
  return d
end

local function is_device(v)
  return type(v) == "table" and getmetatable(v) == Dev
end

local function adopt(parent, name, child)
  rawset(child, "__name", name)
  rawset(child, "__parent", parent)
  local kids = rawget(parent, "__children")
  kids[#kids + 1] = child
end

-- The environment a device body runs in.
local function device_env(d)
  local res = setmetatable({}, { __newindex = function(_, k, v)
    local r = rawget(d, "__res"); r[#r + 1] = { k, v }
  end })
  local props = setmetatable({}, { __newindex = function() end })
  return setmetatable({}, {
    __index = function(_, k)
      if k == "Resource" then return res end
      if k == "Property" then return props end
      return _G[k]
    end,
    __newindex = function(_, k, v)
      if is_device(v) then adopt(d, k, v)
      elseif k == "compatible" then
        rawset(d, "__compatible", type(v) == "table" and v or { v })
      elseif k == "hid" then rawset(d, "__hid", v)
      end
    end,
  })
end

local system_bus = setmetatable({ __children = {}, __compatible = {}, __res = {},
                                  __pos = "platform", __name = "" }, Dev)

Io = { Hw = {}, Res = {}, Dt = {}, Vi = {}, Resource = setmetatable({}, {
  __index = function() return 0 end }) }

function Io.system_bus() return system_bus end

function Io.Hw.Device(body)
  local d = new_device(pos(3))
  if type(body) == "function" then
    run_in(body, device_env(d))
  elseif type(body) == "table" then
    local env = device_env(d)
    for k, v in pairs(body) do env[k] = v end
  end
  return d
end

function Io.Res.mmio(s, e) return { kind = "mmio", s = s, e = e } end
function Io.Res.irq(n) return { kind = "irq", s = n, e = n } end

function Io.Dt.add_children(parent, body)
  if not is_device(parent) then error("add_children: the parent is not a device", 2) end
  run_in(body, setmetatable({}, {
    __index = _G,
    __newindex = function(_, k, v)
      if is_device(v) then adopt(parent, k, v) else rawset(_G, k, v) end
    end,
  }))
end

function wrap(x)
  if is_device(x) then return { __wrapped = { x } } end
  if type(x) == "table" then
    for _, d in ipairs(x) do
      if not is_device(d) then error("wrap: not a device", 2) end
    end
    return { __wrapped = x }
  end
  error("wrap: no such device (nil)", 2)
end

function Io.Vi.System_bus(body)
  local bus = { __vbus = true, __devs = {}, __pos = pos(3) }
  if type(body) == "function" then
    run_in(body, setmetatable({}, {
      __index = _G,
      __newindex = function(_, k, v)
        if type(v) == "table" and v.__wrapped then
          for _, d in ipairs(v.__wrapped) do
            bus.__devs[#bus.__devs + 1] = { k, d, pos(2) }
          end
        end
      end,
    }))
  end
  return bus
end

function Io.add_vbus(name, bus)
  if type(bus) ~= "table" or not bus.__vbus then
    error("add_vbus: '" .. tostring(name) .. "' is not a virtual bus", 2)
  end
  buses[#buses + 1] = { name, bus }
end

function Io.add_vbusses(t)
  local names = {}
  for k in pairs(t) do names[#names + 1] = k end
  table.sort(names)
  for _, k in ipairs(names) do Io.add_vbus(k, t[k]) end
end
"#;

/// Runs io's configuration files `(name, text)` in order, as io does.
pub fn evaluate(files: &[(String, String)]) -> Result<IoConfig, String> {
    let lua = Lua::new();
    let text = |e: mlua::Error| ned::ned::error_text(&e);
    let setup = || -> mlua::Result<()> {
        let g = lua.globals();
        // Where the configuration files are: the innermost frame of theirs.
        g.set(
            "__io_pos",
            lua.create_function(|lua, ()| {
                for level in 1..100 {
                    let Some(found) = lua.inspect_stack(level, |d| {
                        let src = d.source();
                        let own = src.what == "C" || src.source.as_deref() == Some("=[io]");
                        (!own).then(|| {
                            format!(
                                "{}:{}",
                                src.short_src.as_deref().unwrap_or("?"),
                                d.current_line().unwrap_or(0)
                            )
                        })
                    }) else {
                        break;
                    };
                    if let Some(p) = found {
                        return Ok(p);
                    }
                }
                Ok("?".to_string())
            })?,
        )?;
        g.set(
            "__io_run_in",
            lua.create_function(|_, (f, env): (mlua::Function, Table)| {
                f.set_environment(env)?;
                f.call::<()>(())
            })?,
        )
    };
    setup().map_err(text)?;
    lua.load(PRELUDE).set_name("=[io]").exec().map_err(text)?;
    for (name, source) in files {
        lua.load(source.as_str())
            .set_name(format!("@{name}"))
            .exec()
            .map_err(text)?;
    }
    collect(&lua).map_err(text)
}

fn collect(lua: &Lua) -> mlua::Result<IoConfig> {
    let g = lua.globals();
    let devs: Table = g.get("__io_devices")?;
    let mut out = IoConfig::default();
    let mut tables = Vec::new();
    for d in devs.sequence_values::<Table>() {
        let d = d?;
        let mut path = Vec::new();
        let mut at = Some(d.clone());
        while let Some(t) = at {
            match t.raw_get::<Value>("__name")? {
                Value::String(s) if !s.to_str()?.is_empty() => path.push(s.to_str()?.to_string()),
                _ => {}
            }
            at = t.raw_get::<Option<Table>>("__parent")?;
        }
        path.reverse();
        let mut dev = HwDevice {
            path: if path.is_empty() {
                "(unattached)".into()
            } else {
                path.join(".")
            },
            compatible: d
                .raw_get::<Table>("__compatible")?
                .sequence_values::<String>()
                .collect::<mlua::Result<_>>()?,
            mmio: Vec::new(),
            irqs: Vec::new(),
            pos: d.raw_get("__pos")?,
        };
        for r in d.raw_get::<Table>("__res")?.sequence_values::<Table>() {
            let r: Table = r?.raw_get(2)?;
            let kind: String = r.get("kind")?;
            let (s, e): (u64, u64) = (r.get("s")?, r.get("e")?);
            match kind.as_str() {
                "mmio" => dev.mmio.push((s, e.saturating_add(1))),
                _ => dev.irqs.push(s),
            }
        }
        out.devices.push(dev);
        tables.push(d);
    }
    for b in g.get::<Table>("__io_buses")?.sequence_values::<Table>() {
        let b = b?;
        let name: String = b.raw_get(1)?;
        let bus: Table = b.raw_get(2)?;
        let mut devices = Vec::new();
        for e in bus.get::<Table>("__devs")?.sequence_values::<Table>() {
            let e = e?;
            let vname: String = e.raw_get(1)?;
            let hw: Table = e.raw_get(2)?;
            let p: String = e.raw_get(3)?;
            // A wrapped device brings its subtree.
            let mut stack = vec![hw];
            while let Some(t) = stack.pop() {
                if let Some(i) = tables.iter().position(|x| x == &t) {
                    devices.push((vname.clone(), i, p.clone()));
                }
                for c in t.raw_get::<Table>("__children")?.sequence_values::<Table>() {
                    stack.push(c?);
                }
            }
        }
        out.buses.push(IoBus {
            name,
            pos: bus.get("__pos")?,
            devices,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const IO_CFG: &str = r#"local Res = Io.Res
local Hw = Io.Hw

local add_children = Io.Dt.add_children

add_children(Io.system_bus(), function()
  rtc = Hw.Device(function()
    compatible = { "arm,pl031" };
    Resource.reg0 = Res.mmio(0x9010000, 0x9010fff);
    Resource.irq0 = Res.irq(32 + 2, Io.Resource.Irq_type_level_high);
  end)
end)
"#;

    const VBUS: &str = r#"Io.add_vbusses
{
  vm1_hw = Io.Vi.System_bus(function()
    PL031 = wrap(Io.system_bus().rtc);
  end);
}
"#;

    #[test]
    fn seed_files() {
        let c = evaluate(&[
            ("conf/io.cfg".into(), IO_CFG.into()),
            ("conf/vm1_hw.vbus".into(), VBUS.into()),
        ])
        .unwrap();
        assert_eq!(c.devices.len(), 1);
        let d = &c.devices[0];
        assert_eq!(d.path, "rtc");
        assert_eq!(d.compatible, ["arm,pl031"]);
        assert_eq!(d.mmio, [(0x901_0000, 0x901_1000)]);
        assert_eq!(d.irqs, [34]);
        assert_eq!(d.pos, "conf/io.cfg:7");
        assert_eq!(c.buses.len(), 1);
        assert_eq!(c.buses[0].name, "vm1_hw");
        assert_eq!(
            c.buses[0].devices,
            [("PL031".to_string(), 0, "conf/vm1_hw.vbus:4".to_string())]
        );
    }

    #[test]
    fn errors_name_the_file() {
        let e = evaluate(&[(
            "conf/x.vbus".into(),
            "Io.add_vbusses{ a = Io.Vi.System_bus(function() X = wrap(Io.system_bus().nope) end) }"
                .into(),
        )])
        .unwrap_err();
        assert!(
            e.contains("conf/x.vbus:1") && e.contains("no such device"),
            "{e}"
        );
    }
}

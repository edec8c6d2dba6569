-- vmm.lua: helpers for ned scripts that run virtual machines, with the
-- interface of L4Re's vmm.lua (our own code).
--
--   package.path = "rom/?.lua";
--   local L4  = require "L4";
--   local vmm = require "vmm";
--
--   vmm.loader.log_fab = L4.default_loader:new_channel();  -- served by cons
--   vmm.start_io({ vm_hw = 1 }, "rom/io.cfg");  -- busses[k] := client end
--   vmm.start_virtio_switch(ports);             -- ports[k]  := switch port
--   vmm.start_vm{ id = 1, mem = 128, net = ports.net0, vbus = busses.vm_hw,
--                 kernel = "rom/Image.gz", rd = "rom/ramdisk.cpio.gz",
--                 fdt = "rom/virt.dtb", bootargs = "console=ttyAMA0" };
--
-- Every function uses `vmm.loader` (L4.default_loader unless a script
-- replaces it) at the time it is called.

local L4 = require "L4";

local M = {};

-- The loader all helpers start programs with.
M.loader = L4.default_loader;

-- Guest RAM: physically contiguous, pinned, in super pages ...
local ram_flags = L4.Mem_alloc_flags.Continuous
                  | L4.Mem_alloc_flags.Pinned
                  | L4.Mem_alloc_flags.Super_pages;
-- ... aligned to 2 MiB (log2), the super-page size of arm64.
local ram_align = 21;

-- Keys of a table in a fixed order, so programs and channels are always
-- created in the same order.
local function sorted_keys(t)
  local keys = {};
  for k in pairs(t) do
    keys[#keys + 1] = k;
  end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end);
  return keys;
end

-- A new table with the entries of all arguments (later ones win).
function M.table_override(...)
  local r = {};
  for i = 1, select("#", ...) do
    local t = select(i, ...);
    if t then
      for k, v in pairs(t) do
        r[k] = v;
      end
    end
  end
  return r;
end

-- A scheduler proxy for base priority `prio` (default 1) with ten
-- priorities above it, on the CPUs of `cpus` (a mask or L4.Cpu_set; all
-- CPUs if nil). Further mask words may follow.
function M.new_sched(prio, cpus, ...)
  prio = prio or 1;
  return L4.Env.user_factory:create(L4.Proto.Scheduler, prio + 10, prio,
                                    cpus, ...);
end

-- Gives the start options `opts` a scheduler if `prio` or `cpus` is set.
function M.set_sched(opts, prio, cpus, ...)
  if prio or cpus then
    opts.scheduler = M.new_sched(prio, cpus, ...);
  end
  return opts;
end

-- Starts io with the vbus configurations of `busses`: for every name `k`
-- a channel is created, io gets its server end as capability `k` and
-- `rom/<k>.vbus` on its command line, and `busses[k]` becomes the client
-- end (a VM's `vbus`). `cmdline` is io's own arguments (e.g. "rom/io.cfg").
-- `opts` may hold `caps`, `log`, `prio`, `cpus`, `scheduler`.
function M.start_io(busses, cmdline, opts)
  local l = M.loader;
  if type(cmdline) == "table" and opts == nil then
    cmdline, opts = nil, cmdline;
  end
  opts = opts or {};

  local caps = {
    sigma0  = L4.cast(L4.Proto.Factory, L4.Env.sigma0):create(L4.Proto.Sigma0);
    icu     = L4.Env.icu;
    iommu   = L4.Env.iommu;
    dma_mgr = L4.Env.dma_mgr;
  };

  local files = "";
  for _, k in ipairs(sorted_keys(busses)) do
    local c = l:new_channel();
    busses[k] = c;          -- for the client (uvmm) as "vbus"
    caps[k] = c:svr();      -- for io, under the bus name
    files = files .. " rom/" .. k .. ".vbus";
  end

  local start_opts = {
    caps = M.table_override(caps, opts.caps),
    log = opts.log or { "io", "red" },
    scheduler = opts.scheduler,
  };
  M.set_sched(start_opts, opts.prio, opts.cpus);
  local args = cmdline and (" " .. cmdline) or "";
  return l:start(start_opts, "rom/io" .. args .. files);
end

-- Starts the virtio network switch and makes every entry of `ports` a port
-- of it (a factory-created capability for a VM's `net`). `switch_type`
-- "switch" starts rom/l4vio_switch -v -p <number of ports>, anything else
-- rom/l4vio_net_p2p (here both are the same program). A
-- port entry that is a table holds further create arguments: the port is
-- made with `create(0, "ds-max=4", "name=<key>", <the table's values>)`,
-- e.g. `{ "vlan=access=5" }`; otherwise with `create(0, 4)`. Returns the
-- switch's task and (not in L4Re's vmm.lua) its channel, on which
-- `create(1)` gives the statistics capability.
function M.start_virtio_switch(ports, prio, cpus, switch_type, ext_caps)
  local l = M.loader;
  local switch = l:new_channel();

  local opts = {
    log = { "switch", "Blue" },
    caps = M.table_override({ svr = switch:svr() }, ext_caps),
  };
  M.set_sched(opts, prio, cpus);

  local prog = "rom/l4vio_net_p2p";
  if switch_type == "switch" then
    -- As L4Re's vmm.lua: verbose, and as many ports as the table has.
    local count = #sorted_keys(ports);
    prog = "rom/l4vio_switch -v -p " .. count;
  end
  local svr = l:start(opts, prog);

  local fab = L4.cast(L4.Proto.Factory, switch);
  for _, k in ipairs(sorted_keys(ports)) do
    local v = ports[k];
    if type(v) == "table" then
      ports[k] = fab:create(0, "ds-max=4", "name=" .. tostring(k), table.unpack(v));
    else
      ports[k] = fab:create(0, 4);
    end
  end
  return svr, switch;
end

-- Starts a VM (rom/uvmm). Options:
--   id        number of the VM: log "vm<id>" with key <id> (ids below 10)
--   mem       RAM in MiB (default 16), or a dataspace capability
--   mem_align alignment of new RAM, log2 (default 21)
--   ram_base  guest-physical RAM base (-b)
--   kernel, rd, fdt, bootargs
--             -k, -r, -d (a string or a list), -c
--   cpus, prio, scheduler
--             a scheduler proxy (see new_sched), or the scheduler itself
--   vbus, net capabilities for uvmm's `vbus` and `net`
--   mon       uvmm's monitor console: a capability, or (unless false, as
--             in L4Re's vmm.lua) a log "mon<id>" of log_fab
--   jdb       true: hand on L4.Env.jdb
--   ext_args  further uvmm arguments (a list)
--   ext_caps  further capabilities (a table)
--   log       the VM's log (a capability or {tag, colour, ...})
-- Returns the task.
function M.start_vm(options)
  local l = M.loader;
  local nr = options.id;

  local mem = options.mem or 16;
  if type(mem) == "number" then
    mem = L4.Env.user_factory:create(L4.Proto.Dataspace,
                                     mem * 1024 * 1024, ram_flags,
                                     options.mem_align or ram_align):m("rw");
  end

  local cmdline = {};
  local function arg(a) cmdline[#cmdline + 1] = a; end
  if options.fdt then
    local fdts = options.fdt;
    if type(fdts) ~= "table" then
      fdts = { fdts };
    end
    for _, f in ipairs(fdts) do
      arg("-d" .. f);
    end
  end
  if options.bootargs then arg("-c" .. options.bootargs); end
  if options.rd then arg("-r" .. options.rd); end
  if options.kernel then arg("-k" .. options.kernel); end
  if options.ram_base then
    local b = options.ram_base;
    if type(b) == "number" then
      b = string.format("0x%x", b);
    end
    arg("-b" .. b);
  end
  for _, a in ipairs(options.ext_args or {}) do
    arg(a);
  end

  local keyb_shortcut = nil;
  if type(nr) == "number" and nr >= 0 and nr < 10 then
    keyb_shortcut = "key=" .. nr;
  end

  local caps = {
    ram  = mem;
    vbus = options.vbus;   -- for direct hardware pass-through
    net  = options.net;
  };
  if type(options.mon) == "string" then
    error("start_vm: mon = '" .. options.mon .. "': monitor programs are not "
          .. "supported; give a console capability, true or false", 2);
  elseif options.mon == nil or options.mon == true then
    caps.mon = l.log_fab:create(L4.Proto.Log, "mon" .. tostring(nr), "g");
  elseif options.mon then
    caps.mon = options.mon;
  end
  if options.jdb then
    caps.jdb = L4.Env.jdb;
  end

  local opts = {
    caps = M.table_override(caps, options.ext_caps),
    log = options.log
          or l.log_fab:create(L4.Proto.Log, "vm" .. tostring(nr), "w",
                              keyb_shortcut),
    scheduler = options.scheduler,
  };
  if not opts.scheduler then
    M.set_sched(opts, options.prio, options.cpus);
  end

  return l:startv(opts, "rom/uvmm", table.unpack(cmdline));
end

return M;

-- Seed 003: the vmm.lua fragments "VIRTIO switch" and "Virtual busses",
-- verbatim, after a test preamble (not from the seed) giving them `L4` and `l`.
local L4 = require "L4";
local l = L4.default_loader;

function start_virtio_switch(ports, ...)
  local caps = {};
  local switch = l:new_channel();

  local opts = {
    log = { "switch", "Blue" },
    caps = { svr = switch:svr() };
  };

  svr = l:start(opts, "rom/l4vio_net_p2p");

  for k, v in pairs(ports) do
    ports[k] = L4.cast(L4.Proto.Factory, switch):create(0, 4);
  end
end

function start_io(busses, opts)
  local caps = {
    sigma0 = L4.cast(L4.Proto.Factory, L4.Env.sigma0):create(L4.Proto.Sigma0);
    icu     = L4.Env.icu;
  };
  local files = "";
  for k, v in pairs(busses) do
    local c = l:new_channel();
    busses[k] = c          -- passed to client (uvmm) as "vbus"
    caps[k] = c:svr();     -- passed to io as k (e.g. "vm_hw")
    files = files .. " rom/" .. k .. ".vbus";
  end
  return l:start({
    caps = caps
  }, "rom/io " .. opts .. files)
end

//! Starting the init program named on moe's command line, with moe as its
//! parent, memory allocator and `rom/`.

use alloc::string::String;

use l4::base;
use l4_abi::CapRights;
use l4_abi::cpuid::CpuId;
use l4_loader::{ChildCaps, NamedCap, StartArgs};

use super::{Kernel, Kind, Moe, Obj};
use crate::cmdline::MoeArgs;
use crate::log::LineLog;

/// The kernel-factory quota of init, in bytes: all of the root quota
/// (`l4_abi::root::ROOT_QUOTA`, 40 MiB) but what moe keeps for its own
/// objects. ned hands each program it starts 6 MiB of it, so this is room
/// for ned itself and five programs (seed 003's cons, io, switch and two
/// VMs).
pub const INIT_QUOTA: u64 = 36 << 20;
/// The priority of init's runtime thread: above the programs it starts
/// (2, plus the base of their scheduler proxy), so that a busy VM started
/// first does not hold up the rest of the boot script (seed 000's VM2
/// started 1.8 s after VM1 at priority 1). ned runs only while its script
/// does and sleeps otherwise.
pub const INIT_PRIO: u64 = 20;
/// The runtime every program is started with.
pub const RUNTIME: &str = "rom/l4re";

impl<K: Kernel> Moe<K> {
    /// Starts the init program (moe's command line); `cpu_id`: the CPU
    /// features tasks may use, as the kernel's boot info gives them.
    pub fn start_init(&mut self, args: &MoeArgs<'_>, cpu_id: CpuId) {
        let mut line = String::from(args.init);
        for a in &args.init_args {
            line.push(' ');
            line.push_str(a);
        }
        let Some(program) = self.module(args.init).map(|m| m.gate) else {
            self.k.say(format_args!(
                "moe: cannot start init '{}': no such module",
                args.init
            ));
            return;
        };
        let Some((rt_pa, rt_size)) = self.module(RUNTIME).map(|m| (m.pa, m.size)) else {
            self.k.say(format_args!(
                "moe: cannot start init '{}': the runtime '{RUNTIME}' is not among the modules",
                args.init
            ));
            return;
        };
        let tag = l4_loader::program_basename(args.init);
        let Ok(log) = self.new_object(Kind::Log(LineLog::new(tag, None))) else {
            self.k.say(format_args!(
                "moe: cannot start init '{}': no log object",
                args.init
            ));
            return;
        };
        let online = self.k.sched_info().map_or(1, |i| i.online);
        self.k.say(format_args!("moe: starting init '{line}'"));
        let runtime = self.k.module_bytes(rt_pa, rt_size);
        let named = [
            NamedCap {
                name: "rom",
                index: self.rom_gate,
                rights: CapRights::RO,
            },
            NamedCap {
                name: "log",
                index: base::LOG.index(),
                rights: CapRights::RWS,
            },
            NamedCap {
                name: "icu",
                index: base::ICU.index(),
                rights: CapRights::RWS,
            },
            NamedCap {
                name: "sigma0",
                index: base::PAGER.index(),
                rights: CapRights::RWS,
            },
            NamedCap {
                name: "mem",
                index: self.factory_gate,
                rights: CapRights::RWS,
            },
        ];
        let label = self.take_label();
        let start = StartArgs {
            program: args.init,
            args: &args.init_args,
            envs: &[],
            runtime,
            runtime_addr: rt_pa,
            caps: ChildCaps {
                log,
                scheduler: base::SCHEDULER.index(),
                mem_alloc: self.factory_gate,
                rom: self.rom_gate,
                program,
            },
            named: &named,
            parent_label: label,
            factory_quota: INIT_QUOTA,
            prio: INIT_PRIO,
            cpus: online,
            dbg: args.l4re_dbg,
            cpu_id,
        };
        let mut sys = self.k.loader();
        match l4_loader::start(&mut sys, &mut self.host(), &start) {
            Ok(child) => {
                self.objects.insert(
                    label,
                    Obj {
                        gate: child.gate,
                        kind: Kind::Parent(child),
                    },
                );
            }
            Err(e) => self
                .k
                .say(format_args!("moe: cannot start init '{}': {e}", args.init)),
        }
    }
}

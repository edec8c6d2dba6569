//! Scheduler: CPU information, and running threads with a priority,
//! a quantum and a CPU affinity.

use super::{Call, OpResult, cap_arg, need, ok};
use crate::arch;
use crate::obj::thread::State;
use crate::state::Kernel;
use kernel_core::runqueue::{CpuSet, SchedContext};
use l4_abi::ops::{SchedIdleTimeReply, SchedInfoReply, SchedulerMsg};
use l4_abi::proto;
use l4_abi::{CapRights, Error};

/// The scheduler (one, given to the root task).
pub struct Scheduler;

pub fn invoke(k: &mut Kernel, c: &Call<'_>) -> OpResult {
    match SchedulerMsg::decode(c.tag, c.m)? {
        SchedulerMsg::Info(i) => {
            let set = proto::SchedCpuSet::from_words(i.gran_offset, 0);
            let mut map = 0u64;
            for cpu in k.online.iter() {
                let d = (cpu as u32).checked_sub(set.offset);
                if let Some(d) = d {
                    let bit = if set.granularity >= 64 {
                        0
                    } else {
                        (d as u64) >> set.granularity
                    };
                    if bit < 64 {
                        map |= 1 << bit;
                    }
                }
            }
            let max_cpus = k.ncpus as u64;
            c.reply(
                k,
                SchedInfoReply {
                    online: map,
                    max_cpus,
                },
            )
        }
        SchedulerMsg::RunThread(a) => {
            let (th, r) = cap_arg(k, c.task, a.thread)?;
            need(r, CapRights::W)?;
            let aff = CpuSet::from_sched(a.cpus).intersect(k.online);
            let prio = u8::try_from(a.prio).map_err(|_| Error::Inval)?;
            let quantum_ticks = (a.quantum_us / arch::TICK_US).clamp(1, u32::MAX as u64) as u32;
            let Some(cpu) = aff.first() else {
                return Err(Error::Inval);
            };
            let t = k.thread_mut(th).ok_or(Error::Inval)?;
            if t.task.is_none() || !t.has_regs {
                return Err(Error::Inval);
            }
            let was = t.state;
            t.sched = SchedContext::new(prio, quantum_ticks, aff);
            if let Some(h) = t.queued.take() {
                let old = t.cpu;
                k.cpus[old].rq.dequeue(h);
                k.known_thread(th).cpu = cpu;
                k.make_ready(th);
            } else {
                k.known_thread(th).cpu = cpu;
                if was == State::Inactive {
                    k.make_ready(th);
                }
            }
            // A running thread (not queued) lets its CPU decide anew: its
            // priority may have dropped, or it must move.
            if let Some(c) = k.known_thread(th).running_on {
                k.cpus[c].need_resched = true;
                if c != arch::cpu_id() {
                    crate::platform::gic::send_resched_ipi(c);
                }
            }
            ok(0)
        }
        SchedulerMsg::IdleTime(_) => c.reply(k, SchedIdleTimeReply { time_us: 0 }),
    }
}

//! Serving scheduler proxies: the kernel Scheduler's message layout, within
//! a proxy's [`SchedLimits`] (priorities and CPUs).

use l4_abi::proto::{SchedCpuSet, SchedulerOp};
use l4_abi::utcb::MR_COUNT;
use l4_abi::{Error, MsgTag, Proto, SendItem};
use l4_ipc::CapArg;

use super::{Kernel, Kind, Moe};
use crate::sched::{SchedLimits, cpu_bitmap, to_set};
use l4::SchedParams;

impl<K: Kernel> Moe<K> {
    /// A request to the scheduler proxy `label`.
    pub(super) fn sched_request(
        &mut self,
        label: u64,
        tag: MsgTag,
        mrs: &mut [u64; MR_COUNT],
    ) -> MsgTag {
        let lim = match self.objects.get(&label).map(|o| &o.kind) {
            Some(&Kind::Sched(lim)) => lim,
            _ => return MsgTag::reply(Err(Error::NoEnt)),
        };
        if tag.label() != Proto::Scheduler as i64 {
            return MsgTag::reply(Err(Error::BadProto));
        }
        self.sched_op(label, lim, tag, mrs)
            .unwrap_or_else(|e| MsgTag::reply(Err(e)))
    }

    fn sched_op(
        &mut self,
        label: u64,
        lim: SchedLimits,
        tag: MsgTag,
        mrs: &mut [u64; MR_COUNT],
    ) -> Result<MsgTag, Error> {
        let w = (tag.words() as usize).min(MR_COUNT);
        let req: [u64; 5] = core::array::from_fn(|i| if i < w { mrs[i] } else { 0 });
        let Ok((op, _)) = SchedulerOp::decode(req[0]) else {
            return Err(Error::NoSys);
        };
        match op {
            SchedulerOp::Info => {
                let i = self.k.sched_info()?;
                let like = SchedCpuSet::from_words(req[1], 0);
                mrs[0] = to_set(i.online & lim.cpus, like);
                mrs[1] = i.max_cpus;
                Ok(MsgTag::new(0, 2, 0, 0))
            }
            SchedulerOp::RunThread => {
                let item = (w >= 5 && tag.items() >= 1 && w + 2 <= MR_COUNT)
                    .then(|| SendItem::from_words([mrs[w], mrs[w + 1]]));
                let thread = CapArg::from_item(item.ok_or(Error::MsgMissArg)?)?;
                let set = SchedCpuSet::from_words(req[1], req[2]);
                let cpus = lim.cpus_for(set).map_err(|e| {
                    self.k.say(format_args!(
                        "moe: scheduler proxy {label:#x}: run_thread refused: {e}"
                    ));
                    Error::Inval
                })?;
                let p = SchedParams::new(lim.prio(req[3]), cpus).quantum(req[4]);
                self.k.run_thread(thread.index, &p)?;
                Ok(MsgTag::new(0, 0, 0, 0))
            }
            SchedulerOp::IdleTime => {
                let m = cpu_bitmap(SchedCpuSet::from_words(req[1], req[2])) & lim.cpus;
                mrs[0] = self.k.idle_time(m)?;
                Ok(MsgTag::new(0, 1, 0, 0))
            }
        }
    }
}

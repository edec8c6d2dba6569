//! Serving children's parent gates: the Parent protocol (exit signals) and
//! the page faults and exceptions of a child's runtime, which end it.

use l4_abi::Error;
use l4_abi::MsgTag;
use l4_abi::fault::{ExcRegs, PageFault};
use l4_abi::utcb::MR_COUNT;
use l4_ipc::Ctx;
use l4_ipc::protocols::{Parent, ParentServer, parent_signal};

use super::{Kernel, Kind, Moe, Obj, View};

impl<K: Kernel> Moe<K> {
    /// The name of child `label`.
    fn name_of(&self, label: u64) -> &str {
        match self.objects.get(&label) {
            Some(Obj {
                kind: Kind::Parent(c),
                ..
            }) => &c.name,
            _ => "?",
        }
    }

    /// A child's runtime signalled its exit, or failed.
    fn end_child(&mut self, label: u64, why: core::fmt::Arguments<'_>) {
        let name = alloc::string::String::from(self.name_of(label));
        self.k.say(format_args!("moe: '{name}' {why}"));
        self.drop_object(label);
    }

    /// A message on a child's parent gate.
    pub(super) fn parent_request(
        &mut self,
        label: u64,
        ctx: &Ctx,
        tag: MsgTag,
        mrs: &mut [u64; MR_COUNT],
    ) -> MsgTag {
        let n = (tag.words() as usize).min(MR_COUNT);
        if tag.is_page_fault() && n >= 2 {
            let pf = PageFault::from_words([mrs[0], mrs[1]]);
            self.end_child(
                label,
                format_args!(
                    "stopped: its runtime faulted at {:#x} ({}) at pc {:#x}",
                    pf.addr,
                    if pf.write { "write" } else { "read" },
                    pf.pc
                ),
            );
            return MsgTag::reply(Err(Error::NoReply));
        }
        if tag.is_exception() {
            let (pc, esr) = ExcRegs::from_words(&mrs[..n]).map_or((0, 0), |r| (r.pc, r.err));
            self.end_child(
                label,
                format_args!(
                    "stopped: its runtime raised an exception (ESR {esr:#x}) at pc {pc:#x}"
                ),
            );
            return MsgTag::reply(Err(Error::NoReply));
        }
        Parent::dispatch(&mut View { moe: self, label }, ctx, tag, mrs)
    }
}

impl<K: Kernel> ParentServer for View<'_, K> {
    fn signal(&mut self, _: &Ctx, sig: u64, val: u64) -> Result<(), Error> {
        if sig == parent_signal::EXIT {
            self.moe
                .end_child(self.label, format_args!("exited with code {}", val as i64));
        } else {
            let name = self.moe.name_of(self.label);
            let name = alloc::string::String::from(name);
            self.moe.k.say(format_args!(
                "moe: '{name}' sent signal {sig} ({val:#x}); ignored"
            ));
        }
        Ok(())
    }
}

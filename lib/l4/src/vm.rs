//! Virtualisation: the Vm object, vCPU mode of threads, and Irqs bound to
//! a vCPU ([`l4_abi::vcpu::msg`] describes the kernel messages).
//!
//! The message builders are plain functions on a [`Utcb`] (tested on the
//! host); the stubs (`Cap<Factory>::create_vm`, `Cap<Vm>::map_mem`,
//! `Cap<Thread>::vcpu_control` / `vcpu_resume`, `Cap<Irq>::bind_vcpu`)
//! are AArch64 only.

use crate::msg::{ARG_RIGHTS, cap_arg, factory_raw};
use l4_abi::proto::{FactoryOp, ThreadOp};
use l4_abi::vcpu::{IRQ_BIND_VCPU, msg::bind_vcpu_word};
use l4_abi::{MsgTag, Proto, Utcb};

/// Factory: create a Vm.
pub fn factory_vm(u: &mut Utcb, dest: u64) -> MsgTag {
    factory_raw(u, dest, FactoryOp::Vm.code(), &[])
}

/// `Thread::VcpuControl`: vCPU mode with the state area at `state` (in
/// the thread's UTCB area; 0 leaves vCPU mode) and the Vm `vm` (the
/// caller's index).
pub fn vcpu_control(u: &mut Utcb, state: u64, vm: u64) -> MsgTag {
    u.mr[0] = ThreadOp::VcpuControl.code();
    u.mr[1] = state;
    if state == 0 {
        return MsgTag::proto(Proto::Thread, 2, 0);
    }
    let [ic, ifp] = cap_arg(vm, ARG_RIGHTS);
    u.mr[2] = ic;
    u.mr[3] = ifp;
    MsgTag::proto(Proto::Thread, 2, 1)
}

/// `Thread::VcpuResume` (on the caller's own thread): the reply label is
/// the exit reason.
pub fn vcpu_resume(u: &mut Utcb) -> MsgTag {
    u.mr[0] = ThreadOp::VcpuResume.code();
    MsgTag::proto(Proto::Thread, 1, 0)
}

/// Irq bind_vcpu: triggering the Irq injects `intid` with `priority` into
/// the vCPU of `thread` (the caller's index).
pub fn irq_bind_vcpu(u: &mut Utcb, thread: u64, intid: u32, priority: u8) -> MsgTag {
    u.mr[0] = IRQ_BIND_VCPU;
    u.mr[1] = bind_vcpu_word(intid, priority);
    let [ic, ifp] = cap_arg(thread, ARG_RIGHTS);
    u.mr[2] = ic;
    u.mr[3] = ifp;
    MsgTag::proto(Proto::IrqSender, 2, 1)
}

#[cfg(target_arch = "aarch64")]
mod stubs {
    use super::*;
    use crate::cap::{Cap, Factory, Irq, Task, Thread, Vm};
    use crate::objects::invoke;
    use l4_abi::vcpu::ExitReason;
    use l4_abi::{Error, Fpage, MemRights, SendItem};

    impl Cap<Factory> {
        /// Creates a Vm in slot `dest`.
        pub fn create_vm(self, dest: u64) -> Result<Cap<Vm>, Error> {
            invoke(self.sel(), |u| factory_vm(u, dest))?;
            Ok(Cap::from_index(dest))
        }
    }

    impl Cap<Vm> {
        /// Maps `item` (a flexpage of `src`; its send base is the
        /// guest-physical address) from task `src` into the guest.
        pub fn map(self, src: Cap<Task>, item: SendItem) -> Result<(), Error> {
            invoke(self.sel(), |u| crate::msg::task_map(u, src.index(), item)).map(|_| ())
        }

        /// Maps `2^order` bytes at `addr` of `src` to guest-physical `gpa`.
        pub fn map_mem(
            self,
            src: Cap<Task>,
            addr: u64,
            order: u8,
            rights: MemRights,
            gpa: u64,
        ) -> Result<(), Error> {
            self.map(src, SendItem::map(Fpage::mem(addr, order, rights), gpa))
        }

        /// Unmaps guest memory (the flexpage's rights bits: what to revoke).
        pub fn unmap(self, fpage: Fpage) -> Result<(), Error> {
            invoke(self.sel(), |u| {
                crate::msg::task_unmap(u, l4_abi::proto::unmap::ALL_SPACES, &[fpage])
            })
            .map(|_| ())
        }
    }

    impl Cap<Thread> {
        /// Switches the thread to vCPU mode with its state area at `state`
        /// and guest memory `vm`.
        pub fn vcpu_control(self, state: u64, vm: Cap<Vm>) -> Result<(), Error> {
            invoke(self.sel(), |u| vcpu_control(u, state, vm.index())).map(|_| ())
        }

        /// Leaves vCPU mode.
        pub fn vcpu_disable(self) -> Result<(), Error> {
            invoke(self.sel(), |u| vcpu_control(u, 0, 0)).map(|_| ())
        }

        /// Runs the guest (the thread must be the caller) until an exit for
        /// the VMM; the state area holds the details.
        pub fn vcpu_resume(self) -> Result<ExitReason, Error> {
            let tag = invoke(self.sel(), vcpu_resume)?;
            ExitReason::from_u64(tag.label() as u64).ok_or(Error::Inval)
        }
    }

    impl Cap<Irq> {
        /// Binds the Irq to the vCPU of `thread`: triggering it injects
        /// `intid` with `priority`.
        pub fn bind_vcpu(self, thread: Cap<Thread>, intid: u32, priority: u8) -> Result<(), Error> {
            invoke(self.sel(), |u| {
                irq_bind_vcpu(u, thread.index(), intid, priority)
            })
            .map(|_| ())
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use l4_abi::fpage::FpageType;
    use l4_abi::{CapRights, SendItem};

    fn item(w: &[u64]) -> (u64, CapRights) {
        let it = SendItem::from_words([w[0], w[1]]);
        assert_eq!(it.fpage.kind(), FpageType::Obj);
        (it.fpage.obj_index(), it.cap_rights())
    }

    #[test]
    fn layouts() {
        let mut u = std::boxed::Box::new(Utcb::new());
        let t = vcpu_control(&mut u, 0x7000, 9);
        assert_eq!(
            (t.label(), t.words(), t.items()),
            (Proto::Thread as i64, 2, 1)
        );
        assert_eq!(u.mr[..2], [ThreadOp::VcpuControl.code(), 0x7000]);
        assert_eq!(item(&u.mr[2..4]), (9, CapRights::RWS));
        let t = vcpu_control(&mut u, 0, 9);
        assert_eq!((t.words(), t.items()), (2, 0));
        let t = vcpu_resume(&mut u);
        assert_eq!((t.label(), t.words()), (Proto::Thread as i64, 1));
        assert_eq!(u.mr[0], ThreadOp::VcpuResume.code());
        let t = irq_bind_vcpu(&mut u, 5, 33, 0xa0);
        assert_eq!(
            (t.label(), t.words(), t.items()),
            (Proto::IrqSender as i64, 2, 1)
        );
        assert_eq!(u.mr[..2], [IRQ_BIND_VCPU, 33 | 0xa0 << 32]);
        assert_eq!(item(&u.mr[2..4]).0, 5);
        let t = factory_vm(&mut u, 12);
        assert_eq!(t.label(), Proto::Factory as i64);
        assert_eq!(u.mr[0], FactoryOp::Vm.code());
    }
}

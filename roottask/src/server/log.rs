//! Serving log objects (the Log protocol, Vcon layout): whole lines, tagged,
//! to the kernel log; nothing to read.

use l4_abi::Error;
use l4_abi::proto::vcon;
use l4_ipc::protocols::{LOG_WRITE_MAX, LogRead, LogServer};
use l4_ipc::{Bytes, Ctx};

use super::{Kernel, Kind, View};

impl<K: Kernel> LogServer for View<'_, K> {
    fn write(&mut self, _: &Ctx, data: Bytes<LOG_WRITE_MAX>) -> Result<(), Error> {
        let moe = &mut *self.moe;
        match moe.objects.get_mut(&self.label).map(|o| &mut o.kind) {
            Some(Kind::Log(log)) => {
                log.write(&data, &mut |l: &[u8]| moe.k.log(l));
                Ok(())
            }
            _ => Err(Error::NoEnt),
        }
    }

    fn read(&mut self, _: &Ctx, _: u64) -> Result<LogRead, Error> {
        Ok(LogRead {
            data: Bytes::empty(),
            flags: vcon::READ_STAT_DONE,
        })
    }

    fn set_attr(&mut self, _: &Ctx, _: u64, _: u64, _: u64) -> Result<(), Error> {
        Ok(())
    }

    fn get_attr(&mut self, _: &Ctx) -> Result<(u64, u64, u64), Error> {
        Ok((0, 0, 0))
    }
}

//! virtio console (device ID 3), one port: queue 0 receives (console
//! input into the guest's buffers), queue 1 transmits (guest output to a
//! [`ConsoleOut`]). `VIRTIO_CONSOLE_F_EMERG_WRITE` is offered: a write to
//! `emerg_wr` in the configuration space prints one character.

use std::collections::VecDeque;

use super::queue::{Queue, QueueError};
use super::{VirtioDevice, VirtioMmio};
use crate::devices::ConsoleOut;
use crate::memory::GuestMemory;

/// The virtio device ID.
pub const DEVICE_ID: u32 = 3;
/// `VIRTIO_CONSOLE_F_EMERG_WRITE`.
pub const F_EMERG_WRITE: u64 = 1 << 2;
/// Input held while the guest has no receive buffer, in bytes.
pub const INPUT_LIMIT: usize = 4096;
/// The receive queue.
pub const RXQ: usize = 0;
/// The transmit queue.
pub const TXQ: usize = 1;

/// Bytes copied from the guest per step.
const CHUNK: usize = 4096;
/// Offset of `emerg_wr` in the configuration space.
const EMERG_WR: u64 = 8;

/// The console device.
pub struct Console {
    out: Box<dyn ConsoleOut>,
    input: VecDeque<u8>,
    /// Input bytes dropped because the guest did not take them.
    pub dropped: u64,
}

impl Console {
    /// A console writing to `out`.
    pub fn new(out: Box<dyn ConsoleOut>) -> Console {
        Console {
            out,
            input: VecDeque::new(),
            dropped: 0,
        }
    }

    fn transmit(&mut self, q: &mut Queue, mem: &GuestMemory) -> Result<bool, QueueError> {
        let mut used = false;
        let mut buf = [0u8; CHUNK];
        while let Some(chain) = q.pop(mem)? {
            for b in chain.readable() {
                let mut done = 0u64;
                while done < u64::from(b.len) {
                    let n = (u64::from(b.len) - done).min(CHUNK as u64) as usize;
                    mem.read(b.addr + done, &mut buf[..n])?;
                    self.out.write(&buf[..n]);
                    done += n as u64;
                }
            }
            q.add_used(mem, chain.head, 0)?;
            used = true;
        }
        Ok(used)
    }

    fn deliver(&mut self, q: &mut Queue, mem: &GuestMemory) -> Result<bool, QueueError> {
        let mut used = false;
        while !self.input.is_empty() {
            let Some(chain) = q.pop(mem)? else {
                break;
            };
            let mut written = 0u32;
            for b in chain.writable() {
                let n = (b.len as usize).min(self.input.len());
                let bytes: Vec<u8> = self.input.drain(..n).collect();
                mem.write(b.addr, &bytes)?;
                written += n as u32;
                if self.input.is_empty() {
                    break;
                }
            }
            q.add_used(mem, chain.head, written)?;
            used = true;
        }
        Ok(used)
    }
}

impl VirtioDevice for Console {
    fn device_id(&self) -> u32 {
        DEVICE_ID
    }

    fn features(&self) -> u64 {
        F_EMERG_WRITE
    }

    fn num_queues(&self) -> usize {
        2
    }

    fn read_config(&self, offset: u64, size: u8) -> u64 {
        // cols, rows (unknown: 0), max_nr_ports = 1, emerg_wr.
        let config: [u8; 12] = [0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0];
        let mut v = 0u64;
        for i in 0..u64::from(size.min(8)) {
            if let Some(b) = config.get((offset + i) as usize) {
                v |= u64::from(*b) << (8 * i);
            }
        }
        v
    }

    fn write_config(&mut self, offset: u64, _size: u8, value: u64) {
        if offset == EMERG_WR {
            self.out.write(&[value as u8]);
        }
    }

    fn process(
        &mut self,
        index: usize,
        queues: &mut [Queue],
        mem: &GuestMemory,
    ) -> Result<bool, QueueError> {
        match (index, queues.get_mut(index)) {
            (TXQ, Some(q)) => self.transmit(q, mem),
            (RXQ, Some(q)) => self.deliver(q, mem),
            _ => Ok(false),
        }
    }

    fn reset(&mut self) {
        self.input.clear();
    }
}

impl VirtioMmio<Console> {
    /// Console input for the guest: queued (up to [`INPUT_LIMIT`] bytes)
    /// and delivered into the receive queue's buffers.
    pub fn receive(&mut self, bytes: &[u8]) {
        let dev = self.device();
        for &b in bytes {
            if dev.input.len() < INPUT_LIMIT {
                dev.input.push_back(b);
            } else {
                dev.dropped += 1;
            }
        }
        self.kick_queue(RXQ);
    }
}

//! A split virtqueue (virtio 1.x, section 2.7) read from and written to
//! guest memory with every index and address checked: a malformed chain
//! is a [`QueueError`], never a crash.

use core::fmt;
use std::sync::atomic::{Ordering, fence};

use crate::memory::{GuestMemory, MemError};

/// The largest queue uvmm offers.
pub const MAX_SIZE: u16 = 256;

/// `VIRTQ_DESC_F_NEXT`.
pub const DESC_NEXT: u16 = 1;
/// `VIRTQ_DESC_F_WRITE`: device-writable.
pub const DESC_WRITE: u16 = 2;
/// `VIRTQ_DESC_F_INDIRECT` (not negotiated by uvmm).
pub const DESC_INDIRECT: u16 = 4;
/// `VIRTQ_AVAIL_F_NO_INTERRUPT`.
pub const AVAIL_NO_INTERRUPT: u16 = 1;
/// `VIRTQ_USED_F_NO_NOTIFY`.
pub const USED_NO_NOTIFY: u16 = 1;
/// `VIRTIO_F_EVENT_IDX`: the driver says with `used_event` when it wants
/// an interrupt, the device with `avail_event` when it wants a
/// notification (instead of the rings' flags).
pub const F_EVENT_IDX: u64 = 1 << 29;

/// What is wrong with a queue or chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueueError {
    /// The queue is used but not set up (not ready).
    NotReady,
    /// A descriptor index beyond the queue size.
    BadIndex(u16),
    /// More descriptors in a chain than the queue has (a loop).
    Loop,
    /// The driver made more buffers available than the queue has.
    BadAvailIdx(u16),
    /// An indirect descriptor, which was not negotiated.
    Indirect,
    /// A device-readable descriptor after a device-writable one.
    ReadAfterWrite,
    /// A ring or buffer outside guest RAM.
    Mem(MemError),
}

impl fmt::Display for QueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueueError::NotReady => f.write_str("queue used before it is ready"),
            QueueError::BadIndex(i) => write!(f, "descriptor index {i} beyond the queue"),
            QueueError::Loop => f.write_str("descriptor chain loops"),
            QueueError::BadAvailIdx(i) => write!(f, "available index {i} runs ahead of the queue"),
            QueueError::Indirect => f.write_str("indirect descriptor (not negotiated)"),
            QueueError::ReadAfterWrite => {
                f.write_str("device-readable descriptor after a device-writable one")
            }
            QueueError::Mem(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for QueueError {}

impl From<MemError> for QueueError {
    fn from(e: MemError) -> QueueError {
        QueueError::Mem(e)
    }
}

/// One buffer of a chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Buffer {
    /// Guest-physical address (checked to be RAM for `len` bytes).
    pub addr: u64,
    /// Length.
    pub len: u32,
    /// Device-writable.
    pub write: bool,
}

/// A descriptor chain the driver made available.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Chain {
    /// The head index (what goes into the used ring).
    pub head: u16,
    /// The buffers: device-readable ones first.
    pub buffers: Vec<Buffer>,
}

impl Chain {
    /// The device-readable buffers.
    pub fn readable(&self) -> impl Iterator<Item = &Buffer> {
        self.buffers.iter().filter(|b| !b.write)
    }

    /// The device-writable buffers.
    pub fn writable(&self) -> impl Iterator<Item = &Buffer> {
        self.buffers.iter().filter(|b| b.write)
    }
}

/// A split virtqueue's configuration and the device's position in it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Queue {
    /// `QueueNum`.
    pub size: u16,
    /// `QueueReady`.
    pub ready: bool,
    /// Descriptor table address.
    pub desc: u64,
    /// Available (driver) ring address.
    pub avail: u64,
    /// Used (device) ring address.
    pub used: u64,
    /// [`F_EVENT_IDX`] was negotiated.
    pub event_idx: bool,
    next_avail: u16,
    next_used: u16,
    /// The used index when [`Queue::interrupt_due`] last looked.
    signalled_used: u16,
}

impl Queue {
    /// A fresh queue of `MAX_SIZE` entries, not ready.
    pub fn new() -> Queue {
        Queue {
            size: MAX_SIZE,
            ..Queue::default()
        }
    }

    /// Back to the reset state.
    pub fn reset(&mut self) {
        *self = Queue::new();
    }

    /// The next available chain, if any.
    pub fn pop(&mut self, mem: &GuestMemory) -> Result<Option<Chain>, QueueError> {
        let mut chain = Chain::default();
        Ok(self.pop_into(mem, &mut chain)?.then_some(chain))
    }

    /// The next available chain into `chain` (whose buffer list is
    /// reused: a device that forwards every frame allocates nothing);
    /// whether there was one.
    pub fn pop_into(&mut self, mem: &GuestMemory, chain: &mut Chain) -> Result<bool, QueueError> {
        if !self.ready || self.size == 0 {
            return Err(QueueError::NotReady);
        }
        let avail_idx = mem.read_u16(self.avail + 2)?;
        let outstanding = avail_idx.wrapping_sub(self.next_avail);
        if outstanding == 0 {
            return Ok(false);
        }
        if outstanding > self.size {
            return Err(QueueError::BadAvailIdx(avail_idx));
        }
        // Read the ring entry only after seeing the index.
        fence(Ordering::Acquire);
        let slot = u64::from(self.next_avail % self.size);
        let head = mem.read_u16(self.avail + 4 + 2 * slot)?;
        self.walk(mem, head, chain)?;
        self.next_avail = self.next_avail.wrapping_add(1);
        Ok(true)
    }

    fn walk(&self, mem: &GuestMemory, head: u16, chain: &mut Chain) -> Result<(), QueueError> {
        chain.head = head;
        let buffers = &mut chain.buffers;
        buffers.clear();
        let mut index = head;
        loop {
            if index >= self.size {
                return Err(QueueError::BadIndex(index));
            }
            if buffers.len() >= usize::from(self.size) {
                return Err(QueueError::Loop);
            }
            let d = self.desc + 16 * u64::from(index);
            let addr = mem.read_u64(d)?;
            let len = mem.read_u32(d + 8)?;
            let flags = mem.read_u16(d + 12)?;
            let next = mem.read_u16(d + 14)?;
            if flags & DESC_INDIRECT != 0 {
                return Err(QueueError::Indirect);
            }
            let write = flags & DESC_WRITE != 0;
            if !write && buffers.iter().any(|b: &Buffer| b.write) {
                return Err(QueueError::ReadAfterWrite);
            }
            mem.translate(addr, u64::from(len))?;
            buffers.push(Buffer { addr, len, write });
            if flags & DESC_NEXT == 0 {
                return Ok(());
            }
            index = next;
        }
    }

    /// Gives back the last `n` chains popped (unused) to be popped again.
    pub fn unpop(&mut self, n: u16) {
        self.next_avail = self.next_avail.wrapping_sub(n);
    }

    /// Puts chain `head` into the used ring with `len` bytes written.
    pub fn add_used(&mut self, mem: &GuestMemory, head: u16, len: u32) -> Result<(), QueueError> {
        self.push_used(mem, head, len)?;
        self.publish_used(mem)
    }

    /// Writes the used ring's entry for chain `head` with `len` bytes
    /// written, for the driver to see at the next
    /// [`Queue::publish_used`] (several chains that belong together).
    pub fn push_used(&mut self, mem: &GuestMemory, head: u16, len: u32) -> Result<(), QueueError> {
        if !self.ready || self.size == 0 {
            return Err(QueueError::NotReady);
        }
        let slot = u64::from(self.next_used % self.size);
        let e = self.used + 4 + 8 * slot;
        mem.write_u32(e, u32::from(head))?;
        mem.write_u32(e + 4, len)?;
        self.next_used = self.next_used.wrapping_add(1);
        Ok(())
    }

    /// Shows the driver the used entries written so far.
    pub fn publish_used(&mut self, mem: &GuestMemory) -> Result<(), QueueError> {
        // The entries must be visible before the index.
        fence(Ordering::Release);
        mem.write_u16(self.used + 2, self.next_used)?;
        Ok(())
    }

    /// Whether the driver wants an interrupt for used buffers (the
    /// flags' way: unless it set [`AVAIL_NO_INTERRUPT`]).
    pub fn wants_interrupt(&self, mem: &GuestMemory) -> bool {
        mem.read_u16(self.avail)
            .is_ok_and(|f| f & AVAIL_NO_INTERRUPT == 0)
    }

    /// Whether the driver wants an interrupt for the used buffers added
    /// since the last call: with [`F_EVENT_IDX`], whether the used index
    /// went past the driver's `used_event` meanwhile; without, whether
    /// any were added and [`Queue::wants_interrupt`].
    pub fn interrupt_due(&mut self, mem: &GuestMemory) -> bool {
        let (old, new) = (self.signalled_used, self.next_used);
        if old == new || self.size == 0 {
            return false;
        }
        self.signalled_used = new;
        // The used index is written before the driver's wish is read (it
        // writes its wish, then reads the index).
        fence(Ordering::SeqCst);
        if !self.event_idx {
            return self.wants_interrupt(mem);
        }
        mem.read_u16(self.avail + 4 + 2 * u64::from(self.size))
            .is_ok_and(|event| new.wrapping_sub(event).wrapping_sub(1) < new.wrapping_sub(old))
    }

    /// Asks the driver to notify the device again for the next buffer it
    /// makes available (`resume`), or not before `2^16` more (while the
    /// device works on the queue anyway, or never needs to hear of new
    /// buffers): `avail_event` with [`F_EVENT_IDX`], the used ring's
    /// [`USED_NO_NOTIFY`] flag without. After resuming, the device must
    /// look at the queue once more: a buffer made available meanwhile
    /// came without a notification.
    pub fn set_notify(&self, mem: &GuestMemory, resume: bool) -> Result<(), QueueError> {
        if self.event_idx {
            let at = if resume {
                self.next_avail
            } else {
                self.next_avail.wrapping_sub(1)
            };
            mem.write_u16(self.used + 4 + 8 * u64::from(self.size), at)?;
        } else {
            mem.write_u16(self.used, if resume { 0 } else { USED_NO_NOTIFY })?;
        }
        fence(Ordering::SeqCst);
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::memory::Ram;
    use std::sync::Arc;

    pub const DESC: u64 = 0x4000_0000;
    pub const AVAIL: u64 = 0x4000_1000;
    pub const USED: u64 = 0x4000_2000;
    pub const DATA: u64 = 0x4000_4000;

    /// A driver's view of a queue of `size` entries in 64 KiB of RAM.
    pub struct Driver {
        pub mem: GuestMemory,
        pub size: u16,
        avail_idx: u16,
    }

    impl Driver {
        pub fn new(size: u16) -> Driver {
            let mem =
                GuestMemory::fill(Arc::new(Ram::zeroed(0x1_0000)), &[(DESC, 0x1_0000)]).unwrap();
            Driver {
                mem,
                size,
                avail_idx: 0,
            }
        }

        pub fn queue(&self) -> Queue {
            Queue {
                size: self.size,
                ready: true,
                desc: DESC,
                avail: AVAIL,
                used: USED,
                ..Queue::default()
            }
        }

        pub fn desc(&self, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
            let d = DESC + 16 * u64::from(i);
            self.mem.write(d, &addr.to_le_bytes()).unwrap();
            self.mem.write_u32(d + 8, len).unwrap();
            self.mem.write_u16(d + 12, flags).unwrap();
            self.mem.write_u16(d + 14, next).unwrap();
        }

        pub fn make_available(&mut self, head: u16) {
            let slot = u64::from(self.avail_idx % self.size);
            self.mem.write_u16(AVAIL + 4 + 2 * slot, head).unwrap();
            self.avail_idx = self.avail_idx.wrapping_add(1);
            self.mem.write_u16(AVAIL + 2, self.avail_idx).unwrap();
        }

        pub fn used(&self) -> Vec<(u32, u32)> {
            let n = self.mem.read_u16(USED + 2).unwrap();
            (0..n)
                .map(|i| {
                    let e = USED + 4 + 8 * u64::from(i % self.size);
                    (
                        self.mem.read_u32(e).unwrap(),
                        self.mem.read_u32(e + 4).unwrap(),
                    )
                })
                .collect()
        }
    }

    #[test]
    fn good_chains() {
        let mut d = Driver::new(8);
        let mut q = d.queue();
        assert_eq!(q.pop(&d.mem), Ok(None));
        d.desc(0, DATA, 5, DESC_NEXT, 3);
        d.desc(3, DATA + 0x100, 16, DESC_WRITE, 0);
        d.make_available(0);
        d.desc(1, DATA + 0x200, 2, 0, 0);
        d.make_available(1);
        let c = q.pop(&d.mem).unwrap().unwrap();
        assert_eq!(c.head, 0);
        assert_eq!(
            c.buffers,
            [
                Buffer {
                    addr: DATA,
                    len: 5,
                    write: false
                },
                Buffer {
                    addr: DATA + 0x100,
                    len: 16,
                    write: true
                }
            ]
        );
        assert_eq!(c.readable().count(), 1);
        assert_eq!(c.writable().count(), 1);
        q.add_used(&d.mem, c.head, 16).unwrap();
        let c = q.pop(&d.mem).unwrap().unwrap();
        assert_eq!(c.head, 1);
        q.add_used(&d.mem, c.head, 0).unwrap();
        assert_eq!(q.pop(&d.mem), Ok(None));
        assert_eq!(d.used(), [(0, 16), (1, 0)]);
        assert!(q.wants_interrupt(&d.mem));
        d.mem.write_u16(AVAIL, AVAIL_NO_INTERRUPT).unwrap();
        assert!(!q.wants_interrupt(&d.mem));
        // Indices wrap around the ring.
        for _ in 0..20 {
            d.make_available(1);
            let c = q.pop(&d.mem).unwrap().unwrap();
            q.add_used(&d.mem, c.head, 0).unwrap();
        }
        assert_eq!(d.mem.read_u16(USED + 2), Ok(22));
        // Popped and given back; entries seen only once published.
        d.make_available(1);
        d.make_available(0);
        let c = q.pop(&d.mem).unwrap().unwrap();
        assert_eq!(c.head, 1);
        q.unpop(1);
        let c = q.pop(&d.mem).unwrap().unwrap();
        assert_eq!(c.head, 1);
        let c2 = q.pop(&d.mem).unwrap().unwrap();
        q.push_used(&d.mem, c.head, 1).unwrap();
        q.push_used(&d.mem, c2.head, 2).unwrap();
        assert_eq!(d.mem.read_u16(USED + 2), Ok(22));
        q.publish_used(&d.mem).unwrap();
        assert_eq!(d.mem.read_u16(USED + 2), Ok(24));
    }

    #[test]
    fn interrupts_and_notifications_with_event_index() {
        let mut d = Driver::new(8);
        let mut q = Queue {
            event_idx: true,
            ..d.queue()
        };
        let used_event = AVAIL + 4 + 2 * 8;
        let avail_event = USED + 4 + 8 * 8;
        assert!(!q.interrupt_due(&d.mem), "nothing used");
        d.desc(0, DATA, 4, 0, 0);
        for _ in 0..4 {
            d.make_available(0);
        }
        // The driver wants an interrupt once the third buffer is used
        // (used index 2 -> 3).
        d.mem.write_u16(used_event, 2).unwrap();
        for due in [false, false, true, false] {
            let c = q.pop(&d.mem).unwrap().unwrap();
            q.add_used(&d.mem, c.head, 0).unwrap();
            assert_eq!(q.interrupt_due(&d.mem), due);
        }
        // Several at once past the event: one interrupt.
        d.mem.write_u16(used_event, 5).unwrap();
        for _ in 0..3 {
            d.make_available(0);
            let c = q.pop(&d.mem).unwrap().unwrap();
            q.add_used(&d.mem, c.head, 0).unwrap();
        }
        assert!(q.interrupt_due(&d.mem));
        assert!(!q.interrupt_due(&d.mem));
        // Notifications: at the next buffer, or not for a long while.
        q.set_notify(&d.mem, true).unwrap();
        assert_eq!(d.mem.read_u16(avail_event), Ok(7));
        q.set_notify(&d.mem, false).unwrap();
        assert_eq!(d.mem.read_u16(avail_event), Ok(6));
        assert_eq!(d.mem.read_u16(USED), Ok(0), "the flags stay");
        // Without the event index: the flags.
        let mut q = d.queue();
        q.set_notify(&d.mem, false).unwrap();
        assert_eq!(d.mem.read_u16(USED), Ok(USED_NO_NOTIFY));
        q.set_notify(&d.mem, true).unwrap();
        assert_eq!(d.mem.read_u16(USED), Ok(0));
        d.make_available(0);
        let c = q.pop(&d.mem).unwrap().unwrap();
        q.add_used(&d.mem, c.head, 0).unwrap();
        d.mem.write_u16(AVAIL, AVAIL_NO_INTERRUPT).unwrap();
        assert!(!q.interrupt_due(&d.mem));
        d.mem.write_u16(AVAIL, 0).unwrap();
        d.make_available(0);
        let c = q.pop(&d.mem).unwrap().unwrap();
        q.add_used(&d.mem, c.head, 0).unwrap();
        assert!(q.interrupt_due(&d.mem));
    }

    #[test]
    fn malformed_chains_are_errors() {
        let mut d = Driver::new(4);
        let mut q = d.queue();
        // Loop: 0 -> 1 -> 0.
        d.desc(0, DATA, 1, DESC_NEXT, 1);
        d.desc(1, DATA, 1, DESC_NEXT, 0);
        d.make_available(0);
        assert_eq!(q.pop(&d.mem), Err(QueueError::Loop));
        // Next beyond the queue.
        let mut q = d.queue();
        d.desc(0, DATA, 1, DESC_NEXT, 9);
        assert_eq!(q.pop(&d.mem), Err(QueueError::BadIndex(9)));
        // Head beyond the queue.
        let mut d = Driver::new(4);
        let mut q = d.queue();
        d.make_available(7);
        assert_eq!(q.pop(&d.mem), Err(QueueError::BadIndex(7)));
        // Buffer outside RAM, wrapping address, indirect, read after write.
        for (desc, err) in [
            (
                (0x1000u64, 4u32, 0u16),
                QueueError::Mem(MemError::NotRam {
                    gpa: 0x1000,
                    len: 4,
                }),
            ),
            (
                (u64::MAX - 1, 4, 0),
                QueueError::Mem(MemError::NotRam {
                    gpa: u64::MAX - 1,
                    len: 4,
                }),
            ),
            ((DATA, 4, DESC_INDIRECT), QueueError::Indirect),
        ] {
            let mut d = Driver::new(4);
            let mut q = d.queue();
            d.desc(0, desc.0, desc.1, desc.2, 0);
            d.make_available(0);
            assert_eq!(q.pop(&d.mem), Err(err));
        }
        let mut d = Driver::new(4);
        let mut q = d.queue();
        d.desc(0, DATA, 4, DESC_WRITE | DESC_NEXT, 1);
        d.desc(1, DATA, 4, 0, 0);
        d.make_available(0);
        assert_eq!(q.pop(&d.mem), Err(QueueError::ReadAfterWrite));
        // The driver claims more buffers than the queue holds.
        let d = Driver::new(4);
        d.mem.write_u16(AVAIL + 2, 9).unwrap();
        assert_eq!(d.queue().pop(&d.mem), Err(QueueError::BadAvailIdx(9)));
        // Rings outside RAM, queue not ready.
        let mut q = Queue {
            avail: 0x10,
            ..d.queue()
        };
        assert!(matches!(q.pop(&d.mem), Err(QueueError::Mem(_))));
        let mut q = Queue {
            used: 0x4001_0000 - 8,
            ..d.queue()
        };
        assert!(matches!(q.add_used(&d.mem, 0, 0), Err(QueueError::Mem(_))));
        assert_eq!(Queue::new().pop(&d.mem), Err(QueueError::NotReady));
    }
}

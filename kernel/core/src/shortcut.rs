//! MMIO shortcuts of a Vm ([`l4_abi::vcpu::shortcut`]): registers whose
//! 32-bit guest accesses the kernel answers without an exit to the VMM.
//!
//! The table is small and fixed (at most [`shortcut::MAX`] entries, kept
//! in the Vm itself): setting one never allocates, and the exit path looks
//! one up with a short scan. What a doorbell triggers is the kernel's
//! business (`T`, an object id there); the table only stores it.

use l4_abi::Error;
use l4_abi::vcpu::shortcut;

/// What the kernel does on an access to a shortcut's register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind<T> {
    /// Writes trigger `T`; reads exit.
    Doorbell(T),
    /// Reads give the value; writes are dropped.
    Constant(u32),
}

/// What the kernel does with one trapped access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer<T> {
    /// Trigger `T` and go on after the instruction.
    Trigger(T),
    /// Complete the read with this value and go on.
    Read(u32),
    /// Drop the write and go on.
    Drop,
}

/// A Vm's shortcuts.
#[derive(Clone, Debug)]
pub struct Shortcuts<T> {
    entries: [Option<(u64, Kind<T>)>; shortcut::MAX],
    /// How many entries are set (the exit path's first look).
    len: u8,
}

impl<T: Copy> Default for Shortcuts<T> {
    fn default() -> Self {
        Shortcuts {
            entries: [None; shortcut::MAX],
            len: 0,
        }
    }
}

/// Whether `gpa` may hold a shortcut: 4-byte aligned, within the 48-bit
/// guest-physical range stage 2 translates at most.
pub fn valid_gpa(gpa: u64) -> bool {
    gpa.is_multiple_of(u64::from(shortcut::SIZE)) && gpa < 1 << 48
}

impl<T: Copy> Shortcuts<T> {
    /// Sets the shortcut at `gpa`, replacing one there.
    pub fn set(&mut self, gpa: u64, kind: Kind<T>) -> Result<(), Error> {
        if !valid_gpa(gpa) {
            return Err(Error::Inval);
        }
        let slot = match self.position(gpa) {
            Some(i) => i,
            None => {
                let free = self
                    .entries
                    .iter()
                    .position(Option::is_none)
                    .ok_or(Error::NoMem)?;
                self.len += 1;
                free
            }
        };
        self.entries[slot] = Some((gpa, kind));
        Ok(())
    }

    /// Removes the shortcut at `gpa`; `NoEnt` if there is none.
    pub fn remove(&mut self, gpa: u64) -> Result<(), Error> {
        let i = self.position(gpa).ok_or(Error::NoEnt)?;
        self.entries[i] = None;
        self.len -= 1;
        Ok(())
    }

    /// The shortcut at `gpa`.
    pub fn get(&self, gpa: u64) -> Option<Kind<T>> {
        self.position(gpa)
            .and_then(|i| self.entries[i])
            .map(|(_, k)| k)
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// What to do with a guest access of `size` bytes at `gpa` (a write
    /// or not); `None`: it exits to the VMM.
    pub fn answer(&self, gpa: u64, size: u8, write: bool) -> Option<Answer<T>> {
        if size != shortcut::SIZE || self.is_empty() {
            return None;
        }
        match (self.get(gpa)?, write) {
            (Kind::Doorbell(t), true) => Some(Answer::Trigger(t)),
            (Kind::Doorbell(_), false) => None,
            (Kind::Constant(v), false) => Some(Answer::Read(v)),
            (Kind::Constant(_), true) => Some(Answer::Drop),
        }
    }

    fn position(&self, gpa: u64) -> Option<usize> {
        self.entries
            .iter()
            .position(|e| e.is_some_and(|(g, _)| g == gpa))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_only_what_each_kind_covers() {
        let mut s = Shortcuts::default();
        s.set(0x3001_0050, Kind::Doorbell(7u32)).unwrap();
        s.set(0x3001_0060, Kind::Constant(1)).unwrap();
        assert_eq!(s.answer(0x3001_0050, 4, true), Some(Answer::Trigger(7)));
        assert_eq!(s.answer(0x3001_0050, 4, false), None, "doorbell read");
        assert_eq!(s.answer(0x3001_0060, 4, false), Some(Answer::Read(1)));
        assert_eq!(s.answer(0x3001_0060, 4, true), Some(Answer::Drop));
        // Other widths and addresses exit.
        assert_eq!(s.answer(0x3001_0060, 8, false), None);
        assert_eq!(s.answer(0x3001_0050, 2, true), None);
        assert_eq!(s.answer(0x3001_0054, 4, true), None);
    }

    #[test]
    fn set_replaces_and_remove_clears() {
        let mut s = Shortcuts::default();
        s.set(0x1000, Kind::Constant(1u32)).unwrap();
        s.set(0x1000, Kind::Doorbell(3)).unwrap();
        assert_eq!(s.len(), 1);
        assert_eq!(s.get(0x1000), Some(Kind::Doorbell(3)));
        s.remove(0x1000).unwrap();
        assert!(s.is_empty());
        assert_eq!(s.answer(0x1000, 4, true), None);
        assert_eq!(s.remove(0x1000), Err(Error::NoEnt));
    }

    #[test]
    fn table_size_as_charged() {
        // The factory charges a Vm for its table (docs/kernel.md says 648
        // bytes); the kernel's doorbell is three words (task, capability
        // index, Irq).
        assert_eq!(core::mem::size_of::<Shortcuts<[u64; 3]>>(), 648);
    }

    #[test]
    fn refuses_bad_addresses_and_too_many() {
        let mut s: Shortcuts<u32> = Shortcuts::default();
        assert_eq!(s.set(0x1002, Kind::Constant(0)), Err(Error::Inval));
        assert_eq!(s.set(1 << 48, Kind::Constant(0)), Err(Error::Inval));
        for i in 0..shortcut::MAX as u64 {
            s.set(i * 4, Kind::Constant(i as u32)).unwrap();
        }
        assert_eq!(s.set(0x4000, Kind::Constant(0)), Err(Error::NoMem));
        // Replacing one still works when full; a freed slot is reused.
        s.set(8, Kind::Constant(99)).unwrap();
        assert_eq!(s.answer(8, 4, false), Some(Answer::Read(99)));
        s.remove(0).unwrap();
        s.set(0x4000, Kind::Constant(5)).unwrap();
        assert_eq!(s.len(), shortcut::MAX);
        assert_eq!(s.len(), s.entries.iter().flatten().count());
    }
}

//! Name spaces: names to capabilities (moe's own slots).
//!
//! A name is looked up whole first; otherwise its first `/` component is,
//! and the caller learns how many bytes of the name are left for the name
//! space found there (L4Re's `query` protocol).

use alloc::collections::BTreeMap;
use alloc::string::{String, ToString};

use l4_abi::Error;
use l4_ipc::protocols::{NAME_MAX, ns_flags};

/// An entry: the capability (moe's slot; `None` while only reserved) and
/// the registration flags ([`ns_flags`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// moe's capability slot.
    pub cap: Option<u64>,
    /// Flags: the rights clients get in the low bits.
    pub flags: u64,
}

/// A name space.
#[derive(Debug, Default)]
pub struct Names {
    map: BTreeMap<String, Entry>,
}

fn check_name(name: &str) -> Result<(), Error> {
    if name.is_empty() || name.len() > NAME_MAX || name.contains('/') || name.contains('\0') {
        return Err(Error::Inval);
    }
    Ok(())
}

impl Names {
    /// An empty name space.
    pub const fn new() -> Names {
        Names {
            map: BTreeMap::new(),
        }
    }

    /// Looks `name` up: the entry and the number of bytes of `name` left
    /// unresolved (after the `/` that follows the resolved part).
    pub fn query(&self, name: &str) -> Result<(Entry, u64), Error> {
        let (e, rest) = match self.map.get(name) {
            Some(e) => (e, 0),
            None => {
                let (first, rest) = name.split_once('/').ok_or(Error::NoEnt)?;
                (self.map.get(first).ok_or(Error::NoEnt)?, rest.len() as u64)
            }
        };
        if e.cap.is_none() {
            return Err(Error::Again);
        }
        Ok((*e, rest))
    }

    /// Registers `cap` (or only reserves the name) under `name`; returns the
    /// capability it replaces, which the caller releases.
    pub fn register(
        &mut self,
        name: &str,
        cap: Option<u64>,
        flags: u64,
    ) -> Result<Option<u64>, Error> {
        check_name(name)?;
        let entry = Entry { cap, flags };
        match self.map.get_mut(name) {
            Some(old) if flags & ns_flags::OVERWRITE != 0 || old.cap.is_none() => {
                let was = old.cap;
                *old = entry;
                Ok(was)
            }
            Some(_) => Err(Error::Exist),
            None => {
                self.map.insert(name.to_string(), entry);
                Ok(None)
            }
        }
    }

    /// Removes `name`; returns its capability for the caller to release.
    pub fn unlink(&mut self, name: &str) -> Result<Option<u64>, Error> {
        self.map.remove(name).map(|e| e.cap).ok_or(Error::NoEnt)
    }

    /// Every capability held (to release when the name space goes away).
    pub fn caps(&self) -> impl Iterator<Item = u64> + '_ {
        self.map.values().filter_map(|e| e.cap)
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    #[test]
    fn register_query_unlink() {
        let mut n = Names::new();
        assert!(n.is_empty());
        assert_eq!(n.register("vbus", Some(0x200), ns_flags::RW), Ok(None));
        assert_eq!(
            n.register("vbus", Some(0x201), ns_flags::RW),
            Err(Error::Exist)
        );
        assert_eq!(
            n.register("vbus", Some(0x201), ns_flags::RW | ns_flags::OVERWRITE),
            Ok(Some(0x200))
        );
        let (e, rest) = n.query("vbus").unwrap();
        assert_eq!((e.cap, rest), (Some(0x201), 0));
        // The rest of a path goes to the name space found.
        assert_eq!(n.query("vbus/a/b").map(|r| r.1), Ok(3));
        assert_eq!(n.query("nope").err(), Some(Error::NoEnt));
        assert_eq!(n.query("nope/x").err(), Some(Error::NoEnt));
        assert_eq!(n.register("later", None, 0), Ok(None));
        assert_eq!(n.query("later").err(), Some(Error::Again));
        assert_eq!(
            n.register("later", Some(5), 0),
            Ok(None),
            "fills a reservation"
        );
        assert_eq!(n.caps().collect::<Vec<_>>(), [5, 0x201]);
        assert_eq!(n.unlink("vbus"), Ok(Some(0x201)));
        assert_eq!(n.unlink("vbus"), Err(Error::NoEnt));
        assert_eq!(n.len(), 1);
    }

    #[test]
    fn bad_names() {
        let mut n = Names::new();
        for bad in ["", "a/b", "nul\0", &"x".repeat(NAME_MAX + 1)] {
            assert_eq!(n.register(bad, Some(1), 0), Err(Error::Inval), "{bad:?}");
        }
        assert!(n.register(&"x".repeat(NAME_MAX), Some(1), 0).is_ok());
    }
}

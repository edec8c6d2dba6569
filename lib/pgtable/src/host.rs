//! Translation tables in a host array, for the unit tests.

extern crate std;
use crate::{ENTRIES, PAGE_SIZE, Tables};
use std::{boxed::Box, vec::Vec};

/// Tables in a host array; "physical" addresses start at 0x1000.
pub struct Host {
    pub pages: Vec<Box<[u64; ENTRIES]>>,
    limit: usize,
}

impl Host {
    pub fn new(limit: usize) -> Self {
        Host {
            pages: Vec::new(),
            limit,
        }
    }
}

impl Tables for Host {
    fn alloc(&mut self) -> Option<u64> {
        if self.pages.len() >= self.limit {
            return None;
        }
        self.pages.push(Box::new([0; ENTRIES]));
        Some(self.pages.len() as u64 * PAGE_SIZE)
    }
    fn table(&mut self, pa: u64) -> &mut [u64; ENTRIES] {
        &mut self.pages[(pa / PAGE_SIZE) as usize - 1]
    }
}

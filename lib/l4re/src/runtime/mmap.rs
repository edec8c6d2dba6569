//! Memory system calls: `brk`, `mmap` (anonymous, and private or
//! read-only mappings of `rom/` files), `munmap`, `mprotect`, `madvise`,
//! and `mremap`'s refusals; none of them may touch the runtime's areas.
//! Small anonymous mappings share pool dataspaces ([`Pool`]).

use super::{Backend, Runtime, Space};
use crate::fd::File;
use crate::layout::*;
use crate::linux::errno::*;
use crate::linux::{SysResult, mman};
use crate::regions::{Backing, Kind, PAGE, Prot, Region, page_up};

/// Size of a dataspace that holds small anonymous mappings.
const POOL_SIZE: u64 = 256 << 10;
/// The largest anonymous mapping a pool serves.
const POOL_PIECE_MAX: u64 = 64 << 10;

/// One dataspace for many small anonymous mappings (musl's allocator makes
/// dozens of one-page mappings: a dataspace each cost a request to the
/// memory allocator, and for ned most of its dataspaces at start). Each
/// mapping gets fresh pages of it, never handed out twice, so they read as
/// zeros; the dataspace goes when the pool moved on and the last of its
/// mappings is gone.
#[derive(Clone, Copy, Debug)]
pub(super) struct Pool {
    ds: u64,
    /// Bytes handed out from the start.
    used: u64,
}

impl<B: Backend> Runtime<B> {
    /// The backing of a new anonymous mapping of `len` bytes (page
    /// aligned): a piece of the pool when small, else a dataspace of its
    /// own (created on first touch).
    fn anon_backing(&mut self, len: u64) -> Backing {
        let own = Backing::Anon {
            ds: None,
            offset: 0,
        };
        if len > POOL_PIECE_MAX {
            return own;
        }
        // Aligned as the mapping is placed, so that both can be mapped in
        // one piece.
        let align = placement_align(len);
        let fits = |p: &Pool| p.used.next_multiple_of(align) + len <= POOL_SIZE;
        if !self.pool.as_ref().is_some_and(fits) {
            let Ok(ds) = self.b.ds_alloc(POOL_SIZE, true) else {
                return own;
            };
            self.startup.dataspaces += 1;
            // The pool's own reference, until it moves on.
            self.refs.inc(ds);
            if let Some(old) = self.pool.replace(Pool { ds, used: 0 })
                && self.refs.dec(old.ds)
            {
                self.b.release_cap(old.ds);
            }
        }
        let Some(pool) = self.pool.as_mut() else {
            return own;
        };
        let offset = pool.used.next_multiple_of(align);
        pool.used = offset + len;
        Backing::Anon {
            ds: Some(pool.ds),
            offset,
        }
    }

    pub(super) fn sys_brk(&mut self, addr: u64) -> u64 {
        if addr < self.brk_start || addr > self.brk_start + BRK_MAX {
            return self.brk_cur;
        }
        let Some(top) = page_up(addr) else {
            return self.brk_cur;
        };
        if top > self.brk_end {
            let end = top
                .next_multiple_of(BRK_CHUNK)
                .min(self.brk_start + BRK_MAX);
            let r = Region::new(
                self.brk_end,
                end,
                Prot::RW,
                Backing::Anon {
                    ds: None,
                    offset: 0,
                },
                Kind::Brk,
            );
            if self.attach(Space::Program, r).is_err() {
                return self.brk_cur;
            }
            self.brk_end = end;
        } else if top < self.brk_end && top < page_up(self.brk_cur).unwrap_or(top) {
            // Shrinking: give the memory back; growing again gives zeros.
            self.detach(Space::Program, top, self.brk_end);
            self.brk_end = top;
        }
        self.brk_cur = addr;
        addr
    }

    fn touches_runtime(&self, start: u64, end: u64) -> bool {
        end > USER_END
            || start < PROGRAM_MIN
            || self
                .regions
                .intersecting(start, end)
                .iter()
                .any(|r| r.kind == Kind::Runtime)
    }

    /// The end of the `len` bytes (rounded up to pages) at `addr` if the
    /// program may change them; `err` if the range overflows or touches
    /// the runtime or what lies outside the program's part.
    fn program_range_end(&self, addr: u64, len: u64, err: i64) -> Result<u64, i64> {
        let end = page_up(len).and_then(|l| addr.checked_add(l)).ok_or(err)?;
        if self.touches_runtime(addr, end) {
            return Err(err);
        }
        Ok(end)
    }

    pub(super) fn sys_mmap(
        &mut self,
        addr: u64,
        len: u64,
        prot: u64,
        flags: u64,
        fd: i64,
        off: u64,
    ) -> SysResult {
        if len == 0 || !off.is_multiple_of(PAGE) {
            return Err(EINVAL);
        }
        let len = page_up(len).ok_or(ENOMEM)?;
        if !matches!(flags & 3, 1..=3) {
            return Err(EINVAL);
        }
        let p = Prot::from_linux(prot);
        let backing = if flags & mman::MAP_ANONYMOUS != 0 {
            self.anon_backing(len)
        } else {
            let f = match &self.fds.get(fd as u64)?.file {
                File::Rom(f) => f.clone(),
                _ => return Err(ENODEV),
            };
            if p.write() {
                if flags & mman::MAP_SHARED != 0 {
                    return Err(EACCES);
                }
                // A private writable copy is made below.
                Backing::Anon {
                    ds: None,
                    offset: 0,
                }
            } else {
                Backing::Ds {
                    ds: f.ds,
                    offset: off,
                }
            }
        };
        let fixed = flags & (mman::MAP_FIXED | mman::MAP_FIXED_NOREPLACE) != 0;
        let start = if fixed {
            if !addr.is_multiple_of(PAGE) {
                return Err(EINVAL);
            }
            let end = addr.checked_add(len).ok_or(ENOMEM)?;
            if self.touches_runtime(addr, end) {
                return Err(if addr < PROGRAM_MIN { EPERM } else { ENOMEM });
            }
            if self.regions.overlaps(addr, end) {
                if flags & mman::MAP_FIXED_NOREPLACE != 0 {
                    return Err(EEXIST);
                }
                self.detach(Space::Program, addr, end);
            }
            addr
        } else {
            let hint_ok = addr != 0
                && addr.is_multiple_of(PAGE)
                && addr.checked_add(len).is_some_and(|e| {
                    addr >= PROGRAM_MIN && e <= MMAP_END && !self.regions.overlaps(addr, e)
                });
            if hint_ok {
                addr
            } else {
                self.regions
                    .find_free(len, MMAP_BASE, MMAP_END, placement_align(len))
                    .ok_or(ENOMEM)?
            }
        };
        self.attach(
            Space::Program,
            Region::new(start, start + len, p, backing, Kind::Mmap),
        )?;
        if flags & mman::MAP_ANONYMOUS == 0 && p.write() {
            // Private writable file mapping: copy the file in.
            let f = match &self.fds.get(fd as u64)?.file {
                File::Rom(f) => f.clone(),
                _ => return Err(ENODEV),
            };
            let n = f.size.saturating_sub(off).min(len);
            let r = (|| {
                self.ensure(Space::Windows, f.window + off, n, false)?;
                self.ensure(Space::Program, start, n, true)?;
                self.b.copy_mem(start, f.window + off, n);
                Ok(())
            })();
            if let Err(e) = r {
                self.detach(Space::Program, start, start + len);
                return Err(e);
            }
        }
        if flags & mman::MAP_POPULATE != 0 {
            // A file's pages as far as the file goes. As on Linux, a page
            // that cannot be mapped now is left to its first touch.
            let file_left = match self.fds.get(fd as u64).map(|d| &d.file) {
                Ok(File::Rom(f)) if flags & mman::MAP_ANONYMOUS == 0 => {
                    Some(f.size.saturating_sub(off))
                }
                _ => None,
            };
            let n = file_left.and_then(page_up).map_or(len, |n| n.min(len));
            let _ = self.ensure(Space::Program, start, n, p.write());
        }
        Ok(start)
    }

    pub(super) fn sys_munmap(&mut self, addr: u64, len: u64) -> SysResult {
        if !addr.is_multiple_of(PAGE) || len == 0 {
            return Err(EINVAL);
        }
        let end = self.program_range_end(addr, len, EINVAL)?;
        self.detach(Space::Program, addr, end);
        Ok(0)
    }

    pub(super) fn sys_mremap(&mut self, old: u64, old_len: u64) -> SysResult {
        // Not moving or growing mappings: EFAULT where nothing is mapped
        // (musl's stack probing relies on it), else ENOMEM (callers then
        // allocate and copy).
        let end = old.checked_add(old_len.max(1)).ok_or(EFAULT)?;
        if !old.is_multiple_of(PAGE) {
            return Err(EINVAL);
        }
        if !self.regions.covers(old, end) || self.touches_runtime(old, end) {
            return Err(EFAULT);
        }
        Err(ENOMEM)
    }

    pub(super) fn sys_mprotect(&mut self, addr: u64, len: u64, prot: u64) -> SysResult {
        if !addr.is_multiple_of(PAGE) {
            return Err(EINVAL);
        }
        if len == 0 {
            return Ok(0);
        }
        let end = self.program_range_end(addr, len, ENOMEM)?;
        let p = Prot::from_linux(prot);
        self.regions
            .protect(addr, end, p, &mut self.refs)
            .map_err(|_| ENOMEM)?;
        // Mapped pages keep their old rights until unmapped; the next
        // touch maps them with the new ones.
        self.unmap_range(addr, end);
        Ok(0)
    }

    pub(super) fn sys_madvise(&mut self, addr: u64, len: u64, advice: u64) -> SysResult {
        const MADV_DONTNEED: u64 = 4;
        if !addr.is_multiple_of(PAGE) {
            return Err(EINVAL);
        }
        if advice != MADV_DONTNEED || len == 0 {
            return Ok(0);
        }
        let end = self.program_range_end(addr, len, EINVAL)?;
        // Anonymous memory reads as zeros afterwards: its pieces in the
        // range get fresh (lazily created) memory.
        for r in self.regions.intersecting(addr, end) {
            if let Backing::Anon { ds: Some(_), .. } = r.backing {
                let s = addr.max(r.start);
                let e = end.min(r.end);
                self.detach(Space::Program, s, e);
                let fresh = Backing::Anon {
                    ds: None,
                    offset: 0,
                };
                self.attach(Space::Program, Region::new(s, e, r.prot, fresh, r.kind))?;
            }
        }
        Ok(0)
    }
}

/// How a mapping of `len` bytes is aligned where the runtime places it:
/// on its size rounded up to a power of two, at most 2 MiB, so that it can
/// be mapped in large pieces: a small anonymous mapping at once (its
/// dataspace is one block), a file from `rom/` in pieces as large as its
/// boot module's alignment (up to 2 MiB, bootstrap/format) allows, e.g. a
/// 1 MB ramdisk in one piece instead of sixteen.
pub(super) fn placement_align(len: u64) -> u64 {
    len.checked_next_power_of_two()
        .unwrap_or(1 << 21)
        .clamp(PAGE, 1 << 21)
}

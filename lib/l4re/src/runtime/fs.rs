//! Files: the read-only `rom/` namespace as files (open, read, seek,
//! stat, access, close), each open file read through a window of the
//! runtime onto its dataspace; `/proc/self/auxv` ([`fd::ProcFile`]);
//! descriptor flags (`fcntl`) and the working directory (`/`).

use super::{Backend, IO_MAX, Runtime, Space};
use crate::fd::{self, File, ProcFile, RomFile};
use crate::linux::errno::*;
use crate::linux::{self, Stat, SysResult};
use crate::regions::PAGE;
use alloc::sync::Arc;

impl<B: Backend> Runtime<B> {
    pub(super) fn sys_pread(&mut self, fd: u64, buf: u64, len: u64, off: u64) -> SysResult {
        match self.fds.get(fd)?.file.clone() {
            File::Rom(f) => self.rom_read(&f, off, buf, len),
            File::Proc(f) => self.proc_read(&f, off, buf, len),
            _ => Err(ESPIPE),
        }
    }

    pub(super) fn proc_read(&mut self, f: &ProcFile, pos: u64, buf: u64, len: u64) -> SysResult {
        let data = f.data.get(pos as usize..).unwrap_or_default();
        let n = data.len().min(len as usize).min(IO_MAX);
        self.write_user(buf, &data[..n])?;
        Ok(n as u64)
    }

    /// The contents of `/proc/self/<what>`, if the runtime has that file.
    fn proc_file(&self, path: &[u8]) -> Option<&Arc<[u8]>> {
        match path {
            b"/proc/self/auxv" => Some(&self.auxv),
            _ => None,
        }
    }

    pub(super) fn rom_read(&mut self, f: &RomFile, pos: u64, buf: u64, len: u64) -> SysResult {
        if pos >= f.size {
            return Ok(0);
        }
        let n = len.min(f.size - pos).min(IO_MAX as u64);
        self.ensure(Space::Program, buf, n, true)?;
        self.ensure(Space::Windows, f.window + pos, n, false)?;
        self.b.copy_mem(buf, f.window + pos, n);
        Ok(n)
    }

    pub(super) fn sys_openat(&mut self, dirfd: i64, path: u64, flags: u64) -> SysResult {
        let p = self.read_cstr(path, 4096)?;
        if dirfd != linux::AT_FDCWD && p.first() != Some(&b'/') {
            self.fds.get(dirfd as u64)?;
            return Err(ENOTDIR);
        }
        use linux::open_flags::*;
        let writes = flags & O_ACCMODE != O_RDONLY || flags & (O_CREAT | O_TRUNC) != 0;
        if let Some(data) = self.proc_file(&p) {
            if writes {
                return Err(EACCES);
            }
            let file = File::Proc(ProcFile {
                data: data.clone(),
                pos: 0,
            });
            return self.fds.open(file, flags & O_CLOEXEC != 0);
        }
        let Some(name) = fd::rom_name(&p) else {
            return Err(ENOENT);
        };
        let ds = self.b.rom_open(name)?;
        if writes {
            self.b.release_cap(ds);
            return Err(EROFS);
        }
        if flags & O_DIRECTORY != 0 {
            self.b.release_cap(ds);
            return Err(ENOTDIR);
        }
        let size = match self.b.ds_size(ds) {
            Ok(s) => s,
            Err(e) => {
                self.b.release_cap(ds);
                return Err(e);
            }
        };
        let window = match self.open_window(ds, size) {
            Ok(w) => w,
            Err(e) => {
                self.b.release_cap(ds);
                return Err(e);
            }
        };
        let file = File::Rom(RomFile {
            name: name.into(),
            ds,
            size,
            window,
            pos: 0,
        });
        match self.fds.open(file, flags & O_CLOEXEC != 0) {
            Ok(fd) => Ok(fd),
            Err(e) => {
                self.close_window(window, size);
                Err(e)
            }
        }
    }

    pub(super) fn sys_close(&mut self, fd: u64) -> SysResult {
        if let File::Rom(f) = self.fds.close(fd)? {
            self.close_window(f.window, f.size);
        }
        Ok(0)
    }

    pub(super) fn sys_lseek(&mut self, fd: u64, off: i64, whence: u64) -> SysResult {
        match &mut self.fds.get_mut(fd)?.file {
            File::Rom(f) => {
                f.pos = fd::seek(f.pos, f.size, off, whence)?;
                Ok(f.pos)
            }
            File::Proc(f) => {
                f.pos = fd::seek(f.pos, f.data.len() as u64, off, whence)?;
                Ok(f.pos)
            }
            _ => Err(ESPIPE),
        }
    }

    fn stat_of(file: &File) -> Stat {
        match file {
            File::Rom(f) => Stat {
                dev: 0x4c34,
                ino: f.ds,
                mode: linux::S_IFREG | 0o444,
                nlink: 1,
                size: f.size,
                blksize: PAGE as u32,
                blocks: f.size.div_ceil(512),
                rdev: 0,
            },
            File::Proc(_) => Self::proc_stat(),
            _ => Stat {
                dev: 0x4c35,
                ino: 1,
                mode: linux::S_IFCHR | 0o620,
                nlink: 1,
                size: 0,
                blksize: 1024,
                blocks: 0,
                rdev: 136 << 8,
            },
        }
    }

    /// A `/proc/self` file's status, as Linux gives it: read-only, size 0.
    fn proc_stat() -> Stat {
        Stat {
            dev: 0x4c36,
            ino: 3,
            mode: linux::S_IFREG | 0o400,
            nlink: 1,
            size: 0,
            blksize: 1024,
            blocks: 0,
            rdev: 0,
        }
    }

    fn put_stat(&mut self, st: &Stat, buf: u64, statx: bool) -> SysResult {
        if statx {
            self.write_user(buf, &st.to_statx())?;
        } else {
            self.write_user(buf, &st.to_bytes())?;
        }
        Ok(0)
    }

    pub(super) fn sys_fstat(&mut self, fd: u64, buf: u64, statx: bool) -> SysResult {
        let st = Self::stat_of(&self.fds.get(fd)?.file);
        self.put_stat(&st, buf, statx)
    }

    pub(super) fn sys_fstatat(
        &mut self,
        dirfd: i64,
        path: u64,
        buf: u64,
        flags: u64,
        statx: bool,
    ) -> SysResult {
        let p = self.read_cstr(path, 4096)?;
        if p.is_empty() {
            if flags & linux::AT_EMPTY_PATH == 0 {
                return Err(ENOENT);
            }
            return self.sys_fstat(dirfd as u64, buf, statx);
        }
        let trimmed = p.strip_prefix(b"./").unwrap_or(&p);
        let trimmed = trimmed.strip_prefix(b"/").unwrap_or(trimmed);
        if trimmed == b"rom" || trimmed == b"rom/" || trimmed.is_empty() || trimmed == b"." {
            let st = Stat {
                dev: 0x4c34,
                ino: 2,
                mode: linux::S_IFDIR | 0o555,
                nlink: 2,
                blksize: PAGE as u32,
                ..Default::default()
            };
            return self.put_stat(&st, buf, statx);
        }
        if self.proc_file(&p).is_some() {
            return self.put_stat(&Self::proc_stat(), buf, statx);
        }
        let name = fd::rom_name(&p).ok_or(ENOENT)?;
        let ds = self.b.rom_open(name)?;
        let size = self.b.ds_size(ds);
        self.b.release_cap(ds);
        let st = Self::stat_of(&File::Rom(RomFile {
            name: name.into(),
            ds,
            size: size?,
            window: 0,
            pos: 0,
        }));
        self.put_stat(&st, buf, statx)
    }

    pub(super) fn sys_faccessat(&mut self, _dirfd: i64, path: u64, mode: u64) -> SysResult {
        let p = self.read_cstr(path, 4096)?;
        if self.proc_file(&p).is_some() {
            // Readable, as on Linux for the task's own files.
            return if mode & 2 != 0 { Err(EACCES) } else { Ok(0) };
        }
        let name = fd::rom_name(&p).ok_or(ENOENT)?;
        let ds = self.b.rom_open(name)?;
        self.b.release_cap(ds);
        if mode & 2 != 0 { Err(EROFS) } else { Ok(0) }
    }

    pub(super) fn sys_fcntl(&mut self, fd: u64, cmd: u64, arg: u64) -> SysResult {
        const F_DUPFD: u64 = 0;
        const F_GETFD: u64 = 1;
        const F_SETFD: u64 = 2;
        const F_GETFL: u64 = 3;
        const F_SETFL: u64 = 4;
        const F_DUPFD_CLOEXEC: u64 = 1030;
        let f = self.fds.get_mut(fd)?;
        match cmd {
            F_GETFD => Ok(f.cloexec as u64),
            F_SETFD => {
                f.cloexec = arg & 1 != 0;
                Ok(0)
            }
            F_GETFL => Ok(match f.file {
                File::Stdin | File::Stdout | File::Stderr => 2,
                File::Rom(_) | File::Proc(_) => 0,
            }),
            F_SETFL => Ok(0),
            F_DUPFD | F_DUPFD_CLOEXEC => match f.file {
                File::Rom(_) | File::Proc(_) => Err(EINVAL),
                ref other => {
                    let file = other.clone();
                    self.fds.open(file, cmd == F_DUPFD_CLOEXEC)
                }
            },
            _ => Err(EINVAL),
        }
    }

    pub(super) fn sys_getcwd(&mut self, buf: u64, size: u64) -> SysResult {
        if size < 2 {
            return Err(ERANGE);
        }
        self.write_user(buf, b"/\0")?;
        Ok(2)
    }
}

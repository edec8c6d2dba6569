//! File descriptors: 0, 1 and 2 are the task's log (input and output),
//! others are `rom/` files, read through a runtime window onto their
//! dataspace, or files of `/proc/self` the runtime makes up.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use crate::linux::errno::*;

/// Most descriptors of a task.
pub const MAX_FDS: usize = 256;

/// `lseek` whence values.
pub mod whence {
    /// From the start.
    pub const SEEK_SET: u64 = 0;
    /// From the current position.
    pub const SEEK_CUR: u64 = 1;
    /// From the end.
    pub const SEEK_END: u64 = 2;
}

/// An open `rom/` file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RomFile {
    /// The name under `rom/`.
    pub name: String,
    /// Its dataspace capability.
    pub ds: u64,
    /// Its size in bytes.
    pub size: u64,
    /// Where the runtime sees it (a window of the file's size).
    pub window: u64,
    /// The file position.
    pub pos: u64,
}

/// An open file of `/proc/self`: bytes the runtime made (shared with the
/// runtime, which keeps them: opening or reading copies nothing). There
/// is one, `auxv`, the auxiliary vector the program started with (which
/// libraries read to learn the CPU's features, libdeflate among them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcFile {
    /// Its contents.
    pub data: Arc<[u8]>,
    /// The file position.
    pub pos: u64,
}

/// What a descriptor refers to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum File {
    /// The log, read side.
    Stdin,
    /// The log, write side (stdout).
    Stdout,
    /// The log, write side (stderr).
    Stderr,
    /// A `rom/` file.
    Rom(RomFile),
    /// A file of `/proc/self`.
    Proc(ProcFile),
}

/// An open descriptor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fd {
    /// The file.
    pub file: File,
    /// `FD_CLOEXEC`.
    pub cloexec: bool,
}

/// The descriptor table.
#[derive(Clone, Debug)]
pub struct FdTable {
    fds: Vec<Option<Fd>>,
}

impl Default for FdTable {
    fn default() -> Self {
        FdTable::new()
    }
}

impl FdTable {
    /// 0, 1 and 2 open on the log.
    pub fn new() -> FdTable {
        let open = |file| {
            Some(Fd {
                file,
                cloexec: false,
            })
        };
        FdTable {
            fds: alloc::vec![open(File::Stdin), open(File::Stdout), open(File::Stderr)],
        }
    }

    /// Installs `file` at the lowest free descriptor.
    pub fn open(&mut self, file: File, cloexec: bool) -> Result<u64, i64> {
        let fd = Fd { file, cloexec };
        if let Some(i) = self.fds.iter().position(Option::is_none) {
            self.fds[i] = Some(fd);
            return Ok(i as u64);
        }
        if self.fds.len() >= MAX_FDS {
            return Err(EMFILE);
        }
        self.fds.push(Some(fd));
        Ok(self.fds.len() as u64 - 1)
    }

    /// The descriptor `fd`.
    pub fn get(&self, fd: u64) -> Result<&Fd, i64> {
        self.fds
            .get(usize::try_from(fd).map_err(|_| EBADF)?)
            .and_then(Option::as_ref)
            .ok_or(EBADF)
    }

    /// The descriptor `fd`, to change it.
    pub fn get_mut(&mut self, fd: u64) -> Result<&mut Fd, i64> {
        self.fds
            .get_mut(usize::try_from(fd).map_err(|_| EBADF)?)
            .and_then(Option::as_mut)
            .ok_or(EBADF)
    }

    /// Closes `fd`; returns its file (release what it holds).
    pub fn close(&mut self, fd: u64) -> Result<File, i64> {
        let slot = self
            .fds
            .get_mut(usize::try_from(fd).map_err(|_| EBADF)?)
            .ok_or(EBADF)?;
        let f = slot.take().ok_or(EBADF)?;
        while self.fds.last().is_some_and(Option::is_none) {
            self.fds.pop();
        }
        Ok(f.file)
    }

    /// Number of open descriptors.
    pub fn count(&self) -> usize {
        self.fds.iter().flatten().count()
    }
}

/// The new position of an `lseek` on a file of `size` at `pos`.
pub fn seek(pos: u64, size: u64, offset: i64, whence: u64) -> Result<u64, i64> {
    let base = match whence {
        whence::SEEK_SET => 0,
        whence::SEEK_CUR => pos,
        whence::SEEK_END => size,
        _ => return Err(EINVAL),
    };
    let new = (base as i64).checked_add(offset).ok_or(EOVERFLOW)?;
    if new < 0 {
        return Err(EINVAL);
    }
    Ok(new as u64)
}

/// The name under `rom/` that a path names: `rom/x`, `/rom/x` or
/// `./rom/x`. `None` for other paths and for names with empty, `.` or
/// `..` components.
pub fn rom_name(path: &[u8]) -> Option<&str> {
    let p = core::str::from_utf8(path).ok()?;
    let p = p.strip_prefix("./").unwrap_or(p);
    let p = p.strip_prefix('/').unwrap_or(p);
    let name = l4_loader::rom_name(p)?;
    if name
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return None;
    }
    Some(name)
}

/// Splits log output into messages of at most `max` bytes, cutting after
/// the last newline inside a full message where there is one, so lines
/// stay whole.
pub fn log_chunks(data: &[u8], max: usize) -> impl Iterator<Item = &[u8]> {
    let mut rest = data;
    core::iter::from_fn(move || {
        if rest.is_empty() || max == 0 {
            return None;
        }
        let n = if rest.len() <= max {
            rest.len()
        } else {
            rest[..max]
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(max, |i| i + 1)
        };
        let (a, b) = rest.split_at(n);
        rest = b;
        Some(a)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rom(name: &str) -> File {
        File::Rom(RomFile {
            name: name.into(),
            ds: 0x200,
            size: 10,
            window: 0,
            pos: 0,
        })
    }

    #[test]
    fn lowest_free_descriptor() {
        let mut t = FdTable::new();
        assert_eq!(t.count(), 3);
        assert_eq!(t.open(rom("a"), true), Ok(3));
        assert_eq!(t.open(rom("b"), false), Ok(4));
        assert_eq!(t.close(3).unwrap(), rom("a"));
        assert_eq!(t.close(3), Err(EBADF));
        assert_eq!(t.open(rom("c"), false), Ok(3));
        assert_eq!(t.close(1), Ok(File::Stdout));
        assert_eq!(t.open(rom("d"), false), Ok(1));
        assert_eq!(t.get(99), Err(EBADF));
        assert_eq!(t.get(u64::MAX), Err(EBADF));
        assert!(t.get(4).unwrap().file == rom("b"));
        t.get_mut(4).unwrap().cloexec = true;
        assert!(t.get(4).unwrap().cloexec);
        while t.open(rom("x"), false).is_ok() {}
        assert_eq!(t.count(), MAX_FDS);
        assert_eq!(t.open(rom("y"), false), Err(EMFILE));
    }

    #[test]
    fn seeking() {
        use whence::*;
        assert_eq!(seek(5, 10, 3, SEEK_SET), Ok(3));
        assert_eq!(seek(5, 10, 3, SEEK_CUR), Ok(8));
        assert_eq!(seek(5, 10, -2, SEEK_END), Ok(8));
        assert_eq!(seek(5, 10, 20, SEEK_END), Ok(30), "past the end is fine");
        assert_eq!(seek(5, 10, -6, SEEK_CUR), Err(EINVAL));
        assert_eq!(seek(5, 10, 0, 7), Err(EINVAL));
        assert_eq!(seek(u64::MAX / 2, 0, i64::MAX, SEEK_CUR), Err(EOVERFLOW));
    }

    #[test]
    fn rom_paths() {
        assert_eq!(rom_name(b"rom/stdtest.txt"), Some("stdtest.txt"));
        assert_eq!(rom_name(b"/rom/a/b"), Some("a/b"));
        assert_eq!(rom_name(b"./rom/x"), Some("x"));
        for bad in [
            &b"rom/"[..],
            b"rom",
            b"/etc/passwd",
            b"rom/../x",
            b"rom//x",
            b"rom/./x",
            b"romx",
            b"\xff",
        ] {
            assert_eq!(rom_name(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn log_lines_stay_whole() {
        let v: Vec<&[u8]> = log_chunks(b"aaaa\nbbbb\ncc", 8).collect();
        assert_eq!(v, [&b"aaaa\n"[..], b"bbbb\ncc"]);
        let v: Vec<&[u8]> = log_chunks(b"aa\nbbbbbb\ncccccc", 8).collect();
        assert_eq!(v, [&b"aa\n"[..], b"bbbbbb\n", b"cccccc"]);
        let v: Vec<&[u8]> = log_chunks(b"0123456789", 4).collect();
        assert_eq!(v, [&b"0123"[..], b"4567", b"89"]);
        assert_eq!(log_chunks(b"", 4).count(), 0);
        assert_eq!(log_chunks(b"abc", 0).count(), 0);
        let data = [b'x'; 1000];
        assert_eq!(log_chunks(&data, 488).map(<[u8]>::len).sum::<usize>(), 1000);
    }
}

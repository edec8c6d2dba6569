//! Writing cpio archives in the "newc" format, the format Linux unpacks as
//! its initramfs.
//!
//! Each member is a 110-byte ASCII header (`070701`, then thirteen 8-digit
//! hexadecimal fields), the NUL-terminated name padded to a multiple of four
//! bytes (counting the header), and the data padded to a multiple of four.
//! The archive ends with the member `TRAILER!!!`. Owners are root, times are
//! zero, so the same content gives the same bytes.

use crate::error::{Result, bail};

/// File type bits of `mode`.
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;

/// A newc archive being built in memory.
#[derive(Default)]
pub struct Archive {
    bytes: Vec<u8>,
    /// The next inode number (each member gets its own).
    next_ino: u32,
}

impl Archive {
    pub fn new() -> Self {
        Archive {
            next_ino: 1,
            ..Archive::default()
        }
    }

    /// A directory with permissions `perm` (e.g. 0o755).
    pub fn dir(&mut self, path: &str, perm: u32) -> Result<()> {
        self.member(path, S_IFDIR | perm, 2, (0, 0), &[])
    }

    /// A regular file.
    pub fn file(&mut self, path: &str, perm: u32, data: &[u8]) -> Result<()> {
        self.member(path, S_IFREG | perm, 1, (0, 0), data)
    }

    /// A symbolic link to `target`.
    pub fn symlink(&mut self, path: &str, target: &str) -> Result<()> {
        self.member(path, S_IFLNK | 0o777, 1, (0, 0), target.as_bytes())
    }

    /// A character device node `major:minor`.
    pub fn char_device(&mut self, path: &str, perm: u32, major: u32, minor: u32) -> Result<()> {
        self.member(path, S_IFCHR | perm, 1, (major, minor), &[])
    }

    /// Appends the trailer and returns the archive.
    pub fn finish(mut self) -> Vec<u8> {
        self.write_member("TRAILER!!!", 0, 1, 0, (0, 0), &[]);
        self.bytes
    }

    fn member(
        &mut self,
        path: &str,
        mode: u32,
        nlink: u32,
        rdev: (u32, u32),
        data: &[u8],
    ) -> Result<()> {
        let name = path.trim_start_matches('/');
        if name.is_empty() || name.contains('\0') || name.split('/').any(|c| c == "..") {
            bail!("cpio: bad member name {path:?}");
        }
        if u32::try_from(data.len()).is_err() {
            bail!("cpio: {path} is larger than 4 GiB");
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        self.write_member(name, mode, nlink, ino, rdev, data);
        Ok(())
    }

    fn write_member(
        &mut self,
        name: &str,
        mode: u32,
        nlink: u32,
        ino: u32,
        (rmajor, rminor): (u32, u32),
        data: &[u8],
    ) {
        let name_size = name.len() + 1;
        let fields = [
            ino,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime
            data.len() as u32,
            0, // devmajor
            0, // devminor
            rmajor,
            rminor,
            name_size as u32,
            0, // check (only for the "crc" format)
        ];
        self.bytes.extend_from_slice(b"070701");
        for field in fields {
            self.bytes
                .extend_from_slice(format!("{field:08x}").as_bytes());
        }
        self.bytes.extend_from_slice(name.as_bytes());
        self.bytes.push(0);
        self.pad();
        self.bytes.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.bytes.len().is_multiple_of(4) {
            self.bytes.push(0);
        }
    }
}

/// (name, mode, rdev major, data) of each member of a newc archive, read
/// back (for tests; panics on a malformed archive).
#[cfg(test)]
pub fn members(bytes: &[u8]) -> Vec<(String, u32, u32, Vec<u8>)> {
    let field = |at: usize, i: usize| {
        let text = std::str::from_utf8(&bytes[at + 6 + 8 * i..at + 14 + 8 * i]).unwrap();
        u32::from_str_radix(text, 16).unwrap() as usize
    };
    let align = |n: usize| n.div_ceil(4) * 4;
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        assert_eq!(&bytes[at..at + 6], b"070701", "magic at {at}");
        let mode = field(at, 1) as u32;
        let size = field(at, 6);
        let rmajor = field(at, 9) as u32;
        let name_size = field(at, 11);
        let name = &bytes[at + 110..at + 110 + name_size - 1];
        assert_eq!(bytes[at + 110 + name_size - 1], 0);
        let data_at = align(at + 110 + name_size);
        let name = String::from_utf8(name.to_vec()).unwrap();
        let data = bytes[data_at..data_at + size].to_vec();
        at = align(data_at + size);
        if name == "TRAILER!!!" {
            assert_eq!(at, bytes.len());
            return out;
        }
        out.push((name, mode, rmajor, data));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_round_trip() {
        let mut a = Archive::new();
        a.dir("/bin", 0o755).unwrap();
        a.file("/init", 0o755, b"#!/bin/sh\n").unwrap();
        a.symlink("bin/sh", "busybox").unwrap();
        a.char_device("dev/console", 0o600, 5, 1).unwrap();
        a.file("empty", 0o644, b"").unwrap();
        let bytes = a.finish();
        assert_eq!(bytes.len() % 4, 0);
        let m = members(&bytes);
        assert_eq!(m[0], ("bin".into(), 0o40755, 0, vec![]));
        assert_eq!(m[1], ("init".into(), 0o100755, 0, b"#!/bin/sh\n".to_vec()));
        assert_eq!(m[2], ("bin/sh".into(), 0o120777, 0, b"busybox".to_vec()));
        assert_eq!(m[3], ("dev/console".into(), 0o20600, 5, vec![]));
        assert_eq!(m[4].0, "empty");
        assert_eq!(m.len(), 5);
    }

    #[test]
    fn header_layout() {
        let mut a = Archive::new();
        a.file("a", 0o644, b"xy").unwrap();
        let bytes = a.finish();
        // 110-byte header, "a\0" padded to 112, data padded to 116.
        assert_eq!(&bytes[..14], b"07070100000001");
        assert_eq!(&bytes[110..112], b"a\0");
        assert_eq!(&bytes[112..116], b"xy\0\0");
        assert_eq!(&bytes[116..122], b"070701");
    }

    #[test]
    fn bad_names_are_refused() {
        let mut a = Archive::new();
        assert!(a.file("/", 0o644, b"").is_err());
        assert!(a.file("a/../b", 0o644, b"").is_err());
        assert!(a.file("a\0b", 0o644, b"").is_err());
    }
}

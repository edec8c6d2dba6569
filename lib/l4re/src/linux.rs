//! The Linux ABI as AArch64 programs see it: system-call numbers (the
//! generic table, `asm-generic/unistd.h`), error numbers, flags and the
//! layouts of the structures the runtime writes.

/// Error numbers (`asm-generic/errno-base.h`, `errno.h`). System calls
/// return their negation in `x0`.
pub mod errno {
    /// Operation not permitted.
    pub const EPERM: i64 = 1;
    /// No such file or directory.
    pub const ENOENT: i64 = 2;
    /// No such process.
    pub const ESRCH: i64 = 3;
    /// Interrupted system call.
    pub const EINTR: i64 = 4;
    /// I/O error.
    pub const EIO: i64 = 5;
    /// Bad file descriptor.
    pub const EBADF: i64 = 9;
    /// Try again (also `EWOULDBLOCK`).
    pub const EAGAIN: i64 = 11;
    /// Out of memory.
    pub const ENOMEM: i64 = 12;
    /// Permission denied.
    pub const EACCES: i64 = 13;
    /// Bad address.
    pub const EFAULT: i64 = 14;
    /// File exists.
    pub const EEXIST: i64 = 17;
    /// No such device.
    pub const ENODEV: i64 = 19;
    /// Not a directory.
    pub const ENOTDIR: i64 = 20;
    /// Is a directory.
    pub const EISDIR: i64 = 21;
    /// Invalid argument.
    pub const EINVAL: i64 = 22;
    /// Too many open files.
    pub const EMFILE: i64 = 24;
    /// Not a typewriter.
    pub const ENOTTY: i64 = 25;
    /// Illegal seek.
    pub const ESPIPE: i64 = 29;
    /// Read-only file system.
    pub const EROFS: i64 = 30;
    /// Result too large.
    pub const ERANGE: i64 = 34;
    /// File name too long.
    pub const ENAMETOOLONG: i64 = 36;
    /// Function not implemented.
    pub const ENOSYS: i64 = 38;
    /// Value too large for the data type.
    pub const EOVERFLOW: i64 = 75;
    /// Operation not supported.
    pub const EOPNOTSUPP: i64 = 95;
    /// Timed out.
    pub const ETIMEDOUT: i64 = 110;
}

l4_abi::numbered_enum! {
    /// The system calls the runtime knows, by AArch64 number.
    #[allow(missing_docs)]
    pub enum Sys: u64 { from_nr, nr, name }
    Getcwd = 17, "getcwd";
    Fcntl = 25, "fcntl";
    Ioctl = 29, "ioctl";
    Faccessat = 48, "faccessat";
    Openat = 56, "openat";
    Close = 57, "close";
    Getdents64 = 61, "getdents64";
    Lseek = 62, "lseek";
    Read = 63, "read";
    Write = 64, "write";
    Readv = 65, "readv";
    Writev = 66, "writev";
    Pread64 = 67, "pread64";
    Ppoll = 73, "ppoll";
    Readlinkat = 78, "readlinkat";
    Newfstatat = 79, "newfstatat";
    Fstat = 80, "fstat";
    Exit = 93, "exit";
    ExitGroup = 94, "exit_group";
    SetTidAddress = 96, "set_tid_address";
    Futex = 98, "futex";
    SetRobustList = 99, "set_robust_list";
    Nanosleep = 101, "nanosleep";
    ClockGettime = 113, "clock_gettime";
    ClockGetres = 114, "clock_getres";
    ClockNanosleep = 115, "clock_nanosleep";
    SchedSetaffinity = 122, "sched_setaffinity";
    SchedGetaffinity = 123, "sched_getaffinity";
    SchedYield = 124, "sched_yield";
    Kill = 129, "kill";
    Tkill = 130, "tkill";
    Tgkill = 131, "tgkill";
    Sigaltstack = 132, "sigaltstack";
    RtSigaction = 134, "rt_sigaction";
    RtSigprocmask = 135, "rt_sigprocmask";
    Uname = 160, "uname";
    Prctl = 167, "prctl";
    Getpid = 172, "getpid";
    Getppid = 173, "getppid";
    Getuid = 174, "getuid";
    Geteuid = 175, "geteuid";
    Getgid = 176, "getgid";
    Getegid = 177, "getegid";
    Gettid = 178, "gettid";
    Brk = 214, "brk";
    Munmap = 215, "munmap";
    Mremap = 216, "mremap";
    Clone = 220, "clone";
    Mmap = 222, "mmap";
    Mprotect = 226, "mprotect";
    Madvise = 233, "madvise";
    Prlimit64 = 261, "prlimit64";
    Getrandom = 278, "getrandom";
    Statx = 291, "statx";
    Rseq = 293, "rseq";
    Clone3 = 435, "clone3";
    /// L4Re's own: attach a dataspace capability ([`l4re_sys`]).
    L4reAttach = 0x4c00, "l4re_attach";
    /// L4Re's own: the calling thread's capability.
    L4reThreadCap = 0x4c01, "l4re_thread_cap";
    /// L4Re's own: reserve a page of the UTCB area.
    L4reUtcbPage = 0x4c02, "l4re_utcb_page";
}

const _: () = assert!(Sys::L4reAttach.nr() == l4re_sys::ATTACH);
const _: () = assert!(Sys::L4reThreadCap.nr() == l4re_sys::THREAD_CAP);
const _: () = assert!(Sys::L4reUtcbPage.nr() == l4re_sys::UTCB_PAGE);

/// The runtime's own system calls, for what a program needs beyond Linux
/// (numbers far above Linux's; [`crate::env`] has the program side).
///
/// * `ATTACH(ds, size, offset, prot)`: attaches `size` bytes of the
///   program's dataspace capability `ds` from `offset` with `PROT_*`
///   rights somewhere free (2 MiB-aligned when that large) and maps it all
///   at once, or page fault by page fault with [`l4re_sys::ATTACH_ON_DEMAND`]
///   in `prot`; the address. The capability stays the program's.
/// * `THREAD_CAP()`: the calling thread's capability index.
/// * `UTCB_PAGE()`: reserves a free, page-aligned 4 KiB of the task's UTCB
///   area (no thread gets a UTCB there); its address (a vCPU's state area).
pub mod l4re_sys {
    /// Attach a dataspace.
    pub const ATTACH: u64 = 0x4c00;
    /// `ATTACH`'s `prot` bit for mapping on page faults only (as `mmap`
    /// does): memory nobody touches is never mapped, so the dataspace's
    /// server need not provide it yet.
    pub const ATTACH_ON_DEMAND: u64 = 1 << 16;
    /// The caller's thread capability.
    pub const THREAD_CAP: u64 = 0x4c01;
    /// Reserve a UTCB-area page.
    pub const UTCB_PAGE: u64 = 0x4c02;
}

/// The result of a system call: the value or a positive error number.
pub type SysResult = Result<u64, i64>;

/// `x0` for a result: the value, or `-errno`.
pub const fn ret_value(r: SysResult) -> u64 {
    match r {
        Ok(v) => v,
        Err(e) => (-e) as u64,
    }
}

/// `openat`'s "current directory" descriptor.
pub const AT_FDCWD: i64 = -100;
/// `*at` flag: operate on the descriptor itself when the path is empty.
pub const AT_EMPTY_PATH: u64 = 0x1000;

/// `open` flags.
pub mod open_flags {
    /// Access mode mask.
    pub const O_ACCMODE: u64 = 3;
    /// Read only.
    pub const O_RDONLY: u64 = 0;
    /// Create.
    pub const O_CREAT: u64 = 0o100;
    /// Truncate.
    pub const O_TRUNC: u64 = 0o1000;
    /// Must be a directory.
    pub const O_DIRECTORY: u64 = 0o40000;
    /// Close on exec.
    pub const O_CLOEXEC: u64 = 0o2000000;
}

/// `mmap` and `mprotect` constants.
pub mod mman {
    /// Readable.
    pub const PROT_READ: u64 = 1;
    /// Writable.
    pub const PROT_WRITE: u64 = 2;
    /// Executable.
    pub const PROT_EXEC: u64 = 4;
    /// Shared mapping.
    pub const MAP_SHARED: u64 = 0x01;
    /// Private mapping.
    pub const MAP_PRIVATE: u64 = 0x02;
    /// Exactly at the address.
    pub const MAP_FIXED: u64 = 0x10;
    /// Not backed by a file.
    pub const MAP_ANONYMOUS: u64 = 0x20;
    /// Map every page now rather than on first touch.
    pub const MAP_POPULATE: u64 = 0x8000;
    /// At the address unless something is there.
    pub const MAP_FIXED_NOREPLACE: u64 = 0x100000;
    /// `mremap`: may move.
    pub const MREMAP_MAYMOVE: u64 = 1;
}

/// Futex operations and flags.
pub mod futex {
    /// Wait while the value is as expected.
    pub const WAIT: u64 = 0;
    /// Wake waiters.
    pub const WAKE: u64 = 1;
    /// Wake some, move the rest to another futex.
    pub const REQUEUE: u64 = 3;
    /// Like `REQUEUE` if the value is as expected.
    pub const CMP_REQUEUE: u64 = 4;
    /// Wait with a bit set and an absolute timeout.
    pub const WAIT_BITSET: u64 = 9;
    /// Wake the waiters whose bit set matches.
    pub const WAKE_BITSET: u64 = 10;
    /// The operation bits.
    pub const CMD_MASK: u64 = 0x7f;
    /// Process-private futex (the only kind here).
    pub const PRIVATE: u64 = 128;
    /// The timeout is on `CLOCK_REALTIME`.
    pub const CLOCK_REALTIME: u64 = 256;
}

/// `clone` flags.
pub mod clone_flags {
    /// Share the address space.
    pub const VM: u64 = 0x100;
    /// Share signal handlers.
    pub const SIGHAND: u64 = 0x800;
    /// `vfork` semantics.
    pub const VFORK: u64 = 0x4000;
    /// Same thread group.
    pub const THREAD: u64 = 0x10000;
    /// Set the thread pointer.
    pub const SETTLS: u64 = 0x80000;
    /// Write the tid to the parent's memory.
    pub const PARENT_SETTID: u64 = 0x100000;
    /// Clear the tid in the child's memory at exit and wake.
    pub const CHILD_CLEARTID: u64 = 0x200000;
    /// Write the tid to the child's memory.
    pub const CHILD_SETTID: u64 = 0x1000000;
}

/// Clocks.
pub mod clock {
    /// Wall clock.
    pub const REALTIME: u64 = 0;
    /// Monotonic.
    pub const MONOTONIC: u64 = 1;
    /// Process CPU time.
    pub const PROCESS_CPUTIME_ID: u64 = 2;
    /// Thread CPU time.
    pub const THREAD_CPUTIME_ID: u64 = 3;
    /// Monotonic, not slewed.
    pub const MONOTONIC_RAW: u64 = 4;
    /// Coarse wall clock.
    pub const REALTIME_COARSE: u64 = 5;
    /// Coarse monotonic.
    pub const MONOTONIC_COARSE: u64 = 6;
    /// Monotonic including suspend.
    pub const BOOTTIME: u64 = 7;
    /// `clock_nanosleep`: the time is absolute.
    pub const TIMER_ABSTIME: u64 = 1;
}

/// Signal numbers the runtime names.
pub mod sig {
    /// Illegal instruction.
    pub const SIGILL: i64 = 4;
    /// Trace trap.
    pub const SIGTRAP: i64 = 5;
    /// Abort.
    pub const SIGABRT: i64 = 6;
    /// Bus error.
    pub const SIGBUS: i64 = 7;
    /// Floating-point exception.
    pub const SIGFPE: i64 = 8;
    /// Kill (cannot be caught).
    pub const SIGKILL: i64 = 9;
    /// Segmentation fault.
    pub const SIGSEGV: i64 = 11;
    /// Stop (cannot be caught).
    pub const SIGSTOP: i64 = 19;
    /// Bad system call.
    pub const SIGSYS: i64 = 31;
    /// Number of signals.
    pub const NSIG: usize = 64;
    /// Default action.
    pub const SIG_DFL: u64 = 0;
    /// Ignore.
    pub const SIG_IGN: u64 = 1;
    /// `sigaltstack`: disabled.
    pub const SS_DISABLE: u32 = 2;
    /// Signals whose default action is to be ignored (1-based bit numbers:
    /// SIGCHLD 17, SIGCONT 18, SIGURG 23, SIGWINCH 28).
    pub const DEFAULT_IGNORED: u64 = (1 << 16) | (1 << 17) | (1 << 22) | (1 << 27);
}

/// Poll events.
pub mod poll {
    /// Readable.
    pub const POLLIN: u16 = 0x1;
    /// Writable.
    pub const POLLOUT: u16 = 0x4;
    /// Invalid descriptor.
    pub const POLLNVAL: u16 = 0x20;
}

/// Auxiliary vector types (`AT_*`).
pub mod auxv {
    /// End.
    pub const AT_NULL: u64 = 0;
    /// Program headers.
    pub const AT_PHDR: u64 = 3;
    /// Size of one program header.
    pub const AT_PHENT: u64 = 4;
    /// Number of program headers.
    pub const AT_PHNUM: u64 = 5;
    /// Page size.
    pub const AT_PAGESZ: u64 = 6;
    /// Interpreter base (0: none).
    pub const AT_BASE: u64 = 7;
    /// Flags.
    pub const AT_FLAGS: u64 = 8;
    /// Program entry.
    pub const AT_ENTRY: u64 = 9;
    /// Real user id.
    pub const AT_UID: u64 = 11;
    /// Effective user id.
    pub const AT_EUID: u64 = 12;
    /// Real group id.
    pub const AT_GID: u64 = 13;
    /// Effective group id.
    pub const AT_EGID: u64 = 14;
    /// Platform string.
    pub const AT_PLATFORM: u64 = 15;
    /// CPU features.
    pub const AT_HWCAP: u64 = 16;
    /// Clock ticks per second.
    pub const AT_CLKTCK: u64 = 17;
    /// Secure mode.
    pub const AT_SECURE: u64 = 23;
    /// 16 random bytes.
    pub const AT_RANDOM: u64 = 25;
    /// More CPU features.
    pub const AT_HWCAP2: u64 = 26;
    /// The program's file name.
    pub const AT_EXECFN: u64 = 31;
    /// Minimal signal stack size.
    pub const AT_MINSIGSTKSZ: u64 = 51;
    /// This runtime's own entry: the address of the L4Re environment page
    /// ([`l4_env::ENV_VA`]). Tells code that it runs on this system.
    pub const AT_L4RE_ENV: u64 = 0x4c34_5245;
    /// `AT_HWCAP` bits of FP and ASIMD, which every AArch64 Linux target
    /// assumes: reported when nothing is known of the CPU.
    pub const HWCAP_FP_ASIMD: u64 = 0b11;

    use l4_abi::cpuid::CpuId;

    /// `AT_HWCAP` and `AT_HWCAP2` for the CPU features a task may use, as
    /// Linux's arm64 `hwcap.h` numbers them. All-zero ID registers
    /// (nothing known) give FP and ASIMD. Bits for what needs the
    /// kernel's help (SVE, pointer authentication, MTE, BTI) or Linux's
    /// own emulation (CPUID: reading ID registers at EL0) are never set:
    /// [`CpuId::for_tasks`] has cleared them.
    pub fn hwcaps(id: CpuId) -> (u64, u64) {
        if id == CpuId::UNKNOWN {
            return (HWCAP_FP_ASIMD, 0);
        }
        let f = CpuId::field;
        let (isar0, isar1, pfr0) = (id.isar0, id.isar1, id.pfr0);
        let mut hw = 0u64;
        let mut hw2 = 0u64;
        let set = |word: &mut u64, bit: u32, on: bool| {
            if on {
                *word |= 1 << bit;
            }
        };
        // PFR0: FP 16 and AdvSIMD 20 (0xf: absent; 1: with half precision).
        let (fp, simd) = (f(pfr0, 16), f(pfr0, 20));
        set(&mut hw, 0, fp != 0xf);
        set(&mut hw, 1, simd != 0xf);
        set(&mut hw, 9, fp == 1);
        set(&mut hw, 10, simd == 1);
        set(&mut hw, 24, f(pfr0, 48) >= 1); // DIT
        // ISAR0.
        set(&mut hw, 3, f(isar0, 4) >= 1); // AES
        set(&mut hw, 4, f(isar0, 4) >= 2); // PMULL
        set(&mut hw, 5, f(isar0, 8) >= 1); // SHA1
        set(&mut hw, 6, f(isar0, 12) >= 1); // SHA2
        set(&mut hw, 21, f(isar0, 12) >= 2); // SHA512
        set(&mut hw, 7, f(isar0, 16) >= 1); // CRC32
        set(&mut hw, 8, f(isar0, 20) >= 2); // ATOMICS (LSE)
        set(&mut hw, 12, f(isar0, 28) >= 1); // ASIMDRDM
        set(&mut hw, 17, f(isar0, 32) >= 1); // SHA3
        set(&mut hw, 18, f(isar0, 36) >= 1); // SM3
        set(&mut hw, 19, f(isar0, 40) >= 1); // SM4
        set(&mut hw, 20, f(isar0, 44) >= 1); // ASIMDDP
        set(&mut hw, 23, f(isar0, 48) >= 1); // ASIMDFHM
        set(&mut hw, 27, f(isar0, 52) >= 1); // FLAGM
        set(&mut hw2, 7, f(isar0, 52) >= 2); // FLAGM2
        set(&mut hw2, 16, f(isar0, 60) >= 1); // RNG
        // ISAR1.
        set(&mut hw, 16, f(isar1, 0) >= 1); // DCPOP
        set(&mut hw2, 0, f(isar1, 0) >= 2); // DCPODP
        set(&mut hw, 13, f(isar1, 12) >= 1); // JSCVT
        set(&mut hw, 14, f(isar1, 16) >= 1); // FCMA
        set(&mut hw, 15, f(isar1, 20) >= 1); // LRCPC
        set(&mut hw, 26, f(isar1, 20) >= 2); // ILRCPC
        set(&mut hw2, 8, f(isar1, 32) >= 1); // FRINT
        set(&mut hw, 29, f(isar1, 36) >= 1); // SB
        set(&mut hw2, 14, f(isar1, 44) >= 1); // BF16
        set(&mut hw2, 15, f(isar1, 48) >= 1); // DGH
        set(&mut hw2, 13, f(isar1, 52) >= 1); // I8MM
        (hw, hw2)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn nothing_known_gives_fp_and_asimd() {
            assert_eq!(hwcaps(CpuId::UNKNOWN), (HWCAP_FP_ASIMD, 0));
        }

        #[test]
        fn cortex_a72() {
            // AES with PMULL, SHA1, SHA2, CRC32; FP and AdvSIMD without
            // half precision; EL0 in AArch64.
            let id = CpuId::for_tasks(0x0001_1120, 0, 0x2222);
            // FP ASIMD AES PMULL SHA1 SHA2 CRC32.
            assert_eq!(hwcaps(id), (0b1111_1011, 0));
        }

        #[test]
        fn a_cpu_without_fp_or_simd() {
            let id = CpuId::for_tasks(0, 0, 0xff_0002);
            assert_eq!(hwcaps(id), (0, 0));
        }

        #[test]
        fn later_features() {
            // LSE atomics (2), LRCPC with LDAPUR (2), FP16 in FP and AdvSIMD,
            // RNDR, FRINTTS, I8MM; pointer authentication (API 1) never.
            let isar0 = (2 << 20) | (1 << 60);
            let isar1 = (2 << 20) | (1 << 8) | (1 << 32) | (1 << 52);
            let pfr0 = (1 << 16) | (1 << 20) | 1;
            let (hw, hw2) = hwcaps(CpuId::for_tasks(isar0, isar1, pfr0));
            let bits = |v: u64| {
                (0..64)
                    .filter(|b| v & (1 << b) != 0)
                    .collect::<alloc::vec::Vec<_>>()
            };
            assert_eq!(bits(hw), [0, 1, 8, 9, 10, 15, 26]);
            assert_eq!(bits(hw2), [8, 13, 16]);
        }
    }
}

/// `struct stat` of AArch64 (`asm-generic/stat.h`), 128 bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stat {
    /// Device.
    pub dev: u64,
    /// Inode.
    pub ino: u64,
    /// Mode (type and permissions).
    pub mode: u32,
    /// Links.
    pub nlink: u32,
    /// Size in bytes.
    pub size: u64,
    /// Preferred I/O size.
    pub blksize: u32,
    /// 512-byte blocks.
    pub blocks: u64,
    /// Device of a special file.
    pub rdev: u64,
}

/// File type: regular file.
pub const S_IFREG: u32 = 0o100000;
/// File type: character device.
pub const S_IFCHR: u32 = 0o020000;
/// File type: directory.
pub const S_IFDIR: u32 = 0o040000;

impl Stat {
    /// The 128 bytes of `struct stat`.
    pub fn to_bytes(&self) -> [u8; 128] {
        let mut b = [0u8; 128];
        b[0..8].copy_from_slice(&self.dev.to_le_bytes());
        b[8..16].copy_from_slice(&self.ino.to_le_bytes());
        b[16..20].copy_from_slice(&self.mode.to_le_bytes());
        b[20..24].copy_from_slice(&self.nlink.to_le_bytes());
        b[32..40].copy_from_slice(&self.rdev.to_le_bytes());
        b[48..56].copy_from_slice(&self.size.to_le_bytes());
        b[56..60].copy_from_slice(&self.blksize.to_le_bytes());
        b[64..72].copy_from_slice(&self.blocks.to_le_bytes());
        b
    }

    /// The 256 bytes of `struct statx` with the basic fields.
    pub fn to_statx(&self) -> [u8; 256] {
        let mut b = [0u8; 256];
        // STATX_BASIC_STATS.
        b[0..4].copy_from_slice(&0x7ffu32.to_le_bytes());
        b[4..8].copy_from_slice(&self.blksize.to_le_bytes());
        b[16..20].copy_from_slice(&self.nlink.to_le_bytes());
        b[28..30].copy_from_slice(&(self.mode as u16).to_le_bytes());
        b[32..40].copy_from_slice(&self.ino.to_le_bytes());
        b[40..48].copy_from_slice(&self.size.to_le_bytes());
        b[48..56].copy_from_slice(&self.blocks.to_le_bytes());
        b[128..132].copy_from_slice(&((self.rdev >> 8) as u32).to_le_bytes());
        b[132..136].copy_from_slice(&((self.rdev & 0xff) as u32).to_le_bytes());
        b[136..140].copy_from_slice(&((self.dev >> 8) as u32).to_le_bytes());
        b[140..144].copy_from_slice(&((self.dev & 0xff) as u32).to_le_bytes());
        b
    }
}

/// A `struct timespec` (seconds, nanoseconds).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Timespec {
    /// Seconds.
    pub sec: i64,
    /// Nanoseconds (0..1e9 when valid).
    pub nsec: i64,
}

impl Timespec {
    /// From nanoseconds.
    pub const fn from_ns(ns: u64) -> Timespec {
        Timespec {
            sec: (ns / 1_000_000_000) as i64,
            nsec: (ns % 1_000_000_000) as i64,
        }
    }

    /// In nanoseconds; `None` if invalid (negative, or nanoseconds out of
    /// range). Saturates far in the future.
    pub const fn to_ns(self) -> Option<u64> {
        if self.sec < 0 || self.nsec < 0 || self.nsec >= 1_000_000_000 {
            return None;
        }
        Some(
            (self.sec as u64)
                .saturating_mul(1_000_000_000)
                .saturating_add(self.nsec as u64),
        )
    }

    /// The 16 bytes.
    pub fn to_bytes(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&self.sec.to_le_bytes());
        b[8..].copy_from_slice(&self.nsec.to_le_bytes());
        b
    }

    /// From 16 bytes.
    pub fn from_bytes(b: [u8; 16]) -> Timespec {
        let mut s = [0u8; 8];
        let mut n = [0u8; 8];
        s.copy_from_slice(&b[..8]);
        n.copy_from_slice(&b[8..]);
        Timespec {
            sec: i64::from_le_bytes(s),
            nsec: i64::from_le_bytes(n),
        }
    }
}

/// `struct utsname`: six fields of 65 bytes.
pub fn utsname(release: &str, machine: &str) -> [u8; 390] {
    let mut b = [0u8; 390];
    let fields = ["Linux", "l4re", release, "#1 L4Re", machine, "(none)"];
    for (i, f) in fields.iter().enumerate() {
        let n = f.len().min(64);
        b[i * 65..i * 65 + n].copy_from_slice(&f.as_bytes()[..n]);
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_unique_and_round_trip() {
        for (i, a) in Sys::ALL.iter().enumerate() {
            assert_eq!(Sys::from_nr(a.nr()), Some(*a), "{}", a.name());
            for b in &Sys::ALL[i + 1..] {
                assert_ne!(a.nr(), b.nr(), "{} and {}", a.name(), b.name());
            }
        }
        assert_eq!(Sys::from_nr(64), Some(Sys::Write));
        assert_eq!(Sys::from_nr(222), Some(Sys::Mmap));
        assert_eq!(Sys::from_nr(98), Some(Sys::Futex));
        assert_eq!(Sys::from_nr(999), None);
        assert_eq!(Sys::from_nr(u64::MAX), None);
    }

    #[test]
    fn results_and_structs() {
        assert_eq!(ret_value(Ok(5)), 5);
        assert_eq!(ret_value(Err(errno::ENOSYS)), (-38i64) as u64);
        let st = Stat {
            mode: S_IFREG | 0o444,
            size: 1234,
            ..Default::default()
        };
        let b = st.to_bytes();
        assert_eq!(
            u32::from_le_bytes(b[16..20].try_into().unwrap()),
            S_IFREG | 0o444
        );
        assert_eq!(u64::from_le_bytes(b[48..56].try_into().unwrap()), 1234);
        let x = st.to_statx();
        assert_eq!(u64::from_le_bytes(x[40..48].try_into().unwrap()), 1234);
        let t = Timespec::from_ns(3_000_000_007);
        assert_eq!((t.sec, t.nsec), (3, 7));
        assert_eq!(Timespec::from_bytes(t.to_bytes()), t);
        assert_eq!(t.to_ns(), Some(3_000_000_007));
        assert_eq!(
            Timespec {
                sec: 0,
                nsec: 1_000_000_000
            }
            .to_ns(),
            None
        );
        assert_eq!(Timespec { sec: -1, nsec: 0 }.to_ns(), None);
        assert_eq!(
            Timespec {
                sec: i64::MAX,
                nsec: 0
            }
            .to_ns(),
            Some(u64::MAX)
        );
        let u = utsname("6.1.0", "aarch64");
        assert_eq!(&u[..6], b"Linux\0");
        assert_eq!(&u[4 * 65..4 * 65 + 8], b"aarch64\0");
    }
}

//! `stdtest`: an ordinary std program (built for
//! `aarch64-unknown-linux-musl`) that exercises the in-task runtime: the
//! heap and collections, formatting, threads with a `Mutex` and a `Condvar`
//! across the CPUs, `std::fs` on `rom/`, a 64 MiB allocation, time, an
//! unknown system call (`-ENOSYS`, not a crash), the L4Re environment, and
//! that a read-only capability to a writable dataspace gives no write
//! access (the kernel passes the capability's rights to moe).
//! Each check prints `stdtest: ... ok`; the program exits with 0 when all
//! pass and with 1 otherwise.
//!
//! `stdtest mib=N` allocates N MiB instead of 64.
//!
//! `stdtest fault` writes to address 0x10 instead: the runtime reports the
//! unhandled page fault and ends the task with -11, and the system goes on.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The line `conf/stdtest.txt` (`rom/stdtest.txt`) starts with.
const ROM_LINE: &str = "stdtest rom file: the quick brown fox jumps over the lazy dog";
/// Worker threads.
const WORKERS: usize = 4;
/// Increments per worker.
const ROUNDS: u64 = 2000;

type Check = Result<String, String>;
/// A named check.
type Named = (&'static str, fn() -> Check);

fn collections() -> Check {
    let v: Vec<u64> = (1..=1000).collect();
    let sum: u64 = v.iter().sum();
    let mut m: HashMap<String, usize> = HashMap::new();
    for w in ROM_LINE.split_whitespace() {
        *m.entry(w.to_string()).or_default() += w.len();
    }
    let text = format!("{sum} {} {:>5}|{:<4}|{:x}", m.len(), "ab", 7, 255);
    if sum == 500_500 && m["quick"] == 5 && text == "500500 11    ab|7   |ff" {
        Ok(format!("Vec, HashMap ({} keys), format!", m.len()))
    } else {
        Err(format!("got {text:?}"))
    }
}

/// Workers wait for a start signal on a Condvar, add under a Mutex, and
/// report back through the Condvar.
fn threads() -> Check {
    struct State {
        go: bool,
        count: u64,
        done: usize,
    }
    let shared = Arc::new((
        Mutex::new(State {
            go: false,
            count: 0,
            done: 0,
        }),
        Condvar::new(),
    ));
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let handles: Vec<_> = (0..WORKERS)
        .map(|i| {
            let s = Arc::clone(&shared);
            std::thread::Builder::new()
                .name(format!("worker{i}"))
                .spawn(move || {
                    let (lock, cv) = &*s;
                    let mut st = cv.wait_while(lock.lock().unwrap(), |st| !st.go).unwrap();
                    drop(st);
                    for _ in 0..ROUNDS {
                        st = lock.lock().unwrap();
                        st.count += 1;
                        drop(st);
                    }
                    let mut st = lock.lock().unwrap();
                    st.done += 1;
                    cv.notify_all();
                    std::thread::current().id()
                })
                .map_err(|e| format!("spawn: {e}"))
        })
        .collect::<Result<_, _>>()?;
    // Give the workers time to block on the Condvar first.
    std::thread::sleep(Duration::from_millis(20));
    let (lock, cv) = &*shared;
    lock.lock().unwrap().go = true;
    cv.notify_all();
    let st = cv
        .wait_timeout_while(lock.lock().unwrap(), Duration::from_secs(30), |st| {
            st.done < WORKERS
        })
        .unwrap()
        .0;
    let (count, done) = (st.count, st.done);
    drop(st);
    let mut ids: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    ids.sort_by_key(|id| format!("{id:?}"));
    ids.dedup();
    if done == WORKERS && count == WORKERS as u64 * ROUNDS && ids.len() == WORKERS {
        Ok(format!(
            "threads ({WORKERS} workers, Mutex, Condvar, join; {cpus} CPUs)"
        ))
    } else {
        Err(format!(
            "done {done}, count {count}, {} distinct threads",
            ids.len()
        ))
    }
}

fn rom_file() -> Check {
    let text = std::fs::read_to_string("rom/stdtest.txt").map_err(|e| format!("read: {e}"))?;
    let meta = std::fs::metadata("rom/stdtest.txt").map_err(|e| format!("metadata: {e}"))?;
    let missing = std::fs::read("rom/does-not-exist");
    let create = std::fs::File::create("rom/new");
    if !text.starts_with(ROM_LINE) || meta.len() != text.len() as u64 {
        return Err(format!(
            "read {} bytes: {:?}",
            text.len(),
            text.lines().next()
        ));
    }
    if missing.as_ref().map_err(|e| e.kind()) != Err(std::io::ErrorKind::NotFound) {
        return Err(format!("missing file: {missing:?}"));
    }
    // rom/ is read-only on L4Re (a Linux test run may have a writable one).
    if create.is_ok() && l4re::env::env().is_some() {
        return Err("created a file in rom/".into());
    }
    Ok(format!(
        "std::fs on rom/ ({} bytes, {} lines)",
        text.len(),
        text.lines().count()
    ))
}

/// Size of the big allocation in MiB (`mib=N` on the command line).
static BIG_MIB: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(64);

fn big_alloc() -> Check {
    let mib = BIG_MIB.load(std::sync::atomic::Ordering::Relaxed);
    let size: usize = mib << 20;
    for round in 0..2 {
        let mut v = vec![0u8; size];
        for i in (0..size).step_by(4096) {
            v[i] = (i >> 12) as u8 ^ round;
        }
        let sum: u64 = (0..size).step_by(4096).map(|i| u64::from(v[i])).sum();
        let want: u64 = (0..size / 4096).map(|p| u64::from(p as u8 ^ round)).sum();
        if sum != want {
            return Err(format!("round {round}: sum {sum}, want {want}"));
        }
        drop(v);
    }
    Ok(format!("allocate, touch and free {mib} MiB (twice)"))
}

/// A Linux system call without libc.
#[cfg(target_arch = "aarch64")]
fn raw_syscall(nr: u64) -> Option<i64> {
    let ret: i64;
    // SAFETY: a system call the kernel (or the runtime) does not know has
    // no effect besides its return value in x0; nothing else is touched.
    unsafe {
        core::arch::asm!("svc #0", in("x8") nr, inlateout("x0") 0i64 => ret, options(nostack));
    }
    Some(ret)
}

#[cfg(not(target_arch = "aarch64"))]
fn raw_syscall(_nr: u64) -> Option<i64> {
    None
}

fn unknown_syscall() -> Check {
    match raw_syscall(999) {
        Some(-38) => Ok("unknown system call 999 returns -ENOSYS".into()),
        Some(r) => Err(format!("system call 999 returned {r}")),
        None => Ok("unknown system call (skipped: not AArch64)".into()),
    }
}

fn time() -> Check {
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_millis(30));
    let dt = t0.elapsed();
    if dt >= Duration::from_millis(30) && dt < Duration::from_secs(5) {
        Ok(format!("sleep 30 ms took {} ms", dt.as_millis()))
    } else {
        Err(format!("sleep 30 ms took {dt:?}"))
    }
}

fn l4_env() -> Check {
    match l4re::env::env() {
        Some(e) => {
            let caps: Vec<String> = e.named_caps().map(|(n, i)| format!("{n}={i:#x}")).collect();
            Ok(format!(
                "L4Re environment: {} args, caps [{}], rom at {:#x}",
                e.argc,
                caps.join(", "),
                l4re::env::caps::ROM
            ))
        }
        None => Ok("L4Re environment (not running on L4Re)".into()),
    }
}

/// The CPU features the program was given: `AT_HWCAP` from
/// `/proc/self/auxv` (how libdeflate reads it), which must agree with what
/// the standard library detected (it asks `getauxval`, which reads the
/// vector on the initial stack). Names the features found.
fn cpu_features() -> Check {
    const AT_HWCAP: u64 = 16;
    let bytes = std::fs::read("/proc/self/auxv").map_err(|e| format!("/proc/self/auxv: {e}"))?;
    let word = |c: &[u8]| u64::from_le_bytes(c.try_into().unwrap_or_default());
    let hwcap = bytes
        .chunks_exact(16)
        .find(|p| word(&p[..8]) == AT_HWCAP)
        .map(|p| word(&p[8..]))
        .ok_or("no AT_HWCAP in /proc/self/auxv")?;
    if hwcap & 0b11 != 0b11 {
        return Err(format!("AT_HWCAP {hwcap:#x} lacks FP and ASIMD"));
    }
    let agree = [
        (7, std::arch::is_aarch64_feature_detected!("crc"), "crc32"),
        (8, std::arch::is_aarch64_feature_detected!("lse"), "atomics"),
        (
            20,
            std::arch::is_aarch64_feature_detected!("dotprod"),
            "asimddp",
        ),
    ];
    for (bit, detected, name) in agree {
        if (hwcap >> bit) & 1 != u64::from(detected) {
            return Err(format!(
                "AT_HWCAP {hwcap:#x} and the standard library disagree on {name}"
            ));
        }
    }
    let names = [
        (0, "fp"),
        (1, "asimd"),
        (3, "aes"),
        (4, "pmull"),
        (5, "sha1"),
        (6, "sha2"),
        (7, "crc32"),
        (8, "atomics"),
        (20, "asimddp"),
    ];
    let have: Vec<&str> = names
        .iter()
        .filter(|(bit, _)| (hwcap >> bit) & 1 != 0)
        .map(|&(_, n)| n)
        .collect();
    Ok(format!(
        "CPU features (/proc/self/auxv): {} (AT_HWCAP {hwcap:#x})",
        have.join(" ")
    ))
}

/// A dataspace from the memory allocator, and a read-only copy of its
/// capability: through the copy moe reports it read-only and refuses a
/// writable mapping. Uses two capability slots far above the runtime's.
fn dataspace_rights() -> Check {
    use l4::{Cap, CapRights, Task};
    use l4_ipc::RecvBufs;
    use l4_ipc::protocols::{DataspaceClient, FactoryClient, ds_flags};
    const RW_SLOT: u64 = 0xf00;
    const RO_SLOT: u64 = 0xf01;
    let task = Cap::<Task>::from_index(l4re::env::caps::THIS_TASK);
    let mut f = FactoryClient::new(l4re::env::caps::MEM_ALLOC);
    f.rcv = RecvBufs::cap_slot(RW_SLOT);
    f.create_dataspace(4096, None, None)
        .map_err(|e| format!("create a dataspace: {e:?}"))?;
    task.map_cap(task, RW_SLOT, CapRights::RO, RO_SLOT)
        .map_err(|e| format!("copy the capability read-only: {e:?}"))?;
    let rw = DataspaceClient::new(RW_SLOT).info();
    let ro = DataspaceClient::new(RO_SLOT).info();
    let write_map = DataspaceClient::new(RO_SLOT).map(0, 0, ds_flags::RW);
    for s in [RO_SLOT, RW_SLOT] {
        let _ = task.delete_cap(s);
        let _ = task.release_cap(s);
    }
    match (rw, ro, write_map) {
        (Ok((_, a)), Ok((_, b)), Err(l4::Error::Perm))
            if a & ds_flags::W != 0 && b & ds_flags::W == 0 =>
        {
            Ok("read-only dataspace capability".into())
        }
        other => Err(format!(
            "info through RW, RO, writable map through RO: {other:?}"
        )),
    }
}

/// The runtime's buddy heap (`l4re::heap::ProgramHeap`, uvmm's and ned's
/// allocator) shared by threads that allocate at once: every block keeps
/// its owner's pattern, and a thread that finds the heap taken sleeps on
/// its futex (the count of such waits is reported).
#[cfg(all(target_os = "linux", target_arch = "aarch64"))]
fn shared_heap() -> Check {
    use std::alloc::{GlobalAlloc, Layout};
    const THREADS: usize = 4;
    const ROUNDS: usize = 4000;
    static HEAP: l4re::heap::ProgramHeap = l4re::heap::ProgramHeap::new();
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            std::thread::spawn(move || -> Result<(), String> {
                let mut live: Vec<(*mut u8, Layout, u8)> = Vec::new();
                let mut seed = 0x9e37_79b9_u32.wrapping_mul(t as u32 + 1);
                for round in 0..ROUNDS {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    let size = 16 + (seed as usize % 2000);
                    let layout = Layout::from_size_align(size, 16).map_err(|e| e.to_string())?;
                    // SAFETY: a non-zero size.
                    let p = unsafe { HEAP.alloc(layout) };
                    if p.is_null() {
                        return Err(format!("thread {t}: no memory for {size} bytes"));
                    }
                    let mark = (t * 64 + round % 64) as u8;
                    // SAFETY: `p` is a fresh block of `size` bytes.
                    unsafe { p.write_bytes(mark, size) };
                    live.push((p, layout, mark));
                    if live.len() > 8 {
                        let (q, l, m) = live.swap_remove(seed as usize % live.len());
                        // SAFETY: `q` is a live block of `l.size()` bytes
                        // this thread filled.
                        let bytes = unsafe { std::slice::from_raw_parts(q, l.size()) };
                        if bytes.iter().any(|&b| b != m) {
                            return Err(format!("thread {t}: a block lost its pattern"));
                        }
                        // SAFETY: given out by HEAP with layout `l`.
                        unsafe { HEAP.dealloc(q, l) };
                    }
                }
                for (q, l, _) in live {
                    // SAFETY: as above.
                    unsafe { HEAP.dealloc(q, l) };
                }
                Ok(())
            })
        })
        .collect();
    for w in workers {
        w.join().map_err(|_| "a thread panicked".to_string())??;
    }
    Ok(format!(
        "heap ({THREADS} threads, {} blocks, {} waits for the lock)",
        THREADS * ROUNDS,
        HEAP.waits()
    ))
}

#[cfg(not(all(target_os = "linux", target_arch = "aarch64")))]
fn shared_heap() -> Check {
    Ok("heap (skipped: the runtime's heap is AArch64 Linux only)".into())
}

/// Writes to memory the program does not own.
fn fault() -> ! {
    println!("stdtest: writing to 0x10; the runtime should end this task");
    // SAFETY: deliberately invalid: the point is the runtime's report of
    // the page fault. The write is volatile so it is not optimised away.
    unsafe { core::ptr::write_volatile(core::ptr::without_provenance_mut::<u32>(0x10), 1) };
    println!("stdtest: still alive after the fault");
    std::process::exit(1)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().skip(1).any(|a| a == "fault") {
        fault();
    }
    if let Some(n) = args
        .iter()
        .find_map(|a| a.strip_prefix("mib=").and_then(|n| n.parse().ok()))
    {
        BIG_MIB.store(n, std::sync::atomic::Ordering::Relaxed);
    }
    println!("stdtest: started ({})", args.join(" "));
    let checks: [Named; 10] = [
        ("collections", collections),
        ("threads", threads),
        ("heap", shared_heap),
        ("rom", rom_file),
        ("memory", big_alloc),
        ("syscall", unknown_syscall),
        ("time", time),
        ("env", l4_env),
        ("rights", dataspace_rights),
        ("cpu", cpu_features),
    ];
    let mut failed = 0;
    for (name, check) in checks {
        match check() {
            Ok(what) => println!("stdtest: {what} ok"),
            Err(why) => {
                println!("stdtest: {name} FAILED: {why}");
                failed += 1;
            }
        }
    }
    if failed == 0 {
        println!("stdtest: all ok");
    } else {
        println!("stdtest: {failed} FAILED");
    }
    std::process::exit(if failed == 0 { 0 } else { 1 })
}

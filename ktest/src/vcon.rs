//! The kernel console (Vcon): write by call and by send, long writes, read.

use l4::base;

use crate::fw::{Ctx, R};

tests! {
    "vcon.write" => write,
    "vcon.write_by_send" => write_by_send,
    "vcon.write_long_line" => write_long,
    "vcon.read_pending_input" => read,
}

/// A write call succeeds.
fn write() -> R {
    base::LOG
        .write(b"ktest: (vcon write by call)\n")
        .ctx("vcon write")
}

/// "A send suffices" for a write.
fn write_by_send() -> R {
    base::LOG
        .write_send(b"ktest: (vcon write by send)\n")
        .ctx("vcon write by send")
}

/// A line longer than one message goes out in several writes.
fn write_long() -> R {
    let mut line = [b'='; 600];
    let head = b"ktest: (a 600-byte line) ";
    line[..head.len()].copy_from_slice(head);
    line[599] = b'\n';
    base::LOG.write(&line).ctx("long vcon write")
}

/// Reading returns what is pending (nothing is typed during the test)
/// without blocking, and never more than asked for.
fn read() -> R {
    let mut buf = [0u8; 16];
    let (n, _flags) = base::LOG.read(&mut buf).ctx("vcon read")?;
    ensure!(n <= buf.len(), "read returned {n} bytes for 16");
    Ok(())
}

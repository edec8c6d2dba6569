//! The kernel console (Vcon): write by call and by send, long writes, read,
//! its input line (one reader at a time).

use l4::{Error, Icu, base};

use crate::fw::{Ctx, R};
use crate::rt;

tests! {
    "vcon.write" => write,
    "vcon.write_by_send" => write_by_send,
    "vcon.write_long_line" => write_long,
    "vcon.read_pending_input" => read,
    "vcon.input_line_has_one_reader" => one_reader,
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

/// The console's input line goes to one Irq at a time: a second Irq is
/// refused (`Busy`) while the first lives, the first may bind again, and
/// once it is deleted the line is free for the second.
fn one_reader() -> R {
    let icu = base::LOG.cast::<Icu>();
    let first = rt::irq()?;
    let second = rt::irq()?;
    icu.bind(0, first.cap()).ctx("first bind")?;
    expect_err!(
        icu.bind(0, second.cap()),
        Error::Busy,
        "second Irq on the console's line"
    );
    icu.bind(0, first.cap()).ctx("the first Irq binds again")?;
    drop(first);
    icu.bind(0, second.cap())
        .ctx("bind once the first Irq is gone")
}

//! A client of the virtio network switch's statistics interface:
//! `statsclient [INTERVAL_MS]`, started with the capability `stats` (what
//! `create(1)` on the switch's factory returns).
//!
//! It gets the switch's statistics dataspace, checks that it cannot map it
//! writable (`stats: the buffer is read-only ...`), maps it read-only, and every
//! `INTERVAL_MS` (default 500) has the switch bring it up to date; when a
//! port's counters changed, it prints one line per port in use:
//! `stats: net1 02:08:00:00:00:02 tx 12 (1180 B, 1 dropped) rx 10 (980 B, 0 dropped)`.

use std::process::ExitCode;

use l4_ipc::netstats::{self, Record};

/// One line for a port's record.
fn describe(r: &Record) -> String {
    let c = &r.counters;
    let mac = vnet::mac::format(&r.mac);
    format!(
        "stats: {} {mac} tx {} ({} B, {} dropped) rx {} ({} B, {} dropped)",
        r.name(),
        c.tx_num,
        c.tx_bytes,
        c.tx_dropped,
        c.rx_num,
        c.rx_bytes,
        c.rx_dropped
    )
}

/// The lines for a statistics buffer, or why it cannot be read.
fn lines(buf: &[u8]) -> Result<Vec<String>, String> {
    let s = netstats::parse(buf).ok_or("the statistics buffer is shorter than its header says")?;
    Ok(s.ports().map(|(_, r)| describe(&r)).collect())
}

fn main() -> ExitCode {
    let interval = match std::env::args().nth(1).map(|a| a.parse::<u64>()) {
        None => 500,
        Some(Ok(ms)) if ms > 0 => ms,
        Some(_) => {
            eprintln!("statsclient: usage: statsclient [INTERVAL_MS] (a positive number)");
            return ExitCode::FAILURE;
        }
    };
    match run(interval) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("statsclient: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(all(target_os = "linux", target_arch = "aarch64", target_env = "musl"))]
fn run(interval_ms: u64) -> Result<(), String> {
    use l4::SlotAlloc;
    use l4_ipc::RecvBufs;
    use l4_ipc::netstats::SwitchStatsClient;
    use l4_ipc::protocols::DataspaceClient;
    use l4re::env::FIRST_PROGRAM_CAP;

    /// `PROT_READ`, `PROT_WRITE`.
    const PROT_READ: u64 = 1;
    const PROT_WRITE: u64 = 2;
    static SLOTS: SlotAlloc<1> = SlotAlloc::new(FIRST_PROGRAM_CAP);
    let cap = l4re::env::get_cap("stats").ok_or(
        "no capability named 'stats' (give it the switch's create(1): caps = { stats = ... })",
    )?;
    let mut stats = SwitchStatsClient::new(cap);
    stats.rcv = RecvBufs::cap_slot(SLOTS.alloc().ok_or("no capability slot")?);
    let ds = stats
        .get_buffer()
        .map_err(|e| format!("get_buffer: {e:?}"))?
        .index();
    let (size, _) = DataspaceClient::new(ds)
        .info()
        .map_err(|e| format!("the statistics dataspace's size: {e:?}"))?;
    // The switch hands the buffer out read-only: a writable mapping is
    // refused (by moe, through the capability's rights).
    match l4re::env::attach(ds, size, 0, PROT_READ | PROT_WRITE) {
        Ok(_) => return Err("the statistics dataspace could be mapped writable".into()),
        Err(e) => println!("stats: the buffer is read-only (a writable mapping: error {e})"),
    }
    let at = l4re::env::attach(ds, size, 0, PROT_READ)
        .map_err(|e| format!("mapping the statistics dataspace (error {e})"))?;
    // SAFETY: the runtime mapped `size` bytes of the dataspace read-only at
    // `at` for the program's life; the switch writes it only during `sync`,
    // which this thread waits for, so nothing changes while it is read.
    let buf = unsafe { std::slice::from_raw_parts(at as *const u8, size as usize) };
    println!("stats: watching the switch's ports ({size} bytes of statistics)");
    let mut last = Vec::new();
    loop {
        stats.sync().map_err(|e| format!("sync: {e:?}"))?;
        let now = lines(buf)?;
        if now != last {
            for l in &now {
                println!("{l}");
            }
            last = now;
        }
        std::thread::sleep(std::time::Duration::from_millis(interval_ms));
    }
}

#[cfg(not(all(target_os = "linux", target_arch = "aarch64", target_env = "musl")))]
fn run(_: u64) -> Result<(), String> {
    Err("runs on the system only (it needs the switch's 'stats' capability)".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use l4_ipc::netstats::{HEADER_LEN, PortCounters, buffer_len, encode_header};

    #[test]
    fn one_line_per_port_in_use() {
        let mut buf = [0u8; buffer_len(3).unwrap()];
        buf[..HEADER_LEN].copy_from_slice(&encode_header(2, 3));
        let c = PortCounters {
            tx_num: 12,
            tx_dropped: 1,
            tx_bytes: 1180,
            rx_num: 10,
            rx_dropped: 0,
            rx_bytes: 980,
        };
        let r = Record::new(c, [2, 8, 0, 0, 0, 2], "net1");
        let at = HEADER_LEN + 2 * netstats::RECORD_LEN;
        buf[at..at + netstats::RECORD_LEN].copy_from_slice(&r.encode());
        assert_eq!(
            lines(&buf).unwrap(),
            ["stats: net1 02:08:00:00:00:02 tx 12 (1180 B, 1 dropped) rx 10 (980 B, 0 dropped)"]
        );
        assert!(lines(&buf[..20]).is_err());
    }
}

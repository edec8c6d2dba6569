//! A program's console driven over pipes, without a terminal: QEMU with
//! `-serial stdio` for the test harness and benchmarks.
//!
//! A thread reads the console into a log that keeps every byte and when it
//! arrived (relative to the program's start); the waiting side blocks on a
//! condition variable until new output arrives or its deadline passes, so there
//! are no fixed sleeps. QEMU's stderr is kept apart.

use std::fmt;
use std::io::{Read, Write};
use std::ops::Range;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{Context, Result};

/// What to look for in the output.
#[derive(Clone, Debug)]
pub enum Pattern {
    /// A plain substring.
    Text(String),
    Regex(regex::bytes::Regex),
    /// Every one of these, in any order; the match spans from the earliest
    /// start to the latest end.
    All(Vec<Pattern>),
}

impl Pattern {
    pub fn regex(re: &str) -> std::result::Result<Pattern, regex::Error> {
        regex::bytes::Regex::new(re).map(Pattern::Regex)
    }

    /// The first match in `haystack`.
    pub fn find(&self, haystack: &[u8]) -> Option<Range<usize>> {
        match self {
            Pattern::Text(text) if text.is_empty() => Some(0..0),
            Pattern::Text(text) => {
                let needle = text.as_bytes();
                haystack
                    .windows(needle.len())
                    .position(|w| w == needle)
                    .map(|start| start..start + needle.len())
            }
            Pattern::Regex(re) => re.find(haystack).map(|m| m.range()),
            Pattern::All(all) => all.iter().try_fold(None, |span: Option<Range<usize>>, p| {
                let m = p.find(haystack)?;
                Some(Some(match span {
                    None => m,
                    Some(s) => s.start.min(m.start)..s.end.max(m.end),
                }))
            })?,
        }
    }

    pub fn is_in(&self, haystack: &[u8]) -> bool {
        self.find(haystack).is_some()
    }

    /// What of this pattern `haystack` lacks: the parts of an [`Pattern::All`]
    /// not found, else the pattern itself when it is not found.
    pub fn missing(&self, haystack: &[u8]) -> Vec<&Pattern> {
        match self {
            Pattern::All(all) => all.iter().flat_map(|p| p.missing(haystack)).collect(),
            p if p.is_in(haystack) => Vec::new(),
            p => vec![p],
        }
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pattern::Text(text) => write!(f, "\"{}\"", text.escape_debug()),
            Pattern::Regex(re) => write!(f, "/{}/", re.as_str()),
            Pattern::All(all) => {
                write!(f, "all of [")?;
                for (i, p) in all.iter().enumerate() {
                    write!(f, "{}{p}", if i == 0 { "" } else { ", " })?;
                }
                write!(f, "]")
            }
        }
    }
}

/// Why waiting on the console failed.
#[derive(Debug)]
pub enum Failure {
    Timeout,
    /// The console reached end of file (the program exited or closed it).
    Closed(String),
    Forbidden {
        pattern: String,
        line: String,
        at: Duration,
    },
    Io(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Timeout => f.write_str("timed out"),
            Failure::Closed(status) => write!(f, "the console closed ({status})"),
            Failure::Forbidden { pattern, line, at } => write!(
                f,
                "forbidden output {pattern} at {:.3} s: {line}",
                at.as_secs_f64()
            ),
            Failure::Io(error) => f.write_str(error),
        }
    }
}

#[derive(Default)]
struct Log {
    output: Vec<u8>,
    /// `(end offset, arrival time)` of every chunk read, in order.
    chunks: Vec<(usize, Duration)>,
    closed: bool,
    stderr: Vec<u8>,
}

impl Log {
    /// When the byte at `offset` arrived.
    fn time_at(&self, offset: usize) -> Option<Duration> {
        let index = self.chunks.partition_point(|&(end, _)| end <= offset);
        self.chunks.get(index).map(|&(_, t)| t)
    }

    /// `(offset, line)` for the lines in `range`, without `\r\n` / `\n`.
    fn lines(&self, range: Range<usize>) -> impl Iterator<Item = (usize, &[u8])> {
        let start = range.start;
        let text = &self.output[range];
        let mut offset = start;
        text.split_inclusive(|&b| b == b'\n').map(move |line| {
            let at = offset;
            offset += line.len();
            let line = line.strip_suffix(b"\n").unwrap_or(line);
            (at, line.strip_suffix(b"\r").unwrap_or(line))
        })
    }

    /// Every line with the time its first byte arrived.
    fn timed_lines(&self) -> Vec<(Duration, String)> {
        self.lines(0..self.output.len())
            .map(|(offset, line)| {
                let at = self.time_at(offset).unwrap_or_default();
                (at, String::from_utf8_lossy(line).into_owned())
            })
            .collect()
    }

    fn transcript(&self) -> String {
        let mut out = String::new();
        for (at, line) in self.timed_lines() {
            out.push_str(&format!("[{:>8.3}] {line}\n", at.as_secs_f64()));
        }
        out
    }
}

/// What a finished session leaves.
pub struct Record {
    /// The console output, each line prefixed with the time (seconds since the
    /// start) its first byte arrived.
    pub transcript: String,
    /// What the program wrote to its stderr.
    pub stderr: String,
    /// The console lines (without line ends), each with the time (since the
    /// start) its first byte arrived.
    pub lines: Vec<(Duration, String)>,
}

struct Shared {
    log: Mutex<Log>,
    arrived: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Log> {
        // A reader thread cannot panic while holding the lock; recover anyway.
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The CPU time process `pid`'s threads have used so far: the sum of
/// their on-CPU nanoseconds in Linux's `/proc/<pid>/task/*/schedstat`
/// (threads that ended are not counted). `None` where the host has no
/// such files.
pub fn process_cpu_time(pid: u32) -> Option<Duration> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut ns = 0u64;
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("schedstat")) else {
            continue;
        };
        ns += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(Duration::from_nanos(ns))
}

/// A running program whose stdin/stdout are the console.
pub struct Session {
    /// The program's file name, for messages.
    program: String,
    child: Child,
    stdin: Option<ChildStdin>,
    start: Instant,
    shared: Arc<Shared>,
    readers: Vec<JoinHandle<()>>,
    /// End of the last match; the next expectation looks after it.
    cursor: usize,
    forbid: Vec<Pattern>,
    /// Start of the first line not yet checked against `forbid`.
    forbid_checked: usize,
}

impl Session {
    /// Starts `cmd` with piped stdio. `echo` copies the console to our stderr live.
    pub fn spawn(mut cmd: Command, forbid: Vec<Pattern>, echo: bool) -> Result<Session> {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let start = Instant::now();
        let mut child = cmd
            .spawn()
            .context(|| format!("cannot start {}", cmd.get_program().to_string_lossy()))?;
        let shared = Arc::new(Shared {
            log: Mutex::new(Log::default()),
            arrived: Condvar::new(),
        });
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let readers = vec![
            spawn_reader(stdout, Arc::clone(&shared), start, Stream::Console { echo })?,
            spawn_reader(stderr, Arc::clone(&shared), start, Stream::Stderr)?,
        ];
        let program = Path::new(cmd.get_program())
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        Ok(Session {
            program,
            stdin: child.stdin.take(),
            child,
            start,
            shared,
            readers,
            cursor: 0,
            forbid,
            forbid_checked: 0,
        })
    }

    /// When the program was started.
    pub fn started(&self) -> Instant {
        self.start
    }

    /// Time since the program started.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// The CPU time the program's threads have used so far, if the host
    /// says ([`process_cpu_time`]).
    pub fn cpu_time(&self) -> Option<Duration> {
        process_cpu_time(self.pid())
    }

    /// The program's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until `pattern` appears after the previous match, or `deadline`.
    /// Returns when the matching output arrived, relative to the start.
    pub fn expect(
        &mut self,
        pattern: &Pattern,
        deadline: Instant,
    ) -> std::result::Result<Duration, Failure> {
        let shared = Arc::clone(&self.shared);
        let mut log = shared.lock();
        loop {
            self.check_forbidden(&log, false)?;
            if let Some(found) = pattern.find(&log.output[self.cursor..]) {
                let end = self.cursor + found.end;
                self.cursor = end;
                let at = log.time_at(end.saturating_sub(1));
                return Ok(at.unwrap_or_else(|| self.elapsed()));
            }
            if log.closed {
                self.check_forbidden(&log, true)?;
                return Err(Failure::Closed(self.exit_status()));
            }
            let now = Instant::now();
            if now >= deadline {
                self.check_forbidden(&log, true)?;
                return Err(Failure::Timeout);
            }
            log = shared
                .arrived
                .wait_timeout(log, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// What of `pattern` is not in the output after the last match (a
    /// failed step's message names it).
    pub fn missing(&self, pattern: &Pattern) -> String {
        let log = self.shared.lock();
        let rest = log.output.get(self.cursor..).unwrap_or_default();
        let missing = pattern.missing(rest);
        let names: Vec<String> = missing.iter().map(|p| p.to_string()).collect();
        names.join(", ")
    }

    /// The console lines received so far, each with the time (since the
    /// start) its first byte arrived.
    pub fn lines(&self) -> Vec<(Duration, String)> {
        self.shared.lock().timed_lines()
    }

    /// Checks everything received so far, including an unfinished last line,
    /// against the forbidden patterns.
    pub fn check_all_forbidden(&mut self) -> std::result::Result<(), Failure> {
        let shared = Arc::clone(&self.shared);
        let log = shared.lock();
        self.check_forbidden(&log, true)
    }

    /// Types `bytes` on the console.
    pub fn send(&mut self, bytes: &[u8]) -> std::result::Result<(), Failure> {
        let Some(stdin) = self.stdin.as_mut() else {
            return Err(Failure::Io("the console input is closed".into()));
        };
        stdin
            .write_all(bytes)
            .and_then(|()| stdin.flush())
            .map_err(|e| Failure::Io(format!("writing to the console: {e}")))
    }

    /// Kills the program (if still running), waits for all its output and
    /// returns the record of the session.
    pub fn finish(mut self) -> Record {
        self.kill();
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        let log = self.shared.lock();
        Record {
            transcript: log.transcript(),
            stderr: String::from_utf8_lossy(&log.stderr).into_owned(),
            lines: log.timed_lines(),
        }
    }

    fn kill(&mut self) {
        self.stdin = None;
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }

    fn exit_status(&mut self) -> String {
        match self.child.try_wait() {
            Ok(Some(status)) => format!("{} exited with {status}", self.program),
            _ => format!("{} still running", self.program),
        }
    }

    /// Checks the complete lines not yet checked (all lines when `all`).
    fn check_forbidden(&mut self, log: &Log, all: bool) -> std::result::Result<(), Failure> {
        let unchecked = &log.output[self.forbid_checked..];
        let len = if all {
            unchecked.len()
        } else {
            unchecked
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |p| p + 1)
        };
        let range = self.forbid_checked..self.forbid_checked + len;
        for (offset, line) in log.lines(range.clone()) {
            if let Some(pattern) = self.forbid.iter().find(|p| p.is_in(line)) {
                return Err(Failure::Forbidden {
                    pattern: pattern.to_string(),
                    line: String::from_utf8_lossy(line).into_owned(),
                    at: log.time_at(offset).unwrap_or_default(),
                });
            }
        }
        self.forbid_checked = range.end;
        Ok(())
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.kill();
    }
}

enum Stream {
    Console { echo: bool },
    Stderr,
}

fn spawn_reader(
    mut source: impl Read + Send + 'static,
    shared: Arc<Shared>,
    start: Instant,
    stream: Stream,
) -> Result<JoinHandle<()>> {
    let name = match stream {
        Stream::Console { .. } => "console",
        Stream::Stderr => "stderr",
    };
    std::thread::Builder::new()
        .name(format!("{name} reader"))
        .spawn(move || {
            let mut buffer = [0u8; 4096];
            loop {
                let n = match source.read(&mut buffer) {
                    Ok(0) | Err(_) => 0,
                    Ok(n) => n,
                };
                let data = &buffer[..n];
                let mut log = shared.lock();
                match stream {
                    Stream::Stderr if n == 0 => return,
                    Stream::Stderr => log.stderr.extend_from_slice(data),
                    Stream::Console { .. } if n == 0 => {
                        log.closed = true;
                        shared.arrived.notify_all();
                        return;
                    }
                    Stream::Console { echo } => {
                        if echo {
                            let _ = std::io::stderr().write_all(data);
                        }
                        log.output.extend_from_slice(data);
                        let end = log.output.len();
                        log.chunks.push((end, start.elapsed()));
                        shared.arrived.notify_all();
                    }
                }
            }
        })
        .context(|| format!("cannot start the {name} reader thread"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, forbid: Vec<Pattern>) -> Session {
        let mut cmd = Command::new("sh");
        cmd.arg("-c").arg(script);
        Session::spawn(cmd, forbid, false).unwrap()
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(10)
    }

    /// A program that computes for a while has used CPU time, no more
    /// than it ran; one that sleeps almost none.
    #[test]
    fn cpu_time_of_a_session() {
        let mut busy = sh(
            "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; echo done; sleep 5",
            vec![],
        );
        let at = busy.expect(&Pattern::Text("done".into()), soon()).unwrap();
        let cpu = busy.cpu_time().expect("Linux has schedstat");
        assert!(cpu > Duration::from_millis(20), "{cpu:?} of {at:?}");
        assert!(cpu <= busy.elapsed(), "{cpu:?} of {at:?}");
        let mut idle = sh("echo up; sleep 0.3; echo done; sleep 5", vec![]);
        idle.expect(&Pattern::Text("up".into()), soon()).unwrap();
        let before = idle.cpu_time().expect("Linux has schedstat");
        idle.expect(&Pattern::Text("done".into()), soon()).unwrap();
        let slept = idle.cpu_time().expect("Linux has schedstat") - before;
        assert!(slept < Duration::from_millis(100), "{slept:?} asleep");
    }

    #[test]
    fn patterns() {
        let text = Pattern::Text("CPUs online: 4".into());
        assert_eq!(text.find(b"x CPUs online: 4\n"), Some(2..16));
        assert!(!text.is_in(b"CPUs online: 2"));
        let re = Pattern::regex(r"online: (\d+)").unwrap();
        assert_eq!(re.find(b"CPUs online: 12"), Some(5..15));
        assert_eq!(re.to_string(), r"/online: (\d+)/");
        assert_eq!(text.to_string(), "\"CPUs online: 4\"");
    }

    #[test]
    fn expects_in_order_and_types() {
        let mut s = sh(
            "echo 'one'; echo two; read line; echo \"got $line\"; printf 'no newline'",
            vec![],
        );
        let t1 = s.expect(&Pattern::Text("one".into()), soon()).unwrap();
        let t2 = s.expect(&Pattern::Text("two".into()), soon()).unwrap();
        assert!(t1 <= t2);
        // "one" is behind the cursor now.
        s.send(b"hello\n").unwrap();
        s.expect(&Pattern::regex("got h.llo").unwrap(), soon())
            .unwrap();
        s.expect(&Pattern::Text("no newline".into()), soon())
            .unwrap();
        let closed = s.expect(&Pattern::Text("one".into()), soon()).unwrap_err();
        assert!(matches!(closed, Failure::Closed(_)), "{closed}");
        let transcript = s.finish().transcript;
        let lines: Vec<&str> = transcript.lines().collect();
        assert_eq!(lines.len(), 4, "{transcript}");
        assert!(lines[0].starts_with('[') && lines[0].ends_with("] one"));
        assert!(lines[3].ends_with("] no newline"));
    }

    #[test]
    fn times_out_without_sleeping_past_the_deadline() {
        let mut s = sh("echo start; exec sleep 30", vec![]);
        let deadline = Instant::now() + Duration::from_millis(300);
        let err = s
            .expect(&Pattern::Text("never".into()), deadline)
            .unwrap_err();
        assert!(matches!(err, Failure::Timeout));
        assert!(s.elapsed() < Duration::from_secs(5));
        s.finish();
    }

    #[test]
    fn forbidden_output_fails_the_wait() {
        let forbid = vec![Pattern::Text("panic".into())];
        let mut s = sh(
            "echo ok; read go; echo 'kernel panic: oops'; echo later; exec sleep 30",
            forbid,
        );
        s.expect(&Pattern::Text("ok".into()), soon()).unwrap();
        s.send(b"go\n").unwrap();
        let err = s
            .expect(&Pattern::Text("never".into()), soon())
            .unwrap_err();
        match err {
            Failure::Forbidden { line, .. } => assert_eq!(line, "kernel panic: oops"),
            other => panic!("{other}"),
        }
        s.finish();
    }

    #[test]
    fn forbidden_unfinished_line_is_seen_at_the_end() {
        let forbid = vec![Pattern::Text("Unhandled".into())];
        let mut s = sh("echo ready; printf 'Unhandled exception'", forbid);
        s.expect(&Pattern::Text("exception".into()), soon())
            .unwrap();
        assert!(matches!(
            s.check_all_forbidden(),
            Err(Failure::Forbidden { .. })
        ));
        s.finish();
    }

    #[test]
    fn stderr_is_kept_apart() {
        let mut s = sh("echo oops >&2; echo out", vec![]);
        s.expect(&Pattern::Text("out".into()), soon()).unwrap();
        let record = s.finish();
        assert_eq!(record.stderr, "oops\n");
        assert!(!record.transcript.contains("oops"));
    }
}

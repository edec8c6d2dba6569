//! The multiplexer: the clients, which of them is focused, what goes to
//! the terminal and what the user types.
//!
//! [`Console`] is plain state without system calls. The server feeds it
//! client requests ([`Console::create`], [`Console::write`],
//! [`Console::read`], the input-interrupt operations), typed bytes
//! ([`Console::input`]) and the time ([`Console::set_time`],
//! [`Console::tick`]), and takes back the terminal output
//! ([`Console::take_output`]) and what it must do with capabilities
//! ([`Console::take_events`]).
//!
//! # Output
//!
//! Every byte a client writes goes into its history. The focused client's
//! output goes to the terminal untagged and at once. A client that is not
//! focused is shown (tagged, see [`crate::term`]) when it is shown (`-a`,
//! `show`, Ctrl-E s), else only kept. Shown clients' output is assembled
//! into lines first (line buffering, on by default): a line appears when
//! its newline arrives, or after `line-buffering-ms` as a partial line,
//! so lines of different clients never interleave. A partial line that
//! somebody else's output interrupts continues later with `: ` after the
//! tag. When the focus changes, partial lines of shown clients are written
//! out, the new client's last 10 lines are shown below
//! `------------- Connecting to 'x' -------------`, and the previously
//! focused client's unfinished line continues tagged with `: `.
//!
//! # Input
//!
//! Typed bytes go through the [`crate::escape`] parser. With a client
//! focused, ordinary bytes go to its input queue (its `read` takes them),
//! translated and echoed by its attributes ([`crate::ldisc`]). Ctrl-E
//! (shown as `[Ctrl-E]`) takes one key:
//!
//! | key         | does                                                |
//! |-------------|-----------------------------------------------------|
//! | `.`         | disconnect: back to the `cons> ` prompt             |
//! | `e` `c` `z` `q` | send Ctrl-E, Ctrl-C, Ctrl-Z, ESC to the client  |
//! | `l`         | send a break                                        |
//! | Ctrl-E      | send Ctrl-E                                         |
//! | `h`         | hide all clients but the focused one                |
//! | `s`         | show all clients                                    |
//! | a client's key | focus that client                                |
//! | other       | a one-line help                                     |
//!
//! With no client focused, typed lines are commands ([`crate::command`])
//! at the prompt `<mux>> ` (L4Re's command mode); Ctrl-E and a key work
//! there too (`h`, `s`, a client's key).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::colour::Colour;
use crate::command::{self, COMMANDS, Command, Grep};
use crate::escape::{CTRL_E, ESC, EscapeParser, Event as Key, Mode};
use crate::history::History;
use crate::ldisc::{Attrs, INPUT_QUEUE, InputQueue, push_echo};
use crate::options::Options;
use crate::spec::ClientSpec;
use crate::term::{Tag, Term, Writer};

/// A client's id (stable for its life; never reused).
pub type ClientId = u32;

/// The most clients at a time (including kept ones that are gone).
pub const MAX_CLIENTS: usize = 256;
/// Lines shown when a client is focused.
pub const CONNECT_TAIL: usize = 10;
/// The longest command line.
pub const MAX_LINE: usize = 256;
/// A shown client's partial line is written out at this length.
pub const MAX_PENDING: usize = 1024;
/// What is shown for Ctrl-E while a client is focused.
pub const ESCAPE_SHOWN: &[u8] = b"[Ctrl-E]";
/// Keys that mean something after Ctrl-E while a client is focused.
pub const RESERVED_KEYS: &[u8] = b".eczqlhs";
/// Keys that mean something after Ctrl-E at the prompt too.
pub const GLOBAL_KEYS: &[u8] = b".hs";

/// What the server must do for the console.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// Trigger the client's input interrupt: it has input to read.
    Trigger(ClientId),
    /// The client is gone: release its capabilities (gate, interrupt).
    Release(ClientId),
}

/// Why a client request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConsError {
    /// No client with this id.
    NoClient(ClientId),
    /// [`MAX_CLIENTS`] reached.
    TooManyClients,
}

impl std::fmt::Display for ConsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConsError::NoClient(id) => write!(f, "no client {id}"),
            ConsError::TooManyClients => write!(f, "too many clients (at most {MAX_CLIENTS})"),
        }
    }
}

impl std::error::Error for ConsError {}

/// A client's input interrupt, as its Vcon Icu sees it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IrqState {
    /// An Irq is bound to line 0.
    pub bound: bool,
    /// Line 0 is masked.
    pub masked: bool,
}

/// One client.
#[derive(Clone, Debug)]
pub struct Client {
    /// Its id.
    pub id: ClientId,
    /// The tag it was created with.
    pub tag: String,
    /// 0, or N for the N-th later client with the same tag.
    pub idx: u32,
    /// The name: the tag, or `tag:idx`.
    pub name: String,
    /// Its colour.
    pub colour: Colour,
    /// The key that focuses it after Ctrl-E.
    pub key: Option<u8>,
    /// Output shown while not focused.
    pub shown: bool,
    /// Kept after it is gone.
    pub keep: bool,
    /// Gone (its log has no users any more).
    pub dead: bool,
    /// Output assembled into lines.
    pub line_buffering: bool,
    /// How long a partial line waits, in ms.
    pub line_buffering_ms: u64,
    /// Lines get timestamps.
    pub timestamp: bool,
    /// Its Vcon attributes.
    pub attrs: Attrs,
    /// Its input interrupt.
    pub irq: IrqState,
    /// Everything it wrote (the last bytes).
    pub history: History,
    /// Its input not read yet.
    pub input: InputQueue,
    pending: Vec<u8>,
    pending_since: Option<u64>,
    continued: bool,
    at_line_start: bool,
}

impl Client {
    /// Whether a partial line of it waits to be shown.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }
}

/// The multiplexer.
#[derive(Debug)]
pub struct Console {
    opts: Options,
    mux: String,
    clients: BTreeMap<ClientId, Client>,
    next_id: ClientId,
    focus: Option<ClientId>,
    term: Term,
    parser: EscapeParser,
    escape_shown: bool,
    escape_at_line_start: bool,
    line: Vec<u8>,
    last_cr: bool,
    prompt_broken: bool,
    events: Vec<Event>,
    now_ms: u64,
}

/// Appends the timestamp of `ms` (time since cons started).
fn push_stamp(ms: u64, out: &mut Vec<u8>) {
    let _ = write!(StrBuf(out), "[{:5}.{:03}] ", ms / 1000, ms % 1000);
}

/// `fmt::Write` into a byte vector.
struct StrBuf<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for StrBuf<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

impl Console {
    /// A console without clients, configured by `opts`.
    pub fn new(opts: Options) -> Console {
        Console {
            mux: opts.mux_name().to_string(),
            opts,
            clients: BTreeMap::new(),
            next_id: 1,
            focus: None,
            term: Term::new(),
            parser: EscapeParser::new(),
            escape_shown: false,
            escape_at_line_start: false,
            line: Vec::new(),
            last_cr: false,
            prompt_broken: false,
            events: Vec::new(),
            now_ms: 0,
        }
    }

    /// Writes the banner and the prompt.
    pub fn start(&mut self) {
        self.say("Console Server");
        self.prompt();
    }

    /// The options.
    pub fn options(&self) -> &Options {
        &self.opts
    }

    /// Sets the current time (ms since cons started; never goes back).
    pub fn set_time(&mut self, now_ms: u64) {
        self.now_ms = self.now_ms.max(now_ms);
    }

    /// The focused client.
    pub fn focus(&self) -> Option<ClientId> {
        self.focus
    }

    /// A client.
    pub fn client(&self, id: ClientId) -> Option<&Client> {
        self.clients.get(&id)
    }

    /// The client called `name`.
    pub fn client_by_name(&self, name: &str) -> Option<ClientId> {
        self.clients.values().find(|c| c.name == name).map(|c| c.id)
    }

    /// Every client, in creation order.
    pub fn clients(&self) -> impl Iterator<Item = &Client> {
        self.clients.values()
    }

    /// The id the next client gets.
    pub fn next_id(&self) -> ClientId {
        self.next_id
    }

    /// Whether no more clients can be created.
    pub fn is_full(&self) -> bool {
        self.clients.len() >= MAX_CLIENTS || self.next_id == ClientId::MAX
    }

    /// Takes the terminal output.
    pub fn take_output(&mut self) -> Vec<u8> {
        self.term.take()
    }

    /// Takes what the server must do.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    // ------------------------------------------------------------------
    // Clients
    // ------------------------------------------------------------------

    /// Creates a client.
    pub fn create(&mut self, spec: &ClientSpec) -> Result<ClientId, ConsError> {
        if self.is_full() {
            return Err(ConsError::TooManyClients);
        }
        let mut warnings = Vec::new();
        if let Some(k) = spec.key {
            if self.clients.values().any(|c| c.key == Some(k)) {
                warnings.push(format!(
                    "WARNING: multiple clients with key '{}'",
                    char::from(k)
                ));
            }
            if RESERVED_KEYS.contains(&k) {
                let k = char::from(k);
                let where_ = if GLOBAL_KEYS.contains(&(k as u8)) {
                    "cannot be used"
                } else {
                    "works only at the prompt"
                };
                warnings.push(format!(
                    "WARNING: key '{k}' of '{}' {where_} (Ctrl-E {k} is taken)",
                    spec.tag
                ));
            }
        }
        let idx = match self.clients.values().rev().find(|c| c.tag == spec.tag) {
            Some(c) => {
                warnings.push(format!("WARNING: multiple clients with tag '{}'", spec.tag));
                c.idx + 1
            }
            None => 0,
        };
        for o in &spec.ignored {
            warnings.push(format!(
                "WARNING: '{}': unknown option '{o}' ignored",
                spec.tag
            ));
        }
        let id = self.next_id;
        self.next_id += 1;
        let name = if idx == 0 {
            spec.tag.clone()
        } else {
            format!("{}:{idx}", spec.tag)
        };
        let bufsz = spec.bufsz.unwrap_or(self.opts.bufsz);
        let client = Client {
            id,
            tag: spec.tag.clone(),
            idx,
            name: name.clone(),
            colour: spec.colour,
            key: spec.key,
            shown: spec.show.unwrap_or(self.opts.show_all),
            keep: spec.keep.unwrap_or(self.opts.keep),
            dead: false,
            line_buffering: spec.line_buffering.unwrap_or(self.opts.line_buffering),
            line_buffering_ms: spec
                .line_buffering_ms
                .unwrap_or(self.opts.line_buffering_ms),
            timestamp: spec.timestamp.unwrap_or(self.opts.timestamp),
            attrs: Attrs::default(),
            irq: IrqState::default(),
            history: History::new(bufsz),
            input: InputQueue::new(INPUT_QUEUE),
            pending: Vec::new(),
            pending_since: None,
            continued: false,
            at_line_start: true,
        };
        self.clients.insert(id, client);
        for w in warnings {
            self.say(&w);
        }
        self.say(&format!("Created vcon channel: {name}"));
        if self
            .opts
            .autoconnect
            .iter()
            .any(|a| *a == spec.tag || *a == name)
        {
            self.connect(id);
        }
        self.after_output();
        Ok(id)
    }

    fn get(&mut self, id: ClientId) -> Result<&mut Client, ConsError> {
        self.clients.get_mut(&id).ok_or(ConsError::NoClient(id))
    }

    /// The client's task is gone: its capabilities are released; it is
    /// removed unless it is kept. Returns whether it was removed.
    pub fn gone(&mut self, id: ClientId) -> Result<bool, ConsError> {
        let c = self.get(id)?;
        let was_dead = c.dead;
        c.dead = true;
        let keep = c.keep;
        if !was_dead {
            self.events.push(Event::Release(id));
        }
        if keep {
            return Ok(false);
        }
        self.remove(id);
        Ok(true)
    }

    fn remove(&mut self, id: ClientId) {
        if self.focus == Some(id) {
            self.disconnect();
        }
        self.flush_pending(id);
        self.clients.remove(&id);
        self.after_output();
    }

    /// Writes a client's output.
    pub fn write(&mut self, id: ClientId, data: &[u8]) -> Result<(), ConsError> {
        let now = self.now_ms;
        let focused = self.focus == Some(id);
        let c = self.get(id)?;
        let data = if c.timestamp {
            let mut v = Vec::with_capacity(data.len() + 16);
            for &b in data {
                if c.at_line_start {
                    push_stamp(now, &mut v);
                }
                v.push(b);
                c.at_line_start = b == b'\n';
            }
            v
        } else {
            if let Some(&b) = data.last() {
                c.at_line_start = b == b'\n';
            }
            data.to_vec()
        };
        c.history.push(&data);
        if focused {
            let broken = self.term.segment(Writer::Client(id), None, &data, false);
            self.get(id)?.continued = false;
            self.note_broken(broken);
        } else if c.shown {
            if c.line_buffering {
                c.pending.extend_from_slice(&data);
                if let Some(nl) = c.pending.iter().rposition(|&b| b == b'\n') {
                    let lines: Vec<u8> = c.pending.drain(..=nl).collect();
                    self.emit_tagged(id, &lines[..nl], true);
                }
                let c = self.get(id)?;
                if c.pending.len() >= MAX_PENDING {
                    self.flush_pending(id);
                } else if c.pending.is_empty() {
                    c.pending_since = None;
                } else if c.pending_since.is_none() {
                    c.pending_since = Some(now);
                }
            } else {
                self.emit_tagged(id, &data, false);
            }
        }
        self.after_output();
        Ok(())
    }

    /// Reads up to `max` bytes of a client's input (never blocks): the
    /// bytes and the Vcon read flags.
    pub fn read(&mut self, id: ClientId, max: usize) -> Result<(Vec<u8>, u64), ConsError> {
        Ok(self.get(id)?.input.read(max))
    }

    /// A client's attributes.
    pub fn attrs(&self, id: ClientId) -> Result<Attrs, ConsError> {
        self.clients
            .get(&id)
            .map(|c| c.attrs)
            .ok_or(ConsError::NoClient(id))
    }

    /// Sets a client's attributes.
    pub fn set_attrs(&mut self, id: ClientId, a: Attrs) -> Result<(), ConsError> {
        self.get(id)?.attrs = a;
        Ok(())
    }

    /// An Irq was bound to the client's input line (unmasked).
    pub fn irq_bind(&mut self, id: ClientId) -> Result<(), ConsError> {
        let c = self.get(id)?;
        c.irq = IrqState {
            bound: true,
            masked: false,
        };
        if c.input.has_input() {
            self.events.push(Event::Trigger(id));
        }
        Ok(())
    }

    /// The Irq was unbound.
    pub fn irq_unbind(&mut self, id: ClientId) -> Result<(), ConsError> {
        self.get(id)?.irq = IrqState::default();
        Ok(())
    }

    /// Masks or unmasks the client's input line. Unmasking with input
    /// waiting triggers at once (so a client that reads until
    /// [`l4_abi::proto::vcon::READ_STAT_DONE`], unmasks and waits never
    /// misses input).
    pub fn irq_mask(&mut self, id: ClientId, masked: bool) -> Result<(), ConsError> {
        let c = self.get(id)?;
        c.irq.masked = masked;
        if !masked && c.irq.bound && c.input.has_input() {
            self.events.push(Event::Trigger(id));
        }
        Ok(())
    }

    fn notify(&mut self, id: ClientId) {
        if let Some(c) = self.clients.get(&id)
            && c.irq.bound
            && !c.irq.masked
            && !self.events.contains(&Event::Trigger(id))
        {
            self.events.push(Event::Trigger(id));
        }
    }

    // ------------------------------------------------------------------
    // Time
    // ------------------------------------------------------------------

    /// When the next partial line is due ([`Console::tick`]), in ms.
    pub fn next_deadline(&self) -> Option<u64> {
        self.clients
            .values()
            .filter(|c| c.shown && Some(c.id) != self.focus)
            .filter_map(|c| c.pending_since.map(|t| t + c.line_buffering_ms))
            .min()
    }

    /// Writes out partial lines that waited long enough.
    pub fn tick(&mut self) {
        let now = self.now_ms;
        let due: Vec<ClientId> = self
            .clients
            .values()
            .filter(|c| {
                c.shown
                    && Some(c.id) != self.focus
                    && c.pending_since
                        .is_some_and(|t| t + c.line_buffering_ms <= now)
            })
            .map(|c| c.id)
            .collect();
        for id in due {
            self.flush_pending(id);
        }
        self.after_output();
    }

    // ------------------------------------------------------------------
    // Terminal output
    // ------------------------------------------------------------------

    /// Marks the writer whose line was broken.
    fn note_broken(&mut self, broken: Option<Writer>) {
        match broken {
            Some(Writer::Client(id)) => {
                if let Some(c) = self.clients.get_mut(&id) {
                    c.continued = true;
                }
            }
            Some(Writer::Mux) => self.prompt_broken = true,
            None => {}
        }
    }

    /// Writes a client's output tagged.
    fn emit_tagged(&mut self, id: ClientId, text: &[u8], end: bool) {
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        let tag = Tag {
            name: &c.name,
            colour: c.colour,
            continued: c.continued,
        };
        let broken = self.term.segment(Writer::Client(id), Some(tag), text, end);
        if !text.is_empty() || end {
            c.continued = false;
        }
        self.note_broken(broken);
    }

    /// Writes out a client's partial line.
    fn flush_pending(&mut self, id: ClientId) {
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        let p = std::mem::take(&mut c.pending);
        c.pending_since = None;
        if !p.is_empty() {
            self.emit_tagged(id, &p, false);
        }
    }

    /// Writes a message of cons on lines of its own (then the prompt again
    /// when no client is focused).
    pub fn message(&mut self, text: &str) {
        self.say(text);
        self.after_output();
    }

    /// Writes a message of cons on lines of its own.
    fn say(&mut self, text: &str) {
        if self.term.open_line() == Some(Writer::Mux) {
            self.term.yield_line();
            self.prompt_broken = true;
        }
        let broken = self.term.segment(Writer::Mux, None, text.as_bytes(), true);
        self.note_broken(broken);
    }

    /// Writes `bytes` of cons as they are, ending with a newline.
    fn say_raw(&mut self, bytes: &[u8]) {
        let broken = self.term.raw(Writer::Mux, bytes);
        self.note_broken(broken);
        if self.term.open_line() == Some(Writer::Mux) {
            self.term.break_line();
        }
    }

    /// Shows the prompt and the command line typed so far.
    fn prompt(&mut self) {
        if self.term.open_line() == Some(Writer::Mux) {
            self.term.yield_line();
        }
        let mut p = format!("{}> ", self.mux).into_bytes();
        p.extend_from_slice(&self.line);
        let broken = self.term.segment(Writer::Mux, None, &p, false);
        self.note_broken(broken);
        // Output that comes while it waits erases it and shows it again
        // below: the prompt stays the last line.
        self.term.mark_erasable();
        self.prompt_broken = false;
    }

    /// After output: show the prompt again if it was broken and the
    /// terminal is free.
    fn after_output(&mut self) {
        if self.focus.is_none() && self.prompt_broken && self.term.at_line_start() {
            self.prompt();
        }
    }

    // ------------------------------------------------------------------
    // Focus
    // ------------------------------------------------------------------

    /// Focuses a client: its output untagged, typed bytes to it.
    pub fn connect(&mut self, id: ClientId) {
        if self.focus == Some(id) || !self.clients.contains_key(&id) {
            return;
        }
        let shown: Vec<ClientId> = self
            .clients
            .values()
            .filter(|c| c.shown && c.id != id && Some(c.id) != self.focus && c.has_pending())
            .map(|c| c.id)
            .collect();
        for s in shown {
            self.flush_pending(s);
        }
        self.focus = Some(id);
        self.escape_shown = false;
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        c.pending.clear();
        c.pending_since = None;
        let tail = c.history.tail(CONNECT_TAIL);
        let name = c.name.clone();
        self.say(&format!(
            "------------- Connecting to '{name}' -------------"
        ));
        let broken = self.term.raw(Writer::Client(id), &tail);
        self.note_broken(broken);
        if let Some(c) = self.clients.get_mut(&id) {
            c.continued = false;
        }
    }

    /// Back to the prompt.
    pub fn disconnect(&mut self) {
        if self.focus.take().is_some() {
            self.escape_shown = false;
            let broken = self.term.break_line();
            self.note_broken(broken);
            self.prompt();
        }
    }

    fn set_shown(&mut self, id: ClientId, shown: bool) {
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        c.shown = shown;
        if !shown {
            c.pending.clear();
            c.pending_since = None;
        }
    }

    // ------------------------------------------------------------------
    // Input
    // ------------------------------------------------------------------

    /// Handles bytes typed on the terminal.
    pub fn input(&mut self, bytes: &[u8]) {
        for &b in bytes {
            let mode = if self.focus.is_some() {
                Mode::Connected
            } else {
                Mode::Prompt
            };
            match self.parser.feed(b, mode) {
                None | Some(Key::Sequence(_)) => {}
                Some(Key::Escape) => self.escape_typed(),
                Some(Key::Command(k)) => self.escape_key(k),
                Some(Key::Byte(b)) => match self.focus {
                    Some(id) => self.inject(id, b),
                    None => self.prompt_byte(b),
                },
            }
        }
        self.after_output();
    }

    fn escape_typed(&mut self) {
        if let Some(id) = self.focus {
            self.escape_at_line_start = self.term.at_line_start();
            let broken = self
                .term
                .segment(Writer::Client(id), None, ESCAPE_SHOWN, false);
            self.note_broken(broken);
            self.escape_shown = true;
        }
    }

    /// Erases `[Ctrl-E]` if it is still the last thing on the terminal.
    fn erase_escape(&mut self) {
        if !std::mem::take(&mut self.escape_shown) {
            return;
        }
        if let Some(id) = self.focus
            && self.term.open_line() == Some(Writer::Client(id))
        {
            let erase = b"\x08 \x08".repeat(ESCAPE_SHOWN.len());
            self.term.segment(Writer::Client(id), None, &erase, false);
            if self.escape_at_line_start {
                self.term.assume_line_start();
            }
        }
    }

    fn escape_key(&mut self, k: u8) {
        self.erase_escape();
        let focus = self.focus;
        match (k, focus) {
            (b'.', Some(_)) => self.disconnect(),
            (b'.', None) => {}
            (b'e' | CTRL_E, Some(id)) => self.inject(id, CTRL_E),
            (b'c', Some(id)) => self.inject(id, 0x03),
            (b'z', Some(id)) => self.inject(id, 0x1a),
            (b'q', Some(id)) => self.inject(id, ESC),
            (b'l', Some(id)) => {
                if let Some(c) = self.clients.get_mut(&id) {
                    c.input.put_break();
                }
                let broken = self
                    .term
                    .segment(Writer::Client(id), None, b"[Break]", false);
                self.note_broken(broken);
                self.notify(id);
            }
            (b'h', _) => {
                let ids: Vec<ClientId> = self.clients.keys().copied().collect();
                for id in ids {
                    if Some(id) != focus {
                        self.set_shown(id, false);
                    }
                }
            }
            (b's', _) => {
                let ids: Vec<ClientId> = self.clients.keys().copied().collect();
                for id in ids {
                    self.set_shown(id, true);
                }
            }
            _ => match self.clients.values().find(|c| c.key == Some(k) && !c.dead) {
                Some(c) => {
                    let id = c.id;
                    self.connect(id);
                }
                None => {
                    let help = self.key_help(k);
                    self.say(&help);
                }
            },
        }
    }

    /// The one-line help for an unknown key after Ctrl-E.
    fn key_help(&self, k: u8) -> String {
        let shown = if k.is_ascii_graphic() {
            format!("'{}'", char::from(k))
        } else {
            format!("0x{k:02x}")
        };
        let mut s = format!(
            "[{}] Ctrl-E {shown}: unknown key. Keys: . disconnect, e c z q send ^E ^C ^Z ESC, l break, h hide others, s show all",
            self.mux
        );
        for c in self.clients.values().filter(|c| !c.dead) {
            if let Some(key) = c.key {
                let _ = write!(s, ", {} {}", char::from(key), c.name);
            }
        }
        s
    }

    /// A byte for the focused client.
    fn inject(&mut self, id: ClientId, b: u8) {
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        let Some(t) = c.attrs.translate(b) else {
            return;
        };
        let queued = c.input.put(t);
        if c.attrs.echo() {
            let mut e = Vec::new();
            push_echo(t, &mut e);
            c.continued = false;
            let broken = self.term.segment(Writer::Client(id), None, &e, false);
            self.note_broken(broken);
        }
        if queued {
            self.notify(id);
        }
    }

    /// A byte typed at the prompt.
    fn prompt_byte(&mut self, b: u8) {
        let was_cr = std::mem::take(&mut self.last_cr);
        if self.prompt_broken {
            self.prompt();
        }
        match b {
            b'\r' => {
                self.last_cr = true;
                self.enter();
            }
            b'\n' if was_cr => {}
            b'\n' => self.enter(),
            0x7f | 0x08 => {
                if !self.line.is_empty() {
                    while let Some(x) = self.line.pop() {
                        if x & 0xc0 != 0x80 {
                            break;
                        }
                    }
                    self.echo(b"\x08 \x08");
                }
            }
            0x03 => {
                self.echo(b"^C");
                self.line.clear();
                self.term.break_line();
                self.prompt();
            }
            0x15 => {
                let chars = String::from_utf8_lossy(&self.line).chars().count();
                self.echo(&b"\x08 \x08".repeat(chars));
                self.line.clear();
            }
            0x0c => {
                self.term.break_line();
                self.say_raw(b"\x1b[H\x1b[2J");
                self.prompt();
            }
            b'\t' => self.complete(),
            0..=0x1f => {}
            _ => {
                if self.line.len() < MAX_LINE {
                    self.line.push(b);
                    self.echo(&[b]);
                }
            }
        }
    }

    fn echo(&mut self, bytes: &[u8]) {
        let broken = self.term.segment(Writer::Mux, None, bytes, false);
        self.note_broken(broken);
    }

    /// Enter at the prompt: run the line.
    fn enter(&mut self) {
        let line = String::from_utf8_lossy(&std::mem::take(&mut self.line)).into_owned();
        let broken = self.term.segment(Writer::Mux, None, b"", true);
        self.note_broken(broken);
        self.run_line(&line);
        if self.focus.is_none() {
            self.prompt();
        }
    }

    /// Completes the command or client name being typed.
    fn complete(&mut self) {
        let Ok(line) = String::from_utf8(self.line.clone()) else {
            return;
        };
        let (head, word) = match line.rfind(' ') {
            Some(i) => (&line[..=i], &line[i + 1..]),
            None => ("", line.as_str()),
        };
        let candidates: Vec<String> = if head.trim().is_empty() {
            COMMANDS.iter().map(|c| c.0.to_string()).collect()
        } else {
            self.clients.values().map(|c| c.name.clone()).collect()
        };
        let matches: Vec<&String> = candidates.iter().filter(|c| c.starts_with(word)).collect();
        let Some(first) = matches.first() else {
            return;
        };
        let mut common = first.as_str();
        for m in &matches[1..] {
            let n = common
                .char_indices()
                .zip(m.chars())
                .take_while(|((_, a), b)| a == b)
                .last()
                .map_or(0, |((i, a), _)| i + a.len_utf8());
            common = &common[..n];
        }
        let mut new = format!("{head}{common}");
        if matches.len() == 1 {
            new.push(' ');
        }
        if new.len() > MAX_LINE {
            return;
        }
        if matches.len() == 1 {
            let added = new
                .as_bytes()
                .get(self.line.len()..)
                .unwrap_or_default()
                .to_vec();
            self.line = new.into_bytes();
            self.echo(&added);
        } else {
            let list: Vec<&str> = matches.iter().map(|s| s.as_str()).collect();
            self.say(&list.join(" "));
            self.line = new.into_bytes();
            self.prompt();
        }
    }

    // ------------------------------------------------------------------
    // Commands
    // ------------------------------------------------------------------

    /// Runs a command line typed at the prompt.
    pub fn run_line(&mut self, line: &str) {
        match command::parse(line) {
            Ok(None) => {}
            Ok(Some(c)) => self.run(c),
            Err(e) => self.say(&e.to_string()),
        }
    }

    fn lookup(&mut self, cmd: &str, name: &str) -> Option<ClientId> {
        let id = self.client_by_name(name);
        if id.is_none() {
            self.say(&format!("{cmd}: console '{name}' not found"));
        }
        id
    }

    fn run(&mut self, c: Command) {
        match c {
            Command::Help => self.help(),
            Command::Info => {
                let focus = self
                    .focus
                    .and_then(|id| self.clients.get(&id))
                    .map_or("none".to_string(), |c| c.name.clone());
                let text = format!(
                    "Cons -- Vcon multiplexer '{}': {} clients, focus: {focus}",
                    self.mux,
                    self.clients.len()
                );
                self.say(&text);
            }
            Command::Clear => self.say_raw(b"\x1b[H\x1b[2J"),
            Command::List { long } => self.list(long),
            Command::Connect(n) => {
                if let Some(id) = self.lookup("connect", &n) {
                    self.connect(id);
                }
            }
            Command::Cat(n) => {
                if let Some(id) = self.lookup("cat", &n) {
                    let all = self.clients[&id].history.all();
                    self.say_raw(&all);
                }
            }
            Command::Tail(n, lines) => {
                if let Some(id) = self.lookup("tail", &n) {
                    let t = self.clients[&id].history.tail(lines);
                    self.say_raw(&t);
                }
            }
            Command::Show(n) => {
                if let Some(id) = self.lookup("show", &n) {
                    self.set_shown(id, true);
                }
            }
            Command::Hide(n) => {
                if let Some(id) = self.lookup("hide", &n) {
                    self.set_shown(id, false);
                }
            }
            Command::ShowAll => {
                let ids: Vec<ClientId> = self.clients.keys().copied().collect();
                ids.into_iter().for_each(|id| self.set_shown(id, true));
            }
            Command::HideAll => {
                let ids: Vec<ClientId> = self.clients.keys().copied().collect();
                ids.into_iter().for_each(|id| self.set_shown(id, false));
            }
            Command::Keep(n) => {
                if let Some(id) = self.lookup("keep", &n)
                    && let Some(c) = self.clients.get_mut(&id)
                {
                    c.keep = true;
                }
            }
            Command::Drop(n) => {
                if let Some(id) = self.lookup("drop", &n)
                    && let Some(c) = self.clients.get_mut(&id)
                {
                    c.keep = false;
                    if c.dead {
                        self.remove(id);
                    }
                }
            }
            Command::Kick(n) => {
                if let Some(id) = self.lookup("kick", &n)
                    && self.clients[&id].irq.bound
                    && !self.events.contains(&Event::Trigger(id))
                {
                    self.events.push(Event::Trigger(id));
                }
            }
            Command::Key(n, k) => {
                if let Some(id) = self.lookup("key", &n) {
                    if self
                        .clients
                        .values()
                        .any(|c| c.id != id && c.key == Some(k))
                    {
                        self.say(&format!(
                            "WARNING: multiple clients with key '{}'",
                            char::from(k)
                        ));
                    }
                    if let Some(c) = self.clients.get_mut(&id) {
                        c.key = Some(k);
                    }
                }
            }
            Command::Timestamp(n, on) => {
                if let Some(id) = self.lookup("timestamp", &n)
                    && let Some(c) = self.clients.get_mut(&id)
                {
                    c.timestamp = on;
                }
            }
            Command::Grep(g) => self.grep(&g),
        }
    }

    fn help(&mut self) {
        let mut lines = vec![format!("{} commands:", self.mux)];
        for (name, args, help) in COMMANDS {
            if let Some(h) = help {
                lines.push(format!("{:>15} - {h} ({name} {args})", name));
            }
        }
        lines.push(String::new());
        lines.push("Key shortcuts when connected:".into());
        for (k, what) in [
            (".", "Disconnect"),
            ("e", "Inject Ctrl-E"),
            ("c", "Inject Ctrl-C"),
            ("z", "Inject Ctrl-Z"),
            ("q", "Inject ESC"),
            ("l", "Inject Break sequence"),
        ] {
            lines.push(format!("   Ctrl-E {k}     - {what}"));
        }
        lines.push(String::new());
        lines.push("Global key shortcuts:".into());
        lines.push("   Ctrl-E h     - Hide all output (except current)".into());
        lines.push("   Ctrl-E s     - Show all output".into());
        let user: Vec<String> = self
            .clients
            .values()
            .filter_map(|c| {
                c.key.map(|k| {
                    format!(
                        "   Ctrl-E {}     - Connect to console '{}'",
                        char::from(k),
                        c.name
                    )
                })
            })
            .collect();
        if !user.is_empty() {
            lines.push(String::new());
            lines.push("User defined key shortcuts:".into());
            lines.extend(user);
        }
        for l in lines {
            self.say(&l);
        }
    }

    fn list(&mut self, long: bool) {
        let mut lines = Vec::new();
        for c in self.clients.values() {
            let key = c
                .key
                .map_or("   ".to_string(), |k| format!("({})", char::from(k)));
            let mut l = format!(
                "{:>14} {key} [{:>8}] out:{:>5}/{:>6} in:{:>5}/{:>5}{}{}",
                c.name,
                if c.shown { self.mux.as_str() } else { "" },
                c.history.total_lines(),
                c.history.total_bytes(),
                c.input.total_lines(),
                c.input.total_bytes(),
                if c.dead { " [X]" } else { "" },
                if self.focus == Some(c.id) { " *" } else { "" },
            );
            if long {
                let _ = write!(
                    l,
                    " pend={} attr:o={:o},i={:o},l={:o} irq:{}",
                    c.input.len(),
                    c.attrs.oflags,
                    c.attrs.iflags,
                    c.attrs.lflags,
                    match (c.irq.bound, c.irq.masked) {
                        (false, _) => "none",
                        (true, false) => "bound",
                        (true, true) => "masked",
                    }
                );
            }
            lines.push(l);
        }
        if lines.is_empty() {
            lines.push("no clients".into());
        }
        for l in lines {
            self.say(&l);
        }
    }

    fn grep(&mut self, g: &Grep) {
        let fold = |s: &str| {
            if g.ignore_case {
                s.to_lowercase()
            } else {
                s.to_string()
            }
        };
        let pattern = fold(&g.pattern);
        let mut out = Vec::new();
        for name in &g.clients {
            if self.client_by_name(name).is_none() {
                out.push(format!("grep: console '{name}' not found"));
            }
        }
        for c in self.clients.values() {
            if !g.clients.is_empty() && !g.clients.contains(&c.name) {
                continue;
            }
            let mut n = 0;
            for line in c.history.lines() {
                let text = String::from_utf8_lossy(&line);
                if fold(&text).contains(&pattern) != g.invert {
                    n += 1;
                    if !g.count {
                        out.push(format!("{}: {text}", c.name));
                    }
                }
            }
            if g.count {
                out.push(format!("{}: {n}", c.name));
            }
        }
        for l in out {
            self.say(&l);
        }
    }
}

#[cfg(test)]
mod tests;

//! The input escape parser: splits what is typed on the terminal into
//! ordinary bytes, the Ctrl-E escape with its command key, and (at the
//! prompt) terminal control sequences such as the arrow keys.
//!
//! It is a small state machine over single bytes that never fails and
//! keeps no more than a counter, so any byte sequence is safe.
//!
//! | state       | byte                 | result                                   |
//! |-------------|----------------------|------------------------------------------|
//! | normal      | Ctrl-E (0x05)        | [`Event::Escape`], wait for the key      |
//! | normal      | ESC (prompt only)    | start of a control sequence              |
//! | normal      | any other            | [`Event::Byte`]                          |
//! | after Ctrl-E| any                  | [`Event::Command`] with that byte        |
//! | ESC         | `[` or `O`           | a CSI/SS3 sequence follows               |
//! | ESC         | ESC                  | still a sequence start                   |
//! | ESC         | any other            | dropped (Alt-key)                        |
//! | CSI/SS3     | 0x20..=0x3f          | parameter (at most 16, then dropped)     |
//! | CSI/SS3     | 0x40..=0x7e          | [`Event::Sequence`] with the final byte  |
//! | CSI/SS3     | any other            | the sequence is dropped                  |
//!
//! While a client is focused, ESC is an ordinary byte: sequences go to the
//! client as typed.

/// The escape key: Ctrl-E.
pub const CTRL_E: u8 = 0x05;
/// ESC.
pub const ESC: u8 = 0x1b;
/// The most parameter bytes a control sequence may have.
pub const MAX_PARAMS: u8 = 16;

/// Where typed bytes go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// To a focused client.
    Connected,
    /// To cons's own prompt.
    Prompt,
}

/// What a typed byte amounts to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// An ordinary byte.
    Byte(u8),
    /// Ctrl-E: a command key follows.
    Escape,
    /// The key typed after Ctrl-E.
    Command(u8),
    /// A control sequence at the prompt, with its final byte (`A`..`D` for
    /// the arrow keys).
    Sequence(u8),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Normal,
    AfterEscape,
    Esc,
    Csi(u8),
}

/// The parser.
#[derive(Clone, Debug)]
pub struct EscapeParser {
    state: State,
}

impl Default for EscapeParser {
    fn default() -> EscapeParser {
        EscapeParser::new()
    }
}

impl EscapeParser {
    /// A parser in its normal state.
    pub const fn new() -> EscapeParser {
        EscapeParser {
            state: State::Normal,
        }
    }

    /// Whether a Ctrl-E is waiting for its key.
    pub fn after_escape(&self) -> bool {
        self.state == State::AfterEscape
    }

    /// Forgets a half-typed escape or sequence.
    pub fn reset(&mut self) {
        self.state = State::Normal;
    }

    /// Feeds one byte typed while in `mode`.
    pub fn feed(&mut self, b: u8, mode: Mode) -> Option<Event> {
        if mode == Mode::Connected && matches!(self.state, State::Esc | State::Csi(_)) {
            // A sequence begun at the prompt does not continue into a client.
            self.state = State::Normal;
        }
        match self.state {
            State::AfterEscape => {
                self.state = State::Normal;
                Some(Event::Command(b))
            }
            State::Normal => match b {
                CTRL_E => {
                    self.state = State::AfterEscape;
                    Some(Event::Escape)
                }
                ESC if mode == Mode::Prompt => {
                    self.state = State::Esc;
                    None
                }
                _ => Some(Event::Byte(b)),
            },
            State::Esc => {
                self.state = match b {
                    b'[' | b'O' => State::Csi(0),
                    ESC => State::Esc,
                    _ => State::Normal,
                };
                None
            }
            State::Csi(n) => match b {
                0x20..=0x3f if n < MAX_PARAMS => {
                    self.state = State::Csi(n + 1);
                    None
                }
                0x40..=0x7e => {
                    self.state = State::Normal;
                    Some(Event::Sequence(b))
                }
                _ => {
                    self.state = State::Normal;
                    None
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(bytes: &[u8], mode: Mode) -> Vec<Event> {
        let mut p = EscapeParser::new();
        bytes.iter().filter_map(|&b| p.feed(b, mode)).collect()
    }

    #[test]
    fn ctrl_e_and_key() {
        use Event::*;
        assert_eq!(
            run(b"a\x051b", Mode::Connected),
            [Byte(b'a'), Escape, Command(b'1'), Byte(b'b')]
        );
        assert_eq!(
            run(b"\x05\x05\x05.", Mode::Prompt),
            [Escape, Command(CTRL_E), Escape, Command(b'.')]
        );
        let mut p = EscapeParser::new();
        p.feed(CTRL_E, Mode::Prompt);
        assert!(p.after_escape());
        p.reset();
        assert!(!p.after_escape());
        assert_eq!(p.feed(b'x', Mode::Prompt), Some(Byte(b'x')));
    }

    #[test]
    fn sequences_at_the_prompt() {
        use Event::*;
        assert_eq!(
            run(b"\x1b[A\x1b[5~x\x1bOB\x1bq\x1b\x1b[C", Mode::Prompt),
            [
                Sequence(b'A'),
                Sequence(b'~'),
                Byte(b'x'),
                Sequence(b'B'),
                Sequence(b'C')
            ]
        );
        // Too long, or broken by a control character: dropped.
        let mut long = b"\x1b[".to_vec();
        long.extend([b'1'; 20]);
        long.push(b'z');
        // 16 parameters, the 17th ends it; the last 3 are ordinary bytes.
        assert_eq!(
            run(&long, Mode::Prompt),
            [Byte(b'1'), Byte(b'1'), Byte(b'1'), Byte(b'z')]
        );
        assert_eq!(run(b"\x1b[1\ny", Mode::Prompt), [Byte(b'y')]);
        // Focused clients get ESC as typed.
        assert_eq!(
            run(b"\x1b[A", Mode::Connected),
            [Byte(0x1b), Byte(b'['), Byte(b'A')]
        );
        // A sequence half-typed at the prompt ends when a client is focused.
        let mut p = EscapeParser::new();
        assert_eq!(p.feed(ESC, Mode::Prompt), None);
        assert_eq!(p.feed(b'[', Mode::Connected), Some(Byte(b'[')));
    }

    /// Random bytes in random modes: every Ctrl-E is followed by exactly
    /// one key, sequences stay bounded, nothing panics.
    #[test]
    fn random_bytes() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut p = EscapeParser::new();
        let mut waiting_key = false;
        for _ in 0..200_000 {
            x = l4_xorshift::step(x);
            let b = match x % 5 {
                0 => CTRL_E,
                1 => ESC,
                2 => b'[',
                _ => (x >> 8) as u8,
            };
            let mode = if x & 0x100_0000 != 0 {
                Mode::Prompt
            } else {
                Mode::Connected
            };
            let e = p.feed(b, mode);
            if waiting_key {
                assert_eq!(e, Some(Event::Command(b)));
                waiting_key = false;
            } else if e == Some(Event::Escape) {
                waiting_key = true;
            } else {
                assert!(!matches!(e, Some(Event::Command(_))));
            }
            assert_eq!(p.after_escape(), waiting_key);
        }
    }
}

//! The multiplexer's behaviour, byte for byte.

use super::*;
use crate::spec::CreateArg;
use l4_abi::proto::vcon::{READ_STAT_BREAK, READ_STAT_DONE};

fn opts(args: &[&str]) -> Options {
    Options::parse(args).unwrap()
}

fn out(c: &mut Console) -> String {
    String::from_utf8_lossy(&c.take_output()).into_owned()
}

fn spec(tag: &str, colour: &str, opts: &[&str]) -> ClientSpec {
    let args: Vec<CreateArg<'_>> = opts.iter().map(|o| CreateArg::Str(o)).collect();
    ClientSpec::parse(tag, Some(CreateArg::Str(colour)), &args).unwrap()
}

/// A console with `-a` and the two clients of `conf/cons-test.ned`, output
/// taken.
fn two_clients(args: &[&str]) -> (Console, ClientId, ClientId) {
    let mut c = Console::new(opts(args));
    c.start();
    let one = c.create(&spec("one", "g", &["key=1"])).unwrap();
    let two = c.create(&spec("two", "b", &["key=2"])).unwrap();
    c.take_output();
    (c, one, two)
}

const GREEN: &str = "\x1b[32m";
const BLUE: &str = "\x1b[34m";
const RST: &str = "\x1b[0m";

#[test]
fn banner_prompt_and_creation() {
    let mut c = Console::new(opts(&["-a"]));
    c.start();
    assert_eq!(out(&mut c), "Console Server\ncons> ");
    let id = c.create(&spec("one", "g", &["key=1"])).unwrap();
    assert_eq!(out(&mut c), "\r\x1b[KCreated vcon channel: one\ncons> ");
    let cl = c.client(id).unwrap();
    assert_eq!(
        (cl.name.as_str(), cl.key, cl.shown),
        ("one", Some(b'1'), true)
    );
    assert_eq!(c.client_by_name("one"), Some(id));
    assert_eq!(c.next_id(), id + 1);
    // Another multiplexer name.
    let mut m = Console::new(opts(&["-m", "top"]));
    m.start();
    assert_eq!(out(&mut m), "Console Server\ntop> ");
}

#[test]
fn shown_clients_are_tagged_per_line() {
    let (mut c, one, two) = two_clients(&["-a"]);
    c.write(one, b"one: hello\n").unwrap();
    assert_eq!(
        out(&mut c),
        format!("\r\x1b[K{GREEN}one     | one: hello{RST}\ncons> ")
    );
    // A partial line waits for its end; another client's line meanwhile
    // appears whole.
    c.write(one, b"par").unwrap();
    assert_eq!(out(&mut c), "");
    c.write(two, b"two: x\ntwo: y\n").unwrap();
    assert_eq!(
        out(&mut c),
        format!("\r\x1b[K{BLUE}two     | two: x{RST}\n{BLUE}two     | two: y{RST}\ncons> ")
    );
    c.write(one, b"tial\n").unwrap();
    assert_eq!(
        out(&mut c),
        format!("\r\x1b[K{GREEN}one     | partial{RST}\ncons> ")
    );
    assert_eq!(
        c.client(one).unwrap().history.all(),
        b"one: hello\npartial\n"
    );
}

#[test]
fn partial_lines_after_a_while_and_their_continuation() {
    let (mut c, one, two) = two_clients(&["-a"]);
    c.set_time(1000);
    c.write(one, b"waiting").unwrap();
    assert_eq!(c.next_deadline(), Some(1050));
    c.set_time(1049);
    c.tick();
    assert_eq!(out(&mut c), "");
    c.set_time(1050);
    c.tick();
    assert_eq!(c.next_deadline(), None);
    assert_eq!(out(&mut c), format!("\r\x1b[K{GREEN}one     | waiting"));
    // The same client continues its line; another breaks it, and the rest
    // continues with `: `.
    c.write(two, b"two\n").unwrap();
    c.write(one, b" done\n").unwrap();
    assert_eq!(
        out(&mut c),
        format!(
            "{RST}\n{BLUE}two     | two{RST}\ncons> \r\x1b[K{GREEN}one     :  done{RST}\ncons> "
        ),
        "the prompt comes back whenever the terminal is free"
    );
    // Very long lines are cut.
    c.write(two, &[b'x'; MAX_PENDING]).unwrap();
    assert!(out(&mut c).contains(&"x".repeat(MAX_PENDING)));
}

#[test]
fn without_line_buffering_output_is_immediate() {
    let mut c = Console::new(opts(&["-a", "-l"]));
    let a = c.create(&spec("a", "n", &[])).unwrap();
    let b = c.create(&spec("b", "n", &["line-buffering"])).unwrap();
    c.take_output();
    c.write(a, b"x").unwrap();
    assert_eq!(out(&mut c), "a       | x");
    c.write(b, b"y").unwrap();
    assert_eq!(out(&mut c), "");
    c.write(a, b"z\n").unwrap();
    assert_eq!(out(&mut c), "z\n");
}

#[test]
fn hidden_clients_only_keep_history() {
    let (mut c, one, _) = two_clients(&[]);
    assert!(!c.client(one).unwrap().shown);
    c.write(one, b"quiet\n").unwrap();
    assert_eq!(out(&mut c), "");
    assert_eq!(c.client(one).unwrap().history.all(), b"quiet\n");
    // `show` in the spec overrides the default.
    let s = c.create(&spec("loud", "r", &["show"])).unwrap();
    c.take_output();
    c.write(s, b"!\n").unwrap();
    assert_eq!(out(&mut c), "\r\x1b[K\x1b[31mloud    | !\x1b[0m\ncons> ");
}

/// The scenario of tests/scenarios/cons.toml.
#[test]
fn ctrl_e_switches_focus_and_routes_input() {
    let (mut c, one, two) = two_clients(&["-a"]);
    c.write(one, b"one: hello from one (1)\n").unwrap();
    c.write(two, b"two: hello from two (1)\n").unwrap();
    c.take_output();

    c.input(b"\x05");
    assert_eq!(out(&mut c), "", "no [Ctrl-E] at the prompt");
    c.input(b"1");
    assert_eq!(c.focus(), Some(one));
    assert_eq!(
        out(&mut c),
        "\r\x1b[K------------- Connecting to 'one' -------------\none: hello from one (1)\n"
    );
    c.input(b"hello one\r");
    assert_eq!(out(&mut c), "hello one\n", "echo");
    assert_eq!(
        c.read(one, 100).unwrap(),
        (b"hello one\n".to_vec(), READ_STAT_DONE)
    );
    assert_eq!(c.read(two, 100).unwrap(), (Vec::new(), READ_STAT_DONE));
    c.write(one, b"one: got 'hello one'\n").unwrap();
    assert_eq!(out(&mut c), "one: got 'hello one'\n", "focused: untagged");
    // Background output is still tagged.
    c.write(two, b"two: hello from two (2)\n").unwrap();
    assert_eq!(
        out(&mut c),
        format!("{BLUE}two     | two: hello from two (2){RST}\n")
    );

    c.input(b"\x05");
    assert_eq!(out(&mut c), "[Ctrl-E]");
    c.input(b"2");
    assert_eq!(c.focus(), Some(two));
    assert_eq!(
        out(&mut c),
        format!(
            "{}------------- Connecting to 'two' -------------\ntwo: hello from two (1)\ntwo: hello from two (2)\n",
            "\x08 \x08".repeat(8)
        )
    );
    c.input(b"hello two\r");
    assert_eq!(c.read(two, 100).unwrap().0, b"hello two\n");
    assert!(c.read(one, 100).unwrap().0.is_empty());
    c.write(two, b"two: got 'hello two'\n").unwrap();
    c.write(one, b"one: hello from one (2)\n").unwrap();
    assert_eq!(
        out(&mut c),
        format!("hello two\ntwo: got 'hello two'\n{GREEN}one     | one: hello from one (2){RST}\n")
    );
    // Ctrl-E . goes back to the prompt.
    c.input(b"\x05.");
    assert_eq!(c.focus(), None);
    assert_eq!(
        out(&mut c),
        format!("[Ctrl-E]{}cons> ", "\x08 \x08".repeat(8))
    );
}

#[test]
fn a_broken_line_of_the_focused_client_continues_tagged() {
    let (mut c, one, two) = two_clients(&["-a"]);
    c.connect(one);
    c.take_output();
    c.write(one, b"/ # ").unwrap();
    assert_eq!(out(&mut c), "/ # ");
    c.connect(two);
    assert_eq!(
        out(&mut c),
        "\n------------- Connecting to 'two' -------------\n"
    );
    c.write(one, b"ls\n").unwrap();
    assert_eq!(out(&mut c), format!("{GREEN}one     : ls{RST}\n"));
    // Connecting shows the unfinished last line and leaves it open.
    c.connect(one);
    c.take_output();
    c.write(one, b"/ # ").unwrap();
    c.connect(two);
    c.connect(one);
    let o = out(&mut c);
    assert!(
        o.ends_with("------------- Connecting to 'one' -------------\n/ # ls\n/ # "),
        "{o:?}"
    );
    c.write(one, b"x").unwrap();
    assert_eq!(out(&mut c), "x");
}

#[test]
fn partial_lines_of_others_are_written_at_a_focus_change() {
    let (mut c, one, two) = two_clients(&["-a"]);
    c.write(two, b"half").unwrap();
    c.connect(one);
    assert_eq!(
        out(&mut c),
        format!(
            "\r\x1b[K{BLUE}two     | half{RST}\n------------- Connecting to 'one' -------------\n"
        )
    );
    c.write(two, b" rest\n").unwrap();
    assert_eq!(out(&mut c), format!("{BLUE}two     :  rest{RST}\n"));
}

#[test]
fn escape_keys_when_connected() {
    let (mut c, one, _) = two_clients(&["-a"]);
    c.connect(one);
    c.take_output();
    c.input(b"\x05e\x05c\x05z\x05q\x05\x05");
    assert_eq!(c.read(one, 100).unwrap().0, [0x05, 0x03, 0x1a, 0x1b, 0x05]);
    let o = out(&mut c);
    assert!(
        o.contains("^E") && o.contains("^C") && o.contains("^["),
        "{o:?}"
    );
    c.input(b"\x05l");
    assert!(out(&mut c).ends_with("[Break]"));
    assert_eq!(
        c.read(one, 100).unwrap(),
        (Vec::new(), READ_STAT_BREAK | READ_STAT_DONE)
    );
    // Unknown key: a short help line naming the keys.
    c.input(b"\x05x");
    let o = out(&mut c);
    assert!(
        o.contains("[cons] Ctrl-E 'x': unknown key. Keys: . disconnect"),
        "{o:?}"
    );
    assert!(o.contains(", 1 one, 2 two"));
    assert_eq!(c.focus(), Some(one));
    c.input(b"\x05\x7f");
    assert!(out(&mut c).contains("Ctrl-E 0x7f: unknown key"));
    // Its own key again: nothing changes.
    c.input(b"\x051");
    assert_eq!(c.focus(), Some(one));
    assert!(!out(&mut c).contains("Connecting"));
}

#[test]
fn escape_keys_at_the_prompt() {
    let (mut c, one, two) = two_clients(&["-a"]);
    c.input(b"\x05h");
    assert!(!c.client(one).unwrap().shown && !c.client(two).unwrap().shown);
    c.input(b"\x05s");
    assert!(c.client(one).unwrap().shown && c.client(two).unwrap().shown);
    c.take_output();
    c.input(b"\x05.");
    assert_eq!(out(&mut c), "");
    c.input(b"\x059");
    let o = out(&mut c);
    assert!(
        o.starts_with("\r\x1b[K[cons] Ctrl-E '9': unknown key."),
        "{o:?}"
    );
    assert!(o.ends_with("cons> "));
    // h keeps the focused client shown.
    c.connect(two);
    c.input(b"\x05h");
    assert!(!c.client(one).unwrap().shown && c.client(two).unwrap().shown);
}

#[test]
fn input_attributes() {
    let (mut c, one, _) = two_clients(&[]);
    c.connect(one);
    c.take_output();
    c.set_attrs(
        one,
        crate::ldisc::Attrs {
            iflags: 0,
            oflags: 0,
            lflags: 0,
        },
    )
    .unwrap();
    c.input(b"a\r");
    assert_eq!(out(&mut c), "", "no echo");
    assert_eq!(c.read(one, 1).unwrap(), (b"a".to_vec(), 0));
    assert_eq!(c.read(one, 1).unwrap(), (b"\r".to_vec(), READ_STAT_DONE));
    assert_eq!(c.attrs(one).unwrap().lflags, 0);
    assert_eq!(c.attrs(99), Err(ConsError::NoClient(99)));
    assert_eq!(c.read(99, 1), Err(ConsError::NoClient(99)));
    assert_eq!(c.write(99, b"x"), Err(ConsError::NoClient(99)));
}

#[test]
fn input_interrupts() {
    let (mut c, one, two) = two_clients(&[]);
    c.connect(one);
    c.input(b"x");
    assert!(c.take_events().is_empty(), "nothing bound");
    c.irq_bind(one).unwrap();
    assert_eq!(c.take_events(), [Event::Trigger(one)], "input was waiting");
    c.input(b"yz");
    assert_eq!(c.take_events(), [Event::Trigger(one)], "one per batch");
    c.irq_mask(one, true).unwrap();
    c.input(b"w");
    assert!(c.take_events().is_empty());
    c.irq_mask(one, false).unwrap();
    assert_eq!(c.take_events(), [Event::Trigger(one)]);
    c.read(one, 100).unwrap();
    c.irq_mask(one, false).unwrap();
    assert!(c.take_events().is_empty(), "nothing waiting");
    c.irq_unbind(one).unwrap();
    c.input(b"v");
    assert!(c.take_events().is_empty());
    c.irq_bind(two).unwrap();
    assert!(c.take_events().is_empty());
    c.run_line("kick two");
    assert_eq!(c.take_events(), [Event::Trigger(two)]);
}

#[test]
fn prompt_line_editing() {
    let mut c = Console::new(opts(&[]));
    c.start();
    c.take_output();
    c.input(b"hepl\x7f\x7flp");
    assert_eq!(out(&mut c), "hepl\x08 \x08\x08 \x08lp");
    c.input(b"\x15");
    assert_eq!(out(&mut c), "\x08 \x08".repeat(4));
    c.input(b"abc\x03");
    assert_eq!(out(&mut c), "abc^C\ncons> ");
    c.input(b"\x1b[Ax\x7f");
    assert_eq!(out(&mut c), "x\x08 \x08", "arrow keys are ignored");
    c.input(b"\r\n");
    assert_eq!(out(&mut c), "\ncons> ", "CR LF is one Enter");
    c.input(b"\n");
    assert_eq!(out(&mut c), "\ncons> ");
    c.input(b"\x0c");
    assert_eq!(out(&mut c), "\n\x1b[H\x1b[2J\ncons> ");
    // Multi-byte characters are erased whole; overlong lines are cut.
    c.input("ä\x7f".as_bytes());
    c.take_output();
    c.input(&[b'x'; MAX_LINE + 10]);
    assert_eq!(out(&mut c).len(), MAX_LINE);
    c.input(b"\x01\x02");
    assert_eq!(out(&mut c), "", "other control characters are ignored");
    c.input(b"\r");
    assert!(
        out(&mut c).contains("Unknown command"),
        "the cut line is run"
    );
}

#[test]
fn commands() {
    let (mut c, one, two) = two_clients(&["-a"]);
    c.write(one, b"l1\nl2\nl3\n").unwrap();
    c.take_output();
    let run = |c: &mut Console, line: &str| {
        c.input(line.as_bytes());
        c.input(b"\r");
        out(c)
    };
    let o = run(&mut c, "frob");
    assert!(
        o.contains("Unknown command 'frob'. Commands: cat clear connect"),
        "{o:?}"
    );
    assert!(o.ends_with("cons> "));
    let o = run(&mut c, "help");
    assert!(o.contains("cons commands:"));
    assert!(o.contains("connect - Connect to channel"));
    assert!(o.contains("Ctrl-E 1     - Connect to console 'one'"));
    let o = run(&mut c, "ls");
    assert!(
        o.contains("           one (1) [    cons] out:    3/     9 in:    0/    0"),
        "{o:?}"
    );
    let o = run(&mut c, "list -l");
    assert!(o.contains("attr:o=44,i=400,l=10 irq:none"), "{o:?}");
    let o = run(&mut c, "tail one 2");
    assert_eq!(o, "tail one 2\nl2\nl3\ncons> ");
    let o = run(&mut c, "cat one");
    assert_eq!(o, "cat one\nl1\nl2\nl3\ncons> ");
    let o = run(&mut c, "cat nobody");
    assert!(o.contains("cat: console 'nobody' not found"));
    let o = run(&mut c, "tail one x");
    assert!(o.contains("tail: invalid number 'x'"));
    run(&mut c, "hide one");
    assert!(!c.client(one).unwrap().shown);
    run(&mut c, "show one");
    assert!(c.client(one).unwrap().shown);
    run(&mut c, "hideall");
    assert!(c.clients().all(|x| !x.shown));
    run(&mut c, "showall");
    assert!(c.clients().all(|x| x.shown));
    run(&mut c, "key two x");
    assert_eq!(c.client(two).unwrap().key, Some(b'x'));
    let o = run(&mut c, "key one x");
    assert!(o.contains("WARNING: multiple clients with key 'x'"));
    let o = run(&mut c, "info");
    assert!(o.contains("Cons -- Vcon multiplexer 'cons': 2 clients, focus: none"));
    assert!(run(&mut c, "clear").contains("\x1b[H\x1b[2J"));
    let o = run(&mut c, "grep l2");
    assert!(o.contains("one: l2") && !o.contains("one: l1"));
    let o = run(&mut c, "grep -c -i L one");
    assert!(o.contains("one: 3") && !o.contains("two:"), "{o:?}");
    let o = run(&mut c, "grep -v l2 one nobody");
    assert!(o.contains("one: l1") && o.contains("grep: console 'nobody' not found"));
    run(&mut c, "timestamp one");
    assert!(c.client(one).unwrap().timestamp);
    run(&mut c, "timestamp one off");
    assert!(!c.client(one).unwrap().timestamp);
    let o = run(&mut c, "connect two");
    assert_eq!(c.focus(), Some(two));
    assert!(o.contains("Connecting to 'two'"));
    assert!(!o.ends_with("cons> "), "no prompt when connected");
}

#[test]
fn keep_drop_and_gone_clients() {
    let (mut c, one, two) = two_clients(&["-a"]);
    c.run_line("keep one");
    c.connect(one);
    assert_eq!(c.gone(one), Ok(false));
    assert_eq!(c.take_events(), [Event::Release(one)]);
    assert!(c.client(one).unwrap().dead);
    assert_eq!(c.focus(), Some(one), "a kept client stays focused");
    assert_eq!(c.gone(one), Ok(false));
    assert!(c.take_events().is_empty(), "released once");
    c.disconnect();
    c.take_output();
    c.run_line("ls");
    assert!(out(&mut c).contains(" [X]"));
    c.run_line("drop one");
    assert!(c.client(one).is_none());
    c.connect(two);
    assert_eq!(c.gone(two), Ok(true));
    assert_eq!(c.take_events(), [Event::Release(two)]);
    assert_eq!(c.focus(), None);
    assert!(out(&mut c).ends_with("cons> "));
    assert_eq!(c.gone(two), Err(ConsError::NoClient(two)));
    // -k keeps every client.
    let mut k = Console::new(opts(&["-k"]));
    let id = k.create(&spec("x", "", &[])).unwrap();
    assert_eq!(k.gone(id), Ok(false));
}

#[test]
fn duplicate_tags_and_keys() {
    let (mut c, _, _) = two_clients(&["-a"]);
    let d = c.create(&spec("one", "g", &["key=1"])).unwrap();
    let o = out(&mut c);
    assert!(o.contains("WARNING: multiple clients with key '1'"));
    assert!(o.contains("WARNING: multiple clients with tag 'one'"));
    assert!(o.contains("Created vcon channel: one:1"));
    assert_eq!(c.client(d).unwrap().name, "one:1");
    let e = c.create(&spec("one", "g", &[])).unwrap();
    assert_eq!(c.client(e).unwrap().name, "one:2");
    let r = c.create(&spec("r", "g", &["key=h", "weird"])).unwrap();
    let o = out(&mut c);
    assert!(o.contains("WARNING: key 'h' of 'r' cannot be used (Ctrl-E h is taken)"));
    assert!(o.contains("'r': unknown option 'weird' ignored"));
    c.input(b"\x05h");
    assert_ne!(c.focus(), Some(r), "h is hide at the prompt too");
    // A key taken only while connected works at the prompt.
    let z = c.create(&spec("z", "g", &["key=c"])).unwrap();
    assert!(out(&mut c).contains("WARNING: key 'c' of 'z' works only at the prompt"));
    c.input(b"\x05c");
    assert_eq!(c.focus(), Some(z));
}

#[test]
fn autoconnect() {
    let mut c = Console::new(opts(&["-c", "vm1"]));
    c.create(&spec("io", "r", &[])).unwrap();
    assert_eq!(c.focus(), None);
    let vm = c.create(&spec("vm1", "w", &[])).unwrap();
    assert_eq!(c.focus(), Some(vm));
}

#[test]
fn background_output_redraws_the_prompt() {
    let (mut c, one, _) = two_clients(&["-a"]);
    c.input(b"ls");
    c.take_output();
    c.write(one, b"note\n").unwrap();
    assert_eq!(
        out(&mut c),
        format!("\r\x1b[K{GREEN}one     | note{RST}\ncons> ls")
    );
    c.input(b"\r");
    assert!(out(&mut c).contains("one (1)"));
}

#[test]
fn timestamps() {
    let mut c = Console::new(opts(&["-a", "-t"]));
    let id = c.create(&spec("t", "n", &[])).unwrap();
    c.take_output();
    c.set_time(12_345);
    c.write(id, b"a\nb").unwrap();
    c.set_time(99_000);
    c.write(id, b"c\n").unwrap();
    assert_eq!(
        c.client(id).unwrap().history.all(),
        b"[   12.345] a\n[   12.345] bc\n"
    );
    c.set_time(5);
    c.write(id, b"d\n").unwrap();
    assert!(
        c.client(id)
            .unwrap()
            .history
            .all()
            .ends_with(b"[   99.000] d\n"),
        "time never goes back"
    );
}

#[test]
fn completion() {
    let (mut c, _, _) = two_clients(&[]);
    c.input(b"con\t");
    assert_eq!(out(&mut c), "connect ", "a unique command is completed");
    c.input(b"t\t");
    assert_eq!(out(&mut c), "two ", "a unique client too");
    c.input(b"\x15");
    c.take_output();
    c.input(b"c\t");
    let o = out(&mut c);
    assert_eq!(
        o, "c\r\x1b[Kc cat clear connect\ncons> c",
        "several: listed"
    );
    c.input(b"zz\t");
    assert_eq!(out(&mut c), "zz", "none: nothing");
    c.create(&spec("twin", "", &[])).unwrap();
    c.input(b"\x15connect t\t");
    let o = out(&mut c);
    assert!(o.ends_with("two twin\ncons> connect tw"), "{o:?}");
}

#[test]
fn too_many_clients() {
    let mut c = Console::new(opts(&[]));
    for i in 0..MAX_CLIENTS {
        c.create(&spec(&format!("c{i}"), "", &[])).unwrap();
    }
    assert!(c.is_full());
    assert_eq!(
        c.create(&spec("x", "", &[])),
        Err(ConsError::TooManyClients)
    );
    assert!(!ConsError::TooManyClients.to_string().is_empty());
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Random typing (biased towards Ctrl-E, keys, ESC, Enter) mixed with
/// random client operations never panics and keeps the state consistent.
#[test]
fn random_input_never_panics() {
    let interesting = [
        0x05u8, b'1', b'2', b'.', b'h', b's', b'l', 0x1b, b'[', b'\r', b'\n', 0x7f, 0x03, 0x0c,
        b'\t', 0x15, b' ',
    ];
    for seed in 1..=100u64 {
        let mut r = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let opts = if seed % 2 == 0 {
            opts(&["-a"])
        } else {
            opts(&["-k", "-l", "-t"])
        };
        let mut c = Console::new(opts);
        c.start();
        let mut ids = Vec::new();
        for step in 0..2000 {
            match r.below(20) {
                0 if ids.len() < 8 => {
                    let key = format!("key={}", char::from(b'1' + ids.len() as u8));
                    let tag = ["one", "two", "one", "x y"][r.below(4) as usize];
                    ids.push(c.create(&spec(tag, "g", &[&key])).unwrap());
                }
                1 if !ids.is_empty() => {
                    let id = ids[r.below(ids.len() as u64) as usize];
                    let _ = c.gone(id);
                }
                2..=4 if !ids.is_empty() => {
                    let id = ids[r.below(ids.len() as u64) as usize];
                    let n = r.below(40) as usize;
                    let data: Vec<u8> = (0..n).map(|_| r.next() as u8).collect();
                    let _ = c.write(id, &data);
                }
                5 if !ids.is_empty() => {
                    let id = ids[r.below(ids.len() as u64) as usize];
                    let _ = c.read(id, r.below(600) as usize);
                    let _ = c.irq_bind(id);
                    let _ = c.irq_mask(id, r.below(2) == 0);
                }
                6 => {
                    c.set_time(step * 7);
                    c.tick();
                }
                _ => {
                    let n = r.below(12) as usize;
                    let bytes: Vec<u8> = (0..n)
                        .map(|_| {
                            if r.below(2) == 0 {
                                interesting[r.below(interesting.len() as u64) as usize]
                            } else {
                                r.next() as u8
                            }
                        })
                        .collect();
                    c.input(&bytes);
                }
            }
            if let Some(f) = c.focus() {
                assert!(c.client(f).is_some(), "focus on a removed client");
            }
            for e in c.take_events() {
                if let Event::Trigger(id) = e {
                    assert!(c.client(id).is_some_and(|x| x.irq.bound));
                }
            }
            let o = c.take_output();
            assert!(o.len() < 1 << 20);
        }
    }
}

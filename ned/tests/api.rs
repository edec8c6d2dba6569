//! The `L4` module's functions and errors, against the fake backend.

mod common;

use common::{caps, map, ned_with, run_src};
use ned::cmdline;
use ned::fake::FakeBackend;

/// Runs `src` and expects it to succeed (its asserts hold).
fn ok(src: &str) -> std::rc::Rc<std::cell::RefCell<FakeBackend>> {
    let (_, fake, r) = run_src(
        src,
        &["l4re", "hello", "uvmm", "cons", "io", "l4vio_switch"],
    );
    if let Err(e) = r {
        panic!("script failed: {e}");
    }
    fake
}

#[test]
fn constants_have_l4re_values() {
    ok(r#"
        local L4 = require("L4")
        assert(L4 == _G.L4, "require and the global are the same module")
        local P = L4.Proto
        assert(P.Dataspace == 0x4000 and P.Namespace == 0x4001 and P.Goos == 0x4003)
        assert(P.Mem_alloc == 0x4004 and P.Rm == 0x4005 and P.Event == 0x4006)
        assert(P.Inhibitor == 0x4007 and P.Sigma0 == -6 and P.Log == -13)
        assert(P.Scheduler == -14 and P.Factory == -15 and P.Vm == -16)
        assert(P.Dma_space == -17 and P.Irq_sender == -18 and P.Semaphore == -20)
        assert(P.Iommu == -22 and P.Ipc_gate == 0)
        local R = L4.Rights
        assert(R.w == 1 and R.s == 2 and R.r == 4 and R.d == 8 and R.n == 16 and R.c == 32)
        assert(R.ro == 4 and R.rw == 5 and R.rws == 7)
        local F = L4.Mem_alloc_flags
        local all = F.Continuous | F.Pinned | F.Super_pages
        assert(all == 7 and math.type(all) == "integer")
        assert(F.Continuous | F.Super_pages == 5)
        assert(L4.Ldr_flags.eager_map == 1 and L4.Ldr_flags.pinned_segs == 4)
        assert(L4.Dbg.Warn == 2 and L4.Dbg.All == 0xffffffff)
        assert(L4.Info.arch() == "arm64" and L4.Info.platform() == "virt")
        assert(L4.Info.mword_bits() == 64)
        assert(L4.Info.Kip.str():find("L4RS"))
    "#);
}

#[test]
fn fields_are_built_once_and_listed_by_pairs() {
    ok(r#"
        assert(rawget(L4, "Proto") == nil, "fields are built on first use")
        local P = L4.Proto
        assert(rawget(L4, "Proto") == P and L4.Proto == P, "and kept")
        assert(L4.no_such_field == nil and L4[1] == nil)
        local seen = {}
        for k, v in pairs(L4) do seen[k] = v end
        for _, n in ipairs{"Proto", "Rights", "Mem_alloc_flags", "Ldr_flags", "Dbg", "Env",
                           "cast", "Info", "sleep", "msleep", "server_loop", "Cpu_set",
                           "Loader", "default_loader"} do
          assert(seen[n] ~= nil and seen[n] == rawget(L4, n), n)
        end
        assert(seen.Proto == P)
        L4.Rights = 1
        assert(L4.Rights == 1, "scripts may replace fields")
    "#);
}

#[test]
fn standard_libraries_open_on_first_use() {
    ok(r#"
        assert(rawget(_G, "math") == nil and rawget(_G, "io") == nil, "opened on first use")
        assert(math.max(1, 3) == 3 and rawget(_G, "math") == math)
        assert(require("os") == os and package.loaded.os == os)
        assert(require("utf8").char(72) == "H")
        assert(type(coroutine.wrap) == "function" and type(io.write) == "function")
        assert(string.format("%d", 7) == "7" and table.concat({1, 2}, ",") == "1,2")
        assert(no_such_global == nil)
        local seen = {}
        for k in pairs(_G) do seen[k] = true end
        assert(seen.math and seen.io and seen.os and seen.utf8 and seen.coroutine and seen.L4)
    "#);
}

#[test]
fn env_holds_neds_capabilities() {
    ok(r#"
        local E = L4.Env
        for _, n in ipairs{"parent", "mem_alloc", "user_factory", "log", "factory",
                           "scheduler", "rom", "icu", "sigma0", "kip"} do
          assert(E[n] ~= nil, n)
          assert(E[n]:is_valid(), n)
        end
        assert(E.user_factory == E.mem_alloc)
        assert(E.jdb == nil, "absent capabilities are nil")
        assert(tostring(E.log):match("^L4::Cap<Log>%[0x%x+ r%]$"), tostring(E.log))
    "#);
}

#[test]
fn rights_letters_integers_and_svr() {
    ok(r#"
        local c = L4.Env.log
        assert(tostring(c:m("rw")):find(" rw%]"))
        assert(tostring(c:m("W")):find(" rw%]"), "r is added, case does not matter")
        assert(tostring(c:mode("SWR")):find(" rws%]"))
        assert(tostring(c:rights("rwsdnc")):find(" rwsdnc%]"))
        assert(tostring(c:m(L4.Rights.rws)):find(" rws%]"), "integers")
        assert(tostring(c:m(0)):find(" r%]"))
        assert(tostring(c:m("")):find(" r%]"))
        assert(tostring(c:svr()):find(" rwsdc%]"))
        assert(c:m("rw") == c, "the same object whatever the rights")
        local ok, err = pcall(c.m, c, "rx")
        assert(not ok and err:find("unknown right 'x'"), err)
        ok, err = pcall(c.m, c, 300)
        assert(not ok and err:find("out of range"), err)
        ok, err = pcall(c.m, c, {})
        assert(not ok and err:find("rights expected"), err)
        ok, err = pcall(function() return L4.Env.log.m(5) end)
        assert(not ok and err:find("bad self"), err)
    "#);
}

#[test]
fn cast_by_number_and_name() {
    ok(r#"
        local s = L4.cast(L4.Proto.Factory, L4.Env.sigma0)
        assert(tostring(s):find("Cap<Factory>"))
        assert(s == L4.Env.sigma0)
        assert(tostring(L4.cast("L4Re::Dataspace", s)):find("Cap<Dataspace>"))
        assert(tostring(L4.cast("Namespace", s)):find("Cap<Namespace>"))
        assert(L4.cast(12345, s) == nil, "unknown protocol")
        assert(L4.cast("L4::Nothing", s) == nil)
        local ok, err = pcall(L4.cast, L4.Proto.Factory, 5)
        assert(not ok and err:find("capability expected, got number"), err)
    "#);
}

#[test]
fn cpu_sets() {
    let fake = ok(r#"
        local a = L4.Cpu_set:new("0-1")
        local b = L4.Cpu_set:new(0xc)
        assert(tostring(a | b) == "L4.Cpu_set(0-3)")
        assert(tostring(a & b) == "L4.Cpu_set()")
        assert((a | 4):mask() == 0x7, "integers are masks")
        assert(L4.Cpu_set.new({0, 2}):mask() == 5)
        assert(L4.Cpu_set:new():count() == 0 and #a == 2)
        assert(a:contains(1) and not a:contains(2))
        assert(a:add(5):mask() == 0x23)
        assert(L4.Cpu_set:new(0x3) == L4.Cpu_set:new("0,1"))
        local ok, err = pcall(L4.Cpu_set.new, "3-1")
        assert(not ok and err:find("invalid CPU set"), err)
        L4.Env.user_factory:create(L4.Proto.Scheduler, 10, 2, L4.Cpu_set:new("2-3"))
    "#);
    let fake = fake.borrow();
    assert_eq!(fake.created()[0].0, "Scheduler(10, 2, 0xc)@env:mem_alloc");
}

#[test]
fn factory_errors_are_l4re_tables() {
    let fake = ok(r#"
        local uf = L4.Env.user_factory
        local ok, e = pcall(uf.create, uf, L4.Proto.Dataspace, 4096 * 1024 * 1024)
        assert(not ok and type(e) == "table", tostring(e))
        assert(e[2] == -12 and e.code == -12, "out of memory")
        assert(e[1]:find("cannot create Dataspace") and e[1]:find("out of memory"), e[1])
        assert(e.msg == e[1])

        ok, e = pcall(uf.create, uf, L4.Proto.Scheduler, 10, 2, 0x30)
        assert(not ok and e[2] == -22 and e[1]:find("CPU 4 does not exist"), e[1])
        ok, e = pcall(uf.create, uf, L4.Proto.Scheduler, 2, 10, 0x3)
        assert(not ok and e[2] == -22 and e[1]:find("must exceed"), e[1])
        ok, e = pcall(uf.create, uf, L4.Proto.Vm)
        assert(not ok and e[2] == -38, "not something moe makes")
        ok, e = pcall(uf.create, uf, L4.Proto.Dataspace, {})
        assert(not ok and type(e) == "string", "a bad argument is a message")
        assert(e:find("bad argument #2 to 'create'"), e)
        ok, e = pcall(uf.create, uf, "Dataspace")
        assert(not ok and e:find("bad argument #1 to 'create' %(integer expected, got string%)"), e)
    "#);
    assert!(fake.borrow().created().is_empty());
}

#[test]
fn failed_starts_raise_clear_errors_scripts_can_catch() {
    let fake = ok(r#"
        local l = L4.default_loader
        local ok, e = pcall(l.start, l, {}, "rom/nothere -v")
        assert(not ok and e == "cannot start rom/nothere: no such file: rom/nothere: no such entity", e)

        ok, e = pcall(function() l:start({ caps = { [""] = L4.Env.log } }, "rom/hello") end)
        assert(not ok and e:find("^rom/test.ned:6: cannot start rom/hello: capability names must not be empty"), e)
        ok, e = pcall(function() l:start({ caps = { much_too_long_a_name = L4.Env.log } }, "rom/hello") end)
        assert(not ok and e:find("too long"), e)
        ok, e = pcall(function() l:start({ caps = { net = 1 } }, "rom/hello") end)
        assert(not ok and e:find("caps.net must be a capability, a function or a table, not 1"), e)
        ok, e = pcall(function() l:start({ scheduler = "fast" }, "rom/hello") end)
        assert(not ok and e:find("option 'scheduler' must be a capability"), e)
        ok, e = pcall(function() l:start({}, "   ") end)
        assert(not ok and e:find("names no program"), e)
        ok, e = pcall(function() l:startv({}, "rom/hello", {}, 3) end)
        assert(not ok and e:find("program arguments must be strings or numbers"), e)
        ok, e = pcall(function() l.start({}, "rom/hello") end)
        assert(not ok and e:find("call it as loader:start"), e)

        -- Out of memory and a bad scheduler mask come from the factory.
        ok, e = pcall(function()
          l:startv({ caps = { ram = L4.Env.user_factory:create(L4.Proto.Dataspace, 1 << 40) } }, "rom/uvmm")
        end)
        assert(not ok and e.code == -12, tostring(e))
        ok, e = pcall(function()
          l:startv({ scheduler = L4.Env.user_factory:create(L4.Proto.Scheduler, 10, 2, 0) }, "rom/uvmm")
        end)
        assert(not ok and e.code == -22 and e.msg:find("names no CPU"), tostring(e.msg))

        -- A log factory that is not a capability.
        local l2 = L4.Loader.new{ log_fab = 5 }
        ok, e = pcall(function() l2:start({}, "rom/hello") end)
        assert(not ok and e:find("log_fab' must be a capability"), e)

        -- ned goes on after all that.
        assert(l:start({}, "rom/hello"):state() == "running")
    "#);
    assert_eq!(fake.borrow().started().len(), 1);
}

#[test]
fn script_errors_name_file_and_line() {
    // A runtime error in the script.
    let (ned, _, r) = run_src("local x = 1\n\nnot_there(x)\n", &[]);
    let e = r.unwrap_err();
    assert_eq!(
        e.message,
        "rom/test.ned:3: attempt to call a nil value (global 'not_there')"
    );
    // A syntax error.
    let (_, _, r) = run_src("local x = = 1\n", &[]);
    let e = r.unwrap_err();
    assert!(
        e.message.starts_with("rom/test.ned:1: unexpected symbol"),
        "{e}"
    );
    // A failing start, uncaught: the line of the call.
    let (_, _, r) = run_src("\nL4.default_loader:start({}, 'rom/nothere')\n", &["l4re"]);
    assert_eq!(
        r.unwrap_err().message,
        "rom/test.ned:2: cannot start rom/nothere: no such file: rom/nothere: no such entity"
    );
    // A factory error table, uncaught: its message, code and the line.
    let (_, _, r) = run_src(
        "local uf = L4.Env.user_factory\nuf:create(L4.Proto.Dataspace, 1 << 40)\n",
        &[],
    );
    let e = r.unwrap_err();
    assert!(
        e.message
            .starts_with("rom/test.ned:2: cannot create Dataspace"),
        "{e}"
    );
    assert!(e.message.ends_with("out of memory (error -12)"), "{e}");
    // error() with other values.
    let (_, _, r) = run_src("error({})\n", &[]);
    assert_eq!(
        r.unwrap_err().message,
        "rom/test.ned:1: (error object is a table value)"
    );
    let (_, _, r) = run_src("error('plain', 0)\n", &[]);
    assert_eq!(r.unwrap_err().message, "rom/test.ned:1: plain");
    // A missing script.
    let e = ned.run_file("rom/none.ned", &[]).unwrap_err();
    assert_eq!(
        e.message,
        "cannot open rom/none.ned: rom/none.ned: no such entity"
    );
}

#[test]
fn errors_in_modules_show_the_calling_script_line() {
    // A failure inside vmm.lua: its line, and the script line that called.
    let (_, _, r) = run_src(
        "package.path = 'rom/?.lua'\nlocal vmm = require 'vmm'\n\nvmm.start_vm({ id = 1, mem = 1 << 30 })\n",
        &["l4re", "uvmm"],
    );
    let e = r.unwrap_err();
    assert!(
        e.message.starts_with("rom/vmm.lua:") && e.message.contains("cannot create Dataspace"),
        "{e}"
    );
    assert_eq!(e.traceback, ["rom/test.ned:4"], "{e}");
    // The start at the end of start_vm is a tail call, but of a C
    // function (the module's functions are): Lua keeps start_vm's frame
    // while it runs, so the message names vmm.lua's line, as above.
    let (_, _, r) = run_src(
        "package.path = 'rom/?.lua'\nlocal vmm = require 'vmm'\n\nvmm.start_vm({ id = 1, mem = 128, kernel = 'rom/Image' })\n",
        &["l4re"],
    );
    let e = r.unwrap_err();
    let vmm_lua = std::fs::read_to_string(common::conf_dir().join("vmm.lua")).unwrap();
    let startv = 1 + vmm_lua
        .lines()
        .position(|l| l.contains("return l:startv(opts, \"rom/uvmm\""))
        .expect("vmm.lua starts uvmm");
    assert_eq!(
        e.message,
        format!(
            "rom/vmm.lua:{startv}: cannot start rom/uvmm: no such file: rom/uvmm: no such entity"
        )
    );
    assert_eq!(e.traceback, ["rom/test.ned:4"], "{e}");
}

#[test]
fn ned_reports_a_broken_script_and_goes_on() {
    let (ned, fake) = ned_with(
        FakeBackend::new()
            .with_modules(&["l4re", "hello"])
            .with_file(
                "bad.ned",
                "L4.default_loader:start({}, 'rom/hello')\nlocal t = nil\nprint(t.x)\n",
            ),
    );
    let cmd = cmdline::parse(["-e", "x = ", "rom/bad.ned"]).unwrap();
    assert_eq!(ned::run(&ned, &cmd), None, "ned stays");
    let fake = fake.borrow();
    let log = fake.log_lines();
    assert_eq!(log[0], "Ned says: Hi World!");
    assert!(
        log[1].starts_with("Ned: error: (command line):1: unexpected symbol"),
        "{log:?}"
    );
    assert_eq!(log[2], "Ned: loading file: 'rom/bad.ned'");
    assert_eq!(
        log[3],
        "Ned: error: rom/bad.ned:3: attempt to index a nil value (local 't')"
    );
    assert_eq!(
        fake.started().len(),
        1,
        "what started before the error runs on"
    );

    // With --exit, ned ends with 1.
    let (ned, _) = ned_with(FakeBackend::new().with_file("bad.ned", "error('x')"));
    let cmd = cmdline::parse(["--exit", "rom/bad.ned"]).unwrap();
    assert_eq!(ned::run(&ned, &cmd), Some(1));
}

#[test]
fn script_arguments_and_exit_code() {
    let (ned, _) = ned_with(FakeBackend::new().with_file(
        "args.ned",
        "local a, b = ...\nassert(a == 'one' and b == 'two')\nassert(arg[0] == 'rom/args.ned' and arg[1] == 'one' and #arg == 2)\nreturn 7\n",
    ));
    let cmd = cmdline::parse(["--exit", "-e", "pre = 1", "rom/args.ned", "one", "two"]).unwrap();
    assert_eq!(ned::run(&ned, &cmd), Some(7));
    let pre: i64 = ned.lua().globals().get("pre").unwrap();
    assert_eq!(pre, 1, "-e statements run first");
}

#[test]
fn tasks_wait_kill_state_and_exit_handlers() {
    let (ned, fake) = ned_with(FakeBackend::new().with_modules(&["l4re", "hello", "uvmm"]));
    fake.borrow_mut().set_exit("rom/uvmm", 102);
    ned.exec(
        r#"
        local l = L4.default_loader
        local h = l:start({}, "rom/hello")
        assert(h:state() == "running" and h:exit_code() == nil)
        assert(tostring(h):find("rom/hello"))
        h:kill()
        assert(h:state() == "zombie" and h:exit_code() == nil)
        assert(h:wait() == nil, "killed: no exit code")
        assert(h:state() == nil, "reaped")
        local ok, e = pcall(h.wait, h)
        assert(not ok and e:find("already waited"), e)

        local vm = l:startv({}, "rom/uvmm")
        assert(vm:wait() == 102)

        vm2 = l:startv({}, "rom/uvmm")
        vm2:exit_handler(function(code) exit_seen = code end)
        "#,
    )
    .unwrap();
    ned.serve();
    let seen: i64 = ned.lua().globals().get("exit_seen").unwrap();
    assert_eq!(seen, 102, "the exit handler ran from the serving loop");
}

#[test]
fn require_dofile_and_loadfile_read_rom() {
    let (ned, _) = ned_with(
        FakeBackend::new()
            .with_file("mod.lua", "return { answer = 42 }")
            .with_file("sub/inner.lua", "return 'inner'")
            .with_file("broken.lua", "return = 1")
            .with_file("plain.lua", "counter = (counter or 0) + 1; return counter"),
    );
    ned.exec(
        r#"
        assert(package.path == "rom/?.lua", "the default path")
        assert(require("mod").answer == 42)
        assert(require("sub.inner") == "inner")
        local ok, e = pcall(require, "missing")
        assert(not ok and e:find("no file 'rom/missing.lua'"), e)
        ok, e = pcall(require, "broken")
        assert(not ok and e:find("error loading module 'broken' from file 'rom/broken.lua'"), e)
        assert(dofile("rom/plain.lua") == 1 and dofile("rom/plain.lua") == 2)
        local f = loadfile("rom/plain.lua")
        assert(f() == 3)
        local g, msg = loadfile("rom/none.lua")
        assert(g == nil and msg:find("cannot open rom/none.lua"), msg)
        ok, e = pcall(dofile, "rom/none.lua")
        assert(not ok and e:find("cannot open rom/none.lua"), e)
        package.path = "rom/sub/?.lua;rom/?.lua"
        assert(require("inner") == "inner")
        "#,
    )
    .unwrap();
}

#[test]
fn sleeping_goes_to_the_backend() {
    let fake = ok("L4.sleep(1)\nL4.msleep(250)\nassert(not pcall(L4.sleep, -1))\n");
    assert_eq!(
        fake.borrow().slept(),
        std::time::Duration::from_millis(1250)
    );
}

#[test]
fn start_options_reach_the_program() {
    let fake = ok(r#"
        local l = L4.default_loader
        local ns = { a = L4.Env.log, sub = { b = L4.Env.icu } }
        l:startv({
          caps = { ns = ns, fn = function(name) return L4.Env.sigma0:m("rw") end,
                   rom = L4.Env.rom:m("rw") },
          log = function() return L4.Env.log:m("rws") end,
          mem = L4.Env.mem_alloc, factory = L4.Env.factory:m("rws"),
          l4re_dbg = L4.Dbg.All, ldr_flags = L4.Ldr_flags.eager_map,
          l4re_loader = "rom/l4re", cpas = {},
        }, "rom/hello", "a b", 42, { "HOME=/", LANG = "C" })
    "#);
    let fake = fake.borrow();
    let s = &fake.started()[0].spec;
    assert_eq!(s.argv(), ["rom/hello", "a b", "42"]);
    assert_eq!(s.env, ["HOME=/", "LANG=C"]);
    assert_eq!(
        caps(&fake, s),
        map(&[
            ("fn", "env:sigma0 rw"),
            ("ns", "Namespace()@env:mem_alloc r"),
            ("rom", "env:rom rw"),
        ])
    );
    assert_eq!(fake.describe(&s.log), "env:log rws");
    assert_eq!(
        fake.describe(s.factory.as_ref().unwrap()),
        "env:factory rws"
    );
    assert_eq!(s.l4re_dbg, 0xffff_ffff);
    assert_eq!(s.ldr_flags, 1);
    let mut regs = fake.registrations();
    regs.sort();
    assert_eq!(regs.len(), 3);
    assert!(regs.contains(&(
        "Namespace()@env:mem_alloc".into(),
        "a".into(),
        Some("env:log r".into())
    )));
    assert!(regs.contains(&(
        "Namespace()@env:mem_alloc".into(),
        "b".into(),
        Some("env:icu r".into())
    )));
    assert!(
        fake.log_lines()
            .iter()
            .any(|l| l == "Ned: warning: rom/hello: unknown start option(s) cpas ignored"),
        "{:?}",
        fake.log_lines()
    );
}

#[test]
fn loaders_channels_namespaces_and_scheduler_proxies() {
    let fake = ok(r##"
        local l = L4.Loader.new{ mem = L4.Env.mem_alloc }
        assert(getmetatable(l) == L4.Loader)
        assert(l.log_fab == L4.Env.mem_alloc and l.factory == L4.Env.factory)
        local ch = l:new_channel()
        assert(tostring(ch):find("Ipc_gate"))
        local p = l:create_sched_proxy{ cpus = L4.Cpu_set:new("1-2"), prio_offset = 4, prio_limit = 6 }
        assert(tostring(p):find("Scheduler"))
        local ns = l:create_namespace({ x = ch })
        ns:register("y", L4.Env.log)
        ns:r("gone", nil)
        assert(ns:query("y") == L4.Env.log)
        assert(tostring(L4.Env.rom:q("hello")):find("Dataspace"))
        local ok, e = pcall(L4.Env.rom.query, L4.Env.rom, "nothing")
        assert(not ok and e.code == -2, "not found")
        assert(select("#", L4.Loader.split_args("rom/a b  c")) == 3)
        assert(l:create_namespace(5) == 5, "non-tables come back as they are")
    "##);
    let fake = fake.borrow();
    let created: Vec<String> = fake.created().into_iter().map(|c| c.0).collect();
    assert_eq!(
        created,
        [
            "Scheduler(10, 4, 0x6)@env:mem_alloc",
            "Namespace()@env:mem_alloc"
        ]
    );
}

#[test]
fn vmm_lua_options() {
    let fake = ok(r#"
        package.path = "rom/?.lua"
        local vmm = require "vmm"
        local t = vmm.table_override({ a = 1, b = 2 }, nil, { b = 3 })
        assert(t.a == 1 and t.b == 3)
        vmm.loader.log_fab = L4.default_loader:new_channel()
        vmm.start_vm{
          id = 12, mem = 64, mem_align = 22, ram_base = 0x40000000,
          fdt = { "rom/a.dtb", "rom/b.dtb" }, kernel = "rom/Image",
          prio = 3, cpus = 0x2, mon = true, ext_args = { "-v" },
          ext_caps = { extra = L4.Env.icu },
        }
        vmm.start_vm{ id = 3, mem = L4.Env.user_factory:create(L4.Proto.Dataspace, 4096),
                      log = L4.Env.log, scheduler = vmm.new_sched(5) }
        vmm.start_virtio_switch({ p = { "ds-max=8" } }, nil, nil, "switch")
        vmm.start_io({}, { log = { "myio" }, caps = { extra = L4.Env.log } })
    "#);
    let fake = fake.borrow();
    let vm = &fake.started()[0].spec;
    assert_eq!(
        vm.argv(),
        [
            "rom/uvmm",
            "-drom/a.dtb",
            "-drom/b.dtb",
            "-krom/Image",
            "-b0x40000000",
            "-v"
        ]
    );
    assert_eq!(
        caps(&fake, vm),
        map(&[
            ("extra", "env:icu r"),
            ("mon", "Log(\"mon12\", \"g\")@channel#1 r"),
            ("ram", "Dataspace(67108864, 7, 22)@env:mem_alloc rw"),
            ("rom", "env:rom r"),
        ])
    );
    assert_eq!(
        fake.describe(&vm.log),
        "Log(\"vm12\", \"w\", nil)@channel#1 r",
        "no key for ids from 10"
    );
    assert_eq!(
        fake.describe(vm.scheduler.as_ref().unwrap()),
        "Scheduler(13, 3, 2)@env:mem_alloc r"
    );
    let vm = &fake.started()[1].spec;
    assert_eq!(
        caps(&fake, vm)["ram"],
        "Dataspace(4096)@env:mem_alloc r",
        "a given dataspace is handed on as it is"
    );
    assert_eq!(fake.describe(&vm.log), "env:log r");
    assert_eq!(
        fake.describe(vm.scheduler.as_ref().unwrap()),
        "Scheduler(15, 5, nil)@env:mem_alloc r"
    );
    let sw = &fake.started()[2].spec;
    assert_eq!(sw.program, "rom/l4vio_switch");
    assert_eq!(sw.argv(), ["rom/l4vio_switch", "-v", "-p", "1"]);
    let io = &fake.started()[3].spec;
    assert_eq!(io.argv(), ["rom/io"]);
    assert_eq!(fake.describe(&io.log), "Log(\"myio\")@channel#1 r");
    assert_eq!(caps(&fake, io)["extra"], "env:log r");
    let ports: Vec<String> = fake
        .created()
        .into_iter()
        .map(|c| c.0)
        .filter(|c| c.starts_with("Ipc_gate"))
        .collect();
    assert_eq!(
        ports,
        ["Ipc_gate(\"ds-max=4\", \"name=p\", \"ds-max=8\")@channel#2"],
        "a table's values follow the dataspaces and the name (the last ds-max wins)"
    );
}

/// Every function of the module, called with arguments of every kind:
/// errors, never a panic, and ned keeps working.
#[test]
fn no_argument_makes_ned_panic() {
    let fake = ok(r#"
        local values = { nil, true, 0, -1, 2^63, 1.5, "", "rw", "rom/hello x",
                         {}, { caps = 5 }, { log = {} }, function() end,
                         L4.Env.log, L4.Cpu_set:new(1) }
        local targets = {}
        local function collect(prefix, t, self)
          for k, v in pairs(t) do
            if type(v) == "function" and k ~= "sleep" and k ~= "msleep" then
              targets[#targets + 1] = { prefix .. k, v, self }
            end
          end
        end
        collect("L4.", L4)
        collect("Loader.", L4.Loader, L4.default_loader)
        collect("Cpu_set.", L4.Cpu_set)
        local function methods(prefix, obj, names)
          for _, k in ipairs(names) do
            targets[#targets + 1] = { prefix .. k, function(...) return obj[k](...) end, obj }
          end
        end
        methods("cap:", L4.Env.log, { "m", "mode", "rights", "svr", "create", "query",
                                      "q", "register", "r", "is_valid" })
        local task = L4.default_loader:start({}, "rom/hello")
        methods("task:", task, { "state", "exit_code", "wait", "kill", "exit_handler" })
        methods("cpuset:", L4.Cpu_set:new(3), { "add", "contains", "cpus", "mask", "count" })
        assert(getmetatable(L4.Env.log) == false, "metatables are protected")
        local n = 0
        for _, t in ipairs(targets) do
          for i = 1, #values + 1 do
            for j = 1, #values + 1, 3 do
              pcall(t[2], t[3], values[i], values[j])
              pcall(t[2], values[i], values[j])
              n = n + 1
            end
          end
        end
        assert(n > 100)
        assert(L4.default_loader:start({}, "rom/hello"):state() == "running")
    "#);
    assert!(fake.borrow().started().len() >= 2);
}

#[test]
fn runaway_scripts_end_in_errors() {
    let (_, _, r) = run_src("local function f(n) return 1 + f(n + 1) end\nf(1)\n", &[]);
    let e = r.unwrap_err();
    assert!(e.message.contains("stack overflow"), "{e}");
    assert!(e.traceback.len() <= 10, "{}", e.traceback.len());
    let (_, _, r) = run_src("local s = string.rep('x', 1 << 62)\n", &[]);
    let e = r.unwrap_err();
    assert!(e.message.starts_with("rom/test.ned:1: "), "{e}");
}

//! Loading, instantiation and the instance's life: timers, limits, traps, exit and stop.

use wasmfleet_fw_runtime::abi::{FUNCTIONS, IMPORT_MODULE};
use wasmfleet_fw_runtime::{
    Ended, ImportError, Instance, InstanceError, LoadError, Runtime, State, load, load_static,
};
use wasmfleet_proto::{Capabilities, Digest};

use crate::support::{
    Board, Shared, artifact, digest, imports, instance, lines, module, wat, workload,
};

#[test]
fn timers_fire_in_deadline_order() {
    let m = wat(
        &["timer_start", "timer_cancel", "log"],
        r#"
        (global $periodic (mut i32) (i32.const -1))
        (global $fired (mut i32) (i32.const 0))
        (func (export "on_start")
          (drop (call $timer_start (i64.const 30) (i64.const 0)))
          (drop (call $timer_start (i64.const 10) (i64.const 0)))
          (global.set $periodic (call $timer_start (i64.const 20) (i64.const 20))))
        (func (export "on_timer") (param $h i32)
          (i32.store8 (i32.const 0) (i32.add (i32.const 48) (local.get $h)))
          (call $log (i32.const 2) (i32.const 0) (i32.const 1))
          (if (i32.eq (local.get $h) (global.get $periodic))
            (then
              (global.set $fired (i32.add (global.get $fired) (i32.const 1)))
              (if (i32.eq (global.get $fired) (i32.const 2))
                (then
                  (call $expect (call $timer_cancel (local.get $h)) (i32.const 0) (i32.const 1))
                  (call $expect (call $timer_cancel (local.get $h)) (i32.const -4) (i32.const 2)))))))"#,
    );
    let (world, mut inst) = instance(&m, Capabilities::default());
    assert_eq!(inst.next_deadline(), None, "not started");
    assert_eq!(inst.start(0), Ok(()));
    assert_eq!(inst.state(), &State::Running);
    assert_eq!(inst.next_deadline(), Some(10));
    assert_eq!(inst.fire_due_timers(5), Ok(0));
    assert_eq!(inst.fire_due_timers(10), Ok(1));
    assert_eq!(inst.fire_due_timers(25), Ok(1));
    assert_eq!(inst.next_deadline(), Some(30));
    assert_eq!(inst.fire_due_timers(30), Ok(1));
    assert_eq!(inst.next_deadline(), Some(40));
    // Far behind: the periodic timer fires once, then the module cancels it and, holding
    // nothing else, finishes.
    assert_eq!(inst.fire_due_timers(100), Err(Ended::Finished));
    assert_eq!(lines(&world), ["1", "2", "0", "2"]);
    assert_eq!(inst.next_deadline(), None);
    assert_eq!(
        inst.fire_due_timers(200),
        Err(Ended::Finished),
        "ended stays ended"
    );
}

#[test]
fn a_busy_timer_loop_cannot_starve_the_board() {
    let m = wat(
        &["timer_start"],
        r#"
        (func (export "on_start") (drop (call $timer_start (i64.const 0) (i64.const 0))))
        (func (export "on_timer") (param i32) (drop (call $timer_start (i64.const 0) (i64.const 0))))"#,
    );
    let (_world, mut inst) = instance(&m, Capabilities::default());
    inst.start(0).unwrap();
    assert_eq!(inst.fire_due_timers(0), Ok(32), "bounded per call");
    assert_eq!(inst.next_deadline(), Some(0), "and due again");
}

#[test]
fn an_endless_loop_runs_out_of_fuel() {
    let m = wat(
        &["timer_start"],
        r#"
        (func (export "on_start") (drop (call $timer_start (i64.const 0) (i64.const 0))))
        (func (export "on_timer") (param i32) (loop $forever (br $forever)))"#,
    );
    let (_world, mut inst) = instance(&m, Capabilities::default());
    inst.start(0).unwrap();
    let Err(Ended::Trapped(message)) = inst.fire_due_timers(0) else {
        panic!("{:?}", inst.state());
    };
    assert!(message.contains("exceeded its CPU budget"), "{message}");
    assert!(
        message.contains("on_timer") && message.contains("200000"),
        "{message}"
    );
    assert!(!Ended::Trapped(message).is_success());
}

#[test]
fn a_trap_ends_the_instance_and_the_runtime_runs_the_next() {
    let m = wat(
        &["timer_start", "log"],
        r#"
        (data (i32.const 0) "up")
        (func (export "on_start")
          (call $log (i32.const 2) (i32.const 0) (i32.const 2))
          (drop (call $timer_start (i64.const 5) (i64.const 0))))
        (func (export "on_timer") (param i32) unreachable)"#,
    );
    let rt = Runtime::new().unwrap();
    let module = module(&rt, &m);
    let world = Shared::default();
    for round in 1..=2 {
        let board = Board::new(&world);
        let mut inst = Instance::new(&rt, &module, workload(Capabilities::default()), board)
            .unwrap_or_else(|e| panic!("{e}"));
        inst.start(0).unwrap();
        let Err(Ended::Trapped(message)) = inst.fire_due_timers(5) else {
            panic!("{:?}", inst.state());
        };
        assert!(message.starts_with("wasm trap: "), "{message}");
        assert!(message.contains("unreachable"), "{message}");
        assert_eq!(lines(&world).len(), round);
    }
}

#[test]
fn memory_is_limited_across_growth_and_instantiation() {
    let grows = wat(
        &[],
        r#"
        (func (export "on_start")
          (call $expect (memory.grow (i32.const 1)) (i32.const 1) (i32.const 1))
          (drop (memory.grow (i32.const 1))))"#,
    );
    let rt = Runtime::new().unwrap();
    let world = Shared::default();
    let mut w = workload(Capabilities::default());
    w.memory_bytes = 2 << 16;
    let mut inst = Instance::new(&rt, &module(&rt, &grows), w.clone(), Board::new(&world)).unwrap();
    let Err(Ended::Trapped(message)) = inst.start(0) else {
        panic!("{:?}", inst.state());
    };
    assert!(
        message.starts_with("OOMKilled: memory limit exceeded"),
        "{message}"
    );
    assert_eq!(inst.memory_peak(), 2 << 16);
    let big = r#"(module (memory (export "memory") 3) (func (export "on_start")))"#;
    let err = Instance::new(&rt, &module(&rt, big), w, Board::new(&world)).unwrap_err();
    assert!(
        matches!(&err, InstanceError::Instantiate(m) if m.contains("OOMKilled")),
        "{err}"
    );
}

#[test]
fn exit_codes_and_stop() {
    let m = wat(
        &[],
        r#"(func (export "on_start") (call $exit (i32.const 3)))"#,
    );
    let (_world, mut inst) = instance(&m, Capabilities::default());
    let ended = inst.start(0).unwrap_err();
    assert_eq!((ended.exit_code(), ended.is_success()), (Some(3), false));
    assert_eq!(
        inst.stop(),
        Ended::Exited(3),
        "an ended instance stays as it was"
    );

    // on_stop gets its own bounded budget: an endless on_stop ends as out of fuel.
    let m = wat(
        &["timer_start"],
        r#"
        (func (export "on_start") (drop (call $timer_start (i64.const 1000) (i64.const 0))))
        (func (export "on_stop") (loop $forever (br $forever)))"#,
    );
    let (_world, mut inst) = instance(&m, Capabilities::default());
    inst.start(0).unwrap();
    let Ended::Trapped(message) = inst.stop() else {
        panic!("{:?}", inst.state());
    };
    assert!(message.contains("`on_stop`"), "{message}");

    // Stopped before on_start: no on_stop.
    let (_world, mut inst) = instance(&m, Capabilities::default());
    assert_eq!(inst.stop(), Ended::Stopped);
}

#[test]
fn imports_are_refused_by_name_unless_granted_and_offered() {
    let rt = Runtime::new().unwrap();
    let world = Shared::default();
    let try_new = |wat: &str, caps: Capabilities, kv: bool| {
        let mut board = Board::new(&world);
        if !kv {
            board.kv = None;
        }
        Instance::new(&rt, &module(&rt, wat), workload(caps), board).map(drop)
    };
    let i2c = wat(&["i2c_open"], r#"(func (export "on_start"))"#);
    let err = try_new(&i2c, Capabilities::default(), true).unwrap_err();
    assert_eq!(
        err,
        InstanceError::Import(ImportError::NotGranted {
            name: "i2c_open".into(),
            field: "capabilities.i2c"
        })
    );
    assert!(
        err.to_string().contains("`wasmfleet_v1::i2c_open`"),
        "{err}"
    );

    let kv = wat(&["kv_get"], r#"(func (export "on_start"))"#);
    let caps = Capabilities {
        kv_bytes: 10,
        ..Capabilities::default()
    };
    assert!(try_new(&kv, caps.clone(), true).is_ok());
    let err = try_new(&kv, caps, false).unwrap_err();
    assert!(
        matches!(err, InstanceError::Import(ImportError::NotOffered { .. })),
        "{err}"
    );

    let wasi = r#"(module
        (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
        (memory (export "memory") 1) (func (export "on_start")))"#;
    let err = try_new(wasi, Capabilities::default(), true).unwrap_err();
    assert!(
        err.to_string().contains("wasi_snapshot_preview1::fd_write"),
        "{err}"
    );

    let unknown = format!(
        r#"(module (import "{IMPORT_MODULE}" "format_disk" (func))
        (memory (export "memory") 1) (func (export "on_start")))"#
    );
    let err = try_new(&unknown, Capabilities::default(), true).unwrap_err();
    assert_eq!(
        err,
        InstanceError::Import(ImportError::Unknown("format_disk".into()))
    );

    let wrong = format!(
        r#"(module (import "{IMPORT_MODULE}" "log" (func (param i32)))
        (memory (export "memory") 1) (func (export "on_start")))"#
    );
    let err = try_new(&wrong, Capabilities::default(), true).unwrap_err();
    assert!(
        err.to_string().contains("(func (param i32 i32 i32))"),
        "{err}"
    );

    let no_start = r#"(module (memory (export "memory") 1) (func (export "_start")))"#;
    let err = try_new(no_start, Capabilities::default(), true).unwrap_err();
    assert!(err.to_string().contains("on_start"), "{err}");
    let no_memory = r#"(module (func (export "on_start")))"#;
    let err = try_new(no_memory, Capabilities::default(), true).unwrap_err();
    assert!(err.to_string().contains("memory"), "{err}");
    let bad_handler = r#"(module (memory (export "memory") 1) (func (export "on_start"))
        (func (export "on_timer") (param i64)))"#;
    let err = try_new(bad_handler, Capabilities::default(), true).unwrap_err();
    assert!(err.to_string().contains("bad `on_timer` export"), "{err}");
}

/// Every function of the ABI table links, with its signature, when everything is granted.
#[test]
fn every_abi_function_links_when_granted() {
    let names: Vec<&str> = FUNCTIONS.iter().map(|f| f.name).collect();
    let m = format!(
        r#"(module {} (memory (export "memory") 1) (func (export "on_start")))"#,
        imports(&names)
    );
    let all = Capabilities {
        i2c: vec!["i2c-1".into()],
        spi: vec!["spidev0.0".into()],
        gpio: vec![1],
        publish: vec!["t".into()],
        subscribe: vec!["t".into()],
        kv_bytes: 1,
    };
    let (_world, mut inst) = instance(&m, all);
    assert_eq!(inst.start(0), Err(Ended::Finished));
}

#[test]
fn artifacts_load_from_ram_only_with_their_digest_and_in_place() {
    let rt = Runtime::new().unwrap();
    let bytes = artifact(r#"(module (memory (export "memory") 1) (func (export "on_start")))"#);
    assert!(load(&rt, &bytes, &digest(&bytes)).is_ok());
    let err = load(&rt, &bytes, &Digest([0; 32])).unwrap_err();
    assert!(matches!(err, LoadError::Digest { .. }), "{err}");
    let garbage = b"not an artifact".to_vec();
    let err = load(&rt, &garbage, &digest(&garbage)).unwrap_err();
    assert!(matches!(err, LoadError::Artifact(_)), "{err}");
    // In place, as from flash: the bytes must outlive the module.
    let flash: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    // SAFETY: `flash` holds `precompile_module`'s output and is never freed or changed.
    let module = unsafe { load_static(&rt, flash) }.unwrap();
    let world = Shared::default();
    let mut inst = Instance::new(
        &rt,
        &module,
        workload(Capabilities::default()),
        Board::new(&world),
    )
    .unwrap();
    assert_eq!(inst.start(0), Err(Ended::Finished));
}

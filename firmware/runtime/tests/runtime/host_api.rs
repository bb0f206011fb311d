//! The host functions, one capability at a time, as `modules/ABI.md` specifies them.

use wasmfleet_fw_runtime::{Edges, Ended, LogLevel, State, union_filters};
use wasmfleet_proto::Capabilities;

use crate::support::{instance, lines, wat};

#[test]
fn log_lines_keep_level_and_text() {
    let m = wat(
        &["log"],
        r#"
        (data (i32.const 0) "hello\ff!")
        (func (export "on_start")
          (call $log (i32.const 2) (i32.const 0) (i32.const 5))
          (call $log (i32.const 0) (i32.const 0) (i32.const 5))
          (call $log (i32.const -7) (i32.const 0) (i32.const 1))
          (call $log (i32.const 9) (i32.const 0) (i32.const 7))
          ;; Outside memory: nothing is logged, nothing fails.
          (call $log (i32.const 2) (i32.const 65530) (i32.const 10))
          (call $log (i32.const 2) (i32.const -1) (i32.const 2)))"#,
    );
    let (world, mut inst) = instance(&m, Capabilities::default());
    // No timer, subscription or watch after on_start: the instance is done, successfully.
    assert_eq!(inst.start(0), Err(Ended::Finished));
    assert!(Ended::Finished.is_success());
    let logs = world.borrow().logs.clone();
    assert_eq!(
        logs,
        [
            (LogLevel::Info, "hello".to_string()),
            (LogLevel::Error, "hello".to_string()),
            (LogLevel::Error, "h".to_string()),
            (LogLevel::Trace, "hello\u{fffd}!".to_string()),
        ]
    );
    assert!(LogLevel::Warn.is_stderr() && !LogLevel::Info.is_stderr());
    assert_eq!(LogLevel::Debug.prefix(), "debug: ");
}

#[test]
fn config_get_reads_spec_reserved_keys_and_clocks() {
    let m = wat(
        &["log", "config_get", "clock_monotonic_ns", "clock_wall_ns"],
        r#"
        (data (i32.const 0) "greetingwasmfleet.nodemissingwasmfleet.namespace")
        (func (export "on_start")
          ;; A short buffer gets the start, and the full length.
          (call $expect (call $config_get (i32.const 0) (i32.const 8) (i32.const 100) (i32.const 5))
            (i32.const 11) (i32.const 1))
          (call $log (i32.const 2) (i32.const 100) (i32.const 5))
          (call $expect (call $config_get (i32.const 8) (i32.const 14) (i32.const 200) (i32.const 64))
            (i32.const 6) (i32.const 2))
          (call $log (i32.const 2) (i32.const 200) (i32.const 6))
          (call $expect (call $config_get (i32.const 29) (i32.const 19) (i32.const 200) (i32.const 64))
            (i32.const 7) (i32.const 3))
          (call $log (i32.const 2) (i32.const 200) (i32.const 7))
          (call $expect (call $config_get (i32.const 22) (i32.const 7) (i32.const 200) (i32.const 64))
            (i32.const -2) (i32.const 4))
          ;; Monotonic time counts from start(990); the board's clock reads 1000 ms.
          (if (i64.ne (call $clock_monotonic_ns) (i64.const 10000000))
            (then (call $exit (i32.const 5))))
          (if (i64.ne (call $clock_wall_ns) (i64.const 1700000000000000000))
            (then (call $exit (i32.const 6))))
          (call $exit (i32.const 0)))"#,
    );
    let (world, mut inst) = instance(&m, Capabilities::default());
    world.borrow_mut().now = 1000;
    assert_eq!(inst.start(990), Err(Ended::Exited(0)));
    assert_eq!(lines(&world), ["hello", "node-1", "default"]);
}

#[test]
fn kv_quota_sizes_and_persistence() {
    let m = wat(
        &["kv_get", "kv_set", "kv_delete", "log"],
        r#"
        (data (i32.const 0) "kk2nope")
        (data (i32.const 100) "0123456789abcdef")
        (func (export "on_start")
          ;; "k" + 10 bytes = 11 of a 16-byte quota.
          (call $expect (call $kv_set (i32.const 0) (i32.const 1) (i32.const 100) (i32.const 10))
            (i32.const 0) (i32.const 1))
          ;; "k2" + 5 bytes would make 18.
          (call $expect (call $kv_set (i32.const 1) (i32.const 2) (i32.const 100) (i32.const 5))
            (i32.const -6) (i32.const 2))
          ;; Replacing "k"'s value counts the old one as freed: 1 + 15 = 16 fits exactly.
          (call $expect (call $kv_set (i32.const 0) (i32.const 1) (i32.const 100) (i32.const 15))
            (i32.const 0) (i32.const 3))
          ;; The same value again: 0, and no write.
          (call $expect (call $kv_set (i32.const 0) (i32.const 1) (i32.const 100) (i32.const 15))
            (i32.const 0) (i32.const 4))
          (call $expect (call $kv_get (i32.const 0) (i32.const 1) (i32.const 300) (i32.const 4))
            (i32.const 15) (i32.const 5))
          (call $log (i32.const 2) (i32.const 300) (i32.const 4))
          (call $expect (call $kv_get (i32.const 3) (i32.const 4) (i32.const 300) (i32.const 4))
            (i32.const -2) (i32.const 6))
          ;; Keys: 1 to 128 bytes; values: up to 4096.
          (call $expect (call $kv_set (i32.const 0) (i32.const 0) (i32.const 100) (i32.const 1))
            (i32.const -3) (i32.const 7))
          (call $expect (call $kv_set (i32.const 0) (i32.const 129) (i32.const 100) (i32.const 1))
            (i32.const -8) (i32.const 8))
          (call $expect (call $kv_set (i32.const 1) (i32.const 1) (i32.const 100) (i32.const 4097))
            (i32.const -8) (i32.const 9))
          ;; "k2" (3 bytes with its value) fits after "k" is deleted.
          (call $expect (call $kv_delete (i32.const 0) (i32.const 1)) (i32.const 0) (i32.const 10))
          (call $expect (call $kv_delete (i32.const 0) (i32.const 1)) (i32.const -2) (i32.const 11))
          (call $expect (call $kv_set (i32.const 1) (i32.const 2) (i32.const 100) (i32.const 1))
            (i32.const 0) (i32.const 12))
          (call $exit (i32.const 0)))"#,
    );
    let caps = Capabilities {
        kv_bytes: 16,
        ..Capabilities::default()
    };
    let (world, mut inst) = instance(&m, caps);
    assert_eq!(inst.start(0), Err(Ended::Exited(0)));
    assert_eq!(lines(&world), ["0123"]);
    let w = world.borrow();
    assert_eq!(w.kv_writes, 3, "the unchanged value was not written again");
    let stored: Vec<_> = w.kv.iter().collect();
    assert_eq!(stored.len(), 1);
    assert_eq!(
        stored[0].0,
        &("app".to_string(), b"k2".to_vec()),
        "per deployment"
    );
}

#[test]
fn range_checks_and_bad_arguments() {
    let m = wat(
        &[
            "config_get",
            "timer_start",
            "timer_cancel",
            "message_topic",
            "publish",
            "gpio_read",
            "gpio_watch",
            "gpio_unwatch",
            "i2c_open",
            "i2c_transaction",
            "kv_get",
            "delay_ns",
        ],
        r#"
        (data (i32.const 0) "greetingi2c-1out/+")
        ;; One op of kind 2 (TRANSFER: SPI only).
        (data (i32.const 200) "\02\00\00\00\00\00\00\00\01\00\00\00\00\00\00\00\00\00\00\00")
        (func (export "on_start")
          (i32.store8 (i32.const 100) (i32.const 255))
          ;; Ranges outside memory, including ones that overflow 32 bits; invalid UTF-8.
          (call $expect (call $config_get (i32.const 65530) (i32.const 10) (i32.const 0) (i32.const 0))
            (i32.const -3) (i32.const 1))
          (call $expect (call $config_get (i32.const 0) (i32.const 8) (i32.const -1) (i32.const 2))
            (i32.const -3) (i32.const 2))
          (call $expect (call $config_get (i32.const 100) (i32.const 1) (i32.const 0) (i32.const 0))
            (i32.const -3) (i32.const 3))
          ;; Timers.
          (call $expect (call $timer_start (i64.const -1) (i64.const 0)) (i32.const -3) (i32.const 4))
          (call $expect (call $timer_start (i64.const 0) (i64.const -5)) (i32.const -3) (i32.const 5))
          (call $expect (call $timer_cancel (i32.const 99)) (i32.const -4) (i32.const 6))
          ;; A message outside on_message.
          (call $expect (call $message_topic (i32.const 0) (i32.const 4)) (i32.const -4) (i32.const 7))
          ;; Publish: topic outside memory, a wildcard, a payload outside memory, too large.
          (call $expect (call $publish (i32.const 65535) (i32.const 2) (i32.const 0) (i32.const 0))
            (i32.const -3) (i32.const 8))
          (call $expect (call $publish (i32.const 13) (i32.const 5) (i32.const 0) (i32.const 0))
            (i32.const -3) (i32.const 9))
          (call $expect (call $publish (i32.const 13) (i32.const 3) (i32.const 65000) (i32.const 1000))
            (i32.const -3) (i32.const 10))
          (call $expect (call $publish (i32.const 13) (i32.const 3) (i32.const 0) (i32.const 16385))
            (i32.const -8) (i32.const 11))
          ;; GPIO: a negative pin, a pin not granted, bad edges, no watch, a pin the node lacks.
          (call $expect (call $gpio_read (i32.const -1)) (i32.const -3) (i32.const 12))
          (call $expect (call $gpio_read (i32.const 7)) (i32.const -1) (i32.const 13))
          (call $expect (call $gpio_watch (i32.const 5) (i32.const 4)) (i32.const -3) (i32.const 14))
          (call $expect (call $gpio_unwatch (i32.const 5)) (i32.const -4) (i32.const 15))
          (call $expect (call $gpio_read (i32.const 9)) (i32.const -2) (i32.const 16))
          ;; I2C: bad handle, 8-bit address, too many ops, ops outside memory, an SPI-only kind.
          (call $expect (call $i2c_transaction (i32.const 3) (i32.const 0x76) (i32.const 0) (i32.const 0))
            (i32.const -4) (i32.const 17))
          (call $expect (call $i2c_open (i32.const 8) (i32.const 5)) (i32.const 0) (i32.const 18))
          (call $expect (call $i2c_transaction (i32.const 0) (i32.const 0x80) (i32.const 0) (i32.const 0))
            (i32.const -3) (i32.const 19))
          (call $expect (call $i2c_transaction (i32.const 0) (i32.const 0x76) (i32.const 0) (i32.const 17))
            (i32.const -8) (i32.const 20))
          (call $expect (call $i2c_transaction (i32.const 0) (i32.const 0x76) (i32.const 65530) (i32.const 1))
            (i32.const -3) (i32.const 21))
          (call $expect (call $i2c_transaction (i32.const 0) (i32.const 0x76) (i32.const 200) (i32.const 1))
            (i32.const -3) (i32.const 22))
          ;; KV: an absent key is NOT_FOUND even with a bad buffer (the Linux agent's order).
          (call $expect (call $kv_get (i32.const 0) (i32.const 8) (i32.const -1) (i32.const 5))
            (i32.const -2) (i32.const 23))
          ;; A negative delay does not wait; a long one is capped at 1 s.
          (call $delay_ns (i64.const -5))
          (call $delay_ns (i64.const 5000000000))
          (call $exit (i32.const 0)))"#,
    );
    let caps = Capabilities {
        kv_bytes: 64,
        publish: vec!["out/#".into()],
        subscribe: vec!["in/#".into()],
        gpio: vec![5, 9],
        i2c: vec!["i2c-1".into()],
        ..Capabilities::default()
    };
    let (world, mut inst) = instance(&m, caps);
    world.borrow_mut().pins.insert(5, false);
    assert_eq!(inst.start(0), Err(Ended::Exited(0)));
    assert_eq!(world.borrow().delays, [1_000_000_000]);
    assert!(world.borrow().published.is_empty());
}

#[test]
fn i2c_through_an_embedded_hal_bus() {
    let m = wat(
        &["i2c_open", "i2c_transaction", "log"],
        r#"
        (data (i32.const 0) "i2c-1i2c-2i2c-9")
        ;; WRITE 1 byte from 300, READ 2 bytes into 310.
        (data (i32.const 100)
          "\01\00\00\00\2c\01\00\00\01\00\00\00\00\00\00\00\00\00\00\00"
          "\00\00\00\00\36\01\00\00\02\00\00\00\00\00\00\00\00\00\00\00")
        (data (i32.const 300) "\d0")
        (func (export "on_start")
          (call $expect (call $i2c_open (i32.const 0) (i32.const 5)) (i32.const 0) (i32.const 1))
          (call $expect (call $i2c_open (i32.const 0) (i32.const 5)) (i32.const 0) (i32.const 2))
          (call $expect (call $i2c_open (i32.const 5) (i32.const 5)) (i32.const -2) (i32.const 3))
          (call $expect (call $i2c_open (i32.const 10) (i32.const 5)) (i32.const -1) (i32.const 4))
          (call $expect (call $i2c_transaction (i32.const 0) (i32.const 0x76) (i32.const 100) (i32.const 2))
            (i32.const 0) (i32.const 5))
          (call $log (i32.const 2) (i32.const 310) (i32.const 2))
          (call $expect (call $i2c_transaction (i32.const 0) (i32.const 0x10) (i32.const 100) (i32.const 2))
            (i32.const -10) (i32.const 6))
          (call $exit (i32.const 0)))"#,
    );
    let caps = Capabilities {
        i2c: vec!["i2c-1".into(), "i2c-2".into()],
        ..Capabilities::default()
    };
    let (world, mut inst) = instance(&m, caps);
    assert_eq!(inst.start(0), Err(Ended::Exited(0)));
    assert_eq!(lines(&world), ["`!"], "chip id 0x60, then register 0xd1");
    assert_eq!(world.borrow().bus_log, ["0x76 W[d0] R2"]);
}

#[test]
fn spi_transaction_holds_chip_select_over_all_ops() {
    let m = wat(
        &["spi_open", "spi_transaction", "log"],
        r#"
        (data (i32.const 0) "spidev0.0")
        ;; TRANSFER: read 2 into 400 writing 2 from 410; TRANSFER_IN_PLACE 2 at 420;
        ;; DELAY_NS 1000; WRITE 1 from 410.
        (data (i32.const 100)
          "\02\00\00\00\90\01\00\00\02\00\00\00\9a\01\00\00\02\00\00\00"
          "\03\00\00\00\a4\01\00\00\02\00\00\00\00\00\00\00\00\00\00\00"
          "\04\00\00\00\00\00\00\00\e8\03\00\00\00\00\00\00\00\00\00\00"
          "\01\00\00\00\9a\01\00\00\01\00\00\00\00\00\00\00\00\00\00\00")
        (data (i32.const 410) "ab")
        (data (i32.const 420) "cd")
        (func (export "on_start")
          (call $expect (call $spi_open (i32.const 0) (i32.const 9)) (i32.const 0) (i32.const 1))
          (call $expect (call $spi_transaction (i32.const 0) (i32.const 100) (i32.const 4))
            (i32.const 0) (i32.const 2))
          (call $log (i32.const 2) (i32.const 400) (i32.const 2))
          (call $log (i32.const 2) (i32.const 420) (i32.const 2))
          (call $expect (call $spi_transaction (i32.const 1) (i32.const 100) (i32.const 1))
            (i32.const -4) (i32.const 3))
          (call $exit (i32.const 0)))"#,
    );
    let caps = Capabilities {
        spi: vec!["spidev0.0".into()],
        ..Capabilities::default()
    };
    let (world, mut inst) = instance(&m, caps);
    assert_eq!(inst.start(0), Err(Ended::Exited(0)));
    assert_eq!(lines(&world), ["AB", "CD"]);
    assert_eq!(world.borrow().bus_log, ["cs D1000 W1"]);
}

#[test]
fn messages_arrive_once_per_matching_subscription() {
    let m = wat(
        &[
            "subscribe",
            "unsubscribe",
            "message_topic",
            "message_payload",
            "publish",
            "log",
        ],
        r#"
        (data (i32.const 0) "sensors/+/tempsensors/#out/xotherbad/+")
        (global $calls (mut i32) (i32.const 0))
        (func (export "on_start")
          (call $expect (call $subscribe (i32.const 0) (i32.const 14)) (i32.const 0) (i32.const 1))
          (call $expect (call $subscribe (i32.const 14) (i32.const 9)) (i32.const 1) (i32.const 2))
          ;; Not within the granted `sensors/#`; malformed; publishing outside `out/#`.
          (call $expect (call $subscribe (i32.const 23) (i32.const 5)) (i32.const -1) (i32.const 3))
          (call $expect (call $subscribe (i32.const 200) (i32.const 0)) (i32.const -3) (i32.const 4))
          (call $expect (call $publish (i32.const 28) (i32.const 5) (i32.const 0) (i32.const 3))
            (i32.const -1) (i32.const 5)))
        (func (export "on_message") (param $sub i32) (param $tl i32) (param $pl i32)
          (call $expect (call $message_topic (i32.const 1000) (i32.const 256)) (local.get $tl) (i32.const 7))
          ;; A 2-byte buffer: the start of the payload, and its full length.
          (call $expect (call $message_payload (i32.const 2000) (i32.const 2)) (local.get $pl) (i32.const 8))
          (call $log (i32.const 2) (i32.const 1000) (local.get $tl))
          (call $expect (call $publish (i32.const 23) (i32.const 5) (i32.const 2000) (i32.const 2))
            (i32.const 0) (i32.const 9))
          (global.set $calls (i32.add (global.get $calls) (i32.const 1)))
          (if (i32.eq (global.get $calls) (i32.const 3))
            (then
              (call $expect (call $unsubscribe (i32.const 0)) (i32.const 0) (i32.const 10))
              (call $expect (call $unsubscribe (i32.const 1)) (i32.const 0) (i32.const 11))
              (call $expect (call $unsubscribe (i32.const 1)) (i32.const -4) (i32.const 12)))))"#,
    );
    let caps = Capabilities {
        publish: vec!["out/#".into()],
        subscribe: vec!["sensors/#".into()],
        ..Capabilities::default()
    };
    let (world, mut inst) = instance(&m, caps);
    assert_eq!(inst.start(0), Ok(()));
    let subs: Vec<&str> = inst.subscriptions().collect();
    assert_eq!(subs, ["sensors/+/temp", "sensors/#"]);
    assert_eq!(union_filters(inst.subscriptions()), ["sensors/#"]);
    assert_eq!(inst.deliver_message("other/x", b"1"), Ok(0));
    assert_eq!(inst.deliver_message("sensors/n1/temp", b"21.5"), Ok(2));
    assert_eq!(
        inst.deliver_message("sensors/n1/hum", b"40%"),
        Err(Ended::Finished),
        "the third call unsubscribed from everything"
    );
    assert_eq!(
        lines(&world),
        ["sensors/n1/temp", "sensors/n1/temp", "sensors/n1/hum"]
    );
    let published = world.borrow().published.clone();
    let expected = |p: &[u8]| ("default".to_string(), "out/x".to_string(), p.to_vec());
    assert_eq!(
        published,
        [expected(b"21"), expected(b"21"), expected(b"40")]
    );
    assert_eq!(inst.subscriptions().count(), 0);
}

#[test]
fn gpio_watches_deliver_the_edges_asked_for() {
    let m = wat(
        &["gpio_watch", "gpio_write", "gpio_read", "log"],
        r#"
        (data (i32.const 0) "bye")
        (func (export "on_start")
          (call $expect (call $gpio_watch (i32.const 5) (i32.const 1)) (i32.const 0) (i32.const 1))
          (call $expect (call $gpio_write (i32.const 6) (i32.const 7)) (i32.const 0) (i32.const 2))
          (call $expect (call $gpio_read (i32.const 6)) (i32.const 1) (i32.const 3)))
        (func (export "on_gpio") (param $pin i32) (param $level i32)
          (call $expect (local.get $pin) (i32.const 5) (i32.const 4))
          (drop (call $gpio_write (i32.const 6) (i32.eqz (local.get $level)))))
        (func (export "on_stop")
          (call $log (i32.const 2) (i32.const 0) (i32.const 3)))"#,
    );
    let caps = Capabilities {
        gpio: vec![5, 6],
        ..Capabilities::default()
    };
    let (world, mut inst) = instance(&m, caps);
    world.borrow_mut().pins.extend([(5, false), (6, false)]);
    assert_eq!(inst.start(0), Ok(()));
    let rising = Edges {
        rising: true,
        falling: false,
    };
    assert_eq!(world.borrow().watching.get(&5), Some(&rising));
    assert_eq!(inst.watches().collect::<Vec<_>>(), [(5, rising)]);
    assert!(world.borrow().pins[&6]);
    assert_eq!(inst.deliver_gpio(5, false), Ok(false), "a falling edge");
    assert_eq!(inst.deliver_gpio(4, true), Ok(false), "a pin not watched");
    assert_eq!(inst.deliver_gpio(5, true), Ok(true));
    assert!(!world.borrow().pins[&6]);
    assert_eq!(inst.stop(), Ended::Stopped);
    assert_eq!(inst.state(), &State::Ended(Ended::Stopped));
    assert_eq!(lines(&world), ["bye"]);
    assert!(world.borrow().watching.is_empty(), "the watch was released");
    assert_eq!(inst.deliver_gpio(5, true), Err(Ended::Stopped));
}

//! The host API from inside a module: WAT event modules, precompiled as the hub would, on a
//! runtime with the simulated devices. Each check exits with its own code when the host
//! answers wrongly, so a failure says which call.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use edge_agent::apps::AppBus;
use edge_agent::devices::{Devices, sim};
use edge_agent::kv::KvStores;
use edge_agent::runtime::{CodeKind, InstanceContext, Runtime, Services, StopSignal};
use tokio::sync::mpsc;
use wasmfleet_node::reconcile::Exit;
use wasmfleet_proto::{Capabilities, ConfigEntry, LogLine, WorkloadSpec};

use crate::common::*;

/// What modules published: (broker topic, payload).
type Published = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

struct Node {
    dir: tempfile::TempDir,
    runtime: Runtime,
    devices: Devices,
    apps: AppBus,
    published: Published,
}

fn node() -> Node {
    let dir = tempfile::tempdir().unwrap();
    let devices = sim::devices();
    let apps = AppBus::default();
    let published: Published = Arc::default();
    let sink = published.clone();
    apps.set_publisher(Box::new(move |t, p| {
        sink.lock().unwrap().push((t, p));
        true
    }));
    let services = Services {
        devices: devices.clone(),
        kv: KvStores::new(&dir.path().join("kv")),
        apps: apps.clone(),
    };
    let runtime = Runtime::with_services(&dir.path().join("cache"), services).unwrap();
    Node {
        dir,
        runtime,
        devices,
        apps,
        published,
    }
}

/// Precompiles `wat` and returns the spec and context to run it with `caps`.
fn prepare(n: &Node, wat: &str, caps: Capabilities) -> (WorkloadSpec, InstanceContext) {
    let artifact = precompile(&wat::parse_str(wat).unwrap());
    let r = module_ref(&artifact);
    let path = n.dir.path().join(format!("{}.cwasm", r.digest));
    std::fs::write(&path, &artifact).unwrap();
    let mut w = with_artifact(spec("api-0", r, &[]), &artifact);
    w.deployment = "api".into();
    w.capabilities = caps;
    w.config = vec![ConfigEntry {
        key: "greeting".into(),
        value: "hi".into(),
    }];
    let ctx = InstanceContext {
        node: "node-a".into(),
        code_path: path,
        code_digest: r.digest,
        code: CodeKind::Precompiled,
        log_limits: Default::default(),
        stop: StopSignal::never(),
    };
    (w, ctx)
}

async fn run(n: &Node, w: WorkloadSpec, ctx: InstanceContext) -> (Exit, Vec<String>) {
    let (tx, mut rx) = mpsc::channel::<LogLine>(1024);
    let exit = tokio::time::timeout(Duration::from_secs(30), n.runtime.run(w, ctx, tx))
        .await
        .expect("instance did not finish");
    let lines = std::iter::from_fn(|| rx.try_recv().ok())
        .map(|l| l.line)
        .collect();
    (exit, lines)
}

const IMPORTS: &str = r#"
  (import "wasmfleet_v1" "log" (func $log (param i32 i32 i32)))
  (import "wasmfleet_v1" "config_get" (func $config_get (param i32 i32 i32 i32) (result i32)))
  (import "wasmfleet_v1" "timer_start" (func $timer_start (param i64 i64) (result i32)))
  (import "wasmfleet_v1" "exit" (func $exit (param i32)))
"#;

const CHECK: &str = r#"
  (func $check (param $got i32) (param $want i32) (param $code i32)
    (if (i32.ne (local.get $got) (local.get $want)) (then (call $exit (local.get $code)))))
"#;

/// Config, I2C to the simulated BME280, publish scoping, ranges, handles and a timer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_calls_answer_within_the_grants() {
    let n = node();
    let wat = format!(
        r#"(module {IMPORTS}
  (import "wasmfleet_v1" "i2c_open" (func $i2c_open (param i32 i32) (result i32)))
  (import "wasmfleet_v1" "i2c_transaction" (func $i2c_tx (param i32 i32 i32 i32) (result i32)))
  (import "wasmfleet_v1" "publish" (func $publish (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "greeting")
  (data (i32.const 16) "wasmfleet.node")
  (data (i32.const 32) "missing")
  (data (i32.const 48) "i2c-9")
  (data (i32.const 56) "i2c-1")
  (data (i32.const 64) "b/x")
  (data (i32.const 72) "a/+")
  (data (i32.const 80) "a/x")
  (data (i32.const 88) "tick")
  (data (i32.const 96) "\d0")
  ;; WRITE [0xd0] from 96, then READ 1 byte into 100: the chip id register.
  (data (i32.const 128) "\01\00\00\00\60\00\00\00\01\00\00\00\00\00\00\00\00\00\00\00")
  (data (i32.const 148) "\00\00\00\00\64\00\00\00\01\00\00\00\00\00\00\00\00\00\00\00")
  {CHECK}
  (func (export "on_start") (local $h i32)
    (call $check (call $config_get (i32.const 0) (i32.const 8) (i32.const 200) (i32.const 64)) (i32.const 2) (i32.const 1))
    (call $log (i32.const 2) (i32.const 200) (i32.const 2))
    (call $check (call $config_get (i32.const 16) (i32.const 14) (i32.const 200) (i32.const 64)) (i32.const 6) (i32.const 2))
    (call $check (call $config_get (i32.const 32) (i32.const 7) (i32.const 200) (i32.const 64)) (i32.const -2) (i32.const 3))
    (call $check (call $i2c_open (i32.const 48) (i32.const 5)) (i32.const -1) (i32.const 4))
    (local.set $h (call $i2c_open (i32.const 56) (i32.const 5)))
    (call $check (local.get $h) (i32.const 0) (i32.const 5))
    (call $check (call $i2c_tx (local.get $h) (i32.const 0x76) (i32.const 128) (i32.const 2)) (i32.const 0) (i32.const 6))
    (call $check (i32.load8_u (i32.const 100)) (i32.const 0x60) (i32.const 7))
    (call $check (call $i2c_tx (local.get $h) (i32.const 0x77) (i32.const 128) (i32.const 2)) (i32.const -10) (i32.const 8))
    (call $check (call $i2c_tx (local.get $h) (i32.const 0x76) (i32.const 65530) (i32.const 1)) (i32.const -3) (i32.const 9))
    (call $check (call $i2c_tx (i32.const 7) (i32.const 0x76) (i32.const 128) (i32.const 2)) (i32.const -4) (i32.const 10))
    (call $check (call $i2c_tx (local.get $h) (i32.const 0x76) (i32.const 128) (i32.const 17)) (i32.const -8) (i32.const 11))
    (call $check (call $publish (i32.const 64) (i32.const 3) (i32.const 88) (i32.const 4)) (i32.const -1) (i32.const 12))
    (call $check (call $publish (i32.const 72) (i32.const 3) (i32.const 88) (i32.const 4)) (i32.const -3) (i32.const 13))
    (call $check (call $publish (i32.const 80) (i32.const 3) (i32.const 88) (i32.const 4)) (i32.const 0) (i32.const 14))
    (call $check (call $publish (i32.const 80) (i32.const 3) (i32.const 65535) (i32.const 4)) (i32.const -3) (i32.const 15))
    (drop (call $timer_start (i64.const 10) (i64.const 0))))
  (func (export "on_timer") (param i32)
    (call $log (i32.const 2) (i32.const 88) (i32.const 4))))"#
    );
    let caps = Capabilities {
        i2c: vec!["i2c-1".into()],
        publish: vec!["a/+".into()],
        ..Capabilities::default()
    };
    let (w, ctx) = prepare(&n, &wat, caps);
    let (exit, lines) = run(&n, w, ctx).await;
    assert!(exit.is_success(), "{exit:?} {lines:?}");
    assert_eq!(lines, ["hi", "tick"], "config value, then the timer");
    let published = n.published.lock().unwrap().clone();
    assert_eq!(
        published,
        [("wf/v1/app/default/a/x".to_string(), b"tick".to_vec())]
    );
}

/// A module importing a function of a capability it was not granted never starts, and the
/// reason names the manifest field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ungranted_imports_are_refused_naming_the_capability() {
    let n = node();
    let wat = r#"(module
  (import "wasmfleet_v1" "kv_get" (func (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1) (func (export "on_start")))"#;
    let (w, ctx) = prepare(&n, wat, Capabilities::default());
    let (exit, _) = run(&n, w, ctx).await;
    assert!(!exit.is_success());
    assert!(exit.message.contains("capabilities.kv"), "{}", exit.message);
}

/// A message on a subscription reaches `on_message`, which reads it and drives the LED; the
/// module unsubscribes and, waiting for nothing, ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_and_gpio() {
    let n = node();
    let wat = format!(
        r#"(module {IMPORTS}
  (import "wasmfleet_v1" "subscribe" (func $subscribe (param i32 i32) (result i32)))
  (import "wasmfleet_v1" "unsubscribe" (func $unsubscribe (param i32) (result i32)))
  (import "wasmfleet_v1" "message_topic" (func $topic (param i32 i32) (result i32)))
  (import "wasmfleet_v1" "message_payload" (func $payload (param i32 i32) (result i32)))
  (import "wasmfleet_v1" "gpio_write" (func $gpio_write (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "sensors/+/temp")
  (data (i32.const 16) "other/#")
  {CHECK}
  (func (export "on_start")
    (call $check (call $subscribe (i32.const 16) (i32.const 7)) (i32.const -1) (i32.const 1))
    (call $check (call $subscribe (i32.const 0) (i32.const 14)) (i32.const 0) (i32.const 2))
    (call $check (call $topic (i32.const 100) (i32.const 10)) (i32.const -4) (i32.const 3))
    (call $check (call $gpio_write (i32.const 18) (i32.const 1)) (i32.const -1) (i32.const 4)))
  (func (export "on_message") (param $sub i32) (param $tlen i32) (param $plen i32)
    (call $check (local.get $tlen) (i32.const 15) (i32.const 5))
    (call $check (call $topic (i32.const 100) (i32.const 64)) (i32.const 15) (i32.const 6))
    (call $log (i32.const 2) (i32.const 100) (i32.const 15))
    (call $check (call $payload (i32.const 200) (i32.const 64)) (local.get $plen) (i32.const 7))
    (call $log (i32.const 1) (i32.const 200) (local.get $plen))
    (call $check (call $gpio_write (i32.const 17) (i32.const 1)) (i32.const 0) (i32.const 8))
    (call $check (call $unsubscribe (local.get $sub)) (i32.const 0) (i32.const 9))))"#
    );
    let caps = Capabilities {
        subscribe: vec!["sensors/#".into()],
        gpio: vec![17],
        ..Capabilities::default()
    };
    let (w, ctx) = prepare(&n, &wat, caps);
    let (tx, mut rx) = mpsc::channel::<LogLine>(64);
    let running = tokio::spawn(n.runtime.run(w, ctx, tx));
    let filter = "wf/v1/app/default/sensors/+/temp".to_string();
    for _ in 0..200 {
        if n.apps.broker_filters() == [filter.clone()] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        n.apps.broker_filters(),
        [filter],
        "subscribed on the broker"
    );
    assert_eq!(n.apps.deliver("wf/v1/app/other/sensors/n1/temp", b"x"), 0);
    assert_eq!(
        n.apps.deliver("wf/v1/app/default/sensors/n1/temp", b"31.5"),
        1
    );
    let exit = tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .unwrap()
        .unwrap();
    let lines: Vec<String> = std::iter::from_fn(|| rx.try_recv().ok())
        .map(|l| l.line)
        .collect();
    assert!(exit.is_success(), "{exit:?} {lines:?}");
    assert_eq!(lines, ["sensors/n1/temp", "warn: 31.5"]);
    let led = n.devices.gpio(sim::LED_PIN).unwrap();
    assert!(edge_agent::devices::lock(&led).read().unwrap(), "LED on");
    assert!(n.apps.broker_filters().is_empty(), "unsubscribed");
}

/// A stop request runs `on_stop`, and the KV store written by `on_start` persists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_runs_on_stop_and_kv_persists() {
    let n = node();
    let wat = format!(
        r#"(module {IMPORTS}
  (import "wasmfleet_v1" "kv_set" (func $kv_set (param i32 i32 i32 i32) (result i32)))
  (import "wasmfleet_v1" "kv_get" (func $kv_get (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "count")
  (data (i32.const 8) "42")
  (data (i32.const 16) "bye")
  (data (i32.const 24) "0123456789")
  {CHECK}
  (func (export "on_start")
    (call $check (call $kv_get (i32.const 0) (i32.const 5) (i32.const 100) (i32.const 8)) (i32.const -2) (i32.const 1))
    (call $check (call $kv_set (i32.const 0) (i32.const 5) (i32.const 8) (i32.const 2)) (i32.const 0) (i32.const 2))
    (call $check (call $kv_get (i32.const 0) (i32.const 5) (i32.const 100) (i32.const 8)) (i32.const 2) (i32.const 3))
    ;; 5 + 10 bytes: over the 8-byte quota.
    (call $check (call $kv_set (i32.const 0) (i32.const 5) (i32.const 24) (i32.const 10)) (i32.const -6) (i32.const 4))
    (drop (call $timer_start (i64.const 3600000) (i64.const 0))))
  (func (export "on_stop")
    (call $log (i32.const 2) (i32.const 16) (i32.const 3))))"#
    );
    let caps = Capabilities {
        kv_bytes: 8,
        ..Capabilities::default()
    };
    let (w, mut ctx) = prepare(&n, &wat, caps);
    let (stop, signal) = StopSignal::new();
    ctx.stop = signal;
    let (tx, mut rx) = mpsc::channel::<LogLine>(64);
    let running = tokio::spawn(n.runtime.run(w, ctx, tx));
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.send(true).unwrap();
    let exit = tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("stopped within the grace period")
        .unwrap();
    let lines: Vec<String> = std::iter::from_fn(|| rx.try_recv().ok())
        .map(|l| l.line)
        .collect();
    assert!(exit.is_success(), "{exit:?} {lines:?}");
    assert_eq!(lines, ["bye"]);
    let kv = edge_agent::kv::Kv::open(&n.dir.path().join("kv/api.kv")).unwrap();
    assert_eq!(kv.get(b"count"), Some(&b"42"[..]));
}

/// A module publishing flat out gets `BUSY` past its burst, instead of flooding the broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_flood_is_refused_with_busy() {
    let n = node();
    let wat = format!(
        r#"(module {IMPORTS}
  (import "wasmfleet_v1" "publish" (func $publish (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "a/x")
  (global $busy (mut i32) (i32.const 0))
  (func (export "on_start") (local $i i32)
    (loop $l
      (if (i32.eq (call $publish (i32.const 0) (i32.const 3) (i32.const 0) (i32.const 1)) (i32.const -5))
        (then (global.set $busy (i32.add (global.get $busy) (i32.const 1)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_s (local.get $i) (i32.const 1000))))
    ;; Exits with how many were refused (the burst is 200).
    (call $exit (global.get $busy))))"#
    );
    let caps = Capabilities {
        publish: vec!["a/#".into()],
        ..Capabilities::default()
    };
    let (w, ctx) = prepare(&n, &wat, caps);
    let (exit, _) = run(&n, w, ctx).await;
    let refused = exit.code.expect("exits with the count");
    let sent = n.published.lock().unwrap().len();
    assert_eq!(sent as i32 + refused, 1000);
    assert!(
        (200..260).contains(&sent),
        "sent {sent}: the burst, and what refilled meanwhile"
    );
}

/// The simulated button (GPIO 27, toggling every 3 s) reaches `on_gpio` as an edge; the
/// module stops watching and, waiting for nothing more, ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watched_button_edge_reaches_on_gpio() {
    let n = node();
    let wat = format!(
        r#"(module {IMPORTS}
  (import "wasmfleet_v1" "gpio_watch" (func $watch (param i32 i32) (result i32)))
  (import "wasmfleet_v1" "gpio_unwatch" (func $unwatch (param i32) (result i32)))
  (import "wasmfleet_v1" "gpio_read" (func $read (param i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "low")
  (data (i32.const 4) "high")
  {CHECK}
  (func (export "on_start")
    (call $check (call $watch (i32.const 17) (i32.const 3)) (i32.const -13) (i32.const 1))
    (call $check (call $watch (i32.const 27) (i32.const 4)) (i32.const -3) (i32.const 2))
    (call $check (call $watch (i32.const 27) (i32.const 3)) (i32.const 0) (i32.const 3)))
  (func (export "on_gpio") (param $pin i32) (param $level i32)
    (call $check (local.get $pin) (i32.const 27) (i32.const 4))
    (call $check (call $read (i32.const 27)) (local.get $level) (i32.const 5))
    (if (local.get $level)
      (then (call $log (i32.const 2) (i32.const 4) (i32.const 4)))
      (else (call $log (i32.const 2) (i32.const 0) (i32.const 3))))
    (call $check (call $unwatch (i32.const 27)) (i32.const 0) (i32.const 6))))"#
    );
    let caps = Capabilities {
        gpio: vec![17, 27],
        ..Capabilities::default()
    };
    let (w, ctx) = prepare(&n, &wat, caps);
    let (exit, lines) = run(&n, w, ctx).await;
    assert!(exit.is_success(), "{exit:?} {lines:?}");
    assert!(lines == ["high"] || lines == ["low"], "{lines:?}");
}

//! Hostile input against real processes: a module that floods its output, one that prints
//! terminal escape sequences, racing uploads of one module, modules agents could not run, an
//! upload in flight when the hub is told to stop, and a hub that is not there.

use std::time::{Duration, Instant};

use crate::common::*;
use wasmfleet_common::digest::sha256;

/// A module printing 4 KiB lines flat out, beside a calm neighbour on the same node: the hub
/// stays small, the neighbour is still heard, and the gap is reported.
#[test]
fn a_log_flood_is_bounded_end_to_end_and_a_neighbour_is_still_heard() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start_hub_with(
        dir.path(),
        free_port(),
        free_port(),
        None,
        &["--log-retention", "16Mi"],
    );
    let _a = start_agent(dir.path(), &hub.mqtt, "node-a");
    hub.wait_nodes_ready(1);
    let flood = manifest(dir.path(), "flood", 1, &["--flood", "4Ki"], "");
    let calm = manifest(dir.path(), "calm", 1, &["--interval", "100ms"], "");
    hub.ok(&["apply", "-f", flood.to_str().unwrap()]);
    hub.ok(&["apply", "-f", calm.to_str().unwrap()]);
    hub.wait_phase("flood", 1, "Running");
    hub.wait_phase("calm", 1, "Running");

    let pid = hub.proc.child.id();
    let started = Instant::now();
    let mut peak = 0;
    while started.elapsed() < Duration::from_secs(15) {
        peak = peak.max(rss_kib(pid));
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(
        peak < 100 * 1024,
        "hub RSS peaked at {} MiB under a flood",
        peak / 1024
    );
    // The neighbour's lines keep arriving: one from the last two seconds is there.
    let greeting = |logs: &str| -> u64 {
        logs.lines()
            .filter_map(|l| l.rsplit_once(" #").and_then(|(_, n)| n.trim().parse().ok()))
            .max()
            .unwrap_or(0)
    };
    let before = greeting(&hub.logs("calm", 20));
    assert!(
        before >= 100,
        "the neighbour was heard throughout: #{before}"
    );
    wait_until("the neighbour is still heard", || {
        (greeting(&hub.logs("calm", 20)) >= before + 10).then_some(())
    });
    // The flood was cut, and the cut is visible, written by the agent.
    let flood_logs = hub.logs("flood", 200);
    assert!(
        flood_logs
            .lines()
            .any(|l| l.contains("(agent)") && l.contains("dropped: over the log budget")),
        "{}",
        &flood_logs[flood_logs.len().saturating_sub(2000)..]
    );
    let db = std::fs::metadata(dir.path().join("hub/logs.db"))
        .unwrap()
        .len();
    assert!(
        db < 40 << 20,
        "the log store stays near its 16 MiB retention: {db} bytes"
    );
}

/// Terminal escapes printed by a module reach the operator's terminal only as visible text;
/// JSON output keeps the exact bytes.
#[test]
fn a_module_cannot_drive_the_operators_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start_hub(dir.path(), free_port(), free_port(), None);
    let _a = start_agent(dir.path(), &hub.mqtt, "node-a");
    hub.wait_nodes_ready(1);
    let app = manifest(
        dir.path(),
        "esc",
        1,
        &["--escapes", "--count", "1"],
        "  restartPolicy: Never\n",
    );
    hub.ok(&["apply", "-f", app.to_str().unwrap()]);
    let text = wait_until("the escape line arrives", || {
        let out = hub.cli(&["logs", "esc"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.contains("escaped").then_some(out.stdout)
    });
    assert!(!text.contains(&0x1b), "a raw ESC reached the terminal");
    assert!(!text.contains(&0x07), "a raw BEL reached the terminal");
    let text = String::from_utf8(text).unwrap();
    assert!(
        text.contains("\\x1b]0;pwned\\x07\\x1b[2J\\x1b[Hescaped \\x9b31m"),
        "{text}"
    );
    let json = hub.ok(&["logs", "esc", "-o", "json"]);
    let line = json
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["line"].as_str().unwrap().contains("escaped"))
        .unwrap();
    assert_eq!(
        line["line"], "\u{1b}]0;pwned\u{7}\u{1b}[2J\u{1b}[Hescaped \u{9b}31m",
        "JSON keeps the exact text"
    );
}

/// Eight clients upload the same 4 MiB module at once: every one succeeds, one copy is kept.
#[test]
fn racing_uploads_of_one_module_all_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start_hub(dir.path(), free_port(), free_port(), None);
    let module = padded_module(&std::fs::read(hello_wasm()).unwrap(), 4 << 20);
    let digest = sha256(&module);
    let path = format!("/v1/blobs/{digest}");
    let codes: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| s.spawn(|| http(&hub, "PUT", &path, &module).0))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(
        codes.iter().all(|c| *c == 200 || *c == 201),
        "every upload succeeds: {codes:?}"
    );
    let blobs: Vec<_> = std::fs::read_dir(dir.path().join("hub/blobs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    // The module once, and once its artifact for the hub's own engine (the upload check
    // compiled it); no temporary files.
    assert_eq!(blobs.len(), 2, "{blobs:?}");
    assert!(blobs.contains(&digest.to_hex()), "{blobs:?}");
    assert!(blobs.iter().all(|b| !b.starts_with('.')), "{blobs:?}");
    let (status, body) = http(&hub, "GET", &path, b"");
    assert_eq!(status, 200);
    assert_eq!(sha256(&body), digest, "served back intact");
    // A wrong digest and an oversized upload are refused with reasons.
    let (status, body) = http(
        &hub,
        "PUT",
        &format!("/v1/blobs/{}", "0".repeat(64)),
        &module,
    );
    assert_eq!(status, 422);
    assert!(String::from_utf8_lossy(&body).contains("does not match its digest"));
}

/// The hub refuses, at apply, what agents could not run, with the agents' reason.
#[test]
fn modules_agents_cannot_run_are_refused_at_apply() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start_hub(dir.path(), free_port(), free_port(), None);
    let cases = [
        (
            "reactor",
            r#"(module (func (export "main")))"#,
            "module is not runnable: it exports neither `on_start`",
        ),
        (
            "foreign",
            r#"(module (import "env" "read_sensor" (func)) (func (export "_start")))"#,
            "env::read_sensor",
        ),
        (
            "gc",
            r#"(module (type $t (struct (field i32))) (func (export "_start")))"#,
            "not a valid WebAssembly module",
        ),
    ];
    for (name, wat, expected) in cases {
        let path = dir.path().join(format!("{name}.wasm"));
        std::fs::write(&path, wat::parse_str(wat).unwrap()).unwrap();
        let err = hub.fails(&["run", name, path.to_str().unwrap()]);
        assert!(err.contains(expected), "{name}: {err}");
    }
    assert_eq!(hub.ok(&["get", "deployments"]), "No resources found.\n");
}

/// SIGTERM while an upload is half sent: the hub stops taking new requests but finishes the
/// one in flight, then exits cleanly.
#[test]
fn shutdown_lets_a_request_in_flight_finish() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let mut hub = start_hub(dir.path(), free_port(), free_port(), None);
    let module = padded_module(&std::fs::read(hello_wasm()).unwrap(), 1 << 20);
    let addr = hub.url.trim_start_matches("http://").to_owned();
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        s,
        "PUT /v1/blobs/{} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        sha256(&module),
        module.len()
    )
    .unwrap();
    let (first, rest) = module.split_at(module.len() / 2);
    s.write_all(first).unwrap();
    s.flush().unwrap();
    // Give the hub a moment to read the headers: the request is then in flight.
    std::thread::sleep(Duration::from_millis(300));
    unsafe {
        libc::kill(hub.proc.child.id() as libc::pid_t, libc::SIGTERM);
    }
    // Shutdown has begun once new connections are refused.
    wait_until("the hub stops accepting connections", || {
        std::net::TcpStream::connect(&addr).is_err().then_some(())
    });
    s.write_all(rest).unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    let (status, body) = parse_response(&resp);
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    assert!(hub.proc.terminate().success(), "the hub exits 0");
}

#[test]
fn an_absent_hub_is_named_in_a_clear_error() {
    let out = std::process::Command::new(wasmfleet_bin())
        .args([
            "--hub",
            &format!("http://127.0.0.1:{}", free_port()),
            "get",
            "nodes",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot reach the hub at http://127.0.0.1:"),
        "{err}"
    );
    assert!(err.contains("WASMFLEET_HUB"), "{err}");
}

/// CPU time of a process (user + system) from /proc, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    ticks / unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64
}

/// A busy loop deployed with `cpu: 250m` costs its agent about a quarter of a core, measured
/// from the agent process's own CPU time; its `maxRunTime` then stops it as Failed for good.
#[test]
fn a_busy_loop_is_held_to_its_cpu_limit_and_its_run_time() {
    let dir = tempfile::tempdir().unwrap();
    let hub = start_hub(dir.path(), free_port(), free_port(), None);
    let agent = start_agent(dir.path(), &hub.mqtt, "node-a");
    hub.wait_nodes_ready(1);
    let app = manifest(dir.path(), "spin", 1, &["--spin"], "");
    let text = std::fs::read_to_string(&app).unwrap().replace(
        "resources: {memory: 16Mi}",
        "resources: {memory: 16Mi, cpu: 250m, maxRunTime: 8s}",
    );
    std::fs::write(&app, text).unwrap();
    hub.ok(&["apply", "-f", app.to_str().unwrap()]);
    hub.wait_phase("spin", 1, "Running");
    let pid = agent.child.id();
    let (cpu0, wall0) = (cpu_seconds(pid), Instant::now());
    std::thread::sleep(Duration::from_secs(3));
    let share = (cpu_seconds(pid) - cpu0) / wall0.elapsed().as_secs_f64();
    assert!(
        (0.1..0.45).contains(&share),
        "the agent used {share:.2} of a core for a 250m busy loop"
    );
    let failed = hub.wait_phase("spin", 1, "Failed");
    let message = failed[0]["message"].as_str().unwrap_or_default().to_owned();
    assert!(message.contains("DeadlineExceeded"), "{message}");
    std::thread::sleep(Duration::from_secs(2));
    let w = &hub.json("workloads")[0];
    assert_eq!(w["phase"], "Failed", "not restarted: {w}");
    assert_eq!(w["restarts"], 0, "{w}");
}

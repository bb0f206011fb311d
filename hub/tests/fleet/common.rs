//! Harness for end-to-end tests: real `wasmfleet` and `edge-agent` processes on 127.0.0.1
//! with free ports, driven through the CLI exactly as a user would.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Generous bound for anything to converge; never a performance assertion.
pub const CONVERGE: Duration = Duration::from_secs(90);

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The example module (embedded in `wasmfleet` by its build script), written once per test
/// process.
pub fn hello_wasm() -> &'static Path {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("hello-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        wasmfleet_hub::cli::demo::write_example_module(&dir).expect("the embedded example module")
    })
}

/// The `wasmfleet` binary of this build.
pub fn wasmfleet_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_wasmfleet"))
}

/// The `edge-agent` binary of this build (same target directory).
pub fn agent_bin() -> PathBuf {
    let path = wasmfleet_bin().with_file_name("edge-agent");
    assert!(
        path.exists(),
        "{} missing: run `cargo build --workspace` before the tests",
        path.display()
    );
    path
}

/// A child process killed when dropped, so a failing test leaves nothing behind.
#[derive(Debug)]
pub struct Proc {
    pub child: Child,
    pub name: String,
    /// Where its stderr (its log) goes.
    pub log: PathBuf,
}

impl Proc {
    /// Starts `cmd`, its stderr to `log`.
    pub fn spawn(name: &str, cmd: &mut Command, log: &Path) -> Proc {
        let err = std::fs::File::create(log).expect("log file");
        let child = cmd
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        Proc {
            child,
            name: name.into(),
            log: log.to_path_buf(),
        }
    }

    /// What it has logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: a crash, no goodbye.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait: a clean stop.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not stop within 20s of SIGTERM",
                self.name
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A hub process and how to reach it.
#[derive(Debug)]
pub struct Hub {
    pub proc: Proc,
    pub url: String,
    pub mqtt: String,
}

/// Starts `wasmfleet serve` with the embedded broker, or against `broker` when given.
pub fn start_hub(dir: &Path, http_port: u16, mqtt_port: u16, broker: Option<&str>) -> Hub {
    start_hub_with(dir, http_port, mqtt_port, broker, &[])
}

/// [`start_hub`] with extra `serve` flags.
pub fn start_hub_with(
    dir: &Path,
    http_port: u16,
    mqtt_port: u16,
    broker: Option<&str>,
    extra: &[&str],
) -> Hub {
    let mut cmd = Command::new(wasmfleet_bin());
    cmd.arg("serve")
        .arg("--data")
        .arg(dir.join("hub"))
        .args(["--http", &format!("127.0.0.1:{http_port}")])
        .args(extra);
    let mqtt = match broker {
        Some(b) => {
            cmd.args(["--broker", b]);
            b.to_owned()
        }
        None => {
            cmd.args(["--mqtt", &format!("127.0.0.1:{mqtt_port}")]);
            format!("mqtt://127.0.0.1:{mqtt_port}")
        }
    };
    let proc = Proc::spawn("hub", &mut cmd, &dir.join(format!("hub-{http_port}.log")));
    let hub = Hub {
        proc,
        url: format!("http://127.0.0.1:{http_port}"),
        mqtt,
    };
    wait_until("the hub answers", || {
        hub.cli(&["get", "nodes"]).status.success().then_some(())
    });
    hub
}

/// Starts an `edge-agent`.
pub fn start_agent(dir: &Path, mqtt: &str, node: &str) -> Proc {
    start_agent_with(dir, mqtt, node, &[])
}

/// [`start_agent`] with extra flags.
pub fn start_agent_with(dir: &Path, mqtt: &str, node: &str, extra: &[&str]) -> Proc {
    let mut cmd = Command::new(agent_bin());
    cmd.args(["--mqtt", mqtt, "--node", node, "--label", "test=e2e"])
        .args(extra)
        .arg("--data")
        .arg(dir.join(node));
    let log = dir.join(format!(
        "{node}-{}.log",
        Instant::now().elapsed().as_nanos()
    ));
    Proc::spawn(node, &mut cmd, &log)
}

/// Resident set size of a process in KiB, from /proc.
pub fn rss_kib(pid: u32) -> u64 {
    wasmfleet_hub::process::rss_kib(pid).unwrap_or(0)
}

impl Hub {
    /// Runs a CLI command against this hub.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(wasmfleet_bin())
            .args(["--hub", &self.url])
            .args(args)
            .output()
            .expect("run wasmfleet")
    }

    /// Runs a CLI command that must succeed; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "wasmfleet {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a CLI command that must fail; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            !out.status.success(),
            "wasmfleet {args:?} succeeded but should have failed"
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// `get KIND -o json`.
    pub fn json(&self, kind: &str) -> Vec<Value> {
        serde_json::from_str(&self.ok(&["get", kind, "-o", "json"])).expect("json output")
    }

    /// Waits until `count` nodes are Ready.
    pub fn wait_nodes_ready(&self, count: usize) {
        wait_until(&format!("{count} nodes Ready"), || {
            let ready = self
                .json("nodes")
                .iter()
                .filter(|n| n["status"] == "Ready")
                .count();
            (ready >= count).then_some(())
        });
    }

    /// Waits until every workload of `deployment` has `phase`; returns them.
    pub fn wait_phase(&self, deployment: &str, replicas: usize, phase: &str) -> Vec<Value> {
        wait_until(
            &format!("{replicas} replicas of {deployment} {phase}"),
            || {
                let wls: Vec<Value> = self
                    .json("workloads")
                    .into_iter()
                    .filter(|w| w["deployment"] == deployment)
                    .collect();
                (wls.len() == replicas && wls.iter().all(|w| w["phase"] == phase)).then_some(wls)
            },
        )
    }

    /// Waits until every node runs nothing and has acted on its latest desired state: the
    /// agents really stopped their instances, not just the hub forgot them.
    pub fn wait_nodes_idle(&self) {
        wait_until("every node observed an empty desired state", || {
            let nodes = self.json("nodes");
            nodes
                .iter()
                .all(|n| n["workloads"] == 0 && n["observedGeneration"] == n["desiredGeneration"])
                .then_some(())
        });
    }

    /// Log lines of a deployment (last `tail`).
    pub fn logs(&self, deployment: &str, tail: u32) -> String {
        self.ok(&["logs", deployment, "--tail", &tail.to_string()])
    }
}

/// Polls `f` every 100 ms until it returns `Some`, or panics after [`CONVERGE`].
pub fn wait_until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + CONVERGE;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Writes a manifest for the hello module into `dir` and returns its path.
pub fn manifest(dir: &Path, name: &str, replicas: u32, args: &[&str], extra_spec: &str) -> PathBuf {
    let module = hello_wasm();
    let args: Vec<String> = args.iter().map(|a| format!("{a:?}")).collect();
    let text = format!(
        "apiVersion: wasmfleet.dev/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  module: {}\n  replicas: {replicas}\n  args: [{}]\n  env: {{GREETING: hi}}\n  resources: {{memory: 16Mi}}\n{extra_spec}",
        module.display(),
        args.join(", "),
    );
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, text).expect("write manifest");
    path
}

/// `module` padded with a custom section to `size` bytes (custom sections are ignored by
/// validation and execution): a large module that is still the same program.
pub fn padded_module(module: &[u8], size: usize) -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let name = b"pad";
    // id + 5-byte size field + name length + name, then the padding.
    let payload_len = size.saturating_sub(module.len() + 1 + 5 + 1 + name.len());
    let mut out = module.to_vec();
    out.push(0);
    let body = 1 + name.len() + payload_len;
    // A fixed-width LEB128 so the total is exact.
    let mut n = body;
    for i in 0..5 {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        out.push(if i < 4 { byte | 0x80 } else { byte });
    }
    leb(name.len(), &mut out);
    out.extend_from_slice(name);
    out.resize(out.len() + payload_len, 0);
    out
}

/// Publishes one message at QoS 1 on the broker at `mqtt` (`host:port`) as a client of its
/// own, and returns once the broker acknowledged it.
pub fn publish_once(mqtt: &str, client_id: &str, topic: String, payload: Vec<u8>, retain: bool) {
    use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
    let port: u16 = mqtt.rsplit(':').next().unwrap().parse().unwrap();
    let mut opts = MqttOptions::new(client_id, "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(30));
    let (client, mut connection) = Client::new(opts, 16);
    client
        .publish(topic, QoS::AtLeastOnce, retain, payload)
        .unwrap();
    for event in connection.iter() {
        if let Ok(Event::Incoming(Packet::PubAck(_))) = event {
            break;
        }
        event.expect("publish to the broker");
    }
}

/// A raw HTTP/1.1 request on a fresh connection; returns the status code and the body.
pub fn http(hub: &Hub, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    use std::io::{Read, Write};
    let addr = hub.url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the hub");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).unwrap();
    parse_response(&resp)
}

/// Status code and body of a raw HTTP/1.1 response (the body de-chunked if chunked).
pub fn parse_response(resp: &[u8]) -> (u16, Vec<u8>) {
    let Some(split) = resp.windows(4).position(|w| w == b"\r\n\r\n") else {
        return (0, Vec::new());
    };
    let head = String::from_utf8_lossy(&resp[..split]).to_ascii_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let mut body = &resp[split + 4..];
    if !head.contains("transfer-encoding: chunked") {
        return (status, body.to_vec());
    }
    let mut out = Vec::new();
    while let Some(eol) = body.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&body[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = eol + 2;
        out.extend_from_slice(&body[start..start + size]);
        body = &body[start + size + 2..];
    }
    (status, out)
}

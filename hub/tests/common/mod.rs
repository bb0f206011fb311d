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

/// The example module, built once per test process.
pub fn hello_wasm() -> &'static Path {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| {
        wasmfleet_hub::cli::demo::build_example_module().expect("build examples/hello")
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
}

impl Proc {
    fn spawn(name: &str, cmd: &mut Command, log: &Path) -> Proc {
        let err = std::fs::File::create(log).expect("log file");
        let child = cmd
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        Proc {
            child,
            name: name.into(),
        }
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
    let mut cmd = Command::new(wasmfleet_bin());
    cmd.arg("serve")
        .arg("--data")
        .arg(dir.join("hub"))
        .args(["--http", &format!("127.0.0.1:{http_port}")]);
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
    let mut cmd = Command::new(agent_bin());
    cmd.args(["--mqtt", mqtt, "--node", node, "--label", "test=e2e"])
        .arg("--data")
        .arg(dir.join(node));
    let log = dir.join(format!(
        "{node}-{}.log",
        Instant::now().elapsed().as_nanos()
    ));
    Proc::spawn(node, &mut cmd, &log)
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

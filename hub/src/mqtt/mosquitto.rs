//! mosquitto as the hub's broker, started, watched and stopped by the hub
//! (`wasmfleet serve --embedded-broker mosquitto`).
//!
//! Why: the embedded rmqtt costs about 24 KiB per connected node, most of it two 8 KiB socket
//! buffers rmqtt-net gives every connection and no setting sizes; mosquitto costs about
//! 4 KiB (`BENCHMARKS.md`, *Memory*). A fleet of tens of thousands of nodes on their own
//! connections wants mosquitto; the operator still runs one command, and the hub keeps the
//! broker alive as rmqtt would be inside it. The price: mosquitto works on one thread, mostly
//! in the kernel, and an apply to 100,000 hollow nodes takes 1.5–2 times as long as on rmqtt.
//!
//! What the hub does for it:
//! - writes its configuration (`mosquitto.conf` in the data directory, rewritten at every
//!   start) with the limits [`crate::mqtt::broker`] gives rmqtt;
//! - appends its log to `mosquitto.log` beside it (errors and warnings only: a connection
//!   storm would otherwise write a line per node);
//! - waits until it listens, and starts it again, with a growing pause, whenever it exits;
//! - stops it on shutdown, and asks the kernel to stop it if the hub dies without one.
//!
//! A restarted mosquitto holds no retained messages (persistence is off, as the hub's store is
//! the record): nodes reconnect and announce themselves, and the hub answers every
//! announcement with the node's desired state, retained again.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use wasmfleet_common::backoff::exponential;

use super::broker::{HUB_QUEUE, MAX_PACKET};

/// How long mosquitto may take to listen after it was started.
const LISTEN_WAIT: Duration = Duration::from_secs(10);

/// How long mosquitto may take to exit after SIGTERM before it is killed.
const STOP_WAIT: Duration = Duration::from_secs(5);

/// Pauses before starting an exited mosquitto again: doubling from the first to the last
/// ([`exponential`]), and back to the first once it stayed up for [`STABLE_AFTER`].
const RESTART_FIRST: Duration = Duration::from_secs(1);
const RESTART_MAX: Duration = Duration::from_secs(30);
const STABLE_AFTER: Duration = Duration::from_secs(60);

/// A log larger than this is moved to `mosquitto.log.1` when the hub starts mosquitto.
const LOG_ROTATE_BYTES: u64 = 8 << 20;

/// Where the hub looks for `mosquitto` after `PATH`: Debian installs it in `/usr/sbin`, which
/// is not on a normal user's `PATH`.
const SYSTEM_DIRS: [&str; 3] = ["/usr/sbin", "/usr/local/sbin", "/sbin"];

/// Why mosquitto could not be started.
#[derive(Debug, thiserror::Error)]
pub enum MosquittoError {
    /// No program was named and none was found.
    #[error(
        "mosquitto is not installed (not on PATH, nor in /usr/sbin): install it (apt-get install mosquitto) or name it with --mosquitto PATH"
    )]
    NotFound,
    /// The address is taken or cannot be bound.
    #[error("mosquitto cannot listen on {addr}: {reason}")]
    Listen {
        /// The address nodes were to connect to.
        addr: SocketAddr,
        /// The system's reason.
        reason: String,
    },
    /// A file in the data directory could not be written.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The program could not be run at all.
    #[error("cannot run {program}: {reason}")]
    Spawn {
        /// The program.
        program: PathBuf,
        /// The system's reason.
        reason: String,
    },
    /// It ran and exited before it listened.
    #[error("mosquitto exited ({status}) before listening on {addr}; its log {log} says: {said}")]
    Exited {
        /// How it ended.
        status: ExitStatus,
        /// The address it was to listen on.
        addr: SocketAddr,
        /// Its log file.
        log: PathBuf,
        /// The lines it wrote this time.
        said: String,
    },
    /// It ran but did not listen in time.
    #[error("mosquitto did not listen on {addr} within {secs} s; its log: {log}", secs = LISTEN_WAIT.as_secs())]
    NotListening {
        /// The address it was to listen on.
        addr: SocketAddr,
        /// Its log file.
        log: PathBuf,
    },
}

/// What to run, and where.
#[derive(Debug, Clone)]
pub struct MosquittoOptions {
    /// The `mosquitto` program; `None` looks on `PATH`, then in the system directories.
    pub program: Option<PathBuf>,
    /// The address nodes connect to.
    pub addr: SocketAddr,
    /// Where its configuration and log go (the hub's data directory).
    pub dir: PathBuf,
}

/// One way of starting mosquitto, resolved once and used for every (re)start.
#[derive(Debug, Clone)]
struct Launch {
    program: PathBuf,
    config: PathBuf,
    log: PathBuf,
    addr: SocketAddr,
    probe: SocketAddr,
}

/// A running mosquitto and the task that keeps it running.
#[derive(Debug)]
pub struct SupervisedMosquitto {
    client_addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl SupervisedMosquitto {
    /// Writes the configuration, starts mosquitto, waits until it listens on `opts.addr`, and
    /// leaves a task watching it.
    pub async fn start(opts: MosquittoOptions) -> Result<Self, MosquittoError> {
        let program = match opts.program {
            Some(p) => p,
            None => find_program("mosquitto").ok_or(MosquittoError::NotFound)?,
        };
        let launch = Launch {
            program,
            config: opts.dir.join("mosquitto.conf"),
            log: opts.dir.join("mosquitto.log"),
            addr: opts.addr,
            probe: client_addr(opts.addr),
        };
        let written = std::fs::write(&launch.config, config(opts.addr, run_as_root()));
        written.map_err(|e| MosquittoError::File {
            path: launch.config.clone(),
            reason: e.to_string(),
        })?;
        rotate(&launch.log);
        let child = launch.run().await?;
        tracing::info!(addr = %opts.addr, program = %launch.program.display(), pid = child.id(), "mosquitto started by the hub");
        let (stop, stopped) = watch::channel(false);
        let client_addr = launch.probe;
        let task = tokio::spawn(supervise(launch, child, stopped));
        Ok(SupervisedMosquitto {
            client_addr,
            stop,
            task: Some(task),
        })
    }

    /// The address the hub's own client connects to: the one nodes connect to, or loopback
    /// when that is every address.
    pub fn client_addr(&self) -> SocketAddr {
        self.client_addr
    }

    /// Stops mosquitto (SIGTERM, then SIGKILL after [`STOP_WAIT`]) and waits until it exited.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for SupervisedMosquitto {
    fn drop(&mut self) {
        // The task stops mosquitto; if the runtime goes first, `kill_on_drop` does.
        let _ = self.stop.send(true);
    }
}

impl Launch {
    /// Starts mosquitto and waits until it accepts a connection.
    async fn run(&self) -> Result<Child, MosquittoError> {
        // mosquitto would exit with "Address already in use" in its log, but the probe below
        // would reach whatever holds the address and take it for mosquitto. Ask first.
        std::net::TcpListener::bind(self.addr).map_err(|e| MosquittoError::Listen {
            addr: self.addr,
            reason: e.to_string(),
        })?;
        let file = |e: std::io::Error| MosquittoError::File {
            path: self.log.clone(),
            reason: e.to_string(),
        };
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(file)?;
        let from = log.metadata().map_err(file)?.len();
        let mut command = Command::new(&self.program);
        command
            .arg("-c")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true);
        stop_with_parent(&mut command);
        let mut child = command.spawn().map_err(|e| MosquittoError::Spawn {
            program: self.program.clone(),
            reason: e.to_string(),
        })?;
        let deadline = Instant::now() + LISTEN_WAIT;
        loop {
            if let Some(status) = child.try_wait().ok().flatten() {
                return Err(MosquittoError::Exited {
                    status,
                    addr: self.addr,
                    log: self.log.clone(),
                    said: said_since(&self.log, from),
                });
            }
            if tokio::net::TcpStream::connect(self.probe).await.is_ok() {
                return Ok(child);
            }
            if Instant::now() >= deadline {
                let _ = child.kill().await;
                return Err(MosquittoError::NotListening {
                    addr: self.addr,
                    log: self.log.clone(),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Keeps mosquitto running until `stop`, then stops it.
async fn supervise(launch: Launch, mut child: Child, mut stop: watch::Receiver<bool>) {
    // Starts since mosquitto last stayed up for `STABLE_AFTER`: each pauses twice as long.
    let mut restarts = 0;
    let pause = |restarts| exponential(RESTART_FIRST, RESTART_MAX, restarts);
    let mut started = Instant::now();
    loop {
        let status = tokio::select! {
            status = child.wait() => status,
            _ = stop.changed() => return terminate(child).await,
        };
        let how = match status {
            Ok(s) => s.to_string(),
            Err(e) => format!("unknown ({e})"),
        };
        if started.elapsed() >= STABLE_AFTER {
            restarts = 0;
        }
        tracing::error!(
            exit = %how,
            log = %launch.log.display(),
            "mosquitto exited; starting it again in {:?}", pause(restarts)
        );
        loop {
            tokio::select! {
                () = tokio::time::sleep(pause(restarts)) => {}
                _ = stop.changed() => return,
            }
            restarts = restarts.saturating_add(1);
            match launch.run().await {
                Ok(again) => {
                    tracing::info!(pid = again.id(), addr = %launch.addr, "mosquitto started again");
                    child = again;
                    started = Instant::now();
                    break;
                }
                Err(e) => tracing::error!("{e}; trying again in {:?}", pause(restarts)),
            }
        }
    }
}

/// SIGTERM (mosquitto closes its clients cleanly), then SIGKILL if it takes too long.
async fn terminate(mut child: Child) {
    crate::process::sigterm(&child);
    if tokio::time::timeout(STOP_WAIT, child.wait()).await.is_err() {
        tracing::warn!("mosquitto still running {STOP_WAIT:?} after SIGTERM; killing it");
        let _ = child.kill().await;
    }
}

/// Asks the kernel to send mosquitto SIGTERM when the hub dies, even by SIGKILL: an orphaned
/// mosquitto would keep the port and make the restarted hub fail. (The signal follows the
/// thread that started it; the hub starts it from a runtime worker, which lives as long as
/// the hub.)
fn stop_with_parent(command: &mut Command) {
    #[cfg(target_os = "linux")]
    // SAFETY: the closure runs in the child between fork and exec and calls only prctl,
    // which is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    #[cfg(not(target_os = "linux"))]
    let _ = command;
}

/// mosquitto's configuration for a hub's fleet on `addr`.
fn config(addr: SocketAddr, as_root: bool) -> String {
    let mut c = format!(
        "# Written by `wasmfleet serve --embedded-broker mosquitto` at every start; edits are lost.\n\
         listener {port} {host}\n\
         allow_anonymous true\n\
         # The hub's store is the record: it republishes desired states to nodes that announce.\n\
         persistence false\n\
         max_packet_size {MAX_PACKET}\n\
         # The hub's own client receives every node's traffic: a connect storm queues three\n\
         # messages per node for it while it is busy (rmqtt's hub listener gets as many).\n\
         max_queued_messages {HUB_QUEUE}\n\
         max_inflight_messages 0\n\
         # Desired state, status and chunk requests are small exchanges Nagle's algorithm delays.\n\
         set_tcp_nodelay true\n\
         log_dest stderr\n\
         log_type error\n\
         log_type warning\n\
         connection_messages false\n\
         log_timestamp_format %Y-%m-%dT%H:%M:%S\n",
        port = addr.port(),
        host = addr.ip(),
    );
    if as_root {
        c.push_str("# As the hub runs: a change of user would undo the stop on the hub's death.\nuser root\n");
    }
    c
}

/// Whether mosquitto must be told to stay root. Started by root, it switches to the
/// `mosquitto` account (and exits if there is none), and a process that changes its
/// credentials loses the parent-death signal [`stop_with_parent`] set: a hub killed with
/// SIGKILL left it running, holding the port. It runs with the hub's own rights, as rmqtt does
/// inside the hub.
fn run_as_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The address a client on this host reaches `addr` at.
fn client_addr(addr: SocketAddr) -> SocketAddr {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, addr.port())
}

/// `name` on `PATH`, or in [`SYSTEM_DIRS`].
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(SYSTEM_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Moves a log past [`LOG_ROTATE_BYTES`] aside, replacing the one moved aside before.
fn rotate(log: &Path) {
    if log.metadata().is_ok_and(|m| m.len() > LOG_ROTATE_BYTES) {
        let _ = std::fs::rename(log, log.with_extension("log.1"));
    }
}

/// What the log holds past `from`: the last lines, at most 1 KiB, on one line.
fn said_since(log: &Path, from: u64) -> String {
    let mut text = String::new();
    if let Ok(mut f) = File::open(log) {
        let _ = f.seek(SeekFrom::Start(from));
        let _ = f.take(64 << 10).read_to_string(&mut text);
    }
    let text = text.trim();
    let start = text.len().saturating_sub(1024);
    let start = (start..=text.len())
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(0);
    match text[start..].split('\n').collect::<Vec<_>>().join(" | ") {
        s if s.is_empty() => "nothing".into(),
        s => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configuration_listens_where_asked_with_the_hubs_limits() {
        let c = config("0.0.0.0:18830".parse().unwrap(), false);
        assert!(c.contains("\nlistener 18830 0.0.0.0\n"), "{c}");
        assert!(c.contains("\npersistence false\n"), "{c}");
        assert!(
            c.contains(&format!("\nmax_packet_size {MAX_PACKET}\n")),
            "{c}"
        );
        assert!(
            c.contains(&format!("\nmax_queued_messages {HUB_QUEUE}\n")),
            "{c}"
        );
        assert!(!c.contains("user root"), "{c}");
        let v6 = config("[::1]:1883".parse().unwrap(), true);
        assert!(v6.contains("\nlistener 1883 ::1\n"), "{v6}");
        assert!(v6.ends_with("\nuser root\n"), "{v6}");
    }

    #[test]
    fn the_hub_reaches_an_unspecified_address_on_loopback() {
        let at = |s: &str| client_addr(s.parse().unwrap()).to_string();
        assert_eq!(at("0.0.0.0:1883"), "127.0.0.1:1883");
        assert_eq!(at("[::]:1883"), "[::1]:1883");
        assert_eq!(at("192.0.2.7:1883"), "192.0.2.7:1883");
    }

    #[test]
    fn the_log_excerpt_is_what_came_after_the_start_on_one_line() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("m.log");
        std::fs::write(&log, "old run\n").unwrap();
        let from = log.metadata().unwrap().len();
        assert_eq!(said_since(&log, from), "nothing");
        std::fs::write(&log, "old run\nError: Address in use\nbye\n").unwrap();
        assert_eq!(said_since(&log, from), "Error: Address in use | bye");
        assert_eq!(said_since(&dir.path().join("none"), 0), "nothing");
    }

    #[test]
    fn a_program_is_found_only_where_it_can_be_run() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain");
        std::fs::write(&plain, "").unwrap();
        assert!(!is_executable(&plain));
        assert!(!is_executable(dir.path()));
        assert!(find_program("wasmfleet-no-such-program").is_none());
        assert!(find_program("sh").is_some());
    }
}

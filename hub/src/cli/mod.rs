//! The `wasmfleet` command line: a kubectl-like client of the hub's HTTP API, plus `serve`
//! (the hub itself) and `demo` (hub + local agents + a module, in one command).

pub mod apply;
pub mod client;
pub mod demo;
pub mod get;
pub mod logs;
pub mod node;
pub mod rollout;
pub mod sanitize;
pub mod table;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::{Parser, Subcommand};

use crate::api::types::{ApplyOutcome, Scheduling};
use crate::model::deployment::RestartPolicyName;
use crate::mqtt::BrokerUrl;
use client::Client;
use get::{Kind, Output};

pub use wasmfleet_common::quantity::parse_duration;

fn parse_quantity(text: &str) -> Result<u64, String> {
    crate::model::quantity::parse_bytes(text).map_err(|e| e.to_string())
}

/// Wasmfleet: Kubernetes-style desired state for WebAssembly on edge fleets.
#[derive(Debug, Parser)]
#[command(name = "wasmfleet", version, about)]
pub struct Cli {
    /// Hub API URL.
    #[arg(
        long,
        global = true,
        env = "WASMFLEET_HUB",
        default_value = "http://127.0.0.1:8080"
    )]
    pub hub: String,
    /// How long to wait for the hub to answer a request (e.g. 30s, 2m).
    #[arg(long, global = true, default_value = "30s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the hub: embedded MQTT broker (or an external one), SQLite store, HTTP API.
    Serve(ServeArgs),
    /// Create or update deployments from a manifest file.
    Apply {
        /// Manifest file (YAML; several documents separated by ---).
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
    },
    /// Deploy a module imperatively, like `kubectl run`.
    Run {
        /// Deployment name.
        name: String,
        /// The .wasm module.
        module: PathBuf,
        /// Number of instances.
        #[arg(long, default_value_t = 1)]
        replicas: u32,
        /// Environment variable, KEY=VALUE (repeatable).
        #[arg(long = "env", short = 'e')]
        env: Vec<String>,
        /// Memory limit per instance (all its memories and tables together).
        #[arg(long, default_value = "64Mi")]
        memory: String,
        /// CPU limit per instance, as in Kubernetes: `200m` is a fifth of one core.
        #[arg(long)]
        cpu: Option<String>,
        /// Stop a run that lasts longer than this (e.g. `30s`, `5m`) as Failed.
        #[arg(long)]
        max_run_time: Option<String>,
        /// Restart policy.
        #[arg(long, value_enum, default_value = "Always")]
        restart: RestartArg,
        /// Arguments for the module (after --).
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// List nodes, deployments or workloads.
    Get {
        /// nodes | deployments | workloads
        kind: Kind,
        /// Only this one.
        name: Option<String>,
        /// Output format.
        #[arg(short = 'o', long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Show details and recent events of a node, deployment or workload.
    Describe {
        /// node | deployment | workload
        kind: Kind,
        /// Its name.
        name: String,
    },
    /// Delete a deployment (its instances stop on every node).
    Delete {
        /// deployment
        kind: Kind,
        /// Its name.
        name: String,
    },
    /// Print the stdout/stderr lines of a deployment's instances.
    Logs {
        /// Deployment name.
        deployment: String,
        /// Keep printing new lines.
        #[arg(short = 'f', long)]
        follow: bool,
        /// How many recent lines to print first.
        #[arg(long, default_value_t = 100)]
        tail: u32,
        /// Output format: text (control characters escaped) or json (exact, one per line).
        #[arg(short = 'o', long, value_enum, default_value = "text")]
        output: logs::LogFormat,
    },
    /// Manage the rollout of a deployment's revisions.
    Rollout {
        #[command(subcommand)]
        action: RolloutCommand,
    },
    /// Mark a node unschedulable: no new replicas land there; those it runs stay.
    Cordon {
        /// Node name.
        node: String,
    },
    /// Mark a node schedulable again.
    Uncordon {
        /// Node name.
        node: String,
    },
    /// Cordon a node and move its replicas elsewhere (every-node workloads stay), then wait
    /// until it has stopped them.
    Drain {
        /// Node name.
        node: String,
        /// How long to wait for the node to stop its replicas, e.g. `2m`.
        #[arg(long, default_value = "2m", value_parser = parse_duration)]
        timeout: Duration,
    },
    /// Start a hub and 3 local agents, deploy the example module and stream its logs.
    Demo(demo::DemoArgs),
}

/// `wasmfleet rollout ...`.
#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// Follow the rollout until it completes (exit 0) or fails (exit 1, naming the cause).
    Status {
        /// Deployment name.
        deployment: String,
        /// Keep following until done; `--watch=false` prints once.
        #[arg(short = 'w', long, default_value_t = true, action = clap::ArgAction::Set)]
        watch: bool,
        /// Give up after this long, e.g. `10m`.
        #[arg(long, default_value = "10m", value_parser = parse_duration)]
        timeout: Duration,
    },
    /// List the revisions with their change causes.
    History {
        /// Deployment name.
        deployment: String,
    },
    /// Stop the rollout where it is; replicas keep the revision they run.
    Pause {
        /// Deployment name.
        deployment: String,
    },
    /// Continue a paused rollout.
    Resume {
        /// Deployment name.
        deployment: String,
    },
    /// Roll back: roll out the previous revision's template (or --to-revision's) again.
    Undo {
        /// Deployment name.
        deployment: String,
        /// The revision to go back to (default: the last good one before the current).
        #[arg(long)]
        to_revision: Option<u64>,
    },
}

/// Restart policy flag values.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
#[allow(clippy::enum_variant_names)]
pub enum RestartArg {
    /// Restart on every exit.
    #[value(name = "Always")]
    Always,
    /// Restart after failures.
    #[value(name = "OnFailure")]
    OnFailure,
    /// Never restart.
    #[value(name = "Never")]
    Never,
}

impl From<RestartArg> for RestartPolicyName {
    fn from(r: RestartArg) -> Self {
        match r {
            RestartArg::Always => RestartPolicyName::Always,
            RestartArg::OnFailure => RestartPolicyName::OnFailure,
            RestartArg::Never => RestartPolicyName::Never,
        }
    }
}

/// Options of `wasmfleet serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Data directory: SQLite store and module blobs.
    #[arg(long, default_value = "wasmfleet-data")]
    pub data: PathBuf,
    /// HTTP API listen address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub http: SocketAddr,
    /// Embedded MQTT broker listen address.
    #[arg(long, default_value = "127.0.0.1:1883", conflicts_with = "broker")]
    pub mqtt: SocketAddr,
    /// The broker the hub runs: `rmqtt` inside the hub, or `mosquitto`, a process the hub
    /// starts, restarts if it exits, and stops (about 4 KiB per node instead of 24 KiB;
    /// mosquitto must be installed).
    #[arg(long, value_enum, default_value = "rmqtt", conflicts_with = "broker")]
    pub embedded_broker: EmbeddedBrokerArg,
    /// With `--embedded-broker mosquitto`: the program (default: `mosquitto` on PATH or in
    /// /usr/sbin).
    #[arg(long, value_name = "PATH")]
    pub mosquitto: Option<PathBuf>,
    /// Use this external MQTT broker (mqtt://HOST:PORT) instead of the embedded one.
    #[arg(long)]
    pub broker: Option<BrokerUrl>,
    /// Seconds a NotReady node keeps its workloads before they are rescheduled.
    #[arg(long, default_value_t = 60)]
    pub node_grace_secs: u64,
    /// Workload log kept, in bytes across all deployments (oldest lines go first).
    #[arg(long, default_value = "64Mi", value_parser = parse_quantity)]
    pub log_retention: u64,
    /// Workload log lines older than this are dropped (e.g. 24h, 7d).
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    pub log_max_age: Duration,
}

/// `--embedded-broker` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EmbeddedBrokerArg {
    /// rmqtt, inside the hub's process.
    Rmqtt,
    /// mosquitto, a process the hub runs.
    Mosquitto,
}

impl ServeArgs {
    /// The hub options these flags describe.
    pub fn options(&self) -> crate::serve::Options {
        crate::serve::Options {
            data: self.data.clone(),
            http: self.http,
            mqtt: self.mqtt,
            own_broker: match self.embedded_broker {
                EmbeddedBrokerArg::Rmqtt => crate::serve::OwnBroker::Rmqtt,
                EmbeddedBrokerArg::Mosquitto => crate::serve::OwnBroker::Mosquitto {
                    program: self.mosquitto.clone(),
                },
            },
            broker: self.broker.clone(),
            controller: crate::controller::Config {
                not_ready_grace_ms: self.node_grace_secs * 1000,
            },
            log_retention: crate::store::Retention {
                max_bytes: self.log_retention,
                max_age_ms: self.log_max_age.as_millis() as u64,
            },
        }
    }
}

/// Resolves when the user presses Ctrl-C or the process gets SIGTERM.
pub async fn interrupted() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

fn outcome_word(o: ApplyOutcome) -> &'static str {
    match o {
        ApplyOutcome::Created => "created",
        ApplyOutcome::Configured => "configured",
        ApplyOutcome::Unchanged => "unchanged",
    }
}

/// Runs one CLI command.
pub async fn run(cli: Cli) -> Result<()> {
    let client = Client::new(&cli.hub, cli.request_timeout);
    match cli.command {
        Command::Serve(args) => {
            if args.mosquitto.is_some() && args.embedded_broker != EmbeddedBrokerArg::Mosquitto {
                anyhow::bail!(
                    "--mosquitto names the program for --embedded-broker mosquitto, which was not given"
                );
            }
            let hub = crate::serve::start(args.options()).await?;
            println!(
                "wasmfleet hub: http://{} mqtt: {}",
                hub.http_addr, hub.broker
            );
            interrupted().await;
            tracing::info!("shutting down");
            hub.shutdown().await;
        }
        Command::Apply { file } => {
            for r in apply::apply_file(&client, &file).await? {
                println!(
                    "deployment.wasmfleet.dev/{} {}",
                    r.name,
                    outcome_word(r.outcome)
                );
            }
        }
        Command::Run {
            name,
            module,
            replicas,
            env,
            memory,
            cpu,
            max_run_time,
            restart,
            args,
        } => {
            let r = apply::run(
                &client,
                apply::RunArgs {
                    name: &name,
                    module: &module,
                    replicas,
                    env: &env,
                    memory: &memory,
                    cpu: cpu.as_deref(),
                    max_run_time: max_run_time.as_deref(),
                    restart: restart.into(),
                    args: &args,
                },
            )
            .await?;
            println!(
                "deployment.wasmfleet.dev/{} {}",
                r.name,
                outcome_word(r.outcome)
            );
        }
        Command::Get { kind, name, output } => print!(
            "{}",
            get::get(&client, kind, name.as_deref(), output).await?
        ),
        Command::Describe { kind, name } => {
            print!("{}", get::describe(&client, kind, &name).await?)
        }
        Command::Rollout { action } => match action {
            RolloutCommand::Status {
                deployment,
                watch,
                timeout,
            } => {
                rollout::status(&client, &deployment, watch, timeout).await?;
            }
            RolloutCommand::History { deployment } => {
                print!("{}", rollout::history(&client, &deployment).await?);
            }
            RolloutCommand::Pause { deployment } => {
                println!(
                    "{}",
                    rollout::act(&client, &deployment, "pause", None).await?
                );
            }
            RolloutCommand::Resume { deployment } => {
                println!(
                    "{}",
                    rollout::act(&client, &deployment, "resume", None).await?
                );
            }
            RolloutCommand::Undo {
                deployment,
                to_revision,
            } => {
                println!(
                    "{}",
                    rollout::act(&client, &deployment, "undo", to_revision).await?
                );
            }
        },
        Command::Cordon { node } => {
            node::set(&client, &node, Scheduling::Cordoned).await?;
        }
        Command::Uncordon { node } => {
            node::set(&client, &node, Scheduling::Enabled).await?;
        }
        Command::Drain { node, timeout } => {
            node::set(&client, &node, Scheduling::Drained).await?;
            node::wait_drained(&client, &node, timeout).await?;
        }
        Command::Delete { kind, name } => {
            if kind != Kind::Deployment {
                anyhow::bail!(
                    "only deployments can be deleted (nodes leave when their agent stops)"
                );
            }
            client
                .delete(&client::path(&["v1", "deployments", &name]))
                .await?;
            println!("deployment.wasmfleet.dev/{name} deleted");
        }
        Command::Logs {
            deployment,
            follow,
            tail,
            output,
        } => logs::logs(&client, &deployment, tail, follow, output, interrupted()).await?,
        Command::Demo(args) => demo::run(args).await?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_kubectl_flags() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(
            parse_duration("5 minutes")
                .unwrap_err()
                .contains("unknown unit")
        );
        assert!(parse_duration("s").unwrap_err().contains("not a duration"));
    }
}

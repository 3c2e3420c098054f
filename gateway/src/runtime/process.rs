//! The process runtime: inference nodes as child processes of the gateway, for clusters that
//! run without Docker (`scripts/run.sh`).
//!
//! A launch first takes a slot, under one lock: it refuses (429) when the children of this
//! runtime, starting ones included, already number `GATEWAY_MAX_INSTANCES`, then picks the
//! name and a free `127.0.0.1` port that no other child of this runtime holds, and records the
//! child. It then starts the inference-node binary on that port with the seed's settings
//! (`PORT`, `GDP_MODEL_NAME`, `MODELS_DIR`, `SERVICE_DISCOVERY_URL`, `SERVICE_NAME`,
//! `ADVERTISE_ADDRESS=127.0.0.1`) and answers only once the node answers `GET /health`. A node
//! that exits first, or does not answer within `GATEWAY_NODE_START_TIMEOUT`, is stopped, its
//! slot freed, and the launch fails (502). Instances are listed and stoppable once started.
//!
//! Each child has a reaper task that waits for its exit, so no zombie is left and an exited
//! node drops out of the table (freeing its slot and port). Stopping sends SIGTERM (the node
//! deregisters from Consul), then SIGKILL after the stop timeout. When the gateway stops,
//! [`ProcessRuntime::shutdown`] stops every child it started; if the gateway is dropped
//! without that, `kill_on_drop` still kills them.
//!
//! Nodes die with the gateway, also when it is killed: each gets
//! `INFERENCE_NODE_EXIT_WITH_PARENT=<gateway pid>` and asks Linux for SIGTERM when its parent
//! dies (then deregisters and drains, as on any SIGTERM). Linux sends that signal when the
//! *thread* that forked the child exits, so every child is forked by one spawner thread that
//! lives as long as the runtime, never by whichever thread polls the launch (a thread of
//! tokio's blocking pool exits when idle and would take its nodes with it).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use node_contract::env;
use rustix::process::{Pid, Signal, kill_process};
use tokio::process::Command;
use tokio::sync::{OnceCell, oneshot, watch};

use crate::error::GatewayError;
use crate::runtime::settings::{NodeRegistration, RuntimeSettings};
use crate::runtime::{Instance, Launched, next_free_index, resolve_prefix};

/// Time a killed process gets to disappear before the stop is reported as failed.
const KILL_WAIT: Duration = Duration::from_secs(5);
/// Pause between two `/health` probes of a starting node.
const PROBE_INTERVAL: Duration = Duration::from_millis(100);
/// Time one `/health` probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Attempts at a port that no child of this runtime holds.
const PORT_ATTEMPTS: u32 = 16;

/// Launches, lists and stops inference-node processes started by this gateway.
pub struct ProcessRuntime {
    binary: PathBuf,
    models_dir: PathBuf,
    cluster: String,
    service: String,
    discovery_url: String,
    consul_token: Option<String>,
    stop_timeout: Duration,
    start_timeout: Duration,
    max_instances: u32,
    children: Arc<Mutex<BTreeMap<String, Child>>>,
    spawner: OnceCell<Spawner>,
    http: reqwest::Client,
}

/// One child, from its reserved slot until the reaper has collected it.
#[derive(Clone)]
struct Child {
    name: String,
    model: String,
    port: u16,
    /// `None` until the process is started.
    pid: Option<Pid>,
    /// Whether it has answered `/health`: listed and stoppable from then on.
    started: bool,
    /// Becomes `Some(how it ended)` once the reaper has collected the exit status.
    exited: watch::Receiver<Option<String>>,
}

/// A reserved slot: the new child's id, name and port, and its exit channel.
struct Slot {
    id: String,
    name: String,
    port: u16,
    exited_tx: watch::Sender<Option<String>>,
    exited: watch::Receiver<Option<String>>,
}

/// A request to the spawner thread: the command, and where to send the started child.
type SpawnRequest = (
    Command,
    oneshot::Sender<std::io::Result<tokio::process::Child>>,
);

/// Forks every node process from one thread that lives as long as the runtime (see the
/// module docs: a node's parent-death signal fires when the thread that forked it exits).
struct Spawner {
    requests: std::sync::mpsc::Sender<SpawnRequest>,
}

// === impl ProcessRuntime ===

impl ProcessRuntime {
    /// Takes its settings and the registration its nodes get; nothing is started yet.
    pub fn new(settings: &RuntimeSettings, registration: &NodeRegistration) -> ProcessRuntime {
        let binary = settings.node_binary.clone().unwrap_or_else(default_binary);
        ProcessRuntime {
            binary,
            models_dir: std::path::absolute(&settings.models_dir)
                .unwrap_or_else(|_| settings.models_dir.clone()),
            cluster: settings.cluster_name.clone(),
            service: registration.service.clone(),
            discovery_url: registration.consul_url.clone(),
            consul_token: registration.consul_token.clone(),
            stop_timeout: settings.node_stop_timeout,
            start_timeout: settings.node_start_timeout,
            max_instances: settings.max_instances,
            children: Arc::default(),
            spawner: OnceCell::new(),
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(PROBE_TIMEOUT)
                .build()
                .unwrap_or_else(|_| reqwest::Client::new()),
        }
    }

    /// Returns the inference-node binary this runtime starts.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// Returns `Ok` when `MODELS_DIR/<model>.onnx` exists: the file the new node will load.
    pub fn check_model(&self, model: &str) -> Result<(), GatewayError> {
        if self.models_dir.join(format!("{model}.onnx")).is_file() {
            Ok(())
        } else {
            Err(GatewayError::ModelNotLaunchable {
                model: model.to_string(),
                reason: format!("there is no {model}.onnx in MODELS_DIR"),
            })
        }
    }

    /// Starts a node process serving `model` by default; returns once it answers `/health`.
    pub async fn launch(&self, model: &str) -> Result<Launched, GatewayError> {
        let Slot {
            id,
            name,
            port,
            exited_tx,
            exited,
        } = self.reserve(model)?;
        let spawned = match self.spawner().await {
            Ok(spawner) => spawner.spawn(self.command(model, port)).await,
            Err(error) => Err(error),
        };
        let mut process = match spawned {
            Ok(process) => process,
            Err(error) => {
                self.children.lock().expect("children lock").remove(&id);
                tracing::error!(%error, binary = %self.binary.display(), "cannot start inference-node");
                return Err(GatewayError::RuntimeUnavailable(format!(
                    "cannot start the inference-node binary ({error}); build it (cargo build -p inference-node) or set NODE_BINARY"
                )));
            }
        };
        let pid = process
            .id()
            .and_then(|pid| i32::try_from(pid).ok())
            .and_then(Pid::from_raw);
        if let Some(child) = self.children.lock().expect("children lock").get_mut(&id) {
            child.pid = pid;
        }
        tracing::info!(%id, %name, %model, port, pid = process.id(), "started node process; waiting for it to answer /health");
        let children = self.children.clone();
        let reaped = id.clone();
        tokio::spawn(async move {
            let status = process.wait().await;
            children.lock().expect("children lock").remove(&reaped);
            let how = match status {
                Ok(status) => {
                    tracing::info!(id = %reaped, %status, "node process exited");
                    format!("exited ({status})")
                }
                Err(error) => {
                    tracing::warn!(id = %reaped, %error, "cannot wait for node process");
                    format!("could not be waited for ({error})")
                }
            };
            let _ = exited_tx.send(Some(how));
        });

        match self.wait_started(port, &exited).await {
            Ok(()) => {
                if let Some(child) = self.children.lock().expect("children lock").get_mut(&id) {
                    child.started = true;
                }
                tracing::info!(%id, %name, %model, port, "launched node process");
                Ok(Launched { id, name })
            }
            Err(reason) => {
                tracing::warn!(%id, %name, %reason, "node process did not start; stopping it");
                let child = self
                    .children
                    .lock()
                    .expect("children lock")
                    .get(&id)
                    .cloned();
                if let Some(child) = child
                    && let Err(error) = self.terminate(&id, child).await
                {
                    tracing::error!(%id, %error, "cannot stop the node process that did not start");
                }
                Err(GatewayError::LaunchFailed(reason))
            }
        }
    }

    /// Takes a slot for a new child of `model`: refuses past the limit; picks an id, the
    /// first free name and a port no other child holds; records the child (not started yet).
    fn reserve(&self, model: &str) -> Result<Slot, GatewayError> {
        let mut children = self.children.lock().expect("children lock");
        if children.len() >= self.max_instances as usize {
            return Err(GatewayError::TooManyInstances(self.max_instances));
        }
        let port = free_port(|port| children.values().any(|c| c.port == port))?;
        let index = next_free_index(
            children.values().map(|c| c.name.as_str()),
            &self.cluster,
            &self.service,
        );
        let name = format!("{}-{}-{index}", self.cluster, self.service);
        let id = format!("{:032x}", rand::random::<u128>());
        let (exited_tx, exited) = watch::channel(None);
        children.insert(
            id.clone(),
            Child {
                name: name.clone(),
                model: model.to_string(),
                port,
                pid: None,
                started: false,
                exited: exited.clone(),
            },
        );
        Ok(Slot {
            id,
            name,
            port,
            exited_tx,
            exited,
        })
    }

    /// The command that starts a node serving `model` on `port`.
    fn command(&self, model: &str, port: u16) -> Command {
        let mut command = Command::new(&self.binary);
        command
            .env_remove("GATEWAY_ADMIN_TOKEN")
            .env(env::PORT, port.to_string())
            .env(env::HOST, "127.0.0.1")
            .env(env::ADVERTISE_ADDRESS, "127.0.0.1")
            .env(env::MODEL_NAME, model)
            .env(env::MODELS_DIR, &self.models_dir)
            .env(env::SERVICE_DISCOVERY_URL, &self.discovery_url)
            .env(env::SERVICE_NAME, &self.service)
            .env(env::EXIT_WITH_PARENT, std::process::id().to_string())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        if let Some(token) = &self.consul_token {
            command.env(env::CONSUL_HTTP_TOKEN, token);
        }
        command
    }

    /// Returns the spawner, starting its thread on first use.
    async fn spawner(&self) -> std::io::Result<&Spawner> {
        self.spawner
            .get_or_try_init(|| async { Spawner::start() })
            .await
    }

    /// Polls the node's `/health` on `port` until it answers 200; fails (with the reason, fit
    /// for the client) when the process exits first or the start timeout passes.
    async fn wait_started(
        &self,
        port: u16,
        exited: &watch::Receiver<Option<String>>,
    ) -> Result<(), String> {
        let url = format!("http://127.0.0.1:{port}/health");
        let deadline = tokio::time::Instant::now() + self.start_timeout;
        loop {
            let answered = self
                .http
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            // NOTE: checked after the probe too: an answer from a process that is gone, or
            // from another process on this port while ours fails to bind it, is no start.
            if let Some(how) = exited.borrow().clone() {
                return Err(format!(
                    "the node process {how} before it answered /health (its output is in the gateway's log)"
                ));
            }
            if answered {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "the node process did not answer /health within GATEWAY_NODE_START_TIMEOUT ({})",
                    humantime::format_duration(self.start_timeout)
                ));
            }
            tokio::time::sleep(PROBE_INTERVAL).await;
        }
    }

    /// Returns the name of the running process this runtime started that listens on `addr`
    /// (it advertises `127.0.0.1:<port>`).
    pub fn name_at(&self, addr: &str) -> Option<String> {
        let port: u16 = addr.strip_prefix("127.0.0.1:")?.parse().ok()?;
        let children = self.children.lock().expect("children lock");
        children
            .values()
            .find(|c| c.port == port && c.started && c.exited.borrow().is_none())
            .map(|c| c.name.clone())
    }

    /// Lists the running processes whose default model is `model`.
    pub fn instances(&self, model: &str) -> Result<Vec<Instance>, GatewayError> {
        let image = self
            .binary
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let children = self.children.lock().expect("children lock");
        let mut out: Vec<Instance> = children
            .iter()
            .filter(|(_, c)| c.model == model && c.started && c.exited.borrow().is_none())
            .map(|(id, c)| Instance {
                id: id.clone(),
                name: c.name.clone(),
                status: "running".to_string(),
                image: vec![image.clone()],
                host: None,
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Stops the own started process whose id is or starts with `id`; returns its full id once
    /// the process has exited.
    pub async fn stop(&self, id: &str) -> Result<String, GatewayError> {
        let (full, child) = {
            let children = self.children.lock().expect("children lock");
            let started = children
                .iter()
                .filter(|(_, c)| c.started)
                .map(|(id, _)| id.as_str());
            let full = resolve_prefix(id, started)?.to_string();
            let child = children[&full].clone();
            (full, child)
        };
        self.terminate(&full, child).await?;
        Ok(full)
    }

    /// Stops every process this runtime started and waits for them to exit.
    pub async fn shutdown(&self) {
        // NOTE: a slot whose process is not forked yet has nothing to stop; if it still
        // starts, its parent-death signal stops it when the gateway exits.
        let all: Vec<(String, Child)> = self
            .children
            .lock()
            .expect("children lock")
            .iter()
            .filter(|(_, c)| c.pid.is_some())
            .map(|(id, c)| (id.clone(), c.clone()))
            .collect();
        if all.is_empty() {
            return;
        }
        tracing::info!(
            count = all.len(),
            "stopping the node processes this gateway started"
        );
        let stops = all.into_iter().map(|(id, child)| async move {
            if let Err(error) = self.terminate(&id, child).await {
                tracing::warn!(%id, %error, "node process did not stop");
            }
        });
        futures::future::join_all(stops).await;
    }

    /// SIGTERM, wait up to the stop timeout, then SIGKILL and wait a little more.
    async fn terminate(&self, id: &str, child: Child) -> Result<(), GatewayError> {
        let mut exited = child.exited.clone();
        signal(&child, Signal::TERM);
        // An error means the reaper is gone, which only happens after the exit.
        if tokio::time::timeout(self.stop_timeout, exited.wait_for(Option::is_some))
            .await
            .is_ok()
        {
            tracing::info!(%id, "node process stopped");
            return Ok(());
        }
        tracing::warn!(%id, timeout = ?self.stop_timeout, "node process ignored SIGTERM; killing it");
        signal(&child, Signal::KILL);
        match tokio::time::timeout(KILL_WAIT, exited.wait_for(Option::is_some)).await {
            Ok(_) => Ok(()),
            Err(_) => Err(GatewayError::RuntimeFailed(format!(
                "node process {id} did not exit after SIGKILL"
            ))),
        }
    }
}

/// Sends `signal` unless the reaper has already collected the process (its pid may be reused).
fn signal(child: &Child, signal: Signal) {
    if child.exited.borrow().is_some() {
        return;
    }
    if let Some(pid) = child.pid
        && let Err(error) = kill_process(pid, signal)
    {
        tracing::debug!(%error, "signal not delivered (process already gone)");
    }
}

/// Returns a port on 127.0.0.1 that is free right now and not `taken` (by another child of
/// this runtime, which may not listen on it yet).
fn free_port(taken: impl Fn(u16) -> bool) -> Result<u16, GatewayError> {
    for _ in 0..PORT_ATTEMPTS {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| GatewayError::RuntimeFailed(format!("cannot find a free port: {e}")))?;
        if !taken(port) {
            return Ok(port);
        }
    }
    Err(GatewayError::RuntimeFailed(format!(
        "no free port after {PORT_ATTEMPTS} attempts"
    )))
}

/// `inference-node` next to the gateway executable.
fn default_binary() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("inference-node")))
        .unwrap_or_else(|| PathBuf::from("inference-node"))
}

// === impl Spawner ===

impl Spawner {
    /// Starts the spawner thread; it forks within the current tokio runtime (whose driver
    /// reaps the children) and ends when the `ProcessRuntime` that owns it is dropped.
    fn start() -> std::io::Result<Spawner> {
        let runtime = tokio::runtime::Handle::current();
        let (requests, incoming) = std::sync::mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("node-spawner".to_string())
            .spawn(move || {
                let _context = runtime.enter();
                for (mut command, reply) in incoming {
                    let _ = reply.send(command.spawn());
                }
            })?;
        Ok(Spawner { requests })
    }

    /// Forks `command` on the spawner thread.
    async fn spawn(&self, command: Command) -> std::io::Result<tokio::process::Child> {
        let gone = || std::io::Error::other("the node-spawner thread is gone");
        let (reply, answer) = oneshot::channel();
        self.requests.send((command, reply)).map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

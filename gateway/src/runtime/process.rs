//! The process runtime: inference nodes as child processes of the gateway, for clusters that
//! run without Docker (`scripts/run.sh`).
//!
//! A launch starts the inference-node binary on a free `127.0.0.1` port with the seed's
//! settings (`PORT`, `GDP_MODEL_NAME`, `MODELS_DIR`, `SERVICE_DISCOVERY_URL`, `SERVICE_NAME`,
//! `ADVERTISE_ADDRESS=127.0.0.1`); the node registers itself in Consul. Each child has a
//! reaper task that waits for its exit, so no zombie is left and an exited node drops out of
//! the table. Stopping sends SIGTERM (the node deregisters from Consul), then SIGKILL after the
//! stop timeout. When the gateway stops, [`ProcessRuntime::shutdown`] stops every child it
//! started; if the gateway is dropped without that, `kill_on_drop` still kills them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustix::process::{Pid, Signal, kill_process};
use tokio::process::Command;
use tokio::sync::watch;

use crate::config::Config;
use crate::error::GatewayError;
use crate::runtime::{Instance, Launched, next_free_index, resolve_prefix};

/// Time a killed process gets to disappear before the stop is reported as failed.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// Launches, lists and stops inference-node processes started by this gateway.
pub struct ProcessRuntime {
    binary: PathBuf,
    models_dir: PathBuf,
    cluster: String,
    service: String,
    discovery_url: String,
    consul_token: Option<String>,
    stop_timeout: Duration,
    children: Arc<Mutex<BTreeMap<String, Child>>>,
}

/// One running child.
#[derive(Clone)]
struct Child {
    name: String,
    model: String,
    pid: Option<Pid>,
    /// Becomes `true` once the reaper has collected the exit status.
    exited: watch::Receiver<bool>,
}

// === impl ProcessRuntime ===

impl ProcessRuntime {
    /// Takes the settings from `config`; nothing is started yet.
    pub fn new(config: &Config) -> ProcessRuntime {
        let binary = config.node_binary.clone().unwrap_or_else(default_binary);
        ProcessRuntime {
            binary,
            models_dir: std::path::absolute(&config.models_dir)
                .unwrap_or_else(|_| config.models_dir.clone()),
            cluster: config.cluster_name.clone(),
            service: config.service_name.clone(),
            discovery_url: config
                .service_discovery_url
                .as_str()
                .trim_end_matches('/')
                .to_string(),
            consul_token: config.consul_token.clone(),
            stop_timeout: config.node_stop_timeout,
            children: Arc::default(),
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

    /// Starts a node process serving `model` by default.
    pub async fn launch(&self, model: &str) -> Result<Launched, GatewayError> {
        let port = free_port()?;
        let id = format!("{:032x}", rand::random::<u128>());
        let (exited_tx, exited) = watch::channel(false);
        let mut command = Command::new(&self.binary);
        command
            .env_remove("GATEWAY_ADMIN_TOKEN")
            .env("PORT", port.to_string())
            .env("HOST", "127.0.0.1")
            .env("ADVERTISE_ADDRESS", "127.0.0.1")
            .env("GDP_MODEL_NAME", model)
            .env("MODELS_DIR", &self.models_dir)
            .env("SERVICE_DISCOVERY_URL", &self.discovery_url)
            .env("SERVICE_NAME", &self.service)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        if let Some(token) = &self.consul_token {
            command.env("CONSUL_HTTP_TOKEN", token);
        }
        // NOTE: the name is chosen and the child recorded under one lock, so two launches at
        // once never pick the same name.
        let (name, mut child) = {
            let mut children = self.children.lock().expect("children lock");
            let index = next_free_index(
                children.values().map(|c| c.name.as_str()),
                &self.cluster,
                &self.service,
            );
            let name = format!("{}-{}-{index}", self.cluster, self.service);
            let child = command.spawn().map_err(|error| {
                tracing::error!(%error, binary = %self.binary.display(), "cannot start inference-node");
                GatewayError::RuntimeUnavailable(format!(
                    "cannot start the inference-node binary ({error}); build it (cargo build -p inference-node) or set NODE_BINARY"
                ))
            })?;
            let pid = child
                .id()
                .and_then(|pid| i32::try_from(pid).ok())
                .and_then(Pid::from_raw);
            children.insert(
                id.clone(),
                Child {
                    name: name.clone(),
                    model: model.to_string(),
                    pid,
                    exited,
                },
            );
            (name, child)
        };
        tracing::info!(%id, %name, %model, port, pid = child.id(), "launched node process");
        let children = self.children.clone();
        let reaped = id.clone();
        tokio::spawn(async move {
            let status = child.wait().await;
            children.lock().expect("children lock").remove(&reaped);
            let _ = exited_tx.send(true);
            match status {
                Ok(status) => tracing::info!(id = %reaped, %status, "node process exited"),
                Err(error) => tracing::warn!(id = %reaped, %error, "cannot wait for node process"),
            }
        });
        Ok(Launched { id, name })
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
            .filter(|(_, c)| c.model == model && !*c.exited.borrow())
            .map(|(id, c)| Instance {
                id: id.clone(),
                name: c.name.clone(),
                status: "running".to_string(),
                image: vec![image.clone()],
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Stops the own process whose id is or starts with `id`; returns its full id once the
    /// process has exited.
    pub async fn stop(&self, id: &str) -> Result<String, GatewayError> {
        let (full, child) = {
            let children = self.children.lock().expect("children lock");
            let full = resolve_prefix(id, children.keys().map(String::as_str))?.to_string();
            let child = children[&full].clone();
            (full, child)
        };
        self.terminate(&full, child).await?;
        Ok(full)
    }

    /// Stops every process this runtime started and waits for them to exit.
    pub async fn shutdown(&self) {
        let all: Vec<(String, Child)> = self
            .children
            .lock()
            .expect("children lock")
            .iter()
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
        if tokio::time::timeout(self.stop_timeout, exited.wait_for(|done| *done))
            .await
            .is_ok()
        {
            tracing::info!(%id, "node process stopped");
            return Ok(());
        }
        tracing::warn!(%id, timeout = ?self.stop_timeout, "node process ignored SIGTERM; killing it");
        signal(&child, Signal::KILL);
        match tokio::time::timeout(KILL_WAIT, exited.wait_for(|done| *done)).await {
            Ok(_) => Ok(()),
            Err(_) => Err(GatewayError::RuntimeFailed(format!(
                "node process {id} did not exit after SIGKILL"
            ))),
        }
    }
}

/// Sends `signal` unless the reaper has already collected the process (its pid may be reused).
fn signal(child: &Child, signal: Signal) {
    if *child.exited.borrow() {
        return;
    }
    if let Some(pid) = child.pid
        && let Err(error) = kill_process(pid, signal)
    {
        tracing::debug!(%error, "signal not delivered (process already gone)");
    }
}

/// Returns a port on 127.0.0.1 that is free right now.
fn free_port() -> Result<u16, GatewayError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| GatewayError::RuntimeFailed(format!("cannot find a free port: {e}")))
}

/// `inference-node` next to the gateway executable.
fn default_binary() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("inference-node")))
        .unwrap_or_else(|| PathBuf::from("inference-node"))
}

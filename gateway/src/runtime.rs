//! The container lifecycle behind `POST /api/models/launch/{model}`, `GET
//! /api/models/instances/{model}` and `DELETE /api/models/instances/{id}`.
//!
//! Three real runtimes run inference nodes: [`docker`] (containers through the Docker Engine
//! API), [`swarm`] (Docker Swarm services through a manager's Engine API, so nodes spread over
//! several hosts) and [`process`] (child processes of the gateway, for clusters started without
//! Docker). `RUNTIME=docker|swarm|process` picks one; unset, the gateway uses Docker when the
//! engine answers and processes otherwise, and logs its choice. Each acts only on its own
//! instances: Docker containers or Swarm services labelled with this cluster (see
//! [`docker::DockerRuntime::labels`]), or processes this gateway started.
//!
//! A launch answers success only for a node that has started (process: answers `/health`;
//! container: running and, when its image has a health check, healthy), within
//! `GATEWAY_NODE_START_TIMEOUT`; else the node is removed and the launch is a 502. At most
//! `GATEWAY_MAX_INSTANCES` launched instances exist at once (starting ones count; compose
//! replicas do not); the slot is taken before anything starts, so concurrent launches never
//! overshoot it (429 past it). Each launch runs in a task of its own, so a client that hangs up
//! mid-launch leaves no half-started instance behind.
//!
//! Which models may be launched is one rule per runtime ([`Runtime::check_launchable`]): the
//! process runtime needs `MODELS_DIR/<model>.onnx` (the file the new node will load); the
//! Docker and Swarm runtimes need a healthy node that lists the model (nodes run the same image,
//! so the image has the model), because the gateway's own container has no models directory.
//!
//! The runtimes are built from their own flags, [`settings::RuntimeSettings`], and the Consul
//! registration their nodes get, [`settings::NodeRegistration`]; the gateway's `Config`
//! flattens the former and builds the latter, and nothing here reads `Config`. The HTTP side
//! (path checks, admin token) stays in `http/lifecycle.rs`.

pub mod docker;
pub mod process;
pub mod settings;
pub mod swarm;

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::OnceCell;
use utoipa::ToSchema;

use crate::discovery::Discovery;
use crate::error::GatewayError;

use docker::DockerRuntime;
use process::ProcessRuntime;
use settings::{NodeRegistration, RuntimeKind, RuntimeSettings};
use swarm::SwarmRuntime;

/// How long the automatic runtime choice waits for the Docker Engine to answer.
const DETECT_TIMEOUT: Duration = Duration::from_secs(3);

/// An instance as `GET /api/models/instances/{model}` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Instance {
    /// Full id (64 hex digits for Docker, 32 for processes, Swarm's 25-character task id).
    pub id: String,
    /// Name, `<cluster>-<service>-<n>` for instances the gateway launched (Swarm:
    /// `<service>.<slot>`).
    pub name: String,
    /// `running`, `exited`, ... (Docker's container state; Swarm's task state; processes are
    /// `running`).
    pub status: String,
    /// Image tags of a container; the node binary's file name for a process.
    pub image: Vec<String>,
    /// Swarm only: the host (swarm node's hostname) the task runs on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

/// A freshly started instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launched {
    /// Full id.
    pub id: String,
    /// Name, `<cluster>-<service>-<n>`.
    pub name: String,
}

/// The runtime the lifecycle endpoints use, chosen once (at startup, or at first use).
pub struct Runtime {
    requested: Option<RuntimeKind>,
    backend: OnceCell<Backend>,
    docker: Arc<DockerRuntime>,
    swarm: Arc<SwarmRuntime>,
    process: Arc<ProcessRuntime>,
}

enum Backend {
    Docker,
    Swarm,
    Process,
}

// === impl Runtime ===

impl Runtime {
    /// Builds both runtimes from their settings and the registration their nodes get;
    /// nothing is contacted yet.
    pub fn new(settings: &RuntimeSettings, registration: &NodeRegistration) -> Runtime {
        let docker = Arc::new(DockerRuntime::new(settings, registration));
        Runtime {
            requested: settings.runtime,
            backend: OnceCell::new(),
            swarm: Arc::new(SwarmRuntime::new(settings, registration, docker.clone())),
            docker,
            process: Arc::new(ProcessRuntime::new(settings, registration)),
        }
    }

    /// Returns the runtime in use, choosing it first if needed (and logging the choice).
    pub async fn kind(&self) -> RuntimeKind {
        let backend = self
            .backend
            .get_or_init(|| async {
                match self.requested {
                    Some(RuntimeKind::Docker) => {
                        tracing::info!(host = %self.docker.host(), "lifecycle runtime: docker (RUNTIME=docker)");
                        Backend::Docker
                    }
                    Some(RuntimeKind::Swarm) => {
                        tracing::info!(host = %self.docker.host(), "lifecycle runtime: swarm (RUNTIME=swarm)");
                        Backend::Swarm
                    }
                    Some(RuntimeKind::Process) => {
                        tracing::info!(binary = %self.process.binary().display(), "lifecycle runtime: process (RUNTIME=process)");
                        Backend::Process
                    }
                    None => match tokio::time::timeout(DETECT_TIMEOUT, self.docker.client()).await
                    {
                        Ok(Ok(_)) => {
                            tracing::info!(host = %self.docker.host(), "lifecycle runtime: docker (RUNTIME unset, the Docker Engine answers)");
                            Backend::Docker
                        }
                        Ok(Err(error)) => {
                            tracing::info!(%error, binary = %self.process.binary().display(), "lifecycle runtime: process (RUNTIME unset, no Docker Engine)");
                            Backend::Process
                        }
                        Err(_) => {
                            tracing::info!(binary = %self.process.binary().display(), "lifecycle runtime: process (RUNTIME unset, the Docker Engine did not answer in time)");
                            Backend::Process
                        }
                    },
                }
            })
            .await;
        match backend {
            Backend::Docker => RuntimeKind::Docker,
            Backend::Swarm => RuntimeKind::Swarm,
            Backend::Process => RuntimeKind::Process,
        }
    }

    /// Returns `Ok` when `model` may be launched, else [`GatewayError::ModelNotLaunchable`]
    /// saying why (the rule is in the module docs).
    pub async fn check_launchable(
        &self,
        model: &str,
        discovery: &Discovery,
    ) -> Result<(), GatewayError> {
        match self.kind().await {
            RuntimeKind::Process => self.process.check_model(model),
            RuntimeKind::Docker | RuntimeKind::Swarm => {
                let served = discovery
                    .endpoints()
                    .iter()
                    .any(|e| e.serves(model) == Some(true));
                if served {
                    Ok(())
                } else {
                    Err(GatewayError::ModelNotLaunchable {
                        model: model.to_string(),
                        reason:
                            "no healthy node lists it (GET /api/models/available shows the models)"
                                .to_string(),
                    })
                }
            }
        }
    }

    /// Starts a new node serving `model` by default; returns its id and name once it has
    /// started (429 past the limit, 502 when it does not start).
    pub async fn launch(&self, model: &str) -> Result<Launched, GatewayError> {
        let model = model.to_string();
        // NOTE: a task of its own, so a dropped request does not stop it half-way.
        let task = match self.kind().await {
            RuntimeKind::Docker => {
                let docker = self.docker.clone();
                tokio::spawn(async move { docker.launch(&model).await })
            }
            RuntimeKind::Swarm => {
                let swarm = self.swarm.clone();
                tokio::spawn(async move { swarm.launch(&model).await })
            }
            RuntimeKind::Process => {
                let process = self.process.clone();
                tokio::spawn(async move { process.launch(&model).await })
            }
        };
        task.await
            .map_err(|e| GatewayError::RuntimeFailed(format!("the launch task failed: {e}")))?
    }

    /// Lists this cluster's instances whose default model is `model`.
    pub async fn instances(&self, model: &str) -> Result<Vec<Instance>, GatewayError> {
        match self.kind().await {
            RuntimeKind::Docker => self.docker.instances(model).await,
            RuntimeKind::Swarm => self.swarm.instances(model).await,
            RuntimeKind::Process => self.process.instances(model),
        }
    }

    /// Stops (SIGTERM, so the node deregisters; killed after the stop timeout) and removes the
    /// own instance whose id is `id` or starts with it; returns the full id. Swarm removes the
    /// service of a launched instance (see [`swarm`] for replicas of the stack's services).
    pub async fn stop(&self, id: &str) -> Result<String, GatewayError> {
        match self.kind().await {
            RuntimeKind::Docker => self.docker.stop(id).await,
            RuntimeKind::Swarm => self.swarm.stop(id).await,
            RuntimeKind::Process => self.process.stop(id).await,
        }
    }

    /// Returns the name of the instance at `addr` (`host:port`) when this gateway launched it
    /// as a process; `None` otherwise (containers are not looked up).
    pub fn launched_name(&self, addr: &str) -> Option<String> {
        self.process.name_at(addr)
    }

    /// Stops every process this gateway started (containers outlive the gateway on purpose).
    pub async fn shutdown(&self) {
        self.process.shutdown().await;
    }
}

/// Returns the smallest `n >= 1` such that neither `<cluster>-<service>-<n>` (our and compose
/// v2's form) nor `<cluster>_<service>_<n>` (compose v1's form) is among `taken`.
pub fn next_free_index<'a>(
    taken: impl IntoIterator<Item = &'a str>,
    cluster: &str,
    service: &str,
) -> u32 {
    let v2 = format!("{cluster}-{service}-");
    let v1 = format!("{cluster}_{service}_");
    let used: std::collections::BTreeSet<u32> = taken
        .into_iter()
        .filter_map(|name| {
            let name = name.trim_start_matches('/');
            name.strip_prefix(&v2)
                .or_else(|| name.strip_prefix(&v1))
                .and_then(|n| n.parse::<u32>().ok())
        })
        .collect();
    (1..).find(|n| !used.contains(n)).unwrap_or(1)
}

/// Returns the one id in `ids` equal to or starting with `prefix`.
pub fn resolve_prefix<'a>(
    prefix: &str,
    ids: impl IntoIterator<Item = &'a str>,
) -> Result<&'a str, GatewayError> {
    let matches: Vec<&str> = ids
        .into_iter()
        .filter(|id| id.starts_with(prefix))
        .collect();
    if let Some(exact) = matches.iter().find(|id| **id == prefix) {
        return Ok(exact);
    }
    match matches.as_slice() {
        [] => Err(GatewayError::InstanceNotFound(prefix.to_string())),
        [one] => Ok(one),
        many => Err(GatewayError::AmbiguousInstance {
            prefix: prefix.to_string(),
            matches: many.len(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_errors_map_to_statuses() {
        let cases = [
            (GatewayError::Unauthorized, 401),
            (GatewayError::Forbidden, 403),
            (
                GatewayError::ModelNotLaunchable {
                    model: "m".into(),
                    reason: "r".into(),
                },
                404,
            ),
            (GatewayError::InstanceNotFound("abc".into()), 404),
            (GatewayError::InstanceNotRemovable("scale".into()), 409),
            (GatewayError::TooManyInstances(3), 429),
            (GatewayError::LaunchFailed("exited".into()), 502),
            (GatewayError::RuntimeUnavailable("down".into()), 503),
            (GatewayError::RuntimeFailed("secret detail".into()), 500),
        ];
        for (err, status) in cases {
            assert_eq!(err.status().as_u16(), status, "{err}");
        }
    }

    #[test]
    fn next_index_skips_both_compose_forms() {
        let names = [
            "/microservices-gdp-growth-model-1",
            "/microservices_gdp-growth-model_2",
            "/microservices-gdp-growth-model-4",
            "/other-gdp-growth-model-3",
            "/microservices-gdp-growth-model-x",
        ];
        assert_eq!(
            next_free_index(names, "microservices", "gdp-growth-model"),
            3
        );
        assert_eq!(next_free_index([], "microservices", "gdp-growth-model"), 1);
    }

    #[test]
    fn prefixes_resolve_to_one_id() {
        let ids = ["abc111", "abc222", "def333"];
        assert_eq!(resolve_prefix("d", ids).unwrap(), "def333");
        assert_eq!(resolve_prefix("abc2", ids).unwrap(), "abc222");
        assert_eq!(
            resolve_prefix("abc", ids).unwrap_err().status().as_u16(),
            400
        );
        assert_eq!(resolve_prefix("0", ids).unwrap_err().status().as_u16(), 404);
        assert_eq!(resolve_prefix("abc111", ids).unwrap(), "abc111");
    }
}

//! The Docker runtime: node containers through the Docker Engine API (bollard).
//!
//! Guardrails, because the Docker socket is root on the host: the gateway lists, stops and
//! removes only containers labelled `gdp-serving.cluster=<CLUSTER_NAME>` that also carry a
//! `gdp-serving.model` label (compose's node replicas carry both; the gateway's own and
//! Consul's containers carry neither); it creates containers only from `NODE_IMAGE`, with a
//! HostConfig built here (no binds, no privileges, all capabilities dropped, no host network
//! or pid namespace, memory and pids limits, no restart), named `<cluster>-<service>-<n>`.
//!
//! Launches: at most `GATEWAY_MAX_INSTANCES` containers launched by the gateway (label
//! `gdp-serving.launched-by=gateway`) of this cluster exist at once, any state but exited, dead
//! or being removed; compose's replicas do not count (they are the operator's declared scale,
//! not the API's). The gateway counts and creates under one lock, so its concurrent launches
//! never overshoot (several gateways of one cluster each count the others' containers, but are
//! not serialized with each other). A launch answers once the container runs and, when its
//! image has a health check (the node image has), is healthy, within
//! `GATEWAY_NODE_START_TIMEOUT`; a container that exits, turns unhealthy or runs out of time is
//! removed (its last log lines go to the gateway's log) and the launch fails (502).
//!
//! When the cluster was started by compose, a launched node also carries compose's own labels,
//! copied from a compose-started replica (with its own container number): `docker-compose ps`
//! then lists it with the other replicas and `docker-compose down` removes it together with
//! the network, instead of failing on a network that still has an endpoint. The price is
//! compose's declarative model: a later `up --scale` counts launched nodes as replicas.
//!
//! The client connects lazily and negotiates the API version (the daemon here speaks 1.41);
//! while the engine is unreachable the lifecycle endpoints answer 503 and it is retried on the
//! next request.

use std::collections::HashMap;
use std::time::Duration;

use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::models::{
    ContainerCreateBody, ContainerStateStatusEnum, ContainerSummary, ContainerSummaryStateEnum,
    EndpointSettings, HealthStatusEnum, HostConfig, NetworkingConfig, RestartPolicy,
    RestartPolicyNameEnum,
};
use bollard::query_parameters::{
    CreateContainerOptions, ListContainersOptions, LogsOptions, RemoveContainerOptions,
    StopContainerOptions,
};
use futures::StreamExt;
use node_contract::env;
use tokio::sync::{Mutex, OnceCell};

use crate::error::GatewayError;
use crate::runtime::settings::{NodeRegistration, RuntimeSettings};
use crate::runtime::{Instance, Launched, next_free_index, resolve_prefix};

/// Label naming the cluster a node container belongs to.
pub const CLUSTER_LABEL: &str = "gdp-serving.cluster";
/// Label naming the node's default model (`GDP_MODEL_NAME`).
pub const MODEL_LABEL: &str = "gdp-serving.model";
/// Label marking the container's role; set on launched nodes (compose does not set it yet).
pub const ROLE_LABEL: &str = "gdp-serving.role";
/// Value of [`ROLE_LABEL`] on node containers.
pub const NODE_ROLE: &str = "inference-node";

/// Label marking the containers the gateway launched (they count towards
/// `GATEWAY_MAX_INSTANCES`; compose replicas do not carry it).
pub const LAUNCHED_LABEL: &str = "gdp-serving.launched-by";
/// Value of [`LAUNCHED_LABEL`].
pub const LAUNCHED_BY_GATEWAY: &str = "gateway";

/// Prefix of the labels compose puts on the containers it manages.
const COMPOSE_LABEL_PREFIX: &str = "com.docker.compose.";
/// Compose labels that differ per container and are set by the gateway, not copied.
const COMPOSE_NUMBER_LABEL: &str = "com.docker.compose.container-number";
const COMPOSE_ONEOFF_LABEL: &str = "com.docker.compose.oneoff";
const COMPOSE_SERVICE_LABEL: &str = "com.docker.compose.service";

/// Time allowed to reach the engine and negotiate the API version.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts at a free name when another container takes the chosen one meanwhile.
const NAME_ATTEMPTS: u32 = 5;
/// Pause between two looks at a starting container's state.
const START_POLL: Duration = Duration::from_millis(250);
/// Log lines of a container that did not start copied to the gateway's log.
const FAILED_LOG_LINES: &str = "20";

/// Launches, lists and stops node containers of one cluster.
pub struct DockerRuntime {
    host: String,
    image: String,
    cluster: String,
    service: String,
    network: Option<String>,
    discovery_url: String,
    consul_token: Option<String>,
    memory_bytes: i64,
    pids_limit: i64,
    stop_timeout: Duration,
    start_timeout: Duration,
    max_instances: u32,
    /// Held while counting and creating, so concurrent launches never overshoot the limit.
    launching: Mutex<()>,
    client: OnceCell<Docker>,
    found_network: OnceCell<String>,
}

// === impl DockerRuntime ===

impl DockerRuntime {
    /// Takes its settings and the registration its nodes get; the engine is contacted on
    /// first use.
    pub fn new(settings: &RuntimeSettings, registration: &NodeRegistration) -> DockerRuntime {
        DockerRuntime {
            host: settings.docker_host.clone(),
            image: settings.node_image.clone(),
            cluster: settings.cluster_name.clone(),
            service: registration.service.clone(),
            network: settings.docker_network.clone(),
            discovery_url: registration.consul_url.clone(),
            consul_token: registration.consul_token.clone(),
            memory_bytes: i64::from(settings.node_memory_mb) * 1024 * 1024,
            pids_limit: i64::from(settings.node_pids_limit),
            stop_timeout: settings.node_stop_timeout,
            start_timeout: settings.node_start_timeout,
            max_instances: settings.max_instances,
            launching: Mutex::new(()),
            client: OnceCell::new(),
            found_network: OnceCell::new(),
        }
    }

    /// Returns the engine address (`DOCKER_HOST`).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Returns a connected client, connecting and negotiating the API version first if needed.
    pub async fn client(&self) -> Result<&Docker, GatewayError> {
        self.client
            .get_or_try_init(|| async {
                let connect = async {
                    // Generous: a stop waits up to the stop timeout inside one request.
                    let timeout = self.stop_timeout.as_secs() + 30;
                    Docker::connect_with_host(&self.host)?
                        .with_timeout(Duration::from_secs(timeout))
                        .negotiate_version()
                        .await
                };
                match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
                    Ok(Ok(docker)) => {
                        tracing::info!(host = %self.host, api = %docker.client_version(), "connected to the Docker Engine");
                        Ok(docker)
                    }
                    Ok(Err(error)) => Err(unavailable(&self.host, &error.to_string())),
                    Err(_) => Err(unavailable(&self.host, "timed out")),
                }
            })
            .await
    }

    /// Returns the labels every node container of this cluster carries.
    pub fn labels(&self, model: &str) -> HashMap<String, String> {
        HashMap::from([
            (CLUSTER_LABEL.to_string(), self.cluster.clone()),
            (ROLE_LABEL.to_string(), NODE_ROLE.to_string()),
            (MODEL_LABEL.to_string(), model.to_string()),
        ])
    }

    /// Creates and starts a node container for `model`; returns once it has started (see the
    /// module docs).
    pub async fn launch(&self, model: &str) -> Result<Launched, GatewayError> {
        let docker = self.client().await?;
        let network = self.network(docker).await?;
        let launched = {
            let _one_at_a_time = self.launching.lock().await;
            self.create(docker, model, &network).await?
        };
        // From here on the created container counts towards the limit, until it is removed.
        let started = match docker.start_container(&launched.id, None).await {
            Ok(()) => self.wait_started(docker, &launched.id).await,
            Err(error) => Err(self.failed("start the node container", error)),
        };
        match started {
            Ok(()) => {
                tracing::info!(id = %launched.id, name = %launched.name, %model, %network, "launched node container");
                Ok(launched)
            }
            Err(error) => {
                tracing::warn!(id = %launched.id, name = %launched.name, %error, "node container did not start; removing it");
                self.log_tail(docker, &launched.id).await;
                if let Err(error) = docker
                    .remove_container(
                        &launched.id,
                        Some(RemoveContainerOptions {
                            force: true,
                            ..Default::default()
                        }),
                    )
                    .await
                {
                    tracing::error!(id = %launched.id, %error, "cannot remove the node container that did not start");
                }
                Err(error)
            }
        }
    }

    /// Creates (does not start) a node container for `model` under a free name, unless this
    /// cluster already has `GATEWAY_MAX_INSTANCES` launched containers. Call it under the
    /// `launching` lock.
    async fn create(
        &self,
        docker: &Docker,
        model: &str,
        network: &str,
    ) -> Result<Launched, GatewayError> {
        let existing = docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                ..Default::default()
            }))
            .await
            .map_err(|e| self.failed("list containers", e))?;
        if count_launched(&existing, &self.cluster) >= self.max_instances as usize {
            return Err(GatewayError::TooManyInstances(self.max_instances));
        }
        let names: Vec<&str> = existing
            .iter()
            .flat_map(|c| c.names.iter().flatten())
            .map(String::as_str)
            .collect();
        let mut index = next_free_index(names, &self.cluster, &self.service);
        for _ in 0..NAME_ATTEMPTS {
            let name = format!("{}-{}-{index}", self.cluster, self.service);
            match docker
                .create_container(
                    Some(CreateContainerOptions {
                        name: Some(name.clone()),
                        ..Default::default()
                    }),
                    self.create_body(
                        model,
                        network,
                        &name,
                        compose_labels(&existing, &self.cluster, index),
                    ),
                )
                .await
            {
                Ok(created) => {
                    return Ok(Launched {
                        id: created.id,
                        name,
                    });
                }
                // Another container took the name meanwhile: try the next number.
                Err(DockerError::DockerResponseServerError {
                    status_code: 409, ..
                }) => index += 1,
                Err(DockerError::DockerResponseServerError {
                    status_code: 404,
                    message,
                }) if message.contains("image") => {
                    return Err(GatewayError::RuntimeUnavailable(format!(
                        "the node image '{}' is not on the Docker Engine; build it (scripts/compose-offline.sh build) or set NODE_IMAGE",
                        self.image
                    )));
                }
                Err(error) => return Err(self.failed("create the node container", error)),
            }
        }
        Err(GatewayError::RuntimeFailed(format!(
            "no free container name after {NAME_ATTEMPTS} attempts"
        )))
    }

    /// Waits until the started container `id` runs and, when it has a health check, is
    /// healthy; fails when it exits, turns unhealthy or the start timeout passes.
    async fn wait_started(&self, docker: &Docker, id: &str) -> Result<(), GatewayError> {
        let deadline = tokio::time::Instant::now() + self.start_timeout;
        loop {
            let state = docker
                .inspect_container(id, None)
                .await
                .map_err(|e| self.failed("inspect the node container", e))?
                .state
                .unwrap_or_default();
            let health = state.health.and_then(|h| h.status);
            match state.status {
                Some(ContainerStateStatusEnum::RUNNING) => match health {
                    Some(HealthStatusEnum::STARTING) => {}
                    Some(HealthStatusEnum::UNHEALTHY) => {
                        return Err(GatewayError::LaunchFailed(
                            "the node container runs but its health check fails (its last log lines are in the gateway's log)".to_string(),
                        ));
                    }
                    // Healthy, or no health check in the image: running is started.
                    _ => return Ok(()),
                },
                Some(
                    ContainerStateStatusEnum::EXITED
                    | ContainerStateStatusEnum::DEAD
                    | ContainerStateStatusEnum::REMOVING,
                ) => {
                    let code = state
                        .exit_code
                        .map_or_else(|| "unknown".to_string(), |c| c.to_string());
                    return Err(GatewayError::LaunchFailed(format!(
                        "the node container exited with code {code} during startup (its last log lines are in the gateway's log)"
                    )));
                }
                _ => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(GatewayError::LaunchFailed(format!(
                    "the node container was not running and healthy within GATEWAY_NODE_START_TIMEOUT ({})",
                    humantime::format_duration(self.start_timeout)
                )));
            }
            tokio::time::sleep(START_POLL).await;
        }
    }

    /// Copies the last log lines of container `id` to the gateway's log.
    async fn log_tail(&self, docker: &Docker, id: &str) {
        let mut lines = docker.logs(
            id,
            Some(LogsOptions {
                stdout: true,
                stderr: true,
                tail: FAILED_LOG_LINES.to_string(),
                ..Default::default()
            }),
        );
        while let Some(Ok(line)) = lines.next().await {
            tracing::warn!(%id, "node container log: {}", line.to_string().trim_end());
        }
    }

    /// Lists this cluster's node containers (any state) whose model label is `model`.
    pub async fn instances(&self, model: &str) -> Result<Vec<Instance>, GatewayError> {
        let docker = self.client().await?;
        let containers = self
            .own_containers(docker, &format!("{MODEL_LABEL}={model}"))
            .await?;
        let mut tags: HashMap<String, Vec<String>> = HashMap::new();
        let mut out = Vec::with_capacity(containers.len());
        for c in containers {
            let image = match c.image_id.as_deref() {
                Some(image_id) => match tags.get(image_id) {
                    Some(known) => known.clone(),
                    None => {
                        let found = docker
                            .inspect_image(image_id)
                            .await
                            .ok()
                            .and_then(|i| i.repo_tags)
                            .filter(|t| !t.is_empty())
                            .unwrap_or_else(|| c.image.iter().cloned().collect());
                        tags.insert(image_id.to_string(), found.clone());
                        found
                    }
                },
                None => c.image.iter().cloned().collect(),
            };
            out.push(Instance {
                id: c.id.clone().unwrap_or_default(),
                name: c
                    .names
                    .as_ref()
                    .and_then(|n| n.first())
                    .map(|n| n.trim_start_matches('/').to_string())
                    .unwrap_or_default(),
                status: c
                    .state
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "unknown".to_string()),
                image,
                host: None,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Stops (SIGTERM, then SIGKILL after the stop timeout) and removes the own container
    /// whose id is or starts with `id`; returns its full id.
    pub async fn stop(&self, id: &str) -> Result<String, GatewayError> {
        let docker = self.client().await?;
        let own = self.own_containers(docker, MODEL_LABEL).await?;
        let full = resolve_prefix(id, own.iter().filter_map(|c| c.id.as_deref()))?.to_string();
        let t = i32::try_from(self.stop_timeout.as_secs()).unwrap_or(i32::MAX);
        match docker
            .stop_container(
                &full,
                Some(StopContainerOptions {
                    t: Some(t),
                    ..Default::default()
                }),
            )
            .await
        {
            Ok(()) => {}
            Err(DockerError::DockerResponseServerError {
                status_code: 404, ..
            }) => return Err(GatewayError::InstanceNotFound(id.to_string())),
            Err(error) => return Err(self.failed("stop the node container", error)),
        }
        match docker
            .remove_container(
                &full,
                Some(RemoveContainerOptions {
                    force: true,
                    ..Default::default()
                }),
            )
            .await
        {
            // 404: gone already; 409: removal already in progress.
            Ok(())
            | Err(DockerError::DockerResponseServerError {
                status_code: 404 | 409,
                ..
            }) => {}
            Err(error) => return Err(self.failed("remove the node container", error)),
        }
        tracing::info!(id = %full, "stopped and removed node container");
        Ok(full)
    }

    /// Lists every container of this cluster (any state) that also matches `label_filter`.
    async fn own_containers(
        &self,
        docker: &Docker,
        label_filter: &str,
    ) -> Result<Vec<ContainerSummary>, GatewayError> {
        let filters = HashMap::from([(
            "label".to_string(),
            vec![
                format!("{CLUSTER_LABEL}={}", self.cluster),
                label_filter.to_string(),
            ],
        )]);
        docker
            .list_containers(Some(ListContainersOptions {
                all: true,
                filters: Some(filters),
                ..Default::default()
            }))
            .await
            .map_err(|e| self.failed("list containers", e))
    }

    /// Returns the network for new nodes: `DOCKER_NETWORK`, else the gateway container's own.
    async fn network(&self, docker: &Docker) -> Result<String, GatewayError> {
        if let Some(network) = &self.network {
            // NOTE: these modes share the host's or another container's network stack.
            if network == "host" || network.starts_with("container:") {
                return Err(GatewayError::RuntimeUnavailable(format!(
                    "DOCKER_NETWORK={network} is not allowed: node containers get their own network stack"
                )));
            }
            return Ok(network.clone());
        }
        self.found_network
            .get_or_try_init(|| async {
                let not_found = |why: &str| {
                    tracing::warn!(why, "cannot find the cluster network");
                    GatewayError::RuntimeUnavailable(
                        "cannot find the cluster's Docker network (the gateway does not run in a container of this Docker Engine); set DOCKER_NETWORK"
                            .to_string(),
                    )
                };
                // Docker sets a container's hostname to its short id.
                let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
                    .map_err(|e| not_found(&e.to_string()))?;
                let me = docker
                    .inspect_container(hostname.trim(), None)
                    .await
                    .map_err(|e| not_found(&e.to_string()))?;
                let networks: Vec<String> = me
                    .network_settings
                    .and_then(|s| s.networks)
                    .map(|n| n.into_keys().collect())
                    .unwrap_or_default();
                pick_network(networks).ok_or_else(|| not_found("the gateway container has no network"))
            })
            .await
            .cloned()
    }

    /// Builds the create request: configured image, labels, env and a locked-down HostConfig.
    fn create_body(
        &self,
        model: &str,
        network: &str,
        name: &str,
        extra_labels: HashMap<String, String>,
    ) -> ContainerCreateBody {
        let mut labels = extra_labels;
        labels.extend(self.labels(model));
        labels.insert(LAUNCHED_LABEL.to_string(), LAUNCHED_BY_GATEWAY.to_string());
        let mut env = vec![
            format!("{}={model}", env::MODEL_NAME),
            format!("{}={}", env::SERVICE_DISCOVERY_URL, self.discovery_url),
            format!("{}={}", env::SERVICE_NAME, self.service),
        ];
        if let Some(token) = &self.consul_token {
            env.push(format!("{}={token}", env::CONSUL_HTTP_TOKEN));
        }
        ContainerCreateBody {
            image: Some(self.image.clone()),
            env: Some(env),
            labels: Some(labels),
            stop_timeout: i64::try_from(self.stop_timeout.as_secs()).ok(),
            host_config: Some(HostConfig {
                network_mode: Some(network.to_string()),
                restart_policy: Some(RestartPolicy {
                    name: Some(RestartPolicyNameEnum::NO),
                    maximum_retry_count: None,
                }),
                privileged: Some(false),
                cap_drop: Some(vec!["ALL".to_string()]),
                security_opt: Some(vec!["no-new-privileges:true".to_string()]),
                memory: Some(self.memory_bytes),
                memory_swap: Some(self.memory_bytes),
                pids_limit: Some(self.pids_limit),
                ..Default::default()
            }),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(
                    network.to_string(),
                    EndpointSettings {
                        // The engine refuses aliases on its default networks.
                        aliases: (!is_default_network(network)).then(|| vec![name.to_string()]),
                        ..Default::default()
                    },
                )])),
            }),
            ..Default::default()
        }
    }

    /// Maps an engine error: unreachable → 503, anything else → 500 (detail logged only).
    fn failed(&self, what: &str, error: DockerError) -> GatewayError {
        engine_error(&self.host, what, error)
    }
}

/// Maps an error of the engine at `host` while doing `what`: unreachable → 503, anything else
/// → 500 (detail logged only).
pub(crate) fn engine_error(host: &str, what: &str, error: DockerError) -> GatewayError {
    match error {
        DockerError::DockerResponseServerError {
            status_code,
            message,
        } => GatewayError::RuntimeFailed(format!(
            "cannot {what}: Docker answered {status_code}: {message}"
        )),
        other => unavailable(host, &format!("cannot {what}: {other}")),
    }
}

/// The 503 for an engine that does not answer (the cause goes to the log only).
fn unavailable(host: &str, cause: &str) -> GatewayError {
    tracing::warn!(%host, cause, "Docker Engine unreachable");
    GatewayError::RuntimeUnavailable(
        "the Docker Engine is not reachable, so instances cannot be launched, listed or stopped; the rest of the gateway keeps working"
            .to_string(),
    )
}

/// Compose's labels for a launched node numbered `number`, copied from a compose-started
/// replica of `cluster` among `containers`; empty when there is none.
fn compose_labels(
    containers: &[ContainerSummary],
    cluster: &str,
    number: u32,
) -> HashMap<String, String> {
    let replica = containers
        .iter()
        .filter_map(|c| c.labels.as_ref())
        .find(|labels| {
            labels.get(CLUSTER_LABEL).map(String::as_str) == Some(cluster)
                && labels.contains_key(MODEL_LABEL)
                && labels.contains_key(COMPOSE_SERVICE_LABEL)
                && labels.get(COMPOSE_ONEOFF_LABEL).map(String::as_str) != Some("True")
        });
    let Some(replica) = replica else {
        return HashMap::new();
    };
    let mut labels: HashMap<String, String> = replica
        .iter()
        .filter(|(key, _)| key.starts_with(COMPOSE_LABEL_PREFIX))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    labels.insert(COMPOSE_ONEOFF_LABEL.to_string(), "False".to_string());
    labels.insert(COMPOSE_NUMBER_LABEL.to_string(), number.to_string());
    labels
}

/// Counts the containers among `containers` that the gateway launched for `cluster` and that
/// hold resources or soon will: any state but exited, dead or being removed.
fn count_launched(containers: &[ContainerSummary], cluster: &str) -> usize {
    containers
        .iter()
        .filter(|c| {
            let labels = c.labels.as_ref();
            let label = |key: &str| labels.and_then(|l| l.get(key)).map(String::as_str);
            label(CLUSTER_LABEL) == Some(cluster)
                && label(LAUNCHED_LABEL) == Some(LAUNCHED_BY_GATEWAY)
                && !matches!(
                    c.state,
                    Some(
                        ContainerSummaryStateEnum::EXITED
                            | ContainerSummaryStateEnum::DEAD
                            | ContainerSummaryStateEnum::REMOVING
                    )
                )
        })
        .count()
}

/// Returns whether `network` is one of the engine's predefined networks.
fn is_default_network(network: &str) -> bool {
    matches!(network, "bridge" | "default" | "none")
}

/// Picks the cluster network among the gateway container's networks: the only one, else a
/// compose `*_compute-network`, else the first by name.
fn pick_network(mut networks: Vec<String>) -> Option<String> {
    networks.sort();
    if let Some(compose) = networks.iter().find(|n| n.ends_with("compute-network")) {
        return Some(compose.clone());
    }
    networks.into_iter().next()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::settings::testing::{labels, settings};

    fn runtime(args: &[&str]) -> DockerRuntime {
        let registration = NodeRegistration {
            consul_url: "http://127.0.0.1:8500".to_string(),
            service: "gdp-growth-model".to_string(),
            consul_token: None,
        };
        DockerRuntime::new(&settings(args), &registration)
    }

    #[test]
    fn create_body_is_locked_down() {
        let rt = runtime(&["--cluster-name", "c1", "--node-image", "img:1"]);
        let body = rt.create_body(
            "Lasso",
            "c1_compute-network",
            "c1-gdp-growth-model-3",
            HashMap::new(),
        );
        assert_eq!(body.image.as_deref(), Some("img:1"));
        let labels = body.labels.unwrap();
        assert_eq!(labels[CLUSTER_LABEL], "c1");
        assert_eq!(labels[MODEL_LABEL], "Lasso");
        assert_eq!(labels[ROLE_LABEL], NODE_ROLE);
        assert!(
            body.env
                .unwrap()
                .contains(&"GDP_MODEL_NAME=Lasso".to_string())
        );
        let host = body.host_config.unwrap();
        assert_eq!(host.network_mode.as_deref(), Some("c1_compute-network"));
        assert_eq!(host.privileged, Some(false));
        assert!(host.binds.is_none() && host.mounts.is_none() && host.cap_add.is_none());
        assert!(host.pid_mode.is_none() && host.devices.is_none());
        assert_eq!(host.cap_drop, Some(vec!["ALL".to_string()]));
        assert!(host.memory.unwrap() > 0 && host.pids_limit.unwrap() > 0);
        assert_eq!(
            host.restart_policy.unwrap().name,
            Some(RestartPolicyNameEnum::NO)
        );
    }

    fn summary(pairs: &[(&str, &str)]) -> ContainerSummary {
        ContainerSummary {
            labels: Some(labels(pairs)),
            ..Default::default()
        }
    }

    #[test]
    fn compose_labels_come_from_a_replica_of_the_same_cluster() {
        let replica = summary(&[
            (CLUSTER_LABEL, "c1"),
            (MODEL_LABEL, "LinearRegression"),
            ("com.docker.compose.project", "c1"),
            (COMPOSE_SERVICE_LABEL, "gdp-growth-model"),
            ("com.docker.compose.version", "1.29.2"),
            ("com.docker.compose.config-hash", "abc"),
            (COMPOSE_NUMBER_LABEL, "1"),
            (COMPOSE_ONEOFF_LABEL, "False"),
        ]);
        let other_cluster = summary(&[
            (CLUSTER_LABEL, "c2"),
            (MODEL_LABEL, "LinearRegression"),
            (COMPOSE_SERVICE_LABEL, "gdp-growth-model"),
        ]);
        let consul = summary(&[
            ("com.docker.compose.project", "c1"),
            (COMPOSE_SERVICE_LABEL, "x"),
        ]);

        let labels = compose_labels(&[consul.clone(), other_cluster.clone(), replica], "c1", 3);
        assert_eq!(labels["com.docker.compose.project"], "c1");
        assert_eq!(labels[COMPOSE_SERVICE_LABEL], "gdp-growth-model");
        assert_eq!(labels["com.docker.compose.config-hash"], "abc");
        assert_eq!(labels[COMPOSE_NUMBER_LABEL], "3");
        assert_eq!(labels[COMPOSE_ONEOFF_LABEL], "False");
        assert!(!labels.contains_key(CLUSTER_LABEL));

        assert!(compose_labels(&[consul, other_cluster], "c1", 3).is_empty());
    }

    #[test]
    fn only_live_containers_the_gateway_launched_count() {
        let with_state = |labels: &[(&str, &str)], state| ContainerSummary {
            state: Some(state),
            ..summary(labels)
        };
        let launched = [
            (CLUSTER_LABEL, "c1"),
            (MODEL_LABEL, "Lasso"),
            (LAUNCHED_LABEL, LAUNCHED_BY_GATEWAY),
        ];
        let replica = [(CLUSTER_LABEL, "c1"), (MODEL_LABEL, "Lasso")];
        let other_cluster = [
            (CLUSTER_LABEL, "c2"),
            (MODEL_LABEL, "Lasso"),
            (LAUNCHED_LABEL, LAUNCHED_BY_GATEWAY),
        ];
        let containers = [
            with_state(&launched, ContainerSummaryStateEnum::RUNNING),
            with_state(&launched, ContainerSummaryStateEnum::CREATED),
            with_state(&launched, ContainerSummaryStateEnum::RESTARTING),
            with_state(&launched, ContainerSummaryStateEnum::EXITED),
            with_state(&launched, ContainerSummaryStateEnum::DEAD),
            with_state(&launched, ContainerSummaryStateEnum::REMOVING),
            with_state(&replica, ContainerSummaryStateEnum::RUNNING),
            with_state(&other_cluster, ContainerSummaryStateEnum::RUNNING),
        ];
        assert_eq!(count_launched(&containers, "c1"), 3);
        assert_eq!(count_launched(&containers, "c2"), 1);
        assert_eq!(count_launched(&[], "c1"), 0);
    }

    #[test]
    fn launched_containers_carry_the_launched_label() {
        let rt = runtime(&["--cluster-name", "c1"]);
        let body = rt.create_body("Lasso", "net", "c1-gdp-growth-model-2", HashMap::new());
        let labels = body.labels.unwrap();
        assert_eq!(labels[LAUNCHED_LABEL], LAUNCHED_BY_GATEWAY);
        assert!(!rt.labels("Lasso").contains_key(LAUNCHED_LABEL));
    }

    #[test]
    fn cluster_labels_override_copied_ones() {
        let rt = runtime(&["--cluster-name", "c1"]);
        let copied = HashMap::from([(MODEL_LABEL.to_string(), "Other".to_string())]);
        let body = rt.create_body("Lasso", "net", "c1-gdp-growth-model-2", copied);
        assert_eq!(body.labels.unwrap()[MODEL_LABEL], "Lasso");
    }

    #[test]
    fn network_choice_prefers_compose() {
        let nets = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(pick_network(nets(&["x"])).as_deref(), Some("x"));
        assert_eq!(
            pick_network(nets(&["bridge", "microservices_compute-network"])).as_deref(),
            Some("microservices_compute-network")
        );
        assert_eq!(pick_network(nets(&["b", "a"])).as_deref(), Some("a"));
        assert_eq!(pick_network(vec![]), None);
    }
}

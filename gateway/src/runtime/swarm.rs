//! The Swarm runtime (`RUNTIME=swarm`): inference nodes as Docker Swarm services, through the
//! Engine API of a swarm manager (bollard's services, tasks and nodes API).
//!
//! A launch creates a replicated service of one replica named `<cluster>-<service>-<n>` from
//! `NODE_IMAGE` on `DOCKER_NETWORK` (the stack's attachable overlay network; required), with
//! `dnsrr` endpoints (the gateway balances itself, and kernels without IPVS cannot do Swarm's
//! virtual IPs), restart policy `any`, memory and pids limits, all capabilities dropped and no
//! mounts. Swarm places it, restarts it and moves it off a failed host. The node registers in
//! Consul the address it has on that network: the gateway passes the network's subnet as
//! `ADVERTISE_NETWORK` (a container hostname would resolve on its own host only).
//!
//! An instance is a Swarm task; its id is the task id (25 characters, `[0-9a-z]`), its name
//! `<service>.<slot>` (as Docker names the task's container), and the listing says which host
//! (swarm node) it runs on. When Swarm replaces a task (restart, host lost) the instance gets a
//! new id.
//!
//! Ownership, as in the Docker runtime: only services labelled `gdp-serving.cluster=<cluster>`
//! that also carry a `gdp-serving.model` label are listed or touched; tasks of any other
//! service are a 404 even when the id exists. `DELETE` removes the service of an instance the
//! gateway launched (label `gdp-serving.launched-by=gateway`); an instance of the stack's own
//! node service is a replica of the operator's declared scale, so deleting it is a 409 that
//! says to scale that service instead (Swarm would start a replacement anyway).
//!
//! At most `GATEWAY_MAX_INSTANCES` launched services exist at once (counted and created under
//! one lock). A launch answers once its task runs (for an image with a health check Swarm
//! reports `running` only once it is healthy), within `GATEWAY_NODE_START_TIMEOUT`; a task that
//! fails or runs out of time gets its service removed and the launch is a 502.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use bollard::errors::Error as DockerError;
use bollard::models::{
    EndpointSpec, EndpointSpecModeEnum, Limit, NetworkAttachmentConfig, NetworkInspect, Node,
    Service, ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated, Task, TaskSpec,
    TaskSpecContainerSpec, TaskSpecResources, TaskSpecRestartPolicy,
    TaskSpecRestartPolicyConditionEnum, TaskState,
};
use bollard::query_parameters::{ListNodesOptions, ListServicesOptions, ListTasksOptions};
use node_contract::env;
use tokio::sync::{Mutex, OnceCell};

use crate::error::GatewayError;
use crate::runtime::docker::{
    CLUSTER_LABEL, DockerRuntime, LAUNCHED_BY_GATEWAY, LAUNCHED_LABEL, MODEL_LABEL, engine_error,
};
use crate::runtime::settings::{NodeRegistration, RuntimeSettings};
use crate::runtime::{Instance, Launched, next_free_index, resolve_prefix};

/// Attempts at a free service name when another service takes the chosen one meanwhile.
const NAME_ATTEMPTS: u32 = 5;
/// Pause between two looks at a starting service's tasks.
const START_POLL: Duration = Duration::from_millis(500);
/// Pause Swarm keeps between restarts of a launched node's task.
const RESTART_DELAY: Duration = Duration::from_secs(2);

/// Launches, lists and removes node services of one cluster on a swarm.
pub struct SwarmRuntime {
    engine: Arc<DockerRuntime>,
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
    subnet: OnceCell<String>,
}

// === impl SwarmRuntime ===

impl SwarmRuntime {
    /// Takes its settings, the registration its nodes get and the engine connection (shared
    /// with the Docker runtime); nothing is contacted yet.
    pub fn new(
        settings: &RuntimeSettings,
        registration: &NodeRegistration,
        engine: Arc<DockerRuntime>,
    ) -> SwarmRuntime {
        SwarmRuntime {
            engine,
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
            subnet: OnceCell::new(),
        }
    }

    /// Creates a one-replica node service for `model`; returns its task once it runs.
    pub async fn launch(&self, model: &str) -> Result<Launched, GatewayError> {
        let docker = self.engine.client().await?;
        let network = self.network()?;
        let subnet = self.subnet(docker, network).await?;
        let (service_id, name) = {
            let _one_at_a_time = self.launching.lock().await;
            self.create(docker, model, network, &subnet).await?
        };
        match self.wait_running(docker, &service_id, &name).await {
            Ok(launched) => {
                tracing::info!(id = %launched.id, service = %name, %model, %network, "launched node service");
                Ok(launched)
            }
            Err(error) => {
                tracing::warn!(service = %name, %error, "node service did not start; removing it");
                if let Err(error) = docker.delete_service(&service_id).await {
                    tracing::error!(service = %name, %error, "cannot remove the node service that did not start");
                }
                Err(error)
            }
        }
    }

    /// Creates the service under a free name unless the limit is reached; returns its id and
    /// name. Call it under the `launching` lock.
    async fn create(
        &self,
        docker: &Docker,
        model: &str,
        network: &str,
        subnet: &str,
    ) -> Result<(String, String), GatewayError> {
        let services = docker
            .list_services(None::<ListServicesOptions>)
            .await
            .map_err(|e| self.failed("list services", e))?;
        if count_launched(&services, &self.cluster) >= self.max_instances as usize {
            return Err(GatewayError::TooManyInstances(self.max_instances));
        }
        let names: Vec<&str> = services.iter().filter_map(service_name).collect();
        let mut index = next_free_index(names, &self.cluster, &self.service);
        for _ in 0..NAME_ATTEMPTS {
            let name = format!("{}-{}-{index}", self.cluster, self.service);
            let spec = self.service_spec(model, network, subnet, &name);
            match docker.create_service(spec, None).await {
                Ok(created) => return Ok((created.id.unwrap_or_else(|| name.clone()), name)),
                // Another service took the name meanwhile: try the next number.
                Err(DockerError::DockerResponseServerError {
                    status_code: 409, ..
                }) => index += 1,
                Err(error) => return Err(self.failed("create the node service", error)),
            }
        }
        Err(GatewayError::RuntimeFailed(format!(
            "no free service name after {NAME_ATTEMPTS} attempts"
        )))
    }

    /// Waits until a task of service `id` runs; fails when one fails or is rejected, or the
    /// start timeout passes.
    async fn wait_running(
        &self,
        docker: &Docker,
        id: &str,
        name: &str,
    ) -> Result<Launched, GatewayError> {
        let deadline = tokio::time::Instant::now() + self.start_timeout;
        loop {
            let tasks = docker
                .list_tasks(Some(ListTasksOptions {
                    filters: Some(HashMap::from([(
                        "service".to_string(),
                        vec![id.to_string()],
                    )])),
                }))
                .await
                .map_err(|e| self.failed("list the node service's tasks", e))?;
            for task in &tasks {
                let status = task.status.clone().unwrap_or_default();
                match status.state {
                    Some(TaskState::RUNNING) => {
                        return Ok(Launched {
                            id: task.id.clone().unwrap_or_default(),
                            name: task_name(name, task),
                        });
                    }
                    Some(TaskState::FAILED | TaskState::REJECTED) => {
                        let why = status.err.or(status.message).unwrap_or_default();
                        return Err(GatewayError::LaunchFailed(format!(
                            "the node's Swarm task failed: {why}"
                        )));
                    }
                    _ => {}
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(GatewayError::LaunchFailed(format!(
                    "the node's Swarm task was not running (and healthy) within GATEWAY_NODE_START_TIMEOUT ({})",
                    humantime::format_duration(self.start_timeout)
                )));
            }
            tokio::time::sleep(START_POLL).await;
        }
    }

    /// Lists the tasks meant to run of this cluster's node services whose model is `model`,
    /// with the host each runs on.
    pub async fn instances(&self, model: &str) -> Result<Vec<Instance>, GatewayError> {
        let docker = self.engine.client().await?;
        let services = self.own_services(docker).await?;
        let services: Vec<Service> = services
            .into_iter()
            .filter(|s| label(s, MODEL_LABEL) == Some(model))
            .collect();
        let tasks = self.running_tasks(docker).await?;
        let nodes = docker
            .list_nodes(None::<ListNodesOptions>)
            .await
            .map_err(|e| self.failed("list swarm nodes", e))?;
        Ok(instances_of(&services, &tasks, &nodes))
    }

    /// Removes the instance whose task id is or starts with `id`: the service of a launched
    /// node; a replica of the stack's node service is a 409 (see the module docs).
    pub async fn stop(&self, id: &str) -> Result<String, GatewayError> {
        let docker = self.engine.client().await?;
        let services = self.own_services(docker).await?;
        let tasks = self.running_tasks(docker).await?;
        let (task, service) = find_instance(&services, &tasks, id)?;
        let full = task.id.clone().unwrap_or_default();
        let service_id = removable(service)?;
        match docker.delete_service(service_id).await {
            // 404: removed meanwhile.
            Ok(())
            | Err(DockerError::DockerResponseServerError {
                status_code: 404, ..
            }) => {}
            Err(error) => return Err(self.failed("remove the node service", error)),
        }
        tracing::info!(id = %full, service = service_name(service).unwrap_or_default(), "removed node service");
        Ok(full)
    }

    /// Lists this cluster's node services (cluster label and a model label).
    async fn own_services(&self, docker: &Docker) -> Result<Vec<Service>, GatewayError> {
        let filters = HashMap::from([(
            "label".to_string(),
            vec![
                format!("{CLUSTER_LABEL}={}", self.cluster),
                MODEL_LABEL.to_string(),
            ],
        )]);
        let services = docker
            .list_services(Some(ListServicesOptions {
                filters: Some(filters),
                ..Default::default()
            }))
            .await
            .map_err(|e| self.failed("list services", e))?;
        // NOTE: checked again here; the engine's filter is the first line, not the only one.
        Ok(services
            .into_iter()
            .filter(|s| is_own(s, &self.cluster))
            .collect())
    }

    /// Lists every task of the swarm that is meant to run.
    async fn running_tasks(&self, docker: &Docker) -> Result<Vec<Task>, GatewayError> {
        docker
            .list_tasks(Some(ListTasksOptions {
                filters: Some(HashMap::from([(
                    "desired-state".to_string(),
                    vec!["running".to_string()],
                )])),
            }))
            .await
            .map_err(|e| self.failed("list tasks", e))
    }

    /// Returns `DOCKER_NETWORK`, which the Swarm runtime requires.
    fn network(&self) -> Result<&str, GatewayError> {
        match self.network.as_deref() {
            None => Err(GatewayError::RuntimeUnavailable(
                "RUNTIME=swarm needs DOCKER_NETWORK: the stack's attachable overlay network"
                    .to_string(),
            )),
            Some(network) if network == "host" || network.starts_with("container:") => {
                Err(GatewayError::RuntimeUnavailable(format!(
                    "DOCKER_NETWORK={network} is not allowed: node services get their own network stack"
                )))
            }
            Some(network) => Ok(network),
        }
    }

    /// Returns the IPv4 subnet of `network` (what launched nodes get as `ADVERTISE_NETWORK`).
    async fn subnet(&self, docker: &Docker, network: &str) -> Result<String, GatewayError> {
        self.subnet
            .get_or_try_init(|| async {
                let inspected = docker
                    .inspect_network(network, None)
                    .await
                    .map_err(|e| self.failed("inspect the node network", e))?;
                ipv4_subnet(&inspected).ok_or_else(|| {
                    GatewayError::RuntimeUnavailable(format!(
                        "the network '{network}' (DOCKER_NETWORK) has no IPv4 subnet for nodes to advertise"
                    ))
                })
            })
            .await
            .cloned()
    }

    /// Builds the service: configured image, labels, env, limits, dnsrr, restart policy.
    fn service_spec(&self, model: &str, network: &str, subnet: &str, name: &str) -> ServiceSpec {
        let mut labels = self.engine.labels(model);
        labels.insert(LAUNCHED_LABEL.to_string(), LAUNCHED_BY_GATEWAY.to_string());
        let mut env = vec![
            format!("{}={model}", env::MODEL_NAME),
            format!("{}={}", env::SERVICE_DISCOVERY_URL, self.discovery_url),
            format!("{}={}", env::SERVICE_NAME, self.service),
            format!("{}={subnet}", env::ADVERTISE_NETWORK),
        ];
        if let Some(token) = &self.consul_token {
            env.push(format!("{}={token}", env::CONSUL_HTTP_TOKEN));
        }
        let nanos = |d: Duration| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
        ServiceSpec {
            name: Some(name.to_string()),
            labels: Some(labels.clone()),
            mode: Some(ServiceSpecMode {
                replicated: Some(ServiceSpecModeReplicated { replicas: Some(1) }),
                ..Default::default()
            }),
            task_template: Some(TaskSpec {
                container_spec: Some(TaskSpecContainerSpec {
                    image: Some(self.image.clone()),
                    labels: Some(labels),
                    env: Some(env),
                    capability_drop: Some(vec!["ALL".to_string()]),
                    stop_grace_period: Some(nanos(self.stop_timeout)),
                    ..Default::default()
                }),
                resources: Some(TaskSpecResources {
                    limits: Some(Limit {
                        memory_bytes: Some(self.memory_bytes),
                        pids: Some(self.pids_limit),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                restart_policy: Some(TaskSpecRestartPolicy {
                    condition: Some(TaskSpecRestartPolicyConditionEnum::ANY),
                    delay: Some(nanos(RESTART_DELAY)),
                    ..Default::default()
                }),
                networks: Some(vec![NetworkAttachmentConfig {
                    target: Some(network.to_string()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            endpoint_spec: Some(EndpointSpec {
                mode: Some(EndpointSpecModeEnum::DNSRR),
                ports: None,
            }),
            ..Default::default()
        }
    }

    fn failed(&self, what: &str, error: DockerError) -> GatewayError {
        engine_error(self.engine.host(), what, error)
    }
}

/// Returns a service's label `key`.
fn label<'a>(service: &'a Service, key: &str) -> Option<&'a str> {
    service
        .spec
        .as_ref()
        .and_then(|s| s.labels.as_ref())
        .and_then(|l| l.get(key))
        .map(String::as_str)
}

/// Returns a service's name.
fn service_name(service: &Service) -> Option<&str> {
    service.spec.as_ref().and_then(|s| s.name.as_deref())
}

/// Returns whether `service` is a node service of `cluster` (its cluster and a model label).
fn is_own(service: &Service, cluster: &str) -> bool {
    label(service, CLUSTER_LABEL) == Some(cluster) && label(service, MODEL_LABEL).is_some()
}

/// Counts the services among `services` that the gateway launched for `cluster`.
fn count_launched(services: &[Service], cluster: &str) -> usize {
    services
        .iter()
        .filter(|s| is_own(s, cluster) && label(s, LAUNCHED_LABEL) == Some(LAUNCHED_BY_GATEWAY))
        .count()
}

/// Returns the instance name of `task` of the service named `service`: `<service>.<slot>`.
fn task_name(service: &str, task: &Task) -> String {
    match task.slot {
        Some(slot) => format!("{service}.{slot}"),
        None => format!("{service}.{}", task.node_id.as_deref().unwrap_or("?")),
    }
}

/// Finds the task among `tasks` whose id is or starts with `id` and that belongs to one of
/// `services` (own services only: any other task is not found).
fn find_instance<'a>(
    services: &'a [Service],
    tasks: &'a [Task],
    id: &str,
) -> Result<(&'a Task, &'a Service), GatewayError> {
    let by_id: HashMap<&str, &Service> = services
        .iter()
        .filter_map(|s| Some((s.id.as_deref()?, s)))
        .collect();
    let own: Vec<(&Task, &Service)> = tasks
        .iter()
        .filter_map(|t| Some((t, *by_id.get(t.service_id.as_deref()?)?)))
        .collect();
    let full = resolve_prefix(id, own.iter().filter_map(|(t, _)| t.id.as_deref()))?;
    own.into_iter()
        .find(|(t, _)| t.id.as_deref() == Some(full))
        .ok_or_else(|| GatewayError::InstanceNotFound(id.to_string()))
}

/// Returns the id of the service to remove for an instance of `service`: only services the
/// gateway launched are removed; the stack's own node service is scaled instead (409).
fn removable(service: &Service) -> Result<&str, GatewayError> {
    let name = service_name(service).unwrap_or("?");
    if label(service, LAUNCHED_LABEL) == Some(LAUNCHED_BY_GATEWAY) {
        return service
            .id
            .as_deref()
            .ok_or_else(|| GatewayError::RuntimeFailed(format!("service {name} has no id")));
    }
    let replicas = service
        .spec
        .as_ref()
        .and_then(|s| s.mode.as_ref())
        .and_then(|m| m.replicated.as_ref())
        .and_then(|r| r.replicas);
    let scale = match replicas {
        Some(n) => format!(
            " ({n} replicas); scale that service instead: docker service scale {name}={}",
            n.saturating_sub(1)
        ),
        None => "; scale that service instead (docker service scale)".to_string(),
    };
    Err(GatewayError::InstanceNotRemovable(format!(
        "this instance is a replica of the stack's service '{name}'{scale}; Swarm would replace a removed replica"
    )))
}

/// Lists the tasks of `services` among `tasks` as instances, with their host's name from
/// `nodes`, sorted by name.
fn instances_of(services: &[Service], tasks: &[Task], nodes: &[Node]) -> Vec<Instance> {
    let hosts: HashMap<&str, &str> = nodes
        .iter()
        .filter_map(|n| {
            let hostname = n.description.as_ref()?.hostname.as_deref()?;
            Some((n.id.as_deref()?, hostname))
        })
        .collect();
    let by_id: HashMap<&str, &Service> = services
        .iter()
        .filter_map(|s| Some((s.id.as_deref()?, s)))
        .collect();
    let mut seen = HashSet::new();
    let mut out: Vec<Instance> = tasks
        .iter()
        .filter(|t| t.desired_state == Some(TaskState::RUNNING))
        .filter_map(|t| {
            let service = by_id.get(t.service_id.as_deref()?)?;
            let id = t.id.clone()?;
            seen.insert(id.clone()).then_some(())?;
            let image = t
                .spec
                .as_ref()
                .and_then(|s| s.container_spec.as_ref())
                .and_then(|c| c.image.as_deref())
                // Swarm pins the image by digest when a registry knows it.
                .map(|i| i.split('@').next().unwrap_or(i).to_string());
            Some(Instance {
                id,
                name: task_name(service_name(service).unwrap_or("?"), t),
                status: t
                    .status
                    .as_ref()
                    .and_then(|s| s.state)
                    .map_or_else(|| "unknown".to_string(), |s| s.to_string()),
                image: image.into_iter().collect(),
                host: t
                    .node_id
                    .as_deref()
                    .map(|n| hosts.get(n).copied().unwrap_or(n).to_string()),
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Returns the first IPv4 subnet of `network`'s IPAM configuration.
fn ipv4_subnet(network: &NetworkInspect) -> Option<String> {
    network
        .ipam
        .as_ref()?
        .config
        .as_ref()?
        .iter()
        .filter_map(|c| c.subnet.clone())
        .find(|s| !s.contains(':'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::docker::{NODE_ROLE, ROLE_LABEL};
    use crate::runtime::settings::testing::{labels, settings};
    use bollard::models::{Ipam, IpamConfig, NodeDescription, TaskStatus};

    fn runtime(args: &[&str]) -> SwarmRuntime {
        let registration = NodeRegistration {
            consul_url: "http://consul:8500".to_string(),
            service: "gdp-growth-model".to_string(),
            consul_token: Some("t0k".to_string()),
        };
        let settings = settings(args);
        let engine = Arc::new(DockerRuntime::new(&settings, &registration));
        SwarmRuntime::new(&settings, &registration, engine)
    }

    fn service(id: &str, name: &str, pairs: &[(&str, &str)], replicas: i64) -> Service {
        Service {
            id: Some(id.to_string()),
            spec: Some(ServiceSpec {
                name: Some(name.to_string()),
                labels: Some(labels(pairs)),
                mode: Some(ServiceSpecMode {
                    replicated: Some(ServiceSpecModeReplicated {
                        replicas: Some(replicas),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn task(id: &str, service: &str, slot: i64, node: &str, state: TaskState) -> Task {
        Task {
            id: Some(id.to_string()),
            service_id: Some(service.to_string()),
            slot: Some(slot),
            node_id: Some(node.to_string()),
            desired_state: Some(TaskState::RUNNING),
            status: Some(TaskStatus {
                state: Some(state),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    const LAUNCHED: [(&str, &str); 3] = [
        (CLUSTER_LABEL, "c1"),
        (MODEL_LABEL, "Lasso"),
        (LAUNCHED_LABEL, LAUNCHED_BY_GATEWAY),
    ];
    const STACK: [(&str, &str); 2] = [(CLUSTER_LABEL, "c1"), (MODEL_LABEL, "LinearRegression")];

    #[test]
    fn service_spec_is_locked_down_and_labelled() {
        let rt = runtime(&["--cluster-name", "c1", "--node-image", "img:1"]);
        let spec = rt.service_spec("Lasso", "c1_net", "10.20.0.0/24", "c1-gdp-growth-model-2");
        assert_eq!(spec.name.as_deref(), Some("c1-gdp-growth-model-2"));
        let labels = spec.labels.unwrap();
        assert_eq!(labels[CLUSTER_LABEL], "c1");
        assert_eq!(labels[MODEL_LABEL], "Lasso");
        assert_eq!(labels[ROLE_LABEL], NODE_ROLE);
        assert_eq!(labels[LAUNCHED_LABEL], LAUNCHED_BY_GATEWAY);
        assert_eq!(
            spec.mode.unwrap().replicated.unwrap().replicas,
            Some(1),
            "one replica per launched instance"
        );
        assert_eq!(
            spec.endpoint_spec.unwrap().mode,
            Some(EndpointSpecModeEnum::DNSRR)
        );
        let task = spec.task_template.unwrap();
        let container = task.container_spec.unwrap();
        assert_eq!(container.image.as_deref(), Some("img:1"));
        assert_eq!(container.labels.unwrap()[CLUSTER_LABEL], "c1");
        let env = container.env.unwrap();
        for want in [
            "GDP_MODEL_NAME=Lasso",
            "ADVERTISE_NETWORK=10.20.0.0/24",
            "SERVICE_DISCOVERY_URL=http://consul:8500",
            "SERVICE_NAME=gdp-growth-model",
            "CONSUL_HTTP_TOKEN=t0k",
        ] {
            assert!(env.contains(&want.to_string()), "{want} in {env:?}");
        }
        assert_eq!(container.capability_drop, Some(vec!["ALL".to_string()]));
        assert!(container.mounts.is_none() && container.capability_add.is_none());
        assert!(container.privileges.is_none());
        let limits = task.resources.unwrap().limits.unwrap();
        assert!(limits.memory_bytes.unwrap() > 0 && limits.pids.unwrap() > 0);
        assert_eq!(
            task.restart_policy.unwrap().condition,
            Some(TaskSpecRestartPolicyConditionEnum::ANY)
        );
        assert_eq!(task.networks.unwrap()[0].target.as_deref(), Some("c1_net"));
    }

    #[test]
    fn only_labelled_node_services_of_the_cluster_are_own() {
        let stack = service("s1", "c1_gdp-growth-model", &STACK, 2);
        let launched = service("s2", "c1-gdp-growth-model-1", &LAUNCHED, 1);
        let other_cluster = service("s3", "x", &[(CLUSTER_LABEL, "c2"), (MODEL_LABEL, "M")], 1);
        let gateway = service("s4", "c1_gateway", &[(CLUSTER_LABEL, "c1")], 1);
        let foreign = service("s5", "nginx", &[], 1);
        assert!(is_own(&stack, "c1") && is_own(&launched, "c1"));
        assert!(!is_own(&other_cluster, "c1") && !is_own(&gateway, "c1"));
        assert!(!is_own(&foreign, "c1"));
        let all = [stack, launched, other_cluster, gateway, foreign];
        assert_eq!(count_launched(&all, "c1"), 1);
        assert_eq!(count_launched(&all, "c2"), 0);
    }

    #[test]
    fn a_foreign_task_is_not_found_even_when_its_id_exists() {
        let own = [service("s1", "c1_gdp-growth-model", &STACK, 2)];
        let tasks = [
            task(
                "aaaa1111bbbb2222cccc3333d",
                "s1",
                1,
                "n1",
                TaskState::RUNNING,
            ),
            task(
                "zzzz9999yyyy8888xxxx7777w",
                "foreign",
                1,
                "n1",
                TaskState::RUNNING,
            ),
        ];
        let err = find_instance(&own, &tasks, "zzzz9999yyyy8888xxxx7777w").unwrap_err();
        assert_eq!(err.status().as_u16(), 404);
        let err = find_instance(&own, &tasks, "zzzz").unwrap_err();
        assert_eq!(err.status().as_u16(), 404);
        let (found, service) = find_instance(&own, &tasks, "aaaa").unwrap();
        assert_eq!(found.id.as_deref(), Some("aaaa1111bbbb2222cccc3333d"));
        assert_eq!(service.id.as_deref(), Some("s1"));
    }

    #[test]
    fn launched_services_are_removed_stack_replicas_are_scaled() {
        let launched = service("s2", "c1-gdp-growth-model-1", &LAUNCHED, 1);
        assert_eq!(removable(&launched).unwrap(), "s2");
        let stack = service("s1", "c1_gdp-growth-model", &STACK, 3);
        let err = removable(&stack).unwrap_err();
        assert_eq!(err.status().as_u16(), 409);
        assert!(
            err.to_string()
                .contains("docker service scale c1_gdp-growth-model=2"),
            "{err}"
        );
        // A one-replica stack service is still the operator's, not the API's.
        let single = service("s3", "c1_other", &STACK, 1);
        assert_eq!(removable(&single).unwrap_err().status().as_u16(), 409);
    }

    #[test]
    fn instances_list_own_tasks_with_their_host() {
        let services = [
            service("s1", "c1_gdp-growth-model", &STACK, 2),
            service("s2", "c1-gdp-growth-model-1", &LAUNCHED, 1),
        ];
        let mut shut_down = task("t4", "s1", 1, "n1", TaskState::SHUTDOWN);
        shut_down.desired_state = Some(TaskState::SHUTDOWN);
        let tasks = [
            task("t1", "s1", 1, "n1", TaskState::RUNNING),
            task("t2", "s1", 2, "n2", TaskState::STARTING),
            task("t3", "s2", 1, "n2", TaskState::RUNNING),
            task("t5", "foreign", 1, "n1", TaskState::RUNNING),
            shut_down,
        ];
        let node = |id: &str, host: &str| Node {
            id: Some(id.to_string()),
            description: Some(NodeDescription {
                hostname: Some(host.to_string()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let nodes = [node("n1", "manager"), node("n2", "gdp-lab-w1")];
        let listed = instances_of(&services, &tasks, &nodes);
        let summary: Vec<(&str, &str, &str, Option<&str>)> = listed
            .iter()
            .map(|i| {
                (
                    i.id.as_str(),
                    i.name.as_str(),
                    i.status.as_str(),
                    i.host.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (
                    "t3",
                    "c1-gdp-growth-model-1.1",
                    "running",
                    Some("gdp-lab-w1")
                ),
                ("t1", "c1_gdp-growth-model.1", "running", Some("manager")),
                (
                    "t2",
                    "c1_gdp-growth-model.2",
                    "starting",
                    Some("gdp-lab-w1")
                ),
            ]
        );
    }

    #[test]
    fn the_node_network_is_required_and_never_the_host() {
        assert_eq!(runtime(&[]).network().unwrap_err().status().as_u16(), 503);
        assert_eq!(
            runtime(&["--docker-network", "host"])
                .network()
                .unwrap_err()
                .status()
                .as_u16(),
            503
        );
        assert_eq!(
            runtime(&["--docker-network", "c1_net"]).network().unwrap(),
            "c1_net"
        );
    }

    #[test]
    fn nodes_advertise_the_networks_ipv4_subnet() {
        let network = |subnets: &[&str]| NetworkInspect {
            ipam: Some(Ipam {
                config: Some(
                    subnets
                        .iter()
                        .map(|s| IpamConfig {
                            subnet: Some(s.to_string()),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            ipv4_subnet(&network(&["fd00::/64", "10.20.0.0/24"])).as_deref(),
            Some("10.20.0.0/24")
        );
        assert_eq!(ipv4_subnet(&network(&[])), None);
        assert_eq!(ipv4_subnet(&NetworkInspect::default()), None);
    }
}

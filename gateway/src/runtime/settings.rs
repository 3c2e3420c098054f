//! What the runtimes are configured with: their own flags ([`RuntimeSettings`], flattened into
//! the gateway's `Config`) and the Consul registration every launched node gets
//! ([`NodeRegistration`], from the discovery settings).

use std::path::PathBuf;
use std::time::Duration;

use crate::flags::parse_positive;

/// The lifecycle endpoints' flags: which runtime, what it launches, its limits.
#[derive(Debug, Clone, clap::Args)]
pub struct RuntimeSettings {
    /// Runtime of the lifecycle endpoints, `docker`, `swarm` or `process` (unset: Docker when
    /// its engine answers, else processes; Swarm is only used when asked for).
    #[arg(long, env = "RUNTIME", value_name = "RUNTIME", value_enum)]
    pub runtime: Option<RuntimeKind>,

    /// Cluster name: the `gdp-serving.cluster` label of node containers and the prefix of
    /// instance names (`<cluster>-<SERVICE_NAME>-<n>`); compose sets the project name.
    #[arg(long, env = "CLUSTER_NAME", value_name = "CLUSTER_NAME", default_value = "microservices", value_parser = parse_cluster_name)]
    pub cluster_name: String,

    /// Image of the node containers the Docker runtime launches (never taken from a request).
    #[arg(
        long,
        env = "NODE_IMAGE",
        value_name = "NODE_IMAGE",
        default_value = "microservices-gdp-growth-model:latest"
    )]
    pub node_image: String,

    /// Docker Engine address (`unix://` or `tcp://`).
    #[arg(
        long,
        env = "DOCKER_HOST",
        value_name = "DOCKER_HOST",
        default_value = "unix:///var/run/docker.sock"
    )]
    pub docker_host: String,

    /// Docker network of launched nodes (default: the network of the gateway's own container;
    /// Swarm: required, the stack's attachable overlay network).
    #[arg(long, env = "DOCKER_NETWORK", value_name = "DOCKER_NETWORK")]
    pub docker_network: Option<String>,

    /// Memory limit of a launched node container, in MiB.
    #[arg(long, env = "GATEWAY_NODE_MEMORY_MB", value_name = "GATEWAY_NODE_MEMORY_MB", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(64..=65536))]
    pub node_memory_mb: u32,

    /// Most processes/threads in a launched node container.
    #[arg(long, env = "GATEWAY_NODE_PIDS_LIMIT", value_name = "GATEWAY_NODE_PIDS_LIMIT", default_value_t = 512, value_parser = clap::value_parser!(u32).range(16..=65536))]
    pub node_pids_limit: u32,

    /// Time a stopped node gets between SIGTERM (it deregisters from Consul) and SIGKILL.
    #[arg(long, env = "GATEWAY_NODE_STOP_TIMEOUT", value_name = "GATEWAY_NODE_STOP_TIMEOUT", default_value = "10s", value_parser = parse_positive)]
    pub node_stop_timeout: Duration,

    /// Most instances the lifecycle API keeps launched at once (running or starting; per
    /// runtime: this gateway's node processes, or this cluster's containers the gateway
    /// launched; compose replicas do not count). A launch beyond it is a 429.
    #[arg(long, env = "GATEWAY_MAX_INSTANCES", value_name = "GATEWAY_MAX_INSTANCES", default_value_t = 8, value_parser = clap::value_parser!(u32).range(0..=1024))]
    pub max_instances: u32,

    /// Time a launched node gets to start: its process to answer `/health`, or its container
    /// to run and pass its health check. Past it, the launch fails (502) and the node is
    /// stopped.
    #[arg(long, env = "GATEWAY_NODE_START_TIMEOUT", value_name = "GATEWAY_NODE_START_TIMEOUT", default_value = "60s", value_parser = parse_positive)]
    pub node_start_timeout: Duration,

    /// inference-node binary of the process runtime (default: `inference-node` next to the
    /// gateway executable).
    #[arg(long, env = "NODE_BINARY", value_name = "NODE_BINARY")]
    pub node_binary: Option<PathBuf>,

    /// Directory of the `*.onnx` models for the process runtime: a launch needs
    /// `<model>.onnx` there, and launched nodes load it.
    #[arg(
        long,
        env = "MODELS_DIR",
        value_name = "MODELS_DIR",
        default_value = "models/gdp_growth_rate"
    )]
    pub models_dir: PathBuf,
}

/// Which runtime runs the inference nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RuntimeKind {
    /// Containers through the Docker Engine API.
    Docker,
    /// Child processes of the gateway (the inference-node binary).
    Process,
    /// Docker Swarm services (one replicated service per launched node) through the manager's
    /// Engine API.
    Swarm,
}

/// How a launched node registers in Consul, as the gateway finds nodes there: the Consul
/// address and ACL token, and the service name (also the middle of instance names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRegistration {
    /// Base URL of the Consul HTTP API, without a trailing `/`.
    pub consul_url: String,
    /// Consul service name of the inference nodes.
    pub service: String,
    /// Consul ACL token, if any.
    pub consul_token: Option<String>,
}

/// A cluster name is a compose project name: lowercase letters, digits, `-`, `_`.
fn parse_cluster_name(s: &str) -> Result<String, String> {
    let ok = s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(s.to_string())
    } else {
        Err("use lowercase letters, digits, '-' and '_' (a compose project name)".into())
    }
}

/// Builders the runtimes' unit tests share.
#[cfg(test)]
pub(crate) mod testing {
    use std::collections::HashMap;

    use clap::Parser;

    use super::RuntimeSettings;

    /// The runtime's flags alone, parsed as the gateway parses them.
    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        settings: RuntimeSettings,
    }

    /// [`RuntimeSettings`] from command-line `args` (without the program name).
    pub fn settings(args: &[&str]) -> RuntimeSettings {
        let all = std::iter::once("gateway").chain(args.iter().copied());
        Flags::try_parse_from(all).unwrap().settings
    }

    /// Owned labels from `(key, value)` pairs.
    pub fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
}

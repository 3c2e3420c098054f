//! Command-line and environment configuration.
//!
//! The seed's settings keep the seed's variable names (`PORT`, `GDP_MODEL_NAME`,
//! `SERVICE_DISCOVERY_URL`, ...); the node's own tuning knobs use an `INFERENCE_NODE_` prefix
//! (not `NODE_`, which Node.js owns). An unknown `INFERENCE_NODE_*` variable is an error
//! ([`Config::check_environment`]), so typos do not pass silently.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use node_contract::env;
use onnx_model::TreeKernel;
use reqwest::Url;

use crate::advertise::Subnet;
use crate::error::NodeError;
use crate::sched_policy::SchedPolicy;

/// Configuration of the inference node.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "inference-node",
    version,
    about = "Serves the GDP-growth models through ONNX Runtime"
)]
pub struct Config {
    /// Port the HTTP API listens on.
    #[arg(long, env = env::PORT, default_value_t = 5000, global = true)]
    pub port: u16,

    /// Address the HTTP API binds to.
    #[arg(long, env = env::HOST, default_value = "0.0.0.0")]
    pub host: IpAddr,

    /// Directory of the models: `<name>.onnx` files and `<name>/<version>/model.onnx`.
    #[arg(long, env = env::MODELS_DIR, default_value = "models/gdp_growth_rate")]
    pub models_dir: PathBuf,

    /// How often to look for new, changed and removed model files in MODELS_DIR and load
    /// them while serving (e.g. `5s`); unset: only at startup and through the repository API.
    #[arg(long, env = "INFERENCE_NODE_MODEL_POLL", value_parser = humantime::parse_duration)]
    pub model_poll: Option<Duration>,

    /// Model used when a request names none.
    #[arg(long, env = env::MODEL_NAME, default_value = "LinearRegression")]
    pub default_model: String,

    /// Consul base URL; unset means the node does not register anywhere.
    #[arg(long, env = env::SERVICE_DISCOVERY_URL)]
    pub service_discovery_url: Option<Url>,

    /// Service name registered in Consul.
    #[arg(long, env = env::SERVICE_NAME, default_value = "gdp-growth-model")]
    pub service_name: String,

    /// Host other services reach this node at (default: this machine's hostname).
    #[arg(long, env = env::ADVERTISE_ADDRESS)]
    pub advertise_address: Option<String>,

    /// Subnet (CIDR) whose address of this machine is registered instead of the hostname (an
    /// overlay network spanning hosts); `ADVERTISE_ADDRESS` wins when both are set.
    #[arg(long, env = env::ADVERTISE_NETWORK)]
    pub advertise_network: Option<Subnet>,

    /// Consul ACL token sent as `X-Consul-Token`.
    #[arg(long, env = env::CONSUL_HTTP_TOKEN, hide_env_values = true)]
    pub consul_token: Option<String>,

    /// Path of `libonnxruntime.so` (default: `.ort/lib`, then `/usr/local/lib`).
    #[arg(long, env = onnx_model::runtime::LIBRARY_ENV)]
    pub ort_dylib_path: Option<PathBuf>,

    /// How often Consul probes `/health`.
    #[arg(long, env = "INFERENCE_NODE_CHECK_INTERVAL", default_value = "10s", value_parser = humantime::parse_duration)]
    pub check_interval: Duration,

    /// Timeout of one Consul probe.
    #[arg(long, env = "INFERENCE_NODE_CHECK_TIMEOUT", default_value = "2s", value_parser = humantime::parse_duration)]
    pub check_timeout: Duration,

    /// Consul removes the node after its check has been critical this long.
    #[arg(long, env = "INFERENCE_NODE_DEREGISTER_AFTER", default_value = "1m", value_parser = humantime::parse_duration)]
    pub deregister_after: Duration,

    /// How often the node confirms Consul still knows it (and re-registers if not).
    #[arg(long, env = "INFERENCE_NODE_REGISTRATION_REFRESH", default_value = "15s", value_parser = humantime::parse_duration)]
    pub registration_refresh: Duration,

    /// Largest accepted request body, in bytes (larger bodies get 413).
    #[arg(long, env = "INFERENCE_NODE_MAX_BODY_BYTES", default_value_t = 2 * 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Most rows one request may carry (a batch `/predict` or a V2 infer).
    #[arg(long, env = "INFERENCE_NODE_MAX_BATCH_ROWS", default_value_t = 10_000)]
    pub max_batch_rows: usize,

    /// Most prediction requests in progress at once; more get 429 at once.
    #[arg(long, env = "INFERENCE_NODE_MAX_IN_FLIGHT", default_value_t = 1024)]
    pub max_in_flight: usize,

    /// Most rows the dynamic batcher merges into one ONNX Runtime call (1 disables batching).
    #[arg(long, env = "INFERENCE_NODE_BATCH_MAX_ROWS", default_value_t = 64)]
    pub batch_max_rows: usize,

    /// How long the batcher waits for more requests once one is queued (0: take what is queued).
    #[arg(long, env = "INFERENCE_NODE_BATCH_MAX_WAIT", default_value = "0s", value_parser = humantime::parse_duration)]
    pub batch_max_wait: Duration,

    /// How long an idle inference thread keeps polling for work (yielding its CPU) before it
    /// sleeps; under steady load the next request then needs no wake-up. 0: sleep at once.
    #[arg(long, env = "INFERENCE_NODE_BATCH_IDLE_SPIN", default_value = "200us", value_parser = humantime::parse_duration)]
    pub batch_idle_spin: Duration,

    /// Threads that serve HTTP (the async workers; inference runs on threads of its own).
    /// Unset: one per CPU. Several replicas sharing one host's CPUs do better with 1 each:
    /// fewer threads to wake per request.
    #[arg(long, env = "INFERENCE_NODE_WORKER_THREADS")]
    pub worker_threads: Option<usize>,

    /// CPU scheduling policy of the node's threads: `normal` (Linux's default) or `batch`
    /// (`SCHED_BATCH`: a thread woken by a request does not preempt the running one; for
    /// replicas sharing their host's CPUs).
    #[arg(
        long,
        env = "INFERENCE_NODE_SCHED_POLICY",
        value_enum,
        default_value = "normal"
    )]
    pub sched_policy: SchedPolicy,

    /// The kernel of tree models' `TreeEnsemble` nodes: `compiled` (the node's own: several
    /// rows walk a tree together, same results bit for bit) or `onnxruntime` (ONNX Runtime's).
    #[arg(
        long,
        env = "INFERENCE_NODE_TREE_KERNEL",
        value_enum,
        default_value = "compiled"
    )]
    pub tree_kernel: TreeKernelName,

    /// Threads one call of the compiled tree kernel may take when it has many rows (at least
    /// 256 each); default: as many as the CPUs this process may use.
    #[arg(long, env = "INFERENCE_NODE_TREE_THREADS")]
    pub tree_threads: Option<usize>,

    /// How long a client may take to send a request head (an idle keep-alive connection is
    /// closed after it too) and how long its body may stall (408 past it).
    #[arg(long, env = "INFERENCE_NODE_CLIENT_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub client_timeout: Duration,

    /// How long a request's whole body may take to arrive, counted from its head (408 past
    /// it): a 2 MiB body at 35 KB/s, while a client trickling a body cannot hold its
    /// connection and buffer for ever.
    #[arg(long, env = "INFERENCE_NODE_BODY_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub body_timeout: Duration,

    /// Most connections served at once; more wait in the listen backlog until one closes.
    /// Keep it under the open-file limit (`ulimit -n`); the bodies being read take at most
    /// this many times INFERENCE_NODE_MAX_BODY_BYTES of memory.
    #[arg(long, env = "INFERENCE_NODE_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,

    /// How long shutdown waits for in-flight requests.
    #[arg(long, env = "INFERENCE_NODE_SHUTDOWN_GRACE", default_value = "10s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,

    /// Pid of the process whose death stops this node (SIGTERM: it deregisters and drains);
    /// the gateway's process runtime sets it to its own pid. Linux only; if that process is
    /// not the node's parent any more at startup, the node exits.
    #[arg(long, env = env::EXIT_WITH_PARENT)]
    pub exit_with_parent: Option<u32>,

    /// Log as JSON lines instead of text.
    #[arg(long, env = "INFERENCE_NODE_LOG_JSON", default_value_t = false)]
    pub log_json: bool,

    /// Probe `http://127.0.0.1:$PORT/health` and exit 0 if it answers 200, 1 otherwise
    /// (for container health checks; images have no curl).
    #[arg(long)]
    pub health_check: bool,

    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands besides serving.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Same as `--health-check`.
    Healthcheck,
}

/// `--tree-kernel` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TreeKernelName {
    Compiled,
    Onnxruntime,
}

/// The prefix of the node's own settings.
pub const PREFIX: &str = "INFERENCE_NODE_";

/// The `INFERENCE_NODE_*` variables the node reads (those its settings name), in order.
pub fn node_variables() -> Vec<String> {
    use clap::CommandFactory;
    Config::command()
        .get_arguments()
        .filter_map(|arg| arg.get_env())
        .filter_map(|name| name.to_str())
        .filter(|name| name.starts_with(PREFIX))
        .map(str::to_string)
        .collect()
}

impl Config {
    /// The `TreeEnsemble` kernel `--tree-kernel` and `--tree-threads` ask for.
    pub fn tree_kernel(&self) -> TreeKernel {
        match (self.tree_kernel, self.tree_threads) {
            (TreeKernelName::Onnxruntime, _) => TreeKernel::OnnxRuntime,
            (TreeKernelName::Compiled, None) => TreeKernel::default(),
            (TreeKernelName::Compiled, Some(threads)) => TreeKernel::Compiled { threads },
        }
    }

    /// Returns whether this invocation only probes a running node's health.
    pub fn is_health_check(&self) -> bool {
        self.health_check || matches!(self.command, Some(Command::Healthcheck))
    }

    /// Rejects settings that parse but make no sense, naming the setting.
    pub fn validate(&self) -> Result<(), NodeError> {
        let positive = [
            ("INFERENCE_NODE_MAX_BATCH_ROWS", self.max_batch_rows),
            ("INFERENCE_NODE_MAX_IN_FLIGHT", self.max_in_flight),
            ("INFERENCE_NODE_MAX_CONNECTIONS", self.max_connections),
            ("INFERENCE_NODE_BATCH_MAX_ROWS", self.batch_max_rows),
            (
                "INFERENCE_NODE_WORKER_THREADS",
                self.worker_threads.unwrap_or(1),
            ),
            (
                "INFERENCE_NODE_TREE_THREADS",
                self.tree_threads.unwrap_or(1),
            ),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(NodeError::Config(format!("{name} must be at least 1")));
            }
        }
        if self.max_body_bytes < 256 {
            return Err(NodeError::Config(format!(
                "INFERENCE_NODE_MAX_BODY_BYTES must be at least 256, got {}",
                self.max_body_bytes
            )));
        }
        let nonzero = [
            ("INFERENCE_NODE_CHECK_INTERVAL", self.check_interval),
            ("INFERENCE_NODE_CHECK_TIMEOUT", self.check_timeout),
            (
                "INFERENCE_NODE_REGISTRATION_REFRESH",
                self.registration_refresh,
            ),
            ("INFERENCE_NODE_CLIENT_TIMEOUT", self.client_timeout),
            ("INFERENCE_NODE_BODY_TIMEOUT", self.body_timeout),
        ];
        for (name, value) in nonzero {
            if value.is_zero() {
                return Err(NodeError::Config(format!("{name} must be longer than 0s")));
            }
        }
        if self.model_poll.is_some_and(|poll| poll.is_zero()) {
            return Err(NodeError::Config(
                "INFERENCE_NODE_MODEL_POLL must be longer than 0s (unset it to turn polling off)"
                    .into(),
            ));
        }
        if self.check_timeout > self.check_interval {
            return Err(NodeError::Config(format!(
                "INFERENCE_NODE_CHECK_TIMEOUT ({}) must not exceed INFERENCE_NODE_CHECK_INTERVAL ({})",
                humantime::format_duration(self.check_timeout),
                humantime::format_duration(self.check_interval)
            )));
        }
        if self.default_model.trim().is_empty() {
            return Err(NodeError::Config("GDP_MODEL_NAME must not be empty".into()));
        }
        if self.service_name.trim().is_empty() {
            return Err(NodeError::Config("SERVICE_NAME must not be empty".into()));
        }
        if let Some(url) = &self.service_discovery_url
            && url.scheme() != "http"
        {
            return Err(NodeError::Config(format!(
                "SERVICE_DISCOVERY_URL must be an http:// URL, got {url}"
            )));
        }
        if matches!(&self.advertise_address, Some(a) if a.trim().is_empty()) {
            return Err(NodeError::Config(
                "ADVERTISE_ADDRESS must not be empty when set".into(),
            ));
        }
        Ok(())
    }

    /// Rejects unknown `INFERENCE_NODE_*` variables among `vars` (pass `std::env::vars()`).
    pub fn check_environment(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(), NodeError> {
        let known = node_variables();
        let unknown: Vec<String> = vars
            .into_iter()
            .map(|(name, _)| name)
            .filter(|name| name.starts_with(PREFIX) && !known.contains(name))
            .collect();
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(NodeError::Config(format!(
                "unknown setting(s) {}; known {PREFIX}* settings: {}",
                unknown.join(", "),
                known.join(", ")
            )))
        }
    }

    /// Returns the host registered in Consul: `ADVERTISE_ADDRESS`, else this machine's
    /// address in `ADVERTISE_NETWORK` (an error when it has none), else the hostname.
    pub fn registered_host(&self) -> Result<String, NodeError> {
        match &self.advertise_network {
            Some(subnet) if self.advertise_address.is_none() => subnet
                .local_address()
                .map(|ip| ip.to_string())
                .map_err(|e| NodeError::Config(format!("ADVERTISE_NETWORK: {e}"))),
            _ => Ok(self.advertise_host()),
        }
    }

    /// Returns the host registered in Consul: `ADVERTISE_ADDRESS`, else the hostname.
    pub fn advertise_host(&self) -> String {
        if let Some(address) = &self.advertise_address {
            return address.trim().to_string();
        }
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .or_else(|_| std::fs::read_to_string("/etc/hostname"))
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "127.0.0.1".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn verify_cli() {
        Config::command().debug_assert();
    }

    #[test]
    fn the_tree_kernel_is_compiled_unless_asked_otherwise() {
        let parse =
            |args: &[&str]| Config::try_parse_from([&["inference-node"], args].concat()).unwrap();
        assert_eq!(parse(&[]).tree_kernel(), TreeKernel::default());
        assert!(matches!(
            TreeKernel::default(),
            TreeKernel::Compiled { threads } if threads >= 1
        ));
        assert_eq!(
            parse(&["--tree-threads", "3"]).tree_kernel(),
            TreeKernel::Compiled { threads: 3 }
        );
        assert_eq!(
            parse(&["--tree-kernel", "onnxruntime"]).tree_kernel(),
            TreeKernel::OnnxRuntime
        );
        let zero = parse(&["--tree-threads", "0"]).validate().unwrap_err();
        assert!(
            zero.to_string().contains("INFERENCE_NODE_TREE_THREADS"),
            "{zero}"
        );
        assert!(Config::try_parse_from(["inference-node", "--tree-kernel", "fast"]).is_err());
    }

    #[test]
    fn defaults_match_the_seed() {
        let config = Config::try_parse_from(["inference-node"]).unwrap();
        assert_eq!(config.port, 5000);
        assert_eq!(config.default_model, "LinearRegression");
        assert_eq!(config.service_name, "gdp-growth-model");
        assert_eq!(config.models_dir, PathBuf::from("models/gdp_growth_rate"));
        assert!(config.service_discovery_url.is_none());
        assert!(config.model_poll.is_none());
        assert_eq!(config.batch_idle_spin, Duration::from_micros(200));
        assert_eq!(config.sched_policy, SchedPolicy::Normal);
        assert!(!config.is_health_check());
        config.validate().unwrap();
    }

    #[test]
    fn the_batch_scheduling_policy_parses() {
        let config = Config::try_parse_from(["inference-node", "--sched-policy", "batch"]).unwrap();
        assert_eq!(config.sched_policy, SchedPolicy::Batch);
        assert!(Config::try_parse_from(["inference-node", "--sched-policy", "fast"]).is_err());
    }

    #[test]
    fn durations_and_health_check_parse() {
        let config = Config::try_parse_from([
            "inference-node",
            "--check-interval",
            "500ms",
            "--check-timeout",
            "200ms",
            "--batch-idle-spin",
            "0s",
            "healthcheck",
        ])
        .unwrap();
        assert_eq!(config.check_interval, Duration::from_millis(500));
        assert_eq!(config.batch_idle_spin, Duration::ZERO);
        assert!(config.is_health_check());
        config.validate().unwrap();
    }

    #[test]
    fn invalid_values_name_the_setting() {
        let config = Config::try_parse_from(["inference-node", "--max-in-flight", "0"]).unwrap();
        let message = config.validate().unwrap_err().to_string();
        assert!(
            message.contains("INFERENCE_NODE_MAX_IN_FLIGHT"),
            "{message}"
        );

        let config = Config::try_parse_from(["inference-node", "--worker-threads", "0"]).unwrap();
        let message = config.validate().unwrap_err().to_string();
        assert!(
            message.contains("INFERENCE_NODE_WORKER_THREADS"),
            "{message}"
        );

        let config = Config::try_parse_from(["inference-node", "--check-timeout", "20s"]).unwrap();
        let message = config.validate().unwrap_err().to_string();
        assert!(
            message.contains("INFERENCE_NODE_CHECK_TIMEOUT"),
            "{message}"
        );

        let config = Config::try_parse_from(["inference-node", "--model-poll", "0s"]).unwrap();
        let message = config.validate().unwrap_err().to_string();
        assert!(message.contains("INFERENCE_NODE_MODEL_POLL"), "{message}");
        let config = Config::try_parse_from(["inference-node", "--model-poll", "5s"]).unwrap();
        assert_eq!(config.model_poll, Some(Duration::from_secs(5)));

        let error = Config::try_parse_from(["inference-node", "--port", "http"]).unwrap_err();
        assert!(error.to_string().contains("--port"), "{error}");
        let error = Config::try_parse_from(["inference-node", "--no-such-flag"]).unwrap_err();
        assert!(error.to_string().contains("--no-such-flag"), "{error}");
    }

    #[test]
    fn unknown_node_variables_are_rejected() {
        let vars = [
            ("INFERENCE_NODE_MAX_IN_FLIGHT".to_string(), "3".to_string()),
            ("PATH".to_string(), "/bin".to_string()),
            ("NODE_EXTRA_CA_CERTS".to_string(), "/x.pem".to_string()),
        ];
        Config::check_environment(vars).unwrap();
        let every_setting = node_variables()
            .into_iter()
            .map(|name| (name, "1".to_string()));
        Config::check_environment(every_setting).unwrap();
        assert!(node_variables().contains(&"INFERENCE_NODE_CLIENT_TIMEOUT".to_string()));
        let message = Config::check_environment([(
            "INFERENCE_NODE_MAXINFLIGHT".to_string(),
            "3".to_string(),
        )])
        .unwrap_err()
        .to_string();
        assert!(message.contains("INFERENCE_NODE_MAXINFLIGHT"), "{message}");
    }

    #[test]
    fn advertise_address_wins_over_hostname() {
        let config =
            Config::try_parse_from(["inference-node", "--advertise-address", "127.0.0.1"]).unwrap();
        assert_eq!(config.advertise_host(), "127.0.0.1");
        let config = Config::try_parse_from(["inference-node"]).unwrap();
        assert!(!config.advertise_host().is_empty());
    }

    #[test]
    fn advertise_network_registers_the_address_inside_it() {
        let config =
            Config::try_parse_from(["inference-node", "--advertise-network", "127.0.0.0/8"])
                .unwrap();
        assert!(config.registered_host().unwrap().starts_with("127."));
        let both = Config::try_parse_from([
            "inference-node",
            "--advertise-network",
            "127.255.255.254/32",
            "--advertise-address",
            "10.1.2.3",
        ])
        .unwrap();
        assert_eq!(both.registered_host().unwrap(), "10.1.2.3");
        let nowhere = Config::try_parse_from([
            "inference-node",
            "--advertise-network",
            "127.255.255.254/32",
        ])
        .unwrap();
        let err = nowhere.registered_host().unwrap_err().to_string();
        assert!(err.contains("ADVERTISE_NETWORK"), "{err}");
        assert!(
            Config::try_parse_from(["inference-node", "--advertise-network", "10.0.0.1"]).is_err()
        );
    }
}

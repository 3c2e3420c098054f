//! Command-line and environment configuration.
//!
//! [`Config`] holds the HTTP server's own settings (address, limits, admin token, logs) and
//! flattens one section per part of the gateway: [`DiscoverySettings`] (Consul),
//! [`UpstreamSettings`] (talking to nodes), [`EjectSettings`] (the balancer's ejection) and
//! the runtime's own [`RuntimeSettings`], which lives with the runtime. This module points
//! at the runtime's settings; nothing in the runtime reads `Config`. Fields are declared in
//! the order `--help` lists the flags.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use clap::Parser;
use reqwest::Url;

use crate::flags::{parse_duration, parse_positive};
use crate::runtime::settings::{NodeRegistration, RuntimeSettings};

/// Command-line and environment configuration for the gateway.
///
/// Every flag also reads an environment variable (shown as the flag's value name, so that
/// clap's error for an invalid value names both, e.g. `--port <GATEWAY_PORT>`); invalid
/// values stop the gateway at startup.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "gateway",
    version,
    about = "API gateway: Consul discovery and random load balancing over inference nodes"
)]
pub struct Config {
    /// Address the HTTP API binds to.
    #[arg(long, env = "GATEWAY_HOST", value_name = "GATEWAY_HOST", default_value_t = IpAddr::V4(Ipv4Addr::UNSPECIFIED))]
    pub host: IpAddr,

    /// Port the HTTP API listens on.
    #[arg(
        long,
        env = "GATEWAY_PORT",
        value_name = "GATEWAY_PORT",
        default_value_t = 8000
    )]
    pub port: u16,

    /// Where the nodes are found: Consul and the blocking queries.
    #[command(flatten)]
    pub discovery: DiscoverySettings,

    /// How the gateway talks to the nodes: timeouts, retries, hedging.
    #[command(flatten)]
    pub upstream: UpstreamSettings,

    /// Largest request body accepted, in bytes.
    #[arg(long, env = "GATEWAY_BODY_LIMIT", value_name = "GATEWAY_BODY_LIMIT", default_value_t = 1 << 20, value_parser = clap::value_parser!(u64).range(1..=(1 << 30)))]
    pub body_limit: u64,

    /// When a failing node is taken out of balancing, and for how long.
    #[command(flatten)]
    pub eject: EjectSettings,

    /// Time a client may take to send a whole request head (a keep-alive connection idle this
    /// long is closed) and time its body may stall (408 past it).
    #[arg(long, env = "GATEWAY_CLIENT_TIMEOUT", value_name = "GATEWAY_CLIENT_TIMEOUT", default_value = "30s", value_parser = parse_positive)]
    pub client_timeout: Duration,

    /// Time a request's whole body may take to arrive, counted from its head (408 past it):
    /// a 1 MiB body at 18 KB/s, while a client trickling a body cannot hold its connection
    /// and buffer for ever.
    #[arg(long, env = "GATEWAY_BODY_TIMEOUT", value_name = "GATEWAY_BODY_TIMEOUT", default_value = "60s", value_parser = parse_positive)]
    pub body_timeout: Duration,

    /// Most client connections served at once; more wait in the listen backlog until one
    /// closes. Keep it under half the open-file limit (`ulimit -n`: each request also holds
    /// a connection to a node); the bodies being read take at most this many times
    /// GATEWAY_BODY_LIMIT of memory.
    #[arg(long, env = "GATEWAY_MAX_CONNECTIONS", value_name = "GATEWAY_MAX_CONNECTIONS", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,

    /// Time in-flight requests get to finish after a shutdown signal.
    #[arg(long, env = "GATEWAY_SHUTDOWN_GRACE", value_name = "GATEWAY_SHUTDOWN_GRACE", default_value = "10s", value_parser = parse_positive)]
    pub shutdown_grace: Duration,

    /// Seed of the balancer's random generator (for reproducible tests; random by default).
    #[arg(long, env = "GATEWAY_RNG_SEED", value_name = "GATEWAY_RNG_SEED")]
    pub rng_seed: Option<u64>,

    /// The lifecycle endpoints' runtime (launch/list/stop nodes; see `runtime`).
    #[command(flatten)]
    pub runtime: RuntimeSettings,

    /// Bearer token the lifecycle endpoints require (unset: no token needed).
    #[arg(
        long,
        env = "GATEWAY_ADMIN_TOKEN",
        value_name = "GATEWAY_ADMIN_TOKEN",
        hide_env_values = true,
        value_parser = parse_admin_token
    )]
    pub admin_token: Option<String>,

    /// Writes logs as JSON lines.
    #[arg(long, env = "GATEWAY_LOG_JSON")]
    pub log_json: bool,

    /// Checks `GET http://127.0.0.1:$GATEWAY_PORT/health` and exits 0 (healthy) or 1, for
    /// container health checks in images without a shell.
    #[arg(long)]
    pub health_check: bool,
}

impl Config {
    /// Checks the rules that join several settings; the error names them.
    pub fn check(&self) -> Result<(), String> {
        let eject = &self.eject;
        if eject.eject_base > eject.eject_max {
            return Err(format!(
                "GATEWAY_EJECT_BASE ({:?}) is longer than GATEWAY_EJECT_MAX ({:?})",
                eject.eject_base, eject.eject_max
            ));
        }
        Ok(())
    }

    /// The largest answer a node may give to a prediction: 16 times the request limit (a node
    /// echoes the request and adds one prediction per row, so its answer is about as large).
    pub fn answer_limit(&self) -> usize {
        usize::try_from(self.body_limit.saturating_mul(16)).unwrap_or(usize::MAX)
    }

    /// Returns the socket address the HTTP API binds to.
    pub fn listen_addr(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.port)
    }

    /// The warning to log at startup when the lifecycle endpoints are open to the network:
    /// no `GATEWAY_ADMIN_TOKEN` and an address beyond loopback (compose's default). Only a
    /// warning, so that `docker compose up` keeps working with the seed's `.env`.
    pub fn open_admin_warning(&self) -> Option<String> {
        if self.admin_token.is_some() || self.host.is_loopback() {
            return None;
        }
        Some(format!(
            "GATEWAY_ADMIN_TOKEN is not set and the gateway listens on {}, beyond this host's \
             loopback: anyone who reaches it can launch and stop model instances. Set \
             GATEWAY_ADMIN_TOKEN, or GATEWAY_HOST=127.0.0.1 to listen on loopback only",
            self.listen_addr()
        ))
    }
}

/// Where the nodes are found: the Consul agent, the service, and the blocking queries.
#[derive(Debug, Clone, clap::Args)]
pub struct DiscoverySettings {
    /// Base URL of the Consul HTTP API.
    #[arg(
        long,
        env = "SERVICE_DISCOVERY_URL",
        value_name = "SERVICE_DISCOVERY_URL",
        default_value = "http://127.0.0.1:8500"
    )]
    pub service_discovery_url: Url,

    /// Consul service name of the inference nodes.
    #[arg(
        long,
        env = "SERVICE_NAME",
        value_name = "SERVICE_NAME",
        default_value = "gdp-growth-model",
        value_parser = parse_service_name
    )]
    pub service_name: String,

    /// Consul ACL token, sent as `X-Consul-Token`.
    #[arg(
        long,
        env = "CONSUL_HTTP_TOKEN",
        value_name = "CONSUL_HTTP_TOKEN",
        hide_env_values = true
    )]
    pub consul_token: Option<String>,

    /// How long one Consul blocking query may wait for a change (`wait`, at most 10m).
    #[arg(long, env = "GATEWAY_DISCOVERY_WAIT", value_name = "GATEWAY_DISCOVERY_WAIT", default_value = "30s", value_parser = parse_wait)]
    pub discovery_wait: Duration,

    /// Longest pause between retries while Consul is unreachable (backoff starts at 100ms).
    #[arg(long, env = "GATEWAY_DISCOVERY_BACKOFF_MAX", value_name = "GATEWAY_DISCOVERY_BACKOFF_MAX", default_value = "5s", value_parser = parse_positive)]
    pub discovery_backoff_max: Duration,

    /// After a Consul outage, how long nodes of the last known set that Consul does not list
    /// stay in the set: a restarted agent has forgotten them until they re-register (within
    /// their 15s refresh by default) and pass their first check (within its interval, 10s).
    #[arg(long, env = "GATEWAY_DISCOVERY_RECOVERY_GRACE", value_name = "GATEWAY_DISCOVERY_RECOVERY_GRACE", default_value = "30s", value_parser = parse_duration)]
    pub discovery_recovery_grace: Duration,
}

/// How the gateway talks to the nodes: timeouts, retries, hedging, per-node metrics.
#[derive(Debug, Clone, clap::Args)]
pub struct UpstreamSettings {
    /// Time allowed to open a TCP connection to a node.
    #[arg(long, env = "GATEWAY_CONNECT_TIMEOUT", value_name = "GATEWAY_CONNECT_TIMEOUT", default_value = "1s", value_parser = parse_positive)]
    pub connect_timeout: Duration,

    /// Time allowed for one upstream attempt (connect, send, full response).
    #[arg(long, env = "GATEWAY_UPSTREAM_TIMEOUT", value_name = "GATEWAY_UPSTREAM_TIMEOUT", default_value = "10s", value_parser = parse_positive)]
    pub upstream_timeout: Duration,

    /// Time allowed for each node's `/models` answer when listing available models.
    #[arg(long, env = "GATEWAY_MODELS_TIMEOUT", value_name = "GATEWAY_MODELS_TIMEOUT", default_value = "2s", value_parser = parse_positive)]
    pub models_timeout: Duration,

    /// Retries on a different instance after a connect error, timeout or 5xx (0 disables).
    #[arg(long, env = "GATEWAY_RETRIES", value_name = "GATEWAY_RETRIES", default_value_t = 1, value_parser = clap::value_parser!(u32).range(0..=5))]
    pub retries: u32,

    /// Fixed hedge delay: a prediction unanswered this long is also sent to another node, and
    /// the first answer wins (unset: adaptive, twice the recent p99 latency within 50ms..500ms).
    /// A hedge counts as one of the `GATEWAY_RETRIES`.
    #[arg(long, env = "GATEWAY_HEDGE_AFTER", value_name = "GATEWAY_HEDGE_AFTER", value_parser = parse_positive)]
    pub hedge_after: Option<Duration>,

    /// Hedges allowed over any 10s, in percent of the requests (plus 100); 0 disables hedging.
    #[arg(long, env = "GATEWAY_HEDGE_BUDGET", value_name = "GATEWAY_HEDGE_BUDGET", default_value_t = 10, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub hedge_budget: u32,

    /// How long the per-node metric series of a node that left the healthy set are kept.
    #[arg(long, env = "GATEWAY_NODE_METRICS_RETENTION", value_name = "GATEWAY_NODE_METRICS_RETENTION", default_value = "10m", value_parser = parse_duration)]
    pub node_metrics_retention: Duration,
}

/// When a failing node is taken out of balancing, and for how long.
#[derive(Debug, Clone, clap::Args)]
pub struct EjectSettings {
    /// Consecutive failures after which a node is ejected from balancing.
    #[arg(long, env = "GATEWAY_EJECT_AFTER", value_name = "GATEWAY_EJECT_AFTER", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    pub eject_after: u32,

    /// First ejection interval; it doubles on every ejection in a row.
    #[arg(long, env = "GATEWAY_EJECT_BASE", value_name = "GATEWAY_EJECT_BASE", default_value = "1s", value_parser = parse_positive)]
    pub eject_base: Duration,

    /// Longest ejection interval.
    #[arg(long, env = "GATEWAY_EJECT_MAX", value_name = "GATEWAY_EJECT_MAX", default_value = "30s", value_parser = parse_positive)]
    pub eject_max: Duration,
}

// === impl DiscoverySettings ===

impl DiscoverySettings {
    /// How launched nodes register in Consul: where the gateway looks for them.
    pub fn node_registration(&self) -> NodeRegistration {
        NodeRegistration {
            consul_url: self
                .service_discovery_url
                .as_str()
                .trim_end_matches('/')
                .to_string(),
            service: self.service_name.clone(),
            consul_token: self.consul_token.clone(),
        }
    }
}

/// A Consul service name: not empty (the rule the nodes apply; the client escapes it in URLs).
fn parse_service_name(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        Err("must not be empty".into())
    } else {
        Ok(s.to_string())
    }
}

/// An admin token a client can send: not empty, no surrounding whitespace (HTTP drops it
/// from header values, so such a token could never match and would lock the endpoints).
fn parse_admin_token(s: &str) -> Result<String, String> {
    if s.is_empty() {
        Err("is set but empty (unset it to leave the lifecycle endpoints open)".into())
    } else if s.trim() != s {
        Err("must not start or end with whitespace".into())
    } else {
        Ok(s.to_string())
    }
}

fn parse_wait(s: &str) -> Result<Duration, String> {
    let d = parse_positive(s)?;
    if d > Duration::from_secs(600) {
        return Err("Consul caps a blocking query's wait at 10m".into());
    }
    Ok(d)
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
    fn defaults_match_the_seed() {
        let c = Config::try_parse_from(["gateway"]).unwrap();
        assert_eq!(c.port, 8000);
        assert_eq!(c.discovery.service_name, "gdp-growth-model");
        assert_eq!(c.upstream.retries, 1);
        assert_eq!(c.listen_addr().to_string(), "0.0.0.0:8000");
    }

    #[test]
    fn invalid_values_name_the_setting() {
        for (flag, value, var) in [
            ("--port", "99999", "GATEWAY_PORT"),
            ("--upstream-timeout", "0s", "GATEWAY_UPSTREAM_TIMEOUT"),
            ("--discovery-wait", "11m", "GATEWAY_DISCOVERY_WAIT"),
            (
                "--service-discovery-url",
                "not a url",
                "SERVICE_DISCOVERY_URL",
            ),
            ("--retries", "9", "GATEWAY_RETRIES"),
            ("--max-instances", "2000", "GATEWAY_MAX_INSTANCES"),
            ("--node-start-timeout", "0s", "GATEWAY_NODE_START_TIMEOUT"),
            ("--hedge-budget", "101", "GATEWAY_HEDGE_BUDGET"),
            ("--hedge-after", "0s", "GATEWAY_HEDGE_AFTER"),
            ("--body-limit", "0", "GATEWAY_BODY_LIMIT"),
            ("--body-timeout", "0s", "GATEWAY_BODY_TIMEOUT"),
            ("--max-connections", "0", "GATEWAY_MAX_CONNECTIONS"),
            ("--service-name", "", "SERVICE_NAME"),
            ("--service-name", " ", "SERVICE_NAME"),
            ("--admin-token", "", "GATEWAY_ADMIN_TOKEN"),
            ("--admin-token", "token ", "GATEWAY_ADMIN_TOKEN"),
            (
                "--discovery-recovery-grace",
                "soon",
                "GATEWAY_DISCOVERY_RECOVERY_GRACE",
            ),
        ] {
            let err = Config::try_parse_from(["gateway", flag, value])
                .unwrap_err()
                .to_string();
            assert!(err.contains(flag) && err.contains(var), "{flag}: {err}");
        }
    }

    #[test]
    fn open_lifecycle_endpoints_warn_beyond_loopback_only() {
        let parse = |args: &[&str]| {
            Config::try_parse_from(["gateway"].iter().chain(args))
                .unwrap()
                .open_admin_warning()
        };
        let warning = parse(&[]).expect("0.0.0.0 without a token warns");
        assert!(
            warning.contains("GATEWAY_ADMIN_TOKEN") && warning.contains("0.0.0.0:8000"),
            "{warning}"
        );
        assert!(parse(&["--host", "10.1.2.3"]).is_some());
        assert!(parse(&["--host", "127.0.0.1"]).is_none());
        assert!(parse(&["--host", "::1"]).is_none());
        assert!(parse(&["--admin-token", "t0ken"]).is_none());
    }

    #[test]
    fn joined_rules_name_both_settings() {
        let c = Config::try_parse_from(["gateway", "--eject-base", "1m", "--eject-max", "30s"])
            .unwrap();
        let err = c.check().unwrap_err();
        assert!(
            err.contains("GATEWAY_EJECT_BASE") && err.contains("GATEWAY_EJECT_MAX"),
            "{err}"
        );
        assert!(Config::try_parse_from(["gateway"]).unwrap().check().is_ok());
    }
}

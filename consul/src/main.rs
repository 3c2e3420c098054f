//! `consul-dev`: runs the Consul-compatible development stand-in (see [`consul::standin`]).
//! Production uses real Consul; this binary exists for local clusters and tests.
//!
//! It parses [`Config`], starts tracing, binds the listener and calls
//! [`consul::standin::serve`] until SIGINT or SIGTERM.

#![forbid(unsafe_code)]

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use consul::standin::{self, StandInConfig};

/// Command-line and environment configuration of consul-dev.
#[derive(Debug, Clone, Parser)]
#[command(
    version,
    about = "Consul-compatible stand-in for development and tests (production uses real Consul)"
)]
pub struct Config {
    /// Address the HTTP API listens on.
    #[arg(long, env = "CONSUL_DEV_BIND", default_value = "127.0.0.1:8500")]
    pub bind: SocketAddr,

    /// Management token: turns ACLs on with Consul's default-deny policy. Writes need it,
    /// reads without it come back empty (X-Consul-Token, ?token= or Authorization: Bearer).
    /// Unset: ACLs off, anyone who reaches the port may register and deregister services.
    #[arg(long, env = "CONSUL_HTTP_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// How often services with long-critical checks are reaped (Go duration).
    #[arg(long, env = "CONSUL_DEV_REAPER_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub reaper_interval: Duration,

    /// Minimum DeregisterCriticalServiceAfter (Go duration).
    #[arg(long, env = "CONSUL_DEV_DEREGISTER_FLOOR", default_value = "1m", value_parser = parse_duration)]
    pub deregister_floor: Duration,

    /// Address the node advertises (`Node.Address`, used for services registered without an
    /// address, and the leader address); defaults to the bind IP, or 127.0.0.1 when that is
    /// unspecified (0.0.0.0).
    #[arg(long, env = "CONSUL_DEV_ADVERTISE")]
    pub advertise: Option<IpAddr>,

    /// Node name reported in the catalog.
    #[arg(long, env = "CONSUL_DEV_NODE_NAME", default_value = "consul-dev")]
    pub node_name: String,

    /// Datacenter name reported in the catalog.
    #[arg(long, env = "CONSUL_DEV_DATACENTER", default_value = "dc1")]
    pub datacenter: String,

    /// Write logs as JSON lines.
    #[arg(long, env = "CONSUL_DEV_LOG_JSON")]
    pub log_json: bool,
}

impl Config {
    /// Returns the stand-in settings; the node advertises the bind IP (loopback when the
    /// bind address is unspecified).
    fn standin(&self) -> StandInConfig {
        let ip = self.bind.ip();
        StandInConfig {
            token: self.token.clone().filter(|t| !t.is_empty()),
            reaper_interval: self.reaper_interval,
            deregister_floor: self.deregister_floor,
            node_name: self.node_name.clone(),
            datacenter: self.datacenter.clone(),
            advertise_addr: match self.advertise {
                Some(ip) => ip,
                None if ip.is_unspecified() => StandInConfig::default().advertise_addr,
                None => ip,
            },
        }
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = consul::duration::parse(s)?;
    if d.is_zero() {
        return Err("must be greater than zero".to_string());
    }
    Ok(d)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    http_serve::telemetry::init(config.log_json);
    let listener = tokio::net::TcpListener::bind(config.bind)
        .await
        .with_context(|| format!("cannot listen on {}", config.bind))?;
    let addr = listener.local_addr().context("listener address")?;
    tracing::info!(
        %addr,
        "consul-dev (development stand-in; production uses real Consul) listening on {addr}"
    );
    let standin = config.standin();
    if standin.token.is_none() {
        tracing::warn!(
            "ACLs are off (no CONSUL_HTTP_TOKEN / --token): anyone who reaches {addr} can \
             register services and take over their traffic"
        );
    }
    standin::serve(listener, standin, http_serve::shutdown::signal())
        .await
        .context("serving the Consul stand-in")?;
    tracing::info!("consul-dev stopped");
    Ok(())
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
    fn parses_flags() {
        let c = Config::try_parse_from([
            "consul-dev",
            "--bind",
            "0.0.0.0:18500",
            "--token",
            "secret",
            "--reaper-interval",
            "1s",
            "--deregister-floor",
            "90s",
        ])
        .unwrap();
        let s = c.standin();
        assert_eq!(s.token.as_deref(), Some("secret"));
        assert_eq!(s.reaper_interval, Duration::from_secs(1));
        assert_eq!(s.deregister_floor, Duration::from_secs(90));
        assert!(s.advertise_addr.is_loopback());
        let c = Config::try_parse_from(["consul-dev", "--advertise", "10.1.2.3"]).unwrap();
        assert_eq!(c.standin().advertise_addr.to_string(), "10.1.2.3");
    }

    #[test]
    fn rejects_bad_durations_and_addresses() {
        assert!(Config::try_parse_from(["consul-dev", "--reaper-interval", "soon"]).is_err());
        assert!(Config::try_parse_from(["consul-dev", "--reaper-interval", "0s"]).is_err());
        assert!(Config::try_parse_from(["consul-dev", "--bind", "localhost"]).is_err());
    }
}

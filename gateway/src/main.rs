//! gateway binary: parses the configuration, starts logging (with a warning when the
//! lifecycle endpoints are open beyond loopback, see `Config::open_admin_warning`), binds the
//! listener and serves until SIGINT/SIGTERM. `--health-check` probes a running gateway
//! instead (exit 0 or 1), for container health checks in images without a shell.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use gateway::{AppState, Config};
use http_serve::{shutdown, telemetry};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let config = Config::parse();
    if config.health_check {
        let healthy = gateway::health_check(config.listen_addr(), Duration::from_secs(2)).await;
        return Ok(if healthy {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    telemetry::init(config.log_json);
    if let Some(warning) = config.open_admin_warning() {
        tracing::warn!("{warning}");
    }
    let addr = config.listen_addr();
    let state = AppState::new(config).context("invalid configuration")?;
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (GATEWAY_HOST/GATEWAY_PORT)"))?;
    gateway::serve(listener, state, shutdown::signal())
        .await
        .context("server error")?;
    Ok(ExitCode::SUCCESS)
}

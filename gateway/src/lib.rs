//! gateway: the cluster's front door on port 8000. It keeps the seed's API exactly, finds
//! healthy inference nodes in Consul with blocking queries, and sends each prediction to a
//! node picked uniformly at random, retrying once elsewhere when a node fails or is slow.
//!
//! # Layout
//! - [`config`]: [`Config`], clap flags with environment fallbacks, in sections
//!   (discovery, upstream, eject, and the runtime's own [`runtime::settings`]).
//! - [`state`]: [`AppState`], what the handlers share; builds every part from its section.
//! - [`error`]: [`GatewayError`] and its one status table; bodies are `{"detail": ...}`.
//! - [`http`]: the route table, request metrics and the OpenAPI document; handlers in
//!   `http/predict.rs`, `http/models.rs`, `http/health.rs`, `http/lifecycle.rs` (which also
//!   checks the lifecycle path parameters and the admin token), `http/cluster.rs` (the
//!   dashboard's JSON) and `http/ui.rs` (the dashboard page, files in `gateway/ui/`).
//! - [`discovery`]: the healthy set in a `watch`; [`discovery::consul`] keeps it fresh.
//! - [`balance`]: [`balance::RandomBalancer`], seedable random choice with ejection.
//! - [`proxy`]: pick, forward, hedge or retry on another node.
//! - [`hedge`]: when a slow attempt is hedged on another node: adaptive delay, budget.
//! - [`runtime`]: launch, list and stop nodes (Docker containers or local processes) for the
//!   lifecycle endpoints.
//! - [`upstream`]: the pooled node client and one exchange.
//! - [`stats`]: the dashboard's request, error and latency series (cluster and per node).
//! - [`telemetry`]: the Prometheus recorder and the per-node upstream series.
//!
//! The shutdown signal, the log setup, the metrics upkeep and the grace period come from
//! `http-serve`.
//!
//! Which way each layer points (`a → b`: `a` uses `b`; nothing points back, so no module
//! imports another that imports it):
//! - `http` → `proxy` (predictions), `runtime` (lifecycle), `state`, `stats`, `upstream`,
//!   `error`.
//! - `proxy` → `state`, `telemetry`, `stats`, `discovery`, `upstream`, `error`.
//! - `state` → `config`, `runtime`, `balance`, `hedge`, `telemetry`, `stats`, `discovery`,
//!   `upstream`: it builds each part from its section of the configuration; no part uses
//!   `state`.
//! - `config` → `runtime::settings` (the runtime owns its flags; `runtime` never uses
//!   `config`), and both → `flags` (the private duration parsers).
//! - `runtime` → `discovery`, `error`.
//! - `balance`, `telemetry`, `stats` → `discovery` → `upstream`.
//! - `error`, `hedge`, `upstream` and `flags` use no other module.

#![forbid(unsafe_code)]

pub mod balance;
pub mod config;
pub mod discovery;
pub mod error;
mod flags;
pub mod hedge;
pub mod http;
pub mod proxy;
pub mod runtime;
pub mod state;
pub mod stats;
pub mod telemetry;
pub mod upstream;

use std::future::Future;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use utoipa::OpenApi;
use utoipa_swagger_ui::SwaggerUi;

pub use config::Config;
pub use error::GatewayError;
pub use state::AppState;

/// Builds the whole application: API routes, Swagger UI at `/docs`, `/openapi.json`.
pub fn router(state: AppState) -> Router {
    http::routes()
        .merge(SwaggerUi::new("/docs").url("/openapi.json", http::ApiDoc::openapi()))
        .fallback(http::not_found)
        .method_not_allowed_fallback(http::method_not_allowed)
        .layer(axum::middleware::from_fn(http::track))
        .with_state(state)
}

/// Serves the gateway on `listener` until `shutdown` completes, then lets in-flight requests
/// finish for at most the configured grace period, and stops the Consul watcher.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let grace = state.config.shutdown_grace;
    let background = state.background.clone();
    http_serve::metrics_upkeep::spawn(state.metrics.clone(), background.clone());
    let runtime = state.runtime.clone();
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "gateway listening");
    }
    let limits = http_serve::Limits {
        client_timeout: state.config.client_timeout,
        body_timeout: state.config.body_timeout,
        max_body_bytes: usize::try_from(state.config.body_limit).unwrap_or(usize::MAX),
        max_connections: state.config.max_connections as usize,
    };
    let result =
        http_serve::serve_with_grace(listener, router(state), limits, shutdown, grace).await;
    background.cancel();
    // Node processes this gateway started stop with it (containers are left running).
    runtime.shutdown().await;
    result
}

/// Asks the gateway listening on `listen` (on this machine) for `GET /health`; returns
/// whether it answered 200.
pub async fn health_check(listen: std::net::SocketAddr, timeout: Duration) -> bool {
    let client = upstream::client(timeout);
    let addr = http_serve::local_address(listen).to_string();
    matches!(
        upstream::exchange(&client, hyper::Method::GET, &addr, "/health", None, bytes::Bytes::new(), upstream::Limits::small(timeout)).await,
        Ok(resp) if resp.status.is_success()
    )
}

//! `GET /health` and `GET /metrics`.

use axum::Json;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;

use crate::state::AppState;

/// The gateway's own health.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"status": "ok", "healthy_instances": 2, "discovery": "ok"}))]
pub struct HealthResponse {
    /// Always `ok` while the gateway answers.
    pub status: &'static str,
    /// Size of the healthy set.
    pub healthy_instances: usize,
    /// `ok` when the last Consul call succeeded, `stale` when Consul is unreachable (serving from
    /// the last known set), `recovering` when Consul answers again but some nodes of the last
    /// known set, kept for the recovery grace, are not listed (yet).
    pub discovery: &'static str,
}

/// Reports that the gateway is up, with the healthy set's size and freshness.
#[utoipa::path(
    get,
    path = "/health",
    tag = "ops",
    responses((status = 200, description = "The gateway is up", body = HealthResponse))
)]
pub async fn health(State(state): State<AppState>) -> Json<HealthResponse> {
    Json(HealthResponse {
        status: "ok",
        healthy_instances: state.discovery.endpoints().len(),
        discovery: discovery_state(&state),
    })
}

/// `ok`, `stale` or `recovering`, as [`HealthResponse::discovery`] describes them.
pub fn discovery_state(state: &AppState) -> &'static str {
    match state.discovery.status() {
        s if !s.is_up() => "stale",
        s if s.is_recovering() => "recovering",
        _ => "ok",
    }
}

/// Renders the Prometheus metrics.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "ops",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain"))
)]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let status = state.discovery.status();
    metrics::gauge!("gateway_healthy_instances").set(state.discovery.endpoints().len() as f64);
    metrics::gauge!("gateway_discovery_staleness_seconds").set(status.staleness_secs());
    metrics::gauge!("gateway_discovery_up").set(if status.is_up() { 1.0 } else { 0.0 });
    metrics::gauge!("gateway_discovery_recovering").set(if status.is_recovering() {
        1.0
    } else {
        0.0
    });
    state.metrics.run_upkeep();
    let mut text = state.metrics.render();
    state.node_metrics.retain(&state.discovery.endpoints());
    state.node_metrics.render(&mut text);
    ([(CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

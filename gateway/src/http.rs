//! The route table, request metrics and the OpenAPI document.

pub mod cluster;
pub mod health;
pub mod lifecycle;
pub mod models;
pub mod predict;
pub mod ui;

use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};
use utoipa::OpenApi;

use crate::error::GatewayError;
use crate::state::AppState;
use lifecycle::BearerAuth;

/// The OpenAPI document of every endpoint.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "gdp-serving gateway",
        description = "Front door of the model-serving cluster: discovers healthy inference nodes in Consul and balances predictions across them."
    ),
    paths(
        models::available,
        predict::gdp_growth_rate,
        predict::model_predict,
        predict::services,
        health::health,
        health::metrics,
        cluster::summary,
        cluster::models,
        lifecycle::launch,
        lifecycle::instances,
        lifecycle::shutdown,
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "models", description = "Models served by the cluster"),
        (name = "predict", description = "Predictions and the nodes that make them"),
        (name = "ops", description = "Gateway health, metrics and the cluster summary the dashboard at /ui shows"),
        (name = "lifecycle", description = "Launch, list and stop model instances (admin token when GATEWAY_ADMIN_TOKEN is set)"),
    )
)]
pub struct ApiDoc;

/// Returns the API routes and the dashboard (without the docs), still needing their state.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/models/available", get(models::available))
        .route(
            "/api/predict/gdp_growth_rate",
            post(predict::gdp_growth_rate),
        )
        .route("/api/predict/services", get(predict::services))
        .route(
            "/api/models/{model_name}/predict",
            post(predict::model_predict),
        )
        .route("/api/models/launch/{model_name}", post(lifecycle::launch))
        // NOTE: one route for both: axum rejects two routes that differ only in the parameter
        // name (GET takes a model name, DELETE a container id).
        .route(
            "/api/models/instances/{id}",
            get(lifecycle::instances).delete(lifecycle::shutdown),
        )
        .route("/health", get(health::health))
        .route("/metrics", get(health::metrics))
        .route("/api/cluster", get(cluster::summary))
        .route("/api/cluster/models", get(cluster::models))
        .merge(ui::routes())
}

/// An unknown route: FastAPI's `404 {"detail": "Not Found"}`.
pub async fn not_found() -> GatewayError {
    GatewayError::RouteNotFound
}

/// A known route with another method: FastAPI's `405 {"detail": "Method Not Allowed"}`.
pub async fn method_not_allowed() -> GatewayError {
    GatewayError::MethodNotAllowed
}

/// Records requests by route and status, and their latency.
pub async fn track(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = http_serve::method_label(request.method());
    let start = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("gateway_http_requests_total", "route" => route.clone(), "method" => method, "status" => status)
        .increment(1);
    metrics::histogram!("gateway_http_request_duration_seconds", "route" => route)
        .record(start.elapsed().as_secs_f64());
    response
}

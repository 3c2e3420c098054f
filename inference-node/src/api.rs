//! The HTTP API: the route table, plus the handlers shared by both API families.
//!
//! - [`seed`]: the seed's API (`/health`, `/predict`, `/models`), FastAPI-shaped errors.
//! - [`v2`]: the Open Inference Protocol (`/v2/...`), `{"error": ...}` bodies.
//! - here: `/ready`, `/metrics`, and unknown routes and methods (answered in the shape of the
//!   family their path belongs to).

pub mod seed;
pub mod v2;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::error::{Detail, NodeError, V2Error};
use crate::metrics;
use crate::state::AppState;

/// Builds the node's router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(seed::handlers::health))
        .route("/predict", post(seed::handlers::predict))
        .route("/models", get(seed::handlers::models))
        .route("/ready", get(ready))
        .route("/metrics", get(render_metrics))
        .route("/v2", get(v2::handlers::server_metadata))
        .route("/v2/health/live", get(v2::handlers::live))
        .route("/v2/health/ready", get(v2::handlers::ready))
        .route("/v2/models/{name}", get(v2::handlers::model_metadata))
        .route("/v2/models/{name}/ready", get(v2::handlers::model_ready))
        .route("/v2/models/{name}/infer", post(v2::handlers::infer))
        .route(
            "/v2/models/{name}/versions/{version}",
            get(v2::handlers::versioned_metadata),
        )
        .route(
            "/v2/models/{name}/versions/{version}/ready",
            get(v2::handlers::versioned_ready),
        )
        .route(
            "/v2/models/{name}/versions/{version}/infer",
            post(v2::handlers::versioned_infer),
        )
        .route("/v2/repository/index", post(v2::repository::index))
        .route(
            "/v2/repository/models/{name}/load",
            post(v2::repository::load),
        )
        .route(
            "/v2/repository/models/{name}/unload",
            post(v2::repository::unload),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(metrics::track))
        .with_state(state)
}

/// `GET /ready`: 200 when the node takes predictions, 503 otherwise (for load balancers and
/// probes that expect an unavailable server to say so).
async fn ready(State(state): State<AppState>) -> StatusCode {
    if state.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

async fn render_metrics(State(state): State<AppState>) -> Response {
    state.metrics.run_upkeep();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

async fn not_found(uri: Uri) -> Response {
    in_family_shape(&uri, NodeError::RouteNotFound)
}

async fn method_not_allowed(uri: Uri) -> Response {
    in_family_shape(&uri, NodeError::MethodNotAllowed)
}

/// Answers `error` in the shape of the API family `uri` belongs to: `{"error": ...}` under
/// `/v2` (Triton's clients read that key), FastAPI's `{"detail": ...}` elsewhere.
fn in_family_shape(uri: &Uri, error: NodeError) -> Response {
    let path = uri.path();
    if path == "/v2" || path.starts_with("/v2/") {
        V2Error(error).into_response()
    } else {
        Detail(error).into_response()
    }
}

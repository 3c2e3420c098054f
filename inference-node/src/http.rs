//! The HTTP API: the route table, plus the handlers shared by both API families.
//!
//! - [`seed`]: the seed's API (`/health`, `/predict`, `/models`), FastAPI-shaped errors.
//! - [`v2`]: the Open Inference Protocol (`/v2/...`), `{"error": ...}` bodies.

pub mod seed;
pub mod v2;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::error::{Detail, NodeError};
use crate::metrics;
use crate::state::AppState;

/// Builds the node's router.
pub fn router(state: AppState) -> Router {
    let body_limit = state.config.max_body_bytes;
    Router::new()
        .route("/health", get(seed::health))
        .route("/predict", post(seed::predict))
        .route("/models", get(seed::models))
        .route("/ready", get(v2::ready))
        .route("/metrics", get(render_metrics))
        .route("/v2", get(v2::server_metadata))
        .route("/v2/health/live", get(v2::live))
        .route("/v2/health/ready", get(v2::ready))
        .route("/v2/models/{name}", get(v2::model_metadata))
        .route("/v2/models/{name}/ready", get(v2::model_ready))
        .route("/v2/models/{name}/infer", post(v2::infer))
        .route(
            "/v2/models/{name}/versions/{version}",
            get(v2::versioned_metadata),
        )
        .route(
            "/v2/models/{name}/versions/{version}/ready",
            get(v2::versioned_ready),
        )
        .route(
            "/v2/models/{name}/versions/{version}/infer",
            post(v2::versioned_infer),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn(metrics::track))
        .with_state(state)
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

async fn not_found() -> Detail {
    Detail(NodeError::RouteNotFound)
}

async fn method_not_allowed() -> Detail {
    Detail(NodeError::MethodNotAllowed)
}

/// Maps a body-reading failure: over the limit is 413, anything else a client error.
pub(crate) fn body_error(
    rejection: axum::extract::rejection::BytesRejection,
    limit: usize,
) -> NodeError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        NodeError::PayloadTooLarge { limit }
    } else {
        NodeError::BadRequest(format!("the request body could not be read: {rejection}"))
    }
}

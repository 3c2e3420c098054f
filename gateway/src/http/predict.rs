//! `POST /api/predict/gdp_growth_rate`, `POST /api/models/{model_name}/predict` (the same,
//! with the model in the path; both go through [`forward_prediction`]) and
//! `GET /api/predict/services`.

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::HeaderMap;
use axum::http::header::CONTENT_TYPE;
use axum::response::Response;
use http_serve::{BodyError, FullBody};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use utoipa::{IntoParams, ToSchema};

use super::lifecycle::{path_param, validate_model_name};
use crate::error::{ErrorBody, GatewayError};
use crate::proxy;
use crate::state::AppState;

/// Optional query parameters of a prediction.
#[derive(Debug, Deserialize, IntoParams)]
pub struct PredictQuery {
    /// Model to use; only nodes serving it are picked (default: the node's default model).
    pub model: Option<String>,
}

/// A prediction body: one row, or a list of rows (a batch; predictions come back in the same
/// order). Documentation only, like [`PredictRequest`].
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum PredictBody {
    /// One row.
    Row(PredictRequest),
    /// A batch of rows.
    Batch(Vec<PredictRequest>),
}

/// One row of features (a JSON list of rows is a batch). Documentation only: the gateway
/// forwards the body unchanged and the node validates it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "gdp_per_capita": 50000, "unemployment_rate": 5.2,
    "gdp_growth_rate_lag": 2.1, "gdp_growth_rate_ma": 2.3
}))]
pub struct PredictRequest {
    /// GDP per capita.
    pub gdp_per_capita: f64,
    /// Unemployment rate, percent.
    pub unemployment_rate: f64,
    /// Last period's GDP growth rate.
    pub gdp_growth_rate_lag: f64,
    /// Moving average of the GDP growth rate.
    pub gdp_growth_rate_ma: f64,
}

/// A prediction body for any model: one row, or a list of rows (a batch; predictions come
/// back in the same order). Documentation only, like [`ModelRow`].
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum ModelPredictBody {
    /// One row.
    Row(ModelRow),
    /// A batch of rows.
    Batch(Vec<ModelRow>),
}

/// One row for any model: an object keyed by the model's feature names (`GET /api/cluster/models`
/// lists them with their types): a number (or numeric string) for a numeric feature, a string
/// for a string feature, `null` for a missing value where the feature accepts one. A missing
/// or extra key, a wrong type, `null` where the model takes no missing value, or a category
/// the model refuses is a 422 naming the field and the value. Documentation only: the gateway
/// forwards the body unchanged and the node validates it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "popul": 190, "TVnews": 7, "selfLR": 6, "age": 52, "income": null,
    "party": "weak Republican", "education": "college degree"
}))]
pub struct ModelRow(pub std::collections::BTreeMap<String, FeatureValue>);

/// A feature's value: a number, a string, or `null` (missing).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum FeatureValue {
    /// A numeric feature's value.
    Number(f64),
    /// A string feature's value (or a number written as a string).
    Text(String),
    /// A missing value, where the feature accepts one.
    Missing,
}

/// A node's prediction, passed through unchanged.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PredictResponse {
    /// Always `GDP growth prediction endpoint`.
    pub message: String,
    /// The input, echoed (a missing value as `null`).
    #[schema(value_type = Object)]
    pub input: serde_json::Value,
    /// The model that answered.
    pub model: String,
    /// One value per input row: a number (or a list of numbers, one per target) for a
    /// regressor; for a classifier its label, typed as its classes (number, string or
    /// boolean).
    #[schema(value_type = Vec<Object>)]
    pub prediction: Vec<serde_json::Value>,
    /// A classifier's class probabilities, one list per row in the order of `classes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probabilities: Option<Vec<Vec<f64>>>,
    /// A classifier's classes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub classes: Option<Vec<serde_json::Value>>,
}

/// The healthy nodes.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "Services:": ["gdp-growth-model-1:5000", "gdp-growth-model-2:5000"],
    "services": ["gdp-growth-model-1:5000", "gdp-growth-model-2:5000"]
}))]
pub struct ServicesResponse {
    /// The seed's key, colon included.
    #[serde(rename = "Services:")]
    pub services_seed: Vec<String>,
    /// The same list under a plain key.
    pub services: Vec<String>,
}

/// Predicts the GDP growth rate on a randomly picked healthy node.
///
/// The body is forwarded unchanged; a node's 4xx comes back unchanged. A connect error,
/// timeout or 5xx is retried once on a different node; an attempt not answered within the
/// hedge delay is also sent to a different node, and the first answer wins.
#[utoipa::path(
    post,
    path = "/api/predict/gdp_growth_rate",
    tag = "predict",
    params(PredictQuery),
    request_body(content = PredictBody, description = "One row, or a JSON list of rows: the GDP features for the GDP models; with `?model=NAME`, that model's own features, as ModelPredictBody describes"),
    responses(
        (status = 200, description = "The node's prediction", body = PredictResponse),
        (status = 404, description = "No healthy node serves the model", body = ErrorBody),
        (status = 408, description = "Body stalled, or not complete within the body timeout", body = ErrorBody),
        (status = 413, description = "Body over the limit", body = ErrorBody),
        (status = 422, description = "Invalid input (from the node)", body = Object),
        (status = 502, description = "Nodes failed, retry included", body = ErrorBody),
        (status = 503, description = "No healthy node", body = ErrorBody),
        (status = 504, description = "Node timed out", body = ErrorBody),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn gdp_growth_rate(
    State(state): State<AppState>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    RawQuery(raw_query): RawQuery,
    headers: HeaderMap,
    body: Result<FullBody, BodyError>,
) -> Result<Response, GatewayError> {
    let Query(query) = query.map_err(|e| GatewayError::BadRequest(e.body_text()))?;
    let model = http_serve::last_query_value(&query, "model");
    let path = match raw_query {
        Some(q) => format!("/predict?{q}"),
        None => "/predict".to_string(),
    };
    forward_prediction(&state, model, &path, &headers, body).await
}

/// Predicts with the model `model_name` on a randomly picked healthy node serving it.
///
/// The same as `POST /api/predict/gdp_growth_rate?model={model_name}`: the body is forwarded
/// unchanged, a node's 4xx comes back unchanged, failures are retried and slow attempts
/// hedged on another node. Query parameters are not forwarded.
#[utoipa::path(
    post,
    path = "/api/models/{model_name}/predict",
    tag = "predict",
    params(("model_name" = String, Path, description = "Model to use; only nodes serving it are picked", pattern = "^[A-Za-z][A-Za-z0-9_-]{0,63}$")),
    request_body(content = ModelPredictBody, description = "One row, or a JSON list of rows, keyed by the model's feature names"),
    responses(
        (status = 200, description = "The node's prediction", body = PredictResponse),
        (status = 404, description = "No healthy node serves the model", body = ErrorBody),
        (status = 408, description = "Body stalled, or not complete within the body timeout", body = ErrorBody),
        (status = 413, description = "Body over the limit", body = ErrorBody),
        (status = 422, description = "Not a plain model name, or invalid input (from the node)", body = Object),
        (status = 502, description = "Nodes failed, retry included", body = ErrorBody),
        (status = 503, description = "No healthy node", body = ErrorBody),
        (status = 504, description = "Node timed out", body = ErrorBody),
    )
)]
#[tracing::instrument(skip_all)]
pub async fn model_predict(
    State(state): State<AppState>,
    model_name: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<FullBody, BodyError>,
) -> Result<Response, GatewayError> {
    let model = path_param(model_name)?;
    validate_model_name(&model)?;
    // The name is plain (letters, digits, `_`, `-`): nothing to escape in the query.
    let path = format!("/predict?model={model}");
    forward_prediction(&state, Some(&model), &path, &headers, body).await
}

/// Forwards a prediction body to `path` (the node's `/predict` with its query) on a node
/// serving `model`, as [`proxy::forward`] does.
async fn forward_prediction(
    state: &AppState,
    model: Option<&str>,
    path: &str,
    headers: &HeaderMap,
    body: Result<FullBody, BodyError>,
) -> Result<Response, GatewayError> {
    // Read whole (bounded, one buffer) before a node is picked: a slow client holds no
    // upstream connection, and a retry resends the same bytes.
    let FullBody(body) = body.map_err(|e| match e {
        BodyError::TooLarge { .. } => GatewayError::PayloadTooLarge(state.config.body_limit),
        BodyError::Stalled { .. } => GatewayError::BodyTimeout,
        BodyError::TooSlow { timeout } => GatewayError::BodyTooSlow(timeout),
        BodyError::Failed(_) => GatewayError::BadRequest(e.to_string()),
    })?;
    let started = Instant::now();
    let answer = proxy::forward(state, model, path, headers.get(CONTENT_TYPE), body).await;
    let status = match &answer {
        Ok(response) => response.status(),
        Err(error) => error.status(),
    };
    state
        .stats
        .record_request(started.elapsed(), status.is_server_error());
    answer
}

/// Lists the healthy nodes (`host:port`), as Consul last reported them.
#[utoipa::path(
    get,
    path = "/api/predict/services",
    tag = "predict",
    responses((status = 200, description = "Healthy nodes", body = ServicesResponse))
)]
pub async fn services(State(state): State<AppState>) -> Json<ServicesResponse> {
    let services: Vec<String> = state
        .discovery
        .endpoints()
        .iter()
        .map(|e| e.addr.clone())
        .collect();
    Json(ServicesResponse {
        services_seed: services.clone(),
        services,
    })
}

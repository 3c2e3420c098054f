//! The Open Inference Protocol (KServe V2) REST endpoints; errors are `{"error": ...}`.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use http_serve::{BodyError, FullBody};
use onnx_model::ModelInfo;
use onnx_model::contract::{LABEL_NAME, OUTPUT_NAME, PROBABILITIES_NAME, Task};

use super::binary;
use super::wire::{
    self, InferRequest, InferResponse, ModelMetadata, OutputData, OutputTensor, ServerMetadata,
};
use crate::error::{NodeError, V2Error};
use std::sync::Arc;

use crate::registry::Served;
use crate::state::AppState;

/// The path parameters of a V2 route; a path that does not decode (`%FF`) is a 400 in the
/// protocol's `{"error": ...}` shape, not axum's plain text.
#[derive(FromRequestParts)]
#[from_request(via(Path), rejection(V2Error))]
pub struct V2Path<T>(pub T);

impl From<PathRejection> for V2Error {
    fn from(rejection: PathRejection) -> Self {
        V2Error(NodeError::BadRequest(rejection.body_text()))
    }
}

/// `GET /v2`: server metadata.
pub async fn server_metadata() -> Json<ServerMetadata> {
    Json(ServerMetadata {
        name: "inference-node",
        version: env!("CARGO_PKG_VERSION"),
        extensions: vec!["binary_tensor_data"],
    })
}

/// `GET /v2/health/live`: 200 while the process serves.
pub async fn live() -> StatusCode {
    StatusCode::OK
}

/// `GET /v2/health/ready`: 200 when models are loaded and the node is not draining, 400
/// otherwise (the protocol's "4xx false", and Triton's 400).
pub async fn ready(State(state): State<AppState>) -> StatusCode {
    if state.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    }
}

/// `GET /v2/models/{name}`: model metadata.
pub async fn model_metadata(
    State(state): State<AppState>,
    V2Path(name): V2Path<String>,
) -> Result<Json<ModelMetadata>, V2Error> {
    metadata(&state, &name, None)
}

fn metadata(
    state: &AppState,
    name: &str,
    version: Option<u64>,
) -> Result<Json<ModelMetadata>, V2Error> {
    let snapshot = state.registry.snapshot();
    let served = snapshot.get(name, version)?;
    let mut metadata = ModelMetadata::from_info(served.model.info());
    metadata.versions = snapshot.versions(name).iter().map(u64::to_string).collect();
    Ok(Json(metadata))
}

/// `GET /v2/models/{name}/ready`: 404 for an unknown model; for a loaded one, the node's
/// readiness (200, or 400 while it drains).
pub async fn model_ready(
    State(state): State<AppState>,
    V2Path(name): V2Path<String>,
) -> Result<StatusCode, V2Error> {
    state.registry.get(Some(&name), None)?;
    Ok(ready(State(state)).await)
}

/// `GET /v2/models/{name}/versions/{version}`.
pub async fn versioned_metadata(
    State(state): State<AppState>,
    V2Path((name, version)): V2Path<(String, String)>,
) -> Result<Json<ModelMetadata>, V2Error> {
    let version = parse_version(&name, &version)?;
    metadata(&state, &name, Some(version))
}

/// `GET /v2/models/{name}/versions/{version}/ready`.
pub async fn versioned_ready(
    State(state): State<AppState>,
    V2Path((name, version)): V2Path<(String, String)>,
) -> Result<StatusCode, V2Error> {
    let version = parse_version(&name, &version)?;
    state.registry.get(Some(&name), Some(version))?;
    Ok(ready(State(state)).await)
}

/// `POST /v2/models/{name}/infer`.
pub async fn infer(
    State(state): State<AppState>,
    V2Path(name): V2Path<String>,
    headers: HeaderMap,
    body: Result<FullBody, BodyError>,
) -> Result<Response, V2Error> {
    let _permit = state.admit()?;
    let served = state.registry.get(Some(&name), None)?;
    run_infer(&state, served, &headers, body).await
}

/// `POST /v2/models/{name}/versions/{version}/infer`.
pub async fn versioned_infer(
    State(state): State<AppState>,
    V2Path((name, version)): V2Path<(String, String)>,
    headers: HeaderMap,
    body: Result<FullBody, BodyError>,
) -> Result<Response, V2Error> {
    let _permit = state.admit()?;
    let version = parse_version(&name, &version)?;
    let served = state.registry.get(Some(&name), Some(version))?;
    run_infer(&state, served, &headers, body).await
}

async fn run_infer(
    state: &AppState,
    served: Arc<Served>,
    headers: &HeaderMap,
    body: Result<FullBody, BodyError>,
) -> Result<Response, V2Error> {
    let FullBody(body) = body.map_err(NodeError::from)?;
    let (json, binary_data) = binary::split_body(headers, body)?;
    let mut request: InferRequest = serde_json::from_slice(&json)
        .map_err(|e| NodeError::BadRequest(format!("invalid inference request: {e}")))?;
    if let Some(binary_data) = binary_data {
        binary::attach(&mut request.inputs, binary_data)?;
    }
    let info = served.model.info();
    let decoded = wire::decode_mixed(&mut request, info, state.config.max_batch_rows)?;
    let n_rows = decoded.n_rows;
    let data = served
        .batcher
        .predict_mixed(decoded.values, decoded.strings)
        .await?
        .values;
    let mut outputs = match info.task {
        Task::Regression => vec![OutputTensor::new(
            OUTPUT_NAME,
            "FP64",
            vec![n_rows, info.n_targets],
            OutputData::Fp64(data),
        )],
        Task::Classification => classifier_outputs(info, n_rows, &data),
    };
    // Requested outputs (checked against the model's by `wire::decode`) select among them.
    if let Some(requested) = &request.outputs {
        outputs.retain(|o| requested.iter().any(|r| r.name == o.name));
    }
    let response = InferResponse {
        model_name: info.name.clone(),
        model_version: served.version.to_string(),
        id: request.id.take(),
        outputs,
    };
    Ok(binary::respond(&request, response)?)
}

/// A classifier's `label` (`[N]`, typed as its classes) and `probabilities` (`[N, C]`) from
/// its prediction rows `[label index, p...]`.
fn classifier_outputs(info: &ModelInfo, n_rows: usize, data: &[f64]) -> Vec<OutputTensor> {
    let width = 1 + info.n_classes();
    let labels = data
        .chunks(width)
        .map(|row| info.classes[row[0] as usize].clone())
        .collect();
    let probabilities = data
        .chunks(width)
        .flat_map(|row| &row[1..])
        .copied()
        .collect();
    vec![
        OutputTensor::new(
            LABEL_NAME,
            wire::label_datatype(&info.classes),
            vec![n_rows],
            OutputData::Labels(labels),
        ),
        OutputTensor::new(
            PROBABILITIES_NAME,
            "FP64",
            vec![n_rows, info.n_classes()],
            OutputData::Fp64(probabilities),
        ),
    ]
}

/// A version in a path: a positive integer; anything else names no version (404).
fn parse_version(name: &str, version: &str) -> Result<u64, NodeError> {
    version
        .parse::<u64>()
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| NodeError::ModelNotFound {
            name: format!("{name} version {version}"),
            available: vec!["versions are positive integers".to_string()],
        })
}

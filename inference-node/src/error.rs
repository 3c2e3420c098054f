//! `NodeError`, the crate's one error type, and its mapping to HTTP responses.
//!
//! The layers below the HTTP API return their own errors ([`LoadError`], [`UnknownModel`],
//! [`PredictError`], and `http_serve`'s [`BodyError`]); they become `NodeError`s here, and
//! every `NodeError` maps to a status in [`NodeError::status`] (one exhaustive table). The
//! body shape depends on the API family that answers: the seed's endpoints speak FastAPI's
//! `{"detail": ...}` ([`Detail`]), the Open Inference Protocol speaks `{"error": ...}`
//! ([`V2Error`]). 5xx bodies never carry internal detail; it goes to the log instead.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_serve::BodyError;
use serde::Serialize;
use serde_json::Value;

use crate::batcher::PredictError;
use crate::registry::{LoadError, UnknownModel};

/// Everything that can go wrong in the node, at startup or while serving a request.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// A setting is invalid; the message names it.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The models could not be loaded (ONNX Runtime, the models directory, a model file, or
    /// no default model).
    #[error(transparent)]
    Models(#[from] LoadError),
    /// A repository request (load, unload) failed: 404 for a model without files, 409 for
    /// unloading the default model, 400 for a file that does not load.
    #[error("{0}")]
    Repository(LoadError),
    /// The request body failed validation (FastAPI's 422 list of field errors).
    #[error("{}", summarize(.0))]
    Validation(Vec<FieldError>),
    /// The model's answer overflowed (inputs far outside the model's range).
    #[error(
        "the prediction for row {row} is not a finite number; check that the inputs are in range"
    )]
    NonFinitePrediction { row: usize },
    /// An Open Inference Protocol request is malformed (Triton's INVALID_ARG, 400).
    #[error("{0}")]
    BadRequest(String),
    /// The body is not JSON by its `Content-Type`.
    #[error("unsupported Content-Type {0:?}: send application/json")]
    UnsupportedMediaType(String),
    /// The client stopped sending its body for longer than the client timeout.
    #[error("the request body stalled: no data within the client timeout")]
    BodyTimeout,
    /// The body was not complete within the body timeout of its request.
    #[error(
        "the request body was not complete within {} of its request",
        humantime::format_duration(*.timeout)
    )]
    BodyTooSlow { timeout: std::time::Duration },
    /// The body exceeds the configured limit.
    #[error("request body too large: the limit is {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// No model of that name is loaded (long names are echoed in part).
    #[error("model {:?} not found; loaded models: {}", http_serve::echo_name(.name),
        .available.iter().map(|a| http_serve::echo_name(a)).collect::<Vec<_>>().join(", "))]
    ModelNotFound {
        name: String,
        available: Vec<String>,
    },
    /// No such route.
    #[error("Not Found")]
    RouteNotFound,
    /// The route exists but not with this method.
    #[error("Method Not Allowed")]
    MethodNotAllowed,
    /// The in-flight bound is reached; the client should retry later.
    #[error("too many requests in flight (limit {limit}); retry later")]
    Overloaded { limit: usize },
    /// The node is draining for shutdown.
    #[error("the node is shutting down")]
    ShuttingDown,
    /// ONNX Runtime failed on a valid request.
    #[error("inference failed: {0}")]
    Inference(String),
}

impl NodeError {
    /// Returns the HTTP status for this error (the one place statuses are decided).
    pub fn status(&self) -> StatusCode {
        match self {
            NodeError::Validation(_) | NodeError::NonFinitePrediction { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            NodeError::BadRequest(_) => StatusCode::BAD_REQUEST,
            NodeError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            NodeError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            NodeError::BodyTimeout | NodeError::BodyTooSlow { .. } => StatusCode::REQUEST_TIMEOUT,
            NodeError::ModelNotFound { .. } | NodeError::RouteNotFound => StatusCode::NOT_FOUND,
            NodeError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            NodeError::Overloaded { .. } => StatusCode::TOO_MANY_REQUESTS,
            NodeError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            NodeError::Repository(error) => match error {
                LoadError::NoFile { .. } => StatusCode::NOT_FOUND,
                LoadError::DefaultModel(_) => StatusCode::CONFLICT,
                LoadError::Model(_)
                | LoadError::Check { .. }
                | LoadError::NonUtf8Name(_)
                | LoadError::NoDefault { .. } => StatusCode::BAD_REQUEST,
                LoadError::Runtime(_)
                | LoadError::UnreadableDir { .. }
                | LoadError::Thread { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            },
            NodeError::Config(_) | NodeError::Models(_) | NodeError::Inference(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    /// The message a client may see: the error itself, or a generic text for 5xx.
    fn public_message(&self) -> String {
        let status = self.status();
        if status.is_server_error() && !matches!(self, NodeError::ShuttingDown) {
            tracing::error!(error = %self, "request failed");
            "Internal Server Error".to_string()
        } else {
            self.to_string()
        }
    }

    fn finish(&self, body: impl Serialize) -> Response {
        let mut response = (self.status(), Json(body)).into_response();
        if matches!(self, NodeError::Overloaded { .. } | NodeError::ShuttingDown) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// A body-reading failure: over the limit is 413, a stalled or too slow body 408, a broken
/// one a client error.
impl From<BodyError> for NodeError {
    fn from(error: BodyError) -> Self {
        match error {
            BodyError::TooLarge { limit } => NodeError::PayloadTooLarge { limit },
            BodyError::Stalled { .. } => NodeError::BodyTimeout,
            BodyError::TooSlow { timeout } => NodeError::BodyTooSlow { timeout },
            BodyError::Failed(_) => NodeError::BadRequest(error.to_string()),
        }
    }
}

impl From<UnknownModel> for NodeError {
    fn from(error: UnknownModel) -> Self {
        NodeError::ModelNotFound {
            name: error.name,
            available: error.available,
        }
    }
}

impl From<PredictError> for NodeError {
    fn from(error: PredictError) -> Self {
        match error {
            PredictError::NonFinite { row } => NodeError::NonFinitePrediction { row },
            PredictError::Stopped | PredictError::Dropped | PredictError::Failed(_) => {
                NodeError::Inference(error.to_string())
            }
        }
    }
}

/// One entry of a FastAPI/pydantic validation error list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldError {
    /// pydantic's error type, e.g. `missing`, `float_parsing`, `extra_forbidden`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Where the error is: `["body", "<field>"]`, `["body", <row>, "<field>"]`, ...
    pub loc: Vec<Value>,
    /// Human-readable message.
    pub msg: String,
    /// The offending input.
    pub input: Value,
    /// Extra context (pydantic's `ctx`), when there is any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ctx: Option<Value>,
}

fn summarize(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| {
            let loc: Vec<String> = e
                .loc
                .iter()
                .skip(1)
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect();
            if loc.is_empty() {
                format!("body: {}", e.msg)
            } else {
                format!("{}: {}", loc.join("."), e.msg)
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// A [`NodeError`] answered in FastAPI's shape: `{"detail": "..."}`, or for validation
/// errors `{"detail": [{"type", "loc", "msg", "input"}, ...]}`.
#[derive(Debug)]
pub struct Detail(pub NodeError);

impl From<NodeError> for Detail {
    fn from(error: NodeError) -> Self {
        Detail(error)
    }
}

impl From<UnknownModel> for Detail {
    fn from(error: UnknownModel) -> Self {
        Detail(error.into())
    }
}

impl From<PredictError> for Detail {
    fn from(error: PredictError) -> Self {
        Detail(error.into())
    }
}

impl IntoResponse for Detail {
    fn into_response(self) -> Response {
        #[derive(Serialize)]
        struct Body<T> {
            detail: T,
        }
        match &self.0 {
            // Serialized straight from the list, not through a JSON value tree.
            NodeError::Validation(errors) => self.0.finish(Body { detail: errors }),
            // A 422 on the seed's API always carries a list, as FastAPI's do.
            NodeError::NonFinitePrediction { row } => {
                let error = FieldError {
                    kind: "value_error",
                    loc: vec!["body".into(), (*row).into()],
                    msg: self.0.to_string(),
                    input: Value::Null,
                    ctx: None,
                };
                self.0.finish(Body { detail: [error] })
            }
            other => self.0.finish(Body {
                detail: other.public_message(),
            }),
        }
    }
}

/// A [`NodeError`] answered in the Open Inference Protocol's shape: `{"error": "..."}`.
#[derive(Debug)]
pub struct V2Error(pub NodeError);

impl From<NodeError> for V2Error {
    fn from(error: NodeError) -> Self {
        V2Error(error)
    }
}

impl From<UnknownModel> for V2Error {
    fn from(error: UnknownModel) -> Self {
        V2Error(error.into())
    }
}

impl From<PredictError> for V2Error {
    fn from(error: PredictError) -> Self {
        V2Error(error.into())
    }
}

impl IntoResponse for V2Error {
    fn into_response(self) -> Response {
        let message = self.0.public_message();
        self.0.finish(serde_json::json!({ "error": message }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_table() {
        let cases = [
            (NodeError::Validation(vec![]), 422),
            (NodeError::BadRequest("x".into()), 400),
            (NodeError::UnsupportedMediaType("text/plain".into()), 415),
            (NodeError::PayloadTooLarge { limit: 10 }, 413),
            (NodeError::BodyTimeout, 408),
            (
                NodeError::BodyTooSlow {
                    timeout: std::time::Duration::from_secs(60),
                },
                408,
            ),
            (
                NodeError::ModelNotFound {
                    name: "X".into(),
                    available: vec![],
                },
                404,
            ),
            (NodeError::RouteNotFound, 404),
            (NodeError::MethodNotAllowed, 405),
            (NodeError::Overloaded { limit: 1 }, 429),
            (NodeError::ShuttingDown, 503),
            (NodeError::Inference("boom".into()), 500),
        ];
        for (error, status) in cases {
            assert_eq!(error.status().as_u16(), status, "{error:?}");
        }
    }

    #[test]
    fn server_errors_hide_their_detail() {
        let response = Detail(NodeError::Inference("secret path /x".into())).into_response();
        assert_eq!(response.status(), 500);
        let response = V2Error(NodeError::Inference("secret".into())).into_response();
        assert_eq!(response.status(), 500);
        assert_eq!(
            NodeError::Inference("secret".into()).public_message(),
            "Internal Server Error"
        );
    }

    async fn detail_json(error: NodeError) -> (u16, Value) {
        let response = Detail(error).into_response();
        let status = response.status().as_u16();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn every_422_on_the_seed_api_lists_its_errors() {
        let (status, body) = detail_json(NodeError::NonFinitePrediction { row: 3 }).await;
        assert_eq!(status, 422);
        let entry = &body["detail"][0];
        assert_eq!(entry["type"], "value_error");
        assert_eq!(entry["loc"], serde_json::json!(["body", 3]));
        assert!(entry["msg"].as_str().unwrap().contains("row 3"), "{body}");
        let (status, body) = detail_json(NodeError::Validation(vec![FieldError {
            kind: "missing",
            loc: vec!["body".into(), "x".into()],
            msg: "Field required".into(),
            input: Value::Null,
            ctx: None,
        }]))
        .await;
        assert_eq!(status, 422);
        assert_eq!(body["detail"][0]["loc"], serde_json::json!(["body", "x"]));
        let (status, body) = detail_json(NodeError::RouteNotFound).await;
        assert_eq!(
            (status, body),
            (404, serde_json::json!({"detail": "Not Found"}))
        );
    }

    #[test]
    fn validation_summary_names_fields() {
        let error = NodeError::Validation(vec![FieldError {
            kind: "missing",
            loc: vec!["body".into(), 2.into(), "gdp_per_capita".into()],
            msg: "Field required".into(),
            input: Value::Null,
            ctx: None,
        }]);
        assert_eq!(error.to_string(), "2.gdp_per_capita: Field required");
    }
}

//! The seed's API, kept exactly: `GET /health`, `POST /predict`, plus `GET /models`.
//!
//! Errors answer in FastAPI's shape (`{"detail": ...}`), since the seed's clients parse it.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Serialize, Serializer};

use crate::error::{Detail, NodeError};
use crate::http::body_error;
use crate::input;
use crate::model::ModelInfo;
use crate::state::AppState;

/// The seed's fixed `message` field.
pub const PREDICT_MESSAGE: &str = "GDP growth prediction endpoint";

/// `GET /health` body.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct HealthResponse {
    /// `ok`, or `shutting down` while draining (with a 503).
    pub status: String,
    /// The default model's name.
    pub model: String,
}

/// `GET /health`: `{"status": "ok", "model": "<default model>"}`.
pub async fn health(State(state): State<AppState>) -> Response {
    let model = state.registry.default_name().to_string();
    if state.is_draining() {
        let body = HealthResponse {
            status: "shutting down".into(),
            model,
        };
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    }
    Json(HealthResponse {
        status: "ok".into(),
        model,
    })
    .into_response()
}

/// `GET /models` body.
#[derive(Debug, Serialize)]
pub struct ModelsResponse<'a> {
    /// The model used when a request names none.
    pub default_model: &'a str,
    /// Every loaded model, ordered by name.
    pub models: Vec<&'a ModelInfo>,
}

/// `GET /models`: every loaded model with its metadata.
pub async fn models(State(state): State<AppState>) -> Response {
    Json(ModelsResponse {
        default_model: state.registry.default_name(),
        models: state.registry.infos().collect(),
    })
    .into_response()
}

/// Query parameters of `POST /predict`.
#[derive(Debug, Deserialize)]
pub struct PredictQuery {
    /// Model to use instead of the default.
    pub model: Option<String>,
}

/// `POST /predict[?model=NAME]`: one row or a list of rows in, predictions out.
pub async fn predict(
    State(state): State<AppState>,
    query: Result<Query<PredictQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Detail> {
    let _permit = state.admit()?;
    let query = query.map_err(|e| NodeError::BadRequest(format!("invalid query string: {e}")))?;
    let served = state.registry.get(query.model.as_deref())?;
    check_content_type(&headers)?;
    let body = body.map_err(|r| body_error(r, state.config.max_body_bytes))?;
    let info = served.model.info();
    let rows = input::parse(&body, &info.feature_names, state.config.max_batch_rows)
        .map_err(NodeError::Validation)?;
    let predictions = served.batcher.predict(rows.values.clone()).await?;
    let response = PredictResponse {
        message: PREDICT_MESSAGE,
        input: Echo {
            names: &info.feature_names,
            values: &rows.values,
            batch: rows.batch,
        },
        model: &info.name,
        prediction: Prediction {
            values: &predictions,
            n_targets: served.batcher.n_targets(),
        },
    };
    // Sized up front: a 1000-row answer is ~150 kB, and growing a small buffer to that
    // copies it a dozen times.
    let mut json = Vec::with_capacity(body.len() + 32 * predictions.len() + 128);
    serde_json::to_writer(&mut json, &response)
        .map_err(|e| NodeError::Inference(format!("cannot encode the answer: {e}")))?;
    Ok(([(header::CONTENT_TYPE, JSON_CONTENT_TYPE)], json).into_response())
}

const JSON_CONTENT_TYPE: HeaderValue = HeaderValue::from_static("application/json");

/// FastAPI reads the body as JSON when `Content-Type` is absent, `application/json` or
/// `application/*+json`; anything else is refused here with a 415.
fn check_content_type(headers: &HeaderMap) -> Result<(), NodeError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let text = value.to_str().unwrap_or("");
    let essence = text
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let json = essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"));
    if json {
        Ok(())
    } else {
        Err(NodeError::UnsupportedMediaType(text.to_string()))
    }
}

/// `POST /predict` body.
#[derive(Serialize)]
struct PredictResponse<'a> {
    message: &'static str,
    input: Echo<'a>,
    model: &'a str,
    prediction: Prediction<'a>,
}

/// The validated input echoed back: an object of floats, or a list of them.
struct Echo<'a> {
    names: &'a [String],
    values: &'a [f64],
    batch: bool,
}

struct Row<'a> {
    names: &'a [String],
    values: &'a [f64],
}

impl Serialize for Row<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.names.len()))?;
        for (name, value) in self.names.iter().zip(self.values) {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

impl Serialize for Echo<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let width = self.names.len();
        if !self.batch {
            return Row {
                names: self.names,
                values: self.values,
            }
            .serialize(serializer);
        }
        let mut seq = serializer.serialize_seq(Some(self.values.len() / width))?;
        for values in self.values.chunks(width) {
            seq.serialize_element(&Row {
                names: self.names,
                values,
            })?;
        }
        seq.end()
    }
}

/// Predictions in row order: a float per row, or a list per row for multi-output models.
struct Prediction<'a> {
    values: &'a [f64],
    n_targets: usize,
}

impl Serialize for Prediction<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.n_targets == 1 {
            return self.values.serialize(serializer);
        }
        let mut seq = serializer.serialize_seq(Some(self.values.len() / self.n_targets))?;
        for row in self.values.chunks(self.n_targets) {
            seq.serialize_element(row)?;
        }
        seq.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_follow_fastapi() {
        let mut headers = HeaderMap::new();
        assert!(check_content_type(&headers).is_ok());
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "application/vnd.api+json",
        ] {
            headers.insert(header::CONTENT_TYPE, ok.parse().unwrap());
            assert!(check_content_type(&headers).is_ok(), "{ok}");
        }
        for bad in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data",
        ] {
            headers.insert(header::CONTENT_TYPE, bad.parse().unwrap());
            assert!(check_content_type(&headers).is_err(), "{bad}");
        }
    }

    #[test]
    fn echo_and_prediction_serialize_like_the_seed() {
        let names = ["a".to_string(), "b".to_string()];
        let response = PredictResponse {
            message: PREDICT_MESSAGE,
            input: Echo {
                names: &names,
                values: &[50000.0, 5.2],
                batch: false,
            },
            model: "LinearRegression",
            prediction: Prediction {
                values: &[2.45],
                n_targets: 1,
            },
        };
        assert_eq!(
            serde_json::to_string(&response).unwrap(),
            r#"{"message":"GDP growth prediction endpoint","input":{"a":50000.0,"b":5.2},"model":"LinearRegression","prediction":[2.45]}"#
        );
        let batch = Echo {
            names: &names,
            values: &[1.0, 2.0, 3.0, 4.0],
            batch: true,
        };
        assert_eq!(
            serde_json::to_string(&batch).unwrap(),
            r#"[{"a":1.0,"b":2.0},{"a":3.0,"b":4.0}]"#
        );
    }
}

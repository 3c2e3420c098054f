//! The seed's endpoints, kept exactly: `GET /health`, `POST /predict`, plus `GET /models`.
//!
//! Errors answer in FastAPI's shape (`{"detail": ...}`), since the seed's clients parse it.

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_serve::{BodyError, FullBody};
use onnx_model::ModelInfo;
use onnx_model::contract::{Feature, FeatureType, Task};
use serde::{Deserialize, Serialize};

use super::input;
use crate::error::{Detail, NodeError};
use crate::registry::LoadFailure;
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
    /// Every loaded model (its newest version), ordered by name.
    pub models: Vec<ModelEntry<'a>>,
    /// Model files that did not load (the serving version, if any, stays).
    pub load_errors: Vec<LoadFailure>,
}

/// One model in `GET /models`: its metadata, plus its versions.
#[derive(Debug, Serialize)]
pub struct ModelEntry<'a> {
    /// The newest version's metadata.
    #[serde(flatten)]
    pub info: &'a ModelInfo,
    /// The version unversioned requests get (the newest).
    pub version: u64,
    /// Every loaded version, oldest first.
    pub versions: Vec<u64>,
}

/// `GET /models`: every loaded model with its metadata.
pub async fn models(State(state): State<AppState>) -> Response {
    let snapshot = state.registry.snapshot();
    let models = snapshot
        .newest()
        .map(|served| ModelEntry {
            info: served.model.info(),
            version: served.version,
            versions: snapshot.versions(served.model.name()),
        })
        .collect();
    Json(ModelsResponse {
        default_model: state.registry.default_name(),
        models,
        load_errors: state.registry.load_errors(),
    })
    .into_response()
}

/// The response header naming the model version that answered.
pub const MODEL_VERSION_HEADER: &str = "model-version";

/// The query parameters of `POST /predict` in order (`model` picks the model; others are
/// ignored, as FastAPI does).
type QueryPairs = Vec<(String, String)>;

/// `POST /predict[?model=NAME][&version=N]`: one row or a list of rows in, predictions out;
/// the `Model-Version` header says which version answered.
pub async fn predict(
    State(state): State<AppState>,
    query: Result<Query<QueryPairs>, QueryRejection>,
    headers: HeaderMap,
    body: Result<FullBody, BodyError>,
) -> Result<Response, Detail> {
    let _permit = state.admit()?;
    let query = query.map_err(|e| NodeError::BadRequest(format!("invalid query string: {e}")))?;
    let version = match http_serve::last_query_value(&query, "version") {
        None => None,
        Some(text) => Some(text.parse::<u64>().ok().filter(|v| *v > 0).ok_or_else(|| {
            NodeError::BadRequest(format!(
                "query parameter version must be a positive integer, got {:?}",
                http_serve::echo_name(text)
            ))
        })?),
    };
    let served = state
        .registry
        .get(http_serve::last_query_value(&query, "model"), version)?;
    check_content_type(&headers)?;
    let FullBody(body) = body.map_err(NodeError::from)?;
    let info = served.model.info();
    let mut rows = input::parse_features(&body, &info.features, state.config.max_batch_rows)
        .map_err(NodeError::Validation)?;
    let prediction = served
        .batcher
        .predict_mixed(rows.values, rows.strings)
        .await?;
    rows.values = prediction.rows;
    rows.strings = prediction.strings;
    let predictions = prediction.values;
    // Sized up front: a 1000-row answer is ~150 kB, and growing a small buffer to that
    // copies it a dozen times.
    let mut json = Vec::with_capacity(body.len() + 32 * predictions.len() + 128);
    match info.task {
        Task::Regression => write_answer(
            &mut json,
            &served.json_keys,
            &info.features,
            &rows,
            &info.name,
            &predictions,
            served.batcher.n_targets(),
        ),
        Task::Classification => {
            write_classifier_answer(&mut json, &served.json_keys, &rows, info, &predictions)
        }
    }
    Ok((
        [
            (header::CONTENT_TYPE, JSON_CONTENT_TYPE),
            (
                HeaderName::from_static(MODEL_VERSION_HEADER),
                HeaderValue::from(served.version),
            ),
        ],
        json,
    )
        .into_response())
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

/// Writes the `/predict` answer, the JSON the seed's clients parse:
/// `{"message":"...","input":<the rows echoed>,"model":"...","prediction":[...]}`.
///
/// Written by hand rather than derived so that the feature names, escaped once per model in
/// `json_keys`, are copied instead of escaped again for every echoed row; numbers and strings
/// go through serde_json, so the text is what serde_json writes. `rows.values` holds rows
/// of `json_keys.len()` finite values; `predictions` one or `n_targets` values per row.
fn write_answer(
    out: &mut Vec<u8>,
    json_keys: &[String],
    features: &[Feature],
    rows: &input::Rows,
    model: &str,
    predictions: &[f64],
    n_targets: usize,
) {
    write_head(out, json_keys, features, rows, model);
    out.extend_from_slice(br#","prediction":"#);
    if n_targets == 1 {
        write_json(out, predictions);
    } else {
        out.push(b'[');
        for (i, row) in predictions.chunks(n_targets).enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_json(out, row);
        }
        out.push(b']');
    }
    out.push(b'}');
}

/// Writes a classifier's `/predict` answer: the head as for a regressor, then
/// `"prediction"` (one label per row, typed as sklearn's `classes_`), `"probabilities"` (one
/// row of `predict_proba` per row) and `"classes"`. `predictions` holds per row the label's
/// index and the probabilities (`Model::predict_into`'s classifier rows).
fn write_classifier_answer(
    out: &mut Vec<u8>,
    json_keys: &[String],
    rows: &input::Rows,
    info: &ModelInfo,
    predictions: &[f64],
) {
    let width = 1 + info.n_classes();
    write_head(out, json_keys, &info.features, rows, &info.name);
    out.extend_from_slice(br#","prediction":["#);
    for (i, row) in predictions.chunks(width).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        // The model checked the index against its classes when it predicted.
        write_json(out, &info.classes[row[0] as usize]);
    }
    out.extend_from_slice(br#"],"probabilities":["#);
    for (i, row) in predictions.chunks(width).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_json(out, &row[1..]);
    }
    out.extend_from_slice(br#"],"classes":"#);
    write_json(out, &info.classes);
    out.push(b'}');
}

/// `{"message":...,"input":...,"model":...` (no closing brace). A missing value is echoed
/// as `null` (a NaN number, an empty string).
fn write_head(
    out: &mut Vec<u8>,
    json_keys: &[String],
    features: &[Feature],
    rows: &input::Rows,
    model: &str,
) {
    out.extend_from_slice(br#"{"message":"#);
    write_json(out, PREDICT_MESSAGE);
    out.extend_from_slice(br#","input":"#);
    if rows.batch {
        out.push(b'[');
    }
    let n_strings = features
        .iter()
        .filter(|f| f.kind == FeatureType::String)
        .count();
    let n_numbers = json_keys.len() - n_strings;
    let n_rows = rows
        .values
        .len()
        .checked_div(n_numbers)
        .or_else(|| rows.strings.len().checked_div(n_strings))
        .unwrap_or(0);
    for i in 0..n_rows {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'{');
        let mut numbers = rows.values[i * n_numbers..(i + 1) * n_numbers].iter();
        let mut strings = rows.strings[i * n_strings..(i + 1) * n_strings].iter();
        for (j, (key, feature)) in json_keys.iter().zip(features).enumerate() {
            if j > 0 {
                out.push(b',');
            }
            out.extend_from_slice(key.as_bytes());
            if feature.kind == FeatureType::String {
                match strings.next() {
                    Some(s) if !s.is_empty() => write_json(out, s),
                    _ => out.extend_from_slice(b"null"),
                }
            } else if let Some(&v) = numbers.next() {
                write_number(out, v);
            }
        }
        out.push(b'}');
    }
    if rows.batch {
        out.push(b']');
    }
    out.extend_from_slice(br#","model":"#);
    write_json(out, model);
}

/// Appends the number `v` as serde_json writes it. Whole numbers, the most common inputs,
/// take a shortcut (an integer and `.0`, what serde_json writes for them below 1e15).
fn write_number(out: &mut Vec<u8>, v: f64) {
    if v.fract() == 0.0 && v.abs() < 1e15 && v != 0.0 {
        out.extend_from_slice(itoa::Buffer::new().format(v as i64).as_bytes());
        out.extend_from_slice(b".0");
    } else {
        write_json(out, &v);
    }
}

/// Appends `value` as serde_json writes it (writing into a `Vec` cannot fail, and neither can
/// serialising strings and floats).
fn write_json<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    serde_json::to_writer(out, value).expect("strings and floats always serialise");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_written_as_serde_json_writes_them() {
        let mut values = vec![
            0.0,
            -0.0,
            0.5,
            -1.5,
            1e-7,
            1e15,
            -1e15,
            1e16,
            1e300,
            f64::NAN,
        ];
        values.extend([f64::INFINITY, f64::MAX, f64::MIN_POSITIVE, 2f64.powi(53)]);
        for k in 0..16 {
            let p = 10f64.powi(k);
            values.extend([p, p - 1.0, p + 1.0, -p, 1.0 - p, p * 7.0, p / 3.0]);
        }
        let mut x = 0x9E37_79B9_7F4A_7C15_u64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let whole = (x % 2_000_000_000_000_000) as f64 - 1e15;
            values.extend([whole, whole / 1e3, (x % 1000) as f64, f64::from_bits(x)]);
        }
        for v in values {
            let mut got = Vec::new();
            write_number(&mut got, v);
            let want = serde_json::to_vec(&v).unwrap();
            assert_eq!(got, want, "{v:?}");
        }
    }

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
    fn answers_are_what_serde_json_writes() {
        let names = ["a".to_string(), "b\"q".to_string()];
        let keys: Vec<String> = names.iter().map(|n| crate::registry::json_key(n)).collect();
        let features: Vec<Feature> = names.iter().map(|n| Feature::number(n, false)).collect();
        let answer = |values: Vec<f64>, batch: bool, predictions: &[f64], n_targets: usize| {
            let mut out = Vec::new();
            let rows = input::Rows {
                values,
                strings: Vec::new(),
                batch,
            };
            write_answer(
                &mut out,
                &keys,
                &features,
                &rows,
                "LinearRegression",
                predictions,
                n_targets,
            );
            String::from_utf8(out).unwrap()
        };
        assert_eq!(
            answer(vec![50000.0, 5.2], false, &[2.45], 1),
            r#"{"message":"GDP growth prediction endpoint","input":{"a":50000.0,"b\"q":5.2},"model":"LinearRegression","prediction":[2.45]}"#
        );
        let batch = answer(vec![1.0, 2.0, 3.0, 1e-7], true, &[0.1, -2.0], 1);
        let expected = serde_json::json!({
            "message": PREDICT_MESSAGE,
            "input": [{"a": 1.0, "b\"q": 2.0}, {"a": 3.0, "b\"q": 1e-7}],
            "model": "LinearRegression",
            "prediction": [0.1, -2.0],
        });
        assert!(
            batch.starts_with(r#"{"message":"GDP growth prediction endpoint","input":[{"a":1.0,"#),
            "{batch}"
        );
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&batch).unwrap(),
            expected
        );
        let multi = answer(vec![1.0, 2.0], false, &[0.5, 1.5], 2);
        assert!(multi.ends_with(r#""prediction":[[0.5,1.5]]}"#), "{multi}");
    }
}

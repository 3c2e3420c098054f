//! Prometheus metrics: the process-wide recorder, the names the node records, and the HTTP
//! middleware that counts requests.
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `node_http_requests_total` | counter | `route`, `method`, `status` |
//! | `node_http_request_duration_seconds` | histogram | `route` |
//! | `node_inference_duration_seconds` | histogram | `model` (one ONNX Runtime call) |
//! | `node_batch_rows` | histogram | `model` (rows per ONNX Runtime call) |
//! | `node_requests_in_flight` | gauge | — |
//! | `node_requests_rejected_total` | counter | `reason` |
//! | `node_models_loaded` | gauge | — |

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use metrics::{SharedString, counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5,
];
const ROW_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0, 4096.0, 16384.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder once and returns its handle.
///
/// If another recorder is already installed (an embedding program's), the node still serves
/// `/metrics` from an uninstalled recorder, which then stays empty.
pub fn handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full("node_batch_rows".into()), ROW_BUCKETS)
                })
                .expect("bucket lists are non-empty");
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder is already installed; /metrics stays empty");
            }
            describe();
            handle
        })
        .clone()
}

fn describe() {
    metrics::describe_counter!(
        "node_http_requests_total",
        "HTTP requests by route, method and status"
    );
    metrics::describe_histogram!(
        "node_http_request_duration_seconds",
        metrics::Unit::Seconds,
        "HTTP request latency by route"
    );
    metrics::describe_histogram!(
        "node_inference_duration_seconds",
        metrics::Unit::Seconds,
        "Duration of one ONNX Runtime call"
    );
    metrics::describe_histogram!("node_batch_rows", "Rows per ONNX Runtime call");
    metrics::describe_gauge!("node_requests_in_flight", "Prediction requests in progress");
    metrics::describe_counter!(
        "node_requests_rejected_total",
        "Requests refused by the in-flight bound"
    );
    metrics::describe_gauge!("node_models_loaded", "Models loaded");
}

/// Records one ONNX Runtime call of `rows` rows; `model` is the model's name.
pub fn record_inference(model: &Arc<str>, rows: usize, took: Duration) {
    histogram!("node_inference_duration_seconds", "model" => SharedString::from(model.clone()))
        .record(took.as_secs_f64());
    histogram!("node_batch_rows", "model" => SharedString::from(model.clone())).record(rows as f64);
}

/// Records a request refused because the in-flight bound was reached.
pub fn record_rejection(reason: &'static str) {
    counter!("node_requests_rejected_total", "reason" => reason).increment(1);
}

/// Sets the number of loaded models.
pub fn set_models_loaded(count: usize) {
    gauge!("node_models_loaded").set(count as f64);
}

/// Counts a prediction request as in flight until dropped.
pub struct InFlight(());

impl InFlight {
    /// Increments the in-flight gauge.
    pub fn start() -> InFlight {
        gauge!("node_requests_in_flight").increment(1.0);
        InFlight(())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        gauge!("node_requests_in_flight").decrement(1.0);
    }
}

/// Middleware: counts every request by route, method and status and times it.
pub async fn track(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = route_label(request.extensions().get::<MatchedPath>());
    let method = method_label(request.method());
    let response = next.run(request).await;
    let status = status_label(response.status());
    counter!("node_http_requests_total", "route" => route.clone(), "method" => method, "status" => status)
        .increment(1);
    histogram!("node_http_request_duration_seconds", "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}

/// The node's routes, so labels are static strings (no allocation per request).
const ROUTES: &[&str] = &[
    "/health",
    "/predict",
    "/models",
    "/ready",
    "/metrics",
    "/v2",
    "/v2/health/live",
    "/v2/health/ready",
    "/v2/models/{name}",
    "/v2/models/{name}/ready",
    "/v2/models/{name}/infer",
    "/v2/models/{name}/versions/{version}",
    "/v2/models/{name}/versions/{version}/ready",
    "/v2/models/{name}/versions/{version}/infer",
];

fn route_label(path: Option<&MatchedPath>) -> SharedString {
    match path {
        None => SharedString::const_str("unmatched"),
        Some(path) => match ROUTES.iter().find(|r| **r == path.as_str()) {
            Some(route) => SharedString::const_str(route),
            None => SharedString::from(path.as_str().to_string()),
        },
    }
}

fn method_label(method: &Method) -> SharedString {
    match *method {
        Method::GET => SharedString::const_str("GET"),
        Method::POST => SharedString::const_str("POST"),
        _ => SharedString::from(method.as_str().to_string()),
    }
}

fn status_label(status: StatusCode) -> SharedString {
    const COMMON: &[(u16, &str)] = &[
        (200, "200"),
        (400, "400"),
        (404, "404"),
        (405, "405"),
        (413, "413"),
        (415, "415"),
        (422, "422"),
        (429, "429"),
        (500, "500"),
        (503, "503"),
    ];
    match COMMON.iter().find(|(code, _)| *code == status.as_u16()) {
        Some((_, text)) => SharedString::const_str(text),
        None => SharedString::from(status.as_u16().to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_cover_every_route() {
        assert_eq!(route_label(None).as_ref(), "unmatched");
        assert_eq!(status_label(StatusCode::IM_A_TEAPOT).as_ref(), "418");
        assert_eq!(status_label(StatusCode::OK).as_ref(), "200");
        assert_eq!(method_label(&Method::DELETE).as_ref(), "DELETE");
    }
}

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
//! | `node_model_load_failures_total` | counter | `model` (a file that did not load) |
//!
//! Per model version, named as Triton names them (histograms in seconds rather than
//! Triton's cumulative microseconds), labels `model` and `version`:
//!
//! | metric | kind | what |
//! |---|---|---|
//! | `nv_inference_request_success` | counter | requests answered by the model |
//! | `nv_inference_request_failure` | counter | requests the model failed (ONNX Runtime error, non-finite output) |
//! | `nv_inference_request_duration_seconds` | histogram | queue plus inference, per request |
//! | `nv_inference_queue_duration_seconds` | histogram | time a request waited for its batch |
//! | `nv_inference_compute_infer_duration_seconds` | histogram | one ONNX Runtime call |
//! | `nv_inference_batch_size` | histogram | rows per ONNX Runtime call |

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use metrics::{Counter, Gauge, Histogram, SharedString, counter, gauge, histogram};
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
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("nv_inference_batch_size".into()),
                        ROW_BUCKETS,
                    )
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
    metrics::describe_counter!(
        "node_model_load_failures_total",
        "Model files that failed to load (the serving version stays)"
    );
    metrics::describe_counter!(
        "nv_inference_request_success",
        "Requests answered, by model and version"
    );
    metrics::describe_counter!(
        "nv_inference_request_failure",
        "Requests the model failed, by model and version"
    );
    metrics::describe_histogram!(
        "nv_inference_request_duration_seconds",
        metrics::Unit::Seconds,
        "Queue plus inference time per request, by model and version"
    );
    metrics::describe_histogram!(
        "nv_inference_queue_duration_seconds",
        metrics::Unit::Seconds,
        "Time a request waited for its batch, by model and version"
    );
    metrics::describe_histogram!(
        "nv_inference_compute_infer_duration_seconds",
        metrics::Unit::Seconds,
        "Duration of one ONNX Runtime call, by model and version"
    );
    metrics::describe_histogram!(
        "nv_inference_batch_size",
        "Rows per ONNX Runtime call, by model and version"
    );
}

/// Counts a model file that failed to load.
pub fn record_load_failure(model: &str) {
    counter!("node_model_load_failures_total", "model" => model.to_string()).increment(1);
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
pub struct InFlight(Gauge);

impl InFlight {
    /// Increments the in-flight gauge.
    pub fn start() -> InFlight {
        static GAUGE: OnceLock<Gauge> = OnceLock::new();
        let gauge = GAUGE
            .get_or_init(|| gauge!("node_requests_in_flight"))
            .clone();
        gauge.increment(1.0);
        InFlight(gauge)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// The series of one model version, registered once.
pub struct InferenceSeries {
    duration: Histogram,
    rows: Histogram,
    success: Counter,
    failure: Counter,
    request_duration: Histogram,
    queue_duration: Histogram,
    compute_duration: Histogram,
    batch_size: Histogram,
}

impl InferenceSeries {
    /// Registers the series of `model` version `version`.
    pub fn new(model: &str, version: u64) -> InferenceSeries {
        let label = SharedString::from(model.to_string());
        let labels = [
            ("model", model.to_string()),
            ("version", version.to_string()),
        ];
        InferenceSeries {
            duration: histogram!("node_inference_duration_seconds", "model" => label.clone()),
            rows: histogram!("node_batch_rows", "model" => label),
            success: counter!("nv_inference_request_success", &labels),
            failure: counter!("nv_inference_request_failure", &labels),
            request_duration: histogram!("nv_inference_request_duration_seconds", &labels),
            queue_duration: histogram!("nv_inference_queue_duration_seconds", &labels),
            compute_duration: histogram!("nv_inference_compute_infer_duration_seconds", &labels),
            batch_size: histogram!("nv_inference_batch_size", &labels),
        }
    }

    /// Records one ONNX Runtime call of `rows` rows.
    pub fn record(&self, rows: usize, took: Duration) {
        self.duration.record(took.as_secs_f64());
        self.rows.record(rows as f64);
        self.compute_duration.record(took.as_secs_f64());
        self.batch_size.record(rows as f64);
    }

    /// Records how long a request waited for its batch.
    pub fn queued(&self, waited: Duration) {
        self.queue_duration.record(waited.as_secs_f64());
    }

    /// Records a request's outcome and its time from queueing to answer.
    pub fn answered(&self, ok: bool, took: Duration) {
        if ok {
            self.success.increment(1);
        } else {
            self.failure.increment(1);
        }
        self.request_duration.record(took.as_secs_f64());
    }
}

/// Middleware: counts every request by route, method and status and times it.
pub async fn track(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request.extensions().get::<MatchedPath>().cloned();
    let method = request.method().clone();
    let response = next.run(request).await;
    let route = route.as_ref().map(MatchedPath::as_str);
    record_request(route, &method, response.status(), started.elapsed());
    response
}

/// Counts and times one request; `route` is the matched route, if any.
fn record_request(route: Option<&str>, method: &Method, status: StatusCode, took: Duration) {
    let route_index = route.and_then(|r| ROUTES.iter().position(|known| *known == r));
    let method_index = METHODS.iter().position(|m| m == method);
    let status_index = STATUSES.iter().position(|s| *s == status.as_u16());
    let (Some(r), Some(m), Some(s)) = (route_index, method_index, status_index) else {
        let route = SharedString::from(route.unwrap_or("unmatched").to_string());
        let method = http_serve::method_label(method);
        request_counter(route.clone(), method, status.as_u16()).increment(1);
        request_histogram(route).record(took.as_secs_f64());
        return;
    };
    let series = request_series();
    series.counters[(r * METHODS.len() + m) * STATUSES.len() + s]
        .get_or_init(|| request_counter(ROUTES[r].into(), METHODS[m].as_str(), STATUSES[s]))
        .increment(1);
    series.latency[r]
        .get_or_init(|| request_histogram(ROUTES[r].into()))
        .record(took.as_secs_f64());
}

fn request_counter(route: SharedString, method: &str, status: u16) -> Counter {
    let (method, status) = (method.to_string(), status.to_string());
    counter!("node_http_requests_total", "route" => route, "method" => method, "status" => status)
}

fn request_histogram(route: SharedString) -> Histogram {
    histogram!("node_http_request_duration_seconds", "route" => route)
}

/// Request series of the listed routes, methods and statuses, each registered on first use
/// (a `counter!` call builds its key and looks it up in the registry every time).
struct RequestSeries {
    /// By `(route, method, status)` index.
    counters: Vec<OnceLock<Counter>>,
    /// By route index.
    latency: Vec<OnceLock<Histogram>>,
}

fn request_series() -> &'static RequestSeries {
    static SERIES: OnceLock<RequestSeries> = OnceLock::new();
    SERIES.get_or_init(|| RequestSeries {
        counters: (0..ROUTES.len() * METHODS.len() * STATUSES.len())
            .map(|_| OnceLock::new())
            .collect(),
        latency: (0..ROUTES.len()).map(|_| OnceLock::new()).collect(),
    })
}

/// The node's routes.
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
    "/v2/repository/index",
    "/v2/repository/models/{name}/load",
    "/v2/repository/models/{name}/unload",
];

const METHODS: &[Method] = &[Method::GET, Method::POST];

const STATUSES: &[u16] = &[200, 400, 404, 405, 408, 409, 413, 415, 422, 429, 500, 503];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_request_is_counted_under_its_own_labels() {
        let handle = handle();
        let took = Duration::from_millis(1);
        let cases = [
            (Some("/predict"), Method::POST, StatusCode::OK),
            (Some("/predict"), Method::POST, StatusCode::OK),
            (
                Some("/v2/models/{name}/infer"),
                Method::POST,
                StatusCode::IM_A_TEAPOT,
            ),
            (
                Some("/models"),
                Method::DELETE,
                StatusCode::METHOD_NOT_ALLOWED,
            ),
            (None, Method::GET, StatusCode::NOT_FOUND),
            (
                Some("/predict"),
                Method::from_bytes(b"M12345").unwrap(),
                StatusCode::METHOD_NOT_ALLOWED,
            ),
        ];
        for (route, method, status) in &cases {
            record_request(*route, method, *status, took);
        }
        let text = handle.render();
        for line in [
            r#"node_http_requests_total{route="/predict",method="POST",status="200"} 2"#,
            r#"node_http_requests_total{route="/v2/models/{name}/infer",method="POST",status="418"} 1"#,
            r#"node_http_requests_total{route="/models",method="DELETE",status="405"} 1"#,
            r#"node_http_requests_total{route="unmatched",method="GET",status="404"} 1"#,
            r#"node_http_requests_total{route="/predict",method="other",status="405"} 1"#,
            r#"node_http_request_duration_seconds_count{route="/predict"} 3"#,
            r#"node_http_request_duration_seconds_count{route="unmatched"} 1"#,
        ] {
            assert!(text.contains(line), "missing {line} in:\n{text}");
        }
    }
}

//! Helpers for the integration tests: real nodes on `127.0.0.1:0` with the shipped converted
//! models and real ONNX Runtime.
#![allow(dead_code)]

use std::net::SocketAddr;

use clap::Parser;
use inference_node::{AppState, Config, NodeError};
use serde_json::{Value, json};
pub use test_support::models_dir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// golden.json: hold-out rows and every model's sklearn predictions.
pub fn golden() -> Value {
    let path = models_dir().join("golden.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// The model names golden.json covers.
pub fn golden_models() -> Vec<String> {
    golden()["models"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect()
}

/// classifiers-golden.json: the shipped classifiers' README bodies and sklearn's answers.
pub fn classifier_golden() -> Value {
    let path = models_dir().join("classifiers-golden.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// The shipped classifiers' names (classifiers-golden.json's models).
pub fn classifier_golden_models() -> Vec<String> {
    classifier_golden()["models"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect()
}

/// A configuration for the shipped models plus `extra` flags.
pub fn config(extra: &[&str]) -> Config {
    config_for(&models_dir(), extra)
}

/// A configuration serving the models in `dir`, plus `extra` flags.
pub fn config_for(dir: &std::path::Path, extra: &[&str]) -> Config {
    let mut args = vec![
        "inference-node".to_string(),
        "--models-dir".into(),
        dir.display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    Config::try_parse_from(args).unwrap()
}

/// A node serving on a loopback port.
pub struct TestNode {
    pub addr: SocketAddr,
    pub state: AppState,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), NodeError>>>,
}

impl TestNode {
    /// Returns `http://addr{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Starts graceful shutdown without waiting for it.
    pub fn begin_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Shuts down gracefully and returns serve's result.
    pub async fn shutdown(mut self) -> Result<(), NodeError> {
        self.begin_shutdown();
        self.task.take().unwrap().await.unwrap()
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        self.begin_shutdown();
    }
}

/// Loads the models named by `config` and serves them on `127.0.0.1:0`.
pub async fn spawn_node(config: Config) -> TestNode {
    http_serve::telemetry::init_for_test();
    let state = AppState::new(config).expect("the node starts");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(inference_node::serve(listener, state.clone(), async {
        let _ = stopped.await;
    }));
    TestNode {
        addr,
        state,
        stop: Some(stop),
        task: Some(task),
    }
}

/// A node with default settings.
pub async fn default_node() -> TestNode {
    spawn_node(config(&[])).await
}

/// An HTTP client with a bounded timeout.
pub fn client() -> reqwest::Client {
    test_support::client(std::time::Duration::from_secs(20))
}

/// POSTs `body` as JSON to `url` and returns the answer's JSON (of any status).
pub async fn post_json(http: &reqwest::Client, url: &str, body: &impl serde::Serialize) -> Value {
    http.post(url)
        .json(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The seed README's example body.
pub fn seed_example() -> Value {
    serde_json::json!({
        "gdp_per_capita": 50000,
        "unemployment_rate": 5.2,
        "gdp_growth_rate_lag": 2.1,
        "gdp_growth_rate_ma": 2.3
    })
}

/// The feature names in order.
pub const FEATURES: [&str; 4] = [
    "gdp_per_capita",
    "unemployment_rate",
    "gdp_growth_rate_lag",
    "gdp_growth_rate_ma",
];

/// Asserts `got` equals sklearn's `want` up to float64 rounding of a different summation order.
pub fn assert_close(got: f64, want: f64, what: &str) {
    let tolerance = 1e-9 * want.abs().max(1.0);
    assert!(
        (got - want).abs() <= tolerance,
        "{what}: got {got}, golden {want} (diff {})",
        (got - want).abs()
    );
}

/// POSTs a V2 binary request for `model` (every row as FP64, NaN for missing) and returns
/// the JSON answer, which must be a 200.
pub async fn v2_binary(node: &TestNode, model: &str, rows: &[Vec<f64>]) -> Value {
    let data: Vec<u8> = rows
        .iter()
        .flatten()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let request = json!({"inputs": [{
        "name": "input", "shape": [rows.len(), rows[0].len()], "datatype": "FP64",
        "parameters": {"binary_data_size": data.len()},
    }]});
    let mut sent = serde_json::to_vec(&request).unwrap();
    let json_len = sent.len();
    sent.extend_from_slice(&data);
    let response = client()
        .post(node.url(&format!("/v2/models/{model}/infer")))
        .header("Inference-Header-Content-Length", json_len)
        .header("content-type", "application/octet-stream")
        .body(sent)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// The node's `GET /models` answer.
pub async fn models(node: &TestNode) -> Value {
    client()
        .get(node.url("/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The entry of model `name` in `GET /models` (panics when it is not listed).
pub async fn model_info(node: &TestNode, name: &str) -> Value {
    let models = models(node).await;
    models["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("{name} is not in {models}"))
        .clone()
}

/// The `data` of the V2 answer's output `name`.
pub fn output<'a>(answer: &'a Value, name: &str) -> &'a Value {
    &answer["outputs"]
        .as_array()
        .unwrap_or_else(|| panic!("{answer}"))
        .iter()
        .find(|o| o["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {answer}"))["data"]
}

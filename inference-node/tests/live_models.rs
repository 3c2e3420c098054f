//! Live model updates on a running node, with real models and real ONNX Runtime: a replaced
//! file switches atomically to the next version, a file that fails to load keeps the serving
//! version, a removed model drains, versions can be pinned, the repository API loads and
//! unloads, and the Consul registration follows the model set.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{client, config_for, models, models_dir, seed_example, spawn_node};
use consul::standin::{self, StandInConfig};
use serde_json::{Value, json};
use test_support::eventually;

/// Copies shipped model `source` to `dest` in `dir` the way a careful deployer does: a
/// hidden temporary file renamed over the target.
fn place(dir: &Path, dest: &str, source: &str) {
    let target = dir.join(dest);
    std::fs::create_dir_all(target.parent().unwrap()).unwrap();
    let temp = dir.join(format!(".{}.tmp", dest.replace('/', "_")));
    std::fs::copy(models_dir().join(format!("{source}.onnx")), &temp).unwrap();
    std::fs::rename(&temp, &target).unwrap();
}

/// A models directory holding the shipped `models` under their own names.
fn repo(models: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for model in models {
        place(dir.path(), &format!("{model}.onnx"), model);
    }
    dir
}

/// One seed prediction: `(status, Model-Version header, first prediction, body)`.
async fn predict(node: &common::TestNode, query: &str) -> (u16, Option<u64>, Option<f64>, Value) {
    let response = client()
        .post(node.url(&format!("/predict{query}")))
        .json(&seed_example())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let version = response
        .headers()
        .get("model-version")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    let body: Value = response.json().await.unwrap();
    let prediction = body["prediction"][0].as_f64();
    (status, version, prediction, body)
}

async fn post(node: &common::TestNode, path: &str, body: Value) -> (u16, Value) {
    let response = client()
        .post(node.url(path))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

/// The number of this process's threads called `name`.
fn threads_named(name: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.trim_end() == name)
        .count()
}

fn v2_row() -> Value {
    json!({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP64",
        "data": [50000.0, 5.2, 2.1, 2.3]}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_file_switches_atomically_to_the_next_version() {
    let dir = repo(&["LinearRegression", "Ridge"]);
    let node = spawn_node(config_for(dir.path(), &["--model-poll", "50ms"])).await;
    let (status, version, old, body) = predict(&node, "").await;
    assert_eq!((status, version), (200, Some(1)), "{body}");
    let old = old.unwrap();
    let new = predict(&node, "?model=Ridge").await.2.unwrap();
    assert!(
        (old - new).abs() > 1e-6,
        "the two models must differ: {old} {new}"
    );
    // A request admitted before the switch holds its version.
    let admitted = node.state.registry.get(None, None).unwrap();

    // Steady requests while the file is replaced (polling picks it up).
    let done = Arc::new(AtomicBool::new(false));
    let stream = {
        let (url, done) = (node.url("/predict"), done.clone());
        tokio::spawn(async move {
            let http = client();
            let mut answers = Vec::new();
            while !done.load(Ordering::Relaxed) {
                let response = http.post(&url).json(&seed_example()).send().await.unwrap();
                let status = response.status().as_u16();
                let version = response.headers().get("model-version").cloned();
                let body: Value = response.json().await.unwrap();
                answers.push((status, version, body));
            }
            answers
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    place(dir.path(), "LinearRegression.onnx", "Ridge");
    eventually(Duration::from_secs(10), "version 2 is served", || async {
        predict(&node, "").await.1 == Some(2)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    done.store(true, Ordering::Relaxed);
    let answers = stream.await.unwrap();
    assert!(answers.len() > 10, "only {} answers", answers.len());
    let mut switched = false;
    for (status, version, body) in &answers {
        assert_eq!(*status, 200, "{body}");
        let version = version.as_ref().unwrap().to_str().unwrap();
        let prediction = body["prediction"][0].as_f64().unwrap();
        match version {
            "1" => {
                assert!(!switched, "an answer from version 1 after version 2");
                assert_eq!(prediction, old);
            }
            "2" => {
                switched = true;
                assert_eq!(prediction, new);
            }
            other => panic!("version {other}"),
        }
        assert_eq!(body["model"], "LinearRegression");
    }
    assert!(switched);

    // The request admitted before the switch finishes on version 1.
    let rows = vec![50000.0, 5.2, 2.1, 2.3];
    let answer = admitted.batcher.predict(rows).await.unwrap();
    assert_eq!((admitted.version, answer.values[0]), (1, old));
    // Version 1 is gone for new requests.
    let (status, _, _, body) = predict(&node, "?version=1").await;
    assert_eq!(status, 404, "{body}");
    let (status, version, prediction, _) = predict(&node, "?version=2").await;
    assert_eq!((status, version, prediction), (200, Some(2), Some(new)));

    // Per-model metrics carry model and version.
    let metrics = client()
        .get(node.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for series in [
        r#"nv_inference_request_success{model="LinearRegression",version="1"}"#,
        r#"nv_inference_request_success{model="LinearRegression",version="2"}"#,
        r#"nv_inference_queue_duration_seconds_count{model="LinearRegression",version="2"}"#,
        r#"nv_inference_request_duration_seconds_count{model="LinearRegression",version="2"}"#,
        r#"nv_inference_compute_infer_duration_seconds_count{model="LinearRegression",version="2"}"#,
        r#"nv_inference_batch_size_count{model="LinearRegression",version="2"}"#,
    ] {
        assert!(metrics.contains(series), "missing {series}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_fails_to_load_keeps_the_serving_version() {
    let dir = repo(&["LinearRegression", "Ridge"]);
    let node = spawn_node(config_for(dir.path(), &[])).await;
    let (_, _, ridge, _) = predict(&node, "?model=Ridge").await;
    let path = dir.path().join("Ridge.onnx");

    // Garbage, then a half-written copy of a real model.
    let real = std::fs::read(models_dir().join("Lasso.onnx")).unwrap();
    for (what, bytes) in [
        ("garbage", b"not an onnx model".to_vec()),
        ("half-written", real[..real.len() / 2].to_vec()),
    ] {
        std::fs::write(&path, &bytes).unwrap();
        let (status, body) = post(&node, "/v2/repository/index", json!({})).await;
        assert_eq!(status, 200, "{what}: {body}");
        let reasons: Vec<&Value> = body
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["name"] == "Ridge" && e["state"] == "UNAVAILABLE")
            .collect();
        assert_eq!(reasons.len(), 1, "{what}: {body}");
        assert!(
            reasons[0]["reason"]
                .as_str()
                .unwrap()
                .contains("Ridge.onnx"),
            "{body}"
        );
        // Still served, still version 1, still the same answers.
        let (status, version, prediction, body) = predict(&node, "?model=Ridge").await;
        assert_eq!(
            (status, version, prediction),
            (200, Some(1), ridge),
            "{what}: {body}"
        );
        let listed = models(&node).await;
        let errors = listed["load_errors"].as_array().unwrap();
        assert_eq!(errors.len(), 1, "{listed}");
        assert_eq!(errors[0]["model"], "Ridge");
        assert!(errors[0]["path"].as_str().unwrap().ends_with("Ridge.onnx"));
        // An explicit load says why, naming the file.
        let (status, body) = post(&node, "/v2/repository/models/Ridge/load", json!({})).await;
        assert_eq!(status, 400, "{what}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains("Ridge.onnx"),
            "{body}"
        );
    }
    let metrics = client()
        .get(node.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"node_model_load_failures_total{model="Ridge"}"#),
        "{metrics}"
    );

    // A good file loads as the next version and clears the error.
    place(dir.path(), "Ridge.onnx", "Lasso");
    let (status, _) = post(&node, "/v2/repository/models/Ridge/load", json!({})).await;
    assert_eq!(status, 200);
    let (status, version, _, _) = predict(&node, "?model=Ridge").await;
    assert_eq!((status, version), (200, Some(2)));
    assert_eq!(models(&node).await["load_errors"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_model_drains() {
    let dir = repo(&["LinearRegression"]);
    // A name of its own: its inference thread is `infer-Drained-1` in this process.
    place(dir.path(), "Drained.onnx", "Ridge");
    let node = spawn_node(config_for(dir.path(), &["--model-poll", "50ms"])).await;
    let (_, _, ridge, _) = predict(&node, "?model=Drained").await;
    let admitted = node.state.registry.get(Some("Drained"), None).unwrap();
    let mut names = node.state.registry.watch_names();
    std::fs::remove_file(dir.path().join("Drained.onnx")).unwrap();
    eventually(Duration::from_secs(10), "Drained is gone", || async {
        predict(&node, "?model=Drained").await.0 == 404
    })
    .await;
    assert_eq!(
        *names.borrow_and_update(),
        vec!["LinearRegression".to_string()]
    );
    let listed = models(&node).await;
    assert_eq!(listed["models"].as_array().unwrap().len(), 1, "{listed}");
    // The request admitted before the removal is still answered by Ridge.
    let answer = admitted
        .batcher
        .predict(vec![50000.0, 5.2, 2.1, 2.3])
        .await
        .unwrap();
    assert_eq!(Some(answer.values[0]), ridge);
    // Once its last request is done, its inference thread ends.
    assert_eq!(threads_named("infer-Drained-1"), 1);
    drop(admitted);
    eventually(
        Duration::from_secs(5),
        "the drained thread ends",
        || async { threads_named("infer-Drained-1") == 0 },
    )
    .await;
    // The default model's file going away does not stop the default model.
    std::fs::remove_file(dir.path().join("LinearRegression.onnx")).unwrap();
    let (status, _) = post(&node, "/v2/repository/index", json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(predict(&node, "").await.0, 200);
    assert_eq!(
        models(&node).await["load_errors"][0]["model"],
        "LinearRegression"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_can_be_pinned() {
    let dir = repo(&["LinearRegression"]);
    place(dir.path(), "Ridge/1/model.onnx", "Ridge");
    place(dir.path(), "Ridge/2/model.onnx", "Lasso");
    let reference = repo(&["LinearRegression", "Ridge", "Lasso"]);
    let node = spawn_node(config_for(dir.path(), &[])).await;
    let reference_node = spawn_node(config_for(reference.path(), &[])).await;
    let ridge = predict(&reference_node, "?model=Ridge").await.2;
    let lasso = predict(&reference_node, "?model=Lasso").await.2;

    let (status, version, prediction, body) = predict(&node, "?model=Ridge").await;
    assert_eq!(
        (status, version, prediction),
        (200, Some(2), lasso),
        "{body}"
    );
    let (status, version, prediction, _) = predict(&node, "?model=Ridge&version=1").await;
    assert_eq!((status, version, prediction), (200, Some(1), ridge));
    let (status, _, _, body) = predict(&node, "?model=Ridge&version=3").await;
    assert_eq!(status, 404, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("Ridge version 3"),
        "{body}"
    );
    let (status, _, _, body) = predict(&node, "?model=Ridge&version=latest").await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("version"),
        "{body}"
    );

    let (status, body) = post(&node, "/v2/models/Ridge/infer", v2_row()).await;
    assert_eq!(
        (status, &body["model_version"]),
        (200, &json!("2")),
        "{body}"
    );
    assert_eq!(body["outputs"][0]["data"][0].as_f64(), lasso);
    let (status, body) = post(&node, "/v2/models/Ridge/versions/1/infer", v2_row()).await;
    assert_eq!(
        (status, &body["model_version"]),
        (200, &json!("1")),
        "{body}"
    );
    assert_eq!(body["outputs"][0]["data"][0].as_f64(), ridge);
    let (status, body) = post(&node, "/v2/models/Ridge/versions/9/infer", v2_row()).await;
    assert_eq!(status, 404, "{body}");
    let metadata: Value = client()
        .get(node.url("/v2/models/Ridge"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(metadata["versions"], json!(["1", "2"]));
    let listed = models(&node).await;
    let ridge_entry = listed["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "Ridge")
        .unwrap()
        .clone();
    assert_eq!(
        (&ridge_entry["version"], &ridge_entry["versions"]),
        (&json!(2), &json!([1, 2]))
    );
    // The seed's body stays the seed's: no version in it.
    let (_, _, _, body) = predict(&node, "").await;
    let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["input", "message", "model", "prediction"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_repository_api_loads_and_unloads() {
    let dir = repo(&["LinearRegression"]);
    let node = spawn_node(config_for(dir.path(), &["--model-poll", "50ms"])).await;
    assert_eq!(predict(&node, "?model=Ridge").await.0, 404);
    // Without polling's help: an explicit load of a file placed now.
    place(dir.path(), "Ridge.onnx", "Ridge");
    let (status, body) = post(&node, "/v2/repository/models/Ridge/load", json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(predict(&node, "?model=Ridge").await.0, 200);

    let (status, body) = post(&node, "/v2/repository/models/Ridge/unload", json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(predict(&node, "?model=Ridge").await.0, 404);
    // Polling does not bring an unloaded model back.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(predict(&node, "?model=Ridge").await.0, 404);
    let (status, index) = post(&node, "/v2/repository/index", json!({})).await;
    assert_eq!(status, 200);
    assert!(
        index.as_array().unwrap().contains(
            &json!({"name": "Ridge", "version": "", "state": "UNAVAILABLE", "reason": "unloaded"})
        ),
        "{index}"
    );
    assert!(
        index.as_array().unwrap().contains(
            &json!({"name": "LinearRegression", "version": "1", "state": "READY", "reason": ""})
        ),
        "{index}"
    );
    let (status, _) = post(&node, "/v2/repository/models/Ridge/load", json!({})).await;
    assert_eq!(status, 200);
    // Loaded again, it is the next version: a version never names two loads.
    let (status, version, _, _) = predict(&node, "?model=Ridge").await;
    assert_eq!((status, version), (200, Some(2)));

    let (status, body) = post(
        &node,
        "/v2/repository/models/LinearRegression/unload",
        json!({}),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("default"),
        "{body}"
    );
    let (status, body) = post(&node, "/v2/repository/models/NoSuch/load", json!({})).await;
    assert_eq!(status, 404, "{body}");
    assert!(body["error"].as_str().unwrap().contains("NoSuch"), "{body}");
    let (status, _) = post(&node, "/v2/repository/models/NoSuch/unload", json!({})).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registration_follows_the_model_set() {
    let consul = standin::spawn(StandInConfig::default()).await;
    let agent = consul.client().unwrap();
    let dir = repo(&["LinearRegression"]);
    let url = consul.base_url();
    // A refresh much longer than the test: the update must not wait for it.
    let node = spawn_node(config_for(
        dir.path(),
        &[
            "--service-discovery-url",
            &url,
            "--advertise-address",
            "127.0.0.1",
            "--registration-refresh",
            "1h",
            "--model-poll",
            "50ms",
        ],
    ))
    .await;
    let id = format!("127.0.0.1:{}", node.addr.port());
    registered(&agent, &id, "LinearRegression").await;
    place(dir.path(), "Ridge.onnx", "Ridge");
    registered(&agent, &id, "LinearRegression,Ridge").await;
    std::fs::remove_file(dir.path().join("Ridge.onnx")).unwrap();
    registered(&agent, &id, "LinearRegression").await;
    node.shutdown().await.unwrap();
}

/// Waits until the service `id` is registered in `agent` with exactly `models`.
async fn registered(agent: &consul::Client, id: &str, models: &str) {
    let what = format!("{id} registered with {models}");
    eventually(Duration::from_secs(5), &what, || async {
        let services = agent.agent_services().await.unwrap();
        services.get(id).map(|s| s.meta["models"].as_str()) == Some(models)
    })
    .await;
}

//! A model rollout under load, through the real gateway, two real inference nodes (real
//! ONNX Runtime) sharing one models directory, and the Consul stand-in: while clients send a
//! steady stream of predictions for model M, M's file is replaced by a retrained version, then
//! a second model is added and removed. No request fails, every answer comes from exactly the
//! old or the new version (the `Model-Version` header says which, and the prediction is that
//! version's), and once every node serves the new version no answer comes from the old one.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{
    SEED_ROW, TestGateway, TestNode, client, eventually, gateway_config, models_dir, spawn_node_in,
};
use serde_json::Value;
use tokio::time::Instant;

/// The model rolled out, and the shipped models standing in for its old and retrained files.
const M: &str = "Ridge";
const OLD: &str = "Ridge";
const RETRAINED: &str = "Lasso";
/// The model added and then removed.
const SECOND: &str = "ElasticNet";

/// Copies shipped model `source` to `<dir>/<dest>.onnx` atomically (temporary file, rename),
/// as `convert-models --out-dir` writes.
fn place(dir: &Path, dest: &str, source: &str) {
    let temp = dir.join(format!(".{dest}.onnx.tmp"));
    std::fs::copy(models_dir().join(format!("{source}.onnx")), &temp).unwrap();
    std::fs::rename(&temp, dir.join(format!("{dest}.onnx"))).unwrap();
}

/// A node on the shared `dir`, polling it every 100 ms, whose registration refresh (30 s) is
/// far longer than the test: Consul learns its new models from the change itself.
fn spawn_node(consul: &str, dir: &Path) -> TestNode {
    spawn_node_in(dir, consul, "30s", &["--model-poll", "100ms"])
}

/// One answer of the steady stream: when its request was sent, its status, the version the
/// header named, and the prediction.
struct Answer {
    sent: Instant,
    status: u16,
    version: Option<String>,
    prediction: Option<f64>,
    body: String,
}

async fn predict(http: &reqwest::Client, gw: &TestGateway, query: &str) -> Answer {
    let sent = Instant::now();
    let response = http
        .post(gw.url(&format!("/api/predict/gdp_growth_rate{query}")))
        .header("content-type", "application/json")
        .body(SEED_ROW)
        .send()
        .await;
    let Ok(response) = response else {
        return Answer {
            sent,
            status: 0,
            version: None,
            prediction: None,
            body: format!("{response:?}"),
        };
    };
    let status = response.status().as_u16();
    let version = response
        .headers()
        .get("model-version")
        .map(|v| v.to_str().unwrap().to_string());
    let body = response.text().await.unwrap_or_default();
    let prediction = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v["prediction"][0].as_f64());
    Answer {
        sent,
        status,
        version,
        prediction,
        body,
    }
}

fn serves(node: &TestNode, model: &str, version: u64) -> bool {
    node.state
        .registry
        .get(Some(model), None)
        .is_ok_and(|s| s.version == version)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_under_load_fails_no_request_and_mixes_no_versions() {
    let consul = common::spawn_consul().await;
    let dir = tempfile::tempdir().unwrap();
    place(dir.path(), "LinearRegression", "LinearRegression");
    place(dir.path(), M, OLD);
    place(dir.path(), RETRAINED, RETRAINED);
    let nodes = [
        spawn_node(&consul.base_url(), dir.path()),
        spawn_node(&consul.base_url(), dir.path()),
    ];
    let gw = common::spawn_gateway(gateway_config(&consul.base_url(), &[])).await;
    let http = client();
    let query = format!("?model={M}");
    eventually(
        Duration::from_secs(15),
        "both nodes in the gateway",
        || async { common::services(&gw).await.len() == 2 },
    )
    .await;
    let old = predict(&http, &gw, &query).await;
    assert_eq!(
        (old.status, old.version.as_deref()),
        (200, Some("1")),
        "{}",
        old.body
    );
    let old = old.prediction.unwrap();
    // What the retrained model answers: the same file, served under its own name.
    let retrained = predict(&http, &gw, &format!("?model={RETRAINED}")).await;
    assert_eq!(retrained.status, 200, "{}", retrained.body);
    let retrained = retrained.prediction.unwrap();
    assert!((old - retrained).abs() > 1e-6, "{old} {retrained}");

    // The steady stream: 4 clients, one request at a time each.
    let stop = Arc::new(AtomicBool::new(false));
    let gw = Arc::new(gw);
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (gw, stop, query, http) = (gw.clone(), stop.clone(), query.clone(), client());
            tokio::spawn(async move {
                let mut answers = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    answers.push(predict(&http, &gw, &query).await);
                }
                answers
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;

    // 1. M is replaced by its retrained version.
    place(dir.path(), M, RETRAINED);
    eventually(
        Duration::from_secs(10),
        "every node serves version 2",
        || async { nodes.iter().all(|n| serves(n, M, 2)) },
    )
    .await;
    let switched = Instant::now();
    // The gateway passes a pinned version on: the new one answers, the old one is gone.
    let pinned = predict(&http, &gw, &format!("?model={M}&version=2")).await;
    assert_eq!(
        (pinned.status, pinned.version.as_deref()),
        (200, Some("2")),
        "{}",
        pinned.body
    );
    assert_eq!(pinned.prediction, Some(retrained));
    let gone = predict(&http, &gw, &format!("?model={M}&version=1")).await;
    assert_eq!(gone.status, 404, "{}", gone.body);
    tokio::time::sleep(Duration::from_millis(500)).await;

    // 2. A second model is added: the gateway routes to it once the nodes registered it.
    assert_eq!(
        predict(&http, &gw, &format!("?model={SECOND}"))
            .await
            .status,
        404
    );
    place(dir.path(), SECOND, SECOND);
    eventually(
        Duration::from_secs(10),
        "the gateway routes the new model",
        || async {
            predict(&http, &gw, &format!("?model={SECOND}"))
                .await
                .status
                == 200
        },
    )
    .await;
    for _ in 0..20 {
        let answer = predict(&http, &gw, &format!("?model={SECOND}")).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
    }

    // 3. It is removed again: the gateway stops routing it.
    std::fs::remove_file(dir.path().join(format!("{SECOND}.onnx"))).unwrap();
    eventually(
        Duration::from_secs(10),
        "the removed model is gone",
        || async {
            predict(&http, &gw, &format!("?model={SECOND}"))
                .await
                .status
                == 404
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);

    let mut answers = Vec::new();
    for client in clients {
        answers.extend(client.await.unwrap());
    }
    let (mut from_old, mut from_new) = (0, 0);
    for answer in &answers {
        assert_eq!(answer.status, 200, "a failed request: {}", answer.body);
        match answer.version.as_deref() {
            Some("1") => {
                assert_eq!(answer.prediction, Some(old), "{}", answer.body);
                assert!(
                    answer.sent < switched,
                    "an answer from version 1 to a request sent after the switch"
                );
                from_old += 1;
            }
            Some("2") => {
                assert_eq!(answer.prediction, Some(retrained), "{}", answer.body);
                from_new += 1;
            }
            other => panic!("answer from version {other:?}: {}", answer.body),
        }
    }
    eprintln!(
        "rollout under load: {} requests, 0 failed, {from_old} from version 1, {from_new} from version 2",
        answers.len()
    );
    assert!(from_old > 0 && from_new > 0, "{from_old} {from_new}");
}

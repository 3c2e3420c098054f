//! The seed's API, the Open Inference Protocol and /metrics, against a real node with the
//! shipped converted models.

mod common;

use common::{
    FEATURES, assert_close, client, default_node, golden, golden_models, models, post_json,
    seed_example,
};
use serde_json::{Value, json};

#[tokio::test]
async fn health_is_the_seed_json() {
    let node = default_node().await;
    let response = client().get(node.url("/health")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json",);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, json!({"status": "ok", "model": "LinearRegression"}));
}

#[tokio::test]
async fn predict_answers_the_seed_json_exactly() {
    let node = default_node().await;
    let response = client()
        .post(node.url("/predict"))
        .json(&seed_example())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let object = body.as_object().unwrap();
    let keys: Vec<&str> = object.keys().map(String::as_str).collect();
    assert_eq!(keys, ["input", "message", "model", "prediction"]);
    assert_eq!(body["message"], "GDP growth prediction endpoint");
    assert_eq!(body["model"], "LinearRegression");
    assert_eq!(
        body["input"],
        json!({"gdp_per_capita": 50000.0, "unemployment_rate": 5.2, "gdp_growth_rate_lag": 2.1, "gdp_growth_rate_ma": 2.3})
    );
    let prediction = body["prediction"].as_array().unwrap();
    assert_eq!(prediction.len(), 1);
    assert!(prediction[0].as_f64().unwrap().is_finite());
}

/// Query parameters read as FastAPI reads them: a repeated `model` counts with its last
/// value, and parameters the endpoint does not know are ignored.
#[tokio::test]
async fn query_parameters_follow_fastapi() {
    let node = default_node().await;
    for (query, status, model) in [
        ("?model=NoSuchModel&model=RandomForest", 200, "RandomForest"),
        ("?verbose=1", 200, "LinearRegression"),
        ("?model=RandomForest&model=NoSuchModel", 404, ""),
    ] {
        let response = client()
            .post(node.url(&format!("/predict{query}")))
            .json(&seed_example())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{query}");
        let body: Value = response.json().await.unwrap();
        if status == 200 {
            assert_eq!(body["model"], model, "{query}");
        } else {
            assert!(
                body["detail"].as_str().unwrap().contains("NoSuchModel"),
                "{body}"
            );
        }
    }
}

#[tokio::test]
async fn predict_echoes_integers_as_floats_like_pydantic() {
    let node = default_node().await;
    let text = client()
        .post(node.url("/predict"))
        .json(&seed_example())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.starts_with(r#"{"message":"GDP growth prediction endpoint","input":{"gdp_per_capita":50000.0,"unemployment_rate":5.2,"gdp_growth_rate_lag":2.1,"gdp_growth_rate_ma":2.3},"model":"LinearRegression","prediction":["#),
        "{text}"
    );
}

fn row_body(row: &Value) -> Value {
    let values = row.as_array().unwrap();
    let mut object = serde_json::Map::new();
    for (name, value) in FEATURES.iter().zip(values) {
        object.insert(name.to_string(), value.clone());
    }
    Value::Object(object)
}

#[tokio::test]
async fn every_model_matches_the_golden_predictions() {
    let node = default_node().await;
    let golden = golden();
    let rows = golden["holdout"]["rows"].as_array().unwrap();
    let http = client();
    for name in golden_models() {
        let want: Vec<f64> = golden["models"][&name]["predictions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p[0].as_f64().unwrap())
            .collect();
        // Batch form: all hold-out rows in one request, answers in order.
        let batch: Vec<Value> = rows.iter().map(row_body).collect();
        let body = post_json(&http, &node.url(&format!("/predict?model={name}")), &batch).await;
        assert_eq!(body["model"], name.as_str());
        assert_eq!(body["input"].as_array().unwrap().len(), rows.len());
        let got = body["prediction"].as_array().unwrap();
        assert_eq!(got.len(), want.len(), "{name}");
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_close(g.as_f64().unwrap(), *w, &format!("{name} batch row {i}"));
        }
        // Single rows, concurrently, so the dynamic batcher merges them.
        let singles = rows.iter().map(|row| {
            let http = http.clone();
            let url = node.url(&format!("/predict?model={name}"));
            let body = row_body(row);
            async move {
                let r = post_json(&http, &url, &body).await;
                r["prediction"][0].as_f64().unwrap()
            }
        });
        let got = futures::future::join_all(singles).await;
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_close(*g, *w, &format!("{name} single row {i}"));
        }
    }
}

/// Requests of 1 to 5 rows at once, so the batcher merges jobs of different sizes into one
/// call and splits the output back: each answer must echo its own rows and carry their golden
/// predictions, in order.
#[tokio::test]
async fn merged_jobs_of_different_sizes_get_their_own_rows_and_predictions() {
    let node = default_node().await;
    let golden = golden();
    let rows = golden["holdout"]["rows"].as_array().unwrap();
    let want = golden["models"]["RandomForest"]["predictions"]
        .as_array()
        .unwrap();
    let http = client();
    let mut requests = Vec::new();
    let (mut start, mut size) = (0, 1);
    while start < rows.len() {
        let end = (start + size).min(rows.len());
        requests.push(start..end);
        start = end;
        size = size % 5 + 1;
    }
    let answers = requests.iter().map(|range| {
        let http = http.clone();
        let url = node.url("/predict?model=RandomForest");
        let body: Vec<Value> = rows[range.clone()].iter().map(row_body).collect();
        async move {
            let answer = post_json(&http, &url, &body).await;
            (body, answer)
        }
    });
    for (range, (sent, answer)) in requests
        .iter()
        .zip(futures::future::join_all(answers).await)
    {
        assert_eq!(answer["input"], json!(sent), "rows {range:?}");
        let got = answer["prediction"].as_array().unwrap();
        assert_eq!(got.len(), range.len(), "rows {range:?}");
        for (g, i) in got.iter().zip(range.clone()) {
            let w = want[i][0].as_f64().unwrap();
            assert_close(g.as_f64().unwrap(), w, &format!("row {i}"));
        }
    }
}

#[tokio::test]
async fn models_lists_every_loaded_model() {
    let node = default_node().await;
    let body = models(&node).await;
    assert_eq!(body["default_model"], "LinearRegression");
    let models = body["models"].as_array().unwrap();
    let names: Vec<&str> = models.iter().map(|m| m["name"].as_str().unwrap()).collect();
    let regressors = golden_models();
    let mut want = regressors.clone();
    want.extend(common::classifier_golden_models());
    want.sort();
    assert_eq!(names, want);
    for model in models {
        if regressors.iter().any(|r| model["name"] == r.as_str()) {
            assert_eq!(model["feature_names"], json!(FEATURES));
        }
        assert!(!model["estimator"].as_str().unwrap().is_empty(), "{model}");
        assert_eq!(
            model["source_sha256"].as_str().unwrap().len(),
            64,
            "{model}"
        );
    }
}

#[tokio::test]
async fn a_draining_node_is_not_ready_in_each_api_family_shape() {
    let node = default_node().await;
    let http = client();
    let status = |path: &'static str| {
        let request = http.get(node.url(path)).send();
        async move { request.await.unwrap().status().as_u16() }
    };
    assert_eq!(status("/v2/health/ready").await, 200);
    node.state.start_draining();
    // The protocol asks for a 4xx (Triton: 400); the node's own /ready and the seed's
    // /health say 503; liveness is unchanged.
    assert_eq!(status("/v2/health/ready").await, 400);
    assert_eq!(status("/v2/models/RandomForest/ready").await, 400);
    assert_eq!(
        status("/v2/models/RandomForest/versions/1/ready").await,
        400
    );
    assert_eq!(status("/v2/models/NoSuchModel/ready").await, 404);
    assert_eq!(status("/ready").await, 503);
    assert_eq!(status("/health").await, 503);
    assert_eq!(status("/v2/health/live").await, 200);
}

#[tokio::test]
async fn v2_health_metadata_and_infer() {
    let node = default_node().await;
    let http = client();
    let server: Value = http
        .get(node.url("/v2"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(server["name"], "inference-node");
    for path in [
        "/v2/health/live",
        "/v2/health/ready",
        "/ready",
        "/v2/models/RandomForest/ready",
    ] {
        assert_eq!(
            http.get(node.url(path)).send().await.unwrap().status(),
            200,
            "{path}"
        );
    }
    let metadata: Value = http
        .get(node.url("/v2/models/RandomForest"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(metadata["platform"], "onnx_onnxv1");
    assert_eq!(
        metadata["inputs"],
        json!([{"name": "input", "datatype": "FP64", "shape": [-1, 4]}])
    );
    assert_eq!(
        metadata["outputs"],
        json!([{"name": "variable", "datatype": "FP64", "shape": [-1, 1]}])
    );

    let golden = golden();
    let rows = golden["holdout"]["rows"].as_array().unwrap();
    let want = &golden["models"]["RandomForest"]["predictions"];
    let nested = json!({
        "id": "req-7",
        "inputs": [{"name": "input", "shape": [rows.len(), 4], "datatype": "FP64", "data": rows}]
    });
    let flat_data: Vec<Value> = rows
        .iter()
        .flat_map(|r| r.as_array().unwrap().clone())
        .collect();
    let flat = json!({
        "inputs": [{"name": "input", "shape": [rows.len(), 4], "datatype": "FP64", "data": flat_data}],
        "outputs": [{"name": "variable"}]
    });
    for (request, id) in [(nested, Some("req-7")), (flat, None)] {
        let response = http
            .post(node.url("/v2/models/RandomForest/infer"))
            .json(&request)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["model_name"], "RandomForest");
        assert_eq!(body["id"].as_str(), id);
        let output = &body["outputs"][0];
        assert_eq!(output["name"], "variable");
        assert_eq!(output["datatype"], "FP64");
        assert_eq!(output["shape"], json!([rows.len(), 1]));
        for (i, got) in output["data"].as_array().unwrap().iter().enumerate() {
            assert_close(
                got.as_f64().unwrap(),
                want[i][0].as_f64().unwrap(),
                &format!("row {i}"),
            );
        }
    }

    let fp32 = json!({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [[40000.0, 4.5, 2.0, 2.5]]}]});
    let response = http
        .post(node.url("/v2/models/LinearRegression/versions/1/infer"))
        .json(&fp32)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["outputs"][0]["shape"], json!([1, 1]));
}

#[tokio::test]
async fn metrics_count_requests_batches_and_in_flight() {
    let node = default_node().await;
    let http = client();
    http.post(node.url("/predict"))
        .json(&seed_example())
        .send()
        .await
        .unwrap();
    let text = http
        .get(node.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        "node_http_requests_total{route=\"/predict\",method=\"POST\",status=\"200\"}",
        "node_http_request_duration_seconds_bucket{route=\"/predict\"",
        "node_inference_duration_seconds_bucket{model=\"LinearRegression\"",
        "node_batch_rows_bucket{model=\"LinearRegression\"",
        "node_requests_in_flight",
        "node_models_loaded",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
}

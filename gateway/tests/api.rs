//! The documented API, end to end: Consul stand-in → real inference nodes → gateway.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

async fn get_json(url: &str) -> (u16, Value) {
    let resp = client().get(url).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_answers_the_documented_json() {
    let consul = spawn_consul().await;
    let a = spawn_node(&consul.base_url());
    let b = spawn_node(&consul.base_url());
    let gw = spawn_gateway(gateway_config(&consul.base_url(), &[])).await;
    wait_for_set(&gw, &[&a, &b]).await;
    let mut both = vec![a.addr(), b.addr()];
    both.sort();

    // GET /api/predict/services: the seed's key (colon included) and a plain one.
    let (status, v) = get_json(&gw.url("/api/predict/services")).await;
    assert_eq!(status, 200);
    let obj = v.as_object().unwrap();
    assert_eq!(obj.len(), 2, "{v}");
    let mut seed_list: Vec<String> = serde_json::from_value(v["Services:"].clone()).unwrap();
    seed_list.sort();
    assert_eq!(seed_list, both);
    assert_eq!(v["Services:"], v["services"]);

    // GET /api/models/available: every node's model names, as the node lists them.
    let (_, direct) = get_json(&format!("http://{}/models", a.addr())).await;
    let names: Vec<Value> = direct["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].clone())
        .collect();
    assert!(names.contains(&json!("LinearRegression")));
    assert!(names.contains(&json!("RandomForest")));
    let (status, v) = get_json(&gw.url("/api/models/available")).await;
    assert_eq!(status, 200);
    let mut services: Vec<String> = serde_json::from_value(v["services"].clone()).unwrap();
    services.sort();
    assert_eq!(services, both);
    let by_service: BTreeMap<String, Vec<Value>> =
        serde_json::from_value(v["models_by_service"].clone()).unwrap();
    assert_eq!(by_service.keys().cloned().collect::<Vec<_>>(), both);
    for models in by_service.values() {
        assert_eq!(models, &names);
    }
    assert_eq!(v.as_object().unwrap().len(), 2, "{v}");

    // POST /api/predict/gdp_growth_rate: exactly what a node answers.
    let (status, via_gateway) = post(&gw.url("/api/predict/gdp_growth_rate"), SEED_ROW).await;
    assert_eq!(status, 200, "{via_gateway}");
    let (_, from_node) = post(&format!("http://{}/predict", a.addr()), SEED_ROW).await;
    assert_eq!(via_gateway, from_node);
    assert_eq!(via_gateway["message"], "GDP growth prediction endpoint");
    assert_eq!(via_gateway["model"], "LinearRegression");
    assert_eq!(
        via_gateway["input"]["gdp_per_capita"].as_f64(),
        Some(50000.0)
    );
    assert_eq!(via_gateway["prediction"].as_array().unwrap().len(), 1);

    // ?model= and batches pass through.
    let (status, v) = post(
        &gw.url("/api/predict/gdp_growth_rate?model=RandomForest"),
        SEED_ROW,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["model"], "RandomForest");
    // A repeated ?model= counts with its last value, as in FastAPI (gateway and node agree).
    let (status, v) = post(
        &gw.url("/api/predict/gdp_growth_rate?model=NoSuchModel&model=RandomForest"),
        SEED_ROW,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["model"], "RandomForest");
    let batch = format!("[{SEED_ROW}, {SEED_ROW}]");
    let (status, v) = post(&gw.url("/api/predict/gdp_growth_rate"), &batch).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["prediction"].as_array().unwrap().len(), 2);

    // A node's 4xx comes back unchanged.
    let bad = r#"{"gdp_per_capita": 50000}"#;
    let (status, via_gateway) = post(&gw.url("/api/predict/gdp_growth_rate"), bad).await;
    let (node_status, from_node) = post(&format!("http://{}/predict", a.addr()), bad).await;
    assert_eq!((status, &via_gateway), (node_status, &from_node));
    assert_eq!(status, 422);
    let (status, v) = post(&gw.url("/api/predict/gdp_growth_rate"), "{not json").await;
    assert!((400..500).contains(&status), "{status} {v}");
    assert!(v["detail"].is_string() || v["detail"].is_array(), "{v}");

    // A model no healthy node serves: 404 from the gateway, naming it.
    let (status, v) = post(
        &gw.url("/api/predict/gdp_growth_rate?model=NoSuchModel"),
        SEED_ROW,
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(
        v,
        json!({"detail": "model 'NoSuchModel' is not served by any healthy instance"})
    );

    // A body over the limit: 413 in the FastAPI shape.
    let big = format!("[{}]", vec![SEED_ROW; 20_000].join(","));
    let (status, v) = post(&gw.url("/api/predict/gdp_growth_rate"), &big).await;
    assert_eq!(status, 413);
    assert_eq!(
        v,
        json!({"detail": "request body is larger than the limit of 1048576 bytes"})
    );

    // GET /health.
    let (status, v) = get_json(&gw.url("/health")).await;
    assert_eq!(status, 200);
    assert_eq!(
        v,
        json!({"status": "ok", "healthy_instances": 2, "discovery": "ok"})
    );

    // GET /metrics: Prometheus text with the documented series.
    let text = client()
        .get(gw.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for series in [
        "gateway_http_requests_total{route=\"/api/predict/gdp_growth_rate\",method=\"POST\",status=\"200\"}",
        "gateway_http_request_duration_seconds_bucket{route=\"/api/predict/gdp_growth_rate\"",
        "gateway_upstream_attempts_total{node=",
        "gateway_healthy_instances ",
        "gateway_discovery_staleness_seconds ",
        "gateway_discovery_up 1",
    ] {
        assert!(text.contains(series), "missing {series} in:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_healthy_instance_is_503() {
    let consul = spawn_consul().await;
    let gw = spawn_gateway(gateway_config(&consul.base_url(), &[])).await;
    eventually(Duration::from_secs(5), "first Consul answer", || async {
        gw.state.discovery.status().updates() > 0
    })
    .await;
    let (status, v) = post(&gw.url("/api/predict/gdp_growth_rate"), SEED_ROW).await;
    assert_eq!(status, 503);
    assert_eq!(
        v,
        json!({"detail": "no healthy instance of gdp-growth-model is available"})
    );
    let (status, v) = get_json(&gw.url("/api/models/available")).await;
    assert_eq!(status, 200);
    assert_eq!(v, json!({"models_by_service": {}, "services": []}));
    let (_, v) = get_json(&gw.url("/api/predict/services")).await;
    assert_eq!(v, json!({"Services:": [], "services": []}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_and_methods_get_fastapi_errors() {
    let consul = spawn_consul().await;
    let gw = spawn_gateway(gateway_config(&consul.base_url(), &[])).await;
    let (status, v) = get_json(&gw.url("/nope")).await;
    assert_eq!((status, v), (404, json!({"detail": "Not Found"})));
    let (status, v) = get_json(&gw.url("/api/predict/gdp_growth_rate")).await;
    assert_eq!((status, v), (405, json!({"detail": "Method Not Allowed"})));
    let (status, v) = post(&gw.url("/health"), "{}").await;
    assert_eq!((status, v), (405, json!({"detail": "Method Not Allowed"})));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_and_swagger_ui_work_offline() {
    let consul = spawn_consul().await;
    let gw = spawn_gateway(gateway_config(&consul.base_url(), &[])).await;

    let (status, doc) = get_json(&gw.url("/openapi.json")).await;
    assert_eq!(status, 200);
    for (path, method) in [
        ("/api/models/available", "get"),
        ("/api/predict/gdp_growth_rate", "post"),
        ("/api/predict/services", "get"),
        ("/health", "get"),
        ("/metrics", "get"),
    ] {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} missing"
        );
    }
    // OpenAPI: templated paths that differ only in parameter names are the same path.
    let mut shapes: Vec<String> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(|p| {
            p.split('/')
                .map(|seg| if seg.starts_with('{') { "{}" } else { seg })
                .collect::<Vec<_>>()
                .join("/")
        })
        .collect();
    let listed = shapes.len();
    shapes.sort();
    shapes.dedup();
    assert_eq!(
        shapes.len(),
        listed,
        "two paths differ only in parameter names"
    );
    // The prediction body is one row or a list of rows.
    let body = &doc["paths"]["/api/predict/gdp_growth_rate"]["post"]["requestBody"]["content"]["application/json"]
        ["schema"];
    let body = match body["$ref"].as_str() {
        Some(r) => &doc["components"]["schemas"][r.rsplit('/').next().unwrap()],
        None => body,
    };
    let variants = body["oneOf"].as_array().expect("oneOf row / list of rows");
    assert_eq!(variants.len(), 2, "{body}");
    assert!(variants.iter().any(|v| v["type"] == "array"), "{body}");

    // /docs is the Swagger UI page; every asset it loads is served locally.
    let http = client();
    let resp = http.get(gw.url("/docs")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.url().path(), "/docs/");
    let html = resp.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "{html}");
    let mut assets = Vec::new();
    for attr in ["href=\"", "src=\""] {
        for part in html.split(attr).skip(1) {
            let target = part.split('"').next().unwrap();
            if !target.starts_with("http") {
                assets.push(target.trim_start_matches("./").to_string());
            }
        }
    }
    assert!(assets.iter().any(|a| a.ends_with(".js")), "{assets:?}");
    assert!(assets.iter().any(|a| a.ends_with(".css")), "{assets:?}");
    for asset in &assets {
        let resp = http
            .get(gw.url(&format!("/docs/{asset}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{asset}");
        let body = resp.text().await.unwrap();
        assert!(!body.is_empty(), "{asset}");
        if asset.contains("initializer") {
            assert!(body.contains("/openapi.json"), "{body}");
        }
    }
    assert!(
        assets.iter().any(|a| a.contains("initializer")),
        "{assets:?}"
    );
}

/// The seed README's three non-lifecycle curl examples, verbatim (only the port changes); kept
/// here so the test stands on its own, without reading the seed's document.
const SEED_CURLS: [&str; 3] = [
    "curl http://localhost:8000/api/models/available",
    r#"curl -X POST "http://localhost:8000/api/predict/gdp_growth_rate" \
  -H "Content-Type: application/json" \
  -d '{
    "gdp_per_capita": 50000,
    "unemployment_rate": 5.2,
    "gdp_growth_rate_lag": 2.1,
    "gdp_growth_rate_ma": 2.3
  }'"#,
    "curl http://localhost:8000/api/predict/services",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_curl_examples_run_verbatim() {
    let curl = std::process::Command::new("curl").arg("--version").output();
    assert!(
        curl.is_ok(),
        "curl is required for this test (apt-get install curl)"
    );

    let consul = spawn_consul().await;
    let a = spawn_node(&consul.base_url());
    let b = spawn_node(&consul.base_url());
    let gw = spawn_gateway(gateway_config(&consul.base_url(), &[])).await;
    wait_for_set(&gw, &[&a, &b]).await;

    let mut outputs = Vec::new();
    for cmd in SEED_CURLS {
        let cmd = cmd.replace("localhost:8000", &format!("localhost:{}", gw.addr.port()));
        let out = tokio::process::Command::new("bash")
            .args(["-c", &cmd])
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "{cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        outputs.push(serde_json::from_slice::<Value>(&out.stdout).unwrap());
    }
    let mut both = vec![a.addr(), b.addr()];
    both.sort();
    let sorted = |v: &Value| {
        let mut l: Vec<String> = serde_json::from_value(v.clone()).unwrap();
        l.sort();
        l
    };
    assert_eq!(sorted(&outputs[0]["services"]), both);
    assert_eq!(outputs[1]["message"], "GDP growth prediction endpoint");
    assert_eq!(outputs[1]["model"], "LinearRegression");
    for (field, value) in [
        ("gdp_per_capita", 50000.0),
        ("unemployment_rate", 5.2),
        ("gdp_growth_rate_lag", 2.1),
        ("gdp_growth_rate_ma", 2.3),
    ] {
        assert_eq!(outputs[1]["input"][field].as_f64(), Some(value), "{field}");
    }
    assert!(outputs[1]["prediction"][0].is_f64());
    assert_eq!(sorted(&outputs[2]["Services:"]), both);
}

/// `POST /api/models/{model_name}/predict` answers exactly as the seed route with
/// `?model={model_name}` does, errors included; a name that is not plain is a 422.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_in_the_path_predicts_as_the_seed_route() {
    let consul = spawn_consul().await;
    let node = spawn_node(&consul.base_url());
    let gw = spawn_gateway(gateway_config(&consul.base_url(), &[])).await;
    wait_for_set(&gw, &[&node]).await;

    let batch = format!("[{SEED_ROW}, {SEED_ROW}]");
    let bad = r#"{"gdp_per_capita": 50000}"#;
    for model in ["LinearRegression", "RandomForest", "NoSuchModel"] {
        for body in [SEED_ROW, batch.as_str(), bad] {
            let seed = post(
                &gw.url(&format!("/api/predict/gdp_growth_rate?model={model}")),
                body,
            )
            .await;
            let by_path = post(&gw.url(&format!("/api/models/{model}/predict")), body).await;
            assert_eq!(by_path, seed, "{model} {body}");
            let want = match (model, body == bad) {
                ("NoSuchModel", _) => 404,
                (_, true) => 422,
                _ => 200,
            };
            assert_eq!(by_path.0, want, "{model} {body}: {}", by_path.1);
            if want == 200 {
                assert_eq!(by_path.1["model"], model);
            }
        }
    }

    // The model comes from the path alone.
    let (status, v) = post(
        &gw.url("/api/models/RandomForest/predict?model=LinearRegression"),
        SEED_ROW,
    )
    .await;
    assert_eq!((status, v["model"].as_str()), (200, Some("RandomForest")));

    // Names that are not plain: 422 in FastAPI's shape, before any node is asked.
    for name in ["1abc", "a.onnx", "bad%20name", &"a".repeat(65)] {
        let (status, v) = post(&gw.url(&format!("/api/models/{name}/predict")), SEED_ROW).await;
        assert_eq!(status, 422, "{name}: {v}");
        assert_eq!(v["detail"][0]["loc"], json!(["path", "model_name"]), "{v}");
    }

    // Documented, with the row shape.
    let (_, doc) = get_json(&gw.url("/openapi.json")).await;
    let operation = &doc["paths"]["/api/models/{model_name}/predict"]["post"];
    assert_eq!(
        operation["parameters"][0]["name"], "model_name",
        "{operation}"
    );
    let body = &operation["requestBody"]["content"]["application/json"]["schema"]["$ref"];
    assert_eq!(body, "#/components/schemas/ModelPredictBody", "{operation}");
    // The row shape: an object of feature names to a number, a string or null.
    let schemas = &doc["components"]["schemas"];
    let row = &schemas["ModelRow"];
    assert_eq!(row["type"], "object", "{row}");
    assert!(row["example"]["party"].is_string(), "{row}");
    assert!(
        row["description"]
            .as_str()
            .unwrap()
            .contains("`null` for a missing value"),
        "{row}"
    );
    let value = serde_json::to_string(&schemas["FeatureValue"]).unwrap();
    assert!(
        value.contains("number") && value.contains("string"),
        "{value}"
    );
    let seed = &doc["paths"]["/api/predict/gdp_growth_rate"]["post"]["requestBody"];
    assert_eq!(
        seed["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/PredictBody"
    );
    assert!(
        seed["description"]
            .as_str()
            .unwrap()
            .contains("ModelPredictBody")
    );
}

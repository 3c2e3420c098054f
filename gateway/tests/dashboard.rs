//! The dashboard's JSON (`/api/cluster`, `/api/cluster/models`) and page (`/ui`) against real
//! nodes registered in the Consul stand-in. The page itself is driven in a browser by
//! tests/browser (scripts/test.sh).

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

async fn get_json(url: &str) -> Value {
    let resp = client().get(url).send().await.unwrap();
    assert_eq!(resp.status(), 200, "{url}");
    resp.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_summary_lists_the_nodes_and_counts_their_requests() {
    let consul = spawn_consul().await;
    let a = spawn_node(&consul.base_url());
    let b = spawn_node(&consul.base_url());
    let gw = spawn_gateway(gateway_config(&consul.base_url(), &[])).await;
    wait_for_set(&gw, &[&a, &b]).await;

    let v = get_json(&gw.url("/api/cluster")).await;
    assert_eq!(v["discovery"], "ok");
    assert_eq!(v["admin_token_required"], false);
    let mut addrs: Vec<&str> = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["addr"].as_str().unwrap())
        .collect();
    addrs.sort();
    let mut want = vec![a.addr(), b.addr()];
    want.sort();
    assert_eq!(addrs, want);
    for node in v["nodes"].as_array().unwrap() {
        assert_eq!(node["consul"], "passing");
        assert_eq!(node["ejected"], false);
        assert!(
            node["models"]
                .as_array()
                .unwrap()
                .contains(&"LinearRegression".into())
        );
        let history = &node["stats"]["history"];
        assert_eq!(history["bucket_secs"], 2);
        assert_eq!(history["requests_per_sec"].as_array().unwrap().len(), 149);
    }

    // 20 predictions (2 of them a client's mistake, 422): they show in the cluster's and the
    // nodes' numbers once their bucket is complete; a 4xx is no error.
    let http = client();
    for _ in 0..18 {
        assert_eq!(predict(&http, &gw).await, 200);
    }
    for _ in 0..2 {
        let resp = http
            .post(gw.url("/api/predict/gdp_growth_rate"))
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 422);
    }
    let mut last = Value::Null;
    let counted = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            last = get_json(&gw.url("/api/cluster")).await;
            // 20 requests in the last 10 s = 2 per second.
            if last["cluster"]["recent"]["requests_per_sec"].as_f64() == Some(2.0) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    assert!(counted.is_ok(), "{last}");
    let recent = &last["cluster"]["recent"];
    assert_eq!(recent["errors_per_sec"], 0.0, "{last}");
    let p50 = recent["p50_ms"].as_f64().unwrap();
    let p99 = recent["p99_ms"].as_f64().unwrap();
    assert!(0.0 < p50 && p50 <= p99 && p99 < 2000.0, "{last}");
    let history: f64 = last["cluster"]["history"]["requests_per_sec"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_f64().unwrap())
        .sum();
    assert_eq!(history * 2.0, 20.0, "{last}");
    // Every request went to one of the nodes (a hedge on a loaded machine adds attempts).
    let attempts: f64 = last["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["stats"]["recent"]["requests_per_sec"].as_f64().unwrap())
        .sum();
    assert!(attempts >= 2.0, "{last}");

    // A node that leaves the healthy set leaves the summary, and its series are dropped.
    drop(b);
    wait_for_set(&gw, &[&a]).await;
    let v = get_json(&gw.url("/api/cluster")).await;
    assert_eq!(v["nodes"].as_array().unwrap().len(), 1, "{v}");
    assert!(gw.state.stats.nodes() <= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_models_document_passes_on_what_the_nodes_describe() {
    let consul = spawn_consul().await;
    let a = spawn_node(&consul.base_url());
    let b = spawn_node(&consul.base_url());
    let gw = spawn_gateway(gateway_config(&consul.base_url(), &[])).await;
    wait_for_set(&gw, &[&a, &b]).await;

    let node_doc = get_json(&format!("http://{}/models", a.addr())).await;
    let v = get_json(&gw.url("/api/cluster/models")).await;
    let models = v["models"].as_array().unwrap();
    let names: Vec<&str> = models.iter().map(|m| m["name"].as_str().unwrap()).collect();
    let mut want: Vec<&str> = node_doc["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    want.sort();
    assert_eq!(names, want);
    for (model, described) in models.iter().zip(want.iter().map(|n| {
        node_doc["models"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == *n)
            .unwrap()
    })) {
        let mut nodes: Vec<&str> = model["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap())
            .collect();
        nodes.sort();
        let mut both = vec![a.addr(), b.addr()];
        both.sort();
        assert_eq!(nodes, both, "{model}");
        let features: Vec<&Value> = model["features"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| &f["name"])
            .collect();
        let node_features: Vec<&Value> = described["feature_names"]
            .as_array()
            .unwrap()
            .iter()
            .collect();
        assert_eq!(features, node_features, "{model}");
        // Each feature's type as the node describes it (the shipped VoteChoice has strings).
        let types: Vec<&Value> = model["features"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| &f["type"])
            .collect();
        let node_types: Vec<&Value> = described["features"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| &f["type"])
            .collect();
        assert_eq!(types, node_types, "{model}");
        assert_eq!(model["estimator"], described["estimator"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_is_served_offline_with_a_strict_policy() {
    let consul = spawn_consul().await;
    let gw = spawn_gateway(gateway_config(
        &consul.base_url(),
        &["--admin-token", "s3cret-token-value"],
    ))
    .await;
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap();
    let resp = no_redirects.get(gw.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 307);
    assert_eq!(resp.headers()["location"], "/ui");

    let mut total = 0;
    for (path, kind) in [
        ("/ui", "text/html"),
        ("/ui/app.js", "text/javascript"),
        ("/ui/app.css", "text/css"),
    ] {
        let resp = client().get(gw.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let headers = resp.headers().clone();
        assert!(
            headers["content-type"].to_str().unwrap().starts_with(kind),
            "{path}"
        );
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
            "{csp}"
        );
        total += resp.bytes().await.unwrap().len();
    }
    assert!(total < 300 * 1024, "the page is {total} bytes");

    // The summary says the lifecycle needs the token, and is itself open like /health.
    let v = get_json(&gw.url("/api/cluster")).await;
    assert_eq!(v["admin_token_required"], true);
    assert_eq!(v["nodes"], Value::Array(vec![]));
    let doc = get_json(&gw.url("/openapi.json")).await;
    for path in ["/api/cluster", "/api/cluster/models"] {
        assert!(doc["paths"][path]["get"].is_object(), "{path} undocumented");
    }
}

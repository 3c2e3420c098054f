//! The shipped classifier (`SlowGrowth`) and mixed-type pipeline (`VoteChoice`) through the
//! gateway (issue 18): the README's curl bodies, sent through a real gateway to two real
//! nodes (Consul stand-in), answer sklearn's labels and probabilities as
//! `models/gdp_growth_rate/classifiers-golden.json` records them (written by
//! scripts/train_byom_models.py), on both prediction routes.

mod common;

use common::*;
use serde_json::Value;

fn classifiers_golden() -> Value {
    let path = models_dir().join("classifiers-golden.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

fn readme() -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    std::fs::read_to_string(path).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readmes_classifier_bodies_answer_as_sklearn_through_the_gateway() {
    let golden = classifiers_golden();
    let models = golden["models"].as_object().unwrap();
    assert_eq!(
        models.keys().collect::<Vec<_>>(),
        ["SlowGrowth", "VoteChoice"]
    );
    let readme = readme();
    let consul = spawn_consul().await;
    let a = spawn_node(&consul.base_url());
    let b = spawn_node(&consul.base_url());
    let gw = spawn_gateway(gateway_config(&consul.base_url(), &[])).await;
    wait_for_set(&gw, &[&a, &b]).await;

    for (name, want) in models {
        let body = want["body"].as_str().unwrap();
        // The README shows this very body in its curl for the model.
        assert!(
            readme.contains(&format!("/api/models/{name}/predict")),
            "README has no curl for {name}"
        );
        assert!(
            readme.contains(&format!("-d '{body}'")),
            "README's curl body for {name} is not the golden one: {body}"
        );
        for url in [
            gw.url(&format!("/api/models/{name}/predict")),
            gw.url(&format!("/api/predict/gdp_growth_rate?model={name}")),
        ] {
            // Several times: the gateway picks a node at random, and both must agree.
            for _ in 0..4 {
                let (status, got) = post(&url, body).await;
                assert_eq!(status, 200, "{url}: {got}");
                assert_eq!(got["model"], name.as_str());
                assert_eq!(got["prediction"], want["labels"], "{url}");
                assert_eq!(got["classes"], want["classes"], "{url}");
                let got_p = got["probabilities"].as_array().unwrap();
                let want_p = want["probabilities"].as_array().unwrap();
                assert_eq!(got_p.len(), want_p.len());
                for (g, w) in got_p.iter().zip(want_p) {
                    let (g, w) = (g.as_array().unwrap(), w.as_array().unwrap());
                    assert_eq!(g.len(), w.len());
                    for (x, y) in g.iter().zip(w) {
                        let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
                        assert!((x - y).abs() <= 1e-9, "{name}: {x} vs sklearn {y}");
                    }
                }
            }
        }
    }

    // A wrong type in a string column comes back as the node's 422, naming field and value.
    let (status, got) = post(
        &gw.url("/api/models/VoteChoice/predict"),
        r#"{"popul": 1, "TVnews": 1, "selfLR": 1, "age": 30, "income": 1, "party": 7, "education": "high school"}"#,
    )
    .await;
    assert_eq!(status, 422, "{got}");
    assert_eq!(
        got["detail"][0]["loc"],
        serde_json::json!(["body", "party"])
    );
    assert_eq!(got["detail"][0]["input"], 7);
}

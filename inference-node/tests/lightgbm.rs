//! LightGBM models served end to end (issue 19): a converted LGBMClassifier pickle and a
//! converted native LightGBM text model (`tests/data/lightgbm/`, see its README) on a real node
//! with real ONNX Runtime, through the seed's `/predict` (rows with nulls, exact zeros, values
//! around LightGBM's zero threshold and odd category codes) and V2 (binary FP64 with NaN),
//! compared with LightGBM's own `predict` / `predict_proba` from the fixtures the models were
//! converted from: regressors within 1e-12 relative, probabilities within 1e-12 absolute,
//! labels equal.

mod common;

use std::path::Path;

use common::{client, config_for, model_info, output, post_json, spawn_node, v2_binary};
use serde_json::{Value, json};

/// The fixture a served model was converted from.
fn expected(fixture: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tools/tests/data/fixtures-lightgbm/4.7.0")
        .join(format!("{fixture}.expected.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// The fixture's rows as numbers (NaN for missing).
fn rows(expected: &Value) -> Vec<Vec<f64>> {
    expected["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r.as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().parse::<f64>().unwrap())
                .collect()
        })
        .collect()
}

/// The rows as the seed's JSON objects (null for missing).
fn bodies(expected: &Value) -> Value {
    let names: Vec<&str> = expected["feature_names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    rows(expected)
        .iter()
        .map(|row| {
            names
                .iter()
                .zip(row)
                .map(|(n, v)| {
                    (
                        n.to_string(),
                        if v.is_nan() { Value::Null } else { json!(v) },
                    )
                })
                .collect::<serde_json::Map<_, _>>()
                .into()
        })
        .collect::<Vec<Value>>()
        .into()
}

async fn node() -> common::TestNode {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/lightgbm");
    spawn_node(config_for(&dir, &[])).await
}

/// Largest error of `got` against `want` (flattened), relative to `max(1, |want|)` or absolute;
/// panics beyond 1e-12.
fn max_error(got: &[f64], want: &[f64], relative: bool) -> f64 {
    assert_eq!(got.len(), want.len());
    let mut max = 0.0f64;
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        let scale = if relative { b.abs().max(1.0) } else { 1.0 };
        let error = (a - b).abs() / scale;
        assert!(error <= 1e-12, "value {i}: node {a:?}, LightGBM {b:?}");
        max = max.max(error);
    }
    max
}

fn numbers(value: &Value) -> Vec<f64> {
    let mut out = Vec::new();
    let mut stack = vec![value];
    while let Some(v) = stack.pop() {
        match v {
            Value::Array(items) => stack.extend(items.iter().rev()),
            other => out.push(other.as_f64().unwrap()),
        }
    }
    out
}

#[tokio::test]
async fn a_lightgbm_classifier_answers_as_lightgbm() {
    let node = node().await;
    let want = expected("lgbm_multiclass");
    let classes = want["classes"].as_array().unwrap();
    let labels: Vec<Value> = want["labels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| classes[i.as_u64().unwrap() as usize].clone())
        .collect();
    let probabilities = numbers(&want["probabilities"]);

    let url = node.url("/predict?model=PartyLGBM");
    let answer = post_json(&client(), &url, &bodies(&want)).await;
    assert_eq!(answer["model"], "PartyLGBM");
    assert_eq!(answer["classes"], want["classes"]);
    assert_eq!(answer["prediction"], json!(labels));
    let seed = max_error(&numbers(&answer["probabilities"]), &probabilities, false);

    let rows = rows(&want);
    let answer = v2_binary(&node, "PartyLGBM", &rows).await;
    assert_eq!(output(&answer, "label"), &json!(labels));
    let v2 = max_error(
        &numbers(output(&answer, "probabilities")),
        &probabilities,
        false,
    );
    println!(
        "PartyLGBM: {} rows, labels equal, max |Δp| {seed:.1e} (/predict), {v2:.1e} (V2)",
        rows.len()
    );

    let info = model_info(&node, "PartyLGBM").await;
    assert_eq!(info["task"], "classification");
    assert_eq!(info["classes"], want["classes"]);
    let features = info["features"].as_array().unwrap();
    assert_eq!(features.len(), 8);
    assert!(
        features
            .iter()
            .all(|f| f["nullable"] == true && f["type"] == "number")
    );
    assert_eq!(features[0]["name"], "popul");
}

#[tokio::test]
async fn a_native_lightgbm_regressor_answers_as_lightgbm() {
    let node = node().await;
    let want = expected("lgbm_zero_as_missing");
    assert_eq!(want["missing_types"], json!(["Zero", "categorical"]));
    let predictions = numbers(&want["predictions"]);

    let url = node.url("/predict?model=AffairsLGBM");
    let answer = post_json(&client(), &url, &bodies(&want)).await;
    assert_eq!(answer["model"], "AffairsLGBM");
    assert!(answer.get("classes").is_none());
    let seed = max_error(&numbers(&answer["prediction"]), &predictions, true);

    let rows = rows(&want);
    let answer = v2_binary(&node, "AffairsLGBM", &rows).await;
    let v2 = max_error(&numbers(output(&answer, "variable")), &predictions, true);
    println!(
        "AffairsLGBM: {} rows, max rel {seed:.1e} (/predict), {v2:.1e} (V2)",
        rows.len()
    );
}

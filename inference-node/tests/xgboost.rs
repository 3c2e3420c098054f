//! XGBoost models served end to end (issue 19): a converted XGBClassifier pickle
//! (multi:softprob) and a converted native UBJSON regressor (count:poisson) from
//! `tests/data/xgboost/` (see its README) on a real node with real ONNX Runtime, through the
//! seed's `/predict` (rows with nulls) and V2 (binary FP64 with NaN), compared with XGBoost's own
//! float32 `predict` / `predict_proba` from the fixtures the models were converted from: labels
//! equal, values bit-identical on most rows and within 1e-6 relative on all (the test prints how
//! many are exact).

mod common;

use std::path::Path;

use common::{client, config_for, model_info, output, post_json, spawn_node, v2_binary};
use serde_json::{Value, json};

const FIXTURES: &str = "../tools/tests/data/fixtures-xgboost/3.2.0";

fn read(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(FIXTURES)
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// A fixture's expected outputs and its held-out rows (NaN for missing) with their names.
fn fixture(name: &str) -> (Value, Vec<String>, Vec<Vec<f64>>) {
    let expected = read(&format!("{name}.expected.json"));
    let rows = read(expected["rows"].as_str().unwrap());
    let names = rows["feature_names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_owned())
        .collect();
    let values = rows["rows"]
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
        .collect();
    (expected, names, values)
}

/// The rows as the seed's JSON objects (null for missing).
fn bodies(names: &[String], rows: &[Vec<f64>]) -> Value {
    rows.iter()
        .map(|row| {
            names
                .iter()
                .zip(row)
                .map(|(n, v)| (n.clone(), if v.is_nan() { Value::Null } else { json!(v) }))
                .collect::<serde_json::Map<_, _>>()
                .into()
        })
        .collect::<Vec<Value>>()
        .into()
}

/// The fixture's numbers (float32 values as the repr of their double).
fn expected_numbers(value: &Value) -> Vec<f64> {
    value
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap().iter())
        .map(|v| v.as_str().unwrap().parse::<f64>().unwrap())
        .collect()
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

/// `(bit-identical values, largest relative error)`; panics beyond 1e-6.
fn closeness(got: &[f64], want: &[f64]) -> (usize, f64) {
    assert_eq!(got.len(), want.len());
    let (mut exact, mut max) = (0, 0.0f64);
    for (i, (a, b)) in got.iter().zip(want).enumerate() {
        if a.to_bits() == b.to_bits() {
            exact += 1;
            continue;
        }
        let error = (a - b).abs() / b.abs().max(f64::MIN_POSITIVE);
        assert!(error <= 1e-6, "value {i}: node {a:?}, XGBoost {b:?}");
        max = max.max(error);
    }
    (exact, max)
}

async fn node() -> common::TestNode {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/xgboost");
    spawn_node(config_for(&dir, &[])).await
}

#[tokio::test]
async fn an_xgboost_classifier_answers_as_xgboost() {
    let node = node().await;
    let (want, names, rows) = fixture("clf_softprob");
    let labels = &want["labels"];
    let probabilities = expected_numbers(&want["probabilities"]);

    let url = node.url("/predict?model=PartyXGB");
    let answer = post_json(&client(), &url, &bodies(&names, &rows)).await;
    assert_eq!(answer["model"], "PartyXGB");
    assert_eq!(answer["classes"], want["classes"]);
    assert_eq!(&answer["prediction"], labels);
    let (exact, seed) = closeness(&numbers(&answer["probabilities"]), &probabilities);

    let answer = v2_binary(&node, "PartyXGB", &rows).await;
    assert_eq!(output(&answer, "label"), labels);
    let (_, v2) = closeness(&numbers(output(&answer, "probabilities")), &probabilities);
    println!(
        "PartyXGB: {} rows, labels equal, {exact}/{} probabilities bit-identical, max rel {seed:.1e} (/predict), {v2:.1e} (V2)",
        rows.len(),
        probabilities.len()
    );

    let info = model_info(&node, "PartyXGB").await;
    assert_eq!(info["task"], "classification");
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
async fn a_native_xgboost_regressor_answers_as_xgboost() {
    let node = node().await;
    let (want, names, rows) = fixture("count_poisson");
    let predictions = expected_numbers(&want["predictions"]);

    let url = node.url("/predict?model=AffairsXGB");
    let answer = post_json(&client(), &url, &bodies(&names, &rows)).await;
    assert_eq!(answer["model"], "AffairsXGB");
    assert!(answer.get("classes").is_none());
    let (exact, seed) = closeness(&numbers(&answer["prediction"]), &predictions);

    let answer = v2_binary(&node, "AffairsXGB", &rows).await;
    let (v2_exact, v2) = closeness(&numbers(output(&answer, "variable")), &predictions);
    assert_eq!(exact, v2_exact);
    println!(
        "AffairsXGB: {} rows, {exact} bit-identical, max rel {seed:.1e} (/predict), {v2:.1e} (V2)",
        rows.len()
    );
}

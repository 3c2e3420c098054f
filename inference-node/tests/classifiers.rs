//! Classifiers served end to end (issue 18): real converted scikit-learn classifiers
//! (`tests/data/classifiers/`, see its README) through real ONNX Runtime, answered on the
//! seed's `/predict`, `/models` and the V2 metadata and infer endpoints, compared with
//! sklearn's own `predict` and `predict_proba`.

mod common;

use std::path::Path;

use clap::Parser;
use common::{client, models, post_json, spawn_node};
use inference_node::Config;
use serde_json::{Value, json};

const IRIS: &[&str] = &[
    "sepal length (cm)",
    "sepal width (cm)",
    "petal length (cm)",
    "petal width (cm)",
];
const WINE: &[&str] = &[
    "alcohol",
    "malic_acid",
    "ash",
    "alcalinity_of_ash",
    "magnesium",
    "total_phenols",
    "flavanoids",
    "nonflavanoid_phenols",
    "proanthocyanins",
    "color_intensity",
    "hue",
    "od280/od315_of_diluted_wines",
    "proline",
];
/// Two held-out wine rows; sklearn predicts class 0 ([1, 0, 0]) and 2.
const WINE_ROWS: [[f64; 13]; 2] = [
    [
        14.23, 1.71, 2.43, 15.6, 127.0, 2.8, 3.06, 0.28, 2.29, 5.64, 1.04, 3.92, 1065.0,
    ],
    [
        12.69, 1.53, 2.26, 20.7, 80.0, 1.38, 1.46, 0.58, 1.62, 3.05, 0.96, 2.06, 495.0,
    ],
];

async fn node() -> common::TestNode {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/classifiers");
    let config = Config::try_parse_from([
        "inference-node".to_string(),
        "--models-dir".into(),
        dir.display().to_string(),
    ])
    .unwrap();
    spawn_node(config).await
}

fn row(names: &[&str], values: &[f64]) -> Value {
    names
        .iter()
        .zip(values)
        .map(|(n, v)| (n.to_string(), json!(v)))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

fn assert_probabilities(got: &Value, want: &[&[f64]], tolerance: f64) {
    let got = got.as_array().unwrap();
    assert_eq!(got.len(), want.len(), "{got:?}");
    for (g, w) in got.iter().zip(want) {
        let g: Vec<f64> = g
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(g.len(), w.len());
        for (a, b) in g.iter().zip(*w) {
            assert!((a - b).abs() <= tolerance, "{g:?} vs {w:?}");
        }
    }
}

#[tokio::test]
async fn seed_predict_answers_typed_labels_probabilities_and_classes() {
    let node = node().await;
    let http = client();
    let url = node.url("/predict?model=IrisLogistic");
    let body = post_json(&http, &url, &row(IRIS, &[5.1, 3.5, 1.4, 0.2])).await;
    assert_eq!(body["message"], "GDP growth prediction endpoint");
    assert_eq!(body["model"], "IrisLogistic");
    assert_eq!(body["input"]["sepal length (cm)"], 5.1);
    assert_eq!(body["prediction"], json!(["setosa"]));
    assert_eq!(
        body["classes"],
        json!(["setosa", "versicolor", "virginica"])
    );
    assert_probabilities(
        &body["probabilities"],
        &[&[
            0.9756143009408784,
            0.024385632852615663,
            6.620650576140372e-08,
        ]],
        1e-9,
    );

    // A batch of wine rows: integer labels, exact tree probabilities.
    let rows = json!([row(WINE, &WINE_ROWS[0]), row(WINE, &WINE_ROWS[1])]);
    let body = post_json(&http, &node.url("/predict?model=WineTree"), &rows).await;
    assert_eq!(body["prediction"], json!([0, 2]));
    assert_eq!(body["classes"], json!([0, 1, 2]));
    assert_eq!(
        body["probabilities"],
        json!([
            [1.0, 0.0, 0.0],
            [0.0, 0.02857142857142857, 0.9714285714285714]
        ])
    );
    assert_eq!(body["input"].as_array().unwrap().len(), 2);

    // The default model is still the GDP regressor, answered as before.
    let gdp = common::seed_example();
    let body = post_json(&http, &node.url("/predict"), &gdp).await;
    assert_eq!(body["model"], "LinearRegression");
    assert!(body.get("probabilities").is_none() && body.get("classes").is_none());
    assert_eq!(body["prediction"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn null_is_a_missing_value_only_where_the_model_accepts_one() {
    let node = node().await;
    let http = client();
    // WineTree (a sklearn 1.9 decision tree) accepts NaN everywhere: all-null rows go where
    // sklearn sends NaN (class 1 with certainty).
    let nulls: serde_json::Map<String, Value> =
        WINE.iter().map(|n| (n.to_string(), Value::Null)).collect();
    let body = post_json(&http, &node.url("/predict?model=WineTree"), &nulls).await;
    assert_eq!(body["prediction"], json!([1]));
    assert_eq!(body["probabilities"], json!([[0.0, 1.0, 0.0]]));
    assert_eq!(body["input"]["alcohol"], Value::Null);

    // IrisLogistic does not: a null there is a 422 naming the field.
    let mut iris = row(IRIS, &[5.1, 3.5, 1.4, 0.2]);
    iris["petal width (cm)"] = Value::Null;
    let response = http
        .post(node.url("/predict?model=IrisLogistic"))
        .json(&iris)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["detail"][0]["loc"],
        json!(["body", "petal width (cm)"]),
        "{body}"
    );
}

#[tokio::test]
async fn models_and_v2_metadata_describe_task_features_and_classes() {
    let node = node().await;
    let http = client();
    let models = models(&node).await;
    let find = |name: &str| {
        models["models"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name)
            .unwrap()
            .clone()
    };
    let iris = find("IrisLogistic");
    assert_eq!(iris["task"], "classification");
    assert_eq!(
        iris["classes"],
        json!(["setosa", "versicolor", "virginica"])
    );
    assert_eq!(
        iris["features"][0],
        json!({"name": "sepal length (cm)", "type": "number", "nullable": false})
    );
    assert_eq!(find("WineTree")["features"][12]["nullable"], true);
    assert_eq!(find("CancerLogistic")["classes"], json!([false, true]));
    // A contract-v1 regressor: numeric, non-nullable features, no classes.
    let gdp = find("LinearRegression");
    assert_eq!(gdp["task"], "regression");
    assert_eq!(gdp["features"].as_array().unwrap().len(), 4);
    assert_eq!(gdp["features"][0]["nullable"], false);
    assert!(gdp.get("classes").is_none());

    let metadata = |name: &str| {
        let http = http.clone();
        let url = node.url(&format!("/v2/models/{name}"));
        async move {
            http.get(url)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let iris = metadata("IrisLogistic").await;
    assert_eq!(
        iris["outputs"],
        json!([
            {"name": "label", "datatype": "BYTES", "shape": [-1]},
            {"name": "probabilities", "datatype": "FP64", "shape": [-1, 3]},
        ])
    );
    assert_eq!(iris["parameters"]["task"], "classification");
    assert_eq!(iris["parameters"]["classes"][2], "virginica");
    assert_eq!(
        metadata("WineTree").await["outputs"][0]["datatype"],
        "INT64"
    );
    assert_eq!(
        metadata("CancerLogistic").await["outputs"][0]["datatype"],
        "BOOL"
    );
    let gdp = metadata("LinearRegression").await;
    assert_eq!(gdp["outputs"][0]["name"], "variable");
    assert_eq!(gdp["parameters"]["task"], "regression");
}

#[tokio::test]
async fn v2_infer_returns_typed_labels_and_probabilities() {
    let node = node().await;
    let http = client();
    let data: Vec<f64> = WINE_ROWS.iter().flatten().copied().collect();
    let request = json!({
        "id": "w",
        "inputs": [{"name": "input", "shape": [2, 13], "datatype": "FP64", "data": data}],
    });
    let body = post_json(&http, &node.url("/v2/models/WineTree/infer"), &request).await;
    assert_eq!(body["id"], "w");
    assert_eq!(
        body["outputs"],
        json!([
            {"name": "label", "datatype": "INT64", "shape": [2], "data": [0, 2]},
            {"name": "probabilities", "datatype": "FP64", "shape": [2, 3],
             "data": [1.0, 0.0, 0.0, 0.0, 0.02857142857142857, 0.9714285714285714]},
        ])
    );

    // Asking for one output returns just that one.
    let request = json!({
        "inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP64", "data": [5.0, 3.6, 1.4, 0.2]}],
        "outputs": [{"name": "label"}],
    });
    let body = post_json(&http, &node.url("/v2/models/IrisLogistic/infer"), &request).await;
    assert_eq!(
        body["outputs"],
        json!([{"name": "label", "datatype": "BYTES", "shape": [1], "data": ["setosa"]}])
    );

    // A regressor's output name is not a classifier's.
    let request = json!({
        "inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP64", "data": [5.0, 3.6, 1.4, 0.2]}],
        "outputs": [{"name": "variable"}],
    });
    let response = http
        .post(node.url("/v2/models/IrisLogistic/infer"))
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("'label', 'probabilities'"),
        "{body}"
    );
}

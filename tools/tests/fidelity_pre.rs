//! Fidelity of preprocessing pipelines: every committed fixture under `tests/data/fixtures-pre/`
//! (fitted by `scripts/make_fixtures_pre.py` on real data bundled with statsmodels and
//! scikit-learn: scalers, SimpleImputer with every strategy and `add_indicator`, ColumnTransformer
//! by name and by index with every kind of remainder, before regressors and classifiers; NaN in
//! training and held-out rows, values far outside the training range) is converted and run
//! through real ONNX Runtime. The features' `nullable` flags must be exactly the columns where
//! sklearn's `predict` accepts NaN.
//!
//! Bounds (issue 18): regressors within 1e-12 relative of sklearn's `predict`; classifiers give
//! sklearn's `predict` label on every row and `predict_proba` within 1e-12 (trees) or 1e-9
//! (logistic regression, boosting). Regressors load through the inference node's loader
//! (`onnx_model`); classifiers run in an ONNX Runtime session directly.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use ndarray::Array2;
use onnx_model::contract::{Feature, FeatureType};
use ort::session::Session;
use ort::value::{Tensor, TensorRef};
use serde::Deserialize;
use tools::golden;
use tools::onnx::Source;
use tools::pickle::{self, Limits};

mod common;
use common::{generations, max_relative, read_json};

#[derive(Deserialize)]
struct Manifest {
    sklearn_version: String,
    models: BTreeMap<String, Entry>,
}

#[derive(Deserialize)]
struct Entry {
    estimator: String,
    expected: Option<String>,
    refused: Option<String>,
    files: Vec<String>,
}

#[derive(Deserialize)]
struct Expected {
    estimator: String,
    task: String,
    n_features: usize,
    feature_names: Vec<String>,
    nullable: Vec<bool>,
    types: Vec<String>,
    refuses_unknown: Vec<bool>,
    #[serde(deserialize_with = "golden::matrix")]
    rows: Vec<Vec<f64>>,
    #[serde(default)]
    strings: Vec<Vec<String>>,
    #[serde(default, deserialize_with = "golden::matrix")]
    predictions: Vec<Vec<f64>>,
    #[serde(default)]
    classes: Vec<serde_json::Value>,
    #[serde(default)]
    labels: Vec<i64>,
    #[serde(default, deserialize_with = "golden::matrix")]
    probabilities: Vec<Vec<f64>>,
}

/// Converts one fixture file, checks its metadata and returns the max relative error.
fn check_file(path: &Path, expected: &Expected, dir: &Path) -> Result<f64, String> {
    let graph = pickle::read_file(path, &Limits::default()).map_err(|e| format!("read: {e}"))?;
    let model = tools::sklearn::extract(&graph).map_err(|e| format!("extract: {e}"))?;
    if model.kind != expected.estimator || model.n_features != expected.n_features {
        return Err(format!("{} with {} features", model.kind, model.n_features));
    }
    let source = Source {
        file_name: path.file_name().unwrap().to_string_lossy().into_owned(),
        sha256: "0".repeat(64),
    };
    let bytes = tools::onnx::encode(&model, &source).map_err(|e| format!("encode: {e}"))?;
    let meta = tools::onnx::metadata(&bytes).unwrap();
    let features = onnx_model::contract::parse_features(&meta["features"])?;
    check_features(&features, expected)?;
    if meta["task"] != expected.task {
        return Err(format!("metadata task {}", meta["task"]));
    }
    let onnx = dir.join(format!("{}.onnx", source.file_name));
    std::fs::write(&onnx, &bytes).unwrap();
    let n_rows = expected.rows.len();
    let width = expected.rows.first().map_or(0, Vec::len);
    let flat: Vec<f64> = expected.rows.iter().flatten().copied().collect();
    let x = Array2::from_shape_vec((n_rows, width), flat).map_err(|e| e.to_string())?;
    let env = onnx_model::runtime::environment(None)
        .expect("ONNX Runtime (run scripts/setup-ort.sh or set ORT_DYLIB_PATH)");
    if expected.task == "regression" && expected.strings.is_empty() {
        // Numeric regressors load through the inference node's loader.
        let loaded = onnx_model::Model::load(env, "fixture", &onnx)
            .map_err(|e| format!("ONNX Runtime load: {e}"))?;
        let got = loaded.predict(x.view()).map_err(|e| e.to_string())?;
        return max_relative(&got, &expected.predictions, 1e-12);
    }
    let mut session = Session::builder(env)
        .and_then(|mut b| b.commit_from_file(&onnx))
        .map_err(|e| format!("ONNX Runtime load: {e}"))?;
    let mut inputs = ort::inputs!["input" => TensorRef::from_array_view(x.view()).unwrap()];
    if !expected.strings.is_empty() {
        let n_strings = expected.strings[0].len();
        let flat: Vec<String> = expected.strings.iter().flatten().cloned().collect();
        let strings = Tensor::from_string_array(([n_rows, n_strings], &*flat)).unwrap();
        inputs.push(("input_strings".into(), strings.into()));
    }
    let outputs = session
        .run(inputs)
        .map_err(|e| format!("ONNX Runtime: {e}"))?;
    if expected.task == "regression" {
        let got = outputs["variable"]
            .try_extract_array::<f64>()
            .unwrap()
            .into_dimensionality::<ndarray::Ix2>()
            .unwrap()
            .to_owned();
        return max_relative(&got, &expected.predictions, 1e-12);
    }
    let classes: Vec<serde_json::Value> = serde_json::from_str(&meta["classes"]).unwrap();
    if classes != expected.classes {
        return Err(format!("metadata classes {classes:?}"));
    }
    let labels = outputs["label"].try_extract_array::<i64>().unwrap();
    let probabilities = outputs["probabilities"]
        .try_extract_array::<f64>()
        .unwrap()
        .into_dimensionality::<ndarray::Ix2>()
        .unwrap()
        .to_owned();
    if labels.shape() != [expected.labels.len()] {
        return Err(format!("label shape {:?}", labels.shape()));
    }
    if let Some(i) = (0..expected.labels.len()).find(|&i| labels[i] != expected.labels[i]) {
        return Err(format!(
            "row {i}: label {}, sklearn {}",
            labels[i], expected.labels[i]
        ));
    }
    max_relative(
        &probabilities,
        &expected.probabilities,
        probability_bound(&expected.estimator),
    )
}

/// The metadata features against sklearn's behaviour: names, types, nullable exactly where
/// sklearn accepts a missing value, and `categories` exactly where sklearn refuses unknown
/// values (every held-out value of such a column being one of them).
fn check_features(features: &[Feature], expected: &Expected) -> Result<(), String> {
    let names: Vec<&str> = features.iter().map(|f| f.name.as_str()).collect();
    let types: Vec<&str> = features
        .iter()
        .map(|f| match f.kind {
            FeatureType::Number => "number",
            FeatureType::String => "string",
        })
        .collect();
    let nullable: Vec<bool> = features.iter().map(|f| f.nullable).collect();
    let refusing: Vec<bool> = features.iter().map(|f| f.categories.is_some()).collect();
    if names != expected.feature_names
        || types != expected.types
        || nullable != expected.nullable
        || refusing != expected.refuses_unknown
    {
        return Err(format!("metadata features {features:?}"));
    }
    let (mut number, mut string) = (0, 0);
    for f in features {
        let values: Vec<serde_json::Value> = match f.kind {
            FeatureType::Number => {
                number += 1;
                expected
                    .rows
                    .iter()
                    .map(|r| r[number - 1])
                    .filter(|v| !v.is_nan())
                    .map(serde_json::Value::from)
                    .collect()
            }
            FeatureType::String => {
                string += 1;
                expected
                    .strings
                    .iter()
                    .map(|r| r[string - 1].clone())
                    .filter(|v| !v.is_empty())
                    .map(serde_json::Value::from)
                    .collect()
            }
        };
        if let Some(categories) = &f.categories
            && let Some(v) = values.iter().find(|v| !categories.contains(v))
        {
            return Err(format!(
                "{}: held-out value {v} not in {categories:?}",
                f.name
            ));
        }
    }
    Ok(())
}

/// The `predict_proba` bound for a classifier pipeline: 1e-12 for trees and forests, 1e-9 for
/// logistic regression and boosting.
fn probability_bound(estimator: &str) -> f64 {
    if estimator.contains("Logistic") || estimator.contains("Boosting") {
        1e-9
    } else {
        1e-12
    }
}

#[test]
fn preprocessing_pipelines_match_sklearn_through_onnx_runtime() {
    let tmp = tempfile::tempdir().unwrap();
    let mut report = String::new();
    let mut failures = Vec::new();
    let (mut checked, mut classifiers) = (0, 0);
    let generations = generations("fixtures-pre", "pre_manifest.json");
    assert!(
        generations.len() >= 2,
        "preprocessing fixtures in {generations:?}"
    );
    for generation in &generations {
        let manifest: Manifest = read_json(&generation.join("pre_manifest.json"));
        writeln!(report, "sklearn {}", manifest.sklearn_version).unwrap();
        for (name, entry) in &manifest.models {
            let Some(file) = &entry.expected else {
                continue;
            };
            let expected: Expected = read_json(&generation.join(file));
            let nan_rows = expected
                .rows
                .iter()
                .filter(|r| r.iter().any(|v| v.is_nan()));
            let mut max = 0.0f64;
            for file in &entry.files {
                match check_file(&generation.join(file), &expected, tmp.path()) {
                    Ok(rel) => {
                        checked += 1;
                        classifiers += usize::from(expected.task == "classification");
                        max = max.max(rel);
                    }
                    Err(e) => failures.push(format!("{} {file}: {e}", manifest.sklearn_version)),
                }
            }
            writeln!(
                report,
                "  {name:<30} {:<60} {} rows ({} with NaN), nullable {}/{}: max rel {max:.1e}",
                entry.estimator,
                expected.rows.len(),
                nan_rows.count(),
                expected.nullable.iter().filter(|n| **n).count(),
                expected.nullable.len(),
            )
            .unwrap();
        }
    }
    println!("{report}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(checked >= 32, "only {checked} files checked");
    assert!(classifiers >= 16, "only {classifiers} classifier files");
}

#[test]
fn unsupported_preprocessing_is_refused_by_name() {
    let mut seen = 0;
    for generation in generations("fixtures-pre", "pre_manifest.json") {
        let manifest: Manifest = read_json(&generation.join("pre_manifest.json"));
        for entry in manifest.models.values() {
            let Some(needle) = &entry.refused else {
                continue;
            };
            for file in &entry.files {
                let path = generation.join(file);
                let err = match pickle::read_file(&path, &Limits::default()) {
                    Err(e) => e.to_string(),
                    Ok(graph) => tools::sklearn::extract(&graph)
                        .expect_err("must be refused")
                        .to_string(),
                };
                assert!(err.contains(needle.as_str()), "{}: {err}", path.display());
                seen += 1;
            }
        }
    }
    assert!(seen >= 14, "only {seen} refused preprocessing fixtures");
}

/// A model whose every feature is a string still has `input`, of width 0 (contract v2).
#[test]
fn a_model_of_strings_only_takes_an_empty_numeric_input() {
    use tools::estimator::{
        Categories, ColumnPart, Encoding, EncodingOutput, Estimator, Linear, Model, OneHotColumn,
        Step,
    };
    let onehot = |c: usize| OneHotColumn {
        categories: vec![c],
        unknown: false,
    };
    let encoding = Encoding {
        categories: Categories::Strings(vec!["blue".into(), "red".into(), String::new()]),
        refuse_unknown: true,
        output: EncodingOutput::OneHot(vec![onehot(0), onehot(1), onehot(2)]),
    };
    let model = Model {
        kind: "Pipeline(ColumnTransformer, LinearRegression)".into(),
        feature_names: Some(vec!["color".into()]),
        n_features: 1,
        n_targets: 1,
        sklearn_version: "1.9.1".into(),
        steps: vec![Step::Columns(vec![ColumnPart {
            columns: vec![0],
            strings: true,
            steps: vec![Step::Encode(vec![encoding])],
        }])],
        estimator: Estimator::Linear(Linear {
            coef: vec![vec![1.0, 2.0, 4.0]],
            intercept: vec![0.5],
        }),
        classifier: None,
        accepts_missing: false,
    };
    let source = Source {
        file_name: "colors.pkl".into(),
        sha256: "0".repeat(64),
    };
    let bytes = tools::onnx::encode(&model, &source).unwrap();
    let meta = tools::onnx::metadata(&bytes).unwrap();
    assert_eq!(
        meta["features"],
        r#"[{"name":"color","type":"string","nullable":true,"categories":["blue","red"]}]"#
    );
    let env = onnx_model::runtime::environment(None).expect("ONNX Runtime");
    let mut session = Session::builder(env)
        .and_then(|mut b| b.commit_from_memory(&bytes))
        .unwrap();
    let x = Array2::<f64>::zeros((3, 0));
    let colors = ["red", "", "blue"].map(String::from);
    let mut inputs = ort::inputs!["input" => TensorRef::from_array_view(x.view()).unwrap()];
    let strings = Tensor::from_string_array(([3usize, 1], &colors[..])).unwrap();
    inputs.push(("input_strings".into(), strings.into()));
    let outputs = session.run(inputs).unwrap();
    let got = outputs["variable"].try_extract_array::<f64>().unwrap();
    assert_eq!(got.iter().copied().collect::<Vec<_>>(), [2.5, 4.5, 1.5]);
}

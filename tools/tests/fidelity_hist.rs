//! Fidelity of HistGradientBoosting: every committed fixture under `tests/data/fixtures-hist/` (fitted by
//! `scripts/make_fixtures_hist.py` on real statsmodels data, with NaN in training and held-out
//! rows, a feature with NaN only in held-out rows, coded categorical features and unseen or
//! out-of-range categories) is converted and run through real ONNX Runtime.
//!
//! Bounds (issue 18): regressors within 1e-12 relative of sklearn's `predict`; classifiers give
//! sklearn's `predict` label on every row and `predict_proba` within 1e-9. Regressors load
//! through the inference node's loader (`onnx_model`); classifiers (contract v2: `label` and
//! `probabilities` outputs) run in an ONNX Runtime session directly.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use ort::session::Session;
use ort::value::TensorRef;
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
    categorical: Vec<usize>,
    #[serde(deserialize_with = "golden::matrix")]
    rows: Vec<Vec<f64>>,
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
    let features: Vec<serde_json::Value> = serde_json::from_str(&meta["features"]).unwrap();
    let names: Vec<&str> = features
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    if names != expected.feature_names
        || !features
            .iter()
            .all(|f| f["nullable"] == true && f["type"] == "number")
    {
        return Err(format!("metadata features {features:?}"));
    }
    if meta["task"] != expected.task {
        return Err(format!("metadata task {}", meta["task"]));
    }
    let onnx = dir.join(format!("{}.onnx", source.file_name));
    std::fs::write(&onnx, &bytes).unwrap();
    let x = golden::to_array(&expected.rows)?;
    let env = onnx_model::runtime::environment(None)
        .expect("ONNX Runtime (run scripts/setup-ort.sh or set ORT_DYLIB_PATH)");
    if expected.task == "regression" {
        let loaded = onnx_model::Model::load(env, "fixture", &onnx)
            .map_err(|e| format!("ONNX Runtime load: {e}"))?;
        let got = loaded.predict(x.view()).map_err(|e| e.to_string())?;
        return max_relative(&got, &expected.predictions, 1e-12);
    }
    let classes: Vec<serde_json::Value> = serde_json::from_str(&meta["classes"]).unwrap();
    if classes != expected.classes {
        return Err(format!("metadata classes {classes:?}"));
    }
    let mut session = Session::builder(env)
        .and_then(|mut b| b.commit_from_file(&onnx))
        .map_err(|e| format!("ONNX Runtime load: {e}"))?;
    let outputs = session
        .run(ort::inputs!["input" => TensorRef::from_array_view(x.view()).unwrap()])
        .map_err(|e| format!("ONNX Runtime: {e}"))?;
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
    max_relative(&probabilities, &expected.probabilities, 1e-9)
}

#[test]
fn hist_gradient_boosting_matches_sklearn_through_onnx_runtime() {
    let tmp = tempfile::tempdir().unwrap();
    let mut report = String::new();
    let mut failures = Vec::new();
    let (mut checked, mut categorical, mut classifiers) = (0, 0, 0);
    let generations = generations("fixtures-hist", "hist_manifest.json");
    assert!(generations.len() >= 2, "HGB fixtures in {generations:?}");
    for generation in &generations {
        let manifest: Manifest = read_json(&generation.join("hist_manifest.json"));
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
                        categorical += usize::from(!expected.categorical.is_empty());
                        classifiers += usize::from(expected.task == "classification");
                        max = max.max(rel);
                    }
                    Err(e) => failures.push(format!("{} {file}: {e}", manifest.sklearn_version)),
                }
            }
            writeln!(
                report,
                "  {name:<16} {:<32} {} rows ({} with NaN), categorical {:?}: max rel {max:.1e}",
                entry.estimator,
                expected.rows.len(),
                nan_rows.count(),
                expected.categorical,
            )
            .unwrap();
        }
    }
    println!("{report}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(checked >= 16, "only {checked} files checked");
    assert!(
        categorical >= 8,
        "only {categorical} files with categorical splits"
    );
    assert!(classifiers >= 8, "only {classifiers} classifier files");
}

#[test]
fn categorical_models_with_an_ordinal_encoder_are_refused_by_name() {
    let mut seen = 0;
    for generation in generations("fixtures-hist", "hist_manifest.json") {
        let manifest: Manifest = read_json(&generation.join("hist_manifest.json"));
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
                assert!(err.contains(needle), "{}: {err}", path.display());
                seen += 1;
            }
        }
    }
    assert!(seen > 0, "no refused HGB fixture");
}

//! Fidelity of LightGBM: every committed fixture under `tests/data/fixtures-lightgbm/` (written
//! by `scripts/make_fixtures_lightgbm.py` with LightGBM 3.3 and 4.x, on real statsmodels data
//! with NaN in training and held-out rows, exact zeros and values around LightGBM's zero
//! threshold, coded categorical features with unseen, negative and fractional codes) is
//! converted from each of its forms (pickle, joblib, LightGBM's own text model) and run through
//! real ONNX Runtime.
//!
//! Bounds (issue 19): regressors within 1e-12 relative of LightGBM's `predict`; classifiers
//! give LightGBM's `predict` label on every row and `predict_proba` within 1e-12 absolute.
//! Every objective, the three missing-value conventions (None, Zero, NaN) and categorical
//! splits are covered, pickled and native, in both generations.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use ndarray::Array2;
use ort::session::Session;
use ort::value::TensorRef;
use serde::Deserialize;
use tools::estimator::Model;
use tools::golden;
use tools::onnx::Source;
use tools::pickle::{self, Limits};

mod common;
use common::{generations, read_json};

/// Objectives every generation must cover, pickled and native.
const OBJECTIVES: [&str; 13] = [
    "regression",
    "regression_l1",
    "huber",
    "fair",
    "quantile",
    "mape",
    "poisson",
    "gamma",
    "tweedie",
    "cross_entropy",
    "binary",
    "multiclass",
    "multiclassova",
];

#[derive(Deserialize)]
struct Manifest {
    lightgbm_version: String,
    models: BTreeMap<String, Entry>,
}

#[derive(Deserialize)]
struct Entry {
    estimator: String,
    objective: String,
    expected: String,
    pickles: Vec<String>,
    /// `None` for a pipeline (its booster alone reads the scaled rows).
    native: Option<String>,
}

#[derive(Deserialize)]
struct Expected {
    task: String,
    n_features: usize,
    feature_names: Vec<String>,
    missing_types: Vec<String>,
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

/// Largest error of `got` against `want` (`|a - b| / max(1, |b|)` when `relative`, else
/// `|a - b|`), or the first value beyond `bound`.
fn max_error(
    got: &Array2<f64>,
    want: &[Vec<f64>],
    bound: f64,
    relative: bool,
) -> Result<f64, String> {
    if got.dim() != (want.len(), want.first().map_or(0, Vec::len)) {
        return Err(format!(
            "shape {:?}, expected {} rows",
            got.dim(),
            want.len()
        ));
    }
    let mut max = 0.0f64;
    for (i, (row, want_row)) in got.rows().into_iter().zip(want).enumerate() {
        for (j, (&a, &b)) in row.iter().zip(want_row).enumerate() {
            let scale = if relative { b.abs().max(1.0) } else { 1.0 };
            let error = if a == b { 0.0 } else { (a - b).abs() / scale };
            if error.is_nan() || error > bound {
                return Err(format!("row {i} column {j}: ONNX {a:?}, LightGBM {b:?}"));
            }
            max = max.max(error);
        }
    }
    Ok(max)
}

/// Reads one fixture form into a model: a pickle through the safe reader, a text model through
/// the LightGBM parser.
fn read_model(path: &Path, native: bool) -> Result<Model, String> {
    if native {
        let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
        return tools::lightgbm::native_model(&bytes).map_err(|e| format!("native: {e}"));
    }
    let graph = pickle::read_file(path, &Limits::default()).map_err(|e| format!("read: {e}"))?;
    tools::sklearn::extract(&graph).map_err(|e| format!("extract: {e}"))
}

/// Converts one fixture form, checks its metadata, runs it; returns the max error.
fn check_file(path: &Path, native: bool, expected: &Expected, dir: &Path) -> Result<f64, String> {
    let model = read_model(path, native)?;
    if model.n_features != expected.n_features {
        return Err(format!("{} with {} features", model.kind, model.n_features));
    }
    let source = Source {
        file_name: path.file_name().unwrap().to_string_lossy().into_owned(),
        sha256: "0".repeat(64),
    };
    let bytes = tools::onnx::encode(&model, &source).map_err(|e| format!("encode: {e}"))?;
    let meta = tools::onnx::metadata(&bytes).unwrap();
    let names: Vec<String> = serde_json::from_str(&meta["feature_names"]).unwrap();
    // A native model of a pipeline's booster knows only LightGBM's Column_N names.
    let unnamed: Vec<String> = (0..expected.n_features).map(|i| format!("x{i}")).collect();
    if names != expected.feature_names && !(native && names == unnamed) {
        return Err(format!("feature names {names:?}"));
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
        return max_error(&got, &expected.predictions, 1e-12, true);
    }
    let classes: Vec<serde_json::Value> = serde_json::from_str(&meta["classes"]).unwrap();
    let native_classes: Vec<serde_json::Value> = (0..expected.classes.len())
        .map(serde_json::Value::from)
        .collect();
    if classes
        != if native {
            native_classes
        } else {
            expected.classes.clone()
        }
    {
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
            "row {i}: label {}, LightGBM {}",
            labels[i], expected.labels[i]
        ));
    }
    max_error(&probabilities, &expected.probabilities, 1e-12, false)
}

#[test]
fn lightgbm_models_match_lightgbm_through_onnx_runtime() {
    let tmp = tempfile::tempdir().unwrap();
    let mut report = String::new();
    let mut failures = Vec::new();
    let generations = generations("fixtures-lightgbm", "manifest.json");
    assert!(
        generations.len() >= 2,
        "LightGBM fixtures in {generations:?}"
    );
    let (mut worst_regression, mut worst_probability) = (0.0f64, 0.0f64);
    for generation in &generations {
        let manifest: Manifest = read_json(&generation.join("manifest.json"));
        writeln!(report, "LightGBM {}", manifest.lightgbm_version).unwrap();
        // (objective or missing type, native) pairs converted exactly.
        let mut covered: BTreeSet<(String, bool)> = BTreeSet::new();
        for (name, entry) in &manifest.models {
            let expected: Expected = read_json(&generation.join(&entry.expected));
            let forms = entry
                .pickles
                .iter()
                .map(|f| (f, false))
                .chain(entry.native.iter().map(|f| (f, true)));
            let mut max = 0.0f64;
            for (file, native) in forms {
                match check_file(&generation.join(file), native, &expected, tmp.path()) {
                    Ok(error) => {
                        max = max.max(error);
                        covered.insert((entry.objective.clone(), native));
                        for missing in &expected.missing_types {
                            covered.insert((format!("missing {missing}"), native));
                        }
                    }
                    Err(e) => failures.push(format!("{} {file}: {e}", manifest.lightgbm_version)),
                }
            }
            if expected.task == "regression" {
                worst_regression = worst_regression.max(max);
            } else {
                worst_probability = worst_probability.max(max);
            }
            let nan_rows = expected
                .rows
                .iter()
                .filter(|r| r.iter().any(|v| v.is_nan()));
            writeln!(
                report,
                "  {name:<26} {:<15} {:<14} {} rows ({} with NaN), nodes {:?}: max {} {max:.1e}",
                entry.estimator,
                entry.objective,
                expected.rows.len(),
                nan_rows.count(),
                expected.missing_types,
                if expected.task == "regression" {
                    "rel"
                } else {
                    "abs"
                },
            )
            .unwrap();
        }
        let required = OBJECTIVES
            .iter()
            .map(|o| o.to_string())
            .chain(["None", "Zero", "NaN", "categorical"].map(|m| format!("missing {m}")));
        for what in required {
            for native in [false, true] {
                if !covered.contains(&(what.clone(), native)) {
                    failures.push(format!(
                        "{}: {what} not covered {}",
                        manifest.lightgbm_version,
                        if native { "natively" } else { "pickled" }
                    ));
                }
            }
        }
    }
    println!("{report}");
    println!(
        "max error: regressors {worst_regression:.2e} relative, probabilities {worst_probability:.2e} absolute"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

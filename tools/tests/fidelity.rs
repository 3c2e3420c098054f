//! Fidelity: every committed fixture (pickles and joblib files written by several
//! scikit-learn/numpy generations) is converted and run through ONNX Runtime via the inference
//! node's loader, then compared with the predictions sklearn itself made.
//!
//! Bounds (issue 2): single trees exactly equal (same leaf), including rows within 1e-9 of
//! split thresholds and NaN rows; forests, boosting, linear models and scalers within 1e-12
//! relative (`|a - b| <= 1e-12 * max(1, |b|)`).
//!
//! Classifiers (issue 18): the same label as sklearn's `predict` on every row (its index into
//! the classes, and the typed label itself), `predict_proba` within 1e-12 absolute for trees
//! and forests and 1e-9 for logistic regression and boosting.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use ndarray::Array2;
use serde::Deserialize;
use tools::golden;
use tools::onnx::Source;
use tools::pickle::{self, Limits};

mod common;
use common::read_json;

#[derive(Deserialize)]
struct Manifest {
    sklearn_version: String,
    numpy_version: String,
    models: BTreeMap<String, ManifestModel>,
}

#[derive(Deserialize)]
struct ManifestModel {
    estimator: String,
    expected: Option<String>,
    files: Vec<String>,
}

#[derive(Deserialize)]
struct Expected {
    estimator: String,
    /// `"classification"` for classifiers (then `predictions` rows are `[label index, p...]`).
    #[serde(default)]
    task: Option<String>,
    #[serde(default)]
    classes: Vec<serde_json::Value>,
    /// sklearn's `predict` as JSON (classifiers).
    #[serde(default)]
    labels: Vec<serde_json::Value>,
    n_features: usize,
    n_targets: usize,
    feature_names: Option<Vec<String>>,
    #[serde(deserialize_with = "golden::matrix")]
    rows: Vec<Vec<f64>>,
    #[serde(deserialize_with = "golden::matrix")]
    predictions: Vec<Vec<f64>>,
    #[serde(default, deserialize_with = "golden::matrix")]
    nan_rows: Vec<Vec<f64>>,
    #[serde(default, deserialize_with = "golden::matrix")]
    nan_predictions: Vec<Vec<f64>>,
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fixtures")
}

/// The generation directories (those with a manifest), sorted.
fn generations() -> Vec<PathBuf> {
    let dirs = common::generations("fixtures", "manifest.json");
    assert!(
        dirs.len() >= 2,
        "expected at least two sklearn generations under {}, found {dirs:?}",
        fixtures_dir().display()
    );
    dirs
}

/// How close ONNX must come to sklearn.
#[derive(Clone, Copy)]
enum Bound {
    /// Bit-for-bit.
    Exact,
    /// `|a - b| <= 1e-12 * max(1, |b|)`.
    Relative,
    /// Classifier rows `[label, p...]`: the label exact, probabilities within this absolute.
    Classifier(f64),
}

/// The largest difference and largest `|a-b| / max(1,|b|)` over all values, or the first
/// value outside the bound.
fn compare(got: &Array2<f64>, want: &[Vec<f64>], bound: Bound) -> Result<(f64, f64), String> {
    if got.dim() != (want.len(), want.first().map_or(0, Vec::len)) {
        return Err(format!(
            "shape {:?}, expected {} rows",
            got.dim(),
            want.len()
        ));
    }
    let (mut max_abs, mut max_rel) = (0.0f64, 0.0f64);
    for (i, (row, want_row)) in got.rows().into_iter().zip(want).enumerate() {
        for (j, (&a, &b)) in row.iter().zip(want_row).enumerate() {
            let same = a == b || (a.is_nan() && b.is_nan());
            let delta = if same { 0.0 } else { (a - b).abs() };
            let rel = delta / b.abs().max(1.0);
            let ok = match bound {
                Bound::Exact => same,
                Bound::Relative => rel <= 1e-12,
                Bound::Classifier(_) if j == 0 => same,
                Bound::Classifier(abs) => delta <= abs,
            };
            if !ok {
                return Err(format!(
                    "row {i} target {j}: ONNX {a:?}, sklearn {b:?} (|Δ| {delta:e})"
                ));
            }
            max_abs = max_abs.max(delta);
            max_rel = max_rel.max(rel);
        }
    }
    Ok((max_abs, max_rel))
}

struct Checked {
    rows: usize,
    nan_rows: usize,
    max_abs: f64,
    max_rel: f64,
}

fn check_file(path: &Path, expected: &Expected, dir: &Path) -> Result<Checked, String> {
    let graph = pickle::read_file(path, &Limits::default()).map_err(|e| format!("read: {e}"))?;
    let model = tools::sklearn::extract(&graph).map_err(|e| format!("extract: {e}"))?;
    if model.kind != expected.estimator {
        return Err(format!(
            "estimator {:?}, expected {:?}",
            model.kind, expected.estimator
        ));
    }
    let classification = expected.task.as_deref() == Some("classification");
    // A classifier's rows are `[label, p...]`; its estimator part has one score per class
    // (or one on two classes).
    let n_targets = match &model.classifier {
        Some(c) => 1 + c.classes.len(),
        None => model.n_targets,
    };
    if classification != model.classifier.is_some() {
        return Err(format!(
            "extracted classifier: {}",
            model.classifier.is_some()
        ));
    }
    if (model.n_features, n_targets) != (expected.n_features, expected.n_targets) {
        return Err(format!(
            "{} features / {} targets, expected {} / {}",
            model.n_features, model.n_targets, expected.n_features, expected.n_targets
        ));
    }
    if model.feature_names != expected.feature_names {
        return Err(format!(
            "feature names {:?}, expected {:?}",
            model.feature_names, expected.feature_names
        ));
    }
    let source = Source {
        file_name: path.file_name().unwrap().to_string_lossy().into_owned(),
        sha256: "0".repeat(64),
    };
    let bytes = tools::onnx::encode(&model, &source).map_err(|e| format!("encode: {e}"))?;
    let onnx = dir.join(format!("{}.onnx", source.file_name));
    std::fs::write(&onnx, bytes).unwrap();
    let env = onnx_model::runtime::environment(None)
        .expect("ONNX Runtime (run scripts/setup-ort.sh or set ORT_DYLIB_PATH)");
    let loaded = onnx_model::Model::load(env, "fixture", &onnx)
        .map_err(|e| format!("ONNX Runtime load: {e}"))?;
    // Exactness is promised for single trees (same leaf ⇒ same value).
    let bound = match &model.classifier {
        Some(classifier) => {
            let classes = serde_json::to_value(&classifier.classes).unwrap();
            if classes.as_array() != Some(&expected.classes) {
                return Err(format!(
                    "classes {classes}, expected {:?}",
                    expected.classes
                ));
            }
            let trees = matches!(model.estimator, tools::estimator::Estimator::Trees(_))
                && !expected.estimator.contains("GradientBoosting");
            Bound::Classifier(if trees { 1e-12 } else { 1e-9 })
        }
        None if expected.estimator == "DecisionTreeRegressor" => Bound::Exact,
        None => Bound::Relative,
    };

    let mut checked = Checked {
        rows: expected.rows.len(),
        nan_rows: expected.nan_rows.len(),
        max_abs: 0.0,
        max_rel: 0.0,
    };
    let sets = [
        ("rows", &expected.rows, &expected.predictions),
        ("nan_rows", &expected.nan_rows, &expected.nan_predictions),
    ];
    for (what, rows, predictions) in sets {
        if rows.is_empty() {
            continue;
        }
        let x = golden::to_array(rows).map_err(|e| format!("{what}: {e}"))?;
        let got = loaded
            .predict(x.view())
            .map_err(|e| format!("{what}: ONNX Runtime: {e}"))?;
        let (abs, rel) = compare(&got, predictions, bound).map_err(|e| format!("{what}: {e}"))?;
        if classification && what == "rows" {
            check_labels(&got, &expected.classes, &expected.labels)?;
        }
        checked.max_abs = checked.max_abs.max(abs);
        checked.max_rel = checked.max_rel.max(rel);
    }
    Ok(checked)
}

/// The typed label of every row (`classes[label index]`) is sklearn's `predict`.
fn check_labels(
    got: &Array2<f64>,
    classes: &[serde_json::Value],
    labels: &[serde_json::Value],
) -> Result<(), String> {
    if labels.len() != got.nrows() {
        return Err(format!("{} labels for {} rows", labels.len(), got.nrows()));
    }
    for (i, (row, want)) in got.rows().into_iter().zip(labels).enumerate() {
        let label = classes.get(row[0] as usize);
        if label != Some(want) {
            return Err(format!("row {i}: label {label:?}, sklearn {want}"));
        }
    }
    Ok(())
}

#[test]
fn every_fixture_matches_sklearn_through_onnx_runtime() {
    let tmp = tempfile::tempdir().unwrap();
    let mut report = String::new();
    let mut failures = Vec::new();
    let mut files_checked = 0;
    let mut nan_checked = 0;
    for generation in generations() {
        let manifest: Manifest = read_json(&generation.join("manifest.json"));
        let label = format!(
            "sklearn {} numpy {}",
            manifest.sklearn_version, manifest.numpy_version
        );
        writeln!(report, "{label}").unwrap();
        for (name, entry) in &manifest.models {
            let Some(expected_file) = &entry.expected else {
                continue;
            };
            let expected: Expected = read_json(&generation.join(expected_file));
            let (mut max_abs, mut max_rel) = (0.0f64, 0.0f64);
            let mut counts = (0, 0);
            for file in &entry.files {
                match check_file(&generation.join(file), &expected, tmp.path()) {
                    Ok(c) => {
                        files_checked += 1;
                        nan_checked += usize::from(c.nan_rows > 0);
                        max_abs = max_abs.max(c.max_abs);
                        max_rel = max_rel.max(c.max_rel);
                        counts = (c.rows, c.nan_rows);
                    }
                    Err(e) => failures.push(format!("{label} {file}: {e}")),
                }
            }
            writeln!(
                report,
                "  {name:<30} {:<34} {} forms, {} rows + {} NaN rows: max |Δ| {max_abs:.1e}, max rel {max_rel:.1e}",
                entry.estimator,
                entry.files.len(),
                counts.0,
                counts.1
            )
            .unwrap();
        }
    }
    println!("{report}");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        files_checked >= 100,
        "only {files_checked} fixture files checked"
    );
    assert!(nan_checked > 0, "no fixture had NaN rows");
}

#[test]
fn unsupported_estimators_are_refused_by_name() {
    let mut seen = 0;
    for generation in generations() {
        let manifest: Manifest = read_json(&generation.join("manifest.json"));
        for entry in manifest.models.values().filter(|m| m.expected.is_none()) {
            for file in &entry.files {
                let path = generation.join(file);
                // Refused either by the reader (the class is not on the allow-list) or by the
                // extractor; either way the message names it.
                let err = match pickle::read_file(&path, &Limits::default()) {
                    Err(e) => e.to_string(),
                    Ok(graph) => tools::sklearn::extract(&graph)
                        .expect_err("must be refused")
                        .to_string(),
                };
                assert!(
                    err.contains(&entry.estimator),
                    "{}: {err} does not name {}",
                    path.display(),
                    entry.estimator
                );
                seen += 1;
            }
        }
    }
    assert!(seen > 0, "no unsupported fixture found");
}

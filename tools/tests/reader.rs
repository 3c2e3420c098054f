//! Reads every committed fixture (tools/tests/data/fixtures, written by real scikit-learn 1.2,
//! 1.3 and 1.9 installs) and the shipped models, extracts them, and checks that a plain Rust
//! evaluation of the extracted [`Model`] reproduces sklearn's own predictions.

use std::path::{Path, PathBuf};

use serde_json::Value as Json;
use tools::estimator::{
    Aggregate, ArithOp, Classifier, Estimator, LabelRule, Model, Probabilities, Step, Tree,
};
use tools::pickle::{self, Limits};
use tools::sklearn;

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fixtures")
}

fn repo_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// All `.pkl`/`.joblib` files under `dir`, sorted.
fn model_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("pkl" | "joblib")
            ) {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// `NAME.expected.json` beside `NAME.<form>`.
fn expected_for(file: &Path) -> Option<Json> {
    let name = file.file_name()?.to_str()?;
    let stem = name.split('.').next()?;
    let path = file.with_file_name(format!("{stem}.expected.json"));
    let text = std::fs::read_to_string(path).ok()?;
    Some(serde_json::from_str(&text).unwrap())
}

// --- a reference evaluation of the extracted model, written the way sklearn computes ----

fn route(tree: &Tree, x: &[f64]) -> usize {
    let mut node = 0usize;
    while tree.left[node] != -1 {
        let v = x[tree.feature[node] as usize];
        let go_left = if v.is_nan() {
            tree.missing_go_to_left.as_ref().is_some_and(|m| m[node])
        } else {
            f64::from(v as f32) <= tree.threshold[node]
        };
        node = if go_left {
            tree.left[node]
        } else {
            tree.right[node]
        } as usize;
    }
    node
}

/// Returns the prediction per target, computed the way sklearn does.
fn predict(model: &Model, row: &[f64]) -> Vec<f64> {
    let mut x = row.to_vec();
    for step in &model.steps {
        let Step::Arith { op, values } = step else {
            panic!("only scalers here: {step:?}");
        };
        for (v, s) in x.iter_mut().zip(values) {
            match op {
                ArithOp::Sub => *v -= s,
                ArithOp::Div => *v /= s,
                ArithOp::Mul => *v *= s,
                ArithOp::Add => *v += s,
            }
        }
    }
    match &model.estimator {
        Estimator::Linear(linear) => linear
            .coef
            .iter()
            .zip(&linear.intercept)
            .map(|(coef, b)| coef.iter().zip(&x).map(|(c, v)| c * v).sum::<f64>() + b)
            .collect(),
        Estimator::Trees(ensemble) => {
            let mut sum = vec![0.0; model.n_targets];
            for tree in &ensemble.trees {
                let leaf = route(tree, &x);
                for (t, s) in sum.iter_mut().enumerate() {
                    *s += match ensemble.aggregate {
                        Aggregate::Average => tree.values[leaf][t],
                        Aggregate::Sum => ensemble.leaf_scale * tree.values[leaf][t],
                    };
                }
            }
            let n = ensemble.trees.len() as f64;
            sum.iter()
                .zip(&ensemble.base)
                .map(|(s, b)| match ensemble.aggregate {
                    Aggregate::Average => s / n,
                    Aggregate::Sum => b + s,
                })
                .collect()
        }
        Estimator::Hist(_) => {
            unreachable!("manifest.json has no HistGradientBoosting (see fidelity_hist.rs)")
        }
        Estimator::LightGbm(_) => {
            unreachable!("manifest.json has no LightGBM model (see fidelity_lightgbm.rs)")
        }
        Estimator::XGBoost(_) => {
            unreachable!("manifest.json has no XGBoost model (see fidelity_xgboost.rs)")
        }
    }
}

/// A classifier's row as sklearn computes it: the label's index, then `predict_proba`.
fn classify(model: &Model, classifier: &Classifier, row: &[f64]) -> Vec<f64> {
    let d = predict(model, row);
    let expit = |x: f64| 1.0 / (1.0 + (-x).exp());
    let softmax = |v: &[f64]| {
        let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = v.iter().map(|x| (x - max).exp()).collect();
        let sum: f64 = e.iter().sum();
        e.iter().map(|x| x / sum).collect::<Vec<f64>>()
    };
    let p = match classifier.probabilities {
        Probabilities::Scores => d.clone(),
        Probabilities::BinaryExpit => vec![1.0 - expit(d[0]), expit(d[0])],
        Probabilities::BinarySoftmax => softmax(&[-d[0], d[0]]),
        Probabilities::Softmax => softmax(&d),
        Probabilities::Sigmoids => d.iter().map(|x| expit(*x)).collect(),
        Probabilities::OneVsRest => {
            let e: Vec<f64> = d.iter().map(|x| expit(*x)).collect();
            let sum: f64 = e.iter().sum();
            e.iter().map(|x| x / sum).collect()
        }
    };
    // numpy's argmax: the first largest.
    let argmax = |v: &[f64]| (0..v.len()).fold(0, |best, i| if v[i] > v[best] { i } else { best });
    let label = match classifier.label {
        LabelRule::ArgmaxProbabilities => argmax(&p),
        LabelRule::ArgmaxScores => argmax(&d),
        LabelRule::Positive => usize::from(d[0] > 0.0),
        LabelRule::NonNegative => usize::from(d[0] >= 0.0),
        LabelRule::Given => unreachable!("only XGBoost models give their label"),
    };
    std::iter::once(label as f64).chain(p).collect()
}

/// Compares a classifier's rows with sklearn's: the label exactly, probabilities within 1e-9.
fn compare_classifier(
    model: &Model,
    classifier: &Classifier,
    rows: &Json,
    expected: &Json,
    what: &str,
) -> Vec<String> {
    let mut bad = Vec::new();
    let (Some(rows), Some(expected)) = (rows.as_array(), expected.as_array()) else {
        return bad;
    };
    assert_eq!(rows.len(), expected.len(), "{what}: rows vs predictions");
    for (i, (row, want)) in rows.iter().zip(expected).enumerate() {
        let got = classify(model, classifier, &floats(row));
        let want = floats(want);
        assert_eq!(got.len(), want.len(), "{what}: classes");
        let ok = got[0] == want[0] && got.iter().zip(&want).all(|(g, w)| (g - w).abs() <= 1e-9);
        if !ok {
            bad.push(format!("{what} row {i}: got {got:?}, sklearn {want:?}"));
        }
    }
    bad
}

fn floats(row: &Json) -> Vec<f64> {
    row.as_array()
        .unwrap()
        .iter()
        .map(|v| match v {
            Json::String(s) => s.parse::<f64>().unwrap(),
            v => v.as_f64().unwrap(),
        })
        .collect()
}

/// Compares predictions for `rows` against sklearn's (bit-exact, or within 1e-12 relative);
/// returns the mismatches.
fn compare(model: &Model, rows: &Json, expected: &Json, exact: bool, what: &str) -> Vec<String> {
    let mut bad = Vec::new();
    let (Some(rows), Some(expected)) = (rows.as_array(), expected.as_array()) else {
        return bad;
    };
    assert_eq!(rows.len(), expected.len(), "{what}: rows vs predictions");
    for (i, (row, want)) in rows.iter().zip(expected).enumerate() {
        let got = predict(model, &floats(row));
        let want = floats(want);
        assert_eq!(got.len(), want.len(), "{what}: targets");
        for (g, w) in got.iter().zip(&want) {
            let ok = if exact {
                g == w
            } else {
                (g - w).abs() <= 1e-12 * w.abs()
            };
            if !ok {
                bad.push(format!("{what} row {i}: got {g:e}, sklearn {w:e}"));
            }
        }
    }
    bad
}

fn check_fixture(file: &Path, model: &Model, expected: &Json) -> Vec<String> {
    let what = file.display().to_string();
    let mut bad = Vec::new();
    if model.kind != expected["estimator"].as_str().unwrap() {
        bad.push(format!(
            "{what}: kind {} != {}",
            model.kind, expected["estimator"]
        ));
    }
    // A classifier's rows are `[label, p...]`.
    let n_targets = match &model.classifier {
        Some(c) => 1 + c.classes.len(),
        None => model.n_targets,
    };
    if model.n_features as u64 != expected["n_features"].as_u64().unwrap()
        || n_targets as u64 != expected["n_targets"].as_u64().unwrap()
    {
        bad.push(format!(
            "{what}: shape {}x{}",
            model.n_features, model.n_targets
        ));
    }
    let names: Option<Vec<String>> =
        serde_json::from_value(expected["feature_names"].clone()).unwrap();
    if model.feature_names != names {
        bad.push(format!("{what}: feature names {:?}", model.feature_names));
    }
    if model.sklearn_version != expected["sklearn_version"].as_str().unwrap() {
        bad.push(format!("{what}: sklearn version {}", model.sklearn_version));
    }
    if let Some(classifier) = &model.classifier {
        for (rows, predictions, label) in [
            ("rows", "predictions", ""),
            ("nan_rows", "nan_predictions", " (NaN rows)"),
        ] {
            bad.extend(compare_classifier(
                model,
                classifier,
                &expected[rows],
                &expected[predictions],
                &format!("{what}{label}"),
            ));
        }
        return bad;
    }
    // A single tree must land in the very same leaf as sklearn: bit-exact.
    let exact = model.kind == "DecisionTreeRegressor";
    bad.extend(compare(
        model,
        &expected["rows"],
        &expected["predictions"],
        exact,
        &what,
    ));
    bad.extend(compare(
        model,
        &expected["nan_rows"],
        &expected["nan_predictions"],
        exact,
        &format!("{what} (NaN rows)"),
    ));
    bad
}

#[test]
fn every_fixture_extracts_and_predicts_like_sklearn() {
    let dir = fixtures_dir();
    assert!(
        dir.is_dir(),
        "{} is missing: the fixtures are committed (regenerate with scripts/make-fixtures.sh)",
        dir.display()
    );
    let files = model_files(&dir);
    assert!(files.len() > 100, "only {} fixture files", files.len());
    let mut failures = Vec::new();
    let mut checked = 0;
    for file in &files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let result = pickle::read_file(file, &Limits::default())
            .map_err(|e| e.to_string())
            .and_then(|graph| sklearn::extract(&graph).map_err(|e| e.to_string()));
        match (result, expected_for(file)) {
            (Ok(model), Some(expected)) => {
                failures.extend(check_fixture(file, &model, &expected));
                checked += 1;
            }
            (Ok(model), None) => failures.push(format!(
                "{name}: converted {} with no expected file",
                model.kind
            )),
            (Err(e), None) if name.starts_with("unsupported_") => {
                // Refused, naming the class.
                assert!(e.contains("KNeighborsRegressor"), "{name}: {e}");
            }
            (Err(e), _) => failures.push(format!("{name}: {e}")),
        }
    }
    println!("{checked} fixtures checked against sklearn predictions");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_fixture_form_of_a_model_extracts_identically() {
    let dir = fixtures_dir().join("1.9.1-np2.4.6");
    assert!(
        dir.is_dir(),
        "{} is missing: the fixtures are committed (regenerate with scripts/make-fixtures.sh)",
        dir.display()
    );
    let forms: Vec<PathBuf> = model_files(&dir)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("random_forest.")
        })
        .collect();
    assert!(forms.len() >= 10, "{forms:?}");
    let models: Vec<Model> = forms
        .iter()
        .map(|f| sklearn::extract(&pickle::read_file(f, &Limits::default()).unwrap()).unwrap())
        .collect();
    for (file, model) in forms.iter().zip(&models) {
        assert_eq!(
            model,
            &models[0],
            "{} differs from {}",
            file.display(),
            forms[0].display()
        );
    }
}

#[test]
fn shipped_models_extract_and_match_the_golden_predictions() {
    let dir = repo_dir().join("models/gdp_growth_rate");
    let golden_path = dir.join("golden.json");
    assert!(
        golden_path.is_file(),
        "{} is missing: it is committed with the models",
        golden_path.display()
    );
    let golden: Json =
        serde_json::from_str(&std::fs::read_to_string(&golden_path).unwrap()).unwrap();
    let names: Vec<String> = serde_json::from_value(golden["feature_names"].clone()).unwrap();
    let entries = golden["models"].as_object().unwrap();
    assert!(entries.len() >= 9);
    let mut failures = Vec::new();
    for (name, entry) in entries {
        let file = dir.join(entry["file"].as_str().unwrap());
        let graph = pickle::read_file(&file, &Limits::default()).unwrap();
        let model = sklearn::extract(&graph).unwrap();
        assert_eq!(model.kind, entry["estimator"].as_str().unwrap(), "{name}");
        assert_eq!(model.feature_names.as_ref(), Some(&names), "{name}");
        let exact = model.kind == "DecisionTreeRegressor";
        failures.extend(compare(
            &model,
            &golden["holdout"]["rows"],
            &entry["predictions"],
            exact,
            name,
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

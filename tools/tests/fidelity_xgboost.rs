//! Fidelity of XGBoost models: every committed fixture under `tests/data/fixtures-xgboost/`
//! (made by `scripts/make-fixtures-xgboost.sh` with XGBoost 1.7 and 3.x on real statsmodels
//! data with NaN in training and held-out rows; pickles, joblib files and native `.json` /
//! `.ubj` files) is converted and run through real ONNX Runtime.
//!
//! Bounds (issue 19): the float32 margins (`output_margin=True`) and identity-link regressors'
//! `predict` are bit-identical to XGBoost's; transformed outputs (`expf`, sigmoid, softmax) and
//! probabilities are bit-identical on most rows and within 1e-6 relative on every row (the
//! report prints how many rows are exact and the largest error); labels are always equal.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use ndarray::{Array2, ArrayD};
use ort::session::Session;
use ort::value::TensorRef;
use serde::Deserialize;
use tools::estimator::{Estimator, Model, XgbOutput};
use tools::golden;
use tools::onnx::Source;
use tools::pickle::{self, Limits};

mod common;
use common::{generations, read_json};

const OUTPUT: &str = onnx_model::contract::OUTPUT_NAME;

#[derive(Deserialize)]
struct Manifest {
    xgboost_version: String,
    models: BTreeMap<String, Entry>,
}

#[derive(Deserialize)]
struct Entry {
    files: Vec<String>,
    expected: String,
}

#[derive(Deserialize)]
struct Rows {
    feature_names: Vec<String>,
    #[serde(deserialize_with = "golden::matrix")]
    rows: Vec<Vec<f64>>,
}

#[derive(Deserialize)]
struct Expected {
    objective: String,
    task: String,
    rows: String,
    n_features: usize,
    #[serde(deserialize_with = "golden::matrix")]
    margins: Vec<Vec<f64>>,
    #[serde(default, deserialize_with = "golden::matrix")]
    predictions: Vec<Vec<f64>>,
    #[serde(default)]
    classes: Vec<i64>,
    #[serde(default)]
    labels: Vec<i64>,
    #[serde(default, deserialize_with = "golden::matrix")]
    probabilities: Vec<Vec<f64>>,
}

/// How close one output came: rows all of whose values are bit-identical, and the largest
/// relative error.
#[derive(Default, Clone, Copy)]
struct Closeness {
    rows: usize,
    exact_rows: usize,
    max_relative: f64,
}

impl Closeness {
    fn add(&mut self, other: Closeness) {
        self.rows += other.rows;
        self.exact_rows += other.exact_rows;
        self.max_relative = self.max_relative.max(other.max_relative);
    }
}

fn compare(got: &Array2<f64>, want: &[Vec<f64>], bound: f64) -> Result<Closeness, String> {
    if got.dim() != (want.len(), want.first().map_or(0, Vec::len)) {
        return Err(format!(
            "shape {:?}, expected {} rows",
            got.dim(),
            want.len()
        ));
    }
    let mut c = Closeness::default();
    for (i, (row, want_row)) in got.rows().into_iter().zip(want).enumerate() {
        let mut exact = true;
        for (j, (&a, &b)) in row.iter().zip(want_row).enumerate() {
            if a.to_bits() == b.to_bits() {
                continue;
            }
            exact = false;
            let rel = (a - b).abs() / b.abs().max(f64::MIN_POSITIVE);
            if rel.is_nan() || rel > bound {
                return Err(format!(
                    "row {i} column {j}: ONNX {a:?}, XGBoost {b:?} (rel {rel:.1e})"
                ));
            }
            c.max_relative = c.max_relative.max(rel);
        }
        c.rows += 1;
        c.exact_rows += usize::from(exact);
    }
    Ok(c)
}

/// Reads a fixture file the way `convert-models` does (pickle, or native by content).
fn read_model(path: &Path) -> Result<Model, String> {
    let bytes = std::fs::read(path).unwrap();
    match tools::convert::SourceFormat::sniff(&bytes) {
        Some(tools::convert::SourceFormat::XGBoost) => {
            tools::xgboost::read_native(&bytes).map_err(|e| e.to_string())
        }
        _ => {
            let graph =
                pickle::read_file(path, &Limits::default()).map_err(|e| format!("read: {e}"))?;
            tools::sklearn::extract(&graph).map_err(|e| format!("extract: {e}"))
        }
    }
}

/// Converts `model`, runs it on `x` in ONNX Runtime and returns its named outputs.
fn run(
    model: &Model,
    x: &Array2<f64>,
    dir: &Path,
    name: &str,
) -> Result<BTreeMap<String, ArrayD<f64>>, String> {
    let source = Source {
        file_name: name.into(),
        sha256: "0".repeat(64),
    };
    let bytes = tools::onnx::encode(model, &source).map_err(|e| format!("encode: {e}"))?;
    let onnx = dir.join(format!("{name}.onnx"));
    std::fs::write(&onnx, &bytes).unwrap();
    let env = onnx_model::runtime::environment(None)
        .expect("ONNX Runtime (run scripts/setup-ort.sh or set ORT_DYLIB_PATH)");
    let mut session = Session::builder(env)
        .and_then(|mut b| b.commit_from_file(&onnx))
        .map_err(|e| format!("ONNX Runtime load: {e}"))?;
    let outputs = session
        .run(ort::inputs!["input" => TensorRef::from_array_view(x.view()).unwrap()])
        .map_err(|e| format!("ONNX Runtime: {e}"))?;
    let mut out = BTreeMap::new();
    for (name, value) in outputs.iter() {
        let array = match value.try_extract_array::<f64>() {
            Ok(a) => a.to_owned(),
            Err(_) => value.try_extract_array::<i64>().unwrap().mapv(|v| v as f64),
        };
        out.insert(name.to_string(), array);
    }
    Ok(out)
}

fn matrix(a: &ArrayD<f64>) -> Array2<f64> {
    a.clone().into_dimensionality::<ndarray::Ix2>().unwrap()
}

/// The same model with its margins as the output (`predict(output_margin=True)`).
fn margin_model(model: &Model) -> Model {
    let mut m = model.clone();
    let Estimator::XGBoost(b) = &mut m.estimator else {
        panic!("{} is not an XGBoost model", m.kind)
    };
    b.output = XgbOutput::Margin;
    m.n_targets = b.groups.len();
    m.classifier = None;
    m
}

struct Checked {
    margins: Closeness,
    outputs: Closeness,
}

fn check_file(
    path: &Path,
    expected: &Expected,
    rows: &Rows,
    dir: &Path,
) -> Result<Checked, String> {
    let model = read_model(path)?;
    if model.n_features != expected.n_features {
        return Err(format!("{} with {} features", model.kind, model.n_features));
    }
    let names = tools::onnx::feature_names(&model);
    let pipeline = model.kind.starts_with("Pipeline");
    if !pipeline && names != rows.feature_names {
        return Err(format!("feature names {names:?}"));
    }
    let x = golden::to_array(&rows.rows)?;
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let margins = run(&margin_model(&model), &x, dir, &format!("{name}.margin"))?;
    // Margins are float32 sums: bit for bit.
    let margins = compare(&matrix(&margins[OUTPUT]), &expected.margins, 0.0)
        .map_err(|e| format!("margins: {e}"))?;
    let out = run(&model, &x, dir, &name)?;
    let outputs = if expected.task == "regression" {
        let identity =
            matches!(&model.estimator, Estimator::XGBoost(b) if b.output == XgbOutput::Margin);
        let bound = if identity { 0.0 } else { 1e-6 };
        compare(&matrix(&out[OUTPUT]), &expected.predictions, bound)
            .map_err(|e| format!("predict: {e}"))?
    } else {
        let classes: Vec<i64> = match &model.classifier {
            Some(c) => c
                .classes
                .iter()
                .map(|c| match c {
                    onnx_model::contract::ClassLabel::Int(i) => *i,
                    other => panic!("class {other:?}"),
                })
                .collect(),
            None => return Err("not a classifier".into()),
        };
        if classes != expected.classes {
            return Err(format!("classes {classes:?}"));
        }
        let labels = &out[onnx_model::contract::LABEL_NAME];
        if labels.len() != expected.labels.len() {
            return Err(format!("label shape {:?}", labels.shape()));
        }
        for (i, (&got, &want)) in labels.iter().zip(&expected.labels).enumerate() {
            if got as i64 != want {
                return Err(format!("row {i}: label {got}, XGBoost {want}"));
            }
        }
        compare(
            &matrix(&out[onnx_model::contract::PROBABILITIES_NAME]),
            &expected.probabilities,
            1e-6,
        )
        .map_err(|e| format!("predict_proba: {e}"))?
    };
    Ok(Checked { margins, outputs })
}

#[test]
fn xgboost_models_match_xgboost_through_onnx_runtime() {
    let tmp = tempfile::tempdir().unwrap();
    let mut report = String::new();
    let mut failures = Vec::new();
    let mut objectives = std::collections::BTreeSet::new();
    let mut kinds = std::collections::BTreeSet::new();
    let mut checked = 0;
    let generations = generations("fixtures-xgboost", "manifest.json");
    assert!(
        generations.len() >= 2,
        "XGBoost fixtures in {generations:?}"
    );
    for generation in &generations {
        let manifest: Manifest = read_json(&generation.join("manifest.json"));
        writeln!(report, "XGBoost {}", manifest.xgboost_version).unwrap();
        for (name, entry) in &manifest.models {
            let expected: Expected = read_json(&generation.join(&entry.expected));
            let rows: Rows = read_json(&generation.join(&expected.rows));
            let nan_rows = rows
                .rows
                .iter()
                .filter(|r| r.iter().any(|v| v.is_nan()))
                .count();
            let (mut margins, mut outputs) = (Closeness::default(), Closeness::default());
            for file in &entry.files {
                match check_file(&generation.join(file), &expected, &rows, tmp.path()) {
                    Ok(c) => {
                        checked += 1;
                        margins.add(c.margins);
                        outputs.add(c.outputs);
                        objectives.insert(expected.objective.clone());
                        kinds.insert(file.rsplit('.').next().unwrap().to_owned());
                    }
                    Err(e) => failures.push(format!("{} {file}: {e}", manifest.xgboost_version)),
                }
            }
            writeln!(
                report,
                "  {name:<22} {:<22} {} files, {} rows ({nan_rows} with NaN): margins {}/{} rows exact; {} {}/{} rows exact, max rel {:.1e}",
                expected.objective,
                entry.files.len(),
                rows.rows.len(),
                margins.exact_rows,
                margins.rows,
                if expected.task == "regression" { "predict" } else { "predict_proba" },
                outputs.exact_rows,
                outputs.rows,
                outputs.max_relative,
            )
            .unwrap();
        }
    }
    println!("{report}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(checked >= 100, "only {checked} files checked");
    for objective in [
        "reg:squarederror",
        "reg:squaredlogerror",
        "reg:absoluteerror",
        "reg:pseudohubererror",
        "reg:quantileerror",
        "count:poisson",
        "reg:tweedie",
        "reg:gamma",
        "reg:logistic",
        "binary:logistic",
        "binary:logitraw",
        "multi:softprob",
        "multi:softmax",
    ] {
        assert!(objectives.contains(objective), "no fixture of {objective}");
    }
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        ["joblib", "json", "pkl", "ubj"]
    );
}

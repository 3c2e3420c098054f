//! The node's compiled `TreeEnsemble` kernel gives ONNX Runtime's own kernel's bits on every
//! tree model the fixtures hold: scikit-learn trees, forests, gradient boosting and
//! HistGradientBoosting, LightGBM and XGBoost, in every version the fixtures cover, regressors
//! and classifiers, on the fixtures' rows with their missing values.
//!
//! `cargo test -p tools --test tree_kernel -- --nocapture` prints what was compared.

use std::path::{Path, PathBuf};

use ndarray::Array2;
use onnx_model::{Model, TreeKernel};
use tools::convert::{self, Job, Outcome};

const FIXTURE_DIRS: [&str; 4] = [
    "fixtures",
    "fixtures-hist",
    "fixtures-lightgbm",
    "fixtures-xgboost",
];
/// The forms a fixture model comes in, the first one present is converted.
const SOURCES: [&str; 6] = [".p4.pkl", ".pkl", ".joblib", ".txt", ".ubj", ".json"];

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

/// Every `NAME.expected.json` with the model file it describes.
fn fixtures() -> Vec<(PathBuf, PathBuf)> {
    let mut found = Vec::new();
    for dir in FIXTURE_DIRS {
        for version in std::fs::read_dir(data_dir().join(dir)).unwrap() {
            let version = version.unwrap().path();
            if !version.is_dir() {
                continue;
            }
            for entry in std::fs::read_dir(&version).unwrap() {
                let path = entry.unwrap().path();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                let Some(stem) = name.strip_suffix(".expected.json") else {
                    continue;
                };
                let source = SOURCES
                    .iter()
                    .map(|ext| version.join(format!("{stem}{ext}")))
                    .find(|p| p.is_file());
                if let Some(source) = source {
                    found.push((path, source));
                }
            }
        }
    }
    found.sort();
    found
}

/// The fixture's rows (and NaN rows where it has them), null as NaN, repeated to 600 rows so
/// that the compiled kernel shares them between two threads.
fn rows(expected: &Path) -> Array2<f64> {
    let read = |path: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    };
    let mut json = read(expected);
    // XGBoost's fixtures name a shared rows file beside them.
    if let Some(file) = json["rows"].as_str() {
        json = read(&expected.with_file_name(file));
    }
    let mut rows: Vec<Vec<f64>> = Vec::new();
    for key in ["rows", "nan_rows"] {
        for row in json[key].as_array().into_iter().flatten() {
            let values = row.as_array().unwrap();
            rows.push(
                values
                    .iter()
                    .map(|v| v.as_f64().unwrap_or(f64::NAN))
                    .collect(),
            );
        }
    }
    let width = rows[0].len();
    let n = rows.len().max(600);
    Array2::from_shape_fn((n, width), |(r, c)| rows[r % rows.len()][c])
}

/// Converts `source` to `onnx`; `None` when it has no `TreeEnsemble` (or is a fixture of what
/// is refused, so named).
fn convert_tree_model(source: &Path, onnx: &Path) -> Option<PathBuf> {
    let job = Job {
        source: source.to_path_buf(),
        onnx: onnx.to_path_buf(),
    };
    match convert::convert(job, true) {
        Outcome::Converted { .. } => {}
        Outcome::Failed { .. } if source.to_string_lossy().contains("refused") => return None,
        other => panic!("{}: {other:?}", source.display()),
    }
    let bytes = std::fs::read(onnx).unwrap();
    bytes
        .windows(12)
        .any(|w| w == b"TreeEnsemble")
        .then(|| onnx.to_path_buf())
}

#[test]
fn compiled_tree_kernel_gives_onnx_runtimes_bits_on_every_tree_fixture() {
    let env = onnx_model::runtime::environment(None)
        .expect("ONNX Runtime (run scripts/setup-ort.sh or set ORT_DYLIB_PATH)");
    let out = tempfile::tempdir().unwrap();
    let (mut models, mut values) = (0, 0);
    for (i, (expected, source)) in fixtures().into_iter().enumerate() {
        let Some(onnx) = convert_tree_model(&source, &out.path().join(format!("{i}.onnx"))) else {
            continue;
        };
        let ours = Model::load_with(env, "m", &onnx, TreeKernel::Compiled { threads: 2 })
            .unwrap_or_else(|e| panic!("{}: {e}", source.display()));
        assert_eq!(
            ours.tree_kernel(),
            TreeKernel::Compiled { threads: 2 },
            "{}: the compiled kernel refused it: {:?}",
            source.display(),
            ours.compiled_kernel_refused()
        );
        let theirs = Model::load_with(env, "m", &onnx, TreeKernel::OnnxRuntime).unwrap();
        let x = rows(&expected);
        // All rows (walked in lanes, on two threads), and three (walked row by row).
        for x in [x.view(), x.view().split_at(ndarray::Axis(0), 3).0] {
            let got = ours.predict(x).unwrap();
            let want = theirs.predict(x).unwrap();
            assert_eq!(got.shape(), want.shape());
            for ((r, c), w) in want.indexed_iter() {
                let g = got[[r, c]];
                assert!(
                    g.to_bits() == w.to_bits(),
                    "{}: row {r} column {c} of {}: compiled {g:e}, ONNX Runtime {w:e}",
                    source.display(),
                    x.nrows()
                );
            }
            values += want.len();
        }
        models += 1;
    }
    println!("{models} tree models, {values} values: all bit-identical");
    // Forests, boosting, HistGradientBoosting, LightGBM and XGBoost in every version.
    assert!(models >= 60, "only {models} tree models found");
}

/// A `TreeEnsemble` the compiled kernel does not compute (a LOGISTIC post transform, which
/// `convert-models` never writes) runs on ONNX Runtime's kernel, and the model says why.
#[test]
fn a_tree_ensemble_the_compiled_kernel_refuses_runs_on_onnx_runtimes_kernel() {
    use prost::Message;
    let env = onnx_model::runtime::environment(None)
        .expect("ONNX Runtime (run scripts/setup-ort.sh or set ORT_DYLIB_PATH)");
    let out = tempfile::tempdir().unwrap();
    let (expected, source) = fixtures()
        .into_iter()
        .find(|(_, source)| source.to_string_lossy().contains("decision_tree.p4.pkl"))
        .expect("a decision tree fixture");
    let onnx = convert_tree_model(&source, &out.path().join("tree.onnx")).unwrap();
    let mut model = tools::onnx::decode(&std::fs::read(&onnx).unwrap()).unwrap();
    let graph = model.graph.as_mut().unwrap();
    let node = graph
        .node
        .iter_mut()
        .find(|n| n.op_type.as_deref() == Some("TreeEnsemble"))
        .unwrap();
    node.attribute
        .retain(|a| a.name.as_deref() != Some("post_transform"));
    node.attribute
        .push(tools::onnx::graph::attr_int("post_transform", 2));
    std::fs::write(&onnx, model.encode_to_vec()).unwrap();

    let ours = Model::load_with(env, "m", &onnx, TreeKernel::Compiled { threads: 2 }).unwrap();
    assert_eq!(ours.tree_kernel(), TreeKernel::OnnxRuntime);
    let why = ours.compiled_kernel_refused().unwrap();
    assert!(why.contains("post_transform 2"), "{why}");
    let theirs = Model::load_with(env, "m", &onnx, TreeKernel::OnnxRuntime).unwrap();
    assert_eq!(theirs.compiled_kernel_refused(), None);
    let x = rows(&expected);
    let (got, want) = (
        ours.predict(x.view()).unwrap(),
        theirs.predict(x.view()).unwrap(),
    );
    assert!(
        got.iter()
            .zip(&want)
            .all(|(a, b)| a.to_bits() == b.to_bits())
    );
}

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

#[test]
fn compiled_tree_kernel_gives_onnx_runtimes_bits_on_every_tree_fixture() {
    let env = onnx_model::runtime::environment(None)
        .expect("ONNX Runtime (run scripts/setup-ort.sh or set ORT_DYLIB_PATH)");
    let out = tempfile::tempdir().unwrap();
    let (mut models, mut values) = (0, 0);
    for (expected, source) in fixtures() {
        let onnx = out.path().join(format!("{models}-{values}.onnx"));
        let job = Job {
            source: source.clone(),
            onnx: onnx.clone(),
        };
        match convert::convert(job, true) {
            Outcome::Converted { .. } => {}
            // Fixtures of what is refused (named so) have nothing to run.
            Outcome::Failed { .. } if source.to_string_lossy().contains("refused") => continue,
            other => panic!("{}: {other:?}", source.display()),
        }
        let bytes = std::fs::read(&onnx).unwrap();
        if !bytes.windows(12).any(|w| w == b"TreeEnsemble") {
            continue;
        }
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

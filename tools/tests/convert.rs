//! The conversion driver through the library API: discovery, output paths, "once",
//! verification against golden files and `--check`, on copies of the shipped pickles.

use std::path::{Path, PathBuf};

use tools::convert::{self, Job, Outcome, find_jobs, onnx_path};
use tools::error::ConvertError;

fn shipped(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models/gdp_growth_rate")
        .join(name)
}

fn touch(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, b"").unwrap();
}

#[test]
fn onnx_paths_sit_beside_sources_or_mirror_them_under_out_dir() {
    let root = Path::new("models");
    let source = Path::new("models/gdp/RandomForest.pkl");
    assert_eq!(
        onnx_path(root, source, None),
        Path::new("models/gdp/RandomForest.onnx")
    );
    assert_eq!(
        onnx_path(root, source, Some(Path::new("out"))),
        Path::new("out/gdp/RandomForest.onnx")
    );
    // A file PATH: just its name under the out dir.
    assert_eq!(
        onnx_path(source, source, Some(Path::new("out"))),
        Path::new("out/RandomForest.onnx")
    );
    assert_eq!(
        onnx_path(root, Path::new("models/a/m.joblib"), None),
        Path::new("models/a/m.onnx")
    );
}

#[test]
fn discovery_is_recursive_sorted_and_skips_hidden_and_other_files() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("models");
    for file in [
        "b/Z.pkl",
        "b/A.joblib",
        "a.pkl",
        "notes.txt",
        "b/A.onnx",
        ".hidden/Secret.pkl",
        "c/d/Deep.pkl",
    ] {
        touch(&root.join(file));
    }
    let (jobs, failures) = find_jobs(std::slice::from_ref(&root), None);
    assert!(failures.is_empty(), "{failures:?}");
    let sources: Vec<_> = jobs
        .iter()
        .map(|j| j.source.strip_prefix(&root).unwrap().to_path_buf())
        .collect();
    assert_eq!(
        sources,
        [
            PathBuf::from("a.pkl"),
            "b/A.joblib".into(),
            "b/Z.pkl".into(),
            "c/d/Deep.pkl".into()
        ]
    );
    assert_eq!(jobs[1].onnx, root.join("b/A.onnx"));

    // The same model named twice is one job.
    let (jobs, _) = find_jobs(&[root.clone(), root.join("a.pkl")], None);
    assert_eq!(jobs.len(), 4);
}

#[test]
fn two_sources_for_one_onnx_file_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    touch(&tmp.path().join("m/M.pkl"));
    touch(&tmp.path().join("m/M.joblib"));
    let (jobs, failures) = find_jobs(&[tmp.path().join("m")], None);
    assert_eq!(jobs.len(), 1);
    match failures.as_slice() {
        [
            Outcome::Failed {
                error: ConvertError::SameOutput { .. },
                ..
            },
        ] => {}
        other => panic!("expected one SameOutput failure, got {other:?}"),
    }
    assert!(
        failures[0]
            .to_string()
            .contains("M.onnx would also be written from")
    );
}

#[test]
fn converts_once_and_reconverts_a_damaged_onnx() {
    let tmp = tempfile::tempdir().unwrap();
    // No golden.json here: the model is still loaded and run once through ONNX Runtime.
    let source = tmp.path().join("Ridge.pkl");
    std::fs::copy(shipped("Ridge.pkl"), &source).unwrap();
    let job = Job {
        source: source.clone(),
        onnx: tmp.path().join("Ridge.onnx"),
    };

    let outcome = convert::convert(job.clone(), false);
    match &outcome {
        Outcome::Converted { summary, .. } => {
            assert_eq!(summary.about.estimator, "Ridge");
            assert_eq!(summary.about.task, "regression");
            assert_eq!((summary.about.n_number, summary.about.n_string), (4, 0));
            assert!(summary.about.classes.is_empty());
            assert_eq!(summary.trees, None);
            assert_eq!(summary.max_delta, None);
        }
        other => panic!("expected Converted, got {other}"),
    }
    assert!(
        outcome
            .to_string()
            .ends_with("(Ridge, regression, 4 features (4 number), no golden predictions)"),
        "{outcome}"
    );
    assert!(matches!(
        convert::convert(job.clone(), false),
        Outcome::UpToDate { .. }
    ));
    assert!(matches!(
        convert::convert(job.clone(), true),
        Outcome::Converted { .. }
    ));

    // A damaged .onnx records nothing readable: converted again, not "up to date".
    std::fs::write(&job.onnx, b"not an onnx model").unwrap();
    assert!(matches!(
        convert::convert(job.clone(), false),
        Outcome::Converted { .. }
    ));
    match convert::check(job) {
        Outcome::Verified { summary, .. } => assert_eq!(summary.max_delta, None),
        other => panic!("expected Verified, got {other}"),
    }
}

#[test]
fn golden_feature_names_must_match_the_model() {
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("LinearRegression.pkl");
    std::fs::copy(shipped("LinearRegression.pkl"), &source).unwrap();
    let golden = std::fs::read_to_string(shipped("golden.json")).unwrap();
    let golden = golden.replacen("\"gdp_per_capita\"", "\"gdp\"", 1);
    std::fs::write(tmp.path().join("golden.json"), golden).unwrap();
    let job = Job {
        source,
        onnx: tmp.path().join("LinearRegression.onnx"),
    };
    match convert::convert(job.clone(), false) {
        Outcome::Failed {
            error: ConvertError::Golden { reason, .. },
            ..
        } => assert!(reason.contains("feature names"), "{reason}"),
        other => panic!("expected a golden-file failure, got {other}"),
    }
    assert!(
        !job.onnx.exists(),
        "nothing is written when verification fails"
    );
}

#[test]
fn a_broken_golden_file_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("Lasso.pkl");
    std::fs::copy(shipped("Lasso.pkl"), &source).unwrap();
    std::fs::write(tmp.path().join("golden.json"), "{\"holdout\": 3}").unwrap();
    let outcome = convert::convert(
        Job {
            source,
            onnx: tmp.path().join("Lasso.onnx"),
        },
        false,
    );
    assert!(outcome.is_failure());
    assert!(outcome.to_string().contains("golden file"), "{outcome}");
}

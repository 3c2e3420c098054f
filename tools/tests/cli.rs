//! Runs the real `convert-models` binary on a temporary copy of the shipped models.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_convert-models");

fn shipped_models() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/gdp_growth_rate")
}

/// A temp dir holding `models/gdp_growth_rate/{*.pkl, golden.json}` (no `.onnx`).
fn copy_of_models() -> (tempfile::TempDir, Vec<String>) {
    let (tmp, names) = copy_of(|name| golden_regressors().iter().any(|r| r == name));
    assert!(
        names.len() >= 9,
        "expected the shipped models, found {names:?}"
    );
    (tmp, names)
}

/// The regressors golden.json has predictions for (the shipped classifiers have theirs in
/// classifiers-golden.json, which convert-models does not read).
fn golden_regressors() -> Vec<String> {
    let text = std::fs::read_to_string(shipped_models().join("golden.json")).unwrap();
    let golden: serde_json::Value = serde_json::from_str(&text).unwrap();
    golden["models"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect()
}

/// A temporary copy of the shipped pickles whose names `keep` says, and golden.json.
fn copy_of(keep: impl Fn(&str) -> bool) -> (tempfile::TempDir, Vec<String>) {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("models/gdp_growth_rate");
    std::fs::create_dir_all(&dest).unwrap();
    let mut names = Vec::new();
    for entry in std::fs::read_dir(shipped_models()).unwrap() {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        if file == "golden.json" {
            std::fs::copy(&path, dest.join(&file)).unwrap();
        }
        if let Some(name) = file.strip_suffix(".pkl")
            && keep(name)
        {
            std::fs::copy(&path, dest.join(&file)).unwrap();
            names.push(name.to_string());
        }
    }
    names.sort();
    (tmp, names)
}

/// Runs the binary in `dir`, pointing it at the ONNX Runtime library this test process finds.
fn run(dir: &Path, args: &[&str]) -> (i32, String) {
    let library = onnx_model::runtime::locate(None)
        .expect("ONNX Runtime library (run scripts/setup-ort.sh or set ORT_DYLIB_PATH)");
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env("ORT_DYLIB_PATH", library)
        .output()
        .unwrap();
    let stdout = String::from_utf8(stdout).unwrap();
    eprintln!(
        "$ convert-models {}\n{stdout}{}",
        args.join(" "),
        String::from_utf8_lossy(&stderr)
    );
    (status.code().expect("exited normally"), stdout)
}

fn lines_starting(stdout: &str, prefix: &str) -> usize {
    stdout.lines().filter(|l| l.starts_with(prefix)).count()
}

fn onnx_files(dir: &Path) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| !f.ends_with(".pkl") && f != "golden.json")
        .collect();
    files.sort();
    files
}

#[test]
fn converts_once_then_reports_up_to_date_and_checks() {
    let (tmp, names) = copy_of_models();
    let dir = tmp.path();
    let n = names.len();

    let (code, out) = run(dir, &[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        lines_starting(&out, "converted  models/gdp_growth_rate/"),
        n,
        "{out}"
    );
    assert!(out.contains(
        "converted  models/gdp_growth_rate/RandomForest.pkl -> models/gdp_growth_rate/RandomForest.onnx (RandomForestRegressor, regression, 4 features (4 number), 100 trees, max |Δ| "
    ), "{out}");
    assert!(
        out.contains(
            "(DecisionTreeRegressor, regression, 4 features (4 number), 1 tree, max |Δ| 0)"
        ),
        "{out}"
    );
    let expected: Vec<String> = names.iter().map(|n| format!("{n}.onnx")).collect();
    // Only the .onnx files: no temporary files left behind.
    assert_eq!(onnx_files(&dir.join("models/gdp_growth_rate")), expected);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let ridge = dir.join("models/gdp_growth_rate/Ridge.onnx");
        let mode = std::fs::metadata(ridge).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o044,
            0o044,
            "written models are readable by everyone: {mode:o}"
        );
    }

    let (code, out) = run(dir, &[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        lines_starting(&out, "up to date models/gdp_growth_rate/"),
        n,
        "{out}"
    );

    let (code, out) = run(dir, &["--check", "models"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        lines_starting(&out, "verified   models/gdp_growth_rate/"),
        n,
        "{out}"
    );
    assert!(!out.contains("no golden predictions"), "{out}");

    let (code, out) = run(dir, &["--force", "models/gdp_growth_rate/Ridge.pkl"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [format!(
            "converted  models/gdp_growth_rate/Ridge.pkl -> models/gdp_growth_rate/Ridge.onnx (Ridge, regression, 4 features (4 number), max |Δ| {})",
            out.split("max |Δ| ")
                .nth(1)
                .unwrap_or("?")
                .trim_end_matches([')', '\n'])
        )]
    );
}

#[test]
fn stale_onnx_is_detected_and_a_wrong_model_is_never_written() {
    let (tmp, _) = copy_of_models();
    let dir = tmp.path();
    let models = dir.join("models/gdp_growth_rate");
    let (code, out) = run(dir, &[]);
    assert_eq!(code, 0, "{out}");

    // Lasso.pkl now holds Ridge: the recorded sha256 no longer matches.
    std::fs::copy(models.join("Ridge.pkl"), models.join("Lasso.pkl")).unwrap();
    let lasso_onnx = std::fs::read(models.join("Lasso.onnx")).unwrap();
    let (code, out) = run(dir, &["--check"]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(lines_starting(&out, "failed "), 1, "{out}");
    assert!(
        out.contains("failed     models/gdp_growth_rate/Lasso.onnx: stale: converted from a source with sha256 "),
        "{out}"
    );

    // Reconverting it fails the golden comparison (Ridge's predictions are not Lasso's), so the
    // old file stays untouched.
    let (code, out) = run(dir, &[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("failed     models/gdp_growth_rate/Lasso.pkl: prediction mismatch at row 0"),
        "{out}"
    );
    assert_eq!(lines_starting(&out, "up to date "), 8, "{out}");
    assert_eq!(
        std::fs::read(models.join("Lasso.onnx")).unwrap(),
        lasso_onnx
    );
    assert_eq!(
        onnx_files(&models).len(),
        9,
        "no temporary file left: {:?}",
        onnx_files(&models)
    );
}

#[test]
fn the_shipped_classifiers_are_described() {
    let (tmp, names) = copy_of(|name| !golden_regressors().iter().any(|r| r == name));
    assert_eq!(names, ["SlowGrowth", "VoteChoice"]);
    let (code, out) = run(tmp.path(), &[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        [
            "converted  models/gdp_growth_rate/SlowGrowth.pkl -> models/gdp_growth_rate/SlowGrowth.onnx (RandomForestClassifier, classification, 4 features (4 number), 2 classes [false, true], 100 trees, no golden predictions)",
            r#"converted  models/gdp_growth_rate/VoteChoice.pkl -> models/gdp_growth_rate/VoteChoice.onnx (Pipeline(ColumnTransformer, LogisticRegression), classification, 7 features (5 number, 2 string), 2 classes ["Clinton", "Dole"], no golden predictions)"#,
        ]
    );
    let (code, out) = run(tmp.path(), &[]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("up to date models/gdp_growth_rate/VoteChoice.pkl -> models/gdp_growth_rate/VoteChoice.onnx (Pipeline(ColumnTransformer, LogisticRegression), classification, 7 features (5 number, 2 string), 2 classes [\"Clinton\", \"Dole\"])"),
        "{out}"
    );
}

#[test]
fn corrupted_and_hostile_pickles_fail_with_a_message() {
    let (tmp, _) = copy_of_models();
    let dir = tmp.path();
    let models = dir.join("models/gdp_growth_rate");
    let pickle = std::fs::read(models.join("RandomForest.pkl")).unwrap();
    std::fs::write(models.join("RandomForest.pkl"), &pickle[..pickle.len() / 2]).unwrap();
    // GLOBAL os.system, then REDUCE: what a malicious pickle looks like.
    std::fs::write(
        models.join("Evil.pkl"),
        b"\x80\x02cos\nsystem\nq\x00X\x02\x00\x00\x00idq\x01\x85q\x02Rq\x03.",
    )
    .unwrap();

    let (code, out) = run(dir, &[]);
    assert_eq!(code, 1, "{out}");
    let failed: Vec<&str> = out.lines().filter(|l| l.starts_with("failed ")).collect();
    assert_eq!(failed.len(), 2, "{out}");
    assert!(
        failed[0].starts_with("failed     models/gdp_growth_rate/Evil.pkl: "),
        "{out}"
    );
    assert!(failed[0].contains("os.system"), "{out}");
    assert!(
        failed[1].starts_with("failed     models/gdp_growth_rate/RandomForest.pkl: "),
        "{out}"
    );
    assert_eq!(lines_starting(&out, "converted "), 8, "{out}");
    let written = onnx_files(&models);
    assert!(
        !written
            .iter()
            .any(|f| f.starts_with("Evil") || f.starts_with("RandomForest")),
        "{written:?}"
    );
    assert_eq!(written.len(), 8, "{written:?}");
}

#[test]
fn out_dir_mirrors_the_relative_paths() {
    let (tmp, names) = copy_of_models();
    let dir = tmp.path();
    let (code, out) = run(dir, &["--out-dir", "out", "models"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(
        "converted  models/gdp_growth_rate/Ridge.pkl -> out/gdp_growth_rate/Ridge.onnx (Ridge, regression, 4 features (4 number), max |Δ| "
    ), "{out}");
    assert_eq!(
        onnx_files(&dir.join("out/gdp_growth_rate")).len(),
        names.len()
    );
    assert_eq!(
        onnx_files(&dir.join("models/gdp_growth_rate")),
        Vec::<String>::new()
    );

    let (code, out) = run(dir, &["--out-dir", "out", "--check", "models"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        lines_starting(&out, "verified   out/gdp_growth_rate/"),
        names.len(),
        "{out}"
    );

    // --check without the files reports them missing.
    let (code, out) = run(dir, &["--check", "models"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(
        "failed     models/gdp_growth_rate/Ridge.onnx: not found (run convert-models without --check to create it)"
    ), "{out}");
}

#[test]
fn out_dir_replaces_a_model_atomically() {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    let (tmp, _) = copy_of(|name| name == "Ridge");
    let dir = tmp.path();
    let out = dir.join("out/gdp_growth_rate");
    std::fs::create_dir_all(&out).unwrap();
    let target = out.join("Ridge.onnx");
    std::fs::write(&target, b"the model a node is serving").unwrap();
    // A reader (an inference node loading it) holds the old file open.
    let mut reader = std::fs::File::open(&target).unwrap();
    let old_inode = reader.metadata().unwrap().ino();

    let (code, output) = run(dir, &["--out-dir", "out", "models"]);
    assert_eq!(code, 0, "{output}");
    assert!(
        output.contains("converted  models/gdp_growth_rate/Ridge.pkl"),
        "{output}"
    );
    // Replaced by a rename, never rewritten in place: the open file still reads whole and
    // unchanged, the path names a new, complete file, and no temporary file is left.
    let mut seen = String::new();
    reader.read_to_string(&mut seen).unwrap();
    assert_eq!(seen, "the model a node is serving");
    let new = std::fs::metadata(&target).unwrap();
    assert_ne!(new.ino(), old_inode);
    let (code, output) = run(dir, &["--out-dir", "out", "--check", "models"]);
    assert_eq!(code, 0, "{output}");
    let left: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["Ridge.onnx"]);
}

#[test]
fn usage_errors_exit_2_and_bad_paths_exit_1() {
    let tmp = tempfile::tempdir().unwrap();
    let (code, _) = run(tmp.path(), &["--bogus"]);
    assert_eq!(code, 2);
    let (code, _) = run(tmp.path(), &["--check", "--force"]);
    assert_eq!(code, 2);

    let (code, out) = run(tmp.path(), &["nowhere"]);
    assert_eq!(code, 1);
    assert_eq!(out, "failed     nowhere: no such file or directory\n");

    std::fs::write(tmp.path().join("notes.txt"), "hi").unwrap();
    let (code, out) = run(tmp.path(), &["notes.txt"]);
    assert_eq!(code, 1);
    assert_eq!(
        out,
        "failed     notes.txt: notes.txt is not a .pkl or .joblib file or a LightGBM or XGBoost model\n"
    );

    std::fs::create_dir(tmp.path().join("empty")).unwrap();
    let (code, out) = run(tmp.path(), &["empty"]);
    assert_eq!(code, 1);
    assert_eq!(
        out,
        "failed     empty: no .pkl or .joblib files or LightGBM or XGBoost models under empty\n"
    );
}

#[test]
fn lightgbm_text_models_are_found_by_content_and_described() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fixtures-lightgbm/4.7.0");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("models");
    std::fs::create_dir_all(&dir).unwrap();
    // A native model under an unusual extension, one without any, a pickled one, and files
    // that are not models: none of those is picked up.
    std::fs::copy(fixtures.join("lgbm_poisson.txt"), dir.join("claims.model")).unwrap();
    std::fs::copy(fixtures.join("lgbm_multiclass.txt"), dir.join("party")).unwrap();
    std::fs::copy(fixtures.join("lgbm_binary.pkl"), dir.join("vote.pkl")).unwrap();
    std::fs::write(dir.join("README.md"), "tree\nthis is not a model\n").unwrap();
    std::fs::write(dir.join("config.json"), r#"{"tree": "version=v4"}"#).unwrap();
    std::fs::write(dir.join("notes.txt"), "tree\nversion=v4 but truncated").unwrap();

    let (code, out) = run(tmp.path(), &["models"]);
    assert_eq!(code, 1, "{out}"); // notes.txt looks like a model and is refused
    assert!(
        out.contains(
            "converted  models/claims.model -> models/claims.onnx (LightGBM Booster (poisson), regression, 8 features (8 number), 20 trees, no golden predictions)"
        ),
        "{out}"
    );
    assert!(
        out.contains("(LightGBM Booster (multiclass), classification, 8 features (8 number), 7 classes [0, 1, 2, 3, 4, 5, 6], 70 trees"),
        "{out}"
    );
    assert!(
        out.contains(r#"(LGBMClassifier (binary), classification, 8 features (8 number), 2 classes ["Clinton", "Dole"], 20 trees"#),
        "{out}"
    );
    assert!(
        out.contains(
            "failed     models/notes.txt: LightGBM model text, header: version `v4 but truncated` is not supported"
        ),
        "{out}"
    );
    assert_eq!(out.lines().count(), 4, "{out}");
    let written: Vec<String> = onnx_files(&dir)
        .into_iter()
        .filter(|f| f.ends_with(".onnx"))
        .collect();
    assert_eq!(written, ["claims.onnx", "party.onnx", "vote.onnx"]);
}

#[test]
fn xgboost_models_are_found_by_content_and_described() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fixtures-xgboost/3.2.0");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("models");
    std::fs::create_dir_all(&dir).unwrap();
    // A JSON model, a UBJSON one under another extension, a pickle, and JSON that is not a
    // model (a golden file, the fixture's rows): only the three models are picked up.
    std::fs::copy(fixtures.join("reg_gamma.json"), dir.join("years.json")).unwrap();
    std::fs::copy(fixtures.join("clf_binary.ubj"), dir.join("vote.bin")).unwrap();
    std::fs::copy(fixtures.join("clf_softprob.pkl"), dir.join("party.pkl")).unwrap();
    std::fs::copy(fixtures.join("rows-fair.json"), dir.join("rows.json")).unwrap();
    std::fs::copy(
        shipped_models().join("golden.json"),
        dir.join("golden.json"),
    )
    .unwrap();

    let (code, out) = run(tmp.path(), &["models"]);
    assert_eq!(code, 0, "{out}");
    for line in [
        "converted  models/years.json -> models/years.onnx (XGBoost Booster (reg:gamma, XGBoost 3.2.0), regression, 8 features (8 number), 20 trees, no golden predictions)",
        "converted  models/vote.bin -> models/vote.onnx (XGBoost Booster (binary:logistic, XGBoost 3.2.0), classification, 8 features (8 number), 2 classes [0, 1], 20 trees, no golden predictions)",
        "converted  models/party.pkl -> models/party.onnx (XGBClassifier (multi:softprob, XGBoost 3.2.0), classification, 8 features (8 number), 7 classes [0, 1, 2, 3, 4, 5, 6], 56 trees, no golden predictions)",
    ] {
        assert!(out.contains(line), "{out}");
    }
    assert_eq!(out.lines().count(), 3, "{out}");
}

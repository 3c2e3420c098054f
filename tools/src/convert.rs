//! The `convert-models` driver: finds models, converts each once, verifies, writes atomically.
//!
//! For every `NAME.pkl` / `NAME.joblib` and every native model file (a LightGBM text model or
//! an XGBoost JSON / UBJSON model, whatever its extension, recognised by its first bytes:
//! [`SourceFormat`]) under the given
//! paths ([`find_jobs`]) it writes
//! `NAME.onnx` beside the source (or under `--out-dir`, same relative path). A model whose
//! `.onnx` already records the source's sha256 is skipped unless forced. Each new file is
//! written to a temporary file in the target directory, loaded through the loader the
//! inference node uses (`onnx_model`, real ONNX Runtime), compared with the golden predictions
//! when `golden.json` has them, and only then renamed into place. [`check`] re-verifies existing files.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use ndarray::Array2;
use onnx_model::Model as OnnxModel;
use sha2::{Digest, Sha256};

use crate::error::ConvertError;
use crate::estimator::{Estimator, Model};
use crate::golden::{self, Golden, Tolerance};
use crate::lightgbm;
use crate::onnx;
use crate::pickle::{self, Limits};

/// Pickle file extensions that are converted.
pub const SOURCE_EXTENSIONS: [&str; 2] = ["pkl", "joblib"];
/// Bytes read from a file to recognise a native model format.
const SNIFF_BYTES: u64 = 64;

/// How a source file is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceFormat {
    /// A pickle or joblib file (by extension): scikit-learn estimators and pipelines, and
    /// LightGBM's scikit-learn wrappers.
    Pickle,
    /// A LightGBM text model (`Booster.save_model`): starts with `tree` and `version=v…`.
    LightGbmText,
    /// An XGBoost model (`Booster.save_model`, `.json` or `.ubj`): an object whose first key is
    /// `learner`.
    XGBoost,
}

impl SourceFormat {
    /// The format of the file at `path`, or `None` if it is not a model this tool reads:
    /// pickles by extension, native models by their first bytes (so a directory's READMEs,
    /// `golden.json` and other files are skipped).
    pub fn of(path: &Path) -> Option<SourceFormat> {
        let extension = path.extension().and_then(|e| e.to_str());
        if extension.is_some_and(|e| SOURCE_EXTENSIONS.contains(&e)) {
            return Some(SourceFormat::Pickle);
        }
        let mut head = Vec::new();
        let file = std::fs::File::open(path).ok()?;
        file.take(SNIFF_BYTES).read_to_end(&mut head).ok()?;
        Self::sniff(&head)
    }

    /// The native format the first bytes of a file show, if any.
    pub fn sniff(head: &[u8]) -> Option<SourceFormat> {
        if lightgbm::text::looks_like(head) {
            Some(SourceFormat::LightGbmText)
        } else {
            crate::xgboost::sniff(head).map(|_| SourceFormat::XGBoost)
        }
    }
}
/// Deepest directory level searched below a PATH.
const MAX_DEPTH: usize = 32;

/// What to do with the models found.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Write `.onnx` files under this directory (same relative path) instead of beside sources.
    pub out_dir: Option<PathBuf>,
    /// Convert even when the `.onnx` file is up to date.
    pub force: bool,
    /// Only verify existing `.onnx` files; write nothing.
    pub check: bool,
}

/// One model to convert or check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub source: PathBuf,
    pub onnx: PathBuf,
}

/// What happened to one model (one output line).
#[derive(Debug)]
pub enum Outcome {
    Converted { job: Job, summary: Summary },
    UpToDate { job: Job, about: About },
    Verified { job: Job, summary: Summary },
    Failed { path: PathBuf, error: ConvertError },
}

/// What a converted model is, as its metadata says: estimator, task, features, classes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct About {
    /// The scikit-learn estimator's class name.
    pub estimator: String,
    /// `regression` or `classification`.
    pub task: String,
    /// The number of numeric features.
    pub n_number: usize,
    /// The number of string features.
    pub n_string: usize,
    /// A classifier's classes, as JSON (`"a"`, `1`, `true`); empty for a regressor.
    pub classes: Vec<String>,
}

/// Most classes a summary line lists; the rest are counted.
const LISTED_CLASSES: usize = 10;

/// What a model is and how close it came to sklearn.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// What the model is.
    pub about: About,
    /// Number of trees, for tree models.
    pub trees: Option<usize>,
    /// Largest |ONNX - sklearn| over the golden rows; `None` without golden predictions.
    pub max_delta: Option<f64>,
}

// === impl Outcome ===

impl Outcome {
    pub fn is_failure(&self) -> bool {
        matches!(self, Outcome::Failed { .. })
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Converted { job, summary } => write!(
                f,
                "converted  {} -> {} ({summary})",
                job.source.display(),
                job.onnx.display()
            ),
            Outcome::UpToDate { job, about } => write!(
                f,
                "up to date {} -> {} ({about})",
                job.source.display(),
                job.onnx.display()
            ),
            Outcome::Verified { job, summary } => {
                write!(f, "verified   {} ({summary})", job.onnx.display())
            }
            Outcome::Failed { path, error } => {
                write!(f, "failed     {}: {error}", path.display())
            }
        }
    }
}

impl About {
    /// Reads a converted model's metadata (a model without `features` metadata has numeric
    /// features named by `feature_names`; without `task` it is a regressor).
    pub fn from_metadata(meta: &BTreeMap<String, String>) -> About {
        use onnx_model::contract::{
            FeatureType, META_CLASSES, META_ESTIMATOR, META_FEATURE_NAMES, META_FEATURES, META_TASK,
        };
        let features = meta
            .get(META_FEATURES)
            .and_then(|json| onnx_model::contract::parse_features(json).ok());
        let (n_number, n_string) = match features {
            Some(features) => {
                let n_string = features
                    .iter()
                    .filter(|f| f.kind == FeatureType::String)
                    .count();
                (features.len() - n_string, n_string)
            }
            None => {
                let names = meta
                    .get(META_FEATURE_NAMES)
                    .and_then(|json| serde_json::from_str::<Vec<String>>(json).ok());
                (names.map_or(0, |n| n.len()), 0)
            }
        };
        let classes = meta
            .get(META_CLASSES)
            .and_then(|json| serde_json::from_str::<Vec<serde_json::Value>>(json).ok())
            .unwrap_or_default()
            .iter()
            .map(serde_json::Value::to_string)
            .collect();
        About {
            estimator: meta.get(META_ESTIMATOR).cloned().unwrap_or_default(),
            task: meta
                .get(META_TASK)
                .cloned()
                .unwrap_or_else(|| "regression".into()),
            n_number,
            n_string,
            classes,
        }
    }
}

/// `RandomForestRegressor, regression, 4 features (4 number)`, or for a classifier
/// `LogisticRegression, classification, 5 features (3 number, 2 string), 2 classes ["no", "yes"]`.
impl fmt::Display for About {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.n_number + self.n_string;
        let plural = |n: usize| if n == 1 { "" } else { "s" };
        write!(
            f,
            "{}, {}, {n} feature{} (",
            self.estimator,
            self.task,
            plural(n)
        )?;
        match (self.n_number, self.n_string) {
            (k, 0) => write!(f, "{k} number)")?,
            (0, s) => write!(f, "{s} string)")?,
            (k, s) => write!(f, "{k} number, {s} string)")?,
        }
        if !self.classes.is_empty() {
            let listed = &self.classes[..self.classes.len().min(LISTED_CLASSES)];
            write!(
                f,
                ", {} class{} [{}",
                self.classes.len(),
                if self.classes.len() == 1 { "" } else { "es" },
                listed.join(", ")
            )?;
            if self.classes.len() > listed.len() {
                write!(f, ", ... {} more", self.classes.len() - listed.len())?;
            }
            write!(f, "]")?;
        }
        Ok(())
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.about)?;
        match self.trees {
            Some(1) => write!(f, ", 1 tree")?,
            Some(n) => write!(f, ", {n} trees")?,
            None => {}
        }
        match self.max_delta {
            Some(0.0) => write!(f, ", max |Δ| 0"),
            Some(d) => write!(f, ", max |Δ| {d:.1e}"),
            None => write!(f, ", no golden predictions"),
        }
    }
}

// === discovery ===

/// Finds the sources under each path (a file or a directory searched recursively, in sorted
/// order). A path that cannot be used becomes a failed outcome.
pub fn find_jobs(paths: &[PathBuf], out_dir: Option<&Path>) -> (Vec<Job>, Vec<Outcome>) {
    let mut jobs: Vec<Job> = Vec::new();
    let mut failures = Vec::new();
    for root in paths {
        let sources = match sources_under(root) {
            Ok(sources) => sources,
            Err(error) => {
                failures.push(Outcome::Failed {
                    path: root.clone(),
                    error,
                });
                continue;
            }
        };
        for source in sources {
            let onnx = onnx_path(root, &source, out_dir);
            if let Some(other) = jobs.iter().find(|j| j.onnx == onnx) {
                let error = ConvertError::SameOutput {
                    onnx,
                    other: other.source.clone(),
                };
                failures.push(Outcome::Failed {
                    path: source,
                    error,
                });
            } else if !jobs.iter().any(|j| j.source == source) {
                jobs.push(Job { source, onnx });
            }
        }
    }
    (jobs, failures)
}

/// The sources a PATH names: itself if it is a source file, else those found below it.
fn sources_under(root: &Path) -> Result<Vec<PathBuf>, ConvertError> {
    if root.is_dir() {
        let mut sources = Vec::new();
        collect(root, 0, &mut sources)?;
        if sources.is_empty() {
            return Err(ConvertError::NoSources(root.to_path_buf()));
        }
        Ok(sources)
    } else if root.is_file() {
        if is_source(root) {
            Ok(vec![root.to_path_buf()])
        } else {
            Err(ConvertError::NotASource(root.to_path_buf()))
        }
    } else {
        Err(ConvertError::NotFound(root.to_path_buf()))
    }
}

fn collect(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) -> Result<(), ConvertError> {
    let io = |source| ConvertError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut entries = std::fs::read_dir(dir)
        .map_err(io)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(io)?;
    entries.sort();
    for path in entries {
        let hidden = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        // symlink_metadata: never follow directory links (no loops).
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() && !hidden && depth < MAX_DEPTH {
            collect(&path, depth + 1, out)?;
        } else if !meta.is_dir() && path.is_file() && is_source(&path) {
            out.push(path);
        }
    }
    Ok(())
}

fn is_source(path: &Path) -> bool {
    SourceFormat::of(path).is_some()
}

/// `NAME.onnx` beside the source, or under `out_dir` at the source's path relative to `root`.
pub fn onnx_path(root: &Path, source: &Path, out_dir: Option<&Path>) -> PathBuf {
    let file_name = Path::new(source.file_name().unwrap_or_default()).with_extension("onnx");
    match out_dir {
        None => source.with_file_name(file_name),
        Some(out) => {
            let relative = source
                .strip_prefix(root)
                .ok()
                .filter(|r| !r.as_os_str().is_empty())
                .and_then(Path::parent)
                .unwrap_or(Path::new(""));
            out.join(relative).join(file_name)
        }
    }
}

// === conversion ===

/// Runs every job (convert or check) and hands each outcome to `report` as it happens.
pub fn run(paths: &[PathBuf], options: &Options, mut report: impl FnMut(&Outcome)) -> bool {
    let (jobs, failures) = find_jobs(paths, options.out_dir.as_deref());
    let mut ok = failures.is_empty();
    for failure in &failures {
        report(failure);
    }
    for job in jobs {
        let outcome = if options.check {
            check(job)
        } else {
            convert(job, options.force)
        };
        ok &= !outcome.is_failure();
        report(&outcome);
    }
    ok
}

/// Converts one model unless its `.onnx` is up to date (or `force`).
pub fn convert(job: Job, force: bool) -> Outcome {
    match try_convert(&job, force) {
        Ok(Some(summary)) => Outcome::Converted { job, summary },
        Ok(None) => {
            let about = recorded_metadata(&job.onnx)
                .map(|meta| About::from_metadata(&meta))
                .unwrap_or_default();
            Outcome::UpToDate { job, about }
        }
        Err(error) => Outcome::Failed {
            path: job.source,
            error,
        },
    }
}

fn try_convert(job: &Job, force: bool) -> Result<Option<Summary>, ConvertError> {
    let limits = Limits::default();
    let bytes = read_capped(&job.source, limits.max_bytes)?;
    let sha256 = hex::encode(Sha256::digest(&bytes));
    let recorded = recorded_metadata(&job.onnx)
        .and_then(|mut meta| meta.remove(onnx_model::contract::META_SOURCE_SHA256));
    if !force && recorded.is_some_and(|recorded| recorded == sha256) {
        return Ok(None);
    }
    let file_name = file_name(&job.source);
    let model = match SourceFormat::sniff(&bytes) {
        Some(SourceFormat::LightGbmText) => lightgbm::native_model(&bytes)?,
        Some(SourceFormat::XGBoost) => crate::xgboost::read_native(&bytes)?,
        _ => {
            let graph = pickle::read_bytes(&bytes, &file_name, &limits)?;
            crate::sklearn::extract(&graph)?
        }
    };
    let onnx_bytes = onnx::encode(&model, &onnx::Source { file_name, sha256 })?;

    let dir = match job.onnx.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ConvertError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    // Written to a temporary file in the same directory (a hidden `.convert-models-*.onnx.tmp`,
    // which inference nodes polling the directory skip), fsynced, verified, then renamed over
    // the target and the directory fsynced: a reader (a node) sees the old file or the new
    // one, never a partial one, and a crash or a failed check never leaves a partial or wrong
    // `.onnx` behind.
    let mut builder = tempfile::Builder::new();
    builder.prefix(".convert-models-").suffix(".onnx.tmp");
    // Readable by everyone (minus the umask) like any file the user creates, not the
    // owner-only mode of a temporary file: containers and other users read these models.
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644));
    let mut temp = builder.tempfile_in(dir).map_err(io(dir))?;
    temp.write_all(&onnx_bytes)
        .and_then(|()| temp.as_file().sync_all())
        .map_err(io(temp.path()))?;
    let max_delta = verify(temp.path(), &job.source, &tolerance(&model))?;
    temp.persist(&job.onnx).map_err(|e| ConvertError::Io {
        path: job.onnx.clone(),
        source: e.error,
    })?;
    // The rename itself made durable: a crash now cannot bring the old file back, or none.
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))?;
    let about = onnx::metadata(&onnx_bytes)
        .map(|meta| About::from_metadata(&meta))
        .unwrap_or_default();
    Ok(Some(Summary {
        about,
        trees: tree_count(&model),
        max_delta,
    }))
}

// === checking ===

/// Re-verifies an existing `.onnx`: present, converted from the current source, and (with a
/// golden file) predicting what sklearn predicted.
pub fn check(job: Job) -> Outcome {
    match try_check(&job) {
        Ok(summary) => Outcome::Verified { job, summary },
        Err(error) => Outcome::Failed {
            path: job.onnx,
            error,
        },
    }
}

fn try_check(job: &Job) -> Result<Summary, ConvertError> {
    if !job.onnx.is_file() {
        return Err(ConvertError::MissingOnnx(job.onnx.clone()));
    }
    let onnx_bytes = std::fs::read(&job.onnx).map_err(|source| ConvertError::Io {
        path: job.onnx.clone(),
        source,
    })?;
    let proto = onnx::decode(&onnx_bytes).map_err(|source| ConvertError::Decode {
        path: job.onnx.clone(),
        source,
    })?;
    let meta = onnx::metadata_of(&proto);
    let recorded = meta
        .get(onnx_model::contract::META_SOURCE_SHA256)
        .cloned()
        .unwrap_or_default();
    let source = read_capped(&job.source, Limits::default().max_bytes)?;
    let actual = hex::encode(Sha256::digest(&source));
    if recorded != actual {
        return Err(ConvertError::Stale {
            onnx: job.onnx.clone(),
            recorded,
            actual,
        });
    }
    let trees = onnx::tree_count(&proto);
    let tolerance = if trees == Some(1) {
        Tolerance::Exact
    } else {
        golden::RELATIVE
    };
    let max_delta = verify(&job.onnx, &job.source, &tolerance)?;
    Ok(Summary {
        about: About::from_metadata(&meta),
        trees,
        max_delta,
    })
}

// === shared steps ===

/// Loads `onnx` through the loader the inference node uses (`onnx_model`) and compares it
/// with the golden predictions for `source`; without them, runs one row to prove the model
/// executes.
fn verify(onnx: &Path, source: &Path, tolerance: &Tolerance) -> Result<Option<f64>, ConvertError> {
    let env = onnx_model::runtime::environment(None)?;
    let model = OnnxModel::load(env, &file_name(source), onnx)?;
    let dir = source.parent().unwrap_or(Path::new("."));
    let golden_path = Golden::path_in(dir);
    let golden = Golden::load(&golden_path)?;
    let Some((golden, expected)) = golden
        .as_ref()
        .and_then(|g| g.model(&file_name(source)).map(|m| (g, m)))
    else {
        let (numbers, strings) = probe_row(model.info());
        model.predict_mixed(numbers.view(), &strings)?;
        return Ok(None);
    };
    let golden_error = |reason: String| ConvertError::Golden {
        path: golden_path.clone(),
        reason,
    };
    // A model fit without names records x0..xN-1, which says nothing about the golden names.
    let model_names = &model.info().feature_names;
    let unnamed = model_names
        .iter()
        .enumerate()
        .all(|(i, n)| *n == format!("x{i}"));
    if let Some(names) = &golden.feature_names
        && names != model_names
        && !unnamed
    {
        return Err(golden_error(format!(
            "feature names {names:?} differ from the model's {model_names:?}"
        )));
    }
    let rows = golden.rows(&golden_path)?;
    if rows.ncols() != model.n_features() {
        return Err(golden_error(format!(
            "hold-out rows have {} features, the model {}",
            rows.ncols(),
            model.n_features()
        )));
    }
    let predictions = model.predict(rows.view())?;
    golden::compare(&predictions, &expected.predictions, *tolerance).map(Some)
}

/// One row every model accepts: each feature's first category when it has categories, else
/// 0 for a number and `"a"` for a string.
fn probe_row(info: &onnx_model::ModelInfo) -> (Array2<f64>, Vec<String>) {
    let mut numbers = Vec::new();
    let mut strings = Vec::new();
    for feature in &info.features {
        let first = feature.categories.as_ref().and_then(|c| c.first());
        match feature.kind {
            onnx_model::contract::FeatureType::Number => {
                numbers.push(first.and_then(serde_json::Value::as_f64).unwrap_or(0.0));
            }
            onnx_model::contract::FeatureType::String => strings.push(
                first
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or("a")
                    .to_string(),
            ),
        }
    }
    let n = numbers.len();
    let numbers = Array2::from_shape_vec((1, n), numbers).expect("one row of n values");
    (numbers, strings)
}

/// Single trees must match sklearn exactly; everything else within 1e-12 relative.
pub fn tolerance(model: &Model) -> Tolerance {
    if tree_count(model) == Some(1) {
        Tolerance::Exact
    } else {
        golden::RELATIVE
    }
}

fn tree_count(model: &Model) -> Option<usize> {
    match &model.estimator {
        Estimator::Trees(e) => Some(e.trees.len()),
        Estimator::Hist(h) => Some(h.trees.len()),
        Estimator::LightGbm(l) => Some(l.trees.len()),
        Estimator::XGBoost(b) => Some(b.groups.iter().map(|g| g.trees.len()).sum()),
        Estimator::Linear(_) => None,
    }
}

/// The `source_sha256` an existing `.onnx` records, if it is a readable ONNX model.
fn recorded_metadata(onnx: &Path) -> Option<BTreeMap<String, String>> {
    let bytes = std::fs::read(onnx).ok()?;
    let proto = onnx::decode(&bytes).ok()?;
    Some(onnx::metadata_of(&proto))
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Reads a file of at most `cap` bytes.
fn read_capped(path: &Path, cap: u64) -> Result<Vec<u8>, ConvertError> {
    let io = |source| ConvertError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    file.take(cap + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > cap {
        return Err(ConvertError::TooLarge {
            path: path.to_path_buf(),
            cap,
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn about_names_estimator_task_features_and_classes() {
        let regressor = meta(&[("estimator", "Ridge"), ("feature_names", r#"["a","b"]"#)]);
        assert_eq!(
            About::from_metadata(&regressor).to_string(),
            "Ridge, regression, 2 features (2 number)"
        );
        let pipeline = meta(&[
            ("estimator", "Pipeline"),
            ("task", "classification"),
            (
                "features",
                r#"[{"name":"a","type":"number","nullable":true},{"name":"s","type":"string","nullable":false}]"#,
            ),
            ("classes", r#"["no","yes"]"#),
        ]);
        assert_eq!(
            About::from_metadata(&pipeline).to_string(),
            r#"Pipeline, classification, 2 features (1 number, 1 string), 2 classes ["no", "yes"]"#
        );
        let many = meta(&[
            ("estimator", "X"),
            ("task", "classification"),
            (
                "features",
                r#"[{"name":"s","type":"string","nullable":false}]"#,
            ),
            ("classes", "[0,1,2,3,4,5,6,7,8,9,10,11]"),
        ]);
        assert_eq!(
            About::from_metadata(&many).to_string(),
            "X, classification, 1 feature (1 string), 12 classes [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, ... 2 more]"
        );
    }
}

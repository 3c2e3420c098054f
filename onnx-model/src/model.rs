//! One converted model: an ONNX Runtime session plus what `convert-models` recorded about it
//! (the [`contract`](crate::contract)).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ndarray::{Array2, ArrayView2};
use ort::environment::Environment;
use ort::session::{Session, SessionOutputs};
use ort::value::{Outlet, TensorElementType, TensorRef, ValueType};
use serde::Serialize;

use crate::contract::{
    self, ClassLabel, Feature, FeatureType, INPUT_NAME, LABEL_NAME, META_CLASSES,
    META_CONVERTER_VERSION, META_ESTIMATOR, META_FEATURE_NAMES, META_FEATURES,
    META_SKLEARN_VERSION, META_SOURCE_FILE, META_SOURCE_SHA256, META_TASK, OUTPUT_NAME,
    PROBABILITIES_NAME, Task,
};

/// Why a model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("model {path}: {reason}")]
    Load { path: PathBuf, reason: String },
    #[error("expected {expected} features per row, got {got}")]
    FeatureCount { expected: usize, got: usize },
    #[error("inference failed: {0}")]
    Inference(String),
}

/// What a model is: its name and what `convert-models` recorded in its metadata (the node
/// reports it at `/models` and the V2 metadata endpoint).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ModelInfo {
    pub name: String,
    /// Every feature's name, in the model's column order (`features[i].name`).
    pub feature_names: Vec<String>,
    /// The values [`Model::predict_into`] appends per row: the targets of a regressor;
    /// `1 + n_classes` for a classifier (the label's index, then the probabilities).
    pub n_targets: usize,
    pub estimator: String,
    pub source_file: String,
    pub source_sha256: String,
    pub sklearn_version: String,
    pub converter_version: String,
    pub task: Task,
    /// Every input column with its type and whether it may be missing.
    pub features: Vec<Feature>,
    /// A classifier's classes (sklearn's `classes_`); empty for a regressor.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub classes: Vec<ClassLabel>,
}

impl ModelInfo {
    /// The information of a regressor whose features are all numeric and non-nullable (a
    /// model without `features`/`task` metadata), with empty provenance.
    pub fn regression(name: &str, feature_names: Vec<String>, n_targets: usize) -> ModelInfo {
        ModelInfo {
            name: name.to_string(),
            features: feature_names
                .iter()
                .map(|n| Feature::number(n.clone(), false))
                .collect(),
            feature_names,
            n_targets,
            estimator: String::new(),
            source_file: String::new(),
            source_sha256: String::new(),
            sklearn_version: String::new(),
            converter_version: String::new(),
            task: Task::Regression,
            classes: Vec::new(),
        }
    }

    /// The number of classes of a classifier (0 for a regressor).
    pub fn n_classes(&self) -> usize {
        self.classes.len()
    }
}

/// A loaded model. `predict` is synchronous and thread-safe (the session sits behind a mutex,
/// since ONNX Runtime's `run` needs exclusive access); call it off the async workers.
pub struct Model {
    info: ModelInfo,
    session: Mutex<Session>,
}

impl Model {
    /// Loads `path` as the model called `name` and validates its input/output contract.
    pub fn load(env: &Environment, name: &str, path: &Path) -> Result<Model, ModelError> {
        let fail = |reason: String| ModelError::Load {
            path: path.to_path_buf(),
            reason,
        };
        let session = build_session(env, path).map_err(|e| fail(e.to_string()))?;
        let meta = session.metadata().map_err(|e| fail(e.to_string()))?;
        let text = |key: &str| meta.custom(key).unwrap_or_default();
        let task = match meta.custom(META_TASK) {
            None => Task::Regression,
            Some(value) => Task::parse(&value).ok_or_else(|| {
                fail(format!(
                    "metadata {META_TASK} is {value:?}, expected \"regression\" or \"classification\""
                ))
            })?,
        };
        let n_features = input_width(&session).map_err(&fail)?;
        let feature_names: Option<Vec<String>> = match meta.custom(META_FEATURE_NAMES) {
            Some(json) => Some(serde_json::from_str(&json).map_err(|e| {
                fail(format!(
                    "metadata {META_FEATURE_NAMES} is not a JSON string list: {e}"
                ))
            })?),
            None => None,
        };
        let features = match meta.custom(META_FEATURES) {
            Some(json) => contract::parse_features(&json).map_err(&fail)?,
            None => feature_names
                .clone()
                .unwrap_or_else(|| (0..n_features).map(|i| format!("x{i}")).collect())
                .into_iter()
                .map(|name| Feature::number(name, false))
                .collect(),
        };
        if features.iter().any(|f| f.kind == FeatureType::String) {
            return Err(fail(
                "the model has string features, which this version does not serve".into(),
            ));
        }
        if features.len() != n_features {
            return Err(fail(format!(
                "metadata lists {} features but the input has {n_features} columns",
                features.len()
            )));
        }
        let names: Vec<String> = features.iter().map(|f| f.name.clone()).collect();
        if feature_names
            .as_ref()
            .is_some_and(|listed| *listed != names)
        {
            return Err(fail(format!(
                "metadata {META_FEATURE_NAMES} and {META_FEATURES} name different features"
            )));
        }
        let (n_targets, classes) = match task {
            Task::Regression => (regression_width(&session).map_err(&fail)?, Vec::new()),
            Task::Classification => {
                let json = meta
                    .custom(META_CLASSES)
                    .ok_or_else(|| fail(format!("a classifier without metadata {META_CLASSES}")))?;
                let classes = contract::parse_classes(&json).map_err(&fail)?;
                check_classifier_outputs(&session, classes.len()).map_err(&fail)?;
                (1 + classes.len(), classes)
            }
        };
        let info = ModelInfo {
            name: name.to_string(),
            feature_names: names,
            n_targets,
            estimator: text(META_ESTIMATOR),
            source_file: text(META_SOURCE_FILE),
            source_sha256: text(META_SOURCE_SHA256),
            sklearn_version: text(META_SKLEARN_VERSION),
            converter_version: text(META_CONVERTER_VERSION),
            task,
            features,
            classes,
        };
        drop(meta);
        Ok(Model {
            info,
            session: Mutex::new(session),
        })
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    pub fn name(&self) -> &str {
        &self.info.name
    }

    pub fn n_features(&self) -> usize {
        self.info.feature_names.len()
    }

    /// Runs the model on `rows` (`[N, n_features]`) and returns `[N, n_targets]` (for a
    /// classifier, each row is `[label_index, p_0, ..., p_{C-1}]`).
    pub fn predict(&self, rows: ArrayView2<'_, f64>) -> Result<Array2<f64>, ModelError> {
        let mut flat = Vec::with_capacity(rows.nrows() * self.info.n_targets);
        self.predict_into(rows, &mut flat)?;
        Array2::from_shape_vec((rows.nrows(), self.info.n_targets), flat)
            .map_err(|e| ModelError::Inference(e.to_string()))
    }

    /// Runs the model on `rows` (`[N, n_features]`) and appends the `N * n_targets`
    /// predictions, row-major, to `out` (the caller chooses who allocates). A classifier
    /// appends per row the index of its label into [`ModelInfo::classes`] (as an `f64`), then
    /// its `n_classes` probabilities.
    pub fn predict_into(
        &self,
        rows: ArrayView2<'_, f64>,
        out: &mut Vec<f64>,
    ) -> Result<(), ModelError> {
        if rows.ncols() != self.n_features() {
            return Err(ModelError::FeatureCount {
                expected: self.n_features(),
                got: rows.ncols(),
            });
        }
        let input = TensorRef::from_array_view(rows).map_err(inference)?;
        let mut session = self
            .session
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let outputs = session
            .run(ort::inputs![INPUT_NAME => input])
            .map_err(inference)?;
        let n_rows = rows.nrows();
        match self.info.task {
            Task::Regression => regression_output(&outputs, n_rows, self.info.n_targets, out),
            Task::Classification => {
                classification_output(&outputs, n_rows, self.info.n_classes(), out)
            }
        }
    }
}

fn inference(e: ort::Error) -> ModelError {
    ModelError::Inference(e.to_string())
}

/// Appends `variable` (`[n_rows, n_targets]`).
fn regression_output(
    outputs: &SessionOutputs<'_>,
    n_rows: usize,
    n_targets: usize,
    out: &mut Vec<f64>,
) -> Result<(), ModelError> {
    let view = outputs[OUTPUT_NAME]
        .try_extract_array::<f64>()
        .map_err(inference)?;
    if view.len() != n_rows * n_targets {
        return Err(ModelError::Inference(format!(
            "output shape {:?} does not match [{n_rows}, {n_targets}]",
            view.shape()
        )));
    }
    out.extend(view.iter().copied());
    Ok(())
}

/// Appends per row `label` (as an `f64`) and the row of `probabilities`.
fn classification_output(
    outputs: &SessionOutputs<'_>,
    n_rows: usize,
    n_classes: usize,
    out: &mut Vec<f64>,
) -> Result<(), ModelError> {
    let labels = outputs[LABEL_NAME]
        .try_extract_array::<i64>()
        .map_err(inference)?;
    let probabilities = outputs[PROBABILITIES_NAME]
        .try_extract_array::<f64>()
        .map_err(inference)?;
    if labels.len() != n_rows || probabilities.len() != n_rows * n_classes {
        return Err(ModelError::Inference(format!(
            "output shapes {:?} and {:?} do not match [{n_rows}] and [{n_rows}, {n_classes}]",
            labels.shape(),
            probabilities.shape()
        )));
    }
    let probabilities = probabilities
        .as_slice()
        .ok_or_else(|| ModelError::Inference("probabilities are not contiguous".into()))?;
    for (label, row) in labels.iter().zip(probabilities.chunks_exact(n_classes)) {
        if !usize::try_from(*label).is_ok_and(|l| l < n_classes) {
            return Err(ModelError::Inference(format!(
                "label index {label} is not one of the {n_classes} classes"
            )));
        }
        out.push(*label as f64);
        out.extend_from_slice(row);
    }
    Ok(())
}

/// One thread per call and no spinning: the node runs one inference thread per model and
/// parallelism comes from serving several models and batches, not from ONNX Runtime's pools.
/// The arena and memory patterns are off: tensors here are tiny and vary in batch size, and
/// with nine models an arena per session costs more memory than it saves time.
fn build_session(env: &Environment, path: &Path) -> ort::Result<Session> {
    Session::builder(env)?
        .with_execution_providers([ort::ep::CPU::default().with_arena_allocator(false).build()])?
        .with_memory_pattern(false)?
        .with_intra_threads(1)?
        .with_inter_threads(1)?
        .with_intra_op_spinning(false)?
        .commit_from_file(path)
}

/// Checks the single double `[N, k]` input `input` and returns `k`.
fn input_width(session: &Session) -> Result<usize, String> {
    let [input] = session.inputs() else {
        return Err(format!(
            "expected exactly one input, found {}",
            session.inputs().len()
        ));
    };
    check_name(input, INPUT_NAME, "input")?;
    matrix_width(input, "input")
}

/// Checks a regressor's single double `[N, k]` output `variable` and returns `k`.
fn regression_width(session: &Session) -> Result<usize, String> {
    let [output] = session.outputs() else {
        return Err(format!(
            "expected exactly one output, found {}",
            session.outputs().len()
        ));
    };
    check_name(output, OUTPUT_NAME, "output")?;
    matrix_width(output, "output")
}

/// Checks a classifier's outputs: `label` int64 `[N]` and `probabilities` double
/// `[N, n_classes]`, in that order.
fn check_classifier_outputs(session: &Session, n_classes: usize) -> Result<(), String> {
    let [label, probabilities] = session.outputs() else {
        return Err(format!(
            "a classifier has two outputs ({LABEL_NAME}, {PROBABILITIES_NAME}), found {}",
            session.outputs().len()
        ));
    };
    check_name(label, LABEL_NAME, "output")?;
    check_name(probabilities, PROBABILITIES_NAME, "output")?;
    match label.dtype() {
        ValueType::Tensor {
            ty: TensorElementType::Int64,
            shape,
            ..
        } if shape.len() == 1 => {}
        other => {
            return Err(format!(
                "output {LABEL_NAME:?} must be an int64 [N] tensor, found {other:?}"
            ));
        }
    }
    let width = matrix_width(probabilities, "output")?;
    if width != n_classes {
        return Err(format!(
            "output {PROBABILITIES_NAME:?} has {width} columns for {n_classes} classes"
        ));
    }
    Ok(())
}

fn check_name(outlet: &Outlet, expected: &str, kind: &str) -> Result<(), String> {
    if outlet.name() == expected {
        Ok(())
    } else {
        Err(format!(
            "{kind} is named {:?}, expected {expected:?}",
            outlet.name()
        ))
    }
}

/// The second dimension of a double `[N, k]` tensor.
fn matrix_width(outlet: &Outlet, kind: &str) -> Result<usize, String> {
    match outlet.dtype() {
        ValueType::Tensor {
            ty: TensorElementType::Float64,
            shape,
            ..
        } if shape.len() == 2 && shape[1] > 0 => Ok(shape[1] as usize),
        other => Err(format!(
            "{kind} {:?} must be a double [N, k] tensor, found {other:?}",
            outlet.name()
        )),
    }
}

//! One converted model: an ONNX Runtime session plus what `convert-models` recorded about it
//! (the [`contract`](crate::contract)).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ndarray::{Array2, ArrayView2};
use ort::environment::Environment;
use ort::session::Session;
use ort::value::{TensorElementType, TensorRef, ValueType};
use serde::Serialize;

use crate::contract::{
    INPUT_NAME, META_CONVERTER_VERSION, META_ESTIMATOR, META_FEATURE_NAMES, META_SKLEARN_VERSION,
    META_SOURCE_FILE, META_SOURCE_SHA256, OUTPUT_NAME,
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
    pub feature_names: Vec<String>,
    pub n_targets: usize,
    pub estimator: String,
    pub source_file: String,
    pub source_sha256: String,
    pub sklearn_version: String,
    pub converter_version: String,
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
        let n_features = matrix_width(&session, true).map_err(&fail)?;
        let n_targets = matrix_width(&session, false).map_err(&fail)?;
        let meta = session.metadata().map_err(|e| fail(e.to_string()))?;
        let text = |key: &str| meta.custom(key).unwrap_or_default();
        let feature_names: Vec<String> = match meta.custom(META_FEATURE_NAMES) {
            Some(json) => serde_json::from_str(&json).map_err(|e| {
                fail(format!(
                    "metadata {META_FEATURE_NAMES} is not a JSON string list: {e}"
                ))
            })?,
            None => (0..n_features).map(|i| format!("x{i}")).collect(),
        };
        if feature_names.len() != n_features {
            return Err(fail(format!(
                "metadata lists {} feature names but the input has {n_features} columns",
                feature_names.len()
            )));
        }
        let info = ModelInfo {
            name: name.to_string(),
            feature_names,
            n_targets,
            estimator: text(META_ESTIMATOR),
            source_file: text(META_SOURCE_FILE),
            source_sha256: text(META_SOURCE_SHA256),
            sklearn_version: text(META_SKLEARN_VERSION),
            converter_version: text(META_CONVERTER_VERSION),
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

    /// Runs the model on `rows` (`[N, n_features]`) and returns `[N, n_targets]`.
    pub fn predict(&self, rows: ArrayView2<'_, f64>) -> Result<Array2<f64>, ModelError> {
        let mut flat = Vec::with_capacity(rows.nrows() * self.info.n_targets);
        self.predict_into(rows, &mut flat)?;
        Array2::from_shape_vec((rows.nrows(), self.info.n_targets), flat)
            .map_err(|e| ModelError::Inference(e.to_string()))
    }

    /// Runs the model on `rows` (`[N, n_features]`) and appends the `N * n_targets`
    /// predictions, row-major, to `out` (the caller chooses who allocates).
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
        let inference = |e: ort::Error| ModelError::Inference(e.to_string());
        let input = TensorRef::from_array_view(rows).map_err(inference)?;
        let mut session = self
            .session
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let outputs = session
            .run(ort::inputs![INPUT_NAME => input])
            .map_err(inference)?;
        let view = outputs[OUTPUT_NAME]
            .try_extract_array::<f64>()
            .map_err(inference)?;
        let (n_rows, n_targets) = (rows.nrows(), self.info.n_targets);
        if view.len() != n_rows * n_targets {
            return Err(ModelError::Inference(format!(
                "output shape {:?} does not match [{n_rows}, {n_targets}]",
                view.shape()
            )));
        }
        out.extend(view.iter().copied());
        Ok(())
    }
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

/// Checks the single `input`/`variable` double matrix and returns its second dimension.
fn matrix_width(session: &Session, input: bool) -> Result<usize, String> {
    let (outlets, expected, kind) = if input {
        (session.inputs(), INPUT_NAME, "input")
    } else {
        (session.outputs(), OUTPUT_NAME, "output")
    };
    let [outlet] = outlets else {
        return Err(format!(
            "expected exactly one {kind}, found {}",
            outlets.len()
        ));
    };
    if outlet.name() != expected {
        return Err(format!(
            "{kind} is named {:?}, expected {expected:?}",
            outlet.name()
        ));
    }
    match outlet.dtype() {
        ValueType::Tensor {
            ty: TensorElementType::Float64,
            shape,
            ..
        } if shape.len() == 2 && shape[1] > 0 => Ok(shape[1] as usize),
        other => Err(format!(
            "{kind} {expected:?} must be a double [N, k] tensor, found {other:?}"
        )),
    }
}

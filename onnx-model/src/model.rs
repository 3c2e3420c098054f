//! One converted model: an ONNX Runtime session plus what `convert-models` recorded about it
//! (the [`contract`](crate::contract)).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ndarray::{Array2, ArrayView2};
use ort::environment::Environment;
use ort::session::{Session, SessionOutputs};
use ort::value::{Outlet, Tensor, TensorElementType, TensorRef, ValueType};
use serde::Serialize;

use crate::contract::{
    self, ClassLabel, Feature, FeatureType, INPUT_NAME, INPUT_STRINGS_NAME, LABEL_NAME,
    META_CLASSES, META_CONVERTER_VERSION, META_ESTIMATOR, META_FEATURE_NAMES, META_FEATURES,
    META_SKLEARN_VERSION, META_SOURCE_FILE, META_SOURCE_SHA256, META_TASK, OUTPUT_NAME,
    PROBABILITIES_NAME, Task,
};
use crate::fast_trees::{self, TreeKernel};

/// Why a model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("model {path}: {reason}")]
    Load { path: PathBuf, reason: String },
    #[error("expected {expected} features per row, got {got}")]
    FeatureCount { expected: usize, got: usize },
    #[error("expected {expected} string values ({rows} rows of {per_row}), got {got}")]
    StringCount {
        expected: usize,
        rows: usize,
        per_row: usize,
        got: usize,
    },
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

    /// The number of numeric features (the width of the input [`INPUT_NAME`]).
    pub fn n_number_features(&self) -> usize {
        self.features.len() - self.n_string_features()
    }

    /// The number of string features (the width of [`INPUT_STRINGS_NAME`]; 0 when the model
    /// has no such input).
    pub fn n_string_features(&self) -> usize {
        self.features
            .iter()
            .filter(|f| f.kind == FeatureType::String)
            .count()
    }
}

/// A loaded model. `predict` is synchronous and thread-safe (the session sits behind a mutex,
/// since ONNX Runtime's `run` needs exclusive access); call it off the async workers.
pub struct Model {
    info: ModelInfo,
    session: Mutex<Session>,
    tree_kernel: TreeKernel,
    compiled_refused: Option<String>,
}

impl Model {
    /// Loads `path` as the model called `name` and validates its input/output contract; its
    /// tree ensembles run on the default [`TreeKernel`].
    pub fn load(env: &Environment, name: &str, path: &Path) -> Result<Model, ModelError> {
        Model::load_with(env, name, path, TreeKernel::default())
    }

    /// [`Model::load`] with the given kernel for the `TreeEnsemble` nodes. When the compiled
    /// kernel refuses a node (one it does not compute), the session is built again with ONNX
    /// Runtime's kernel, and [`Model::tree_kernel`] says which one runs.
    pub fn load_with(
        env: &Environment,
        name: &str,
        path: &Path,
        trees: TreeKernel,
    ) -> Result<Model, ModelError> {
        let fail = |reason: String| ModelError::Load {
            path: path.to_path_buf(),
            reason,
        };
        let (session, tree_kernel, compiled_refused) = match trees {
            TreeKernel::Compiled { .. } => match build_session(env, path, trees) {
                Ok(session) => (session, trees, None),
                Err(refused) => {
                    let session = build_session(env, path, TreeKernel::OnnxRuntime)
                        .map_err(|e| fail(e.to_string()))?;
                    (session, TreeKernel::OnnxRuntime, Some(refused.to_string()))
                }
            },
            TreeKernel::OnnxRuntime => (
                build_session(env, path, TreeKernel::OnnxRuntime)
                    .map_err(|e| fail(e.to_string()))?,
                TreeKernel::OnnxRuntime,
                None,
            ),
        };
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
        let (n_numbers, n_strings) = input_widths(&session).map_err(&fail)?;
        let n_features = n_numbers + n_strings;
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
        let listed_strings = features
            .iter()
            .filter(|f| f.kind == FeatureType::String)
            .count();
        if features.len() - listed_strings != n_numbers || listed_strings != n_strings {
            return Err(fail(format!(
                "metadata lists {} numeric and {listed_strings} string features but the inputs have {n_numbers} and {n_strings} columns",
                features.len() - listed_strings
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
            tree_kernel,
            compiled_refused,
        })
    }

    /// The kernel this model's `TreeEnsemble` nodes run on.
    pub fn tree_kernel(&self) -> TreeKernel {
        self.tree_kernel
    }

    /// Why the compiled tree kernel was asked for but ONNX Runtime's runs (the session with
    /// the compiled kernel failed to build with this error).
    pub fn compiled_kernel_refused(&self) -> Option<&str> {
        self.compiled_refused.as_deref()
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
        self.predict_mixed(rows, &[])
    }

    /// [`Model::predict_mixed_into`] into a new `[N, n_targets]` array.
    pub fn predict_mixed(
        &self,
        numbers: ArrayView2<'_, f64>,
        strings: &[String],
    ) -> Result<Array2<f64>, ModelError> {
        let mut flat = Vec::with_capacity(numbers.nrows() * self.info.n_targets);
        self.predict_mixed_into(numbers, strings, &mut flat)?;
        Array2::from_shape_vec((numbers.nrows(), self.info.n_targets), flat)
            .map_err(|e| ModelError::Inference(e.to_string()))
    }

    /// Runs the model on `rows` (`[N, n_features]`) and appends the `N * n_targets`
    /// predictions, row-major, to `out` (the caller chooses who allocates). A classifier
    /// appends per row the index of its label into [`ModelInfo::classes`] (as an `f64`), then
    /// its `n_classes` probabilities.
    /// A model with string features needs [`Model::predict_mixed_into`].
    pub fn predict_into(
        &self,
        rows: ArrayView2<'_, f64>,
        out: &mut Vec<f64>,
    ) -> Result<(), ModelError> {
        if self.info.n_string_features() > 0 {
            return Err(ModelError::StringCount {
                expected: rows.nrows() * self.info.n_string_features(),
                rows: rows.nrows(),
                per_row: self.info.n_string_features(),
                got: 0,
            });
        }
        self.predict_mixed_into(rows, &[], out)
    }

    /// Runs the model on `numbers` (`[N, n_number_features]`, the numeric features in
    /// feature order, NaN = missing) and `strings` (`N * n_string_features` values,
    /// row-major, the string features in feature order, `""` = missing) and appends the
    /// predictions to `out` as [`Model::predict_into`] does. `strings` is empty for a model
    /// without string features.
    pub fn predict_mixed_into(
        &self,
        numbers: ArrayView2<'_, f64>,
        strings: &[String],
        out: &mut Vec<f64>,
    ) -> Result<(), ModelError> {
        let n_rows = numbers.nrows();
        let n_numbers = self.info.n_number_features();
        let n_strings = self.info.n_string_features();
        if numbers.ncols() != n_numbers {
            return Err(ModelError::FeatureCount {
                expected: n_numbers,
                got: numbers.ncols(),
            });
        }
        if strings.len() != n_rows * n_strings {
            return Err(ModelError::StringCount {
                expected: n_rows * n_strings,
                rows: n_rows,
                per_row: n_strings,
                got: strings.len(),
            });
        }
        let input = TensorRef::from_array_view(numbers).map_err(inference)?;
        let mut inputs = ort::inputs![INPUT_NAME => input];
        if n_strings > 0 {
            let tensor =
                Tensor::from_string_array(([n_rows, n_strings], strings)).map_err(inference)?;
            inputs.push((INPUT_STRINGS_NAME.into(), tensor.into()));
        }
        let mut session = self
            .session
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let outputs = session.run(inputs).map_err(inference)?;
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
fn build_session(env: &Environment, path: &Path, trees: TreeKernel) -> ort::Result<Session> {
    let builder = Session::builder(env)?
        .with_execution_providers([ort::ep::CPU::default().with_arena_allocator(false).build()])?
        .with_memory_pattern(false)?
        .with_intra_threads(1)?
        .with_inter_threads(1)?
        .with_intra_op_spinning(false)?;
    let mut builder = match trees {
        TreeKernel::Compiled { threads } => {
            builder.with_operators(fast_trees::operator::domain(threads)?)?
        }
        TreeKernel::OnnxRuntime => builder,
    };
    builder.commit_from_file(path)
}

/// Checks the inputs: double `[N, k]` `input`, then, for a model with string features,
/// string `[N, s]` `input_strings` (where `input` may be of width 0). Returns `(k, s)`.
fn input_widths(session: &Session) -> Result<(usize, usize), String> {
    match session.inputs() {
        [input] => {
            check_name(input, INPUT_NAME, "input")?;
            Ok((matrix_width(input, "input")?, 0))
        }
        [input, strings] => {
            check_name(input, INPUT_NAME, "input")?;
            check_name(strings, INPUT_STRINGS_NAME, "input")?;
            let numbers = width_of(input, TensorElementType::Float64, "double")?;
            let n_strings = width_of(strings, TensorElementType::String, "string")?;
            if n_strings == 0 {
                return Err(format!("input {INPUT_STRINGS_NAME:?} has no columns"));
            }
            Ok((numbers, n_strings))
        }
        other => Err(format!(
            "expected the inputs {INPUT_NAME:?} and optionally {INPUT_STRINGS_NAME:?}, found {}",
            other.len()
        )),
    }
}

/// The second dimension (possibly 0) of a `[N, k]` tensor of `ty`.
fn width_of(outlet: &Outlet, ty: TensorElementType, type_name: &str) -> Result<usize, String> {
    match outlet.dtype() {
        ValueType::Tensor { ty: t, shape, .. } if *t == ty && shape.len() == 2 && shape[1] >= 0 => {
            Ok(shape[1] as usize)
        }
        other => Err(format!(
            "input {:?} must be a {type_name} [N, k] tensor, found {other:?}",
            outlet.name()
        )),
    }
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

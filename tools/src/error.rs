//! The crate's error type.

use std::path::PathBuf;

use inference_node::model::ModelError;
use inference_node::onnx_runtime::RuntimeError;

/// Why a model could not be converted or verified.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The extracted model is internally inconsistent (shapes, indices, values).
    #[error("invalid model: {0}")]
    InvalidModel(String),
    /// ONNX Runtime is not available.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// ONNX Runtime refused or failed to run the model.
    #[error("ONNX Runtime: {0}")]
    Onnx(#[from] ModelError),
    /// An existing `.onnx` file is not a readable ONNX model.
    #[error("{path} is not a readable ONNX model: {source}")]
    Decode {
        path: PathBuf,
        source: prost::DecodeError,
    },
    /// The golden predictions file is unreadable or does not fit the model.
    #[error("golden file {path}: {reason}")]
    Golden { path: PathBuf, reason: String },
    /// ONNX predictions differ from sklearn's beyond the tolerance.
    #[error(
        "prediction mismatch at row {row}, target {target}: ONNX {onnx:?}, sklearn {expected:?} (|Δ| {delta:e} > tolerance {tolerance:e})"
    )]
    Mismatch {
        row: usize,
        target: usize,
        onnx: f64,
        expected: f64,
        delta: f64,
        tolerance: f64,
    },
    /// `--check`: the ONNX file is missing.
    #[error("{0} does not exist (run convert-models without --check)")]
    MissingOnnx(PathBuf),
    /// `--check`: the ONNX file was converted from a different version of the source.
    #[error("stale: {onnx} records source sha256 {recorded}, the source now has {actual}")]
    Stale {
        onnx: PathBuf,
        recorded: String,
        actual: String,
    },
}

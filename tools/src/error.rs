//! The crate's error type.

use std::path::PathBuf;

use onnx_model::ModelError;
use onnx_model::runtime::RuntimeError;

use crate::lightgbm::LightGbmError;
use crate::pickle::PickleError;
use crate::sklearn::ExtractError;
use crate::xgboost::XgbError;

/// Why a model could not be converted or verified.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The pickle could not be read safely (refused, malformed, over a limit).
    #[error(transparent)]
    Pickle(#[from] PickleError),
    /// The pickle holds something that is not a supported scikit-learn model.
    #[error(transparent)]
    Extract(#[from] ExtractError),
    /// A LightGBM model (native text, or the booster inside a pickle) that is malformed or not
    /// supported.
    #[error(transparent)]
    LightGbm(#[from] LightGbmError),
    /// An XGBoost model file could not be read or is not supported.
    #[error(transparent)]
    XGBoost(#[from] XgbError),
    /// A source file is larger than the reader accepts.
    #[error("{path} is larger than {cap} bytes")]
    TooLarge { path: PathBuf, cap: u64 },
    /// A PATH argument does not exist.
    #[error("no such file or directory")]
    NotFound(PathBuf),
    /// A PATH argument is a file that is neither `.pkl` nor `.joblib` nor a native model.
    #[error("{0} is not a .pkl or .joblib file or a LightGBM or XGBoost model")]
    NotASource(PathBuf),
    /// A directory PATH holds no `.pkl` or `.joblib` file or native model.
    #[error("no .pkl or .joblib files or LightGBM or XGBoost models under {0}")]
    NoSources(PathBuf),
    /// Two sources would be written to the same `.onnx` file.
    #[error("{onnx} would also be written from {other}")]
    SameOutput { onnx: PathBuf, other: PathBuf },
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
        "prediction mismatch at row {row}, target {target}: ONNX {onnx:?}, sklearn {expected:?} (|Δ| {delta:.3e} > tolerance {tolerance:.1e})"
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
    #[error("not found (run convert-models without --check to create it)")]
    MissingOnnx(PathBuf),
    /// `--check`: the ONNX file was converted from a different version of the source.
    #[error("stale: converted from a source with sha256 {recorded}, the source now has {actual}")]
    Stale {
        onnx: PathBuf,
        recorded: String,
        actual: String,
    },
}

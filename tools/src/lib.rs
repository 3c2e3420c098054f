//! tools: offline utilities for the model-serving cluster: the `convert-models` binary, which
//! turns scikit-learn pickles into the ONNX models the inference nodes serve, without ever
//! running pickle code.
//!
//! # Layout
//! - [`pickle`]: safe pickle/joblib reader producing an inert object graph.
//! - [`sklearn`]: extracts a typed [`estimator::Model`] from that graph.
//! - [`lightgbm`]: LightGBM's text model format (native files and the booster inside a
//!   pickled LGBMRegressor / LGBMClassifier) as an [`estimator::Model`].
//! - [`onnx`]: writes an [`estimator::Model`] as an ONNX model (double precision), following
//!   the contract in `onnx_model::contract` (the crate the inference node loads models with).
//! - [`convert`]: the driver (find sources, convert once, verify, write atomically, `--check`).
//! - [`golden`]: sklearn's own predictions (`golden.json`) and the comparison rules.
//! - [`xgboost`]: XGBoost's native model files and the booster inside its pickles.
//! - [`error`]: [`error::ConvertError`], the crate's error type.

pub mod convert;
pub mod error;
pub mod estimator;
pub mod golden;
pub mod lightgbm;
pub mod onnx;
pub mod pickle;
pub mod sklearn;
pub mod xgboost;

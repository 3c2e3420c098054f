//! tools: offline utilities for the model-serving cluster (`convert-models`).

pub mod error;
pub mod estimator;
pub mod onnx;
pub mod pickle;
pub mod sklearn;

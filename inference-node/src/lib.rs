//! inference-node: serves converted scikit-learn models (ONNX) through ONNX Runtime.
//!
//! # Layout
//! - [`onnx_runtime`]: finds `libonnxruntime.so` and creates the process-wide environment.
//! - [`model`]: one ONNX model, its metadata contract with `convert-models`, and `predict`.

pub mod model;
pub mod onnx_runtime;

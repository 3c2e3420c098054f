//! onnx-model: the ONNX model contract that `convert-models` writes and the inference node
//! serves, and loading ONNX Runtime to run such models. Both sides depend on this crate, so
//! the converter needs no web server and the contract is written once.
//!
//! # Layout
//! - [`contract`]: the input and output names and the metadata keys of a converted model.
//! - [`Model`] (module `model`): loads one `.onnx` file, checks it against the contract, reads
//!   its metadata ([`ModelInfo`]) and predicts rows into a caller's buffer (numbers only, or
//!   numbers plus strings for a model with string features: `Model::predict_mixed_into`);
//!   [`ModelError`].
//! - [`fast_trees`]: the compiled kernel a session may run `ai.onnx.ml` `TreeEnsemble` nodes
//!   with instead of ONNX Runtime's (same bits, several times faster; [`TreeKernel`] chooses).
//! - [`runtime`]: finds `libonnxruntime.so` (the one place `ORT_DYLIB_PATH` is read) and
//!   creates the process-wide ONNX Runtime environment; [`runtime::RuntimeError`].
//!
//! Layers point one way: `model` → `contract`, `fast_trees` and `ort`; `fast_trees` → `ort`
//! only; `runtime` → `ort` only. Nothing here knows about HTTP, async runtimes or the node:
//! callers map these errors to their own.

#![forbid(unsafe_code)]

pub mod contract;
pub mod fast_trees;
mod model;
pub mod runtime;

pub use fast_trees::TreeKernel;
pub use model::{Model, ModelError, ModelInfo};

//! tools: offline utilities for the model-serving cluster (`convert-models`).

pub mod estimator;
pub mod pickle;

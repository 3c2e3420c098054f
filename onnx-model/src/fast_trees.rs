//! A faster kernel for the `ai.onnx.ml` `TreeEnsemble` operator in double, which every tree
//! model `convert-models` writes uses. ONNX Runtime's own kernel walks one row through one
//! tree at a time and pays a mispredicted branch at nearly every node; this one walks several
//! rows through a tree in lockstep, without branches, and gives the same bits.
//!
//! - [`compile`]: the node's attributes checked and laid out as flat trees.
//! - [`ensemble`]: the compiled ensemble and its evaluation (pure Rust, no ONNX Runtime).
//! - [`operator`]: the ONNX Runtime custom operator that makes it the session's
//!   `TreeEnsemble` kernel, so ONNX Runtime still runs the whole graph and the model file is
//!   not touched.
//! - [`TreeKernel`]: which kernel a session uses.

pub mod compile;
pub mod ensemble;
pub mod operator;
#[cfg(test)]
mod tests;

/// Which kernel computes a model's `TreeEnsemble` nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TreeKernel {
    /// [`ensemble::Ensemble`] (where a node is one it computes; ONNX Runtime's otherwise),
    /// taking up to `threads` threads for a call of many rows.
    Compiled { threads: usize },
    /// ONNX Runtime's own kernel.
    OnnxRuntime,
}

impl Default for TreeKernel {
    /// The compiled kernel with as many threads as this process may run at once.
    fn default() -> Self {
        TreeKernel::Compiled {
            threads: std::thread::available_parallelism().map_or(1, usize::from),
        }
    }
}

impl TreeKernel {
    pub fn name(self) -> &'static str {
        match self {
            TreeKernel::Compiled { .. } => "compiled",
            TreeKernel::OnnxRuntime => "onnxruntime",
        }
    }
}
